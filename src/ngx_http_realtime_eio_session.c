
/*
 * Copyright (C) ngx-realtime developers
 *
 * Engine.IO v4 sessions.  A session lives on the worker that opened it,
 * its owner, which the sid names; its transport is
 *
 *   - a WebSocket on the owner (opened without sid, or upgraded to);
 *   - HTTP long-polling: packets wait in an outbox for the held GET,
 *     which may be held by any worker (ngx_http_realtime_poll.c relays
 *     GETs and POSTs to the owner by IPC and answers their tokens);
 *   - a WebSocket that an upgrade opened on another worker, relayed
 *     frame by frame.
 *
 * Everything leaves as WebSocket frames, encoded once: a WebSocket
 * sends them as they are, a GET answer joins their payloads with \x1e
 * (binary ones as "b" + base64).  The upgrade follows the spec: 2probe
 * and 3probe on the new WebSocket, a noop ends the held GET, and at the
 * client's "5" the outbox moves to the WebSocket in order.
 *
 * The protocol on top (Socket.IO, or the echo of the Engine.IO test
 * suite) is reached through eio->handler.  A session ends with its
 * transport; eio_close() never frees it under the caller.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_eio_session.h"
#include "ngx_http_realtime_utf8.h"


#define NGX_HTTP_REALTIME_EIO_VIA_ACTIVE  0
#define NGX_HTTP_REALTIME_EIO_VIA_PROBE   1

/* how long a GET during an upgrade waits for its noop */
#define NGX_HTTP_REALTIME_EIO_NOOP_DELAY  50


static ngx_int_t ngx_http_realtime_eio_ws_open(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws);
static ngx_int_t ngx_http_realtime_eio_ws_upgrade(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws, ngx_str_t *sid);
static void ngx_http_realtime_eio_ws_cleanup(void *data);
static ngx_int_t ngx_http_realtime_eio_ws_message(
    ngx_http_realtime_conn_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len);
static void ngx_http_realtime_eio_ws_liveness(ngx_http_realtime_conn_t *ws);
static void ngx_http_realtime_eio_ws_release(ngx_http_realtime_conn_t *ws);

static ngx_http_realtime_eio_t *ngx_http_realtime_eio_create(
    ngx_http_request_t *r, ngx_http_realtime_loc_conf_t *rlcf,
    ngx_uint_t polling);
static void ngx_http_realtime_eio_destroy(ngx_http_realtime_eio_t *eio);
static size_t ngx_http_realtime_eio_open_packet(ngx_http_realtime_eio_t *eio,
    u_char *buf, size_t size);
static ngx_int_t ngx_http_realtime_eio_receive(ngx_http_realtime_eio_t *eio,
    ngx_uint_t via, ngx_uint_t binary, u_char *data, size_t len);
static ngx_int_t ngx_http_realtime_eio_probe_reply(
    ngx_http_realtime_eio_t *eio, u_char *data, size_t len);
static void ngx_http_realtime_eio_upgrade(ngx_http_realtime_eio_t *eio);
static ngx_int_t ngx_http_realtime_eio_queue(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_msg_t *msg);
static void ngx_http_realtime_eio_drop_out(ngx_http_realtime_eio_poll_t *p);
static void ngx_http_realtime_eio_shift_out(ngx_http_realtime_eio_poll_t *p,
    ngx_uint_t n);
static ngx_msec_t ngx_http_realtime_eio_heartbeat(
    ngx_http_realtime_eio_t *eio);
static void ngx_http_realtime_eio_timer(ngx_event_t *ev);
static void ngx_http_realtime_eio_flush(ngx_event_t *ev);
static ngx_int_t ngx_http_realtime_eio_answer(ngx_http_realtime_eio_t *eio);
static ngx_int_t ngx_http_realtime_eio_reply(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *to, ngx_uint_t status, ngx_uint_t code,
    u_char *data, size_t len);
static ngx_int_t ngx_http_realtime_eio_relay(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_eio_addr_t *to, u_char kind,
    ngx_http_realtime_msg_t *msg);
static ngx_int_t ngx_http_realtime_eio_relay_to(
    ngx_http_realtime_zone_t *zone, ngx_http_realtime_eio_addr_t *to,
    u_char kind);
static void ngx_http_realtime_eio_ipc(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg);
static ngx_http_realtime_eio_t *ngx_http_realtime_eio_lookup(ngx_str_t *sid);


const ngx_http_realtime_adapter_t  ngx_http_realtime_sio_adapter = {
    sizeof(ngx_http_realtime_sio_ws_t),
    ngx_http_realtime_eio_ws_open,
    ngx_http_realtime_eio_ws_message,
    ngx_http_realtime_eio_ws_liveness,
    ngx_http_realtime_eio_ws_release
};


static u_char  ngx_http_realtime_eio_ping_bytes[] = { 0x81, 0x01, '2' };

static ngx_http_realtime_msg_t  ngx_http_realtime_eio_ping_msg = {
    1, sizeof(ngx_http_realtime_eio_ping_bytes), 0, NULL,
    ngx_http_realtime_eio_ping_bytes, 1, NULL, ngx_null_string, 0, 0, NULL,
    0, 0, 0
};


/* this worker's sessions that a polling request or upgrade may name */
static ngx_rbtree_t       ngx_http_realtime_eio_tree;
static ngx_rbtree_node_t  ngx_http_realtime_eio_sentinel;


ngx_int_t
ngx_http_realtime_sio_init_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_realtime_eio_tree,
                    &ngx_http_realtime_eio_sentinel,
                    ngx_str_rbtree_insert_value);

    ngx_http_realtime_ipc_handlers[NGX_HTTP_REALTIME_IPC_EIO
                                   - NGX_HTTP_REALTIME_IPC_HANDLED]
        = ngx_http_realtime_eio_ipc;

    return ngx_http_realtime_poll_init_process(cycle);
}


