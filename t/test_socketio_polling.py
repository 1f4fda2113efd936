"""Engine.IO long-polling and the upgrade (realtime_socketio), with the
real socket.io-client 4.8 and raw HTTP, against nginx with two workers
and reuseport: sessions shared by the workers (a GET, a POST or the
upgrade's WebSocket may land on either), the upgrade losing nothing,
CORS, and every bad request answered as Node's engine.io does.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import http_call, rt_http
from sioclient import SioDriver, node_available
from test_socketio import token

pytestmark = [
    pytest.mark.asan,
    pytest.mark.skipif(not node_available(),
                       reason="node or t/js/node_modules missing"),
]

LOCATIONS = r"""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_user $arg_user;
            realtime_client_publish on;
            realtime_allow_origin https://app.example;
        }
        location /auth/socket.io/ {
            realtime_socketio rt;
            realtime_jwt_key secret=sio-test-secret;
        }
        location /small/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_max_payload 1k;
        }
        location /fast/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_ping_interval 300ms;
            realtime_socketio_ping_timeout 200ms;
        }
        location /echo/socket.io/ {
            realtime_socketio_echo rt;
        }
"""


@pytest.fixture
def env(rt):
    rt.start(rt_http(locations=LOCATIONS))
    with SioDriver() as drv:
        rt.drv = drv
        yield rt


def url(env):
    return "http://127.0.0.1:%d" % env.port


def poll_path(path="/socket.io/", sid=None, **q):
    query = "EIO=4&transport=polling"
    if sid:
        query += "&sid=" + sid
    for k, v in q.items():
        query += "&%s=%s" % (k, v)
    return path + "?" + query


def open_session(env, path="/socket.io/", headers=None):
    r = http_call(env.port, "GET", poll_path(path), headers=headers)
    assert r.status == 200, r
    body = r.body.decode()
    assert body.startswith("0{"), body
    return json.loads(body[1:]), r


def test_handshake_packet(env):
    info, r = open_session(env)
    assert set(info) == {"sid", "upgrades", "pingInterval", "pingTimeout",
                         "maxPayload"}
    assert info["upgrades"] == ["websocket"]
    assert (info["pingInterval"], info["pingTimeout"],
            info["maxPayload"]) == (25000, 20000, 1000000)
    assert len(info["sid"]) == 30
    assert r.header("content-type").startswith("text/plain")


def test_polling_only_client(env):
    env.drv.connect("p", url(env), path="/socket.io/",
                    transports=["polling"], query={"user": "polly"})
    assert env.drv.state("p")["transport"] == "polling"
    assert env.drv.emit("p", "join", "room1") == \
        [{"room": "room1", "members": 1}]
    r = env.push({"room": "room1", "topic": "news", "payload": {"a": 1}})
    assert r.json()["delivered"] == 1, r
    assert env.drv.wait("p", "news") == [[{"a": 1}]]
    # errors as acks over polling too
    assert env.drv.emit("p", "join", "")[0]["error"]["code"] == "BAD_REQUEST"


def test_default_options_poll_then_upgrade(env):
    env.drv.connect("d", url(env), path="/socket.io/",
                    query={"user": "dora"})
    assert env.drv.wait("d", "$upgrade", timeout=5) == [["websocket"]]
    assert env.drv.state("d")["transport"] == "websocket"
    assert env.drv.emit("d", "join", "r") == [{"room": "r", "members": 1}]
    r = env.push({"room": "r", "topic": "t", "payload": 5})
    assert r.json()["delivered"] == 1
    assert env.drv.wait("d", "t") == [[5]]


def test_jwt_auth_payload_over_polling(env):
    env.drv.connect("a", url(env), path="/auth/socket.io/",
                    transports=["polling"],
                    auth={"token": "Bearer " + token("pat")})
    r = env.push({"userId": "pat", "topic": "hello", "payload": 1})
    assert r.json()["delivered"] == 1, r
    assert env.drv.wait("a", "hello") == [[1]]
    res = env.drv.connect("b", url(env), path="/auth/socket.io/",
                          transports=["polling"], auth={"token": "x"},
                          check=False)
    assert res["ok"] is False and res["data"] == {"code": "UNAUTHORIZED"}


def test_binary_both_ways_over_polling(env):
    # a client publish of binary is relayed as JSON placeholders only on
    # the echo endpoint; here: binary args reach the command parser as
    # data and are refused clearly
    env.drv.connect("b", url(env), path="/socket.io/",
                    transports=["polling"])
    ack = env.drv.emit("b", "join", b"\x00\x01")
    assert ack[0]["error"]["code"] == "BAD_REQUEST"
    assert env.drv.emit("b", "ping", {"x": 1}) == [{"x": 1}]


def test_binary_attachments_both_ways_over_polling(env):
    """BINARY_EVENT and BINARY_ACK with Buffers, as b<base64> packets of
    the polling payloads, on the suite's echo application."""
    env.drv.connect("e", url(env), path="/echo/socket.io/",
                    transports=["polling"])
    assert env.drv.wait("e", "auth") == [[{}]]
    blob = bytes(range(200))
    env.drv.emit("e", "message", blob, {"nested": [blob[:5], 1]}, ack=False)
    assert env.drv.wait("e", "message-back") == \
        [[blob, {"nested": [blob[:5], 1]}]]
    assert env.drv.emit("e", "message-with-ack", blob[:1], "t") == \
        [blob[:1], "t"]
    assert env.drv.state("e")["transport"] == "polling"


