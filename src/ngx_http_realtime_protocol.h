
/*
 * Copyright (C) ngx-realtime developers
 *
 * The JSON envelope clients and the push API speak.  Pure C over
 * jansson, no nginx headers, so that t/unit and the fuzzer drive it.
 */


#ifndef _NGX_HTTP_REALTIME_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_REALTIME_PROTOCOL_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define NGX_HTTP_REALTIME_CMD_UNKNOWN    0
#define NGX_HTTP_REALTIME_CMD_JOIN       1
#define NGX_HTTP_REALTIME_CMD_LEAVE      2
#define NGX_HTTP_REALTIME_CMD_PUBLISH    3
#define NGX_HTTP_REALTIME_CMD_PRESENCE   4
#define NGX_HTTP_REALTIME_CMD_PING       5
#define NGX_HTTP_REALTIME_CMD_REFRESH    6

#define NGX_HTTP_REALTIME_ROOM_MAX       128
#define NGX_HTTP_REALTIME_EVENT_MAX      128

/* what most answers and publications fit in: see json_dump_scratch() */
#define NGX_HTTP_REALTIME_JSON_SCRATCH   4096


typedef struct {
    json_t       *root;        /* owns the rest; json_decref() it */
    int           type;

    const char   *event;
    size_t        event_len;
    json_t       *data;        /* borrowed from root, may be NULL */

    int           has_id;
    json_int_t    id;

    /* join, leave, publish, presence */
    const char   *room;
    size_t        room_len;

    /* join: "since": {"epoch": "...", "offset": n}, to recover from */
    int           has_since;
    const char   *since_epoch;
    size_t        since_epoch_len;
    json_int_t    since_offset;

    /* publish */
    const char   *publish_event;
    size_t        publish_event_len;
    json_t       *publish_data;
    int           echo;

    /* refresh */
    const char   *token;
    size_t        token_len;

    /* made by realtime_route: allowed without realtime_client_publish */
    int           routed;
} ngx_http_realtime_cmd_t;


typedef struct {
    const char   *code;        /* INVALID_JSON, INVALID_EVENT, BAD_REQUEST */
    char          message[256];
} ngx_http_realtime_cmd_error_t;


/*
 * Parses one client message.  Returns 0 with cmd filled, or -1 with err
 * set; cmd->root is NULL after an error, and cmd->has_id/id are kept
 * when the envelope was readable so that the error can carry the id.
 */
int ngx_http_realtime_cmd_parse(ngx_http_realtime_cmd_t *cmd,
    const char *buf, size_t len, ngx_http_realtime_cmd_error_t *err);

/*
 * The same from a parsed message, which cmd takes over (cmd->root) in
 * every case: the Socket.IO adapter builds {"event", "data", "id"}.
 */
int ngx_http_realtime_cmd_read(ngx_http_realtime_cmd_t *cmd, json_t *root,
    ngx_http_realtime_cmd_error_t *err);

void ngx_http_realtime_cmd_free(ngx_http_realtime_cmd_t *cmd);

/* 1..128 bytes of [A-Za-z0-9] and _ - : . @ / # */
int ngx_http_realtime_room_valid(const char *name, size_t len);

/*
 * Outgoing events.  Each returns a new reference or NULL on allocation
 * failure; "data" arguments are borrowed (json_incref'ed), NULL means
 * JSON null.  id < 0: no "id" member.
 */
json_t *ngx_http_realtime_event(const char *event, json_t *data,
    json_int_t id);
json_t *ngx_http_realtime_event_error(const char *code, const char *message,
    json_int_t id);
json_t *ngx_http_realtime_event_room(const char *event, const char *room,
    size_t room_len, json_t *data);
json_t *ngx_http_realtime_event_relay(const char *event, size_t event_len,
    const char *room, size_t room_len, const char *from, size_t from_len,
    json_t *data);

/* serializes compactly into buf when it fits; returns the size needed */
size_t ngx_http_realtime_json_dump(json_t *json, char *buf, size_t size);
/* the same into a scratch valid until the next call; NULL: did not fit,
 * *len the size needed (0: it could not be serialized) */
const char *ngx_http_realtime_json_dump_scratch(json_t *json,
    size_t *len);
void ngx_http_realtime_json_place(json_t *json, const char *text, char *dst,
    size_t len);

/*
 * A string's JSON form as json_dumpb() writes it, quotes included, for
 * UTF-8 input (what jansson accepts as a string): the size, and the bytes
 * written at dst (returns their end).
 */
size_t ngx_http_realtime_json_quoted_len(const char *s, size_t len);
char *ngx_http_realtime_json_quote(char *dst, const char *s, size_t len);

/* the welcome event, written directly; ts: "timestamp", or NULL */
typedef struct {
    const char   *user;
    size_t        user_len;
    const char   *id;
    size_t        id_len;
    long long     pid;
    const char   *ts;
    size_t        ts_len;
} ngx_http_realtime_welcome_t;

size_t ngx_http_realtime_welcome_len(const ngx_http_realtime_welcome_t *w);
char *ngx_http_realtime_welcome(char *dst,
    const ngx_http_realtime_welcome_t *w);


#endif /* _NGX_HTTP_REALTIME_PROTOCOL_H_INCLUDED_ */