/*
 * The WebSocket handshake: without sid a new session on this socket;
 * with one, the upgrade of a polling session.  NGX_DONE: refused.
 */

static ngx_int_t
ngx_http_realtime_eio_ws_open(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws)
{
    size_t                    len;
    u_char                    buf[256];
    ngx_str_t                 sid;
    ngx_pool_cleanup_t       *cln;
    ngx_http_realtime_eio_t  *eio;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a handshake that fails before the 101 lets go of the session */
    cln->handler = ngx_http_realtime_eio_ws_cleanup;
    cln->data = ws;

    if (ngx_http_arg(r, (u_char *) "sid", 3, &sid) == NGX_OK && sid.len) {
        return ngx_http_realtime_eio_ws_upgrade(r, ws, &sid);
    }

    eio = ngx_http_realtime_eio_create(r, ws->conf, 0);
    if (eio == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (eio == (ngx_http_realtime_eio_t *) NGX_CONF_ERROR) {
        return NGX_DONE;
    }

    eio->ws = ws;
    ((ngx_http_realtime_sio_ws_t *) ws)->eio = eio;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime eio open sid:%*s websocket",
                   (size_t) NGX_HTTP_REALTIME_EIO_SID_LEN, eio->sid);

    len = ngx_http_realtime_eio_open_packet(eio, buf, sizeof(buf));

    return (ngx_http_realtime_eio_send_frame(eio, NGX_HTTP_REALTIME_OP_TEXT,
                                             buf, len)
            == NGX_OK)
           ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static ngx_int_t
ngx_http_realtime_eio_ws_upgrade(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws, ngx_str_t *sid)
{
    ngx_http_realtime_eio_t       *eio;
    ngx_http_realtime_eio_poll_t  *p;
    ngx_http_realtime_eio_addr_t   owner, here;

    if (ngx_http_realtime_eio_owner(sid, &owner) != NGX_OK) {
        goto unknown;
    }

    ngx_http_realtime_eio_addr_here(ws->conf->zone, &here, 0);

    if (owner.id != here.id) {
        /* the session lives on another worker: relay to it */
        return (ngx_http_realtime_poll_relay_open(ws, sid, &owner) == NGX_OK)
               ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    eio = ngx_http_realtime_eio_lookup(sid);

    if (eio == NULL || eio->closing) {
        goto unknown;
    }

    p = eio->poll;

    if (eio->ws || p->probe || p->remote_probe || p->remote_active) {
        /* as Node's server: accepted, then closed at once */
        ((ngx_http_realtime_sio_ws_t *) ws)->refused = 1;
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime eio upgrade probe sid:%V", sid);

    p->probe = ws;
    ((ngx_http_realtime_sio_ws_t *) ws)->eio = eio;

    return NGX_OK;

unknown:

    return (ngx_http_realtime_eio_http_error(r, NGX_HTTP_BAD_REQUEST, 1,
                                        "Session ID unknown") == NGX_OK)
           ? NGX_DONE : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static void
ngx_http_realtime_eio_ws_cleanup(void *data)
{
    ngx_http_realtime_conn_t *ws = data;

    if (!ws->upgraded) {
        ngx_http_realtime_release(ws);
    }
}


static ngx_int_t
ngx_http_realtime_eio_ws_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_int_t                    rc;
    ngx_http_realtime_sio_ws_t  *sws;

    sws = (ngx_http_realtime_sio_ws_t *) ws;

    if (sws->relay) {
        return ngx_http_realtime_poll_relay_message(ws, opcode, data, len);
    }

    if (sws->eio == NULL) {
        /* the session ended under its probe */
        return NGX_OK;
    }

    rc = ngx_http_realtime_eio_receive(sws->eio,
                                       (sws->eio->ws == ws)
                                       ? NGX_HTTP_REALTIME_EIO_VIA_ACTIVE
                                       : NGX_HTTP_REALTIME_EIO_VIA_PROBE,
                                       opcode == NGX_HTTP_REALTIME_OP_BINARY,
                                       data, len);

    /* an invalid packet closed the session: its close frame goes out */
    return (rc == NGX_DECLINED) ? NGX_OK : rc;
}


/* a WebSocket-only session's heartbeat runs on its connection's timer */

static void
ngx_http_realtime_eio_ws_liveness(ngx_http_realtime_conn_t *ws)
{
    ngx_msec_t                     next, limit, elapsed;
    ngx_http_realtime_eio_t       *eio;
    ngx_http_realtime_loc_conf_t  *conf;

    if (((ngx_http_realtime_sio_ws_t *) ws)->refused) {
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_NORMAL, NULL);
        return;
    }

    if (((ngx_http_realtime_sio_ws_t *) ws)->relay) {
        /*
         * The owner's pings come through the relay and the client
         * answers each: a relay that hears nothing for longer than a
         * ping's round has lost its client, or its owner (a worker
         * killed), whose heartbeat would have closed it.
         */

        conf = ws->conf;
        limit = conf->sio_ping_interval + conf->sio_ping_timeout;
        elapsed = ngx_current_msec - ws->last_in;

        if (elapsed >= limit) {
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "realtime: relayed engine.io socket silent for "
                          "%M ms, closing", elapsed);
            ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_NORMAL,
                                    NULL);
            return;
        }

        if (!ws->close_sent) {
            ngx_add_timer(ws->connection->read, limit - elapsed);
        }

        return;
    }

    eio = ((ngx_http_realtime_sio_ws_t *) ws)->eio;

    if (eio == NULL || eio->poll || eio->ws != ws) {
        /* probes and polling sessions have their owner's timer */
        return;
    }

    next = ngx_http_realtime_eio_heartbeat(eio);

    if (next && !ws->close_sent) {
        ngx_add_timer(ws->connection->read, next);
    }
}


