"""Multiple workers, graceful quit and reload with open WebSockets."""

import os
import re
import subprocess
import time

import pytest

import wsraw
from conftest import pid_alive, wait_until
from wsraw import OP_BINARY, OP_TEXT, RawWS

pytestmark = pytest.mark.asan     # also run by make integration-asan

F = wsraw.build_frame

CONF = r"""
    server {
        listen 127.0.0.1:%%PORT%% %s;
        location = /echo { realtime_echo; realtime_ping_interval 30s;
                           realtime_idle_timeout 60s; }
        location = /rt { realtime; }
    }
"""


def owners_of_connections(port):
    """pid of the process owning each established server-side socket on
    port (as root, ss shows all processes)."""
    r = subprocess.run(["ss", "-Htnp", "state", "established",
                        "( sport = :%d )" % port],
                       capture_output=True, text=True, timeout=10)
    return [int(m) for m in re.findall(r"pid=(\d+)", r.stdout)]


def open_clients(port, n, path="/echo"):
    clients = []
    try:
        for i in range(n):
            clients.append(RawWS.connect(port, path=path))
    except Exception:
        for c in clients:
            c.close()
        raise
    return clients


def test_twenty_connections_echo(nginx_factory):
    ngx = nginx_factory(CONF % "")
    clients = open_clients(ngx.port, 20)
    try:
        for i, c in enumerate(clients):
            c.send_text("client %d" % i)
            c.send_binary(bytes([i]) * (i * 100))
        for i, c in enumerate(clients):
            assert c.recv_message() == (OP_TEXT, b"client %d" % i)
            assert c.recv_message() == (OP_BINARY, bytes([i]) * (i * 100))
        owners = set(owners_of_connections(ngx.port))
        assert owners, "ss shows no established server sockets"
        assert owners <= set(ngx.worker_pids()), (owners, ngx.worker_pids())
    finally:
        for c in clients:
            c.close()


def test_reuseport_spreads_over_both_workers(nginx_factory):
    ngx = nginx_factory(CONF % "reuseport")
    clients = open_clients(ngx.port, 20)
    try:
        for i, c in enumerate(clients):
            c.send_text("rp %d" % i)
        for i, c in enumerate(clients):
            assert c.recv_message() == (OP_TEXT, b"rp %d" % i)
        workers = set(ngx.worker_pids())
        owners = owners_of_connections(ngx.port)
        assert len(owners) == 20, owners
        assert set(owners) <= workers
        # 20 connections hashed over 2 reuseport sockets: P(all on one)
        # is 2^-19
        assert len(set(owners)) == 2, owners
    finally:
        for c in clients:
            c.close()


