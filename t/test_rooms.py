"""Rooms in the shared zone: join/leave/publish/presence over 2 workers.

Every nginx here runs 2 workers on a reuseport listener; the worker pid in
each client's welcome event proves which worker holds the socket, so a
message seen by a client on the other pid has crossed workers.
"""

import collections
import json
import time

import pytest

from conftest import rt_http

pytestmark = pytest.mark.asan     # also run by make integration-asan

ROOM = "battle:42"


def relay(event, room, frm, data):
    return {"event": event, "room": room, "from": frm, "data": data}


def joined(room, members, id=None):
    m = {"event": "joined", "data": {"room": room, "members": members}}
    if id is not None:
        m["id"] = id
    return m


def left(room, members, id=None):
    m = {"event": "left", "data": {"room": room, "members": members}}
    if id is not None:
        m["id"] = id
    return m


def published(room, n, id):
    return {"event": "published", "data": {"room": room, "recipients": n},
            "id": id}


def pjoin(room, user):
    return {"event": "presence:join", "data": {"room": room, "userId": user}}


def pleave(room, user):
    return {"event": "presence:leave", "data": {"room": room,
                                                "userId": user}}


def assert_error(msg, code, id=None):
    assert msg["event"] == "error", msg
    data = msg["data"]
    if id is None:
        assert set(msg) == {"event", "data"}, msg
        assert set(data) == {"code", "message"}, msg
    else:
        assert set(msg) == {"event", "data", "id"} and msg["id"] == id, msg
        assert set(data) == {"code", "message", "id"}, msg
        assert data["id"] == id, msg
    assert data["code"] == code, msg
    assert isinstance(data["message"], str) and data["message"], msg


def all_silent(clients, timeout=0.3):
    time.sleep(timeout)
    for c in clients:
        c.assert_silent(0.01)


def join_all(clients, room):
    """Joins in order; asserts the member counts and that the earlier
    members each get one presence:join per new user."""
    for i, c in enumerate(clients):
        assert c.join(room, id=i) == joined(room, i + 1, id=i)
        for prev in clients[:i]:
            assert prev.recv() == pjoin(room, c.user), (prev, c)


# --------------------------------------------------------------------------


def test_cross_worker_publish_proven_by_pid(rt):
    rt.start(rt_http())
    cs = rt.clients_spread(["u%d" % i for i in range(8)])
    join_all(cs, ROOM)
    all_silent(cs, 0.1)

    pids = rt.two_pids()
    for pid in pids:
        sender = [c for c in cs if c.pid == pid][0]
        data = {"x": 1, "by": sender.user, "nested": [1, "two", None]}
        sender.publish(ROOM, "move", data, id=100 + pid % 100)
        assert sender.recv() == published(ROOM, 7, 100 + pid % 100)
        others = [c for c in cs if c is not sender]
        crossed = [c for c in others if c.pid != sender.pid]
        assert crossed, "no receiver on the other worker"
        for c in others:
            assert c.recv() == relay("move", ROOM, sender.user, data), c
    all_silent(cs)

    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"], h["workers"]) == \
        (8, 8, 1, 2), h


def test_publish_echo_and_without_id(rt):
    rt.start(rt_http())
    a, b, c = rt.clients_spread(["a", "b", "c"])
    join_all([a, b, c], "lobby")

    # echo: the sender gets the relay too, and recipients counts it
    a.publish("lobby", "chat", "hi", id=5, echo=True)
    got = [a.recv(), a.recv()]
    assert sorted(got, key=json.dumps) == sorted(
        [relay("chat", "lobby", "a", "hi"), published("lobby", 3, 5)],
        key=json.dumps), got
    assert b.recv() == relay("chat", "lobby", "a", "hi")
    assert c.recv() == relay("chat", "lobby", "a", "hi")

    # echo false explicitly, with id: not to the sender
    b.publish("lobby", "chat", {"k": [1]}, id=6, echo=False)
    assert b.recv() == published("lobby", 2, 6)
    assert a.recv() == relay("chat", "lobby", "b", {"k": [1]})
    assert c.recv() == relay("chat", "lobby", "b", {"k": [1]})

    # no id: no "published" answer; no data: null
    c.send({"event": "publish", "data": {"room": "lobby", "event": "bare"}})
    assert a.recv() == relay("bare", "lobby", "c", None)
    assert b.recv() == relay("bare", "lobby", "c", None)
    all_silent([a, b, c])


