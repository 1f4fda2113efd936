
/*
 * Copyright (C) ngx-realtime developers
 *
 * An upgraded connection: reading and dispatching frames, the outgoing
 * queue, liveness and the closing handshake.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


/* one read buffer per worker: idle connections hold none */
#define NGX_HTTP_REALTIME_READ_BUFFER   65536

/* buffers at most this big are recycled through a per-worker free list */
#define NGX_HTTP_REALTIME_MSG_SMALL     512
#define NGX_HTTP_REALTIME_MSG_FREE_MAX  4096

/* reads of the read buffer in one read event */
#define NGX_HTTP_REALTIME_READS         16

/* frames handed to one send_chain() call */
#define NGX_HTTP_REALTIME_IOVS          64


static void ngx_http_realtime_free_request(ngx_http_request_t *r);
static void ngx_http_realtime_read_handler(ngx_event_t *rev);
static void ngx_http_realtime_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_http_realtime_process(ngx_http_realtime_conn_t *ws,
    u_char *pos, u_char *end);
static ngx_int_t ngx_http_realtime_data(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_frame_t *f);
static ngx_int_t ngx_http_realtime_control(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_frame_t *f);
static ngx_int_t ngx_http_realtime_flush(ngx_http_realtime_conn_t *ws);
static ngx_int_t ngx_http_realtime_flush_plain(ngx_http_realtime_conn_t *ws);
static void ngx_http_realtime_flushed(ngx_http_realtime_conn_t *ws);
static void ngx_http_realtime_conn_lag(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg);
static void ngx_http_realtime_conn_handshake(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws);
static ngx_int_t ngx_http_realtime_make_room(ngx_http_realtime_conn_t *ws,
    size_t len);
static ngx_int_t ngx_http_realtime_queue(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg);
static void ngx_http_realtime_drop_queue(ngx_http_realtime_conn_t *ws,
    ngx_uint_t all);
