"""realtime_route and realtime_join_on_connect: server logic as
configuration, without a backend. A client event becomes a join, a leave
or a publish on a room built from its data and the user, with the checks
and answers of the built-in commands; rooms joined on connect. Two
workers; native and Socket.IO clients.
"""

import time

import pytest

from conftest import rt_http
from sioclient import SioDriver, node_available

pytestmark = pytest.mark.asan

ROUTES = """
            realtime_route join_battle  join    "battle:{battleId}";
            realtime_route leave_battle leave   "battle:{battleId}";
            realtime_route code_update  publish "battle:{battleId}";
            realtime_route chat publish "room:{room.id}" as=chat:message;
            realtime_join_on_connect "user:{user}" lobby;
"""


@pytest.fixture
def env(rt):
    rt.start(rt_http(presence="off", client_publish="off", ws_extra=ROUTES,
                     locations="""
        location /socket.io/ {
            realtime_socketio rt;
            realtime_socketio_transports websocket;
            realtime_user $arg_user;
            %s
        }
    """ % ROUTES))
    return rt


def test_routed_join_leave_publish(env):
    a, b = env.clients_spread(["alice", "bob"])
    a.send({"event": "join_battle", "data": {"battleId": "42"}, "id": 1})
    assert a.recv() == {"event": "joined", "id": 1,
                        "data": {"room": "battle:42", "members": 1}}
    b.send({"event": "join_battle", "data": {"battleId": 42}, "id": 2})
    assert b.recv()["data"] == {"room": "battle:42", "members": 2}

    # code_update relays to the opponent, on the other worker, not back
    a.send({"event": "code_update", "data": {"battleId": "42", "code": "x"},
            "id": 3})
    assert a.recv()["event"] == "published"
    ev = b.recv()
    assert ev == {"event": "code_update", "room": "battle:42",
                  "from": "alice", "data": {"battleId": "42", "code": "x"}}
    a.assert_silent(0.2)

    b.send({"event": "leave_battle", "data": {"battleId": "42"}, "id": 4})
    assert b.recv()["data"] == {"room": "battle:42", "members": 1}
    r = env.push({"room": "battle:42", "topic": "t", "payload": 1})
    assert r.json()["delivered"] == 1


def test_publish_needs_membership_and_renames(env):
    a = env.client("carol")
    a.send({"event": "code_update", "data": {"battleId": "9"}, "id": 1})
    assert a.recv()["data"]["code"] == "FORBIDDEN"
    b = env.client("dave")
    b.send({"event": "join_battle", "data": {"battleId": "7"}, "id": 1})
    b.recv()
    a.send({"event": "join_battle", "data": {"battleId": "7"}, "id": 2})
    a.recv()
    # nested field, and the event members get renamed
    env.push({"room": "room:r1", "topic": "warmup", "payload": 0})
    a.send({"event": "join", "data": "room:r1", "id": 3})
    a.recv()
    b.send({"event": "join", "data": "room:r1", "id": 4})
    b.recv()
    a.send({"event": "chat", "data": {"room": {"id": "r1"}, "text": "hi"}})
    ev = b.recv()
    assert ev["event"] == "chat:message" and ev["room"] == "room:r1"
    assert ev["data"]["text"] == "hi"


def test_bad_data_is_bad_request(env):
    c = env.client("erin")
    cases = [
        ({"other": 1}, "\"data.battleId\" must be a string or an integer"),
        ({"battleId": {"x": 1}},
         "\"data.battleId\" must be a string or an integer"),
        ({"battleId": "bad room!"}, "the room is not a valid room name"),
        ("42", "\"data.battleId\" must be a string or an integer"),
        ({"battleId": "x" * 200}, "the room is not a valid room name"),
    ]
    for i, (data, message) in enumerate(cases):
        c.send({"event": "join_battle", "data": data, "id": i})
        assert c.recv() == {"event": "error", "id": i, "data": {
            "code": "BAD_REQUEST", "message": message, "id": i}}, data
    assert c.join("fine")["data"]["members"] == 1


def test_rooms_on_connect(env):
    a = env.client("fay")
    r = env.push({"room": "user:fay", "topic": "dm", "payload": 1})
    assert r.json()["delivered"] == 1
    assert a.recv()["event"] == "dm"
    r = env.push({"room": "lobby", "topic": "all", "payload": 2})
    assert r.json()["delivered"] == 1
    assert a.recv()["event"] == "all"


@pytest.mark.skipif(not node_available(), reason="node missing")
def test_routes_for_socketio(env):
    with SioDriver() as drv:
        for n in ("s1", "s2"):
            drv.connect(n, "http://127.0.0.1:%d" % env.port,
                        path="/socket.io/", transports=["websocket"],
                        query={"user": n})
        assert drv.emit("s1", "join_battle", {"battleId": "5"}) == \
            [{"room": "battle:5", "members": 1}]
        assert drv.emit("s2", "join_battle", {"battleId": "5"}) == \
            [{"room": "battle:5", "members": 2}]
        drv.emit("s1", "code_update", {"battleId": "5", "code": "y"},
                 ack=False)
        assert drv.wait("s2", "code_update") == \
            [[{"battleId": "5", "code": "y"}]]
        assert drv.emit("s1", "join_battle", {})[0]["error"]["code"] == \
            "BAD_REQUEST"
        r = env.push({"room": "user:s1", "topic": "dm", "payload": 1})
        assert r.json()["delivered"] == 1
        assert drv.wait("s1", "dm") == [[1]]


def test_identify_without_a_zone_is_bad_request(rt):
    rt.start(rt_http(locations="""
        location = /nozone {
            realtime;
            realtime_identify setUserId;
            realtime_connection_id getConnectionId connectionId;
        }
    """))
    import json
    from wsraw import RawWS
    raw = RawWS.connect(rt.port, path="/nozone")   # no zone: no welcome
    for i, event in enumerate(("getConnectionId", "setUserId")):
        raw.send_text(json.dumps({"event": event, "data": "u", "id": i}))
        op, payload = raw.recv_message(timeout=3)
        assert json.loads(payload)["data"]["code"] == "BAD_REQUEST"
    raw.close()
