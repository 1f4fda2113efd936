
/*
 * Copyright (C) ngx-realtime developers
 *
 * Health and metrics: realtime_status (JSON) and realtime_metrics
 * (Prometheus text format).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


/* a master's ip:port for the status, [ip6]:port */
#define NGX_HTTP_REALTIME_NODE_NAME  (NGX_SOCKADDR_STRLEN + NGX_INT_T_LEN + 4)


static u_char *ngx_http_realtime_forward_route_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone);
static u_char *ngx_http_realtime_route_labels(u_char *p,
    ngx_http_realtime_forward_route_sh_t *m);
static u_char *ngx_http_realtime_label_escape(u_char *p, u_char *s,
    size_t len);
static u_char *ngx_http_realtime_histogram_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone, const char *name, const char *help,
    size_t field);
static u_char *ngx_http_realtime_forward_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone);


typedef struct {
    ngx_uint_t   connections;
    ngx_uint_t   users;
    ngx_uint_t   rooms;
    ngx_uint_t   workers;
    ngx_uint_t   messages_in;
    ngx_uint_t   messages_out;
    ngx_uint_t   dropped;
    size_t       size;
    size_t       used;
    ngx_uint_t   history_rooms;
    ngx_uint_t   history_messages;
    size_t       history_bytes;
    ngx_uint_t   redis_up;
    ngx_uint_t   redis_subscribed;
    ngx_uint_t   redis_pub_down;     /* workers that cannot publish */
    ngx_uint_t   redis_outbox;
    ngx_uint_t   redis_published;
    ngx_uint_t   redis_received;
    ngx_uint_t   redis_unsynced;
    ngx_uint_t   redis_errors;
} ngx_http_realtime_totals_t;


static ngx_int_t ngx_http_realtime_status_get(ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_status_arg(ngx_http_request_t *r,
    ngx_str_t *arg, ngx_str_t *name);
static json_t *ngx_http_realtime_redis_workers(ngx_http_realtime_zone_t *zone);
static json_t *ngx_http_realtime_redis_cluster(ngx_http_realtime_zone_t *zone);
static ngx_uint_t ngx_http_realtime_redis_nodes(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_redis_node_sh_t *copy, ngx_uint_t *slots);
static void ngx_http_realtime_redis_node_name(u_char *buf,
    ngx_http_realtime_redis_node_sh_t *node);
static u_char *ngx_http_realtime_redis_cluster_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone);
static u_char *ngx_http_realtime_redis_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone, ngx_http_realtime_totals_t *t);
static void ngx_http_realtime_totals(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_totals_t *t);
static json_t *ngx_http_realtime_status_room(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name);
static json_t *ngx_http_realtime_status_user(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name);


static ngx_msec_t  ngx_http_realtime_lag_buckets[] = {
    NGX_HTTP_REALTIME_LAG_BUCKET_MS
};


/* a histogram of every worker's slot, summed */

static u_char *
ngx_http_realtime_histogram_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone, const char *name, const char *help,
    size_t field)
{
    ngx_str_t                      *zn;
    ngx_uint_t                      i, b, n, ms;
    ngx_uint_t                      sum[NGX_HTTP_REALTIME_LAG_BUCKETS + 1];
    ngx_http_realtime_histogram_t  *h;

    zn = &zone->name;
    ms = 0;
    ngx_memzero(sum, sizeof(sum));

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        h = (ngx_http_realtime_histogram_t *)
                ((u_char *) &zone->sh->slots[i] + field);

        for (b = 0; b <= NGX_HTTP_REALTIME_LAG_BUCKETS; b++) {
            sum[b] += h->bucket[b];
        }

        ms += h->ms;
    }

    p = ngx_sprintf(p, "# HELP realtime_%s %s\n"
                       "# TYPE realtime_%s histogram\n", name, help, name);

    n = 0;

    for (b = 0; b < NGX_HTTP_REALTIME_LAG_BUCKETS; b++) {
        n += sum[b];
        p = ngx_sprintf(p, "realtime_%s_bucket{zone=\"%V\",le=\"%ui.%03ui\"} "
                        "%ui\n", name, zn,
                        ngx_http_realtime_lag_buckets[b] / 1000,
                        ngx_http_realtime_lag_buckets[b] % 1000, n);
    }

    n += sum[NGX_HTTP_REALTIME_LAG_BUCKETS];

    return ngx_sprintf(p, "realtime_%s_bucket{zone=\"%V\",le=\"+Inf\"} %ui\n"
                          "realtime_%s_sum{zone=\"%V\"} %ui.%03ui\n"
                          "realtime_%s_count{zone=\"%V\"} %ui\n",
                       name, zn, n, name, zn, ms / 1000, ms % 1000,
                       name, zn, n);
}


