
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the key-less half of JWT checking: algorithm names,
 * base64url, splitting and decoding a compact JWS, the registered
 * claims with leeway, room patterns and the text of claims.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_jwt_claims.h"

#include "unit.h"


/* base64url without padding, the inverse of what is tested */

static char *
b64url(const char *in, size_t len)
{
    static const char  abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";
    char               *out, *p;
    size_t              i;
    unsigned long       v;

    out = xmalloc(len * 4 / 3 + 4);
    p = out;

    for (i = 0; i + 2 < len; i += 3) {
        v = ((unsigned long) (unsigned char) in[i] << 16)
            | ((unsigned long) (unsigned char) in[i + 1] << 8)
            | (unsigned char) in[i + 2];
        *p++ = abc[(v >> 18) & 63];
        *p++ = abc[(v >> 12) & 63];
        *p++ = abc[(v >> 6) & 63];
        *p++ = abc[v & 63];
    }

    if (len - i == 1) {
        v = (unsigned long) (unsigned char) in[i] << 16;
        *p++ = abc[(v >> 18) & 63];
        *p++ = abc[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = ((unsigned long) (unsigned char) in[i] << 16)
            | ((unsigned long) (unsigned char) in[i + 1] << 8);
        *p++ = abc[(v >> 18) & 63];
        *p++ = abc[(v >> 12) & 63];
        *p++ = abc[(v >> 6) & 63];
    }

    *p = '\0';

    return out;
}


/* "b64(header).b64(payload).sig", malloc()ed */

static char *
token(const char *header, const char *payload, const char *sig)
{
    char  *h, *p, *t;

    h = b64url(header, strlen(header));
    p = b64url(payload, strlen(payload));

    t = xmalloc(strlen(h) + strlen(p) + strlen(sig) + 3);
    sprintf(t, "%s.%s.%s", h, p, sig);

    free(h);
    free(p);

    return t;
}


/* parses a copy of exactly strlen(s) bytes, so ASan sees overreads */

static int
parse(ngx_http_realtime_jwt_token_t *t, const char *s, const char **reason)
{
    int     rc;
    char   *copy;
    size_t  len;

    len = strlen(s);
    copy = xmalloc(len);
    memcpy(copy, s, len);

    *reason = NULL;
    rc = ngx_http_realtime_jwt_parse(t, copy, len, reason);

    if (rc == 0) {
        /* the token's pointers are into the copy: keep it alive */
        CHECK(t->signing_input == copy);
        CHECK(t->signature + t->signature_len == copy + len);
    }

    free(copy);

    if (rc == 0) {
        t->signing_input = NULL;
        t->signature = NULL;
    }

    return rc;
}


static int
parse_fails(const char *header, const char *payload, const char *sig,
    const char *reason)
{
    int                             rc, ok;
    char                           *s;
    const char                     *why;
    ngx_http_realtime_jwt_token_t   t;

    s = token(header, payload, sig);
    rc = parse(&t, s, &why);
    free(s);

    ok = (rc == -1 && t.header == NULL && t.claims == NULL
          && why != NULL && strcmp(why, reason) == 0);

    if (!ok) {
        printf("  parse %s / %s: rc %d, reason \"%s\"\n", header, payload,
               rc, why ? why : "(null)");
    }

    if (rc == 0) {
        ngx_http_realtime_jwt_token_free(&t);
    }

    return ok;
}


static void
test_algs(void)
{
    static const char  *names[] = {
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
        "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"
    };

    unsigned  i, alg, all;

    test_begin("algs");

    all = 0;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        alg = ngx_http_realtime_jwt_alg(names[i], 5);
        CHECK(alg != 0);
        CHECK((alg & (alg - 1)) == 0);
        CHECK((all & alg) == 0);
        CHECK(strcmp(ngx_http_realtime_jwt_alg_name(alg), names[i]) == 0);
        all |= alg;
    }

    CHECK(all == (NGX_HTTP_REALTIME_JWT_HS | NGX_HTTP_REALTIME_JWT_RS
                  | NGX_HTTP_REALTIME_JWT_ES | NGX_HTTP_REALTIME_JWT_PS));

    CHECK(ngx_http_realtime_jwt_alg("none", 4) == 0);
    CHECK(ngx_http_realtime_jwt_alg("hs256", 5) == 0);
    CHECK(ngx_http_realtime_jwt_alg("HS256 ", 6) == 0);
    CHECK(ngx_http_realtime_jwt_alg("HS25", 4) == 0);
    CHECK(ngx_http_realtime_jwt_alg("EdDSA", 5) == 0);
    CHECK(ngx_http_realtime_jwt_alg("", 0) == 0);
    CHECK(ngx_http_realtime_jwt_alg(NULL, 0) == 0);

    test_end();
}


