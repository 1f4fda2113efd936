
/*
 * Copyright (C) ngx-realtime developers
 *
 * Client events forwarded to backends through nginx locations
 * (realtime_forward), and their replies applied to the session.
 *
 * An upgraded socket has no request, and a subrequest of one would live
 * in its pool for the socket's whole life.  So each forward makes its
 * own pool, a connection without a socket and a request on the WebSocket
 * location's configuration, and sends a POST subrequest with the event
 * as JSON to the route's URI, kept in memory: proxy_pass, upstream
 * keepalive, fastcgi_pass and the rest apply there.  The reply is
 * applied after the subrequest is done, from a posted event, and the
 * pool goes with it.
 *
 * A session's forwards wait in its line (a worker tree by session):
 * ordered ones one at a time, so that replies apply in the order the
 * client sent the events; "unordered" routes start at once.  When the
 * session goes, its forwards are detached and their replies dropped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_forward_codec.h"
#include "ngx_http_realtime_jwt.h"


/* a session's metadata, encoded, at most */
#define NGX_HTTP_REALTIME_FORWARD_META_MAX    4096


typedef struct ngx_http_realtime_forward_s  ngx_http_realtime_forward_t;


/* a session's forwards, in order */
typedef struct {
    ngx_rbtree_node_t                  node;      /* key: the session */
    ngx_http_realtime_session_t       *session;
    ngx_queue_t                        forwards;
    ngx_uint_t                         n;
} ngx_http_realtime_forward_line_t;


struct ngx_http_realtime_forward_s {
    ngx_queue_t                        link;      /* in line->forwards */
    ngx_pool_t                        *pool;
    ngx_connection_t                  *connection;
    ngx_http_request_t                *request;
    ngx_http_request_t                *subrequest;
    ngx_uint_t                         waits;
    ngx_http_realtime_forward_line_t  *line;      /* NULL: detached */
    ngx_http_realtime_zone_t          *zone;      /* for the metrics */
    ngx_http_realtime_route_forward_t *route;
    ngx_str_t                          event;
    json_int_t                         id;
    json_t                            *data;      /* the event's, unsent */
    ngx_str_t                          body;
    ngx_str_t                          reply;
    json_t                            *claims;    /* $realtime_jwt_* */
    ngx_uint_t                         status;
    ngx_int_t                          rc;
    ngx_msec_t                         start;
    ngx_event_t                        timer;     /* the route's timeout */
    ngx_event_t                        done;      /* posted: apply, free */
    unsigned                           started:1;
    unsigned                           finished:1;
    unsigned                           answered:1;
    unsigned                           hook:1;     /* connect, disconnect */
};


static ngx_http_realtime_forward_t *ngx_http_realtime_forward_new(
    ngx_http_realtime_session_t *s, ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_route_forward_t *route,
    ngx_http_realtime_forward_line_t *line);
static ngx_http_realtime_route_forward_t *ngx_http_realtime_forward_route(
    ngx_http_realtime_loc_conf_t *conf, const char *event, size_t len);
static ngx_http_realtime_forward_line_t *ngx_http_realtime_forward_line(
    ngx_http_realtime_session_t *s, ngx_uint_t create);
static ngx_int_t ngx_http_realtime_forward_event(
    ngx_http_realtime_cmd_t *cmd, ngx_http_realtime_forward_t *f);
static ngx_int_t ngx_http_realtime_forward_body(
    ngx_http_realtime_session_t *s, ngx_http_realtime_forward_t *f);
static void ngx_http_realtime_forward_next(
    ngx_http_realtime_forward_line_t *line);
static ngx_int_t ngx_http_realtime_forward_start(
    ngx_http_realtime_forward_t *f, ngx_http_realtime_session_t *s);
static ngx_int_t ngx_http_realtime_forward_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static void ngx_http_realtime_forward_wake(ngx_http_request_t *r);
static void ngx_http_realtime_forward_finish(ngx_event_t *ev);
static void ngx_http_realtime_forward_timeout(ngx_event_t *ev);
static void ngx_http_realtime_forward_answer(ngx_http_realtime_forward_t *f,
    ngx_uint_t outcome, const char *code, const char *message);
static void ngx_http_realtime_forward_apply(ngx_http_realtime_forward_t *f);
static void ngx_http_realtime_forward_apply_reply(
    ngx_http_realtime_forward_t *f, ngx_http_realtime_session_t *s,
    ngx_http_realtime_forward_reply_t *reply);
static void ngx_http_realtime_forward_rooms(ngx_http_realtime_session_t *s,
    json_t *rooms, ngx_uint_t join);
static void ngx_http_realtime_forward_publish(ngx_http_realtime_session_t *s,
    json_t *item, ngx_uint_t type);
static ngx_http_realtime_forward_line_t *ngx_http_realtime_forward_detach(
    ngx_http_realtime_forward_t *f);
static void ngx_http_realtime_forward_free(ngx_http_realtime_forward_t *f);
static void ngx_http_realtime_forward_cancel(ngx_http_realtime_session_t *s);
static void ngx_http_realtime_forward_meta(ngx_http_realtime_session_t *s,
    json_t *meta);
