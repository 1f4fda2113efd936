
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the messages between instances on Redis
 * (ngx_http_realtime_sync_codec.c).  A message that parses must lie
 * within the input, its parts in order and without overlap; written
 * again from its parts it must parse to the same parts.  Any broken
 * invariant aborts.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_sync_codec.h"
#include "fuzz.h"


static int
inside(const uint8_t *data, size_t size, const unsigned char *p, size_t len)
{
    return len == 0 || (p >= data && p + len <= data + size);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                          *buf;
    size_t                         n, cap;
    ngx_http_realtime_sync_msg_t   m, again;

    if (ngx_http_realtime_sync_parse(data, size, 128, 256, &m) != 0) {
        return 0;
    }

    ensure(m.version == 1 || m.version == 2);
    ensure(inside(data, size, m.instance, m.instance_len));
    ensure(m.target_len <= 128 || m.version == 1);
    ensure(m.target_len <= 256 && m.except_len <= 256);

    if (m.json == NULL) {
        ensure(m.version == 1 && m.type == 4);
        return 0;
    }

    ensure(inside(data, size, m.target, m.target_len));
    ensure(inside(data, size, m.except, m.except_len));
    ensure(inside(data, size, m.json, m.json_len));
    ensure(m.json + m.json_len == data + size);
    ensure(m.except == m.target + m.target_len);
    ensure(m.json == m.except + m.except_len);

    if (m.version == 2) {
        ensure(m.offset >= 1 && m.target_len >= 1 && m.instance_len == 16);
        ensure(inside(data, size, m.epoch, 16));
        ensure(m.json_len >= 2 && m.json[0] == '{'
               && m.json[m.json_len - 1] == '}');
    }

    /* written again, it reads the same */

    cap = size + 128;
    buf = malloc(cap);
    ensure(buf != NULL);

    /* the instance and the epoch are bytes: copied, not printed */

    memcpy(buf, m.version == 1 ? "rt1 " : "rt2 ", 4);
    memcpy(buf + 4, m.instance, m.instance_len);
    n = 4 + m.instance_len;

    if (m.version == 1) {
        n += (size_t) snprintf(buf + n, cap - n, " %u %zu %zu\n", m.type,
                               m.target_len, m.except_len);
    } else {
        n += (size_t) snprintf(buf + n, cap - n, " %llu %llu ",
                               (unsigned long long) m.skip,
                               (unsigned long long) m.offset);
        memcpy(buf + n, m.epoch, 16);
        n += 16;
        n += (size_t) snprintf(buf + n, cap - n, " %zu %zu\n",
                               m.target_len, m.except_len);
    }

    ensure(n + m.target_len + m.except_len + m.json_len <= cap);
    memcpy(buf + n, m.target, m.target_len);
    n += m.target_len;
    memcpy(buf + n, m.except, m.except_len);
    n += m.except_len;
    memcpy(buf + n, m.json, m.json_len);
    n += m.json_len;

    ensure(ngx_http_realtime_sync_parse((unsigned char *) buf, n, 128, 256,
                                        &again) == 0);
    ensure(again.version == m.version && again.type == m.type
           && again.skip == m.skip && again.offset == m.offset);
    ensure(again.target_len == m.target_len
           && memcmp(again.target, m.target, m.target_len) == 0);
    ensure(again.except_len == m.except_len
           && memcmp(again.except, m.except, m.except_len) == 0);
    ensure(again.json_len == m.json_len
           && memcmp(again.json, m.json, m.json_len) == 0);

    free(buf);

    return 0;
}
