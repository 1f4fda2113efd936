
/*
 * Copyright (C) ngx-realtime developers
 *
 * What a forward's location sees of its client: the handshake request's
 * headers, arguments and address, kept for the session's life in one
 * block when the location forwards, and the fake connection and request
 * each forward is sent from, in the forward's own pool.
 *
 * The headers go through the core's headers_in handlers, as HTTP/2 does
 * for its own: $http_*, $cookie_*, $arg_*, $remote_addr and every
 * module that reads r->headers_in work in the forward's location as in
 * the handshake's.  A forward may outlive its session, so each takes a
 * copy of the block into its pool; nothing points into the socket's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


static ngx_uint_t ngx_http_realtime_handshake_skip(ngx_table_elt_t *h);
static u_char *ngx_http_realtime_handshake_str(u_char *p, ngx_str_t *to,
    ngx_str_t *from);
static ngx_http_realtime_handshake_copy_t *ngx_http_realtime_handshake_dup(
    ngx_http_realtime_handshake_copy_t *hc, ngx_pool_t *pool);
static void ngx_http_realtime_handshake_cleanup(void *data);
static ngx_int_t ngx_http_realtime_fake_headers(ngx_http_request_t *r,
    ngx_http_realtime_handshake_copy_t *hc, ngx_uint_t json);


/*
 * Headers that would change what the backend answers (a compressed,
 * partial or "not modified" reply) or describe the handshake's body,
 * not the forward's.
 */
static ngx_str_t  ngx_http_realtime_handshake_skipped[] = {
    ngx_string("content-length"),
    ngx_string("content-type"),
    ngx_string("transfer-encoding"),
    ngx_string("expect"),
    ngx_string("accept-encoding"),
    ngx_string("range"),
    ngx_string("if-range"),
    ngx_string("if-match"),
    ngx_string("if-none-match"),
    ngx_string("if-modified-since"),
    ngx_string("if-unmodified-since"),
    ngx_null_string
};


static ngx_str_t  ngx_http_realtime_fake_post = ngx_string("POST");
static ngx_str_t  ngx_http_realtime_fake_get = ngx_string("GET");
static ngx_str_t  ngx_http_realtime_fake_json = ngx_string("application/json");


/*
 * The handshake request, copied into one ngx_alloc()ed block: freed
 * with pool when one is given, else by ngx_http_realtime_handshake_free().
 */

ngx_http_realtime_handshake_copy_t *
ngx_http_realtime_handshake_keep(ngx_http_request_t *r, ngx_pool_t *pool)
{
    u_char                              *p;
    size_t                               size;
    ngx_uint_t                           i, n;
    ngx_list_part_t                     *part;
    ngx_table_elt_t                     *h, *to;
    ngx_connection_t                    *c;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_realtime_handshake_copy_t  *hc;

    c = r->connection;
    cln = NULL;

    if (pool) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            return NULL;
        }
    }

    n = 0;
    size = r->args.len + r->headers_in.server.len + c->addr_text.len;

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

        if (h[i].hash == 0 || ngx_http_realtime_handshake_skip(&h[i])) {
            continue;
        }

        n++;
        size += 2 * h[i].key.len + h[i].value.len;
    }

    size += sizeof(ngx_http_realtime_handshake_copy_t)
            + n * sizeof(ngx_table_elt_t) + c->socklen;

    hc = ngx_alloc(size, c->log);
    if (hc == NULL) {
        return NULL;
    }

    hc->size = size;
    hc->nheaders = n;
    hc->headers = (ngx_table_elt_t *) ((u_char *) hc
                                 + sizeof(ngx_http_realtime_handshake_copy_t));
    hc->sockaddr = (struct sockaddr *) &hc->headers[n];
    hc->socklen = c->socklen;
    ngx_memcpy(hc->sockaddr, c->sockaddr, c->socklen);

    p = (u_char *) hc->sockaddr + c->socklen;

    p = ngx_http_realtime_handshake_str(p, &hc->args, &r->args);
    p = ngx_http_realtime_handshake_str(p, &hc->server,
                                        &r->headers_in.server);
    p = ngx_http_realtime_handshake_str(p, &hc->addr_text, &c->addr_text);

    to = hc->headers;
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

        if (h[i].hash == 0 || ngx_http_realtime_handshake_skip(&h[i])) {
            continue;
        }

        *to = h[i];

        p = ngx_http_realtime_handshake_str(p, &to->key, &h[i].key);
        p = ngx_http_realtime_handshake_str(p, &to->value, &h[i].value);
        to->lowcase_key = p;
        p = ngx_cpymem(p, h[i].lowcase_key, h[i].key.len);

        to++;
    }

    if (cln) {
        cln->handler = ngx_http_realtime_handshake_cleanup;
        cln->data = hc;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "realtime handshake kept: %ui headers, %uz bytes",
                   n, size);

    return hc;
}


