"""The seeds' flows against their conf-examples, as the seeds' own
clients drive them: each test takes conf-examples/<seed>.conf as it is
(only its ports, the backend's address and the token key are the test's),
two workers, a small backend written here standing in for the seed's
services, and the npm socket.io-client.
"""

import base64
import hashlib
import hmac
import json
import pathlib
import re
import time

import pytest

from conftest import http_call
from sioclient import SioDriver, node_available
from test_forward import Backend

pytestmark = [
    pytest.mark.asan,
    pytest.mark.skipif(not node_available(), reason="node missing"),
]

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "seed-test-secret-seed-test-secret"


def seed_http(name, port, backend_port, key=None):
    """The http{} body of conf-examples/<name>, on the test's ports."""
    text = (ROOT / "conf-examples" / name).read_text()
    body = text[text.index("http {") + len("http {"):text.rindex("}")]
    lines = [l for l in body.splitlines()
             if not re.search(r"^\s*(access_log|\w+_temp_path)\s", l)]
    body = "\n".join(lines)
    body = re.sub(r"listen 127\.0\.0\.1:\d+", "listen 127.0.0.1:%PORT%",
                  body)
    body = re.sub(r"server 127\.0\.0\.1:\d+;",
                  "server 127.0.0.1:%d;" % backend_port, body)
    if key:
        body = re.sub(r"realtime_jwt_key [^;]+;", key, body)
    return body


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def arena_token(sub, exp_in=600):
    claims = {"sub": sub, "exp": int(time.time()) + exp_in,
              "iss": "https://auth.arena.example.com", "aud": "battle-arena"}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


def test_battle_arena(rt, backend):
    rt.start(seed_http("battle-arena.conf", 0, backend.port,
                       key="realtime_jwt_key secret=%s;" % SECRET))
    url = "http://127.0.0.1:%d" % rt.port
    backend.replies["matchmaking"] = (200, lambda b: (200, {
        "ack": {"queued": True, "userId": b["data"]["userId"]}}))
    backend.replies["submit"] = (200, lambda b: (200, {
        "publish": [{"room": "battle:%s" % b["data"]["battleId"],
                     "event": "battle_result",
                     "data": {"winner": b["user"], "scores": {b["user"]: 100},
                              "ratingChanges": {b["user"]: 12}}}],
        "ack": {"accepted": True}}))

    with SioDriver() as drv:
        for p in ("p1", "p2"):
            drv.connect(p, url, auth={"token": "Bearer " + arena_token(p)})

        # bad and expired tokens: connect_error, the others unharmed
        res = drv.connect("x", url, auth={"token": "Bearer junk"},
                          check=False)
        assert res["ok"] is False and res["data"] == {"code": "UNAUTHORIZED"}
        res = drv.connect("y", url, check=False,
                          auth={"token": arena_token("p3", exp_in=-99)})
        assert res["data"] == {"code": "TOKEN_EXPIRED"}

        # matchmaking through the backend; match_found pushed to users
        assert drv.emit("p1", "join_matchmaking", {"userId": "p1"}) == \
            [{"queued": True, "userId": "p1"}]
        name, headers, body = backend.requests[-1]
        assert name == "matchmaking" and body["user"] == "p1"
        assert headers["X-User"] == "p1"
        for me, other in (("p1", "p2"), ("p2", "p1")):
            r = http_call(rt.port, "POST", "/internal/push", body={
                "userId": me, "topic": "match_found",
                "payload": {"battleId": "42", "opponent": other}})
            assert r.status == 200, r
            assert drv.wait(me, "match_found") == \
                [[{"battleId": "42", "opponent": other}]]

        # the battle room, the code relay, the start and the result
        for p in ("p1", "p2"):
            assert drv.emit(p, "join_battle", {"battleId": "42"})[0][
                "room"] == "battle:42"
        r = http_call(rt.port, "POST", "/internal/push", body={
            "room": "battle:42", "topic": "battle_started",
            "payload": {"battleId": "42", "problem": "two-sum"}})
        assert r.json()["delivered"] == 2
        for p in ("p1", "p2"):
            assert drv.wait(p, "battle_started")[0][0]["problem"] == "two-sum"

        drv.emit("p1", "code_update", {"battleId": "42", "code": "def f"},
                 ack=False)
        assert drv.wait("p2", "code_update") == \
            [[{"battleId": "42", "code": "def f"}]]

        assert drv.emit("p1", "submit_code", {
            "battleId": "42", "code": "def f(): pass",
            "language": "python"}) == [{"accepted": True}]
        for p in ("p1", "p2"):
            assert drv.wait(p, "battle_result")[0][0]["winner"] == "p1"
        time.sleep(0.2)
        assert [e for e in drv.events("p1") if e[0] == "code_update"] == []

        # errors: a missing battleId, the judge down
        assert drv.emit("p2", "join_battle", {})[0]["error"]["code"] == \
            "BAD_REQUEST"
        backend.replies["submit"] = (503, b"")
        assert drv.emit("p2", "submit_code", {"battleId": "42"})[0][
            "error"]["code"] == "BACKEND_UNAVAILABLE"

        assert drv.emit("p2", "leave_battle", {"battleId": "42"}) == \
            [{"room": "battle:42", "members": 1}]


