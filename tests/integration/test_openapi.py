"""docs/openapi.yaml: a valid OpenAPI 3.1 document that names every route of the default
application, and the answers of that application that no other test asks for. Every answer
these tests receive is checked against the document by conftest.py's wrapper, as every other
test's is; the asserts here say what each answer must be."""
import re

import jsonschema
import pytest

import openapi_check
from conftest import OPENAPI, SESAMED, TOP
from test_http import raw_request

SECRET = "openapi-tests-secret-0123456789abcdef!"
ROUTES = {p.name: p.read_text() for p in (TOP / "etc/sesame/routes").glob("*.lua")}
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
JWT = f'jwt = {{ secret = "{SECRET}" }}\n'
FAST = ('password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
        'pbkdf2_sha256 = { rounds = 29000 } }\n')
USER = {"email": "oa@example.com", "username": "openapi", "password": "correct horse"}
DOC = openapi_check.Document()
SERVED = openapi_check.shipped_routes() | openapi_check.builtin_routes(SESAMED)
# The routes that read a JSON body: those whose operation documents one.
BODY_ROUTES = sorted((m, p) for m, p, s, r in DOC.operations()
                     if s == "415" and (m, p) in SERVED)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def served(method, path):
    if (method, path) not in SERVED:
        pytest.skip(f"{method} {path} is documented but no shipped route script serves it")


@pytest.fixture
def app(sesamed):
    s = sesamed(routes=ROUTES, more=SQLITE + JWT + FAST)
    r = s.post("/users/register", json=USER)
    assert r.status_code == 200, r.text
    s.tokens = s.post("/users/login", json={"email": USER["email"],
                                            "password": USER["password"]}).json()
    return s


# ---- the document itself ----

def all_refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for v in node.values():
            yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


def schemas_of(doc):
    """(where, schema) of every schema the document holds."""
    d = doc.doc
    for name, schema in d["components"]["schemas"].items():
        yield f"components/schemas/{name}", schema
    for name, header in d["components"]["headers"].items():
        yield f"components/headers/{name}", header["schema"]
    for method, path, status, response in doc.operations():
        for ctype, media in (response.get("content") or {}).items():
            yield f"{method} {path} {status} {ctype}", media["schema"]
        for name, header in (response.get("headers") or {}).items():
            yield f"{method} {path} {status} header {name}", doc.resolve(header)["schema"]
    for path, item in d["paths"].items():
        for method in openapi_check.HTTP_METHODS:
            op = item.get(method) or {}
            for media in (op.get("requestBody") or {}).get("content", {}).values():
                yield f"{method.upper()} {path} request", media["schema"]
            for p in op.get("parameters", []):
                yield f"{method.upper()} {path} parameter {p['name']}", p["schema"]


def test_the_document_is_openapi_3_1():
    d = DOC.doc
    assert re.fullmatch(r"3\.1\.\d+", d["openapi"]), d["openapi"]
    assert d["info"]["title"] and d["info"]["version"]
    unresolved = [ref for ref in all_refs(d) if not _resolves(ref)]
    assert not unresolved, f"$refs that point nowhere: {unresolved}"
    for where, schema in schemas_of(DOC):
        jsonschema.Draft202012Validator.check_schema(DOC.inline(schema))
        assert jsonschema.Draft202012Validator(DOC.inline(schema)), where
    schemes = set(d["components"]["securitySchemes"])
    ids = []
    for method, path, status, response in DOC.operations():
        assert re.fullmatch(r"[1-5][0-9][0-9]", status), (method, path, status)
        assert response.get("description"), (method, path, status)
    for path, item in d["paths"].items():
        assert path.startswith("/"), path
        for method in openapi_check.HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            ids.append(op["operationId"])
            assert op.get("summary") and op.get("responses"), (method, path)
            for requirement in op.get("security", []):
                assert set(requirement) <= schemes, (method, path, requirement)
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for name in ("x-transport-errors", "x-unrouted"):
        for status in d[name]:
            assert DOC.extension(name, status).get("description"), (name, status)


