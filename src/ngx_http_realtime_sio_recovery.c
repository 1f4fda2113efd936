
/*
 * Copyright (C) ngx-realtime developers
 *
 * realtime_socketio_recovery: Socket.IO's connection state recovery
 * (socket.io-client 4.6+).  A namespace's CONNECT answer carries a
 * private id ("pid"); each room publication with history carries its
 * offset as its last argument.  When the transport goes (not the client:
 * a DISCONNECT packet or the server's disconnect end the session), the
 * socket's id, user, namespace and rooms with the place it had in each
 * are kept in the zone for the time the directive gives.  A CONNECT
 * whose auth brings that pid back (on any worker) gets the same socket
 * id, its rooms, and every publication it missed in them, in order, if
 * every room's history still holds them: the client then says
 * socket.recovered.  Otherwise it is a new session, as in Node.
 *
 * The offset argument is the zone's sequence of the publication, not a
 * room's offset: one number says where the client was in all its rooms
 * (each worker delivers in that order), and the client sends back the
 * last one it got.  A session without one (it got nothing) is new.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"
#include "ngx_http_realtime_eio_session.h"


/* a socket that may come back, in sh->sio_saved by its pid */
typedef struct {
    ngx_str_node_t                     sn;          /* the pid, behind */
    ngx_msec_t                         expiry;
    size_t                             size;        /* of the whole node */
    u_char                             id[NGX_HTTP_REALTIME_SIO_ID_LEN];
    size_t                             nsp_len;
    size_t                             user_len;
    ngx_uint_t                         nrooms;
    /*
     * nsp, user, then per room: offset (uint64_t), epoch, name length
     * (uint16_t), name; packed, read with memcpy()
     */
} ngx_http_realtime_sio_saved_t;


/* how often kept sessions past their time go */
#define NGX_HTTP_REALTIME_SIO_SWEEP  1000


#define NGX_HTTP_REALTIME_SIO_ROOM_HEAD                                      \
    (sizeof(uint64_t) + NGX_HTTP_REALTIME_EPOCH_LEN + sizeof(uint16_t))


static ngx_int_t ngx_http_realtime_sio_recovery_rejoin(
    ngx_http_realtime_sio_socket_t *sock, ngx_http_realtime_sio_saved_t *sv,
    uint64_t seq, u_char **replay, size_t *len);
static int ngx_http_realtime_sio_recovery_cmp(const void *one,
    const void *two);
static void ngx_http_realtime_sio_recovery_sweep(ngx_event_t *ev);


/* the transport went: what the socket was, kept in the zone */

