
/*
 * Copyright (C) ngx-realtime developers
 *
 * The shared memory zone (realtime_zone) and the workers' slots in it:
 * the zone made or taken over on reload, each worker's slot claimed at
 * start (after purging the slots of workers that died) and released at
 * exit.  The hub on top of it is ngx_http_realtime_room.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_realtime_module.h"


static ngx_msec_t  ngx_http_realtime_lag_buckets[] = {
    NGX_HTTP_REALTIME_LAG_BUCKET_MS
};


/* in this worker's slot: nobody else writes it */

void
ngx_http_realtime_histogram_add(ngx_http_realtime_histogram_t *h,
    ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_REALTIME_LAG_BUCKETS; i++) {
        if (ms <= ngx_http_realtime_lag_buckets[i]) {
            break;
        }
    }

    h->bucket[i]++;
    h->ms += ms;
}


static ngx_int_t ngx_http_realtime_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_realtime_slot_claim(ngx_http_realtime_zone_t *zone,
    ngx_cycle_t *cycle);
static void ngx_http_realtime_slot_purge(ngx_http_realtime_zone_t *zone,
    ngx_uint_t slot);


char *
ngx_http_realtime_zone_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t     size;
    ngx_str_t  *value;

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime zone \"%V\" is too small, at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_realtime_zone_add(cf, &value[1], size) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a zone is defined by realtime_zone and referred to by name elsewhere */

ngx_http_realtime_zone_t *
ngx_http_realtime_zone_add(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_realtime_zone_t       *zone, **zp;
    ngx_http_realtime_main_conf_t  *rmcf;

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_http_realtime_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        /* ngx_shared_memory_add() has checked the size already */
        return shm_zone->data;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    zone->name = *name;
    zone->shm_zone = shm_zone;
    zone->slot = NGX_HTTP_REALTIME_SLOTS;

    shm_zone->init = ngx_http_realtime_zone_init;
    shm_zone->data = zone;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_realtime_module);

    zp = ngx_array_push(&rmcf->zones);
    if (zp == NULL) {
        return NULL;
    }

    *zp = zone;

    return zone;
}


