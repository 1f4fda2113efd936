
/*
 * Copyright (C) ngx-realtime developers
 *
 * permessage-deflate (RFC 7692): see ngx_http_realtime_deflate.h.
 */


#include <string.h>

#include "ngx_http_realtime_deflate.h"


#define NGX_HTTP_REALTIME_PMD_NAME  "permessage-deflate"
#define NGX_HTTP_REALTIME_PMD_ANSWER                                         \
    "permessage-deflate; server_no_context_takeover; "                       \
    "client_no_context_takeover"


/* one parameter of an offer: its name and value (value NULL: none) */
typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    const unsigned char  *value;
    size_t                value_len;
    unsigned char         unquoted[4];
} ngx_http_realtime_pmd_param_t;


typedef struct {
    const unsigned char  *p;
    const unsigned char  *end;
} ngx_http_realtime_pmd_cursor_t;


static int ngx_http_realtime_pmd_offer(ngx_http_realtime_pmd_cursor_t *c,
    ngx_http_realtime_pmd_params_t *params);
static int ngx_http_realtime_pmd_param(ngx_http_realtime_pmd_cursor_t *c,
    ngx_http_realtime_pmd_param_t *pa);
static int ngx_http_realtime_pmd_bits(ngx_http_realtime_pmd_param_t *pa);
static size_t ngx_http_realtime_pmd_token(ngx_http_realtime_pmd_cursor_t *c);
static void ngx_http_realtime_pmd_ows(ngx_http_realtime_pmd_cursor_t *c);
static int ngx_http_realtime_pmd_is(const unsigned char *s, size_t len,
    const char *name);


static const unsigned char  ngx_http_realtime_pmd_tail[4] = {
    0x00, 0x00, 0xff, 0xff
};


int
ngx_http_realtime_pmd_negotiate(const unsigned char *value, size_t len,
    ngx_http_realtime_pmd_params_t *params, unsigned char *out,
    size_t *out_len)
{
    int                              rc, taken;
    size_t                           n;
    ngx_http_realtime_pmd_params_t   offer;
    ngx_http_realtime_pmd_cursor_t   c;

    c.p = value;
    c.end = value + len;
    taken = 0;

    /* the whole list is read: a malformed one has nothing taken */

    for ( ;; ) {
        ngx_http_realtime_pmd_ows(&c);

        if (c.p == c.end || *c.p == ',') {
            /* an empty element of the list is skipped, RFC 7230 7 */

            if (c.p == c.end) {
                break;
            }

            c.p++;
            continue;
        }

        rc = ngx_http_realtime_pmd_offer(&c, &offer);

        if (rc < 0) {
            return 0;
        }

        if (rc == 1 && !taken) {
            *params = offer;
            taken = 1;
        }

        ngx_http_realtime_pmd_ows(&c);

        if (c.p == c.end) {
            break;
        }

        if (*c.p++ != ',') {
            return 0;
        }
    }

    if (!taken) {
        return 0;
    }

    n = sizeof(NGX_HTTP_REALTIME_PMD_ANSWER) - 1;
    memcpy(out, NGX_HTTP_REALTIME_PMD_ANSWER, n);

    /* an offer with the parameter is accepted by naming it, 7.1.2.1 */

    if (params->server_bits_asked) {
        memcpy(out + n, "; server_max_window_bits=", 25);
        n += 25;

        if (params->server_bits >= 10) {
            out[n++] = '1';
        }

        out[n++] = (unsigned char) ('0' + params->server_bits % 10);
    }

    *out_len = n;

    return 1;
}


/* 1: an offer taken, 0: an offer declined, -1: malformed */

