
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_socketio_recovery with realtime_redis: Socket.IO's connection
 * state recovery on any instance.  The zone's sequence, the place a
 * client sends back, is this instance's only; a room's offset (Redis's)
 * is everyone's.  So when the transport goes, the socket is kept in
 * Redis (ngx_http_realtime_redis_session.c) with, for each of its rooms,
 * the epoch and the (sequence, offset) of every publication the history
 * holds up to the last delivered:
 *
 *   {"id", "nsp", "user", "rooms": [[room, epoch, start, [seq, offset,
 *    ...]], ...]}
 *
 * The CONNECT that brings the pid back, on any worker of any instance,
 * takes the record (read and deleted: a pid comes back once), and the
 * client's sequence gives each room's offset: the last one at or below
 * it (each worker delivered in sequence order).  Then each room is
 * joined since that offset:
 *
 *   - from this zone's history when it holds the rest (a room with
 *     members here, or the same instance): what is replayed carries this
 *     zone's sequence, sorted as live ones would have come;
 *   - otherwise from Redis, as a native join since does
 *     (ngx_http_realtime_recover.c): the member gets nothing live, the
 *     room's list is read once its subscription is confirmed, the CONNECT
 *     is answered after every room's read, with what the zone got after
 *     it; what the subscription still brings up to the read's last is
 *     skipped.  These carry no sequence of
 *     this zone: their place argument is "-", and they come first, room
 *     by room, then the zone's.  A client that goes again before
 *     anything else came says "-" and gets a new session, never a wrong
 *     replay.
 *
 * Anything that does not hold (no record, another namespace or user, a
 * room whose place is unknown or not held, no subscription in
 * NGX_HTTP_REALTIME_SIO_RESUME_TIME) is a new session, as in Node.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_protocol.h"
#include "ngx_http_realtime_eio_session.h"


#define NGX_HTTP_REALTIME_SIO_RESUME_TIME   2000
#define NGX_HTTP_REALTIME_SIO_RESUME_STEP   10

/* the places kept per room: the newest ones sent */
#define NGX_HTTP_REALTIME_SIO_RESUME_PLACES 256

/* what else comes while the CONNECT waits, sent after its answer */
#define NGX_HTTP_REALTIME_SIO_RESUME_HELD   256


typedef struct {
    ngx_http_realtime_member_wait_t    wait;        /* first: the member */
    ngx_http_realtime_history_read_t   read;
    ngx_http_realtime_sio_resume_t    *rs;
    ngx_str_t                          name;        /* in rs->kept */
    ngx_str_t                          epoch;       /* in rs->kept */
    uint64_t                           since;
    u_char                             read_epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    u_char                             pre_epoch[NGX_HTTP_REALTIME_EPOCH_LEN];
    unsigned                           pre_known:1;  /* pre_epoch is set */
    unsigned                           joined:1;
    unsigned                           from_redis:1;
    unsigned                           reading:1;
    unsigned                           answered:1;
    unsigned                           read_ok:1;
} ngx_http_realtime_sio_resume_room_t;


struct ngx_http_realtime_sio_resume_s {
    ngx_http_realtime_sio_socket_t       *sock;     /* NULL: it went */
    ngx_http_realtime_sio_answer_pt       answer;
    json_t                               *kept;
    ngx_event_t                           timer;
    ngx_msec_t                            deadline;
    ngx_uint_t                            reading;
    ngx_http_realtime_msg_t             **held;
    ngx_uint_t                            nheld;
    unsigned                              overflow:1;
    ngx_uint_t                            nrooms;
    u_char                                pid[NGX_HTTP_REALTIME_SIO_PID_LEN];
    ngx_http_realtime_sio_resume_room_t   rooms[1];
};


static json_t *ngx_http_realtime_sio_resume_record(
    ngx_http_realtime_sio_socket_t *sock);
static json_t *ngx_http_realtime_sio_resume_places(
    ngx_http_realtime_zone_t *zone, ngx_http_realtime_local_member_t *lm,
    uint64_t *places);
static void ngx_http_realtime_sio_resume_set(ngx_http_realtime_zone_t *zone,
    u_char *pid, json_t *record, ngx_msec_t ttl, ngx_log_t *log);
static const char *ngx_http_realtime_sio_resume_check(
    ngx_http_realtime_sio_socket_t *sock, json_t *kept, json_t *auth,
    uint64_t *seq);
static ngx_int_t ngx_http_realtime_sio_resume_join(
    ngx_http_realtime_sio_resume_t *rs, uint64_t seq);
static ngx_int_t ngx_http_realtime_sio_resume_place(json_t *places,
    ngx_uint_t start, uint64_t seq, uint64_t *since);
static ngx_int_t ngx_http_realtime_sio_resume_zone(
    ngx_http_realtime_sio_resume_t *rs, u_char **replay, size_t *len);
static void ngx_http_realtime_sio_resume_step(ngx_event_t *ev);
static void ngx_http_realtime_sio_resume_read(void *data, ngx_int_t rc);
static void ngx_http_realtime_sio_resume_end(
    ngx_http_realtime_sio_resume_t *rs, ngx_int_t rc);
static ngx_int_t ngx_http_realtime_sio_resume_collect(
    ngx_http_realtime_sio_resume_t *rs, u_char **replay, size_t *len);
static ngx_int_t ngx_http_realtime_sio_resume_append(u_char **all,
    size_t *total, u_char *buf, size_t len);
static void ngx_http_realtime_sio_resume_leave(
    ngx_http_realtime_sio_resume_t *rs);
static void ngx_http_realtime_sio_resume_free(
    ngx_http_realtime_sio_resume_t *rs);
