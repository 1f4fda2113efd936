
/*
 * Copyright (C) ngx-realtime developers
 *
 * A token's verification: its signature by a configured key or one of
 * realtime_jwt_key_request's set (waiting for the set when the token
 * names a kid it lacks), then its claims by the location's policy.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_jwt.h"


static ngx_int_t ngx_http_realtime_jwt_signature(
    ngx_http_realtime_jwt_conf_t *jcf, ngx_http_realtime_jwt_token_t *t,
    ngx_str_t *token, ngx_log_t *log, const char **reason,
    ngx_http_realtime_jwt_wait_t *w);
static ngx_int_t ngx_http_realtime_jwt_try_keys(ngx_array_t *keys,
    ngx_http_realtime_jwt_token_t *t, ngx_uint_t verify, ngx_log_t *log,
    ngx_uint_t *tried, ngx_uint_t *kid_known);
static ngx_uint_t ngx_http_realtime_jwt_set_needed(
    ngx_http_realtime_jwt_keyset_t *ks, ngx_http_realtime_jwt_token_t *t,
    ngx_uint_t tried, ngx_uint_t kid_known);


/*
 * NGX_OK with v->claims (a reference to drop),
 * NGX_HTTP_REALTIME_UNAUTHORIZED or _EXPIRED with v->res.reason,
 * NGX_AGAIN when w waits for the key set, or NGX_ERROR.
 */

ngx_int_t
ngx_http_realtime_jwt_verify(ngx_http_realtime_jwt_conf_t *jcf,
    ngx_str_t *token, ngx_log_t *log, ngx_http_realtime_jwt_verified_t *v,
    ngx_http_realtime_jwt_wait_t *w)
{
    int                              rc;
    ngx_int_t                        sig;
    ngx_http_realtime_jwt_token_t    t;
    ngx_http_realtime_jwt_policy_t   policy;

    ngx_memzero(v, sizeof(ngx_http_realtime_jwt_verified_t));

    if (ngx_http_realtime_jwt_parse(&t, (char *) token->data, token->len,
                                    &v->res.reason)
        != 0)
    {
        goto unauthorized;
    }

    if (!(t.alg & jcf->allowed)) {
        v->res.reason = "token alg is not allowed";
        ngx_http_realtime_jwt_token_free(&t);
        goto unauthorized;
    }

    sig = ngx_http_realtime_jwt_signature(jcf, &t, token, log,
                                          &v->res.reason, w);

    if (sig != NGX_OK) {
        ngx_http_realtime_jwt_token_free(&t);

        if (sig == NGX_ERROR || sig == NGX_AGAIN) {
            return sig;
        }

        goto unauthorized;
    }

    ngx_memzero(&policy, sizeof(ngx_http_realtime_jwt_policy_t));

    if (jcf->issuer.len) {
        policy.issuer = (char *) jcf->issuer.data;
        policy.issuer_len = jcf->issuer.len;
    }

    if (jcf->audience.len) {
        policy.audience = (char *) jcf->audience.data;
        policy.audience_len = jcf->audience.len;
    }

    policy.user_claim = (char *) jcf->user_claim.data;
    policy.now = ngx_time();
    policy.leeway = jcf->leeway;

    if (jcf->required) {
        policy.required = jcf->required->elts;
        policy.nrequired = jcf->required->nelts;
    }

    rc = ngx_http_realtime_jwt_check(t.claims, &policy, &v->res);

    if (rc != NGX_HTTP_REALTIME_JWT_OK) {
        ngx_http_realtime_jwt_token_free(&t);

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "realtime: token refused: %s%s%s%s", v->res.reason,
                      v->res.missing ? " \"" : "",
                      v->res.missing ? v->res.missing : "",
                      v->res.missing ? "\"" : "");

        return (rc == NGX_HTTP_REALTIME_JWT_EXPIRED)
               ? NGX_HTTP_REALTIME_EXPIRED : NGX_HTTP_REALTIME_UNAUTHORIZED;
    }

    /* the claims outlive the token; res.user points into them */

    v->claims = json_incref(t.claims);
    ngx_http_realtime_jwt_token_free(&t);

    return NGX_OK;

unauthorized:

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "realtime: token refused: %s", v->res.reason);

    return NGX_HTTP_REALTIME_UNAUTHORIZED;
}


/*
 * Tries the keys that fit the token's alg, and its kid when it has one;
 * keys without a kid (PEM files, secrets) fit any kid.  HS* never uses
 * an RSA or EC key, which stops algorithm confusion.  A kid that no key
 * has, or a key set not fetched yet, asks realtime_jwt_key_request for
 * the set again: NGX_AGAIN when w waits for it.
 */