static int
decodes_to(const char *in, const char *out, size_t out_len)
{
    unsigned char  buf[64];
    size_t         n;

    n = 999;

    if (ngx_http_realtime_jwt_base64url_decode(buf, &n, in, strlen(in))
        != 0)
    {
        return 0;
    }

    return n == out_len && memcmp(buf, out, n) == 0;
}


static int
decode_fails(const char *in, size_t len)
{
    unsigned char  buf[64];
    size_t         n;

    return ngx_http_realtime_jwt_base64url_decode(buf, &n, in, len) == -1;
}


static void
test_base64url(void)
{
    char    bytes[256], *enc;
    size_t  i, n;

    test_begin("base64url");

    /* RFC 4648 10, unpadded */
    CHECK(decodes_to("", "", 0));
    CHECK(decodes_to("Zg", "f", 1));
    CHECK(decodes_to("Zm8", "fo", 2));
    CHECK(decodes_to("Zm9v", "foo", 3));
    CHECK(decodes_to("Zm9vYg", "foob", 4));
    CHECK(decodes_to("Zm9vYmE", "fooba", 5));
    CHECK(decodes_to("Zm9vYmFy", "foobar", 6));

    /* the url-safe characters */
    CHECK(decodes_to("-_8", "\xfb\xff", 2));
    CHECK(decodes_to("____", "\xff\xff\xff", 3));

    CHECK(decode_fails("Zg==", 4));
    CHECK(decode_fails("Zm9v+g", 6));
    CHECK(decode_fails("Zm9v/g", 6));
    CHECK(decode_fails("Zm9vY", 5));
    CHECK(decode_fails("Zm 9", 4));
    CHECK(decode_fails("Zm\0v", 4));
    CHECK(decode_fails("Zm9v\n", 5));
    CHECK(decode_fails("Zm9\x80", 4));

    /* bits left over: "Zg" and "Zm8" are the only spellings */
    CHECK(decode_fails("Zh", 2));
    CHECK(decode_fails("Zv", 2));
    CHECK(decode_fails("Zm9", 3));
    CHECK(decode_fails("Zm9vYmF", 7));

    /* every byte value, every length */

    for (i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (char) (255 - i);
    }

    for (i = 0; i <= 40; i++) {
        enc = b64url(bytes + 200, i);
        CHECK(decodes_to(enc, bytes + 200, i));
        free(enc);
    }

    enc = b64url(bytes, sizeof(bytes));
    {
        unsigned char  out[256];

        CHECK(ngx_http_realtime_jwt_base64url_decode(out, &n, enc,
                                                     strlen(enc))
              == 0);
        CHECK(n == sizeof(bytes) && memcmp(out, bytes, n) == 0);
    }
    free(enc);

    test_end();
}


static void
test_parse_ok(void)
{
    char                           *s, *h;
    const char                     *reason;
    ngx_http_realtime_jwt_token_t   t;

    test_begin("parse ok");

    /* t.header is only made for a header that is not kept */
    ngx_http_realtime_jwt_headers_forget();

    s = token("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k-1\"}",
              "{\"sub\":\"alice\",\"exp\":5}", "c2ln");

    CHECK(parse(&t, s, &reason) == 0);
    CHECK(t.alg == NGX_HTTP_REALTIME_JWT_RS256);
    CHECK(t.kid != NULL && t.kid_len == 3 && memcmp(t.kid, "k-1", 3) == 0);
    CHECK(json_is_object(t.header) && json_is_object(t.claims));
    CHECK(json_integer_value(json_object_get(t.claims, "exp")) == 5);
    CHECK(t.signature_len == 4);
    CHECK(t.signing_input_len == (size_t) (strrchr(s, '.') - s));
    ngx_http_realtime_jwt_token_free(&t);
    CHECK(t.header == NULL && t.claims == NULL);
    free(s);

    /* no kid, lowercase typ, every alg */
    s = token("{\"alg\":\"PS512\",\"typ\":\"jwt\"}", "{}", "x");
    CHECK(parse(&t, s, &reason) == 0);
    CHECK(t.alg == NGX_HTTP_REALTIME_JWT_PS512 && t.kid == NULL);
    ngx_http_realtime_jwt_token_free(&t);
    free(s);

    /* NUL in a string is refused by jansson, which is as well */
    s = token("{\"alg\":\"HS256\",\"kid\":\"a\\u0000b\"}", "{}", "x");
    CHECK(parse(&t, s, &reason) == -1);
    free(s);

    s = token("{\"alg\":\"HS256\",\"kid\":\"\"}", "{\"sub\":\"x\"}", "x");
    CHECK(parse(&t, s, &reason) == 0);
    CHECK(t.kid != NULL && t.kid_len == 0);
    ngx_http_realtime_jwt_token_free(&t);
    free(s);

    /* exactly the longest token */
    h = xmalloc(NGX_HTTP_REALTIME_JWT_MAX_LEN + 2);
    s = token("{\"alg\":\"HS256\"}", "{}", "");
    memset(h, 'A', NGX_HTTP_REALTIME_JWT_MAX_LEN + 1);
    memcpy(h, s, strlen(s));
    h[NGX_HTTP_REALTIME_JWT_MAX_LEN] = '\0';
    CHECK(parse(&t, h, &reason) == 0);
    ngx_http_realtime_jwt_token_free(&t);

    h[NGX_HTTP_REALTIME_JWT_MAX_LEN] = 'A';
    h[NGX_HTTP_REALTIME_JWT_MAX_LEN + 1] = '\0';
    CHECK(parse(&t, h, &reason) == -1);
    CHECK(reason && strcmp(reason, "token is too long") == 0);
    free(h);
    free(s);

    test_end();
}


