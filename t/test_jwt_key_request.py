"""realtime_jwt_key_request (issue 15, item 4): the keys of an identity
provider's JWKS, fetched by every worker through an nginx location
(proxy_pass to a JWKS server written here, which rotates its keys, fails
and stalls on demand), cached, refreshed on schedule and when a token
names a kid the set lacks (at most once per min_interval=), kept when a
fetch fails.  A handshake, a push, a Socket.IO CONNECT and a "refresh"
whose key is on its way wait for the fetch (at most timeout=) instead of
being refused.  nginx -t refuses bad parameters.
"""

import base64
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import (Nginx, RtClient, STRICT_BAD_LOG_RE, _require_module,
                      free_port, http_call, wait_until)
from sioclient import SioDriver, node_available
from test_jwt import claims, ec_jwk, priv_pem, rsa_jwk
from wsraw import RawWS, assert_json_error, http_request, ws_request_bytes

# make integration-asan runs every test here but the two slowest, whose
# paths (a failed fetch, an unknown kid refused) the others cover too
pytestmark = pytest.mark.asan

REFRESH = 2.0         # refresh=2s
MIN_INTERVAL = 0.5    # min_interval=500ms
TIMEOUT = 1.5         # timeout=1500ms


class Jwks:
    """A JWKS endpoint on loopback: serves self.keys, or self.status with
    self.body, after self.delay seconds; counts every fetch."""

    def __init__(self):
        self.headers = []
        self.keys = []
        self.status = 200
        self.body = None
        self.delay = 0.0
        self.fetches = []
        self.lock = threading.Lock()
        jw = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with jw.lock:
                    jw.fetches.append((time.monotonic(), self.path))
                    jw.headers.append(dict(self.headers))
                    status, body, delay = jw.status, jw.body, jw.delay
                    keys = list(jw.keys)
                if delay:
                    time.sleep(delay)
                if body is None:
                    body = json.dumps({"keys": keys})
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.fetches)

    def serve(self, keys, status=200, body=None, delay=0.0):
        with self.lock:
            self.keys = keys
            self.status = status
            self.body = body
            self.delay = delay

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Signer:
    """A private key with its kid, its JWK and its tokens."""

    def __init__(self, kind="RS256"):
        self.kid = "k-" + uuid.uuid4().hex[:10]
        self.alg = kind
        if kind == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ec_jwk(self.key, self.kid, "P-256", 32)
        else:
            self.key = rsa.generate_private_key(65537, 2048)
            self.jwk = rsa_jwk(self.key, self.kid)

    def token(self, sub="alice", ttl=300, kid=None, **extra):
        return jwt.encode(claims(sub, ttl, **extra), priv_pem(self.key),
                          self.alg, headers={"kid": kid or self.kid})


def conf(jwks_port, key_request="realtime_jwt_key_request /_jwks "
                                 "refresh=2s min_interval=500ms "
                                 "timeout=1500ms;"):
    return r"""
    realtime_zone jk 4m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        %(kr)s

        location = /_jwks {
            internal;
            proxy_pass http://127.0.0.1:%(jp)d/.well-known/jwks.json;
            proxy_read_timeout 10s;
            subrequest_output_buffer_size 64k;
            # forwards' variables are empty in a fetch, never a forward's
            proxy_set_header X-Event "$realtime_event";
            proxy_set_header X-Conn "$realtime_connection_id";
            proxy_set_header X-User "$realtime_user|$realtime_jwt_sub";
        }

        location /ws { realtime jk; realtime_user $realtime_jwt_sub; }
        location = /push { realtime_push jk; }
        location /socket.io/ {
            realtime_socketio jk;
            realtime_socketio_transports websocket;
        }
    }
""" % {"jp": jwks_port, "kr": key_request}


@pytest.fixture(scope="module")
def jwks():
    j = Jwks()
    yield j
    j.close()


@pytest.fixture(scope="module")
def first(jwks):
    s = Signer()
    jwks.serve([s.jwk, Signer("ES256").jwk])
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory, jwks, first):
    _require_module()
    ngx = Nginx(tmp_path_factory.mktemp("jwksrv"))
    ngx.start(conf(jwks.port))
    yield ngx
    graceful = ngx.quit(timeout=8)
    bad = [l for l in ngx.error_log().splitlines()
           if STRICT_BAD_LOG_RE.search(l)]
    assert graceful, "nginx did not quit gracefully within 8s"
    assert not bad, "error log:\n" + "\n".join(bad[:30])


