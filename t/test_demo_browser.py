"""The demo of `make run` in a real browser: conf-examples/quickstart.conf
as it is (only its port and its run files moved), its page
conf-examples/html/index.html with the native JS client, two Chromium
contexts (alice and bob, headless Debian chromium driven by npm
playwright-core): each sees the other in the room's presence, bob gets
alice's message, and the curl line printed on the page, run as it is,
pushes a notice both pages show. The screenshot is kept under
build/test-artifacts/.
"""

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import (BAD_LOG_RE, MODULE, NGINX_BIN, REPO, T_DIR, free_port,
                      nginx_env, wait_until)
from sioclient import NODE

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = T_DIR / "js" / "demo_page.js"
PLAYWRIGHT = T_DIR / "js" / "node_modules" / "playwright-core"
QUICKSTART = REPO / "conf-examples" / "quickstart.conf"
SCREENSHOT = REPO / "build" / "test-artifacts" / "demo-page.png"
WAIT = 15

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and PLAYWRIGHT.is_dir()),
    reason="chromium or playwright-core missing (make deps-test)")


@pytest.fixture
def demo(tmp_path):
    """nginx with quickstart.conf, the repository as its prefix (as make
    run starts it), on a free port, its run files in tmp_path."""
    port = free_port()
    run = tmp_path / "run"
    (run / "tmp").mkdir(parents=True)
    conf = QUICKSTART.read_text()
    conf = conf.replace("load_module build/ngx_http_realtime_module.so;",
                        "load_module %s;" % MODULE)
    conf = conf.replace("listen 127.0.0.1:8080;",
                        "listen 127.0.0.1:%d;" % port)
    conf = re.sub(r"build/run/", str(run) + "/", conf)
    assert "listen 127.0.0.1:8080" not in conf and "build/run" not in conf
    path = tmp_path / "quickstart.conf"
    path.write_text(conf)
    log = run / "error.log"
    proc = subprocess.Popen([NGINX_BIN, "-p", str(REPO) + "/", "-c",
                             str(path), "-e", str(log), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True, env=nginx_env())
    import socket

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return proc.poll() is not None

    assert wait_until(up, 10) and proc.poll() is None, \
        log.read_text() if log.exists() else "no log"
    yield port, log
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    bad = [l for l in log.read_text(errors="replace").splitlines()
           if BAD_LOG_RE.search(l)]
    assert not bad, bad[:10]


def test_two_browsers_in_the_demo(demo):
    port, log = demo
    url = "http://127.0.0.1:%d/" % port
    p = subprocess.Popen([NODE, str(DRIVER), url, "lobby", str(WAIT),
                          str(SCREENSHOT)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=str(T_DIR / "js"))
    try:
        ready = json.loads(p.stdout.readline() or "{}")
        assert ready.get("ready"), (ready, p.stderr.read()
                                    if p.poll() is not None else "")
        curl = ready["curl"]
        # the page's own line, as a person would paste it
        assert curl.startswith("curl ") and "/sendPayload" in curl, curl
        argv = shlex.split(curl)
        assert "http://127.0.0.1:%d/sendPayload" % port in argv, argv
        r = subprocess.run(argv + ["-s", "-w", "\\n%{http_code}"],
                           capture_output=True, text=True, timeout=10)
        body, code = r.stdout.rsplit("\n", 1)
        assert code == "200", (code, body)
        assert json.loads(body)["delivered"] == 2, body
        p.stdin.write("pushed\n")
        p.stdin.flush()
        out = json.loads(p.stdout.readline() or "{}")
        p.wait(WAIT + 10)
    finally:
        if p.poll() is None:
            p.kill()
    assert out.get("ok"), out
    for who in ("alice", "bob"):
        page = out[who]
        assert page["presence"] == ["alice", "bob"], page
        assert page["status"] == "connected as " + who, page
        events = [e["event"] for e in page["events"] if e["event"]]
        assert events == ["chat", "notice"], page
        assert any(e["text"] == "push: hello from curl"
                   for e in page["events"]), page
    assert not out["console_errors"] and not out["failed_requests"], out
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 1000
