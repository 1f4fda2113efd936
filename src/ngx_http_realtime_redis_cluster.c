
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_redis ... cluster: Redis Cluster without cluster support in
 * hiredis 0.14.  Each worker keeps the slot map (CLUSTER SLOTS, asked
 * of any node it is connected to) and one async connection per master,
 * on the nginx event loop as the single-node connection is.  A command
 * goes to the master of its key's slot, formatted once and kept until
 * its reply, so that a MOVED or ASK sends it again where the slot is;
 * a MOVED also asks for the map again.  The map is asked for again
 * every NGX_HTTP_REALTIME_REDIS_CLUSTER_REFRESH as well, and at once
 * when a connection is lost: a master that died is replaced by its
 * replica, which the next map names.
 *
 * The worker can publish (rd->pub_ready) when the map covers every slot
 * and every master's connection is ready; before that, publications
 * wait in the outbox, as they do while a single Redis is away.
 *
 * The leader's subscriptions are sharded (ngx_http_realtime_redis_shard.c).
 *
 * Lock rules: none of this is shared; the zone's lock is never held
 * while a command is sent.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"
#include "ngx_http_realtime_cluster_codec.h"


#define NGX_HTTP_REALTIME_REDIS_CLUSTER_REFRESH  5000
#define NGX_HTTP_REALTIME_REDIS_CLUSTER_STALE    100
#define NGX_HTTP_REALTIME_REDIS_CLUSTER_HOPS     5

/* a slot being migrated answers TRYAGAIN until its keys are together */
#define NGX_HTTP_REALTIME_REDIS_CLUSTER_TRYAGAIN 25
#define NGX_HTTP_REALTIME_REDIS_CLUSTER_TRIES    40


/* a command in flight, kept for a redirection */
typedef struct {
    ngx_http_realtime_redis_t         *rd;
    redisCallbackFn                   *fn;
    void                              *privdata;
    char                              *cmd;       /* hiredis's, free() */
    size_t                             len;
    ngx_uint_t                         slot;
    ngx_uint_t                         hops;
    ngx_uint_t                         tries;
    ngx_queue_t                        queue;     /* in cl->tryagain */
} ngx_http_realtime_redis_routed_t;


static ngx_int_t ngx_http_realtime_redis_route(ngx_http_realtime_redis_t *rd,
    u_char *key, size_t klen, redisCallbackFn *fn, void *privdata, char *cmd,
    size_t len);
static ngx_int_t ngx_http_realtime_redis_node_send(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *node,
    ngx_http_realtime_redis_routed_t *rt);
