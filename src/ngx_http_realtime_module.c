
/*
 * Copyright (C) ngx-realtime developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


typedef struct {
    ngx_uint_t                     status;
    char                          *code;
    char                          *message;
} ngx_http_realtime_status_name_t;


static ngx_int_t ngx_http_realtime_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_realtime_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_realtime_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_realtime_init_process(ngx_cycle_t *cycle);
static void ngx_http_realtime_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_realtime_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_realtime_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_realtime_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_realtime_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_realtime(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_realtime_endpoint(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_realtime_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_realtime_push_backlog(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_realtime_subprotocols(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_realtime_allow_origin(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_conf_num_bounds_t  ngx_http_realtime_deflate_level_bounds = {
    ngx_conf_check_num_bounds, 1, 9
};


static ngx_command_t  ngx_http_realtime_commands[] = {

    { ngx_string("realtime_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_realtime_zone_conf,
      0,
      0,
      NULL },

    { ngx_string("realtime_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_realtime_redis_conf,
      0,
      0,
      NULL },

    { ngx_string("realtime"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_realtime,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_realtime,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_socketio"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_realtime,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_socketio_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_realtime,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_engineio_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_realtime,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_socketio_transports"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_sio_transports,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_socketio_recovery"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, sio_recovery),
      NULL },

    { ngx_string("realtime_socketio_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, sio_ping_interval),
      NULL },

    { ngx_string("realtime_socketio_ping_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, sio_ping_timeout),
      NULL },

    { ngx_string("realtime_socketio_max_payload"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, sio_max_payload),
      NULL },

    { ngx_string("realtime_socketio_namespaces"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_sio_namespaces,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_route"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3
                        |NGX_CONF_TAKE4,
      ngx_http_realtime_route_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_identify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_realtime_identify_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_connection_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_realtime_identify_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_user_list"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_user_list_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_join_on_connect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_join_on_connect_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_forward"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_realtime_forward_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_connect_request"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_forward_hook_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_disconnect_request"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_forward_hook_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_forward_max_inflight"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, forward_max),
      NULL },

    { ngx_string("realtime_forward_worker_max_inflight"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_realtime_main_conf_t, forward_worker_max),
      NULL },

    { ngx_string("realtime_push"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_realtime_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_realtime_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, user),
      NULL },

    { ngx_string("realtime_history"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_history_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_timestamp"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, timestamp),
      NULL },

    { ngx_string("realtime_presence"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, presence),
      NULL },

    { ngx_string("realtime_client_publish"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, client_publish),
      NULL },

    { ngx_string("realtime_max_rooms_per_connection"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, max_rooms),
      NULL },

    { ngx_string("realtime_max_connections_per_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, max_user_connections),
      NULL },

    { ngx_string("realtime_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_realtime_rate_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_push_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, push_secret),
      NULL },

    { ngx_string("realtime_push_backlog"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_realtime_push_backlog,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_subprotocols"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_subprotocols,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_allow_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_realtime_allow_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("realtime_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("realtime_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, deflate),
      NULL },

    { ngx_string("realtime_deflate_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, deflate_level),
      &ngx_http_realtime_deflate_level_bounds },

    { ngx_string("realtime_deflate_min_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, deflate_min_length),
      NULL },

    { ngx_string("realtime_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, send_buffer),
      NULL },

    { ngx_string("realtime_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, ping_interval),
      NULL },

    { ngx_string("realtime_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_realtime_loc_conf_t, idle_timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_realtime_module_ctx = {
    ngx_http_realtime_forward_add_variables, /* preconfiguration */
    ngx_http_realtime_postconfiguration,   /* postconfiguration */

    ngx_http_realtime_create_main_conf,    /* create main configuration */
    ngx_http_realtime_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_realtime_create_loc_conf,     /* create location configuration */
    ngx_http_realtime_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_realtime_module = {
    NGX_MODULE_V1,
    &ngx_http_realtime_module_ctx,         /* module context */
    ngx_http_realtime_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_realtime_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_realtime_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_realtime_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      sid;
    ngx_http_realtime_loc_conf_t  *rlcf;

    if (r != r->main) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "realtime: websocket in subrequest");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    /*
     * realtime_jwt_key_request: the key of a handshake's token may be on
     * its way (a Socket.IO request with a sid belongs to a session)
     */

    if (rlcf->mode >= NGX_HTTP_REALTIME_SIO
        ? ngx_http_arg(r, (u_char *) "sid", 3, &sid) != NGX_OK
        : r->headers_in.upgrade != NULL)
    {
        rc = ngx_http_realtime_jwt_wait_keys(r, 0, ngx_http_realtime_handler);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (rlcf->mode >= NGX_HTTP_REALTIME_SIO) {
        return ngx_http_realtime_sio_handler(r, rlcf);
    }

    return ngx_http_realtime_handshake(r, rlcf);
}


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_http_realtime_status_name_t  ngx_http_realtime_status_names[] = {
    { 400, "BAD_REQUEST", "Bad Request" },
    { 401, "UNAUTHORIZED", "Unauthorized" },
    { 403, "FORBIDDEN", "Forbidden" },
    { 404, "NOT_FOUND", "Not Found" },
    { 405, "METHOD_NOT_ALLOWED", "Method Not Allowed" },
    { 408, "REQUEST_TIMEOUT", "Request Timeout" },
    { 411, "LENGTH_REQUIRED", "Length Required" },
    { 413, "PAYLOAD_TOO_LARGE",
      "the body is larger than client_max_body_size" },
    { 414, "URI_TOO_LONG", "URI Too Long" },
    { 429, "TOO_MANY_REQUESTS", "Too Many Requests" },
    { 500, "INTERNAL_ERROR", "Internal Server Error" },
    { 503, "SERVICE_UNAVAILABLE", "Service Unavailable" },
    { 0, "HTTP_ERROR", "Error" }
};


