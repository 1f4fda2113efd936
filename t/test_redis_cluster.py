"""realtime_redis ... cluster: a real Redis Cluster of Debian's
redis-server 7.0 on loopback (3 masters, 3 replicas, made by
`redis-cli --cluster create`), two nginx instances with two workers
each.  Rooms on different shards, users and broadcasts cross instances
exactly once by sharded pub/sub; presence is cluster-wide; a room's
slot resharded under traffic, and a master killed under traffic and
replaced by its replica, lose nothing that is not counted."""

import json
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import http_call, rt_http, wait_until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = [pytest.mark.skipif(not shutil.which("redis-cli"),
                                 reason="redis-cli is not installed"),
              pytest.mark.no_asan]


def crc16(data):
    crc = 0
    for x in data:
        crc ^= x << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(name):
    return crc16(name.encode()) % 16384


def command(port, *args, timeout=2.0):
    """One command on a raw socket; the first reply's bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(("*%d\r\n" % len(args)).encode() + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
        time.sleep(0.05)
        return s.recv(65536)


def cluster_port(taken):
    """A free port whose cluster bus port (10000 more) is free too."""
    import random
    while True:
        port = random.randint(20000, 40000)
        if port in taken:
            continue
        try:
            for q in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        taken.append(port)
        return port


def resp(buf, i):
    """One RESP2 value of buf at i: (value, next index)."""
    kind, j = buf[i:i + 1], buf.index(b"\r\n", i)
    line = buf[i + 1:j]
    if kind == b":":
        return int(line), j + 2
    if kind in (b"+", b"-"):
        return line.decode(), j + 2
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, j + 2
        return buf[j + 2:j + 2 + n].decode(), j + 4 + n
    items, k = [], j + 2
    for _ in range(int(line)):
        v, k = resp(buf, k)
        items.append(v)
    return items, k


class Cluster:
    """Six redis-servers in cluster mode, three masters with a replica
    each, on free loopback ports."""

    def __init__(self, tmp_path):
        self.ports = []
        for _ in range(6):
            cluster_port(self.ports)
        self.dir = tmp_path / "cluster"
        self.dir.mkdir()
        self.procs = {}

    def start_node(self, port):
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes",
             "--cluster-config-file", str(d / "nodes.conf"),
             "--cluster-node-timeout", "1000",
             "--cluster-replica-validity-factor", "0", "--save", "",
             "--appendonly", "no", "--dir", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        for p in self.ports:
            self.start_node(p)
        assert wait_until(lambda: all(self.ping(p) for p in self.ports), 5)
        r = subprocess.run(
            [REDIS_CLI, "--cluster", "create"]
            + ["127.0.0.1:%d" % p for p in self.ports]
            + ["--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert wait_until(self.ok, 15), self.info()
        # a replica takes over only once it has synced
        assert wait_until(self.synced, 15)

    def synced(self):
        roles = [command(p, "INFO", "replication").decode() for p in
                 self.ports]
        replicas = [r for r in roles if "role:slave" in r]
        return len(replicas) == 3 and all(
            "master_link_status:up" in r for r in replicas)

    def ping(self, port):
        try:
            return command(port, "PING").startswith(b"+PONG")
        except OSError:
            return False

    def info(self, port=None):
        return command(port or self.ports[0], "CLUSTER", "INFO").decode(
            errors="replace")

    def ok(self):
        return all("cluster_state:ok" in self.info(p)
                   for p in self.ports if p in self.procs
                   and self.procs[p].poll() is None)

    def masters(self):
        """{port: [(first slot, last slot)]} of the masters serving
        slots, from CLUSTER SLOTS of a live node."""
        live = [p for p in self.ports if self.procs[p].poll() is None]
        reply, _ = resp(command(live[0], "CLUSTER", "SLOTS"), 0)
        ranges = {}
        for entry in reply:
            start, end, master = entry[0], entry[1], entry[2]
            ranges.setdefault(master[1], []).append((start, end))
        return ranges

    def master_of(self, name):
        s = slot_of(name)
        for port, rs in self.masters().items():
            if any(a <= s <= b for a, b in rs):
                return port
        return None

    def kill(self, port):
        self.procs[port].kill()
        self.procs[port].wait(5)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module, made once (a few seconds): the tests
    that reshard and kill a master come last, and need only some master
    of each slot."""
    c = Cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def conf(cluster, history=None):
    seeds = ",".join("127.0.0.1:%d" % p for p in cluster.ports[:2])
    return rt_http(http_extra="realtime_redis rt redis://%s cluster "
                              "prefix=t: connect_timeout=1s "
                              "command_timeout=2s presence_ttl=30s;"
                              % seeds,
                   ws_extra=("realtime_history %s;" % history
                             if history else ""),
                   locations=("location = /hpush { realtime_push rt; "
                              "realtime_history %s; }" % history
                              if history else ""))


