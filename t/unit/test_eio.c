
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the Engine.IO and Socket.IO packet codec: every packet
 * type, polling payloads joined and split at every offset, base64 at
 * every length, every Socket.IO header form and error, the data each
 * type needs, binary placeholders, the exact encoded bytes, round
 * trips, and every truncation of valid packets.  Input is copied into
 * buffers of exactly its length, so that the sanitizers see any read
 * past the end.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_realtime_eio.h"

#define UNIT_WHERE_SIZE  96
#include "unit.h"


#define EIO_MESSAGE  NGX_HTTP_REALTIME_EIO_MESSAGE
#define SEP          "\x1e"

#define CONNECT      NGX_HTTP_REALTIME_SIO_CONNECT
#define DISCONNECT   NGX_HTTP_REALTIME_SIO_DISCONNECT
#define EVENT        NGX_HTTP_REALTIME_SIO_EVENT
#define ACK          NGX_HTTP_REALTIME_SIO_ACK
#define CONNECT_ERR  NGX_HTTP_REALTIME_SIO_CONNECT_ERROR
#define BIN_EVENT    NGX_HTTP_REALTIME_SIO_BINARY_EVENT
#define BIN_ACK      NGX_HTTP_REALTIME_SIO_BINARY_ACK

#define NONE         (-1)


/* a copy of s/len in a buffer of exactly len bytes */

static unsigned char *
copy(const void *s, size_t len)
{
    unsigned char  *p;

    p = xmalloc(len);

    if (len) {
        memcpy(p, s, len);
    }

    return p;
}


static int
bytes_is(const void *p, size_t len, const char *s)
{
    return len == strlen(s) && (len == 0 || memcmp(p, s, len) == 0);
}


static void
where(const char *what, const void *p, size_t len)
{
    size_t               i, n;
    const unsigned char  *s;

    s = p;
    n = (size_t) snprintf(test_where, sizeof(test_where), "%s ", what);

    for (i = 0; i < len && n + 5 < sizeof(test_where); i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            test_where[n++] = (char) s[i];

        } else {
            n += (size_t) snprintf(test_where + n, 5, "\\x%02x", s[i]);
        }
    }

    test_where[n] = '\0';
}


/* Engine.IO packets */

static int
eio(const char *s, size_t len, int binary,
    ngx_http_realtime_eio_packet_t *pkt, unsigned char **buf)
{
    where("eio", s, len);

    *buf = copy(s, len);

    return ngx_http_realtime_eio_parse(*buf, len, binary, pkt);
}


#define EIO_OK(s, type, bin, data)                                            \
    eio_ok(__LINE__, s, sizeof(s) - 1, type, bin, data)
#define EIO_ERR(s)  eio_err(__LINE__, s, sizeof(s) - 1)


static void
eio_ok(int line, const char *s, size_t len, int type, int bin,
    const char *data)
{
    unsigned char                   *buf;
    ngx_http_realtime_eio_packet_t   pkt;

    CHECK_AT(line, eio(s, len, 0, &pkt, &buf) == 0);
    CHECK_AT(line, pkt.type == type);
    CHECK_AT(line, pkt.binary == bin);
    CHECK_AT(line, pkt.data == buf + 1);
    CHECK_AT(line, bytes_is(pkt.data, pkt.len, data));

    free(buf);
}


static void
eio_err(int line, const char *s, size_t len)
{
    unsigned char                   *buf;
    ngx_http_realtime_eio_packet_t   pkt;

    CHECK_AT(line, eio(s, len, 0, &pkt, &buf) == -1);

    free(buf);
}


static void
test_eio_types(void)
{
    int                              t;
    char                             s[8];
    unsigned char                   *buf;
    ngx_http_realtime_eio_packet_t   pkt;

    test_begin("eio types");

    for (t = 0; t <= 6; t++) {
        s[0] = (char) ('0' + t);
        memcpy(s + 1, "probe", 5);

        CHECK(eio(s, 6, 0, &pkt, &buf) == 0);
        CHECK(pkt.type == t && pkt.binary == 0);
        CHECK(pkt.data == buf + 1 && bytes_is(pkt.data, pkt.len, "probe"));
        free(buf);

        /* the type alone */

        CHECK(eio(s, 1, 0, &pkt, &buf) == 0);
        CHECK(pkt.type == t && pkt.binary == 0 && pkt.len == 0);
        free(buf);
    }

    EIO_OK("0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":25000}", 0,
           0, "{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":25000}");
    EIO_OK("4hello \xe2\x82\xac", EIO_MESSAGE, 0, "hello \xe2\x82\xac");
    EIO_OK("4" SEP, EIO_MESSAGE, 0, SEP);
    EIO_OK("44", EIO_MESSAGE, 0, "4");

    test_end();

    test_begin("eio errors");

    EIO_ERR("");
    EIO_ERR("7");
    EIO_ERR("8x");
    EIO_ERR("9");
    EIO_ERR("/");
    EIO_ERR(":");
    EIO_ERR("a");
    EIO_ERR("B");
    EIO_ERR("Bab");
    EIO_ERR(" 4");
    EIO_ERR(SEP);
    EIO_ERR("\x00" "4");
    EIO_ERR("\xff");

    test_end();

    test_begin("eio binary frames");

    CHECK(eio("\x00\x01\xff", 3, 1, &pkt, &buf) == 0);
    CHECK(pkt.type == EIO_MESSAGE && pkt.binary == 1);
    CHECK(pkt.data == buf && pkt.len == 3);
    free(buf);

    /* as it is: no type byte, no base64 */

    CHECK(eio("bAQID", 5, 1, &pkt, &buf) == 0);
    CHECK(pkt.type == EIO_MESSAGE && pkt.binary == 1);
    CHECK(pkt.data == buf && pkt.len == 5);
    free(buf);

    CHECK(eio("", 0, 1, &pkt, &buf) == 0);
    CHECK(pkt.type == EIO_MESSAGE && pkt.binary == 1 && pkt.len == 0);
    free(buf);

    test_end();
}


