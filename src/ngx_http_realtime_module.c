
/*
 * Copyright (C) ngx-realtime developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_realtime_module.h"


static ngx_int_t ngx_http_realtime_handler(ngx_http_request_t *r);
static void *ngx_http_realtime_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_realtime_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_realtime(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_realtime_subprotocols(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_realtime_allow_origin(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_realtime_commands[] = {

    { ngx_string("realtime"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
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
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

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
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_realtime_handler(ngx_http_request_t *r)
{
    ngx_http_realtime_loc_conf_t  *rlcf;

    if (r != r->main) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "realtime: websocket in subrequest");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_realtime_module);

    return ngx_http_realtime_handshake(r, rlcf);
}


ngx_int_t
ngx_http_realtime_send_error(ngx_http_request_t *r, ngx_uint_t status,
    char *code, char *message)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    len = sizeof("{\"error\":\"\",\"code\":\"\"}" CRLF) - 1
          + ngx_strlen(message) + ngx_strlen(code);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last, "{\"error\":\"%s\",\"code\":\"%s\"}" CRLF,
                          message, code);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
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

    conf->subprotocols = NGX_CONF_UNSET_PTR;
    conf->origins = NGX_CONF_UNSET_PTR;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->ping_interval = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_realtime_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_realtime_loc_conf_t *prev = parent;
    ngx_http_realtime_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->subprotocols, prev->subprotocols, NULL);
    ngx_conf_merge_ptr_value(conf->origins, prev->origins, NULL);
    ngx_conf_merge_size_value(conf->max_message_size,
                              prev->max_message_size, 1024 * 1024);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              256 * 1024);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval,
                              25000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);

    return NGX_CONF_OK;
}


static char *
ngx_http_realtime(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_realtime_loc_conf_t *rlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->mode != NGX_HTTP_REALTIME_OFF) {
        return "is duplicate";
    }

    rlcf->mode = (cmd->name.len == sizeof("realtime_echo") - 1)
                 ? NGX_HTTP_REALTIME_ECHO : NGX_HTTP_REALTIME_ROOMS;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_realtime_handler;

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
