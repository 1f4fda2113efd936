"""The push API (realtime_push): POST JSON to users, rooms, everyone.

Receivers are spread over both workers (welcome pid); every answer is
checked exactly, and so is who got what (and who got nothing).
"""

import time

import pytest

from conftest import rt_http

pytestmark = pytest.mark.asan     # also run by make integration-asan

OK = "Payload sent successfully"

PUSH_LOCATIONS = """
        location = /push_secret { realtime_push rt;
                                  realtime_push_secret s3cr3t; }
        location = /push_small { realtime_push rt;
                                 client_max_body_size 1k; }
        location = /push_deny { realtime_push rt; deny all; }
        location = /push_allow { realtime_push rt;
                                 allow 127.0.0.1; deny all; }
"""

MISSING = {"error": "Missing topic, payload or userId", "code": "BAD_REQUEST"}
NOT_FOUND = {"error": "User not connected", "code": "USER_NOT_FOUND"}


def start(rt):
    return rt.start(rt_http(locations=PUSH_LOCATIONS, presence="off"))


def ok(n):
    return {"message": OK, "delivered": n}


def assert_answer(r, status, body):
    assert r.status == status, r
    assert r.json() == body, r


def assert_json_error(r, status, code):
    assert r.status == status, r
    doc = r.json()
    assert set(doc) == {"error", "code"}, doc
    assert isinstance(doc["error"], str) and doc["error"], doc
    assert doc["code"] == code, doc


def all_silent(clients, timeout=0.3):
    time.sleep(timeout)
    for c in clients:
        c.assert_silent(0.01)


def user_on_both_workers(rt, user):
    pa, pb = rt.two_pids()
    return [rt.client_on(pa, user), rt.client_on(pb, user)]


# --------------------------------------------------------------------------


def test_push_to_user_on_every_worker(rt):
    start(rt)
    u1 = user_on_both_workers(rt, "u1")
    u2 = rt.client("u2")
    assert {c.pid for c in u1} == set(rt.two_pids())

    r = rt.push({"userId": "u1", "topic": "submissionUpdate",
                 "status": "X", "n": 1})
    assert_answer(r, 200, ok(2))
    for c in u1:
        assert c.recv() == {"event": "submissionUpdate",
                            "data": {"status": "X", "n": 1}}, c

    # the other fields are the data, however nested; none -> {}
    r = rt.push({"userId": "u1", "topic": "t", "a": {"b": [1, None, "c"]},
                 "except": "nobody"})
    assert_answer(r, 200, ok(2))
    for c in u1:
        assert c.recv() == {"event": "t", "data": {"a": {"b": [1, None,
                                                               "c"]}}}
    assert_answer(rt.push({"userId": "u1", "topic": "bare"}), 200, ok(2))
    for c in u1:
        assert c.recv() == {"event": "bare", "data": {}}

    # "payload" is the data exactly, whatever its type
    for payload in ({"status": "Accepted", "score": 100}, [1, 2, {"x": 3}],
                    "text", 0, False, None):
        r = rt.push({"userId": "u1", "topic": "p", "payload": payload,
                     "status": "ignored"})
        assert_answer(r, 200, ok(2))
        for c in u1:
            assert c.recv() == {"event": "p", "data": payload}, payload

    # "event" spells "topic" too; charset in Content-Type is fine
    r = rt.push({"userId": "u2", "event": "alias", "payload": 1},
                content_type="application/json; charset=utf-8")
    assert_answer(r, 200, ok(1))
    assert u2.recv() == {"event": "alias", "data": 1}
    all_silent(u1 + [u2])


def test_push_unknown_user_and_missing_fields(rt):
    start(rt)
    u1 = rt.client("u1")
    assert_answer(rt.push({"userId": "ghost", "topic": "t", "payload": 1}),
                  404, NOT_FOUND)
    for body in ({"userId": "u1", "payload": 1},            # no topic
                 {"topic": "t", "payload": 1},              # no target
                 {"userId": "u1", "topic": "", "payload": 1},
                 {"userId": "u1", "topic": 5, "payload": 1},
                 {"userId": 7, "topic": "t", "payload": 1},
                 {"broadcast": False, "topic": "t", "payload": 1},
                 {}):
        assert_answer(rt.push(body), 400, MISSING)
    # a bad room name is a 400 BAD_REQUEST too
    assert_json_error(rt.push({"room": "bad room", "topic": "t"}), 400,
                      "BAD_REQUEST")
    all_silent([u1])


