
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_deflate: permessage-deflate (RFC 7692) on a WebSocket
 * connection, the codec being ngx_http_realtime_deflate.c.  The offer
 * is taken at the handshake; a compressed client message is inflated
 * whole, within realtime_max_message_size, before the adapter sees it;
 * an outgoing data frame is deflated once per window size and the
 * compressed frame hangs on it as a derived msg_t (as a Socket.IO form
 * does), shared by every receiver that negotiated that window.
 *
 * Both sides agree to no context takeover, so that a connection keeps
 * no zlib state: each worker has one inflater, one deflater per window
 * size and level in use, and one scratch buffer for each direction.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_deflate.h"
#include "ngx_http_realtime_utf8.h"


/* what the inflate and deflate buffers keep between messages, at most */
#define NGX_HTTP_REALTIME_INFLATE_KEEP   (256 * 1024)
#define NGX_HTTP_REALTIME_INFLATE_FIRST  (16 * 1024)

/* the inflated limit where realtime_max_message_size is 0 */
#define NGX_HTTP_REALTIME_INFLATE_MAX    (16 * 1024 * 1024)

#define NGX_HTTP_REALTIME_DEFLATE_BITS                                        \
    (NGX_HTTP_REALTIME_PMD_BITS_MAX - NGX_HTTP_REALTIME_PMD_BITS_MIN + 1)

/* zlib's levels, 1-9 */
#define NGX_HTTP_REALTIME_DEFLATE_LEVELS  9


static void ngx_http_realtime_deflate_fail(ngx_http_realtime_conn_t *ws,
    ngx_uint_t code);
static ngx_int_t ngx_http_realtime_inflate_room(size_t need);
static z_stream *ngx_http_realtime_deflater(ngx_uint_t bits,
    ngx_uint_t level, ngx_log_t *log);


static ngx_http_realtime_pmd_inflater_t  ngx_http_realtime_inflater;
static u_char    *ngx_http_realtime_inflate_buf;
static size_t     ngx_http_realtime_inflate_size;

static z_stream  *ngx_http_realtime_deflaters[NGX_HTTP_REALTIME_DEFLATE_BITS]
                                    [NGX_HTTP_REALTIME_DEFLATE_LEVELS];
static u_char    *ngx_http_realtime_deflate_buf;
static size_t     ngx_http_realtime_deflate_size;

/* the keys of the compressed forms on a msg_t's derived list */
static ngx_str_t  ngx_http_realtime_deflate_keys[] = {
    ngx_string("\0deflate9"), ngx_string("\0deflate10"),
    ngx_string("\0deflate11"), ngx_string("\0deflate12"),
    ngx_string("\0deflate13"), ngx_string("\0deflate14"),
    ngx_string("\0deflate15")
};


/*
 * The first acceptable offer of the request's Sec-WebSocket-Extensions
 * headers: NGX_OK with the answer in *answer and ws set to compress,
 * NGX_DECLINED without one (or realtime_deflate off).
 */

ngx_int_t
ngx_http_realtime_deflate_negotiate(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws, ngx_str_t *answer)
{
    u_char                          buf[NGX_HTTP_REALTIME_PMD_RESPONSE_MAX];
    size_t                          len;
    ngx_uint_t                      i;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_realtime_pmd_params_t  params;

    if (!ws->conf->deflate) {
        return NGX_DECLINED;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Sec-WebSocket-Extensions") - 1
            || ngx_strncasecmp(h[i].key.data,
                               (u_char *) "Sec-WebSocket-Extensions", 24)
               != 0)
        {
            continue;
        }

        if (ngx_http_realtime_pmd_negotiate(h[i].value.data, h[i].value.len,
                                            &params, buf, &len))
        {
            break;
        }
    }

    answer->data = ngx_pnalloc(r->pool, len);
    if (answer->data == NULL) {
        return NGX_ERROR;
    }

    answer->len = len;
    ngx_memcpy(answer->data, buf, len);

    ws->deflate = 1;
    ws->deflate_bits = params.server_bits;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime deflate: negotiated \"%V\"", answer);

    return NGX_OK;
}


/*
 * A compressed message, all of its bytes: inflated into the worker's
 * buffer, checked (1009 past the limit, 1007 if not deflate or not
 * UTF-8 text) and given to the adapter.
 */

