"""The operator's own claims: sesame.jwt.access and .refresh's claims option, carried through
refresh rotation by the default /token/refresh, read back in req.claims and by PyJWT (as a
Flask service sharing the key reads them); reserved names and oversized claims refused."""
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


@pytest.fixture
def app(sesamed, tmp_path):
    more = (f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "s.db"}" }} }}\n'
            f'jwt = {{ secret = "{SECRET}", refresh_grace = 0 }}\n')
    s = sesamed(routes=ROUTES, more=more)
    r = s.post("/users/register", json={"email": "cy@example.com", "username": "cyril",
                                        "password": "correct horse"})
    assert r.status_code == 200, r.text
    s.user_id = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])["sub"]
    return s


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
def test_reserved_names_are_refused(app, name):
    r = app.post("/t/access", json={"id": app.user_id, "claims": {name: "x", "ok": 1}})
    assert r.status_code == 400
    assert f"claims: {name} is a claim sesame sets itself" in r.json()["error"]


def test_claims_too_large_are_refused(app):
    r = app.post("/t/access", json={"id": app.user_id, "claims": {"blob": "x" * 5000}})
    assert r.status_code == 400
    assert "more than 4096" in r.json()["error"]
    r = app.post("/t/access", json={"id": app.user_id, "claims": {"blob": "x" * 4000}})
    assert r.status_code == 200
    assert decode(r.json()["token"])["blob"] == "x" * 4000


def test_claims_must_be_named(app):
    r = app.post("/t/access", json={"id": app.user_id, "claims": ["a", "b"]})
    assert r.status_code == 400
    assert "table of named claims" in r.json()["error"]
