"""realtime_forward: client events POSTed to backends through nginx
locations (proxy_pass to an upstream with keepalive, or a plain
`return`), and their replies applied to the socket: every event that
asked for an answer gets exactly one, in the order sent, whatever the
backend does. A small HTTP server in the test stands in for the seeds'
services; nginx runs two workers.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, rt_http
from sioclient import SioDriver, node_available

pytestmark = pytest.mark.asan


class Backend:
    """Answers POST /<name> by the reply function registered for name."""

    def __init__(self):
        self.requests = []
        self.replies = {}
        self.ports = set()
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"null")
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                with backend.lock:
                    backend.requests.append((name, dict(self.headers), body))
                    backend.ports.add(self.client_address[1])
                status, reply = backend.replies.get(name, (404, b""))
                extra = {}
                if callable(reply):
                    status, reply, *more = reply(body)
                    extra = more[0] if more else {}
                if isinstance(reply, (dict, list)):
                    reply = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(reply)

            # auth_request's subrequest keeps the handshake's GET
            do_GET = do_POST

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


def forward_http(backend):
    # limit_req at server level: subrequests run its phase too, on a
    # connection that has no client address (it must not crash)
    return rt_http(presence="off", http_extra="""
        upstream app { server 127.0.0.1:%d; keepalive 4; }
        limit_req_zone $binary_remote_addr zone=perip:1m rate=1000r/s;
        geo $from_here { default 0; 127.0.0.1 1; }
    """ % backend.port, server_extra="""
        limit_req zone=perip burst=1000 nodelay;
    """, ws_extra="""
            realtime_forward join_battle /_rt/join_battle;
            realtime_forward submit      /_rt/submit timeout=1s unordered;
            realtime_forward slow        /_rt/slow timeout=600ms;
            realtime_forward boom        /_rt/boom;
            realtime_forward plain       /_rt/plain;
            realtime_forward big         /_rt/big;
            realtime_forward refused     /_rt/refused;
            realtime_forward *           /_rt/any;
            realtime_forward_max_inflight 4;
            realtime_jwt_key secret=forward-test-secret-forward-test;
            realtime_jwt_token $arg_token;
            realtime_jwt_rooms_claim rooms;
    """, locations="""
        location /_rt/ {
            internal;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-User $realtime_user;
            proxy_set_header X-Conn $realtime_connection_id;
            proxy_set_header X-Event $realtime_event;
            # the handshake's client address (nchan#498: never a NULL)
            proxy_set_header X-Remote "$remote_addr:$remote_port";
            proxy_set_header X-Cookie $cookie_session;
            proxy_set_header X-Arg $arg_room;
            proxy_set_header X-Sub $realtime_jwt_sub;
            proxy_set_header X-Claim $realtime_jwt_claim_tenant;
            proxy_set_header X-Server "$server_addr:$server_port";
            proxy_set_header X-Geo $from_here;
            proxy_read_timeout 5s;
            subrequest_output_buffer_size 4k;
        }
        location = /_rt/plain {
            internal;
            default_type application/json;
            return 200 '{"ack": {"plain": true}}';
        }
        location = /_rt/refused {
            internal;
            proxy_pass http://127.0.0.1:1;
        }
        location /sio/socket.io/ {
            realtime_socketio rt;
            realtime_forward submit /_rt/submit;
            realtime_forward * /_rt/any;
            realtime_disconnect_request /_rt/gone;
        }
        # refused before the 101 by auth_request, which also names the user
        location /gated {
            auth_request /_gate;
            auth_request_set $gate_user $upstream_http_x_user;
            error_page 401 = @unauthorized;
            error_page 403 = @forbidden;
            realtime rt;
            realtime_user $gate_user;
            realtime_connect_request /_rt/hello timeout=2s;
        }
        location = /_gate {
            internal;
            proxy_pass http://app/gate;
            # the upstream keeps connections: HTTP/1.1, or the backend
            # closes one that nginx keeps (a 502 for the next forward)
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }
        location @unauthorized {
            default_type application/json;
            return 401 '{"error":{"code":"UNAUTHORIZED","message":"no"}}';
        }
        location @forbidden {
            default_type application/json;
            return 403 '{"error":{"code":"FORBIDDEN","message":"no"}}';
        }
        location /hooks {
            realtime rt;
            realtime_user $arg_user;
            realtime_connect_request /_rt/hello timeout=2s;
            realtime_disconnect_request /_rt/gone;
            realtime_forward * /_rt/any;
        }
    """)


def jwt_for(user, rooms=("*",), **extra):
    import base64
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": user, "exp": int(time.time()) + 600}
    claims["rooms"] = list(rooms)
    claims.update(extra)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(b"forward-test-secret-forward-test",
                   ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


@pytest.fixture
def env(rt, backend):
    rt.start(forward_http(backend))
    rt.backend = backend
    return rt


def client(env, user, rooms=("*",)):
    # rt_http's realtime_user is $arg_user: the same name as the token's
    return env.client(path="/ws?user=%s&token=%s" % (user,
                                                     jwt_for(user, rooms)))


def test_request_shape_and_reply_applied_in_order(env):
    def join(body):
        battle = body["data"]["battleId"]
        return 200, {
            "leave": ["lobby"],
            "join": ["battle:%s" % battle],
            "emit": [{"event": "battle:state", "data": {"id": battle}}],
            "publish": [{"room": "battle:%s" % battle,
                         "event": "player_joined",
                         "data": {"user": body["user"]},
                         "except_self": True}],
            "ack": {"ok": True},
        }
    env.backend.replies["join_battle"] = (200, join)
    other = client(env, "bob")
    other.join("battle:42")
    me = client(env, "alice")
    me.join("lobby")

    me.send({"event": "join_battle", "data": {"battleId": "42"}, "id": 7})
    assert me.recv() == {"event": "battle:state", "data": {"id": "42"}}
    assert me.recv() == {"event": "join_battle", "data": {"ok": True},
                         "id": 7}
    ev = other.recv()
    assert ev["event"] == "player_joined" and ev["data"] == {"user": "alice"}

    name, headers, body = env.backend.requests[-1]
    assert name == "join_battle"
    assert body["event"] == "join_battle"
    assert body["data"] == {"battleId": "42"}
    assert body["id"] == 7
    assert body["user"] == "alice" and body["rooms"] == ["lobby"]
    assert body["protocol"] == "native"
    assert body["connection"] == headers["X-Conn"]
    assert headers["X-User"] == "alice" and headers["X-Event"] == \
        "join_battle"
    # proxy_pass clears Upgrade by default; the handshake's address
    assert "Upgrade" not in headers, headers
    assert headers["X-Remote"].startswith("127.0.0.1:"), headers

    # the join took effect: a push to the room reaches the socket, the
    # lobby's does not
    env.push({"room": "battle:42", "topic": "tick", "payload": 1})
    assert me.recv()["event"] == "tick"
    r = env.push({"room": "lobby", "topic": "x", "payload": 1})
    assert r.json()["delivered"] == 0


def test_handshake_seen_by_the_forward_location(env):
    """Headers, cookies, args, the client's address and the token's
    claims of the handshake, in every forward's location; headers that
    would change the backend's answer are not passed."""
    env.backend.replies["any"] = (200, {"ack": 1})
    token = jwt_for("alice", tenant="acme")
    path = "/ws?user=alice&room=r9&token=" + token
    from wsraw import RawWS
    from conftest import RtClient
    raw = RawWS.connect(env.port, path=path, extra_headers=[
        ("Cookie", "theme=dark; session=s3cr3t"),
        ("X-Tenant", "t1"),
        ("User-Agent", "probe/1.0"),
        ("Accept-Encoding", "gzip"),
        ("If-None-Match", "\"x\""),
    ])
    c = RtClient(raw)
    env.clients.append(c)
    local_port = raw.sock.getsockname()[1]

    for i in range(2):
        c.send({"event": "anything", "data": {"i": i}, "id": i})
        assert c.recv() == {"event": "anything", "data": 1, "id": i}

    reqs = [q for q in env.backend.requests if q[0] == "any"]
    assert len(reqs) == 2
    for name, headers, body in reqs:
        assert headers["X-Cookie"] == "s3cr3t", headers
        assert headers["X-Arg"] == "r9", headers
        assert headers["X-Sub"] == "alice", headers
        assert headers["X-Claim"] == "acme", headers
        assert headers["X-Remote"] == "127.0.0.1:%d" % local_port, headers
        # the handshake's own headers, passed on by proxy_pass
        assert headers["X-Tenant"] == "t1", headers
        assert headers["User-Agent"] == "probe/1.0", headers
        assert headers["Cookie"] == "theme=dark; session=s3cr3t", headers
        assert "Accept-Encoding" not in headers, headers
        assert "If-None-Match" not in headers, headers
        assert headers["Content-Type"] == "application/json", headers
        assert int(headers["Content-Length"]) == len(json.dumps(
            body, separators=(",", ":")).encode()), headers
    c.close()


