"""realtime_deflate: permessage-deflate (RFC 7692).  The offers answered
(always with no context takeover, the server's window as asked), client
messages inflated (whole or fragmented, from python3-websockets and the
npm socket.io-client too), publications deflated once per window and
shared, short or incompressible frames sent as they are; every bad input
closed with its code (RSV bits where they may not be 1002, a stream that
is not deflate or not UTF-8 1007, a zip bomb 1009 within the worker's
memory) while the other clients go on."""

import asyncio
import json
import os
import socket
import zlib

import pytest
import websockets

from conftest import RtClient, http_call, rt_http
from sioclient import SioDriver, node_available
from wsraw import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RawWS, build_frame

pytestmark = pytest.mark.asan

ANSWER = ("permessage-deflate; server_no_context_takeover; "
          "client_no_context_takeover")
RSV1 = 4        # wsraw's rsv is the three bits as a number

LOCATIONS = """
        location /echo {
            realtime_echo;
            realtime_deflate on;
            realtime_max_message_size 1m;
        }
        location /plain {
            realtime_echo;
        }
        location /sio/socket.io/ {
            realtime_socketio_echo;
            realtime_socketio_transports websocket;
            realtime_deflate on;
        }
"""


def conf():
    return rt_http(ws_extra="realtime_deflate on;", locations=LOCATIONS)


def packed(data, bits=15):
    """A message as a client compresses it: raw deflate, the sync
    flush's 00 00 ff ff dropped."""
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def unpacked(data, bits=15):
    d = zlib.decompressobj(-bits)
    return d.decompress(data + b"\x00\x00\xff\xff")


def connect(port, path="/echo", offer="permessage-deflate"):
    extra = [("Sec-WebSocket-Extensions", offer)] if offer else None
    return RawWS.connect(port, path=path, extra_headers=extra)


def answer_to(port, offer, path="/echo"):
    ws = connect(port, path, offer)
    try:
        return ws.response.header("sec-websocket-extensions")
    finally:
        ws.close()


def message(ws, bits=15):
    """One message as its frames came: (opcode, compressed?, payload
    inflated)."""
    f = ws.recv_data_frame()
    assert f.fin, f
    if f.rsv == RSV1:
        return f.opcode, True, unpacked(f.payload, bits)
    assert f.rsv == 0, f
    return f.opcode, False, f.payload


def test_offers_answered(rt):
    ngx = rt.start(conf())
    cases = [
        ("permessage-deflate", ANSWER),
        ("permessage-deflate; client_max_window_bits", ANSWER),
        ("permessage-deflate; server_no_context_takeover; "
         "client_max_window_bits=10", ANSWER),
        ("permessage-deflate; server_max_window_bits=10",
         ANSWER + "; server_max_window_bits=10"),
        # 8 bits cannot be made: the next offer is taken
        ("permessage-deflate; server_max_window_bits=8, "
         "permessage-deflate", ANSWER),
        ("x-webkit-deflate-frame, permessage-deflate; "
         "server_max_window_bits=\"12\"",
         ANSWER + "; server_max_window_bits=12"),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; client_no_context_takeover; "
         "client_no_context_takeover", None),
        ("permessage-deflate;;", None),
        ("x-webkit-deflate-frame", None),
    ]
    for offer, want in cases:
        assert answer_to(ngx.port, offer) == want, offer
    # off where realtime_deflate is not on
    assert answer_to(ngx.port, "permessage-deflate", "/plain") is None


def test_echo_compressed_both_ways(rt):
    ngx = rt.start(conf())
    text = json.dumps([{"event": "move", "x": i, "y": i * 2}
                       for i in range(300)]).encode()
    with connect(ngx.port) as ws:
        ws.send_frame(OP_TEXT, packed(text), rsv=RSV1)
        assert message(ws) == (OP_TEXT, True, text)

        # a short one goes back as it is; one sent uncompressed too
        ws.send_frame(OP_TEXT, packed(b"hi"), rsv=RSV1)
        assert message(ws) == (OP_TEXT, False, b"hi")
        ws.send_text("x" * 500)
        assert message(ws) == (OP_TEXT, True, b"x" * 500)

        # noise that deflate does not shrink is sent uncompressed
        noise = os.urandom(3000)
        ws.send_frame(OP_BINARY, packed(noise), rsv=RSV1)
        assert message(ws) == (OP_BINARY, False, noise)

        # fragmented: RSV1 on the first frame only, a ping in between
        z = packed(text)
        ws.send(build_frame(OP_TEXT, z[:100], fin=False, rsv=RSV1)
                + build_frame(OP_PING, b"p")
                + build_frame(OP_CONT, z[100:200], fin=False)
                + build_frame(OP_CONT, z[200:]))
        f = ws.recv_frame()
        assert f.opcode == 0xA and f.rsv == 0 and f.payload == b"p", f
        assert message(ws) == (OP_TEXT, True, text)

        # an empty compressed message, and one with no bytes at all
        ws.send_frame(OP_TEXT, b"\x00", rsv=RSV1)
        assert message(ws) == (OP_TEXT, False, b"")
        ws.send_frame(OP_TEXT, b"", rsv=RSV1)
        assert message(ws) == (OP_TEXT, False, b"")


