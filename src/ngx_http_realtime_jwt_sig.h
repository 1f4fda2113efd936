
/*
 * Copyright (C) ngx-realtime developers
 *
 * A JWS signature checked with OpenSSL (ngx_http_realtime_jwt_sig.c):
 * pure C and OpenSSL, unit-tested against libjwt.
 */


#ifndef _NGX_HTTP_REALTIME_JWT_SIG_H_INCLUDED_
#define _NGX_HTTP_REALTIME_JWT_SIG_H_INCLUDED_


#include <stddef.h>

#include <openssl/evp.h>

#include "ngx_http_realtime_jwt_claims.h"


#define NGX_HTTP_REALTIME_JWT_SIG_OK      0
#define NGX_HTTP_REALTIME_JWT_SIG_BAD     1
#define NGX_HTTP_REALTIME_JWT_SIG_ERROR  -1   /* no memory */


/*
 * The signature sig64 (base64url) of input by the key: pkey for RS*, PS*
 * and ES* (the caller made sure the key fits alg: an RSA key, or an EC
 * key on alg's curve), the secret for HS*.  alg is one
 * NGX_HTTP_REALTIME_JWT_* bit.
 */
int ngx_http_realtime_jwt_sig_verify(unsigned alg, EVP_PKEY *pkey,
    const unsigned char *secret, size_t secret_len, const char *input,
    size_t input_len, const char *sig64, size_t sig64_len);


#endif /* _NGX_HTTP_REALTIME_JWT_SIG_H_INCLUDED_ */
