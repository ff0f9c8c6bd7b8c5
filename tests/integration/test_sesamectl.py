"""sesamectl: keygen, migrate and hash-bench, run as an operator would."""
import os
import stat
import subprocess
from pathlib import Path

import jwt
import pytest

from conftest import SESAMED

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


def test_usage_errors():
    assert ctl().returncode == 2
    assert ctl("frobnicate").returncode == 2
    assert "migrate" in ctl("-h").stdout