static ngx_int_t
ngx_http_realtime_jwt_signature(ngx_http_realtime_jwt_conf_t *jcf,
    ngx_http_realtime_jwt_token_t *t, ngx_str_t *token, ngx_log_t *log,
    const char **reason, ngx_http_realtime_jwt_wait_t *w)
{
    ngx_int_t                        rc;
    ngx_uint_t                       tried, kid_known;
    ngx_http_realtime_jwt_keyset_t  *ks;

    tried = 0;
    kid_known = 0;

    rc = ngx_http_realtime_jwt_try_keys(jcf->keys, t, 1, log, &tried,
                                        &kid_known);

    ks = jcf->keyset;

    if (rc == NGX_DECLINED && ks && ks->keys) {
        rc = ngx_http_realtime_jwt_try_keys(ks->keys, t, 1, log, &tried,
                                            &kid_known);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "realtime jwt: signature %s after %ui keys",
                   rc == NGX_OK ? "verified" : "refused", tried);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ks && ngx_http_realtime_jwt_set_needed(ks, t, tried, kid_known)
        && ngx_http_realtime_jwt_keyset_wait(ks, w, log) == NGX_AGAIN)
    {
        return NGX_AGAIN;
    }

    *reason = tried ? "token signature is invalid"
              : (t->kid && !kid_known) ? "token kid is unknown"
              : "no key fits the token alg";

    return NGX_DECLINED;
}


/* verify 0: only counts the keys that fit (and if the kid is known) */

static ngx_int_t
ngx_http_realtime_jwt_try_keys(ngx_array_t *keys,
    ngx_http_realtime_jwt_token_t *t, ngx_uint_t verify, ngx_log_t *log,
    ngx_uint_t *tried, ngx_uint_t *kid_known)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_http_realtime_jwt_key_t  *key;

    key = keys->elts;
    rc = NGX_DECLINED;

    for (i = 0; i < keys->nelts; i++) {

        if (t->kid && key[i].kid.len) {
            if (key[i].kid.len != t->kid_len
                || ngx_memcmp(key[i].kid.data, t->kid, t->kid_len) != 0)
            {
                continue;
            }

            *kid_known = 1;
        }

        if (!(key[i].algs & t->alg)) {
            continue;
        }

        (*tried)++;

        if (!verify) {
            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "realtime jwt: trying key %ui of %ui, kid \"%V\"",
                       i + 1, keys->nelts, &key[i].kid);

        rc = ngx_http_realtime_jwt_key_verify(&key[i], t, log);

        if (rc != NGX_DECLINED) {
            break;
        }
    }

    return rc;
}


/* the token wants a key the fetched set may bring */

static ngx_uint_t
ngx_http_realtime_jwt_set_needed(ngx_http_realtime_jwt_keyset_t *ks,
    ngx_http_realtime_jwt_token_t *t, ngx_uint_t tried, ngx_uint_t kid_known)
{
    return (t->kid && !kid_known) || (ks->keys == NULL && tried == 0);
}


/*
 * 1 when the signature check would ask the key set for the token's key:
 * the configuration's keys do not verify it, and its kid is not in the
 * set (or there is no set yet).
 */

ngx_uint_t
ngx_http_realtime_jwt_key_missing(ngx_http_realtime_jwt_conf_t *jcf,
    ngx_str_t *token, ngx_log_t *log)
{
    ngx_int_t                       rc;
    ngx_uint_t                      tried, kid_known, missing;
    const char                     *reason;
    ngx_http_realtime_jwt_token_t   t;

    if (ngx_http_realtime_jwt_parse(&t, (char *) token->data, token->len,
                                    &reason)
        != 0)
    {
        /* refused by the verification that follows */
        return 0;
    }

    missing = 0;
    tried = 0;
    kid_known = 0;

    if (!(t.alg & jcf->allowed)) {
        goto done;
    }

    /*
     * The configuration's keys are tried for real, as the verification
     * does after: the two are paid only where local keys and a fetched
     * set serve together.
     */

    rc = ngx_http_realtime_jwt_try_keys(jcf->keys, &t, 1, log, &tried,
                                        &kid_known);
    if (rc != NGX_DECLINED) {
        goto done;
    }

    if (jcf->keyset->keys) {
        (void) ngx_http_realtime_jwt_try_keys(jcf->keyset->keys, &t, 0, log,
                                              &tried, &kid_known);
    }

    missing = ngx_http_realtime_jwt_set_needed(jcf->keyset, &t, tried,
                                               kid_known);

done:

    ngx_http_realtime_jwt_token_free(&t);

    return missing;
}