/* the per-worker families; the first one's head is in the totals' text */

static const char  *ngx_http_realtime_worker_names[] = {
    "connections", "messages_in_total", "messages_out_total", "dropped_total"
};

static const char  *ngx_http_realtime_worker_families[] = {
    "",
    "# HELP realtime_worker_messages_in_total Client messages and pushes, "
    "per worker.\n"
    "# TYPE realtime_worker_messages_in_total counter\n",
    "# HELP realtime_worker_messages_out_total Frames queued to sockets, "
    "per worker.\n"
    "# TYPE realtime_worker_messages_out_total counter\n",
    "# HELP realtime_worker_dropped_total Deliveries that did not happen, "
    "per worker.\n"
    "# TYPE realtime_worker_dropped_total counter\n"
};


ngx_int_t
ngx_http_realtime_status_handler(ngx_http_request_t *r)
{
    json_t                        *json;
    ngx_int_t                      rc;
    ngx_str_t                      arg, name;
    ngx_uint_t                     status, degraded;
    ngx_http_realtime_totals_t     t;
    ngx_http_realtime_loc_conf_t  *rlcf;

    rc = ngx_http_realtime_status_get(r);
    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : rc;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);
    status = NGX_HTTP_OK;

    if (ngx_http_arg(r, (u_char *) "room", 4, &arg) == NGX_OK) {
        if (ngx_http_realtime_status_arg(r, &arg, &name) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json = ngx_http_realtime_status_room(rlcf->zone, &name);

        if (json == NULL) {
            return ngx_http_realtime_send_error(r, NGX_HTTP_NOT_FOUND,
                                                "ROOM_NOT_FOUND",
                                                "Room not found");
        }

    } else if (ngx_http_arg(r, (u_char *) "user", 4, &arg) == NGX_OK) {
        if (ngx_http_realtime_status_arg(r, &arg, &name) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json = ngx_http_realtime_status_user(rlcf->zone, &name);

        if (json == NULL) {
            return ngx_http_realtime_send_error(r, NGX_HTTP_NOT_FOUND,
                                                "USER_NOT_FOUND",
                                                "User not connected");
        }

    } else {
        ngx_http_realtime_totals(rlcf->zone, &t);

        degraded = (rlcf->zone->redis_conf && !t.redis_up);

        json = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                         " s:{s:I, s:I}}",
                         "status", degraded ? "degraded" : "ok",
                         "connections", (json_int_t) t.connections,
                         "users", (json_int_t) t.users,
                         "rooms", (json_int_t) t.rooms,
                         "workers", (json_int_t) t.workers,
                         "messages_in", (json_int_t) t.messages_in,
                         "messages_out", (json_int_t) t.messages_out,
                         "dropped", (json_int_t) t.dropped,
                         "zone",
                           "size", (json_int_t) t.size,
                           "used", (json_int_t) t.used);

        if (json && rlcf->zone->history_max
            && json_object_set_new(json, "history",
                   json_pack("{s:I, s:I, s:I}",
                             "rooms", (json_int_t) t.history_rooms,
                             "messages", (json_int_t) t.history_messages,
                             "bytes", (json_int_t) t.history_bytes))
               != 0)
        {
            json_decref(json);
            json = NULL;
        }

        if (json && rlcf->zone->redis_conf
            && json_object_set_new(json, "redis",
                   json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:o}",
                             "status", t.redis_up ? "up" : "down",
                             "instance", rlcf->zone->sh->instance,
                             "subscribed", (int) t.redis_subscribed,
                             "outbox", (json_int_t) t.redis_outbox,
                             "published", (json_int_t) t.redis_published,
                             "received", (json_int_t) t.redis_received,
                             "unsynced", (json_int_t) t.redis_unsynced,
                             "errors", (json_int_t) t.redis_errors,
                             "workers",
                             ngx_http_realtime_redis_workers(rlcf->zone)))
               != 0)
        {
            json_decref(json);
            json = NULL;
        }

        if (json && rlcf->zone->redis_conf && rlcf->zone->redis_conf->cluster
            && json_object_set_new(json_object_get(json, "redis"), "cluster",
                   ngx_http_realtime_redis_cluster(rlcf->zone))
               != 0)
        {
            json_decref(json);
            json = NULL;
        }

        if (degraded && rlcf->status_strict) {
            status = NGX_HTTP_SERVICE_UNAVAILABLE;
        }
    }

    rc = ngx_http_realtime_send_json_response(r, status, json);
    json_decref(json);

    return rc;
}


