"""A new generation that never serves: a reload given up after server.start_timeout while the
old generation serves on, and a detached start that fails instead of hanging its caller; a
SIGHUP before the first generation serves, which waits for it; and Ctrl-C on a detached
sesamed still waiting for its daemon, which stops both.

The workers never serve because of a real mistake that `sesamed -t` cannot see: a route script
that root (the master, which checks it) reads and server.user (the workers) cannot. It is a
new folder of route scripts that only the new configuration lists, so that the old
generation's workers, which read their own scripts again when they are replaced, still start.
"""
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, Sesamed, free_port, is_zombie, metric, refused, wait_for
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


# server.start_timeout where a test waits for it to run out: long enough for a worker of the
# new generation to start and die on a busy machine, no longer.
GIVE_UP = 4


def make(folder, extra=f"start_timeout = {GIVE_UP},", workers=2):
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


def list_private(s):
    """The configuration lists the private route scripts too."""
    s.config.write_text(s.config.read_text().replace(
        'routes = { "routes/*.lua" }', 'routes = { "routes/*.lua", "private/*.lua" }'))


def reconfigure(s, port2):
    """The new configuration: the private route scripts, a second address, and two more worker
    slots, whose sockets on the first address must take no connection while they start."""
    text = s.config.read_text()
    text = text.replace(f'listen = "127.0.0.1:{s.port}"',
                        f'listen = {{ "127.0.0.1:{s.port}", "127.0.0.1:{port2}" }}')
    s.config.write_text(text.replace("workers = 2,", "workers = 4,"))
    list_private(s)


