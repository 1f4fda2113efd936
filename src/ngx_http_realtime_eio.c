
/*
 * Copyright (C) ngx-realtime developers
 */


#include <string.h>

#include "ngx_http_realtime_eio.h"


/* objects and arrays nested deeper than jansson itself ever parses */
#define NGX_HTTP_REALTIME_SIO_DEPTH_MAX  4096

#define ngx_http_realtime_is_digit(c)  ((c) >= '0' && (c) <= '9')


static int ngx_http_realtime_sio_nsp_char(unsigned char c);
static int ngx_http_realtime_sio_fail(const char **err, const char *reason);
static int ngx_http_realtime_sio_walk(json_t *json, unsigned attachments,
    uint64_t *seen, unsigned depth);
static size_t ngx_http_realtime_sio_decimal(char *buf, uint64_t n);


static const char  ngx_http_realtime_base64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


/* the value of each ASCII byte in base64, -1 for none */
static const signed char  ngx_http_realtime_base64_values[128] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1
};


int
ngx_http_realtime_eio_parse(const unsigned char *p, size_t len, int binary,
    ngx_http_realtime_eio_packet_t *pkt)
{
    memset(pkt, 0, sizeof(ngx_http_realtime_eio_packet_t));

    /* a binary WebSocket frame is a message, even an empty one */

    if (binary) {
        pkt->type = NGX_HTTP_REALTIME_EIO_MESSAGE;
        pkt->binary = 1;
        pkt->data = p;
        pkt->len = len;
        return 0;
    }

    if (len == 0) {
        return -1;
    }

    if (p[0] == 'b') {
        if (ngx_http_realtime_eio_base64_decode(NULL, p + 1, len - 1)
            == (size_t) -1)
        {
            return -1;
        }

        pkt->type = NGX_HTTP_REALTIME_EIO_MESSAGE;
        pkt->binary = 1;

    } else if (p[0] >= '0' && p[0] <= '6') {
        pkt->type = p[0] - '0';

    } else {
        return -1;
    }

    pkt->data = p + 1;
    pkt->len = len - 1;

    return 0;
}


/*
 * A separator that ends the payload ends the last packet and starts no
 * empty one: an empty packet is only seen between two separators or
 * before the first.
 */

int
ngx_http_realtime_eio_payload_next(const unsigned char **pos,
    const unsigned char *end, const unsigned char **packet, size_t *len)
{
    const unsigned char  *p, *sep;

    p = *pos;

    if (p >= end) {
        return 0;
    }

    sep = memchr(p, NGX_HTTP_REALTIME_EIO_SEPARATOR, end - p);

    *packet = p;

    if (sep == NULL) {
        *len = end - p;
        *pos = end;

    } else {
        *len = sep - p;
        *pos = sep + 1;
    }

    return 1;
}


size_t
ngx_http_realtime_eio_base64_encoded_len(size_t len)
{
    return (len + 2) / 3 * 4;
}


/*
 * Exact for valid input, and never less than what decode() writes for
 * any input: decode() writes nothing when the length is wrong.
 */

size_t
ngx_http_realtime_eio_base64_decoded_len(const unsigned char *p, size_t len)
{
    size_t  n;

    n = len / 4 * 3;

    if (len % 4 == 0 && len > 0 && p[len - 1] == '=') {
        n--;

        if (p[len - 2] == '=') {
            n--;
        }
    }

    return n;
}


size_t
ngx_http_realtime_eio_base64_encode(unsigned char *dst,
    const unsigned char *src, size_t len)
{
    unsigned char  *d;
    const char     *b;
    unsigned long   v;

    b = ngx_http_realtime_base64_chars;
    d = dst;

    while (len >= 3) {
        v = ((unsigned long) src[0] << 16) | (src[1] << 8) | src[2];

        *d++ = b[(v >> 18) & 0x3f];
        *d++ = b[(v >> 12) & 0x3f];
        *d++ = b[(v >> 6) & 0x3f];
        *d++ = b[v & 0x3f];

        src += 3;
        len -= 3;
    }

    if (len) {
        v = (unsigned long) src[0] << 16;

        if (len == 2) {
            v |= src[1] << 8;
        }

        *d++ = b[(v >> 18) & 0x3f];
        *d++ = b[(v >> 12) & 0x3f];
        *d++ = (len == 2) ? b[(v >> 6) & 0x3f] : '=';
        *d++ = '=';
    }

    return d - dst;
}


