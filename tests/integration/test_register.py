"""POST /users/register, the default route of etc/sesame/routes/users.lua, on real MariaDB."""
import threading

import jwt
import pytest
import requests

from conftest import TOP

SECRET = "register-tests-secret-0123456789abcdef"
USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}


@pytest.fixture
def app(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n' + \
        'password = { scheme = "argon2id" }\n'
    s = sesamed(routes=USERS, more=more)
    s.db = mariadb
    return s


def register(s, **body):
    return s.post("/users/register", json=body)


def rows(s):
    out = s.db.sql("SELECT id, email, username, password FROM users ORDER BY id",
                   s.db.database).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_register_returns_tokens_and_commits_the_row(app):
    r = register(app, email="Alice@Example.COM", username="alice", password="correct horse")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] == "success"
    assert r.headers["Cache-Control"] == "no-store"
    found = rows(app)
    assert len(found) == 1
    uid, email, username, password = found[0]
    assert email == "Alice@example.com" and username == "alice"
    assert password.startswith("$argon2id$") and "correct horse" not in password
    access = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert access["sub"] == uid and access["type"] == "access"
    refresh = jwt.decode(body["refresh_token"], SECRET, algorithms=["HS256"])
    assert refresh["sub"] == uid and refresh["type"] == "refresh"


@pytest.mark.parametrize("body,error", [
    ({"username": "u", "password": "long enough"}, "email is missing"),
    ({"email": "a@example.com", "password": "long enough"}, "username is missing"),
    ({"email": "a@example.com", "username": "bob"}, "password is missing"),
    ({"email": "   ", "username": "bob", "password": "long enough"}, "email is blank"),
    ({"email": "a@example.com", "username": " \t", "password": "long enough"}, "username is blank"),
    ({"email": "a@example.com", "username": "bob", "password": "        "}, "password is blank"),
    ({"email": 5, "username": "bob", "password": "long enough"}, "email must be a string"),
    ({"email": "a@example.com", "username": ["bob"], "password": "long enough"}, "username must be a string"),
    ({"email": "a@example.com", "username": "bob", "password": None}, "password is missing"),
])
def test_missing_blank_or_non_string_fields_are_400(app, body, error):
    r = app.post("/users/register", json=body)
    assert r.status_code == 400
    assert r.json() == {"result": "fail", "error": error}
    assert rows(app) == []


@pytest.mark.parametrize("email", ["not-an-email", "a@@example.com", "a@localhost",
                                   "a@example", ".a@example.com", "a@-example.com"])
def test_bad_email_is_400(app, email):
    r = register(app, email=email, username="bob", password="long enough")
    assert r.status_code == 400
    assert r.json()["result"] == "fail"
    assert rows(app) == []


@pytest.mark.parametrize("password", ["short", "x" * 129, "bob@example.com", "bobby123"])
def test_password_outside_the_policy_is_400(app, password):
    r = register(app, email="bob@example.com", username="bobby123", password=password)
    assert r.status_code == 400
    assert r.json()["result"] == "fail"
    assert password not in r.text
    assert rows(app) == []


def test_password_length_counts_code_points(app):
    r = register(app, email="c@example.com", username="carol", password="ééééééé")  # 7
    assert r.status_code == 400
    r = register(app, email="c@example.com", username="carol", password="éééééééé")  # 8
    assert r.status_code == 200


def test_body_must_be_a_json_object(app):
    r = app.post("/users/register", data=b"[1,2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "request body must be a JSON object"
    r = app.post("/users/register", data=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = app.post("/users/register", data=b"email=a", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = app.post("/users/register", data=b"{\"x\":\"" + b"y" * 70000 + b"\"}",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_email_registered_twice_is_409(app):
    assert register(app, email="dan@example.com", username="dan", password="long enough").status_code == 200
    r = register(app, email="DAN@example.com", username="dan2", password="long enough")
    assert r.status_code == 409
    assert r.json() == {"result": "fail", "error": "email already registered"}
    assert len(rows(app)) == 1


def test_twenty_concurrent_registrations_of_one_email(app):
    codes = []

    def go(i):
        codes.append(requests.post(app.url + "/users/register", timeout=60, json={
            "email": "race@example.com", "username": f"racer{i}", "password": "long enough"}
        ).status_code)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 19
    assert len(rows(app)) == 1


def test_storage_down_is_503(app):
    app.db.stop()
    try:
        r = register(app, email="eve@example.com", username="eve", password="long enough")
        assert r.status_code == 503
        assert r.json() == {"result": "fail", "error": "storage unavailable"}
    finally:
        app.db.start()


def test_healthz_answers_while_registrations_hash(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n' + \
        "password = { argon2id = { memory = 262144, iterations = 6 } }\n"
    s = sesamed(routes=USERS, more=more, workers=1)
    done = []

    def go(i):
        done.append(requests.post(s.url + "/users/register", timeout=120, json={
            "email": f"slow{i}@example.com", "username": f"slow{i}", "password": "long enough"}
        ).status_code)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        assert s.get("/healthz", timeout=5).status_code == 200
    still_hashing = len(done) < len(threads)
    for t in threads:
        t.join()
    assert still_hashing, "the registrations finished before /healthz was asked"
    assert done == [200] * 4


def test_register_on_a_tutorial_shaped_table(sesamed, mariadb):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    mariadb.sql("CREATE TABLE user (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(80) "
                "NOT NULL, email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)",
                mariadb.database)
    more = (f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{mariadb.socket}", '
            f'user = "root", database = "{mariadb.database}" }}, users = {{ table = "user" }} }}\n'
            f'jwt = {{ secret = "{SECRET}" }}\n')
    s = sesamed(routes=USERS, more=more)
    r = register(s, email="tut@example.com", username="tut", password="long enough")
    assert r.status_code == 200
    uid = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])["sub"]
    row = mariadb.sql("SELECT id, email FROM user", mariadb.database).stdout.split()
    assert row == [uid, "tut@example.com"]
    assert register(s, email="TUT@example.com", username="tut2",
                    password="long enough").status_code == 409
