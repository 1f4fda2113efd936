
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
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_places_pt  handler;
    void                              *data;
    ngx_uint_t                         n;
} ngx_http_realtime_redis_places_t;


/* <prefix>offset:{<room>} */
#define NGX_HTTP_REALTIME_REDIS_OFFSET_MAX                                   \
    (64 + sizeof("offset:{}") + NGX_HTTP_REALTIME_ROOM_MAX)


static size_t ngx_http_realtime_redis_session_key(
    ngx_http_realtime_redis_t *rd, u_char *buf, ngx_str_t *pid);
static void ngx_http_realtime_redis_on_take(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_realtime_redis_on_places(redisAsyncContext *ac,
    void *r, void *privdata);


/* GETDEL is Redis 6.2; the script reads and deletes on any Redis */
static const char  ngx_http_realtime_redis_take_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v then redis.call('DEL', KEYS[1]) end "
    "return v";


/* each room's offset and epoch, "0" and "" if it has none yet */
static const char  ngx_http_realtime_redis_places_script[] =
    "local r = {} "
    "for i = 1, #KEYS do "
    "local v = redis.call('HMGET', KEYS[i], 'o', 'e') "
    "r[i] = {v[1] or '0', v[2] or ''} "
    "end "
    "return r";


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


/*
 * For a socket kept in rooms whose history here is not Redis's yet
 * (nothing came by Redis since this instance subscribed): where Redis
 * is in them.  NGX_DECLINED: no connection; otherwise the handler is
 * called exactly once (places valid only in the call).
 */

ngx_int_t
ngx_http_realtime_redis_session_places(ngx_http_realtime_zone_t *zone,
    ngx_str_t *rooms, ngx_uint_t n, ngx_http_realtime_redis_places_pt handler,
    void *data)
{
    u_char                            *keys, *key;
    size_t                            *lens;
    ngx_uint_t                         i;
    const char                       **argv;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_places_t  *pl;
    u_char                             nkeys[NGX_INT_T_LEN];

    rd = zone->redis;

    if (rd == NULL || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    pl = ngx_alloc(sizeof(ngx_http_realtime_redis_places_t)
                   + (n + 3) * (sizeof(char *) + sizeof(size_t))
                   + n * NGX_HTTP_REALTIME_REDIS_OFFSET_MAX, rd->log);
    if (pl == NULL) {
        return NGX_DECLINED;
    }

    pl->rd = rd;
    pl->handler = handler;
    pl->data = data;
    pl->n = n;

    argv = (const char **) (pl + 1);
    lens = (size_t *) (argv + n + 3);
    keys = (u_char *) (lens + n + 3);

    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = ngx_http_realtime_redis_places_script;
    lens[1] = sizeof(ngx_http_realtime_redis_places_script) - 1;
    argv[2] = (char *) nkeys;
    lens[2] = ngx_sprintf(nkeys, "%ui", n) - nkeys;

    for (i = 0; i < n; i++) {
        key = keys + i * NGX_HTTP_REALTIME_REDIS_OFFSET_MAX;
        argv[3 + i] = (char *) key;
        lens[3 + i] = ngx_http_realtime_redis_key(rd, key, "offset",
                                                  &rooms[i]);
    }

    if (redisAsyncCommandArgv(rd->pub, ngx_http_realtime_redis_on_places, pl,
                              (int) (n + 3), argv, lens)
        != REDIS_OK)
    {
        ngx_free(pl);
        return NGX_DECLINED;
    }

    if (rd->pending++ == 0) {
        rd->last_reply = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_realtime_redis_on_places(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                          rc, o;
    ngx_uint_t                         i;
    redisReply                        *reply, *e;
    ngx_http_realtime_redis_t         *rd;
    ngx_http_realtime_redis_places_t  *pl;
    ngx_http_realtime_history_pos_t   *places;

    pl = privdata;
    rd = pl->rd;
    reply = r;

    if (rd->pending) {
        rd->pending--;
    }

    rd->last_reply = ngx_current_msec;

    places = NULL;
    rc = NGX_ERROR;

    if (rd->exiting) {
        rc = NGX_ABORT;

    } else if (reply && reply->type == REDIS_REPLY_ARRAY
               && reply->elements == pl->n)
    {
        places = ngx_calloc(pl->n * sizeof(ngx_http_realtime_history_pos_t),
                            rd->log);
        rc = places ? NGX_OK : NGX_ERROR;

        for (i = 0; rc == NGX_OK && i < pl->n; i++) {
            e = reply->element[i];

            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
                || e->element[0]->type != REDIS_REPLY_STRING
                || e->element[1]->type != REDIS_REPLY_STRING)
            {
                rc = NGX_ERROR;
                break;
            }

            o = ngx_atoi((u_char *) e->element[0]->str, e->element[0]->len);

            if (o == NGX_ERROR) {
                rc = NGX_ERROR;
                break;
            }

            places[i].offset = (uint64_t) o;

            if (e->element[1]->len == NGX_HTTP_REALTIME_EPOCH_LEN) {
                ngx_memcpy(places[i].epoch, e->element[1]->str,
                           NGX_HTTP_REALTIME_EPOCH_LEN);
                places[i].on = 1;
            }
        }
    }

    pl->handler(pl->data, places, pl->n, rc);

    if (places) {
        ngx_free(places);
    }

    ngx_free(pl);
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
