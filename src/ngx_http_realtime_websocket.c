
/*
 * Copyright (C) ngx-realtime developers
 *
 * The opening handshake, RFC 6455 4.2.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ngx_sha1.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_jwt.h"
#include "ngx_http_realtime_utf8.h"


#define NGX_HTTP_REALTIME_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* base64 of a 16-byte key */
#define NGX_HTTP_REALTIME_KEY_LEN     24
#define NGX_HTTP_REALTIME_ACCEPT_LEN  28

#define NGX_HTTP_REALTIME_UPGRADE_REQUIRED  426


typedef struct {
    ngx_str_t   upgrade;
    ngx_uint_t  connection_upgrade;
    ngx_str_t   key;
    ngx_str_t   version;
    ngx_str_t   origin;
    ngx_uint_t  nkeys;
    ngx_uint_t  nversions;
    ngx_list_t  *headers;
} ngx_http_realtime_handshake_t;


static void ngx_http_realtime_read_headers(ngx_http_request_t *r,
    ngx_http_realtime_handshake_t *hs);
static ngx_uint_t ngx_http_realtime_has_token(ngx_str_t *value, char *token,
    size_t len);
static ngx_int_t ngx_http_realtime_upgrade_required(ngx_http_request_t *r,
    char *message);
static ngx_int_t ngx_http_realtime_check_key(ngx_str_t *key);
static ngx_int_t ngx_http_realtime_select_subprotocol(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *selected);
static ngx_int_t ngx_http_realtime_accept_headers(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *protocol);
static ngx_table_elt_t *ngx_http_realtime_add_header(ngx_http_request_t *r,
    char *name, size_t len, ngx_str_t *value);
