
/*
 * Copyright (C) ngx-realtime developers
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_jwt_claims.h"


/* exp beyond the year 9999 is the same as no later than that */
#define NGX_HTTP_REALTIME_JWT_TIME_MAX  253402300799.0


typedef struct {
    const char  *name;
    unsigned     alg;
} ngx_http_realtime_jwt_alg_name_t;


/*
 * What a good header segment gave, kept by its bytes: a deployment's
 * tokens share a few headers ({"alg":"HS256","typ":"JWT"}, one per kid),
 * and the base64url and JSON of the header were a sixth of a
 * handshake's instructions.  The same bytes always give the same alg
 * and kid, so a token whose header is kept is not decoded again.
 */

#define NGX_HTTP_REALTIME_JWT_HEADERS     4
#define NGX_HTTP_REALTIME_JWT_HEADER_MAX  256

typedef struct {
    size_t       len;                   /* 0: an empty slot */
    char         segment[NGX_HTTP_REALTIME_JWT_HEADER_MAX];
    unsigned     alg;
    int          has_kid;
    size_t       kid_len;
    char         kid[NGX_HTTP_REALTIME_JWT_HEADER_MAX];
} ngx_http_realtime_jwt_header_kept_t;


static int ngx_http_realtime_jwt_header_find(ngx_http_realtime_jwt_token_t *t,
    const char *segment, size_t len);
static void ngx_http_realtime_jwt_header_keep(
    ngx_http_realtime_jwt_token_t *t, const char *segment, size_t len);
static json_t *ngx_http_realtime_jwt_segment(const char *in, size_t len);
static int ngx_http_realtime_jwt_header(ngx_http_realtime_jwt_token_t *t,
    const char **reason);
static int ngx_http_realtime_jwt_time(json_t *claims, const char *name,
    double *value, const char **reason);
static int ngx_http_realtime_jwt_audience(json_t *aud, const char *audience,
    size_t len);
static int ngx_http_realtime_jwt_string_eq(json_t *s, const char *value,
    size_t len);
static int ngx_http_realtime_jwt_caseless_eq(const char *a, const char *b,
    size_t len);
static int ngx_http_realtime_jwk_member(json_t *jwk, const char *name,
    ngx_http_realtime_jwk_t *k, int i, const char **reason);
static size_t ngx_http_realtime_jwt_base64url_len(const char *in,
    size_t len);


static ngx_http_realtime_jwt_header_kept_t  ngx_http_realtime_jwt_headers[
                                                NGX_HTTP_REALTIME_JWT_HEADERS];
static size_t  ngx_http_realtime_jwt_headers_next;


static const ngx_http_realtime_jwt_curve_t  ngx_http_realtime_jwt_curves[] = {
    { "P-256", "prime256v1", 32, NGX_HTTP_REALTIME_JWT_ES256 },
    { "P-384", "secp384r1", 48, NGX_HTTP_REALTIME_JWT_ES384 },
    { "P-521", "secp521r1", 66, NGX_HTTP_REALTIME_JWT_ES512 },
    { NULL, NULL, 0, 0 }
};


static const ngx_http_realtime_jwt_alg_name_t  ngx_http_realtime_jwt_algs[] = {
    { "HS256", NGX_HTTP_REALTIME_JWT_HS256 },
    { "HS384", NGX_HTTP_REALTIME_JWT_HS384 },
    { "HS512", NGX_HTTP_REALTIME_JWT_HS512 },
    { "RS256", NGX_HTTP_REALTIME_JWT_RS256 },
    { "RS384", NGX_HTTP_REALTIME_JWT_RS384 },
    { "RS512", NGX_HTTP_REALTIME_JWT_RS512 },
    { "ES256", NGX_HTTP_REALTIME_JWT_ES256 },
    { "ES384", NGX_HTTP_REALTIME_JWT_ES384 },
    { "ES512", NGX_HTTP_REALTIME_JWT_ES512 },
    { "PS256", NGX_HTTP_REALTIME_JWT_PS256 },
    { "PS384", NGX_HTTP_REALTIME_JWT_PS384 },
    { "PS512", NGX_HTTP_REALTIME_JWT_PS512 },
    { NULL, 0 }
};