static void ngx_http_realtime_sio_resume_taken(void *data, u_char *rec,
    size_t len, ngx_int_t rc);
static ngx_uint_t ngx_http_realtime_sio_resume_gone(
    ngx_http_realtime_eio_t *eio);


/* the transport went: the socket, kept in Redis for any instance */

void
ngx_http_realtime_sio_resume_keep(ngx_http_realtime_sio_socket_t *sock)
{
    json_t                       *record;
    ngx_http_realtime_session_t  *s;

    s = &sock->session;

    if (s->zone->history_max == 0 || s->sh_conn == NULL) {
        return;
    }

    record = ngx_http_realtime_sio_resume_record(sock);

    if (record == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "realtime: socket.io session not kept: no memory");
        return;
    }

    ngx_http_realtime_sio_resume_set(s->zone, sock->pid, record,
                                     s->conf->sio_recovery, s->log);
    json_decref(record);
}


static void
ngx_http_realtime_sio_resume_set(ngx_http_realtime_zone_t *zone, u_char *pid,
    json_t *record, ngx_msec_t ttl, ngx_log_t *log)
{
    char       *rec;
    ngx_str_t   p;

    rec = json_dumps(record, JSON_COMPACT);
    if (rec == NULL) {
        return;
    }

    p.data = pid;
    p.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    if (ngx_http_realtime_redis_session_keep(zone, &p, (u_char *) rec,
                                             ngx_strlen(rec), ttl)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "realtime: socket.io session \"%V\" not kept: Redis "
                      "is not connected", &p);
    }

    free(rec);
}


static json_t *
ngx_http_realtime_sio_resume_record(ngx_http_realtime_sio_socket_t *sock)
{
    json_t                            *record, *rooms, *room;
    uint64_t                          *places;
    ngx_str_t                          user;
    ngx_queue_t                       *q;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_session_t       *s;
    ngx_http_realtime_local_member_t  *lm;

    s = &sock->session;
    zone = s->zone;

    /* an anonymous user is its connection: kept as none */
    user = s->user;

    if (user.data == s->id.data) {
        user.len = 0;
    }

    places = ngx_alloc(2 * NGX_HTTP_REALTIME_SIO_RESUME_PLACES
                       * sizeof(uint64_t), s->log);
    if (places == NULL) {
        return NULL;
    }

    rooms = json_array();
    record = json_pack("{s:s%, s:s%, s:s%, s:s%, s:o}",
                       "zone", zone->sh->instance,
                       (size_t) NGX_HTTP_REALTIME_INSTANCE_LEN,
                       "id", sock->id, (size_t) NGX_HTTP_REALTIME_SIO_ID_LEN,
                       "nsp", sock->nsp.data, sock->nsp.len,
                       "user", user.data ? (char *) user.data : "", user.len,
                       "rooms", rooms);

    for (q = ngx_queue_head(&s->rooms);
         record && q != ngx_queue_sentinel(&s->rooms);
         q = ngx_queue_next(q))
    {
        lm = ngx_queue_data(q, ngx_http_realtime_local_member_t, conn_link);

        if (!ngx_http_realtime_sio_recovery_kept(lm)) {
            continue;
        }

        room = ngx_http_realtime_sio_resume_places(zone, lm, places);

        if (room == NULL || json_array_append_new(rooms, room) != 0) {
            json_decref(record);
            record = NULL;
        }
    }

    ngx_free(places);

    return record;
}


/*
 * [room, epoch, start, [seq, offset, ...]]: what was delivered of it.
 * What a recovery here gave from Redis, without a place, is one (0,
 * offset): anything with a place came after it.
 */