def test_many_polling_clients_across_workers(env):
    n = 24
    for i in range(n):
        env.drv.connect("c%d" % i, url(env), path="/socket.io/",
                        transports=["polling"], query={"user": "u%d" % i})
        env.drv.emit("c%d" % i, "join", "big")
    owners = {env.drv.state("c%d" % i)["sid"][:2] for i in range(n)}
    assert len(owners) == 2, owners       # sessions on both workers
    for k in range(3):
        r = env.push({"room": "big", "topic": "tick", "payload": k})
        assert r.json()["delivered"] == n, r
    for i in range(n):
        assert env.drv.wait("c%d" % i, "tick", count=3) == [[0], [1], [2]]


def test_requests_on_fresh_connections_reach_the_owner(env):
    """Every GET and POST on a new TCP connection: about half land on the
    worker that does not hold the session, all must work."""
    info, _ = open_session(env)
    sid = info["sid"]
    r = http_call(env.port, "POST", poll_path(sid=sid), body="40")
    assert r.status == 200 and r.body == b"ok", r
    r = http_call(env.port, "GET", poll_path(sid=sid))
    assert r.status == 200 and r.body.startswith(b'40{"sid":'), r
    for i in range(20):
        body = '421["ping",%d]' % i
        r = http_call(env.port, "POST", poll_path(sid=sid), body=body)
        assert r.status == 200 and r.body == b"ok", (i, r)
        r = http_call(env.port, "GET", poll_path(sid=sid))
        assert r.status == 200, (i, r)
        assert r.body.decode() == "431[%d]" % i, (i, r)


def test_published_during_upgrade_exactly_once_in_order(env):
    env.drv.connect("u", url(env), path="/socket.io/",
                    query={"user": "upgrader"})
    sent = []
    stop = time.monotonic() + 1.5

    def publish():
        n = 0
        while time.monotonic() < stop:
            r = env.push({"userId": "upgrader", "topic": "seq",
                          "payload": n})
            assert r.status == 200, r
            sent.append(n)
            n += 1

    t = threading.Thread(target=publish)
    t.start()
    t.join(10)
    assert env.drv.wait("u", "$upgrade", timeout=5) == [["websocket"]]
    got = env.drv.wait("u", "seq", count=len(sent), timeout=10)
    assert [g[0] for g in got] == sent
    assert len(sent) > 20
    time.sleep(0.2)
    assert [e for e in env.drv.events("u") if e[0] == "seq"] == []


def test_native_and_polling_sockets_of_one_user(env):
    env.drv.connect("p", url(env), path="/socket.io/",
                    transports=["polling"], query={"user": "both"})
    native = env.client("both")
    r = env.push({"userId": "both", "topic": "n", "payload": 1})
    assert r.json()["delivered"] == 2
    assert env.drv.wait("p", "n") == [[1]]
    assert native.recv()["event"] == "n"


