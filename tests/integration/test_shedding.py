"""Bounded work: the job queue's bound (503 + Retry-After), jobs dropped for requests that are
gone, a log-in flood that leaves no backlog, and hung workers killed on a stale heartbeat."""
import json
import os
import re
import subprocess
import socket
import threading
import time

from conftest import OPENAPI, SESAMED, TOP, wait_for
from test_process import WAIT, feed_fd, start_waiting, wait_reader

SECRET = "shedding-tests-secret-0123456789abcdef"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
# Rate limits would answer a flood from one address with 429 before it reaches the queue: the
# flood test turns them off, so that what it measures is the queue.
LIMITS_OFF = "limits = { login = false, login_failures = false }\n"
# Hashes costly enough that a flood saturates the job threads, cheap enough for a quick test.
HASH = "password = { argon2id = { memory = 32768, iterations = 2 } }\n"


def login_request(port, email, password):
    body = json.dumps({"email": email, "password": password}).encode()
    return (f"POST /users/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def read_response(sock, buf):
    """Reads one response from a kept-alive socket: (status, headers, body, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return int(lines[0].split()[1]), headers, buf[:length], buf[length:]


class Flood:
    """Many connections, each sending wrong-password log-ins back to back; at stop, each
    closes its socket whatever it is waiting for, as clients that give up do."""

    def __init__(self, port, clients, seconds):
        self.port, self.deadline = port, time.monotonic() + seconds
        self.lock = threading.Lock()
        self.statuses, self.shed, self.bad_shed, self.errors = {}, 0, [], []
        self.request = login_request(port, "ann@example.com", "wrong password")
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def count(self, status, headers, body):
        OPENAPI.check_raw(f"http://127.0.0.1:{self.port}", "POST", "/users/login", status,
                          headers, body)
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status != 503:
                return
            if (headers.get("retry-after") == "1" and json.loads(body) ==
                    {"result": "fail", "error": "server busy"}):
                self.shed += 1
            else:
                self.bad_shed.append((headers, body))

    def run(self):
        sock, buf = None, b""
        while time.monotonic() < self.deadline:
            try:
                if sock is None:
                    sock, buf = socket.create_connection(("127.0.0.1", self.port)), b""
                sock.settimeout(max(0.05, self.deadline - time.monotonic()))
                sock.sendall(self.request)
                status, headers, body, buf = read_response(sock, buf)
                self.count(status, headers, body)
                if headers.get("connection", "").lower() == "close":
                    sock.close()
                    sock = None
            except (OSError, ConnectionError) as e:
                if time.monotonic() < self.deadline and not isinstance(e, socket.timeout):
                    with self.lock:
                        self.errors.append(repr(e))
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def join(self):
        for t in self.threads:
            t.join()


def cpu_seconds(pids):
    """User and system CPU time of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def timed_login(s):
    started = time.monotonic()
    r = s.post("/users/login", json={"email": "ann@example.com", "password": "correct horse"},
               timeout=60)
    return r, time.monotonic() - started


def test_a_login_flood_leaves_no_backlog(sesamed, mariadb):
    more = (mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n' + HASH +
            LIMITS_OFF)
    s = sesamed(routes=ROUTES, more=more)
    assert s.post("/users/register", json={"email": "ann@example.com", "username": "ann",
                                           "password": "correct horse"}).status_code == 200
    hash_time = min(timed_login(s)[1] for _ in range(5))
    workers = s.workers()

    flood = Flood(s.port, clients=400, seconds=6)
    flood.join()
    ended = time.monotonic()

    # The flood's connections close as it ends; until the worker has seen them go, its queue
    # may still be full and a request gets 503 "server busy" at once. A genuine client asks
    # again: within a few hash times (with room for a slow, shared machine) it is served.
    bound = max(10 * hash_time, 1.5)
    started, busy = time.monotonic(), 0
    while True:
        r, _ = timed_login(s)
        took = time.monotonic() - started
        if r.status_code != 503 or took > bound:
            break
        busy += 1
        time.sleep(0.05)
    assert r.status_code == 200, (r.status_code, r.text, busy)
    assert took < bound, (took, hash_time, busy, flood.statuses)
    assert flood.shed > 0, flood.statuses
    assert not flood.bad_shed, flood.bad_shed[:3]
    assert set(flood.statuses) <= {401, 503}, flood.statuses
    assert flood.statuses.get(401, 0) > 0, flood.statuses

    # The workers go idle: nothing is left hashing for clients that are gone.
    time.sleep(max(0.0, ended + 2.0 - time.monotonic()))
    before = cpu_seconds(workers)
    time.sleep(1.0)
    spent = cpu_seconds(workers) - before
    assert spent < 0.2, (spent, flood.statuses)
    assert s.workers() == workers


def never_opened(fifo, seconds=1.0):
    """True when no reader opens fifo within seconds: the job that would read it never ran."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.02)
            continue
        os.close(fd)
        return False
    return True


def fifos(tmp_path, *names):
    for name in names:
        os.mkfifo(tmp_path / name)
    return [tmp_path / name for name in names]


def test_a_full_queue_answers_503_at_once(sesamed, tmp_path):
    s = sesamed("threads = 1, queue = 2,", routes=WAIT, workers=1)
    running, queued, extra = fifos(s.dir, "running", "queued", "extra")  # below the config folder
    t1, r1 = start_waiting(s, running)
    writer = wait_reader(running)
    t2, r2 = start_waiting(s, queued)
    time.sleep(1.0)  # the second request is read and its job queued
    started = time.monotonic()
    r = s.get("/wait", params={"fifo": str(extra)})
    assert time.monotonic() - started < 3
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json() == {"result": "fail", "error": "server busy"}
    s.wait_log("job queue full (server.queue = 2)")
    # The queued request was not refused: it runs once the thread is free.
    feed_fd(writer, "first")
    feed_fd(wait_reader(queued), "second")
    t1.join()
    t2.join()
    assert r1["r"].json()["data"] == "first"
    assert r2["r"].json()["data"] == "second"
    assert never_opened(extra, 0.3)
    assert s.get("/version").json() == {"version": 1}


# A hash of some 0.7 s or more (pbkdf2_sha256 at 10,000,000 rounds, on a core with SHA
# extensions): long enough that a hash lane stays full while a test looks at it.
SLOW_HASH = ('password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
             'pbkdf2_sha256 = { rounds = 10000000 } }\n')


def test_a_full_hash_queue_sheds_hashes_but_not_storage_calls(sesamed):
    more = (f'storage = {{ backend = "sqlite", sqlite = {{ path = "sesame.db" }} }}\n'
            f'jwt = {{ secret = "{SECRET}" }}\n' + SLOW_HASH + LIMITS_OFF)
    s = sesamed("threads = 1, hash_threads = 1, queue = 3, hash_queue = 2,", routes=ROUTES,
                more=more, workers=1)
    r = s.post("/users/register", json={"email": "ann@example.com", "username": "ann",
                                        "password": "correct horse"}, timeout=60)
    assert r.status_code == 200, r.text
    tokens = r.json()

    # Two registrations fill the hash lane: one hashing, one waiting for the hashing thread.
    answers = {}

    def register(n):
        answers[n] = s.post("/users/register", json={
            "email": f"flood{n}@example.com", "username": f"flood{n}",
            "password": "correct horse"}, timeout=60)

    flood = [threading.Thread(target=register, args=(n,)) for n in range(2)]
    for t in flood:
        t.start()
        time.sleep(0.1)
    time.sleep(0.1)  # the second is read and queued
    started = time.monotonic()
    r = s.post("/users/register", json={"email": "late@example.com", "username": "late",
                                        "password": "correct horse"})
    assert r.status_code == 503, r.text
    assert time.monotonic() - started < 3
    assert r.headers["Retry-After"] == "1"
    assert r.json() == {"result": "fail", "error": "server busy"}

    # Storage calls have their own bound: served while the hashes are still pending.
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = s.get("/users/me", headers=bearer)
    refresh = s.post("/token/refresh",
                     headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    logout = s.post("/users/logout", headers=bearer)
    pending = sum(t.is_alive() for t in flood)
    assert me.status_code == 200 and me.json()["user"]["email"] == "ann@example.com", me.text
    assert refresh.status_code == 200 and "access_token" in refresh.json(), refresh.text
    assert logout.status_code == 200, logout.text
    assert pending == len(flood), "the hash lane emptied before the storage calls were made"

    for t in flood:
        t.join()
    assert [answers[n].status_code for n in range(2)] == [200, 200]
    s.wait_log("job queue full (server.hash_queue = 2)")


def busy_thread(sesamed, tmp_path, config):
    """One worker with its one job thread held by a request; the FIFO of a second request."""
    s = sesamed(config, routes=WAIT, workers=1)
    running, second = fifos(s.dir, "running", "second")
    t1, r1 = start_waiting(s, running)
    return s, second, t1, r1, wait_reader(running)


def dropped(s):
    """sesame_jobs_dropped_total by reason."""
    text = s.get("/metrics").text
    return {reason: float(n) for reason, n in
            re.findall(r'^sesame_jobs_dropped_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def test_a_job_whose_client_left_is_dropped(sesamed, tmp_path):
    s, abandoned, t1, r1, writer = busy_thread(sesamed, tmp_path, "threads = 1,")
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(f"GET /wait?fifo={abandoned} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(1.0)  # read, and its job queued behind the running one
    s.wait_log('"status":499')
    feed_fd(writer, "first")
    t1.join()
    assert r1["r"].json()["data"] == "first"
    assert never_opened(abandoned)
    assert s.get("/version").json() == {"version": 1}
    assert dropped(s) == {"timeout": 0, "client_gone": 1}


def test_a_job_whose_request_timed_out_is_dropped(sesamed, tmp_path):
    s, late, t1, r1, writer = busy_thread(sesamed, tmp_path,
                                          "threads = 1, handler_timeout = 1,")
    r = s.get("/wait", params={"fifo": str(late)})
    assert r.status_code == 503 and r.json()["error"] == "request timed out"
    t1.join()
    assert r1["r"].status_code == 503  # the first timed out too; its job still runs
    feed_fd(writer, "too late")
    assert never_opened(late)
    assert s.get("/version").json() == {"version": 1}
    # Only the job that never started counts as dropped: the first one ran all the same.
    assert dropped(s) == {"timeout": 1, "client_gone": 0}


HANGS = {
    "hangs.lua": """local sesame = require "sesame"

-- A string.gsub call into C that backtracks at each of its many starting points.
sesame.route("GET", "/hang/gsub", function(req)
  return 200, { text = (string.gsub(string.rep("ab", 20000), "a.-.-.-.-.-c", "")) }
end)

-- One call into C that backtracks for far longer than any test runs.
sesame.route("GET", "/hang/pattern", function(req)
  return 200, { found = string.find(string.rep("a", 30000), ".-.-.-.-.-.-b") }
end)
""",
    "version.lua": WAIT["version.lua"],
}


def test_hung_workers_are_killed_and_replaced(sesamed):
    s = sesamed("hang_timeout = 2,", routes=HANGS)
    for path in ("/hang/gsub", "/hang/pattern"):
        before = s.workers()
        hung = {}

        def call():
            try:
                hung["r"] = s.get(path, timeout=30)
            except OSError as e:
                hung["error"] = e
        t = threading.Thread(target=call)
        started = time.monotonic()
        t.start()
        # The other worker serves meanwhile (new connections spread over both sockets).
        served = 0
        for _ in range(20):
            try:
                served += s.get("/version", timeout=0.5).status_code == 200
            except OSError:
                pass
        s.wait_log(f"while serving GET {path}: killing it", timeout=20)
        assert time.monotonic() - started < 2 + 8
        t.join()
        assert "error" in hung or hung["r"].status_code != 200
        assert served > 0
        line = next(x for x in s.log().splitlines() if f"serving GET {path}: killing" in x)
        assert "hung: its loop has not turned" in line and "server.hang_timeout" in line
        assert any(f"worker {pid} " in line for pid in before), line
        assert wait_for(lambda: len(s.workers()) == 2 and s.workers() != before)
        assert wait_for(lambda: s.get("/version").status_code == 200)
    s.wait_log("killed by signal 9", count=2)


def test_check_bounds_the_new_settings(sesamed):
    s = sesamed(start=False)
    s.write_config("queue = 0, hang_timeout = 0.5,")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "server.queue: 0 is out of range (1 to 1048576)" in r.stderr, r.stderr
    assert "server.hang_timeout: expected a number of seconds from 1 to 3600" in r.stderr
    s.write_config("hash_queue = 0,")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "server.hash_queue: 0 is out of range (1 to 1048576)" in r.stderr, r.stderr
    s.write_config("queue = 1, hash_queue = 1, hang_timeout = 1.5,")
    assert subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True,
                          timeout=30).returncode == 0
