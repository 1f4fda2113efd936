"""The seeds' flows against their conf-examples, as the seeds' own
clients drive them: each test takes conf-examples/<seed>.conf as it is
(only its ports, the backend's address and the token key are the test's),
two workers, a small backend written here standing in for the seed's
services, and the npm socket.io-client.
"""

import base64
import datetime
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


def seed_http(name, port, backend_port, key=None, subs=()):
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
    for old, new in subs:
        body = body.replace(old, new)
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


def contest_token(sub, exp_in=600):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub,
                           "exp": int(time.time()) + exp_in}).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def test_contest(rt, backend):
    contests = {"c1": {"title": "Weekly Contest #42", "question": 3}}

    def join(body):
        cid = (body["data"] or {}).get("contestId")
        if cid not in contests:
            return 404, {"error": {"code": "CONTEST_NOT_FOUND",
                                   "message": "no contest %s" % cid}}
        return 200, {"join": ["contest:%s" % cid],
                     "emit": [{"event": "contest_joined",
                               "data": dict(contests[cid], contestId=cid)}]}

    backend.replies["join"] = (200, join)
    backend.replies["submit"] = (200, lambda b: (200, {"emit": [{
        "event": "submission_result",
        "data": {"questionId": b["data"]["questionId"], "correct": True,
                 "user": b["user"]}}]}))
    backend.replies["resync"] = (200, lambda b: (200, {"emit": [{
        "event": "state_snapshot",
        "data": {"contests": b["rooms"], "question": 3}}]}))
    rt.start(seed_http("contest.conf", 0, backend.port,
                       key="realtime_jwt_key secret=%s;" % SECRET,
                       subs=[("realtime_jwt_alg RS256;",
                              "realtime_jwt_alg HS256;")]))

    def client(token):
        from wsraw import RawWS
        return RawWS.connect(rt.port, path="/ws/contest?token=" + token)

    def next_event(raw, name, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, payload = raw.recv_message(
                timeout=max(0.05, deadline - time.monotonic()))
            ev = json.loads(payload)
            # the seed's envelope: {event, data, timestamp}, an ISO time;
            # a room's names the room too
            assert [k for k in ev if k != "room"][:2] == ["event", "data"] \
                and list(ev)[-1] == "timestamp", ev
            stamp = datetime.datetime.strptime(ev["timestamp"],
                                               "%Y-%m-%dT%H:%M:%S.%fZ")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                ev["timestamp"]), ev
            now = datetime.datetime.utcnow()
            assert abs((now - stamp).total_seconds()) < 5, (ev, now)
            if ev["event"] == name:
                return ev
        raise AssertionError("no %s" % name)

    # a bad token: 4001; an expired one: 4002 (the contest clients' codes)
    for token, code in (("junk", 4001),
                        (contest_token("late", exp_in=-300), 4002)):
        raw = client(token)
        f = raw.recv_frame(timeout=3)
        assert f.opcode == 8 and f.close_code == code, f
        raw.close()

    a = client(contest_token("alice"))
    b = client(contest_token("bob"))
    for raw in (a, b):
        raw.send_text(json.dumps({"event": "join_contest",
                                  "data": {"contestId": "c1"}}))
        ev = next_event(raw, "contest_joined")
        assert ev["data"]["title"] == "Weekly Contest #42"

    a.send_text(json.dumps({"event": "join_contest",
                            "data": {"contestId": "nope"}}))
    ev = next_event(a, "error")
    assert ev["data"]["code"] == "CONTEST_NOT_FOUND"

    # the backend broadcasts to the contest's room
    r = http_call(rt.port, "POST", "/internal/broadcast", body={
        "room": "contest:c1", "topic": "question_broadcast",
        "payload": {"questionId": "q3", "text": "2+2?"}})
    assert r.json()["delivered"] == 2, r
    for raw in (a, b):
        assert next_event(raw, "question_broadcast")["data"]["text"] == \
            "2+2?"

    a.send_text(json.dumps({"event": "submit_answer",
                            "data": {"questionId": "q3", "answer": "4"}}))
    ev = next_event(a, "submission_result")
    assert ev["data"] == {"questionId": "q3", "correct": True,
                          "user": "alice"}

    b.send_text(json.dumps({"event": "resync", "data": {}}))
    ev = next_event(b, "state_snapshot")
    assert ev["data"] == {"contests": ["contest:c1"], "question": 3}

    a.send_text(json.dumps({"event": "ping", "data": {"t": 1}}))
    assert next_event(a, "pong")["data"] == {"t": 1}
    a.close()
    b.close()
