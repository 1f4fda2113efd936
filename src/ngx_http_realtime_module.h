
/*
 * Copyright (C) ngx-realtime developers
 */


#ifndef _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_
#define _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_realtime_frame.h"
#include "ngx_http_realtime_protocol.h"
#include "ngx_http_realtime_room.h"


#define NGX_HTTP_REALTIME_OFF            0
#define NGX_HTTP_REALTIME_ROOMS          1
#define NGX_HTTP_REALTIME_ECHO           2
/* Engine.IO v4 + Socket.IO v5, and the two endpoints of their suites */
#define NGX_HTTP_REALTIME_SIO            3
#define NGX_HTTP_REALTIME_SIO_ECHO       4
#define NGX_HTTP_REALTIME_EIO_ECHO       5

/* realtime_socketio_transports */
#define NGX_HTTP_REALTIME_SIO_POLLING    0x01
#define NGX_HTTP_REALTIME_SIO_WEBSOCKET  0x02

/* how long a closing handshake may take before TCP is dropped */
#define NGX_HTTP_REALTIME_CLOSE_TIMEOUT  3000

/* frames kept in the connection itself before the queue moves to heap */
#define NGX_HTTP_REALTIME_OUT_INLINE     4

/* realtime_timestamp: the ISO 8601 time with milliseconds, and a NUL */
#define NGX_HTTP_REALTIME_TIMESTAMP_LEN  sizeof("1970-01-01T00:00:00.000Z")

/* user ids travel in 16-bit lengths between workers */
#define NGX_HTTP_REALTIME_USER_MAX       256

/* results of the room operations, besides NGX_OK and NGX_ERROR */
#define NGX_HTTP_REALTIME_ZONE_FULL      -100
#define NGX_HTTP_REALTIME_LIMIT          -101
#define NGX_HTTP_REALTIME_QUEUE_FULL     -102
#define NGX_HTTP_REALTIME_NOT_FOUND      -103

/* results of JWT checks */
#define NGX_HTTP_REALTIME_UNAUTHORIZED   -110
#define NGX_HTTP_REALTIME_EXPIRED        -111
#define NGX_HTTP_REALTIME_FORBIDDEN      -112

/* close codes of the JWT issue, in the 4000-4999 private range */
#define NGX_HTTP_REALTIME_CLOSE_UNAUTHORIZED   4001
#define NGX_HTTP_REALTIME_CLOSE_TOKEN_EXPIRED  4002
#define NGX_HTTP_REALTIME_CLOSE_FORBIDDEN      4003


typedef struct ngx_http_realtime_jwt_conn_s  ngx_http_realtime_jwt_conn_t;
typedef struct ngx_http_realtime_jwt_wait_s  ngx_http_realtime_jwt_wait_t;

/* the answer to a "refresh" that waited for its token's key */
typedef ngx_int_t (*ngx_http_realtime_jwt_refreshed_pt)(
    ngx_http_realtime_session_t *s, ngx_int_t rc, time_t exp,
    const char *reason, json_int_t id);


typedef struct {
    ngx_array_t                        zones;    /* realtime_zone_t * */
    ngx_uint_t                         forward_worker_max;
} ngx_http_realtime_main_conf_t;


typedef struct {
    ngx_str_t                          value;
#if (NGX_PCRE)
    ngx_regex_t                       *regex;
#endif
    unsigned                           any:1;
} ngx_http_realtime_origin_t;


/*
 * What a forward's location sees of the handshake request, in one block
 * (ngx_http_realtime_forward_fake.c).
 */
typedef struct {
    size_t                             size;     /* of the block */
    ngx_table_elt_t                   *headers;
    ngx_uint_t                         nheaders;
    struct sockaddr                   *sockaddr;
    socklen_t                          socklen;
    ngx_str_t                          args;
    ngx_str_t                          server;
    ngx_str_t                          addr_text;
} ngx_http_realtime_handshake_copy_t;


/* a realtime_forward route, or a connect/disconnect hook */
typedef struct {
    ngx_str_t                          event;    /* "*": any unknown */
    ngx_str_t                          uri;
    ngx_msec_t                         timeout;
    unsigned                           unordered:1;

    /* this worker's pointer to the route's counters in a zone */
    ngx_http_realtime_zone_t          *metric_zone;
    ngx_http_realtime_forward_route_sh_t  *metric;
} ngx_http_realtime_route_forward_t;