static void
test_eio_b(void)
{
    unsigned char                   *buf, out[8];
    ngx_http_realtime_eio_packet_t   pkt;

    test_begin("eio b packets");

    EIO_OK("b", EIO_MESSAGE, 1, "");
    EIO_OK("bAQID", EIO_MESSAGE, 1, "AQID");
    EIO_OK("bAQ==", EIO_MESSAGE, 1, "AQ==");
    EIO_OK("bAQI=", EIO_MESSAGE, 1, "AQI=");
    EIO_OK("b+/+/", EIO_MESSAGE, 1, "+/+/");
    EIO_OK("bAQIDBA==", EIO_MESSAGE, 1, "AQIDBA==");

    CHECK(eio("bAQIDBA==", 9, 0, &pkt, &buf) == 0);
    CHECK(ngx_http_realtime_eio_base64_decoded_len(pkt.data, pkt.len) == 4);
    CHECK(ngx_http_realtime_eio_base64_decode(out, pkt.data, pkt.len) == 4);
    CHECK(memcmp(out, "\x01\x02\x03\x04", 4) == 0);
    free(buf);

    EIO_ERR("bA");
    EIO_ERR("bAQI");
    EIO_ERR("bAQ=");
    EIO_ERR("bA===");
    EIO_ERR("b====");
    EIO_ERR("bAQ=A");
    EIO_ERR("bAQ==AQID");
    EIO_ERR("bAQ==\n");
    EIO_ERR("bAR==");              /* bits left over */
    EIO_ERR("bAQJ=");
    EIO_ERR("bAQ =");
    EIO_ERR("b AQID");
    EIO_ERR("bAQID\n");
    EIO_ERR("bAQ\r\nID");
    EIO_ERR("b-_-_");              /* the URL alphabet */
    EIO_ERR("bAQI\x00");
    EIO_ERR("bAQI\xc3");

    test_end();
}


/* polling payloads */

static const char  *payload_seen[16];
static size_t       payload_lens[16];


/* iterates; returns the number of packets, each checked in place */

static unsigned
payload(const char *s, size_t len)
{
    size_t                len1;
    unsigned              n;
    unsigned char        *buf;
    const unsigned char  *pos, *end, *p, *expect;

    where("payload", s, len);

    buf = copy(s, len);
    pos = buf;
    end = buf + len;
    expect = buf;
    n = 0;

    while (ngx_http_realtime_eio_payload_next(&pos, end, &p, &len1)) {
        CHECK(p == expect);
        CHECK(p + len1 <= end);
        CHECK(memchr(p, 0x1e, len1) == NULL);
        CHECK(p + len1 == end || p[len1] == 0x1e);
        CHECK(pos == (p + len1 == end ? end : p + len1 + 1));

        if (n < 16) {
            payload_seen[n] = s + (p - buf);
            payload_lens[n] = len1;
        }

        expect = pos;
        n++;

        if (n > len + 1) {
            CHECK(!"too many packets");
            break;
        }
    }

    CHECK(pos == end);

    /* and at the end it stays there */

    CHECK(ngx_http_realtime_eio_payload_next(&pos, end, &p, &len1) == 0);

    free(buf);

    return n;
}


static void
test_payload(void)
{
    size_t        i, j, k, a, b, c, len;
    unsigned      n;
    char          s[256];

    static const char  *packets[] = {
        "4hello", "2", "3probe", "bAQID", "40/admin,{\"a\":1}",
        "6", "442[\"m\",\"x\\u001e\"]", "4\xe2\x82\xac"
    };
    static const char   text[] = "42[\"chat\",\"hi\"]";

#define NPACKETS  (sizeof(packets) / sizeof(packets[0]))

    test_begin("payload");

    CHECK(payload("", 0) == 0);

    CHECK(payload("4a", 2) == 1);
    CHECK(bytes_is(payload_seen[0], payload_lens[0], "4a"));

    CHECK(payload("4a" SEP "4b", 5) == 2);
    CHECK(bytes_is(payload_seen[1], payload_lens[1], "4b"));

    CHECK(payload("4a" SEP SEP "4b", 6) == 3);
    CHECK(payload_lens[1] == 0);
    CHECK(bytes_is(payload_seen[2], payload_lens[2], "4b"));

    CHECK(payload(SEP "4a", 3) == 2);
    CHECK(payload_lens[0] == 0);
    CHECK(bytes_is(payload_seen[1], payload_lens[1], "4a"));

    /* a separator at the end starts no packet */

    CHECK(payload("4a" SEP, 3) == 1);
    CHECK(payload(SEP, 1) == 1 && payload_lens[0] == 0);
    CHECK(payload(SEP SEP, 2) == 2);

    test_end();

    /* every sequence of up to three packets joined gives them back */

    test_begin("payload joined");

    /* NPACKETS stands for no packet there */

    for (a = 0; a < NPACKETS; a++) {
        for (b = 0; b <= NPACKETS; b++) {
            for (c = 0; c <= NPACKETS; c++) {
                if (b == NPACKETS && c != NPACKETS) {
                    continue;
                }

                len = (size_t) snprintf(s, sizeof(s), "%s", packets[a]);
                n = 1;

                if (b < NPACKETS) {
                    len += (size_t) snprintf(s + len, sizeof(s) - len,
                                             SEP "%s", packets[b]);
                    n++;
                }

                if (b < NPACKETS && c < NPACKETS) {
                    len += (size_t) snprintf(s + len, sizeof(s) - len,
                                             SEP "%s", packets[c]);
                    n++;
                }

                CHECK(payload(s, len) == n);
                CHECK(bytes_is(payload_seen[0], payload_lens[0],
                               packets[a]));

                if (n > 1) {
                    CHECK(bytes_is(payload_seen[1], payload_lens[1],
                                   packets[b]));
                }

                if (n > 2) {
                    CHECK(bytes_is(payload_seen[2], payload_lens[2],
                                   packets[c]));
                }
            }
        }
    }

    test_end();

    /* one or two separators put at every offset of a packet */

    test_begin("payload split");

    len = sizeof(text) - 1;

    for (i = 0; i <= len; i++) {
        memcpy(s, text, i);
        s[i] = 0x1e;
        memcpy(s + i + 1, text + i, len - i);

        n = payload(s, len + 1);

        CHECK(n == (i == len ? 1u : 2u));
        CHECK(payload_seen[0] == s && payload_lens[0] == i);

        if (i < len) {
            CHECK(payload_seen[1] == s + i + 1);
            CHECK(payload_lens[1] == len - i);
        }

        for (j = i; j <= len; j++) {
            memcpy(s, text, i);
            s[i] = 0x1e;
            memcpy(s + i + 1, text + i, j - i);
            s[j + 1] = 0x1e;
            memcpy(s + j + 2, text + j, len - j);

            n = payload(s, len + 2);

            CHECK(n == (j == len ? 2u : 3u));
            CHECK(payload_lens[0] == i && payload_lens[1] == j - i);

            if (j < len) {
                CHECK(payload_lens[2] == len - j);
            }

            k = 0;

            /* the pieces put back together are the packet */

            memmove(s + k, payload_seen[0], payload_lens[0]);
            k += payload_lens[0];
            memmove(s + k, payload_seen[1], payload_lens[1]);
            k += payload_lens[1];

            if (n == 3) {
                memmove(s + k, payload_seen[2], payload_lens[2]);
                k += payload_lens[2];
            }

            CHECK(k == len && memcmp(s, text, len) == 0);
        }
    }

    test_end();
}


