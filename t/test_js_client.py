"""The native JS client (clients/js/ngx-realtime.js) under Node 20, with
npm ws, against nginx with two workers: connect with a JWT, join a room
with history, lose the network and come back with every message once and
in order ("recovered"), acks as promises and errors as rejections, and a
token refreshed before its exp so that the socket outlives it.
"""

import json
import subprocess

import pytest

from conftest import T_DIR, rt_http
from sioclient import NODE, NODE_MODULES

SECRET = "js-client-secret-js-client-secret"
SCRIPT = T_DIR / "js" / "client_test.mjs"

pytestmark = pytest.mark.skipif(not (NODE_MODULES / "ws").is_dir(),
                                reason="t/js/node_modules missing "
                                       "(make deps-test)")


def test_node_client_reconnects_recovers_refreshes(rt):
    rt.start(rt_http(presence="off", ws_extra="""
            realtime_history 100 5m;
            realtime_jwt_key secret=%s;
    """ % SECRET, locations="""
        location = /hpush { realtime_push rt; realtime_history 100 5m; }
    """))
    r = subprocess.run([NODE, str(SCRIPT), str(rt.port), SECRET],
                       capture_output=True, text=True, timeout=60)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines, (r.stdout, r.stderr)
    out = json.loads(lines[-1])
    assert r.returncode == 0 and out["ok"], out

    assert out["welcome"]["userId"] == "jsclient", out
    assert out["joined"]["room"] == "r" and "epoch" in out["joined"], out
    # every message once, in order, offsets without a gap (the client's
    # own publish took offset 4, and the sender does not get it)
    assert out["got"] == [[1, 1], [2, 2], [3, 3], [4, 5]], out
    assert out["recovered"] == [["r", True]], out
    assert out["reconnects"] >= 1 and out["closes"], out
    assert out["published"] == {"room": "r", "recipients": 0}, out
    assert out["bad_join"] == "BAD_REQUEST", out
    # 4.5 s past a 4 s token: refreshed, never closed for it (4002)
    assert out["refreshed"] >= 1 and 4002 not in out["closes"], out
    assert out["state"] == "open", out
