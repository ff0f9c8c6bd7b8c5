"""Log-in, GET /users/me, GET /auth/verify, and a battery of forged and malformed tokens."""
import base64
import json
import time
import uuid

import jwt
import pytest
from passlib.hash import pbkdf2_sha256

from conftest import TOP

SECRET = "auth-tests-secret-0123456789abcdef!!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}


@pytest.fixture
def app(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n'
    s = sesamed(routes=ROUTES, more=more)
    s.db = mariadb
    r = s.post("/users/register", json={"email": "ann@example.com", "username": "ann",
                                        "password": "correct horse"})
    assert r.status_code == 200
    s.uid = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])["sub"]
    return s


def login(s, email="ann@example.com", password="correct horse"):
    return s.post("/users/login", json={"email": email, "password": password})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_login_gives_fresh_tokens(app):
    r = login(app)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    access = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])
    assert access["sub"] == app.uid and access["fresh"] is True and access["type"] == "access"
    refresh = jwt.decode(r.json()["refresh_token"], SECRET, algorithms=["HS256"])
    assert refresh["type"] == "refresh"


@pytest.mark.parametrize("email,password", [
    ("ann@example.com", "wrong horse"), ("nobody@example.com", "correct horse"),
    ("not an email", "correct horse"), ("ANN@EXAMPLE.COM", "Correct horse")])
def test_failed_logins_all_look_alike(app, email, password):
    r = login(app, email, password)
    assert r.status_code == 401
    assert r.json() == {"result": "fail", "error": "invalid email or password"}


def test_email_letter_case_does_not_matter(app):
    assert login(app, "Ann@Example.com").status_code == 200


@pytest.mark.parametrize("body,error", [({"password": "x"}, "email is missing"),
                                        ({"email": "ann@example.com"}, "password is missing")])
def test_login_missing_field_is_400(app, body, error):
    r = app.post("/users/login", json=body)
    assert r.status_code == 400 and r.json()["error"] == error