static void
ngx_http_realtime_eio_ws_release(ngx_http_realtime_conn_t *ws)
{
    ngx_http_realtime_eio_t     *eio;
    ngx_http_realtime_sio_ws_t  *sws;

    sws = (ngx_http_realtime_sio_ws_t *) ws;

    if (sws->relay) {
        ngx_http_realtime_poll_relay_release(ws);
        return;
    }

    eio = sws->eio;

    if (eio == NULL) {
        return;
    }

    sws->eio = NULL;

    if (eio->ws == ws) {
        /* a session ends with its transport */
        eio->ws = NULL;
        ngx_http_realtime_eio_destroy(eio);
        return;
    }

    if (eio->poll && eio->poll->probe == ws) {
        /* a failed upgrade: polling goes on, without noops */
        eio->poll->probe = NULL;
        eio->poll->probed = 0;

        if (eio->poll->noop.timer_set) {
            ngx_del_timer(&eio->poll->noop);
        }
    }
}


/*
 * A new session: its sid, its user and the token of the request.
 * NGX_CONF_ERROR (as a pointer) when the refusal is sent.
 */

static ngx_http_realtime_eio_t *
ngx_http_realtime_eio_create(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_uint_t polling)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_str_t                      user;
    ngx_uint_t                     required;
    ngx_http_realtime_eio_t       *eio;
    ngx_http_realtime_eio_addr_t   here;
    ngx_http_realtime_jwt_conn_t  *jwt;

    rc = ngx_http_realtime_jwt_sio_handshake(r, &jwt, &required);

    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? (void *) NGX_CONF_ERROR : NULL;
    }

    ngx_str_null(&user);

    if (rlcf->user
        && ngx_http_complex_value(r, rlcf->user, &user) != NGX_OK)
    {
        goto failed;
    }

    if (user.len > NGX_HTTP_REALTIME_USER_MAX
        || ngx_http_realtime_utf8_validate(NGX_HTTP_REALTIME_UTF8_ACCEPT,
                                           user.data, user.len)
           != NGX_HTTP_REALTIME_UTF8_ACCEPT)
    {
        /* the id goes into JSON: a bad one makes the socket anonymous */
        user.len = 0;
    }

    eio = ngx_calloc(sizeof(ngx_http_realtime_eio_t) + user.len,
                     r->connection->log);
    if (eio == NULL) {
        goto failed;
    }

    eio->handler = (rlcf->mode == NGX_HTTP_REALTIME_EIO_ECHO)
                   ? &ngx_http_realtime_eio_echo_protocol
                   : &ngx_http_realtime_sio_protocol;
    eio->conf = rlcf;
    eio->zone = rlcf->zone;

    /* a polling session outlives the connection that opened it */
    eio->log = polling ? ngx_cycle->log : r->connection->log;

    eio->jwt = jwt;
    eio->jwt_conf = ngx_http_get_module_loc_conf(r,
                                                 ngx_http_realtime_jwt_module);
    eio->jwt_required = required;
    eio->last_ping = ngx_current_msec;

    eio->user.data = (u_char *) eio + sizeof(ngx_http_realtime_eio_t);
    eio->user.len = user.len;

    if (user.len) {
        ngx_memcpy(eio->user.data, user.data, user.len);
    }

    ngx_queue_init(&eio->sockets);
    ngx_queue_init(&eio->closed);
    ngx_queue_init(&eio->connecting);

    if (ngx_http_realtime_forwarding(rlcf)) {
        /* the session's first request is its handshake, as in Node */
        eio->handshake = ngx_http_realtime_handshake_keep(r, NULL);
        if (eio->handshake == NULL) {
            ngx_free(eio);
            goto failed;
        }
    }

    ngx_http_realtime_eio_addr_here(eio->zone, &here, 0);

    p = ngx_sprintf(eio->sid, "%02xi%08xD", here.slot, here.id);
    ngx_http_realtime_random_id(p, NGX_HTTP_REALTIME_EIO_RANDOM);

    return eio;

failed:

    if (jwt) {
        ngx_http_realtime_jwt_free(jwt);
    }

    return NULL;
}


/* the polling handshake: the open packet is the answer */

