"""realtime_join_on_connect with variables: the room a client names in its
handshake URL ($arg_room), joined before the 101 as a join command would
be: URL-decoded, checked as a room name, against the token's rooms claim
and the rooms-per-connection limit; a refusal is the handshake's JSON
answer and leaves nothing in the zone. Two workers. nginx -t refuses the
variables in a Socket.IO location, whose CONNECT has no handshake URL.
"""

import socket
import time
import urllib.parse

import jwt
import pytest

from conftest import Nginx, MODULE, RtClient, rt_http, wait_until
from test_jwt import SECRET, claims
from wsraw import RawWS, assert_json_error, http_request, ws_request_bytes

pytestmark = pytest.mark.asan

LIVE = r"""
        location /live {
            realtime rt;
            realtime_jwt_key secret=%s;
            realtime_jwt_rooms_claim rooms;
            realtime_presence on;
            realtime_max_rooms_per_connection 2;
            realtime_join_on_connect "user:{user}" $arg_room $arg_also
                                     $arg_third;
        }
""" % SECRET


@pytest.fixture
def env(rt):
    rt.start(rt_http(locations=LIVE))
    return rt


def token(user, rooms=("game:*",)):
    return jwt.encode(claims(user, rooms=list(rooms)), SECRET, "HS256")


def live_path(user, rooms=("game:*",), **args):
    q = {"token": token(user, rooms)}
    q.update(args)
    return "/live?" + urllib.parse.urlencode(q)


def live(env, user, **args):
    raw = RawWS.connect(env.port, path=live_path(user, **args))
    try:
        c = RtClient(raw)
    except Exception:
        raw.close()
        raise
    env.clients.append(c)
    return c


def live_on(env, pid, user, **args):
    """A /live client held by worker pid."""
    before = env.health()["connections"]
    for _ in range(40):
        c = live(env, user, **args)
        if c.pid == pid:
            env.wait_settled(before + 1)
            return c
        c.close()
        env.wait_settled(before)
    raise AssertionError("no connection on worker %d" % pid)


def drain(c, timeout=0.3):
    """The events c has been sent (live_on's tries bring presence ones)."""
    evs = []
    try:
        while True:
            evs.append(c.recv(timeout))
    except socket.timeout:
        return evs


def test_room_from_the_url_on_both_workers(env):
    pids = env.two_pids()
    watcher = env.client("watcher")
    watcher.join("game:1")

    # "game:1" as a browser's URLSearchParams sends it: "game%3A1"
    a = live_on(env, pids[0], "ann", room="game:1")
    assert a.user == "ann"
    b = live_on(env, pids[1], "ben", room="game:1")
    assert {"event": "presence:join",
            "data": {"room": "game:1", "userId": "ben"}} in drain(a)
    drain(b)
    assert drain(watcher)[-1] == {"event": "presence:join",
                                  "data": {"room": "game:1",
                                           "userId": "ben"}}

    # a newcomer's join is told to the members, on both workers
    cy = live(env, "cy", room="game:1")
    for c in (watcher, a, b):
        assert c.recv() == {"event": "presence:join",
                            "data": {"room": "game:1", "userId": "cy"}}

    # joined before the welcome: the first push after it reaches all
    r = env.push({"room": "game:1", "topic": "move", "payload": {"x": 1}})
    assert r.status == 200 and r.json()["delivered"] == 4, r
    for c in (a, b, cy, watcher):
        ev = c.recv()
        assert ev["event"] == "move" and ev["data"] == {"x": 1}, ev

    # the configured room beside it, and the user room of each
    r = env.push({"room": "user:ben", "topic": "dm", "payload": 2})
    assert r.json()["delivered"] == 1
    assert b.recv()["event"] == "dm"

    # a socket leaves its URL room as any other when it goes
    cy.close()
    assert watcher.recv() == {"event": "presence:leave",
                              "data": {"room": "game:1", "userId": "cy"}}
    r = env.push({"room": "game:1", "topic": "move", "payload": 2})
    assert r.json()["delivered"] == 3


