
/*
 * Copyright (C) ngx-realtime developers
 *
 * Forwarding client events to HTTP backends: the JSON body POSTed for
 * one event (or for the connect hook), the backend's reply, and route
 * templates such as "battle:{battleId}" for routing without a backend.
 * Pure C over jansson, no nginx headers, so that t/unit and the fuzzer
 * drive it.
 */


#ifndef _NGX_HTTP_REALTIME_FORWARD_CODEC_H_INCLUDED_
#define _NGX_HTTP_REALTIME_FORWARD_CODEC_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>

#include "ngx_http_realtime_protocol.h"


/* entries of each array of a reply, at most */
#define NGX_HTTP_REALTIME_FORWARD_ENTRIES_MAX   64
#define NGX_HTTP_REALTIME_FORWARD_USER_MAX      256
#define NGX_HTTP_REALTIME_FORWARD_CODE_MAX      64
/* a close frame holds 125 bytes: the code and this much reason */
#define NGX_HTTP_REALTIME_FORWARD_REASON_MAX    123
#define NGX_HTTP_REALTIME_FORWARD_CLOSE_DEFAULT 4000


/*
 * The body POSTed to the backend location for one client event:
 *
 *   {"event", "data", "id" (only if id >= 0), "connection", "user",
 *    "rooms", "protocol", "nsp" (only if nsp), "meta" (only if meta)}
 *
 * in this order.  For the connect hook event is NULL: no "event",
 * "data" nor "id".  data, rooms and meta are borrowed; NULL data is
 * null, NULL user is null (anonymous), NULL rooms is [].  Returns a new
 * reference, or NULL on allocation failure (or a string that is not
 * UTF-8).
 */
json_t *ngx_http_realtime_forward_request(const char *event,
    size_t event_len, json_t *data, json_int_t id, const char *connection,
    size_t connection_len, const char *user, size_t user_len,
    json_t *rooms, const char *protocol, const char *nsp, size_t nsp_len,
    json_t *meta);


/*
 * A parsed backend reply.  Every pointer is borrowed from root, which
 * ngx_http_realtime_forward_reply_free() releases; a single string or
 * object given for an array field is replaced in root by an array of
 * it, so the arrays are always arrays.  An absent "data" of an entry
 * is NULL there: send null.
 */
typedef struct {
    json_t        *root;          /* owns the rest */
    json_t        *leave;         /* array of room-name strings, or NULL */
    json_t        *join;          /* array of room-name strings, or NULL */
    json_t        *emit;          /* array of {"event", "data"}, or NULL */
    json_t        *publish;       /* array of {"room", "event", "data",
                                     "except_self": bool}, or NULL */
    json_t        *to_user;       /* array of {"user", "event", "data"},
                                     or NULL */
    int            has_ack;
    json_t        *ack;           /* JSON null allowed */
    const char    *error_code;    /* NULL: no error */
    const char    *error_message; /* "error" when the reply gives none */
    json_t        *meta;          /* object, or NULL */
    const char    *user;          /* connect hook: the user, or NULL */
    size_t         user_len;
    int            disconnect;    /* 1: close the client after applying */
    int            disconnect_code;   /* 1000 or 4000-4999; 0 if no
                                         disconnect, 4000 by default */
    const char    *disconnect_reason; /* may be NULL */
} ngx_http_realtime_forward_reply_t;


/*
 * Parses a backend reply body.  An empty body (or only white space) is
 * a valid empty reply, no field set.  Unknown keys are ignored, at any
 * level.  Returns 0, or -1 with err->code "BACKEND_BAD_REPLY" and an
 * ASCII err->message naming the field; reply->root is NULL then.
 *
 *   "leave", "join"   a room name or an array of them
 *   "emit"            {"event", "data"?} or an array of them
 *   "publish"         {"room", "event", "data"?, "except_self"?} or ...
 *   "to_user"         {"user", "event", "data"?} or an array of them
 *   "ack"             any value
 *   "error"           {"code": [A-Z0-9_]{1,64}, "message"?} or the code
 *   "meta"            an object
 *   "user"            1-256 bytes
 *   "disconnect"      true, false (none), or {"code"?, "reason"?}
 *
 * Arrays hold at most 64 entries; events are 1-128 bytes.
 */
int ngx_http_realtime_forward_reply_parse(
    ngx_http_realtime_forward_reply_t *reply, const char *buf, size_t len,
    ngx_http_realtime_cmd_error_t *err);

void ngx_http_realtime_forward_reply_free(
    ngx_http_realtime_forward_reply_t *reply);


/*
 * Expands a route template, "battle:{battleId}", with the fields of
 * data (an object; a field must be a string or an integer) and {user}
 * (user, NULL when anonymous) into buf, size bytes, not NUL-terminated.
 * "{{" is a literal "{"; a "}" outside a field is itself.  Field names
 * are [A-Za-z0-9_.-]+; "{a.b}" reads data.a.b.  Returns the length, or
 * -1 with *missing and *missing_len the name (in tpl) of a field that is
 * missing or of a wrong type, or of a placeholder check() refuses, or
 * -2 if the result does not fit.
 */
int ngx_http_realtime_route_expand(const char *tpl, size_t tpl_len,
    json_t *data, const char *user, size_t user_len, char *buf, size_t size,
    const char **missing, size_t *missing_len);

/*
 * Checks a template at configuration time: not empty, every "{" not
 * doubled opens a name closed by "}", no empty name nor empty part
 * between dots.  Returns 0 or -1.
 */
int ngx_http_realtime_route_check(const char *tpl, size_t tpl_len);


#endif /* _NGX_HTTP_REALTIME_FORWARD_CODEC_H_INCLUDED_ */
