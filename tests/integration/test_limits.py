"""Rate limits and lock-out: the limits table, per-address limits shared by a node's workers,
server.trusted_proxies, sesame.limit, and failed log-ins per account kept by storage."""
import signal
import sqlite3
import subprocess
import time

import pytest
import requests

from conftest import PLUGINS, SESAMED, TOP, wait_for

SECRET = "limits-tests-secret-0123456789abcdef!!"
USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
JWT = f'jwt = {{ secret = "{SECRET}" }}\n'
TOO_MANY = {"result": "fail", "error": "too many requests"}

LIMIT_ROUTE = """
local sesame = require "sesame"
sesame.route("GET", "/limit/:rule", function(req)
  local allowed, retry_after = sesame.limit(req.params.rule, req.query.key or req.remote_addr)
  return 200, { allowed = allowed, retry_after = retry_after }
end)
sesame.route("GET", "/whoami", function(req)
  return 200, { remote_addr = req.remote_addr, peer_addr = req.peer_addr }
end)
"""


def app(sesamed, limits, storage=SQLITE, config="", routes=None, workers=2):
    more = storage + JWT + f"limits = {{ {limits} }}\n"
    return sesamed(routes=routes or USERS, more=more, config=config, workers=workers)


def fresh(s, method, path, **kw):
    """A request on a connection of its own: the kernel spreads them over the workers."""
    with requests.Session() as session:
        kw.setdefault("timeout", 30)
        return session.request(method, s.url + path, headers={"Connection": "close",
                                                              **kw.pop("headers", {})}, **kw)


def register(s, n, **kw):
    body = {"email": f"user{n}@example.com", "username": f"user{n}",
            "password": "correct horse"}
    return fresh(s, "POST", "/users/register", json=body, **kw)


def login(s, email, password="correct horse", **kw):
    return fresh(s, "POST", "/users/login", json={"email": email, "password": password}, **kw)


def assert_limited(r, most):
    assert r.status_code == 429, r.text
    assert r.json() == TOO_MANY
    assert 1 <= int(r.headers["Retry-After"]) <= most


def users_in(s):
    return sqlite3.connect(s.dir / "sesame.db").execute("SELECT COUNT(*) FROM users").fetchone()[0]


# ---- per address, counted by every worker of the node together ----

def test_register_limited_per_address_across_workers(sesamed):
    s = app(sesamed, 'register = "6/minute"')
    # Twenty connections land on both workers (the chance of one worker taking all of them is
    # 2 in a million): had each worker its own counter, up to twelve would pass.
    codes = [register(s, n).status_code for n in range(20)]
    assert codes.count(200) == 6, codes
    assert codes.count(429) == 14, codes
    assert users_in(s) == 6
    assert_limited(register(s, 99), 10)
    assert users_in(s) == 6  # a limited registration stores nothing


