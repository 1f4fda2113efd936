
/*
 * Copyright (C) ngx-realtime developers
 *
 * The hub: rooms, users and connections in the shared memory zone, that
 * every worker sees, and the worker-local indexes that reach this
 * worker's sockets; publishing and delivering.  Everything in the zone is
 * changed under the slab pool's mutex.  The zone itself and the workers'
 * slots are ngx_http_realtime_zone.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


static void ngx_http_realtime_sh_leave(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_member_t *m, ngx_uint_t slot);
static void *ngx_http_realtime_local_node(ngx_rbtree_t *tree,
    ngx_str_t *name, size_t size);
static void ngx_http_realtime_local_leave(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm);
static ngx_int_t ngx_http_realtime_room_recipients(
    ngx_http_realtime_zone_t *zone, ngx_str_t *target, ngx_str_t *except,
    ngx_uint_t *recipients);
static ngx_int_t ngx_http_realtime_publish_post(
    ngx_http_realtime_zone_t *zone, ngx_uint_t type, ngx_str_t *target,
    ngx_str_t *except, ngx_http_realtime_session_t *skip,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_history_pos_t *at,
    ngx_uint_t plain, ngx_uint_t *recipients);
static ngx_uint_t ngx_http_realtime_room_except(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_room_t *room, ngx_str_t *except);


/*
 * Registers a new socket: its user and its id.  NGX_HTTP_REALTIME_LIMIT
 * when the user has realtime_max_connections_per_user sockets already.
 */

ngx_int_t
ngx_http_realtime_room_connect(ngx_http_realtime_session_t *s)
{
    u_char                        *p;
    uint64_t                       id;
    ngx_str_t                      name;
    ngx_uint_t                     created;
    ngx_slab_pool_t               *shpool;
    ngx_http_realtime_zone_t      *zone;
    ngx_http_realtime_slot_t      *slot;
    ngx_http_realtime_sh_conn_t   *conn;
    ngx_http_realtime_sh_user_t   *user;
    ngx_http_realtime_local_user_t *lu;

    zone = s->zone;
    shpool = zone->shpool;

    if (zone->slot == NGX_HTTP_REALTIME_SLOTS) {
        return NGX_ERROR;
    }

    slot = &zone->sh->slots[zone->slot];

    ngx_shmtx_lock(&shpool->mutex);

    id = ++zone->sh->next_id;

    p = s->id_data;
    s->id.data = p;
    s->id.len = ngx_sprintf(p, "%uL", id) - p;

    /* an anonymous user is its connection */

    if (s->user.len == 0) {
        s->user = s->id;
    }

    name = s->user;

    user = ngx_http_realtime_sh_node(zone, &zone->sh->users, &name,
                                     sizeof(ngx_http_realtime_sh_user_t), 1,
                                     &created);
    if (user == NULL) {
        goto full;
    }

    if (created) {
        ngx_queue_init(&user->conns);
        zone->sh->nusers++;
        zone->sh->users_version++;

    } else if (s->conf->max_user_connections
               && user->nconns >= s->conf->max_user_connections)
    {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_HTTP_REALTIME_LIMIT;
    }

    conn = ngx_slab_calloc_locked(shpool,
                                  sizeof(ngx_http_realtime_sh_conn_t));
    if (conn == NULL) {
        if (created) {
            ngx_http_realtime_sh_node_free(zone, &zone->sh->users,
                                           &user->sn);
            zone->sh->nusers--;
        }

        goto full;
    }

    conn->id = id;
    conn->slot = zone->slot;
    conn->user = user;
    conn->since = ngx_time();
    ngx_queue_init(&conn->members);
    ngx_queue_insert_tail(&user->conns, &conn->user_link);

    user->nconns++;
    slot->connections++;
    zone->sh->nconnections++;

    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_USER,
                                          &name, NULL);

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_realtime_redis_wake(zone);

    s->sh_conn = conn;

    lu = ngx_http_realtime_local_node(&zone->users, &name,
                                      sizeof(ngx_http_realtime_local_user_t));
    if (lu == NULL) {
        ngx_http_realtime_room_disconnect(s);
        return NGX_ERROR;
    }

    if (lu->conns.next == NULL) {
        ngx_queue_init(&lu->conns);
    }

    s->local_user = lu;
    ngx_queue_insert_tail(&lu->conns, &s->user_link);
    ngx_queue_insert_tail(&zone->conns, &s->zone_link);
    ngx_queue_init(&s->rooms);

    return NGX_OK;

full:

    ngx_shmtx_unlock(&shpool->mutex);
    (void) ngx_atomic_fetch_add(&zone->sh->zone_full, 1);

    ngx_log_error(NGX_LOG_ERR, s->log, 0,
                  "realtime zone \"%V\" is full, connection refused",
                  &zone->name);

    return NGX_HTTP_REALTIME_ZONE_FULL;
}


