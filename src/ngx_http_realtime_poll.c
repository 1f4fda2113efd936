
/*
 * Copyright (C) ngx-realtime developers
 *
 * Engine.IO long-polling, the HTTP side, on whichever worker a request
 * lands.  The session lives on the worker that opened it (its owner,
 * named in the sid, see ngx_http_realtime_sio.c); a GET or a POST here
 * is held as a "waiter" under a token and relayed to the owner, which
 * answers the token with the payload or the status.  An upgrade whose
 * WebSocket lands here is relayed the same way, frame by frame.  When
 * the owner is this worker the same calls are made without IPC.  The
 * addressing (ngx_http_realtime_eio_post(), the owner in a sid) lives
 * here too.
 *
 *   GET  -> owner 'G'             owner -> reply(token, payload)
 *   POST -> owner 'P' + body      owner -> reply(token, "ok")
 *   WebSocket with sid here -> owner 'U', then 'W'/'B' per message;
 *   owner -> EIO_WS 'F' + frame, or 'C' to close.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_eio_session.h"


/* how long a held request waits for an owner that may have died */
#define NGX_HTTP_REALTIME_POLL_SLACK  5000


/* the tree holds both: kind 0 is a relay */

typedef struct {
    ngx_rbtree_node_t              node;      /* key: the token */
    ngx_uint_t                     kind;      /* NGX_HTTP_REALTIME_EIO_* */
    ngx_http_request_t            *r;
    ngx_http_realtime_zone_t      *zone;
    ngx_http_realtime_eio_addr_t   owner;
    ngx_str_t                      sid;
    ngx_event_t                    timer;
    ngx_uint_t                     status;
    ngx_uint_t                     code;
    ngx_str_t                      body;
    unsigned                       sync:1;
    unsigned                       answered:1;
    unsigned                       waiting:1;   /* in the tree */
} ngx_http_realtime_poll_wait_t;


struct ngx_http_realtime_poll_relay_s {
    ngx_rbtree_node_t              node;      /* key: the token */
    ngx_uint_t                     kind;      /* 0 */
    ngx_http_realtime_conn_t      *ws;
    ngx_http_realtime_zone_t      *zone;
    ngx_http_realtime_eio_addr_t   owner;
    ngx_str_t                      sid;
    u_char                         data[1];
};


static ngx_int_t ngx_http_realtime_poll_request(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *sid, ngx_uint_t kind,
    u_char *body, size_t len);
static void ngx_http_realtime_poll_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_poll_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_realtime_poll_send(ngx_http_request_t *r,
    ngx_http_realtime_poll_wait_t *w);
static ngx_int_t ngx_http_realtime_poll_text(ngx_http_request_t *r,
    ngx_uint_t status, char *type, u_char *body, size_t len);
static ngx_int_t ngx_http_realtime_poll_preflight(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf);
static ngx_table_elt_t *ngx_http_realtime_poll_header(ngx_http_request_t *r,
    char *name, ngx_str_t *value);
static ngx_str_t *ngx_http_realtime_poll_origin(ngx_http_request_t *r,
    char *name, size_t len);
static void ngx_http_realtime_poll_cleanup(void *data);
static void ngx_http_realtime_poll_timeout(ngx_event_t *ev);
static void ngx_http_realtime_poll_reply_handler(
    ngx_http_realtime_zone_t *zone, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg);
static void ngx_http_realtime_poll_ws_handler(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg);
static ngx_rbtree_node_t *ngx_http_realtime_poll_find(ngx_str_t *token);


static ngx_rbtree_t       ngx_http_realtime_poll_tree;
static ngx_rbtree_node_t  ngx_http_realtime_poll_sentinel;
static uint32_t           ngx_http_realtime_poll_token;

static ngx_str_t  ngx_http_realtime_poll_messages[] = {
    ngx_string("Transport unknown"),
    ngx_string("Session ID unknown"),
    ngx_string("Bad handshake method"),
    ngx_string("Bad request"),
    ngx_string("Forbidden"),
    ngx_string("Unsupported protocol version")
};


