"""/metrics read by Prometheus's own tools: promtool checks the
exposition (families whole, HELP and TYPE once, histograms well formed),
and a real Prometheus scrapes both instances' metrics (each scrape
answered by whichever worker takes it, with every worker's numbers) and
answers queries over its HTTP API. The Grafana dashboard in
conf-examples/ asks only for metrics that exist.
"""

import json
import os
import re
import shutil
import subprocess
import urllib.parse

import pytest

from conftest import free_port, http_call, rt_http, wait_until
from test_redis import Redis, redis_up

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "..", "conf-examples", "grafana-dashboard.json")

pytestmark = pytest.mark.skipif(
    not (PROMTOOL and PROMETHEUS and shutil.which("redis-server")),
    reason="prometheus (promtool) or redis-server is not installed "
           "(make deps-test)")


def conf(url):
    return rt_http(zone="rt 8m", presence="off",
                   http_extra="realtime_redis rt %s "
                   "prefix=p:;" % url,
                   ws_extra="""
            realtime_history 50 1m;
            realtime_forward hello /_rt/hello;
    """, locations="""
        location = /_rt/hello {
            internal;
            default_type application/json;
            return 200 '{"ack": {"hi": true}}';
        }
    """)


def traffic(rt, port):
    a = rt.client("a", port=port)
    b = rt.client("b", port=port)
    for c in (a, b):
        assert c.join("r")["event"] == "joined"
    a.publish("r", "chat", "hi")
    assert b.recv()["event"] == "chat"
    a.send({"event": "hello", "data": {}, "id": 7})
    assert a.recv()["event"] == "hello"
    r = http_call(port, "POST", "/sendPayload", json.dumps(
        {"room": "r", "topic": "t", "payload": 1}),
        {"Content-Type": "application/json"})
    assert r.status == 200, r
    for c in (a, b):
        assert c.recv()["event"] == "t"
    return a, b


def metrics(port):
    r = http_call(port, "GET", "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def test_promtool_checks_the_exposition(rt, tmp_path):
    redis = Redis(tmp_path)
    redis.start()
    try:
        ngx = rt.start(conf("redis://127.0.0.1:%d/0" % redis.port))
        assert wait_until(lambda: redis_up(ngx.port), 10)
        traffic(rt, ngx.port)
        text = metrics(ngx.port)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (r.stdout, r.stderr)

        # the histograms are there and counted what happened
        for name in ("realtime_delivery_lag_seconds",
                     "realtime_handshake_seconds",
                     "realtime_forward_latency_seconds"):
            assert "# TYPE %s histogram" % name in text, name
            count = re.search(r'^%s_count\{zone="rt"\} (\d+)$' % name, text,
                              re.M)
            assert count and int(count.group(1)) >= 1, name
        # the per-worker families, one line per worker each
        for name in ("realtime_worker_connections",
                     "realtime_worker_messages_out_total"):
            assert len(re.findall(r"^%s\{" % name, text, re.M)) == 2, name
    finally:
        redis.stop()


def query(port, q):
    r = http_call(port, "GET", "/api/v1/query?query=" +
                  urllib.parse.quote(q))
    assert r.status == 200, r
    body = json.loads(r.body)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_real_prometheus_scrapes_both_instances(rt, tmp_path):
    redis = Redis(tmp_path)
    redis.start()
    prom = None
    try:
        url = "redis://127.0.0.1:%d/0" % redis.port
        a, b = rt.start(conf(url)), rt.start(conf(url))
        for ngx in (a, b):
            assert wait_until(lambda: redis_up(ngx.port), 10)
        clients = traffic(rt, a.port) + traffic(rt, b.port)

        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: realtime
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:%d', '127.0.0.1:%d']
""" % (a.port, b.port))
        r = subprocess.run([PROMTOOL, "check", "config", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        log = open(tmp_path / "prometheus.log", "wb")
        prom = subprocess.Popen(
            [PROMETHEUS, "--config.file=%s" % cfg,
             "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdout=log, stderr=log)
        log.close()

        def scraped():
            try:
                up = query(port, 'up{job="realtime"}')
            except Exception:
                return False
            return len(up) == 2 and all(s["value"][1] == "1" for s in up)

        assert wait_until(scraped, 30), \
            (tmp_path / "prometheus.log").read_text()[-2000:]

        # both workers of each instance, whichever answered the scrape
        conns = query(port, "sum by (instance) "
                            "(realtime_worker_connections)")
        assert sorted(float(s["value"][1]) for s in conns) == [2.0, 2.0], \
            conns
        workers = query(port, "count by (instance) "
                              "(realtime_worker_connections)")
        assert [s["value"][1] for s in workers] == ["2", "2"], workers
        lag = query(port, "sum(realtime_delivery_lag_seconds_count)")
        assert lag and float(lag[0]["value"][1]) >= 8, lag
        p99 = query(port, "histogram_quantile(0.99, sum by (le) "
                          "(realtime_delivery_lag_seconds_bucket))")
        assert p99 and float(p99[0]["value"][1]) <= 1.0, p99
        assert query(port, "realtime_redis_up") and all(
            s["value"][1] == "1" for s in query(port, "realtime_redis_up"))

        # every expression of the dashboard names a metric that exists
        with open(DASHBOARD) as f:
            dash = json.load(f)
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        assert exprs
        for e in exprs:
            names = set(re.findall(r"realtime_[a-z_]+", e))
            assert names, e
            for n in names:
                base = re.sub(r"_(bucket|sum|count)$", "", n)
                assert query(port, "count({__name__=~\"%s.*\"})" % base), \
                    (e, n)
        for c in clients:
            c.close()
            rt.clients.remove(c)
    finally:
        if prom:
            prom.terminate()
            try:
                prom.wait(10)
            except subprocess.TimeoutExpired:
                prom.kill()
        redis.stop()
