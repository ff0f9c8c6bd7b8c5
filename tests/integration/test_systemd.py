"""sd_notify: what sesamed tells systemd, read from a NOTIFY_SOCKET of the test's own."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SESAMED, route_file

ROUTES = {"wait.lua": route_file("wait.lua")}


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, field, timeout=15, after=0):
        """Waits for a message holding field (as "READY=1"); returns its fields as a dict."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages[after:]:
                if field in m.split("\n"):
                    return dict(l.split("=", 1) for l in m.split("\n") if "=" in l)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
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
    return s, notify


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
