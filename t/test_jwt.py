"""JWT authentication (issue 4): every algorithm family and token source,
claims with leeway, forged and malformed tokens, both failure modes, room
authorization, refresh and expiry of open sockets, the push API, the
variables, and nginx -t on bad keys.

Keys are made in the test (python cryptography), tokens minted with
PyJWT, or by hand where PyJWT refuses to forge them. One nginx (2
workers) serves most tests; after each of them a fresh client must still
get through, the log must be clean and no worker may have died.
"""

import base64
import hashlib
import hmac
import json
import re
import socket
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import Nginx, http_call, wait_until, _require_module
from conftest import RtClient, STRICT_BAD_LOG_RE
from wsraw import (RawWS, assert_json_error, http_request, ws_request_bytes,
                   OP_TEXT)

pytestmark = pytest.mark.asan     # also run by make integration-asan

SECRET = "s3cret-s3cret-s3cret-s3cret-0123"       # 32 bytes
ISS = "https://auth.example.com"


# --------------------------------------------------------------------------
# keys and tokens
# --------------------------------------------------------------------------

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_int(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(size, "big"))


def priv_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pub_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_jwk(key, kid, **extra):
    n = key.public_key().public_numbers()
    d = {"kty": "RSA", "kid": kid, "n": b64u_int(n.n), "e": b64u_int(n.e)}
    d.update(extra)
    return d


def ec_jwk(key, kid, crv, size):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": crv,
            "x": b64u_int(n.x, size), "y": b64u_int(n.y, size)}


class Keys:
    def __init__(self, d):
        self.dir = d
        self.rsa = rsa.generate_private_key(65537, 2048)
        self.rsa_other = rsa.generate_private_key(65537, 2048)
        self.ec = {256: ec.generate_private_key(ec.SECP256R1()),
                   384: ec.generate_private_key(ec.SECP384R1()),
                   521: ec.generate_private_key(ec.SECP521R1())}
        self.jwks_rsa = rsa.generate_private_key(65537, 2048)
        self.jwks_ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks_secret = b"jwks-oct-secret-jwks-oct-secret!"
        (d / "rsa.pub").write_bytes(pub_pem(self.rsa))
        (d / "rsa_other.pub").write_bytes(pub_pem(self.rsa_other))
        for bits, k in self.ec.items():
            (d / ("ec%d.pub" % bits)).write_bytes(pub_pem(k))
        (d / "jwks.json").write_text(json.dumps({"keys": [
            rsa_jwk(self.jwks_rsa, "rsa-1"),
            rsa_jwk(self.rsa_other, "rsa-rs256-only", alg="RS256"),
            ec_jwk(self.jwks_ec, "ec-1", "P-256", 32),
            {"kty": "oct", "kid": "oct-1", "k": b64u(self.jwks_secret)},
            {"kty": "RSA", "kid": "enc-1", "use": "enc",
             "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "AA"},
        ]}))

    def rsa_priv(self):
        return priv_pem(self.rsa)


def now():
    return int(time.time())


def claims(sub="alice", ttl=300, **extra):
    c = {"sub": sub, "iat": now(), "exp": now() + ttl}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def hs(c=None, secret=SECRET, alg="HS256", headers=None):
    return jwt.encode(claims() if c is None else c, secret, algorithm=alg,
                      headers=headers)


def forge(header, payload, sig=b""):
    """A token assembled by hand: header and payload are dicts (or raw
    bytes already encoded), sig raw bytes."""
    h = b64u(json.dumps(header)) if isinstance(header, dict) else header
    p = b64u(json.dumps(payload)) if isinstance(payload, dict) else payload
    return "%s.%s.%s" % (h, p, b64u(sig))


def hs_forge(header, payload, secret):
    h = b64u(json.dumps(header))
    p = b64u(json.dumps(payload))
    mac = hmac.new(secret, ("%s.%s" % (h, p)).encode(), hashlib.sha256)
    return "%s.%s.%s" % (h, p, b64u(mac.digest()))


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------

def jwt_http(k):
    d = str(k.dir)
    sec = "realtime_jwt_key secret=%s;" % SECRET
    return r"""
    realtime_zone jz 4m;
    log_format jwtvars escape=none
        '$status|$realtime_jwt_sub|$realtime_jwt_claim_uid|'
        '$realtime_jwt_claim_roles|$realtime_jwt_claim_level|'
        '$realtime_jwt_claim_admin|$realtime_jwt_claim_nope';

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        server_name localhost;

        location /hs { realtime jz; %(sec)s realtime_user $realtime_jwt_sub; }
        location /rsa {
            realtime jz;
            realtime_jwt_key file=%(d)s/rsa.pub;
            realtime_user $realtime_jwt_sub;
        }
        location /ec {
            realtime jz;
            realtime_jwt_key file=%(d)s/ec256.pub;
            realtime_jwt_key file=%(d)s/ec384.pub;
            realtime_jwt_key file=%(d)s/ec521.pub;
        }
        location /ec256 { realtime jz; realtime_jwt_key file=%(d)s/ec256.pub; }
        location /mixed {
            realtime jz;
            realtime_jwt_key file=%(d)s/rsa.pub;
            realtime_jwt_key file=%(d)s/rsa_other.pub;
            %(sec)s
        }
        location /jwks { realtime jz; realtime_jwt_key jwks=%(d)s/jwks.json; }
        location /rs256 {
            realtime jz;
            realtime_jwt_key file=%(d)s/rsa.pub;
            realtime_jwt_alg RS256;
        }
        location /claims {
            realtime jz; %(sec)s
            realtime_jwt_issuer %(iss)s;
            realtime_jwt_audience realtime;
        }
        location /leeway { realtime jz; %(sec)s realtime_jwt_leeway 30s; }
        location /require {
            realtime jz; %(sec)s
            realtime_jwt_require exp tenant;
        }
        location = /push_require {
            realtime_push jz; %(sec)s
            realtime_jwt_require exp;
        }
        location /sources {
            realtime jz; %(sec)s
            realtime_jwt_token $arg_token $http_authorization
                               $cookie_rt_token;
        }
        location /rooms {
            realtime jz; %(sec)s
            realtime_jwt_rooms_claim rooms;
            realtime_client_publish on;
        }
        location /close { realtime jz; %(sec)s realtime_auth_failure close; }
        location /close_echo {
            realtime_echo; %(sec)s
            realtime_auth_failure close;
        }
        location /vars {
            realtime jz; %(sec)s
            realtime_user $realtime_jwt_claim_uid;
            access_log %%PREFIX%%/jwt_access.log jwtvars;
        }
        location /uid { realtime jz; %(sec)s realtime_jwt_user_claim uid; }
        location /echo { realtime_echo; %(sec)s }
        location /plain { realtime jz; realtime_user $arg_user; }
        location = /push { realtime_push jz; %(sec)s }
        location = /push_hdr {
            realtime_push jz; %(sec)s
            realtime_jwt_token $http_x_token;
        }
        location = /health { realtime_status jz; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name inherited;
        large_client_header_buffers 4 32k;
        %(sec)s
        realtime_auth_failure close;

        location /ws { realtime jz; }
        location /status_here {
            realtime jz;
            realtime_auth_failure status;
        }
    }
""" % {"d": d, "sec": sec, "iss": ISS}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("jwtkeys"))


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory, keys):
    _require_module()
    ngx = Nginx(tmp_path_factory.mktemp("jwtsrv"))
    ngx.start(jwt_http(keys), wait_ports=[ngx.port, ngx.port2])
    yield ngx
    graceful = ngx.quit(timeout=8)
    bad = [l for l in ngx.error_log().splitlines()
           if STRICT_BAD_LOG_RE.search(l)]
    assert graceful, "jwt nginx did not quit gracefully within 8s"
    assert not bad, "jwt nginx error log:\n" + "\n".join(bad[:30])