static void ngx_http_realtime_flush_handshake(ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_register(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s);
static void ngx_http_realtime_handshake_cleanup(void *data);


ngx_int_t
ngx_http_realtime_handshake(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    ngx_int_t                       rc;
    ngx_str_t                       protocol, extensions;
    ngx_http_realtime_ctx_t        *ctx;
    ngx_http_realtime_conn_t       *ws;
    ngx_http_realtime_handshake_t   hs;

    const ngx_http_realtime_adapter_t  *adapter;

    if (r->method != NGX_HTTP_GET) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "BAD_REQUEST",
                                            "WebSocket handshake must use GET");
    }

    if (r->http_version != NGX_HTTP_VERSION_11) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "BAD_REQUEST",
                                            "WebSocket needs HTTP/1.1");
    }

    ngx_http_realtime_read_headers(r, &hs);

    if (hs.upgrade.len == 0) {
        return ngx_http_realtime_upgrade_required(r,
                                                "WebSocket upgrade required");
    }

    if (!ngx_http_realtime_has_token(&hs.upgrade, "websocket", 9)) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "BAD_REQUEST",
                                            "Upgrade must be websocket");
    }

    if (!hs.connection_upgrade) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "BAD_REQUEST",
                                        "Connection must include upgrade");
    }

    if (hs.nversions != 1 || hs.version.len != 2
        || ngx_strncmp(hs.version.data, "13", 2) != 0)
    {
        return ngx_http_realtime_upgrade_required(r,
                                    "Sec-WebSocket-Version must be 13");
    }

    if (hs.nkeys != 1 || ngx_http_realtime_check_key(&hs.key) != NGX_OK) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "BAD_REQUEST",
                                            "invalid Sec-WebSocket-Key");
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "BAD_REQUEST",
                                    "WebSocket handshake must have no body");
    }

    if (ngx_http_realtime_check_origin(r, rlcf, &hs.origin) != NGX_OK) {
        return ngx_http_realtime_send_error(r, NGX_HTTP_FORBIDDEN,
                                            "FORBIDDEN",
                                            "origin not allowed");
    }

    if (ngx_exiting) {
        return ngx_http_realtime_send_error(r,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "SHUTTING_DOWN",
                                            "server is shutting down");
    }

    if (ngx_http_realtime_select_subprotocol(r, rlcf, &protocol) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A block of its own, freed with the pool: in the pool's first block
     * it does not fit, and a second one would be 512 bytes, not these.
     */

    switch (rlcf->mode) {

    case NGX_HTTP_REALTIME_ECHO:
        adapter = &ngx_http_realtime_echo_adapter;
        break;

    case NGX_HTTP_REALTIME_ROOMS:
        adapter = &ngx_http_realtime_native_adapter;
        break;

    default:
        adapter = &ngx_http_realtime_sio_adapter;
    }

    ws = ngx_pmemalign(r->connection->pool, adapter->size, NGX_ALIGNMENT);
    if (ws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(ws, adapter->size);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->ws = ws;

    ws->connection = r->connection;
    ws->conf = rlcf;
    ws->adapter = adapter;
    ws->session.handler = &ngx_http_realtime_native_handler;
    ws->session.log = r->connection->log;
    ws->session.conf = rlcf;
    ws->subprotocol = protocol;
    ws->out = ws->out_inline;
    ws->out_size = NGX_HTTP_REALTIME_OUT_INLINE;

    ngx_http_set_ctx(r, ctx, ngx_http_realtime_module);

    /* before the adapter queues its first frames: they may be deflated */

    rc = ngx_http_realtime_deflate_negotiate(r, ws, &extensions);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rlcf->mode == NGX_HTTP_REALTIME_ROOMS
        && ngx_http_realtime_forwarding(rlcf))
    {
        ws->session.handshake = ngx_http_realtime_handshake_keep(r,
                                                        r->connection->pool);
        if (ws->session.handshake == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* NGX_DECLINED: upgraded to be closed at once, never registered */

    if (adapter->open) {
        rc = adapter->open(r, ws);

    } else {
        rc = ngx_http_realtime_jwt_handshake(r, ctx, &ws->session);

        if (rc == NGX_OK && rlcf->zone) {
            rc = ngx_http_realtime_register(r, &ws->session);
        }
    }

    if (rc != NGX_OK && rc != NGX_DECLINED) {
        return (rc == NGX_DONE) ? NGX_OK : rc;
    }

    if (ngx_http_realtime_accept_headers(r, &hs.key, &protocol) != NGX_OK
        || (ws->deflate
            && ngx_http_realtime_add_header(r, "Sec-WebSocket-Extensions",
                                            24, &extensions)
               == NULL))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    /*
     * Not header_only: nginx's write filter then keeps the 101 back
     * (below postpone_output), and it goes out with the first frames.
     */

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /*
     * The request is freed once the 101 is out: that cannot happen in
     * the content phase, which still finalizes r, so keep the request
     * and finish the upgrade from the write handler.
     */

    r->main->count++;
    r->write_event_handler = ngx_http_realtime_flush_handshake;

    ngx_post_event(r->connection->write, &ngx_posted_events);

    return NGX_DONE;
}


static void
ngx_http_realtime_read_headers(ngx_http_request_t *r,
    ngx_http_realtime_handshake_t *hs)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_memzero(hs, sizeof(ngx_http_realtime_handshake_t));

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Upgrade") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Upgrade", 7) == 0)
        {
            hs->upgrade = h[i].value;

        } else if (h[i].key.len == sizeof("Connection") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Connection",
                                      10) == 0)
        {
            if (ngx_http_realtime_has_token(&h[i].value, "upgrade", 7)) {
                hs->connection_upgrade = 1;
            }

        } else if (h[i].key.len == sizeof("Sec-WebSocket-Key") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Sec-WebSocket-Key", 17) == 0)
        {
            hs->key = h[i].value;
            hs->nkeys++;

        } else if (h[i].key.len == sizeof("Sec-WebSocket-Version") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Sec-WebSocket-Version", 21)
                      == 0)
        {
            hs->version = h[i].value;
            hs->nversions++;

        } else if (h[i].key.len == sizeof("Origin") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin", 6)
                      == 0)
        {
            hs->origin = h[i].value;
        }
    }
}


/* whether a comma-separated header value holds a token, case-insensitive */