static ngx_int_t
ngx_http_realtime_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_realtime_zone_t  *ozone = data;

    size_t                      len;
    ngx_http_realtime_zone_t   *zone;
    ngx_http_realtime_shctx_t  *sh;

    zone = shm_zone->data;

    if (ozone) {
        /* reload: the state of the old zone goes on */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(zone->shpool, sizeof(ngx_http_realtime_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    zone->sh = sh;
    zone->shpool->data = sh;

    ngx_rbtree_init(&sh->rooms, &sh->rooms_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&sh->users, &sh->users_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&sh->histories, &sh->histories_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&sh->sio_saved, &sh->sio_saved_sentinel,
                    ngx_str_rbtree_insert_value);

    /* the instance's name on Redis: it lives as long as the zone */
    ngx_sprintf(sh->instance, "%08xD%08xD%Z",
                (uint32_t) ngx_random() ^ (uint32_t) ngx_time(),
                (uint32_t) ngx_random() ^ (uint32_t) ngx_pid);

    len = sizeof(" in realtime zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in realtime zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* ZONE_FULL is answered and logged by the caller */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


/* the zones of the cycle's configuration (none without an http block) */

ngx_http_realtime_zone_t **
ngx_http_realtime_zones(ngx_cycle_t *cycle, ngx_uint_t *n)
{
    ngx_http_realtime_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_realtime_module);
    if (rmcf == NULL) {
        *n = 0;
        return NULL;
    }

    *n = rmcf->zones.nelts;

    return rmcf->zones.elts;
}


ngx_int_t
ngx_http_realtime_zone_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i, n;
    ngx_http_realtime_zone_t      **zones, *zone;

    zones = ngx_http_realtime_zones(cycle, &n);

    for (i = 0; i < n; i++) {
        zone = zones[i];

        ngx_rbtree_init(&zone->rooms, &zone->rooms_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_rbtree_init(&zone->users, &zone->users_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&zone->conns);

        if (ngx_http_realtime_slot_claim(zone, cycle) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_realtime_redis_init_process(zone, cycle) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_realtime_history_init_process(zone, cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A worker takes a free slot and first purges the slots of workers that
 * died: their sockets are gone, and so must be their members.  Slots are
 * keyed by pid, not by ngx_worker, because after a reload the old and
 * the new generation share the zone for a while.
 */

static ngx_int_t
ngx_http_realtime_slot_claim(ngx_http_realtime_zone_t *zone,
    ngx_cycle_t *cycle)
{
    size_t                     size;
    ngx_uint_t                 i, slot, workers;
    ngx_core_conf_t           *ccf;
    ngx_slab_pool_t           *shpool;
    ngx_http_realtime_slot_t  *s;

    shpool = zone->shpool;
    slot = NGX_HTTP_REALTIME_SLOTS;

    /*
     * The queues of two generations of workers (a reload) take at most
     * a quarter of the zone, 8k to 4m each.
     */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);
    workers = (ccf->worker_processes > 0) ? ccf->worker_processes : 1;

    size = zone->shm_zone->shm.size / (8 * workers);
    size = ngx_align(ngx_max(ngx_min(size, 4 * 1024 * 1024), 8192), 16);

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &zone->sh->slots[i];

        if (s->pid && s->pid != ngx_pid
            && kill(s->pid, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "realtime zone \"%V\": purging %ui connections "
                          "of exited worker %P", &zone->name,
                          s->connections, s->pid);
            ngx_http_realtime_slot_purge(zone, i);
        }

        if (s->pid == 0 && slot == NGX_HTTP_REALTIME_SLOTS) {
            slot = i;
        }
    }

    if (slot == NGX_HTTP_REALTIME_SLOTS) {
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "realtime zone \"%V\": more than %d worker processes",
                      &zone->name, NGX_HTTP_REALTIME_SLOTS);
        return NGX_ERROR;
    }

    s = &zone->sh->slots[slot];

    s->queue = ngx_slab_alloc_locked(shpool, size);
    if (s->queue == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "realtime zone \"%V\" is full", &zone->name);
        return NGX_ERROR;
    }

    s->pid = ngx_pid;
    s->ipc_id = ngx_http_realtime_ipc_worker_id();
    s->queue_size = size;
    s->queue_head = 0;
    s->queue_used = 0;
    s->notified = 0;
    s->posted = 0;
    s->drained = 0;
    s->flow_waiters = 0;
    s->connections = 0;

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_realtime_redis_wake(zone);

    zone->slot = slot;

    return NGX_OK;
}


void
ngx_http_realtime_zone_exit_process(ngx_cycle_t *cycle)
{
    uint32_t                        id[NGX_HTTP_REALTIME_SLOTS];
    ngx_pid_t                       pid[NGX_HTTP_REALTIME_SLOTS];
    ngx_uint_t                      i, j, n, nwake;
    ngx_http_realtime_zone_t      **zones, *zone;

    zones = ngx_http_realtime_zones(cycle, &n);

    for (i = 0; i < n; i++) {
        zone = zones[i];

        if (zone->slot == NGX_HTTP_REALTIME_SLOTS) {
            continue;
        }

        ngx_http_realtime_redis_exit_process(zone);

        /* sockets a fast shutdown did not close leave with the worker */

        ngx_shmtx_lock(&zone->shpool->mutex);

        /* push answers held for this worker's queue need not wait */
        nwake = ngx_http_realtime_ipc_flow_waiters_locked(zone, zone->slot,
                                                          pid, id);

        ngx_http_realtime_slot_purge(zone, zone->slot);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_http_realtime_redis_wake(zone);

        for (j = 0; j < nwake; j++) {
            ngx_http_realtime_ipc_wake(pid[j], id[j]);
        }

        zone->slot = NGX_HTTP_REALTIME_SLOTS;
    }
}


/*
 * A worker's sockets are found through their users: a list per worker
 * would take a sh_conn_t past 64 bytes, and the slab to 128.  This runs
 * when a worker exits or its death is noticed, not per socket.
 */

static void
ngx_http_realtime_slot_purge(ngx_http_realtime_zone_t *zone, ngx_uint_t slot)
{
    ngx_uint_t                    last;
    ngx_queue_t                  *q, *nq;
    ngx_rbtree_t                 *tree;
    ngx_rbtree_node_t            *node, *next;
    ngx_http_realtime_slot_t     *s;
    ngx_http_realtime_sh_user_t  *user;
    ngx_http_realtime_sh_conn_t  *conn;

    s = &zone->sh->slots[slot];
    tree = &zone->sh->users;

    node = (tree->root == tree->sentinel)
           ? NULL : ngx_rbtree_min(tree->root, tree->sentinel);

    while (node) {
        /* the user may be freed with its last socket; its next is not */
        next = ngx_rbtree_next(tree, node);
        user = (ngx_http_realtime_sh_user_t *) node;

        for (q = ngx_queue_head(&user->conns);
             q != ngx_queue_sentinel(&user->conns);
             q = nq)
        {
            nq = ngx_queue_next(q);
            conn = ngx_queue_data(q, ngx_http_realtime_sh_conn_t, user_link);

            if (conn->slot != slot) {
                continue;
            }

            last = (user->nconns == 1);

            ngx_http_realtime_sh_disconnect(zone, conn);
            (void) ngx_atomic_fetch_add(&zone->sh->purged, 1);

            if (last) {
                break;
            }
        }

        node = next;
    }

    if (s->queue) {
        ngx_slab_free_locked(zone->shpool, s->queue);
        s->queue = NULL;
    }

    zone->sh->retired_in += s->messages_in;
    zone->sh->retired_out += s->messages_out;
    zone->sh->retired_dropped += s->dropped;
    s->messages_in = 0;
    s->messages_out = 0;
    s->dropped = 0;

    s->pid = 0;
    s->connections = 0;
    s->queue_size = 0;
    s->queue_head = 0;
    s->queue_used = 0;
    s->notified = 0;
    s->posted = 0;
    s->drained = 0;
    s->flow_waiters = 0;
}


/* random ids (sids, pids, epochs): len base64url characters */

void
ngx_http_realtime_random_id(u_char *id, size_t len)
{
    u_char     bytes[48];
    ngx_str_t  src, dst;

    /* len is a multiple of 4, at most 64 */

    src.len = len / 4 * 3;

    if (RAND_bytes(bytes, src.len) != 1) {
        /* RAND_bytes fails only without entropy: never seen */
        ngx_memzero(bytes, src.len);
    }

    src.data = bytes;
    dst.data = id;

    ngx_encode_base64url(&dst, &src);
}
