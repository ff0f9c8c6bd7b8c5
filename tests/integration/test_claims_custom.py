"""The operator's own claims: sesame.jwt.access and .refresh's claims option, carried through
refresh rotation by the default /token/refresh, read back in req.claims and by PyJWT (as a
Flask service sharing the key reads them); reserved names and oversized claims refused; the
shipped roles example (etc/sesame/examples/roles.lua). On SQLite and on MariaDB."""
import sqlite3
import time
import uuid

import jwt
import pytest

from conftest import TOP

SECRET = "claims-tests-secret-0123456789abcdef!!"
CLAIMS_ROUTES = """
local sesame = require "sesame"
-- Tokens for a registered user with the claims the test sends.
sesame.route("POST", "/t/tokens", function(req)
  local body = req:json()
  local ok, refresh, family = pcall(sesame.jwt.refresh, body.id, { claims = body.claims })
  if not ok then return 400, { error = refresh } end
  local access = sesame.jwt.access(body.id, { family = family, claims = body.claims })
  return 200, { access_token = access, refresh_token = refresh }
end)
sesame.route("POST", "/t/access", function(req)
  local body = req:json()
  local ok, err = pcall(sesame.jwt.access, body.id, { claims = body.claims })
  return ok and 200 or 400, { error = not ok and err or nil, token = ok and err or nil }
end)
sesame.route("GET", "/t/claims", { auth = "required" }, function(req)
  return 200, { claims = req.claims }
end)
"""
ROUTES = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text(),
          "claims.lua": CLAIMS_ROUTES}
CUSTOM = {"roles": ["admin", "editor"], "tenant": "acme", "level": 3,
          "prefs": {"beta": True, "lang": "fr"}}


JWT = f'jwt = {{ secret = "{SECRET}", refresh_grace = 0 }}\n'
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'


class Store:
    """The storage table of sesame.lua for one backend, and SQL run on it from outside."""

    def __init__(self, backend, mariadb=None):
        self.backend, self.mariadb = backend, mariadb
        self.more = SQLITE if mariadb is None else mariadb.storage(mariadb.database)

    def sql(self, s, statement):
        if self.mariadb is not None:
            self.mariadb.sql(statement, self.mariadb.database)
            return
        db = sqlite3.connect(s.dir / "sesame.db")
        with db:
            db.execute(statement)
        db.close()


@pytest.fixture(params=["sqlite", "mariadb"])
def store(request):
    if request.param == "sqlite":
        return Store("sqlite")
    return Store("mariadb", request.getfixturevalue("mariadb"))


def registered(s):
    r = s.post("/users/register", json={"email": "cy@example.com", "username": "cyril",
                                        "password": "correct horse"})
    assert r.status_code == 200, r.text
    s.user_id = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])["sub"]
    return s


@pytest.fixture
def app(sesamed, store):
    """The claims routes on each backend, a user registered."""
    return registered(sesamed(routes=ROUTES, more=store.more + JWT))


@pytest.fixture
def signer(sesamed):
    """The claims routes on SQLite, for what storage has no part in: the claims' checks."""
    return registered(sesamed(routes=ROUTES, more=SQLITE + JWT))


