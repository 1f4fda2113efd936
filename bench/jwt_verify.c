
/*
 * Copyright (C) ngx-realtime developers
 *
 * What one token's signature costs: libjwt's jwt_decode() with the key
 * in PEM (how the module verified before: the PEM is parsed again for
 * every token, and the token's JSON decoded again) beside
 * ngx_http_realtime_jwt_sig_verify() with a key made once, for HS256,
 * RS256 (2048 bits) and ES256.  Prints microseconds per verification.
 *
 *   jwt_verify [iterations]
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ngx_http_realtime_jwt_sig.h"


#define SECRET  "bench-secret-0123456789abcdef0123456789"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static char *
pem(EVP_PKEY *key, int private)
{
    BIO   *bio;
    char  *data, *out;
    long   len;

    bio = BIO_new(BIO_s_mem());

    if (private) {
        PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);

    } else {
        PEM_write_bio_PUBKEY(bio, key);
    }

    len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t) len + 1);
    memcpy(out, data, (size_t) len);
    out[len] = '\0';
    BIO_free(bio);

    return out;
}


static char *
sign(jwt_alg_t alg, const char *key)
{
    char   *token;
    jwt_t  *jwt;

    jwt_new(&jwt);
    jwt_add_grant(jwt, "sub", "bench-user-00001");
    jwt_add_grant_int(jwt, "exp", 4102444800);
    jwt_set_alg(jwt, alg, (const unsigned char *) key, (int) strlen(key));
    token = jwt_encode_str(jwt);
    jwt_free(jwt);

    return token;
}


static void
run(const char *name, jwt_alg_t jalg, unsigned alg, EVP_PKEY *key, int n)
{
    int          i, bad;
    char        *token, *priv, *pub;
    jwt_t       *jwt;
    double       t0, libjwt, ours;
    const char  *dot;

    priv = key ? pem(key, 1) : strdup(SECRET);
    pub = key ? pem(key, 0) : strdup(SECRET);
    token = sign(jalg, priv);
    dot = strrchr(token, '.');
    bad = 0;

    t0 = now();

    for (i = 0; i < n; i++) {
        if (jwt_decode(&jwt, token, (const unsigned char *) pub,
                       (int) strlen(pub))
            != 0)
        {
            bad++;
            continue;
        }

        jwt_free(jwt);
        ERR_clear_error();
    }

    libjwt = (now() - t0) / n * 1e6;

    t0 = now();

    for (i = 0; i < n; i++) {
        if (ngx_http_realtime_jwt_sig_verify(alg, key,
                                             (const unsigned char *) SECRET,
                                             strlen(SECRET), token,
                                             (size_t) (dot - token), dot + 1,
                                             strlen(dot + 1))
            != NGX_HTTP_REALTIME_JWT_SIG_OK)
        {
            bad++;
        }
    }

    ours = (now() - t0) / n * 1e6;

    printf("| %s | %.2f | %.2f | %.1fx |%s\n", name, libjwt, ours,
           libjwt / ours, bad ? " FAILED" : "");

    free(token);
    free(priv);
    free(pub);
}


int
main(int argc, char **argv)
{
    int        n;
    EVP_PKEY  *rsa, *ec;

    n = (argc > 1) ? atoi(argv[1]) : 20000;

    rsa = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");

    printf("| algorithm | libjwt jwt_decode(), PEM, us | "
           "ngx_http_realtime_jwt_sig_verify(), us | speed-up |\n"
           "| --- | ---: | ---: | ---: |\n");

    run("HS256", JWT_ALG_HS256, NGX_HTTP_REALTIME_JWT_HS256, NULL, n);
    run("RS256", JWT_ALG_RS256, NGX_HTTP_REALTIME_JWT_RS256, rsa, n / 4);
    run("ES256", JWT_ALG_ES256, NGX_HTTP_REALTIME_JWT_ES256, ec, n / 4);

    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);

    return 0;
}
