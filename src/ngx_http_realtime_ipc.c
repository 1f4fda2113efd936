
/*
 * Copyright (C) ngx-realtime developers
 *
 * Cross-worker delivery.  Each worker has a queue in the shared zone; a
 * publisher appends the encoded frame to the queue of every other worker
 * that has a receiver and wakes it with a datagram on a Linux abstract
 * socket named after its pid.  The socket is bound by the worker itself,
 * so workers of the old and the new generation can reach each other
 * during a reload, which descriptors made before fork could not.
 *
 * Flow control: a push API answer waits until the queues that held
 * records when it published are drained past them, so that a publisher
 * that sends as fast as it is answered is paced by the slowest worker
 * instead of filling the other workers' queues (and sockets) ahead of
 * them.  Each slot counts the records posted to it and drained from it;
 * a waiter takes the posted count as its ticket and leaves its bit in
 * the slot, and the draining worker wakes the workers whose bits it
 * finds, with the datagram that carries deliveries.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/un.h>

#include "ngx_http_realtime_module.h"


#define NGX_HTTP_REALTIME_IPC_SKIP  0

/* the pid, and a random id: pids repeat across pid namespaces */
#define NGX_HTTP_REALTIME_IPC_NAME  "ngx-realtime-%P-%uD"

/*
 * Receivers after which a drain tells the waiters, before its end: a
 * publisher answered early sends the next publication while this
 * worker still writes the last one.
 */
#define NGX_HTTP_REALTIME_IPC_FLOW_STEP  256

/* wakeups read by one recvmmsg() */
#define NGX_HTTP_REALTIME_IPC_WAKES  16

/* ms: the longest a push answer waits for the other workers */
#define NGX_HTTP_REALTIME_IPC_FLOW_MAX  100


typedef struct {
    uint32_t                    size;      /* the whole record, aligned */
    uint16_t                    type;
    uint16_t                    target_len;
    uint16_t                    except_len;
    uint16_t                    weight;    /* receivers, for the flow */
    uint32_t                    frame_len;
    uint64_t                    offset;    /* realtime_history */
    uint64_t                    seq;
    uint64_t                    skip;      /* a connection id, or 0 */
    ngx_msec_t                  time;      /* published */
    /* target, except and the frame follow */
} ngx_http_realtime_ipc_rec_t;


/* a record copied out of the queue, delivered after the lock is let go */
typedef struct {
    ngx_uint_t                  type;
    ngx_str_t                   target;
    ngx_str_t                   except;
    ngx_http_realtime_msg_t    *msg;
    ngx_uint_t                  weight;
} ngx_http_realtime_ipc_item_t;


static void ngx_http_realtime_ipc_handler(ngx_event_t *rev);
static void ngx_http_realtime_ipc_drain(ngx_http_realtime_zone_t *zone);
static socklen_t ngx_http_realtime_ipc_addr(struct sockaddr_un *sun,
    ngx_pid_t pid, uint32_t id);
static void ngx_http_realtime_ipc_drained(ngx_http_realtime_zone_t *zone,
    ngx_uint_t n);
static void ngx_http_realtime_ipc_flow_resume(ngx_http_realtime_zone_t *zone);
static void ngx_http_realtime_ipc_flow_timeout(ngx_event_t *ev);


/* records of the types from NGX_HTTP_REALTIME_IPC_HANDLED on */
ngx_http_realtime_ipc_handler_pt
    ngx_http_realtime_ipc_handlers[NGX_HTTP_REALTIME_IPC_NHANDLERS];

static ngx_connection_t  *ngx_http_realtime_ipc_conn;
static uint32_t           ngx_http_realtime_ipc_id;
static ngx_array_t        ngx_http_realtime_ipc_items;

/* push answers held by flow control: ipc_flow_t */
static ngx_queue_t        ngx_http_realtime_ipc_flows;