/* base64 */

static void
b64_vector(int line, const char *plain, const char *enc)
{
    size_t          n, m;
    unsigned char  *out, *dec, *in;

    n = strlen(plain);
    m = strlen(enc);

    CHECK_AT(line, ngx_http_realtime_eio_base64_encoded_len(n) == m);

    out = xmalloc(m);
    CHECK_AT(line, ngx_http_realtime_eio_base64_encode(out,
                       (const unsigned char *) plain, n) == m);
    CHECK_AT(line, memcmp(out, enc, m) == 0);

    in = copy(enc, m);
    CHECK_AT(line, ngx_http_realtime_eio_base64_decoded_len(in, m) == n);

    dec = xmalloc(n);
    CHECK_AT(line, ngx_http_realtime_eio_base64_decode(dec, in, m) == n);
    CHECK_AT(line, memcmp(dec, plain, n) == 0);

    free(out);
    free(in);
    free(dec);
}


static void
test_base64(void)
{
    int             c;
    size_t          n, i, m, dlen;
    unsigned char   plain[64], *enc, *dec, bad[8];

    test_begin("base64 vectors");

    b64_vector(__LINE__, "", "");
    b64_vector(__LINE__, "f", "Zg==");
    b64_vector(__LINE__, "fo", "Zm8=");
    b64_vector(__LINE__, "foo", "Zm9v");
    b64_vector(__LINE__, "foob", "Zm9vYg==");
    b64_vector(__LINE__, "fooba", "Zm9vYmE=");
    b64_vector(__LINE__, "foobar", "Zm9vYmFy");
    b64_vector(__LINE__, "\xfb\xff", "+/8=");

    test_end();

    test_begin("base64 every length");

    for (n = 0; n <= sizeof(plain); n++) {
        snprintf(test_where, sizeof(test_where), "length %zu", n);

        for (i = 0; i < n; i++) {
            plain[i] = (unsigned char) (i * 97 + n * 13 + 255);
        }

        m = ngx_http_realtime_eio_base64_encoded_len(n);
        CHECK(m % 4 == 0 && m == (n + 2) / 3 * 4);

        enc = xmalloc(m);
        CHECK(ngx_http_realtime_eio_base64_encode(enc, plain, n) == m);

        dlen = ngx_http_realtime_eio_base64_decoded_len(enc, m);
        CHECK(dlen == n);

        dec = xmalloc(dlen);
        CHECK(ngx_http_realtime_eio_base64_decode(dec, enc, m) == n);
        CHECK(n == 0 || memcmp(dec, plain, n) == 0);

        /* checking only */
        CHECK(ngx_http_realtime_eio_base64_decode(NULL, enc, m) == n);

        /* every shorter length but the multiples of 4 is refused */

        for (i = 0; i < m; i++) {
            if (i % 4) {
                CHECK(ngx_http_realtime_eio_base64_decode(dec, enc, i)
                      == (size_t) -1);
            }
        }

        free(enc);
        free(dec);
    }

    test_end();

    test_begin("base64 bad bytes");

    for (c = 0; c < 256; c++) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '+' || c == '/')
        {
            continue;
        }

        for (i = 0; i < 8; i++) {
            snprintf(test_where, sizeof(test_where), "byte %d at %zu", c, i);
            memcpy(bad, "Zm9vYmFy", 8);
            bad[i] = (unsigned char) c;

            /* "=" is right at the very end or the two last */
            if (c == '=' && (i == 7 || i == 6)) {
                continue;
            }

            CHECK(ngx_http_realtime_eio_base64_decode(plain, bad, 8)
                  == (size_t) -1);
        }
    }

    test_end();

    test_begin("base64 padding");

    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9vYmF=", 8) == (size_t) -1);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9vYg==", 8) == 4);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9vYm==", 8) == (size_t) -1);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9vYk==", 8) == (size_t) -1);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9vYmE=", 8) == 5);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm8=Zm8=", 8) == (size_t) -1);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "Zm9v====", 8) == (size_t) -1);
    CHECK(ngx_http_realtime_eio_base64_decode(plain,
              (const unsigned char *) "=Zm9", 4) == (size_t) -1);

    test_end();
}


/* Socket.IO headers */

static ngx_http_realtime_sio_packet_t  sio;
static const char                     *sio_err;
static char                           *sio_buf;


#define SIO_OK(s, type, att, nsp, id, data)                                   \
    sio_ok(__LINE__, s, sizeof(s) - 1, type, att, nsp, id, data)
#define SIO_ERR(s, e)  sio_fail(__LINE__, s, sizeof(s) - 1, e)


static int
sio_parse(const char *s, size_t len)
{
    free(sio_buf);

    where("sio", s, len);

    sio_buf = (char *) copy(s, len);
    memset(&sio, 0xa5, sizeof(sio));
    sio_err = "(not set)";

    return ngx_http_realtime_sio_parse(sio_buf, len, &sio, &sio_err);
}


static void
sio_ok(int line, const char *s, size_t len, int type, unsigned att,
    const char *nsp, int64_t id, const char *data)
{
    int  rc;

    rc = sio_parse(s, len);

    CHECK_AT(line, rc == 0);

    if (rc != 0) {
        printf("      error: %s\n", sio_err ? sio_err : "(null)");
        return;
    }

    CHECK_AT(line, sio_err == NULL);
    CHECK_AT(line, sio.type == type);
    CHECK_AT(line, sio.attachments == att);
    CHECK_AT(line, bytes_is(sio.nsp, sio.nsp_len, nsp));
    CHECK_AT(line, sio.has_id == (id != NONE));
    CHECK_AT(line, sio.id == (id == NONE ? 0 : (uint64_t) id));
    CHECK_AT(line, bytes_is(sio.data, sio.data_len, data));
    CHECK_AT(line, sio.data == sio_buf + len - sio.data_len);

    /* a namespace the packet names is in it */

    CHECK_AT(line, sio.nsp_len >= 1 && sio.nsp[0] == '/');

    if (sio.nsp_len > 1) {
        CHECK_AT(line, sio.nsp > sio_buf && sio.nsp < sio_buf + len);
    }
}


