
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_jwt_key_request: the keys of an identity provider's JWKS,
 * fetched through an nginx location (as auth_jwt_key_request of NGINX
 * Plus does), so that proxy_pass, TLS to the provider, resolvers and
 * caches are nginx's own.
 *
 * Each worker fetches for itself, with a subrequest of a fake request
 * (ngx_http_realtime_forward_fake.c) on the configuration of the first
 * server that uses the set: at start, every refresh=, and when a token
 * names a kid the set does not hold, at most once per min_interval=.
 * A verification that needs the set waits for the fetch in flight (a
 * ngx_http_realtime_jwt_wait_t of its own), at most timeout=.  A failed
 * fetch keeps the keys the set has and is tried again after
 * min_interval=.
 *
 * Keys are never shared between processes (an EVP_PKEY cannot be), and
 * a verification holds no key across events: a new set replaces the
 * old one, whose pool goes at once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_jwt.h"


/* a JWKS of a few dozen keys; the body is in subrequest_output_buffer */
#define NGX_HTTP_REALTIME_JWT_FETCH_POOL  16384

/* nginx done with the fake request: looked at every millisecond */
#define NGX_HTTP_REALTIME_JWT_FETCH_WAITS 10000

/* a fetch that takes longer is let go: the set fetches again */
#define NGX_HTTP_REALTIME_JWT_FETCH_MAX   60000

/* nginx's timers are signed 32-bit milliseconds */
#define NGX_HTTP_REALTIME_JWT_TIME_MAX    (24 * 86400 * 1000)


/* a request that waits for the key set, in its pool */
typedef struct {
    ngx_http_realtime_jwt_wait_t       wait;
    ngx_http_request_t                *request;
    ngx_http_handler_pt                handler;   /* run again after */
} ngx_http_realtime_jwt_request_t;


struct ngx_http_realtime_jwt_fetch_s {
    ngx_pool_t                        *pool;
    ngx_http_realtime_jwt_keyset_t    *keyset;   /* NULL: let go */
    ngx_connection_t                  *connection;
    ngx_http_request_t                *request;
    ngx_http_request_t                *subrequest;
    ngx_event_t                        done;
    ngx_int_t                          rc;
    ngx_uint_t                         status;
    ngx_str_t                          body;
    ngx_uint_t                         waits;
    unsigned                           finished:1;
    unsigned                           applied:1;
};


static ngx_int_t ngx_http_realtime_jwt_fetch_start(
    ngx_http_realtime_jwt_keyset_t *ks);
static ngx_int_t ngx_http_realtime_jwt_fetch_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static void ngx_http_realtime_jwt_fetch_wake(ngx_http_request_t *r);
static void ngx_http_realtime_jwt_fetch_finish(ngx_event_t *ev);
static void ngx_http_realtime_jwt_fetch_apply(
    ngx_http_realtime_jwt_fetch_t *f);
static ngx_int_t ngx_http_realtime_jwt_fetch_load(
    ngx_http_realtime_jwt_fetch_t *f, const char **err);
static void ngx_http_realtime_jwt_keyset_timer(ngx_event_t *ev);
static void ngx_http_realtime_jwt_keyset_wait_timer(ngx_event_t *ev);
static void ngx_http_realtime_jwt_keyset_fetch_timer(ngx_event_t *ev);
static void ngx_http_realtime_jwt_keyset_wake(
    ngx_http_realtime_jwt_keyset_t *ks);
static void ngx_http_realtime_jwt_request_wake(
    ngx_http_realtime_jwt_wait_t *w);
static void ngx_http_realtime_jwt_request_cleanup(void *data);


static ngx_str_t  ngx_http_realtime_jwt_fetch_get = ngx_string("GET");


/* realtime_jwt_key_request uri [refresh=] [min_interval=] [timeout=] */