/* base64url alphabet: 0-63, 64 for anything else */
static const unsigned char  ngx_http_realtime_jwt_b64[256] = {
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 62, 64, 64,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 64, 64, 64, 64, 64, 64,
    64,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 64, 64, 64, 64, 63,
    64, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64
};


unsigned
ngx_http_realtime_jwt_alg(const char *name, size_t len)
{
    const ngx_http_realtime_jwt_alg_name_t  *a;

    for (a = ngx_http_realtime_jwt_algs; a->name; a++) {
        if (len == 5 && memcmp(a->name, name, 5) == 0) {
            return a->alg;
        }
    }

    return 0;
}


const char *
ngx_http_realtime_jwt_alg_name(unsigned alg)
{
    const ngx_http_realtime_jwt_alg_name_t  *a;

    for (a = ngx_http_realtime_jwt_algs; a->name; a++) {
        if (a->alg == alg) {
            return a->name;
        }
    }

    return "unknown";
}


int
ngx_http_realtime_jwt_base64url_decode(unsigned char *out, size_t *out_len,
    const char *in, size_t len)
{
    size_t          i, n;
    unsigned long   acc;
    unsigned char   v;

    if (len % 4 == 1) {
        return -1;
    }

    n = 0;
    acc = 0;

    for (i = 0; i < len; i++) {
        v = ngx_http_realtime_jwt_b64[(unsigned char) in[i]];

        if (v == 64) {
            return -1;
        }

        acc = (acc << 6) | v;

        if (i % 4 == 3) {
            out[n++] = (unsigned char) (acc >> 16);
            out[n++] = (unsigned char) (acc >> 8);
            out[n++] = (unsigned char) acc;
            acc = 0;
        }
    }

    /*
     * The bits past the last byte must be zero, as every encoder writes
     * them (RFC 4648 3.5): else one signature has several spellings, and
     * a token would not be one string.
     */

    switch (len % 4) {

    case 2:
        if (acc & 0x0f) {
            return -1;
        }

        out[n++] = (unsigned char) (acc >> 4);
        break;

    case 3:
        if (acc & 0x03) {
            return -1;
        }

        out[n++] = (unsigned char) (acc >> 10);
        out[n++] = (unsigned char) (acc >> 2);
        break;
    }

    *out_len = n;

    return 0;
}


int
ngx_http_realtime_jwt_parse(ngx_http_realtime_jwt_token_t *t,
    const char *token, size_t len, const char **reason)
{
    const char  *dot1, *dot2, *payload;

    memset(t, 0, sizeof(ngx_http_realtime_jwt_token_t));

    if (len > NGX_HTTP_REALTIME_JWT_MAX_LEN) {
        *reason = "token is too long";
        return -1;
    }

    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (dot1 + 1 - token)) : NULL;

    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (dot2 + 1 - token))) {
        *reason = "token is not a compact JWS";
        return -1;
    }

    payload = dot1 + 1;

    if (dot1 == token || dot2 == payload) {
        *reason = "token has an empty header or payload";
        return -1;
    }

    t->signing_input = token;
    t->signing_input_len = dot2 - token;
    t->signature = dot2 + 1;
    t->signature_len = len - (dot2 + 1 - token);

    if (!ngx_http_realtime_jwt_header_find(t, token, dot1 - token)) {

        t->header = ngx_http_realtime_jwt_segment(token, dot1 - token);
        if (t->header == NULL) {
            *reason = "token header is not a base64url JSON object";
            return -1;
        }

        if (ngx_http_realtime_jwt_header(t, reason) != 0) {
            ngx_http_realtime_jwt_token_free(t);
            return -1;
        }

        ngx_http_realtime_jwt_header_keep(t, token, dot1 - token);
    }

    t->claims = ngx_http_realtime_jwt_segment(payload, dot2 - payload);
    if (t->claims == NULL) {
        *reason = "token payload is not a base64url JSON object";
        ngx_http_realtime_jwt_token_free(t);
        return -1;
    }

    if (t->signature_len == 0) {
        *reason = "token has no signature";
        ngx_http_realtime_jwt_token_free(t);
        return -1;
    }

    return 0;
}


