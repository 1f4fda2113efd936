
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of permessage-deflate (ngx_http_realtime_deflate.c): the
 * negotiation of offers as RFC 7692 writes them, RFC 7692's own
 * example, round trips through the deflater and the inflater, an
 * inflate given room a little at a time, and streams that are not
 * deflate.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_realtime_deflate.h"
#include "unit.h"


#define ANSWER  "permessage-deflate; server_no_context_takeover; " \
                "client_no_context_takeover"


static unsigned char  answer[NGX_HTTP_REALTIME_PMD_RESPONSE_MAX];
static size_t         answer_len;


static int
offer(const char *value, unsigned *bits)
{
    int                             rc;
    ngx_http_realtime_pmd_params_t  p;

    answer_len = 0;
    rc = ngx_http_realtime_pmd_negotiate((const unsigned char *) value,
                                         strlen(value), &p, answer,
                                         &answer_len);
    if (rc && bits) {
        *bits = p.server_bits;
    }

    return rc;
}


static int
answered(const char *s)
{
    return answer_len == strlen(s) && memcmp(answer, s, answer_len) == 0;
}


static void
test_negotiate(void)
{
    unsigned  bits;

    test_begin("negotiate");

    CHECK(offer("permessage-deflate", &bits) && bits == 15);
    CHECK(answered(ANSWER));

    /* what browsers and python websockets offer */
    CHECK(offer("permessage-deflate; client_max_window_bits", &bits)
          && bits == 15 && answered(ANSWER));
    CHECK(offer("permessage-deflate; client_max_window_bits=12; "
                "server_no_context_takeover", &bits) && bits == 15);

    /* the server's window as asked, and said in the answer */
    CHECK(offer("permessage-deflate; server_max_window_bits=10", &bits)
          && bits == 10);
    CHECK(answered(ANSWER "; server_max_window_bits=10"));
    CHECK(offer("permessage-deflate;server_max_window_bits=\"9\"", &bits)
          && bits == 9 && answered(ANSWER "; server_max_window_bits=9"));
    CHECK(offer("permessage-deflate; server_max_window_bits=15", &bits)
          && bits == 15 && answered(ANSWER "; server_max_window_bits=15"));

    /* case and spaces */
    CHECK(offer("  Permessage-Deflate ;  Client_No_Context_Takeover ",
                &bits));

    /* the first acceptable offer of a list: 8 bits cannot be made */
    CHECK(offer("permessage-deflate; server_max_window_bits=8, "
                "permessage-deflate; server_max_window_bits=11", &bits)
          && bits == 11);
    CHECK(offer("x-webkit-deflate-frame, permessage-deflate", &bits)
          && bits == 15);
    CHECK(offer("foo; bar=\"a b\", permessage-deflate", &bits));

    /* declined offers */
    CHECK(!offer("permessage-deflate; server_max_window_bits=8", NULL));
    CHECK(!offer("permessage-deflate; server_max_window_bits", NULL));
    CHECK(!offer("permessage-deflate; server_max_window_bits=16", NULL));
    CHECK(!offer("permessage-deflate; server_max_window_bits=010", NULL));
    CHECK(!offer("permessage-deflate; client_max_window_bits=7", NULL));
    CHECK(!offer("permessage-deflate; server_no_context_takeover; "
                 "server_no_context_takeover", NULL));
    CHECK(!offer("permessage-deflate; client_no_context_takeover=1", NULL));
    CHECK(!offer("permessage-deflate; foo", NULL));
    CHECK(!offer("x-webkit-deflate-frame", NULL));
    CHECK(!offer("", NULL));
    CHECK(answer_len == 0);

    /* empty elements of the list are skipped (RFC 7230 7) */
    CHECK(offer("permessage-deflate, ,", &bits) && bits == 15);
    CHECK(offer(",permessage-deflate", &bits) && bits == 15);
    CHECK(offer(" , ,permessage-deflate;server_max_window_bits=9,", &bits)
          && bits == 9);
    CHECK(!offer(" , , ", NULL));

    /* malformed: nothing is taken, not even a good offer before it */
    CHECK(!offer("permessage-deflate; =1", NULL));
    CHECK(!offer("permessage-deflate; a=\"1", NULL));
    CHECK(!offer("permessage-deflate; a=", NULL));
    CHECK(!offer("permessage-deflate x", NULL));
    CHECK(!offer("permessage-deflate;, permessage-deflate", NULL));

    test_end();
}


static size_t
inflate_all(const unsigned char *in, size_t len, unsigned char *out,
    size_t size, size_t step, int *result)
{
    size_t                             have, n;
    ngx_http_realtime_pmd_inflater_t   inf;

    memset(&inf, 0, sizeof(inf));
    have = 0;

    *result = ngx_http_realtime_pmd_inflate_start(&inf, in, len);

    while (*result == NGX_HTTP_REALTIME_PMD_DONE
           || *result == NGX_HTTP_REALTIME_PMD_FULL)
    {
        n = size - have < step ? size - have : step;
        *result = ngx_http_realtime_pmd_inflate(&inf, out + have, n, &n);
        have += n;

        if (*result != NGX_HTTP_REALTIME_PMD_FULL || have == size) {
            break;
        }
    }

    inflateEnd(&inf.zs);

    return have;
}


