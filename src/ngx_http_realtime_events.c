
/*
 * Copyright (C) ngx-realtime developers
 *
 * The client protocol: JSON events on a realtime socket.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


static ngx_int_t ngx_http_realtime_join_answer(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd, ngx_str_t *room, ngx_uint_t members,
    ngx_http_realtime_history_pos_t *pos);
static ngx_int_t ngx_http_realtime_client_join(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_leave(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_publish(
    ngx_http_realtime_session_t *s, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_presence(
    ngx_http_realtime_session_t *s, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_refresh(
    ngx_http_realtime_session_t *s, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_refreshed(
    ngx_http_realtime_session_t *s, ngx_int_t rc, time_t exp,
    const char *reason, json_int_t id);
static ngx_int_t ngx_http_realtime_room_forbidden(
    ngx_http_realtime_session_t *s, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_reply_new(ngx_http_realtime_session_t *s,
    const char *event, json_t *data, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_reply_room(ngx_http_realtime_session_t *s,
    const char *event, ngx_http_realtime_cmd_t *cmd, const char *key,
    ngx_uint_t n);
static ngx_int_t ngx_http_realtime_reply(ngx_http_realtime_session_t *s,
    const char *event, json_t *data, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_error(ngx_http_realtime_session_t *s,
    const char *code, const char *message, json_int_t id);
static ngx_int_t ngx_http_realtime_native_welcome(
    ngx_http_realtime_session_t *s);
static ngx_int_t ngx_http_realtime_native_deliver(
    ngx_http_realtime_session_t *s, ngx_http_realtime_msg_t *msg);
static ngx_int_t ngx_http_realtime_native_reply(
    ngx_http_realtime_session_t *s, const char *event, json_t *data,
    json_int_t id);
static ngx_int_t ngx_http_realtime_native_error(
    ngx_http_realtime_session_t *s, const char *code, const char *message,
    json_int_t id);
static ngx_int_t ngx_http_realtime_native_send_json(
    ngx_http_realtime_session_t *s, json_t *json);
static void ngx_http_realtime_native_close(ngx_http_realtime_session_t *s,
    ngx_uint_t code, char *reason);
static void ngx_http_realtime_native_deadline(
    ngx_http_realtime_session_t *s);


static ngx_int_t ngx_http_realtime_native_message(
    ngx_http_realtime_conn_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len);
static void ngx_http_realtime_native_release(ngx_http_realtime_conn_t *ws);


const ngx_http_realtime_adapter_t  ngx_http_realtime_native_adapter = {
    sizeof(ngx_http_realtime_conn_t),
    NULL,
    ngx_http_realtime_native_message,
    ngx_http_realtime_liveness,
    ngx_http_realtime_native_release
};


const ngx_http_realtime_session_handler_t  ngx_http_realtime_native_handler = {
    ngx_http_realtime_native_deliver,
    ngx_http_realtime_native_reply,
    ngx_http_realtime_native_error,
    ngx_http_realtime_native_close,
    ngx_http_realtime_native_deadline
};


ngx_int_t
ngx_http_realtime_client_open(ngx_http_realtime_session_t *s)
{
    return ngx_http_realtime_native_welcome(s);
}


ngx_int_t
ngx_http_realtime_client_message(ngx_http_realtime_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_int_t                      rc;
    ngx_http_realtime_cmd_t        cmd;
    ngx_http_realtime_cmd_error_t  err;

    if (s->zone) {
        (void) ngx_atomic_fetch_add(
                     &s->zone->sh->slots[s->zone->slot].messages_in, 1);
    }

    /* the native id is in the JSON, not read before the bucket */
    rc = ngx_http_realtime_rate_check(s, -1);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : rc;
    }

    if (opcode != NGX_HTTP_REALTIME_OP_TEXT) {
        return ngx_http_realtime_error(s, "BAD_REQUEST",
                                "binary messages are not part of the "
                                "protocol", -1);
    }

    if (ngx_http_realtime_cmd_parse(&cmd, (char *) data, len, &err) != 0) {
        return ngx_http_realtime_error(s, err.code, err.message,
                                       cmd.has_id ? cmd.id : -1);
    }

    rc = ngx_http_realtime_command(s, &cmd);

    ngx_http_realtime_cmd_free(&cmd);

    return rc;
}


