"""MariaDB migrations run by several starters at once (sesamed nodes, sesamectl migrate), as
the nodes of a Galera cluster start: each migration applied once, a dead starter's claim taken
over, a database migrated by an older sesamed carried on."""
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import SESAMED, wait_for

CTL = str(Path(SESAMED).parent / "sesamectl")
MIGRATIONS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] /
                                     "scripts/schema/mariadb").glob("[0-9]*.sql"))
# The claim of a starter that died a minute ago.
STALE_CLAIM = ("INSERT INTO sesame_migration_claims (version, owner, claimed_ms, heartbeat_ms) "
               "VALUES ({version}, 'dead-host pid 1 #0', "
               "(UNIX_TIMESTAMP(UTC_TIMESTAMP(3)) - 60) * 1000, "
               "(UNIX_TIMESTAMP(UTC_TIMESTAMP(3)) - 60) * 1000)")


def migrate(config, n):
    return [subprocess.Popen([CTL, "-c", str(config), "migrate"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(n)]


def outputs(procs):
    """Waits for each sesamectl, which must succeed; their output, together."""
    text = ""
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Sanitizer" not in err and "runtime error:" not in err, err
        text += out + err
    return text


def recorded(mariadb):
    rows = mariadb.sql("SELECT name FROM sesame_migrations ORDER BY version",
                       mariadb.database).stdout.split()
    claims = mariadb.sql("SELECT COUNT(*) FROM sesame_migration_claims",
                         mariadb.database).stdout.strip()
    return rows, claims


def columns(mariadb, table):
    return mariadb.sql(f"SELECT column_name FROM information_schema.columns WHERE "
                       f"table_schema = '{mariadb.database}' AND table_name = '{table}' "
                       f"ORDER BY ordinal_position", mariadb.database).stdout.split()


def old_sesamed_database(mariadb, config):
    """The database as a sesamed of the migration before the last, with GET_LOCK, left it."""
    assert subprocess.run([CTL, "-c", str(config), "migrate"], capture_output=True,
                          timeout=120).returncode == 0
    last = int(MIGRATIONS[-1][:3])
    mariadb.sql("DROP TABLE sesame_migration_claims; DROP TABLE sesame_events; "
                f"DELETE FROM sesame_migrations WHERE version = {last}", mariadb.database)


def reader_holding_users(mariadb, config):
    """002_unique_email to do again, held up by a reader's open transaction on users (the
    CREATE INDEX of a starter waits for its metadata lock): the reader."""
    assert subprocess.run([CTL, "-c", str(config), "migrate"], capture_output=True,
                          timeout=120).returncode == 0
    mariadb.sql("ALTER TABLE users DROP INDEX users_email; "
                "DELETE FROM sesame_migrations WHERE version = 2", mariadb.database)
    reader = subprocess.Popen(["mariadb", "--no-defaults", "-uroot", f"--socket={mariadb.socket}",
                               mariadb.database], stdin=subprocess.PIPE, text=True,
                              stdout=subprocess.DEVNULL)
    # Its user lock, taken after its read, says that it holds users.
    held = f"{mariadb.database} reader"
    reader.stdin.write(f"START TRANSACTION; SELECT COUNT(*) FROM users; "
                       f"SELECT GET_LOCK('{held}', 0);\n")
    reader.stdin.flush()
    assert wait_for(lambda: mariadb.sql(f"SELECT IS_USED_LOCK('{held}') IS NOT NULL")
                    .stdout.strip() == "1")
    return reader


def held_on_the_lock(mariadb, starter):
    """Waits until starter has claimed 002_unique_email and waits for the reader's lock."""
    assert wait_for(lambda: f"pid {starter.pid} #" in mariadb.sql(
        "SELECT owner FROM sesame_migration_claims WHERE version = 2", mariadb.database).stdout)
    assert wait_for(lambda: "metadata lock" in mariadb.sql("SHOW PROCESSLIST").stdout)


def test_six_starters_at_once_apply_each_migration_once(sesamed, mariadb):
    storage = mariadb.storage(mariadb.database)
    nodes = [sesamed(more=storage, start=False) for _ in range(2)]
    procs = migrate(nodes[0].config, 4)
    for s in nodes:
        s.start(wait=False)
    text = outputs(procs)
    for s in nodes:
        s.wait_ready(timeout=60)
        text += s.log()
    for name in MIGRATIONS:
        assert text.count(f"applied migration {name}") == 1, text
    assert recorded(mariadb) == (MIGRATIONS, "0")
    assert columns(mariadb, "sesame_user_state") == ["user_id", "disabled_at", "verified_at"]
    assert columns(mariadb, "users") == ["id", "email", "username", "password", "created_at",
                                         "updated_at"]
    tables = mariadb.sql("SHOW TABLES", mariadb.database).stdout.split()
    assert {"sesame_events", "sesame_onetime_tokens", "sesame_refresh_families",
            "sesame_revoked_tokens", "sesame_login_failures"} <= set(tables)
    # Started again, nobody finds anything to do.
    assert "applied migration" not in outputs(migrate(nodes[0].config, 2))


def test_a_dead_starters_claim_is_taken_over(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    assert subprocess.run([CTL, "-c", str(s.config), "migrate"], capture_output=True,
                          timeout=120).returncode == 0
    last = MIGRATIONS[-1]
    mariadb.sql(f"DROP TABLE sesame_events; DELETE FROM sesame_migrations WHERE version = "
                f"{int(last[:3])}; " + STALE_CLAIM.format(version=int(last[:3])),
                mariadb.database)
    text = outputs(migrate(s.config, 3))
    assert text.count("its claim by dead-host pid 1 #0 has had no heartbeat") == 1, text
    assert text.count(f"applied migration {last}") == 1, text
    assert recorded(mariadb) == (MIGRATIONS, "0")
    assert "at_ms" in columns(mariadb, "sesame_events")


def test_a_starter_killed_mid_migration_is_replaced(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    reader = reader_holding_users(mariadb, s.config)
    try:
        first = migrate(s.config, 1)[0]
        owner = f"pid {first.pid} #"
        held_on_the_lock(mariadb, first)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        reader.stdin.close()
        reader.wait(30)
    text = outputs(migrate(s.config, 2))
    assert re.search(r"migration 002_unique_email: its claim by \S+ " + re.escape(owner), text)
    assert text.count("applied migration 002_unique_email") == 1, text
    assert recorded(mariadb) == (MIGRATIONS, "0")
    index = mariadb.sql("SHOW INDEX FROM users WHERE key_name = 'users_email'",
                        mariadb.database).stdout
    assert index.split()[1] == "0"  # Non_unique: 0


def test_a_starter_whose_claim_was_taken_over_waits_for_the_taker(sesamed, mariadb, tmp_path):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    # 002_unique_email is one statement: the first finds its claim lost only when it records
    # the migration done.
    reader = reader_holding_users(mariadb, s.config)
    log = tmp_path / "first.err"
    with open(log, "w") as err:
        first = subprocess.Popen([CTL, "-c", str(s.config), "migrate"], stdout=err, stderr=err)
    try:
        held_on_the_lock(mariadb, first)
        # Another starter, which saw the first's heartbeat stall, takes the claim over; its
        # own heartbeat never ages.
        mariadb.sql("UPDATE sesame_migration_claims SET owner = 'taker pid 2 #0', "
                    "heartbeat_ms = (UNIX_TIMESTAMP(UTC_TIMESTAMP(3)) + 600) * 1000 "
                    "WHERE version = 2", mariadb.database)
    finally:
        reader.stdin.close()
        reader.wait(30)
    try:
        assert wait_for(lambda: "its claim was taken over" in log.read_text(), timeout=60), \
            log.read_text()
        # The first ran 002's statement but records nothing, nor goes on, while the taker
        # applies 002 again.
        assert first.poll() is None
        assert recorded(mariadb) == ([m for m in MIGRATIONS if m != "002_unique_email"], "1")
        mariadb.sql("START TRANSACTION; DELETE FROM sesame_migration_claims WHERE version = 2; "
                    "INSERT INTO sesame_migrations (version, name) VALUES "
                    "(2, '002_unique_email'); COMMIT", mariadb.database)
        assert first.wait(60) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    text = log.read_text()
    assert "Sanitizer" not in text and "runtime error:" not in text, text
    assert "applied migration 002_unique_email" not in text, text
    assert recorded(mariadb) == (MIGRATIONS, "0")


def test_an_old_sesameds_database_is_carried_on(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    old_sesamed_database(mariadb, s.config)
    before = mariadb.sql("SELECT version, applied_at FROM sesame_migrations ORDER BY version",
                         mariadb.database).stdout
    text = outputs(migrate(s.config, 3))
    assert text.count(f"applied migration {MIGRATIONS[-1]}") == 1, text
    assert "applied migration" not in text.replace(f"applied migration {MIGRATIONS[-1]}", "")
    assert recorded(mariadb) == (MIGRATIONS, "0")
    after = mariadb.sql("SELECT version, applied_at FROM sesame_migrations ORDER BY version",
                        mariadb.database).stdout
    assert after.startswith(before)


def test_a_failing_migration_is_reported_by_every_starter(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    assert subprocess.run([CTL, "-c", str(s.config), "migrate"], capture_output=True,
                          timeout=120).returncode == 0
    # Two users of one address: 002_unique_email cannot make its index.
    mariadb.sql("ALTER TABLE users DROP INDEX users_email; "
                "DELETE FROM sesame_migrations WHERE version = 2; "
                "INSERT INTO users (email, username, password) VALUES ('a@example.com', 'a', "
                "'x'), ('A@example.com', 'b', 'x')", mariadb.database)
    procs = migrate(s.config, 3)
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 1
        assert "Sanitizer" not in err and "runtime error:" not in err, err
        assert "MariaDB: migration 002_unique_email: Duplicate entry" in err, err
    assert mariadb.sql("SELECT COUNT(*) FROM sesame_migration_claims",
                       mariadb.database).stdout.strip() == "0"
    assert "002_unique_email" not in recorded(mariadb)[0]
