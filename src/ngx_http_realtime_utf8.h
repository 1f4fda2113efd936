
/*
 * Copyright (C) ngx-realtime developers
 *
 * Incremental UTF-8 validation (RFC 3629).  Pure C, no nginx headers.
 */


#ifndef _NGX_HTTP_REALTIME_UTF8_H_INCLUDED_
#define _NGX_HTTP_REALTIME_UTF8_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_REALTIME_UTF8_ACCEPT  0
#define NGX_HTTP_REALTIME_UTF8_REJECT  1


/*
 * Feeds len bytes to the validator whose state starts as
 * NGX_HTTP_REALTIME_UTF8_ACCEPT; returns the new state.  REJECT is
 * returned as soon as a byte makes the input invalid (overlong forms,
 * surrogates, code points past U+10FFFF, stray continuation bytes) and
 * is final.  Input is complete and valid when the state is ACCEPT.
 */
uint32_t ngx_http_realtime_utf8_validate(uint32_t state,
    const unsigned char *p, size_t len);


#endif /* _NGX_HTTP_REALTIME_UTF8_H_INCLUDED_ */
