
/*
 * Copyright (C) ngx-realtime developers
 */


#include <string.h>

#include "ngx_http_realtime_frame.h"
#include "ngx_http_realtime_utf8.h"


/* parser states */
#define NGX_HTTP_REALTIME_ST_OPCODE    0    /* FIN, RSV and opcode */
#define NGX_HTTP_REALTIME_ST_LENGTH    1    /* MASK and 7-bit length */
#define NGX_HTTP_REALTIME_ST_EXTENDED  2    /* 16- or 64-bit length */
#define NGX_HTTP_REALTIME_ST_MASK      3    /* masking key */
#define NGX_HTTP_REALTIME_ST_DATA      4    /* data frame payload */
#define NGX_HTTP_REALTIME_ST_CONTROL   5    /* control frame payload */

#define ngx_http_realtime_is_control(op)  ((op) & 0x8)


static int ngx_http_realtime_frame_fail(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f, unsigned code);
static int ngx_http_realtime_frame_header_byte(
    ngx_http_realtime_frame_parser_t *p, unsigned c,
    ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_opcode(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_length(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_extended(
    ngx_http_realtime_frame_parser_t *p, unsigned c,
    ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_length_done(
    ngx_http_realtime_frame_parser_t *p, ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_start(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_data(ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_chunk(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_control(
    ngx_http_realtime_frame_parser_t *p, unsigned char **pos,
    unsigned char *end, ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_control_done(
    ngx_http_realtime_frame_parser_t *p, unsigned char *data,
    ngx_http_realtime_frame_t *f);
static int ngx_http_realtime_frame_close(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f);
static void ngx_http_realtime_frame_unmask(
    ngx_http_realtime_frame_parser_t *p, unsigned char *buf, size_t len);


void
ngx_http_realtime_frame_parser_init(ngx_http_realtime_frame_parser_t *p,
    uint64_t max_message, int masked)
{
    memset(p, 0, sizeof(ngx_http_realtime_frame_parser_t));

    p->max_message = max_message;
    p->masked = masked ? 1 : 0;
    p->state = NGX_HTTP_REALTIME_ST_OPCODE;
    p->utf8_state = NGX_HTTP_REALTIME_UTF8_ACCEPT;
}


int
ngx_http_realtime_frame_parse(ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_http_realtime_frame_t *f)
{
    int  rc;

    f->data = *pos;
    f->len = 0;
    f->opcode = 0;
    f->first = 0;
    f->last = 0;
    f->compressed = 0;
    f->code = 0;

    if (p->failed) {
        f->code = p->error;
        return NGX_HTTP_REALTIME_FRAME_ERROR;
    }

    for ( ;; ) {

        switch (p->state) {

        case NGX_HTTP_REALTIME_ST_DATA:
            return ngx_http_realtime_frame_data(p, pos, end, f);

        case NGX_HTTP_REALTIME_ST_CONTROL:
            return ngx_http_realtime_frame_control(p, pos, end, f);

        default:
            if (*pos == end) {
                return NGX_HTTP_REALTIME_FRAME_AGAIN;
            }

            rc = ngx_http_realtime_frame_header_byte(p, *(*pos)++, f);

            if (rc != NGX_HTTP_REALTIME_FRAME_AGAIN) {
                return rc;
            }
        }
    }
}


size_t
ngx_http_realtime_frame_header(unsigned char *buf, unsigned opcode,
    uint64_t len)
{
    size_t  n, i;

    buf[0] = (unsigned char) (0x80 | (opcode & 0x0f));

    if (len <= 125) {
        buf[1] = (unsigned char) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        n = 2;

    } else {
        buf[1] = 127;
        n = 8;
    }

    /* network byte order */

    for (i = 0; i < n; i++) {
        buf[1 + n - i] = (unsigned char) (len >> (8 * i));
    }

    return 2 + n;
}


size_t
ngx_http_realtime_frame_header_of(const unsigned char *frame)
{
    unsigned  n;

    /* unmasked: 2 bytes, then 2 or 8 of length */
    n = frame[1] & 0x7f;

    return n < 126 ? 2 : n == 126 ? 4 : 10;
}


size_t
ngx_http_realtime_frame_header_size(uint64_t len)
{
    if (len <= 125) {
        return 2;
    }

    return (len <= 0xffff) ? 4 : 10;
}


int
ngx_http_realtime_close_code_valid(unsigned code)
{
    /*
     * 1004-1006 and 1015 are reserved and never sent on the wire,
     * 1016-2999 are unassigned, 3000-4999 belong to libraries and
     * applications.
     */

    if (code >= 1000 && code <= 1003) {
        return 1;
    }

    if (code >= 1007 && code <= 1014) {
        return 1;
    }

    return code >= 3000 && code <= 4999;
}


static int
ngx_http_realtime_frame_fail(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f, unsigned code)
{
    p->failed = 1;
    p->error = (uint16_t) code;

    f->len = 0;
    f->code = code;

    return NGX_HTTP_REALTIME_FRAME_ERROR;
}


static int
ngx_http_realtime_frame_header_byte(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f)
{
    switch (p->state) {

    case NGX_HTTP_REALTIME_ST_OPCODE:
        return ngx_http_realtime_frame_opcode(p, c, f);

    case NGX_HTTP_REALTIME_ST_LENGTH:
        return ngx_http_realtime_frame_length(p, c, f);

    case NGX_HTTP_REALTIME_ST_EXTENDED:
        return ngx_http_realtime_frame_extended(p, c, f);

    default: /* NGX_HTTP_REALTIME_ST_MASK */
        p->mask[p->mask_pos++] = (uint8_t) c;

        if (p->mask_pos < 4) {
            return NGX_HTTP_REALTIME_FRAME_AGAIN;
        }

        p->mask_pos = 0;

        return ngx_http_realtime_frame_start(p, f);
    }
}


static int
ngx_http_realtime_frame_opcode(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f)
{
    unsigned  op, fin;

    fin = c >> 7;
    op = c & 0x0f;

    /*
     * RSV2 and RSV3 are never negotiated; RSV1 only with deflate, and
     * only on a message's first frame (RFC 7692 6)
     */

    if ((c & 0x30)
        || ((c & NGX_HTTP_REALTIME_FRAME_RSV1)
            && (!p->deflate || (op != NGX_HTTP_REALTIME_OP_TEXT
                                && op != NGX_HTTP_REALTIME_OP_BINARY))))
    {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    switch (op) {

    case NGX_HTTP_REALTIME_OP_CLOSE:
    case NGX_HTTP_REALTIME_OP_PING:
    case NGX_HTTP_REALTIME_OP_PONG:
        if (!fin) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
        }

        break;

    case NGX_HTTP_REALTIME_OP_CONT:
        if (p->message_opcode == 0) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
        }

        break;

    case NGX_HTTP_REALTIME_OP_TEXT:
    case NGX_HTTP_REALTIME_OP_BINARY:
        if (p->message_opcode != 0) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
        }

        p->compressed = (c & NGX_HTTP_REALTIME_FRAME_RSV1) ? 1 : 0;
        break;

    default:
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    p->fin = fin ? 1 : 0;
    p->opcode = (uint8_t) op;
    p->state = NGX_HTTP_REALTIME_ST_LENGTH;

    return NGX_HTTP_REALTIME_FRAME_AGAIN;
}


static int
ngx_http_realtime_frame_length(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f)
{
    unsigned  len;

    /* clients must mask, servers must not (RFC 6455 5.1) */

    if ((c >> 7) != p->masked) {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    len = c & 0x7f;

    if (len <= 125) {
        p->payload_left = len;
        return ngx_http_realtime_frame_length_done(p, f);
    }

    p->payload_left = 0;
    p->header_len = (len == 126) ? 2 : 8;
    p->header_have = 0;
    p->state = NGX_HTTP_REALTIME_ST_EXTENDED;

    return NGX_HTTP_REALTIME_FRAME_AGAIN;
}


static int
ngx_http_realtime_frame_extended(ngx_http_realtime_frame_parser_t *p,
    unsigned c, ngx_http_realtime_frame_t *f)
{
    /* the most significant bit of a 64-bit length must be 0 */

    if (p->header_len == 8 && p->header_have == 0 && (c & 0x80)) {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    p->payload_left = (p->payload_left << 8) | c;

    if (++p->header_have < p->header_len) {
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    return ngx_http_realtime_frame_length_done(p, f);
}


static int
ngx_http_realtime_frame_length_done(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f)
{
    if (ngx_http_realtime_is_control(p->opcode)) {

        /* a non-minimal extended length is fine, a big one is not */

        if (p->payload_left > NGX_HTTP_REALTIME_CONTROL_MAX) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
        }

    } else if (p->max_message) {

        /*
         * refuse before buffering anything; message_len only grows
         * within max_message, so the subtraction cannot wrap
         */

        if (p->payload_left > p->max_message - p->message_len) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_TOO_BIG);
        }
    }

    if (p->masked) {
        p->mask_pos = 0;
        p->state = NGX_HTTP_REALTIME_ST_MASK;
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    return ngx_http_realtime_frame_start(p, f);
}


/* the header is complete */

static int
ngx_http_realtime_frame_start(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f)
{
    if (ngx_http_realtime_is_control(p->opcode)) {
        p->control_len = 0;

        if (p->payload_left == 0) {
            return ngx_http_realtime_frame_control_done(p, f->data, f);
        }

        p->state = NGX_HTTP_REALTIME_ST_CONTROL;
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    if (p->opcode != NGX_HTTP_REALTIME_OP_CONT) {
        p->message_opcode = p->opcode;
        p->message_len = 0;
        p->utf8_state = NGX_HTTP_REALTIME_UTF8_ACCEPT;
    }

    if (p->payload_left) {
        p->state = NGX_HTTP_REALTIME_ST_DATA;
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    p->state = NGX_HTTP_REALTIME_ST_OPCODE;

    /*
     * an empty final frame still completes the message, while an
     * empty fragment has nothing to report
     */

    if (p->fin) {
        return ngx_http_realtime_frame_chunk(p, f);
    }

    return NGX_HTTP_REALTIME_FRAME_AGAIN;
}


static int
ngx_http_realtime_frame_data(ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_http_realtime_frame_t *f)
{
    size_t          n;
    unsigned char  *start;

    start = *pos;

    if (start == end) {
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    n = (size_t) (end - start);

    if (n > p->payload_left) {
        n = (size_t) p->payload_left;
    }

    if (p->masked) {
        ngx_http_realtime_frame_unmask(p, start, n);
    }

    /* fail fast: never hand out a chunk with invalid text in it */

    if (p->message_opcode == NGX_HTTP_REALTIME_OP_TEXT && !p->compressed) {
        p->utf8_state = ngx_http_realtime_utf8_validate(p->utf8_state,
                                                        start, n);

        if (p->utf8_state == NGX_HTTP_REALTIME_UTF8_REJECT) {
            return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_INVALID_DATA);
        }
    }

    *pos = start + n;
    p->payload_left -= n;

    f->data = start;
    f->len = n;

    if (p->payload_left == 0) {
        p->state = NGX_HTTP_REALTIME_ST_OPCODE;
    }

    return ngx_http_realtime_frame_chunk(p, f);
}


/* reports f->data and f->len as a chunk of the current message */

static int
ngx_http_realtime_frame_chunk(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f)
{
    /* empty fragments are not reported, so no bytes yet means first */

    f->opcode = p->message_opcode;
    f->first = (p->message_len == 0);
    f->compressed = p->compressed;

    p->message_len += f->len;

    if (p->payload_left || !p->fin) {
        return NGX_HTTP_REALTIME_FRAME_DATA;
    }

    /* a sequence cut short by the end of the message */

    if (p->message_opcode == NGX_HTTP_REALTIME_OP_TEXT && !p->compressed
        && p->utf8_state != NGX_HTTP_REALTIME_UTF8_ACCEPT)
    {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_INVALID_DATA);
    }

    f->last = 1;

    p->message_opcode = 0;
    p->message_len = 0;

    return NGX_HTTP_REALTIME_FRAME_DATA;
}


static int
ngx_http_realtime_frame_control(ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_http_realtime_frame_t *f)
{
    size_t          n;
    unsigned char  *data;

    if (*pos == end) {
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    n = (size_t) (end - *pos);

    if (p->control_len == 0 && n >= p->payload_left) {

        /* all of it is here: unmasked in place, as data is */

        n = (size_t) p->payload_left;
        data = *pos;

        if (p->masked) {
            ngx_http_realtime_frame_unmask(p, data, n);
        }

        *pos += n;
        p->control_len = (uint8_t) n;
        p->payload_left = 0;

        return ngx_http_realtime_frame_control_done(p, data, f);
    }

    if (p->control == NULL) {
        return NGX_HTTP_REALTIME_FRAME_BUFFER;
    }

    if (n > p->payload_left) {
        n = (size_t) p->payload_left;
    }

    data = p->control + p->control_len;

    memcpy(data, *pos, n);

    if (p->masked) {
        ngx_http_realtime_frame_unmask(p, data, n);
    }

    *pos += n;
    p->control_len = (uint8_t) (p->control_len + n);
    p->payload_left -= n;

    if (p->payload_left) {
        return NGX_HTTP_REALTIME_FRAME_AGAIN;
    }

    return ngx_http_realtime_frame_control_done(p, p->control, f);
}


static int
ngx_http_realtime_frame_control_done(ngx_http_realtime_frame_parser_t *p,
    unsigned char *data, ngx_http_realtime_frame_t *f)
{
    p->state = NGX_HTTP_REALTIME_ST_OPCODE;

    f->opcode = p->opcode;
    f->data = data;
    f->len = p->control_len;

    if (p->opcode == NGX_HTTP_REALTIME_OP_CLOSE) {
        return ngx_http_realtime_frame_close(p, f);
    }

    return NGX_HTTP_REALTIME_FRAME_CONTROL;
}


static int
ngx_http_realtime_frame_close(ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f)
{
    unsigned  code;

    if (f->len == 0) {
        return NGX_HTTP_REALTIME_FRAME_CONTROL;
    }

    /* a body, if any, starts with a 2-byte code */

    if (f->len == 1) {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    code = ((unsigned) f->data[0] << 8) | f->data[1];

    if (!ngx_http_realtime_close_code_valid(code)) {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR);
    }

    if (ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                        f->data + 2, f->len - 2)
        != NGX_HTTP_REALTIME_UTF8_ACCEPT)
    {
        return ngx_http_realtime_frame_fail(p, f,
                                   NGX_HTTP_REALTIME_CLOSE_INVALID_DATA);
    }

    f->code = code;
    f->data += 2;
    f->len -= 2;

    return NGX_HTTP_REALTIME_FRAME_CONTROL;
}


/* mask_pos carries the key offset across reads */

static void
ngx_http_realtime_frame_unmask(ngx_http_realtime_frame_parser_t *p,
    unsigned char *buf, size_t len)
{
    size_t    i;
    uint8_t   key[8];
    uint64_t  k, w;

    /* rotate the key so that buf[i] is masked with key[i % 4] */

    for (i = 0; i < 8; i++) {
        key[i] = p->mask[(p->mask_pos + i) & 3];
    }

    memcpy(&k, key, 8);

    for (i = 0; len - i >= 8; i += 8) {
        memcpy(&w, buf + i, 8);
        w ^= k;
        memcpy(buf + i, &w, 8);
    }

    for ( /* void */ ; i < len; i++) {
        buf[i] ^= key[i & 3];
    }

    p->mask_pos = (uint8_t) ((p->mask_pos + len) & 3);
}
