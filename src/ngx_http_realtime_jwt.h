
/*
 * Copyright (C) ngx-realtime developers
 *
 * JWT authentication: what ngx_http_realtime_jwt.c (directives,
 * verification, variables) and ngx_http_realtime_jwt_keys.c (keys) share.
 */


#ifndef _NGX_HTTP_REALTIME_JWT_H_INCLUDED_
#define _NGX_HTTP_REALTIME_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_jwt_claims.h"


#define NGX_HTTP_REALTIME_JWT_KEY_SECRET  1
#define NGX_HTTP_REALTIME_JWT_KEY_RSA     2
#define NGX_HTTP_REALTIME_JWT_KEY_EC      3

/* realtime_auth_failure */
#define NGX_HTTP_REALTIME_JWT_FAIL_STATUS 0
#define NGX_HTTP_REALTIME_JWT_FAIL_CLOSE  1


typedef struct {
    ngx_uint_t                     type;
    unsigned                       algs;     /* what the key may verify */
    ngx_str_t                      kid;      /* empty: none */
    ngx_str_t                      data;     /* the secret of HS* */
    EVP_PKEY                      *pkey;     /* RSA and EC */
} ngx_http_realtime_jwt_key_t;


/* where JWKs are loaded to: a file's at start, a fetched set's later */
typedef struct {
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    ngx_array_t                   *keys;     /* ngx_http_realtime_jwt_key_t */
    ngx_uint_t                     fetched;  /* an identity provider's */
    u_char                         error[160];
} ngx_http_realtime_jwt_load_t;


typedef void (*ngx_http_realtime_jwt_wake_pt)(ngx_http_realtime_jwt_wait_t *w);

/*
 * A verification that waits for the key set: the caller's, woken once
 * the fetch ends (or its timeout= passes); it then verifies again with
 * what the set holds and never waits twice.
 */
struct ngx_http_realtime_jwt_wait_s {
    ngx_queue_t                    link;     /* in the set's waiters */
    void                          *keyset;   /* waited for */
    ngx_http_realtime_jwt_wake_pt  wake;
    void                          *data;
    unsigned                       waiting:1;
    unsigned                       woken:1;
};


typedef struct ngx_http_realtime_jwt_fetch_s  ngx_http_realtime_jwt_fetch_t;

/*
 * realtime_jwt_key_request: the keys of an identity provider's JWKS,
 * fetched through a location by each worker for itself
 * (ngx_http_realtime_jwt_fetch.c).  The configuration's part is read
 * only; the rest is the worker's own.
 */
typedef struct {
    ngx_str_t                      uri;
    ngx_str_t                      args;
    ngx_msec_t                     refresh;       /* refresh= */
    ngx_msec_t                     min_interval;  /* min_interval= */
    ngx_msec_t                     timeout;       /* timeout= */
    ngx_http_conf_ctx_t           *ctx;      /* the server it is fetched in */

    ngx_array_t                   *keys;     /* the last good set, or NULL */
    ngx_pool_t                    *pool;     /* of keys */
    ngx_msec_t                     started;  /* of the last fetch */
    ngx_uint_t                     fetched;  /* a fetch has started */
    ngx_http_realtime_jwt_fetch_t *fetch;    /* in flight, or NULL */
    ngx_event_t                    timer;    /* the next scheduled fetch */
    ngx_event_t                    wait_timer;
    ngx_event_t                    fetch_timer;
    ngx_queue_t                    waiters;
} ngx_http_realtime_jwt_keyset_t;


typedef struct {
    ngx_array_t                    keysets;  /* keyset_t * */
} ngx_http_realtime_jwt_main_conf_t;