def test_leaderboard(rt, backend):
    standings = [{"user": "ann", "rank": 1, "score": 990},
                 {"user": "ben", "rank": 2, "score": 870}]
    backend.replies["subscribe"] = (200, {
        "join": ["leaderboard:global"],
        "emit": [{"event": "leaderboard:initial", "data": standings}]})
    rt.start(seed_http("leaderboard.conf", 0, backend.port))
    url = "http://127.0.0.1:%d" % rt.port

    with SioDriver() as drv:
        # the ADR's client: default transports (polling, then upgrade)
        for u in ("ann", "ben", "cat"):
            drv.connect(u, url, query={"user": u})
            drv.emit(u, "leaderboard:subscribe", ack=False)
            assert drv.wait(u, "leaderboard:initial") == [[standings]]
        update = {"user": "cat", "rank": 2, "score": 900}
        r = http_call(rt.port, "POST", "/publish",
                      headers={"Authorization": "Bearer change-me"},
                      body={"room": "leaderboard:global",
                            "topic": "leaderboard:update",
                            "payload": update})
        assert r.status == 200 and r.json()["delivered"] == 3, r
        for u in ("ann", "ben", "cat"):
            assert drv.wait(u, "leaderboard:update") == [[update]]

        drv.emit("cat", "leaderboard:unsubscribe", ack=False)
        time.sleep(0.2)
        r = http_call(rt.port, "POST", "/publish",
                      headers={"Authorization": "Bearer change-me"},
                      body={"room": "leaderboard:global",
                            "topic": "leaderboard:update",
                            "payload": update})
        assert r.json()["delivered"] == 2
        # the scoring backend down: the subscribe still gets one answer
        backend.replies["subscribe"] = (500, b"")
        assert drv.emit("cat", "leaderboard:subscribe")[0]["error"][
            "code"] == "BACKEND_UNAVAILABLE"


def presence_token(user):
    secret = "replace-me-with-the-vault-jwt-secret-0001"
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "userId": user,
                           "exp": int(time.time()) + 600}).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def lists_of(client, timeout=3.0):
    """The user:list events a native client got within timeout."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = client.recv(timeout=max(0.05, deadline - time.monotonic()))
        except Exception:
            break
        if ev.get("event") == "user:list":
            got.append(sorted(ev["data"]))
    return got


def until_list(client, users, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = client.recv(timeout=max(0.05, deadline - time.monotonic()))
        if ev.get("event") == "user:list" and sorted(ev["data"]) == users:
            return True
    return False


def test_presence_game(rt, backend):
    rt.start(seed_http("presence-game.conf", 0, backend.port))

    def client(user):
        return rt.client(path="/ws?token=" + presence_token(user))

    a = client("amy")
    assert until_list(a, ["amy"])
    b = client("bo")
    assert until_list(a, ["amy", "bo"]) and until_list(b, ["amy", "bo"])

    # a second tab of a user changes nothing but gets the list too
    b2 = client("bo")
    assert until_list(b2, ["amy", "bo"])

    # game signaling through a room
    for c in (a, b):
        c.send({"event": "join_game", "data": {"gameId": "g1"}, "id": 1})
        while c.recv()["event"] != "joined":
            pass
    a.send({"event": "game_event", "data": {"gameId": "g1", "move": "e4"}})
    ev = b.recv()
    while ev["event"] != "game_event":
        ev = b.recv()
    assert ev["data"]["move"] == "e4" and ev["from"] == "amy"

    # a connect storm: the list is coalesced, the last one is whole
    storm = [client("u%02d" % i) for i in range(30)]
    got = lists_of(a, timeout=2.0)
    assert 1 <= len(got) <= 6, len(got)
    assert got[-1] == sorted(["amy", "bo"] + ["u%02d" % i
                                              for i in range(30)])
    for c in storm:
        c.close()
    b.close()
    b2.close()
    assert until_list(a, ["amy"])


def test_judge(rt, backend):
    rt.start(seed_http("judge-sendpayload.conf", 0, backend.port))
    url = "http://127.0.0.1:%d" % rt.port
    with SioDriver() as drv:
        drv.connect("j", url, transports=["websocket", "polling"])
        drv.connect("k", url)
        assert drv.emit("j", "setUserId", "user_123") == \
            [{"userId": "user_123"}]
        drv.emit("k", "setUserId", "user_456", ack=False)
        assert drv.wait("k", "setUserId") == [[{"userId": "user_456"}]]

        # the judge's backend: /sendPayload to a user
        r = http_call(rt.port, "POST", "/sendPayload", body={
            "userId": "user_123", "topic": "submissionUpdate",
            "payload": {"submissionId": "sub_1", "status": "IN_PROGRESS",
                        "testCase": 3, "totalTestCases": 10}})
        assert r.status == 200 and r.json() == {
            "message": "Payload sent successfully", "delivered": 1}, r
        assert drv.wait("j", "submissionUpdate")[0][0]["testCase"] == 3
        r = http_call(rt.port, "POST", "/sendPayload", body={
            "userId": "nobody", "topic": "evaluationComplete",
            "payload": {}})
        assert r.status == 404, r

        # getConnectionId answers connectionId
        drv.emit("k", "getConnectionId", "user_123", ack=False)
        [[conn]] = drv.wait("k", "connectionId")
        assert conn and conn.isdigit()
        drv.emit("k", "getConnectionId", "ghost", ack=False)
        assert drv.wait("k", "connectionId") == [[None]]

        # a bad user id: an error event, the socket stays
        drv.emit("k", "setUserId", "", ack=False)
        assert drv.wait("k", "error")[0][0]["code"] == "BAD_REQUEST"
        assert drv.state("k")["connected"] is True
