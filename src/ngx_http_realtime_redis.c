
/*
 * Copyright (C) ngx-realtime developers
 *
 * Several nginx instances, one set of rooms: Redis pub/sub through
 * hiredis's async API, its socket driven by the nginx event loop.
 *
 * Every worker publishes what is published locally on its own
 * connection.  One worker per instance, the leader, subscribes: to the
 * broadcast and user channels, and to the channel of every room that has
 * a member in this instance; what it receives goes through the zone to
 * every worker, as a local publication would.  A message carries the
 * instance id, so an instance never delivers its own publication twice.
 *
 * Channel names keep the room or user in a {hash tag}, so that on Redis
 * Cluster a room is one slot and SSUBSCRIBE/SPUBLISH can take over.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_redis.h"


#define NGX_HTTP_REALTIME_REDIS_TICK         1000
#define NGX_HTTP_REALTIME_REDIS_OUTBOX_TICK  50
#define NGX_HTTP_REALTIME_REDIS_BACKOFF_MIN  250
#define NGX_HTTP_REALTIME_REDIS_BACKOFF_MAX  30000


/* rooms per SUBSCRIBE command on a resubscription */
#define NGX_HTTP_REALTIME_REDIS_BATCH        512

#define NGX_HTTP_REALTIME_REDIS_USERS_DELAY  50


static void ngx_http_realtime_redis_tick(ngx_event_t *ev);
static void ngx_http_realtime_redis_users_notify(ngx_event_t *ev);
static void ngx_http_realtime_redis_pub_state(ngx_http_realtime_redis_t *rd,
    ngx_uint_t up);
static ngx_int_t ngx_http_realtime_redis_resolve(ngx_conf_t *cf,
    u_char *host, ngx_uint_t port, u_char **addr);
static char *ngx_http_realtime_redis_host(ngx_conf_t *cf, u_char *p,
    u_char *last, u_char **host, ngx_uint_t *port);
static char *ngx_http_realtime_redis_seeds(ngx_conf_t *cf,
    ngx_http_realtime_redis_conf_t *rc, ngx_str_t *hosts);
static void ngx_http_realtime_redis_elect(ngx_http_realtime_redis_t *rd);
static redisAsyncContext *ngx_http_realtime_redis_connect(
    ngx_http_realtime_redis_t *rd, ngx_uint_t subscriber);
