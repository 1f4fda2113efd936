
/*
 * Copyright (C) ngx-realtime developers
 *
 * Server logic without a backend: a client event mapped to a room
 * operation (realtime_route), with the room built from the event's data
 * and the user, and rooms joined on connect (realtime_join_on_connect).
 * A routed event becomes the built-in command it names, with the same
 * checks and answers: membership, the token's rooms claim, limits.  Also
 * the online-user list (realtime_user_list), the judge's identify and
 * connection-id events, and the directives of the routes to backends
 * (realtime_forward and the hooks; ngx_http_realtime_forward.c sends
 * them).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_forward_codec.h"
#include "ngx_http_realtime_jwt.h"


static ngx_http_realtime_route_t *ngx_http_realtime_route_find(
    ngx_http_realtime_loc_conf_t *conf, const char *event, size_t len);
static ngx_int_t ngx_http_realtime_route_user(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd);
static ngx_int_t ngx_http_realtime_route_join_name(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s, ngx_http_complex_value_t *cv,
    ngx_str_t *name);
static void ngx_http_realtime_forward_from(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *rlcf);
static void ngx_http_realtime_user_list_tick(ngx_event_t *ev);
static void ngx_http_realtime_user_list_make(ngx_http_realtime_zone_t *zone,
    ngx_uint_t force);
static void ngx_http_realtime_user_list_send(void *data, json_t *remote,
    ngx_uint_t sockets, ngx_int_t rc);
static json_t *ngx_http_realtime_user_list_build(
    ngx_http_realtime_zone_t *zone, json_t *remote);
static json_t *ngx_http_realtime_user_list_sorted(json_t *set);
static int ngx_http_realtime_user_list_cmp(const void *one,
    const void *two);


/* a list being made, while Redis answers */
typedef struct {
    ngx_http_realtime_zone_t          *zone;
    ngx_uint_t                         force;
} ngx_http_realtime_user_list_job_t;


/* the room of the sockets that get the online users */
static ngx_str_t  ngx_http_realtime_user_list_room =
    ngx_string(NGX_HTTP_REALTIME_USER_LIST_ROOM);


/* NGX_DECLINED: no route takes the event */

ngx_int_t
ngx_http_realtime_route(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    int                         n;
    char                        room[NGX_HTTP_REALTIME_ROOM_MAX];
    size_t                      missing_len;
    ngx_int_t                   rc;
    json_int_t                  id;
    const char                 *missing;
    ngx_http_realtime_route_t  *route;
    ngx_http_realtime_cmd_t     routed;
    u_char                      message[NGX_HTTP_REALTIME_ROOM_MAX + 64];

    if (ngx_http_realtime_route_user(s, cmd) == NGX_OK) {
        return NGX_OK;
    }

    route = ngx_http_realtime_route_find(s->conf, cmd->event, cmd->event_len);
    if (route == NULL) {
        return NGX_DECLINED;
    }

    id = cmd->has_id ? cmd->id : -1;

    n = ngx_http_realtime_route_expand((char *) route->room.data,
                                       route->room.len,
                                       json_is_object(cmd->data)
                                       ? cmd->data : NULL,
                                       (char *) s->user.data, s->user.len,
                                       room, sizeof(room), &missing,
                                       &missing_len);

    if (n == -1) {
        ngx_snprintf(message, sizeof(message) - 1,
                     "\"data.%*s\" must be a string or an integer%Z",
                     ngx_min(missing_len, 64), missing);

        return s->handler->error(s, "BAD_REQUEST", (char *) message, id);
    }

    if (n < 0 || !ngx_http_realtime_room_valid(room, n)) {
        return s->handler->error(s, "BAD_REQUEST",
                                 "the room is not a valid room name", id);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime route \"%*s\" to room \"%*s\"",
                   cmd->event_len, cmd->event, (size_t) n, room);

    /* the built-in command, on the room the route made */

    routed = *cmd;
    routed.root = NULL;
    routed.type = route->type;
    routed.room = room;
    routed.room_len = n;
    routed.routed = 1;

    if (route->type == NGX_HTTP_REALTIME_CMD_PUBLISH) {
        routed.publish_event = route->as.len ? (char *) route->as.data
                                             : cmd->event;
        routed.publish_event_len = route->as.len ? route->as.len
                                                 : cmd->event_len;
        routed.publish_data = cmd->data;
        routed.echo = 0;
    }

    rc = ngx_http_realtime_command(s, &routed);

    return rc;
}