static ngx_int_t
ngx_http_realtime_status_get(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_realtime_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                            "METHOD_NOT_ALLOWED",
                                            "use GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return NGX_OK;
}


/* "battle%3A42" is "battle:42" */

static ngx_int_t
ngx_http_realtime_status_arg(ngx_http_request_t *r, ngx_str_t *arg,
    ngx_str_t *name)
{
    u_char  *dst, *src;

    name->data = ngx_pnalloc(r->pool, arg->len);
    if (name->data == NULL) {
        return NGX_ERROR;
    }

    dst = name->data;
    src = arg->data;

    ngx_unescape_uri(&dst, &src, arg->len, NGX_UNESCAPE_URI);

    name->len = dst - name->data;

    return NGX_OK;
}


static void
ngx_http_realtime_totals(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_totals_t *t)
{
    ngx_uint_t                  i;
    ngx_slab_pool_t            *shpool;
    ngx_http_realtime_slot_t   *s;
    ngx_http_realtime_shctx_t  *sh;

    sh = zone->sh;
    shpool = zone->shpool;

    ngx_memzero(t, sizeof(ngx_http_realtime_totals_t));

    ngx_shmtx_lock(&shpool->mutex);

    t->connections = sh->nconnections;
    t->users = sh->nusers;
    t->rooms = sh->nrooms;
    t->messages_in = sh->retired_in;
    t->messages_out = sh->retired_out;
    t->dropped = sh->retired_dropped;

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &sh->slots[i];

        if (s->pid == 0) {
            continue;
        }

        t->workers++;
        t->messages_in += s->messages_in;
        t->messages_out += s->messages_out;
        t->dropped += s->dropped;
    }

    t->history_rooms = sh->history_rooms;
    t->history_messages = sh->history_messages;
    t->history_bytes = sh->history_bytes;

    t->size = zone->shm_zone->shm.size;
    t->used = t->size - shpool->pfree * ngx_pagesize;

    /* subscribed, every channel confirmed, and every worker publishes */

    t->redis_subscribed = (sh->redis_up && sh->redis_leader
                           && kill(sh->redis_leader, 0) == 0);

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &sh->slots[i];

        if (s->pid) {
            t->redis_pub_down += !s->redis_pub;
            t->redis_outbox += s->redis_outbox;
        }
    }

    t->redis_up = t->redis_subscribed && t->redis_pub_down == 0;
    t->redis_published = sh->redis_published;
    t->redis_received = sh->redis_received;
    t->redis_unsynced = sh->redis_unsynced;
    t->redis_errors = sh->redis_errors;

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * Redis Cluster: the masters as the leader sees them (its own command
 * connection, its subscriber), the slots they cover, redirections
 */

static json_t *
ngx_http_realtime_redis_cluster(ngx_http_realtime_zone_t *zone)
{
    json_t                             *nodes, *node;
    u_char                              name[NGX_HTTP_REALTIME_NODE_NAME];
    ngx_uint_t                          i, n, slots;
    ngx_http_realtime_shctx_t          *sh;
    ngx_http_realtime_redis_node_sh_t   copy[NGX_HTTP_REALTIME_REDIS_NODES];

    sh = zone->sh;
    n = ngx_http_realtime_redis_nodes(zone, copy, &slots);

    nodes = json_array();

    for (i = 0; nodes && i < n; i++) {
        ngx_http_realtime_redis_node_name(name, &copy[i]);

        node = json_pack("{s:s, s:I, s:b, s:b, s:I}",
                         "node", (char *) name,
                         "slots", (json_int_t) copy[i].slots,
                         "connected", (int) copy[i].connected,
                         "subscribed", (int) copy[i].subscribed,
                         "pending", (json_int_t) copy[i].pending);

        if (node == NULL || json_array_append_new(nodes, node) != 0) {
            json_decref(nodes);
            return NULL;
        }
    }

    return json_pack("{s:I, s:I, s:I, s:I, s:o}",
                     "slots", (json_int_t) slots,
                     "redirects", (json_int_t) sh->redis_redirects,
                     "tryagain", (json_int_t) sh->redis_tryagain,
                     "refreshes", (json_int_t) sh->redis_refreshes,
                     "nodes", nodes);
}


/* ip:port, [ip6]:port */