static void ngx_http_realtime_redis_on_routed(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_realtime_redis_redirected(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *from,
    redisReply *reply, ngx_http_realtime_redis_routed_t *rt);
static ngx_int_t ngx_http_realtime_redis_tryagain(
    ngx_http_realtime_redis_t *rd, redisReply *reply,
    ngx_http_realtime_redis_routed_t *rt);
static ngx_uint_t ngx_http_realtime_redis_tryagain_waits(
    ngx_http_realtime_redis_t *rd, ngx_uint_t slot);
static void ngx_http_realtime_redis_on_tryagain(ngx_event_t *ev);
static void ngx_http_realtime_redis_routed_fail(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_routed_t *rt);
static ngx_http_realtime_redis_node_t *ngx_http_realtime_redis_node(
    ngx_http_realtime_redis_t *rd, u_char *addr, size_t len,
    ngx_uint_t port);
static ngx_http_realtime_redis_node_t *ngx_http_realtime_redis_node_of(
    ngx_http_realtime_redis_t *rd, const redisAsyncContext *ac);
static void ngx_http_realtime_redis_node_connect(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *node);
static void ngx_http_realtime_redis_node_drop(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node);
static void ngx_http_realtime_redis_node_failed(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *node);
static void ngx_http_realtime_redis_node_on_connect(
    const redisAsyncContext *ac, int status);
static void ngx_http_realtime_redis_node_on_disconnect(
    const redisAsyncContext *ac, int status);
static void ngx_http_realtime_redis_node_on_ready(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_realtime_redis_on_slots(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_realtime_redis_slots_parse(
    ngx_http_realtime_redis_t *rd, ngx_http_realtime_redis_node_t *from,
    redisReply *reply, u_char *map);
static ngx_uint_t ngx_http_realtime_redis_slots_full(u_char *map);
static void ngx_http_realtime_redis_cluster_state(
    ngx_http_realtime_redis_t *rd);
static void ngx_http_realtime_redis_cluster_report(
    ngx_http_realtime_redis_t *rd);


ngx_int_t
ngx_http_realtime_redis_cluster_init(ngx_http_realtime_redis_t *rd,
    ngx_pool_t *pool)
{
    ngx_uint_t                          i;
    ngx_http_realtime_redis_seed_t     *seeds;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = ngx_pcalloc(pool, sizeof(ngx_http_realtime_redis_cluster_t));
    if (cl == NULL) {
        return NGX_ERROR;
    }

    rd->cluster = cl;

    ngx_queue_init(&cl->tryagain);
    cl->tryagain_ev.handler = ngx_http_realtime_redis_on_tryagain;
    cl->tryagain_ev.data = rd;
    cl->tryagain_ev.log = rd->log;
    cl->tryagain_ev.cancelable = 1;
    cl->unsent.data = rd;

    node = ngx_http_realtime_redis_node(rd, rd->conf->addr,
                                        ngx_strlen(rd->conf->addr),
                                        rd->conf->port);
    if (node == NULL) {
        return NGX_ERROR;
    }

    node->seed = 1;

    seeds = rd->conf->seeds ? rd->conf->seeds->elts : NULL;

    for (i = 0; seeds && i < rd->conf->seeds->nelts; i++) {
        node = ngx_http_realtime_redis_node(rd, seeds[i].addr,
                                            ngx_strlen(seeds[i].addr),
                                            seeds[i].port);
        if (node == NULL) {
            return NGX_ERROR;
        }

        node->seed = 1;
    }

    return NGX_OK;
}


void
ngx_http_realtime_redis_cluster_free(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                          i;
    ngx_queue_t                        *q;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;

    if (cl->tryagain_ev.timer_set) {
        ngx_del_timer(&cl->tryagain_ev);
    }

    while (!ngx_queue_empty(&cl->tryagain)) {
        q = ngx_queue_head(&cl->tryagain);
        ngx_queue_remove(q);
        ngx_http_realtime_redis_routed_fail(rd,
            ngx_queue_data(q, ngx_http_realtime_redis_routed_t, queue));
    }

    for (i = 0; i < cl->nnodes; i++) {
        ngx_http_realtime_redis_node_drop(rd, &cl->nodes[i]);
    }
}


/*
 * From the worker's tick: connects the masters (every known node while
 * there is no map), drops a connection that is late, asks for the map
 * when due.
 */

void
ngx_http_realtime_redis_cluster_tick(ngx_http_realtime_redis_t *rd)
{
    ngx_msec_t                          now;
    ngx_uint_t                          i;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;
    now = ngx_current_msec;

    for (i = 0; i < cl->nnodes; i++) {
        node = &cl->nodes[i];

        if (node->pub == NULL && !ngx_exiting
            && (node->master || !cl->complete)
            && (ngx_msec_int_t) (now - node->retry) >= 0)
        {
            ngx_http_realtime_redis_node_connect(rd, node);
            continue;
        }

        if (node->pub && !node->ready
            && now - node->connect_start >= rd->conf->connect_timeout)
        {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis cluster node %s:%ui: connect "
                          "timed out", node->addr, node->port);
            ngx_http_realtime_redis_node_drop(rd, node);
            ngx_http_realtime_redis_node_failed(rd, node);
            continue;
        }

        if (node->pub && node->pending
            && now - node->last_reply >= rd->conf->command_timeout)
        {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis cluster node %s:%ui: no reply "
                          "for %M ms, reconnecting", node->addr, node->port,
                          now - node->last_reply);
            ngx_http_realtime_redis_node_drop(rd, node);
            ngx_http_realtime_redis_node_failed(rd, node);
        }
    }

    if (!cl->complete || cl->stale
        || now - cl->refreshed >= NGX_HTTP_REALTIME_REDIS_CLUSTER_REFRESH)
    {
        ngx_http_realtime_redis_cluster_refresh(rd);
    }

    ngx_http_realtime_redis_shards_tick(rd);
    ngx_http_realtime_redis_cluster_state(rd);
}


/* how soon the tick is due again: a retry, or a stale map */

ngx_msec_t
ngx_http_realtime_redis_cluster_next(ngx_http_realtime_redis_t *rd)
{
    ngx_msec_t                          next, now;
    ngx_uint_t                          i;
    ngx_msec_int_t                      d;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;
    now = ngx_current_msec;
    next = (cl->stale || !cl->complete)
           ? NGX_HTTP_REALTIME_REDIS_CLUSTER_STALE * 2 : 1000;

    for (i = 0; i < cl->nnodes; i++) {
        node = &cl->nodes[i];

        if (node->pub == NULL && !ngx_exiting
            && (node->master || !cl->complete))
        {
            d = (ngx_msec_int_t) (node->retry - now);
            next = ngx_min(next, (ngx_msec_t) ngx_max(d, 1));
        }

        if (rd->leader && !ngx_exiting && node->master
            && node->shard == NULL)
        {
            d = (ngx_msec_int_t) (node->shard_retry - now);
            next = ngx_min(next, (ngx_msec_t) ngx_max(d, 1));
        }
    }

    return next;
}


/* CLUSTER SLOTS on a ready connection, a master's if there is one */

void
ngx_http_realtime_redis_cluster_refresh(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                          i;
    ngx_http_realtime_redis_node_t     *node, *any;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;
    cl->stale = 1;

    if (cl->refreshing
        || ngx_current_msec - cl->refreshed
           < NGX_HTTP_REALTIME_REDIS_CLUSTER_STALE)
    {
        return;
    }

    /* the next ready node after the one asked last: a bad one is left */

    any = NULL;

    for (i = 1; i <= cl->nnodes; i++) {
        node = &cl->nodes[(cl->asked + i) % cl->nnodes];

        if (node->ready) {
            any = node;
            cl->asked = node - cl->nodes;
            break;
        }
    }

    if (any == NULL) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: slots of %s:%ui",
                   any->addr, any->port);

    if (redisAsyncCommand(any->pub, ngx_http_realtime_redis_on_slots, any,
                          "CLUSTER SLOTS")
        == REDIS_OK)
    {
        cl->refreshing = 1;
        any->pending++;
    }
}