def health(port):
    return http_call(port, "GET", "/health").json()


def redis_up(port):
    return health(port).get("redis", {}).get("status") == "up"


def start_two(rt, cluster, history=None):
    a = rt.start(conf(cluster, history))
    b = rt.start(conf(cluster, history))
    for ngx in (a, b):
        assert wait_until(lambda: redis_up(ngx.port), 10), health(ngx.port)
    return a, b


def nodes_match(port, cluster):
    """The status names the masters the cluster has, each connected and
    subscribed, with the slots it serves, and every slot is covered."""
    st = health(port)["redis"]["cluster"]
    masters = cluster.masters()
    got = {int(n["node"].rsplit(":", 1)[1]): n for n in st["nodes"]}
    return (st["slots"] == 16384 and set(got) == set(masters)
            and all(n["connected"] and n["subscribed"]
                    for n in got.values())
            and all(got[p]["slots"] == sum(b - a + 1 for a, b in masters[p])
                    for p in masters))


def push(port, body, path="/sendPayload"):
    r = http_call(port, "POST", path, json.dumps(body),
                  {"Content-Type": "application/json"})
    return r.status, r.json()


def drain(clients, timeout=0.3):
    """What is still coming (presence events), then nothing."""
    time.sleep(timeout)
    for c in clients:
        while True:
            try:
                m = c.recv(timeout=0.05)
            except Exception:
                break
            assert m["event"].startswith("presence"), m


def numbers(c):
    """The "n" events c gets until 3 s of quiet."""
    got = []
    while True:
        try:
            m = c.recv(timeout=3)
        except Exception:
            return got
        assert m["event"] == "n", m
        got.append(m["data"])


def push_reaches(a, room, far):
    """A push to room through a reaches every one of far at once."""
    status, body = push(a.port, {"room": room, "topic": "after",
                                 "payload": 1}, "/hpush")
    assert status == 200, body
    for c in far:
        m = c.recv(timeout=3)
        assert (m["event"], m["data"]) == ("after", 1), m


def rooms_on_three_shards(cluster):
    """A room name on each master."""
    found = {}
    i = 0
    while len(found) < 3:
        name = "battle:%d" % i
        found.setdefault(cluster.master_of(name), name)
        i += 1
    return list(found.values())


def test_rooms_on_every_shard_cross_instances_exactly_once(rt, cluster):
    a, b = start_two(rt, cluster)
    rooms = rooms_on_three_shards(cluster)
    on_a = [rt.client("a%d" % i, port=a.port) for i in range(4)]
    on_b = [rt.client("b%d" % i, port=b.port) for i in range(4)]
    everyone = on_a + on_b
    for c in everyone:
        for room in rooms:
            assert c.join(room)["event"] == "joined"
    drain(everyone, 0.5)

    for room in rooms:
        for sender in (on_a[0], on_b[1]):
            sender.publish(room, "move", {"from": sender.user})
            for c in everyone:
                if c is sender:
                    continue
                m = c.recv(timeout=3)
                assert m == {"event": "move", "room": room,
                             "from": sender.user,
                             "data": {"from": sender.user}}, (room, m)
        # a push to the room through either instance
        status, body = push(b.port, {"room": room, "topic": "r",
                                     "payload": room})
        assert status == 200, body
        for c in everyone:
            assert c.recv(timeout=3) == {"event": "r", "room": room,
                                         "data": room}
    drain(everyone)
    for c in everyone:
        c.assert_silent(0.05)

    # each master saw SPUBLISH of its own rooms only: sharded channels
    for room in rooms:
        port = cluster.master_of(room)
        subs = command(port, "PUBSUB", "SHARDNUMSUB", "t:room:{%s}" % room)
        # both instances' leaders subscribe on the room's master
        assert subs.endswith(b":2\r\n"), (room, subs)

    ha, hb = health(a.port)["redis"], health(b.port)["redis"]
    assert ha["unsynced"] == 0 and hb["unsynced"] == 0, (ha, hb)
    assert hb["received"] >= 3 and ha["received"] >= 3, (ha, hb)

    # each instance's status lists the masters as its leader sees them
    for ngx in (a, b):
        assert wait_until(lambda: nodes_match(ngx.port, cluster), 5), \
            health(ngx.port)["redis"]["cluster"]
    text = http_call(a.port, "GET", "/metrics").body.decode()
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for family in ("up", "subscribed"):
        lines = re.findall(r'^realtime_redis_cluster_node_%s\{zone="rt",'
                           r'node="127.0.0.1:(\d+)"\} (\d+)$' % family,
                           text, re.M)
        assert sorted(int(p) for p, v in lines if v == "1") \
            == sorted(cluster.masters()), (family, lines)
    assert re.search(r'^realtime_redis_cluster_slots\{zone="rt"\} 16384$',
                     text, re.M), text


