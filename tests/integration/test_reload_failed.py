"""A new generation that never serves: a reload given up after server.start_timeout while the
old generation serves on, and a detached start that fails instead of hanging its caller.

The workers never serve because of a real mistake that `sesamed -t` cannot see: a route script
that root (the master, which checks it) reads and server.user (the workers) cannot. It is a
new folder of route scripts that only the new configuration lists, so that the old
generation's workers, which read their own scripts again when they are replaced, still start.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, Sesamed, free_port, is_zombie, wait_for
from test_privileges import folder  # noqa: F401 (a fixture: a folder nobody can reach)
from test_sesamectl import status
from test_systemd import Notify, built_with_systemd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")

VERSION = """local sesame = require "sesame"
sesame.route("GET", "/version", function(req) return 200, { version = 1 } end)
"""
EXTRA = """local sesame = require "sesame"
sesame.route("GET", "/extra", function(req) return 200, { extra = true } end)
"""


def make(folder, extra="start_timeout = 4,", workers=2):
    """A sesamed whose workers run as nobody, serving GET /version."""
    top, made = folder
    d = top / f"s{len(made)}"
    d.mkdir()
    d.chmod(0o755)
    s = Sesamed(d, f'user = "nobody", {extra}', {"version.lua": VERSION}, workers)
    s.config.write_text(s.config.read_text().replace('user = "root", ', ""))
    made.append(s)
    return s


def unreadable_extra(s):
    """The folder private/ with a route script that nobody cannot read."""
    private = s.dir / "private"
    private.mkdir(exist_ok=True)
    script = private / "extra.lua"
    script.write_text(EXTRA)
    script.chmod(0o600)
    return script


def reconfigure(s, port2):
    """The new configuration: the private route scripts, and a second address."""
    text = s.config.read_text()
    text = text.replace(f'listen = "127.0.0.1:{s.port}"',
                        f'listen = {{ "127.0.0.1:{s.port}", "127.0.0.1:{port2}" }}')
    text = text.replace('routes = { "routes/*.lua" }', 'routes = { "routes/*.lua", "private/*.lua" }')
    s.config.write_text(text)


def start(s, env=None):
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([SESAMED, "-f", "-c", str(s.config)], stdout=s.logf,
                              stderr=s.logf, env=env)
    s.wait_ready()
    return s


def generations(s):
    """Each live worker's generation, by pid."""
    return {w["pid"]: w["generation"] for w in status(s)["workers"]}


def metric(s, name):
    text = s.get("/metrics", headers={"Connection": "close"}).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


class Poller:
    """GET /version in a loop, on fresh connections: every answer, or the error."""

    def __init__(self, s):
        self.answers, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.run, args=(s,))
        self.thread.start()

    def run(self, s):
        while not self.stop.is_set():
            try:
                r = s.get("/version", headers={"Connection": "close"}, timeout=5)
                self.answers.append((r.status_code, r.json()))
            except requests.RequestException as e:
                self.answers.append((repr(e), None))
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.answers


@pytest.fixture
def notify(tmp_path):
    if not built_with_systemd():
        pytest.skip("sesamed was built without libsystemd")
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.close()


