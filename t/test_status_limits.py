"""Status and metrics, limits, zone exhaustion, reload and a killed
worker, all with 2 workers on a reuseport listener."""

import json
import os
import re
import signal
import time

import pytest

import wsraw
from conftest import pid_alive, rt_http, wait_until
from wsraw import http_request, ws_request_bytes

pytestmark = pytest.mark.asan     # also run by make integration-asan


def relay(event, room, frm, data):
    return {"event": event, "room": room, "from": frm, "data": data}


def all_silent(clients, timeout=0.3):
    time.sleep(timeout)
    for c in clients:
        c.assert_silent(0.01)


def assert_error(msg, code, id=None):
    assert msg["event"] == "error" and msg["data"]["code"] == code, msg
    if id is None:
        assert "id" not in msg and "id" not in msg["data"], msg
    else:
        assert msg["id"] == id and msg["data"]["id"] == id, msg


def metrics(rt):
    r = rt.http("GET", "/metrics")
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; version=0.0.4", r
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        assert name not in out, "duplicate metric %s" % name
        # counters and gauges are integers; a histogram's sum is not
        out[name] = float(value) if "_sum{" in name else int(value)
    return out


def handshake(port, path):
    return http_request(port, ws_request_bytes(path=path))


def json_body(resp):
    assert (resp.header("content-type") or "").split(";")[0] == \
        "application/json", resp
    return json.loads(resp.body)


# --------------------------------------------------------------------------
# /health and /metrics
# --------------------------------------------------------------------------


def test_health_counts_and_forms(rt):
    rt.start(rt_http(presence="off"))
    pa, pb = rt.two_pids()
    h = rt.health()
    assert h == {"status": "ok", "connections": 0, "users": 0, "rooms": 0,
                 "workers": 2, "messages_in": 0, "messages_out": 0,
                 "dropped": 0, "zone": {"size": 4 * 1024 * 1024,
                                        "used": h["zone"]["used"]}}, h
    used0 = h["zone"]["used"]
    assert 0 < used0 < 4 * 1024 * 1024 and used0 % 4096 == 0, h

    t0 = int(time.time())
    alice1 = rt.client_on(pa, "alice")
    alice2 = rt.client_on(pb, "alice")
    bob = rt.client("bob")
    anon = rt.client()
    t1 = int(time.time())

    assert alice1.join("r1")["event"] == "joined"               # in 1
    assert alice1.join("r2")["event"] == "joined"               # in 2
    assert bob.join("r1")["event"] == "joined"                  # in 3
    assert anon.join("battle:42")["event"] == "joined"          # in 4
    alice1.publish("r1", "e", 1, id=1)                          # in 5
    assert alice1.recv()["event"] == "published"
    assert bob.recv() == relay("e", "r1", "alice", 1)           # out 1
    r = rt.push({"userId": "alice", "topic": "t", "payload": 0})  # in 6
    assert r.json()["delivered"] == 2                           # out 3
    assert alice1.recv() == alice2.recv() == {"event": "t", "data": 0}
    assert bob.call({"event": "ping"})["event"] == "pong"      # in 7
    assert bob.call("nope")["data"]["code"] == "INVALID_JSON"   # in 8

    def counts():
        h = rt.health()
        return h if (h["messages_in"], h["messages_out"]) == (8, 3) else None
    h = wait_until(counts, 3) or rt.health()
    assert {k: v for k, v in h.items() if k != "zone"} == {
        "status": "ok", "connections": 4, "users": 3, "rooms": 3,
        "workers": 2, "messages_in": 8, "messages_out": 3,
        "dropped": 0}, h
    assert h["zone"]["size"] == 4 * 1024 * 1024, h
    assert h["zone"]["used"] >= used0, h

    # ?room=
    room = rt.health("?room=r1")
    room["users"].sort(key=lambda u: u["userId"])
    assert room == {"room": "r1", "members": 2, "users": [
        {"userId": "alice", "sockets": 1}, {"userId": "bob", "sockets": 1}]}
    assert rt.health("?room=battle%3A42") == {
        "room": "battle:42", "members": 1,
        "users": [{"userId": anon.cid, "sockets": 1}]}
    r = rt.http("GET", "/health?room=nope")
    assert (r.status, r.json()) == (404, {"error": "Room not found",
                                          "code": "ROOM_NOT_FOUND"}), r

    # ?user=
    u = rt.health("?user=alice")
    assert set(u) == {"userId", "connections"} and u["userId"] == "alice"
    conns = sorted(u["connections"], key=lambda c: c["connectionId"])
    want = sorted([alice1, alice2], key=lambda c: c.cid)
    assert [(c["connectionId"], c["pid"]) for c in conns] == \
        [(c.cid, c.pid) for c in want], u
    for c in conns:
        assert set(c) == {"connectionId", "pid", "since"}, u
        assert t0 - 1 <= c["since"] <= t1 + 1, (u, t0, t1)
    u = rt.health("?user=" + anon.cid)
    assert [(c["connectionId"], c["pid"]) for c in u["connections"]] == \
        [(anon.cid, anon.pid)], u
    r = rt.http("GET", "/health?user=ghost")
    assert (r.status, r.json()) == (404, {"error": "User not connected",
                                          "code": "USER_NOT_FOUND"}), r

    # closing alice1 takes r2 away, alice stays
    alice1.close()
    h = rt.wait_settled(3)
    assert (h["users"], h["rooms"]) == (3, 2), h
    room = rt.health("?room=r1")
    assert sorted((u["userId"], u["sockets"]) for u in room["users"]) == \
        [("bob", 1)], room
    u = rt.health("?user=alice")
    assert [c["connectionId"] for c in u["connections"]] == [alice2.cid], u
    r = rt.http("GET", "/health?room=r2")
    assert r.status == 404, r
    all_silent([alice2, bob, anon])