static ngx_http_realtime_forward_t *ngx_http_realtime_forward_of(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_forward_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static void ngx_http_realtime_forward_count(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_route_forward_t *route, ngx_uint_t outcome,
    ngx_msec_t start);
static ngx_http_realtime_forward_route_sh_t *
    ngx_http_realtime_forward_route_metric(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_route_forward_t *route);


static ngx_msec_t  ngx_http_realtime_forward_buckets[] = {
    NGX_HTTP_REALTIME_FORWARD_BUCKET_MS
};


static ngx_rbtree_t       ngx_http_realtime_forward_lines;
static ngx_rbtree_node_t  ngx_http_realtime_forward_sentinel;
static ngx_uint_t         ngx_http_realtime_forward_inflight;
static ngx_uint_t         ngx_http_realtime_forward_worker_max;

static ngx_str_t  ngx_http_realtime_forward_post = ngx_string("POST");


ngx_int_t
ngx_http_realtime_forward_init_process(ngx_cycle_t *cycle)
{
    ngx_http_realtime_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_realtime_module);

    /* realtime_forward_worker_max_inflight; no http block: none run */
    ngx_http_realtime_forward_worker_max = rmcf ? rmcf->forward_worker_max
                                                : 0;

    ngx_rbtree_init(&ngx_http_realtime_forward_lines,
                    &ngx_http_realtime_forward_sentinel,
                    ngx_rbtree_insert_value);

    return NGX_OK;
}


/*
 * An event no built-in command takes: NGX_DECLINED when no route
 * forwards it, else NGX_OK (answered now, or when the reply comes).
 */

ngx_int_t
ngx_http_realtime_forward(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    json_int_t                          id;
    ngx_http_realtime_forward_t        *f;
    ngx_http_realtime_forward_line_t   *line;
    ngx_http_realtime_route_forward_t  *route;

    route = ngx_http_realtime_forward_route(s->conf, cmd->event,
                                            cmd->event_len);
    if (route == NULL) {
        return NGX_DECLINED;
    }

    id = cmd->has_id ? cmd->id : -1;

    if (s->sh_conn == NULL) {
        return s->handler->error(s, "BAD_REQUEST",
                                 "forwarding needs \"realtime <zone>\"", id);
    }

    line = ngx_http_realtime_forward_line(s, 1);
    if (line == NULL) {
        return NGX_ERROR;
    }

    if (line->n >= s->conf->forward_max
        || ngx_http_realtime_forward_inflight
           >= ngx_http_realtime_forward_worker_max)
    {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: too many forwards in flight, \"%*s\" "
                      "refused", cmd->event_len, cmd->event);
        ngx_http_realtime_forward_count(s->zone, route,
                                        NGX_HTTP_REALTIME_FORWARD_BUSY, 0);

        return s->handler->error(s, "BUSY", "too many requests in flight",
                                 id);
    }

    /*
     * A forward may outlive its socket: nothing of it logs to the
     * socket's log, which goes with the socket's pool.
     */

    f = ngx_http_realtime_forward_new(s, cmd, route, line);
    if (f == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime forward \"%V\" to \"%V\", %ui in line",
                   &f->event, &route->uri, line->n);

    ngx_http_realtime_forward_next(line);

    return NGX_OK;
}


/*
 * A forward of the session's event (or of a hook: cmd->event is then
 * the hook's name), in its own pool, queued in line (NULL: detached).
 */