static void ngx_http_realtime_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_realtime_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_realtime_redis_on_ready(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_realtime_redis_drop(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac);
static void ngx_http_realtime_redis_failed(ngx_http_realtime_redis_t *rd,
    ngx_uint_t subscriber);
static ngx_int_t ngx_http_realtime_redis_resubscribe(
    ngx_http_realtime_redis_t *rd);
static void ngx_http_realtime_redis_on_message(redisAsyncContext *ac,
    void *r, void *privdata);


static void ngx_http_realtime_redis_add_read(void *data);
static void ngx_http_realtime_redis_del_read(void *data);
static void ngx_http_realtime_redis_add_write(void *data);
static void ngx_http_realtime_redis_del_write(void *data);
static void ngx_http_realtime_redis_read_handler(ngx_event_t *ev);
static void ngx_http_realtime_redis_write_handler(ngx_event_t *ev);


/*
 * realtime_redis zone redis://[[user]:password@]host[:port][/db]
 *     [prefix=rt:] [connect_timeout=2s] [command_timeout=2s] ...;
 * realtime_redis zone redis://[[user]:password@]host:port[,host:port...]
 *     cluster ...;
 */

char *
ngx_http_realtime_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                            *rv;
    u_char                          *p, *last, *at, *colon, *slash, *comma;
    ngx_str_t                       *value, s, hosts;
    ngx_int_t                        n;
    ngx_uint_t                       i;
    ngx_http_realtime_zone_t        *zone;
    ngx_http_realtime_redis_conf_t  *rc;

    value = cf->args->elts;

    zone = ngx_http_realtime_zone_add(cf, &value[1], 0);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->redis_conf) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->port = 6379;
    rc->connect_timeout = 2000;
    rc->command_timeout = 2000;
    rc->presence_ttl = 30000;
    rc->outbox = 1024;
    rc->outbox_time = 10000;
    ngx_str_set(&rc->prefix, "rt:");

    p = value[2].data;
    last = p + value[2].len;

    if (value[2].len < 8 || ngx_strncmp(p, "redis://", 8) != 0) {
        return "needs a redis:// URL (rediss:// is not supported by "
               "hiredis 0.14)";
    }

    p += 8;

    at = ngx_strlchr(p, last, '@');

    if (at) {
        colon = ngx_strlchr(p, at, ':');

        if (colon) {
            rc->user.data = p;
            rc->user.len = colon - p;
            rc->password.data = colon + 1;
            rc->password.len = at - colon - 1;

        } else {
            rc->password.data = p;
            rc->password.len = at - p;
        }

        p = at + 1;
    }

    slash = ngx_strlchr(p, last, '/');

    if (slash) {
        n = ngx_atoi(slash + 1, last - slash - 1);
        if (n == NGX_ERROR) {
            return "has an invalid database number";
        }

        rc->db = n;
        last = slash;
    }

    /* the seed nodes of a cluster follow the first one */

    comma = ngx_strlchr(p, last, ',');
    hosts.data = comma ? comma + 1 : NULL;
    hosts.len = comma ? (size_t) (last - comma - 1) : 0;

    if (comma) {
        last = comma;
    }

    rv = ngx_http_realtime_redis_host(cf, p, last, &rc->host, &rc->port);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "cluster") == 0) {
            rc->cluster = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rc->prefix.data = value[i].data + 7;
            rc->prefix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            rc->connect_timeout = ngx_parse_time(&s, 0);
            if (rc->connect_timeout == (ngx_msec_t) NGX_ERROR) {
                return "has an invalid connect_timeout";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "presence_ttl=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            rc->presence_ttl = ngx_parse_time(&s, 0);
            if (rc->presence_ttl == (ngx_msec_t) NGX_ERROR
                || rc->presence_ttl < 3000)
            {
                return "has an invalid presence_ttl (at least 3s)";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "outbox=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n == NGX_ERROR || n > 1000000) {
                return "has an invalid outbox (0-1000000 publications)";
            }

            rc->outbox = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "outbox_time=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            rc->outbox_time = ngx_parse_time(&s, 0);
            if (rc->outbox_time == (ngx_msec_t) NGX_ERROR
                || rc->outbox_time == 0)
            {
                return "has an invalid outbox_time";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "command_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            rc->command_timeout = ngx_parse_time(&s, 0);
            if (rc->command_timeout == (ngx_msec_t) NGX_ERROR) {
                return "has an invalid command_timeout";
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rc->prefix.len > 64) {
        return "has a prefix longer than 64 bytes";
    }

    if (hosts.data && !rc->cluster) {
        return "has several hosts without \"cluster\"";
    }

    if (rc->cluster && rc->db) {
        return "has a database number, which Redis Cluster does not have";
    }

    if (ngx_http_realtime_redis_resolve(cf, rc->host, rc->port, &rc->addr)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (rc->cluster) {
        rv = ngx_http_realtime_redis_seeds(cf, rc, &hosts);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    zone->redis_conf = rc;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_realtime_redis_init_process(ngx_http_realtime_zone_t *zone,
    ngx_cycle_t *cycle)
{
    ngx_http_realtime_redis_t  *rd;

    if (zone->redis_conf == NULL) {
        return NGX_OK;
    }

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_http_realtime_redis_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    rd->zone = zone;
    rd->conf = zone->redis_conf;
    rd->log = cycle->log;

    /* a cluster's rooms are sharded channels: one shard each */
    rd->publish = rd->conf->cluster ? "SPUBLISH" : "PUBLISH";

    rd->tick.handler = ngx_http_realtime_redis_tick;
    rd->tick.data = rd;
    rd->tick.log = cycle->log;

    /* the tick never keeps a worker that is shutting down alive */
    rd->tick.cancelable = 1;

    if (ngx_http_realtime_redis_outbox_init(rd, cycle->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_realtime_redis_history_init(rd, cycle->log);

    if (rd->conf->cluster
        && ngx_http_realtime_redis_cluster_init(rd, cycle->pool) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rd->users_notify.handler = ngx_http_realtime_redis_users_notify;
    rd->users_notify.data = rd;
    rd->users_notify.log = cycle->log;
    rd->users_notify.cancelable = 1;

    zone->redis = rd;
    zone->sync = ngx_http_realtime_redis_publish;
    zone->history_base = ngx_http_realtime_redis_session_base;

    ngx_add_timer(&rd->tick, 1);

    return NGX_OK;
}


void
ngx_http_realtime_redis_exit_process(ngx_http_realtime_zone_t *zone)
{
    ngx_http_realtime_redis_t  *rd;

    rd = zone->redis;
    if (rd == NULL) {
        return;
    }

    if (rd->leader) {
        ngx_shmtx_lock(&zone->shpool->mutex);

        if (zone->sh->redis_leader == ngx_pid) {
            zone->sh->redis_leader = 0;
            zone->sh->redis_up = 0;
            zone->sh->redis_nnodes = 0;
            zone->sh->redis_slots = 0;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
        rd->leader = 0;
    }

    ngx_http_realtime_redis_history_free(rd);
    ngx_http_realtime_redis_drop(rd, rd->sub);
    ngx_http_realtime_redis_drop(rd, rd->pub);

    if (rd->cluster) {
        ngx_http_realtime_redis_shards_close(rd);
        ngx_http_realtime_redis_cluster_free(rd);
    }
    ngx_http_realtime_redis_outbox_free(rd);

    if (rd->tick.timer_set) {
        ngx_del_timer(&rd->tick);
    }

    if (rd->users_notify.timer_set) {
        ngx_del_timer(&rd->users_notify);
    }

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    zone->redis = NULL;
    zone->sync = NULL;
    zone->history_base = NULL;
}


/*
 * Once a second, or sooner when a retry is due: elect a leader, connect
 * what is not connected, and drop a connection whose replies are late.
 */

static void
ngx_http_realtime_redis_tick(ngx_event_t *ev)
{
    ngx_msec_t                  now, next;
    ngx_http_realtime_redis_t  *rd;

    rd = ev->data;
    now = ngx_current_msec;

    ngx_http_realtime_redis_elect(rd);

    if (rd->cluster) {
        ngx_http_realtime_redis_cluster_tick(rd);
        goto common;
    }

    if (rd->pub == NULL && !ngx_exiting
        && (ngx_msec_int_t) (now - rd->pub_retry) >= 0)
    {
        rd->pub = ngx_http_realtime_redis_connect(rd, 0);
    }

    if (rd->leader && rd->sub == NULL
        && (ngx_msec_int_t) (now - rd->sub_retry) >= 0)
    {
        rd->sub = ngx_http_realtime_redis_connect(rd, 1);
    }

    if (rd->pub && !rd->pub_ready
        && now - rd->connect_start_pub >= rd->conf->connect_timeout)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: connect timed out",
                      rd->conf->host, rd->conf->port);
        ngx_http_realtime_redis_drop(rd, rd->pub);
        ngx_http_realtime_redis_failed(rd, 0);
    }

    if (rd->sub && !rd->sub_ready
        && now - rd->connect_start_sub >= rd->conf->connect_timeout)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: subscriber connect timed out",
                      rd->conf->host, rd->conf->port);
        ngx_http_realtime_redis_drop(rd, rd->sub);
        ngx_http_realtime_redis_failed(rd, 1);
    }

    if (rd->pub && rd->pending
        && now - rd->last_reply >= rd->conf->command_timeout)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: no reply for %M ms, "
                      "reconnecting", rd->conf->host, rd->conf->port,
                      now - rd->last_reply);
        ngx_http_realtime_redis_drop(rd, rd->pub);
        ngx_http_realtime_redis_failed(rd, 0);
    }

common:

    if (rd->outbox_n && rd->pub_ready) {
        /* the instance may have been subscribed again meanwhile */
        ngx_http_realtime_redis_outbox_flush(rd);
    }

    ngx_http_realtime_redis_fill_send(rd);


    if (rd->leader && rd->pub_ready
        && now - rd->presence_written >= rd->conf->presence_ttl / 3)
    {
        rd->presence_written = now;
        ngx_http_realtime_redis_presence_refresh(rd);
    }

    next = NGX_HTTP_REALTIME_REDIS_TICK;

    if (rd->outbox_n) {
        /* soon after the instance is subscribed again */
        next = NGX_HTTP_REALTIME_REDIS_OUTBOX_TICK;
    }

    if (rd->cluster) {
        next = ngx_min(next, ngx_http_realtime_redis_cluster_next(rd));

    } else if (rd->pub == NULL) {
        next = ngx_min(next, (ngx_msec_t) ngx_max(
                                  (ngx_msec_int_t) (rd->pub_retry - now), 1));
    }

    if (rd->leader && rd->sub == NULL && !rd->cluster) {
        next = ngx_min(next, (ngx_msec_t) ngx_max(
                                  (ngx_msec_int_t) (rd->sub_retry - now), 1));
    }

    ngx_add_timer(&rd->tick, next);
}


/*
 * One worker per instance subscribes.  It takes over when there is no
 * leader or the leader died, and gives up when it starts shutting down,
 * so that the new generation of a reload takes over within a tick.
 */

static void
ngx_http_realtime_redis_elect(ngx_http_realtime_redis_t *rd)
{
    ngx_pid_t                   leader;
    ngx_http_realtime_zone_t   *zone;
    ngx_http_realtime_shctx_t  *sh;

    zone = rd->zone;
    sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    leader = sh->redis_leader;

    if (ngx_exiting) {
        if (leader == ngx_pid) {
            sh->redis_leader = 0;
            sh->redis_up = 0;
            sh->redis_nnodes = 0;
            sh->redis_slots = 0;
        }

        leader = 0;

    } else if (leader == 0
               || (leader != ngx_pid && kill(leader, 0) == -1
                   && ngx_errno == NGX_ESRCH))
    {
        sh->redis_leader = ngx_pid;
        sh->redis_leader_slot = zone->slot;
        sh->redis_up = 0;

        /* the cluster's masters as the old leader saw them go with it */
        sh->redis_nnodes = 0;
        sh->redis_slots = 0;
        leader = ngx_pid;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (leader == ngx_pid && !rd->leader) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "realtime zone \"%V\": this worker subscribes to "
                      "redis", &zone->name);
        rd->leader = 1;
        rd->sub_retry = ngx_current_msec;
    }

    if (leader != ngx_pid && rd->leader) {
        rd->leader = 0;
        ngx_http_realtime_redis_drop(rd, rd->sub);

        if (rd->cluster) {
            ngx_http_realtime_redis_shards_close(rd);
        }
    }
}


static redisAsyncContext *
ngx_http_realtime_redis_connect(ngx_http_realtime_redis_t *rd,
    ngx_uint_t subscriber)
{
    redisAsyncContext               *ac;
    ngx_http_realtime_redis_conf_t  *conf;

    conf = rd->conf;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis: connecting to %s:%ui%s", conf->addr,
                   conf->port, subscriber ? ", to subscribe" : "");

    /* an address: hiredis would resolve a name, blocking the worker */
    ac = redisAsyncConnect((char *) conf->addr, (int) conf->port);

    if (ac == NULL || ac->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: connect failed: %s",
                      conf->host, conf->port, ac ? ac->errstr : "no memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_realtime_redis_failed(rd, subscriber);
        return NULL;
    }

    if (ngx_http_realtime_redis_attach(rd, ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_realtime_redis_failed(rd, subscriber);
        return NULL;
    }

    redisAsyncSetConnectCallback(ac, ngx_http_realtime_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_realtime_redis_on_disconnect);

    ngx_http_realtime_redis_hello(rd, ac, ngx_http_realtime_redis_on_ready);

    if (subscriber) {
        rd->connect_start_sub = ngx_current_msec;
        rd->sub_ready = 0;

    } else {
        rd->connect_start_pub = ngx_current_msec;
        rd->pub_ready = 0;
        rd->pending = 0;
    }

    return ac;
}


/* a new context on an nginx connection, its events on the nginx loop */

ngx_int_t
ngx_http_realtime_redis_attach(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_http_realtime_redis_read_handler;
    c->write->handler = ngx_http_realtime_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->data = rd;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_realtime_redis_add_read;
    ac->ev.delRead = ngx_http_realtime_redis_del_read;
    ac->ev.addWrite = ngx_http_realtime_redis_add_write;
    ac->ev.delWrite = ngx_http_realtime_redis_del_write;
    ac->ev.cleanup = ngx_http_realtime_redis_cleanup;

    return NGX_OK;
}


/*
 * AUTH, SELECT and PING, queued now and written once connected: their
 * replies go to ready, whose PING reply says the context is ready.
 */

void
ngx_http_realtime_redis_hello(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac, redisCallbackFn *ready)
{
    ngx_http_realtime_redis_conf_t  *conf;

    conf = rd->conf;

    if (conf->password.len) {
        if (conf->user.len) {
            redisAsyncCommand(ac, ready, (void *) "AUTH", "AUTH %b %b",
                              conf->user.data, conf->user.len,
                              conf->password.data, conf->password.len);

        } else {
            redisAsyncCommand(ac, ready, (void *) "AUTH", "AUTH %b",
                              conf->password.data, conf->password.len);
        }
    }

    if (conf->db) {
        redisAsyncCommand(ac, ready, (void *) "SELECT", "SELECT %d",
                          (int) conf->db);
    }

    redisAsyncCommand(ac, ready, (void *) "PING", "PING");
}


static void
ngx_http_realtime_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_realtime_redis_t  *rd;

    rd = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: connect failed: %s",
                      rd->conf->host, rd->conf->port, ac->errstr);

        /* hiredis frees the context after this callback */
        if (ac == rd->pub) {
            rd->pub = NULL;
            ngx_http_realtime_redis_failed(rd, 0);

        } else if (ac == rd->sub) {
            rd->sub = NULL;
            ngx_http_realtime_redis_failed(rd, 1);
        }
    }
}


