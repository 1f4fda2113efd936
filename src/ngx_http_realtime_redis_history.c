
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_history with realtime_redis: Redis gives the offsets, so that
 * they are the same on every instance and a client recovers on any of
 * them.  A publication to a room with history is one script run:
 *
 *     HINCRBY <prefix>offset:{room} o 1    the room's next offset
 *     HSETNX  <prefix>offset:{room} e ...  its epoch, new with the key
 *     LPUSH   <prefix>history:{room} ...   the message, trimmed to the
 *                                          realtime_history bound
 *     PUBLISH <prefix>room:{room} ...      to every instance, this one's
 *                                          leader included (SPUBLISH on
 *                                          a cluster)
 *
 * with both keys expiring after the history's TTL: when they go (idle,
 * flushed, Redis restarted empty), the next publication starts again at 1
 * under a new epoch.  The hash tag keeps the three in the room's slot.
 *
 *     "rt2 <instance> <skip> <offset> <epoch> <target length>
 *      <except length>\n" <target> <except> <json>
 *
 * Every instance delivers it from its subscription, in the order Redis
 * ran the scripts: the offsets of a room come in order on the one
 * connection.  Two gaps are closed here:
 *
 *   - a room whose SUBSCRIBE is not confirmed yet (its first member just
 *     joined) gets the publications of this worker from the script's
 *     answer; the subscription may bring them too, the offset tells;
 *
 *   - after the subscriber reconnects, the leader reads each room's list
 *     (LRANGE) once the subscriptions are confirmed, and holds the live
 *     messages until the lists are in: what was published while it was
 *     away comes first, in order, then the live ones; what came twice is
 *     dropped by its offset (ngx_http_realtime_history_append_locked()).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"
#include "ngx_http_realtime_sync_codec.h"


#define NGX_HTTP_REALTIME_REDIS_SEQ_MAGIC   "rt2"

/* live messages held during a gap fill, and for how long at most */
#define NGX_HTTP_REALTIME_REDIS_FILL_HOLD   65536
#define NGX_HTTP_REALTIME_REDIS_FILL_TIME   5000



typedef struct {
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_published_t     *wait;
    ngx_http_realtime_msg_t           *msg;      /* NULL: not delivered */
    ngx_str_t                          target;
    ngx_str_t                          except;   /* follows target */
} ngx_http_realtime_redis_seq_ctx_t;


typedef struct {
    ngx_queue_t                        queue;
    size_t                             len;
    u_char                             data[1];
} ngx_http_realtime_redis_held_t;


typedef struct {
    ngx_http_realtime_redis_t         *rd;
    size_t                             len;
    u_char                             room[1];
} ngx_http_realtime_redis_fill_ctx_t;


/* a room to fill: where this instance is in it */
typedef struct {
    ngx_http_realtime_history_pos_t    pos;
    size_t                             len;
} ngx_http_realtime_redis_fill_room_t;


/* an "rt2" message, parsed */
typedef struct {
    ngx_http_realtime_history_pos_t    at;
    uint64_t                           skip;
    ngx_str_t                          target;
    ngx_str_t                          except;
    u_char                            *json;
    size_t                             json_len;
    unsigned                           own:1;
} ngx_http_realtime_redis_seq_t;


typedef struct {
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_history_read_t  *hr;
} ngx_http_realtime_redis_read_ctx_t;