static ngx_http_realtime_forward_t *
ngx_http_realtime_forward_new(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd, ngx_http_realtime_route_forward_t *route,
    ngx_http_realtime_forward_line_t *line)
{
    ngx_pool_t                   *pool;
    ngx_http_realtime_forward_t  *f;

    /*
     * A forward may outlive its socket: nothing of it logs to the
     * socket's log, which goes with the socket's pool.
     */

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    f = ngx_pcalloc(pool, sizeof(ngx_http_realtime_forward_t));
    if (f == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    f->pool = pool;
    f->route = route;
    f->id = cmd->has_id ? cmd->id : -1;
    f->line = line;
    f->hook = (route == s->conf->connect_hook
               || route == s->conf->disconnect_hook);

    if (ngx_http_realtime_forward_event(cmd, f) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    /* the token's claims as they were when the event came */
    f->claims = s->jwt ? json_incref(s->jwt->claims) : NULL;

    f->timer.handler = ngx_http_realtime_forward_timeout;
    f->timer.data = f;
    f->timer.log = ngx_cycle->log;
    f->timer.cancelable = 1;
    f->done.handler = ngx_http_realtime_forward_finish;
    f->done.data = f;
    f->done.log = ngx_cycle->log;
    f->done.cancelable = 1;

    if (line) {
        ngx_queue_insert_tail(&line->forwards, &f->link);
        line->n++;
    }

    ngx_http_realtime_forward_inflight++;

    f->zone = s->zone;
    f->start = ngx_current_msec;
    (void) ngx_atomic_fetch_add(&f->zone->sh->forward_inflight, 1);

    return f;
}


/*
 * realtime_connect_request: the reply applies to the new socket (joins,
 * an emit of a welcome, a disconnect); 401 and 403 close it with 4001
 * and 4003.  realtime_disconnect_request: one background POST with the
 * user and the rooms, best effort.
 */

void
ngx_http_realtime_forward_hook(ngx_http_realtime_session_t *s,
    ngx_uint_t connect)
{
    ngx_http_realtime_cmd_t             cmd;
    ngx_http_realtime_forward_t        *f;
    ngx_http_realtime_forward_line_t   *line;
    ngx_http_realtime_route_forward_t  *route;

    route = connect ? s->conf->connect_hook : s->conf->disconnect_hook;

    if (route == NULL || s->sh_conn == NULL) {
        return;
    }

    ngx_memzero(&cmd, sizeof(ngx_http_realtime_cmd_t));
    cmd.event = connect ? "connect" : "disconnect";
    cmd.event_len = ngx_strlen(cmd.event);

    line = NULL;

    if (connect) {
        line = ngx_http_realtime_forward_line(s, 1);
        if (line == NULL) {
            return;
        }
    }

    f = ngx_http_realtime_forward_new(s, &cmd, route, line);
    if (f == NULL) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime forward hook \"%V\" to \"%V\"",
                   &f->event, &route->uri);

    if (line) {
        ngx_http_realtime_forward_next(line);
        return;
    }

    f->started = 1;

    if (ngx_http_realtime_forward_start(f, s) != NGX_OK) {
        f->rc = NGX_ERROR;
        f->finished = 1;
        ngx_post_event(&f->done, &ngx_posted_events);
    }
}


static ngx_http_realtime_route_forward_t *
ngx_http_realtime_forward_route(ngx_http_realtime_loc_conf_t *conf,
    const char *event, size_t len)
{
    ngx_uint_t                          i;
    ngx_http_realtime_route_forward_t  *route, *any;

    if (conf->forwards == NULL) {
        return NULL;
    }

    route = conf->forwards->elts;
    any = NULL;

    for (i = 0; i < conf->forwards->nelts; i++) {
        if (route[i].event.len == 1 && route[i].event.data[0] == '*') {
            any = &route[i];
            continue;
        }

        if (route[i].event.len == len
            && ngx_strncmp(route[i].event.data, event, len) == 0)
        {
            return &route[i];
        }
    }

    return any;
}


static ngx_http_realtime_forward_line_t *
ngx_http_realtime_forward_line(ngx_http_realtime_session_t *s,
    ngx_uint_t create)
{
    ngx_rbtree_key_t                   key;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_realtime_forward_line_t  *line;

    key = (ngx_rbtree_key_t) (uintptr_t) s;
    node = ngx_http_realtime_forward_lines.root;
    sentinel = ngx_http_realtime_forward_lines.sentinel;

    while (node && node != sentinel) {
        if (key == node->key) {
            return (ngx_http_realtime_forward_line_t *) node;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    if (!create) {
        return NULL;
    }

    line = ngx_calloc(sizeof(ngx_http_realtime_forward_line_t), s->log);
    if (line == NULL) {
        return NULL;
    }

    line->node.key = key;
    line->session = s;
    ngx_queue_init(&line->forwards);
    ngx_rbtree_insert(&ngx_http_realtime_forward_lines, &line->node);

    return line;
}


/* the event's name, in the forward's pool, and its data until sent */

static ngx_int_t
ngx_http_realtime_forward_event(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_forward_t *f)
{
    /* NUL-terminated: the ack's event name is a C string */
    f->event.len = cmd->event_len;
    f->event.data = ngx_pnalloc(f->pool, cmd->event_len + 1);

    if (f->event.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(f->event.data, cmd->event, cmd->event_len);
    f->event.data[f->event.len] = '\0';

    f->data = json_incref(cmd->data);

    return NGX_OK;
}


/*
 * The JSON body, in the forward's pool, made when the forward starts:
 * the rooms and the metadata are the session's after the replies to
 * the events sent before it.
 */

static ngx_int_t
ngx_http_realtime_forward_body(ngx_http_realtime_session_t *s,
    ngx_http_realtime_forward_t *f)
{
    char                              *text;
    json_t                            *rooms, *body;
    const char                        *protocol;
    ngx_queue_t                       *q;
    ngx_http_realtime_local_member_t  *lm;

    rooms = json_array();
    if (rooms == NULL) {
        return NGX_ERROR;
    }

    for (q = ngx_queue_head(&s->rooms);
         q != ngx_queue_sentinel(&s->rooms);
         q = ngx_queue_next(q))
    {
        lm = ngx_queue_data(q, ngx_http_realtime_local_member_t, conn_link);
        json_array_append_new(rooms,
                              json_stringn((char *) lm->room->sn.str.data,
                                           lm->room->sn.str.len));
    }

    /* a hook's body has no event: the URI says which hook it is */

    protocol = (s->handler == &ngx_http_realtime_native_handler)
               ? "native" : "socket.io";

    body = ngx_http_realtime_forward_request(f->hook ? NULL
                                             : (char *) f->event.data,
                                             f->event.len, f->data, f->id,
                                             (char *) s->id.data, s->id.len,
                                             (char *) s->user.data,
                                             s->user.len, rooms, protocol,
                                             NULL, 0, s->meta);
    json_decref(rooms);

    if (body == NULL) {
        return NGX_ERROR;
    }

    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    if (text == NULL) {
        return NGX_ERROR;
    }

    f->body.len = ngx_strlen(text);
    f->body.data = ngx_pnalloc(f->pool, f->body.len);

    if (f->body.data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(f->body.data, text, f->body.len);
    free(text);

    return NGX_OK;
}


/* starts what may start: every unordered one, the first ordered one */

static void
ngx_http_realtime_forward_next(ngx_http_realtime_forward_line_t *line)
{
    ngx_queue_t                  *q, *next;
    ngx_uint_t                    ordered;
    ngx_http_realtime_forward_t  *f;

    ordered = 0;

    for (q = ngx_queue_head(&line->forwards);
         q != ngx_queue_sentinel(&line->forwards);
         q = next)
    {
        next = ngx_queue_next(q);
        f = ngx_queue_data(q, ngx_http_realtime_forward_t, link);

        if (!f->route->unordered) {
            if (ordered++) {
                continue;
            }
        }

        if (f->started) {
            continue;
        }

        f->started = 1;

        if (ngx_http_realtime_forward_start(f, line->session) != NGX_OK) {
            /* answered as a backend failure, from the posted event */
            f->rc = NGX_ERROR;
            f->finished = 1;
            ngx_post_event(&f->done, &ngx_posted_events);
        }
    }
}


static ngx_int_t
ngx_http_realtime_forward_start(ngx_http_realtime_forward_t *f,
    ngx_http_realtime_session_t *s)
{
    ngx_str_t                     uri;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_http_request_t           *r, *sr;
    ngx_http_post_subrequest_t   *ps;

    if (ngx_http_realtime_forward_body(s, f) != NGX_OK) {
        return NGX_ERROR;
    }

    r = ngx_http_realtime_fake_request(f->pool, s->conf->forward_ctx,
                                       s->handshake, f,
                                       ngx_http_realtime_forward_wake, 1);
    if (r == NULL) {
        return NGX_ERROR;
    }

    f->connection = r->connection;
    f->request = r;

    ps = ngx_palloc(f->pool, sizeof(ngx_http_post_subrequest_t));
    b = ngx_calloc_buf(f->pool);
    cl = ngx_alloc_chain_link(f->pool);

    if (ps == NULL || b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_realtime_forward_done;
    ps->data = f;

    uri = f->route->uri;

    if (ngx_http_subrequest(r, &uri, &r->args, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    f->subrequest = sr;

    /* a POST with the event, and headers of its own */

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_realtime_forward_post;

    b->pos = f->body.data;
    b->last = f->body.data + f->body.len;
    b->memory = 1;
    b->last_buf = 1;
    cl->buf = b;
    cl->next = NULL;

    sr->request_body = ngx_pcalloc(f->pool, sizeof(ngx_http_request_body_t));
    if (sr->request_body == NULL) {
        return NGX_ERROR;
    }

    sr->request_body->bufs = cl;

    /* the headers are the handshake's and the body's type, from r */
    sr->headers_in.content_length_n = f->body.len;

    f->start = ngx_current_msec;

    if (f->route->timeout) {
        ngx_add_timer(&f->timer, f->route->timeout);
    }

    /* nothing runs posted requests of a connection without events */
    ngx_http_run_posted_requests(f->connection);

    return NGX_OK;
}


/* in the subrequest's finalization: keep the answer, act later */

static ngx_int_t
ngx_http_realtime_forward_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_realtime_forward_t *f = data;

    ngx_buf_t  *b;

    if (f->finished) {
        return rc;
    }

    f->finished = 1;
    f->rc = rc;
    f->status = r->headers_out.status;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        f->status = (ngx_uint_t) rc;

    } else if (rc == NGX_ERROR && f->status / 100 != 2) {
        f->status = 0;
    }

    if (r->out && r->out->buf) {
        b = r->out->buf;

        /* nginx finalizes a reply over the buffer as a success */
        if (r->headers_out.content_length_n > b->last - b->pos) {
            f->rc = NGX_ERROR;
        }

        f->reply.len = b->last - b->pos;
        f->reply.data = ngx_pnalloc(f->pool, f->reply.len + 1);

        if (f->reply.data == NULL) {
            f->reply.len = 0;

        } else if (f->reply.len) {
            ngx_memcpy(f->reply.data, b->pos, f->reply.len);
        }
    }

    if (r->out == NULL && r->headers_out.content_length_n > 0) {
        f->rc = NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime forward done rc:%i status:%ui reply:%uz",
                   rc, f->status, f->reply.len);

    /* the rest after this finalization, never inside it */
    if (!f->done.posted && !f->done.timer_set) {
        ngx_post_event(&f->done, &ngx_posted_events);
    }

    return rc;
}


/* the fake request's write handler: nginx wakes it after a subrequest */

static void
ngx_http_realtime_forward_wake(ngx_http_request_t *r)
{
    ngx_http_realtime_forward_t  *f;

    f = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (f->finished && !f->done.posted && !f->done.timer_set) {
        ngx_post_event(&f->done, &ngx_posted_events);
    }
}


/*
 * Posted once the reply is known: it is applied at once; the memory
 * goes only when nginx is done with the subrequest (its parent's count
 * back to one, nothing posted): until then this looks again each
 * millisecond.
 */

static void
ngx_http_realtime_forward_finish(ngx_event_t *ev)
{
    ngx_http_realtime_forward_t *f = ev->data;

    ngx_http_request_t                *r;
    ngx_http_realtime_forward_line_t  *line;

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }

    if (f->line && !f->answered) {
        ngx_http_realtime_forward_apply(f);
    }

    if (f->line) {
        line = ngx_http_realtime_forward_detach(f);

        if (line) {
            ngx_http_realtime_forward_next(line);
        }
    }

    r = f->request;

    if (r && (r->count > 1 || r->posted_requests
              || (f->subrequest && !f->subrequest->done))
        && !f->connection->error && f->waits++ < 10000)
    {
        ngx_add_timer(&f->done, 1);
        return;
    }

    ngx_http_realtime_forward_free(f);
}


/* realtime_forward ... timeout=: answered now, the reply is dropped */

static void
ngx_http_realtime_forward_timeout(ngx_event_t *ev)
{
    ngx_http_realtime_forward_t *f = ev->data;

    ngx_http_realtime_forward_line_t  *line;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "realtime: forward of \"%V\" to \"%V\" timed out after "
                  "%M ms", &f->event, &f->route->uri, f->route->timeout);

    ngx_http_realtime_forward_answer(f, NGX_HTTP_REALTIME_FORWARD_TIMEOUT,
                                     "BACKEND_TIMEOUT",
                                     "the backend did not answer in time");

    if (f->line) {
        line = ngx_http_realtime_forward_detach(f);

        if (line) {
            ngx_http_realtime_forward_next(line);
        }
    }
}


/* the one answer of a failed forward */

static void
ngx_http_realtime_forward_answer(ngx_http_realtime_forward_t *f,
    ngx_uint_t outcome, const char *code, const char *message)
{
    ngx_http_realtime_session_t  *s;

    if (f->answered || f->line == NULL) {
        return;
    }

    ngx_http_realtime_forward_count(f->zone, f->route, outcome, f->start);

    f->answered = 1;
    s = f->line->session;

    (void) s->handler->error(s, code, message, f->id);
}


static void
ngx_http_realtime_forward_apply(ngx_http_realtime_forward_t *f)
{
    ngx_http_realtime_session_t          *s;
    ngx_http_realtime_cmd_error_t         err;
    ngx_http_realtime_forward_reply_t     reply;

    s = f->line->session;

    if (f->hook && f->status / 100 != 2) {
        /* a connect hook that refuses: the codes the contest clients know */

        f->answered = 1;

        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: connect hook \"%V\" answered %ui",
                      &f->route->uri, f->status);

        if (f->status == NGX_HTTP_UNAUTHORIZED
            || f->status == NGX_HTTP_FORBIDDEN)
        {
            s->handler->close(s, f->status == NGX_HTTP_UNAUTHORIZED
                                 ? NGX_HTTP_REALTIME_CLOSE_UNAUTHORIZED
                                 : NGX_HTTP_REALTIME_CLOSE_FORBIDDEN,
                              f->status == NGX_HTTP_UNAUTHORIZED
                              ? "unauthorized" : "forbidden");
        }

        return;
    }

    if (f->rc == NGX_ERROR && f->status / 100 == 2) {
        /* a 2xx that broke off: over subrequest_output_buffer_size */
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "realtime: forward of \"%V\" to \"%V\": the reply "
                      "is cut or over subrequest_output_buffer_size",
                      &f->event, &f->route->uri);
        ngx_http_realtime_forward_answer(f,
                                         NGX_HTTP_REALTIME_FORWARD_BAD_REPLY,
                                         "BACKEND_BAD_REPLY",
                                         "the reply is too large");
        return;
    }

    if (f->rc == NGX_ERROR || f->status == 0 || f->status >= 500) {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "realtime: forward of \"%V\" to \"%V\" failed: "
                      "status %ui", &f->event, &f->route->uri, f->status);
        ngx_http_realtime_forward_answer(f,
                                         NGX_HTTP_REALTIME_FORWARD_UNAVAILABLE,
                                         "BACKEND_UNAVAILABLE",
                                         "the backend is unavailable");
        return;
    }

    if (ngx_http_realtime_forward_reply_parse(&reply, (char *) f->reply.data,
                                              f->reply.len, &err)
        != 0)
    {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "realtime: forward of \"%V\" to \"%V\": invalid reply: "
                      "%s", &f->event, &f->route->uri, err.message);

        if (f->status >= 400) {
            ngx_http_realtime_forward_answer(f,
                                         NGX_HTTP_REALTIME_FORWARD_REFUSED,
                                         "BACKEND_ERROR",
                                         "the backend refused");

        } else {
            ngx_http_realtime_forward_answer(f,
                                         NGX_HTTP_REALTIME_FORWARD_BAD_REPLY,
                                         err.code, err.message);
        }

        return;
    }

    if (f->status >= 400) {
        /* a refusal keeps the socket: its error, or one by status */

        if (reply.error_code) {
            ngx_http_realtime_forward_answer(f,
                                         NGX_HTTP_REALTIME_FORWARD_REFUSED,
                                         reply.error_code,
                                         reply.error_message);

        } else {
            ngx_http_realtime_forward_answer(f,
                NGX_HTTP_REALTIME_FORWARD_REFUSED,
                f->status == NGX_HTTP_UNAUTHORIZED ? "UNAUTHORIZED"
                : f->status == NGX_HTTP_FORBIDDEN ? "FORBIDDEN"
                : f->status == NGX_HTTP_NOT_FOUND ? "NOT_FOUND"
                : "BAD_REQUEST",
                "the backend refused");
        }

        ngx_http_realtime_forward_reply_free(&reply);
        return;
    }

    ngx_http_realtime_forward_apply_reply(f, s, &reply);
    ngx_http_realtime_forward_reply_free(&reply);
}