typedef struct {
    ngx_uint_t                         mode;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_complex_value_t          *user;
    ngx_flag_t                         presence;
    ngx_flag_t                         timestamp;
    ngx_flag_t                         client_publish;
    ngx_uint_t                         max_rooms;
    ngx_uint_t                         max_user_connections;
    ngx_uint_t                         rate;     /* messages per 1000 s */
    ngx_uint_t                         burst;    /* messages * 1000 */
    ngx_str_t                          push_secret;
    ngx_uint_t                         push_backlog;  /* records */
    ngx_flag_t                         json_errors;
    ngx_flag_t                         status_strict;
    ngx_array_t                       *subprotocols;  /* ngx_str_t */
    ngx_array_t                       *origins;  /* realtime_origin_t */
    size_t                             max_message_size;
    size_t                             send_buffer;
    ngx_flag_t                         deflate;
    ngx_int_t                          deflate_level;
    size_t                             deflate_min_length;
    ngx_msec_t                         ping_interval;
    ngx_msec_t                         idle_timeout;

    /* realtime_socketio_* */
    ngx_uint_t                         sio_transports;
    ngx_msec_t                         sio_ping_interval;
    ngx_msec_t                         sio_ping_timeout;
    size_t                             sio_max_payload;
    ngx_array_t                       *sio_namespaces;  /* ngx_str_t */
    ngx_msec_t                         sio_recovery;    /* 0: off */

    /* realtime_identify, realtime_connection_id */
    ngx_str_t                          identify_event;
    ngx_str_t                          conn_id_event;
    ngx_str_t                          conn_id_answer;

    /* realtime_user_list */
    ngx_str_t                          user_list_event;
    ngx_msec_t                         user_list_interval;

    /* realtime_route, realtime_join_on_connect */
    ngx_array_t                       *routes;
    ngx_array_t                       *join_on_connect;   /* join_t */

    /* realtime_history */
    ngx_uint_t                         history_max;
    ngx_msec_t                         history_ttl;

    /* realtime_forward: routes, and the location they are sent from */
    ngx_array_t                       *forwards;
    ngx_http_realtime_route_forward_t *connect_hook;
    ngx_http_realtime_route_forward_t *disconnect_hook;
    void                              *forward_ctx;  /* http_conf_ctx_t */
    ngx_uint_t                         forward_max;
} ngx_http_realtime_loc_conf_t;


/*
 * A frame encoded once and shared by every connection that sends it;
 * server frames are unmasked, so the bytes are the same for all.
 */


/*
 * Told when Redis has run a publication to a room with history (its
 * offset given, kept, published): the push API answers then, so that
 * pushes answered one after the other keep their order.  armed: it will
 * be called (NGX_OK, or NGX_ERROR if the publication is lost).
 */

typedef void (*ngx_http_realtime_published_pt)(void *data, ngx_int_t rc);

struct ngx_http_realtime_published_s {
    ngx_http_realtime_published_pt     handler;
    void                              *data;
    unsigned                           armed:1;
};

struct ngx_http_realtime_msg_s {
    ngx_uint_t                         refs;
    size_t                             len;
    size_t                             size;
    ngx_http_realtime_msg_t           *next;      /* free list, siblings */
    u_char                            *data;
    unsigned                           persistent:1;

    /*
     * The same publication encoded for another protocol, made by the
     * first receiver that needs it and shared by the rest: a list by
     * next, each keyed (a Socket.IO namespace), freed with this one.
     */
    ngx_http_realtime_msg_t           *derived;
    ngx_str_t                          key;

    /*
     * realtime_history: the room publication's offset (0: none), where
     * the frame leaves room for it, and the connection id of a socket
     * that is not to get it (0: none)
     */
    uint64_t                           offset;
    uint64_t                           seq;       /* the zone's, too */
    u_char                            *mark;
    uint64_t                           skip;

    /* when it was published here (ngx_current_msec), 0: not a publication */
    ngx_msec_t                         time;

    /* a Socket.IO form with the offset as its last argument */
    unsigned                           offset_arg:1;
};