static void
test_parse_errors(void)
{
    const char                     *reason;
    ngx_http_realtime_jwt_token_t   t;

    const char  *hs = "{\"alg\":\"HS256\"}";

    test_begin("parse errors");

    CHECK(parse(&t, "", &reason) == -1);
    CHECK(parse(&t, "abc", &reason) == -1
          && strcmp(reason, "token is not a compact JWS") == 0);
    CHECK(parse(&t, "a.b", &reason) == -1
          && strcmp(reason, "token is not a compact JWS") == 0);
    CHECK(parse(&t, "a.b.c.d", &reason) == -1
          && strcmp(reason, "token is not a compact JWS") == 0);
    CHECK(parse(&t, "a.b.c.", &reason) == -1);
    CHECK(parse(&t, "..c", &reason) == -1
          && strcmp(reason, "token has an empty header or payload") == 0);
    CHECK(parse(&t, "eyJhbGciOiJIUzI1NiJ9..c", &reason) == -1
          && strcmp(reason, "token has an empty header or payload") == 0);
    CHECK(parse(&t, "e=yJ.e30.c", &reason) == -1
          && strcmp(reason, "token header is not a base64url JSON object")
             == 0);

    CHECK(parse_fails(hs, "{}", "", "token has no signature"));
    CHECK(parse_fails("not json", "{}", "s",
                      "token header is not a base64url JSON object"));
    CHECK(parse_fails("[\"alg\"]", "{}", "s",
                      "token header is not a base64url JSON object"));
    CHECK(parse_fails("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}", "s",
                      "token header is not a base64url JSON object"));
    CHECK(parse_fails("{}", "{}", "s", "token header has no alg"));
    CHECK(parse_fails("{\"alg\":256}", "{}", "s", "token header has no alg"));
    CHECK(parse_fails("{\"alg\":\"none\"}", "{}", "s",
                      "unsigned tokens are not accepted"));
    CHECK(parse_fails("{\"alg\":\"NoNe\"}", "{}", "s",
                      "unsigned tokens are not accepted"));
    CHECK(parse_fails("{\"alg\":\"HS1\"}", "{}", "s",
                      "token alg is not supported"));
    CHECK(parse_fails("{\"alg\":\"EdDSA\"}", "{}", "s",
                      "token alg is not supported"));
    CHECK(parse_fails("{\"alg\":\"HS256\",\"kid\":7}", "{}", "s",
                      "token kid is not a string"));
    CHECK(parse_fails("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}",
                      "{}", "s", "token has critical header extensions"));
    CHECK(parse_fails("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", "{}", "s",
                      "token typ is not JWT"));
    CHECK(parse_fails("{\"alg\":\"HS256\",\"typ\":1}", "{}", "s",
                      "token typ is not JWT"));
    CHECK(parse_fails(hs, "{\"sub\":", "s",
                      "token payload is not a base64url JSON object"));
    CHECK(parse_fails(hs, "\"alice\"", "s",
                      "token payload is not a base64url JSON object"));
    CHECK(parse_fails(hs, "{\"sub\":\"a\",\"sub\":\"b\"}", "s",
                      "token payload is not a base64url JSON object"));
    CHECK(parse_fails(hs, "{} trailing", "s",
                      "token payload is not a base64url JSON object"));

    test_end();
}