/*
 * In one turn of the event loop, in this order: leave, join, emit to
 * this socket, publish to rooms and users, the ack or the error, the
 * disconnect.  Nothing of another event can come in between.
 */

static void
ngx_http_realtime_forward_apply_reply(ngx_http_realtime_forward_t *f,
    ngx_http_realtime_session_t *s, ngx_http_realtime_forward_reply_t *reply)
{
    size_t     i;
    json_t    *item;
    ngx_str_t  user;

    /*
     * The connect hook names the user of a socket that came without one
     * (no token), before it joins anything: as realtime_identify does.
     */

    if (f->hook && reply->user && s->jwt == NULL) {
        user.data = (u_char *) reply->user;
        user.len = reply->user_len;

        if (ngx_http_realtime_room_identify(s, &user) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, s->log, 0,
                          "realtime: the connect hook's user \"%V\" was "
                          "not taken", &user);
        }
    }

    if (reply->meta) {
        ngx_http_realtime_forward_meta(s, reply->meta);
    }

    ngx_http_realtime_forward_rooms(s, reply->leave, 0);
    ngx_http_realtime_forward_rooms(s, reply->join, 1);

    json_array_foreach(reply->emit, i, item) {
        (void) s->handler->reply(s,
                                 json_string_value(json_object_get(item,
                                                                   "event")),
                                 json_object_get(item, "data"), -1);
    }

    json_array_foreach(reply->publish, i, item) {
        ngx_http_realtime_forward_publish(s, item, NGX_HTTP_REALTIME_TO_ROOM);
    }

    json_array_foreach(reply->to_user, i, item) {
        ngx_http_realtime_forward_publish(s, item, NGX_HTTP_REALTIME_TO_USER);
    }

    f->answered = 1;

    ngx_http_realtime_forward_count(f->zone, f->route,
                                    reply->error_code
                                    ? NGX_HTTP_REALTIME_FORWARD_REFUSED
                                    : NGX_HTTP_REALTIME_FORWARD_OK, f->start);

    if (reply->error_code) {
        (void) s->handler->error(s, reply->error_code, reply->error_message,
                                 f->id);

    } else if (f->id >= 0) {
        /* the client's id gets exactly one answer: null by default */
        (void) s->handler->reply(s, (char *) f->event.data,
                                 reply->has_ack ? reply->ack : NULL, f->id);
    }

    if (reply->disconnect) {
        s->handler->close(s, reply->disconnect_code,
                          (char *) reply->disconnect_reason);
    }
}


