"""Shared machinery for the ngx-realtime integration tests.

Every test runs the real /usr/sbin/nginx with the built module, under its
own prefix in a pytest tmp dir, on 127.0.0.1 ports picked at run time.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

T_DIR = Path(__file__).resolve().parent
REPO = T_DIR.parent
if str(T_DIR) not in sys.path:
    sys.path.insert(0, str(T_DIR))


NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
MODULE = Path(os.environ.get("NGX_REALTIME_MODULE") or os.environ.get(
    "REALTIME_MODULE", REPO / "build" / "ngx_http_realtime_module.so"))

# `make integration-asan`: the library to LD_PRELOAD into nginx (libasan,
# for a module built with -fsanitize=address) and the directory that
# ASAN_OPTIONS / UBSAN_OPTIONS log_path write their reports into
PRELOAD = os.environ.get("NGX_REALTIME_PRELOAD")
SANITIZER_LOGS = os.environ.get("NGX_REALTIME_SANITIZER_LOGS")


def nginx_env():
    """The environment of a spawned nginx (None: inherit ours)."""
    if not PRELOAD:
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = PRELOAD
    return env


# "runtime error:": UBSan (make integration-asan) reports on nginx's stderr,
# which is the error log
BAD_LOG_RE = re.compile(
    r"\[alert\]|\[emerg\]|segfault|exited on signal|AddressSanitizer|"
    r"runtime error:")

# seconds; no single test may take longer (make chaos raises it)
TEST_WATCHDOG = int(os.environ.get("NGX_REALTIME_TEST_WATCHDOG", "90"))


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_until(pred, timeout, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def self_signed_cert(d):
    """A self-signed certificate for localhost in directory d: the paths
    of the certificate and of its key."""
    cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=localhost"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cert, key


class Nginx:
    """One nginx instance (master + 2 workers, daemon off) under prefix."""

    def __init__(self, prefix):
        self.prefix = Path(prefix)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf = self.prefix / "nginx.conf"
        self.error_log_path = self.prefix / "error.log"
        self.port = free_port()
        self.port2 = free_port()
        self.proc = None
        self._log_offset = 0

    # -- configuration ----------------------------------------------------

    def render(self, http_body, main_extra="", load_module=True):
        p = str(self.prefix)
        body = (http_body.replace("%PORT%", str(self.port))
                .replace("%PORT2%", str(self.port2))
                .replace("%PREFIX%", p))
        lines = []
        if load_module:
            lines.append("load_module %s;" % MODULE)
        lines += [
            "worker_processes 2;",
            "daemon off;",
            "master_process on;",
            "pid %s/nginx.pid;" % p,
            "lock_file %s/nginx.lock;" % p,
            "error_log %s/error.log info;" % p,
            main_extra,
            "events { worker_connections 1024; }",
            "http {",
            "    access_log %s/access.log;" % p,
            "    client_body_temp_path %s/client_body_temp;" % p,
            "    proxy_temp_path %s/proxy_temp;" % p,
            "    fastcgi_temp_path %s/fastcgi_temp;" % p,
            "    uwsgi_temp_path %s/uwsgi_temp;" % p,
            "    scgi_temp_path %s/scgi_temp;" % p,
            body,
            "}",
            "",
        ]
        return "\n".join(lines)

    def write_conf(self, http_body, main_extra="", load_module=True):
        self.conf.write_text(self.render(http_body, main_extra, load_module))

    def _cmd(self, *args):
        return [NGINX_BIN, "-p", str(self.prefix) + "/", "-c", str(self.conf),
                "-e", str(self.error_log_path)] + list(args)

    def test_conf(self):
        r = subprocess.run(self._cmd("-t"), capture_output=True, text=True,
                           timeout=20, env=nginx_env())
        return r.returncode, r.stdout + r.stderr

    # -- process control --------------------------------------------------

    def start(self, http_body, main_extra="", load_module=True,
              wait_ports=None, timeout=10):
        """Writes the config and starts nginx; waits until the master has
        2 workers and the ports (default: self.port) accept connections."""
        self.write_conf(http_body, main_extra, load_module)
        out = open(self.prefix / "stderr.log", "ab")
        self.proc = subprocess.Popen(self._cmd(), stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True,
                                     env=nginx_env())
        out.close()
        ports = [self.port] if wait_ports is None else wait_ports
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        "nginx exited with %s at startup:\n%s\n%s" % (
                            self.proc.returncode, self.error_log(),
                            (self.prefix / "stderr.log").read_text()))
                try:
                    socket.create_connection(("127.0.0.1", port),
                                             timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError("nginx did not listen on %d:\n%s"
                                           % (port, self.error_log()))
                    time.sleep(0.02)
        ok = wait_until(lambda: len(self.worker_pids()) == 2,
                        max(0.5, deadline - time.monotonic()))
        if not ok:
            # a master whose workers crash would respawn them for ever
            pids = self.worker_pids()
            self.kill()
            raise RuntimeError("nginx did not start 2 workers: %r" % pids)
        return self

    @property
    def master_pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self):
        if not self.running():
            return []
        r = subprocess.run(["ps", "--ppid", str(self.master_pid), "-o",
                            "pid=,cmd="], capture_output=True, text=True,
                           timeout=10)
        pids = []
        for line in r.stdout.splitlines():
            pid, _, cmd = line.strip().partition(" ")
            if "worker process" in cmd and pid_alive(int(pid)):
                pids.append(int(pid))
        return sorted(pids)

    def signal_cmd(self, sig):
        r = subprocess.run(self._cmd("-s", sig), capture_output=True,
                           text=True, timeout=20, env=nginx_env())
        assert r.returncode == 0, "nginx -s %s failed: %s%s" % (
            sig, r.stdout, r.stderr)

    def reload(self, timeout=10, wait_old_exit=False):
        """nginx -s reload; waits for 2 new workers (and, if asked, for the
        old ones to exit). Returns (old, new) worker pid lists."""
        old = self.worker_pids()
        self.signal_cmd("reload")
        new = wait_until(
            lambda: [p for p in self.worker_pids() if p not in old]
            if len([p for p in self.worker_pids() if p not in old]) == 2
            else None, timeout)
        assert new, "reload did not start 2 new workers (old %r, now %r)" % (
            old, self.worker_pids())
        if wait_old_exit:
            assert wait_until(lambda: not any(pid_alive(p) for p in old),
                              timeout), "old workers did not exit: %r" % old
        return old, new

    def quit(self, timeout=5.0):
        """nginx -s quit, bounded; SIGKILL fallback on the process group.
        Returns True if nginx exited gracefully in time."""
        if self.proc is None:
            return True
        if self.proc.poll() is not None:
            return True
        try:
            self.signal_cmd("quit")
        except Exception:
            try:
                os.kill(self.master_pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def kill(self):
        if self.proc is None:
            return
        pids = self.worker_pids()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    # -- logs -------------------------------------------------------------

    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """Remember the current end of the error log."""
        try:
            self._log_offset = self.error_log_path.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        return self._log_offset

    def bad_log_lines(self, since=0):
        try:
            with open(self.error_log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [l for l in text.splitlines() if BAD_LOG_RE.search(l)]

    def assert_log_clean(self, since=None):
        since = self._log_offset if since is None else since
        bad = self.bad_log_lines(since)
        assert not bad, "nginx error log has alerts/crashes:\n" + "\n".join(
            bad[:30])


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a second")


_seen_reports = set()


def new_sanitizer_reports():
    """Texts of the ASan/UBSan report files that appeared in
    SANITIZER_LOGS since the last call."""
    if not SANITIZER_LOGS or not os.path.isdir(SANITIZER_LOGS):
        return []
    new = sorted(p for p in Path(SANITIZER_LOGS).iterdir()
                 if p.name not in _seen_reports)
    if new:
        time.sleep(0.5)         # let the dying process finish writing
    _seen_reports.update(p.name for p in new)
    return ["%s:\n%s" % (p, p.read_text(errors="replace")) for p in new]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test fails at teardown (after its nginx instances have quit) if
    ASan/UBSan wrote a report meanwhile; the report shows under it."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "teardown":
        return
    reports = new_sanitizer_reports()
    if reports:
        text = "\n".join(reports)
        rep.outcome = "failed"
        rep.sections.append(("sanitizer reports", text))
        if rep.longrepr is None:
            rep.longrepr = "sanitizer reports:\n" + text


def _require_module():
    if not MODULE.exists():
        pytest.skip("module not built: %s" % MODULE)


@pytest.fixture(autouse=True)
def _watchdog():
    """No test may hang: SIGALRM fails it after TEST_WATCHDOG seconds."""
    def on_alarm(signum, frame):
        raise TimeoutError("test watchdog: exceeded %ds" % TEST_WATCHDOG)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_WATCHDOG)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def nginx_factory(tmp_path):
    """Returns make(http_body, main_extra="") -> started Nginx. All
    instances are quit at teardown and their logs checked."""
    _require_module()
    instances = []

    def make(http_body, main_extra="", start=True):
        ngx = Nginx(tmp_path / ("nginx%d" % len(instances)))
        instances.append(ngx)
        if start:
            ngx.start(http_body, main_extra)
        return ngx

    yield make
    problems = []
    for ngx in instances:
        if not ngx.quit(timeout=8):
            problems.append("nginx %s did not quit gracefully within 8s"
                            % ngx.prefix)
        bad = ngx.bad_log_lines(0)
        if bad:
            problems.append("%s/error.log:\n%s" % (ngx.prefix,
                                                   "\n".join(bad[:30])))
    assert not problems, "\n".join(problems)


SHARED_HTTP = r"""
    server {
        listen 127.0.0.1:%PORT%;
        server_name localhost;

        location = /echo { realtime_echo; }
        location = /rt { realtime; }
        location = /echo_1k {
            realtime_echo;
            realtime_max_message_size 1k;
        }
        location = /echo_bigbuf {
            realtime_echo;
            realtime_send_buffer 4m;
        }
        location = /sub {
            realtime_echo;
            realtime_subprotocols chat.v2 chat.v1;
        }
        location = /rt_sub {
            realtime;
            realtime_subprotocols chat.v2 chat.v1;
        }
        location = /origin {
            realtime_echo;
            realtime_allow_origin https://app.example.com
                                  ~^https://[a-z]+\.good\.com$
                                  ~*^https://ci\.example\.org$;
        }
        location = /origin_any {
            realtime_echo;
            realtime_allow_origin *;
        }
        location = /plain { return 200 "plain\n"; }
    }