static void ngx_http_realtime_redis_on_sequenced(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_realtime_redis_on_waited(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_realtime_redis_seq_reply(
    ngx_http_realtime_redis_t *rd, redisReply *reply,
    ngx_http_realtime_history_pos_t *at);
static ngx_int_t ngx_http_realtime_redis_seq_feed(
    ngx_http_realtime_redis_t *rd, u_char *p, size_t len);
static void ngx_http_realtime_redis_on_fill(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_realtime_redis_fill_end(ngx_http_realtime_redis_t *rd);
static void ngx_http_realtime_redis_fill_timeout(ngx_event_t *ev);
static void ngx_http_realtime_redis_eval(ngx_http_realtime_redis_t *rd,
    const char **argv, size_t *lens, const char *script, size_t len,
    const char *nkeys, u_char *key, u_char *list, ngx_str_t *room);
static ngx_int_t ngx_http_realtime_redis_seq_parse(
    ngx_http_realtime_redis_t *rd, u_char *p, size_t len,
    ngx_http_realtime_redis_seq_t *m);
static void ngx_http_realtime_redis_on_read(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_realtime_redis_read_records(
    ngx_http_realtime_redis_t *rd, redisReply *list,
    ngx_http_realtime_history_read_t *hr);


/*
 * Lua's .. writes the offset as an integer up to 10^14; the message is
 * written once and both kept and published.
 */

static const char  ngx_http_realtime_redis_seq_script[] =
    "local o = redis.call('HINCRBY', KEYS[1], 'o', 1) "
    "redis.call('HSETNX', KEYS[1], 'e', ARGV[3]) "
    "local e = redis.call('HGET', KEYS[1], 'e') "
    "local m = ARGV[1] .. o .. ' ' .. e .. ARGV[2] "
    "redis.call('LPUSH', KEYS[2], m) "
    "redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1) "
    "redis.call('PEXPIRE', KEYS[2], ARGV[5]) "
    "redis.call('PEXPIRE', KEYS[1], ARGV[5]) "
    "redis.call(ARGV[6], KEYS[3], m) "
    "return {o, e}";


/*
 * What Redis holds of a room after (since, epoch): its offset, epoch and
 * list of the newer ones only (all of them when the epoch is another).
 */

static const char  ngx_http_realtime_redis_read_script[] =
    "local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0') "
    "local e = redis.call('HGET', KEYS[1], 'e') "
    "local n = o "
    "if e == ARGV[2] then n = o - tonumber(ARGV[1]) end "
    "if n <= 0 then return {tostring(o), e, {}} end "
    "return {tostring(o), e, redis.call('LRANGE', KEYS[2], 0, n - 1)}";


void
ngx_http_realtime_redis_history_init(ngx_http_realtime_redis_t *rd,
    ngx_log_t *log)
{
    ngx_queue_init(&rd->fill_held);

    rd->fill_timer.handler = ngx_http_realtime_redis_fill_timeout;
    rd->fill_timer.data = rd;
    rd->fill_timer.log = log;
    rd->fill_timer.cancelable = 1;
}


/* NGX_OK: in the connection's buffer; NGX_DECLINED: lost (counted) */

ngx_int_t
ngx_http_realtime_redis_send_sequenced(ngx_http_realtime_redis_t *rd,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_published_t *wait)
{
    void                               *data;
    redisCallbackFn                    *handler;
    u_char                             *p, *json, *a1, *a2;
    size_t                              len, json_len, header, elen;
    size_t                              lens[12];
    const char                         *argv[12];
    ngx_http_realtime_zone_t           *zone;
    ngx_http_realtime_sh_room_t        *room;
    ngx_http_realtime_redis_seq_ctx_t  *ctx;
    u_char                              key[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                              list[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                              chan[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                              epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    u_char                              max[NGX_INT_T_LEN];
    u_char                              ttl[NGX_INT_T_LEN];

    zone = rd->zone;
    elen = except ? except->len : 0;

    header = ngx_http_realtime_frame_header_of(msg->data);

    json = msg->data + header;
    json_len = msg->len - header;

    len = sizeof(NGX_HTTP_REALTIME_REDIS_SEQ_MAGIC " ") - 1
          + NGX_HTTP_REALTIME_INSTANCE_LEN + 2 * (NGX_INT_T_LEN + 2)
          + target->len + elen + json_len + NGX_INT_T_LEN;

    if (ngx_http_realtime_redis_buffer(rd, len) != NGX_OK) {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    /* the script puts the offset and the epoch between the two */

    a1 = rd->buf;
    p = ngx_sprintf(a1, NGX_HTTP_REALTIME_REDIS_SEQ_MAGIC " %s %uL ",
                    zone->sh->instance, msg->skip);

    a2 = p;
    p = ngx_sprintf(p, " %uz %uz\n", target->len, elen);
    p = ngx_cpymem(p, target->data, target->len);

    if (elen) {
        p = ngx_cpymem(p, except->data, elen);
    }

    p = ngx_cpymem(p, json, json_len);

    ngx_http_realtime_random_id(epoch, NGX_HTTP_REALTIME_EPOCH_LEN);

    ngx_http_realtime_redis_eval(rd, argv, lens,
                                 ngx_http_realtime_redis_seq_script,
                                 sizeof(ngx_http_realtime_redis_seq_script)
                                 - 1, "3", key, list, target);
    argv[5] = (char *) chan;
    lens[5] = ngx_http_realtime_redis_channel(rd, chan,
                                              NGX_HTTP_REALTIME_TO_ROOM,
                                              target);
    argv[6] = (char *) a1;
    lens[6] = a2 - a1;
    argv[7] = (char *) a2;
    lens[7] = p - a2;
    argv[8] = (char *) epoch;
    lens[8] = NGX_HTTP_REALTIME_EPOCH_LEN;
    argv[9] = (char *) max;
    lens[9] = ngx_sprintf(max, "%ui", zone->history_max) - max;
    argv[10] = (char *) ttl;
    lens[10] = ngx_sprintf(ttl, "%M", zone->history_ttl) - ttl;

    /* PUBLISH, or on a cluster SPUBLISH: the room's channel is sharded */
    argv[11] = rd->publish;
    lens[11] = ngx_strlen(rd->publish);

    /*
     * Before its SUBSCRIBE is confirmed, the room's members here get it
     * from the answer: the subscription may not bring it.
     */

    ctx = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    room = (ngx_http_realtime_sh_room_t *)
               ngx_str_rbtree_lookup(&zone->sh->rooms, target,
                                     ngx_crc32_short(target->data,
                                                     target->len));
    len = (room && !room->redis_live) ? 1 : 0;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (len) {
        ctx = ngx_alloc(sizeof(ngx_http_realtime_redis_seq_ctx_t)
                        + target->len + elen, rd->log);

        if (ctx) {
            ctx->rd = rd;
            ctx->wait = wait;
            ctx->msg = msg;
            msg->refs++;
            ctx->target.data = (u_char *) ctx
                               + sizeof(ngx_http_realtime_redis_seq_ctx_t);
            ctx->target.len = target->len;
            ctx->except.data = ngx_cpymem(ctx->target.data, target->data,
                                          target->len);
            ctx->except.len = elen;

            if (elen) {
                ngx_memcpy(ctx->except.data, except->data, elen);
            }
        }
    }

    /* the waiter alone needs no allocation: it is the caller's */

    handler = ngx_http_realtime_redis_on_sequenced;
    data = ctx;

    if (ctx == NULL && wait) {
        handler = ngx_http_realtime_redis_on_waited;
        data = wait;
    }

    if (ngx_http_realtime_redis_command_argv(rd, key, lens[3], handler, data,
                                             12, argv, lens)
        != NGX_OK)
    {
        if (ctx) {
            ngx_http_realtime_msg_release(ctx->msg);
            ngx_free(ctx);
        }

        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    if (wait) {
        wait->armed = 1;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history publish \"%V\"%s", target,
                   ctx ? ", delivered from the answer" : "");

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_sequenced(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                           rc;
    ngx_http_realtime_redis_t          *rd;
    ngx_http_realtime_history_pos_t     at;
    ngx_http_realtime_redis_seq_ctx_t  *ctx;

    rd = ac->data;
    ctx = privdata;

    rc = ngx_http_realtime_redis_seq_reply(rd, r, &at);

    if (ctx == NULL) {
        return;
    }

    if (!rd->exiting) {
        /* without a position if Redis did not answer, whether it ran it */
        (void) ngx_http_realtime_publish_zone_at(rd->zone, &ctx->target,
                                                 &ctx->except, ctx->msg,
                                                 rc == NGX_OK ? &at : NULL);

        if (ctx->wait) {
            ctx->wait->handler(ctx->wait->data, rc);
        }
    }

    ngx_http_realtime_msg_release(ctx->msg);
    ngx_free(ctx);
}


static void
ngx_http_realtime_redis_on_waited(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                         rc;
    ngx_http_realtime_redis_t        *rd;
    ngx_http_realtime_published_t    *wait;
    ngx_http_realtime_history_pos_t   at;

    rd = ac->data;
    wait = privdata;

    rc = ngx_http_realtime_redis_seq_reply(rd, r, &at);

    if (!rd->exiting) {
        wait->handler(wait->data, rc);
    }
}


/* the script's answer: NGX_OK with the position Redis gave, or lost */

static ngx_int_t
ngx_http_realtime_redis_seq_reply(ngx_http_realtime_redis_t *rd,
    redisReply *reply, ngx_http_realtime_history_pos_t *at)
{
    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer <= 0
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len != NGX_HTTP_REALTIME_EPOCH_LEN)
    {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis %s:%ui: history publish failed: "
                          "%*s", rd->conf->host, rd->conf->port,
                          (size_t) reply->len, reply->str);
        }

        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_ERROR;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_published, 1);

    at->offset = (uint64_t) reply->element[0]->integer;
    ngx_memcpy(at->epoch, reply->element[1]->str,
               NGX_HTTP_REALTIME_EPOCH_LEN);
    at->on = 1;

    /* after a gap the subscription or the fill brings it, in order */
    at->next_only = 1;

    if (rd->outbox_n && rd->pending < NGX_HTTP_REALTIME_REDIS_PENDING_MAX / 2)
    {
        ngx_http_realtime_redis_outbox_flush(rd);
    }

    return NGX_OK;
}


/* a live "rt2" message on the leader's subscription */

void
ngx_http_realtime_redis_sync_sequenced(ngx_http_realtime_redis_t *rd,
    u_char *p, size_t len)
{
    ngx_http_realtime_redis_held_t  *held;

    if (!rd->filling) {
        (void) ngx_http_realtime_redis_seq_feed(rd, p, len);
        return;
    }

    if (rd->fill_held_n == NGX_HTTP_REALTIME_REDIS_FILL_HOLD) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "realtime redis %s:%ui: gap fill holds too much, "
                      "giving up", rd->conf->host, rd->conf->port);
        ngx_http_realtime_redis_fill_end(rd);
        (void) ngx_http_realtime_redis_seq_feed(rd, p, len);
        return;
    }

    held = ngx_alloc(sizeof(ngx_http_realtime_redis_held_t) + len, rd->log);
    if (held == NULL) {
        return;
    }

    held->len = len;
    ngx_memcpy(held->data, p, len);
    ngx_queue_insert_tail(&rd->fill_held, &held->queue);
    rd->fill_held_n++;
}


static ngx_int_t
ngx_http_realtime_redis_seq_feed(ngx_http_realtime_redis_t *rd, u_char *p,
    size_t len)
{
    ngx_http_realtime_msg_t        *msg;
    ngx_http_realtime_redis_seq_t   m;

    if (ngx_http_realtime_redis_seq_parse(rd, p, len, &m) != NGX_OK) {
        return NGX_DECLINED;
    }

    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_TEXT, m.json,
                                      m.json_len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    /* a socket id means something on its own instance only */
    msg->skip = m.own ? m.skip : 0;

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_received, 1);

    (void) ngx_http_realtime_publish_zone_at(rd->zone, &m.target, &m.except,
                                             msg, &m.at);
    ngx_http_realtime_msg_release(msg);

    return NGX_OK;
}


/* parsed strictly (ngx_http_realtime_sync_codec.c): ours, or dropped */

static ngx_int_t
ngx_http_realtime_redis_seq_parse(ngx_http_realtime_redis_t *rd, u_char *p,
    size_t len, ngx_http_realtime_redis_seq_t *m)
{
    ngx_http_realtime_sync_msg_t  sm;

    if (ngx_http_realtime_sync_parse(p, len, NGX_HTTP_REALTIME_ROOM_MAX,
                                     NGX_HTTP_REALTIME_USER_MAX, &sm)
        != 0
        || sm.version != 2)
    {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "realtime redis: ignoring a history message that is "
                      "not ours: \"%*s\"", ngx_min(len, (size_t) 32), p);
        return NGX_DECLINED;
    }

    m->own = ngx_strncmp(sm.instance, rd->zone->sh->instance,
                         NGX_HTTP_REALTIME_INSTANCE_LEN) == 0;
    m->skip = sm.skip;
    m->at.offset = sm.offset;
    ngx_memcpy(m->at.epoch, sm.epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
    m->at.on = 1;
    m->at.next_only = 0;
    m->target.data = (u_char *) sm.target;
    m->target.len = sm.target_len;
    m->except.data = (u_char *) sm.except;
    m->except.len = sm.except_len;
    m->json = (u_char *) sm.json;
    m->json_len = sm.json_len;

    return NGX_OK;
}


/* the subscriber (re)subscribes: live messages wait for the gap fill */

void
ngx_http_realtime_redis_fill_begin(ngx_http_realtime_redis_t *rd)
{
    if (rd->zone->history_max == 0) {
        return;
    }

    rd->filling = 1;
    rd->fill_sent = 0;

    if (rd->fill_timer.timer_set) {
        ngx_del_timer(&rd->fill_timer);
    }

    ngx_add_timer(&rd->fill_timer, NGX_HTTP_REALTIME_REDIS_FILL_TIME);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history: gap fill begins");
}


/*
 * Every subscription is confirmed and this worker can send commands: the
 * list of each room that had Redis's offsets here, read once.  A room
 * whose offsets were never Redis's here has no place to fill from.
 */

void
ngx_http_realtime_redis_fill_send(ngx_http_realtime_redis_t *rd)
{
    u_char                              *p, *names, *last;
    size_t                               size, klen;
    ngx_str_t                            name;
    ngx_http_realtime_redis_fill_room_t  fr;
    ngx_rbtree_node_t                   *node, *root, *sentinel;
    ngx_http_realtime_zone_t            *zone;
    ngx_http_realtime_sh_room_t         *room;
    ngx_http_realtime_redis_fill_ctx_t  *ctx;
    u_char                               key[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                               list[NGX_HTTP_REALTIME_REDIS_KEY_MAX];

    if (!rd->filling || rd->fill_sent || !rd->sub_confirmed
        || !rd->pub_ready)
    {
        return;
    }

    rd->fill_sent = 1;
    zone = rd->zone;

    /* names sized under the lock, copied under it again */

    ngx_shmtx_lock(&zone->shpool->mutex);
    size = zone->sh->nrooms * (sizeof(ngx_http_realtime_redis_fill_room_t)
                               + NGX_HTTP_REALTIME_ROOM_MAX);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    names = ngx_alloc(size + 1, rd->log);
    if (names == NULL) {
        ngx_http_realtime_redis_fill_end(rd);
        return;
    }

    p = names;
    last = names + size;

    ngx_shmtx_lock(&zone->shpool->mutex);

    root = zone->sh->rooms.root;
    sentinel = zone->sh->rooms.sentinel;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->rooms, node))
        {
            room = (ngx_http_realtime_sh_room_t *) node;
            name = room->sn.str;

            if ((size_t) (last - p)
                < sizeof(ngx_http_realtime_redis_fill_room_t) + name.len)
            {
                break;
            }

            if (!ngx_http_realtime_history_from_redis_locked(zone, &name,
                                                             &fr.pos))
            {
                continue;
            }

            fr.len = name.len;
            p = ngx_cpymem(p, &fr, sizeof(ngx_http_realtime_redis_fill_room_t));
            p = ngx_cpymem(p, name.data, name.len);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    last = p;

    for (p = names; p < last; p += fr.len) {
        ngx_memcpy(&fr, p, sizeof(ngx_http_realtime_redis_fill_room_t));
        p += sizeof(ngx_http_realtime_redis_fill_room_t);

        ctx = ngx_alloc(sizeof(ngx_http_realtime_redis_fill_ctx_t) + fr.len,
                        rd->log);
        if (ctx == NULL) {
            continue;
        }

        ctx->rd = rd;
        ctx->len = fr.len;
        ngx_memcpy(ctx->room, p, fr.len);

        name.data = ctx->room;
        name.len = fr.len;

        /* only what is after this instance's place comes back */

        klen = ngx_http_realtime_redis_key(rd, key, "offset", &name);

        if (ngx_http_realtime_redis_command(rd, key, klen,
                              ngx_http_realtime_redis_on_fill, ctx,
                              "EVAL %s 2 %b %b %llu %b",
                              ngx_http_realtime_redis_read_script,
                              key, klen,
                              list, ngx_http_realtime_redis_key(rd, list,
                                                          "history", &name),
                              (unsigned long long) fr.pos.offset,
                              fr.pos.epoch,
                              (size_t) NGX_HTTP_REALTIME_EPOCH_LEN)
            != NGX_OK)
        {
            ngx_free(ctx);
            continue;
        }

        rd->fill_pending++;
        rd->pending++;
    }

    ngx_free(names);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history: filling %ui rooms",
                   rd->fill_pending);

    if (rd->fill_pending == 0) {
        ngx_http_realtime_redis_fill_end(rd);
    }
}


static void
ngx_http_realtime_redis_on_fill(redisAsyncContext *ac, void *r,
    void *privdata)
{
    size_t                               i;
    redisReply                          *reply, *e, *list;
    ngx_http_realtime_redis_t           *rd;
    ngx_http_realtime_redis_fill_ctx_t  *ctx;

    reply = r;
    ctx = privdata;
    rd = ctx->rd;

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (rd->fill_pending) {
        rd->fill_pending--;
    }

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[2]->type == REDIS_REPLY_ARRAY && !rd->exiting)
    {
        list = reply->element[2];

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "realtime redis history: \"%*s\" missed %uz",
                       ctx->len, ctx->room, list->elements);

        /* the newest first: fed oldest first */

        for (i = list->elements; i > 0; i--) {
            e = list->element[i - 1];

            if (e->type == REDIS_REPLY_STRING) {
                (void) ngx_http_realtime_redis_seq_feed(rd, (u_char *) e->str,
                                                        e->len);
            }
        }

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: history read failed: %*s",
                      rd->conf->host, rd->conf->port,
                      (size_t) reply->len, reply->str);
    }

    ngx_free(ctx);

    if (rd->filling && rd->fill_sent && rd->fill_pending == 0) {
        ngx_http_realtime_redis_fill_end(rd);
    }
}


