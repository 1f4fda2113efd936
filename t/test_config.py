"""Directive parsing and http/server/location inheritance."""


import pytest

import wsraw
from conftest import MODULE, Nginx
from wsraw import (OP_BINARY, OP_TEXT, RawWS, assert_101, assert_json_error,
                   http_request, ws_request_bytes)

F = wsraw.build_frame

INHERIT = r"""
    realtime_subprotocols chat.http;
    realtime_max_message_size 2k;

    server {
        listen 127.0.0.1:%PORT%;
        realtime_allow_origin https://srv.example;
        realtime_max_message_size 1k;

        location = /inh { realtime_echo; }
        location = /override {
            realtime_echo;
            realtime_max_message_size 4k;
            realtime_allow_origin *;
            realtime_subprotocols loc.proto;
        }
    }

    server {
        listen 127.0.0.1:%PORT2%;
        realtime_idle_timeout 1s;
        realtime_ping_interval 10s;
        location / { realtime_echo; }
        location = /plain { return 200 "plain\n"; }
    }
"""


@pytest.fixture
def inh(nginx_factory):
    ngx = nginx_factory(INHERIT, start=False)
    ngx.start(INHERIT, wait_ports=[ngx.port, ngx.port2])
    return ngx


def test_server_level_values_inherited(inh):
    key = wsraw.new_key()
    resp = http_request(inh.port, ws_request_bytes(
        path="/inh", key=key,
        extra=[("Origin", "https://srv.example"),
               ("Sec-WebSocket-Protocol", "x, chat.http")]))
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") == "chat.http"
    resp = http_request(inh.port, ws_request_bytes(
        path="/inh", extra=[("Origin", "https://other.example")]))
    assert_json_error(resp, 403, "FORBIDDEN")
    with RawWS.connect(inh.port, path="/inh") as ws:
        ws.send_binary(b"a" * 1024)
        assert ws.recv_message() == (OP_BINARY, b"a" * 1024)
        ws.send(F(OP_BINARY, b"", length=1025))      # server's 1k, not 2k
        ws.expect_close(1009)


def test_location_overrides(inh):
    key = wsraw.new_key()
    resp = http_request(inh.port, ws_request_bytes(
        path="/override", key=key,
        extra=[("Origin", "https://other.example"),
               ("Sec-WebSocket-Protocol", "chat.http, loc.proto")]))
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") == "loc.proto"
    with RawWS.connect(inh.port, path="/override") as ws:
        ws.send_binary(b"b" * 4096)
        assert ws.recv_message() == (OP_BINARY, b"b" * 4096)
        ws.send(F(OP_BINARY, b"", length=4097))
        ws.expect_close(1009)


def test_http_level_values_in_second_server(inh):
    with RawWS.connect(inh.port2, path="/any/where") as ws:
        ws.send_text("echo")
        assert ws.recv_message() == (OP_TEXT, b"echo")
        ws.send_binary(b"c" * 2048)
        assert ws.recv_message() == (OP_BINARY, b"c" * 2048)
        # http-level 2k limit applies in this server
        ws.send(F(OP_BINARY, b"", length=2049))
        ws.expect_close(1009)
    raw = b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = http_request(inh.port2, raw)
    assert resp.status == 200 and resp.body == b"plain\n"


def test_server_level_idle_timeout(inh):
    with RawWS.connect(inh.port2, path="/") as ws:
        ws.expect_close(1001, timeout=3.0, reason=b"idle timeout",
                        reply=True, tcp_timeout=1.5)


SERVER_LEVEL_ECHO = r"""
    server {
        listen 127.0.0.1:%PORT%;
        realtime_echo;
        location / { }
        location = /plain { return 200 "plain\n"; }
    }"""


def test_realtime_echo_is_location_only(nginx_factory):
    """realtime and realtime_echo make a location an endpoint, like
    proxy_pass: at server level nginx -t must refuse them clearly."""
    ngx = nginx_factory(SERVER_LEVEL_ECHO, start=False)
    ngx.write_conf(SERVER_LEVEL_ECHO)
    rc, out = ngx.test_conf()
    ngx.error_log_path.unlink(missing_ok=True)
    assert rc != 0
    assert '"realtime_echo" directive is not allowed here' in out


# -- nginx -t -------------------------------------------------------------

def _t(tmp_path, body):
    if not MODULE.exists():
        pytest.skip("module not built")
    ngx = Nginx(tmp_path / "conftest")
    ngx.write_conf(body)
    rc, out = ngx.test_conf()
    return rc, out + ngx.error_log()


def test_all_directives_accepted(tmp_path):
    rc, out = _t(tmp_path, r"""
    realtime_max_message_size 512k;
    realtime_ping_interval 5s;
    realtime_idle_timeout 2m;
    realtime_send_buffer 1m;
    server {
        listen 127.0.0.1:%PORT%;
        realtime_subprotocols a b;
        realtime_allow_origin * https://x.example ~^https://y$ ~*^https://z$;
        location = /a { realtime; realtime_ping_interval 25s; }
        location = /b { realtime_echo; realtime_send_buffer 256k; }
    }""")
    assert rc == 0, out
    assert "syntax is ok" in out and "test is successful" in out, out


@pytest.mark.parametrize("bad", [
    "realtime_max_message_size abc;",
    "realtime_send_buffer -1;",
    "realtime_ping_interval forever;",
    "realtime_idle_timeout 1x;",
    "realtime_allow_origin ~(unclosed;",
    "realtime_subprotocols;",
    "realtime_allow_origin;",
    "realtime_echo extra_arg;",
])
def test_invalid_directive_rejected(tmp_path, bad):
    rc, out = _t(tmp_path, r"""
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /a { %s }
        location = /b { realtime_echo; }
    }""" % bad)
    assert rc != 0, "nginx -t accepted %r:\n%s" % (bad, out)
    assert "[emerg]" in out, out


@pytest.mark.parametrize("value, ok", [("0", False), ("many", False),
                                       ("1", True), ("100000", True)])
def test_forward_worker_limit_is_checked(tmp_path, value, ok):
    rc, out = _t(tmp_path, r"""
    realtime_forward_worker_max_inflight %s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /a { realtime_echo; }
    }""" % value)
    if ok:
        assert rc == 0, out
    else:
        assert rc != 0 and "[emerg]" in out, out
        assert "realtime_forward_worker_max_inflight" in out, out


@pytest.mark.parametrize("value, ok", [
    ("-1", False), ("many", False), ("65536", False), ("0", True),
    ("4", True), ("65535", True), ("off", True)])
def test_push_backlog_is_checked(tmp_path, value, ok):
    rc, out = _t(tmp_path, r"""
    realtime_zone rt 1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /p { realtime_push rt; realtime_push_backlog %s; }
    }""" % value)
    if ok:
        assert rc == 0, out
    else:
        assert rc != 0 and "[emerg]" in out, out
        assert "realtime_push_backlog" in out and "invalid value" in out, out