def test_unknown_email_costs_a_hash_too(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + f'jwt = {{ secret = "{SECRET}" }}\n' + \
        "password = { argon2id = { memory = 131072, iterations = 3 } }\n"
    s = sesamed(routes=ROUTES, more=more, workers=1)
    assert s.post("/users/register", json={"email": "t@example.com", "username": "tim",
                                           "password": "long enough"}).status_code == 200

    def timed(email):
        start = time.monotonic()
        assert login(s, email, "wrong password").status_code == 401
        return time.monotonic() - start
    wrong = min(timed("t@example.com") for _ in range(3))
    unknown = min(timed("nobody@example.com") for _ in range(3))
    # Without the dummy hash an unknown e-mail answers in about a millisecond.
    assert unknown > 0.5 * wrong, (unknown, wrong)


def test_login_upgrades_a_pbkdf2_hash(app):
    stored = pbkdf2_sha256.using(rounds=29000).hash("tutorial password")
    app.db.sql(f"INSERT INTO users (email, username, password) VALUES "
               f"('flask@example.com', 'flask', '{stored}')", app.db.database)
    r = login(app, "flask@example.com", "tutorial password")
    assert r.status_code == 200
    row = app.db.sql("SELECT password FROM users WHERE email = 'flask@example.com'",
                     app.db.database).stdout.strip()
    assert row.startswith("$argon2id$")
    assert login(app, "flask@example.com", "tutorial password").status_code == 200
    assert login(app, "flask@example.com", "wrong").status_code == 401


def test_me(app):
    token = login(app).json()["access_token"]
    r = app.get("/users/me", headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {"result": "success",
                        "user": {"id": int(app.uid), "email": "ann@example.com",
                                 "username": "ann", "email_verified": False}}


def test_missing_token(app):
    r = app.get("/users/me")
    assert r.status_code == 401
    assert r.json() == {"result": "fail", "error": "missing token"}
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_forward_auth(app):
    token = login(app).json()["access_token"]
    r = app.get("/auth/verify", headers=bearer(token))
    assert r.status_code == 200
    assert r.headers["X-Auth-User"] == app.uid
    r = app.get("/auth/verify", headers=bearer(token + "x"))
    assert r.status_code == 401
    assert "X-Auth-User" not in r.headers
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_flask_shaped_tokens_are_accepted(app):
    now = int(time.time())
    claims = {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access",
              "sub": app.uid, "nbf": now, "exp": now + 900}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert app.get("/users/me", headers=bearer(token)).status_code == 200


def b64(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header, payload, key=SECRET, alg="HS256"):
    import hashlib
    import hmac
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    head = f"{b64(header)}.{b64(payload)}"
    sig = hmac.new(key.encode(), head.encode(), digest).digest()
    return f"{head}.{b64(sig)}"


def claims(**over):
    now = int(time.time())
    c = {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access", "sub": "1",
         "nbf": now, "exp": now + 900}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


HS = {"alg": "HS256", "typ": "JWT"}


def forged():
    good = sign(HS, claims())
    head, payload, sig = good.split(".")
    cases = {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg None": f"{b64({'alg': 'None'})}.{payload}.",
        "alg NONE": f"{b64({'alg': 'NONE'})}.{payload}.",
        "alg nOnE with sig": f"{b64({'alg': 'nOnE'})}.{payload}.{sig}",
        "alg HS512 same key": sign({"alg": "HS512"}, claims(), alg="HS512"),
        "alg hs256 lower": sign({"alg": "hs256"}, claims()),
        "alg RS256 hmac": sign({"alg": "RS256"}, claims()),
        "no alg": sign({"typ": "JWT"}, claims()),
        "typ other": sign({"alg": "HS256", "typ": "JOSE+JSON"}, claims()),
        "crit header": sign({"alg": "HS256", "crit": ["exp"]}, claims()),
        "wrong key": sign(HS, claims(), key="another-secret-of-32-bytes-or-more!!"),
        "empty key": sign(HS, claims(), key=""),
        "kid path": sign({"alg": "HS256", "kid": "../../../../dev/null"}, claims(), key=""),
        "signature stripped": f"{head}.{payload}.",
        "two parts": f"{head}.{payload}",
        "four parts": f"{good}.{sig}",
        "payload tampered": f"{head}.{b64(claims(sub='2'))}.{sig}",
        "header tampered": f"{b64({'alg': 'HS256', 'x': 1})}.{payload}.{sig}",
        "signature truncated": good[:-4],
        "signature padded": good + "==",
        "bad base64": f"{head}.{payload}.!!!!",
        "expired": sign(HS, claims(exp=int(time.time()) - 10)),
        "not yet valid": sign(HS, claims(nbf=int(time.time()) + 3600)),
        "refresh as access": sign(HS, claims(type="refresh", fresh=None)),
        "no type": sign(HS, claims(type=None)),
        "no sub": sign(HS, claims(sub=None)),
        "empty sub": sign(HS, claims(sub="")),
        "object sub": sign(HS, claims(sub={"id": 1})),
        "no jti": sign(HS, claims(jti=None)),
        "empty jti": sign(HS, claims(jti="")),
        "number jti": sign(HS, claims(jti=7)),
        "jti too long": sign(HS, claims(jti="j" * 65)),
        "jti with NUL": sign(HS, claims(jti="a\u0000b")),
        "number fam": sign(HS, claims(fam=1)),
        "empty fam": sign(HS, claims(fam="")),
        "fam too long": sign(HS, claims(fam="f" * 65)),
        "no exp": sign(HS, claims(exp=None)),
        "string exp": sign(HS, claims(exp="never")),
        "payload array": sign(HS, ["a"]),
        "payload not json": f"{head}.{b64(b'not json')}.{sig}",
        "duplicate claims": head + "." + b64(b'{"sub":"1","sub":"2"}') + "." + sig,
        "huge": sign(HS, claims(pad="x" * 9000)),
        "empty": "",
        "dots": "..",
        "spaces": good.replace(".", " . "),
    }
    return cases


@pytest.mark.parametrize("name", list(forged()))
@pytest.mark.parametrize("path", ["/users/me", "/auth/verify"])
def test_forged_tokens_are_401(app, name, path):
    token = forged()[name]
    r = app.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, (name, r.status_code, r.text)
    assert r.json()["result"] == "fail"


def test_the_battery_leaves_the_workers_alive(app):
    before = app.workers()
    for token in forged().values():
        for path in ("/users/me", "/auth/verify"):
            assert app.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    for header in ["Basic abc", "Bearer", "Bearer  ", "bearer " + "a" * 20000, "Token x"]:
        r = app.get("/users/me", headers={"Authorization": header})
        assert r.status_code in (400, 401, 413, 431), header
    assert app.workers() == before
    assert app.get("/healthz").status_code == 200


def test_expected_claims_when_issuer_and_audience_are_set(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + \
        f'jwt = {{ secret = "{SECRET}", issuer = "sesame", audience = "app", leeway = 30 }}\n'
    s = sesamed(routes=ROUTES, more=more)
    ok = sign(HS, claims(iss="sesame", aud=["other", "app"]))
    assert s.get("/auth/verify", headers=bearer(ok)).status_code == 200
    for bad in (claims(iss="evil", aud="app"), claims(iss="sesame", aud="other"),
                claims(aud="app")):
        assert s.get("/auth/verify", headers=bearer(sign(HS, bad))).status_code == 401
    # Within the leeway, a token just expired still passes.
    late = sign(HS, claims(iss="sesame", aud="app", exp=int(time.time()) - 10))
    assert s.get("/auth/verify", headers=bearer(late)).status_code == 200


def test_a_sub_that_only_starts_like_an_id_is_nobody(app):
    for sub in (f"{app.uid}abc", f"0{app.uid}", f"{app.uid}@example.com", f" {app.uid}"):
        token = sign(HS, claims(sub=sub))
        assert app.get("/users/me", headers=bearer(token)).status_code == 401, sub


def test_an_audience_sesame_does_not_expect_is_refused(app):
    token = sign(HS, claims(sub=app.uid, aud="another-service"))
    assert app.get("/users/me", headers=bearer(token)).status_code == 401


def test_a_locked_account_cannot_log_in(app):
    app.db.sql("INSERT INTO users (email, username, password) VALUES "
               "('locked@example.com', 'locked', '!locked')", app.db.database)
    r = login(app, "locked@example.com", "!locked")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid email or password"


COOKIE_ROUTES = dict(ROUTES, **{"post.lua": 'local sesame = require "sesame"\n'
                                 'sesame.route("POST", "/act", { auth = "required" }, '
                                 'function(req) return 200, { user = req.identity } end)\n'})


@pytest.fixture
def cookie_app(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + \
        f'jwt = {{ secret = "{SECRET}", cookies = true, cookie_secure = false }}\n'
    s = sesamed(routes=COOKIE_ROUTES, more=more)
    assert s.post("/users/register", json={"email": "cat@example.com", "username": "cat",
                                           "password": "correct horse"}).status_code == 200
    return s


def test_cookies_carry_the_tokens(cookie_app):
    r = login(cookie_app, "cat@example.com")
    assert r.status_code == 200
    raw = r.raw.headers.getlist("Set-Cookie")
    names = sorted(c.split("=", 1)[0] for c in raw)
    assert names == ["access_token_cookie", "csrf_access_token", "csrf_refresh_token",
                     "refresh_token_cookie"]
    for c in raw:
        assert "SameSite=Lax" in c and "Path=/" in c and "Max-Age=" in c
        assert ("HttpOnly" in c) == ("token_cookie" in c)
    access = jwt.decode(r.cookies["access_token_cookie"], SECRET, algorithms=["HS256"])
    assert access["csrf"] == r.cookies["csrf_access_token"]
    assert r.cookies["access_token_cookie"] == r.json()["access_token"]


def test_a_cookie_authenticates_reads_and_csrf_guards_writes(cookie_app):
    import requests
    session = requests.Session()
    r = session.post(cookie_app.url + "/users/login",
                     json={"email": "cat@example.com", "password": "correct horse"})
    assert r.status_code == 200
    assert session.get(cookie_app.url + "/users/me").json()["user"]["username"] == "cat"
    assert session.get(cookie_app.url + "/auth/verify",
                       headers={"X-Forwarded-Method": "GET"}).status_code == 200
    r = session.post(cookie_app.url + "/act")
    assert r.status_code == 401 and r.json()["error"] == "missing or wrong CSRF token"
    r = session.post(cookie_app.url + "/act", headers={"X-CSRF-TOKEN": "wrong"})
    assert r.status_code == 401
    csrf = session.cookies["csrf_access_token"]
    r = session.post(cookie_app.url + "/act", headers={"X-CSRF-TOKEN": csrf})
    assert r.status_code == 200
    # A bearer token needs no CSRF header: no browser sends it by itself.
    token = session.cookies["access_token_cookie"]
    assert cookie_app.post("/act", headers=bearer(token)).status_code == 200


def test_secure_cookies_by_default(sesamed, mariadb):
    more = mariadb.storage(mariadb.database) + \
        f'jwt = {{ secret = "{SECRET}", cookies = true, cookie_samesite = "Strict" }}\n'
    s = sesamed(routes=ROUTES, more=more)
    r = s.post("/users/register", json={"email": "dog@example.com", "username": "dog",
                                        "password": "correct horse"})
    for c in r.raw.headers.getlist("Set-Cookie"):
        assert "; Secure" in c and "SameSite=Strict" in c


def test_no_cookies_unless_asked(app):
    assert "Set-Cookie" not in login(app).headers


def test_a_token_issued_this_very_second_elsewhere_is_taken(app):
    # nbf = iat = now, as another host (a Flask service) issues it: with no leeway, sesamed's
    # clock must not lag at the start of a second.
    statuses = set()
    for _ in range(200):
        now = time.time()
        token = jwt.encode(claims(sub=app.uid, iat=int(now), nbf=int(now)), SECRET,
                           algorithm="HS256")
        statuses.add(app.get("/auth/verify", headers=bearer(token)).status_code)
    assert statuses == {200}
