"""realtime_socketio_recovery: Socket.IO connection state recovery with
the npm socket.io-client (4.8): a client whose transport goes comes back
with the same socket id, its rooms and every publication it missed, in
order, and socket.recovered is true; two workers, so it may come back on
the other one.
"""

import json
import time

import pytest

from conftest import http_call, rt_http
from sioclient import SioDriver, node_available

pytestmark = [pytest.mark.asan,
              pytest.mark.skipif(not node_available(),
                                 reason="node or socket.io-client missing")]


def recovery_http(extra=""):
    return rt_http(presence="off", locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_history 1000 5m;
            realtime_socketio_recovery 30s;
            %s
        }
    """ % extra)


def push(rt, room, n):
    r = http_call(rt.port, "POST", "/sendPayload", json.dumps(
        {"room": room, "topic": "m", "payload": n}),
        {"Content-Type": "application/json"})
    assert r.status == 200, r


def opts(**kw):
    o = dict(path="/socket.io/", transports=["websocket"],
             reconnection=True, reconnectionDelay=100,
             reconnectionDelayMax=200, randomizationFactor=0)
    o.update(kw)
    return o


@pytest.mark.parametrize("transports", [["websocket"], ["polling"],
                                        ["polling", "websocket"]])
def test_recovered_with_its_id_rooms_and_missed_packets(rt, transports):
    rt.start(recovery_http())
    url = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("s", url, **opts(transports=transports))
        sid = drv.state("s")["id"]
        for room in ("r1", "r2"):
            ack = drv.emit("s", "join", {"room": room})
            assert ack[0]["room"] == room, ack
        for n in range(1, 4):
            push(rt, "r1" if n % 2 else "r2", n)
        got = drv.wait("s", "m", count=3)
        # each publication ends with its place, a string
        assert [a[0] for a in got] == [1, 2, 3], got
        assert all(isinstance(a[1], str) for a in got), got
        # the place: the zone's instance id (16), then its sequence
        assert len({a[1][:16] for a in got}) == 1, got
        assert [int(a[1][16:]) for a in got] == \
            sorted(int(a[1][16:]) for a in got)

        drv.drop("s")
        # missed while the transport is away (more than a reconnect)
        for n in range(4, 12):
            push(rt, "r1" if n % 2 else "r2", n)
        back = drv.wait("s", "$connect", timeout=10)
        assert back == [[sid, True]], back
        st = drv.state("s")
        assert st["id"] == sid and st["recovered"] is True, st

        got = drv.wait("s", "m", count=8, timeout=10)
        assert [a[0] for a in got] == list(range(4, 12)), got
        # then live ones, in both rooms, once
        push(rt, "r1", 12)
        push(rt, "r2", 13)
        got = drv.wait("s", "m", count=2)
        assert [a[0] for a in got] == [12, 13], got
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_not_recovered_is_a_new_session(rt):
    """Past the history (3 kept, 8 missed), the session is new: another
    id, no rooms, socket.recovered false; as in Node."""
    rt.start(rt_http(presence="off", locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_history 3 5m;
            realtime_socketio_recovery 30s;
        }
    """))
    url = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("s", url, **opts())
        sid = drv.state("s")["id"]
        drv.emit("s", "join", {"room": "r"})
        push(rt, "r", 1)
        drv.wait("s", "m")
        drv.drop("s")
        for n in range(2, 10):
            push(rt, "r", n)
        back = drv.wait("s", "$connect", timeout=10)
        assert len(back) == 1 and back[0][0] != sid, back
        assert back[0][1] is False, back
        # no rooms: a push to r does not reach it
        push(rt, "r", 10)
        time.sleep(0.3)
        assert [e for e in drv.events("s") if e[0] == "m"] == []


def test_without_recovery_no_offset_argument(rt):
    rt.start(rt_http(presence="off", locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_history 100 5m;
        }
    """))
    url = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("s", url, path="/socket.io/", transports=["websocket"])
        drv.emit("s", "join", {"room": "r"})
        push(rt, "r", 1)
        assert drv.wait("s", "m") == [[1]]


def test_recovery_needs_history(rt, tmp_path):
    from conftest import Nginx
    ngx = Nginx(tmp_path / "bad")
    ngx.write_conf(rt_http(locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_socketio_recovery 30s;
        }
    """))
    rc, out = ngx.test_conf()
    out += ngx.error_log()
    assert rc != 0 and "needs realtime_history" in out, out


def test_not_recovered_after_its_time(rt):
    """realtime_socketio_recovery 1s: a client that comes back 2.5 s later
    gets a new session (the kept one is swept, or refused as too late)."""
    rt.start(rt_http(presence="off", locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_history 100 5m;
            realtime_socketio_recovery 1s;
        }
    """))
    url = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("s", url, **opts(reconnectionDelay=2500,
                                     reconnectionDelayMax=2500))
        sid = drv.state("s")["id"]
        drv.emit("s", "join", {"room": "r"})
        push(rt, "r", 1)
        drv.wait("s", "m")
        drv.drop("s")
        back = drv.wait("s", "$connect", timeout=10)
        assert len(back) == 1 and back[0][0] != sid and back[0][1] is False
    log = rt.ngx.error_log()
    assert "not recovered: unknown or gone" in log \
        or "not recovered: too late" in log, log[-2000:]