def test_status_and_metrics_methods(rt):
    rt.start(rt_http())
    for path in ("/health", "/metrics"):
        for method in ("POST", "PUT", "DELETE"):
            r = rt.http(method, path, body="{}" if method != "DELETE"
                        else None)
            assert r.status == 405, (method, path, r)
            doc = r.json()
            assert doc["code"] == "METHOD_NOT_ALLOWED", (method, path, doc)
    assert rt.health()["status"] == "ok"


def test_metrics(rt):
    rt.start(rt_http(presence="off"))
    cs = rt.clients_spread(["m%d" % i for i in range(7)])
    for c in cs:
        assert c.join("mroom")["event"] == "joined"
    cs[0].publish("mroom", "e", 1)
    for c in cs[1:]:
        assert c.recv() == relay("e", "mroom", cs[0].user, 1)

    def ready():
        m = metrics(rt)
        return m if m['realtime_messages_out_total{zone="rt"}'] == 6 \
            else None
    m = wait_until(ready, 3) or metrics(rt)
    z = '{zone="rt"}'
    assert m["realtime_connections" + z] == 7, m
    assert m["realtime_users" + z] == 7, m
    assert m["realtime_rooms" + z] == 1, m
    assert m["realtime_workers" + z] == 2, m
    assert m["realtime_zone_size_bytes" + z] == 4 * 1024 * 1024, m
    assert m["realtime_messages_in_total" + z] == 8, m
    assert m["realtime_messages_out_total" + z] == 6, m
    assert m["realtime_dropped_total" + z] == 0, m
    assert m["realtime_zone_full_total" + z] == 0, m
    assert m["realtime_queue_full_total" + z] == 0, m
    assert m["realtime_purged_connections_total" + z] == 0, m
    per = {int(k.split('pid="')[1].split('"')[0]): v for k, v in m.items()
           if k.startswith("realtime_worker_connections{")}
    want = {p: sum(1 for c in cs if c.pid == p) for p in rt.two_pids()}
    assert per == want, (per, want)
    ins = sum(v for k, v in m.items()
              if k.startswith("realtime_worker_messages_in_total{"))
    assert ins == 8, m
    h = rt.health()
    assert (h["connections"], h["messages_in"], h["messages_out"]) == \
        (7, 8, 6), h


