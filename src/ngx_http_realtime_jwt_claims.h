
/*
 * Copyright (C) ngx-realtime developers
 *
 * The parts of JWT checking that need no key: base64url, the header and
 * payload of a compact JWS, the registered claims and room patterns.
 * Pure C over jansson, no nginx headers, so that t/unit drives it.
 */


#ifndef _NGX_HTTP_REALTIME_JWT_CLAIMS_H_INCLUDED_
#define _NGX_HTTP_REALTIME_JWT_CLAIMS_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


/* results of the checks */
#define NGX_HTTP_REALTIME_JWT_OK         0
#define NGX_HTTP_REALTIME_JWT_INVALID   -1    /* UNAUTHORIZED */
#define NGX_HTTP_REALTIME_JWT_EXPIRED   -2    /* TOKEN_EXPIRED */

/* algorithms, one bit each, so that an allow-list is a mask */
#define NGX_HTTP_REALTIME_JWT_HS256      0x0001
#define NGX_HTTP_REALTIME_JWT_HS384      0x0002
#define NGX_HTTP_REALTIME_JWT_HS512      0x0004
#define NGX_HTTP_REALTIME_JWT_RS256      0x0008
#define NGX_HTTP_REALTIME_JWT_RS384      0x0010
#define NGX_HTTP_REALTIME_JWT_RS512      0x0020
#define NGX_HTTP_REALTIME_JWT_ES256      0x0040
#define NGX_HTTP_REALTIME_JWT_ES384      0x0080
#define NGX_HTTP_REALTIME_JWT_ES512      0x0100
#define NGX_HTTP_REALTIME_JWT_PS256      0x0200
#define NGX_HTTP_REALTIME_JWT_PS384      0x0400
#define NGX_HTTP_REALTIME_JWT_PS512      0x0800

#define NGX_HTTP_REALTIME_JWT_HS         0x0007
#define NGX_HTTP_REALTIME_JWT_RS         0x0038
#define NGX_HTTP_REALTIME_JWT_ES         0x01c0
#define NGX_HTTP_REALTIME_JWT_PS         0x0e00

/* nothing legitimate comes near this; it bounds the work per token */
#define NGX_HTTP_REALTIME_JWT_MAX_LEN    16384


typedef struct {
    json_t        *header;       /* owned; NULL when the header was kept */
    json_t        *claims;       /* owned */
    unsigned       alg;          /* one NGX_HTTP_REALTIME_JWT_* bit */
    const char    *kid;          /* borrowed from header or what keeps it
                                    (until the next parse), NULL: none;
                                    not NUL-terminated */
    size_t         kid_len;
    const char    *signing_input;   /* "header.payload", in the token */
    size_t         signing_input_len;
    const char    *signature;    /* base64url, in the token */
    size_t         signature_len;
} ngx_http_realtime_jwt_token_t;


typedef struct {
    const char    *issuer;       /* NULL: any */
    size_t         issuer_len;
    const char    *audience;     /* NULL: any */
    size_t         audience_len;
    const char    *user_claim;   /* NUL-terminated, e.g. "sub" */
    long long      now;          /* seconds since the epoch */
    long long      leeway;       /* seconds */
    char         **required;     /* claims that must be there, or NULL */
    size_t         nrequired;
} ngx_http_realtime_jwt_policy_t;


typedef struct {
    const char    *reason;       /* static text on failure */
    int            has_exp;
    long long      exp;
    const char    *user;         /* borrowed from the claims */
    size_t         user_len;
    const char    *missing;      /* a required claim it lacks */
} ngx_http_realtime_jwt_result_t;


/* the bit of an algorithm name, 0 if unknown ("none" included) */
unsigned ngx_http_realtime_jwt_alg(const char *name, size_t len);
const char *ngx_http_realtime_jwt_alg_name(unsigned alg);

/*
 * Unpadded base64url (RFC 7515 2).  out must hold len * 3 / 4 bytes.
 * Returns 0, or -1 for a character outside the alphabet, padding, an
 * impossible length or bits left over in the last character.
 */
int ngx_http_realtime_jwt_base64url_decode(unsigned char *out,
    size_t *out_len, const char *in, size_t len);