@pytest.fixture
def srv(jwt_server):
    """The shared server; after the test a valid client still gets in,
    the log holds no alert/crit/crash and both workers are the same."""
    jwt_server.log_mark()
    workers = jwt_server.worker_pids()
    yield jwt_server
    time.sleep(0.05)
    c = client(jwt_server.port, "/hs?token=" + hs(claims("after")))
    assert c.user == "after"
    assert c.call({"event": "ping", "data": 1}) == \
        {"event": "pong", "data": 1}
    c.close()
    with open(jwt_server.error_log_path, "rb") as f:
        f.seek(jwt_server._log_offset)
        text = f.read().decode("utf-8", "replace")
    bad = [l for l in text.splitlines() if STRICT_BAD_LOG_RE.search(l)]
    assert not bad, "\n".join(bad[:30])
    assert jwt_server.worker_pids() == workers, "a worker died"


def client(port, path, extra=None):
    raw = RawWS.connect(port, path=path, extra_headers=extra)
    try:
        return RtClient(raw)
    except Exception:
        raw.close()
        raise


def refused(port, path, code="UNAUTHORIZED", extra=None, www=None):
    """The handshake is refused with 401 and the JSON body; returns the
    error text."""
    r = http_request(port, ws_request_bytes(path=path, extra=extra))
    assert_json_error(r, 401, code)
    doc = json.loads(r.body)
    assert set(doc) == {"error", "code"}, doc
    auth = r.header("www-authenticate")
    assert auth is not None and auth.startswith("Bearer"), r
    if www is not None:
        assert auth == www, r
    return doc["error"]


def q(token):
    return "?token=" + token


def health(port):
    r = http_call(port, "GET", "/health")
    assert r.status == 200, r
    return r.json()


# --------------------------------------------------------------------------
# algorithms
# --------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(srv, alg):
    c = client(srv.port, "/hs" + q(hs(claims("h-" + alg), alg=alg)))
    assert c.user == "h-" + alg
    c.close()


@pytest.mark.parametrize("sub", ['a"b\\c/d', "tab\tnl\n\r\b\f\x01\x1f\x7f",
                                 "caf\u00e9 \u20ac \U0001f600 \u2028",
                                 "<script>&'"])
def test_welcome_carries_any_user_id(srv, sub):
    """The welcome is written without jansson: a user id that needs
    escaping comes back as it was, in the envelope's order."""
    raw = RawWS.connect(srv.port, path="/hs" + q(hs(claims(sub))))
    try:
        op, payload = raw.recv_message(timeout=5)
        assert op == 1
        ev = json.loads(payload)
        assert list(ev) == ["event", "data"], ev
        assert ev["event"] == "welcome"
        assert list(ev["data"]) == ["userId", "connectionId", "pid"], ev
        assert ev["data"]["userId"] == sub, ev
        # compact, and only what JSON needs escaped
        assert b" :" not in payload and b", " not in payload[:30], payload
        if "\u20ac" in sub:
            assert "\u20ac".encode() in payload, payload   # not escaped
    finally:
        raw.close()


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512",
                                 "PS256", "PS384", "PS512"])
def test_rsa_algorithms(srv, keys, alg):
    tok = jwt.encode(claims("r-" + alg), keys.rsa_priv(), algorithm=alg)
    c = client(srv.port, "/rsa" + q(tok))
    assert c.user == "r-" + alg
    c.close()