"""


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One nginx with the standard endpoints, shared by the stateless
    handshake/frame tests (each test checks the log lines it caused)."""
    _require_module()
    ngx = Nginx(tmp_path_factory.mktemp("shared"))
    ngx.start(SHARED_HTTP)
    yield ngx
    graceful = ngx.quit(timeout=8)
    bad = ngx.bad_log_lines(0)
    assert graceful, "shared nginx did not quit gracefully within 8s"
    assert not bad, "shared nginx error log:\n" + "\n".join(bad[:30])


@pytest.fixture
def srv(shared_server):
    """The shared server; asserts after the test that it logged no
    alert/emerg/crash and that both workers are still the same processes
    (a crashed worker gets respawned with a new pid)."""
    shared_server.log_mark()
    workers = shared_server.worker_pids()
    yield shared_server
    # give a worker a moment to log a crash caused by the last frames
    time.sleep(0.05)
    shared_server.assert_log_clean()
    assert shared_server.running(), "shared nginx master died"
    now = shared_server.worker_pids()
    assert now == workers, "worker processes changed (crash?): %r -> %r" % (
        workers, now)


# --------------------------------------------------------------------------
# rooms / push / status helpers (t/test_rooms.py, t/test_push.py,
# t/test_status_limits.py)
# --------------------------------------------------------------------------

