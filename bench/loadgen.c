
/*
 * Copyright (C) ngx-realtime developers
 *
 * loadgen: WebSocket subscribers and an HTTP publisher for benchmarking
 * ngx-realtime (and Nchan, for comparison) on one machine; --proto sio
 * speaks Socket.IO v5 over Engine.IO v4 (websocket transport), to
 * ngx-realtime's realtime_socketio and to Node's socket.io alike.
 *
 * One invocation: the parent forks -P subscriber processes, each holding
 * its share of -c WebSocket connections in one epoll loop, waits until
 * every connection is up (and has joined its room), then publishes over
 * keep-alive HTTP connections at a fixed rate or as fast as the server
 * answers, waits for the deliveries to drain and prints a report (text on
 * stderr, one "RESULT {json}" line on stdout).
 *
 * Every publication carries CLOCK_MONOTONIC nanoseconds ("t"); receivers
 * on the same machine read it back, so publish->deliver latency is exact.
 * Per-connection state and all buffers are allocated once, before the
 * first connection: nothing is allocated per message.
 *
 * Server frames are parsed by the project's own codec
 * (src/ngx_http_realtime_frame.c, unmasked mode).
 */

#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <zlib.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "ngx_http_realtime_frame.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT  24
#endif


#define PROTO_RT      0
#define PROTO_NCHAN   1
#define PROTO_SIO     2     /* Socket.IO v5 over Engine.IO v4, websocket */

#define HEAD_MAX      96        /* first bytes of a message kept for parsing */
#define OUT_MAX       320       /* per-connection pending output */
#define RBUF_SIZE     (256 * 1024)
#define MAX_EVENTS    1024

#define PREQ_MAX      (256 * 1024)
#define PRESP_MAX     (64 * 1024)

#define MAX_PORTS     4

#define PHASE_CONNECT 0
#define PHASE_RUN     1
#define PHASE_STOP    2


/* -------------------------------------------------------------------------
 * latency histogram: exact below 128 ns, then 64 sub-buckets per power of
 * two (under 1.6% error), up to 2^41 ns
 */

#define H_LIN      128
#define H_SUBBITS  6
#define H_SUB      (1 << H_SUBBITS)
#define H_MAXEXP   40
#define H_N        (H_LIN + (H_MAXEXP - 7 + 1) * H_SUB)

static inline int
h_index(uint64_t v)
{
    int  e;

    if (v < H_LIN) {
        return (int) v;
    }

    e = 63 - __builtin_clzll(v);

    if (e > H_MAXEXP) {
        return H_N - 1;
    }

    return H_LIN + (e - 7) * H_SUB
           + (int) ((v >> (e - H_SUBBITS)) & (H_SUB - 1));
}


static uint64_t
h_value(int i)
{
    int       e, m;
    uint64_t  lo;

    if (i < H_LIN) {
        return (uint64_t) i;
    }

    e = (i - H_LIN) / H_SUB + 7;
    m = (i - H_LIN) % H_SUB;
    lo = ((uint64_t) (H_SUB + m)) << (e - H_SUBBITS);

    return lo + ((1ULL << (e - H_SUBBITS)) >> 1);
}


static uint64_t
h_percentile(const uint64_t *h, uint64_t n, double p, uint64_t max)
{
    int       i;
    uint64_t  want, sum, v;

    if (n == 0) {
        return 0;
    }

    want = (uint64_t) (p * (double) n + 0.999999);
    if (want == 0) {
        want = 1;
    }

    sum = 0;

    for (i = 0; i < H_N; i++) {
        sum += h[i];
        if (sum >= want) {
            v = h_value(i);
            return v > max ? max : v;
        }
    }

    return max;
}


/* ------------------------------------------------------------------------- */

typedef struct {
    volatile int       ready;
    volatile int       done;

    uint64_t           attempted;
    uint64_t           ok;
    uint64_t           fail_connect;
    uint64_t           fail_handshake;
    uint64_t           fail_closed;
    uint64_t           fail_timeout;
    int64_t            t_connect_start;
    int64_t            t_connect_end;

    volatile uint64_t  delivered;
    volatile int64_t   t_first_delivery;
    volatile int64_t   t_last_delivery;

    uint64_t           other;
    uint64_t           pings;
    uint64_t           dropped;         /* closed after being ready */
    uint64_t           no_ts;
    uint64_t           frame_errors;
    uint64_t           out_overflow;

    /* deliveries' frames, header and payload as sent; compressed ones */
    uint64_t           wire_bytes;
    uint64_t           compressed;
    uint64_t           inflate_errors;
    uint64_t           conn_min;
    uint64_t           conn_max;
    uint64_t           conn_short;
    uint64_t           conns_counted;

    uint64_t           cpu_run_us;      /* user+sys during the run phase */
    uint64_t           cpu_total_us;
    uint64_t           cpu_connect_us;  /* from the first connect to ready */
    uint64_t           cpu_connect_start_us;
    long               maxrss_kb;

    uint64_t           lat_n;
    uint64_t           lat_max;
    uint64_t           hist[H_N];

    /* the same by server port, when there are several */
    uint64_t           lat_n_by[MAX_PORTS];
    uint64_t           lat_max_by[MAX_PORTS];
    uint64_t           hist_by[MAX_PORTS][H_N];

    char               first_error[192];
} child_stats_t;


typedef struct {
    volatile int       phase;
    volatile uint64_t  expected_per_conn;   /* 0: unknown */
    child_stats_t      c[];
} shm_t;


typedef struct {
    int                             fd;
    uint8_t                         state;
    uint8_t                         hs_match;
    uint8_t                         head_len;
    uint8_t                         port;     /* index in o.ports */
    uint16_t                        out_len;
    uint16_t                        out_off;
    uint32_t                        room;
    uint32_t                        gidx;
    uint64_t                        delivered;
    int64_t                         t_start;
    ngx_http_realtime_frame_parser_t  parser;
    unsigned char                   head[HEAD_MAX];

    /* --deflate: a compressed message that came in pieces */
    unsigned char                  *zbuf;
    uint32_t                        zlen;
    uint32_t                        zsize;
    unsigned char                   out[OUT_MAX];
} conn_t;

/*
 * rt: C_HANDSHAKE -> (101) C_WELCOME -> (welcome; join sent) C_JOINING
 *     -> (joined) C_READY
 * sio: C_HANDSHAKE -> (101) C_WELCOME -> (Engine.IO open "0{..}"; "40"
 *     sent) C_SIO_CONNECT -> ("40{sid}"; 421["join",..] sent) C_JOINING
 *     -> (ack "431[..]") C_READY
 * nchan: C_HANDSHAKE -> (101) C_READY
 */
enum {
    C_IDLE = 0, C_CONNECTING, C_HANDSHAKE, C_WELCOME, C_SIO_CONNECT,
    C_JOINING, C_READY, C_DEAD
};


typedef struct {
    int        fd;
    int        state;
    size_t     req_len;
    size_t     req_off;
    size_t     resp_len;
    int64_t    t_sent;
    uint64_t   items;
    char      *req;
    char      *resp;
} pconn_t;

enum { P_DOWN = 0, P_CONNECTING, P_IDLE, P_SENDING, P_WAITING };


/* options */

static struct {
    const char  *host;
    int          port;         /* the first of ports */
    int          ports[MAX_PORTS];
    int          nports;
    int          pub_port;
    int          expect_all;
    const char  *path;
    const char  *pub_path;
    int          proto;
    long         conns;
    int          procs;
    long         rooms;
    const char  *room_prefix;
    int          src_addrs;
    int          conc;
    double       connect_timeout;
    double       connect_phase_max;
    int          pub_conns;
    double       rate;
    int          batch;
    double       duration;
    long         count;
    int          pad;
    double       drain;
    double       drain_idle;
    double       hold;
    int          wait_stdin;
    const char  *label;
    int          quiet;
    const char  *jwt_secret;
    const char  *jwt_rsa_key;
    int          deflate;      /* offer permessage-deflate */
    int          pad_text;     /* words in the padding, not 'x's */
    int          join_url;     /* rt: the room is in -u, no join sent */
} o = {
    "127.0.0.1", 8080, { 8080 }, 1, 0, 0, NULL, NULL, PROTO_RT, 1000, 1, 1, "r", 8, 256,
    10.0, 120.0, 1, 0.0, 1, 10.0, 0, 100, 15.0, 1.0, 0.0, 0, "run", 0,
    NULL, NULL, 0, 0, 0
};


/*
 * --jwt-secret, --jwt-rsa-key: this process's tokens, one per connection,
 * all signed before the first connect (a client has its token before it
 * connects: minting them while connecting would take the CPU the server
 * shares with the load generator here)
 */
#define TOKEN_MAX  1024
static char  *tokens;


static shm_t          *shm;
static int             child_id;
static child_stats_t  *cs;

static conn_t         *conns;
static long            nconns, conn_base;
static unsigned char  *rbuf;
static int             ep;
static long            next_conn, inflight, settled;
static uint64_t        rng = 0x9e3779b97f4a7c15ULL;

static char            pad_str[4096];


static int64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


static uint64_t
xrand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}


static uint64_t
cpu_us(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000
           + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}


static void
die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}


static void
note_error(const char *fmt, ...)
{
    va_list  ap;

    if (cs->first_error[0]) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(cs->first_error, sizeof(cs->first_error), fmt, ap);
    va_end(ap);
}


