"""Plugins: the loader's checks, and the password hashers through sesame.hash and verify."""
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from passlib.hash import pbkdf2_sha256

from conftest import SESAMED, TOP, route_file

PASSWORDS = {"passwords.lua": route_file("passwords.lua")}
FAST = 'password = { pbkdf2_sha256 = { rounds = 29000 } }\n'


def build_plugin(tmp_path, name, *defines):
    out = tmp_path / "plugins"
    out.mkdir(exist_ok=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{TOP}/daemon",
                    f'-DPLUGIN_NAME="{name}"', *defines, "-o", str(out / f"{name}.so"),
                    str(TOP / "tests/plugin-sdk/bad_plugin.c")], check=True)
    return out


@pytest.mark.parametrize("defines,message", [
    (["-DWRONG_MAGIC"], "it is not a sesame plugin (magic 0x12345678, not 0x5345534d)"),
    (["-DABI_MAJOR=2", "-DABI_MINOR=0"], "it was built for sesame plugin ABI 2.0; this sesamed is ABI 1.2 and loads plugins built for 1.x: it needs a newer sesamed, or a build against this sesamed's <sesame/plugin.h>"),
    (["-DABI_MAJOR=0", "-DABI_MINOR=0"], "it was built for sesame plugin ABI 0.0; this sesamed is ABI 1.2 and loads plugins built for 1.x: rebuild it against this sesamed's <sesame/plugin.h>"),
    (["-DTRUNCATED"], "its hasher descriptor is truncated (it says 80 bytes, exports 32; 80 needed for ABI 1.2)"),
    (["-DNO_VERIFY"], "its hasher descriptor lacks verify, required since ABI 1.0"),
    (["-DWRONG_NAME"], "it is named 'another', but its file is bad.so"),
])
def test_bad_plugins_are_refused_before_their_code_runs(sesamed, tmp_path, defines, message):
    folder = build_plugin(tmp_path, "bad", *defines)
    s = sesamed(start=False, more=f'plugins = {{ path = "{folder}" }}\n')
    s.config.write_text(s.config.read_text().replace(f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}" }}\n', ""))
    check = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 1
    assert f"plugin {folder}/bad.so: refused: {message}" in check.stderr
    assert "bad_plugin code ran" not in check.stderr
    run = subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 1
    assert "serving on" not in run.stderr


@pytest.mark.parametrize("defines", [[], ["-DABI_MINOR=7", "-DEXTRA_TAIL"]])
def test_a_plugin_built_outside_the_tree_loads(sesamed, tmp_path, defines):
    # A newer minor of ABI 1 loads too: sesamed ignores the members it does not know.
    folder = build_plugin(tmp_path, "plain", *defines)
    s = sesamed(routes=PASSWORDS, start=False,
                more=f'password = {{ scheme = "plain", accept = {{ "plain" }} }}\n')
    s.config.write_text(s.config.read_text().replace(str(Path(SESAMED).parent / "plugins"),
                                                     str(folder)))
    s.start()
    assert s.post("/hash", json={"password": "hunter2"}).json() == {"hash": "plain$hunter2"}
    s.wait_log("plugin plain: bad_plugin code ran")


def test_unknown_plugin_keys_are_errors(sesamed):
    s = sesamed(start=False, more='password = {\n  argon2id = { memory = 19456, colour = "red" },\n'
                                  '  pbkdf2_sha256 = { rounds = 10 },\n  extra = 1,\n}\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{s.config}:5: password.argon2id.colour: unknown key (plugin argon2id does not read it)" in r.stderr
    assert f"{s.config}:6: password.pbkdf2_sha256.rounds: 10 is out of range (29000 to 100000000)" in r.stderr
    assert f"{s.config}:7: password.extra: unknown key" in r.stderr


def test_a_scheme_whose_settings_are_refused_is_not_used(sesamed):
    # Its init failed: the check reports why, and makes no hash with it.
    s = sesamed(start=False, more='password = { argon2id = { memory = 8192 } }\n')
    r = check_config(s)
    assert r.returncode == 1
    assert "password.argon2id.memory: 8192 is out of range (19456 to 4194304)" in r.stderr


def test_scheme_must_be_loaded_and_accepted(sesamed):
    s = sesamed(start=False, more='password = { scheme = "argon2id", accept = { "pbkdf2_sha256" } }\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "password.scheme: 'argon2id' must be in password.accept too" in r.stderr


def test_argon2id_hash_and_verify(sesamed):
    s = sesamed(routes=PASSWORDS)
    h = s.post("/hash", json={"password": "correct horse"}).json()["hash"]
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert s.post("/verify", json={"password": "correct horse", "stored": h}).json() == \
        {"ok": True, "rehash": False}
    assert s.post("/verify", json={"password": "correct horsf", "stored": h}).json() == \
        {"ok": False, "rehash": False}
    h2 = s.post("/hash", json={"password": "correct horse"}).json()["hash"]
    assert h2 != h  # a new salt each time


def test_stronger_argon2_settings_ask_for_a_rehash(sesamed):
    s = sesamed(routes=PASSWORDS)
    h = s.post("/hash", json={"password": "pw"}).json()["hash"]
    t = sesamed(routes=PASSWORDS, more="password = { argon2id = { memory = 32768 } }\n")
    assert t.post("/verify", json={"password": "pw", "stored": h}).json() == \
        {"ok": True, "rehash": True}


@pytest.mark.parametrize("password", ["password123", "pässwörd ☃", "x" * 200, ""])
def test_pbkdf2_sha256_hashes_verify_in_passlib(sesamed, password):
    s = sesamed(routes=PASSWORDS,
                more='password = { scheme = "pbkdf2_sha256", pbkdf2_sha256 = { rounds = 29000 } }\n')
    h = s.post("/hash", json={"password": password}).json()["hash"]
    assert h.startswith("$pbkdf2-sha256$29000$")
    assert pbkdf2_sha256.verify(password, h)
    assert not pbkdf2_sha256.verify(password + "!", h)


@pytest.mark.parametrize("rounds,salt_size", [(29000, 16), (1000, 16), (29000, 0), (12345, 64)])
def test_passlib_hashes_verify_in_sesame(sesamed, rounds, salt_size):
    s = sesamed(routes=PASSWORDS, more=FAST)
    for password in ["tutorial-password", "ünïcødé", "a" * 100]:
        h = pbkdf2_sha256.using(rounds=rounds, salt_size=salt_size).hash(password)
        body = s.post("/verify", json={"password": password, "stored": h}).json()
        # Stored by a tutorial-era service: right password, and upgraded to argon2id.
        assert body == {"ok": True, "rehash": True}
        assert s.post("/verify", json={"password": password[:-1], "stored": h}).json()["ok"] is False


@pytest.mark.parametrize("stored", ["", "plain", "$pbkdf2-sha256$", "$pbkdf2-sha256$0$AA$BB",
                                    "$pbkdf2-sha256$29000$!!$AAAA", "$argon2id$v=19$m=1",
                                    "$pbkdf2-sha256$29000$c2FsdA$" + "A" * 43 + "+"])
def test_malformed_stored_hashes_do_not_verify(sesamed, stored):
    s = sesamed(routes=PASSWORDS, more=FAST)
    r = s.post("/verify", json={"password": "x", "stored": stored})
    assert r.status_code == 200
    assert r.json()["ok"] is False


def test_loop_answers_while_passwords_hash(sesamed):
    s = sesamed(routes=PASSWORDS, workers=1,
                more="password = { argon2id = { memory = 262144, iterations = 6 } }\n")
    done = []

    def register(i):
        r = requests.post(s.url + "/hash", json={"password": f"pw{i}"}, timeout=120)
        done.append(r.status_code)
    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    for _ in range(10):
        assert s.get("/healthz", timeout=5).status_code == 200
    still_hashing = len(done) < len(threads)
    for t in threads:
        t.join()
    assert still_hashing, "the hashes finished before /healthz was asked: make them slower"
    assert done == [200] * 4


def check_config(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=30)


def test_plugins_load_picks_plugins(sesamed):
    s = sesamed(routes=PASSWORDS, more='plugins = { load = { "argon2id" } }\n', start=False)
    s.config.write_text(s.config.read_text().replace(
        f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}" }}\n', "").replace(
        'plugins = { load', f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}", load'))
    s.start()
    stored = pbkdf2_sha256.using(rounds=29000).hash("pw")
    # pbkdf2_sha256 is not loaded, so not accepted: its hashes verify as nothing.
    assert s.post("/verify", json={"password": "pw", "stored": stored}).json()["ok"] is False
    assert s.post("/hash", json={"password": "pw"}).json()["hash"].startswith("$argon2id$")


def test_a_plugin_folder_that_is_not_there(sesamed, tmp_path):
    s = sesamed(start=False)
    s.config.write_text(s.config.read_text().replace(str(Path(SESAMED).parent / "plugins"),
                                                     str(tmp_path / "nowhere")))
    r = check_config(s)
    assert r.returncode == 1
    assert "plugins.path: " in r.stderr and "No such file or directory" in r.stderr


def test_a_validator_table_without_its_plugin(sesamed):
    s = sesamed(start=False, more='email = { allow_special_domains = true }\n')
    s.config.write_text(s.config.read_text().replace(
        f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}" }}',
        f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}", '
        'load = { "argon2id", "password" } }'))
    r = check_config(s)
    assert r.returncode == 1
    assert "email: no validator plugin named email is loaded" in r.stderr


VALIDATE = {"validate.lua": 'local sesame = require "sesame"\n'
            'sesame.route("POST", "/validate", function(req)\n'
            '  local b = req:json()\n'
            '  local related = b.related ~= sesame.null and b.related or nil\n'
            '  local v, err = sesame.validate(b.name, b.value, related)\n'
            '  return 200, { value = v or sesame.null, error = err or sesame.null }\n'
            'end)\n'}


@pytest.mark.parametrize("name,value,related,expect_ok", [
    ("email", "Bob@EXAMPLE.org", None, "Bob@example.org"),
    ("email", "bob@localhost", None, None),
    ("username", "José", None, "José"),
    ("username", "a b", None, None),
    ("password", "bob@example.org", ["bob@example.org", "bob"], None),
    ("password", "eight ch", ["bob@example.org", "bob"], "eight ch"),
    ("password", 42, None, None),
])
def test_sesame_validate(sesamed, name, value, related, expect_ok):
    s = sesamed(routes=VALIDATE, more='username = { allowed = "unicode" }\n')
    body = s.post("/validate", json={"name": name, "value": value, "related": related}).json()
    assert body["value"] == expect_ok
    assert (body["error"] is None) == (expect_ok is not None)
