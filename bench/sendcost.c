
/*
 * Copyright (C) ngx-realtime developers
 *
 * sendcost: what one small TCP send over loopback costs on this machine,
 * the floor under any server that writes one frame per send() to each
 * subscriber.  Opens N connected pairs on 127.0.0.1 and sends ROUNDS x N
 * frames of SIZE bytes, first with nobody reading (the receive path still
 * runs, in the sender's context), then with a reader process draining
 * them through epoll, and prints the microseconds per send().
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


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


static double
run(int reader)
{
    int                 l, one, i, r, ep, k, n;
    int                 cl[N], sv[N];
    socklen_t           alen;
    struct sockaddr_in  a;
    struct epoll_event  ev, evs[1024];
    char                msg[SIZE], buf[65536];
    long                got;
    pid_t               pid;
    double              t, spent;

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
    close(l);

    return spent * 1e6 / ((double) N * ROUNDS);
}


int
main(void)
{
    double  alone, read;

    alone = run(0);
    read = run(1);

    printf("SENDCOST {\"bytes\":%d,\"send_us\":%.2f,"
           "\"send_us_with_reader\":%.2f}\n", SIZE, alone, read);

    return 0;
}
