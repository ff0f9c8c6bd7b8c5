"""POST /users/password: a user changes its password; every other session is logged out."""
import jwt
import pytest

from conftest import TOP, wait_for

SECRET = "password-tests-secret-0123456789abcdef!!"
ROUTES = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
OLD, NEW = "correct horse", "battery staple"


@pytest.fixture
def app(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n'
    s = sesamed(routes=ROUTES, more=more)
    r = s.post("/users/register", json={"email": "ann@example.com", "username": "ann",
                                        "password": OLD})
    assert r.status_code == 200
    return s


def login(s, password=OLD):
    r = s.post("/users/login", json={"email": "ann@example.com", "password": password})
    return r.json() if r.status_code == 200 else r.status_code


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def change(s, access, body):
    return s.post("/users/password", headers=bearer(access), json=body)


def test_success_revokes_every_other_session(app):
    mine, other = login(app), login(app)
    r = change(app, mine["access_token"], {"password": OLD, "new_password": NEW})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    assert r.headers["Cache-Control"] == "no-store"
    assert login(app) == 401 and isinstance(login(app, NEW), dict)
    assert app.post("/token/refresh", headers=bearer(other["refresh_token"])).status_code == 401
    assert wait_for(lambda: app.get("/users/me", headers=bearer(other["access_token"])
                                    ).status_code == 401, timeout=10)
    # The caller's own session goes on.
    assert app.get("/users/me", headers=bearer(mine["access_token"])).status_code == 200
    assert app.post("/token/refresh", headers=bearer(mine["refresh_token"])).status_code == 200


def test_a_failed_update_changes_nothing(app, mariadb):
    mine, other = login(app), login(app)
    mariadb.sql("CREATE TRIGGER fail BEFORE UPDATE ON users FOR EACH ROW "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected'", mariadb.database)
    r = change(app, mine["access_token"], {"password": OLD, "new_password": NEW})
    assert r.status_code == 500 and r.json()["result"] == "fail"
    mariadb.sql("DROP TRIGGER fail", mariadb.database)
    # The password goes first: it failed, so the password is the old one and the sessions
    # were left alone.
    r = app.post("/token/refresh", headers=bearer(other["refresh_token"]))
    assert r.status_code == 200
    other = r.json()
    assert isinstance(login(app), dict) and login(app, NEW) == 401
    # The change can be sent again; then the other session is over, the caller's goes on.
    r = change(app, mine["access_token"], {"password": OLD, "new_password": NEW})
    assert r.status_code == 200, r.text
    assert isinstance(login(app, NEW), dict)
    assert app.post("/token/refresh", headers=bearer(other["refresh_token"])).status_code == 401
    assert app.get("/users/me", headers=bearer(mine["access_token"])).status_code == 200


@pytest.mark.parametrize("body,error", [
    ({"new_password": NEW}, "password is missing"),
    ({"password": OLD}, "new_password is missing"),
    ({"password": OLD, "new_password": 12345678}, "new_password must be a string"),
    ({"password": OLD, "new_password": "short"}, "The password must have at least 8 characters."),
    (["not", "an", "object"], "request body must be a JSON object"),
])
def test_bad_requests_are_400(app, body, error):
    r = change(app, login(app)["access_token"], body)
    assert r.status_code == 400
    assert r.json() == {"result": "fail", "error": error}
    assert isinstance(login(app), dict)


def test_wrong_current_password_is_401(app):
    tokens = login(app)
    r = change(app, tokens["access_token"], {"password": "wrong horse", "new_password": NEW})
    assert r.status_code == 401
    assert r.json() == {"result": "fail", "error": "invalid password"}
    assert isinstance(login(app), dict) and login(app, NEW) == 401
    assert app.get("/users/me", headers=bearer(tokens["access_token"])).status_code == 200


def test_a_token_that_is_not_fresh_is_401(app):
    tokens = login(app)
    refreshed = app.post("/token/refresh", headers=bearer(tokens["refresh_token"])).json()
    assert jwt.decode(refreshed["access_token"], SECRET, algorithms=["HS256"])["fresh"] is False
    for headers in (bearer(refreshed["access_token"]), bearer("not.a.token"), {}):
        r = app.post("/users/password", headers=headers, json={"password": OLD,
                                                               "new_password": NEW})
        assert r.status_code == 401
    assert isinstance(login(app), dict) and login(app, NEW) == 401
