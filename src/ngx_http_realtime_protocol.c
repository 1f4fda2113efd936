
/*
 * Copyright (C) ngx-realtime developers
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_realtime_protocol.h"


typedef struct {
    const char  *name;
    size_t       len;
    int          type;
} ngx_http_realtime_cmd_name_t;


static int ngx_http_realtime_cmd_fail(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err, const char *code,
    const char *message);
static int ngx_http_realtime_cmd_room(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_cmd_since(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_cmd_publish(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_cmd_refresh(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err);


static const ngx_http_realtime_cmd_name_t  ngx_http_realtime_cmd_names[] = {
    { "join", 4, NGX_HTTP_REALTIME_CMD_JOIN },
    { "leave", 5, NGX_HTTP_REALTIME_CMD_LEAVE },
    { "publish", 7, NGX_HTTP_REALTIME_CMD_PUBLISH },
    { "presence", 8, NGX_HTTP_REALTIME_CMD_PRESENCE },
    { "ping", 4, NGX_HTTP_REALTIME_CMD_PING },
    { "refresh", 7, NGX_HTTP_REALTIME_CMD_REFRESH },
    { NULL, 0, 0 }
};


int
ngx_http_realtime_cmd_parse(ngx_http_realtime_cmd_t *cmd, const char *buf,
    size_t len, ngx_http_realtime_cmd_error_t *err)
{
    char          *p;
    json_t        *root;
    json_error_t   error;

    memset(cmd, 0, sizeof(ngx_http_realtime_cmd_t));

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES|JSON_DECODE_ANY,
                      &error);

    if (root == NULL) {
        err->code = "INVALID_JSON";
        snprintf(err->message, sizeof(err->message),
                 "invalid JSON at line %d, column %d: %.160s",
                 error.line, error.column, error.text);

        /*
         * jansson quotes the input near the error, cut anywhere, even
         * inside a UTF-8 sequence (a backslash and the first byte of
         * one); the message goes out in an "error" event, it must be
         * UTF-8
         */

        for (p = err->message; *p; p++) {
            if ((unsigned char) *p >= 0x80) {
                *p = '?';
            }
        }

        return -1;
    }

    return ngx_http_realtime_cmd_read(cmd, root, err);
}


int
ngx_http_realtime_cmd_read(ngx_http_realtime_cmd_t *cmd, json_t *root,
    ngx_http_realtime_cmd_error_t *err)
{
    json_t                              *event, *id;
    const ngx_http_realtime_cmd_name_t  *n;

    memset(cmd, 0, sizeof(ngx_http_realtime_cmd_t));

    cmd->root = root;

    if (!json_is_object(root)) {
        return ngx_http_realtime_cmd_fail(cmd, err, "INVALID_EVENT",
                                   "a message must be a JSON object");
    }

    id = json_object_get(root, "id");

    if (id && !json_is_null(id)) {
        if (!json_is_integer(id) || json_integer_value(id) < 0) {
            return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                                   "\"id\" must be a non-negative integer");
        }

        cmd->has_id = 1;
        cmd->id = json_integer_value(id);
    }

    event = json_object_get(root, "event");

    if (!json_is_string(event) || json_string_length(event) == 0
        || json_string_length(event) > NGX_HTTP_REALTIME_EVENT_MAX)
    {
        return ngx_http_realtime_cmd_fail(cmd, err, "INVALID_EVENT",
                            "\"event\" must be a string of 1-128 bytes");
    }

    cmd->event = json_string_value(event);
    cmd->event_len = json_string_length(event);
    cmd->data = json_object_get(root, "data");

    for (n = ngx_http_realtime_cmd_names; n->name; n++) {
        if (n->len == cmd->event_len
            && memcmp(n->name, cmd->event, n->len) == 0)
        {
            cmd->type = n->type;
            break;
        }
    }

    switch (cmd->type) {

    case NGX_HTTP_REALTIME_CMD_JOIN:
        if (ngx_http_realtime_cmd_room(cmd, err) != 0) {
            return -1;
        }

        return ngx_http_realtime_cmd_since(cmd, err);

    case NGX_HTTP_REALTIME_CMD_LEAVE:
    case NGX_HTTP_REALTIME_CMD_PRESENCE:
        return ngx_http_realtime_cmd_room(cmd, err);

    case NGX_HTTP_REALTIME_CMD_PUBLISH:
        return ngx_http_realtime_cmd_publish(cmd, err);

    case NGX_HTTP_REALTIME_CMD_REFRESH:
        return ngx_http_realtime_cmd_refresh(cmd, err);

    default:
        return 0;
    }
}