static json_t *
claims(const char *text)
{
    json_t  *json;

    json = json_loads(text, 0, NULL);

    if (json == NULL) {
        printf("bad test JSON: %s\n", text);
        exit(2);
    }

    return json;
}


static ngx_http_realtime_jwt_policy_t  policy;


static int
check(const char *text, int expect, const char *reason)
{
    int                              rc, ok;
    json_t                          *json;
    ngx_http_realtime_jwt_result_t   res;

    json = claims(text);
    rc = ngx_http_realtime_jwt_check(json, &policy, &res);

    ok = (rc == expect
          && (reason == NULL
              ? res.reason == NULL
              : (res.reason != NULL && strcmp(res.reason, reason) == 0)));

    if (!ok) {
        printf("  check %s: rc %d, reason \"%s\"\n", text, rc,
               res.reason ? res.reason : "(null)");
    }

    json_decref(json);

    return ok;
}


#define OK           NGX_HTTP_REALTIME_JWT_OK
#define INVALID      NGX_HTTP_REALTIME_JWT_INVALID
#define EXPIRED      NGX_HTTP_REALTIME_JWT_EXPIRED


static void
policy_reset(void)
{
    memset(&policy, 0, sizeof(policy));
    policy.user_claim = "sub";
    policy.now = 1000;
}


static void
test_times(void)
{
    test_begin("exp nbf iat");

    policy_reset();

    CHECK(check("{\"sub\":\"a\"}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"exp\":1001}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"exp\":1000}", EXPIRED, "token expired"));
    CHECK(check("{\"sub\":\"a\",\"exp\":999}", EXPIRED, "token expired"));
    CHECK(check("{\"sub\":\"a\",\"exp\":1000.5}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"exp\":-5}", EXPIRED, "token expired"));
    CHECK(check("{\"sub\":\"a\",\"exp\":\"2000\"}", INVALID,
                "token exp, nbf or iat is not a number"));
    CHECK(check("{\"sub\":\"a\",\"exp\":null}", INVALID,
                "token exp, nbf or iat is not a number"));
    CHECK(check("{\"sub\":\"a\",\"nbf\":1000}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"nbf\":1001}", INVALID,
                "token is not valid yet"));
    CHECK(check("{\"sub\":\"a\",\"nbf\":true}", INVALID,
                "token exp, nbf or iat is not a number"));
    CHECK(check("{\"sub\":\"a\",\"iat\":1000}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"iat\":1}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"iat\":1001}", INVALID,
                "token is issued in the future"));
    CHECK(check("{\"sub\":\"a\",\"iat\":[1]}", INVALID,
                "token exp, nbf or iat is not a number"));

    /* the leeway moves every bound by as much */

    policy.leeway = 30;

    CHECK(check("{\"sub\":\"a\",\"exp\":971}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"exp\":970}", EXPIRED, "token expired"));
    CHECK(check("{\"sub\":\"a\",\"nbf\":1030}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"nbf\":1031}", INVALID,
                "token is not valid yet"));
    CHECK(check("{\"sub\":\"a\",\"iat\":1030}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"iat\":1031}", INVALID,
                "token is issued in the future"));

    /* expiry is reported before the other claims */
    CHECK(check("{\"exp\":1}", EXPIRED, "token expired"));

    test_end();
}


static void
test_exp_result(void)
{
    json_t                          *json;
    ngx_http_realtime_jwt_result_t   res;

    test_begin("exp result");

    policy_reset();

    json = claims("{\"sub\":\"alice\",\"exp\":1234.9}");
    CHECK(ngx_http_realtime_jwt_check(json, &policy, &res) == OK);
    CHECK(res.has_exp && res.exp == 1234);
    CHECK(res.user_len == 5 && memcmp(res.user, "alice", 5) == 0);
    json_decref(json);

    json = claims("{\"sub\":\"alice\"}");
    CHECK(ngx_http_realtime_jwt_check(json, &policy, &res) == OK);
    CHECK(!res.has_exp);
    json_decref(json);

    json = claims("{\"sub\":\"alice\",\"exp\":1e300}");
    CHECK(ngx_http_realtime_jwt_check(json, &policy, &res) == OK);
    CHECK(res.has_exp && res.exp == 253402300799LL);
    json_decref(json);

    test_end();
}