def test_server_window_as_asked(rt):
    """With server_max_window_bits=9 what comes back inflates with a
    512-byte window: the repeats here are further apart than that."""
    ngx = rt.start(conf())
    block = os.urandom(700)
    data = block * 6
    sizes = {}
    for bits in (9, 15):
        offer = "permessage-deflate; server_max_window_bits=%d" % bits
        with connect(ngx.port, offer=offer) as ws:
            ws.send_binary(data)
            f = ws.recv_data_frame()
            # a 9-bit inflater fails on a distance past 512 bytes
            assert f.rsv == RSV1 and unpacked(f.payload, bits) == data
            sizes[bits] = len(f.payload)
            ws.send_binary(block[:300] * 20)
            assert message(ws, bits) == (OP_BINARY, True, block[:300] * 20)
    # the 15-bit window finds the repeats 700 bytes back, 9 bits cannot
    assert sizes[15] < 1000 < 3500 < sizes[9], sizes


def test_python_websockets_client(rt):
    """python3-websockets offers permessage-deflate by default, with
    client_max_window_bits, and takes the answer's no context takeover."""
    ngx = rt.start(conf())
    big = json.dumps({"rows": [[i, "cell %d" % i] for i in range(2000)]})

    async def run():
        uri = "ws://127.0.0.1:%d/echo" % ngx.port
        async with websockets.connect(uri, compression="deflate",
                                      max_size=2 ** 21) as ws:
            assert [e.name for e in ws.extensions] == ["permessage-deflate"]
            for m in (big, "short", big[:70000].encode(), big):
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), 5) == m

    asyncio.run(run())


@pytest.mark.parametrize("name,frames,code", [
    ("rsv1 on a continuation",
     [(OP_TEXT, b"ab", False, 0), (OP_CONT, b"cd", True, RSV1)], 1002),
    ("rsv1 on a ping", [(OP_PING, b"p", True, RSV1)], 1002),
    ("rsv2", [(OP_TEXT, b"ab", True, 2)], 1002),
    ("rsv3 with rsv1", [(OP_TEXT, packed(b"ab"), True, RSV1 | 1)], 1002),
    ("not deflate", [(OP_TEXT, b"\x07\x00garbage", True, RSV1)], 1007),
    ("cut short", [(OP_TEXT, packed(b"x" * 1000)[:-3], True, RSV1)], 1007),
    ("text not UTF-8 once inflated",
     [(OP_TEXT, packed(b"ok \xff\xfe"), True, RSV1)], 1007),
    ("binary not UTF-8 is fine, then a zip bomb",
     [(OP_BINARY, packed(b"\xff\xfe" * 100), True, RSV1),
      (OP_BINARY, packed(bytes(20 * 1024 * 1024)), True, RSV1)], 1009),
])
def test_bad_input_is_closed(rt, name, frames, code):
    ngx = rt.start(conf())
    bystander = connect(ngx.port)
    with connect(ngx.port) as ws:
        for op, payload, fin, rsv in frames:
            ws.send(build_frame(op, payload, fin=fin, rsv=rsv))
        if name.startswith("binary"):
            assert message(ws) == (OP_BINARY, True, b"\xff\xfe" * 100)
        ws.expect_close(code)
    # the other client goes on
    bystander.send_text("still " * 20)
    assert message(bystander) == (OP_TEXT, True, b"still " * 20)
    bystander.close()


def test_rsv1_where_not_negotiated(rt):
    ngx = rt.start(conf())
    for path, offer in (("/plain", "permessage-deflate"), ("/echo", None)):
        with connect(ngx.port, path, offer) as ws:
            ws.send_frame(OP_TEXT, packed(b"hello"), rsv=RSV1)
            ws.expect_close(1002)


