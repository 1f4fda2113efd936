
/*
 * Copyright (C) ngx-realtime developers
 *
 * Redis Cluster's key slots and redirections; see the header.
 */


#include "ngx_http_realtime_cluster_codec.h"


static unsigned ngx_http_realtime_cluster_crc16(const unsigned char *p,
    size_t len);
static int ngx_http_realtime_cluster_number(const unsigned char **pp,
    const unsigned char *last, unsigned max, unsigned *n);


/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0 */

static unsigned
ngx_http_realtime_cluster_crc16(const unsigned char *p, size_t len)
{
    unsigned  crc, i;

    crc = 0;

    while (len--) {
        crc ^= (unsigned) *p++ << 8;

        for (i = 0; i < 8; i++) {
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
        }

        crc &= 0xffff;
    }

    return crc;
}


/*
 * The first '{' and the first '}' after it: what is between them, when
 * not empty, is hashed instead of the whole key.
 */

unsigned
ngx_http_realtime_cluster_slot(const unsigned char *key, size_t len)
{
    size_t  open, close;

    for (open = 0; open < len; open++) {
        if (key[open] == '{') {
            break;
        }
    }

    if (open < len) {
        for (close = open + 1; close < len; close++) {
            if (key[close] == '}') {
                break;
            }
        }

        if (close < len && close > open + 1) {
            key += open + 1;
            len = close - open - 1;
        }
    }

    return ngx_http_realtime_cluster_crc16(key, len)
           & (NGX_HTTP_REALTIME_CLUSTER_SLOTS - 1);
}


/* decimal digits up to last, at most max; 0 and *pp past them */

static int
ngx_http_realtime_cluster_number(const unsigned char **pp,
    const unsigned char *last, unsigned max, unsigned *n)
{
    unsigned             v;
    const unsigned char  *p;

    p = *pp;
    v = 0;

    if (p == last || *p < '0' || *p > '9') {
        return -1;
    }

    while (p < last && *p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned) (*p++ - '0');

        if (v > max) {
            return -1;
        }
    }

    *pp = p;
    *n = v;

    return 0;
}


int
ngx_http_realtime_cluster_redirect(const unsigned char *err, size_t len,
    ngx_http_realtime_cluster_redirect_t *r)
{
    const unsigned char  *p, *last, *colon;

    p = err;
    last = err + len;

    if (len > 6 && p[0] == 'M' && p[1] == 'O' && p[2] == 'V' && p[3] == 'E'
        && p[4] == 'D' && p[5] == ' ')
    {
        r->ask = 0;
        p += 6;

    } else if (len > 4 && p[0] == 'A' && p[1] == 'S' && p[2] == 'K'
               && p[3] == ' ')
    {
        r->ask = 1;
        p += 4;

    } else {
        return -1;
    }

    if (ngx_http_realtime_cluster_number(&p, last,
                                         NGX_HTTP_REALTIME_CLUSTER_SLOTS - 1,
                                         &r->slot)
        != 0
        || p == last || *p++ != ' ')
    {
        return -1;
    }

    colon = NULL;

    for (r->host = p; p < last; p++) {
        if (*p == ':') {
            colon = p;

        } else if (*p <= ' ' || *p == 0x7f) {
            return -1;
        }
    }

    if (colon == NULL) {
        return -1;
    }

    r->host_len = (size_t) (colon - r->host);
    p = colon + 1;

    if (ngx_http_realtime_cluster_number(&p, last, 65535, &r->port) != 0
        || p != last || r->port == 0)
    {
        return -1;
    }

    return 0;
}
