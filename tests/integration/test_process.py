"""The process model: workers replaced, reloads, graceful stops, job threads, sesamed -t."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import SESAMED, is_zombie, route_file, wait_for

VERSION = """local sesame = require "sesame"
sesame.route("GET", "/version", function(req) return 200, { version = %d } end)
"""
WAIT = {"wait.lua": route_file("wait.lua"), "version.lua": VERSION % 1}


def start_waiting(s, fifo):
    """Starts GET /wait in a thread; returns the thread and where its response lands."""
    result = {}

    def call():
        try:
            result["r"] = requests.get(s.url + "/wait", params={"fifo": str(fifo)}, timeout=30)
        except requests.RequestException as e:
            result["error"] = e
    t = threading.Thread(target=call)
    t.start()
    return t, result


def feed(fifo, text):
    with open(fifo, "w") as f:
        f.write(text)


def wait_reader(fifo, timeout=15):
    """Waits until sesamed's job thread has the FIFO open (the request is in its handler);
    returns the writing end, for feed_fd."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.02)
    raise AssertionError("the handler never opened " + str(fifo))


def feed_fd(fd, text):
    os.write(fd, text.encode())
    os.close(fd)


class Hammer:
    """Clients that call one path in a loop, on kept-alive connections, and count failures."""

    def __init__(self, s, path, clients=4, seconds=30, keepalive=True):
        self.keepalive = keepalive
        self.stop = threading.Event()
        self.ok, self.failures, self.bodies = 0, [], []
        self.lock = threading.Lock()
        self.deadline = time.monotonic() + seconds
        self.threads = [threading.Thread(target=self.run, args=(s.url + path,))
                        for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, url):
        session = requests.Session() if self.keepalive else requests
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                r = session.get(url, timeout=10)
                with self.lock:
                    if r.status_code == 200:
                        self.ok += 1
                        self.bodies.append(r.json())
                    else:
                        self.failures.append(r.status_code)
            except requests.RequestException as e:
                with self.lock:
                    self.failures.append(repr(e))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def test_killed_worker_is_replaced(sesamed):
    s = sesamed(routes=WAIT)
    before = s.workers()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    s.wait_log("killed by signal 9")
    assert wait_for(lambda: len(s.workers()) == 2 and s.workers() != before)
    assert before[0] not in s.workers()
    for _ in range(40):
        assert s.get("/version").json() == {"version": 1}


def test_worker_death_names_the_route(sesamed, tmp_path):
    s = sesamed(routes=WAIT, workers=1)
    fifo = s.dir / "fifo"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    t, result = start_waiting(s, fifo)
    writer = wait_reader(fifo)
    os.kill(s.workers()[0], signal.SIGKILL)
    t.join()
    os.close(writer)
    assert "error" in result
    s.wait_log("while serving GET /wait")
    assert wait_for(lambda: s.get("/healthz").status_code == 200)


def test_crash_looping_worker_backs_off(sesamed):
    s = sesamed(routes=WAIT, workers=1)
    for _ in range(4):
        assert wait_for(lambda: len(s.workers()) == 1), s.log()
        pids = s.workers()
        os.kill(pids[0], signal.SIGKILL)
        assert wait_for(lambda: s.workers() and s.workers() != pids), s.log()
    s.wait_log("it keeps dying: respawning in")
    assert wait_for(lambda: s.get("/healthz").status_code == 200)


def test_loop_answers_while_a_job_waits(sesamed, tmp_path):
    s = sesamed(routes=WAIT, workers=1)
    fifo = s.dir / "fifo"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    t, result = start_waiting(s, fifo)
    writer = wait_reader(fifo)
    for _ in range(20):
        r = s.get("/healthz", timeout=2)
        assert r.status_code == 200
        assert s.get("/version", timeout=2).json() == {"version": 1}
    assert t.is_alive()
    feed_fd(writer, "done")
    t.join()
    assert result["r"].json() == {"result": "success", "data": "done"}


def test_sigterm_lets_a_waiting_request_finish(sesamed, tmp_path):
    s = sesamed(routes=WAIT, workers=1)
    fifo = s.dir / "fifo"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    t, result = start_waiting(s, fifo)
    writer = wait_reader(fifo)
    s.signal(signal.SIGTERM)
    s.wait_log("stopping once in-flight requests are done")
    time.sleep(0.5)
    assert s.proc.poll() is None
    feed_fd(writer, "finished")
    t.join()
    assert "r" in result, f"{result}\n{s.log()}"
    assert result["r"].status_code == 200
    assert result["r"].json()["data"] == "finished"
    assert s.proc.wait(15) == 0
    assert "stopped" in s.log()


def test_sigint_stops_gracefully(sesamed):
    s = sesamed(routes=WAIT)
    s.signal(signal.SIGINT)
    assert s.proc.wait(15) == 0
    assert wait_for(lambda: not s.workers() if s.proc.poll() is None else True)


