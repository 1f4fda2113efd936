
/*
 * Copyright (C) ngx-realtime developers
 *
 * An Engine.IO v4 session: its sid, its transport (a WebSocket here,
 * HTTP long-polling, or a WebSocket relayed by another worker), its
 * heartbeat, and the protocol on top (Socket.IO, or the echo of the
 * Engine.IO test suite) reached through the handler installed at its
 * creation.  See ngx_http_realtime_eio_session.c.
 */


#ifndef _NGX_HTTP_REALTIME_EIO_SESSION_H_INCLUDED_
#define _NGX_HTTP_REALTIME_EIO_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_jwt.h"
#include "ngx_http_realtime_eio.h"


/* <slot: 2 hex><worker id: 8 hex><120 random bits: 20 base64url> */
#define NGX_HTTP_REALTIME_EIO_SID_LEN   30
#define NGX_HTTP_REALTIME_EIO_RANDOM    20


/* what the protocol on top does for the session */
typedef struct {
    /* a text message (the data of a "4" packet), and a binary one */
    ngx_int_t   (*message)(ngx_http_realtime_eio_t *eio, u_char *data,
                           size_t len);
    ngx_int_t   (*binary)(ngx_http_realtime_eio_t *eio, u_char *data,
                          size_t len);

    /* ends what expired; returns the next deadline, or INFINITE */
    ngx_msec_t  (*deadline)(ngx_http_realtime_eio_t *eio);

    /* the session ends: free the protocol's state */
    void        (*closed)(ngx_http_realtime_eio_t *eio);
} ngx_http_realtime_eio_handler_t;


/* the polling side of a session that began with a polling handshake */
typedef struct {
    ngx_str_node_t                     sn;        /* by sid, this worker's */
    ngx_http_realtime_eio_t           *eio;
    ngx_event_t                        timer;     /* heartbeat, expiry */
    ngx_event_t                        flush;     /* posted: answer GET */
    ngx_event_t                        noop;      /* timer: GET in upgrade */

    /* packets for the next GET, as frames */
    ngx_http_realtime_msg_t          **out;
    ngx_uint_t                         nout;
    ngx_uint_t                         out_size;
    size_t                             out_bytes;

    ngx_http_realtime_eio_addr_t       get;       /* the held GET */
    ngx_msec_t                         last_get;

    /* an upgrade: a WebSocket of this worker, or one relayed */
    ngx_http_realtime_conn_t          *probe;
    ngx_http_realtime_eio_addr_t       remote;

    unsigned                           get_held:1;
    unsigned                           probed:1;     /* 3probe is out */
    unsigned                           remote_probe:1;
    unsigned                           remote_active:1;
} ngx_http_realtime_eio_poll_t;


struct ngx_http_realtime_eio_s {
    const ngx_http_realtime_eio_handler_t  *handler;
    ngx_http_realtime_loc_conf_t      *conf;
    ngx_log_t                         *log;
    ngx_http_realtime_zone_t          *zone;      /* its IPC */

    ngx_http_realtime_conn_t          *ws;        /* the WebSocket */
    ngx_http_realtime_eio_poll_t      *poll;      /* NULL: WebSocket only */

    ngx_msec_t                         last_ping;

    /* Socket.IO (ngx_http_realtime_sio.c): the namespaces' sockets */
    ngx_queue_t                        sockets;
    ngx_queue_t                        closed;    /* freed between packets */
    ngx_queue_t                        connecting; /* waiting for keys */

    /* a token of the handshake request, or one due at CONNECT */
    ngx_http_realtime_jwt_conn_t      *jwt;
    ngx_http_realtime_jwt_conf_t      *jwt_conf;
    ngx_str_t                          user;      /* realtime_user's value */

    /* realtime_forward: the handshake, for the namespaces' sessions */
    ngx_http_realtime_handshake_copy_t *handshake;

    /* a BINARY_EVENT or BINARY_ACK waiting for its attachments */
    u_char                            *binary;
    size_t                             binary_len;
    ngx_uint_t                         attachments;
    ngx_uint_t                         nattached;
    ngx_http_realtime_msg_t          **attached;

    u_char                             sid[NGX_HTTP_REALTIME_EIO_SID_LEN];

    unsigned                           pong_wait:1;
    unsigned                           jwt_required:1;
    unsigned                           closing:1;
    unsigned                           client_closed:1;
};


/* 15 random bytes, base64url: 120 bits */
#define NGX_HTTP_REALTIME_SIO_ID_LEN   20
/* realtime_socketio_recovery: the private session id, 96 bits */
#define NGX_HTTP_REALTIME_SIO_PID_LEN  16


typedef struct ngx_http_realtime_sio_resume_s  ngx_http_realtime_sio_resume_t;

/*
 * What ngx_http_realtime_sio.c gives the resume to go on with (so that
 * the resume never names it): the CONNECT's socket once Redis answered,
 * and the CONNECT's answer once the rooms are read
 */
