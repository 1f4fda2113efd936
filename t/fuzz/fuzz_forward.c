
/*
 * Copyright (C) ngx-realtime developers
 *
 * libFuzzer target of the backend forwarding codec.  The input is a
 * reply body: an error leaves the reply empty with a printable ASCII
 * message; a parsed reply has every array field an array of at most 64
 * valid entries, the very value root holds under its name, an error
 * code of [A-Z0-9_]{1,64}, a disconnect code of 1000 or 4000-4999, and
 * its root serialized again parses to the same reply.  A request built
 * from what the reply holds serializes and reads back equal.
 *
 * The same input, split at its first "\n" into a route template and
 * the JSON data, is expanded against a character-at-a-time reference
 * at the exact size it needs, a byte less and none at all, with and
 * without a user; check() refusing a non-empty template means expand()
 * fails.  Any broken invariant aborts.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_realtime_forward_codec.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const ngx_http_realtime_forward_reply_t  fuzz_zero;


static int
fuzz_string(json_t *json, size_t max)
{
    return json_is_string(json) && json_string_length(json) >= 1
           && json_string_length(json) <= max
           && strlen(json_string_value(json)) == json_string_length(json);
}


static int
fuzz_room(json_t *json)
{
    return json_is_string(json)
           && ngx_http_realtime_room_valid(json_string_value(json),
                                           json_string_length(json));
}


/* an array field: root's own value, its entries as the kind says */

static void
fuzz_array(json_t *root, const char *name, json_t *array, char kind)
{
    size_t   i;
    json_t  *entry, *v;

    ensure(json_object_get(root, name) == array);

    if (array == NULL) {
        return;
    }

    ensure(json_is_array(array));
    ensure(json_array_size(array) <= NGX_HTTP_REALTIME_FORWARD_ENTRIES_MAX);

    json_array_foreach(array, i, entry) {
        if (kind == 'r') {
            ensure(fuzz_room(entry));
            continue;
        }

        ensure(json_is_object(entry));
        ensure(fuzz_string(json_object_get(entry, "event"), 128));

        if (kind == 'p') {
            ensure(fuzz_room(json_object_get(entry, "room")));
            v = json_object_get(entry, "except_self");
            ensure(v == NULL || json_is_boolean(v));
        }

        if (kind == 'u') {
            ensure(fuzz_string(json_object_get(entry, "user"), 256));
        }
    }
}


static void
fuzz_reply_check(ngx_http_realtime_forward_reply_t *r)
{
    size_t       i;
    json_t      *v;
    const char  *p;

    ensure(json_is_object(r->root));
    ensure(r->root->refcount == 1);

    fuzz_array(r->root, "leave", r->leave, 'r');
    fuzz_array(r->root, "join", r->join, 'r');
    fuzz_array(r->root, "emit", r->emit, 'e');
    fuzz_array(r->root, "publish", r->publish, 'p');
    fuzz_array(r->root, "to_user", r->to_user, 'u');

    v = json_object_get(r->root, "ack");
    ensure(r->has_ack == (v != NULL) && r->ack == v);

    if (json_object_get(r->root, "error") == NULL) {
        ensure(r->error_code == NULL && r->error_message == NULL);

    } else {
        p = r->error_code;
        ensure(p != NULL && r->error_message != NULL);
        ensure(strlen(p) >= 1 && strlen(p) <= 64);

        for (i = 0; p[i]; i++) {
            ensure((p[i] >= 'A' && p[i] <= 'Z')
                   || (p[i] >= '0' && p[i] <= '9') || p[i] == '_');
        }
    }

    v = json_object_get(r->root, "meta");
    ensure(r->meta == v && (v == NULL || json_is_object(v)));

    v = json_object_get(r->root, "user");
    ensure((v == NULL && r->user == NULL && r->user_len == 0)
           || (fuzz_string(v, 256) && r->user == json_string_value(v)
               && r->user_len == json_string_length(v)));

    if (!r->disconnect) {
        ensure(r->disconnect_code == 0 && r->disconnect_reason == NULL);
        v = json_object_get(r->root, "disconnect");
        ensure(v == NULL || json_is_false(v));

    } else {
        ensure(r->disconnect == 1);
        ensure(r->disconnect_code == 1000
               || (r->disconnect_code >= 4000 && r->disconnect_code <= 4999));
        ensure(r->disconnect_reason == NULL
               || strlen(r->disconnect_reason) <= 123);
    }
}