/* a command of either protocol; cmd stays the caller's to free */

ngx_int_t
ngx_http_realtime_command(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t  rc;

    if (s->zone == NULL
        && cmd->type != NGX_HTTP_REALTIME_CMD_PING
        && cmd->type != NGX_HTTP_REALTIME_CMD_REFRESH
        && cmd->type != NGX_HTTP_REALTIME_CMD_UNKNOWN)
    {
        rc = ngx_http_realtime_error(s, "BAD_REQUEST",
                                     "rooms need \"realtime <zone>\"",
                                     cmd->has_id ? cmd->id : -1);
        ngx_http_realtime_cmd_free(cmd);
        return rc;
    }

    switch (cmd->type) {

    case NGX_HTTP_REALTIME_CMD_JOIN:
        rc = ngx_http_realtime_client_join(s, cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_LEAVE:
        rc = ngx_http_realtime_client_leave(s, cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PUBLISH:
        rc = ngx_http_realtime_client_publish(s, cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PRESENCE:
        rc = ngx_http_realtime_client_presence(s, cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PING:
        rc = ngx_http_realtime_reply(s, "pong", cmd->data, cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_REFRESH:
        rc = ngx_http_realtime_client_refresh(s, cmd);
        break;

    default:
        rc = ngx_http_realtime_route(s, cmd);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_realtime_forward(s, cmd);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_realtime_error(s, "INVALID_EVENT",
                                         "unknown event",
                                         cmd->has_id ? cmd->id : -1);
        }
    }

    return rc;
}


/*
 * A leaky bucket per connection, as limit_req does it.  NGX_DECLINED:
 * the message was refused and answered.  A client that keeps sending
 * into a full bucket is closed with 1008.
 */

ngx_int_t
ngx_http_realtime_rate_check(ngx_http_realtime_session_t *s, json_int_t id)
{
    ngx_int_t                      excess;
    ngx_msec_t                     now, ms;
    ngx_http_realtime_loc_conf_t  *conf;

    conf = s->conf;

    if (conf->rate == 0) {
        return NGX_OK;
    }

    now = ngx_current_msec;

    if (!s->rate_started) {
        /* as in limit_req, the first message starts the bucket empty */
        s->rate_started = 1;
        s->rate_last = now;
        return NGX_OK;
    }

    ms = now - s->rate_last;

    excess = (ngx_int_t) s->rate_excess
             - (ngx_int_t) (conf->rate * ms / 1000) + 1000;

    if (excess < 0) {
        excess = 0;
    }

    if ((ngx_uint_t) excess > conf->burst) {
        s->rate_strikes++;

        if (s->rate_strikes * 1000 > conf->burst + conf->rate) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "realtime: client keeps exceeding the rate "
                          "limit, closing");
            s->handler->close(s, NGX_HTTP_REALTIME_CLOSE_POLICY,
                              "rate limit exceeded");
            return NGX_DECLINED;
        }

        if (ngx_http_realtime_error(s, "RATE_LIMITED",
                                    "too many messages", id)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    s->rate_excess = excess;
    s->rate_last = now;

    if (s->rate_strikes) {
        s->rate_strikes--;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_client_join(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t                         rc;
    ngx_str_t                         room;
    ngx_uint_t                        members, first;
    ngx_http_realtime_history_pos_t   pos;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    if (ngx_http_realtime_jwt_room_allowed(s, &room) != NGX_OK) {
        return ngx_http_realtime_room_forbidden(s, cmd);
    }

    rc = ngx_http_realtime_room_join_at(s, &room, &members, &first, &pos);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_HTTP_REALTIME_LIMIT:
        return ngx_http_realtime_error(s, "ROOM_LIMIT",
                                 "too many rooms for one connection",
                                 cmd->has_id ? cmd->id : -1);

    case NGX_HTTP_REALTIME_ZONE_FULL:
        return ngx_http_realtime_error(s, "ZONE_FULL",
                                 "the realtime zone is full",
                                 cmd->has_id ? cmd->id : -1);

    default:
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_join_answer(s, cmd, &room, members, &pos);

    if (first && s->conf->presence) {
        ngx_http_realtime_presence_event(s, "presence:join", &room);
    }

    return rc;
}


/*
 * "joined", with the room's place in its history; for a join "since" a
 * place, whether it was recovered, and then what was missed, in order,
 * before anything live.
 */

static ngx_int_t
ngx_http_realtime_join_answer(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd, ngx_str_t *room, ngx_uint_t members,
    ngx_http_realtime_history_pos_t *pos)
{
    u_char                   *buf;
    size_t                    len;
    json_t                   *data;
    ngx_int_t                 rc, recovered;
    ngx_str_t                 epoch;

    buf = NULL;
    len = 0;
    recovered = NGX_DECLINED;

    if (cmd->has_since && pos->on) {
        epoch.data = (u_char *) cmd->since_epoch;
        epoch.len = cmd->since_epoch_len;

        recovered = ngx_http_realtime_history_replay(s->zone, room, &epoch,
                                                   (uint64_t) cmd->since_offset,
                                                   pos, &buf, &len);
        if (recovered == NGX_ERROR) {
            return NGX_ERROR;
        }

        /* from another instance, or before this one had the room */

        if (recovered == NGX_DECLINED
            && ngx_http_realtime_recover_start(s, room, &epoch,
                                               (uint64_t) cmd->since_offset,
                                               members,
                                               cmd->has_id ? cmd->id : -1)
               == NGX_OK)
        {
            return NGX_OK;
        }
    }

    data = json_pack("{s:s%, s:I}", "room", cmd->room, cmd->room_len,
                     "members", (json_int_t) members);

    if (data && pos->on
        && (json_object_set_new(data, "offset",
                                json_integer((json_int_t) pos->offset))
            != 0
            || json_object_set_new(data, "epoch",
                                   json_stringn((char *) pos->epoch,
                                                NGX_HTTP_REALTIME_EPOCH_LEN))
               != 0))
    {
        json_decref(data);
        data = NULL;
    }

    if (data && cmd->has_since
        && json_object_set_new(data, "recovered",
                               json_boolean(recovered == NGX_OK))
           != 0)
    {
        json_decref(data);
        data = NULL;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime join \"%V\" at %uL, replay of %uz bytes",
                   room, pos->offset, len);

    rc = ngx_http_realtime_reply_new(s, "joined", data, cmd);

    if (rc != NGX_OK) {
        if (buf) {
            ngx_free(buf);
        }

        return rc;
    }

    return ngx_http_realtime_history_send(s, buf, len);
}


static ngx_int_t
ngx_http_realtime_client_leave(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t    rc;
    ngx_str_t    room;
    ngx_uint_t   members, last;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    rc = ngx_http_realtime_room_leave(s, &room, &members, &last);

    if (rc == NGX_HTTP_REALTIME_NOT_FOUND) {
        return ngx_http_realtime_error(s, "BAD_REQUEST",
                                       "not a member of the room",
                                       cmd->has_id ? cmd->id : -1);
    }

    if (last && s->conf->presence) {
        ngx_http_realtime_presence_event(s, "presence:leave", &room);
    }

    return ngx_http_realtime_reply_room(s, "left", cmd, "members", members);
}


static ngx_int_t
ngx_http_realtime_client_publish(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    json_t                   *json;
    ngx_int_t                 rc;
    ngx_str_t                 room;
    ngx_uint_t                recipients;
    ngx_http_realtime_msg_t  *msg;

    if (!s->conf->client_publish && !cmd->routed) {
        return ngx_http_realtime_error(s, "FORBIDDEN",
                                       "clients may not publish here",
                                       cmd->has_id ? cmd->id : -1);
    }

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    /* only members publish; the local list says, no lock needed */

    if (ngx_http_realtime_local_find(s, &room) == NULL) {
        return ngx_http_realtime_error(s, "FORBIDDEN",
                                       "not a member of the room",
                                       cmd->has_id ? cmd->id : -1);
    }

    json = ngx_http_realtime_event_relay(cmd->publish_event,
                                         cmd->publish_event_len,
                                         cmd->room, cmd->room_len,
                                         (char *) s->user.data,
                                         s->user.len, cmd->publish_data);
    if (json == NULL) {
        return NGX_ERROR;
    }

    ngx_http_realtime_stamp(s->conf->timestamp, json);

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_publish(s->zone, NGX_HTTP_REALTIME_TO_ROOM, &room,
                                   NULL, cmd->echo ? NULL : s, msg,
                                   &recipients);
    ngx_http_realtime_msg_release(msg);

    if (rc == NGX_HTTP_REALTIME_QUEUE_FULL) {
        return ngx_http_realtime_error(s, "QUEUE_FULL",
                                 "a worker's queue is full, not every "
                                 "member got the message",
                                 cmd->has_id ? cmd->id : -1);
    }

    if (!cmd->has_id) {
        return NGX_OK;
    }

    if (!cmd->echo && recipients) {
        recipients--;
    }

    return ngx_http_realtime_reply_room(s, "published", cmd, "recipients",
                                        recipients);
}


static ngx_int_t
ngx_http_realtime_client_presence(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    json_t     *users;
    ngx_str_t   room;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    /* who is in a room is for those who may join it */

    if (ngx_http_realtime_jwt_room_allowed(s, &room) != NGX_OK) {
        return ngx_http_realtime_room_forbidden(s, cmd);
    }

    users = ngx_http_realtime_room_presence(s->zone, &room);
    if (users == NULL) {
        return NGX_ERROR;
    }

    if (s->zone->redis) {
        /* and the users of the other instances */
        return ngx_http_realtime_redis_presence_query(s, &room, users,
                                                cmd->has_id ? cmd->id : -1);
    }

    return ngx_http_realtime_reply_new(s, "presence",
                                       json_pack("{s:s%, s:o}", "room",
                                                 cmd->room, cmd->room_len,
                                                 "users", users),
                                       cmd);
}


/*
 * A valid token of the same user replaces the socket's token; one of
 * another user ends the socket; an invalid or expired one changes
 * nothing, the socket lives until the old token expires.
 */

static ngx_int_t
ngx_http_realtime_client_refresh(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    time_t       exp;
    ngx_int_t    rc;
    json_int_t   id;
    const char  *reason;

    id = cmd->has_id ? cmd->id : -1;
    exp = 0;
    reason = NULL;

    rc = ngx_http_realtime_jwt_refresh(s, (u_char *) cmd->token,
                                       cmd->token_len, id,
                                       ngx_http_realtime_client_refreshed,
                                       &exp, &reason);

    if (rc == NGX_AGAIN) {
        /* answered once the token's key is fetched */
        return NGX_OK;
    }

    return ngx_http_realtime_client_refreshed(s, rc, exp, reason, id);
}


static ngx_int_t
ngx_http_realtime_client_refreshed(ngx_http_realtime_session_t *s,
    ngx_int_t rc, time_t exp, const char *reason, json_int_t id)
{
    json_t  *data;

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_realtime_error(s, "INVALID_EVENT",
                                 "\"refresh\" needs realtime_jwt_key", id);

    case NGX_HTTP_REALTIME_UNAUTHORIZED:
        return ngx_http_realtime_error(s, "UNAUTHORIZED", reason, id);

    case NGX_HTTP_REALTIME_EXPIRED:
        return ngx_http_realtime_error(s, "TOKEN_EXPIRED", reason, id);

    case NGX_HTTP_REALTIME_FORBIDDEN:
        s->handler->close(s, NGX_HTTP_REALTIME_CLOSE_FORBIDDEN,
                          "token of another user");
        return NGX_OK;

    default:
        return NGX_ERROR;
    }

    data = exp ? json_pack("{s:I}", "exp", (json_int_t) exp)
               : json_pack("{s:n}", "exp");
    if (data == NULL) {
        return NGX_ERROR;
    }

    rc = s->handler->reply(s, "refreshed", data, id);
    json_decref(data);

    return rc;
}


static ngx_int_t
ngx_http_realtime_room_forbidden(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    return ngx_http_realtime_error(s, "FORBIDDEN",
                                   "the token does not allow this room",
                                   cmd->has_id ? cmd->id : -1);
}


/* leaves every room, with presence events, and unregisters the socket */

void
ngx_http_realtime_client_close(ngx_http_realtime_session_t *s)
{
    u_char                             name[NGX_HTTP_REALTIME_ROOM_MAX];
    ngx_str_t                          room;
    ngx_uint_t                         members, last;
    ngx_http_realtime_local_member_t  *lm;

    if (s->zone == NULL || s->sh_conn == NULL) {
        return;
    }

    while (!ngx_queue_empty(&s->rooms)) {
        lm = ngx_queue_data(ngx_queue_head(&s->rooms),
                            ngx_http_realtime_local_member_t, conn_link);

        /* the local room may go with the leave: keep the name */
        room.data = name;
        room.len = ngx_min(lm->room->sn.str.len, sizeof(name));
        ngx_memcpy(name, lm->room->sn.str.data, room.len);

        if (ngx_http_realtime_room_leave(s, &room, &members, &last)
            != NGX_OK)
        {
            break;
        }

        if (last && s->conf->presence) {
            ngx_http_realtime_presence_event(s, "presence:leave", &room);
        }
    }

    ngx_http_realtime_room_disconnect(s);
}


void
ngx_http_realtime_presence_event(ngx_http_realtime_session_t *s,
    const char *event, ngx_str_t *room)
{
    json_t                   *data, *json;
    ngx_http_realtime_msg_t  *msg;

    data = json_pack("{s:s%, s:s%}", "room", room->data, room->len,
                     "userId", s->user.data, s->user.len);
    if (data == NULL) {
        return;
    }

    json = ngx_http_realtime_event(event, data, -1);
    json_decref(data);

    if (json == NULL) {
        return;
    }

    ngx_http_realtime_stamp(s->conf->timestamp, json);

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return;
    }

    (void) ngx_http_realtime_publish(s->zone, NGX_HTTP_REALTIME_TO_ROOM,
                                     room, NULL, s, msg, NULL);
    ngx_http_realtime_msg_release(msg);
}


/* a reply whose data the caller made for it: taken over, NULL fails */

static ngx_int_t
ngx_http_realtime_reply_new(ngx_http_realtime_session_t *s, const char *event,
    json_t *data, ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t  rc;

    if (data == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_reply(s, event, data, cmd);
    json_decref(data);

    return rc;
}


/* joined, left, published: {"room": R, <key>: n} */

static ngx_int_t
ngx_http_realtime_reply_room(ngx_http_realtime_session_t *s, const char *event,
    ngx_http_realtime_cmd_t *cmd, const char *key, ngx_uint_t n)
{
    return ngx_http_realtime_reply_new(s, event,
                                       json_pack("{s:s%, s:I}", "room",
                                                 cmd->room, cmd->room_len,
                                                 key, (json_int_t) n),
                                       cmd);
}


static ngx_int_t
ngx_http_realtime_reply(ngx_http_realtime_session_t *s, const char *event,
    json_t *data, ngx_http_realtime_cmd_t *cmd)
{
    return s->handler->reply(s, event, data, cmd->has_id ? cmd->id : -1);
}


static ngx_int_t
ngx_http_realtime_error(ngx_http_realtime_session_t *s, const char *code,
    const char *message, json_int_t id)
{
    return s->handler->error(s, code, message, id);
}


/*
 * The native protocol's side of a session: JSON envelopes in text
 * frames on the WebSocket connection that embeds the session.
 */

#define ngx_http_realtime_native_conn(s)                                     \
    ((ngx_http_realtime_conn_t *)                                             \
         ((u_char *) (s) - offsetof(ngx_http_realtime_conn_t, session)))


/*
 * {"event":"welcome",...} written straight into its frame: every
 * connection gets one, and the json_t and its dump were a fifth of the
 * module's instructions for a connection.
 */

static ngx_int_t
ngx_http_realtime_native_welcome(ngx_http_realtime_session_t *s)
{
    u_char                       *p, ts[NGX_HTTP_REALTIME_TIMESTAMP_LEN];
    size_t                        len, header;
    ngx_int_t                     rc;
    ngx_http_realtime_msg_t      *msg;
    ngx_http_realtime_welcome_t   w;

    w.user = (const char *) s->user.data;
    w.user_len = s->user.len;
    w.id = (const char *) s->id.data;
    w.id_len = s->id.len;
    w.pid = (long long) ngx_pid;
    w.ts = NULL;
    w.ts_len = 0;

    if (s->conf->timestamp) {
        p = ngx_http_realtime_timestamp(ts);
        w.ts = (const char *) ts;
        w.ts_len = p - ts;
    }

    len = ngx_http_realtime_welcome_len(&w);
    header = ngx_http_realtime_frame_header_size(len);

    msg = ngx_http_realtime_msg_alloc(header + len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    ngx_http_realtime_frame_header(msg->data, NGX_HTTP_REALTIME_OP_TEXT, len);
    (void) ngx_http_realtime_welcome((char *) msg->data + header, &w);
    msg->len = header + len;

    rc = ngx_http_realtime_send(ngx_http_realtime_native_conn(s), msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


static ngx_int_t
ngx_http_realtime_native_deliver(ngx_http_realtime_session_t *s,
    ngx_http_realtime_msg_t *msg)
{
    return ngx_http_realtime_send(ngx_http_realtime_native_conn(s), msg);
}


static ngx_int_t
ngx_http_realtime_native_reply(ngx_http_realtime_session_t *s,
    const char *event, json_t *data, json_int_t id)
{
    json_t     *json;
    ngx_int_t   rc;

    json = ngx_http_realtime_event(event, data, id);
    if (json == NULL) {
        return NGX_ERROR;
    }

    ngx_http_realtime_stamp(s->conf->timestamp, json);

    rc = ngx_http_realtime_native_send_json(s, json);
    json_decref(json);

    return rc;
}


static ngx_int_t
ngx_http_realtime_native_error(ngx_http_realtime_session_t *s,
    const char *code, const char *message, json_int_t id)
{
    json_t     *json;
    ngx_int_t   rc;

    json = ngx_http_realtime_event_error(code, message, id);
    if (json == NULL) {
        return NGX_ERROR;
    }

    ngx_http_realtime_stamp(s->conf->timestamp, json);

    rc = ngx_http_realtime_native_send_json(s, json);
    json_decref(json);

    return rc;
}


static ngx_int_t
ngx_http_realtime_native_send_json(ngx_http_realtime_session_t *s,
    json_t *json)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_msg_json(json);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send(ngx_http_realtime_native_conn(s), msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


static void
ngx_http_realtime_native_close(ngx_http_realtime_session_t *s,
    ngx_uint_t code, char *reason)
{
    ngx_http_realtime_close(ngx_http_realtime_native_conn(s), code, reason);
}


static void
ngx_http_realtime_native_deadline(ngx_http_realtime_session_t *s)
{
    ngx_http_realtime_conn_t  *ws;

    ws = ngx_http_realtime_native_conn(s);

    /* a refresh answered late must not undo the close's timeout */
    if (ws->close_sent) {
        return;
    }

    ngx_http_realtime_liveness(ws);
}


static ngx_int_t
ngx_http_realtime_native_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    return ngx_http_realtime_client_message(&ws->session, opcode, data, len);
}


static void
ngx_http_realtime_native_release(ngx_http_realtime_conn_t *ws)
{
    ngx_http_realtime_redis_presence_cancel(&ws->session);
    ngx_http_realtime_forward_end(&ws->session);
    ngx_http_realtime_client_close(&ws->session);
}


/*
 * realtime_timestamp: "timestamp" last in the envelope, the time it was
 * made in ISO 8601 with milliseconds, as JavaScript's toISOString().
 * A publication is stamped once, by the location it was made in.
 */

void
ngx_http_realtime_stamp(ngx_uint_t on, json_t *json)
{
    u_char  *p, buf[NGX_HTTP_REALTIME_TIMESTAMP_LEN];

    if (!on) {
        return;
    }

    p = ngx_http_realtime_timestamp(buf);

    (void) json_object_set_new(json, "timestamp",
                               json_stringn((char *) buf, p - buf));
}


/* now, as "1970-01-01T00:00:00.000Z" into buf; returns its end */

u_char *
ngx_http_realtime_timestamp(u_char *buf)
{
    ngx_tm_t     tm;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (ngx_msec_t) tp->msec);
}


/* a text frame of the JSON in a shared buffer */

ngx_http_realtime_msg_t *
ngx_http_realtime_msg_json(json_t *json)
{
    size_t                    len, header;
    const char               *text;
    ngx_http_realtime_msg_t  *msg;

    text = ngx_http_realtime_json_dump_scratch(json, &len);
    if (len == 0) {
        return NULL;
    }

    header = ngx_http_realtime_frame_header_size(len);

    msg = ngx_http_realtime_msg_alloc(header + len);
    if (msg == NULL) {
        return NULL;
    }

    ngx_http_realtime_frame_header(msg->data, NGX_HTTP_REALTIME_OP_TEXT, len);
    ngx_http_realtime_json_place(json, text, (char *) msg->data + header,
                                 len);

    msg->len = header + len;

    return msg;
}