/*
 * A session: what the hub knows of a client, whatever its protocol and
 * transport.  The hub (ngx_http_realtime_room.c), the commands
 * (ngx_http_realtime_events.c), JWT and Redis presence work on sessions
 * and reach the client only through the handler its adapter installed:
 * the native protocol on a WebSocket connection (conn_t embeds its
 * session), or a Socket.IO namespace (ngx_http_realtime_sio.c).
 */
typedef struct {
    /* a publication of the hub, as the native text frame */
    ngx_int_t  (*deliver)(ngx_http_realtime_session_t *s,
                          ngx_http_realtime_msg_t *msg);

    /* the answer to a command; id < 0: the client asked for none */
    ngx_int_t  (*reply)(ngx_http_realtime_session_t *s, const char *event,
                        json_t *data, json_int_t id);
    ngx_int_t  (*error)(ngx_http_realtime_session_t *s, const char *code,
                        const char *message, json_int_t id);

    /* ends the session, with a close code of the native protocol */
    void       (*close)(ngx_http_realtime_session_t *s, ngx_uint_t code,
                        char *reason);

    /* the token's deadline moved: a refresh */
    void       (*deadline)(ngx_http_realtime_session_t *s);
} ngx_http_realtime_session_handler_t;


struct ngx_http_realtime_session_s {
    const ngx_http_realtime_session_handler_t  *handler;
    ngx_log_t                         *log;
    ngx_http_realtime_loc_conf_t      *conf;

    /* rooms: see ngx_http_realtime_room.c */
    ngx_http_realtime_zone_t          *zone;
    ngx_str_t                          user;
    ngx_str_t                          id;
    u_char                             id_data[NGX_INT64_LEN];
    ngx_http_realtime_sh_conn_t       *sh_conn;
    ngx_http_realtime_local_user_t    *local_user;
    ngx_queue_t                        user_link;
    ngx_queue_t                        zone_link;
    ngx_queue_t                        rooms;        /* local_member_t */
    ngx_queue_t                        lookups;      /* Redis questions */
    ngx_uint_t                         nrooms;

    /* realtime_jwt_key: the token's user, exp and rooms; NULL: no JWT */
    ngx_http_realtime_jwt_conn_t      *jwt;

    /* realtime_forward: the handshake as the backends see it, and the
     * metadata their replies set */
    ngx_http_realtime_handshake_copy_t *handshake;
    json_t                            *meta;

    /* realtime_rate_limit: a leaky bucket as in limit_req */
    ngx_msec_t                         rate_last;
    ngx_uint_t                         rate_excess;
    ngx_uint_t                         rate_strikes;
    unsigned                           rate_started:1;
    unsigned                           routed:1;     /* connect hook sent */
};


typedef struct ngx_http_realtime_conn_s  ngx_http_realtime_conn_t;

/* the protocol spoken on a WebSocket connection, installed at handshake */
typedef struct {
    /* what to allocate for the connection; open: NULL for the native */
    size_t       size;
    ngx_int_t  (*open)(ngx_http_request_t *r, ngx_http_realtime_conn_t *ws);
    ngx_int_t  (*message)(ngx_http_realtime_conn_t *ws, ngx_uint_t opcode,
                          u_char *data, size_t len);
    void       (*liveness)(ngx_http_realtime_conn_t *ws);
    void       (*release)(ngx_http_realtime_conn_t *ws);
} ngx_http_realtime_adapter_t;


/* a WebSocket connection: the transport, and the native session */
struct ngx_http_realtime_conn_s {
    ngx_connection_t                  *connection;
    ngx_http_realtime_loc_conf_t      *conf;
    const ngx_http_realtime_adapter_t *adapter;

    ngx_http_realtime_frame_parser_t   parser;

    /* a message that arrived in more than one piece */
    u_char                            *message;
    size_t                             message_len;
    size_t                             message_size;
    ngx_uint_t                         message_opcode;

    /* outgoing frames: a ring of shared buffers */
    ngx_http_realtime_msg_t          **out;
    ngx_uint_t                         out_head;
    ngx_uint_t                         out_count;
    ngx_uint_t                         out_size;
    size_t                             out_offset;
    size_t                             out_bytes;
    ngx_http_realtime_msg_t           *out_inline[NGX_HTTP_REALTIME_OUT_INLINE];

    ngx_msec_t                         last_in;
    ngx_msec_t                         last_ping;

    ngx_str_t                          subprotocol;

    ngx_http_realtime_session_t        session;

