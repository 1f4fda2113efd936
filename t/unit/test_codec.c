
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the RFC 6455 codec.  Every frame case is fed whole,
 * split in two at every offset, byte by byte and, for short inputs,
 * in three pieces at every pair of offsets; each way must give the
 * same events.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_realtime_frame.h"
#include "ngx_http_realtime_utf8.h"

#define UNIT_WHERE_SIZE  64
#include "unit.h"


#define FIN     0x80
#define RSV1    0x40
#define RSV2    0x20
#define RSV3    0x10
#define CONT    NGX_HTTP_REALTIME_OP_CONT
#define TEXT    NGX_HTTP_REALTIME_OP_TEXT
#define BINARY  NGX_HTTP_REALTIME_OP_BINARY
#define CLOSE   NGX_HTTP_REALTIME_OP_CLOSE
#define PING    NGX_HTTP_REALTIME_OP_PING
#define PONG    NGX_HTTP_REALTIME_OP_PONG

#define AGAIN   NGX_HTTP_REALTIME_FRAME_AGAIN
#define DATA    NGX_HTTP_REALTIME_FRAME_DATA
#define CONTROL NGX_HTTP_REALTIME_FRAME_CONTROL
#define ERROR   NGX_HTTP_REALTIME_FRAME_ERROR
#define BUFFER  NGX_HTTP_REALTIME_FRAME_BUFFER

#define ACCEPT  NGX_HTTP_REALTIME_UTF8_ACCEPT
#define REJECT  NGX_HTTP_REALTIME_UTF8_REJECT

#define MAX_EVENTS  16


/* building input */

typedef struct {
    unsigned char  *buf;
    size_t          len;
    size_t          cap;
    unsigned        frames;
    int             masked;      /* build client (masked) frames */
} stream_t;


static stream_t  st;


static void
stream_reset(int masked)
{
    st.len = 0;
    st.frames = 0;
    st.masked = masked;
}


static void
put(const void *data, size_t len)
{
    if (st.len + len > st.cap) {
        st.cap = (st.len + len) * 2;
        st.buf = xrealloc(st.buf, st.cap);
    }

    if (len) {
        memcpy(st.buf + st.len, data, len);
    }

    st.len += len;
}


/*
 * Appends a frame header declaring a payload of size bytes, and then
 * len bytes of payload; b0 holds FIN, RSV and the opcode.  ext forces
 * the 126 or 127 length form, 0 picks the shortest.  Masking keys
 * differ from frame to frame.
 */

static void
put_frame_len(unsigned b0, unsigned ext, uint64_t size, const void *payload,
    size_t len)
{
    size_t          n, i;
    unsigned        m;
    unsigned char   h[14], key[4], *d;

    n = 0;
    m = st.masked ? 0x80 : 0;

    h[n++] = (unsigned char) b0;

    if (ext == 0 && size <= 125) {
        h[n++] = (unsigned char) (m | size);

    } else if (ext == 126 || (ext == 0 && size <= 0xffff)) {
        h[n++] = (unsigned char) (m | 126);
        h[n++] = (unsigned char) (size >> 8);
        h[n++] = (unsigned char) size;

    } else {
        h[n++] = (unsigned char) (m | 127);

        for (i = 0; i < 8; i++) {
            h[n++] = (unsigned char) (size >> (56 - 8 * i));
        }
    }

    key[0] = (unsigned char) (0x37 + 29 * st.frames);
    key[1] = 0xfa;
    key[2] = (unsigned char) (0x21 ^ st.frames);
    key[3] = (unsigned char) (0x3d + st.frames);
    st.frames++;

    if (st.masked) {
        memcpy(h + n, key, 4);
        n += 4;
    }

    put(h, n);
    put(payload, len);

    if (st.masked) {
        d = st.buf + st.len - len;

        for (i = 0; i < len; i++) {
            d[i] ^= key[i & 3];
        }
    }
}


static void
put_frame_ext(unsigned b0, unsigned ext, const void *payload, size_t len)
{
    put_frame_len(b0, ext, len, payload, len);
}


static void
put_frame(unsigned b0, const void *payload, size_t len)
{
    put_frame_ext(b0, 0, payload, len);
}


static void
put_str(unsigned b0, const char *s)
{
    put_frame_ext(b0, 0, s, strlen(s));
}


static void
put_close(unsigned code, const char *reason)
{
    unsigned char  b[125];
    size_t         n;

    n = strlen(reason);
    b[0] = (unsigned char) (code >> 8);
    b[1] = (unsigned char) code;
    memcpy(b + 2, reason, n);

    put_frame(FIN | CLOSE, b, n + 2);
}


/* expected and seen events */

enum {
    EV_END = 0,
    EV_MSG,          /* a whole data message */
    EV_CTL,          /* a control frame */
    EV_ERR,          /* ERROR with code */
    EV_PART          /* an unfinished message when the input ran out */
};


typedef struct {
    int           type;
    unsigned      opcode;
    unsigned      code;
    const void   *data;
    size_t        len;
} event_t;


#define MSG(op, s)       { EV_MSG, op, 0, s, sizeof(s) - 1 }
#define PART(op, s)      { EV_PART, op, 0, s, sizeof(s) - 1 }
#define CTL(op, s)       { EV_CTL, op, 0, s, sizeof(s) - 1 }
#define CLOSED(c, s)     { EV_CTL, CLOSE, c, s, sizeof(s) - 1 }
#define ERR(c)           { EV_ERR, 0, c, "", 0 }
#define END              { EV_END, 0, 0, NULL, 0 }


typedef struct {
    uint64_t      max_message;
    int           masked;

    /* the error must be reported before the input past error_by is fed */
    size_t        error_by;

    /* data of a message cut by an error must be a prefix of this */
    const char   *partial;
} options_t;


