
/*
 * Copyright (C) ngx-realtime developers
 *
 * Publications between instances (realtime_redis), by pub/sub: how they
 * go out (ngx_http_realtime_redis_send()) and how they come in from the
 * leader's subscription (ngx_http_realtime_redis_sync_message()).  Each
 * instance's leader subscribes to the rooms it has members in, and to
 * the users' and broadcast channels.
 *
 *     "rt1 <instance> <type> <target length> <except length>\n"
 *     <target> <except> <json>
 *
 * Pub/sub keeps nothing: a subscriber that is away misses what is
 * published meanwhile; the worker that publishes keeps what it cannot
 * send in its outbox (ngx_http_realtime_redis_outbox.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"


static void ngx_http_realtime_redis_on_published(redisAsyncContext *ac,
    void *r, void *privdata);


/* NGX_OK: in the connection's buffer; NGX_DECLINED: lost (counted) */

ngx_int_t
ngx_http_realtime_redis_send(ngx_http_realtime_redis_t *rd, ngx_uint_t type,
    ngx_str_t *target, ngx_str_t *except, ngx_http_realtime_msg_t *msg,
    ngx_http_realtime_published_t *wait)
{
    u_char                     *p, *payload, *json;
    size_t                      len, json_len, header;
    ngx_http_realtime_zone_t   *zone;
    u_char                      channel[64 + 16 + NGX_HTTP_REALTIME_USER_MAX];

    zone = rd->zone;

    if (type == NGX_HTTP_REALTIME_TO_ROOM && zone->history_max) {
        return ngx_http_realtime_redis_send_sequenced(rd, target, except,
                                                      msg, wait);
    }

    /* the JSON is the payload of the text frame */

    header = (msg->data[1] & 0x7f) < 126 ? 2
             : (msg->data[1] & 0x7f) == 126 ? 4 : 10;

    json = msg->data + header;
    json_len = msg->len - header;

    len = sizeof(NGX_HTTP_REALTIME_REDIS_MAGIC " ") - 1
          + NGX_HTTP_REALTIME_INSTANCE_LEN + 3 * (NGX_INT_T_LEN + 1)
          + target->len + (except ? except->len : 0) + json_len;

    if (len > rd->buf_size) {
        payload = ngx_alloc(ngx_max(len, 4096), rd->log);
        if (payload == NULL) {
            ngx_http_realtime_redis_unsynced(rd, 1);
            return NGX_DECLINED;
        }

        if (rd->buf) {
            ngx_free(rd->buf);
        }

        rd->buf = payload;
        rd->buf_size = ngx_max(len, 4096);
    }

    payload = rd->buf;

    p = ngx_sprintf(payload, NGX_HTTP_REALTIME_REDIS_MAGIC " %s %ui %uz %uz\n",
                    zone->sh->instance, type, target->len,
                    except ? except->len : 0);
    if (target->len) {
        p = ngx_cpymem(p, target->data, target->len);
    }

    if (except && except->len) {
        p = ngx_cpymem(p, except->data, except->len);
    }

    p = ngx_cpymem(p, json, json_len);

    len = ngx_http_realtime_redis_channel(rd, channel, type, target);

    if (redisAsyncCommand(rd->pub, ngx_http_realtime_redis_on_published,
                          NULL, "PUBLISH %b %b", channel, len, payload,
                          (size_t) (p - payload))
        != REDIS_OK)
    {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


void
ngx_http_realtime_redis_unsynced(ngx_http_realtime_redis_t *rd, ngx_uint_t n)
{
    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_unsynced, n);
}


static void
ngx_http_realtime_redis_on_published(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                 *reply;
    ngx_http_realtime_redis_t  *rd;

    rd = ac->data;
    reply = r;

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis %s:%ui: publish failed: %*s",
                          rd->conf->host, rd->conf->port,
                          (size_t) reply->len, reply->str);
        }

        ngx_http_realtime_redis_unsynced(rd, 1);
        return;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_published, 1);

    /* what waited while Redis was stuck goes once it keeps up again */

    if (rd->outbox_n && rd->pending < NGX_HTTP_REALTIME_REDIS_PENDING_MAX / 2)
    {
        ngx_http_realtime_redis_outbox_flush(rd);
    }
}


/* a pub/sub message on a channel of the leader's, to this instance */

void
ngx_http_realtime_redis_sync_message(ngx_http_realtime_redis_t *rd,
    u_char *p, size_t len)
{
    u_char                   *last, *start;
    size_t                    tlen, elen;
    ngx_int_t                 type;
    ngx_str_t                 target, except, instance;
    ngx_http_realtime_msg_t  *msg;

    start = p;
    last = p + len;

    if (len >= 4 && ngx_strncmp(p, "rt2 ", 4) == 0) {
        ngx_http_realtime_redis_sync_sequenced(rd, p, len);
        return;
    }

    if (len < 4 || ngx_strncmp(p, NGX_HTTP_REALTIME_REDIS_MAGIC " ", 4) != 0)
    {
        goto invalid;
    }

    p += 4;

    instance.data = p;
    p = ngx_strlchr(p, last, ' ');
    if (p == NULL) {
        goto invalid;
    }

    instance.len = p - instance.data;

    if (instance.len == ngx_strlen(rd->zone->sh->instance)
        && ngx_strncmp(instance.data, rd->zone->sh->instance, instance.len)
           == 0)
    {
        /* our own publication, delivered here already */
        return;
    }

    if (last - p < 4 || p[2] != ' ') {
        goto invalid;
    }

    type = ngx_atoi(p + 1, 1);
    p += 3;

    tlen = 0;
    while (p < last && *p >= '0' && *p <= '9') {
        tlen = tlen * 10 + (*p++ - '0');
    }

    if (p >= last || *p++ != ' ') {
        goto invalid;
    }

    elen = 0;
    while (p < last && *p >= '0' && *p <= '9') {
        elen = elen * 10 + (*p++ - '0');
    }

    if (type == NGX_HTTP_REALTIME_REDIS_USERS) {
        /* the next tick of the user list reads Redis again */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "realtime redis: users of %V changed", &instance);
        rd->zone->sh->users_remote = 1;
        return;
    }

    if (p >= last || *p++ != '\n' || type < NGX_HTTP_REALTIME_TO_ROOM
        || type > NGX_HTTP_REALTIME_TO_ALL
        || tlen > NGX_HTTP_REALTIME_USER_MAX
        || elen > NGX_HTTP_REALTIME_USER_MAX
        || (size_t) (last - p) < tlen + elen)
    {
        goto invalid;
    }

    target.data = p;
    target.len = tlen;
    except.data = p + tlen;
    except.len = elen;
    p += tlen + elen;

    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_TEXT, p, last - p);
    if (msg == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_received, 1);

    (void) ngx_http_realtime_publish_zone(rd->zone, type, &target, &except,
                                          NULL, msg, NULL);
    ngx_http_realtime_msg_release(msg);

    return;

invalid:

    ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                  "realtime redis: ignoring a message that is not ours: "
                  "\"%*s\"", ngx_min(len, (size_t) 32), start);
}
