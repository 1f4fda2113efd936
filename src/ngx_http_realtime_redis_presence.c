
/*
 * Copyright (C) ngx-realtime developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"


typedef struct {
    ngx_http_realtime_redis_t         *rd;
    ngx_uint_t                         type;
    ngx_http_realtime_redis_lookup_pt  handler;
    void                              *data;
} ngx_http_realtime_redis_lookup_t;


static void ngx_http_realtime_redis_presence_write(
    ngx_http_realtime_redis_t *rd, ngx_uint_t type, ngx_str_t *target,
    ngx_str_t *user, ngx_uint_t n);
static void ngx_http_realtime_redis_presence_set(
    ngx_http_realtime_redis_t *rd, u_char *key, size_t klen, u_char *field,
    size_t flen, u_char *value, size_t vlen);
static u_char *ngx_http_realtime_redis_online(ngx_http_realtime_redis_t *rd,
    u_char *p);
static void ngx_http_realtime_redis_on_lookup(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_realtime_presence_answer(void *data, json_t *users,
    ngx_uint_t sockets, ngx_int_t rc);


/* a client's presence question waiting for Redis */
typedef struct {
    ngx_queue_t                        queue;    /* in s->lookups */
    ngx_http_realtime_session_t       *s;        /* NULL: it went away */
    json_t                            *users;
    json_int_t                         id;
    ngx_str_t                          room;
} ngx_http_realtime_presence_query_t;


/*
 * Cluster-wide presence.  Each instance writes, through its leader, the
 * socket counts of its users and of its room members into two hashes:
 *
 *     <prefix>user:{<user>}      <instance>         "<sockets> <expiry>"
 *     <prefix>members:{<room>}   <instance>|<user>  "<sockets> <expiry>"
 *
 * and rewrites them every third of presence_ttl.  A reader ignores
 * values past their expiry (wall-clock milliseconds, so instances need
 * synced clocks), which is how an instance that died drops out within
 * the TTL; the keys themselves expire when nobody writes them any more.
 * All writes of an instance go through one connection, in order, and
 * each writes the count the zone has at that moment.
 */

