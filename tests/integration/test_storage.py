"""MariaDB storage: migrations, users, concurrency, outages, a tutorial-shaped table."""
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, route_file

ROUTES = {"users_api.lua": route_file("users_api.lua")}


def user(n):
    return {"email": f"user{n}@example.com", "username": f"user{n}", "password": "$argon2id$x"}


def test_migrations_create_the_schema_once(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    s.wait_log("applied migration 001_users")
    tables = mariadb.sql("SHOW TABLES", mariadb.database).stdout.split()
    assert sorted(tables) == ["sesame_events", "sesame_login_failures",
                              "sesame_migration_claims", "sesame_migrations",
                              "sesame_onetime_tokens", "sesame_refresh_families",
                              "sesame_revoked_tokens", "sesame_user_state", "users"]
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert s.log().count("applied migration") == 9
    rows = mariadb.sql("SELECT version, name FROM sesame_migrations ORDER BY version",
                       mariadb.database).stdout
    assert rows.split() == ["1", "001_users", "2", "002_unique_email", "3",
                            "003_refresh_families", "4", "004_revoked_tokens", "5",
                            "005_login_failures", "6", "006_user_state", "7",
                            "007_user_verified", "8", "008_onetime_tokens", "9", "009_events"]


def test_create_and_find(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    r = s.post("/create", json=user(1))
    assert r.status_code == 200
    uid = r.json()["id"]
    found = s.get("/find", params={"email": "USER1@example.com"}).json()
    assert found == {"id": uid, "email": "user1@example.com", "username": "user1",
                     "password": "$argon2id$x"}
    assert s.get("/find", params={"id": uid}).json()["email"] == "user1@example.com"
    assert s.get("/find", params={"email": "nobody@example.com"}).status_code == 404
    row = mariadb.sql("SELECT email, username FROM users", mariadb.database).stdout.split()
    assert row == ["user1@example.com", "user1"]


def test_letter_case_makes_no_second_account(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    assert s.post("/create", json=user(2)).status_code == 200
    dup = dict(user(2), email="User2@EXAMPLE.com")
    r = s.post("/create", json=dup)
    assert r.status_code == 409 and r.json()["error"] == "exists"


def test_concurrent_creates_of_one_email_give_one_row(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    codes = []

    def create():
        codes.append(requests.post(s.url + "/create", json=user(3), timeout=30).status_code)
    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 19
    assert mariadb.sql("SELECT COUNT(*) FROM users", mariadb.database).stdout.strip() == "1"


def test_tutorial_shaped_table(sesamed, mariadb):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    mariadb.sql("CREATE TABLE user (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(80) "
                "NOT NULL, email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)",
                mariadb.database)
    mariadb.sql("INSERT INTO user (username, email, password) VALUES "
                "('old', 'old@example.com', '$pbkdf2-sha256$29000$abc$def')", mariadb.database)
    storage = (f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{mariadb.socket}", '
               f'user = "root", database = "{mariadb.database}" }}, '
               'users = { table = "user" } }\n')
    s = sesamed(routes=ROUTES, more=storage)
    assert s.get("/find", params={"email": "old@example.com"}).json()["username"] == "old"
    assert s.post("/create", json=user(4)).status_code == 200
    columns = mariadb.sql("SHOW COLUMNS FROM user", mariadb.database).stdout
    assert "created_at" not in columns  # the existing table is kept as it is
    assert mariadb.sql("SELECT COUNT(*) FROM user", mariadb.database).stdout.strip() == "2"


def test_unreachable_storage_answers_503_and_recovers(sesamed, mariadb, tmp_path):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    assert s.post("/create", json=user(5)).status_code == 200
    mariadb.stop()
    try:
        r = s.post("/create", json=user(6))
        assert r.status_code == 503
        assert r.json() == {"result": "fail", "error": "storage unavailable"}
        s.wait_log("storage unavailable")
    finally:
        mariadb.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if s.post("/create", json=user(6)).status_code == 200:
            break
        time.sleep(0.2)
    assert s.get("/find", params={"email": "user6@example.com"}).status_code == 200


@pytest.mark.parametrize("extra,message", [
    ('users = { table = "bad name" }', "storage.users.table: 'bad name' is not a plain name"),
    ('users = { colour = "x" }', "storage.users.colour: unknown key"),
    ('users = { emial = "x" }', "storage.users.emial: unknown key (did you mean 'email'?)"),
    ('migrat = false', "storage.migrat: unknown key (did you mean 'migrate'?)"),
    ('migrate = "yes"', "storage.migrate: expected true or false"),
])
def test_bad_storage_settings(sesamed, mariadb, extra, message):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database, extra), start=False)
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert message in r.stderr


def test_unknown_backend_and_key(sesamed):
    s = sesamed(routes=ROUTES, start=False,
                more='storage = { backend = "oracle", mariadb = { sock = "x" } }\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "storage.backend: 'oracle' is not a loaded storage plugin" in r.stderr


def test_mariadb_keys_are_checked(sesamed, mariadb):
    s = sesamed(routes=ROUTES, start=False, more=mariadb.storage(mariadb.database).replace(
        'user = "root"', 'user = "root", sock = "x"'))
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "storage.mariadb.sock: unknown key (plugin mariadb does not read it)" in r.stderr


def test_storage_down_at_start_is_an_error(sesamed, tmp_path):
    s = sesamed(routes=ROUTES, start=False, more=(
        f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{tmp_path}/none.sock", '
        'user = "root", database = "x", connect_timeout = 1 } }\n'))
    r = subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "storage: cannot apply the schema: cannot connect to MariaDB" in r.stderr


def test_accents_make_two_accounts_letter_case_one(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    assert s.post("/create", json=dict(user(7), email="josé@example.com")).status_code == 200
    assert s.post("/create", json=dict(user(7), email="jose@example.com")).status_code == 200
    assert s.post("/create", json=dict(user(7), email="JOSÉ@example.com")).status_code == 409


def test_a_tutorial_table_without_a_unique_email_gets_one(sesamed, mariadb):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    mariadb.sql("CREATE TABLE user (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(80), "
                "email VARCHAR(120), password VARCHAR(200))", mariadb.database)
    storage = (f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{mariadb.socket}", '
               f'user = "root", database = "{mariadb.database}" }}, '
               'users = { table = "user" } }\n')
    s = sesamed(routes=ROUTES, more=storage)
    assert s.post("/create", json=user(8)).status_code == 200
    assert s.post("/create", json=user(8)).status_code == 409
    assert mariadb.sql("SELECT COUNT(*) FROM user", mariadb.database).stdout.strip() == "1"


def test_ids_are_found_only_in_their_own_form(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    uid = s.post("/create", json=user(9)).json()["id"]
    assert s.get("/find", params={"id": str(uid)}).status_code == 200
    for other in (f"{uid}abc", f"0{uid}", f" {uid}", f"{uid}.0", f"{uid}e0", f"{uid}@x.org"):
        assert s.get("/find", params={"id": other}).status_code == 404, other


def test_two_masters_migrating_at_once(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    ctl = str(Path(SESAMED).parent / "sesamectl")
    procs = [subprocess.Popen([ctl, "-c", str(s.config), "migrate"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = mariadb.sql("SELECT version FROM sesame_migrations ORDER BY version",
                       mariadb.database).stdout.split()
    migrations = sorted((Path(__file__).resolve().parents[2] / "scripts/schema/mariadb").glob(
        "[0-9]*.sql"))
    assert rows == [str(int(m.name[:3])) for m in migrations]


def test_a_server_restart_costs_no_request(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database))
    assert s.post("/create", json=user(10)).status_code == 200
    for _ in range(10):
        assert s.get("/find", params={"email": "user10@example.com"}).status_code == 200
    mariadb.stop()
    mariadb.start()
    # Every pooled connection is now dead; none of these requests may see it.
    for _ in range(10):
        assert s.get("/find", params={"email": "user10@example.com"}).status_code == 200
    assert s.post("/create", json=user(11)).status_code == 200


def test_update_of_a_missing_user_finds_nobody(sesamed, mariadb):
    s = sesamed(routes={"u.lua": 'local sesame = require "sesame"\n'
                        'sesame.route("POST", "/update", function(req)\n'
                        '  local b = req:json()\n'
                        '  local id = sesame.users.update { id = b.id, password = b.password }\n'
                        '  return 200, { id = id or sesame.null }\n'
                        'end)\n', **ROUTES}, more=mariadb.storage(mariadb.database))
    uid = s.post("/create", json=user(12)).json()["id"]
    assert s.post("/update", json={"id": uid, "password": "$new"}).json() == {"id": uid}
    assert s.get("/find", params={"id": str(uid)}).json()["password"] == "$new"
    assert s.post("/update", json={"id": uid + 1000, "password": "$x"}).json() == {"id": None}
    assert s.post("/update", json={"id": uid, "email": "x@y.z"}).status_code == 500


def test_the_pool_reads_its_table_whatever_the_backend(sesamed):
    s = sesamed(routes=ROUTES, start=False, more=(
        'storage = { backend = "sqlite", sqlite = { path = "sesame.db" },\n'
        '  mariadb = { pool = 0, sock = "x" } }\n'))
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "storage.mariadb.pool: 0 is out of range (1 to 256)" in r.stderr
    assert "storage.mariadb.sock: unknown key (the MariaDB pool does not read it)" in r.stderr


@pytest.mark.parametrize("setting,message", [
    ('storage = "oops"', "storage: expected a table, found string"),
    ('storage = { backend = "mariadb", mariadb = "x" }',
     "storage.mariadb: expected a table, found string"),
])
def test_a_storage_table_of_the_wrong_type_is_reported_once(sesamed, setting, message):
    s = sesamed(routes=ROUTES, start=False, more=setting + "\n")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count(message) == 1, r.stderr


def test_an_old_schema_without_migrate_refuses_to_start(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database, "migrate = false"),
                start=False)
    ctl = [str(Path(SESAMED).parent / "sesamectl"), "-c", str(s.config), "migrate"]
    assert subprocess.run(ctl, capture_output=True, timeout=120).returncode == 0
    # The schema of the sesamed before: its last migration not applied.
    mariadb.sql("DROP TABLE sesame_events; DELETE FROM sesame_migrations WHERE version = 9",
                mariadb.database)
    r = subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert ("sesamed: storage: the schema is at version 8, this sesamed needs 9: run sesamectl "
            "migrate") in r.stderr
    assert "serving on" not in r.stderr
    assert subprocess.run(ctl, capture_output=True, timeout=120).returncode == 0
    s.start()
    assert s.post("/create", json=user(11)).status_code == 200
    assert s.get("/find", params={"email": "user11@example.com"}).status_code == 200