@pytest.mark.parametrize("alg,bits", [("ES256", 256), ("ES384", 384),
                                      ("ES512", 521)])
def test_ec_algorithms(srv, keys, alg, bits):
    tok = jwt.encode(claims("e"), priv_pem(keys.ec[bits]), algorithm=alg)
    client(srv.port, "/ec" + q(tok)).close()


def test_ec_alg_must_match_the_curve(srv, keys):
    # ES384 made with the P-256 key: ES384 needs P-384
    tok = jwt.encode(claims(), priv_pem(keys.ec[256]), algorithm="ES384")
    assert refused(srv.port, "/ec256" + q(tok)) == "token alg is not allowed"
    assert refused(srv.port, "/ec" + q(tok)) == "token signature is invalid"
    # ES256 made with the P-384 key
    tok = jwt.encode(claims(), priv_pem(keys.ec[384]), algorithm="ES256")
    assert refused(srv.port, "/ec" + q(tok)) == "token signature is invalid"


def test_alg_allow_list(srv, keys):
    pem = keys.rsa_priv()
    client(srv.port, "/rs256" + q(jwt.encode(claims(), pem, "RS256"))).close()
    for alg in ("RS384", "PS256"):
        tok = jwt.encode(claims(), pem, algorithm=alg)
        assert refused(srv.port, "/rs256" + q(tok)) == \
            "token alg is not allowed"
    # no secret here: HS* is not in the default allow-list of an RSA key
    assert refused(srv.port, "/rsa" + q(hs())) == "token alg is not allowed"


def test_alg_none_never_passes(srv):
    for alg in ("none", "None", "NONE"):
        tok = forge({"alg": alg, "typ": "JWT"}, claims())
        assert refused(srv.port, "/hs" + q(tok)) == \
            "unsigned tokens are not accepted"
        tok = forge({"alg": alg}, claims(), b"sig")
        assert refused(srv.port, "/mixed" + q(tok)) == \
            "unsigned tokens are not accepted"
    tok = jwt.encode(claims(), None, algorithm="none")
    refused(srv.port, "/hs" + q(tok))


def test_algorithm_confusion(srv, keys):
    """HS256 with the RSA public key's PEM bytes as the HMAC secret: the
    classic attack on libraries that let HS* use any key."""
    for pem in (pub_pem(keys.rsa), pub_pem(keys.rsa).rstrip(b"\n")):
        tok = hs_forge({"alg": "HS256", "typ": "JWT"}, claims("mallory"),
                       pem)
        assert refused(srv.port, "/rsa" + q(tok)) == \
            "token alg is not allowed"
        # even where HS256 is allowed, by a secret, the PEM is no secret
        assert refused(srv.port, "/mixed" + q(tok)) == \
            "token signature is invalid"


def test_rotation_with_several_keys(srv, keys):
    """Two RSA keys and a secret in one location: each verifies."""
    for k in (keys.rsa, keys.rsa_other):
        tok = jwt.encode(claims("rot"), priv_pem(k), algorithm="RS256")
        client(srv.port, "/mixed" + q(tok)).close()
    client(srv.port, "/mixed" + q(hs())).close()


# --------------------------------------------------------------------------
# forged and malformed tokens
# --------------------------------------------------------------------------

def test_tampered_payload(srv, keys):
    evil = b64u(json.dumps(claims("admin")))
    for path, tok in (
            ("/hs", hs(claims("bob"))),
            ("/rsa", jwt.encode(claims("bob"), keys.rsa_priv(), "RS256")),
            ("/rsa", jwt.encode(claims("bob"), keys.rsa_priv(), "PS256")),
            ("/ec", jwt.encode(claims("bob"), priv_pem(keys.ec[256]),
                               "ES256"))):
        h, p, sig = tok.split(".")
        assert refused(srv.port, path + q("%s.%s.%s" % (h, evil, sig))) == \
            "token signature is invalid", path
    # a payload with the signature of another token
    a, b = hs(claims("bob")), hs(claims("eve"))
    spliced = a.rsplit(".", 1)[0] + "." + b.rsplit(".", 1)[1]
    assert refused(srv.port, "/hs" + q(spliced)) == \
        "token signature is invalid"


def test_wrong_key(srv, keys):
    tok = jwt.encode(claims(), priv_pem(keys.rsa_other), algorithm="RS256")
    assert refused(srv.port, "/rsa" + q(tok)) == "token signature is invalid"
    tok = jwt.encode(claims(), priv_pem(keys.rsa_other), algorithm="PS256")
    assert refused(srv.port, "/rsa" + q(tok)) == "token signature is invalid"
    tok = hs(secret=SECRET + "x")
    assert refused(srv.port, "/hs" + q(tok)) == "token signature is invalid"
    tok = jwt.encode(claims(), priv_pem(keys.ec[384]), algorithm="ES256")
    assert refused(srv.port, "/ec256" + q(tok)) == \
        "token signature is invalid"


