
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the key-less JWT code, which reads tokens before
 * anything is verified.  The input is parsed as a token, from scratch
 * and again with its header kept, which must give the same; a parsed one
 * must be consistent and its claims are checked, each of them turned
 * into variable text.  The input is also decoded as base64url, which
 * must succeed exactly for the alphabet and possible lengths, and split
 * at its first NUL into a room pattern and a room matched against a
 * reference; and it is read as a JWK Set.  Any broken invariant
 * aborts.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_jwt_claims.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_token(const char *in, size_t size)
{
    int                              rc;
    char                            *buf;
    size_t                           n, key_len;
    json_t                          *v;
    const char                      *reason, *again, *key;
    ngx_http_realtime_jwt_token_t    t, t2;
    ngx_http_realtime_jwt_policy_t   policy;
    ngx_http_realtime_jwt_result_t   res;

    reason = NULL;

    /* parsed from scratch, then again: a kept header gives the same */

    ngx_http_realtime_jwt_headers_forget();

    if (ngx_http_realtime_jwt_parse(&t, in, size, &reason) != 0) {
        ensure(reason != NULL && t.header == NULL && t.claims == NULL);
        again = NULL;
        ensure(ngx_http_realtime_jwt_parse(&t2, in, size, &again) != 0);
        ensure(again == reason);
        return;
    }

    ensure(json_is_object(t.header) && json_is_object(t.claims));

    ensure(ngx_http_realtime_jwt_parse(&t2, in, size, &again) == 0);
    ensure(t2.alg == t.alg && t2.kid_len == t.kid_len);
    ensure((t2.kid == NULL) == (t.kid == NULL));
    ensure(t.kid == NULL || memcmp(t2.kid, t.kid, t.kid_len) == 0);
    ensure(json_equal(t2.claims, t.claims));
    ensure(t2.header == NULL || json_equal(t2.header, t.header));
    ngx_http_realtime_jwt_token_free(&t2);
    ensure(t.alg != 0 && (t.alg & (t.alg - 1)) == 0);
    ensure(t.signing_input == in);
    ensure(t.signature == in + t.signing_input_len + 1);
    ensure(t.signature + t.signature_len == in + size);
    ensure(t.signature_len > 0);
    ensure(memchr(t.signature, '.', t.signature_len) == NULL);
    ensure(t.kid == NULL || json_is_string(json_object_get(t.header, "kid")));

    memset(&policy, 0, sizeof(policy));
    policy.issuer = "iss";
    policy.issuer_len = 3;
    policy.audience = "aud";
    policy.audience_len = 3;
    policy.user_claim = "sub";
    policy.now = 1000;
    policy.leeway = 10;

    rc = ngx_http_realtime_jwt_check(t.claims, &policy, &res);

    ensure(rc == NGX_HTTP_REALTIME_JWT_OK
           || rc == NGX_HTTP_REALTIME_JWT_INVALID
           || rc == NGX_HTTP_REALTIME_JWT_EXPIRED);
    ensure((rc == NGX_HTTP_REALTIME_JWT_OK) == (res.reason == NULL));

    if (rc == NGX_HTTP_REALTIME_JWT_OK) {
        ensure(res.user != NULL && res.user_len > 0);
        ensure(!res.has_exp || res.exp + 10 > 1000);
    }

    json_object_keylen_foreach(t.claims, key, key_len, v) {
        ensure(ngx_http_realtime_jwt_claim(t.claims, key, key_len) != NULL);

        n = ngx_http_realtime_jwt_claim_text(v, NULL, 0);
        ensure(n != (size_t) -1);

        buf = malloc(n + 1);
        ensure(buf != NULL);
        ensure(ngx_http_realtime_jwt_claim_text(v, buf, n + 1) == n);
        free(buf);
    }

    ngx_http_realtime_jwt_token_free(&t);
}


static void
fuzz_base64url(const char *in, size_t size)
{
    static const char  abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";
    int                 valid;
    size_t              i, n;
    unsigned char      *out;

    valid = (size % 4 != 1);

    for (i = 0; i < size; i++) {
        if (memchr(abc, in[i], 64) == NULL) {
            valid = 0;
        }
    }

    /* no bits left over past the last byte */
    if (valid && size % 4 > 1
        && (((const char *) memchr(abc, in[size - 1], 64) - abc)
            & (size % 4 == 2 ? 0x0f : 0x03)))
    {
        valid = 0;
    }

    out = malloc(size * 3 / 4 + 1);
    ensure(out != NULL);

    if (ngx_http_realtime_jwt_base64url_decode(out, &n, in, size) == 0) {
        ensure(valid);
        ensure(n == size * 3 / 4);

    } else {
        ensure(!valid);
    }

    free(out);
}


static void
fuzz_room(const char *in, size_t size)
{
    int          expect;
    size_t       plen, rlen;
    const char  *nul, *room;

    nul = memchr(in, '\0', size);
    if (nul == NULL) {
        return;
    }

    plen = nul - in;
    room = nul + 1;
    rlen = size - plen - 1;

    if (plen && in[plen - 1] == '*') {
        expect = rlen >= plen - 1 && memcmp(in, room, plen - 1) == 0;

    } else {
        expect = plen == rlen && memcmp(in, room, rlen) == 0;
    }

    ensure(ngx_http_realtime_jwt_room_match(in, plen, room, rlen) == expect);
}


/*
 * The input as a JWK Set: every key read must be consistent, and each
 * member it found base64url must decode to the size it said.
 */

static void
fuzz_jwks(const char *in, size_t size)
{
    int                       i;
    size_t                    n, len;
    json_t                   *root, *keys, *jwk;
    const char               *reason;
    unsigned char            *buf;
    ngx_http_realtime_jwk_t   k;
    char                      err[160];

    if (ngx_http_realtime_jwks_parse(in, size, &root, &keys, err,
                                     sizeof(err))
        != 0)
    {
        ensure(root == NULL && err[0] == ' ');
        return;
    }

    ensure(json_is_array(keys));

    json_array_foreach(keys, n, jwk) {
        reason = NULL;

        if (ngx_http_realtime_jwk_read(jwk, &k, &reason) != 0) {
            ensure(reason != NULL);
            continue;
        }

        if (k.type == NGX_HTTP_REALTIME_JWK_SKIP) {
            continue;
        }

        ensure(k.kid == NULL || k.kid_len == strlen(k.kid)
               || memchr(k.kid, '\0', k.kid_len) != NULL);
        ensure(k.type != NGX_HTTP_REALTIME_JWK_EC
               || (k.curve && k.decoded_len[0] == k.curve->size
                   && k.decoded_len[1] == k.curve->size));

        for (i = 0; i < (k.type == NGX_HTTP_REALTIME_JWK_OCT ? 1 : 2); i++) {
            ensure(k.member[i] != NULL && k.member_len[i] > 0);

            buf = malloc(k.decoded_len[i] + 1);
            ensure(buf != NULL);
            ensure(ngx_http_realtime_jwt_base64url_decode(buf, &len,
                                                          k.member[i],
                                                          k.member_len[i])
                   == 0);
            ensure(len == k.decoded_len[i]);
            free(buf);
        }
    }

    json_decref(root);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *copy;

    /* an exact copy, so that ASan sees any read past the end */

    copy = malloc(size ? size : 1);
    ensure(copy != NULL);
    memcpy(copy, data, size);

    fuzz_token(copy, size);
    fuzz_base64url(copy, size);
    fuzz_room(copy, size);
    fuzz_jwks(copy, size);

    free(copy);

    return 0;
}