def test_join_shorthand_and_idempotent(rt):
    rt.start(rt_http())
    a, b = rt.clients_spread(["alice", "bob"])

    assert a.call({"event": "join", "data": "lobby"}) == joined("lobby", 1)
    assert a.join("lobby", id=2) == joined("lobby", 1, id=2)
    assert b.call({"event": "join", "data": "lobby", "id": 3}) == \
        joined("lobby", 2, id=3)
    assert a.recv() == pjoin("lobby", "bob")
    # twice: same count, no presence event for anyone
    assert a.join("lobby", id=4) == joined("lobby", 2, id=4)
    assert b.join("lobby") == joined("lobby", 2)
    all_silent([a, b])

    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"]) == (2, 2, 1), h
    room = rt.health("?room=lobby")
    room["users"].sort(key=lambda u: u["userId"])
    assert room == {"room": "lobby", "members": 2,
                    "users": [{"userId": "alice", "sockets": 1},
                              {"userId": "bob", "sockets": 1}]}

    # one leave undoes a double join
    assert a.leave("lobby", id=5) == left("lobby", 1, id=5)
    assert b.recv() == pleave("lobby", "alice")
    assert_error(a.leave("lobby", id=6), "BAD_REQUEST", 6)
    all_silent([a, b])


def test_leave(rt):
    rt.start(rt_http())
    a, b, c = rt.clients_spread(["a", "b", "c"])
    join_all([a, b, c], "r1")

    assert c.leave("r1", id=7) == left("r1", 2, id=7)
    assert a.recv() == pleave("r1", "c")
    assert b.recv() == pleave("r1", "c")

    # not a member any more
    assert_error(c.leave("r1", id=8), "BAD_REQUEST", 8)
    assert_error(c.leave("never-joined"), "BAD_REQUEST")
    c.publish("r1", "x", 1, id=9)
    assert_error(c.recv(), "FORBIDDEN", 9)

    # the left socket no longer receives
    a.publish("r1", "x", 2, id=10)
    assert a.recv() == published("r1", 1, 10)
    assert b.recv() == relay("x", "r1", "a", 2)
    all_silent([a, b, c])

    assert b.leave("r1") == left("r1", 1)
    assert a.recv() == pleave("r1", "b")
    assert a.leave("r1", id=11) == left("r1", 0, id=11)
    all_silent([a, b, c])

    r = rt.http("GET", "/health?room=r1")
    assert r.status == 404, r
    assert r.json() == {"error": "Room not found", "code": "ROOM_NOT_FOUND"}
    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"]) == (3, 3, 0), h