void
ngx_http_realtime_redis_presence_changed(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except)
{
    ngx_uint_t                         n;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_sh_room_t       *room;
    ngx_http_realtime_sh_user_t       *user;
    ngx_http_realtime_sh_room_user_t  *ru;

    rd = zone->redis;

    if (rd == NULL || !rd->leader || !rd->pub_ready) {
        /* the next refresh writes everything */
        return;
    }

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (type == NGX_HTTP_REALTIME_IPC_USER) {
        user = (ngx_http_realtime_sh_user_t *)
                   ngx_str_rbtree_lookup(&zone->sh->users, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
        n = user ? user->nconns : 0;

    } else {
        room = (ngx_http_realtime_sh_room_t *)
                   ngx_str_rbtree_lookup(&zone->sh->rooms, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
        if (room) {
            ru = (ngx_http_realtime_sh_room_user_t *)
                     ngx_str_rbtree_lookup(&room->users, except,
                                       ngx_crc32_short(except->data,
                                                       except->len));
            n = ru ? ru->nsockets : 0;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_realtime_redis_presence_write(rd, type, target, except, n);
}


static void
ngx_http_realtime_redis_presence_write(ngx_http_realtime_redis_t *rd,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *user, ngx_uint_t n)
{
    u_char       *p;
    size_t        klen, flen, vlen;
    ngx_time_t   *tp;
    u_char        key[64 + 16 + NGX_HTTP_REALTIME_USER_MAX];
    u_char        field[NGX_HTTP_REALTIME_INSTANCE_LEN + 1
                        + NGX_HTTP_REALTIME_USER_MAX];
    u_char        value[2 * NGX_INT64_LEN];

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_sprintf(p, (type == NGX_HTTP_REALTIME_IPC_USER)
                       ? "user:{%V}" : "members:{%V}", target);
    klen = p - key;

    p = ngx_cpymem(field, rd->zone->sh->instance,
                   NGX_HTTP_REALTIME_INSTANCE_LEN);

    if (type == NGX_HTTP_REALTIME_IPC_MEMBER) {
        *p++ = '|';
        p = ngx_cpymem(p, user->data, user->len);
    }

    flen = p - field;

    tp = ngx_timeofday();

    vlen = ngx_sprintf(value, "%ui %M", n,
                       (ngx_msec_t) (tp->sec * 1000 + tp->msec)
                       + rd->conf->presence_ttl)
           - value;

    ngx_http_realtime_redis_presence_set(rd, key, klen, field, flen,
                                         n ? value : NULL, vlen);

    if (type != NGX_HTTP_REALTIME_IPC_USER
        || rd->zone->user_list_event.len == 0)
    {
        return;
    }

    /*
     * realtime_user_list: the zone's users also in one hash,
     *
     *     <prefix>online   <instance>|<user>   "<sockets> <expiry>"
     *
     * which the other instances read when told that it changed.
     */

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_http_realtime_redis_online(rd, p);
    klen = p - key;

    p = field + NGX_HTTP_REALTIME_INSTANCE_LEN;
    *p++ = '|';
    p = ngx_cpymem(p, target->data, target->len);
    flen = p - field;

    ngx_http_realtime_redis_presence_set(rd, key, klen, field, flen,
                                         n ? value : NULL, vlen);

    ngx_http_realtime_redis_users_changed(rd);
}


/*
 * The online users' hash: on a cluster in the slot of {all}, so that
 * its writes and the notice of them go on one connection, in order.
 */

static u_char *
ngx_http_realtime_redis_online(ngx_http_realtime_redis_t *rd, u_char *p)
{
    if (rd->cluster) {
        return ngx_cpymem(p, "{all}online", 11);
    }

    return ngx_cpymem(p, "online", 6);
}


/* HSET and PEXPIRE, or HDEL when value is NULL */

static void
ngx_http_realtime_redis_presence_set(ngx_http_realtime_redis_t *rd,
    u_char *key, size_t klen, u_char *field, size_t flen, u_char *value,
    size_t vlen)
{
    if (value == NULL) {
        (void) ngx_http_realtime_redis_command(rd, key, klen, NULL, NULL,
                                               "HDEL %b %b", key, klen,
                                               field, flen);
        return;
    }

    (void) ngx_http_realtime_redis_command(rd, key, klen, NULL, NULL,
                                           "HSET %b %b %b", key, klen,
                                           field, flen, value, vlen);
    (void) ngx_http_realtime_redis_command(rd, key, klen, NULL, NULL,
                                           "PEXPIRE %b %d", key, klen,
                                           (int) rd->conf->presence_ttl);
}


/* rewrites every count of this instance, so that none expires */

void
ngx_http_realtime_redis_presence_refresh(ngx_http_realtime_redis_t *rd)
{
    u_char                            *buf, *p, *end;
    size_t                             size;
    ngx_str_t                          a, b;
    ngx_uint_t                         type, n, head[4];
    ngx_rbtree_node_t                 *node, *rnode, *sentinel;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_shctx_t         *sh;
    ngx_http_realtime_sh_room_t       *room;
    ngx_http_realtime_sh_user_t       *user;
    ngx_http_realtime_sh_room_user_t  *ru;

    zone = rd->zone;
    sh = zone->sh;

    /*
     * Copied out under the lock as records of
     * "type n len(a) len(b) a b", written after it is let go.
     */

    ngx_shmtx_lock(&zone->shpool->mutex);

    size = 64 + sh->nusers * (3 * sizeof(ngx_uint_t)
                              + NGX_HTTP_REALTIME_USER_MAX + 16)
           + sh->nrooms * NGX_HTTP_REALTIME_ROOM_MAX;

    for (node = (sh->rooms.root == sh->rooms.sentinel) ? NULL
                : ngx_rbtree_min(sh->rooms.root, sh->rooms.sentinel);
         node;
         node = ngx_rbtree_next(&sh->rooms, node))
    {
        room = (ngx_http_realtime_sh_room_t *) node;
        size += room->nusers * (4 * sizeof(ngx_uint_t)
                                + NGX_HTTP_REALTIME_ROOM_MAX
                                + NGX_HTTP_REALTIME_USER_MAX);
    }

    buf = ngx_alloc(size, rd->log);
    if (buf == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    p = buf;

#define ngx_http_realtime_put(t, n, x, y)                                    \
    {                                                                         \
        ngx_uint_t  v_[4] = { (t), (n), (x)->len, (y) ? (y)->len : 0 };       \
        p = ngx_cpymem(p, v_, sizeof(v_));                                    \
        p = ngx_cpymem(p, (x)->data, (x)->len);                               \
        if ((y) && (y)->len) {                                                \
            p = ngx_cpymem(p, (y)->data, (y)->len);                           \
        }                                                                     \
    }

    sentinel = sh->users.sentinel;

    if (sh->users.root != sentinel) {
        for (node = ngx_rbtree_min(sh->users.root, sentinel);
             node;
             node = ngx_rbtree_next(&sh->users, node))
        {
            user = (ngx_http_realtime_sh_user_t *) node;
            ngx_http_realtime_put(NGX_HTTP_REALTIME_IPC_USER, user->nconns,
                                  &user->sn.str, (ngx_str_t *) NULL);
        }
    }

    sentinel = sh->rooms.sentinel;

    if (sh->rooms.root != sentinel) {
        for (node = ngx_rbtree_min(sh->rooms.root, sentinel);
             node;
             node = ngx_rbtree_next(&sh->rooms, node))
        {
            room = (ngx_http_realtime_sh_room_t *) node;

            if (room->users.root == room->users.sentinel) {
                continue;
            }

            for (rnode = ngx_rbtree_min(room->users.root,
                                        room->users.sentinel);
                 rnode;
                 rnode = ngx_rbtree_next(&room->users, rnode))
            {
                ru = (ngx_http_realtime_sh_room_user_t *) rnode;
                ngx_http_realtime_put(NGX_HTTP_REALTIME_IPC_MEMBER,
                                      ru->nsockets, &room->sn.str,
                                      &ru->sn.str);
            }
        }
    }

#undef ngx_http_realtime_put

    ngx_shmtx_unlock(&zone->shpool->mutex);

    end = p;

    for (p = buf; p < end; /* void */) {
        /* the records are packed: their heads need not be aligned */
        ngx_memcpy(head, p, sizeof(head));
        type = head[0];
        n = head[1];
        a.len = head[2];
        b.len = head[3];
        p += sizeof(head);
        a.data = p;
        b.data = p + a.len;
        p += a.len + b.len;

        ngx_http_realtime_redis_presence_write(rd, type, &a, &b, n);
    }

    ngx_free(buf);
}


/*
 * Asks Redis who else has the user (NGX_HTTP_REALTIME_IPC_USER) or who
 * is in the room (NGX_HTTP_REALTIME_IPC_MEMBER) on other instances.
 * NGX_DECLINED: Redis is not there, answer with this instance's view.
 * Otherwise the handler is called exactly once, also when Redis fails.
 */

ngx_int_t
ngx_http_realtime_redis_lookup(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *name, ngx_http_realtime_redis_lookup_pt handler,
    void *data)
{
    u_char                            *p;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_lookup_t  *lk;
    u_char                             key[64 + 16
                                           + NGX_HTTP_REALTIME_USER_MAX];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    lk = ngx_alloc(sizeof(ngx_http_realtime_redis_lookup_t), rd->log);
    if (lk == NULL) {
        return NGX_DECLINED;
    }

    lk->rd = rd;
    lk->type = type;
    lk->handler = handler;
    lk->data = data;

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);

    if (type == NGX_HTTP_REALTIME_LOOKUP_ONLINE) {
        p = ngx_http_realtime_redis_online(rd, p);

    } else {
        p = ngx_sprintf(p, (type == NGX_HTTP_REALTIME_IPC_USER)
                           ? "user:{%V}" : "members:{%V}", name);
    }

    if (ngx_http_realtime_redis_command(rd, key, (size_t) (p - key),
                                        ngx_http_realtime_redis_on_lookup, lk,
                                        "HGETALL %b", key, (size_t) (p - key))
        != NGX_OK)
    {
        ngx_free(lk);
        return NGX_DECLINED;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_lookup(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                              *bar, *end;
    json_t                            *users;
    ngx_uint_t                         i, sockets, n;
    ngx_msec_t                         now, expiry;
    redisReply                        *reply, *f, *v;
    ngx_time_t                        *tp;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_lookup_t  *lk;

    lk = privdata;
    rd = lk->rd;
    reply = r;

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        lk->handler(lk->data, NULL, 0, NGX_ERROR);
        ngx_free(lk);
        return;
    }

    tp = ngx_timeofday();
    now = (ngx_msec_t) (tp->sec * 1000 + tp->msec);

    users = (lk->type != NGX_HTTP_REALTIME_IPC_USER) ? json_object() : NULL;
    sockets = 0;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        f = reply->element[i];
        v = reply->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || f->len < NGX_HTTP_REALTIME_INSTANCE_LEN
            || ngx_strncmp(f->str, rd->zone->sh->instance,
                           NGX_HTTP_REALTIME_INSTANCE_LEN) == 0)
        {
            /* this instance answers for itself, from the zone */
            continue;
        }

        n = (ngx_uint_t) strtoul(v->str, &end, 10);
        expiry = (ngx_msec_t) strtoull(end, NULL, 10);

        if (n == 0 || expiry <= now) {
            continue;
        }

        sockets += n;

        if (users) {
            bar = (char *) ngx_strlchr((u_char *) f->str,
                                       (u_char *) f->str + f->len, '|');
            if (bar) {
                json_object_setn_new(users, bar + 1,
                                     f->str + f->len - bar - 1, json_true());
            }
        }
    }

    lk->handler(lk->data, users, sockets, NGX_OK);

    if (users) {
        json_decref(users);
    }

    ngx_free(lk);
}


/*
 * A client's "presence": this instance's users, from the zone, and the
 * other instances' from Redis.  Takes over the reference to users.
 */

ngx_int_t
ngx_http_realtime_redis_presence_query(ngx_http_realtime_session_t *s,
    ngx_str_t *room, json_t *users, json_int_t id)
{
    ngx_http_realtime_presence_query_t  *pq;

    pq = ngx_alloc(sizeof(ngx_http_realtime_presence_query_t) + room->len,
                   s->log);
    if (pq == NULL) {
        json_decref(users);
        return NGX_ERROR;
    }

    pq->s = s;
    pq->users = users;
    pq->id = id;
    pq->room.len = room->len;
    pq->room.data = (u_char *) pq + sizeof(ngx_http_realtime_presence_query_t);
    ngx_memcpy(pq->room.data, room->data, room->len);

    if (s->lookups.next == NULL) {
        ngx_queue_init(&s->lookups);
    }

    ngx_queue_insert_tail(&s->lookups, &pq->queue);

    if (ngx_http_realtime_redis_lookup(s->zone, NGX_HTTP_REALTIME_IPC_MEMBER,
                                       room,
                                       ngx_http_realtime_presence_answer, pq)
        != NGX_OK)
    {
        /* Redis is away: this instance's view */
        ngx_http_realtime_presence_answer(pq, NULL, 0, NGX_DECLINED);
    }

    return NGX_OK;
}


static void
ngx_http_realtime_presence_answer(void *data, json_t *remote,
    ngx_uint_t sockets, ngx_int_t rc)
{
    ngx_http_realtime_presence_query_t *pq = data;

    size_t       i;
    json_t      *v, *answer, *seen;
    const char  *user;

    if (pq->s == NULL) {
        goto done;
    }

    ngx_queue_remove(&pq->queue);

    if (remote) {
        seen = json_object();

        json_array_foreach(pq->users, i, v) {
            json_object_set(seen, json_string_value(v), json_true());
        }

        json_object_foreach(remote, user, v) {
            if (json_object_get(seen, user) == NULL) {
                json_array_append_new(pq->users, json_string(user));
            }
        }

        json_decref(seen);
    }

    answer = json_pack("{s:s%, s:O}", "room", pq->room.data, pq->room.len,
                       "users", pq->users);

    if (answer) {
        (void) pq->s->handler->reply(pq->s, "presence", answer, pq->id);
        json_decref(answer);
    }

done:

    json_decref(pq->users);
    ngx_free(pq);
}


/* a closing socket's questions are answered to nobody */

void
ngx_http_realtime_redis_presence_cancel(ngx_http_realtime_session_t *s)
{
    ngx_queue_t                         *q;
    ngx_http_realtime_presence_query_t  *pq;

    if (s->lookups.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&s->lookups)) {
        q = ngx_queue_head(&s->lookups);
        ngx_queue_remove(q);

        pq = ngx_queue_data(q, ngx_http_realtime_presence_query_t, queue);
        pq->s = NULL;
    }
}
