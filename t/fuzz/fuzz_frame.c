
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the RFC 6455 frame parser.  The first input byte
 * picks the read sizes and the message limit; the rest is parsed in
 * both masking modes, in one read and in pieces.  Any broken invariant
 * aborts, and both ways of reading must see the same events.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_frame.h"
#include "ngx_http_realtime_utf8.h"
#include "fuzz.h"


#define FNV_OFFSET  0xcbf29ce484222325ULL
#define FNV_PRIME   0x100000001b3ULL


typedef struct {
    uint64_t   max_message;
    int        masked;
    size_t     chunk;          /* read size, 0: all at once */
    int        alternate;      /* alternate chunk-sized and 1-byte reads */
} fuzz_mode_t;


typedef struct {
    uint64_t   hash;           /* of whole messages and control frames */
    unsigned   error;          /* the ERROR code, 0 if none */

    /* the message in progress */
    int        in_msg;
    unsigned   msg_op;
    uint64_t   msg_hash;
    uint64_t   msg_len;
    uint32_t   utf8;
} fuzz_run_t;


static uint64_t
fuzz_hash(uint64_t h, const unsigned char *p, size_t len)
{
    while (len--) {
        h = (h ^ *p++) * FNV_PRIME;
    }

    return h;
}


static uint64_t
fuzz_hash_event(uint64_t h, unsigned type, unsigned opcode, unsigned code,
    uint64_t len)
{
    unsigned char  b[16];
    size_t         i;

    b[0] = (unsigned char) type;
    b[1] = (unsigned char) opcode;
    b[2] = (unsigned char) (code >> 8);
    b[3] = (unsigned char) code;

    for (i = 0; i < 8; i++) {
        b[4 + i] = (unsigned char) (len >> (8 * i));
    }

    return fuzz_hash(h, b, 12);
}


static void
fuzz_data(fuzz_run_t *r, const fuzz_mode_t *m, ngx_http_realtime_frame_t *f,
    unsigned char *old, unsigned char *pos)
{
    ensure(f->opcode == NGX_HTTP_REALTIME_OP_TEXT
           || f->opcode == NGX_HTTP_REALTIME_OP_BINARY);
    ensure(f->len > 0 || f->last);

    /* a chunk is exactly the payload just consumed, inside the input */

    if (f->len) {
        ensure(f->data >= old && f->data + f->len == pos);
    }

    ensure(f->first == !r->in_msg);

    if (f->first) {
        r->in_msg = 1;
        r->msg_op = f->opcode;
        r->msg_hash = FNV_OFFSET;
        r->msg_len = 0;
        r->utf8 = NGX_HTTP_REALTIME_UTF8_ACCEPT;
    }

    ensure(f->opcode == r->msg_op);

    r->msg_hash = fuzz_hash(r->msg_hash, f->data, f->len);
    r->msg_len += f->len;

    ensure(m->max_message == 0 || r->msg_len <= m->max_message);

    if (f->opcode == NGX_HTTP_REALTIME_OP_TEXT) {
        r->utf8 = ngx_http_realtime_utf8_validate(r->utf8, f->data, f->len);
        ensure(r->utf8 != NGX_HTTP_REALTIME_UTF8_REJECT);
    }

    if (!f->last) {
        return;
    }

    ensure(f->opcode != NGX_HTTP_REALTIME_OP_TEXT
           || r->utf8 == NGX_HTTP_REALTIME_UTF8_ACCEPT);

    r->hash = fuzz_hash_event(r->hash, 1, r->msg_op, 0, r->msg_len);
    r->hash = (r->hash ^ r->msg_hash) * FNV_PRIME;
    r->in_msg = 0;
}


static void
fuzz_control(fuzz_run_t *r, ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f, unsigned char *in, unsigned char *in_end)
{
    ensure(f->opcode == NGX_HTTP_REALTIME_OP_CLOSE
           || f->opcode == NGX_HTTP_REALTIME_OP_PING
           || f->opcode == NGX_HTTP_REALTIME_OP_PONG);
    ensure(f->len <= NGX_HTTP_REALTIME_CONTROL_MAX);
    ensure((f->data >= in && f->data + f->len <= in_end)
           || (p->control && f->data >= p->control
               && f->data + f->len
                  <= p->control + NGX_HTTP_REALTIME_CONTROL_MAX));

    if (f->opcode != NGX_HTTP_REALTIME_OP_CLOSE) {
        ensure(f->code == 0);

    } else if (f->code == 0) {
        ensure(f->len == 0);

    } else {
        ensure(ngx_http_realtime_close_code_valid(f->code));
        ensure(ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                               f->data, f->len)
               == NGX_HTTP_REALTIME_UTF8_ACCEPT);
    }

    r->hash = fuzz_hash_event(r->hash, 2, f->opcode, f->code, f->len);
    r->hash = fuzz_hash(r->hash, f->data, f->len);
}


