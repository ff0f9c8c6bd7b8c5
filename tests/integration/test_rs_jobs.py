"""RS256 tokens signed on the job threads: log-in, refresh, rotate and cookies give tokens that
verify; a burst of log-ins leaves forward auth on the same worker answering; the signatures are
counted where they were made (sesame_tokens_signed_total); where a function cannot yield, the
token is signed on the loop; a client that leaves stops the signing."""
import concurrent.futures
import re
import socket
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import TOP, route_file, wait_for
from test_keys import keygen

ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua", "jwks.lua")}
SIGN_ROUTES = {"rs_sign.lua": route_file("rs_sign.lua")}
PASSWORD = "correct horse"
RS_JWT = ('jwt = { algorithm = "RS256", private_key_file = "jwt.pem", '
          'public_key_file = "jwt.pub", %s }\n')


def rs_server(sesamed, routes, more="", jwt_extra="", workers=1, config=""):
    """sesamed with a 3072-bit RS256 key pair made by sesamectl keygen; (server, public key)."""
    s = sesamed(routes=routes, more=more + RS_JWT % jwt_extra, start=False, workers=workers,
                config=config)
    _, public = keygen(s.dir, "RS256", bits="3072")
    s.start()
    return s, serialization.load_pem_public_key(public.read_bytes())


def signed(s):
    """sesame_tokens_signed_total by thread."""
    text = s.get("/metrics").text
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^sesame_tokens_signed_total\{thread="(\w+)"\} (\d+)$', text, re.M)}


def check(token, public, typ, sub):
    claims = jwt.decode(token, public, algorithms=["RS256"])
    assert claims["type"] == typ and claims["sub"] == str(sub)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    return claims


def verify(s, token):
    return s.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def app(sesamed, mariadb):
    return rs_server(sesamed, ROUTES, mariadb.storage(mariadb.database))