char *
ngx_http_realtime_jwt_key_request_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_jwt_conf_t *jcf = conf;

    ngx_str_t                           *value, s;
    ngx_msec_t                          *slot;
    ngx_uint_t                           i;
    ngx_http_realtime_jwt_keyset_t      *ks, **ksp;
    ngx_http_realtime_jwt_main_conf_t   *jmcf;

    if (jcf->keyset != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_jwt_key_request: \"%V\" is not a URI",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ks = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_jwt_keyset_t));
    if (ks == NULL) {
        return NGX_CONF_ERROR;
    }

    ks->uri = value[1];

    ks->args.data = ngx_strlchr(ks->uri.data, ks->uri.data + ks->uri.len, '?');

    if (ks->args.data) {
        ks->args.len = ks->uri.data + ks->uri.len - ks->args.data - 1;
        ks->uri.len = ks->args.data - ks->uri.data;
        ks->args.data++;
    }

    ks->refresh = 3600 * 1000;
    ks->min_interval = 10 * 1000;
    ks->timeout = 5 * 1000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            slot = &ks->refresh;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else if (ngx_strncmp(value[i].data, "min_interval=", 13) == 0) {
            slot = &ks->min_interval;
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

        } else if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            slot = &ks->timeout;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *slot = ngx_parse_time(&s, 0);

        if (*slot == (ngx_msec_t) NGX_ERROR || *slot == 0
            || *slot > NGX_HTTP_REALTIME_JWT_TIME_MAX)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid time in \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (ks->min_interval > ks->refresh) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_jwt_key_request: min_interval= is "
                           "longer than refresh=");
        return NGX_CONF_ERROR;
    }

    ngx_queue_init(&ks->waiters);

    jmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_realtime_jwt_module);

    ksp = ngx_array_push(&jmcf->keysets);
    if (ksp == NULL) {
        return NGX_CONF_ERROR;
    }

    *ksp = ks;
    jcf->keyset = ks;

    return NGX_CONF_OK;
}


/*
 * In a location's merge: the set is fetched in the first server that
 * uses it, whose locations the URI is looked up in.
 */

void
ngx_http_realtime_jwt_keyset_merge(ngx_conf_t *cf,
    ngx_http_realtime_jwt_keyset_t *ks)
{
    ngx_http_core_srv_conf_t  *cscf;

    if (ks->ctx) {
        return;
    }

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    ks->ctx = cscf->ctx;
}


/* each worker's first fetch, as soon as its event loop runs */

ngx_int_t
ngx_http_realtime_jwt_keyset_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                          i;
    ngx_http_realtime_jwt_keyset_t     **ksp, *ks;
    ngx_http_realtime_jwt_main_conf_t   *jmcf;

    /* not the cache manager's nor the loader's */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    jmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_realtime_jwt_module);
    if (jmcf == NULL) {
        return NGX_OK;
    }

    ksp = jmcf->keysets.elts;

    for (i = 0; i < jmcf->keysets.nelts; i++) {
        ks = ksp[i];

        if (ks->ctx == NULL) {
            continue;
        }

        ks->fetch_timer.handler = ngx_http_realtime_jwt_keyset_fetch_timer;
        ks->fetch_timer.data = ks;
        ks->fetch_timer.log = cycle->log;
        ks->fetch_timer.cancelable = 1;

        ks->timer.handler = ngx_http_realtime_jwt_keyset_timer;
        ks->timer.data = ks;
        ks->timer.log = cycle->log;
        ks->timer.cancelable = 1;

        ks->wait_timer.handler = ngx_http_realtime_jwt_keyset_wait_timer;
        ks->wait_timer.data = ks;
        ks->wait_timer.log = cycle->log;
        ks->wait_timer.cancelable = 1;

        ngx_add_timer(&ks->timer, 1);
    }

    return NGX_OK;
}


/* the keys' pool, with its EVP_PKEYs */

void
ngx_http_realtime_jwt_keyset_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                          i;
    ngx_http_realtime_jwt_keyset_t     **ksp;
    ngx_http_realtime_jwt_main_conf_t   *jmcf;

    jmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_realtime_jwt_module);
    if (jmcf == NULL) {
        return;
    }

    ksp = jmcf->keysets.elts;

    for (i = 0; i < jmcf->keysets.nelts; i++) {
        if (ksp[i]->pool) {
            ngx_destroy_pool(ksp[i]->pool);
            ksp[i]->pool = NULL;
            ksp[i]->keys = NULL;
        }
    }
}


