
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_jwt_key: secrets, PEM public keys and JWKS files, loaded and
 * checked when the configuration is read (and the JWK loader fetched
 * sets use); and the signature check of a token against one key, by
 * ngx_http_realtime_jwt_sig.c on the key made here once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ngx_http_realtime_jwt.h"
#include "ngx_http_realtime_jwt_sig.h"


/* key files are small; this only stops a wrong path from eating memory */
#define NGX_HTTP_REALTIME_JWT_FILE_MAX  (1024 * 1024)


static ngx_int_t ngx_http_realtime_jwt_read_file(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *out);
static char *ngx_http_realtime_jwt_secret(ngx_http_realtime_jwt_load_t *ld,
    ngx_str_t *secret, ngx_str_t *kid, unsigned alg);
static char *ngx_http_realtime_jwt_pem(ngx_conf_t *cf,
    ngx_http_realtime_jwt_load_t *ld, ngx_str_t *file);
static char *ngx_http_realtime_jwt_jwks(ngx_conf_t *cf,
    ngx_http_realtime_jwt_load_t *ld, ngx_str_t *file);
static char *ngx_http_realtime_jwt_jwk(ngx_http_realtime_jwt_load_t *ld,
    json_t *jwk);
static ngx_int_t ngx_http_realtime_jwt_decode(ngx_pool_t *pool,
    ngx_http_realtime_jwk_t *k, ngx_uint_t i, ngx_str_t *out);
static char *ngx_http_realtime_jwt_rsa_jwk(ngx_pool_t *pool,
    ngx_http_realtime_jwk_t *k, EVP_PKEY **pkey);
static char *ngx_http_realtime_jwt_ec_jwk(ngx_pool_t *pool,
    ngx_http_realtime_jwk_t *k, EVP_PKEY **pkey);
static EVP_PKEY *ngx_http_realtime_jwt_fromdata(const char *type,
    OSSL_PARAM_BLD *bld);
static char *ngx_http_realtime_jwt_add_pkey(ngx_http_realtime_jwt_load_t *ld,
    EVP_PKEY *pkey, ngx_str_t *kid, unsigned alg);
static void ngx_http_realtime_jwt_pkey_cleanup(void *data);


/* realtime_jwt_key file=|secret=|secret_file=|jwks=; may repeat */

char *
ngx_http_realtime_jwt_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_jwt_conf_t *jcf = conf;

    char                          *rv;
    ngx_str_t                     *value, arg, file, secret;
    ngx_http_realtime_jwt_load_t   ld;

    if (jcf->keys == NGX_CONF_UNSET_PTR) {
        jcf->keys = ngx_array_create(cf->pool, 2,
                                     sizeof(ngx_http_realtime_jwt_key_t));
        if (jcf->keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;
    arg = value[1];

    ld.pool = cf->pool;
    ld.log = cf->log;
    ld.keys = jcf->keys;
    ld.fetched = 0;

    if (arg.len > 7 && ngx_strncmp(arg.data, "secret=", 7) == 0) {
        secret.data = arg.data + 7;
        secret.len = arg.len - 7;

        return ngx_http_realtime_jwt_secret(&ld, &secret, NULL, 0);
    }

    if (arg.len > 12 && ngx_strncmp(arg.data, "secret_file=", 12) == 0) {
        file.data = arg.data + 12;
        file.len = arg.len - 12;

        if (ngx_http_realtime_jwt_read_file(cf, &file, &secret) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        /* files written by echo or editors end with a newline */
        while (secret.len
               && (secret.data[secret.len - 1] == LF
                   || secret.data[secret.len - 1] == CR))
        {
            secret.len--;
        }

        if (secret.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "realtime_jwt_key: secret file \"%V\" "
                               "is empty", &file);
            return NGX_CONF_ERROR;
        }

        return ngx_http_realtime_jwt_secret(&ld, &secret, NULL, 0);
    }

    if (arg.len > 5 && ngx_strncmp(arg.data, "file=", 5) == 0) {
        file.data = arg.data + 5;
        file.len = arg.len - 5;

        rv = ngx_http_realtime_jwt_pem(cf, &ld, &file);

        if (rv != NGX_CONF_OK && rv != NGX_CONF_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "realtime_jwt_key: \"%V\": %s", &file, rv);
            return NGX_CONF_ERROR;
        }

        return rv;
    }

    if (arg.len > 5 && ngx_strncmp(arg.data, "jwks=", 5) == 0) {
        file.data = arg.data + 5;
        file.len = arg.len - 5;

        return ngx_http_realtime_jwt_jwks(cf, &ld, &file);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", expected file=, secret=, "
                       "secret_file= or jwks=", &arg);

    return NGX_CONF_ERROR;
}