def test_presence_several_sockets_per_user(rt):
    rt.start(rt_http())
    pa, pb = rt.two_pids()
    carol = rt.client("carol")
    alice1 = rt.client_on(pa, "alice")
    alice2 = rt.client_on(pb, "alice")
    bob = rt.client("bob")
    R = "room/presence#1"

    assert carol.join(R) == joined(R, 1)
    assert alice1.join(R) == joined(R, 2)
    assert carol.recv() == pjoin(R, "alice")
    # alice's second socket: no presence event, for anyone
    assert alice2.join(R) == joined(R, 3)
    all_silent([carol, alice1, alice2, bob])

    assert bob.join(R) == joined(R, 4)
    for c in (carol, alice1, alice2):
        assert c.recv() == pjoin(R, "bob"), c
    all_silent([carol, alice1, alice2, bob])

    for c in (carol, alice1, alice2, bob):
        p = c.call({"event": "presence", "data": {"room": R}, "id": 1})
        assert set(p) == {"event", "data", "id"} and p["id"] == 1, p
        assert p["event"] == "presence" and p["data"]["room"] == R, p
        users = p["data"]["users"]
        assert sorted(users) == ["alice", "bob", "carol"], p
    # presence of an empty room: no users (shorthand form)
    assert carol.call({"event": "presence", "data": "nobody-here"}) == {
        "event": "presence", "data": {"room": "nobody-here", "users": []}}

    # closing one of alice's sockets: alice stays in the room
    alice1.close()
    rt.wait_settled(3)
    all_silent([carol, alice2, bob])
    p = carol.call({"event": "presence", "data": {"room": R}})
    assert sorted(p["data"]["users"]) == ["alice", "bob", "carol"], p
    room = rt.health("?room=" + R.replace("/", "%2F").replace("#", "%23"))
    room["users"].sort(key=lambda u: u["userId"])
    assert room == {"room": R, "members": 3, "users": [
        {"userId": "alice", "sockets": 1}, {"userId": "bob", "sockets": 1},
        {"userId": "carol", "sockets": 1}]}, room

    # a push to alice reaches her remaining socket
    r = rt.push({"userId": "alice", "topic": "note", "payload": {"n": 1}})
    assert (r.status, r.json()) == (200, {
        "message": "Payload sent successfully", "delivered": 1}), r
    assert alice2.recv() == {"event": "note", "data": {"n": 1}}
    # so does a room publish
    bob.publish(R, "say", "hello", id=3)
    assert bob.recv() == published(R, 2, 3)
    assert alice2.recv() == relay("say", R, "bob", "hello")
    assert carol.recv() == relay("say", R, "bob", "hello")

    # alice's last socket leaves: now presence:leave
    assert alice2.leave(R) == left(R, 2)
    assert carol.recv() == pleave(R, "alice")
    assert bob.recv() == pleave(R, "alice")
    # bob closes without leaving: presence:leave too
    bob.close()
    assert carol.recv() == pleave(R, "bob")
    p = carol.call({"event": "presence", "data": {"room": R}})
    assert p == {"event": "presence", "data": {"room": R,
                                               "users": ["carol"]}}, p
    all_silent([carol, alice2])


def test_ping_pong(rt):
    rt.start(rt_http())
    a, b = rt.clients_spread(["a", "b"])
    for c in (a, b):
        assert c.call({"event": "ping", "data": {"t": 12.5, "s": "x"},
                       "id": 77}) == {"event": "pong",
                                      "data": {"t": 12.5, "s": "x"},
                                      "id": 77}
        assert c.call({"event": "ping", "data": "abc"}) == {
            "event": "pong", "data": "abc"}
        assert c.call({"event": "ping"}) == {"event": "pong", "data": None}
    all_silent([a, b])