void
ngx_http_realtime_jwt_token_free(ngx_http_realtime_jwt_token_t *t)
{
    if (t->header) {
        json_decref(t->header);
    }

    if (t->claims) {
        json_decref(t->claims);
    }

    memset(t, 0, sizeof(ngx_http_realtime_jwt_token_t));
}


void
ngx_http_realtime_jwt_headers_forget(void)
{
    memset(ngx_http_realtime_jwt_headers, 0,
           sizeof(ngx_http_realtime_jwt_headers));
    ngx_http_realtime_jwt_headers_next = 0;
}


/* 1: the header segment is kept, t has its alg and kid */

static int
ngx_http_realtime_jwt_header_find(ngx_http_realtime_jwt_token_t *t,
    const char *segment, size_t len)
{
    size_t                                i;
    ngx_http_realtime_jwt_header_kept_t  *h;

    for (i = 0; i < NGX_HTTP_REALTIME_JWT_HEADERS; i++) {
        h = &ngx_http_realtime_jwt_headers[i];

        if (h->len == len && memcmp(h->segment, segment, len) == 0) {
            t->alg = h->alg;
            t->kid = h->has_kid ? h->kid : NULL;
            t->kid_len = h->kid_len;
            return 1;
        }
    }

    return 0;
}


/* a good header, in the next slot; t->kid keeps pointing into t->header */

static void
ngx_http_realtime_jwt_header_keep(ngx_http_realtime_jwt_token_t *t,
    const char *segment, size_t len)
{
    ngx_http_realtime_jwt_header_kept_t  *h;

    if (len == 0 || len > NGX_HTTP_REALTIME_JWT_HEADER_MAX
        || t->kid_len > NGX_HTTP_REALTIME_JWT_HEADER_MAX)
    {
        return;
    }

    h = &ngx_http_realtime_jwt_headers[ngx_http_realtime_jwt_headers_next];
    ngx_http_realtime_jwt_headers_next = (ngx_http_realtime_jwt_headers_next
                                          + 1)
                                         % NGX_HTTP_REALTIME_JWT_HEADERS;

    memcpy(h->segment, segment, len);
    h->len = len;
    h->alg = t->alg;
    h->has_kid = (t->kid != NULL);
    h->kid_len = t->kid_len;

    if (t->kid_len) {
        memcpy(h->kid, t->kid, t->kid_len);
    }
}


/* a base64url segment that must decode to a JSON object */

static json_t *
ngx_http_realtime_jwt_segment(const char *in, size_t len)
{
    size_t          n;
    json_t         *json;
    unsigned char  *buf;

    buf = malloc(len * 3 / 4 + 1);
    if (buf == NULL) {
        return NULL;
    }

    if (ngx_http_realtime_jwt_base64url_decode(buf, &n, in, len) != 0) {
        free(buf);
        return NULL;
    }

    /* duplicate members could mean different things to different readers */
    json = json_loadb((char *) buf, n, JSON_REJECT_DUPLICATES, NULL);
    free(buf);

    if (json && !json_is_object(json)) {
        json_decref(json);
        return NULL;
    }

    return json;
}