/*
 * Strict decoding, or only checking when dst is NULL.  Each group of
 * four is checked before anything of it is written; padding is only in
 * the last group, and the bits it leaves over must be zero, so that
 * every input has one encoding and decode-encode gives it back.
 */

size_t
ngx_http_realtime_eio_base64_decode(unsigned char *dst,
    const unsigned char *src, size_t len)
{
    int            v[4];
    size_t         i, n, k, out;
    unsigned long  w;

    if (len % 4) {
        return (size_t) -1;
    }

    out = 0;

    for (i = 0; i < len; i += 4) {
        n = 4;

        if (i + 4 == len && src[i + 3] == '=') {
            n = (src[i + 2] == '=') ? 2 : 3;
        }

        for (k = 0; k < n; k++) {
            v[k] = (src[i + k] < 128)
                   ? ngx_http_realtime_base64_values[src[i + k]] : -1;

            if (v[k] < 0) {
                return (size_t) -1;
            }
        }

        for (k = n; k < 4; k++) {
            v[k] = 0;
        }

        w = ((unsigned long) v[0] << 18) | ((unsigned long) v[1] << 12)
            | ((unsigned long) v[2] << 6) | (unsigned long) v[3];

        if ((n == 2 && (w & 0xffff)) || (n == 3 && (w & 0xff))) {
            return (size_t) -1;
        }

        if (dst) {
            dst[out] = (unsigned char) (w >> 16);

            if (n > 2) {
                dst[out + 1] = (unsigned char) (w >> 8);
            }

            if (n > 3) {
                dst[out + 2] = (unsigned char) w;
            }
        }

        out += n - 1;
    }

    return out;
}


int
ngx_http_realtime_sio_parse(const char *p, size_t len,
    ngx_http_realtime_sio_packet_t *pkt, const char **err)
{
    int       binary;
    size_t    i, start;
    uint64_t  n;

    memset(pkt, 0, sizeof(ngx_http_realtime_sio_packet_t));

    pkt->nsp = "/";
    pkt->nsp_len = 1;
    *err = NULL;

    if (len == 0) {
        return ngx_http_realtime_sio_fail(err, "empty packet");
    }

    if (p[0] < '0' || p[0] > '6') {
        return ngx_http_realtime_sio_fail(err, "unknown packet type");
    }

    pkt->type = p[0] - '0';
    binary = (pkt->type == NGX_HTTP_REALTIME_SIO_BINARY_EVENT
              || pkt->type == NGX_HTTP_REALTIME_SIO_BINARY_ACK);
    i = 1;

    if (binary) {
        n = 0;
        start = i;

        /* the bound is checked at each digit: no overflow */

        while (i < len && ngx_http_realtime_is_digit(p[i])) {
            n = n * 10 + (p[i++] - '0');

            if (n > NGX_HTTP_REALTIME_SIO_ATTACH_MAX) {
                return ngx_http_realtime_sio_fail(err,
                                                  "too many attachments");
            }
        }

        if (i == start) {
            return ngx_http_realtime_sio_fail(err, "no attachment count");
        }

        if (i == len || p[i] != '-') {
            return ngx_http_realtime_sio_fail(err,
                                              "no '-' after attachments");
        }

        pkt->attachments = (unsigned) n;
        i++;
    }

    /*
     * The namespace is what a URL path may hold; any other byte before
     * the ',' is an error, so "2/a[...]" is refused rather than read as
     * namespace "/a[...]" without data.
     */

    if (i < len && p[i] == '/') {
        start = i;

        while (i < len && p[i] != ','
               && ngx_http_realtime_sio_nsp_char((unsigned char) p[i]))
        {
            i++;
        }

        if (i < len && p[i] != ',') {
            return ngx_http_realtime_sio_fail(err, "no ',' after namespace");
        }

        if (i - start > NGX_HTTP_REALTIME_SIO_NSP_MAX) {
            return ngx_http_realtime_sio_fail(err, "namespace too long");
        }

        pkt->nsp = p + start;
        pkt->nsp_len = i - start;

        if (i < len) {
            i++;
        }
    }

    if (i < len && ngx_http_realtime_is_digit(p[i])) {
        if (pkt->type == NGX_HTTP_REALTIME_SIO_CONNECT
            || pkt->type == NGX_HTTP_REALTIME_SIO_DISCONNECT
            || pkt->type == NGX_HTTP_REALTIME_SIO_CONNECT_ERROR)
        {
            return ngx_http_realtime_sio_fail(err, "unexpected ack id");
        }

        n = 0;

        while (i < len && ngx_http_realtime_is_digit(p[i])) {
            if (n > (UINT64_C(0x7fffffffffffffff) - (p[i] - '0')) / 10) {
                return ngx_http_realtime_sio_fail(err, "ack id too big");
            }

            n = n * 10 + (p[i++] - '0');
        }

        pkt->has_id = 1;
        pkt->id = n;
    }

    if (!pkt->has_id
        && (pkt->type == NGX_HTTP_REALTIME_SIO_ACK
            || pkt->type == NGX_HTTP_REALTIME_SIO_BINARY_ACK))
    {
        return ngx_http_realtime_sio_fail(err, "no ack id");
    }

    if (i < len && p[i] != '[' && p[i] != '{') {
        return ngx_http_realtime_sio_fail(err, "bad data");
    }

    pkt->data = p + i;
    pkt->data_len = len - i;

    return 0;
}