def test_a_reload_whose_workers_never_serve_is_given_up(folder, notify, tmp_path):
    s = make(folder)
    start(s, env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock")))
    notify.wait_for("READY=1")
    old = set(s.workers())
    unreadable_extra(s)
    port2 = free_port()
    reconfigure(s, port2)
    poller = Poller(s)
    mark = len(notify.messages)
    s.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    # The new generation's workers start and die, again and again, while the old one serves.
    s.wait_log("Permission denied")
    s.wait_log("; respawning")
    assert old <= set(s.workers())
    assert status(s)["generation"] == 1
    assert metric(s, "sesame_generation") == 1
    assert s.get("/readyz").status_code == 200

    failed = notify.wait_for("READY=1", after=mark, timeout=30)
    answers = poller.finish()
    assert failed["STATUS"].startswith(
        "reload failed: generation 2 did not become ready within 4 s (server.start_timeout): "
        "worker "), failed
    assert "exited with status 1" in failed["STATUS"]
    assert re.search(r"reload failed: generation 2 did not become ready within 4 s "
                     r"\(server\.start_timeout\): worker \d+ \(slot [01]\) exited with status 1"
                     r".*; still serving generation 1", s.log()), s.log()
    assert answers and all(a == (200, {"version": 1}) for a in answers), answers

    # Only the old generation is left; the address only the new configuration had is shut.
    assert wait_for(lambda: set(generations(s).values()) == {1}, timeout=30), s.log()
    assert set(s.workers()) == old
    assert status(s)["generation"] == 1
    assert metric(s, "sesame_generation") == 1
    assert s.get("/readyz").status_code == 200
    assert refused(port2)

    # Mended, the next reload serves; generation 2's number is not used twice.
    (s.dir / "private" / "extra.lua").chmod(0o644)
    mark = len(notify.messages)
    s.signal(signal.SIGHUP)
    ready = notify.wait_for("READY=1", after=mark, timeout=30)
    assert ready["STATUS"].startswith("serving on"), ready
    s.wait_log("(generation 3); serving on")
    assert s.get("/extra").json() == {"extra": True}
    assert requests.get(f"http://127.0.0.1:{port2}/extra", timeout=5).status_code == 200
    assert wait_for(lambda: set(generations(s).values()) == {3}, timeout=30)
    assert metric(s, "sesame_generation") == 3


def test_an_old_worker_that_dies_during_the_wait_is_replaced(folder):
    s = start(make(folder, extra="start_timeout = 6,"))
    old = sorted(s.workers())
    unreadable_extra(s)
    port2 = free_port()
    reconfigure(s, port2)
    s.signal(signal.SIGHUP)
    s.wait_log("Permission denied")
    os.kill(old[0], signal.SIGKILL)
    s.wait_log(f"worker {old[0]} (slot")

    def replaced():
        gens = generations(s)
        first = [pid for pid, g in gens.items() if g == 1]
        return len(first) == 2 and old[0] not in first
    assert wait_for(replaced, timeout=5), s.log()
    assert "reload failed" not in s.log(), "the wait ended before the check"
    # The replacement serves the old configuration, on the old addresses only.
    for _ in range(20):
        assert s.get("/version").json() == {"version": 1}
        assert s.get("/extra").status_code == 404

    s.wait_log("reload failed: generation 2", timeout=30)
    assert wait_for(lambda: set(generations(s).values()) == {1}, timeout=30), s.log()
    assert refused(port2)
    # After the reload is given up, a dead worker is still replaced from the old configuration.
    survivors = sorted(s.workers())
    os.kill(survivors[1], signal.SIGKILL)
    assert wait_for(lambda: len(s.workers()) == 2 and survivors[1] not in s.workers())
    assert set(generations(s).values()) == {1}
    for _ in range(20):
        assert s.get("/version").json() == {"version": 1}


def sesamed_processes(config):
    """Live processes started with this configuration (sesamed -c CONFIG), by their pids."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(config).encode() in args and not is_zombie(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_a_detached_start_that_never_serves_fails_and_stops(folder):
    s = make(folder, extra="start_timeout = 3,")
    unreadable_extra(s)
    s.config.write_text(s.config.read_text().replace(
        'routes = { "routes/*.lua" }', 'routes = { "routes/*.lua", "private/*.lua" }'))
    r = subprocess.run([SESAMED, "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert re.match(r"sesamed: workers did not become ready within 3 s: worker \d+ \(slot [01]\) "
                    r"exited with status 1", r.stderr), r.stderr
    # The command returned as the daemon exited: nothing of it is left running.
    assert wait_for(lambda: sesamed_processes(s.config) == [], timeout=5), \
        [Path(f"/proc/{p}/status").read_text() for p in sesamed_processes(s.config)]
    assert refused(s.port)