typedef ngx_int_t (*ngx_http_realtime_sio_socket_pt)(
    ngx_http_realtime_eio_t *eio, ngx_str_t *name, json_t *auth,
    ngx_http_realtime_jwt_conn_t *jwt, json_t *kept);


/* a namespace of an Engine.IO session: a session of the hub */
typedef struct {
    ngx_http_realtime_session_t        session;
    ngx_queue_t                        link;      /* in eio->sockets */
    ngx_http_realtime_eio_t           *eio;
    ngx_str_t                          nsp;       /* the configuration's */
    u_char                             id[NGX_HTTP_REALTIME_SIO_ID_LEN];
    u_char                             pid[NGX_HTTP_REALTIME_SIO_PID_LEN];
    ngx_http_realtime_sio_resume_t    *resume;    /* its CONNECT waits */
    unsigned                           closed:1;
    unsigned                           has_pid:1;
} ngx_http_realtime_sio_socket_t;


/*
 * A namespace CONNECT waiting for realtime_jwt_key_request's keys, or
 * (taking) for the session Redis kept
 */
typedef struct {
    ngx_http_realtime_jwt_wait_t       wait;
    ngx_queue_t                        link;      /* in eio->connecting */
    ngx_http_realtime_eio_t           *eio;       /* NULL: it went */
    ngx_str_t                         *nsp;       /* the configuration's */
    json_t                            *auth;
    ngx_http_realtime_jwt_conn_t      *jwt;       /* taking: verified */
    ngx_http_realtime_zone_t          *zone;      /* taking: from it */
    ngx_http_realtime_sio_socket_pt    socket;    /* taking: then */
    ngx_msec_t                         ttl;
    u_char                             pid[NGX_HTTP_REALTIME_SIO_PID_LEN];
    unsigned                           taking:1;
} ngx_http_realtime_sio_connecting_t;


typedef ngx_int_t (*ngx_http_realtime_sio_answer_pt)(
    ngx_http_realtime_sio_socket_t *sock, u_char *replay, size_t len);


/* ngx_http_realtime_sio_recovery.c */
void ngx_http_realtime_sio_recovery_save(ngx_http_realtime_sio_socket_t *sock);
ngx_int_t ngx_http_realtime_sio_recovery_restore(
    ngx_http_realtime_sio_socket_t *sock, json_t *auth, u_char **replay,
    size_t *len);
void ngx_http_realtime_sio_recovery_new(ngx_http_realtime_sio_socket_t *sock);
ngx_uint_t ngx_http_realtime_sio_recovery_kept(
    ngx_http_realtime_local_member_t *lm);
uint64_t ngx_http_realtime_sio_recovery_seq(json_t *offset,
    u_char *instance);
ngx_int_t ngx_http_realtime_sio_recovery_sort(u_char **replay, size_t len);

/* ngx_http_realtime_sio_resume.c: the same with realtime_redis */
void ngx_http_realtime_sio_resume_keep(ngx_http_realtime_sio_socket_t *sock);
ngx_int_t ngx_http_realtime_sio_resume(ngx_http_realtime_sio_socket_t *sock,
    json_t *auth, json_t *kept, u_char **replay, size_t *len,
    ngx_http_realtime_sio_answer_pt answer);
void ngx_http_realtime_sio_resume_cancel(
    ngx_http_realtime_sio_socket_t *sock);
ngx_int_t ngx_http_realtime_sio_resume_hold(
    ngx_http_realtime_sio_socket_t *sock, ngx_http_realtime_msg_t *msg);
void ngx_http_realtime_sio_resume_keep_again(
    ngx_http_realtime_sio_socket_t *sock);

ngx_int_t ngx_http_realtime_sio_resume_take(ngx_http_realtime_eio_t *eio,
    ngx_str_t *name, json_t *auth, ngx_http_realtime_jwt_conn_t *jwt,
    ngx_http_realtime_sio_socket_pt socket);


ngx_int_t ngx_http_realtime_eio_send(ngx_http_realtime_eio_t *eio,
    ngx_http_realtime_msg_t *msg);
ngx_int_t ngx_http_realtime_eio_send_frame(ngx_http_realtime_eio_t *eio,
    ngx_uint_t opcode, u_char *data, size_t len);
void ngx_http_realtime_eio_close(ngx_http_realtime_eio_t *eio, char *reason);
void ngx_http_realtime_eio_deadline(ngx_http_realtime_eio_t *eio);

extern const ngx_http_realtime_eio_handler_t  ngx_http_realtime_sio_protocol;
extern const ngx_http_realtime_eio_handler_t
    ngx_http_realtime_eio_echo_protocol;


#endif /* _NGX_HTTP_REALTIME_EIO_SESSION_H_INCLUDED_ */