/*
 * A token needs a key the set does not hold (or the set has none yet):
 * a fetch starts unless one is in flight or ran less than min_interval=
 * ago.  NGX_AGAIN: w is woken when the fetch ends; NGX_DECLINED: verify
 * with what there is (no w, w has waited once, or no fetch to wait for).
 */

ngx_int_t
ngx_http_realtime_jwt_keyset_wait(ngx_http_realtime_jwt_keyset_t *ks,
    ngx_http_realtime_jwt_wait_t *w, ngx_log_t *log)
{
    if (ks->timer.handler == NULL) {
        /* not this process's: "nginx -t", or the set is in no server */
        return NGX_DECLINED;
    }

    if (ks->fetch == NULL) {
        if (ks->fetched
            && ngx_current_msec - ks->started < ks->min_interval)
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                           "realtime jwt: \"%V\" fetched less than "
                           "min_interval= ago", &ks->uri);
            return NGX_DECLINED;
        }

        (void) ngx_http_realtime_jwt_fetch_start(ks);
    }

    if (w == NULL || w->woken || ks->fetch == NULL) {
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "realtime jwt: waiting for the keys of \"%V\"", &ks->uri);

    ngx_queue_insert_tail(&ks->waiters, &w->link);
    w->waiting = 1;
    w->keyset = ks;

    if (!ks->wait_timer.timer_set) {
        ngx_add_timer(&ks->wait_timer, ks->timeout);
    }

    return NGX_AGAIN;
}


void
ngx_http_realtime_jwt_wait_cancel(ngx_http_realtime_jwt_wait_t *w)
{
    ngx_http_realtime_jwt_keyset_t  *ks;

    if (!w->waiting) {
        return;
    }

    ks = w->keyset;

    ngx_queue_remove(&w->link);
    w->waiting = 0;

    if (ngx_queue_empty(&ks->waiters) && ks->wait_timer.timer_set) {
        ngx_del_timer(&ks->wait_timer);
    }
}


static void
ngx_http_realtime_jwt_keyset_timer(ngx_event_t *ev)
{
    ngx_http_realtime_jwt_keyset_t *ks = ev->data;

    if (ngx_exiting || ks->fetch) {
        return;
    }

    (void) ngx_http_realtime_jwt_fetch_start(ks);
}


/* a fetch that does not end is let go, and tried again later */

static void
ngx_http_realtime_jwt_keyset_fetch_timer(ngx_event_t *ev)
{
    ngx_http_realtime_jwt_keyset_t *ks = ev->data;

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "realtime: JWKS \"%V\" not fetched in %M ms, trying "
                  "again in %M ms", &ks->uri,
                  (ngx_msec_t) NGX_HTTP_REALTIME_JWT_FETCH_MAX,
                  ks->min_interval);

    if (ks->fetch) {
        /* it frees itself when nginx is done with it */
        ks->fetch->keyset = NULL;
        ks->fetch = NULL;
    }

    if (!ngx_exiting) {
        ngx_add_timer(&ks->timer, ks->min_interval);
    }

    ngx_http_realtime_jwt_keyset_wake(ks);
}


/* timeout=: the waiters go on with the keys there are */

static void
ngx_http_realtime_jwt_keyset_wait_timer(ngx_event_t *ev)
{
    ngx_http_realtime_jwt_keyset_t *ks = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "realtime: JWKS \"%V\" not fetched in %M ms, verifying "
                  "with the keys there are", &ks->uri, ks->timeout);

    ngx_http_realtime_jwt_keyset_wake(ks);
}


