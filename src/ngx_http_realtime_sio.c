
/*
 * Copyright (C) ngx-realtime developers
 *
 * Socket.IO v5 over Engine.IO v4: the protocol adapter.  An Engine.IO
 * session (eio_t) owns its transport and the Socket.IO sockets of the
 * namespaces it connected; each of those is a hub session like a native
 * socket, so rooms, users, presence, limits and the push API reach both
 * protocols.  The hub hands a socket the native frame of a publication;
 * the first socket of a namespace that needs it encodes it once as
 * 42<nsp,>["event",data] and hangs it on the frame for the others.
 *
 * Every packet leaves as a WebSocket frame (text "4..." or a binary
 * attachment), through the Engine.IO session and whatever transport it
 * has (ngx_http_realtime_eio_session.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_realtime_eio_session.h"





static ngx_int_t ngx_http_realtime_eio_attachment(
    ngx_http_realtime_eio_t *eio, u_char *data, size_t len);
static ngx_msec_t ngx_http_realtime_sio_expire(ngx_http_realtime_eio_t *eio);
static void ngx_http_realtime_sio_closed(ngx_http_realtime_eio_t *eio);
static ngx_int_t ngx_http_realtime_eio_echo_message(
    ngx_http_realtime_eio_t *eio, u_char *data, size_t len);
static ngx_int_t ngx_http_realtime_eio_echo_binary(
    ngx_http_realtime_eio_t *eio, u_char *data, size_t len);
static ngx_msec_t ngx_http_realtime_eio_echo_deadline(
    ngx_http_realtime_eio_t *eio);
static void ngx_http_realtime_eio_echo_closed(ngx_http_realtime_eio_t *eio);
static void ngx_http_realtime_eio_collect(ngx_http_realtime_eio_t *eio);
static void ngx_http_realtime_eio_drop_binary(ngx_http_realtime_eio_t *eio);

static ngx_int_t ngx_http_realtime_sio_receive(ngx_http_realtime_eio_t *eio,
    u_char *data, size_t len);
static ngx_int_t ngx_http_realtime_sio_packet(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_sio_packet_t *pkt);
static ngx_int_t ngx_http_realtime_sio_connect(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_sio_packet_t *pkt);
static ngx_int_t ngx_http_realtime_sio_connect_error(
    ngx_http_realtime_eio_t *eio, ngx_str_t *nsp, const char *message,
    const char *code);
static ngx_int_t ngx_http_realtime_sio_connect_auth(
    ngx_http_realtime_eio_t *eio, ngx_str_t *name, json_t *auth,
    ngx_http_realtime_sio_connecting_t *woken);
static ngx_int_t ngx_http_realtime_sio_connect_socket(
    ngx_http_realtime_eio_t *eio, ngx_str_t *name, json_t *auth,
    ngx_http_realtime_jwt_conn_t *jwt, json_t *kept);
static ngx_int_t ngx_http_realtime_sio_connected(
    ngx_http_realtime_sio_socket_t *sock, u_char *replay, size_t replay_len);
static ngx_int_t ngx_http_realtime_sio_auth(ngx_http_realtime_eio_t *eio,
    ngx_str_t *nsp, json_t *auth, ngx_http_realtime_jwt_conn_t **jwtp,
    ngx_http_realtime_sio_connecting_t *woken);
static void ngx_http_realtime_sio_connect_wake(
    ngx_http_realtime_jwt_wait_t *w);
static ngx_uint_t ngx_http_realtime_sio_connecting(
    ngx_http_realtime_eio_t *eio, ngx_str_t *name);
static ngx_int_t ngx_http_realtime_sio_event(
    ngx_http_realtime_sio_socket_t *sock,
    ngx_http_realtime_sio_packet_t *pkt);
static ngx_int_t ngx_http_realtime_sio_command(
    ngx_http_realtime_sio_socket_t *sock, json_t *args, json_int_t id);
static ngx_int_t ngx_http_realtime_sio_echo(
    ngx_http_realtime_sio_socket_t *sock, json_t *args, json_int_t id);
static ngx_str_t *ngx_http_realtime_sio_nsp_allowed(
    ngx_http_realtime_eio_t *eio, ngx_str_t *nsp);
static ngx_http_realtime_sio_socket_t *ngx_http_realtime_sio_find(
    ngx_http_realtime_eio_t *eio, ngx_str_t *nsp);
static void ngx_http_realtime_sio_end(ngx_http_realtime_sio_socket_t *sock,
    ngx_uint_t notify);
static ngx_http_realtime_msg_t *ngx_http_realtime_sio_msg(int type,
    ngx_str_t *nsp, json_int_t id, json_t *data, unsigned attachments);
static ngx_int_t ngx_http_realtime_sio_send(
    ngx_http_realtime_sio_socket_t *sock, int type, json_int_t id,
    json_t *data);
static ngx_http_realtime_msg_t *ngx_http_realtime_sio_derive_arg(
    ngx_http_realtime_msg_t *msg, ngx_str_t *nsp, ngx_uint_t offset_arg,
    u_char *instance);

static ngx_int_t ngx_http_realtime_sio_deliver(ngx_http_realtime_session_t *s,
    ngx_http_realtime_msg_t *msg);
static ngx_int_t ngx_http_realtime_sio_reply(ngx_http_realtime_session_t *s,
    const char *event, json_t *data, json_int_t id);
static ngx_int_t ngx_http_realtime_sio_error(ngx_http_realtime_session_t *s,
    const char *code, const char *message, json_int_t id);
static void ngx_http_realtime_sio_close(ngx_http_realtime_session_t *s,
    ngx_uint_t code, char *reason);
static void ngx_http_realtime_sio_deadline(ngx_http_realtime_session_t *s);


const ngx_http_realtime_eio_handler_t  ngx_http_realtime_sio_protocol = {
    ngx_http_realtime_sio_receive,
    ngx_http_realtime_eio_attachment,
    ngx_http_realtime_sio_expire,
    ngx_http_realtime_sio_closed
};


static const ngx_http_realtime_session_handler_t
    ngx_http_realtime_sio_session_handler = {
    ngx_http_realtime_sio_deliver,
    ngx_http_realtime_sio_reply,
    ngx_http_realtime_sio_error,
    ngx_http_realtime_sio_close,
    ngx_http_realtime_sio_deadline
};


static ngx_str_t  ngx_http_realtime_sio_root = ngx_string("/");

/* the application the official test suites expect */
static ngx_str_t  ngx_http_realtime_sio_echo_nsps[] = {
    ngx_string("/"),
    ngx_string("/custom"),
    ngx_null_string
};

