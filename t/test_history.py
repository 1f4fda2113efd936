"""realtime_history: per-room offsets from one place (the zone), carried
by every delivered message, answered by "joined", and a join "since" a
place that replays exactly what was missed, across two workers.
"""

import json
import threading
import time

import pytest

from conftest import http_call, rt_http, wait_until

pytestmark = pytest.mark.asan


def history_http(size="100 5m", extra=""):
    return rt_http(presence="off", ws_extra="realtime_history %s;%s"
                   % (size, extra), locations="""
        location = /hpush { realtime_push rt; realtime_history %s; }
    """ % size)


def push(env, room, n, path="/sendPayload"):
    r = http_call(env.port, "POST", path, json.dumps(
        {"room": room, "topic": "m", "payload": n}),
        {"Content-Type": "application/json"})
    assert r.status == 200, r
    return r.json()


def join(c, room, since=None, id=1):
    data = {"room": room}
    if since is not None:
        data["since"] = since
    c.send({"event": "join", "data": data, "id": id})
    ev = c.recv()
    assert ev["event"] == "joined" and ev["id"] == id, ev
    return ev["data"]


def messages(c, count, timeout=5):
    return [c.recv(timeout=timeout) for _ in range(count)]


def test_offsets_from_one_place_in_order_on_both_workers(rt):
    """Pushes through both workers: every member, on either worker, gets
    offsets 1..n of the room in order, with the room's epoch."""
    rt.start(history_http())
    members = rt.clients_spread(["a", "b", "c", "d"])
    places = [join(c, "r1") for c in members]
    epoch = places[0]["epoch"]
    assert len(epoch) == 16 and all(p["epoch"] == epoch and p["offset"] == 0
                                    for p in places), places

    # fresh connections: either worker takes each push
    for n in range(1, 41):
        push(rt, "r1", n)
    for c in members:
        got = messages(c, 40)
        assert [m["offset"] for m in got] == list(range(1, 41)), got
        assert all(m["epoch"] == epoch for m in got)
        assert sorted(m["data"] for m in got) == list(range(1, 41))
        # the envelope is the same, the position last
        assert list(got[0])[:3] == ["event", "room", "data"], got[0]
        assert list(got[0])[-2:] == ["offset", "epoch"], got[0]
        c.assert_silent(0.2)

    # another room has its own offsets and epoch
    other = join(members[0], "r2", id=2)
    assert other["offset"] == 0 and other["epoch"] != epoch
    push(rt, "r2", "x")
    assert members[0].recv()["offset"] == 1


def test_client_publish_carries_the_position_and_skips_the_sender(rt):
    rt.start(history_http())
    a, b = rt.clients_spread(["a", "b"])
    for c in (a, b):
        join(c, "room")
    a.send({"event": "publish", "data": {"room": "room", "event": "chat",
                                         "data": "hi"}})
    ev = b.recv()
    assert ev["event"] == "chat" and ev["offset"] == 1, ev
    assert ev["from"] == "a" and ev["room"] == "room", ev
    a.assert_silent(0.3)


def test_recovery_replays_exactly_what_was_missed(rt):
    rt.start(history_http())
    watcher = rt.client("w")
    join(watcher, "game")
    c = rt.client("u")
    place = join(c, "game")
    for n in range(1, 6):
        push(rt, "game", n)
    got = messages(c, 5)
    last = got[-1]["offset"]
    assert last == 5
    c.close()
    rt.clients.remove(c)

    # missed while away
    for n in range(6, 16):
        push(rt, "game", n)
    assert [m["offset"] for m in messages(watcher, 15)] == \
        list(range(1, 16))

    c = rt.client("u")
    back = join(c, "game", since={"epoch": place["epoch"], "offset": last})
    assert back["recovered"] is True and back["offset"] == 15, back
    replay = messages(c, 10)
    assert [m["offset"] for m in replay] == list(range(6, 16)), replay
    assert [m["data"] for m in replay] == list(range(6, 16))

    # then live ones, with no gap and no duplicate
    for n in range(16, 21):
        push(rt, "game", n)
    assert [m["offset"] for m in messages(c, 5)] == list(range(16, 21))
    c.assert_silent(0.3)

    # nothing missed: recovered, nothing replayed
    c2 = rt.client("v")
    up_to_date = join(c2, "game", since={"epoch": place["epoch"],
                                         "offset": 20})
    assert up_to_date["recovered"] is True and up_to_date["offset"] == 20
    c2.assert_silent(0.3)