static int
ngx_http_realtime_jwt_header(ngx_http_realtime_jwt_token_t *t,
    const char **reason)
{
    json_t  *alg, *kid, *typ;

    alg = json_object_get(t->header, "alg");

    if (!json_is_string(alg)) {
        *reason = "token header has no alg";
        return -1;
    }

    t->alg = ngx_http_realtime_jwt_alg(json_string_value(alg),
                                       json_string_length(alg));

    if (t->alg == 0) {
        *reason = (json_string_length(alg) == 4
                   && ngx_http_realtime_jwt_caseless_eq(
                                   json_string_value(alg), "none", 4))
                  ? "unsigned tokens are not accepted"
                  : "token alg is not supported";
        return -1;
    }

    kid = json_object_get(t->header, "kid");

    if (kid) {
        if (!json_is_string(kid)) {
            *reason = "token kid is not a string";
            return -1;
        }

        t->kid = json_string_value(kid);
        t->kid_len = json_string_length(kid);
    }

    /* RFC 7515 4.1.11: extensions we do not know must be refused */

    if (json_object_get(t->header, "crit")) {
        *reason = "token has critical header extensions";
        return -1;
    }

    typ = json_object_get(t->header, "typ");

    if (typ && !(json_string_length(typ) == 3
                 && ngx_http_realtime_jwt_caseless_eq(json_string_value(typ),
                                                      "JWT", 3)))
    {
        *reason = "token typ is not JWT";
        return -1;
    }

    return 0;
}