/* a drain's copy of the records, kept for the next one */
static u_char            *ngx_http_realtime_ipc_copy;
static size_t             ngx_http_realtime_ipc_copy_size;


ngx_int_t
ngx_http_realtime_ipc_init_process(ngx_cycle_t *cycle)
{
    socklen_t                       len;
    ngx_socket_t                    s;
    ngx_connection_t               *c;
    struct sockaddr_un              sun;
    ngx_http_realtime_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_realtime_module);
    if (rmcf == NULL || rmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    if (ngx_array_init(&ngx_http_realtime_ipc_items, cycle->pool, 64,
                       sizeof(ngx_http_realtime_ipc_item_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_http_realtime_ipc_flows);

    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_socket_errno,
                      "realtime: socket(AF_UNIX) failed");
        return NGX_ERROR;
    }

    len = ngx_http_realtime_ipc_addr(&sun, ngx_pid,
                                     ngx_http_realtime_ipc_worker_id());

    if (bind(s, (struct sockaddr *) &sun, len) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_socket_errno,
                      "realtime: bind() of the worker socket failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_socket_errno,
                      ngx_nonblocking_n " failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, cycle->log);
    if (c == NULL) {
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c->read->handler = ngx_http_realtime_ipc_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_http_realtime_ipc_conn = c;

    return NGX_OK;
}


void
ngx_http_realtime_ipc_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_realtime_ipc_copy) {
        ngx_free(ngx_http_realtime_ipc_copy);
        ngx_http_realtime_ipc_copy = NULL;
        ngx_http_realtime_ipc_copy_size = 0;
    }

    if (ngx_http_realtime_ipc_conn) {
        ngx_close_connection(ngx_http_realtime_ipc_conn);
        ngx_http_realtime_ipc_conn = NULL;
    }
}


/* this worker's random id, the same in every zone's slot */

uint32_t
ngx_http_realtime_ipc_worker_id(void)
{
    while (ngx_http_realtime_ipc_id == 0) {
        ngx_http_realtime_ipc_id = (uint32_t) ngx_random()
                                   ^ (uint32_t) ngx_pid;
    }

    return ngx_http_realtime_ipc_id;
}


static socklen_t
ngx_http_realtime_ipc_addr(struct sockaddr_un *sun, ngx_pid_t pid,
    uint32_t id)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    /* sun_path[0] == '\0': the abstract namespace, no file to clean up */

    p = ngx_sprintf((u_char *) sun->sun_path + 1,
                    NGX_HTTP_REALTIME_IPC_NAME, pid, id);

    return (socklen_t) (offsetof(struct sockaddr_un, sun_path)
                        + (p - (u_char *) sun->sun_path));
}


/*
 * Appends a frame to a worker's queue; called with the zone locked.
 * NGX_DONE: the worker had nothing pending and must be woken;
 * NGX_DECLINED: the queue is full.
 */

