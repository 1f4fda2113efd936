"""Drives the real npm socket.io-client (t/js/sio_driver.js) from Python.

    with SioDriver() as sio:
        sio.connect("a", "http://127.0.0.1:8080/admin", transports=["websocket"])
        assert sio.emit("a", "echo", b"\\x00\\x01") == [b"\\x00\\x01"]
        [[data]] = sio.wait("a", "news")

One long-running node process holds any number of client sockets, each
named by the caller. Commands and answers are JSON lines; every read here
is bounded by a timeout, and a timeout or a dead driver raises SioDriverError
with the tail of the driver's stderr.

Binary: bytes / bytearray / memoryview anywhere in emitted args are sent as
Buffers; every binary value received comes back as bytes (the wire form is
{"$bin": "<base64>"}, see b64bin() and decode_bin()).

Needs `npm ci --prefix t/js` (make deps-test); node_available() tells.
"""

import base64
import collections
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

T_DIR = Path(__file__).resolve().parent
JS_DIR = T_DIR / "js"
DRIVER_JS = JS_DIR / "sio_driver.js"
NODE_MODULES = JS_DIR / "node_modules"

NODE = os.environ.get("NODE_BIN") or shutil.which("node") or "/usr/bin/node"

# seconds added to the driver's own timeout of a command before Python
# gives up on its answer
SLACK = 5.0


def node_missing_reason():
    """Why the driver cannot run here (None: it can)."""
    if not (os.path.isfile(NODE) and os.access(NODE, os.X_OK)):
        return "node not found (%s)" % NODE
    if not (NODE_MODULES / "socket.io-client").is_dir():
        return "%s missing: run make deps-test (npm ci --prefix t/js)" \
            % NODE_MODULES
    return None


def node_available():
    """True if node and t/js/node_modules (socket.io-client) are there."""
    return node_missing_reason() is None


# --------------------------------------------------------------- binary

def b64bin(data):
    """bytes -> the driver's wire form of a binary value."""
    return {"$bin": base64.b64encode(bytes(data)).decode("ascii")}