void
ngx_http_realtime_cmd_free(ngx_http_realtime_cmd_t *cmd)
{
    if (cmd->root) {
        json_decref(cmd->root);
        cmd->root = NULL;
    }
}


static int
ngx_http_realtime_cmd_fail(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err, const char *code, const char *message)
{
    err->code = code;
    snprintf(err->message, sizeof(err->message), "%s", message);

    ngx_http_realtime_cmd_free(cmd);

    return -1;
}


/* "data" is {"room": "..."} or, as a shorthand, the room name itself */

static int
ngx_http_realtime_cmd_room(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err)
{
    json_t  *room;

    room = json_is_object(cmd->data) ? json_object_get(cmd->data, "room")
                                     : cmd->data;

    if (!json_is_string(room)) {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                                          "\"data.room\" must be a string");
    }

    cmd->room = json_string_value(room);
    cmd->room_len = json_string_length(room);

    if (!ngx_http_realtime_room_valid(cmd->room, cmd->room_len)) {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                           "a room name is 1-128 bytes of letters, digits "
                           "and _-:.@/#");
    }

    return 0;
}


/* join {"room", "since": {"epoch": string, "offset": integer >= 0}} */

static int
ngx_http_realtime_cmd_since(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err)
{
    json_t  *since, *epoch, *offset;

    since = json_is_object(cmd->data) ? json_object_get(cmd->data, "since")
                                      : NULL;

    if (since == NULL || json_is_null(since)) {
        return 0;
    }

    epoch = json_object_get(since, "epoch");
    offset = json_object_get(since, "offset");

    if (!json_is_object(since) || !json_is_string(epoch)
        || json_string_length(epoch) == 0
        || json_string_length(epoch) > 64
        || !json_is_integer(offset) || json_integer_value(offset) < 0)
    {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                           "\"data.since\" must be {\"epoch\": a string, "
                           "\"offset\": a non-negative integer}");
    }

    cmd->has_since = 1;
    cmd->since_epoch = json_string_value(epoch);
    cmd->since_epoch_len = json_string_length(epoch);
    cmd->since_offset = json_integer_value(offset);

    return 0;
}


static int
ngx_http_realtime_cmd_publish(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err)
{
    json_t  *event, *echo;

    if (!json_is_object(cmd->data)) {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                               "publish needs \"data\": {\"room\", \"event\", "
                               "\"data\"}");
    }

    if (ngx_http_realtime_cmd_room(cmd, err) != 0) {
        return -1;
    }

    event = json_object_get(cmd->data, "event");

    if (!json_is_string(event) || json_string_length(event) == 0
        || json_string_length(event) > NGX_HTTP_REALTIME_EVENT_MAX)
    {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                       "\"data.event\" must be a string of 1-128 bytes");
    }

    cmd->publish_event = json_string_value(event);
    cmd->publish_event_len = json_string_length(event);
    cmd->publish_data = json_object_get(cmd->data, "data");

    echo = json_object_get(cmd->data, "echo");

    if (echo && !json_is_boolean(echo)) {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                                          "\"data.echo\" must be a boolean");
    }

    cmd->echo = json_is_true(echo);

    return 0;
}


static int
ngx_http_realtime_cmd_refresh(ngx_http_realtime_cmd_t *cmd,
    ngx_http_realtime_cmd_error_t *err)
{
    json_t  *token;

    token = json_is_object(cmd->data) ? json_object_get(cmd->data, "token")
                                      : NULL;

    if (!json_is_string(token) || json_string_length(token) == 0) {
        return ngx_http_realtime_cmd_fail(cmd, err, "BAD_REQUEST",
                                          "\"data.token\" must be a string");
    }

    cmd->token = json_string_value(token);
    cmd->token_len = json_string_length(token);

    return 0;
}


