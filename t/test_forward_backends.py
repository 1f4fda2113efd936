"""realtime_forward through other nginx upstream modules than proxy_pass:
fastcgi_pass to a FastCGI responder and grpc_pass to an HTTP/2 (h2c)
server, both written here. The forward is an ordinary subrequest, so the
module needs nothing of its own for them: these tests show that the
body, the handshake's headers and the reply go through, and that a
backend that is down is BACKEND_UNAVAILABLE.
"""

import json
import socket
import struct
import threading

import pytest

from conftest import free_port, rt_http

pytestmark = pytest.mark.asan

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, \
    FCGI_STDOUT = 1, 3, 4, 5, 6


class Server:
    """Accepts on a loopback port; serve(conn) runs per connection."""

    def __init__(self):
        self.port = free_port()
        self.seen = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,),
                             daemon=True).start()

    def _run(self, conn):
        conn.settimeout(5)
        try:
            self.serve(conn)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self):
        self.running = False
        self.sock.close()
        self.thread.join(timeout=2)


def reply_for(body, params):
    """What both backends answer: the event's data back, and what of the
    handshake they saw."""
    return {"ack": {"data": body["data"], "user": body["user"],
                    "tenant": params.get("tenant"),
                    "method": params.get("method")}}


class FastCGI(Server):
    """A FastCGI responder: one request per connection."""

    def serve(self, conn):
        buf = b""
        params, stdin, rid = b"", b"", 1

        def record():
            nonlocal buf
            while len(buf) < 8:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ValueError("eof")
                buf += chunk
            _, rtype, rid_, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
            while len(buf) < 8 + clen + plen:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ValueError("eof")
                buf += chunk
            content = buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            return rtype, rid_, content

        while True:
            rtype, rid, content = record()
            if rtype == FCGI_PARAMS:
                params += content
            elif rtype == FCGI_STDIN:
                if not content:
                    break
                stdin += content
        env = decode_params(params)
        body = json.loads(stdin)
        self.seen.append((env, body))
        out = json.dumps(reply_for(body, {
            "tenant": env.get("HTTP_X_TENANT"),
            "method": env.get("REQUEST_METHOD")})).encode()
        data = (b"Status: 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(out)) + out
        conn.sendall(fcgi_record(FCGI_STDOUT, rid, data)
                     + fcgi_record(FCGI_STDOUT, rid, b"")
                     + fcgi_record(FCGI_END_REQUEST, rid,
                                   struct.pack("!IB3x", 0, 0)))


def fcgi_record(rtype, rid, content):
    return struct.pack("!BBHHBB", 1, rtype, rid, len(content), 0, 0) + \
        content


def decode_params(data):
    env, i = {}, 0

    def length():
        nonlocal i
        if data[i] < 128:
            i += 1
            return data[i - 1]
        n = struct.unpack("!I", data[i:i + 4])[0] & 0x7fffffff
        i += 4
        return n

    while i < len(data):
        nl = length()
        vl = length()
        name = data[i:i + nl].decode()
        i += nl
        env[name] = data[i:i + vl].decode()
        i += vl
    return env


class H2C(Server):
    """An HTTP/2 server with prior knowledge, as grpc_pass speaks it."""

    def serve(self, conn):
        import h2.config
        import h2.connection
        import h2.events

        h2conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        streams = {}
        while True:
            data = conn.recv(65536)
            if not data:
                return
            for ev in h2conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = [dict(
                        (k.decode() if isinstance(k, bytes) else k,
                         v.decode() if isinstance(v, bytes) else v)
                        for k, v in ev.headers), b""]
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id][1] += ev.data
                    h2conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    headers, raw = streams.pop(ev.stream_id)
                    body = json.loads(raw)
                    self.seen.append((headers, body))
                    out = json.dumps(reply_for(body, {
                        "tenant": headers.get("x-tenant"),
                        "method": headers.get(":method")})).encode()
                    h2conn.send_headers(ev.stream_id, [
                        (":status", "200"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(out)))])
                    h2conn.send_data(ev.stream_id, out, end_stream=True)
            conn.sendall(h2conn.data_to_send())