def test_socket_without_handshake_extras_still_forwards(env):
    """No cookie, no claims asked for: the variables are empty."""
    env.backend.replies["any"] = (200, {"ack": 2})
    c = client(env, "bob")
    c.send({"event": "other", "id": 1})
    assert c.recv() == {"event": "other", "data": 2, "id": 1}
    _, headers, _ = [q for q in env.backend.requests if q[0] == "any"][-1]
    assert headers.get("X-Cookie", "") == "" and \
        headers.get("X-Claim", "") == "", headers
    assert headers["X-Sub"] == "bob", headers


def test_exactly_one_answer_whatever_the_backend_does(env):
    env.backend.replies.update({
        "any": (200, b""),                         # empty: ack null
        "boom": (500, b"oops"),
        "big": (200, {"ack": "x" * 8000}),          # over the 4k buffer
    })
    c = client(env, "carol")
    c.send({"event": "whatever", "data": 1, "id": 1})
    assert c.recv() == {"event": "whatever", "data": None, "id": 1}
    c.send({"event": "plain", "id": 2})
    assert c.recv() == {"event": "plain", "data": {"plain": True}, "id": 2}
    c.send({"event": "boom", "id": 3})
    assert c.recv()["data"]["code"] == "BACKEND_UNAVAILABLE"
    c.send({"event": "refused", "id": 4})
    assert c.recv()["data"]["code"] == "BACKEND_UNAVAILABLE"
    c.send({"event": "big", "id": 5})
    assert c.recv()["data"]["code"] == "BACKEND_BAD_REPLY"
    env.backend.replies["any"] = (200, b"not json")
    c.send({"event": "whatever", "id": 6})
    assert c.recv()["data"]["code"] == "BACKEND_BAD_REPLY"
    env.backend.replies["any"] = (403, {"error": {"code": "NOT_YOURS",
                                                  "message": "no"}})
    c.send({"event": "whatever", "id": 7})
    assert c.recv()["data"] == {"code": "NOT_YOURS", "message": "no",
                                "id": 7}
    env.backend.replies["any"] = (404, b"")
    c.send({"event": "whatever", "id": 8})
    assert c.recv()["data"]["code"] == "NOT_FOUND"
    # without an id, success is silent and a failure is an error event
    env.backend.replies["any"] = (200, {"ack": 1})
    c.send({"event": "whatever"})
    c.assert_silent(0.3)
    c.send({"event": "boom"})
    got = c.recv()
    assert got["event"] == "error", got
    assert got["data"]["code"] == "BACKEND_UNAVAILABLE"
    # the socket is still good
    assert c.join("still", id=9) == {"event": "joined", "id": 9, "data": {
        "room": "still", "members": 1}}

    # every outcome counted once, for both workers, with its latency
    r = env.http("GET", "/metrics")
    m = {}
    for line in r.body.decode().splitlines():
        if line.startswith("realtime_forward"):
            name, value = line.rsplit(" ", 1)
            m[name] = float(value)
    out = 'realtime_forwards_total{zone="rt",outcome="%s"}'
    assert m[out % "ok"] == 3                  # any, plain, the silent one
    assert m[out % "unavailable"] == 3         # boom twice, refused
    assert m[out % "bad_reply"] == 2
    assert m[out % "refused"] == 2
    assert m[out % "timeout"] == 0 and m[out % "busy"] == 0
    assert m['realtime_forwards_in_flight{zone="rt"}'] == 0
    count = m['realtime_forward_latency_seconds_count{zone="rt"}']
    assert count == 10
    assert m['realtime_forward_latency_seconds_bucket{zone="rt",'
             'le="+Inf"}'] == count

    # by route: the same outcomes under each route's event and URI
    route = ('realtime_forward_route_total{zone="rt",event="%s",'
             'uri="%s",outcome="%s"}')
    assert m[route % ("*", "/_rt/any", "ok")] == 2, m
    assert m[route % ("*", "/_rt/any", "refused")] == 2, m
    assert m[route % ("plain", "/_rt/plain", "ok")] == 1, m
    assert m[route % ("boom", "/_rt/boom", "unavailable")] == 2, m
    assert m[route % ("refused", "/_rt/refused", "unavailable")] == 1, m
    by_route = {k: v for k, v in m.items()
                if k.startswith("realtime_forward_route_total")}
    for outcome in ("ok", "refused", "timeout", "unavailable", "bad_reply",
                    "busy"):
        assert sum(v for k, v in by_route.items()
                   if k.endswith('outcome="%s"}' % outcome)) == \
            m[out % outcome], (outcome, by_route)
    assert sum(v for k, v in m.items() if k.startswith(
        "realtime_forward_route_latency_seconds_count")) == count