/* the whole file, NUL-terminated, in cf->pool; name is made full */

static ngx_int_t
ngx_http_realtime_jwt_read_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *out)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "realtime_jwt_key: " ngx_open_file_n " \"%V\" "
                           "failed", name);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "realtime_jwt_key: " ngx_fd_info_n " \"%V\" "
                           "failed", name);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size > NGX_HTTP_REALTIME_JWT_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_jwt_key: \"%V\" is too large", name);
        goto done;
    }

    out->data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (out->data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, out->data, (size_t) size);

    if (n != (ssize_t) size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, (n == -1) ? ngx_errno : 0,
                           "realtime_jwt_key: " ngx_read_fd_n " \"%V\" "
                           "failed", name);
        goto done;
    }

    out->len = (size_t) size;
    out->data[out->len] = '\0';

    rc = NGX_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", name);
    }

    return rc;
}


static char *
ngx_http_realtime_jwt_secret(ngx_http_realtime_jwt_load_t *ld,
    ngx_str_t *secret, ngx_str_t *kid, unsigned alg)
{
    ngx_http_realtime_jwt_key_t  *key;

    /* RFC 7518 3.2: at least as long as the hash output */
    if (secret->len < 32) {
        ngx_log_error(NGX_LOG_WARN, ld->log, 0,
                      "realtime_jwt_key: a secret of %uz bytes is weak, "
                      "use at least 32", secret->len);
    }

    key = ngx_array_push(ld->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_realtime_jwt_key_t));

    key->type = NGX_HTTP_REALTIME_JWT_KEY_SECRET;
    key->algs = alg ? alg : NGX_HTTP_REALTIME_JWT_HS;
    key->data = *secret;

    if (kid) {
        key->kid = *kid;
    }

    return NGX_CONF_OK;
}


/* a PEM public key ("PUBLIC KEY") or a certificate holding one */

static char *
ngx_http_realtime_jwt_pem(ngx_conf_t *cf, ngx_http_realtime_jwt_load_t *ld,
    ngx_str_t *file)
{
    BIO        *bio;
    X509       *x509;
    EVP_PKEY   *pkey;
    ngx_str_t   pem;

    if (ngx_http_realtime_jwt_read_file(cf, file, &pem) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_mem_buf(pem.data, (int) pem.len);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    if (pkey == NULL) {
        (void) BIO_reset(bio);

        x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL);

        if (x509) {
            pkey = X509_get_pubkey(x509);
            X509_free(x509);
        }
    }

    BIO_free(bio);
    ERR_clear_error();

    if (pkey == NULL) {
        return (ngx_strstr(pem.data, "PRIVATE KEY") != NULL)
               ? "is a private key, the public key is needed"
               : "has no PEM public key or certificate";
    }

    return ngx_http_realtime_jwt_add_pkey(ld, pkey, NULL, 0);
}


/* a JWKS file: read and loaded when the configuration is */

