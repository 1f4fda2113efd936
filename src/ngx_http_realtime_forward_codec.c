
/*
 * Copyright (C) ngx-realtime developers
 */


#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ngx_http_realtime_forward_codec.h"


#define NGX_HTTP_REALTIME_FORWARD_BAD  "BACKEND_BAD_REPLY"

#define ngx_http_realtime_forward_field(reply, off)                          \
    ((json_t **) ((char *) (reply) + (off)))


/* what the entries of an array field are */
#define NGX_HTTP_REALTIME_FORWARD_ROOM     0x01  /* a room name */
#define NGX_HTTP_REALTIME_FORWARD_EVENT    0x02  /* {"event", "data"?} */
#define NGX_HTTP_REALTIME_FORWARD_IN_ROOM  0x04  /* "room", "except_self"? */
#define NGX_HTTP_REALTIME_FORWARD_TO_USER  0x08  /* "user" */


typedef struct {
    const char  *name;
    size_t       offset;
    unsigned     fields;
} ngx_http_realtime_forward_array_t;


static int ngx_http_realtime_forward_error(ngx_http_realtime_cmd_error_t *err,
    const char *fmt, ...);
static int ngx_http_realtime_forward_array(
    ngx_http_realtime_forward_reply_t *reply,
    const ngx_http_realtime_forward_array_t *a,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_forward_entry(json_t *entry, const char *where,
    unsigned fields, ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_forward_room(json_t *json);
static int ngx_http_realtime_forward_string(json_t *json, size_t max);
static int ngx_http_realtime_forward_error_field(
    ngx_http_realtime_forward_reply_t *reply, json_t *v,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_forward_disconnect(
    ngx_http_realtime_forward_reply_t *reply, json_t *v,
    ngx_http_realtime_cmd_error_t *err);
static int ngx_http_realtime_route_next(const char **pos, const char *end,
    const char **text, size_t *len);
static json_t *ngx_http_realtime_route_lookup(json_t *data, const char *name,
    size_t len);


static const ngx_http_realtime_forward_array_t
    ngx_http_realtime_forward_arrays[] =
{
    { "leave", offsetof(ngx_http_realtime_forward_reply_t, leave),
      NGX_HTTP_REALTIME_FORWARD_ROOM },
    { "join", offsetof(ngx_http_realtime_forward_reply_t, join),
      NGX_HTTP_REALTIME_FORWARD_ROOM },
    { "emit", offsetof(ngx_http_realtime_forward_reply_t, emit),
      NGX_HTTP_REALTIME_FORWARD_EVENT },
    { "publish", offsetof(ngx_http_realtime_forward_reply_t, publish),
      NGX_HTTP_REALTIME_FORWARD_EVENT|NGX_HTTP_REALTIME_FORWARD_IN_ROOM },
    { "to_user", offsetof(ngx_http_realtime_forward_reply_t, to_user),
      NGX_HTTP_REALTIME_FORWARD_EVENT|NGX_HTTP_REALTIME_FORWARD_TO_USER },
    { NULL, 0, 0 }
};


json_t *
ngx_http_realtime_forward_request(const char *event, size_t event_len,
    json_t *data, json_int_t id, const char *connection,
    size_t connection_len, const char *user, size_t user_len, json_t *rooms,
    const char *protocol, const char *nsp, size_t nsp_len, json_t *meta)
{
    json_t  *json;

    json = json_object();
    if (json == NULL) {
        return NULL;
    }

    /* jansson keeps the order of insertion: the body reads as documented */

    if (event
        && (json_object_set_new(json, "event",
                                json_stringn(event, event_len)) != 0
            || json_object_set(json, "data", data ? data : json_null()) != 0
            || (id >= 0
                && json_object_set_new(json, "id", json_integer(id)) != 0)))
    {
        goto failed;
    }

    if (json_object_set_new(json, "connection",
                            json_stringn(connection, connection_len)) != 0
        || json_object_set_new(json, "user",
                               user ? json_stringn(user, user_len)
                                    : json_null()) != 0
        || json_object_set_new(json, "rooms",
                               rooms ? json_incref(rooms) : json_array())
           != 0
        || json_object_set_new(json, "protocol", json_string(protocol)) != 0
        || (nsp && json_object_set_new(json, "nsp",
                                       json_stringn(nsp, nsp_len)) != 0)
        || (meta && json_object_set(json, "meta", meta) != 0))
    {
        goto failed;
    }

    return json;

failed:

    json_decref(json);

    return NULL;
}


int
ngx_http_realtime_forward_reply_parse(ngx_http_realtime_forward_reply_t *reply,
    const char *buf, size_t len, ngx_http_realtime_cmd_error_t *err)
{
    char                                     *p;
    size_t                                    i;
    json_t                                   *root, *v;
    json_error_t                              error;
    const ngx_http_realtime_forward_array_t  *a;

    memset(reply, 0, sizeof(ngx_http_realtime_forward_reply_t));

    /* a backend with nothing to say may answer 200 or 204 with no body */

    for (i = 0; i < len && memchr(" \t\r\n", buf[i], 4) != NULL; i++) {
        /* void */
    }

    if (i == len) {
        return 0;
    }

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES|JSON_DECODE_ANY,
                      &error);

    if (root == NULL) {
        ngx_http_realtime_forward_error(err,
                                  "invalid JSON at line %d, column %d: %.160s",
                                  error.line, error.column, error.text);

        /*
         * jansson quotes the input near the error, cut anywhere and with
         * control characters as they are: the message goes to logs and
         * to clients, it must be printable ASCII
         */

        for (p = err->message; *p; p++) {
            if ((unsigned char) *p >= 0x7f || (unsigned char) *p < 0x20) {
                *p = '?';
            }
        }

        return -1;
    }

    reply->root = root;

    if (!json_is_object(root)) {
        ngx_http_realtime_forward_error(err,
                                        "a reply must be a JSON object");
        goto failed;
    }

    for (a = ngx_http_realtime_forward_arrays; a->name; a++) {
        if (ngx_http_realtime_forward_array(reply, a, err) != 0) {
            goto failed;
        }
    }

    v = json_object_get(root, "ack");

    if (v) {
        reply->has_ack = 1;
        reply->ack = v;
    }

    v = json_object_get(root, "error");

    if (v && ngx_http_realtime_forward_error_field(reply, v, err) != 0) {
        goto failed;
    }

    v = json_object_get(root, "meta");

    if (v && !json_is_object(v)) {
        ngx_http_realtime_forward_error(err, "\"meta\" must be an object");
        goto failed;
    }

    reply->meta = v;

    v = json_object_get(root, "user");

    if (v) {
        if (!ngx_http_realtime_forward_string(v,
                                          NGX_HTTP_REALTIME_FORWARD_USER_MAX))
        {
            ngx_http_realtime_forward_error(err,
                              "\"user\" must be a string of 1-256 bytes");
            goto failed;
        }

        reply->user = json_string_value(v);
        reply->user_len = json_string_length(v);
    }

    v = json_object_get(root, "disconnect");

    if (v && ngx_http_realtime_forward_disconnect(reply, v, err) != 0) {
        goto failed;
    }

    return 0;

failed:

    ngx_http_realtime_forward_reply_free(reply);

    return -1;
}


void
ngx_http_realtime_forward_reply_free(ngx_http_realtime_forward_reply_t *reply)
{
    if (reply->root) {
        json_decref(reply->root);
    }

    memset(reply, 0, sizeof(ngx_http_realtime_forward_reply_t));
}


static int
ngx_http_realtime_forward_error(ngx_http_realtime_cmd_error_t *err,
    const char *fmt, ...)
{
    va_list  args;

    err->code = NGX_HTTP_REALTIME_FORWARD_BAD;

    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);

    return -1;
}


/*
 * A single value is checked as it is and then replaced in root by an
 * array of it: the caller sees arrays only and root still owns all.
 */

static int
ngx_http_realtime_forward_array(ngx_http_realtime_forward_reply_t *reply,
    const ngx_http_realtime_forward_array_t *a,
    ngx_http_realtime_cmd_error_t *err)
{
    int      single;
    char     where[32];
    size_t   i;
    json_t  *v, *entry, *array;

    v = json_object_get(reply->root, a->name);

    if (v == NULL) {
        return 0;
    }

    single = (a->fields & NGX_HTTP_REALTIME_FORWARD_ROOM) ? json_is_string(v)
                                                          : json_is_object(v);

    if (single) {
        if (ngx_http_realtime_forward_entry(v, a->name, a->fields, err) != 0)
        {
            return -1;
        }

        array = json_array();

        if (array && json_array_append(array, v) != 0) {
            json_decref(array);
            array = NULL;
        }

        /* set_new() takes array over, whether it fails or not */

        if (array == NULL
            || json_object_set_new(reply->root, a->name, array) != 0)
        {
            return ngx_http_realtime_forward_error(err,
                                  "no memory for \"%s\"", a->name);
        }

        *ngx_http_realtime_forward_field(reply, a->offset) = array;

        return 0;
    }

    if (!json_is_array(v)) {
        return ngx_http_realtime_forward_error(err,
                                  "\"%s\" must be %s or an array of them",
                                  a->name,
                                  (a->fields & NGX_HTTP_REALTIME_FORWARD_ROOM)
                                  ? "a room name" : "an object");
    }

    if (json_array_size(v) > NGX_HTTP_REALTIME_FORWARD_ENTRIES_MAX) {
        return ngx_http_realtime_forward_error(err,
                                  "\"%s\" has more than %d entries",
                                  a->name,
                                  NGX_HTTP_REALTIME_FORWARD_ENTRIES_MAX);
    }

    json_array_foreach(v, i, entry) {
        snprintf(where, sizeof(where), "%s[%u]", a->name, (unsigned) i);

        if (ngx_http_realtime_forward_entry(entry, where, a->fields, err)
            != 0)
        {
            return -1;
        }
    }

    *ngx_http_realtime_forward_field(reply, a->offset) = v;

    return 0;
}


static int
ngx_http_realtime_forward_entry(json_t *entry, const char *where,
    unsigned fields, ngx_http_realtime_cmd_error_t *err)
{
    json_t  *v;

    if (fields & NGX_HTTP_REALTIME_FORWARD_ROOM) {
        if (!ngx_http_realtime_forward_room(entry)) {
            return ngx_http_realtime_forward_error(err,
                           "\"%s\" must be a room name: 1-128 bytes of "
                           "letters, digits and _-:.@/#", where);
        }

        return 0;
    }

    if (!json_is_object(entry)) {
        return ngx_http_realtime_forward_error(err,
                                  "\"%s\" must be an object", where);
    }

    if (fields & NGX_HTTP_REALTIME_FORWARD_IN_ROOM) {
        if (!ngx_http_realtime_forward_room(json_object_get(entry, "room")))
        {
            return ngx_http_realtime_forward_error(err,
                           "\"%s.room\" must be a room name: 1-128 bytes "
                           "of letters, digits and _-:.@/#", where);
        }

        v = json_object_get(entry, "except_self");

        if (v && !json_is_boolean(v)) {
            return ngx_http_realtime_forward_error(err,
                                  "\"%s.except_self\" must be a boolean",
                                  where);
        }
    }

    if ((fields & NGX_HTTP_REALTIME_FORWARD_TO_USER)
        && !ngx_http_realtime_forward_string(json_object_get(entry, "user"),
                                        NGX_HTTP_REALTIME_FORWARD_USER_MAX))
    {
        return ngx_http_realtime_forward_error(err,
                           "\"%s.user\" must be a string of 1-256 bytes",
                           where);
    }

    /* "data" is anything, or absent */

    if (!ngx_http_realtime_forward_string(json_object_get(entry, "event"),
                                          NGX_HTTP_REALTIME_EVENT_MAX))
    {
        return ngx_http_realtime_forward_error(err,
                           "\"%s.event\" must be a string of 1-128 bytes",
                           where);
    }

    return 0;
}


static int
ngx_http_realtime_forward_room(json_t *json)
{
    return json_is_string(json)
           && ngx_http_realtime_room_valid(json_string_value(json),
                                           json_string_length(json));
}


/* a string of 1..max bytes; NULL is not one */

static int
ngx_http_realtime_forward_string(json_t *json, size_t max)
{
    return json_is_string(json) && json_string_length(json) > 0
           && json_string_length(json) <= max;
}


static int
ngx_http_realtime_forward_error_field(ngx_http_realtime_forward_reply_t *reply,
    json_t *v, ngx_http_realtime_cmd_error_t *err)
{
    json_t      *code, *message;
    const char  *p;

    if (json_is_string(v)) {
        code = v;
        message = NULL;

    } else if (json_is_object(v)) {
        code = json_object_get(v, "code");
        message = json_object_get(v, "message");

        if (message && !json_is_string(message)) {
            return ngx_http_realtime_forward_error(err,
                                  "\"error.message\" must be a string");
        }

    } else {
        return ngx_http_realtime_forward_error(err,
                                  "\"error\" must be an object or a code");
    }

    /* the code goes out as it is, in close reasons and logs too */

    if (!ngx_http_realtime_forward_string(code,
                                          NGX_HTTP_REALTIME_FORWARD_CODE_MAX))
    {
        goto invalid;
    }

    p = json_string_value(code);

    if (strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
        != json_string_length(code))
    {
        goto invalid;
    }

    reply->error_code = p;
    reply->error_message = message ? json_string_value(message) : "error";

    return 0;

invalid:

    return ngx_http_realtime_forward_error(err,
                           "\"%s\" must be 1-64 bytes of A-Z, 0-9 and _",
                           (code == v) ? "error" : "error.code");
}


static int
ngx_http_realtime_forward_disconnect(ngx_http_realtime_forward_reply_t *reply,
    json_t *v, ngx_http_realtime_cmd_error_t *err)
{
    json_t      *code, *reason;
    json_int_t   n;

    if (json_is_false(v)) {
        return 0;
    }

    if (!json_is_true(v) && !json_is_object(v)) {
        return ngx_http_realtime_forward_error(err,
                                  "\"disconnect\" must be true or an object");
    }

    reply->disconnect = 1;
    reply->disconnect_code = NGX_HTTP_REALTIME_FORWARD_CLOSE_DEFAULT;

    if (json_is_true(v)) {
        return 0;
    }

    /* 1000 or the application range: 1001-3999 mean what they say */

    code = json_object_get(v, "code");

    if (code) {
        n = json_is_integer(code) ? json_integer_value(code) : 0;

        if (n != 1000 && (n < 4000 || n > 4999)) {
            return ngx_http_realtime_forward_error(err,
                           "\"disconnect.code\" must be 1000 or 4000-4999");
        }

        reply->disconnect_code = (int) n;
    }

    reason = json_object_get(v, "reason");

    if (reason) {
        if (!json_is_string(reason)
            || json_string_length(reason)
               > NGX_HTTP_REALTIME_FORWARD_REASON_MAX)
        {
            return ngx_http_realtime_forward_error(err,
                           "\"disconnect.reason\" must be a string of at "
                           "most 123 bytes");
        }

        reply->disconnect_reason = json_string_value(reason);
    }

    return 0;
}


int
ngx_http_realtime_route_expand(const char *tpl, size_t tpl_len,
    json_t *data, const char *user, size_t user_len, char *buf, size_t size,
    const char **missing, size_t *missing_len)
{
    int          rc, overflow;
    char         num[32];
    size_t       len, vlen;
    json_t      *value;
    const char  *p, *end, *v;

    if (size > INT_MAX) {
        size = INT_MAX;
    }

    p = tpl;
    end = tpl + tpl_len;
    len = 0;
    overflow = 0;

    /*
     * Past the end of buf the scan goes on without writing: a missing
     * field is reported whatever the size
     */

    while (p < end) {
        rc = ngx_http_realtime_route_next(&p, end, &v, &vlen);

        if (rc == -1) {
            goto missing;
        }

        if (rc == 1 && vlen == 4 && memcmp(v, "user", 4) == 0) {
            if (user == NULL) {
                goto missing;
            }

            v = user;
            vlen = user_len;

        } else if (rc == 1) {
            value = ngx_http_realtime_route_lookup(data, v, vlen);

            if (json_is_string(value)) {
                v = json_string_value(value);
                vlen = json_string_length(value);

            } else if (json_is_integer(value)) {
                vlen = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                                json_integer_value(value));
                v = num;

            } else {
                goto missing;
            }
        }

        if (overflow || vlen > size - len) {
            overflow = 1;
            continue;
        }

        memcpy(buf + len, v, vlen);
        len += vlen;
    }

    return overflow ? -2 : (int) len;

missing:

    *missing = v;
    *missing_len = vlen;

    return -1;
}


