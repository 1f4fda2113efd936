"""realtime_socketio_recovery with realtime_redis: a Socket.IO client
whose transport goes comes back on the other instance (as behind a load
balancer) with the same socket id, its rooms and every publication it
missed; two instances with two workers each, a real redis-server, the
npm socket.io-client 4.8.

The kept session is in Redis (<prefix>sio:{<pid>}), taken once; each
room is replayed from the zone of the instance it comes back to when it
holds them (members there), else from Redis's list ("-" as the place).
"""

import json
import shutil
import time

import pytest

from conftest import http_call, rt_http, wait_until
from sioclient import SioDriver, node_available
from test_socketio_recovery import opts
from test_redis import health, redis, redis_command, redis_up  # noqa: F401

pytestmark = [pytest.mark.asan,
              pytest.mark.skipif(not shutil.which("redis-server"),
                                 reason="redis-server is not installed"),
              pytest.mark.skipif(not node_available(),
                                 reason="node or socket.io-client missing")]

PREFIX = "s:"


def conf(redis_port, size="1000 5m", ttl="30s"):
    return rt_http(presence="off", http_extra=(
        "realtime_redis rt redis://127.0.0.1:%d/0 prefix=%s "
        "connect_timeout=1s command_timeout=2s;" % (redis_port, PREFIX)),
        locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_history %s;
            realtime_socketio_recovery %s;
        }
    """ % (size, ttl))


def start_two(rt, redis, **kw):
    a = rt.start(conf(redis.port, **kw))
    b = rt.start(conf(redis.port, **kw))
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)
    return a, b


def url(ngx):
    return "http://127.0.0.1:%d" % ngx.port


def push(ngx, room, n):
    r = http_call(ngx.port, "POST", "/sendPayload", json.dumps(
        {"room": room, "topic": "m", "payload": n}),
        {"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["synced"] is True, r


def seq(place):
    """A place: the instance id (16 characters), then the sequence."""
    assert len(place) > 16 and place[16:].isdigit(), place
    return int(place[16:])


def joined(drv, name, rooms):
    for room in rooms:
        ack = drv.emit(name, "join", {"room": room})
        assert ack[0]["room"] == room, ack


def observe(drv, ngx, rooms):
    """A member of each room on ngx, so that its zone has their history."""
    drv.connect("obs", url(ngx), **opts())
    joined(drv, "obs", rooms)


def away_and_back(drv, a, b, rooms, missed, push_on=None):
    """s on a in rooms gets 1..3, its transport goes, missed are pushed
    while it is away, and it comes back on b: recovered, same id."""
    drv.connect("s", url(a), **opts(reconnectionDelay=600,
                                    reconnectionDelayMax=600))
    sid = drv.state("s")["id"]
    joined(drv, "s", rooms)
    time.sleep(0.3)
    for n in range(1, 4):
        push(a, rooms[n % len(rooms)], n)
    got = drv.wait("s", "m", count=3)
    assert [g[0] for g in got] == [1, 2, 3], got

    drv.drop("s", url=url(b))
    for n, room in missed:
        push(push_on or a, room, n)
    back = drv.wait("s", "$connect", timeout=10)
    assert back == [[sid, True]], back
    st = drv.state("s")
    assert st["id"] == sid and st["recovered"] is True, st
    return sid


def test_back_on_the_other_instance_from_its_zone(rt, redis):
    """Rooms with a member on b: b's zone holds what was missed, replayed
    in order with b's places, then live ones once."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        observe(drv, b, ["r1", "r2"])
        missed = [(n, "r1" if n % 2 else "r2") for n in range(4, 12)]
        away_and_back(drv, a, b, ["r1", "r2"], missed)
        got = drv.wait("s", "m", count=8, timeout=10)
        assert [g[0] for g in got] == list(range(4, 12)), got
        places = [seq(g[1]) for g in got]
        assert places == sorted(places), got
        push(b, "r1", 12)
        push(a, "r2", 13)
        got = drv.wait("s", "m", count=2)
        assert [g[0] for g in got] == [12, 13], got
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []
    assert "not recovered" not in b.error_log()


