"""Faults seen from outside: storage stopped under load, SQLite on a read-only or full disk, a
worker killed under load, and nodes whose clocks disagree. Each outage test runs its own
MariaDB server or its own file system, and stops only what it started."""
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import jwt
import pytest
import requests

from conftest import TOP, wait_for

SECRET = "fault-tests-secret-0123456789abcdefgh!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
# A cheap hash: these tests are about storage, not about hashing.
FAST = ('password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
        'pbkdf2_sha256 = { rounds = 29000 } }\n')
STORAGE_ROUTES = ("/users/register", "/users/login")


def app_config(storage):
    return storage + f'jwt = {{ secret = "{SECRET}" }}\n' + FAST


def account(tag, n):
    return {"email": f"{tag}{n}@example.com", "username": f"{tag}{n}",
            "password": "correct horse battery"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Load:
    """Client threads that register (and log in as) new accounts until stopped, recording
    every answer: (path, status or None for a failed connection, seconds, account)."""

    def __init__(self, s, tag, threads=3, login=True):
        self.s, self.tag, self.login = s, tag, login
        self.results, self.lock = [], threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, i):
        n = 0
        while not self.stopping.is_set():
            who = account(f"{self.tag}t{i}n", n)
            n += 1
            self.call("/users/register", who)
            if self.login:
                self.call("/users/login", {"email": who["email"], "password": who["password"]})

    def call(self, path, body):
        start = time.monotonic()
        try:
            r = requests.post(self.s.url + path, json=body, timeout=30,
                              headers={"Connection": "close"})
            status = r.status_code
            error = r.json().get("error") if status != 200 else None
        except requests.RequestException:
            status, error = None, None
        with self.lock:
            self.results.append((path, status, time.monotonic() - start, body, error))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def since(self, mark):
        with self.lock:
            return list(self.results[mark:])

    def mark(self):
        with self.lock:
            return len(self.results)


def registered(results):
    """The e-mails whose registration was answered 200."""
    return {body["email"] for path, status, _, body, _ in results
            if path == "/users/register" and status == 200}


# ---- MariaDB stopped under load ----

def test_mariadb_stopped_under_load(sesamed, own_mariadb):
    db = own_mariadb
    s = sesamed(routes=ROUTES, more=app_config(db.storage("faults")))
    assert s.get("/readyz").status_code == 200
    workers = s.workers()
    with Load(s, "down") as load:
        assert wait_for(lambda: registered(load.since(0)), 20), load.since(0)
        db.stop()
        stopped = load.mark()
        # While it is down: /readyz says so within its cache's second, /healthz does not care.
        assert wait_for(lambda: s.get("/readyz").status_code == 503, 10)
        # Each worker keeps its answer for a second: past that, every worker says so.
        time.sleep(1.5)
        for _ in range(6):
            r = s.get("/readyz")
            assert r.json() == {"result": "fail", "error": "storage unavailable"}
        assert s.get("/healthz").status_code == 200
        time.sleep(3)
        down = load.since(stopped)
        db.start()
        # It comes back by itself: no restart of sesamed, no request needed to wake it.
        assert wait_for(lambda: s.get("/readyz").status_code == 200, 20), s.log()
        back = load.mark()
        assert wait_for(lambda: registered(load.since(back)), 20), load.since(back)
    answered = [(p, st, e) for p, st, _, _, e in down]
    assert answered, "no request was made during the outage"
    assert any(st == 503 for _, st, _ in answered), answered
    # 503 with the envelope's message, never a 500 or a dropped connection.
    assert {st for _, st, _ in answered} <= {200, 503}, answered
    assert {e for _, st, e in answered if st == 503} == {"storage unavailable"}, answered
    # No request hung: each was answered well within server.timeout (30 s).
    assert max(t for _, _, t, _, _ in down) < 15
    assert s.workers() == workers, "a worker died during the outage"
    # Every registration answered 200, before, during and after, is stored.
    stored = set(db.sql("SELECT email FROM users", "faults").stdout.split())
    assert registered(load.since(0)) <= stored
    r = s.post("/users/register", json=account("after", 1))
    assert r.status_code == 200, r.text


# ---- SQLite on a read-only or a full disk ----