static void
ngx_http_realtime_redis_node_name(u_char *buf,
    ngx_http_realtime_redis_node_sh_t *node)
{
    if (ngx_strchr(node->addr, ':')) {
        ngx_sprintf(buf, "[%s]:%ui%Z", node->addr, node->port);

    } else {
        ngx_sprintf(buf, "%s:%ui%Z", node->addr, node->port);
    }
}


/* the leader's masters, copied under the lock */

static ngx_uint_t
ngx_http_realtime_redis_nodes(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_redis_node_sh_t *copy, ngx_uint_t *slots)
{
    ngx_uint_t                  n;
    ngx_http_realtime_shctx_t  *sh;

    sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    n = sh->redis_nodes ? ngx_min(sh->redis_nnodes,
                                  NGX_HTTP_REALTIME_REDIS_NODES) : 0;
    *slots = sh->redis_slots;

    if (n) {
        ngx_memcpy(copy, sh->redis_nodes,
                   n * sizeof(ngx_http_realtime_redis_node_sh_t));
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


/* each worker's connection for publishing and its outbox */

static json_t *
ngx_http_realtime_redis_workers(ngx_http_realtime_zone_t *zone)
{
    json_t                    *workers, *w;
    ngx_uint_t                 i, n;
    ngx_http_realtime_slot_t  *s, copy[NGX_HTTP_REALTIME_SLOTS];

    /* copied under the lock, the JSON made after it */

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &zone->sh->slots[i];

        if (s->pid) {
            copy[n++] = *s;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    workers = json_array();

    for (i = 0; workers && i < n; i++) {
        w = json_pack("{s:I, s:s, s:I}",
                      "pid", (json_int_t) copy[i].pid,
                      "publish", copy[i].redis_pub ? "up" : "down",
                      "outbox", (json_int_t) copy[i].redis_outbox);

        if (w == NULL || json_array_append_new(workers, w) != 0) {
            json_decref(workers);
            return NULL;
        }
    }

    return workers;
}


/* ?room=R: the users of a room with their socket counts */

static json_t *
ngx_http_realtime_status_room(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name)
{
    json_t                            *users, *json;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_realtime_sh_room_t       *room;
    ngx_http_realtime_sh_room_user_t  *ru;

    json = NULL;

    users = json_array();
    if (users == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    room = (ngx_http_realtime_sh_room_t *)
               ngx_str_rbtree_lookup(&zone->sh->rooms, name,
                                     ngx_crc32_short(name->data, name->len));
    if (room == NULL) {
        goto done;
    }

    sentinel = room->users.sentinel;

    if (room->users.root != sentinel) {
        for (node = ngx_rbtree_min(room->users.root, sentinel);
             node;
             node = ngx_rbtree_next(&room->users, node))
        {
            ru = (ngx_http_realtime_sh_room_user_t *) node;

            json_array_append_new(users,
                json_pack("{s:s%, s:I}",
                          "userId", ru->sn.str.data, ru->sn.str.len,
                          "sockets", (json_int_t) ru->nsockets));
        }
    }

    json = json_pack("{s:s%, s:I, s:O}", "room", name->data, name->len,
                     "members", (json_int_t) room->nsockets,
                     "users", users);

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);
    json_decref(users);

    return json;
}


/* ?user=U: the connections of a user, the judge's getConnectionId */

static json_t *
ngx_http_realtime_status_user(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name)
{
    json_t                       *conns, *json;
    ngx_queue_t                  *q;
    ngx_http_realtime_sh_conn_t  *conn;
    ngx_http_realtime_sh_user_t  *user;
    u_char                        id[NGX_INT64_LEN];

    json = NULL;

    conns = json_array();
    if (conns == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    user = (ngx_http_realtime_sh_user_t *)
               ngx_str_rbtree_lookup(&zone->sh->users, name,
                                     ngx_crc32_short(name->data, name->len));
    if (user == NULL) {
        goto done;
    }

    for (q = ngx_queue_head(&user->conns);
         q != ngx_queue_sentinel(&user->conns);
         q = ngx_queue_next(q))
    {
        conn = ngx_queue_data(q, ngx_http_realtime_sh_conn_t, user_link);

        json_array_append_new(conns,
            json_pack("{s:s%, s:I, s:I}",
                      "connectionId", id, ngx_sprintf(id, "%uL", conn->id) - id,
                      "pid", (json_int_t) zone->sh->slots[conn->slot].pid,
                      "since", (json_int_t) conn->since));
    }

    json = json_pack("{s:s%, s:O}", "userId", name->data, name->len,
                     "connections", conns);

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);
    json_decref(conns);

    return json;
}


ngx_int_t
ngx_http_realtime_metrics_handler(ngx_http_request_t *r)
{
    u_char                        *p, *start;
    size_t                         len;
    ngx_int_t                      rc;
    ngx_str_t                      type, *zn;
    ngx_uint_t                     i, f;
    ngx_http_realtime_slot_t      *s;
    ngx_http_realtime_zone_t      *zone;
    ngx_http_realtime_totals_t     t;
    ngx_http_realtime_loc_conf_t  *rlcf;

    rc = ngx_http_realtime_status_get(r);
    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : rc;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);
    zone = rlcf->zone;
    zn = &zone->name;

    ngx_http_realtime_totals(zone, &t);

    len = 4096 + 16 * zn->len
          + NGX_HTTP_REALTIME_SLOTS * 6 * (128 + zn->len)
          + 64 * (128 + zn->len)
          + 2048 + 8 * zn->len
          + NGX_HTTP_REALTIME_REDIS_NODES * 4
            * (128 + zn->len + NGX_SOCKADDR_STRLEN)
          + NGX_HTTP_REALTIME_FORWARD_ROUTES
            * (NGX_HTTP_REALTIME_FORWARD_OUTCOMES + 2)
            * (128 + zn->len + 2 * NGX_HTTP_REALTIME_FORWARD_ROUTE_NAME);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(start,
        "# HELP realtime_connections Open WebSocket connections.\n"
        "# TYPE realtime_connections gauge\n"
        "realtime_connections{zone=\"%V\"} %ui\n"
        "# HELP realtime_users Users with at least one connection.\n"
        "# TYPE realtime_users gauge\n"
        "realtime_users{zone=\"%V\"} %ui\n"
        "# HELP realtime_rooms Rooms with at least one member.\n"
        "# TYPE realtime_rooms gauge\n"
        "realtime_rooms{zone=\"%V\"} %ui\n"
        "# HELP realtime_workers Worker processes attached to the zone.\n"
        "# TYPE realtime_workers gauge\n"
        "realtime_workers{zone=\"%V\"} %ui\n"
        "# HELP realtime_zone_size_bytes Size of the shared memory zone.\n"
        "# TYPE realtime_zone_size_bytes gauge\n"
        "realtime_zone_size_bytes{zone=\"%V\"} %uz\n"
        "# HELP realtime_zone_used_bytes Used pages of the zone.\n"
        "# TYPE realtime_zone_used_bytes gauge\n"
        "realtime_zone_used_bytes{zone=\"%V\"} %uz\n"
        "# HELP realtime_zone_full_total Operations refused: zone full.\n"
        "# TYPE realtime_zone_full_total counter\n"
        "realtime_zone_full_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_queue_full_total Deliveries refused: queue full.\n"
        "# TYPE realtime_queue_full_total counter\n"
        "realtime_queue_full_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_push_held_total Push answers held until the "
        "other workers caught up.\n"
        "# TYPE realtime_push_held_total counter\n"
        "realtime_push_held_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_push_held_timeout_total Held push answers let go "
        "after 100 ms.\n"
        "# TYPE realtime_push_held_timeout_total counter\n"
        "realtime_push_held_timeout_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_purged_connections_total Connections of dead "
        "workers removed.\n"
        "# TYPE realtime_purged_connections_total counter\n"
        "realtime_purged_connections_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_messages_in_total Client messages and pushes.\n"
        "# TYPE realtime_messages_in_total counter\n"
        "realtime_messages_in_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_messages_out_total Frames queued to sockets.\n"
        "# TYPE realtime_messages_out_total counter\n"
        "realtime_messages_out_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_dropped_total Deliveries that did not happen.\n"
        "# TYPE realtime_dropped_total counter\n"
        "realtime_dropped_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_up Whether Redis sync works (1) or not.\n"
        "# TYPE realtime_redis_up gauge\n"
        "realtime_redis_up{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_published_total Publications sent to Redis.\n"
        "# TYPE realtime_redis_published_total counter\n"
        "realtime_redis_published_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_received_total Publications of other "
        "instances.\n"
        "# TYPE realtime_redis_received_total counter\n"
        "realtime_redis_received_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_unsynced_total Publications that did not "
        "reach Redis.\n"
        "# TYPE realtime_redis_unsynced_total counter\n"
        "realtime_redis_unsynced_total{zone=\"%V\"} %ui\n"
        "# HELP realtime_worker_connections Connections per worker.\n"
        "# TYPE realtime_worker_connections gauge\n",
        zn, t.connections, zn, t.users, zn, t.rooms, zn, t.workers,
        zn, t.size, zn, t.used, zn, zone->sh->zone_full,
        zn, zone->sh->queue_full, zn, zone->sh->push_held,
        zn, zone->sh->push_held_timeout, zn, zone->sh->purged,
        zn, t.messages_in, zn, t.messages_out, zn, t.dropped,
        zn, t.redis_up, zn, t.redis_published, zn, t.redis_received,
        zn, t.redis_unsynced);

    /*
     * A snapshot without the lock: counters may be a message apart.  One
     * family after the other, as the exposition format wants them.
     */

    for (f = 0; f < 4; f++) {
        if (f) {
            p = ngx_sprintf(p, "%s", ngx_http_realtime_worker_families[f]);
        }

        for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
            s = &zone->sh->slots[i];

            if (s->pid == 0) {
                continue;
            }

            p = ngx_sprintf(p, "realtime_worker_%s{zone=\"%V\",pid=\"%P\"} "
                            "%uA\n", ngx_http_realtime_worker_names[f], zn,
                            s->pid,
                            f == 0 ? (ngx_atomic_uint_t) s->connections
                            : f == 1 ? s->messages_in
                            : f == 2 ? s->messages_out : s->dropped);
        }
    }

    p = ngx_http_realtime_histogram_metrics(p, zone,
            "delivery_lag_seconds", "From a publication in this instance "
            "to its frame written to a socket.",
            offsetof(ngx_http_realtime_slot_t, delivery_lag));
    p = ngx_http_realtime_histogram_metrics(p, zone,
            "handshake_seconds", "From a WebSocket handshake's first byte "
            "to its 101.",
            offsetof(ngx_http_realtime_slot_t, handshake));

    if (zone->redis_conf) {
        p = ngx_http_realtime_redis_metrics(p, zone, &t);
    }

    if (zone->history_max) {
        p = ngx_sprintf(p,
            "# HELP realtime_history_rooms Rooms with a history.\n"
            "# TYPE realtime_history_rooms gauge\n"
            "realtime_history_rooms{zone=\"%V\"} %ui\n"
            "# HELP realtime_history_messages Publications kept.\n"
            "# TYPE realtime_history_messages gauge\n"
            "realtime_history_messages{zone=\"%V\"} %ui\n"
            "# HELP realtime_history_bytes Bytes of the publications kept.\n"
            "# TYPE realtime_history_bytes gauge\n"
            "realtime_history_bytes{zone=\"%V\"} %uz\n",
            zn, t.history_rooms, zn, t.history_messages, zn,
            t.history_bytes);
    }

    p = ngx_http_realtime_forward_metrics(p, zone);

    ngx_str_set(&type, "text/plain; version=0.0.4");

    return ngx_http_realtime_send_body(r, NGX_HTTP_OK, &type, start,
                                       p - start);
}


/* Redis: the subscription, and each worker's publishing and outbox */

static u_char *
ngx_http_realtime_redis_metrics(u_char *p, ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_totals_t *t)
{
    ngx_str_t                 *zn;
    ngx_uint_t                 i;
    ngx_http_realtime_slot_t  *s;

    zn = &zone->name;

    p = ngx_sprintf(p,
        "# HELP realtime_redis_subscribed Whether every channel of the "
        "instance is subscribed (1) or not.\n"
        "# TYPE realtime_redis_subscribed gauge\n"
        "realtime_redis_subscribed{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_worker_up Whether a worker can publish to "
        "Redis (1) or not.\n"
        "# TYPE realtime_redis_worker_up gauge\n",
        zn, t->redis_subscribed);

    /* a snapshot without the lock, as the worker lines */

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &zone->sh->slots[i];

        if (s->pid) {
            p = ngx_sprintf(p,
                    "realtime_redis_worker_up{zone=\"%V\",pid=\"%P\"} %ui\n",
                    zn, s->pid, s->redis_pub ? 1 : 0);
        }
    }

    p = ngx_sprintf(p,
        "# HELP realtime_redis_outbox Publications waiting for a worker's "
        "Redis connection.\n"
        "# TYPE realtime_redis_outbox gauge\n");

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &zone->sh->slots[i];

        if (s->pid) {
            p = ngx_sprintf(p,
                    "realtime_redis_outbox{zone=\"%V\",pid=\"%P\"} %ui\n",
                    zn, s->pid, s->redis_outbox);
        }
    }

    if (zone->redis_conf->cluster) {
        p = ngx_http_realtime_redis_cluster_metrics(p, zone);
    }

    return p;
}