static void
test_iss_aud(void)
{
    test_begin("iss aud");

    policy_reset();

    /* not configured: not checked */
    CHECK(check("{\"sub\":\"a\",\"iss\":5,\"aud\":{}}", OK, NULL));

    policy.issuer = "https://auth.example.com";
    policy.issuer_len = strlen(policy.issuer);

    CHECK(check("{\"sub\":\"a\",\"iss\":\"https://auth.example.com\"}", OK,
                NULL));
    CHECK(check("{\"sub\":\"a\",\"iss\":\"https://auth.example.com/\"}",
                INVALID, "token issuer is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"iss\":\"https://auth.example.co\"}",
                INVALID, "token issuer is not accepted"));
    CHECK(check("{\"sub\":\"a\"}", INVALID, "token issuer is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"iss\":[\"https://auth.example.com\"]}",
                INVALID, "token issuer is not accepted"));

    policy_reset();
    policy.audience = "realtime";
    policy.audience_len = 8;

    CHECK(check("{\"sub\":\"a\",\"aud\":\"realtime\"}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"aud\":[\"api\",\"realtime\"]}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"aud\":[\"api\"]}", INVALID,
                "token audience is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"aud\":[]}", INVALID,
                "token audience is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"aud\":\"Realtime\"}", INVALID,
                "token audience is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"aud\":\"realtime2\"}", INVALID,
                "token audience is not accepted"));
    CHECK(check("{\"sub\":\"a\",\"aud\":[1,\"realtime\"]}", OK, NULL));
    CHECK(check("{\"sub\":\"a\",\"aud\":{\"realtime\":1}}", INVALID,
                "token audience is not accepted"));
    CHECK(check("{\"sub\":\"a\"}", INVALID,
                "token audience is not accepted"));

    test_end();
}


static void
test_user_claim(void)
{
    test_begin("user claim");

    policy_reset();

    CHECK(check("{}", INVALID, "token has no user claim"));
    CHECK(check("{\"sub\":\"\"}", INVALID, "token has no user claim"));
    CHECK(check("{\"sub\":42}", INVALID, "token has no user claim"));
    CHECK(check("{\"sub\":null}", INVALID, "token has no user claim"));
    CHECK(check("{\"sub\":\"\\u00e9l\\u00e8ve\"}", OK, NULL));

    policy.user_claim = "uid";

    CHECK(check("{\"sub\":\"a\"}", INVALID, "token has no user claim"));
    CHECK(check("{\"uid\":\"u-1\"}", OK, NULL));

    test_end();
}


static int
match(const char *pattern, const char *room)
{
    return ngx_http_realtime_jwt_room_match(pattern, strlen(pattern), room,
                                            strlen(room));
}


static void
test_rooms(void)
{
    test_begin("room patterns");

    CHECK(match("battle:*", "battle:42"));
    CHECK(match("battle:*", "battle:"));
    CHECK(match("battle:*", "battle:42:spectators"));
    CHECK(!match("battle:*", "battle"));
    CHECK(!match("battle:*", "Battle:42"));
    CHECK(!match("battle:*", "lobby"));
    CHECK(match("*", "anything"));
    CHECK(match("*", "x"));
    CHECK(match("lobby", "lobby"));
    CHECK(!match("lobby", "lobby2"));
    CHECK(!match("lobby", "lobb"));
    CHECK(!match("lobby", "Lobby"));
    CHECK(!match("", "lobby"));

    /* a star elsewhere is a character like any other */
    CHECK(!match("b*e", "battle"));
    CHECK(match("b*e", "b*e"));

    test_end();
}


static int
text_is(const char *json, const char *expect)
{
    int      ok;
    char     buf[128];
    size_t   n;
    json_t  *v;

    v = json_loads(json, JSON_DECODE_ANY, NULL);
    if (v == NULL) {
        return 0;
    }

    n = ngx_http_realtime_jwt_claim_text(v, NULL, 0);

    ok = (n == strlen(expect));

    if (ok) {
        memset(buf, '#', sizeof(buf));
        ok = (ngx_http_realtime_jwt_claim_text(v, buf, n) == n
              && memcmp(buf, expect, n) == 0 && buf[n] == '#');
    }

    if (!ok) {
        printf("  text of %s: %zu\n", json, n);
    }

    json_decref(v);

    return ok;
}