def _resolves(ref):
    try:
        DOC.pointer(ref)
        return True
    except (KeyError, TypeError):
        return False


def test_the_document_names_every_route_of_the_default_application():
    scripts = openapi_check.shipped_routes()
    builtins = openapi_check.BUILTINS | {("GET", "/metrics")}
    documented = {(m, p) for m, p, _, _ in DOC.operations()}
    undocumented = sorted((scripts | builtins) - documented)
    unserved = sorted(documented - scripts - builtins)
    assert not undocumented and not unserved, (
        f"routes without documentation in docs/openapi.yaml: {undocumented}; "
        f"documented routes that no script in etc/sesame/routes registers: {unserved}")


def test_a_response_outside_the_document_is_caught():
    scope = openapi_check.Scope(SERVED, set(), False)
    json_type = {"Content-Type": "application/json", "X-Request-Id": "x"}
    judge = OPENAPI.judge
    extra = b'{"result":"success","status":"ok","more":1}'
    assert judge(scope, "GET", "/healthz", 200, json_type, extra)
    assert judge(scope, "GET", "/healthz", 201, json_type, b'{"result":"success"}')
    assert judge(scope, "GET", "/healthz", 200, {"X-Request-Id": "x"}, b"{}")
    assert judge(scope, "GET", "/healthz", 200, {"Content-Type": "application/json"},
                 b'{"result":"success","status":"ok"}')
    assert judge(scope, "GET", "/no/such/path", 200, json_type, b'{"result":"success"}')
    assert not judge(scope, "GET", "/healthz", 200, json_type, b'{"result":"success",'
                     b'"status":"ok"}')


# ---- answers of the default application ----

def test_info_names_the_service(app):
    r = app.get("/")
    assert r.status_code == 200 and r.json()["service"] == "sesame"


def test_jwks_is_empty_with_a_shared_secret(app):
    r = app.get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.json() == {"keys": []}


def test_head_answers_as_get_without_a_body(app):
    r = app.request("HEAD", "/healthz")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Type"] == "application/json"


def test_unknown_paths_and_methods(app):
    r = app.get("/no/such/route")
    assert r.status_code == 404 and r.json() == {"result": "fail", "error": "not found"}
    for path in sorted({p for _, p in SERVED}):
        r = app.request("PATCH", path)
        assert r.status_code == 405 and r.json()["error"] == "method not allowed", path
        methods = {m for m, p in SERVED if p == path}
        methods |= {"HEAD"} if "GET" in methods else set()
        assert set(r.headers["Allow"].split(", ")) == methods, (path, r.headers["Allow"])


@pytest.mark.parametrize("method,path", BODY_ROUTES)
def test_a_body_that_is_not_a_json_object(app, method, path):
    token = bearer(app.tokens["access_token"])
    r = app.request(method, path, data="{}", headers=dict(token, **{"Content-Type": "text/plain"}))
    assert r.status_code == 415, r.text
    for body in ("[]", "{", '"x"'):
        r = app.request(method, path, data=body,
                        headers=dict(token, **{"Content-Type": "application/json"}))
        assert r.status_code == 400, (body, r.text)
    r = app.request(method, path, json={}, headers=token)
    assert r.status_code == 400, r.text
    r = app.request(method, path, data="x" * 70000, headers=dict(
        token, **{"Content-Type": "application/json"}))
    assert r.status_code == 413 and r.json()["error"] == "request too large"


def test_answers_given_before_routing(app):
    # Not HTTP: libevent's own answer, as a JSON envelope too.
    status, _, body = raw_request(app, b"GET /healthz HTTP/1.1\r\nBad header line\r\n\r\n")
    assert status == 400 and body["error"] == "malformed request"
    r = app.request("TRACE", "/healthz")
    assert r.status_code == 501 and r.json()["error"] == "method not implemented"
    r = app.request("GET", "/healthz", data="x" * 70000)
    assert r.status_code == 413
    status, _, body = raw_request(app, b"POST /users/login HTTP/1.1\r\nHost: x\r\n"
                                       b"Expect: something\r\nContent-Length: 2\r\n\r\n{}")
    assert status == 417 and body["error"] == "expectation failed"


