"""Storage ABI 1.1 from route scripts: one-time tokens, route scripts' own statements
(sesame.db), users.update's email and verified, users.delete; on SQLite and on MariaDB."""
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, TOP, route_file, wait_for

ROUTES = {"onetime_db.lua": route_file("onetime_db.lua")}
SECRET = "onetime-db-tests-secret-0123456789abcdef"
JWT = f'jwt = {{ secret = "{SECRET}" }}\n'
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" }, query_rows = 5 }\n'
CTL = str(Path(SESAMED).parent / "sesamectl")

# An operator's table, as each store spells it.
ROLES = {
    "sqlite": "CREATE TABLE roles (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL "
              "UNIQUE, score REAL, note TEXT)",
    "mariadb": "CREATE TABLE roles (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT "
               "NULL UNIQUE, score DOUBLE, note TEXT) ENGINE=InnoDB",
}


@pytest.fixture(params=["sqlite", "mariadb"])
def app(request, sesamed):
    if request.param == "sqlite":
        storage = SQLITE
    else:
        db = request.getfixturevalue("mariadb")
        storage = db.storage(db.database, "query_rows = 5")
    s = sesamed(routes=ROUTES, more=storage + JWT)
    s.backend = request.param
    s.db = None if request.param == "sqlite" else db
    return s


