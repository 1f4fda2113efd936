
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of Redis Cluster's addressing
 * (ngx_http_realtime_cluster_codec.c).  A slot is below 16384 and
 * depends on the hash tag alone when there is one; a redirection that
 * parses lies within the input and, written again, parses the same.
 * Any broken invariant aborts.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_cluster_codec.h"
#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                                 *buf;
    size_t                                n, cap;
    unsigned                              s;
    const uint8_t                        *open, *close;
    ngx_http_realtime_cluster_redirect_t  r, again;

    s = ngx_http_realtime_cluster_slot(data, size);
    ensure(s < NGX_HTTP_REALTIME_CLUSTER_SLOTS);

    open = size ? memchr(data, '{', size) : NULL;

    if (open) {
        close = memchr(open + 1, '}', size - (size_t) (open + 1 - data));

        if (close && close > open + 1) {
            ensure(s == ngx_http_realtime_cluster_slot(open + 1,
                                         (size_t) (close - open - 1)));
        }
    }

    if (ngx_http_realtime_cluster_redirect(data, size, &r) != 0) {
        return 0;
    }

    ensure(r.slot < NGX_HTTP_REALTIME_CLUSTER_SLOTS);
    ensure(r.port >= 1 && r.port <= 65535);
    ensure(r.host_len == 0
           || (r.host >= data && r.host + r.host_len <= data + size));

    cap = r.host_len + 64;
    buf = malloc(cap);
    ensure(buf != NULL);

    n = (size_t) snprintf(buf, cap, "%s %u ", r.ask ? "ASK" : "MOVED",
                          r.slot);
    memcpy(buf + n, r.host, r.host_len);
    n += r.host_len;
    n += (size_t) snprintf(buf + n, cap - n, ":%u", r.port);

    ensure(ngx_http_realtime_cluster_redirect((unsigned char *) buf, n,
                                              &again) == 0);
    ensure(again.ask == r.ask && again.slot == r.slot
           && again.port == r.port && again.host_len == r.host_len
           && memcmp(again.host, r.host, r.host_len) == 0);

    /* written the same way, only if it was written canonically */
    ensure(n <= size);

    free(buf);

    return 0;
}