def test_malformed(srv):
    good = hs()
    h, p, s = good.split(".")
    cases = {
        "abc": "token is not a compact JWS",
        "a.b": "token is not a compact JWS",
        good + ".x": "token is not a compact JWS",
        "..": "token has an empty header or payload",
        "%s..%s" % (h, s): "token has an empty header or payload",
        "%s.%s." % (h, p): "token has no signature",
        "!!!.%s.%s" % (p, s): "token header is not a base64url JSON object",
        "%s=.%s.%s" % (h, p, s):
            "token header is not a base64url JSON object",
        "%s.%s.%s" % (b64u("not json"), p, s):
            "token header is not a base64url JSON object",
        "%s.%s.%s" % (b64u("[1]"), p, s):
            "token header is not a base64url JSON object",
        "%s.%s.%s" % (h, b64u('{"sub":'), s):
            "token payload is not a base64url JSON object",
        "%s.%s.%s" % (h, b64u('"alice"'), s):
            "token payload is not a base64url JSON object",
        "%s.%s$.%s" % (h, p, s):
            "token payload is not a base64url JSON object",
        "%s.%s.%s" % (b64u('{"typ":"JWT"}'), p, s): "token header has no alg",
        "%s.%s.%s" % (b64u('{"alg":"HS256","crit":["exp"]}'), p, s):
            "token has critical header extensions",
        "%s.%s.%s" % (b64u('{"alg":"EdDSA"}'), p, s):
            "token alg is not supported",
        "%s.%s.%s" % (b64u('{"alg":"HS256","alg":"none"}'), p, s):
            "token header is not a base64url JSON object",
    }
    for tok, reason in cases.items():
        assert refused(srv.port, "/hs?token=" + tok) == reason, tok
    # a bad signature encoding
    refused(srv.port, "/hs" + q("%s.%s.%s" % (h, p, "****")))


def test_missing_token(srv):
    assert refused(srv.port, "/hs", www="Bearer") == "token is missing"
    assert refused(srv.port, "/hs?token=", www="Bearer") == "token is missing"
    assert refused(srv.port, "/hs", extra=[("Authorization", "Bearer ")],
                   www="Bearer") == "token is missing"


def test_huge_token(srv):
    """A 64 KB token runs into nginx's header limits; nothing breaks."""
    big = hs(claims(pad="x" * 48000))
    assert len(big) > 64000
    for extra, path in ((None, "/hs?token=" + big),
                        ([("Authorization", "Bearer " + big)], "/hs"),
                        ([("Cookie", "rt_token=" + big)], "/sources")):
        r = http_request(srv.port, ws_request_bytes(path=path, extra=extra))
        assert r.status in (400, 414, 431, 494), r
    # 17k is past the module's own limit; the second server's large
    # header buffers let it through to be refused there
    mid = hs(claims(pad="x" * 13000))
    assert 16384 < len(mid) < 20000
    assert refused(srv.port2, "/status_here",
                   extra=[("Authorization", "Bearer " + mid)]) == \
        "token is too long"


# --------------------------------------------------------------------------
# claims
# --------------------------------------------------------------------------

def test_exp_nbf_iat_without_leeway(srv):
    t = now()
    assert refused(srv.port, "/hs" + q(hs({"sub": "a", "exp": t - 1})),
                   code="TOKEN_EXPIRED",
                   www='Bearer error="invalid_token", '
                       'error_description="token expired"') == \
        "token expired"
    assert refused(srv.port, "/hs" + q(hs({"sub": "a", "nbf": t + 20}))) == \
        "token is not valid yet"
    assert refused(srv.port, "/hs" + q(hs({"sub": "a", "iat": t + 20}))) == \
        "token is issued in the future"
    assert refused(srv.port, "/hs" + q(hs({"sub": "a", "exp": "tomorrow"})))\
        == "token exp, nbf or iat is not a number"
    client(srv.port, "/hs" + q(hs({"sub": "a", "nbf": t - 5, "iat": t - 5,
                                   "exp": t + 5}))).close()
    # no exp: the token does not expire
    client(srv.port, "/hs" + q(hs({"sub": "a"}))).close()


def test_leeway(srv):
    t = now()
    for c in ({"exp": t - 10}, {"nbf": t + 10}, {"iat": t + 10}):
        c["sub"] = "lee"
        client(srv.port, "/leeway" + q(hs(c))).close()
        refused(srv.port, "/hs" + q(hs(c)),
                code="TOKEN_EXPIRED" if "exp" in c else "UNAUTHORIZED")
    refused(srv.port, "/leeway" + q(hs({"sub": "a", "exp": t - 60})),
            code="TOKEN_EXPIRED")
    refused(srv.port, "/leeway" + q(hs({"sub": "a", "nbf": t + 60})))
    refused(srv.port, "/leeway" + q(hs({"sub": "a", "iat": t + 60})))


def test_issuer_and_audience(srv):
    ok = [{"iss": ISS, "aud": "realtime"},
          {"iss": ISS, "aud": ["api", "realtime"]}]
    bad = [({"iss": ISS + "/", "aud": "realtime"},
            "token issuer is not accepted"),
           ({"aud": "realtime"}, "token issuer is not accepted"),
           ({"iss": ISS, "aud": "api"}, "token audience is not accepted"),
           ({"iss": ISS, "aud": ["api", "web"]},
            "token audience is not accepted"),
           ({"iss": ISS}, "token audience is not accepted")]
    for extra in ok:
        # PyJWT itself would refuse to mint nothing; aud is ours to check
        client(srv.port, "/claims" + q(hs(claims(**extra)))).close()
    for extra, reason in bad:
        assert refused(srv.port, "/claims" + q(hs(claims(**extra)))) == \
            reason, extra
    # not configured: not checked
    client(srv.port, "/hs" + q(hs(claims(iss="x", aud="y")))).close()