/* the path with "{room}" replaced by the room's name */
static int
format_path(char *buf, size_t size, const char *tmpl, uint32_t room)
{
    const char  *p;
    size_t       n;
    int          k;

    p = strstr(tmpl, "{room}");
    if (p == NULL) {
        return snprintf(buf, size, "%s", tmpl);
    }

    n = (size_t) (p - tmpl);
    k = snprintf(buf, size, "%.*s%s%u%s", (int) n, tmpl, o.room_prefix,
                 room, p + 6);
    return k;
}


/* =========================================================================
 * subscribers
 */

static void sub_start_next(void);
static void conn_message(conn_t *c, int64_t now);


static void
conn_close(conn_t *c, int state)
{
    if (c->fd >= 0) {
        close(c->fd);     /* also leaves the epoll set */
        c->fd = -1;
    }

    if (c->state != C_READY && c->state != C_DEAD && c->state != C_IDLE) {
        inflight--;
        settled++;
    }

    c->state = (uint8_t) state;
}


static void
conn_fail(conn_t *c, uint64_t *counter)
{
    if (c->state == C_READY) {
        cs->dropped++;

    } else {
        (*counter)++;
    }

    conn_close(c, C_DEAD);
}


static void
conn_want_write(conn_t *c, int on)
{
    struct epoll_event  ev;

    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t) (c - conns);
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}


static int
conn_flush(conn_t *c)
{
    ssize_t  n;

    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                 MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_want_write(c, 1);
                return 0;
            }
            return -1;
        }
        c->out_off += (uint16_t) n;
    }

    c->out_off = c->out_len = 0;
    return 0;
}


/* queues a masked client frame and tries to send it */
static int
conn_send_frame(conn_t *c, unsigned opcode, const unsigned char *data,
    size_t len)
{
    unsigned char  *p;
    uint32_t        key;
    size_t          i, need;
    int             pending;

    need = 2 + 4 + len + (len > 125 ? 2 : 0);

    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }

    if (len > 0xffff || c->out_len + need > OUT_MAX) {
        cs->out_overflow++;
        return 0;
    }

    pending = c->out_len > 0;

    p = c->out + c->out_len;
    *p++ = (unsigned char) (0x80 | opcode);

    if (len > 125) {
        *p++ = 0x80 | 126;
        *p++ = (unsigned char) (len >> 8);
        *p++ = (unsigned char) len;

    } else {
        *p++ = (unsigned char) (0x80 | len);
    }

    key = (uint32_t) xrand();
    memcpy(p, &key, 4);

    for (i = 0; i < len; i++) {
        p[4 + i] = data[i] ^ p[i & 3];
    }

    c->out_len += (uint16_t) need;

    if (pending) {
        return 0;
    }

    return conn_flush(c);
}


static void
conn_ready(conn_t *c)
{
    c->state = C_READY;
    inflight--;
    settled++;
    cs->ok++;
    sub_start_next();
}


static void
conn_start(conn_t *c)
{
    int                 fd, one;
    struct sockaddr_in  src, dst;
    struct epoll_event  ev;

    cs->attempted++;
    inflight++;
    c->t_start = now_ns();
    c->state = C_CONNECTING;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket(): %s", strerror(errno));
        c->fd = -1;
        conn_fail(c, &cs->fail_connect);
        return;
    }

    c->fd = fd;

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (o.src_addrs > 0) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof(one));

        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001
                                    + (uint32_t) (c->gidx % o.src_addrs));

        if (bind(fd, (struct sockaddr *) &src, sizeof(src)) < 0) {
            note_error("bind(): %s", strerror(errno));
            conn_fail(c, &cs->fail_connect);
            return;
        }
    }

    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t) o.ports[c->port]);
    inet_pton(AF_INET, o.host, &dst.sin_addr);

    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = (uint64_t) (c - conns);

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        note_error("epoll_ctl(): %s", strerror(errno));
        conn_fail(c, &cs->fail_connect);
        return;
    }

    if (connect(fd, (struct sockaddr *) &dst, sizeof(dst)) < 0
        && errno != EINPROGRESS)
    {
        note_error("connect(): %s", strerror(errno));
        conn_fail(c, &cs->fail_connect);
        return;
    }
}


static void
sub_start_next(void)
{
    while (next_conn < nconns && inflight < o.conc) {
        conn_start(&conns[next_conn++]);
    }

    if (!cs->ready && settled == nconns) {
        cs->t_connect_end = now_ns();
        cs->cpu_connect_us = cpu_us() - cs->cpu_connect_start_us;
        __atomic_store_n(&cs->ready, 1, __ATOMIC_RELEASE);
    }
}


static size_t
base64url(char *out, const unsigned char *in, size_t len)
{
    size_t       i, n;
    uint32_t     v;
    static char  abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         "0123456789-_";

    n = 0;

    for (i = 0; i < len; i += 3) {
        v = (uint32_t) in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t) in[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= in[i + 2];
        }

        out[n++] = abc[(v >> 18) & 63];
        out[n++] = abc[(v >> 12) & 63];
        if (i + 1 < len) {
            out[n++] = abc[(v >> 6) & 63];
        }
        if (i + 2 < len) {
            out[n++] = abc[v & 63];
        }
    }

    out[n] = '\0';
    return n;
}


/*
 * "?token=" and an HS256 JWT for user "user-<i>", valid for a day: every
 * subscriber authenticated, as in production (--jwt-secret)
 */
static void
hs256_sign_all(long first, long count)
{
    char           claims[128], signed_part[512], *t;
    unsigned char  mac[EVP_MAX_MD_SIZE];
    unsigned int   mac_len;
    size_t         n;
    long           i;
    int            k;

    tokens = malloc((size_t) (count ? count : 1) * TOKEN_MAX);
    if (tokens == NULL) {
        die("no memory for %ld tokens", count);
    }

    for (i = 0; i < count; i++) {
        t = tokens + i * TOKEN_MAX;

        k = snprintf(claims, sizeof(claims),
                     "{\"sub\":\"user-%ld\",\"exp\":%ld}",
                     first + i, (long) time(NULL) + 86400);

        /* {"alg":"HS256","typ":"JWT"} */
        n = (size_t) snprintf(signed_part, sizeof(signed_part), "%s.",
                              "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        n += base64url(signed_part + n, (unsigned char *) claims,
                       (size_t) k);

        if (HMAC(EVP_sha256(), o.jwt_secret, (int) strlen(o.jwt_secret),
                 (unsigned char *) signed_part, n, mac, &mac_len)
            == NULL)
        {
            die("HS256 signing failed");
        }

        k = snprintf(t, TOKEN_MAX, "?token=%s.", signed_part);
        if (k <= 0 || (size_t) k + mac_len * 4 / 3 + 4 > TOKEN_MAX) {
            die("HS256 token too long");
        }

        base64url(t + k, mac, mac_len);
    }
}


/*
 * --jwt-rsa-key: an RS256 JWT per connection, as jwt_query() makes the
 * HS256 one.  An RSA signature costs the client a millisecond: they are
 * all made before the first connect, never while connecting.
 */
static void
rs256_sign_all(long first, long count)
{
    FILE          *f;
    long           i;
    char           claims[128], *t;
    size_t         n, siglen;
    EVP_PKEY      *key;
    EVP_MD_CTX    *ctx;
    unsigned char  sig[1024];
    int            k;

    f = fopen(o.jwt_rsa_key, "r");
    if (f == NULL) {
        die("%s: %s", o.jwt_rsa_key, strerror(errno));
    }

    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);

    tokens = malloc((size_t) (count ? count : 1) * TOKEN_MAX);
    ctx = EVP_MD_CTX_new();

    if (key == NULL || tokens == NULL || ctx == NULL) {
        die("%s: no RSA private key, or no memory", o.jwt_rsa_key);
    }

    for (i = 0; i < count; i++) {
        t = tokens + i * TOKEN_MAX;

        k = snprintf(claims, sizeof(claims),
                     "{\"sub\":\"user-%ld\",\"exp\":%ld}",
                     first + i, (long) time(NULL) + 86400);

        /* {"alg":"RS256","typ":"JWT"} */
        n = (size_t) snprintf(t, TOKEN_MAX, "?token=%s.",
                              "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9");
        n += base64url(t + n, (unsigned char *) claims, (size_t) k);

        siglen = sizeof(sig);

        if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1
            || EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) t + 7,
                              n - 7)
               != 1
            || n + 1 + siglen * 4 / 3 + 4 > TOKEN_MAX)
        {
            die("RS256 signing failed");
        }

        t[n++] = '.';
        base64url(t + n, sig, siglen);
    }

    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
}


static void
conn_connected(conn_t *c)
{
    int        err, n;
    socklen_t  len;
    char       req[2048], path[512], query[TOKEN_MAX + 64];
    size_t     ql;

    err = 0;
    len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

    if (err) {
        note_error("connect: %s", strerror(err));
        conn_fail(c, &cs->fail_connect);
        sub_start_next();
        return;
    }

    format_path(path, sizeof(path), o.path, c->room);

    query[0] = '\0';
    ql = 0;

    if (o.proto == PROTO_SIO) {
        ql = (size_t) snprintf(query, sizeof(query),
                               "%sEIO=4&transport=websocket",
                               strchr(path, '?') ? "&" : "?");
    }

    if (tokens) {
        (void) snprintf(query + ql, sizeof(query) - ql, "%s",
                        tokens + (c - conns) * TOKEN_MAX);
        if (ql || strchr(path, '?')) {
            query[ql] = '&';          /* "?token=" after a query */
        }
    }

    n = snprintf(req, sizeof(req),
                 "GET %s%s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "%s"
                 "\r\n", path, query, o.host, o.ports[c->port],
                 o.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                             "client_max_window_bits\r\n" : "");

    /* a fresh socket's buffer takes the request whole */
    if (send(c->fd, req, (size_t) n, MSG_NOSIGNAL) != n) {
        note_error("handshake send: %s", strerror(errno));
        conn_fail(c, &cs->fail_connect);
        sub_start_next();
        return;
    }

    c->state = C_HANDSHAKE;
    c->hs_match = 0;
    c->head_len = 0;
    conn_want_write(c, 0);
}