typedef struct {
    event_t          ev[MAX_EVENTS];
    unsigned char   *data[MAX_EVENTS];
    size_t           n;

    unsigned char   *msg;
    size_t           msg_len;
    unsigned         msg_op;
    int              in_msg;
} seen_t;


static void
seen_add(seen_t *s, int type, unsigned opcode, unsigned code,
    const unsigned char *data, size_t len)
{
    event_t  *ev;

    CHECK(s->n < MAX_EVENTS);

    if (s->n == MAX_EVENTS) {
        return;
    }

    ev = &s->ev[s->n];
    ev->type = type;
    ev->opcode = opcode;
    ev->code = code;
    ev->len = len;

    s->data[s->n] = xrealloc(NULL, len);

    if (len) {
        memcpy(s->data[s->n], data, len);
    }

    ev->data = s->data[s->n];
    s->n++;
}


static void
seen_data(seen_t *s, ngx_http_realtime_frame_t *f, unsigned char *old,
    unsigned char *pos)
{
    CHECK(f->opcode == TEXT || f->opcode == BINARY);
    CHECK(f->len > 0 || f->last);

    if (f->len) {
        CHECK(f->data >= old && f->data + f->len == pos);
    }

    if (!s->in_msg) {
        CHECK(f->first);
        s->in_msg = 1;
        s->msg_op = f->opcode;
        s->msg_len = 0;

    } else {
        CHECK(!f->first);
        CHECK(f->opcode == s->msg_op);
    }

    s->msg = xrealloc(s->msg, s->msg_len + f->len);

    if (f->len) {
        memcpy(s->msg + s->msg_len, f->data, f->len);
    }

    s->msg_len += f->len;

    if (f->last) {
        seen_add(s, EV_MSG, s->msg_op, 0, s->msg, s->msg_len);
        s->in_msg = 0;
    }
}


static void
seen_control(seen_t *s, ngx_http_realtime_frame_parser_t *p,
    ngx_http_realtime_frame_t *f, unsigned char *in, unsigned char *in_end)
{
    CHECK(f->opcode == CLOSE || f->opcode == PING || f->opcode == PONG);
    CHECK(f->len <= NGX_HTTP_REALTIME_CONTROL_MAX);

    /* in place in the input, or put together in the parser's buffer */
    CHECK((f->data >= in && f->data + f->len <= in_end)
          || (p->control && f->data >= p->control
              && f->data + f->len
                 <= p->control + NGX_HTTP_REALTIME_CONTROL_MAX));
    CHECK(f->opcode == CLOSE || f->code == 0);

    seen_add(s, EV_CTL, f->opcode, f->code, f->data, f->len);
}


static void
seen_error(seen_t *s, const options_t *o, ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, unsigned code, size_t from)
{
    int                        rc;
    ngx_http_realtime_frame_t  f;

    seen_add(s, EV_ERR, 0, code, NULL, 0);

    /* sticky, whatever comes next */

    rc = ngx_http_realtime_frame_parse(p, pos, end, &f);
    CHECK(rc == ERROR && f.code == code);

    if (o->error_by) {
        CHECK(from < o->error_by);
    }

    if (s->in_msg && o->partial) {
        CHECK(s->msg_len <= strlen(o->partial)
              && memcmp(s->msg, o->partial, s->msg_len) == 0);
    }
}


static void
seen_compare(seen_t *s, const event_t *expect)
{
    size_t  i;

    for (i = 0; expect[i].type != EV_END; i++) {

        CHECK(i < s->n);

        if (i >= s->n) {
            return;
        }

        CHECK(s->ev[i].type == expect[i].type);
        CHECK(s->ev[i].opcode == expect[i].opcode);
        CHECK(s->ev[i].code == expect[i].code);
        CHECK(s->ev[i].len == expect[i].len);
        CHECK(s->ev[i].len != expect[i].len
              || memcmp(s->ev[i].data, expect[i].data, expect[i].len) == 0);
    }

    CHECK(i == s->n);
}


static void
seen_free(seen_t *s)
{
    size_t  i;

    for (i = 0; i < s->n; i++) {
        free(s->data[i]);
    }

    free(s->msg);
}


/* feeds st.buf in pieces ending at cuts[0..ncuts-1] and at the end */

static void
run_split(const options_t *o, const event_t *expect, const size_t *cuts,
    size_t ncuts)
{
    int                                rc, done;
    size_t                             piece, from, to;
    seen_t                             s;
    unsigned char                     *buf, *pos, *end, *old;
    ngx_http_realtime_frame_t          f;
    ngx_http_realtime_frame_parser_t   p;

    /* an exact-size copy, and control buffer: ASan catches overruns */

    buf = xrealloc(NULL, st.len);
    memcpy(buf, st.buf, st.len);

    memset(&s, 0, sizeof(seen_t));
    ngx_http_realtime_frame_parser_init(&p, o->max_message, o->masked);

    pos = buf;
    from = 0;
    done = 0;

    for (piece = 0; piece <= ncuts && !done; piece++) {
        to = (piece < ncuts) ? cuts[piece] : st.len;
        end = buf + to;

        CHECK(pos == buf + from);

        for ( ;; ) {
            old = pos;
            rc = ngx_http_realtime_frame_parse(&p, &pos, end, &f);

            CHECK(pos >= old && pos <= end);

            if (rc == AGAIN) {
                CHECK(pos == end);
                break;
            }

            if (rc == BUFFER) {
                /* asked once, only for a frame not all in the input */
                CHECK(p.control == NULL
                      && (uint64_t) (end - pos) < p.payload_left);

                if (p.control != NULL) {
                    done = 1;
                    break;
                }

                p.control = xrealloc(NULL, NGX_HTTP_REALTIME_CONTROL_MAX);
                continue;
            }

            if (rc == DATA) {
                seen_data(&s, &f, old, pos);

            } else if (rc == CONTROL) {
                seen_control(&s, &p, &f, buf, buf + st.len);

            } else {
                CHECK(rc == ERROR);
                seen_error(&s, o, &p, &pos, buf + st.len, f.code, from);
                done = 1;
                break;
            }
        }

        from = to;
    }

    if (!done && s.in_msg) {
        seen_add(&s, EV_PART, s.msg_op, 0, s.msg, s.msg_len);
    }

    seen_compare(&s, expect);
    seen_free(&s);
    free(p.control);
    free(buf);
}


