
/*
 * Copyright (C) ngx-realtime developers
 *
 * A worker's Redis connections, shared by ngx_http_realtime_redis.c and
 * ngx_http_realtime_redis_presence.c.
 */


#ifndef _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_
#define _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* commands in flight past which Redis is taken as stuck */
#define NGX_HTTP_REALTIME_REDIS_PENDING_MAX  10000


/* "rt1 <instance> <type> <target length> <except length>\n"... */
#define NGX_HTTP_REALTIME_REDIS_MAGIC        "rt1"

/* a message type besides the NGX_HTTP_REALTIME_TO_*: the users changed */
#define NGX_HTTP_REALTIME_REDIS_USERS        4


typedef struct ngx_http_realtime_redis_entry_s
    ngx_http_realtime_redis_entry_t;
typedef struct ngx_http_realtime_redis_cluster_s
    ngx_http_realtime_redis_cluster_t;
typedef struct ngx_http_realtime_redis_shard_s
    ngx_http_realtime_redis_shard_t;


typedef struct {
    u_char                             addr[NGX_SOCKADDR_STRLEN + 1];
    ngx_uint_t                         port;

    redisAsyncContext                 *pub;       /* every command */
    ngx_http_realtime_redis_shard_t   *shard;     /* the leader's SSUBSCRIBE */

    ngx_uint_t                         pending;
    ngx_uint_t                         slots;     /* served, of the map */
    ngx_msec_t                         last_reply;
    ngx_msec_t                         connect_start;
    ngx_msec_t                         retry;
    ngx_msec_t                         backoff;
    ngx_msec_t                         shard_retry;
    ngx_msec_t                         shard_backoff;

    unsigned                           ready:1;
    unsigned                           master:1;
    unsigned                           seed:1;
} ngx_http_realtime_redis_node_t;


struct ngx_http_realtime_redis_cluster_s {
    ngx_http_realtime_redis_node_t     nodes[NGX_HTTP_REALTIME_REDIS_NODES];
    ngx_uint_t                         nnodes;

    /* the node serving each slot, plus one; 0: none known */
    u_char                             slots[16384];

    /* commands told TRYAGAIN (their slot's keys half moved), sent again */
    ngx_queue_t                        tryagain;
    ngx_event_t                        tryagain_ev;

    /* what a callback is given for a command no node took: only data */
    redisAsyncContext                  unsent;

    ngx_msec_t                         refreshed;
    ngx_uint_t                         asked;     /* the last node asked */
    unsigned                           refreshing:1;
    unsigned                           stale:1;
    unsigned                           complete:1;
};


struct ngx_http_realtime_redis_s {
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_redis_conf_t    *conf;

    redisAsyncContext                 *pub;
    redisAsyncContext                 *sub;

    /* Redis Cluster (ngx_http_realtime_redis_cluster.c): pub and sub unused */
    ngx_http_realtime_redis_cluster_t *cluster;
    const char                        *publish;     /* PUBLISH, SPUBLISH */

    unsigned                           pub_ready:1;
    unsigned                           sub_ready:1;    /* may subscribe */
    unsigned                           sub_confirmed:1; /* every channel */
    unsigned                           leader:1;
    unsigned                           exiting:1;

    /* the gap fill of realtime_history (ngx_http_realtime_redis_history.c) */
    unsigned                           filling:1;   /* live ones wait */
    unsigned                           fill_sent:1;
    ngx_uint_t                         fill_pending;
    ngx_queue_t                        fill_held;
    ngx_uint_t                         fill_held_n;
    ngx_event_t                        fill_timer;

    /* confirmations of SUBSCRIBE still due before sub_confirmed */
    ngx_uint_t                         sub_expect;

    /* publications waiting for pub (ngx_http_realtime_redis_outbox.c) */
    ngx_http_realtime_redis_entry_t   *outbox;
    ngx_uint_t                         outbox_head;
    ngx_uint_t                         outbox_n;

    ngx_uint_t                         pending;
    ngx_msec_t                         last_reply;
    ngx_msec_t                         pub_retry;
    ngx_msec_t                         sub_retry;
    ngx_msec_t                         backoff;
    ngx_msec_t                         connect_start_pub;
    ngx_msec_t                         connect_start_sub;
    ngx_msec_t                         presence_written;

    /* reused for every publication: no allocation per message */
    u_char                            *buf;
    size_t                             buf_size;

    ngx_event_t                        tick;
    ngx_event_t                        users_notify;   /* user list */
    ngx_log_t                         *log;
};


