"""With nginx built --with-debug (Debian's is) and an error_log at debug,
one message can be followed end to end: the upgrade, the frame in, the
join, the publication, the wakeup of the other worker, its drain and
delivery, the flush, the close handshake; with JWT and Redis, the key
tried and the subscription and the message from Redis.
"""

import shutil
import subprocess
import time

import pytest

from conftest import NGINX_BIN, rt_http, wait_until
from test_jwt import SECRET, hs
from test_redis import Redis, redis_up


def debug_build():
    r = subprocess.run([NGINX_BIN, "-V"], capture_output=True, text=True)
    return "--with-debug" in r.stderr + r.stdout


pytestmark = pytest.mark.skipif(not debug_build(),
                                reason="nginx is not built --with-debug")


def debug_log(rt):
    return (rt.ngx.prefix / "debug.log").read_text(errors="replace")


def in_order(text, needles):
    """Each needle after the one before it; returns the missing one."""
    at = 0
    for n in needles:
        at = text.find(n, at)
        if at < 0:
            return n
    return None


def test_one_message_end_to_end(rt):
    rt.start(rt_http(presence="off"),
             main_extra="error_log debug.log debug;")
    a, b = rt.clients_spread(["a", "b"])
    for c in (a, b):
        assert c.join("r")["event"] == "joined"
    a.publish("r", "chat", "hi")
    assert b.recv()["data"] == "hi"
    b.close()
    rt.clients.remove(b)
    time.sleep(0.3)

    log = debug_log(rt)
    pid_a, pid_b = a.pid, b.pid
    mine = [l for l in log.splitlines() if "#%d:" % pid_a in l]
    theirs = [l for l in log.splitlines() if "#%d:" % pid_b in l]
    missing = in_order("\n".join(mine), [
        "realtime websocket upgraded",
        "realtime frame in: opcode 1",
        "realtime join \"r\"",
        "realtime frame in: opcode 1",
        "realtime publish type 1 \"r\": 2 sockets, 1 here",
        "realtime ipc wake worker %d" % pid_b,
    ])
    assert missing is None, (missing, mine[-40:])
    missing = in_order("\n".join(theirs), [
        "realtime websocket upgraded",
        "realtime join \"r\"",
        "realtime ipc drain: 1 records",
        "realtime deliver type 1 \"r\": 1 sockets here",
        "realtime flush: 1 frames of 1, out",
        "realtime close frame in: 1000",
        "realtime close frame out: 1000",
    ])
    assert missing is None, (missing, theirs[-40:])


@pytest.mark.skipif(not shutil.which("redis-server"),
                    reason="redis-server is not installed")
def test_jwt_and_redis_are_traced(rt, tmp_path):
    redis = Redis(tmp_path)
    redis.start()
    try:
        url = "redis://127.0.0.1:%d/0" % redis.port
        rt.start(rt_http(presence="off",
                         http_extra="realtime_redis rt %s prefix=d:;" % url,
                         ws_extra="realtime_jwt_key secret=%s;" % SECRET),
                 main_extra="error_log debug.log debug;")
        assert wait_until(lambda: redis_up(rt.port), 10)
        c = rt.client(path="/ws?token=" + hs())
        assert c.join("traced")["event"] == "joined"
        assert wait_until(lambda: "realtime redis: subscribed to "
                          "\"d:room:{traced}\"" in debug_log(rt), 5)
        c.publish("traced", "m", 1, echo=True)
        assert c.recv()["data"] == 1
        assert wait_until(lambda: "realtime redis: message of" in
                          debug_log(rt), 5)
        log = debug_log(rt)
        for needle in ("realtime redis: connecting to 127.0.0.1:%d"
                       % redis.port,
                       "realtime jwt: trying key 1 of 1",
                       "realtime jwt: signature verified after 1 keys",
                       "realtime redis: subscribed to \"d:{all}\""):
            assert needle in log, needle
    finally:
        redis.stop()
