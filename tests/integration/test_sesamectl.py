"""sesamectl: keygen, migrate, hash-bench, user, check and status, run as an operator would."""
import json
import os
import pty
import re
import resource
import signal
import socket
import sqlite3
import stat
import subprocess
import termios
import time
import uuid
from pathlib import Path

import jwt
import pytest

from conftest import SESAMED, wait_for

SESAMECTL = str(Path(SESAMED).parent / "sesamectl")


def ctl(*args):
    return subprocess.run([SESAMECTL, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("alg,length", [("HS256", 44), ("HS384", 64), ("HS512", 88)])
def test_keygen_writes_a_private_secret(tmp_path, alg, length):
    key = tmp_path / "jwt.key"
    r = ctl("keygen", "-a", alg, str(key))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = key.read_text()
    assert text.endswith("\n") and len(text.strip()) == length
    assert text.strip() not in r.stdout + r.stderr
    assert ctl("keygen", str(key)).returncode == 1  # never over an existing file
    assert key.read_text() == text


def test_keygen_refuses_other_algorithms(tmp_path):
    assert ctl("keygen", "-a", "none", str(tmp_path / "k")).returncode == 2
    assert not (tmp_path / "k").exists()


def test_a_generated_secret_signs_tokens(sesamed, tmp_path):
    s = sesamed(routes={"t.lua": 'local sesame = require "sesame"\n'
                        'sesame.route("GET", "/t", function() '
                        'return 200, { token = sesame.jwt.access(7) } end)\n'},
                more='jwt = { secret_file = "jwt.key", algorithm = "HS512" }\n', start=False)
    assert ctl("keygen", "-a", "HS512", str(s.dir / "jwt.key")).returncode == 0
    s.start()
    key = (s.dir / "jwt.key").read_text().strip()
    assert jwt.decode(s.get("/t").json()["token"], key, algorithms=["HS512"])["sub"] == "7"


def test_migrate(sesamed, mariadb):
    s = sesamed(more=mariadb.storage(mariadb.database, "migrate = false"), start=False)
    r = ctl("-c", str(s.config), "migrate")
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
    tables = mariadb.sql("SHOW TABLES", mariadb.database).stdout.split()
    assert "users" in tables and "sesame_migrations" in tables


def test_migrate_reports_an_unreachable_store(sesamed, tmp_path):
    s = sesamed(start=False, more=(
        f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{tmp_path}/none.sock", '
        'user = "x", database = "x", connect_timeout = 1 } }\n'))
    r = ctl("-c", str(s.config), "migrate")
    assert r.returncode == 1
    assert "cannot connect to MariaDB" in r.stderr


def test_hash_bench(sesamed):
    s = sesamed(start=False)
    r = ctl("-c", str(s.config), "hash-bench", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("argon2id: ")
    assert "$argon2id$v=19$m=19456,t=2,p=1)" in r.stdout
    assert "at once" not in r.stdout


def cpu_of(*args):
    """Runs sesamectl: its result, and the CPU seconds it and the children it waited for spent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = ctl(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def test_hash_bench_in_processes_at_once(sesamed):
    s = sesamed(start=False)
    one, cpu_one = cpu_of("-c", str(s.config), "hash-bench", "1", "1")
    assert one.returncode == 0, one.stderr
    alone, cpu_alone = cpu_of("-c", str(s.config), "hash-bench", "7", "1")
    assert alone.returncode == 0, alone.stderr
    r, cpu = cpu_of("-c", str(s.config), "hash-bench", "7", "3")
    assert r.returncode == 0, r.stderr
    # Each run loads the configuration once (much of its CPU time under the sanitizers), so the
    # time of one hash is the difference of seven and one: three processes hashing seven times
    # each spend some fourteen hashes more than one process alone.
    per_hash = (cpu_alone - cpu_one) / 6
    assert per_hash > 0, (cpu_one, cpu_alone)
    assert cpu - cpu_alone > 0.5 * 14 * per_hash, (cpu, cpu_alone, cpu_one, r.stdout)
    ms, each, together = re.fullmatch(
        r"argon2id: ([0-9.]+) ms per hash \(\$argon2id\$v=19\$m=19456,t=2,p=1\), about (\d+) "
        r"hashes per second per job thread; 3 at once: about (\d+) hashes per second in all\n",
        r.stdout).groups()
    for rate, threads in ((int(each), 1), (int(together), 3)):
        assert abs(rate - threads * 1000 / float(ms)) <= 0.02 * rate + 1, r.stdout
    for bad in (["2", "0"], ["2", "65"], ["0"]):
        r = ctl("-c", str(s.config), "hash-bench", *bad)
        assert r.returncode == 1 and "N is from 1 to 1000, P from 1 to 64" in r.stderr


def test_usage_errors():
    assert ctl().returncode == 2
    assert ctl("frobnicate").returncode == 2
    assert "migrate" in ctl("-h").stdout


# ---- user, check and status ----

SECRET = "sesamectl-tests-secret-0123456789abcdef"
USERS_ROUTES = {"users.lua": (Path(__file__).resolve().parents[2] / "etc/sesame/routes/users.lua")
                .read_text()}


@pytest.fixture(params=["sqlite", "mariadb"])
def app(request, sesamed):
    if request.param == "sqlite":
        storage = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
    else:
        db = request.getfixturevalue("mariadb")
        storage = db.storage(db.database)
    s = sesamed(routes=USERS_ROUTES, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n')
    s.ctl = lambda *args, input=None: subprocess.run(
        [SESAMECTL, "-c", str(s.config), *args], input=input, capture_output=True, text=True,
        timeout=120)
    return s


def login(s, email, password):
    return s.post("/users/login", json={"email": email, "password": password})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def me(s, access):
    return s.get("/users/me", headers=bearer(access)).status_code


def refresh(s, token):
    return s.post("/token/refresh", headers=bearer(token)).status_code


def test_user_add_reads_the_password_from_standard_input(app):
    r = app.ctl("user", "add", "Ann@Example.com", "--username", "ann", input="correct horse\n")
    assert r.returncode == 0, r.stderr
    assert "correct horse" not in r.stdout + r.stderr
    assert login(app, "ann@example.com", "correct horse").status_code == 200
    # The same address again, in another letter case: refused, nothing changed.
    r = app.ctl("user", "add", "ann@EXAMPLE.com", input="another horse\n")
    assert r.returncode == 4 and "already registered" in r.stderr
    assert login(app, "ann@example.com", "correct horse").status_code == 200


def test_user_add_keeps_to_the_policy(app):
    for args, stdin in ((["bob@example.com"], "short\n"), (["not an address"], "correct horse\n"),
                        (["bob@example.com"], "")):
        r = app.ctl("user", "add", *args, input=stdin)
        assert r.returncode in (1, 4), r
        assert r.returncode == (1 if stdin == "" else 4)
    assert "at least 8 characters" in app.ctl("user", "add", "bob@example.com",
                                              input="short\n").stderr
    r = app.ctl("user", "list", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_a_password_is_never_an_argument(app):
    r = app.ctl("user", "add", "ann@example.com", "correct horse", input="correct horse\n")
    assert r.returncode == 2
    assert app.ctl("user", "list", "--json").stdout.strip() == "[]"


def add(s, email, password="correct horse", username=None):
    args = ["user", "add", email] + (["--username", username] if username else [])
    r = s.ctl(*args, input=password + "\n")
    assert r.returncode == 0, r.stderr


def test_disable_and_enable(app):
    add(app, "ann@example.com")
    tokens = login(app, "ann@example.com", "correct horse").json()
    r = app.ctl("user", "disable", "ann@example.com")
    assert r.returncode == 0, r.stderr
    assert "1 session revoked" in r.stdout
    bad = login(app, "ann@example.com", "correct horse")
    assert bad.status_code == 401
    assert bad.json() == login(app, "ann@example.com", "wrong horse").json() == {
        "result": "fail", "error": "invalid email or password"}
    assert refresh(app, tokens["refresh_token"]) == 401
    assert wait_for(lambda: me(app, tokens["access_token"]) == 401, timeout=10)
    assert json.loads(app.ctl("user", "show", "ann@example.com", "--json").stdout)["disabled"]
    assert app.ctl("user", "enable", "ann@example.com").returncode == 0
    assert login(app, "ann@example.com", "correct horse").status_code == 200
    assert app.ctl("user", "disable", "nobody@example.com").returncode == 3


def test_passwd_logs_out_everywhere(app):
    add(app, "ann@example.com")
    old = login(app, "ann@example.com", "correct horse").json()
    assert app.ctl("user", "passwd", "ann@example.com", input="short\n").returncode == 4
    assert login(app, "ann@example.com", "correct horse").status_code == 200
    r = app.ctl("user", "passwd", "ann@example.com", input="battery staple\n")
    assert r.returncode == 0, r.stderr
    assert login(app, "ann@example.com", "correct horse").status_code == 401
    assert login(app, "ann@example.com", "battery staple").status_code == 200
    assert refresh(app, old["refresh_token"]) == 401
    assert wait_for(lambda: me(app, old["access_token"]) == 401, timeout=10)
    assert app.ctl("user", "passwd", "nobody@example.com", input="battery staple\n"
                   ).returncode == 3


def test_delete(app):
    add(app, "ann@example.com")
    tokens = login(app, "ann@example.com", "correct horse").json()
    r = app.ctl("user", "delete", "ann@example.com", input="")
    assert r.returncode == 4 and "--yes" in r.stderr
    assert login(app, "ann@example.com", "correct horse").status_code == 200
    r = app.ctl("user", "delete", "ann@example.com", "--yes")
    assert r.returncode == 0, r.stderr
    assert login(app, "ann@example.com", "correct horse").status_code == 401
    assert refresh(app, tokens["refresh_token"]) == 401
    assert me(app, tokens["access_token"]) == 401
    assert app.ctl("user", "show", "ann@example.com").returncode == 3
    assert app.ctl("user", "delete", "ann@example.com", "--yes").returncode == 3


def flask_token(sub, kind):
    """A token as flask-jwt-extended lays it out: no fam, so no revoked family reaches it."""
    now = int(time.time())
    return jwt.encode({"fresh": False, "iat": now, "nbf": now, "jti": str(uuid.uuid4()),
                       "type": kind, "sub": str(sub), "exp": now + 3600}, SECRET, algorithm="HS256")


def user_id(s, email):
    return json.loads(s.ctl("user", "show", email, "--json").stdout)["id"]


def test_a_deleted_users_flask_refresh_token_is_refused(app):
    add(app, "ann@example.com")
    sub = user_id(app, "ann@example.com")
    assert refresh(app, flask_token(sub, "refresh")) == 200
    kept = flask_token(sub, "refresh")
    assert app.ctl("user", "delete", "ann@example.com", "--yes").returncode == 0
    r = app.post("/token/refresh", headers=bearer(kept))
    assert r.status_code == 401 and r.json() == {"result": "fail", "error": "token revoked"}
    assert "invalid_token" in r.headers["WWW-Authenticate"]


def test_a_disabled_user_is_refused_by_users_me(app):
    add(app, "ann@example.com")
    access = flask_token(user_id(app, "ann@example.com"), "access")
    assert me(app, access) == 200
    assert app.ctl("user", "disable", "ann@example.com").returncode == 0
    r = app.get("/users/me", headers=bearer(access))
    assert r.status_code == 401 and r.json() == {"result": "fail", "error": "token revoked"}
    assert refresh(app, flask_token(user_id(app, "ann@example.com"), "refresh")) == 401
    assert app.ctl("user", "enable", "ann@example.com").returncode == 0
    # Enabled again, the user logs in; the token from before the disabling stays refused: it was
    # issued before the cutoff that disabling recorded (logged out everywhere), which every
    # worker learns within jwt.revocation_refresh.
    tokens = login(app, "ann@example.com", "correct horse").json()
    assert me(app, tokens["access_token"]) == 200
    assert wait_for(lambda: me(app, access) == 401, timeout=10)


def test_list_and_show(app):
    for i in range(5):
        add(app, f"u{i}@example.com", username=f"user{i}")
    app.ctl("user", "disable", "u3@example.com")
    rows = json.loads(app.ctl("user", "list", "--json").stdout)
    assert [r["email"] for r in rows] == [f"u{i}@example.com" for i in range(5)]
    assert [r["disabled"] for r in rows] == [False, False, False, True, False]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and all(r["created"] for r in rows)
    page = json.loads(app.ctl("user", "list", "--json", "--after", str(ids[1]), "--limit", "2"
                              ).stdout)
    assert [r["id"] for r in page] == ids[2:4]
    text = app.ctl("user", "list").stdout.splitlines()
    assert text[0].split() == ["ID", "EMAIL", "USERNAME", "CREATED", "DISABLED"]
    assert len(text) == 6 and text[4].split()[:3] == [str(ids[3]), "u3@example.com", "user3"]
    shown = json.loads(app.ctl("user", "show", "U1@example.com", "--json").stdout)
    assert shown == {**rows[1], "verified": False}
    r = app.ctl("user", "show", "u1@example.com")
    assert r.returncode == 0 and "username: user1" in r.stdout and "disabled: no" in r.stdout
    assert "verified: no" in r.stdout
    assert app.ctl("user", "list", "--limit", "0").returncode == 2
    assert app.ctl("user", "frobnicate").returncode == 2


def test_list_reads_a_tutorial_table_with_a_null_username(sesamed):
    s = sesamed(start=False, more=(
        'storage = { backend = "sqlite", sqlite = { path = "app.db" }, '
        'users = { table = "user" } }\n' f'jwt = {{ secret = "{SECRET}" }}\n'))
    db = sqlite3.connect(s.dir / "app.db")
    db.execute("CREATE TABLE user (id INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80), "
               "email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)")
    db.execute("INSERT INTO user (username, email, password) VALUES "
               "(NULL, 'old@example.com', '$pbkdf2-sha256$29000$abc$def')")
    db.commit()
    db.close()
    s.start()
    r = ctl("-c", str(s.config), "user", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert [(u["email"], u["username"]) for u in json.loads(r.stdout)] == [
        ("old@example.com", "")]
    r = ctl("-c", str(s.config), "user", "show", "old@example.com")
    assert r.returncode == 0 and "email:    old@example.com" in r.stdout, r.stderr


def run_in_pty(args, answers):
    """Runs args on a terminal, typing each answer after each prompt; its output and status."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out = b""
    for i, answer in enumerate(answers):
        # Typed before its prompt, an answer would be flushed with the echo turned off.
        while out.count(b"password: ") <= i:
            out += os.read(fd, 1024)
        os.write(fd, answer.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_passwords_are_asked_twice_without_echo(app):
    base = [SESAMECTL, "-c", str(app.config), "user", "add"]
    out, code = run_in_pty(base + ["ann@example.com"], ["correct horse", "correct horse"])
    assert code == 0, out
    assert "New password:" in out and "Retype the new password:" in out
    assert "correct horse" not in out
    assert login(app, "ann@example.com", "correct horse").status_code == 200
    out, code = run_in_pty(base + ["bob@example.com"], ["correct horse", "correct house"])
    assert code == 4 and "do not match" in out
    assert app.ctl("user", "show", "bob@example.com").returncode == 3


def test_ctrl_c_at_the_prompt_turns_the_echo_back_on(app):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(SESAMECTL, [SESAMECTL, "-c", str(app.config), "user", "add", "ann@example.com"])
    out = b""
    while b"password: " not in out:
        out += os.read(fd, 1024)
    assert not termios.tcgetattr(fd)[3] & termios.ECHO, "asked without echo"
    os.write(fd, b"correct\x03")  # half a password, then Ctrl-C
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT
    assert termios.tcgetattr(fd)[3] & termios.ECHO, "the echo is back on"
    os.close(fd)
    assert app.ctl("user", "show", "ann@example.com").returncode == 3


def test_a_password_longer_than_any_policy_is_refused(app):
    r = app.ctl("user", "add", "ann@example.com", input="x" * 20000 + "\n")
    assert r.returncode == 4 and "longer than 16383 bytes" in r.stderr
    assert app.ctl("user", "show", "ann@example.com").returncode == 3


def unstamped(log):
    return re.sub(r"^\S+ sesamed\[\d+\] ", "", log, flags=re.M)


def test_check_is_sesamed_t(sesamed):
    s = sesamed(start=False)
    for text in (None, "server = { workers = 0 }\n"):
        if text is not None:
            s.config.write_text(s.config.read_text() + text)
        ours = ctl("-c", str(s.config), "check")
        theirs = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True,
                                text=True, timeout=60)
        # Log lines carry the time and the process id: the rest is the same.
        assert (ours.returncode, ours.stdout, unstamped(ours.stderr)) == (
            theirs.returncode, theirs.stdout, unstamped(theirs.stderr))
        assert ours.returncode == (0 if text is None else 1)
    assert "configuration has errors" in ours.stderr


def status(s):
    r = ctl("-c", str(s.config), "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_from_the_master(sesamed):
    s = sesamed(workers=2)
    first = status(s)
    assert first["pid"] == s.proc.pid and first["generation"] == 1
    assert sorted(w["pid"] for w in first["workers"]) == s.workers()
    assert sorted(w["slot"] for w in first["workers"]) == [0, 1]
    assert {w["state"] for w in first["workers"]} == {"serving"}
    assert first["config"] == str(s.config)
    assert stat.S_IMODE(os.stat(s.dir / "control.sock").st_mode) == 0o660
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: status(s)["generation"] == 2 and {
        w["generation"] for w in status(s)["workers"]} == {2}, timeout=30)
    second = status(s)
    assert second["uptime"] > first["uptime"]
    assert sorted(w["pid"] for w in second["workers"]) == s.workers()
    text = ctl("-c", str(s.config), "status").stdout
    assert "generation: 2" in text and str(s.proc.pid) in text
    s.stop()
    assert not (s.dir / "control.sock").exists()


def test_status_reads_only_server_control(sesamed, tmp_path):
    s = sesamed(workers=1)
    sock = s.dir / "control.sock"
    # Storage that cannot be reached and a key file that is not there: status needs neither.
    other = tmp_path / "other.lua"
    other.write_text(f'server = {{ control = "{sock}" }}\n'
                     'storage = { backend = "mariadb", mariadb = { socket = "/nonexistent", '
                     'user = "x", database = "x" } }\n'
                     'jwt = { secret_file = "/nonexistent/jwt.key" }\n')
    r = ctl("-c", str(other), "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == s.proc.pid
    r = ctl("-c", "/nonexistent/sesame.lua", "status", "--socket", str(sock), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == s.proc.pid
    assert ctl("status", "--socket").returncode == 2
    assert ctl("status", "extra").returncode == 2


def test_status_without_a_master(sesamed):
    s = sesamed(start=False)
    r = ctl("-c", str(s.config), "status")
    assert r.returncode == 1
    assert "cannot reach the master" in r.stderr and "server.control" in r.stderr


def test_a_stale_control_socket_is_replaced(sesamed):
    s = sesamed(start=False)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(s.dir / "control.sock"))
    stale.close()
    s.start()
    assert status(s)["pid"] == s.proc.pid


# ---- tokens without a refresh family: the subject's cutoff ----

AUTH_ROUTES = dict(USERS_ROUTES, **{"auth.lua": (
    Path(__file__).resolve().parents[2] / "etc/sesame/routes/auth.lua").read_text()})


@pytest.fixture(params=[("sqlite", "900"), ("mariadb", "900"), ("sqlite", "false"),
                        ("mariadb", "false")], ids=lambda p: f"{p[0]}-access_expires={p[1]}")
def cutoff_app(request, sesamed):
    backend, expires = request.param
    if backend == "sqlite":
        storage = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
    else:
        db = request.getfixturevalue("mariadb")
        storage = db.storage(db.database)
    s = sesamed(routes=AUTH_ROUTES, more=storage + (
        f'jwt = {{ secret = "{SECRET}", access_expires = {expires}, '
        'revocation_refresh = 0.5 }\n'))
    s.ctl = lambda *args, input=None: subprocess.run(
        [SESAMECTL, "-c", str(s.config), *args], input=input, capture_output=True, text=True,
        timeout=120)
    s.access_expires = None if expires == "false" else int(expires)
    return s


def flask_access(sub, expires):
    """An access token as flask-jwt-extended lays it out (no fam), signed with the secret."""
    now = int(time.time())
    claims = {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access",
              "sub": str(sub), "nbf": now}
    if expires is not None:
        claims["exp"] = now + expires
    return jwt.encode(claims, SECRET, algorithm="HS256")


def verify(s, token):
    return s.get("/auth/verify", headers=bearer(token)).status_code


def after_the_cutoffs_second():
    """A token issued in the cutoff's own second counts as issued before it."""
    time.sleep(1.1)


def test_disable_refuses_tokens_without_a_family(cutoff_app):
    s = cutoff_app
    add(s, "ann@example.com")
    uid = user_id(s, "ann@example.com")
    flask = flask_access(uid, s.access_expires)
    other = flask_access(uid + 1, s.access_expires)  # another subject: untouched
    assert verify(s, flask) == 200 and verify(s, other) == 200
    assert s.ctl("user", "disable", "ann@example.com").returncode == 0
    assert wait_for(lambda: verify(s, flask) == 401, timeout=10)
    assert s.get("/auth/verify", headers=bearer(flask)).json()["error"] == "token revoked"
    assert verify(s, other) == 200
    assert s.ctl("user", "enable", "ann@example.com").returncode == 0
    after_the_cutoffs_second()
    tokens = login(s, "ann@example.com", "correct horse").json()
    assert verify(s, tokens["access_token"]) == 200
    assert verify(s, flask_access(uid, s.access_expires)) == 200
    assert verify(s, flask) == 401


def test_logout_all_refuses_tokens_without_a_family(cutoff_app):
    s = cutoff_app
    add(s, "ann@example.com")
    uid = user_id(s, "ann@example.com")
    flask = flask_access(uid, s.access_expires)
    tokens = login(s, "ann@example.com", "correct horse").json()
    assert verify(s, flask) == 200
    r = s.post("/users/logout/all", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200 and r.json()["sessions"] == 1
    assert wait_for(lambda: verify(s, flask) == 401, timeout=10)
    # Logged in again at once: a token of a new family is not refused by the cutoff.
    again = login(s, "ann@example.com", "correct horse").json()
    assert verify(s, again["access_token"]) == 200
    after_the_cutoffs_second()
    assert verify(s, flask_access(uid, s.access_expires)) == 200
    # A second logout everywhere moves the cutoff later.
    newer = flask_access(uid, s.access_expires)
    assert s.post("/users/logout/all", headers=bearer(again["access_token"])).status_code == 200
    assert wait_for(lambda: verify(s, newer) == 401, timeout=10)


def test_delete_refuses_tokens_without_a_family(cutoff_app):
    s = cutoff_app
    add(s, "ann@example.com")
    uid = user_id(s, "ann@example.com")
    flask = flask_access(uid, s.access_expires)
    assert verify(s, flask) == 200
    assert s.ctl("user", "delete", "ann@example.com", "--yes").returncode == 0
    assert wait_for(lambda: verify(s, flask) == 401, timeout=10)
    add(s, "ann@example.com")  # the address again: a new user, a new id
    assert login(s, "ann@example.com", "correct horse").status_code == 200
def test_a_busy_control_socket_is_kept_without_waiting(sesamed):
    """Another live listener there, its backlog full: the probe neither waits nor removes it."""
    s = sesamed(start=False)
    path = str(s.dir / "control.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(0)
    waiting = []
    while True:  # fill the backlog until a connection would have to wait
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        waiting.append(c)
    s.start()  # waits until the master serves: a blocking probe would hang here
    assert "server.control: cannot listen on" in s.log()
    assert os.path.exists(path)
    live.close()
    for c in waiting:
        c.close()