static void
ngx_http_realtime_redis_on_disconnect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_realtime_redis_t  *rd;

    rd = ac->data;

    if (ac == rd->pub) {
        rd->pub = NULL;
        rd->pub_ready = 0;
        ngx_http_realtime_redis_pub_state(rd, 0);

        if (status != REDIS_OK) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis %s:%ui: connection lost: %s",
                          rd->conf->host, rd->conf->port, ac->errstr);
            ngx_http_realtime_redis_failed(rd, 0);
        }

    } else if (ac == rd->sub) {
        rd->sub = NULL;
        rd->sub_ready = 0;
        rd->sub_confirmed = 0;
        rd->sub_expect = 0;
        ngx_http_realtime_redis_set_up(rd, 0);

        if (status != REDIS_OK) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "realtime redis %s:%ui: subscriber connection "
                          "lost: %s", rd->conf->host, rd->conf->port,
                          ac->errstr);
            ngx_http_realtime_redis_failed(rd, 1);
        }
    }
}


/* the replies to AUTH, SELECT and PING; PING's means ready */

static void
ngx_http_realtime_redis_on_ready(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                       *what;
    redisReply                 *reply;
    ngx_http_realtime_redis_t  *rd;

    rd = ac->data;
    reply = r;
    what = privdata;

    if (reply == NULL) {
        /* the context is going away */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "realtime redis %s:%ui: %s failed: %*s",
                      rd->conf->host, rd->conf->port, what,
                      (size_t) reply->len, reply->str);

        redisAsyncDisconnect(ac);
        ngx_http_realtime_redis_failed(rd, ac == rd->sub);
        return;
    }

    if (ngx_strcmp(what, "PING") != 0) {
        return;
    }

    rd->backoff = 0;

    if (ac == rd->pub) {
        ngx_http_realtime_redis_pub_up(rd);
        return;
    }

    if (ac == rd->sub) {
        if (ngx_http_realtime_redis_resubscribe(rd) != NGX_OK) {
            redisAsyncDisconnect(ac);
            ngx_http_realtime_redis_failed(rd, 1);
            return;
        }

        /* up only once Redis has confirmed every channel */
        rd->sub_ready = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "realtime redis: subscribing to %ui channels",
                       rd->sub_expect);
    }
}