static int
ngx_http_realtime_pmd_offer(ngx_http_realtime_pmd_cursor_t *c,
    ngx_http_realtime_pmd_params_t *params)
{
    int                             ours, ok, bits;
    size_t                          n;
    unsigned                        seen;
    const unsigned char            *name;
    ngx_http_realtime_pmd_param_t   pa;

    name = c->p;
    n = ngx_http_realtime_pmd_token(c);

    if (n == 0) {
        return -1;
    }

    ours = ngx_http_realtime_pmd_is(name, n, NGX_HTTP_REALTIME_PMD_NAME);
    ok = ours;
    seen = 0;
    params->server_bits = NGX_HTTP_REALTIME_PMD_BITS_MAX;
    params->server_bits_asked = 0;

    for ( ;; ) {
        ngx_http_realtime_pmd_ows(c);

        if (c->p == c->end || *c->p != ';') {
            break;
        }

        c->p++;
        ngx_http_realtime_pmd_ows(c);

        if (ngx_http_realtime_pmd_param(c, &pa) != 0) {
            return -1;
        }

        if (!ours) {
            continue;
        }

        /* each known parameter once, with a value only where it takes one */

        if (ngx_http_realtime_pmd_is(pa.name, pa.name_len,
                                     "server_no_context_takeover"))
        {
            ok = ok && !(seen & 1) && pa.value == NULL;
            seen |= 1;

        } else if (ngx_http_realtime_pmd_is(pa.name, pa.name_len,
                                            "client_no_context_takeover"))
        {
            ok = ok && !(seen & 2) && pa.value == NULL;
            seen |= 2;

        } else if (ngx_http_realtime_pmd_is(pa.name, pa.name_len,
                                            "server_max_window_bits"))
        {
            bits = ngx_http_realtime_pmd_bits(&pa);
            ok = ok && !(seen & 4) && bits >= NGX_HTTP_REALTIME_PMD_BITS_MIN;
            seen |= 4;

            if (ok) {
                params->server_bits = (unsigned) bits;
                params->server_bits_asked = 1;
            }

        } else if (ngx_http_realtime_pmd_is(pa.name, pa.name_len,
                                            "client_max_window_bits"))
        {
            /* the inflater's window is 15: any client window fits */
            ok = ok && !(seen & 8)
                 && (pa.value == NULL || ngx_http_realtime_pmd_bits(&pa) > 0);
            seen |= 8;

        } else {
            ok = 0;
        }
    }

    return ok;
}


/* name [= token | quoted-string]; 0 or -1 (malformed) */

static int
ngx_http_realtime_pmd_param(ngx_http_realtime_pmd_cursor_t *c,
    ngx_http_realtime_pmd_param_t *pa)
{
    size_t  n;

    pa->name = c->p;
    pa->name_len = ngx_http_realtime_pmd_token(c);
    pa->value = NULL;
    pa->value_len = 0;

    if (pa->name_len == 0) {
        return -1;
    }

    ngx_http_realtime_pmd_ows(c);

    if (c->p == c->end || *c->p != '=') {
        return 0;
    }

    c->p++;
    ngx_http_realtime_pmd_ows(c);

    if (c->p < c->end && *c->p == '"') {

        /* RFC 7692 7.1: a quoted value is a token once unquoted */

        c->p++;
        n = 0;

        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\') {
                if (++c->p == c->end) {
                    return -1;
                }
            }

            if (n < sizeof(pa->unquoted)) {
                pa->unquoted[n] = *c->p;
            }

            n++;
            c->p++;
        }

        if (c->p == c->end) {
            return -1;
        }

        c->p++;
        pa->value = pa->unquoted;
        pa->value_len = n;

        return 0;
    }

    pa->value = c->p;
    pa->value_len = ngx_http_realtime_pmd_token(c);

    return pa->value_len ? 0 : -1;
}


/* a window size value, 8-15 without leading zeros; -1 if not one */

static int
ngx_http_realtime_pmd_bits(ngx_http_realtime_pmd_param_t *pa)
{
    const unsigned char  *v;

    v = pa->value;

    if (v == NULL || pa->value_len > sizeof(pa->unquoted)) {
        return -1;
    }

    if (pa->value_len == 1 && v[0] >= '8' && v[0] <= '9') {
        return v[0] - '0';
    }

    if (pa->value_len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return 10 + v[1] - '0';
    }

    return -1;
}


static size_t
ngx_http_realtime_pmd_token(ngx_http_realtime_pmd_cursor_t *c)
{
    unsigned char         ch;
    const unsigned char  *start;

    start = c->p;

    while (c->p < c->end) {
        ch = *c->p;

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9')
              || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
        {
            break;
        }

        c->p++;
    }

    return (size_t) (c->p - start);
}


static void
ngx_http_realtime_pmd_ows(ngx_http_realtime_pmd_cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) {
        c->p++;
    }
}


/* a token equal to name, case-insensitively */

