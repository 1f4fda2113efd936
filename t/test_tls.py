"""WebSocket over TLS (wss://) with a self-signed certificate."""

import asyncio
import os

import pytest
import websockets

import wsraw
from wsraw import (OP_BINARY, OP_PING, OP_PONG, OP_TEXT, RawWS,
                   assert_json_error, build_frame, http_request,
                   ws_request_bytes)

pytestmark = pytest.mark.asan     # also run by make integration-asan


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from conftest import Nginx, _require_module, self_signed_cert
    _require_module()
    d = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(d)
    ngx = Nginx(d / "nginx")
    ngx.start(r"""
    server {
        listen 127.0.0.1:%%PORT%% ssl;
        server_name localhost;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location = /echo { realtime_echo; }
        location = /rt { realtime; }
        location = /echo_1k { realtime_echo; realtime_max_message_size 1k; }
    }
    """ % (cert, key))
    yield ngx
    graceful = ngx.quit(timeout=8)
    bad = ngx.bad_log_lines(0)
    assert graceful, "TLS nginx did not quit gracefully"
    assert not bad, "\n".join(bad)


@pytest.fixture
def tsrv(tls_server):
    tls_server.log_mark()
    yield tls_server
    tls_server.assert_log_clean()


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_wss_python_client_echo(tsrv):
    async def go():
        uri = "wss://127.0.0.1:%d/echo" % tsrv.port
        async with websockets.connect(uri, ssl=wsraw.client_ssl_context(),
                                      open_timeout=5, close_timeout=3,
                                      ping_interval=None,
                                      max_size=None) as ws:
            res = []
            for m in ["tls text \u00e9", os.urandom(5000), "",
                      os.urandom(200000)]:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 10)
                res.append(got == m and type(got) is type(m))
            await ws.send(["a", "b", "c"])
            res.append(await asyncio.wait_for(ws.recv(), 5) == "abc")
            await asyncio.wait_for(await ws.ping(b"tls"), 5)
            await ws.close(1000)
            res.append(ws.close_code == 1000)
            return res
    assert run(go()) == [True] * 6


def test_wss_raw_echo_and_ping(tsrv):
    with RawWS.connect(tsrv.port, tls=True) as ws:
        ws.send_text("raw tls")
        assert ws.recv_message() == (OP_TEXT, b"raw tls")
        ws.send_binary(b"\x00" * 70000)
        assert ws.recv_message() == (OP_BINARY, b"\x00" * 70000)
        ws.send_frame(OP_PING, b"p" * 125)
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"p" * 125)
        ws.send_close(1000)
        ws.expect_close(1000)


def test_wss_rt_handshake(tsrv):
    with RawWS.connect(tsrv.port, path="/rt", tls=True) as ws:
        ws.send_frame(OP_PING, b"rt")
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"rt")


@pytest.mark.parametrize("frame,code", [
    (build_frame(OP_TEXT, b"unmasked", mask=False), 1002),
    (build_frame(OP_TEXT, b"x", rsv=4), 1002),
    (build_frame(0xB, b""), 1002),
    (build_frame(OP_TEXT, b"\xff\xfe"), 1007),
])
def test_wss_malformed_frame(tsrv, frame, code):
    with RawWS.connect(tsrv.port, tls=True) as ws:
        ws.send(frame)
        ws.expect_close(code)
    wsraw.echo_roundtrip(tsrv.port, tls=True)


def test_wss_too_big_1009(tsrv):
    with RawWS.connect(tsrv.port, path="/echo_1k", tls=True) as ws:
        ws.send(build_frame(OP_BINARY, b"", length=5000))
        ws.expect_close(1009)
    wsraw.echo_roundtrip(tsrv.port, path="/echo_1k", tls=True)


def test_wss_handshake_errors(tsrv):
    resp = http_request(tsrv.port, ws_request_bytes(ws_version="7"), tls=True)
    assert_json_error(resp, 426, "UPGRADE_REQUIRED")
    assert resp.header("sec-websocket-version") == "13"
    resp = http_request(tsrv.port, ws_request_bytes(key="short"), tls=True)
    assert_json_error(resp, 400, "BAD_REQUEST")


def test_wss_bytewise(tsrv):
    with RawWS.connect(tsrv.port, tls=True) as ws:
        ws.send_bytewise(build_frame(OP_TEXT, b"tls bytes"), delay=0.002)
        assert ws.recv_message() == (OP_TEXT, b"tls bytes")


def test_plain_ws_to_tls_port_rejected(tsrv):
    """A plaintext request on the TLS port gets nginx's 400, no upgrade."""
    resp = http_request(tsrv.port, ws_request_bytes())
    assert resp.status == 400, resp