    unsigned                           upgraded:1;
    unsigned                           header_queued:1;  /* the 101 */
    unsigned                           close_sent:1;
    unsigned                           close_received:1;
    unsigned                           lingering:1;

    /* realtime_deflate: negotiated, with the window of what is sent */
    unsigned                           deflate:1;
    unsigned                           deflate_bits:4;
};


/* a request's context in this module */
typedef struct {
    ngx_http_realtime_conn_t          *ws;     /* the handshake's socket */
    ngx_buf_t                         *error;  /* JSON for nginx's error */
    ngx_uint_t                         error_sent;
    json_t                            *jwt_claims;  /* a verified token's */
} ngx_http_realtime_ctx_t;


/* ngx_http_realtime_websocket.c */
ngx_int_t ngx_http_realtime_handshake(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf);
ngx_int_t ngx_http_realtime_check_origin(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *origin);

/* ngx_http_realtime_conn.c */
void ngx_http_realtime_upgrade(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws);
ngx_int_t ngx_http_realtime_queue_header(ngx_http_realtime_conn_t *ws,
    ngx_chain_t *out);
ngx_int_t ngx_http_realtime_send(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg);
ngx_int_t ngx_http_realtime_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);

void ngx_http_realtime_close(ngx_http_realtime_conn_t *ws, ngx_uint_t code,
    char *reason);
void ngx_http_realtime_release(ngx_http_realtime_conn_t *ws);
void ngx_http_realtime_liveness(ngx_http_realtime_conn_t *ws);
void ngx_http_realtime_abort(ngx_http_realtime_conn_t *ws);

extern const ngx_http_realtime_adapter_t  ngx_http_realtime_echo_adapter;

ngx_http_realtime_msg_t *ngx_http_realtime_msg_frame(ngx_uint_t opcode,
    u_char *payload, size_t len);
ngx_http_realtime_msg_t *ngx_http_realtime_msg_alloc(size_t size);
void ngx_http_realtime_msg_release(ngx_http_realtime_msg_t *msg);

/* ngx_http_realtime_conn_deflate.c: realtime_deflate */
ngx_int_t ngx_http_realtime_deflate_negotiate(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws, ngx_str_t *answer);
ngx_int_t ngx_http_realtime_deflate_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
ngx_http_realtime_msg_t *ngx_http_realtime_deflate_frame(
    ngx_http_realtime_conn_t *ws, ngx_http_realtime_msg_t *msg);
void ngx_http_realtime_deflate_exit_process(void);

/* ngx_http_realtime_room.c */
char *ngx_http_realtime_zone_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_realtime_zone_t *ngx_http_realtime_zone_add(ngx_conf_t *cf,
    ngx_str_t *name, size_t size);
ngx_http_realtime_zone_t **ngx_http_realtime_zones(ngx_cycle_t *cycle,
    ngx_uint_t *n);
