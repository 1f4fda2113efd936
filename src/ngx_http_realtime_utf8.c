
/*
 * Copyright (C) ngx-realtime developers
 */


#include <string.h>

#include "ngx_http_realtime_utf8.h"


/*
 * A DFA over byte classes.  Besides ACCEPT and REJECT, each state names
 * the continuation bytes that may follow.  The narrow ranges allowed
 * after E0, ED, F0 and F4 are what reject overlong forms, surrogates
 * and code points past U+10FFFF at the earliest byte that shows them.
 *
 * byte classes:
 *    0  00..7F           4  C0 C1 F5..FF     8  ED
 *    1  80..8F           5  C2..DF           9  F0
 *    2  90..9F           6  E0              10  F1..F3
 *    3  A0..BF           7  E1..EC EE EF    11  F4
 *
 * states:
 *    0  ACCEPT           3  two of 80..BF    6  80..9F, then one more
 *    1  REJECT           4  three of 80..BF  7  90..BF, then two more
 *    2  one of 80..BF    5  A0..BF, then     8  80..8F, then two more
 *                           one more
 */

#define NGX_HTTP_REALTIME_UTF8_STATES  9


static const uint8_t  ngx_http_realtime_utf8_class[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 30 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 40 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 50 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 60 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 70 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  /* 80 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 90 */
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* A0 */
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* B0 */
     4,  4,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* C0 */
     5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* D0 */
     6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  7,  /* E0 */
     9, 10, 10, 10, 11,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4   /* F0 */
};


static const uint8_t  ngx_http_realtime_utf8_next[
    NGX_HTTP_REALTIME_UTF8_STATES][12] =
{
  /* class:  0  1  2  3  4  5  6  7  8  9 10 11 */
    {        0, 1, 1, 1, 1, 2, 5, 3, 6, 7, 4, 8 },   /* 0 ACCEPT */
    {        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 1 REJECT */
    {        1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 2 */
    {        1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 3 */
    {        1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 4 */
    {        1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 5 after E0 */
    {        1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 6 after ED */
    {        1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },   /* 7 after F0 */
    {        1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }    /* 8 after F4 */
};


static const unsigned char *ngx_http_realtime_utf8_skip_ascii(
    const unsigned char *p, const unsigned char *last);


uint32_t
ngx_http_realtime_utf8_validate(uint32_t state, const unsigned char *p,
    size_t len)
{
    unsigned              c;
    const unsigned char  *last;

    if (state >= NGX_HTTP_REALTIME_UTF8_STATES) {
        return NGX_HTTP_REALTIME_UTF8_REJECT;
    }

    if (len == 0) {
        /* p may be NULL */
        return state;
    }

    last = p + len;

    while (p < last) {

        if (state == NGX_HTTP_REALTIME_UTF8_ACCEPT) {
            p = ngx_http_realtime_utf8_skip_ascii(p, last);

            if (p == last) {
                break;
            }
        }

        c = ngx_http_realtime_utf8_class[*p++];
        state = ngx_http_realtime_utf8_next[state][c];

        if (state == NGX_HTTP_REALTIME_UTF8_REJECT) {
            break;
        }
    }

    return state;
}


/* text is mostly ASCII: step over it a word at a time */

static const unsigned char *
ngx_http_realtime_utf8_skip_ascii(const unsigned char *p,
    const unsigned char *last)
{
    uint64_t  w;

    while (last - p >= 8) {
        memcpy(&w, p, 8);

        if (w & 0x8080808080808080ULL) {
            break;
        }

        p += 8;
    }

    while (p < last && *p < 0x80) {
        p++;
    }

    return p;
}