static int
head_has(conn_t *c, const char *s)
{
    return memmem(c->head, c->head_len, s, strlen(s)) != NULL;
}


static void
sio_fail(conn_t *c, uint64_t *counter, const char *what)
{
    note_error("%s: %.*s", what, (int) c->head_len, c->head);
    conn_fail(c, counter);
    sub_start_next();
}


static int
sio_send(conn_t *c, const char *data, size_t len)
{
    if (conn_send_frame(c, NGX_HTTP_REALTIME_OP_TEXT,
                        (const unsigned char *) data, len) < 0)
    {
        note_error("send: %s", strerror(errno));
        conn_fail(c, c->state == C_READY ? &cs->fail_closed
                                         : &cs->fail_handshake);
        sub_start_next();
        return -1;
    }

    return 0;
}


/*
 * A text frame of a Socket.IO connection (its first HEAD_MAX bytes):
 * the Engine.IO open, the namespace's CONNECT answer, the join's ack and
 * heartbeats are handled here; returns 1 for a delivery,
 * 42["b",{"t":..}], whose time stamp the caller reads.
 */
static int
sio_message(conn_t *c)
{
    int             n;
    size_t          len;
    unsigned char  *h;
    char            join[128];

    h = c->head;
    len = c->head_len;

    /* Engine.IO ping (pingInterval): a pong at once, in every state */
    if (len == 1 && h[0] == '2') {
        cs->pings++;
        (void) sio_send(c, "3", 1);
        return 0;
    }

    switch (c->state) {

    case C_WELCOME:
        if (len < 2 || h[0] != '0' || h[1] != '{') {
            sio_fail(c, &cs->fail_handshake, "not an Engine.IO open packet");
            return 0;
        }

        /* CONNECT to the main namespace */
        if (sio_send(c, "40", 2) == 0) {
            c->state = C_SIO_CONNECT;
        }
        return 0;

    case C_SIO_CONNECT:
        if (len >= 3 && memcmp(h, "40{", 3) == 0) {
            n = snprintf(join, sizeof(join), "421[\"join\",\"%s%u\"]",
                         o.room_prefix, c->room);

            if (sio_send(c, join, (size_t) n) == 0) {
                c->state = C_JOINING;
            }
            return 0;
        }

        sio_fail(c, &cs->fail_handshake, "CONNECT answered");
        return 0;

    case C_JOINING:
        if (len >= 4 && memcmp(h, "431[", 4) == 0
            && !head_has(c, "\"error\""))
        {
            conn_ready(c);
            return 0;
        }

        sio_fail(c, &cs->fail_handshake, "join answered");
        return 0;

    default:
        break;
    }

    if (len >= 3 && memcmp(h, "42[", 3) == 0) {
        return 1;
    }

    if ((len >= 2 && memcmp(h, "41", 2) == 0) || (len == 1 && h[0] == '1')) {
        /* the namespace's DISCONNECT, or Engine.IO's close */
        sio_fail(c, &cs->fail_closed, "closed by the server");
        return 0;
    }

    cs->other++;
    return 0;
}


/* the header of a frame of len bytes, as a server writes it */

static size_t
frame_head(size_t len)
{
    return len < 126 ? 2 : len < 65536 ? 4 : 10;
}


/*
 * A chunk of a compressed message (--deflate): kept until the message
 * is whole, then its first HEAD_MAX bytes inflated (all that is read of
 * any message) with one inflater per process, reset for each: the
 * servers here answer server_no_context_takeover.  Nonzero: c is gone.
 */

static int
conn_compressed(conn_t *c, ngx_http_realtime_frame_t *f, int64_t now)
{
    int                   rc;
    size_t                len;
    unsigned char        *data;
    static z_stream       zs;
    static int            zs_ready;
    static unsigned char  tail[4] = { 0x00, 0x00, 0xff, 0xff };

    if (c->state == C_READY) {
        cs->wire_bytes += f->len + (f->first ? frame_head(f->len) : 0);
    }

    if (f->first && f->last) {
        data = f->data;
        len = f->len;

    } else {
        if (f->first) {
            c->zlen = 0;
        }

        if (c->zlen + f->len > c->zsize) {
            c->zsize = (uint32_t) (c->zlen + f->len) * 2;
            c->zbuf = realloc(c->zbuf, c->zsize);
            if (c->zbuf == NULL) {
                die("out of memory");
            }
        }

        memcpy(c->zbuf + c->zlen, f->data, f->len);
        c->zlen += (uint32_t) f->len;

        if (!f->last) {
            return 0;
        }

        data = c->zbuf;
        len = c->zlen;
    }

    if (!zs_ready) {
        if (inflateInit2(&zs, -15) != Z_OK) {
            die("inflateInit2 failed");
        }

        zs_ready = 1;

    } else {
        inflateReset(&zs);
    }

    zs.next_in = data;
    zs.avail_in = (uInt) len;
    zs.next_out = c->head;
    zs.avail_out = HEAD_MAX;

    rc = inflate(&zs, Z_SYNC_FLUSH);

    if (zs.avail_in == 0 && zs.avail_out) {
        zs.next_in = tail;
        zs.avail_in = 4;
        rc = inflate(&zs, Z_SYNC_FLUSH);
    }

    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        cs->inflate_errors++;
    }

    c->head_len = (uint8_t) (HEAD_MAX - zs.avail_out);
    c->zlen = 0;

    if (c->state == C_READY) {
        cs->compressed++;
    }

    conn_message(c, now);

    if (c->fd < 0) {
        return 1;
    }

    c->head_len = 0;

    return 0;
}


/* --pad-text: words, so that deflate has what real JSON gives it */

static void
pad_words(char *buf, size_t len)
{
    size_t       n, k;
    uint32_t     x;
    const char  *w;

    static const char  *words[] = {
        "player", "move", "score", "room", "level", "42", "1337", "true",
        "false", "hp", "mana", "x", "y", "speed", "team", "red", "blue",
        "item", "sword", "0.5", "north", "east"
    };

    x = 12345;
    n = 0;

    while (n < len) {
        x = x * 1103515245 + 12345;
        w = words[(x >> 16) % (sizeof(words) / sizeof(words[0]))];

        for (k = 0; w[k] && n < len; k++) {
            buf[n++] = w[k];
        }

        if (n < len) {
            buf[n++] = ' ';
        }
    }

    buf[len] = '\0';
}


static void
conn_message(conn_t *c, int64_t now)
{
    unsigned char  *p, *end;
    uint64_t        t, lat;
    char            join[256];
    int             n;

    if (o.proto == PROTO_SIO && !sio_message(c)) {
        return;
    }

    switch (c->state) {

    case C_WELCOME:
        if (!head_has(c, "\"welcome\"")) {
            cs->other++;
            return;
        }

        if (o.join_url) {
            /* joined at the handshake: member before the welcome */
            conn_ready(c);
            return;
        }

        n = snprintf(join, sizeof(join),
                     "{\"event\":\"join\",\"data\":{\"room\":\"%s%u\"}}",
                     o.room_prefix, c->room);

        if (conn_send_frame(c, NGX_HTTP_REALTIME_OP_TEXT,
                            (unsigned char *) join, (size_t) n) < 0)
        {
            note_error("join send: %s", strerror(errno));
            conn_fail(c, &cs->fail_handshake);
            sub_start_next();
            return;
        }

        c->state = C_JOINING;
        return;

    case C_JOINING:
        if (head_has(c, "\"joined\"")) {
            conn_ready(c);
            return;
        }

        if (head_has(c, "\"error\"")) {
            note_error("join answered: %.*s", (int) c->head_len, c->head);
            conn_fail(c, &cs->fail_handshake);
            sub_start_next();
            return;
        }

        cs->other++;
        return;

    default:
        break;
    }

    p = memmem(c->head, c->head_len, "\"t\":", 4);
    if (p == NULL) {
        cs->no_ts++;
        if (cs->no_ts == 1) {
            note_error("message without \"t\": %.*s", (int) c->head_len,
                       c->head);
        }
        return;
    }

    p += 4;
    end = c->head + c->head_len;
    t = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        t = t * 10 + (uint64_t) (*p++ - '0');
    }

    if (p == end) {
        /* the number ran past what was kept of the message */
        cs->no_ts++;
        return;
    }

    lat = (uint64_t) now > t ? (uint64_t) now - t : 0;

    cs->hist[h_index(lat)]++;
    cs->lat_n++;
    if (lat > cs->lat_max) {
        cs->lat_max = lat;
    }

    if (o.nports > 1) {
        cs->hist_by[c->port][h_index(lat)]++;
        cs->lat_n_by[c->port]++;
        if (lat > cs->lat_max_by[c->port]) {
            cs->lat_max_by[c->port] = lat;
        }
    }

    c->delivered++;
    cs->delivered++;

    if (cs->t_first_delivery == 0) {
        cs->t_first_delivery = now;
    }

    cs->t_last_delivery = now;
}