static ngx_http_realtime_route_t *
ngx_http_realtime_route_find(ngx_http_realtime_loc_conf_t *conf,
    const char *event, size_t len)
{
    ngx_uint_t                  i;
    ngx_http_realtime_route_t  *route;

    if (conf->routes == NULL) {
        return NULL;
    }

    route = conf->routes->elts;

    for (i = 0; i < conf->routes->nelts; i++) {
        if (route[i].event.len == len
            && ngx_strncmp(route[i].event.data, event, len) == 0)
        {
            return &route[i];
        }
    }

    return NULL;
}


/* realtime_join_on_connect: right after the session is registered */

void
ngx_http_realtime_route_connect(ngx_http_realtime_session_t *s)
{
    int                        n;
    char                       room[NGX_HTTP_REALTIME_ROOM_MAX];
    size_t                     missing_len;
    ngx_str_t                  name;
    ngx_uint_t                 i, members, first;
    const char                *missing;
    ngx_http_realtime_join_t  *join;

    /* the connect hook's reply comes after, from the backend */
    s->routed = 1;
    ngx_http_realtime_forward_hook(s, 1);

    if (s->conf->user_list_event.len && s->sh_conn) {
        if (ngx_http_realtime_room_join(s, &ngx_http_realtime_user_list_room,
                                        &members, &first)
            == NGX_OK)
        {
            /* the next tick sends the list, to this socket too */
            (void) ngx_atomic_fetch_add(&s->zone->sh->users_version, 1);
        }
    }

    if (s->conf->join_on_connect == NULL || s->sh_conn == NULL) {
        return;
    }

    join = s->conf->join_on_connect->elts;

    for (i = 0; i < s->conf->join_on_connect->nelts; i++) {
        if (join[i].value) {
            /* joined at the handshake: route_join_request() */
            continue;
        }

        n = ngx_http_realtime_route_expand((char *) join[i].room.data,
                                           join[i].room.len, NULL,
                                           (char *) s->user.data,
                                           s->user.len, room, sizeof(room),
                                           &missing, &missing_len);

        if (n < 0 || !ngx_http_realtime_room_valid(room, n)) {
            ngx_log_error(NGX_LOG_WARN, s->log, 0,
                          "realtime: \"%V\" of realtime_join_on_connect "
                          "is not a room for user \"%V\"", &join[i].room,
                          &s->user);
            continue;
        }

        name.data = (u_char *) room;
        name.len = n;

        if (ngx_http_realtime_room_join(s, &name, &members, &first)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, s->log, 0,
                          "realtime: realtime_join_on_connect could not "
                          "join \"%V\"", &name);
            continue;
        }

        if (first && s->conf->presence) {
            ngx_http_realtime_presence_event(s, "presence:join", &name);
        }
    }
}


/*
 * realtime_join_on_connect with variables: the rooms a client names in its
 * handshake, as $arg_room does, joined as a join command would be, with
 * its checks.  Before the 101 and the connect hook, so that a refusal is
 * still an HTTP answer and the backend never hears of the socket; every
 * room is checked before the first is joined, so that a refusal leaves
 * no trace (no presence event).  They come before the rooms of templates,
 * within realtime_max_rooms_per_connection.
 */