/*
 * A reply's "meta" sets those keys of the session's metadata, sent in
 * every later forward's body; a null deletes its key.  Past
 * NGX_HTTP_REALTIME_FORWARD_META_MAX bytes the change is refused.
 */

static void
ngx_http_realtime_forward_meta(ngx_http_realtime_session_t *s, json_t *meta)
{
    json_t      *next, *value;
    const char  *key;

    next = s->meta ? json_deep_copy(s->meta) : json_object();
    if (next == NULL) {
        return;
    }

    json_object_foreach(meta, key, value) {
        if (json_is_null(value)) {
            (void) json_object_del(next, key);

        } else {
            (void) json_object_set(next, key, value);
        }
    }

    if (json_dumpb(next, NULL, 0, JSON_COMPACT)
        > NGX_HTTP_REALTIME_FORWARD_META_MAX)
    {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "realtime: a backend's \"meta\" would be over %d "
                      "bytes, not taken", NGX_HTTP_REALTIME_FORWARD_META_MAX);
        json_decref(next);
        return;
    }

    if (s->meta) {
        json_decref(s->meta);
    }

    s->meta = json_object_size(next) ? next : NULL;

    if (s->meta == NULL) {
        json_decref(next);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime forward meta: %uz keys",
                   s->meta ? json_object_size(s->meta) : 0);
}