static void
fuzz_same(ngx_http_realtime_forward_reply_t *a,
    ngx_http_realtime_forward_reply_t *b)
{
    ensure(json_equal(a->root, b->root));
    ensure(a->has_ack == b->has_ack);
    ensure((a->error_code == NULL) == (b->error_code == NULL));
    ensure(a->error_code == NULL
           || (strcmp(a->error_code, b->error_code) == 0
               && strcmp(a->error_message, b->error_message) == 0));
    ensure(a->user_len == b->user_len);
    ensure(a->disconnect == b->disconnect);
    ensure(a->disconnect_code == b->disconnect_code);
    ensure((a->disconnect_reason == NULL) == (b->disconnect_reason == NULL));
}


/* a request from what the reply holds reads back equal */

static void
fuzz_request(ngx_http_realtime_forward_reply_t *r, size_t size)
{
    char        *buf;
    size_t       n;
    json_t      *req, *back, *emit, *event;

    emit = json_array_get(r->emit, 0);
    event = json_object_get(emit, "event");

    req = ngx_http_realtime_forward_request(
              json_string_value(event), json_string_length(event),
              json_object_get(emit, "data"), (json_int_t) size - 2,
              "c", 1, r->user, r->user_len, r->join,
              (size & 1) ? "native" : "socket.io",
              r->error_code, r->error_code ? strlen(r->error_code) : 0,
              r->meta);
    ensure(req != NULL);
    ensure(req->refcount == 1);

    n = ngx_http_realtime_json_dump(req, NULL, 0);
    ensure(n > 0);
    buf = malloc(n);
    ensure(buf != NULL);
    ensure(ngx_http_realtime_json_dump(req, buf, n) == n);

    back = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
    ensure(back != NULL && json_equal(req, back));
    ensure((event != NULL) == (json_object_get(back, "event") != NULL));
    ensure((event != NULL && size >= 2)
           == (json_object_get(back, "id") != NULL));
    ensure(json_is_array(json_object_get(back, "rooms")));

    json_decref(back);
    json_decref(req);
    free(buf);
}


static void
fuzz_reply(const char *p, size_t len)
{
    int                                 rc;
    char                               *buf;
    size_t                              i, n;
    ngx_http_realtime_cmd_error_t       err;
    ngx_http_realtime_forward_reply_t   reply, again;

    err.code = NULL;
    rc = ngx_http_realtime_forward_reply_parse(&reply, p, len, &err);

    if (rc != 0) {
        ensure(rc == -1);
        ensure(memcmp(&reply, &fuzz_zero, sizeof(reply)) == 0);
        ensure(err.code && strcmp(err.code, "BACKEND_BAD_REPLY") == 0);
        ensure(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        ensure(err.message[0] != '\0');

        for (i = 0; err.message[i]; i++) {
            ensure(err.message[i] >= 0x20 && err.message[i] < 0x7f);
        }

        return;
    }

    if (reply.root == NULL) {
        ensure(memcmp(&reply, &fuzz_zero, sizeof(reply)) == 0);

        for (i = 0; i < len; i++) {
            ensure(p[i] == ' ' || p[i] == '\t' || p[i] == '\r'
                   || p[i] == '\n');
        }

        return;
    }

    fuzz_reply_check(&reply);

    /* the normalized root is a reply that parses to the same */

    n = ngx_http_realtime_json_dump(reply.root, NULL, 0);
    ensure(n > 0);
    buf = malloc(n);
    ensure(buf != NULL);
    ensure(ngx_http_realtime_json_dump(reply.root, buf, n) == n);

    ensure(ngx_http_realtime_forward_reply_parse(&again, buf, n, &err) == 0);
    fuzz_reply_check(&again);
    fuzz_same(&reply, &again);

    fuzz_request(&reply, len);

    ngx_http_realtime_forward_reply_free(&again);
    ngx_http_realtime_forward_reply_free(&reply);
    ensure(memcmp(&reply, &fuzz_zero, sizeof(reply)) == 0);
    ngx_http_realtime_forward_reply_free(&reply);

    free(buf);
}


/* the route reference: a growing output, one character at a time */

typedef struct {
    char         *buf;
    size_t        len;
    size_t        size;
    const char   *missing;
    size_t        missing_len;
} fuzz_out_t;


static void
fuzz_put(fuzz_out_t *out, const char *p, size_t len)
{
    if (len == 0) {
        return;   /* out->buf may still be NULL: no offset on it */
    }

    while (out->len + len > out->size) {
        out->size = out->size * 2 + 16;
        out->buf = realloc(out->buf, out->size);
        ensure(out->buf != NULL);
    }

    memcpy(out->buf + out->len, p, len);
    out->len += len;
}


static int
fuzz_name_ok(const char *p, size_t len)
{
    size_t  i;

    if (len == 0 || p[0] == '.' || p[len - 1] == '.') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] == '.' && p[i + 1] == '.') {
            return 0;
        }

        if (p[i] == '\0' || strchr("abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_-.", p[i]) == NULL)
        {
            return 0;
        }
    }

    return 1;
}