def test_reconnection_after_the_server_closes(env):
    env.drv.connect("r", url(env), path="/socket.io/",
                    transports=["websocket"], query={"user": "rick"},
                    reconnection=True, reconnectionDelay=100,
                    reconnectionDelayMax=200)
    env.ngx.reload()
    assert env.drv.wait("r", "disconnect", timeout=10) == \
        [["transport close"]]
    env.drv.wait("r", "$connect", timeout=10)
    r = env.push({"userId": "rick", "topic": "back", "payload": True})
    assert r.json()["delivered"] == 1
    assert env.drv.wait("r", "back") == [[True]]


def test_heartbeat_over_polling(env):
    env.drv.connect("h", url(env), path="/fast/socket.io/",
                    transports=["polling"])
    time.sleep(1.6)
    assert env.drv.state("h")["connected"] is True
    assert env.drv.emit("h", "ping", 1) == [1]


def test_polling_session_expires_without_polls(env):
    info, _ = open_session(env, "/fast/socket.io/")
    time.sleep(0.8)                     # > interval + timeout
    r = http_call(env.port, "GET", poll_path("/fast/socket.io/",
                                             sid=info["sid"]))
    assert r.status == 400 and r.json() == {"code": 1,
                                            "message": "Session ID unknown"}


def test_refusals_match_node(env):
    r = http_call(env.port, "GET", "/socket.io/?EIO=3&transport=polling")
    assert r.status == 400 and r.json() == {
        "code": 5, "message": "Unsupported protocol version"}
    r = http_call(env.port, "POST", poll_path(), body="x")
    assert r.status == 400 and r.json() == {
        "code": 2, "message": "Bad handshake method"}
    for sid in ["nope", "00000000000000000000000000000X",
                "x" * 30]:
        r = http_call(env.port, "GET", poll_path(sid=sid))
        assert r.status == 400 and r.json() == {
            "code": 1, "message": "Session ID unknown"}, (sid, r)
        r = http_call(env.port, "POST", poll_path(sid=sid), body="40")
        assert r.status == 400 and r.json()["code"] == 1, (sid, r)
    info, _ = open_session(env)
    r = http_call(env.port, "PUT", poll_path(sid=info["sid"]), body="1")
    assert r.status == 400 and r.json()["code"] == 3


def test_oversize_post_is_413_and_closes(env):
    info, _ = open_session(env, "/small/socket.io/")
    sid = info["sid"]
    r = http_call(env.port, "POST", poll_path("/small/socket.io/", sid=sid),
                  body="4" + "x" * 2000)
    assert r.status == 413, r
    r = http_call(env.port, "GET", poll_path("/small/socket.io/", sid=sid))
    assert r.status == 400 and r.json()["code"] == 1


def test_concurrent_gets_close_the_session(env):
    info, _ = open_session(env)
    sid = info["sid"]
    results = {}

    def get(key):
        results[key] = http_call(env.port, "GET", poll_path(sid=sid),
                                 timeout=10)

    t = threading.Thread(target=get, args=("first",))
    t.start()
    time.sleep(0.2)
    get("second")
    t.join(10)
    assert results["second"].status == 400
    assert results["first"].status == 200 and results["first"].body == b"1"
    r = http_call(env.port, "GET", poll_path(sid=sid))
    assert r.status == 400


