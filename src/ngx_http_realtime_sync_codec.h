
/*
 * Copyright (C) ngx-realtime developers
 *
 * The messages between instances on Redis (realtime_redis), pure C: no
 * nginx headers, unit-tested and fuzzed.
 *
 *   "rt1 <instance> <type> <target length> <except length>\n"
 *       <target> <except> <json>          a publication, pub/sub only
 *   "rt2 <instance> <skip> <offset> <epoch> <target length>
 *       <except length>\n" <target> <except> <json>
 *                                         a room publication with its
 *                                         place (realtime_history)
 */


#ifndef _NGX_HTTP_REALTIME_SYNC_CODEC_H_INCLUDED_
#define _NGX_HTTP_REALTIME_SYNC_CODEC_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_REALTIME_SYNC_INSTANCE_LEN  16
#define NGX_HTTP_REALTIME_SYNC_EPOCH_LEN     16


typedef struct {
    int                   version;    /* 1 or 2 */
    const unsigned char  *instance;
    size_t                instance_len;
    unsigned              type;       /* rt1 */
    uint64_t              skip;       /* rt2 */
    uint64_t              offset;     /* rt2, 1 or more */
    const unsigned char  *epoch;      /* rt2, EPOCH_LEN */
    const unsigned char  *target;
    size_t                target_len;
    const unsigned char  *except;
    size_t                except_len;
    const unsigned char  *json;       /* rt2: an object; NULL: rt1 type 4 */
    size_t                json_len;
} ngx_http_realtime_sync_msg_t;


/*
 * 0 with m filled (pointers into p), -1 if p is not one of ours:
 * target_max and except_max bound the lengths; an rt1 target may be
 * empty (a broadcast), an rt2 one may not; rt1 stops after its header
 * for type 4 (the users changed), which has no body.
 */
int ngx_http_realtime_sync_parse(const unsigned char *p, size_t len,
    size_t target_max, size_t except_max, ngx_http_realtime_sync_msg_t *m);


#endif /* _NGX_HTTP_REALTIME_SYNC_CODEC_H_INCLUDED_ */