def worker_rss_kb(ngx):
    total = 0
    for pid in ngx.worker_pids():
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def test_zip_bomb_is_bounded(rt):
    """256 MB of zeros in 256 KB on the wire: closed with 1009 once the
    inflated size passes realtime_max_message_size (1m here), the
    workers' memory not grown by more than a few megabytes, each bomb
    answered at once."""
    ngx = rt.start(conf())
    bomb = packed(bytes(256 * 1024 * 1024))
    assert len(bomb) < 300 * 1024
    before = worker_rss_kb(ngx)
    for _ in range(3):
        with connect(ngx.port) as ws:
            ws.send_frame(OP_BINARY, bomb, rsv=RSV1)
            ws.expect_close(1009)
    grown = worker_rss_kb(ngx) - before
    # (under ASan freed memory waits in its quarantine: not counted)
    if not os.environ.get("NGX_REALTIME_PRELOAD"):
        assert grown < 8 * 1024, "workers grew by %d KB" % grown
    # and a message just under the limit still goes through
    with connect(ngx.port) as ws:
        ws.send_frame(OP_BINARY, packed(bytes(1024 * 1024 - 1)), rsv=RSV1)
        op, compressed, out = message(ws)
        assert (op, compressed, len(out)) == (OP_BINARY, True, 1024 * 1024 - 1)


class DeflateClient(RtClient):
    """The native protocol on a raw socket that may have negotiated
    permessage-deflate: what comes compressed is inflated."""

    def __init__(self, raw, bits=15):
        self.bits = bits
        super().__init__(raw)

    def recv(self, timeout=3.0):
        f = self.raw.recv_data_frame(timeout=timeout)
        assert f.fin and f.opcode == OP_TEXT, f
        body = unpacked(f.payload, self.bits) if f.rsv == RSV1 else f.payload
        return json.loads(body)

    def drain(self):
        """presence events of the joins, until quiet"""
        while True:
            try:
                m = self.recv(timeout=0.3)
            except socket.timeout:
                return
            assert m["event"].startswith("presence"), m


def test_publication_deflated_once_and_shared(rt):
    """Members on both workers, with and without the extension and with
    two windows: each gets the push in the form it negotiated; the
    default-window ones get the very same bytes."""
    ngx = rt.start(conf())
    members = []

    def member(offer, user, bits=15):
        c = DeflateClient(connect(ngx.port, "/ws?user=" + user, offer), bits)
        rt.clients.append(c)
        members.append(c)
        assert c.join("r")["event"] == "joined"
        return c

    # both workers hold members
    while len({c.pid for c in members}) < 2 and len(members) < 40:
        member("permessage-deflate", "x%d" % len(members))
    assert len({c.pid for c in members}) == 2
    member("permessage-deflate; client_max_window_bits", "b")
    member("permessage-deflate; server_max_window_bits=9", "w9", 9)
    plain = member(None, "plain")
    for c in members:
        c.drain()

    payload = {"board": [[i, j] for i in range(30) for j in range(10)]}
    r = http_call(ngx.port, "POST", "/sendPayload", json.dumps(
        {"room": "r", "topic": "state", "payload": payload}),
        {"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["delivered"] == len(members), r.body

    frames = {}
    for c in members:
        f = c.raw.recv_data_frame()
        frames[c.user] = f
        body = unpacked(f.payload, c.bits) if f.rsv == RSV1 else f.payload
        assert json.loads(body) == {"event": "state", "room": "r",
                                    "data": payload}, c.user
    # the same bytes on both workers, for every default-window member
    assert len({frames[c.user].payload for c in members
                if c.bits == 15 and c is not plain}) == 1
    assert all(frames[c.user].rsv == RSV1 for c in members if c is not plain)
    assert frames["plain"].rsv == 0
    assert len(frames["b"].payload) < len(frames["plain"].payload) / 3

    # a short publication goes uncompressed to everyone
    r = http_call(ngx.port, "POST", "/sendPayload", json.dumps(
        {"room": "r", "topic": "t", "payload": 1}),
        {"Content-Type": "application/json"})
    assert r.status == 200, r.body
    for c in members:
        f = c.raw.recv_data_frame()
        assert f.rsv == 0 and json.loads(f.payload)["event"] == "t", f


@pytest.mark.skipif(not node_available(), reason="node or t/js missing")
def test_socketio_client_with_deflate(rt):
    """The npm socket.io-client (engine.io-client over ws, which offers
    permessage-deflate and compresses from 1 KB): a big event each way."""
    ngx = rt.start(conf())
    big = "x" * 3000 + json.dumps(list(range(1000)))
    with SioDriver() as drv:
        drv.connect("a", "http://127.0.0.1:%d/" % ngx.port,
                    path="/sio/socket.io/", transports=["websocket"])
        assert drv.emit("a", "message-with-ack", big, "small") == \
            [big, "small"]