def test_bad_packets_over_polling(env):
    cases = [
        ("abc", 400),                     # no such Engine.IO packet
        ("4", None),                      # empty Socket.IO packet
        ("42[", None),
        ("452-[\"x\",{\"_placeholder\":true,\"num\":0}]", None),
        ("4" + "2" + "[" * 3000 + "]" * 3000, None),
        (b"42[\"ping\",\"\xff\xfe\"]", None),
        ("bAAA!", 400),
    ]
    fast = "/fast/socket.io/"
    for body, status in cases:
        info, _ = open_session(env, fast)
        sid = info["sid"]
        r = http_call(env.port, "POST", poll_path(fast, sid=sid), body="40")
        assert r.status == 200
        r = http_call(env.port, "GET", poll_path(fast, sid=sid))
        assert r.body.startswith(b"40{")
        r = http_call(env.port, "POST", poll_path(fast, sid=sid), body=body)
        if status:
            assert r.status == status, (body, r)
        else:
            assert r.status in (200, 400), (body, r)
        # whatever the answer, the next poll says what happened: an
        # error event, the close, or (waiting attachments) the ping
        r = http_call(env.port, "GET", poll_path(fast, sid=sid), timeout=5)
        assert r.status in (200, 400), (body, r)
        if r.status == 200:
            assert r.body[:1] in (b"4", b"1", b"2"), (body, r)
    # others unharmed
    env.drv.connect("ok", url(env), path="/socket.io/",
                    transports=["polling"])
    assert env.drv.emit("ok", "ping", 2) == [2]


def test_lying_attachment_count(env):
    info, _ = open_session(env)
    sid = info["sid"]
    http_call(env.port, "POST", poll_path(sid=sid), body="40")
    http_call(env.port, "GET", poll_path(sid=sid))
    # two attachments announced, one placeholder, both sent
    body = ('452-1["ping",{"_placeholder":true,"num":0}]'
            '\x1ebAQI=\x1ebAQI=')
    r = http_call(env.port, "POST", poll_path(sid=sid), body=body)
    assert r.status == 200
    r = http_call(env.port, "GET", poll_path(sid=sid))
    assert r.status == 200
    assert json.loads(r.body.decode()[3:]) == [{"error": {
        "code": "BAD_REQUEST",
        "message": "attachments do not match the placeholders"}}], r


def test_cors(env):
    ok = {"Origin": "https://app.example"}
    info, r = open_session(env, headers=ok)
    assert r.header("access-control-allow-origin") == "https://app.example"
    assert r.header("access-control-allow-credentials") == "true"
    r = http_call(env.port, "OPTIONS", poll_path(sid=info["sid"]),
                  headers=dict(ok, **{
                      "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers": "content-type"}))
    assert r.status == 204, r
    assert r.header("access-control-allow-origin") == "https://app.example"
    assert "POST" in r.header("access-control-allow-methods")
    assert r.header("access-control-allow-headers") == "content-type"
    r = http_call(env.port, "GET", poll_path(),
                  headers={"Origin": "https://evil.example"})
    assert r.status == 403 and r.json() == {"code": 4,
                                            "message": "Forbidden"}
    assert r.header("access-control-allow-origin") is None


NO_ZONE = r"""
        server {
            listen 127.0.0.1:%PORT%;
            location /socket.io/ { realtime_socketio; }
        }
"""


def test_polling_without_zone_is_a_config_error(tmp_path):
    from conftest import Nginx
    ngx = Nginx(tmp_path / "nozone")
    ngx.write_conf(NO_ZONE)
    rc, out = ngx.test_conf()
    assert rc != 0 and "needs a zone" in out, out


def test_failed_probe_leaves_polling_as_it_was(env):
    """A WebSocket that answered 3probe and went away: polls are held for
    the ping again, not answered with noops in a loop."""
    from wsraw import RawWS
    fast = "/fast/socket.io/"
    info, _ = open_session(env, fast)
    sid = info["sid"]
    raw = RawWS.connect(env.port, path=fast + "?EIO=4&transport=websocket"
                        "&sid=" + sid)
    raw.send_text("2probe")
    assert raw.recv_frame(timeout=3).payload == b"3probe"
    raw.close()
    time.sleep(0.3)
    # the ping (due every 300 ms), never a noop
    for _ in range(3):
        r = http_call(env.port, "GET", poll_path(fast, sid=sid))
        assert r.status == 200 and r.body == b"2", r
        r = http_call(env.port, "POST", poll_path(fast, sid=sid), body="3")
        assert r.status == 200


def test_upgrade_for_a_gone_session_is_refused_or_closed(env):
    from wsraw import RawWS, Closed
    info, _ = open_session(env)
    sid = info["sid"]
    r = http_call(env.port, "POST", poll_path(sid=sid), body="1")
    assert r.status == 200
    time.sleep(0.1)
    for _ in range(6):       # both workers: 400 here, or closed by relay
        try:
            raw = RawWS.connect(env.port, path="/socket.io/?EIO=4"
                                "&transport=websocket&sid=" + sid)
        except Exception as e:
            assert "400" in str(e), e
            continue
        f = raw.recv_frame(timeout=3)
        assert f.opcode == 8, f
        raw.close()