void ngx_http_realtime_redis_presence_refresh(ngx_http_realtime_redis_t *rd);

ngx_int_t ngx_http_realtime_redis_attach(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac);
void ngx_http_realtime_redis_cleanup(void *data);
void ngx_http_realtime_redis_hello(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac, redisCallbackFn *ready);
void ngx_http_realtime_redis_pub_up(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_pub_down(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_subscribed(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_set_up(ngx_http_realtime_redis_t *rd,
    ngx_uint_t up);

/*
 * A command about key (the first of a script's): on the publishing
 * connection, or on a cluster on the connection to the master of the
 * key's slot, following MOVED and ASK.  NGX_ERROR: not sent, and fn is
 * not called.
 */
ngx_int_t ngx_http_realtime_redis_command(ngx_http_realtime_redis_t *rd,
    u_char *key, size_t klen, redisCallbackFn *fn, void *privdata,
    const char *fmt, ...);
ngx_int_t ngx_http_realtime_redis_command_argv(ngx_http_realtime_redis_t *rd,
    u_char *key, size_t klen, redisCallbackFn *fn, void *privdata, int argc,
    const char **argv, const size_t *lens);

ngx_int_t ngx_http_realtime_redis_cluster_init(ngx_http_realtime_redis_t *rd,
    ngx_pool_t *pool);
void ngx_http_realtime_redis_cluster_free(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_cluster_tick(ngx_http_realtime_redis_t *rd);
ngx_msec_t ngx_http_realtime_redis_cluster_next(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_cluster_refresh(ngx_http_realtime_redis_t *rd);

/* ngx_http_realtime_redis_shard.c: a cluster's sharded subscriptions */
void ngx_http_realtime_redis_shards_tick(ngx_http_realtime_redis_t *rd);
ngx_uint_t ngx_http_realtime_redis_shard_subscribed(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *node);
void ngx_http_realtime_redis_shards_close(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_shards_moved(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_shard_room(ngx_http_realtime_redis_t *rd,
    u_char *channel, size_t len, ngx_uint_t subscribe);
size_t ngx_http_realtime_redis_channel(ngx_http_realtime_redis_t *rd,
    u_char *buf, ngx_uint_t type, ngx_str_t *target);
const char **ngx_http_realtime_redis_channels(ngx_http_realtime_redis_t *rd,
    size_t **lens, ngx_uint_t *n);

ngx_int_t ngx_http_realtime_redis_send(ngx_http_realtime_redis_t *rd,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_published_t *wait);
ngx_int_t ngx_http_realtime_redis_buffer(ngx_http_realtime_redis_t *rd,
    size_t len);
void ngx_http_realtime_redis_unsynced(ngx_http_realtime_redis_t *rd,
    ngx_uint_t n);
void ngx_http_realtime_redis_sync_message(ngx_http_realtime_redis_t *rd,
    u_char *p, size_t len);


ngx_int_t ngx_http_realtime_redis_outbox_init(ngx_http_realtime_redis_t *rd,
    ngx_pool_t *pool);
ngx_int_t ngx_http_realtime_redis_outbox_add(ngx_http_realtime_redis_t *rd,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg);
void ngx_http_realtime_redis_outbox_flush(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_outbox_free(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_users_changed(ngx_http_realtime_redis_t *rd);

void ngx_http_realtime_redis_history_init(ngx_http_realtime_redis_t *rd,
    ngx_log_t *log);
void ngx_http_realtime_redis_history_free(ngx_http_realtime_redis_t *rd);
ngx_int_t ngx_http_realtime_redis_send_sequenced(
    ngx_http_realtime_redis_t *rd, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_published_t *wait);
void ngx_http_realtime_redis_sync_sequenced(ngx_http_realtime_redis_t *rd,
    u_char *p, size_t len);
void ngx_http_realtime_redis_fill_begin(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_fill_send(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_room_live(ngx_http_realtime_redis_t *rd,
    u_char *channel, size_t len);
/* <prefix><what>:{<room>}, what at most "history" */
#define NGX_HTTP_REALTIME_REDIS_KEY_MAX                                      \
    (64 + sizeof("history:{}") + NGX_HTTP_REALTIME_ROOM_MAX)

size_t ngx_http_realtime_redis_key(ngx_http_realtime_redis_t *rd,
    u_char *buf, const char *what, ngx_str_t *room);
void ngx_http_realtime_redis_rooms_unlive_locked(
    ngx_http_realtime_zone_t *zone);


#endif /* _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_ */