ngx_int_t
ngx_http_realtime_ipc_post_locked(ngx_http_realtime_zone_t *zone,
    ngx_uint_t slot, ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    ngx_http_realtime_msg_t *msg, ngx_uint_t weight)
{
    u_char                       *p;
    size_t                        size, tail, waste;
    ngx_http_realtime_slot_t     *s;
    ngx_http_realtime_ipc_rec_t  *rec;

    s = &zone->sh->slots[slot];

    if (s->queue_used == 0) {
        /* an empty ring starts over: a record never wraps */
        s->queue_head = 0;

        /* and the worker's time to drain it starts now */
        s->drain_time = ngx_current_msec;
    }

    /* 16-aligned, so a skipped end always has room for a header */
    size = ngx_align(sizeof(ngx_http_realtime_ipc_rec_t) + target->len
                     + (except ? except->len : 0) + msg->len, 16);

    tail = (s->queue_head + s->queue_used) % s->queue_size;

    /* a record never wraps: the end of the ring is skipped instead */
    waste = (tail + size > s->queue_size) ? s->queue_size - tail : 0;

    if (s->queue_used + waste + size > s->queue_size) {
        return NGX_DECLINED;
    }

    if (waste) {
        rec = (ngx_http_realtime_ipc_rec_t *) (s->queue + tail);
        rec->size = (uint32_t) waste;
        rec->type = NGX_HTTP_REALTIME_IPC_SKIP;
        s->queue_used += waste;
        tail = 0;
    }

    rec = (ngx_http_realtime_ipc_rec_t *) (s->queue + tail);
    rec->size = (uint32_t) size;
    rec->type = (uint16_t) type;
    rec->target_len = (uint16_t) target->len;
    rec->except_len = (uint16_t) (except ? except->len : 0);
    rec->weight = (uint16_t) ngx_min(ngx_max(weight, 1), 0xffff);
    rec->frame_len = (uint32_t) msg->len;
    rec->offset = msg->offset;
    rec->seq = msg->seq;
    rec->skip = msg->skip;
    rec->time = msg->time;

    /* memcpy() must not see the NULL of an empty string */

    p = (u_char *) rec + sizeof(ngx_http_realtime_ipc_rec_t);

    if (target->len) {
        p = ngx_cpymem(p, target->data, target->len);
    }

    if (except && except->len) {
        p = ngx_cpymem(p, except->data, except->len);
    }

    if (msg->len) {
        ngx_memcpy(p, msg->data, msg->len);
    }

    s->queue_used += size;
    s->posted++;

    if (s->notified) {
        return NGX_OK;
    }

    s->notified = 1;

    return NGX_DONE;
}


/*
 * One record to one worker, known by its slot and id: NGX_DECLINED if
 * that worker is gone, NGX_AGAIN if its queue is full.
 */

ngx_int_t
ngx_http_realtime_ipc_send(ngx_http_realtime_zone_t *zone, ngx_uint_t slot,
    uint32_t id, ngx_uint_t type, ngx_str_t *target, ngx_str_t *except,
    u_char *data, size_t len)
{
    ngx_int_t                  rc;
    ngx_pid_t                  pid;
    ngx_http_realtime_msg_t    msg;
    ngx_http_realtime_slot_t  *s;

    if (slot >= NGX_HTTP_REALTIME_SLOTS) {
        return NGX_DECLINED;
    }

    ngx_memzero(&msg, sizeof(ngx_http_realtime_msg_t));
    msg.data = data;
    msg.len = len;

    s = &zone->sh->slots[slot];

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (s->pid == 0 || s->ipc_id != id) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    pid = s->pid;
    rc = ngx_http_realtime_ipc_post_locked(zone, slot, type, target, except,
                                           &msg, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime ipc send type:%ui to pid:%P rc:%i",
                   type, pid, rc);

    if (rc == NGX_DECLINED) {
        (void) ngx_atomic_fetch_add(&zone->sh->queue_full, 1);
        return NGX_AGAIN;
    }

    if (rc == NGX_DONE) {
        ngx_http_realtime_ipc_wake(pid, id);
    }

    return NGX_OK;
}


void
ngx_http_realtime_ipc_wake(ngx_pid_t pid, uint32_t id)
{
    u_char               b;
    socklen_t            len;
    struct sockaddr_un   sun;

    if (ngx_http_realtime_ipc_conn == NULL) {
        return;
    }

    b = 1;
    len = ngx_http_realtime_ipc_addr(&sun, pid, id);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime ipc wake worker %P", pid);

    /*
     * A full socket buffer already holds a wakeup; a worker that is gone
     * has its slot purged by the next worker that starts.
     */

    if (sendto(ngx_http_realtime_ipc_conn->fd, &b, 1, 0,
               (struct sockaddr *) &sun, len)
        == -1
        && ngx_socket_errno != NGX_EAGAIN)
    {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, ngx_socket_errno,
                      "realtime: waking worker %P failed", pid);
    }
}