static void ngx_http_realtime_linger(ngx_http_realtime_conn_t *ws);
static void ngx_http_realtime_linger_handler(ngx_event_t *rev);
static void ngx_http_realtime_finalize(ngx_http_realtime_conn_t *ws);
static ngx_int_t ngx_http_realtime_echo(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_realtime_echo_release(ngx_http_realtime_conn_t *ws);


static u_char                    ngx_http_realtime_read_buf[
                                     NGX_HTTP_REALTIME_READ_BUFFER];

static ngx_http_realtime_msg_t  *ngx_http_realtime_msg_free;
static ngx_uint_t                ngx_http_realtime_msg_nfree;

static u_char                    ngx_http_realtime_ping_bytes[] = {
                                     0x89, 0x00 };

const ngx_http_realtime_adapter_t  ngx_http_realtime_echo_adapter = {
    sizeof(ngx_http_realtime_conn_t),
    NULL,
    ngx_http_realtime_echo,
    ngx_http_realtime_liveness,
    ngx_http_realtime_echo_release
};


static ngx_http_realtime_msg_t   ngx_http_realtime_ping_msg = {
    1, sizeof(ngx_http_realtime_ping_bytes), 0, NULL,
    ngx_http_realtime_ping_bytes, 1, NULL, ngx_null_string, 0, 0, NULL, 0,
    0, 0
};

/* for records between workers that carry no frame */
ngx_http_realtime_msg_t          ngx_http_realtime_msg_empty = {
    1, 0, 0, NULL, ngx_http_realtime_ping_bytes, 1, NULL, ngx_null_string,
    0, 0, NULL, 0, 0, 0
};


void
ngx_http_realtime_upgrade(ngx_http_request_t *r, ngx_http_realtime_conn_t *ws)
{
    u_char                    *pos, *last;
    ngx_int_t                  rc;
    ngx_chain_t               *cl, *ln;
    ngx_event_t               *rev, *wev;
    ngx_connection_t          *c;
    ngx_http_connection_t     *hc;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;
    hc = r->http_connection;
    rev = c->read;
    wev = c->write;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_http_realtime_frame_parser_init(&ws->parser,
                                        ws->conf->max_message_size, 1);
    ws->parser.deflate = ws->deflate;

    ws->last_in = ngx_current_msec;
    ws->last_ping = ngx_current_msec;

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        /* the 101 queued ahead of the frames has no other owner yet */
        ngx_http_realtime_drop_queue(ws, 1);
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_http_realtime_conn_handshake(r, ws);

    /* frames the client sent right behind its handshake */

    pos = r->header_in->pos;
    last = r->header_in->last;

    ws->upgraded = 1;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        /*
         * One TLS record per frame; no 16k buffer per connection.  It is
         * empty: the 101 is in the queue, or was flushed by the handshake.
         */
        ngx_ssl_free_buffer(c);
        c->ssl->buffer = 0;
    }
#endif

    /*
     * The handlers first: a TLS write that wants a read saves the read
     * handler it finds, to put it back later.
     */

    rev->handler = ngx_http_realtime_read_handler;
    wev->handler = ngx_http_realtime_write_handler;

    /*
     * The 101 and the frames queued with it leave before the request is
     * logged, so that $bytes_sent and $request_time count them.
     */

    rc = wev->ready ? ngx_http_realtime_flush(ws) : NGX_OK;

    ngx_http_realtime_free_request(r);

    c->data = ws;
    c->idle = 1;
    c->log->action = "processing websocket";

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "realtime websocket upgraded, %uz early bytes, "
                   "%ui frames still queued", (size_t) (last - pos),
                   ws->out_count);

    if (rc != NGX_OK) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    /* realtime_auth_failure close: before anything the client sent */
    ngx_http_realtime_jwt_upgraded(ws);

    if (pos < last && ngx_http_realtime_process(ws, pos, last) != NGX_OK) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    /* the early frames were the last user of the header buffers */

    if (c->buffer && c->buffer->start
        && ngx_pfree(c->pool, c->buffer->start) == NGX_OK)
    {
        c->buffer->start = NULL;
        c->buffer->pos = NULL;
        c->buffer->last = NULL;
        c->buffer->end = NULL;
    }

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->busy = NULL;
    hc->nbusy = 0;

    if (ngx_exiting) {
        /* the worker began to shut down while the 101 was on its way */
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_GOING_AWAY,
                                "server shutting down");
    }

    /* early frames may have closed it: then its close timer stays */

    if (!ws->close_sent) {
        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

        ws->adapter->liveness(ws);
    }

    /* the welcome and what was sent during the handshake */

    if (ws->out_count && wev->ready && !wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);

    } else if (ws->out_count && !wev->ready
               && ngx_handle_write_event(wev, 0) != NGX_OK)
    {
        ngx_http_realtime_finalize(ws);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    if (rev->ready) {
        ngx_post_event(rev, &ngx_posted_events);
    }
}


/* from the request's first byte to the 101, as $request_time counts */

static void
ngx_http_realtime_conn_handshake(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws)
{
    ngx_msec_int_t             ms;
    ngx_time_t                *tp;
    ngx_http_realtime_zone_t  *zone;

    zone = ws->conf->zone;

    if (zone == NULL || zone->slot >= NGX_HTTP_REALTIME_SLOTS) {
        return;
    }

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    ngx_http_realtime_histogram_add(&zone->sh->slots[zone->slot].handshake,
                                    (ngx_msec_t) ngx_max(ms, 0));
}


/*
 * An upgraded connection keeps nothing of its request: the request pool
 * and the large header buffers are released (the TLS write buffer by the
 * upgrade, before the 101 is flushed), so an idle WebSocket costs its
 * connection, its pool and this module's state.
 */

static void
ngx_http_realtime_free_request(ngx_http_request_t *r)
{
    ngx_chain_t            *cl, *ln;
    ngx_connection_t       *c;
    ngx_http_connection_t  *hc;

    c = r->connection;
    hc = r->http_connection;

    r->keepalive = 0;

    ngx_http_free_request(r, 0);

    /*
     * ngx_http_free_request() sets c->destroyed, which also stops
     * ngx_http_run_posted_requests() in the handler that called us:
     * c->data is no longer a request.
     */

    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->free = NULL;

    /* hc->busy may hold pipelined frames: freed after they are read */
}


