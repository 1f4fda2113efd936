
/*
 * Copyright (C) ngx-realtime developers
 *
 * Rooms, users and connections in a shared memory zone, and the
 * worker-local indexes that deliver to this worker's sockets.
 */


#ifndef _NGX_HTTP_REALTIME_ROOM_H_INCLUDED_
#define _NGX_HTTP_REALTIME_ROOM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* worker processes of all live generations that may share a zone */
#define NGX_HTTP_REALTIME_SLOTS        64

#define NGX_HTTP_REALTIME_TO_ROOM      1
#define NGX_HTTP_REALTIME_TO_USER      2
#define NGX_HTTP_REALTIME_TO_ALL       3


/* realtime_forward outcomes, and latency buckets in ms (then +Inf) */
#define NGX_HTTP_REALTIME_FORWARD_OK           0
#define NGX_HTTP_REALTIME_FORWARD_REFUSED      1   /* the backend's 4xx */
#define NGX_HTTP_REALTIME_FORWARD_TIMEOUT      2
#define NGX_HTTP_REALTIME_FORWARD_UNAVAILABLE  3
#define NGX_HTTP_REALTIME_FORWARD_BAD_REPLY    4
#define NGX_HTTP_REALTIME_FORWARD_BUSY         5
#define NGX_HTTP_REALTIME_FORWARD_OUTCOMES     6
#define NGX_HTTP_REALTIME_FORWARD_BUCKETS      11
#define NGX_HTTP_REALTIME_FORWARD_BUCKET_MS                                  \
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000

/* realtime_forward counters by route: how many, and "event uri" bytes */
#define NGX_HTTP_REALTIME_FORWARD_ROUTES       32
#define NGX_HTTP_REALTIME_FORWARD_ROUTE_NAME   160


/*
 * A route's counters in the zone, found by its event and URI: they go
 * on across reloads while the route is the same.
 */
typedef struct ngx_http_realtime_forward_route_sh_s
    ngx_http_realtime_forward_route_sh_t;

struct ngx_http_realtime_forward_route_sh_s {
    u_char                             name[
                                         NGX_HTTP_REALTIME_FORWARD_ROUTE_NAME];
    size_t                             event_len;   /* then the URI */
    size_t                             len;
    ngx_atomic_t                       total[
                                           NGX_HTTP_REALTIME_FORWARD_OUTCOMES];
    ngx_atomic_t                       answered;    /* all but busy */
    ngx_atomic_t                       latency_ms;
};

/* realtime_history: an epoch's characters */
#define NGX_HTTP_REALTIME_EPOCH_LEN    16

/*
 * The room of realtime_user_list_event, joined on connect and published
 * by each instance itself: never kept for a Socket.IO recovery
 */
#define NGX_HTTP_REALTIME_USER_LIST_ROOM  "#users"


/* a room's place in its history, as a join saw it */
typedef struct {
    uint64_t                           offset;
    uint64_t                           seq;      /* the zone's, at a join */
    u_char                             epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    unsigned                           on:1;
    unsigned                           next_only:1;  /* no gap before it */
} ngx_http_realtime_history_pos_t;

/*
 * A room's history as Redis keeps it (realtime_redis), read for a join
 * since a place this instance does not hold: handler gets NGX_OK with
 * the replay records (of ngx_http_realtime_history_replay()) after since
 * up to last, Redis's last offset, in buf (ngx_alloc()ed, may be NULL);
 * NGX_DECLINED if Redis does not hold all of it or has another epoch.
 */
typedef struct {
    void                             (*handler)(void *data, ngx_int_t rc);
    void                              *data;
    uint64_t                           since;
    uint64_t                           last;
    u_char                            *buf;
    size_t                             len;
    u_char                             epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    /* since 0 of whatever epoch Redis has (none: nothing yet, NGX_OK) */
    unsigned                           any_epoch:1;
} ngx_http_realtime_history_read_t;


/* an instance id: 16 hex digits, new with every new zone */
#define NGX_HTTP_REALTIME_INSTANCE_LEN 16

typedef struct ngx_http_realtime_sh_user_s  ngx_http_realtime_sh_user_t;
typedef struct ngx_http_realtime_session_s  ngx_http_realtime_session_t;
typedef struct ngx_http_realtime_redis_s  ngx_http_realtime_redis_t;