def test_users_broadcasts_and_presence_across_instances(rt, cluster):
    a, b = start_two(rt, cluster)
    u_on_a = rt.client("u1", port=a.port)
    u_on_b = rt.client("u1", port=b.port)
    other = rt.client("u2", port=b.port)

    status, body = push(a.port, {"userId": "u1", "topic": "note",
                                 "payload": {"n": 1}})
    assert status == 200, body
    for c in (u_on_a, u_on_b):
        assert c.recv() == {"event": "note", "data": {"n": 1}}

    status, body = push(b.port, {"broadcast": True, "topic": "all",
                                 "payload": 7, "except": "u2"})
    assert status == 200, body
    for c in (u_on_a, u_on_b):
        assert c.recv() == {"event": "all", "data": 7}
    other.assert_silent(0.3)
    u_on_a.assert_silent(0.05)
    u_on_b.assert_silent(0.05)

    # presence on a room and a user whose keys live on some shard
    for c in (u_on_a, other):
        c.join("game")

    def presence():
        got = u_on_a.call({"event": "presence", "data": {"room": "game"},
                           "id": 9})
        while got["event"] != "presence":
            got = u_on_a.recv()
        return sorted(got["data"]["users"])

    assert wait_until(lambda: presence() == ["u1", "u2"], 5)

    # u2 is on B only: found through A by Redis
    status, body = push(a.port, {"userId": "u2", "topic": "t",
                                 "payload": 1})
    assert (status, body["delivered"], body["synced"]) == (200, 1, True)
    m = other.recv()
    while m["event"] != "t":
        m = other.recv()
    assert m == {"event": "t", "data": 1}

    status, body = push(a.port, {"userId": "ghost", "topic": "t",
                                 "payload": 1})
    assert status == 404 and body["code"] == "USER_NOT_FOUND"


def room_on_first_slot(cluster):
    """A room whose slot is the first of a master's range that does not
    start at 0, with that master: `--cluster reshard` of one slot from
    it moves exactly that slot."""
    port, ranges = next((p, r) for p, r in cluster.masters().items()
                        if min(r)[0] > 0)
    first = min(ranges)[0]
    i = 0
    while slot_of("r%d" % i) != first:
        i += 1
    return "r%d" % i, port