def test_timeout_then_late_reply_dropped(env):
    def slow(body):
        time.sleep(1.2)
        return 200, {"ack": "late", "emit": [{"event": "late"}]}
    env.backend.replies["slow"] = (200, slow)
    c = client(env, "dan")
    c.send({"event": "slow", "id": 1})
    assert c.recv(timeout=3)["data"]["code"] == "BACKEND_TIMEOUT"
    c.assert_silent(1.2)


def test_replies_in_the_order_sent(env):
    def any_(body):
        time.sleep(0.3 if body["data"] == 1 else 0)
        return 200, {"ack": body["data"]}
    env.backend.replies["any"] = (200, any_)
    env.backend.replies["submit"] = (200, {"ack": "fast"})
    c = client(env, "eve")
    for i in (1, 2, 3):
        c.send({"event": "step", "data": i, "id": i})
    # an unordered route is not held behind the slow first one
    c.send({"event": "submit", "id": 9})
    got = [c.recv(timeout=3) for _ in range(4)]
    assert got[0]["id"] == 9
    assert [g["data"] for g in got[1:]] == [1, 2, 3]


def test_busy_beyond_max_inflight(env):
    def slow(body):
        time.sleep(0.5)
        return 200, {"ack": body["id"]}
    env.backend.replies["any"] = (200, slow)
    c = client(env, "fay")
    for i in range(6):
        c.send({"event": "q", "id": i})
    got = sorted((m["id"], m["event"]) for m in
                 [c.recv(timeout=5) for _ in range(6)])
    assert [e for _, e in got].count("error") == 2, got
    assert [e for _, e in got].count("q") == 4, got