static json_t *
ngx_http_realtime_sio_resume_places(ngx_http_realtime_zone_t *zone,
    ngx_http_realtime_local_member_t *lm, uint64_t *places)
{
    json_t     *room, *pairs;
    ngx_str_t  *name;
    ngx_uint_t                       i, n, start, redis;
    uint64_t                         upto;
    ngx_http_realtime_history_pos_t  rp;
    u_char                           epoch[NGX_HTTP_REALTIME_EPOCH_LEN];

    name = &lm->room->sn.str;

    /* a room without a history (the zone was full) has epoch 0s */
    ngx_memset(epoch, '0', NGX_HTTP_REALTIME_EPOCH_LEN);

    ngx_shmtx_lock(&zone->shpool->mutex);

    (void) ngx_http_realtime_history_epoch_locked(zone, name, epoch);
    redis = ngx_http_realtime_history_from_redis_locked(zone, name, &rp);
    n = ngx_http_realtime_history_places_locked(zone, name, lm->offset,
                                     places,
                                     NGX_HTTP_REALTIME_SIO_RESUME_PLACES,
                                     &start);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!redis && lm->replayed == 0) {
        /*
         * Nothing came here by Redis since the join: the socket is where
         * Redis was then (lm->base), on any instance; not known (the
         * read did not come back), it cannot be told
         */
        if (!lm->base_known) {
            return json_pack("[s%, s%, b, []]", name->data, name->len,
                             epoch, (size_t) NGX_HTTP_REALTIME_EPOCH_LEN, 0);
        }

        return json_pack("[s%, s%, b, [I, I]]", name->data, name->len,
                         lm->base_none ? "" : (char *) lm->base_epoch,
                         (size_t) (lm->base_none
                                   ? 0 : NGX_HTTP_REALTIME_EPOCH_LEN),
                         0, (json_int_t) 0, (json_int_t) lm->base);
    }

    pairs = json_array();
    if (pairs == NULL) {
        return NULL;
    }

    upto = lm->replayed;

    if (upto
        && ngx_memcmp(epoch, lm->replayed_epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           != 0)
    {
        /*
         * Nothing came here by Redis since (the zone's epoch is its own):
         * the place is Redis's, where the replay ended
         */
        ngx_memcpy(epoch, lm->replayed_epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
        n = 0;
        start = 0;
    }

    /* what the history held before the join is not the socket's */
    if (lm->base_known && !lm->base_none && lm->base > upto
        && ngx_memcmp(epoch, lm->base_epoch, NGX_HTTP_REALTIME_EPOCH_LEN)
           == 0)
    {
        upto = lm->base;
    }

    /* the first place after what came from Redis */
    for (i = 0; i < n && places[2 * i + 1] <= upto; i++) {
        /* void */
    }

    if (upto
        && ((i < n && places[2 * i + 1] == upto + 1)
            || (i == n && lm->offset <= upto))
        && (json_array_append_new(pairs, json_integer(0)) != 0
            || json_array_append_new(pairs, json_integer((json_int_t) upto))
               != 0))
    {
        json_decref(pairs);
        return NULL;
    }

    for ( /* void */ ; i < n; i++) {
        if (json_array_append_new(pairs,
                                  json_integer((json_int_t) places[2 * i]))
            != 0
            || json_array_append_new(pairs,
                               json_integer((json_int_t) places[2 * i + 1]))
               != 0)
        {
            json_decref(pairs);
            return NULL;
        }
    }

    room = json_pack("[s%, s%, b, o]", name->data, name->len,
                     epoch, (size_t) NGX_HTTP_REALTIME_EPOCH_LEN,
                     (int) start, pairs);

    return room;
}


/*
 * A CONNECT with a pid in auth, with realtime_redis: it waits for Redis
 * to give the kept session.  NGX_DECLINED: not so (the caller goes on,
 * and keeps auth and jwt); NGX_OK: they are taken over.
 */

ngx_int_t
ngx_http_realtime_sio_resume_take(ngx_http_realtime_eio_t *eio,
    ngx_str_t *name, json_t *auth, ngx_http_realtime_jwt_conn_t *jwt,
    ngx_http_realtime_sio_socket_pt socket)
{
    json_t                              *v;
    ngx_str_t                            pid;
    ngx_http_realtime_zone_t            *zone;
    ngx_http_realtime_sio_connecting_t  *waiting;

    zone = eio->conf->zone;

    if (zone == NULL || zone->redis == NULL || !eio->conf->sio_recovery
        || eio->conf->mode != NGX_HTTP_REALTIME_SIO)
    {
        return NGX_DECLINED;
    }

    v = auth ? json_object_get(auth, "pid") : NULL;

    if (!json_is_string(v)
        || json_string_length(v) != NGX_HTTP_REALTIME_SIO_PID_LEN)
    {
        return NGX_DECLINED;
    }

    pid.data = (u_char *) json_string_value(v);
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    waiting = ngx_calloc(sizeof(ngx_http_realtime_sio_connecting_t),
                         eio->log);
    if (waiting == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_realtime_redis_session_take(zone, &pid,
                                             ngx_http_realtime_sio_resume_taken,
                                             waiting)
        != NGX_OK)
    {
        ngx_free(waiting);
        return NGX_DECLINED;
    }

    waiting->eio = eio;
    waiting->nsp = name;
    waiting->auth = auth;
    waiting->jwt = jwt;
    waiting->zone = zone;
    waiting->socket = socket;
    waiting->ttl = eio->conf->sio_recovery;
    ngx_memcpy(waiting->pid, pid.data, NGX_HTTP_REALTIME_SIO_PID_LEN);
    waiting->taking = 1;
    ngx_queue_insert_tail(&eio->connecting, &waiting->link);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, eio->log, 0,
                   "realtime sio connect nsp:\"%V\" takes pid:%V from Redis",
                   name, &pid);

    return NGX_OK;
}


static void
ngx_http_realtime_sio_resume_taken(void *data, u_char *rec, size_t len,
    ngx_int_t rc)
{
    ngx_http_realtime_sio_connecting_t *waiting = data;

    json_t                   *kept;
    ngx_str_t                 pid;
    ngx_http_realtime_eio_t  *eio;

    eio = waiting->eio;

    if (rc == NGX_OK
        && (eio == NULL || ngx_http_realtime_sio_resume_gone(eio)))
    {
        /* the transport went meanwhile: the record is put back */
        pid.data = waiting->pid;
        pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;
        (void) ngx_http_realtime_redis_session_keep(waiting->zone, &pid, rec,
                                                    len, waiting->ttl);
    }

    if (eio == NULL) {
        /* the session went meanwhile: auth and jwt were freed with it */
        ngx_free(waiting);
        return;
    }

    ngx_queue_remove(&waiting->link);

    if (rc == NGX_ABORT) {
        /* the worker exits: no CONNECT now */
        json_decref(waiting->auth);

        if (waiting->jwt) {
            ngx_http_realtime_jwt_free(waiting->jwt);
        }

        ngx_free(waiting);
        return;
    }

    kept = (rc == NGX_OK) ? json_loadb((char *) rec, len, 0, NULL) : NULL;

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, eio->log, 0,
                      "realtime: socket.io session not taken: Redis failed");
    }

    if (eio->closing) {
        json_decref(waiting->auth);

        if (waiting->jwt) {
            ngx_http_realtime_jwt_free(waiting->jwt);
        }

    } else if (waiting->socket(eio, waiting->nsp, waiting->auth, waiting->jwt,
                               kept)
               == NGX_ERROR)
    {
        ngx_http_realtime_eio_close(eio, "internal error");
    }

    if (kept) {
        json_decref(kept);
    }

    ngx_free(waiting);
}


