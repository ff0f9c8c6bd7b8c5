"""The blocklist validator: common passwords refused at registration, as part of the password
policy of the default routes, and the list's problems reported by sesamed -t."""
import subprocess
from pathlib import Path

import pytest

from conftest import SESAMED, TOP

USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
APP = ('storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
       'jwt = { secret = "blocklist-tests-secret-0123456789abcdef" }\n'
       'password = { scheme = "argon2id", argon2id = { memory = 19456, iterations = 2 } }\n')
LISTED = ["password1234", "qwertyuiop", "iloveyou123", "Correct-Horse-1"]


def write_list(folder, name="common.txt"):
    """A generated list: a few thousand made-up passwords, the listed ones among them, CRLF
    line ends on some lines, an empty line and a duplicate."""
    lines = [f"generated-{i:05d}" for i in range(5000)]
    lines[100:100] = LISTED
    text = "\n".join(lines[:3000]) + "\n\n" + "\r\n".join(lines[3000:]) + "\r\nqwertyuiop\n"
    (folder / name).write_text(text, encoding="utf-8", newline="")
    return len(lines)


def register(s, n, password):
    return s.post("/users/register", json={"email": f"user{n}@example.com",
                                           "username": f"user{n}", "password": password})


def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def listed(sesamed):
    def start(options=""):
        s = sesamed(routes=USERS, start=False,
                    more=APP + f'blocklist = {{ file = "common.txt"{options} }}\n')
        n = write_list(s.dir)
        s.start()
        s.wait_log(f"plugin blocklist: {n} passwords from {s.dir}/common.txt (1 listed twice)")
        return s
    return start


def test_a_listed_password_is_refused_at_registration(listed):
    s = listed()
    for i, password in enumerate(LISTED + ["generated-04999"]):
        r = register(s, i, password)
        assert r.status_code == 400, password
        assert r.json() == {"result": "fail", "error": "password is too common"}
    r = register(s, 10, "a password nobody listed")
    assert r.status_code == 200 and r.json()["result"] == "success"
    # Matched exactly: another letter case, or a prefix, is another password.
    assert register(s, 11, "PASSWORD1234").status_code == 200
    assert register(s, 12, "password123").status_code == 200


def test_a_listed_password_is_refused_as_a_new_password(listed):
    s = listed()
    assert register(s, 1, "a password nobody listed").status_code == 200
    tokens = s.post("/users/login", json={"email": "user1@example.com",
                                          "password": "a password nobody listed"}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = s.post("/users/password", headers=headers,
               json={"password": "a password nobody listed", "new_password": "iloveyou123"})
    assert r.status_code == 400
    assert r.json() == {"result": "fail", "error": "password is too common"}
    # Nothing changed: the old password still logs in, the session still refreshes.
    login = s.post("/users/login", json={"email": "user1@example.com",
                                         "password": "a password nobody listed"})
    assert login.status_code == 200
    assert s.post("/token/refresh", headers={
        "Authorization": f"Bearer {tokens['refresh_token']}"}).status_code == 200


def test_sesamectl_keeps_to_the_blocklist(listed):
    s = listed()
    ctl = str(Path(SESAMED).parent / "sesamectl")

    def user(*args, password):
        return subprocess.run([ctl, "-c", str(s.config), "user", *args], input=password + "\n",
                              capture_output=True, text=True, timeout=60)
    r = user("add", "ann@example.com", password="iloveyou123")
    assert r.returncode == 4 and "password is too common" in r.stderr, r.stderr
    assert user("show", "ann@example.com", password="").returncode == 3
    assert user("add", "ann@example.com", password="a password nobody listed").returncode == 0
    r = user("passwd", "ann@example.com", password="password1234")
    assert r.returncode == 4 and "password is too common" in r.stderr, r.stderr
    assert s.post("/users/login", json={"email": "ann@example.com",
                                        "password": "a password nobody listed"}
                  ).status_code == 200


def test_the_password_validator_judges_first(listed):
    s = listed()
    r = register(s, 1, "qwerty")
    assert r.status_code == 400
    assert r.json()["error"] == "The password must have at least 8 characters."


def test_ignore_case(listed):
    s = listed(", ignore_case = true")
    for i, password in enumerate(["PASSWORD1234", "QwertyUiop", "correct-horse-1"]):
        r = register(s, i, password)
        assert r.status_code == 400 and r.json()["error"] == "password is too common", password
    assert register(s, 9, "PASSWORD12345").status_code == 200


def test_without_a_list_nothing_is_refused(sesamed):
    s = sesamed(routes=USERS, more=APP)
    assert register(s, 1, "password1234").status_code == 200
    assert "plugin blocklist" not in s.log()


def test_a_missing_list_fails_the_check_with_its_line(sesamed):
    s = sesamed(routes=USERS, start=False,
                more=APP + 'blocklist = {\n  ignore_case = false,\n  file = "missing.txt",\n}\n')
    line = s.config.read_text().splitlines().index('  file = "missing.txt",') + 1
    r = check(s)
    assert r.returncode == 1
    assert (f"{s.config}:{line}: blocklist.file: {s.dir}/missing.txt: "
            "No such file or directory") in r.stderr
    s.config.write_text(s.config.read_text().replace('ignore_case = false', 'ignore_case = 1'))
    r = check(s)
    assert r.returncode == 1
    assert "blocklist.ignore_case: expected true or false, found number" in r.stderr


def test_a_blocklist_table_without_the_plugin(sesamed):
    s = sesamed(routes=USERS, start=False, more=APP + 'blocklist = { file = "common.txt" }\n')
    write_list(s.dir)
    plugins = f'plugins = {{ path = "{Path(SESAMED).parent / "plugins"}"'
    s.config.write_text(s.config.read_text().replace(
        plugins, plugins + ', load = { "argon2id", "password", "email", "username", "sqlite" }'))
    r = check(s)
    assert r.returncode == 1
    assert "blocklist: no validator plugin named blocklist is loaded" in r.stderr
