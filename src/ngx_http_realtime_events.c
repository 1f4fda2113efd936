
/*
 * Copyright (C) ngx-realtime developers
 *
 * The client protocol: JSON events on a realtime socket.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


static ngx_int_t ngx_http_realtime_rate_check(ngx_http_realtime_conn_t *ws);
static ngx_int_t ngx_http_realtime_client_join(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_leave(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_publish(
    ngx_http_realtime_conn_t *ws, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_presence(
    ngx_http_realtime_conn_t *ws, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_client_refresh(
    ngx_http_realtime_conn_t *ws, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_room_forbidden(
    ngx_http_realtime_conn_t *ws, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_reply_new(ngx_http_realtime_conn_t *ws,
    const char *event, json_t *data, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_reply_room(ngx_http_realtime_conn_t *ws,
    const char *event, ngx_http_realtime_cmd_t *cmd, const char *key,
    ngx_uint_t n);
static ngx_int_t ngx_http_realtime_reply(ngx_http_realtime_conn_t *ws,
    const char *event, json_t *data, ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_error(ngx_http_realtime_conn_t *ws,
    const char *code, const char *message, json_int_t id);
static void ngx_http_realtime_presence_event(ngx_http_realtime_conn_t *ws,
    const char *event, ngx_str_t *room);


ngx_int_t
ngx_http_realtime_client_open(ngx_http_realtime_conn_t *ws)
{
    json_t     *data, *json;
    ngx_int_t   rc;

    data = json_pack("{s:s%, s:s%, s:I}",
                     "userId", ws->user.data, ws->user.len,
                     "connectionId", ws->id.data, ws->id.len,
                     "pid", (json_int_t) ngx_pid);
    if (data == NULL) {
        return NGX_ERROR;
    }

    json = ngx_http_realtime_event("welcome", data, -1);
    json_decref(data);

    if (json == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send_json(ws, json);
    json_decref(json);

    return rc;
}


ngx_int_t
ngx_http_realtime_client_message(ngx_http_realtime_conn_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_int_t                      rc;
    ngx_http_realtime_cmd_t        cmd;
    ngx_http_realtime_cmd_error_t  err;

    if (ws->zone) {
        (void) ngx_atomic_fetch_add(
                     &ws->zone->sh->slots[ws->zone->slot].messages_in, 1);
    }

    rc = ngx_http_realtime_rate_check(ws);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : rc;
    }

    if (opcode != NGX_HTTP_REALTIME_OP_TEXT) {
        return ngx_http_realtime_error(ws, "BAD_REQUEST",
                                "binary messages are not part of the "
                                "protocol", -1);
    }

    if (ngx_http_realtime_cmd_parse(&cmd, (char *) data, len, &err) != 0) {
        return ngx_http_realtime_error(ws, err.code, err.message,
                                       cmd.has_id ? cmd.id : -1);
    }

    if (ws->zone == NULL
        && cmd.type != NGX_HTTP_REALTIME_CMD_PING
        && cmd.type != NGX_HTTP_REALTIME_CMD_REFRESH
        && cmd.type != NGX_HTTP_REALTIME_CMD_UNKNOWN)
    {
        rc = ngx_http_realtime_error(ws, "BAD_REQUEST",
                                     "rooms need \"realtime <zone>\"",
                                     cmd.has_id ? cmd.id : -1);
        ngx_http_realtime_cmd_free(&cmd);
        return rc;
    }

    switch (cmd.type) {

    case NGX_HTTP_REALTIME_CMD_JOIN:
        rc = ngx_http_realtime_client_join(ws, &cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_LEAVE:
        rc = ngx_http_realtime_client_leave(ws, &cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PUBLISH:
        rc = ngx_http_realtime_client_publish(ws, &cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PRESENCE:
        rc = ngx_http_realtime_client_presence(ws, &cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_PING:
        rc = ngx_http_realtime_reply(ws, "pong", cmd.data, &cmd);
        break;

    case NGX_HTTP_REALTIME_CMD_REFRESH:
        rc = ngx_http_realtime_client_refresh(ws, &cmd);
        break;

    default:
        rc = ngx_http_realtime_error(ws, "INVALID_EVENT",
                                     "unknown event",
                                     cmd.has_id ? cmd.id : -1);
    }

    ngx_http_realtime_cmd_free(&cmd);

    return rc;
}


/*
 * A leaky bucket per connection, as limit_req does it.  NGX_DECLINED:
 * the message was refused and answered.  A client that keeps sending
 * into a full bucket is closed with 1008.
 */