/* every command can go now: what waited goes first */

void
ngx_http_realtime_redis_pub_up(ngx_http_realtime_redis_t *rd)
{
    rd->pub_ready = 1;
    rd->last_reply = ngx_current_msec;
    ngx_http_realtime_redis_pub_state(rd, 1);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis: this worker can publish");

    /* a leader that just (re)connected writes its presence now */
    rd->presence_written = ngx_current_msec - rd->conf->presence_ttl;

    ngx_http_realtime_redis_outbox_flush(rd);
    ngx_http_realtime_redis_fill_send(rd);
}


void
ngx_http_realtime_redis_pub_down(ngx_http_realtime_redis_t *rd)
{
    rd->pub_ready = 0;
    ngx_http_realtime_redis_pub_state(rd, 0);
}


/* closes a context we still own; hiredis calls no callback of ours */

static void
ngx_http_realtime_redis_drop(ngx_http_realtime_redis_t *rd,
    redisAsyncContext *ac)
{
    if (ac == NULL) {
        return;
    }

    if (ac == rd->pub) {
        rd->pub = NULL;
        rd->pub_ready = 0;
        rd->pending = 0;
        ngx_http_realtime_redis_pub_state(rd, 0);

    } else if (ac == rd->sub) {
        rd->sub = NULL;
        rd->sub_ready = 0;
        rd->sub_confirmed = 0;
        rd->sub_expect = 0;
        ngx_http_realtime_redis_set_up(rd, 0);
    }

    ac->onDisconnect = NULL;
    redisAsyncFree(ac);
}


