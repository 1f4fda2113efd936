
/*
 * Copyright (C) ngx-realtime developers
 *
 * The push API: POST /sendPayload from backend services, to a user, a
 * room or everyone (the judge service's contract, extended).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>

#include "ngx_http_realtime_module.h"


static ngx_int_t ngx_http_realtime_push_check(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf);
static void ngx_http_realtime_push_body(ngx_http_request_t *r);
static u_char *ngx_http_realtime_push_read(ngx_http_request_t *r,
    size_t *len);
/* a push request whose user answers wait for other instances */
typedef struct {
    ngx_http_request_t            *request;
    json_t                        *answer;
    ngx_uint_t                     status;
    ngx_uint_t                     pending;
    ngx_queue_t                    waits;      /* push_wait_t */
    ngx_event_t                    wait_timer;
    ngx_http_realtime_ipc_flow_t   flow;
    unsigned                       batch:1;
    unsigned                       cleanup:1;
} ngx_http_realtime_push_ctx_t;


typedef struct {
    ngx_http_realtime_push_ctx_t  *ctx;
    json_t                        *answer;
    ngx_uint_t                     local;
} ngx_http_realtime_push_lookup_t;


/*
 * An item waiting for Redis to run its publication: allocated apart from
 * the request, which may end first (its pool's cleanup sets ctx NULL);
 * Redis's answer frees it.
 */
typedef struct {
    ngx_http_realtime_published_t  published;
    ngx_queue_t                    queue;
    ngx_http_realtime_push_ctx_t  *ctx;
    json_t                        *answer;
} ngx_http_realtime_push_wait_t;


static json_t *ngx_http_realtime_push_item(
    ngx_http_realtime_push_ctx_t *ctx, ngx_http_realtime_loc_conf_t *rlcf,
    json_t *item, ngx_uint_t *status, ngx_str_t *user, ngx_uint_t *local);
static void ngx_http_realtime_push_published(void *data, ngx_int_t rc);
static void ngx_http_realtime_push_unconfirmed(
    ngx_http_realtime_push_wait_t *pw);
static void ngx_http_realtime_push_wait_timeout(ngx_event_t *ev);
static void ngx_http_realtime_push_cleanup(void *data);
static ngx_int_t ngx_http_realtime_push_cleanup_add(
    ngx_http_realtime_push_ctx_t *ctx);
static void ngx_http_realtime_push_flow(ngx_http_realtime_push_ctx_t *ctx,
    ngx_http_realtime_loc_conf_t *rlcf);
static void ngx_http_realtime_push_flowed(ngx_http_realtime_ipc_flow_t *flow);
static void ngx_http_realtime_push_wait_free(
    ngx_http_realtime_push_wait_t *pw);
static ngx_int_t ngx_http_realtime_push_wait(
    ngx_http_realtime_push_ctx_t *ctx, ngx_http_realtime_loc_conf_t *rlcf,
    ngx_http_realtime_push_wait_t *pw);
static void ngx_http_realtime_push_done(ngx_http_realtime_push_ctx_t *ctx);
static void ngx_http_realtime_push_remote(ngx_http_realtime_push_ctx_t *ctx,
    json_t *answer, ngx_str_t *user, ngx_uint_t local);
static void ngx_http_realtime_push_remote_handler(void *data, json_t *users,
    ngx_uint_t sockets, ngx_int_t rc);
static json_t *ngx_http_realtime_push_answer(ngx_uint_t *status,
    ngx_uint_t code, const char *error, const char *error_code);


static const char  *ngx_http_realtime_push_fields[] = {
    "userId", "room", "broadcast", "except", "topic", "event", "payload",
    NULL
};