def decode(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"])


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_claims_are_in_the_access_token_and_req_claims(app):
    r = app.post("/t/tokens", json={"id": app.user_id, "claims": CUSTOM})
    assert r.status_code == 200, r.text
    access = decode(r.json()["access_token"])
    for name, value in CUSTOM.items():
        assert access[name] == value
    assert access["sub"] == app.user_id and access["type"] == "access"
    seen = app.get("/t/claims", headers=bearer(r.json()["access_token"])).json()["claims"]
    assert seen["roles"] == ["admin", "editor"] and seen["prefs"] == {"beta": True, "lang": "fr"}


def test_claims_survive_rotation_twice(app):
    tokens = app.post("/t/tokens", json={"id": app.user_id, "claims": CUSTOM}).json()
    assert decode(tokens["refresh_token"])["tenant"] == "acme"
    for _ in range(2):
        r = app.post("/token/refresh", headers=bearer(tokens["refresh_token"]))
        assert r.status_code == 200, r.text
        before, tokens = tokens, r.json()
        assert tokens["refresh_token"] != before["refresh_token"]
        for kind in ("access_token", "refresh_token"):
            got = decode(tokens[kind])
            assert {k: got[k] for k in CUSTOM} == CUSTOM, kind
    me = app.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200


def test_tokens_without_claims_rotate_without_them(app):
    r = app.post("/users/login", json={"email": "cy@example.com", "password": "correct horse"})
    r = app.post("/token/refresh", headers=bearer(r.json()["refresh_token"]))
    assert r.status_code == 200
    assert "tenant" not in decode(r.json()["access_token"])


@pytest.mark.parametrize("name", ["iat", "nbf", "jti", "type", "sub", "exp", "iss", "aud",
                                  "fam", "fresh", "csrf"])
def test_reserved_names_are_refused(signer, name):
    r = signer.post("/t/access", json={"id": signer.user_id, "claims": {name: "x", "ok": 1}})
    assert r.status_code == 400
    assert f"claims: {name} is a claim sesame sets itself" in r.json()["error"]


def test_claims_too_large_are_refused(signer):
    r = signer.post("/t/access", json={"id": signer.user_id, "claims": {"blob": "x" * 5000}})
    assert r.status_code == 400
    assert "more than 4096" in r.json()["error"]
    r = signer.post("/t/access", json={"id": signer.user_id, "claims": {"blob": "x" * 4000}})
    assert r.status_code == 200
    assert decode(r.json()["token"])["blob"] == "x" * 4000


def test_claims_must_be_named(signer):
    r = signer.post("/t/access", json={"id": signer.user_id, "claims": ["a", "b"]})
    assert r.status_code == 400
    assert "table of named claims" in r.json()["error"]


def test_rotate_keeps_only_the_operators_claims_of_a_flask_refresh_token(app):
    """A refresh token a Flask service signed (no family) carries flask-jwt-extended's own
    claims beside the operator's: its successor gets sesame's own values for those."""
    now = int(time.time())
    flask = {"fresh": False, "iat": now - 5, "jti": str(uuid.uuid4()), "type": "refresh",
             "sub": app.user_id, "nbf": now - 5, "exp": now + 3600, "csrf": "flask-csrf",
             "tenant": "acme", "roles": ["admin"]}
    token = jwt.encode(flask, SECRET, algorithm="HS256")
    r = app.post("/token/refresh", headers=bearer(token))
    assert r.status_code == 200, r.text
    for kind in ("access_token", "refresh_token"):
        got = decode(r.json()[kind])
        assert got["tenant"] == "acme" and got["roles"] == ["admin"], kind
        assert got["jti"] != flask["jti"] and got["iat"] >= now and "csrf" not in got, kind
        assert got["fam"] == flask["jti"], kind
    assert decode(r.json()["access_token"])["type"] == "access"
    assert decode(r.json()["refresh_token"])["exp"] != flask["exp"]


# ---- the shipped roles example ----

def test_the_roles_example_puts_roles_in_the_tokens(sesamed, store):
    routes = {"roles.lua": (TOP / "etc/sesame/examples/roles.lua").read_text(),
              "users.lua": ROUTES["users.lua"]}
    s = sesamed(routes=routes, more=store.more + JWT)
    store.sql(s, "CREATE TABLE roles (user_id BIGINT NOT NULL, role VARCHAR(64) NOT NULL, "
                 "PRIMARY KEY (user_id, role))")
    registered(s)
    # Registered before any role: the claim is there, an empty array.
    assert decode(s.post("/users/login", json={"email": "cy@example.com", "password":
                                               "correct horse"}).json()["access_token"])[
        "roles"] == []
    for role in ("editor", "admin"):
        store.sql(s, f"INSERT INTO roles (user_id, role) VALUES ({int(s.user_id)}, '{role}')")
    store.sql(s, "INSERT INTO roles (user_id, role) VALUES (999, 'other')")
    r = s.post("/users/login", json={"email": "cy@example.com", "password": "correct horse"})
    assert r.status_code == 200, r.text
    tokens = r.json()
    for kind in ("access_token", "refresh_token"):
        assert decode(tokens[kind])["roles"] == ["admin", "editor"], kind
    for _ in range(2):
        r = s.post("/token/refresh", headers=bearer(tokens["refresh_token"]))
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert decode(tokens["access_token"])["roles"] == ["admin", "editor"]
    me = s.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["user"]["email"] == "cy@example.com"
