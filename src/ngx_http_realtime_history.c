
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_history: the last publications of each room, in the zone, so
 * that a client that comes back gets exactly what it missed.
 *
 * Each room with history has a node in sh->histories (kept while it has
 * entries, or was used within the TTL, whether or not it has members)
 * with its epoch, 16 random characters made with the node, and the last
 * offset given.  Every publication to the room gets the next offset,
 * under the zone's lock, where it is also queued to every worker,
 * this one included: each worker delivers a room's publications in
 * offset order.  The frame carries them: the native envelope ends with
 * "offset" and "epoch", written into room left for them when the frame
 * was made, before the lock.  The entry keeps a copy of the frame.
 *
 * A join reads the room's offset in the same locked section that adds
 * the member, and the member takes it as its own: a publication queued
 * before the join and delivered after is not delivered twice, and one
 * made after it is delivered live.  A join "since" an offset of the same
 * epoch replays what is after it, if the history still holds all of it,
 * or nothing ("recovered": false).
 *
 * The history lives in the zone: with Redis each instance has its own
 * offsets and epochs (a client that comes back to another instance gets
 * "recovered": false, never a wrong replay).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


/* ,"offset":<20 digits or spaces>,"epoch":"<16>"} */
#define NGX_HTTP_REALTIME_HISTORY_OFFSET   ",\"offset\":"
#define NGX_HTTP_REALTIME_HISTORY_DIGITS   20
#define NGX_HTTP_REALTIME_HISTORY_EPOCH    ",\"epoch\":\""
#define NGX_HTTP_REALTIME_HISTORY_SUFFIX                                     \
    (sizeof(NGX_HTTP_REALTIME_HISTORY_OFFSET) - 1                             \
     + NGX_HTTP_REALTIME_HISTORY_DIGITS                                       \
     + sizeof(NGX_HTTP_REALTIME_HISTORY_EPOCH) - 1                            \
     + NGX_HTTP_REALTIME_EPOCH_LEN + 2)


typedef struct {
    ngx_str_node_t                     sn;
    ngx_queue_t                        entries;     /* oldest first */
    uint64_t                           offset;      /* the last given */
    ngx_uint_t                         n;
    ngx_msec_t                         used;
    u_char                             epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    unsigned                           redis:1;     /* Redis's epoch */
} ngx_http_realtime_sh_history_t;


typedef struct {
    ngx_queue_t                        queue;
    uint64_t                           offset;
    uint64_t                           seq;         /* the zone's */
    ngx_msec_t                         time;
    size_t                             len;
    u_char                             data[1];     /* the frame */
} ngx_http_realtime_sh_entry_t;


static ngx_http_realtime_sh_history_t *ngx_http_realtime_history_node(
    ngx_http_realtime_zone_t *zone, ngx_str_t *room, ngx_uint_t create);
static void ngx_http_realtime_history_drop(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h);
static void ngx_http_realtime_history_expire(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h, ngx_uint_t keep);
static ngx_uint_t ngx_http_realtime_history_covers(
    ngx_http_realtime_zone_t *zone, ngx_http_realtime_sh_history_t *h,
    uint64_t since, uint64_t last, size_t *size);
static void ngx_http_realtime_history_sweep(ngx_event_t *ev);
static void ngx_http_realtime_history_mark(u_char *mark, uint64_t offset,
    u_char *epoch);
static u_char *ngx_http_realtime_history_record(u_char *p,
    ngx_http_realtime_sh_entry_t *e);
static ngx_uint_t ngx_http_realtime_history_after_seq(
    ngx_http_realtime_zone_t *zone, ngx_http_realtime_sh_history_t *h,
    uint64_t seq, uint64_t last, uint64_t *since, size_t *size);


/*
 * The frame of a room publication with room for its position, made from
 * its native frame outside the lock; NULL if it is not a JSON object.
 */

