"""Chaos that counts every message (`make chaos` runs the long form;
`make test` a short one). Publishers push numbered messages to one room
at a steady rate through both workers; native subscribers with
realtime_history reconnect whenever their socket goes (to whichever
worker takes them) and join "since" the last place they saw. Each
subscriber must end with every published message exactly once, in
offset order, with no gap: what it missed while away it recovers.

Scenarios: a worker SIGKILLed mid-run, `nginx -s reload` mid-run, a
subscriber too slow for its send buffer (closed 1008, then recovers),
and Redis stopped and started between two instances (what was published
while Redis was up must all arrive; the outage's is counted).
Counts per scenario (published, delivered live, recovered, lost) are
printed, and `make chaos` appends them to build/chaos.txt.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import TEST_WATCHDOG, http_call, rt_http, wait_until
from wsraw import RawWS

SECONDS = float(os.environ.get("NGX_REALTIME_CHAOS_SECONDS", "4"))
RATE = 150                        # pushes per second
ROOM = "chaos"
REPORT = os.environ.get("NGX_REALTIME_CHAOS_REPORT")

pytestmark = pytest.mark.skipif(SECONDS * 3 + 30 > TEST_WATCHDOG,
                                reason="longer than the test watchdog")


def chaos_http(extra="", zone="rt 16m"):
    return rt_http(zone=zone, presence="off",
                   http_extra="client_body_buffer_size 64k;",
                   ws_extra="realtime_history 100000 10m;" + extra)


class Publisher(threading.Thread):
    """Pushes n = 1, 2, ... on fresh connections (either worker). An
    answer that is lost (a worker killed under it) leaves n "unknown":
    delivered at most once, not counted lost."""

    def __init__(self, port, pad=0):
        super().__init__(daemon=True)
        self.port = port
        self.pad = "x" * pad
        self.ok = []
        self.unknown = []
        self.stop = threading.Event()

    def run(self):
        n = 0
        start = time.monotonic()
        while not self.stop.is_set():
            n += 1
            try:
                r = http_call(self.port, "POST", "/sendPayload", json.dumps(
                    {"room": ROOM, "topic": "c",
                     "payload": [n, self.pad] if self.pad else n}),
                    {"Content-Type": "application/json"}, timeout=3)
                (self.ok if r.status == 200 else self.unknown).append(n)
            except Exception:
                self.unknown.append(n)
            delay = start + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)


class Subscriber(threading.Thread):
    """A native client that comes back: join since its last place."""

    def __init__(self, port, name, rcvbuf=None, slow=False, ports=None):
        super().__init__(daemon=True)
        self.port = port
        self.ports = ports          # comes back to the next one of these
        self.name = name
        self.rcvbuf = rcvbuf
        self.slow = slow
        self.got = []               # (offset, n), in the order received
        self.recovered = 0          # messages that came by a replay
        self.reconnects = 0
        self.closes = []
        self.close_codes = []
        self.stalled = False
        self.failures = []
        self.epoch = None
        self.epochs = 0             # epochs seen in messages
        self.last = 0
        self.stop = threading.Event()
        self.joined = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.session()
            except Exception as e:          # the socket went: come back
                self.closes.append(repr(e)[:80])
            if self.stop.is_set():
                break
            self.reconnects += 1
            if self.ports:
                self.port = self.ports[(self.ports.index(self.port) + 1)
                                       % len(self.ports)]
            time.sleep(0.05)

    def session(self):
        raw = RawWS.connect(self.port, path="/ws?user=" + self.name,
                            rcvbuf=self.rcvbuf, timeout=3)
        try:
            welcome = json.loads(raw.recv_message(timeout=3)[1])
            assert welcome["event"] == "welcome", welcome
            data = {"room": ROOM}
            if self.epoch:
                data["since"] = {"epoch": self.epoch, "offset": self.last}
            raw.send_text(json.dumps({"event": "join", "data": data,
                                      "id": 1}))
            replay = None
            while not self.stop.is_set():
                if self.slow and not self.stalled and self.joined.is_set():
                    # reads nothing for a while: its send buffer fills
                    # and the server closes it (1008) behind what it sent
                    time.sleep(SECONDS / 2 + 1)
                    self.stalled = True
                try:
                    f = raw.recv_data_frame(timeout=0.5)
                except socket.timeout:
                    continue            # quiet: nothing published
                if f.opcode == 8:
                    self.close_codes.append(f.close_code)
                    raise ConnectionError("close %r" % f.close_code)
                # the server's frames here are whole text messages
                payload = f.payload
                ev = json.loads(payload)
                if ev.get("event") == "joined":
                    d = ev["data"]
                    if self.epoch and not d.get("recovered"):
                        self.failures.append(("not recovered", self.last, d))
                    self.epoch = d["epoch"]
                    # what comes up to this offset is the replay
                    replay = d["offset"]
                    self.joined.set()
                    continue
                if ev.get("event") != "c":
                    continue
                if ev["epoch"] != self.epoch:
                    # with Redis the offsets are Redis's: another epoch
                    # than the joined one at first, and a new one when
                    # Redis lost the room (restarted empty): from 1 then
                    if self.got and ev["offset"] != 1:
                        self.failures.append(("epoch without 1",
                                              self.last, ev["offset"]))
                    self.epochs += 1
                    self.epoch = ev["epoch"]
                    self.last = ev["offset"] - 1
                if ev["offset"] != self.last + 1:
                    self.failures.append(("gap or duplicate", self.last,
                                          ev["offset"]))
                self.last = ev["offset"]
                n = ev["data"][0] if isinstance(ev["data"], list) \
                    else ev["data"]
                self.got.append((ev["offset"], n))
                if replay is not None and ev["offset"] <= replay:
                    self.recovered += 1
        finally:
            raw.close()


def run_chaos(rt, ngx, chaos, subscribers=6, slow=None, pad=0):
    subs = [Subscriber(ngx.port, "s%d" % i) for i in range(subscribers)]
    if slow:
        subs.append(slow)
    for s in subs:
        s.start()
    for s in subs:
        assert s.joined.wait(5), s.name
    pub = Publisher(ngx.port, pad)
    pub.start()
    time.sleep(SECONDS / 2)
    chaos()
    time.sleep(SECONDS / 2)
    pub.stop.set()
    pub.join(10)

    # the room's last offset, as a join sees it
    time.sleep(0.3)
    probe = rt.client("probe")
    probe.send({"event": "join", "data": ROOM, "id": 9})
    ev = probe.recv()
    assert ev["event"] == "joined", ev
    total = ev["data"]["offset"]
    probe.close()
    rt.clients.remove(probe)

    # every subscriber gets as far as the last publication
    published = len(pub.ok) + len(pub.unknown)
    assert total >= len(pub.ok), (total, len(pub.ok))
    assert wait_until(lambda: all(s.last >= total for s in subs), 15), \
        [(s.name, s.last, total, s.closes[-3:]) for s in subs]
    for s in subs:
        s.stop.set()
    for s in subs:
        s.join(5)
    return pub, subs, published


def check(name, pub, subs, published):
    ok = set(pub.ok)
    unknown = set(pub.unknown)
    lines = []
    for s in subs:
        ns = [n for _, n in s.got]
        offsets = [o for o, _ in s.got]
        lost = ok - set(ns)
        dups = len(ns) - len(set(ns))
        lines.append("%-14s %-4s published %d (%d unknown) delivered %d "
                     "recovered %d lost %d duplicates %d reconnects %d"
                     % (name, s.name, len(ok), len(unknown),
                        len(ns) - s.recovered, s.recovered, len(lost), dups,
                        s.reconnects))
        assert not s.failures, (s.name, s.failures[:5])
        assert offsets == list(range(1, len(offsets) + 1)), s.name
        assert not lost, (s.name, sorted(lost)[:10])
        assert dups == 0, s.name
        assert set(ns) <= ok | unknown, s.name
    print("\n" + "\n".join(lines))
    if REPORT:
        with open(REPORT, "a") as f:
            f.write("\n".join(lines) + "\n")
    return lines


def test_chaos_worker_killed(rt):
    ngx = rt.start(chaos_http())

    def chaos():
        victim = ngx.worker_pids()[0]
        rt.allowed_bad.append(r"worker process %d exited on signal 9$"
                              % victim)
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(ngx.worker_pids()) == 2
                          and victim not in ngx.worker_pids(), 5)

    pub, subs, published = run_chaos(rt, ngx, chaos)
    check("worker killed", pub, subs, published)
    assert sum(s.reconnects for s in subs) >= 1
    assert sum(s.recovered for s in subs) >= 1


def test_chaos_reload(rt):
    ngx = rt.start(chaos_http())

    def chaos():
        ngx.reload(wait_old_exit=True, timeout=15)

    pub, subs, published = run_chaos(rt, ngx, chaos)
    check("reload", pub, subs, published)
    assert all(s.reconnects >= 1 for s in subs), \
        [(s.name, s.reconnects) for s in subs]


def test_chaos_slow_subscriber(rt):
    """A subscriber that stops reading is closed (its send buffer is
    full: 1008), comes back and recovers; the others see nothing of it."""
    ngx = rt.start(chaos_http("realtime_send_buffer 16k;", zone="rt 64m"))
    slow = Subscriber(ngx.port, "slow", rcvbuf=4096, slow=True)

    # 16 KB messages: more than the kernel's buffers hold while it stalls
    pub, subs, published = run_chaos(rt, ngx, lambda: None, subscribers=4,
                                     slow=slow, pad=16384)
    check("slow reader", pub, subs, published)
    # the server closed it for not reading (1008; the close frame itself
    # may be lost behind what the kernel could not send)
    assert all(c == 1008 for c in slow.close_codes), slow.close_codes
    assert "client does not read" in ngx.error_log()
    assert slow.reconnects >= 1 and slow.recovered >= 1, \
        (slow.reconnects, slow.recovered, slow.closes)
    assert all(s.reconnects == 0 for s in subs if s is not slow)


@pytest.mark.skipif(not __import__("shutil").which("redis-server"),
                    reason="redis-server is not installed")
def test_chaos_redis_restarted(rt, tmp_path):
    """Two instances and one Redis; subscribers on both; a publisher on
    A. Redis is stopped and started mid-run (empty: a new epoch). Redis
    gives the room's offsets, so every subscriber, on A or B, gets the
    same messages in the same order: every one published while Redis was
    up, and those of the outage that waited in A's outbox (B's leader
    reads them from the room's list if its subscription came back after
    A's outbox went). Only a publication in flight as Redis died can be
    lost, and then for every subscriber alike."""
    from test_redis import Redis, redis_up
    redis = Redis(tmp_path)
    redis.start()
    try:
        a, b = two_instances(rt, redis)
        subs = ([Subscriber(a.port, "a%d" % i) for i in range(2)]
                + [Subscriber(b.port, "b%d" % i) for i in range(3)])
        for s in subs:
            s.start()
        for s in subs:
            assert s.joined.wait(5), s.name
        time.sleep(0.5)         # B's room subscription reaches Redis

        pub = Publisher(a.port)
        pub.start()
        time.sleep(SECONDS / 2)
        stop_at = len(pub.ok) + len(pub.unknown)
        redis.stop()
        time.sleep(1.5)
        redis.start()
        for ngx in (a, b):
            assert wait_until(lambda: redis_up(ngx.port), 20)
        up_at = len(pub.ok) + len(pub.unknown)
        time.sleep(SECONDS / 2)
        pub.stop.set()
        pub.join(10)
        last = max(pub.ok)

        assert wait_until(lambda: all(s.got and s.got[-1][1] == last
                                      for s in subs), 15), \
            [(s.name, s.got[-1:]) for s in subs]
        time.sleep(0.5)
        for s in subs:
            s.stop.set()
        for s in subs:
            s.join(5)

        ok = set(pub.ok)
        sure = {n for n in ok if n <= stop_at or n > up_at}
        outage = ok - sure
        first = [n for _, n in subs[0].got]
        lines = []
        for s in subs:
            ns = [n for _, n in s.got]
            assert len(ns) == len(set(ns)), (s.name, "duplicates")
            assert not s.failures, (s.name, s.failures[:3])
            lost_sure = sure - set(ns)
            got_outage = len(outage & set(ns))
            lines.append("redis restart  %-4s published %d (outage %d) "
                         "delivered %d lost while up %d outage delivered %d "
                         "outage lost %d" % (s.name, len(ok), len(outage),
                                             len(ns), len(lost_sure),
                                             got_outage,
                                             len(outage) - got_outage))
            assert not lost_sure, (s.name, sorted(lost_sure)[:10])
            # one order everywhere, the outage's included
            assert ns == first, (s.name, "differs from", subs[0].name)
            assert s.epochs == 2, (s.name, s.epochs)
        assert len(outage) - len(outage & set(first)) <= 2, lines
        print("\n" + "\n".join(lines))
        if REPORT:
            with open(REPORT, "a") as f:
                f.write("\n".join(lines) + "\n")
    finally:
        redis.stop()


@pytest.mark.skipif(not __import__("shutil").which("redis-server"),
                    reason="redis-server is not installed")
def test_chaos_instance_lost(rt, tmp_path):
    """Two instances and one Redis, history on; a publisher on B,
    subscribers on both. Instance A is SIGKILLed, master and workers:
    its subscribers come back to B with the place of their last message
    and recover there; every subscriber ends with every message once, in
    the one order Redis gave."""
    from test_redis import Redis
    redis = Redis(tmp_path)
    redis.start()
    try:
        a, b = two_instances(rt, redis)
        ports = [a.port, b.port]
        subs = ([Subscriber(a.port, "a%d" % i, ports=ports)
                 for i in range(3)]
                + [Subscriber(b.port, "b%d" % i, ports=ports)
                   for i in range(2)])
        for s in subs:
            s.start()
        for s in subs:
            assert s.joined.wait(5), s.name
        time.sleep(0.5)

        pub = Publisher(b.port)
        pub.start()
        time.sleep(SECONDS / 2)
        a.kill()
        time.sleep(SECONDS / 2)
        pub.stop.set()
        pub.join(10)
        seqs = finish_and_count("instance lost", pub, subs)
        for s in subs:
            # B's order, the same for all
            assert seqs[s.name] == seqs[subs[-1].name], s.name
            if s.name.startswith("a"):
                assert s.reconnects >= 1 and s.port == b.port, s.name
        assert sum(s.recovered for s in subs) >= 1
    finally:
        redis.stop()


def two_instances(rt, redis):
    """Two instances (2 workers each) on one Redis, history on, both up."""
    from test_redis import redis_up
    url = "redis://127.0.0.1:%d/0" % redis.port
    conf = rt_http(zone="rt 16m", presence="off",
                   http_extra="realtime_redis rt %s prefix=c: "
                              "connect_timeout=1s command_timeout=2s;" % url,
                   ws_extra="realtime_history 100000 10m;")
    a, b = rt.start(conf), rt.start(conf)
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10)
    return a, b


def finish_and_count(name, pub, subs):
    """Waits until every subscriber has the last publication, stops them,
    checks each got every one once and reports; returns the sequences."""
    last = max(pub.ok)
    assert wait_until(lambda: all(s.got and s.got[-1][1] == last
                                  for s in subs), 15), \
        [(s.name, s.got[-1:], s.failures[-2:]) for s in subs]
    for s in subs:
        s.stop.set()
    for s in subs:
        s.join(5)

    ok = set(pub.ok)
    lines = []
    seqs = {}
    for s in subs:
        ns = [n for _, n in s.got]
        lost = ok - set(ns)
        lines.append("%-14s %-4s published %d (%d unknown) delivered %d "
                     "recovered %d lost %d duplicates %d reconnects %d"
                     % (name, s.name, len(ok), len(pub.unknown),
                        len(ns) - s.recovered, s.recovered, len(lost),
                        len(ns) - len(set(ns)), s.reconnects))
        assert not s.failures, (s.name, s.failures[:5])
        assert not lost, (s.name, sorted(lost)[:10])
        assert len(ns) == len(set(ns)), s.name
        seqs[s.name] = ns
    print("\n" + "\n".join(lines))
    if REPORT:
        with open(REPORT, "a") as f:
            f.write("\n".join(lines) + "\n")
    return seqs


def workers_of(master):
    r = subprocess.run(["ps", "--ppid", str(master), "-o", "cmd="],
                       capture_output=True, text=True, timeout=10)
    return r.stdout.count("worker process")


@pytest.mark.skipif(not __import__("shutil").which("redis-server"),
                    reason="redis-server is not installed")
def test_chaos_binary_upgrade(rt, tmp_path):
    """A binary upgrade under load (USR2, then QUIT), with Redis and
    history: the new master makes a new zone, the old workers close their
    clients with 1001, and the clients recover from Redis through the new
    workers; 0 lost. (Without Redis the new zone has no history: such
    clients get "recovered": false; see the README.) nginx upgrades only
    when its parent is gone, as with a daemon: started from a shell that
    exits afterwards."""
    from conftest import PRELOAD, Nginx, nginx_env
    from test_redis import Redis, redis_up
    redis = Redis(tmp_path)
    redis.start()
    ngx = Nginx(tmp_path / "up")
    masters = []
    try:
        url = "redis://127.0.0.1:%d/0" % redis.port
        # the new binary gets nginx's environment only: a preloaded
        # sanitizer has to be named for it
        ngx.write_conf(rt_http(zone="rt 16m", presence="off",
                               http_extra="realtime_redis rt %s prefix=u: "
                                          "connect_timeout=1s "
                                          "command_timeout=2s;" % url,
                               ws_extra="realtime_history 100000 10m;"),
                       main_extra="env LD_PRELOAD; env ASAN_OPTIONS; "
                                  "env UBSAN_OPTIONS;" if PRELOAD else "")
        pid_file = ngx.prefix / "nginx.pid"

        def master_pid():
            try:
                return int(pid_file.read_text().strip())
            except (OSError, ValueError):
                return None

        # the shell outlives nginx's start: nginx sees its parent go
        subprocess.run(["sh", "-c", '"$@" >/dev/null 2>&1 & sleep 1', "sh"]
                       + ngx._cmd(), env=nginx_env(), timeout=10)
        assert wait_until(lambda: master_pid() and
                          workers_of(master_pid()) == 2, 10)
        old = master_pid()
        masters.append(old)
        assert wait_until(lambda: redis_up(ngx.port), 10)

        subs = [Subscriber(ngx.port, "s%d" % i) for i in range(4)]
        for s in subs:
            s.start()
        for s in subs:
            assert s.joined.wait(5), s.name
        time.sleep(0.3)
        pub = Publisher(ngx.port)
        pub.start()
        time.sleep(SECONDS / 2)

        os.kill(old, signal.SIGUSR2)
        assert wait_until(lambda: master_pid() not in (None, old), 10)
        new = master_pid()
        masters.append(new)
        assert wait_until(lambda: workers_of(new) == 2, 10)
        # the old master goes with its workers (WINCH alone would stop
        # them, but only in a daemon)
        os.kill(old, signal.SIGQUIT)
        assert wait_until(lambda: not os.path.exists("/proc/%d" % old), 15)
        time.sleep(SECONDS / 2)
        pub.stop.set()
        pub.join(10)
        finish_and_count("binary upgrade", pub, subs)
        for s in subs:
            assert s.reconnects >= 1, s.name
            assert all(c == 1001 for c in s.close_codes), s.close_codes
        bad = [l for l in ngx.bad_log_lines(0)
               if "changing binary" not in l]
        assert not bad, bad[:10]
    finally:
        for pid in masters:
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        for pid in masters:
            wait_until(lambda: not os.path.exists("/proc/%d" % pid), 10)
        redis.stop()