def count_rows(s, table):
    """The rows of one of sesame's tables, read from outside sesamed."""
    if s.db is not None:
        return int(s.db.sql(f"SELECT COUNT(*) FROM {table}", s.db.database).stdout)
    db = sqlite3.connect(s.dir / "sesame.db")
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def new_user(s, n):
    r = s.post("/user", json={"email": f"user{n}@example.com"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def issue(s, user, purpose="verify", **options):
    r = s.post("/otp/issue", json={"purpose": purpose, "user": user, **options})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def spend(s, token, purpose="verify"):
    return s.post("/otp/spend", json={"purpose": purpose, "token": token})


# ---- one-time tokens ----

def test_a_token_is_spent_once(app):
    uid = new_user(app, 1)
    token = issue(app, uid, data="new@example.com")
    assert len(token) == 43 and set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert token != issue(app, uid)
    r = spend(app, token)
    assert r.status_code == 200
    assert r.json() == {"user": uid, "data": "new@example.com"}
    assert spend(app, token).status_code == 404
    # Without data, none comes back.
    r = spend(app, issue(app, uid, purpose="reset"), purpose="reset")
    assert r.json() == {"user": uid}


def test_a_token_is_never_stored(app):
    uid = new_user(app, 1)
    token = issue(app, uid)
    if app.backend == "sqlite":
        rows = sqlite3.connect(app.dir / "sesame.db").execute(
            "SELECT hash, purpose, user_id FROM sesame_onetime_tokens").fetchall()
        assert len(rows) == 1 and rows[0][1:] == ("verify", uid)
        assert len(rows[0][0]) == 64 and token not in rows[0][0]
    assert token not in app.log()


def test_an_expired_token_is_refused(app):
    uid = new_user(app, 1)
    token = issue(app, uid, ttl=1)
    time.sleep(2.2)
    assert spend(app, token).status_code == 404


def test_expired_tokens_are_purged_from_storage(app):
    uid = new_user(app, 1)
    for purpose in ("verify", "reset", "email"):
        issue(app, uid, purpose, ttl=4)
    kept = issue(app, uid, "reset", ttl=3600)
    # Not expired yet (seconds of margin on a busy machine), so no purge can have taken them.
    assert count_rows(app, "sesame_onetime_tokens") == 4
    time.sleep(4.5)
    # Expired: the purge deletes them. It runs every minute, and whenever a worker takes over
    # the node's revocation lease, as the first worker of a start does.
    assert app.stop() == 0
    app.start()
    assert wait_for(lambda: count_rows(app, "sesame_onetime_tokens") == 1), app.log()
    assert spend(app, kept, "reset").json() == {"user": uid}
    assert count_rows(app, "sesame_onetime_tokens") == 0


def test_a_token_of_another_purpose_is_refused(app):
    uid = new_user(app, 1)
    token = issue(app, uid, purpose="reset")
    assert spend(app, token, purpose="verify").status_code == 404
    # Still there for its own purpose: a foreign spend does not use it up.
    assert spend(app, token, purpose="reset").json()["user"] == uid


@pytest.mark.parametrize("token", ["", "short", "A" * 42 + "=", "A" * 44, "A" * 42 + "!",
                                   "' OR 1=1 --" + "A" * 32])
def test_a_malformed_token_is_refused_without_a_storage_call(app, token):
    new_user(app, 1)
    assert spend(app, token).status_code == 404
    metrics = requests.get(app.url + "/metrics", timeout=10).text.splitlines()
    spends = [line for line in metrics if 'op="otp_spend"' in line]
    assert spends and all(line.endswith(" 0") for line in spends), spends


def test_revoke_deletes_a_users_tokens(app):
    a, b = new_user(app, 1), new_user(app, 2)
    verify_a, reset_a, verify_b = issue(app, a), issue(app, a, "reset"), issue(app, b)
    assert app.post("/otp/revoke", json={"user": a, "purpose": "verify"}).json() == {
        "revoked": True}
    assert spend(app, verify_a).status_code == 404
    assert spend(app, reset_a, "reset").status_code == 200
    reset_a = issue(app, a, "reset")
    app.post("/otp/revoke", json={"user": a})
    assert spend(app, reset_a, "reset").status_code == 404
    assert spend(app, verify_b).json()["user"] == b


def check(s, token, purpose="verify"):
    return s.post("/otp/check", json={"purpose": purpose, "token": token})


def test_a_checked_token_stays_until_it_is_spent(app):
    uid = new_user(app, 1)
    token = issue(app, uid, purpose="reset", data="a@example.com")
    for _ in range(2):
        r = check(app, token, "reset")
        assert r.status_code == 200 and r.json() == {"user": uid, "data": "a@example.com"}
    assert check(app, token, "verify").status_code == 404
    assert spend(app, token, "reset").json() == {"user": uid, "data": "a@example.com"}
    assert check(app, token, "reset").status_code == 404
    expiring = issue(app, uid, ttl=1)
    assert check(app, expiring).json() == {"user": uid}
    time.sleep(2.2)
    assert check(app, expiring).status_code == 404
    assert check(app, "A" * 42 + "!").status_code == 404
    metrics = requests.get(app.url + "/metrics", timeout=10).text.splitlines()
    finds = [line for line in metrics if 'op="otp_find"' in line and 'result="ok"' in line]
    assert finds and finds[0].endswith(" 3"), finds
    assert token not in app.log()


def test_a_token_of_no_user_yet(app):
    token = issue(app, 0, data='{"email":"new@example.com"}')
    assert spend(app, token).json() == {"user": 0, "data": '{"email":"new@example.com"}'}


def test_an_error_after_the_spent_row_is_no_spend(sesamed, mariadb):
    """A statement that fails once its row was sent (here a trigger's error; in a cluster, a
    commit that loses certification) spent nothing, and must not say it did."""
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database) + JWT)
    uid = new_user(s, 1)
    token = issue(s, uid)
    mariadb.sql("CREATE TRIGGER refuse_spend AFTER DELETE ON sesame_onetime_tokens FOR EACH "
                "ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'",
                mariadb.database)
    assert spend(s, token).status_code == 500
    assert check(s, token).json() == {"user": uid}
    s.wait_log("refused by a trigger")
    mariadb.sql("DROP TRIGGER refuse_spend", mariadb.database)
    assert spend(s, token).json() == {"user": uid}


