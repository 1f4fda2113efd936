
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


static size_t ngx_http_realtime_redis_session_key(
    ngx_http_realtime_redis_t *rd, u_char *buf, ngx_str_t *pid);
static void ngx_http_realtime_redis_on_take(redisAsyncContext *ac, void *r,
    void *privdata);


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

    if (redisAsyncCommand(rd->pub, NULL, NULL, "SET %b %b PX %lu", key, klen,
                          rec, len, (unsigned long) ttl)
        != REDIS_OK)
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

    if (redisAsyncCommand(rd->pub, ngx_http_realtime_redis_on_take, tk,
                          "EVAL %s 1 %b",
                          ngx_http_realtime_redis_take_script, key, klen)
        != REDIS_OK)
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