# --------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------


def test_max_rooms_per_connection(rt):
    rt.start(rt_http(presence="off", locations="""
        location = /ws3 { realtime rt; realtime_user $arg_user;
                          realtime_max_rooms_per_connection 3; }
    """))
    a = rt.client("a", path="/ws3")
    for i in range(3):
        assert a.join("r%d" % i, id=i)["event"] == "joined"
    assert_error(a.join("r3", id=9), "ROOM_LIMIT", 9)
    assert_error(a.join("r4"), "ROOM_LIMIT")
    # joining a room it is in is fine; leaving one makes room
    assert a.join("r1", id=10) == {"event": "joined", "data": {
        "room": "r1", "members": 1}, "id": 10}
    assert a.leave("r0")["event"] == "left"
    assert a.join("r3", id=11) == {"event": "joined", "data": {
        "room": "r3", "members": 1}, "id": 11}
    # per connection: the same user's other socket has its own 3
    a2 = rt.client("a", path="/ws3")
    for i in range(3):
        assert a2.join("s%d" % i)["event"] == "joined"
    assert_error(a2.join("s3"), "ROOM_LIMIT")
    assert rt.health()["rooms"] == 6

    # the default is 64
    d = rt.client("d")
    for i in range(64):
        d.send({"event": "join", "data": {"room": "d%d" % i}})
    for i in range(64):
        assert d.recv() == {"event": "joined", "data": {
            "room": "d%d" % i, "members": 1}}
    assert_error(d.join("d64", id=64), "ROOM_LIMIT", 64)
    assert d.call({"event": "ping", "id": 1})["event"] == "pong"
    all_silent([a, a2, d])


def test_max_connections_per_user(rt):
    rt.start(rt_http(presence="off", ws_extra="""
            realtime_max_connections_per_user 3;""", locations="""
        location = /wsdef { realtime rt; realtime_user $arg_user; }
    """))
    pa, pb = rt.two_pids()
    us = [rt.client_on(pa, "u"), rt.client_on(pb, "u"), rt.client("u")]
    assert len(rt.health("?user=u")["connections"]) == 3
    # the 4th, on whichever worker: 429, however often it is tried
    for _ in range(6):
        resp = handshake(rt.port, "/ws?user=u")
        assert resp.status == 429, resp
        doc = json_body(resp)
        assert set(doc) == {"error", "code"} and \
            doc["code"] == "TOO_MANY_CONNECTIONS", doc
    other = rt.client("other")
    h = rt.health()
    assert (h["connections"], h["users"]) == (4, 2), h
    for c in us + [other]:
        assert c.call({"event": "ping", "data": 1})["data"] == 1
    # one closes: one more may come
    us[0].close()
    rt.wait_settled(3)
    us[0] = rt.client("u")
    resp = handshake(rt.port, "/ws?user=u")
    assert resp.status == 429, resp

    # the default is 16
    ds = [rt.client("d", path="/wsdef") for _ in range(16)]
    resp = handshake(rt.port, "/wsdef?user=d")
    assert resp.status == 429, resp
    assert json_body(resp)["code"] == "TOO_MANY_CONNECTIONS"
    assert rt.health()["connections"] == 4 + 16
    all_silent(us + [other] + ds)


RATE_LOCATIONS = """
        location = /wsrl { realtime rt; realtime_user $arg_user;
                           realtime_rate_limit 1r/s burst=5; }
        location = /wsrl0 { realtime rt; realtime_user $arg_user;
                            realtime_rate_limit 20r/s; }
"""