/*
 * The CONNECT's socket, kept (or NULL) as Redis gave it: NGX_OK
 * recovered now (*replay what it missed), NGX_AGAIN answered later by
 * answer(), NGX_DECLINED a new session (a new
 * pid), or NGX_ERROR.
 */

ngx_int_t
ngx_http_realtime_sio_resume(ngx_http_realtime_sio_socket_t *sock,
    json_t *auth, json_t *kept, u_char **replay, size_t *len,
    ngx_http_realtime_sio_answer_pt answer)
{
    json_t                          *v;
    size_t                           n;
    uint64_t                         seq;
    ngx_int_t                        rc;
    ngx_str_t                        pid;
    const char                      *why;
    ngx_http_realtime_session_t     *s;
    ngx_http_realtime_sio_resume_t  *rs;

    *replay = NULL;
    *len = 0;
    s = &sock->session;

    v = auth ? json_object_get(auth, "pid") : NULL;

    if (!json_is_string(v)
        || json_string_length(v) != NGX_HTTP_REALTIME_SIO_PID_LEN)
    {
        ngx_http_realtime_sio_recovery_new(sock);
        return NGX_DECLINED;
    }

    pid.data = (u_char *) json_string_value(v);
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    why = ngx_http_realtime_sio_resume_check(sock, kept, auth, &seq);

    if (why) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: socket.io session \"%V\" not recovered: %s",
                      &pid, why);
        ngx_http_realtime_sio_recovery_new(sock);
        return NGX_DECLINED;
    }

    n = json_array_size(json_object_get(kept, "rooms"));

    rs = ngx_calloc(sizeof(ngx_http_realtime_sio_resume_t)
                    + n * sizeof(ngx_http_realtime_sio_resume_room_t),
                    s->log);
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->sock = sock;
    rs->answer = answer;
    rs->kept = json_incref(kept);
    rs->nrooms = n;
    ngx_memcpy(rs->pid, pid.data, NGX_HTTP_REALTIME_SIO_PID_LEN);

    rc = ngx_http_realtime_sio_resume_join(rs, seq);

    if (rc == NGX_OK) {
        rc = ngx_http_realtime_sio_resume_zone(rs, replay, len);
    }

    switch (rc) {

    case NGX_OK:
        ngx_memcpy(sock->id,
                   json_string_value(json_object_get(kept, "id")),
                   NGX_HTTP_REALTIME_SIO_ID_LEN);
        ngx_memcpy(sock->pid, rs->pid, NGX_HTTP_REALTIME_SIO_PID_LEN);
        sock->has_pid = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime sio session pid:%V recovered from the "
                       "zone, %uz bytes to replay", &pid, *len);
        break;

    case NGX_AGAIN:
        /* no pid until it is back: a transport gone meanwhile keeps none */
        sock->resume = rs;
        rs->deadline = ngx_current_msec + NGX_HTTP_REALTIME_SIO_RESUME_TIME;
        rs->timer.handler = ngx_http_realtime_sio_resume_step;
        rs->timer.data = rs;
        rs->timer.log = ngx_cycle->log;
        rs->timer.cancelable = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime sio session pid:%V reads Redis", &pid);

        ngx_http_realtime_sio_resume_step(&rs->timer);
        return NGX_AGAIN;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: socket.io session \"%V\" not recovered: "
                      "a room's history does not hold what it missed",
                      &pid);
        /* fall through */

    default:
        ngx_http_realtime_sio_resume_leave(rs);
        ngx_http_realtime_sio_recovery_new(sock);
    }

    ngx_http_realtime_sio_resume_free(rs);

    return rc;
}


/*
 * The record is ours, of this namespace and user, and the client's place
 * is one of the instance that kept it (*seq): NULL, or why not.
 */

static const char *
ngx_http_realtime_sio_resume_check(ngx_http_realtime_sio_socket_t *sock,
    json_t *kept, json_t *auth, uint64_t *seq)
{
    json_t                       *id, *nsp, *user, *zone;
    ngx_str_t                     u;
    ngx_http_realtime_session_t  *s;

    s = &sock->session;

    if (kept == NULL) {
        return "unknown, gone or Redis unreachable";
    }

    zone = json_object_get(kept, "zone");

    if (!json_is_string(zone)
        || json_string_length(zone) != NGX_HTTP_REALTIME_INSTANCE_LEN)
    {
        return "a record that is not ours";
    }

    *seq = ngx_http_realtime_sio_recovery_seq(json_object_get(auth, "offset"),
                                        (u_char *) json_string_value(zone));

    if (*seq == (uint64_t) -1) {
        /* none, "-", or it got nothing from the instance that kept it */
        return "no offset of the instance that kept it";
    }

    id = json_object_get(kept, "id");
    nsp = json_object_get(kept, "nsp");
    user = json_object_get(kept, "user");

    if (!json_is_string(id)
        || json_string_length(id) != NGX_HTTP_REALTIME_SIO_ID_LEN
        || !json_is_string(nsp) || !json_is_string(user)
        || !json_is_array(json_object_get(kept, "rooms")))
    {
        return "a record that is not ours";
    }

    if (json_string_length(nsp) != sock->nsp.len
        || ngx_memcmp(json_string_value(nsp), sock->nsp.data, sock->nsp.len)
           != 0)
    {
        return "another namespace";
    }

    /* anonymous then, anonymous now: the connection changed */
    u = s->user;

    if (u.data == s->id.data) {
        u.len = 0;
    }

    if (json_string_length(user) != u.len
        || ngx_memcmp(json_string_value(user), u.data, u.len) != 0)
    {
        return "another user";
    }

    return NULL;
}