static void
ngx_http_realtime_redis_on_slots(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply;
    ngx_uint_t                          i, changed;
    ngx_http_realtime_redis_t          *rd;
    ngx_http_realtime_redis_node_t     *from;
    ngx_http_realtime_redis_cluster_t  *cl;
    u_char                              map[NGX_HTTP_REALTIME_CLUSTER_SLOTS];

    rd = ac->data;
    cl = rd->cluster;
    from = privdata;
    reply = r;

    cl->refreshing = 0;
    cl->refreshed = ngx_current_msec;

    if (from->pending) {
        from->pending--;
    }

    from->last_reply = ngx_current_msec;

    if (reply == NULL || rd->exiting) {
        return;
    }

    if (ngx_http_realtime_redis_slots_parse(rd, from, reply, map) != NGX_OK
        || (cl->complete && !ngx_http_realtime_redis_slots_full(map)))
    {
        /* a node that lost the cluster does not undo a whole map */
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster node %s:%ui: CLUSTER SLOTS "
                      "failed or not whole%s%*s", from->addr, from->port,
                      reply->type == REDIS_REPLY_ERROR ? ": " : "",
                      (size_t) (reply->type == REDIS_REPLY_ERROR
                                ? reply->len : 0),
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        return;
    }

    changed = ngx_memcmp(map, cl->slots, sizeof(map)) != 0;
    ngx_memcpy(cl->slots, map, sizeof(map));

    /* the masters are the nodes the map names */

    for (i = 0; i < cl->nnodes; i++) {
        cl->nodes[i].master = 0;
        cl->nodes[i].slots = 0;
    }

    for (i = 0; i < NGX_HTTP_REALTIME_CLUSTER_SLOTS; i++) {
        if (map[i]) {
            cl->nodes[map[i] - 1].master = 1;
            cl->nodes[map[i] - 1].slots++;
        }
    }

    cl->complete = ngx_http_realtime_redis_slots_full(map);
    cl->stale = 0;
    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_refreshes, 1);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: slot map%s%s",
                   changed ? " changed" : " unchanged",
                   cl->complete ? "" : ", not every slot served");

    if (changed) {
        /* each room's channel is subscribed to where it is now */
        ngx_http_realtime_redis_shards_moved(rd);
    }

    ngx_http_realtime_redis_cluster_tick(rd);
}


