"""RFC 6455 section 4.2 opening handshake, answered by nginx."""

import base64

import pytest

import wsraw
from wsraw import (assert_101, assert_json_error, http_request,
                   ws_request_bytes)

pytestmark = pytest.mark.asan     # also run by make integration-asan

ENDPOINTS = ["/echo", "/rt"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_valid_handshake(srv, path):
    key = wsraw.new_key()
    resp = http_request(srv.port, ws_request_bytes(path=path, key=key))
    assert_101(resp, key)
    assert resp.header("sec-websocket-protocol") is None, resp


def test_accept_key_rfc_example(srv):
    # the sample nonce from RFC 6455 section 1.3
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    resp = http_request(srv.port, ws_request_bytes(key=key))
    assert resp.status == 101, resp
    assert resp.header("sec-websocket-accept") == \
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("upgrade", ["websocket", "WebSocket", "WEBSOCKET"])
def test_upgrade_value_case_insensitive(srv, upgrade):
    key = wsraw.new_key()
    resp = http_request(srv.port, ws_request_bytes(key=key, upgrade=upgrade))
    assert_101(resp, key)


@pytest.mark.parametrize("connection", [
    "Upgrade", "upgrade", "UPGRADE", "keep-alive, Upgrade",
    "Upgrade, keep-alive", "keep-alive,upgrade", "close, UpGrAdE, foo"])
def test_connection_token_list(srv, connection):
    key = wsraw.new_key()
    resp = http_request(srv.port,
                        ws_request_bytes(key=key, connection=connection))
    assert_101(resp, key)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_handshake_then_echo_or_alive(srv, path):
    with wsraw.RawWS.connect(srv.port, path=path) as ws:
        ws.send_frame(wsraw.OP_PING, b"alive?")
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload, f.fin) == (wsraw.OP_PONG, b"alive?", True)
        ws.send_close(1000)
        ws.expect_close(1000)


# -- 426 ------------------------------------------------------------------

@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("version", ["8", "12", "14", "0", "abc", None])
def test_bad_version_426(srv, path, version):
    resp = http_request(srv.port, ws_request_bytes(path=path,
                                                   ws_version=version))
    assert_json_error(resp, 426, "UPGRADE_REQUIRED")
    assert resp.header("sec-websocket-version") == "13", resp


@pytest.mark.parametrize("path", ENDPOINTS)
def test_plain_get_426(srv, path):
    raw = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
           % path).encode()
    resp = http_request(srv.port, raw)
    assert_json_error(resp, 426, "UPGRADE_REQUIRED")
    assert (resp.header("upgrade") or "").lower() == "websocket", resp
    assert resp.header("sec-websocket-version") == "13", resp


def test_plain_get_http10_without_upgrade(srv):
    """HTTP/1.0 is never a valid upgrade: 400 (or 426 since it carries no
    Upgrade header at all); the answer must still be a JSON error."""
    raw = b"GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n"
    resp = http_request(srv.port, raw)
    assert resp.status in (400, 426), resp
    assert_json_error(resp, resp.status,
                      "BAD_REQUEST" if resp.status == 400
                      else "UPGRADE_REQUIRED")


# -- 400 ------------------------------------------------------------------

BAD_KEYS = [
    ("not-base64", "!!!!notbase64!!!!!!!!!=="),
    ("15-bytes", base64.b64encode(b"x" * 15).decode()),
    ("17-bytes", base64.b64encode(b"x" * 17).decode()),
    ("empty", ""),
    ("32-bytes", base64.b64encode(b"y" * 32).decode()),
    ("truncated", "dGhlIHNhbXBsZSBub25jZQ="),
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("name,key", BAD_KEYS, ids=[k[0] for k in BAD_KEYS])
def test_bad_key_400(srv, path, name, key):
    resp = http_request(srv.port, ws_request_bytes(path=path, key=key))
    assert_json_error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_missing_key_400(srv, path):
    resp = http_request(srv.port, ws_request_bytes(path=path, omit=("key",)))
    assert_json_error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("upgrade", ["h2c", "websocket2", "web socket"])
def test_upgrade_not_websocket_400(srv, upgrade):
    resp = http_request(srv.port, ws_request_bytes(upgrade=upgrade))
    assert_json_error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("connection", ["keep-alive", "close", "upgraded",
                                        "keep-alive, upgrades"])
def test_connection_without_upgrade_token_400(srv, connection):
    resp = http_request(srv.port, ws_request_bytes(connection=connection))
    assert_json_error(resp, 400, "BAD_REQUEST")


def test_missing_connection_header_400(srv):
    resp = http_request(srv.port, ws_request_bytes(omit=("connection",)))
    assert_json_error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_non_get_400(srv, method):
    resp = http_request(srv.port, ws_request_bytes(method=method))
    assert_json_error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_http10_upgrade_400(srv, path):
    resp = http_request(srv.port, ws_request_bytes(path=path,
                                                   version="HTTP/1.0"))
    assert_json_error(resp, 400, "BAD_REQUEST")


def test_error_keeps_other_locations_untouched(srv):
    raw = b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    resp = http_request(srv.port, raw)
    assert resp.status == 200 and resp.body == b"plain\n", resp


def test_handshake_request_split_bytewise(srv):
    key = wsraw.new_key()
    s = wsraw.open_socket(srv.port)
    try:
        raw = ws_request_bytes(key=key)
        for i in range(0, len(raw), 7):
            s.sendall(raw[i:i + 7])
        resp = wsraw.read_response(s)
        assert_101(resp, key)
        ws = wsraw.RawWS(s, resp, key)
        ws.send_text("after split handshake")
        assert ws.recv_message() == (wsraw.OP_TEXT, b"after split handshake")
    finally:
        s.close()


def test_frame_in_same_packet_as_handshake(srv):
    """A client may pipeline its first frame right behind the request."""
    key = wsraw.new_key()
    s = wsraw.open_socket(srv.port)
    try:
        s.sendall(ws_request_bytes(key=key)
                  + wsraw.build_frame(wsraw.OP_TEXT, b"pipelined"))
        resp = wsraw.read_response(s)
        assert_101(resp, key)
        ws = wsraw.RawWS(s, resp, key)
        assert ws.recv_message() == (wsraw.OP_TEXT, b"pipelined")
    finally:
        s.close()
