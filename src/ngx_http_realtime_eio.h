
/*
 * Copyright (C) ngx-realtime developers
 *
 * Engine.IO v4 and Socket.IO v5 packets.  Pure C, no nginx headers and
 * no allocation except where jansson is named, so that t/unit and the
 * fuzzer drive it.
 *
 *   Engine.IO packet:   <type digit><data>          (0 open .. 6 noop)
 *   polling payload:    packet \x1e packet ...      binary: b<base64>
 *   Socket.IO packet:   <type>[<attachments>-][<nsp>,][<ack id>][<json>]
 */


#ifndef _NGX_HTTP_REALTIME_EIO_H_INCLUDED_
#define _NGX_HTTP_REALTIME_EIO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <jansson.h>


#define NGX_HTTP_REALTIME_EIO_OPEN           0
#define NGX_HTTP_REALTIME_EIO_CLOSE          1
#define NGX_HTTP_REALTIME_EIO_PING           2
#define NGX_HTTP_REALTIME_EIO_PONG           3
#define NGX_HTTP_REALTIME_EIO_MESSAGE        4
#define NGX_HTTP_REALTIME_EIO_UPGRADE        5
#define NGX_HTTP_REALTIME_EIO_NOOP           6

/* the record separator between packets of a polling payload */
#define NGX_HTTP_REALTIME_EIO_SEPARATOR      0x1e

#define NGX_HTTP_REALTIME_SIO_CONNECT        0
#define NGX_HTTP_REALTIME_SIO_DISCONNECT     1
#define NGX_HTTP_REALTIME_SIO_EVENT          2
#define NGX_HTTP_REALTIME_SIO_ACK            3
#define NGX_HTTP_REALTIME_SIO_CONNECT_ERROR  4
#define NGX_HTTP_REALTIME_SIO_BINARY_EVENT   5
#define NGX_HTTP_REALTIME_SIO_BINARY_ACK     6

/* a namespace name, and attachments of one packet, at most */
#define NGX_HTTP_REALTIME_SIO_NSP_MAX        128
#define NGX_HTTP_REALTIME_SIO_ATTACH_MAX     64

/* the longest header sio_header() writes: 6-digit count, nsp, 20 digits */
#define NGX_HTTP_REALTIME_SIO_HEADER_MAX                                     \
    (1 + 10 + 1 + NGX_HTTP_REALTIME_SIO_NSP_MAX + 1 + 20)


/* one packet of a polling payload or of a WebSocket message */
typedef struct {
    int                  type;       /* NGX_HTTP_REALTIME_EIO_* */
    int                  binary;     /* a binary frame, or "b" + base64 */
    const unsigned char *data;       /* after the type; base64 if "b" */
    size_t               len;
} ngx_http_realtime_eio_packet_t;


typedef struct {
    int                  type;       /* NGX_HTTP_REALTIME_SIO_* */
    unsigned             attachments;
    const char          *nsp;        /* "/" when the packet names none */
    size_t               nsp_len;
    int                  has_id;
    uint64_t             id;
    const char          *data;       /* the JSON text, may be empty */
    size_t               data_len;
} ngx_http_realtime_sio_packet_t;


/*
 * Engine.IO.  eio_parse() reads one packet: a text one is a type digit
 * and its data, a binary frame (binary != 0) is a message as it is; a
 * text packet "b<base64>" is a binary message in a polling payload.
 * Returns 0, or -1 for an empty packet, an unknown type, or a "b"
 * packet that is not valid base64.
 */
int ngx_http_realtime_eio_parse(const unsigned char *p, size_t len,
    int binary, ngx_http_realtime_eio_packet_t *pkt);

/*
 * Iterates over the packets of a polling payload: *pos moves past the
 * packet and its separator.  Returns 1 with *packet and *len set, 0 at
 * the end.  An empty payload has no packet; "a\x1e\x1eb" has an empty
 * one in the middle, which eio_parse() then refuses.
 */
int ngx_http_realtime_eio_payload_next(const unsigned char **pos,
    const unsigned char *end, const unsigned char **packet, size_t *len);

/* base64 (RFC 4648, with padding): sizes, encode, strict decode */
size_t ngx_http_realtime_eio_base64_encoded_len(size_t len);
size_t ngx_http_realtime_eio_base64_decoded_len(const unsigned char *p,
    size_t len);
size_t ngx_http_realtime_eio_base64_encode(unsigned char *dst,
    const unsigned char *src, size_t len);
/* returns the decoded length, or (size_t) -1 on bad input */
size_t ngx_http_realtime_eio_base64_decode(unsigned char *dst,
    const unsigned char *src, size_t len);

/*
 * Socket.IO.  sio_parse() reads the header of one packet (the data of
 * an Engine.IO message packet) and checks what the header says:
 * attachments only on BINARY_*, an id on EVENT, ACK and their binary
 * forms only, the namespace starting with "/" and at most NSP_MAX
 * bytes, attachments at most ATTACH_MAX, digits that do not overflow.
 * The JSON is not parsed.  Returns 0, or -1 with *err a short ASCII
 * reason.
 */
int ngx_http_realtime_sio_parse(const char *p, size_t len,
    ngx_http_realtime_sio_packet_t *pkt, const char **err);

/*
 * The JSON a packet type needs, parsed with jansson: CONNECT an object
 * or nothing, CONNECT_ERROR an object, DISCONNECT nothing, EVENT and
 * BINARY_EVENT a non-empty array whose first element is a string,
 * ACK and BINARY_ACK an array.  Returns a new reference (NULL data is
 * returned as NULL with 0 for CONNECT/DISCONNECT), or -1 with *err.
 */
int ngx_http_realtime_sio_data(ngx_http_realtime_sio_packet_t *pkt,
    json_t **data, const char **err);

/*
 * Binary placeholders {"_placeholder":true,"num":n} anywhere in data:
 * exactly one for each n of 0 .. attachments - 1, no other object with
 * "_placeholder".  Returns 0 when they match the count, -1 if not.
 */
int ngx_http_realtime_sio_placeholders_check(json_t *data,
    unsigned attachments);

/*
 * Writes the header <type>[<n>-][<nsp>,][<id>] into buf, which holds
 * NGX_HTTP_REALTIME_SIO_HEADER_MAX bytes; nsp "/" (or NULL) is left
 * out, id < 0 means no id.  Returns the length written.
 */
size_t ngx_http_realtime_sio_header(char *buf, int type,
    unsigned attachments, const char *nsp, size_t nsp_len, int64_t id);

/*
 * The encoded packet  <header><json>  in buf when it fits; returns the
 * length it needs (0 on a serialization failure).  data may be NULL.
 */
size_t ngx_http_realtime_sio_encode(char *buf, size_t size, int type,
    unsigned attachments, const char *nsp, size_t nsp_len, int64_t id,
    json_t *data);


#endif /* _NGX_HTTP_REALTIME_EIO_H_INCLUDED_ */