ngx_int_t
ngx_http_realtime_push_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_realtime_loc_conf_t  *rlcf;

    rc = ngx_http_realtime_jwt_wait_keys(r, 1, ngx_http_realtime_push_handler);
    if (rc != NGX_OK) {
        return rc;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    rc = ngx_http_realtime_push_check(r, rlcf);
    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : rc;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_realtime_push_body);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        r->keepalive = 0;
        return ngx_http_realtime_send_error(r, rc, "PAYLOAD_TOO_LARGE",
                         "the body is larger than client_max_body_size");
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_realtime_push_check(ngx_http_request_t *r,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                 *secret, *type;
    ngx_table_elt_t           *h;
    ngx_http_core_loc_conf_t  *clcf;

    if (r->method != NGX_HTTP_POST) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");

        return ngx_http_realtime_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                            "METHOD_NOT_ALLOWED",
                                            "use POST");
    }

    secret = &rlcf->push_secret;

    if (secret->len) {
        h = r->headers_in.authorization;

        if (h == NULL
            || h->value.len != sizeof("Bearer ") - 1 + secret->len
            || ngx_strncasecmp(h->value.data, (u_char *) "Bearer ", 7) != 0
            || CRYPTO_memcmp(h->value.data + 7, secret->data, secret->len)
               != 0)
        {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            h->hash = 1;
            ngx_str_set(&h->key, "WWW-Authenticate");
            ngx_str_set(&h->value, "Bearer");

            return ngx_http_realtime_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                                "UNAUTHORIZED",
                                                "a valid push secret is "
                                                "required");
        }
    }

    rc = ngx_http_realtime_jwt_push(r);
    if (rc != NGX_OK) {
        return rc;
    }

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;
    len = sizeof("application/json") - 1;

    if (type == NULL || type->len < len
        || ngx_strncasecmp(type->data, (u_char *) "application/json", len)
           != 0
        || (type->len > len && type->data[len] != ';'
            && type->data[len] != ' '))
    {
        return ngx_http_realtime_refuse(r,
                                            NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                            "UNSUPPORTED_MEDIA_TYPE",
                                            "Content-Type must be "
                                            "application/json");
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->client_max_body_size
        && r->headers_in.content_length_n > clcf->client_max_body_size)
    {
        r->keepalive = 0;
        return ngx_http_realtime_refuse(r,
                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                         "PAYLOAD_TOO_LARGE",
                         "the body is larger than client_max_body_size");
    }

    return NGX_OK;
}


static void
ngx_http_realtime_push_body(ngx_http_request_t *r)
{
    u_char                        *body, *p;
    size_t                         len, i;
    json_t                        *root, *answer, *answers, *item;
    ngx_str_t                      user;
    ngx_uint_t                     status, item_status, local;
    json_error_t                   error;
    ngx_http_realtime_push_ctx_t  *ctx;
    ngx_http_realtime_loc_conf_t  *rlcf;
    char                           message[200];

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_push_ctx_t));
    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->request = r;
    ngx_queue_init(&ctx->waits);

    body = ngx_http_realtime_push_read(r, &len);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    root = json_loadb((char *) body, len,
                      JSON_REJECT_DUPLICATES|JSON_DECODE_ANY, &error);

    if (root == NULL) {
        (void) ngx_snprintf((u_char *) message, sizeof(message) - 1,
                            "invalid JSON at line %d, column %d, "
                            "position %d: %s%Z", error.line, error.column,
                            error.position, error.text);
        message[sizeof(message) - 1] = '\0';

        /* jansson quotes the input, maybe cut inside a UTF-8 sequence */

        for (p = (u_char *) message; *p; p++) {
            if (*p >= 0x80) {
                *p = '?';
            }
        }

        answer = json_pack("{s:s, s:s, s:i, s:i, s:i}",
                           "error", message, "code", "INVALID_JSON",
                           "line", error.line, "column", error.column,
                           "position", error.position);

        ngx_http_finalize_request(r,
            ngx_http_realtime_send_json_response(r, NGX_HTTP_BAD_REQUEST,
                                                 answer));
        json_decref(answer);
        return;
    }

    if (!json_is_array(root)) {
        answer = ngx_http_realtime_push_item(ctx, rlcf, root, &status,
                                             &user, &local);
        ctx->answer = answer;

        if (answer && user.len) {
            ngx_http_realtime_push_remote(ctx, answer, &user, local);
        }

    } else if (json_array_size(root) == 0) {
        json_decref(root);

        answer = json_pack("{s:s, s:s}", "error", "the batch is empty",
                           "code", "BAD_REQUEST");

        ngx_http_finalize_request(r,
            ngx_http_realtime_send_json_response(r, NGX_HTTP_BAD_REQUEST,
                                                 answer));
        json_decref(answer);
        return;

    } else {
        /* a batch: one answer per item, the request is a 200 */

        answers = json_array();
        status = NGX_HTTP_OK;
        ctx->batch = 1;

        json_array_foreach(root, i, item) {
            answer = ngx_http_realtime_push_item(ctx, rlcf, item,
                                                 &item_status, &user, &local);
            if (answer == NULL
                || json_object_set_new(answer, "status",
                                       json_integer(item_status)) != 0
                || json_array_append_new(answers, answer) != 0)
            {
                status = NGX_HTTP_INTERNAL_SERVER_ERROR;
                break;
            }

            if (user.len) {
                ngx_http_realtime_push_remote(ctx, answer, &user, local);
            }
        }

        answer = json_pack("{s:o}", "results", answers);
        ctx->answer = answer;
    }

    json_decref(root);

    if (answer == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->status = status;

    ngx_http_realtime_push_flow(ctx, rlcf);

    if (ctx->pending) {
        /* the last answer from Redis or the other workers finalizes it */
        return;
    }

    ngx_http_finalize_request(r,
        ngx_http_realtime_send_json_response(r, status, answer));
    json_decref(answer);
}


