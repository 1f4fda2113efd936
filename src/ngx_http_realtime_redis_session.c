
/*
 * Copyright (C) ngx-realtime developers
 *
 * Kept Socket.IO sessions in Redis (realtime_socketio_recovery with
 * realtime_redis): a socket whose transport went is written as
 *
 *     <prefix>sio:{<pid>}   <record>   PX <realtime_socketio_recovery>
 *
 * by the worker that had it, and taken (read and deleted in one script)
 * by the worker, of any instance, that the client comes back to: a pid
 * comes back once, wherever.  The record is opaque here
 * (ngx_http_realtime_sio_resume.c makes and reads it).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"


#define NGX_HTTP_REALTIME_REDIS_SESSION_KEY  "sio:{%V}"

/* the prefix (64 bytes at most), "sio:{}" and a pid */
#define NGX_HTTP_REALTIME_REDIS_SESSION_MAX  (64 + 64)


typedef struct {
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_take_pt    handler;
    void                              *data;
} ngx_http_realtime_redis_take_t;


typedef struct {
    ngx_http_realtime_member_wait_t    wait;     /* first: the member */
    ngx_http_realtime_redis_t         *rd;
} ngx_http_realtime_redis_base_t;



static size_t ngx_http_realtime_redis_session_key(
    ngx_http_realtime_redis_t *rd, u_char *buf, ngx_str_t *pid);