def test_rate_limit_burst_then_1008(rt):
    """1r/s burst=5, measured like limit_req: a burst of 1 + 5 messages
    passes; then each refused message gets RATE_LIMITED, and a client
    that keeps on (more refusals than rate + burst = 6) is closed with
    1008."""
    rt.start(rt_http(locations=RATE_LOCATIONS))
    c = rt.client("flood", path="/wsrl")
    other = rt.client("flood", path="/wsrl")
    c.raw.send(b"".join(
        wsraw.build_frame(wsraw.OP_TEXT, json.dumps(
            {"event": "ping", "data": i, "id": i}))
        for i in range(1, 31)))
    pongs, limited = [], 0
    while True:
        f = c.raw.recv_data_frame(timeout=3)
        if f.opcode == wsraw.OP_CLOSE:
            break
        m = json.loads(f.payload)
        if m["event"] == "pong":
            assert limited == 0, "pong after a refusal: %r" % m
            pongs.append(m["id"])
        else:
            assert_error(m, "RATE_LIMITED")
            limited += 1
    assert f.close_code == 1008, f
    c.raw.send_close(1008)
    assert c.raw.wait_tcp_close(3)
    c.closed = True
    c.raw.close()
    assert (pongs, limited) == (list(range(1, 7)), 6), (pongs, limited)
    # the same user's other connection has its own bucket
    assert other.call({"event": "ping", "id": 1})["event"] == "pong"
    rt.wait_settled(1)


def test_rate_limit_recovers(rt):
    """Past the burst, messages are refused (not closed: fewer refusals
    than rate + burst); once the bucket has leaked they pass again. The
    exact burst size is checked by test_rate_limit_burst_then_1008."""
    rt.start(rt_http(locations=RATE_LOCATIONS))
    c = rt.client("slow", path="/wsrl")
    c.raw.send(b"".join(
        wsraw.build_frame(wsraw.OP_TEXT, json.dumps(
            {"event": "ping", "id": i})) for i in range(10)))
    got = [c.recv() for _ in range(10)]
    pongs = [m["id"] for m in got if m["event"] == "pong"]
    assert pongs == list(range(len(pongs))) and 5 <= len(pongs) <= 6, got
    for m in got[len(pongs):]:
        assert_error(m, "RATE_LIMITED")
    # after 2 s the bucket has leaked 2 messages
    time.sleep(2.1)
    assert c.call({"event": "ping", "id": 10}) == {
        "event": "pong", "data": None, "id": 10}
    assert c.call({"event": "ping", "id": 11}) == {
        "event": "pong", "data": None, "id": 11}
    c.assert_silent(0.2)


def test_rate_limit_without_burst_allows_the_rate(rt):
    """20r/s without burst: messages 100 ms apart (10/s) are all within
    the rate and must all be answered."""
    rt.start(rt_http(locations=RATE_LOCATIONS))
    c = rt.client("paced", path="/wsrl0")
    got = []
    for i in range(5):
        c.send({"event": "ping", "id": i})
        m = c.recv()
        got.append(m["event"] if m["event"] != "error"
                   else m["data"]["code"])
        time.sleep(0.1)
    assert got == ["pong"] * 5, got


def test_room_names(rt):
    rt.start(rt_http(presence="off"))
    a = rt.client("a")
    good = ["a", "A-z_0.9", "battle:42", "user@example.com", "a/b#c",
            "_-:.@/#", "x" * 128,
            ("abcXYZ019_-:.@/#" * 8)]
    for i, name in enumerate(good):
        assert len(name.encode()) <= 128
        assert a.join(name, id=i) == {"event": "joined", "data": {
            "room": name, "members": 1}, "id": i}, name
    bad = ["", "x" * 129, "a b", "caf\u00e9", "a!", "a$", "a%41", "a+b",
           "a,b", "a\tb", "[a]", "a?b", "a\\b", "a'b", 'a"b',
           "\u00e9" * 64]
    for i, name in enumerate(bad):
        assert_error(a.join(name, id=100 + i), "BAD_REQUEST", 100 + i)
    # the push API checks names the same way
    r = rt.push({"room": "x" * 129, "topic": "t", "payload": 1})
    assert r.status == 400 and r.json()["code"] == "BAD_REQUEST", r
    r = rt.push({"room": "x" * 128, "topic": "t", "payload": 1})
    assert r.json() == {"message": "Payload sent successfully",
                        "delivered": 1}, r
    assert a.recv() == {"event": "t", "room": "x" * 128, "data": 1}
    assert rt.health()["rooms"] == len(good)
    all_silent([a])