def generations(s):
    """Each live worker's generation, by pid."""
    return {w["pid"]: w["generation"] for w in status(s)["workers"]}


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
    s.start(env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock")))
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

    failed = notify.wait_for("READY=1", after=mark, timeout=60)
    answers = poller.finish()
    # Each slot names how its last worker died; on a slow machine one may not have died yet.
    why = r"worker \d+ \(slot [0-3]\) (exited with status 1|is still starting)"
    assert re.match(rf"reload failed: generation 2 did not become ready within {GIVE_UP} s "
                    rf"\(server\.start_timeout\): {why}", failed["STATUS"]), failed
    assert "exited with status 1" in failed["STATUS"], failed
    assert re.search(rf"reload failed: generation 2 did not become ready within {GIVE_UP} s "
                     rf"\(server\.start_timeout\): {why}.*; still serving generation 1",
                     s.log()), s.log()
    # No connection went to the new slots' sockets: none waited, none was reset.
    assert answers and all(a == (200, {"version": 1}) for a in answers), answers
    assert metric(s, 'sesame_reloads_total{result="failed"}') == 1

    # Only the old generation is left; the address only the new configuration had is shut.
    assert wait_for(lambda: set(generations(s).values()) == {1}, timeout=30), s.log()
    assert set(s.workers()) == old
    assert status(s)["generation"] == 1
    assert metric(s, "sesame_generation") == 1
    assert s.get("/readyz").status_code == 200
    assert refused(port2)

    # A configuration that does not load is refused before any worker starts.
    good = s.config.read_text()
    s.config.write_text(good + "server.nonsense = 1\n")
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed: still serving the previous configuration")
    assert metric(s, 'sesame_reloads_total{result="invalid"}') == 1
    s.config.write_text(good)

    # Mended, the next reload serves; generation 2's number is not used twice.
    (s.dir / "private" / "extra.lua").chmod(0o644)
    mark = len(notify.messages)
    s.signal(signal.SIGHUP)
    ready = notify.wait_for("READY=1", after=mark, timeout=60)
    assert ready["STATUS"].startswith("serving on"), ready
    s.wait_log("(generation 3); serving on")
    assert s.get("/extra").json() == {"extra": True}
    assert requests.get(f"http://127.0.0.1:{port2}/extra", timeout=5).status_code == 200
    assert wait_for(lambda: set(generations(s).values()) == {3}, timeout=30)
    assert len(s.workers()) == 4
    assert metric(s, "sesame_generation") == 3
    assert metric(s, 'sesame_reloads_total{result="ok"}') == 1
    assert metric(s, 'sesame_reloads_total{result="failed"}') == 1


def test_an_old_worker_that_dies_during_the_wait_is_replaced(folder):
    # Long enough for the kill, the respawn and the checks below on a busy machine (they take
    # about a second; the test then waits for the rest of it).
    s = make(folder, extra="start_timeout = 10,").start()
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
    assert wait_for(replaced, timeout=15), s.log()
    assert "reload failed" not in s.log(), "the wait ended before the check"
    # The replacement serves the old configuration, on the old addresses only.
    for _ in range(20):
        assert s.get("/version").json() == {"version": 1}
        assert s.get("/extra").status_code == 404

    s.wait_log("reload failed: generation 2", timeout=60)
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
    list_private(s)
    r = subprocess.run([SESAMED, "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert re.match(r"sesamed: workers did not become ready within 3 s: worker \d+ \(slot [01]\) "
                    r"exited with status 1", r.stderr), r.stderr
    # The command returned as the daemon exited: nothing of it is left running.
    assert wait_for(lambda: sesamed_processes(s.config) == [], timeout=15), \
        [Path(f"/proc/{p}/status").read_text() for p in sesamed_processes(s.config)]
    assert refused(s.port)



def test_a_sighup_before_the_first_generation_serves_waits_for_it(folder, notify, tmp_path):
    s = make(folder, extra="start_timeout = 60,")
    script = unreadable_extra(s)
    list_private(s)
    s.start(wait=False, env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock")))
    s.wait_log("Permission denied", timeout=30)  # the master is up, its workers keep dying
    s.signal(signal.SIGHUP)
    s.wait_log("reload asked for before the workers serve: reloading once they do")
    assert s.proc.poll() is None
    script.chmod(0o644)

    first = notify.wait_for("READY=1", timeout=60)
    assert first["STATUS"].startswith("serving on 127.0.0.1:"), first
    before = notify.messages[:notify.messages.index(next(
        m for m in notify.messages if "READY=1" in m.split("\n")))]
    assert not any("RELOADING=1" in m.split("\n") for m in before), notify.messages
    # Then the reload asked for is carried out, and served.
    s.wait_log("(generation 2); serving on", timeout=60)
    mark = next(i for i, m in enumerate(notify.messages) if "RELOADING=1" in m.split("\n"))
    assert notify.wait_for("READY=1", after=mark)["STATUS"].startswith("serving on"), \
        notify.messages
    assert "reload failed" not in s.log(), s.log()
    assert s.get("/extra").json() == {"extra": True}
    assert metric(s, 'sesame_reloads_total{result="ok"}') == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_waiting_detached_sesamed_stops_its_daemon_on_a_signal(folder, sig):
    s = make(folder, extra="start_timeout = 60,")
    unreadable_extra(s)
    list_private(s)
    proc = subprocess.Popen([SESAMED, "-c", str(s.config)], stderr=subprocess.PIPE, text=True)
    try:
        # The command and its daemon. (The daemon's workers die at start and come back after
        # a growing rest, so one is seldom alive to be seen.) The daemon blocks the signals
        # before it forks, so the one forwarded to it waits in its signalfd for its loop.
        assert wait_for(lambda: len(sesamed_processes(s.config)) >= 2, timeout=30)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert re.search(rf"sesamed: {signal.strsignal(sig)}: the daemon \(pid \d+\) stopped", err), err
    assert wait_for(lambda: sesamed_processes(s.config) == [], timeout=15), \
        [Path(f"/proc/{p}/status").read_text() for p in sesamed_processes(s.config)]
    assert refused(s.port)


def cpu_seconds(pid):
    """The CPU time pid has used, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_stop_during_a_reload_past_its_deadline_does_not_spin(folder):
    s = make(folder).start()
    old = s.workers()
    unreadable_extra(s)
    list_private(s)
    hup = time.monotonic()
    s.signal(signal.SIGHUP)
    s.wait_log("Permission denied")
    # An old worker that does not drain keeps the master in its loop until it is killed.
    os.kill(old[0], signal.SIGSTOP)
    try:
        s.signal(signal.SIGTERM)
        s.wait_log("stopping once in-flight requests are done")
        # Past the reload's deadline, while the stop waits for the worker.
        time.sleep(max(0.0, hup + GIVE_UP + 1 - time.monotonic()))
        assert "reload failed" not in s.log(), "the reload ended before the stop"
        before = cpu_seconds(s.proc.pid)
        time.sleep(2)
        assert cpu_seconds(s.proc.pid) - before < 0.5, s.log()
        assert s.proc.poll() is None
    finally:
        os.kill(old[0], signal.SIGCONT)
    assert s.proc.wait(30) == 0, s.log()