void
ngx_http_realtime_sio_recovery_save(ngx_http_realtime_sio_socket_t *sock)
{
    u_char                            *p;
    size_t                             size;
    uint16_t                           len;
    ngx_str_t                          pid, user, *name;
    ngx_uint_t                         created, n;
    ngx_queue_t                       *q;
    ngx_http_realtime_zone_t          *zone;
    ngx_http_realtime_session_t       *s;
    ngx_http_realtime_sio_saved_t     *sv;
    ngx_http_realtime_local_member_t  *lm;
    u_char                             epoch[NGX_HTTP_REALTIME_EPOCH_LEN];

    s = &sock->session;
    zone = s->zone;

    if (zone == NULL || zone->history_max == 0 || s->sh_conn == NULL) {
        return;
    }

    /* an anonymous user is its connection: kept as none */
    user = s->user;

    if (user.data == s->id.data) {
        user.len = 0;
    }

    size = sizeof(ngx_http_realtime_sio_saved_t) + sock->nsp.len + user.len;
    n = 0;

    for (q = ngx_queue_head(&s->rooms);
         q != ngx_queue_sentinel(&s->rooms);
         q = ngx_queue_next(q))
    {
        lm = ngx_queue_data(q, ngx_http_realtime_local_member_t, conn_link);

        if (!ngx_http_realtime_sio_recovery_kept(lm)) {
            continue;
        }

        size += NGX_HTTP_REALTIME_SIO_ROOM_HEAD + lm->room->sn.str.len;
        n++;
    }

    pid.data = sock->pid;
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sv = ngx_http_realtime_sh_node(zone, &zone->sh->sio_saved, &pid, size, 1,
                                   &created);
    if (sv == NULL || !created) {
        /* the zone is full, or a pid kept twice: it does not come back */
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    sv->expiry = ngx_current_msec + s->conf->sio_recovery;
    sv->size = size;
    sv->nsp_len = sock->nsp.len;
    sv->user_len = user.len;
    sv->nrooms = n;
    ngx_memcpy(sv->id, sock->id, NGX_HTTP_REALTIME_SIO_ID_LEN);

    p = (u_char *) sv + sizeof(ngx_http_realtime_sio_saved_t);
    p = ngx_cpymem(p, sock->nsp.data, sock->nsp.len);
    p = ngx_cpymem(p, user.data, user.len);

    for (q = ngx_queue_head(&s->rooms);
         q != ngx_queue_sentinel(&s->rooms);
         q = ngx_queue_next(q))
    {
        lm = ngx_queue_data(q, ngx_http_realtime_local_member_t, conn_link);

        if (!ngx_http_realtime_sio_recovery_kept(lm)) {
            continue;
        }

        name = &lm->room->sn.str;

        /* a room without a history (the zone was full) has epoch 0s */
        ngx_memset(epoch, '0', NGX_HTTP_REALTIME_EPOCH_LEN);
        ngx_http_realtime_history_epoch_locked(zone, name, epoch);

        len = (uint16_t) name->len;
        p = ngx_cpymem(p, &lm->offset, sizeof(uint64_t));
        p = ngx_cpymem(p, epoch, NGX_HTTP_REALTIME_EPOCH_LEN);
        p = ngx_cpymem(p, &len, sizeof(uint16_t));
        p = ngx_cpymem(p, name->data, name->len);
    }

    zone->sh->sio_saved_n++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "realtime sio session kept pid:%*s, %ui rooms",
                   (size_t) NGX_HTTP_REALTIME_SIO_PID_LEN, sock->pid, n);
}


/*
 * A CONNECT: NGX_OK when the pid of auth brought a kept session back
 * (sock has its id and rooms, *replay what it missed: (length, frame)
 * records, or NULL), NGX_DECLINED for a new session (a new pid), or
 * NGX_ERROR.
 */