static char *
ngx_http_realtime_jwt_jwks(ngx_conf_t *cf, ngx_http_realtime_jwt_load_t *ld,
    ngx_str_t *file)
{
    ngx_str_t    text;
    const char  *err;

    if (ngx_http_realtime_jwt_read_file(cf, file, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_realtime_jwt_jwks_load(ld, text.data, text.len, &err)
        != NGX_OK)
    {
        if (err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "realtime_jwt_key: JWKS \"%V\"%s", file, err);
        }

        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * {"keys": [JWK, ...]}, RFC 7517 5, into ld->keys; a file's or an
 * identity provider's.  NGX_ERROR with *err (to follow the JWKS's
 * name), or with *err NULL when memory ran out.
 */

ngx_int_t
ngx_http_realtime_jwt_jwks_load(ngx_http_realtime_jwt_load_t *ld,
    u_char *text, size_t len, const char **err)
{
    char        *rv;
    size_t       i;
    json_t      *root, *set, *jwk;
    ngx_uint_t   before;

    *err = NULL;

    if (ngx_http_realtime_jwks_parse((char *) text, len, &root, &set,
                                     (char *) ld->error, sizeof(ld->error))
        != 0)
    {
        *err = (char *) ld->error;
        return NGX_ERROR;
    }

    before = ld->keys->nelts;

    json_array_foreach(set, i, jwk) {

        rv = ngx_http_realtime_jwt_jwk(ld, jwk);

        if (rv == NGX_CONF_OK) {
            continue;
        }

        if (ld->fetched && rv != NGX_CONF_ERROR) {
            /* one key a provider added that is not read spoils no other */
            ngx_log_error(NGX_LOG_WARN, ld->log, 0,
                          "realtime: JWKS key %uz skipped: %s", i, rv);
            continue;
        }

        json_decref(root);

        if (rv != NGX_CONF_ERROR) {
            ngx_snprintf(ld->error, sizeof(ld->error) - 1,
                         ", key %uz: %s%Z", i, rv);
            *err = (char *) ld->error;
        }

        return NGX_ERROR;
    }

    json_decref(root);

    if (ld->keys->nelts == before) {
        *err = " has no signature key of type RSA, EC or oct";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* one JWK; keys for other uses and of other types are skipped */

static char *
ngx_http_realtime_jwt_jwk(ngx_http_realtime_jwt_load_t *ld, json_t *jwk)
{
    char                     *rv;
    EVP_PKEY                 *pkey;
    ngx_str_t                 id, secret;
    const char               *reason;
    ngx_http_realtime_jwk_t   k;

    if (ngx_http_realtime_jwk_read(jwk, &k, &reason) != 0) {
        return (char *) reason;
    }

    if (k.type == NGX_HTTP_REALTIME_JWK_SKIP) {
        if (k.kty) {
            ngx_log_error(NGX_LOG_WARN, ld->log, 0,
                          "realtime_jwt_key: JWK of type \"%s\" skipped",
                          k.kty);
        }

        return NGX_CONF_OK;
    }

    ngx_str_null(&id);

    if (k.kid) {
        id.len = k.kid_len;
        id.data = ngx_pnalloc(ld->pool, id.len);
        if (id.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(id.data, k.kid, id.len);
    }

    switch (k.type) {

    case NGX_HTTP_REALTIME_JWK_OCT:
        if (ld->fetched) {
            /* a secret published with public keys is no secret */
            return "is a secret (\"oct\"), never taken from a fetched set";
        }

        if (ngx_http_realtime_jwt_decode(ld->pool, &k, 0, &secret) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        return ngx_http_realtime_jwt_secret(ld, &secret, &id, k.algs);

    case NGX_HTTP_REALTIME_JWK_RSA:
        rv = ngx_http_realtime_jwt_rsa_jwk(ld->pool, &k, &pkey);
        break;

    default: /* NGX_HTTP_REALTIME_JWK_EC */
        rv = ngx_http_realtime_jwt_ec_jwk(ld->pool, &k, &pkey);
    }

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_realtime_jwt_add_pkey(ld, pkey, &id, k.algs);
}


/* a member that ngx_http_realtime_jwk_read() found base64url */

static ngx_int_t
ngx_http_realtime_jwt_decode(ngx_pool_t *pool, ngx_http_realtime_jwk_t *k,
    ngx_uint_t i, ngx_str_t *out)
{
    out->data = ngx_pnalloc(pool, k->decoded_len[i] + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_jwt_base64url_decode(out->data, &out->len,
                                               k->member[i],
                                               k->member_len[i])
        != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_http_realtime_jwt_rsa_jwk(ngx_pool_t *pool, ngx_http_realtime_jwk_t *k,
    EVP_PKEY **pkey)
{
    BIGNUM          *n, *e;
    ngx_str_t        bn, be;
    OSSL_PARAM_BLD  *bld;

    if (ngx_http_realtime_jwt_decode(pool, k, 0, &bn) != NGX_OK
        || ngx_http_realtime_jwt_decode(pool, k, 1, &be) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    n = BN_bin2bn(bn.data, (int) bn.len, NULL);
    e = BN_bin2bn(be.data, (int) be.len, NULL);
    bld = OSSL_PARAM_BLD_new();

    *pkey = NULL;

    if (n && e && bld
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        *pkey = ngx_http_realtime_jwt_fromdata("RSA", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    ERR_clear_error();

    return *pkey ? NGX_CONF_OK : "is not a valid RSA public key";
}


static char *
ngx_http_realtime_jwt_ec_jwk(ngx_pool_t *pool, ngx_http_realtime_jwk_t *k,
    EVP_PKEY **pkey)
{
    u_char                               *point;
    ngx_str_t                             x, y;
    OSSL_PARAM_BLD                       *bld;
    const ngx_http_realtime_jwt_curve_t  *c;

    c = k->curve;

    if (ngx_http_realtime_jwt_decode(pool, k, 0, &x) != NGX_OK
        || ngx_http_realtime_jwt_decode(pool, k, 1, &y) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* an uncompressed point, SEC 1 2.3.3 */
    point = ngx_pnalloc(pool, 1 + 2 * c->size);
    if (point == NULL) {
        return NGX_CONF_ERROR;
    }

    point[0] = 0x04;
    ngx_memcpy(point + 1, x.data, c->size);
    ngx_memcpy(point + 1 + c->size, y.data, c->size);

    bld = OSSL_PARAM_BLD_new();

    *pkey = NULL;

    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           c->group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, 1 + 2 * c->size))
    {
        *pkey = ngx_http_realtime_jwt_fromdata("EC", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    ERR_clear_error();

    return *pkey ? NGX_CONF_OK : "is not a valid EC public key";
}


/* a public key from parameters, checked (an EC point on its curve) */

static EVP_PKEY *
ngx_http_realtime_jwt_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx, *check;

    pkey = NULL;
    ctx = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL) {
        return NULL;
    }

    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    {
        pkey = NULL;
        goto done;
    }

    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(check);

done:

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return pkey;
}


/*
 * Takes pkey over: it is freed with ld's pool.  The key's type
 * and curve decide what it may verify.
 */

static char *
ngx_http_realtime_jwt_add_pkey(ngx_http_realtime_jwt_load_t *ld,
    EVP_PKEY *pkey, ngx_str_t *kid, unsigned alg)
{
    size_t                                glen;
    unsigned                              algs;
    ngx_uint_t                            type;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_realtime_jwt_key_t          *key;
    const ngx_http_realtime_jwt_curve_t  *c;
    char                                  group[64];

    cln = ngx_pool_cleanup_add(ld->pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_realtime_jwt_pkey_cleanup;
    cln->data = pkey;

    switch (EVP_PKEY_get_base_id(pkey)) {

    case EVP_PKEY_RSA:
        type = NGX_HTTP_REALTIME_JWT_KEY_RSA;
        algs = NGX_HTTP_REALTIME_JWT_RS|NGX_HTTP_REALTIME_JWT_PS;
        break;

    case EVP_PKEY_EC:
        type = NGX_HTTP_REALTIME_JWT_KEY_EC;

        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1) {
            ERR_clear_error();
            return "is an EC key of unknown curve";
        }

        c = ngx_http_realtime_jwt_curve(NULL, group);

        if (c == NULL) {
            return "is an EC key on a curve other than P-256, P-384 or "
                   "P-521";
        }

        algs = c->alg;
        break;

    default:
        return "is neither an RSA nor an EC key";
    }

    if (alg) {
        if (!(alg & algs)) {
            return "has an \"alg\" that does not fit the key";
        }

        algs = alg;
    }

    key = ngx_array_push(ld->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_realtime_jwt_key_t));

    key->type = type;
    key->algs = algs;
    key->pkey = pkey;

    if (kid) {
        key->kid = *kid;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_realtime_jwt_pkey_cleanup(void *data)
{
    EVP_PKEY_free(data);
}


/* NGX_OK when the token is signed by the key, NGX_DECLINED if not */

ngx_int_t
ngx_http_realtime_jwt_key_verify(ngx_http_realtime_jwt_key_t *key,
    ngx_http_realtime_jwt_token_t *t, ngx_log_t *log)
{
    int  rc;

    rc = ngx_http_realtime_jwt_sig_verify(t->alg, key->pkey, key->data.data,
                                          key->data.len, t->signing_input,
                                          t->signing_input_len, t->signature,
                                          t->signature_len);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "realtime jwt: signature check: %d", rc);

    return (rc == NGX_HTTP_REALTIME_JWT_SIG_OK) ? NGX_OK
           : (rc == NGX_HTTP_REALTIME_JWT_SIG_BAD) ? NGX_DECLINED : NGX_ERROR;
}
