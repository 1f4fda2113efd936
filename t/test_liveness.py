"""realtime_ping_interval, realtime_idle_timeout, realtime_send_buffer."""

import os
import select
import socket
import time

import pytest

import wsraw
from wsraw import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWS

F = wsraw.build_frame


def conf(directives):
    return r"""
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /echo { realtime_echo; %s }
        location = /rt { realtime; %s }
    }
    """ % (directives, directives)


def wait_server_ping(ws, within):
    """Waits for a server PING (any other frame fails). Returns the time
    it arrived (monotonic)."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no server ping within %.1fs" % within
        try:
            f = ws.recv_frame(timeout=remaining)
        except socket.timeout:
            raise AssertionError("no server ping within %.1fs" % within)
        assert f.opcode == OP_PING, "unexpected frame %r" % (f,)
        assert f.fin and f.rsv == 0 and not f.masked
        assert len(f.payload) <= 125
        return time.monotonic(), f


# -- ping interval ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/rt", "/echo"])
def test_server_pings_at_interval(nginx_factory, path):
    ngx = nginx_factory(conf("realtime_ping_interval 1s; "
                             "realtime_idle_timeout 10s;"))
    with RawWS.connect(ngx.port, path=path) as ws:
        t0 = time.monotonic()
        t1, f1 = wait_server_ping(ws, 2.5)
        ws.send(F(OP_PONG, f1.payload))
        t2, f2 = wait_server_ping(ws, 2.5)
        ws.send(F(OP_PONG, f2.payload))
        assert t1 - t0 >= 0.5, "first ping came too early (%.2fs)" % (t1 - t0)
        assert 0.5 <= t2 - t1 <= 2.0, "pings %.2fs apart" % (t2 - t1)
        # still a working connection
        ws.send(F(OP_PING, b"mine"))
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"mine")


def test_default_ping_interval_not_short(nginx_factory):
    """Default is 25s: no ping within the first 1.5s."""
    ngx = nginx_factory(conf(""))
    with RawWS.connect(ngx.port, path="/rt") as ws:
        with pytest.raises(socket.timeout):
            ws.recv_frame(timeout=1.5)


# -- idle timeout ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/rt", "/echo"])
def test_idle_timeout_closes_1001(nginx_factory, path):
    ngx = nginx_factory(conf("realtime_ping_interval 10s; "
                             "realtime_idle_timeout 1s;"))
    with RawWS.connect(ngx.port, path=path) as ws:
        t0 = time.monotonic()
        ws.expect_close(1001, timeout=3.0, tcp_timeout=1.5,
                        reason=b"idle timeout", reply=True)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.8, "closed after only %.2fs" % elapsed
    with RawWS.connect(ngx.port, path="/echo") as ws:
        ws.send_text("fresh")
        assert ws.recv_message() == (OP_TEXT, b"fresh")


def test_idle_timeout_silent_client_dropped(nginx_factory):
    """A client that does not even answer the close frame is dropped
    (TCP closed) within a bounded time."""
    ngx = nginx_factory(conf("realtime_ping_interval 10s; "
                             "realtime_idle_timeout 1s;"))
    with RawWS.connect(ngx.port, path="/rt") as ws:
        ws.expect_close(1001, timeout=3.0, tcp_timeout=5.0,
                        reason=b"idle timeout")


def test_client_pings_keep_connection_alive(nginx_factory):
    ngx = nginx_factory(conf("realtime_ping_interval 10s; "
                             "realtime_idle_timeout 1s;"))
    with RawWS.connect(ngx.port, path="/rt") as ws:
        t_end = time.monotonic() + 2.4
        i = 0
        while time.monotonic() < t_end:
            ws.send(F(OP_PING, b"k%d" % i))
            f = ws.recv_data_frame(timeout=1.0)
            assert (f.opcode, f.payload) == (OP_PONG, b"k%d" % i), f
            i += 1
            time.sleep(0.3)
        # alive past 2 * idle_timeout: nothing pending, still usable
        ws.send(F(OP_PING, b"end"))
        f = ws.recv_data_frame(timeout=1.0)
        assert (f.opcode, f.payload) == (OP_PONG, b"end")
    with RawWS.connect(ngx.port, path="/echo") as ws:
        t_end = time.monotonic() + 2.2
        i = 0
        while time.monotonic() < t_end:
            ws.send_text("m%d" % i)
            assert ws.recv_message(timeout=1.0) == (OP_TEXT, b"m%d" % i)
            i += 1
            time.sleep(0.3)


def test_pongs_to_server_pings_keep_alive(nginx_factory):
    """Answering the server's pings counts as client activity."""
    ngx = nginx_factory(conf("realtime_ping_interval 1s; "
                             "realtime_idle_timeout 2s;"))
    with RawWS.connect(ngx.port, path="/rt") as ws:
        t_end = time.monotonic() + 3.3
        n = 0
        while time.monotonic() < t_end:
            _, f = wait_server_ping(ws, 2.0)
            ws.send(F(OP_PONG, f.payload))
            n += 1
        assert n >= 2
        ws.send(F(OP_PING, b"alive"))
        f = ws.recv_data_frame(timeout=1.0)
        assert (f.opcode, f.payload) == (OP_PONG, b"alive")


