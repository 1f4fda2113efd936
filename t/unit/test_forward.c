
/*
 * Copyright (C) ngx-realtime developers
 *
 * Unit tests of the backend forwarding codec: the exact body of every
 * request form, every reply field good and bad with its message, the
 * single-value forms, the limits, every truncation of valid replies,
 * and route templates.  Input is copied into buffers of exactly its
 * length, so that the sanitizers see any read past the end.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_realtime_forward_codec.h"

#define UNIT_WHERE_SIZE  96
#include "unit.h"


#define BAD          "BACKEND_BAD_REPLY"
#define ROOM_RULE    ": 1-128 bytes of letters, digits and _-:.@/#"


static ngx_http_realtime_forward_reply_t  reply;
static ngx_http_realtime_cmd_error_t      err;


/* a string of n copies of c, n < sizeof(buf) */

static const char *
repeat(char *buf, int c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';

    return buf;
}


static int
bytes_is(const void *p, size_t len, const char *s)
{
    return p != NULL && len == strlen(s) && memcmp(p, s, len) == 0;
}


static int
printable(const char *s)
{
    for ( ; *s; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static const char *
dump(json_t *json)
{
    size_t       n;
    static char  buf[8192];

    if (json == NULL) {
        return "(NULL json)";
    }

    n = ngx_http_realtime_json_dump(json, buf, sizeof(buf) - 1);

    if (n == 0 || n >= sizeof(buf)) {
        return "(dump failed)";
    }

    buf[n] = '\0';

    return buf;
}


#define CHECK_JSON(json, expect)  check_json(__LINE__, json, expect)


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


/* requests */

static void
test_request_native(void)
{
    json_t  *data, *rooms, *meta;

    test_begin("request native");

    data = json_pack("{s:s}", "text", "hi");
    rooms = json_pack("[s,s]", "lobby", "battle:1");
    meta = json_pack("{s:i}", "role", 2);

    CHECK_JSON(ngx_http_realtime_forward_request("chat", 4, data, 7,
                                                 "c1", 2, "u1", 2, rooms,
                                                 "native", NULL, 0, NULL),
               "{\"event\":\"chat\",\"data\":{\"text\":\"hi\"},\"id\":7,"
               "\"connection\":\"c1\",\"user\":\"u1\","
               "\"rooms\":[\"lobby\",\"battle:1\"],\"protocol\":\"native\"}");

    /* lengths, not NUL: the event and ids are cut from larger buffers */

    CHECK_JSON(ngx_http_realtime_forward_request("chatXX", 4, NULL, -1,
                                                 "c1XX", 2, "u1XX", 2, rooms,
                                                 "native", NULL, 0, meta),
               "{\"event\":\"chat\",\"data\":null,"
               "\"connection\":\"c1\",\"user\":\"u1\","
               "\"rooms\":[\"lobby\",\"battle:1\"],\"protocol\":\"native\","
               "\"meta\":{\"role\":2}}");

    CHECK_JSON(ngx_http_realtime_forward_request("e", 1, json_null(), 0,
                                                 "c", 1, NULL, 0, NULL,
                                                 "native", NULL, 0, NULL),
               "{\"event\":\"e\",\"data\":null,\"id\":0,\"connection\":\"c\","
               "\"user\":null,\"rooms\":[],\"protocol\":\"native\"}");

    /* borrowed: the caller's references are left as they were */

    CHECK(data->refcount == 1);
    CHECK(rooms->refcount == 1);
    CHECK(meta->refcount == 1);

    /* not UTF-8 */

    CHECK(ngx_http_realtime_forward_request("\xff", 1, NULL, -1, "c", 1,
                                            NULL, 0, NULL, "native",
                                            NULL, 0, NULL) == NULL);
    CHECK(ngx_http_realtime_forward_request("e", 1, NULL, -1, "c", 1,
                                            "\xc3", 1, NULL, "native",
                                            NULL, 0, NULL) == NULL);

    json_decref(data);
    json_decref(rooms);
    json_decref(meta);

    test_end();
}


static void
test_request_sio(void)
{
    json_t  *data, *rooms;

    test_begin("request socket.io");

    data = json_pack("[i,{s:b}]", 1, "x", 1);
    rooms = json_array();

    CHECK_JSON(ngx_http_realtime_forward_request("move", 4, data,
                                                 12345678901LL, "c9", 2,
                                                 "u\xc3\xa9", 3, rooms,
                                                 "socket.io", "/game", 5,
                                                 NULL),
               "{\"event\":\"move\",\"data\":[1,{\"x\":true}],"
               "\"id\":12345678901,\"connection\":\"c9\","
               "\"user\":\"u\xc3\xa9\",\"rooms\":[],"
               "\"protocol\":\"socket.io\",\"nsp\":\"/game\"}");

    CHECK_JSON(ngx_http_realtime_forward_request("m", 1, NULL, -1, "c9", 2,
                                                 "u", 1, rooms, "socket.io",
                                                 "/", 1, rooms),
               "{\"event\":\"m\",\"data\":null,\"connection\":\"c9\","
               "\"user\":\"u\",\"rooms\":[],\"protocol\":\"socket.io\","
               "\"nsp\":\"/\",\"meta\":[]}");

    CHECK(data->refcount == 1);
    CHECK(rooms->refcount == 1);

    json_decref(data);
    json_decref(rooms);

    test_end();
}


static void
test_request_connect(void)
{
    json_t  *data, *rooms, *meta;

    test_begin("request connect hook");

    data = json_pack("{s:s}", "token", "t");
    rooms = json_pack("[s]", "user:u1");
    meta = json_pack("{s:s}", "ip", "127.0.0.1");

    /* event NULL: data and id are not sent even when given */

    CHECK_JSON(ngx_http_realtime_forward_request(NULL, 0, data, 5, "c1", 2,
                                                 NULL, 0, NULL, "native",
                                                 NULL, 0, NULL),
               "{\"connection\":\"c1\",\"user\":null,\"rooms\":[],"
               "\"protocol\":\"native\"}");

    CHECK_JSON(ngx_http_realtime_forward_request(NULL, 0, NULL, -1, "c1", 2,
                                                 "u1", 2, rooms, "socket.io",
                                                 "/chat", 5, meta),
               "{\"connection\":\"c1\",\"user\":\"u1\","
               "\"rooms\":[\"user:u1\"],\"protocol\":\"socket.io\","
               "\"nsp\":\"/chat\",\"meta\":{\"ip\":\"127.0.0.1\"}}");

    CHECK(data->refcount == 1);
    CHECK(rooms->refcount == 1);
    CHECK(meta->refcount == 1);

    json_decref(data);
    json_decref(rooms);
    json_decref(meta);

    test_end();
}


/* replies */

static int
parse(const char *buf, size_t len)
{
    int    rc;
    char  *copy;

    snprintf(test_where, sizeof(test_where), "%.*s",
             (int) (len < 80 ? len : 80), buf);

    copy = xmalloc(len);

    if (len) {
        memcpy(copy, buf, len);
    }

    memset(&reply, 0xa5, sizeof(reply));
    err.code = NULL;
    memset(err.message, 'x', sizeof(err.message));

    rc = ngx_http_realtime_forward_reply_parse(&reply, copy, len, &err);

    free(copy);

    return rc;
}


#define REPLY_OK(s)        reply_ok(__LINE__, s, strlen(s))
#define REPLY_ERR(s, msg)  reply_err(__LINE__, s, strlen(s), msg)


/* leaves reply for the caller to look at and free */

static int
reply_ok(int line, const char *buf, size_t len)
{
    int  rc;

    rc = parse(buf, len);

    CHECK_AT(line, rc == 0);

    if (rc != 0) {
        printf("      error %s: %.200s\n", err.code ? err.code : "(null)",
               err.code ? err.message : "");
        return 0;
    }

    return 1;
}


/* msg NULL: any message; one ending in "*": a prefix */

static void
reply_err(int line, const char *buf, size_t len, const char *msg)
{
    int     rc, ok;
    size_t  n;

    rc = parse(buf, len);

    CHECK_AT(line, rc == -1);

    if (rc != -1) {
        ngx_http_realtime_forward_reply_free(&reply);
        return;
    }

    CHECK_AT(line, reply.root == NULL && reply.join == NULL
                   && reply.error_code == NULL && reply.disconnect == 0);
    CHECK_AT(line, err.code != NULL && strcmp(err.code, BAD) == 0);
    CHECK_AT(line, memchr(err.message, '\0', sizeof(err.message)) != NULL);

    err.message[sizeof(err.message) - 1] = '\0';

    CHECK_AT(line, err.message[0] != '\0' && printable(err.message));

    if (msg) {
        n = strlen(msg);
        ok = (n && msg[n - 1] == '*')
             ? strncmp(err.message, msg, n - 1) == 0
             : strcmp(err.message, msg) == 0;

        CHECK_AT(line, ok);

        if (!ok) {
            printf("      got      %s\n      expected %s\n",
                   err.message, msg);
        }
    }

    /* freeing after an error is harmless */
    ngx_http_realtime_forward_reply_free(&reply);
    CHECK_AT(line, reply.root == NULL);
}


static int
reply_empty(void)
{
    return reply.root == NULL && reply.leave == NULL && reply.join == NULL
           && reply.emit == NULL && reply.publish == NULL
           && reply.to_user == NULL && reply.has_ack == 0
           && reply.ack == NULL && reply.error_code == NULL
           && reply.error_message == NULL && reply.meta == NULL
           && reply.user == NULL && reply.user_len == 0
           && reply.disconnect == 0 && reply.disconnect_code == 0
           && reply.disconnect_reason == NULL;
}


static void
test_reply_empty(void)
{
    json_t  *root;

    test_begin("reply empty");

    CHECK(parse("", 0) == 0);
    CHECK(reply_empty());
    ngx_http_realtime_forward_reply_free(&reply);
    CHECK(reply_empty());

    CHECK(parse(" \r\n\t\n", 5) == 0);
    CHECK(reply_empty());
    ngx_http_realtime_forward_reply_free(&reply);

    if (REPLY_OK("{}")) {
        root = reply.root;
        CHECK(json_is_object(root) && json_object_size(root) == 0);
        reply.root = NULL;
        CHECK(reply_empty());
        reply.root = root;
        ngx_http_realtime_forward_reply_free(&reply);
    }

    /* unknown keys, at any level, are ignored */

    if (REPLY_OK("{\"foo\":1,\"bar\":{\"x\":[]},\"emit\":{\"event\":\"e\","
                 "\"more\":1},\"disconnect\":{\"x\":1}}"))
    {
        CHECK(json_array_size(reply.emit) == 1);
        CHECK(reply.disconnect == 1 && reply.disconnect_code == 4000);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    test_end();
}


static void
test_reply_json(void)
{
    test_begin("reply JSON");

    REPLY_ERR("{", "invalid JSON at line 1, column 1: *");
    REPLY_ERR("{\"a\":1,}", "invalid JSON at line 1*");
    REPLY_ERR("{} {}", "invalid JSON*");
    REPLY_ERR("{\"ack\":1,\"ack\":2}", "invalid JSON at line 1, column 14: "
              "duplicate object key near '\"ack\"'");
    REPLY_ERR("{\"ack\":\"\xff\"}", "invalid JSON*");
    REPLY_ERR("{\"ack\":\"\\u0000\"}", "invalid JSON*");

    /* what jansson quotes is made printable ASCII */

    REPLY_ERR("{\"ack\":\xc3\xa9\xc3\xa9}", "invalid JSON*");
    CHECK(strchr(err.message, '?') != NULL);
    REPLY_ERR("{\"ack\":\"a\x01\"}", "invalid JSON*");
    REPLY_ERR("\x01\x7f\x80", "invalid JSON*");

    REPLY_ERR("[]", "a reply must be a JSON object");
    REPLY_ERR("5", "a reply must be a JSON object");
    REPLY_ERR("\"x\"", "a reply must be a JSON object");
    REPLY_ERR("null", "a reply must be a JSON object");
    REPLY_ERR(" true ", "a reply must be a JSON object");

    test_end();
}


static void
test_reply_rooms(void)
{
    int          i;
    char         room[200], s[400];
    json_t      *a;
    const char  *name;

    static const char  *names[] = { "leave", "join" };

    test_begin("reply leave and join");

    for (i = 0; i < 2; i++) {
        name = names[i];

        snprintf(s, sizeof(s), "{\"%s\":[\"lobby\",\"battle:1\"]}", name);

        if (REPLY_OK(s)) {
            a = (i == 0) ? reply.leave : reply.join;

            CHECK(json_is_array(a) && json_array_size(a) == 2);
            CHECK(strcmp(json_string_value(json_array_get(a, 1)),
                         "battle:1") == 0);
            CHECK(((i == 0) ? reply.join : reply.leave) == NULL);
            ngx_http_realtime_forward_reply_free(&reply);
        }

        /* a single name is an array of it, in root too */

        snprintf(s, sizeof(s), "{\"%s\":\"lobby\"}", name);

        if (REPLY_OK(s)) {
            a = (i == 0) ? reply.leave : reply.join;

            CHECK(json_is_array(a) && json_array_size(a) == 1);
            CHECK(strcmp(json_string_value(json_array_get(a, 0)), "lobby")
                  == 0);
            CHECK(json_object_get(reply.root, name) == a);
            ngx_http_realtime_forward_reply_free(&reply);
        }

        snprintf(s, sizeof(s), "{\"%s\":[]}", name);

        if (REPLY_OK(s)) {
            CHECK(json_array_size((i == 0) ? reply.leave : reply.join) == 0);
            CHECK(((i == 0) ? reply.leave : reply.join) != NULL);
            ngx_http_realtime_forward_reply_free(&reply);
        }

        snprintf(s, sizeof(s), "{\"%s\":[\"%s\"]}", name,
                 repeat(room, 'r', 128));

        if (REPLY_OK(s)) {
            ngx_http_realtime_forward_reply_free(&reply);
        }

        snprintf(s, sizeof(s), "{\"%s\":[\"%s\"]}", name,
                 repeat(room, 'r', 129));
        snprintf(room, sizeof(room), "\"%s[0]\" must be a room name"
                 ROOM_RULE, name);
        REPLY_ERR(s, room);

        snprintf(s, sizeof(s), "{\"%s\":[\"ok\",\"bad room\"]}", name);
        snprintf(room, sizeof(room), "\"%s[1]\" must be a room name"
                 ROOM_RULE, name);
        REPLY_ERR(s, room);

        snprintf(s, sizeof(s), "{\"%s\":[\"a\",\"b\",7]}", name);
        snprintf(room, sizeof(room), "\"%s[2]\" must be a room name"
                 ROOM_RULE, name);
        REPLY_ERR(s, room);

        snprintf(s, sizeof(s), "{\"%s\":[\"\"]}", name);
        snprintf(room, sizeof(room), "\"%s[0]\" must be a room name"
                 ROOM_RULE, name);
        REPLY_ERR(s, room);

        snprintf(s, sizeof(s), "{\"%s\":\"a b\"}", name);
        snprintf(room, sizeof(room), "\"%s\" must be a room name"
                 ROOM_RULE, name);
        REPLY_ERR(s, room);

        snprintf(s, sizeof(s), "{\"%s\":\"\xc3\xa9\"}", name);
        REPLY_ERR(s, room);

        snprintf(room, sizeof(room), "\"%s\" must be a room name or an "
                 "array of them", name);

        snprintf(s, sizeof(s), "{\"%s\":5}", name);
        REPLY_ERR(s, room);
        snprintf(s, sizeof(s), "{\"%s\":null}", name);
        REPLY_ERR(s, room);
        snprintf(s, sizeof(s), "{\"%s\":{\"room\":\"a\"}}", name);
        REPLY_ERR(s, room);
    }

    test_end();
}


static void
test_reply_emit(void)
{
    char     ev[200], s[400];
    json_t  *e;

    test_begin("reply emit");

    if (REPLY_OK("{\"emit\":[{\"event\":\"a\",\"data\":{\"x\":1}},"
                 "{\"event\":\"b\"}]}"))
    {
        CHECK(json_array_size(reply.emit) == 2);
        e = json_array_get(reply.emit, 0);
        CHECK(strcmp(dump(json_object_get(e, "data")), "{\"x\":1}") == 0);
        e = json_array_get(reply.emit, 1);
        CHECK(json_object_get(e, "data") == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"emit\":{\"event\":\"a\",\"data\":null}}")) {
        CHECK(json_is_array(reply.emit) && json_array_size(reply.emit) == 1);
        e = json_array_get(reply.emit, 0);
        CHECK(json_is_null(json_object_get(e, "data")));
        CHECK(json_object_get(reply.root, "emit") == reply.emit);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"emit\":{\"event\":\"%s\"}}",
             repeat(ev, 'e', 128));

    if (REPLY_OK(s)) {
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"emit\":{\"event\":\"%s\"}}",
             repeat(ev, 'e', 129));
    REPLY_ERR(s, "\"emit.event\" must be a string of 1-128 bytes");

    REPLY_ERR("{\"emit\":[{\"event\":\"a\"},{\"event\":\"\"}]}",
              "\"emit[1].event\" must be a string of 1-128 bytes");
    REPLY_ERR("{\"emit\":[{\"data\":1}]}",
              "\"emit[0].event\" must be a string of 1-128 bytes");
    REPLY_ERR("{\"emit\":{\"event\":5}}",
              "\"emit.event\" must be a string of 1-128 bytes");
    REPLY_ERR("{\"emit\":[{\"event\":\"a\"},\"b\"]}",
              "\"emit[1]\" must be an object");
    REPLY_ERR("{\"emit\":[[]]}", "\"emit[0]\" must be an object");
    REPLY_ERR("{\"emit\":\"a\"}",
              "\"emit\" must be an object or an array of them");
    REPLY_ERR("{\"emit\":true}",
              "\"emit\" must be an object or an array of them");

    test_end();
}


static void
test_reply_publish(void)
{
    json_t  *e;

    test_begin("reply publish");

    if (REPLY_OK("{\"publish\":[{\"room\":\"battle:1\",\"event\":\"m\","
                 "\"data\":[1],\"except_self\":true},{\"room\":\"r\","
                 "\"event\":\"n\",\"except_self\":false},{\"room\":\"r\","
                 "\"event\":\"o\"}]}"))
    {
        CHECK(json_array_size(reply.publish) == 3);
        e = json_array_get(reply.publish, 0);
        CHECK(json_is_true(json_object_get(e, "except_self")));
        e = json_array_get(reply.publish, 2);
        CHECK(json_object_get(e, "except_self") == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"publish\":{\"room\":\"r\",\"event\":\"m\"}}")) {
        CHECK(json_array_size(reply.publish) == 1);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    REPLY_ERR("{\"publish\":{\"event\":\"m\"}}",
              "\"publish.room\" must be a room name" ROOM_RULE);
    REPLY_ERR("{\"publish\":[{\"room\":\"a b\",\"event\":\"m\"}]}",
              "\"publish[0].room\" must be a room name" ROOM_RULE);
    REPLY_ERR("{\"publish\":[{\"room\":1,\"event\":\"m\"}]}",
              "\"publish[0].room\" must be a room name" ROOM_RULE);
    REPLY_ERR("{\"publish\":[{\"room\":\"r\"}]}",
              "\"publish[0].event\" must be a string of 1-128 bytes");
    REPLY_ERR("{\"publish\":[{\"room\":\"r\",\"event\":\"m\","
              "\"except_self\":1}]}",
              "\"publish[0].except_self\" must be a boolean");
    REPLY_ERR("{\"publish\":{\"room\":\"r\",\"event\":\"m\","
              "\"except_self\":null}}",
              "\"publish.except_self\" must be a boolean");
    REPLY_ERR("{\"publish\":[1]}", "\"publish[0]\" must be an object");
    REPLY_ERR("{\"publish\":\"r\"}",
              "\"publish\" must be an object or an array of them");

    test_end();
}


static void
test_reply_to_user(void)
{
    char  user[300], s[400];

    test_begin("reply to_user");

    if (REPLY_OK("{\"to_user\":[{\"user\":\"u2\",\"event\":\"dm\","
                 "\"data\":\"hi\"}]}"))
    {
        CHECK(json_array_size(reply.to_user) == 1);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"to_user\":{\"user\":\"%s\",\"event\":\"e\"}}",
             repeat(user, 'u', 256));

    if (REPLY_OK(s)) {
        CHECK(json_array_size(reply.to_user) == 1);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"to_user\":{\"user\":\"%s\",\"event\":\"e\"}}",
             repeat(user, 'u', 257));
    REPLY_ERR(s, "\"to_user.user\" must be a string of 1-256 bytes");

    REPLY_ERR("{\"to_user\":[{\"user\":\"\",\"event\":\"e\"}]}",
              "\"to_user[0].user\" must be a string of 1-256 bytes");
    REPLY_ERR("{\"to_user\":[{\"event\":\"e\"}]}",
              "\"to_user[0].user\" must be a string of 1-256 bytes");
    REPLY_ERR("{\"to_user\":[{\"user\":7,\"event\":\"e\"}]}",
              "\"to_user[0].user\" must be a string of 1-256 bytes");
    REPLY_ERR("{\"to_user\":[{\"user\":\"u\"}]}",
              "\"to_user[0].event\" must be a string of 1-128 bytes");
    REPLY_ERR("{\"to_user\":[null]}", "\"to_user[0]\" must be an object");
    REPLY_ERR("{\"to_user\":\"u\"}",
              "\"to_user\" must be an object or an array of them");

    test_end();
}


static void
test_reply_ack(void)
{
    test_begin("reply ack");

    if (REPLY_OK("{\"ack\":null}")) {
        CHECK(reply.has_ack == 1 && json_is_null(reply.ack));
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"ack\":{\"ok\":true,\"n\":[1,2]}}")) {
        CHECK(reply.has_ack == 1);
        CHECK(strcmp(dump(reply.ack), "{\"ok\":true,\"n\":[1,2]}") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"ack\":false}")) {
        CHECK(reply.has_ack == 1 && json_is_false(reply.ack));
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"acks\":1}")) {
        CHECK(reply.has_ack == 0 && reply.ack == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    test_end();
}


static void
test_reply_error(void)
{
    char  code[100], s[300];

    test_begin("reply error");

    if (REPLY_OK("{\"error\":\"NOT_ALLOWED\"}")) {
        CHECK(strcmp(reply.error_code, "NOT_ALLOWED") == 0);
        CHECK(strcmp(reply.error_message, "error") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"error\":{\"code\":\"E_1\",\"message\":\"no \\u00e9\"}}"))
    {
        CHECK(strcmp(reply.error_code, "E_1") == 0);
        CHECK(strcmp(reply.error_message, "no \xc3\xa9") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"error\":{\"code\":\"E\",\"message\":\"\",\"x\":1}}")) {
        CHECK(strcmp(reply.error_message, "") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"error\":{\"code\":\"E\"}}")) {
        CHECK(strcmp(reply.error_message, "error") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"error\":\"%s\"}", repeat(code, 'Z', 64));

    if (REPLY_OK(s)) {
        CHECK(strlen(reply.error_code) == 64);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"error\":\"%s\"}", repeat(code, 'Z', 65));
    REPLY_ERR(s, "\"error\" must be 1-64 bytes of A-Z, 0-9 and _");

    snprintf(s, sizeof(s), "{\"error\":{\"code\":\"%s\"}}",
             repeat(code, '9', 65));
    REPLY_ERR(s, "\"error.code\" must be 1-64 bytes of A-Z, 0-9 and _");

    REPLY_ERR("{\"error\":\"\"}",
              "\"error\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":\"lower\"}",
              "\"error\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":\"A B\"}",
              "\"error\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":\"\\u00c9\"}",
              "\"error\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":{\"code\":\"A-B\"}}",
              "\"error.code\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":{}}",
              "\"error.code\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":{\"code\":5}}",
              "\"error.code\" must be 1-64 bytes of A-Z, 0-9 and _");
    REPLY_ERR("{\"error\":{\"code\":\"E\",\"message\":5}}",
              "\"error.message\" must be a string");
    REPLY_ERR("{\"error\":{\"code\":\"E\",\"message\":null}}",
              "\"error.message\" must be a string");
    REPLY_ERR("{\"error\":5}", "\"error\" must be an object or a code");
    REPLY_ERR("{\"error\":null}", "\"error\" must be an object or a code");
    REPLY_ERR("{\"error\":[\"E\"]}", "\"error\" must be an object or a code");

    test_end();
}


static void
test_reply_meta_user(void)
{
    char  user[300], s[400];

    test_begin("reply meta and user");

    if (REPLY_OK("{\"meta\":{\"role\":\"admin\"},\"user\":\"alice\"}")) {
        CHECK(strcmp(dump(reply.meta), "{\"role\":\"admin\"}") == 0);
        CHECK(bytes_is(reply.user, reply.user_len, "alice"));
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"meta\":{}}")) {
        CHECK(json_is_object(reply.meta) && reply.user == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"user\":\"%s\"}", repeat(user, 'u', 256));

    if (REPLY_OK(s)) {
        CHECK(reply.user_len == 256);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s), "{\"user\":\"%s\"}", repeat(user, 'u', 257));
    REPLY_ERR(s, "\"user\" must be a string of 1-256 bytes");

    REPLY_ERR("{\"user\":\"\"}", "\"user\" must be a string of 1-256 bytes");
    REPLY_ERR("{\"user\":5}", "\"user\" must be a string of 1-256 bytes");
    REPLY_ERR("{\"user\":null}", "\"user\" must be a string of 1-256 bytes");

    REPLY_ERR("{\"meta\":[]}", "\"meta\" must be an object");
    REPLY_ERR("{\"meta\":\"m\"}", "\"meta\" must be an object");
    REPLY_ERR("{\"meta\":null}", "\"meta\" must be an object");

    test_end();
}


static void
test_reply_disconnect(void)
{
    int    i;
    char   reason[200], s[400];

    static const char  *bad_codes[] = {
        "999", "1001", "3999", "5000", "0", "-4000", "\"4000\"", "4000.0",
        "null", "true", "1e3", "99999999999999999", NULL
    };

    test_begin("reply disconnect");

    if (REPLY_OK("{\"disconnect\":true}")) {
        CHECK(reply.disconnect == 1 && reply.disconnect_code == 4000);
        CHECK(reply.disconnect_reason == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"disconnect\":false}")) {
        CHECK(reply_empty() == 0 && reply.disconnect == 0);
        CHECK(reply.disconnect_code == 0 && reply.disconnect_reason == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"disconnect\":{}}")) {
        CHECK(reply.disconnect == 1 && reply.disconnect_code == 4000);
        CHECK(reply.disconnect_reason == NULL);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"disconnect\":{\"code\":1000}}")) {
        CHECK(reply.disconnect == 1 && reply.disconnect_code == 1000);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"disconnect\":{\"code\":4999,\"reason\":\"bye\"}}")) {
        CHECK(reply.disconnect_code == 4999);
        CHECK(strcmp(reply.disconnect_reason, "bye") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (REPLY_OK("{\"disconnect\":{\"reason\":\"\"}}")) {
        CHECK(reply.disconnect_code == 4000);
        CHECK(strcmp(reply.disconnect_reason, "") == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s),
             "{\"disconnect\":{\"code\":4000,\"reason\":\"%s\"}}",
             repeat(reason, 'r', 123));

    if (REPLY_OK(s)) {
        CHECK(strlen(reply.disconnect_reason) == 123);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    snprintf(s, sizeof(s),
             "{\"disconnect\":{\"code\":4000,\"reason\":\"%s\"}}",
             repeat(reason, 'r', 124));
    REPLY_ERR(s, "\"disconnect.reason\" must be a string of at most 123 "
                 "bytes");

    REPLY_ERR("{\"disconnect\":{\"reason\":5}}",
              "\"disconnect.reason\" must be a string of at most 123 bytes");

    for (i = 0; bad_codes[i]; i++) {
        snprintf(s, sizeof(s), "{\"disconnect\":{\"code\":%s}}",
                 bad_codes[i]);
        REPLY_ERR(s, "\"disconnect.code\" must be 1000 or 4000-4999");
    }

    REPLY_ERR("{\"disconnect\":\"yes\"}",
              "\"disconnect\" must be true or an object");
    REPLY_ERR("{\"disconnect\":1}",
              "\"disconnect\" must be true or an object");
    REPLY_ERR("{\"disconnect\":null}",
              "\"disconnect\" must be true or an object");
    REPLY_ERR("{\"disconnect\":[]}",
              "\"disconnect\" must be true or an object");

    test_end();
}


/* "{"<field>":[<n> entries]}" */

static char *
entries(const char *field, const char *entry, unsigned n)
{
    char      *s, *p;
    size_t     size;
    unsigned   i;

    size = strlen(field) + 8 + n * (strlen(entry) + 1);
    s = xmalloc(size);
    p = s + sprintf(s, "{\"%s\":[", field);

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? "," : "", entry);
    }

    strcpy(p, "]}");

    return s;
}


static void
test_reply_limits(void)
{
    int    i;
    char  *s, msg[80];

    static const struct {
        const char  *field;
        const char  *entry;
    } arrays[] = {
        { "leave", "\"r\"" },
        { "join", "\"r\"" },
        { "emit", "{\"event\":\"e\"}" },
        { "publish", "{\"room\":\"r\",\"event\":\"e\"}" },
        { "to_user", "{\"user\":\"u\",\"event\":\"e\"}" },
        { NULL, NULL }
    };

    test_begin("reply limits");

    for (i = 0; arrays[i].field; i++) {
        s = entries(arrays[i].field, arrays[i].entry, 64);

        if (REPLY_OK(s)) {
            CHECK(json_array_size(json_object_get(reply.root,
                                                  arrays[i].field)) == 64);
            ngx_http_realtime_forward_reply_free(&reply);
        }

        free(s);

        s = entries(arrays[i].field, arrays[i].entry, 65);
        snprintf(msg, sizeof(msg), "\"%s\" has more than 64 entries",
                 arrays[i].field);
        REPLY_ERR(s, msg);
        free(s);
    }

    test_end();
}


static const char  *full_reply =
    "{\"leave\":\"lobby\",\"join\":[\"battle:1\",\"user:u1\"],"
    "\"emit\":{\"event\":\"joined\",\"data\":{\"n\":2}},"
    "\"publish\":[{\"room\":\"battle:1\",\"event\":\"arrived\","
    "\"data\":{\"who\":\"u1\"},\"except_self\":true}],"
    "\"to_user\":{\"user\":\"u2\",\"event\":\"dm\",\"data\":\"hi\"},"
    "\"ack\":{\"ok\":true},\"error\":{\"code\":\"SOFT\",\"message\":\"m\"},"
    "\"meta\":{\"hp\":10},\"user\":\"u1\","
    "\"disconnect\":{\"code\":4001,\"reason\":\"done\"}}";


static void
test_reply_full(void)
{
    char  *s;

    test_begin("reply with every field");

    if (REPLY_OK(full_reply)) {
        CHECK(json_array_size(reply.leave) == 1);
        CHECK(json_array_size(reply.join) == 2);
        CHECK(json_array_size(reply.emit) == 1);
        CHECK(json_array_size(reply.publish) == 1);
        CHECK(json_array_size(reply.to_user) == 1);
        CHECK(reply.has_ack && json_is_object(reply.ack));
        CHECK(strcmp(reply.error_code, "SOFT") == 0);
        CHECK(strcmp(reply.error_message, "m") == 0);
        CHECK(json_is_object(reply.meta));
        CHECK(bytes_is(reply.user, reply.user_len, "u1"));
        CHECK(reply.disconnect == 1 && reply.disconnect_code == 4001);
        CHECK(strcmp(reply.disconnect_reason, "done") == 0);

        /* the normalized root reads back the same */

        s = xmalloc(strlen(dump(reply.root)) + 1);
        strcpy(s, dump(reply.root));
        ngx_http_realtime_forward_reply_free(&reply);

        if (REPLY_OK(s)) {
            CHECK(strcmp(dump(reply.root), s) == 0);
            ngx_http_realtime_forward_reply_free(&reply);
        }

        free(s);
    }

    /* an error after single values were replaced frees all (LSan) */

    REPLY_ERR("{\"leave\":\"a\",\"join\":\"b\",\"emit\":{\"event\":\"e\"},"
              "\"user\":\"\"}", "\"user\" must be a string of 1-256 bytes");

    test_end();
}


/* every prefix of a valid reply parses or fails cleanly */

static void
test_reply_truncation(void)
{
    int          rc;
    size_t       i, n, k;

    static const char  *replies[] = {
        "{\"join\":\"lobby\",\"emit\":[{\"event\":\"e\",\"data\":[1,2.5]}]}",
        "{\"error\":\"E\",\"disconnect\":true,\"ack\":\"\\u00e9\"}",
        "{\"publish\":{\"room\":\"r\",\"event\":\"m\",\"except_self\":false},"
        "\"to_user\":[{\"user\":\"u\",\"event\":\"e\"}],\"meta\":{}}\n",
        NULL
    };

    test_begin("reply truncation");

    for (k = 0; replies[k]; k++) {
        n = strlen(replies[k]);

        for (i = 0; i <= n; i++) {
            rc = parse(replies[k], i);

            CHECK(rc == 0 || rc == -1);

            if (rc == 0) {
                /* only nothing at all, or the whole of it */
                CHECK(i == 0 || i >= n - 1);
                ngx_http_realtime_forward_reply_free(&reply);

            } else {
                CHECK(reply.root == NULL);
                CHECK(err.code && strcmp(err.code, BAD) == 0);
                CHECK(memchr(err.message, '\0', sizeof(err.message))
                      != NULL && printable(err.message));
            }
        }

        CHECK(parse(replies[k], n) == 0);
        ngx_http_realtime_forward_reply_free(&reply);
    }

    if (parse(full_reply, strlen(full_reply)) == 0) {
        ngx_http_realtime_forward_reply_free(&reply);
    }

    for (i = 1; i < strlen(full_reply); i++) {
        CHECK(parse(full_reply, i) == -1);
        CHECK(reply.root == NULL);
    }

    test_end();
}


/* routes */

static char         route_buf[65];
static const char  *route_missing;
static size_t       route_missing_len;


#define EXPAND_OK(tpl, data, user, expect)                                    \
    expand_ok(__LINE__, tpl, data, user, expect)
#define EXPAND_MISSING(tpl, data, user, name)                                 \
    expand_missing(__LINE__, tpl, data, user, name)


/* expands into a buffer of exactly size bytes, then checks the guard */

static int
expand(const char *tpl, json_t *data, const char *user, size_t size)
{
    int     rc;
    char   *t;
    size_t  i;

    snprintf(test_where, sizeof(test_where), "%s", tpl);

    t = xmalloc(strlen(tpl));
    memcpy(t, tpl, strlen(tpl));

    memset(route_buf, '#', sizeof(route_buf));
    route_missing = NULL;
    route_missing_len = 0;

    rc = ngx_http_realtime_route_expand(t, strlen(tpl), data, user,
                                        user ? strlen(user) : 0, route_buf,
                                        size, &route_missing,
                                        &route_missing_len);

    if (rc == -1) {
        /* points into the template: report it as an offset in tpl */
        if (route_missing >= t && route_missing <= t + strlen(tpl)) {
            route_missing = tpl + (route_missing - t);

        } else {
            route_missing = "(outside the template)";
        }
    }

    free(t);

    /* nothing written past size */

    for (i = size; i < sizeof(route_buf); i++) {
        CHECK(route_buf[i] == '#');
    }

    return rc;
}


static void
expand_ok(int line, const char *tpl, json_t *data, const char *user,
    const char *expect)
{
    int     rc;
    size_t  n;

    n = strlen(expect);

    rc = expand(tpl, data, user, sizeof(route_buf) - 1);
    CHECK_AT(line, rc == (int) n);
    CHECK_AT(line, rc >= 0 && memcmp(route_buf, expect, n) == 0);

    if (rc != (int) n || memcmp(route_buf, expect, n) != 0) {
        printf("      got %d %.*s\n", rc, rc > 0 ? rc : 0, route_buf);
    }

    /* exactly the size fits, a byte less does not */

    CHECK_AT(line, expand(tpl, data, user, n) == (int) n);
    CHECK_AT(line, memcmp(route_buf, expect, n) == 0);

    if (n) {
        CHECK_AT(line, expand(tpl, data, user, n - 1) == -2);
        CHECK_AT(line, expand(tpl, data, user, 0) == -2);
    }
}


static void
expand_missing(int line, const char *tpl, json_t *data, const char *user,
    const char *name)
{
    size_t  size;

    /* whatever the size: a missing field is not an overflow */

    for (size = 0; size < sizeof(route_buf); size += 32) {
        CHECK_AT(line, expand(tpl, data, user, size) == -1);
        CHECK_AT(line, route_missing != NULL
                       && route_missing_len == strlen(name)
                       && memcmp(route_missing, name, strlen(name)) == 0);
    }
}


static void
test_route_expand(void)
{
    json_t  *data;

    test_begin("route expand");

    data = json_loads("{\"battleId\":\"b1\",\"n\":42,\"neg\":-7,"
                      "\"big\":9223372036854775807,"
                      "\"a\":{\"b\":{\"c\":\"deep\"},\"s\":\"x\",\"i\":3},"
                      "\"user\":\"not-this\",\"u8\":\"\xc3\xa9\","
                      "\"f\":1.5,\"t\":true,\"z\":null,\"o\":{},\"l\":[1],"
                      "\"e\":\"\",\"a.b\":\"dotted\",\"x-y_z\":\"ok\"}", 0,
                      NULL);
    CHECK(data != NULL);

    EXPAND_OK("battle:{battleId}", data, NULL, "battle:b1");
    EXPAND_OK("{battleId}", data, NULL, "b1");
    EXPAND_OK("r:{n}:{neg}", data, NULL, "r:42:-7");
    EXPAND_OK("{big}", data, NULL, "9223372036854775807");
    EXPAND_OK("{a.b.c}/{a.s}/{a.i}", data, NULL, "deep/x/3");
    EXPAND_OK("u:{user}", data, "alice", "u:alice");
    EXPAND_OK("{user}{user}", data, "bo", "bobo");
    EXPAND_OK("{u8}", data, NULL, "\xc3\xa9");
    EXPAND_OK("e{e}e", data, NULL, "ee");
    EXPAND_OK("{x-y_z}", data, NULL, "ok");
    EXPAND_OK("plain", data, NULL, "plain");
    EXPAND_OK("plain", NULL, NULL, "plain");
    EXPAND_OK("", NULL, NULL, "");
    EXPAND_OK("{{n}", data, NULL, "{n}");
    EXPAND_OK("a{{{n}}}", data, NULL, "a{42}}");
    EXPAND_OK("{{{{", data, NULL, "{{");
    EXPAND_OK("}", data, NULL, "}");

    EXPAND_MISSING("battle:{battleId2}", data, NULL, "battleId2");
    EXPAND_MISSING("{a.b.d}", data, NULL, "a.b.d");
    EXPAND_MISSING("{a.s.x}", data, NULL, "a.s.x");
    EXPAND_MISSING("{a.b}", data, NULL, "a.b");
    EXPAND_MISSING("{f}", data, NULL, "f");
    EXPAND_MISSING("{t}", data, NULL, "t");
    EXPAND_MISSING("{z}", data, NULL, "z");
    EXPAND_MISSING("{o}", data, NULL, "o");
    EXPAND_MISSING("{l}", data, NULL, "l");
    EXPAND_MISSING("{user}", data, NULL, "user");
    EXPAND_MISSING("{n}", NULL, "u", "n");
    EXPAND_MISSING("{n}", json_array_get(json_object_get(data, "l"), 0),
                   "u", "n");
    EXPAND_MISSING("{n}:{nope}", data, NULL, "nope");

    /* the first problem wins, an overflow before it does not */
    EXPAND_MISSING("0123456789012345678901234567890123456789"
                   "0123456789012345678901234567890123456789{nope}{n}",
                   data, NULL, "nope");

    /* what check() refuses */
    EXPAND_MISSING("a{", data, NULL, "");
    EXPAND_MISSING("a{n", data, NULL, "n");
    EXPAND_MISSING("{}", data, NULL, "");
    EXPAND_MISSING("{n m}", data, NULL, "n m");
    EXPAND_MISSING("{.n}", data, NULL, ".n");
    EXPAND_MISSING("{n.}", data, NULL, "n.");
    EXPAND_MISSING("{a..b}", data, NULL, "a..b");
    EXPAND_MISSING("{n{n}}", data, NULL, "n{n");

    /* a string field holding braces is not expanded again */
    json_object_set_new(data, "br", json_string("{n}"));
    EXPAND_OK("{br}", data, NULL, "{n}");

    /* long results */
    json_object_set_new(data, "long", json_string(
        "0123456789012345678901234567890123456789012345678901234567890123"));
    CHECK(expand("{long}", data, NULL, 64) == 64);
    CHECK(expand("{long}x", data, NULL, 64) == -2);
    CHECK(expand("x{long}", data, NULL, 64) == -2);

    /* a size beyond INT_MAX: the length still fits the int returned */
    CHECK(ngx_http_realtime_route_expand("r:{n}", 5, data, NULL, 0,
                                         route_buf, (size_t) -1,
                                         &route_missing, &route_missing_len)
          == 4);
    CHECK(memcmp(route_buf, "r:42", 4) == 0);

    json_decref(data);

    test_end();
}


static void
test_route_check(void)
{
    int  i;

    static const char  *good[] = {
        "battle:{battleId}", "x", "{a.b}", "{{", "a}b", "{user}",
        "{a-b_c.D9}", "{{}", "{{{a}", "{a}{b}", "}}", NULL
    };

    static const char  *bad[] = {
        "", "{", "{}", "{a", "{a b}", "{.a}", "{a.}", "{a..b}", "{{{",
        "x{", "{a}{", "{\xc3\xa9}", "{a:b}", "{{a}{}", NULL
    };

    test_begin("route check");

    for (i = 0; good[i]; i++) {
        snprintf(test_where, sizeof(test_where), "%s", good[i]);
        CHECK(ngx_http_realtime_route_check(good[i], strlen(good[i])) == 0);
    }

    for (i = 0; bad[i]; i++) {
        snprintf(test_where, sizeof(test_where), "%s", bad[i]);
        CHECK(ngx_http_realtime_route_check(bad[i], strlen(bad[i])) == -1);
    }

    /* the length is what counts */

    CHECK(ngx_http_realtime_route_check("{a}{b", 3) == 0);
    CHECK(ngx_http_realtime_route_check("{a}", 2) == -1);

    test_end();
}


/* allocation failures: jansson's allocator fails after alloc_left calls */

static long  alloc_left;


static void *
alloc_fail(size_t size)
{
    if (alloc_left == 0) {
        return NULL;
    }

    alloc_left--;

    return malloc(size);
}


static void
test_alloc_failure(void)
{
    int      rc, failed;
    long     k;
    json_t  *data, *rooms, *meta, *json;

    static const char  body[] =
        "{\"join\":\"a\",\"leave\":[\"b\"],\"emit\":{\"event\":\"e\","
        "\"data\":[1]},\"to_user\":{\"user\":\"u\",\"event\":\"e\"},"
        "\"publish\":{\"room\":\"r\",\"event\":\"e\"}}";

    test_begin("allocation failures");

    data = json_pack("{s:s}", "text", "hi");
    rooms = json_pack("[s]", "lobby");
    meta = json_object();

    failed = 0;

    for (k = 0; k < 1000; k++) {
        alloc_left = k;
        json_set_alloc_funcs(alloc_fail, free);

        json = ngx_http_realtime_forward_request("chat", 4, data, 1, "c", 1,
                                                 "u", 1, rooms, "socket.io",
                                                 "/", 1, meta);
        json_set_alloc_funcs(malloc, free);

        if (json) {
            break;
        }

        failed++;
    }

    CHECK(failed > 3 && k < 1000);
    CHECK_JSON(json, "{\"event\":\"chat\",\"data\":{\"text\":\"hi\"},"
                     "\"id\":1,\"connection\":\"c\",\"user\":\"u\","
                     "\"rooms\":[\"lobby\"],\"protocol\":\"socket.io\","
                     "\"nsp\":\"/\",\"meta\":{}}");
    CHECK(data->refcount == 1 && rooms->refcount == 1
          && meta->refcount == 1);

    failed = 0;

    for (k = 0; k < 1000; k++) {
        alloc_left = k;
        json_set_alloc_funcs(alloc_fail, free);

        rc = parse(body, sizeof(body) - 1);

        json_set_alloc_funcs(malloc, free);

        if (rc == 0) {
            break;
        }

        CHECK(rc == -1 && reply.root == NULL);
        CHECK(err.code && strcmp(err.code, BAD) == 0);
        CHECK(printable(err.message));
        failed++;
    }

    CHECK(failed > 3 && k < 1000);
    CHECK(rc == 0 && json_array_size(reply.publish) == 1);
    ngx_http_realtime_forward_reply_free(&reply);

    json_decref(data);
    json_decref(rooms);
    json_decref(meta);

    test_end();
}


int
main(void)
{
    test_request_native();
    test_request_sio();
    test_request_connect();
    test_reply_empty();
    test_reply_json();
    test_reply_rooms();
    test_reply_emit();
    test_reply_publish();
    test_reply_to_user();
    test_reply_ack();
    test_reply_error();
    test_reply_meta_user();
    test_reply_disconnect();
    test_reply_limits();
    test_reply_full();
    test_reply_truncation();
    test_route_expand();
    test_route_check();
    test_alloc_failure();

    return test_summary();
}