static void
ngx_http_realtime_read_handler(ngx_event_t *rev)
{
    ssize_t                    n;
    ngx_uint_t                 reads;
    ngx_connection_t          *c;
    ngx_http_realtime_conn_t  *ws;

    c = rev->data;
    ws = c->data;

    if (c->close && c->error) {
        /* worker_shutdown_timeout has expired */
        ngx_http_realtime_finalize(ws);
        return;
    }

    if (c->close) {
        /* nginx is shutting down or reloading */
        c->close = 0;
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_GOING_AWAY,
                                "server shutting down");

        /*
         * ngx_close_idle_connections() is not followed by a run of the
         * posted events before the worker waits: write the close now.
         */

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
            ngx_http_realtime_write_handler(c->write);
        }

        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (ws->close_sent) {
            ngx_http_realtime_finalize(ws);
            return;
        }

        ws->adapter->liveness(ws);
        return;
    }

    for (reads = 0;
         rev->ready && !ws->close_received && !ws->parser.failed;
         reads++)
    {
        if (reads == NGX_HTTP_REALTIME_READS) {
            /* a fast client must not starve the others and the timers */
            ngx_post_event(rev, &ngx_posted_events);
            return;
        }

        n = c->recv(c, ngx_http_realtime_read_buf,
                    NGX_HTTP_REALTIME_READ_BUFFER);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "realtime: client closed connection");
            ngx_http_realtime_finalize(ws);
            return;
        }

        if (ngx_http_realtime_process(ws, ngx_http_realtime_read_buf,
                                      ngx_http_realtime_read_buf + n)
            != NGX_OK)
        {
            ngx_http_realtime_finalize(ws);
            return;
        }

        if (ws->lingering) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_realtime_finalize(ws);
    }
}


/* NGX_ERROR: the connection is to be dropped at once */