@pytest.fixture
def srv(server):
    server.log_mark()
    workers = server.worker_pids()
    yield server
    assert server.worker_pids() == workers, "a worker died"


def connect(port, token, path="/ws"):
    raw = RawWS.connect(port, path=path + "?token=" + token)
    try:
        return RtClient(raw)
    except Exception:
        raw.close()
        raise


def refused(port, token):
    r = http_request(port, ws_request_bytes(path="/ws?token=" + token))
    assert_json_error(r, 401, "UNAUTHORIZED")
    return json.loads(r.body)["error"]


def rotate(jwks, keys):
    """Serves keys from now on and waits until min_interval= has passed
    since the last fetch, so that an unknown kid may fetch again."""
    jwks.serve(keys)
    settle(jwks)


def settle(jwks):
    """Waits until min_interval= has passed since the last fetch."""
    with jwks.lock:
        last = jwks.fetches[-1][0] if jwks.fetches else 0
    time.sleep(max(0.0, last + MIN_INTERVAL + 0.2 - time.monotonic()))


def both_refreshed(jwks, since):
    """Each worker has fetched at least once after since (monotonic)."""
    def done():
        with jwks.lock:
            return sum(1 for t, _ in jwks.fetches if t > since) >= 2
    return wait_until(done, REFRESH * 2 + 2)


# --------------------------------------------------------------------------

def test_each_worker_fetches_at_start(srv, jwks, first):
    assert wait_until(lambda: jwks.count() >= 2, 5), jwks.fetches
    assert all(p == "/.well-known/jwks.json" for _, p in jwks.fetches)
    with jwks.lock:
        h = {k.lower(): v for k, v in jwks.headers[0].items()}
    # nginx leaves out headers whose value is empty
    assert "x-event" not in h and "x-conn" not in h, h
    assert h["x-user"] == "|", h
    assert "content-type" not in h, h
    # the JWKS server counts a fetch when it starts; the worker logs once
    # it has read the answer, a moment later (ASan makes it a long one)
    assert wait_until(lambda: re.search(r'JWKS "/_jwks" fetched, 2 keys',
                                        srv.error_log()), 5)
    # tokens of the set's RSA key, on every worker
    for i in range(6):
        c = connect(srv.port, first.token("u%d" % i))
        assert c.user == "u%d" % i
        c.close()


def test_unknown_kid_waits_for_the_new_set(srv, jwks, first):
    new = Signer()
    rotate(jwks, [new.jwk])
    before = jwks.count()

    # the handshake waits for the fetch its kid asks for, then passes
    t0 = time.monotonic()
    c = connect(srv.port, new.token("rotated"))
    assert c.user == "rotated"
    assert time.monotonic() - t0 < TIMEOUT
    c.close()
    assert jwks.count() > before

    # once both workers have the new set, the old kid is gone from it
    assert both_refreshed(jwks, time.monotonic())
    assert refused(srv.port, first.token()) == "token kid is unknown"
    for i in range(4):
        connect(srv.port, new.token()).close()


@pytest.mark.no_asan
def test_failed_fetch_keeps_the_keys(srv, jwks):
    keep = Signer("ES256")
    rotate(jwks, [keep.jwk])
    connect(srv.port, keep.token()).close()
    assert both_refreshed(jwks, time.monotonic())

    for status, body in ((500, '{"error": "down"}'), (200, "{not json"),
                         (200, '{"keys": []}')):
        jwks.serve([], status=status, body=body)
        assert both_refreshed(jwks, time.monotonic())
        for i in range(4):
            c = connect(srv.port, keep.token("kept"))
            assert c.user == "kept"
            c.close()
    # the last fetch is logged once its answer is read: wait for that one
    assert wait_until(lambda: re.search(r'JWKS "/_jwks" has no signature key',
                                        srv.error_log()), 5)
    log = srv.error_log()
    assert re.search(r'JWKS "/_jwks" answered 500, keeping the 1 keys', log)
    assert re.search(r'JWKS "/_jwks" is not JSON: line 1', log)
    jwks.serve([keep.jwk])