typedef struct {
    u_char                            *host;     /* as written, for logs */
    u_char                            *addr;     /* resolved at reading */
    ngx_uint_t                         port;
    ngx_str_t                          user;
    ngx_str_t                          password;
    ngx_uint_t                         db;
    ngx_str_t                          prefix;
    ngx_msec_t                         connect_timeout;
    ngx_msec_t                         command_timeout;
    ngx_msec_t                         presence_ttl;
    ngx_uint_t                         outbox;       /* entries */
    ngx_msec_t                         outbox_time;

    /* Redis Cluster: the seed nodes after the first (host, addr, port) */
    ngx_array_t                       *seeds;   /* of u_char *, ngx_uint_t */
    unsigned                           cluster:1;
} ngx_http_realtime_redis_conf_t;


typedef struct {
    u_char                            *addr;
    ngx_uint_t                         port;
} ngx_http_realtime_redis_seed_t;


/* nodes of a cluster a worker knows: masters, seeds, redirections */
#define NGX_HTTP_REALTIME_REDIS_NODES        64


/* Redis Cluster: a master as the Redis leader sees it, for the status */
typedef struct {
    u_char                             addr[NGX_SOCKADDR_STRLEN + 1];
    ngx_uint_t                         port;
    ngx_uint_t                         slots;
    ngx_uint_t                         pending;   /* commands unanswered */
    unsigned                           connected:1;
    unsigned                           subscribed:1;
} ngx_http_realtime_redis_node_sh_t;


/*
 * A histogram of milliseconds, one per worker slot (one writer each, so
 * no atomics on the hot path): the bounds are
 * NGX_HTTP_REALTIME_LAG_BUCKET_MS, the last bucket the rest.
 */
#define NGX_HTTP_REALTIME_LAG_BUCKETS          10
#define NGX_HTTP_REALTIME_LAG_BUCKET_MS                                      \
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000

typedef struct {
    ngx_uint_t                         bucket[NGX_HTTP_REALTIME_LAG_BUCKETS
                                              + 1];
    ngx_uint_t                         ms;
} ngx_http_realtime_histogram_t;

void ngx_http_realtime_histogram_add(ngx_http_realtime_histogram_t *h,
    ngx_msec_t ms);


/* a worker process attached to the zone */
typedef struct {
    ngx_pid_t                          pid;          /* 0: free */
    uint32_t                           ipc_id;
    ngx_uint_t                         connections;

    /* deliveries for this worker, see ngx_http_realtime_ipc.c */
    u_char                            *queue;
    size_t                             queue_size;
    size_t                             queue_head;
    size_t                             queue_used;
    ngx_uint_t                         notified;

    /* push flow control: records posted and drained; slots to wake */
    uint64_t                           posted;
    uint64_t                           drained;
    uint64_t                           flow_waiters;  /* a bit per slot */
    ngx_msec_t                         drain_time;    /* or first post */

    ngx_atomic_t                       messages_in;
    ngx_atomic_t                       messages_out;
    ngx_atomic_t                       dropped;

    /* Redis: this worker can publish; its outbox */
    ngx_uint_t                         redis_pub;
    ngx_uint_t                         redis_outbox;

    /* from a publication to its frame written; from request to 101 */
    ngx_http_realtime_histogram_t      delivery_lag;
    ngx_http_realtime_histogram_t      handshake;
} ngx_http_realtime_slot_t;