/*
 * Gives a session without rooms another user (the judge's setUserId):
 * its connection moves to the user's list in the zone and here.  The
 * name is the zone's copy, which lives as long as the user has sockets.
 * NGX_DECLINED: the session is in rooms.
 */

ngx_int_t
ngx_http_realtime_room_identify(ngx_http_realtime_session_t *s,
    ngx_str_t *name)
{
    ngx_uint_t                       created;
    ngx_slab_pool_t                 *shpool;
    ngx_http_realtime_zone_t        *zone;
    ngx_http_realtime_sh_conn_t     *conn;
    ngx_http_realtime_sh_user_t     *user, *old;
    ngx_http_realtime_local_user_t  *lu, *olu;

    if (s->nrooms) {
        return NGX_DECLINED;
    }

    zone = s->zone;
    shpool = zone->shpool;
    conn = s->sh_conn;

    lu = ngx_http_realtime_local_node(&zone->users, name,
                                      sizeof(ngx_http_realtime_local_user_t));
    if (lu == NULL) {
        return NGX_ERROR;
    }

    if (lu->conns.next == NULL) {
        ngx_queue_init(&lu->conns);
    }

    ngx_shmtx_lock(&shpool->mutex);

    user = ngx_http_realtime_sh_node(zone, &zone->sh->users, name,
                                     sizeof(ngx_http_realtime_sh_user_t), 1,
                                     &created);
    if (user == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        goto failed;
    }

    if (created) {
        ngx_queue_init(&user->conns);
        zone->sh->nusers++;

    } else if (user == conn->user) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_OK;

    } else if (s->conf->max_user_connections
               && user->nconns >= s->conf->max_user_connections)
    {
        ngx_shmtx_unlock(&shpool->mutex);
        if (ngx_queue_empty(&lu->conns)) {
            ngx_rbtree_delete(&zone->users, &lu->sn.node);
            ngx_free(lu);
        }
        return NGX_HTTP_REALTIME_LIMIT;
    }

    old = conn->user;

    ngx_queue_remove(&conn->user_link);
    old->nconns--;

    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_USER,
                                          &old->sn.str, NULL);

    if (old->nconns == 0) {
        ngx_http_realtime_sh_node_free(zone, &zone->sh->users, &old->sn);
        zone->sh->nusers--;
    }

    ngx_queue_insert_tail(&user->conns, &conn->user_link);
    user->nconns++;
    conn->user = user;
    zone->sh->users_version++;

    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_USER,
                                          &user->sn.str, NULL);

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_realtime_redis_wake(zone);

    /* and the worker's index of users */

    olu = s->local_user;
    ngx_queue_remove(&s->user_link);

    if (ngx_queue_empty(&olu->conns)) {
        ngx_rbtree_delete(&zone->users, &olu->sn.node);
        ngx_free(olu);
    }

    s->local_user = lu;
    ngx_queue_insert_tail(&lu->conns, &s->user_link);
    s->user = user->sn.str;

    return NGX_OK;

failed:

    if (ngx_queue_empty(&lu->conns)) {
        ngx_rbtree_delete(&zone->users, &lu->sn.node);
        ngx_free(lu);
    }

    (void) ngx_atomic_fetch_add(&zone->sh->zone_full, 1);

    return NGX_HTTP_REALTIME_ZONE_FULL;
}


/* the connection id of one socket of the user, 0: none */

uint64_t
ngx_http_realtime_room_user_conn(ngx_http_realtime_zone_t *zone,
    ngx_str_t *name)
{
    uint64_t                      id;
    ngx_http_realtime_sh_conn_t  *conn;
    ngx_http_realtime_sh_user_t  *user;

    id = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    user = (ngx_http_realtime_sh_user_t *)
               ngx_str_rbtree_lookup(&zone->sh->users, name,
                                     ngx_crc32_short(name->data, name->len));

    if (user && !ngx_queue_empty(&user->conns)) {
        conn = ngx_queue_data(ngx_queue_head(&user->conns),
                              ngx_http_realtime_sh_conn_t, user_link);
        id = conn->id;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return id;
}


/* removes a socket; its rooms must have been left already */

void
ngx_http_realtime_room_disconnect(ngx_http_realtime_session_t *s)
{
    ngx_http_realtime_zone_t        *zone;
    ngx_http_realtime_local_user_t  *lu;

    zone = s->zone;

    if (s->local_user) {
        lu = s->local_user;

        ngx_queue_remove(&s->user_link);
        ngx_queue_remove(&s->zone_link);

        if (ngx_queue_empty(&lu->conns)) {
            ngx_rbtree_delete(&zone->users, &lu->sn.node);
            ngx_free(lu);
        }

        s->local_user = NULL;
    }

    if (s->sh_conn) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        ngx_http_realtime_sh_disconnect(zone, s->sh_conn);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_http_realtime_redis_wake(zone);

        s->sh_conn = NULL;
    }
}