static void
conn_read(conn_t *c)
{
    ssize_t                     n;
    int64_t                     now;
    unsigned char              *p, *end, ch;
    size_t                      k;
    int                         rc;
    ngx_http_realtime_frame_t   f;

    n = recv(c->fd, rbuf, RBUF_SIZE, 0);

    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK
                      || errno == EINTR))
        {
            return;
        }

        if (c->state != C_READY) {
            note_error("closed by the server before ready (%s)",
                       n == 0 ? "EOF" : strerror(errno));
        }

        conn_fail(c, c->state == C_CONNECTING ? &cs->fail_connect
                                              : &cs->fail_closed);
        sub_start_next();
        return;
    }

    now = now_ns();
    p = rbuf;
    end = rbuf + n;

    if (c->state == C_HANDSHAKE) {
        while (p < end && c->hs_match < 4) {
            ch = *p++;

            if (c->head_len < HEAD_MAX) {
                c->head[c->head_len++] = ch;
            }

            if (ch == (c->hs_match & 1 ? '\n' : '\r')) {
                c->hs_match++;

            } else {
                c->hs_match = (ch == '\r') ? 1 : 0;
            }
        }

        if (c->hs_match < 4) {
            return;
        }

        if (c->head_len < 12 || memcmp(c->head, "HTTP/1.1 101", 12) != 0) {
            k = 0;
            while (k < c->head_len && c->head[k] != '\r') {
                k++;
            }
            note_error("handshake answered: %.*s", (int) k, c->head);
            conn_fail(c, &cs->fail_handshake);
            sub_start_next();
            return;
        }

        c->head_len = 0;

        if (o.proto == PROTO_RT || o.proto == PROTO_SIO) {
            c->state = C_WELCOME;

        } else {
            conn_ready(c);
        }
    }

    while (p < end) {
        rc = ngx_http_realtime_frame_parse(&c->parser, &p, end, &f);

        switch (rc) {

        case NGX_HTTP_REALTIME_FRAME_AGAIN:
            break;

        case NGX_HTTP_REALTIME_FRAME_DATA:
            if (f.compressed) {
                if (conn_compressed(c, &f, now) != 0) {
                    return;
                }

                continue;
            }

            if (f.first) {
                c->head_len = 0;
            }

            if (c->state == C_READY) {
                cs->wire_bytes += f.len + (f.first ? frame_head(f.len) : 0);
            }

            k = HEAD_MAX - c->head_len;
            if (k > f.len) {
                k = f.len;
            }

            memcpy(c->head + c->head_len, f.data, k);
            c->head_len += (uint8_t) k;

            if (f.last) {
                conn_message(c, now);
                if (c->fd < 0) {
                    return;
                }
                c->head_len = 0;
            }

            continue;

        case NGX_HTTP_REALTIME_FRAME_BUFFER:
            /* a control frame split across reads: kept for the socket */
            c->parser.control = malloc(NGX_HTTP_REALTIME_CONTROL_MAX);
            if (c->parser.control == NULL) {
                die("out of memory");
            }
            continue;

        case NGX_HTTP_REALTIME_FRAME_CONTROL:
            if (f.opcode == NGX_HTTP_REALTIME_OP_PING) {
                cs->pings++;
                if (conn_send_frame(c, NGX_HTTP_REALTIME_OP_PONG, f.data,
                                    f.len) < 0)
                {
                    conn_fail(c, &cs->fail_closed);
                    sub_start_next();
                    return;
                }

            } else if (f.opcode == NGX_HTTP_REALTIME_OP_CLOSE) {
                note_error("close frame from the server: %u %.*s", f.code,
                           (int) f.len, f.data);
                conn_fail(c, &cs->fail_closed);
                sub_start_next();
                return;
            }

            continue;

        default:
            cs->frame_errors++;
            note_error("bad frame from the server: close code %u", f.code);
            conn_fail(c, &cs->fail_closed);
            sub_start_next();
            return;
        }

        break;
    }
}


static void
sub_timeouts(int64_t now)
{
    long     i;
    int64_t  limit;
    conn_t  *c;

    limit = (int64_t) (o.connect_timeout * 1e9);

    for (i = 0; i < next_conn; i++) {
        c = &conns[i];

        if (c->state >= C_CONNECTING && c->state <= C_JOINING
            && now - c->t_start > limit)
        {
            note_error("connection not ready after %.1f s (state %d)",
                       o.connect_timeout, c->state);
            conn_fail(c, &cs->fail_timeout);
        }
    }

    sub_start_next();
}


static void
sub_report(void)
{
    long           i;
    uint64_t       mn, mx, shrt, counted, exp;
    struct rusage  ru;

    exp = shm->expected_per_conn;
    mn = UINT64_MAX;
    mx = 0;
    shrt = 0;
    counted = 0;

    for (i = 0; i < nconns; i++) {
        if (conns[i].state != C_READY) {
            continue;
        }

        counted++;
        if (conns[i].delivered < mn) {
            mn = conns[i].delivered;
        }
        if (conns[i].delivered > mx) {
            mx = conns[i].delivered;
        }
        if (exp && conns[i].delivered < exp) {
            shrt++;
        }
    }

    cs->conn_min = counted ? mn : 0;
    cs->conn_max = mx;
    cs->conn_short = shrt;
    cs->conns_counted = counted;

    getrusage(RUSAGE_SELF, &ru);
    cs->maxrss_kb = ru.ru_maxrss;
}


static void
sub_main(long first, long count)
{
    long                 i, k;
    int                  n, phase, ran;
    int64_t              now, last_scan;
    uint64_t             cpu_run_start;
    struct epoll_event  *evs;
    conn_t              *c;

    conn_base = first;
    nconns = count;

    /* everything this process will ever use, allocated up front */
    conns = calloc((size_t) (count ? count : 1), sizeof(conn_t));
    rbuf = malloc(RBUF_SIZE);
    evs = calloc(MAX_EVENTS, sizeof(struct epoll_event));

    if (conns == NULL || rbuf == NULL || evs == NULL) {
        die("out of memory for %ld connections", count);
    }

    for (i = 0; i < count; i++) {
        c = &conns[i];
        c->fd = -1;
        c->gidx = (uint32_t) (first + i);
        c->room = (uint32_t) ((first + i) % o.rooms);
        c->port = (uint8_t) ((first + i) % o.nports);
        ngx_http_realtime_frame_parser_init(&c->parser, 0, 0);
        c->parser.deflate = o.deflate;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }

    if (o.jwt_rsa_key) {
        rs256_sign_all(first, count);

    } else if (o.jwt_secret) {
        hs256_sign_all(first, count);
    }

    cs->conn_min = 0;
    cs->t_connect_start = now_ns();
    cs->cpu_connect_start_us = cpu_us();  /* the tokens are made by now */
    sub_start_next();

    last_scan = now_ns();
    ran = 0;
    cpu_run_start = 0;

    for ( ;; ) {
        n = epoll_wait(ep, evs, MAX_EVENTS, 50);

        for (k = 0; k < n; k++) {
            c = &conns[evs[k].data.u64];

            if (c->fd < 0) {
                continue;
            }

            if (c->state == C_CONNECTING) {
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                    conn_connected(c);
                }
                continue;
            }

            if (evs[k].events & EPOLLOUT) {
                if (conn_flush(c) < 0) {
                    conn_fail(c, &cs->fail_closed);
                    sub_start_next();
                    continue;
                }
                if (c->out_len == 0) {
                    conn_want_write(c, 0);
                }
            }

            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                conn_read(c);
            }
        }

        now = now_ns();

        if (!cs->ready && now - last_scan > 200000000LL) {
            last_scan = now;
            sub_timeouts(now);
        }

        phase = __atomic_load_n(&shm->phase, __ATOMIC_ACQUIRE);

        if (phase >= PHASE_RUN && !ran) {
            ran = 1;
            cpu_run_start = cpu_us();
        }

        if (phase == PHASE_STOP) {
            break;
        }
    }

    cs->cpu_run_us = ran ? cpu_us() - cpu_run_start : 0;
    cs->cpu_total_us = cpu_us();
    sub_report();

    __atomic_store_n(&cs->done, 1, __ATOMIC_RELEASE);
    _exit(0);
}


/* =========================================================================
 * publisher
 */

static pconn_t   *pconns;
static int        pep;
static char      *body_buf;

static struct {
    uint64_t   requests;          /* sent */
    uint64_t   answered;
    uint64_t   items;             /* publications in answered requests */
    uint64_t   ok;                /* 2xx answers */
    uint64_t   non2xx;
    uint64_t   errors;            /* connection failures */
    uint64_t   expected;          /* "delivered" / "subscribers" summed */
    uint64_t   late;              /* rate mode: sent behind schedule */
    int        last_status;
    char       last_bad[160];
    uint64_t   rtt_n;
    uint64_t   rtt_max;
    uint64_t   rtt[H_N];
} ps;

static uint64_t   pub_seq;


static void
pconn_connect(pconn_t *pc)
{
    int                 fd, one;
    struct sockaddr_in  dst;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("publisher socket(): %s", strerror(errno));
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t) o.pub_port);
    inet_pton(AF_INET, o.host, &dst.sin_addr);

    pc->fd = fd;
    pc->state = P_CONNECTING;
    pc->resp_len = 0;

    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u64 = (uint64_t) (pc - pconns);
    epoll_ctl(pep, EPOLL_CTL_ADD, fd, &ev);

    if (connect(fd, (struct sockaddr *) &dst, sizeof(dst)) < 0
        && errno != EINPROGRESS)
    {
        die("publisher connect(): %s", strerror(errno));
    }
}


static void
pconn_reset(pconn_t *pc)
{
    if (pc->fd >= 0) {
        close(pc->fd);
        pc->fd = -1;
    }

    pc->state = P_DOWN;
}