static void ngx_http_realtime_redis_on_take(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_realtime_redis_on_base(redisAsyncContext *ac,
    void *r, void *privdata);


/* GETDEL is Redis 6.2; the script reads and deletes on any Redis */
static const char  ngx_http_realtime_redis_take_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v then redis.call('DEL', KEYS[1]) end "
    "return v";


/* NGX_DECLINED: no connection to write on, the session is not kept */

ngx_int_t
ngx_http_realtime_redis_session_keep(ngx_http_realtime_zone_t *zone,
    ngx_str_t *pid, u_char *rec, size_t len, ngx_msec_t ttl)
{
    size_t                      klen;
    ngx_http_realtime_redis_t  *rd;
    u_char                      key[NGX_HTTP_REALTIME_REDIS_SESSION_MAX];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    klen = ngx_http_realtime_redis_session_key(rd, key, pid);

    if (ngx_http_realtime_redis_command(rd, key, klen, NULL, NULL,
                                        "SET %b %b PX %lu", key, klen, rec,
                                        len, (unsigned long) ttl)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis session: kept %V, %uz bytes", pid, len);

    return NGX_OK;
}


/*
 * The record of pid, deleted as it is read.  NGX_DECLINED: no connection
 * to read on; otherwise the handler is called exactly once: NGX_OK with
 * the record (valid only in the call), NGX_DECLINED when none is kept,
 * NGX_ERROR when Redis failed, NGX_ABORT when the worker exits.
 */

ngx_int_t
ngx_http_realtime_redis_session_take(ngx_http_realtime_zone_t *zone,
    ngx_str_t *pid, ngx_http_realtime_redis_take_pt handler, void *data)
{
    size_t                           klen;
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_take_t  *tk;
    u_char                           key[NGX_HTTP_REALTIME_REDIS_SESSION_MAX];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    tk = ngx_alloc(sizeof(ngx_http_realtime_redis_take_t), rd->log);
    if (tk == NULL) {
        return NGX_DECLINED;
    }

    tk->rd = rd;
    tk->handler = handler;
    tk->data = data;

    klen = ngx_http_realtime_redis_session_key(rd, key, pid);

    if (ngx_http_realtime_redis_command(rd, key, klen,
                                        ngx_http_realtime_redis_on_take, tk,
                                        "EVAL %s 1 %b",
                                        ngx_http_realtime_redis_take_script,
                                        key, klen)
        != NGX_OK)
    {
        ngx_free(tk);
        return NGX_DECLINED;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis session: taking %V", pid);

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_take(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                      *reply;
    ngx_http_realtime_redis_t       *rd;
    ngx_http_realtime_redis_take_t  *tk;

    tk = privdata;
    rd = tk->rd;
    reply = r;

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (rd->exiting) {
        tk->handler(tk->data, NULL, 0, NGX_ABORT);

    } else if (reply == NULL) {
        tk->handler(tk->data, NULL, 0, NGX_ERROR);

    } else if (reply->type == REDIS_REPLY_STRING) {
        tk->handler(tk->data, (u_char *) reply->str, reply->len, NGX_OK);

    } else if (reply->type == REDIS_REPLY_NIL) {
        tk->handler(tk->data, NULL, 0, NGX_DECLINED);

    } else {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis %s:%ui: session take failed: %*s",
                          rd->conf->host, rd->conf->port,
                          (size_t) reply->len, reply->str);
        }

        tk->handler(tk->data, NULL, 0, NGX_ERROR);
    }

    ngx_free(tk);
}


/*
 * A member of a room whose history here is not Redis's yet (nothing
 * came by Redis since this instance subscribed): where Redis is in it
 * at the join.  While nothing comes, a Socket.IO socket there got
 * nothing after it; what Redis runs later, here or not (while it was
 * away, or before the subscription is confirmed), is after it.  A
 * publication run between the join and this read is the one left out.
 */

ngx_int_t
ngx_http_realtime_redis_session_base(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm)
{
    size_t                          klen;
    ngx_http_realtime_redis_t      *rd;
    ngx_http_realtime_redis_base_t *bs;
    u_char                          key[NGX_HTTP_REALTIME_REDIS_KEY_MAX];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    bs = ngx_alloc(sizeof(ngx_http_realtime_redis_base_t), rd->log);
    if (bs == NULL) {
        return NGX_DECLINED;
    }

    bs->wait.lm = lm;
    bs->rd = rd;

    klen = ngx_http_realtime_redis_key(rd, key, "offset", &lm->room->sn.str);

    if (ngx_http_realtime_redis_command(rd, key, klen,
                                        ngx_http_realtime_redis_on_base, bs,
                                        "HMGET %b o e", key, klen)
        != NGX_OK)
    {
        ngx_free(bs);
        return NGX_DECLINED;
    }

    lm->base_wait = &bs->wait;

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_base(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                          o;
    redisReply                        *reply, *e;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_base_t    *bs;
    ngx_http_realtime_local_member_t  *lm;

    bs = privdata;
    rd = bs->rd;
    lm = bs->wait.lm;
    reply = r;
    ngx_free(bs);

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    if (lm == NULL) {
        /* it left meanwhile */
        return;
    }

    lm->base_wait = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        return;
    }

    e = reply->element[0];

    if (e->type == REDIS_REPLY_NIL) {
        o = 0;

    } else if (e->type == REDIS_REPLY_STRING) {
        o = ngx_atoi((u_char *) e->str, e->len);
        if (o == NGX_ERROR) {
            return;
        }

    } else {
        return;
    }

    e = reply->element[1];

    if (e->type == REDIS_REPLY_STRING && e->len == NGX_HTTP_REALTIME_EPOCH_LEN)
    {
        ngx_memcpy(lm->base_epoch, e->str, NGX_HTTP_REALTIME_EPOCH_LEN);
        lm->base_none = 0;

    } else if (e->type == REDIS_REPLY_NIL && o == 0) {
        lm->base_none = 1;

    } else {
        return;
    }

    lm->base = (uint64_t) o;
    lm->base_known = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis session: base of \"%V\" is %ui",
                   &lm->room->sn.str, o);
}


/* <prefix>sio:{<pid>}: a slot of its own */

static size_t
ngx_http_realtime_redis_session_key(ngx_http_realtime_redis_t *rd,
    u_char *buf, ngx_str_t *pid)
{
    u_char  *p;

    p = ngx_cpymem(buf, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_sprintf(p, NGX_HTTP_REALTIME_REDIS_SESSION_KEY, pid);

    return p - buf;
}