static ngx_int_t
ngx_http_realtime_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_realtime_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_realtime_error_body_filter;

    return NGX_OK;
}


/*
 * nginx answers some errors itself before a content handler runs (413
 * for a Content-Length over client_max_body_size, 403 from deny, 400 for
 * a broken chunked body): in this module's locations, those answers are
 * JSON too, like the module's own.
 */

static ngx_int_t
ngx_http_realtime_error_header_filter(ngx_http_request_t *r)
{
    size_t                            len;
    ngx_buf_t                        *b;
    ngx_http_realtime_ctx_t          *ctx;
    ngx_http_realtime_loc_conf_t     *rlcf;
    ngx_http_realtime_status_name_t  *sn;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    if (!rlcf->json_errors
        || r != r->main
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || (r->headers_out.content_type.len >= sizeof("application/json") - 1
            && ngx_strncasecmp(r->headers_out.content_type.data,
                               (u_char *) "application/json",
                               sizeof("application/json") - 1)
               == 0))
    {
        return ngx_http_next_header_filter(r);
    }

    for (sn = ngx_http_realtime_status_names; sn->status; sn++) {
        if (sn->status == r->headers_out.status) {
            break;
        }
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_realtime_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_realtime_module);
    }

    len = sizeof("{\"error\":\"\",\"code\":\"\"}" CRLF) - 1
          + ngx_strlen(sn->message) + ngx_strlen(sn->code);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->pos, "{\"error\":\"%s\",\"code\":\"%s\"}" CRLF,
                          sn->message, sn->code);
    b->last_buf = 1;
    b->last_in_chain = 1;

    ctx->error = b;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_realtime_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              out, *cl;
    ngx_http_realtime_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_realtime_module);

    if (ctx == NULL || ctx->error == NULL || r->header_only) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's HTML page is consumed in place of being sent */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->error_sent) {
        /* a later call flushes what the first one could not write */
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->error_sent = 1;

    out.buf = ctx->error;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_realtime_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_realtime_zone_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_ipc_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_forward_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_user_list_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_realtime_sio_recovery_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_realtime_sio_init_process(cycle);
}


static void
ngx_http_realtime_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_realtime_ipc_exit_process(cycle);
    ngx_http_realtime_zone_exit_process(cycle);
    ngx_http_realtime_deflate_exit_process();
}


ngx_int_t
ngx_http_realtime_send_error(ngx_http_request_t *r, ngx_uint_t status,
    char *code, char *message)
{
    size_t      len;
    u_char     *p;
    ngx_str_t   type;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    len = sizeof("{\"error\":\"\",\"code\":\"\"}" CRLF) - 1
          + ngx_strlen(message) + ngx_strlen(code);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_sprintf(p, "{\"error\":\"%s\",\"code\":\"%s\"}" CRLF,
                      message, code)
          - p;

    ngx_str_set(&type, "application/json");

    return ngx_http_realtime_send_body(r, status, &type, p, len);
}