def test_push_room_broadcast_except(rt):
    start(rt)
    u1 = user_on_both_workers(rt, "u1")
    u2 = user_on_both_workers(rt, "u2")
    u3 = rt.client("u3")
    u4 = rt.client("u4")            # connected, not in the room
    members = u1 + u2 + [u3]
    everyone = members + [u4]
    R = "battle:42"
    for c in members:
        assert c.join(R)["event"] == "joined"
    rt.wait_settled(6)

    def expect(clients, event, data, room=None):
        for c in clients:
            got = c.recv()
            if room:
                # a room's push says which room, as a client's publish does
                assert got == {"event": event, "room": room, "data": data}, c
                assert list(got) == ["event", "room", "data"], got
            else:
                assert got == {"event": event, "data": data}, c

    assert_answer(rt.push({"room": R, "topic": "tick", "payload": 1}),
                  200, ok(5))
    expect(members, "tick", 1, R)
    all_silent(everyone, 0.1)

    assert_answer(rt.push({"room": R, "topic": "tick", "payload": 2,
                           "except": "u2"}), 200, ok(3))
    expect(u1 + [u3], "tick", 2, R)
    all_silent(everyone, 0.1)

    # the shape clients receive is a push too: "data" with "event"
    assert_answer(rt.push({"room": R, "event": "tick", "data": {"n": 1}}),
                  200, ok(5))
    expect(members, "tick", {"n": 1}, R)
    all_silent(everyone, 0.1)

    assert_answer(rt.push({"broadcast": True, "topic": "all",
                           "payload": {"v": 3}}), 200, ok(6))
    expect(everyone, "all", {"v": 3})
    all_silent(everyone, 0.1)

    assert_answer(rt.push({"broadcast": True, "topic": "all",
                           "payload": 4, "except": "u1"}), 200, ok(4))
    expect(u2 + [u3, u4], "all", 4)
    all_silent(everyone, 0.1)

    assert_answer(rt.push({"broadcast": True, "topic": "all",
                           "payload": 5, "except": "nobody"}), 200, ok(6))
    expect(everyone, "all", 5)

    # a room nobody is in
    assert_answer(rt.push({"room": "empty:1", "topic": "t", "payload": 0}),
                  200, ok(0))
    all_silent(everyone)


def test_push_batch(rt):
    start(rt)
    a = rt.client("a")
    b = rt.client("b")
    assert b.join("r")["event"] == "joined"
    r = rt.push([
        {"userId": "a", "topic": "one", "payload": 1},
        {"userId": "ghost", "topic": "two", "payload": 2},
        {"userId": "a", "payload": 3},
        "not an object",
        {"room": "r", "topic": "three", "payload": 3},
        {"broadcast": True, "topic": "four", "payload": 4, "except": "b"},
    ])
    assert_answer(r, 200, {"results": [
        {"message": OK, "delivered": 1, "status": 200},
        {"error": "User not connected", "code": "USER_NOT_FOUND",
         "status": 404},
        dict(MISSING, status=400),
        dict(MISSING, status=400),
        {"message": OK, "delivered": 1, "status": 200},
        {"message": OK, "delivered": 1, "status": 200},
    ]})
    assert a.recv() == {"event": "one", "data": 1}
    assert a.recv() == {"event": "four", "data": 4}
    assert b.recv() == {"event": "three", "room": "r", "data": 3}
    # an empty batch is a mistake, said so
    assert_json_error(rt.push([]), 400, "BAD_REQUEST")
    all_silent([a, b])


def test_push_event_and_data(rt):
    """{"event", "data"} is the payload's shape with "event" as
    "payload" is with "topic"; other fields stay the judge's form."""
    start(rt)
    a = rt.client("a")
    assert_answer(rt.push({"userId": "a", "event": "tick",
                           "data": {"n": 1}}), 200, ok(1))
    assert a.recv() == {"event": "tick", "data": {"n": 1}}
    assert_answer(rt.push({"userId": "a", "event": "tick",
                           "payload": 2, "data": 3}), 200, ok(1))
    assert a.recv() == {"event": "tick", "data": 2}
    # with "topic", "data" is one of the other fields, as before
    assert_answer(rt.push({"userId": "a", "topic": "j", "data": 4,
                           "status": "ok"}), 200, ok(1))
    assert a.recv() == {"event": "j", "data": {"data": 4, "status": "ok"}}
    # "event" without "data": the other fields
    assert_answer(rt.push({"userId": "a", "event": "k", "x": 5}), 200,
                  ok(1))
    assert a.recv() == {"event": "k", "data": {"x": 5}}
    all_silent([a])


def test_push_invalid_json(rt):
    start(rt)
    a = rt.client("a")
    cases = [
        ('{"userId":"a","topic":"t",}', 1, 27, 27),
        ('{\n  "userId": "a",\n  "topic": nope\n}', 3, 15, 34),
        ('', 1, 0, 0),
        ('[{"userId":"a","topic":"t"} {}]', 1, 29, 29),
    ]
    for body, line, column, position in cases:
        r = rt.push(body)
        assert r.status == 400, (body, r)
        doc = r.json()
        assert set(doc) == {"error", "code", "line", "column",
                            "position"}, doc
        assert doc["code"] == "INVALID_JSON", doc
        assert isinstance(doc["error"], str) and doc["error"], doc
        assert (doc["line"], doc["column"], doc["position"]) == \
            (line, column, position), (body, doc)
    all_silent([a])


def test_push_method_not_allowed(rt):
    start(rt)
    a = rt.client("a")
    body = {"userId": "a", "topic": "t", "payload": 1}
    for method in ("GET", "PUT", "DELETE"):
        r = rt.http(method, "/sendPayload",
                    body=None if method == "GET" else body)
        assert_json_error(r, 405, "METHOD_NOT_ALLOWED")
        assert r.header("allow") == "POST", r
    # nothing was pushed by any of them
    all_silent([a])
    assert_answer(rt.push(body), 200, ok(1))
    assert a.recv() == {"event": "t", "data": 1}