static void
test_rfc_example(void)
{
    int            rc;
    size_t         n;
    unsigned char  out[64];
    z_stream       zs;

    /* RFC 7692 7.2.3.1: "Hello", compressed */
    static const unsigned char  hello[] = {
        0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00
    };

    /* 7.2.3.2: the same in a stored (uncompressed) block */
    static const unsigned char  stored[] = {
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00
    };

    test_begin("rfc_example");

    n = inflate_all(hello, sizeof(hello), out, sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_DONE && n == 5
          && memcmp(out, "Hello", 5) == 0);

    n = inflate_all(stored, sizeof(stored), out, sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_DONE && n == 5
          && memcmp(out, "Hello", 5) == 0);

    /* the deflater makes the RFC's bytes */
    CHECK(ngx_http_realtime_pmd_deflater_init(&zs, Z_DEFAULT_COMPRESSION,
                                              15) == Z_OK);
    n = ngx_http_realtime_pmd_deflate(&zs, (const unsigned char *) "Hello",
                                      5, out);
    CHECK(n == sizeof(hello) && memcmp(out, hello, n) == 0);

    /* and again, with nothing carried over from the first message */
    n = ngx_http_realtime_pmd_deflate(&zs, (const unsigned char *) "Hello",
                                      5, out);
    CHECK(n == sizeof(hello) && memcmp(out, hello, n) == 0);
    deflateEnd(&zs);

    test_end();
}


static void
test_round_trips(void)
{
    int             rc;
    size_t          len, n, i, step;
    unsigned        bits, level;
    unsigned char  *in, *packed, *out;
    z_stream        zs;

    test_begin("round_trips");

    len = 200000;
    in = xmalloc(len);
    packed = xmalloc(ngx_http_realtime_pmd_bound(len));
    out = xmalloc(len + 1);

    /* compressible text, then noise that deflate stores */
    for (i = 0; i < len / 2; i++) {
        in[i] = (unsigned char) "{\"event\":\"move\",\"x\":12}"[i % 23];
    }

    for (i = len / 2; i < len; i++) {
        in[i] = (unsigned char) ((i * 2654435761u) >> 13);
    }

    for (bits = 9; bits <= 15; bits += 3) {
        for (level = 1; level <= 9; level += 8) {
            CHECK(ngx_http_realtime_pmd_deflater_init(&zs, (int) level,
                                                      bits) == Z_OK);

            for (step = 1000; step <= len + 1; step *= 10) {
                n = ngx_http_realtime_pmd_deflate(&zs, in, len, packed);
                CHECK(n > 0 && n <= ngx_http_realtime_pmd_bound(len));

                n = inflate_all(packed, n, out, len + 1, step, &rc);
                CHECK(rc == NGX_HTTP_REALTIME_PMD_DONE && n == len
                      && memcmp(in, out, len) == 0);
            }

            /* an empty message, and a byte */
            n = ngx_http_realtime_pmd_deflate(&zs, in, 0, packed);
            n = inflate_all(packed, n, out, 16, 16, &rc);
            CHECK(rc == NGX_HTTP_REALTIME_PMD_DONE && n == 0);

            n = ngx_http_realtime_pmd_deflate(&zs, in, 1, packed);
            n = inflate_all(packed, n, out, 16, 16, &rc);
            CHECK(rc == NGX_HTTP_REALTIME_PMD_DONE && n == 1
                  && out[0] == in[0]);

            deflateEnd(&zs);
        }
    }

    /* room for less than the message: FULL, never more than given */
    CHECK(ngx_http_realtime_pmd_deflater_init(&zs, 1, 15) == Z_OK);
    n = ngx_http_realtime_pmd_deflate(&zs, in, len, packed);
    n = inflate_all(packed, n, out, 1000, 100, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_FULL && n == 1000);
    deflateEnd(&zs);

    free(in);
    free(packed);
    free(out);

    test_end();
}


static void
test_not_deflate(void)
{
    int            rc;
    size_t         n;
    unsigned char  out[64];

    /* a reserved block type (BTYPE 11) */
    static const unsigned char  bad_type[] = { 0x07, 0x00 };

    /* a stored block whose length and its complement disagree */
    static const unsigned char  bad_len[] = {
        0x00, 0x05, 0x00, 0x00, 0x00, 0x48
    };

    /* a stored block of 100 bytes that has 2 */
    static const unsigned char  cut[] = {
        0x00, 0x64, 0x00, 0x9b, 0xff, 0x48, 0x65
    };

    test_begin("not_deflate");

    inflate_all(bad_type, sizeof(bad_type), out, sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_ERROR);

    inflate_all(bad_len, sizeof(bad_len), out, sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_ERROR);

    n = inflate_all(cut, sizeof(cut), out, sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_ERROR);
    (void) n;

    /* a compressed message cut short: its last bytes missing */
    n = inflate_all((const unsigned char *) "\xf2\x48\xcd", 3, out,
                    sizeof(out), 64, &rc);
    CHECK(rc == NGX_HTTP_REALTIME_PMD_ERROR);

    test_end();
}


int
main(void)
{
    test_negotiate();
    test_rfc_example();
    test_round_trips();
    test_not_deflate();

    return test_summary();
}