def test_login_limited_per_address(sesamed):
    s = app(sesamed, 'login = "3/minute"')
    assert register(s, 1).status_code == 200
    codes = [login(s, "user1@example.com").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = login(s, "user1@example.com")
    assert_limited(r, 20)
    # Bad requests count too: the limit comes before the body is even read.
    assert_limited(fresh(s, "POST", "/users/login", json={}), 20)


def test_false_turns_a_rule_off(sesamed):
    s = app(sesamed, 'register = false, login = false')
    codes = [fresh(s, "POST", "/users/register", json={}).status_code for _ in range(30)]
    assert codes == [400] * 30
    codes = [login(s, "nobody@example.com").status_code for _ in range(30)]
    assert codes == [401] * 30


def test_shipped_defaults_apply_without_a_limits_table(sesamed):
    s = sesamed(routes=USERS, more=SQLITE + JWT + "limits = nil\n")
    codes = [fresh(s, "POST", "/users/register", json={}).status_code for _ in range(21)]
    assert codes[:20] == [400] * 20
    assert codes[20] == 429  # register = "20/minute"


# ---- the client's address ----

def test_untrusted_peer_cannot_choose_its_address(sesamed):
    s = app(sesamed, 'login = "2/minute"', config='trusted_proxies = { "10.0.0.0/8" }',
            routes={**USERS, "limit.lua": LIMIT_ROUTE})
    codes = [login(s, "a@example.com", headers={"X-Forwarded-For": f"198.51.100.{i}"})
             .status_code for i in range(4)]
    assert codes == [401, 401, 429, 429]
    who = fresh(s, "GET", "/whoami", headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert who == {"remote_addr": "127.0.0.1", "peer_addr": "127.0.0.1"}


def test_trusted_proxy_forwards_the_client_address(sesamed):
    s = app(sesamed, 'login = "2/minute"',
            config='trusted_proxies = { "127.0.0.1", "10.0.0.0/8", "fd00::/8" }',
            routes={**USERS, "limit.lua": LIMIT_ROUTE})

    def who(xff):
        return fresh(s, "GET", "/whoami", headers={"X-Forwarded-For": xff}).json()

    assert who("203.0.113.5") == {"remote_addr": "203.0.113.5", "peer_addr": "127.0.0.1"}
    # Entries left of the right-most untrusted one are the client's own say: ignored.
    assert who("1.1.1.1, 203.0.113.5, 10.1.2.3")["remote_addr"] == "203.0.113.5"
    assert who("1.1.1.1, 203.0.113.5, fd00::1, 10.1.2.3")["remote_addr"] == "203.0.113.5"
    # A malformed entry ends the walk at the last good address.
    assert who("203.0.113.5, junk, 10.1.2.3")["remote_addr"] == "10.1.2.3"
    assert who("junk")["remote_addr"] == "127.0.0.1"

    def attempt(xff):
        return login(s, "a@example.com", headers={"X-Forwarded-For": xff}).status_code

    assert [attempt("203.0.113.1"), attempt("9.9.9.9, 203.0.113.1")] == [401, 401]
    assert attempt("8.8.8.8, 203.0.113.1") == 429  # spoofing the left does not help
    assert attempt("203.0.113.2") == 401  # another client has its own allowance
    s.wait_log("203.0.113.2")  # the access log names the client, not the proxy


def test_ipv6_clients_count_per_64(sesamed):
    s = app(sesamed, 'mine = "2/minute"', config='trusted_proxies = { "127.0.0.1" }',
            routes={**USERS, "limit.lua": LIMIT_ROUTE})

    def allowed(addr):
        return fresh(s, "GET", "/limit/mine", headers={"X-Forwarded-For": addr}).json()

    assert allowed("2001:db8:1:2::1")["allowed"] is True
    assert allowed("2001:db8:1:2:ffff:ffff:ffff:ffff")["allowed"] is True
    refused = allowed("2001:db8:1:2::abcd")
    assert refused["allowed"] is False and 1 <= refused["retry_after"] <= 30
    assert allowed("2001:db8:1:3::1")["allowed"] is True  # another /64


# ---- sesame.limit ----

def test_sesame_limit_from_a_route(sesamed):
    s = app(sesamed, 'mine = "2/second", off = false', routes={"limit.lua": LIMIT_ROUTE})
    got = [fresh(s, "GET", "/limit/mine", params={"key": "k"}).json() for _ in range(3)]
    assert got[:2] == [{"allowed": True, "retry_after": 0}] * 2
    assert got[2] == {"allowed": False, "retry_after": 1}
    assert fresh(s, "GET", "/limit/mine", params={"key": "other"}).json()["allowed"] is True
    time.sleep(1.2)
    assert fresh(s, "GET", "/limit/mine", params={"key": "k"}).json()["allowed"] is True
    assert all(fresh(s, "GET", "/limit/off").json()["allowed"] for _ in range(10))
    # The shipped rules are there for scripts too; an unknown one is the script's error.
    assert fresh(s, "GET", "/limit/login").json()["allowed"] is True
    r = fresh(s, "GET", "/limit/nosuchrule")
    assert r.status_code == 500
    s.wait_log("no rule 'nosuchrule' in the limits table")


# ---- failed log-ins per account, kept by storage ----

@pytest.fixture(params=["sqlite", "mariadb"])
def storage(request):
    if request.param == "sqlite":
        return SQLITE
    db = request.getfixturevalue("mariadb")
    return db.storage(db.database)


def test_failed_logins_lock_the_account(sesamed, storage):
    s = app(sesamed, 'login_failures = "3/hour"', storage=storage)
    assert register(s, 1).status_code == 200
    codes = [login(s, "user1@example.com", "wrong password").status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    # Now even the right password waits: it is not tried.
    assert_limited(login(s, "user1@example.com"), 1200)
    assert_limited(login(s, "USER1@Example.com", "wrong password"), 1200)
    # Another account is not touched.
    assert register(s, 2).status_code == 200
    assert login(s, "user2@example.com").status_code == 200


def test_unknown_email_is_locked_the_same_way(sesamed, storage):
    s = app(sesamed, 'login_failures = "3/hour"', storage=storage)
    codes = [login(s, "nobody@example.com", "guess").status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    r = login(s, "nobody@example.com", "guess")
    assert_limited(r, 1200)


def test_success_resets_the_failures(sesamed, storage):
    s = app(sesamed, 'login_failures = "3/hour"', storage=storage)
    assert register(s, 1).status_code == 200
    for _ in range(2):
        assert login(s, "user1@example.com", "wrong password").status_code == 401
    assert login(s, "user1@example.com").status_code == 200
    codes = [login(s, "user1@example.com", "wrong password").status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    assert login(s, "user1@example.com").status_code == 429


def test_lockout_ends_after_its_wait(sesamed):
    s = app(sesamed, 'login_failures = "2/second"')
    assert register(s, 1).status_code == 200
    for _ in range(2):
        assert login(s, "user1@example.com", "wrong password").status_code == 401
    assert_limited(login(s, "user1@example.com"), 1)
    time.sleep(1.2)
    assert login(s, "user1@example.com").status_code == 200


def test_lockout_is_shared_by_two_nodes(sesamed, mariadb):
    storage = mariadb.storage(mariadb.database)
    a = app(sesamed, 'login_failures = "3/hour"', storage=storage)
    b = app(sesamed, 'login_failures = "3/hour"', storage=storage)
    assert register(a, 1).status_code == 200
    assert login(a, "user1@example.com", "wrong").status_code == 401
    assert login(b, "user1@example.com", "wrong").status_code == 401
    assert login(a, "user1@example.com", "wrong").status_code == 401
    assert_limited(login(b, "user1@example.com"), 1200)
    assert_limited(login(a, "user1@example.com"), 1200)
    rows = mariadb.sql("SELECT account FROM sesame_login_failures", mariadb.database).stdout
    assert rows.split() == ["user1@example.com"]


# ---- configuration ----

@pytest.mark.parametrize("setting, message", [
    ('limits = { login = "3/fortnight" }', "limits.login: expected \"N/second\""),
    ('limits = { register = 20 }', "limits.register: expected \"N/second\""),
    ('limits = { mine = "0/second" }', "limits.mine: expected \"N/second\""),
    ('limits = { login = true }', "limits.login: expected \"N/second\""),
    ('limits = { "1/second" }', "limits: rules are named"),
    ('limits = "20/minute"', "limits: expected a table"),
])
def test_bad_limits_are_config_errors(sesamed, setting, message):
    s = sesamed(start=False)
    s.config.write_text(f'plugins = {{ path = "{PLUGINS}" }}\n\n{setting}\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert f"sesame.lua:3: {message}" in r.stderr, r.stderr


@pytest.mark.parametrize("proxies", ['"10.0.0.0/33"', '{ "127.0.0.1", "localhost" }',
                                     '{ "::1/129" }', "{ 10 }"])
def test_bad_trusted_proxies_are_config_errors(sesamed, proxies):
    s = sesamed(start=False, config=f"trusted_proxies = {proxies}")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "sesame.lua:1: server.trusted_proxies:" in r.stderr, r.stderr


def test_good_limits_check(sesamed):
    s = sesamed(start=False, config='trusted_proxies = { "127.0.0.1", "2001:db8::/32" }',
                more='limits = { login = "5/second", register = false, mine = "1/hour" }\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_reload_keeps_the_counters(sesamed):
    s = app(sesamed, 'mine = "2/minute"', routes={"limit.lua": LIMIT_ROUTE})
    assert [fresh(s, "GET", "/limit/mine").json()["allowed"] for _ in range(2)] == [True, True]
    old = set(s.workers())
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert wait_for(lambda: not old & set(s.workers()))  # served by new workers only
    refused = fresh(s, "GET", "/limit/mine").json()
    assert refused["allowed"] is False and 1 <= refused["retry_after"] <= 30