/*
 * With Redis, a user push was published to the other instances too:
 * whether they have the user, and how many sockets, Redis tells.
 */

static void
ngx_http_realtime_push_remote(ngx_http_realtime_push_ctx_t *ctx,
    json_t *answer, ngx_str_t *user, ngx_uint_t local)
{
    ngx_http_realtime_push_lookup_t  *pl;
    ngx_http_realtime_loc_conf_t     *rlcf;

    rlcf = ngx_http_get_module_loc_conf(ctx->request,
                                        ngx_http_realtime_module);

    if (rlcf->zone->redis == NULL) {
        return;
    }

    pl = ngx_palloc(ctx->request->pool,
                    sizeof(ngx_http_realtime_push_lookup_t));
    if (pl == NULL) {
        return;
    }

    pl->ctx = ctx;
    pl->answer = answer;
    pl->local = local;

    if (ngx_http_realtime_redis_lookup(rlcf->zone, NGX_HTTP_REALTIME_IPC_USER,
                                       user,
                                       ngx_http_realtime_push_remote_handler,
                                       pl)
        == NGX_OK)
    {
        ctx->pending++;
    }
}


static void
ngx_http_realtime_push_remote_handler(void *data, json_t *users,
    ngx_uint_t sockets, ngx_int_t rc)
{
    ngx_http_realtime_push_lookup_t *pl = data;

    ngx_uint_t                     code;
    ngx_http_realtime_push_ctx_t  *ctx;

    ctx = pl->ctx;

    if (rc == NGX_OK && sockets) {
        /* the user is on another instance: the 404 becomes a 200 */
        json_object_del(pl->answer, "error");
        json_object_del(pl->answer, "code");
        json_object_set_new(pl->answer, "message",
                            json_string("Payload sent successfully"));
        json_object_set_new(pl->answer, "delivered",
                            json_integer(pl->local + sockets));
        code = NGX_HTTP_OK;

        if (ctx->batch) {
            json_object_set_new(pl->answer, "status", json_integer(code));

        } else {
            ctx->status = code;
        }
    }

    ngx_http_realtime_push_done(ctx);
}


/* Redis ran a publication to a room with history, or it was lost */

static void
ngx_http_realtime_push_published(void *data, ngx_int_t rc)
{
    ngx_http_realtime_push_wait_t *pw = data;

    ngx_http_realtime_push_ctx_t  *ctx;

    ctx = pw->ctx;

    if (ctx == NULL) {
        /* the request is gone, or was answered without it */
        ngx_http_realtime_push_wait_free(pw);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "realtime push published by Redis: %i", rc);

    ngx_queue_remove(&pw->queue);

    if (rc != NGX_OK) {
        ngx_http_realtime_push_unconfirmed(pw);
    }

    ngx_http_realtime_push_wait_free(pw);

    ngx_http_realtime_push_done(ctx);
}


/* a wait holds a reference to its item's answer: a batch may go first */

static void
ngx_http_realtime_push_wait_free(ngx_http_realtime_push_wait_t *pw)
{
    if (pw->answer) {
        json_decref(pw->answer);
    }

    ngx_free(pw);
}


/*
 * In flight as the connection went, or no answer in time: Redis may or
 * may not have run it, so nobody can say where it went; the sender
 * decides.
 */