def test_invalid_probe_packet_fails_only_the_upgrade(env):
    from wsraw import RawWS
    info, _ = open_session(env)
    sid = info["sid"]
    raw = RawWS.connect(env.port, path="/socket.io/?EIO=4"
                        "&transport=websocket&sid=" + sid)
    raw.send_text("zzz")
    f = raw.recv_frame(timeout=3)
    assert f.opcode == 8, f
    raw.close()
    # the polling session is alive
    r = http_call(env.port, "POST", poll_path(sid=sid), body="40")
    assert r.status == 200 and r.body == b"ok", r
    r = http_call(env.port, "GET", poll_path(sid=sid))
    assert r.status == 200 and r.body.startswith(b"40{"), r


def _server_pid_of(port, client_port):
    """The worker that holds the server side of the client's connection
    from client_port (ss -tnp)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established",
                          "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if (":%d " % client_port) in line + " ":
            m = re.search(r"pid=(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def _relayed_websocket(env, path):
    """A polling session and its upgrade's WebSocket on the other worker,
    upgraded: (raw, owner pid, relay pid)."""
    from wsraw import RawWS
    for attempt in range(40):
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
        conn.request("GET", poll_path(path))
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200 and body.startswith("0{"), body
        owner = _server_pid_of(env.port, conn.sock.getsockname()[1])
        sid = json.loads(body[1:])["sid"]
        raw = RawWS.connect(env.port, path=path + "?EIO=4&transport="
                            "websocket&sid=" + sid)
        relay = _server_pid_of(env.port, raw.sock.getsockname()[1])
        conn.close()
        if owner and relay and owner != relay:
            break
        raw.close()
    else:
        pytest.fail("no upgrade landed on the other worker")

    raw.send_text("2probe")
    f = raw.recv_frame(timeout=3)
    assert f.opcode == 1 and f.payload == b"3probe", f
    raw.send_text("5")
    return raw, owner, relay


def test_relayed_frame_too_big_for_the_owner_closes_1009(env):
    """The owner's queue in the zone (4m / 8 / 2 workers: 256k) bounds a
    relayed frame: one that could never pass closes with 1009, not with
    1001 as if the owner were gone; the owner serves others."""
    import struct
    raw, owner, relay = _relayed_websocket(env, "/socket.io/")
    raw.send_text("4" + "x" * 200000)
    while True:
        f = raw.recv_frame(timeout=3)
        if f.opcode == 8:
            break
    assert struct.unpack("!H", f.payload[:2])[0] == 1009, f
    raw.close()
    info, _ = open_session(env)
    assert info["sid"]


def test_relayed_websocket_of_a_killed_owner_is_closed(env):
    """A session's WebSocket relayed by another worker: when the owner is
    SIGKILLed, no heartbeat comes through the relay any more, and the
    relay closes the silent socket after a ping's round (300 + 200 ms)."""
    import struct
    from wsraw import Closed
    raw, owner, relay = _relayed_websocket(env, "/fast/socket.io/")
    code = None

    env.allowed_bad.append(r"exited on signal 9")
    os.kill(owner, signal.SIGKILL)
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 5:
        try:
            f = raw.recv_frame(timeout=5 - (time.monotonic() - t0))
        except Closed:
            closed = True
            break
        except TimeoutError:
            break
        if f.opcode == 8:
            closed = True
            code = struct.unpack("!H", f.payload[:2])[0]
            break
    waited = time.monotonic() - t0
    # closed by the relay's silence (1000), not by a failed post (1001)
    assert closed and code == 1000 and 0.3 < waited < 3, (waited, f)
    assert "relayed engine.io socket silent" in env.ngx.error_log()
    raw.close()
    # the relaying worker lives on, and new sessions are served
    assert relay in env.ngx.worker_pids()
    info, _ = open_session(env)
    assert info["sid"]
