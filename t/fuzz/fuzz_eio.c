
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the Engine.IO and Socket.IO packet codec.  The
 * input is a polling payload: its packets must tile it, each is parsed
 * as text and as a binary frame, "b" packets are checked against a
 * reference of canonical base64 and must decode and encode back, and
 * any packet's bytes must base64-encode and decode back.  Message
 * packets are parsed as Socket.IO: the header must be consistent and
 * written again must read back the same, the data must have the type
 * of the packet, placeholders are checked against a reference, and the
 * packet encoded again must read back equal and encode to the same
 * bytes.  Any broken invariant aborts.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_eio.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
fuzz_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}


/* canonical padded base64: the last char before "=" has no spare bits */

static int
fuzz_b64_valid(const unsigned char *p, size_t len)
{
    size_t  i, pad;

    if (len % 4) {
        return 0;
    }

    pad = 0;

    if (len && p[len - 1] == '=') {
        pad = (p[len - 2] == '=') ? 2 : 1;
    }

    for (i = 0; i < len - pad; i++) {
        if (!fuzz_b64_char(p[i])) {
            return 0;
        }
    }

    if (pad == 1) {
        return strchr("AEIMQUYcgkosw048", p[len - 2]) != NULL;
    }

    if (pad == 2) {
        return strchr("AQgw", p[len - 3]) != NULL;
    }

    return 1;
}


/* any bytes encode and decode back */

static void
fuzz_b64_bytes(const unsigned char *p, size_t len)
{
    size_t          n;
    unsigned char  *enc, *dec;

    n = ngx_http_realtime_eio_base64_encoded_len(len);
    enc = malloc(n + 1);
    ensure(enc != NULL);

    ensure(ngx_http_realtime_eio_base64_encode(enc, p, len) == n);
    ensure(fuzz_b64_valid(enc, n));
    ensure(ngx_http_realtime_eio_base64_decoded_len(enc, n) == len);

    dec = malloc(len + 1);
    ensure(dec != NULL);

    ensure(ngx_http_realtime_eio_base64_decode(dec, enc, n) == len);
    ensure(len == 0 || memcmp(dec, p, len) == 0);

    free(enc);
    free(dec);
}


/* base64 text: valid as the reference says, then decodes and back */

static void
fuzz_b64_text(const unsigned char *p, size_t len)
{
    int             valid;
    size_t          n, r;
    unsigned char  *dec, *enc;

    valid = fuzz_b64_valid(p, len);

    n = ngx_http_realtime_eio_base64_decoded_len(p, len);
    ensure(n <= len / 4 * 3);

    /* exactly the size: ASan sees any write past it */

    dec = malloc(n ? n : 1);
    ensure(dec != NULL);

    r = ngx_http_realtime_eio_base64_decode(dec, p, len);
    ensure(ngx_http_realtime_eio_base64_decode(NULL, p, len) == r);

    if (!valid) {
        ensure(r == (size_t) -1);
        free(dec);
        return;
    }

    ensure(r == n);
    ensure(ngx_http_realtime_eio_base64_encoded_len(n) == len);

    enc = malloc(len ? len : 1);
    ensure(enc != NULL);

    ensure(ngx_http_realtime_eio_base64_encode(enc, dec, n) == len);
    ensure(len == 0 || memcmp(enc, p, len) == 0);

    free(enc);
    free(dec);
}


/* the placeholders reference: -1 on anything wrong */

static int
fuzz_placeholders(json_t *json, unsigned attachments, unsigned char *seen)
{
    size_t       i;
    json_t      *v;
    json_int_t   n;
    const char  *key;

    if (json_is_array(json)) {
        json_array_foreach(json, i, v) {
            if (fuzz_placeholders(v, attachments, seen) != 0) {
                return -1;
            }
        }

        return 0;
    }

    if (!json_is_object(json)) {
        return 0;
    }

    if (json_object_get(json, "_placeholder") == NULL) {
        json_object_foreach(json, key, v) {
            if (fuzz_placeholders(v, attachments, seen) != 0) {
                return -1;
            }
        }

        return 0;
    }

    v = json_object_get(json, "num");

    if (json_object_size(json) != 2 || !json_is_integer(v)
        || !json_is_true(json_object_get(json, "_placeholder")))
    {
        return -1;
    }

    n = json_integer_value(v);

    if (n < 0 || n >= (json_int_t) attachments || seen[n]) {
        return -1;
    }

    seen[n] = 1;

    return 0;
}


