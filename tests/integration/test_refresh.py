"""Refresh rotation, reuse detection, the grace interval, logout and revocation across workers
and across sesamed nodes, on MariaDB and on SQLite."""
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests

from conftest import SESAMED, TOP, wait_for

SECRET = "refresh-tests-secret-0123456789abcdef!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
USER = {"email": "ann@example.com", "username": "ann", "password": "correct horse"}


def storage_for(backend, mariadb, tmp_path):
    if backend == "mariadb":
        return mariadb.storage(mariadb.database)
    return f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "sesame.db"}" }} }}\n'


def make_app(sesamed, storage, jwt_extra="", workers=2):
    more = storage + f'jwt = {{ secret = "{SECRET}", {jwt_extra} }}\n'
    s = sesamed(routes=ROUTES, more=more, workers=workers)
    r = s.post("/users/register", json=USER)
    assert r.status_code == 200, r.text
    s.first = r.json()
    return s


@pytest.fixture(params=["mariadb", "sqlite"])
def storage(request, mariadb, tmp_path):
    return storage_for(request.param, mariadb, tmp_path)


@pytest.fixture
def app(sesamed, storage):
    return make_app(sesamed, storage)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def claims(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"])


def refresh(s, token):
    return s.post("/token/refresh", headers=bearer(token))


def login(s):
    r = s.post("/users/login", json={"email": USER["email"], "password": USER["password"]})
    assert r.status_code == 200
    return r.json()


def answered_by(s, path, since):
    """The pids of the workers that answered path after log line `since`, with statuses."""
    out = []
    for line in s.log().splitlines()[since:]:
        if line.startswith("{") and f'"path":"{path}"' in line:
            entry = json.loads(line)
            out.append((entry["pid"], entry["status"]))
    return out


def everywhere(s, path, token, tries=40):
    """Asks path with token on fresh connections, so that every worker answers some."""
    since = len(s.log().splitlines())
    statuses = [s.get(path, headers={**bearer(token), "Connection": "close"}).status_code
                for _ in range(tries)]
    time.sleep(0.2)
    return statuses, answered_by(s, path, since)


def test_login_tokens_share_a_new_family(app):
    pair = login(app)
    access, refresh_ = claims(pair["access_token"]), claims(pair["refresh_token"])
    assert access["fam"] == refresh_["fam"]
    uuid.UUID(access["fam"])
    assert access["fam"] != claims(app.first["refresh_token"])["fam"]


def test_refresh_rotates(app):
    old = app.first["refresh_token"]
    r = refresh(app, old)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["result"] == "success"
    new_refresh, new_access = claims(body["refresh_token"]), claims(body["access_token"])
    assert new_refresh["type"] == "refresh" and new_access["type"] == "access"
    assert new_access["fresh"] is False
    assert new_refresh["fam"] == new_access["fam"] == claims(old)["fam"]
    assert new_refresh["jti"] != claims(old)["jti"]
    assert new_refresh["sub"] == new_access["sub"] == claims(old)["sub"]
    assert app.get("/users/me", headers=bearer(body["access_token"])).status_code == 200
    # A chain of rotations: each successor is good once.
    token = body["refresh_token"]
    for _ in range(3):
        r = refresh(app, token)
        assert r.status_code == 200
        token = r.json()["refresh_token"]


def test_refresh_wants_a_refresh_token(app):
    r = refresh(app, app.first["access_token"])
    assert r.status_code == 401 and r.json()["error"] == "wrong token type"
    r = app.post("/token/refresh")
    assert r.status_code == 401 and r.json()["error"] == "missing token"
    r = refresh(app, "not.a.token")
    assert r.status_code == 401 and r.json()["error"] == "invalid token"


def test_reuse_revokes_the_whole_family(sesamed, storage):
    s = make_app(sesamed, storage, "refresh_grace = 0")
    stolen = s.first["refresh_token"]
    r = refresh(s, stolen)
    assert r.status_code == 200
    owner = r.json()
    # The thief presents the spent token: refused, and the family is revoked.
    r = refresh(s, stolen)
    assert r.status_code == 401
    assert r.json() == {"result": "fail", "error": "token revoked"}
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "was presented again: its family is revoked" in s.log()
    # The owner's newer refresh token is refused too, at once (the storage says so) ...
    r = refresh(s, owner["refresh_token"])
    assert r.status_code == 401 and r.json()["error"] == "token revoked"
    # ... and the family's access tokens on every worker within jwt.revocation_refresh.
    time.sleep(1.3)
    statuses, seen = everywhere(s, "/users/me", owner["access_token"])
    assert set(statuses) == {401}
    assert len({pid for pid, _ in seen}) == 2, seen
    # Another log-in of the same user is a family of its own, untouched.
    other = login(s)
    assert refresh(s, other["refresh_token"]).status_code == 200


def test_racing_refreshes_within_the_grace_interval(app):
    s = app  # the default grace: 2 s
    token = s.first["refresh_token"]
    results = []
    barrier = threading.Barrier(4)

    def go():
        barrier.wait()
        results.append(refresh(s, token))
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 4
    # One successor for all of them: whichever the client keeps, it is the current one.
    successors = {claims(r.json()["refresh_token"])["jti"] for r in results}
    assert len(successors) == 1
    r = refresh(s, results[0].json()["refresh_token"])
    assert r.status_code == 200
    assert "presented again" not in s.log()


def test_the_grace_interval_ends(sesamed, storage):
    s = make_app(sesamed, storage, "refresh_grace = 0.5")
    token = s.first["refresh_token"]
    first = refresh(s, token)
    assert first.status_code == 200
    again = refresh(s, token)
    assert again.status_code == 200
    assert claims(again.json()["refresh_token"])["jti"] == \
        claims(first.json()["refresh_token"])["jti"]
    time.sleep(0.7)
    assert refresh(s, token).status_code == 401
    assert refresh(s, first.json()["refresh_token"]).status_code == 401


def test_logout_revokes_everywhere_within_the_refresh(app):
    pair = login(app)
    r = app.post("/users/logout", headers=bearer(pair["access_token"]))
    assert r.status_code == 200
    assert r.json() == {"result": "success"}
    assert r.headers["Cache-Control"] == "no-store"
    # The worker that logged out refuses the token at once; every other within 1 s.
    time.sleep(1.3)
    for path in ("/users/me", "/auth/verify"):
        statuses, seen = everywhere(app, path, pair["access_token"])
        assert set(statuses) == {401}, statuses
        assert {status for _, status in seen} == {401}
        assert len({pid for pid, _ in seen}) == 2, seen
    r = app.get("/users/me", headers=bearer(pair["access_token"]))
    assert r.json()["error"] == "token revoked"
    # Its refresh family is revoked: the refresh token is refused.
    r = refresh(app, pair["refresh_token"])
    assert r.status_code == 401 and r.json()["error"] == "token revoked"
    # A second logout with the revoked token is refused; other sessions are untouched.
    assert app.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 401
    assert app.get("/users/me", headers=bearer(app.first["access_token"])).status_code == 200
    assert refresh(app, app.first["refresh_token"]).status_code == 200


def test_logout_needs_an_access_token(app):
    assert app.post("/users/logout").status_code == 401
    r = app.post("/users/logout", headers=bearer(app.first["refresh_token"]))
    assert r.status_code == 401 and r.json()["error"] == "wrong token type"


def test_the_revocation_delay_follows_the_setting(sesamed, mariadb):
    s = make_app(sesamed, mariadb.storage(mariadb.database), "revocation_refresh = 0.2",
                 workers=3)
    pair = login(s)
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    time.sleep(0.6)
    statuses, seen = everywhere(s, "/auth/verify", pair["access_token"], tries=60)
    assert set(statuses) == {401}
    assert len({pid for pid, _ in seen}) == 3, seen


def test_revocation_reaches_another_node(sesamed, mariadb):
    storage = mariadb.storage(mariadb.database)
    a = make_app(sesamed, storage)
    b = sesamed(routes=ROUTES, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n')
    pair = login(a)
    assert b.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    assert a.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    time.sleep(1.3)
    statuses, seen = everywhere(b, "/auth/verify", pair["access_token"])
    assert set(statuses) == {401}
    assert len({pid for pid, _ in seen}) == 2
    # A rotation on one node is a spent token on the other.
    r = refresh(a, a.first["refresh_token"])
    assert r.status_code == 200
    time.sleep(2.1)
    assert refresh(b, a.first["refresh_token"]).status_code == 401
    assert refresh(a, r.json()["refresh_token"]).status_code == 401


def test_a_restarted_worker_knows_the_revoked_tokens(sesamed, mariadb):
    s = make_app(sesamed, mariadb.storage(mariadb.database), "revocation_refresh = 3600")
    pair = login(s)
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    s.stop()
    s.start()
    # With an hour between fetches, only the load at start can know it.
    statuses, _ = everywhere(s, "/users/me", pair["access_token"])
    assert set(statuses) == {401}


def test_family_lifetime_is_absolute(sesamed, storage):
    s = make_app(sesamed, storage, "family_lifetime = 3")
    first = claims(s.first["refresh_token"])
    assert first["exp"] <= first["iat"] + 3
    r = refresh(s, s.first["refresh_token"])
    assert r.status_code == 200
    # Rotation does not extend it.
    assert claims(r.json()["refresh_token"])["exp"] <= first["iat"] + 3
    time.sleep(3.2)
    r = refresh(s, r.json()["refresh_token"])
    assert r.status_code == 401


def test_expired_state_is_purged(sesamed, mariadb):
    s = make_app(sesamed, mariadb.storage(mariadb.database))
    db = mariadb.database
    past = int(time.time()) - 3600
    mariadb.sql("INSERT INTO sesame_revoked_tokens VALUES "
                f"('gone', 0, {past}), ('kept', 0, {past + 7200}), ('forever', 0, 0)", db)
    mariadb.sql("INSERT INTO sesame_refresh_families (id, subject, current_jti, rotated_at, "
                f"expires_at) VALUES ('old', '1', 'x', 0, {past})", db)
    s.signal(1)  # SIGHUP: new workers; the one that takes the fetching over purges
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ids = mariadb.sql("SELECT id FROM sesame_revoked_tokens ORDER BY id", db).stdout.split()
        if "gone" not in ids:
            break
        time.sleep(0.1)
    assert ids == ["forever", "kept"]
    fams = mariadb.sql("SELECT id FROM sesame_refresh_families", db).stdout.split()
    assert "old" not in fams and len(fams) == 1


def test_a_flask_refresh_token_starts_a_family(app):
    now = int(time.time())
    token = jwt.encode({"fresh": False, "iat": now, "jti": str(uuid.uuid4()),
                        "type": "refresh", "sub": claims(app.first["access_token"])["sub"],
                        "nbf": now, "exp": now + 3600}, SECRET, algorithm="HS256")
    r = refresh(app, token)
    assert r.status_code == 200, r.text
    assert claims(r.json()["refresh_token"])["fam"] == claims(token)["jti"]
    time.sleep(2.1)
    assert refresh(app, token).status_code == 401
    assert refresh(app, r.json()["refresh_token"]).status_code == 401


def test_cookies_rotate_and_logout_clears_them(sesamed, mariadb):
    s = make_app(sesamed, mariadb.storage(mariadb.database), "cookies = true, cookie_secure = false")
    jar = requests.Session()
    r = jar.post(s.url + "/users/login", json={"email": USER["email"],
                                               "password": USER["password"]})
    assert r.status_code == 200
    csrf_refresh = jar.cookies["csrf_refresh_token"]
    old = jar.cookies["refresh_token_cookie"]
    r = jar.post(s.url + "/token/refresh")
    assert r.status_code == 401 and "CSRF" in r.json()["error"]
    r = jar.post(s.url + "/token/refresh", headers={"X-CSRF-TOKEN": csrf_refresh})
    assert r.status_code == 200
    assert jar.cookies["refresh_token_cookie"] != old
    r = jar.post(s.url + "/users/logout",
                 headers={"X-CSRF-TOKEN": jar.cookies["csrf_access_token"]})
    assert r.status_code == 200
    cleared = r.raw.headers.getlist("Set-Cookie")
    names = sorted(c.split("=")[0] for c in cleared)
    assert names == ["access_token_cookie", "csrf_access_token", "csrf_refresh_token",
                     "refresh_token_cookie"]
    assert all("Max-Age=0" in c for c in cleared)
    assert len(jar.cookies) == 0


def test_token_state_settings_are_checked(sesamed, mariadb, tmp_path):
    for bad, key in [("refresh_grace = -1", "jwt.refresh_grace"),
                     ("revocation_refresh = 0", "jwt.revocation_refresh"),
                     ("revocation_refresh = 'often'", "jwt.revocation_refresh"),
                     ("family_lifetime = 0", "jwt.family_lifetime")]:
        s = sesamed(routes=ROUTES, start=False,
                    more=f'jwt = {{ secret = "{SECRET}", {bad} }}\n')
        out = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True,
                             text=True)
        assert out.returncode != 0
        assert key in out.stderr, out.stderr


def test_an_outage_keeps_the_revoked_ids_and_catches_up(sesamed, mariadb):
    storage = mariadb.storage(mariadb.database)
    a = make_app(sesamed, storage)
    b = sesamed(routes=ROUTES, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n')
    before, after = login(a), login(a)
    assert a.post("/users/logout", headers=bearer(before["access_token"])).status_code == 200
    time.sleep(1.3)
    mariadb.stop()
    try:
        b.wait_log("revocation: cannot fetch the revoked token ids")
        # What b knew stays refused; forward auth needs no storage and goes on.
        statuses, _ = everywhere(b, "/auth/verify", before["access_token"])
        assert set(statuses) == {401}
        statuses, _ = everywhere(b, "/auth/verify", after["access_token"])
        assert set(statuses) == {200}
        # A logout needs the storage: 503, and nothing is revoked.
        r = a.post("/users/logout", headers=bearer(after["access_token"]))
        assert r.status_code == 503 and r.json()["error"] == "storage unavailable"
    finally:
        mariadb.start()
    b.wait_log("revocation: the revoked token ids are fetched again")
    assert a.post("/users/logout", headers=bearer(after["access_token"])).status_code == 200
    time.sleep(1.3)
    statuses, _ = everywhere(b, "/auth/verify", after["access_token"])
    assert set(statuses) == {401}


DECODE = """local sesame = require "sesame"
sesame.route("POST", "/decode", function(req)
  local claims, why = sesame.jwt.decode(req:json().token)
  if not claims then return 200, { error = why } end
  return 200, { claims = claims }
end)
"""


def test_decode_verifies_like_a_route(sesamed, storage):
    s = sesamed(routes={**ROUTES, "decode.lua": DECODE}, workers=1,
                more=storage + f'jwt = {{ secret = "{SECRET}" }}\n')
    pair = s.post("/users/register", json=USER).json()

    def decode(token):
        return s.post("/decode", json={"token": token}).json()
    for kind in ("access_token", "refresh_token"):
        assert decode(pair[kind])["claims"] == claims(pair[kind])
    now = int(time.time())
    expired = jwt.encode({"iat": now - 100, "nbf": now - 100, "exp": now - 10, "sub": "1",
                          "jti": str(uuid.uuid4()), "type": "access", "fresh": False},
                         SECRET, algorithm="HS256")
    assert decode(expired) == {"error": "token expired"}
    assert decode("not a token") == {"error": "invalid token"}
    assert decode(pair["access_token"][:-3]) == {"error": "invalid token"}
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert decode(pair["access_token"]) == {"error": "token revoked"}
    assert decode(pair["refresh_token"]) == {"error": "token revoked"}


def sqlite_storage(tmp_path):
    return f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "sesame.db"}" }} }}\n'


def reload_workers(s):
    """SIGHUP, then waits until only new workers serve (the one that takes the fetching of the
    revoked ids over purges the node's set of the expired ones)."""
    old = set(s.workers())
    s.signal(1)
    assert wait_for(lambda: s.workers() and not set(s.workers()) & old, 20), \
        "the workers were not replaced"


def test_a_revocation_that_waited_for_a_lock_still_reaches_every_node(sesamed, mariadb):
    storage = mariadb.storage(mariadb.database)
    a = make_app(sesamed, storage, workers=1)
    b = sesamed(routes=ROUTES, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n', workers=1)
    pair = login(a)
    r = refresh(a, pair["refresh_token"])
    other_access = r.json()["access_token"]  # the same family, another jti
    family = claims(other_access)["fam"]
    # A slow transaction holds the family's row for longer than the fetches' overlap.
    holder = subprocess.Popen(
        ["mariadb", "--no-defaults", "-uroot", f"--socket={mariadb.socket}", "-e",
         f"START TRANSACTION; SELECT id FROM sesame_refresh_families WHERE id = '{family}' "
         "FOR UPDATE; DO SLEEP(12); COMMIT;", mariadb.database])
    try:
        time.sleep(1)
        r = a.post("/users/logout", headers=bearer(pair["access_token"]), timeout=60)
        assert r.status_code == 200
    finally:
        holder.wait(60)
    time.sleep(1.3)
    assert b.get("/users/me", headers=bearer(other_access)).json()["error"] == "token revoked"


def test_a_logout_that_fails_revokes_nothing_and_can_be_retried(sesamed, tmp_path):
    s = make_app(sesamed, sqlite_storage(tmp_path), workers=1)
    pair = login(s)
    db = sqlite3.connect(tmp_path / "sesame.db", isolation_level=None)
    db.execute("CREATE TRIGGER fail BEFORE UPDATE OF revoked_at ON sesame_refresh_families "
               "BEGIN SELECT RAISE(ABORT, 'injected'); END")
    r = s.post("/users/logout", headers=bearer(pair["access_token"]))
    assert r.status_code == 500
    assert db.execute("SELECT COUNT(*) FROM sesame_revoked_tokens").fetchone() == (0,)
    db.execute("DROP TRIGGER fail")
    time.sleep(1.3)
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert refresh(s, pair["refresh_token"]).status_code == 401


@pytest.mark.parametrize("settings", [
    "access_expires = false, family_lifetime = 2, refresh_grace = 0",  # never expiring
    "access_expires = 60, family_lifetime = 2, refresh_grace = 0",  # outliving the family
])
@pytest.mark.parametrize("how", ["logout", "reuse"])
def test_a_revoked_family_stays_revoked_while_its_tokens_live(sesamed, tmp_path, settings, how):
    s = make_app(sesamed, sqlite_storage(tmp_path), settings, workers=1)
    pair = login(s)
    r = refresh(s, pair["refresh_token"])
    assert r.status_code == 200
    later = r.json()["access_token"]
    if how == "logout":
        assert s.post("/users/logout", headers=bearer(later)).status_code == 200
    else:
        assert refresh(s, pair["refresh_token"]).status_code == 401
    # Past the family's end, after a purge and with new workers.
    time.sleep(3)
    reload_workers(s)
    for token in (pair["access_token"], later):
        assert s.get("/users/me", headers=bearer(token)).status_code == 401


def test_a_family_access_token_lives_no_longer_than_access_expires(sesamed, storage):
    routes = {**ROUTES, "long.lua": 'local sesame = require "sesame"\n'
              'sesame.route("POST", "/long", function(req)\n'
              '  local refresh, family = sesame.jwt.refresh(1)\n'
              '  return 200, { a = sesame.jwt.access(1, { family = family, expires = 86400 }),\n'
              '                b = sesame.jwt.access(1, { expires = 86400 }),\n'
              '                c = sesame.jwt.access(1, { family = family, expires = false }) }\n'
              'end)\n'}
    s = sesamed(routes=routes, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n')
    body = s.post("/long").json()
    for name, lifetime in (("a", 900), ("b", 86400), ("c", 900)):
        c = claims(body[name])
        assert c["exp"] - c["iat"] == lifetime, name


def test_an_identity_too_long_for_a_family_is_an_error(sesamed, storage):
    routes = {"long.lua": 'local sesame = require "sesame"\n'
              'sesame.route("POST", "/long", function(req)\n'
              '  return 200, { r = sesame.jwt.refresh(string.rep("a", 256)) }\n'
              'end)\n'}
    s = sesamed(routes=routes, more=storage + f'jwt = {{ secret = "{SECRET}" }}\n',
                config="debug = true")
    r = s.post("/long")
    assert r.status_code == 500
    assert "shorter than 256 bytes" in s.log()


SESAMECTL = str(Path(SESAMED).parent / "sesamectl")


def revoke_with_sesamectl(s, text):
    return subprocess.run([SESAMECTL, "-c", str(s.config), "token", "revoke"], input=text,
                          capture_output=True, text=True, timeout=60)


def test_sesamectl_revokes_tokens_from_standard_input(app):
    one, two = login(app), login(app)
    now = int(time.time())
    expired = jwt.encode({"iat": now - 100, "nbf": now - 100, "exp": now - 10, "sub": "1",
                          "jti": str(uuid.uuid4()), "type": "access", "fresh": False},
                         SECRET, algorithm="HS256")
    r = revoke_with_sesamectl(app, f"{one['access_token']}\n\n"
                                   f"Bearer {two['refresh_token']}\n{expired}\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("sesamectl: line 1: revoked token ")
    assert lines[0].endswith(" and its refresh family")
    assert lines[1].startswith("sesamectl: line 3: revoked token ")
    assert lines[2] == "sesamectl: line 4: the token has expired: nothing to revoke"
    for pair in (one, two):  # the tokens never reach the output
        assert pair["access_token"] not in r.stdout + r.stderr
        assert pair["refresh_token"] not in r.stdout + r.stderr
    time.sleep(1.3)
    for pair in (one, two):
        statuses, _ = everywhere(app, "/auth/verify", pair["access_token"])
        assert set(statuses) == {401}
        assert refresh(app, pair["refresh_token"]).status_code == 401
    assert app.get("/users/me", headers=bearer(app.first["access_token"])).status_code == 200


def test_sesamectl_refuses_what_it_cannot_verify(app):
    forged = jwt.encode({"sub": "1", "jti": "x", "type": "access"}, "another secret " * 3,
                        algorithm="HS256")
    r = revoke_with_sesamectl(app, forged + "\n")
    assert r.returncode == 1
    assert "line 1: invalid token" in r.stderr and forged not in r.stderr
    for nothing in ("", "\n \n\n"):
        r = revoke_with_sesamectl(app, nothing)
        assert r.returncode == 1 and "no token on standard input" in r.stderr
    r = subprocess.run([SESAMECTL, "-c", str(app.config), "token", "revoke", "extra"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Usage" in r.stderr


def test_thousands_of_revoked_ids(sesamed, tmp_path):
    s = make_app(sesamed, sqlite_storage(tmp_path))
    kept, gone = login(s), login(s)
    now = int(time.time())
    # Their revocations end in 8 s, long before the tokens do.
    rows = [(str(uuid.uuid4()), now * 1000, now + 8) for _ in range(5000)]
    rows.insert(2500, (claims(gone["access_token"])["jti"], now * 1000, now + 8))
    db = sqlite3.connect(tmp_path / "sesame.db")
    db.executemany("INSERT INTO sesame_revoked_tokens VALUES (?, ?, ?)", rows)
    db.commit()
    time.sleep(1.3)  # the node's set grows from empty to 5001 ids
    statuses, _ = everywhere(s, "/auth/verify", gone["access_token"])
    assert set(statuses) == {401}
    statuses, _ = everywhere(s, "/auth/verify", kept["access_token"])
    assert set(statuses) == {200}
    # Revoked ids that expired leave the node's set at its next purge, which the worker that
    # takes the fetching over after a reload does at once.
    time.sleep(max(0, now + 9 - time.time()))
    reload_workers(s)
    assert wait_for(lambda: set(everywhere(s, "/auth/verify", gone["access_token"])[0]) == {200},
                    timeout=10)


def register_other(s):
    r = s.post("/users/register", json={"email": "bob@example.com", "username": "bob",
                                        "password": "another horse"})
    assert r.status_code == 200
    return r.json()


@pytest.mark.parametrize("how", ["route", "sesamectl"])
def test_log_out_everywhere(app, how):
    sessions = [app.first, login(app), login(app), login(app)]
    bob = register_other(app)
    if how == "route":
        r = app.post("/users/logout/all", headers=bearer(sessions[1]["access_token"]))
        assert r.status_code == 200
        assert r.json() == {"result": "success", "sessions": 4}
        assert r.headers["Cache-Control"] == "no-store"
    else:
        user = claims(app.first["access_token"])["sub"]
        r = subprocess.run([SESAMECTL, "-c", str(app.config), "token", "revoke", "--user", user],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"sesamectl: revoked 4 refresh families of {user}\n"
    time.sleep(1.3)
    for pair in sessions:
        statuses, _ = everywhere(app, "/auth/verify", pair["access_token"], tries=12)
        assert set(statuses) == {401}
        assert refresh(app, pair["refresh_token"]).status_code == 401
    # Another user's sessions, and the next log-in, are untouched.
    assert app.get("/users/me", headers=bearer(bob["access_token"])).status_code == 200
    fresh = login(app)
    assert app.get("/users/me", headers=bearer(fresh["access_token"])).status_code == 200
    assert refresh(app, fresh["refresh_token"]).status_code == 200
    # Nothing left to revoke but the new log-in's family.
    r = app.post("/users/logout/all", headers=bearer(fresh["access_token"]))
    assert r.json()["sessions"] == 1


REVOKE_ROUTES = {"revoke.lua": """
local sesame = require "sesame"
sesame.route("POST", "/revoke/odd", { auth = "required" }, function(req)
  -- Claims the policy does not read may hold anything: a function, a deep table.
  local deep = {}
  for _ = 1, 20 do deep = { deep } end
  local claims = { note = function() end, deep = deep }
  for k, v in pairs(req.claims) do claims[k] = v end
  return 200, { result = "success", revoked = sesame.jwt.revoke(claims) }
end)
sesame.route("POST", "/revoke/bad-family", { auth = "required" }, function(req)
  local claims = {}
  for k, v in pairs(req.claims) do claims[k] = v end
  claims.fam = 42
  sesame.jwt.revoke(claims)
  return 200, { result = "success" }
end)
"""}


def test_revoke_reads_only_the_claims_it_needs(sesamed, storage):
    more = storage + f'jwt = {{ secret = "{SECRET}" }}\n'
    s = sesamed(routes={**ROUTES, **REVOKE_ROUTES}, more=more)
    assert s.post("/users/register", json=USER).status_code == 200
    pair = login(s)
    r = s.post("/revoke/bad-family", headers=bearer(pair["access_token"]))
    assert r.status_code == 500
    s.wait_log("sesame.jwt.revoke: the claims' fam is not a family id")
    assert s.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    r = s.post("/revoke/odd", headers=bearer(pair["access_token"]))
    assert r.status_code == 200 and r.json()["revoked"] is True
    # The worker that revoked refuses the token at once, the other within revocation_refresh.
    time.sleep(1.5)
    for _ in range(6):
        r = s.get("/users/me", headers={**bearer(pair["access_token"]), "Connection": "close"})
        assert r.status_code == 401 and r.json()["error"] == "token revoked"
    assert refresh(s, pair["refresh_token"]).status_code == 401


def test_a_transaction_that_waited_too_long_for_a_lock_is_run_again(sesamed, mariadb):
    s = make_app(sesamed, mariadb.storage(mariadb.database))
    sub = jwt.decode(s.first["access_token"], SECRET, algorithms=["HS256"])["sub"]
    # Another connection holds the row of the user's cutoff for longer than one lock wait
    # (5 s): the first try times out (1205) and is rolled back, the next one goes through.
    holder = subprocess.Popen(
        ["mariadb", "--no-defaults", "--unbuffered", "-N", "-uroot", f"--socket={mariadb.socket}",
         mariadb.database,
         "-e", f"START TRANSACTION; INSERT INTO sesame_revoked_tokens VALUES ('sub:{sub}', 0, 0);"
         " SELECT 'locked'; SELECT SLEEP(7); ROLLBACK;"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        r = s.post("/users/logout/all", headers=bearer(s.first["access_token"]), timeout=60)
        took = time.monotonic() - start
    finally:
        holder.wait(60)
    assert r.status_code == 200, r.text
    assert r.json()["sessions"] == 1
    assert took > 5
    assert "lost a lock conflict (1205): retried" in s.log()
    assert refresh(s, s.first["refresh_token"]).status_code == 401