/* RFC 3986 pchar and '/', less ',': what io("https://host/nsp") sends */

static int
ngx_http_realtime_sio_nsp_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("-._~%!$&'()*+;=:@/", c) != NULL;
}


static int
ngx_http_realtime_sio_fail(const char **err, const char *reason)
{
    *err = reason;

    return -1;
}


int
ngx_http_realtime_sio_data(ngx_http_realtime_sio_packet_t *pkt,
    json_t **data, const char **err)
{
    json_t        *json;
    const char    *reason;
    json_error_t   error;

    *data = NULL;
    *err = NULL;

    if (pkt->data_len == 0) {
        if (pkt->type == NGX_HTTP_REALTIME_SIO_CONNECT
            || pkt->type == NGX_HTTP_REALTIME_SIO_DISCONNECT)
        {
            return 0;
        }

        return ngx_http_realtime_sio_fail(err, "no data");
    }

    if (pkt->type == NGX_HTTP_REALTIME_SIO_DISCONNECT) {
        return ngx_http_realtime_sio_fail(err, "unexpected data");
    }

    /* no JSON_DISABLE_EOF_CHECK: the data is one value and nothing else */

    json = json_loadb(pkt->data, pkt->data_len, JSON_REJECT_DUPLICATES,
                      &error);

    if (json == NULL) {
        return ngx_http_realtime_sio_fail(err, "invalid JSON");
    }

    reason = NULL;

    switch (pkt->type) {

    case NGX_HTTP_REALTIME_SIO_CONNECT:
    case NGX_HTTP_REALTIME_SIO_CONNECT_ERROR:
        if (!json_is_object(json)) {
            reason = "data is not an object";
        }

        break;

    case NGX_HTTP_REALTIME_SIO_EVENT:
    case NGX_HTTP_REALTIME_SIO_BINARY_EVENT:
        if (!json_is_array(json)) {
            reason = "data is not an array";

        } else if (!json_is_string(json_array_get(json, 0))) {
            reason = "no event name";
        }

        break;

    default: /* ACK, BINARY_ACK */
        if (!json_is_array(json)) {
            reason = "data is not an array";
        }
    }

    if (reason) {
        json_decref(json);
        return ngx_http_realtime_sio_fail(err, reason);
    }

    *data = json;

    return 0;
}


int
ngx_http_realtime_sio_placeholders_check(json_t *data, unsigned attachments)
{
    uint64_t  seen, all;

    if (attachments > NGX_HTTP_REALTIME_SIO_ATTACH_MAX) {
        return -1;
    }

    seen = 0;

    if (data && ngx_http_realtime_sio_walk(data, attachments, &seen, 0)
                != 0)
    {
        return -1;
    }

    /* a bit for each num, and each num is below attachments */

    all = (attachments == 64) ? ~(uint64_t) 0
                              : ((uint64_t) 1 << attachments) - 1;

    return seen == all ? 0 : -1;
}