static void
ngx_http_realtime_jwt_keyset_wake(ngx_http_realtime_jwt_keyset_t *ks)
{
    ngx_queue_t                    waiters, *q;
    ngx_http_realtime_jwt_wait_t  *w;

    if (ks->wait_timer.timer_set) {
        ngx_del_timer(&ks->wait_timer);
    }

    if (ngx_queue_empty(&ks->waiters)) {
        return;
    }

    /* a waiter's wake may end other waiters: take the list first */

    waiters = ks->waiters;
    waiters.next->prev = &waiters;
    waiters.prev->next = &waiters;
    ngx_queue_init(&ks->waiters);

    while (!ngx_queue_empty(&waiters)) {
        q = ngx_queue_head(&waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_realtime_jwt_wait_t, link);
        w->waiting = 0;
        w->woken = 1;

        w->wake(w);

        /* a waiter freed by an earlier one has left the list */
    }
}


/*
 * Before a handler verifies a request's token (the handshakes and the
 * push API): when the token needs a key that realtime_jwt_key_request
 * is to fetch, the request waits for the fetch (NGX_DONE) and handler
 * runs again once it is over; it never waits twice.
 */

ngx_int_t
ngx_http_realtime_jwt_wait_keys(ngx_http_request_t *r, ngx_uint_t push,
    ngx_http_handler_pt handler)
{
    ngx_str_t                            token;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_realtime_jwt_conf_t        *jcf;
    ngx_http_realtime_jwt_request_t     *rw;

    jcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_jwt_module);

    if (jcf->keyset == NULL
        || ngx_http_get_module_ctx(r, ngx_http_realtime_jwt_module))
    {
        return NGX_OK;
    }

    if (ngx_http_realtime_jwt_find(r, jcf, push, &token) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (token.len == 0 || !ngx_http_realtime_jwt_key_missing(jcf, &token,
                                                            r->connection->log))
    {
        return NGX_OK;
    }

    rw = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_jwt_request_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (rw == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rw->wait.wake = ngx_http_realtime_jwt_request_wake;
    rw->wait.data = rw;
    rw->request = r;
    rw->handler = handler;

    cln->handler = ngx_http_realtime_jwt_request_cleanup;
    cln->data = rw;

    ngx_http_set_ctx(r, rw, ngx_http_realtime_jwt_module);

    if (ngx_http_realtime_jwt_keyset_wait(jcf->keyset, &rw->wait,
                                          r->connection->log)
        != NGX_AGAIN)
    {
        return NGX_OK;
    }

    /* nothing may run the phases again while the request waits */
    r->write_event_handler = ngx_http_request_empty_handler;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_realtime_jwt_request_wake(ngx_http_realtime_jwt_wait_t *w)
{
    ngx_http_realtime_jwt_request_t *rw = w->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = rw->request;
    c = r->connection;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "realtime jwt: key set ready, handling the request");

    ngx_http_finalize_request(r, rw->handler(r));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_realtime_jwt_request_cleanup(void *data)
{
    ngx_http_realtime_jwt_request_t *rw = data;

    ngx_http_realtime_jwt_wait_cancel(&rw->wait);
}


/*
 * A fetch of the set; on failure the set is tried again after
 * min_interval=.
 */

static ngx_int_t
ngx_http_realtime_jwt_fetch_start(ngx_http_realtime_jwt_keyset_t *ks)
{
    ngx_pool_t                     *pool;
    ngx_http_request_t             *r, *sr;
    ngx_http_post_subrequest_t     *ps;
    ngx_http_realtime_jwt_fetch_t  *f;

    ks->started = ngx_current_msec;
    ks->fetched = 1;

    if (ks->timer.timer_set) {
        ngx_del_timer(&ks->timer);
    }

    pool = ngx_create_pool(NGX_HTTP_REALTIME_JWT_FETCH_POOL,
                           ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    f = ngx_pcalloc(pool, sizeof(ngx_http_realtime_jwt_fetch_t));
    ps = ngx_palloc(pool, sizeof(ngx_http_post_subrequest_t));

    if (f == NULL || ps == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    f->pool = pool;
    f->keyset = ks;
    f->done.handler = ngx_http_realtime_jwt_fetch_finish;
    f->done.data = f;
    f->done.log = ngx_cycle->log;

    /*
     * This module's context stays NULL: a fake request with one is a
     * forward's (ngx_http_realtime_forward_of()).
     */

    r = ngx_http_realtime_fake_request(pool, ks->ctx, NULL, NULL,
                                       ngx_http_realtime_jwt_fetch_wake, 0);
    if (r == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    ngx_http_set_ctx(r, f, ngx_http_realtime_jwt_module);

    f->connection = r->connection;
    f->request = r;

    ps->handler = ngx_http_realtime_jwt_fetch_done;
    ps->data = f;

    if (ngx_http_subrequest(r, &ks->uri, ks->args.len ? &ks->args : NULL,
                            &sr, ps, NGX_HTTP_SUBREQUEST_IN_MEMORY)
        != NGX_OK)
    {
        goto close;
    }

    sr->method = NGX_HTTP_GET;
    sr->method_name = ngx_http_realtime_jwt_fetch_get;

    f->subrequest = sr;
    ks->fetch = f;

    ngx_add_timer(&ks->fetch_timer, ngx_min(NGX_HTTP_REALTIME_JWT_FETCH_MAX,
                                            ks->refresh));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime jwt: fetching \"%V\"", &ks->uri);

    /* nothing runs posted requests of a connection without events */
    ngx_http_run_posted_requests(f->connection);

    return NGX_OK;

close:

    ngx_http_realtime_fake_close(r->connection);
    ngx_destroy_pool(pool);

failed:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "realtime: JWKS \"%V\" fetch could not start", &ks->uri);

    if (!ngx_exiting) {
        ngx_add_timer(&ks->timer, ks->min_interval);
    }

    return NGX_ERROR;
}


/* in the subrequest's finalization: keep the answer, act later */

static ngx_int_t
ngx_http_realtime_jwt_fetch_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_realtime_jwt_fetch_t *f = data;

    ngx_buf_t  *b;

    /*
     * Called again when an error_page redirects the subrequest: the last
     * answer counts, applied once nginx is done with the subrequest.
     */

    f->finished = 1;
    f->rc = rc;
    f->status = (rc >= NGX_HTTP_SPECIAL_RESPONSE) ? (ngx_uint_t) rc
                                                  : r->headers_out.status;
    ngx_str_null(&f->body);

    if (r->out && r->out->buf) {
        b = r->out->buf;

        /* nginx finalizes a reply over the buffer as a success */
        if (r->headers_out.content_length_n > b->last - b->pos) {
            f->rc = NGX_ERROR;
        }

        /* the buffer is in the fetch's pool, which outlives it */
        f->body.len = b->last - b->pos;
        f->body.data = b->pos;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "realtime jwt: fetch done rc:%i status:%ui body:%uz",
                   rc, f->status, f->body.len);

    if (!f->done.posted && !f->done.timer_set) {
        ngx_post_event(&f->done, &ngx_posted_events);
    }

    return rc;
}


static void
ngx_http_realtime_jwt_fetch_wake(ngx_http_request_t *r)
{
    ngx_http_realtime_jwt_fetch_t  *f;

    f = ngx_http_get_module_ctx(r, ngx_http_realtime_jwt_module);

    if (f->finished && !f->done.posted && !f->done.timer_set) {
        ngx_post_event(&f->done, &ngx_posted_events);
    }
}


/*
 * Posted once an answer is known: applied when nginx is done with the
 * subrequest (its last answer counts), then the pool goes.
 */

static void
ngx_http_realtime_jwt_fetch_finish(ngx_event_t *ev)
{
    ngx_http_realtime_jwt_fetch_t *f = ev->data;

    ngx_http_request_t  *r;

    r = f->request;

    if ((r->count > 1 || r->posted_requests || !f->subrequest->done)
        && !f->connection->error)
    {
        if (f->waits++ < NGX_HTTP_REALTIME_JWT_FETCH_WAITS) {
            ngx_add_timer(&f->done, 1);
            return;
        }

        if (!f->subrequest->done) {
            /* freeing it under nginx would be worse than keeping it */
            ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                          "realtime: JWKS fetch not finished by nginx, "
                          "its memory is kept");
            if (f->keyset) {
                if (f->keyset->fetch_timer.timer_set) {
                    ngx_del_timer(&f->keyset->fetch_timer);
                }

                f->keyset->fetch = NULL;
                ngx_add_timer(&f->keyset->timer, f->keyset->min_interval);
                ngx_http_realtime_jwt_keyset_wake(f->keyset);
                f->keyset = NULL;
            }

            return;
        }
    }

    if (f->keyset && !f->applied) {
        f->applied = 1;
        ngx_http_realtime_jwt_fetch_apply(f);
    }

    ngx_http_realtime_fake_close(f->connection);
    ngx_destroy_pool(f->pool);
}


static void
ngx_http_realtime_jwt_fetch_apply(ngx_http_realtime_jwt_fetch_t *f)
{
    const char                      *err;
    ngx_http_realtime_jwt_keyset_t  *ks;

    ks = f->keyset;
    ks->fetch = NULL;

    if (ks->fetch_timer.timer_set) {
        ngx_del_timer(&ks->fetch_timer);
    }

    if (f->status == 0) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "realtime: JWKS \"%V\" fetch failed, keeping the "
                      "%ui keys there are", &ks->uri,
                      ks->keys ? ks->keys->nelts : 0);
        goto next;
    }

    if (f->rc == NGX_ERROR || f->status != NGX_HTTP_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "realtime: JWKS \"%V\" answered %ui%s, keeping the "
                      "%ui keys there are", &ks->uri, f->status,
                      f->rc == NGX_ERROR ? " (incomplete)" : "",
                      ks->keys ? ks->keys->nelts : 0);
        goto next;
    }

    if (ngx_http_realtime_jwt_fetch_load(f, &err) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "realtime: JWKS \"%V\"%s, keeping the %ui keys "
                      "there are", &ks->uri, err ? err : ": out of memory",
                      ks->keys ? ks->keys->nelts : 0);
        goto next;
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "realtime: JWKS \"%V\" fetched, %ui keys", &ks->uri,
                  ks->keys->nelts);

    if (!ngx_exiting) {
        ngx_add_timer(&ks->timer, ks->refresh);
    }

    ngx_http_realtime_jwt_keyset_wake(ks);

    return;

