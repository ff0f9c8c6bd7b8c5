"""sd_notify: what sesamed tells systemd, read from a NOTIFY_SOCKET of the test's own."""
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import SESAMED, child_pids, route_file, wait_for

ROUTES = {"wait.lua": route_file("wait.lua")}


class Notify:
    """Reads every message sent to the socket, as systemd does, so that no sender blocks."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []
        self.reading = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while self.reading:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.reading = False
        self.reader.join()
        self.sock.close()

    def wait_for(self, field, timeout=15, after=0):
        """Waits for a message holding field (as "READY=1"); returns its fields as a dict."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages[after:]:
                if field in m.split("\n"):
                    return dict(l.split("=", 1) for l in m.split("\n") if "=" in l)
            time.sleep(0.02)
        raise AssertionError(f"no {field} among {self.messages}")


def built_with_systemd():
    header = Path(SESAMED).parent / "autoconfig.h"
    return header.exists() and "#define HAVE_SYSTEMD 1" in header.read_text()


@pytest.fixture
def notified(sesamed, tmp_path):
    if not built_with_systemd():
        pytest.skip("sesamed was built without libsystemd")
    notify = Notify(tmp_path / "notify.sock")
    s = sesamed(routes=ROUTES, start=False)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="400000")
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([SESAMED, "-f", "-c", str(s.config)], stdout=s.logf,
                              stderr=s.logf, env=env)
    s.wait_ready()
    yield s, notify
    notify.close()


def test_ready_watchdog_reload_stopping(notified):
    s, notify = notified
    ready = notify.wait_for("READY=1")
    assert ready["STATUS"].startswith("serving on 127.0.0.1:")
    first = len(notify.messages)
    notify.wait_for("WATCHDOG=1", after=first)
    notify.wait_for("WATCHDOG=1", after=len(notify.messages))

    mark = len(notify.messages)
    s.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING=1", after=mark)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert "serving on" in notify.wait_for("READY=1", after=mark)["STATUS"]

    mark = len(notify.messages)
    s.write_route("wait.lua", "syntax error here")
    s.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    assert notify.wait_for("READY=1", after=mark)["STATUS"].startswith("reload failed")

    mark = len(notify.messages)
    s.signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", after=mark)
    assert s.proc.wait(15) == 0


@pytest.fixture
def silent_server():
    """A TCP listener that never answers: a database that takes connections and then hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def storage_on(port, timeout):
    """A storage table whose schema is to be applied on the server at port."""
    return (f'storage = {{ backend = "mariadb", migrate = true, mariadb = {{ host = "127.0.0.1", '
            f'port = {port}, user = "root", database = "x", connect_timeout = {timeout}, '
            f'read_timeout = {timeout}, write_timeout = {timeout} }} }}\n')


def test_a_slow_schema_on_reload_keeps_the_master_turning(notified, silent_server):
    s, notify = notified
    notify.wait_for("READY=1")
    s.write_config(more=storage_on(silent_server, timeout=4))
    workers = child_pids(s.proc.pid)
    mark = len(notify.messages)
    started = time.monotonic()
    s.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    s.signal(signal.SIGHUP)
    s.wait_log("reloading again after it")

    # While the schema waits on the database, the master feeds the watchdog, replaces a
    # worker that dies, and the old generation serves.
    beat = len(notify.messages)
    notify.wait_for("WATCHDOG=1", after=beat)
    notify.wait_for("WATCHDOG=1", after=len(notify.messages))
    os.kill(workers[0], signal.SIGKILL)
    assert wait_for(lambda: len(child_pids(s.proc.pid)) >= len(workers)
                    and workers[0] not in child_pids(s.proc.pid), timeout=3)
    assert s.get("/healthz").status_code == 200
    assert time.monotonic() - started < 3.5, "the checks above ran while the schema waited"

    failed = notify.wait_for("READY=1", after=mark, timeout=30)
    assert failed["STATUS"].startswith("reload failed")
    assert "storage: cannot apply the schema" in s.log()
    s.wait_log("reload failed", count=2, timeout=30)
    assert s.get("/healthz").status_code == 200


def test_a_stop_during_a_reloads_schema_ends_it(notified, silent_server):
    s, notify = notified
    notify.wait_for("READY=1")
    s.write_config(more=storage_on(silent_server, timeout=20))
    mark = len(notify.messages)
    s.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    time.sleep(0.3)
    started = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert time.monotonic() - started < 8, "the stop did not wait out the schema's timeouts"
    stopping = next(i for i, m in enumerate(notify.messages) if "STOPPING=1" in m.split("\n"))
    time.sleep(0.2)
    assert not any("READY=1" in m.split("\n") for m in notify.messages[stopping:])
    assert "reload abandoned: stopping" in s.log()
    assert "still serving the previous configuration" not in s.log()