typedef struct {
    ngx_rbtree_t                       rooms;
    ngx_rbtree_node_t                  rooms_sentinel;
    ngx_rbtree_t                       users;
    ngx_rbtree_node_t                  users_sentinel;

    ngx_uint_t                         nrooms;
    ngx_uint_t                         nusers;
    ngx_uint_t                         nconnections;
    uint64_t                           next_id;

    /* counts of workers that died, of ZONE_FULL and full queues */
    ngx_atomic_t                       purged;
    ngx_atomic_t                       zone_full;
    ngx_atomic_t                       queue_full;

    /* push answers held by flow control, and let go by its time bound */
    ngx_atomic_t                       push_held;
    ngx_atomic_t                       push_held_timeout;

    /* Redis: the subscribing worker, its state, counters */
    ngx_pid_t                          redis_leader;
    ngx_uint_t                         redis_leader_slot;
    ngx_uint_t                         redis_up;
    ngx_atomic_t                       redis_published;
    ngx_atomic_t                       redis_received;
    ngx_atomic_t                       redis_unsynced;
    ngx_atomic_t                       redis_errors;

    /* Redis Cluster: the leader's masters, written on its tick; counters */
    ngx_http_realtime_redis_node_sh_t *redis_nodes;
    ngx_uint_t                         redis_nnodes;
    ngx_uint_t                         redis_slots;     /* with a master */
    ngx_atomic_t                       redis_redirects;
    ngx_atomic_t                       redis_tryagain;
    ngx_atomic_t                       redis_refreshes;

    u_char                             instance[
                                           NGX_HTTP_REALTIME_INSTANCE_LEN + 1];

    /* realtime_user_list: bumped when the set of users changes */
    ngx_atomic_t                       users_version;
    ngx_atomic_t                       users_listed;
    ngx_atomic_t                       users_remote;   /* 1: look again */
    ngx_atomic_t                       users_checked;  /* msec */
    ngx_atomic_t                       users_list_crc; /* the last sent */

    /* realtime_forward */
    ngx_atomic_t                       forward_total[
                                           NGX_HTTP_REALTIME_FORWARD_OUTCOMES];
    ngx_atomic_t                       forward_inflight;
    ngx_atomic_t                       forward_latency[
                                       NGX_HTTP_REALTIME_FORWARD_BUCKETS + 1];
    ngx_atomic_t                       forward_latency_ms;

    /* by route: entries are filled under the lock, then counted */
    ngx_http_realtime_forward_route_sh_t  *forward_routes;
    ngx_atomic_t                       nforward_routes;

    /* realtime_history (ngx_http_realtime_history.c) */
    ngx_rbtree_t                       histories;
    ngx_rbtree_node_t                  histories_sentinel;
    uint64_t                           history_seq;  /* zone-wide */
    ngx_uint_t                         history_rooms;
    ngx_uint_t                         history_messages;
    size_t                             history_bytes;
    ngx_atomic_t                       history_swept;

    /* realtime_socketio_recovery: sockets that may come back, by pid */
    ngx_rbtree_t                       sio_saved;
    ngx_rbtree_node_t                  sio_saved_sentinel;
    ngx_uint_t                         sio_saved_n;
    ngx_atomic_t                       sio_swept;

    /* the counters of workers that have exited */
    ngx_uint_t                         retired_in;
    ngx_uint_t                         retired_out;
    ngx_uint_t                         retired_dropped;

    ngx_http_realtime_slot_t           slots[NGX_HTTP_REALTIME_SLOTS];
} ngx_http_realtime_shctx_t;


struct ngx_http_realtime_sh_user_s {
    ngx_str_node_t                     sn;
    ngx_queue_t                        conns;
    ngx_uint_t                         nconns;
};


/* 64 bytes, one slab size: keep it so */
typedef struct {
    ngx_queue_t                        user_link;
    ngx_queue_t                        members;      /* sh_member_t */
    ngx_http_realtime_sh_user_t       *user;
    uint64_t                           id;
    ngx_uint_t                         slot;
    time_t                             since;
} ngx_http_realtime_sh_conn_t;


typedef struct {
    ngx_str_node_t                     sn;
    ngx_rbtree_t                       users;        /* sh_room_user_t */
    ngx_rbtree_node_t                  users_sentinel;
    ngx_uint_t                         nusers;
    ngx_uint_t                         nsockets;
    uint32_t                           slot_sockets[NGX_HTTP_REALTIME_SLOTS];

    /* realtime_redis: the leader's SUBSCRIBE to it is confirmed */
    unsigned                           redis_live:1;
} ngx_http_realtime_sh_room_t;


typedef struct {
    ngx_str_node_t                     sn;
    ngx_uint_t                         nsockets;
} ngx_http_realtime_sh_room_user_t;


typedef struct {
    ngx_queue_t                        conn_link;
    ngx_http_realtime_sh_room_t       *room;
    ngx_http_realtime_sh_room_user_t  *room_user;
} ngx_http_realtime_sh_member_t;


/* worker-local */

typedef struct {
    ngx_str_node_t                     sn;
    ngx_queue_t                        members;      /* local_member_t */
} ngx_http_realtime_local_room_t;


typedef struct {
    ngx_str_node_t                     sn;
    ngx_queue_t                        conns;        /* session user_link */
} ngx_http_realtime_local_user_t;


typedef struct ngx_http_realtime_local_member_s
    ngx_http_realtime_local_member_t;


/*
 * What waits for a member (a recovery, ngx_http_realtime_recover.c)
 * begins with this: the member's leave says it went.
 */