next:

    if (!ngx_exiting) {
        ngx_add_timer(&ks->timer, ks->min_interval);
    }

    ngx_http_realtime_jwt_keyset_wake(ks);
}


/* the new set, in a pool of its own, replaces the old one */

static ngx_int_t
ngx_http_realtime_jwt_fetch_load(ngx_http_realtime_jwt_fetch_t *f,
    const char **err)
{
    ngx_http_realtime_jwt_load_t     ld;
    ngx_http_realtime_jwt_keyset_t  *ks;

    ks = f->keyset;
    *err = NULL;

    ld.log = ngx_cycle->log;
    ld.fetched = 1;
    ld.pool = ngx_create_pool(NGX_HTTP_REALTIME_JWT_FETCH_POOL,
                              ngx_cycle->log);
    if (ld.pool == NULL) {
        return NGX_ERROR;
    }

    ld.keys = ngx_array_create(ld.pool, 4,
                               sizeof(ngx_http_realtime_jwt_key_t));
    if (ld.keys == NULL) {
        ngx_destroy_pool(ld.pool);
        return NGX_ERROR;
    }

    if (ngx_http_realtime_jwt_jwks_load(&ld, f->body.data, f->body.len, err)
        != NGX_OK)
    {
        if (*err == (char *) ld.error) {
            /* the message is in ld, which goes with this call */
            *err = " is not a valid JWKS";
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "realtime: JWKS \"%V\"%s", &ks->uri, ld.error);
        }

        ngx_destroy_pool(ld.pool);
        return NGX_ERROR;
    }

    if (ks->pool) {
        ngx_destroy_pool(ks->pool);
    }

    ks->pool = ld.pool;
    ks->keys = ld.keys;

    return NGX_OK;
}