def test_busy_beyond_the_worker_limit(rt, backend):
    """realtime_forward_worker_max_inflight bounds one worker's forwards,
    whatever each socket may have."""
    rt.start(rt_http(presence="off", http_extra="""
        upstream app { server 127.0.0.1:%d; }
        realtime_forward_worker_max_inflight 3;
    """ % backend.port, ws_extra="""
            realtime_forward * /_rt/any unordered;
            realtime_forward_max_inflight 16;
    """, locations="""
        location /_rt/ { internal; proxy_pass http://app; }
    """))

    def slow(body):
        time.sleep(0.5)
        return 200, {"ack": body["id"]}
    backend.replies["any"] = (200, slow)
    c = rt.client(user="gil")
    for i in range(5):
        c.send({"event": "q", "id": i})
    got = [c.recv(timeout=5) for _ in range(5)]
    busy = [m for m in got if m["event"] == "error"]
    assert len(busy) == 2 and all(m["data"]["code"] == "BUSY"
                                  for m in busy), got
    assert sorted(m["data"] for m in got if m["event"] == "q") == \
        sorted(set(range(5)) - {m["id"] for m in busy}), got
    # the worker takes more once those are answered
    c.send({"event": "q", "id": 9})
    assert c.recv(timeout=5) == {"event": "q", "data": 9, "id": 9}