ngx_int_t
ngx_http_realtime_route_join_request(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s)
{
    ngx_int_t                  rc;
    ngx_str_t                 *names;
    ngx_uint_t                 i, n, members, first;
    ngx_http_realtime_join_t  *join;

    if (s->conf->join_on_connect == NULL || s->sh_conn == NULL) {
        return NGX_OK;
    }

    names = ngx_palloc(r->pool,
                       s->conf->join_on_connect->nelts * sizeof(ngx_str_t));
    if (names == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    join = s->conf->join_on_connect->elts;
    n = 0;

    for (i = 0; i < s->conf->join_on_connect->nelts; i++) {
        if (join[i].value == NULL) {
            continue;
        }

        rc = ngx_http_realtime_route_join_name(r, s, join[i].value,
                                               &names[n]);
        if (rc != NGX_OK) {
            return rc;
        }

        if (names[n].len) {
            n++;
        }
    }

    if (s->nrooms + n > s->conf->max_rooms) {
        return ngx_http_realtime_refuse(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                        "ROOM_LIMIT",
                                        "too many rooms for one "
                                        "connection");
    }

    for (i = 0; i < n; i++) {
        rc = ngx_http_realtime_room_join(s, &names[i], &members, &first);

        switch (rc) {

        case NGX_OK:
            break;

        case NGX_HTTP_REALTIME_ZONE_FULL:
            return ngx_http_realtime_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "ZONE_FULL",
                                            "the realtime zone is full");

        default:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "realtime join on connect \"%V\" members:%ui",
                       &names[i], members);

        if (first && s->conf->presence) {
            ngx_http_realtime_presence_event(s, "presence:join", &names[i]);
        }
    }

    return NGX_OK;
}


/*
 * The room of one template of variables: URL-decoded (a query argument
 * comes encoded: "chat%3A1" is "chat:1"), a valid name, one the token
 * allows; an empty name when the client names none.
 */