void
ngx_http_realtime_sh_disconnect(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_conn_t *conn)
{
    ngx_queue_t                    *q;
    ngx_http_realtime_sh_user_t    *user;
    ngx_http_realtime_sh_member_t  *m;

    while (!ngx_queue_empty(&conn->members)) {
        q = ngx_queue_head(&conn->members);
        m = ngx_queue_data(q, ngx_http_realtime_sh_member_t, conn_link);
        ngx_http_realtime_sh_leave(zone, m, conn->slot);
    }

    user = conn->user;

    ngx_queue_remove(&conn->user_link);

    user->nconns--;
    zone->sh->slots[conn->slot].connections--;
    zone->sh->nconnections--;

    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_USER,
                                          &user->sn.str, NULL);

    if (user->nconns == 0) {
        ngx_http_realtime_sh_node_free(zone, &zone->sh->users, &user->sn);
        zone->sh->nusers--;
        zone->sh->users_version++;
    }

    ngx_slab_free_locked(zone->shpool, conn);
}


ngx_int_t
ngx_http_realtime_room_join(ngx_http_realtime_session_t *s, ngx_str_t *room,
    ngx_uint_t *members, ngx_uint_t *first)
{
    ngx_http_realtime_history_pos_t  pos;

    return ngx_http_realtime_room_join_at(s, room, members, first, &pos);
}


/*
 * The same, and the room's place in its history at the join (pos->on 0
 * without history): the new member takes it as the last it got.
 */

/* the room of realtime_user_list_event, each instance's own */

ngx_uint_t
ngx_http_realtime_room_user_list(ngx_str_t *room)
{
    return room->len == sizeof(NGX_HTTP_REALTIME_USER_LIST_ROOM) - 1
           && ngx_strncmp(room->data, NGX_HTTP_REALTIME_USER_LIST_ROOM,
                          room->len) == 0;
}


ngx_int_t
ngx_http_realtime_room_join_at(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_uint_t *members, ngx_uint_t *first,
    ngx_http_realtime_history_pos_t *pos)
{
    ngx_uint_t                         ask, room_created, user_created;
    ngx_slab_pool_t                   *shpool;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_sh_room_t       *r;
    ngx_http_realtime_sh_member_t     *m;
    ngx_http_realtime_local_room_t    *lr;
    ngx_http_realtime_sh_room_user_t  *ru;
    ngx_http_realtime_local_member_t  *lm;
    ngx_http_realtime_history_pos_t    rp;

    zone = s->zone;
    shpool = zone->shpool;
    *first = 0;
    pos->on = 0;

    lm = ngx_http_realtime_local_find(s, room);

    if (lm) {
        /* joining twice is harmless: answer with the room as it is */
        ngx_shmtx_lock(&shpool->mutex);
        r = (ngx_http_realtime_sh_room_t *)
                ngx_str_rbtree_lookup(&zone->sh->rooms, room,
                                      ngx_crc32_short(room->data, room->len));
        *members = r ? r->nsockets : 0;
        ngx_http_realtime_history_position_locked(zone, room, pos);
        ngx_shmtx_unlock(&shpool->mutex);

        /* the member's own place: what is after it comes live */
        pos->offset = lm->offset;

        return NGX_OK;
    }

    if (s->nrooms >= s->conf->max_rooms) {
        return NGX_HTTP_REALTIME_LIMIT;
    }

    lm = ngx_alloc(sizeof(ngx_http_realtime_local_member_t),
                   s->log);
    if (lm == NULL) {
        return NGX_ERROR;
    }

    lr = ngx_http_realtime_local_node(&zone->rooms, room,
                                      sizeof(ngx_http_realtime_local_room_t));
    if (lr == NULL) {
        ngx_free(lm);
        return NGX_ERROR;
    }

    if (lr->members.next == NULL) {
        ngx_queue_init(&lr->members);
    }

    ngx_shmtx_lock(&shpool->mutex);

    r = ngx_http_realtime_sh_node(zone, &zone->sh->rooms, room,
                                  sizeof(ngx_http_realtime_sh_room_t), 1,
                                  &room_created);
    if (r == NULL) {
        goto full;
    }

    if (room_created) {
        ngx_rbtree_init(&r->users, &r->users_sentinel,
                        ngx_str_rbtree_insert_value);
        zone->sh->nrooms++;
    }

    ru = ngx_http_realtime_sh_node(zone, &r->users,
                                   &s->sh_conn->user->sn.str,
                                   sizeof(ngx_http_realtime_sh_room_user_t), 0,
                                   &user_created);
    if (ru == NULL) {
        goto full_room;
    }

    m = ngx_slab_alloc_locked(shpool, sizeof(ngx_http_realtime_sh_member_t));
    if (m == NULL) {
        if (user_created) {
            ngx_http_realtime_sh_node_free(zone, &r->users, &ru->sn);
        }

        goto full_room;
    }

    m->room = r;
    m->room_user = ru;
    ngx_queue_insert_tail(&s->sh_conn->members, &m->conn_link);

    if (user_created) {
        r->nusers++;
        *first = 1;
    }

    ru->nsockets++;
    r->nsockets++;
    r->slot_sockets[zone->slot]++;
    *members = r->nsockets;

    if (room_created) {
        ngx_http_realtime_redis_notify_locked(zone,
                                              NGX_HTTP_REALTIME_IPC_SUBSCRIBE,
                                              room, NULL);

        if (zone->history_max && zone->redis_conf) {
            ngx_http_realtime_history_resume_locked(zone, room);
        }
    }

    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_MEMBER,
                                          room, &s->user);

    /* with the member added: what is queued before is not for it */
    ngx_http_realtime_history_position_locked(zone, room, pos);

    ask = pos->on && zone->history_base && s->conf->sio_recovery
          && !ngx_http_realtime_room_user_list(room)
          && !ngx_http_realtime_history_from_redis_locked(zone, room, &rp);

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_realtime_redis_wake(zone);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime join \"%V\": %ui sockets in it%s", room,
                   *members, room_created ? ", new here" : "");

    lm->session = s;
    lm->room = lr;
    lm->sh = m;
    lm->offset = pos->on ? pos->offset : 0;
    lm->seq = pos->on ? pos->seq : 0;
    lm->recovery = NULL;
    lm->floor = 0;
    lm->replayed = 0;
    lm->base = 0;
    lm->base_wait = NULL;
    lm->base_known = 0;
    lm->base_none = 0;
    ngx_queue_insert_tail(&lr->members, &lm->room_link);
    ngx_queue_insert_tail(&s->rooms, &lm->conn_link);
    s->nrooms++;

    if (ask) {
        /* where Redis is in it now, for a Socket.IO recovery elsewhere */
        (void) zone->history_base(zone, lm);
    }

    return NGX_OK;