ngx_http_realtime_msg_t *
ngx_http_realtime_history_frame(ngx_http_realtime_msg_t *msg)
{
    u_char                   *p, *json;
    size_t                    header, len, nlen;
    ngx_http_realtime_msg_t  *h;

    header = ngx_http_realtime_frame_header_of(msg->data);

    json = msg->data + header;
    len = msg->len - header;

    if (len < 2 || json[0] != '{' || json[len - 1] != '}') {
        return NULL;
    }

    nlen = len - 1 + NGX_HTTP_REALTIME_HISTORY_SUFFIX;
    header = ngx_http_realtime_frame_header_size(nlen);

    h = ngx_http_realtime_msg_alloc(header + nlen);
    if (h == NULL) {
        return NULL;
    }

    ngx_http_realtime_frame_header(h->data, NGX_HTTP_REALTIME_OP_TEXT, nlen);

    p = ngx_cpymem(h->data + header, json, len - 1);
    p = ngx_cpymem(p, NGX_HTTP_REALTIME_HISTORY_OFFSET,
                   sizeof(NGX_HTTP_REALTIME_HISTORY_OFFSET) - 1);

    /* the digits and the epoch are written under the lock */
    h->mark = p;

    p = ngx_cpymem(p, "0                   ",
                   NGX_HTTP_REALTIME_HISTORY_DIGITS);
    p = ngx_cpymem(p, NGX_HTTP_REALTIME_HISTORY_EPOCH,
                   sizeof(NGX_HTTP_REALTIME_HISTORY_EPOCH) - 1);
    p = ngx_cpymem(p, "0000000000000000", NGX_HTTP_REALTIME_EPOCH_LEN);
    *p++ = '"';
    *p++ = '}';

    h->len = p - h->data;

    return h;
}


/* the offset and the epoch, into the room a history frame left for them */