int
ngx_http_realtime_route_check(const char *tpl, size_t tpl_len)
{
    size_t       len;
    const char  *p, *end, *text;

    p = tpl;
    end = tpl + tpl_len;

    while (p < end) {
        if (ngx_http_realtime_route_next(&p, end, &text, &len) == -1) {
            return -1;
        }
    }

    return (tpl_len == 0) ? -1 : 0;
}


/*
 * The piece of a template at *pos, which it moves past: 0 for text to
 * copy (a run without "{", or the "{" of "{{"), 1 for a field, whose
 * name *text, *len is [A-Za-z0-9_.-]+ with no empty part between dots.
 * -1 for a "{" that opens no such name; *text, *len is what follows it
 * up to "}" then.
 */

static int
ngx_http_realtime_route_next(const char **pos, const char *end,
    const char **text, size_t *len)
{
    size_t         i, n;
    unsigned char  c, prev;
    const char    *p, *q;

    p = *pos;

    if (*p != '{' || (p + 1 < end && p[1] == '{')) {
        q = (*p == '{') ? p + 1 : memchr(p, '{', end - p);

        *text = p;
        *len = (q ? q : end) - p;
        *pos = (*p == '{') ? p + 2 : p + *len;

        return 0;
    }

    p++;
    q = memchr(p, '}', end - p);
    n = (q ? q : end) - p;

    *text = p;
    *len = n;
    *pos = q ? q + 1 : end;

    if (q == NULL) {
        return -1;
    }

    prev = '.';

    for (i = 0; i < n; i++) {
        c = (unsigned char) p[i];

        if ((c == '.') ? (prev == '.')
                       : !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                           || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            return -1;
        }

        prev = c;
    }

    /* also an empty name */

    return (prev == '.') ? -1 : 1;
}


static json_t *
ngx_http_realtime_route_lookup(json_t *data, const char *name, size_t len)
{
    const char  *p, *end, *dot;

    p = name;
    end = name + len;

    for ( ;; ) {
        if (!json_is_object(data)) {
            return NULL;
        }

        dot = memchr(p, '.', end - p);
        data = json_object_getn(data, p, (dot ? dot : end) - p);

        if (dot == NULL) {
            return data;
        }

        p = dot + 1;
    }
}