int
ngx_http_realtime_room_valid(const char *name, size_t len)
{
    size_t         i;
    unsigned char  ch;

    if (len == 0 || len > NGX_HTTP_REALTIME_ROOM_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) name[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9') || strchr("_-:.@/#", ch) != NULL)
        {
            /* strchr() also finds the terminating NUL */
            if (ch != '\0') {
                continue;
            }
        }

        return 0;
    }

    return 1;
}


json_t *
ngx_http_realtime_event(const char *event, json_t *data, json_int_t id)
{
    json_t  *json;

    json = json_object();
    if (json == NULL) {
        return NULL;
    }

    if (json_object_set_new(json, "event", json_string(event)) != 0
        || json_object_set(json, "data", data ? data : json_null()) != 0
        || (id >= 0
            && json_object_set_new(json, "id", json_integer(id)) != 0))
    {
        json_decref(json);
        return NULL;
    }

    return json;
}


json_t *
ngx_http_realtime_event_error(const char *code, const char *message,
    json_int_t id)
{
    json_t  *data, *json;

    data = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (data == NULL) {
        return NULL;
    }

    if (id >= 0 && json_object_set_new(data, "id", json_integer(id)) != 0) {
        json_decref(data);
        return NULL;
    }

    json = ngx_http_realtime_event("error", data, id);
    json_decref(data);

    return json;
}


/* a push to a room: {"event", "room", "data"}, as a relay without "from" */

json_t *
ngx_http_realtime_event_room(const char *event, const char *room,
    size_t room_len, json_t *data)
{
    return json_pack("{s:s, s:s%, s:O}",
                     "event", event,
                     "room", room, room_len,
                     "data", data ? data : json_null());
}


json_t *
ngx_http_realtime_event_relay(const char *event, size_t event_len,
    const char *room, size_t room_len, const char *from, size_t from_len,
    json_t *data)
{
    return json_pack("{s:s%, s:s%, s:s%, s:O}",
                     "event", event, event_len,
                     "room", room, room_len,
                     "from", from, from_len,
                     "data", data ? data : json_null());
}


size_t
ngx_http_realtime_json_dump(json_t *json, char *buf, size_t size)
{
    return json_dumpb(json, buf, size, JSON_COMPACT);
}


/*
 * json_dumpb() can size a dump only by doing it: a JSON dumped into this
 * process's scratch first is serialized once and then copied, and only
 * one larger than the scratch is dumped again into its own buffer
 */

const char *
ngx_http_realtime_json_dump_scratch(json_t *json, size_t *len)
{
    static char  scratch[NGX_HTTP_REALTIME_JSON_SCRATCH];

    *len = json_dumpb(json, scratch, sizeof(scratch), JSON_COMPACT);

    if (*len == 0 || *len > sizeof(scratch)) {
        return NULL;
    }

    return scratch;
}


/* what json_dump_scratch() gave into dst, len bytes: a copy, or a dump */

void
ngx_http_realtime_json_place(json_t *json, const char *text, char *dst,
    size_t len)
{
    if (text) {
        memcpy(dst, text, len);
        return;
    }

    (void) json_dumpb(json, dst, len, JSON_COMPACT);
}


/*
 * A JSON string as json_dumpb() writes it (quotes included) for UTF-8
 * input: '"', '\\' and the control characters escaped, the rest as is.
 * The welcome of every connection is written with it, without the
 * json_t and the dump that cost ten times as much.
 */

static const char  ngx_http_realtime_json_hex[] = "0123456789ABCDEF";


size_t
ngx_http_realtime_json_quoted_len(const char *s, size_t len)
{
    size_t         n;
    unsigned char  c;

    n = len + 2;

    while (len--) {
        c = (unsigned char) *s++;

        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n'
            || c == '\r' || c == '\t')
        {
            n += 1;

        } else if (c < 0x20) {
            n += 5;
        }
    }

    return n;
}


