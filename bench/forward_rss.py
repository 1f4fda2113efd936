#!/usr/bin/python3
"""The memory of one socket that sends many forwarded events.

Starts Debian's nginx with the built module (one worker), a native
socket whose events are forwarded to a location that answers with a
`return` (no backend: only the module's work is measured), sends N
events with ids, 16 in flight (realtime_forward_max_inflight), reads
every answer, and samples the worker's RSS every 10,000 events. Prints
the samples and a Markdown line for bench/RESULTS.md.

    bench/forward_rss.py [N]        (default 100000)
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "t"))

from conftest import Nginx  # noqa: E402
from wsraw import RawWS  # noqa: E402

CONF = r"""
    realtime_zone rt 8m;
    server {
        listen 127.0.0.1:%PORT%;
        location /ws {
            realtime rt;
            realtime_forward * /_rt/any;
        }
        location = /_rt/any {
            internal;
            default_type application/json;
            return 200 '{"ack": {"ok": true}}';
        }
    }
"""


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    prefix = ROOT / "build" / "bench" / "forward-rss"
    shutil.rmtree(prefix, ignore_errors=True)
    ngx = Nginx(prefix)
    ngx.render = (lambda body, extra="", lm=True, _r=ngx.render:
                  _r(body, extra, lm).replace("worker_processes 2;",
                                              "worker_processes 1;"))
    ngx.write_conf(CONF)
    ngx.proc = subprocess.Popen(ngx._cmd(), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ws = RawWS.connect(ngx.port, path="/ws")
                break
            except OSError:
                time.sleep(0.05)
        ws.recv_message(timeout=5)                      # the welcome
        worker = [p for p in ngx.worker_pids()][0]
        samples = [(0, rss_kb(worker))]
        start = time.monotonic()
        sent = got = 0
        while got < n:
            while sent < n and sent - got < 16:
                ws.send_text('{"event":"e","data":%d,"id":%d}'
                             % (sent, sent))
                sent += 1
            op, payload = ws.recv_message(timeout=10)
            assert b'"ok":true' in payload, payload
            got += 1
            if got % 10000 == 0:
                samples.append((got, rss_kb(worker)))
        took = time.monotonic() - start
        ws.close()
    finally:
        os.killpg(ngx.proc.pid, 15)
        ngx.proc.wait(10)

    for count, kb in samples:
        print("%7d forwards: worker RSS %d KB" % (count, kb))
    first = samples[1][1]
    last = samples[-1][1]
    print("| %d forwards on one socket | worker RSS %d KB after 10k, %d KB "
          "after %d (%+d KB) | %.0f forwards/s |"
          % (n, first, last, n, last - first, n / took))


if __name__ == "__main__":
    main()