static ngx_int_t
ngx_http_realtime_process(ngx_http_realtime_conn_t *ws, u_char *pos,
    u_char *end)
{
    ngx_int_t                  rc;
    ngx_http_realtime_frame_t  f;

    while (pos < end) {

        switch (ngx_http_realtime_frame_parse(&ws->parser, &pos, end, &f)) {

        case NGX_HTTP_REALTIME_FRAME_AGAIN:
            return NGX_OK;

        case NGX_HTTP_REALTIME_FRAME_DATA:
            ws->last_in = ngx_current_msec;
            rc = ngx_http_realtime_data(ws, &f);
            break;

        case NGX_HTTP_REALTIME_FRAME_CONTROL:
            ws->last_in = ngx_current_msec;
            rc = ngx_http_realtime_control(ws, &f);
            break;

        case NGX_HTTP_REALTIME_FRAME_BUFFER:
            /* a control frame split across reads: rare, so not inline */
            ws->parser.control = ngx_alloc(NGX_HTTP_REALTIME_CONTROL_MAX,
                                           ws->connection->log);
            if (ws->parser.control == NULL) {
                return NGX_ERROR;
            }

            continue;

        default: /* NGX_HTTP_REALTIME_FRAME_ERROR */
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "realtime: client sent invalid frame, closing "
                          "with %ui", (ngx_uint_t) f.code);

            /* replies to the frames before the bad one still go out */
            ngx_http_realtime_close(ws, f.code, NULL);
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        if (ws->close_received) {
            /* nothing after a close frame is read */
            return NGX_OK;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_data(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_frame_t *f)
{
    size_t   size;
    u_char  *p;

    if (ws->close_sent) {
        /* a closing connection reads frames only to find the close */
        return NGX_OK;
    }

    if (f->first && f->last) {
        /* the usual case: the whole message in the read buffer */
        return f->compressed
               ? ngx_http_realtime_deflate_message(ws, f->opcode, f->data,
                                                   f->len)
               : ngx_http_realtime_message(ws, f->opcode, f->data, f->len);
    }

    if (f->first) {
        ws->message_len = 0;
        ws->message_opcode = f->opcode;
    }

    if (ws->message_len + f->len > ws->message_size) {

        /* the parser keeps a message under max_message_size */

        size = ngx_max(ws->message_size * 2, 4096);
        size = ngx_max(size, ws->message_len + f->len);

        if (ws->conf->max_message_size) {
            size = ngx_min(size, ws->conf->max_message_size);
        }

        p = ngx_alloc(size, ws->connection->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ws->message) {
            ngx_memcpy(p, ws->message, ws->message_len);
            ngx_free(ws->message);
        }

        ws->message = p;
        ws->message_size = size;
    }

    ngx_memcpy(ws->message + ws->message_len, f->data, f->len);
    ws->message_len += f->len;

    if (!f->last) {
        return NGX_OK;
    }

    if ((f->compressed
         ? ngx_http_realtime_deflate_message(ws, ws->message_opcode,
                                             ws->message, ws->message_len)
         : ngx_http_realtime_message(ws, ws->message_opcode, ws->message,
                                     ws->message_len))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* idle connections keep no message buffer */

    ngx_free(ws->message);
    ws->message = NULL;
    ws->message_len = 0;
    ws->message_size = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_control(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_frame_t *f)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    switch (f->opcode) {

    case NGX_HTTP_REALTIME_OP_PING:
        if (ws->close_sent) {
            return NGX_OK;
        }

        msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_PONG, f->data,
                                          f->len);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_http_realtime_send(ws, msg);
        ngx_http_realtime_msg_release(msg);
        return rc;

    case NGX_HTTP_REALTIME_OP_CLOSE:
        ws->close_received = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                       "realtime close frame in: %ui, ours %s",
                       (ngx_uint_t) f->code,
                       ws->close_sent ? "sent" : "to answer");

        if (!ws->close_sent) {
            /* echo the status code, RFC 6455 5.5.1 */
            ngx_http_realtime_close(ws, f->code, NULL);

        } else if (!ws->connection->write->posted) {
            /*
             * The peer answered our close: the write handler hangs up
             * once our frame is out, not here, under the parser.
             */
            ngx_post_event(ws->connection->write, &ngx_posted_events);
        }

        return NGX_OK;

    default: /* NGX_HTTP_REALTIME_OP_PONG */
        return NGX_OK;
    }
}


ngx_int_t
ngx_http_realtime_message(ngx_http_realtime_conn_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "realtime frame in: opcode %ui, %uz bytes", opcode, len);

    return ws->adapter->message(ws, opcode, data, len);
}


/* realtime_echo: every message back as it came, for Autobahn */

static ngx_int_t
ngx_http_realtime_echo(ngx_http_realtime_conn_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_msg_frame(opcode, data, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send(ws, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


static void
ngx_http_realtime_echo_release(ngx_http_realtime_conn_t *ws)
{
}


/*
 * One timer per connection does every job: it fires at the next ping,
 * the idle deadline or the token's exp, whichever comes first.  Frames
 * that arrive only move last_in, so reading costs no timer update.
 */

void
ngx_http_realtime_liveness(ngx_http_realtime_conn_t *ws)
{
    ngx_msec_t                     now, next, elapsed, ttl;
    ngx_http_realtime_loc_conf_t  *conf;

    conf = ws->conf;
    now = ngx_current_msec;

    if (conf->idle_timeout && now - ws->last_in >= conf->idle_timeout) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime: client idle for %M ms, closing",
                      now - ws->last_in);
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_GOING_AWAY,
                                "idle timeout");
        return;
    }

    ttl = ngx_http_realtime_jwt_ttl(&ws->session);

    if (ttl == 0) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime: token expired, closing");
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_TOKEN_EXPIRED,
                                "token expired");
        return;
    }

    if (conf->ping_interval && now - ws->last_ping >= conf->ping_interval) {
        ws->last_ping = now;

        if (ngx_http_realtime_send(ws, &ngx_http_realtime_ping_msg)
            != NGX_OK)
        {
            ngx_http_realtime_abort(ws);
            return;
        }

        if (ws->close_sent) {
            return;
        }
    }

    next = ttl;

    if (conf->ping_interval) {
        elapsed = now - ws->last_ping;
        next = ngx_min(next, conf->ping_interval - elapsed);
    }

    if (conf->idle_timeout) {
        elapsed = now - ws->last_in;
        next = ngx_min(next, conf->idle_timeout - elapsed);
    }

    if (next != NGX_TIMER_INFINITE) {
        ngx_add_timer(ws->connection->read, next);
    }
}


ngx_int_t
ngx_http_realtime_send(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg)
{
    if (ws->close_sent) {
        /* nothing follows a close frame */
        return NGX_OK;
    }

    if (ws->deflate) {
        msg = ngx_http_realtime_deflate_frame(ws, msg);
    }

    if (!ws->upgraded) {
        /* the 101 is not out yet: the frames wait, within the buffer */
        if (ws->out_count
            && ws->out_bytes + msg->len > ws->conf->send_buffer)
        {
            return NGX_OK;
        }

        return ngx_http_realtime_queue(ws, msg);
    }

    /* a message larger than the buffer still goes to an empty queue */

    if (ws->out_count && ws->out_bytes + msg->len > ws->conf->send_buffer
        && ngx_http_realtime_make_room(ws, msg->len) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "realtime: client does not read, %uz bytes queued; "
                      "closing", ws->out_bytes);
        ngx_http_realtime_drop_queue(ws, 0);
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_POLICY,
                                "send buffer overflow");
        return NGX_OK;
    }

    return ngx_http_realtime_queue(ws, msg);
}