static void
ngx_http_realtime_push_unconfirmed(ngx_http_realtime_push_wait_t *pw)
{
    json_object_del(pw->answer, "message");
    json_object_del(pw->answer, "delivered");
    (void) json_object_set_new(pw->answer, "synced", json_false());
    (void) json_object_set_new(pw->answer, "error",
               json_string("Redis did not confirm the publication: it "
                           "may not have been delivered"));
    (void) json_object_set_new(pw->answer, "code",
                               json_string("REDIS_UNCONFIRMED"));

    if (pw->ctx->batch) {
        (void) json_object_set_new(pw->answer, "status",
                        json_integer(NGX_HTTP_SERVICE_UNAVAILABLE));

    } else {
        pw->ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


/*
 * Redis's connection drops a command late by itself (command_timeout);
 * this timer is the backstop, and keeps a worker that is shutting down
 * alive until the answer (the Redis timers do not).
 */

static void
ngx_http_realtime_push_wait_timeout(ngx_event_t *ev)
{
    ngx_queue_t                    *q;
    ngx_http_realtime_push_ctx_t   *ctx;
    ngx_http_realtime_push_wait_t  *pw;

    ctx = ev->data;

    ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                  "realtime push: no answer from Redis in time");

    while (!ngx_queue_empty(&ctx->waits)) {
        q = ngx_queue_head(&ctx->waits);
        ngx_queue_remove(q);
        pw = ngx_queue_data(q, ngx_http_realtime_push_wait_t, queue);

        ngx_http_realtime_push_unconfirmed(pw);

        /* Redis's answer, if it comes, frees it */
        pw->ctx = NULL;
        ctx->pending--;
    }

    ctx->pending++;
    ngx_http_realtime_push_done(ctx);
}


static void
ngx_http_realtime_push_cleanup(void *data)
{
    ngx_http_realtime_push_ctx_t *ctx = data;

    ngx_queue_t                    *q;
    ngx_http_realtime_push_wait_t  *pw;

    if (ctx->wait_timer.timer_set) {
        ngx_del_timer(&ctx->wait_timer);
    }

    ngx_http_realtime_ipc_flow_cancel(&ctx->flow);

    for (q = ngx_queue_head(&ctx->waits);
         q != ngx_queue_sentinel(&ctx->waits);
         q = ngx_queue_next(q))
    {
        pw = ngx_queue_data(q, ngx_http_realtime_push_wait_t, queue);
        pw->ctx = NULL;
    }
}


/* the first item that waits arms the request's cleanup and timer */

static ngx_int_t
ngx_http_realtime_push_wait(ngx_http_realtime_push_ctx_t *ctx,
    ngx_http_realtime_loc_conf_t *rlcf, ngx_http_realtime_push_wait_t *pw)
{
    if (ctx->wait_timer.handler) {
        return NGX_OK;
    }

    if (ngx_http_realtime_push_cleanup_add(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->wait_timer.handler = ngx_http_realtime_push_wait_timeout;
    ctx->wait_timer.data = ctx;
    ctx->wait_timer.log = ctx->request->connection->log;

    ngx_add_timer(&ctx->wait_timer,
                  2 * rlcf->zone->redis_conf->command_timeout + 1000);

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_push_cleanup_add(ngx_http_realtime_push_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->cleanup) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_realtime_push_cleanup;
    cln->data = ctx;
    ctx->cleanup = 1;

    return NGX_OK;
}


/*
 * Flow control: the answer waits until the other workers have taken
 * what was queued for them, so a publisher that sends as fast as it is
 * answered does not get ahead of their sockets (ipc.c).
 */

static void
ngx_http_realtime_push_flow(ngx_http_realtime_push_ctx_t *ctx,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    if (rlcf->push_backlog == NGX_HTTP_REALTIME_PUSH_BACKLOG_OFF) {
        return;
    }

    ctx->flow.zone = rlcf->zone;
    ctx->flow.handler = ngx_http_realtime_push_flowed;
    ctx->flow.data = ctx;

    if (ngx_http_realtime_ipc_flow_wait(&ctx->flow, rlcf->push_backlog,
                                        ctx->request->connection->log)
        != NGX_AGAIN)
    {
        return;
    }

    if (ngx_http_realtime_push_cleanup_add(ctx) != NGX_OK) {
        /* no memory to wait safely: the answer goes now */
        ngx_http_realtime_ipc_flow_cancel(&ctx->flow);
        return;
    }

    ctx->pending++;
}


static void
ngx_http_realtime_push_flowed(ngx_http_realtime_ipc_flow_t *flow)
{
    ngx_connection_t              *c;
    ngx_http_realtime_push_ctx_t  *ctx;

    ctx = flow->data;
    c = ctx->request->connection;

    ngx_http_realtime_push_done(ctx);

    /* called from a timer or the IPC handler, not the request's event */
    ngx_http_run_posted_requests(c);
}


/* an answer from Redis: the last one finalizes the request */

static void
ngx_http_realtime_push_done(ngx_http_realtime_push_ctx_t *ctx)
{
    json_t              *answer;
    ngx_http_request_t  *r;

    if (--ctx->pending) {
        return;
    }

    r = ctx->request;

    /* ctx is in the request's pool, which the finalization frees */
    answer = ctx->answer;

    ngx_http_finalize_request(r,
        ngx_http_realtime_send_json_response(r, ctx->status, answer));
    json_decref(answer);
}


/* the whole body in one piece, also when nginx spilled it to a file */

static u_char *
ngx_http_realtime_push_read(ngx_http_request_t *r, size_t *len)
{
    u_char       *p, *body;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return (u_char *) "";
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        size += b->in_file ? (size_t) (b->file_last - b->file_pos)
                           : (size_t) (b->last - b->pos);
    }

    body = ngx_pnalloc(r->pool, size + 1);
    if (body == NULL) {
        return NULL;
    }

    p = body;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            if (b->last != b->pos) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }

            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);
        if (n == NGX_ERROR) {
            return NULL;
        }

        p += n;
    }

    *len = p - body;

    return body;
}