static void
ngx_http_realtime_history_mark(u_char *mark, uint64_t offset, u_char *epoch)
{
    u_char  *p;

    p = ngx_sprintf(mark, "%uL", offset);

    while (p < mark + NGX_HTTP_REALTIME_HISTORY_DIGITS) {
        *p++ = ' ';
    }

    p += sizeof(NGX_HTTP_REALTIME_HISTORY_EPOCH) - 1;
    ngx_memcpy(p, epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
}


/* a replay record (see ngx_http_realtime_history_replay()) from JSON */

size_t
ngx_http_realtime_history_record_size(size_t json_len)
{
    size_t  nlen;

    nlen = json_len - 1 + NGX_HTTP_REALTIME_HISTORY_SUFFIX;

    return sizeof(size_t) + 2 * sizeof(uint64_t)
           + ngx_http_realtime_frame_header_size(nlen) + nlen;
}


/* json is a JSON object (of 2 bytes at least): its frame, placed */

u_char *
ngx_http_realtime_history_record_json(u_char *p, u_char *json, size_t len,
    uint64_t offset, u_char *epoch)
{
    u_char    *mark;
    size_t     nlen, flen;
    uint64_t   seq;

    nlen = len - 1 + NGX_HTTP_REALTIME_HISTORY_SUFFIX;
    flen = ngx_http_realtime_frame_header_size(nlen) + nlen;
    seq = 0;

    p = ngx_cpymem(p, &flen, sizeof(size_t));
    p = ngx_cpymem(p, &offset, sizeof(uint64_t));
    p = ngx_cpymem(p, &seq, sizeof(uint64_t));

    ngx_http_realtime_frame_header(p, NGX_HTTP_REALTIME_OP_TEXT, nlen);
    p += ngx_http_realtime_frame_header_size(nlen);

    p = ngx_cpymem(p, json, len - 1);
    p = ngx_cpymem(p, NGX_HTTP_REALTIME_HISTORY_OFFSET,
                   sizeof(NGX_HTTP_REALTIME_HISTORY_OFFSET) - 1);
    mark = p;
    p += NGX_HTTP_REALTIME_HISTORY_DIGITS;
    p = ngx_cpymem(p, NGX_HTTP_REALTIME_HISTORY_EPOCH,
                   sizeof(NGX_HTTP_REALTIME_HISTORY_EPOCH) - 1);
    p += NGX_HTTP_REALTIME_EPOCH_LEN;
    *p++ = '"';
    *p++ = '}';

    ngx_http_realtime_history_mark(mark, offset, epoch);

    return p;
}


/*
 * Under the zone's lock: the room's next offset, written into the frame
 * (of ngx_http_realtime_history_frame()), and an entry with a copy of it.
 * Without room for the entry the oldest go; without any, the publication
 * has its offset and no entry (a later recovery over it fails).
 *
 * With realtime_redis the offset and epoch come from Redis (at): one
 * already here (the live message after a gap fill, or the answer to the
 * publisher after its subscription) is NGX_DECLINED, not delivered again;
 * another epoch means Redis lost the room's history, and so is this one.
 */

ngx_int_t
ngx_http_realtime_history_append_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_history_pos_t *at)
{
    ngx_http_realtime_sh_entry_t    *e;
    ngx_http_realtime_sh_history_t  *h;

    h = ngx_http_realtime_history_node(zone, room, 1);
    if (h == NULL) {
        /* the zone is full: delivered without a position */
        msg->offset = 0;
        return NGX_OK;
    }

    if (at) {
        /* no log under the lock: publish_post() tells the offset */

        if (ngx_memcmp(h->epoch, at->epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
            != 0)
        {
            ngx_http_realtime_history_expire(zone, h, 0);
            ngx_memcpy(h->epoch, at->epoch, NGX_HTTP_REALTIME_EPOCH_LEN);

        } else if (at->offset <= h->offset
                   || (at->next_only && h->redis
                       && at->offset != h->offset + 1))
        {
            /* what is before it comes by the subscription first */
            return NGX_DECLINED;
        }

        h->offset = at->offset - 1;
        h->redis = 1;
    }

    msg->offset = ++h->offset;
    msg->seq = ++zone->sh->history_seq;
    h->used = ngx_current_msec;

    ngx_http_realtime_history_mark(msg->mark, msg->offset, h->epoch);

    /* one more than the bound goes first: room for this one */
    ngx_http_realtime_history_expire(zone, h, zone->history_max - 1);

    for ( ;; ) {
        e = ngx_slab_alloc_locked(zone->shpool,
                                  sizeof(ngx_http_realtime_sh_entry_t)
                                  + msg->len);
        if (e || h->n == 0) {
            break;
        }

        ngx_http_realtime_history_expire(zone, h, h->n - 1);
    }

    if (e == NULL) {
        zone->sh->zone_full++;
        return NGX_OK;
    }

    e->offset = msg->offset;
    e->seq = msg->seq;
    e->time = ngx_current_msec;
    e->len = msg->len;
    ngx_memcpy(e->data, msg->data, msg->len);

    ngx_queue_insert_tail(&h->entries, &e->queue);
    h->n++;
    zone->sh->history_messages++;
    zone->sh->history_bytes += msg->len;

    return NGX_OK;
}


/*
 * Under the zone's lock, for a join: the room's last offset and epoch
 * (its node made if need be).  pos->on is 0 without history or room for
 * the node.
 */

void
ngx_http_realtime_history_position_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_history_pos_t *pos)
{
    ngx_http_realtime_sh_history_t  *h;

    /* without a history the place is the zone's sequence only */
    pos->on = 0;
    pos->offset = 0;
    pos->seq = zone->sh->history_seq;

    if (zone->history_max == 0) {
        return;
    }

    h = ngx_http_realtime_history_node(zone, room, 1);
    if (h == NULL) {
        return;
    }

    h->used = ngx_current_msec;
    pos->offset = h->offset;
    pos->seq = zone->sh->history_seq;
    ngx_memcpy(pos->epoch, h->epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
    pos->on = 1;
}


/*
 * A join since (epoch, since) that took the position pos: the frames
 * of the publications after since up to pos->offset, in order, in one
 * ngx_alloc()ed block of (size_t length, uint64_t offset, uint64_t seq,
 * frame) records, or NULL.
 * NGX_OK: recovered (*buf may be NULL: nothing was missed); NGX_DECLINED:
 * the history does not hold all of it, or another epoch.
 */

ngx_int_t
ngx_http_realtime_history_replay(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_str_t *epoch, uint64_t since,
    ngx_http_realtime_history_pos_t *pos, u_char **buf, size_t *len)
{
    u_char                          *p;
    size_t                           size, again;
    ngx_queue_t                     *q;
    ngx_http_realtime_sh_entry_t    *e;
    ngx_http_realtime_sh_history_t  *h;

    *buf = NULL;
    *len = 0;

    if (!pos->on || epoch->len != NGX_HTTP_REALTIME_EPOCH_LEN
        || ngx_memcmp(epoch->data, pos->epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           != 0
        || since > pos->offset)
    {
        return NGX_DECLINED;
    }

    if (since == pos->offset) {
        return NGX_OK;
    }

    /* sized under the lock, copied under it again: no allocation in it */

    ngx_shmtx_lock(&zone->shpool->mutex);

    h = ngx_http_realtime_history_node(zone, room, 0);

    if (h == NULL
        || ngx_memcmp(h->epoch, pos->epoch, NGX_HTTP_REALTIME_EPOCH_LEN) != 0
        || !ngx_http_realtime_history_covers(zone, h, since, pos->offset,
                                              &size))
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    p = ngx_alloc(size, ngx_cycle->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    h = ngx_http_realtime_history_node(zone, room, 0);

    /* newer entries may have pushed some out meanwhile */

    if (h == NULL
        || ngx_memcmp(h->epoch, pos->epoch, NGX_HTTP_REALTIME_EPOCH_LEN) != 0
        || !ngx_http_realtime_history_covers(zone, h, since, pos->offset,
                                              &again)
        || again != size)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_free(p);
        return NGX_DECLINED;
    }

    *buf = p;

    for (q = ngx_queue_head(&h->entries);
         q != ngx_queue_sentinel(&h->entries);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

        if (e->offset <= since) {
            continue;
        }

        if (e->offset > pos->offset) {
            break;
        }

        p = ngx_http_realtime_history_record(p, e);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *len = p - *buf;

    return NGX_OK;
}


/*
 * Every offset in (since, last] has its entry, none past the TTL (the
 * sweep may not have come by yet): the bytes they take.
 */

static ngx_uint_t
ngx_http_realtime_history_covers(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h, uint64_t since, uint64_t last,
    size_t *size)
{
    uint64_t                       next;
    ngx_queue_t                   *q;
    ngx_http_realtime_sh_entry_t  *e;

    *size = 0;
    next = since + 1;

    for (q = ngx_queue_head(&h->entries);
         q != ngx_queue_sentinel(&h->entries) && next <= last;
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

        if (e->offset < next) {
            continue;
        }

        if (e->offset != next
            || ngx_current_msec - e->time >= zone->history_ttl)
        {
            /* the oldest wanted is gone, or one never had an entry */
            return 0;
        }

        *size += NGX_HTTP_REALTIME_HISTORY_RECORD + e->len;
        next++;
    }

    return next == last + 1;
}


static ngx_http_realtime_sh_history_t *
ngx_http_realtime_history_node(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_uint_t create)
{
    ngx_uint_t                       created;
    ngx_str_node_t                  *sn;
    ngx_http_realtime_sh_history_t  *h;

    if (!create) {
        sn = ngx_str_rbtree_lookup(&zone->sh->histories, room,
                                   ngx_crc32_short(room->data, room->len));
        return (ngx_http_realtime_sh_history_t *) sn;
    }

    h = ngx_http_realtime_sh_node(zone, &zone->sh->histories, room,
                                  sizeof(ngx_http_realtime_sh_history_t), 1,
                                  &created);
    if (h == NULL || !created) {
        return h;
    }

    /* a new history: a new epoch, offsets from 1 */

    ngx_queue_init(&h->entries);
    ngx_http_realtime_random_id(h->epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
    zone->sh->history_rooms++;

    return h;
}


/*
 * The same for a Socket.IO socket that comes back: what the client got
 * last is given by the zone's sequence (each worker delivers in its
 * order, so everything of the socket's rooms at or below it came): the
 * room's publications after it, up to pos->offset.  NGX_DECLINED when
 * the history may have lost one of them.
 */

ngx_int_t
ngx_http_realtime_history_replay_seq(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_str_t *epoch, uint64_t seq,
    ngx_http_realtime_history_pos_t *pos, u_char **buf, size_t *len)
{
    uint64_t                         since;
    size_t                           size;
    ngx_http_realtime_sh_history_t  *h;

    *buf = NULL;
    *len = 0;

    if (!pos->on || epoch->len != NGX_HTTP_REALTIME_EPOCH_LEN
        || ngx_memcmp(epoch->data, pos->epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           != 0)
    {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    h = ngx_http_realtime_history_node(zone, room, 0);

    if (h == NULL
        || !ngx_http_realtime_history_after_seq(zone, h, seq, pos->offset,
                                                &since, &size))
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* the room's place the client had: the rest as for a join since */
    return ngx_http_realtime_history_replay(zone, room, epoch, since, pos,
                                            buf, len);
}


/*
 * *since: the room's last offset whose entry is at or below seq (0 if
 * none came yet, which needs a history that starts at offset 1).
 */

static ngx_uint_t
ngx_http_realtime_history_after_seq(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h, uint64_t seq, uint64_t last,
    uint64_t *since, size_t *size)
{
    ngx_queue_t                   *q;
    ngx_http_realtime_sh_entry_t  *e;

    *since = (uint64_t) -1;
    *size = 0;

    for (q = ngx_queue_head(&h->entries);
         q != ngx_queue_sentinel(&h->entries);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

        if (e->seq > seq || e->offset > last) {
            break;
        }

        *since = e->offset;
    }

    if (*since == (uint64_t) -1) {
        /* none at or below seq is held: only if none was ever dropped */

        if (ngx_queue_empty(&h->entries)) {
            if (h->offset != 0) {
                return 0;
            }

        } else {
            q = ngx_queue_head(&h->entries);
            e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

            if (e->offset != 1) {
                return 0;
            }
        }

        *since = 0;
    }

    return ngx_http_realtime_history_covers(zone, h, *since, last, size);
}


/*
 * Under the zone's lock, for a Socket.IO socket kept in Redis: the zone's
 * sequence and the offset of the room's last max entries up to last,
 * oldest first, into places (room for max pairs), and *start: none
 * before the first was lost.  Any instance can then tell the room's
 * place of a client that says the last sequence it got.
 */

ngx_uint_t
ngx_http_realtime_history_places_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, uint64_t last, uint64_t *places, ngx_uint_t max,
    ngx_uint_t *start)
{
    uint64_t                         t;
    ngx_uint_t                       n, i;
    ngx_queue_t                     *q;
    ngx_http_realtime_sh_entry_t    *e;
    ngx_http_realtime_sh_history_t  *h;

    *start = 0;

    h = ngx_http_realtime_history_node(zone, room, 0);
    if (h == NULL) {
        return 0;
    }

    n = 0;

    /* from the newest: a client is rarely far behind what it was sent */

    for (q = ngx_queue_last(&h->entries);
         q != ngx_queue_sentinel(&h->entries) && n < max;
         q = ngx_queue_prev(q))
    {
        e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

        if (e->offset > last) {
            continue;
        }

        places[2 * n] = e->seq;
        places[2 * n + 1] = e->offset;
        n++;
    }

    for (i = 0; i < n / 2; i++) {
        t = places[2 * i];
        places[2 * i] = places[2 * (n - 1 - i)];
        places[2 * (n - 1 - i)] = t;

        t = places[2 * i + 1];
        places[2 * i + 1] = places[2 * (n - 1 - i) + 1];
        places[2 * (n - 1 - i) + 1] = t;
    }

    if (n) {
        *start = (places[1] == 1);

    } else {
        if (ngx_queue_empty(&h->entries)) {
            *start = (h->offset == 0);

        } else {
            q = ngx_queue_head(&h->entries);
            e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);
            *start = (e->offset == 1);
        }
    }

    return n;
}


static u_char *
ngx_http_realtime_history_record(u_char *p, ngx_http_realtime_sh_entry_t *e)
{
    p = ngx_cpymem(p, &e->len, sizeof(size_t));
    p = ngx_cpymem(p, &e->offset, sizeof(uint64_t));
    p = ngx_cpymem(p, &e->seq, sizeof(uint64_t));

    return ngx_cpymem(p, e->data, e->len);
}


/*
 * Sends replay records (of ngx_http_realtime_history_replay()) to the
 * session, in order, as frames of their own; frees buf.
 */

ngx_int_t
ngx_http_realtime_history_send(ngx_http_realtime_session_t *s, u_char *buf,
    size_t len)
{
    u_char                   *p, *last;
    size_t                    flen;
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    rc = NGX_OK;
    p = buf;
    last = buf + len;

    while (rc == NGX_OK && p < last) {
        ngx_memcpy(&flen, p, sizeof(size_t));
        p += sizeof(size_t);

        msg = ngx_http_realtime_msg_alloc(flen);
        if (msg == NULL) {
            rc = NGX_ERROR;
            break;
        }

        /* the offset is in the frame; the Socket.IO form wants the seq */
        ngx_memcpy(&msg->offset, p, sizeof(uint64_t));
        ngx_memcpy(&msg->seq, p + sizeof(uint64_t), sizeof(uint64_t));
        p += 2 * sizeof(uint64_t);

        ngx_memcpy(msg->data, p, flen);
        msg->len = flen;
        p += flen;

        rc = s->handler->deliver(s, msg);
        ngx_http_realtime_msg_release(msg);
    }

    if (buf) {
        ngx_free(buf);
    }

    return rc;
}


/*
 * Under the zone's lock: the room has its first member here again, its
 * subscription is new: the next offset from Redis is taken as it comes.
 */

void
ngx_http_realtime_history_resume_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room)
{
    ngx_http_realtime_sh_history_t  *h;

    h = ngx_http_realtime_history_node(zone, room, 0);

    if (h) {
        h->redis = 0;
    }
}


/* under the zone's lock: the room's offsets here are Redis's, and where */

ngx_uint_t
ngx_http_realtime_history_from_redis_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_http_realtime_history_pos_t *pos)
{
    ngx_http_realtime_sh_history_t  *h;

    h = ngx_http_realtime_history_node(zone, room, 0);

    if (h == NULL || !h->redis) {
        return 0;
    }

    pos->offset = h->offset;
    ngx_memcpy(pos->epoch, h->epoch, NGX_HTTP_REALTIME_EPOCH_LEN);

    return 1;
}


/* under the zone's lock: the epoch of the room's history, if it has one */

ngx_int_t
ngx_http_realtime_history_epoch_locked(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, u_char *epoch)
{
    ngx_http_realtime_sh_history_t  *h;

    h = ngx_http_realtime_history_node(zone, room, 0);
    if (h == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(epoch, h->epoch, NGX_HTTP_REALTIME_EPOCH_LEN);

    return NGX_OK;
}


/* keeps at most keep entries, and none past the TTL */

static void
ngx_http_realtime_history_expire(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h, ngx_uint_t keep)
{
    ngx_queue_t                   *q;
    ngx_http_realtime_sh_entry_t  *e;

    while (!ngx_queue_empty(&h->entries)) {
        q = ngx_queue_head(&h->entries);
        e = ngx_queue_data(q, ngx_http_realtime_sh_entry_t, queue);

        if (h->n <= keep
            && ngx_current_msec - e->time < zone->history_ttl)
        {
            break;
        }

        ngx_queue_remove(q);
        h->n--;
        zone->sh->history_messages--;
        zone->sh->history_bytes -= e->len;
        ngx_slab_free_locked(zone->shpool, e);
    }
}


static void
ngx_http_realtime_history_drop(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_sh_history_t *h)
{
    ngx_http_realtime_history_expire(zone, h, 0);
    zone->sh->history_rooms--;
    ngx_http_realtime_sh_node_free(zone, &zone->sh->histories, &h->sn);
}


/*
 * Every quarter of the TTL one worker drops what expired, and the rooms
 * without entries that nobody used within the TTL (their offsets start
 * again under a new epoch).
 */

ngx_int_t
ngx_http_realtime_history_init_process(ngx_http_realtime_zone_t *zone,
    ngx_cycle_t *cycle)
{
    if (zone->history_max == 0 || zone->slot == NGX_HTTP_REALTIME_SLOTS) {
        return NGX_OK;
    }

    zone->history_timer.handler = ngx_http_realtime_history_sweep;
    zone->history_timer.data = zone;
    zone->history_timer.log = cycle->log;
    zone->history_timer.cancelable = 1;

    ngx_add_timer(&zone->history_timer,
                  ngx_max(zone->history_ttl / 4, 1000));

    return NGX_OK;
}


static void
ngx_http_realtime_history_sweep(ngx_event_t *ev)
{
    ngx_msec_t                       every;
    ngx_atomic_uint_t                swept;
    ngx_rbtree_node_t               *node, *next, *sentinel;
    ngx_http_realtime_zone_t        *zone;
    ngx_http_realtime_shctx_t       *sh;
    ngx_http_realtime_sh_history_t  *h;

    zone = ev->data;
    sh = zone->sh;
    every = ngx_max(zone->history_ttl / 4, 1000);
    swept = sh->history_swept;

    if ((ngx_msec_t) (ngx_current_msec - swept) >= every
        && ngx_atomic_cmp_set(&sh->history_swept, swept, ngx_current_msec))
    {
        ngx_shmtx_lock(&zone->shpool->mutex);

        sentinel = sh->histories.sentinel;
        node = (sh->histories.root == sentinel)
               ? NULL : ngx_rbtree_min(sh->histories.root, sentinel);

        while (node) {
            next = ngx_rbtree_next(&sh->histories, node);
            h = (ngx_http_realtime_sh_history_t *) node;

            ngx_http_realtime_history_expire(zone, h, zone->history_max);

            if (h->n == 0
                && ngx_current_msec - h->used >= zone->history_ttl)
            {
                ngx_http_realtime_history_drop(zone, h);
            }

            node = next;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "realtime history swept, %ui rooms",
                       sh->history_rooms);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, every);
    }
}


/* realtime_history messages time; */

char *
ngx_http_realtime_history_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (rlcf->history_max != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        rlcf->history_max = 0;
        rlcf->history_ttl = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n == 0 || n > 100000) {
        return "needs 1 to 100000 messages";
    }

    if (cf->args->nelts != 3) {
        return "needs a time: how long messages are kept";
    }

    rlcf->history_max = n;

    rlcf->history_ttl = ngx_parse_time(&value[2], 0);
    if (rlcf->history_ttl == (ngx_msec_t) NGX_ERROR
        || rlcf->history_ttl == 0)
    {
        return "has an invalid time";
    }

    return NGX_CONF_OK;
}


/* the history is the zone's rooms': one bound per zone */

char *
ngx_http_realtime_history_merge(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *conf)
{
    ngx_http_realtime_zone_t  *zone;

    zone = conf->zone;

    if (conf->history_max == 0 || zone == NULL) {
        return NGX_CONF_OK;
    }

    if (zone->history_max
        && (zone->history_max != conf->history_max
            || zone->history_ttl != conf->history_ttl))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_history %ui %Mms differs from %ui %Mms "
                           "of another location of zone \"%V\"",
                           conf->history_max, conf->history_ttl,
                           zone->history_max, zone->history_ttl,
                           &zone->name);
        return NGX_CONF_ERROR;
    }

    zone->history_max = conf->history_max;
    zone->history_ttl = conf->history_ttl;

    return NGX_CONF_OK;
}
