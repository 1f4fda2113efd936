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

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"),
                                reason="redis-server is not installed")


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
    for c in clients:
        c.assert_silent(timeout)


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
                m = c.recv(timeout=0.2)
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
    assert other.recv() == {"event": "r", "data": "x"}
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

    # local delivery goes on; the miss is counted
    a1.publish("room", "m", "local")
    assert a2.recv() == {"event": "m", "room": "room", "from": "a1",
                         "data": "local"}
    b1.assert_silent(0.5)
    assert wait_until(
        lambda: health(a.port)[1]["redis"]["unsynced"] >= 1, 3)

    # Redis is back: sync resumes, rooms resubscribed, no client action
    redis.start()
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 15), health(ngx.port)
    assert health(a.port, "/ready")[0] == 200

    a1.publish("room", "m", "again")
    for c in (a2, b1):
        assert c.recv(timeout=3)["data"] == "again"
    drain_silent([a1, a2, b1])


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
                                    "delivered": 2})
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
