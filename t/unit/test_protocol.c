
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the JSON envelope: every command, every error path
 * with its code, room names, and the exact serialized form of every
 * outgoing event.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_realtime_protocol.h"

#define UNIT_WHERE_SIZE  96
#include "unit.h"


/* a string of n copies of c, n < sizeof(buf) */

static const char *
repeat(char *buf, int c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';

    return buf;
}


/* the bytes p/len are exactly the C string s */

static int
str_is(const char *p, size_t len, const char *s)
{
    return p != NULL && len == strlen(s) && memcmp(p, s, len) == 0
           && p[len] == '\0';
}


/* parsing */

static ngx_http_realtime_cmd_t        cmd;
static ngx_http_realtime_cmd_error_t  err;


#define PARSE_OK(json, type)      parse_ok(__LINE__, json, strlen(json), type)
#define PARSE_ERR(json, code)     parse_err(__LINE__, json, strlen(json), code)


/*
 * Parses a copy of buf/len in a buffer of exactly len bytes, so that
 * the sanitizers see any read past the end.
 */

static int
parse(const char *buf, size_t len)
{
    int    rc;
    char  *copy;

    snprintf(test_where, sizeof(test_where), "%.*s",
             (int) (len < 80 ? len : 80), buf);

    copy = xmalloc(len);
    memcpy(copy, buf, len);

    memset(&cmd, 0xa5, sizeof(cmd));
    err.code = NULL;
    memset(err.message, 'x', sizeof(err.message));

    rc = ngx_http_realtime_cmd_parse(&cmd, copy, len, &err);

    free(copy);

    return rc;
}


/* leaves cmd for the caller to look at and free */

static int
parse_ok(int line, const char *buf, size_t len, int type)
{
    int  rc;

    rc = parse(buf, len);

    CHECK_AT(line, rc == 0);

    if (rc != 0) {
        printf("      error %s: %s\n", err.code ? err.code : "(null)",
               err.code ? err.message : "");
        return 0;
    }

    CHECK_AT(line, cmd.root != NULL);
    CHECK_AT(line, json_is_object(cmd.root));
    CHECK_AT(line, cmd.type == type);
    CHECK_AT(line, cmd.event != NULL);
    CHECK_AT(line, cmd.event_len >= 1 && cmd.event_len <= 128);
    CHECK_AT(line, cmd.event != NULL && strlen(cmd.event) == cmd.event_len);

    return 1;
}


static void
parse_err(int line, const char *buf, size_t len, const char *code)
{
    int      rc;
    json_t  *json;

    rc = parse(buf, len);

    CHECK_AT(line, rc == -1);

    if (rc != -1) {
        ngx_http_realtime_cmd_free(&cmd);
        err.message[0] = '\0';
        return;
    }

    CHECK_AT(line, cmd.root == NULL);
    CHECK_AT(line, err.code != NULL && strcmp(err.code, code) == 0);
    CHECK_AT(line, memchr(err.message, '\0', sizeof(err.message)) != NULL);

    /* later checks may read it as a string */
    err.message[sizeof(err.message) - 1] = '\0';

    /* every error can be sent back */

    json = ngx_http_realtime_event_error(err.code ? err.code : "",
                                         err.message, -1);
    CHECK_AT(line, json != NULL);

    if (json) {
        json_decref(json);
    }

    if (err.code == NULL || strcmp(err.code, code) != 0) {
        printf("      got %s: %.*s\n", err.code ? err.code : "(null)",
               (int) sizeof(err.message) - 1, err.message);
    }

    /* freeing after an error is harmless */
    ngx_http_realtime_cmd_free(&cmd);
    CHECK_AT(line, cmd.root == NULL);
}


/* serializing */

#define CHECK_JSON(json, expect)  check_json(__LINE__, json, expect)


static const char *
dump(json_t *json)
{
    size_t       n;
    static char  buf[2048];

    if (json == NULL) {
        return "(NULL json)";
    }

    n = ngx_http_realtime_json_dump(json, NULL, 0);

    if (n == 0 || n >= sizeof(buf)) {
        return "(dump failed)";
    }

    if (ngx_http_realtime_json_dump(json, buf, n) != n) {
        return "(second dump differs)";
    }

    buf[n] = '\0';

    return buf;
}


/* compares the dump of json, a new reference it takes, to expect */

static void
check_json(int line, json_t *json, const char *expect)
{
    const char  *got;

    got = dump(json);

    CHECK_AT(line, strcmp(got, expect) == 0);

    if (strcmp(got, expect) != 0) {
        printf("      got      %s\n      expected %s\n", got, expect);
    }

    if (json) {
        json_decref(json);
    }
}


/* tests */

static const char  *room_cmds[] = { "join", "leave", "presence" };
static const int    room_types[] = {
    NGX_HTTP_REALTIME_CMD_JOIN,
    NGX_HTTP_REALTIME_CMD_LEAVE,
    NGX_HTTP_REALTIME_CMD_PRESENCE
};