/* a binary attachment of the packet that waits for it */

static ngx_int_t
ngx_http_realtime_eio_attachment(ngx_http_realtime_eio_t *eio,
    u_char *data, size_t len)
{
    ngx_int_t                        rc;
    const char                      *err;
    ngx_http_realtime_msg_t         *msg;
    ngx_http_realtime_sio_packet_t   pkt;

    if (eio->nattached == eio->attachments) {
        ngx_http_realtime_eio_close(eio, "binary data without a packet");
        return NGX_OK;
    }

    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_BINARY, data, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    eio->attached[eio->nattached++] = msg;

    if (eio->nattached < eio->attachments) {
        return NGX_OK;
    }

    /* the packet was checked when it came: it parses again */

    (void) ngx_http_realtime_sio_parse((char *) eio->binary, eio->binary_len,
                                       &pkt, &err);

    rc = ngx_http_realtime_sio_packet(eio, &pkt);

    ngx_http_realtime_eio_drop_binary(eio);

    return rc;
}


static void
ngx_http_realtime_eio_drop_binary(ngx_http_realtime_eio_t *eio)
{
    ngx_uint_t  i;

    for (i = 0; i < eio->nattached; i++) {
        ngx_http_realtime_msg_release(eio->attached[i]);
    }

    if (eio->attached) {
        ngx_free(eio->attached);
        eio->attached = NULL;
    }

    if (eio->binary) {
        ngx_free(eio->binary);
        eio->binary = NULL;
    }

    eio->attachments = 0;
    eio->nattached = 0;
}


/*
 * Sockets whose token expired end; returns the next deadline.  A
 * namespace ends with 41, as Node's server says "io server disconnect".
 */

static ngx_msec_t
ngx_http_realtime_sio_expire(ngx_http_realtime_eio_t *eio)
{
    ngx_msec_t                       next, ttl;
    ngx_queue_t                     *q, *nq;
    ngx_http_realtime_sio_socket_t  *sock;

    next = NGX_TIMER_INFINITE;

    for (q = ngx_queue_head(&eio->sockets);
         q != ngx_queue_sentinel(&eio->sockets);
         q = nq)
    {
        nq = ngx_queue_next(q);
        sock = ngx_queue_data(q, ngx_http_realtime_sio_socket_t, link);

        ttl = ngx_http_realtime_jwt_ttl(&sock->session);

        if (ttl == 0) {
            ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                          "realtime: token expired, socket.io namespace "
                          "\"%V\" disconnected", &sock->nsp);
            ngx_http_realtime_sio_end(sock, 1);
            continue;
        }

        next = ngx_min(next, ttl);
    }

    return next;
}


/* the Engine.IO session ends: every namespace leaves the hub */

static void
ngx_http_realtime_sio_closed(ngx_http_realtime_eio_t *eio)
{
    ngx_queue_t                         *q;
    ngx_http_realtime_sio_socket_t      *sock;
    ngx_http_realtime_sio_connecting_t  *waiting;

    while (!ngx_queue_empty(&eio->connecting)) {
        q = ngx_queue_head(&eio->connecting);
        ngx_queue_remove(q);

        waiting = ngx_queue_data(q, ngx_http_realtime_sio_connecting_t, link);
        ngx_http_realtime_jwt_wait_cancel(&waiting->wait);
        json_decref(waiting->auth);

        if (waiting->jwt) {
            ngx_http_realtime_jwt_free(waiting->jwt);
        }

        if (waiting->taking) {
            /* Redis's answer frees it */
            waiting->eio = NULL;
            continue;
        }

        ngx_free(waiting);
    }

    while (!ngx_queue_empty(&eio->sockets)) {
        q = ngx_queue_head(&eio->sockets);
        sock = ngx_queue_data(q, ngx_http_realtime_sio_socket_t, link);

        /* the transport went, not the client: it may come back */
        if (sock->has_pid && !sock->closed) {
            if (sock->session.zone && sock->session.zone->redis) {
                /* kept in Redis, for any instance */
                ngx_http_realtime_sio_resume_keep(sock);

            } else {
                ngx_http_realtime_sio_recovery_save(sock);
            }

        } else if (sock->resume) {
            /* taken from Redis, not back yet: kept as it was */
            ngx_http_realtime_sio_resume_keep_again(sock);
        }

        ngx_http_realtime_sio_end(sock, 0);
    }

    ngx_http_realtime_eio_collect(eio);
    ngx_http_realtime_eio_drop_binary(eio);

    if (eio->jwt) {
        ngx_http_realtime_jwt_free(eio->jwt);
        eio->jwt = NULL;
    }
}


