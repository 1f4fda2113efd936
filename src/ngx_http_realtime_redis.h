
/*
 * Copyright (C) ngx-realtime developers
 *
 * A worker's Redis connections, shared by ngx_http_realtime_redis.c and
 * ngx_http_realtime_redis_presence.c.
 */


#ifndef _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_
#define _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* commands in flight past which Redis is taken as stuck */
#define NGX_HTTP_REALTIME_REDIS_PENDING_MAX  10000


struct ngx_http_realtime_redis_s {
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_redis_conf_t    *conf;

    redisAsyncContext                 *pub;
    redisAsyncContext                 *sub;

    unsigned                           pub_ready:1;
    unsigned                           sub_ready:1;
    unsigned                           leader:1;

    ngx_uint_t                         pending;
    ngx_msec_t                         last_reply;
    ngx_msec_t                         pub_retry;
    ngx_msec_t                         sub_retry;
    ngx_msec_t                         backoff;
    ngx_msec_t                         connect_start_pub;
    ngx_msec_t                         connect_start_sub;
    ngx_msec_t                         presence_written;

    /* reused for every publication: no allocation per message */
    u_char                            *buf;
    size_t                             buf_size;

    ngx_event_t                        tick;
    ngx_event_t                        users_notify;   /* user list */
    ngx_log_t                         *log;
};


void ngx_http_realtime_redis_presence_refresh(ngx_http_realtime_redis_t *rd);
void ngx_http_realtime_redis_users_changed(ngx_http_realtime_redis_t *rd);


#endif /* _NGX_HTTP_REALTIME_REDIS_H_INCLUDED_ */
