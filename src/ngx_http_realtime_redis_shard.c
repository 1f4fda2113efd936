
/*
 * Copyright (C) ngx-realtime developers
 *
 * The leader's subscriptions on Redis Cluster: sharded pub/sub.  Each
 * room's channel <prefix>room:{<room>} is subscribed to (SSUBSCRIBE) on
 * the master of its slot, so that a publication (SPUBLISH, or the
 * history script's) touches that one shard; the broadcast and user
 * channels <prefix>{all} and <prefix>{users} are sharded channels too,
 * each on its slot's shard: classic PUBLISH on a cluster is copied to
 * every node over the cluster bus, which is what sharding is to avoid.
 *
 * hiredis 0.14 knows nothing of SSUBSCRIBE: its async API would take
 * the pushes for replies.  A shard is a non-blocking redisContext
 * instead, its socket read by nginx (c->recv) into hiredis's reader and
 * written by redisBufferWrite(); every reply is taken here, in order.
 *
 * A subscription round (ngx_http_realtime_redis_shards_subscribe())
 * sends every channel to its shard once every master has a ready shard;
 * the instance is up when every channel is confirmed, as with one
 * Redis, and the history gap fill follows it.  When a slot moves (a
 * resharding sends sunsubscribe, a failover closes the shard, a MOVED
 * answers SSUBSCRIBE), the slot map is asked for again and a new round
 * subscribes everything where it is now: subscribing twice is harmless.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"
#include "ngx_http_realtime_cluster_codec.h"


struct ngx_http_realtime_redis_shard_s {
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_node_t    *node;
    redisContext                      *ctx;
    ngx_connection_t                  *c;
    ngx_msec_t                         start;
    ngx_uint_t                         hello;     /* replies before ready */

    /*
     * SSUBSCRIBEs sent and not confirmed, the first skip of which are
     * of a round given up; SUNSUBSCRIBEs sent and not confirmed
     */
    ngx_uint_t                         inflight;
    ngx_uint_t                         skip;
    ngx_uint_t                         unsubscribing;

    unsigned                           connected:1;
    unsigned                           ready:1;
};


static void ngx_http_realtime_redis_shard_connect(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *node);
static void ngx_http_realtime_redis_shard_close(
    ngx_http_realtime_redis_shard_t *sh);
static void ngx_http_realtime_redis_shard_failed(
    ngx_http_realtime_redis_shard_t *sh);
static void ngx_http_realtime_redis_shard_read(ngx_event_t *ev);
static void ngx_http_realtime_redis_shard_write(ngx_event_t *ev);
static ngx_int_t ngx_http_realtime_redis_shard_flush(
    ngx_http_realtime_redis_shard_t *sh);
static ngx_int_t ngx_http_realtime_redis_shard_reply(
    ngx_http_realtime_redis_shard_t *sh, redisReply *reply);
static ngx_uint_t ngx_http_realtime_redis_shard_wanted(
    ngx_http_realtime_redis_t *rd, redisReply *channel);
static void ngx_http_realtime_redis_shards_subscribe(
    ngx_http_realtime_redis_t *rd);
static ngx_http_realtime_redis_shard_t *ngx_http_realtime_redis_shard_of(
    ngx_http_realtime_redis_t *rd, u_char *channel, size_t len);


/* the leader: a shard for every master; a round once all are ready */

void
ngx_http_realtime_redis_shards_tick(ngx_http_realtime_redis_t *rd)
{
    ngx_msec_t                          now;
    ngx_uint_t                          i, ready;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;
    now = ngx_current_msec;

    if (!rd->leader || ngx_exiting) {
        return;
    }

    ready = cl->complete;

    for (i = 0; i < cl->nnodes; i++) {
        node = &cl->nodes[i];

        if (node->shard && !node->master) {
            /* it serves no slot any more */
            ngx_http_realtime_redis_shard_close(node->shard);
            continue;
        }

        if (!node->master) {
            continue;
        }

        if (node->shard == NULL
            && (ngx_msec_int_t) (now - node->shard_retry) >= 0)
        {
            ngx_http_realtime_redis_shard_connect(rd, node);
        }

        if (node->shard && !node->shard->ready
            && now - node->shard->start >= rd->conf->connect_timeout)
        {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis cluster node %s:%ui: subscriber "
                          "connect timed out", node->addr, node->port);
            ngx_http_realtime_redis_shard_failed(node->shard);
        }

        if (node->shard == NULL || !node->shard->ready) {
            ready = 0;
        }
    }

    if (ready && !rd->sub_ready && !cl->stale) {
        ngx_http_realtime_redis_shards_subscribe(rd);
    }
}


