
/*
 * Copyright (C) ngx-realtime developers
 *
 * What the module needs to know of Redis Cluster's addressing, pure C:
 * no nginx headers, unit-tested and fuzzed.
 *
 *   - the slot of a key or channel: CRC16 (XMODEM) of the key, or of
 *     its {hash tag} when it has a non-empty one, modulo 16384;
 *
 *   - a redirection, the error a node answers for a key of a slot it
 *     does not serve:
 *
 *         "MOVED <slot> <host>:<port>"   the slot is there now
 *         "ASK <slot> <host>:<port>"     this command only, after ASKING
 *
 *     where the host may be empty (the node that answered) and an IPv6
 *     address has no brackets: the port follows the last colon.
 */


#ifndef _NGX_HTTP_REALTIME_CLUSTER_CODEC_H_INCLUDED_
#define _NGX_HTTP_REALTIME_CLUSTER_CODEC_H_INCLUDED_


#include <stddef.h>


#define NGX_HTTP_REALTIME_CLUSTER_SLOTS  16384


typedef struct {
    int                   ask;        /* 1: ASK, 0: MOVED */
    unsigned              slot;
    const unsigned char  *host;       /* into the error; may be empty */
    size_t                host_len;
    unsigned              port;
} ngx_http_realtime_cluster_redirect_t;


unsigned ngx_http_realtime_cluster_slot(const unsigned char *key,
    size_t len);

/* 0 with r filled (host into err), -1 if err is no redirection */
int ngx_http_realtime_cluster_redirect(const unsigned char *err,
    size_t len, ngx_http_realtime_cluster_redirect_t *r);


#endif /* _NGX_HTTP_REALTIME_CLUSTER_CODEC_H_INCLUDED_ */
