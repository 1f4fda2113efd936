
/*
 * Copyright (C) ngx-realtime developers
 *
 * A worker's outbox: the publications made while its connection to
 * Redis is down, reconnecting or stuck, published in order once it is
 * ready again.  Bounded by realtime_redis outbox= (entries) and
 * outbox_time= (age); only a publication beyond them is lost to the
 * other instances, and counted as unsynced.  While the outbox holds
 * anything, new publications queue behind it: the order of one worker's
 * publications is kept.
 *
 * The outbox is the path of a degraded Redis, not the hot one: each
 * entry copies its target with one allocation, the frame is shared.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"


struct ngx_http_realtime_redis_entry_s {
    ngx_http_realtime_msg_t           *msg;
    ngx_msec_t                         time;
    ngx_uint_t                         type;
    ngx_str_t                          target;
    ngx_str_t                          except;   /* follows target */
};


static void ngx_http_realtime_redis_outbox_pop(ngx_http_realtime_redis_t *rd,
    ngx_uint_t lost);
static void ngx_http_realtime_redis_outbox_count(
    ngx_http_realtime_redis_t *rd);


ngx_int_t
ngx_http_realtime_redis_outbox_init(ngx_http_realtime_redis_t *rd,
    ngx_pool_t *pool)
{
    if (rd->conf->outbox == 0) {
        return NGX_OK;
    }

    rd->outbox = ngx_pcalloc(pool, rd->conf->outbox
                                   * sizeof(ngx_http_realtime_redis_entry_t));
    if (rd->outbox == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_AGAIN: queued, to be published in order; NGX_DECLINED: the outbox
 * is full (or off), the publication is lost to the other instances.
 */

ngx_int_t
ngx_http_realtime_redis_outbox_add(ngx_http_realtime_redis_t *rd,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg)
{
    u_char                           *p;
    size_t                            elen;
    ngx_http_realtime_redis_entry_t  *e;

    /* the oldest go first when they are past the age */

    while (rd->outbox_n) {
        e = &rd->outbox[rd->outbox_head];

        if (ngx_current_msec - e->time < rd->conf->outbox_time) {
            break;
        }

        ngx_http_realtime_redis_outbox_pop(rd, 1);
    }

    if (rd->outbox_n == rd->conf->outbox) {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    elen = except ? except->len : 0;

    p = ngx_alloc(target->len + elen + 1, rd->log);
    if (p == NULL) {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    e = &rd->outbox[(rd->outbox_head + rd->outbox_n) % rd->conf->outbox];

    e->msg = msg;
    msg->refs++;
    e->time = ngx_current_msec;
    e->type = type;
    e->target.data = p;
    e->target.len = target->len;
    e->except.data = p + target->len;
    e->except.len = elen;

    if (target->len) {
        ngx_memcpy(p, target->data, target->len);
    }

    if (elen) {
        ngx_memcpy(p + target->len, except->data, elen);
    }

    if (rd->outbox_n++ == 0) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "realtime redis %s:%ui: not connected, publications "
                      "wait in the outbox", rd->conf->host, rd->conf->port);
    }

    ngx_http_realtime_redis_outbox_count(rd);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis outbox add type:%ui, %ui waiting",
                   type, rd->outbox_n);

    return NGX_AGAIN;
}


/*
 * The connection is ready: everything still young enough, in order.
 * Only once this instance is subscribed again, too: after Redis itself
 * was away, the other instances' subscribers come back about when ours
 * does, and pub/sub keeps nothing for one that is not there yet.
 */

void
ngx_http_realtime_redis_outbox_flush(ngx_http_realtime_redis_t *rd)
{
    ngx_uint_t                        sent, lost, level;
    ngx_http_realtime_redis_entry_t  *e;

    if (rd->outbox_n == 0 || !rd->zone->sh->redis_up) {
        return;
    }

    sent = 0;
    lost = 0;

    while (rd->outbox_n && rd->pub_ready
           && rd->pending < NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        e = &rd->outbox[rd->outbox_head];

        if (ngx_current_msec - e->time >= rd->conf->outbox_time) {
            lost++;
            ngx_http_realtime_redis_outbox_pop(rd, 1);
            continue;
        }

        (void) ngx_http_realtime_redis_send(rd, e->type, &e->target,
                                            &e->except, e->msg, NULL);
        sent++;
        ngx_http_realtime_redis_outbox_pop(rd, 0);
    }

    if (sent || lost) {
        level = lost ? NGX_LOG_WARN : NGX_LOG_NOTICE;

        ngx_log_error(level, rd->log, 0,
                      "realtime redis %s:%ui: outbox: %ui published, %ui "
                      "too old", rd->conf->host, rd->conf->port, sent, lost);
    }
}


/* exit: what waits is lost */

void
ngx_http_realtime_redis_outbox_free(ngx_http_realtime_redis_t *rd)
{
    while (rd->outbox_n) {
        ngx_http_realtime_redis_outbox_pop(rd, 1);
    }
}


static void
ngx_http_realtime_redis_outbox_pop(ngx_http_realtime_redis_t *rd,
    ngx_uint_t lost)
{
    ngx_http_realtime_redis_entry_t  *e;

    e = &rd->outbox[rd->outbox_head];

    if (lost && !rd->exiting && e->type == NGX_HTTP_REALTIME_TO_ROOM
        && rd->zone->history_max)
    {
        /* Redis was to deliver it here too: here it is, without a place */
        (void) ngx_http_realtime_publish_zone_at(rd->zone, &e->target,
                                                 &e->except, e->msg, NULL);
    }

    ngx_free(e->target.data);
    ngx_http_realtime_msg_release(e->msg);
    e->msg = NULL;

    rd->outbox_head = (rd->outbox_head + 1) % rd->conf->outbox;
    rd->outbox_n--;

    if (lost) {
        ngx_http_realtime_redis_unsynced(rd, 1);
    }

    ngx_http_realtime_redis_outbox_count(rd);
}


/* this worker's outbox in its slot, for the status and the metrics */

static void
ngx_http_realtime_redis_outbox_count(ngx_http_realtime_redis_t *rd)
{
    if (rd->zone->slot < NGX_HTTP_REALTIME_SLOTS) {
        rd->zone->sh->slots[rd->zone->slot].redis_outbox = rd->outbox_n;
    }
}