/* a slot moved: a new round once the map is in (up until confirmed) */

void
ngx_http_realtime_redis_shards_moved(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                        i;
    ngx_http_realtime_redis_shard_t  *sh;

    if (!rd->leader || (!rd->sub_ready && !rd->sub_confirmed)) {
        /* down already: the next round counts afresh */
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: subscribing again");

    /* confirmations of this round still coming do not count for the next */

    for (i = 0; i < rd->cluster->nnodes; i++) {
        sh = rd->cluster->nodes[i].shard;

        if (sh) {
            sh->skip = sh->inflight;
        }
    }

    rd->sub_ready = 0;
    rd->sub_confirmed = 0;
    rd->sub_expect = 0;
    ngx_http_realtime_redis_set_up(rd, 0);
}


void
ngx_http_realtime_redis_shards_close(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t  i;

    for (i = 0; i < rd->cluster->nnodes; i++) {
        if (rd->cluster->nodes[i].shard) {
            ngx_http_realtime_redis_shard_close(rd->cluster->nodes[i].shard);
        }
    }

    rd->sub_ready = 0;
    rd->sub_confirmed = 0;
    rd->sub_expect = 0;
}


/* for the status: the round is confirmed and none waits on this shard */

ngx_uint_t
ngx_http_realtime_redis_shard_subscribed(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node)
{
    return node->shard && node->shard->ready && rd->sub_confirmed
           && node->shard->inflight == 0;
}


/* a room got its first member here, or lost its last one */

void
ngx_http_realtime_redis_shard_room(ngx_http_realtime_redis_t *rd,
    u_char *channel, size_t len, ngx_uint_t subscribe)
{
    ngx_http_realtime_redis_shard_t  *sh;

    sh = ngx_http_realtime_redis_shard_of(rd, channel, len);

    if (sh == NULL) {
        /* the next round has it */
        ngx_http_realtime_redis_shards_moved(rd);
        return;
    }

    if (redisAppendCommand(sh->ctx, subscribe ? "SSUBSCRIBE %b"
                                              : "SUNSUBSCRIBE %b",
                           channel, len)
        != REDIS_OK)
    {
        ngx_http_realtime_redis_shard_failed(sh);
        return;
    }

    if (subscribe) {
        sh->inflight++;

        if (!rd->sub_confirmed) {
            /* its confirmation comes after the round's */
            rd->sub_expect++;
        }

    } else {
        sh->unsubscribing++;
    }

    (void) ngx_http_realtime_redis_shard_flush(sh);
}


static ngx_http_realtime_redis_shard_t *
ngx_http_realtime_redis_shard_of(ngx_http_realtime_redis_t *rd,
    u_char *channel, size_t len)
{
    ngx_uint_t                        n;
    ngx_http_realtime_redis_shard_t  *sh;

    n = rd->cluster->slots[ngx_http_realtime_cluster_slot(channel, len)];

    if (n == 0) {
        return NULL;
    }

    sh = rd->cluster->nodes[n - 1].shard;

    return (sh && sh->ready) ? sh : NULL;
}


/*
 * Every channel to its shard: the broadcast and user channels and every
 * room of the zone, named under the lock and sent after it.
 */

static void
ngx_http_realtime_redis_shards_subscribe(ngx_http_realtime_redis_t *rd)
{
    size_t                           *lens;
    ngx_uint_t                        n, i, count;
    const char                      **argv;
    ngx_http_realtime_redis_shard_t  *sh;

    argv = ngx_http_realtime_redis_channels(rd, &lens, &count);
    if (argv == NULL) {
        return;
    }

    /* every channel has a ready shard, or none is sent: the next round */

    for (i = 1; i < count; i++) {
        if (ngx_http_realtime_redis_shard_of(rd, (u_char *) argv[i], lens[i])
            == NULL)
        {
            ngx_free(argv);
            return;
        }
    }

    n = 0;

    for (i = 1; i < count; i++) {
        sh = ngx_http_realtime_redis_shard_of(rd, (u_char *) argv[i],
                                              lens[i]);

        if (redisAppendCommand(sh->ctx, "SSUBSCRIBE %b", argv[i], lens[i])
            != REDIS_OK)
        {
            /* out of memory: down until the next round */
            n = 0;
            break;
        }

        sh->inflight++;
        n++;
    }

    ngx_free(argv);

    if (n == 0) {
        return;
    }

    rd->sub_confirmed = 0;
    rd->sub_expect = n;
    rd->sub_ready = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: subscribing to %ui channels", n);

    for (i = 0; i < rd->cluster->nnodes; i++) {
        sh = rd->cluster->nodes[i].shard;

        if (sh && sh->ready) {
            (void) ngx_http_realtime_redis_shard_flush(sh);
        }
    }

    ngx_http_realtime_redis_fill_begin(rd);
}


static void
ngx_http_realtime_redis_shard_connect(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node)
{
    redisContext                     *ctx;
    ngx_connection_t                 *c;
    ngx_http_realtime_redis_conf_t   *conf;
    ngx_http_realtime_redis_shard_t  *sh;

    conf = rd->conf;

    sh = ngx_calloc(sizeof(ngx_http_realtime_redis_shard_t), rd->log);
    if (sh == NULL) {
        node->shard_retry = ngx_current_msec + 1000;
        return;
    }

    ctx = redisConnectNonBlock((char *) node->addr, (int) node->port);

    if (ctx == NULL || ctx->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster node %s:%ui: subscriber "
                      "connect failed: %s", node->addr, node->port,
                      ctx ? ctx->errstr : "no memory");
        goto failed;
    }

    c = ngx_get_connection(ctx->fd, rd->log);
    if (c == NULL) {
        goto failed;
    }

    sh->rd = rd;
    sh->node = node;
    sh->ctx = ctx;
    sh->c = c;
    sh->start = ngx_current_msec;

    c->data = sh;
    c->recv = ngx_recv;
    c->read->handler = ngx_http_realtime_redis_shard_read;
    c->write->handler = ngx_http_realtime_redis_shard_write;
    c->read->log = rd->log;
    c->write->log = rd->log;

    node->shard = sh;

    if (conf->password.len) {
        if (conf->user.len) {
            (void) redisAppendCommand(ctx, "AUTH %b %b", conf->user.data,
                                      conf->user.len, conf->password.data,
                                      conf->password.len);
        } else {
            (void) redisAppendCommand(ctx, "AUTH %b", conf->password.data,
                                      conf->password.len);
        }

        sh->hello++;
    }

    (void) redisAppendCommand(ctx, "PING");
    sh->hello++;

    /* connected when writable */

    if (ngx_handle_read_event(c->read, 0) != NGX_OK
        || ngx_handle_write_event(c->write, 0) != NGX_OK)
    {
        ngx_http_realtime_redis_shard_failed(sh);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: subscriber connecting to %s:%ui",
                   node->addr, node->port);

    return;

failed:

    if (ctx) {
        redisFree(ctx);
    }

    ngx_free(sh);

    node->shard_backoff = node->shard_backoff
                          ? ngx_min(node->shard_backoff * 2, 30000) : 250;
    node->shard_retry = ngx_current_msec + node->shard_backoff;
}