static void
sio_fail(int line, const char *s, size_t len, const char *e)
{
    int  rc;

    rc = sio_parse(s, len);

    CHECK_AT(line, rc == -1);
    CHECK_AT(line, sio_err != NULL && strcmp(sio_err, e) == 0);

    if (rc == -1 && (sio_err == NULL || strcmp(sio_err, e) != 0)) {
        printf("      got: %s\n", sio_err ? sio_err : "(null)");
    }
}


static void
test_sio_parse(void)
{
    int   t;
    char  s[512], nsp[200];

    test_begin("sio types");

    SIO_OK("0", CONNECT, 0, "/", NONE, "");
    SIO_OK("0{\"token\":\"x\"}", CONNECT, 0, "/", NONE, "{\"token\":\"x\"}");
    SIO_OK("0/admin", CONNECT, 0, "/admin", NONE, "");
    SIO_OK("0/admin,", CONNECT, 0, "/admin", NONE, "");
    SIO_OK("0/admin,{}", CONNECT, 0, "/admin", NONE, "{}");
    SIO_OK("1", DISCONNECT, 0, "/", NONE, "");
    SIO_OK("1/admin,", DISCONNECT, 0, "/admin", NONE, "");
    SIO_OK("1/admin", DISCONNECT, 0, "/admin", NONE, "");
    SIO_OK("2[\"a\",1]", EVENT, 0, "/", NONE, "[\"a\",1]");
    SIO_OK("2/admin,[\"a\"]", EVENT, 0, "/admin", NONE, "[\"a\"]");
    SIO_OK("212[\"a\"]", EVENT, 0, "/", 12, "[\"a\"]");
    SIO_OK("2/admin,12[\"a\"]", EVENT, 0, "/admin", 12, "[\"a\"]");
    SIO_OK("20[\"a\"]", EVENT, 0, "/", 0, "[\"a\"]");
    SIO_OK("2", EVENT, 0, "/", NONE, "");
    SIO_OK("31[\"x\"]", ACK, 0, "/", 1, "[\"x\"]");
    SIO_OK("3/x,7[]", ACK, 0, "/x", 7, "[]");
    SIO_OK("37", ACK, 0, "/", 7, "");
    SIO_OK("4{\"message\":\"no\"}", CONNECT_ERR, 0, "/", NONE,
           "{\"message\":\"no\"}");
    SIO_OK("4/admin,{\"message\":\"no\"}", CONNECT_ERR, 0, "/admin", NONE,
           "{\"message\":\"no\"}");
    SIO_OK("51-[\"b\",{\"_placeholder\":true,\"num\":0}]", BIN_EVENT, 1, "/",
           NONE, "[\"b\",{\"_placeholder\":true,\"num\":0}]");
    SIO_OK("52-/admin,9[\"b\"]", BIN_EVENT, 2, "/admin", 9, "[\"b\"]");
    SIO_OK("50-[\"b\"]", BIN_EVENT, 0, "/", NONE, "[\"b\"]");
    SIO_OK("501-[\"b\"]", BIN_EVENT, 1, "/", NONE, "[\"b\"]");
    SIO_OK("564-[\"b\"]", BIN_EVENT, 64, "/", NONE, "[\"b\"]");
    SIO_OK("61-3[{}]", BIN_ACK, 1, "/", 3, "[{}]");
    SIO_OK("61-/x,3[{}]", BIN_ACK, 1, "/x", 3, "[{}]");

    /* "/" named, or nested; the namespace chars URL paths have */

    SIO_OK("2/,[\"a\"]", EVENT, 0, "/", NONE, "[\"a\"]");
    SIO_OK("2/a/b,[\"a\"]", EVENT, 0, "/a/b", NONE, "[\"a\"]");
    SIO_OK("2/A-z_0.9~%20!$&'()*+;=:@,[\"a\"]", EVENT, 0,
           "/A-z_0.9~%20!$&'()*+;=:@", NONE, "[\"a\"]");

    /* the JSON is not parsed here */

    SIO_OK("2[\"a\"", EVENT, 0, "/", NONE, "[\"a\"");
    SIO_OK("2{", EVENT, 0, "/", NONE, "{");
    SIO_OK("1[]", DISCONNECT, 0, "/", NONE, "[]");

    test_end();

    test_begin("sio ack ids");

    SIO_OK("29223372036854775807[\"a\"]", EVENT, 0, "/", INT64_MAX,
           "[\"a\"]");
    SIO_OK("3009", ACK, 0, "/", 9, "");
    SIO_ERR("29223372036854775808[\"a\"]", "ack id too big");
    SIO_ERR("218446744073709551616[\"a\"]", "ack id too big");
    SIO_ERR("399999999999999999999999999999[]", "ack id too big");
    SIO_ERR("01{}", "unexpected ack id");
    SIO_ERR("0/admin,1{}", "unexpected ack id");
    SIO_ERR("11", "unexpected ack id");
    SIO_ERR("1/x,5", "unexpected ack id");
    SIO_ERR("41{}", "unexpected ack id");
    SIO_ERR("3", "no ack id");
    SIO_ERR("3[]", "no ack id");
    SIO_ERR("3/x,[]", "no ack id");
    SIO_ERR("61-[]", "no ack id");
    SIO_ERR("61-/x,[]", "no ack id");

    test_end();

    test_begin("sio attachments");

    SIO_ERR("5", "no attachment count");
    SIO_ERR("5-[\"a\"]", "no attachment count");
    SIO_ERR("5[\"a\"]", "no attachment count");
    SIO_ERR("6-1[]", "no attachment count");
    SIO_ERR("51", "no '-' after attachments");
    SIO_ERR("51[\"a\"]", "no '-' after attachments");
    SIO_ERR("51/x,[\"a\"]", "no '-' after attachments");
    SIO_ERR("61+1[]", "no '-' after attachments");
    SIO_ERR("565-[\"a\"]", "too many attachments");
    SIO_ERR("5100-[\"a\"]", "too many attachments");
    SIO_ERR("599999999999999999999999999-[\"a\"]", "too many attachments");

    /* a count on other types is an id, or data that is not JSON */

    SIO_ERR("21-[\"a\"]", "bad data");
    SIO_ERR("01-{}", "unexpected ack id");
    SIO_ERR("2-[\"a\"]", "bad data");

    test_end();

    test_begin("sio namespaces");

    SIO_ERR("2/admin[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/admin[\"a,b\"]", "no ',' after namespace");
    SIO_ERR("0/admin{}", "no ',' after namespace");
    SIO_ERR("2/ad min,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/a\"b,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/a\xc3\xa9,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/a\x00,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/a\x1e,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2/a?x=1,[\"a\"]", "no ',' after namespace");
    SIO_ERR("2admin,[\"a\"]", "bad data");
    SIO_ERR("2,[\"a\"]", "bad data");

    memset(s, 'n', sizeof(s));
    s[0] = '2';
    s[1] = '/';
    memcpy(s + 1 + 128, ",[\"a\"]", 6);
    memcpy(nsp, s + 1, 128);
    nsp[128] = '\0';
    sio_ok(__LINE__, s, 1 + 128 + 6, EVENT, 0, nsp, NONE, "[\"a\"]");
    CHECK(sio.nsp == sio_buf + 1 && sio.nsp_len == 128);

    s[1 + 128] = 'n';
    memcpy(s + 1 + 129, ",[\"a\"]", 6);
    sio_fail(__LINE__, s, 1 + 129 + 6, "namespace too long");
    sio_fail(__LINE__, s, 1 + 129, "namespace too long");
    sio_fail(__LINE__, s, 1 + 300, "namespace too long");

    test_end();

    test_begin("sio errors");

    SIO_ERR("", "empty packet");
    SIO_ERR("7", "unknown packet type");
    SIO_ERR("9[\"a\"]", "unknown packet type");
    SIO_ERR("a", "unknown packet type");
    SIO_ERR(" 2[\"a\"]", "unknown packet type");
    SIO_ERR("/", "unknown packet type");
    SIO_ERR("2 [\"a\"]", "bad data");
    SIO_ERR("2\"a\"", "bad data");
    SIO_ERR("2x", "bad data");
    SIO_ERR("2/admin,x", "bad data");
    SIO_ERR("2/admin,7x", "bad data");
    SIO_ERR("31x[]", "bad data");
    SIO_ERR("2/admin,,[\"a\"]", "bad data");

    for (t = 0; t < 256; t++) {
        s[0] = (char) t;
        s[1] = '[';
        s[2] = ']';

        if (t < '0' || t > '6') {
            sio_fail(__LINE__, s, 3, "unknown packet type");
        }
    }

    test_end();
}