def test_shutdown_timeout_bounds_the_wait(sesamed, tmp_path):
    s = sesamed(routes=WAIT, workers=1)
    s.write_config("shutdown_timeout = 1,", workers=1)
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    fifo = s.dir / "fifo"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    t, result = start_waiting(s, fifo)
    writer = wait_reader(fifo)
    started = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.proc.wait(15) == 0
    assert time.monotonic() - started < 8
    s.wait_log("shutdown timeout")
    os.close(writer)
    t.join()
    assert "error" in result


def test_reload_serves_the_new_route_without_failing_a_request(sesamed):
    s = sesamed(routes=WAIT)
    old = s.workers()
    hammer = Hammer(s, "/version")
    time.sleep(1)
    s.write_route("version.lua", VERSION % 2)
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert wait_for(lambda: s.get("/version").json() == {"version": 2})
    time.sleep(1.5)
    hammer.finish()
    assert hammer.failures == []
    assert hammer.ok > 100
    assert {"version": 2} in hammer.bodies[-20:]
    assert hammer.bodies[-1] == {"version": 2}
    assert wait_for(lambda: not set(old) & set(s.workers()))
    for _ in range(20):
        assert s.get("/version").json() == {"version": 2}


def test_reload_with_a_broken_script_keeps_the_old_routes(sesamed):
    s = sesamed(routes=WAIT)
    old = s.workers()
    s.write_route("version.lua", "local x = = 1\n")
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed")
    assert "version.lua:1:" in s.log()
    assert s.workers() == old
    for _ in range(20):
        assert s.get("/version").json() == {"version": 1}
    s.write_route("version.lua", VERSION % 3)
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert wait_for(lambda: s.get("/version").json() == {"version": 3})


def test_reload_with_a_broken_config_keeps_serving(sesamed):
    s = sesamed(routes=WAIT)
    s.config.write_text(s.config.read_text().replace("workers", "wrokers"))
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed")
    assert "did you mean 'workers'" in s.log()
    assert s.get("/version").json() == {"version": 1}


def test_reload_can_change_the_worker_count(sesamed):
    s = sesamed(routes=WAIT, workers=2)
    s.write_config(workers=3)
    s.signal(signal.SIGHUP)
    s.wait_log("with 3 workers")
    assert wait_for(lambda: len(s.workers()) == 3)
    for _ in range(20):
        assert s.get("/version").status_code == 200


def run_check(config):
    return subprocess.run([SESAMED, "-t", "-c", str(config)], capture_output=True, text=True,
                          timeout=30)


def test_check_accepts_a_good_config(sesamed):
    s = sesamed(routes=WAIT, start=False)
    r = run_check(s.config)
    assert r.returncode == 0, r.stderr
    assert "configuration is ok" in r.stdout


def test_check_reports_a_broken_route_script(sesamed):
    s = sesamed(routes={"ok.lua": VERSION % 1, "broken.lua": "local sesame = require 'sesame'\n\nsesame.route('GET', '/x' function() end)\n"},
                start=False)
    r = run_check(s.config)
    assert r.returncode == 1
    assert "broken.lua:3:" in r.stderr


def test_check_reports_a_runtime_error_in_a_route_script(sesamed):
    s = sesamed(routes={"bad.lua": "local sesame = require 'sesame'\nsesame.route('GET', 'nope', function() end)\n"},
                start=False)
    r = run_check(s.config)
    assert r.returncode == 1
    assert "bad.lua:2:" in r.stderr
    assert "must start with '/'" in r.stderr


def test_check_reports_every_config_error_with_its_line(sesamed):
    s = sesamed(start=False)
    s.config.write_text('server = {\n  listen = "127.0.0.1:1",\n  wrokers = 2,\n'
                        '  timeout = "soon",\n}\nroutes = { "routes/*.lua" }\nextra = 1\n')
    r = run_check(s.config)
    assert r.returncode == 1
    assert f"{s.config}:3: server.wrokers: unknown key (did you mean 'workers'?)" in r.stderr
    assert f"{s.config}:4: server.timeout: expected a whole number" in r.stderr
    assert f"{s.config}:7: extra: unknown key" in r.stderr


def test_check_reports_an_access_log_it_cannot_open(sesamed):
    s = sesamed(start=False)
    s.write_config('access_log = "no/such/folder/access.log",')
    r = run_check(s.config)
    assert r.returncode == 1
    assert "server.access_log: cannot open" in r.stderr
    assert "No such file or directory" in r.stderr


def test_broken_config_does_not_start(sesamed):
    s = sesamed(start=False)
    s.config.write_text("server = { listen = 'nowhere' }\n")
    r = subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "is not a listen address" in r.stderr