static void
ngx_http_realtime_redis_shard_close(ngx_http_realtime_redis_shard_t *sh)
{
    ngx_connection_t           *c;
    ngx_http_realtime_redis_t  *rd;

    rd = sh->rd;
    c = sh->c;

    if (sh->ready && rd->sub_ready) {
        /* its channels are not subscribed any more */
        ngx_http_realtime_redis_shards_moved(rd);
    }

    ngx_http_realtime_redis_cleanup(c);

    /* closes the socket */
    redisFree(sh->ctx);

    sh->node->shard = NULL;
    ngx_free(sh);
}


static void
ngx_http_realtime_redis_shard_failed(ngx_http_realtime_redis_shard_t *sh)
{
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_node_t  *node;

    rd = sh->rd;
    node = sh->node;

    node->shard_backoff = node->shard_backoff
                          ? ngx_min(node->shard_backoff * 2, 30000) : 250;
    node->shard_retry = ngx_current_msec + node->shard_backoff / 2
                        + (ngx_msec_t) ngx_random()
                          % (node->shard_backoff / 2);

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_errors, 1);

    ngx_http_realtime_redis_shard_close(sh);
    ngx_http_realtime_redis_shards_moved(rd);
    ngx_http_realtime_redis_cluster_refresh(rd);
}