/* data.a.b for "a.b", each part copied to a C string */

static json_t *
fuzz_lookup(json_t *data, const char *p, size_t len)
{
    char    *key;
    size_t   i, k;

    key = malloc(len + 1);
    ensure(key != NULL);
    k = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && p[i] != '.') {
            key[k++] = p[i];
            continue;
        }

        key[k] = '\0';
        k = 0;
        data = json_is_object(data) ? json_object_get(data, key) : NULL;
    }

    free(key);

    return data;
}


static int
fuzz_ref(const char *tpl, size_t len, json_t *data, const char *user,
    fuzz_out_t *out)
{
    char         num[32];
    size_t       i, j;
    json_t      *v;
    const char  *name;

    i = 0;

    while (i < len) {
        if (tpl[i] != '{') {
            fuzz_put(out, &tpl[i++], 1);
            continue;
        }

        if (i + 1 < len && tpl[i + 1] == '{') {
            fuzz_put(out, "{", 1);
            i += 2;
            continue;
        }

        for (j = i + 1; j < len && tpl[j] != '}'; j++) {
            /* void */
        }

        name = tpl + i + 1;
        out->missing = name;
        out->missing_len = j - i - 1;

        if (j == len || !fuzz_name_ok(name, j - i - 1)) {
            return -1;
        }

        if (j - i - 1 == 4 && strncmp(name, "user", 4) == 0) {
            if (user == NULL) {
                return -1;
            }

            fuzz_put(out, user, strlen(user));

        } else {
            v = fuzz_lookup(data, name, j - i - 1);

            if (json_is_string(v)) {
                fuzz_put(out, json_string_value(v), json_string_length(v));

            } else if (json_is_integer(v)) {
                snprintf(num, sizeof(num), "%lld",
                         (long long) json_integer_value(v));
                fuzz_put(out, num, strlen(num));

            } else {
                return -1;
            }
        }

        i = j + 1;
    }

    return 0;
}


static void
fuzz_expand(const char *tpl, size_t len, json_t *data, const char *user,
    int check)
{
    int          rc, ref;
    char        *buf;
    size_t       size, sizes[3], k, mlen;
    fuzz_out_t   out;
    const char  *missing;

    memset(&out, 0, sizeof(fuzz_out_t));
    ref = fuzz_ref(tpl, len, data, user, &out);

    if (check != 0 && len > 0) {
        ensure(ref == -1);
    }

    if (ref == -1 && check == 0) {
        /* a field of a valid name, missing or of a wrong type */
        ensure(out.missing > tpl && out.missing[-1] == '{');
        ensure(out.missing + out.missing_len < tpl + len
               && out.missing[out.missing_len] == '}');
    }

    sizes[0] = out.len;
    sizes[1] = out.len ? out.len - 1 : 0;
    sizes[2] = 0;

    for (k = 0; k < 3; k++) {
        size = sizes[k];

        /* exactly the size: ASan sees any write past it */
        buf = malloc(size ? size : 1);
        ensure(buf != NULL);

        missing = NULL;
        mlen = (size_t) -1;

        rc = ngx_http_realtime_route_expand(tpl, len, data, user,
                                            user ? strlen(user) : 0,
                                            buf, size, &missing, &mlen);

        if (ref == -1) {
            ensure(rc == -1);
            ensure(missing == out.missing && mlen == out.missing_len);

        } else if (size >= out.len) {
            ensure(rc == (int) out.len);
            ensure(out.len == 0 || memcmp(buf, out.buf, out.len) == 0);

        } else {
            ensure(rc == -2);
        }

        free(buf);
    }

    free(out.buf);
}


static void
fuzz_route(const char *p, size_t len)
{
    int          check;
    char        *tpl;
    size_t       tpl_len;
    json_t      *data;
    const char  *nl;

    nl = memchr(p, '\n', len);
    tpl_len = nl ? (size_t) (nl - p) : len;
    data = nl ? json_loadb(nl + 1, len - tpl_len - 1,
                           JSON_DECODE_ANY|JSON_REJECT_DUPLICATES, NULL)
              : NULL;

    /* a template of exactly its length */

    tpl = malloc(tpl_len ? tpl_len : 1);
    ensure(tpl != NULL);
    memcpy(tpl, p, tpl_len);

    check = ngx_http_realtime_route_check(tpl, tpl_len);
    ensure(check == 0 || check == -1);
    ensure(tpl_len > 0 || check == -1);

    fuzz_expand(tpl, tpl_len, data, "alice", check);
    fuzz_expand(tpl, tpl_len, data, NULL, check);

    free(tpl);

    if (data) {
        json_decref(data);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reply((const char *) data, size);
    fuzz_route((const char *) data, size);

    return 0;
}