ngx_int_t
ngx_http_realtime_eio_open_polling(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *packet)
{
    u_char                        *buf;
    ngx_http_realtime_eio_t       *eio;
    ngx_http_realtime_eio_poll_t  *p;

    buf = ngx_pnalloc(r->pool, 256);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    eio = ngx_http_realtime_eio_create(r, rlcf, 1);
    if (eio == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (eio == (ngx_http_realtime_eio_t *) NGX_CONF_ERROR) {
        return NGX_DONE;
    }

    p = ngx_calloc(sizeof(ngx_http_realtime_eio_poll_t), eio->log);
    if (p == NULL) {
        ngx_http_realtime_eio_destroy(eio);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    eio->poll = p;
    p->last_get = ngx_current_msec;

    /* a worker that shuts down does not wait for sessions' timers */
    p->timer.handler = ngx_http_realtime_eio_timer;
    p->timer.data = eio;
    p->timer.log = eio->log;
    p->timer.cancelable = 1;
    p->noop.cancelable = 1;
    p->flush.handler = ngx_http_realtime_eio_flush;
    p->flush.data = eio;
    p->flush.log = eio->log;
    p->noop.handler = ngx_http_realtime_eio_flush;
    p->noop.data = eio;
    p->noop.log = eio->log;

    p->eio = eio;
    p->sn.str.data = eio->sid;
    p->sn.str.len = NGX_HTTP_REALTIME_EIO_SID_LEN;
    p->sn.node.key = ngx_crc32_short(eio->sid, NGX_HTTP_REALTIME_EIO_SID_LEN);
    ngx_rbtree_insert(&ngx_http_realtime_eio_tree, &p->sn.node);

    ngx_http_realtime_eio_timer(&p->timer);

    packet->data = buf;
    packet->len = ngx_http_realtime_eio_open_packet(eio, buf, 256);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime eio open sid:%*s polling",
                   (size_t) NGX_HTTP_REALTIME_EIO_SID_LEN, eio->sid);

    return NGX_OK;
}


static void
ngx_http_realtime_eio_destroy(ngx_http_realtime_eio_t *eio)
{
    ngx_http_realtime_sio_ws_t    *sws;
    ngx_http_realtime_eio_poll_t  *p;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime eio close sid:%*s",
                   (size_t) NGX_HTTP_REALTIME_EIO_SID_LEN, eio->sid);

    eio->handler->closed(eio);

    p = eio->poll;

    if (p) {
        if (p->get_held) {
            /* the server's close packet, or a noop after the client's */
            (void) ngx_http_realtime_eio_reply(eio->zone, &p->get,
                                               NGX_HTTP_OK, 0,
                                               (u_char *) (eio->client_closed
                                                           ? "6" : "1"), 1);
        }

        if (p->remote_active || p->remote_probe) {
            (void) ngx_http_realtime_eio_relay(eio, &p->remote, 'C', NULL);
        }

        if (p->probe) {
            sws = (ngx_http_realtime_sio_ws_t *) p->probe;
            sws->eio = NULL;
            ngx_http_realtime_close(p->probe, NGX_HTTP_REALTIME_CLOSE_NORMAL,
                                    NULL);
        }

        ngx_http_realtime_eio_drop_out(p);

        if (p->timer.timer_set) {
            ngx_del_timer(&p->timer);
        }

        if (p->flush.posted) {
            ngx_delete_posted_event(&p->flush);
        }

        if (p->noop.timer_set) {
            ngx_del_timer(&p->noop);
        }

        if (p->eio) {
            ngx_rbtree_delete(&ngx_http_realtime_eio_tree, &p->sn.node);
        }

        ngx_free(p);
    }

    if (eio->handshake) {
        ngx_http_realtime_handshake_free(eio->handshake);
    }

    ngx_free(eio);
}


static size_t
ngx_http_realtime_eio_open_packet(ngx_http_realtime_eio_t *eio, u_char *buf,
    size_t size)
{
    ngx_http_realtime_loc_conf_t  *conf;

    conf = eio->conf;

    return ngx_snprintf(buf, size,
                        "0{\"sid\":\"%*s\",\"upgrades\":[%s],"
                        "\"pingInterval\":%M,\"pingTimeout\":%M,"
                        "\"maxPayload\":%uz}",
                        (size_t) NGX_HTTP_REALTIME_EIO_SID_LEN, eio->sid,
                        (eio->ws == NULL
                         && (conf->sio_transports
                             & NGX_HTTP_REALTIME_SIO_WEBSOCKET))
                        ? "\"websocket\"" : "",
                        conf->sio_ping_interval, conf->sio_ping_timeout,
                        conf->sio_max_payload)
           - buf;
}


/* one Engine.IO packet from the client, by the transport via */

static ngx_int_t
ngx_http_realtime_eio_receive(ngx_http_realtime_eio_t *eio, ngx_uint_t via,
    ngx_uint_t binary, u_char *data, size_t len)
{
    u_char                          *p;
    size_t                           n;
    ngx_http_realtime_eio_packet_t   pkt;

    if (eio->closing) {
        return NGX_OK;
    }

    if (ngx_http_realtime_eio_parse(data, len, binary, &pkt) != 0) {

        if (via == NGX_HTTP_REALTIME_EIO_VIA_PROBE) {
            /* as Node's server: the upgrade fails, the session goes on */
            ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                          "realtime: invalid packet in an upgrade probe");

            if (eio->poll->probe) {
                ngx_http_realtime_close(eio->poll->probe,
                                        NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR,
                                        NULL);

            } else if (eio->poll->remote_probe) {
                (void) ngx_http_realtime_eio_relay(eio, &eio->poll->remote,
                                                   'C', NULL);
            }

            return NGX_OK;
        }

        ngx_http_realtime_eio_close(eio, "invalid engine.io packet");
        return NGX_DECLINED;
    }

    if (via == NGX_HTTP_REALTIME_EIO_VIA_PROBE) {
        /* a probe carries the probe and the upgrade, nothing else */

        if (pkt.type == NGX_HTTP_REALTIME_EIO_PING) {
            return ngx_http_realtime_eio_probe_reply(eio, data, len);
        }

        if (pkt.type == NGX_HTTP_REALTIME_EIO_UPGRADE) {
            ngx_http_realtime_eio_upgrade(eio);
        }

        return NGX_OK;
    }

    switch (pkt.type) {

    case NGX_HTTP_REALTIME_EIO_MESSAGE:

        if (!pkt.binary) {
            return eio->handler->message(eio, (u_char *) pkt.data, pkt.len);
        }

        p = (u_char *) pkt.data;
        n = pkt.len;

        if (!binary) {
            /* "b<base64>" in a polling payload: decoded in place */
            n = ngx_http_realtime_eio_base64_decode(p, pkt.data, n);
            if (n == (size_t) -1) {
                ngx_http_realtime_eio_close(eio, "invalid base64");
                return NGX_OK;
            }
        }

        return eio->handler->binary(eio, p, n);

    case NGX_HTTP_REALTIME_EIO_PONG:
        eio->pong_wait = 0;
        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_PING:
        /* a v4 client pings only in a probe; answer it all the same */
        data[0] = '3';
        (void) ngx_http_realtime_eio_send_frame(eio,
                                                NGX_HTTP_REALTIME_OP_TEXT,
                                                data, len);
        data[0] = '2';
        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_CLOSE:
        eio->client_closed = 1;
        ngx_http_realtime_eio_close(eio, "closed by the client");
        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_NOOP:
    case NGX_HTTP_REALTIME_EIO_UPGRADE:
        return NGX_OK;

    default: /* NGX_HTTP_REALTIME_EIO_OPEN */
        ngx_http_realtime_eio_close(eio, "unexpected engine.io packet");
        return NGX_OK;
    }
}