/* one publication: the push API's item, or Nchan's message body */
static size_t
format_item(char *p, size_t size, uint32_t room, int64_t t)
{
    int  n;

    if (o.proto == PROTO_NCHAN) {
        n = snprintf(p, size, "{\"t\":%" PRId64 ",\"seq\":%" PRIu64
                     ",\"pad\":\"%s\"}", t, pub_seq, pad_str);

    } else {
        n = snprintf(p, size, "{\"room\":\"%s%u\",\"topic\":\"b\","
                     "\"payload\":{\"t\":%" PRId64 ",\"seq\":%" PRIu64
                     ",\"pad\":\"%s\"}}", o.room_prefix, room, t, pub_seq,
                     pad_str);
    }

    pub_seq++;

    return (n < 0 || (size_t) n >= size) ? 0 : (size_t) n;
}


static uint32_t
pick_room(void)
{
    return o.rooms > 1 ? (uint32_t) (xrand() % (uint64_t) o.rooms) : 0;
}


/*
 * t: the time the request is stamped with; in rate mode the time it was
 * scheduled for, so that a server that falls behind is charged for the
 * wait (no coordinated omission)
 */
static void
pconn_send_next(pconn_t *pc, int64_t t)
{
    size_t    blen, n, cap;
    uint32_t  room;
    int       i, hl;
    char      path[512];
    ssize_t   w;

    room = pick_room();
    cap = PREQ_MAX - 512;
    blen = 0;

    if (o.proto == PROTO_NCHAN || o.batch <= 1) {
        blen = format_item(body_buf, cap, room, t);
        pc->items = 1;

    } else {
        body_buf[blen++] = '[';

        for (i = 0; i < o.batch; i++) {
            if (i) {
                body_buf[blen++] = ',';
                room = pick_room();
            }

            n = format_item(body_buf + blen, cap - blen - 2, room, t);
            if (n == 0) {
                die("batch of %d does not fit in %d bytes", o.batch,
                    PREQ_MAX);
            }
            blen += n;
        }

        body_buf[blen++] = ']';
        pc->items = (uint64_t) o.batch;
    }

    format_path(path, sizeof(path), o.pub_path, room);

    hl = snprintf(pc->req, 512,
                  "POST %s HTTP/1.1\r\n"
                  "Host: %s:%d\r\n"
                  "Content-Type: application/json\r\n"
                  "Content-Length: %zu\r\n"
                  "\r\n", path, o.host, o.pub_port, blen);

    memcpy(pc->req + hl, body_buf, blen);
    pc->req_len = (size_t) hl + blen;
    pc->req_off = 0;
    pc->t_sent = now_ns();
    pc->resp_len = 0;
    ps.requests++;

    w = send(pc->fd, pc->req, pc->req_len, MSG_NOSIGNAL);

    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        ps.errors++;
        pconn_reset(pc);
        return;
    }

    pc->req_off = w > 0 ? (size_t) w : 0;

    if (pc->req_off < pc->req_len) {
        struct epoll_event  ev;

        pc->state = P_SENDING;
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u64 = (uint64_t) (pc - pconns);
        epoll_ctl(pep, EPOLL_CTL_MOD, pc->fd, &ev);

    } else {
        pc->state = P_WAITING;
    }
}


static uint64_t
sum_after(const char *p, const char *end, const char *key)
{
    size_t       kl;
    uint64_t     sum, v;
    const char  *q;

    kl = strlen(key);
    sum = 0;

    while ((q = memmem(p, (size_t) (end - p), key, kl)) != NULL) {
        q += kl;
        while (q < end && *q == ' ') {
            q++;
        }
        v = 0;
        while (q < end && *q >= '0' && *q <= '9') {
            v = v * 10 + (uint64_t) (*q++ - '0');
        }
        sum += v;
        p = q;
    }

    return sum;
}


/* header value, case-insensitive name; NULL if absent */
static const char *
header_find(const char *h, const char *hend, const char *name)
{
    size_t       nl;
    const char  *p;

    nl = strlen(name);

    for (p = h; p + nl < hend; p++) {
        if (p[0] == '\n' && strncasecmp(p + 1, name, nl) == 0) {
            return p + 1 + nl;
        }
    }

    return NULL;
}


/* 1: a whole answer was taken, 0: need more, -1: broken */
static int
pconn_parse(pconn_t *pc)
{
    char        *h, *hend, *body, *end, *p;
    const char  *v;
    long         status;
    size_t       cl, total;
    unsigned long  csz;
    int          chunked, close_after;
    int64_t      rtt;

    h = pc->resp;
    end = h + pc->resp_len;

    hend = memmem(h, pc->resp_len, "\r\n\r\n", 4);
    if (hend == NULL) {
        return pc->resp_len >= PRESP_MAX ? -1 : 0;
    }

    body = hend + 4;

    if (pc->resp_len < 12 || strncmp(h, "HTTP/1.", 7) != 0) {
        return -1;
    }

    status = strtol(h + 9, NULL, 10);

    chunked = 0;
    v = header_find(h, hend, "transfer-encoding:");
    if (v && strncasecmp(v + strspn(v, " "), "chunked", 7) == 0) {
        chunked = 1;
    }

    close_after = 0;
    v = header_find(h, hend, "connection:");
    if (v && strncasecmp(v + strspn(v, " "), "close", 5) == 0) {
        close_after = 1;
    }

    if (chunked) {
        p = body;

        for ( ;; ) {
            char  *eol = memmem(p, (size_t) (end - p), "\r\n", 2);

            if (eol == NULL) {
                return 0;
            }

            csz = strtoul(p, NULL, 16);
            p = eol + 2;

            if (csz == 0) {
                /* no trailers from these servers: just the final CRLF */
                if (end - p < 2) {
                    return 0;
                }
                total = (size_t) (p + 2 - h);
                break;
            }

            if ((size_t) (end - p) < csz + 2) {
                return 0;
            }

            p += csz + 2;
        }

    } else {
        v = header_find(h, hend, "content-length:");
        cl = v ? strtoul(v, NULL, 10) : 0;

        if ((size_t) (end - body) < cl) {
            return pc->resp_len >= PRESP_MAX ? -1 : 0;
        }

        total = (size_t) (body - h) + cl;
    }

    rtt = now_ns() - pc->t_sent;
    ps.rtt[h_index((uint64_t) rtt)]++;
    ps.rtt_n++;
    if ((uint64_t) rtt > ps.rtt_max) {
        ps.rtt_max = (uint64_t) rtt;
    }

    ps.answered++;
    ps.last_status = (int) status;

    if (status >= 200 && status < 300) {
        ps.ok++;
        ps.items += pc->items;
        ps.expected += (o.proto == PROTO_NCHAN)
                       ? sum_after(body, h + total, "subscribers:")
                       : sum_after(body, h + total, "\"delivered\":");

    } else {
        ps.non2xx++;
        if (ps.last_bad[0] == '\0') {
            snprintf(ps.last_bad, sizeof(ps.last_bad), "%ld %.*s", status,
                     (int) ((h + total - body) > 120 ? 120
                                                     : (h + total - body)),
                     body);
        }
    }

    /* no pipelining: anything after the answer is unexpected */
    pc->resp_len = 0;
    pc->state = P_IDLE;

    if (close_after) {
        pconn_reset(pc);
    }

    return 1;
}


static void
pconn_event(pconn_t *pc, uint32_t events)
{
    int                 err;
    socklen_t           len;
    ssize_t             n;
    struct epoll_event  ev;

    if (pc->state == P_CONNECTING) {
        err = 0;
        len = sizeof(err);
        getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &len);

        if (err) {
            die("publisher could not connect: %s", strerror(err));
        }

        pc->state = P_IDLE;
        ev.events = EPOLLIN;
        ev.data.u64 = (uint64_t) (pc - pconns);
        epoll_ctl(pep, EPOLL_CTL_MOD, pc->fd, &ev);
        return;
    }

    if (pc->state == P_SENDING && (events & EPOLLOUT)) {
        n = send(pc->fd, pc->req + pc->req_off, pc->req_len - pc->req_off,
                 MSG_NOSIGNAL);

        if (n < 0 && errno != EAGAIN) {
            ps.errors++;
            pconn_reset(pc);
            return;
        }

        if (n > 0) {
            pc->req_off += (size_t) n;
        }

        if (pc->req_off == pc->req_len) {
            pc->state = P_WAITING;
            ev.events = EPOLLIN;
            ev.data.u64 = (uint64_t) (pc - pconns);
            epoll_ctl(pep, EPOLL_CTL_MOD, pc->fd, &ev);
        }
    }

    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        n = recv(pc->fd, pc->resp + pc->resp_len, PRESP_MAX - pc->resp_len,
                 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }

        if (n <= 0) {
            if (pc->state == P_WAITING || pc->state == P_SENDING) {
                ps.errors++;
            }
            pconn_reset(pc);
            return;
        }

        pc->resp_len += (size_t) n;

        if (pc->state == P_WAITING && pconn_parse(pc) < 0) {
            ps.errors++;
            pconn_reset(pc);
        }
    }
}


static uint64_t
total_delivered(void)
{
    int       k;
    uint64_t  sum;

    sum = 0;
    for (k = 0; k < o.procs; k++) {
        sum += __atomic_load_n(&shm->c[k].delivered, __ATOMIC_RELAXED);
    }

    return sum;
}