static ngx_uint_t
ngx_http_realtime_has_token(ngx_str_t *value, char *token, size_t len)
{
    u_char  *p, *last, *start, *end;

    p = value->data;
    last = p + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_realtime_upgrade_required(ngx_http_request_t *r, char *message)
{
    ngx_str_t  value;

    ngx_str_set(&value, "websocket");

    if (ngx_http_realtime_add_header(r, "Upgrade", 7, &value) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, "13");

    if (ngx_http_realtime_add_header(r, "Sec-WebSocket-Version", 21, &value)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* nginx has no reason phrase of its own for 426 */
    ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

    return ngx_http_realtime_send_error(r, NGX_HTTP_REALTIME_UPGRADE_REQUIRED,
                                        "UPGRADE_REQUIRED", message);
}


static ngx_int_t
ngx_http_realtime_check_key(ngx_str_t *key)
{
    u_char     buf[NGX_HTTP_REALTIME_KEY_LEN];
    ngx_str_t  decoded;

    if (key->len != NGX_HTTP_REALTIME_KEY_LEN) {
        return NGX_DECLINED;
    }

    decoded.data = buf;

    if (ngx_decode_base64(&decoded, key) != NGX_OK || decoded.len != 16) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_realtime_check_origin(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *origin)
{
    ngx_uint_t                   i;
    ngx_http_realtime_origin_t  *o;

    /* only browsers send Origin, and only they need the check */

    if (rlcf->origins == NULL || origin->len == 0) {
        return NGX_OK;
    }

    o = rlcf->origins->elts;

    for (i = 0; i < rlcf->origins->nelts; i++) {

        if (o[i].any) {
            return NGX_OK;
        }

#if (NGX_PCRE)
        if (o[i].regex) {
            if (ngx_regex_exec(o[i].regex, origin, NULL, 0) >= 0) {
                return NGX_OK;
            }

            continue;
        }
#endif

        if (o[i].value.len == origin->len
            && ngx_strncasecmp(o[i].value.data, origin->data, origin->len)
               == 0)
        {
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "realtime: origin \"%V\" not allowed", origin);

    return NGX_DECLINED;
}


/* the first configured subprotocol that the client offers, if any */

static ngx_int_t
ngx_http_realtime_select_subprotocol(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *selected)
{
    ngx_str_t        *s;
    ngx_uint_t        i, j;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(selected);

    if (rlcf->subprotocols == NULL) {
        return NGX_OK;
    }

    s = rlcf->subprotocols->elts;

    for (j = 0; j < rlcf->subprotocols->nelts; j++) {

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len != sizeof("Sec-WebSocket-Protocol") - 1
                || ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Sec-WebSocket-Protocol", 22)
                   != 0)
            {
                continue;
            }

            /* subprotocol names are case-sensitive, RFC 6455 4.1 */

            if (ngx_http_realtime_has_token(&h[i].value, (char *) s[j].data,
                                            s[j].len))
            {
                *selected = s[j];
                return NGX_OK;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_accept_headers(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *protocol)
{
    u_char       digest[20];
    u_char       buf[NGX_HTTP_REALTIME_KEY_LEN
                     + sizeof(NGX_HTTP_REALTIME_GUID) - 1];
    ngx_str_t    value, src;
    ngx_sha1_t   sha1;

    ngx_memcpy(ngx_cpymem(buf, key->data, key->len), NGX_HTTP_REALTIME_GUID,
               sizeof(NGX_HTTP_REALTIME_GUID) - 1);

    /*
     * nginx's own SHA-1: OpenSSL 3's EVP_Digest() fetches the algorithm
     * for every call, a tenth of a handshake's instructions
     */

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, buf, sizeof(buf));
    ngx_sha1_final(digest, &sha1);

    value.data = ngx_pnalloc(r->pool, NGX_HTTP_REALTIME_ACCEPT_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    src.data = digest;
    src.len = sizeof(digest);

    ngx_encode_base64(&value, &src);

    if (ngx_http_realtime_add_header(r, "Sec-WebSocket-Accept", 20, &value)
        == NULL)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "websocket");

    if (ngx_http_realtime_add_header(r, "Upgrade", 7, &value) == NULL) {
        return NGX_ERROR;
    }

    if (protocol->len
        && ngx_http_realtime_add_header(r, "Sec-WebSocket-Protocol", 22,
                                        protocol)
           == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_realtime_add_header(ngx_http_request_t *r, char *name, size_t len,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    h->key.len = len;
    h->key.data = (u_char *) name;
    h->value = *value;

    return h;
}


/* sends what is left of the 101 response, then hands the connection over */

static void
ngx_http_realtime_flush_handshake(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_event_t              *wev;
    ngx_connection_t         *c;
    ngx_http_realtime_ctx_t  *ctx;

    c = r->connection;
    wev = c->write;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "realtime: handshake timed out");
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (r->out && !c->buffered
        && ngx_http_realtime_queue_header(ctx->ws, r->out) == NGX_OK)
    {
        /* its buffers are the request's, which the upgrade frees */
        r->out = NULL;
    }

    if (r->out || c->buffered) {
        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        if (r->out || c->buffered) {
            if (!wev->timer_set) {
                ngx_add_timer(wev, NGX_HTTP_REALTIME_CLOSE_TIMEOUT);
            }

            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_finalize_request(r, NGX_ERROR);
            }

            return;
        }
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ngx_http_realtime_upgrade(r, ctx->ws);
}


/*
 * Gives the socket its user and its place in the zone before the 101, so
 * that a refusal is still an HTTP answer.
 */

static ngx_int_t
ngx_http_realtime_register(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s)
{
    ngx_int_t            rc;
    ngx_str_t            user;
    ngx_pool_cleanup_t  *cln;

    s->zone = s->conf->zone;

    /* without realtime_user, a token's user claim names the user */

    if (s->conf->user || s->jwt) {
        if (s->conf->user == NULL) {
            user = s->jwt->user;

        } else if (ngx_http_complex_value(r, s->conf->user, &user)
                   != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (user.len > NGX_HTTP_REALTIME_USER_MAX) {
            return ngx_http_realtime_refuse(r, NGX_HTTP_BAD_REQUEST,
                                                "BAD_REQUEST",
                                                "user id is too long");
        }

        /* the id goes into JSON events */

        if (ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                            user.data, user.len)
            != NGX_HTTP_REALTIME_UTF8_ACCEPT)
        {
            return ngx_http_realtime_refuse(r, NGX_HTTP_BAD_REQUEST,
                                                "BAD_REQUEST",
                                                "user id is not UTF-8");
        }

        if (s->conf->user == NULL) {
            /* the token's user lives as long as the socket */
            s->user = user;

        } else if (user.len) {
            s->user.data = ngx_pstrdup(r->connection->pool, &user);
            if (s->user.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            s->user.len = user.len;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_realtime_room_connect(s);

    switch (rc) {

    case NGX_OK:
        cln->handler = ngx_http_realtime_handshake_cleanup;
        cln->data = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

        rc = ngx_http_realtime_route_join_request(r, s);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_http_realtime_route_connect(s);

        /* the welcome goes first, right behind the 101 */
        return (ngx_http_realtime_client_open(s) == NGX_OK)
               ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_HTTP_REALTIME_LIMIT:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "realtime: user \"%V\" has too many connections",
                      &s->user);
        return ngx_http_realtime_refuse(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                            "TOO_MANY_CONNECTIONS",
                                            "too many connections for "
                                            "this user");

    case NGX_HTTP_REALTIME_ZONE_FULL:
        return ngx_http_realtime_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "ZONE_FULL",
                                            "the realtime zone is full");

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* a handshake that fails after registration leaves the zone */

static void
ngx_http_realtime_handshake_cleanup(void *data)
{
    ngx_http_realtime_ctx_t  *ctx = data;

    if (!ctx->ws->upgraded) {
        ngx_http_realtime_release(ctx->ws);
    }
}