def test_tokens_refused(app):
    stale = bearer(app.tokens["refresh_token"])
    for method, path in (("GET", "/users/me"), ("GET", "/auth/verify"),
                         ("POST", "/users/logout"), ("POST", "/users/logout/all")):
        r = app.request(method, path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        r = app.request(method, path, headers=stale)
        assert r.status_code == 401 and r.json()["error"] == "wrong token type"
    r = app.post("/token/refresh", headers=bearer(app.tokens["access_token"]))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_storage_down_answers_503(sesamed, mariadb):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database) + JWT + FAST)
    assert s.post("/users/register", json=USER).status_code == 200
    login = {"email": USER["email"], "password": USER["password"]}
    tokens = s.post("/users/login", json=login).json()
    access, refresh = bearer(tokens["access_token"]), bearer(tokens["refresh_token"])
    calls = [("POST", "/users/register", {"json": dict(USER, email="new@example.com")}),
             ("POST", "/users/login", {"json": login}),
             ("GET", "/users/me", {"headers": access}),
             ("POST", "/token/refresh", {"headers": refresh}),
             ("POST", "/users/logout/all", {"headers": access}),
             ("POST", "/users/logout", {"headers": access}),
             ("POST", "/users/password", {"headers": access, "json": {
                 "password": USER["password"], "new_password": "a new password"}})]
    mariadb.stop()
    try:
        for method, path, kw in calls:
            if (method, path) not in SERVED:
                continue
            r = s.request(method, path, **kw)
            assert r.status_code == 503, (path, r.text)
            assert r.json() == {"result": "fail", "error": "storage unavailable"}
        r = s.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "storage unavailable"
    finally:
        mariadb.start()


# ---- built-ins and routes that arrive with other changes ----

def test_metrics_is_prometheus_text_for_loopback(app):
    served("GET", "/metrics")
    r = app.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "sesame_" in r.text


def test_metrics_can_be_turned_off(sesamed):
    served("GET", "/metrics")
    s = sesamed("metrics = false,", routes=ROUTES, more=SQLITE + JWT + FAST)
    r = s.get("/metrics")
    assert r.status_code == 404 and r.json() == {"result": "fail", "error": "not found"}


def change_password(s, token, body):
    return s.post("/users/password", headers=bearer(token), json=body)


def test_password_change(app):
    served("POST", "/users/password")
    fresh = app.tokens["access_token"]
    old = USER["password"]
    r = change_password(app, fresh, {"password": "wrong horse", "new_password": "a new one!"})
    assert r.status_code == 401 and r.json()["error"] == "invalid password"
    r = change_password(app, fresh, {"password": old, "new_password": "short"})
    assert r.status_code == 400
    r = change_password(app, fresh, {"password": old})
    assert r.status_code == 400
    refreshed = app.post("/token/refresh", headers=bearer(app.tokens["refresh_token"])).json()
    r = change_password(app, refreshed["access_token"],
                        {"password": old, "new_password": "a new password"})
    assert r.status_code == 401 and r.json()["error"] == "fresh token required"
    fresh = app.post("/users/login", json={"email": USER["email"], "password": old}).json()
    r = change_password(app, fresh["access_token"],
                        {"password": old, "new_password": "a new password"})
    assert r.status_code == 200 and r.json() == {"result": "success"}


def test_password_change_is_limited(sesamed):
    served("POST", "/users/password")
    limits = 'limits = { login = "2/hour", password = "1/hour" }\n'
    s = sesamed(routes=ROUTES, more=SQLITE + JWT + FAST + limits)
    assert s.post("/users/register", json=USER).status_code == 200
    token = s.post("/users/login", json={"email": USER["email"],
                                         "password": USER["password"]}).json()["access_token"]
    # Whichever rule the route counts with (password, or login's), the third try is over it.
    statuses = [change_password(s, token, {"password": "wrong horse",
                                           "new_password": "a new password"})
                for _ in range(3)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) > 0, \
        [r.status_code for r in statuses]
