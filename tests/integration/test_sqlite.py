"""SQLite storage: migrations, users, letter case, concurrency, paths, a tutorial-shaped table."""
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, TOP, route_file

ROUTES = {"users_api.lua": route_file("users_api.lua")}
USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
SECRET = "sqlite-tests-secret-0123456789abcdef"
STORAGE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
APP = STORAGE + f'jwt = {{ secret = "{SECRET}" }}\n' + 'password = { scheme = "argon2id" }\n'


def user(n, email=None):
    return {"email": email or f"user{n}@example.com", "username": f"user{n}",
            "password": "$argon2id$x"}


def query(path, sql, *args):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=60)


def run_foreground(s):
    return subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=60)


def test_migrations_are_applied_once(sesamed):
    s = sesamed(routes=ROUTES, more=STORAGE)
    s.wait_log("applied migration 001_users")
    db = s.dir / "sesame.db"
    tables = query(db, "SELECT name FROM sqlite_master WHERE type = 'table' "
                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    assert tables == [("sesame_events",), ("sesame_login_failures",), ("sesame_migrations",),
                      ("sesame_onetime_tokens",), ("sesame_refresh_families",),
                      ("sesame_revoked_tokens",), ("sesame_user_state",), ("users",)]
    applied = [(1, "001_users"), (2, "002_token_state"), (3, "003_login_failures"),
               (4, "004_user_state"), (5, "005_user_verified"), (6, "006_onetime_tokens"),
               (7, "007_events")]
    assert query(db, "SELECT version, name FROM sesame_migrations") == applied
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert s.stop() == 0
    s.start()
    assert s.log().count("applied migration") == 7
    assert query(db, "SELECT version, name FROM sesame_migrations") == applied


def test_create_and_find(sesamed):
    s = sesamed(routes=ROUTES, more=STORAGE)
    r = s.post("/create", json=user(1))
    assert r.status_code == 200
    uid = r.json()["id"]
    found = s.get("/find", params={"email": "USER1@example.com"}).json()
    assert found == {"id": uid, "email": "user1@example.com", "username": "user1",
                     "password": "$argon2id$x"}
    assert s.get("/find", params={"id": uid}).json()["email"] == "user1@example.com"
    assert s.get("/find", params={"id": "nonsense"}).status_code == 404
    assert s.get("/find", params={"email": "nobody@example.com"}).status_code == 404
    # Committed when the answer came: another connection sees the row.
    assert query(s.dir / "sesame.db", "SELECT id, email, username FROM users") == [
        (uid, "user1@example.com", "user1")]


def test_letter_case_makes_no_second_account(sesamed):
    s = sesamed(routes=ROUTES, more=STORAGE)
    assert s.post("/create", json=user(2)).status_code == 200
    r = s.post("/create", json=user(2, "User2@EXAMPLE.com"))
    assert r.status_code == 409 and r.json()["error"] == "exists"


def test_letter_case_on_the_register_route_is_409(sesamed):
    s = sesamed(routes=USERS, more=APP)
    r = s.post("/users/register", json={"email": "Alice@Example.COM", "username": "alice",
                                         "password": "correct horse"})
    assert r.status_code == 200, r.text
    r = s.post("/users/register", json={"email": "ALICE@example.com", "username": "alice2",
                                         "password": "correct horse"})
    assert r.status_code == 409
    assert r.json() == {"result": "fail", "error": "email already registered"}
    assert query(s.dir / "sesame.db", "SELECT email, username FROM users") == [
        ("Alice@example.com", "alice")]


def concurrently(n, fn):
    codes = []
    threads = [threading.Thread(target=lambda i=i: codes.append(fn(i))) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(codes)


def test_twenty_concurrent_registrations_of_one_email(sesamed):
    s = sesamed(routes=USERS, more=APP, workers=2)
    codes = concurrently(20, lambda i: requests.post(s.url + "/users/register", timeout=60, json={
        "email": "race@example.com", "username": f"racer{i}", "password": "long enough"}
    ).status_code)
    assert codes == [200] + [409] * 19
    assert query(s.dir / "sesame.db", "SELECT COUNT(*) FROM users") == [(1,)]


def test_concurrent_creates_of_different_emails_all_commit(sesamed):
    s = sesamed(routes=ROUTES, more=STORAGE, workers=2)
    ids = []

    def create(i):
        r = requests.post(s.url + "/create", json=user(100 + i), timeout=30)
        ids.append(r.json().get("id"))
        return r.status_code
    assert concurrently(40, create) == [200] * 40
    rows = query(s.dir / "sesame.db", "SELECT id FROM users ORDER BY id")
    assert sorted(ids) == [r[0] for r in rows] and len(set(ids)) == 40


def test_relative_path_lands_beside_the_config_file(sesamed):
    s = sesamed(start=False, routes=ROUTES,
                more='storage = { backend = "sqlite", sqlite = { path = "data/sesame.db" } }\n')
    (s.dir / "data").mkdir()
    s.start()
    assert s.post("/create", json=user(3)).status_code == 200
    assert query(s.dir / "data" / "sesame.db", "SELECT COUNT(*) FROM users") == [(1,)]
    assert not (Path.cwd() / "data" / "sesame.db").exists()


@pytest.mark.parametrize("path,reason", [
    ("missing/sesame.db",
     "unable to open database file ({dir}/missing: No such file or directory)"),
    ("sesame.lua/sesame.db", "unable to open database file ({dir}/sesame.lua: Not a directory)"),
    ("/proc/sesame.db", "unable to open database file"),
    ("readonly/sesame.db", "unable to open database file ({dir}/readonly: Permission denied)"),
    ("readonly.db", "is read-only for sesamed"),
])
def test_unwritable_path_fails_the_start(sesamed, path, reason):
    if path.startswith("readonly") and os.geteuid() == 0:
        pytest.skip("root may write where the mode says no")
    s = sesamed(start=False, routes=ROUTES,
                more=f'storage = {{ backend = "sqlite", sqlite = {{ path = "{path}" }} }}\n')
    (s.dir / "readonly").mkdir(mode=0o500)
    (s.dir / "readonly.db").touch(mode=0o400)
    # -t reads the configuration only: it neither opens nor creates the database.
    r = check(s)
    assert r.returncode == 0, r.stderr
    full = path if path.startswith("/") else f"{s.dir}/{path}"
    r = run_foreground(s)
    assert r.returncode == 1
    assert "sesamed: storage: cannot apply the schema: SQLite: " in r.stderr
    assert full in r.stderr and reason.format(dir=s.dir) in r.stderr
    assert "serving on" not in r.stderr


def test_tutorial_shaped_table(sesamed):
    s = sesamed(start=False, routes=ROUTES, more=(
        'storage = { backend = "sqlite", sqlite = { path = "app.db", busy_timeout = 2000 }, '
        'users = { table = "user" } }\n'))
    db = sqlite3.connect(s.dir / "app.db")
    db.execute("CREATE TABLE user (id INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80) "
               "NOT NULL, email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)")
    db.execute("INSERT INTO user (username, email, password) VALUES "
               "('old', 'Old@example.com', '$pbkdf2-sha256$29000$abc$def')")
    db.commit()
    db.close()
    s.start()
    found = s.get("/find", params={"email": "OLD@example.com"}).json()
    assert found["username"] == "old" and found["id"] == 1
    r = s.post("/create", json=user(4))
    assert r.status_code == 200 and r.json()["id"] == 2
    # The table's own UNIQUE is case-sensitive; the migration's NOCASE index is not.
    assert s.post("/create", json=user(4, "USER4@example.com")).status_code == 409
    columns = [c[1] for c in query(s.dir / "app.db", "PRAGMA table_info(user)")]
    assert columns == ["id", "username", "email", "password"]  # kept as it was
    assert query(s.dir / "app.db", "SELECT COUNT(*) FROM user") == [(2,)]


def test_tutorial_table_with_letter_case_twins_is_refused(sesamed):
    s = sesamed(start=False, routes=ROUTES, more=(
        'storage = { backend = "sqlite", sqlite = { path = "app.db" }, '
        'users = { table = "user" } }\n'))
    db = sqlite3.connect(s.dir / "app.db")
    db.execute("CREATE TABLE user (id INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80) "
               "NOT NULL, email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)")
    db.execute("INSERT INTO user (username, email, password) VALUES ('a', 'Bob@example.com', "
               "'x'), ('b', 'bob@example.com', 'y')")
    db.commit()
    db.close()
    r = run_foreground(s)
    assert r.returncode == 1
    assert ("sesamed: storage: cannot apply the schema: SQLite: migration 001_users: "
            "UNIQUE constraint failed: user.email") in r.stderr
    # The migration and its record are one transaction: neither happened.
    assert query(s.dir / "app.db", "SELECT COUNT(*) FROM sesame_migrations") == [(0,)]
    assert query(s.dir / "app.db", "SELECT name FROM sqlite_master WHERE type = 'index' "
                                   "AND name = 'user_email'") == []
    assert query(s.dir / "app.db", "SELECT COUNT(*) FROM user") == [(2,)]


def test_locked_database_answers_503_and_recovers(sesamed):
    s = sesamed(routes=ROUTES, more=(
        'storage = { backend = "sqlite", sqlite = { path = "sesame.db", busy_timeout = 200 } }\n'))
    assert s.post("/create", json=user(5)).status_code == 200
    holder = sqlite3.connect(s.dir / "sesame.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = s.post("/create", json=user(6))
        assert r.status_code == 503
        assert r.json() == {"result": "fail", "error": "storage unavailable"}
        s.wait_log("storage unavailable: SQLite: database is locked")
        # WAL: readers do not wait for the writer.
        assert s.get("/find", params={"email": "user5@example.com"}).status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert s.post("/create", json=user(6)).status_code == 200


@pytest.mark.parametrize("sqlite,message", [
    ('path = "sesame.db", journal = "wal"',
     "storage.sqlite.journal: unknown key (plugin sqlite does not read it)"),
    ('busy_timeout = "5s"', "storage.sqlite.busy_timeout: expected a whole number"),
    ('busy_timeout = -1', "storage.sqlite.busy_timeout: -1 is out of range"),
    ('query_timeout = 0', "storage.sqlite.query_timeout: 0 is out of range"),
    ('path = ""', "storage.sqlite.path: expected a file name"),
    ('path = 5', "storage.sqlite.path: expected a string"),
])
def test_bad_sqlite_settings(sesamed, sqlite, message):
    s = sesamed(start=False, routes=ROUTES,
                more=f'storage = {{ backend = "sqlite", sqlite = {{ {sqlite} }} }}\n')
    r = check(s)
    assert r.returncode == 1
    assert f"{s.config}:4: {message}" in r.stderr  # the storage line
    assert not (s.dir / "sesame.db").exists()


def test_an_old_schema_without_migrate_refuses_to_start(sesamed):
    s = sesamed(start=False, routes=ROUTES, more=STORAGE.replace("sqlite = {",
                                                                 "migrate = false, sqlite = {"))
    ctl = [str(Path(SESAMED).parent / "sesamectl"), "-c", str(s.config), "migrate"]
    assert subprocess.run(ctl, capture_output=True, timeout=60).returncode == 0
    # The schema of the sesamed before: its last migration not applied.
    db = sqlite3.connect(s.dir / "sesame.db")
    db.execute("DROP TABLE sesame_events")
    db.execute("DELETE FROM sesame_migrations WHERE version = 7")
    db.commit()
    db.close()
    r = run_foreground(s)
    assert r.returncode == 1
    assert ("sesamed: storage: the schema is at version 6, this sesamed needs 7: run sesamectl "
            "migrate") in r.stderr
    assert "serving on" not in r.stderr
    assert query(s.dir / "sesame.db", "SELECT MAX(version) FROM sesame_migrations") == [(6,)]
    assert subprocess.run(ctl, capture_output=True, timeout=60).returncode == 0
    s.start()
    assert s.post("/create", json=user(1)).status_code == 200
    assert s.get("/find", params={"email": "user1@example.com"}).status_code == 200