# --------------------------------------------------------------------------
# zone exhaustion
# --------------------------------------------------------------------------


def fill_zone(c, prefix, limit=3000):
    """Joins rooms with long names until ZONE_FULL; returns how many
    joins succeeded."""
    for i in range(limit):
        m = c.join("%s-%s-%05d" % (prefix, "z" * 100, i), id=i)
        if m["event"] == "error":
            assert_error(m, "ZONE_FULL", i)
            return i
        assert m["event"] == "joined", m
    raise AssertionError("zone never got full")


def test_zone_exhaustion_tiny_zone(rt):
    rt.start(rt_http(zone="tiny 64k", presence="off",
                     ws_extra="realtime_max_rooms_per_connection 5000;"))
    workers = rt.two_pids()
    a = rt.client("filler")
    n1 = fill_zone(a, "a")
    assert n1 > 0
    # the connection still works; more joins still refused, not a crash
    assert a.call({"event": "ping", "id": 1})["event"] == "pong"
    assert_error(a.join("a-one-more", id=7), "ZONE_FULL", 7)
    # new connections also need zone memory: held open, they are
    # accepted until the handshake gets 503 ZONE_FULL
    held, refused = [], None
    try:
        for i in range(300):
            resp, s = wsraw.http_exchange(rt.port, ws_request_bytes(
                path="/ws?user=late%d" % i))
            if resp.status == 101:
                held.append(s)
                continue
            s.close()
            assert resp.status == 503, resp
            assert json_body(resp)["code"] == "ZONE_FULL", resp
            refused = i
            break
        assert refused is not None, "300 more connections fit in 64k?"
        m = metrics(rt)
        assert m['realtime_zone_full_total{zone="tiny"}'] == 3, m
        assert a.call({"event": "ping", "id": 2})["event"] == "pong"
    finally:
        for s in held:
            s.close()
    assert rt.two_pids() == workers

    # everything leaves: the zone is usable again, as much as before
    a.close()
    h = rt.wait_settled(0)
    assert (h["users"], h["rooms"]) == (0, 0), h
    b = rt.client("again")
    n2 = fill_zone(b, "b")
    assert n2 == n1, (n1, n2)
    b.close()
    rt.wait_settled(0)
    c = rt.client("last")
    assert c.join("room", id=1)["event"] == "joined"
    assert rt.two_pids() == workers


# --------------------------------------------------------------------------
# reload and a killed worker
# --------------------------------------------------------------------------


def test_reload_keeps_the_zone(rt):
    ngx = rt.start(rt_http(presence="off"))
    old = rt.clients_spread(["o%d" % i for i in range(6)])
    for c in old:
        assert c.join("keep")["event"] == "joined"
    old[0].publish("keep", "e", 1)
    old[-1].publish("keep", "e", 2)
    for c in old:
        want = [relay("e", "keep", p.user, n)
                for p, n in ((old[0], 1), (old[-1], 2)) if p is not c]
        got = [c.recv() for _ in want]
        assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps)
    h = rt.health()
    assert (h["connections"], h["rooms"], h["messages_in"]) == (6, 1, 8), h

    old_pids, new_pids = ngx.reload()
    t0 = time.monotonic()
    for c in old:
        c.raw.expect_close(1001, timeout=max(0.5, t0 + 5 - time.monotonic()),
                           reply=True)
        c.closed = True
        c.raw.close()
    assert wait_until(lambda: not any(pid_alive(p) for p in old_pids), 8), \
        "old workers still alive"

    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"], h["workers"]) == \
        (0, 0, 0, 2), h
    assert h["messages_in"] == 8, "messages_in reset by reload: %r" % h
    assert h["zone"]["size"] == 4 * 1024 * 1024

    new = rt.clients_spread(["n%d" % i for i in range(4)])
    assert {c.pid for c in new} == set(new_pids)
    for i, c in enumerate(new):
        assert c.join("keep", id=i) == {"event": "joined", "data": {
            "room": "keep", "members": i + 1}, "id": i}
    sender = new[0]
    sender.publish("keep", "e", 3, id=9)
    assert sender.recv() == {"event": "published", "data": {
        "room": "keep", "recipients": 3}, "id": 9}
    for c in new[1:]:
        assert c.recv() == relay("e", "keep", sender.user, 3)
    r = rt.push({"room": "keep", "topic": "t", "payload": 4})
    assert r.json() == {"message": "Payload sent successfully",
                        "delivered": 4}, r
    for c in new:
        assert c.recv() == {"event": "t", "room": "keep", "data": 4}
    h = rt.health()
    assert (h["connections"], h["users"], h["rooms"], h["workers"],
            h["messages_in"]) == (4, 4, 1, 2, 8 + 4 + 1 + 1), h
    all_silent(new)


