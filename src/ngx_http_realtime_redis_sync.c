
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
#include "ngx_http_realtime_sync_codec.h"


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

    header = ngx_http_realtime_frame_header_of(msg->data);

    json = msg->data + header;
    json_len = msg->len - header;

    len = sizeof(NGX_HTTP_REALTIME_REDIS_MAGIC " ") - 1
          + NGX_HTTP_REALTIME_INSTANCE_LEN + 3 * (NGX_INT_T_LEN + 1)
          + target->len + (except ? except->len : 0) + json_len;

    if (ngx_http_realtime_redis_buffer(rd, len) != NGX_OK) {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
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

    if (ngx_http_realtime_redis_command(rd, channel, len,
                                        ngx_http_realtime_redis_on_published,
                                        NULL, "%s %b %b", rd->publish,
                                        channel, len, payload,
                                        (size_t) (p - payload))
        != NGX_OK)
    {
        ngx_http_realtime_redis_unsynced(rd, 1);
        return NGX_DECLINED;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


/* the worker's buffer for what it sends, len at least: it only grows */

ngx_int_t
ngx_http_realtime_redis_buffer(ngx_http_realtime_redis_t *rd, size_t len)
{
    u_char  *p;

    if (len <= rd->buf_size) {
        return NGX_OK;
    }

    p = ngx_alloc(ngx_max(len, 4096), rd->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    rd->buf = p;
    rd->buf_size = ngx_max(len, 4096);

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
    ngx_str_t                      target, except, instance;
    ngx_http_realtime_msg_t       *msg;
    ngx_http_realtime_sync_msg_t   m;

    if (len >= 4 && ngx_strncmp(p, "rt2 ", 4) == 0) {
        ngx_http_realtime_redis_sync_sequenced(rd, p, len);
        return;
    }

    if (ngx_http_realtime_sync_parse(p, len, NGX_HTTP_REALTIME_USER_MAX,
                                     NGX_HTTP_REALTIME_USER_MAX, &m)
        != 0
        || m.version != 1)
    {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "realtime redis: ignoring a message that is not ours: "
                      "\"%*s\"", ngx_min(len, (size_t) 32), p);
        return;
    }

    instance.data = (u_char *) m.instance;
    instance.len = m.instance_len;

    if (instance.len == ngx_strlen(rd->zone->sh->instance)
        && ngx_strncmp(instance.data, rd->zone->sh->instance, instance.len)
           == 0)
    {
        /* our own publication, delivered here already */
        return;
    }

    if (m.type == NGX_HTTP_REALTIME_REDIS_USERS) {
        /* the next tick of the user list reads Redis again */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "realtime redis: users of %V changed", &instance);
        rd->zone->sh->users_remote = 1;
        return;
    }

    target.data = (u_char *) m.target;
    target.len = m.target_len;
    except.data = (u_char *) m.except;
    except.len = m.except_len;

    msg = ngx_http_realtime_msg_frame(NGX_HTTP_REALTIME_OP_TEXT,
                                      (u_char *) m.json, m.json_len);
    if (msg == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_received, 1);

    (void) ngx_http_realtime_publish_zone(rd->zone, m.type, &target, &except,
                                          NULL, msg, NULL);
    ngx_http_realtime_msg_release(msg);
}