/* the lists are in (or the wait is over): the held live messages */

static void
ngx_http_realtime_redis_fill_end(ngx_http_realtime_redis_t *rd)
{
    ngx_queue_t                     *q;
    ngx_http_realtime_redis_held_t  *held;

    rd->filling = 0;

    if (rd->fill_timer.timer_set) {
        ngx_del_timer(&rd->fill_timer);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history: gap fill done, %ui held",
                   rd->fill_held_n);

    while (!ngx_queue_empty(&rd->fill_held)) {
        q = ngx_queue_head(&rd->fill_held);
        ngx_queue_remove(q);
        held = ngx_queue_data(q, ngx_http_realtime_redis_held_t, queue);

        if (!rd->exiting) {
            (void) ngx_http_realtime_redis_seq_feed(rd, held->data,
                                                    held->len);
        }

        ngx_free(held);
    }

    rd->fill_held_n = 0;
}


static void
ngx_http_realtime_redis_fill_timeout(ngx_event_t *ev)
{
    ngx_http_realtime_redis_t  *rd;

    rd = ev->data;

    ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                  "realtime redis %s:%ui: gap fill not done in %M ms, "
                  "going on without it", rd->conf->host, rd->conf->port,
                  (ngx_msec_t) NGX_HTTP_REALTIME_REDIS_FILL_TIME);

    ngx_http_realtime_redis_fill_end(rd);
}