def test_back_on_the_other_instance_from_redis(rt, redis):
    """Nobody in the rooms on b: Redis's lists give what was missed, room
    by room in order, with "-" as the place; then live ones."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        missed = [(n, "r1" if n % 2 else "r2") for n in range(4, 12)]
        away_and_back(drv, a, b, ["r1", "r2"], missed)
        got = drv.wait("s", "m", count=8, timeout=10)
        r1 = [g[0] for g in got if g[0] % 2]
        r2 = [g[0] for g in got if g[0] % 2 == 0]
        assert r1 == [5, 7, 9, 11] and r2 == [4, 6, 8, 10], got
        assert all(g[1] == "-" for g in got), got
        push(a, "r1", 12)
        push(b, "r2", 13)
        got = drv.wait("s", "m", count=2)
        assert [g[0] for g in got] == [12, 13], got
        assert all(g[1][16:].isdigit() for g in got), got
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_mixed_rooms_redis_first_then_the_zone(rt, redis):
    """r1 has a member on b, r2 not: r2's missed come from Redis first,
    then r1's from b's zone; each room in order, each message once."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        observe(drv, b, ["r1"])
        missed = [(n, "r1" if n % 2 else "r2") for n in range(4, 12)]
        away_and_back(drv, a, b, ["r1", "r2"], missed, push_on=b)
        got = drv.wait("s", "m", count=8, timeout=10)
        assert [g[0] for g in got] == [4, 6, 8, 10, 5, 7, 9, 11], got
        assert [g[1] for g in got[:4]] == ["-"] * 4, got
        places = [seq(g[1]) for g in got[4:]]
        assert places == sorted(places), got
        push(a, "r1", 12)
        push(a, "r2", 13)
        got = drv.wait("s", "m", count=2)
        assert [g[0] for g in got] == [12, 13], got