/*
 * For checks that refuse a request: NGX_DONE when the refusal is out
 * whole, NGX_OK being their "go on".
 */

ngx_int_t
ngx_http_realtime_refuse(ngx_http_request_t *r, ngx_uint_t status,
    char *code, char *message)
{
    ngx_int_t  rc;

    rc = ngx_http_realtime_send_error(r, status, code, message);

    return (rc == NGX_OK) ? NGX_DONE : rc;
}


ngx_int_t
ngx_http_realtime_send_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = (len != 0);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void *
ngx_http_realtime_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_realtime_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->zones, cf->pool, 1,
                       sizeof(ngx_http_realtime_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    rmcf->forward_worker_max = NGX_CONF_UNSET_UINT;

    return rmcf;
}


static char *
ngx_http_realtime_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_realtime_main_conf_t *rmcf = conf;

    ngx_conf_init_uint_value(rmcf->forward_worker_max, 4096);

    if (rmcf->forward_worker_max == 0) {
        return "realtime_forward_worker_max_inflight must not be 0";
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_realtime_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_realtime_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_realtime_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->mode = NGX_HTTP_REALTIME_OFF;
     */

    /*
     * set by ngx_pcalloc():
     *
     *     conf->zone = NULL;
     *     conf->push_secret = { 0, NULL };
     */

    conf->user = NGX_CONF_UNSET_PTR;
    conf->presence = NGX_CONF_UNSET;
    conf->timestamp = NGX_CONF_UNSET;
    conf->client_publish = NGX_CONF_UNSET;
    conf->max_rooms = NGX_CONF_UNSET_UINT;
    conf->max_user_connections = NGX_CONF_UNSET_UINT;
    conf->rate = NGX_CONF_UNSET_UINT;
    conf->burst = NGX_CONF_UNSET_UINT;
    conf->subprotocols = NGX_CONF_UNSET_PTR;
    conf->origins = NGX_CONF_UNSET_PTR;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->push_backlog = NGX_CONF_UNSET_UINT;
    conf->deflate = NGX_CONF_UNSET;
    conf->deflate_level = NGX_CONF_UNSET;
    conf->deflate_min_length = NGX_CONF_UNSET_SIZE;
    conf->ping_interval = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->sio_transports = NGX_CONF_UNSET_UINT;
    conf->sio_ping_interval = NGX_CONF_UNSET_MSEC;
    conf->sio_recovery = NGX_CONF_UNSET_MSEC;
    conf->sio_ping_timeout = NGX_CONF_UNSET_MSEC;
    conf->sio_max_payload = NGX_CONF_UNSET_SIZE;
    conf->sio_namespaces = NGX_CONF_UNSET_PTR;
    conf->forwards = NGX_CONF_UNSET_PTR;
    conf->connect_hook = NGX_CONF_UNSET_PTR;
    conf->disconnect_hook = NGX_CONF_UNSET_PTR;
    conf->routes = NGX_CONF_UNSET_PTR;
    conf->join_on_connect = NGX_CONF_UNSET_PTR;
    conf->forward_max = NGX_CONF_UNSET_UINT;
    conf->history_max = NGX_CONF_UNSET_UINT;
    conf->history_ttl = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_realtime_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_realtime_loc_conf_t *prev = parent;
    ngx_http_realtime_loc_conf_t *conf = child;

    ngx_core_conf_t  *ccf;

    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);
    ngx_conf_merge_value(conf->presence, prev->presence, 0);
    ngx_conf_merge_value(conf->timestamp, prev->timestamp, 0);
    ngx_conf_merge_value(conf->client_publish, prev->client_publish, 0);
    ngx_conf_merge_uint_value(conf->max_rooms, prev->max_rooms, 64);
    ngx_conf_merge_uint_value(conf->max_user_connections,
                              prev->max_user_connections, 16);
    ngx_conf_merge_uint_value(conf->rate, prev->rate, 0);
    ngx_conf_merge_uint_value(conf->burst, prev->burst, 0);
    ngx_conf_merge_str_value(conf->push_secret, prev->push_secret, "");
    ngx_conf_merge_uint_value(conf->push_backlog, prev->push_backlog,
                              NGX_HTTP_REALTIME_PUSH_BACKLOG);
    ngx_conf_merge_ptr_value(conf->subprotocols, prev->subprotocols, NULL);
    ngx_conf_merge_ptr_value(conf->origins, prev->origins, NULL);
    ngx_conf_merge_size_value(conf->max_message_size,
                              prev->max_message_size, 1024 * 1024);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              256 * 1024);
    ngx_conf_merge_value(conf->deflate, prev->deflate, 0);
    ngx_conf_merge_value(conf->deflate_level, prev->deflate_level, 1);
    ngx_conf_merge_size_value(conf->deflate_min_length,
                              prev->deflate_min_length, 64);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval,
                              25000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);

    /* the defaults of Socket.IO 4.8's server */
    ngx_conf_merge_uint_value(conf->sio_transports, prev->sio_transports,
                              NGX_HTTP_REALTIME_SIO_POLLING
                              |NGX_HTTP_REALTIME_SIO_WEBSOCKET);
    ngx_conf_merge_msec_value(conf->sio_ping_interval,
                              prev->sio_ping_interval, 25000);
    ngx_conf_merge_msec_value(conf->sio_ping_timeout,
                              prev->sio_ping_timeout, 20000);
    ngx_conf_merge_size_value(conf->sio_max_payload, prev->sio_max_payload,
                              1000000);
    ngx_conf_merge_ptr_value(conf->sio_namespaces, prev->sio_namespaces,
                             NULL);

    if (ngx_http_realtime_user_list_merge(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->history_max, prev->history_max, 0);
    ngx_conf_merge_msec_value(conf->history_ttl, prev->history_ttl, 0);

    if (ngx_http_realtime_history_merge(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_msec_value(conf->sio_recovery, prev->sio_recovery, 0);

    if (conf->sio_recovery && conf->history_max == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_socketio_recovery needs "
                           "realtime_history");
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_str_value(conf->identify_event, prev->identify_event, "");
    ngx_conf_merge_str_value(conf->conn_id_event, prev->conn_id_event, "");
    ngx_conf_merge_str_value(conf->conn_id_answer, prev->conn_id_answer, "");

    ngx_conf_merge_ptr_value(conf->routes, prev->routes, NULL);
    ngx_conf_merge_ptr_value(conf->join_on_connect, prev->join_on_connect,
                             NULL);

    /* a Socket.IO CONNECT comes without the handshake's request */

    if (conf->mode >= NGX_HTTP_REALTIME_SIO
        && ngx_http_realtime_route_join_vars(conf) == NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "realtime_join_on_connect with variables is for "
                           "WebSocket clients of \"realtime\", not for "
                           "Socket.IO");
        return NGX_CONF_ERROR;
    }

    if (conf->forwards == NGX_CONF_UNSET_PTR
        && conf->connect_hook == NGX_CONF_UNSET_PTR
        && conf->disconnect_hook == NGX_CONF_UNSET_PTR)
    {
        conf->forward_ctx = prev->forward_ctx;
    }

    if (conf->forwards == NGX_CONF_UNSET_PTR) {
        conf->forwards = prev->forwards;
    }

    ngx_conf_merge_ptr_value(conf->connect_hook, prev->connect_hook, NULL);
    ngx_conf_merge_ptr_value(conf->disconnect_hook, prev->disconnect_hook,
                             NULL);

    if (conf->forwards == NGX_CONF_UNSET_PTR) {
        conf->forwards = NULL;
    }

    ngx_conf_merge_uint_value(conf->forward_max, prev->forward_max, 16);

    /* a polling session's requests cross workers through a zone */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    if (conf->mode >= NGX_HTTP_REALTIME_SIO && conf->zone == NULL
        && (conf->sio_transports & NGX_HTTP_REALTIME_SIO_POLLING)
        && ccf->worker_processes > 1)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "Engine.IO polling with several workers needs a "
                           "zone: \"realtime_socketio <zone>\" (or the echo "
                           "directives' zone parameter), or "
                           "\"realtime_socketio_transports websocket\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->mode != NGX_HTTP_REALTIME_OFF) {
        return "is duplicate";
    }

    switch (cmd->name.len) {

    case sizeof("realtime_echo") - 1:
        rlcf->mode = NGX_HTTP_REALTIME_ECHO;
        break;

    case sizeof("realtime_socketio") - 1:
        rlcf->mode = NGX_HTTP_REALTIME_SIO;
        break;

    case sizeof("realtime_socketio_echo") - 1:
        rlcf->mode = (cmd->name.data[sizeof("realtime_") - 1] == 's')
                     ? NGX_HTTP_REALTIME_SIO_ECHO
                     : NGX_HTTP_REALTIME_EIO_ECHO;
        break;

    default:
        rlcf->mode = NGX_HTTP_REALTIME_ROOMS;
    }

    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        rlcf->zone = ngx_http_realtime_zone_add(cf, &value[1], 0);
        if (rlcf->zone == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rlcf->json_errors = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_realtime_handler;

    return NGX_CONF_OK;
}


/* realtime_push, realtime_status, realtime_metrics */

static char *
ngx_http_realtime_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rlcf->zone = ngx_http_realtime_zone_add(cf, &value[1], 0);
    if (rlcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (value[2].len != 6 || ngx_strcmp(value[2].data, "strict") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        /* a degraded instance answers 503, for a readiness probe */
        rlcf->status_strict = 1;
    }

    rlcf->json_errors = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    switch (cmd->name.data[sizeof("realtime_") - 1]) {

    case 'p':
        clcf->handler = ngx_http_realtime_push_handler;
        break;

    case 's':
        clcf->handler = ngx_http_realtime_status_handler;
        break;

    default: /* 'm' */
        clcf->handler = ngx_http_realtime_metrics_handler;
    }

    return NGX_CONF_OK;
}


/* realtime_push_backlog number | off */

static char *
ngx_http_realtime_push_backlog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (rlcf->push_backlog != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->push_backlog = NGX_HTTP_REALTIME_PUSH_BACKLOG_OFF;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n > 65535) {
        return "has an invalid value: a number of publications (0-65535) "
               "or \"off\"";
    }

    rlcf->push_backlog = n;

    return NGX_CONF_OK;
}