static int
fuzz_placeholders_ref(json_t *json, unsigned attachments)
{
    unsigned       i;
    unsigned char  seen[NGX_HTTP_REALTIME_SIO_ATTACH_MAX];

    memset(seen, 0, sizeof(seen));

    if (json && fuzz_placeholders(json, attachments, seen) != 0) {
        return -1;
    }

    for (i = 0; i < attachments; i++) {
        if (!seen[i]) {
            return -1;
        }
    }

    return 0;
}


static int
fuzz_id_type(int type)
{
    return type == NGX_HTTP_REALTIME_SIO_EVENT
           || type == NGX_HTTP_REALTIME_SIO_ACK
           || type == NGX_HTTP_REALTIME_SIO_BINARY_EVENT
           || type == NGX_HTTP_REALTIME_SIO_BINARY_ACK;
}


static int
fuzz_binary_type(int type)
{
    return type == NGX_HTTP_REALTIME_SIO_BINARY_EVENT
           || type == NGX_HTTP_REALTIME_SIO_BINARY_ACK;
}


static void
fuzz_same(ngx_http_realtime_sio_packet_t *a, ngx_http_realtime_sio_packet_t *b)
{
    ensure(a->type == b->type);
    ensure(a->attachments == b->attachments);
    ensure(a->nsp_len == b->nsp_len);
    ensure(memcmp(a->nsp, b->nsp, a->nsp_len) == 0);
    ensure(a->has_id == b->has_id && a->id == b->id);
}


static int64_t
fuzz_id(ngx_http_realtime_sio_packet_t *pkt)
{
    return pkt->has_id ? (int64_t) pkt->id : -1;
}


/* a parsed packet is consistent with its input p/len */

static void
fuzz_header(ngx_http_realtime_sio_packet_t *pkt, const char *p, size_t len)
{
    ensure(pkt->type >= 0 && pkt->type <= 6);
    ensure(pkt->type == p[0] - '0');
    ensure(pkt->attachments <= NGX_HTTP_REALTIME_SIO_ATTACH_MAX);
    ensure(fuzz_binary_type(pkt->type) || pkt->attachments == 0);

    ensure(pkt->nsp_len >= 1
           && pkt->nsp_len <= NGX_HTTP_REALTIME_SIO_NSP_MAX);
    ensure(pkt->nsp[0] == '/');
    ensure(memchr(pkt->nsp, ',', pkt->nsp_len) == NULL);
    ensure(pkt->nsp_len == 1
           || (pkt->nsp > p && pkt->nsp + pkt->nsp_len <= p + len));

    ensure(pkt->has_id == 0 || pkt->has_id == 1);
    ensure(pkt->id <= (uint64_t) INT64_MAX);
    ensure(pkt->has_id || pkt->id == 0);
    ensure(!pkt->has_id || fuzz_id_type(pkt->type));
    ensure(pkt->has_id || (pkt->type != NGX_HTTP_REALTIME_SIO_ACK
                           && pkt->type != NGX_HTTP_REALTIME_SIO_BINARY_ACK));

    ensure(pkt->data != NULL && pkt->data + pkt->data_len == p + len);
    ensure(pkt->data_len == 0 || pkt->data[0] == '[' || pkt->data[0] == '{');
}