static void
ngx_http_realtime_forward_rooms(ngx_http_realtime_session_t *s,
    json_t *rooms, ngx_uint_t join)
{
    size_t       i;
    json_t      *item;
    ngx_int_t    rc;
    ngx_str_t    room;
    ngx_uint_t   members, edge;

    json_array_foreach(rooms, i, item) {
        room.data = (u_char *) json_string_value(item);
        room.len = json_string_length(item);

        if (!join) {
            rc = ngx_http_realtime_room_leave(s, &room, &members, &edge);

            if (rc == NGX_OK && edge && s->conf->presence) {
                ngx_http_realtime_presence_event(s, "presence:leave", &room);
            }

            continue;
        }

        /* a backend may not put a user where the token forbids */

        if (ngx_http_realtime_jwt_room_allowed(s, &room) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, s->log, 0,
                          "realtime: a forward's reply joins \"%V\", which "
                          "the token does not allow", &room);
            continue;
        }

        rc = ngx_http_realtime_room_join(s, &room, &members, &edge);

        if (rc == NGX_OK && edge && s->conf->presence) {
            ngx_http_realtime_presence_event(s, "presence:join", &room);
        }
    }
}


static void
ngx_http_realtime_forward_publish(ngx_http_realtime_session_t *s,
    json_t *item, ngx_uint_t type)
{
    json_t                   *event, *json, *except;
    ngx_str_t                 target;
    const char               *name;
    ngx_http_realtime_msg_t  *msg;

    name = json_string_value(json_object_get(item, "event"));

    if (type == NGX_HTTP_REALTIME_TO_ROOM) {
        event = json_object_get(item, "room");
        json = ngx_http_realtime_event_relay(name, ngx_strlen(name),
                                             json_string_value(event),
                                             json_string_length(event),
                                             (char *) s->user.data,
                                             s->user.len,
                                             json_object_get(item, "data"));

    } else {
        event = json_object_get(item, "user");
        json = ngx_http_realtime_event(name, json_object_get(item, "data"),
                                       -1);
    }

    if (json) {
        ngx_http_realtime_stamp(s->conf->timestamp, json);
    }

    if (json == NULL) {
        return;
    }

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return;
    }

    target.data = (u_char *) json_string_value(event);
    target.len = json_string_length(event);
    except = json_object_get(item, "except_self");

    (void) ngx_http_realtime_publish(s->zone, type, &target, NULL,
                                     json_is_true(except) ? s : NULL, msg,
                                     NULL);
    ngx_http_realtime_msg_release(msg);
}