ngx_int_t
ngx_http_realtime_poll_init_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_realtime_poll_tree,
                    &ngx_http_realtime_poll_sentinel, ngx_rbtree_insert_value);

    ngx_http_realtime_ipc_handlers[NGX_HTTP_REALTIME_IPC_EIO_REPLY
                                   - NGX_HTTP_REALTIME_IPC_HANDLED]
        = ngx_http_realtime_poll_reply_handler;
    ngx_http_realtime_ipc_handlers[NGX_HTTP_REALTIME_IPC_EIO_WS
                                   - NGX_HTTP_REALTIME_IPC_HANDLED]
        = ngx_http_realtime_poll_ws_handler;

    return NGX_OK;
}


/*
 * The HTTP entry of a realtime_socketio location: the query decides,
 * as in Node's engine.io, and its refusals are the same JSON.
 */

ngx_int_t
ngx_http_realtime_sio_handler(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    ngx_str_t  version, transport, sid;

    if (ngx_http_arg(r, (u_char *) "EIO", 3, &version) != NGX_OK
        || version.len != 1 || version.data[0] != '4')
    {
        return ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 5,
                                           "Unsupported protocol version");
    }

    if (ngx_http_arg(r, (u_char *) "transport", 9, &transport) != NGX_OK) {
        ngx_str_null(&transport);
    }

    if (ngx_http_arg(r, (u_char *) "sid", 3, &sid) != NGX_OK) {
        ngx_str_null(&sid);
    }

    if (transport.len == 9
        && ngx_strncmp(transport.data, "websocket", 9) == 0
        && (rlcf->sio_transports & NGX_HTTP_REALTIME_SIO_WEBSOCKET))
    {
        return ngx_http_realtime_handshake(r, rlcf);
    }

    if (transport.len == 7
        && ngx_strncmp(transport.data, "polling", 7) == 0
        && (rlcf->sio_transports & NGX_HTTP_REALTIME_SIO_POLLING))
    {
        return ngx_http_realtime_poll_handler(r, rlcf, &sid);
    }

    return ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 0,
                                       "Transport unknown");
}


/* transport=polling: the handshake, a GET or a POST of a session */