static void
test_claim_text(void)
{
    char     buf[4];
    json_t  *v;

    test_begin("claim text");

    CHECK(text_is("\"u-1\"", "u-1"));
    CHECK(text_is("\"\"", ""));
    CHECK(text_is("\"a\\\"b\"", "a\"b"));
    CHECK(text_is("42", "42"));
    CHECK(text_is("-7", "-7"));
    CHECK(text_is("1.5", "1.5"));
    CHECK(text_is("true", "true"));
    CHECK(text_is("false", "false"));
    CHECK(text_is("null", "null"));
    CHECK(text_is("[\"a\", 1, {\"b\": null}]", "[\"a\",1,{\"b\":null}]"));
    CHECK(text_is("{\"x\": [1, 2]}", "{\"x\":[1,2]}"));

    /* too small a buffer is left alone */
    v = json_string("abcdef");
    memset(buf, '#', sizeof(buf));
    CHECK(ngx_http_realtime_jwt_claim_text(v, buf, sizeof(buf)) == 6);
    CHECK(buf[0] == '#');
    json_decref(v);

    test_end();
}


static void
test_claim_lookup(void)
{
    json_t  *c;

    test_begin("claim lookup");

    c = claims("{\"userId\":\"a\",\"uid\":\"b\",\"UID\":\"c\"}");

    CHECK(json_string_value(ngx_http_realtime_jwt_claim(c, "uid", 3))[0]
          == 'b');
    CHECK(json_string_value(ngx_http_realtime_jwt_claim(c, "UID", 3))[0]
          == 'c');

    /* nginx lowercases variable names: $realtime_jwt_claim_userid */
    CHECK(json_string_value(ngx_http_realtime_jwt_claim(c, "userid", 6))[0]
          == 'a');
    CHECK(ngx_http_realtime_jwt_claim(c, "user", 4) == NULL);
    CHECK(ngx_http_realtime_jwt_claim(c, "useridx", 7) == NULL);

    json_decref(c);

    test_end();
}


/* one JWK read from JSON text: its result, and k and reason; what k
 * borrows goes with the text, but for the skipped kty, kept here */

static char  jwk_kty[16];


static int
jwk(const char *text, ngx_http_realtime_jwk_t *k, const char **reason)
{
    int      rc;
    json_t  *j;

    j = json_loads(text, 0, NULL);
    if (j == NULL) {
        return -2;
    }

    *reason = NULL;
    rc = ngx_http_realtime_jwk_read(j, k, reason);

    jwk_kty[0] = '\0';

    if (rc == 0 && k->kty) {
        snprintf(jwk_kty, sizeof(jwk_kty), "%s", k->kty);
    }

    /* what k borrows is checked before j goes */
    if (rc == 0 && k->kid) {
        rc = (k->kid_len == strlen(json_string_value(
                                       json_object_get(j, "kid"))))
             ? 0 : -3;
    }

    json_decref(j);

    return rc;
}