/* data */

#define DATA_OK(s, is)  data_ok(__LINE__, s, sizeof(s) - 1, is)
#define DATA_ERR(s, e)  data_fail(__LINE__, s, sizeof(s) - 1, e)


static void
data_ok(int line, const char *s, size_t len, int (*is)(json_t *))
{
    json_t      *json;
    const char  *err;

    CHECK_AT(line, sio_parse(s, len) == 0);

    json = (json_t *) 1;
    err = "(not set)";

    CHECK_AT(line, ngx_http_realtime_sio_data(&sio, &json, &err) == 0);
    CHECK_AT(line, err == NULL);

    if (is == NULL) {
        CHECK_AT(line, json == NULL);
        return;
    }

    CHECK_AT(line, json != NULL && json != (json_t *) 1 && is(json));

    if (json && json != (json_t *) 1) {
        CHECK_AT(line, json->refcount == 1);
        json_decref(json);
    }
}


static void
data_fail(int line, const char *s, size_t len, const char *e)
{
    int          rc;
    json_t      *json;
    const char  *err;

    CHECK_AT(line, sio_parse(s, len) == 0);

    json = (json_t *) 1;
    err = NULL;

    rc = ngx_http_realtime_sio_data(&sio, &json, &err);

    CHECK_AT(line, rc == -1);
    CHECK_AT(line, json == NULL);
    CHECK_AT(line, err != NULL && strcmp(err, e) == 0);

    if (rc == 0 && json && json != (json_t *) 1) {
        json_decref(json);
    }

    if (rc == -1 && (err == NULL || strcmp(err, e) != 0)) {
        printf("      got: %s\n", err ? err : "(null)");
    }
}


static int
is_object(json_t *json)
{
    return json_is_object(json);
}


static int
is_array(json_t *json)
{
    return json_is_array(json);
}


static void
test_sio_data(void)
{
    test_begin("sio data CONNECT");

    DATA_OK("0", NULL);
    DATA_OK("0/admin,", NULL);
    DATA_OK("0{}", is_object);
    DATA_OK("0/admin,{\"token\":\"x\",\"n\":[1,2]}", is_object);
    DATA_OK("0{} \r\n\t", is_object);
    DATA_ERR("0[]", "data is not an object");
    DATA_ERR("0/admin,[{}]", "data is not an object");
    DATA_ERR("0{", "invalid JSON");
    DATA_ERR("0{}{}", "invalid JSON");
    DATA_ERR("0{}x", "invalid JSON");

    test_end();

    test_begin("sio data DISCONNECT");

    DATA_OK("1", NULL);
    DATA_OK("1/admin,", NULL);
    DATA_ERR("1{}", "unexpected data");
    DATA_ERR("1[]", "unexpected data");
    DATA_ERR("1/admin,{}", "unexpected data");

    test_end();

    test_begin("sio data EVENT");

    DATA_OK("2[\"a\"]", is_array);
    DATA_OK("2[\"\"]", is_array);
    DATA_OK("2[\"a\",1,{},[],null,true,\"\\u00e9\",1.5e3]", is_array);
    DATA_OK("2/admin,5[\"a\"]", is_array);
    DATA_OK("2[\"caf\xc3\xa9\"]", is_array);
    DATA_ERR("2", "no data");
    DATA_ERR("2/admin,", "no data");
    DATA_ERR("25", "no data");
    DATA_ERR("2[]", "no event name");
    DATA_ERR("2[1]", "no event name");
    DATA_ERR("2[null,\"a\"]", "no event name");
    DATA_ERR("2[[\"a\"]]", "no event name");
    DATA_ERR("2[{\"_placeholder\":true,\"num\":0}]", "no event name");
    DATA_ERR("2{}", "data is not an array");
    DATA_ERR("2{\"0\":\"a\"}", "data is not an array");
    DATA_ERR("2[\"a\"", "invalid JSON");
    DATA_ERR("2[\"a\"][]", "invalid JSON");
    DATA_ERR("2[\"a\",]", "invalid JSON");
    DATA_ERR("2['a']", "invalid JSON");
    DATA_ERR("2[\"a\",{\"k\":1,\"k\":2}]", "invalid JSON");
    DATA_ERR("2[\"a\\u0000b\"]", "invalid JSON");
    DATA_ERR("2[\"a\x00\"]", "invalid JSON");
    DATA_ERR("2[\"a\"]\x00", "invalid JSON");
    DATA_ERR("2[\"\xff\"]", "invalid JSON");
    DATA_ERR("2[\"\xc0\xaf\"]", "invalid JSON");
    DATA_ERR("2[\"\xed\xa0\x80\"]", "invalid JSON");
    DATA_ERR("2[\"a\\ud800\"]", "invalid JSON");

    test_end();

    test_begin("sio data ACK");

    DATA_OK("31[]", is_array);
    DATA_OK("31[1,\"x\",{}]", is_array);
    DATA_OK("3/x,7[null]", is_array);
    DATA_ERR("31", "no data");
    DATA_ERR("31{}", "data is not an array");
    DATA_ERR("31[", "invalid JSON");

    test_end();

    test_begin("sio data CONNECT_ERROR");

    DATA_OK("4{\"message\":\"Not authorized\"}", is_object);
    DATA_OK("4/admin,{}", is_object);
    DATA_ERR("4", "no data");
    DATA_ERR("4/admin,", "no data");
    DATA_ERR("4[\"a\"]", "data is not an object");

    test_end();

    test_begin("sio data BINARY");

    DATA_OK("51-[\"b\",{\"_placeholder\":true,\"num\":0}]", is_array);
    DATA_OK("50-[\"b\"]", is_array);
    DATA_OK("61-1[{\"_placeholder\":true,\"num\":0}]", is_array);
    DATA_OK("60-1[]", is_array);
    DATA_ERR("51-", "no data");
    DATA_ERR("51-[]", "no event name");
    DATA_ERR("51-{}", "data is not an array");
    DATA_ERR("61-1", "no data");
    DATA_ERR("61-1{}", "data is not an array");

    test_end();
}


