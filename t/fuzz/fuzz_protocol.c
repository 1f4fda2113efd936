
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the JSON envelope parser.  The input is parsed as
 * a client message; a parsed command must be consistent, an error must
 * leave nothing allocated and be sendable as an "error" event.  Every
 * event built from the result is serialized with the two-pass dump the
 * module uses and must read back equal.  The input is also checked as a
 * room name against a reference, and, when jansson takes it as a string,
 * quoted and put in a welcome without jansson: the bytes must be its
 * dump's.  Any broken invariant aborts.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_protocol.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  *fuzz_names[] = {
    NULL, "join", "leave", "publish", "presence", "ping", "refresh"
};


static int
fuzz_room_valid(const char *name, size_t len)
{
    size_t         i;
    unsigned char  ch;

    if (len == 0 || len > 128) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || memchr("_-:.@/#", ch, 7)))
        {
            return 0;
        }
    }

    return 1;
}


/* a string from jansson: NUL-terminated, no NUL inside */

static void
fuzz_string(const char *p, size_t len, size_t min, size_t max)
{
    ensure(p != NULL);
    ensure(len >= min && len <= max);
    ensure(p[len] == '\0');
    ensure(memchr(p, '\0', len) == NULL);
}


/* serializes json as the module does, reads it back; drops json */

static void
fuzz_dump(json_t *json)
{
    char    *buf;
    size_t   n;
    json_t  *back;

    ensure(json != NULL && json_is_object(json));

    n = ngx_http_realtime_json_dump(json, NULL, 0);
    ensure(n >= 2);

    /* exactly the size: ASan sees any write past it */

    buf = malloc(n);
    ensure(buf != NULL);

    ensure(ngx_http_realtime_json_dump(json, buf, n) == n);
    ensure(buf[0] == '{' && buf[n - 1] == '}');

    back = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
    ensure(back != NULL);
    ensure(json_equal(json, back));

    json_decref(back);
    free(buf);
    json_decref(json);
}


static void
fuzz_error(ngx_http_realtime_cmd_t *cmd, ngx_http_realtime_cmd_error_t *err)
{
    ensure(cmd->root == NULL);
    ensure(err->code != NULL);
    ensure(strcmp(err->code, "INVALID_JSON") == 0
           || strcmp(err->code, "INVALID_EVENT") == 0
           || strcmp(err->code, "BAD_REQUEST") == 0);
    ensure(memchr(err->message, '\0', sizeof(err->message)) != NULL);
    ensure(err->message[0] != '\0');

    if (strcmp(err->code, "INVALID_JSON") == 0) {
        ensure(cmd->has_id == 0);
        ensure(strncmp(err->message, "invalid JSON at line ", 21) == 0);
    }

    ensure(cmd->has_id == 0 || cmd->id >= 0);

    /* the module sends it back; failing to would close the connection */

    fuzz_dump(ngx_http_realtime_event_error(err->code, err->message,
                                            cmd->has_id ? cmd->id : -1));

    ngx_http_realtime_cmd_free(cmd);
    ensure(cmd->root == NULL);
}