ngx_int_t
ngx_http_realtime_sio_recovery_restore(ngx_http_realtime_sio_socket_t *sock,
    json_t *auth, u_char **replay, size_t *len)
{
    u_char                         *p;
    json_t                         *v;
    uint64_t                        seq;
    ngx_int_t                       rc;
    ngx_str_t                       pid, user;
    const char                     *why;
    ngx_str_node_t                 *sn;
    ngx_http_realtime_zone_t       *zone;
    ngx_http_realtime_session_t    *s;
    ngx_http_realtime_sio_saved_t  *sv, *copy;

    *replay = NULL;
    *len = 0;

    s = &sock->session;
    zone = s->zone;

    v = auth ? json_object_get(auth, "pid") : NULL;

    if (!json_is_string(v)
        || json_string_length(v) != NGX_HTTP_REALTIME_SIO_PID_LEN)
    {
        ngx_http_realtime_sio_recovery_new(sock);
        return NGX_DECLINED;
    }

    seq = ngx_http_realtime_sio_recovery_seq(json_object_get(auth, "offset"),
                                             zone->sh->instance);

    pid.data = (u_char *) json_string_value(v);
    pid.len = NGX_HTTP_REALTIME_SIO_PID_LEN;

    /* taken out of the zone: a pid comes back once */

    copy = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&zone->sh->sio_saved, &pid,
                               ngx_crc32_short(pid.data, pid.len));

    if (sn) {
        sv = (ngx_http_realtime_sio_saved_t *) sn;
        copy = ngx_alloc(sv->size, ngx_cycle->log);

        if (copy) {
            ngx_memcpy(copy, sv, sv->size);
        }

        zone->sh->sio_saved_n--;
        ngx_http_realtime_sh_node_free(zone, &zone->sh->sio_saved, sn);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    p = copy ? (u_char *) copy + sizeof(ngx_http_realtime_sio_saved_t) : NULL;

    /* anonymous then, anonymous now: the connection changed */
    user = s->user;

    if (user.data == s->id.data) {
        user.len = 0;
    }

    why = (copy == NULL) ? "unknown or gone"
          : (seq == (uint64_t) -1) ? "no offset of this instance"
          : ((ngx_msec_int_t) (ngx_current_msec - copy->expiry) >= 0)
            ? "too late"
          : (copy->nsp_len != sock->nsp.len
             || ngx_memcmp(p, sock->nsp.data, sock->nsp.len) != 0)
            ? "another namespace"
          : (copy->user_len != user.len
             || ngx_memcmp(p + copy->nsp_len, user.data, user.len) != 0)
            ? "another user" : NULL;

    if (why) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: socket.io session \"%V\" not recovered: %s",
                      &pid, why);

        if (copy) {
            ngx_free(copy);
        }

        ngx_http_realtime_sio_recovery_new(sock);
        return NGX_DECLINED;
    }

    rc = ngx_http_realtime_sio_recovery_rejoin(sock, copy, seq, replay, len);

    if (rc == NGX_OK) {
        ngx_memcpy(sock->id, copy->id, NGX_HTTP_REALTIME_SIO_ID_LEN);
        ngx_memcpy(sock->pid, pid.data, NGX_HTTP_REALTIME_SIO_PID_LEN);
        sock->has_pid = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime sio session pid:%V recovered, %uz bytes "
                       "to replay", &pid, *len);

    } else if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "realtime: socket.io session \"%V\" not recovered: "
                      "a room's history does not hold what it missed",
                      &pid);
        ngx_http_realtime_sio_recovery_new(sock);
    }

    ngx_free(copy);

    return rc;
}


/*
 * Each room again, from the place kept: all or nothing.  A room the
 * token no longer allows, or whose history lost the place, makes it a
 * new session without rooms.
 */

static ngx_int_t
ngx_http_realtime_sio_recovery_rejoin(ngx_http_realtime_sio_socket_t *sock,
    ngx_http_realtime_sio_saved_t *sv, uint64_t seq, u_char **replay,
    size_t *len)
{
    u_char                           *p, *buf, *all, *next;
    size_t                            blen, total;
    uint16_t                          nlen;
    uint64_t                          offset;
    ngx_int_t                         rc;
    ngx_str_t                         room, epoch;
    ngx_uint_t                        i, members, first, joined;
    ngx_http_realtime_session_t      *s;
    ngx_http_realtime_history_pos_t   pos;

    s = &sock->session;
    all = NULL;
    total = 0;
    joined = 0;
    rc = NGX_OK;

    p = (u_char *) sv + sizeof(ngx_http_realtime_sio_saved_t) + sv->nsp_len
        + sv->user_len;

    for (i = 0; i < sv->nrooms; i++) {
        ngx_memcpy(&offset, p, sizeof(uint64_t));
        epoch.data = p + sizeof(uint64_t);
        epoch.len = NGX_HTTP_REALTIME_EPOCH_LEN;
        ngx_memcpy(&nlen, p + sizeof(uint64_t) + NGX_HTTP_REALTIME_EPOCH_LEN,
                   sizeof(uint16_t));
        room.data = p + NGX_HTTP_REALTIME_SIO_ROOM_HEAD;
        room.len = nlen;
        p = room.data + nlen;

        if (ngx_http_realtime_jwt_room_allowed(s, &room) != NGX_OK) {
            rc = NGX_DECLINED;
            break;
        }

        rc = ngx_http_realtime_room_join_at(s, &room, &members, &first, &pos);
        if (rc != NGX_OK) {
            rc = (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
            break;
        }

        joined++;

        /* what the server had sent, for the log; the client's counts */
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "realtime sio rejoin \"%V\" sent up to %uL, now "
                       "%uL, client at seq %uL", &room, offset, pos.offset,
                       seq);

        rc = ngx_http_realtime_history_replay_seq(s->zone, &room, &epoch, seq,
                                                  &pos, &buf, &blen);
        if (rc != NGX_OK) {
            break;
        }

        if (blen) {
            next = ngx_alloc(total + blen, ngx_cycle->log);
            if (next == NULL) {
                ngx_free(buf);
                rc = NGX_ERROR;
                break;
            }

            if (all) {
                ngx_memcpy(next, all, total);
                ngx_free(all);
            }

            ngx_memcpy(next + total, buf, blen);
            ngx_free(buf);
            all = next;
            total += blen;
        }
    }

    if (rc == NGX_OK) {
        *replay = all;
        *len = total;

        /* the rooms' replays as one, in the order the zone gave them */
        return ngx_http_realtime_sio_recovery_sort(replay, *len);
    }

    /* not recovered: out of the rooms joined so far, a new session */

    if (all) {
        ngx_free(all);
    }

    p = (u_char *) sv + sizeof(ngx_http_realtime_sio_saved_t) + sv->nsp_len
        + sv->user_len;

    for (i = 0; i < joined; i++) {
        ngx_memcpy(&nlen, p + sizeof(uint64_t) + NGX_HTTP_REALTIME_EPOCH_LEN,
                   sizeof(uint16_t));
        room.data = p + NGX_HTTP_REALTIME_SIO_ROOM_HEAD;
        room.len = nlen;
        p = room.data + nlen;

        (void) ngx_http_realtime_room_leave(s, &room, &members, &first);
    }

    return rc;
}


