"""The Socket.IO test harness itself: t/sioclient.py driving the real npm
socket.io-client (t/js/sio_driver.js) against the reference npm socket.io
server (t/js/ref_server.js). No nginx here; this only shows the harness
reports what a real client sees before it is pointed at the module."""

import json
import select
import socket
import subprocess
import time
import urllib.request

import pytest

from sioclient import (JS_DIR, NODE, SioDriver, SioError, SioTimeout,
                       b64bin, decode_bin, node_missing_reason)

_reason = node_missing_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

REF_SERVER = JS_DIR / "ref_server.js"


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def ref_server(request):
    """http://127.0.0.1:<port> of a running ref_server.js."""
    port = _free_port()
    proc = subprocess.Popen([NODE, str(REF_SERVER), str(port)],
                            cwd=str(JS_DIR), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def kill():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    request.addfinalizer(kill)

    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if not line.startswith(b"listening "):
        err = b""
        if proc.poll() is not None:
            err = proc.stderr.read()
        pytest.fail("ref_server.js did not start: %r %r" % (line, err))
    return "http://127.0.0.1:%d" % port


@pytest.fixture(scope="module")
def driver():
    with SioDriver() as d:
        yield d


@pytest.fixture
def sio(driver):
    yield driver
    driver.close_all()


def test_driver_info(sio):
    assert sio.info["client"].startswith("4.8.")
    assert sio.info["node"].startswith("v")


def test_default_transports_upgrade(sio, ref_server):
    info = sio.connect("a", ref_server)
    assert info["ok"] and info["id"]
    # the engine opens on polling; the websocket probe races the CONNECT
    # answer, so the transport at connect time is either
    assert info["transport"] in ("polling", "websocket")
    assert sio.wait("a", "$upgrade", timeout=5) == [["websocket"]]
    st = sio.state("a")
    assert len(st.pop("sid")) == 20          # Node's engine.io ids
    # no connection state recovery on the reference server: no pid
    assert st == {"connected": True, "id": info["id"],
                  "transport": "websocket", "recovered": False,
                  "pid": None}
    assert sio.emit("a", "echo", "after upgrade") == ["after upgrade"]


def test_websocket_only(sio, ref_server):
    info = sio.connect("a", ref_server, transports=["websocket"])
    assert info["transport"] == "websocket"
    assert sio.emit("a", "echo", {"x": 1}, [1, 2], None) == \
        [{"x": 1}, [1, 2], None]


@pytest.mark.parametrize("opts", [{"upgrade": False},
                                  {"transports": ["polling"]}])
def test_polling_only(sio, ref_server, opts):
    info = sio.connect("a", ref_server, **opts)
    assert info["transport"] == "polling"
    assert sio.emit("a", "echo", "hi", 42) == ["hi", 42]
    # no upgrade happens: the upgrade probe would be over long before this
    time.sleep(0.3)
    assert sio.state("a")["transport"] == "polling"
    assert [e for e, _ in sio.events("a")] == []


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_binary_round_trip(sio, ref_server, transports):
    sio.connect("a", ref_server, transports=transports)
    blob = bytes(range(256))
    ack = sio.emit("a", "echo", blob, {"nested": [b"\x00", "text"]},
                   b64bin(b"\xff\xfe"))
    assert ack == [blob, {"nested": [b"\x00", "text"]}, b"\xff\xfe"]
    # without an ack the server emits "echo" back to us
    sio.emit("a", "echo", b"again", ack=False)
    assert sio.wait("a", "echo") == [[b"again"]]


def test_join_publish_second_client(sio, ref_server):
    sio.connect("pub", ref_server, transports=["websocket"])
    sio.connect("sub", ref_server)
    assert sio.emit("sub", "join", "r1") == [{"room": "r1", "members": 1}]
    assert sio.emit("pub", "join", {"room": "r2"}) == \
        [{"room": "r2", "members": 1}]
    assert sio.emit("pub", "publish", {"room": "r1", "event": "news",
                                       "data": {"n": 1}}) == [{"ok": True}]
    assert sio.emit("pub", "publish", {"room": "r1", "event": "news",
                                       "data": {"n": 2}}) == [{"ok": True}]
    assert sio.wait("sub", "news", count=2) == [[{"n": 1}], [{"n": 2}]]
    # the publisher is not in r1
    assert [e for e, _ in sio.events("pub")] == []


def test_push_over_http(sio, ref_server):
    sio.connect("a", ref_server, transports=["websocket"])
    assert sio.emit("a", "join", "topicroom")[0]["members"] == 1
    body = json.dumps({"room": "topicroom", "topic": "alert",
                       "payload": {"level": 3}}).encode()
    req = urllib.request.Request(ref_server + "/push", data=body,
                                 headers={"Content-Type":
                                          "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.load(r) == {"ok": True, "members": 1}
    assert sio.wait("a", "alert") == [[{"level": 3}]]


def test_admin_namespace(sio, ref_server):
    info = sio.connect("adm", ref_server + "/admin",
                       transports=["websocket"])
    assert info["id"]
    assert sio.emit("adm", "join", "ops") == [{"room": "ops", "members": 1}]
    sio.connect("root", ref_server, transports=["websocket"])
    assert sio.emit("root", "join", "ops") == [{"room": "ops", "members": 1}]
    # a push to "/" does not reach /admin
    sio.emit("root", "publish", {"room": "ops", "event": "e", "data": 1})
    assert sio.wait("root", "e") == [[1]]
    assert sio.events("adm") == []


def test_timeouts_and_errors(sio, ref_server):
    sio.connect("a", ref_server, transports=["websocket"])
    t0 = time.monotonic()
    with pytest.raises(SioTimeout):
        sio.wait("a", "never", timeout=0.3)
    with pytest.raises(SioTimeout):
        sio.emit("a", "no-such-handler", timeout=0.3)   # never acked
    assert time.monotonic() - t0 < 3
    with pytest.raises(SioError, match="no such socket"):
        sio.state("nobody")
    # an unknown namespace: the connect_error comes back as an answer
    ans = sio.connect("x", ref_server + "/nope", check=False,
                      transports=["websocket"])
    assert ans["ok"] is False and ans["error"] == "Invalid namespace"
    with pytest.raises(SioError, match="Invalid namespace"):
        sio.connect("x", ref_server + "/nope", transports=["websocket"])


def test_disconnect_recorded(sio, ref_server):
    sio.connect("a", ref_server, transports=["websocket"])
    sio.disconnect("a")
    assert sio.wait("a", "disconnect") == [["io client disconnect"]]
    assert sio.state("a")["connected"] is False


def test_decode_bin():
    assert decode_bin([{"$bin": "AAE="}, {"a": {"$bin": ""}}, {"$bin": 1}]) \
        == [b"\x00\x01", {"a": b""}, {"$bin": 1}]
    assert b64bin(b"\x00\x01") == {"$bin": "AAE="}
