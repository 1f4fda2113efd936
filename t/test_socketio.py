"""Socket.IO v5 over Engine.IO v4 (realtime_socketio), driven by the real
npm socket.io-client 4.8 (t/js, t/sioclient.py) against nginx with two
workers: namespaces, JWT from the auth payload, the built-in events and
their acks, pushes and client publishes reaching Socket.IO and native
members of one room, binary, and the HTTP refusals of Node's engine.io.
"""

import base64
import hashlib
import hmac
import json
import time

import pytest

from conftest import http_call, rt_http
from sioclient import SioDriver, SioError, node_available

pytestmark = [
    pytest.mark.asan,
    pytest.mark.skipif(not node_available(),
                       reason="node or t/js/node_modules missing"),
]

SECRET = "sio-test-secret"

SIO_LOCATIONS = r"""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_socketio_namespaces / /admin;
            realtime_client_publish on;
            realtime_presence on;
            realtime_user $arg_user;
        }
        location /auth/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_jwt_key secret=%s;
            realtime_jwt_token $arg_token;
            realtime_jwt_rooms_claim rooms;
        }
        location /fast/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_socketio_ping_interval 300ms;
            realtime_socketio_ping_timeout 200ms;
        }
        location /echo/socket.io/ {
            realtime_socketio_echo;
            realtime_socketio_transports websocket;
        }
""" % SECRET


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(sub, exp_in=3600, **claims):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = dict(claims, sub=sub)
    if exp_in is not None:
        body["exp"] = int(time.time()) + exp_in
    payload = b64url(json.dumps(body).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (header, payload)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (header, payload, b64url(sig))


@pytest.fixture
def env(rt):
    rt.start(rt_http(locations=SIO_LOCATIONS))
    with SioDriver() as drv:
        rt.drv = drv
        yield rt


def url(env, path=""):
    return "http://127.0.0.1:%d%s" % (env.port, path)


def connect(env, name, nsp="", user=None, path="/socket.io/", **opts):
    query = dict(opts.pop("query", {}))
    if user:
        query["user"] = user
    return env.drv.connect(name, url(env, nsp), path=path,
                           transports=["websocket"], query=query, **opts)


def test_connect_websocket_and_builtin_acks(env):
    info = connect(env, "a", user="alice")
    assert info["transport"] == "websocket"
    assert len(info["id"]) == 20

    ack = env.drv.emit("a", "join", "room1", ack=True)
    assert ack == [{"room": "room1", "members": 1}]
    assert env.drv.emit("a", "join", {"room": "room2"}) == \
        [{"room": "room2", "members": 1}]
    assert env.drv.emit("a", "presence", "room1") == \
        [{"room": "room1", "users": ["alice"]}]
    assert env.drv.emit("a", "leave", "room2") == \
        [{"room": "room2", "members": 0}]
    assert env.drv.emit("a", "ping", {"t": 1}) == [{"t": 1}]


def test_errors_are_acks_or_error_events(env):
    connect(env, "a", user="alice")
    assert env.drv.emit("a", "join", "bad room!") == [{"error": {
        "code": "BAD_REQUEST",
        "message": "a room name is 1-128 bytes of letters, digits and "
                   "_-:.@/#"}}]
    assert env.drv.emit("a", "nope", 1)[0]["error"]["code"] == \
        "INVALID_EVENT"
    assert env.drv.emit("a", "leave", "never")[0]["error"]["code"] == \
        "BAD_REQUEST"
    # without an ack the error is an "error" event
    env.drv.emit("a", "join", 42, ack=False)
    ev = env.drv.wait("a", "error")
    assert ev == [[{"code": "BAD_REQUEST",
                    "message": "\"data.room\" must be a string"}]]
    # the socket still works
    assert env.drv.emit("a", "join", "ok")[0]["members"] == 1


def test_push_and_publish_reach_socketio_and_native(env):
    connect(env, "a", user="alice")
    connect(env, "b", user="bob")
    env.drv.emit("a", "join", "game")
    env.drv.emit("b", "join", "game")
    native = env.client("carol")
    native.join("game")

    r = env.push({"room": "game", "topic": "tick", "payload": {"n": 1}})
    assert r.status == 200, r
    assert env.drv.wait("a", "tick") == [[{"n": 1}]]
    assert env.drv.wait("b", "tick") == [[{"n": 1}]]
    ev = native.recv()
    assert ev["event"] == "tick" and ev["data"] == {"n": 1}

    # a Socket.IO client publishes; the native member gets the envelope
    ack = env.drv.emit("a", "publish",
                       {"room": "game", "event": "move", "data": [1, 2]})
    assert ack == [{"room": "game", "recipients": 2}]
    assert env.drv.wait("b", "move") == [[[1, 2]]]
    ev = native.recv()
    assert ev["event"] == "move" and ev["data"] == [1, 2]
    assert ev["from"] == "alice"

    # a native publish reaches the Socket.IO members
    native.publish("game", "chat", {"m": "hi"})
    assert env.drv.wait("a", "chat") == [[{"m": "hi"}]]
    assert env.drv.wait("b", "chat") == [[{"m": "hi"}]]


def test_user_with_native_and_socketio_sockets_gets_push_on_both(env):
    connect(env, "a", user="dave")
    native = env.client("dave")
    r = env.push({"userId": "dave", "topic": "note", "payload": {"x": 1}})
    assert r.status == 200 and r.json()["delivered"] == 2, r
    assert env.drv.wait("a", "note") == [[{"x": 1}]]
    ev = native.recv()
    assert ev["event"] == "note" and ev["data"] == {"x": 1}


def test_many_clients_across_workers(env):
    for i in range(20):
        connect(env, "c%d" % i, user="u%d" % i)
        env.drv.emit("c%d" % i, "join", "big")
    pids = env.two_pids()
    assert len(pids) == 2
    r = env.push({"room": "big", "topic": "all", "payload": 7})
    assert r.json()["delivered"] == 20, r
    for i in range(20):
        assert env.drv.wait("c%d" % i, "all") == [[7]]


def test_namespaces_multiplexed(env):
    connect(env, "root", user="erin")
    connect(env, "adm", nsp="/admin", user="erin")
    env.drv.emit("root", "join", "r")
    env.drv.emit("adm", "join", "r")
    r = env.push({"room": "r", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 2, r
    assert env.drv.wait("root", "t") == [[1]]
    assert env.drv.wait("adm", "t") == [[1]]

    res = env.drv.connect("x", url(env, "/nope"), path="/socket.io/",
                          transports=["websocket"], check=False)
    assert res["ok"] is False and res["error"] == "Invalid namespace"


def test_client_disconnects_one_namespace(env):
    connect(env, "root", user="fay")
    connect(env, "adm", nsp="/admin", user="fay")
    env.drv.emit("root", "join", "r")
    env.drv.emit("adm", "join", "r")
    env.drv.disconnect("adm")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = env.push({"room": "r", "topic": "t", "payload": 1})
        if r.json()["delivered"] == 1:
            break
        time.sleep(0.05)
    assert r.json()["delivered"] == 1, r
    assert env.drv.state("root")["connected"] is True
    assert env.drv.wait("root", "t")[0] == [1]


def test_refresh_and_rate_limit_over_socketio(rt):
    rt.start(rt_http(locations=r"""
        location /auth/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_jwt_key secret=%s;
        }
        location /slow/socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_rate_limit 1r/s burst=1;
        }
    """ % SECRET))
    base = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("a", base, path="/auth/socket.io/",
                    transports=["websocket"],
                    auth={"token": token("ref", exp_in=60)})
        ack = drv.emit("a", "refresh", {"token": token("ref", exp_in=600)})
        assert set(ack[0]) == {"exp"} and ack[0]["exp"] > time.time() + 500
        ack = drv.emit("a", "refresh", {"token": "junk"})
        assert ack[0]["error"]["code"] == "UNAUTHORIZED"

        # the third message in a row is over 1r/s burst=1: its ack says so
        drv.connect("b", base, path="/slow/socket.io/",
                    transports=["websocket"])
        assert drv.emit("b", "ping", 0) == [0]
        assert drv.emit("b", "ping", 1) == [1]
        assert drv.emit("b", "ping", 2) == [{"error": {
            "code": "RATE_LIMITED", "message": "too many messages"}}]


def test_jwt_from_auth_payload(env):
    p = "/auth/socket.io/"
    info = connect(env, "a", path=p, auth={"token": "Bearer " + token("u1")})
    assert info["id"]
    connect(env, "b", path=p, auth={"token": token("u2", rooms=["r*"])})
    assert env.drv.emit("b", "join", "r1")[0]["members"] == 1
    assert env.drv.emit("b", "join", "x1")[0]["error"]["code"] == \
        "FORBIDDEN"

    res = env.drv.connect("c", url(env), path=p, transports=["websocket"],
                          auth={"token": "garbage"}, check=False)
    assert res["ok"] is False
    assert res["data"] == {"code": "UNAUTHORIZED"}

    res = env.drv.connect("d", url(env), path=p, transports=["websocket"],
                          auth={"token": token("u3", exp_in=-100)},
                          check=False)
    assert res["ok"] is False
    assert res["data"] == {"code": "TOKEN_EXPIRED"}

    res = env.drv.connect("e", url(env), path=p, transports=["websocket"],
                          check=False)
    assert res["ok"] is False and res["error"] == "token is missing"

    # a token in the handshake request works too
    info = env.drv.connect("f", url(env), path=p, transports=["websocket"],
                           query={"token": token("u4")})
    assert info["id"]
    # and a bad one there is refused before the upgrade
    res = env.drv.connect("g", url(env), path=p, transports=["websocket"],
                          query={"token": "bad"}, check=False)
    assert res["ok"] is False


def test_expired_token_disconnects_namespace(env):
    p = "/auth/socket.io/"
    connect(env, "a", path=p, auth={"token": token("u1", exp_in=2)})
    ev = env.drv.wait("a", "disconnect", timeout=6)
    assert ev == [["io server disconnect"]]


def test_heartbeat_keeps_session_alive(env):
    connect(env, "a", path="/fast/socket.io/")
    time.sleep(1.5)        # five ping intervals
    assert env.drv.state("a")["connected"] is True
    assert env.drv.events("a") == []


def test_binary_echo(env):
    p = "/echo/socket.io/"
    connect(env, "a", path=p)
    assert env.drv.wait("a", "auth") == [[{}]]
    blob = bytes(range(256))
    env.drv.emit("a", "message", 1, blob, {"k": blob[:3]}, ack=False)
    ev = env.drv.wait("a", "message-back")
    assert ev == [[1, blob, {"k": blob[:3]}]]
    assert env.drv.emit("a", "message-with-ack", "x", blob) == ["x", blob]


def test_engineio_refusals_match_node(env):
    def call(query, method="GET"):
        return http_call(env.port, method, "/socket.io/?" + query)

    r = call("EIO=3&transport=websocket")
    assert r.status == 400 and r.json() == {
        "code": 5, "message": "Unsupported protocol version"}
    r = call("transport=websocket")
    assert r.status == 400 and r.json()["code"] == 5
    r = call("EIO=4&transport=carrier-pigeon")
    assert r.status == 400 and r.json() == {
        "code": 0, "message": "Transport unknown"}
    # polling is not enabled on this location
    r = call("EIO=4&transport=polling")
    assert r.status == 400 and r.json()["code"] == 0


def test_malformed_packets_close_only_that_session(env):
    from wsraw import RawWS
    connect(env, "good", user="g")
    env.drv.emit("good", "join", "keep")

    for bad in ["4", "9", "42[", "4{}", "45-[\"a\"]", "40/nsp-no-comma[1]",
                "4" + "2" + "[" * 5000 + "]" * 5000,
                b"\xff\xfe".decode("latin-1")]:
        raw = RawWS.connect(env.port,
                            path="/socket.io/?EIO=4&transport=websocket")
        assert raw.recv_frame(timeout=3).payload.startswith(b"0{")
        raw.send_text("40")
        assert raw.recv_frame(timeout=3).payload.startswith(b"40{\"sid\":")
        raw.send_text(bad)
        # a clear end: the session is closed (or the packet answered)
        got = raw.recv_frame(timeout=3)
        assert got is not None
        raw.close()

    r = env.push({"room": "keep", "topic": "still", "payload": True})
    assert r.json()["delivered"] == 1
    assert env.drv.wait("good", "still") == [[True]]