static void
ngx_http_realtime_redis_shard_write(ngx_event_t *ev)
{
    int                               err;
    socklen_t                         len;
    ngx_connection_t                 *c;
    ngx_http_realtime_redis_shard_t  *sh;

    c = ev->data;
    sh = c->data;

    if (!sh->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, c->log, err,
                          "realtime redis cluster node %s:%ui: subscriber "
                          "connect failed", sh->node->addr, sh->node->port);
            ngx_http_realtime_redis_shard_failed(sh);
            return;
        }

        sh->connected = 1;
    }

    (void) ngx_http_realtime_redis_shard_flush(sh);
}


/* what hiredis has to write; NGX_ERROR: the shard is closed */

static ngx_int_t
ngx_http_realtime_redis_shard_flush(ngx_http_realtime_redis_shard_t *sh)
{
    int  done;

    if (!sh->connected) {
        return NGX_OK;
    }

    done = 0;

    if (redisBufferWrite(sh->ctx, &done) != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, sh->rd->log, 0,
                      "realtime redis cluster node %s:%ui: subscriber "
                      "write failed: %s", sh->node->addr, sh->node->port,
                      sh->ctx->errstr);
        ngx_http_realtime_redis_shard_failed(sh);
        return NGX_ERROR;
    }

    if (!done && ngx_handle_write_event(sh->c->write, 0) != NGX_OK) {
        ngx_http_realtime_redis_shard_failed(sh);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_realtime_redis_shard_read(ngx_event_t *ev)
{
    void                             *reply;
    ssize_t                           n;
    ngx_connection_t                 *c;
    ngx_http_realtime_redis_shard_t  *sh;
    u_char                            buf[16384];

    c = ev->data;
    sh = c->data;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "realtime redis cluster node %s:%ui: subscriber "
                          "connection lost", sh->node->addr, sh->node->port);
            ngx_http_realtime_redis_shard_failed(sh);
            return;
        }

        if (redisReaderFeed(sh->ctx->reader, (char *) buf, n) != REDIS_OK) {
            ngx_http_realtime_redis_shard_failed(sh);
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisGetReply(sh->ctx, &reply) != REDIS_OK) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "realtime redis cluster node %s:%ui: bad "
                              "reply", sh->node->addr, sh->node->port);
                ngx_http_realtime_redis_shard_failed(sh);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_http_realtime_redis_shard_reply(sh, reply) != NGX_OK) {
                freeReplyObject(reply);
                ngx_http_realtime_redis_shard_failed(sh);
                return;
            }

            freeReplyObject(reply);
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_realtime_redis_shard_failed(sh);
    }
}


/* one reply, in order: the hello's, then confirmations and messages */

