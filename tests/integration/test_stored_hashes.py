"""Stored hashes that ask for too much work, and log-ins that tell no e-mail from another."""
import os
import time

import pytest
from passlib.hash import pbkdf2_sha256

from conftest import TOP

SECRET = "stored-hash-tests-secret-0123456789!!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text() for name in ("users.lua",)}


def login(s, email, password="wrong password"):
    return s.post("/users/login", json={"email": email, "password": password})


def insert_user(s, email, stored):
    s.db.sql(f"INSERT INTO users (email, username, password) VALUES "
             f"('{email}', 'legacy', '{stored}')", s.db.database)


@pytest.fixture
def app(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n'
    s = sesamed(routes=ROUTES, more=more, workers=1)
    s.db = mariadb
    return s


@pytest.mark.parametrize("scheme,params,parameter", [
    ("pbkdf2", "2000000000", "rounds 2000000000 is over the limit of 2400000"),
    ("argon2id", "m=4194304,t=2,p=1", "its memory is over the limit"),
    ("argon2id", "m=19456,t=100000,p=1", "its iterations is over the limit"),
    ("argon2id", "m=19456,t=2,p=64", "its parallelism is over the limit"),
])
def test_a_stored_hash_cannot_set_its_own_cost(app, scheme, params, parameter):
    if scheme == "pbkdf2":
        good = pbkdf2_sha256.using(rounds=29000).hash("tutorial password")
        salt = good.split("$")[3]
        stored = f"$pbkdf2-sha256${params}${salt}${good.split('$')[4]}"
        name = "pbkdf2_sha256"
    else:
        assert app.post("/users/register", json={"email": "model@example.com", "username": "model",
                                                 "password": "model password"}).status_code == 200
        good = app.db.sql("SELECT password FROM users WHERE email = 'model@example.com'",
                          app.db.database).stdout.strip()
        salt = good.split("$")[4]
        stored = f"$argon2id$v=19${params}${salt}${good.split('$')[5]}"
        name = "argon2id"
    insert_user(app, "heavy@example.com", stored)
    started = time.monotonic()
    r = login(app, "heavy@example.com", "tutorial password")
    # Run, it would take hours (pbkdf2) or 4 GiB: refused, it takes about a dummy hash.
    assert time.monotonic() - started < 5
    assert r.status_code == 401 and r.json()["error"] == "invalid email or password"
    app.wait_log(f"plugin {name}: stored hash refused: ")
    line = next(l for l in app.log().splitlines() if "stored hash refused" in l)
    assert parameter in line
    assert salt not in app.log()
    assert app.get("/healthz").status_code == 200


def test_hashes_within_the_limits_still_verify(app):
    # passlib's default rounds, and the OWASP rounds a newer Flask service would write.
    for i, rounds in enumerate((29000, 600000)):
        stored = pbkdf2_sha256.using(rounds=rounds).hash("tutorial password")
        insert_user(app, f"flask{i}@example.com", stored)
        assert login(app, f"flask{i}@example.com", "tutorial password").status_code == 200
    assert "stored hash refused" not in app.log()


def test_passlib_hashes_at_sha256_block_edges_verify(app):
    # sesame derives PBKDF2 itself: keys and salts either side of SHA-256's 64-byte block.
    cases = [("k" * 64, 16),  # the key's own length is the block: used as it is
             ("k" * 65, 16),  # one byte over: HMAC hashes the key first
             ("pässwörd ☃ " * 6, 16),  # non-ASCII, 90 bytes of UTF-8
             ("tutorial password", 51),  # salt, INT(1) and the padding just fill a block
             ("tutorial password", 52)]  # one byte more: the padding needs a second block
    for i, (password, salt_size) in enumerate(cases):
        stored = pbkdf2_sha256.using(rounds=29000, salt_size=salt_size).hash(password)
        insert_user(app, f"edge{i}@example.com", stored)
        assert login(app, f"edge{i}@example.com", password).status_code == 200, (i, stored)
        assert login(app, f"edge{i}@example.com", password[:-1]).status_code == 401


def cpu_seconds(pid):
    """The CPU time (user and system) a process has spent so far, all its threads included."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_legacy_hash_answers_no_faster_than_an_unknown_email(sesamed, mariadb):
    # A dearer argon2id than the default widens what a leak would show.
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n' + \
        "password = { argon2id = { memory = 65536, iterations = 3 } }\n"
    s = sesamed(routes=ROUTES, more=more, workers=1)
    s.db = mariadb
    insert_user(s, "legacy@example.com", pbkdf2_sha256.using(rounds=29000).hash("tutorial pw"))
    [worker] = s.workers()

    # What a log-in costs is measured as the worker's CPU time, which other processes on a
    # busy machine do not inflate as they do the time of an answer; the work is what a timing
    # attack would see, less the noise.
    def cost(email, times=6):
        before = cpu_seconds(worker)
        for _ in range(times):
            assert login(s, email).status_code == 401
        return cpu_seconds(worker) - before
    cost("nobody@example.com", 1)  # the first verification's pages and caches, paid once
    legacy, unknown = 0.0, 0.0
    for _ in range(2):  # interleaved
        legacy += cost("legacy@example.com")
        unknown += cost("nobody@example.com")
    # Without the dummy verification, the legacy log-in costs a fraction of the unknown one
    # (a cheap PBKDF2 against a dear argon2id, about 0.1 of it); with it, the PBKDF2 comes on
    # top (about 1.1). The memory-bound argon2id's CPU time swings by a fifth on a machine whose
    # caches other processes share: 0.8 keeps the two cases far apart.
    assert unknown > 0 and legacy >= unknown * 0.8, (legacy, unknown)
    assert login(s, "legacy@example.com", "tutorial pw").status_code == 200