def test_push_content_type(rt):
    start(rt)
    a = rt.client("a")
    body = {"userId": "a", "topic": "t", "payload": 1}
    for ctype in (None, "text/plain", "application/jsonx",
                  "application/x-www-form-urlencoded"):
        r = rt.push(body, content_type=ctype)
        assert_json_error(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    all_silent([a])
    for ctype in ("application/json", "application/json; charset=utf-8"):
        assert_answer(rt.push(body, content_type=ctype), 200, ok(1))
        assert a.recv() == {"event": "t", "data": 1}
    all_silent([a])


def test_push_body_too_large(rt):
    start(rt)
    a = rt.client("a")
    small = {"userId": "a", "topic": "t", "payload": "x" * 900}
    assert_answer(rt.push(small, path="/push_small"), 200, ok(1))
    assert a.recv() == {"event": "t", "data": "x" * 900}
    big = {"userId": "a", "topic": "t", "payload": "x" * 2000}
    assert_json_error(rt.push(big, path="/push_small"), 413,
                      "PAYLOAD_TOO_LARGE")
    # the default location takes it
    assert_answer(rt.push(big), 200, ok(1))
    assert a.recv() == {"event": "t", "data": "x" * 2000}
    all_silent([a])


def raw_post(port, head_extra, parts, delay=0.0, timeout=5.0):
    """POST /push_small with the given header lines, sending the body
    parts with a delay between them; returns (status, headers, body)."""
    import wsraw
    s = wsraw.open_socket(port, timeout=timeout)
    try:
        head = ("POST /push_small HTTP/1.1\r\nHost: localhost\r\n"
                "Content-Type: application/json\r\n%s"
                "Connection: close\r\n\r\n" % head_extra).encode()
        if not delay:
            parts = [head + b"".join(parts)]
        else:
            parts = [head] + list(parts)
        for i, p in enumerate(parts):
            if i:
                time.sleep(delay)
            try:
                s.sendall(p)
            except OSError:
                break
        return wsraw.read_response(s, timeout=timeout)
    finally:
        s.close()


def chunked(data, size=500):
    out = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
           for i in range(0, len(data), size)]
    return out + [b"0\r\n\r\n"]


def test_push_chunked_body_too_large(rt):
    """A chunked body over the limit that arrives with the headers (one
    write; the header buffer holds it all)."""
    rt.start(rt_http(locations=PUSH_LOCATIONS, presence="off",
                     server_extra="client_header_buffer_size 8k;"))
    a = rt.client("a")
    import json as _json
    data = _json.dumps({"userId": "a", "topic": "t",
                        "payload": "y" * 3000}).encode()
    resp = raw_post(rt.port, "Transfer-Encoding: chunked\r\n",
                    [b"".join(chunked(data))])
    assert resp.status == 413, resp
    assert resp.header("content-type") == "application/json", resp
    assert _json.loads(resp.body)["code"] == "PAYLOAD_TOO_LARGE", resp
    all_silent([a])


def test_push_chunked_body_too_large_arriving_late(rt):
    """The over-limit part of a chunked body arrives after the headers:
    still a JSON 413, not nginx's HTML page."""
    start(rt)
    a = rt.client("a")
    import json as _json
    data = _json.dumps({"userId": "a", "topic": "t",
                        "payload": "y" * 3000}).encode()
    resp = raw_post(rt.port, "Transfer-Encoding: chunked\r\n",
                    chunked(data), delay=0.1)
    assert resp.status == 413, resp
    assert resp.header("content-type") == "application/json", resp
    assert _json.loads(resp.body)["code"] == "PAYLOAD_TOO_LARGE", resp
    all_silent([a])


def test_push_secret(rt):
    start(rt)
    a = rt.client("a")
    body = {"userId": "a", "topic": "t", "payload": "secret"}
    for auth in (None, "Bearer wrong", "Bearer s3cr3tX", "Bearer s3cr3",
                 "Basic s3cr3t", "s3cr3t"):
        hdrs = {} if auth is None else {"Authorization": auth}
        r = rt.push(body, path="/push_secret", headers=hdrs)
        assert_json_error(r, 401, "UNAUTHORIZED")
    # none of the refused pushes reached the user
    all_silent([a])
    r = rt.push(body, path="/push_secret",
                headers={"Authorization": "Bearer s3cr3t"})
    assert_answer(r, 200, ok(1))
    assert a.recv() == {"event": "t", "data": "secret"}
    all_silent([a])


def test_push_allow_deny(rt):
    start(rt)
    a = rt.client("a")
    body = {"userId": "a", "topic": "t", "payload": 1}
    r = rt.push(body, path="/push_deny")
    assert r.status == 403, r
    all_silent([a])
    assert_answer(rt.push(body, path="/push_allow"), 200, ok(1))
    assert a.recv() == {"event": "t", "data": 1}
    all_silent([a])