ngx_int_t
ngx_http_realtime_poll_handler(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *sid)
{
    ngx_int_t  rc;
    ngx_str_t  packet;

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_realtime_poll_preflight(r, rlcf);
    }

    if (ngx_http_realtime_poll_cors(r, rlcf, 0) != NGX_OK) {
        return ngx_http_realtime_eio_http_error(r, NGX_HTTP_FORBIDDEN, 4,
                                            "Forbidden");
    }

    if (sid->len == 0) {
        if (r->method != NGX_HTTP_GET) {
            return ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 2,
                                                "Bad handshake method");
        }

        rc = ngx_http_realtime_eio_open_polling(r, rlcf, &packet);

        if (rc != NGX_OK) {
            return (rc == NGX_DONE) ? NGX_OK : rc;
        }

        return ngx_http_realtime_poll_text(r, NGX_HTTP_OK,
                                           "text/plain; charset=UTF-8",
                                           packet.data, packet.len);
    }

    if (r->method == NGX_HTTP_GET) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_realtime_poll_request(r, rlcf, sid,
                                              NGX_HTTP_REALTIME_EIO_GET,
                                              NULL, 0);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 3,
                                            "Bad request");
    }

    if (r->headers_in.content_length_n > (off_t) rlcf->sio_max_payload) {
        return ngx_http_realtime_poll_request(r, rlcf, sid,
                                              NGX_HTTP_REALTIME_EIO_ABORT,
                                              NULL, 0);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_realtime_poll_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_realtime_poll_body(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      body, sid;
    ngx_http_realtime_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    if (ngx_http_arg(r, (u_char *) "sid", 3, &sid) != NGX_OK
        || ngx_http_realtime_poll_read_body(r, &body) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (body.len > rlcf->sio_max_payload) {
        rc = ngx_http_realtime_poll_request(r, rlcf, &sid,
                                            NGX_HTTP_REALTIME_EIO_ABORT,
                                            NULL, 0);

    } else {
        rc = ngx_http_realtime_poll_request(r, rlcf, &sid,
                                            NGX_HTTP_REALTIME_EIO_POST,
                                            body.data, body.len);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /*
     * A held POST needs no reference of its own: the body's, which this
     * handler would drop by finalizing, keeps the request until the
     * answer finalizes it.
     */
    r->main->count--;
}


/* the body in one piece of memory, read back if nginx wrote it out */

static ngx_int_t
ngx_http_realtime_poll_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * Holds the request and asks the session's owner.  Returns what the
 * content phase (or the body handler) is to finalize with, or NGX_DONE
 * while the answer is awaited.
 */

static ngx_int_t
ngx_http_realtime_poll_request(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *sid, ngx_uint_t kind,
    u_char *body, size_t len)
{
    u_char                          buf[64];
    ngx_int_t                       rc;
    ngx_str_t                       except;
    ngx_msec_t                      wait;
    ngx_pool_cleanup_t             *cln;
    ngx_http_realtime_eio_addr_t    owner, here;
    ngx_http_realtime_poll_wait_t  *w;

    if (ngx_http_realtime_eio_owner(sid, &owner) != NGX_OK) {
        return ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 1,
                                            "Session ID unknown");
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_poll_wait_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    while (++ngx_http_realtime_poll_token == 0) { /* void */ }

    w->node.key = ngx_http_realtime_poll_token;
    w->r = r;
    w->zone = rlcf->zone;
    w->owner = owner;
    w->sid = *sid;
    w->kind = kind;

    ngx_rbtree_insert(&ngx_http_realtime_poll_tree, &w->node);
    w->waiting = 1;

    cln->handler = ngx_http_realtime_poll_cleanup;
    cln->data = w;

    ngx_http_realtime_eio_addr_here(w->zone, &here, (uint32_t) w->node.key);

    except.data = buf;
    except.len = ngx_sprintf(buf, "%c:%ui:%uD:%uD", (int) kind, here.slot,
                             here.id, here.token)
                 - buf;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime poll %c sid:%V token:%ui", (int) kind, sid,
                   w->node.key);

    /* an owner on this worker may answer at once, inside this call */

    w->sync = 1;
    rc = ngx_http_realtime_eio_post(w->zone, &owner,
                                    NGX_HTTP_REALTIME_IPC_EIO, sid, &except,
                                    body, len);
    w->sync = 0;

    if (rc != NGX_OK && !w->answered) {
        /* the owner is gone (400), or its queue cannot take this (503) */
        w->answered = 1;
        w->status = (rc == NGX_AGAIN) ? NGX_HTTP_SERVICE_UNAVAILABLE
                                      : NGX_HTTP_BAD_REQUEST;
        w->code = (rc == NGX_AGAIN) ? 3 : 1;
    }

    if (w->answered) {
        return ngx_http_realtime_poll_send(r, w);
    }

    /* nothing to read meanwhile; a client that goes away ends it */

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    /*
     * A held poll is idle for a worker that shuts down: the request is
     * terminated, and the owner, told by the cleanup, ends the session.
     */
    r->connection->idle = 1;

    wait = rlcf->sio_ping_interval + rlcf->sio_ping_timeout
           + NGX_HTTP_REALTIME_POLL_SLACK;

    w->timer.handler = ngx_http_realtime_poll_timeout;
    w->timer.data = w;
    w->timer.log = r->connection->log;
    w->timer.cancelable = 1;
    ngx_add_timer(&w->timer, wait);

    r->main->count++;

    return NGX_DONE;
}


/* the owner's answer to a token; data is copied, the caller keeps it */

static void
ngx_http_realtime_poll_answer(ngx_http_realtime_poll_wait_t *w,
    ngx_uint_t status, ngx_uint_t code, u_char *data, size_t len)
{
    ngx_http_request_t  *r;

    r = w->r;

    if (w->answered) {
        return;
    }

    w->answered = 1;
    w->status = status;
    w->code = code;

    if (len) {
        w->body.data = ngx_pnalloc(r->pool, len);
        if (w->body.data == NULL) {
            w->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ngx_memcpy(w->body.data, data, len);
            w->body.len = len;
        }
    }

    if (w->sync) {
        return;
    }

    ngx_http_finalize_request(r, ngx_http_realtime_poll_send(r, w));
}


static ngx_int_t
ngx_http_realtime_poll_send(ngx_http_request_t *r,
    ngx_http_realtime_poll_wait_t *w)
{
    r->connection->idle = 0;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (w->waiting) {
        ngx_rbtree_delete(&ngx_http_realtime_poll_tree, &w->node);
        w->waiting = 0;
    }

    if (w->status != NGX_HTTP_OK) {
        if (w->status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (w->status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
            return ngx_http_realtime_eio_http_error(r, w->status, 3,
                                                "Payload Too Large");
        }

        return ngx_http_realtime_eio_http_error(r, w->status,
                   w->code,
                   (char *) ngx_http_realtime_poll_messages[
                       ngx_min(w->code, 5)].data);
    }

    if (w->kind == NGX_HTTP_REALTIME_EIO_GET) {
        return ngx_http_realtime_poll_text(r, NGX_HTTP_OK,
                                           "text/plain; charset=UTF-8",
                                           w->body.data, w->body.len);
    }

    return ngx_http_realtime_poll_text(r, NGX_HTTP_OK,
                                       "text/html; charset=UTF-8",
                                       (u_char *) "ok", 2);
}


static ngx_int_t
ngx_http_realtime_poll_text(ngx_http_request_t *r, ngx_uint_t status,
    char *type, u_char *body, size_t len)
{
    ngx_str_t  ctype;

    ctype.data = (u_char *) type;
    ctype.len = ngx_strlen(type);

    if (ngx_http_realtime_poll_cors(r, ngx_http_get_module_loc_conf(r,
                                        ngx_http_realtime_module), 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* body is the request's memory, or static: it outlives the send */

    return ngx_http_realtime_send_body(r, status, &ctype, body, len);
}


/* a refusal as Node's engine.io says it: {"code", "message"} */

ngx_int_t
ngx_http_realtime_eio_http_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_uint_t code, char *message)
{
    u_char     *p, *last;
    ngx_str_t   type;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "realtime: engine.io refused: %s", message);

    (void) ngx_http_realtime_poll_cors(r, ngx_http_get_module_loc_conf(r,
                                          ngx_http_realtime_module), 1);

    if (r->method != NGX_HTTP_POST || r->request_body == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
    }

    p = ngx_pnalloc(r->pool, sizeof("{\"code\":,\"message\":\"\"}")
                             + NGX_INT_T_LEN + ngx_strlen(message));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"code\":%ui,\"message\":\"%s\"}", code,
                       message);

    ngx_str_set(&type, "application/json");

    return ngx_http_realtime_send_body(r, status, &type, p, last - p);
}


/*
 * realtime_allow_origin decides for browsers: an allowed Origin is
 * echoed with credentials, another one is refused.  Without the
 * directive no CORS header is sent (same-origin pages only), as in
 * Node's server without its cors option.
 */

ngx_int_t
ngx_http_realtime_poll_cors(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_uint_t add)
{
    ngx_str_t  *origin, value;

    if (rlcf->origins == NULL) {
        return NGX_OK;
    }

    origin = ngx_http_realtime_poll_origin(r, "Origin", 6);

    if (origin == NULL) {
        return NGX_OK;
    }

    if (ngx_http_realtime_check_origin(r, rlcf, origin) != NGX_OK) {
        return add ? NGX_OK : NGX_DECLINED;
    }

    if (!add) {
        return NGX_OK;
    }

    if (ngx_http_realtime_poll_header(r, "Access-Control-Allow-Origin",
                                      origin)
        == NULL)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "true");

    if (ngx_http_realtime_poll_header(r, "Access-Control-Allow-Credentials",
                                      &value)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_poll_preflight(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    ngx_str_t  *headers, value;

    if (ngx_http_realtime_poll_cors(r, rlcf, 0) != NGX_OK) {
        return ngx_http_realtime_eio_http_error(r, NGX_HTTP_FORBIDDEN, 4,
                                            "Forbidden");
    }

    if (ngx_http_realtime_poll_cors(r, rlcf, 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, "GET, POST, OPTIONS");

    if (ngx_http_realtime_poll_header(r, "Access-Control-Allow-Methods",
                                      &value)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    headers = ngx_http_realtime_poll_origin(r,
                                            "Access-Control-Request-Headers",
                                            30);

    if (headers
        && ngx_http_realtime_poll_header(r, "Access-Control-Allow-Headers",
                                         headers)
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


static ngx_table_elt_t *
ngx_http_realtime_poll_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return h;
}


/* a request header by name (Origin is not among headers_in's fields) */

static ngx_str_t *
ngx_http_realtime_poll_origin(ngx_http_request_t *r, char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }
}


/* a held request that ends (answered, or the client left) */

static void
ngx_http_realtime_poll_cleanup(void *data)
{
    ngx_http_realtime_poll_wait_t *w = data;

    u_char                        buf[64];
    uint32_t                      token;
    ngx_str_t                     except;
    ngx_http_realtime_eio_addr_t  here;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (!w->waiting) {
        return;
    }

    /* ngx_rbtree_delete() zeroes the key */
    token = (uint32_t) w->node.key;

    ngx_rbtree_delete(&ngx_http_realtime_poll_tree, &w->node);
    w->waiting = 0;

    if (w->kind != NGX_HTTP_REALTIME_EIO_GET) {
        return;
    }

    /* a poll the client gave up: the owner ends the session */

    ngx_http_realtime_eio_addr_here(w->zone, &here, token);

    except.data = buf;
    except.len = ngx_sprintf(buf, "%c:%ui:%uD:%uD",
                             (int) NGX_HTTP_REALTIME_EIO_GET_GONE,
                             here.slot, here.id, here.token)
                 - buf;

    (void) ngx_http_realtime_eio_post(w->zone, &w->owner,
                                      NGX_HTTP_REALTIME_IPC_EIO, &w->sid,
                                      &except, NULL, 0);
}


static void
ngx_http_realtime_poll_timeout(ngx_event_t *ev)
{
    ngx_http_realtime_poll_wait_t *w = ev->data;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "realtime: no answer from the owner of engine.io "
                  "session \"%V\"", &w->sid);

    ngx_http_realtime_poll_answer(w, NGX_HTTP_BAD_REQUEST, 1, NULL, 0);
}


/* EIO_REPLY: target "<token>", except "<status>:<code>" */

static void
ngx_http_realtime_poll_reply_handler(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg)
{
    u_char                         *colon;
    ngx_int_t                       status, code;
    ngx_rbtree_node_t              *node;
    ngx_http_realtime_poll_wait_t  *w;

    node = ngx_http_realtime_poll_find(target);

    if (node == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "realtime poll reply for gone token:%V", target);
        return;
    }

    w = (ngx_http_realtime_poll_wait_t *) node;

    if (w->kind == 0) {
        /* a relayed WebSocket's token: not a request */
        return;
    }

    colon = ngx_strlchr(except->data, except->data + except->len, ':');
    if (colon == NULL) {
        return;
    }

    status = ngx_atoi(except->data, colon - except->data);
    code = ngx_atoi(colon + 1, except->data + except->len - colon - 1);

    if (status == NGX_ERROR || code == NGX_ERROR) {
        return;
    }

    ngx_http_realtime_poll_answer(w, status, code, msg->data, msg->len);
}


static ngx_rbtree_node_t *
ngx_http_realtime_poll_find(ngx_str_t *token)
{
    ngx_int_t           key;
    ngx_rbtree_node_t  *node, *sentinel;

    key = ngx_atoi(token->data, token->len);
    if (key == NGX_ERROR) {
        return NULL;
    }

    node = ngx_http_realtime_poll_tree.root;
    sentinel = ngx_http_realtime_poll_tree.sentinel;

    while (node != sentinel) {
        if ((ngx_rbtree_key_t) key == node->key) {
            return node;
        }

        node = ((ngx_rbtree_key_t) key < node->key) ? node->left
                                                     : node->right;
    }

    return NULL;
}


/*
 * An upgrade that landed here while its session lives on another
 * worker: this connection relays frames both ways.
 */

ngx_int_t
ngx_http_realtime_poll_relay_open(ngx_http_realtime_conn_t *ws,
    ngx_str_t *sid, ngx_http_realtime_eio_addr_t *owner)
{
    ngx_http_realtime_poll_relay_t  *relay;

    relay = ngx_calloc(sizeof(ngx_http_realtime_poll_relay_t) + sid->len,
                       ws->connection->log);
    if (relay == NULL) {
        return NGX_ERROR;
    }

    while (++ngx_http_realtime_poll_token == 0) { /* void */ }

    relay->node.key = ngx_http_realtime_poll_token;
    relay->ws = ws;
    relay->zone = ws->conf->zone;
    relay->owner = *owner;
    relay->sid.data = relay->data;
    relay->sid.len = sid->len;
    ngx_memcpy(relay->data, sid->data, sid->len);

    ngx_rbtree_insert(&ngx_http_realtime_poll_tree, &relay->node);

    ((ngx_http_realtime_sio_ws_t *) ws)->relay = relay;

    return ngx_http_realtime_poll_relay_message(ws, 0, NULL, 0);
}


/* opcode 0: the opening; else a message of the client */

ngx_int_t
ngx_http_realtime_poll_relay_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    u_char                           buf[64], kind;
    ngx_int_t                        rc;
    ngx_str_t                        except;
    ngx_http_realtime_eio_addr_t     here;
    ngx_http_realtime_poll_relay_t  *relay;

    relay = ((ngx_http_realtime_sio_ws_t *) ws)->relay;

    /* what could never pass the owner's queue, as answers are bounded */

    if (relay->owner.slot < NGX_HTTP_REALTIME_SLOTS
        && len > relay->zone->sh->slots[relay->owner.slot].queue_size / 2)
    {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime: a relayed frame of %uz bytes is larger "
                      "than the queue of engine.io session \"%V\"'s owner",
                      len, &relay->sid);
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_TOO_BIG, NULL);
        return NGX_OK;
    }

    kind = (opcode == 0) ? NGX_HTTP_REALTIME_EIO_WS_OPEN
           : (opcode == NGX_HTTP_REALTIME_OP_BINARY)
             ? NGX_HTTP_REALTIME_EIO_WS_BINARY
             : NGX_HTTP_REALTIME_EIO_WS_TEXT;

    ngx_http_realtime_eio_addr_here(relay->zone, &here,
                                    (uint32_t) relay->node.key);

    except.data = buf;
    except.len = ngx_sprintf(buf, "%c:%ui:%uD:%uD", (int) kind, here.slot,
                             here.id, here.token)
                 - buf;

    rc = ngx_http_realtime_eio_post(relay->zone, &relay->owner,
                                    NGX_HTTP_REALTIME_IPC_EIO, &relay->sid,
                                    &except, data, len);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime: the owner of engine.io session \"%V\" "
                      "is gone, closing", &relay->sid);
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_GOING_AWAY,
                                NULL);

    } else if (rc != NGX_OK) {
        /* a frame cannot wait here: the client comes back and recovers */
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "realtime: the queue of engine.io session \"%V\"'s "
                      "owner is full, closing", &relay->sid);
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_TRY_AGAIN, NULL);
    }

    return NGX_OK;
}