/* exponential backoff with jitter, so that instances do not stampede */

static void
ngx_http_realtime_redis_failed(ngx_http_realtime_redis_t *rd,
    ngx_uint_t subscriber)
{
    ngx_msec_t  delay;

    if (rd->backoff == 0) {
        rd->backoff = NGX_HTTP_REALTIME_REDIS_BACKOFF_MIN;

    } else {
        rd->backoff = ngx_min(rd->backoff * 2,
                              NGX_HTTP_REALTIME_REDIS_BACKOFF_MAX);
    }

    delay = rd->backoff / 2 + (ngx_msec_t) ngx_random() % (rd->backoff / 2);

    if (subscriber) {
        rd->sub_retry = ngx_current_msec + delay;

    } else {
        rd->pub_retry = ngx_current_msec + delay;
    }

    (void) ngx_atomic_fetch_add(&rd->zone->sh->redis_errors, 1);

    if (rd->tick.timer_set) {
        ngx_del_timer(&rd->tick);
    }

    ngx_add_timer(&rd->tick, delay);
}


void
ngx_http_realtime_redis_set_up(ngx_http_realtime_redis_t *rd, ngx_uint_t up)
{
    ngx_http_realtime_zone_t  *zone;

    zone = rd->zone;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (zone->sh->redis_leader == ngx_pid) {
        zone->sh->redis_up = up;
    }

    if (!up) {
        ngx_http_realtime_redis_rooms_unlive_locked(zone);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* this worker's connection for publishing, in its slot */

static void
ngx_http_realtime_redis_pub_state(ngx_http_realtime_redis_t *rd,
    ngx_uint_t up)
{
    ngx_http_realtime_zone_t  *zone;

    zone = rd->zone;

    if (zone->slot < NGX_HTTP_REALTIME_SLOTS) {
        zone->sh->slots[zone->slot].redis_pub = up;
    }
}


/*
 * A SUBSCRIBE confirmed.  The instance is up when every channel of the
 * resubscription (and of the rooms joined meanwhile) is: before that, a
 * publication of another instance could miss a room.
 */

void
ngx_http_realtime_redis_subscribed(ngx_http_realtime_redis_t *rd)
{
    if (rd->sub_confirmed || rd->sub_expect == 0 || --rd->sub_expect) {
        return;
    }

    rd->sub_confirmed = 1;

    ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                  "realtime redis %s:%ui: subscribed",
                  rd->conf->host, rd->conf->port);

    ngx_http_realtime_redis_set_up(rd, 1);
    ngx_http_realtime_redis_fill_send(rd);

    if (rd->pub_ready) {
        ngx_http_realtime_redis_outbox_flush(rd);
    }
}


/*
 * The host of realtime_redis, resolved when the configuration is read:
 * hiredis would call a blocking getaddrinfo() in the worker.  The first
 * address is taken; a reload resolves it again.
 */

static ngx_int_t
ngx_http_realtime_redis_resolve(ngx_conf_t *cf, u_char *host,
    ngx_uint_t port, u_char **addr)
{
    size_t     len;
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = ngx_pnalloc(cf->pool, ngx_strlen(host) + NGX_INT_T_LEN
                                       + 2);
    if (u.url.data == NULL) {
        return NGX_ERROR;
    }

    u.url.len = ngx_sprintf(u.url.data, "%s:%ui", host, port) - u.url.data;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_redis: %s in \"%s\"",
                           u.err ? u.err : "host not found", host);
        return NGX_ERROR;
    }

    *addr = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (*addr == NULL) {
        return NGX_ERROR;
    }

    /* without the port: an IPv6 address comes without brackets */
    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, *addr,
                        NGX_SOCKADDR_STRLEN, 0);
    (*addr)[len] = '\0';

    return NGX_OK;
}


