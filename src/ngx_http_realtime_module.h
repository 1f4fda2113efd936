
/*
 * Copyright (C) ngx-realtime developers
 */


#ifndef _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_
#define _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_frame.h"


#define NGX_HTTP_REALTIME_OFF            0
#define NGX_HTTP_REALTIME_ROOMS          1
#define NGX_HTTP_REALTIME_ECHO           2

/* how long a closing handshake may take before TCP is dropped */
#define NGX_HTTP_REALTIME_CLOSE_TIMEOUT  3000

/* frames kept in the connection itself before the queue moves to heap */
#define NGX_HTTP_REALTIME_OUT_INLINE     4


typedef struct {
    ngx_str_t                          value;
#if (NGX_PCRE)
    ngx_regex_t                       *regex;
#endif
    unsigned                           any:1;
} ngx_http_realtime_origin_t;


typedef struct {
    ngx_uint_t                         mode;
    ngx_array_t                       *subprotocols;  /* ngx_str_t */
    ngx_array_t                       *origins;  /* realtime_origin_t */
    size_t                             max_message_size;
    size_t                             send_buffer;
    ngx_msec_t                         ping_interval;
    ngx_msec_t                         idle_timeout;
} ngx_http_realtime_loc_conf_t;


/*
 * A frame encoded once and shared by every connection that sends it;
 * server frames are unmasked, so the bytes are the same for all.
 */
typedef struct ngx_http_realtime_msg_s  ngx_http_realtime_msg_t;

struct ngx_http_realtime_msg_s {
    ngx_uint_t                         refs;
    size_t                             len;
    size_t                             size;
    ngx_http_realtime_msg_t           *next;      /* in the free list */
    u_char                            *data;
    unsigned                           persistent:1;
};


typedef struct {
    ngx_connection_t                  *connection;
    ngx_http_realtime_loc_conf_t      *conf;

    ngx_http_realtime_frame_parser_t   parser;

    /* a message that arrived in more than one piece */
    u_char                            *message;
    size_t                             message_len;
    size_t                             message_size;
    ngx_uint_t                         message_opcode;

    /* outgoing frames: a ring of shared buffers */
    ngx_http_realtime_msg_t          **out;
    ngx_uint_t                         out_head;
    ngx_uint_t                         out_count;
    ngx_uint_t                         out_size;
    size_t                             out_offset;
    size_t                             out_bytes;
    ngx_http_realtime_msg_t           *out_inline[NGX_HTTP_REALTIME_OUT_INLINE];

    ngx_msec_t                         last_in;
    ngx_msec_t                         last_ping;

    ngx_str_t                          subprotocol;

    unsigned                           close_sent:1;
    unsigned                           close_received:1;
    unsigned                           lingering:1;
} ngx_http_realtime_conn_t;


/* ngx_http_realtime_websocket.c */
ngx_int_t ngx_http_realtime_handshake(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf);

/* ngx_http_realtime_conn.c */
void ngx_http_realtime_upgrade(ngx_http_request_t *r,
    ngx_http_realtime_conn_t *ws);
ngx_int_t ngx_http_realtime_send(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_msg_t *msg);
void ngx_http_realtime_close(ngx_http_realtime_conn_t *ws, ngx_uint_t code,
    char *reason);

ngx_http_realtime_msg_t *ngx_http_realtime_msg_frame(ngx_uint_t opcode,
    u_char *payload, size_t len);
void ngx_http_realtime_msg_release(ngx_http_realtime_msg_t *msg);

/* ngx_http_realtime_module.c */
ngx_int_t ngx_http_realtime_send_error(ngx_http_request_t *r,
    ngx_uint_t status, char *code, char *message);


extern ngx_module_t  ngx_http_realtime_module;


#endif /* _NGX_HTTP_REALTIME_MODULE_H_INCLUDED_ */
