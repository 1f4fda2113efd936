"""Raw WebSocket client helpers for the ngx-realtime integration tests.

Everything here works on plain (or TLS-wrapped) sockets so that the tests
can send frames a strict client library would refuse to produce: unmasked
frames, reserved bits and opcodes, bogus lengths, invalid close codes...

All reads are bounded by explicit deadlines; nothing here can block
forever.
"""

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from collections import namedtuple

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

HOST = "127.0.0.1"


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


# --------------------------------------------------------------------------
# keys and frames
# --------------------------------------------------------------------------

def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key):
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def apply_mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        n, "big")


def frame_header(opcode, length, fin=True, rsv=0, mask=True, form=None,
                 mask_key=None):
    """Header only (incl. mask key if masked). form: None (minimal),
    7, 16 or 64 to force a length encoding."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if form is None:
        form = 7 if length < 126 else (16 if length < 65536 else 64)
    if form == 7:
        hdr = bytes([b0, mbit | length])
    elif form == 16:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", length)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", length)
    if mask:
        hdr += mask_key if mask_key is not None else b""
    return hdr


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length=None, form=None):
    """A complete client frame. length overrides the declared length
    (payload is still appended as given)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    key = None
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        payload = apply_mask(payload, key)
    return frame_header(opcode, n, fin=fin, rsv=rsv, mask=mask, form=form,
                        mask_key=key) + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame(namedtuple("Frame", "fin rsv opcode masked payload")):
    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return bytes(self.payload[2:])


