
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
    ngx_str_t                      data;     /* secret, or PEM for libjwt */
    EVP_PKEY                      *pkey;     /* RSA and EC */
} ngx_http_realtime_jwt_key_t;


typedef struct {
    ngx_array_t                   *keys;     /* ngx_http_realtime_jwt_key_t */
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

    /* realtime_auth_failure close: the code to close with at once */
    ngx_uint_t                     close_code;
    char                          *close_reason;
};


char *ngx_http_realtime_jwt_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_realtime_jwt_key_verify(ngx_http_realtime_jwt_key_t *key,
    ngx_http_realtime_jwt_token_t *t, char *token, ngx_log_t *log);


extern ngx_module_t  ngx_http_realtime_jwt_module;


#endif /* _NGX_HTTP_REALTIME_JWT_H_INCLUDED_ */
