"""realtime_allow_origin and realtime_subprotocols."""

import asyncio

import pytest
import websockets

import wsraw
from wsraw import (assert_101, assert_json_error, http_request,
                   ws_request_bytes)

pytestmark = pytest.mark.asan     # also run by make integration-asan


def hs(port, path, extra=()):
    key = wsraw.new_key()
    resp = http_request(port, ws_request_bytes(path=path, key=key,
                                               extra=list(extra)))
    return resp, key


# -- origin -----------------------------------------------------------------

@pytest.mark.parametrize("origin", [
    "https://app.example.com",          # exact
    "https://abc.good.com",             # ~ case-sensitive regex
    "https://zz.good.com",
    "https://ci.example.org",           # ~* case-insensitive regex
    "https://CI.EXAMPLE.ORG",
    "HTTPS://Ci.Example.Org",
])
def test_origin_allowed(srv, origin):
    resp, key = hs(srv.port, "/origin", [("Origin", origin)])
    assert_101(resp, key)


@pytest.mark.parametrize("origin", [
    "https://evil.example.com",
    "http://app.example.com",           # scheme differs from the exact entry
    "https://app.example.com.evil.net",
    "https://app.example.co",
    "https://ABC.good.com",             # ~ is case-sensitive
    "https://abc.good.com.evil",        # regex is anchored
    "https://ci.example.org.evil",
    "null",
])
def test_origin_forbidden(srv, origin):
    resp, _ = hs(srv.port, "/origin", [("Origin", origin)])
    assert_json_error(resp, 403, "FORBIDDEN")


def test_no_origin_header_allowed(srv):
    resp, key = hs(srv.port, "/origin")
    assert_101(resp, key)


def test_forbidden_origin_then_echo_on_allowed(srv):
    resp, _ = hs(srv.port, "/origin", [("Origin", "https://nope.test")])
    assert_json_error(resp, 403, "FORBIDDEN")
    wsraw.echo_roundtrip(srv.port, path="/origin")


@pytest.mark.parametrize("origin", ["https://anything.test", "null",
                                    "http://localhost:1234"])
def test_origin_star_allows_all(srv, origin):
    resp, key = hs(srv.port, "/origin_any", [("Origin", origin)])
    assert_101(resp, key)


@pytest.mark.parametrize("path", ["/echo", "/rt"])
def test_origin_default_allows_all(srv, path):
    resp, key = hs(srv.port, path, [("Origin", "https://whatever.invalid")])
    assert_101(resp, key)


def test_origin_with_python_client(srv):
    async def run():
        uri = "ws://127.0.0.1:%d/origin" % srv.port
        async with websockets.connect(uri, origin="https://app.example.com",
                                      open_timeout=5, close_timeout=3,
                                      ping_interval=None) as ws:
            await ws.send("origin ok")
            return await asyncio.wait_for(ws.recv(), 5)
    assert asyncio.run(asyncio.wait_for(run(), 15)) == "origin ok"

    async def bad():
        uri = "ws://127.0.0.1:%d/origin" % srv.port
        try:
            async with websockets.connect(uri, origin="https://bad.example",
                                          open_timeout=5, close_timeout=3):
                return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    assert asyncio.run(asyncio.wait_for(bad(), 15)) == 403


# -- subprotocols ---------------------------------------------------------

@pytest.mark.parametrize("offer,expected", [
    ("chat.v1, chat.v2", "chat.v2"),    # server's order wins
    ("chat.v2, chat.v1", "chat.v2"),
    ("chat.v1", "chat.v1"),
    ("chat.v2", "chat.v2"),
    ("other, chat.v1", "chat.v1"),
    ("other,chat.v1,chat.v2", "chat.v2"),
    ("other", None),
    ("chat.v3, chat", None),
])
@pytest.mark.parametrize("path", ["/sub", "/rt_sub"])
def test_subprotocol_selection(srv, path, offer, expected):
    resp, key = hs(srv.port, path, [("Sec-WebSocket-Protocol", offer)])
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") == expected, resp


def test_subprotocol_none_offered(srv):
    resp, key = hs(srv.port, "/sub")
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") is None, resp


def test_subprotocol_not_configured(srv):
    resp, key = hs(srv.port, "/echo",
                   [("Sec-WebSocket-Protocol", "chat.v1, chat.v2")])
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") is None, resp


def test_subprotocol_python_client(srv):
    async def run(protos):
        uri = "ws://127.0.0.1:%d/sub" % srv.port
        async with websockets.connect(uri, subprotocols=protos,
                                      open_timeout=5, close_timeout=3,
                                      ping_interval=None) as ws:
            await ws.send("p")
            assert await asyncio.wait_for(ws.recv(), 5) == "p"
            return ws.subprotocol
    assert asyncio.run(asyncio.wait_for(
        run(["chat.v1", "chat.v2"]), 15)) == "chat.v2"
    assert asyncio.run(asyncio.wait_for(run(["chat.v1"]), 15)) == "chat.v1"
    assert asyncio.run(asyncio.wait_for(run(["nope"]), 15)) is None