static ngx_int_t
ngx_http_realtime_redis_shard_reply(ngx_http_realtime_redis_shard_t *sh,
    redisReply *reply)
{
    redisReply                            *kind, *channel, *data;
    ngx_http_realtime_redis_t             *rd;
    ngx_http_realtime_cluster_redirect_t   rr;

    rd = sh->rd;

    if (sh->hello) {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis cluster node %s:%ui: subscriber "
                          "hello failed: %*s", sh->node->addr,
                          sh->node->port, (size_t) reply->len, reply->str);
            return NGX_ERROR;
        }

        if (--sh->hello == 0) {
            sh->ready = 1;
            sh->node->shard_backoff = 0;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                           "realtime redis cluster node %s:%ui: subscriber "
                           "ready", sh->node->addr, sh->node->port);

            /*
             * The round runs from the tick, not from here: it flushes
             * and may close this very shard.
             */
            if (rd->tick.timer_set) {
                ngx_del_timer(&rd->tick);
            }

            ngx_add_timer(&rd->tick, 1);
        }

        return NGX_OK;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* the answer to an SSUBSCRIBE of ours */
        if (sh->inflight) {
            sh->inflight--;
        }

        if (sh->skip) {
            sh->skip--;
        }

        if (ngx_http_realtime_cluster_redirect((u_char *) reply->str,
                                               reply->len, &rr)
            != 0)
        {
            /* not a moved slot: no use subscribing again at once */
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis cluster node %s:%ui: SSUBSCRIBE "
                          "failed: %*s", sh->node->addr, sh->node->port,
                          (size_t) reply->len, reply->str);
            return NGX_ERROR;
        }

        /* MOVED: the map is old */
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "realtime redis cluster node %s:%ui: %*s",
                      sh->node->addr, sh->node->port, (size_t) reply->len,
                      reply->str);
        ngx_http_realtime_redis_shards_moved(rd);
        ngx_http_realtime_redis_cluster_refresh(rd);
        return NGX_OK;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        return NGX_OK;
    }

    kind = reply->element[0];
    channel = reply->element[1];
    data = reply->element[2];

    if (kind->len == 8 && ngx_strncmp(kind->str, "smessage", 8) == 0) {
        if (data->type == REDIS_REPLY_STRING) {
            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                           "realtime redis: message of %uz bytes on "
                           "\"%*s\"", (size_t) data->len,
                           (size_t) channel->len, channel->str);

            ngx_http_realtime_redis_sync_message(rd, (u_char *) data->str,
                                                 data->len);
        }

        return NGX_OK;
    }

    if (kind->len == 10 && ngx_strncmp(kind->str, "ssubscribe", 10) == 0) {
        if (sh->inflight) {
            sh->inflight--;
        }

        if (sh->skip) {
            /* of a round given up */
            sh->skip--;
            return NGX_OK;
        }

        ngx_http_realtime_redis_room_live(rd, (u_char *) channel->str,
                                          channel->len);
        ngx_http_realtime_redis_subscribed(rd);
        return NGX_OK;
    }

    if (kind->len != 12 || ngx_strncmp(kind->str, "sunsubscribe", 12) != 0) {
        return NGX_OK;
    }

    if (sh->unsubscribing) {
        /* ours: the room emptied (and may have a member again) */
        sh->unsubscribing--;
        return NGX_OK;
    }

    if (ngx_http_realtime_redis_shard_wanted(rd, channel)) {
        /* not asked for: the slot moved away from this node */
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "realtime redis cluster node %s:%ui: \"%*s\" moved",
                      sh->node->addr, sh->node->port, (size_t) channel->len,
                      channel->str);
        ngx_http_realtime_redis_shards_moved(rd);
        ngx_http_realtime_redis_cluster_refresh(rd);
    }

    return NGX_OK;
}


/* a channel this instance still needs: {all}, {users} or a room here */

static ngx_uint_t
ngx_http_realtime_redis_shard_wanted(ngx_http_realtime_redis_t *rd,
    redisReply *channel)
{
    size_t                        plen;
    ngx_str_t                     name;
    ngx_uint_t                    wanted;
    ngx_http_realtime_zone_t     *zone;

    zone = rd->zone;
    plen = rd->conf->prefix.len + sizeof("room:{") - 1;

    if (channel->len < plen + 2
        || ngx_strncmp(channel->str + rd->conf->prefix.len, "room:{", 6)
           != 0)
    {
        return 1;
    }

    name.data = (u_char *) channel->str + plen;
    name.len = channel->len - plen - 1;

    ngx_shmtx_lock(&zone->shpool->mutex);

    wanted = ngx_str_rbtree_lookup(&zone->sh->rooms, &name,
                                   ngx_crc32_short(name.data, name.len))
             != NULL;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return wanted;
}