/* placeholders */

#define PH(json, n, rc)  placeholders(__LINE__, json, n, rc)


static void
placeholders(int line, const char *text, unsigned n, int rc)
{
    json_t  *json;

    snprintf(test_where, sizeof(test_where), "%u %.80s", n, text);

    json = json_loads(text, 0, NULL);
    CHECK_AT(line, json != NULL);

    if (json == NULL) {
        return;
    }

    CHECK_AT(line, ngx_http_realtime_sio_placeholders_check(json, n) == rc);
    CHECK_AT(line, json->refcount == 1);

    json_decref(json);
}


/* arrays depth deep; the innermost holds a placeholder when n is 1 */

static json_t *
deep(size_t depth, unsigned n)
{
    size_t   i;
    json_t  *json, *outer;

    json = json_array();

    if (n) {
        json_array_append_new(json,
                              json_pack("{sbsi}", "_placeholder", 1, "num", 0));
    }

    for (i = 1; i < depth; i++) {
        outer = json_array();
        json_array_append_new(outer, json);
        json = outer;
    }

    return json;
}


static void
test_placeholders(void)
{
    size_t   i, len;
    char     s[4096];
    json_t  *json;

    test_begin("placeholders good");

    PH("[\"a\"]", 0, 0);
    PH("[\"a\",{\"_placeholderx\":true},{\"num\":0}]", 0, 0);
    PH("[\"a\",{\"_placeholder\":true,\"num\":0}]", 1, 0);
    PH("[\"a\",{\"num\":0,\"_placeholder\":true}]", 1, 0);
    PH("[\"a\",{\"_placeholder\":true,\"num\":1},"
       "{\"_placeholder\":true,\"num\":0}]", 2, 0);
    PH("[\"a\",{\"x\":[1,{\"y\":{\"_placeholder\":true,\"num\":1}}]},"
       "[[{\"_placeholder\":true,\"num\":0}]]]", 2, 0);
    PH("{\"a\":{\"_placeholder\":true,\"num\":0}}", 1, 0);
    PH("{\"_placeholder\":true,\"num\":0}", 1, 0);

    CHECK(ngx_http_realtime_sio_placeholders_check(NULL, 0) == 0);
    CHECK(ngx_http_realtime_sio_placeholders_check(NULL, 1) == -1);

    /* all 64 */

    len = (size_t) snprintf(s, sizeof(s), "[\"a\"");

    for (i = 64; i-- > 0; ) {
        len += (size_t) snprintf(s + len, sizeof(s) - len,
                                 ",{\"_placeholder\":true,\"num\":%zu}", i);
    }

    snprintf(s + len, sizeof(s) - len, "]");

    PH(s, 64, 0);
    PH(s, 63, -1);
    PH(s, 65, -1);

    /* and 0 .. 62: the first one written is 63, cut it off */

    memmove(s + 4, s + 4 + 31, len - 4 - 31 + 2);
    PH(s, 63, 0);
    PH(s, 64, -1);

    test_end();

    test_begin("placeholders bad");

    PH("[\"a\"]", 1, -1);                                       /* missing */
    PH("[\"a\",{\"_placeholder\":true,\"num\":0}]", 2, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":1}]", 2, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":0}]", 0, -1);     /* extra */
    PH("[\"a\",{\"_placeholder\":true,\"num\":0},"              /* twice */
       "{\"_placeholder\":true,\"num\":0}]", 2, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":0},"
       "{\"_placeholder\":true,\"num\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":1}]", 1, -1);     /* range */
    PH("[\"a\",{\"_placeholder\":true,\"num\":-1}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":64}]", 64, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":4294967296}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":0,\"x\":1}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"n\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":false,\"num\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":1,\"num\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":\"true\",\"num\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":null,\"num\":0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":0.0}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":null}]", 1, -1);
    PH("[\"a\",{\"_placeholder\":true,\"num\":[0]}]", 1, -1);
    PH("[\"a\",{\"x\":{\"_placeholder\":false}}]", 0, -1);      /* nested */
    PH("[\"a\",[[{\"_placeholder\":true,\"num\":0,\"y\":{}}]]]", 1, -1);
    PH("[\"a\",{\"_placeholder\":{\"_placeholder\":true,\"num\":0},"
       "\"num\":0}]", 1, -1);

    test_end();

    test_begin("placeholders depth");

    json = deep(2000, 1);
    CHECK(ngx_http_realtime_sio_placeholders_check(json, 1) == 0);
    CHECK(ngx_http_realtime_sio_placeholders_check(json, 0) == -1);
    json_decref(json);

    json = deep(5000, 0);
    CHECK(ngx_http_realtime_sio_placeholders_check(json, 0) == -1);
    json_decref(json);

    test_end();
}


/* encoding */

#define ENCODE(type, att, nsp, id, data, expect)                              \
    encode(__LINE__, type, att, nsp, id, data, expect)


/* encodes with exactly sized buffers, at every size below too */

