"""sesame.db on MariaDB, where the pool's connections outlive a statement: a statement that
changes its session leaves no trace in the next one, and a result too wide to read fails
with a clear message. One worker with a pool of one connection, so that every statement
runs on the connection the previous one used (or on a new one)."""
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import route_file, wait_for

ROUTES = {"onetime_db.lua": route_file("onetime_db.lua")}
JWT = 'jwt = { secret = "db-mariadb-tests-secret-0123456789abcdef" }\n'


@pytest.fixture
def app(sesamed, mariadb):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    mariadb.sql(f"CREATE DATABASE IF NOT EXISTS `{mariadb.database}_other`")
    storage = (f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{mariadb.socket}", '
               f'user = "root", database = "{mariadb.database}", pool = 1 }} }}\n')
    s = sesamed(routes=ROUTES, more=storage + JWT, workers=1)
    s.db = mariadb
    return s


def query(s, sql, *args):
    r = s.post("/db/query", json={"sql": sql, "args": list(args)})
    assert r.status_code == 200, s.log()
    return r.json()["rows"]


def execute(s, sql, *args):
    return s.post("/db/exec", json={"sql": sql, "args": list(args)})


def connection_id(s):
    return query(s, "SELECT CONNECTION_ID() AS id")[0]["id"]


def test_a_plain_statement_keeps_its_pooled_connection(app):
    first = connection_id(app)
    assert execute(app, "CREATE TABLE t (x INT)").status_code == 200
    assert execute(app, "INSERT INTO t VALUES (?)", 1).status_code == 200
    assert query(app, "SELECT x FROM t") == [{"x": 1}]
    assert connection_id(app) == first


@pytest.mark.parametrize("change,check,untouched", [
    ("SET SESSION sql_mode = 'ANSI_QUOTES'", "SELECT @@SESSION.sql_mode AS v", None),
    ("SET time_zone = '+05:00'", "SELECT @@SESSION.time_zone AS v", "SYSTEM"),
    ("SET @leftover = 42", "SELECT @leftover AS v", None),
    ("SET NAMES latin1", "SELECT @@SESSION.character_set_client AS v", "utf8mb4"),
    ("SET SESSION TRANSACTION READ ONLY", "SELECT @@SESSION.tx_read_only AS v", 0),
    ("SET SESSION session_track_state_change = OFF",
     "SELECT @@SESSION.session_track_state_change AS v", 1),
])
def test_a_session_change_does_not_outlive_its_statement(app, change, check, untouched):
    before = query(app, check)[0]["v"]
    if untouched is not None:
        assert before == untouched
    first = connection_id(app)
    assert execute(app, change).status_code == 200, app.log()
    # The connection that carries the change is closed, not pooled: the next is a new one.
    assert connection_id(app) != first
    assert query(app, check)[0]["v"] == before


def test_use_of_another_database_does_not_outlive_its_statement(app):
    db = app.db.database
    assert execute(app, f"USE `{db}_other`").status_code == 200
    assert query(app, "SELECT DATABASE() AS d") == [{"d": db}]
    # sesame's own statements find their tables where they were.
    r = app.post("/user", json={"email": "after-use@example.com"})
    assert r.status_code == 200, app.log()


def test_a_temporary_table_does_not_outlive_its_statement(app):
    assert execute(app, "CREATE TEMPORARY TABLE scratch (x INT)").status_code == 200
    assert app.post("/db/query", json={"sql": "SELECT x FROM scratch", "args": []}) \
        .status_code == 500
    app.wait_log("scratch' doesn't exist")


def test_set_transaction_does_not_reach_sesames_next_statement(app):
    # Without the close, the next transaction on the connection (a user's insert) would be
    # read-only.
    assert execute(app, "SET TRANSACTION READ ONLY").status_code == 200
    r = app.post("/user", json={"email": "after-set@example.com"})
    assert r.status_code == 200, app.log()


def test_a_result_too_wide_to_read_fails_with_a_clear_message(app):
    columns = ", ".join(f"c{i} INT DEFAULT {i}" for i in range(70))
    assert execute(app, f"CREATE TABLE wide (id INT PRIMARY KEY, {columns})").status_code == 200
    assert execute(app, "INSERT INTO wide (id) VALUES (1), (2)").status_code == 200
    r = app.post("/db/query", json={"sql": "DELETE FROM wide WHERE id = 1 RETURNING *",
                                    "args": []})
    assert r.status_code == 500
    app.wait_log("the statement ran, but its result has 71 columns, more than 64")
    # It ran: the row is gone; and the connection serves the next statement.
    assert query(app, "SELECT id FROM wide") == [{"id": 2}]
    rows = query(app, "DELETE FROM wide WHERE id = 2 RETURNING id, c69")
    assert rows == [{"id": 2, "c69": 69}]
    # A result announced when prepared is refused before it runs.
    assert app.post("/db/query", json={"sql": "SELECT * FROM wide", "args": []}) \
        .status_code == 500
    app.wait_log("and 71 columns (at most 64)")


def test_rows_handed_over_before_a_lost_lock_are_not_handed_over_again(app):
    # Rows of 20 KB, each sent as it is read: the script has the first ones before the
    # statement waits for the third, which another session holds.
    assert execute(app, "CREATE TABLE big (id INT PRIMARY KEY, pad MEDIUMTEXT)") \
        .status_code == 200
    for i in range(1, 5):
        assert execute(app, "INSERT INTO big VALUES (?, REPEAT('x', 20000))", i) \
            .status_code == 200
    locker = subprocess.Popen(["mariadb", "--no-defaults", "-uroot",
                               f"--socket={app.db.socket}", app.db.database],
                              stdin=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL)
    try:
        # Its user lock, taken after the row's, says that it holds the row.
        held = f"{app.db.database} locker"
        locker.stdin.write("START TRANSACTION; SELECT id FROM big WHERE id = 3 FOR UPDATE; "
                           f"SELECT GET_LOCK('{held}', 0);\n")
        locker.stdin.flush()
        assert wait_for(lambda: app.db.sql(f"SELECT IS_USED_LOCK('{held}') IS NOT NULL")
                        .stdout.strip() == "1")
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(app.post, "/db/query", json={
                "sql": "SET STATEMENT innodb_lock_wait_timeout = 3 FOR "
                       "SELECT id, pad FROM big ORDER BY id FOR UPDATE", "args": []}, timeout=60)
            # Were the statement run again, the lock would be free for that run.
            wait_for(lambda: answer.done() or "lost a lock conflict (1205)" in app.log(),
                     timeout=30)
            locker.stdin.write("COMMIT;\n")
            locker.stdin.flush()
            r = answer.result()
    finally:
        locker.stdin.close()
        locker.wait(30)
    assert r.status_code == 503, app.log()
    assert "lost a lock conflict" not in app.log()
    # The rows are all there, and the connection serves the next statement.
    assert [row["id"] for row in query(app, "SELECT id FROM big ORDER BY id")] == [1, 2, 3, 4]