@pytest.mark.asan
def test_idle_timeout_mid_fragmented_message(nginx_factory):
    ngx = nginx_factory(conf("realtime_ping_interval 10s; "
                             "realtime_idle_timeout 1s;"))
    with RawWS.connect(ngx.port, path="/echo") as ws:
        ws.send(F(OP_TEXT, b"never finished", fin=False))
        ws.expect_close(1001, timeout=3.0, tcp_timeout=1.5,
                        reason=b"idle timeout", reply=True)


# -- send buffer ------------------------------------------------------------

@pytest.mark.asan
def test_send_buffer_overflow_closes_slow_reader(nginx_factory):
    ngx = nginx_factory(conf("realtime_send_buffer 64k; "
                             "realtime_max_message_size 1m; "
                             "realtime_ping_interval 10s; "
                             "realtime_idle_timeout 30s;"))
    good = RawWS.connect(ngx.port, path="/echo")
    slow = RawWS.connect(ngx.port, path="/echo", rcvbuf=32768)
    try:
        good.send_text("before")
        assert good.recv_message() == (OP_TEXT, b"before")

        msg = F(OP_BINARY, os.urandom(60 * 1024))
        slow.sock.setblocking(False)
        deadline = time.monotonic() + 10.0
        closed_by_rst = False
        pending = b""
        stalled_since = None
        sent = 0
        while time.monotonic() < deadline:
            _, w, x = select.select([], [slow.sock], [slow.sock], 0.2)
            if not w:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 3.0:
                    break               # writes blocked for 3s: go drain
                continue
            stalled_since = None
            if not pending:
                pending = msg
            try:
                n = slow.sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                closed_by_rst = True
                break
            except BlockingIOError:
                continue
            pending = pending[n:]
            sent += n
        assert sent > 64 * 1024, "could only send %d bytes" % sent

        # other clients are unaffected (the slow one is stuck or gone)
        good.send_binary(b"\x07" * 5000)
        assert good.recv_message() == (OP_BINARY, b"\x07" * 5000)

        if not closed_by_rst:
            # the server may have queued the close frame behind the
            # unread echoes: drain everything (bounded) and look at it
            slow.sock.setblocking(True)
            data = bytearray()
            end = time.monotonic() + 5.0
            eof = False
            while time.monotonic() < end:
                slow.sock.settimeout(max(0.01, end - time.monotonic()))
                try:
                    chunk = slow.sock.recv(1 << 20)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    eof = True
                    break
                if not chunk:
                    eof = True
                    break
                data += chunk
            assert eof, ("server did not close the non-reading client within "
                         "the test's bounds (sent %d bytes, drained %d)"
                         % (sent, len(data)))
            frames, _ = wsraw.parse_all_frames(data)
            closes = [f for f in frames if f.opcode == OP_CLOSE]
            if closes:
                assert closes[-1].close_code == 1008, closes[-1]
                assert frames[-1].opcode == OP_CLOSE, \
                    "data after the close frame"
        # fresh clients keep working too
        wsraw.echo_roundtrip(ngx.port)
        good.send_text("after")
        assert good.recv_message() == (OP_TEXT, b"after")
    finally:
        good.close()
        slow.close()


@pytest.mark.asan
def test_send_buffer_slow_reader_visible_1008(nginx_factory):
    """The client floods without reading, then stops and drains: after the
    echoes that were already in the kernel buffers, the last frame must be
    close 1008, followed by the server closing TCP."""
    ngx = nginx_factory(conf("realtime_send_buffer 64k; "
                             "realtime_ping_interval 10s; "
                             "realtime_idle_timeout 30s;"))
    payload = b"\xab" * (60 * 1024)
    slow = RawWS.connect(ngx.port, path="/echo", rcvbuf=16384)
    try:
        msg = F(OP_BINARY, payload)
        slow.sock.settimeout(5.0)
        sent_msgs = 0
        for _ in range(120):                # 7.2 MB: far past any buffer
            slow.sock.sendall(msg)
            sent_msgs += 1
        data = bytearray()
        eof = False
        replied = False
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            slow.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = slow.sock.recv(1 << 20)
            except socket.timeout:
                break
            if not chunk:
                eof = True
                break
            data += chunk
            frames, rest = wsraw.parse_all_frames(data)
            if not replied and frames and frames[-1].opcode == OP_CLOSE:
                # answer like a real client, then expect the hang-up
                slow.send_close(frames[-1].close_code or 1000)
                replied = True
        frames, rest = wsraw.parse_all_frames(data)
        assert frames, "nothing received (%d bytes)" % len(data)
        assert frames[-1].opcode == OP_CLOSE, (
            "last frame is not a close: %r (%d frames, eof=%s)"
            % (frames[-1][:4], len(frames), eof))
        assert frames[-1].close_code == 1008, frames[-1]
        assert rest == b"", "bytes after the close frame"
        for f in frames[:-1]:
            assert f.opcode == OP_BINARY and f.fin and f.payload == payload
        assert len(frames) - 1 < sent_msgs
        assert eof, "server did not close TCP after close 1008"
    finally:
        slow.close()
    wsraw.echo_roundtrip(ngx.port)