static void
fuzz_cmd(ngx_http_realtime_cmd_t *cmd)
{
    int          i;
    size_t       refcount;
    json_t      *json, *echo;
    json_int_t   id;

    ensure(cmd->root != NULL && json_is_object(cmd->root));
    ensure(cmd->type >= NGX_HTTP_REALTIME_CMD_UNKNOWN
           && cmd->type <= NGX_HTTP_REALTIME_CMD_REFRESH);

    fuzz_string(cmd->event, cmd->event_len, 1, NGX_HTTP_REALTIME_EVENT_MAX);
    ensure(json_string_value(json_object_get(cmd->root, "event"))
           == cmd->event);
    ensure(cmd->data == json_object_get(cmd->root, "data"));

    if (cmd->type == NGX_HTTP_REALTIME_CMD_UNKNOWN) {
        for (i = 1; i <= NGX_HTTP_REALTIME_CMD_REFRESH; i++) {
            ensure(strcmp(cmd->event, fuzz_names[i]) != 0);
        }

    } else {
        ensure(strcmp(cmd->event, fuzz_names[cmd->type]) == 0);
    }

    if (cmd->has_id) {
        ensure(cmd->has_id == 1 && cmd->id >= 0);
        ensure(json_integer_value(json_object_get(cmd->root, "id"))
               == cmd->id);

    } else {
        ensure(cmd->id == 0);
        json = json_object_get(cmd->root, "id");
        ensure(json == NULL || json_is_null(json));
    }

    switch (cmd->type) {

    case NGX_HTTP_REALTIME_CMD_JOIN:
    case NGX_HTTP_REALTIME_CMD_LEAVE:
    case NGX_HTTP_REALTIME_CMD_PRESENCE:
    case NGX_HTTP_REALTIME_CMD_PUBLISH:
        fuzz_string(cmd->room, cmd->room_len, 1, NGX_HTTP_REALTIME_ROOM_MAX);
        ensure(ngx_http_realtime_room_valid(cmd->room, cmd->room_len));
        ensure(fuzz_room_valid(cmd->room, cmd->room_len));
        break;

    default:
        ensure(cmd->room == NULL && cmd->room_len == 0);
    }

    if (cmd->type == NGX_HTTP_REALTIME_CMD_PUBLISH) {
        ensure(json_is_object(cmd->data));
        fuzz_string(cmd->publish_event, cmd->publish_event_len, 1,
                    NGX_HTTP_REALTIME_EVENT_MAX);
        ensure(cmd->publish_data == json_object_get(cmd->data, "data"));

        echo = json_object_get(cmd->data, "echo");
        ensure(echo == NULL || json_is_boolean(echo));
        ensure(cmd->echo == (echo != NULL && json_is_true(echo)));

        fuzz_dump(ngx_http_realtime_event_relay(cmd->publish_event,
                                                cmd->publish_event_len,
                                                cmd->room, cmd->room_len,
                                                "fuzz", 4,
                                                cmd->publish_data));

    } else {
        ensure(cmd->publish_event == NULL && cmd->publish_event_len == 0);
        ensure(cmd->publish_data == NULL && cmd->echo == 0);
    }

    if (cmd->type == NGX_HTTP_REALTIME_CMD_REFRESH) {
        ensure(json_is_object(cmd->data));
        fuzz_string(cmd->token, cmd->token_len, 1, (size_t) -1);

    } else {
        ensure(cmd->token == NULL && cmd->token_len == 0);
    }

    /* the reply a ping gets, and an error quoting the event */

    id = cmd->has_id ? cmd->id : -1;
    refcount = cmd->data ? cmd->data->refcount : 0;

    fuzz_dump(ngx_http_realtime_event("pong", cmd->data, id));
    fuzz_dump(ngx_http_realtime_event(cmd->event, cmd->data, id));
    fuzz_dump(ngx_http_realtime_event_error("INVALID_EVENT", cmd->event, id));

    /* the borrowed data is left as it was */

    ensure(cmd->data == NULL || cmd->data->refcount == refcount);

    ngx_http_realtime_cmd_free(cmd);
    ensure(cmd->root == NULL);
}


/*
 * A string jansson takes (UTF-8) quoted without it: the bytes of its
 * dump, in exactly the size said; the welcome around it too.
 */

static void
fuzz_quote(const char *p, size_t len)
{
    char                         *buf, *end;
    size_t                        n;
    json_t                       *json, *data, *event;
    ngx_http_realtime_welcome_t   w;

    json = json_stringn(p, len);
    if (json == NULL) {
        return;
    }

    n = ngx_http_realtime_json_quoted_len(p, len);
    buf = malloc(n);
    ensure(buf != NULL);
    end = ngx_http_realtime_json_quote(buf, p, len);
    ensure((size_t) (end - buf) == n);
    ensure(json_dumpb(json, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) == n);
    free(buf);
    buf = malloc(n);
    ensure(buf != NULL);
    ensure(json_dumpb(json, buf, n, JSON_COMPACT | JSON_ENCODE_ANY) == n);
    end = malloc(n);
    ensure(end != NULL);
    (void) ngx_http_realtime_json_quote(end, p, len);
    ensure(memcmp(buf, end, n) == 0);
    free(end);
    free(buf);
    json_decref(json);

    w.user = p;
    w.user_len = len;
    w.id = "42";
    w.id_len = 2;
    w.pid = 1;
    w.ts = (len & 1) ? p : NULL;
    w.ts_len = (len & 1) ? len : 0;

    data = json_pack("{s:s%, s:s, s:I}", "userId", p, len,
                     "connectionId", "42", "pid", (json_int_t) 1);
    ensure(data != NULL);
    event = ngx_http_realtime_event("welcome", data, -1);
    ensure(event != NULL);
    json_decref(data);

    if (w.ts) {
        ensure(json_object_set_new(event, "timestamp",
                                   json_stringn(p, len)) == 0);
    }

    n = ngx_http_realtime_welcome_len(&w);
    ensure(ngx_http_realtime_json_dump(event, NULL, 0) == n);
    buf = malloc(n);
    ensure(buf != NULL);
    ensure(ngx_http_realtime_json_dump(event, buf, n) == n);
    end = malloc(n);
    ensure(end != NULL);
    ensure(ngx_http_realtime_welcome(end, &w) == end + n);
    ensure(memcmp(buf, end, n) == 0);
    free(end);
    free(buf);
    json_decref(event);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_http_realtime_cmd_t        cmd;
    ngx_http_realtime_cmd_error_t  err;

    ensure(ngx_http_realtime_room_valid((const char *) data, size)
           == fuzz_room_valid((const char *) data, size));

    fuzz_quote((const char *) data, size);

    memset(&err, 0, sizeof(err));

    if (ngx_http_realtime_cmd_parse(&cmd, (const char *) data, size, &err)
        != 0)
    {
        fuzz_error(&cmd, &err);
        return 0;
    }

    fuzz_cmd(&cmd);

    return 0;
}