static void
encode(int line, int type, unsigned att, const char *nsp, int64_t id,
    const char *data, const char *expect)
{
    char    *buf;
    size_t   n, size, nsp_len;
    json_t  *json;

    snprintf(test_where, sizeof(test_where), "%s", expect);

    json = NULL;

    if (data) {
        json = json_loads(data, 0, NULL);
        CHECK_AT(line, json != NULL);
    }

    nsp_len = nsp ? strlen(nsp) : 0;

    n = ngx_http_realtime_sio_encode(NULL, 0, type, att, nsp, nsp_len, id,
                                     json);
    CHECK_AT(line, n == strlen(expect));

    for (size = 0; size <= n; size++) {
        buf = xmalloc(size);
        CHECK_AT(line, ngx_http_realtime_sio_encode(buf, size, type, att,
                           nsp, nsp_len, id, json) == n);

        if (size == n) {
            CHECK_AT(line, bytes_is(buf, n, expect));

            if (!bytes_is(buf, n, expect)) {
                printf("      got %.*s\n", (int) n, buf);
            }
        }

        free(buf);
    }

    if (json) {
        CHECK_AT(line, json->refcount == 1);
        json_decref(json);
    }
}


static void
test_encode(void)
{
    char     *buf, nsp[200];
    size_t    n;
    json_t   *json;

    static const char  ph[] = "[\"b\",{\"_placeholder\":true,\"num\":0}]";

    test_begin("sio header");

    buf = xmalloc(NGX_HTTP_REALTIME_SIO_HEADER_MAX);

    n = ngx_http_realtime_sio_header(buf, EVENT, 0, NULL, 0, -1);
    CHECK(bytes_is(buf, n, "2"));

    n = ngx_http_realtime_sio_header(buf, EVENT, 3, "/", 1, -1);
    CHECK(bytes_is(buf, n, "2"));

    n = ngx_http_realtime_sio_header(buf, EVENT, 0, "/admin", 6, 0);
    CHECK(bytes_is(buf, n, "2/admin,0"));

    n = ngx_http_realtime_sio_header(buf, ACK, 0, "/x", 2, 7);
    CHECK(bytes_is(buf, n, "3/x,7"));

    n = ngx_http_realtime_sio_header(buf, BIN_EVENT, 0, NULL, 0, -1);
    CHECK(bytes_is(buf, n, "50-"));

    n = ngx_http_realtime_sio_header(buf, BIN_ACK, 12, "/a/b", 4, 99);
    CHECK(bytes_is(buf, n, "612-/a/b,99"));

    n = ngx_http_realtime_sio_header(buf, CONNECT, 0, "/admin", 0, -1);
    CHECK(bytes_is(buf, n, "0"));

    /* the longest: a 10-digit count, 128 bytes of nsp, a 19-digit id */

    memset(nsp, 'n', sizeof(nsp));
    nsp[0] = '/';

    n = ngx_http_realtime_sio_header(buf, BIN_ACK, 4294967295u, nsp, 128,
                                     INT64_MAX);
    CHECK(n == 1 + 10 + 1 + 128 + 1 + 19);
    CHECK(n <= NGX_HTTP_REALTIME_SIO_HEADER_MAX);
    CHECK(memcmp(buf, "64294967295-/nnn", 16) == 0);
    CHECK(memcmp(buf + n - 20, ",9223372036854775807", 20) == 0);

    CHECK(ngx_http_realtime_sio_header(buf, EVENT, 0, nsp, 129, -1) == 0);

    free(buf);

    test_end();

    test_begin("sio encode");

    ENCODE(EVENT, 0, NULL, -1, "[\"a\",1]", "2[\"a\",1]");
    ENCODE(EVENT, 0, "/", -1, "[\"a\",1]", "2[\"a\",1]");
    ENCODE(EVENT, 0, "/admin", -1, "[\"a\"]", "2/admin,[\"a\"]");
    ENCODE(EVENT, 0, "/admin", 12, "[\"a\"]", "2/admin,12[\"a\"]");
    ENCODE(EVENT, 0, NULL, 0, "[\"a\"]", "20[\"a\"]");
    ENCODE(ACK, 0, NULL, 1, "[\"x\"]", "31[\"x\"]");
    ENCODE(ACK, 0, "/x", 7, "[]", "3/x,7[]");
    ENCODE(BIN_EVENT, 1, NULL, -1, ph, "51-[\"b\",{\"_placeholder\":true,"
           "\"num\":0}]");
    ENCODE(BIN_EVENT, 0, NULL, -1, "[\"b\"]", "50-[\"b\"]");
    ENCODE(BIN_ACK, 1, "/n", 12345, "[{\"_placeholder\":true,\"num\":0}]",
           "61-/n,12345[{\"_placeholder\":true,\"num\":0}]");
    ENCODE(CONNECT, 0, "/admin", -1, "{\"sid\":\"s\"}",
           "0/admin,{\"sid\":\"s\"}");
    ENCODE(CONNECT, 0, NULL, -1, "{\"sid\":\"s\"}", "0{\"sid\":\"s\"}");
    ENCODE(CONNECT, 0, NULL, -1, NULL, "0");
    ENCODE(DISCONNECT, 0, "/admin", -1, NULL, "1/admin,");
    ENCODE(DISCONNECT, 0, NULL, -1, NULL, "1");
    ENCODE(CONNECT_ERR, 0, "/admin", -1, "{\"message\":\"no\"}",
           "4/admin,{\"message\":\"no\"}");
    ENCODE(EVENT, 0, NULL, -1, "[\"caf\xc3\xa9\",\"a\\u0001\\\"\\\\/\"]",
           "2[\"caf\xc3\xa9\",\"a\\u0001\\\"\\\\/\"]");
    ENCODE(EVENT, 0, NULL, -1, "[ \"a\" , { \"k\" : [ 1 , 2 ] } ]",
           "2[\"a\",{\"k\":[1,2]}]");

    test_end();

    test_begin("sio encode errors");

    json = json_integer(5);
    CHECK(ngx_http_realtime_sio_encode(NULL, 0, EVENT, 0, NULL, 0, -1, json)
          == 0);
    json_decref(json);

    json = json_array();
    CHECK(ngx_http_realtime_sio_encode(NULL, 0, EVENT, 0, nsp, 129, -1, json)
          == 0);
    json_decref(json);

    test_end();

    test_begin("eio message of sio");

    buf = xmalloc(64);
    buf[0] = '4';
    json = json_array();
    n = ngx_http_realtime_sio_encode(buf + 1, 63, ACK, 0, "/x", 2, 7, json);
    CHECK(bytes_is(buf, n + 1, "43/x,7[]"));
    json_decref(json);
    free(buf);

    test_end();
}


/* round trips */

typedef struct {
    const char  *in;
    const char  *out;       /* the canonical form, NULL when the same */
} trip_t;


