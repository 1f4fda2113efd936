#!/usr/bin/python3
"""Redis Cluster through two ngx-realtime instances (issue 13): the same
load through one Redis, a cluster of one master (1 shard) and a cluster
of three masters (3 shards), one after the other on this machine, and
the CPU of each redis-server.  Writes its own section of
bench/RESULTS.md (between CLUSTER_BEGIN and CLUSTER_END), which a full
`make bench` carries over.

    make bench-cluster             # or:
    /usr/bin/python3 bench/cluster.py [--out FILE] [--seconds N]

The load is bench/run.py's (its nginx configuration, its load
generator): two instances with one worker each, 2000 subscribers in 125
rooms, 8 of each room on each instance, four publisher connections
on the first instance pushing batches of 20 items to random rooms as
fast as they are answered.  Each item is one publication to Redis
(SPUBLISH on a cluster, on the room's shard), delivered by the second
instance's subscription to its half of the room.
"""

import argparse
import datetime
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: processes, load, report rows)

CLUSTER_BEGIN, CLUSTER_END = run.KEPT[0]
SLOTS = 16384


def resp_command(port, *args):
    """One command on a raw socket; the reply's first line."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(("*%d\r\n" % len(args)).encode() + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
        return s.recv(65536).decode(errors="replace")


class RedisCluster:
    """n masters, no replicas, slots split evenly, on REDIS_PORT and the
    ports 10 above each other (their bus ports, 10000 above, unused)."""

    def __init__(self, n):
        self.n = n
        self.ports = [run.REDIS_PORT + 10 * i for i in range(n)]
        self.dir = os.path.join(run.BUILD, "redis-cluster-%d" % n)
        self.procs = []
        self.samples = []
        self.cmd = ["redis-server", "--port", "<port>", "--bind",
                    "127.0.0.1", "--cluster-enabled", "yes", "--save", "",
                    "--appendonly", "no"]

    def start(self):
        subprocess.run(["rm", "-rf", self.dir], check=True)
        for p in self.ports:
            d = os.path.join(self.dir, str(p))
            os.makedirs(d)
            if run.wait_port(p, 0.1):
                raise RuntimeError("port %d is taken" % p)
            self.procs.append(subprocess.Popen(
                [x if x != "<port>" else str(p) for x in self.cmd]
                + ["--dir", d, "--logfile", os.path.join(d, "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in self.ports:
            if not run.wait_port(p):
                raise RuntimeError("redis-server %d did not start" % p)
        per = SLOTS // self.n
        for i, p in enumerate(self.ports):
            last = SLOTS - 1 if i == self.n - 1 else (i + 1) * per - 1
            r = resp_command(p, "CLUSTER", "ADDSLOTSRANGE", str(i * per),
                             str(last))
            if not r.startswith("+OK"):
                raise RuntimeError("ADDSLOTSRANGE on %d: %s" % (p, r))
            if i:
                resp_command(p, "CLUSTER", "MEET", "127.0.0.1",
                             str(self.ports[0]))
        deadline = time.time() + 20
        while time.time() < deadline:
            if all("cluster_state:ok" in resp_command(p, "CLUSTER", "INFO")
                   and "cluster_known_nodes:%d" % self.n
                   in resp_command(p, "CLUSTER", "INFO")
                   for p in self.ports):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster did not come up")

    def cpu(self):
        """Summed (user, system) as run.Redis gives it; each call's
        per-process figures are kept for per_shard()."""
        each = [run.proc_cpu(p.pid) for p in self.procs]
        self.samples.append([u + s for u, s in each])
        return (sum(u for u, _ in each), sum(s for _, s in each))

    def per_shard(self):
        """Each redis-server's CPU seconds between the last two samples
        (run_scenario takes them at READY and at the end)."""
        if len(self.samples) < 2:
            return []
        return [b - a for a, b in zip(self.samples[-2], self.samples[-1])]

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def scenario(seconds):
    # an odd number of rooms: connection i is on instance i % 2 and in
    # room i % rooms, so that each room has 8 members on each instance
    return {"id": "S6", "conns": 2000, "rooms": 125, "pub_conns": 4,
            "batch": 20, "duration": seconds, "instances": 2,
            "workers": 1, "redis": True, "servers": ["ours"],
            "what": "two instances (1 worker each): 2000 subscribers in "
                    "125 rooms, 8 of each room on each; 4 publisher "
                    "connections on the first push batches of 20 items "
                    "to random rooms, as fast as answered, for %d s"
                    % seconds}


def one_run(sc, shards):
    """run.run_scenario with Redis as one server (shards 0) or a cluster
    of that many masters."""
    saved_redis, saved_http = run.Redis, run.SERVERS["ours"]["redis_http"]
    made = []
    if shards:
        ports = [run.REDIS_PORT + 10 * i for i in range(shards)]
        run.SERVERS["ours"]["redis_http"] = (
            "    realtime_redis bench redis://127.0.0.1:%d" +
            "".join(",127.0.0.1:%d" % p for p in ports[1:]) +
            " cluster prefix=bench: ;")

        def factory():
            made.append(RedisCluster(shards))
            return made[-1]
        run.Redis = factory
    try:
        res = run.run_scenario(sc, "ours")
    finally:
        run.Redis, run.SERVERS["ours"]["redis_http"] = saved_redis, saved_http
    res["shards"] = shards
    if made:
        res["redis_cpu_per_shard_s"] = made[-1].per_shard()
    return res


def section(results, started, elapsed, seconds, facts):
    L = [CLUSTER_BEGIN]
    w = L.append
    sc = scenario(seconds)
    w("## Redis Cluster: one Redis, 1 shard, 3 shards (issue 13)")
    w("")
    w("Written by `bench/cluster.py --seconds %d` on %s UTC (module commit "
      "`%s`%s); the run took **%.0f s**. %s" % (
          seconds, started.strftime("%Y-%m-%d %H:%M"), facts["commit"],
          " plus uncommitted changes in src/" if facts["dirty"] else "",
          elapsed, sc["what"][0].upper() + sc["what"][1:] + "."))
    w("")
    w("The same load three times: through one `redis-server` "
      "(`realtime_redis bench redis://127.0.0.1:16379/0`, PUBLISH), "
      "through a Redis Cluster of one master holding every slot, and "
      "through one of three masters (slots split evenly; `realtime_redis "
      "bench redis://127.0.0.1:16379,127.0.0.1:16389,127.0.0.1:16399 "
      "cluster`, SPUBLISH on each room's shard). No replicas: the "
      "figure is the publish path. Each item of a batch is one "
      "publication to Redis.")
    w("")
    names = {0: "one Redis", 1: "cluster, 1 shard", 3: "cluster, 3 shards"}
    w("| metric | %s |" % " | ".join(names[r["shards"]] for r in results))
    w("| --- |%s" % (" ---: |" * len(results)))
    rows = run.scenario_rows(sc)
    rows.append(("redis-server CPU in the run, each (of one core)",
                 lambda r: " + ".join(
                     "%.0f%%" % (100.0 * c / wall(r))
                     for c in (r.get("redis_cpu_per_shard_s")
                               or [r.get("redis_cpu_s", 0)]))
                 if r.get("result") else "—"))
    rows.append(("redis-server CPU per 1000 publications",
                 lambda r: "%.2f ms" % (1000.0 * 1000 * r["redis_cpu_s"]
                                        / items(r))
                 if r.get("result") and items(r) else "—"))
    for label, f in rows:
        w("| %s | %s |" % (label, " | ".join(run.cell(r, f)
                                              for r in results)))
    w("")
    w(reading(results, names))
    w("")
    w("### Details per run (Redis Cluster)")
    w("")
    for r in results:
        r = dict(r)
        r["id"] = "S6, %s" % names[r["shards"]]
        run.run_details(r, L, "####")
        if r.get("redis_cpu_per_shard_s"):
            w("redis-server CPU per shard: %s s" % ", ".join(
                "%.2f" % c for c in r["redis_cpu_per_shard_s"]))
            w("")
    w(CLUSTER_END)
    return L


def reading(results, names):
    """What the figures say about the ceiling, from the figures."""
    ok = [r for r in results if r.get("result") and items(r)]
    if not ok:
        return "No run gave a result."
    parts = []
    for r in ok:
        per = r["redis_cpu_s"] / items(r)              # s per publication
        each = r.get("redis_cpu_per_shard_s") or [r["redis_cpu_s"]]
        busiest = max(each) / wall(r)
        parts.append("%s: %.1f µs of redis-server CPU per publication, "
                     "the busiest redis-server %.0f%% of a core for %s "
                     "publications/s" % (
                         names[r["shards"]], per * 1e6, 100 * busiest,
                         run.fmt(items(r) / wall(r))))
    return ("Reading: " + "; ".join(parts) + ". At these costs one "
            "redis-server would take the offered publications many times "
            "over: on this 2-core machine the two nginx instances (and the "
            "load generator beside them) are the ceiling, not Redis, so "
            "the deliveries/s do not grow with the shards here; what "
            "spreads is each redis-server's load. The cluster's redis-server "
            "CPU per publication includes its cluster bus and cron, which "
            "every master pays whatever the traffic.")


def wall(r):
    return run.get(r, "result", "client", "wall_run_s") or 1.0


def items(r):
    return run.get(r, "result", "publish", "items") or 0


def merge(old, text):
    if CLUSTER_BEGIN in old and CLUSTER_END in old:
        a = old.index(CLUSTER_BEGIN)
        b = old.index(CLUSTER_END) + len(CLUSTER_END)
        return old[:a] + text + old[b:]
    for head in ("\n## Reading these results", "\n## Profile",
                 "\n## Details per run"):
        if head in old:
            i = old.index(head) + 1
            return old[:i] + text + "\n\n" + old[i:]
    return old.rstrip("\n") + "\n\n" + text + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(run.REPO, "bench",
                                                  "RESULTS.md"))
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    if not os.path.exists(run.MODULE):
        sys.exit("no %s: run `make build` first" % run.MODULE)
    if not os.path.exists(run.LOADGEN):
        r = run.sh(["make", "-C", os.path.join(run.REPO, "bench")])
        if r.returncode:
            sys.exit("building loadgen failed:\n%s%s" % (r.stdout, r.stderr))
    started = datetime.datetime.utcnow()
    t0 = time.time()
    facts = run.machine_facts()
    sc = scenario(args.seconds)
    results = []
    for shards in (0, 1, 3):
        print("bench: S6 %-18s ..." % ("shards=%d" % shards), end="",
              flush=True)
        run.wait_quiet(10)
        res = one_run(sc, shards)
        results.append(res)
        print(" %s deliveries/s%s" % (
            run.fmt(run.get(res, "result", "deliveries", "per_s")),
            (" (error: %s)" % res["error"]) if res.get("error") else ""))
    text = "\n".join(section(results, started, time.time() - t0,
                             args.seconds, facts))
    old = open(args.out).read() if os.path.exists(args.out) else ""
    with open(args.out, "w") as f:
        f.write(merge(old, text) if old else text + "\n")
    print("bench: wrote the Redis Cluster section of %s"
          % os.path.relpath(args.out))


if __name__ == "__main__":
    main()
