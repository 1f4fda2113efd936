
/*
 * Copyright (C) ngx-realtime developers
 *
 * RFC 6455 frame codec.  Pure C: no nginx headers, so that the unit
 * tests and the fuzzer can drive it without an nginx build.
 */


#ifndef _NGX_HTTP_REALTIME_FRAME_H_INCLUDED_
#define _NGX_HTTP_REALTIME_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_REALTIME_OP_CONT        0x0
#define NGX_HTTP_REALTIME_OP_TEXT        0x1
#define NGX_HTTP_REALTIME_OP_BINARY      0x2
#define NGX_HTTP_REALTIME_OP_CLOSE       0x8
#define NGX_HTTP_REALTIME_OP_PING        0x9
#define NGX_HTTP_REALTIME_OP_PONG        0xa

#define NGX_HTTP_REALTIME_CLOSE_NORMAL          1000
#define NGX_HTTP_REALTIME_CLOSE_GOING_AWAY      1001
#define NGX_HTTP_REALTIME_CLOSE_PROTOCOL_ERROR  1002
#define NGX_HTTP_REALTIME_CLOSE_INVALID_DATA    1007
#define NGX_HTTP_REALTIME_CLOSE_POLICY          1008
#define NGX_HTTP_REALTIME_CLOSE_TOO_BIG         1009
#define NGX_HTTP_REALTIME_CLOSE_INTERNAL        1011
#define NGX_HTTP_REALTIME_CLOSE_TRY_AGAIN       1013

#define NGX_HTTP_REALTIME_CONTROL_MAX    125

/* a frame of a message compressed by permessage-deflate (RFC 7692) */
#define NGX_HTTP_REALTIME_FRAME_RSV1     0x40

/* the longest frame header the server writes: 2 + 8 bytes of length */
#define NGX_HTTP_REALTIME_HEADER_MAX     10


/* ngx_http_realtime_frame_parse() results */
#define NGX_HTTP_REALTIME_FRAME_AGAIN    0    /* all input consumed */
#define NGX_HTTP_REALTIME_FRAME_DATA     1    /* a chunk of a data message */
#define NGX_HTTP_REALTIME_FRAME_CONTROL  2    /* a whole control frame */
#define NGX_HTTP_REALTIME_FRAME_ERROR    3    /* fail with frame->code */
#define NGX_HTTP_REALTIME_FRAME_BUFFER   4    /* set p->control, call again */


typedef struct {
    /* configuration, set before the first call */
    uint64_t         max_message;      /* 0: unlimited */
    unsigned         masked:1;         /* frames must be masked (server) */
    unsigned         deflate:1;        /* RSV1 may mark a message */

    /* private state */
    unsigned         state:4;
    unsigned         fin:1;
    unsigned         failed:1;
    unsigned         compressed:1;     /* the message's RSV1 */
    uint8_t          opcode;           /* of the current frame */
    uint8_t          message_opcode;   /* TEXT/BINARY while in a message */
    uint8_t          header_len;       /* bytes of extended length needed */
    uint8_t          header_have;
    uint8_t          header[8];
    uint8_t          mask[4];
    uint8_t          mask_pos;
    uint8_t          control_len;
    uint16_t         error;            /* the close code once failed */
    uint32_t         utf8_state;
    uint64_t         payload_left;
    uint64_t         message_len;

    /*
     * Where a control frame that arrives in pieces is put together:
     * NULL until a parse returns NGX_HTTP_REALTIME_FRAME_BUFFER, then
     * NGX_HTTP_REALTIME_CONTROL_MAX bytes that the caller owns.  A
     * control frame that arrives whole is read in place, so most
     * connections never need one.
     */
    unsigned char   *control;
} ngx_http_realtime_frame_parser_t;


typedef struct {
    unsigned char   *data;
    size_t           len;

    /*
     * DATA: the message opcode (TEXT or BINARY), for every chunk;
     * CONTROL: CLOSE, PING or PONG.
     */
    unsigned         opcode;

    unsigned         first:1;          /* DATA: first chunk of a message */
    unsigned         last:1;           /* DATA: the message is complete */

    /*
     * DATA: the message is compressed (RSV1 with deflate set): its bytes
     * are not checked as UTF-8, which is for the caller once inflated
     */
    unsigned         compressed:1;

    /*
     * CONTROL CLOSE: the peer's status code, 0 if the frame had none
     * (data and len are then the reason, already checked as UTF-8);
     * ERROR: the close code to fail the connection with.
     */
    unsigned         code;
} ngx_http_realtime_frame_t;


void ngx_http_realtime_frame_parser_init(
    ngx_http_realtime_frame_parser_t *p, uint64_t max_message, int masked);

/*
 * Consumes input from *pos up to end, unmasking payload in place, and
 * stops at the first event.  DATA chunks point into the input; a
 * CONTROL frame's payload too, or into p->control if it came in pieces.
 * BUFFER asks for p->control: give it and call again from *pos.  After
 * ERROR every further call returns ERROR with the same code.
 */
int ngx_http_realtime_frame_parse(ngx_http_realtime_frame_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_http_realtime_frame_t *f);

/*
 * Writes an unmasked, FIN frame header for a payload of len bytes into
 * buf (at least NGX_HTTP_REALTIME_HEADER_MAX bytes); returns its size.
 */
size_t ngx_http_realtime_frame_header(unsigned char *buf, unsigned opcode,
    uint64_t len);

/* the size of the header that ngx_http_realtime_frame_header() writes */
size_t ngx_http_realtime_frame_header_size(uint64_t len);

/* the header's size of a frame that ngx_http_realtime_frame_header() made */
size_t ngx_http_realtime_frame_header_of(const unsigned char *frame);

/* whether a close code may be sent by a peer (RFC 6455 7.4) */
int ngx_http_realtime_close_code_valid(unsigned code);


#endif /* _NGX_HTTP_REALTIME_FRAME_H_INCLUDED_ */