static void
run_opts(const char *name, const event_t *expect, const options_t *o)
{
    size_t   i, j, n, cuts[2], *all;

    test_begin(name);

    n = st.len;

    snprintf(test_where, sizeof(test_where), "whole");
    run_split(o, expect, NULL, 0);

    all = xrealloc(NULL, (n + 1) * sizeof(size_t));
    memset(all, 0, (n + 1) * sizeof(size_t));

    for (i = 1; i < n; i++) {
        all[i - 1] = i;
    }

    snprintf(test_where, sizeof(test_where), "byte by byte");
    run_split(o, expect, all, n ? n - 1 : 0);
    free(all);

    for (i = 1; i < n; i++) {

        /* big inputs: only cuts near the edges and a sample between */

        if (n > 4096 && i > 64 && i < n - 64 && i % 997) {
            continue;
        }

        snprintf(test_where, sizeof(test_where), "split at %zu", i);
        cuts[0] = i;
        run_split(o, expect, cuts, 1);
    }

    if (n <= 48) {
        for (i = 1; i < n; i++) {
            for (j = i + 1; j < n; j++) {
                snprintf(test_where, sizeof(test_where),
                         "split at %zu and %zu", i, j);
                cuts[0] = i;
                cuts[1] = j;
                run_split(o, expect, cuts, 2);
            }
        }
    }

    test_end();
}


/* the usual case: a server parser, no message limit */

static void
run(const char *name, const event_t *expect)
{
    options_t  o;

    memset(&o, 0, sizeof(options_t));
    o.masked = 1;

    run_opts(name, expect, &o);
}


/* error cases: the error must be seen with the first error_by bytes */

static void
run_failing(const char *name, const event_t *expect, size_t error_by)
{
    options_t  o;

    memset(&o, 0, sizeof(options_t));
    o.masked = 1;
    o.error_by = error_by;

    run_opts(name, expect, &o);
}


static void
run_error(const char *name, unsigned code, size_t error_by)
{
    event_t  expect[] = { ERR(0), END };

    expect[0].code = code;

    run_failing(name, expect, error_by);
}


/* data messages */

static void
test_messages(void)
{
    size_t          i;
    unsigned char   bin[300];
    event_t         ev[3];

    {
        event_t  e[] = { MSG(TEXT, "Hello"), END };

        stream_reset(1);
        put_str(FIN | TEXT, "Hello");
        run("text", e);
    }

    {
        event_t  e[] = { MSG(TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                                   "\xce\xb5 \xf0\x9f\x98\x80"), END };

        stream_reset(1);
        put_str(FIN | TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                            "\xce\xb5 \xf0\x9f\x98\x80");
        run("text multibyte", e);
    }

    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (unsigned char) (i * 7 + (i >> 3));
    }

    memset(ev, 0, sizeof(ev));
    ev[0].type = EV_MSG;
    ev[0].opcode = BINARY;
    ev[0].data = bin;
    ev[0].len = sizeof(bin);

    stream_reset(1);
    put_frame(FIN | BINARY, bin, sizeof(bin));
    run("binary 16-bit length", ev);

    /* binary data is not UTF-8 checked */
    ev[0].len = 125;
    stream_reset(1);
    put_frame(FIN | BINARY, bin, 125);
    run("binary 125", ev);

    ev[0].len = 126;
    stream_reset(1);
    put_frame(FIN | BINARY, bin, 126);
    run("binary 126", ev);

    {
        event_t  e[] = { MSG(TEXT, "abc"), END };

        stream_reset(1);
        put_frame_ext(FIN | TEXT, 126, "abc", 3);
        run("non-minimal 16-bit length", e);

        stream_reset(1);
        put_frame_ext(FIN | TEXT, 127, "abc", 3);
        run("non-minimal 64-bit length", e);
    }

    {
        event_t  e[] = { MSG(TEXT, ""), END };

        stream_reset(1);
        put_str(FIN | TEXT, "");
        run("empty text", e);

        stream_reset(1);
        put_str(TEXT, "");
        put_str(CONT, "");
        put_str(FIN | CONT, "");
        run("empty fragments", e);
    }

    {
        event_t  e[] = { MSG(BINARY, ""), END };

        stream_reset(1);
        put_str(FIN | BINARY, "");
        run("empty binary", e);
    }

    {
        event_t  e[] = { MSG(TEXT, "abc"), END };

        stream_reset(1);
        put_str(TEXT, "");
        put_str(FIN | CONT, "abc");
        run("empty first fragment", e);

        stream_reset(1);
        put_str(TEXT, "");
        put_str(CONT, "");
        put_str(CONT, "ab");
        put_str(CONT, "");
        put_str(FIN | CONT, "c");
        run("empty fragments around data", e);
    }

    {
        event_t  e[] = { MSG(TEXT, "a"), MSG(BINARY, "bc"), MSG(TEXT, "de"),
                         CLOSED(1000, ""), END };

        stream_reset(1);
        put_str(FIN | TEXT, "a");
        put_str(FIN | BINARY, "bc");
        put_str(TEXT, "d");
        put_str(FIN | CONT, "e");
        put_close(1000, "");
        run("message sequence", e);
    }

    {
        event_t  e[] = { PART(TEXT, "Hello, wo"), END };

        stream_reset(1);
        put_str(TEXT, "Hello, ");
        put_str(FIN | CONT, "world");
        st.len -= 3;
        run("input ends inside a message", e);
    }
}