static void
fuzz_error(fuzz_run_t *r, const fuzz_mode_t *m,
    ngx_http_realtime_frame_parser_t *p, unsigned char **pos,
    unsigned char *last, unsigned code)
{
    unsigned char              *old;
    ngx_http_realtime_frame_t   f;

    ensure(code == NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR
           || code == NGX_HTTP_REALTIME_CLOSE_INVALID_DATA
           || code == NGX_HTTP_REALTIME_CLOSE_TOO_BIG);
    ensure(code != NGX_HTTP_REALTIME_CLOSE_TOO_BIG || m->max_message);

    /* once failed, always failed, whatever the input */

    old = *pos;
    ensure(ngx_http_realtime_frame_parse(p, pos, last, &f)
           == NGX_HTTP_REALTIME_FRAME_ERROR);
    ensure(f.code == code && *pos >= old && *pos <= last);

    r->error = code;
}


static void
fuzz_parse(fuzz_run_t *r, const fuzz_mode_t *m, const uint8_t *in,
    size_t len)
{
    int                                rc;
    size_t                             i, n;
    unsigned char                     *buf, *pos, *end, *last, *old;
    ngx_http_realtime_frame_t          f;
    ngx_http_realtime_frame_parser_t   p;

    memset(r, 0, sizeof(fuzz_run_t));
    r->hash = FNV_OFFSET;

    /* an exact-size writable copy: ASan catches reads past the end */

    buf = malloc(len ? len : 1);
    ensure(buf != NULL);
    memcpy(buf, in, len);

    ngx_http_realtime_frame_parser_init(&p, m->max_message, m->masked);

    pos = buf;
    last = buf + len;

    for (i = 0; pos < last || i == 0; i++) {

        n = (m->chunk == 0) ? len : (m->alternate && (i & 1)) ? 1 : m->chunk;
        end = ((size_t) (last - pos) > n) ? pos + n : last;

        for ( ;; ) {
            old = pos;
            rc = ngx_http_realtime_frame_parse(&p, &pos, end, &f);

            ensure(pos >= old && pos <= end);

            if (rc == NGX_HTTP_REALTIME_FRAME_AGAIN) {
                ensure(pos == end);
                break;
            }

            if (rc == NGX_HTTP_REALTIME_FRAME_DATA) {
                fuzz_data(r, m, &f, old, pos);
                continue;
            }

            if (rc == NGX_HTTP_REALTIME_FRAME_CONTROL) {
                fuzz_control(r, &p, &f, buf, last);
                continue;
            }

            if (rc == NGX_HTTP_REALTIME_FRAME_BUFFER) {
                /* asked once, only for a frame not all in the input */
                ensure(p.control == NULL
                       && (uint64_t) (end - pos) < p.payload_left);
                p.control = malloc(NGX_HTTP_REALTIME_CONTROL_MAX);
                ensure(p.control != NULL);
                continue;
            }

            ensure(rc == NGX_HTTP_REALTIME_FRAME_ERROR);

            fuzz_error(r, m, &p, &pos, last, f.code);
            free(p.control);
            free(buf);
            return;
        }
    }

    /* whatever part of a message arrived has been handed out */

    if (r->in_msg) {
        r->hash = fuzz_hash_event(r->hash, 3, r->msg_op, 0, r->msg_len);
        r->hash = (r->hash ^ r->msg_hash) * FNV_PRIME;
    }

    free(p.control);
    free(buf);
}


static void
fuzz_utf8(const uint8_t *in, size_t len, size_t cut)
{
    uint32_t  whole, split;

    if (cut > len) {
        cut = len;
    }

    whole = ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                            in, len);

    split = ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                            in, cut);
    split = ngx_http_realtime_utf8_validate(split, in + cut, len - cut);

    ensure(whole == split);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t  limits[4] = { 0, 4, 64, 300 };

    int          masked;
    unsigned     sel;
    fuzz_run_t   whole, split;
    fuzz_mode_t  m;

    if (size == 0) {
        return 0;
    }

    sel = data[0];
    data++;
    size--;

    fuzz_utf8(data, size, sel);

    for (masked = 0; masked <= 1; masked++) {
        m.max_message = limits[(sel >> 4) & 3];
        m.masked = masked;
        m.chunk = 0;
        m.alternate = 0;

        fuzz_parse(&whole, &m, data, size);

        m.chunk = (sel & 0x0f) + 1;
        m.alternate = (sel & 0x40) != 0;

        fuzz_parse(&split, &m, data, size);

        ensure(whole.hash == split.hash && whole.error == split.error);
    }

    return 0;
}