/* the per-master families: name, HELP */

static const char  *ngx_http_realtime_redis_node_families[] = {
    "slots", "Slots the master serves.",
    "up", "Whether the leader's connection to the master is ready.",
    "subscribed", "Whether the leader's subscriptions on the master are "
                  "confirmed.",
    "pending", "The leader's commands on the master not answered yet."
};


static u_char *
ngx_http_realtime_redis_cluster_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone)
{
    u_char                              name[NGX_HTTP_REALTIME_NODE_NAME];
    ngx_str_t                          *zn;
    ngx_uint_t                          i, f, n, slots, v;
    const char                        **families;
    ngx_http_realtime_redis_node_sh_t   copy[NGX_HTTP_REALTIME_REDIS_NODES];

    families = ngx_http_realtime_redis_node_families;
    zn = &zone->name;
    n = ngx_http_realtime_redis_nodes(zone, copy, &slots);

    p = ngx_sprintf(p,
        "# HELP realtime_redis_cluster_slots Slots with a known master.\n"
        "# TYPE realtime_redis_cluster_slots gauge\n"
        "realtime_redis_cluster_slots{zone=\"%V\"} %ui\n"
        "# HELP realtime_redis_cluster_redirects_total MOVED and ASK "
        "replies followed, by every worker.\n"
        "# TYPE realtime_redis_cluster_redirects_total counter\n"
        "realtime_redis_cluster_redirects_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_redis_cluster_tryagain_total TRYAGAIN replies, "
        "by every worker.\n"
        "# TYPE realtime_redis_cluster_tryagain_total counter\n"
        "realtime_redis_cluster_tryagain_total{zone=\"%V\"} %uA\n"
        "# HELP realtime_redis_cluster_refreshes_total Slot maps read, "
        "by every worker.\n"
        "# TYPE realtime_redis_cluster_refreshes_total counter\n"
        "realtime_redis_cluster_refreshes_total{zone=\"%V\"} %uA\n",
        zn, slots, zn, zone->sh->redis_redirects,
        zn, zone->sh->redis_tryagain, zn, zone->sh->redis_refreshes);

    for (f = 0; f < 4; f++) {
        p = ngx_sprintf(p,
                "# HELP realtime_redis_cluster_node_%s %s\n"
                "# TYPE realtime_redis_cluster_node_%s gauge\n",
                families[2 * f], families[2 * f + 1], families[2 * f]);

        for (i = 0; i < n; i++) {
            v = f == 0 ? copy[i].slots
                : f == 1 ? copy[i].connected
                : f == 2 ? copy[i].subscribed : copy[i].pending;

            ngx_http_realtime_redis_node_name(name, &copy[i]);

            p = ngx_sprintf(p,
                    "realtime_redis_cluster_node_%s{zone=\"%V\","
                    "node=\"%s\"} %ui\n",
                    families[2 * f], zn, name, v);
        }
    }

    return p;
}