static ngx_int_t
ngx_http_realtime_route_join_name(ngx_http_request_t *r,
    ngx_http_realtime_session_t *s, ngx_http_complex_value_t *cv,
    ngx_str_t *name)
{
    u_char     *dst, *src;
    ngx_str_t   value;

    if (ngx_http_complex_value(r, cv, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (value.len == 0) {
        ngx_str_null(name);
        return NGX_OK;
    }

    if (value.len > NGX_HTTP_REALTIME_ROOM_MAX * 3) {
        goto invalid;
    }

    if (ngx_strlchr(value.data, value.data + value.len, '%')) {
        dst = ngx_pnalloc(r->pool, value.len);
        if (dst == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        name->data = dst;
        src = value.data;
        ngx_unescape_uri(&dst, &src, value.len, 0);
        name->len = dst - name->data;

    } else {
        *name = value;
    }

    if (!ngx_http_realtime_room_valid((char *) name->data, name->len)) {
        goto invalid;
    }

    if (ngx_http_realtime_jwt_room_allowed(s, name) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "realtime: the token of user \"%V\" does not allow "
                      "room \"%V\"", &s->user, name);
        return ngx_http_realtime_refuse(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                        "the token does not allow this "
                                        "room");
    }

    return NGX_OK;

invalid:

    return ngx_http_realtime_refuse(r, NGX_HTTP_BAD_REQUEST, "BAD_REQUEST",
                                    "the room is not a valid room name");
}


/* NGX_OK when a room of realtime_join_on_connect has variables */

ngx_int_t
ngx_http_realtime_route_join_vars(ngx_http_realtime_loc_conf_t *conf)
{
    ngx_uint_t                 i;
    ngx_http_realtime_join_t  *join;

    if (conf->join_on_connect == NULL) {
        return NGX_DECLINED;
    }

    join = conf->join_on_connect->elts;

    for (i = 0; i < conf->join_on_connect->nelts; i++) {
        if (join[i].value) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* realtime_route event join|leave|publish room [as=event]; */

char *
ngx_http_realtime_route_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                  *value;
    ngx_http_realtime_route_t  *route;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_HTTP_REALTIME_EVENT_MAX) {
        return "has an invalid event name";
    }

    if (ngx_http_realtime_route_check((char *) value[3].data, value[3].len)
        != 0)
    {
        return "has an invalid room template";
    }

    if (rlcf->routes == NGX_CONF_UNSET_PTR || rlcf->routes == NULL) {
        rlcf->routes = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_realtime_route_t));
        if (rlcf->routes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    route = ngx_array_push(rlcf->routes);
    if (route == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(route, sizeof(ngx_http_realtime_route_t));
    route->event = value[1];
    route->room = value[3];

    if (ngx_strcmp(value[2].data, "join") == 0) {
        route->type = NGX_HTTP_REALTIME_CMD_JOIN;

    } else if (ngx_strcmp(value[2].data, "leave") == 0) {
        route->type = NGX_HTTP_REALTIME_CMD_LEAVE;

    } else if (ngx_strcmp(value[2].data, "publish") == 0) {
        route->type = NGX_HTTP_REALTIME_CMD_PUBLISH;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid action \"%V\": join, leave or publish",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 5) {
        if (value[4].len < 4 || ngx_strncmp(value[4].data, "as=", 3) != 0
            || route->type != NGX_HTTP_REALTIME_CMD_PUBLISH)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[4]);
            return NGX_CONF_ERROR;
        }

        route->as.data = value[4].data + 3;
        route->as.len = value[4].len - 3;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_realtime_join_on_connect_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_realtime_join_t          *join;
    ngx_http_compile_complex_value_t   ccv;

    if (rlcf->join_on_connect != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    rlcf->join_on_connect = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                             sizeof(ngx_http_realtime_join_t));
    if (rlcf->join_on_connect == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        join = ngx_array_push(rlcf->join_on_connect);
        if (join == NULL) {
            return NGX_CONF_ERROR;
        }

        join->room = value[i];
        join->value = NULL;

        /* a room of variables is the client's: no {user} in it */

        if (ngx_http_script_variables_count(&value[i])) {
            join->value = ngx_palloc(cf->pool,
                                     sizeof(ngx_http_complex_value_t));
            if (join->value == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
            ccv.cf = cf;
            ccv.value = &value[i];
            ccv.complex_value = join->value;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_http_realtime_route_check((char *) value[i].data,
                                          value[i].len)
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid room template \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * realtime_user_list event [interval]: every socket of the location is
 * in the room "#users", and gets the full list of the zone's online users
 * as that event when it changes, at most once an interval: a connect
 * storm costs one list per interval, built by one worker.  With Redis the
 * list is the cluster's: this instance's users from the zone, the other
 * instances' from Redis, read again when one of them tells of a change
 * and every third of presence_ttl (an instance that died drops out);
 * a list read again is sent only if it differs from the last one sent.
 */

static void
ngx_http_realtime_user_list_tick(ngx_event_t *ev)
{
    ngx_msec_t                  now;
    ngx_atomic_uint_t           version, listed, checked;
    ngx_http_realtime_zone_t   *zone;
    ngx_http_realtime_shctx_t  *sh;

    zone = ev->data;
    sh = zone->sh;
    version = sh->users_version;
    listed = sh->users_listed;
    now = ngx_current_msec;
    checked = sh->users_checked;

    if (version != listed
        && ngx_atomic_cmp_set(&sh->users_listed, listed, version))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "realtime user list v%uA", version);

        ngx_http_realtime_user_list_make(zone, 1);

    } else if (zone->redis
               && ((sh->users_remote
                    && ngx_atomic_cmp_set(&sh->users_remote, 1, 0))
                   || ((ngx_msec_t) (now - checked)
                          >= zone->redis_conf->presence_ttl / 3
                       && ngx_atomic_cmp_set(&sh->users_checked, checked,
                                             now))))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "realtime user list: reading the cluster's again");

        ngx_http_realtime_user_list_make(zone, 0);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, zone->user_list_interval);
    }
}


/* force: send even if it is the list sent last (a new socket wants it) */

static void
ngx_http_realtime_user_list_make(ngx_http_realtime_zone_t *zone,
    ngx_uint_t force)
{
    ngx_int_t                           rc;
    ngx_http_realtime_user_list_job_t  *job;

    job = ngx_alloc(sizeof(ngx_http_realtime_user_list_job_t),
                    ngx_cycle->log);
    if (job == NULL) {
        return;
    }

    job->zone = zone;
    job->force = force;

    rc = zone->redis
         ? ngx_http_realtime_redis_lookup(zone,
                                          NGX_HTTP_REALTIME_LOOKUP_ONLINE,
                                          NULL,
                                          ngx_http_realtime_user_list_send,
                                          job)
         : NGX_DECLINED;

    if (rc == NGX_DECLINED) {
        /* no Redis (or not now): this instance's users */
        ngx_http_realtime_user_list_send(job, NULL, 0, NGX_DECLINED);
    }
}


/*
 * The zone's users and remote's (the other instances', a JSON object of
 * names, or NULL), sorted and without doubles, to "#users".
 */

static void
ngx_http_realtime_user_list_send(void *data, json_t *remote,
    ngx_uint_t sockets, ngx_int_t rc)
{
    ngx_http_realtime_user_list_job_t *job = data;

    char                      *text;
    json_t                    *users, *json;
    uint32_t                   crc;
    ngx_uint_t                 force;
    ngx_http_realtime_msg_t   *msg;
    ngx_http_realtime_zone_t  *zone;

    zone = job->zone;
    force = job->force;
    ngx_free(job);

    users = ngx_http_realtime_user_list_build(zone, remote);
    if (users == NULL) {
        return;
    }

    text = json_dumps(users, JSON_COMPACT);
    if (text == NULL) {
        json_decref(users);
        return;
    }

    crc = ngx_crc32_long((u_char *) text, ngx_strlen(text));
    free(text);

    if (!force && crc == zone->sh->users_list_crc) {
        json_decref(users);
        return;
    }

    zone->sh->users_list_crc = crc;

    json = ngx_http_realtime_event((char *) zone->user_list_event.data,
                                   users, -1);
    json_decref(users);

    if (json == NULL) {
        return;
    }

    ngx_http_realtime_stamp(zone->user_list_timestamp, json);

    msg = ngx_http_realtime_msg_json(json);
    json_decref(json);

    if (msg == NULL) {
        return;
    }

    (void) ngx_http_realtime_publish_zone(zone, NGX_HTTP_REALTIME_TO_ROOM,
                                          &ngx_http_realtime_user_list_room,
                                          NULL, NULL, msg, NULL);
    ngx_http_realtime_msg_release(msg);
}


/*
 * The zone's users and remote's, as a set.  Nothing allocates under the
 * zone's lock: the size is taken, the buffer made outside, the names
 * copied in (as many as still fit), and the JSON built after.
 */

static json_t *
ngx_http_realtime_user_list_build(ngx_http_realtime_zone_t *zone,
    json_t *remote)
{
    u_char             *buf, *p, *last;
    size_t              size;
    json_t             *set, *users;
    uint16_t            len;
    ngx_str_node_t     *sn;
    ngx_rbtree_t       *tree;
    ngx_rbtree_node_t  *node;

    tree = &zone->sh->users;

    ngx_shmtx_lock(&zone->shpool->mutex);
    size = zone->sh->nusers * (sizeof(uint16_t) + NGX_HTTP_REALTIME_USER_MAX);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    buf = ngx_alloc(size + 1, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;
    last = buf + size;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (tree->root != tree->sentinel) {
        for (node = ngx_rbtree_min(tree->root, tree->sentinel);
             node;
             node = ngx_rbtree_next(tree, node))
        {
            sn = (ngx_str_node_t *) node;

            if ((size_t) (last - p) < sizeof(uint16_t) + sn->str.len) {
                break;
            }

            len = (uint16_t) sn->str.len;
            p = ngx_cpymem(p, &len, sizeof(uint16_t));
            p = ngx_cpymem(p, sn->str.data, sn->str.len);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    set = remote ? json_deep_copy(remote) : json_object();

    last = p;
    p = buf;

    while (set && p < last) {
        ngx_memcpy(&len, p, sizeof(uint16_t));
        p += sizeof(uint16_t);

        /* a name that is not UTF-8 is left out, not the whole list */
        (void) json_object_setn_new(set, (char *) p, len, json_true());
        p += len;
    }

    ngx_free(buf);

    if (set == NULL) {
        return NULL;
    }

    users = ngx_http_realtime_user_list_sorted(set);
    json_decref(set);

    return users;
}


/* the names of set, sorted: every instance sends the same list */

static json_t *
ngx_http_realtime_user_list_sorted(json_t *set)
{
    void        *it;
    json_t      *users;
    ngx_str_t   *names;
    ngx_uint_t   i, n;

    n = json_object_size(set);

    names = ngx_alloc((n + 1) * sizeof(ngx_str_t), ngx_cycle->log);
    if (names == NULL) {
        return NULL;
    }

    i = 0;

    for (it = json_object_iter(set); it && i < n;
         it = json_object_iter_next(set, it))
    {
        names[i].data = (u_char *) json_object_iter_key(it);
        names[i].len = json_object_iter_key_len(it);
        i++;
    }

    /* qsort: ngx_sort() is an insertion sort, and lists are long */
    ngx_qsort(names, i, sizeof(ngx_str_t), ngx_http_realtime_user_list_cmp);

    users = json_array();
    n = i;

    for (i = 0; users && i < n; i++) {
        (void) json_array_append_new(users,
                                     json_stringn((char *) names[i].data,
                                                  names[i].len));
    }

    ngx_free(names);

    return users;
}


static int
ngx_http_realtime_user_list_cmp(const void *one, const void *two)
{
    const ngx_str_t  *a = one, *b = two;

    return (int) ngx_memn2cmp(a->data, b->data, a->len, b->len);
}


ngx_int_t
ngx_http_realtime_user_list_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i, n;
    ngx_http_realtime_zone_t      **zones, *zone;

    zones = ngx_http_realtime_zones(cycle, &n);

    for (i = 0; i < n; i++) {
        zone = zones[i];

        if (zone->user_list_event.len == 0
            || zone->slot == NGX_HTTP_REALTIME_SLOTS)
        {
            continue;
        }

        zone->user_list_timer.handler = ngx_http_realtime_user_list_tick;
        zone->user_list_timer.data = zone;
        zone->user_list_timer.log = cycle->log;
        zone->user_list_timer.cancelable = 1;

        ngx_add_timer(&zone->user_list_timer, zone->user_list_interval);
    }

    return NGX_OK;
}


char *
ngx_http_realtime_user_list_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t  *value;
    ngx_int_t   ms;

    if (rlcf->user_list_event.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_HTTP_REALTIME_EVENT_MAX) {
        return "has an invalid event name";
    }

    rlcf->user_list_event = value[1];
    rlcf->user_list_interval = 500;

    if (cf->args->nelts == 3) {
        ms = ngx_parse_time(&value[2], 0);
        if (ms == NGX_ERROR || ms == 0) {
            return "has an invalid interval";
        }

        rlcf->user_list_interval = (ngx_msec_t) ms;
    }

    return NGX_CONF_OK;
}


/* the zone sends the list: one event name and interval per zone */

char *
ngx_http_realtime_user_list_merge(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *conf)
{
    ngx_http_realtime_zone_t  *zone;

    zone = conf->zone;

    if (conf->user_list_event.len == 0) {
        return NGX_CONF_OK;
    }

    if (zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_user_list needs a zone");
        return NGX_CONF_ERROR;
    }

    if (zone->user_list_event.len
        && (zone->user_list_event.len != conf->user_list_event.len
            || ngx_strncmp(zone->user_list_event.data,
                           conf->user_list_event.data,
                           conf->user_list_event.len) != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_user_list \"%V\" differs from \"%V\" "
                           "of another location of zone \"%V\"",
                           &conf->user_list_event, &zone->user_list_event,
                           &zone->name);
        return NGX_CONF_ERROR;
    }

    zone->user_list_event = conf->user_list_event;
    zone->user_list_timestamp |= conf->timestamp;
    zone->user_list_interval = conf->user_list_interval;

    return NGX_CONF_OK;
}


/*
 * The judge's two events: realtime_identify makes the data (a user id)
 * the session's user, for sockets that came without one; and
 * realtime_connection_id answers with the connection id of one socket
 * of the user named.  NGX_DECLINED: not one of them.
 */

static ngx_int_t
ngx_http_realtime_route_user(ngx_http_realtime_session_t *s,
    ngx_http_realtime_cmd_t *cmd)
{
    u_char                        *p, buf[NGX_INT64_LEN];
    json_t                        *data;
    uint64_t                       conn;
    ngx_int_t                      rc;
    ngx_str_t                      name, *event;
    json_int_t                     id;
    ngx_http_realtime_loc_conf_t  *conf;

    conf = s->conf;
    event = NULL;

    if (conf->identify_event.len == cmd->event_len
        && ngx_strncmp(conf->identify_event.data, cmd->event,
                       cmd->event_len) == 0)
    {
        event = &conf->identify_event;

    } else if (conf->conn_id_event.len == cmd->event_len
               && ngx_strncmp(conf->conn_id_event.data, cmd->event,
                              cmd->event_len) == 0)
    {
        event = &conf->conn_id_event;
    }

    if (event == NULL || event->len == 0) {
        return NGX_DECLINED;
    }

    id = cmd->has_id ? cmd->id : -1;

    if (s->sh_conn == NULL) {
        (void) s->handler->error(s, "BAD_REQUEST",
                                 "users need \"realtime <zone>\"", id);
        return NGX_OK;
    }

    /* "user_123", or {"userId": "user_123"} */

    data = json_is_object(cmd->data) ? json_object_get(cmd->data, "userId")
                                     : cmd->data;

    if (!json_is_string(data) || json_string_length(data) == 0
        || json_string_length(data) > NGX_HTTP_REALTIME_USER_MAX)
    {
        (void) s->handler->error(s, "BAD_REQUEST",
                                 "the data must be a user id of 1-256 bytes",
                                 id);
        return NGX_OK;
    }

    name.data = (u_char *) json_string_value(data);
    name.len = json_string_length(data);

    if (event == &conf->conn_id_event) {
        conn = ngx_http_realtime_room_user_conn(s->zone, &name);
        p = ngx_sprintf(buf, "%uL", conn);

        data = conn ? json_stringn((char *) buf, p - buf) : json_null();

        (void) s->handler->reply(s, (char *) conf->conn_id_answer.data,
                                 data, id);
        json_decref(data);
        return NGX_OK;
    }

    if (s->jwt) {
        (void) s->handler->error(s, "FORBIDDEN",
                                 "the token names the user", id);
        return NGX_OK;
    }

    rc = ngx_http_realtime_room_identify(s, &name);

    switch (rc) {

    case NGX_OK:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime identify as \"%V\"", &name);

        data = json_pack("{s:s%}", "userId", s->user.data, s->user.len);
        if (data == NULL) {
            return NGX_ERROR;
        }

        rc = s->handler->reply(s, (char *) event->data, data, id);
        json_decref(data);
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;

    case NGX_DECLINED:
        (void) s->handler->error(s, "BAD_REQUEST",
                                 "a socket in rooms keeps its user", id);
        return NGX_OK;

    case NGX_HTTP_REALTIME_LIMIT:
        (void) s->handler->error(s, "TOO_MANY_CONNECTIONS",
                                 "too many connections for this user", id);
        return NGX_OK;

    default:
        (void) s->handler->error(s, "ZONE_FULL", "the realtime zone is full",
                                 id);
        return NGX_OK;
    }
}


/* realtime_identify event;  realtime_connection_id event answer; */

char *
ngx_http_realtime_identify_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t  *value, *event;

    value = cf->args->elts;
    event = (cf->args->nelts == 2) ? &rlcf->identify_event
                                   : &rlcf->conn_id_event;

    if (event->data) {
        return "is duplicate";
    }

    if (value[1].len == 0 || value[1].len > NGX_HTTP_REALTIME_EVENT_MAX) {
        return "has an invalid event name";
    }

    *event = value[1];

    if (cf->args->nelts == 3) {
        rlcf->conn_id_answer = value[2];
    }

    return NGX_CONF_OK;
}


