
/*
 * Copyright (C) ngx-realtime developers
 *
 * JWT authentication of WebSocket handshakes and push requests, token
 * refresh and expiry of open sockets, room authorization, and the
 * $realtime_jwt_* variables.  A module of its own in the same shared
 * object, so that its directives have their own configuration.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_jwt.h"


/* a timer never needs to be longer; it is rearmed when it fires */
#define NGX_HTTP_REALTIME_JWT_TIMER_MAX  0x7fffffff


static void ngx_http_realtime_jwt_bearer(ngx_str_t *value);
static void *ngx_http_realtime_jwt_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_realtime_jwt_renew(ngx_http_realtime_session_t *s,
    ngx_str_t *token, ngx_http_realtime_jwt_wait_t *w, time_t *exp,
    const char **reason);
static void ngx_http_realtime_jwt_refresh_wake(
    ngx_http_realtime_jwt_wait_t *w);
static ngx_int_t ngx_http_realtime_jwt_authenticate(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conf_t *jcf, ngx_uint_t push,
    ngx_http_realtime_jwt_verified_t *v);
static ngx_int_t ngx_http_realtime_jwt_keep_claims(ngx_http_request_t *r,
    ngx_http_realtime_ctx_t *ctx, json_t *claims);
static void ngx_http_realtime_jwt_claims_cleanup(void *data);
static ngx_http_realtime_jwt_conn_t *ngx_http_realtime_jwt_conn(
    ngx_connection_t *c, ngx_http_realtime_jwt_conf_t *jcf, size_t user_len);
static void ngx_http_realtime_jwt_conn_cleanup(void *data);
static ngx_http_realtime_jwt_conn_t *ngx_http_realtime_jwt_alloc(
    ngx_http_realtime_jwt_conf_t *jcf, size_t user_len, ngx_log_t *log);
static ngx_int_t ngx_http_realtime_jwt_accept(
    ngx_http_realtime_jwt_conn_t *jwt, ngx_http_realtime_jwt_verified_t *v,
    ngx_log_t *log);
static ngx_int_t ngx_http_realtime_jwt_refuse(ngx_http_request_t *r,
    ngx_int_t rc, ngx_http_realtime_jwt_verified_t *v);
