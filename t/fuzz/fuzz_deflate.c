
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of permessage-deflate (ngx_http_realtime_deflate.c).
 * The input is read three ways: as a Sec-WebSocket-Extensions value
 * (an answer, when there is one, fits its buffer and is RFC 7692's),
 * as a compressed message inflated with little room at a time (never
 * more written than given, at most 64k out), and as a message deflated
 * and inflated back (the same bytes).  Any broken invariant aborts.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_deflate.h"
#include "fuzz.h"


static z_stream                          deflater;
static ngx_http_realtime_pmd_inflater_t  inflater;
static unsigned char                     out[65536 + 1];


static size_t
inflate_some(const uint8_t *data, size_t size, size_t step, int *rc)
{
    size_t  have, n;

    have = 0;
    *rc = ngx_http_realtime_pmd_inflate_start(&inflater, data, size);
    ensure(*rc == NGX_HTTP_REALTIME_PMD_DONE);

    do {
        n = sizeof(out) - have < step ? sizeof(out) - have : step;
        *rc = ngx_http_realtime_pmd_inflate(&inflater, out + have, n, &n);
        ensure(n <= step);
        have += n;
    } while (*rc == NGX_HTTP_REALTIME_PMD_FULL && have < sizeof(out));

    return have;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                             rc;
    size_t                          n, len;
    unsigned char                  *packed;
    ngx_http_realtime_pmd_params_t  p;
    unsigned char                   answer[NGX_HTTP_REALTIME_PMD_RESPONSE_MAX];

    if (deflater.state == NULL) {
        ensure(ngx_http_realtime_pmd_deflater_init(&deflater, 1, 15) == Z_OK);
    }

    len = 0;

    if (ngx_http_realtime_pmd_negotiate(data, size, &p, answer, &len)) {
        ensure(len <= sizeof(answer));
        ensure(len >= 18 && memcmp(answer, "permessage-deflate", 18) == 0);
        ensure(p.server_bits >= NGX_HTTP_REALTIME_PMD_BITS_MIN
               && p.server_bits <= NGX_HTTP_REALTIME_PMD_BITS_MAX);

    } else {
        ensure(len == 0);
    }

    (void) inflate_some(data, size, size ? data[0] % 97 + 1 : 1, &rc);
    ensure(rc == NGX_HTTP_REALTIME_PMD_DONE
           || rc == NGX_HTTP_REALTIME_PMD_ERROR
           || rc == NGX_HTTP_REALTIME_PMD_FULL);

    packed = malloc(ngx_http_realtime_pmd_bound(size));
    ensure(packed != NULL);

    n = ngx_http_realtime_pmd_deflate(&deflater, data, size, packed);
    ensure(n <= ngx_http_realtime_pmd_bound(size));

    if (size == 0 || n > 0) {
        len = inflate_some(packed, n, 4096, &rc);
        ensure(rc == NGX_HTTP_REALTIME_PMD_DONE);
        ensure(len == size && (size == 0 || memcmp(out, data, size) == 0));

    } else {
        abort();
    }

    free(packed);

    return 0;
}