def test_graceful_quit_closes_1001(nginx_factory):
    ngx = nginx_factory(CONF % "")
    clients = open_clients(ngx.port, 6) + open_clients(ngx.port, 2,
                                                       path="/rt")
    try:
        for c in clients[:6]:
            c.send_text("hi")
            assert c.recv_message() == (OP_TEXT, b"hi")
        # one of them is in the middle of a fragmented message
        clients[0].send(F(OP_TEXT, b"half", fin=False))
        workers = ngx.worker_pids()
        master = ngx.master_pid
        t0 = time.monotonic()
        ngx.signal_cmd("quit")
        for c in clients:
            c.expect_close(1001, timeout=max(0.5, t0 + 4 - time.monotonic()),
                           tcp_timeout=2.0, reply=True)
        try:
            ngx.proc.wait(timeout=max(0.1, t0 + 5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError("nginx master still running 5s after quit;"
                                 " workers alive: %r" % [
                                     p for p in workers if pid_alive(p)])
        assert wait_until(
            lambda: not any(pid_alive(p) for p in workers + [master]), 1.0), \
            "nginx processes left after quit"
        assert not os.path.exists(ngx.prefix / "nginx.pid")
    finally:
        for c in clients:
            c.close()


def test_graceful_quit_silent_clients(nginx_factory):
    """Clients that never answer the close frame: they still get 1001 and
    nginx still exits within ~5s."""
    ngx = nginx_factory(CONF % "")
    clients = open_clients(ngx.port, 4)
    try:
        t0 = time.monotonic()
        ngx.signal_cmd("quit")
        for c in clients:
            c.expect_close(1001, timeout=max(0.5, t0 + 4 - time.monotonic()),
                           tcp_timeout=0)
        try:
            ngx.proc.wait(timeout=max(0.1, t0 + 5.5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError("nginx still running 5.5s after quit")
        for c in clients:
            assert c.wait_tcp_close(0.5)
    finally:
        for c in clients:
            c.close()


def test_quit_without_connections_is_fast(nginx_factory):
    ngx = nginx_factory(CONF % "")
    wsraw.echo_roundtrip(ngx.port)
    t0 = time.monotonic()
    assert ngx.quit(timeout=5), "nginx did not exit within 5s"
    assert time.monotonic() - t0 < 5


def test_reload_closes_old_connections_1001(nginx_factory):
    ngx = nginx_factory(CONF % "")
    clients = open_clients(ngx.port, 6) + open_clients(ngx.port, 2,
                                                       path="/rt")
    try:
        for c in clients[:6]:
            c.send_binary(b"pre")
            assert c.recv_message() == (OP_BINARY, b"pre")
        t0 = time.monotonic()
        old, new = ngx.reload()
        for c in clients:
            c.expect_close(1001, timeout=max(0.5, t0 + 4 - time.monotonic()),
                           tcp_timeout=2.0, reply=True)
        gone = wait_until(lambda: not any(pid_alive(p) for p in old),
                          max(0.5, t0 + 5 - time.monotonic()))
        assert gone, "old workers still alive 5s after reload: %r" % [
            p for p in old if pid_alive(p)]
        assert ngx.running()
        assert sorted(ngx.worker_pids()) == sorted(new)
        # new connections on the same port work, on both workers' turn
        for _ in range(4):
            wsraw.echo_roundtrip(ngx.port)
        with RawWS.connect(ngx.port, path="/rt") as c:
            c.send_frame(wsraw.OP_PING, b"new")
            f = c.recv_data_frame()
            assert (f.opcode, f.payload) == (wsraw.OP_PONG, b"new")
    finally:
        for c in clients:
            c.close()


def test_reload_with_changed_config(nginx_factory):
    """After a reload that changes the limit, new connections use it."""
    ngx = nginx_factory(CONF % "")
    with RawWS.connect(ngx.port) as c:
        c.send_binary(b"x" * 2000)
        assert c.recv_message() == (OP_BINARY, b"x" * 2000)
    ngx.write_conf(r"""
    server {
        listen 127.0.0.1:%PORT%;
        location = /echo { realtime_echo; realtime_max_message_size 1k; }
    }""")
    ngx.reload(wait_old_exit=True)
    with RawWS.connect(ngx.port) as c:
        c.send_binary(b"x" * 2000)
        c.expect_close(1009)
    with RawWS.connect(ngx.port) as c:
        c.send_binary(b"y" * 1000)
        assert c.recv_message() == (OP_BINARY, b"y" * 1000)


def test_worker_kill_does_not_affect_other_worker(nginx_factory):
    """Sanity of isolation: SIGKILL one worker (its clients drop), the
    master respawns it and the other worker's clients keep working."""
    ngx = nginx_factory(CONF % "reuseport")
    clients = open_clients(ngx.port, 12)
    try:
        owners = owners_of_connections(ngx.port)
        workers = ngx.worker_pids()
        if len(set(owners)) < 2:
            pytest.fail("reuseport did not spread 12 connections: %r" % owners)
        # map client -> owning worker via local ports
        r = subprocess.run(["ss", "-Htnp", "state", "established",
                            "( sport = :%d )" % ngx.port],
                           capture_output=True, text=True, timeout=10)
        owner_by_cport = {}
        for line in r.stdout.splitlines():
            m = re.search(r":(\d+)\s+users:.*pid=(\d+)", line)
            if m:
                owner_by_cport[int(m.group(1))] = int(m.group(2))
        victim = workers[0]
        os.kill(victim, 9)
        for c in clients:
            cport = c.sock.getsockname()[1]
            if owner_by_cport.get(cport) == victim:
                assert c.wait_tcp_close(3.0)
            else:
                c.send_text("survivor")
                assert c.recv_message() == (OP_TEXT, b"survivor")
        assert wait_until(lambda: len(ngx.worker_pids()) == 2, 5)
    finally:
        for c in clients:
            c.close()
        # the kill is deliberate: drop its log line from the crash check
        log = ngx.error_log_path.read_text()
        ngx.error_log_path.write_text(
            "\n".join(l for l in log.splitlines()
                      if "exited on signal 9" not in l) + "\n")
