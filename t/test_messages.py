"""Data messages on realtime_echo: echo, fragmentation, ping/pong, UTF-8,
message size limits."""

import asyncio
import os
import random
import time

import pytest
import websockets

import wsraw
from wsraw import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                   RawWS, build_frame)

pytestmark = pytest.mark.asan     # also run by make integration-asan

F = build_frame


def expect_single_frame(ws, opcode, payload, timeout=5.0):
    """The echo must be one unfragmented, unmasked frame, RSV clear."""
    f = ws.recv_data_frame(timeout=timeout)
    assert f.opcode == opcode, (f.opcode, f.payload[:80])
    assert f.fin, "echo is fragmented"
    assert f.rsv == 0, f
    assert not f.masked
    assert len(f.payload) == len(payload)
    assert f.payload == payload


# -- basic echo ---------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    "hello", "", "\u00e9\u00e8 \u4e16\u754c \U0001F600", "x" * 125, "y" * 126,
    "z" * 65535, "w" * 65536, "\x00nul inside"])
def test_text_echo(srv, payload):
    with RawWS.connect(srv.port) as ws:
        ws.send_text(payload)
        expect_single_frame(ws, OP_TEXT, payload.encode())


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 100000])
def test_binary_echo(srv, n):
    data = os.urandom(n)
    with RawWS.connect(srv.port) as ws:
        ws.send_binary(data)
        expect_single_frame(ws, OP_BINARY, data)


def test_binary_invalid_utf8_is_fine(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send_binary(b"\xff\xfe\xc0\xaf\xed\xa0\x80")
        expect_single_frame(ws, OP_BINARY, b"\xff\xfe\xc0\xaf\xed\xa0\x80")


def test_many_messages_one_write_in_order(srv):
    msgs = [("m%03d" % i).encode() * (i % 7 + 1) for i in range(60)]
    with RawWS.connect(srv.port) as ws:
        ws.send(b"".join(F(OP_TEXT if i % 2 else OP_BINARY, m)
                         for i, m in enumerate(msgs)))
        for i, m in enumerate(msgs):
            assert ws.recv_message() == (OP_TEXT if i % 2 else OP_BINARY, m)


def test_zero_mask_key(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"zero mask", mask_key=b"\x00\x00\x00\x00"))
        expect_single_frame(ws, OP_TEXT, b"zero mask")


# -- fragmentation ------------------------------------------------------------

def test_fragmented_text_with_pings(srv):
    parts = [b"Hel", b"lo, ", "w\u00f6rld".encode(), b"!"]
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, parts[0], fin=False))
        ws.send(F(OP_PING, b"p1"))
        ws.send(F(OP_CONT, parts[1], fin=False))
        ws.send(F(OP_PING, b""))
        ws.send(F(OP_CONT, parts[2], fin=False))
        ws.send(F(OP_PONG, b"unsolicited"))
        ws.send(F(OP_CONT, parts[3], fin=True))
        f1 = ws.recv_data_frame()
        f2 = ws.recv_data_frame()
        assert (f1.opcode, f1.payload) == (OP_PONG, b"p1")
        assert (f2.opcode, f2.payload) == (OP_PONG, b"")
        expect_single_frame(ws, OP_TEXT, b"".join(parts))


def test_fragmented_binary_with_empty_fragments(srv):
    chunks = [os.urandom(10), b"", os.urandom(300), b"", os.urandom(70000)]
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_BINARY, chunks[0], fin=False))
        for c in chunks[1:-1]:
            ws.send(F(OP_CONT, c, fin=False))
            ws.send(F(OP_PING, b"mid"))
            f = ws.recv_data_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"mid")
        ws.send(F(OP_CONT, chunks[-1], fin=True))
        expect_single_frame(ws, OP_BINARY, b"".join(chunks))


def test_fragmented_all_empty(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"", fin=False) + F(OP_CONT, b"", fin=False)
                + F(OP_CONT, b""))
        expect_single_frame(ws, OP_TEXT, b"")


def test_many_fragments(srv):
    pieces = [("%04d|" % i).encode() for i in range(300)]
    data = b"".join([F(OP_TEXT, pieces[0], fin=False)]
                    + [F(OP_CONT, p, fin=False) for p in pieces[1:-1]]
                    + [F(OP_CONT, pieces[-1])])
    with RawWS.connect(srv.port) as ws:
        ws.send(data)
        expect_single_frame(ws, OP_TEXT, b"".join(pieces))