def test_not_recovered_when_the_history_does_not_cover_it(rt):
    """Beyond the bound, another epoch, an offset from the future:
    "recovered": false and nothing partial."""
    rt.start(history_http(size="5 5m"))
    c = rt.client("u")
    epoch = join(c, "g")["epoch"]
    for n in range(1, 13):
        push(rt, "g", n)
    messages(c, 12)

    d = rt.client("d")
    for since, why in (({"epoch": epoch, "offset": 3}, "trimmed"),
                       ({"epoch": "A" * 16, "offset": 11}, "epoch"),
                       ({"epoch": epoch, "offset": 99}, "future")):
        ans = join(d, "g", since=since)
        assert ans["recovered"] is False and ans["offset"] == 12, (why, ans)
        d.assert_silent(0.2)
        d.send({"event": "leave", "data": "g"})
        assert d.recv()["event"] == "left"

    # what it still holds is recovered: the last five
    ans = join(d, "g", since={"epoch": epoch, "offset": 7})
    assert ans["recovered"] is True
    assert [m["offset"] for m in messages(d, 5)] == [8, 9, 10, 11, 12]

    h = rt.health()
    assert h["history"] == {"rooms": 1, "messages": 5,
                            "bytes": h["history"]["bytes"]}, h
    assert h["history"]["bytes"] > 5 * 50


def test_history_expires_with_its_ttl(rt):
    rt.start(history_http(size="100 1s"))
    c = rt.client("u")
    epoch = join(c, "t")["epoch"]
    push(rt, "t", 1)
    assert c.recv()["offset"] == 1
    time.sleep(1.6)
    d = rt.client("d")
    ans = join(d, "t", since={"epoch": epoch, "offset": 0})
    assert ans["recovered"] is False, ans
    d.assert_silent(0.2)
    # the sweep drops expired entries of rooms nobody publishes to
    assert wait_until(lambda: rt.health()["history"]["messages"] == 0, 3), \
        rt.health()


def test_join_since_under_a_stream_of_pushes(rt):
    """Pushes keep coming while clients join since an old place: each
    sees one run of offsets, with no gap and no duplicate."""
    rt.start(history_http(size="1000 5m"))
    c = rt.client("u")
    epoch = join(c, "s")["epoch"]
    stop = threading.Event()
    sent = []

    def pusher():
        n = 0
        while not stop.is_set() and n < 400:
            n += 1
            push(rt, "s", n)
            sent.append(n)

    t = threading.Thread(target=pusher)
    t.start()
    try:
        time.sleep(0.2)
        joiners = []
        for i in range(4):
            j = rt.client("j%d" % i)
            ans = join(j, "s", since={"epoch": epoch, "offset": 0})
            assert ans["recovered"] is True, ans
            joiners.append(j)
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(20)
    total = len(sent)
    for j in [c] + joiners:
        got = [m["offset"] for m in messages(j, total, timeout=10)]
        assert got == list(range(1, total + 1)), (j, got[:20])
        j.assert_silent(0.3)


@pytest.mark.parametrize("since", [
    "3", {"epoch": 5, "offset": 1}, {"epoch": "e"}, {"offset": 1},
    {"epoch": "e", "offset": -1}, {"epoch": "e", "offset": "1"},
    {"epoch": "x" * 65, "offset": 1},
])
def test_bad_since_is_bad_request(rt, since):
    rt.start(history_http())
    c = rt.client("u")
    c.send({"event": "join", "data": {"room": "g", "since": since},
            "id": 4})
    ev = c.recv()
    assert ev["event"] == "error" and ev["id"] == 4, ev
    assert ev["data"]["code"] == "BAD_REQUEST", ev
    assert join(c, "g", id=5)["offset"] == 0


def test_no_history_no_position(rt):
    """Without realtime_history nothing changes: no offset anywhere, and a
    join since gets "recovered": false."""
    rt.start(rt_http(presence="off"))
    c = rt.client("u")
    ans = join(c, "g")
    assert ans == {"room": "g", "members": 1}, ans
    push(rt, "g", 1)
    assert c.recv() == {"event": "m", "room": "g", "data": 1}
    ans = join(c, "h", since={"epoch": "e" * 16, "offset": 1}, id=2)
    assert ans == {"room": "h", "members": 1, "recovered": False}, ans


def test_history_configuration(rt, tmp_path):
    from conftest import Nginx
    for bad, why in (("realtime_history 0 5m;", "1 to 100000"),
                     ("realtime_history 10;", "needs a time"),
                     ("realtime_history 10 never;", "invalid time")):
        ngx = Nginx(tmp_path / ("bad%d" % len(why)))
        ngx.write_conf(rt_http(ws_extra=bad))
        rc, out = ngx.test_conf()
        out += ngx.error_log()
        assert rc != 0 and why in out, (bad, out)
    ngx = Nginx(tmp_path / "differs")
    ngx.write_conf(rt_http(ws_extra="realtime_history 10 5m;",
                           locations="location /b { realtime rt; "
                                     "realtime_history 20 5m; }"))
    rc, out = ngx.test_conf()
    out += ngx.error_log()
    assert rc != 0 and "differs" in out, out