/*
 * Each kept room again, at the offset the client's sequence gives: it
 * joins (its place in the zone as a join takes it) and keeps since.
 */

static ngx_int_t
ngx_http_realtime_sio_resume_join(ngx_http_realtime_sio_resume_t *rs,
    uint64_t seq)
{
    json_t                               *rooms, *room, *name, *epoch;
    ngx_int_t                             rc;
    ngx_uint_t                            i, members, first;
    ngx_http_realtime_session_t          *s;
    ngx_http_realtime_history_pos_t       pos;
    ngx_http_realtime_sio_resume_room_t  *r;

    s = &rs->sock->session;
    rooms = json_object_get(rs->kept, "rooms");

    for (i = 0; i < rs->nrooms; i++) {
        r = &rs->rooms[i];
        r->rs = rs;
        room = json_array_get(rooms, i);
        name = json_array_get(room, 0);
        epoch = json_array_get(room, 1);

        if (json_array_size(room) != 4 || !json_is_string(name)
            || !ngx_http_realtime_room_valid(json_string_value(name),
                                             json_string_length(name))
            || !json_is_string(epoch)
            || (json_string_length(epoch) != NGX_HTTP_REALTIME_EPOCH_LEN
                && json_string_length(epoch) != 0)
            || !json_is_boolean(json_array_get(room, 2))
            || !json_is_array(json_array_get(room, 3)))
        {
            return NGX_DECLINED;
        }

        r->name.data = (u_char *) json_string_value(name);
        r->name.len = json_string_length(name);
        /* "": Redis had nothing of it, whatever comes is after */
        r->epoch.data = (u_char *) json_string_value(epoch);
        r->epoch.len = json_string_length(epoch);

        if (ngx_http_realtime_sio_resume_place(json_array_get(room, 3),
                                  json_is_true(json_array_get(room, 2)),
                                  seq, &r->since)
            != NGX_OK)
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                           "realtime sio resume \"%V\": place unknown",
                           &r->name);
            return NGX_DECLINED;
        }

        if (r->epoch.len == 0 && r->since != 0) {
            return NGX_DECLINED;
        }

        if (ngx_http_realtime_local_find(s, &r->name)) {
            /* kept twice: the first one stands */
            continue;
        }

        if (ngx_http_realtime_jwt_room_allowed(s, &r->name) != NGX_OK) {
            return NGX_DECLINED;
        }

        rc = ngx_http_realtime_room_join_at(s, &r->name, &members, &first,
                                            &pos);
        if (rc != NGX_OK) {
            return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
        }

        r->joined = 1;
        r->wait.lm = ngx_http_realtime_local_find(s, &r->name);

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime sio resume \"%V\" since %uL, now %uL",
                       &r->name, r->since, pos.offset);
    }

    return NGX_OK;
}


/*
 * The room's offset the client had: the last kept at or below its
 * sequence; 0 when it got none and nothing before the first was lost.
 */

static ngx_int_t
ngx_http_realtime_sio_resume_place(json_t *places, ngx_uint_t start,
    uint64_t seq, uint64_t *since)
{
    json_t      *one, *two;
    size_t       i, n;
    json_int_t   at, offset, last;

    n = json_array_size(places);

    if (n % 2) {
        return NGX_DECLINED;
    }

    *since = 0;
    last = -1;

    for (i = 0; i < n; i += 2) {
        one = json_array_get(places, i);
        two = json_array_get(places, i + 1);

        if (!json_is_integer(one) || !json_is_integer(two)) {
            return NGX_DECLINED;
        }

        at = json_integer_value(one);
        offset = json_integer_value(two);

        if (at < 0 || offset <= last) {
            /* kept in order, or not ours */
            return NGX_DECLINED;
        }

        if ((uint64_t) at > seq) {
            break;
        }

        last = offset;
    }

    if (last >= 0) {
        *since = (uint64_t) last;
        return NGX_OK;
    }

    return start ? NGX_OK : NGX_DECLINED;
}


/*
 * Every room from this zone's history, if it holds them all: NGX_OK and
 * the replay sorted; NGX_AGAIN: some need Redis's, every room waits.
 */