def parse_frame(buf):
    """Parses one frame from the start of buf (bytearray/bytes).
    Returns (Frame, consumed) or (None, 0) if incomplete."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack("!H", bytes(buf[2:4]))[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack("!Q", bytes(buf[2:10]))[0]
        pos = 10
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None, 0
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = apply_mask(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked,
                 payload), pos + n


def parse_all_frames(data):
    """All complete frames in data; returns (frames, leftover_bytes)."""
    frames = []
    buf = bytearray(data)
    while True:
        f, used = parse_frame(buf)
        if f is None:
            return frames, bytes(buf)
        frames.append(f)
        del buf[:used]


# --------------------------------------------------------------------------
# sockets and HTTP
# --------------------------------------------------------------------------

def client_ssl_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_socket(port, tls=False, timeout=5.0, rcvbuf=None, nodelay=True,
                host=HOST):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    s.connect((host, port))
    if tls:
        s = client_ssl_context().wrap_socket(s, server_hostname="localhost")
    return s


class Response:
    def __init__(self, status, reason, version, headers, body, leftover):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers          # list of (name, value)
        self.body = body
        self.leftover = leftover

    def header(self, name):
        """The value of the single header `name` (None if absent; all
        values joined with ', ' if repeated)."""
        vals = self.header_list(name)
        if not vals:
            return None
        return ", ".join(vals)

    def header_list(self, name):
        name = name.lower()
        return [v for (k, v) in self.headers if k.lower() == name]

    def __repr__(self):
        return "<Response %s %r %r %r>" % (self.status, self.headers,
                                          self.body[:200], self.leftover[:50])


def _recv_some(sock, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline exceeded")
    sock.settimeout(remaining)
    return sock.recv(65536)


def read_response(sock, timeout=5.0, head_only_for_101=True):
    """Reads one HTTP response. For 101 returns right after the header
    block (leftover holds bytes already received past it)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = _recv_some(sock, deadline)
        if not chunk:
            raise Closed("connection closed before response headers: %r"
                         % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("iso-8859-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    status = int(status)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    resp = Response(status, reason, version, headers, b"", b"")
    if status == 101 and head_only_for_101:
        resp.leftover = rest
        return resp
    cl = resp.header("content-length")
    te = (resp.header("transfer-encoding") or "").lower()
    body = rest
    if cl is not None:
        n = int(cl)
        while len(body) < n:
            chunk = _recv_some(sock, deadline)
            if not chunk:
                break
            body += chunk
        resp.body, resp.leftover = body[:n], body[n:]
    elif "chunked" in te:
        out = b""
        while True:
            while b"\r\n" not in body:
                chunk = _recv_some(sock, deadline)
                if not chunk:
                    raise Closed("EOF in chunked body")
                body += chunk
            size_line, body = body.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(body) < size + 2:
                chunk = _recv_some(sock, deadline)
                if not chunk:
                    raise Closed("EOF in chunked body")
                body += chunk
            if size == 0:
                break
            out += body[:size]
            body = body[size + 2:]
        resp.body = out
    else:
        while True:
            try:
                chunk = _recv_some(sock, deadline)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            body += chunk
        resp.body = body
    return resp


def ws_request_bytes(path="/echo", key=None, host="127.0.0.1",
                     method="GET", version="HTTP/1.1", upgrade="websocket",
                     connection="Upgrade", ws_version="13", extra=None,
                     omit=()):
    """A WebSocket upgrade request; pass None for a header value (or its
    name in omit) to leave it out. extra: list of (name, value)."""
    if key is None and "key" not in omit:
        key = new_key()
    hdrs = [("Host", host)]
    if upgrade is not None and "upgrade" not in omit:
        hdrs.append(("Upgrade", upgrade))
    if connection is not None and "connection" not in omit:
        hdrs.append(("Connection", connection))
    if "key" not in omit:
        hdrs.append(("Sec-WebSocket-Key", key))
    if ws_version is not None and "version" not in omit:
        hdrs.append(("Sec-WebSocket-Version", ws_version))
    for k, v in extra or []:
        hdrs.append((k, v))
    req = "%s %s %s\r\n" % (method, path, version)
    req += "".join("%s: %s\r\n" % kv for kv in hdrs)
    if method in ("POST", "PUT"):
        req += "Content-Length: 0\r\n"
    req += "\r\n"
    return req.encode("latin-1")


def http_exchange(port, raw, tls=False, timeout=5.0):
    """Sends raw request bytes, returns (Response, socket)."""
    s = open_socket(port, tls=tls, timeout=timeout)
    s.sendall(raw)
    return read_response(s, timeout=timeout), s


def http_request(port, raw, tls=False, timeout=5.0):
    resp, s = http_exchange(port, raw, tls=tls, timeout=timeout)
    s.close()
    return resp


# --------------------------------------------------------------------------
# the raw WebSocket connection
# --------------------------------------------------------------------------

class RawWS:
    def __init__(self, sock, response=None, key=None):
        self.sock = sock
        self.response = response
        self.key = key
        self.buf = bytearray(response.leftover if response else b"")
        self.eof = False

    @classmethod
    def connect(cls, port, path="/echo", tls=False, timeout=5.0,
                rcvbuf=None, extra_headers=None, nodelay=True):
        key = new_key()
        s = open_socket(port, tls=tls, timeout=timeout, rcvbuf=rcvbuf,
                        nodelay=nodelay)
        try:
            s.sendall(ws_request_bytes(path=path, key=key,
                                       extra=extra_headers))
            resp = read_response(s, timeout=timeout)
        except Exception:
            s.close()
            raise
        if resp.status != 101:
            s.close()
            raise AssertionError("handshake to %s failed: %r" % (path, resp))
        assert resp.header("sec-websocket-accept") == accept_key(key), resp
        return cls(s, resp, key)

    # -- sending ----------------------------------------------------------

    def send(self, data):
        self.sock.settimeout(5.0)
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    def send_bytewise(self, data, delay=0.002):
        """One TCP write per byte (TCP_NODELAY is set by connect)."""
        self.sock.settimeout(5.0)
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            if delay:
                time.sleep(delay)

    # -- receiving --------------------------------------------------------

    def _fill(self, deadline):
        if self.eof:
            raise Closed("connection already closed")
        try:
            chunk = _recv_some(self.sock, deadline)
        except socket.timeout:
            raise
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            self.eof = True
            raise Closed("reset: %s" % e)
        if not chunk:
            self.eof = True
            raise Closed("EOF")
        self.buf += chunk

    def recv_frame(self, timeout=3.0):
        """Next frame from the server. Raises socket.timeout or Closed."""
        deadline = time.monotonic() + timeout
        while True:
            f, used = parse_frame(self.buf)
            if f is not None:
                del self.buf[:used]
                assert not f.masked, "server frame is masked: %r" % (f,)
                return f
            self._fill(deadline)

    def recv_data_frame(self, timeout=3.0, skip_pings=True):
        """Next frame that is not a server PING."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if skip_pings and f.opcode == OP_PING:
                continue
            return f

    def recv_message(self, timeout=3.0):
        """Reassembles one data message: returns (opcode, payload).
        Server PINGs are skipped; a CLOSE raises AssertionError."""
        deadline = time.monotonic() + timeout
        opcode = None
        parts = []
        while True:
            f = self.recv_data_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                raise AssertionError("unexpected close %r %r"
                                     % (f.close_code, f.close_reason))
            if f.opcode == OP_PONG:
                raise AssertionError("unexpected pong %r" % (f,))
            if opcode is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f
                opcode = f.opcode
            else:
                assert f.opcode == OP_CONT, f
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def wait_tcp_close(self, timeout=3.0):
        """True when the server closes TCP (EOF or reset) within timeout,
        discarding any data received meanwhile."""
        deadline = time.monotonic() + timeout
        if self.eof:
            return True
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return True
            except socket.timeout:
                return False
            self.buf.clear()

    def expect_close(self, code, timeout=3.0, tcp_timeout=3.0,
                     reason=None, reply=False):
        """Reads frames (skipping server PINGs) until a CLOSE; asserts its
        code (an int, or a tuple of accepted values; None = empty
        payload) and that the TCP connection is then closed. With reply,
        answers the close frame first, as a well-behaved client does when
        the server starts the closing handshake. Returns the close
        Frame."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen = []
        while True:
            try:
                f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except socket.timeout:
                raise AssertionError(
                    "no close frame (wanted %r) within %.1fs; frames seen: %r"
                    % (code, timeout, seen))
            except Closed as e:
                raise AssertionError(
                    "TCP closed (%s) after %.2fs without a close frame "
                    "(wanted %r); frames seen: %r"
                    % (e, time.monotonic() - t0, code, seen))
            if f.opcode == OP_PING:
                continue
            if f.opcode == OP_CLOSE:
                break
            seen.append(f)
        self.seen_before_close = seen
        codes = code if isinstance(code, tuple) else (code,)
        got = f.close_code
        assert got in codes, "close code %r (reason %r), expected %r" % (
            got, f.close_reason, code)
        assert f.fin, "close frame without FIN"
        assert len(f.payload) != 1, "1-byte close payload from server"
        if reason is not None:
            assert f.close_reason == reason, (f.close_reason, reason)
        if reply:
            try:
                self.send_close(got)
            except OSError:
                pass
        if tcp_timeout:
            assert self.wait_tcp_close(tcp_timeout), \
                "server did not close TCP within %.1fs after close frame" \
                % tcp_timeout
        return f

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def echo_roundtrip(port, path="/echo", tls=False, payload=None):
    """Fresh connection: text and binary echo, then a clean close. Raises
    AssertionError on any deviation."""
    with RawWS.connect(port, path=path, tls=tls) as ws:
        text = payload or ("hello \u00e9\u4e16 %d" % os.getpid())
        ws.send_text(text)
        assert ws.recv_message() == (OP_TEXT, text.encode("utf-8"))
        data = os.urandom(300)
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)
        ws.send_close(1000)
        ws.expect_close(1000)


# --------------------------------------------------------------------------
# handshake assertions
# --------------------------------------------------------------------------

def assert_json_error(resp, status, code):
    assert resp.status == status, resp
    ctype = resp.header("content-type") or ""
    assert ctype.split(";")[0].strip().lower() == "application/json", resp
    doc = json.loads(resp.body.decode("utf-8"))
    assert isinstance(doc, dict), doc
    assert set(doc) >= {"error", "code"}, doc
    assert isinstance(doc["error"], str) and doc["error"], doc
    assert doc["code"] == code, doc


def assert_101(resp, key):
    assert resp.status == 101, resp
    assert resp.version == "HTTP/1.1", resp
    assert (resp.header("upgrade") or "").lower() == "websocket", resp
    assert (resp.header("connection") or "").lower() == "upgrade", resp
    assert resp.header("sec-websocket-accept") == accept_key(key), resp
    # no extension was offered/accepted
    assert resp.header("sec-websocket-extensions") is None, resp