static void
fuzz_data_type(ngx_http_realtime_sio_packet_t *pkt, json_t *json)
{
    ensure(json->refcount == 1);

    switch (pkt->type) {

    case NGX_HTTP_REALTIME_SIO_CONNECT:
    case NGX_HTTP_REALTIME_SIO_CONNECT_ERROR:
        ensure(json_is_object(json));
        break;

    case NGX_HTTP_REALTIME_SIO_EVENT:
    case NGX_HTTP_REALTIME_SIO_BINARY_EVENT:
        ensure(json_is_array(json));
        ensure(json_is_string(json_array_get(json, 0)));
        break;

    case NGX_HTTP_REALTIME_SIO_ACK:
    case NGX_HTTP_REALTIME_SIO_BINARY_ACK:
        ensure(json_is_array(json));
        break;

    default:
        ensure(0);
    }
}


/* encodes pkt with json, parses it back; the bytes are canonical */

static void
fuzz_encode(ngx_http_realtime_sio_packet_t *pkt, json_t *json, int ph)
{
    char                            *buf, *again;
    size_t                           n;
    json_t                          *back;
    const char                      *err;
    ngx_http_realtime_sio_packet_t   pkt2;

    n = ngx_http_realtime_sio_encode(NULL, 0, pkt->type, pkt->attachments,
                                     pkt->nsp, pkt->nsp_len, fuzz_id(pkt),
                                     json);
    ensure(n > 0);

    /* one byte short: the same length asked for, nothing written past */

    buf = malloc(n);
    ensure(buf != NULL);

    ensure(ngx_http_realtime_sio_encode(buf, n - 1, pkt->type,
                                        pkt->attachments, pkt->nsp,
                                        pkt->nsp_len, fuzz_id(pkt), json)
           == n);
    ensure(ngx_http_realtime_sio_encode(buf, n, pkt->type, pkt->attachments,
                                        pkt->nsp, pkt->nsp_len, fuzz_id(pkt),
                                        json)
           == n);

    ensure(ngx_http_realtime_sio_parse(buf, n, &pkt2, &err) == 0);
    fuzz_header(&pkt2, buf, n);
    fuzz_same(pkt, &pkt2);

    back = (json_t *) 1;
    ensure(ngx_http_realtime_sio_data(&pkt2, &back, &err) == 0);
    ensure(err == NULL);
    ensure((json == NULL && back == NULL)
           || (json && back && json_equal(json, back)));
    ensure(ngx_http_realtime_sio_placeholders_check(back, pkt2.attachments)
           == ph);

    /* encoding what was read back gives the same bytes */

    again = malloc(n);
    ensure(again != NULL);

    ensure(ngx_http_realtime_sio_encode(again, n, pkt2.type,
                                        pkt2.attachments, pkt2.nsp,
                                        pkt2.nsp_len, fuzz_id(&pkt2), back)
           == n);
    ensure(memcmp(buf, again, n) == 0);

    if (back) {
        json_decref(back);
    }

    free(again);
    free(buf);
}


