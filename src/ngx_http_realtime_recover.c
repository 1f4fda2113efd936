
/*
 * Copyright (C) ngx-realtime developers
 *
 * A native join "since" a place that this instance's history does not
 * hold, with realtime_redis: the client was on another instance, or this
 * one had nobody in the room.  Redis keeps the room's list with the same
 * offsets (ngx_http_realtime_redis_history.c), so it is read there:
 *
 *   1. the member is in the room already (ngx_http_realtime_room_join_at())
 *      and gets nothing live meanwhile (lm->recovery);
 *   2. once the room's SUBSCRIBE is confirmed, every publication after
 *      the read comes by the subscription into the zone's history;
 *   3. the read: offset, epoch and list at once, up to Redis's last;
 *   4. then "joined", the list after since up to last, and what the zone
 *      holds after last (what came live meanwhile), in order; the member
 *      takes the zone's place, and skips what is up to last if the
 *      subscription is behind (lm->floor).
 *
 * Anything that does not hold (no Redis, a trimmed list, another epoch,
 * no subscription within NGX_HTTP_REALTIME_RECOVER_TIME) answers
 * "recovered": false, as a local miss does: nothing partial.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


#define NGX_HTTP_REALTIME_RECOVER_TIME    2000
#define NGX_HTTP_REALTIME_RECOVER_STEP    10


typedef struct {
    ngx_http_realtime_member_wait_t    wait;      /* first: the member */
    ngx_http_realtime_history_read_t   read;
    ngx_event_t                        timer;
    ngx_msec_t                         deadline;
    json_int_t                         id;
    ngx_uint_t                         members;
    unsigned                           reading:1;
    unsigned                           answered:1;  /* by Redis */
} ngx_http_realtime_recover_t;


static void ngx_http_realtime_recover_step(ngx_event_t *ev);
static void ngx_http_realtime_recover_read(void *data, ngx_int_t rc);
static void ngx_http_realtime_recover_end(ngx_http_realtime_recover_t *rv,
    ngx_int_t rc);
static void ngx_http_realtime_recover_free(ngx_http_realtime_recover_t *rv);


/*
 * NGX_OK: the answer comes later; NGX_DECLINED: not from Redis, the
 * caller answers "recovered": false now.
 */

ngx_int_t
ngx_http_realtime_recover_start(ngx_http_realtime_session_t *s,
    ngx_str_t *room, ngx_str_t *epoch, uint64_t since, ngx_uint_t members,
    json_int_t id)
{
    ngx_http_realtime_recover_t       *rv;
    ngx_http_realtime_local_member_t  *lm;

    if (s->zone->redis == NULL || epoch->len != NGX_HTTP_REALTIME_EPOCH_LEN)
    {
        return NGX_DECLINED;
    }

    lm = ngx_http_realtime_local_find(s, room);
    if (lm == NULL || lm->recovery) {
        return NGX_DECLINED;
    }

    rv = ngx_calloc(sizeof(ngx_http_realtime_recover_t), s->log);
    if (rv == NULL) {
        return NGX_DECLINED;
    }

    rv->wait.lm = lm;
    rv->read.handler = ngx_http_realtime_recover_read;
    rv->read.data = rv;
    rv->read.since = since;
    ngx_memcpy(rv->read.epoch, epoch->data, NGX_HTTP_REALTIME_EPOCH_LEN);
    rv->deadline = ngx_current_msec + NGX_HTTP_REALTIME_RECOVER_TIME;
    rv->id = id;
    rv->members = members;

    rv->timer.handler = ngx_http_realtime_recover_step;
    rv->timer.data = rv;
    /* the member's socket (and its log) may go before the timer */
    rv->timer.log = ngx_cycle->log;
    rv->timer.cancelable = 1;

    lm->recovery = &rv->wait;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime recover \"%V\" since %uL from Redis",
                   room, since);

    ngx_http_realtime_recover_step(&rv->timer);

    return NGX_OK;
}


/* steps 2 and 4: waits for the subscription, then for the zone */

