
/*
 * Copyright (C) ngx-realtime developers
 *
 * sendcost: what one small TCP send over loopback costs on this machine,
 * the floor under any server that writes one frame per send() to each
 * subscriber.  Opens N connected pairs on 127.0.0.1 and sends ROUNDS x N
 * frames of SIZE bytes, first with nobody reading (the receive path still
 * runs, in the sender's context), then with a reader process draining
 * them through epoll, and prints the microseconds per send().
 *
 * Then the latency floor under S4: 1 or 2 sender processes (like nginx
 * workers) write a time-stamped frame to every one of the N sockets
 * RATE times a second, a reader process drains them through epoll as
 * the load generator does, and the percentiles of send -> receive are
 * printed.  No HTTP, no parsing, no IPC: what the kernel alone costs.
 *
 *     sendcost [seconds]      (of each fan-out run; default 5)
 */

#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>


#define N       1000
#define ROUNDS  50
#define SIZE    150
#define RATE    200
#define BUCKETS 100000     /* of 10 us: up to 1 s */


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


/* N connected pairs over loopback: cl[i] the client's end, sv[i] ours */

static void
connect_pairs(int *cl, int *sv)
{
    int                 l, one, i;
    socklen_t           alen;
    struct sockaddr_in  a;

    one = 1;
    l = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (bind(l, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(l, 4096) < 0)
    {
        perror("listen");
        exit(1);
    }

    alen = sizeof(a);
    getsockname(l, (struct sockaddr *) &a, &alen);

    for (i = 0; i < N; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cl[i], (struct sockaddr *) &a, sizeof(a)) < 0) {
            perror("connect");
            exit(1);
        }
        sv[i] = accept(l, NULL, NULL);
        setsockopt(sv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }

    close(l);
}


static double
run(int reader)
{
    int                 i, r, ep, k, n;
    int                 cl[N], sv[N];
    struct epoll_event  ev, evs[1024];
    char                msg[SIZE], buf[65536];
    long                got;
    pid_t               pid;
    double              t, spent;

    connect_pairs(cl, sv);

    pid = 0;

    if (reader) {
        pid = fork();

        if (pid == 0) {
            ep = epoll_create1(0);
            for (i = 0; i < N; i++) {
                ev.events = EPOLLIN;
                ev.data.u32 = (uint32_t) i;
                epoll_ctl(ep, EPOLL_CTL_ADD, cl[i], &ev);
            }

            got = 0;
            while (got < (long) N * ROUNDS * SIZE) {
                n = epoll_wait(ep, evs, 1024, 2000);
                if (n <= 0) {
                    break;
                }
                for (k = 0; k < n; k++) {
                    r = (int) recv(cl[evs[k].data.u32], buf, sizeof(buf), 0);
                    if (r > 0) {
                        got += r;
                    }
                }
            }
            _exit(0);
        }
    }

    memset(msg, 'x', sizeof(msg));
    spent = 0;

    for (r = 0; r < ROUNDS; r++) {
        t = now();
        for (i = 0; i < N; i++) {
            if (send(sv[i], msg, SIZE, 0) != SIZE) {
                perror("send");
                exit(1);
            }
        }
        spent += now() - t;

        if (reader) {
            usleep(2000);      /* let the reader drain: one frame a read */
        }
    }

    if (reader) {
        waitpid(pid, NULL, 0);
    }

    for (i = 0; i < N; i++) {
        close(cl[i]);
        close(sv[i]);
    }

    return spent * 1e6 / ((double) N * ROUNDS);
}


static int64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static int  seconds = 5;


static void
fanout_send(int *sv, int from, int to)
{
    int              i, r;
    int64_t          start, at, ts;
    char             msg[SIZE];
    struct timespec  wake;

    memset(msg, 'x', sizeof(msg));
    start = now_ns();

    for (r = 0; r < RATE * seconds; r++) {
        at = start + (int64_t) r * (1000000000 / RATE);

        /* asleep until then, as a worker waits in epoll_wait() */
        wake.tv_sec = at / 1000000000;
        wake.tv_nsec = at % 1000000000;

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL)
               == EINTR)
        {
            /* void */
        }

        /* stamped with the scheduled time, as the load generator does */
        ts = at;
        memcpy(msg, &ts, sizeof(ts));

        for (i = from; i < to; i++) {
            if (send(sv[i], msg, SIZE, 0) != SIZE) {
                perror("send");
                _exit(1);
            }
        }
    }
}