/* realtime_forward and the hooks: the routes to backends */

char *
ngx_http_realtime_forward_hook_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                          *value, s;
    ngx_int_t                           ms;
    ngx_http_realtime_route_forward_t  *route, **hook;

    hook = (cmd->name.data[sizeof("realtime_") - 1] == 'c')
           ? &rlcf->connect_hook : &rlcf->disconnect_hook;

    if (*hook != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        return "needs a URI that starts with \"/\"";
    }

    route = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_route_forward_t));
    if (route == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the hook's name, for the metrics by route */
    if (hook == &rlcf->connect_hook) {
        ngx_str_set(&route->event, "connect");

    } else {
        ngx_str_set(&route->event, "disconnect");
    }

    route->uri = value[1];
    route->timeout = 10000;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "timeout=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 8;
        s.len = value[2].len - 8;

        ms = ngx_parse_time(&s, 0);
        if (ms == NGX_ERROR) {
            return "has an invalid timeout";
        }

        route->timeout = (ngx_msec_t) ms;
    }

    *hook = route;
    ngx_http_realtime_forward_from(cf, rlcf);

    return NGX_CONF_OK;
}


/*
 * realtime_forward event|* uri [timeout=time] [unordered];
 */

char *
ngx_http_realtime_forward_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                          *value, s;
    ngx_int_t                           ms;
    ngx_uint_t                          i;
    ngx_http_realtime_route_forward_t  *route;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_HTTP_REALTIME_EVENT_MAX) {
        return "has an invalid event name";
    }

    if (value[2].len == 0 || value[2].data[0] != '/') {
        return "needs a URI that starts with \"/\"";
    }

    if (rlcf->forwards == NGX_CONF_UNSET_PTR || rlcf->forwards == NULL) {
        rlcf->forwards = ngx_array_create(cf->pool, 4,
                                 sizeof(ngx_http_realtime_route_forward_t));
        if (rlcf->forwards == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    route = ngx_array_push(rlcf->forwards);
    if (route == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(route, sizeof(ngx_http_realtime_route_forward_t));
    route->event = value[1];
    route->uri = value[2];
    route->timeout = 10000;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            ms = ngx_parse_time(&s, 0);
            if (ms == NGX_ERROR) {
                return "has an invalid timeout";
            }

            route->timeout = (ngx_msec_t) ms;
            continue;
        }

        if (value[i].len == 9 && ngx_strcmp(value[i].data, "unordered") == 0)
        {
            route->unordered = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    ngx_http_realtime_forward_from(cf, rlcf);

    return NGX_CONF_OK;
}


/*
 * The configuration forwards are sent from; the claims of tokens are
 * kept for $realtime_jwt_* there.
 */

static void
ngx_http_realtime_forward_from(ngx_conf_t *cf,
    ngx_http_realtime_loc_conf_t *rlcf)
{
    ngx_http_realtime_jwt_conf_t  *jcf;

    rlcf->forward_ctx = cf->ctx;

    jcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_realtime_jwt_module);
    jcf->keep_claims = 1;
}