static void
test_large(void)
{
    size_t          n;
    event_t         ev[2];
    unsigned char  *big;

    /* 64-bit length, exercising the word-sized unmasking */

    n = 70000;
    big = xrealloc(NULL, n);

    for (n = 0; n < 70000; n++) {
        big[n] = (unsigned char) ('a' + n % 26);
    }

    memset(ev, 0, sizeof(ev));
    ev[0].type = EV_MSG;
    ev[0].opcode = TEXT;
    ev[0].data = big;
    ev[0].len = n;

    stream_reset(1);
    put_frame(FIN | TEXT, big, n);
    run("text 64-bit length", ev);

    ev[0].len = 65535;
    stream_reset(1);
    put_frame(FIN | TEXT, big, 65535);
    run("text 65535", ev);

    ev[0].opcode = BINARY;
    ev[0].len = 65536;
    stream_reset(1);
    put_frame(BINARY, big, 30000);
    put_frame(FIN | CONT, big + 30000, 35536);
    run("binary 65536 in two fragments", ev);

    free(big);
}


static void
test_fragmented(void)
{
    {
        event_t  e[] = { CTL(PING, "p"), CTL(PONG, ""),
                         MSG(TEXT, "Hello, world"), END };

        stream_reset(1);
        put_str(TEXT, "Hel");
        put_str(CONT, "lo, ");
        put_str(FIN | PING, "p");
        put_str(CONT, "wor");
        put_str(FIN | PONG, "");
        put_str(FIN | CONT, "ld");
        run("fragmented with control frames", e);
    }

    {
        event_t  e[] = { CLOSED(1001, "away"), MSG(BINARY, "xyz"), END };

        stream_reset(1);
        put_str(BINARY, "x");
        put_close(1001, "away");
        put_str(FIN | CONT, "yz");
        run("close inside fragmented message", e);
    }

    /* a code point split across frames */
    {
        event_t  e[] = { MSG(TEXT, "\xf0\x9f\x98\x80!"), END };

        stream_reset(1);
        put_str(TEXT, "\xf0\x9f");
        put_str(CONT, "\x98");
        put_str(FIN | CONT, "\x80!");
        run("4-byte sequence across fragments", e);
    }

    {
        event_t  e[] = { CTL(PING, ""), MSG(TEXT, "\xe2\x82\xac"), END };

        stream_reset(1);
        put_str(TEXT, "\xe2");
        put_str(FIN | PING, "");
        put_str(CONT, "\x82");
        put_str(FIN | CONT, "\xac");
        run("3-byte sequence across fragments", e);
    }
}


/* control frames */

static void
test_control(void)
{
    char  b[130];

    memset(b, 'p', sizeof(b));

    {
        event_t  e[] = { CTL(PING, ""), CTL(PONG, "pong"), END };

        stream_reset(1);
        put_str(FIN | PING, "");
        put_str(FIN | PONG, "pong");
        run("ping and pong", e);
    }

    {
        event_t  e[] = { { EV_CTL, PING, 0, b, 125 }, END };

        stream_reset(1);
        put_frame(FIN | PING, b, 125);
        run("ping 125", e);
    }

    {
        event_t  e[] = { CTL(PONG, "short"), END };

        stream_reset(1);
        put_frame_ext(FIN | PONG, 126, "short", 5);
        run("control with non-minimal length", e);
    }

    stream_reset(1);
    put_frame(FIN | PING, b, 126);
    run_error("ping 126", 1002, 4);

    stream_reset(1);
    put_frame_ext(FIN | CLOSE, 127, b, 126);
    run_error("close 126, 64-bit length", 1002, 10);

    stream_reset(1);
    put_frame(FIN | PONG, b, 130);
    run_error("pong 130", 1002, 4);

    stream_reset(1);
    put_str(PING, "x");
    run_error("fragmented ping", 1002, 1);

    stream_reset(1);
    put_close(1000, "");
    st.buf[0] &= ~FIN;
    run_error("fragmented close", 1002, 1);

    stream_reset(1);
    put_str(TEXT, "a");
    put_str(PONG, "x");
    run_error("fragmented pong inside a message", 1002, 8);
}


static const struct {
    unsigned  code;
    int       valid;
} close_codes[] = {
    { 0, 0 }, { 999, 0 }, { 1000, 1 }, { 1001, 1 }, { 1002, 1 },
    { 1003, 1 }, { 1004, 0 }, { 1005, 0 }, { 1006, 0 }, { 1007, 1 },
    { 1008, 1 }, { 1009, 1 }, { 1010, 1 }, { 1011, 1 }, { 1012, 1 },
    { 1013, 1 }, { 1014, 1 }, { 1015, 0 }, { 1016, 0 }, { 1100, 0 },
    { 2000, 0 }, { 2999, 0 }, { 3000, 1 }, { 3999, 1 }, { 4000, 1 },
    { 4999, 1 }, { 5000, 0 }, { 65535, 0 }
};