static void
ngx_http_realtime_ipc_handler(ngx_event_t *rev)
{
    int                             n;
    u_char                          buf[NGX_HTTP_REALTIME_IPC_WAKES];
    ngx_uint_t                      i;
    struct iovec                    iov[NGX_HTTP_REALTIME_IPC_WAKES];
    struct mmsghdr                  mmsg[NGX_HTTP_REALTIME_IPC_WAKES];
    ngx_connection_t               *c;
    ngx_http_realtime_zone_t      **zones;
    ngx_http_realtime_main_conf_t  *rmcf;

    c = rev->data;

    /*
     * One drain serves every wakeup that is pending: they are read in
     * one call, as a wakeup is a call per publication under load.
     */

    ngx_memzero(mmsg, sizeof(mmsg));

    for (i = 0; i < NGX_HTTP_REALTIME_IPC_WAKES; i++) {
        iov[i].iov_base = &buf[i];
        iov[i].iov_len = 1;
        mmsg[i].msg_hdr.msg_iov = &iov[i];
        mmsg[i].msg_hdr.msg_iovlen = 1;
    }

    do {
        n = recvmmsg(c->fd, mmsg, NGX_HTTP_REALTIME_IPC_WAKES, MSG_DONTWAIT,
                     NULL);
    } while (n == NGX_HTTP_REALTIME_IPC_WAKES);

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_realtime_module);
    zones = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        if (zones[i]->slot != NGX_HTTP_REALTIME_SLOTS) {
            ngx_http_realtime_ipc_drain(zones[i]);
            ngx_http_realtime_ipc_flow_resume(zones[i]);
        }
    }
}


/*
 * The records leave the zone as bytes, under the lock; the frames are
 * made from this worker's copy after it: nothing is allocated under the
 * lock but the copy's growth, which is sized before it.
 */

