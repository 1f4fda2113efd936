
/*
 * Copyright (C) ngx-realtime developers
 *
 * A JWS signature (RFC 7515, RFC 7518 3) checked with OpenSSL against a
 * key made once, when the configuration is read or a key set fetched:
 * HMAC for HS*, RSASSA-PKCS1-v1_5 for RS*, RSASSA-PSS (MGF1 with the same
 * digest, a salt of the digest's size) for PS*, ECDSA for ES* (the JWS
 * form r || s made DER).  libjwt, which parses the key's PEM again for
 * every token, is no longer on this path; t/unit/test_jwt_sig.c checks
 * the two agree.  Pure C and OpenSSL: no nginx here.
 */


#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "ngx_http_realtime_jwt_sig.h"

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
#include <openssl/core_names.h>
#include <openssl/params.h>
#endif


/* an RSA key of 16384 bits signs in 2048 bytes; nothing larger is real */
#define NGX_HTTP_REALTIME_JWT_SIG_MAX  2048


static int ngx_http_realtime_jwt_sig_hmac(const EVP_MD *md,
    const unsigned char *secret, size_t secret_len, const char *input,
    size_t input_len, const unsigned char *sig, size_t sig_len);
static int ngx_http_realtime_jwt_sig_evp(unsigned alg, const EVP_MD *md,
    EVP_PKEY *pkey, const char *input, size_t input_len,
    const unsigned char *sig, size_t sig_len);
static unsigned char *ngx_http_realtime_jwt_sig_der(unsigned alg,
    const unsigned char *sig, size_t sig_len, int *der_len);


int
ngx_http_realtime_jwt_sig_verify(unsigned alg, EVP_PKEY *pkey,
    const unsigned char *secret, size_t secret_len, const char *input,
    size_t input_len, const char *sig64, size_t sig64_len)
{
    int            rc;
    size_t         sig_len;
    const EVP_MD  *md;
    unsigned char  sig[NGX_HTTP_REALTIME_JWT_SIG_MAX];

    if (sig64_len > (NGX_HTTP_REALTIME_JWT_SIG_MAX * 4 + 2) / 3
        || ngx_http_realtime_jwt_base64url_decode(sig, &sig_len, sig64,
                                                  sig64_len)
           != 0)
    {
        return NGX_HTTP_REALTIME_JWT_SIG_BAD;
    }

    md = (alg & (NGX_HTTP_REALTIME_JWT_HS512 | NGX_HTTP_REALTIME_JWT_RS512
                 | NGX_HTTP_REALTIME_JWT_ES512 | NGX_HTTP_REALTIME_JWT_PS512))
         ? EVP_sha512()
         : (alg & (NGX_HTTP_REALTIME_JWT_HS384 | NGX_HTTP_REALTIME_JWT_RS384
                   | NGX_HTTP_REALTIME_JWT_ES384
                   | NGX_HTTP_REALTIME_JWT_PS384))
           ? EVP_sha384() : EVP_sha256();

    if (alg & NGX_HTTP_REALTIME_JWT_HS) {
        /* never an empty key, nor an RSA or EC key's bytes */
        if (secret == NULL || secret_len == 0 || pkey != NULL) {
            return NGX_HTTP_REALTIME_JWT_SIG_BAD;
        }

        return ngx_http_realtime_jwt_sig_hmac(md, secret, secret_len, input,
                                              input_len, sig, sig_len);
    }

    if (pkey == NULL) {
        return NGX_HTTP_REALTIME_JWT_SIG_BAD;
    }

    rc = ngx_http_realtime_jwt_sig_evp(alg, md, pkey, input, input_len, sig,
                                       sig_len);

    /* failed checks leave OpenSSL errors behind, which TLS must not see */
    ERR_clear_error();

    return rc;
}


#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

/*
 * OpenSSL 3's one-shot HMAC() fetches the algorithm and makes a context
 * for every call, a fifth of a handshake's user time: the process keeps
 * one context, keyed for the last secret, and only starts it again for
 * the next token of the same key.
 */

static EVP_MAC        *ngx_http_realtime_jwt_sig_mac;
static EVP_MAC_CTX    *ngx_http_realtime_jwt_sig_mac_ctx;
static const EVP_MD   *ngx_http_realtime_jwt_sig_mac_md;
static unsigned char  *ngx_http_realtime_jwt_sig_mac_key;
static size_t          ngx_http_realtime_jwt_sig_mac_key_len;


static int
ngx_http_realtime_jwt_sig_mac_init(const EVP_MD *md,
    const unsigned char *secret, size_t secret_len)
{
    unsigned char  *key;
    OSSL_PARAM      params[2];

    if (ngx_http_realtime_jwt_sig_mac_ctx == NULL) {
        if (ngx_http_realtime_jwt_sig_mac == NULL) {
            ngx_http_realtime_jwt_sig_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
            if (ngx_http_realtime_jwt_sig_mac == NULL) {
                return 0;
            }
        }

        ngx_http_realtime_jwt_sig_mac_ctx =
            EVP_MAC_CTX_new(ngx_http_realtime_jwt_sig_mac);
        if (ngx_http_realtime_jwt_sig_mac_ctx == NULL) {
            return 0;
        }
    }

    if (md == ngx_http_realtime_jwt_sig_mac_md
        && secret_len == ngx_http_realtime_jwt_sig_mac_key_len
        && memcmp(secret, ngx_http_realtime_jwt_sig_mac_key, secret_len) == 0)
    {
        /* the same key: a NULL key starts the context again with it */
        return EVP_MAC_init(ngx_http_realtime_jwt_sig_mac_ctx, NULL, 0, NULL);
    }

    /* another key, or the last one failed: forget the one kept */

    if (ngx_http_realtime_jwt_sig_mac_key) {
        OPENSSL_cleanse(ngx_http_realtime_jwt_sig_mac_key,
                        ngx_http_realtime_jwt_sig_mac_key_len);
        free(ngx_http_realtime_jwt_sig_mac_key);
        ngx_http_realtime_jwt_sig_mac_key = NULL;
    }

    ngx_http_realtime_jwt_sig_mac_md = NULL;
    ngx_http_realtime_jwt_sig_mac_key_len = 0;

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) EVP_MD_get0_name(md),
                                                 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ngx_http_realtime_jwt_sig_mac_ctx, secret, secret_len,
                     params)
        != 1)
    {
        return 0;
    }

    key = malloc(secret_len);
    if (key) {
        memcpy(key, secret, secret_len);
        ngx_http_realtime_jwt_sig_mac_key = key;
        ngx_http_realtime_jwt_sig_mac_key_len = secret_len;
        ngx_http_realtime_jwt_sig_mac_md = md;
    }

    return 1;
}


