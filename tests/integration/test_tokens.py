"""JWT issuance: claims laid out as flask-jwt-extended lays them, checked with PyJWT."""
import subprocess
import time
import uuid

import jwt
import pytest

from conftest import SESAMED, route_file

ROUTES = {"tokens.lua": route_file("tokens.lua")}
SECRET = "s3cret-that-is-at-least-32-bytes-long!"
ACCESS_CLAIMS = {"fresh", "iat", "jti", "type", "sub", "nbf", "exp"}


def issue(s, identity=42, opts=None):
    r = s.post("/tokens", json={"identity": identity, "opts": opts})
    assert r.status_code == 200, r.text
    return r.json()


def decode(token, key=SECRET, algorithm="HS256", **kw):
    return jwt.decode(token, key, algorithms=[algorithm], **kw)


def test_access_and_refresh_claims(sesamed):
    s = sesamed(routes=ROUTES, more=f'jwt = {{ secret = "{SECRET}" }}\n')
    before = int(time.time())
    body = issue(s)
    access = decode(body["access_token"])
    assert jwt.get_unverified_header(body["access_token"]) == {"alg": "HS256", "typ": "JWT"}
    assert set(access) == ACCESS_CLAIMS
    assert access["type"] == "access" and access["sub"] == "42" and access["fresh"] is False
    assert before <= access["iat"] == access["nbf"] <= int(time.time())
    assert access["exp"] == access["iat"] + 900
    assert uuid.UUID(access["jti"]).version == 4
    refresh = decode(body["refresh_token"])
    assert set(refresh) == ACCESS_CLAIMS - {"fresh"}
    assert refresh["type"] == "refresh" and refresh["exp"] == refresh["iat"] + 2592000
    assert refresh["jti"] != access["jti"]


def test_configured_expiry_issuer_and_audience(sesamed):
    s = sesamed(routes=ROUTES, more=f'jwt = {{ secret = "{SECRET}", access_expires = 60, '
                                    'refresh_expires = 120, issuer = "sesame", audience = "app" }\n')
    body = issue(s, "alice@example.com")
    access = decode(body["access_token"], audience="app", issuer="sesame")
    assert access["exp"] - access["iat"] == 60
    assert access["sub"] == "alice@example.com"
    refresh = decode(body["refresh_token"], audience="app", issuer="sesame")
    assert refresh["exp"] - refresh["iat"] == 120


def test_access_expires_false_leaves_out_exp(sesamed):
    s = sesamed(routes=ROUTES, more=f'jwt = {{ secret = "{SECRET}", access_expires = false }}\n')
    access = decode(issue(s)["access_token"])
    assert "exp" not in access
    assert set(access) == ACCESS_CLAIMS - {"exp"}


def test_per_call_override(sesamed):
    s = sesamed(routes=ROUTES, more=f'jwt = {{ secret = "{SECRET}" }}\n')
    access = decode(issue(s, 7, {"expires": 1800, "fresh": True})["access_token"])
    assert access["exp"] - access["iat"] == 1800 and access["fresh"] is True
    assert "exp" not in decode(issue(s, 7, {"expires": False})["access_token"])


@pytest.mark.parametrize("alg,length", [("HS384", 48), ("HS512", 64)])
def test_other_hmac_algorithms(sesamed, alg, length):
    secret = (SECRET * 2)[:length]  # RFC 7518: at least the hash's length
    s = sesamed(routes=ROUTES, more=f'jwt = {{ secret = "{secret}", algorithm = "{alg}" }}\n')
    token = issue(s)["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert decode(token, secret, algorithm=alg)["sub"] == "42"


def test_secret_file(sesamed):
    s = sesamed(routes=ROUTES, more='jwt = { secret_file = "jwt.key" }\n', start=False)
    (s.dir / "jwt.key").write_text(SECRET + "\n")
    s.start()
    assert decode(issue(s)["access_token"])["sub"] == "42"


def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)


@pytest.mark.parametrize("table,message", [
    ('jwt = {\n  secret = "short",\n}\n', "jwt.secret: the secret is 5 bytes long; an HMAC secret for HS256 needs at least 32"),
    ('jwt = {\n  secret = "x",\n}\n', "jwt.secret: the secret is 1 byte long; an HMAC secret for HS256 needs at least 32"),
    ('jwt = {\n  secret = "' + SECRET + '", algorithm = "HS384",\n}\n', "jwt.secret: the secret is 38 bytes long; an HMAC secret for HS384 needs at least 48"),
    ('jwt = {\n  secret = "' + (SECRET * 2)[:48] + '", algorithm = "HS512",\n}\n', "jwt.secret: the secret is 48 bytes long; an HMAC secret for HS512 needs at least 64"),
    ('jwt = {\n  secret = "' + SECRET + '\\0' + SECRET + '",\n}\n', "jwt.secret: the secret holds a NUL byte"),
    ('jwt = {\n  secret_file = "missing.key",\n}\n', "jwt.secret_file: cannot read"),
    ('jwt = {\n  algorithm = "none",\n}\n', "jwt.algorithm: 'none' is not one of HS256, HS384, HS512"),
    ('jwt = {\n  access_expires = true,\n}\n', "jwt.access_expires: expected a number of seconds (1 or more) or false"),
    ('jwt = {\n  secret = "' + SECRET + '", secret_file = "x",\n}\n', "give jwt.secret or jwt.secret_file, not both"),
    ('jwt = {\n  cookie = true, secret = "' + SECRET + '",\n}\n', "jwt.cookie: unknown key (did you mean 'cookies'?)"),
    ('jwt = {\n  cookie_samesite = "Sometimes", secret = "' + SECRET + '",\n}\n', "jwt.cookie_samesite: expected \"Lax\", \"Strict\" or \"None\""),
])
def test_bad_jwt_settings(sesamed, table, message):
    s = sesamed(routes=ROUTES, more=table, start=False)
    r = check(s)
    assert r.returncode == 1
    assert message in r.stderr
    assert "short" not in r.stderr.replace("jwt.secret: the secret is 5", "")


def test_the_secret_never_reaches_a_message(sesamed):
    s = sesamed(routes=ROUTES, more='jwt = { secret = "tiny-secret-value" }\n', start=False)
    r = check(s)
    assert r.returncode == 1
    assert "tiny-secret-value" not in r.stderr


def test_without_a_key_tokens_fail_loudly(sesamed):
    s = sesamed(routes=ROUTES)
    r = s.post("/tokens", json={"identity": 1, "opts": None})
    assert r.status_code == 500
    s.wait_log("no JWT key is configured")
