"""The access log of a WebSocket handshake: the request is logged when the
connection is upgraded, after the 101 and the frames queued with it (the
welcome, Engine.IO's open packet) have been written, so $bytes_sent is the
101 and those frames, $body_bytes_sent the frames alone, as the client
received them. Plain TCP and TLS, two workers.
"""

import re
import time

import pytest

from conftest import rt_http, self_signed_cert, wait_until
from wsraw import (OP_PING, OP_PONG, OP_TEXT, build_frame, open_socket,
                   parse_frame, ws_request_bytes)

pytestmark = pytest.mark.asan

LOG_FORMAT = r"""
    log_format rtlog escape=none
        '$status $bytes_sent $body_bytes_sent $request_time $request_uri';
"""

LINE_RE = re.compile(r"^(\d+) (\d+) (\d+) (\d+\.\d+) (\S+)$")


@pytest.fixture
def env(rt, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    tls = r"""
    server {
        listen 127.0.0.1:%%PORT2%% ssl;
        server_name tls;
        ssl_certificate %s;
        ssl_certificate_key %s;
        access_log %%PREFIX%%/rt_access.log rtlog;
        location /ws { realtime rt; realtime_user $arg_user; }
    }
""" % (cert, key)
    rt.start(rt_http(
        http_extra=LOG_FORMAT + tls,
        server_extra="access_log %PREFIX%/rt_access.log rtlog;",
        locations="""
        location = /echo { realtime_echo; }
        location /socket.io/ { realtime_socketio rt; }
"""))
    return rt


def handshake(port, path, frames, tls=False, early=b""):
    """The bytes of the 101 and of the first `frames` frames the server
    sends, as received: (header length, [frame lengths], [frames])."""
    s = open_socket(port, tls=tls)
    try:
        s.sendall(ws_request_bytes(path=path) + early)
        buf = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, buf
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        lens, got = [], []
        rest = bytearray(rest)
        while len(got) < frames:
            f, n = parse_frame(rest)
            if f is None:
                assert time.monotonic() < deadline, rest
                chunk = s.recv(65536)
                assert chunk, rest
                rest += chunk
                continue
            got.append(f)
            lens.append(n)
            del rest[:n]
        s.sendall(build_frame(0x8, b"\x03\xe8"))
        return len(head) + 4, lens, got
    finally:
        s.close()


def log_line(env, uri):
    """The access log's line for uri, parsed (waits for the worker)."""
    path = env.ngx.prefix / "rt_access.log"

    def find():
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            m = LINE_RE.match(line)
            if m and m.group(5) == uri:
                return m
        return None

    m = wait_until(find, 5)
    assert m, (uri, path.read_text() if path.exists() else None)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)),
            float(m.group(4)))


def test_welcome_counted_in_bytes_sent(env):
    uri = "/ws?user=alice"
    hlen, lens, frames = handshake(env.port, uri, 1)
    assert frames[0].opcode == OP_TEXT
    assert b'"welcome"' in frames[0].payload, frames[0].payload
    status, sent, body, rtime = log_line(env, uri)
    assert status == 101
    assert sent == hlen + lens[0]
    assert body == lens[0]
    assert 0 <= rtime < 5


def test_echo_101_alone(env):
    """No frame is queued with the 101 of an echo location."""
    hlen, _, _ = handshake(env.port, "/echo?n=1", 0)
    status, sent, body, _ = log_line(env, "/echo?n=1")
    assert (status, sent, body) == (101, hlen, 0)


def test_socketio_open_packet_counted(env):
    uri = "/socket.io/?EIO=4&transport=websocket"
    hlen, lens, frames = handshake(env.port, uri, 1)
    assert frames[0].payload.startswith(b'0{"sid":'), frames[0].payload
    status, sent, body, _ = log_line(env, uri)
    assert (status, sent, body) == (101, hlen + lens[0], lens[0])


def test_tls_counts_the_same(env):
    uri = "/ws?user=tls"
    hlen, lens, frames = handshake(env.ngx.port2, uri, 1, tls=True)
    assert b'"welcome"' in frames[0].payload
    status, sent, body, _ = log_line(env, uri)
    assert (status, sent, body) == (101, hlen + lens[0], lens[0])


@pytest.mark.parametrize("tls", [False, True])
def test_early_frame_answered_after_the_log(env, tls):
    """A ping sent right behind the handshake is answered in a later
    write: the log counts the 101 and the welcome only, and the pong
    still comes."""
    uri = "/ws?user=early%d" % tls
    port = env.ngx.port2 if tls else env.port
    hlen, lens, frames = handshake(port, uri, 2, tls=tls,
                                   early=build_frame(OP_PING, b"hi"))
    assert b'"welcome"' in frames[0].payload
    assert (frames[1].opcode, frames[1].payload) == (OP_PONG, b"hi")
    status, sent, body, _ = log_line(env, uri)
    assert (status, sent, body) == (101, hlen + lens[0], lens[0])