void
ngx_http_realtime_poll_relay_release(ngx_http_realtime_conn_t *ws)
{
    u_char                           buf[64];
    ngx_str_t                        except;
    ngx_http_realtime_sio_ws_t      *sws;
    ngx_http_realtime_eio_addr_t     here;
    ngx_http_realtime_poll_relay_t  *relay;

    sws = (ngx_http_realtime_sio_ws_t *) ws;
    relay = sws->relay;

    ngx_http_realtime_eio_addr_here(relay->zone, &here,
                                    (uint32_t) relay->node.key);

    ngx_rbtree_delete(&ngx_http_realtime_poll_tree, &relay->node);

    except.data = buf;
    except.len = ngx_sprintf(buf, "%c:%ui:%uD:%uD",
                             (int) NGX_HTTP_REALTIME_EIO_WS_GONE, here.slot,
                             here.id, here.token)
                 - buf;

    (void) ngx_http_realtime_eio_post(relay->zone, &relay->owner,
                                      NGX_HTTP_REALTIME_IPC_EIO, &relay->sid,
                                      &except, NULL, 0);

    ngx_free(relay);
    sws->relay = NULL;
}


/* EIO_WS: target "<token>", except "F" (msg: a frame) or "C" (close) */

static void
ngx_http_realtime_poll_ws_handler(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg)
{
    ngx_rbtree_node_t               *node;
    ngx_http_realtime_poll_relay_t  *relay;

    node = ngx_http_realtime_poll_find(target);

    if (node == NULL || except->len != 1) {
        return;
    }

    relay = (ngx_http_realtime_poll_relay_t *) node;

    if (relay->kind != 0) {
        /* a held request's token */
        return;
    }

    if (except->data[0] == 'C') {
        ngx_http_realtime_close(relay->ws, NGX_HTTP_REALTIME_CLOSE_NORMAL,
                                NULL);
        return;
    }

    (void) ngx_http_realtime_send(relay->ws, msg);
}