def test_resharding_under_traffic(rt, cluster):
    """The slot of a room with history moves to another master (redis-cli
    --cluster reshard) while pushes go to it every 20 ms: commands follow
    MOVED and ASK, the subscriber follows the sunsubscribe, and every
    push answered 200 reaches the members on the other instance once."""
    a, b = start_two(rt, cluster, history="1000 5m")
    room, source = room_on_first_slot(cluster)
    target = next(p for p in cluster.masters() if p != source)
    far = [rt.client("f%d" % i, port=b.port) for i in range(2)]
    for c in far:
        c.join(room)
    drain(far, 0.5)

    reshard = None
    sent = []
    for n in range(150):
        if n == 20:
            reshard = subprocess.Popen(
                [REDIS_CLI, "--cluster", "reshard", "127.0.0.1:%d" % source,
                 "--cluster-from", myid(source),
                 "--cluster-to", myid(target), "--cluster-slots", "1",
                 "--cluster-yes"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        status, body = push(a.port, {"room": room, "topic": "n",
                                     "payload": n}, "/hpush")
        assert status == 200, body
        sent.append(n)
        time.sleep(0.02)
    assert reshard.wait(30) == 0
    assert wait_until(lambda: cluster.master_of(room) == target, 10)
    assert wait_until(lambda: redis_up(a.port) and redis_up(b.port), 10)
    # the status counts the slot where it is now
    assert wait_until(lambda: nodes_match(a.port, cluster), 5), \
        health(a.port)["redis"]["cluster"]

    lost = health(a.port)["redis"]["unsynced"]
    assert lost <= 3, health(a.port)
    for c in far:
        got = numbers(c)
        assert len(got) == len(set(got)), got
        assert len(got) >= len(sent) - lost, (len(got), len(sent), lost)

    # B's leader subscribes where the slot is now
    assert wait_until(lambda: command(target, "PUBSUB", "SHARDNUMSUB",
                                      "t:room:{%s}" % room)
                      .endswith(b":1\r\n"), 5)
    push_reaches(a, room, far)


def myid(port):
    return command(port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()


def test_tryagain_while_a_rooms_keys_are_half_moved(rt, cluster):
    """A slot is migrated by hand and only the room's history list has
    moved: the history publish (a script on both keys) is told TRYAGAIN
    by Redis until the other key follows.  It is sent again, answered
    200 once the slot is whole on its new master, and delivered once."""
    import threading
    a, b = start_two(rt, cluster, history="1000 5m")
    room = rooms_on_three_shards(cluster)[1]
    source = cluster.master_of(room)
    target = next(p for p in cluster.masters() if p != source)
    slot = str(slot_of(room))
    far = rt.client("f", port=b.port)
    far.join(room)
    drain([far], 0.5)
    push_reaches(a, room, [far])

    assert command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING",
                   myid(source)).startswith(b"+OK")
    assert command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING",
                   myid(target)).startswith(b"+OK")

    def migrate(key):
        r = command(source, "MIGRATE", "127.0.0.1", str(target), "", "0",
                    "5000", "KEYS", "t:%s:{%s}" % (key, room))
        assert r.startswith(b"+OK"), r

    migrate("history")
    answers = []
    pusher = threading.Thread(target=lambda: answers.append(
        push(a.port, {"room": room, "topic": "n", "payload": 7}, "/hpush")))
    pusher.start()
    time.sleep(0.4)
    assert answers == []  # told TRYAGAIN, still trying

    migrate("offset")
    for port in (target, source):
        assert command(port, "CLUSTER", "SETSLOT", slot, "NODE",
                       myid(target)).startswith(b"+OK")
    pusher.join(5)
    assert answers == [(200, answers[0][1])], answers
    m = far.recv(timeout=3)
    assert (m["event"], m["data"]) == ("n", 7), m
    ra = health(a.port)["redis"]
    assert ra["unsynced"] == 0 and ra["cluster"]["tryagain"] >= 1, ra
    assert wait_until(lambda: command(target, "PUBSUB", "SHARDNUMSUB",
                                      "t:room:{%s}" % room)
                      .endswith(b":1\r\n"), 5)
    # the next is this one: 7 came once
    push_reaches(a, room, [far])


def test_master_killed_under_traffic(rt, cluster):
    """The master of a room with history dies while a publisher pushes
    to it every 20 ms: its replica takes over; every push answered 200
    reaches the members on the other instance once, those made while no
    master served the slot waited in the outbox, those the other
    instance's subscriber missed while it moved come from the room's
    list in Redis (the gap fill).  Only what was on the wire to the dead
    master may be lost, and it is counted."""
    a, b = start_two(rt, cluster, history="1000 5m")
    rooms = rooms_on_three_shards(cluster)
    room = rooms[0]
    victim = cluster.master_of(room)
    far = [rt.client("f%d" % i, port=b.port) for i in range(3)]
    for c in far:
        c.join(room)
    drain(far, 0.5)

    sent = []
    killed_at = None
    t0 = time.time()
    n = 0
    while time.time() - t0 < 8:
        if killed_at is None and n == 20:
            cluster.kill(victim)
            killed_at = n
        status, body = push(a.port, {"room": room, "topic": "n",
                                     "payload": n}, "/hpush")
        assert status == 200, body
        sent.append(n)
        n += 1
        time.sleep(0.02)
        if killed_at is not None and n > killed_at + 50 \
                and cluster.master_of(room) not in (None, victim) \
                and redis_up(a.port) and redis_up(b.port):
            break

    assert wait_until(lambda: cluster.master_of(room) != victim, 10), \
        (n, time.time() - t0, cluster.masters())
    assert wait_until(lambda: redis_up(a.port) and redis_up(b.port), 10)
    ha = health(a.port)["redis"]
    # what went to the dead master on the wire is lost, and counted
    lost = ha["unsynced"]
    assert lost <= 5, ha
    for c in far:
        got = numbers(c)
        # each of A's two workers keeps its own order, not their mix
        assert len(got) == len(set(got)), got
        assert set(got) <= set(sent), got
        assert len(got) >= len(sent) - lost, (len(got), len(sent), lost)
        if lost == 0:
            assert sorted(got) == sent, got
    # and a push after the failover goes everywhere at once
    push_reaches(a, room, far)
    # the status names the promoted replica, not the dead master
    assert wait_until(lambda: nodes_match(a.port, cluster), 5), \
        health(a.port)["redis"]["cluster"]


def test_configuration_errors(rt, tmp_path):
    from conftest import Nginx
    for arg, err in (
            ("redis://127.0.0.1:7000,127.0.0.1:7001",
             "several hosts without \"cluster\""),
            ("redis://127.0.0.1:7000/2 cluster",
             "database number, which Redis Cluster does not have"),
            ("redis://127.0.0.1:7000,127.0.0.1:0 cluster",
             "invalid port"),
            ("redis://127.0.0.1:7000,no-such-host.invalid:7001 cluster",
             "host not found")):
        bad = Nginx(tmp_path / ("bad%d" % abs(hash(arg))))
        bad.write_conf(rt_http(http_extra="realtime_redis rt %s;" % arg))
        rc, out = bad.test_conf()
        out += bad.error_log()
        assert rc != 0 and err in out, (arg, out)