def test_required_claims(srv):
    """realtime_jwt_require exp tenant: a token without one of them is
    refused like an invalid one (401, the error log names the claim);
    its value does not matter."""
    c = client(srv.port, "/require" + q(hs(claims(tenant="acme"))))
    c.close()
    c = client(srv.port, "/require" + q(hs(claims(tenant=0))))
    c.close()
    for extra in ({"exp": None, "tenant": "acme"}, {}):
        assert refused(srv.port, "/require" + q(hs(claims(**extra)))) == \
            "token lacks a required claim", extra
    log = srv.error_log()
    assert 'token refused: token lacks a required claim "exp"' in log
    assert 'token refused: token lacks a required claim "tenant"' in log
    # not configured elsewhere: a token without exp is fine there
    client(srv.port, "/hs" + q(hs(claims(exp=None)))).close()
    # the push API too
    body = json.dumps({"userId": "nobody", "topic": "t", "payload": 1})
    r = http_call(srv.port, "POST", "/push_require", body,
                  {"Content-Type": "application/json",
                   "Authorization": "Bearer " + hs(claims(exp=None))})
    assert r.status == 401, r
    r = http_call(srv.port, "POST", "/push_require", body,
                  {"Content-Type": "application/json",
                   "Authorization": "Bearer " + hs(claims())})
    assert r.status == 404, r        # authorized; the user is not here


def test_user_claim(srv):
    for c in ({"exp": now() + 60}, {"sub": ""}, {"sub": 42}):
        assert refused(srv.port, "/hs" + q(hs(c))) == \
            "token has no user claim"
    # realtime_jwt_user_claim uid; no realtime_user: the user is uid
    c = client(srv.port, "/uid" + q(hs({"uid": "u-77"})))
    assert c.user == "u-77"
    c.close()
    assert refused(srv.port, "/uid" + q(hs(claims("a")))) == \
        "token has no user claim"


# --------------------------------------------------------------------------
# where the token comes from
# --------------------------------------------------------------------------

def test_token_sources(srv):
    tok = hs(claims("src"))
    for path, extra in (
            ("/sources" + q(tok), None),
            ("/sources", [("Authorization", "Bearer " + tok)]),
            ("/sources", [("Authorization", "bearer  " + tok)]),
            ("/sources", [("Authorization", "BEARER " + tok)]),
            ("/sources", [("Cookie", "a=b; rt_token=" + tok)]),
            # the default: $arg_token $http_authorization
            ("/hs" + q(tok), None),
            ("/hs", [("Authorization", "Bearer " + tok)])):
        c = client(srv.port, path, extra)
        assert c.user == "src", (path, extra)
        c.close()
    # the default has no cookie
    refused(srv.port, "/hs", extra=[("Cookie", "rt_token=" + tok)],
            www="Bearer")
    # the first non-empty source is the token, even when it is bad
    refused(srv.port, "/sources?token=junk",
            extra=[("Authorization", "Bearer " + tok)])
    c = client(srv.port, "/sources?token=",
               [("Authorization", "Bearer " + tok)])
    c.close()


# --------------------------------------------------------------------------
# JWKS
# --------------------------------------------------------------------------

def test_jwks(srv, keys):
    rs = priv_pem(keys.jwks_rsa)
    ok = [jwt.encode(claims(), rs, "RS256", headers={"kid": "rsa-1"}),
          jwt.encode(claims(), rs, "PS384", headers={"kid": "rsa-1"}),
          jwt.encode(claims(), priv_pem(keys.jwks_ec), "ES256",
                     headers={"kid": "ec-1"}),
          jwt.encode(claims(), keys.jwks_secret, "HS256",
                     headers={"kid": "oct-1"}),
          # no kid: every key of the type is tried
          jwt.encode(claims(), rs, "RS512"),
          jwt.encode(claims(), keys.jwks_secret, "HS512"),
          jwt.encode(claims(), priv_pem(keys.rsa_other), "RS256",
                     headers={"kid": "rsa-rs256-only"})]
    for tok in ok:
        client(srv.port, "/jwks" + q(tok)).close()
    bad = [(jwt.encode(claims(), rs, "RS256", headers={"kid": "nope"}),
            "token kid is unknown"),
           # the right key, announced under another key's kid
           (jwt.encode(claims(), rs, "RS256", headers={"kid": "ec-1"}),
            "no key fits the token alg"),
           (jwt.encode(claims(), priv_pem(keys.rsa_other), "RS256",
                       headers={"kid": "rsa-1"}),
            "token signature is invalid"),
           # the key's JWK says RS256 only
           (jwt.encode(claims(), priv_pem(keys.rsa_other), "PS256",
                       headers={"kid": "rsa-rs256-only"}),
            "no key fits the token alg"),
           # a key for encryption is not loaded
           (jwt.encode(claims(), rs, "RS256", headers={"kid": "enc-1"}),
            "token kid is unknown"),
           (jwt.encode(claims(), keys.rsa_priv(), "RS256"),
            "token signature is invalid")]
    for tok, reason in bad:
        assert refused(srv.port, "/jwks" + q(tok)) == reason


# --------------------------------------------------------------------------
# failure modes
# --------------------------------------------------------------------------

def close_mode(port, path, code, reason):
    raw = RawWS.connect(port, path=path)
    try:
        f = raw.expect_close(code, reply=True)
        assert f.close_reason == reason.encode(), f
        assert raw.seen_before_close == [], raw.seen_before_close
    finally:
        raw.close()