static void
test_close(void)
{
    char      name[64];
    size_t    i;
    unsigned  code, bad;

    test_begin("close_code_valid over all 16-bit codes");
    bad = 0;

    for (code = 0; code <= 0xffff; code++) {
        if (ngx_http_realtime_close_code_valid(code)
            != ((code >= 1000 && code <= 1003)
                || (code >= 1007 && code <= 1014)
                || (code >= 3000 && code <= 4999)))
        {
            bad++;
        }
    }

    CHECK(bad == 0);
    test_end();

    for (i = 0; i < sizeof(close_codes) / sizeof(close_codes[0]); i++) {
        code = close_codes[i].code;

        test_begin("close_code_valid table");
        snprintf(test_where, sizeof(test_where), "%u", code);
        CHECK(ngx_http_realtime_close_code_valid(code)
              == close_codes[i].valid);
        test_end();

        snprintf(name, sizeof(name), "close %u with reason", code);
        stream_reset(1);
        put_close(code, "bye");

        if (close_codes[i].valid) {
            event_t  e[] = { CLOSED(0, "bye"), END };

            e[0].code = code;
            run(name, e);

        } else {
            run_error(name, 1002, st.len);
        }

        snprintf(name, sizeof(name), "close %u without reason", code);
        stream_reset(1);
        put_close(code, "");

        if (close_codes[i].valid) {
            event_t  e[] = { CLOSED(0, ""), END };

            e[0].code = code;
            run(name, e);

        } else {
            run_error(name, 1002, st.len);
        }
    }

    {
        event_t  e[] = { CLOSED(0, ""), END };

        stream_reset(1);
        put_str(FIN | CLOSE, "");
        run("empty close", e);
    }

    {
        event_t  e[] = { CLOSED(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                                      "\xce\xb5"), END };

        stream_reset(1);
        put_close(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
        run("close with UTF-8 reason", e);
    }

    stream_reset(1);
    put_str(FIN | CLOSE, "\x03");
    run_error("1-byte close", 1002, st.len);

    /* the byte left over from the ping would make a valid code */
    {
        event_t  e[] = { CTL(PING, "\x03\xe8"), ERR(1002), END };

        stream_reset(1);
        put_str(FIN | PING, "\x03\xe8");
        put_str(FIN | CLOSE, "\x03");
        run_failing("1-byte close after a ping", e, st.len);
    }

    stream_reset(1);
    put_close(1000, "ok\xff");
    run_error("close reason invalid UTF-8", 1007, st.len);

    stream_reset(1);
    put_close(1000, "ok\xce");
    run_error("close reason truncated UTF-8", 1007, st.len);

    stream_reset(1);
    put_close(1000, "\xed\xa0\x80");
    run_error("close reason surrogate", 1007, st.len);
}


/* UTF-8 checks of text messages */

static void
test_text_utf8(void)
{
    options_t  o;
    event_t    e[] = { ERR(1007), END };

    memset(&o, 0, sizeof(options_t));
    o.masked = 1;

    /*
     * a 1000-byte frame of which only the start arrives: the bad byte
     * must fail it at once, with only the bytes before it handed out
     */

    stream_reset(1);
    put_frame_len(FIN | TEXT, 0, 1000, "abcde\xff" "fghij", 11);
    o.error_by = 8 + 6;
    o.partial = "abcde";
    run_opts("fail fast in a long frame", e, &o);

    stream_reset(1);
    put_str(TEXT, "hello \xc0\xaf world");
    put_str(FIN | CONT, "more text");
    o.error_by = 6 + 7;
    o.partial = "hello ";
    run_opts("fail fast in the first fragment", e, &o);

    stream_reset(1);
    put_str(TEXT, "ok");
    put_str(CONT, "ab\xe0\x80zz");
    put_str(FIN | CONT, "end");
    o.error_by = 8 + 6 + 4;
    o.partial = "okab\xe0";
    run_opts("fail fast on an overlong in a later fragment", e, &o);

    stream_reset(1);
    put_str(TEXT, "x\xed");
    put_str(FIN | CONT, "\xa0\x80");
    o.error_by = 8 + 6 + 1;
    o.partial = "x\xed";
    run_opts("surrogate across fragments", e, &o);

    stream_reset(1);
    put_str(FIN | TEXT, "ab\xe2\x82");
    o.error_by = st.len;
    o.partial = "ab\xe2\x82";
    run_opts("truncated sequence at message end", e, &o);

    stream_reset(1);
    put_str(TEXT, "ab\xf0\x9f\x98");
    put_str(FIN | CONT, "");
    o.error_by = st.len;
    o.partial = "ab\xf0\x9f\x98";
    run_opts("truncated sequence before an empty last fragment", e, &o);

    stream_reset(1);
    put_str(FIN | TEXT, "\xf4\x90\x80\x80");
    o.error_by = 6 + 2;
    o.partial = "\xf4";
    run_opts("code point past U+10FFFF", e, &o);

    {
        event_t  ok[] = { MSG(BINARY, "\xff\xfe\xc0"), END };

        stream_reset(1);
        put_str(FIN | BINARY, "\xff\xfe\xc0");
        run("binary is not UTF-8 checked", ok);
    }
}


/* protocol errors */

static void
test_protocol(void)
{
    char           name[64];
    unsigned       op;
    unsigned char  h[14];

    for (op = 3; op <= 0xf; op++) {
        if (op >= CLOSE && op <= PONG) {
            continue;
        }

        snprintf(name, sizeof(name), "reserved opcode 0x%x", op);
        stream_reset(1);
        put_str(FIN | op, "x");
        run_error(name, 1002, 1);

        snprintf(name, sizeof(name), "reserved opcode 0x%x in message", op);
        stream_reset(1);
        put_str(TEXT, "a");
        put_str(FIN | op, "x");
        run_error(name, 1002, 8);
    }

    stream_reset(1);
    put_str(FIN | RSV1 | TEXT, "x");
    run_error("RSV1", 1002, 1);

    stream_reset(1);
    put_str(FIN | RSV2 | BINARY, "x");
    run_error("RSV2", 1002, 1);

    stream_reset(1);
    put_str(FIN | RSV3 | TEXT, "x");
    run_error("RSV3", 1002, 1);

    stream_reset(1);
    put_str(FIN | RSV1 | PING, "x");
    run_error("RSV1 on ping", 1002, 1);

    stream_reset(1);
    put_str(TEXT, "a");
    put_str(FIN | RSV2 | CONT, "b");
    run_error("RSV2 on continuation", 1002, 8);

    stream_reset(1);
    put_str(FIN | CONT, "x");
    run_error("continuation without a message", 1002, 1);

    {
        event_t  e[] = { MSG(TEXT, "a"), ERR(1002), END };

        stream_reset(1);
        put_str(FIN | TEXT, "a");
        put_str(FIN | CONT, "x");
        run_failing("continuation after a finished message", e, 8);
    }

    stream_reset(1);
    put_str(TEXT, "a");
    put_str(FIN | TEXT, "b");
    run_error("text inside a fragmented message", 1002, 8);

    {
        event_t  e[] = { CTL(PING, ""), ERR(1002), END };

        stream_reset(1);
        put_str(BINARY, "a");
        put_str(FIN | PING, "");
        put_str(FIN | BINARY, "b");
        run_failing("binary inside a fragmented message", e, 7 + 6 + 1);
    }

    stream_reset(0);
    put_str(FIN | TEXT, "x");
    run_error("unmasked client frame", 1002, 2);

    /* 64-bit length with the top bit: 0x80 00 .. 05 */

    memset(h, 0, sizeof(h));
    h[0] = FIN | BINARY;
    h[1] = 0x80 | 127;
    h[2] = 0x80;
    h[9] = 5;
    stream_reset(1);
    put(h, 14);
    put("hello", 5);
    run_error("64-bit length with the top bit set", 1002, 3);
}


static void
test_server_frames(void)
{
    options_t  o;

    memset(&o, 0, sizeof(options_t));

    {
        event_t  e[] = { MSG(TEXT, "hi"), CTL(PING, "x"),
                         MSG(BINARY, "abcd"), CLOSED(1000, "done"), END };

        stream_reset(0);
        put_str(FIN | TEXT, "hi");
        put_str(BINARY, "ab");
        put_str(FIN | PING, "x");
        put_str(FIN | CONT, "cd");
        put_close(1000, "done");
        run_opts("unmasked server frames", e, &o);
    }

    {
        event_t  e[] = { ERR(1002), END };

        stream_reset(1);
        put_str(FIN | TEXT, "hi");
        o.error_by = 2;
        run_opts("masked server frame", e, &o);
    }
}


/* message size limit */

static void
test_max_message(void)
{
    options_t      o;
    unsigned char  h[10];

    memset(&o, 0, sizeof(options_t));
    o.masked = 1;
    o.max_message = 10;

    {
        event_t  e[] = { MSG(TEXT, "0123456789"),
                         CTL(PING, "not counted, it is a control frame"),
                         MSG(TEXT, "abcdefghij"), END };

        stream_reset(1);
        put_str(FIN | TEXT, "0123456789");
        put_str(TEXT, "abcdef");
        put_str(FIN | PING, "not counted, it is a control frame");
        put_str(FIN | CONT, "ghij");
        run_opts("max_message exactly reached", e, &o);
    }

    {
        event_t  e[] = { ERR(1009), END };

        stream_reset(1);
        put_str(FIN | TEXT, "0123456789a");
        o.error_by = 2;
        run_opts("max_message exceeded by declared length", e, &o);

        stream_reset(1);
        put_str(TEXT, "012345");
        put_str(FIN | CONT, "6789a");
        o.error_by = 12 + 2;
        o.partial = "012345";
        run_opts("max_message exceeded across fragments", e, &o);

        stream_reset(1);
        put_str(TEXT, "0123456789");
        put_str(CONT, "");
        put_str(FIN | CONT, "a");
        o.error_by = 16 + 6 + 2;
        o.partial = "0123456789";
        run_opts("max_message exceeded by the last fragment", e, &o);

        /* a huge declared length fails before any payload is sent */

        h[0] = FIN | BINARY;
        h[1] = 0x80 | 127;
        memset(h + 2, 0, 8);
        h[5] = 1;
        stream_reset(1);
        put(h, 10);
        o.error_by = 10;
        o.partial = NULL;
        run_opts("max_message against a 64-bit length", e, &o);

        o.max_message = 100;
        stream_reset(1);
        put_frame_len(FIN | BINARY, 0, 101, "", 0);
        o.error_by = 4;
        run_opts("max_message against a 16-bit length", e, &o);
    }
}


/* header encoding */

static void
test_header(void)
{
    size_t          i, n, k;
    uint64_t        len, got;
    unsigned char   buf[NGX_HTTP_REALTIME_HEADER_MAX + 4];

    static const struct {
        uint64_t  len;
        size_t    size;
        unsigned  b1;
    } t[] = {
        { 0, 2, 0 }, { 1, 2, 1 }, { 125, 2, 125 }, { 126, 4, 126 },
        { 65535, 4, 126 }, { 65536, 10, 127 }, { 1ULL << 32, 10, 127 },
        { 0x7fffffffffffffffULL, 10, 127 }
    };

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        len = t[i].len;

        test_begin("frame header");
        snprintf(test_where, sizeof(test_where), "length %llu",
                 (unsigned long long) len);

        memset(buf, 0xee, sizeof(buf));
        n = ngx_http_realtime_frame_header(buf, BINARY, len);

        CHECK(n == t[i].size);
        CHECK(ngx_http_realtime_frame_header_size(len) == t[i].size);
        CHECK(ngx_http_realtime_frame_header_of(buf) == t[i].size);
        CHECK(buf[0] == (FIN | BINARY));
        CHECK(buf[1] == t[i].b1);
        CHECK(buf[n] == 0xee);

        got = (n == 2) ? buf[1] : 0;

        for (k = 2; k < n; k++) {
            got = (got << 8) | buf[k];
        }

        CHECK(got == len);

        test_end();
    }

    test_begin("frame header opcodes");

    n = ngx_http_realtime_frame_header(buf, TEXT, 5);
    CHECK(n == 2 && buf[0] == 0x81 && buf[1] == 5);

    n = ngx_http_realtime_frame_header(buf, CLOSE, 2);
    CHECK(n == 2 && buf[0] == 0x88 && buf[1] == 2);

    test_end();

    /* what the server writes, the benchmark client reads back */
    {
        options_t  o;
        event_t    e[] = { MSG(TEXT, "abc"), CTL(PONG, ""), END };

        memset(&o, 0, sizeof(options_t));
        stream_reset(0);

        n = ngx_http_realtime_frame_header(buf, TEXT, 3);
        put(buf, n);
        put("abc", 3);
        n = ngx_http_realtime_frame_header(buf, PONG, 0);
        put(buf, n);

        run_opts("frame header parses back", e, &o);
    }
}