ngx_int_t ngx_http_realtime_zone_init_process(ngx_cycle_t *cycle);
void ngx_http_realtime_zone_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_room_connect(ngx_http_realtime_session_t *s);
void ngx_http_realtime_room_disconnect(ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_room_identify(ngx_http_realtime_session_t *s,
    ngx_str_t *name);
uint64_t ngx_http_realtime_room_user_conn(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name);
ngx_int_t ngx_http_realtime_room_join_at(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_uint_t *members, ngx_uint_t *first,
    ngx_http_realtime_history_pos_t *pos);
ngx_int_t ngx_http_realtime_room_join(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_uint_t *members, ngx_uint_t *first);
ngx_http_realtime_local_member_t *ngx_http_realtime_local_find(
    ngx_http_realtime_session_t *s, ngx_str_t *room);
ngx_uint_t ngx_http_realtime_room_user_list(ngx_str_t *room);
ngx_int_t ngx_http_realtime_room_leave(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_uint_t *members, ngx_uint_t *last);
json_t *ngx_http_realtime_room_presence(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room);
ngx_int_t ngx_http_realtime_publish(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_uint_t *recipients);
ngx_int_t ngx_http_realtime_publish_synced(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_uint_t *recipients, ngx_int_t *synced,
    ngx_http_realtime_published_t *wait);
ngx_uint_t ngx_http_realtime_deliver(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg);

ngx_int_t ngx_http_realtime_publish_zone(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_uint_t *recipients);
ngx_int_t ngx_http_realtime_publish_zone_at(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_history_pos_t *at);

/* ngx_http_realtime_redis.c */
typedef void (*ngx_http_realtime_redis_lookup_pt)(void *data, json_t *users,
    ngx_uint_t sockets, ngx_int_t rc);

ngx_int_t ngx_http_realtime_redis_presence_query(ngx_http_realtime_session_t *s,
    ngx_str_t *room, json_t *users, json_int_t id);
void ngx_http_realtime_redis_presence_cancel(ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_redis_lookup(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *name, ngx_http_realtime_redis_lookup_pt handler,
    void *data);
char *ngx_http_realtime_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_realtime_redis_init_process(ngx_http_realtime_zone_t *zone,
    ngx_cycle_t *cycle);
void ngx_http_realtime_redis_exit_process(ngx_http_realtime_zone_t *zone);
void ngx_http_realtime_redis_room(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_uint_t subscribe);
ngx_int_t ngx_http_realtime_redis_history_read(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_history_read_t *hr);

/* ngx_http_realtime_redis_session.c */
typedef void (*ngx_http_realtime_redis_take_pt)(void *data, u_char *rec,
    size_t len, ngx_int_t rc);

ngx_int_t ngx_http_realtime_redis_session_keep(ngx_http_realtime_zone_t *zone,
    ngx_str_t *pid, u_char *rec, size_t len, ngx_msec_t ttl);
ngx_int_t ngx_http_realtime_redis_session_take(ngx_http_realtime_zone_t *zone,
    ngx_str_t *pid, ngx_http_realtime_redis_take_pt handler, void *data);

ngx_int_t ngx_http_realtime_redis_session_base(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm);

ngx_int_t ngx_http_realtime_redis_publish(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_published_t *wait);

void ngx_http_realtime_redis_notify_locked(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except);
void ngx_http_realtime_redis_wake(ngx_http_realtime_zone_t *zone);
void ngx_http_realtime_redis_presence_changed(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except);

/* ngx_http_realtime_ipc.c, record types besides the NGX_HTTP_REALTIME_TO_* */
#define NGX_HTTP_REALTIME_IPC_SUBSCRIBE    10
#define NGX_HTTP_REALTIME_IPC_UNSUBSCRIBE  11
#define NGX_HTTP_REALTIME_IPC_USER         12  /* a user's sockets */
#define NGX_HTTP_REALTIME_IPC_MEMBER       13  /* a user's in a room */

/* ngx_http_realtime_redis_lookup() only: every online user of the zone */
#define NGX_HTTP_REALTIME_LOOKUP_ONLINE    14

/* from here on, through ngx_http_realtime_ipc_handlers[type - HANDLED] */
#define NGX_HTTP_REALTIME_IPC_HANDLED      20
#define NGX_HTTP_REALTIME_IPC_EIO          20  /* to a session's owner */
#define NGX_HTTP_REALTIME_IPC_EIO_REPLY    21  /* to a held request */
#define NGX_HTTP_REALTIME_IPC_EIO_WS       22  /* to a relayed WebSocket */
#define NGX_HTTP_REALTIME_IPC_NHANDLERS    3

typedef void (*ngx_http_realtime_ipc_handler_pt)(
    ngx_http_realtime_zone_t *zone, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg);

extern ngx_http_realtime_ipc_handler_pt
    ngx_http_realtime_ipc_handlers[NGX_HTTP_REALTIME_IPC_NHANDLERS];

extern ngx_http_realtime_msg_t  ngx_http_realtime_msg_empty;

/* realtime_push_backlog: publications a worker may be behind by */
#define NGX_HTTP_REALTIME_PUSH_BACKLOG      16
#define NGX_HTTP_REALTIME_PUSH_BACKLOG_OFF  65536   /* above the limit */

/*
 * A push API answer held until the queues of the workers that had
 * records pending when it published are drained past them (ipc.c).
 */
typedef struct ngx_http_realtime_ipc_flow_s  ngx_http_realtime_ipc_flow_t;

typedef void (*ngx_http_realtime_ipc_flow_pt)(
    ngx_http_realtime_ipc_flow_t *flow);

struct ngx_http_realtime_ipc_flow_s {
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_ipc_flow_pt      handler;
    void                              *data;
    ngx_queue_t                        queue;
    ngx_event_t                        timer;
    uint64_t                           slots;   /* a bit per slot waited */
    uint64_t                           ticket[NGX_HTTP_REALTIME_SLOTS];
    uint32_t                           id[NGX_HTTP_REALTIME_SLOTS];
    unsigned                           waiting:1;
};

ngx_int_t ngx_http_realtime_ipc_init_process(ngx_cycle_t *cycle);
void ngx_http_realtime_ipc_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_ipc_post_locked(ngx_http_realtime_zone_t *zone,
    ngx_uint_t slot, ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_uint_t weight);
ngx_int_t ngx_http_realtime_ipc_send(ngx_http_realtime_zone_t *zone,
    ngx_uint_t slot, uint32_t id, ngx_uint_t type, ngx_str_t *target,
    ngx_str_t *except, u_char *data, size_t len);
void ngx_http_realtime_ipc_wake(ngx_pid_t pid, uint32_t id);
uint32_t ngx_http_realtime_ipc_worker_id(void);
ngx_int_t ngx_http_realtime_ipc_flow_wait(ngx_http_realtime_ipc_flow_t *flow,
    ngx_uint_t backlog, ngx_log_t *log);
void ngx_http_realtime_ipc_flow_cancel(ngx_http_realtime_ipc_flow_t *flow);
ngx_uint_t ngx_http_realtime_ipc_flow_waiters_locked(
    ngx_http_realtime_zone_t *zone, ngx_uint_t slot, ngx_pid_t *pid,
    uint32_t *id);

/* ngx_http_realtime_events.c */
ngx_int_t ngx_http_realtime_client_open(ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_client_message(ngx_http_realtime_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len);
ngx_int_t ngx_http_realtime_command(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
ngx_int_t ngx_http_realtime_rate_check(ngx_http_realtime_session_t *s,
    json_int_t id);
void ngx_http_realtime_client_close(ngx_http_realtime_session_t *s);
void ngx_http_realtime_presence_event(ngx_http_realtime_session_t *s,
    const char *event, ngx_str_t *room);
ngx_http_realtime_msg_t *ngx_http_realtime_msg_json(json_t *json);
void ngx_http_realtime_stamp(ngx_uint_t on, json_t *json);
u_char *ngx_http_realtime_timestamp(u_char *buf);

extern const ngx_http_realtime_session_handler_t
    ngx_http_realtime_native_handler;
extern const ngx_http_realtime_adapter_t  ngx_http_realtime_native_adapter;

/* ngx_http_realtime_push.c, ngx_http_realtime_status.c */
ngx_int_t ngx_http_realtime_push_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_realtime_send_json_response(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json);
ngx_int_t ngx_http_realtime_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_realtime_metrics_handler(ngx_http_request_t *r);

/* ngx_http_realtime_jwt.c */
ngx_int_t ngx_http_realtime_jwt_handshake(ngx_http_request_t *r,
    ngx_http_realtime_ctx_t *ctx, ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_jwt_push(ngx_http_request_t *r);
void ngx_http_realtime_jwt_upgraded(ngx_http_realtime_conn_t *ws);
ngx_msec_t ngx_http_realtime_jwt_ttl(ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_jwt_room_allowed(ngx_http_realtime_session_t *s,
    ngx_str_t *room);
ngx_int_t ngx_http_realtime_jwt_refresh(ngx_http_realtime_session_t *s,
    u_char *data, size_t len, json_int_t id,
    ngx_http_realtime_jwt_refreshed_pt done, time_t *exp,
    const char **reason);
ngx_int_t ngx_http_realtime_jwt_sio_handshake(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conn_t **jwtp, ngx_uint_t *required);
ngx_int_t ngx_http_realtime_jwt_sio_connect(void *jcf, ngx_str_t *value,
    ngx_log_t *log, ngx_http_realtime_jwt_conn_t **jwtp,
    const char **reason, ngx_http_realtime_jwt_wait_t *w);
ngx_int_t ngx_http_realtime_jwt_wait_keys(ngx_http_request_t *r,
    ngx_uint_t push, ngx_http_handler_pt handler);
ngx_http_realtime_jwt_conn_t *ngx_http_realtime_jwt_copy(
    ngx_http_realtime_jwt_conn_t *jwt, ngx_log_t *log);
void ngx_http_realtime_jwt_free(ngx_http_realtime_jwt_conn_t *jwt);

/*
 * Engine.IO sessions are held by the worker that opened them (the sid
 * names it); a polling request or an upgrade that lands on another
 * worker is relayed to it.  An address: a worker and a token there.
 */
typedef struct {
    ngx_uint_t                         slot;
    uint32_t                           id;       /* the worker's ipc id */
    uint32_t                           token;
} ngx_http_realtime_eio_addr_t;

typedef struct ngx_http_realtime_eio_s  ngx_http_realtime_eio_t;
typedef struct ngx_http_realtime_poll_relay_s
    ngx_http_realtime_poll_relay_t;

/* a WebSocket connection that carries an Engine.IO session */
typedef struct {
    ngx_http_realtime_conn_t           ws;
    ngx_http_realtime_eio_t           *eio;     /* held here */
    ngx_http_realtime_poll_relay_t    *relay;   /* or by another worker */
    ngx_uint_t                         refused;  /* a second upgrade */
} ngx_http_realtime_sio_ws_t;

/* what a relayed request asks the owner (the kind, in except[0]) */
#define NGX_HTTP_REALTIME_EIO_GET          'G'
#define NGX_HTTP_REALTIME_EIO_POST         'P'
#define NGX_HTTP_REALTIME_EIO_GET_GONE     'C'
#define NGX_HTTP_REALTIME_EIO_ABORT        'X'  /* a POST over max_payload */
#define NGX_HTTP_REALTIME_EIO_WS_OPEN      'U'
#define NGX_HTTP_REALTIME_EIO_WS_TEXT      'W'
#define NGX_HTTP_REALTIME_EIO_WS_BINARY    'B'
#define NGX_HTTP_REALTIME_EIO_WS_GONE      'D'

/* ngx_http_realtime_sio.c */
ngx_int_t ngx_http_realtime_sio_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_sio_recovery_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_eio_open_polling(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *packet);
ngx_int_t ngx_http_realtime_eio_owner(ngx_str_t *sid,
    ngx_http_realtime_eio_addr_t *owner);
ngx_int_t ngx_http_realtime_eio_post(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *to, ngx_uint_t type, ngx_str_t *target,
    ngx_str_t *except, u_char *data, size_t len);
void ngx_http_realtime_eio_addr_here(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_eio_addr_t *addr, uint32_t token);
ngx_int_t ngx_http_realtime_eio_request(ngx_http_realtime_zone_t *zone,
    ngx_str_t *sid, ngx_uint_t kind, ngx_http_realtime_eio_addr_t *from,
    u_char *data, size_t len);

/* ngx_http_realtime_poll.c */
ngx_int_t ngx_http_realtime_poll_handler(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_str_t *sid);
ngx_int_t ngx_http_realtime_poll_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_eio_http_error(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t code, char *message);
ngx_int_t ngx_http_realtime_poll_cors(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_uint_t add);
ngx_int_t ngx_http_realtime_poll_relay_open(ngx_http_realtime_conn_t *ws,
    ngx_str_t *sid, ngx_http_realtime_eio_addr_t *owner);
ngx_int_t ngx_http_realtime_poll_relay_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
void ngx_http_realtime_poll_relay_release(ngx_http_realtime_conn_t *ws);

/* ngx_http_realtime_sio.c */
ngx_int_t ngx_http_realtime_sio_handler(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf);
char *ngx_http_realtime_sio_transports(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_realtime_sio_namespaces(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

extern const ngx_http_realtime_adapter_t  ngx_http_realtime_sio_adapter;

/* ngx_http_realtime_route.c */
typedef struct {
    ngx_str_t                          event;
    ngx_uint_t                         type;     /* CMD_JOIN, _LEAVE ... */
    ngx_str_t                          room;     /* a template */
    ngx_str_t                          as;       /* publish: the event */
} ngx_http_realtime_route_t;

/* a room of realtime_join_on_connect */
typedef struct {
    ngx_str_t                          room;     /* a template of {user} */
    ngx_http_complex_value_t          *value;    /* or one of variables */
} ngx_http_realtime_join_t;

ngx_int_t ngx_http_realtime_route(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
void ngx_http_realtime_route_connect(ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_route_join_request(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s);
ngx_int_t ngx_http_realtime_route_join_vars(
    ngx_http_realtime_loc_conf_t *conf);
char *ngx_http_realtime_route_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_realtime_join_on_connect_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_realtime_user_list_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_realtime_identify_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_realtime_user_list_merge(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *conf);
ngx_int_t ngx_http_realtime_user_list_init_process(ngx_cycle_t *cycle);

/* ngx_http_realtime_forward.c */
char *ngx_http_realtime_forward_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_realtime_forward_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_realtime_forward(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
void ngx_http_realtime_forward_end(ngx_http_realtime_session_t *s);
json_t *ngx_http_realtime_forward_claims(ngx_http_request_t *r);

/* the location sends events or hooks to backends */
#define ngx_http_realtime_forwarding(conf)                                   \
    ((conf)->forwards || (conf)->connect_hook || (conf)->disconnect_hook)

/* ngx_http_realtime_history.c; a replay record's head */
#define NGX_HTTP_REALTIME_HISTORY_RECORD                                     \
    (sizeof(size_t) + 2 * sizeof(uint64_t))

ngx_http_realtime_msg_t *ngx_http_realtime_history_frame(
    ngx_http_realtime_msg_t *msg);
ngx_int_t ngx_http_realtime_history_append_locked(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_history_pos_t *at);
void ngx_http_realtime_history_position_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_history_pos_t *pos);
ngx_uint_t ngx_http_realtime_history_places_locked(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room, uint64_t last,
    uint64_t *places, ngx_uint_t max, ngx_uint_t *start);
ngx_int_t ngx_http_realtime_history_replay(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_str_t *epoch, uint64_t since,
    ngx_http_realtime_history_pos_t *pos, u_char **buf, size_t *len);
ngx_int_t ngx_http_realtime_history_replay_seq(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room, ngx_str_t *epoch,
    uint64_t seq, ngx_http_realtime_history_pos_t *pos, u_char **buf,
    size_t *len);
ngx_int_t ngx_http_realtime_recover_start(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_str_t *epoch, uint64_t since, ngx_uint_t members,
    json_int_t id);
size_t ngx_http_realtime_history_record_size(size_t json_len);
u_char *ngx_http_realtime_history_record_json(u_char *p, u_char *json,
    size_t len, uint64_t offset, u_char *epoch);
ngx_int_t ngx_http_realtime_history_send(ngx_http_realtime_session_t *s,
    u_char *buf, size_t len);
void ngx_http_realtime_history_resume_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room);
ngx_uint_t ngx_http_realtime_history_from_redis_locked(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room,
    ngx_http_realtime_history_pos_t *pos);
ngx_int_t ngx_http_realtime_history_epoch_locked(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room, u_char *epoch);
ngx_int_t ngx_http_realtime_history_init_process(
    ngx_http_realtime_zone_t *zone, ngx_cycle_t *cycle);
char *ngx_http_realtime_history_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_realtime_history_merge(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *conf);

/* ngx_http_realtime_forward_fake.c */
ngx_http_realtime_handshake_copy_t *ngx_http_realtime_handshake_keep(
    ngx_http_request_t *r, ngx_pool_t *pool);
void ngx_http_realtime_handshake_free(ngx_http_realtime_handshake_copy_t *hc);
ngx_http_request_t *ngx_http_realtime_fake_request(ngx_pool_t *pool,
    ngx_http_conf_ctx_t *ctx, ngx_http_realtime_handshake_copy_t *handshake,
    void *data, ngx_http_event_handler_pt wake, ngx_uint_t json);
void ngx_http_realtime_fake_close(ngx_connection_t *c);
void ngx_http_realtime_forward_hook(ngx_http_realtime_session_t *s,
    ngx_uint_t connect);
char *ngx_http_realtime_forward_hook_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_realtime_forward_init_process(ngx_cycle_t *cycle);

/* ngx_http_realtime_module.c */
ngx_int_t ngx_http_realtime_send_error(ngx_http_request_t *r,
    ngx_uint_t status, char *code, char *message);
ngx_int_t ngx_http_realtime_refuse(ngx_http_request_t *r,
    ngx_uint_t status, char *code, char *message);
ngx_int_t ngx_http_realtime_send_body(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *body, size_t len);


extern ngx_module_t  ngx_http_realtime_module;


#endif /* _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_ */