def test_fetched_set_skips_what_it_cannot_use(srv, jwks):
    good = Signer()
    secret = b"published-secret-published-secret"
    bad_ec = Signer("ES256").jwk
    bad_ec = dict(bad_ec, x="AAAA")       # a coordinate of 3 bytes, not 32
    rotate(jwks, [{"kty": "oct", "kid": "oct-1",
                   "k": base64.urlsafe_b64encode(secret).rstrip(b"=")
                   .decode()},
                  bad_ec, {"kty": "RSA", "kid": "no-e", "n": "AQAB"},
                  good.jwk])
    c = connect(srv.port, good.token("good"))
    assert c.user == "good"
    c.close()
    # a secret published in the set verifies nothing
    hs = jwt.encode(claims(), secret, "HS256", headers={"kid": "oct-1"})
    r = http_request(srv.port, ws_request_bytes(path="/ws?token=" + hs))
    assert r.status == 401, r
    log = srv.error_log()
    assert re.search(r'JWKS key 0 skipped: is a secret \("oct"\)', log)
    assert re.search(r'JWKS key 1 skipped: has "x" or "y" of the wrong size',
                     log)
    assert re.search(r'JWKS key 2 skipped: lacks a member', log)


@pytest.mark.no_asan
def test_unknown_kids_fetch_at_most_once_per_interval(srv, jwks):
    stranger = Signer()
    rotate(jwks, [Signer().jwk])
    start = time.monotonic()
    before = jwks.count()
    n = 0
    while time.monotonic() - start < 2.5:
        tok = stranger.token(kid="nobody-%d" % n)
        t0 = time.monotonic()
        assert refused(srv.port, tok) == "token kid is unknown"
        assert time.monotonic() - t0 < TIMEOUT + 1.0
        n += 1
    elapsed = time.monotonic() - start
    fetched = jwks.count() - before
    # per worker: one at once, then one per min_interval, and refresh=
    bound = 2 * (int(elapsed / MIN_INTERVAL) + 1) \
        + 2 * (int(elapsed / REFRESH) + 1)
    assert n >= 20, n
    assert 1 <= fetched <= bound, (fetched, bound, n)


def test_push_waits_for_its_key(srv, jwks):
    backend = Signer()
    user = Signer()
    rotate(jwks, [user.jwk])
    c = connect(srv.port, user.token("pushee"))
    rotate(jwks, [user.jwk, backend.jwk])
    r = http_call(srv.port, "POST", "/push",
                  {"userId": "pushee", "topic": "t", "payload": 7},
                  {"Authorization": "Bearer " + backend.token("backend")})
    assert r.status == 200 and r.json()["delivered"] == 1, r
    assert c.recv() == {"event": "t", "data": 7}

    r = http_call(srv.port, "POST", "/push",
                  {"userId": "pushee", "topic": "t", "payload": 8},
                  {"Authorization": "Bearer " + Signer().token()})
    assert r.status == 401, r
    assert r.json()["error"] == "token kid is unknown", r
    c.assert_silent(0.2)
    c.close()


def test_refresh_waits_for_its_key(srv, jwks):
    old = Signer()
    rotate(jwks, [old.jwk])
    c = connect(srv.port, old.token("refresher", ttl=60))
    new = Signer()
    rotate(jwks, [old.jwk, new.jwk])
    ans = c.call({"event": "refresh", "id": 3,
                  "data": {"token": new.token("refresher", ttl=900)}})
    assert ans["event"] == "refreshed" and ans["id"] == 3, ans
    assert ans["data"]["exp"] > time.time() + 800, ans
    # the socket still works, and a second unknown kid is refused
    assert c.call({"event": "ping", "data": 1}) == \
        {"event": "pong", "data": 1}
    ans = c.call({"event": "refresh", "id": 4,
                  "data": {"token": Signer().token("refresher")}})
    assert ans["event"] == "error" and ans["id"] == 4, ans
    assert ans["data"]["code"] == "UNAUTHORIZED", ans

    # a refresh that waits is replaced by a later one: the socket never
    # goes back to the older token
    older, newer = Signer(), Signer()
    rotate(jwks, [old.jwk, new.jwk, older.jwk, newer.jwk])
    jwks.serve([old.jwk, new.jwk, older.jwk, newer.jwk], delay=0.6)
    c.send({"event": "refresh", "id": 5,
            "data": {"token": older.token("refresher", ttl=1000)}})
    c.send({"event": "refresh", "id": 6,
            "data": {"token": newer.token("refresher", ttl=2000)}})
    first_ans = c.recv(timeout=TIMEOUT + 2)
    assert first_ans["event"] == "error" and first_ans["id"] == 5, first_ans
    assert first_ans["data"]["message"] == "replaced by a later refresh"
    second = c.recv(timeout=TIMEOUT + 2)
    assert second["event"] == "refreshed" and second["id"] == 6, second
    assert second["data"]["exp"] > time.time() + 1900, second
    jwks.serve([old.jwk, new.jwk, older.jwk, newer.jwk])
    c.close()