static ngx_int_t ngx_http_realtime_jwt_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_realtime_jwt_sub_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_realtime_jwt_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_realtime_jwt_value(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, u_char *name, size_t len);
static void *ngx_http_realtime_jwt_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_realtime_jwt_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_realtime_jwt_alg_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_realtime_jwt_require_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_realtime_jwt_token_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_conf_enum_t  ngx_http_realtime_jwt_failure[] = {
    { ngx_string("status"), NGX_HTTP_REALTIME_JWT_FAIL_STATUS },
    { ngx_string("close"), NGX_HTTP_REALTIME_JWT_FAIL_CLOSE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_realtime_jwt_commands[] = {

    { ngx_string("realtime_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_realtime_jwt_key_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_jwt_key_request"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_jwt_key_request_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_jwt_alg"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_jwt_alg_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_jwt_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_jwt_token_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_jwt_require"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_jwt_require_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_jwt_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, issuer),
      NULL },

    { ngx_string("realtime_jwt_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, audience),
      NULL },

    { ngx_string("realtime_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, leeway),
      NULL },

    { ngx_string("realtime_jwt_rooms_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, rooms_claim),
      NULL },

    { ngx_string("realtime_jwt_user_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, user_claim),
      NULL },

    { ngx_string("realtime_auth_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_jwt_conf_t, failure),
      &ngx_http_realtime_jwt_failure },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_realtime_jwt_module_ctx = {
    ngx_http_realtime_jwt_add_variables,   /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_realtime_jwt_create_main_conf,
                                           /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_realtime_jwt_create_loc_conf, /* create location configuration */
    ngx_http_realtime_jwt_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_realtime_jwt_module = {
    NGX_MODULE_V1,
    &ngx_http_realtime_jwt_module_ctx,     /* module context */
    ngx_http_realtime_jwt_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_realtime_jwt_keyset_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_realtime_jwt_keyset_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_realtime_jwt_sub_name =
    ngx_string("realtime_jwt_sub");
static ngx_str_t  ngx_http_realtime_jwt_claim_prefix =
    ngx_string("realtime_jwt_claim_");


/*
 * In the handshake, before the socket is registered.  NGX_OK: no JWT
 * here, or a valid one (its claims in ctx, s->jwt set); NGX_DONE: the
 * 401 is sent; NGX_DECLINED: realtime_auth_failure close, the socket is
 * to be upgraded and closed at once, never registered.
 */

ngx_int_t
ngx_http_realtime_jwt_handshake(ngx_http_request_t *r,
    ngx_http_realtime_ctx_t *ctx, ngx_http_realtime_session_t *s)
{
    ngx_int_t                          rc;
    ngx_http_realtime_jwt_conf_t      *jcf;
    ngx_http_realtime_jwt_conn_t      *jwt;
    ngx_http_realtime_jwt_verified_t   v;

    jcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_jwt_module);

    if (jcf->keys == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_realtime_jwt_authenticate(r, jcf, 0, &v);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK && jcf->failure == NGX_HTTP_REALTIME_JWT_FAIL_STATUS) {
        return ngx_http_realtime_jwt_refuse(r, rc, &v);
    }

    jwt = ngx_http_realtime_jwt_conn(r->connection, jcf,
                                     rc == NGX_OK ? v.res.user_len : 0);
    if (jwt == NULL) {
        json_decref(v.claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->jwt = jwt;

    if (rc != NGX_OK) {
        /*
         * Browsers do not let a page see why a handshake failed, they
         * do show it a close code.
         */

        jwt->close_code = (rc == NGX_HTTP_REALTIME_EXPIRED)
                          ? NGX_HTTP_REALTIME_CLOSE_TOKEN_EXPIRED
                          : NGX_HTTP_REALTIME_CLOSE_UNAUTHORIZED;
        jwt->close_reason = (char *) v.res.reason;

        return NGX_DECLINED;
    }

    if (ngx_http_realtime_jwt_accept(jwt, &v, r->connection->log) != NGX_OK) {
        json_decref(v.claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_realtime_jwt_keep_claims(r, ctx, v.claims) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* NGX_OK, NGX_DONE when the 401 is sent, or an HTTP error */

ngx_int_t
ngx_http_realtime_jwt_push(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_realtime_ctx_t           *ctx;
    ngx_http_realtime_jwt_conf_t      *jcf;
    ngx_http_realtime_jwt_verified_t   v;

    jcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_jwt_module);

    if (jcf->keys == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_realtime_jwt_authenticate(r, jcf, 1, &v);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_http_realtime_jwt_refuse(r, rc, &v);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_ctx_t));
        if (ctx == NULL) {
            json_decref(v.claims);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_realtime_module);
    }

    if (ngx_http_realtime_jwt_keep_claims(r, ctx, v.claims) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* realtime_auth_failure close: the 101 is out, the close follows it */

void
ngx_http_realtime_jwt_upgraded(ngx_http_realtime_conn_t *ws)
{
    if (ws->session.jwt && ws->session.jwt->close_code) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "realtime: closing unauthenticated socket with %ui",
                      ws->session.jwt->close_code);
        ngx_http_realtime_close(ws, ws->session.jwt->close_code,
                                ws->session.jwt->close_reason);
    }
}


/* how long the socket's token stays valid: 0 expired, or a timer */

ngx_msec_t
ngx_http_realtime_jwt_ttl(ngx_http_realtime_session_t *s)
{
    ngx_msec_int_t   ms;
    ngx_time_t      *tp;

    if (s->jwt == NULL || s->jwt->deadline == 0 || s->jwt->close_code) {
        return NGX_TIMER_INFINITE;
    }

    tp = ngx_timeofday();

    if (s->jwt->deadline <= tp->sec) {
        return 0;
    }

    if (s->jwt->deadline - tp->sec > NGX_HTTP_REALTIME_JWT_TIMER_MAX / 1000)
    {
        return NGX_HTTP_REALTIME_JWT_TIMER_MAX;
    }

    ms = (ngx_msec_int_t) (s->jwt->deadline - tp->sec) * 1000
         - (ngx_msec_int_t) tp->msec;

    return (ms > 0) ? (ngx_msec_t) ms : 0;
}


/* realtime_jwt_rooms_claim: NGX_OK when the token allows the room */

ngx_int_t
ngx_http_realtime_jwt_room_allowed(ngx_http_realtime_session_t *s,
    ngx_str_t *room)
{
    ngx_uint_t                     i;
    ngx_http_realtime_jwt_conn_t  *jwt;

    jwt = s->jwt;

    if (jwt == NULL || jwt->conf->rooms_claim.len == 0) {
        return NGX_OK;
    }

    for (i = 0; i < jwt->nrooms; i++) {
        if (ngx_http_realtime_jwt_room_match((char *) jwt->rooms[i].data,
                                             jwt->rooms[i].len,
                                             (char *) room->data, room->len))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The "refresh" event.  NGX_OK: the socket now lives by the new token,
 * *exp is its exp (0: none).  NGX_HTTP_REALTIME_UNAUTHORIZED or
 * _EXPIRED with *reason: the old token stays.  NGX_HTTP_REALTIME_FORBIDDEN:
 * a valid token of another user.  NGX_DECLINED: no JWT here.  NGX_AGAIN:
 * the token's key is being fetched; done() answers the event (id) later.
 */

ngx_int_t
ngx_http_realtime_jwt_refresh(ngx_http_realtime_session_t *s, u_char *data,
    size_t len, json_int_t id, ngx_http_realtime_jwt_refreshed_pt done,
    time_t *exp, const char **reason)
{
    ngx_int_t                            rc;
    ngx_str_t                            token;
    ngx_http_realtime_jwt_conn_t        *jwt;
    ngx_http_realtime_jwt_wait_t        *w;
    ngx_http_realtime_jwt_refreshing_t  *rf;

    jwt = s->jwt;

    if (jwt == NULL) {
        return NGX_DECLINED;
    }

    token.data = data;
    token.len = len;

    /*
     * One refresh waits for a key at a time: a later one replaces it, so
     * that the socket never goes back to an older token.
     */

    if (jwt->refreshing) {
        rf = jwt->refreshing;
        jwt->refreshing = NULL;

        ngx_http_realtime_jwt_wait_cancel(&rf->wait);
        rc = rf->done(s, NGX_HTTP_REALTIME_UNAUTHORIZED, 0,
                      "replaced by a later refresh", rf->id);
        ngx_free(rf);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    rf = NULL;
    w = NULL;

    if (jwt->conf->keyset) {
        rf = ngx_alloc(sizeof(ngx_http_realtime_jwt_refreshing_t) + len,
                       s->log);
        if (rf == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(rf, sizeof(ngx_http_realtime_jwt_refreshing_t));
        w = &rf->wait;
    }

    rc = ngx_http_realtime_jwt_renew(s, &token, w, exp, reason);

    if (rc != NGX_AGAIN) {
        if (rf) {
            ngx_free(rf);
        }

        return rc;
    }

    rf->wait.wake = ngx_http_realtime_jwt_refresh_wake;
    rf->wait.data = rf;
    rf->session = s;
    rf->done = done;
    rf->id = id;
    rf->token.data = (u_char *) rf + sizeof(ngx_http_realtime_jwt_refreshing_t);
    rf->token.len = len;
    ngx_memcpy(rf->token.data, data, len);

    jwt->refreshing = rf;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_realtime_jwt_renew(ngx_http_realtime_session_t *s, ngx_str_t *token,
    ngx_http_realtime_jwt_wait_t *w, time_t *exp, const char **reason)
{
    ngx_int_t                          rc;
    ngx_http_realtime_jwt_conn_t      *jwt;
    ngx_http_realtime_jwt_verified_t   v;

    jwt = s->jwt;

    rc = ngx_http_realtime_jwt_verify(jwt->conf, token, s->log, &v, w);

    if (rc != NGX_OK) {
        *reason = v.res.reason;
        return rc;
    }

    if (v.res.user_len != jwt->user.len
        || ngx_memcmp(v.res.user, jwt->user.data, jwt->user.len) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: refresh with a token of user \"%*s\", "
                      "closing", v.res.user_len, v.res.user);
        json_decref(v.claims);
        return NGX_HTTP_REALTIME_FORBIDDEN;
    }

    rc = ngx_http_realtime_jwt_accept(jwt, &v, s->log);
    json_decref(v.claims);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    *exp = v.res.has_exp ? (time_t) v.res.exp : 0;

    /* the new exp may come sooner than the timer */
    s->handler->deadline(s);

    return NGX_OK;
}


/* the key set is fetched (or timeout= passed): the refresh is answered */

static void
ngx_http_realtime_jwt_refresh_wake(ngx_http_realtime_jwt_wait_t *w)
{
    ngx_http_realtime_jwt_refreshing_t *rf = w->data;

    time_t                        exp;
    ngx_int_t                     rc;
    const char                   *reason;
    ngx_http_realtime_session_t  *s;

    s = rf->session;
    s->jwt->refreshing = NULL;

    exp = 0;
    reason = NULL;

    rc = ngx_http_realtime_jwt_renew(s, &rf->token, w, &exp, &reason);

    /* done() may end the session: only its handler is called after */
    rc = rf->done(s, rc, exp, reason, rf->id);

    ngx_free(rf);

    if (rc == NGX_ERROR) {
        s->handler->close(s, NGX_HTTP_REALTIME_CLOSE_INTERNAL, NULL);
    }
}


/*
 * The token, verified; NGX_OK with v->claims (a reference to drop),
 * NGX_HTTP_REALTIME_UNAUTHORIZED or _EXPIRED with v->res.reason, or
 * NGX_ERROR.
 */

static ngx_int_t
ngx_http_realtime_jwt_authenticate(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conf_t *jcf, ngx_uint_t push,
    ngx_http_realtime_jwt_verified_t *v)
{
    ngx_str_t  token;

    ngx_memzero(v, sizeof(ngx_http_realtime_jwt_verified_t));

    if (ngx_http_realtime_jwt_find(r, jcf, push, &token) != NGX_OK) {
        return NGX_ERROR;
    }

    if (token.len == 0) {
        v->res.reason = "token is missing";
        v->missing = 1;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "realtime: token is missing");

        return NGX_HTTP_REALTIME_UNAUTHORIZED;
    }

    /* ngx_http_realtime_jwt_wait_keys() has waited for a key to fetch */
    return ngx_http_realtime_jwt_verify(jcf, &token, r->connection->log, v,
                                        NULL);
}


/* the first non-empty realtime_jwt_token value, "Bearer " stripped */

ngx_int_t
ngx_http_realtime_jwt_find(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conf_t *jcf, ngx_uint_t push, ngx_str_t *token)
{
    ngx_uint_t                 i;
    ngx_http_complex_value_t  *cv;

    ngx_str_null(token);

    if (jcf->tokens) {
        cv = jcf->tokens->elts;

        for (i = 0; i < jcf->tokens->nelts; i++) {
            if (ngx_http_complex_value(r, &cv[i], token) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_http_realtime_jwt_bearer(token);

            if (token->len) {
                return NGX_OK;
            }
        }

        return NGX_OK;
    }

    /* the default: $arg_token $http_authorization, push: the header */

    if (!push && ngx_http_arg(r, (u_char *) "token", 5, token) == NGX_OK) {
        ngx_http_realtime_jwt_bearer(token);

        if (token->len) {
            return NGX_OK;
        }
    }

    if (r->headers_in.authorization) {
        *token = r->headers_in.authorization->value;
        ngx_http_realtime_jwt_bearer(token);
    }

    return NGX_OK;
}


static void
ngx_http_realtime_jwt_bearer(ngx_str_t *value)
{
    while (value->len && value->data[value->len - 1] == ' ') {
        value->len--;
    }

    /* nginx trims a header's trailing spaces: "Bearer " is "Bearer" */

    if (value->len == 6
        && ngx_strncasecmp(value->data, (u_char *) "Bearer", 6) == 0)
    {
        value->len = 0;
        return;
    }

    if (value->len > 7
        && ngx_strncasecmp(value->data, (u_char *) "Bearer ", 7) == 0)
    {
        value->data += 7;
        value->len -= 7;
    }

    while (value->len && value->data[0] == ' ') {
        value->data++;
        value->len--;
    }
}


/* the request's claims, for the variables, until the request is freed */

static ngx_int_t
ngx_http_realtime_jwt_keep_claims(ngx_http_request_t *r,
    ngx_http_realtime_ctx_t *ctx, json_t *claims)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(claims);
        return NGX_ERROR;
    }

    if (ctx->jwt_claims) {
        json_decref(ctx->jwt_claims);
    }

    ctx->jwt_claims = claims;

    cln->handler = ngx_http_realtime_jwt_claims_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


static void
ngx_http_realtime_jwt_claims_cleanup(void *data)
{
    ngx_http_realtime_ctx_t  *ctx = data;

    if (ctx->jwt_claims) {
        json_decref(ctx->jwt_claims);
        ctx->jwt_claims = NULL;
    }
}


/*
 * The socket's token state and its user, in one block outside c->pool:
 * an upgraded socket otherwise fits in the pool's first block, and a
 * second one would cost 512 bytes per connection.
 */

static ngx_http_realtime_jwt_conn_t *
ngx_http_realtime_jwt_conn(ngx_connection_t *c,
    ngx_http_realtime_jwt_conf_t *jcf, size_t user_len)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_realtime_jwt_conn_t  *jwt;

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    jwt = ngx_http_realtime_jwt_alloc(jcf, user_len, c->log);
    if (jwt == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_realtime_jwt_conn_cleanup;
    cln->data = jwt;

    return jwt;
}


static ngx_http_realtime_jwt_conn_t *
ngx_http_realtime_jwt_alloc(ngx_http_realtime_jwt_conf_t *jcf,
    size_t user_len, ngx_log_t *log)
{
    ngx_http_realtime_jwt_conn_t  *jwt;

    jwt = ngx_calloc(sizeof(ngx_http_realtime_jwt_conn_t) + user_len, log);
    if (jwt == NULL) {
        return NULL;
    }

    jwt->conf = jcf;
    jwt->user.data = (u_char *) jwt + sizeof(ngx_http_realtime_jwt_conn_t);

    return jwt;
}


/*
 * Socket.IO: a token from the handshake request, when it has one, is
 * checked there (NGX_DONE: the 401 is out); without one the namespace
 * CONNECT must bring it (*required).  The state is the caller's to
 * free with ngx_http_realtime_jwt_free().
 */

ngx_int_t
ngx_http_realtime_jwt_sio_handshake(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conn_t **jwtp, ngx_uint_t *required)
{
    ngx_int_t                          rc;
    ngx_http_realtime_ctx_t           *ctx;
    ngx_http_realtime_jwt_conf_t      *jcf;
    ngx_http_realtime_jwt_conn_t      *jwt;
    ngx_http_realtime_jwt_verified_t   v;

    *jwtp = NULL;
    *required = 0;

    jcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_jwt_module);

    if (jcf->keys == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_realtime_jwt_authenticate(r, jcf, 0, &v);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK && v.missing) {
        *required = 1;
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return ngx_http_realtime_jwt_refuse(r, rc, &v);
    }

    jwt = ngx_http_realtime_jwt_alloc(jcf, v.res.user_len, r->connection->log);
    if (jwt == NULL) {
        json_decref(v.claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_realtime_jwt_accept(jwt, &v, r->connection->log) != NGX_OK) {
        ngx_http_realtime_jwt_free(jwt);
        json_decref(v.claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (ctx && ngx_http_realtime_jwt_keep_claims(r, ctx, v.claims) != NGX_OK) {
        ngx_http_realtime_jwt_free(jwt);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx == NULL) {
        json_decref(v.claims);
    }

    *jwtp = jwt;

    return NGX_OK;
}


/*
 * Socket.IO: the token of a namespace CONNECT's auth payload, "Bearer "
 * allowed.  NGX_OK with *jwtp, NGX_HTTP_REALTIME_UNAUTHORIZED or
 * _EXPIRED with *reason, NGX_AGAIN when w waits for a key to be
 * fetched, or NGX_ERROR.
 */

ngx_int_t
ngx_http_realtime_jwt_sio_connect(void *conf, ngx_str_t *value,
    ngx_log_t *log, ngx_http_realtime_jwt_conn_t **jwtp,
    const char **reason, ngx_http_realtime_jwt_wait_t *w)
{
    ngx_http_realtime_jwt_conf_t  *jcf = conf;

    ngx_int_t                          rc;
    ngx_str_t                          token;
    ngx_http_realtime_jwt_conn_t      *jwt;
    ngx_http_realtime_jwt_verified_t   v;

    *jwtp = NULL;
    token = *value;

    if (token.len > 7 && ngx_strncasecmp(token.data, (u_char *) "Bearer ", 7)
                         == 0)
    {
        token.data += 7;
        token.len -= 7;
    }

    if (token.len == 0) {
        *reason = "token is missing";
        return NGX_HTTP_REALTIME_UNAUTHORIZED;
    }

    rc = ngx_http_realtime_jwt_verify(jcf, &token, log, &v, w);

    if (rc != NGX_OK) {
        *reason = v.res.reason;
        return rc;
    }

    jwt = ngx_http_realtime_jwt_alloc(jcf, v.res.user_len, log);
    if (jwt == NULL) {
        json_decref(v.claims);
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_jwt_accept(jwt, &v, log);
    json_decref(v.claims);

    if (rc != NGX_OK) {
        ngx_http_realtime_jwt_free(jwt);
        return NGX_ERROR;
    }

    *jwtp = jwt;

    return NGX_OK;
}


/* a copy for another namespace of the same Engine.IO session */

ngx_http_realtime_jwt_conn_t *
ngx_http_realtime_jwt_copy(ngx_http_realtime_jwt_conn_t *jwt, ngx_log_t *log)
{
    size_t                         size;
    ngx_uint_t                     i;
    ngx_http_realtime_jwt_conn_t  *copy;

    copy = ngx_http_realtime_jwt_alloc(jwt->conf, jwt->user.len, log);
    if (copy == NULL) {
        return NULL;
    }

    ngx_memcpy(copy->user.data, jwt->user.data, jwt->user.len);
    copy->user.len = jwt->user.len;
    copy->deadline = jwt->deadline;
    copy->claims = json_incref(jwt->claims);

    if (jwt->nrooms) {
        /* one block: the names follow the array, as accept() made it */

        size = jwt->nrooms * sizeof(ngx_str_t);

        for (i = 0; i < jwt->nrooms; i++) {
            size += jwt->rooms[i].len;
        }

        copy->rooms = ngx_alloc(size, log);
        if (copy->rooms == NULL) {
            ngx_http_realtime_jwt_free(copy);
            return NULL;
        }

        ngx_memcpy(copy->rooms, jwt->rooms, size);
        copy->nrooms = jwt->nrooms;

        for (i = 0; i < jwt->nrooms; i++) {
            copy->rooms[i].data = (u_char *) copy->rooms
                                  + (jwt->rooms[i].data
                                     - (u_char *) jwt->rooms);
        }
    }

    return copy;
}


void
ngx_http_realtime_jwt_free(ngx_http_realtime_jwt_conn_t *jwt)
{
    ngx_http_realtime_jwt_conn_cleanup(jwt);
}


static void
ngx_http_realtime_jwt_conn_cleanup(void *data)
{
    ngx_http_realtime_jwt_conn_t  *jwt = data;

    if (jwt->refreshing) {
        ngx_http_realtime_jwt_wait_cancel(&jwt->refreshing->wait);
        ngx_free(jwt->refreshing);
    }

    if (jwt->rooms) {
        ngx_free(jwt->rooms);
    }

    if (jwt->claims) {
        json_decref(jwt->claims);
    }

    ngx_free(jwt);
}


/*
 * The socket takes the token's user (once), deadline and room patterns.
 * The patterns are copied into one block: the claims do not live on.
 */

static ngx_int_t
ngx_http_realtime_jwt_accept(ngx_http_realtime_jwt_conn_t *jwt,
    ngx_http_realtime_jwt_verified_t *v, ngx_log_t *log)
{
    u_char                        *p;
    size_t                         i, n, size;
    json_t                        *claim, *item;
    ngx_str_t                     *rooms;
    ngx_http_realtime_jwt_conf_t  *jcf;

    jcf = jwt->conf;

    /* for $realtime_jwt_* in the forwards' locations: a refresh's */

    if (jcf->keep_claims) {
        if (jwt->claims) {
            json_decref(jwt->claims);
        }

        jwt->claims = json_incref(v->claims);
    }

    /* a refresh keeps the user: it is the same */

    if (jwt->user.len == 0) {
        /* the space was set aside by ngx_http_realtime_jwt_conn() */
        ngx_memcpy(jwt->user.data, v->res.user, v->res.user_len);
        jwt->user.len = v->res.user_len;
    }

    jwt->deadline = v->res.has_exp
                    ? (time_t) (v->res.exp + jcf->leeway) : 0;

    if (jcf->rooms_claim.len == 0) {
        return NGX_OK;
    }

    /* a string is one pattern, an array of strings many; else none */

    claim = json_object_getn(v->claims, (char *) jcf->rooms_claim.data,
                             jcf->rooms_claim.len);

    n = 0;
    size = 0;

    if (json_is_string(claim)) {
        n = 1;
        size = json_string_length(claim);

    } else {
        json_array_foreach(claim, i, item) {
            if (json_is_string(item)) {
                n++;
                size += json_string_length(item);
            }
        }
    }

    rooms = NULL;

    if (n) {
        rooms = ngx_alloc(n * sizeof(ngx_str_t) + size, log);
        if (rooms == NULL) {
            return NGX_ERROR;
        }

        p = (u_char *) (rooms + n);
        n = 0;

        if (json_is_string(claim)) {
            rooms[n].data = p;
            rooms[n++].len = json_string_length(claim);
            ngx_memcpy(p, json_string_value(claim), json_string_length(claim));

        } else {
            json_array_foreach(claim, i, item) {
                if (json_is_string(item)) {
                    rooms[n].data = p;
                    rooms[n++].len = json_string_length(item);
                    p = ngx_cpymem(p, json_string_value(item),
                                   json_string_length(item));
                }
            }
        }
    }

    if (jwt->rooms) {
        ngx_free(jwt->rooms);
    }

    jwt->rooms = rooms;
    jwt->nrooms = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_jwt_refuse(ngx_http_request_t *r, ngx_int_t rc,
    ngx_http_realtime_jwt_verified_t *v)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* RFC 6750 3: no error code when no token came */

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");

    if (rc == NGX_HTTP_REALTIME_EXPIRED) {
        ngx_str_set(&h->value, "Bearer error=\"invalid_token\", "
                               "error_description=\"token expired\"");

    } else if (v->missing) {
        ngx_str_set(&h->value, "Bearer");

    } else {
        ngx_str_set(&h->value, "Bearer error=\"invalid_token\"");
    }

    return ngx_http_realtime_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                    (rc == NGX_HTTP_REALTIME_EXPIRED)
                                    ? "TOKEN_EXPIRED" : "UNAUTHORIZED",
                                    (char *) v->res.reason);
}


static ngx_int_t
ngx_http_realtime_jwt_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    /* not cached: a value read before verification must not stick */

    var = ngx_http_add_variable(cf, &ngx_http_realtime_jwt_sub_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_realtime_jwt_sub_variable;

    var = ngx_http_add_variable(cf, &ngx_http_realtime_jwt_claim_prefix,
                                NGX_HTTP_VAR_PREFIX
                                |NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_realtime_jwt_claim_variable;

    return NGX_OK;
}


/* realtime_jwt_require claim ...: like NGINX Plus's auth_jwt_require */

static char *
ngx_http_realtime_jwt_require_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_jwt_conf_t *jcf = conf;

    char       **name;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (jcf->required != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    jcf->required = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(char *));
    if (jcf->required == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0 || value[i].len > 128) {
            return "needs claim names of 1-128 bytes";
        }

        name = ngx_array_push(jcf->required);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        /* the directive's words end with NUL */
        *name = (char *) value[i].data;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_realtime_jwt_sub_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_realtime_jwt_conf_t  *jcf;

    jcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_jwt_module);

    return ngx_http_realtime_jwt_value(r, v, jcf->user_claim.data,
                                       jcf->user_claim.len);
}


static ngx_int_t
ngx_http_realtime_jwt_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  *name = (ngx_str_t *) data;

    size_t  prefix;

    prefix = ngx_http_realtime_jwt_claim_prefix.len;

    return ngx_http_realtime_jwt_value(r, v, name->data + prefix,
                                       name->len - prefix);
}


static ngx_int_t
ngx_http_realtime_jwt_value(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, u_char *name, size_t len)
{
    size_t                    n;
    json_t                   *claim, *claims;
    ngx_http_realtime_ctx_t  *ctx;

    /* a forward's location: the claims of the socket's token */

    claims = ngx_http_realtime_forward_claims(r);

    if (claims == NULL) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);
        claims = ctx ? ctx->jwt_claims : NULL;
    }

    claim = claims ? ngx_http_realtime_jwt_claim(claims, (char *) name, len)
                   : NULL;

    if (claim == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    n = ngx_http_realtime_jwt_claim_text(claim, NULL, 0);
    if (n == (size_t) -1) {
        return NGX_ERROR;
    }

    v->data = ngx_pnalloc(r->pool, n + 1);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_http_realtime_jwt_claim_text(claim, (char *) v->data, n + 1);

    v->len = n;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static void *
ngx_http_realtime_jwt_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_realtime_jwt_main_conf_t  *jmcf;

    jmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_jwt_main_conf_t));
    if (jmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&jmcf->keysets, cf->pool, 1,
                       sizeof(ngx_http_realtime_jwt_keyset_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return jmcf;
}


static void *
ngx_http_realtime_jwt_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_realtime_jwt_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_jwt_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->allowed = 0;
     *     conf->issuer = { 0, NULL };
     *     conf->audience = { 0, NULL };
     *     conf->rooms_claim = { 0, NULL };
     *     conf->user_claim = { 0, NULL };
     */

    conf->keys = NGX_CONF_UNSET_PTR;
    conf->keyset = NGX_CONF_UNSET_PTR;
    conf->algs = NGX_CONF_UNSET_UINT;
    conf->tokens = NGX_CONF_UNSET_PTR;
    conf->leeway = NGX_CONF_UNSET;
    conf->failure = NGX_CONF_UNSET_UINT;
    conf->keep_claims = NGX_CONF_UNSET;
    conf->required = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_realtime_jwt_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_realtime_jwt_conf_t *prev = parent;
    ngx_http_realtime_jwt_conf_t *conf = child;

    unsigned                      fit;
    ngx_uint_t                    i;
    ngx_http_realtime_jwt_key_t  *key;

    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_uint_value(conf->algs, prev->algs, 0);
    ngx_conf_merge_ptr_value(conf->tokens, prev->tokens, NULL);
    ngx_conf_merge_str_value(conf->issuer, prev->issuer, "");
    ngx_conf_merge_str_value(conf->audience, prev->audience, "");
    ngx_conf_merge_sec_value(conf->leeway, prev->leeway, 0);
    ngx_conf_merge_str_value(conf->rooms_claim, prev->rooms_claim, "");
    ngx_conf_merge_str_value(conf->user_claim, prev->user_claim, "sub");
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_HTTP_REALTIME_JWT_FAIL_STATUS);
    ngx_conf_merge_value(conf->keep_claims, prev->keep_claims, 0);
    ngx_conf_merge_ptr_value(conf->required, prev->required, NULL);
    ngx_conf_merge_ptr_value(conf->keyset, prev->keyset, NULL);

    fit = 0;

    if (conf->keyset) {
        ngx_http_realtime_jwt_keyset_merge(cf, conf->keyset);

        /* what an identity provider's keys may be */
        fit = NGX_HTTP_REALTIME_JWT_RS|NGX_HTTP_REALTIME_JWT_PS
              |NGX_HTTP_REALTIME_JWT_ES;

        if (conf->keys == NULL) {
            /* JWT is on: the keys are all to be fetched */
            conf->keys = ngx_array_create(cf->pool, 1,
                                       sizeof(ngx_http_realtime_jwt_key_t));
            if (conf->keys == NULL) {
                return NGX_CONF_ERROR;
            }
        }
    }

    if (conf->keys == NULL) {
        return NGX_CONF_OK;
    }

    /* by default every algorithm that fits a key */

    key = conf->keys->elts;

    for (i = 0; i < conf->keys->nelts; i++) {
        fit |= key[i].algs;
    }

    conf->allowed = conf->algs ? (unsigned) conf->algs : fit;

    if (!(conf->allowed & fit)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no realtime_jwt_key fits realtime_jwt_alg");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime_jwt_alg_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_jwt_conf_t *jcf = conf;

    unsigned     alg;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (jcf->algs != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    jcf->algs = 0;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        alg = ngx_http_realtime_jwt_alg((char *) value[i].data, value[i].len);

        if (alg == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unsupported algorithm \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        jcf->algs |= alg;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime_jwt_token_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_jwt_conf_t *jcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    if (jcf->tokens != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    jcf->tokens = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(ngx_http_complex_value_t));
    if (jcf->tokens == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        cv = ngx_array_push(jcf->tokens);
        if (cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[i];
        ccv.complex_value = cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}