static void
ngx_http_realtime_recover_step(ngx_event_t *ev)
{
    ngx_int_t                          rc;
    ngx_uint_t                         live;
    ngx_str_t                         *room;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_recover_t       *rv;
    ngx_http_realtime_sh_room_t       *r;
    ngx_http_realtime_local_member_t  *lm;
    ngx_http_realtime_history_pos_t    pos;

    rv = ev->data;
    lm = rv->wait.lm;

    if (lm == NULL) {
        ngx_http_realtime_recover_free(rv);
        return;
    }

    zone = lm->session->zone;
    room = &lm->room->sn.str;

    if ((ngx_msec_int_t) (ngx_current_msec - rv->deadline) >= 0) {
        ngx_log_error(NGX_LOG_INFO, lm->session->log, 0,
                      "realtime recover \"%V\": no subscription or history "
                      "in %M ms", room,
                      (ngx_msec_t) NGX_HTTP_REALTIME_RECOVER_TIME);

        ngx_http_realtime_recover_end(rv, rv->read.buf ? NGX_OK
                                                       : NGX_DECLINED);
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    r = (ngx_http_realtime_sh_room_t *)
            ngx_str_rbtree_lookup(&zone->sh->rooms, room,
                                  ngx_crc32_short(room->data, room->len));
    live = r && r->redis_live;

    ngx_http_realtime_history_position_locked(zone, room, &pos);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!rv->answered) {
        /* step 3 once subscribed */

        if (!live) {
            ngx_add_timer(ev, NGX_HTTP_REALTIME_RECOVER_STEP);
            return;
        }

        rc = ngx_http_realtime_redis_history_read(zone, room, &rv->read);

        if (rc != NGX_OK) {
            ngx_http_realtime_recover_end(rv, NGX_DECLINED);
            return;
        }

        rv->reading = 1;
        return;
    }

    /* step 4 when the zone has what Redis had, or it cannot */

    if (pos.on
        && ngx_memcmp(pos.epoch, rv->read.epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           == 0
        && pos.offset < rv->read.last)
    {
        ngx_add_timer(ev, NGX_HTTP_REALTIME_RECOVER_STEP);
        return;
    }

    ngx_http_realtime_recover_end(rv, NGX_OK);
}


/* step 3 answered */

static void
ngx_http_realtime_recover_read(void *data, ngx_int_t rc)
{
    ngx_http_realtime_recover_t *rv = data;

    rv->reading = 0;
    rv->answered = 1;

    if (rv->wait.lm == NULL || rc == NGX_ERROR) {
        ngx_http_realtime_recover_free(rv);
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_realtime_recover_end(rv, NGX_DECLINED);
        return;
    }

    if (rv->read.since == rv->read.last) {
        /* nothing was missed: no wait for the zone */
        ngx_http_realtime_recover_end(rv, NGX_OK);
        return;
    }

    ngx_http_realtime_recover_step(&rv->timer);
}


/*
 * The answer: "joined", then Redis's replay, then the zone's after it;
 * the member takes the zone's place for what comes live.
 */

static void
ngx_http_realtime_recover_end(ngx_http_realtime_recover_t *rv, ngx_int_t rc)
{
    u_char                            *buf;
    size_t                             len;
    json_t                            *data;
    ngx_str_t                         *room, epoch;
    uint64_t                           offset;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_session_t       *s;
    ngx_uint_t                         redis;
    ngx_http_realtime_local_member_t  *lm;
    ngx_http_realtime_history_pos_t    pos, rp;

    lm = rv->wait.lm;
    s = lm->session;
    zone = s->zone;
    room = &lm->room->sn.str;
    buf = NULL;
    len = 0;

    /* the member's place, taken as a join takes it */

    ngx_shmtx_lock(&zone->shpool->mutex);
    ngx_http_realtime_history_position_locked(zone, room, &pos);
    redis = ngx_http_realtime_history_from_redis_locked(zone, room, &rp);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    offset = pos.offset;

    if (rc == NGX_OK && redis
        && ngx_memcmp(rp.epoch, rv->read.epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           != 0)
    {
        /* Redis's epoch changed since it was read: nothing partial */
        rc = NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        epoch.data = rv->read.epoch;
        epoch.len = NGX_HTTP_REALTIME_EPOCH_LEN;

        if (pos.on
            && ngx_memcmp(pos.epoch, rv->read.epoch,
                          NGX_HTTP_REALTIME_EPOCH_LEN) == 0
            && pos.offset > rv->read.last)
        {
            /* what came by the subscription after Redis's read */
            rc = ngx_http_realtime_history_replay(zone, room, &epoch,
                                                  rv->read.last, &pos, &buf,
                                                  &len);
            if (rc != NGX_OK) {
                rc = NGX_DECLINED;
            }

        } else {
            /* the subscription is behind, or brought nothing yet */
            offset = rv->read.last;
            ngx_memcpy(pos.epoch, rv->read.epoch,
                       NGX_HTTP_REALTIME_EPOCH_LEN);
            lm->floor = rv->read.last;
        }
    }

    if (rc != NGX_OK) {
        lm->floor = 0;

        if (rv->read.buf) {
            ngx_free(rv->read.buf);
            rv->read.buf = NULL;
            rv->read.len = 0;
        }
    }

    lm->recovery = NULL;
    lm->seq = pos.seq;
    lm->offset = offset;

    data = json_pack("{s:s%, s:I, s:I, s:s%, s:b}",
                     "room", (char *) room->data, room->len,
                     "members", (json_int_t) rv->members,
                     "offset", (json_int_t) offset,
                     "epoch", (char *) pos.epoch,
                     (size_t) NGX_HTTP_REALTIME_EPOCH_LEN,
                     "recovered", rc == NGX_OK);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime recover \"%V\" at %uL: %i, %uz bytes",
                   room, offset, rc, rv->read.len + len);

    /*
     * A send that fails has closed the socket behind it already;
     * history_send() frees what it is given, recover_free() the rest.
     */

    if (data && s->handler->reply(s, "joined", data, rv->id) == NGX_OK) {
        rc = ngx_http_realtime_history_send(s, rv->read.buf, rv->read.len);
        rv->read.buf = NULL;

        if (rc == NGX_OK) {
            (void) ngx_http_realtime_history_send(s, buf, len);
            buf = NULL;
        }
    }

    if (buf) {
        ngx_free(buf);
    }

    if (data) {
        json_decref(data);
    }

    ngx_http_realtime_recover_free(rv);
}


static void
ngx_http_realtime_recover_free(ngx_http_realtime_recover_t *rv)
{
    if (rv->reading) {
        /* Redis's answer frees it */
        return;
    }

    if (rv->wait.lm) {
        rv->wait.lm->recovery = NULL;
    }

    if (rv->timer.timer_set) {
        ngx_del_timer(&rv->timer);
    }

    if (rv->read.buf) {
        ngx_free(rv->read.buf);
    }

    ngx_free(rv);
}