/* returns the time publishing ended */
static int64_t
publish(int64_t start)
{
    int                 i, n, tfd, stopping, busy;
    int64_t             now, deadline;
    uint64_t            due, exp, sched;
    int64_t             interval, sched_start;
    struct itimerspec   its;
    struct epoll_event  ev, evs[64];

    pep = epoll_create1(EPOLL_CLOEXEC);
    pconns = calloc((size_t) o.pub_conns, sizeof(pconn_t));
    body_buf = malloc(PREQ_MAX);

    if (pconns == NULL || body_buf == NULL) {
        die("out of memory");
    }

    for (i = 0; i < o.pub_conns; i++) {
        pconns[i].fd = -1;
        pconns[i].req = malloc(PREQ_MAX);
        pconns[i].resp = malloc(PRESP_MAX);
        if (pconns[i].req == NULL || pconns[i].resp == NULL) {
            die("out of memory");
        }
        pconn_connect(&pconns[i]);
    }

    tfd = -1;
    due = 0;
    sched = 0;
    sched_start = start;
    interval = o.rate > 0 ? (int64_t) (1e9 / o.rate) : 0;

    if (o.rate > 0) {
        long  ns = (long) (1e9 / o.rate);

        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        its.it_interval.tv_sec = ns / 1000000000L;
        its.it_interval.tv_nsec = ns % 1000000000L;
        its.it_value = its.it_interval;
        timerfd_settime(tfd, 0, &its, NULL);
        sched_start = now_ns();

        ev.events = EPOLLIN;
        ev.data.u64 = UINT64_MAX;
        epoll_ctl(pep, EPOLL_CTL_ADD, tfd, &ev);
        due = 1;
    }

    deadline = start + (int64_t) (o.duration * 1e9);
    stopping = 0;

    for ( ;; ) {
        now = now_ns();

        if (!stopping
            && (now >= deadline || (o.count && (long) ps.requests >= o.count)))
        {
            stopping = 1;
        }

        busy = 0;

        for (i = 0; i < o.pub_conns; i++) {
            pconn_t  *pc = &pconns[i];

            if (pc->state == P_DOWN && !stopping) {
                pconn_connect(pc);
            }

            if (pc->state == P_IDLE && !stopping) {
                if (o.rate <= 0) {
                    pconn_send_next(pc, now_ns());

                } else if (due > 0) {
                    if (due > 1) {
                        ps.late++;
                    }
                    due--;
                    pconn_send_next(pc, sched_start + (int64_t) sched * interval);
                    sched++;
                }

                if (o.count && (long) ps.requests >= o.count) {
                    stopping = 1;
                }
            }

            if (pc->state == P_SENDING || pc->state == P_WAITING) {
                busy++;
            }
        }

        if (stopping && busy == 0) {
            break;
        }

        if (stopping && now > deadline + 10000000000LL) {
            break;        /* answers that never came are left behind */
        }

        n = epoll_wait(pep, evs, 64, 20);

        for (i = 0; i < n; i++) {
            if (evs[i].data.u64 == UINT64_MAX) {
                if (read(tfd, &exp, sizeof(exp)) == sizeof(exp)) {
                    due += exp;
                }
                continue;
            }

            pconn_event(&pconns[evs[i].data.u64], evs[i].events);
        }
    }

    now = now_ns();

    for (i = 0; i < o.pub_conns; i++) {
        pconn_reset(&pconns[i]);
    }

    if (tfd >= 0) {
        close(tfd);
    }

    return now;
}


/* =========================================================================
 * the parent: forks, coordinates, reports
 */

static void
usage(void)
{
    fprintf(stderr,
"usage: loadgen [options]\n"
"  -H host        server address (127.0.0.1)\n"
"  -p port[,port] server port (8080); with several, connection i goes to\n"
"                 the (i %% n)th, e.g. two instances sharing rooms\n"
"  --pub-port P   the publisher's port (the first of -p)\n"
"  --expect-all   every publication should reach every subscriber of its\n"
"                 room (rooms of equal size: -c a multiple of -r), for\n"
"                 instances that each report only their own\n"
"  -u path        WebSocket path; \"{room}\" is replaced by the room name\n"
"                 (default /ws for rt, /sub/{room} for nchan, /socket.io/\n"
"                 for sio, which adds ?EIO=4&transport=websocket)\n"
"  --join-url     rt: -u names the room (as /ws?room={room}) and the\n"
"                 server joins it at the handshake (realtime_join_on_connect\n"
"                 $arg_room): ready at the welcome, no join sent\n"
"  --proto P      rt (ngx-realtime: welcome, join, push API), nchan, or\n"
"                 sio (Socket.IO v5 over Engine.IO v4, websocket\n"
"                 transport: CONNECT \"/\", emit join with an ack, pings\n"
"                 answered; the publisher is the push API as for rt)\n"
"  -c N           subscriber connections (0: publisher only)\n"
"  -P procs       subscriber processes (each one epoll loop)\n"
"  -r rooms       rooms; connection i is in room i %% rooms (1)\n"
"  --room-prefix  room names are prefix + number (r)\n"
"  --src-addrs X  bind to 127.0.0.1..127.0.0.X round robin (8; 0: don't)\n"
"  --conc K       connections being set up at once per process (256)\n"
"  --connect-timeout s   per connection (10)\n"
"  --pub-path P   push API path (/sendPayload) or /pub/{room} for nchan\n"
"  --pub-conns C  publisher keep-alive connections (1; 0: no publisher)\n"
"  --rate R       requests per second over all publisher connections\n"
"                 (0: as fast as answered)\n"
"  --batch K      push API items per request, as a JSON array (1)\n"
"  -d seconds     publishing time (10)\n"
"  -n count       stop after this many requests\n"
"  --pad bytes    payload padding (100)\n"
"  --pad-text     the padding is words, not x's (what deflate meets in JSON)\n"
"  --deflate      offer permessage-deflate; compressed messages are\n"
"                 inflated (the server must answer no context takeover)\n"
"  --drain s      longest wait for deliveries after publishing (15)\n"
"  --drain-idle s stop waiting once nothing arrived for this long (1)\n"
"  --hold s       hold the connections this long once ready\n"
"  --wait-stdin   once ready, print READY and wait for a line on stdin\n"
"  --label L      name in the report\n"
"  --jwt-secret S each subscriber sends ?token=<an HS256 JWT signed with S,\n"
"                 sub \"user-<i>\", exp in a day>\n"
"  --jwt-rsa-key F the same, RS256, signed with the PEM private key in F\n"
"                 (all signed before the first connect)\n");
    exit(2);
}


static void
parse_ports(const char *arg)
{
    char  *end;

    o.nports = 0;

    while (*arg && o.nports < MAX_PORTS) {
        o.ports[o.nports++] = (int) strtol(arg, &end, 10);
        if (*end != ',') {
            break;
        }
        arg = end + 1;
    }

    o.port = o.ports[0];
}