def test_utf8_codepoint_split_across_fragments(srv):
    text = "a\u20ac\U0001F600b".encode()      # 1 + 3 + 4 + 1 bytes
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, text[:2], fin=False))     # a + 1/3 of euro
        ws.send(F(OP_CONT, text[2:5], fin=False))    # 2/3 euro + 1/4 emoji
        ws.send(F(OP_PING, b"between"))
        ws.send(F(OP_CONT, text[5:7], fin=False))
        ws.send(F(OP_CONT, text[7:]))
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"between")
        expect_single_frame(ws, OP_TEXT, text)


# -- ping / pong --------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"x", os.urandom(60), b"\xff" * 125,
                                     bytes(range(125))])
def test_ping_pong_identical_payload(srv, payload):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_PING, payload))
        f = ws.recv_data_frame()
        assert f.opcode == OP_PONG and f.fin and f.rsv == 0, f
        assert f.payload == payload


def test_many_pings_answered_in_order(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(b"".join(F(OP_PING, b"%d" % i) for i in range(20)))
        for i in range(20):
            f = ws.recv_data_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"%d" % i)


def test_split_pings_answered_whole(srv):
    """Control frames in pieces are put together (the buffer for that is
    only allocated then); whole ones after them still answer exactly."""
    payloads = [bytes(range(125)), b"second split", b"whole", b"\xff" * 125]
    with RawWS.connect(srv.port) as ws:
        for i, payload in enumerate(payloads):
            frame = F(OP_PING, payload)
            if i == 2:
                ws.send(frame)
            else:
                # header apart, then the payload in two writes
                for part in (frame[:3], frame[3:40], frame[40:]):
                    ws.send(part)
                    time.sleep(0.02)
            f = ws.recv_data_frame()
            assert (f.opcode, f.payload) == (OP_PONG, payload), (i, f)
        ws.send_text("after pings")
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_TEXT, b"after pings"), f


def test_unsolicited_pong_ignored(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_PONG, b"nobody asked") + F(OP_PONG, b""))
        ws.send_text("after pong")
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_TEXT, b"after pong"), f


# -- byte-at-a-time delivery -------------------------------------------------

def test_bytewise_frames(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send_bytewise(F(OP_TEXT, "bytewise \u00e9".encode()), delay=0.003)
        expect_single_frame(ws, OP_TEXT, "bytewise \u00e9".encode())
        data = os.urandom(200)                      # 16-bit length form
        ws.send_bytewise(F(OP_BINARY, data), delay=0.001)
        expect_single_frame(ws, OP_BINARY, data)
        ws.send_bytewise(F(OP_PING, b"pp"), delay=0.003)
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"pp")


def test_bytewise_64bit_header(srv):
    data = os.urandom(70000)
    frame = F(OP_BINARY, data)
    with RawWS.connect(srv.port) as ws:
        ws.send_bytewise(frame[:14], delay=0.003)    # 2 + 8 + 4 mask
        ws.send(frame[14:])
        expect_single_frame(ws, OP_BINARY, data)


def test_random_tcp_segmentation(srv):
    rnd = random.Random(6455)
    msgs = [os.urandom(rnd.randrange(0, 3000)) for _ in range(20)]
    stream = b"".join(F(OP_BINARY, m) for m in msgs)
    with RawWS.connect(srv.port) as ws:
        pos = 0
        while pos < len(stream):
            n = rnd.randrange(1, 700)
            ws.send(stream[pos:pos + n])
            pos += n
            time.sleep(0.001)
        for m in msgs:
            assert ws.recv_message() == (OP_BINARY, m)


# -- UTF-8 validation ----------------------------------------------------------

INVALID_UTF8 = [
    ("ff", b"\xff"),
    ("fe", b"ab\xfe"),
    ("stray-continuation", b"\x80abc"),
    ("overlong-slash", b"\xc0\xaf"),
    ("overlong-3byte", b"\xe0\x80\xaf"),
    ("surrogate", b"\xed\xa0\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"),
    ("5-byte", b"\xf8\x88\x80\x80\x80"),
    ("truncated-at-end", b"abc\xe2\x82"),
    ("bad-continuation", b"\xe2\x28\xa1"),
]


@pytest.mark.parametrize("name,payload", INVALID_UTF8,
                         ids=[n for n, _ in INVALID_UTF8])
def test_invalid_utf8_text_1007(srv, name, payload):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, payload))
        ws.expect_close(1007)
    wsraw.echo_roundtrip(srv.port)