def test_no_room_named_joins_none(env):
    c = live(env, "cat")
    r = env.push({"room": "user:cat", "topic": "dm", "payload": 1})
    assert r.json()["delivered"] == 1
    assert c.recv()["event"] == "dm"
    # an empty argument is no room either
    d = live(env, "dan", room="")
    assert d.user == "dan"
    r = env.push({"room": "game:", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 0


def test_two_arguments_and_the_limit(env):
    c = live(env, "eve", room="game:a", also="game:b")
    for room in ("game:a", "game:b"):
        assert env.push({"room": room, "topic": "t",
                         "payload": 1}).json()["delivered"] == 1
        assert c.recv()["room"] == room
    c.close()
    # its close is seen before the count is taken
    before = env.wait_settled(0)
    # three rooms named, two allowed (realtime_max_rooms_per_connection)
    r = http_request(env.port, ws_request_bytes(
        path=live_path("eve", room="game:a", also="game:b",
                       third="game:c")))
    assert_json_error(r, 429, "ROOM_LIMIT")
    after = env.wait_settled(0)
    assert (after["rooms"], after["users"]) == (before["rooms"],
                                                before["users"]), \
        (before, after)


@pytest.mark.parametrize("args, status, code", [
    ({"room": "bad room!"}, 400, "BAD_REQUEST"),
    ({"room": "x" * 200}, 400, "BAD_REQUEST"),
    ({"room": "%%%"}, 400, "BAD_REQUEST"),
    ({"room": "%00game:1"}, 400, "BAD_REQUEST"),
    ({"room": "lobby"}, 403, "FORBIDDEN"),
    ({"room": "game:1", "also": "chat:1"}, 403, "FORBIDDEN"),
    ({"room": "game:1", "also": "bad room"}, 400, "BAD_REQUEST"),
])
def test_bad_rooms_are_refused_and_leave_nothing(env, args, status, code):
    bystander = env.client("by")
    bystander.join("game:1")
    before = env.health()

    # quote() leaves "%" alone: the server sees these bytes as they are
    q = "&".join("%s=%s" % (k, urllib.parse.quote(v, safe="%:"))
                 for k, v in args.items())
    path = "/live?token=%s&%s" % (token("mallory"), q)
    r = http_request(env.port, ws_request_bytes(path=path))
    assert_json_error(r, status, code)

    # nothing of the refused socket stays: no connection, no member, no
    # presence event for the bystander
    after = env.wait_settled(before["connections"])
    assert after["rooms"] == before["rooms"], (before, after)
    bystander.assert_silent(0.3)
    r = env.push({"room": "game:1", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 1
    assert bystander.recv()["event"] == "t"
    assert env.push({"room": "user:mallory", "topic": "t",
                     "payload": 1}).json()["delivered"] == 0


def test_token_still_comes_first(env):
    r = http_request(env.port, ws_request_bytes(
        path="/live?room=game:1&token=" + token("x")[:-4] + "AAAA"))
    assert_json_error(r, 401, "UNAUTHORIZED")


def test_variables_refused_for_socketio(tmp_path):
    if not MODULE.exists():
        pytest.skip("module not built")
    ngx = Nginx(tmp_path / "conftest")
    ngx.write_conf(r"""
    realtime_zone rt 4m;
    server {
        listen 127.0.0.1:%PORT%;
        location /socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_join_on_connect lobby $arg_room;
        }
    }""")
    rc, out = ngx.test_conf()
    out += ngx.error_log()
    assert rc != 0, out
    assert "realtime_join_on_connect with variables is for WebSocket " \
        "clients" in out, out


def test_bench_style_connects_are_ready_at_the_welcome(env):
    """As bench S3 connects: many sockets, each naming its room; every one
    is a member once its welcome has come."""
    cs = [live(env, "u%d" % i, room="game:%d" % (i % 5)) for i in range(20)]
    # each room's first four get a presence:join of each later one
    for i, c in enumerate(cs):
        for _ in range(3 - i // 5):
            assert c.recv()["event"] == "presence:join"
    total = 0
    for k in range(5):
        r = env.push({"room": "game:%d" % k, "topic": "t", "payload": k})
        total += r.json()["delivered"]
    assert total == 20
    deadline = time.monotonic() + 5
    for i, c in enumerate(cs):
        ev = c.recv(max(0.1, deadline - time.monotonic()))
        assert ev["data"] == i % 5, ev
    assert wait_until(lambda: env.health()["connections"] >= 20, 2)