def test_errors_keep_the_connection_open(rt):
    rt.start(rt_http())
    a, b = rt.clients_spread(["a", "b"])
    join_all([a, b], "r")
    cases = [
        ("not json", "INVALID_JSON", None),
        ('{"event":"join"', "INVALID_JSON", None),
        ("[1,2]", "INVALID_EVENT", None),
        ('{"data":1}', "INVALID_EVENT", None),
        ('{"event":5,"id":2}', "INVALID_EVENT", 2),
        ('{"event":"","id":3}', "INVALID_EVENT", 3),
        ('{"event":"nope","id":4}', "INVALID_EVENT", 4),
        ('{"event":"join","data":{"room":"bad room"},"id":5}',
         "BAD_REQUEST", 5),
        ('{"event":"join","data":{"room":42}}', "BAD_REQUEST", None),
        ('{"event":"join"}', "BAD_REQUEST", None),
        ('{"event":"join","data":[]}', "BAD_REQUEST", None),
        ('{"event":"leave","data":{"room":""},"id":6}', "BAD_REQUEST", 6),
        ('{"event":"presence","data":{"room":null}}', "BAD_REQUEST", None),
        ('{"event":"publish","data":"r","id":7}', "BAD_REQUEST", 7),
        ('{"event":"publish","data":{"room":"r"}}', "BAD_REQUEST", None),
        ('{"event":"publish","data":{"room":"r","event":7}}',
         "BAD_REQUEST", None),
        ('{"event":"publish","data":{"room":"r","event":"e",'
         '"echo":"yes"},"id":8}', "BAD_REQUEST", 8),
        ('{"event":"ping","id":"x"}', "BAD_REQUEST", None),
    ]
    for text, code, id in cases:
        a.send(text)
        assert_error(a.recv(), code, id), text
    a.raw.send_binary(b'{"event":"ping"}')
    assert_error(a.recv(), "BAD_REQUEST")

    # still open and still in the room; b never saw anything of it
    assert a.call({"event": "ping", "data": 1, "id": 9}) == {
        "event": "pong", "data": 1, "id": 9}
    a.publish("r", "after", [1], id=10)
    assert a.recv() == published("r", 1, 10)
    assert b.recv() == relay("after", "r", "a", [1])
    all_silent([a, b])


def test_json_scalar_message_is_invalid_event(rt):
    """A JSON text that is valid JSON but not an object is INVALID_EVENT
    ("not an object"), not INVALID_JSON."""
    rt.start(rt_http())
    a = rt.client("a")
    got = []
    for text in ('"join"', "42", "null", "true"):
        a.send(text)
        got.append((text, a.recv()["data"]["code"]))
    assert a.call({"event": "ping", "id": 1}) == {
        "event": "pong", "data": None, "id": 1}
    assert got == [(t, "INVALID_EVENT") for t in ('"join"', "42", "null",
                                                   "true")], got


def test_anonymous_user_is_its_connection(rt):
    rt.start(rt_http())
    cs = rt.clients_spread([None, None, None])
    cids = [c.cid for c in cs]
    assert len(set(cids)) == 3, cids
    for c in cs:
        assert c.user == c.cid, c
    join_all(cs, "anon")
    cs[0].publish("anon", "e", 1)
    for c in cs[1:]:
        assert c.recv() == relay("e", "anon", cs[0].cid, 1)
    r = rt.push({"userId": cs[2].cid, "topic": "t", "payload": 2})
    assert (r.status, r.json()) == (200, {
        "message": "Payload sent successfully", "delivered": 1})
    assert cs[2].recv() == {"event": "t", "data": 2}
    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"]) == (3, 3, 1), h
    all_silent(cs)


def test_client_publish_and_presence_off(rt):
    rt.start(rt_http(locations="""
        location = /quiet { realtime rt; realtime_user $arg_user; }
    """))
    a, b = rt.clients_spread(["a", "b"])
    q = rt.client("q", path="/quiet")
    join_all([a, b], "mix")
    # presence off on /quiet: q's join tells nobody; q does not get told
    assert q.join("mix", id=1) == joined("mix", 3, id=1)
    all_silent([a, b, q])
    q.publish("mix", "x", 1, id=2)
    assert_error(q.recv(), "FORBIDDEN", 2)
    q.publish("mix", "x", 1, echo=True)
    assert_error(q.recv(), "FORBIDDEN")
    # but q receives what members publish and what is pushed
    a.publish("mix", "x", 3)
    assert b.recv() == relay("x", "mix", "a", 3)
    assert q.recv() == relay("x", "mix", "a", 3)
    # q's close: no presence:leave (presence off for q's location)
    q.close()
    rt.wait_settled(2)
    all_silent([a, b])