void
ngx_http_realtime_handshake_free(ngx_http_realtime_handshake_copy_t *hc)
{
    ngx_free(hc);
}


static void
ngx_http_realtime_handshake_cleanup(void *data)
{
    ngx_free(data);
}


static ngx_uint_t
ngx_http_realtime_handshake_skip(ngx_table_elt_t *h)
{
    ngx_str_t  *name;

    for (name = ngx_http_realtime_handshake_skipped; name->len; name++) {
        if (h->key.len == name->len
            && ngx_strncmp(h->lowcase_key, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* from, copied to p as to; an empty one may have no data */

static u_char *
ngx_http_realtime_handshake_str(u_char *p, ngx_str_t *to, ngx_str_t *from)
{
    to->len = from->len;
    to->data = p;

    return from->len ? ngx_cpymem(p, from->data, from->len) : p;
}


/* the block again in pool, every pointer moved with it */

static ngx_http_realtime_handshake_copy_t *
ngx_http_realtime_handshake_dup(ngx_http_realtime_handshake_copy_t *hc,
    ngx_pool_t *pool)
{
    ngx_int_t                            delta;
    ngx_uint_t                           i;
    ngx_table_elt_t                     *h;
    ngx_http_realtime_handshake_copy_t  *d;

    d = ngx_palloc(pool, hc->size);
    if (d == NULL) {
        return NULL;
    }

    ngx_memcpy(d, hc, hc->size);

    delta = (u_char *) d - (u_char *) hc;

#define ngx_http_realtime_moved(type, ptr)  ((type) ((u_char *) (ptr) + delta))

    d->headers = ngx_http_realtime_moved(ngx_table_elt_t *, hc->headers);
    d->sockaddr = ngx_http_realtime_moved(struct sockaddr *, hc->sockaddr);
    d->args.data = ngx_http_realtime_moved(u_char *, hc->args.data);
    d->server.data = ngx_http_realtime_moved(u_char *, hc->server.data);
    d->addr_text.data = ngx_http_realtime_moved(u_char *, hc->addr_text.data);

    h = d->headers;

    for (i = 0; i < d->nheaders; i++) {
        h[i].key.data = ngx_http_realtime_moved(u_char *, h[i].key.data);
        h[i].value.data = ngx_http_realtime_moved(u_char *, h[i].value.data);
        h[i].lowcase_key = ngx_http_realtime_moved(u_char *,
                                                   h[i].lowcase_key);
    }

#undef ngx_http_realtime_moved

    return d;
}


/*
 * A connection without a socket and a request on the configuration ctx
 * (a forwarding location's, or a server's), all in pool: the client's
 * address and headers are the handshake's (copied) when there is one.
 * data is the request's context of this module; wake is its write
 * handler; json: a POST of a JSON body (a forward), else a GET (a JWKS
 * fetch).
 */

ngx_http_request_t *
ngx_http_realtime_fake_request(ngx_pool_t *pool, ngx_http_conf_ctx_t *ctx,
    ngx_http_realtime_handshake_copy_t *handshake, void *data,
    ngx_http_event_handler_pt wake, ngx_uint_t json)
{
    ngx_log_t                           *log;
    ngx_connection_t                    *c, *saved;
    ngx_http_request_t                  *r;
    ngx_http_log_ctx_t                  *lctx;
    struct sockaddr_in                  *sin;
    ngx_http_connection_t               *hc;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_realtime_handshake_copy_t  *hs;

    hs = NULL;

    if (handshake) {
        hs = ngx_http_realtime_handshake_dup(handshake, pool);
        if (hs == NULL) {
            return NULL;
        }
    }

    log = ngx_palloc(pool, sizeof(ngx_log_t));
    lctx = ngx_pcalloc(pool, sizeof(ngx_http_log_ctx_t));
    sin = ngx_pcalloc(pool, 2 * sizeof(struct sockaddr_in));

    if (log == NULL || lctx == NULL || sin == NULL) {
        return NULL;
    }

    /* nginx sets the current request in the log's http context */
    *log = *ngx_cycle->log;
    log->handler = NULL;
    log->data = lctx;

    /* ngx_get_connection() wants a descriptor: 0 stands in for none */

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection(0, log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        return NULL;
    }

    c->fd = (ngx_socket_t) -1;
    c->pool = pool;
    c->log = log;
    c->read->log = log;
    c->write->log = log;

    /* upstream init must not add events for a descriptor of -1 */
    c->read->active = 1;
    c->write->active = 1;

    /* nor set socket options on it (grpc_pass, unbuffered replies) */
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;

    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    /*
     * The handshake's client address; without a copy (a location that
     * came to forward by a reload) an empty one rather than a NULL
     * (nchan#498).
     */

    if (hs) {
        c->sockaddr = hs->sockaddr;
        c->socklen = hs->socklen;
        c->addr_text = hs->addr_text;

    } else {
        sin[0].sin_family = AF_INET;
        c->sockaddr = (struct sockaddr *) &sin[0];
        c->socklen = sizeof(struct sockaddr_in);
        ngx_str_set(&c->addr_text, "");
    }

    /* $server_addr would ask getsockname() about no socket: loopback */
    sin[1].sin_family = AF_INET;
    sin[1].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->local_sockaddr = (struct sockaddr *) &sin[1];
    c->local_socklen = sizeof(struct sockaddr_in);

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    hc = ngx_pcalloc(pool, sizeof(ngx_http_connection_t));
    if (r == NULL || hc == NULL) {
        goto failed;
    }

    cmcf = ctx->main_conf[ngx_http_core_module.ctx_index];

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    r->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                     * sizeof(ngx_http_variable_value_t));
    if (r->ctx == NULL || r->variables == NULL) {
        goto failed;
    }

    if (ngx_list_init(&r->headers_out.headers, pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_out.trailers, pool, 2,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto failed;
    }

    hc->conf_ctx = ctx;

    r->signature = NGX_HTTP_MODULE;
    r->connection = c;
    r->http_connection = hc;

    /* limit_req and limit_conn judged the handshake, not each event */
    r->limit_req_status = 1;
    r->limit_conn_status = 1;
    r->pool = pool;
    r->main = r;
    r->count = 1;
    r->main_conf = ctx->main_conf;
    r->srv_conf = ctx->srv_conf;
    r->loc_conf = ctx->loc_conf;
    r->method = json ? NGX_HTTP_POST : NGX_HTTP_GET;
    r->method_name = json ? ngx_http_realtime_fake_post
                          : ngx_http_realtime_fake_get;
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    if (json) {
        ngx_str_set(&r->request_line, "POST / HTTP/1.1");

    } else {
        ngx_str_set(&r->request_line, "GET / HTTP/1.1");
    }

    ngx_str_set(&r->uri, "/");
    ngx_str_set(&r->unparsed_uri, "/");
    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->start_sec = ngx_time();
    r->start_msec = ngx_current_msec;
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = wake;

    if (hs) {
        r->args = hs->args;
        r->headers_in.server = hs->server;
    }

    /*
     * nginx must never free this request or close its connection, not
     * even when a failed subrequest terminates its main request: the
     * forward does.
     */
    r->blocked = 1;

    ngx_http_set_ctx(r, data, ngx_http_realtime_module);

    c->data = r;
    lctx->connection = c;
    lctx->request = r;
    lctx->current_request = r;

    if (ngx_http_realtime_fake_headers(r, hs, json) != NGX_OK) {
        goto failed;
    }

    return r;

failed:

    ngx_http_realtime_fake_close(c);

    return NULL;
}


/*
 * The handshake's headers, each through the core's handler of its name
 * (as in ngx_http_process_request_headers()), then the body's type.
 * They were valid on the handshake and are the same here; Host, whose
 * handler would look for a virtual server again, is only set.
 */

static ngx_int_t
ngx_http_realtime_fake_headers(ngx_http_request_t *r,
    ngx_http_realtime_handshake_copy_t *hc, ngx_uint_t json)
{
    ngx_uint_t                  i, n;
    ngx_table_elt_t            *h;
    ngx_http_header_t          *hh;
    ngx_http_core_main_conf_t  *cmcf;

    n = hc ? hc->nheaders : 0;

    if (ngx_list_init(&r->headers_in.headers, r->pool, n + 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    for (i = 0; i < n; i++) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = hc->headers[i];
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        if (h->key.len == sizeof("host") - 1
            && ngx_strncmp(h->lowcase_key, "host", 4) == 0)
        {
            if (r->headers_in.host == NULL) {
                r->headers_in.host = h;
            }

            continue;
        }

        hh = ngx_hash_find(&cmcf->headers_in_hash, h->hash, h->lowcase_key,
                           h->key.len);

        if (hh && hh->handler(r, h, hh->offset) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!json) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Content-Type");
    h->value = ngx_http_realtime_fake_json;
    h->lowcase_key = (u_char *) "content-type";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    r->headers_in.content_type = h;

    return NGX_OK;
}


/* the fake connection back to the free list; the pool is the caller's */

void
ngx_http_realtime_fake_close(ngx_connection_t *c)
{
    ngx_connection_t  *saved;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* the stand-in descriptor again, for ngx_free_connection() */
    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;
    c->fd = 0;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }
}