def test_invalid_utf8_split_across_fragments_1007(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"ab\xe2\x82", fin=False))   # valid prefix so far
        ws.send(F(OP_CONT, b"\x28rest"))                # not a continuation
        ws.expect_close(1007)
    wsraw.echo_roundtrip(srv.port)


def test_incomplete_utf8_at_message_end_1007(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"ab", fin=False))
        ws.send(F(OP_CONT, b"\xf0\x9f\x98"))            # 3/4 of an emoji
        ws.expect_close(1007)
    wsraw.echo_roundtrip(srv.port)


@pytest.mark.parametrize("bad", [b"ok\xff", b"\xc0\xaf", b"\xed\xa0\x80"])
def test_invalid_utf8_fail_fast_first_fragment(srv, bad):
    """1007 arrives before the client sends the rest of the message."""
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, bad, fin=False))
        t0 = time.monotonic()
        ws.expect_close(1007, timeout=2.0)
        assert time.monotonic() - t0 < 2.0
    wsraw.echo_roundtrip(srv.port)


def test_invalid_utf8_fail_fast_middle_fragment(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"fine ", fin=False))
        ws.send(F(OP_CONT, b"still fine \xe2\x82\xac", fin=False))
        ws.send(F(OP_CONT, b"\xfe", fin=False))
        ws.expect_close(1007, timeout=2.0)
    wsraw.echo_roundtrip(srv.port)


# -- message size limit -------------------------------------------------------

def test_limit_exact_size_allowed(srv):
    data = os.urandom(1024)
    with RawWS.connect(srv.port, path="/echo_1k") as ws:
        ws.send_binary(data)
        expect_single_frame(ws, OP_BINARY, data)
        ws.send(F(OP_TEXT, b"a" * 512, fin=False) + F(OP_CONT, b"b" * 512))
        expect_single_frame(ws, OP_TEXT, b"a" * 512 + b"b" * 512)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_limit_declared_length_1009(srv, opcode):
    """Only the header is sent: the server must not wait for (buffer) the
    payload before failing."""
    with RawWS.connect(srv.port, path="/echo_1k") as ws:
        ws.send(F(opcode, b"", length=1025))
        ws.expect_close(1009, timeout=2.0)
    wsraw.echo_roundtrip(srv.port, path="/echo_1k")


def test_limit_accumulated_fragments_1009(srv):
    with RawWS.connect(srv.port, path="/echo_1k") as ws:
        ws.send(F(OP_BINARY, b"a" * 600, fin=False))
        ws.send(F(OP_CONT, b"", length=600, fin=True))   # header only
        ws.expect_close(1009, timeout=2.0)
    wsraw.echo_roundtrip(srv.port, path="/echo_1k")


def test_limit_accumulated_many_small_fragments_1009(srv):
    with RawWS.connect(srv.port, path="/echo_1k") as ws:
        data = b"".join(F(OP_TEXT if i == 0 else OP_CONT, b"x" * 100,
                          fin=False) for i in range(11))
        try:
            ws.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        ws.expect_close(1009, timeout=2.0)
    wsraw.echo_roundtrip(srv.port, path="/echo_1k")


def test_control_frames_do_not_count_toward_limit(srv):
    with RawWS.connect(srv.port, path="/echo_1k") as ws:
        ws.send(F(OP_TEXT, b"a" * 1000, fin=False))
        for i in range(3):
            ws.send(F(OP_PING, b"p" * 125))
            f = ws.recv_data_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"p" * 125)
        ws.send(F(OP_CONT, b"b" * 24))
        expect_single_frame(ws, OP_TEXT, b"a" * 1000 + b"b" * 24)


@pytest.mark.parametrize("length", [1048577, 2000000, 1 << 40, 1 << 62])
def test_default_limit_1m_declared_1009(srv, length):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_BINARY, b"", length=length))
        ws.expect_close(1009, timeout=2.0)
    wsraw.echo_roundtrip(srv.port)


# /echo has all defaults (1m messages, 256k send buffer): a client that
# reads must still get a 1,000,000-byte echo.  /echo_bigbuf raises the send
# buffer to 4m to check the echo path itself.
BIG_PATHS = ["/echo", "/echo_bigbuf"]


@pytest.mark.parametrize("path", BIG_PATHS)
def test_default_limit_exact_1m_echoed(srv, path):
    data = os.urandom(1048576)
    with RawWS.connect(srv.port, path=path) as ws:
        ws.send_binary(data)
        expect_single_frame(ws, OP_BINARY, data, timeout=10)


