
/*
 * Copyright (C) ngx-realtime developers
 *
 * The messages between instances on Redis: see the header.  Parsed
 * strictly, every length checked against what is there: a message that
 * is not ours (another program on the channel, a truncated one) is -1.
 */


#include <string.h>

#include "ngx_http_realtime_sync_codec.h"


/* digits up to end, at most 19 (no overflow); NULL if none or more */

static const unsigned char *
ngx_http_realtime_sync_number(const unsigned char *p,
    const unsigned char *last, unsigned char end, uint64_t *n)
{
    const unsigned char  *start;

    start = p;
    *n = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        if (p - start == 19) {
            return NULL;
        }

        *n = *n * 10 + (uint64_t) (*p++ - '0');
    }

    if (p == start || p >= last || *p != end) {
        return NULL;
    }

    return p + 1;
}


static int
ngx_http_realtime_sync_body(const unsigned char *p, const unsigned char *last,
    uint64_t tlen, uint64_t elen, size_t target_max, size_t except_max,
    ngx_http_realtime_sync_msg_t *m)
{
    if (tlen > target_max || elen > except_max
        || (uint64_t) (last - p) < tlen + elen)
    {
        return -1;
    }

    m->target = p;
    m->target_len = (size_t) tlen;
    m->except = p + tlen;
    m->except_len = (size_t) elen;
    m->json = p + tlen + elen;
    m->json_len = (size_t) (last - m->json);

    return 0;
}


static int
ngx_http_realtime_sync_rt1(const unsigned char *p, const unsigned char *last,
    size_t target_max, size_t except_max, ngx_http_realtime_sync_msg_t *m)
{
    uint64_t              tlen, elen;
    const unsigned char  *space;

    space = memchr(p, ' ', (size_t) (last - p));
    if (space == NULL || space == p) {
        return -1;
    }

    m->instance = p;
    m->instance_len = (size_t) (space - p);
    p = space + 1;

    if (last - p < 2 || *p < '1' || *p > '4' || p[1] != ' ') {
        return -1;
    }

    m->type = (unsigned) (*p - '0');
    p += 2;

    p = ngx_http_realtime_sync_number(p, last, ' ', &tlen);
    if (p == NULL) {
        return -1;
    }

    if (m->type == 4) {
        /* the users changed: no target, nothing after */
        m->target = NULL;
        m->target_len = 0;
        m->except = NULL;
        m->except_len = 0;
        m->json = NULL;
        m->json_len = 0;
        return 0;
    }

    p = ngx_http_realtime_sync_number(p, last, '\n', &elen);
    if (p == NULL) {
        return -1;
    }

    return ngx_http_realtime_sync_body(p, last, tlen, elen, target_max,
                                       except_max, m);
}


static int
ngx_http_realtime_sync_rt2(const unsigned char *p, const unsigned char *last,
    size_t target_max, size_t except_max, ngx_http_realtime_sync_msg_t *m)
{
    uint64_t  tlen, elen;

    if ((size_t) (last - p) < NGX_HTTP_REALTIME_SYNC_INSTANCE_LEN + 1
        || p[NGX_HTTP_REALTIME_SYNC_INSTANCE_LEN] != ' ')
    {
        return -1;
    }

    m->instance = p;
    m->instance_len = NGX_HTTP_REALTIME_SYNC_INSTANCE_LEN;
    p += NGX_HTTP_REALTIME_SYNC_INSTANCE_LEN + 1;

    p = ngx_http_realtime_sync_number(p, last, ' ', &m->skip);
    if (p == NULL) {
        return -1;
    }

    p = ngx_http_realtime_sync_number(p, last, ' ', &m->offset);
    if (p == NULL || m->offset == 0
        || (size_t) (last - p) < NGX_HTTP_REALTIME_SYNC_EPOCH_LEN + 1
        || p[NGX_HTTP_REALTIME_SYNC_EPOCH_LEN] != ' ')
    {
        return -1;
    }

    m->epoch = p;
    p += NGX_HTTP_REALTIME_SYNC_EPOCH_LEN + 1;

    p = ngx_http_realtime_sync_number(p, last, ' ', &tlen);
    if (p == NULL) {
        return -1;
    }

    p = ngx_http_realtime_sync_number(p, last, '\n', &elen);
    if (p == NULL || tlen == 0
        || ngx_http_realtime_sync_body(p, last, tlen, elen, target_max,
                                       except_max, m)
           != 0)
    {
        return -1;
    }

    /* the history frame ends the object with the place: one it is */
    if (m->json_len < 2 || m->json[0] != '{'
        || m->json[m->json_len - 1] != '}')
    {
        return -1;
    }

    return 0;
}


int
ngx_http_realtime_sync_parse(const unsigned char *p, size_t len,
    size_t target_max, size_t except_max, ngx_http_realtime_sync_msg_t *m)
{
    const unsigned char  *last;

    memset(m, 0, sizeof(ngx_http_realtime_sync_msg_t));

    if (p == NULL || len < 4 || p[0] != 'r' || p[1] != 't' || p[3] != ' ') {
        return -1;
    }

    last = p + len;

    switch (p[2]) {

    case '1':
        m->version = 1;
        return ngx_http_realtime_sync_rt1(p + 4, last, target_max,
                                          except_max, m);

    case '2':
        m->version = 2;
        return ngx_http_realtime_sync_rt2(p + 4, last, target_max,
                                          except_max, m);

    default:
        return -1;
    }
}