static void
test_room_commands(void)
{
    int          t;
    size_t       i;
    char         in[512], name[200];
    const char  *ev;

    static const char  *bad_data[] = {
        "",                             /* no data */
        ",\"data\":null",
        ",\"data\":5",
        ",\"data\":1.5",
        ",\"data\":true",
        ",\"data\":false",
        ",\"data\":[]",
        ",\"data\":[\"lobby\"]",
        ",\"data\":{}",
        ",\"data\":{\"name\":\"lobby\"}",
        ",\"data\":{\"room\":5}",
        ",\"data\":{\"room\":null}",
        ",\"data\":{\"room\":true}",
        ",\"data\":{\"room\":{}}",
        ",\"data\":{\"room\":[\"lobby\"]}",
        ",\"data\":{\"room\":{\"room\":\"lobby\"}}",
        ",\"data\":\"\"",
        ",\"data\":{\"room\":\"\"}",
        ",\"data\":\"a b\"",
        ",\"data\":\" lobby\"",
        ",\"data\":\"lobby \"",
        ",\"data\":{\"room\":\"a b\"}",
        ",\"data\":\"a\\\"b\"",
        ",\"data\":\"a'b\"",
        ",\"data\":\"a\\\\b\"",
        ",\"data\":\"a\\nb\"",
        ",\"data\":\"a\\tb\"",
        ",\"data\":\"caf\\u00e9\"",
        ",\"data\":\"caf\xc3\xa9\"",
        ",\"data\":\"\xe2\x82\xac\"",
        ",\"data\":\"\\ud83d\\ude00\"",
        ",\"data\":\"a+b\"",
        ",\"data\":\"a*\"",
        ",\"data\":\"a,b\"",
        ",\"data\":\"a%20b\"",
        ",\"data\":\"a\\u007fb\"",
        NULL
    };

    for (t = 0; t < 3; t++) {
        ev = room_cmds[t];

        test_begin(ev);

        snprintf(in, sizeof(in),
                 "{\"event\":\"%s\",\"data\":{\"room\":\"lobby\"}}", ev);

        if (PARSE_OK(in, room_types[t])) {
            CHECK(str_is(cmd.event, cmd.event_len, ev));
            CHECK(str_is(cmd.room, cmd.room_len, "lobby"));
            CHECK(json_is_object(cmd.data));
            CHECK(cmd.has_id == 0);
            CHECK(cmd.publish_event == NULL && cmd.publish_data == NULL);
            CHECK(cmd.token == NULL && cmd.echo == 0);
            ngx_http_realtime_cmd_free(&cmd);
            CHECK(cmd.root == NULL);
        }

        /* the string shorthand */

        snprintf(in, sizeof(in), "{\"event\":\"%s\",\"data\":\"lobby\"}", ev);

        if (PARSE_OK(in, room_types[t])) {
            CHECK(str_is(cmd.room, cmd.room_len, "lobby"));
            CHECK(json_is_string(cmd.data));
            ngx_http_realtime_cmd_free(&cmd);
        }

        /* member order, extra members, an id and whitespace */

        snprintf(in, sizeof(in),
                 " {\n \"data\" : { \"x\" : [1, {}], \"room\" : "
                 "\"chat:room-1/a.b@c#d_e\" } ,\r\n\t\"id\" : 12 ,"
                 " \"extra\": null, \"event\" : \"%s\" } \n", ev);

        if (PARSE_OK(in, room_types[t])) {
            CHECK(str_is(cmd.room, cmd.room_len, "chat:room-1/a.b@c#d_e"));
            CHECK(cmd.has_id == 1 && cmd.id == 12);
            ngx_http_realtime_cmd_free(&cmd);
        }

        /* escapes decode before the room check */

        snprintf(in, sizeof(in),
                 "{\"event\":\"%s\",\"data\":\"\\u0061\\/b\"}", ev);

        if (PARSE_OK(in, room_types[t])) {
            CHECK(str_is(cmd.room, cmd.room_len, "a/b"));
            ngx_http_realtime_cmd_free(&cmd);
        }

        /* the longest room, and one more */

        snprintf(in, sizeof(in), "{\"event\":\"%s\",\"data\":\"%s\"}", ev,
                 repeat(name, 'r', 128));

        if (PARSE_OK(in, room_types[t])) {
            CHECK(cmd.room_len == 128);
            ngx_http_realtime_cmd_free(&cmd);
        }

        snprintf(in, sizeof(in),
                 "{\"event\":\"%s\",\"data\":{\"room\":\"%s\"}}",
                 ev, repeat(name, 'r', 129));
        PARSE_ERR(in, "BAD_REQUEST");

        snprintf(in, sizeof(in), "{\"event\":\"%s\",\"data\":\"%s\"}",
                 ev, repeat(name, 'r', 129));
        PARSE_ERR(in, "BAD_REQUEST");

        for (i = 0; bad_data[i]; i++) {
            snprintf(in, sizeof(in), "{\"event\":\"%s\"%s}", ev, bad_data[i]);
            PARSE_ERR(in, "BAD_REQUEST");
        }

        /* jansson refuses NUL in strings before the room check */

        snprintf(in, sizeof(in), "{\"event\":\"%s\",\"data\":\"a\\u0000b\"}",
                 ev);
        PARSE_ERR(in, "INVALID_JSON");

        test_end();
    }

    test_begin("room error messages");

    PARSE_ERR("{\"event\":\"join\",\"data\":5}", "BAD_REQUEST");
    CHECK(strcmp(err.message, "\"data.room\" must be a string") == 0);

    PARSE_ERR("{\"event\":\"join\",\"data\":\"a b\"}", "BAD_REQUEST");
    CHECK(strcmp(err.message, "a room name is 1-128 bytes of letters, "
                              "digits and _-:.@/#") == 0);

    test_end();
}