/* the lines of realtime_forward: counted in ngx_http_realtime_forward.c */

static ngx_msec_t  ngx_http_realtime_forward_buckets[] = {
    NGX_HTTP_REALTIME_FORWARD_BUCKET_MS
};

static const char  *ngx_http_realtime_forward_outcomes[] = {
    "ok", "refused", "timeout", "unavailable", "bad_reply", "busy"
};



static u_char *
ngx_http_realtime_forward_metrics(u_char *p, ngx_http_realtime_zone_t *zone)
{
    ngx_str_t                   *zn;
    ngx_uint_t                   i;
    ngx_atomic_uint_t            n, count;
    ngx_http_realtime_shctx_t   *sh;

    sh = zone->sh;
    zn = &zone->name;

    p = ngx_sprintf(p,
        "# HELP realtime_forwards_total Client events forwarded, by "
        "outcome.\n"
        "# TYPE realtime_forwards_total counter\n");

    for (i = 0; i < NGX_HTTP_REALTIME_FORWARD_OUTCOMES; i++) {
        p = ngx_sprintf(p,
                "realtime_forwards_total{zone=\"%V\",outcome=\"%s\"} %uA\n",
                zn, ngx_http_realtime_forward_outcomes[i],
                sh->forward_total[i]);
    }

    p = ngx_sprintf(p,
        "# HELP realtime_forwards_in_flight Forwards waiting or running.\n"
        "# TYPE realtime_forwards_in_flight gauge\n"
        "realtime_forwards_in_flight{zone=\"%V\"} %uA\n"
        "# HELP realtime_forward_latency_seconds From the event to the "
        "answer.\n"
        "# TYPE realtime_forward_latency_seconds histogram\n",
        zn, sh->forward_inflight);

    count = 0;

    for (i = 0; i <= NGX_HTTP_REALTIME_FORWARD_BUCKETS; i++) {
        n = sh->forward_latency[i];
        count += n;

        if (i < NGX_HTTP_REALTIME_FORWARD_BUCKETS) {
            p = ngx_sprintf(p,
                    "realtime_forward_latency_seconds_bucket{zone=\"%V\","
                    "le=\"%ui.%03ui\"} %uA\n", zn,
                    ngx_http_realtime_forward_buckets[i] / 1000,
                    ngx_http_realtime_forward_buckets[i] % 1000, count);
        }
    }

    p = ngx_sprintf(p,
            "realtime_forward_latency_seconds_bucket{zone=\"%V\","
            "le=\"+Inf\"} %uA\n"
            "realtime_forward_latency_seconds_sum{zone=\"%V\"} "
            "%uA.%03uA\n"
            "realtime_forward_latency_seconds_count{zone=\"%V\"} %uA\n",
            zn, count, zn, sh->forward_latency_ms / 1000,
            sh->forward_latency_ms % 1000, zn, count);

    return ngx_http_realtime_forward_route_metrics(p, zone);
}