/* exit: nothing more is delivered */

void
ngx_http_realtime_redis_history_free(ngx_http_realtime_redis_t *rd)
{
    rd->exiting = 1;
    ngx_http_realtime_redis_fill_end(rd);
}


/* a SUBSCRIBE confirmed: a room's own publications come by it now */

void
ngx_http_realtime_redis_room_live(ngx_http_realtime_redis_t *rd,
    u_char *channel, size_t len)
{
    size_t                        plen;
    ngx_str_t                     name;
    ngx_http_realtime_zone_t     *zone;
    ngx_http_realtime_sh_room_t  *room;

    zone = rd->zone;
    plen = rd->conf->prefix.len + sizeof("room:{") - 1;

    if (zone->history_max == 0 || len < plen + 2
        || ngx_strncmp(channel + rd->conf->prefix.len, "room:{", 6) != 0
        || channel[len - 1] != '}')
    {
        return;
    }

    name.data = channel + plen;
    name.len = len - plen - 1;

    ngx_shmtx_lock(&zone->shpool->mutex);

    room = (ngx_http_realtime_sh_room_t *)
               ngx_str_rbtree_lookup(&zone->sh->rooms, &name,
                                     ngx_crc32_short(name.data, name.len));
    if (room) {
        room->redis_live = 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* under the zone's lock: the subscription is gone, or being made again */

void
ngx_http_realtime_redis_rooms_unlive_locked(ngx_http_realtime_zone_t *zone)
{
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_realtime_sh_room_t  *room;

    root = zone->sh->rooms.root;
    sentinel = zone->sh->rooms.sentinel;

    if (root == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&zone->sh->rooms, node))
    {
        room = (ngx_http_realtime_sh_room_t *) node;
        room->redis_live = 0;
    }
}


/* EVAL script n <prefix>offset:{room} <prefix>history:{room}, in argv */

static void
ngx_http_realtime_redis_eval(ngx_http_realtime_redis_t *rd,
    const char **argv, size_t *lens, const char *script, size_t len,
    const char *nkeys, u_char *key, u_char *list, ngx_str_t *room)
{
    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = script;
    lens[1] = len;
    argv[2] = nkeys;
    lens[2] = 1;
    argv[3] = (char *) key;
    lens[3] = ngx_http_realtime_redis_key(rd, key, "offset", room);
    argv[4] = (char *) list;
    lens[4] = ngx_http_realtime_redis_key(rd, list, "history", room);
}


/* <prefix><what>:{<room>}: in the slot of the room's channel */

size_t
ngx_http_realtime_redis_key(ngx_http_realtime_redis_t *rd, u_char *buf,
    const char *what, ngx_str_t *room)
{
    u_char  *p;

    p = ngx_cpymem(buf, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_sprintf(p, "%s:{%V}", what, room);

    return p - buf;
}


/*
 * A join since a place this instance does not hold: the room's offset,
 * epoch and list, read at once by one script on this worker's
 * connection.  NGX_DECLINED: no connection to read on.
 */

ngx_int_t
ngx_http_realtime_redis_history_read(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_history_read_t *hr)
{
    size_t                               lens[7];
    const char                          *argv[7];
    ngx_http_realtime_redis_t           *rd;
    ngx_http_realtime_redis_read_ctx_t  *ctx;
    u_char                               key[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                               list[NGX_HTTP_REALTIME_REDIS_KEY_MAX];
    u_char                               since[NGX_INT64_LEN];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready || zone->history_max == 0
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_alloc(sizeof(ngx_http_realtime_redis_read_ctx_t), rd->log);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->rd = rd;
    ctx->hr = hr;

    ngx_http_realtime_redis_eval(rd, argv, lens,
                                 ngx_http_realtime_redis_read_script,
                                 sizeof(ngx_http_realtime_redis_read_script)
                                 - 1, "2", key, list, room);
    argv[5] = (char *) since;
    lens[5] = ngx_sprintf(since, "%uL", hr->since) - since;
    argv[6] = (char *) hr->epoch;
    lens[6] = NGX_HTTP_REALTIME_EPOCH_LEN;

    if (ngx_http_realtime_redis_command_argv(rd, key, lens[3],
                                             ngx_http_realtime_redis_on_read,
                                             ctx, 7, argv, lens)
        != NGX_OK)
    {
        ngx_free(ctx);
        return NGX_DECLINED;
    }

    rd->pending++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history: reading \"%V\" since %uL",
                   room, hr->since);

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_read(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                            rc;
    redisReply                          *reply;
    ngx_http_realtime_redis_t           *rd;
    ngx_http_realtime_history_read_t    *hr;
    ngx_http_realtime_redis_read_ctx_t  *ctx;

    reply = r;
    ctx = privdata;
    rd = ctx->rd;
    hr = ctx->hr;
    ngx_free(ctx);

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    hr->buf = NULL;
    hr->len = 0;
    rc = NGX_DECLINED;

    if (hr->any_epoch && reply && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 3)
    {
        if (reply->element[1]->type == REDIS_REPLY_STRING
            && reply->element[1]->len == NGX_HTTP_REALTIME_EPOCH_LEN)
        {
            /* whatever Redis has: it all came after since 0 */
            ngx_memcpy(hr->epoch, reply->element[1]->str,
                       NGX_HTTP_REALTIME_EPOCH_LEN);

        } else if (reply->element[1]->type == REDIS_REPLY_NIL
                   && hr->since == 0)
        {
            /* nothing was published yet */
            hr->last = 0;
            rc = NGX_OK;
        }
    }

    if (rc == NGX_OK) {
        /* nothing to read */

    } else if (reply && reply->type == REDIS_REPLY_ARRAY
               && reply->elements == 3
               && reply->element[0]->type == REDIS_REPLY_STRING
               && reply->element[1]->type == REDIS_REPLY_STRING
               && reply->element[1]->len == NGX_HTTP_REALTIME_EPOCH_LEN
               && ngx_memcmp(reply->element[1]->str, hr->epoch,
                             NGX_HTTP_REALTIME_EPOCH_LEN) == 0
               && reply->element[2]->type == REDIS_REPLY_ARRAY)
    {
        hr->last = ngx_atoi((u_char *) reply->element[0]->str,
                            reply->element[0]->len);

        if (hr->last != (uint64_t) NGX_ERROR && hr->since <= hr->last) {
            rc = ngx_http_realtime_redis_read_records(rd, reply->element[2],
                                                      hr);
        }

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: history read failed: %*s",
                      rd->conf->host, rd->conf->port,
                      (size_t) reply->len, reply->str);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis history: read since %uL: %i",
                   hr->since, rc);

    /* on exit as well: the waiter frees what it holds */
    hr->handler(hr->data, rd->exiting ? NGX_ERROR
                          : (rc == NGX_ERROR ? NGX_DECLINED : rc));
}


/*
 * The replay records of (since, last], in order, if the list (newest
 * first) holds every one of them.
 */

static ngx_int_t
ngx_http_realtime_redis_read_records(ngx_http_realtime_redis_t *rd,
    redisReply *list, ngx_http_realtime_history_read_t *hr)
{
    u_char                         *p;
    size_t                          i, size, first;
    uint64_t                        want;
    redisReply                     *e;
    ngx_http_realtime_redis_seq_t   m;

    if (hr->since == hr->last) {
        return NGX_OK;
    }

    /* the entries after since, oldest first: one pass to check and size */

    size = 0;
    want = hr->last;
    first = 0;

    for (i = 0; i < list->elements && want > hr->since; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_STRING
            || ngx_http_realtime_redis_seq_parse(rd, (u_char *) e->str,
                                                 e->len, &m)
               != NGX_OK
            || m.at.offset != want
            || ngx_memcmp(m.at.epoch, hr->epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
               != 0)
        {
            return NGX_DECLINED;
        }

        size += ngx_http_realtime_history_record_size(m.json_len);
        want--;
        first = i;
    }

    if (want != hr->since) {
        /* trimmed or expired: not all of it */
        return NGX_DECLINED;
    }

    hr->buf = ngx_alloc(size, rd->log);
    if (hr->buf == NULL) {
        return NGX_ERROR;
    }

    p = hr->buf;

    for (i = first + 1; i > 0; i--) {
        e = list->element[i - 1];
        (void) ngx_http_realtime_redis_seq_parse(rd, (u_char *) e->str,
                                                 e->len, &m);
        p = ngx_http_realtime_history_record_json(p, m.json, m.json_len,
                                                  m.at.offset, m.at.epoch);
    }

    hr->len = p - hr->buf;

    return NGX_OK;
}