full_room:

    if (room_created) {
        ngx_http_realtime_sh_node_free(zone, &zone->sh->rooms, &r->sn);
        zone->sh->nrooms--;
    }

full:

    ngx_shmtx_unlock(&shpool->mutex);
    (void) ngx_atomic_fetch_add(&zone->sh->zone_full, 1);

    if (ngx_queue_empty(&lr->members)) {
        ngx_rbtree_delete(&zone->rooms, &lr->sn.node);
        ngx_free(lr);
    }

    ngx_free(lm);

    ngx_log_error(NGX_LOG_ERR, s->log, 0,
                  "realtime zone \"%V\" is full, join \"%V\" refused",
                  &zone->name, room);

    return NGX_HTTP_REALTIME_ZONE_FULL;
}


/*
 * NGX_HTTP_REALTIME_NOT_FOUND when the socket is not in the room; *last
 * is set when it was the user's last socket there.
 */

ngx_int_t
ngx_http_realtime_room_leave(ngx_http_realtime_session_t *s, ngx_str_t *room,
    ngx_uint_t *members, ngx_uint_t *last)
{
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_sh_room_t       *r;
    ngx_http_realtime_local_member_t  *lm;

    zone = s->zone;

    lm = ngx_http_realtime_local_find(s, room);
    if (lm == NULL) {
        return NGX_HTTP_REALTIME_NOT_FOUND;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    r = lm->sh->room;
    *last = (lm->sh->room_user->nsockets == 1);
    *members = r->nsockets - 1;

    ngx_http_realtime_sh_leave(zone, lm->sh, zone->slot);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime leave \"%V\": %ui sockets left in it", room,
                   *members);

    ngx_http_realtime_redis_wake(zone);

    ngx_http_realtime_local_leave(zone, lm);

    return NGX_OK;
}