@pytest.mark.parametrize("path", BIG_PATHS)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_big_message_echoed(srv, opcode, path):
    data = (b"0123456789abcdef" * 62500) if opcode == OP_TEXT \
        else os.urandom(1000000)
    with RawWS.connect(srv.port, path=path) as ws:
        ws.send(F(opcode, data))
        expect_single_frame(ws, opcode, data, timeout=10)


@pytest.mark.parametrize("n", [200000, 262144, 300000])
def test_message_around_default_send_buffer_echoed(srv, n):
    data = os.urandom(n)
    with RawWS.connect(srv.port) as ws:
        ws.send_binary(data)
        expect_single_frame(ws, OP_BINARY, data, timeout=10)


@pytest.mark.parametrize("path", BIG_PATHS)
def test_big_fragmented_message_echoed(srv, path):
    data = os.urandom(1000000)
    q = len(data) // 4
    with RawWS.connect(srv.port, path=path) as ws:
        ws.send(F(OP_BINARY, data[:q], fin=False))
        ws.send(F(OP_CONT, data[q:2 * q], fin=False))
        ws.send(F(OP_PING, b"big"))
        ws.send(F(OP_CONT, data[2 * q:3 * q], fin=False))
        ws.send(F(OP_CONT, data[3 * q:]))
        f = ws.recv_data_frame(timeout=10)
        assert (f.opcode, f.payload) == (OP_PONG, b"big")
        expect_single_frame(ws, OP_BINARY, data, timeout=10)


def test_big_fragmented_over_default_limit_1009(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_BINARY, b"\x01" * 600000, fin=False))
        try:
            ws.send(F(OP_CONT, b"\x02" * 600000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        ws.expect_close(1009, timeout=3.0)
    wsraw.echo_roundtrip(srv.port)


# -- strict client (python websockets) ----------------------------------------

def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_python_client_echo(srv):
    async def go():
        uri = "ws://127.0.0.1:%d/echo" % srv.port
        async with websockets.connect(uri, open_timeout=5, close_timeout=3,
                                      ping_interval=None,
                                      max_size=None) as ws:
            out = []
            for m in ["text \u00e9", b"\x00\x01binary", "", b"",
                      "t" * 200000, os.urandom(200000)]:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 10)
                out.append(got == m and type(got) is type(m))
            # fragmented send from an iterable
            await ws.send(["frag", "mented ", "\u00fcml"])
            out.append(await asyncio.wait_for(ws.recv(), 5)
                       == "fragmented \u00fcml")
            await ws.send([b"\x01", b"", b"\x02\x03"])
            out.append(await asyncio.wait_for(ws.recv(), 5) == b"\x01\x02\x03")
            pong_waiter = await ws.ping(b"strict")
            await asyncio.wait_for(pong_waiter, 5)
            await ws.close(1000, "done")
            out.append(ws.close_code == 1000)
            return out
    assert run(go()) == [True] * 9


@pytest.mark.parametrize("path", BIG_PATHS)
def test_python_client_big_message(srv, path):
    async def go():
        uri = "ws://127.0.0.1:%d%s" % (srv.port, path)
        async with websockets.connect(uri, open_timeout=5, close_timeout=3,
                                      ping_interval=None,
                                      max_size=None) as ws:
            m = os.urandom(1000000)
            await ws.send(m)
            return await asyncio.wait_for(ws.recv(), 10) == m
    assert run(go()) is True


def test_python_client_concurrent(srv):
    async def one(i):
        uri = "ws://127.0.0.1:%d/echo" % srv.port
        async with websockets.connect(uri, open_timeout=5, close_timeout=3,
                                      ping_interval=None) as ws:
            for j in range(20):
                msg = "client %d msg %d" % (i, j)
                await ws.send(msg)
                if await asyncio.wait_for(ws.recv(), 5) != msg:
                    return False
            return True

    async def go():
        return await asyncio.gather(*(one(i) for i in range(10)))
    assert run(go()) == [True] * 10


def test_python_client_sees_1009(srv):
    async def go():
        uri = "ws://127.0.0.1:%d/echo_1k" % srv.port
        async with websockets.connect(uri, open_timeout=5, close_timeout=3,
                                      ping_interval=None) as ws:
            await ws.send(b"x" * 2000)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.exceptions.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
            return "no close"
    assert run(go()) == 1009