/* realtime_rate_limit 20r/s [burst=40]; stored as in limit_req, x1000 */

static char *
ngx_http_realtime_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    size_t      len;
    ngx_int_t   rate, scale, burst;
    ngx_str_t  *value;

    if (rlcf->rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->rate = 0;
        rlcf->burst = 0;
        return NGX_CONF_OK;
    }

    len = value[1].len;
    scale = 1;

    if (len > 2 && ngx_strcmp(value[1].data + len - 2, "/s") == 0) {
        len -= 2;

    } else if (len > 2 && ngx_strcmp(value[1].data + len - 2, "/m") == 0) {
        len -= 2;
        scale = 60;
    }

    if (len > 1 && value[1].data[len - 1] == 'r') {
        len--;
    }

    rate = ngx_atoi(value[1].data, len);
    if (rate <= 0) {
        return "has an invalid rate";
    }

    burst = 0;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "burst=", 6) != 0) {
            return "has an invalid parameter";
        }

        burst = ngx_atoi(value[2].data + 6, value[2].len - 6);
        if (burst == NGX_ERROR) {
            return "has an invalid burst";
        }
    }

    rlcf->rate = rate * 1000 / scale;
    rlcf->burst = burst * 1000;

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime_subprotocols(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t   *value, *s;
    ngx_uint_t   i;

    if (rlcf->subprotocols != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    rlcf->subprotocols = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_str_t));
    if (rlcf->subprotocols == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        s = ngx_array_push(rlcf->subprotocols);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime_allow_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_realtime_origin_t  *o;
#if (NGX_PCRE)
    u_char                       errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t          rc;
#endif

    if (rlcf->origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    rlcf->origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(ngx_http_realtime_origin_t));
    if (rlcf->origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        o = ngx_array_push(rlcf->origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(o, sizeof(ngx_http_realtime_origin_t));
        o->value = value[i];

        if (value[i].len == 1 && value[i].data[0] == '*') {
            o->any = 1;
            continue;
        }

        if (value[i].data[0] != '~') {
            continue;
        }

#if (NGX_PCRE)
        ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

        rc.pattern.data = value[i].data + 1;
        rc.pattern.len = value[i].len - 1;

        if (rc.pattern.len && rc.pattern.data[0] == '*') {
            rc.pattern.data++;
            rc.pattern.len--;
            rc.options = NGX_REGEX_CASELESS;
        }

        rc.pool = cf->pool;
        rc.err.len = NGX_MAX_CONF_ERRSTR;
        rc.err.data = errstr;

        if (ngx_regex_compile(&rc) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
            return NGX_CONF_ERROR;
        }

        o->regex = rc.regex;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "using regex \"%V\" requires PCRE library",
                           &value[i]);
        return NGX_CONF_ERROR;
#endif
    }

    return NGX_CONF_OK;
}