static void
ngx_http_realtime_ipc_drain(ngx_http_realtime_zone_t *zone)
{
    u_char                        *p, *d, *last;
    size_t                         used, copied;
    ngx_uint_t                     i, more, n, step, done;
    ngx_http_realtime_slot_t      *s;
    ngx_http_realtime_msg_t       *msg;
    ngx_http_realtime_ipc_rec_t   *rec;
    ngx_http_realtime_ipc_item_t  *item, *items;
    ngx_http_realtime_ipc_handler_pt  h;

    s = &zone->sh->slots[zone->slot];

    ngx_http_realtime_ipc_items.nelts = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);
    used = s->queue_used;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (used > ngx_http_realtime_ipc_copy_size) {
        p = ngx_alloc(used, ngx_cycle->log);

        if (p) {
            if (ngx_http_realtime_ipc_copy) {
                ngx_free(ngx_http_realtime_ipc_copy);
            }

            ngx_http_realtime_ipc_copy = p;
            ngx_http_realtime_ipc_copy_size = used;
        }
    }

    copied = 0;
    more = 0;
    n = 0;
    step = 0;
    done = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* frames published from now on need a new wakeup */
    s->notified = 0;

    while (s->queue_used) {
        rec = (ngx_http_realtime_ipc_rec_t *) (s->queue + s->queue_head);

        if (copied + rec->size > ngx_http_realtime_ipc_copy_size) {
            /* more came since it was sized: the next round takes it */
            more = 1;
            break;
        }

        if (rec->type != NGX_HTTP_REALTIME_IPC_SKIP) {
            ngx_memcpy(ngx_http_realtime_ipc_copy + copied, rec, rec->size);
            copied += rec->size;
            n++;
        }

        s->queue_head = (s->queue_head + rec->size) % s->queue_size;
        s->queue_used -= rec->size;
    }

    if (s->queue_used == 0) {
        s->queue_head = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* (nothing copied: no memory; the next wakeup tries again) */
    if (more && copied && ngx_http_realtime_ipc_conn) {
        ngx_post_event(ngx_http_realtime_ipc_conn->read, &ngx_posted_events);
    }

    p = ngx_http_realtime_ipc_copy;
    last = p + copied;

    for ( /* void */ ; p < last; p += rec->size) {
        rec = (ngx_http_realtime_ipc_rec_t *) p;

        if (rec->type >= NGX_HTTP_REALTIME_IPC_SUBSCRIBE
            && rec->type < NGX_HTTP_REALTIME_IPC_HANDLED)
        {
            /* handled below like a delivery: no frame to copy */
            item = ngx_array_push(&ngx_http_realtime_ipc_items);
            if (item == NULL) {
                continue;
            }

            msg = ngx_http_realtime_msg_alloc(rec->target_len
                                              + rec->except_len);
            if (msg == NULL) {
                ngx_http_realtime_ipc_items.nelts--;
                continue;
            }

            item->type = rec->type;
            item->weight = rec->weight;
            item->target.data = msg->data;
            item->target.len = rec->target_len;
            item->except.data = msg->data + rec->target_len;
            item->except.len = rec->except_len;
            ngx_memcpy(msg->data,
                       (u_char *) rec + sizeof(ngx_http_realtime_ipc_rec_t),
                       rec->target_len + rec->except_len);
            item->msg = msg;
            continue;
        }

        /* one local copy of the frame, shared by every local receiver */

        msg = ngx_http_realtime_msg_alloc(rec->frame_len + rec->target_len
                                          + rec->except_len);
        if (msg == NULL) {
            (void) ngx_atomic_fetch_add(&s->dropped, 1);
            continue;
        }

        item = ngx_array_push(&ngx_http_realtime_ipc_items);
        if (item == NULL) {
            ngx_http_realtime_msg_release(msg);
            (void) ngx_atomic_fetch_add(&s->dropped, 1);
            continue;
        }

        d = (u_char *) rec + sizeof(ngx_http_realtime_ipc_rec_t);

        ngx_memcpy(msg->data, d + rec->target_len + rec->except_len,
                   rec->frame_len);
        msg->len = rec->frame_len;
        msg->offset = rec->offset;
        msg->seq = rec->seq;
        msg->skip = rec->skip;
        msg->time = rec->time;

        item->type = rec->type;
        item->weight = rec->weight;
        item->target.data = ngx_cpymem(msg->data + msg->len, d,
                                       rec->target_len)
                            - rec->target_len;
        item->target.len = rec->target_len;
        item->except.data = ngx_cpymem(item->target.data + rec->target_len,
                                       d + rec->target_len, rec->except_len)
                            - rec->except_len;
        item->except.len = rec->except_len;
        item->msg = msg;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "realtime ipc drain: %ui records",
                   ngx_http_realtime_ipc_items.nelts);

    items = ngx_http_realtime_ipc_items.elts;

    for (i = 0; i < ngx_http_realtime_ipc_items.nelts; i++) {

        if (items[i].type >= NGX_HTTP_REALTIME_IPC_HANDLED) {
            h = (items[i].type < NGX_HTTP_REALTIME_IPC_HANDLED
                                 + NGX_HTTP_REALTIME_IPC_NHANDLERS)
                ? ngx_http_realtime_ipc_handlers[items[i].type
                                               - NGX_HTTP_REALTIME_IPC_HANDLED]
                : NULL;
            if (h) {
                h(zone, &items[i].target, &items[i].except, items[i].msg);
            }

        } else if (items[i].type >= NGX_HTTP_REALTIME_IPC_USER) {
            ngx_http_realtime_redis_presence_changed(zone, items[i].type,
                                                     &items[i].target,
                                                     &items[i].except);

        } else if (items[i].type >= NGX_HTTP_REALTIME_IPC_SUBSCRIBE) {
            ngx_http_realtime_redis_room(zone, &items[i].target,
                    items[i].type == NGX_HTTP_REALTIME_IPC_SUBSCRIBE);

        } else {
            ngx_http_realtime_deliver(zone, items[i].type, &items[i].target,
                                      &items[i].except, NULL, items[i].msg);
        }

        ngx_http_realtime_msg_release(items[i].msg);

        step += items[i].weight;
        done++;

        if (step >= NGX_HTTP_REALTIME_IPC_FLOW_STEP
            && i + 1 < ngx_http_realtime_ipc_items.nelts)
        {
            ngx_http_realtime_ipc_drained(zone, done);
            n -= done;
            done = 0;
            step = 0;
        }
    }

    ngx_http_realtime_ipc_items.nelts = 0;

    /* with the records that had no memory to be delivered */
    if (n) {
        ngx_http_realtime_ipc_drained(zone, n);
    }
}