/* no input at all, not even a buffer */

static void
test_no_input(void)
{
    int                                rc;
    unsigned char                     *pos;
    ngx_http_realtime_frame_t          f;
    ngx_http_realtime_frame_parser_t   p;

    test_begin("no input");

    ngx_http_realtime_frame_parser_init(&p, 0, 1);
    pos = NULL;

    rc = ngx_http_realtime_frame_parse(&p, &pos, NULL, &f);
    CHECK(rc == AGAIN && pos == NULL);

    test_end();
}


/* the UTF-8 validator on its own */

static const struct {
    const char  *s;
    size_t       len;
    int          result;     /* 0 ACCEPT, 1 REJECT, 2 unfinished */
    size_t       reject_at;  /* the byte that makes it REJECT */
} utf8_cases[] = {

#define U(s, r, at)  { s, sizeof(s) - 1, r, at }

    U("", 0, 0),
    U("plain ASCII, long enough for the word loop", 0, 0),
    U("\x00", 0, 0),
    U("\x7f", 0, 0),
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0, 0),
    U("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
      0, 0),

    /* first and last code points of each length */
    U("\xc2\x80", 0, 0),
    U("\xe0\xa0\x80", 0, 0),
    U("\xf0\x90\x80\x80", 0, 0),
    U("\xdf\xbf", 0, 0),
    U("\xef\xbf\xbf", 0, 0),
    U("\xf4\x8f\xbf\xbf", 0, 0),

    /* other boundaries */
    U("\xed\x9f\xbf", 0, 0),
    U("\xee\x80\x80", 0, 0),
    U("\xef\xbf\xbd", 0, 0),
    U("\xef\xbf\xbe", 0, 0),
    U("\xf4\x90\x80\x80", 1, 1),
    U("\xf7\xbf\xbf\xbf", 1, 0),
    U("\xf5\x80\x80\x80", 1, 0),

    /* unexpected continuation bytes */
    U("\x80", 1, 0),
    U("\xbf", 1, 0),
    U("\x80\xbf", 1, 0),
    U("ab\x80", 1, 2),
    U("\xc2\x80\x80", 1, 2),
    U("\xe2\x82\xac\xbf", 1, 3),

    /* lonely start bytes */
    U("\xc0 ", 1, 0),
    U("\xc2 ", 1, 1),
    U("\xdf ", 1, 1),
    U("\xe0 ", 1, 1),
    U("\xef ", 1, 1),
    U("\xf0 ", 1, 1),
    U("\xf4 ", 1, 1),
    U("\xe1\x80 ", 1, 2),
    U("\xf1\x80\x80 ", 1, 3),

    /* sequences missing their last bytes */
    U("\xc2", 2, 0),
    U("\xe0\xa0", 2, 0),
    U("\xe1", 2, 0),
    U("\xf0\x90\x80", 2, 0),
    U("\xf4\x8f", 2, 0),
    U("abc\xed\x9f", 2, 0),

    /* impossible bytes */
    U("\xfe", 1, 0),
    U("\xff", 1, 0),
    U("\xfe\xfe\xff\xff", 1, 0),
    U("a\xf8\x88\x80\x80\x80", 1, 1),
    U("\xfc\x84\x80\x80\x80\x80", 1, 0),

    /* overlong forms */
    U("\xc0\xaf", 1, 0),
    U("\xc1\xbf", 1, 0),
    U("\xe0\x80\xaf", 1, 1),
    U("\xe0\x9f\xbf", 1, 1),
    U("\xf0\x80\x80\xaf", 1, 1),
    U("\xf0\x8f\xbf\xbf", 1, 1),
    U("\xc0\x80", 1, 0),
    U("\xe0\x80\x80", 1, 1),

    /* surrogates, lone and paired */
    U("\xed\xa0\x80", 1, 1),
    U("\xed\xad\xbf", 1, 1),
    U("\xed\xae\x80", 1, 1),
    U("\xed\xaf\xbf", 1, 1),
    U("\xed\xb0\x80", 1, 1),
    U("\xed\xbe\x80", 1, 1),
    U("\xed\xbf\xbf", 1, 1),
    U("\xed\xa0\x80\xed\xb0\x80", 1, 1),
    U("\xed\xaf\xbf\xed\xbf\xbf", 1, 1),

    /* rejection is final */
    U("\xff" "abc", 1, 0),
    U("0123456789abcdef\xc3\x28" "0123456789abcdef", 1, 17),