static void
fanout(int senders, double *p50, double *p99, double *p999)
{
    int                  i, k, n, r, ep, s, c;
    int                  cl[N], sv[N];
    static int           off[N];
    static unsigned char stamp[N][8];
    long                 want, got, rank, sum;
    int64_t              ts, lat, t;
    pid_t                pid[2];
    struct epoll_event   ev, evs[1024];
    static char          buf[65536];
    static long          hist[BUCKETS];

    connect_pairs(cl, sv);

    for (s = 0; s < senders; s++) {
        pid[s] = fork();

        if (pid[s] == 0) {
            fanout_send(sv, s * N / senders, (s + 1) * N / senders);
            _exit(0);
        }
    }

    ep = epoll_create1(0);
    for (i = 0; i < N; i++) {
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t) i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cl[i], &ev);
    }

    memset(hist, 0, sizeof(hist));
    memset(off, 0, sizeof(off));
    want = (long) N * RATE * seconds;
    got = 0;

    while (got < want) {
        n = epoll_wait(ep, evs, 1024, 2000);
        if (n <= 0) {
            break;
        }

        t = now_ns();

        for (k = 0; k < n; k++) {
            c = evs[k].data.u32;
            r = (int) recv(cl[c], buf, sizeof(buf), 0);

            /*
             * frames are SIZE bytes and a read may carry several, or
             * part of one: off[c] is how far into a frame it starts
             */
            for (i = 0; i < r; i++) {
                if (off[c] < (int) sizeof(ts)) {
                    stamp[c][off[c]] = (unsigned char) buf[i];
                }

                if (++off[c] < SIZE) {
                    continue;
                }

                off[c] = 0;
                memcpy(&ts, stamp[c], sizeof(ts));
                lat = (t - ts) / 10000;
                hist[lat < 0 ? 0 : (lat < BUCKETS ? lat : BUCKETS - 1)]++;
                got++;
            }
        }
    }

    for (s = 0; s < senders; s++) {
        waitpid(pid[s], NULL, 0);
    }

    for (i = 0; i < N; i++) {
        close(cl[i]);
        close(sv[i]);
    }
    close(ep);

    *p50 = *p99 = *p999 = -1;
    sum = 0;

    for (i = 0; i < BUCKETS; i++) {
        sum += hist[i];

        rank = sum * 1000;
        if (*p50 < 0 && rank >= got * 500) {
            *p50 = (i + 1) * 0.01;
        }
        if (*p99 < 0 && rank >= got * 990) {
            *p99 = (i + 1) * 0.01;
        }
        if (*p999 < 0 && rank >= got * 999) {
            *p999 = (i + 1) * 0.01;
        }
    }
}


int
main(int argc, char **argv)
{
    double  alone, read, f[2][3];

    if (argc > 1) {
        seconds = atoi(argv[1]);
        if (seconds < 1) {
            seconds = 1;
        }
    }

    alone = run(0);
    read = run(1);

    fanout(1, &f[0][0], &f[0][1], &f[0][2]);
    fanout(2, &f[1][0], &f[1][1], &f[1][2]);

    printf("SENDCOST {\"bytes\":%d,\"send_us\":%.2f,"
           "\"send_us_with_reader\":%.2f,\"fanout\":{\"subscribers\":%d,"
           "\"rate\":%d,\"seconds\":%d,"
           "\"one_sender_ms\":[%.2f,%.2f,%.2f],"
           "\"two_senders_ms\":[%.2f,%.2f,%.2f]}}\n",
           SIZE, alone, read, N, RATE, seconds,
           f[0][0], f[0][1], f[0][2], f[1][0], f[1][1], f[1][2]);

    return 0;
}