ngx_int_t
ngx_http_realtime_deflate_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    int         rc;
    size_t      max, have, n;
    ngx_int_t   result;
    ngx_uint_t  code;

    max = ws->conf->max_message_size ? ws->conf->max_message_size
                                     : NGX_HTTP_REALTIME_INFLATE_MAX;

    if (len == 0) {
        /* what ws and python websockets send for an empty message */
        return ngx_http_realtime_message(ws, opcode, data, 0);
    }

    if (ngx_http_realtime_pmd_inflate_start(&ngx_http_realtime_inflater,
                                            data, len)
        != NGX_HTTP_REALTIME_PMD_DONE)
    {
        return NGX_ERROR;
    }

    have = 0;

    for ( ;; ) {
        /* one byte past the limit tells a message that is too big */

        n = ngx_min(max + 1, ngx_max(have * 2,
                                     NGX_HTTP_REALTIME_INFLATE_FIRST));

        if (ngx_http_realtime_inflate_room(n) != NGX_OK) {
            result = NGX_ERROR;
            goto done;
        }

        rc = ngx_http_realtime_pmd_inflate(&ngx_http_realtime_inflater,
                                   ngx_http_realtime_inflate_buf + have,
                                   n - have, &n);
        have += n;

        if (rc != NGX_HTTP_REALTIME_PMD_FULL) {
            break;
        }

        if (have > max) {
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "realtime deflate: a message of %uz bytes "
                          "inflates past %uz, closing", len, max);
            ngx_http_realtime_deflate_fail(ws,
                                           NGX_HTTP_REALTIME_CLOSE_TOO_BIG);
            result = NGX_OK;
            goto done;
        }
    }

    if (rc != NGX_HTTP_REALTIME_PMD_DONE || have > max
        || (opcode == NGX_HTTP_REALTIME_OP_TEXT
            && ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                               ngx_http_realtime_inflate_buf,
                                               have)
               != NGX_HTTP_REALTIME_UTF8_ACCEPT))
    {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime deflate: client sent %s, closing",
                      rc != NGX_HTTP_REALTIME_PMD_DONE ? "a bad deflate stream"
                      : have > max ? "a message too big" : "invalid text");
        code = (rc == NGX_HTTP_REALTIME_PMD_DONE && have > max)
               ? NGX_HTTP_REALTIME_CLOSE_TOO_BIG
               : NGX_HTTP_REALTIME_CLOSE_INVALID_DATA;
        ngx_http_realtime_deflate_fail(ws, code);
        result = NGX_OK;
        goto done;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "realtime deflate: %uz bytes inflated to %uz", len, have);

    result = ngx_http_realtime_message(ws, opcode,
                                       ngx_http_realtime_inflate_buf, have);

done:

    /* a worker keeps no big buffer for one big message */

    if (ngx_http_realtime_inflate_size > NGX_HTTP_REALTIME_INFLATE_KEEP) {
        ngx_free(ngx_http_realtime_inflate_buf);
        ngx_http_realtime_inflate_buf = NULL;
        ngx_http_realtime_inflate_size = 0;
    }

    return result;
}


/*
 * The WebSocket connection fails (RFC 6455 7.1.7) as on a bad frame:
 * nothing more is read, and TCP is closed once the close frame is out.
 */

static void
ngx_http_realtime_deflate_fail(ngx_http_realtime_conn_t *ws, ngx_uint_t code)
{
    ws->parser.failed = 1;
    ws->parser.error = (uint16_t) code;
    ngx_http_realtime_close(ws, code, NULL);
}


/* the worker's inflate buffer, at least need bytes, what it held kept */

static ngx_int_t
ngx_http_realtime_inflate_room(size_t need)
{
    u_char  *p;

    if (ngx_http_realtime_inflate_size >= need) {
        return NGX_OK;
    }

    p = ngx_alloc(need, ngx_cycle->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_inflate_buf) {
        ngx_memcpy(p, ngx_http_realtime_inflate_buf,
                   ngx_http_realtime_inflate_size);
        ngx_free(ngx_http_realtime_inflate_buf);
    }

    ngx_http_realtime_inflate_buf = p;
    ngx_http_realtime_inflate_size = need;

    return NGX_OK;
}


/*
 * The frame to send ws instead of msg: its compressed form for ws's
 * window, made by the first receiver that needs it; msg itself for a
 * control frame, a short one, or one that deflate does not shrink.
 * The form is keyed by window only: receivers in locations of another
 * realtime_deflate_level share the first one made, as good a stream.
 */