static ngx_int_t
ngx_http_realtime_sio_resume_zone(ngx_http_realtime_sio_resume_t *rs,
    u_char **replay, size_t *len)
{
    u_char                               *buf, *all;
    size_t                                blen, total;
    ngx_int_t                             rc;
    ngx_uint_t                            i, redis;
    ngx_http_realtime_zone_t             *zone;
    ngx_http_realtime_history_pos_t       pos;
    ngx_http_realtime_sio_resume_room_t  *r;

    zone = rs->sock->session.zone;
    all = NULL;
    total = 0;
    redis = 0;

    for (i = 0; i < rs->nrooms; i++) {
        r = &rs->rooms[i];

        if (!r->joined) {
            continue;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);
        ngx_http_realtime_history_position_locked(zone, &r->name, &pos);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        /* the member's place is the join's: the zone's up to it */
        pos.seq = r->wait.lm->seq;
        pos.offset = r->wait.lm->offset;

        rc = ngx_http_realtime_history_replay(zone, &r->name, &r->epoch,
                                              r->since, &pos, &buf, &blen);
        if (rc == NGX_ERROR) {
            goto failed;
        }

        if (rc == NGX_DECLINED) {
            r->from_redis = 1;
            redis++;
            continue;
        }

        if (ngx_http_realtime_sio_resume_append(&all, &total, buf, blen)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (redis) {
        if (all) {
            ngx_free(all);
        }

        /* nothing live until the answer: it is replayed then */
        for (i = 0; i < rs->nrooms; i++) {
            r = &rs->rooms[i];

            if (r->joined) {
                r->wait.lm->recovery = &r->wait;
            }
        }

        return NGX_AGAIN;
    }

    *replay = all;
    *len = total;

    return ngx_http_realtime_sio_recovery_sort(replay, total);

failed:

    if (all) {
        ngx_free(all);
    }

    return NGX_ERROR;
}


/* the rooms read from Redis once subscribed, then the zone caught up */

static void
ngx_http_realtime_sio_resume_step(ngx_event_t *ev)
{
    ngx_int_t                             rc;
    ngx_uint_t                            i, live, pending;
    ngx_http_realtime_zone_t             *zone;
    ngx_http_realtime_sh_room_t          *sr;
    ngx_http_realtime_sio_resume_t       *rs;
    ngx_http_realtime_history_pos_t       pos;
    ngx_http_realtime_sio_resume_room_t  *r;

    rs = ev->data;
    zone = rs->sock->session.zone;

    pending = 0;

    for (i = 0; i < rs->nrooms; i++) {
        r = &rs->rooms[i];

        if (!r->from_redis) {
            continue;
        }

        if (r->answered && !r->read_ok) {
            ngx_http_realtime_sio_resume_end(rs, NGX_DECLINED);
            return;
        }

        if (r->answered) {
            /*
             * No wait for the zone: what it lacks up to the read's last
             * is skipped as it comes (lm->floor), what it has after is
             * replayed; a room whose last member here left long ago may
             * never get there.
             */
            continue;
        }

        pending = 1;

        if (r->reading) {
            continue;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        sr = (ngx_http_realtime_sh_room_t *)
                 ngx_str_rbtree_lookup(&zone->sh->rooms, &r->name,
                                       ngx_crc32_short(r->name.data,
                                                       r->name.len));
        live = sr && sr->redis_live;

        /* the zone's Redis epoch before the read: an older one is not it */
        r->pre_known = ngx_http_realtime_history_from_redis_locked(zone,
                                                       &r->name, &pos);
        ngx_memcpy(r->pre_epoch, pos.epoch, NGX_HTTP_REALTIME_EPOCH_LEN);

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (!live) {
            continue;
        }

        r->read.handler = ngx_http_realtime_sio_resume_read;
        r->read.data = r;
        r->read.since = r->since;
        r->read.any_epoch = (r->epoch.len == 0);

        if (r->epoch.len) {
            ngx_memcpy(r->read.epoch, r->epoch.data,
                       NGX_HTTP_REALTIME_EPOCH_LEN);
        }

        rc = ngx_http_realtime_redis_history_read(zone, &r->name, &r->read);

        if (rc != NGX_OK) {
            ngx_http_realtime_sio_resume_end(rs, NGX_DECLINED);
            return;
        }

        r->reading = 1;
        rs->reading++;
    }

    if (!pending) {
        ngx_http_realtime_sio_resume_end(rs, NGX_OK);
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - rs->deadline) >= 0) {
        ngx_log_error(NGX_LOG_INFO, rs->sock->session.log, 0,
                      "realtime: socket.io session not recovered: no "
                      "subscription or history in %M ms",
                      (ngx_msec_t) NGX_HTTP_REALTIME_SIO_RESUME_TIME);
        ngx_http_realtime_sio_resume_end(rs, NGX_DECLINED);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_REALTIME_SIO_RESUME_STEP);
}


static void
ngx_http_realtime_sio_resume_read(void *data, ngx_int_t rc)
{
    ngx_http_realtime_sio_resume_room_t *r = data;

    ngx_http_realtime_sio_resume_t  *rs;

    rs = r->rs;
    rs->reading--;
    r->reading = 0;
    r->answered = 1;
    r->read_ok = (rc == NGX_OK);

    if (r->read_ok && r->epoch.len == 0 && r->read.last) {
        /* the epoch Redis has */
        ngx_memcpy(r->read_epoch, r->read.epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
        r->epoch.data = r->read_epoch;
        r->epoch.len = NGX_HTTP_REALTIME_EPOCH_LEN;
    }

    if (rs->sock == NULL && rs->reading == 0) {
        /* the socket went, or it ended without this read */
        ngx_http_realtime_sio_resume_free(rs);
    }

    /* the step timer goes on */
}


/* the answer: the CONNECT, Redis's replays, then the zone's, in order */

static void
ngx_http_realtime_sio_resume_end(ngx_http_realtime_sio_resume_t *rs,
    ngx_int_t rc)
{
    u_char                          *replay;
    size_t                           len;
    ngx_str_t                        pid;
    ngx_uint_t                       i, nheld;
    ngx_http_realtime_msg_t        **held;
    ngx_http_realtime_eio_t         *eio;
    ngx_http_realtime_sio_socket_t  *sock;
    ngx_http_realtime_sio_answer_pt  answer;

    sock = rs->sock;
    eio = sock->eio;
    replay = NULL;
    len = 0;

    pid.data = rs->pid;
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    if (ngx_http_realtime_sio_resume_gone(eio)) {
        /* nothing would reach it: kept as it was, for its next try */
        ngx_http_realtime_sio_resume_keep_again(sock);
        rc = NGX_ABORT;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_realtime_sio_resume_collect(rs, &replay, &len);
    }

    if (rc == NGX_OK) {
        ngx_memcpy(sock->id,
                   json_string_value(json_object_get(rs->kept, "id")),
                   NGX_HTTP_REALTIME_SIO_ID_LEN);
        ngx_memcpy(sock->pid, rs->pid, NGX_HTTP_REALTIME_SIO_PID_LEN);
        sock->has_pid = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, sock->session.log, 0,
                       "realtime sio session pid:%V recovered with Redis, "
                       "%uz bytes to replay", &pid, len);

    } else {
        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, sock->session.log, 0,
                          "realtime: socket.io session \"%V\" not "
                          "recovered: a room's history does not hold what "
                          "it missed", &pid);
        }

        ngx_http_realtime_sio_resume_leave(rs);

        if (rc != NGX_ABORT) {
            ngx_http_realtime_sio_recovery_new(sock);
        }
    }

    /* the answer may close the session: nothing of rs after it */
    sock->resume = NULL;
    rs->sock = NULL;
    held = rs->held;
    nheld = rs->nheld;
    answer = rs->answer;
    rs->held = NULL;
    rs->nheld = 0;

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }

    if (rs->reading == 0) {
        ngx_http_realtime_sio_resume_free(rs);
    }

    if (rc == NGX_ERROR || rc == NGX_ABORT) {
        if (replay) {
            ngx_free(replay);
        }

    } else {
        ngx_http_realtime_route_connect(&sock->session);
        rc = answer(sock, replay, len);
    }

    /* what came meanwhile besides its rooms, after what it missed */

    for (i = 0; i < nheld; i++) {
        if (rc == NGX_OK && !eio->closing) {
            rc = ngx_http_realtime_eio_send(eio, held[i]);
        }

        ngx_http_realtime_msg_release(held[i]);
    }

    if (held) {
        ngx_free(held);
    }

    if (rc == NGX_ERROR && !eio->closing) {
        ngx_http_realtime_eio_close(eio, "internal error");
    }
}