def test_exact_delivery_200_clients_20_rooms(rt):
    """200 clients, each in 2 of 20 rooms; every client publishes once to
    each of its rooms. Each publication must reach every other member of
    its room exactly once, whatever worker holds it."""
    rt.start(rt_http(presence="off"))
    N, NROOMS = 200, 20
    cs = rt.clients_spread(["user%03d" % i for i in range(N)])
    rooms_of = {}
    members = collections.defaultdict(list)
    for i in range(N):
        r1 = "room-%02d" % (i % NROOMS)
        r2 = "room-%02d" % ((i // 10 + 1) % NROOMS)
        rooms_of[i] = [r1] if r1 == r2 else [r1, r2]
        for r in rooms_of[i]:
            members[r].append(i)
    for i, c in enumerate(cs):
        for r in rooms_of[i]:
            c.send({"event": "join", "data": {"room": r}})
    for i, c in enumerate(cs):
        for r in rooms_of[i]:
            m = c.recv(timeout=5)
            assert m["event"] == "joined" and m["data"]["room"] == r, m

    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"], h["workers"]) == \
        (N, N, NROOMS, 2), h
    for r, ms in members.items():
        info = rt.health("?room=" + r)
        assert info["members"] == len(ms), (r, info)
        assert sorted(u["userId"] for u in info["users"]) == \
            sorted(cs[i].user for i in ms), r

    for i, c in enumerate(cs):
        for k, r in enumerate(rooms_of[i]):
            c.publish(r, "msg", {"i": i, "r": r}, id=k)

    expected = {i: collections.Counter() for i in range(N)}
    for i in range(N):
        for r in rooms_of[i]:
            for j in members[r]:
                if j != i:
                    expected[j][(i, r)] += 1

    crossed = 0
    pid_of = [c.pid for c in cs]
    for j, c in enumerate(cs):
        got = collections.Counter()
        answers = {}
        total = sum(expected[j].values()) + len(rooms_of[j])
        for _ in range(total):
            m = c.recv(timeout=5)
            if m["event"] == "published":
                answers[m["id"]] = m["data"]
                continue
            assert m["event"] == "msg" and set(m) == {
                "event", "room", "from", "data"}, m
            i = m["data"]["i"]
            assert m["from"] == cs[i].user and m["room"] == m["data"]["r"], m
            got[(i, m["room"])] += 1
            if pid_of[i] != c.pid:
                crossed += 1
        assert got == expected[j], (c, got - expected[j],
                                    expected[j] - got)
        assert answers == {k: {"room": r, "recipients": len(members[r]) - 1}
                           for k, r in enumerate(rooms_of[j])}, (c, answers)
    assert crossed > 0
    all_silent(cs, 0.5)

    h = rt.health()
    assert h["dropped"] == 0, h
    assert h["messages_in"] == sum(2 * len(v) for v in rooms_of.values()), h


def test_publish_order_per_publisher(rt):
    """Two publishers (one per worker) each send 50 numbered messages
    back to back; every receiver sees each publisher's 1..50 in order."""
    rt.start(rt_http(presence="off"))
    cs = rt.clients_spread(["o%d" % i for i in range(10)])
    pa, pb = rt.two_pids()
    pubs = [[c for c in cs if c.pid == pa][0], [c for c in cs if c.pid == pb][0]]
    for i, c in enumerate(cs):
        assert c.join("order", id=i) == joined("order", i + 1, id=i)
    for n in range(1, 51):
        for p in pubs:
            p.publish("order", "seq", {"n": n, "p": p.user})
    for c in cs:
        seen = collections.defaultdict(list)
        count = 50 * sum(1 for p in pubs if p is not c)
        for _ in range(count):
            m = c.recv(timeout=5)
            assert m["event"] == "seq" and m["from"] == m["data"]["p"], m
            seen[m["from"]].append(m["data"]["n"])
        for p in pubs:
            if p is not c:
                assert seen[p.user] == list(range(1, 51)), (c, p,
                                                            seen[p.user])
    all_silent(cs)