/* sockets that ended are freed only between packets: callers held them */

static void
ngx_http_realtime_eio_collect(ngx_http_realtime_eio_t *eio)
{
    ngx_queue_t                     *q;
    ngx_http_realtime_sio_socket_t  *sock;

    while (!ngx_queue_empty(&eio->closed)) {
        q = ngx_queue_head(&eio->closed);
        ngx_queue_remove(q);

        sock = ngx_queue_data(q, ngx_http_realtime_sio_socket_t, link);
        ngx_free(sock);
    }
}


static ngx_int_t
ngx_http_realtime_sio_receive(ngx_http_realtime_eio_t *eio, u_char *data,
    size_t len)
{
    const char                      *err;
    ngx_http_realtime_sio_packet_t   pkt;

    ngx_http_realtime_eio_collect(eio);

    if (eio->attachments) {
        ngx_http_realtime_eio_close(eio, "socket.io packet before the "
                                   "attachments of the last one");
        return NGX_OK;
    }

    if (ngx_http_realtime_sio_parse((char *) data, len, &pkt, &err) != 0) {
        ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                      "realtime: invalid socket.io packet: %s", err);
        ngx_http_realtime_eio_close(eio, "invalid socket.io packet");
        return NGX_OK;
    }

    if (pkt.attachments == 0) {
        return ngx_http_realtime_sio_packet(eio, &pkt);
    }

    /* BINARY_*: the packet waits for its attachments */

    eio->binary = ngx_alloc(len, eio->log);
    eio->attached = ngx_alloc(pkt.attachments
                              * sizeof(ngx_http_realtime_msg_t *), eio->log);

    if (eio->binary == NULL || eio->attached == NULL) {
        ngx_http_realtime_eio_drop_binary(eio);
        return NGX_ERROR;
    }

    ngx_memcpy(eio->binary, data, len);
    eio->binary_len = len;
    eio->attachments = pkt.attachments;

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_sio_packet(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_sio_packet_t *pkt)
{
    ngx_str_t                        nsp;
    ngx_http_realtime_sio_socket_t  *sock;

    nsp.data = (u_char *) pkt->nsp;
    nsp.len = pkt->nsp_len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime sio packet type:%d nsp:\"%V\"", pkt->type, &nsp);

    if (pkt->type == NGX_HTTP_REALTIME_SIO_CONNECT) {
        return ngx_http_realtime_sio_connect(eio, pkt);
    }

    sock = ngx_http_realtime_sio_find(eio, &nsp);

    switch (pkt->type) {

    case NGX_HTTP_REALTIME_SIO_DISCONNECT:
        if (sock) {
            ngx_http_realtime_sio_end(sock, 0);
        }

        return NGX_OK;

    case NGX_HTTP_REALTIME_SIO_EVENT:
    case NGX_HTTP_REALTIME_SIO_BINARY_EVENT:
        if (sock == NULL) {
            /* as Node's server: packets of other namespaces are dropped */
            ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                          "realtime: socket.io event for namespace \"%V\" "
                          "not connected, ignored", &nsp);
            return NGX_OK;
        }

        return ngx_http_realtime_sio_event(sock, pkt);

    case NGX_HTTP_REALTIME_SIO_ACK:
    case NGX_HTTP_REALTIME_SIO_BINARY_ACK:
        /* the server asks for no acks */
        return NGX_OK;

    default: /* NGX_HTTP_REALTIME_SIO_CONNECT_ERROR */
        ngx_http_realtime_eio_close(eio, "CONNECT_ERROR from the client");
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_realtime_sio_connect(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_sio_packet_t *pkt)
{
    json_t      *auth;
    ngx_str_t    nsp, *name;
    const char  *err;

    nsp.data = (u_char *) pkt->nsp;
    nsp.len = pkt->nsp_len;

    name = ngx_http_realtime_sio_nsp_allowed(eio, &nsp);

    if (name == NULL) {
        return ngx_http_realtime_sio_connect_error(eio, &nsp,
                                                   "Invalid namespace", NULL);
    }

    if (ngx_http_realtime_sio_find(eio, name)
        || ngx_http_realtime_sio_connecting(eio, name))
    {
        return ngx_http_realtime_sio_connect_error(eio, name,
                                             "namespace already connected",
                                             "BAD_REQUEST");
    }

    if (ngx_http_realtime_sio_data(pkt, &auth, &err) != 0) {
        return ngx_http_realtime_sio_connect_error(eio, name, err,
                                                   "BAD_REQUEST");
    }

    return ngx_http_realtime_sio_connect_auth(eio, name, auth, NULL);
}


/*
 * The CONNECT's auth (taken over), then the namespace's socket; woken:
 * the CONNECT waited for realtime_jwt_key_request.
 */

static ngx_int_t
ngx_http_realtime_sio_connect_auth(ngx_http_realtime_eio_t *eio,
    ngx_str_t *name, json_t *auth, ngx_http_realtime_sio_connecting_t *woken)
{
    ngx_int_t                      rc;
    ngx_http_realtime_jwt_conn_t  *jwt;

    jwt = NULL;
    rc = ngx_http_realtime_sio_auth(eio, name, auth, &jwt, woken);

    if (rc != NGX_OK) {
        json_decref(auth);
        return (rc == NGX_DONE || rc == NGX_AGAIN) ? NGX_OK : rc;
    }

    /* with realtime_redis a kept session is taken from Redis first */
    rc = ngx_http_realtime_sio_resume_take(eio, name, auth, jwt,
                                     ngx_http_realtime_sio_connect_socket);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_realtime_sio_connect_socket(eio, name, auth, jwt, NULL);
}