/*
 * The 101 response, kept back by nginx's write filter, goes out in the
 * same write as the first frames (the welcome): a send per handshake
 * less.  Nothing has been written yet, so it is put ahead of them.
 */

ngx_int_t
ngx_http_realtime_queue_header(ngx_http_realtime_conn_t *ws,
    ngx_chain_t *out)
{
    u_char                   *p;
    size_t                    len;
    ngx_uint_t                i, mask;
    ngx_chain_t              *cl;
    ngx_http_realtime_msg_t  *msg;

    if (ws->upgraded || ws->out_offset) {
        return NGX_DECLINED;
    }

    len = 0;

    for (cl = out; cl; cl = cl->next) {
        if (!ngx_buf_in_memory_only(cl->buf)) {
            return NGX_DECLINED;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    msg = ngx_http_realtime_msg_alloc(len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    p = msg->data;

    for (cl = out; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    msg->len = len;

    if (ngx_http_realtime_queue(ws, msg) != NGX_OK) {
        ngx_http_realtime_msg_release(msg);
        return NGX_ERROR;
    }

    ngx_http_realtime_msg_release(msg);

    /* from the tail to the head: the frames already queued move up */

    mask = ws->out_size - 1;

    for (i = ws->out_count - 1; i > 0; i--) {
        ws->out[(ws->out_head + i) & mask] =
            ws->out[(ws->out_head + i - 1) & mask];
    }

    ws->out[ws->out_head] = msg;
    ws->header_queued = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "realtime 101 queued ahead of %ui frames",
                   ws->out_count - 1);

    return NGX_OK;
}


/*
 * Frames queued earlier in this event loop iteration have not been
 * written yet: write them before judging that the client is too slow.
 */

static ngx_int_t
ngx_http_realtime_make_room(ngx_http_realtime_conn_t *ws, size_t len)
{
    ngx_event_t  *wev;

    wev = ws->connection->write;

    if (!wev->ready) {
        return NGX_DECLINED;
    }

    if (ngx_http_realtime_flush(ws) != NGX_OK) {
        /* the write handler meets the error again and closes */
        if (!wev->posted) {
            ngx_post_event(wev, &ngx_posted_events);
        }

        return NGX_DECLINED;
    }

    if (ws->out_count
        && ngx_handle_write_event(wev, 0) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (ws->out_count && ws->out_bytes + len > ws->conf->send_buffer) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_queue(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg)
{
    ngx_uint_t                 i, size;
    ngx_event_t               *wev;
    ngx_http_realtime_msg_t  **out;

    if (ws->out_count == ws->out_size) {
        size = ws->out_size * 2;

        out = ngx_alloc(size * sizeof(ngx_http_realtime_msg_t *),
                        ws->connection->log);
        if (out == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < ws->out_count; i++) {
            out[i] = ws->out[(ws->out_head + i) & (ws->out_size - 1)];
        }

        if (ws->out != ws->out_inline) {
            ngx_free(ws->out);
        }

        ws->out = out;
        ws->out_size = size;
        ws->out_head = 0;
    }

    ws->out[(ws->out_head + ws->out_count) & (ws->out_size - 1)] = msg;
    ws->out_count++;
    ws->out_bytes += msg->len;

    if (!msg->persistent) {
        msg->refs++;
    }

    /*
     * Posting the write event rather than writing now lets every frame
     * queued in this event loop iteration go out in one send_chain();
     * a connection that is not ready waits for its write event.
     */

    wev = ws->connection->write;

    if (ws->upgraded && wev->ready && !wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_realtime_drop_queue(ngx_http_realtime_conn_t *ws, ngx_uint_t all)
{
    ngx_uint_t                keep;
    ngx_http_realtime_msg_t  *msg;

    /*
     * A frame partly written stays unless all goes: the stream must
     * parse.  On TLS a write that wants to be retried may have sent part
     * of the head frame with out_offset still 0.
     */

    keep = (!all && ws->out_count
            && (ws->out_offset || ws->connection->ssl || ws->header_queued))
           ? 1 : 0;

    while (ws->out_count > keep) {
        msg = ws->out[(ws->out_head + ws->out_count - 1) & (ws->out_size - 1)];
        ws->out_count--;
        ws->out_bytes -= msg->len;
        ngx_http_realtime_msg_release(msg);
    }

    if (ws->out_count == 0) {
        ws->out_head = 0;
        ws->out_offset = 0;
        ws->out_bytes = 0;
        ws->header_queued = 0;
    }
}


static void
ngx_http_realtime_write_handler(ngx_event_t *wev)
{
    ngx_connection_t          *c;
    ngx_http_realtime_conn_t  *ws;

    c = wev->data;
    ws = c->data;

    if (c->error) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    if (ws->lingering) {
        return;
    }

    if (ngx_http_realtime_flush(ws) != NGX_OK) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    if (ws->out_count) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_realtime_finalize(ws);
        }

        return;
    }

    /* our close frame is out: after the peer's, or on failure, hang up */

    if (ws->close_sent
        && (ws->close_received || ws->parser.failed))
    {
        ngx_http_realtime_linger(ws);
    }
}


/* a publication's frame is written: how long it took since */

static void
ngx_http_realtime_conn_lag(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg)
{
    ngx_msec_int_t             ms;
    ngx_http_realtime_zone_t  *zone;

    zone = ws->conf->zone;

    /* another worker's clock may be a little ahead of this one's */
    ms = (ngx_msec_int_t) (ngx_current_msec - msg->time);

    if (zone && zone->slot < NGX_HTTP_REALTIME_SLOTS) {
        ngx_http_realtime_histogram_add(
            &zone->sh->slots[zone->slot].delivery_lag,
            (ngx_msec_t) ngx_max(ms, 0));
    }
}


/* the head frame is all written */

static void
ngx_http_realtime_flushed(ngx_http_realtime_conn_t *ws)
{
    ngx_http_realtime_msg_t  *msg;

    msg = ws->out[ws->out_head];

    ws->out_bytes -= msg->len;
    ws->out_head = (ws->out_head + 1) & (ws->out_size - 1);
    ws->out_count--;
    ws->out_offset = 0;
    ws->header_queued = 0;

    if (msg->time) {
        ngx_http_realtime_conn_lag(ws, msg);
    }

    ngx_http_realtime_msg_release(msg);
}


/*
 * Plain TCP: one writev() of the queued frames, without the buffers and
 * chain links that send_chain() needs; half of a fan-out's user time
 * went to that bookkeeping.
 */

static ngx_int_t
ngx_http_realtime_flush_plain(ngx_http_realtime_conn_t *ws)
{
    size_t                    len;
    ssize_t                   sent;
    ngx_err_t                 err;
    ngx_uint_t                i, n;
    struct iovec              iov[NGX_HTTP_REALTIME_IOVS];
    ngx_connection_t         *c;
    ngx_http_realtime_msg_t  *msg;

    c = ws->connection;

    while (ws->out_count) {

        n = ngx_min(ws->out_count, NGX_HTTP_REALTIME_IOVS);

        for (i = 0; i < n; i++) {
            msg = ws->out[(ws->out_head + i) & (ws->out_size - 1)];

            iov[i].iov_base = msg->data + (i == 0 ? ws->out_offset : 0);
            iov[i].iov_len = msg->len - (i == 0 ? ws->out_offset : 0);
        }

        sent = writev(c->fd, iov, (int) n);

        if (sent == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            if (err == NGX_EAGAIN) {
                c->write->ready = 0;
                return NGX_OK;
            }

            c->write->error = 1;
            c->error = 1;
            ngx_connection_error(c, err, "writev() failed");
            return NGX_ERROR;
        }

        c->sent += sent;

        for (len = 0, i = 0; i < n; i++) {
            len += iov[i].iov_len;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "realtime flush: %ui frames of %ui, %s", n,
                       ws->out_count,
                       (size_t) sent < len ? "the socket is full" : "out");

        for (i = 0; i < n; i++) {
            len = iov[i].iov_len;

            if ((size_t) sent < len) {
                /* the socket is full */
                ws->out_offset += sent;
                c->write->ready = 0;
                return NGX_OK;
            }

            sent -= len;
            ngx_http_realtime_flushed(ws);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_flush(ngx_http_realtime_conn_t *ws)
{
    ngx_uint_t                i, n;
    ngx_buf_t                 bufs[NGX_HTTP_REALTIME_IOVS];
    ngx_chain_t               chain[NGX_HTTP_REALTIME_IOVS], *rest;
    ngx_connection_t         *c;
    ngx_http_realtime_msg_t  *msg;

    c = ws->connection;

#if (NGX_HTTP_SSL)
    if (c->ssl == NULL)
#endif
    {
        return ngx_http_realtime_flush_plain(ws);
    }

    /* TLS: through the connection's send_chain() */

    while (ws->out_count) {

        n = ngx_min(ws->out_count, NGX_HTTP_REALTIME_IOVS);

        for (i = 0; i < n; i++) {
            msg = ws->out[(ws->out_head + i) & (ws->out_size - 1)];

            ngx_memzero(&bufs[i], sizeof(ngx_buf_t));
            bufs[i].pos = msg->data + (i == 0 ? ws->out_offset : 0);
            bufs[i].last = msg->data + msg->len;
            bufs[i].memory = 1;

            chain[i].buf = &bufs[i];
            chain[i].next = (i + 1 < n) ? &chain[i + 1] : NULL;
        }

        bufs[n - 1].flush = 1;

        rest = c->send_chain(c, chain, 0);

        if (rest == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "realtime flush: %ui frames of %ui, %s", n,
                       ws->out_count, rest ? "the socket is full" : "out");

        /* send_chain() moved each buffer's pos past what it wrote */

        for (i = 0; i < n; i++) {
            msg = ws->out[ws->out_head];

            if (bufs[i].pos != bufs[i].last) {
                ws->out_offset = bufs[i].pos - msg->data;
                return NGX_OK;
            }

            ngx_http_realtime_flushed(ws);
        }

        if (rest) {
            return NGX_OK;
        }
    }

    return NGX_OK;
}


void
ngx_http_realtime_close(ngx_http_realtime_conn_t *ws, ngx_uint_t code,
    char *reason)
{
    u_char                    buf[NGX_HTTP_REALTIME_CONTROL_MAX];
    size_t                    len;
    ngx_connection_t         *c;
    ngx_http_realtime_msg_t  *msg;

    if (ws->close_sent || ws->lingering) {
        return;
    }

    c = ws->connection;
    c->idle = 0;

    len = 0;

    if (code) {
        buf[0] = (u_char) (code >> 8);
        buf[1] = (u_char) (code & 0xff);
        len = 2;

        if (reason) {
            len = ngx_cpymem(buf + 2, reason,
                             ngx_min(ngx_strlen(reason),
                                     NGX_HTTP_REALTIME_CONTROL_MAX - 2))
                  - buf;
        }
    }

    ws->close_sent = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "realtime close frame out: %ui, %ui frames before it",
                   code, ws->out_count);

    /* the close frame goes out even past realtime_send_buffer */

    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_CLOSE, buf, len);

    if (msg == NULL || ngx_http_realtime_queue(ws, msg) != NGX_OK) {
        if (msg) {
            ngx_http_realtime_msg_release(msg);
        }

        ngx_http_realtime_abort(ws);
        return;
    }

    ngx_http_realtime_msg_release(msg);

    /* a peer that never answers or never reads is dropped */

    ngx_add_timer(c->read, NGX_HTTP_REALTIME_CLOSE_TIMEOUT);
}


/*
 * After the last frame, half-close and read until the peer hangs up: a
 * close() with unread input resets the connection, and the reset could
 * destroy the close frame in flight.
 */

static void
ngx_http_realtime_linger(ngx_http_realtime_conn_t *ws)
{
    ngx_connection_t  *c;

    c = ws->connection;

    if (ws->lingering) {
        return;
    }

    ws->lingering = 1;
    ngx_http_realtime_drop_queue(ws, 1);

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_http_realtime_finalize(ws);
        return;
    }
#endif

    if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    c->read->handler = ngx_http_realtime_linger_handler;

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, NGX_HTTP_REALTIME_CLOSE_TIMEOUT);
    }

    ngx_post_event(c->read, &ngx_posted_events);
}


static void
ngx_http_realtime_linger_handler(ngx_event_t *rev)
{
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_http_realtime_conn_t  *ws;

    c = rev->data;
    ws = c->data;

    if (rev->timedout || c->close) {
        ngx_http_realtime_finalize(ws);
        return;
    }

    do {
        n = c->recv(c, ngx_http_realtime_read_buf,
                    NGX_HTTP_REALTIME_READ_BUFFER);

        if (n == NGX_ERROR || n == 0) {
            ngx_http_realtime_finalize(ws);
            return;
        }

    } while (rev->ready);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_realtime_finalize(ws);
    }
}


static void
ngx_http_realtime_finalize(ngx_http_realtime_conn_t *ws)
{
    ngx_http_realtime_release(ws);
    ngx_http_close_connection(ws->connection);
}


/*
 * Callers up the stack may still use ws: the write handler, posted
 * here, closes the connection.
 */

void
ngx_http_realtime_abort(ngx_http_realtime_conn_t *ws)
{
    ngx_connection_t  *c;

    c = ws->connection;
    c->error = 1;

    if (!c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


/* what a socket holds besides its connection: rooms, frames, buffers */

void
ngx_http_realtime_release(ngx_http_realtime_conn_t *ws)
{
    ws->adapter->release(ws);
    ngx_http_realtime_drop_queue(ws, 1);

    if (ws->out != ws->out_inline) {
        ngx_free(ws->out);
        ws->out = ws->out_inline;
        ws->out_size = NGX_HTTP_REALTIME_OUT_INLINE;
    }

    if (ws->message) {
        ngx_free(ws->message);
        ws->message = NULL;
    }

    if (ws->parser.control) {
        ngx_free(ws->parser.control);
        ws->parser.control = NULL;
    }
}


ngx_http_realtime_msg_t *
ngx_http_realtime_msg_frame(ngx_uint_t opcode, u_char *payload, size_t len)
{
    size_t                    header;
    ngx_http_realtime_msg_t  *msg;

    header = ngx_http_realtime_frame_header_size(len);

    msg = ngx_http_realtime_msg_alloc(header + len);
    if (msg == NULL) {
        return NULL;
    }

    ngx_http_realtime_frame_header(msg->data, opcode, len);

    if (len) {
        ngx_memcpy(msg->data + header, payload, len);
    }

    msg->len = header + len;

    return msg;
}


ngx_http_realtime_msg_t *
ngx_http_realtime_msg_alloc(size_t size)
{
    ngx_http_realtime_msg_t  *msg;

    if (size <= NGX_HTTP_REALTIME_MSG_SMALL && ngx_http_realtime_msg_free) {
        msg = ngx_http_realtime_msg_free;
        ngx_http_realtime_msg_free = msg->next;
        ngx_http_realtime_msg_nfree--;

    } else {
        size = ngx_max(size, NGX_HTTP_REALTIME_MSG_SMALL);

        msg = ngx_alloc(sizeof(ngx_http_realtime_msg_t) + size,
                        ngx_cycle->log);
        if (msg == NULL) {
            return NULL;
        }

        msg->size = size;
        msg->data = (u_char *) msg + sizeof(ngx_http_realtime_msg_t);
        msg->persistent = 0;
    }

    msg->refs = 1;
    msg->len = 0;
    msg->next = NULL;
    msg->derived = NULL;
    ngx_str_null(&msg->key);
    msg->offset = 0;
    msg->seq = 0;
    msg->mark = NULL;
    msg->skip = 0;
    msg->time = 0;
    msg->offset_arg = 0;

    return msg;
}


void
ngx_http_realtime_msg_release(ngx_http_realtime_msg_t *msg)
{
    ngx_http_realtime_msg_t  *d;

    if (msg->persistent || --msg->refs) {
        return;
    }

    while (msg->derived) {
        d = msg->derived;
        msg->derived = d->next;
        ngx_http_realtime_msg_release(d);
    }

    if (msg->size == NGX_HTTP_REALTIME_MSG_SMALL
        && ngx_http_realtime_msg_nfree < NGX_HTTP_REALTIME_MSG_FREE_MAX)
    {
        msg->next = ngx_http_realtime_msg_free;
        ngx_http_realtime_msg_free = msg;
        ngx_http_realtime_msg_nfree++;
        return;
    }

    ngx_free(msg);
}
