
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the signature check (ngx_http_realtime_jwt_sig.c)
 * against libjwt: tokens that libjwt signs (HS*, RS*, ES* on their
 * curves) verify here, and the same tokens tampered with, cut, signed by
 * another key or checked as another algorithm do not; PS* tokens are
 * signed with OpenSSL, which libjwt 1.10 lacks; and libjwt agrees with
 * every verdict it can give, but one: a signature spelt with bits left
 * over in its last character, which libjwt takes for RS* and ES* and
 * this refuses, as it does for HS*.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "ngx_http_realtime_jwt_sig.h"

#include "unit.h"


#define SECRET  "unit-secret-unit-secret-unit-sec"


typedef struct {
    EVP_PKEY       *key;
    char           *priv;      /* PEM, for libjwt to sign */
    char           *pub;       /* PEM, for libjwt to verify */
} test_key_t;


static char *
pem(EVP_PKEY *key, int private)
{
    BIO   *bio;
    char  *data, *out;
    long   len;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL
        || (private ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL,
                                               NULL)
                    : PEM_write_bio_PUBKEY(bio, key))
           != 1)
    {
        fprintf(stderr, "PEM_write failed\n");
        exit(2);
    }

    len = BIO_get_mem_data(bio, &data);
    out = xmalloc((size_t) len + 1);
    memcpy(out, data, (size_t) len);
    out[len] = '\0';
    BIO_free(bio);

    return out;
}


static void
key_make(test_key_t *k, const char *curve)
{
    k->key = curve ? EVP_EC_gen(curve) : EVP_RSA_gen(2048);

    if (k->key == NULL) {
        fprintf(stderr, "key generation failed\n");
        exit(2);
    }

    k->priv = pem(k->key, 1);
    k->pub = pem(k->key, 0);
}


static void
key_free(test_key_t *k)
{
    EVP_PKEY_free(k->key);
    free(k->priv);
    free(k->pub);
}


/* a token signed by libjwt, malloc()ed */

static char *
libjwt_sign(jwt_alg_t alg, const char *key, size_t len)
{
    char   *token;
    jwt_t  *jwt;

    if (jwt_new(&jwt) != 0
        || jwt_add_grant(jwt, "sub", "unit") != 0
        || jwt_add_grant_int(jwt, "exp", 4102444800) != 0
        || jwt_set_alg(jwt, alg, (const unsigned char *) key, (int) len) != 0)
    {
        fprintf(stderr, "libjwt could not sign\n");
        exit(2);
    }

    token = jwt_encode_str(jwt);
    jwt_free(jwt);

    if (token == NULL) {
        fprintf(stderr, "jwt_encode_str failed\n");
        exit(2);
    }

    return token;
}


/* the verdict here: header.payload, then the signature after the dot */

static int
verify(unsigned alg, EVP_PKEY *key, const char *secret, const char *token)
{
    const char  *dot;

    dot = strrchr(token, '.');
    if (dot == NULL) {
        return -2;
    }

    return ngx_http_realtime_jwt_sig_verify(alg, key,
                                            (const unsigned char *) secret,
                                            secret ? strlen(secret) : 0,
                                            token, (size_t) (dot - token),
                                            dot + 1, strlen(dot + 1));
}


/* libjwt's verdict on the same token: 0 valid */

static int
libjwt_verify(const char *token, const char *key, size_t len)
{
    int     rc;
    jwt_t  *jwt;

    rc = jwt_decode(&jwt, token, (const unsigned char *) key, (int) len);

    if (rc == 0) {
        jwt_free(jwt);
    }

    ERR_clear_error();

    return rc == 0 ? 0 : 1;
}


/* a copy of token with the character at i changed */

static char *
tamper(const char *token, size_t i)
{
    char  *t;

    t = xmalloc(strlen(token) + 1);
    strcpy(t, token);
    t[i] = (t[i] == 'A') ? 'B' : 'A';

    return t;
}


static EVP_PKEY  *other_rsa;


/* the signature's last character has bits past its last byte */

static int
sig_spare(const char *token)
{
    return strlen(strrchr(token, '.') + 1) % 4 > 1;
}


/* the same character with one of those bits set */

static char
spare_spelling(char c)
{
    static const char  abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";

    return abc[(strchr(abc, c) - abc) | 1];
}