/*
 * The namespace's socket, with the auth (taken over) and the token of
 * the CONNECT; kept: the session Redis kept for the pid of auth, or NULL.
 */

static ngx_int_t
ngx_http_realtime_sio_connect_socket(ngx_http_realtime_eio_t *eio,
    ngx_str_t *name, json_t *auth, ngx_http_realtime_jwt_conn_t *jwt,
    json_t *kept)
{
    u_char                          *replay;
    size_t                           replay_len;
    json_t                          *data;
    ngx_int_t                        rc;
    ngx_http_realtime_session_t     *s;
    ngx_http_realtime_sio_socket_t  *sock;

    sock = ngx_calloc(sizeof(ngx_http_realtime_sio_socket_t), eio->log);
    if (sock == NULL) {
        json_decref(auth);
        if (jwt) {
            ngx_http_realtime_jwt_free(jwt);
        }
        return NGX_ERROR;
    }

    sock->eio = eio;
    sock->nsp = *name;
    ngx_http_realtime_random_id(sock->id, NGX_HTTP_REALTIME_SIO_ID_LEN);

    s = &sock->session;
    s->handler = &ngx_http_realtime_sio_session_handler;
    s->log = eio->log;
    s->conf = eio->conf;
    s->jwt = jwt;
    s->user = jwt ? jwt->user : eio->user;
    s->handshake = eio->handshake;
    ngx_queue_init(&s->rooms);

    if (eio->conf->zone && eio->conf->mode == NGX_HTTP_REALTIME_SIO) {
        s->zone = eio->conf->zone;

        rc = ngx_http_realtime_room_connect(s);

        if (rc != NGX_OK) {
            if (jwt) {
                ngx_http_realtime_jwt_free(jwt);
            }

            ngx_free(sock);
            json_decref(auth);

            switch (rc) {

            case NGX_HTTP_REALTIME_LIMIT:
                return ngx_http_realtime_sio_connect_error(eio, name,
                                  "too many connections for this user",
                                  "TOO_MANY_CONNECTIONS");

            case NGX_HTTP_REALTIME_ZONE_FULL:
                return ngx_http_realtime_sio_connect_error(eio, name,
                                  "the realtime zone is full", "ZONE_FULL");

            default:
                return NGX_ERROR;
            }
        }
    }

    ngx_queue_insert_tail(&eio->sockets, &sock->link);

    /*
     * realtime_socketio_recovery: the session that went, back (its id,
     * rooms and what it missed), or a new private id to come back with
     */

    replay = NULL;
    replay_len = 0;

    rc = NGX_DECLINED;

    if (s->zone && eio->conf->sio_recovery) {
        rc = s->zone->redis
             ? ngx_http_realtime_sio_resume(sock, auth, kept, &replay,
                                            &replay_len,
                                            ngx_http_realtime_sio_connected)
             : ngx_http_realtime_sio_recovery_restore(sock, auth, &replay,
                                                      &replay_len);
        if (rc == NGX_ERROR) {
            json_decref(auth);
            return NGX_ERROR;
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime sio connect nsp:\"%V\" user:\"%V\" id:%V "
                   "resume:%i", name, &s->user, &s->id, rc);

    if (rc == NGX_AGAIN) {
        /*
         * the rooms' histories are read in Redis: answered after them,
         * and its routes' connect then
         */
        json_decref(auth);
        ngx_http_realtime_eio_deadline(eio);
        return NGX_OK;
    }

    ngx_http_realtime_route_connect(s);

    rc = ngx_http_realtime_sio_connected(sock, replay, replay_len);

    if (rc == NGX_OK && eio->conf->mode == NGX_HTTP_REALTIME_SIO_ECHO) {
        /* Node's handshake.auth is {} when the CONNECT has none */
        data = auth ? json_pack("[s, O]", "auth", auth)
                    : json_pack("[s, {}]", "auth");
        rc = ngx_http_realtime_sio_send(sock, NGX_HTTP_REALTIME_SIO_EVENT, -1,
                                        data);
        json_decref(data);
    }

    json_decref(auth);

    /* the token's deadline joins the timer */
    ngx_http_realtime_eio_deadline(eio);

    return rc;
}


/* the CONNECT's answer, then what the socket missed (freed), in order */

static ngx_int_t
ngx_http_realtime_sio_connected(ngx_http_realtime_sio_socket_t *sock,
    u_char *replay, size_t replay_len)
{
    json_t     *data;
    ngx_int_t   rc;

    data = sock->has_pid
           ? json_pack("{s:s%, s:s%}", "sid", sock->id,
                       (size_t) NGX_HTTP_REALTIME_SIO_ID_LEN,
                       "pid", sock->pid,
                       (size_t) NGX_HTTP_REALTIME_SIO_PID_LEN)
           : json_pack("{s:s%}", "sid", sock->id,
                       (size_t) NGX_HTTP_REALTIME_SIO_ID_LEN);

    rc = ngx_http_realtime_sio_send(sock, NGX_HTTP_REALTIME_SIO_CONNECT, -1,
                                    data);
    json_decref(data);

    if (replay) {
        /* what it missed, in order, before anything live */
        if (rc == NGX_OK) {
            rc = ngx_http_realtime_history_send(&sock->session, replay,
                                                replay_len);

        } else {
            ngx_free(replay);
        }
    }

    return rc;
}


static ngx_int_t
ngx_http_realtime_sio_connect_error(ngx_http_realtime_eio_t *eio,
    ngx_str_t *nsp, const char *message, const char *code)
{
    json_t                   *data;
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                  "realtime: socket.io CONNECT to \"%V\" refused: %s",
                  nsp, message);

    data = code ? json_pack("{s:s, s:{s:s}}", "message", message,
                            "data", "code", code)
                : json_pack("{s:s}", "message", message);

    msg = ngx_http_realtime_sio_msg(NGX_HTTP_REALTIME_SIO_CONNECT_ERROR, nsp,
                                    -1, data, 0);
    json_decref(data);

    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_eio_send(eio, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


/*
 * realtime_jwt_key: the handshake's token serves every namespace; else
 * the CONNECT's auth.token.  NGX_DONE: refused and answered; NGX_AGAIN:
 * the CONNECT waits for realtime_jwt_key_request's keys, and goes on
 * in ngx_http_realtime_sio_connect_wake().
 */

static ngx_int_t
ngx_http_realtime_sio_auth(ngx_http_realtime_eio_t *eio, ngx_str_t *nsp,
    json_t *auth, ngx_http_realtime_jwt_conn_t **jwtp,
    ngx_http_realtime_sio_connecting_t *woken)
{
    json_t                              *token;
    ngx_int_t                            rc;
    ngx_str_t                            value;
    const char                          *reason;
    ngx_http_realtime_jwt_wait_t        *w;
    ngx_http_realtime_sio_connecting_t  *waiting;

    if (eio->jwt) {
        *jwtp = ngx_http_realtime_jwt_copy(eio->jwt, eio->log);
        return (*jwtp == NULL) ? NGX_ERROR : NGX_OK;
    }

    if (!eio->jwt_required) {
        return NGX_OK;
    }

    token = json_object_get(auth, "token");

    if (!json_is_string(token)) {
        rc = ngx_http_realtime_sio_connect_error(eio, nsp, "token is missing",
                                                 "UNAUTHORIZED");
        return (rc == NGX_OK) ? NGX_DONE : rc;
    }

    value.data = (u_char *) json_string_value(token);
    value.len = json_string_length(token);

    /* a wait of its own, for a kid the key set may bring */

    waiting = NULL;
    w = woken ? &woken->wait : NULL;

    if (woken == NULL && eio->jwt_conf->keyset) {
        waiting = ngx_calloc(sizeof(ngx_http_realtime_sio_connecting_t),
                             eio->log);
        if (waiting == NULL) {
            return NGX_ERROR;
        }

        w = &waiting->wait;
    }

    rc = ngx_http_realtime_jwt_sio_connect(eio->jwt_conf, &value, eio->log,
                                           jwtp, &reason, w);

    if (rc == NGX_AGAIN) {
        waiting->wait.wake = ngx_http_realtime_sio_connect_wake;
        waiting->wait.data = waiting;
        waiting->eio = eio;
        waiting->nsp = nsp;
        waiting->auth = json_incref(auth);
        ngx_queue_insert_tail(&eio->connecting, &waiting->link);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                       "realtime sio connect nsp:\"%V\" waits for keys",
                       nsp);
        return NGX_AGAIN;
    }

    if (waiting) {
        ngx_free(waiting);
    }

    switch (rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_HTTP_REALTIME_UNAUTHORIZED:
    case NGX_HTTP_REALTIME_EXPIRED:
        rc = ngx_http_realtime_sio_connect_error(eio, nsp, reason,
                                     (rc == NGX_HTTP_REALTIME_EXPIRED)
                                     ? "TOKEN_EXPIRED" : "UNAUTHORIZED");
        return (rc == NGX_OK) ? NGX_DONE : rc;

    default:
        return NGX_ERROR;
    }
}


/* the keys came (or timeout= passed): the CONNECT goes on */

static void
ngx_http_realtime_sio_connect_wake(ngx_http_realtime_jwt_wait_t *w)
{
    ngx_http_realtime_sio_connecting_t *waiting = w->data;

    json_t                   *auth;
    ngx_http_realtime_eio_t  *eio;

    eio = waiting->eio;
    auth = waiting->auth;

    ngx_queue_remove(&waiting->link);

    if (eio->closing) {
        json_decref(auth);

    } else if (ngx_http_realtime_sio_connect_auth(eio, waiting->nsp, auth,
                                                  waiting)
               == NGX_ERROR)
    {
        ngx_http_realtime_eio_close(eio, "internal error");
    }

    ngx_free(waiting);
}


static ngx_uint_t
ngx_http_realtime_sio_connecting(ngx_http_realtime_eio_t *eio,
    ngx_str_t *name)
{
    ngx_queue_t                         *q;
    ngx_http_realtime_sio_connecting_t  *waiting;

    for (q = ngx_queue_head(&eio->connecting);
         q != ngx_queue_sentinel(&eio->connecting);
         q = ngx_queue_next(q))
    {
        waiting = ngx_queue_data(q, ngx_http_realtime_sio_connecting_t, link);

        if (waiting->nsp == name) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_realtime_sio_event(ngx_http_realtime_sio_socket_t *sock,
    ngx_http_realtime_sio_packet_t *pkt)
{
    json_t                       *args;
    ngx_int_t                     rc;
    json_int_t                    id;
    const char                   *err;
    ngx_http_realtime_session_t  *s;

    s = &sock->session;
    id = pkt->has_id ? (json_int_t) pkt->id : -1;

    if (s->zone) {
        (void) ngx_atomic_fetch_add(
                     &s->zone->sh->slots[s->zone->slot].messages_in, 1);
    }

    /* a refusal is the ack the client waits for */
    rc = ngx_http_realtime_rate_check(s, id);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : rc;
    }

    if (ngx_http_realtime_sio_data(pkt, &args, &err) != 0) {
        return ngx_http_realtime_sio_error(s, "BAD_REQUEST", err, id);
    }

    if (pkt->attachments
        && ngx_http_realtime_sio_placeholders_check(args, pkt->attachments)
           != 0)
    {
        json_decref(args);
        return ngx_http_realtime_sio_error(s, "BAD_REQUEST",
                                           "attachments do not match the "
                                           "placeholders", id);
    }

    if (sock->eio->conf->mode == NGX_HTTP_REALTIME_SIO_ECHO) {
        rc = ngx_http_realtime_sio_echo(sock, args, id);

    } else {
        rc = ngx_http_realtime_sio_command(sock, args, id);
    }

    json_decref(args);

    return rc;
}


/* ["join", "room"] is the native {"event":"join","data":"room","id":n} */

static ngx_int_t
ngx_http_realtime_sio_command(ngx_http_realtime_sio_socket_t *sock,
    json_t *args, json_int_t id)
{
    json_t                         *root;
    ngx_int_t                       rc;
    ngx_http_realtime_cmd_t         cmd;
    ngx_http_realtime_cmd_error_t   err;

    root = json_pack("{s:O, s:O}", "event", json_array_get(args, 0),
                     "data", json_array_size(args) > 1
                             ? json_array_get(args, 1) : json_null());
    if (root == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_cmd_read(&cmd, root, &err) != 0) {
        return ngx_http_realtime_sio_error(&sock->session, err.code,
                                           err.message, id);
    }

    cmd.has_id = (id >= 0);
    cmd.id = id;

    rc = ngx_http_realtime_command(&sock->session, &cmd);

    ngx_http_realtime_cmd_free(&cmd);

    return rc;
}


/*
 * realtime_socketio_echo: "message" comes back as "message-back" and
 * "message-with-ack" is acked with its arguments, attachments included.
 */

static ngx_int_t
ngx_http_realtime_sio_echo(ngx_http_realtime_sio_socket_t *sock,
    json_t *args, json_int_t id)
{
    int                           type;
    json_t                       *event;
    ngx_int_t                     rc;
    ngx_uint_t                    i, n;
    const char                   *name;
    ngx_http_realtime_eio_t      *eio;
    ngx_http_realtime_msg_t      *msg;

    eio = sock->eio;
    event = json_array_get(args, 0);
    name = json_string_value(event);
    n = eio->nattached;

    if (ngx_strcmp(name, "message") == 0) {
        if (json_array_set_new(args, 0, json_string("message-back")) != 0) {
            return NGX_ERROR;
        }

        type = n ? NGX_HTTP_REALTIME_SIO_BINARY_EVENT
                 : NGX_HTTP_REALTIME_SIO_EVENT;
        id = -1;

    } else if (ngx_strcmp(name, "message-with-ack") == 0 && id >= 0) {
        if (json_array_remove(args, 0) != 0) {
            return NGX_ERROR;
        }

        type = n ? NGX_HTTP_REALTIME_SIO_BINARY_ACK
                 : NGX_HTTP_REALTIME_SIO_ACK;

    } else {
        return NGX_OK;
    }

    msg = ngx_http_realtime_sio_msg(type, &sock->nsp, id, args, n);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_eio_send(eio, msg);
    ngx_http_realtime_msg_release(msg);

    for (i = 0; rc == NGX_OK && i < n; i++) {
        rc = ngx_http_realtime_eio_send(eio, eio->attached[i]);
    }

    return rc;
}


static ngx_str_t *
ngx_http_realtime_sio_nsp_allowed(ngx_http_realtime_eio_t *eio,
    ngx_str_t *nsp)
{
    ngx_str_t   *names;
    ngx_uint_t   i, n;

    if (eio->conf->sio_namespaces) {
        names = eio->conf->sio_namespaces->elts;
        n = eio->conf->sio_namespaces->nelts;

    } else if (eio->conf->mode == NGX_HTTP_REALTIME_SIO_ECHO) {
        names = ngx_http_realtime_sio_echo_nsps;
        n = 2;

    } else {
        names = &ngx_http_realtime_sio_root;
        n = 1;
    }

    for (i = 0; i < n; i++) {
        if (names[i].len == nsp->len
            && ngx_strncmp(names[i].data, nsp->data, nsp->len) == 0)
        {
            return &names[i];
        }
    }

    return NULL;
}


static ngx_http_realtime_sio_socket_t *
ngx_http_realtime_sio_find(ngx_http_realtime_eio_t *eio, ngx_str_t *nsp)
{
    ngx_queue_t                     *q;
    ngx_http_realtime_sio_socket_t  *sock;

    for (q = ngx_queue_head(&eio->sockets);
         q != ngx_queue_sentinel(&eio->sockets);
         q = ngx_queue_next(q))
    {
        sock = ngx_queue_data(q, ngx_http_realtime_sio_socket_t, link);

        if (sock->nsp.len == nsp->len
            && ngx_strncmp(sock->nsp.data, nsp->data, nsp->len) == 0)
        {
            return sock;
        }
    }

    return NULL;
}


/*
 * A namespace ends: it leaves the hub at once, and its memory goes when
 * the packet being handled is done.  notify: tell the client (41).
 */

static void
ngx_http_realtime_sio_end(ngx_http_realtime_sio_socket_t *sock,
    ngx_uint_t notify)
{
    ngx_http_realtime_session_t  *s;

    if (sock->closed) {
        return;
    }

    s = &sock->session;
    sock->closed = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime sio disconnect nsp:\"%V\" notify:%ui",
                   &sock->nsp, notify);

    if (notify && sock->resume) {
        /* its CONNECT was not answered yet */
        (void) ngx_http_realtime_sio_connect_error(sock->eio, &sock->nsp,
                                                   "disconnected", NULL);

    } else if (notify) {
        (void) ngx_http_realtime_sio_send(sock,
                                          NGX_HTTP_REALTIME_SIO_DISCONNECT,
                                          -1, NULL);
    }

    if (sock->resume) {
        ngx_http_realtime_sio_resume_cancel(sock);
    }

    if (s->zone) {
        ngx_http_realtime_redis_presence_cancel(s);
        ngx_http_realtime_forward_end(s);
        ngx_http_realtime_client_close(s);
    }

    if (s->jwt) {
        ngx_http_realtime_jwt_free(s->jwt);
        s->jwt = NULL;
    }

    ngx_queue_remove(&sock->link);
    ngx_queue_insert_tail(&sock->eio->closed, &sock->link);
}


/* a packet as a WebSocket text frame: "4" + the Socket.IO packet */

static ngx_http_realtime_msg_t *
ngx_http_realtime_sio_msg(int type, ngx_str_t *nsp, json_int_t id,
    json_t *data, unsigned attachments)
{
    size_t                    len, header;
    ngx_http_realtime_msg_t  *msg;

    len = ngx_http_realtime_sio_encode(NULL, 0, type, attachments,
                                       (char *) nsp->data, nsp->len, id,
                                       data);
    if (len == 0) {
        return NULL;
    }

    header = ngx_http_realtime_frame_header_size(len + 1);

    msg = ngx_http_realtime_msg_alloc(header + len + 1);
    if (msg == NULL) {
        return NULL;
    }

    ngx_http_realtime_frame_header(msg->data, NGX_HTTP_REALTIME_OP_TEXT,
                                   len + 1);
    msg->data[header] = '4';

    (void) ngx_http_realtime_sio_encode((char *) msg->data + header + 1, len,
                                        type, attachments,
                                        (char *) nsp->data, nsp->len, id,
                                        data);

    msg->len = header + len + 1;

    return msg;
}


static ngx_int_t
ngx_http_realtime_sio_send(ngx_http_realtime_sio_socket_t *sock, int type,
    json_int_t id, json_t *data)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_sio_msg(type, &sock->nsp, id, data, 0);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_eio_send(sock->eio, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


/*
 * The Socket.IO form of a publication of the hub, made from its native
 * frame {"event": E, "data": D, ...}: 42<nsp,>[E, D].
 */

/*
 * offset_arg (realtime_socketio_recovery): a room publication with
 * history ends its arguments with its place, a string, which is what
 * Socket.IO's connection state recovery sends back: the zone's instance
 * id and the zone's sequence of it (sequences of two zones are never
 * compared); "-" for one replayed from Redis, which has none here (a
 * client that comes back with it gets a new session, see
 * ngx_http_realtime_sio_resume.c).
 */

static ngx_http_realtime_msg_t *
ngx_http_realtime_sio_derive_arg(ngx_http_realtime_msg_t *msg,
    ngx_str_t *nsp, ngx_uint_t offset_arg, u_char *instance)
{
    u_char                   *p;
    size_t                    header;
    json_t                   *root, *args;
    ngx_http_realtime_msg_t  *d;
    u_char                    offset[NGX_HTTP_REALTIME_INSTANCE_LEN
                                     + NGX_INT64_LEN];

    offset_arg = offset_arg && (msg->seq || msg->offset);

    for (d = msg->derived; d; d = d->next) {
        if (d->key.len == nsp->len && d->offset_arg == offset_arg
            && ngx_strncmp(d->key.data, nsp->data, nsp->len) == 0)
        {
            return d;
        }
    }

    /* server frames: a 2, 4 or 10 byte header, unmasked */

    p = msg->data;
    header = ngx_http_realtime_frame_header_of(p);

    root = json_loadb((char *) p + header, msg->len - header, 0, NULL);
    if (root == NULL) {
        return NULL;
    }

    args = json_pack("[O, O]", json_object_get(root, "event"),
                     json_object_get(root, "data")
                     ? json_object_get(root, "data") : json_null());
    json_decref(root);

    if (args == NULL) {
        return NULL;
    }

    if (offset_arg
        && json_array_append_new(args, msg->seq
               ? json_stringn((char *) offset,
                              ngx_sprintf(offset, "%*s%uL",
                                          (size_t)
                                              NGX_HTTP_REALTIME_INSTANCE_LEN,
                                          instance, msg->seq)
                              - offset)
               : json_string("-"))
           != 0)
    {
        json_decref(args);
        return NULL;
    }

    d = ngx_http_realtime_sio_msg(NGX_HTTP_REALTIME_SIO_EVENT, nsp, -1, args,
                                  0);
    json_decref(args);

    if (d == NULL) {
        return NULL;
    }

    d->key = *nsp;
    d->offset_arg = offset_arg;
    d->time = msg->time;
    d->next = msg->derived;
    msg->derived = d;

    return d;
}


static ngx_int_t
ngx_http_realtime_sio_deliver(ngx_http_realtime_session_t *s,
    ngx_http_realtime_msg_t *msg)
{
    ngx_http_realtime_msg_t         *d;
    ngx_http_realtime_sio_socket_t  *sock;

    sock = (ngx_http_realtime_sio_socket_t *) s;

    d = ngx_http_realtime_sio_derive_arg(msg, &sock->nsp,
                                         s->conf->sio_recovery != 0
                                         && s->zone,
                                         s->zone ? s->zone->sh->instance
                                                 : NULL);
    if (d == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "realtime: a publication could not be encoded for "
                      "socket.io");
        return NGX_ERROR;
    }

    if (sock->resume) {
        /* nothing before the CONNECT's answer */
        return ngx_http_realtime_sio_resume_hold(sock, d);
    }

    return ngx_http_realtime_eio_send(sock->eio, d);
}


/* the ack of packet "id" if it asked for one, else an event; takes "args" */

static ngx_int_t
ngx_http_realtime_sio_answer(ngx_http_realtime_session_t *s, json_int_t id,
    json_t *args)
{
    ngx_int_t  rc;

    if (args == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_sio_send((ngx_http_realtime_sio_socket_t *) s,
                                    (id >= 0) ? NGX_HTTP_REALTIME_SIO_ACK
                                              : NGX_HTTP_REALTIME_SIO_EVENT,
                                    id, args);
    json_decref(args);

    return rc;
}


/* an answer: the client's ack when it asked for one, else an event */

static ngx_int_t
ngx_http_realtime_sio_reply(ngx_http_realtime_session_t *s,
    const char *event, json_t *data, json_int_t id)
{
    json_t  *args;

    if (id >= 0) {
        args = json_pack("[O]", data ? data : json_null());

    } else {
        args = json_pack("[s, O]", event, data ? data : json_null());
    }

    return ngx_http_realtime_sio_answer(s, id, args);
}


/* an error: {"error": {code, message}} in the ack, else an "error" event */

static ngx_int_t
ngx_http_realtime_sio_error(ngx_http_realtime_session_t *s, const char *code,
    const char *message, json_int_t id)
{
    json_t  *args;

    if (id >= 0) {
        args = json_pack("[{s:{s:s, s:s}}]", "error", "code", code,
                         "message", message);

    } else {
        args = json_pack("[s, {s:s, s:s}]", "error", "code", code,
                         "message", message);
    }

    return ngx_http_realtime_sio_answer(s, id, args);
}


/* the native close codes (4001-4003, 1008) end the namespace: 41 */

static void
ngx_http_realtime_sio_close(ngx_http_realtime_session_t *s, ngx_uint_t code,
    char *reason)
{
    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "realtime: socket.io namespace disconnected (%ui: %s)",
                  code, reason ? reason : "");

    ngx_http_realtime_sio_end((ngx_http_realtime_sio_socket_t *) s, 1);
}


static void
ngx_http_realtime_sio_deadline(ngx_http_realtime_session_t *s)
{
    ngx_http_realtime_eio_deadline(((ngx_http_realtime_sio_socket_t *) s)
                                   ->eio);
}


char *
ngx_http_realtime_sio_transports(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (rlcf->sio_transports != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    rlcf->sio_transports = 0;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 7 && ngx_strcmp(value[i].data, "polling") == 0) {
            rlcf->sio_transports |= NGX_HTTP_REALTIME_SIO_POLLING;

        } else if (value[i].len == 9
                   && ngx_strcmp(value[i].data, "websocket") == 0)
        {
            rlcf->sio_transports |= NGX_HTTP_REALTIME_SIO_WEBSOCKET;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid transport \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_http_realtime_sio_namespaces(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i;

    if (rlcf->sio_namespaces != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    rlcf->sio_namespaces = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                            sizeof(ngx_str_t));
    if (rlcf->sio_namespaces == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0 || value[i].data[0] != '/'
            || value[i].len > NGX_HTTP_REALTIME_SIO_NSP_MAX
            || ngx_strlchr(value[i].data, value[i].data + value[i].len, ',')
            || ngx_strlchr(value[i].data, value[i].data + value[i].len, '?'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid namespace \"%V\": it starts with "
                               "\"/\" and has no \",\" or \"?\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(rlcf->sio_namespaces);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = value[i];
    }

    return NGX_CONF_OK;
}


/* realtime_engineio_echo: every message back, text or binary */
const ngx_http_realtime_eio_handler_t  ngx_http_realtime_eio_echo_protocol = {
    ngx_http_realtime_eio_echo_message,
    ngx_http_realtime_eio_echo_binary,
    ngx_http_realtime_eio_echo_deadline,
    ngx_http_realtime_eio_echo_closed
};


static ngx_int_t
ngx_http_realtime_eio_echo_message(ngx_http_realtime_eio_t *eio,
    u_char *data, size_t len)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_msg_alloc(ngx_http_realtime_frame_header_size(
                                          len + 1)
                                      + len + 1);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    msg->len = ngx_http_realtime_frame_header(msg->data,
                                              NGX_HTTP_REALTIME_OP_TEXT,
                                              len + 1);
    msg->data[msg->len++] = '4';
    msg->len = ngx_cpymem(msg->data + msg->len, data, len) - msg->data;

    rc = ngx_http_realtime_eio_send(eio, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


static ngx_int_t
ngx_http_realtime_eio_echo_binary(ngx_http_realtime_eio_t *eio, u_char *data,
    size_t len)
{
    return ngx_http_realtime_eio_send_frame(eio, NGX_HTTP_REALTIME_OP_BINARY,
                                            data, len);
}


static ngx_msec_t
ngx_http_realtime_eio_echo_deadline(ngx_http_realtime_eio_t *eio)
{
    return NGX_TIMER_INFINITE;
}


static void
ngx_http_realtime_eio_echo_closed(ngx_http_realtime_eio_t *eio)
{
    if (eio->jwt) {
        ngx_http_realtime_jwt_free(eio->jwt);
        eio->jwt = NULL;
    }
}