static int
ngx_http_realtime_pmd_is(const unsigned char *s, size_t len,
    const char *name)
{
    size_t         i;
    unsigned char  a;

    if (len != strlen(name)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        a = s[i];

        if (a >= 'A' && a <= 'Z') {
            a = (unsigned char) (a + ('a' - 'A'));
        }

        if (a != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


int
ngx_http_realtime_pmd_deflater_init(z_stream *zs, int level, unsigned bits)
{
    memset(zs, 0, sizeof(z_stream));

    /* raw deflate (negative bits): RFC 7692 has no zlib header */
    return deflateInit2(zs, level, Z_DEFLATED, -(int) bits, 8,
                        Z_DEFAULT_STRATEGY);
}


size_t
ngx_http_realtime_pmd_bound(size_t len)
{
    /* stored blocks at worst, and the flush's empty block */
    return len + len / 1000 + 5 * (len / 16383 + 1) + 16;
}


size_t
ngx_http_realtime_pmd_deflate(z_stream *zs, const unsigned char *in,
    size_t len, unsigned char *out)
{
    size_t  n;

    if (deflateReset(zs) != Z_OK) {
        return 0;
    }

    zs->next_in = (unsigned char *) in;
    zs->avail_in = (uInt) len;
    zs->next_out = out;
    zs->avail_out = (uInt) ngx_http_realtime_pmd_bound(len);

    if (deflate(zs, Z_SYNC_FLUSH) != Z_OK || zs->avail_in != 0
        || zs->avail_out == 0)
    {
        return 0;
    }

    n = (size_t) (zs->next_out - out);

    /* a sync flush ends with the empty stored block that RFC 7692 drops */

    if (n < 4 || memcmp(out + n - 4, ngx_http_realtime_pmd_tail, 4) != 0) {
        return 0;
    }

    return n - 4;
}


int
ngx_http_realtime_pmd_inflate_start(ngx_http_realtime_pmd_inflater_t *inf,
    const unsigned char *in, size_t len)
{
    if (!inf->started) {
        memset(&inf->zs, 0, sizeof(z_stream));

        if (inflateInit2(&inf->zs, -NGX_HTTP_REALTIME_PMD_BITS_MAX) != Z_OK) {
            return NGX_HTTP_REALTIME_PMD_ERROR;
        }

        inf->started = 1;

    } else if (inflateReset(&inf->zs) != Z_OK) {
        return NGX_HTTP_REALTIME_PMD_ERROR;
    }

    inf->zs.next_in = (unsigned char *) in;
    inf->zs.avail_in = (uInt) len;
    inf->tail = 0;

    return NGX_HTTP_REALTIME_PMD_DONE;
}


int
ngx_http_realtime_pmd_inflate(ngx_http_realtime_pmd_inflater_t *inf,
    unsigned char *out, size_t size, size_t *written)
{
    int        rc, result;
    z_stream  *zs;

    zs = &inf->zs;
    zs->next_out = out;
    zs->avail_out = (uInt) size;

    for ( ;; ) {
        if (zs->avail_in == 0 && !inf->tail) {
            /* what the sender dropped, RFC 7692 7.2.2 */
            zs->next_in = (unsigned char *) ngx_http_realtime_pmd_tail;
            zs->avail_in = 4;
            inf->tail = 1;
        }

        rc = inflate(zs, Z_SYNC_FLUSH);

        if (rc == Z_STREAM_END) {
            /* a final block: the message ends with it */
            result = NGX_HTTP_REALTIME_PMD_DONE;
            break;
        }

        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            result = NGX_HTTP_REALTIME_PMD_ERROR;
            break;
        }

        if (zs->avail_out == 0) {
            result = NGX_HTTP_REALTIME_PMD_FULL;
            break;
        }

        if (zs->avail_in == 0 && inf->tail) {
            /*
             * All of it read: whole only if it stopped between blocks
             * (zlib's data_type 128), not inside one that was cut short
             */
            result = (zs->data_type & 128) ? NGX_HTTP_REALTIME_PMD_DONE
                                           : NGX_HTTP_REALTIME_PMD_ERROR;
            break;
        }

        if (rc == Z_BUF_ERROR) {
            /* no progress with input and room left: it is cut short */
            result = NGX_HTTP_REALTIME_PMD_ERROR;
            break;
        }
    }

    *written = size - zs->avail_out;

    return result;
}