def test_version_and_help():
    r = subprocess.run([SESAMED, "-V"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("sesamed ")
    r = subprocess.run([SESAMED, "-h"], capture_output=True, text=True)
    assert r.returncode == 0 and "-c FILE" in r.stdout
    r = subprocess.run([SESAMED, "-x"], capture_output=True, text=True)
    assert r.returncode == 2


def test_workers_flag_overrides_the_config(sesamed):
    s = sesamed(routes=WAIT, workers=1, start=False)
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([SESAMED, "-f", "-w", "3", "-c", str(s.config)],
                              stdout=s.logf, stderr=s.logf)
    s.wait_ready()
    assert wait_for(lambda: len(s.workers()) == 3)


def test_detached_start_with_a_relative_config_reloads(sesamed):
    s = sesamed(routes=WAIT, start=False)
    r = subprocess.run([SESAMED, "-c", "sesame.lua"], capture_output=True, timeout=30,
                       cwd=s.dir)
    assert r.returncode == 0
    out = subprocess.run(["pgrep", "-f", "sesamed -c sesame.lua"], capture_output=True,
                         text=True).stdout.split()
    master = min(int(p) for p in out)
    try:
        assert s.get("/version").json() == {"version": 1}
        s.write_route("version.lua", VERSION % 5)
        os.kill(master, signal.SIGHUP)
        assert wait_for(lambda: s.get("/version").json() == {"version": 5})
    finally:
        os.kill(master, signal.SIGTERM)
        assert wait_for(lambda: is_zombie(master))


def test_handler_timeout_answers_503_while_the_job_waits(sesamed, tmp_path):
    s = sesamed("handler_timeout = 1,", routes=WAIT, workers=1)
    fifo = s.dir / "fifo"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    started = time.monotonic()
    r = s.get("/wait", params={"fifo": str(fifo)})
    assert r.status_code == 503
    assert r.json() == {"result": "fail", "error": "request timed out"}
    assert 0.8 < time.monotonic() - started < 5
    s.wait_log("did not finish within server.handler_timeout")
    feed(fifo, "late")
    assert wait_for(lambda: s.get("/version").json() == {"version": 1})
    fifo2 = s.dir / "fifo2"
    os.mkfifo(fifo2)
    t, result = start_waiting(s, fifo2)
    writer = wait_reader(fifo2)
    feed_fd(writer, "in time")
    t.join()
    assert result["r"].json()["data"] == "in time"


@pytest.mark.parametrize("text,message", [
    ('routes = setmetatable({}, { __len = function() return "x" end })\n',
     "object length is not an integer"),
    ('server = setmetatable({}, { __index = function() local x; return x.y end })\n',
     "attempt to index a nil value"),
    ("while true do end\n", "the configuration runs too long"),
])
def test_check_survives_hostile_configs(sesamed, text, message):
    s = sesamed(start=False)
    s.config.write_text(text)
    r = run_check(s.config)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr


def test_check_stops_a_route_script_that_never_ends(sesamed):
    s = sesamed(routes={"loop.lua": "while true do end\n"}, start=False)
    r = run_check(s.config)
    assert r.returncode == 1
    assert "loop.lua:1:" in r.stderr
    assert "exceed the instruction budget" in r.stderr


def test_reload_of_a_hostile_config_keeps_serving(sesamed):
    s = sesamed(routes=WAIT)
    s.config.write_text('server = setmetatable({}, { __index = function() local x; return x.y end })\n')
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed")
    assert s.get("/version").json() == {"version": 1}


def test_running_out_of_descriptors_pauses_accepting(sesamed):
    import resource
    s = sesamed(routes=WAIT, workers=1, start=False)
    s.logf = open(s.log_path, "ab")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    s.proc = subprocess.Popen([SESAMED, "-f", "-c", str(s.config)], stdout=s.logf,
                              stderr=s.logf, preexec_fn=limit)
    s.wait_ready()
    idle = []
    try:
        for _ in range(90):
            idle.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        s.wait_log("cannot accept connections")
        time.sleep(1)
        # Paused, not spinning: a handful of warnings at most, and a worker that still runs.
        assert s.log().count("cannot accept connections") <= 2
        assert len(s.log()) < 100000
    finally:
        for c in idle:
            c.close()
    assert wait_for(lambda: s.get("/healthz", timeout=5).status_code == 200)


def test_reload_to_fewer_workers_drops_no_connection(sesamed):
    s = sesamed(routes=WAIT, workers=4)
    hammer = Hammer(s, "/version", keepalive=False)
    time.sleep(1)
    s.write_config(workers=1)
    s.signal(signal.SIGHUP)
    s.wait_log("with 1 worker\n")
    assert wait_for(lambda: len(s.workers()) == 1)
    time.sleep(1)
    s.write_config(workers=3)
    s.signal(signal.SIGHUP)
    s.wait_log("with 3 workers")
    time.sleep(1)
    hammer.finish()
    assert hammer.failures == []
    assert hammer.ok > 100