/*
 * The records are with their receivers now: the workers whose push
 * answers wait for this queue are woken to look at their tickets.
 */

static void
ngx_http_realtime_ipc_drained(ngx_http_realtime_zone_t *zone, ngx_uint_t n)
{
    uint32_t                   id[NGX_HTTP_REALTIME_SLOTS];
    ngx_pid_t                  pid[NGX_HTTP_REALTIME_SLOTS];
    ngx_uint_t                 i, nwake;
    ngx_http_realtime_slot_t  *s;

    s = &zone->sh->slots[zone->slot];

    ngx_shmtx_lock(&zone->shpool->mutex);

    s->drained += n;
    s->drain_time = ngx_current_msec;

    nwake = ngx_http_realtime_ipc_flow_waiters_locked(zone, zone->slot, pid,
                                                      id);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < nwake; i++) {
        ngx_http_realtime_ipc_wake(pid[i], id[i]);
    }
}


/*
 * The workers with push answers waiting for this slot's queue, taken
 * off it; they are woken after the unlock.  This worker's own are looked
 * at right after its drain.
 */

ngx_uint_t
ngx_http_realtime_ipc_flow_waiters_locked(ngx_http_realtime_zone_t *zone,
    ngx_uint_t slot, ngx_pid_t *pid, uint32_t *id)
{
    uint64_t                   waiters;
    ngx_uint_t                 i, n;
    ngx_http_realtime_slot_t  *s, *w;

    s = &zone->sh->slots[slot];

    waiters = s->flow_waiters & ~((uint64_t) 1 << zone->slot);
    s->flow_waiters = 0;
    n = 0;

    for (i = 0; waiters; i++, waiters >>= 1) {
        w = &zone->sh->slots[i];

        if ((waiters & 1) && w->pid) {
            pid[n] = w->pid;
            id[n++] = w->ipc_id;
        }
    }

    return n;
}


/*
 * A queue with records that has not drained any for FLOW_MAX ms belongs
 * to a worker that is stuck, stopped or dead: answers do not wait for it
 * (each would only wait out the bound), until it drains again.
 */

static ngx_uint_t
ngx_http_realtime_ipc_flow_stale(ngx_http_realtime_slot_t *s)
{
    return (ngx_msec_int_t) (ngx_current_msec - s->drain_time)
           >= NGX_HTTP_REALTIME_IPC_FLOW_MAX;
}


/*
 * NGX_DONE: no queue has records pending, answer now; NGX_AGAIN: the
 * flow's handler is called once they are drained, or after
 * NGX_HTTP_REALTIME_IPC_FLOW_MAX ms.
 */