ngx_http_realtime_msg_t *
ngx_http_realtime_deflate_frame(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg)
{
    size_t                    hlen, plen, n, size;
    u_char                   *payload;
    z_stream                 *zs;
    ngx_str_t                *key;
    ngx_http_realtime_msg_t  *d;

    if (msg->persistent || msg->len < 2
        || ((msg->data[0] & 0x0f) != NGX_HTTP_REALTIME_OP_TEXT
            && (msg->data[0] & 0x0f) != NGX_HTTP_REALTIME_OP_BINARY))
    {
        return msg;
    }

    hlen = ngx_http_realtime_frame_header_of(msg->data);
    payload = msg->data + hlen;
    plen = msg->len - hlen;

    if (plen < ws->conf->deflate_min_length) {
        return msg;
    }

    key = &ngx_http_realtime_deflate_keys[ws->deflate_bits
                                          - NGX_HTTP_REALTIME_PMD_BITS_MIN];

    for (d = msg->derived; d; d = d->next) {
        if (d->key.data == key->data) {
            /* an empty form: deflate did not shrink this one */
            return d->len ? d : msg;
        }
    }

    zs = ngx_http_realtime_deflater(ws->deflate_bits, ws->conf->deflate_level,
                                    ws->connection->log);
    if (zs == NULL) {
        return msg;
    }

    size = ngx_http_realtime_pmd_bound(plen);

    if (size > ngx_http_realtime_deflate_size) {
        ngx_free(ngx_http_realtime_deflate_buf);

        ngx_http_realtime_deflate_buf = ngx_alloc(size, ws->connection->log);
        if (ngx_http_realtime_deflate_buf == NULL) {
            ngx_http_realtime_deflate_size = 0;
            return msg;
        }

        ngx_http_realtime_deflate_size = size;
    }

    n = ngx_http_realtime_pmd_deflate(zs, payload, plen,
                                      ngx_http_realtime_deflate_buf);

    if (n == 0 || n + ngx_http_realtime_frame_header_size(n) >= msg->len) {
        /* remembered as an empty form, so that it is tried once */
        n = 0;
        d = ngx_http_realtime_msg_alloc(0);

    } else {
        hlen = ngx_http_realtime_frame_header_size(n);
        d = ngx_http_realtime_msg_alloc(hlen + n);
    }

    if (d && n) {
        ngx_http_realtime_frame_header(d->data, msg->data[0] & 0x0f, n);
        d->data[0] |= NGX_HTTP_REALTIME_FRAME_RSV1;
        ngx_memcpy(d->data + hlen, ngx_http_realtime_deflate_buf, n);
        d->len = hlen + n;
    }

    /* a worker keeps no big buffer for one big publication */

    if (ngx_http_realtime_deflate_size > NGX_HTTP_REALTIME_INFLATE_KEEP) {
        ngx_free(ngx_http_realtime_deflate_buf);
        ngx_http_realtime_deflate_buf = NULL;
        ngx_http_realtime_deflate_size = 0;
    }

    if (d == NULL) {
        return msg;
    }

    d->key = *key;
    d->time = msg->time;
    d->next = msg->derived;
    msg->derived = d;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "realtime deflate: %uz bytes to %uz, window %ui",
                   plen, n, (ngx_uint_t) ws->deflate_bits);

    return n ? d : msg;
}


static z_stream *
ngx_http_realtime_deflater(ngx_uint_t bits, ngx_uint_t level, ngx_log_t *log)
{
    z_stream  **zs;

    zs = &ngx_http_realtime_deflaters[bits - NGX_HTTP_REALTIME_PMD_BITS_MIN]
                                     [level - 1];

    if (*zs) {
        return *zs;
    }

    *zs = ngx_alloc(sizeof(z_stream), log);
    if (*zs == NULL) {
        return NULL;
    }

    if (ngx_http_realtime_pmd_deflater_init(*zs, (int) level, bits) != Z_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "realtime deflate: deflateInit2() failed");
        ngx_free(*zs);
        *zs = NULL;
        return NULL;
    }

    return *zs;
}


void
ngx_http_realtime_deflate_exit_process(void)
{
    ngx_uint_t  i, j;

    for (i = 0; i < NGX_HTTP_REALTIME_DEFLATE_BITS; i++) {
        for (j = 0; j < NGX_HTTP_REALTIME_DEFLATE_LEVELS; j++) {
            if (ngx_http_realtime_deflaters[i][j]) {
                deflateEnd(ngx_http_realtime_deflaters[i][j]);
                ngx_free(ngx_http_realtime_deflaters[i][j]);
                ngx_http_realtime_deflaters[i][j] = NULL;
            }
        }
    }

    if (ngx_http_realtime_inflater.started) {
        inflateEnd(&ngx_http_realtime_inflater.zs);
        ngx_http_realtime_inflater.started = 0;
    }

    ngx_free(ngx_http_realtime_inflate_buf);
    ngx_http_realtime_inflate_buf = NULL;
    ngx_http_realtime_inflate_size = 0;

    ngx_free(ngx_http_realtime_deflate_buf);
    ngx_http_realtime_deflate_buf = NULL;
    ngx_http_realtime_deflate_size = 0;
}