import http.client as _http_client        # noqa: E402
import json as _json                       # noqa: E402
import urllib.parse as _urlparse           # noqa: E402

# what must never be in the log of a rooms test
STRICT_BAD_LOG_RE = re.compile(
    r"\[alert\]|\[emerg\]|\[crit\]|segfault|exited on signal|"
    r"AddressSanitizer|runtime error:")


def rt_http(zone="rt 4m", http_extra="", server_extra="", ws_extra="",
            locations="", presence="on", client_publish="on"):
    """The standard rooms config: zone, /ws, /sendPayload, /health,
    /metrics on 127.0.0.1:%PORT% with reuseport."""
    return r"""
    realtime_zone %s;
    %s
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        server_name localhost;
        %s
        location /ws {
            realtime %s;
            realtime_user $arg_user;
            realtime_presence %s;
            realtime_client_publish %s;
            %s
        }
        location = /sendPayload { realtime_push %s; }
        location = /health { realtime_status %s; }
        location = /metrics { realtime_metrics %s; }
        %s
    }
""" % (zone, http_extra, server_extra, zone.split()[0], presence,
       client_publish, ws_extra,
       zone.split()[0], zone.split()[0], zone.split()[0], locations)


class HttpResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers            # list of (name, value)
        self.body = body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def json(self):
        ctype = (self.header("content-type") or "").split(";")[0].strip()
        assert ctype == "application/json", (self.status, self.headers,
                                             self.body[:300])
        return _json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<HttpResult %s %r %r>" % (self.status, self.headers,
                                          self.body[:300])