static void
parse_args(int argc, char **argv)
{
    int  ch, idx;

    static struct option  longopts[] = {
        { "proto", required_argument, NULL, 1 },
        { "room-prefix", required_argument, NULL, 2 },
        { "src-addrs", required_argument, NULL, 3 },
        { "conc", required_argument, NULL, 4 },
        { "connect-timeout", required_argument, NULL, 5 },
        { "pub-path", required_argument, NULL, 6 },
        { "pub-conns", required_argument, NULL, 7 },
        { "rate", required_argument, NULL, 8 },
        { "batch", required_argument, NULL, 9 },
        { "pad", required_argument, NULL, 10 },
        { "drain", required_argument, NULL, 11 },
        { "drain-idle", required_argument, NULL, 12 },
        { "hold", required_argument, NULL, 13 },
        { "wait-stdin", no_argument, NULL, 14 },
        { "label", required_argument, NULL, 15 },
        { "connect-phase-max", required_argument, NULL, 16 },
        { "pub-port", required_argument, NULL, 17 },
        { "expect-all", no_argument, NULL, 18 },
        { "jwt-secret", required_argument, NULL, 19 },
        { "jwt-rsa-key", required_argument, NULL, 20 },
        { "deflate", no_argument, NULL, 21 },
        { "join-url", no_argument, NULL, 23 },
        { "pad-text", no_argument, NULL, 22 },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    while ((ch = getopt_long(argc, argv, "H:p:u:c:P:r:d:n:qh", longopts,
                             &idx)) != -1)
    {
        switch (ch) {
        case 'H': o.host = optarg; break;
        case 'p': parse_ports(optarg); break;
        case 'u': o.path = optarg; break;
        case 'c': o.conns = atol(optarg); break;
        case 'P': o.procs = atoi(optarg); break;
        case 'r': o.rooms = atol(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'n': o.count = atol(optarg); break;
        case 'q': o.quiet = 1; break;
        case 1:
            if (strcmp(optarg, "rt") == 0) {
                o.proto = PROTO_RT;
            } else if (strcmp(optarg, "nchan") == 0) {
                o.proto = PROTO_NCHAN;
            } else if (strcmp(optarg, "sio") == 0) {
                o.proto = PROTO_SIO;
            } else {
                usage();
            }
            break;
        case 2: o.room_prefix = optarg; break;
        case 3: o.src_addrs = atoi(optarg); break;
        case 4: o.conc = atoi(optarg); break;
        case 5: o.connect_timeout = atof(optarg); break;
        case 6: o.pub_path = optarg; break;
        case 7: o.pub_conns = atoi(optarg); break;
        case 8: o.rate = atof(optarg); break;
        case 9: o.batch = atoi(optarg); break;
        case 10: o.pad = atoi(optarg); break;
        case 21: o.deflate = 1; break;
        case 23: o.join_url = 1; break;
        case 22: o.pad_text = 1; break;
        case 11: o.drain = atof(optarg); break;
        case 12: o.drain_idle = atof(optarg); break;
        case 13: o.hold = atof(optarg); break;
        case 14: o.wait_stdin = 1; break;
        case 15: o.label = optarg; break;
        case 16: o.connect_phase_max = atof(optarg); break;
        case 17: o.pub_port = atoi(optarg); break;
        case 18: o.expect_all = 1; break;
        case 19: o.jwt_secret = optarg; break;
        case 20: o.jwt_rsa_key = optarg; break;
        default: usage();
        }
    }

    if (o.pub_port == 0) {
        o.pub_port = o.ports[0];
    }

    if (o.path == NULL) {
        o.path = o.proto == PROTO_NCHAN ? "/sub/{room}"
                 : o.proto == PROTO_SIO ? "/socket.io/" : "/ws";
    }

    if (o.pub_path == NULL) {
        o.pub_path = o.proto == PROTO_NCHAN ? "/pub/{room}" : "/sendPayload";
    }

    if (o.procs < 1 || o.rooms < 1 || o.conc < 1 || o.pad < 0
        || o.pad >= (int) sizeof(pad_str) || o.batch < 1
        || o.conns < 0 || o.pub_conns < 0)
    {
        usage();
    }

    if (o.conns == 0) {
        o.procs = 0;

    } else if (o.procs > o.conns) {
        o.procs = (int) o.conns;
    }
}


static const char *
proto_name(void)
{
    return o.proto == PROTO_RT ? "rt" : o.proto == PROTO_SIO ? "sio"
                                                             : "nchan";
}


static double
ms(uint64_t ns)
{
    return (double) ns / 1e6;
}


int
main(int argc, char **argv)
{
    int             k, status, all_ready;
    pid_t          *pids;
    size_t          shm_size;
    struct rlimit   rl;
    int64_t         t0, t_ready, pub_start, pub_end, t_last, t_first, idle_since;
    int64_t         drain_end;
    uint64_t        pub_cpu0, pub_cpu, delivered, last_seen;
    uint64_t        attempted, ok, f_conn, f_hs, f_closed, f_to, dropped;
    uint64_t        other, no_ts, ferr, pings, lat_n, lat_max, cmin, cmax;
    uint64_t        cshort, counted, sub_cpu_run, sub_cpu_total, out_over,
                    sub_cpu_connect;
    uint64_t        wire, zmsgs, zerr;
    uint64_t       *hist, *hist_by[MAX_PORTS], n_by[MAX_PORTS];
    uint64_t        max_by[MAX_PORTS];
    char            byport[1024];
    int             p;
    int64_t         conn_start, conn_end;
    long            maxrss;
    double          wall_run, connect_secs, deliver_secs;
    char            line[64];
    const char     *err;

    parse_args(argc, argv);

    if (o.pad_text) {
        pad_words(pad_str, (size_t) o.pad);

    } else {
        memset(pad_str, 'x', (size_t) o.pad);
    }
    pad_str[o.pad] = '\0';

    signal(SIGPIPE, SIG_IGN);

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (o.procs && (rlim_t) (o.conns / o.procs + 64) > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %ld connections per process exceed the "
                "open-file limit %lu: use more processes (-P)\n",
                o.conns / o.procs, (unsigned long) rl.rlim_cur);
    }

    shm_size = sizeof(shm_t) + (size_t) (o.procs ? o.procs : 1)
                               * sizeof(child_stats_t);
    shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        die("mmap: %s", strerror(errno));
    }

    pids = calloc((size_t) (o.procs ? o.procs : 1), sizeof(pid_t));
    hist = calloc(H_N, sizeof(uint64_t));

    for (p = 0; p < MAX_PORTS; p++) {
        hist_by[p] = calloc(H_N, sizeof(uint64_t));
        n_by[p] = 0;
        max_by[p] = 0;
    }

    t0 = now_ns();

    for (k = 0; k < o.procs; k++) {
        long  first = o.conns * k / o.procs;
        long  last = o.conns * (k + 1) / o.procs;

        fflush(NULL);
        pids[k] = fork();

        if (pids[k] < 0) {
            die("fork: %s", strerror(errno));
        }

        if (pids[k] == 0) {
            child_id = k;
            cs = &shm->c[k];
            rng ^= (uint64_t) getpid() * 0x2545f4914f6cdd1dULL;
            sub_main(first, last - first);
        }
    }

    /* wait for every subscriber process to have set up its connections */

    for ( ;; ) {
        all_ready = 1;
        for (k = 0; k < o.procs; k++) {
            if (!__atomic_load_n(&shm->c[k].ready, __ATOMIC_ACQUIRE)) {
                all_ready = 0;
            }
        }

        if (all_ready) {
            break;
        }

        if (now_ns() - t0 > (int64_t) (o.connect_phase_max * 1e9)) {
            fprintf(stderr, "loadgen: connections still being set up after "
                    "%.0f s, going on\n", o.connect_phase_max);
            break;
        }

        for (k = 0; k < o.procs; k++) {
            if (waitpid(pids[k], &status, WNOHANG) == pids[k]) {
                die("subscriber process %d died", k);
            }
        }

        usleep(10000);
    }

    t_ready = now_ns();

    attempted = ok = 0;
    for (k = 0; k < o.procs; k++) {
        attempted += shm->c[k].attempted;
        ok += shm->c[k].ok;
    }

    if (!o.quiet) {
        fprintf(stderr, "loadgen %s: %" PRIu64 " of %ld connections ready "
                "in %.2f s\n", o.label, ok, o.conns, (t_ready - t0) / 1e9);
    }

    if (o.wait_stdin) {
        printf("READY %" PRIu64 "\n", ok);
        fflush(stdout);
        if (fgets(line, sizeof(line), stdin) == NULL) {
            /* EOF: go on */
        }
    }

    if (o.hold > 0) {
        usleep((useconds_t) (o.hold * 1e6));
    }

    /* publish */

    __atomic_store_n(&shm->phase, PHASE_RUN, __ATOMIC_RELEASE);
    usleep(20000);   /* let the subscribers take their CPU baseline */

    pub_start = now_ns();
    pub_end = pub_start;
    pub_cpu = 0;

    if (o.pub_conns > 0) {
        pub_cpu0 = cpu_us();
        pub_end = publish(pub_start);
        pub_cpu = cpu_us() - pub_cpu0;

        if (o.expect_all) {
            uint64_t  ready = 0;

            for (k = 0; k < o.procs; k++) {
                ready += shm->c[k].ok;
            }
            /* rooms of equal size (-c a multiple of -r): its room's */
            ps.expected = ps.items * ready / (uint64_t) o.rooms;
        }

        /* drain: until every reported recipient got it, or quiet */

        last_seen = total_delivered();
        idle_since = now_ns();
        drain_end = pub_end + (int64_t) (o.drain * 1e9);

        for ( ;; ) {
            int64_t  now = now_ns();

            delivered = total_delivered();

            if (ps.expected && delivered >= ps.expected) {
                break;
            }

            if (delivered != last_seen) {
                last_seen = delivered;
                idle_since = now;

            } else if (now - idle_since > (int64_t) (o.drain_idle * 1e9)) {
                break;
            }

            if (now > drain_end) {
                break;
            }

            usleep(5000);
        }

        if (o.rooms == 1) {
            shm->expected_per_conn = ps.items;
        }
    }

    wall_run = (now_ns() - pub_start) / 1e9;

    __atomic_store_n(&shm->phase, PHASE_STOP, __ATOMIC_RELEASE);

    for (k = 0; k < o.procs; k++) {
        int  waited = 0;

        while (!__atomic_load_n(&shm->c[k].done, __ATOMIC_ACQUIRE)) {
            if (waitpid(pids[k], &status, WNOHANG) == pids[k]) {
                break;
            }
            if (++waited > 3000) {
                kill(pids[k], SIGKILL);
                break;
            }
            usleep(10000);
        }
    }

    for (k = 0; k < o.procs; k++) {
        waitpid(pids[k], &status, 0);
    }

    /* aggregate */

    attempted = ok = f_conn = f_hs = f_closed = f_to = dropped = 0;
    other = no_ts = ferr = pings = lat_n = lat_max = cmax = 0;
    wire = zmsgs = zerr = 0;
    cshort = counted = sub_cpu_run = sub_cpu_total = out_over = 0;
    sub_cpu_connect = 0;
    cmin = UINT64_MAX;
    delivered = 0;
    t_last = 0;
    t_first = INT64_MAX;
    conn_start = INT64_MAX;
    conn_end = 0;
    maxrss = 0;
    err = "";

    for (k = 0; k < o.procs; k++) {
        child_stats_t  *c = &shm->c[k];
        int             i;

        attempted += c->attempted;
        ok += c->ok;
        f_conn += c->fail_connect;
        f_hs += c->fail_handshake;
        f_closed += c->fail_closed;
        f_to += c->fail_timeout;
        dropped += c->dropped;
        other += c->other;
        no_ts += c->no_ts;
        ferr += c->frame_errors;
        wire += c->wire_bytes;
        zmsgs += c->compressed;
        zerr += c->inflate_errors;
        pings += c->pings;
        out_over += c->out_overflow;
        delivered += c->delivered;
        lat_n += c->lat_n;
        if (c->lat_max > lat_max) {
            lat_max = c->lat_max;
        }
        if (c->conns_counted && c->conn_min < cmin) {
            cmin = c->conn_min;
        }
        if (c->conn_max > cmax) {
            cmax = c->conn_max;
        }
        cshort += c->conn_short;
        counted += c->conns_counted;
        sub_cpu_run += c->cpu_run_us;
        sub_cpu_total += c->cpu_total_us;
        sub_cpu_connect += c->cpu_connect_us;
        if (c->maxrss_kb > maxrss) {
            maxrss = c->maxrss_kb;
        }
        if (c->t_last_delivery > t_last) {
            t_last = c->t_last_delivery;
        }
        if (c->t_first_delivery && c->t_first_delivery < t_first) {
            t_first = c->t_first_delivery;
        }
        if (c->t_connect_start < conn_start) {
            conn_start = c->t_connect_start;
        }
        if (c->t_connect_end > conn_end) {
            conn_end = c->t_connect_end;
        }
        if (*err == '\0' && c->first_error[0]) {
            err = c->first_error;
        }
        for (i = 0; i < H_N; i++) {
            hist[i] += c->hist[i];
        }

        for (p = 0; p < o.nports; p++) {
            n_by[p] += c->lat_n_by[p];
            if (c->lat_max_by[p] > max_by[p]) {
                max_by[p] = c->lat_max_by[p];
            }
            for (i = 0; i < H_N; i++) {
                hist_by[p][i] += c->hist_by[p][i];
            }
        }
    }

    byport[0] = '\0';

    if (o.nports > 1) {
        size_t  len = 0;

        len += (size_t) snprintf(byport + len, sizeof(byport) - len,
                                 ",\"latency_by_port\":[");

        for (p = 0; p < o.nports; p++) {
            len += (size_t) snprintf(byport + len, sizeof(byport) - len,
                "%s{\"port\":%d,\"n\":%" PRIu64 ",\"p50\":%.3f,"
                "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}",
                p ? "," : "", o.ports[p], n_by[p],
                ms(h_percentile(hist_by[p], n_by[p], 0.50, max_by[p])),
                ms(h_percentile(hist_by[p], n_by[p], 0.99, max_by[p])),
                ms(h_percentile(hist_by[p], n_by[p], 0.999, max_by[p])),
                ms(max_by[p]));

            if (!o.quiet) {
                fprintf(stderr, "  port %d:  %" PRIu64 " deliveries, "
                        "latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, "
                        "max %.3f ms\n", o.ports[p], n_by[p],
                        ms(h_percentile(hist_by[p], n_by[p], 0.50,
                                        max_by[p])),
                        ms(h_percentile(hist_by[p], n_by[p], 0.99,
                                        max_by[p])),
                        ms(h_percentile(hist_by[p], n_by[p], 0.999,
                                        max_by[p])),
                        ms(max_by[p]));
            }
        }

        snprintf(byport + len, sizeof(byport) - len, "]");
    }

    if (cmin == UINT64_MAX) {
        cmin = 0;
    }

    connect_secs = (o.procs && conn_end > conn_start)
                   ? (conn_end - conn_start) / 1e9 : 0.0;
    deliver_secs = (delivered && t_last > pub_start)
                   ? (t_last - pub_start) / 1e9 : 0.0;

    {
        double  pub_secs = (pub_end - pub_start) / 1e9;
        double  dps = deliver_secs > 0 ? delivered / deliver_secs : 0.0;
        double  p50 = ms(h_percentile(hist, lat_n, 0.50, lat_max));
        double  p99 = ms(h_percentile(hist, lat_n, 0.99, lat_max));
        double  p999 = ms(h_percentile(hist, lat_n, 0.999, lat_max));
        double  r50 = ms(h_percentile(ps.rtt, ps.rtt_n, 0.50, ps.rtt_max));
        double  r99 = ms(h_percentile(ps.rtt, ps.rtt_n, 0.99, ps.rtt_max));
        uint64_t  lost = ps.expected > delivered ? ps.expected - delivered : 0;
        char    esc[400];
        size_t  i, j;

        if (!o.quiet) {
            fprintf(stderr,
                "loadgen %s (%s, %ld connections in %d processes, "
                "%ld rooms)\n"
                "  connect:   %" PRIu64 " ok of %" PRIu64 " in %.2f s "
                "(%.0f/s); failed: connect %" PRIu64 ", handshake %" PRIu64
                ", closed %" PRIu64 ", timeout %" PRIu64 "; dropped later %"
                PRIu64 "\n",
                o.label, proto_name(), o.conns,
                o.procs, o.rooms, ok, attempted, connect_secs,
                connect_secs > 0 ? ok / connect_secs : 0.0, f_conn, f_hs,
                f_closed, f_to, dropped);

            if (o.pub_conns) {
                fprintf(stderr,
                    "  publish:   %" PRIu64 " requests (%" PRIu64 " items) "
                    "answered in %.2f s: %.0f req/s, %.0f items/s; non-2xx %"
                    PRIu64 ", errors %" PRIu64 ", late %" PRIu64
                    "; answer p50 %.3f ms p99 %.3f ms\n",
                    ps.answered, ps.items, pub_secs,
                    pub_secs > 0 ? ps.answered / pub_secs : 0.0,
                    pub_secs > 0 ? ps.items / pub_secs : 0.0,
                    ps.non2xx, ps.errors, ps.late, r50, r99);
                fprintf(stderr,
                    "  deliver:   %" PRIu64 " of %" PRIu64 " expected (lost %"
                    PRIu64 ") in %.2f s: %.0f/s; per connection %" PRIu64
                    "..%" PRIu64 "\n"
                    "  latency:   p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, "
                    "max %.3f ms\n",
                    delivered, ps.expected, lost, deliver_secs, dps, cmin,
                    cmax, p50, p99, p999, ms(lat_max));
            }

            fprintf(stderr,
                "  client:    subscribers %.2f s CPU in the run (%.2f s in "
                "all), publisher %.2f s, run wall %.2f s; max RSS %ld KB\n",
                sub_cpu_run / 1e6, sub_cpu_total / 1e6, pub_cpu / 1e6,
                wall_run, maxrss);

            if (*err || ps.last_bad[0]) {
                fprintf(stderr, "  first error: %s%s%s\n", err,
                        *err && ps.last_bad[0] ? "; publisher: " : "",
                        ps.last_bad);
            }
        }

        /* JSON-escape the first error */
        for (i = 0, j = 0; err[i] && j < sizeof(esc) - 8; i++) {
            unsigned char  ch = (unsigned char) err[i];

            if (ch == '"' || ch == '\\') {
                esc[j++] = '\\';
                esc[j++] = (char) ch;
            } else if (ch < 0x20 || ch > 0x7e) {
                esc[j++] = '?';
            } else {
                esc[j++] = (char) ch;
            }
        }
        esc[j] = '\0';

        printf("RESULT {\"label\":\"%s\",\"proto\":\"%s\",\"conns\":%ld,"
               "\"procs\":%d,\"rooms\":%ld,"
               "\"connect\":{\"attempted\":%" PRIu64 ",\"ok\":%" PRIu64
               ",\"fail_connect\":%" PRIu64 ",\"fail_handshake\":%" PRIu64
               ",\"fail_closed\":%" PRIu64 ",\"fail_timeout\":%" PRIu64
               ",\"secs\":%.3f,\"per_s\":%.1f},"
               "\"dropped\":%" PRIu64 ","
               "\"publish\":{\"requests\":%" PRIu64 ",\"answered\":%" PRIu64
               ",\"items\":%" PRIu64 ",\"non2xx\":%" PRIu64 ",\"errors\":%"
               PRIu64 ",\"late\":%" PRIu64 ",\"secs\":%.3f,\"req_per_s\":%.1f"
               ",\"items_per_s\":%.1f,\"answer_p50_ms\":%.3f,"
               "\"answer_p99_ms\":%.3f},"
               "\"deliveries\":{\"total\":%" PRIu64 ",\"expected\":%" PRIu64
               ",\"lost\":%" PRIu64 ",\"secs\":%.3f,\"per_s\":%.1f,"
               "\"per_conn_min\":%" PRIu64 ",\"per_conn_max\":%" PRIu64
               ",\"conns_short\":%" PRIu64 ",\"wire_bytes\":%" PRIu64
               ",\"compressed\":%" PRIu64 ",\"inflate_errors\":%" PRIu64
               "},"
               "\"latency_ms\":{\"n\":%" PRIu64 ",\"p50\":%.3f,\"p99\":%.3f,"
               "\"p999\":%.3f,\"max\":%.3f},"
               "\"client\":{\"sub_cpu_run_s\":%.3f,\"sub_cpu_total_s\":%.3f,"
               "\"sub_cpu_connect_s\":%.3f,\"pub_cpu_s\":%.3f,"
               "\"wall_run_s\":%.3f,\"max_rss_kb\":%ld},"
               "\"other_msgs\":%" PRIu64 ",\"no_ts\":%" PRIu64
               ",\"frame_errors\":%" PRIu64 ",\"pings\":%" PRIu64
               ",\"out_overflow\":%" PRIu64 "%s,\"first_error\":\"%s\"}\n",
               o.label, proto_name(), o.conns,
               o.procs, o.rooms, attempted, ok, f_conn, f_hs, f_closed, f_to,
               connect_secs, connect_secs > 0 ? ok / connect_secs : 0.0,
               dropped, ps.requests, ps.answered, ps.items, ps.non2xx,
               ps.errors, ps.late, pub_secs,
               pub_secs > 0 ? ps.answered / pub_secs : 0.0,
               pub_secs > 0 ? ps.items / pub_secs : 0.0, r50, r99,
               delivered, ps.expected, lost, deliver_secs, dps, cmin, cmax,
               cshort, wire, zmsgs, zerr, lat_n, p50, p99, p999, ms(lat_max),
               sub_cpu_run / 1e6, sub_cpu_total / 1e6, sub_cpu_connect / 1e6,
               pub_cpu / 1e6, wall_run, maxrss, other, no_ts, ferr, pings,
               out_over, byport, esc);
        (void) t_first;
    }

    fflush(stdout);
    return 0;
}