static void
check_family(const char *name, jwt_alg_t jalg, unsigned alg,
    test_key_t *k, test_key_t *other, unsigned wrong_alg)
{
    int    ok;
    char  *token, *bad, *cut;
    size_t len, payload;

    test_begin(name);

    token = k ? libjwt_sign(jalg, k->priv, strlen(k->priv))
              : libjwt_sign(jalg, SECRET, strlen(SECRET));
    len = strlen(token);
    payload = (size_t) (strchr(token, '.') - token) + 2;

    ok = verify(alg, k ? k->key : NULL, k ? NULL : SECRET, token);
    CHECK(ok == NGX_HTTP_REALTIME_JWT_SIG_OK);
    CHECK(libjwt_verify(token, k ? k->pub : SECRET,
                        strlen(k ? k->pub : SECRET)) == 0);

    /* the payload changed: both refuse */
    bad = tamper(token, payload);
    CHECK(verify(alg, k ? k->key : NULL, k ? NULL : SECRET, bad)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(libjwt_verify(bad, k ? k->pub : SECRET,
                        strlen(k ? k->pub : SECRET)) != 0);
    free(bad);

    /* the signature changed, or cut short: both refuse */
    bad = tamper(token, len - 3);
    CHECK(verify(alg, k ? k->key : NULL, k ? NULL : SECRET, bad)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(libjwt_verify(bad, k ? k->pub : SECRET,
                        strlen(k ? k->pub : SECRET)) != 0);
    free(bad);

    cut = xmalloc(len + 1);
    strcpy(cut, token);
    cut[len - 4] = '\0';
    CHECK(verify(alg, k ? k->key : NULL, k ? NULL : SECRET, cut)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(libjwt_verify(cut, k ? k->pub : SECRET,
                        strlen(k ? k->pub : SECRET)) != 0);
    free(cut);

    /* the same bytes spelt otherwise: bits left over in the last
     * character (a signature of 32 or 64 bytes ends with them) */
    if (sig_spare(token)) {
        bad = xmalloc(len + 1);
        strcpy(bad, token);
        bad[len - 1] = spare_spelling(bad[len - 1]);
        CHECK(verify(alg, k ? k->key : NULL, k ? NULL : SECRET, bad)
              == NGX_HTTP_REALTIME_JWT_SIG_BAD);

        /* libjwt refuses it for HS only: here a token is one string */
        CHECK(k != NULL
              || libjwt_verify(bad, SECRET, strlen(SECRET)) != 0);
        free(bad);
    }

    /* an HS check never runs with an asymmetric key, nor without one */
    if (k == NULL) {
        CHECK(verify(alg, other_rsa, SECRET, token)
              == NGX_HTTP_REALTIME_JWT_SIG_BAD);
        CHECK(verify(alg, NULL, "", token) == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    }

    /* another key, another secret */
    CHECK(verify(alg, other ? other->key : NULL,
                 other ? NULL : "another-secret-another-secret-00", token)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);

    /* the same signature checked as another algorithm of the key */
    if (wrong_alg) {
        CHECK(verify(wrong_alg, k ? k->key : NULL, k ? NULL : SECRET, token)
              == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    }

    free(token);

    test_end();
}


/* RSASSA-PSS, signed with OpenSSL: libjwt 1.10 has no PS* */

static char *
pss_sign(EVP_PKEY *key, const EVP_MD *md, const char *alg, int pad)
{
    char            *token, *p;
    size_t           siglen, i, n;
    EVP_MD_CTX      *ctx;
    EVP_PKEY_CTX    *pctx;
    unsigned char    sig[512];
    char             input[128];
    static const char  abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";

    /* {"alg":"PS256"} and {"sub":"unit"}, base64url */
    snprintf(input, sizeof(input), "%s.eyJzdWIiOiJ1bml0In0",
             strcmp(alg, "PS256") == 0 ? "eyJhbGciOiJQUzI1NiJ9"
             : "eyJhbGciOiJQUzUxMiJ9");

    ctx = EVP_MD_CTX_new();
    siglen = sizeof(sig);

    if (ctx == NULL
        || EVP_DigestSignInit(ctx, &pctx, md, NULL, key) != 1
        || EVP_PKEY_CTX_set_rsa_padding(pctx, pad) <= 0
        || (pad == RSA_PKCS1_PSS_PADDING
            && (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
                <= 0
                || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0))
        || EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) input,
                          strlen(input))
           != 1)
    {
        fprintf(stderr, "PSS signing failed\n");
        exit(2);
    }

    EVP_MD_CTX_free(ctx);

    token = xmalloc(strlen(input) + 2 + siglen * 4 / 3 + 4);
    p = token + sprintf(token, "%s.", input);

    for (i = 0; i + 2 < siglen; i += 3) {
        n = ((size_t) sig[i] << 16) | ((size_t) sig[i + 1] << 8) | sig[i + 2];
        *p++ = abc[(n >> 18) & 63];
        *p++ = abc[(n >> 12) & 63];
        *p++ = abc[(n >> 6) & 63];
        *p++ = abc[n & 63];
    }

    if (siglen - i == 1) {
        n = (size_t) sig[i] << 16;
        *p++ = abc[(n >> 18) & 63];
        *p++ = abc[(n >> 12) & 63];

    } else if (siglen - i == 2) {
        n = ((size_t) sig[i] << 16) | ((size_t) sig[i + 1] << 8);
        *p++ = abc[(n >> 18) & 63];
        *p++ = abc[(n >> 12) & 63];
        *p++ = abc[(n >> 6) & 63];
    }

    *p = '\0';

    return token;
}


static void
check_pss(test_key_t *rsa, test_key_t *other)
{
    char  *token;

    test_begin("PS256 and PS512");

    token = pss_sign(rsa->key, EVP_sha256(), "PS256", RSA_PKCS1_PSS_PADDING);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_PS256, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_OK);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_PS256, other->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_PS384, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    /* PSS is not PKCS #1 v1.5 */
    CHECK(verify(NGX_HTTP_REALTIME_JWT_RS256, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    free(token);

    token = pss_sign(rsa->key, EVP_sha512(), "PS512", RSA_PKCS1_PSS_PADDING);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_PS512, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_OK);
    free(token);

    /* a PKCS #1 v1.5 signature is no PSS one */
    token = pss_sign(rsa->key, EVP_sha256(), "PS256", RSA_PKCS1_PADDING);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_PS256, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(verify(NGX_HTTP_REALTIME_JWT_RS256, rsa->key, NULL, token)
          == NGX_HTTP_REALTIME_JWT_SIG_OK);
    free(token);

    test_end();
}


static void
check_limits(test_key_t *ec)
{
    char  big[4000];

    test_begin("limits");

    /* a signature longer than any key makes, or not base64url */
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(ngx_http_realtime_jwt_sig_verify(NGX_HTTP_REALTIME_JWT_HS256, NULL,
                                           (unsigned char *) SECRET, 32,
                                           "a.b", 3, big, strlen(big))
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    CHECK(ngx_http_realtime_jwt_sig_verify(NGX_HTTP_REALTIME_JWT_HS256, NULL,
                                           (unsigned char *) SECRET, 32,
                                           "a.b", 3, "a+b=", 4)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    /* an ES256 signature is 64 bytes exactly */
    CHECK(ngx_http_realtime_jwt_sig_verify(NGX_HTTP_REALTIME_JWT_ES256,
                                           ec->key, NULL, 0, "a.b", 3,
                                           big, 84)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);
    /* no key for RS* */
    CHECK(ngx_http_realtime_jwt_sig_verify(NGX_HTTP_REALTIME_JWT_RS256, NULL,
                                           NULL, 0, "a.b", 3, "AAAA", 4)
          == NGX_HTTP_REALTIME_JWT_SIG_BAD);

    test_end();
}


int
main(void)
{
    test_key_t  rsa, rsa2, p256, p384, p521, p256b;

    key_make(&rsa, NULL);
    key_make(&rsa2, NULL);
    key_make(&p256, "P-256");
    key_make(&p256b, "P-256");
    key_make(&p384, "P-384");
    key_make(&p521, "P-521");
    other_rsa = rsa2.key;

    check_family("HS256", JWT_ALG_HS256, NGX_HTTP_REALTIME_JWT_HS256, NULL,
                 NULL, NGX_HTTP_REALTIME_JWT_HS384);
    check_family("HS512", JWT_ALG_HS512, NGX_HTTP_REALTIME_JWT_HS512, NULL,
                 NULL, NGX_HTTP_REALTIME_JWT_HS256);
    check_family("RS256", JWT_ALG_RS256, NGX_HTTP_REALTIME_JWT_RS256, &rsa,
                 &rsa2, NGX_HTTP_REALTIME_JWT_RS512);
    check_family("RS384", JWT_ALG_RS384, NGX_HTTP_REALTIME_JWT_RS384, &rsa,
                 &rsa2, NGX_HTTP_REALTIME_JWT_PS384);
    check_family("RS512", JWT_ALG_RS512, NGX_HTTP_REALTIME_JWT_RS512, &rsa,
                 &rsa2, NGX_HTTP_REALTIME_JWT_RS256);
    check_family("ES256", JWT_ALG_ES256, NGX_HTTP_REALTIME_JWT_ES256, &p256,
                 &p256b, 0);
    check_family("ES384", JWT_ALG_ES384, NGX_HTTP_REALTIME_JWT_ES384, &p384,
                 &p256, 0);
    check_family("ES512", JWT_ALG_ES512, NGX_HTTP_REALTIME_JWT_ES512, &p521,
                 &p384, 0);
    check_pss(&rsa, &rsa2);
    check_limits(&p256);

    key_free(&rsa);
    key_free(&rsa2);
    key_free(&p256);
    key_free(&p256b);
    key_free(&p384);
    key_free(&p521);

    return test_summary();
}