def http_call(port, method, path, body=None, headers=None, timeout=5.0):
    """One HTTP/1.1 request on a fresh connection; body: bytes, str or a
    JSON-able object (then Content-Type defaults to application/json)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = _json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = _http_client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return HttpResult(r.status, r.getheaders(), data)
    finally:
        conn.close()


class RtClient:
    """A client of the JSON protocol on a raw WebSocket (wsraw.RawWS)."""

    def __init__(self, raw):
        self.raw = raw
        self.closed = False
        w = self.recv(timeout=5.0)
        assert set(w) == {"event", "data"} and w["event"] == "welcome", w
        d = w["data"]
        assert set(d) == {"userId", "connectionId", "pid"}, w
        assert isinstance(d["pid"], int), w
        assert isinstance(d["connectionId"], str) and \
            d["connectionId"].isdigit(), w
        self.user = d["userId"]
        self.cid = d["connectionId"]
        self.pid = d["pid"]

    def __repr__(self):
        return "<RtClient %s cid=%s pid=%s>" % (self.user, self.cid,
                                                self.pid)

    def send(self, obj):
        if not isinstance(obj, (str, bytes)):
            obj = _json.dumps(obj, separators=(",", ":"))
        self.raw.send_text(obj)

    def recv(self, timeout=3.0):
        from wsraw import OP_TEXT
        op, payload = self.raw.recv_message(timeout=timeout)
        assert op == OP_TEXT, (op, payload)
        return _json.loads(payload.decode("utf-8"))

    def call(self, obj, timeout=3.0):
        self.send(obj)
        return self.recv(timeout)

    def join(self, room, id=None):
        m = {"event": "join", "data": {"room": room}}
        if id is not None:
            m["id"] = id
        return self.call(m)

    def leave(self, room, id=None):
        m = {"event": "leave", "data": {"room": room}}
        if id is not None:
            m["id"] = id
        return self.call(m)

    def publish(self, room, event, data, id=None, echo=None):
        d = {"room": room, "event": event, "data": data}
        if echo is not None:
            d["echo"] = echo
        m = {"event": "publish", "data": d}
        if id is not None:
            m["id"] = id
        self.send(m)

    def assert_silent(self, timeout=0.3):
        """Nothing but server PINGs arrives within timeout."""
        from wsraw import Closed
        try:
            f = self.raw.recv_data_frame(timeout=timeout)
        except socket.timeout:
            return
        except Closed as e:
            raise AssertionError("%r: connection closed (%s) while "
                                 "expecting silence" % (self, e))
        raise AssertionError("%r: unexpected frame %r" % (self, f))

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.raw.send_close(1000)
            except OSError:
                pass
            self.raw.close()


class RtEnv:
    """One test's nginx (with the rooms module) and its clients."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.instances = []
        self.clients = []
        self.ngx = None
        # regexes of bad log lines a test expects (e.g. a SIGKILLed worker)
        self.allowed_bad = []

    @property
    def port(self):
        return self.ngx.port

    def start(self, http_body, main_extra=""):
        ngx = Nginx(self.tmp_path / ("nginx%d" % len(self.instances)))
        self.instances.append(ngx)
        ngx.start(http_body, main_extra)
        self.ngx = ngx
        return ngx

    # -- clients ----------------------------------------------------------

    def ws_path(self, user=None, path="/ws"):
        if user is None:
            return path
        return path + ("&" if "?" in path else "?") + "user=" + \
            _urlparse.quote(user, safe="")

    def client(self, user=None, path="/ws", port=None):
        from wsraw import RawWS
        raw = RawWS.connect(port or self.port,
                            path=self.ws_path(user, path))
        try:
            c = RtClient(raw)
        except Exception:
            raw.close()
            raise
        self.clients.append(c)
        return c

    def client_on(self, pid, user=None, path="/ws", attempts=40):
        """A client whose socket is held by worker pid (other attempts
        are closed; wait for the server to see that before counting)."""
        before = self.health()["connections"]
        for _ in range(attempts):
            c = self.client(user, path)
            if c.pid == pid:
                self.wait_settled(before + 1)
                return c
            c.close()
            self.wait_settled(before)
        raise AssertionError("no connection landed on worker %d in %d "
                             "attempts" % (pid, attempts))

    def clients_spread(self, users, path="/ws"):
        """One client per user (None: anonymous), in order; if they all
        landed on one worker, the last user's client is replaced by one on
        the other worker. Returns the clients; both workers hold some."""
        before = self.health()["connections"]
        cs = [self.client(u, path) for u in users]
        pids = self.two_pids()
        if len({c.pid for c in cs}) < 2:
            assert len(cs) >= 2, "need 2 clients to cover 2 workers"
            other = [p for p in pids if p != cs[0].pid][0]
            last = cs.pop()
            last.close()
            self.wait_settled(before + len(cs))
            cs.append(self.client_on(other, users[-1], path))
        assert {c.pid for c in cs} == set(pids), (cs, pids)
        return cs

    def two_pids(self):
        pids = self.ngx.worker_pids()
        assert len(pids) == 2, pids
        return pids

    def wait_settled(self, connections, timeout=5.0):
        """Waits until /health reports exactly `connections`."""
        last = {}

        def ok():
            last["h"] = self.health()
            return last["h"]["connections"] == connections
        assert wait_until(ok, timeout), \
            "health connections never became %d: %r" % (connections,
                                                         last.get("h"))
        return last["h"]

    # -- HTTP -------------------------------------------------------------

    def http(self, method, path, body=None, headers=None, timeout=5.0):
        return http_call(self.port, method, path, body, headers, timeout)

    def push(self, body, path="/sendPayload", headers=None,
             content_type="application/json"):
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = _json.dumps(body)
        if content_type is not None:
            hdrs.setdefault("Content-Type", content_type)
        return self.http("POST", path, body, hdrs)

    def health(self, query=""):
        r = self.http("GET", "/health" + query)
        assert r.status == 200, r
        return r.json()

    # -- teardown ---------------------------------------------------------

    def close_clients(self):
        for c in self.clients:
            c.close()

    def bad_lines(self, ngx=None):
        ngx = ngx or self.ngx
        text = ngx.error_log()
        return [l for l in text.splitlines() if STRICT_BAD_LOG_RE.search(l)]

    def finish(self):
        self.close_clients()
        problems = []
        for ngx in self.instances:
            if not ngx.quit(timeout=8):
                problems.append("nginx %s did not quit gracefully within 8s"
                                % ngx.prefix)
            bad = [l for l in self.bad_lines(ngx)
                   if not any(re.search(a, l) for a in self.allowed_bad)]
            if bad:
                problems.append("%s/error.log:\n%s" % (ngx.prefix,
                                                       "\n".join(bad[:30])))
        return problems


@pytest.fixture
def rt(tmp_path):
    """An RtEnv: env.start(rt_http(...)), env.client(user), env.push(...).
    At teardown the clients are closed, nginx is quit and its error log
    must have no alert/emerg/crit/crash (minus env.allowed_bad)."""
    _require_module()
    env = RtEnv(tmp_path)
    yield env
    problems = env.finish()
    assert not problems, "\n".join(problems)