typedef struct {
    ngx_array_t                   *keys;     /* ngx_http_realtime_jwt_key_t */
    ngx_http_realtime_jwt_keyset_t *keyset;  /* realtime_jwt_key_request */
    ngx_uint_t                     algs;     /* realtime_jwt_alg, 0: unset */
    unsigned                       allowed;  /* what tokens may use */
    ngx_array_t                   *tokens;   /* ngx_http_complex_value_t */
    ngx_str_t                      issuer;
    ngx_str_t                      audience;
    time_t                         leeway;
    ngx_str_t                      rooms_claim;
    ngx_str_t                      user_claim;   /* NUL-terminated */
    ngx_uint_t                     failure;
    ngx_flag_t                     keep_claims;  /* the location forwards */
    ngx_array_t                   *required;     /* char *, NUL-ended */
} ngx_http_realtime_jwt_conf_t;


/* a "refresh" waiting for realtime_jwt_key_request's keys */
typedef struct {
    ngx_http_realtime_jwt_wait_t        wait;
    ngx_http_realtime_session_t        *session;
    ngx_http_realtime_jwt_refreshed_pt  done;
    json_int_t                          id;
    ngx_str_t                           token;   /* after the struct */
} ngx_http_realtime_jwt_refreshing_t;


/* a socket's authentication, in its connection's pool */
struct ngx_http_realtime_jwt_conn_s {
    ngx_http_realtime_jwt_conf_t  *conf;
    ngx_str_t                      user;     /* the user claim */
    time_t                         deadline; /* exp + leeway, 0: none */

    /* realtime_jwt_rooms_claim: one ngx_alloc()ed block, replaced on
     * refresh */
    ngx_str_t                     *rooms;
    ngx_uint_t                     nrooms;

    /* the token's claims, kept when the location forwards; or NULL */
    json_t                        *claims;

    /* a refresh waiting for a key, or NULL */
    ngx_http_realtime_jwt_refreshing_t *refreshing;

    /* realtime_auth_failure close: the code to close with at once */
    ngx_uint_t                     close_code;
    char                          *close_reason;
};


char *ngx_http_realtime_jwt_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_realtime_jwt_key_verify(ngx_http_realtime_jwt_key_t *key,
    ngx_http_realtime_jwt_token_t *t, ngx_log_t *log);
ngx_int_t ngx_http_realtime_jwt_jwks_load(ngx_http_realtime_jwt_load_t *ld,
    u_char *text, size_t len, const char **err);

/* a token's verification (ngx_http_realtime_jwt_verify.c) */
typedef struct {
    json_t                          *claims;
    ngx_http_realtime_jwt_result_t   res;
    ngx_uint_t                       missing;   /* no token at all */
} ngx_http_realtime_jwt_verified_t;


ngx_int_t ngx_http_realtime_jwt_find(ngx_http_request_t *r,
    ngx_http_realtime_jwt_conf_t *jcf, ngx_uint_t push, ngx_str_t *token);
ngx_int_t ngx_http_realtime_jwt_verify(ngx_http_realtime_jwt_conf_t *jcf,
    ngx_str_t *token, ngx_log_t *log, ngx_http_realtime_jwt_verified_t *v,
    ngx_http_realtime_jwt_wait_t *w);
ngx_uint_t ngx_http_realtime_jwt_key_missing(
    ngx_http_realtime_jwt_conf_t *jcf, ngx_str_t *token, ngx_log_t *log);

/* ngx_http_realtime_jwt_fetch.c */
char *ngx_http_realtime_jwt_key_request_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
void ngx_http_realtime_jwt_keyset_merge(ngx_conf_t *cf,
    ngx_http_realtime_jwt_keyset_t *ks);
ngx_int_t ngx_http_realtime_jwt_keyset_init_process(ngx_cycle_t *cycle);
void ngx_http_realtime_jwt_keyset_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_realtime_jwt_keyset_wait(
    ngx_http_realtime_jwt_keyset_t *ks, ngx_http_realtime_jwt_wait_t *w,
    ngx_log_t *log);
void ngx_http_realtime_jwt_wait_cancel(ngx_http_realtime_jwt_wait_t *w);


extern ngx_module_t  ngx_http_realtime_jwt_module;


#endif /* _NGX_HTTP_REALTIME_JWT_H_INCLUDED_ */