static int
ngx_http_realtime_jwt_sig_hmac(const EVP_MD *md, const unsigned char *secret,
    size_t secret_len, const char *input, size_t input_len,
    const unsigned char *sig, size_t sig_len)
{
    size_t         mac_len;
    unsigned char  mac[EVP_MAX_MD_SIZE];

    if (ngx_http_realtime_jwt_sig_mac_init(md, secret, secret_len) != 1
        || EVP_MAC_update(ngx_http_realtime_jwt_sig_mac_ctx,
                          (const unsigned char *) input, input_len)
           != 1
        || EVP_MAC_final(ngx_http_realtime_jwt_sig_mac_ctx, mac, &mac_len,
                         sizeof(mac))
           != 1)
    {
        /* a context in an unknown state is keyed again next time */
        ngx_http_realtime_jwt_sig_mac_md = NULL;
        ERR_clear_error();
        return NGX_HTTP_REALTIME_JWT_SIG_ERROR;
    }

    return (sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0)
           ? NGX_HTTP_REALTIME_JWT_SIG_OK : NGX_HTTP_REALTIME_JWT_SIG_BAD;
}

#else

static int
ngx_http_realtime_jwt_sig_hmac(const EVP_MD *md, const unsigned char *secret,
    size_t secret_len, const char *input, size_t input_len,
    const unsigned char *sig, size_t sig_len)
{
    unsigned int   mac_len;
    unsigned char  mac[EVP_MAX_MD_SIZE];

    if (HMAC(md, secret, (int) secret_len, (const unsigned char *) input,
             input_len, mac, &mac_len)
        == NULL)
    {
        ERR_clear_error();
        return NGX_HTTP_REALTIME_JWT_SIG_ERROR;
    }

    return (sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0)
           ? NGX_HTTP_REALTIME_JWT_SIG_OK : NGX_HTTP_REALTIME_JWT_SIG_BAD;
}

#endif


static int
ngx_http_realtime_jwt_sig_evp(unsigned alg, const EVP_MD *md, EVP_PKEY *pkey,
    const char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len)
{
    int             rc, der_len;
    EVP_MD_CTX     *ctx;
    EVP_PKEY_CTX   *pctx;
    unsigned char  *der;

    der = NULL;

    if (alg & NGX_HTTP_REALTIME_JWT_ES) {
        der = ngx_http_realtime_jwt_sig_der(alg, sig, sig_len, &der_len);
        if (der == NULL) {
            return (der_len < 0) ? NGX_HTTP_REALTIME_JWT_SIG_ERROR
                                 : NGX_HTTP_REALTIME_JWT_SIG_BAD;
        }

        sig = der;
        sig_len = (size_t) der_len;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        OPENSSL_free(der);
        return NGX_HTTP_REALTIME_JWT_SIG_ERROR;
    }

    rc = NGX_HTTP_REALTIME_JWT_SIG_BAD;

    if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1) {
        goto done;
    }

    if (alg & NGX_HTTP_REALTIME_JWT_PS) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0)
        {
            goto done;
        }

    } else if ((alg & NGX_HTTP_REALTIME_JWT_RS)
               && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
    {
        goto done;
    }

    if (EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *) input,
                         input_len)
        == 1)
    {
        rc = NGX_HTTP_REALTIME_JWT_SIG_OK;
    }

done:

    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);

    return rc;
}


/*
 * RFC 7518 3.4: r and s, each the curve's size, big-endian; OpenSSL
 * wants an ECDSA-Sig-Value in DER.  NULL with *der_len 0 for a
 * signature of the wrong size, -1 for no memory.
 */

static unsigned char *
ngx_http_realtime_jwt_sig_der(unsigned alg, const unsigned char *sig,
    size_t sig_len, int *der_len)
{
    size_t          half;
    BIGNUM         *r, *s;
    ECDSA_SIG      *es;
    unsigned char  *der;

    half = (alg == NGX_HTTP_REALTIME_JWT_ES256) ? 32
           : (alg == NGX_HTTP_REALTIME_JWT_ES384) ? 48 : 66;

    *der_len = 0;

    if (sig_len != 2 * half) {
        return NULL;
    }

    *der_len = -1;

    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, (int) half, NULL);
    s = BN_bin2bn(sig + half, (int) half, NULL);

    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
    {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return NULL;
    }

    der = NULL;
    *der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);

    if (*der_len <= 0) {
        *der_len = -1;
        return NULL;
    }

    return der;
}