/*
 * Splits a compact JWS and decodes its header and payload, both JSON
 * objects; reads "alg" and "kid".  Nothing is verified.  Returns 0, or
 * -1 with a static reason; t is then empty.
 */
int ngx_http_realtime_jwt_parse(ngx_http_realtime_jwt_token_t *t,
    const char *token, size_t len, const char **reason);
void ngx_http_realtime_jwt_token_free(ngx_http_realtime_jwt_token_t *t);

/*
 * parse() keeps what the last few good header segments gave, by their
 * bytes (t->header is NULL for a token whose header was kept); this
 * forgets them, for the tests.
 */
void ngx_http_realtime_jwt_headers_forget(void);

/*
 * The required claims (realtime_jwt_require: present, whatever their
 * value), exp, nbf, iat (with the leeway), iss, aud and the user claim.
 * Returns NGX_HTTP_REALTIME_JWT_OK, _INVALID or _EXPIRED with
 * res->reason set.
 */
int ngx_http_realtime_jwt_check(json_t *claims,
    const ngx_http_realtime_jwt_policy_t *policy,
    ngx_http_realtime_jwt_result_t *res);

/* "battle:*": a prefix; "*": every room; anything else: that room */
int ngx_http_realtime_jwt_room_match(const char *pattern, size_t pattern_len,
    const char *room, size_t room_len);

/*
 * The text of a claim for an nginx variable: a string as it is, any
 * other value as compact JSON.  Writes into buf when it fits; returns
 * the size needed, 0 on failure.
 */
size_t ngx_http_realtime_jwt_claim_text(json_t *value, char *buf,
    size_t size);

/* a member by name, exactly, else ignoring ASCII case (nginx lowercases
 * variable names) */
json_t *ngx_http_realtime_jwt_claim(json_t *claims, const char *name,
    size_t len);


/* JSON Web Keys (RFC 7517, 7518 6), read before any key is made */

#define NGX_HTTP_REALTIME_JWK_SKIP       0  /* another use, type or alg */
#define NGX_HTTP_REALTIME_JWK_OCT        1
#define NGX_HTTP_REALTIME_JWK_RSA        2
#define NGX_HTTP_REALTIME_JWK_EC         3


typedef struct {
    const char    *crv;          /* the JWK's name */
    const char    *group;        /* OpenSSL's */
    size_t         size;         /* of a coordinate */
    unsigned       alg;          /* the one ES* it verifies */
} ngx_http_realtime_jwt_curve_t;


typedef struct {
    int            type;         /* NGX_HTTP_REALTIME_JWK_* */
    unsigned       algs;         /* its "alg", 0: any that fits */
    const char    *kid;          /* borrowed, NULL: none */
    size_t         kid_len;
    const char    *kty;          /* borrowed: a type that is skipped */
    const ngx_http_realtime_jwt_curve_t  *curve;   /* EC */

    /* base64url, borrowed: k (oct); n, e (RSA); x, y (EC) */
    const char    *member[2];
    size_t         member_len[2];
    size_t         decoded_len[2];
} ngx_http_realtime_jwk_t;


/*
 * The "keys" array of a JWK Set: 0 with *root (a reference to drop) and
 * *keys borrowed from it, or -1 with the reason written into err.
 */
int ngx_http_realtime_jwks_parse(const char *text, size_t len, json_t **root,
    json_t **keys, char *err, size_t size);

/*
 * One JWK: 0 with k filled (type SKIP for a key to leave out: another
 * "use", an encryption "alg", a "kty" other than oct, RSA and EC), or -1
 * with a static reason.  Every member is non-empty base64url; EC
 * coordinates have their curve's size.
 */
int ngx_http_realtime_jwk_read(json_t *jwk, ngx_http_realtime_jwk_t *k,
    const char **reason);

/* a curve by its JWK name, or by OpenSSL's (crv NULL); NULL: neither */
const ngx_http_realtime_jwt_curve_t *ngx_http_realtime_jwt_curve(
    const char *crv, const char *group);


#endif /* _NGX_HTTP_REALTIME_JWT_CLAIMS_H_INCLUDED_ */
