"""The Socket.IO demo page (conf-examples/html/socketio.html) in a real
browser: Debian's headless Chromium, driven by npm playwright-core
(t/js/browser_page.js), loads the stock socket.io-client bundle from nginx,
connects with default options (long-polling, then the upgrade to
WebSocket), joins a room and shows a push to it.

Needs /usr/bin/chromium (apt: chromium, in the Makefile's APT_TEST) and
t/js/node_modules/playwright-core (npm ci --prefix t/js); `make test`
installs both.
"""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, T_DIR, pid_alive, rt_http, wait_until
from sioclient import NODE

CHROMIUM = Path("/usr/bin/chromium")
JS_DIR = T_DIR / "js"
BROWSER_PAGE_JS = JS_DIR / "browser_page.js"
PLAYWRIGHT = JS_DIR / "node_modules" / "playwright-core"
PAGE = REPO / "conf-examples" / "html" / "socketio.html"
BUNDLE = JS_DIR / "node_modules" / "socket.io-client" / "dist" / \
    "socket.io.min.js"
SCREENSHOT = REPO / "build" / "test-artifacts" / "socketio-page.png"

WAIT = 15           # seconds: each wait of browser_page.js
SLACK = 10          # seconds more before this side gives up on it


def _missing():
    if not CHROMIUM.exists():
        return "%s missing (apt-get install chromium; make deps-test)" \
            % CHROMIUM
    if not PLAYWRIGHT.is_dir():
        return "%s missing (npm ci --prefix t/js; make deps-test)" \
            % PLAYWRIGHT
    return None


# Not under ASan: a Chromium run is long, and the polling, upgrade and
# push it drives run under ASan in test_socketio_polling.py
pytestmark = [
    pytest.mark.skipif(_missing() is not None, reason=str(_missing())),
]

LOCATIONS = r"""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_user $arg_user;
        }
        location = /socketio.html {
            default_type text/html;
            alias "%s";
        }
        location = /socket.io-client/socket.io.min.js {
            default_type application/javascript;
            alias "%s";
        }
""" % (PAGE, BUNDLE)


def descendants(pid):
    """The pids of every live descendant of pid (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class BrowserPage:
    """browser_page.js as a child process, its stdout read line by line
    into a queue by a thread, every read bounded."""

    def __init__(self, url, room, shot):
        self.stderr_path = shot.parent / "socketio-page.stderr.log"
        shot.parent.mkdir(parents=True, exist_ok=True)
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [NODE, str(BROWSER_PAGE_JS), url, room, str(WAIT), str(shot)],
            cwd=str(JS_DIR), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, start_new_session=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace"))
        self.lines.put(None)

    def stderr_tail(self):
        self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def read(self, timeout):
        """The next JSON line of the script's stdout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("browser_page.js said nothing for %ss; "
                                 "stderr:\n%s" % (timeout,
                                                  self.stderr_tail()))
        if line is None:
            raise AssertionError("browser_page.js exited (%s) early; "
                                 "stderr:\n%s" % (self.proc.wait(5),
                                                  self.stderr_tail()))
        msg = json.loads(line)
        assert msg.get("ok") is not False, \
            "browser_page.js failed: %s\n%s" % (
                msg.get("error"), json.dumps(msg, indent=1))
        return msg

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("browser_page.js did not exit within %ss"
                                 % timeout)

    def kill(self):
        """Ends the script and its browser, whatever state they are in:
        SIGTERM (playwright closes the browser), then SIGKILL for any of
        them still there (Chromium runs in a process group of its own)."""
        pids = [self.proc.pid] + descendants(self.proc.pid)
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.stderr):
            try:
                f.close()
            except OSError:
                pass


def test_page_polls_upgrades_joins_and_shows_a_push(rt):
    rt.start(rt_http(locations=LOCATIONS))
    room = "browser-room"
    url = "http://127.0.0.1:%d/socketio.html?user=chromium" % rt.port
    SCREENSHOT.unlink(missing_ok=True)
    t0 = time.monotonic()
    page = BrowserPage(url, room, SCREENSHOT)
    try:
        ready = page.read(2 * WAIT + SLACK)      # launch, websocket, join
        assert ready["ready"] is True, ready
        assert ready["joined"] == {"room": room, "members": 1}, ready

        r = rt.push({"room": room, "topic": "greeting",
                     "payload": {"text": "hello from the test"}})
        assert r.status == 200, r
        assert r.json()["delivered"] == 1, r
        page.send("greeting")

        seen = page.read(WAIT + SLACK)
        assert page.wait(10) == 0, page.stderr_tail()
    finally:
        page.kill()
    elapsed = time.monotonic() - t0

    detail = json.dumps(seen, indent=1)
    # the transport shown live: long-polling first, then the upgrade
    shown = [t for t in seen["transports"] if t in ("polling", "websocket")]
    assert shown == ["polling", "websocket"], detail
    assert seen["transports"][-1] == "websocket", detail
    assert seen["transport_history"] == "polling → websocket", detail
    assert seen["status"].startswith("connected as chromium"), detail
    # the push, shown once, with its data
    greetings = [e for e in seen["events"] if e["event"] == "greeting"]
    assert len(greetings) == 1, detail
    assert json.loads(greetings[0]["data"]) == \
        {"text": "hello from the test"}, detail
    assert "hello from the test" in greetings[0]["text"], detail
    assert seen["console_errors"] == [], detail
    assert seen["failed_requests"] == [], detail
    assert SCREENSHOT.stat().st_size > 0

    # one Engine.IO session, upgraded once: no reconnect, no second
    # handshake (the WebSocket's line is logged when it closes)
    access = rt.ngx.prefix / "access.log"

    def sio_requests():
        lines = access.read_text().splitlines()
        return ([l for l in lines if "transport=polling" in l
                 and "sid=" not in l],
                [l for l in lines if "transport=websocket" in l])
    assert wait_until(lambda: sio_requests()[1], 5), access.read_text()
    handshakes, upgrades = sio_requests()
    assert len(handshakes) == 1 and len(upgrades) == 1, access.read_text()
    assert " 101 " in upgrades[0], upgrades
    # nothing worse than [info] (the browser's WebSocket is reset when
    # Chromium exits: "recv() failed (104: ...)" at info)
    bad = [l for l in rt.ngx.error_log().splitlines()
           if re.search(r"\[(warn|error|crit|alert|emerg)\]", l)]
    assert not bad, "\n".join(bad)
    print("browser test: %.1fs, browser_page.js timings (ms): %s"
          % (elapsed, seen["timings_ms"]))