def test_back_and_forth_between_instances(rt, redis):
    """a -> b -> a: each time the same id, nothing lost or twice; the
    kept session is taken out of Redis each time."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        observe(drv, b, ["r"])
        missed = [(n, "r") for n in range(4, 8)]
        sid = away_and_back(drv, a, b, ["r"], missed)
        got = drv.wait("s", "m", count=4, timeout=10)
        assert [g[0] for g in got] == [4, 5, 6, 7], got
        pid = drv.state("s")["pid"]
        assert redis_command(redis.port, "EXISTS",
                             "%ssio:{%s}" % (PREFIX, pid)) == b":0\r\n"
        push(b, "r", 8)
        assert [g[0] for g in drv.wait("s", "m")] == [8]

        drv.drop("s", url=url(a))
        for n in range(9, 13):
            push(b, "r", n)
        back = drv.wait("s", "$connect", timeout=10)
        assert back == [[sid, True]], back
        got = drv.wait("s", "m", count=4, timeout=10)
        assert [g[0] for g in got] == [9, 10, 11, 12], got
        push(a, "r", 13)
        assert [g[0] for g in drv.wait("s", "m")] == [13]
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_gone_again_during_a_redis_replay_is_a_new_session(rt, redis):
    """Back with "-" (it got only Redis's replay) is a new session: its
    place in this zone is unknown, never a wrong replay."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        away_and_back(drv, a, b, ["r"], [(n, "r") for n in range(4, 6)])
        got = drv.wait("s", "m", count=2, timeout=10)
        assert [g for g in got] == [[4, "-"], [5, "-"]], got
        sid = drv.state("s")["id"]
        drv.drop("s", url=url(a))
        back = drv.wait("s", "$connect", timeout=10)
        assert len(back) == 1 and back[0][0] != sid and back[0][1] is False
    assert "not recovered: no offset of the instance that kept it" in \
        a.error_log() + b.error_log()


def test_not_recovered_past_the_history_on_the_other_instance(rt, redis):
    a, b = start_two(rt, redis, size="3 5m")
    with SioDriver() as drv:
        drv.connect("s", url(a), **opts(reconnectionDelay=600,
                                        reconnectionDelayMax=600))
        sid = drv.state("s")["id"]
        joined(drv, "s", ["r"])
        time.sleep(0.3)
        push(a, "r", 1)
        drv.wait("s", "m")
        drv.drop("s", url=url(b))
        for n in range(2, 10):
            push(a, "r", n)
        back = drv.wait("s", "$connect", timeout=10)
        assert len(back) == 1 and back[0][0] != sid and back[0][1] is False
        push(b, "r", 10)
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []
    assert "a room's history does not hold what it missed" in b.error_log()


def test_a_bad_record_in_redis_is_a_new_session(rt, redis):
    """Whatever the key holds, the client gets a new session and the
    instance keeps serving."""
    a, b = start_two(rt, redis)
    bad = ['x', '{}', '{"id":"1","nsp":"/","user":"","rooms":[]}',
           '{"id":"aaaaaaaaaaaaaaaaaaaa","nsp":"/","user":"","rooms":'
           '[["r","0000000000000000",true,[5,1,3,2]]]}',
           '{"id":"aaaaaaaaaaaaaaaaaaaa","nsp":"/","user":"","rooms":'
           '[[1,2,3,4],["r"]]}']
    with SioDriver() as drv:
        for i, value in enumerate(bad):
            name = "s%d" % i
            drv.connect(name, url(a), **opts(reconnectionDelay=700,
                                             reconnectionDelayMax=700))
            sid = drv.state(name)["id"]
            pid = drv.state(name)["pid"]
            joined(drv, name, ["r"])
            push(a, "r", i)
            drv.wait(name, "m")
            key = "%ssio:{%s}" % (PREFIX, pid)
            drv.drop(name, url=url(b))
            assert wait_until(lambda: redis_command(
                redis.port, "EXISTS", key) == b":1\r\n", 3)
            assert redis_command(redis.port, "SET", key, value) == \
                b"+OK\r\n"
            back = drv.wait(name, "$connect", timeout=10)
            assert len(back) == 1 and back[0][0] != sid, (value, back)
            assert back[0][1] is False, (value, back)
            drv.disconnect(name)
        # still serving: a new client gets its messages
        drv.connect("ok", url(b), **opts())
        joined(drv, "ok", ["q"])
        push(a, "q", 99)
        assert drv.wait("ok", "m")[0][0] == 99


def test_redis_down_is_a_new_session(rt, redis):
    """The kept session is Redis's: without Redis the client gets a new
    session (socket.recovered false), never a replay it cannot trust."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        drv.connect("s", url(a), **opts(reconnectionDelay=1500,
                                        reconnectionDelayMax=1500))
        sid = drv.state("s")["id"]
        joined(drv, "s", ["r"])
        push(a, "r", 1)
        drv.wait("s", "m")
        drv.drop("s", url=url(b))
        time.sleep(0.3)
        redis.stop()
        back = drv.wait("s", "$connect", timeout=10)
        assert len(back) == 1 and back[0][0] != sid, back
        assert back[0][1] is False, back
    assert "not recovered: unknown, gone or Redis unreachable" \
        in b.error_log()


@pytest.mark.no_asan
@pytest.mark.parametrize("observed", [False, True])
def test_pushes_all_along_each_once_in_order(rt, redis, observed):
    """A publisher pushes without a pause while the client goes and comes
    back to the other instance: it ends with every message exactly once,
    in order (the boundary between replay and live loses nothing)."""
    import threading
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        if observed:
            observe(drv, b, ["r"])
        drv.connect("s", url(a), **opts(reconnectionDelay=300,
                                        reconnectionDelayMax=300))
        sid = drv.state("s")["id"]
        joined(drv, "s", ["r"])
        time.sleep(0.3)
        sent = []
        stop = threading.Event()

        def publisher():
            n = 0
            while not stop.is_set() and n < 3000:
                n += 1
                push(a if n % 2 else b, "r", n)
                sent.append(n)
                time.sleep(0.002)

        t = threading.Thread(target=publisher)
        t.start()
        try:
            time.sleep(0.3)
            drv.drop("s", url=url(b))
            back = drv.wait("s", "$connect", timeout=10)
            assert back == [[sid, True]], back
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(10)
        got = drv.wait("s", "m", count=len(sent), timeout=10)
        assert [g[0] for g in got] == sent, \
            [g[0] for g in got][:50]
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_gone_again_after_a_mixed_replay_nothing_twice(rt, redis):
    """Back on b with r2 from Redis ("-") and r1 from b's zone (numbered),
    gone again before anything live, back on a: recovered, and nothing
    is replayed twice (what came from Redis counts as got)."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        observe(drv, b, ["r1"])
        missed = [(n, "r1" if n % 2 else "r2") for n in range(4, 12)]
        sid = away_and_back(drv, a, b, ["r1", "r2"], missed, push_on=b)
        got = drv.wait("s", "m", count=8, timeout=10)
        assert sorted(g[0] for g in got) == list(range(4, 12)), got

        drv.drop("s", url=url(a))
        back = drv.wait("s", "$connect", timeout=10)
        assert back == [[sid, True]], back
        time.sleep(0.5)
        assert [e for e in drv.events("s") if e[0] == "m"] == []
        push(a, "r2", 12)
        push(b, "r1", 13)
        got = drv.wait("s", "m", count=2)
        assert [g[0] for g in got] == [12, 13], got


@pytest.mark.parametrize("before", [False, True])
def test_a_quiet_room_recovers_on_the_other_instance(rt, redis, before):
    """Nothing is published in q while s is in it (before: q had some
    earlier, which s must not get): its place is where Redis was when the
    transport went, and what came while it was away is replayed."""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        if before:
            push(a, "q", 100)
            push(a, "q", 101)
        drv.connect("s", url(a), **opts(reconnectionDelay=600,
                                        reconnectionDelayMax=600))
        sid = drv.state("s")["id"]
        joined(drv, "s", ["q", "r"])
        time.sleep(0.3)
        push(a, "r", 1)
        assert [g[0] for g in drv.wait("s", "m")] == [1]
        drv.drop("s", url=url(b))
        time.sleep(0.2)
        push(a, "q", 2)
        push(b, "q", 3)
        push(a, "r", 4)
        back = drv.wait("s", "$connect", timeout=10)
        assert back == [[sid, True]], back
        got = drv.wait("s", "m", count=3, timeout=10)
        assert sorted(g[0] for g in got) == [2, 3, 4], got
        assert [g[0] for g in got if g[0] in (2, 3)] == [2, 3], got
        push(b, "q", 5)
        assert [g[0] for g in drv.wait("s", "m")] == [5]
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_a_room_never_published_recovers_empty(rt, redis):
    """A room Redis has nothing of: recovered, and the first publication
    after comes live.  (A client that got nothing at all has no offset to
    send back: a new session, as in Node.)"""
    a, b = start_two(rt, redis)
    with SioDriver() as drv:
        drv.connect("s", url(a), **opts())
        sid = drv.state("s")["id"]
        joined(drv, "s", ["empty", "r"])
        time.sleep(0.3)
        push(a, "r", 0)
        drv.wait("s", "m")
        drv.drop("s", url=url(b))
        back = drv.wait("s", "$connect", timeout=10)
        assert back == [[sid, True]], back
        time.sleep(0.3)
        push(a, "empty", 1)
        assert [g[0] for g in drv.wait("s", "m")] == [1]