/*
 * The session goes: its forwards finish on their own, unanswered; the
 * disconnect hook is sent with the rooms and the metadata it had.
 */

void
ngx_http_realtime_forward_end(ngx_http_realtime_session_t *s)
{
    ngx_http_realtime_forward_cancel(s);

    if (s->routed) {
        /* a disconnect only after a connect */
        ngx_http_realtime_forward_hook(s, 0);
    }

    if (s->meta) {
        json_decref(s->meta);
        s->meta = NULL;
    }
}


static void
ngx_http_realtime_forward_cancel(ngx_http_realtime_session_t *s)
{
    ngx_uint_t                         n;
    ngx_queue_t                       *q;
    ngx_http_realtime_forward_t       *f;
    ngx_http_realtime_forward_line_t  *line;

    line = ngx_http_realtime_forward_line(s, 0);

    if (line == NULL) {
        return;
    }

    /* the last detach frees the line: count, do not look at it */

    for (n = line->n; n; n--) {
        q = ngx_queue_head(&line->forwards);
        f = ngx_queue_data(q, ngx_http_realtime_forward_t, link);

        (void) ngx_http_realtime_forward_detach(f);

        if (!f->started) {
            /* never sent: nothing else will free it */
            ngx_http_realtime_forward_free(f);
        }
    }
}


/* returns the line, or NULL when it went with its last forward */

static ngx_http_realtime_forward_line_t *
ngx_http_realtime_forward_detach(ngx_http_realtime_forward_t *f)
{
    ngx_http_realtime_forward_line_t  *line;

    line = f->line;
    f->line = NULL;

    ngx_queue_remove(&f->link);

    if (--line->n == 0) {
        ngx_rbtree_delete(&ngx_http_realtime_forward_lines, &line->node);
        ngx_free(line);
        return NULL;
    }

    return line;
}


static void
ngx_http_realtime_forward_free(ngx_http_realtime_forward_t *f)
{
    ngx_http_cleanup_t   *cln;
    ngx_http_request_t   *r;

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }

    if (f->done.posted) {
        ngx_delete_posted_event(&f->done);
    }

    if (f->done.timer_set) {
        ngx_del_timer(&f->done);
    }

    r = f->request;

    if (r) {
        for (cln = r->cleanup; cln; cln = cln->next) {
            if (cln->handler) {
                cln->handler(cln->data);
            }
        }
    }

    if (f->connection) {
        ngx_http_realtime_fake_close(f->connection);
    }

    if (f->claims) {
        json_decref(f->claims);
    }

    if (f->data) {
        json_decref(f->data);
    }

    ngx_http_realtime_forward_inflight--;
    (void) ngx_atomic_fetch_add(&f->zone->sh->forward_inflight, -1);

    ngx_destroy_pool(f->pool);
}


/* realtime_connect_request uri [timeout=time]; realtime_disconnect_... */

static ngx_str_t  ngx_http_realtime_forward_variables[] = {
    ngx_string("realtime_event"),
    ngx_string("realtime_connection_id"),
    ngx_string("realtime_user"),
    ngx_null_string
};