def test_killed_worker_is_purged(rt):
    ngx = rt.start(rt_http(presence="off"))
    cs = rt.clients_spread(["k%d" % i for i in range(10)])
    for c in cs:
        assert c.join("R")["event"] == "joined"
    victim = cs[0].pid
    dead = [c for c in cs if c.pid == victim]
    alive = [c for c in cs if c.pid != victim]
    assert dead and alive
    rt.allowed_bad.append(r"worker process %d exited on signal 9$" % victim)

    os.kill(victim, signal.SIGKILL)
    for c in dead:
        assert c.raw.wait_tcp_close(3), c
        c.closed = True
        c.raw.close()
    assert wait_until(lambda: len(ngx.worker_pids()) == 2
                      and victim not in ngx.worker_pids(), 5), \
        ngx.worker_pids()
    respawned = [p for p in ngx.worker_pids() if p != alive[0].pid][0]

    def purged():
        h = rt.health()
        return h if h["connections"] == len(alive) else None
    h = wait_until(purged, 5) or rt.health()
    assert (h["connections"], h["users"], h["rooms"], h["workers"]) == \
        (len(alive), len(alive), 1, 2), h
    room = rt.health("?room=R")
    assert room["members"] == len(alive), room
    assert sorted(u["userId"] for u in room["users"]) == \
        sorted(c.user for c in alive), room
    r = rt.http("GET", "/health?user=" + dead[0].user)
    assert r.status == 404, r
    m = metrics(rt)
    assert m['realtime_purged_connections_total{zone="rt"}'] == len(dead), m

    # survivors still get pushes and publishes
    r = rt.push({"userId": alive[0].user, "topic": "t", "payload": 1})
    assert r.json() == {"message": "Payload sent successfully",
                        "delivered": 1}, r
    assert alive[0].recv() == {"event": "t", "data": 1}
    r = rt.push({"userId": dead[0].user, "topic": "t", "payload": 1})
    assert r.status == 404, r
    alive[0].publish("R", "e", 2, id=3)
    assert alive[0].recv() == {"event": "published", "data": {
        "room": "R", "recipients": len(alive) - 1}, "id": 3}
    for c in alive[1:]:
        assert c.recv() == relay("e", "R", alive[0].user, 2)

    # the respawned worker takes part: cross-worker both ways
    n = rt.client_on(respawned, "newcomer")
    assert n.join("R") == {"event": "joined", "data": {
        "room": "R", "members": len(alive) + 1}}
    alive[0].publish("R", "e", 3)
    for c in alive[1:] + [n]:
        assert c.recv() == relay("e", "R", alive[0].user, 3)
    n.publish("R", "e", 4)
    for c in alive:
        assert c.recv() == relay("e", "R", "newcomer", 4)
    r = rt.push({"room": "R", "topic": "t", "payload": 5})
    assert r.json()["delivered"] == len(alive) + 1, r
    for c in alive + [n]:
        assert c.recv() == {"event": "t", "room": "R", "data": 5}
    all_silent(alive + [n])

    bad = rt.bad_lines()
    assert len(bad) == 1 and re.search(
        r"\[alert\] .*worker process %d exited on signal 9$" % victim,
        bad[0]), bad