typedef struct {
    ngx_http_realtime_local_member_t  *lm;       /* NULL: it went */
} ngx_http_realtime_member_wait_t;


/* a socket in a room, linked from both */
struct ngx_http_realtime_local_member_s {
    ngx_queue_t                        room_link;
    ngx_queue_t                        conn_link;
    ngx_http_realtime_session_t       *session;
    ngx_http_realtime_local_room_t    *room;
    ngx_http_realtime_sh_member_t     *sh;
    uint64_t                           offset;   /* the last delivered */
    uint64_t                           seq;      /* the zone's, of it */

    /*
     * A join since a place read from Redis (ngx_http_realtime_recover.c):
     * nothing is delivered to it meanwhile, and after it nothing up to
     * floor, the offset Redis replayed up to.
     */
    ngx_http_realtime_member_wait_t   *recovery;
    uint64_t                           floor;
    /* a Socket.IO socket back from Redis: what it got without a place */
    uint64_t                           replayed;
    u_char                             replayed_epoch[
                                           NGX_HTTP_REALTIME_EPOCH_LEN];
    /*
     * realtime_socketio_recovery with Redis, a room whose history here
     * is not Redis's yet: Redis's offset (and epoch) read at the join,
     * where the socket is while nothing comes by Redis
     */
    uint64_t                           base;
    u_char                             base_epoch[
                                           NGX_HTTP_REALTIME_EPOCH_LEN];
    ngx_http_realtime_member_wait_t   *base_wait;  /* the read */
    unsigned                           base_known:1;
    unsigned                           base_none:1; /* Redis had nothing */
};


typedef struct ngx_http_realtime_zone_s  ngx_http_realtime_zone_t;
typedef struct ngx_http_realtime_msg_s  ngx_http_realtime_msg_t;
typedef struct ngx_http_realtime_published_s  ngx_http_realtime_published_t;

/*
 * A publication out to the other instances: the Redis bridge installs it
 * in its zone (zone->sync), so that the hub never names a service.
 */
typedef ngx_int_t (*ngx_http_realtime_base_pt)(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm);
typedef ngx_int_t (*ngx_http_realtime_sync_pt)(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_published_t *wait);

void *ngx_http_realtime_sh_node(ngx_http_realtime_zone_t *zone,
    ngx_rbtree_t *tree, ngx_str_t *name, size_t size, ngx_uint_t copy,
    ngx_uint_t *created);
void ngx_http_realtime_sh_node_free(ngx_http_realtime_zone_t *zone,
    ngx_rbtree_t *tree, ngx_str_node_t *sn);
void ngx_http_realtime_sh_disconnect(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_conn_t *conn);

/* len base64url characters of RAND_bytes(); len a multiple of 4, <= 64 */
void ngx_http_realtime_random_id(u_char *id, size_t len);

struct ngx_http_realtime_zone_s {
    ngx_str_t                          name;
    ngx_shm_zone_t                    *shm_zone;
    ngx_slab_pool_t                   *shpool;
    ngx_http_realtime_shctx_t         *sh;

    /* this worker's slot, or NGX_HTTP_REALTIME_SLOTS if it has none */
    ngx_uint_t                         slot;

    ngx_rbtree_t                       rooms;
    ngx_rbtree_node_t                  rooms_sentinel;
    ngx_rbtree_t                       users;
    ngx_rbtree_node_t                  users_sentinel;
    ngx_queue_t                        conns;

    ngx_http_realtime_redis_conf_t    *redis_conf;
    ngx_http_realtime_redis_t         *redis;        /* this worker's */
    ngx_http_realtime_sync_pt          sync;         /* NULL: alone */
    /* the Redis bridge's read of a member's base (see lm->base) */
    ngx_http_realtime_base_pt          history_base;

    /* realtime_user_list: the event, how often at most, the timer */
    ngx_str_t                          user_list_event;
    ngx_msec_t                         user_list_interval;
    ngx_uint_t                         user_list_timestamp;
    ngx_event_t                        user_list_timer;

    /* realtime_history: one bound per zone */
    ngx_uint_t                         history_max;
    ngx_msec_t                         history_ttl;
    ngx_event_t                        history_timer;
    ngx_event_t                        sio_saved_timer;  /* recovery */

    /* a wakeup for the Redis worker, sent after the zone is unlocked */
    ngx_pid_t                          wake_pid;
    uint32_t                           wake_id;
};


#endif /* _NGX_HTTP_REALTIME_ROOM_H_INCLUDED_ */