/*
 * A delivery to a socket whose CONNECT waits (its user, a broadcast, a
 * room it joined on connect): sent after the answer
 */

ngx_int_t
ngx_http_realtime_sio_resume_hold(ngx_http_realtime_sio_socket_t *sock,
    ngx_http_realtime_msg_t *msg)
{
    ngx_http_realtime_sio_resume_t  *rs;

    rs = sock->resume;

    if (rs->overflow) {
        return NGX_ERROR;
    }

    if (rs->held == NULL) {
        rs->held = ngx_alloc(NGX_HTTP_REALTIME_SIO_RESUME_HELD
                             * sizeof(ngx_http_realtime_msg_t *),
                             sock->session.log);
        if (rs->held == NULL) {
            return NGX_ERROR;
        }
    }

    if (rs->nheld == NGX_HTTP_REALTIME_SIO_RESUME_HELD) {
        /* the client comes back, to a new session: nothing lost unsaid */
        ngx_log_error(NGX_LOG_WARN, sock->session.log, 0,
                      "realtime: socket.io session closed: more than %d "
                      "messages while its recovery waited",
                      NGX_HTTP_REALTIME_SIO_RESUME_HELD);
        rs->overflow = 1;
        ngx_http_realtime_eio_close(sock->eio, "too much while resuming");
        return NGX_ERROR;
    }

    msg->refs++;
    rs->held[rs->nheld++] = msg;

    return NGX_OK;
}


/* the transport went while the CONNECT waited: the record again */

void
ngx_http_realtime_sio_resume_keep_again(ngx_http_realtime_sio_socket_t *sock)
{
    char                            *rec;
    ngx_str_t                        pid;
    ngx_http_realtime_sio_resume_t  *rs;

    rs = sock->resume;

    if (rs->overflow) {
        /* what it was held for is lost: a new session when it is back */
        return;
    }

    rec = json_dumps(rs->kept, JSON_COMPACT);
    if (rec == NULL) {
        return;
    }

    pid.data = rs->pid;
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    (void) ngx_http_realtime_redis_session_keep(sock->session.zone, &pid,
                                                (u_char *) rec,
                                                ngx_strlen(rec),
                                                sock->session.conf
                                                    ->sio_recovery);
    free(rec);
}


/*
 * Each room's replay and its member's place from now on: Redis's part
 * (no sequence here) first, room by room, then the zone's, sorted.
 */