@pytest.mark.skipif(not node_available(),
                    reason="node or t/js/node_modules missing")
def test_socketio_connect_waits_for_its_key(srv, jwks):
    old = Signer()
    rotate(jwks, [old.jwk])
    connect(srv.port, old.token()).close()
    new = Signer("ES256")
    rotate(jwks, [old.jwk, new.jwk])
    base = "http://127.0.0.1:%d" % srv.port
    with SioDriver() as drv:
        info = drv.connect("a", base, transports=["websocket"],
                           auth={"token": new.token("sio-user")})
        assert info["id"]
        assert drv.emit("a", "ping", 5) == [5]
        res = drv.connect("b", base, transports=["websocket"],
                          auth={"token": Signer().token()}, check=False)
        assert res["ok"] is False and res["data"] == \
            {"code": "UNAUTHORIZED"}, res
        assert drv.emit("a", "ping", 6) == [6]


def test_slow_jwks_answers_after_timeout(srv, jwks):
    slow = Signer()
    # the key is only ever served slowly: a periodic refresh while the
    # test waits must not fetch it in time
    settle(jwks)
    jwks.serve([slow.jwk], delay=TIMEOUT + 1.5)
    t0 = time.monotonic()
    assert refused(srv.port, slow.token()) == "token kid is unknown"
    waited = time.monotonic() - t0
    assert TIMEOUT - 0.3 < waited < TIMEOUT + 1.0, waited
    assert re.search(r'JWKS "/_jwks" not fetched in 1500 ms',
                     srv.error_log())
    # the fetch ends after all: the key comes, for the next handshakes
    jwks.serve([slow.jwk])
    assert wait_until(lambda: _accepted(srv.port, slow.token()), 8)


def _accepted(port, token):
    r = http_request(port, ws_request_bytes(path="/ws?token=" + token))
    return r.status == 101


def test_jwks_down_at_start(tmp_path, jwks):
    _require_module()
    dead = free_port()                 # nothing listens there
    ngx = Nginx(tmp_path)
    ngx.start(conf(dead))
    try:
        s = Signer()
        t0 = time.monotonic()
        assert refused(ngx.port, s.token()) == "token kid is unknown"
        assert time.monotonic() - t0 < TIMEOUT + 1.0
        assert wait_until(lambda: re.search(
            r'JWKS "/_jwks" answered 502, keeping the 0 keys',
            ngx.error_log()), 5)
        r = http_call(ngx.port, "POST", "/push", {"broadcast": True,
                      "topic": "t", "payload": 1},
                      {"Authorization": "Bearer " + s.token()})
        assert r.status == 401, r
    finally:
        assert ngx.quit(timeout=8)


def test_nginx_t(tmp_path, jwks):
    _require_module()
    cases = [
        ("realtime_jwt_key_request jwks;", r'"jwks" is not a URI'),
        ("realtime_jwt_key_request /_jwks refresh=30d;",
         r'invalid time in "refresh=30d"'),
        ("realtime_jwt_key_request /_jwks every=1h;",
         r'invalid parameter "every=1h"'),
        ("realtime_jwt_key_request /_jwks refresh=0;",
         r'invalid time in "refresh=0"'),
        ("realtime_jwt_key_request /_jwks refresh=abc;",
         r'invalid time in "refresh=abc"'),
        ("realtime_jwt_key_request /_jwks refresh=10s min_interval=1m;",
         r'min_interval= is longer than refresh='),
        ("realtime_jwt_key_request /a; realtime_jwt_key_request /b;",
         r'"realtime_jwt_key_request" directive is duplicate'),
    ]
    for i, (line, msg) in enumerate(cases):
        ngx = Nginx(tmp_path / str(i))
        ngx.write_conf(conf(jwks.port, key_request=line))
        rc, out = ngx.test_conf()
        assert rc != 0 and re.search(msg, out), (line, out)
    ngx = Nginx(tmp_path / "http")
    ngx.write_conf("realtime_jwt_key_request /_jwks;\n" + conf(jwks.port))
    rc, out = ngx.test_conf()
    assert rc != 0 and re.search(
        r'"realtime_jwt_key_request" directive is not allowed here', out), out
    ngx = Nginx(tmp_path / "ok")
    ngx.write_conf(conf(jwks.port))
    rc, out = ngx.test_conf()
    assert rc == 0, out