static void
test_publish(void)
{
    size_t       i;
    char         in[512], name[200];

    static const char  *bad[] = {
        "{\"event\":\"publish\"}",
        "{\"event\":\"publish\",\"data\":null}",
        "{\"event\":\"publish\",\"data\":\"lobby\"}",
        "{\"event\":\"publish\",\"data\":5}",
        "{\"event\":\"publish\",\"data\":[\"lobby\",\"msg\",{}]}",
        "{\"event\":\"publish\",\"data\":{}}",
        "{\"event\":\"publish\",\"data\":{\"event\":\"m\",\"data\":{}}}",
        "{\"event\":\"publish\",\"data\":{\"room\":5,\"event\":\"m\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"\",\"event\":\"m\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"a b\",\"event\":\"m\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":{\"room\":\"r\"},"
            "\"event\":\"m\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"data\":{}}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":5}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":null}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":true}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":[\"m\"]}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":{}}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":\"true\"}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":1}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":0}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":null}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":[]}}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"echo\":{}}}",
        NULL
    };

    test_begin("publish");

    if (PARSE_OK("{\"event\":\"publish\",\"id\":3,\"data\":{\"room\":\"lobby\","
                 "\"event\":\"chat\",\"data\":{\"text\":\"hi\",\"n\":[1,2]},"
                 "\"echo\":true}}", NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(str_is(cmd.event, cmd.event_len, "publish"));
        CHECK(str_is(cmd.room, cmd.room_len, "lobby"));
        CHECK(str_is(cmd.publish_event, cmd.publish_event_len, "chat"));
        CHECK(cmd.echo == 1);
        CHECK(cmd.has_id == 1 && cmd.id == 3);
        CHECK(cmd.token == NULL);
        CHECK(json_is_object(cmd.data));
        CHECK(json_is_object(cmd.publish_data));
        CHECK(strcmp(dump(cmd.publish_data), "{\"text\":\"hi\",\"n\":[1,2]}")
              == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* no echo, echo false */

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"r\","
                 "\"event\":\"m\",\"data\":1}}",
                 NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(cmd.echo == 0);
        CHECK(json_is_integer(cmd.publish_data)
              && json_integer_value(cmd.publish_data) == 1);
        CHECK(cmd.has_id == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"echo\":false,"
                 "\"room\":\"r\",\"event\":\"m\",\"data\":\"s\"}}",
                 NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(cmd.echo == 0);
        CHECK(json_is_string(cmd.publish_data));
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* inner data absent is NULL, inner null is JSON null */

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"r\","
                 "\"event\":\"m\"}}", NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(cmd.publish_data == NULL);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"r\","
                 "\"event\":\"m\",\"data\":null}}",
                 NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(json_is_null(cmd.publish_data));
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* the inner event: 128 bytes, any characters */

    snprintf(in, sizeof(in), "{\"event\":\"publish\",\"data\":{\"room\":\"r\","
             "\"event\":\"%s\"}}", repeat(name, 'e', 128));

    if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_PUBLISH)) {
        CHECK(cmd.publish_event_len == 128);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"r\","
                 "\"event\":\"a b \\\"\xc3\xa9\"}}",
                 NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK(str_is(cmd.publish_event, cmd.publish_event_len,
                     "a b \"\xc3\xa9"));
        ngx_http_realtime_cmd_free(&cmd);
    }

    snprintf(in, sizeof(in), "{\"event\":\"publish\",\"data\":{\"room\":\"r\","
             "\"event\":\"%s\"}}", repeat(name, 'e', 129));
    PARSE_ERR(in, "BAD_REQUEST");

    for (i = 0; bad[i]; i++) {
        PARSE_ERR(bad[i], "BAD_REQUEST");
    }

    PARSE_ERR(bad[0], "BAD_REQUEST");
    CHECK(strcmp(err.message, "publish needs \"data\": {\"room\", \"event\", "
                              "\"data\"}") == 0);

    PARSE_ERR(bad[13], "BAD_REQUEST");
    CHECK(strcmp(err.message,
                 "\"data.event\" must be a string of 1-128 bytes") == 0);

    PARSE_ERR(bad[19], "BAD_REQUEST");
    CHECK(strcmp(err.message, "\"data.echo\" must be a boolean") == 0);

    test_end();
}


static void
test_ping(void)
{
    test_begin("ping");

    if (PARSE_OK("{\"event\":\"ping\"}", NGX_HTTP_REALTIME_CMD_PING)) {
        CHECK(str_is(cmd.event, cmd.event_len, "ping"));
        CHECK(cmd.data == NULL);
        CHECK(cmd.has_id == 0);
        CHECK(cmd.room == NULL && cmd.room_len == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"ping\",\"data\":{\"t\":1},\"id\":9}",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        CHECK(json_is_object(cmd.data));
        CHECK(strcmp(dump(cmd.data), "{\"t\":1}") == 0);
        CHECK(cmd.has_id == 1 && cmd.id == 9);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"ping\",\"data\":null}",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        CHECK(json_is_null(cmd.data));
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"ping\",\"data\":[1,\"x\",false]}",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        CHECK(json_is_array(cmd.data) && json_array_size(cmd.data) == 3);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"ping\",\"data\":\"x\"}",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        CHECK(json_is_string(cmd.data));
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


static void
test_refresh(void)
{
    size_t  i;

    static const char  *bad[] = {
        "{\"event\":\"refresh\"}",
        "{\"event\":\"refresh\",\"data\":null}",
        "{\"event\":\"refresh\",\"data\":\"eyJ.a.b\"}",
        "{\"event\":\"refresh\",\"data\":[\"eyJ.a.b\"]}",
        "{\"event\":\"refresh\",\"data\":{}}",
        "{\"event\":\"refresh\",\"data\":{\"jwt\":\"eyJ.a.b\"}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":\"\"}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":5}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":null}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":true}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":[\"eyJ.a.b\"]}}",
        "{\"event\":\"refresh\",\"data\":{\"token\":{}}}",
        NULL
    };

    test_begin("refresh");

    if (PARSE_OK("{\"event\":\"refresh\",\"data\":{\"token\":\"eyJ.a.b\"}}",
                 NGX_HTTP_REALTIME_CMD_REFRESH))
    {
        CHECK(str_is(cmd.token, cmd.token_len, "eyJ.a.b"));
        CHECK(cmd.room == NULL && cmd.publish_event == NULL);
        CHECK(cmd.has_id == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"id\":1,\"event\":\"refresh\",\"data\":{\"x\":[],"
                 "\"token\":\"t\"}}", NGX_HTTP_REALTIME_CMD_REFRESH))
    {
        CHECK(str_is(cmd.token, cmd.token_len, "t"));
        CHECK(cmd.has_id == 1 && cmd.id == 1);
        ngx_http_realtime_cmd_free(&cmd);
    }

    for (i = 0; bad[i]; i++) {
        PARSE_ERR(bad[i], "BAD_REQUEST");
        CHECK(strcmp(err.message, "\"data.token\" must be a string") == 0);
    }

    test_end();
}


static void
test_unknown(void)
{
    size_t  i;
    char    in[512], name[200];

    static const char  *names[] = {
        "hello", "JOIN", "Join", "joi", "joinx", "join ", " join", "pong",
        "error", "publis", "publishx", "refreshes", "ping\\t", "j\xc3\xa9",
        "\\u006aoin2", NULL
    };

    test_begin("unknown events");

    for (i = 0; names[i]; i++) {
        snprintf(in, sizeof(in), "{\"event\":\"%s\"}", names[i]);

        if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_UNKNOWN)) {
            CHECK(cmd.data == NULL);
            CHECK(cmd.room == NULL && cmd.publish_event == NULL);
            CHECK(cmd.token == NULL);
            ngx_http_realtime_cmd_free(&cmd);
        }
    }

    /* data of any kind, an id, nothing checked */

    if (PARSE_OK("{\"event\":\"hello\",\"data\":{\"room\":5},\"id\":4}",
                 NGX_HTTP_REALTIME_CMD_UNKNOWN))
    {
        CHECK(str_is(cmd.event, cmd.event_len, "hello"));
        CHECK(json_is_object(cmd.data));
        CHECK(cmd.has_id == 1 && cmd.id == 4);
        CHECK(cmd.room == NULL);
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* an escape spelling a known name is that name */

    if (PARSE_OK("{\"event\":\"\\u0070ing\"}", NGX_HTTP_REALTIME_CMD_PING)) {
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* 128 bytes of event */

    snprintf(in, sizeof(in), "{\"event\":\"%s\"}", repeat(name, 'z', 128));

    if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_UNKNOWN)) {
        CHECK(cmd.event_len == 128);
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* 128 bytes of two-byte characters: 64 of them */

    strcpy(in, "{\"event\":\"");

    for (i = 0; i < 64; i++) {
        strcat(in, "\xc3\xa9");
    }

    strcat(in, "\"}");

    if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_UNKNOWN)) {
        CHECK(cmd.event_len == 128);
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


static void
test_ids(void)
{
    size_t  i;
    char    in[256];

    static const struct {
        const char  *id;
        json_int_t   value;
    } good[] = {
        { "0", 0 },
        { "1", 1 },
        { "42", 42 },
        { "-0", 0 },
        { "4294967296", 4294967296LL },
        { "9007199254740993", 9007199254740993LL },
        { "9223372036854775807", INT64_MAX },
        { NULL, 0 }
    };

    static const char  *bad[] = {
        "-1", "-9223372036854775808", "1.5", "1.0", "0.0", "1e3", "-0.0",
        "\"1\"", "\"\"", "true", "false", "[]", "[1]", "{}", "{\"id\":1}",
        NULL
    };

    test_begin("ids");

    if (PARSE_OK("{\"event\":\"ping\"}", NGX_HTTP_REALTIME_CMD_PING)) {
        CHECK(cmd.has_id == 0 && cmd.id == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* null is absent */

    if (PARSE_OK("{\"event\":\"ping\",\"id\":null}",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        CHECK(cmd.has_id == 0 && cmd.id == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    for (i = 0; good[i].id; i++) {
        snprintf(in, sizeof(in), "{\"event\":\"ping\",\"id\":%s}", good[i].id);

        if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_PING)) {
            CHECK(cmd.has_id == 1 && cmd.id == good[i].value);
            ngx_http_realtime_cmd_free(&cmd);
        }

        /* before the event, and on a command with a room */

        snprintf(in, sizeof(in), "{\"id\":%s,\"event\":\"leave\","
                 "\"data\":\"r\"}", good[i].id);

        if (PARSE_OK(in, NGX_HTTP_REALTIME_CMD_LEAVE)) {
            CHECK(cmd.has_id == 1 && cmd.id == good[i].value);
            ngx_http_realtime_cmd_free(&cmd);
        }
    }

    for (i = 0; bad[i]; i++) {
        snprintf(in, sizeof(in), "{\"event\":\"ping\",\"id\":%s}", bad[i]);
        PARSE_ERR(in, "BAD_REQUEST");
        CHECK(cmd.has_id == 0);
        CHECK(strcmp(err.message, "\"id\" must be a non-negative integer")
              == 0);
    }

    /* the id is checked before the event */

    PARSE_ERR("{\"id\":-1}", "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"\",\"id\":\"x\"}", "BAD_REQUEST");

    /* out of jansson's range is not JSON it accepts */

    PARSE_ERR("{\"event\":\"ping\",\"id\":9223372036854775808}",
              "INVALID_JSON");
    CHECK(cmd.has_id == 0);
    PARSE_ERR("{\"event\":\"ping\",\"id\":-9223372036854775809}",
              "INVALID_JSON");
    PARSE_ERR("{\"event\":\"ping\",\"id\":99999999999999999999999}",
              "INVALID_JSON");

    test_end();
}


/* the message starts "invalid JSON at line L, column C: " */

static int
json_error_at(int line, int column)
{
    char  prefix[64];

    snprintf(prefix, sizeof(prefix), "invalid JSON at line %d, column %d: ",
             line, column);

    if (strncmp(err.message, prefix, strlen(prefix)) != 0) {
        printf("      message \"%s\", expected prefix \"%s\"\n",
               err.message, prefix);
        return 0;
    }

    return strlen(err.message) > strlen(prefix);
}


static void
test_invalid_json(void)
{
    size_t       i, len;
    char         big[600];
    const char  *msg;

    static const struct {
        const char  *in;
        int          line;
        int          column;
    } cases[] = {
        { "", 1, 0 },
        { " ", 1, 1 },
        { "{", 1, 1 },
        { "{\"event\":\"join\"", 1, 15 },
        { "{\"event\":\"jo", 1, 12 },
        { "garbage", 1, 7 },
        { "{\"event\":}", 1, 10 },
        { "{\"event\":\"ping\",}", 1, 17 },
        { "{\"event\":'ping'}", 1, 10 },
        { "{event:\"ping\"}", 1, 6 },
        { "{\n\"event\": x}", 2, 10 },
        { "{\n\n  \"event\":\"ping\"\n  \"id\":1}", 4, 6 },
        { "{\"event\":\"ping\"} x", 1, 18 },
        { "{\"event\":\"ping\"}{}", 1, 17 },
        { NULL, 0, 0 }
    };

    /* valid JSON that is not an object is an envelope error */
    static const char  *scalars[] = { "\"join\"", "5", "null", "true",
                                      "[]", "1.5", NULL };

    static const char  *more[] = {
        "{\"event\":\"\xff\"}",                    /* invalid UTF-8 */
        "{\"event\":\"\xc3\"}",                    /* truncated sequence */
        "{\"event\":\"\xc0\xaf\"}",                /* overlong */
        "{\"event\":\"\xed\xa0\x80\"}",            /* surrogate */
        "{\"event\":\"\\ud800\"}",                 /* lone surrogate */
        "{\"event\":\"\\udc00x\"}",
        "{\"event\":\"a\x01\"}",                   /* control character */
        "{\"event\":\"a\nb\"}",
        "{\"event\":\"a\\u0000b\"}",               /* NUL */
        "{\"event\":\"a\\x\"}",                    /* bad escape */
        "{\"event\":\"a\\u12\"}",
        "{\"event\":\"ping\",\"data\":01}",
        "{\"event\":\"ping\",\"data\":NaN}",
        "{\"event\":\"ping\",\"data\":[1,]}",
        "{\"event\":\"ping\" \"data\":1}",
        "\xef\xbb\xbf{\"event\":\"ping\"}",       /* a BOM */
        "[",
        "]",
        "}",
        NULL
    };

    test_begin("invalid JSON");

    for (i = 0; cases[i].in; i++) {
        PARSE_ERR(cases[i].in, "INVALID_JSON");
        CHECK(json_error_at(cases[i].line, cases[i].column));
        CHECK(cmd.has_id == 0);
    }

    for (i = 0; scalars[i]; i++) {
        PARSE_ERR(scalars[i], "INVALID_EVENT");
        CHECK(strcmp(err.message, "a message must be a JSON object") == 0);
    }

    for (i = 0; more[i]; i++) {
        PARSE_ERR(more[i], "INVALID_JSON");
        CHECK(strncmp(err.message, "invalid JSON at line ", 21) == 0);
    }

    /* every proper prefix of a good message is invalid */

    msg = "{\"id\":5,\"event\":\"publish\",\"data\":{\"room\":\"r\","
          "\"event\":\"m\",\"data\":[1,\"\\u00e9\"]}}";
    len = strlen(msg);

    for (i = 0; i < len; i++) {
        parse_err(__LINE__, msg, i, "INVALID_JSON");
        CHECK(cmd.has_id == 0);
    }

    if (parse_ok(__LINE__, msg, len, NGX_HTTP_REALTIME_CMD_PUBLISH)) {
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* the length is honoured, not a NUL */

    if (parse_ok(__LINE__, "{\"event\":\"ping\"}garbage", 16,
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        ngx_http_realtime_cmd_free(&cmd);
    }

    parse_err(__LINE__, "{\"event\":\"ping\"}\0", 17, "INVALID_JSON");
    parse_err(__LINE__, "{\"event\":\"pi\0ng\"}", 17, "INVALID_JSON");
    parse_err(__LINE__, "\0{\"event\":\"ping\"}", 17, "INVALID_JSON");

    /* a long bad token: the message stays bounded and terminated */

    memset(big, 'x', sizeof(big));
    big[0] = '{';
    parse_err(__LINE__, big, sizeof(big), "INVALID_JSON");
    CHECK(strlen(err.message) < sizeof(err.message));

    test_end();
}


static void
test_invalid_event(void)
{
    size_t  i;
    char    in[512], name[200];

    static const char  *bad[] = {
        "[]",
        "[1]",
        "[{\"event\":\"ping\"}]",
        "{}",
        "{\"data\":1}",
        "{\"Event\":\"ping\"}",
        "{\"event \":\"ping\"}",
        "{\"events\":\"ping\"}",
        "{\"event\":\"\"}",
        "{\"event\":5}",
        "{\"event\":null}",
        "{\"event\":true}",
        "{\"event\":{}}",
        "{\"event\":{\"event\":\"ping\"}}",
        "{\"event\":[\"ping\"]}",
        "{\"data\":{\"event\":\"ping\"}}",
        NULL
    };

    test_begin("invalid event");

    for (i = 0; bad[i]; i++) {
        PARSE_ERR(bad[i], "INVALID_EVENT");
    }

    PARSE_ERR("[]", "INVALID_EVENT");
    CHECK(strcmp(err.message, "a message must be a JSON object") == 0);

    PARSE_ERR("{}", "INVALID_EVENT");
    CHECK(strcmp(err.message, "\"event\" must be a string of 1-128 bytes")
          == 0);

    snprintf(in, sizeof(in), "{\"event\":\"%s\"}", repeat(name, 'z', 129));
    PARSE_ERR(in, "INVALID_EVENT");

    /* 129 bytes as 43 three-byte characters */

    strcpy(in, "{\"event\":\"");

    for (i = 0; i < 43; i++) {
        strcat(in, "\xe2\x82\xac");
    }

    strcat(in, "\"}");
    PARSE_ERR(in, "INVALID_EVENT");

    test_end();
}


static void
test_duplicates(void)
{
    size_t  i;

    static const char  *dups[] = {
        "{\"event\":\"ping\",\"event\":\"ping\"}",
        "{\"event\":\"ping\",\"event\":\"join\"}",
        "{\"id\":1,\"event\":\"ping\",\"id\":2}",
        "{\"event\":\"ping\",\"data\":1,\"data\":2}",
        "{\"event\":\"join\",\"data\":{\"room\":\"a\",\"room\":\"b\"}}",
        "{\"event\":\"ping\",\"data\":{\"a\":1,\"a\":2}}",
        "{\"event\":\"ping\",\"data\":[{\"a\":1,\"a\":1}]}",
        "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
            "\"data\":{\"x\":{\"y\":1,\"y\":2}}}}",
        "{\"event\":\"ping\",\"x\":1,\"\\u0078\":1}",
        NULL
    };

    test_begin("duplicate keys");

    for (i = 0; dups[i]; i++) {
        PARSE_ERR(dups[i], "INVALID_JSON");
        CHECK(strstr(err.message, "duplicate object key") != NULL);
        CHECK(cmd.has_id == 0);
    }

    /* the same key in different objects is fine */

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"r\","
                 "\"event\":\"m\",\"data\":{\"event\":1,\"data\":2,"
                 "\"room\":3}}}", NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


static void
test_id_on_error(void)
{
    size_t  i;

    static const struct {
        const char  *in;
        const char  *code;
    } cases[] = {
        { "{\"id\":7}", "INVALID_EVENT" },
        { "{\"id\":7,\"event\":\"\"}", "INVALID_EVENT" },
        { "{\"event\":5,\"id\":7}", "INVALID_EVENT" },
        { "{\"id\":7,\"event\":\"join\"}", "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"leave\",\"data\":\"a b\"}", "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"presence\",\"data\":{}}", "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"publish\",\"data\":\"r\"}", "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"publish\",\"data\":{\"room\":\"r\"}}",
          "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"publish\",\"data\":{\"room\":\"r\","
          "\"event\":\"m\",\"echo\":1}}", "BAD_REQUEST" },
        { "{\"id\":7,\"event\":\"refresh\",\"data\":{}}", "BAD_REQUEST" },
        { NULL, NULL }
    };

    test_begin("id kept on errors");

    for (i = 0; cases[i].in; i++) {
        PARSE_ERR(cases[i].in, cases[i].code);
        CHECK(cmd.has_id == 1 && cmd.id == 7);
    }

    /* not when the id could not be read */

    PARSE_ERR("{\"id\":7,\"event\":\"join\"", "INVALID_JSON");
    CHECK(cmd.has_id == 0);

    PARSE_ERR("{\"id\":null,\"event\":\"join\"}", "BAD_REQUEST");
    CHECK(cmd.has_id == 0);

    PARSE_ERR("[{\"id\":7}]", "INVALID_EVENT");
    CHECK(cmd.has_id == 0);

    test_end();
}


static void
test_room_valid(void)
{
    int          c, expect;
    char         name[200], one[2];
    size_t       i;
    const char  *punct;

    static const char  *good[] = {
        "a", "Z", "0", "_", "-", ":", ".", "@", "/", "#", "_-:.@/#",
        "lobby", "Room_1", "chat:general", "user@example.com", "a/b/c",
        "#channel", "v1.2.3", "..", "--", "abcdefghijklmnopqrstuvwxyz",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", NULL
    };

    static const char  *bad[] = {
        " ", "a b", " a", "a ", "\"", "a\"b", "'", "\\", "a\tb", "a\nb",
        "caf\xc3\xa9", "\xe2\x82\xac", "\xff", "\x80", "a\x7f", "a+b",
        "a*b", "a?b", "a&b", "a=b", "a%b", "a!b", "a$b", "a(b)", "a[b]",
        "a{b}", "a,b", "a;b", "a<b>", "a|b", "a~b", "a^b", "a`b", NULL
    };

    test_begin("room_valid");

    /* lengths */

    CHECK(ngx_http_realtime_room_valid("", 0) == 0);
    CHECK(ngx_http_realtime_room_valid("abc", 0) == 0);
    CHECK(ngx_http_realtime_room_valid(NULL, 0) == 0);
    CHECK(ngx_http_realtime_room_valid("a", 1) == 1);
    CHECK(ngx_http_realtime_room_valid(repeat(name, 'a', 128), 128) == 1);
    CHECK(ngx_http_realtime_room_valid(repeat(name, 'a', 129), 129) == 0);
    CHECK(ngx_http_realtime_room_valid(repeat(name, 'a', 199), 199) == 0);
    CHECK(ngx_http_realtime_room_valid(repeat(name, '#', 128), 128) == 1);

    /* only len bytes are looked at */

    CHECK(ngx_http_realtime_room_valid("ab cd", 2) == 1);
    CHECK(ngx_http_realtime_room_valid(repeat(name, 'a', 150), 128) == 1);

    /* a NUL inside counts and is not allowed */

    CHECK(ngx_http_realtime_room_valid("\0", 1) == 0);
    CHECK(ngx_http_realtime_room_valid("a\0", 2) == 0);
    CHECK(ngx_http_realtime_room_valid("ab\0cd", 5) == 0);
    CHECK(ngx_http_realtime_room_valid("\0ab", 3) == 0);

    for (i = 0; good[i]; i++) {
        snprintf(test_where, sizeof(test_where), "%s", good[i]);
        CHECK(ngx_http_realtime_room_valid(good[i], strlen(good[i])) == 1);
    }

    for (i = 0; bad[i]; i++) {
        snprintf(test_where, sizeof(test_where), "%s", bad[i]);
        CHECK(ngx_http_realtime_room_valid(bad[i], strlen(bad[i])) == 0);
    }

    /* every byte alone, and after a good one */

    punct = "_-:.@/#";

    for (c = 0; c < 256; c++) {
        snprintf(test_where, sizeof(test_where), "byte 0x%02x", c);

        expect = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9')
                 || (c != 0 && strchr(punct, c) != NULL);

        one[0] = (char) c;
        one[1] = '\0';
        CHECK(ngx_http_realtime_room_valid(one, 1) == expect);

        name[0] = 'a';
        name[1] = (char) c;
        name[2] = 'b';
        CHECK(ngx_http_realtime_room_valid(name, 3) == expect);
    }

    test_end();
}


static void
test_event(void)
{
    json_t  *data;

    test_begin("event");

    CHECK_JSON(ngx_http_realtime_event("pong", NULL, -1),
               "{\"event\":\"pong\",\"data\":null}");

    CHECK_JSON(ngx_http_realtime_event("pong", NULL, 0),
               "{\"event\":\"pong\",\"data\":null,\"id\":0}");

    CHECK_JSON(ngx_http_realtime_event("pong", NULL, INT64_MAX),
               "{\"event\":\"pong\",\"data\":null,"
               "\"id\":9223372036854775807}");

    CHECK_JSON(ngx_http_realtime_event("pong", NULL, INT64_MIN),
               "{\"event\":\"pong\",\"data\":null}");

    data = json_pack("{s:i, s:[i, s, b, n], s:{}}", "a", 1, "b", 2, "x y",
                     1, "c");
    CHECK(data != NULL);

    CHECK_JSON(ngx_http_realtime_event("joined", data, 5),
               "{\"event\":\"joined\",\"data\":{\"a\":1,"
               "\"b\":[2,\"x y\",true,null],\"c\":{}},\"id\":5}");

    /* data is borrowed */

    CHECK(data->refcount == 1);

    CHECK_JSON(ngx_http_realtime_event("e", data, -1),
               "{\"event\":\"e\",\"data\":{\"a\":1,"
               "\"b\":[2,\"x y\",true,null],\"c\":{}}}");
    CHECK(data->refcount == 1);

    json_decref(data);

    data = json_string("text");
    CHECK_JSON(ngx_http_realtime_event("e", data, -1),
               "{\"event\":\"e\",\"data\":\"text\"}");
    json_decref(data);

    data = json_null();
    CHECK_JSON(ngx_http_realtime_event("e", data, 1),
               "{\"event\":\"e\",\"data\":null,\"id\":1}");

    /* escaping */

    CHECK_JSON(ngx_http_realtime_event("a\"b\\c\n\x01/\xc3\xa9", NULL, -1),
               "{\"event\":\"a\\\"b\\\\c\\n\\u0001/\xc3\xa9\","
               "\"data\":null}");

    /* not UTF-8: no event */

    CHECK(ngx_http_realtime_event("\xff", NULL, -1) == NULL);

    test_end();
}


static void
test_event_error(void)
{
    json_t  *json;

    test_begin("event_error");

    CHECK_JSON(ngx_http_realtime_event_error("BAD_REQUEST", "nope", 3),
               "{\"event\":\"error\",\"data\":{\"code\":\"BAD_REQUEST\","
               "\"message\":\"nope\",\"id\":3},\"id\":3}");

    CHECK_JSON(ngx_http_realtime_event_error("BAD_REQUEST", "nope", 0),
               "{\"event\":\"error\",\"data\":{\"code\":\"BAD_REQUEST\","
               "\"message\":\"nope\",\"id\":0},\"id\":0}");

    CHECK_JSON(ngx_http_realtime_event_error("INVALID_JSON", "bad", -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"INVALID_JSON\","
               "\"message\":\"bad\"}}");

    CHECK_JSON(ngx_http_realtime_event_error("X", "", -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"X\","
               "\"message\":\"\"}}");

    CHECK_JSON(ngx_http_realtime_event_error("FORBIDDEN",
                                             "a \"b\"\n\\c\t/", 9),
               "{\"event\":\"error\",\"data\":{\"code\":\"FORBIDDEN\","
               "\"message\":\"a \\\"b\\\"\\n\\\\c\\t/\",\"id\":9},"
               "\"id\":9}");

    CHECK(ngx_http_realtime_event_error("X", "\xc3", -1) == NULL);

    /* the parser's messages go out as they are */

    PARSE_ERR("{\"event\":\"join\",\"data\":5,\"id\":2}", "BAD_REQUEST");

    CHECK_JSON(ngx_http_realtime_event_error(err.code, err.message,
                                             cmd.has_id ? cmd.id : -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"BAD_REQUEST\","
               "\"message\":\"\\\"data.room\\\" must be a string\","
               "\"id\":2},\"id\":2}");

    PARSE_ERR("{\"event\":\"join\"", "INVALID_JSON");

    CHECK_JSON(ngx_http_realtime_event_error(err.code, err.message,
                                             cmd.has_id ? cmd.id : -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"INVALID_JSON\","
               "\"message\":\"invalid JSON at line 1, column 15: "
               "'}' expected near end of file\"}}");

    /*
     * jansson quotes the text near an error, and may cut it inside a
     * UTF-8 sequence: non-ASCII bytes become '?'
     */

    PARSE_ERR("\xc3\xa9", "INVALID_JSON");
    CHECK_JSON(ngx_http_realtime_event_error(err.code, err.message, -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"INVALID_JSON\","
               "\"message\":\"invalid JSON at line 1, column 1: "
               "invalid token near '?" "?'\"}}");

    PARSE_ERR("{\"event\":\"\\\xc3\xa9\"}", "INVALID_JSON");
    CHECK_JSON(ngx_http_realtime_event_error(err.code, err.message, -1),
               "{\"event\":\"error\",\"data\":{\"code\":\"INVALID_JSON\","
               "\"message\":\"invalid JSON at line 1, column 12: "
               "invalid escape near '\\\"\\\\?'\"}}");

    PARSE_ERR("{\"event\":\"\xe2\x82\xac\\\xe2\x82\xac\"}", "INVALID_JSON");
    CHECK(strchr(err.message, '\\') != NULL);
    CHECK(strchr(err.message, '\x80') == NULL);

    PARSE_ERR("{\"event\":\"\xc3\xa9\xff\"}", "INVALID_JSON");
    json = ngx_http_realtime_event_error(err.code, err.message, -1);
    CHECK(json != NULL);

    if (json) {
        json_decref(json);
    }

    test_end();
}


static void
test_event_room(void)
{
    json_t  *data;

    test_begin("event_room");

    data = json_pack("{s:i}", "n", 1);
    CHECK(data != NULL);

    CHECK_JSON(ngx_http_realtime_event_room("tick", "battle:42xx", 9, data),
               "{\"event\":\"tick\",\"room\":\"battle:42\","
               "\"data\":{\"n\":1}}");

    /* the data is shared, not taken */
    CHECK(data->refcount == 1);
    json_decref(data);

    CHECK_JSON(ngx_http_realtime_event_room("t", "r", 1, NULL),
               "{\"event\":\"t\",\"room\":\"r\",\"data\":null}");

    test_end();
}


static void
test_event_relay(void)
{
    json_t  *data;

    test_begin("event_relay");

    data = json_pack("{s:s, s:[i, i]}", "text", "hi", "n", 1, 2);
    CHECK(data != NULL);

    CHECK_JSON(ngx_http_realtime_event_relay("chat", 4, "lobby", 5,
                                             "alice", 5, data),
               "{\"event\":\"chat\",\"room\":\"lobby\",\"from\":\"alice\","
               "\"data\":{\"text\":\"hi\",\"n\":[1,2]}}");

    CHECK(data->refcount == 1);
    json_decref(data);

    CHECK_JSON(ngx_http_realtime_event_relay("chat", 4, "lobby", 5,
                                             "alice", 5, NULL),
               "{\"event\":\"chat\",\"room\":\"lobby\",\"from\":\"alice\","
               "\"data\":null}");

    /* an empty sender */

    CHECK_JSON(ngx_http_realtime_event_relay("m", 1, "r", 1, "", 0, NULL),
               "{\"event\":\"m\",\"room\":\"r\",\"from\":\"\","
               "\"data\":null}");

    /*
     * jansson refuses a NULL string even of length 0; callers never pass
     * one, an anonymous user is named after its connection
     */

    CHECK(ngx_http_realtime_event_relay("m", 1, "r", 1, NULL, 0, NULL)
          == NULL);

    /* lengths, not NULs, end the strings */

    CHECK_JSON(ngx_http_realtime_event_relay("message", 3, "lobby-1", 5,
                                             "alice:bob", 5, NULL),
               "{\"event\":\"mes\",\"room\":\"lobby\",\"from\":\"alice\","
               "\"data\":null}");

    CHECK_JSON(ngx_http_realtime_event_relay("m\0x", 3, "r\0", 2,
                                             "\0a\0b", 4, NULL),
               "{\"event\":\"m\\u0000x\",\"room\":\"r\\u0000\","
               "\"from\":\"\\u0000a\\u0000b\",\"data\":null}");

    CHECK_JSON(ngx_http_realtime_event_relay("\xc3\xa9\"", 3, "r", 1,
                                             "u\n", 2, NULL),
               "{\"event\":\"\xc3\xa9\\\"\",\"room\":\"r\","
               "\"from\":\"u\\n\",\"data\":null}");

    /* not UTF-8, or cut inside a character: no relay */

    CHECK(ngx_http_realtime_event_relay("\xff", 1, "r", 1, "u", 1, NULL)
          == NULL);
    CHECK(ngx_http_realtime_event_relay("\xc3\xa9", 1, "r", 1, "u", 1, NULL)
          == NULL);
    CHECK(ngx_http_realtime_event_relay("m", 1, "r", 1, "\xc3\xa9", 1, NULL)
          == NULL);

    /* from a parsed publish */

    if (PARSE_OK("{\"event\":\"publish\",\"data\":{\"room\":\"lobby\","
                 "\"event\":\"chat\",\"data\":{\"t\":\"\\u00e9\\n\"}}}",
                 NGX_HTTP_REALTIME_CMD_PUBLISH))
    {
        CHECK_JSON(ngx_http_realtime_event_relay(cmd.publish_event,
                                                 cmd.publish_event_len,
                                                 cmd.room, cmd.room_len,
                                                 "bob", 3, cmd.publish_data),
                   "{\"event\":\"chat\",\"room\":\"lobby\",\"from\":\"bob\","
                   "\"data\":{\"t\":\"\xc3\xa9\\n\"}}");

        CHECK(cmd.publish_data->refcount == 1);
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


static void
test_json_dump(void)
{
    char         buf[256];
    size_t       n, len, size;
    json_t      *json;
    const char  *expect;

    test_begin("json_dump");

    expect = "{\"z\":1,\"a\":[1,2.5,\"x y\",{\"b\":null,\"c\":[]}],"
             "\"m\":{},\"t\":true,\"f\":false,\"s\":\"a, b: c\"}";
    len = strlen(expect);

    json = json_pack("{s:i, s:[i, f, s, {s:n, s:[]}], s:{}, s:b, s:b, s:s}",
                     "z", 1, "a", 1, 2.5, "x y", "b", "c", "m", "t", 1,
                     "f", 0, "s", "a, b: c");
    CHECK(json != NULL);

    /* the size needed, without writing */

    n = ngx_http_realtime_json_dump(json, NULL, 0);
    CHECK(n == len);

    /* exactly that size, no NUL and nothing past it */

    memset(buf, '~', sizeof(buf));
    CHECK(ngx_http_realtime_json_dump(json, buf, n) == len);
    CHECK(memcmp(buf, expect, len) == 0);
    CHECK(buf[len] == '~');

    /* more room changes nothing */

    memset(buf, '~', sizeof(buf));
    CHECK(ngx_http_realtime_json_dump(json, buf, sizeof(buf)) == len);
    CHECK(memcmp(buf, expect, len) == 0);
    CHECK(buf[len] == '~');

    /* too little: still the size needed, nothing past the buffer */

    for (size = 1; size < len; size++) {
        memset(buf, '~', sizeof(buf));
        CHECK(ngx_http_realtime_json_dump(json, buf, size) == len);
        CHECK(buf[size] == '~');
    }

    json_decref(json);

    /* compact: whitespace of the input is gone, order is kept */

    if (PARSE_OK("{ \"event\" : \"ping\" ,\n \"data\" : { \"z\" : [ 1 , 2 ] ,"
                 " \"a\" : { } , \"s\" : \" \" } }",
                 NGX_HTTP_REALTIME_CMD_PING))
    {
        expect = "{\"z\":[1,2],\"a\":{},\"s\":\" \"}";
        n = ngx_http_realtime_json_dump(cmd.data, buf, sizeof(buf));
        CHECK(n == strlen(expect) && memcmp(buf, expect, n) == 0);

        expect = "{\"event\":\"ping\",\"data\":{\"z\":[1,2],\"a\":{},"
                 "\"s\":\" \"}}";
        n = ngx_http_realtime_json_dump(cmd.root, buf, sizeof(buf));
        CHECK(n == strlen(expect) && memcmp(buf, expect, n) == 0);

        ngx_http_realtime_cmd_free(&cmd);
    }

    /* empty containers */

    json = json_object();
    CHECK(ngx_http_realtime_json_dump(json, buf, sizeof(buf)) == 2);
    CHECK(memcmp(buf, "{}", 2) == 0);
    json_decref(json);

    json = json_array();
    CHECK(ngx_http_realtime_json_dump(json, buf, sizeof(buf)) == 2);
    CHECK(memcmp(buf, "[]", 2) == 0);
    json_decref(json);

    test_end();
}


/* the scratch: one dump when it fits, the size needed when not */

static void
test_json_dump_scratch(void)
{
    char        *big, *out;
    const char  *text;
    size_t       n, len;
    json_t      *json;
    const char  *expect;

    test_begin("json_dump_scratch");

    expect = "{\"event\":\"joined\",\"data\":{\"room\":\"r\\\"1\","
             "\"members\":2}}";

    json = json_pack("{s:s, s:{s:s, s:i}}", "event", "joined", "data",
                     "room", "r\"1", "members", 2);
    CHECK(json != NULL);

    text = ngx_http_realtime_json_dump_scratch(json, &len);
    CHECK(text != NULL);
    CHECK(len == strlen(expect) && memcmp(text, expect, len) == 0);
    json_decref(json);

    /* exactly the scratch's size fits; one more byte does not */

    for (n = NGX_HTTP_REALTIME_JSON_SCRATCH - 1;
         n <= NGX_HTTP_REALTIME_JSON_SCRATCH;
         n++)
    {
        big = malloc(n - 3);
        CHECK(big != NULL);
        if (big == NULL) {
            break;
        }

        memset(big, 'a', n - 4);
        big[n - 4] = '\0';

        /* ["aaa..."]: n bytes */
        json = json_pack("[s]", big);
        CHECK(json != NULL);

        text = ngx_http_realtime_json_dump_scratch(json, &len);
        CHECK(len == n);
        CHECK(text != NULL && text[0] == '[' && text[n - 1] == ']');

        json_decref(json);
        free(big);
    }

    big = malloc(NGX_HTTP_REALTIME_JSON_SCRATCH);
    CHECK(big != NULL);

    if (big) {
        memset(big, 'a', NGX_HTTP_REALTIME_JSON_SCRATCH - 1);
        big[NGX_HTTP_REALTIME_JSON_SCRATCH - 1] = '\0';

        json = json_pack("[s]", big);
        CHECK(json != NULL);

        text = ngx_http_realtime_json_dump_scratch(json, &len);
        CHECK(text == NULL);
        CHECK(len == NGX_HTTP_REALTIME_JSON_SCRATCH + 3);

        /* placed by a second dump, whole and nothing past it */
        out = malloc(len + 1);
        CHECK(out != NULL);

        if (out) {
            out[len] = '~';
            ngx_http_realtime_json_place(json, text, out, len);
            CHECK(memcmp(out, "[\"aaa", 5) == 0);
            CHECK(memcmp(out + len - 5, "aaa\"]", 5) == 0);
            CHECK(out[len] == '~');
            free(out);
        }

        json_decref(json);
        free(big);
    }

    test_end();
}


static void
test_round_trip(void)
{
    size_t       i, n;
    char         buf[512];
    json_t      *json, *back;

    static const struct {
        const char  *in;
        int          type;
    } msgs[] = {
        { "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"},\"id\":1}",
          NGX_HTTP_REALTIME_CMD_JOIN },
        { "{\"event\":\"publish\",\"data\":{\"room\":\"r\",\"event\":\"m\","
          "\"data\":{\"t\":\"\\u00e9\\\"\\\\\",\"n\":[1,-2,3.5e10]},"
          "\"echo\":true}}", NGX_HTTP_REALTIME_CMD_PUBLISH },
        { "{\"event\":\"ping\",\"data\":[[],{},null,\"\"]}",
          NGX_HTTP_REALTIME_CMD_PING },
        { "{\"event\":\"other\",\"data\":{\"a\":{\"b\":{\"c\":[0]}}},\"id\":0}",
          NGX_HTTP_REALTIME_CMD_UNKNOWN },
        { NULL, 0 }
    };

    test_begin("round trip");

    for (i = 0; msgs[i].in; i++) {
        if (!PARSE_OK(msgs[i].in, msgs[i].type)) {
            continue;
        }

        json = ngx_http_realtime_event(cmd.event, cmd.data,
                                       cmd.has_id ? cmd.id : -1);
        CHECK(json != NULL);

        n = ngx_http_realtime_json_dump(json, buf, sizeof(buf));
        CHECK(n > 0 && n < sizeof(buf));

        back = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
        CHECK(back != NULL);
        CHECK(json_equal(json, back));
        CHECK(json_equal(json, cmd.root));

        json_decref(back);
        json_decref(json);
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


/* join {"room", "since": {"epoch", "offset"}}, for realtime_history */

static void
test_join_since(void)
{
    test_begin("join since");

    if (PARSE_OK("{\"event\":\"join\",\"data\":{\"room\":\"g\","
                 "\"since\":{\"epoch\":\"abcDEF0123456789\","
                 "\"offset\":42}}}", NGX_HTTP_REALTIME_CMD_JOIN))
    {
        CHECK(cmd.has_since == 1);
        CHECK(str_is(cmd.since_epoch, cmd.since_epoch_len,
                     "abcDEF0123456789"));
        CHECK(cmd.since_offset == 42);
        CHECK(str_is(cmd.room, cmd.room_len, "g"));
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* offset 0 and a huge one are fine; null is no since */

    if (PARSE_OK("{\"event\":\"join\",\"data\":{\"room\":\"g\","
                 "\"since\":{\"epoch\":\"e\",\"offset\":0}}}",
                 NGX_HTTP_REALTIME_CMD_JOIN))
    {
        CHECK(cmd.has_since == 1 && cmd.since_offset == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"join\",\"data\":{\"room\":\"g\","
                 "\"since\":{\"epoch\":\"e\","
                 "\"offset\":9007199254740993}}}",
                 NGX_HTTP_REALTIME_CMD_JOIN))
    {
        CHECK(cmd.since_offset == 9007199254740993LL);
        ngx_http_realtime_cmd_free(&cmd);
    }

    if (PARSE_OK("{\"event\":\"join\",\"data\":{\"room\":\"g\","
                 "\"since\":null}}", NGX_HTTP_REALTIME_CMD_JOIN))
    {
        CHECK(cmd.has_since == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    /* the shorthand room name has no since */

    if (PARSE_OK("{\"event\":\"join\",\"data\":\"g\"}",
                 NGX_HTTP_REALTIME_CMD_JOIN))
    {
        CHECK(cmd.has_since == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":3}}", "BAD_REQUEST");
    CHECK(strstr(err.message, "data.since") != NULL);
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"epoch\":\"e\"}}}", "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"offset\":1}}}", "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"epoch\":\"\",\"offset\":1}}}", "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"epoch\":\"e\",\"offset\":-1}}}",
              "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"epoch\":\"e\",\"offset\":1.5}}}",
              "BAD_REQUEST");
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":\"g\","
              "\"since\":{\"epoch\":7,\"offset\":1}}}", "BAD_REQUEST");
    /* the room is checked first */
    PARSE_ERR("{\"event\":\"join\",\"data\":{\"room\":5,"
              "\"since\":{\"epoch\":\"e\",\"offset\":1}}}",
              "BAD_REQUEST");
    CHECK(strcmp(err.message, "\"data.room\" must be a string") == 0);

    /* leave ignores a since */
    if (PARSE_OK("{\"event\":\"leave\",\"data\":{\"room\":\"g\","
                 "\"since\":3}}", NGX_HTTP_REALTIME_CMD_LEAVE))
    {
        CHECK(cmd.has_since == 0);
        ngx_http_realtime_cmd_free(&cmd);
    }

    test_end();
}


/*
 * The welcome and the JSON strings written without jansson: byte for
 * byte what ngx_http_realtime_event() and its dump make, for every byte
 * that needs escaping and for UTF-8 beyond ASCII.
 */

static int
welcome_same(const char *user, size_t user_len, const char *ts)
{
    char                          a[1024], b[1024], *end;
    size_t                        n, len;
    json_t                       *data, *json;
    ngx_http_realtime_welcome_t   w;

    w.user = user;
    w.user_len = user_len;
    w.id = "1234567";
    w.id_len = 7;
    w.pid = 4242;
    w.ts = ts;
    w.ts_len = ts ? strlen(ts) : 0;

    data = json_pack("{s:s%, s:s%, s:I}", "userId", user, user_len,
                     "connectionId", w.id, w.id_len,
                     "pid", (json_int_t) w.pid);
    if (data == NULL) {
        return 0;
    }

    json = ngx_http_realtime_event("welcome", data, -1);
    json_decref(data);

    if (ts) {
        json_object_set_new(json, "timestamp", json_string(ts));
    }

    n = ngx_http_realtime_json_dump(json, a, sizeof(a));
    json_decref(json);

    len = ngx_http_realtime_welcome_len(&w);

    memset(b, '~', sizeof(b));
    end = ngx_http_realtime_welcome(b, &w);

    return n == len && (size_t) (end - b) == len && memcmp(a, b, n) == 0
           && b[len] == '~';
}


static int
quote_same(const char *s, size_t len)
{
    char     a[512], b[512], *end;
    size_t   n;
    json_t  *json;

    json = json_stringn(s, len);
    if (json == NULL) {
        return 0;
    }

    n = json_dumpb(json, a, sizeof(a), JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(json);

    end = ngx_http_realtime_json_quote(b, s, len);

    return n == ngx_http_realtime_json_quoted_len(s, len)
           && (size_t) (end - b) == n && memcmp(a, b, n) == 0;
}


static void
test_welcome(void)
{
    int   c;
    char  one[1];

    test_begin("welcome");

    CHECK(welcome_same("alice", 5, NULL));
    CHECK(welcome_same("", 0, NULL));
    CHECK(welcome_same("alice", 5, "2026-12-03T10:00:00.123Z"));
    CHECK(welcome_same("a\"b\\c/d", 7, NULL));
    CHECK(welcome_same("tab\there\nnl\r\b\f", 14, "x"));
    CHECK(welcome_same("\x01\x1f\x7f end", 7, NULL));
    CHECK(welcome_same("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                       NULL));
    CHECK(welcome_same("nul\0in it", 9, NULL));

    /* every byte jansson takes as a one-byte string */

    for (c = 0; c < 0x80; c++) {
        one[0] = (char) c;
        CHECK(quote_same(one, 1));
    }

    CHECK(quote_same("", 0));
    CHECK(quote_same("\xe2\x80\xa8 \xe2\x80\xa9", 7));
    CHECK(ngx_http_realtime_json_quoted_len("\x01", 1) == 8);

    test_end();
}


int
main(void)
{
    test_join_since();
    test_room_commands();
    test_publish();
    test_ping();
    test_refresh();
    test_unknown();
    test_ids();
    test_invalid_json();
    test_invalid_event();
    test_duplicates();
    test_id_on_error();
    test_room_valid();
    test_event();
    test_event_error();
    test_event_relay();
    test_event_room();
    test_json_dump();
    test_json_dump_scratch();
    test_round_trip();
    test_welcome();

    return test_summary();
}