/*
 * [[start, end, [host, port, id], replicas...], ...] into map; the
 * masters are what it names, with the number of slots each serves.
 */

static ngx_int_t
ngx_http_realtime_redis_slots_parse(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *from, redisReply *reply, u_char *map)
{
    u_char                             *addr;
    size_t                              len, i;
    long long                           start, end, s;
    redisReply                         *e, *m;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_ERROR;
    }

    ngx_memzero(map, NGX_HTTP_REALTIME_CLUSTER_SLOTS);

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
            || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER
            || e->element[2]->type != REDIS_REPLY_ARRAY
            || e->element[2]->elements < 2)
        {
            continue;
        }

        start = e->element[0]->integer;
        end = e->element[1]->integer;
        m = e->element[2];

        if (start < 0 || end >= NGX_HTTP_REALTIME_CLUSTER_SLOTS
            || start > end
            || m->element[0]->type != REDIS_REPLY_STRING
            || m->element[1]->type != REDIS_REPLY_INTEGER
            || m->element[1]->integer < 1 || m->element[1]->integer > 65535)
        {
            continue;
        }

        /* no host: the node that answered; "?": unknown, left unserved */

        addr = (u_char *) m->element[0]->str;
        len = m->element[0]->len;

        if (len == 1 && addr[0] == '?') {
            continue;
        }

        if (len == 0) {
            addr = from->addr;
            len = ngx_strlen(from->addr);
        }

        node = ngx_http_realtime_redis_node(rd, addr, len,
                                            (ngx_uint_t)
                                                m->element[1]->integer);
        if (node == NULL) {
            continue;
        }

        for (s = start; s <= end; s++) {
            map[s] = (u_char) (node - cl->nodes + 1);
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_realtime_redis_slots_full(u_char *map)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_REALTIME_CLUSTER_SLOTS; i++) {
        if (map[i] == 0) {
            return 0;
        }
    }

    return 1;
}


/* ready to publish: every slot has a master, every master is ready */

static void
ngx_http_realtime_redis_cluster_state(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                          i, up;
    ngx_http_realtime_redis_cluster_t  *cl;

    cl = rd->cluster;
    up = cl->complete;

    for (i = 0; up && i < cl->nnodes; i++) {
        if (cl->nodes[i].master && !cl->nodes[i].ready) {
            up = 0;
        }
    }

    if (up && !rd->pub_ready) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "realtime redis cluster: every master is ready");
        ngx_http_realtime_redis_pub_up(rd);

    } else if (!up && rd->pub_ready) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "realtime redis cluster: a master is not ready, "
                      "publications wait");
        ngx_http_realtime_redis_pub_down(rd);
    }

    ngx_http_realtime_redis_cluster_report(rd);
}


/*
 * The leader's masters into the zone's one table for realtime_status
 * (each worker's own table is private): from every state check of the
 * leader, so at least every second.
 */

static void
ngx_http_realtime_redis_cluster_report(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                          i, n, slots;
    ngx_slab_pool_t                    *shpool;
    ngx_http_realtime_shctx_t          *sh;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_node_sh_t  *ns;
    ngx_http_realtime_redis_cluster_t  *cl;

    if (!rd->leader) {
        return;
    }

    cl = rd->cluster;
    sh = rd->zone->sh;
    shpool = rd->zone->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->redis_nodes == NULL) {
        sh->redis_nodes = ngx_slab_calloc_locked(shpool,
                              sizeof(ngx_http_realtime_redis_node_sh_t)
                              * NGX_HTTP_REALTIME_REDIS_NODES);
        if (sh->redis_nodes == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            return;
        }
    }

    n = 0;
    slots = 0;

    for (i = 0; i < cl->nnodes; i++) {
        node = &cl->nodes[i];

        if (!node->master) {
            continue;
        }

        ns = &sh->redis_nodes[n++];

        ngx_memcpy(ns->addr, node->addr, sizeof(ns->addr));
        ns->port = node->port;
        ns->slots = node->slots;
        ns->pending = node->pending;
        ns->connected = node->ready;
        ns->subscribed = ngx_http_realtime_redis_shard_subscribed(rd, node);

        slots += node->slots;
    }

    sh->redis_nnodes = n;
    sh->redis_slots = slots;

    ngx_shmtx_unlock(&shpool->mutex);
}


