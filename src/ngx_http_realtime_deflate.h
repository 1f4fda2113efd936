
/*
 * Copyright (C) ngx-realtime developers
 *
 * permessage-deflate (RFC 7692): the negotiation of an offer, and one
 * message deflated or inflated with zlib.  Pure C: no nginx headers, so
 * that the unit tests and the fuzzer drive it without an nginx build.
 *
 * The server always answers server_no_context_takeover and
 * client_no_context_takeover: each message is compressed on its own, so
 * that a publication is deflated once and the same bytes go to every
 * receiver, and a connection keeps no zlib state between messages (a
 * worker's one deflater per window size and one inflater do all).
 */


#ifndef _NGX_HTTP_REALTIME_DEFLATE_H_INCLUDED_
#define _NGX_HTTP_REALTIME_DEFLATE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <zlib.h>


/* the longest response ngx_http_realtime_pmd_negotiate() writes */
#define NGX_HTTP_REALTIME_PMD_RESPONSE_MAX  128

/* zlib cannot make a raw deflate stream with a 256-byte window */
#define NGX_HTTP_REALTIME_PMD_BITS_MIN      9
#define NGX_HTTP_REALTIME_PMD_BITS_MAX      15

/* ngx_http_realtime_pmd_inflate() results */
#define NGX_HTTP_REALTIME_PMD_DONE          0
#define NGX_HTTP_REALTIME_PMD_FULL          1    /* more room, call again */
#define NGX_HTTP_REALTIME_PMD_ERROR         2


typedef struct {
    /* the window of what the server sends, 9-15, and whether asked */
    unsigned         server_bits;
    unsigned         server_bits_asked:1;
} ngx_http_realtime_pmd_params_t;


typedef struct {
    z_stream         zs;
    unsigned         tail:1;      /* the 00 00 ff ff is fed */
    unsigned         started:1;   /* inflateInit2 done */
} ngx_http_realtime_pmd_inflater_t;


/*
 * The first offer of one Sec-WebSocket-Extensions value (a list of
 * extensions, each with its parameters) that the server accepts: 1 with
 * *params and the response value in out (NGX_HTTP_REALTIME_PMD_RESPONSE_MAX
 * bytes), its length in *out_len; 0 if none is acceptable (a malformed
 * value, a window under 9 bits, an unknown or repeated parameter).
 */
int ngx_http_realtime_pmd_negotiate(const unsigned char *value, size_t len,
    ngx_http_realtime_pmd_params_t *params, unsigned char *out,
    size_t *out_len);

/* a deflater for ngx_http_realtime_pmd_deflate(): Z_OK or zlib's error */
int ngx_http_realtime_pmd_deflater_init(z_stream *zs, int level,
    unsigned bits);

/* room that a message of len bytes may need once deflated */
size_t ngx_http_realtime_pmd_bound(size_t len);

/*
 * One message deflated on its own into out (at least
 * ngx_http_realtime_pmd_bound(len) bytes), without the 00 00 ff ff tail
 * RFC 7692 drops: its length, or 0 on an error of zlib.
 */
size_t ngx_http_realtime_pmd_deflate(z_stream *zs, const unsigned char *in,
    size_t len, unsigned char *out);

/*
 * One message inflated: start with its compressed bytes, then call
 * inflate with room until it returns DONE (the message is out) or
 * ERROR (not a deflate stream); FULL: the room is used up, give more.
 * *written is what this call wrote.
 */
int ngx_http_realtime_pmd_inflate_start(
    ngx_http_realtime_pmd_inflater_t *inf, const unsigned char *in,
    size_t len);
int ngx_http_realtime_pmd_inflate(ngx_http_realtime_pmd_inflater_t *inf,
    unsigned char *out, size_t size, size_t *written);


#endif /* _NGX_HTTP_REALTIME_DEFLATE_H_INCLUDED_ */