#undef U
};


static int
utf8_class(uint32_t state)
{
    return (state == ACCEPT) ? 0 : (state == REJECT) ? 1 : 2;
}


static void
test_utf8_table(void)
{
    size_t                i, k, len;
    uint32_t              state, whole;
    const unsigned char  *s;

    for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        s = (const unsigned char *) utf8_cases[i].s;
        len = utf8_cases[i].len;

        test_begin("utf8 table");
        snprintf(test_where, sizeof(test_where), "case %zu", i);

        whole = ngx_http_realtime_utf8_validate(ACCEPT, s, len);
        CHECK(utf8_class(whole) == utf8_cases[i].result);

        /* byte by byte, REJECT comes exactly at the bad byte */

        state = ACCEPT;

        for (k = 0; k < len; k++) {
            state = ngx_http_realtime_utf8_validate(state, s + k, 1);

            if (utf8_cases[i].result == 1 && k >= utf8_cases[i].reject_at) {
                CHECK(state == REJECT);

            } else {
                CHECK(state != REJECT);
            }
        }

        CHECK(state == whole);

        /* in two pieces anywhere */

        for (k = 0; k <= len; k++) {
            state = ngx_http_realtime_utf8_validate(ACCEPT, s, k);
            state = ngx_http_realtime_utf8_validate(state, s + k, len - k);
            CHECK(state == whole);
        }

        test_end();
    }

    test_begin("utf8 REJECT is sticky");
    state = ngx_http_realtime_utf8_validate(ACCEPT,
                                            (const unsigned char *) "\xff", 1);
    CHECK(state == REJECT);
    CHECK(ngx_http_realtime_utf8_validate(state,
                                          (const unsigned char *) "a", 1)
          == REJECT);
    CHECK(ngx_http_realtime_utf8_validate(state, NULL, 0) == REJECT);
    test_end();
}


