"""Several nginx instances share rooms through a real redis-server: room
publications, user pushes and broadcasts cross instances exactly once;
Redis going away degrades health but not local delivery, and sync comes
back by itself when Redis does."""

import json
import shutil
import subprocess
import time

import pytest

from conftest import free_port, http_call, rt_http, wait_until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = [pytest.mark.skipif(not shutil.which("redis-server"),
                                 reason="redis-server is not installed"),
              pytest.mark.asan]


class Redis:
    def __init__(self, tmp_path, password=None):
        self.port = free_port()
        self.dir = tmp_path / ("redis%d" % self.port)
        self.dir.mkdir()
        self.password = password
        self.proc = None

    def start(self):
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        if self.password:
            args += ["--requirepass", self.password]
        args += getattr(self, "extra", [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        assert wait_until(self.ping, 5), "redis-server did not start"

    def ping(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                if getattr(self, "extra", None):
                    s.sendall(b"AUTH rt pw\r\n")
                    s.recv(64)
                elif self.password:
                    s.sendall(b"AUTH %s\r\n" % self.password.encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


def cluster_conf(redis_url, extra="", ttl="30s"):
    return rt_http(http_extra="realtime_redis rt %s prefix=t: "
                              "connect_timeout=1s command_timeout=2s "
                              "presence_ttl=%s;" % (redis_url, ttl),
                   locations="location = /ready { realtime_status rt "
                             "strict; }\n" + extra)


def health(port, path="/health"):
    r = http_call(port, "GET", path)
    return r.status, r.json()


def redis_up(port):
    return health(port)[1].get("redis", {}).get("status") == "up"


def start_two(rt, redis, ttl="30s"):
    """Two instances, two workers each, both subscribed to redis."""
    url = "redis://127.0.0.1:%d/0" % redis.port
    a = rt.start(cluster_conf(url, ttl=ttl))
    b = rt.start(cluster_conf(url, ttl=ttl))
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), \
            health(ngx.port)
    return a, b


def push(port, body):
    r = http_call(port, "POST", "/sendPayload", json.dumps(body),
                  {"Content-Type": "application/json"})
    return r.status, r.json()


def drain_silent(clients, timeout=0.3):
    """Nothing more for any of them over one window of timeout."""
    time.sleep(timeout)
    for c in clients:
        c.assert_silent(0.01)


def test_room_publish_crosses_instances_exactly_once(rt, redis):
    a, b = start_two(rt, redis)
    on_a = [rt.client("a%d" % i, port=a.port) for i in range(6)]
    on_b = [rt.client("b%d" % i, port=b.port) for i in range(6)]
    # both workers of each instance hold members
    assert len({c.pid for c in on_a}) == 2 or len(on_a) >= 2
    everyone = on_a + on_b
    for c in everyone:
        assert c.join("battle:42")["event"] == "joined"
    # presence:join events of later joiners; then quiet
    time.sleep(0.5)
    for c in everyone:
        while True:
            try:
                m = c.recv(timeout=0.02)
            except Exception:
                break
            assert m["event"] == "presence:join", m

    for sender in (on_a[0], on_b[3]):
        sender.publish("battle:42", "move", {"from": sender.user})
        for c in everyone:
            if c is sender:
                continue
            m = c.recv(timeout=3)
            assert m == {"event": "move", "room": "battle:42",
                         "from": sender.user,
                         "data": {"from": sender.user}}, (c, m)
        drain_silent(everyone)


def test_pushes_and_broadcasts_cross_instances(rt, redis):
    a, b = start_two(rt, redis)
    u_on_a = rt.client("u1", port=a.port)
    u_on_b = rt.client("u1", port=b.port)
    other = rt.client("u2", port=b.port)
    lonely = rt.client("u3", port=a.port)

    # a push to u1 through A reaches u1's socket on B as well
    status, body = push(a.port, {"userId": "u1", "topic": "note",
                                 "payload": {"n": 1}})
    assert status == 200, body
    for c in (u_on_a, u_on_b):
        assert c.recv() == {"event": "note", "data": {"n": 1}}
    drain_silent([u_on_a, u_on_b, other, lonely])

    # a broadcast through B reaches every socket once, except u2's
    status, body = push(b.port, {"broadcast": True, "topic": "all",
                                 "payload": 7, "except": "u2"})
    assert status == 200, body
    for c in (u_on_a, u_on_b, lonely):
        assert c.recv() == {"event": "all", "data": 7}
    drain_silent([u_on_a, u_on_b, other, lonely])

    # a room push through A reaches the members on B
    assert other.join("lobby")["event"] == "joined"
    time.sleep(0.3)
    status, body = push(a.port, {"room": "lobby", "topic": "r",
                                 "payload": "x"})
    assert status == 200, body
    assert other.recv() == {"event": "r", "room": "lobby", "data": "x"}
    drain_silent([u_on_a, u_on_b, other, lonely])

    hb = health(b.port)[1]["redis"]
    assert hb["received"] >= 2 and hb["unsynced"] == 0, hb


def test_order_kept_per_publisher_across_instances(rt, redis):
    a, b = start_two(rt, redis)
    pub = rt.client("p", port=a.port)
    subs = [rt.client("s%d" % i, port=b.port) for i in range(4)]
    for c in [pub] + subs:
        c.join("race")
    time.sleep(0.5)
    for c in subs:
        while True:
            try:
                c.recv(timeout=0.2)
            except Exception:
                break
    for i in range(40):
        pub.publish("race", "n", i)
    for c in subs:
        got = [c.recv(timeout=3)["data"] for _ in range(40)]
        assert got == list(range(40))
    drain_silent(subs)


def test_redis_down_then_back(rt, redis):
    a, b = start_two(rt, redis)
    a1 = rt.client("a1", port=a.port)
    a2 = rt.client("a2", port=a.port)
    b1 = rt.client("b1", port=b.port)
    for c in (a1, a2, b1):
        c.join("room")
    time.sleep(0.5)
    for c in (a1, a2, b1):
        while True:
            try:
                c.recv(timeout=0.2)
            except Exception:
                break

    redis.stop()
    assert wait_until(lambda: not redis_up(a.port), 5)
    status, h = health(a.port)
    assert status == 200 and h["status"] == "degraded", h
    assert h["redis"]["status"] == "down"
    assert health(a.port, "/ready")[0] == 503

    # local delivery goes on; for the other instance the publication
    # waits in the publishing worker's outbox
    a1.publish("room", "m", "local")
    assert a2.recv() == {"event": "m", "room": "room", "from": "a1",
                         "data": "local"}
    b1.assert_silent(0.5)
    h = health(a.port)[1]["redis"]
    assert h["outbox"] == 1 and h["unsynced"] == 0, h
    assert sorted(w["publish"] for w in h["workers"]) == ["down", "down"], h
    assert [w["outbox"] for w in h["workers"]].count(1) == 1, h

    # Redis is back: sync resumes, rooms resubscribed, no client action;
    # what waited is published once A is subscribed again (B gets it if
    # its own subscription is back by then: pub/sub keeps nothing)
    redis.start()
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 15), health(ngx.port)
    assert health(a.port, "/ready")[0] == 200
    assert wait_until(lambda: health(a.port)[1]["redis"]["outbox"] == 0, 3)

    a1.publish("room", "m", "again")
    assert a2.recv(timeout=3)["data"] == "again"
    got = b1.recv(timeout=3)["data"]
    if got == "local":
        got = b1.recv(timeout=3)["data"]
    assert got == "again"
    drain_silent([a1, a2, b1])
    h = health(a.port)[1]["redis"]
    assert h["outbox"] == 0 and h["unsynced"] == 0, h
    assert [w["publish"] for w in h["workers"]] == ["up", "up"], h


def test_wrong_password_is_logged_and_degraded(rt, tmp_path):
    r = Redis(tmp_path, password="s3cret")
    r.start()
    try:
        bad = rt.start(cluster_conf("redis://:wrong@127.0.0.1:%d/0"
                                    % r.port))
        assert wait_until(lambda: "AUTH failed" in bad.error_log(), 5), \
            bad.error_log()[-2000:]
        status, h = health(bad.port)
        assert h["status"] == "degraded" and h["redis"]["status"] == "down"
        assert health(bad.port, "/ready")[0] == 503

        good = rt.start(cluster_conf("redis://:s3cret@127.0.0.1:%d/2"
                                     % r.port))
        assert wait_until(lambda: redis_up(good.port), 10), \
            health(good.port)
        # local service is unaffected by the bad instance's Redis trouble
        c1 = rt.client("x", port=bad.port)
        c2 = rt.client("y", port=bad.port)
        c1.join("r")
        c2.join("r")
        c1.publish("r", "e", 1)
        got = c2.recv()
        while got["event"] == "presence:join":
            got = c2.recv()
        assert got["data"] == 1
    finally:
        rt.close_clients()
        r.stop()


def presence(client, room):
    got = client.call({"event": "presence", "data": {"room": room},
                       "id": 9})
    while got["event"] != "presence":
        got = client.recv()
    assert got["id"] == 9, got
    return sorted(got["data"]["users"])


def test_cluster_presence_and_user_not_found(rt, redis):
    a, b = start_two(rt, redis)
    u1 = rt.client("u1", port=a.port)
    u2 = rt.client("u2", port=b.port)
    u2b = rt.client("u2", port=b.port)
    for c in (u1, u2, u2b):
        c.join("game")

    # the other instance's users are listed, each once
    assert wait_until(lambda: presence(u1, "game") == ["u1", "u2"], 3)
    assert presence(u2, "game") == ["u1", "u2"]

    # a user whose sockets are all on B, pushed through A: found there
    status, body = push(a.port, {"userId": "u2", "topic": "t",
                                 "payload": 1})
    assert (status, body) == (200, {"message": "Payload sent successfully",
                                    "delivered": 2, "synced": True})
    for c in (u2, u2b):
        m = c.recv()
        while m["event"] != "t":
            m = c.recv()
        assert m == {"event": "t", "data": 1}

    # nobody anywhere
    status, body = push(a.port, {"userId": "ghost", "topic": "t",
                                 "payload": 1})
    assert status == 404 and body["code"] == "USER_NOT_FOUND"

    # in a batch too, per item
    status, body = push(a.port, [{"userId": "u2", "topic": "t",
                                  "payload": 2},
                                 {"userId": "ghost", "topic": "t",
                                  "payload": 2}])
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == [200, 404]
    assert body["results"][0]["delivered"] == 2

    # leaving is seen across instances
    u2.leave("game")
    u2b.leave("game")
    assert wait_until(lambda: presence(u1, "game") == ["u1"], 3)


def test_killed_instance_drops_out_within_ttl(rt, redis):
    a, b = start_two(rt, redis, ttl="3s")
    u1 = rt.client("u1", port=a.port)
    u9 = rt.client("u9", port=b.port)
    u1.join("arena")
    u9.join("arena")
    assert wait_until(lambda: presence(u1, "arena") == ["u1", "u9"], 3)
    assert push(a.port, {"userId": "u9", "topic": "t",
                         "payload": 0})[0] == 200

    # B dies without a word: no leave, no HDEL
    rt.clients.remove(u9)
    u9.raw.close()
    b.kill()
    rt.instances.remove(b)
    t0 = time.monotonic()
    assert wait_until(lambda: presence(u1, "arena") == ["u1"], 6)
    assert time.monotonic() - t0 <= 4.5
    status, body = push(a.port, {"userId": "u9", "topic": "t",
                                 "payload": 0})
    assert status == 404, body


def test_acl_user_and_database(rt, tmp_path):
    """Redis 6+ ACLs: AUTH with a user and its password, then SELECT."""
    r = Redis(tmp_path)
    r.extra = ["--user", "default", "off", "--user", "rt", "on", ">pw",
               "~*", "&*", "+@all"]
    r.start()
    try:
        url = "redis://rt:pw@127.0.0.1:%d/3" % r.port
        a = rt.start(cluster_conf(url))
        b = rt.start(cluster_conf(url))
        for ngx in (a, b):
            assert wait_until(lambda: redis_up(ngx.port), 10), \
                (health(ngx.port), ngx.error_log()[-1500:])
        ca = rt.client("ua", port=a.port)
        cb = rt.client("ub", port=b.port)
        # presence reaches Redis through B's leader, a moment later
        time.sleep(0.5)
        status, body = push(a.port, {"userId": "ub", "topic": "acl",
                                     "payload": True})
        assert (status, body["delivered"]) == (200, 1), body
        assert cb.recv() == {"event": "acl", "data": True}
        ca.assert_silent(0.3)
    finally:
        rt.close_clients()
        r.stop()


def user_lists(client, timeout):
    """The user:list events client got within timeout, in order."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = client.recv(timeout=max(0.05, deadline - time.monotonic()))
        except Exception:
            break
        if ev.get("event") == "user:list":
            got.append(ev["data"])
    return got


def until_users(client, users, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for got in user_lists(client, 0.3):
            if got == users:
                return True
    return False


def start_two_listing(rt, redis, ttl="30s"):
    url = "redis://127.0.0.1:%d/0" % redis.port
    conf = rt_http(http_extra="realtime_redis rt %s prefix=t: "
                              "connect_timeout=1s command_timeout=2s "
                              "presence_ttl=%s;" % (url, ttl),
                   ws_extra="realtime_user_list user:list 100ms;")
    a, b = rt.start(conf), rt.start(conf)
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)
    return a, b


def test_user_list_is_the_clusters(rt, redis):
    """realtime_user_list with Redis: every socket of both instances gets
    the users of both, sorted; a change on one instance reaches the
    other's sockets; an unchanged list read again is not sent again."""
    a, b = start_two_listing(rt, redis)
    amy = rt.client("amy", port=a.port)
    assert until_users(amy, ["amy"])
    bo = rt.client("bo", port=b.port)
    assert until_users(bo, ["amy", "bo"])
    assert until_users(amy, ["amy", "bo"])
    cy = rt.client("cy", port=a.port)
    for c in (amy, bo, cy):
        assert until_users(c, ["amy", "bo", "cy"]), c

    # bo leaves B: A's sockets hear of it
    bo.close()
    rt.clients.remove(bo)
    for c in (amy, cy):
        assert until_users(c, ["amy", "cy"]), c

    # B tells of a change that leaves the set as it was (a second socket
    # of a user): A reads Redis again and sends nothing
    dana = rt.client("dana", port=b.port)
    for c in (amy, cy):
        assert until_users(c, ["amy", "cy", "dana"]), c
    dana2 = rt.client("dana", port=b.port)
    assert until_users(dana2, ["amy", "cy", "dana"])
    for c in (amy, cy):
        assert user_lists(c, 1.0) == [], c
    assert dana2.user == "dana"


def test_user_list_drops_a_dead_instance(rt, redis):
    """An instance killed without a word: its users leave the others'
    lists within the presence TTL (and a third of it)."""
    a, b = start_two_listing(rt, redis, ttl="3s")
    amy = rt.client("amy", port=a.port)
    bo = rt.client("bo", port=b.port)
    assert until_users(amy, ["amy", "bo"])
    rt.clients.remove(bo)
    bo.raw.close()
    b.kill()
    rt.instances.remove(b)
    assert until_users(amy, ["amy"], timeout=6.0)


def test_push_right_after_redis_is_back_reaches_every_member(rt, redis):
    """The reported loss: Redis stopped and started, both instances'
    status up, then one push on A. The status is up only when every
    worker can publish and every channel is confirmed, so the push
    reaches every member on B, in every run."""
    a, b = start_two(rt, redis)
    members = []
    for i in range(20):
        c = rt.client("m%d" % i, port=(a.port if i % 2 else b.port))
        c.join("battle:1")
        members.append(c)
    # reuseport may put one instance's ten on one worker: more members
    # there until both of its workers hold some (bounded)
    for ngx in (a, b):
        extra = 0
        while len({c.pid for c in members
                   if c.raw.sock.getpeername()[1] == ngx.port}) < 2 \
                and extra < 40:
            c = rt.client("x%d-%d" % (ngx.port, extra), port=ngx.port)
            c.join("battle:1")
            members.append(c)
            extra += 1
    on_b = {c.pid for c in members if c.raw.sock.getpeername()[1] == b.port}
    on_a = {c.pid for c in members if c.raw.sock.getpeername()[1] == a.port}
    assert len(on_a) == 2 and len(on_b) == 2, (on_a, on_b)
    time.sleep(0.3)
    for c in members:
        while True:
            try:
                c.recv(timeout=0.02)
            except Exception:
                break

    for run in range(3):
        redis.stop()
        for ngx in (a, b):
            assert wait_until(lambda: not redis_up(ngx.port), 5)
        redis.start()
        for ngx in (a, b):
            assert wait_until(lambda: redis_up(ngx.port), 15), \
                health(ngx.port)
        for ngx in (a, b):
            h = health(ngx.port)[1]["redis"]
            assert h["subscribed"] and all(
                w["publish"] == "up" for w in h["workers"]), h
        # on fresh connections: either worker of A publishes
        for k in range(4):
            status, body = push(a.port, {"room": "battle:1",
                                         "topic": "tick",
                                         "payload": [run, k]})
            assert status == 200 and body["synced"] is True, body
            assert "queued" not in body, body
        # (two workers publish through two connections: order is per
        # publisher only)
        for c in members:
            got = sorted(c.recv(timeout=3)["data"] for _ in range(4))
            assert got == [[run, k] for k in range(4)], (run, c, got)
    drain_silent(members)
    assert health(a.port)[1]["redis"]["unsynced"] == 0


def test_outbox_is_bounded_and_says_so(rt, redis):
    """realtime_redis outbox=2: while a worker's connection is away, it
    keeps two publications for the other instances ("queued") and
    answers the third "synced": false; the two reach the other instance,
    in order, once the worker is connected again."""
    url = "redis://127.0.0.1:%d/0" % redis.port
    conf = rt_http(http_extra="realtime_redis rt %s prefix=t: "
                              "connect_timeout=1s command_timeout=2s "
                              "outbox=2 outbox_time=30s;" % url)
    a, b = rt.start(conf), rt.start(conf)
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)
    far = rt.client("far", port=b.port)
    far.join("r")
    time.sleep(0.3)
    while True:
        try:
            far.recv(timeout=0.1)
        except Exception:
            break

    import http.client
    for run in range(3):
        # the publishing connections go, the subscriptions stay; the
        # workers retry after 125 ms at least
        assert redis_command(redis.port, "CLIENT", "KILL", "TYPE",
                             "normal").startswith(b":")
        time.sleep(0.05)
        # one keep-alive connection: one worker, one outbox
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
        answers = []
        for i in range(3):
            conn.request("POST", "/sendPayload",
                         json.dumps({"room": "r", "topic": "t",
                                     "payload": [run, i]}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answers.append((resp.status, json.loads(resp.read())))
        conn.close()
        assert [s for s, _ in answers] == [200, 200, 200], answers
        assert [(b.get("synced"), b.get("queued")) for _, b in answers] == \
            [(True, True), (True, True), (False, None)], answers
        assert [far.recv(timeout=3)["data"] for _ in range(2)] == \
            [[run, 0], [run, 1]]
        far.assert_silent(0.3)
        assert wait_until(lambda: redis_up(a.port), 5), health(a.port)

    assert wait_until(lambda: health(a.port)[1]["redis"]["outbox"] == 0, 3)
    r = http_call(a.port, "GET", "/metrics")
    text = r.body.decode()
    assert 'realtime_redis_unsynced_total{zone="rt"} 3' in text, text
    assert 'realtime_redis_subscribed{zone="rt"} 1' in text, text
    ups = [l for l in text.splitlines()
           if l.startswith("realtime_redis_worker_up{")]
    assert len(ups) == 2 and all(l.endswith(" 1") for l in ups), ups
    outboxes = [l for l in text.splitlines()
                if l.startswith("realtime_redis_outbox{")]
    assert len(outboxes) == 2 and all(l.endswith(" 0") for l in outboxes)


def test_redis_host_resolved_when_the_configuration_is_read(rt, redis):
    """A host name works (resolved by nginx at start, never by hiredis
    in a worker); one that does not resolve fails the configuration."""
    ngx = rt.start(rt_http(http_extra="realtime_redis rt "
                                      "redis://localhost:%d/0;" % redis.port))
    assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)

    from conftest import Nginx
    bad = Nginx(rt.tmp_path / "bad")
    bad.write_conf(rt_http(http_extra="realtime_redis rt "
                                      "redis://no-such-host.invalid:6379;"))
    rc, out = bad.test_conf()
    out += bad.error_log()
    assert rc != 0 and "host not found" in out, out
    assert "no-such-host.invalid" in out, out


def redis_command(port, *args):
    import socket
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(("*%d\r\n" % len(args)).encode() + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
        return s.recv(4096)


def test_push_while_publishers_reconnect_is_not_lost(rt, redis):
    """The cause of the loss, made certain: the publishing connections
    drop (CLIENT KILL TYPE normal) while the subscriptions stay, so the
    old status said "up"; a push then waits in the worker's outbox and
    reaches the other instance once the worker has reconnected."""
    a, b = start_two(rt, redis)
    far = [rt.client("far%d" % i, port=b.port) for i in range(4)]
    for c in far:
        c.join("battle:1")
    time.sleep(0.3)
    for c in far:
        while True:
            try:
                c.recv(timeout=0.1)
            except Exception:
                break

    for run in range(4):
        assert redis_command(redis.port, "CLIENT", "KILL", "TYPE",
                             "normal").startswith(b":"), run
        # the workers see the close; they retry after 125 ms at least
        time.sleep(0.05)
        answers = [push(a.port, {"room": "battle:1", "topic": "t",
                                 "payload": [run, k]}) for k in range(3)]
        assert all(st == 200 and body["synced"] is True
                   for st, body in answers), answers
        for c in far:
            got = sorted(c.recv(timeout=5)["data"] for _ in range(3))
            assert got == [[run, k] for k in range(3)], (run, c, got)
        assert wait_until(lambda: redis_up(a.port), 5), health(a.port)
    drain_silent(far)
    h = health(a.port)[1]["redis"]
    assert h["unsynced"] == 0 and h["outbox"] == 0, h