static ngx_int_t
ngx_http_realtime_sio_resume_collect(ngx_http_realtime_sio_resume_t *rs,
    u_char **replay, size_t *len)
{
    u_char                               *buf, *redis, *zone_part;
    size_t                                blen, redis_len, zone_len;
    uint64_t                              since, offset;
    ngx_int_t                             rc;
    ngx_uint_t                            i, from_redis;
    ngx_http_realtime_zone_t             *zone;
    ngx_http_realtime_local_member_t     *lm;
    ngx_http_realtime_history_pos_t       pos, rp;
    ngx_http_realtime_sio_resume_room_t  *r;

    zone = rs->sock->session.zone;
    redis = NULL;
    zone_part = NULL;
    redis_len = 0;
    zone_len = 0;
    rc = NGX_OK;

    for (i = 0; rc == NGX_OK && i < rs->nrooms; i++) {
        r = &rs->rooms[i];
        lm = r->wait.lm;

        if (!r->joined) {
            continue;
        }

        if (lm == NULL) {
            rc = NGX_DECLINED;
            break;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);
        ngx_http_realtime_history_position_locked(zone, &r->name, &pos);
        from_redis = ngx_http_realtime_history_from_redis_locked(zone,
                                                                 &r->name,
                                                                 &rp);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        since = r->since;
        offset = pos.offset;
        buf = NULL;
        blen = 0;

        if (r->from_redis && r->epoch.len == 0 && from_redis
            && (!r->pre_known
                || ngx_memcmp(rp.epoch, r->pre_epoch,
                              NGX_HTTP_REALTIME_EPOCH_LEN) != 0))
        {
            /* Redis had nothing of it: what came since is all after 0 */
            ngx_memcpy(r->read_epoch, rp.epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
            r->epoch.data = r->read_epoch;
            r->epoch.len = NGX_HTTP_REALTIME_EPOCH_LEN;
        }

        if (r->from_redis) {
            if (from_redis && r->epoch.len
                && ngx_memcmp(rp.epoch, r->epoch.data,
                              NGX_HTTP_REALTIME_EPOCH_LEN) != 0)
            {
                /* Redis's epoch changed since it was read */
                rc = NGX_DECLINED;
                break;
            }

            rc = ngx_http_realtime_sio_resume_append(&redis, &redis_len,
                                                     r->read.buf,
                                                     r->read.len);
            r->read.buf = NULL;

            if (rc != NGX_OK) {
                break;
            }

            since = r->read.last;

            if (r->epoch.len) {
                lm->replayed = r->read.last;
                ngx_memcpy(lm->replayed_epoch, r->epoch.data,
                           NGX_HTTP_REALTIME_EPOCH_LEN);
            }

            if (!pos.on || r->epoch.len == 0
                || ngx_memcmp(pos.epoch, r->epoch.data,
                              NGX_HTTP_REALTIME_EPOCH_LEN) != 0
                || pos.offset <= r->read.last)
            {
                /* the subscription is behind, or brought nothing yet */
                offset = r->read.last;
                lm->floor = r->read.last;
                since = offset;
                pos.on = 0;
            }
        }

        if (pos.on || !r->from_redis) {
            rc = ngx_http_realtime_history_replay(zone, &r->name, &r->epoch,
                                                  since, &pos, &buf, &blen);
            if (rc != NGX_OK) {
                break;
            }

            rc = ngx_http_realtime_sio_resume_append(&zone_part, &zone_len,
                                                     buf, blen);
            if (rc != NGX_OK) {
                break;
            }
        }

        lm->recovery = NULL;
        lm->seq = pos.seq;
        lm->offset = offset;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_realtime_sio_recovery_sort(&zone_part, zone_len);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_realtime_sio_resume_append(&redis, &redis_len,
                                                 zone_part, zone_len);
        zone_part = NULL;
    }

    if (rc != NGX_OK) {
        if (redis) {
            ngx_free(redis);
        }

        if (zone_part) {
            ngx_free(zone_part);
        }

        return rc;
    }

    *replay = redis;
    *len = redis_len;

    return NGX_OK;
}


/* buf (freed) after *all */

static ngx_int_t
ngx_http_realtime_sio_resume_append(u_char **all, size_t *total, u_char *buf,
    size_t len)
{
    u_char  *next;

    if (buf == NULL || len == 0) {
        if (buf) {
            ngx_free(buf);
        }

        return NGX_OK;
    }

    if (*all == NULL) {
        *all = buf;
        *total = len;
        return NGX_OK;
    }

    next = ngx_alloc(*total + len, ngx_cycle->log);
    if (next == NULL) {
        ngx_free(buf);
        return NGX_ERROR;
    }

    ngx_memcpy(next, *all, *total);
    ngx_memcpy(next + *total, buf, len);
    ngx_free(*all);
    ngx_free(buf);

    *all = next;
    *total += len;

    return NGX_OK;
}


/* not recovered: out of the rooms joined so far, a new session */

static void
ngx_http_realtime_sio_resume_leave(ngx_http_realtime_sio_resume_t *rs)
{
    ngx_uint_t                            i, members, first;
    ngx_http_realtime_sio_resume_room_t  *r;

    for (i = 0; i < rs->nrooms; i++) {
        r = &rs->rooms[i];

        if (r->joined && r->wait.lm) {
            r->wait.lm->recovery = NULL;
            (void) ngx_http_realtime_room_leave(&rs->sock->session, &r->name,
                                                &members, &first);
        }

        r->wait.lm = NULL;
        r->joined = 0;
    }
}


/* the transport goes: what is sent now is not received */

static ngx_uint_t
ngx_http_realtime_sio_resume_gone(ngx_http_realtime_eio_t *eio)
{
    return eio->closing || (eio->ws && eio->ws->close_sent);
}


/* the socket ended while its CONNECT waited */

void
ngx_http_realtime_sio_resume_cancel(ngx_http_realtime_sio_socket_t *sock)
{
    ngx_http_realtime_sio_resume_t  *rs;

    rs = sock->resume;
    sock->resume = NULL;
    rs->sock = NULL;

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }

    /* its rooms are left with the socket: their waits are let go */

    if (rs->reading == 0) {
        ngx_http_realtime_sio_resume_free(rs);
    }
}


static void
ngx_http_realtime_sio_resume_free(ngx_http_realtime_sio_resume_t *rs)
{
    ngx_uint_t  i;

    for (i = 0; i < rs->nrooms; i++) {
        if (rs->rooms[i].wait.lm) {
            rs->rooms[i].wait.lm->recovery = NULL;
        }

        if (rs->rooms[i].read.buf) {
            ngx_free(rs->rooms[i].read.buf);
        }
    }

    for (i = 0; i < rs->nheld; i++) {
        ngx_http_realtime_msg_release(rs->held[i]);
    }

    if (rs->held) {
        ngx_free(rs->held);
    }

    json_decref(rs->kept);
    ngx_free(rs);
}