int
ngx_http_realtime_jwt_check(json_t *claims,
    const ngx_http_realtime_jwt_policy_t *policy,
    ngx_http_realtime_jwt_result_t *res)
{
    size_t   i;
    double   exp, nbf, iat, now, leeway;
    json_t  *user;

    memset(res, 0, sizeof(ngx_http_realtime_jwt_result_t));

    for (i = 0; i < policy->nrequired; i++) {
        if (json_object_get(claims, policy->required[i]) == NULL) {
            res->reason = "token lacks a required claim";
            res->missing = policy->required[i];
            return NGX_HTTP_REALTIME_JWT_INVALID;
        }
    }

    now = (double) policy->now;
    leeway = (double) policy->leeway;

    if (ngx_http_realtime_jwt_time(claims, "exp", &exp, &res->reason) < 0
        || ngx_http_realtime_jwt_time(claims, "nbf", &nbf, &res->reason) < 0
        || ngx_http_realtime_jwt_time(claims, "iat", &iat, &res->reason) < 0)
    {
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    if (json_object_get(claims, "exp")) {
        res->has_exp = 1;
        res->exp = (long long) ((exp < NGX_HTTP_REALTIME_JWT_TIME_MAX)
                                ? exp : NGX_HTTP_REALTIME_JWT_TIME_MAX);

        /* RFC 7519 4.1.4: valid only before exp */
        if (now >= exp + leeway) {
            res->reason = "token expired";
            return NGX_HTTP_REALTIME_JWT_EXPIRED;
        }
    }

    if (json_object_get(claims, "nbf") && now + leeway < nbf) {
        res->reason = "token is not valid yet";
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    if (json_object_get(claims, "iat") && iat > now + leeway) {
        res->reason = "token is issued in the future";
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    if (policy->issuer
        && !ngx_http_realtime_jwt_string_eq(json_object_get(claims, "iss"),
                                            policy->issuer,
                                            policy->issuer_len))
    {
        res->reason = "token issuer is not accepted";
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    if (policy->audience
        && !ngx_http_realtime_jwt_audience(json_object_get(claims, "aud"),
                                           policy->audience,
                                           policy->audience_len))
    {
        res->reason = "token audience is not accepted";
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    user = json_object_get(claims, policy->user_claim);

    if (!json_is_string(user) || json_string_length(user) == 0) {
        res->reason = "token has no user claim";
        return NGX_HTTP_REALTIME_JWT_INVALID;
    }

    res->user = json_string_value(user);
    res->user_len = json_string_length(user);

    return NGX_HTTP_REALTIME_JWT_OK;
}


/* 1: present and a number, 0: absent, -1: not a number */

static int
ngx_http_realtime_jwt_time(json_t *claims, const char *name, double *value,
    const char **reason)
{
    json_t  *v;

    *value = 0;

    v = json_object_get(claims, name);

    if (v == NULL) {
        return 0;
    }

    if (!json_is_number(v)) {
        *reason = "token exp, nbf or iat is not a number";
        return -1;
    }

    *value = json_number_value(v);

    return 1;
}


/* RFC 7519 4.1.3: a string or an array of strings */

static int
ngx_http_realtime_jwt_audience(json_t *aud, const char *audience, size_t len)
{
    size_t   i;
    json_t  *v;

    if (json_is_string(aud)) {
        return ngx_http_realtime_jwt_string_eq(aud, audience, len);
    }

    json_array_foreach(aud, i, v) {
        if (ngx_http_realtime_jwt_string_eq(v, audience, len)) {
            return 1;
        }
    }

    return 0;
}


static int
ngx_http_realtime_jwt_string_eq(json_t *s, const char *value, size_t len)
{
    return json_is_string(s)
           && json_string_length(s) == len
           && memcmp(json_string_value(s), value, len) == 0;
}


int
ngx_http_realtime_jwt_room_match(const char *pattern, size_t pattern_len,
    const char *room, size_t room_len)
{
    if (pattern_len && pattern[pattern_len - 1] == '*') {
        pattern_len--;

        return room_len >= pattern_len
               && memcmp(pattern, room, pattern_len) == 0;
    }

    return pattern_len == room_len && memcmp(pattern, room, room_len) == 0;
}


size_t
ngx_http_realtime_jwt_claim_text(json_t *value, char *buf, size_t size)
{
    size_t  len;

    if (json_is_string(value)) {
        len = json_string_length(value);

        if (buf && len <= size) {
            memcpy(buf, json_string_value(value), len);
        }

        return len;
    }

    len = json_dumpb(value, buf, size, JSON_COMPACT|JSON_ENCODE_ANY);

    return (len == 0) ? (size_t) -1 : len;
}


json_t *
ngx_http_realtime_jwt_claim(json_t *claims, const char *name, size_t len)
{
    size_t       key_len;
    json_t      *v;
    const char  *key;

    v = json_object_getn(claims, name, len);
    if (v) {
        return v;
    }

    json_object_keylen_foreach(claims, key, key_len, v) {
        if (key_len == len
            && ngx_http_realtime_jwt_caseless_eq(key, name, len))
        {
            return v;
        }
    }

    return NULL;
}


static int
ngx_http_realtime_jwt_caseless_eq(const char *a, const char *b, size_t len)
{
    size_t         i;
    unsigned char  ca, cb;

    for (i = 0; i < len; i++) {
        ca = (unsigned char) a[i];
        cb = (unsigned char) b[i];

        if (ca >= 'A' && ca <= 'Z') {
            ca |= 0x20;
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb |= 0x20;
        }

        if (ca != cb) {
            return 0;
        }
    }

    return 1;
}


int
ngx_http_realtime_jwks_parse(const char *text, size_t len, json_t **root,
    json_t **keys, char *err, size_t size)
{
    json_error_t  jerr;

    *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (*root == NULL) {
        snprintf(err, size, " is not JSON: line %d: %s", jerr.line,
                 jerr.text);
        return -1;
    }

    *keys = json_object_get(*root, "keys");

    if (!json_is_array(*keys)) {
        json_decref(*root);
        *root = NULL;
        snprintf(err, size, " has no \"keys\" array");
        return -1;
    }

    return 0;
}


int
ngx_http_realtime_jwk_read(json_t *jwk, ngx_http_realtime_jwk_t *k,
    const char **reason)
{
    json_t      *kty, *use, *kid, *alg, *crv;
    const char  *type;

    memset(k, 0, sizeof(ngx_http_realtime_jwk_t));

    if (!json_is_object(jwk)) {
        *reason = "is not an object";
        return -1;
    }

    kty = json_object_get(jwk, "kty");
    if (!json_is_string(kty)) {
        *reason = "has no \"kty\"";
        return -1;
    }

    type = json_string_value(kty);

    use = json_object_get(jwk, "use");
    if (use && !(json_is_string(use)
                 && strcmp(json_string_value(use), "sig") == 0))
    {
        return 0;
    }

    kid = json_object_get(jwk, "kid");

    if (kid) {
        if (!json_is_string(kid)) {
            *reason = "has a \"kid\" that is not a string";
            return -1;
        }

        k->kid = json_string_value(kid);
        k->kid_len = json_string_length(kid);
    }

    alg = json_object_get(jwk, "alg");

    if (alg) {
        k->algs = json_is_string(alg)
                  ? ngx_http_realtime_jwt_alg(json_string_value(alg),
                                              json_string_length(alg))
                  : 0;
        if (k->algs == 0) {
            /* an encryption algorithm, or one we do not verify */
            return 0;
        }
    }

    if (strcmp(type, "oct") == 0) {
        if (k->algs && !(k->algs & NGX_HTTP_REALTIME_JWT_HS)) {
            *reason = "has an \"alg\" that does not fit an oct key";
            return -1;
        }

        k->type = NGX_HTTP_REALTIME_JWK_OCT;
        return ngx_http_realtime_jwk_member(jwk, "k", k, 0, reason);
    }

    if (strcmp(type, "RSA") == 0) {
        k->type = NGX_HTTP_REALTIME_JWK_RSA;

        if (ngx_http_realtime_jwk_member(jwk, "n", k, 0, reason) != 0) {
            return -1;
        }

        return ngx_http_realtime_jwk_member(jwk, "e", k, 1, reason);
    }

    if (strcmp(type, "EC") != 0) {
        k->kty = type;
        return 0;
    }

    k->type = NGX_HTTP_REALTIME_JWK_EC;

    crv = json_object_get(jwk, "crv");

    k->curve = json_is_string(crv)
               ? ngx_http_realtime_jwt_curve(json_string_value(crv), NULL)
               : NULL;

    if (k->curve == NULL) {
        *reason = "has a \"crv\" other than P-256, P-384 or P-521";
        return -1;
    }

    if (ngx_http_realtime_jwk_member(jwk, "x", k, 0, reason) != 0
        || ngx_http_realtime_jwk_member(jwk, "y", k, 1, reason) != 0)
    {
        return -1;
    }

    /* RFC 7518 6.2.1.2: the full size of a coordinate */
    if (k->decoded_len[0] != k->curve->size
        || k->decoded_len[1] != k->curve->size)
    {
        *reason = "has \"x\" or \"y\" of the wrong size for its curve";
        return -1;
    }

    return 0;
}


static int
ngx_http_realtime_jwk_member(json_t *jwk, const char *name,
    ngx_http_realtime_jwk_t *k, int i, const char **reason)
{
    json_t  *v;
    size_t   n;

    v = json_object_get(jwk, name);

    if (!json_is_string(v) || json_string_length(v) == 0) {
        *reason = "lacks a member it needs (n, e; crv, x, y; or k)";
        return -1;
    }

    n = ngx_http_realtime_jwt_base64url_len(json_string_value(v),
                                            json_string_length(v));
    if (n == (size_t) -1) {
        *reason = "has a member that is not base64url";
        return -1;
    }

    k->member[i] = json_string_value(v);
    k->member_len[i] = json_string_length(v);
    k->decoded_len[i] = n;

    return 0;
}


/* the decoded size of unpadded base64url, or -1 */

static size_t
ngx_http_realtime_jwt_base64url_len(const char *in, size_t len)
{
    size_t  i;

    if (len % 4 == 1) {
        return (size_t) -1;
    }

    for (i = 0; i < len; i++) {
        if (ngx_http_realtime_jwt_b64[(unsigned char) in[i]] == 64) {
            return (size_t) -1;
        }
    }

    /* as ngx_http_realtime_jwt_base64url_decode(): no bits left over */

    if (len % 4 > 1
        && (ngx_http_realtime_jwt_b64[(unsigned char) in[len - 1]]
            & (len % 4 == 2 ? 0x0f : 0x03)))
    {
        return (size_t) -1;
    }

    return len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
}


const ngx_http_realtime_jwt_curve_t *
ngx_http_realtime_jwt_curve(const char *crv, const char *group)
{
    const ngx_http_realtime_jwt_curve_t  *c;

    for (c = ngx_http_realtime_jwt_curves; c->crv; c++) {
        if (crv ? strcmp(crv, c->crv) == 0 : strcmp(group, c->group) == 0) {
            return c;
        }
    }

    return NULL;
}
