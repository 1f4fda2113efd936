"""Push flow control (realtime_push_backlog): a push answer waits while
another worker is more than N publications behind, so a publisher that
sends as fast as it is answered is paced by the slowest worker.

A worker is made to fall behind for real: SIGSTOP. Its queue then fills
with the publications for its members; the answers are held, and let go
either by its drain (SIGCONT) or after the 100 ms bound. Nothing is lost:
the stopped worker's members get every publication, in order, after it.
"""

import http.client
import json
import os
import signal
import threading
import time

import pytest

from conftest import rt_http

pytestmark = pytest.mark.asan     # also run by make integration-asan

ROOM = "flow"
BACKLOG = 16        # realtime_push_backlog's default


def start(rt, backlog=None):
    extra = "" if backlog is None else \
        "location = /push_flow { realtime_push rt; " \
        "realtime_push_backlog %s; }" % backlog
    return rt.start(rt_http(presence="off", locations=extra))


def members(rt):
    """A member of ROOM on each worker: (running, stopped-to-be)."""
    pa, pb = rt.two_pids()
    a, b = rt.client_on(pa, "a"), rt.client_on(pb, "b")
    for c in (a, b):
        assert c.join(ROOM)["event"] == "joined"
    return a, b


class Pusher:
    """A keep-alive HTTP connection held by the worker that runs: with
    the other one stopped, a connection that it would take gets no
    answer, and another is tried."""

    def __init__(self, port, attempts=40):
        for _ in range(attempts):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
            try:
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                assert r.status == 200
                conn.timeout = 5.0
                conn.sock.settimeout(5.0)
                self.conn = conn
                return
            except OSError:
                conn.close()
        raise AssertionError("no connection reached the running worker")

    def push(self, body, path="/sendPayload"):
        t0 = time.monotonic()
        self.conn.request("POST", path, json.dumps(body),
                          {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        doc = json.loads(r.read())
        return r.status, doc, time.monotonic() - t0

    def metrics(self):
        self.conn.request("GET", "/metrics")
        r = self.conn.getresponse()
        m = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        return m

    def close(self):
        self.conn.close()


class Stopped:
    """SIGSTOP a worker for the block; SIGCONT whatever happens."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def msg(i):
    return {"event": "t", "room": ROOM, "data": i}


def push_body(i):
    return {"room": ROOM, "topic": "t", "payload": i}


# --------------------------------------------------------------------------


def test_behind_worker_holds_answers_past_the_backlog(rt):
    """The default backlog is 16 publications: with the other worker
    stopped, the first 16 pushes are answered at once and the 17th waits
    out the 100 ms bound. A queue that has not drained for that long is a
    stuck worker's, and the pushes after are answered at once again
    instead of each waiting 100 ms. Every answer is a 200 for both
    members; the running worker's member has them all at once and the
    stopped one gets all of them, in order, when it runs again."""
    start(rt)
    a, b = members(rt)
    times = []
    N = BACKLOG + 4

    with Stopped(b.pid):
        pusher = Pusher(rt.port)
        before = pusher.metrics()
        for i in range(N):
            status, doc, took = pusher.push(push_body(i))
            assert (status, doc) == (200, {"message": "Payload sent "
                                           "successfully", "delivered": 2})
            times.append(took)
        for i in range(N):
            assert a.recv() == msg(i)
        b.assert_silent(0.05)
        after = pusher.metrics()

    held = [t for t in times if t >= 0.08]
    assert len(held) == 1, times
    assert 0.08 <= times[BACKLOG] < 1.0, times
    for i in range(N):
        assert b.recv() == msg(i)

    key = 'realtime_push_held%s_total{zone="rt"}'
    assert after[key % ""] - before[key % ""] == 1, (before, after)
    assert after[key % "_timeout"] - before[key % "_timeout"] == 1

    # caught up: answered at once again, and both get it
    status, doc, took = pusher.push(push_body(N))
    assert status == 200 and doc["delivered"] == 2 and took < 0.08, took
    assert a.recv() == msg(N) and b.recv() == msg(N)

    # and a worker that falls behind again is waited for again
    times = []
    more = range(N + 1, N + 2 + BACKLOG)
    with Stopped(b.pid):
        for i in more:
            status, doc, took = pusher.push(push_body(i))
            assert status == 200 and doc["delivered"] == 2, doc
            times.append(took)
    assert max(times[:BACKLOG]) < 0.08 and times[BACKLOG] >= 0.08, times
    for i in more:
        assert a.recv() == msg(i) and b.recv() == msg(i)
    pusher.close()


def test_backlog_0_answer_waits_for_the_other_workers_drain(rt):
    """realtime_push_backlog 0: the answer means every worker has written
    the publication. Held while the other worker is stopped, the answer
    is let go by that worker's drain once it runs (well inside the 100 ms
    bound, and counted as held but not timed out), and its member has the
    message by then."""
    start(rt, 0)
    a, b = members(rt)
    answer = {}

    def send():
        answer["r"] = pusher.push(push_body(1), "/push_flow")
        answer["at"] = time.monotonic()

    with Stopped(b.pid):
        pusher = Pusher(rt.port)
        before = pusher.metrics()
        th = threading.Thread(target=send)
        th.start()
        assert a.recv() == msg(1)
        time.sleep(0.03)
        assert th.is_alive(), "answered while the other worker was stopped"
        resumed = time.monotonic()
    th.join(5)
    assert not th.is_alive()

    status, doc, took = answer["r"]
    assert status == 200 and doc["delivered"] == 2, doc
    assert answer["at"] - resumed < 0.06, (answer["at"] - resumed, took)
    assert b.recv(timeout=0.2) == msg(1)

    after = pusher.metrics()
    key = 'realtime_push_held%s_total{zone="rt"}'
    assert after[key % ""] - before[key % ""] == 1, (before, after)
    assert after[key % "_timeout"] == before[key % "_timeout"]
    pusher.close()


def test_backlog_off_never_holds(rt):
    """realtime_push_backlog off: answers go at once however far behind
    another worker is; the stopped worker's member still gets them all."""
    start(rt, "off")
    a, b = members(rt)
    with Stopped(b.pid):
        pusher = Pusher(rt.port)
        for i in range(10):
            status, doc, took = pusher.push(push_body(i), "/push_flow")
            assert status == 200 and doc["delivered"] == 2, doc
            assert took < 0.08, (i, took)
        for i in range(10):
            assert a.recv() == msg(i)

    for i in range(10):
        assert b.recv() == msg(i)
    m = pusher.metrics()
    assert m['realtime_push_held_total{zone="rt"}'] == 0, m
    pusher.close()


def test_publisher_closing_while_held_loses_nothing(rt):
    """A push whose connection closes while its answer is held: the
    request goes (its cleanup takes it out of the held list), the
    publication is still delivered on both workers, and the next pushes
    are answered normally."""
    start(rt, 0)
    a, b = members(rt)
    with Stopped(b.pid):
        pusher = Pusher(rt.port)
        pusher.conn.request("POST", "/push_flow", json.dumps(push_body(1)),
                            {"Content-Type": "application/json"})
        assert a.recv() == msg(1)
        pusher.close()
        time.sleep(0.02)

    assert b.recv() == msg(1)
    time.sleep(0.15)     # past the bound: a stale timer would fire now
    r = rt.push(push_body(2), path="/push_flow")
    assert r.status == 200 and r.json()["delivered"] == 2, r
    assert a.recv() == msg(2) and b.recv() == msg(2)
    h = rt.health()
    assert h["connections"] == 2 and h["workers"] == 2, h