static void
fuzz_sio(const char *p, size_t len)
{
    int                              rc, ph;
    char                            *buf;
    size_t                           h, i;
    json_t                          *json;
    const char                      *err;
    ngx_http_realtime_sio_packet_t   pkt, pkt2;

    err = NULL;
    rc = ngx_http_realtime_sio_parse(p, len, &pkt, &err);

    if (rc != 0) {
        ensure(rc == -1);
        ensure(err != NULL && err[0] != '\0');

        for (i = 0; err[i]; i++) {
            ensure(err[i] >= 0x20 && err[i] < 0x7f);
        }

        return;
    }

    ensure(err == NULL);
    fuzz_header(&pkt, p, len);

    /* the header written again, with the data as it is, reads back */

    buf = malloc(NGX_HTTP_REALTIME_SIO_HEADER_MAX + pkt.data_len);
    ensure(buf != NULL);

    h = ngx_http_realtime_sio_header(buf, pkt.type, pkt.attachments,
                                     pkt.nsp, pkt.nsp_len, fuzz_id(&pkt));
    ensure(h > 0 && h <= NGX_HTTP_REALTIME_SIO_HEADER_MAX);
    ensure(h <= len + 1);

    memcpy(buf + h, pkt.data, pkt.data_len);

    ensure(ngx_http_realtime_sio_parse(buf, h + pkt.data_len, &pkt2, &err)
           == 0);
    fuzz_header(&pkt2, buf, h + pkt.data_len);
    fuzz_same(&pkt, &pkt2);
    ensure(pkt2.data_len == pkt.data_len);

    free(buf);

    json = (json_t *) 1;
    err = NULL;
    rc = ngx_http_realtime_sio_data(&pkt, &json, &err);

    if (rc != 0) {
        ensure(rc == -1 && json == NULL);
        ensure(err != NULL && err[0] != '\0');
        return;
    }

    ensure(err == NULL);

    if (json == NULL) {
        ensure(pkt.data_len == 0);
        ensure(pkt.type == NGX_HTTP_REALTIME_SIO_CONNECT
               || pkt.type == NGX_HTTP_REALTIME_SIO_DISCONNECT);

    } else {
        ensure(pkt.type != NGX_HTTP_REALTIME_SIO_DISCONNECT);
        fuzz_data_type(&pkt, json);
    }

    ph = ngx_http_realtime_sio_placeholders_check(json, pkt.attachments);
    ensure(ph == 0 || ph == -1);
    ensure(ph == fuzz_placeholders_ref(json, pkt.attachments));

    fuzz_encode(&pkt, json, ph);

    if (json) {
        ensure(json->refcount == 1);
        json_decref(json);
    }
}


static void
fuzz_packet(const unsigned char *p, size_t len)
{
    int                              rc;
    ngx_http_realtime_eio_packet_t   pkt;

    ensure(ngx_http_realtime_eio_parse(p, len, 1, &pkt) == 0);
    ensure(pkt.type == NGX_HTTP_REALTIME_EIO_MESSAGE && pkt.binary == 1);
    ensure(pkt.data == p && pkt.len == len);

    fuzz_b64_bytes(p, len);
    fuzz_b64_text(p, len);

    rc = ngx_http_realtime_eio_parse(p, len, 0, &pkt);

    if (len == 0) {
        ensure(rc == -1);
        return;
    }

    if (p[0] == 'b') {
        ensure(rc == (fuzz_b64_valid(p + 1, len - 1) ? 0 : -1));

        fuzz_b64_text(p + 1, len - 1);

    } else {
        ensure(rc == ((p[0] >= '0' && p[0] <= '6') ? 0 : -1));
    }

    if (rc != 0) {
        return;
    }

    ensure(pkt.data == p + 1 && pkt.len == len - 1);
    ensure(pkt.binary == (p[0] == 'b'));
    ensure(pkt.type == (pkt.binary ? NGX_HTTP_REALTIME_EIO_MESSAGE
                                   : p[0] - '0'));

    if (pkt.type == NGX_HTTP_REALTIME_EIO_MESSAGE && !pkt.binary) {
        fuzz_sio((const char *) pkt.data, pkt.len);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                len, seen;
    const unsigned char  *pos, *end, *p, *expect;

    pos = data;
    end = data + size;
    expect = data;
    seen = 0;

    /* the packets tile the payload, separators between them */

    while (ngx_http_realtime_eio_payload_next(&pos, end, &p, &len)) {
        ensure(p == expect);
        ensure(len <= (size_t) (end - p));
        ensure(memchr(p, NGX_HTTP_REALTIME_EIO_SEPARATOR, len) == NULL);

        if (p + len == end) {
            ensure(pos == end);

        } else {
            ensure(p[len] == NGX_HTTP_REALTIME_EIO_SEPARATOR);
            ensure(pos == p + len + 1);
        }

        seen += (size_t) (pos - p);
        expect = pos;

        fuzz_packet(p, len);
    }

    ensure(pos == end && seen == size);
    ensure(ngx_http_realtime_eio_payload_next(&pos, end, &p, &len) == 0);

    return 0;
}