def register(s, n):
    r = s.post("/users/register", json={"email": f"u{n}@example.com", "username": f"user{n}",
                                        "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def login(s, n):
    r = s.post("/users/login", json={"email": f"u{n}@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def test_login_refresh_and_rotate_sign_rs256_on_the_job_threads(app):
    s, public = app
    uid = int(s.get("/users/me", headers={
        "Authorization": f"Bearer {register(s, 1)['access_token']}"}).json()["user"]["id"])
    before = signed(s)
    body = login(s, 1)
    access = check(body["access_token"], public, "access", uid)
    refresh = check(body["refresh_token"], public, "refresh", uid)
    assert access["fam"] == refresh["fam"]
    r = verify(s, body["access_token"])
    assert r.status_code == 200 and r.headers["X-Auth-User"] == str(uid)
    after = signed(s)
    assert after["job"] == before["job"] + 2 and after["loop"] == before["loop"]

    r = s.post("/token/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"})
    assert r.status_code == 200, r.text
    rotated = r.json()
    new_refresh = check(rotated["refresh_token"], public, "refresh", uid)
    assert new_refresh["fam"] == refresh["fam"] and new_refresh["jti"] != refresh["jti"]
    assert check(rotated["access_token"], public, "access", uid)["fam"] == refresh["fam"]
    assert verify(s, rotated["access_token"]).status_code == 200
    assert signed(s)["job"] == after["job"] + 2


def test_cookies_carry_rs256_tokens_that_verify(sesamed, mariadb):
    s, public = rs_server(sesamed, ROUTES, mariadb.storage(mariadb.database),
                          "cookies = true, cookie_secure = false")
    register(s, 2)
    r = s.post("/users/login", json={"email": "u2@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    sub = jwt.decode(r.json()["access_token"], public, algorithms=["RS256"])["sub"]
    access = check(r.cookies["access_token_cookie"], public, "access", sub)
    assert access["csrf"] == r.cookies["csrf_access_token"]
    assert r.cookies["access_token_cookie"] == r.json()["access_token"]
    refresh = check(r.cookies["refresh_token_cookie"], public, "refresh", access["sub"])
    assert refresh["csrf"] == r.cookies["csrf_refresh_token"]
    assert verify(s, r.cookies["access_token_cookie"]).status_code == 200


def test_forward_auth_answers_during_a_burst_of_rs256_logins(app):
    """One worker: every forward-auth request sent while log-ins sign is answered, and right.
    Correctness only: that the loop is free meanwhile is the next test's, and the latency it
    keeps is measured by scripts/bench's rs group, not asserted here."""
    s, public = app
    users = 6
    tokens = [register(s, n)["access_token"] for n in range(users)]
    before = signed(s)
    logins = 24
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        burst = [pool.submit(login, s, n % users) for n in range(logins)]
        checks = []
        while not all(f.done() for f in burst):
            checks.append(verify(s, tokens[len(checks) % users]))
        results = [f.result() for f in burst]
    assert checks, "the burst ended before any forward-auth request was sent"
    for n, r in enumerate(checks):
        assert r.status_code == 200 and r.headers["X-Auth-User"] == str(n % users + 1)
    for n, body in enumerate(results):
        assert check(body["access_token"], public, "access", n % users + 1)["type"] == "access"
    assert signed(s)["job"] == before["job"] + 2 * logins


def test_forward_auth_is_answered_while_a_handler_signs(sesamed):
    """One worker: a token verified while a handler signs a long run of RS256 tokens is
    answered before the run ends. Signed on the loop, the worker would read the verify only
    once the whole run was signed; the order shows it, with no clock."""
    s, public = rs_server(sesamed, {**SIGN_ROUTES, "auth.lua": ROUTES["auth.lua"]})
    token = s.post("/sign/many", json={"identity": 7, "n": 1}).json()["access_token"]
    before = signed(s)
    n = 2000
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(s.post, "/sign/many", json={"identity": 8, "n": n}, timeout=120)
        assert wait_for(lambda: signed(s)["job"] > before["job"]), "the run never started"
        r = verify(s, token)
        during = signed(s)["job"]
        running = not run.done()
        last = run.result()
    assert r.status_code == 200 and r.headers["X-Auth-User"] == "7"
    assert running and during < before["job"] + n
    assert last.status_code == 200, last.text
    check(last.json()["access_token"], public, "access", 8)
    assert signed(s)["job"] == before["job"] + n


def test_hs_tokens_are_signed_on_the_loop(sesamed):
    s = sesamed(routes=SIGN_ROUTES, more='jwt = { secret = "' + "k" * 40 + '" }\n')
    before = signed(s)
    r = s.post("/sign/pair", json={"identity": 5})
    assert r.status_code == 200, r.text
    assert jwt.decode(r.json()["access_token"], "k" * 40, algorithms=["HS256"])["sub"] == "5"
    after = signed(s)
    assert after["loop"] == before["loop"] + 2 and after["job"] == before["job"]


def test_rs_tokens_without_storage_and_where_no_yield_is_possible(sesamed):
    s, public = rs_server(sesamed, SIGN_ROUTES)
    before = signed(s)
    r = s.post("/sign/pair", json={"identity": "ann"})
    assert r.status_code == 200, r.text
    assert check(r.json()["access_token"], public, "access", "ann")["role"] == "admin"
    assert "fam" not in check(r.json()["refresh_token"], public, "refresh", "ann")
    middle = signed(s)
    assert middle["job"] == before["job"] + 2 and middle["loop"] == before["loop"]
    # string.gsub's callback cannot yield: the token is signed on the loop, as before.
    r = s.post("/sign/callback", json={"identity": 9})
    assert r.status_code == 200, r.text
    check(r.json()["access_token"], public, "access", 9)
    after = signed(s)
    assert after["loop"] == middle["loop"] + 1 and after["job"] == middle["job"]


def test_a_client_that_leaves_stops_the_signing(sesamed):
    s, public = rs_server(sesamed, SIGN_ROUTES)
    before = signed(s)
    n = 5000
    body = '{"identity": 3, "n": %d}' % n
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(("POST /sign/many HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        # Until some tokens are signed: the handler is then waiting on a job, or between two.
        deadline = time.monotonic() + 30
        while signed(s)["job"] == before["job"] and time.monotonic() < deadline:
            time.sleep(0.01)
    # The worker sees the client leave (its access line says 499) while the handler waits: the
    # handler ends at that wait. Only a signature a thread had started by then may still be
    # counted; none after it, and the count stays well short of n.
    s.wait_log('"path":"/sign/many","status":499', timeout=30)
    stopped = signed(s)["job"]
    time.sleep(2)
    after = signed(s)["job"]
    assert before["job"] < stopped < before["job"] + n
    assert stopped <= after <= stopped + 1
    r = s.post("/sign/many", json={"identity": 4, "n": 2})
    assert r.status_code == 200
    check(r.json()["access_token"], public, "access", 4)


def test_a_full_queue_answers_503_in_json(sesamed):
    s, public = rs_server(sesamed, SIGN_ROUTES, config="threads = 1, queue = 1")

    def many(i):
        return s.post("/sign/many", json={"identity": i, "n": 40}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(many, range(16)))
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    for i, r in enumerate(answers):
        if r.status_code == 503:
            assert r.json()["result"] == "fail" and r.headers["Retry-After"] == "1"
        else:
            check(r.json()["access_token"], public, "access", i)