static const trip_t  trips[] = {
    { "0", NULL },
    { "0{\"token\":\"abc\"}", NULL },
    { "0/admin,{\"sid\":\"s\"}", NULL },
    { "0/admin", "0/admin," },
    { "1", NULL },
    { "1/admin,", NULL },
    { "1/admin", "1/admin," },
    { "2[\"a\",1]", NULL },
    { "2/,[\"a\",1]", "2[\"a\",1]" },
    { "2/admin,[\"a\"]", NULL },
    { "2/admin,12[\"a\",{\"x\":[null,true,false,1.5]}]", NULL },
    { "20007[\"a\"]", "27[\"a\"]" },
    { "2[ \"a\" , 1 ]\n", "2[\"a\",1]" },
    { "29223372036854775807[\"a\"]", NULL },
    { "31[\"x\"]", NULL },
    { "3/x,7[]", NULL },
    { "4{\"message\":\"no\",\"data\":{\"code\":1}}", NULL },
    { "51-[\"b\",{\"_placeholder\":true,\"num\":0}]", NULL },
    { "503-/a,9[\"b\",[{\"_placeholder\":true,\"num\":2},"
      "{\"_placeholder\":true,\"num\":0}],"
      "{\"k\":{\"_placeholder\":true,\"num\":1}}]",
      "53-/a,9[\"b\",[{\"_placeholder\":true,\"num\":2},"
      "{\"_placeholder\":true,\"num\":0}],"
      "{\"k\":{\"_placeholder\":true,\"num\":1}}]" },
    { "50-[\"b\"]", NULL },
    { "61-/n,3[{\"_placeholder\":true,\"num\":0}]", NULL },
    { "2[\"\\u00e9\\ud83d\\ude00\"]", "2[\"\xc3\xa9\xf0\x9f\x98\x80\"]" },
    { NULL, NULL }
};


static void
check_same(int line, ngx_http_realtime_sio_packet_t *a,
    ngx_http_realtime_sio_packet_t *b)
{
    CHECK_AT(line, a->type == b->type);
    CHECK_AT(line, a->attachments == b->attachments);
    CHECK_AT(line, a->nsp_len == b->nsp_len
                   && memcmp(a->nsp, b->nsp, a->nsp_len) == 0);
    CHECK_AT(line, a->has_id == b->has_id && a->id == b->id);
}


static void
test_round_trip(void)
{
    char                            *buf;
    char                             nsp[NGX_HTTP_REALTIME_SIO_NSP_MAX];
    size_t                           i, n;
    json_t                          *json, *back;
    const char                      *err, *out;
    ngx_http_realtime_sio_packet_t   first;

    test_begin("round trip");

    for (i = 0; trips[i].in; i++) {
        if (sio_parse(trips[i].in, strlen(trips[i].in)) != 0) {
            CHECK(!"parses");
            continue;
        }

        /* the copy of the packet is freed by the next parse */

        first = sio;
        memcpy(nsp, sio.nsp, sio.nsp_len);
        first.nsp = nsp;
        json = NULL;

        CHECK(ngx_http_realtime_sio_data(&sio, &json, &err) == 0);
        CHECK(ngx_http_realtime_sio_placeholders_check(json, sio.attachments)
              == 0);

        n = ngx_http_realtime_sio_encode(NULL, 0, sio.type, sio.attachments,
                                         sio.nsp, sio.nsp_len,
                                         sio.has_id ? (int64_t) sio.id : -1,
                                         json);
        buf = xmalloc(n);
        CHECK(ngx_http_realtime_sio_encode(buf, n, sio.type, sio.attachments,
                                           sio.nsp, sio.nsp_len,
                                           sio.has_id ? (int64_t) sio.id : -1,
                                           json)
              == n);

        out = trips[i].out ? trips[i].out : trips[i].in;
        CHECK(bytes_is(buf, n, out));

        if (!bytes_is(buf, n, out)) {
            printf("      got %.*s\n", (int) n, buf);
        }

        /* the encoded packet reads back the same */

        if (sio_parse(buf, n) == 0) {
            check_same(__LINE__, &first, &sio);

            back = NULL;
            CHECK(ngx_http_realtime_sio_data(&sio, &back, &err) == 0);
            CHECK((json == NULL && back == NULL)
                  || (json && back && json_equal(json, back)));

            if (back) {
                json_decref(back);
            }

        } else {
            CHECK(!"encoded packet parses");
        }

        if (json) {
            json_decref(json);
        }

        free(buf);
    }

    test_end();
}


/* every truncation of valid packets parses or fails cleanly */

static void
test_truncation(void)
{
    int                              rc;
    size_t                           i, k, len;
    json_t                          *json;
    const char                      *err, *in;
    unsigned char                   *buf;
    ngx_http_realtime_eio_packet_t   pkt;

    static const char  *eio_packets[] = {
        "0{\"sid\":\"x\",\"upgrades\":[\"websocket\"]}", "2probe",
        "bAQIDBA==", "bAQID", "b+/8=", NULL
    };

    test_begin("truncation");

    for (i = 0; trips[i].in; i++) {
        in = trips[i].in;
        len = strlen(in);

        for (k = 0; k <= len; k++) {
            rc = sio_parse(in, k);

            CHECK((rc == 0 && sio_err == NULL) || (rc == -1 && sio_err));

            if (rc != 0) {
                continue;
            }

            CHECK(sio.nsp_len >= 1 && sio.nsp[0] == '/');
            CHECK(sio.data + sio.data_len == sio_buf + k);

            json = (json_t *) 1;
            rc = ngx_http_realtime_sio_data(&sio, &json, &err);

            CHECK((rc == 0 && err == NULL) || (rc == -1 && err && !json));

            if (rc == 0 && json) {
                ngx_http_realtime_sio_placeholders_check(json,
                                                         sio.attachments);
                json_decref(json);
            }
        }
    }

    for (i = 0; eio_packets[i]; i++) {
        in = eio_packets[i];
        len = strlen(in);

        for (k = 0; k <= len; k++) {
            rc = eio(in, k, 0, &pkt, &buf);

            CHECK(rc == (k == 0 || (in[0] == 'b' && (k - 1) % 4) ? -1 : 0));

            if (rc == 0) {
                CHECK(pkt.data == buf + 1 && pkt.len == k - 1);
            }

            free(buf);
        }
    }

    test_end();
}


int
main(void)
{
    test_eio_types();
    test_eio_b();
    test_payload();
    test_base64();
    test_sio_parse();
    test_sio_data();
    test_placeholders();
    test_encode();
    test_round_trip();
    test_truncation();

    free(sio_buf);

    return test_summary();
}