def test_killed_worker_purge_keeps_users_other_sockets(rt):
    """The purge finds a dead worker's sockets through their users: a
    user with sockets on both workers keeps the live one (and its room),
    a user with all of them on the dead worker is gone."""
    ngx = rt.start(rt_http(presence="off"))
    victim, other = rt.two_pids()
    split_dead = rt.client_on(victim, "split")
    split_live = rt.client_on(other, "split")
    gone = [rt.client_on(victim, "gone") for _ in range(2)]
    solo = rt.client_on(victim, "solo")
    for c in [split_dead, split_live] + gone + [solo]:
        assert c.join("R")["event"] == "joined"
    assert solo.join("S")["event"] == "joined"
    assert rt.health("?room=R")["members"] == 5
    rt.allowed_bad.append(r"worker process %d exited on signal 9$" % victim)

    os.kill(victim, signal.SIGKILL)
    for c in [split_dead, solo] + gone:
        assert c.raw.wait_tcp_close(3), c
        c.closed = True
        c.raw.close()

    def purged():
        h = rt.health()
        return h if h["connections"] == 1 else None
    h = wait_until(purged, 5) or rt.health()
    assert (h["connections"], h["users"], h["rooms"]) == (1, 1, 1), h
    u = rt.health("?user=split")
    assert [c["connectionId"] for c in u["connections"]] == \
        [split_live.cid], u
    assert rt.health("?room=R") == {"room": "R", "members": 1, "users": [
        {"userId": "split", "sockets": 1}]}
    for user in ("gone", "solo"):
        r = rt.http("GET", "/health?user=" + user)
        assert r.status == 404, (user, r)
    r = rt.http("GET", "/health?room=S")
    assert r.status == 404, r
    assert metrics(rt)['realtime_purged_connections_total{zone="rt"}'] == 4

    r = rt.push({"userId": "split", "topic": "t", "payload": 1})
    assert r.json() == {"message": "Payload sent successfully",
                        "delivered": 1}, r
    assert split_live.recv() == {"event": "t", "data": 1}
    all_silent([split_live])


def test_full_worker_queue_is_answered_and_counted(rt):
    """A publication larger than another worker's queue (a tiny zone gives
    8k queues) cannot cross: the publisher hears QUEUE_FULL, the miss is in
    dropped and realtime_queue_full_total, and the local members still get
    it -- nothing is lost silently, nothing crashes."""
    # bodies stay in memory: workers (nobody) cannot enter pytest's tmp
    rt.start(rt_http(zone="tiny 64k", presence="off",
                     ws_extra="realtime_max_message_size 64k;",
                     http_extra="client_body_buffer_size 64k;"))
    members = rt.clients_spread(["m1", "m2", "m3", "m4"])
    for c in members:
        assert c.join("big")["event"] == "joined"

    pad = "x" * 12000
    r = rt.push({"room": "big", "topic": "huge", "payload": pad})
    assert r.status == 503, r
    body = r.json()
    assert body["code"] == "QUEUE_FULL", body
    assert body["delivered"] == 4, body

    # the worker that took the push delivered to its own members
    got = []
    for c in members:
        try:
            m = c.recv(timeout=1.0)
            assert m == {"event": "huge", "room": "big", "data": pad}
            got.append(c.pid)
        except Exception:
            pass
    assert got and len(set(got)) == 1, got

    h = rt.health()
    assert h["dropped"] >= 1, h
    m = metrics(rt)
    assert m['realtime_queue_full_total{zone="tiny"}'] >= 1, m

    # a client's publish hears it too, and small messages still cross
    sender = members[0]
    sender.send({"event": "publish", "id": 5,
                 "data": {"room": "big", "event": "e", "data": pad}})
    err = sender.recv()
    while err["event"] == "huge":
        err = sender.recv()
    assert err["event"] == "error" and err["data"]["code"] == "QUEUE_FULL", \
        err
    assert err["id"] == 5
    for c in members[1:]:
        try:
            while True:
                c.recv(timeout=0.5)
        except Exception:
            pass
    r = rt.push({"room": "big", "topic": "small", "payload": 1})
    assert r.status == 200 and r.json()["delivered"] == 4, r
    for c in members:
        assert c.recv() == {"event": "small", "room": "big", "data": 1}