/* "host[:port]" from p to last, the host NUL-terminated for hiredis */

static char *
ngx_http_realtime_redis_host(ngx_conf_t *cf, u_char *p, u_char *last,
    u_char **host, ngx_uint_t *port)
{
    u_char     *colon;
    ngx_int_t   n;

    colon = ngx_strlchr(p, last, ':');

    if (colon) {
        n = ngx_atoi(colon + 1, last - colon - 1);
        if (n < 1 || n > 65535) {
            return "has an invalid port";
        }

        *port = n;
        last = colon;
    }

    if (last == p) {
        return "needs a host";
    }

    *host = ngx_pnalloc(cf->pool, last - p + 1);
    if (*host == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(*host, p, last - p + 1);

    return NGX_CONF_OK;
}


/* the seeds of a cluster after the first: "host:port,host:port" */

static char *
ngx_http_realtime_redis_seeds(ngx_conf_t *cf,
    ngx_http_realtime_redis_conf_t *rc, ngx_str_t *hosts)
{
    char                            *rv;
    u_char                          *p, *last, *comma, *host;
    ngx_http_realtime_redis_seed_t  *seed;

    rc->seeds = ngx_array_create(cf->pool, 4,
                                 sizeof(ngx_http_realtime_redis_seed_t));
    if (rc->seeds == NULL) {
        return NGX_CONF_ERROR;
    }

    p = hosts->data;
    last = p + hosts->len;

    while (p && p < last) {
        comma = ngx_strlchr(p, last, ',');

        seed = ngx_array_push(rc->seeds);
        if (seed == NULL) {
            return NGX_CONF_ERROR;
        }

        seed->port = 6379;

        rv = ngx_http_realtime_redis_host(cf, p, comma ? comma : last, &host,
                                          &seed->port);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        if (ngx_http_realtime_redis_resolve(cf, host, seed->port,
                                            &seed->addr)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        p = comma ? comma + 1 : NULL;
    }

    return NGX_CONF_OK;
}


/*
 * Subscribes to the broadcast and user channels and to every room of the
 * zone: after a reconnect nothing is missing.
 */

static ngx_int_t
ngx_http_realtime_redis_resubscribe(ngx_http_realtime_redis_t *rd)
{
    size_t        *lens;
    ngx_uint_t     n, i;
    const char   **argv;

    argv = ngx_http_realtime_redis_channels(rd, &lens, &n);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    rd->sub_confirmed = 0;
    rd->sub_expect = n - 1;

    /* in batches, one callback for every message on every channel */

    for (i = 1; i < n; i += NGX_HTTP_REALTIME_REDIS_BATCH) {
        argv[i - 1] = "SUBSCRIBE";
        lens[i - 1] = sizeof("SUBSCRIBE") - 1;

        if (redisAsyncCommandArgv(rd->sub, ngx_http_realtime_redis_on_message,
                                  NULL,
                                  (int) ngx_min(n - i,
                                          NGX_HTTP_REALTIME_REDIS_BATCH) + 1,
                                  &argv[i - 1], &lens[i - 1])
            != REDIS_OK)
        {
            ngx_free(argv);
            return NGX_ERROR;
        }
    }

    ngx_free(argv);

    ngx_http_realtime_redis_fill_begin(rd);

    return NGX_OK;
}


/*
 * The channels of a whole subscription: {all}, {users} and every room
 * of the zone, named under the zone's lock, which also marks the rooms
 * not live (their publications come by the subscription once it is
 * confirmed).  One block, freed with ngx_free(argv): argv[0] is left
 * for the command, argv[1] to argv[*n - 1] are the channels.  A room
 * made between the sizing and the naming subscribes on its own.
 */

const char **
ngx_http_realtime_redis_channels(ngx_http_realtime_redis_t *rd,
    size_t **lensp, ngx_uint_t *np)
{
    u_char                        *p;
    size_t                        *lens;
    ngx_str_t                      name;
    ngx_uint_t                     n, max;
    const char                   **argv;
    ngx_rbtree_node_t             *node, *root, *sentinel;
    ngx_http_realtime_zone_t      *zone;
    ngx_http_realtime_sh_room_t   *room;

    zone = rd->zone;

    ngx_shmtx_lock(&zone->shpool->mutex);
    max = zone->sh->nrooms + 3;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    p = ngx_alloc(max * (sizeof(char *) + sizeof(size_t)
                         + rd->conf->prefix.len + 16
                         + NGX_HTTP_REALTIME_ROOM_MAX),
                  rd->log);
    if (p == NULL) {
        return NULL;
    }

    argv = (const char **) p;
    lens = (size_t *) (p + max * sizeof(char *));
    p = (u_char *) (lens + max);

    n = 1;

    argv[n] = (char *) p;
    lens[n] = ngx_http_realtime_redis_channel(rd, p,
                                              NGX_HTTP_REALTIME_TO_ALL, NULL);
    p += lens[n++];

    argv[n] = (char *) p;
    lens[n] = ngx_http_realtime_redis_channel(rd, p,
                                              NGX_HTTP_REALTIME_TO_USER,
                                              NULL);
    p += lens[n++];

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_realtime_redis_rooms_unlive_locked(zone);

    root = zone->sh->rooms.root;
    sentinel = zone->sh->rooms.sentinel;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node && n < max;
             node = ngx_rbtree_next(&zone->sh->rooms, node))
        {
            room = (ngx_http_realtime_sh_room_t *) node;
            name = room->sn.str;

            argv[n] = (char *) p;
            lens[n] = ngx_http_realtime_redis_channel(rd, p,
                                                  NGX_HTTP_REALTIME_TO_ROOM,
                                                  &name);
            p += lens[n++];
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *lensp = lens;
    *np = n;

    return argv;
}


/* a room got its first member in this instance, or lost its last one */

void
ngx_http_realtime_redis_room(ngx_http_realtime_zone_t *zone,
    ngx_str_t *room, ngx_uint_t subscribe)
{
    size_t                      len;
    ngx_http_realtime_redis_t  *rd;
    u_char                      channel[64 + 16 + NGX_HTTP_REALTIME_ROOM_MAX];

    rd = zone->redis;

    if (rd == NULL || !rd->leader || !rd->sub_ready) {
        /* a new subscription subscribes to every room */
        return;
    }

    len = ngx_http_realtime_redis_channel(rd, channel,
                                          NGX_HTTP_REALTIME_TO_ROOM, room);

    if (rd->cluster) {
        ngx_http_realtime_redis_shard_room(rd, channel, len, subscribe);
        return;
    }

    if (redisAsyncCommand(rd->sub, ngx_http_realtime_redis_on_message, NULL,
                          subscribe ? "SUBSCRIBE %b" : "UNSUBSCRIBE %b",
                          channel, len)
        == REDIS_OK
        && subscribe && !rd->sub_confirmed)
    {
        /* its confirmation comes after the resubscription's */
        rd->sub_expect++;
    }
}


/*
 * "rt1 <instance> <type> <target length> <except length>\n" target
 * except json
 */

ngx_int_t
ngx_http_realtime_redis_publish(ngx_http_realtime_zone_t *zone,
    ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_http_realtime_published_t *wait)
{
    ngx_http_realtime_redis_t  *rd;

    rd = zone->redis;

    if (rd == NULL) {
        return NGX_DONE;
    }

    /* behind what waits already, or while Redis is away or stuck */

    if (rd->outbox_n || !rd->pub_ready
        || rd->pending >= NGX_HTTP_REALTIME_REDIS_PENDING_MAX)
    {
        return ngx_http_realtime_redis_outbox_add(rd, type, target, except,
                                                  msg);
    }

    return ngx_http_realtime_redis_send(rd, type, target, except, msg, wait);
}


static void
ngx_http_realtime_redis_on_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                 *reply, *data;
    ngx_http_realtime_redis_t  *rd;

    rd = ac->data;
    reply = r;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (reply->element[0]->len == 9
        && ngx_strncmp(reply->element[0]->str, "subscribe", 9) == 0)
    {
        if (reply->element[1]->type == REDIS_REPLY_STRING) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                           "realtime redis: subscribed to \"%*s\"",
                           (size_t) reply->element[1]->len,
                           reply->element[1]->str);

            ngx_http_realtime_redis_room_live(rd,
                                          (u_char *) reply->element[1]->str,
                                          reply->element[1]->len);
        }

        ngx_http_realtime_redis_subscribed(rd);
        return;
    }

    if (reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0)
    {
        /* unsubscribe confirmations */
        return;
    }

    data = reply->element[2];

    if (data->type != REDIS_REPLY_STRING) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis: message of %uz bytes on \"%*s\"",
                   (size_t) data->len, (size_t) reply->element[1]->len,
                   reply->element[1]->str);

    ngx_http_realtime_redis_sync_message(rd, (u_char *) data->str, data->len);
}