def test_two_spends_at_once_one_wins(app):
    uid = new_user(app, 1)
    for _ in range(3):
        token = issue(app, uid)
        codes, start = [], threading.Barrier(8)

        def go():
            start.wait()
            codes.append(spend(app, token).status_code)

        threads = [threading.Thread(target=go) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [200] + [404] * 7


def test_bad_purposes_and_options_raise(app):
    uid = new_user(app, 1)
    for body in ({"purpose": "Verify", "user": uid}, {"purpose": "x" * 33, "user": uid},
                 {"purpose": "verify", "user": -1}, {"purpose": "verify", "user": uid, "ttl": 0},
                 {"purpose": "verify", "user": uid, "data": "x" * 1025}):
        assert app.post("/otp/issue", json=body).status_code == 500
    app.wait_log("a purpose is 1 to 32 characters")
    app.wait_log("ttl is whole seconds")


# ---- sesame.json ----

def test_json_text_both_ways(sesamed):
    s = sesamed(routes=ROUTES, more=SQLITE + JWT)
    r = s.post("/json", json={"value": {"a": [1, 2.5, "x\u00e9\"", None, True, []]},
                              "text": '{"email": "\u00e9@example.com", "n": [1, null]}'})
    assert r.status_code == 200, s.log()
    body = r.json()
    assert body["encoded"] == '{"a":[1,2.5,"x\u00e9\\"",null,true,[]]}'
    assert body["decoded"] == {"email": "\u00e9@example.com", "n": [1, None]}
    assert "sesame.json.encode:" in body["raised"]
    for text in ("not json", '{"a": 1, "a": 2}', "[" * 100 + "]" * 100):
        body = s.post("/json", json={"value": 1, "text": text}).json()
        assert "decoded" not in body and body["err"], (text, body)


# ---- users ----

def test_verified_round_trip(app):
    uid = new_user(app, 1)
    assert app.get("/user", params={"id": uid}).json()["verified"] is False
    assert app.post("/user/update", json={"id": uid, "verified": True}).json() == {"id": uid}
    assert app.get("/user", params={"id": uid}).json()["verified"] is True
    r = subprocess.run([CTL, "-c", str(app.config), "user", "show", "user1@example.com"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "verified: 20" in r.stdout, r.stdout + r.stderr
    app.post("/user/update", json={"id": uid, "verified": False})
    assert app.get("/user", params={"id": uid}).json()["verified"] is False
    r = subprocess.run([CTL, "-c", str(app.config), "user", "verify", "USER1@example.com"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert app.get("/user", params={"id": uid}).json()["verified"] is True


def test_email_update_and_its_conflict(app):
    a, b = new_user(app, 1), new_user(app, 2)
    assert app.post("/user/update", json={"id": a, "email": "new@example.com"}).json() == {
        "id": a}
    assert app.get("/user", params={"id": a}).json()["email"] == "new@example.com"
    # The same address again is no change, and no conflict.
    assert app.post("/user/update", json={"id": a, "email": "new@example.com"}).status_code == 200
    r = app.post("/user/update", json={"id": b, "email": "NEW@example.com"})
    assert r.status_code == 409 and r.json()["error"] == "exists"
    assert app.get("/user", params={"id": b}).json()["email"] == "user2@example.com"
    assert app.post("/user/update", json={"id": 999, "email": "x@example.com"}).status_code == 404


def test_delete_revokes_tokens_and_one_time_tokens(app):
    uid, other = new_user(app, 1), new_user(app, 2)
    access = app.post("/login", json={"id": uid}).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert app.get("/me", headers=headers).status_code == 200
    token, kept = issue(app, uid), issue(app, other)
    assert app.post("/user/delete", json={"id": uid}).status_code == 200
    deadline = time.monotonic() + 3
    while app.get("/me", headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "the deleted user's token is still accepted"
        time.sleep(0.1)
    assert app.get("/me", headers=headers).status_code == 401
    assert app.get("/user", params={"id": uid}).status_code == 404
    assert spend(app, token).status_code == 404
    assert spend(app, kept).json()["user"] == other
    assert app.post("/user/delete", json={"id": uid}).status_code == 404


# ---- sesame.db ----

def query(s, sql, *args):
    return s.post("/db/query", json={"sql": sql, "args": list(args)})


def execute(s, sql, *args):
    return s.post("/db/exec", json={"sql": sql, "args": list(args)})


def test_an_operators_table(app):
    assert execute(app, ROLES[app.backend]).status_code == 200
    r = execute(app, "INSERT INTO roles (name, score, note) VALUES (?, ?, ?)", "admin", 1.5,
                "it's 'quoted'")
    assert r.status_code == 200 and r.json() == {"affected": 1, "insert_id": 1}
    r = execute(app, "INSERT INTO roles (name, score, note) VALUES (?, ?, ?)", "guest", None,
                None)
    assert r.json() == {"affected": 1, "insert_id": 2}
    rows = query(app, "SELECT id, name, score, note FROM roles ORDER BY id").json()["rows"]
    assert rows == [{"id": 1, "name": "admin", "score": 1.5, "note": "it's 'quoted'"},
                    {"id": 2, "name": "guest", "score": None, "note": None}]
    assert query(app, "SELECT name FROM roles WHERE score IS NULL").json()["rows"] == [
        {"name": "guest"}]
    r = execute(app, "UPDATE roles SET score = ? WHERE name <> ?", 3, "nobody")
    assert r.json() == {"affected": 2, "insert_id": 0}
    assert query(app, "SELECT COUNT(*) AS n FROM roles").json()["rows"] == [{"n": 2}]
    assert query(app, "SELECT name FROM roles WHERE id > ?", 99).json()["rows"] == []


def test_every_kind_of_value(app):
    execute(app, ROLES[app.backend])
    execute(app, "CREATE TABLE kinds (a INTEGER, b DOUBLE PRECISION, c TEXT, d INTEGER, "
                 "e TEXT, f TEXT)")
    r = app.post("/db/kinds", json={"insert": "INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)",
                                    "select": "SELECT a, b, c, d, e, f FROM kinds"})
    assert r.status_code == 200, app.log()
    assert r.json()["rows"] == [{"a": 7, "b": 2.5, "c": "it's", "d": 1, "e": None, "f": None}]
    assert app.post("/db/bad-value", json={}).status_code == 500
    app.wait_log("sesame.db.query: value 1 is a table")


def test_a_parameter_stays_data(app):
    execute(app, ROLES[app.backend])
    execute(app, "INSERT INTO roles (name) VALUES (?)", "admin")
    attack = "x' OR '1'='1"
    assert query(app, "SELECT name FROM roles WHERE name = ?", attack).json()["rows"] == []
    execute(app, "INSERT INTO roles (name) VALUES (?)", "'); DROP TABLE roles; --")
    rows = query(app, "SELECT name FROM roles ORDER BY id").json()["rows"]
    assert rows == [{"name": "admin"}, {"name": "'); DROP TABLE roles; --"}]


def test_a_second_statement_is_refused(app):
    execute(app, ROLES[app.backend])
    r = execute(app, "INSERT INTO roles (name) VALUES ('a'); DROP TABLE roles")
    assert r.status_code == 500
    assert query(app, "SELECT COUNT(*) AS n FROM roles").json()["rows"] == [{"n": 0}]
    assert execute(app, "BEGIN").status_code == 500
    # The connection went back to the pool in autocommit: this row stays.
    execute(app, "INSERT INTO roles (name) VALUES (?)", "kept")
    time.sleep(0.2)
    assert query(app, "SELECT name FROM roles").json()["rows"] == [{"name": "kept"}]


def test_too_many_rows_raise(app):
    execute(app, ROLES[app.backend])
    for i in range(6):
        execute(app, "INSERT INTO roles (name) VALUES (?)", f"r{i}")
    assert len(query(app, "SELECT name FROM roles LIMIT 5").json()["rows"]) == 5
    assert query(app, "SELECT name FROM roles").status_code == 500
    app.wait_log("more than 5 rows (storage.query_rows)")


def test_a_duplicate_key_is_exists(app):
    execute(app, ROLES[app.backend])
    assert execute(app, "INSERT INTO roles (name) VALUES (?)", "admin").status_code == 200
    r = execute(app, "INSERT INTO roles (name) VALUES (?)", "admin")
    assert r.status_code == 409 and r.json()["error"] == "exists"
    assert query(app, "SELECT nosuchcolumn FROM roles").status_code == 500
    assert query(app, "SELECT name FROM roles WHERE name = ?").status_code == 500


def test_sesame_db_with_storage_down_is_503(sesamed, own_mariadb):
    s = sesamed(routes=ROUTES, more=own_mariadb.storage("down") + JWT)
    assert execute(s, ROLES["mariadb"]).status_code == 200
    own_mariadb.stop()
    for r in (query(s, "SELECT name FROM roles"),
              execute(s, "INSERT INTO roles (name) VALUES (?)", "admin")):
        assert r.status_code == 503, r.text
        assert r.json() == {"result": "fail", "error": "storage unavailable"}
    own_mariadb.start()
    assert wait_for(lambda: query(s, "SELECT COUNT(*) AS n FROM roles").status_code == 200, 20)
    assert query(s, "SELECT COUNT(*) AS n FROM roles").json()["rows"] == [{"n": 0}]


# ---- sesame.db on SQLite: the pooled connection stays as sesame's own statements need it ----

USERS = (TOP / "etc/sesame/routes/users.lua").read_text()
RUNAWAY = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) AS n FROM c")


@pytest.fixture
def lite(sesamed):
    """SQLite, one worker of two job threads, a short query_timeout, and the shipped
    registration and log-in beside the test routes."""
    storage = ('storage = { backend = "sqlite", sqlite = { path = "sesame.db", '
               'query_timeout = 300 } }\n')
    return sesamed(routes={**ROUTES, "users.lua": USERS}, config="threads = 2", workers=1,
                   more=storage + JWT)


def attempt(s, sql, *args):
    r = s.post("/db/try", json={"sql": sql, "args": list(args)})
    assert r.status_code == 200, r.text
    return r.json()


def register_and_log_in(s, n):
    person = {"email": f"person{n}@example.com", "username": f"person{n}",
              "password": "correct horse battery"}
    r = s.post("/users/register", json=person)
    assert r.status_code == 200, r.text
    r = s.post("/users/login", json={"email": person["email"], "password": person["password"]})
    assert r.status_code == 200 and r.json()["access_token"], r.text


def test_a_runaway_statement_is_stopped(lite):
    # More runaways than the worker has job threads: each one gives its thread back.
    for _ in range(3):
        assert attempt(lite, RUNAWAY) == {
            "error": "storage: SQLite: the statement took longer than 300 ms "
                     "(storage.sqlite.query_timeout) and was stopped"}
    register_and_log_in(lite, 1)
    assert attempt(lite, "SELECT COUNT(*) AS n FROM users") == {"rows": [{"n": 1}]}
    # A statement that ends in time is not stopped.
    assert attempt(lite, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                         "WHERE x < 1000) SELECT count(*) AS n FROM c") == {"rows": [{"n": 1000}]}


def test_statements_that_would_change_the_connection_are_refused(lite):
    copy = lite.dir / "copy.db"
    refused = [
        ("PRAGMA query_only = 1", (), "PRAGMA query_only"),
        ("PRAGMA foreign_keys = OFF", (), "PRAGMA foreign_keys"),
        ("PRAGMA synchronous = OFF", (), "PRAGMA synchronous"),
        ("PRAGMA writable_schema = ON", (), "PRAGMA writable_schema"),
        ("ATTACH ? AS other", (str(copy),), "ATTACH, DETACH or VACUUM"),
        ("DETACH other", (), "ATTACH, DETACH or VACUUM"),
        ("VACUUM INTO ?", (str(copy),), "ATTACH, DETACH or VACUUM"),
        ("VACUUM", (), "ATTACH, DETACH or VACUUM"),
        ("CREATE TEMP TABLE users (id INTEGER)", (), "a temporary table or index"),
        ("CREATE TEMP TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM users; END", (),
         "a trigger or view"),
        ("CREATE VIEW temp.v AS SELECT 1", (), "a trigger or view"),
        # Persistent ones too: they would run inside sesame's own statements, unguarded.
        ("CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM users; END", (),
         "a trigger or view"),
        ("CREATE VIEW v AS SELECT * FROM users", (), "a trigger or view"),
        # fts3_tokenizer hands out a library address, and registers a caller's pointer.
        ("SELECT hex(fts3_tokenizer('simple')) AS p", (), "the function fts3_tokenizer"),
        ("SELECT fts3_tokenizer('mine', ?)", ("AAAAAAAA",), "the function fts3_tokenizer"),
        ("SELECT load_extension(?)", (str(copy),), "the function load_extension"),
    ]
    for sql, args, kind in refused:
        assert attempt(lite, sql, *args) == {
            "error": f"storage: SQLite: a route script's statement may not use {kind}"}, sql
    assert not copy.exists()
    db = sqlite3.connect(lite.dir / "sesame.db")
    assert db.execute("SELECT COUNT(*) FROM sqlite_schema WHERE type IN ('trigger', 'view')"
                      ).fetchone() == (0,)
    db.close()
    # sesame's own statements run as before on the same connections: a write (query_only,
    # the temporary table and triggers would have stopped it) and a log-in.
    register_and_log_in(lite, 1)
    register_and_log_in(lite, 2)
    db = sqlite3.connect(lite.dir / "sesame.db")
    assert db.execute("SELECT COUNT(*) FROM users").fetchone() == (2,)
    assert db.execute("SELECT COUNT(*) FROM sesame_refresh_families").fetchone()[0] >= 2
    # The pragmas that only describe a table, and the operator's own temporary-free DDL, work.
    names = {row["name"] for row in attempt(lite, "PRAGMA table_info(users)")["rows"]}
    assert {"id", "email", "password"} <= names
    assert attempt(lite, "SELECT name FROM pragma_table_info('users') WHERE pk = 1") == {
        "rows": [{"name": "id"}]}
    assert attempt(lite, "CREATE TABLE roles (user_id INTEGER, role TEXT)") == {"rows": []}


# ---- migrations ----

def test_a_database_of_the_previous_schema_is_migrated(sesamed):
    s = sesamed(routes=ROUTES, more=SQLITE + JWT, start=False)
    ctl = [CTL, "-c", str(s.config)]
    assert subprocess.run(ctl + ["migrate"], capture_output=True, timeout=60).returncode == 0
    # The schema of the sesamed before ABI 1.1, with a disabled user in it.
    db = sqlite3.connect(s.dir / "sesame.db")
    db.executescript("""
        DROP TABLE sesame_events; DROP TABLE sesame_onetime_tokens;
        ALTER TABLE sesame_user_state DROP COLUMN verified_at;
        DELETE FROM sesame_migrations WHERE version > 4;
        INSERT INTO users (email, username, password) VALUES ('old@example.com', 'old', 'x');
        INSERT INTO sesame_user_state (user_id, disabled_at) VALUES (1, 1700000000);
    """)
    db.close()
    s.start()
    s.wait_log("applied migration 007_events")
    user = s.get("/user", params={"id": 1}).json()
    assert user == {"id": 1, "email": "old@example.com", "verified": False}
    r = subprocess.run(ctl + ["user", "show", "old@example.com"], capture_output=True, text=True,
                       timeout=60)
    assert "disabled: 2023-11-14" in r.stdout and "verified: no" in r.stdout
    assert s.post("/user/update", json={"id": 1, "verified": True}).status_code == 200
    r = subprocess.run(ctl + ["user", "show", "old@example.com"], capture_output=True, text=True,
                       timeout=60)
    assert "disabled: 2023-11-14" in r.stdout and "verified: 20" in r.stdout
    assert spend(s, issue(s, 1)).json()["user"] == 1


def test_a_mariadb_of_the_previous_schema_is_migrated(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database) + JWT, start=False)
    assert subprocess.run([CTL, "-c", str(s.config), "migrate"], capture_output=True,
                          timeout=120).returncode == 0
    mariadb.sql("DROP TABLE sesame_events; DROP TABLE sesame_onetime_tokens; "
                "ALTER TABLE sesame_user_state DROP COLUMN verified_at; "
                "DELETE FROM sesame_migrations WHERE version > 6; "
                "INSERT INTO users (email, username, password) VALUES ('old@example.com', "
                "'old', 'x'); INSERT INTO sesame_user_state (user_id, disabled_at) VALUES "
                "(1, 1700000000)", mariadb.database)
    s.start()
    s.wait_log("applied migration 009_events")
    assert s.get("/user", params={"id": 1}).json() == {
        "id": 1, "email": "old@example.com", "verified": False}
    assert mariadb.sql("SELECT disabled_at FROM sesame_user_state WHERE user_id = 1",
                       mariadb.database).stdout.strip() == "1700000000"
    assert spend(s, issue(s, 1)).json()["user"] == 1
