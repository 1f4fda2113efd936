"""realtime_history with realtime_redis: Redis gives each room's offsets
(one script runs the offset, the kept list and the PUBLISH), so they are
the same on every instance, and a client recovers on any of them. Two
instances with two workers each and a real redis-server on loopback.
"""

import json
import shutil
import time

import pytest

from conftest import http_call, rt_http, wait_until
from test_history import join, messages
from test_redis import health, redis, redis_command, redis_up  # noqa: F401

pytestmark = [pytest.mark.asan,
              pytest.mark.skipif(not shutil.which("redis-server"),
                                 reason="redis-server is not installed")]


def history_conf(url, size="100 5m"):
    return rt_http(presence="off",
                   http_extra="realtime_redis rt %s prefix=h: "
                              "connect_timeout=1s command_timeout=2s;" % url,
                   ws_extra="realtime_history %s;" % size,
                   locations="location = /hpush { realtime_push rt; "
                             "realtime_history %s; }" % size)


def start_two(rt, redis, size="100 5m"):
    url = "redis://127.0.0.1:%d/0" % redis.port
    a = rt.start(history_conf(url, size))
    b = rt.start(history_conf(url, size))
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)
    return a, b


def push(port, room, n):
    r = http_call(port, "POST", "/sendPayload", json.dumps(
        {"room": room, "topic": "m", "payload": n}),
        {"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["synced"] is True, r
    return r.json()


def come_back(rt, port, room, last, data):
    """A client back on port since its last message: recovered, at the
    right place, and the missed data replayed with their offsets."""
    c = rt.client("u", port=port)
    back = join(c, room, since={"epoch": last["epoch"],
                                "offset": last["offset"]})
    n = len(data)
    assert back["recovered"] is True, back
    assert back["epoch"] == last["epoch"], back
    assert back["offset"] == last["offset"] + n, back
    replay = messages(c, n)
    assert [m["data"] for m in replay] == data, replay
    assert [m["offset"] for m in replay] == \
        list(range(last["offset"] + 1, last["offset"] + n + 1))
    return c


def spread(rt, ngx, users):
    """Clients on both workers of one instance."""
    rt.ngx = ngx
    return rt.clients_spread(users)


def test_same_offsets_on_both_instances(rt, redis):
    """Pushes through A and B and a client's publish: every member, on
    any worker of either instance, gets offsets 1..n in the same order
    with one epoch, each once."""
    a, b = start_two(rt, redis)
    members = spread(rt, a, ["a1", "a2"]) + spread(rt, b, ["b1", "b2"])
    for c in members:
        join(c, "battle:1")
    time.sleep(0.3)             # B's and A's SUBSCRIBEs are confirmed

    for n in range(1, 31):
        push((a, b)[n % 2].port, "battle:1", n)
    members[2].publish("battle:1", "chat", "hi")

    # a push is answered once Redis ran it: the order of the answers
    seen = []
    for c in members:
        want = 31 if c is not members[2] else 30
        got = messages(c, want)
        assert len({m["epoch"] for m in got}) == 1, got
        seen.append([(m["offset"], m["data"]) for m in got])
        c.assert_silent(0.2)
    assert seen[0] == seen[1] == seen[3], seen
    assert [o for o, _ in seen[0]] == list(range(1, 32)), seen[0]
    assert [d for _, d in seen[0] if d != "hi"] == list(range(1, 31))
    # the publisher does not get its own message; the rest is the same
    assert [x for x in seen[0] if x[1] != "hi"] == seen[2]


def test_recovery_on_the_other_instance(rt, redis):
    """A client on A gets 1..5, goes; 6..15 are pushed through B; it
    comes back to B with the position of its last message and gets
    exactly 6..15, then live ones."""
    a, b = start_two(rt, redis)
    watcher = rt.client("w", port=b.port)
    join(watcher, "game")
    c = rt.client("u", port=a.port)
    join(c, "game")
    time.sleep(0.3)
    for n in range(1, 6):
        push(a.port, "game", n)
    got = messages(c, 5)
    last = got[-1]
    assert [m["data"] for m in got] == [1, 2, 3, 4, 5]
    c.close()
    rt.clients.remove(c)

    for n in range(6, 16):
        push(b.port, "game", n)
    assert [m["data"] for m in messages(watcher, 15)] == list(range(1, 16))

    c = come_back(rt, b.port, "game", last, list(range(6, 16)))

    for n in range(16, 19):
        push(a.port, "game", n)
    assert [m["data"] for m in messages(c, 3)] == [16, 17, 18]
    c.assert_silent(0.3)


def test_gap_fill_after_the_subscribers_reconnect(rt, redis):
    """Redis drops every subscriber (CLIENT KILL TYPE pubsub); pushes
    made before they are back reach nobody by pub/sub. Each leader reads
    the rooms' lists once subscribed again: every member gets every
    message, in order, once."""
    a, b = start_two(rt, redis)
    members = [rt.client("a", port=a.port), rt.client("b", port=b.port),
               rt.client("c", port=b.port)]
    for c in members:
        join(c, "r")
    time.sleep(0.3)
    for n in range(1, 4):
        push(a.port, "r", n)
    for c in members:
        assert [m["data"] for m in messages(c, 3)] == [1, 2, 3]

    for run in range(3):
        assert redis_command(redis.port, "CLIENT", "KILL", "TYPE",
                             "pubsub").startswith(b":"), run
        # before the subscribers come back (a backoff of 125 ms at least)
        base = 10 * (run + 1)
        for k in range(5):
            push((a, b)[k % 2].port, "r", base + k)
        seen = []
        for c in members:
            got = [(m["offset"], m["data"]) for m in messages(c, 5)]
            assert [d for _, d in got] == \
                [base + k for k in range(5)], (run, c, got)
            seen.append(got)
        # in the order of the answers, the same everywhere, no gap
        assert seen[0] == seen[1] == seen[2], seen
        assert [o for o, _ in seen[0]] == \
            list(range(3 + 5 * run + 1, 3 + 5 * run + 6)), seen[0]
        for ngx in (a, b):
            assert wait_until(lambda: redis_up(ngx.port), 5)
    push(b.port, "r", 99)
    for c in members:
        assert c.recv()["data"] == 99
        c.assert_silent(0.3)
    assert "gap fill" not in a.error_log() + b.error_log()


def test_first_member_gets_the_first_publication(rt, redis):
    """The room's SUBSCRIBE may not be confirmed when a push follows the
    join at once: this worker's own publications come from the script's
    answer then, and once only."""
    a, b = start_two(rt, redis)
    c = rt.client("x", port=a.port)
    for i in range(10):
        room = "fresh:%d" % i
        join(c, room, id=i + 1)
        push(a.port, room, i)
        ev = c.recv()
        assert ev["data"] == i, ev
        assert ev["offset"] == 1, ev
    c.assert_silent(0.3)

    # made certain: with the subscriber gone (it comes back after 125 ms
    # at least), only the script's answer can bring it before that; the
    # push is answered once it is queued to the member
    for run in range(3):
        assert redis_command(redis.port, "CLIENT", "KILL", "TYPE",
                             "pubsub").startswith(b":")
        time.sleep(0.02)
        push(a.port, "fresh:0", "answer%d" % run)
        ev = c.recv(timeout=0.08)
        assert ev["data"] == "answer%d" % run, ev
        assert wait_until(lambda: redis_up(a.port), 5)
        # and once only, when the gap fill brings it again
        c.assert_silent(0.3)


def test_the_room_history_in_redis_is_bounded(rt, redis):
    a, b = start_two(rt, redis, size="10 5m")
    c = rt.client("x", port=b.port)
    join(c, "big")
    time.sleep(0.3)
    for n in range(30):
        push(a.port, "big", n)
    assert [m["data"] for m in messages(c, 30)] == list(range(30))
    assert redis_command(redis.port, "LLEN", "h:history:{big}") == b":10\r\n"
    ttl = int(redis_command(redis.port, "PTTL", "h:history:{big}")[1:])
    assert 0 < ttl <= 300000, ttl
    ttl = int(redis_command(redis.port, "PTTL", "h:offset:{big}")[1:])
    assert 0 < ttl <= 300000, ttl


def test_a_message_that_is_not_ours_is_ignored(rt, redis):
    """Garbage on a room's channel is logged and dropped; the room goes
    on."""
    a, b = start_two(rt, redis)
    c = rt.client("x", port=b.port)
    join(c, "r")
    time.sleep(0.3)
    for bad in ("rt2 ", "rt2 0123456789abcdef 0 x", "rt2 0123456789abcdef "
                "0 5 0123456789abcdef 1 0\nr", "rt2 0123456789abcdef 0 0 "
                "0123456789abcdef 1 0\nr{}", "rt2 0123456789abcdef 0 1 "
                "0123456789abcdef 9999 0\nr{}"):
        assert redis_command(redis.port, "PUBLISH", "h:room:{r}",
                             bad).startswith(b":")
    push(a.port, "r", "after")
    ev = c.recv()
    assert ev["data"] == "after" and ev["offset"] == 1, ev
    c.assert_silent(0.3)
    assert wait_until(lambda: "not ours" in b.error_log(), 3)


def test_recovery_from_redis_where_nobody_was_in_the_room(rt, redis):
    """B never had the room: the join since reads Redis's list, then
    the subscription's live ones, in order, once."""
    a, b = start_two(rt, redis, size="20 5m")
    c = rt.client("u", port=a.port)
    join(c, "quiet")
    time.sleep(0.3)
    push(a.port, "quiet", 1)
    last = c.recv()
    c.close()
    rt.clients.remove(c)
    for n in range(2, 12):
        push(a.port, "quiet", n)

    c = come_back(rt, b.port, "quiet", last, list(range(2, 12)))
    for n in range(12, 15):
        push((a, b)[n % 2].port, "quiet", n)
    assert [m["data"] for m in messages(c, 3)] == [12, 13, 14]
    c.assert_silent(0.3)

    # up to date: recovered, nothing replayed
    d = rt.client("v", port=b.port)
    late = join(d, "quiet", since={"epoch": last["epoch"],
                                   "offset": last["offset"] + 13})
    assert late["recovered"] is True and late["offset"] == \
        last["offset"] + 13, late
    d.assert_silent(0.3)


def test_no_partial_recovery_from_redis(rt, redis):
    """Redis keeps 5: a gap of 10 is not recovered, nor another epoch;
    nothing is replayed, live ones come; a client that goes while its
    recovery waits harms nothing."""
    a, b = start_two(rt, redis, size="5 5m")
    c = rt.client("u", port=a.port)
    join(c, "short")
    time.sleep(0.3)
    push(a.port, "short", 0)
    last = c.recv()
    for n in range(1, 11):
        push(a.port, "short", n)
    messages(c, 10)

    d = rt.client("u2", port=b.port)
    back = join(d, "short", since={"epoch": last["epoch"],
                                   "offset": last["offset"]})
    assert back["recovered"] is False, back
    d.assert_silent(0.3)
    e = rt.client("u3", port=b.port)
    other = join(e, "short", since={"epoch": "x" * 16, "offset": 1})
    assert other["recovered"] is False, other
    e.assert_silent(0.3)
    push(a.port, "short", "live")
    for x in (c, d, e):
        assert x.recv()["data"] == "live"

    # gone before its answer: B goes on
    for i in range(5):
        f = rt.client("gone%d" % i, port=b.port)
        f.send({"event": "join", "id": 1, "data": {
            "room": "new%d" % i,
            "since": {"epoch": last["epoch"], "offset": 1}}})
        f.close()
        rt.clients.remove(f)
    push(b.port, "short", "still")
    for x in (c, d, e):
        assert x.recv()["data"] == "still"
    assert health(b.port)[0] == 200


def test_a_push_redis_never_confirmed_says_so(rt, redis):
    """Redis holds the script (CLIENT PAUSE WRITE) and the connection is
    killed under it: the push is answered 503 REDIS_UNCONFIRMED, not a
    success; the next one goes."""
    import threading
    a, b = start_two(rt, redis)
    c = rt.client("x", port=b.port)
    join(c, "r")
    time.sleep(0.3)
    assert redis_command(redis.port, "CLIENT", "PAUSE", "3000",
                         "WRITE") == b"+OK\r\n"
    answer = {}

    def held():
        r = http_call(a.port, "POST", "/sendPayload", json.dumps(
            {"room": "r", "topic": "m", "payload": "held"}),
            {"Content-Type": "application/json"}, timeout=10)
        answer["r"] = r

    t = threading.Thread(target=held)
    t.start()
    time.sleep(0.5)
    assert "r" not in answer            # waits for Redis
    assert redis_command(redis.port, "CLIENT", "KILL", "TYPE",
                         "normal").startswith(b":")
    t.join(10)
    assert redis_command(redis.port, "CLIENT", "UNPAUSE") == b"+OK\r\n"
    r = answer["r"]
    assert r.status == 503, r
    body = r.json()
    assert body["code"] == "REDIS_UNCONFIRMED" and body["synced"] is False
    assert "delivered" not in body and "message" not in body, body

    assert wait_until(lambda: redis_up(a.port), 5)
    push(a.port, "r", "next")
    got = c.recv()
    assert got["data"] == "next", got
    c.assert_silent(0.3)


def test_a_graceful_stop_waits_for_the_push_redis_holds(rt, redis):
    """nginx -s quit while a push waits for Redis (CLIENT PAUSE): the
    worker stays until the push is answered (Redis's command timeout
    drops the connection: 503 REDIS_UNCONFIRMED), then exits cleanly,
    a join since that waits for Redis too."""
    import threading
    a, b = start_two(rt, redis)
    c = rt.client("x", port=b.port)
    join(c, "r")
    w = rt.client("w", port=a.port)
    assert redis_command(redis.port, "CLIENT", "PAUSE", "4000",
                         "WRITE") == b"+OK\r\n"
    w.send({"event": "join", "id": 1, "data": {
        "room": "q", "since": {"epoch": "e" * 16, "offset": 1}}})
    answer = {}

    def held():
        answer["r"] = http_call(a.port, "POST", "/sendPayload", json.dumps(
            {"room": "r", "topic": "m", "payload": 1}),
            {"Content-Type": "application/json"}, timeout=15)

    t = threading.Thread(target=held)
    t.start()
    time.sleep(0.5)
    assert a.quit(timeout=10)
    t.join(15)
    r = answer["r"]
    assert r.status in (200, 503), r
    if r.status == 503:
        assert r.json()["code"] == "REDIS_UNCONFIRMED", r
    redis_command(redis.port, "CLIENT", "UNPAUSE")
    assert "open socket" not in a.error_log()