/* 3probe on the probe, then a noop lets the held GET go */

static ngx_int_t
ngx_http_realtime_eio_probe_reply(ngx_http_realtime_eio_t *eio, u_char *data,
    size_t len)
{
    ngx_int_t                      rc;
    ngx_http_realtime_msg_t       *msg;
    ngx_http_realtime_eio_poll_t  *p;

    p = eio->poll;

    data[0] = '3';
    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_TEXT, data, len);
    data[0] = '2';

    if (msg == NULL) {
        return NGX_ERROR;
    }

    if (p->probe) {
        rc = ngx_http_realtime_send(p->probe, msg);

    } else {
        rc = ngx_http_realtime_eio_relay(eio, &p->remote, 'F', msg);
    }

    ngx_http_realtime_msg_release(msg);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime eio probe answered, GET held:%ui",
                   (ngx_uint_t) p->get_held);

    /* the held GET, or the next one, ends (with a noop if nothing waits) */

    p->probed = 1;

    if (p->get_held && !p->flush.posted) {
        ngx_post_event(&p->flush, &ngx_posted_events);
    }

    return rc;
}


/* the client's "5": the WebSocket takes over, the outbox goes first */

static void
ngx_http_realtime_eio_upgrade(ngx_http_realtime_eio_t *eio)
{
    ngx_uint_t                     i, n;
    ngx_http_realtime_msg_t      **out;
    ngx_http_realtime_eio_poll_t  *p;

    p = eio->poll;

    p->probed = 0;

    if (p->probe) {
        eio->ws = p->probe;
        p->probe = NULL;

    } else if (p->remote_probe) {
        p->remote_probe = 0;
        p->remote_active = 1;

    } else {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime eio upgraded, %ui packets move, relayed:%ui",
                   p->nout, (ngx_uint_t) p->remote_active);

    if (p->noop.timer_set) {
        ngx_del_timer(&p->noop);
    }

    if (p->get_held) {
        /* a GET after the upgrade: the WebSocket is the transport now */
        (void) ngx_http_realtime_eio_reply(eio->zone, &p->get,
                                           NGX_HTTP_BAD_REQUEST, 3, NULL, 0);
        p->get_held = 0;
    }

    out = p->out;
    n = p->nout;

    for (i = 0; i < n; i++) {
        (void) ngx_http_realtime_eio_send(eio, out[i]);
    }

    ngx_http_realtime_eio_drop_out(p);
}


ngx_int_t
ngx_http_realtime_eio_send(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_msg_t *msg)
{
    if (eio->ws) {
        return ngx_http_realtime_send(eio->ws, msg);
    }

    if (eio->poll == NULL || eio->closing) {
        return NGX_OK;
    }

    if (eio->poll->remote_active) {
        return ngx_http_realtime_eio_relay(eio, &eio->poll->remote, 'F', msg);
    }

    return ngx_http_realtime_eio_queue(eio, msg);
}


/* a frame of its own: a text packet, or a binary attachment */