static int
ngx_http_realtime_sio_walk(json_t *json, unsigned attachments,
    uint64_t *seen, unsigned depth)
{
    size_t       i;
    json_t      *value;
    json_int_t   n;
    const char  *key;

    /* jansson bounds the depth of what it parses, not of what is built */

    if (depth > NGX_HTTP_REALTIME_SIO_DEPTH_MAX) {
        return -1;
    }

    if (json_is_array(json)) {
        json_array_foreach(json, i, value) {
            if (ngx_http_realtime_sio_walk(value, attachments, seen,
                                           depth + 1)
                != 0)
            {
                return -1;
            }
        }

        return 0;
    }

    if (!json_is_object(json)) {
        return 0;
    }

    if (json_object_get(json, "_placeholder") == NULL) {
        json_object_foreach(json, key, value) {
            if (ngx_http_realtime_sio_walk(value, attachments, seen,
                                           depth + 1)
                != 0)
            {
                return -1;
            }
        }

        return 0;
    }

    /* exactly {"_placeholder":true,"num":n}, n new and below attachments */

    value = json_object_get(json, "num");

    if (json_object_size(json) != 2
        || !json_is_true(json_object_get(json, "_placeholder"))
        || !json_is_integer(value))
    {
        return -1;
    }

    n = json_integer_value(value);

    if (n < 0 || n >= (json_int_t) attachments
        || (*seen & ((uint64_t) 1 << n)))
    {
        return -1;
    }

    *seen |= (uint64_t) 1 << n;

    return 0;
}


/*
 * Attachments are written for BINARY_* only, "0-" included; any nsp but
 * "/" is followed by ',' as socket.io-parser does.  Returns 0 for a
 * namespace longer than NSP_MAX, which buf has no room for.
 */

size_t
ngx_http_realtime_sio_header(char *buf, int type, unsigned attachments,
    const char *nsp, size_t nsp_len, int64_t id)
{
    size_t  n;

    if (nsp_len > NGX_HTTP_REALTIME_SIO_NSP_MAX) {
        return 0;
    }

    n = 0;
    buf[n++] = (char) ('0' + type);

    if (type == NGX_HTTP_REALTIME_SIO_BINARY_EVENT
        || type == NGX_HTTP_REALTIME_SIO_BINARY_ACK)
    {
        n += ngx_http_realtime_sio_decimal(buf + n, attachments);
        buf[n++] = '-';
    }

    if (nsp && nsp_len && !(nsp_len == 1 && nsp[0] == '/')) {
        memcpy(buf + n, nsp, nsp_len);
        n += nsp_len;
        buf[n++] = ',';
    }

    if (id >= 0) {
        n += ngx_http_realtime_sio_decimal(buf + n, (uint64_t) id);
    }

    return n;
}


static size_t
ngx_http_realtime_sio_decimal(char *buf, uint64_t n)
{
    char    tmp[20];
    size_t  len, i;

    len = 0;

    do {
        tmp[len++] = (char) ('0' + n % 10);
        n /= 10;
    } while (n);

    for (i = 0; i < len; i++) {
        buf[i] = tmp[len - 1 - i];
    }

    return len;
}


size_t
ngx_http_realtime_sio_encode(char *buf, size_t size, int type,
    unsigned attachments, const char *nsp, size_t nsp_len, int64_t id,
    json_t *data)
{
    char    header[NGX_HTTP_REALTIME_SIO_HEADER_MAX];
    size_t  h, n;

    h = ngx_http_realtime_sio_header(header, type, attachments, nsp, nsp_len,
                                     id);

    if (h == 0) {
        return 0;
    }

    n = 0;

    if (data) {

        /* json_dumpb() tells the length it needs when it does not fit */

        if (size >= h) {
            n = json_dumpb(data, buf + h, size - h, JSON_COMPACT);

        } else {
            n = json_dumpb(data, NULL, 0, JSON_COMPACT);
        }

        if (n == 0) {
            return 0;
        }
    }

    if (h + n <= size) {
        memcpy(buf, header, h);
    }

    return h + n;
}