@pytest.fixture
def backends():
    f, g = FastCGI(), H2C()
    yield f, g
    f.close()
    g.close()


def start(rt, fcgi_port, grpc_port):
    rt.start(rt_http(presence="off", ws_extra="""
            realtime_forward by_fastcgi /_fcgi/ timeout=3s;
            realtime_forward by_grpc    /_grpc/ timeout=3s;
            realtime_forward unbuffered /_fcgi_unbuffered/ timeout=3s;
            realtime_forward fcgi_down  /_down_fcgi/ timeout=3s;
            realtime_forward grpc_down  /_down_grpc/ timeout=3s;
    """, locations="""
        location /_fcgi/ {
            internal;
            fastcgi_pass 127.0.0.1:%d;
            include /etc/nginx/fastcgi_params;
            fastcgi_param HTTP_X_TENANT $http_x_tenant;
        }
        # an unbuffered reply sets socket options on the client's
        # connection, which a forward's has none of
        location /_fcgi_unbuffered/ {
            internal;
            fastcgi_pass 127.0.0.1:%d;
            fastcgi_buffering off;
            include /etc/nginx/fastcgi_params;
            fastcgi_param HTTP_X_TENANT $http_x_tenant;
        }
        location /_grpc/ {
            internal;
            grpc_pass grpc://127.0.0.1:%d;
        }
        location /_down_fcgi/ {
            internal;
            fastcgi_pass 127.0.0.1:1;
            include /etc/nginx/fastcgi_params;
        }
        location /_down_grpc/ {
            internal;
            grpc_pass grpc://127.0.0.1:1;
        }
    """ % (fcgi_port, fcgi_port, grpc_port)))


def client(rt, user):
    from conftest import RtClient
    from wsraw import RawWS
    raw = RawWS.connect(rt.port, path="/ws?user=" + user,
                        extra_headers=[("X-Tenant", "acme")])
    c = RtClient(raw)
    rt.clients.append(c)
    return c


def test_fastcgi_and_grpc_backends(rt, backends):
    fcgi, grpc = backends
    start(rt, fcgi.port, grpc.port)
    c = client(rt, "ann")
    for i, event in enumerate(("by_fastcgi", "by_grpc", "unbuffered") * 3):
        c.send({"event": event, "data": {"n": i}, "id": i})
        assert c.recv() == {"event": event, "id": i, "data": {
            "data": {"n": i}, "user": "ann", "tenant": "acme",
            "method": "POST"}}
    assert len(fcgi.seen) == 6 and len(grpc.seen) == 3
    env, body = fcgi.seen[0]
    assert env["CONTENT_TYPE"] == "application/json", env
    assert int(env["CONTENT_LENGTH"]) == len(json.dumps(
        body, separators=(",", ":"))), env
    assert body["event"] == "by_fastcgi" and body["protocol"] == "native"
    headers, body = grpc.seen[0]
    assert headers["content-type"] == "application/json", headers
    assert headers[":path"].startswith("/_grpc/"), headers
    assert body["event"] == "by_grpc"


def test_fastcgi_and_grpc_backends_down(rt, backends):
    fcgi, grpc = backends
    start(rt, fcgi.port, grpc.port)
    c = client(rt, "bo")
    for i, event in enumerate(("fcgi_down", "grpc_down")):
        c.send({"event": event, "id": i})
        got = c.recv(timeout=5)
        assert got["event"] == "error" and got["id"] == i, got
        assert got["data"]["code"] == "BACKEND_UNAVAILABLE", got
    # the socket goes on
    c.send({"event": "by_fastcgi", "data": 1, "id": 9})
    assert c.recv()["data"]["data"] == 1