def test_reply_cannot_join_a_room_the_token_forbids(env):
    env.backend.replies["join_battle"] = (200, {"join": ["secret:1",
                                                         "game:1"]})
    c = client(env, "gus", rooms=["game:*"])
    c.send({"event": "join_battle", "data": {"battleId": "1"}, "id": 1})
    assert c.recv()["id"] == 1
    r = env.push({"room": "secret:1", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 0
    r = env.push({"room": "game:1", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 1


def test_client_leaves_with_forwards_in_flight(env):
    def slow(body):
        time.sleep(0.4)
        return 200, {"ack": 1, "join": ["x"]}
    env.backend.replies["any"] = (200, slow)
    for i in range(5):
        c = client(env, "h%d" % i)
        c.send({"event": "q", "id": 1})
        c.send({"event": "q", "id": 2})
        c.close()
    time.sleep(1.0)
    # nothing crashed, nothing joined, others fine
    r = env.push({"room": "x", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 0
    c = client(env, "ok")
    env.backend.replies["any"] = (200, {"ack": 2})
    c.send({"event": "q", "id": 3})
    assert c.recv()["data"] == 2


def test_keepalive_upstream_and_reply_to_users(env):
    env.backend.replies["any"] = (200, lambda b: (200, {
        "to_user": [{"user": "ivy", "event": "dm", "data": b["data"]}]}))
    ivy = client(env, "ivy")
    sender = client(env, "joe")
    for i in range(20):
        sender.send({"event": "msg", "data": i, "id": i})
        assert sender.recv()["id"] == i
        assert ivy.recv()["data"] == i
    # keepalive 4 per worker: far fewer TCP connections than requests
    assert len(env.backend.ports) <= 8, env.backend.ports


@pytest.mark.skipif(not node_available(), reason="node missing")
def test_socketio_events_forwarded_with_acks(env):
    env.backend.replies["submit"] = (200, lambda b: (200, {
        "ack": {"got": b["data"], "protocol": b["protocol"]}}))
    with SioDriver() as drv:
        drv.connect("s", "http://127.0.0.1:%d" % env.port,
                    path="/sio/socket.io/", transports=["websocket"])
        assert drv.emit("s", "submit", {"code": "x"}) == \
            [{"got": {"code": "x"}, "protocol": "socket.io"}]
        env.backend.replies["any"] = (500, b"")
        assert drv.emit("s", "other", 1)[0]["error"]["code"] == \
            "BACKEND_UNAVAILABLE"


@pytest.mark.skipif(not node_available(), reason="node missing")
@pytest.mark.parametrize("transports", [["polling"], ["websocket"],
                                        ["polling", "websocket"]])
def test_socketio_handshake_seen_by_the_forward_location(env, transports):
    """The Engine.IO session's first request is its handshake: its
    headers and query, whatever transport the events come by later."""
    env.backend.replies["submit"] = (200, {"ack": "ok"})
    before = len(env.backend.requests)
    with SioDriver() as drv:
        drv.connect("s", "http://127.0.0.1:%d" % env.port,
                    path="/sio/socket.io/", transports=transports,
                    extraHeaders={"X-Tenant": "t9",
                                  "Cookie": "session=sio-cookie"},
                    query={"room": "q7"})
        for i in range(3):
            assert drv.emit("s", "submit", i) == ["ok"]
    reqs = [q for q in env.backend.requests[before:] if q[0] == "submit"]
    assert len(reqs) == 3
    for _, headers, body in reqs:
        assert headers["X-Tenant"] == "t9", headers
        assert headers["X-Cookie"] == "sio-cookie", headers
        assert headers["X-Arg"] == "q7", headers
        assert headers["X-Remote"].startswith("127.0.0.1:"), headers
        assert body["protocol"] == "socket.io"


def test_connect_and_disconnect_hooks(env):
    def hello(body):
        if body["user"] == "mallory":
            return 403, b""
        reply = {"join": ["lobby"],
                 "emit": [{"event": "welcome:data",
                           "data": {"hello": body["user"]}}]}
        if body["user"].isdigit():
            # an anonymous socket (its connection id): the hook names it
            reply["user"] = "named-" + body["user"]
        return 200, reply
    env.backend.replies["hello"] = (200, hello)
    env.backend.replies["gone"] = (204, b"")

    c = env.client(path="/hooks?user=kim")     # read the module's welcome
    assert c.recv() == {"event": "welcome:data", "data": {"hello": "kim"}}
    r = env.push({"room": "lobby", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 1
    assert c.recv()["event"] == "t"
    name, _, body = [q for q in env.backend.requests if q[0] == "hello"][0]
    assert "event" not in body and body["user"] == "kim"

    # an anonymous socket gets its user from the hook
    anon = env.client(path="/hooks")
    ev = anon.recv()
    assert ev["event"] == "welcome:data"
    name = "named-" + ev["data"]["hello"]
    r = env.push({"userId": name, "topic": "dm", "payload": 1})
    assert r.json()["delivered"] == 1, r
    assert anon.recv()["event"] == "dm"

    # refused by the hook: closed with 4003
    bad = env.client(path="/hooks?user=mallory")
    deadline = time.monotonic() + 5
    code = None
    while time.monotonic() < deadline and code is None:
        f = bad.raw.recv_frame(timeout=5)
        if f.opcode == 8:
            code = f.close_code
    assert code == 4003

    # one POST when a socket goes, with its user and rooms
    c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gone = [q for q in env.backend.requests if q[0] == "gone"
                and q[2]["user"] == "kim"]
        if gone:
            break
        time.sleep(0.05)
    assert len(gone) == 1 and gone[0][2]["rooms"] == ["lobby"]


def test_refused_before_the_upgrade_by_auth_request(env):
    """A backend refuses a handshake with an HTTP 401/403 before the 101
    (auth_request), and names the user the socket then has; the connect
    hook still runs after the upgrade."""
    def gate(body):
        # the handshake's URI, as the auth service sees it
        _, headers, _ = env.backend.requests[-1]
        user = headers["X-Original-URI"].split("user=")[-1]
        if user == "nobody":
            return 401, b""
        if user == "banned":
            return 403, b""
        return 200, b"", {"X-User": "gate-" + user}
    env.backend.replies.update({"gate": (200, gate),
                                "hello": (200, {"join": ["gated"]})})
    from wsraw import open_socket, read_response, ws_request_bytes

    for user, status, code in (("nobody", 401, "UNAUTHORIZED"),
                               ("banned", 403, "FORBIDDEN")):
        sock = open_socket(env.port)
        sock.sendall(ws_request_bytes(path="/gated?user=" + user))
        resp = read_response(sock)
        sock.close()
        assert resp.status == status, resp
        assert resp.header("content-type") == "application/json", resp
        assert json.loads(resp.body)["error"]["code"] == code, resp
    assert not [q for q in env.backend.requests if q[0] == "hello"]

    c = env.client(path="/gated?user=ann")
    assert c.user == "gate-ann"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = env.push({"room": "gated", "topic": "t", "payload": 1})
        if r.json()["delivered"] == 1:
            break
        time.sleep(0.05)
    assert c.recv()["event"] == "t"


def test_metadata_set_by_replies_and_sent_with_forwards(env):
    """The connect hook's "meta" goes with every later forward and the
    disconnect hook; a reply changes keys (null deletes one); metadata
    over 4 KB is refused and the old one kept."""
    def hello(body):
        return 200, {"meta": {"tenant": "t1", "tier": 2}}

    def any_(body):
        meta = body.get("meta")
        if meta and "a" in meta:
            meta = dict(meta, a=len(meta["a"]))     # the reply stays small
        return 200, {"ack": meta, "meta": body["data"]}
    env.backend.replies.update({"hello": (200, hello), "any": (200, any_),
                                "gone": (204, b"")})

    c = env.client(path="/hooks?user=meta-user")
    c.send({"event": "x", "data": {"tier": None, "seen": True}, "id": 1})
    assert c.recv() == {"event": "x", "data": {"tenant": "t1", "tier": 2},
                        "id": 1}
    c.send({"event": "x", "data": {"a": "a" * 2500}, "id": 2})
    assert c.recv() == {"event": "x", "data": {"tenant": "t1",
                                               "seen": True}, "id": 2}
    # 2500 + 2500 bytes: over 4096, refused, the metadata as it was
    c.send({"event": "x", "data": {"b": "b" * 2500}, "id": 3})
    assert c.recv()["data"] == {"tenant": "t1", "seen": True, "a": 2500}
    c.send({"event": "x", "data": {"a": None}, "id": 4})
    assert c.recv()["data"] == {"tenant": "t1", "seen": True, "a": 2500}
    c.send({"event": "x", "data": "not an object", "id": 5})
    err = c.recv()
    assert err["event"] == "error" and err["id"] == 5
    assert err["data"]["code"] == "BACKEND_BAD_REPLY", err
    c.send({"event": "x", "data": {}, "id": 6})
    assert c.recv()["data"] == {"tenant": "t1", "seen": True}
    c.close()

    deadline = time.monotonic() + 5
    gone = []
    while time.monotonic() < deadline and not gone:
        gone = [q for q in env.backend.requests if q[0] == "gone"
                and q[2]["user"] == "meta-user"]
        time.sleep(0.05)
    assert len(gone) == 1 and gone[0][2]["meta"] == {"tenant": "t1",
                                                     "seen": True}
    assert "would be over 4096 bytes" in env.ngx.error_log()


@pytest.mark.skipif(not node_available(), reason="node missing")
def test_disconnect_hook_of_a_socketio_namespace(env):
    env.backend.replies["gone"] = (204, b"")
    with SioDriver() as drv:
        drv.connect("s", "http://127.0.0.1:%d" % env.port,
                    path="/sio/socket.io/", transports=["websocket"])
        sid = drv.state("s")["id"]
        drv.disconnect("s")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gone = [q for q in env.backend.requests if q[0] == "gone"]
        if gone:
            break
        time.sleep(0.05)
    assert len(gone) == 1 and gone[0][2]["protocol"] == "socket.io", sid