static void
test_jwk(void)
{
    char                     p256[200];
    const char              *reason;
    ngx_http_realtime_jwk_t  k;

    test_begin("jwk");

    CHECK(jwk("{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"AQAB\","
              "\"e\":\"AQAB\"}", &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_RSA && k.algs == 0);
    CHECK(k.decoded_len[0] == 3 && k.decoded_len[1] == 3);

    CHECK(jwk("{\"kty\":\"oct\",\"k\":\"AAAAAA\",\"alg\":\"HS384\"}",
              &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_OCT && k.kid == NULL);
    CHECK(k.algs == NGX_HTTP_REALTIME_JWT_HS384 && k.decoded_len[0] == 4);

    /* a coordinate of P-256 is 32 bytes: 43 base64url characters */
    snprintf(p256, sizeof(p256), "{\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%.43s\",\"y\":\"%.42sA\"}",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    CHECK(jwk(p256, &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_EC && k.curve->size == 32);
    CHECK(k.curve->alg == NGX_HTTP_REALTIME_JWT_ES256);
    CHECK(strcmp(k.curve->group, "prime256v1") == 0);

    CHECK(jwk("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\","
              "\"y\":\"AAAA\"}", &k, &reason) == -1);
    CHECK(reason && strstr(reason, "wrong size"));

    /* skipped: another use, an encryption alg, another type */
    CHECK(jwk("{\"kty\":\"RSA\",\"use\":\"enc\"}", &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_SKIP && k.kty == NULL);
    CHECK(jwk("{\"kty\":\"RSA\",\"alg\":\"RSA-OAEP\",\"n\":\"x\"}",
              &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_SKIP);
    CHECK(jwk("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}",
              &k, &reason) == 0);
    CHECK(k.type == NGX_HTTP_REALTIME_JWK_SKIP
          && strcmp(jwk_kty, "OKP") == 0);

    /* refused, with the reason */
    CHECK(jwk("[1]", &k, &reason) == -1 && strstr(reason, "not an object"));
    CHECK(jwk("{\"n\":\"AQAB\"}", &k, &reason) == -1
          && strstr(reason, "kty"));
    CHECK(jwk("{\"kty\":\"RSA\",\"kid\":7,\"n\":\"AQAB\",\"e\":\"AQAB\"}",
              &k, &reason) == -1 && strstr(reason, "kid"));
    CHECK(jwk("{\"kty\":\"RSA\",\"n\":\"AQAB\"}", &k, &reason) == -1
          && strstr(reason, "lacks"));
    CHECK(jwk("{\"kty\":\"RSA\",\"n\":\"AQ+B\",\"e\":\"AQAB\"}", &k,
              &reason) == -1 && strstr(reason, "base64url"));
    CHECK(jwk("{\"kty\":\"RSA\",\"n\":\"AQABA\",\"e\":\"AQAB\"}", &k,
              &reason) == -1 && strstr(reason, "base64url"));
    CHECK(jwk("{\"kty\":\"oct\",\"k\":\"AAAA\",\"alg\":\"RS256\"}",
              &k, &reason) == -1 && strstr(reason, "does not fit"));
    CHECK(jwk("{\"kty\":\"EC\",\"crv\":\"P-192\",\"x\":\"AA\","
              "\"y\":\"AA\"}", &k, &reason) == -1
          && strstr(reason, "crv"));

    CHECK(ngx_http_realtime_jwt_curve("P-521", NULL)->size == 66);
    CHECK(ngx_http_realtime_jwt_curve(NULL, "secp384r1")->alg
          == NGX_HTTP_REALTIME_JWT_ES384);
    CHECK(ngx_http_realtime_jwt_curve("P-192", NULL) == NULL);
    CHECK(ngx_http_realtime_jwt_curve(NULL, "P-256") == NULL);

    test_end();
}


static void
test_jwks(void)
{
    char     err[160];
    json_t  *root, *keys;

    test_begin("jwks");

    CHECK(ngx_http_realtime_jwks_parse("{\"keys\":[{}]}", 13, &root, &keys,
                                       err, sizeof(err)) == 0);
    CHECK(json_array_size(keys) == 1);
    json_decref(root);

    CHECK(ngx_http_realtime_jwks_parse("{\"keys\":{}}", 11, &root, &keys,
                                       err, sizeof(err)) == -1);
    CHECK(root == NULL && strcmp(err, " has no \"keys\" array") == 0);

    CHECK(ngx_http_realtime_jwks_parse("{\"keys\":[", 9, &root, &keys, err,
                                       sizeof(err)) == -1);
    CHECK(root == NULL && strncmp(err, " is not JSON: line 1", 20) == 0);

    /* duplicate members could mean different keys to different readers */
    CHECK(ngx_http_realtime_jwks_parse("{\"keys\":[],\"keys\":[]}", 21,
                                       &root, &keys, err, sizeof(err))
          == -1);

    test_end();
}


/* realtime_jwt_require: present, whatever the value; checked first */

static void
test_required(void)
{
    char                            *names[] = { "exp", "tenant" };
    json_t                          *json;
    ngx_http_realtime_jwt_result_t   res;

    test_begin("required claims");

    policy_reset();
    policy.required = names;
    policy.nrequired = 2;

    CHECK(check("{\"sub\":\"a\",\"exp\":2000,\"tenant\":\"t\"}", OK,
                NULL));
    CHECK(check("{\"sub\":\"a\",\"exp\":2000,\"tenant\":null}", OK,
                NULL));
    CHECK(check("{\"sub\":\"a\",\"tenant\":\"t\"}", INVALID,
                "token lacks a required claim"));
    CHECK(check("{\"sub\":\"a\",\"exp\":2000}", INVALID,
                "token lacks a required claim"));
    /* before the times: a missing claim, not an expiry */
    CHECK(check("{\"sub\":\"a\",\"exp\":10}", INVALID,
                "token lacks a required claim"));

    json = claims("{\"sub\":\"a\",\"exp\":2000}");
    CHECK(ngx_http_realtime_jwt_check(json, &policy, &res) == INVALID);
    CHECK(res.missing != NULL && strcmp(res.missing, "tenant") == 0);
    json_decref(json);

    json = claims("{\"sub\":\"a\",\"exp\":2000,\"tenant\":1}");
    CHECK(ngx_http_realtime_jwt_check(json, &policy, &res) == OK);
    CHECK(res.missing == NULL);
    json_decref(json);

    policy_reset();
    CHECK(check("{\"sub\":\"a\"}", OK, NULL));

    test_end();
}


/*
 * A good header is kept by its bytes: the next token with the same
 * header is not decoded again (t.header NULL) and gets the same alg and
 * kid; more headers than are kept push the oldest out; a bad header is
 * never kept, nor one too long to keep.
 */

static void
test_header_kept(void)
{
    int                             i;
    char                           *s, hdr[400], kid[300];
    const char                     *reason;
    ngx_http_realtime_jwt_token_t   t;

    test_begin("header kept");

    ngx_http_realtime_jwt_headers_forget();

    s = token("{\"alg\":\"HS384\",\"kid\":\"k\\u00e9y\"}", "{\"sub\":\"a\"}",
              "c2ln");
    CHECK(parse(&t, s, &reason) == 0 && json_is_object(t.header));
    ngx_http_realtime_jwt_token_free(&t);

    CHECK(parse(&t, s, &reason) == 0);
    CHECK(t.header == NULL && json_is_object(t.claims));
    CHECK(t.alg == NGX_HTTP_REALTIME_JWT_HS384);
    CHECK(t.kid_len == 4 && memcmp(t.kid, "k\xc3\xa9y", 4) == 0);
    ngx_http_realtime_jwt_token_free(&t);
    free(s);

    /* the claims are read for every token */

    s = token("{\"alg\":\"HS384\",\"kid\":\"k\\u00e9y\"}", "[1]", "c2ln");
    CHECK(parse(&t, s, &reason) == -1);
    CHECK(strcmp(reason, "token payload is not a base64url JSON object")
          == 0);
    free(s);

    /* six headers through four places: each still gives its own kid */

    for (i = 0; i < 12; i++) {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"key-%d\"}",
                 i % 6);
        snprintf(kid, sizeof(kid), "key-%d", i % 6);
        s = token(hdr, "{}", "c2ln");
        CHECK(parse(&t, s, &reason) == 0);
        CHECK(t.alg == NGX_HTTP_REALTIME_JWT_ES256);
        CHECK(t.kid_len == strlen(kid)
                    && memcmp(t.kid, kid, t.kid_len) == 0);
        ngx_http_realtime_jwt_token_free(&t);
        free(s);
    }

    /* no kid, and an empty one */

    s = token("{\"alg\":\"HS256\"}", "{}", "c2ln");
    CHECK(parse(&t, s, &reason) == 0 && t.kid == NULL);
    ngx_http_realtime_jwt_token_free(&t);
    CHECK(parse(&t, s, &reason) == 0 && t.kid == NULL && t.header == NULL);
    ngx_http_realtime_jwt_token_free(&t);
    free(s);

    s = token("{\"alg\":\"HS256\",\"kid\":\"\"}", "{}", "c2ln");
    CHECK(parse(&t, s, &reason) == 0 && t.kid && t.kid_len == 0);
    ngx_http_realtime_jwt_token_free(&t);
    CHECK(parse(&t, s, &reason) == 0 && t.kid && t.kid_len == 0
          && t.header == NULL);
    ngx_http_realtime_jwt_token_free(&t);
    free(s);

    /* a refused header, twice, between good ones */

    for (i = 0; i < 2; i++) {
        CHECK(parse_fails("{\"alg\":\"none\"}", "{}", "c2ln",
                                "unsigned tokens are not accepted"));
        CHECK(parse_fails("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}",
                                "{}", "c2ln",
                                "token has critical header extensions"));
    }

    /* a header too long to keep is read every time */

    memset(kid, 'k', 250);
    kid[250] = '\0';
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid);
    s = token(hdr, "{}", "c2ln");

    for (i = 0; i < 2; i++) {
        CHECK(parse(&t, s, &reason) == 0 && json_is_object(t.header));
        CHECK(t.kid_len == 250);
        ngx_http_realtime_jwt_token_free(&t);
    }

    free(s);

    test_end();
}


int
main(void)
{
    test_required();
    test_algs();
    test_base64url();
    test_parse_ok();
    test_header_kept();
    test_parse_errors();
    test_times();
    test_exp_result();
    test_iss_aud();
    test_user_claim();
    test_rooms();
    test_claim_text();
    test_claim_lookup();
    test_jwk();
    test_jwks();

    return test_summary();
}