ngx_int_t
ngx_http_realtime_forward_add_variables(ngx_conf_t *cf)
{
    ngx_uint_t            i;
    ngx_http_variable_t  *var;

    for (i = 0; ngx_http_realtime_forward_variables[i].len; i++) {
        var = ngx_http_add_variable(cf, &ngx_http_realtime_forward_variables[i],
                                    NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_http_realtime_forward_variable;
        var->data = i;
    }

    return NGX_OK;
}


/* the forward a request of a forward's location was made for, or NULL */

static ngx_http_realtime_forward_t *
ngx_http_realtime_forward_of(ngx_http_request_t *r)
{
    /* only a forward's request has a connection without a socket */

    if (r->main->connection->fd != (ngx_socket_t) -1) {
        return NULL;
    }

    return ngx_http_get_module_ctx(r->main, ngx_http_realtime_module);
}


/* in a forward's location: the token's claims, for $realtime_jwt_* */

json_t *
ngx_http_realtime_forward_claims(ngx_http_request_t *r)
{
    ngx_http_realtime_forward_t  *f;

    f = ngx_http_realtime_forward_of(r);

    return f ? f->claims : NULL;
}


/* in a forward's location: the event, and the session's id and user */

static ngx_int_t
ngx_http_realtime_forward_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                     *value;
    ngx_http_realtime_forward_t   *f;
    ngx_http_realtime_session_t   *s;

    f = ngx_http_realtime_forward_of(r);

    if (f == NULL || f->line == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = f->line->session;

    value = (data == 0) ? &f->event : (data == 1) ? &s->id : &s->user;

    v->data = value->data;
    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* by outcome; the latency of answered ones, in the zone for /metrics */

static void
ngx_http_realtime_forward_count(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_route_forward_t *route, ngx_uint_t outcome,
    ngx_msec_t start)
{
    ngx_uint_t                             i;
    ngx_msec_t                             ms;
    ngx_http_realtime_forward_route_sh_t  *m;

    (void) ngx_atomic_fetch_add(&zone->sh->forward_total[outcome], 1);

    m = ngx_http_realtime_forward_route_metric(zone, route);

    if (m) {
        (void) ngx_atomic_fetch_add(&m->total[outcome], 1);
    }

    if (outcome == NGX_HTTP_REALTIME_FORWARD_BUSY) {
        return;
    }

    ms = ngx_current_msec - start;

    for (i = 0; i < NGX_HTTP_REALTIME_FORWARD_BUCKETS; i++) {
        if (ms <= ngx_http_realtime_forward_buckets[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->forward_latency[i], 1);
    (void) ngx_atomic_fetch_add(&zone->sh->forward_latency_ms, ms);

    if (m) {
        (void) ngx_atomic_fetch_add(&m->answered, 1);
        (void) ngx_atomic_fetch_add(&m->latency_ms, ms);
    }
}


/*
 * The route's counters in the zone, by "event uri": found (or taken)
 * under the zone's lock once per worker, then kept in the route.  NULL
 * past NGX_HTTP_REALTIME_FORWARD_ROUTES routes, or for a name too long:
 * those count in the zone's totals only.
 */

static ngx_http_realtime_forward_route_sh_t *
ngx_http_realtime_forward_route_metric(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_route_forward_t *route)
{
    size_t                                 len, size;
    ngx_uint_t                             i, n;
    ngx_http_realtime_shctx_t             *sh;
    ngx_http_realtime_forward_route_sh_t  *m;

    if (route->metric_zone == zone) {
        return route->metric;
    }

    route->metric_zone = zone;
    route->metric = NULL;

    len = route->event.len + route->uri.len;

    if (len > NGX_HTTP_REALTIME_FORWARD_ROUTE_NAME) {
        return NULL;
    }

    sh = zone->sh;
    m = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->forward_routes == NULL) {
        size = NGX_HTTP_REALTIME_FORWARD_ROUTES
               * sizeof(ngx_http_realtime_forward_route_sh_t);
        sh->forward_routes = ngx_slab_calloc_locked(zone->shpool, size);
    }

    n = sh->nforward_routes;

    for (i = 0; sh->forward_routes && i < n; i++) {
        m = &sh->forward_routes[i];

        if (m->event_len == route->event.len && m->len == len
            && ngx_memcmp(m->name, route->event.data, m->event_len) == 0
            && ngx_memcmp(m->name + m->event_len, route->uri.data,
                          route->uri.len)
               == 0)
        {
            break;
        }

        m = NULL;
    }

    if (m == NULL && sh->forward_routes
        && n < NGX_HTTP_REALTIME_FORWARD_ROUTES)
    {
        m = &sh->forward_routes[n];
        ngx_memcpy(m->name, route->event.data, route->event.len);
        ngx_memcpy(m->name + route->event.len, route->uri.data,
                   route->uri.len);
        m->event_len = route->event.len;
        m->len = len;

        /* the metrics read entries below the count without the lock */
        ngx_memory_barrier();
        sh->nforward_routes = n + 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    route->metric = m;

    return m;
}
