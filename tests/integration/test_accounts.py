"""The account flows of the default routes (etc/sesame/routes/accounts.lua and users.lua), each
followed as a person would: a real SMTP server on loopback (the mailbox fixture) receives the
mails, the test reads the link's token out of the mail and POSTs it as the front end's page
would. SQLite, and MariaDB for the flows that matter most across nodes."""
import shutil
import statistics
import subprocess
import time

import pytest

import receivers
from conftest import PLUGINS, SESAMED, TOP, wait_for

SECRET = "accounts-tests-secret-0123456789abcdef"
ROUTES = {p.name: p.read_text() for p in (TOP / "etc/sesame/routes").glob("*.lua")}
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
JWT = f'jwt = {{ secret = "{SECRET}", revocation_refresh = 0.2 }}\n'
FAST = ('password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
        'pbkdf2_sha256 = { rounds = 29000 } }\n')
OPEN = "100000/second"
LINK_BASE = "https://app.example.com/account"


def limits(**rules):
    every = dict(register=OPEN, login=OPEN, login_failures=OPEN, verify=OPEN, forgot=OPEN,
                 reset=OPEN, email=OPEN)
    every.update(rules)
    return "limits = { " + ", ".join(f'{k} = "{v}"' for k, v in every.items()) + " }\n"


def accounts(**settings):
    settings.setdefault("link_base", f'"{LINK_BASE}"')
    return "accounts = { " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + " }\n"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def start(sesamed, mailbox, storage=SQLITE, config="", rules=None, **settings):
    """A sesamed with the default routes, mail to the mailbox, the shipped mail templates."""
    more = (storage + JWT + FAST + limits(**(rules or {})) + accounts(**settings) +
            f'mail = {{ url = "{mailbox.url}", from = "sesame@example.com", timeout = 5 }}\n')
    s = sesamed(config, routes=ROUTES, more=more, start=False)
    shutil.copytree(TOP / "etc/sesame/mail", s.dir / "mail")
    return s.start()


@pytest.fixture
def app(sesamed, mailbox):
    s = start(sesamed, mailbox)
    s.mailbox = mailbox
    return s


def register(s, email, username="person1", password="correct horse", **kw):
    return s.post("/users/register",
                  json={"email": email, "username": username, "password": password}, **kw)


def login(s, email, password="correct horse"):
    return s.post("/users/login", json={"email": email, "password": password})


def me(s, token):
    return s.get("/users/me", headers=bearer(token))


def token_of(mailbox, to, count=1):
    """The token of the count-th mail to `to`, and that mail."""
    mail = mailbox.wait(to=to, count=count)[count - 1]
    return receivers.token_in(mail), mail


# ---- verification ----

def test_register_mail_verify_and_log_in(app):
    r = register(app, "ann@example.com", "annie")
    assert r.status_code == 200 and set(r.json()) == {"result", "access_token", "refresh_token"}
    access = r.json()["access_token"]
    token, mail = token_of(app.mailbox, "ann@example.com")
    msg = mail["message"]
    assert msg["Subject"] == "Confirm your e-mail address"
    text = receivers.text_of(mail)
    assert f"{LINK_BASE}/verify?token={token}" in text and "annie" in text
    assert "1 day" in text and "{" not in text
    assert len(token) == 43
    assert me(app, access).json()["user"]["email_verified"] is False

    r = app.post("/users/verify", json={"token": token})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    assert me(app, access).json()["user"]["email_verified"] is True
    r = app.post("/users/verify", json={"token": token})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(app, "ann@example.com").status_code == 200
    assert token not in app.log()