ngx_int_t
ngx_http_realtime_eio_send_frame(ngx_http_realtime_eio_t *eio,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_msg_frame(opcode, data, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_eio_send(eio, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


/* polling: the frame waits for the next GET, within the send buffer */

static ngx_int_t
ngx_http_realtime_eio_queue(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_msg_t *msg)
{
    ngx_uint_t                     size;
    ngx_http_realtime_msg_t      **out;
    ngx_http_realtime_eio_poll_t  *p;

    p = eio->poll;

    if (p->nout && p->out_bytes + msg->len > eio->conf->send_buffer) {
        ngx_http_realtime_eio_close(eio, "the client does not poll, "
                                    "send buffer overflow");
        return NGX_OK;
    }

    if (p->nout == p->out_size) {
        size = p->out_size ? p->out_size * 2 : 8;

        out = ngx_alloc(size * sizeof(ngx_http_realtime_msg_t *), eio->log);
        if (out == NULL) {
            return NGX_ERROR;
        }

        if (p->out) {
            ngx_memcpy(out, p->out,
                       p->nout * sizeof(ngx_http_realtime_msg_t *));
            ngx_free(p->out);
        }

        p->out = out;
        p->out_size = size;
    }

    if (!msg->persistent) {
        msg->refs++;
    }

    p->out[p->nout++] = msg;
    p->out_bytes += msg->len;

    /* every packet of this event loop iteration goes in one answer */

    if (p->get_held && !p->flush.posted) {
        ngx_post_event(&p->flush, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_realtime_eio_drop_out(ngx_http_realtime_eio_poll_t *p)
{
    ngx_uint_t  i;

    for (i = 0; i < p->nout; i++) {
        ngx_http_realtime_msg_release(p->out[i]);
    }

    p->nout = 0;
    p->out_bytes = 0;

    if (p->out_size > 64) {
        /* a burst does not keep its array */
        ngx_free(p->out);
        p->out = NULL;
        p->out_size = 0;
    }
}


/*
 * Ends the session: a WebSocket is closed (its release frees the
 * session), a polling one is freed by its posted flush, so that no
 * caller up the stack holds a freed session.
 */

void
ngx_http_realtime_eio_close(ngx_http_realtime_eio_t *eio, char *reason)
{
    ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                  "realtime: engine.io session %*s ends: %s",
                  (size_t) NGX_HTTP_REALTIME_EIO_SID_LEN, eio->sid, reason);

    if (eio->ws) {
        ngx_http_realtime_close(eio->ws, NGX_HTTP_REALTIME_CLOSE_NORMAL,
                                NULL);
        return;
    }

    if (eio->poll && !eio->closing) {
        eio->closing = 1;

        if (!eio->poll->flush.posted) {
            ngx_post_event(&eio->poll->flush, &ngx_posted_events);
        }
    }
}


/* a token's deadline moved, or a namespace came with one */

void
ngx_http_realtime_eio_deadline(ngx_http_realtime_eio_t *eio)
{
    if (eio->poll) {
        ngx_http_realtime_eio_timer(&eio->poll->timer);

    } else if (eio->ws && !eio->ws->close_sent) {
        ngx_http_realtime_eio_ws_liveness(eio->ws);
    }
}


/*
 * The server pings every interval and wants the pong within the
 * timeout; a polling session with no GET for both is gone; tokens
 * expire.  Returns when to look again, 0 when the session ends.
 */

static ngx_msec_t
ngx_http_realtime_eio_heartbeat(ngx_http_realtime_eio_t *eio)
{
    ngx_msec_t                     now, next, elapsed, idle, limit, ttl;
    ngx_http_realtime_eio_poll_t  *p;
    ngx_http_realtime_loc_conf_t  *conf;

    conf = eio->conf;
    now = ngx_current_msec;
    elapsed = now - eio->last_ping;

    if (eio->pong_wait && elapsed >= conf->sio_ping_timeout) {
        ngx_http_realtime_eio_close(eio, "ping timeout");
        return 0;
    }

    if (!eio->pong_wait && elapsed >= conf->sio_ping_interval) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, eio->log, 0, "realtime eio ping");

        /* anchored to the schedule: timers fire late, deadlines must not */
        eio->last_ping = (elapsed < 2 * conf->sio_ping_interval)
                         ? eio->last_ping + conf->sio_ping_interval : now;
        eio->pong_wait = 1;
        elapsed = now - eio->last_ping;

        if (ngx_http_realtime_eio_send(eio, &ngx_http_realtime_eio_ping_msg)
            != NGX_OK)
        {
            ngx_http_realtime_eio_close(eio, "ping failed");
            return 0;
        }
    }

    next = eio->pong_wait ? conf->sio_ping_timeout - elapsed
                          : conf->sio_ping_interval - elapsed;

    p = eio->poll;

    if (p && eio->ws == NULL && !p->remote_active) {
        if (p->get_held) {
            p->last_get = now;
        }

        idle = now - p->last_get;
        limit = conf->sio_ping_interval + conf->sio_ping_timeout;

        if (idle >= limit) {
            ngx_http_realtime_eio_close(eio, "no poll within "
                                        "pingInterval + pingTimeout");
            return 0;
        }

        next = ngx_min(next, limit - idle);
    }

    ttl = eio->handler->deadline(eio);

    return ngx_max(ngx_min(next, ttl), 1);
}


static void
ngx_http_realtime_eio_timer(ngx_event_t *ev)
{
    ngx_msec_t                next;
    ngx_http_realtime_eio_t  *eio;

    eio = ev->data;

    if (eio->closing) {
        return;
    }

    next = ngx_http_realtime_eio_heartbeat(eio);

    if (next && !eio->closing) {
        ngx_add_timer(ev, next);
    }
}


/* posted: the held GET takes the outbox; a closing session ends here */

static void
ngx_http_realtime_eio_flush(ngx_event_t *ev)
{
    ngx_http_realtime_eio_t  *eio;

    eio = ev->data;

    if (eio->closing) {
        ngx_http_realtime_eio_destroy(eio);
        return;
    }

    if (eio->poll->get_held && (eio->poll->nout || eio->poll->probed)) {
        if (ngx_http_realtime_eio_answer(eio) != NGX_OK) {
            ngx_http_realtime_eio_close(eio, "answering a poll failed");
        }
    }
}


/* the payload: text packets as they are, binary "b" + base64, \x1e */

static ngx_int_t
ngx_http_realtime_eio_answer(ngx_http_realtime_eio_t *eio)
{
    u_char                        *buf, *d, *data;
    size_t                         size, header, len, max;
    ngx_int_t                      rc;
    ngx_uint_t                     i, n;
    ngx_http_realtime_msg_t       *msg;
    ngx_http_realtime_eio_poll_t  *p;

    p = eio->poll;

    if (p->nout == 0) {
        /* an upgrade is under way: the noop ends the poll */
        p->get_held = 0;
        p->last_get = ngx_current_msec;

        return ngx_http_realtime_eio_reply(eio->zone, &p->get, NGX_HTTP_OK, 0,
                                           (u_char *) "6", 1);
    }

    /*
     * An answer goes to another worker through its queue in the zone: at
     * most half of it, the rest waits for the next poll.  A packet that
     * could never pass is dropped, and said.
     */

    max = (size_t) -1;

    if (eio->zone && p->get.id != ngx_http_realtime_ipc_worker_id()
        && p->get.slot < NGX_HTTP_REALTIME_SLOTS)
    {
        max = eio->zone->sh->slots[p->get.slot].queue_size / 2;
    }

    size = 0;

    for (n = 0; n < p->nout; n++) {
        msg = p->out[n];
        header = ngx_http_realtime_frame_header_of(msg->data);
        len = msg->len - header;

        len = (n ? 1 : 0)
              + (((msg->data[0] & 0x0f) == NGX_HTTP_REALTIME_OP_BINARY)
                 ? 1 + ngx_http_realtime_eio_base64_encoded_len(len)
                 : len);

        if (size + len > max) {
            break;
        }

        size += len;
    }

    if (n == 0) {
        ngx_log_error(NGX_LOG_WARN, eio->log, 0,
                      "realtime: a packet of %uz bytes is too large for "
                      "a worker's queue, dropped", p->out[0]->len);
        (void) ngx_atomic_fetch_add(&eio->zone->sh->queue_full, 1);
        ngx_http_realtime_eio_shift_out(p, 1);
        return NGX_OK;
    }

    buf = ngx_alloc(size, eio->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    d = buf;

    for (i = 0; i < n; i++) {
        msg = p->out[i];
        header = ngx_http_realtime_frame_header_of(msg->data);
        data = msg->data + header;
        len = msg->len - header;

        if (i) {
            *d++ = NGX_HTTP_REALTIME_EIO_SEPARATOR;
        }

        if ((msg->data[0] & 0x0f) == NGX_HTTP_REALTIME_OP_BINARY) {
            *d++ = 'b';
            d += ngx_http_realtime_eio_base64_encode(d, data, len);

        } else {
            d = ngx_cpymem(d, data, len);
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime eio poll answer: %ui of %ui packets, %uz bytes",
                   n, p->nout, (size_t) (d - buf));

    rc = ngx_http_realtime_eio_reply(eio->zone, &p->get, NGX_HTTP_OK, 0, buf,
                                     d - buf);
    ngx_free(buf);

    if (rc == NGX_AGAIN) {
        /* that worker's queue is full now: the packets wait, and retry */
        if (!p->noop.timer_set) {
            ngx_add_timer(&p->noop, 10);
        }

        return NGX_OK;
    }

    p->get_held = 0;
    p->last_get = ngx_current_msec;

    ngx_http_realtime_eio_shift_out(p, n);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/* the first n packets of the outbox are gone: the rest moves up */

static void
ngx_http_realtime_eio_shift_out(ngx_http_realtime_eio_poll_t *p,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    if (n >= p->nout) {
        ngx_http_realtime_eio_drop_out(p);
        return;
    }

    for (i = 0; i < n; i++) {
        p->out_bytes -= p->out[i]->len;
        ngx_http_realtime_msg_release(p->out[i]);
    }

    ngx_memmove(p->out, p->out + n,
                (p->nout - n) * sizeof(ngx_http_realtime_msg_t *));
    p->nout -= n;
}


static ngx_int_t
ngx_http_realtime_eio_reply(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *to, ngx_uint_t status, ngx_uint_t code,
    u_char *data, size_t len)
{
    u_char     tbuf[NGX_INT32_LEN], ebuf[2 * NGX_INT_T_LEN + 1];
    ngx_str_t  target, except;

    target.data = tbuf;
    target.len = ngx_sprintf(tbuf, "%uD", to->token) - tbuf;
    except.data = ebuf;
    except.len = ngx_sprintf(ebuf, "%ui:%ui", status, code) - ebuf;

    return ngx_http_realtime_eio_post(zone, to,
                                      NGX_HTTP_REALTIME_IPC_EIO_REPLY,
                                      &target, &except, data, len);
}


/* a frame ('F') or the end ('C') for a WebSocket relayed elsewhere */

static ngx_int_t
ngx_http_realtime_eio_relay(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_eio_addr_t *to, u_char kind,
    ngx_http_realtime_msg_t *msg)
{
    u_char     tbuf[NGX_INT32_LEN];
    ngx_str_t  target, except;

    target.data = tbuf;
    target.len = ngx_sprintf(tbuf, "%uD", to->token) - tbuf;
    except.data = &kind;
    except.len = 1;

    return ngx_http_realtime_eio_post(eio->zone, to,
                                      NGX_HTTP_REALTIME_IPC_EIO_WS, &target,
                                      &except,
                                      msg ? msg->data : NULL,
                                      msg ? msg->len : 0);
}


static ngx_int_t
ngx_http_realtime_eio_relay_to(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *to, u_char kind)
{
    u_char     tbuf[NGX_INT32_LEN];
    ngx_str_t  target, except;

    target.data = tbuf;
    target.len = ngx_sprintf(tbuf, "%uD", to->token) - tbuf;
    except.data = &kind;
    except.len = 1;

    return ngx_http_realtime_eio_post(zone, to, NGX_HTTP_REALTIME_IPC_EIO_WS,
                                      &target, &except, NULL, 0);
}


/* IPC_EIO: target the sid, except "<kind>:<slot>:<id>:<token>" */

static void
ngx_http_realtime_eio_ipc(ngx_http_realtime_zone_t *zone, ngx_str_t *target,
    ngx_str_t *except, ngx_http_realtime_msg_t *msg)
{
    u_char                        *p, *last, *f[3];
    ngx_int_t                      v[3];
    ngx_uint_t                     i;
    ngx_http_realtime_eio_addr_t   from;

    p = except->data;
    last = p + except->len;

    if (except->len < 2 || p[1] != ':') {
        return;
    }

    f[0] = p + 2;

    for (i = 1; i < 3; i++) {
        f[i] = ngx_strlchr(f[i - 1], last, ':');
        if (f[i] == NULL) {
            return;
        }

        f[i]++;
    }

    v[0] = ngx_atoi(f[0], f[1] - f[0] - 1);
    v[1] = ngx_atoi(f[1], f[2] - f[1] - 1);
    v[2] = ngx_atoi(f[2], last - f[2]);

    if (v[0] == NGX_ERROR || v[1] == NGX_ERROR || v[2] == NGX_ERROR) {
        return;
    }

    from.slot = v[0];
    from.id = (uint32_t) v[1];
    from.token = (uint32_t) v[2];

    (void) ngx_http_realtime_eio_request(zone, target, p[0], &from, msg->data,
                                         msg->len);
}


/* the owner's side of a relayed request, or of a local one */

ngx_int_t
ngx_http_realtime_eio_request(ngx_http_realtime_zone_t *zone,
    ngx_str_t *sid, ngx_uint_t kind, ngx_http_realtime_eio_addr_t *from,
    u_char *data, size_t len)
{
    size_t                          n;
    u_char                         *pos, *end, *packet;
    ngx_http_realtime_eio_t        *eio;
    ngx_http_realtime_eio_poll_t   *p;

    eio = ngx_http_realtime_eio_lookup(sid);


    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime eio request %c sid:%V known:%p", (int) kind, sid,
                   eio);

    if (eio == NULL || eio->closing) {
        switch (kind) {

        case NGX_HTTP_REALTIME_EIO_GET:
        case NGX_HTTP_REALTIME_EIO_POST:
        case NGX_HTTP_REALTIME_EIO_ABORT:
            return ngx_http_realtime_eio_reply(zone, from,
                                               NGX_HTTP_BAD_REQUEST, 1,
                                               NULL, 0);

        case NGX_HTTP_REALTIME_EIO_WS_OPEN:
            /* the relayed WebSocket is told to go */
            return ngx_http_realtime_eio_relay_to(zone, from, 'C');

        default:
            return NGX_OK;
        }
    }

    p = eio->poll;

    /* the timer may not have run yet: a request sees the deadline */

    if ((kind == NGX_HTTP_REALTIME_EIO_GET
         || kind == NGX_HTTP_REALTIME_EIO_POST)
        && eio->ws == NULL && !p->remote_active
        && ngx_http_realtime_eio_heartbeat(eio) == 0)
    {
        return ngx_http_realtime_eio_reply(zone, from, NGX_HTTP_BAD_REQUEST,
                                           1, NULL, 0);
    }

    switch (kind) {

    case NGX_HTTP_REALTIME_EIO_GET:
        if (eio->ws || p->remote_active) {
            return ngx_http_realtime_eio_reply(zone, from,
                                               NGX_HTTP_BAD_REQUEST, 3,
                                               NULL, 0);
        }

        if (p->get_held) {
            /* two GETs at once: the spec closes the session */
            (void) ngx_http_realtime_eio_reply(zone, from,
                                               NGX_HTTP_BAD_REQUEST, 3,
                                               NULL, 0);
            ngx_http_realtime_eio_close(eio, "overlapping GET requests");
            return NGX_OK;
        }

        p->get = *from;
        p->get_held = 1;
        p->last_get = ngx_current_msec;

        if (p->nout && !p->flush.posted) {
            ngx_post_event(&p->flush, &ngx_posted_events);

        } else if (p->probed) {
            /*
             * As Node's check interval: the noop comes a little later, so
             * that a "5" racing this GET on another connection wins.
             */
            ngx_add_timer(&p->noop, NGX_HTTP_REALTIME_EIO_NOOP_DELAY);
        }

        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_GET_GONE:
        if (p->get_held && p->get.id == from->id
            && p->get.token == from->token)
        {
            /* a poll the client cancelled ends the session, as Node's */
            p->get_held = 0;
            ngx_http_realtime_eio_close(eio, "poll cancelled by the client");
        }

        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_POST:
        pos = data;
        end = data + len;

        while (!eio->closing
               && ngx_http_realtime_eio_payload_next((const u_char **) &pos,
                                                     end,
                                                     (const u_char **)
                                                         &packet, &n))
        {
            switch (ngx_http_realtime_eio_receive(eio,
                                              NGX_HTTP_REALTIME_EIO_VIA_ACTIVE,
                                              0, packet, n))
            {
            case NGX_ERROR:
                ngx_http_realtime_eio_close(eio, "internal error");
                return ngx_http_realtime_eio_reply(zone, from,
                                   NGX_HTTP_INTERNAL_SERVER_ERROR, 0, NULL, 0);

            case NGX_DECLINED:
                /* an invalid packet: the session is closed */
                return ngx_http_realtime_eio_reply(zone, from,
                                                   NGX_HTTP_BAD_REQUEST, 3,
                                                   NULL, 0);
            }
        }

        return ngx_http_realtime_eio_reply(zone, from, NGX_HTTP_OK, 0,
                                           NULL, 0);

    case NGX_HTTP_REALTIME_EIO_ABORT:
        (void) ngx_http_realtime_eio_reply(zone, from,
                                           NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           0, NULL, 0);
        ngx_http_realtime_eio_close(eio, "POST over maxPayload");
        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_WS_OPEN:
        if (eio->ws || p->probe || p->remote_probe || p->remote_active) {
            /* one upgrade at a time: this one is told to go */
            (void) ngx_http_realtime_eio_relay(eio, from, 'C', NULL);
            return NGX_OK;
        }

        p->remote = *from;
        p->remote_probe = 1;
        return NGX_OK;

    case NGX_HTTP_REALTIME_EIO_WS_TEXT:
    case NGX_HTTP_REALTIME_EIO_WS_BINARY:
        if (!(p->remote_probe || p->remote_active)
            || p->remote.id != from->id || p->remote.token != from->token)
        {
            return NGX_OK;
        }

        return ngx_http_realtime_eio_receive(eio,
                                       p->remote_active
                                       ? NGX_HTTP_REALTIME_EIO_VIA_ACTIVE
                                       : NGX_HTTP_REALTIME_EIO_VIA_PROBE,
                                       kind == NGX_HTTP_REALTIME_EIO_WS_BINARY,
                                       data, len);

    case NGX_HTTP_REALTIME_EIO_WS_GONE:
        if (p->remote.id != from->id || p->remote.token != from->token) {
            return NGX_OK;
        }

        if (p->remote_active) {
            p->remote_active = 0;
            ngx_http_realtime_eio_close(eio, "relayed websocket closed");

        } else {
            p->remote_probe = 0;
            p->probed = 0;

            if (p->noop.timer_set) {
                ngx_del_timer(&p->noop);
            }
        }

        return NGX_OK;

    default:
        return NGX_OK;
    }
}


static ngx_http_realtime_eio_t *
ngx_http_realtime_eio_lookup(ngx_str_t *sid)
{
    ngx_str_node_t  *sn;

    if (ngx_http_realtime_eio_tree.root == NULL) {
        return NULL;
    }

    sn = ngx_str_rbtree_lookup(&ngx_http_realtime_eio_tree, sid,
                               ngx_crc32_short(sid->data, sid->len));

    return sn ? ((ngx_http_realtime_eio_poll_t *) sn)->eio : NULL;
}