ngx_int_t
ngx_http_realtime_redis_command(ngx_http_realtime_redis_t *rd, u_char *key,
    size_t klen, redisCallbackFn *fn, void *privdata, const char *fmt, ...)
{
    int       rc;
    char     *cmd;
    va_list   ap;

    if (rd->cluster == NULL) {
        if (rd->pub == NULL) {
            return NGX_ERROR;
        }

        va_start(ap, fmt);
        rc = redisvAsyncCommand(rd->pub, fn, privdata, fmt, ap);
        va_end(ap);

        return rc == REDIS_OK ? NGX_OK : NGX_ERROR;
    }

    va_start(ap, fmt);
    rc = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);

    if (rc < 0) {
        return NGX_ERROR;
    }

    return ngx_http_realtime_redis_route(rd, key, klen, fn, privdata, cmd,
                                         rc);
}


ngx_int_t
ngx_http_realtime_redis_command_argv(ngx_http_realtime_redis_t *rd,
    u_char *key, size_t klen, redisCallbackFn *fn, void *privdata, int argc,
    const char **argv, const size_t *lens)
{
    int    len;
    char  *cmd;

    if (rd->cluster == NULL) {
        if (rd->pub == NULL
            || redisAsyncCommandArgv(rd->pub, fn, privdata, argc, argv, lens)
               != REDIS_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        return NGX_ERROR;
    }

    return ngx_http_realtime_redis_route(rd, key, klen, fn, privdata, cmd,
                                         len);
}


/*
 * cmd, formatted by hiredis, to the master of key's slot, kept with its
 * callback until the reply.  NGX_ERROR: no connection to the slot's
 * master; cmd is freed and fn is not called.
 */

static ngx_int_t
ngx_http_realtime_redis_route(ngx_http_realtime_redis_t *rd, u_char *key,
    size_t klen, redisCallbackFn *fn, void *privdata, char *cmd, size_t len)
{
    ngx_uint_t                         n, slot;
    ngx_http_realtime_redis_routed_t  *rt;

    slot = ngx_http_realtime_cluster_slot(key, klen);
    n = rd->cluster->slots[slot];

    rt = (n == 0) ? NULL : ngx_alloc(sizeof(ngx_http_realtime_redis_routed_t),
                                     rd->log);
    if (rt == NULL) {
        free(cmd);
        return NGX_ERROR;
    }

    rt->rd = rd;
    rt->fn = fn;
    rt->privdata = privdata;
    rt->cmd = cmd;
    rt->len = len;
    rt->slot = slot;
    rt->hops = 0;
    rt->tries = 0;

    if (ngx_http_realtime_redis_tryagain_waits(rd, slot)) {
        /* behind the slot's command told TRYAGAIN: one room's order */
        ngx_queue_insert_tail(&rd->cluster->tryagain, &rt->queue);
        return NGX_OK;
    }

    if (ngx_http_realtime_redis_node_send(rd, &rd->cluster->nodes[n - 1], rt)
        != NGX_OK)
    {
        free(cmd);
        ngx_free(rt);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_redis_node_send(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node, ngx_http_realtime_redis_routed_t *rt)
{
    if (node->pub == NULL
        || redisAsyncFormattedCommand(node->pub,
                                      ngx_http_realtime_redis_on_routed, rt,
                                      rt->cmd, rt->len)
           != REDIS_OK)
    {
        return NGX_ERROR;
    }

    if (node->pending++ == 0) {
        node->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_routed(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                        *reply;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_node_t    *node;
    ngx_http_realtime_redis_routed_t  *rt;

    rt = privdata;
    rd = rt->rd;
    reply = r;

    node = ngx_http_realtime_redis_node_of(rd, ac);

    if (node) {
        if (node->pending) {
            node->pending--;
        }

        node->last_reply = ngx_current_msec;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR && node && !rd->exiting
        && rt->hops < NGX_HTTP_REALTIME_REDIS_CLUSTER_HOPS
        && ngx_http_realtime_redis_redirected(rd, node, reply, rt) == NGX_OK)
    {
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR && !rd->exiting
        && ngx_http_realtime_redis_tryagain(rd, reply, rt) == NGX_OK)
    {
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR && reply->len >= 11
        && ngx_strncmp(reply->str, "CLUSTERDOWN", 11) == 0)
    {
        ngx_http_realtime_redis_cluster_refresh(rd);
    }

    if (rt->fn) {
        rt->fn(ac, r, rt->privdata);
    }

    free(rt->cmd);
    ngx_free(rt);
}


/* MOVED or ASK: sent again to the node named, NGX_OK if it could be */

static ngx_int_t
ngx_http_realtime_redis_redirected(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *from, redisReply *reply,
    ngx_http_realtime_redis_routed_t *rt)
{
    u_char                                *addr;
    size_t                                 len;
    ngx_http_realtime_redis_node_t        *to;
    ngx_http_realtime_cluster_redirect_t   rr;

    if (ngx_http_realtime_cluster_redirect((u_char *) reply->str, reply->len,
                                           &rr)
        != 0)
    {
        return NGX_DECLINED;
    }

    addr = (u_char *) rr.host;
    len = rr.host_len;

    if (len == 0) {
        addr = from->addr;
        len = ngx_strlen(from->addr);
    }

    to = ngx_http_realtime_redis_node(rd, addr, len, rr.port);
    if (to == NULL) {
        return NGX_DECLINED;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_redirects, 1);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: %s slot %ui from %s to %s:%ui",
                   rr.ask ? "ASK" : "MOVED", (ngx_uint_t) rr.slot,
                   from->addr, to->addr, to->port);

    if (!rr.ask) {
        rd->cluster->slots[rr.slot] = (u_char) (to - rd->cluster->nodes + 1);
        ngx_http_realtime_redis_cluster_refresh(rd);
    }

    if (to->pub == NULL) {
        ngx_http_realtime_redis_node_connect(rd, to);

        if (to->pub == NULL) {
            return NGX_DECLINED;
        }
    }

    if (rr.ask
        && redisAsyncCommand(to->pub, NULL, NULL, "ASKING") != REDIS_OK)
    {
        return NGX_DECLINED;
    }

    rt->hops++;

    return ngx_http_realtime_redis_node_send(rd, to, rt);
}


/*
 * TRYAGAIN: a command on several keys of a slot being migrated, some
 * of them moved already.  Sent again to the slot's master a little
 * later, as a client of Redis Cluster should; NGX_DECLINED when it is
 * another error or it has been tried long enough.
 */

static ngx_int_t
ngx_http_realtime_redis_tryagain(ngx_http_realtime_redis_t *rd,
    redisReply *reply, ngx_http_realtime_redis_routed_t *rt)
{
    ngx_http_realtime_redis_cluster_t  *cl;

    if (reply->len < 8 || ngx_strncmp(reply->str, "TRYAGAIN", 8) != 0) {
        return NGX_DECLINED;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_tryagain, 1);

    if (++rt->tries > NGX_HTTP_REALTIME_REDIS_CLUSTER_TRIES) {
        return NGX_DECLINED;
    }

    cl = rd->cluster;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: TRYAGAIN slot %ui, try %ui",
                   rt->slot, rt->tries);

    ngx_queue_insert_tail(&cl->tryagain, &rt->queue);

    if (!cl->tryagain_ev.timer_set) {
        ngx_add_timer(&cl->tryagain_ev,
                      NGX_HTTP_REALTIME_REDIS_CLUSTER_TRYAGAIN);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_realtime_redis_tryagain_waits(ngx_http_realtime_redis_t *rd,
    ngx_uint_t slot)
{
    ngx_queue_t                       *q;
    ngx_http_realtime_redis_routed_t  *rt;

    /* a few commands at most, and only while a slot is being moved */

    for (q = ngx_queue_head(&rd->cluster->tryagain);
         q != ngx_queue_sentinel(&rd->cluster->tryagain);
         q = ngx_queue_next(q))
    {
        rt = ngx_queue_data(q, ngx_http_realtime_redis_routed_t, queue);

        if (rt->slot == slot) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_realtime_redis_on_tryagain(ngx_event_t *ev)
{
    ngx_uint_t                          n;
    ngx_queue_t                         queue, *q;
    ngx_http_realtime_redis_t          *rd;
    ngx_http_realtime_redis_routed_t   *rt;
    ngx_http_realtime_redis_cluster_t  *cl;

    rd = ev->data;
    cl = rd->cluster;

    /* what is told TRYAGAIN again waits for the next timer, not this */

    if (ngx_queue_empty(&cl->tryagain)) {
        return;
    }

    queue = cl->tryagain;
    queue.next->prev = &queue;
    queue.prev->next = &queue;
    ngx_queue_init(&cl->tryagain);

    while (!ngx_queue_empty(&queue)) {
        q = ngx_queue_head(&queue);
        ngx_queue_remove(q);
        rt = ngx_queue_data(q, ngx_http_realtime_redis_routed_t, queue);

        /* an ASK may be needed again: the hops count anew */
        rt->hops = 0;
        n = cl->slots[rt->slot];

        if (n
            && ngx_http_realtime_redis_node_send(rd, &cl->nodes[n - 1], rt)
               == NGX_OK)
        {
            continue;
        }

        /* the slot's master is away (a failover): it waits its tries */

        if (++rt->tries <= NGX_HTTP_REALTIME_REDIS_CLUSTER_TRIES
            && !rd->exiting)
        {
            ngx_queue_insert_tail(&cl->tryagain, &rt->queue);
            continue;
        }

        ngx_http_realtime_redis_routed_fail(rd, rt);
    }

    if (!ngx_queue_empty(&cl->tryagain) && !cl->tryagain_ev.timer_set) {
        ngx_add_timer(&cl->tryagain_ev,
                      NGX_HTTP_REALTIME_REDIS_CLUSTER_TRYAGAIN);
    }
}


/* a command kept that will not be sent: its callback gets no reply */

static void
ngx_http_realtime_redis_routed_fail(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_routed_t *rt)
{
    if (rt->fn) {
        rt->fn(&rd->cluster->unsent, NULL, rt->privdata);
    }

    free(rt->cmd);
    ngx_free(rt);
}


/* the node of addr:port, added if new; NULL when there are too many */

static ngx_http_realtime_redis_node_t *
ngx_http_realtime_redis_node(ngx_http_realtime_redis_t *rd, u_char *addr,
    size_t len, ngx_uint_t port)
{
    ngx_uint_t                          i;
    ngx_http_realtime_redis_node_t     *node;
    ngx_http_realtime_redis_cluster_t  *cl;
#if (NGX_HAVE_INET6)
    u_char                              buf[16];
#endif

    cl = rd->cluster;

    if (len == 0 || len > NGX_SOCKADDR_STRLEN) {
        return NULL;
    }

    /* an address only: hiredis would resolve a name, blocking the worker */

    if (ngx_inet_addr(addr, len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(addr, len, buf) != NGX_OK
#endif
        )
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster: \"%*s\" is not an "
                      "address (set cluster-preferred-endpoint-type ip)",
                      len, addr);
        return NULL;
    }

    for (i = 0; i < cl->nnodes; i++) {
        node = &cl->nodes[i];

        if (node->port == port && ngx_strlen(node->addr) == len
            && ngx_strncmp(node->addr, addr, len) == 0)
        {
            return node;
        }
    }

    if (cl->nnodes == NGX_HTTP_REALTIME_REDIS_NODES) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster: more than %d nodes",
                      NGX_HTTP_REALTIME_REDIS_NODES);
        return NULL;
    }

    node = &cl->nodes[cl->nnodes++];
    ngx_memzero(node, sizeof(ngx_http_realtime_redis_node_t));

    ngx_memcpy(node->addr, addr, len);
    node->addr[len] = '\0';
    node->port = port;
    node->retry = ngx_current_msec;
    node->shard_retry = ngx_current_msec;

    return node;
}


static ngx_http_realtime_redis_node_t *
ngx_http_realtime_redis_node_of(ngx_http_realtime_redis_t *rd,
    const redisAsyncContext *ac)
{
    ngx_uint_t  i;

    for (i = 0; i < rd->cluster->nnodes; i++) {
        if (rd->cluster->nodes[i].pub == ac) {
            return &rd->cluster->nodes[i];
        }
    }

    return NULL;
}


static void
ngx_http_realtime_redis_node_connect(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node)
{
    redisAsyncContext  *ac;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster: connecting to %s:%ui",
                   node->addr, node->port);

    /* an address, from the configuration or the cluster: no resolving */
    ac = redisAsyncConnect((char *) node->addr, (int) node->port);

    if (ac == NULL || ac->err
        || ngx_http_realtime_redis_attach(rd, ac) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster node %s:%ui: connect failed: "
                      "%s", node->addr, node->port,
                      (ac && ac->err) ? ac->errstr : "no memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_realtime_redis_node_failed(rd, node);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_http_realtime_redis_node_on_connect);
    redisAsyncSetDisconnectCallback(ac,
                                ngx_http_realtime_redis_node_on_disconnect);

    ngx_http_realtime_redis_hello(rd, ac,
                                  ngx_http_realtime_redis_node_on_ready);

    node->pub = ac;
    node->ready = 0;
    node->pending = 0;
    node->connect_start = ngx_current_msec;
}


/* closes a connection we still own: its callbacks get no reply */

static void
ngx_http_realtime_redis_node_drop(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node)
{
    redisAsyncContext  *ac;

    ac = node->pub;

    if (ac == NULL) {
        return;
    }

    node->pub = NULL;
    node->ready = 0;
    node->pending = 0;

    /* down before the callbacks run: what they flush goes to the outbox */
    ngx_http_realtime_redis_cluster_state(rd);

    ac->onDisconnect = NULL;
    redisAsyncFree(ac);
}


static void
ngx_http_realtime_redis_node_failed(ngx_http_realtime_redis_t *rd,
    ngx_http_realtime_redis_node_t *node)
{
    node->backoff = node->backoff ? ngx_min(node->backoff * 2, 30000) : 250;
    node->retry = ngx_current_msec + node->backoff / 2
                  + (ngx_msec_t) ngx_random() % (node->backoff / 2);

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_errors, 1);

    /* a master that went may have been replaced */
    rd->cluster->stale = 1;
}


static void
ngx_http_realtime_redis_node_on_connect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_node_t  *node;

    rd = ac->data;
    node = ngx_http_realtime_redis_node_of(rd, ac);

    if (status == REDIS_OK || node == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "realtime redis cluster node %s:%ui: connect failed: %s",
                  node->addr, node->port, ac->errstr);

    /* hiredis frees the context after this callback */
    node->pub = NULL;
    node->ready = 0;
    ngx_http_realtime_redis_node_failed(rd, node);
    ngx_http_realtime_redis_cluster_state(rd);
}


static void
ngx_http_realtime_redis_node_on_disconnect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_node_t  *node;

    rd = ac->data;
    node = ngx_http_realtime_redis_node_of(rd, ac);

    if (node == NULL) {
        return;
    }

    node->pub = NULL;
    node->ready = 0;
    node->pending = 0;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster node %s:%ui: connection "
                      "lost: %s", node->addr, node->port, ac->errstr);
    }

    ngx_http_realtime_redis_node_failed(rd, node);
    ngx_http_realtime_redis_cluster_state(rd);
    ngx_http_realtime_redis_cluster_refresh(rd);
}


/* the replies to AUTH and PING; PING's means ready */

static void
ngx_http_realtime_redis_node_on_ready(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                            *what;
    redisReply                      *reply;
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_node_t  *node;

    rd = ac->data;
    reply = r;
    what = privdata;
    node = ngx_http_realtime_redis_node_of(rd, ac);

    if (reply == NULL || node == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis cluster node %s:%ui: %s failed: %*s",
                      node->addr, node->port, what, (size_t) reply->len,
                      reply->str);
        redisAsyncDisconnect(ac);
        return;
    }

    if (ngx_strcmp(what, "PING") != 0) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis cluster node %s:%ui: ready",
                   node->addr, node->port);

    node->ready = 1;
    node->backoff = 0;
    node->last_reply = ngx_current_msec;

    if (!rd->cluster->complete || rd->cluster->stale) {
        ngx_http_realtime_redis_cluster_refresh(rd);
    }

    ngx_http_realtime_redis_cluster_state(rd);
}