/*
 * An independent reference: for each sequence, the range of code
 * points its known bytes allow must meet the valid ones.  Returns the
 * utf8_class() it expects.
 */

static int
utf8_reference(const unsigned char *s, size_t len)
{
    size_t    i, k, n, missing;
    uint32_t  cp, lo, hi, min;

    i = 0;

    while (i < len) {

        if (s[i] < 0x80) {
            i++;
            continue;
        }

        if (s[i] >= 0xc0 && s[i] < 0xe0) {
            n = 2;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if (s[i] >= 0xe0 && s[i] < 0xf0) {
            n = 3;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if (s[i] >= 0xf0 && s[i] < 0xf8) {
            n = 4;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return 1;
        }

        for (k = 1; k < n && i + k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 1;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        missing = n - k;
        lo = cp << (6 * missing);
        hi = lo | ((1u << (6 * missing)) - 1);

        if (hi < min || lo > 0x10ffff) {
            return 1;
        }

        lo = (lo < min) ? min : lo;
        hi = (hi > 0x10ffff) ? 0x10ffff : hi;

        if (lo >= 0xd800 && hi <= 0xdfff) {
            return 1;
        }

        if (missing) {
            return 2;
        }

        i += n;
    }

    return 0;
}


static void
test_utf8_exhaustive(void)
{
    size_t          i, k, n, bad;
    uint32_t        v, state, step;
    unsigned char   s[4];

    static const unsigned char  some[] = {
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
        0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3,
        0xf4, 0xf5, 0xf7, 0xf8, 0xff
    };

    test_begin("utf8 against the reference, all 1-3 byte inputs");
    bad = 0;

    for (n = 1; n <= 3; n++) {
        for (v = 0; v < (1u << (8 * n)); v++) {
            for (k = 0; k < n; k++) {
                s[k] = (unsigned char) (v >> (8 * k));
            }

            state = ngx_http_realtime_utf8_validate(ACCEPT, s, n);

            if (utf8_class(state) != utf8_reference(s, n)) {
                if (bad++ < MAX_REPORTS) {
                    snprintf(test_where, sizeof(test_where),
                             "%zu bytes %06x", n, (unsigned) v);
                    CHECK(utf8_class(state) == utf8_reference(s, n));
                }
            }
        }
    }

    test_end();

    test_begin("utf8 against the reference, 4-byte inputs");
    bad = 0;
    n = sizeof(some);

    for (i = 0; i < n * n * n * n; i++) {
        s[0] = some[i % n];
        s[1] = some[i / n % n];
        s[2] = some[i / n / n % n];
        s[3] = some[i / n / n / n];

        state = ngx_http_realtime_utf8_validate(ACCEPT, s, 4);

        step = ACCEPT;

        for (k = 0; k < 4; k++) {
            step = ngx_http_realtime_utf8_validate(step, s + k, 1);
        }

        if (utf8_class(state) != utf8_reference(s, 4) || step != state) {
            if (bad++ < MAX_REPORTS) {
                snprintf(test_where, sizeof(test_where), "%02x %02x %02x %02x",
                         s[0], s[1], s[2], s[3]);
                CHECK(utf8_class(state) == utf8_reference(s, 4));
                CHECK(step == state);
            }
        }
    }

    test_end();
}


int
main(void)
{
    test_utf8_table();
    test_utf8_exhaustive();
    test_messages();
    test_large();
    test_fragmented();
    test_control();
    test_close();
    test_text_utf8();
    test_protocol();
    test_server_frames();
    test_max_message();
    test_header();
    test_no_input();

    free(st.buf);

    return test_summary();
}