/*
 * realtime_user_list: the leader wrote a change of this instance's
 * users; the other instances hear of it on the broadcast channel, at
 * most once in NGX_HTTP_REALTIME_REDIS_USERS_DELAY, after the writes
 * (one connection keeps them in order).
 */

void
ngx_http_realtime_redis_users_changed(ngx_http_realtime_redis_t *rd)
{
    if (!rd->users_notify.timer_set) {
        ngx_add_timer(&rd->users_notify, NGX_HTTP_REALTIME_REDIS_USERS_DELAY);
    }
}


static void
ngx_http_realtime_redis_users_notify(ngx_event_t *ev)
{
    size_t                      len, clen;
    ngx_http_realtime_redis_t  *rd;
    u_char                      channel[64 + 16];
    u_char                      payload[sizeof(NGX_HTTP_REALTIME_REDIS_MAGIC)
                                        + NGX_HTTP_REALTIME_INSTANCE_LEN
                                        + 16];

    rd = ev->data;

    if (!rd->pub_ready) {
        /* the refresh after the reconnect writes and tells again */
        return;
    }

    len = ngx_sprintf(payload, NGX_HTTP_REALTIME_REDIS_MAGIC " %s %d 0 0\n",
                      rd->zone->sh->instance, NGX_HTTP_REALTIME_REDIS_USERS)
          - payload;
    clen = ngx_http_realtime_redis_channel(rd, channel,
                                           NGX_HTTP_REALTIME_TO_ALL, NULL);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "realtime redis: telling of a change of users");

    (void) ngx_http_realtime_redis_command(rd, channel, clen, NULL, NULL,
                                           "%s %b %b", rd->publish,
                                           channel, clen, payload, len);
}


/*
 * <prefix>room:{<room>}, <prefix>{users}, <prefix>{all}: the braces are
 * Redis Cluster hash tags.
 */

size_t
ngx_http_realtime_redis_channel(ngx_http_realtime_redis_t *rd, u_char *buf,
    ngx_uint_t type, ngx_str_t *target)
{
    u_char  *p;

    p = ngx_cpymem(buf, rd->conf->prefix.data, rd->conf->prefix.len);

    switch (type) {

    case NGX_HTTP_REALTIME_TO_ROOM:
        p = ngx_sprintf(p, "room:{%V}", target);
        break;

    case NGX_HTTP_REALTIME_TO_USER:
        p = ngx_cpymem(p, "{users}", 7);
        break;

    default:
        p = ngx_cpymem(p, "{all}", 5);
    }

    return p - buf;
}


/* hiredis's event hooks on an nginx connection */

static void
ngx_http_realtime_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_realtime_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_realtime_redis_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_realtime_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * Frees an nginx connection whose socket hiredis closes itself right
 * after: hiredis's cleanup hook, and a cluster shard's close.
 */

void
ngx_http_realtime_redis_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_http_realtime_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_http_realtime_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    redisAsyncHandleWrite(c->data);
}