class SmallDisk:
    """An 8 MiB ext4 file system of this test's own, on a loop device, mounted with
    errors=remount-ro: the kernel's answer to a failing disk, which turn_read_only triggers
    (ext4's trigger_fs_error) under the processes that have files open on it."""

    def __init__(self, folder):
        self.image, self.dir = folder / "disk.img", folder / "disk"
        self.dir.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(8 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True,
                       capture_output=True)
        r = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image),
                            str(self.dir)], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.why = r.stderr.strip()

    def device(self):
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(self.dir)],
                                capture_output=True, text=True, check=True).stdout.strip()
        return os.path.basename(source)

    def turn_read_only(self):
        with open(f"/sys/fs/ext4/{self.device()}/trigger_fs_error", "w") as f:
            f.write("test: the disk fails")
        assert wait_for(self.read_only, 5), "the file system is still writable"

    def read_only(self):
        try:
            (self.dir / "probe").write_text("x")
        except OSError as e:
            return e.errno == errno.EROFS
        return False

    def unmount(self):
        # Lazily: sesamed, stopped after this fixture, may still hold its files.
        subprocess.run(["umount", "-l", str(self.dir)], check=False, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    if not shutil.which("mkfs.ext4"):
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed")
    disk = SmallDisk(tmp_path)
    if not disk.mounted:
        pytest.skip(f"this machine allows no loop mount: {disk.why}")
    yield disk
    disk.unmount()


def sqlite_app(sesamed, path):
    storage = f'storage = {{ backend = "sqlite", sqlite = {{ path = "{path}" }} }}\n'
    s = sesamed(routes=ROUTES, more=app_config(storage))
    for n in range(5):
        assert s.post("/users/register", json=account("early", n)).status_code == 200
    return s


def intact(path, at_least):
    """The file passes SQLite's integrity check and keeps the earlier rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        emails = {row[0] for row in db.execute("SELECT email FROM users")}
    finally:
        db.close()
    assert at_least <= emails
    return emails


def test_sqlite_on_a_read_only_disk(sesamed, small_disk):
    path = small_disk.dir / "sesame.db"
    s = sqlite_app(sesamed, path)
    workers = s.workers()
    small_disk.turn_read_only()
    r = s.post("/users/register", json=account("ro", 1))
    assert r.status_code == 503, r.text
    assert r.json() == {"result": "fail", "error": "storage unavailable"}
    assert r.headers["Retry-After"] == "1"
    s.wait_log("storage unavailable")
    # A log-in writes its refresh family: 503 too, or 200 if it needs no write; never a 500.
    for _ in range(5):
        r = s.post("/users/login", json={"email": "early0@example.com",
                                        "password": "correct horse battery"})
        assert r.status_code in (200, 503), r.text
    assert s.get("/healthz").status_code == 200
    assert s.workers() == workers, "a worker died on the read-only disk"
    s.stop()
    early = {account("early", n)["email"] for n in range(5)}
    assert "ro1@example.com" not in intact(path, early)


def test_sqlite_on_a_full_disk(sesamed, small_disk):
    path = small_disk.dir / "sesame.db"
    s = sqlite_app(sesamed, path)
    workers = s.workers()
    filler = small_disk.dir / "filler"
    # Fill the file system to its last block.
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        statuses = [s.post("/users/register", json=account("full", n)).status_code
                    for n in range(40)]
        assert 503 in statuses, statuses
        assert set(statuses) <= {200, 503}, statuses
        assert s.get("/healthz").status_code == 200
        assert s.workers() == workers
    finally:
        filler.unlink()
    early = {account("early", n)["email"] for n in range(5)}
    full_ok = {account("full", n)["email"] for n, st in enumerate(statuses) if st == 200}
    intact(path, early | full_ok)
    # Space again: service resumes.
    assert wait_for(lambda: s.post("/users/register", json=account("space", 1)).status_code
                    == 200, 10)
    intact(path, early | full_ok | {"space1@example.com"})


# ---- a worker killed under load ----

def test_a_killed_worker_loses_only_its_requests(sesamed, tmp_path):
    path = tmp_path / "sesame.db"
    storage = f'storage = {{ backend = "sqlite", sqlite = {{ path = "{path}" }} }}\n'
    s = sesamed(routes=ROUTES, more=app_config(storage), workers=2)
    workers = s.workers()
    with Load(s, "kill", threads=4, login=False) as load:
        assert wait_for(lambda: len(registered(load.since(0))) >= 10, 30)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        killed = load.mark()
        assert wait_for(lambda: len(s.workers()) == 2 and victim not in s.workers(), 20), \
            s.log()
        time.sleep(1)
        after = load.mark()
        assert wait_for(lambda: len(registered(load.since(after))) >= 10, 30)
    results = load.since(0)
    failed = [st for _, st, _, _, _ in results if st != 200]
    # Only the requests in flight on the killed worker failed, as dropped connections (a few,
    # at most one per client thread); every other answer was a success.
    assert all(st is None for st in failed), failed
    assert len(failed) <= 4, failed
    assert all(st == 200 for _, st, _, _, _ in load.since(after))
    db = sqlite3.connect(path)
    try:
        stored = {row[0] for row in db.execute("SELECT email FROM users")}
    finally:
        db.close()
    assert registered(results) <= stored
    assert len(results) > killed


# ---- nodes whose clocks disagree ----

def skewed_node(sesamed, monkeypatch, storage, offset_ms):
    """A sesamed whose wall clock runs offset_ms off the real time (a test-only setting)."""
    monkeypatch.setenv("SESAME_TEST_CLOCK_OFFSET_MS", str(offset_ms))
    try:
        return sesamed(routes=ROUTES, more=app_config(storage), workers=1)
    finally:
        monkeypatch.delenv("SESAME_TEST_CLOCK_OFFSET_MS")


def login(s, who):
    r = s.post("/users/login", json={"email": who["email"], "password": who["password"]})
    assert r.status_code == 200, r.text
    return r.json()


def refused_within(s, token, seconds=5):
    return wait_for(lambda: s.get("/users/me", headers=bearer(token)).status_code == 401,
                    seconds)


def test_revocations_cross_nodes_whose_clocks_disagree(sesamed, mariadb, monkeypatch):
    storage = mariadb.storage(mariadb.database)
    behind = skewed_node(sesamed, monkeypatch, storage, -120000)
    ahead = skewed_node(sesamed, monkeypatch, storage, 120000)
    who = account("skew", 1)
    assert behind.post("/users/register", json=who).status_code == 200
    # Tokens of the node that runs behind are valid everywhere (issued "in the past").
    pair = login(behind, who)
    assert jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"])["iat"] < \
        time.time() - 100, "the node's clock is not skewed"
    assert ahead.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    # Revoked by the node that runs behind: the node that runs ahead refuses it.
    assert behind.post("/users/logout",
                       headers=bearer(pair["access_token"])).status_code == 200
    assert refused_within(ahead, pair["access_token"])
    # The rows carry the database server's time, not the revoking node's.
    off = mariadb.sql("SELECT MAX(ABS(revoked_at - TIMESTAMPDIFF(MICROSECOND, '1970-01-01', "
                      "UTC_TIMESTAMP(6)) DIV 1000)) FROM sesame_revoked_tokens",
                      mariadb.database).stdout.strip()
    assert int(off) < 60000, off
    # And the other way round.
    pair = login(behind, who)
    assert behind.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    assert ahead.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert refused_within(behind, pair["access_token"])
    # A rotation on one node spends the token on the other, whatever their clocks say.
    pair = login(behind, who)
    r = ahead.post("/token/refresh", headers=bearer(pair["refresh_token"]))
    assert r.status_code == 200, r.text
    time.sleep(2.5)  # past jwt.refresh_grace (2 s) by the database's clock
    assert behind.post("/token/refresh",
                       headers=bearer(pair["refresh_token"])).status_code == 401


# ---- /readyz ----

def test_readyz_answers_like_healthz_where_storage_is_fine(sesamed, tmp_path):
    plain = sesamed()
    r = plain.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"result": "success", "status": "ready"}
    assert r.headers["Content-Type"] == "application/json"
    r = plain.post("/readyz")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    storage = f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "s.db"}" }} }}\n'
    s = sesamed(routes=ROUTES, more=app_config(storage))
    statuses = [s.get("/readyz").status_code for _ in range(50)]
    assert statuses == [200] * 50
    assert s.request("HEAD", "/readyz").status_code == 200