/*
 * A record to a worker: to this one by a direct call of the handler,
 * else by IPC.  NGX_DECLINED: the worker is gone.
 */

ngx_int_t
ngx_http_realtime_eio_post(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *to, ngx_uint_t type, ngx_str_t *target,
    ngx_str_t *except, u_char *data, size_t len)
{
    ngx_http_realtime_msg_t  *msg;

    if (to->id == ngx_http_realtime_ipc_worker_id()) {
        msg = ngx_http_realtime_msg_alloc(len);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        if (len) {
            ngx_memcpy(msg->data, data, len);
        }

        msg->len = len;

        ngx_http_realtime_ipc_handlers[type - NGX_HTTP_REALTIME_IPC_HANDLED](
            zone, target, except, msg);

        ngx_http_realtime_msg_release(msg);

        return NGX_OK;
    }

    if (zone == NULL) {
        return NGX_DECLINED;
    }

    return ngx_http_realtime_ipc_send(zone, to->slot, to->id, type, target,
                                      except, data, len);
}


void
ngx_http_realtime_eio_addr_here(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *addr, uint32_t token)
{
    addr->slot = zone ? zone->slot : NGX_HTTP_REALTIME_SLOTS;
    addr->id = ngx_http_realtime_ipc_worker_id();
    addr->token = token;
}


/* the owner named by a sid: slot and worker id in hex */

ngx_int_t
ngx_http_realtime_eio_owner(ngx_str_t *sid,
    ngx_http_realtime_eio_addr_t *owner)
{
    ngx_int_t  slot, id;

    if (sid->len != NGX_HTTP_REALTIME_EIO_SID_LEN) {
        return NGX_DECLINED;
    }

    slot = ngx_hextoi(sid->data, 2);
    id = ngx_hextoi(sid->data + 2, 8);

    if (slot == NGX_ERROR || id == NGX_ERROR
        || slot > NGX_HTTP_REALTIME_SLOTS)
    {
        return NGX_DECLINED;
    }

    owner->slot = slot;
    owner->id = (uint32_t) id;
    owner->token = 0;

    return NGX_OK;
}