static void
ngx_http_realtime_sh_leave(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_member_t *m, ngx_uint_t slot)
{
    ngx_http_realtime_sh_room_t       *r;
    ngx_http_realtime_sh_room_user_t  *ru;

    r = m->room;
    ru = m->room_user;

    ngx_queue_remove(&m->conn_link);
    ngx_slab_free_locked(zone->shpool, m);

    r->nsockets--;
    r->slot_sockets[slot]--;

    /* the record copies the names: they may be freed below */
    ngx_http_realtime_redis_notify_locked(zone, NGX_HTTP_REALTIME_IPC_MEMBER,
                                          &r->sn.str, &ru->sn.str);

    if (--ru->nsockets == 0) {
        ngx_http_realtime_sh_node_free(zone, &r->users, &ru->sn);
        r->nusers--;
    }

    if (r->nsockets == 0) {
        ngx_http_realtime_redis_notify_locked(zone,
                                          NGX_HTTP_REALTIME_IPC_UNSUBSCRIBE,
                                          &r->sn.str, NULL);

        ngx_http_realtime_sh_node_free(zone, &zone->sh->rooms, &r->sn);
        zone->sh->nrooms--;
    }
}


/* the users in a room, each once however many sockets it has there */

json_t *
ngx_http_realtime_room_presence(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room)
{
    json_t                       *users;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_str_node_t               *sn;
    ngx_http_realtime_sh_room_t  *r;

    users = json_array();
    if (users == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    r = (ngx_http_realtime_sh_room_t *)
            ngx_str_rbtree_lookup(&zone->sh->rooms, room,
                                  ngx_crc32_short(room->data, room->len));

    if (r) {
        root = r->users.root;
        sentinel = r->users.sentinel;

        if (root != sentinel) {
            for (node = ngx_rbtree_min(root, sentinel);
                 node;
                 node = ngx_rbtree_next(&r->users, node))
            {
                sn = (ngx_str_node_t *) node;

                if (json_array_append_new(users,
                        json_stringn((char *) sn->str.data, sn->str.len))
                    != 0)
                {
                    break;
                }
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return users;
}


/*
 * Sends a frame to a room, a user or everyone, on every worker: one copy
 * goes to the queue of each other worker that has a receiver, then this
 * worker delivers to its own sockets.  *recipients counts the sockets
 * addressed in the whole zone.
 */

ngx_int_t
ngx_http_realtime_publish(ngx_http_realtime_zone_t *zone, ngx_uint_t type,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_session_t *skip,
    ngx_http_realtime_msg_t *msg, ngx_uint_t *recipients)
{
    return ngx_http_realtime_publish_synced(zone, type, target, except, skip,
                                            msg, recipients, NULL, NULL);
}


/*
 * The same, and what became of it for the other instances (synced):
 * NGX_OK sent to Redis, NGX_AGAIN waiting in this worker's outbox,
 * NGX_DECLINED lost to them (no room in the outbox), NGX_DONE no Redis.
 */

ngx_int_t
ngx_http_realtime_publish_synced(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_uint_t *recipients, ngx_int_t *synced,
    ngx_http_realtime_published_t *wait)
{
    ngx_int_t  rc, sync;

    if (zone->sync && type == NGX_HTTP_REALTIME_TO_ROOM
        && zone->history_max)
    {
        /*
         * Redis gives a room with history its offsets: the publication
         * comes back from Redis to be delivered here as everywhere else
         * (ngx_http_realtime_publish_zone_at()).
         */

        msg->skip = (skip && skip->sh_conn) ? skip->sh_conn->id : 0;

        sync = zone->sync(zone, type, target, except, msg, wait);
        if (synced) {
            *synced = sync;
        }

        if (sync == NGX_DECLINED) {
            /* lost to Redis: this instance has it, without a position */
            return ngx_http_realtime_publish_post(zone, type, target, except,
                                                  skip, msg, NULL, 1,
                                                  recipients);
        }

        return ngx_http_realtime_room_recipients(zone, target, except,
                                                 recipients);
    }

    rc = ngx_http_realtime_publish_zone(zone, type, target, except, skip, msg,
                                        recipients);

    /* other instances may have receivers whatever this one has */

    sync = zone->sync ? zone->sync(zone, type, target, except, msg, NULL)
                      : NGX_DONE;

    if (synced) {
        *synced = sync;
    }

    return rc;
}


/* the publication within this instance */

ngx_int_t
ngx_http_realtime_publish_zone(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_uint_t *recipients)
{
    if (skip && skip->sh_conn) {
        msg->skip = skip->sh_conn->id;
    }

    return ngx_http_realtime_publish_post(zone, type, target, except, skip,
                                          msg, NULL, 0, recipients);
}


/*
 * A room publication as Redis gave it its position (at), from the
 * leader's subscription or the answer to the publisher: NGX_DECLINED if
 * it was here already.
 */

ngx_int_t
ngx_http_realtime_publish_zone_at(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_history_pos_t *at)
{
    return ngx_http_realtime_publish_post(zone, NGX_HTTP_REALTIME_TO_ROOM,
                                          target, except, NULL, msg, at,
                                          at == NULL, NULL);
}


/* the sockets of this instance a room publication is for */

static ngx_int_t
ngx_http_realtime_room_recipients(ngx_http_realtime_zone_t *zone,
    ngx_str_t *target, ngx_str_t *except, ngx_uint_t *recipients)
{
    ngx_uint_t                    n;
    ngx_http_realtime_sh_room_t  *room;

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    room = (ngx_http_realtime_sh_room_t *)
               ngx_str_rbtree_lookup(&zone->sh->rooms, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
    if (room) {
        n = room->nsockets - ngx_http_realtime_room_except(zone, room,
                                                           except);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (recipients) {
        *recipients = n;
    }

    return n ? NGX_OK : NGX_HTTP_REALTIME_NOT_FOUND;
}


/*
 * To every worker with a receiver: through the queues of the others and
 * straight to this one's sockets, or, for a room with history, through
 * every queue, this one's too, in offset order.  plain: without a
 * position, whatever the room has.
 */

static ngx_int_t
ngx_http_realtime_publish_post(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_session_t *skip, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_history_pos_t *at, ngx_uint_t plain,
    ngx_uint_t *recipients)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i, n, nwake, mine;
    ngx_pid_t                     wake[NGX_HTTP_REALTIME_SLOTS];
    uint32_t                      wake_id[NGX_HTTP_REALTIME_SLOTS];
    ngx_queue_t                  *q;
    ngx_http_realtime_slot_t     *s;
    ngx_http_realtime_shctx_t    *sh;
    ngx_http_realtime_msg_t      *hmsg;
    ngx_http_realtime_sh_room_t  *room;
    ngx_http_realtime_sh_user_t  *user;
    ngx_http_realtime_sh_conn_t  *conn;
    uint32_t                      sockets[NGX_HTTP_REALTIME_SLOTS];

    sh = zone->sh;
    rc = NGX_OK;
    n = 0;
    nwake = 0;
    hmsg = NULL;

    ngx_memzero(sockets, sizeof(sockets));

    if (msg->time == 0) {
        msg->time = ngx_current_msec;
    }

    if (type == NGX_HTTP_REALTIME_TO_ROOM && zone->history_max && !plain) {
        /* made before the lock; its offset is written under it */
        hmsg = ngx_http_realtime_history_frame(msg);

        if (hmsg) {
            hmsg->skip = msg->skip;
            hmsg->time = msg->time;
            msg = hmsg;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (hmsg
        && ngx_http_realtime_history_append_locked(zone, target, hmsg, at)
           == NGX_DECLINED)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_realtime_msg_release(hmsg);
        return NGX_DECLINED;
    }

    switch (type) {

    case NGX_HTTP_REALTIME_TO_ROOM:
        room = (ngx_http_realtime_sh_room_t *)
                   ngx_str_rbtree_lookup(&sh->rooms, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
        if (room) {
            ngx_memcpy(sockets, room->slot_sockets, sizeof(sockets));
            n = room->nsockets - ngx_http_realtime_room_except(zone, room,
                                                               except);
        }

        break;

    case NGX_HTTP_REALTIME_TO_USER:
        user = (ngx_http_realtime_sh_user_t *)
                   ngx_str_rbtree_lookup(&sh->users, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
        if (user) {
            for (q = ngx_queue_head(&user->conns);
                 q != ngx_queue_sentinel(&user->conns);
                 q = ngx_queue_next(q))
            {
                conn = ngx_queue_data(q, ngx_http_realtime_sh_conn_t,
                                      user_link);
                sockets[conn->slot]++;
            }

            n = user->nconns;
        }

        break;

    default: /* NGX_HTTP_REALTIME_TO_ALL */

        for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
            sockets[i] = sh->slots[i].connections;
        }

        n = sh->nconnections;

        if (except && except->len) {
            user = (ngx_http_realtime_sh_user_t *)
                       ngx_str_rbtree_lookup(&sh->users, except,
                                         ngx_crc32_short(except->data,
                                                         except->len));
            n -= user ? user->nconns : 0;
        }
    }

    mine = sockets[zone->slot];

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &sh->slots[i];

        /*
         * A room with history goes through this worker's queue too: the
         * queues take its publications in offset order.
         */

        if ((i == zone->slot && !hmsg) || sockets[i] == 0 || s->pid == 0) {
            continue;
        }

        switch (ngx_http_realtime_ipc_post_locked(zone, i, type, target,
                                                  except, msg, sockets[i]))
        {
        case NGX_OK:
            break;

        case NGX_DONE:
            /* the queue was empty: the worker needs a wakeup */
            wake[nwake] = s->pid;
            wake_id[nwake++] = s->ipc_id;
            break;

        default:
            (void) ngx_atomic_fetch_add(&s->dropped, 1);
            (void) ngx_atomic_fetch_add(&sh->queue_full, 1);
            rc = NGX_HTTP_REALTIME_QUEUE_FULL;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime publish type %ui \"%V\": %ui sockets, "
                   "%ui here, offset %uL", type, target, n, mine,
                   msg->offset);

    for (i = 0; i < nwake; i++) {
        ngx_http_realtime_ipc_wake(wake[i], wake_id[i]);
    }

    if (mine && hmsg == NULL) {
        ngx_http_realtime_deliver(zone, type, target, except, skip, msg);
    }

    if (hmsg) {
        ngx_http_realtime_msg_release(hmsg);
    }

    if (recipients) {
        *recipients = n;
    }

    if (rc == NGX_OK && n == 0) {
        return NGX_HTTP_REALTIME_NOT_FOUND;
    }

    return rc;
}


/* the sockets of the excepted user in a room */

static ngx_uint_t
ngx_http_realtime_room_except(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_room_t *room, ngx_str_t *except)
{
    ngx_http_realtime_sh_room_user_t  *ru;

    if (except == NULL || except->len == 0) {
        return 0;
    }

    ru = (ngx_http_realtime_sh_room_user_t *)
             ngx_str_rbtree_lookup(&room->users, except,
                                   ngx_crc32_short(except->data,
                                                   except->len));

    return ru ? ru->nsockets : 0;
}


/* this worker's part of a publication; returns the sockets reached */

ngx_uint_t
ngx_http_realtime_deliver(ngx_http_realtime_zone_t *zone, ngx_uint_t type,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_session_t *skip,
    ngx_http_realtime_msg_t *msg)
{
    uint32_t                           hash;
    ngx_uint_t                         n;
    ngx_queue_t                       *q, *next, *head;
    ngx_http_realtime_session_t       *s;
    ngx_http_realtime_local_room_t    *lr;
    ngx_http_realtime_local_user_t    *lu;
    ngx_http_realtime_local_member_t  *lm;

    hash = ngx_crc32_short(target->data, target->len);
    n = 0;

    switch (type) {

    case NGX_HTTP_REALTIME_TO_ROOM:
        lr = (ngx_http_realtime_local_room_t *)
                 ngx_str_rbtree_lookup(&zone->rooms, target, hash);
        if (lr == NULL) {
            return 0;
        }

        head = &lr->members;
        break;

    case NGX_HTTP_REALTIME_TO_USER:
        lu = (ngx_http_realtime_local_user_t *)
                 ngx_str_rbtree_lookup(&zone->users, target, hash);
        if (lu == NULL) {
            return 0;
        }

        head = &lu->conns;
        break;

    default: /* NGX_HTTP_REALTIME_TO_ALL */
        head = &zone->conns;
    }

    /* a send may close a socket that overflows; its link goes away */

    for (q = ngx_queue_head(head); q != ngx_queue_sentinel(head); q = next) {
        next = ngx_queue_next(q);

        switch (type) {

        case NGX_HTTP_REALTIME_TO_ROOM:
            lm = ngx_queue_data(q, ngx_http_realtime_local_member_t,
                                room_link);
            s = lm->session;

            if (lm->recovery) {
                /* its recovery replays it from the history */
                continue;
            }

            if (msg->seq) {
                /*
                 * Queued before it joined, or replayed to it already: the
                 * zone's sequence, as offsets start again with an epoch.
                 */
                if (msg->seq <= lm->seq) {
                    continue;
                }

                if (lm->floor) {
                    /* Redis replayed it; the subscription was behind */
                    if (msg->offset <= lm->floor) {
                        continue;
                    }

                    lm->floor = 0;
                }

                lm->seq = msg->seq;
                lm->offset = msg->offset;
            }

            break;

        case NGX_HTTP_REALTIME_TO_USER:
            s = ngx_queue_data(q, ngx_http_realtime_session_t, user_link);
            break;

        default:
            s = ngx_queue_data(q, ngx_http_realtime_session_t, zone_link);
        }

        if (s == skip
            || (msg->skip && s->sh_conn && s->sh_conn->id == msg->skip)
            || (except && except->len
                && s->user.len == except->len
                && ngx_memcmp(s->user.data, except->data, except->len) == 0))
        {
            continue;
        }

        /* never frees a session: the next link stays valid */

        if (s->handler->deliver(s, msg) == NGX_OK) {
            n++;
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->slots[zone->slot].messages_out, n);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime deliver type %ui \"%V\": %ui sockets here",
                   type, target, n);

    return n;
}


ngx_http_realtime_local_member_t *
ngx_http_realtime_local_find(ngx_http_realtime_session_t *s, ngx_str_t *room)
{
    ngx_queue_t                       *q;
    ngx_http_realtime_local_member_t  *lm;

    for (q = ngx_queue_head(&s->rooms);
         q != ngx_queue_sentinel(&s->rooms);
         q = ngx_queue_next(q))
    {
        lm = ngx_queue_data(q, ngx_http_realtime_local_member_t, conn_link);

        if (lm->room->sn.str.len == room->len
            && ngx_memcmp(lm->room->sn.str.data, room->data, room->len) == 0)
        {
            return lm;
        }
    }

    return NULL;
}


static void
ngx_http_realtime_local_leave(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm)
{
    ngx_http_realtime_local_room_t  *lr;

    lr = lm->room;

    if (lm->recovery) {
        /* it ends when its timer or Redis comes back */
        lm->recovery->lm = NULL;
    }

    if (lm->base_wait) {
        lm->base_wait->lm = NULL;
    }

    ngx_queue_remove(&lm->room_link);
    ngx_queue_remove(&lm->conn_link);
    lm->session->nrooms--;

    if (ngx_queue_empty(&lr->members)) {
        ngx_rbtree_delete(&zone->rooms, &lr->sn.node);
        ngx_free(lr);
    }

    ngx_free(lm);
}


/*
 * Finds or creates a name-keyed node of the given size in the zone; the
 * name is stored right behind the node.
 */

void *
ngx_http_realtime_sh_node(ngx_http_realtime_zone_t *zone, ngx_rbtree_t *tree,
    ngx_str_t *name, size_t size, ngx_uint_t copy, ngx_uint_t *created)
{
    uint32_t         hash;
    ngx_str_node_t  *sn;

    hash = ngx_crc32_short(name->data, name->len);
    *created = 0;

    sn = ngx_str_rbtree_lookup(tree, name, hash);
    if (sn) {
        return sn;
    }

    /*
     * copy: the name goes right behind the node; else it is the zone's
     * already and outlives the node (a room's user names its user's)
     */

    sn = ngx_slab_calloc_locked(zone->shpool, size + (copy ? name->len : 0));
    if (sn == NULL) {
        return NULL;
    }

    sn->node.key = hash;
    sn->str.len = name->len;

    if (copy) {
        sn->str.data = (u_char *) sn + size;
        ngx_memcpy(sn->str.data, name->data, name->len);

    } else {
        sn->str.data = name->data;
    }

    ngx_rbtree_insert(tree, &sn->node);
    *created = 1;

    return sn;
}


void
ngx_http_realtime_sh_node_free(ngx_http_realtime_zone_t *zone,
    ngx_rbtree_t *tree, ngx_str_node_t *sn)
{
    ngx_rbtree_delete(tree, &sn->node);
    ngx_slab_free_locked(zone->shpool, sn);
}


/* the same for the worker-local trees, in process memory */

static void *
ngx_http_realtime_local_node(ngx_rbtree_t *tree, ngx_str_t *name,
    size_t size)
{
    uint32_t         hash;
    ngx_str_node_t  *sn;

    hash = ngx_crc32_short(name->data, name->len);

    sn = ngx_str_rbtree_lookup(tree, name, hash);
    if (sn) {
        return sn;
    }

    sn = ngx_calloc(size + name->len, ngx_cycle->log);
    if (sn == NULL) {
        return NULL;
    }

    sn->node.key = hash;
    sn->str.len = name->len;
    sn->str.data = (u_char *) sn + size;
    ngx_memcpy(sn->str.data, name->data, name->len);

    ngx_rbtree_insert(tree, &sn->node);

    return sn;
}


/*
 * Tells the worker that subscribes to Redis for this instance what
 * changed: a room to subscribe to or to drop, a user's or a member's
 * socket count to write.  Called with the zone locked; the wakeup is
 * remembered and sent by ngx_http_realtime_redis_wake() after unlocking.
 */

void
ngx_http_realtime_redis_notify_locked(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except)
{
    ngx_uint_t                 slot;
    ngx_http_realtime_slot_t  *s;

    if (zone->redis_conf == NULL || zone->sh->redis_leader == 0) {
        /* a new subscriber subscribes to, and writes, everything */
        return;
    }

    slot = zone->sh->redis_leader_slot;
    s = &zone->sh->slots[slot];

    if (s->pid != zone->sh->redis_leader) {
        return;
    }

    if (ngx_http_realtime_ipc_post_locked(zone, slot, type, target, except,
                                          &ngx_http_realtime_msg_empty, 1)
        == NGX_DONE)
    {
        zone->wake_pid = s->pid;
        zone->wake_id = s->ipc_id;
    }
}


void
ngx_http_realtime_redis_wake(ngx_http_realtime_zone_t *zone)
{
    if (zone->wake_pid) {
        ngx_http_realtime_ipc_wake(zone->wake_pid, zone->wake_id);
        zone->wake_pid = 0;
    }
}
