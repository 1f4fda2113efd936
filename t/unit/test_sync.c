
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the messages between instances on Redis
 * (ngx_http_realtime_sync_codec.c): rt1 and rt2, every field, and every
 * way a message is not ours.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_realtime_sync_codec.h"
#include "unit.h"


#define INST  "0123456789abcdef"
#define EPOCH "Zt3kQ-9c_a1B2c3D"


static int
parse(const char *s, ngx_http_realtime_sync_msg_t *m)
{
    return ngx_http_realtime_sync_parse((const unsigned char *) s,
                                        strlen(s), 128, 256, m);
}


static int
is(const unsigned char *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}


static void
test_rt1(void)
{
    ngx_http_realtime_sync_msg_t  m;

    test_begin("rt1");

    CHECK(parse("rt1 abc 1 4 2\nroomu2{\"event\":\"m\"}", &m) == 0);
    CHECK(m.version == 1 && m.type == 1);
    CHECK(is(m.instance, m.instance_len, "abc"));
    CHECK(is(m.target, m.target_len, "room"));
    CHECK(is(m.except, m.except_len, "u2"));
    CHECK(is(m.json, m.json_len, "{\"event\":\"m\"}"));

    /* a broadcast: no target */
    CHECK(parse("rt1 abc 3 0 0\n{}", &m) == 0);
    CHECK(m.type == 3 && m.target_len == 0 && m.except_len == 0);
    CHECK(is(m.json, m.json_len, "{}"));

    /* the users changed: the header only */
    CHECK(parse("rt1 " INST " 4 0 ", &m) == 0);
    CHECK(m.type == 4 && m.json == NULL);

    test_end();
}


static void
test_rt2(void)
{
    ngx_http_realtime_sync_msg_t  m;

    test_begin("rt2");

    CHECK(parse("rt2 " INST " 7 42 " EPOCH " 1 0\nr{\"event\":\"m\"}", &m)
          == 0);
    CHECK(m.version == 2 && m.skip == 7 && m.offset == 42);
    CHECK(is(m.instance, m.instance_len, INST));
    CHECK(memcmp(m.epoch, EPOCH, 16) == 0);
    CHECK(is(m.target, m.target_len, "r"));
    CHECK(m.except_len == 0);
    CHECK(is(m.json, m.json_len, "{\"event\":\"m\"}"));

    /* the largest offset, and an except */
    CHECK(parse("rt2 " INST " 0 9999999999999999999 " EPOCH
                " 2 3\nabxyz{}", &m) == 0);
    CHECK(m.offset == 9999999999999999999ULL);
    CHECK(is(m.except, m.except_len, "xyz"));

    test_end();
}


static void
test_not_ours(void)
{
    size_t                        i;
    ngx_http_realtime_sync_msg_t  m;
    static const char            *bad[] = {
        "", "rt", "rt1", "rt3 a 1 0 0\n{}", "xt1 a 1 0 0\n{}",
        "rt1 ", "rt1  1 0 0\n{}", "rt1 a", "rt1 a 5 0 0\n{}",
        "rt1 a 0 0 0\n{}", "rt1 a 1 0 0{}", "rt1 a 1 x 0\n{}",
        "rt1 a 1 9 0\nroom", "rt1 a 1 300 0\n", "rt1 a 1 0 257\n",
        "rt1 a 1 12345678901234567890 0\n",
        "rt2 " INST " 0 0 " EPOCH " 1 0\nr{}",         /* offset 0 */
        "rt2 " INST " 0 1 " EPOCH " 0 0\n{}",          /* no room */
        "rt2 " INST " 0 1 " EPOCH " 1 0\nr",           /* no object */
        "rt2 " INST " 0 1 " EPOCH " 1 0\nr[]",
        "rt2 " INST " 0 1 " EPOCH " 1 0\nr}",
        "rt2 " INST " 0 1 " EPOCH " 129 0\nr{}",       /* too long */
        "rt2 " INST " 0 1 short 1 0\nr{}",
        "rt2 0123456789abcde 0 1 " EPOCH " 1 0\nr{}",  /* 15 */
        "rt2 " INST " x 1 " EPOCH " 1 0\nr{}",
        "rt2 " INST " 0 1 " EPOCH " 1 0 r{}",
        "rt2 " INST " 0 1 " EPOCH " 5 0\nr{}",         /* beyond */
        NULL
    };

    test_begin("not_ours");

    for (i = 0; bad[i]; i++) {
        if (parse(bad[i], &m) != -1) {
            printf("  accepted: \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }

    CHECK(ngx_http_realtime_sync_parse(NULL, 0, 128, 256, &m) == -1);

    test_end();
}


int
main(void)
{
    test_rt1();
    test_rt2();
    test_not_ours();

    return test_summary();
}