ngx_int_t
ngx_http_realtime_ipc_flow_wait(ngx_http_realtime_ipc_flow_t *flow,
    ngx_uint_t backlog, ngx_log_t *log)
{
    uint64_t                   bit;
    ngx_uint_t                 i;
    ngx_http_realtime_slot_t  *s;
    ngx_http_realtime_zone_t  *zone;

    zone = flow->zone;
    flow->slots = 0;

    if (zone->slot == NGX_HTTP_REALTIME_SLOTS
        || ngx_http_realtime_ipc_conn == NULL)
    {
        return NGX_DONE;
    }

    bit = (uint64_t) 1 << zone->slot;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
        s = &zone->sh->slots[i];

        if (s->pid == 0 || s->posted - s->drained <= backlog
            || ngx_http_realtime_ipc_flow_stale(s))
        {
            continue;
        }

        flow->slots |= (uint64_t) 1 << i;
        flow->ticket[i] = s->posted - backlog;
        flow->id[i] = s->ipc_id;
        s->flow_waiters |= bit;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (flow->slots == 0) {
        return NGX_DONE;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "realtime flow wait: slots %uL pending", flow->slots);

    ngx_queue_insert_tail(&ngx_http_realtime_ipc_flows, &flow->queue);
    flow->waiting = 1;

    (void) ngx_atomic_fetch_add(&zone->sh->push_held, 1);

    flow->timer.handler = ngx_http_realtime_ipc_flow_timeout;
    flow->timer.data = flow;
    flow->timer.log = log;
    ngx_add_timer(&flow->timer, NGX_HTTP_REALTIME_IPC_FLOW_MAX);

    return NGX_AGAIN;
}


/* the request went first: its flow must not be called */

void
ngx_http_realtime_ipc_flow_cancel(ngx_http_realtime_ipc_flow_t *flow)
{
    if (flow->timer.timer_set) {
        ngx_del_timer(&flow->timer);
    }

    if (flow->waiting) {
        ngx_queue_remove(&flow->queue);
        flow->waiting = 0;
    }
}


/* a worker that is stuck or gone does not hold an answer for long */

static void
ngx_http_realtime_ipc_flow_timeout(ngx_event_t *ev)
{
    ngx_http_realtime_ipc_flow_t *flow = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "realtime flow wait timed out: slots %uL pending",
                   flow->slots);

    ngx_queue_remove(&flow->queue);
    flow->waiting = 0;

    (void) ngx_atomic_fetch_add(&flow->zone->sh->push_held_timeout, 1);

    flow->handler(flow);
}


/*
 * A ticket is served once its slot drained past it, or the worker it
 * waited for is gone; the others leave their bit in the slot again.
 */

static void
ngx_http_realtime_ipc_flow_resume(ngx_http_realtime_zone_t *zone)
{
    uint64_t                       bit, mine;
    ngx_uint_t                     i;
    ngx_queue_t                   *q, *next, done;
    ngx_http_realtime_slot_t      *s;
    ngx_http_realtime_ipc_flow_t  *flow;

    if (ngx_queue_empty(&ngx_http_realtime_ipc_flows)) {
        return;
    }

    ngx_queue_init(&done);
    mine = (uint64_t) 1 << zone->slot;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&ngx_http_realtime_ipc_flows);
         q != ngx_queue_sentinel(&ngx_http_realtime_ipc_flows);
         q = next)
    {
        next = ngx_queue_next(q);
        flow = ngx_queue_data(q, ngx_http_realtime_ipc_flow_t, queue);

        if (flow->zone != zone) {
            continue;
        }

        for (i = 0; i < NGX_HTTP_REALTIME_SLOTS; i++) {
            bit = (uint64_t) 1 << i;

            if (!(flow->slots & bit)) {
                continue;
            }

            s = &zone->sh->slots[i];

            if (s->pid == 0 || s->ipc_id != flow->id[i]
                || s->drained >= flow->ticket[i])
            {
                flow->slots &= ~bit;

            } else {
                s->flow_waiters |= mine;
            }
        }

        if (flow->slots == 0) {
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&done, q);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* a handler may finalize a request, never another flow's */

    while (!ngx_queue_empty(&done)) {
        q = ngx_queue_head(&done);
        ngx_queue_remove(q);

        flow = ngx_queue_data(q, ngx_http_realtime_ipc_flow_t, queue);
        flow->waiting = 0;

        if (flow->timer.timer_set) {
            ngx_del_timer(&flow->timer);
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, flow->timer.log, 0,
                       "realtime flow wait served");

        flow->handler(flow);
    }
}