/* by route: its event (the hook's name for hooks) and its URI */

static u_char *
ngx_http_realtime_forward_route_metrics(u_char *p,
    ngx_http_realtime_zone_t *zone)
{
    ngx_str_t                              *zn;
    ngx_uint_t                              i, j, n;
    ngx_http_realtime_forward_route_sh_t   *m;

    zn = &zone->name;
    n = zone->sh->nforward_routes;
    ngx_memory_barrier();

    p = ngx_sprintf(p,
        "# HELP realtime_forward_route_total Client events forwarded, by "
        "route and outcome.\n"
        "# TYPE realtime_forward_route_total counter\n");

    for (i = 0; i < n; i++) {
        m = &zone->sh->forward_routes[i];

        for (j = 0; j < NGX_HTTP_REALTIME_FORWARD_OUTCOMES; j++) {
            p = ngx_sprintf(p, "realtime_forward_route_total{zone=\"%V\",",
                            zn);
            p = ngx_http_realtime_route_labels(p, m);
            p = ngx_sprintf(p, ",outcome=\"%s\"} %uA\n",
                            ngx_http_realtime_forward_outcomes[j],
                            m->total[j]);
        }
    }

    p = ngx_sprintf(p,
        "# HELP realtime_forward_route_latency_seconds From the event to "
        "the answer, by route.\n"
        "# TYPE realtime_forward_route_latency_seconds summary\n");

    for (i = 0; i < n; i++) {
        m = &zone->sh->forward_routes[i];

        p = ngx_sprintf(p, "realtime_forward_route_latency_seconds_sum"
                        "{zone=\"%V\",", zn);
        p = ngx_http_realtime_route_labels(p, m);
        p = ngx_sprintf(p, "} %uA.%03uA\n"
                        "realtime_forward_route_latency_seconds_count"
                        "{zone=\"%V\",",
                        m->latency_ms / 1000, m->latency_ms % 1000, zn);
        p = ngx_http_realtime_route_labels(p, m);
        p = ngx_sprintf(p, "} %uA\n", m->answered);
    }

    return p;
}


/* event="...",uri="...": escaped as Prometheus label values */

static u_char *
ngx_http_realtime_route_labels(u_char *p,
    ngx_http_realtime_forward_route_sh_t *m)
{
    p = ngx_cpymem(p, "event=\"", sizeof("event=\"") - 1);
    p = ngx_http_realtime_label_escape(p, m->name, m->event_len);
    p = ngx_cpymem(p, "\",uri=\"", sizeof("\",uri=\"") - 1);
    p = ngx_http_realtime_label_escape(p, m->name + m->event_len,
                                       m->len - m->event_len);
    *p++ = '"';

    return p;
}


static u_char *
ngx_http_realtime_label_escape(u_char *p, u_char *s, size_t len)
{
    while (len--) {
        switch (*s) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = *s;
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = *s;
        }

        s++;
    }

    return p;
}