/* (length, offset, seq, frame) records, sorted by seq into a new block */

typedef struct {
    uint64_t                           seq;
    u_char                            *rec;
    size_t                             size;
} ngx_http_realtime_sio_replayed_t;


ngx_int_t
ngx_http_realtime_sio_recovery_sort(u_char **replay, size_t len)
{
    u_char                            *p, *last, *sorted, *q;
    size_t                             flen;
    ngx_uint_t                         i, n;
    ngx_http_realtime_sio_replayed_t  *r;

    if (*replay == NULL) {
        return NGX_OK;
    }

    n = 0;
    last = *replay + len;

    for (p = *replay; p < last; p += NGX_HTTP_REALTIME_HISTORY_RECORD + flen) {
        ngx_memcpy(&flen, p, sizeof(size_t));
        n++;
    }

    r = ngx_alloc(n * sizeof(ngx_http_realtime_sio_replayed_t),
                  ngx_cycle->log);
    sorted = ngx_alloc(len, ngx_cycle->log);

    if (r == NULL || sorted == NULL) {
        if (r) {
            ngx_free(r);
        }

        if (sorted) {
            ngx_free(sorted);
        }

        ngx_free(*replay);
        *replay = NULL;
        return NGX_ERROR;
    }

    i = 0;

    for (p = *replay; p < last; p += r[i++].size) {
        ngx_memcpy(&flen, p, sizeof(size_t));
        ngx_memcpy(&r[i].seq, p + sizeof(size_t) + sizeof(uint64_t),
                   sizeof(uint64_t));
        r[i].rec = p;
        r[i].size = NGX_HTTP_REALTIME_HISTORY_RECORD + flen;
    }

    ngx_qsort(r, n, sizeof(ngx_http_realtime_sio_replayed_t),
              ngx_http_realtime_sio_recovery_cmp);

    q = sorted;

    for (i = 0; i < n; i++) {
        q = ngx_cpymem(q, r[i].rec, r[i].size);
    }

    ngx_free(r);
    ngx_free(*replay);
    *replay = sorted;

    return NGX_OK;
}


static int
ngx_http_realtime_sio_recovery_cmp(const void *one, const void *two)
{
    const ngx_http_realtime_sio_replayed_t  *a = one, *b = two;

    return (a->seq < b->seq) ? -1 : (a->seq > b->seq);
}