def encode_bin(v):
    """Python value -> JSON value: bytes-like anywhere become {"$bin"}."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return b64bin(v)
    if isinstance(v, (list, tuple)):
        return [encode_bin(x) for x in v]
    if isinstance(v, dict):
        return {k: encode_bin(x) for k, x in v.items()}
    return v


def decode_bin(v):
    """JSON value from the driver -> Python value: {"$bin"} become bytes,
    recursively."""
    if isinstance(v, list):
        return [decode_bin(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1 and isinstance(v.get("$bin"), str):
            return base64.b64decode(v["$bin"])
        return {k: decode_bin(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------- errors

class SioDriverError(RuntimeError):
    """The driver process died, or did not answer in time."""


class SioError(Exception):
    """A command failed: .error is the driver's message, .answer the whole
    answer (e.g. .answer.get("data") for a connect_error's err.data)."""

    def __init__(self, op, answer):
        self.op = op
        self.answer = answer
        self.error = answer.get("error")
        self.data = decode_bin(answer.get("data"))
        super().__init__("%s: %s" % (op, self.error))


class SioTimeout(SioError):
    """An ack or a wait timed out inside the driver. For a wait, .events
    holds what had arrived of that event (not consumed)."""

    def __init__(self, op, answer):
        super().__init__(op, answer)
        self.events = decode_bin(answer.get("events") or [])


# --------------------------------------------------------------- driver

_EOF = object()


class SioDriver:
    """One node process running t/js/sio_driver.js. Usable as a context
    manager; close() ends it."""

    def __init__(self, env=None, stderr_tail=200, start_timeout=10.0):
        reason = node_missing_reason()
        if reason:
            raise SioDriverError(reason)
        self._seq = itertools.count(1)
        self._answers = queue.Queue()
        self._stderr = collections.deque(maxlen=stderr_tail)
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [NODE, str(DRIVER_JS)], cwd=str(JS_DIR),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True,
                             name="sio-driver-stdout"),
            threading.Thread(target=self._read_stderr, daemon=True,
                             name="sio-driver-stderr"),
        ]
        for t in self._threads:
            t.start()
        # a first round trip: the driver is up and reading
        self.info = self._call("ping", start_timeout)
        self.info.pop("re", None)
        self.info.pop("ok", None)

    # -- plumbing

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self._answers.put(json.loads(line))
            except ValueError:
                self._stderr.append("[non-JSON stdout] %r" % line[:300])
        self._answers.put(_EOF)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, n=40):
        return "\n".join(list(self._stderr)[-n:])

    def _fail(self, why):
        rc = self.proc.poll()
        if rc is not None:
            why += " (driver exited with %s)" % rc
        # give the stderr reader a moment to catch the last lines
        time.sleep(0.05)
        raise SioDriverError("%s\n--- sio_driver stderr (tail) ---\n%s"
                             % (why, self.stderr_tail()))

    def _call(self, op, _wait, _check=True, **fields):
        """Sends one command, returns its answer (a dict). _wait: seconds
        to wait for the answer."""
        with self._lock:
            seq = next(self._seq)
            cmd = dict(fields, seq=seq, op=op)
            data = (json.dumps(cmd) + "\n").encode()
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as e:
                self._fail("cannot write %s to the driver: %s" % (op, e))
            deadline = time.monotonic() + _wait
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail("no answer to %s (seq %d) within %.1fs"
                               % (op, seq, _wait))
                try:
                    ans = self._answers.get(timeout=left)
                except queue.Empty:
                    continue
                if ans is _EOF:
                    self._answers.put(_EOF)     # stays dead for later calls
                    self._fail("driver stdout closed while waiting for %s"
                               % op)
                if ans.get("re") == seq:
                    break
                # the late answer to a command we gave up on
                self._stderr.append("[stale answer] %r" % (ans,))
        if _check and not ans.get("ok"):
            err = str(ans.get("error", ""))
            if err == "timeout" or err.startswith("timeout "):
                raise SioTimeout(op, ans)
            raise SioError(op, ans)
        return ans

    # -- commands

    def connect(self, name, url, check=True, connect_timeout=10.0, **opts):
        """Opens socket `name` to url (which may end in a namespace path);
        opts are socket.io-client options (path, transports, auth, query,
        extraHeaders, reconnection, forceNew, upgrade, timeout, ...).
        Defaults: forceNew=True, reconnection=False. Returns
        {"id", "transport"}; on connect_error raises SioError (.error:
        message, .data: err.data), or with check=False returns the answer
        ({"ok": False, "error", "data"?}). Reconnecting a name closes the
        old socket."""
        ans = self._call("connect", connect_timeout + SLACK, _check=check,
                         name=name, url=url, opts=encode_bin(opts),
                         timeout=int(connect_timeout * 1000))
        ans.pop("re", None)
        if "data" in ans:
            ans["data"] = decode_bin(ans["data"])
        return ans

    def emit(self, name, *args, ack=True, timeout=5.0, volatile=False):
        """socket.emit(*args); args[0] is the event name. ack=True: waits
        for the server's ack and returns its args as a list (SioTimeout
        after `timeout` s). ack=False: returns None once emitted."""
        fields = dict(name=name, args=encode_bin(list(args)), ack=bool(ack),
                      timeout=int(timeout * 1000))
        if volatile:
            fields["volatile"] = True
        ans = self._call("emit", timeout + SLACK, **fields)
        return decode_bin(ans["ack"]) if ack else None

    def wait(self, name, event, timeout=5.0, count=1):
        """The next `count` occurrences of `event` received on socket
        `name` (recorded since connect), as a list of arg lists; they are
        consumed. SioTimeout if fewer arrive within `timeout` s."""
        ans = self._call("wait", timeout + SLACK, name=name, event=event,
                         count=count, timeout=int(timeout * 1000))
        return decode_bin(ans["events"])

    def wait_one(self, name, event, timeout=5.0):
        """The args of the next `event` (a list)."""
        return self.wait(name, event, timeout=timeout)[0]

    def events(self, name, peek=False):
        """Every recorded, not yet consumed event of socket `name`, as
        [(event, [args...]), ...], without waiting; consumed unless
        peek."""
        ans = self._call("events", SLACK, name=name, peek=bool(peek))
        return [(ev, decode_bin(args)) for ev, args in ans["events"]]

    def state(self, name):
        """{"connected", "id", "transport", "recovered", "sid"} (sid: the
        Engine.IO session id)."""
        ans = self._call("state", SLACK, name=name)
        return {k: ans.get(k) for k in ("connected", "id", "transport",
                                        "recovered", "sid", "pid")}

    def drop(self, name, url=None):
        """Closes the socket's transport (not the socket): with
        reconnection on, socket.io-client comes back on its own; to url
        if given (another instance, as behind a load balancer)."""
        if url is None:
            return self._call("drop", SLACK, name=name)
        return self._call("drop", SLACK, name=name, url=url)

    def disconnect(self, name):
        self._call("disconnect", SLACK, name=name)

    def close_all(self):
        """Closes and forgets every socket."""
        self._call("close_all", SLACK)

    def close(self, timeout=5.0):
        """Ends the driver (exit, then SIGKILL if it lingers)."""
        proc = self.proc
        if proc.poll() is None:
            try:
                self._call("exit", timeout, _check=False)
            except SioDriverError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
