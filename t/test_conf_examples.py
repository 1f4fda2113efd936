"""Every file in conf-examples/ is a ready nginx.conf: nginx -t accepts it
with the built module, run with the repository as its prefix."""

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFS = sorted((ROOT / "conf-examples").glob("*.conf"))


@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
def test_conf_example_passes_nginx_t(conf, tmp_path):
    if not (ROOT / "build" / "ngx_http_realtime_module.so").exists():
        pytest.skip("module not built")
    (ROOT / "build" / "run" / "tmp").mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["/usr/sbin/nginx", "-p", str(ROOT) + "/", "-c", str(conf),
         "-e", str(tmp_path / "error.log"), "-t"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "test is successful" in out.stderr


def test_there_are_examples_for_every_seed():
    names = {c.name for c in CONFS}
    assert {"quickstart.conf", "judge-sendpayload.conf", "battle-arena.conf",
            "leaderboard.conf", "presence-game.conf",
            "contest.conf", "cluster.conf"} <= names