def test_require_verified_refuses_log_in_until_confirmed(sesamed, mailbox):
    s = start(sesamed, mailbox, require_verified="true")
    r = register(s, "bob@example.com")
    assert r.status_code == 200
    assert r.json() == {"result": "success", "verification": "sent"}
    first, _ = token_of(mailbox, "bob@example.com")
    r = login(s, "bob@example.com")
    assert r.status_code == 403 and r.json() == {"result": "fail", "error": "email not verified"}
    # Before the password is checked nothing is said about the address.
    r = login(s, "bob@example.com", "wrong horse")
    assert r.status_code == 401 and r.json()["error"] == "invalid email or password"

    # The first mail is lost: another one, asked for without a token.
    r = s.post("/users/verify/resend", json={"email": "bob@example.com"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    second, _ = token_of(mailbox, "bob@example.com", count=2)
    assert second != first
    assert s.post("/users/verify", json={"token": second}).status_code == 200
    r = login(s, "bob@example.com")
    assert r.status_code == 200 and r.json()["access_token"]
    # Confirmed: a resend mails nobody.
    assert s.post("/users/verify/resend", json={"email": "bob@example.com"}).status_code == 200
    time.sleep(0.5)
    assert len(mailbox.sent_to("bob@example.com")) == 2


def test_a_verification_link_confirms_only_the_address_it_went_to(app):
    register(app, "carl@example.com")
    token, _ = token_of(app.mailbox, "carl@example.com")
    fresh = bearer(login(app, "carl@example.com").json()["access_token"])
    assert app.post("/users/email", headers=fresh, json={"email": "carl2@example.com"}).status_code == 200
    change, _ = token_of(app.mailbox, "carl2@example.com")
    assert app.post("/users/email/confirm", json={"token": change}).status_code == 200
    # The old address's link now finds another address on the account.
    r = app.post("/users/verify", json={"token": token})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"


# ---- password reset ----

def test_forgot_reset_and_old_sessions_refused(app):
    register(app, "dora@example.com", "dorathy")
    tokens = login(app, "dora@example.com").json()
    r = app.post("/users/password/forgot", json={"email": "Dora@Example.com"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    token, mail = token_of(app.mailbox, "dora@example.com", count=2)
    assert mail["message"]["Subject"] == "Reset your password"
    assert f"{LINK_BASE}/reset?token={token}" in receivers.text_of(mail)
    assert "1 hour" in receivers.text_of(mail)

    # A password outside the policy leaves the link working.
    r = app.post("/users/password/reset", json={"token": token, "password": "short"})
    assert r.status_code == 400 and "token" not in r.json()
    r = app.post("/users/password/reset", json={"token": token, "password": "new password!"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    assert r.headers["Cache-Control"] == "no-store"

    assert wait_for(lambda: me(app, tokens["access_token"]).status_code == 401, timeout=1.5)
    r = app.post("/token/refresh", headers=bearer(tokens["refresh_token"]))
    assert r.status_code == 401
    assert login(app, "dora@example.com").status_code == 401
    r = login(app, "dora@example.com", "new password!")
    assert r.status_code == 200
    assert me(app, r.json()["access_token"]).json()["user"]["email_verified"] is True
    r = app.post("/users/password/reset", json={"token": token, "password": "another one!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert token not in app.log() and "new password!" not in app.log()


def test_a_password_equal_to_the_username_gets_a_new_token(app):
    register(app, "eve@example.com", "evelyn99")
    app.post("/users/password/forgot", json={"email": "eve@example.com"})
    token, _ = token_of(app.mailbox, "eve@example.com", count=2)
    r = app.post("/users/password/reset", json={"token": token, "password": "evelyn99"})
    assert r.status_code == 400 and r.json()["result"] == "fail"
    again = r.json()["token"]
    assert again != token
    r = app.post("/users/password/reset", json={"token": again, "password": "not the name"})
    assert r.status_code == 200
    assert login(app, "eve@example.com", "not the name").status_code == 200


def test_expired_and_foreign_tokens_are_refused(sesamed, mailbox):
    s = start(sesamed, mailbox, reset_ttl=1)
    register(s, "fay@example.com")
    verify, _ = token_of(mailbox, "fay@example.com")
    # A verification token is not a reset token, nor an e-mail change's.
    r = s.post("/users/password/reset", json={"token": verify, "password": "new password!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    r = s.post("/users/email/confirm", json={"token": verify})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    s.post("/users/password/forgot", json={"email": "fay@example.com"})
    reset, mail = token_of(mailbox, "fay@example.com", count=2)
    assert "1 second" in receivers.text_of(mail)
    r = s.post("/users/verify", json={"token": reset})
    assert r.status_code == 400
    time.sleep(2.5)
    r = s.post("/users/password/reset", json={"token": reset, "password": "new password!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    for bad in ("x" * 43, "not a token", "A" * 500):
        r = s.post("/users/password/reset", json={"token": bad, "password": "new password!"})
        assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(s, "fay@example.com").status_code == 200


def test_forgot_answers_alike_for_known_and_unknown_addresses(app):
    register(app, "gus@example.com")
    token_of(app.mailbox, "gus@example.com")

    def ask(email):
        t = time.monotonic()
        r = app.post("/users/password/forgot", json={"email": email})
        return r, time.monotonic() - t

    known, unknown = [], []
    for _ in range(20):
        known.append(ask("gus@example.com"))
        unknown.append(ask("nobody@example.com"))
    for (a, _), (b, _) in zip(known, unknown):
        assert a.status_code == b.status_code == 200
        assert a.content == b.content == b'{"result":"success"}'
        skip = {"x-request-id", "date"}
        assert ({k.lower(): v for k, v in a.headers.items() if k.lower() not in skip} ==
                {k.lower(): v for k, v in b.headers.items() if k.lower() not in skip})
    known_median = statistics.median(t for _, t in known)
    unknown_median = statistics.median(t for _, t in unknown)
    assert known_median < unknown_median * 1.5 + 0.020, (known_median, unknown_median)
    assert unknown_median < known_median * 1.5 + 0.020, (known_median, unknown_median)
    app.mailbox.wait(to="gus@example.com", count=21)
    assert app.mailbox.sent_to("nobody@example.com") == []


# ---- e-mail change ----

def test_change_the_address(app):
    register(app, "hal@example.com", "halbert")
    tokens = login(app, "hal@example.com").json()
    fresh = bearer(tokens["access_token"])
    refreshed = app.post("/token/refresh", headers=bearer(tokens["refresh_token"])).json()
    r = app.post("/users/email", headers=bearer(refreshed["access_token"]),
                 json={"email": "hal.new@example.com"})
    assert r.status_code == 401 and r.json()["error"] == "fresh token required"
    register(app, "taken@example.com", "taken1")
    r = app.post("/users/email", headers=fresh, json={"email": "Taken@example.com"})
    assert r.status_code == 409 and r.json()["error"] == "email already registered"
    r = app.post("/users/email", headers=fresh, json={"email": "hal@example.com"})
    assert r.status_code == 400
    r = app.post("/users/email", headers=fresh, json={"email": "not an address"})
    assert r.status_code == 400

    r = app.post("/users/email", headers=fresh, json={"email": "hal.new@example.com"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    token, mail = token_of(app.mailbox, "hal.new@example.com")
    assert mail["message"]["Subject"] == "Confirm your new e-mail address"
    assert f"{LINK_BASE}/email/confirm?token={token}" in receivers.text_of(mail)
    # Until the link is used, the account keeps its address.
    assert me(app, tokens["access_token"]).json()["user"]["email"] == "hal@example.com"
    r = app.post("/users/email/confirm", json={"token": token})
    assert r.status_code == 200
    user = me(app, tokens["access_token"]).json()["user"]
    assert user["email"] == "hal.new@example.com" and user["email_verified"] is True
    notice = app.mailbox.wait(to="hal@example.com", count=2)[1]
    assert notice["message"]["Subject"] == "Your e-mail address was changed"
    assert "hal.new@example.com" in receivers.text_of(notice)
    assert login(app, "hal.new@example.com").status_code == 200
    assert login(app, "hal@example.com").status_code == 401
    assert app.post("/users/email/confirm", json={"token": token}).status_code == 400


def test_an_address_taken_before_the_link_is_used(app):
    register(app, "ida@example.com")
    fresh = bearer(login(app, "ida@example.com").json()["access_token"])
    assert app.post("/users/email", headers=fresh, json={"email": "ida2@example.com"}).status_code == 200
    token, _ = token_of(app.mailbox, "ida2@example.com")
    assert register(app, "ida2@example.com", "other2").status_code == 200
    r = app.post("/users/email/confirm", json={"token": token})
    assert r.status_code == 409 and r.json()["error"] == "email already registered"
    assert me(app, fresh["Authorization"][7:]).json()["user"]["email"] == "ida@example.com"


# ---- deletion ----

def test_delete_the_account(app):
    register(app, "jo@example.com")
    tokens = login(app, "jo@example.com").json()
    fresh = bearer(tokens["access_token"])
    r = app.request("DELETE", "/users/me", headers=fresh, json={"password": "wrong horse"})
    assert r.status_code == 401 and r.json()["error"] == "invalid password"
    assert me(app, tokens["access_token"]).status_code == 200
    r = app.request("DELETE", "/users/me", headers=fresh, json={"password": "correct horse"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    assert wait_for(lambda: me(app, tokens["access_token"]).status_code == 401, timeout=1.5)
    assert app.post("/token/refresh", headers=bearer(tokens["refresh_token"])).status_code == 401
    assert login(app, "jo@example.com").status_code == 401
    r = register(app, "jo@example.com", "joanna")
    assert r.status_code == 200
    assert me(app, r.json()["access_token"]).json()["user"]["username"] == "joanna"


# ---- the mail server down ----

def test_mail_server_down_changes_nothing(app):
    register(app, "kim@example.com")
    fresh = bearer(login(app, "kim@example.com").json()["access_token"])
    app.mailbox.stop()
    r = register(app, "lee@example.com")
    assert r.status_code == 503
    assert r.json() == {"result": "fail", "error": "mail server unavailable"}
    assert login(app, "lee@example.com").status_code == 401
    r = app.post("/users/email", headers=fresh, json={"email": "kim2@example.com"})
    assert r.status_code == 503 and r.json()["error"] == "mail server unavailable"
    app.mailbox.start()
    r = register(app, "lee@example.com")
    assert r.status_code == 200
    token, _ = token_of(app.mailbox, "lee@example.com")
    assert app.post("/users/verify", json={"token": token}).status_code == 200


# ---- conceal_existing ----

def test_conceal_existing_answers_a_taken_address_as_a_new_one(sesamed, mailbox):
    s = start(sesamed, mailbox, conceal_existing="true")
    new = register(s, "max@example.com", "maxine")
    assert new.status_code == 200
    token_of(mailbox, "max@example.com")
    taken = register(s, "MAX@example.com", "intruder")
    assert taken.status_code == new.status_code
    assert taken.content == new.content == b'{"result":"success","verification":"sent"}'
    skip = {"x-request-id", "date"}
    assert ({k.lower(): v for k, v in taken.headers.items() if k.lower() not in skip} ==
            {k.lower(): v for k, v in new.headers.items() if k.lower() not in skip})
    mail = mailbox.wait(to="max@example.com", count=2)[1]
    assert mail["message"]["Subject"] == "You already have an account"
    assert "maxine" in receivers.text_of(mail) and "token=" not in receivers.text_of(mail)
    # No tokens at registration: the owner logs in with the password.
    assert login(s, "max@example.com").status_code == 200


# ---- rate limits ----

def test_each_flow_is_limited_per_address_and_per_account(sesamed, mailbox):
    s = start(sesamed, mailbox, config='trusted_proxies = { "127.0.0.1" },',
              rules=dict(verify="2/hour", forgot="2/hour", reset="2/hour", email="2/hour"))
    register(s, "ned@example.com")
    fresh = bearer(login(s, "ned@example.com").json()["access_token"])

    def third(path, bodies, headers=None):
        statuses = [s.post(path, json=b, headers=headers).status_code for b in bodies]
        r = s.post(path, json=bodies[-1], headers=headers)
        assert r.status_code == 429, (path, statuses)
        assert r.json()["error"] == "too many requests" and int(r.headers["Retry-After"]) > 0

    third("/users/verify", [{"token": "x" * 43}] * 2)
    third("/users/password/reset", [{"token": "x" * 43, "password": "long enough"}] * 2)
    third("/users/email/confirm", [{"token": "x" * 43}] * 2)
    third("/users/email", [{"email": "ned2@example.com"}, {"email": "ned3@example.com"}], fresh)
    # Per account: the same address from other clients is still limited.
    for n, path in enumerate(("/users/password/forgot", "/users/verify/resend")):
        for i in range(2):
            xff = {"X-Forwarded-For": f"192.0.2.{10 * n + i}"}
            assert s.post(path, json={"email": "ned@example.com"}, headers=xff).status_code == 200
        r = s.post(path, json={"email": "ned@example.com"},
                   headers={"X-Forwarded-For": f"192.0.2.{10 * n + 5}"})
        assert r.status_code == 429, path
        # ... and an unknown address is limited alike.
        for i in range(2):
            xff = {"X-Forwarded-For": f"198.51.100.{10 * n + i}"}
            s.post(path, json={"email": "ghost@example.com"}, headers=xff)
        r = s.post(path, json={"email": "ghost@example.com"},
                   headers={"X-Forwarded-For": f"198.51.100.{10 * n + 5}"})
        assert r.status_code == 429, path


# ---- settings ----

def check_config(tmp_path, text):
    conf = tmp_path / "check.lua"
    conf.write_text(f'plugins = {{ path = "{PLUGINS}" }}\n' + SQLITE + JWT + text)
    return subprocess.run([SESAMED, "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("text,message", [
    (accounts(link_base='"ftp://app.example.com"'), "accounts.link_base"),
    (accounts(link_base='"https://app.example.com/?next=1"'), "accounts.link_base"),
    (accounts(require_verified="true"), "accounts.require_verified: needs the mail table"),
    (accounts(conceal_existing="true"), "accounts.conceal_existing: needs the mail table"),
    (accounts(reset_ttl=0), "accounts.reset_ttl"),
    (accounts(verify_tll=60), "accounts.verify_tll"),
])
def test_bad_accounts_settings_are_refused_with_their_line(tmp_path, text, message):
    r = check_config(tmp_path, "\n" + text)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"check.lua:5: {message}" in r.stderr, r.stderr


def test_scripts_read_the_settings_and_cannot_change_them(sesamed, mailbox):
    script = """local sesame = require "sesame"
sesame.route("GET", "/settings", function(req)
  local ok, err = pcall(function() sesame.accounts.reset_ttl = 1 end)
  return 200, { link = sesame.accounts.link_base, ttl = sesame.accounts.reset_ttl,
                required = sesame.accounts.require_verified, refused = not ok }
end)
"""
    s = sesamed(routes={"settings.lua": script},
                more=SQLITE + JWT + accounts(link_base='"https://app.example.com/"', reset_ttl=600))
    r = s.get("/settings")
    assert r.json() == {"link": "https://app.example.com", "ttl": 600, "required": False,
                        "refused": True}


# ---- MariaDB ----

def test_the_flows_on_mariadb_and_storage_down(sesamed, mailbox, mariadb):
    s = start(sesamed, mailbox, storage=mariadb.storage(mariadb.database),
              require_verified="true")
    assert register(s, "oli@example.com").status_code == 200
    token, _ = token_of(mailbox, "oli@example.com")
    assert s.post("/users/verify", json={"token": token}).status_code == 200
    s.post("/users/password/forgot", json={"email": "oli@example.com"})
    reset, _ = token_of(mailbox, "oli@example.com", count=2)
    assert s.post("/users/password/reset",
                  json={"token": reset, "password": "new password!"}).status_code == 200
    assert login(s, "oli@example.com", "new password!").status_code == 200
    fresh = bearer(login(s, "oli@example.com", "new password!").json()["access_token"])

    mariadb.stop()
    try:
        calls = [("/users/verify", {"json": {"token": token}}),
                 ("/users/password/reset", {"json": {"token": reset, "password": "a password!"}}),
                 ("/users/email/confirm", {"json": {"token": token}}),
                 ("/users/email", {"json": {"email": "oli2@example.com"}, "headers": fresh})]
        for path, kw in calls:
            r = s.post(path, **kw)
            assert r.status_code == 503 and r.json()["error"] == "storage unavailable", path
        r = s.request("DELETE", "/users/me", headers=fresh, json={"password": "new password!"})
        assert r.status_code == 503 and r.json()["error"] == "storage unavailable"
    finally:
        mariadb.start()