char *
ngx_http_realtime_json_quote(char *p, const char *s, size_t len)
{
    unsigned char  c;

    *p++ = '"';

    while (len--) {
        c = (unsigned char) *s++;

        switch (c) {

        case '"':
        case '\\':
            *p++ = '\\';
            *p++ = (char) c;
            break;

        case '\b':
            *p++ = '\\';
            *p++ = 'b';
            break;

        case '\f':
            *p++ = '\\';
            *p++ = 'f';
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        case '\r':
            *p++ = '\\';
            *p++ = 'r';
            break;

        case '\t':
            *p++ = '\\';
            *p++ = 't';
            break;

        default:
            if (c >= 0x20) {
                *p++ = (char) c;
                break;
            }

            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = ngx_http_realtime_json_hex[c >> 4];
            *p++ = ngx_http_realtime_json_hex[c & 0xf];
        }
    }

    *p++ = '"';

    return p;
}


/*
 * {"event":"welcome","data":{"userId":..,"connectionId":..,"pid":..}}
 * and "timestamp" last when ts is not NULL: what ngx_http_realtime_event()
 * and its dump make of it, byte for byte.
 */

#define NGX_HTTP_REALTIME_WELCOME_HEAD                                        \
    "{\"event\":\"welcome\",\"data\":{\"userId\":"
#define NGX_HTTP_REALTIME_WELCOME_ID    ",\"connectionId\":"
#define NGX_HTTP_REALTIME_WELCOME_PID   ",\"pid\":"
#define NGX_HTTP_REALTIME_WELCOME_TS    ",\"timestamp\":"


size_t
ngx_http_realtime_welcome_len(const ngx_http_realtime_welcome_t *w)
{
    char  pid[32];

    return sizeof(NGX_HTTP_REALTIME_WELCOME_HEAD) - 1
           + ngx_http_realtime_json_quoted_len(w->user, w->user_len)
           + sizeof(NGX_HTTP_REALTIME_WELCOME_ID) - 1
           + ngx_http_realtime_json_quoted_len(w->id, w->id_len)
           + sizeof(NGX_HTTP_REALTIME_WELCOME_PID) - 1
           + (size_t) snprintf(pid, sizeof(pid), "%lld", (long long) w->pid)
           + 1
           + (w->ts ? sizeof(NGX_HTTP_REALTIME_WELCOME_TS) - 1
                      + ngx_http_realtime_json_quoted_len(w->ts, w->ts_len)
                    : 0)
           + 1;
}


/* writes welcome_len() bytes at p; returns their end */

char *
ngx_http_realtime_welcome(char *p, const ngx_http_realtime_welcome_t *w)
{
    char  pid[32];
    int   n;

    n = snprintf(pid, sizeof(pid), "%lld", (long long) w->pid);

    memcpy(p, NGX_HTTP_REALTIME_WELCOME_HEAD,
           sizeof(NGX_HTTP_REALTIME_WELCOME_HEAD) - 1);
    p += sizeof(NGX_HTTP_REALTIME_WELCOME_HEAD) - 1;
    p = ngx_http_realtime_json_quote(p, w->user, w->user_len);

    memcpy(p, NGX_HTTP_REALTIME_WELCOME_ID,
           sizeof(NGX_HTTP_REALTIME_WELCOME_ID) - 1);
    p += sizeof(NGX_HTTP_REALTIME_WELCOME_ID) - 1;
    p = ngx_http_realtime_json_quote(p, w->id, w->id_len);

    memcpy(p, NGX_HTTP_REALTIME_WELCOME_PID,
           sizeof(NGX_HTTP_REALTIME_WELCOME_PID) - 1);
    p += sizeof(NGX_HTTP_REALTIME_WELCOME_PID) - 1;
    memcpy(p, pid, n);
    p += n;
    *p++ = '}';

    if (w->ts) {
        memcpy(p, NGX_HTTP_REALTIME_WELCOME_TS,
               sizeof(NGX_HTTP_REALTIME_WELCOME_TS) - 1);
        p += sizeof(NGX_HTTP_REALTIME_WELCOME_TS) - 1;
        p = ngx_http_realtime_json_quote(p, w->ts, w->ts_len);
    }

    *p++ = '}';

    return p;
}
