
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of Redis Cluster's addressing
 * (ngx_http_realtime_cluster_codec.c): key slots with and without hash
 * tags, against the values of CLUSTER KEYSLOT, and redirections.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_realtime_cluster_codec.h"
#include "unit.h"


static unsigned
slot(const char *key)
{
    return ngx_http_realtime_cluster_slot((const unsigned char *) key,
                                          strlen(key));
}


static int
redirect(const char *s, ngx_http_realtime_cluster_redirect_t *r)
{
    return ngx_http_realtime_cluster_redirect((const unsigned char *) s,
                                              strlen(s), r);
}


static int
is(const unsigned char *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}


static void
test_slots(void)
{
    test_begin("slots");

    /* CLUSTER KEYSLOT of Redis 7.0 */
    CHECK(slot("123456789") == 12739);
    CHECK(slot("foo") == 12182);
    CHECK(slot("bar") == 5061);
    CHECK(slot("") == 0);

    /* the tag alone is hashed */
    CHECK(slot("{user1000}.following") == slot("user1000"));
    CHECK(slot("{user1000}.followers") == slot("user1000"));
    CHECK(slot("rt:room:{battle:42}") == slot("battle:42"));
    CHECK(slot("rt:history:{battle:42}") == slot("rt:offset:{battle:42}"));

    /* the first '{' and the first '}' after it */
    CHECK(slot("foo{bar}{zap}") == slot("bar"));
    CHECK(slot("foo{{bar}}zap") == slot("{bar"));

    /* an empty tag, or none closed: the whole key */
    CHECK(slot("foo{}{bar}") != slot("bar"));
    CHECK(slot("foo{bar") != slot("bar"));
    CHECK(slot("a}b{c}") == slot("c"));

    test_end();
}


static void
test_redirects(void)
{
    ngx_http_realtime_cluster_redirect_t  r;

    test_begin("redirects");

    CHECK(redirect("MOVED 3999 127.0.0.1:6381", &r) == 0);
    CHECK(r.ask == 0 && r.slot == 3999 && r.port == 6381);
    CHECK(is(r.host, r.host_len, "127.0.0.1"));

    CHECK(redirect("ASK 16383 10.0.0.2:7000", &r) == 0);
    CHECK(r.ask == 1 && r.slot == 16383 && r.port == 7000);
    CHECK(is(r.host, r.host_len, "10.0.0.2"));

    /* IPv6 without brackets: the port after the last colon */
    CHECK(redirect("MOVED 0 ::1:7001", &r) == 0);
    CHECK(r.slot == 0 && r.port == 7001 && is(r.host, r.host_len, "::1"));

    /* an unknown endpoint: the node that answered */
    CHECK(redirect("MOVED 12 :7002", &r) == 0);
    CHECK(r.host_len == 0 && r.port == 7002);

    test_end();
}


static void
test_not_redirects(void)
{
    size_t                                i;
    ngx_http_realtime_cluster_redirect_t  r;
    static const char                    *bad[] = {
        "",
        "MOVED",
        "MOVED ",
        "MOVED 1",
        "MOVED 1 ",
        "MOVED 1 host",
        "MOVED 1 host:",
        "MOVED 1 host:0",
        "MOVED 1 host:65536",
        "MOVED 1 host:70a",
        "MOVED 16384 host:1",
        "MOVED -1 host:1",
        "MOVED  1 host:1",
        "MOVED 1 ho st:1",
        "MOVED 1 host:1 ",
        "moved 1 host:1",
        "ASKING 1 host:1",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        "ERR unknown command",
        NULL
    };

    test_begin("not_redirects");

    for (i = 0; bad[i]; i++) {
        if (redirect(bad[i], &r) != -1) {
            printf("  accepted: \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }

    CHECK(ngx_http_realtime_cluster_redirect(NULL, 0, &r) == -1);

    test_end();
}


int
main(void)
{
    test_slots();
    test_redirects();
    test_not_redirects();

    return test_summary();
}