static ngx_int_t
ngx_http_realtime_rate_check(ngx_http_realtime_conn_t *ws)
{
    ngx_int_t                      excess;
    ngx_msec_t                     now, ms;
    ngx_http_realtime_loc_conf_t  *conf;

    conf = ws->conf;

    if (conf->rate == 0) {
        return NGX_OK;
    }

    now = ngx_current_msec;

    if (!ws->rate_started) {
        /* as in limit_req, the first message starts the bucket empty */
        ws->rate_started = 1;
        ws->rate_last = now;
        return NGX_OK;
    }

    ms = now - ws->rate_last;

    excess = (ngx_int_t) ws->rate_excess
             - (ngx_int_t) (conf->rate * ms / 1000) + 1000;

    if (excess < 0) {
        excess = 0;
    }

    if ((ngx_uint_t) excess > conf->burst) {
        ws->rate_strikes++;

        if (ws->rate_strikes * 1000 > conf->burst + conf->rate) {
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "realtime: client keeps exceeding the rate "
                          "limit, closing");
            ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_POLICY,
                                    "rate limit exceeded");
            return NGX_DECLINED;
        }

        if (ngx_http_realtime_error(ws, "RATE_LIMITED",
                                    "too many messages", -1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    ws->rate_excess = excess;
    ws->rate_last = now;

    if (ws->rate_strikes) {
        ws->rate_strikes--;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_realtime_client_join(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t    rc;
    ngx_str_t    room;
    ngx_uint_t   members, first;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    if (ngx_http_realtime_jwt_room_allowed(ws, &room) != NGX_OK) {
        return ngx_http_realtime_room_forbidden(ws, cmd);
    }

    rc = ngx_http_realtime_room_join(ws, &room, &members, &first);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_HTTP_REALTIME_LIMIT:
        return ngx_http_realtime_error(ws, "ROOM_LIMIT",
                                 "too many rooms for one connection",
                                 cmd->has_id ? cmd->id : -1);

    case NGX_HTTP_REALTIME_ZONE_FULL:
        return ngx_http_realtime_error(ws, "ZONE_FULL",
                                 "the realtime zone is full",
                                 cmd->has_id ? cmd->id : -1);

    default:
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_reply_room(ws, "joined", cmd, "members", members);

    if (first && ws->conf->presence) {
        ngx_http_realtime_presence_event(ws, "presence:join", &room);
    }

    return rc;
}


static ngx_int_t
ngx_http_realtime_client_leave(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t    rc;
    ngx_str_t    room;
    ngx_uint_t   members, last;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    rc = ngx_http_realtime_room_leave(ws, &room, &members, &last);

    if (rc == NGX_HTTP_REALTIME_NOT_FOUND) {
        return ngx_http_realtime_error(ws, "BAD_REQUEST",
                                       "not a member of the room",
                                       cmd->has_id ? cmd->id : -1);
    }

    if (last && ws->conf->presence) {
        ngx_http_realtime_presence_event(ws, "presence:leave", &room);
    }

    return ngx_http_realtime_reply_room(ws, "left", cmd, "members", members);
}


static ngx_int_t
ngx_http_realtime_client_publish(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    json_t                   *json;
    ngx_int_t                 rc;
    ngx_str_t                 room;
    ngx_uint_t                recipients;
    ngx_http_realtime_msg_t  *msg;

    if (!ws->conf->client_publish) {
        return ngx_http_realtime_error(ws, "FORBIDDEN",
                                       "clients may not publish here",
                                       cmd->has_id ? cmd->id : -1);
    }

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    /* only members publish; the local list says, no lock needed */

    if (ngx_http_realtime_local_find(ws, &room) == NULL) {
        return ngx_http_realtime_error(ws, "FORBIDDEN",
                                       "not a member of the room",
                                       cmd->has_id ? cmd->id : -1);
    }

    json = ngx_http_realtime_event_relay(cmd->publish_event,
                                         cmd->publish_event_len,
                                         cmd->room, cmd->room_len,
                                         (char *) ws->user.data,
                                         ws->user.len, cmd->publish_data);
    if (json == NULL) {
        return NGX_ERROR;
    }

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_publish(ws->zone, NGX_HTTP_REALTIME_TO_ROOM, &room,
                                   NULL, cmd->echo ? NULL : ws, msg,
                                   &recipients);
    ngx_http_realtime_msg_release(msg);

    if (rc == NGX_HTTP_REALTIME_QUEUE_FULL) {
        return ngx_http_realtime_error(ws, "QUEUE_FULL",
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

    return ngx_http_realtime_reply_room(ws, "published", cmd, "recipients",
                                        recipients);
}


static ngx_int_t
ngx_http_realtime_client_presence(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    json_t     *users;
    ngx_str_t   room;

    room.data = (u_char *) cmd->room;
    room.len = cmd->room_len;

    /* who is in a room is for those who may join it */

    if (ngx_http_realtime_jwt_room_allowed(ws, &room) != NGX_OK) {
        return ngx_http_realtime_room_forbidden(ws, cmd);
    }

    users = ngx_http_realtime_room_presence(ws->zone, &room);
    if (users == NULL) {
        return NGX_ERROR;
    }

    if (ws->zone->redis) {
        /* and the users of the other instances */
        return ngx_http_realtime_redis_presence_query(ws, &room, users,
                                                cmd->has_id ? cmd->id : -1);
    }

    return ngx_http_realtime_reply_new(ws, "presence",
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
ngx_http_realtime_client_refresh(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    time_t       exp;
    ngx_int_t    rc;
    const char  *reason;

    rc = ngx_http_realtime_jwt_refresh(ws, (u_char *) cmd->token,
                                       cmd->token_len, &exp, &reason);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_realtime_error(ws, "INVALID_EVENT",
                                 "\"refresh\" needs realtime_jwt_key",
                                 cmd->has_id ? cmd->id : -1);

    case NGX_HTTP_REALTIME_UNAUTHORIZED:
        return ngx_http_realtime_error(ws, "UNAUTHORIZED", reason,
                                       cmd->has_id ? cmd->id : -1);

    case NGX_HTTP_REALTIME_EXPIRED:
        return ngx_http_realtime_error(ws, "TOKEN_EXPIRED", reason,
                                       cmd->has_id ? cmd->id : -1);

    case NGX_HTTP_REALTIME_FORBIDDEN:
        ngx_http_realtime_close(ws, NGX_HTTP_REALTIME_CLOSE_FORBIDDEN,
                                "token of another user");
        return NGX_OK;

    default:
        return NGX_ERROR;
    }

    return ngx_http_realtime_reply_new(ws, "refreshed",
                                       exp ? json_pack("{s:I}", "exp",
                                                       (json_int_t) exp)
                                           : json_pack("{s:n}", "exp"),
                                       cmd);
}


static ngx_int_t
ngx_http_realtime_room_forbidden(ngx_http_realtime_conn_t *ws,
    ngx_http_realtime_cmd_t *cmd)
{
    return ngx_http_realtime_error(ws, "FORBIDDEN",
                                   "the token does not allow this room",
                                   cmd->has_id ? cmd->id : -1);
}


/* leaves every room, with presence events, and unregisters the socket */

void
ngx_http_realtime_client_close(ngx_http_realtime_conn_t *ws)
{
    u_char                             name[NGX_HTTP_REALTIME_ROOM_MAX];
    ngx_str_t                          room;
    ngx_uint_t                         members, last;
    ngx_http_realtime_local_member_t  *lm;

    if (ws->zone == NULL || ws->sh_conn == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ws->rooms)) {
        lm = ngx_queue_data(ngx_queue_head(&ws->rooms),
                            ngx_http_realtime_local_member_t, conn_link);

        /* the local room may go with the leave: keep the name */
        room.data = name;
        room.len = ngx_min(lm->room->sn.str.len, sizeof(name));
        ngx_memcpy(name, lm->room->sn.str.data, room.len);

        if (ngx_http_realtime_room_leave(ws, &room, &members, &last)
            != NGX_OK)
        {
            break;
        }

        if (last && ws->conf->presence) {
            ngx_http_realtime_presence_event(ws, "presence:leave", &room);
        }
    }

    ngx_http_realtime_room_disconnect(ws);
}


static void
ngx_http_realtime_presence_event(ngx_http_realtime_conn_t *ws,
    const char *event, ngx_str_t *room)
{
    json_t                   *data, *json;
    ngx_http_realtime_msg_t  *msg;

    data = json_pack("{s:s%, s:s%}", "room", room->data, room->len,
                     "userId", ws->user.data, ws->user.len);
    if (data == NULL) {
        return;
    }

    json = ngx_http_realtime_event(event, data, -1);
    json_decref(data);

    if (json == NULL) {
        return;
    }

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return;
    }

    (void) ngx_http_realtime_publish(ws->zone, NGX_HTTP_REALTIME_TO_ROOM,
                                     room, NULL, ws, msg, NULL);
    ngx_http_realtime_msg_release(msg);
}


/* a reply whose data the caller made for it: taken over, NULL fails */

static ngx_int_t
ngx_http_realtime_reply_new(ngx_http_realtime_conn_t *ws, const char *event,
    json_t *data, ngx_http_realtime_cmd_t *cmd)
{
    ngx_int_t  rc;

    if (data == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_reply(ws, event, data, cmd);
    json_decref(data);

    return rc;
}


/* joined, left, published: {"room": R, <key>: n} */

static ngx_int_t
ngx_http_realtime_reply_room(ngx_http_realtime_conn_t *ws, const char *event,
    ngx_http_realtime_cmd_t *cmd, const char *key, ngx_uint_t n)
{
    return ngx_http_realtime_reply_new(ws, event,
                                       json_pack("{s:s%, s:I}", "room",
                                                 cmd->room, cmd->room_len,
                                                 key, (json_int_t) n),
                                       cmd);
}


static ngx_int_t
ngx_http_realtime_reply(ngx_http_realtime_conn_t *ws, const char *event,
    json_t *data, ngx_http_realtime_cmd_t *cmd)
{
    json_t     *json;
    ngx_int_t   rc;

    json = ngx_http_realtime_event(event, data, cmd->has_id ? cmd->id : -1);
    if (json == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send_json(ws, json);
    json_decref(json);

    return rc;
}


static ngx_int_t
ngx_http_realtime_error(ngx_http_realtime_conn_t *ws, const char *code,
    const char *message, json_int_t id)
{
    json_t     *json;
    ngx_int_t   rc;

    json = ngx_http_realtime_event_error(code, message, id);
    if (json == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send_json(ws, json);
    json_decref(json);

    return rc;
}


ngx_int_t
ngx_http_realtime_send_json(ngx_http_realtime_conn_t *ws, json_t *json)
{
    ngx_int_t                 rc;
    ngx_http_realtime_msg_t  *msg;

    msg = ngx_http_realtime_msg_json(json);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_realtime_send(ws, msg);
    ngx_http_realtime_msg_release(msg);

    return rc;
}


/* a text frame of the JSON, serialized straight into the shared buffer */

ngx_http_realtime_msg_t *
ngx_http_realtime_msg_json(json_t *json)
{
    size_t                    len, header;
    ngx_http_realtime_msg_t  *msg;

    len = ngx_http_realtime_json_dump(json, NULL, 0);
    if (len == 0) {
        return NULL;
    }

    header = ngx_http_realtime_frame_header_size(len);

    msg = ngx_http_realtime_msg_alloc(header + len);
    if (msg == NULL) {
        return NULL;
    }

    ngx_http_realtime_frame_header(msg->data, NGX_HTTP_REALTIME_OP_TEXT, len);
    (void) ngx_http_realtime_json_dump(json, (char *) msg->data + header, len);

    msg->len = header + len;

    return msg;
}