/*
 * The client's "offset": the instance id, then the decimal sequence; -1
 * if it is not a place of instance (another zone's sequences mean
 * nothing here), or none.
 */

uint64_t
ngx_http_realtime_sio_recovery_seq(json_t *offset, u_char *instance)
{
    off_t        seq;
    size_t       len;
    const char  *p;

    if (!json_is_string(offset)) {
        return (uint64_t) -1;
    }

    p = json_string_value(offset);
    len = json_string_length(offset);

    if (len <= NGX_HTTP_REALTIME_INSTANCE_LEN
        || ngx_memcmp(p, instance, NGX_HTTP_REALTIME_INSTANCE_LEN) != 0)
    {
        return (uint64_t) -1;
    }

    seq = ngx_atoof((u_char *) p + NGX_HTTP_REALTIME_INSTANCE_LEN,
                    len - NGX_HTTP_REALTIME_INSTANCE_LEN);

    return (seq == NGX_ERROR) ? (uint64_t) -1 : (uint64_t) seq;
}


/*
 * The user list's room is not kept: each instance publishes its own,
 * and the socket joins it again on connect.
 */

ngx_uint_t
ngx_http_realtime_sio_recovery_kept(ngx_http_realtime_local_member_t *lm)
{
    return !ngx_http_realtime_room_user_list(&lm->room->sn.str);
}


/* a new private id, to come back with */

void
ngx_http_realtime_sio_recovery_new(ngx_http_realtime_sio_socket_t *sock)
{
    ngx_http_realtime_random_id(sock->pid, NGX_HTTP_REALTIME_SIO_PID_LEN);
    sock->has_pid = 1;
}


/*
 * The sessions that did not come back in time go: once a second, by one
 * worker, in every zone with a history (recovery needs one).
 */

ngx_int_t
ngx_http_realtime_sio_recovery_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i, n;
    ngx_http_realtime_zone_t      **zones, *zone;

    zones = ngx_http_realtime_zones(cycle, &n);

    for (i = 0; i < n; i++) {
        zone = zones[i];

        if (zone->history_max == 0 || zone->slot == NGX_HTTP_REALTIME_SLOTS) {
            continue;
        }

        zone->sio_saved_timer.handler = ngx_http_realtime_sio_recovery_sweep;
        zone->sio_saved_timer.data = zone;
        zone->sio_saved_timer.log = cycle->log;
        zone->sio_saved_timer.cancelable = 1;

        ngx_add_timer(&zone->sio_saved_timer,
                      NGX_HTTP_REALTIME_SIO_SWEEP);
    }

    return NGX_OK;
}


static void
ngx_http_realtime_sio_recovery_sweep(ngx_event_t *ev)
{
    ngx_atomic_uint_t               swept;
    ngx_rbtree_node_t              *node, *next, *sentinel;
    ngx_http_realtime_zone_t       *zone;
    ngx_http_realtime_shctx_t      *sh;
    ngx_http_realtime_sio_saved_t  *sv;

    zone = ev->data;
    sh = zone->sh;
    swept = sh->sio_swept;

    if (sh->sio_saved_n
        && (ngx_msec_t) (ngx_current_msec - swept)
           >= NGX_HTTP_REALTIME_SIO_SWEEP
        && ngx_atomic_cmp_set(&sh->sio_swept, swept, ngx_current_msec))
    {
        ngx_shmtx_lock(&zone->shpool->mutex);

        sentinel = sh->sio_saved.sentinel;
        node = (sh->sio_saved.root == sentinel)
               ? NULL : ngx_rbtree_min(sh->sio_saved.root, sentinel);

        while (node) {
            next = ngx_rbtree_next(&sh->sio_saved, node);
            sv = (ngx_http_realtime_sio_saved_t *) node;

            if ((ngx_msec_int_t) (ngx_current_msec - sv->expiry) >= 0) {
                sh->sio_saved_n--;
                ngx_http_realtime_sh_node_free(zone, &sh->sio_saved,
                                               &sv->sn);
            }

            node = next;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_REALTIME_SIO_SWEEP);
    }
}