def test_close_mode(srv):
    time.sleep(0.1)
    before = health(srv.port)["connections"]
    close_mode(srv.port, "/close", 4001, "token is missing")
    close_mode(srv.port, "/close?token=x.y.z", 4001,
               "token header is not a base64url JSON object")
    close_mode(srv.port, "/close" + q(hs(secret=SECRET[::-1])), 4001,
               "token signature is invalid")
    close_mode(srv.port, "/close" + q(hs(claims(ttl=-5))), 4002,
               "token expired")
    close_mode(srv.port, "/close_echo" + q(hs(claims(ttl=-5))), 4002,
               "token expired")
    close_mode(srv.port, "/close_echo", 4001, "token is missing")
    # never registered in the zone
    assert health(srv.port)["connections"] <= before
    c = client(srv.port, "/close" + q(hs(claims("closer"))))
    assert c.user == "closer"
    c.close()


def test_close_mode_ignores_early_frames(srv):
    """Frames sent right behind the handshake are not acted upon."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    from wsraw import build_frame, read_response, new_key
    key = new_key()
    s.sendall(ws_request_bytes(path="/close", key=key)
              + build_frame(OP_TEXT, b'{"event":"join","data":"x","id":1}'))
    resp = read_response(s)
    assert resp.status == 101, resp
    raw = RawWS(s, resp, key)
    raw.expect_close(4001, reply=True)
    assert raw.seen_before_close == []
    raw.close()


def test_inherited_from_server(srv):
    """Keys and the failure mode at server level reach every location."""
    raw = RawWS.connect(srv.port2, path="/ws")
    raw.expect_close(4001, reply=True)
    raw.close()
    refused(srv.port2, "/status_here", www="Bearer")
    c = client(srv.port2, "/ws" + q(hs(claims("inh"))))
    assert c.user == "inh"
    c.close()


def test_echo_location(srv):
    refused(srv.port, "/echo")
    raw = RawWS.connect(srv.port, path="/echo" + q(hs()))
    raw.send_text("hi")
    assert raw.recv_message() == (OP_TEXT, b"hi")
    raw.close()


# --------------------------------------------------------------------------
# rooms
# --------------------------------------------------------------------------

def assert_error(msg, code, id=None):
    assert msg["event"] == "error", msg
    assert msg["data"]["code"] == code, msg
    if id is not None:
        assert msg["id"] == id and msg["data"]["id"] == id, msg


def test_rooms_claim(srv):
    c = client(srv.port, "/rooms" + q(hs(claims(
        "r1", rooms=["battle:*", "lobby"]))))
    assert c.join("battle:42", id=1)["event"] == "joined"
    assert c.join("battle:", id=2)["event"] == "joined"
    assert c.join("lobby", id=3)["event"] == "joined"
    assert_error(c.join("lobby2", id=4), "FORBIDDEN", 4)
    assert_error(c.join("battle", id=5), "FORBIDDEN", 5)
    assert_error(c.join("arena:1"), "FORBIDDEN")
    assert_error(c.call({"event": "presence", "data": "arena:1", "id": 6}),
                 "FORBIDDEN", 6)
    assert c.call({"event": "presence", "data": "lobby"})["data"] == \
        {"room": "lobby", "users": ["r1"]}
    # the connection stays
    assert c.call({"event": "ping", "data": "x"})["event"] == "pong"
    c.close()

    # "*" alone: every room; one string: one pattern
    c = client(srv.port, "/rooms" + q(hs(claims("r2", rooms=["*"]))))
    assert c.join("anything")["event"] == "joined"
    c.close()
    c = client(srv.port, "/rooms" + q(hs(claims("r3", rooms="solo"))))
    assert c.join("solo")["event"] == "joined"
    assert_error(c.join("solo2"), "FORBIDDEN")
    c.close()

    # the claim configured but absent (or not strings): no room at all
    for r in (None, 7, [1, 2]):
        c = client(srv.port, "/rooms" + q(hs(claims("r4", rooms=r))))
        assert_error(c.join("lobby"), "FORBIDDEN")
        c.close()

    # without the directive every room is allowed
    c = client(srv.port, "/hs" + q(hs(claims("r5", rooms=["x"]))))
    assert c.join("lobby")["event"] == "joined"
    c.close()


# --------------------------------------------------------------------------
# refresh and expiry of open sockets
# --------------------------------------------------------------------------

def refresh(c, token, id=None):
    m = {"event": "refresh", "data": {"token": token}}
    if id is not None:
        m["id"] = id
    return c.call(m)


def test_expiry_closes_open_socket(srv):
    c = client(srv.port, "/hs" + q(hs(claims("exp", ttl=2))))
    t0 = time.monotonic()
    f = c.raw.expect_close(4002, timeout=5, reply=True)
    assert f.close_reason == b"token expired"
    assert 0.5 < time.monotonic() - t0 < 3.5
    c.raw.close()
    # echo sockets too
    raw = RawWS.connect(srv.port, path="/echo" + q(hs(claims(ttl=1))))
    raw.expect_close(4002, timeout=4, reply=True)
    raw.close()


def test_refresh_extends(srv):
    c = client(srv.port, "/hs" + q(hs(claims("ref", ttl=2))))
    exp = now() + 4
    r = refresh(c, hs({"sub": "ref", "exp": exp}), id=7)
    assert r == {"event": "refreshed", "data": {"exp": exp}, "id": 7}, r
    # past the first token's exp the socket lives
    c.assert_silent(timeout=2.5)
    assert c.call({"event": "ping"})["event"] == "pong"
    # and the new exp ends it
    c.raw.expect_close(4002, timeout=4, reply=True)
    c.raw.close()


def test_refresh_sooner_exp_and_no_exp(srv):
    c = client(srv.port, "/hs" + q(hs(claims("soon", ttl=300))))
    r = refresh(c, hs({"sub": "soon"}))
    assert r == {"event": "refreshed", "data": {"exp": None}}, r
    r = refresh(c, hs({"sub": "soon", "exp": now() + 1}))
    assert r["event"] == "refreshed"
    c.raw.expect_close(4002, timeout=4, reply=True)
    c.raw.close()


def test_refresh_errors_keep_the_socket(srv):
    c = client(srv.port, "/hs" + q(hs(claims("keep", ttl=300))))
    assert_error(refresh(c, "junk", id=1), "UNAUTHORIZED", 1)
    assert_error(refresh(c, hs(claims("keep"), secret="x" * 32), id=2),
                 "UNAUTHORIZED", 2)
    assert_error(refresh(c, hs(claims("keep", ttl=-10)), id=3),
                 "TOKEN_EXPIRED", 3)
    assert_error(refresh(c, forge({"alg": "none"}, claims("keep"))),
                 "UNAUTHORIZED")
    big = hs(claims("keep", pad="x" * 48000))
    r = refresh(c, big, id=4)
    assert_error(r, "UNAUTHORIZED", 4)
    assert r["data"]["message"] == "token is too long"
    assert_error(c.call({"event": "refresh", "data": {}}), "BAD_REQUEST")
    assert c.call({"event": "ping"})["event"] == "pong"
    c.close()


def test_refresh_other_user_closes_4003(srv):
    c = client(srv.port, "/hs" + q(hs(claims("me"))))
    c.send({"event": "refresh", "data": {"token": hs(claims("you"))}})
    f = c.raw.expect_close(4003, reply=True)
    assert f.close_reason == b"token of another user"
    c.raw.close()


def test_refresh_updates_rooms(srv):
    c = client(srv.port, "/rooms" + q(hs(claims("rr", rooms=["a:*"]))))
    assert_error(c.join("b:1"), "FORBIDDEN")
    assert refresh(c, hs(claims("rr", rooms=["b:*"])))["event"] == \
        "refreshed"
    assert c.join("b:1")["event"] == "joined"
    assert_error(c.join("a:1"), "FORBIDDEN")
    c.close()


def test_refresh_without_jwt(srv):
    c = client(srv.port, "/plain?user=p")
    assert_error(refresh(c, hs()), "INVALID_EVENT")
    c.close()


# --------------------------------------------------------------------------
# push API
# --------------------------------------------------------------------------

def test_push_requires_jwt(srv):
    body = {"userId": "pushee", "topic": "t", "payload": 1}
    c = client(srv.port, "/hs" + q(hs(claims("pushee"))))

    r = http_call(srv.port, "POST", "/push", body)
    assert r.status == 401 and r.json()["code"] == "UNAUTHORIZED", r
    assert r.header("www-authenticate") == "Bearer", r
    r = http_call(srv.port, "POST", "/push", body,
                  {"Authorization": "Bearer junk"})
    assert r.status == 401 and r.json()["error"] == \
        "token is not a compact JWS", r
    assert r.header("www-authenticate") == 'Bearer error="invalid_token"'
    r = http_call(srv.port, "POST", "/push", body,
                  {"Authorization": "Bearer " + hs(claims(ttl=-5))})
    assert r.status == 401 and r.json()["code"] == "TOKEN_EXPIRED", r
    # the query is not a token source on a push location by default
    r = http_call(srv.port, "POST", "/push?token=" + hs(), body)
    assert r.status == 401, r
    c.assert_silent(0.2)

    r = http_call(srv.port, "POST", "/push", body,
                  {"Authorization": "Bearer " + hs(claims("backend"))})
    assert r.status == 200 and r.json()["delivered"] == 1, r
    assert c.recv() == {"event": "t", "data": 1}

    r = http_call(srv.port, "POST", "/push_hdr", body,
                  {"X-Token": hs(claims("backend"))})
    assert r.status == 200, r
    assert c.recv() == {"event": "t", "data": 1}
    r = http_call(srv.port, "POST", "/push_hdr", body,
                  {"Authorization": "Bearer " + hs(claims("backend"))})
    assert r.status == 401, r
    c.close()


# --------------------------------------------------------------------------
# variables
# --------------------------------------------------------------------------

def test_variables(srv):
    tok = hs(claims("vsub", uid="u-42", roles=["a", "b"], level=3,
                    admin=False))
    c = client(srv.port, "/vars" + q(tok))
    assert c.user == "u-42"
    c.close()
    refused(srv.port, "/vars?token=bad")
    log = srv.prefix / "jwt_access.log"
    assert wait_until(lambda: log.exists() and len(
        log.read_text().splitlines()) >= 2, 3)
    lines = log.read_text().splitlines()
    # escape=none logs a missing value as nothing, not "-"
    assert '101|vsub|u-42|["a","b"]|3|false|' in lines, lines
    assert "401||||||" in lines, lines


def test_claim_variable_case(srv):
    """nginx lowercases variable names: $realtime_jwt_claim_uid finds
    "UID" when there is no "uid"."""
    c = client(srv.port, "/vars" + q(hs(claims("x", UID="U-1"))))
    assert c.user == "U-1"
    c.close()


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

def conf_with(tmp_path, line, extra=""):
    ngx = Nginx(tmp_path / "t")
    ngx.write_conf("""
        realtime_zone z 1m;
        server {
            listen 127.0.0.1:%%PORT%%;
            location /ws { realtime z; %s %s }
        }""" % (line, extra))
    return ngx.test_conf()


def test_nginx_t_bad_keys(tmp_path, keys):
    _require_module()
    d = tmp_path
    (d / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n"
                                   "-----END PUBLIC KEY-----\n")
    (d / "private.pem").write_bytes(priv_pem(keys.rsa))
    (d / "notjson.jwks").write_text("{keys: [")
    (d / "nokeys.jwks").write_text('{"k": []}')
    (d / "badn.jwks").write_text(json.dumps({"keys": [
        {"kty": "RSA", "kid": "x", "n": "***", "e": "AQAB"}]}))
    (d / "badcrv.jwks").write_text(json.dumps({"keys": [
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}]}))
    (d / "offcurve.jwks").write_text(json.dumps({"keys": [
        {"kty": "EC", "crv": "P-256", "x": b64u(b"\1" * 32),
         "y": b64u(b"\2" * 32)}]}))
    (d / "enconly.jwks").write_text(json.dumps({"keys": [
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}))
    (d / "empty.secret").write_text("\n")
    cases = [
        ("realtime_jwt_key file=%s/missing.pem;" % d,
         r'open\(\) "%s/missing.pem" failed' % d),
        ("realtime_jwt_key file=%s/garbage.pem;" % d,
         r'"%s/garbage.pem": has no PEM public key' % d),
        ("realtime_jwt_key file=%s/private.pem;" % d,
         r'"%s/private.pem": is a private key' % d),
        ("realtime_jwt_key jwks=%s/notjson.jwks;" % d,
         r'JWKS "%s/notjson.jwks" is not JSON' % d),
        ("realtime_jwt_key jwks=%s/nokeys.jwks;" % d,
         r'JWKS "%s/nokeys.jwks" has no "keys" array' % d),
        ("realtime_jwt_key jwks=%s/badn.jwks;" % d,
         r'JWKS "%s/badn.jwks", key 0: has a member that is not '
         r'base64url' % d),
        ("realtime_jwt_key jwks=%s/badcrv.jwks;" % d,
         r'JWKS "%s/badcrv.jwks", key 0: has a "crv" other than' % d),
        ("realtime_jwt_key jwks=%s/offcurve.jwks;" % d,
         r'JWKS "%s/offcurve.jwks", key 0: is not a valid EC public key'
         % d),
        ("realtime_jwt_key jwks=%s/enconly.jwks;" % d,
         r'JWKS "%s/enconly.jwks" has no signature key' % d),
        ("realtime_jwt_key secret_file=%s/empty.secret;" % d,
         r'secret file "%s/empty.secret" is empty' % d),
        ("realtime_jwt_key key=%s;" % SECRET, r'invalid parameter'),
        ("realtime_jwt_key secret=%s; realtime_jwt_alg none;" % SECRET,
         r'unsupported algorithm "none"'),
        ("realtime_jwt_key secret=%s; realtime_jwt_alg RS256;" % SECRET,
         r'no realtime_jwt_key fits realtime_jwt_alg'),
        ("realtime_jwt_key secret=%s; realtime_auth_failure drop;" % SECRET,
         r'invalid value "drop"'),
    ]
    for line, msg in cases:
        msg = msg.replace(str(d), re.escape(str(d)))
        rc, out = conf_with(d, line)
        assert rc != 0, (line, out)
        assert re.search(msg, out), (line, out)
        assert "[emerg]" in out, out
    # and good ones pass, relative paths from the conf prefix included
    (d / "t").mkdir(exist_ok=True)
    (d / "t" / "rel.pub").write_bytes(pub_pem(keys.rsa))
    (d / "s.secret").write_text(SECRET + "\n")
    for line in ("realtime_jwt_key file=%s;" % (keys.dir / "ec521.pub"),
                 "realtime_jwt_key file=rel.pub;",
                 "realtime_jwt_key jwks=%s;" % (keys.dir / "jwks.json"),
                 "realtime_jwt_key secret_file=%s/s.secret;" % d,
                 "realtime_jwt_key secret=short; realtime_jwt_alg HS256 "
                 "RS256;"):
        rc, out = conf_with(d, line)
        assert rc == 0, (line, out)
    rc, out = conf_with(d, "realtime_jwt_key secret=short;")
    assert "a secret of 5 bytes is weak" in out, out


def test_key_rotation_on_reload(tmp_path, keys):
    _require_module()
    ngx = Nginx(tmp_path / "rot")
    pub = tmp_path / "current.pub"
    pub.write_bytes(pub_pem(keys.rsa))
    ngx.start("""
        realtime_zone z 1m;
        server {
            listen 127.0.0.1:%%PORT%%;
            location /ws { realtime z; realtime_jwt_key file=%s; }
        }""" % pub)
    try:
        old = jwt.encode(claims("o"), keys.rsa_priv(), "RS256")
        new = jwt.encode(claims("n"), priv_pem(keys.rsa_other), "RS256")
        client(ngx.port, "/ws" + q(old)).close()
        refused(ngx.port, "/ws" + q(new))
        kept = client(ngx.port, "/ws" + q(old))
        pub.write_bytes(pub_pem(keys.rsa_other))
        ngx.reload(wait_old_exit=False)
        assert wait_until(lambda: http_request(ngx.port, ws_request_bytes(
            path="/ws" + q(old))).status == 401, 5)
        client(ngx.port, "/ws" + q(new)).close()
        # a broken key file fails the reload; the old workers stay
        pub.write_text("broken")
        rc, out = ngx.test_conf()
        assert rc != 0 and str(pub) in out, out
        kept.raw.expect_close(1001, timeout=8, reply=True)
    finally:
        ngx.quit()
    # nginx -t logs its [emerg] into the same file
    bad = [l for l in ngx.error_log().splitlines()
           if STRICT_BAD_LOG_RE.search(l)
           and "has no PEM public key" not in l]
    assert not bad, bad