/*
 * One push: {"userId" | "room" | "broadcast": true, "topic", "payload"
 * or the other fields as the data, "except"}.
 */

static json_t *
ngx_http_realtime_push_item(ngx_http_realtime_push_ctx_t *ctx,
    ngx_http_realtime_loc_conf_t *rlcf, json_t *item, ngx_uint_t *status,
    ngx_str_t *user, ngx_uint_t *local)
{
    ngx_http_realtime_push_wait_t  *pw;
    json_t                    *topic, *data, *event, *answer, *v;
    ngx_int_t                  rc, sync;
    ngx_str_t                  target, except;
    ngx_uint_t                 type, n, i;
    const char                *key;
    ngx_http_realtime_msg_t   *msg;
    ngx_http_realtime_zone_t  *zone;

    zone = rlcf->zone;

    ngx_str_null(user);
    *local = 0;

    (void) ngx_atomic_fetch_add(&zone->sh->slots[zone->slot].messages_in, 1);

    if (!json_is_object(item)) {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                                         "Missing topic, payload or userId",
                                         "BAD_REQUEST");
    }

    topic = json_object_get(item, "topic");
    if (topic == NULL) {
        topic = json_object_get(item, "event");
    }

    ngx_str_null(&target);
    ngx_str_null(&except);

    if (json_is_string(v = json_object_get(item, "userId"))) {
        type = NGX_HTTP_REALTIME_TO_USER;

    } else if (json_is_string(v = json_object_get(item, "room"))) {
        type = NGX_HTTP_REALTIME_TO_ROOM;

    } else if (json_is_true(json_object_get(item, "broadcast"))) {
        type = NGX_HTTP_REALTIME_TO_ALL;
        v = NULL;

    } else {
        type = 0;
    }

    if (type == 0 || !json_is_string(topic) || json_string_length(topic) == 0
        || json_string_length(topic) > NGX_HTTP_REALTIME_EVENT_MAX)
    {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                                         "Missing topic, payload or userId",
                                         "BAD_REQUEST");
    }

    if (v) {
        target.data = (u_char *) json_string_value(v);
        target.len = json_string_length(v);
    }

    if (type == NGX_HTTP_REALTIME_TO_ROOM
        && !ngx_http_realtime_room_valid((char *) target.data, target.len))
    {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                           "a room name is 1-128 bytes of letters, digits "
                           "and _-:.@/#", "BAD_REQUEST");
    }

    if (type == NGX_HTTP_REALTIME_TO_USER
        && (target.len == 0 || target.len > NGX_HTTP_REALTIME_USER_MAX))
    {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                                             "userId must be 1-256 bytes",
                                             "BAD_REQUEST");
    }

    v = json_object_get(item, "except");

    if (v && !json_is_string(v)) {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                                             "except must be a userId",
                                             "BAD_REQUEST");
    }

    if (v && json_string_length(v) > NGX_HTTP_REALTIME_USER_MAX) {
        return ngx_http_realtime_push_answer(status, NGX_HTTP_BAD_REQUEST,
                                             "except must be 1-256 bytes",
                                             "BAD_REQUEST");
    }

    if (v) {
        except.data = (u_char *) json_string_value(v);
        except.len = json_string_length(v);
    }

    data = json_object_get(item, "payload");

    if (data == NULL && json_object_get(item, "topic") == NULL) {
        /* {"event", "data"}: the shape the clients receive */
        data = json_object_get(item, "data");
    }

    if (data) {
        json_incref(data);

    } else {
        /* the judge service sends its fields beside userId and topic */

        data = json_deep_copy(item);
        if (data == NULL) {
            return NULL;
        }

        for (i = 0; ngx_http_realtime_push_fields[i]; i++) {
            json_object_del(data, ngx_http_realtime_push_fields[i]);
        }
    }

    key = json_string_value(topic);

    /* a room's publication says which, as a client's publish does */
    event = (type == NGX_HTTP_REALTIME_TO_ROOM)
            ? ngx_http_realtime_event_room(key, (char *) target.data,
                                           target.len, data)
            : ngx_http_realtime_event(key, data, -1);
    json_decref(data);

    if (event == NULL) {
        return NULL;
    }

    ngx_http_realtime_stamp(rlcf->timestamp, event);

    msg = ngx_http_realtime_msg_json(event);
    json_decref(event);

    if (msg == NULL) {
        return NULL;
    }

    pw = NULL;

    if (zone->redis && type == NGX_HTTP_REALTIME_TO_ROOM
        && zone->history_max)
    {
        pw = ngx_calloc(sizeof(ngx_http_realtime_push_wait_t),
                        ctx->request->connection->log);
        if (pw == NULL) {
            ngx_http_realtime_msg_release(msg);
            return NULL;
        }

        pw->published.handler = ngx_http_realtime_push_published;
        pw->published.data = pw;
        pw->ctx = ctx;
    }

    rc = ngx_http_realtime_publish_synced(zone, type, &target, &except, NULL,
                                          msg, &n, &sync,
                                          pw ? &pw->published : NULL);
    ngx_http_realtime_msg_release(msg);

    if (type == NGX_HTTP_REALTIME_TO_USER
        && rc != NGX_HTTP_REALTIME_QUEUE_FULL)
    {
        /* other instances may have sockets of the user too */
        *user = target;
        *local = n;
    }

    if (rc == NGX_HTTP_REALTIME_NOT_FOUND
        && type == NGX_HTTP_REALTIME_TO_USER)
    {
        /* a 200 if Redis finds the user on another instance */
        answer = ngx_http_realtime_push_answer(status, NGX_HTTP_NOT_FOUND,
                                               "User not connected",
                                               "USER_NOT_FOUND");

    } else if (rc == NGX_HTTP_REALTIME_QUEUE_FULL) {
        answer = ngx_http_realtime_push_answer(status,
                                         NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "a worker's queue is full, not "
                                         "every receiver got the payload",
                                         "QUEUE_FULL");

    } else {
        *status = NGX_HTTP_OK;
        answer = json_pack("{s:s}", "message", "Payload sent successfully");
    }

    if (answer && *status != NGX_HTTP_NOT_FOUND
        && json_object_set_new(answer, "delivered", json_integer(n)) != 0)
    {
        json_decref(answer);
        answer = NULL;
    }

    /*
     * With Redis: whether the other instances get it.  "queued": it
     * waits in this worker's outbox for Redis; "synced": false, it is
     * lost to them.
     */

    if (answer && sync != NGX_DONE
        && (json_object_set_new(answer, "synced",
                                json_boolean(sync != NGX_DECLINED))
            != 0
            || (sync == NGX_AGAIN
                && json_object_set_new(answer, "queued", json_true()) != 0)))
    {
        json_decref(answer);
        answer = NULL;
    }

    if (pw == NULL) {
        return answer;
    }

    if (!pw->published.armed) {
        /* in the outbox, or lost: answered now */
        ngx_free(pw);
        return answer;
    }

    if (answer == NULL || ngx_http_realtime_push_wait(ctx, rlcf, pw) != NGX_OK)
    {
        /* Redis's answer frees it */
        pw->ctx = NULL;
        return answer;
    }

    /* answered once Redis has given it its place */
    pw->answer = answer;
    json_incref(answer);
    ngx_queue_insert_tail(&ctx->waits, &pw->queue);
    ctx->pending++;

    return answer;
}


static json_t *
ngx_http_realtime_push_answer(ngx_uint_t *status, ngx_uint_t code,
    const char *error, const char *error_code)
{
    *status = code;

    return json_pack("{s:s, s:s}", "error", error, "code", error_code);
}


ngx_int_t
ngx_http_realtime_send_json_response(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    type;
    const char  *text;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = ngx_http_realtime_json_dump_scratch(json, &len);
    if (len == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_realtime_json_place(json, text, (char *) p, len);
    p[len++] = LF;

    ngx_str_set(&type, "application/json");

    return ngx_http_realtime_send_body(r, status, &type, p, len);
}
