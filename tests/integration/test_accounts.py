"""The account flows of the default routes (etc/sesame/routes/accounts.lua and users.lua), each
followed as a person would: a real SMTP server on loopback (the mailbox fixture) receives the
mails, the test reads the link's token out of the mail and POSTs it as the front end's page
would. SQLite, and MariaDB for the flows that matter most across nodes."""
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

import receivers
from conftest import PLUGINS, SESAMED, TOP, wait_for
from test_limits import storage  # noqa: F401  (a fixture: each storage backend's table)

SECRET = "accounts-tests-secret-0123456789abcdef"
ROUTES = {p.name: p.read_text() for p in (TOP / "etc/sesame/routes").glob("*.lua")}
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
JWT = f'jwt = {{ secret = "{SECRET}", revocation_refresh = 0.2 }}\n'
FAST = ('password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
        'pbkdf2_sha256 = { rounds = 29000 } }\n')
OPEN = "100000/second"
LINK_BASE = "https://app.example.com/account"
CTL = str(Path(SESAMED).parent / "sesamectl")


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


def start(sesamed, mailbox, storage=SQLITE, config="", rules=None, tail="", **settings):
    """A sesamed with the default routes, mail to the mailbox, the shipped mail templates;
    tail is more configuration, last (a table set again there wins)."""
    more = (storage + JWT + FAST + limits(**(rules or {})) + accounts(**settings) +
            f'mail = {{ url = "{mailbox.url}", from = "sesame@example.com", timeout = 5 }}\n' +
            tail)
    s = sesamed(config, routes=ROUTES, more=more, start=False)
    shutil.copytree(TOP / "etc/sesame/mail", s.dir / "mail")
    return s.start()


@pytest.fixture
def app(sesamed, mailbox):
    s = start(sesamed, mailbox)
    s.mailbox = mailbox
    return s


@pytest.fixture
def app_on(sesamed, mailbox, storage):  # noqa: F811
    """app, on each storage backend."""
    s = start(sesamed, mailbox, storage=storage)
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

def test_register_mail_verify_and_log_in(app_on):
    app = app_on
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

def test_forgot_reset_and_old_sessions_refused(app_on):
    app = app_on
    registered = register(app, "dora@example.com", "dorathy").json()
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

    # Every session ends: the log-in's and the registration's own.
    for session in (tokens, registered):
        assert wait_for(lambda: me(app, session["access_token"]).status_code == 401,
                        timeout=1.5)
        r = app.post("/token/refresh", headers=bearer(session["refresh_token"]))
        assert r.status_code == 401
    assert login(app, "dora@example.com").status_code == 401
    r = login(app, "dora@example.com", "new password!")
    assert r.status_code == 200
    assert me(app, r.json()["access_token"]).json()["user"]["email_verified"] is True
    r = app.post("/users/password/reset", json={"token": token, "password": "another one!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert token not in app.log() and "new password!" not in app.log()


def test_a_password_the_policy_refuses_leaves_the_link_working(app):
    register(app, "eve@example.com", "evelyn99")
    app.post("/users/password/forgot", json={"email": "eve@example.com"})
    token, _ = token_of(app.mailbox, "eve@example.com", count=2)
    # Refused only with the user's own data: the username as the password.
    r = app.post("/users/password/reset", json={"token": token, "password": "evelyn99"})
    assert r.status_code == 400 and r.json() == {
        "result": "fail", "error": "The password cannot be your username or email address."}
    r = app.post("/users/password/reset", json={"token": token, "password": "not the name"})
    assert r.status_code == 200
    assert login(app, "eve@example.com", "not the name").status_code == 200


def test_two_resets_with_one_link_at_once_one_wins(app):
    register(app, "eli@example.com")
    app.post("/users/password/forgot", json={"email": "eli@example.com"})
    token, _ = token_of(app.mailbox, "eli@example.com", count=2)
    results, start_line = {}, threading.Barrier(6)

    def reset(n):
        start_line.wait()
        r = app.post("/users/password/reset", json={"token": token, "password": f"password {n}!"})
        results[n] = r.status_code

    threads = [threading.Thread(target=reset, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200] + [400] * 5, results
    winner = next(n for n, status in results.items() if status == 200)
    assert login(app, "eli@example.com", f"password {winner}!").status_code == 200
    for n in results:
        if n != winner:
            assert login(app, "eli@example.com", f"password {n}!").status_code == 401


# ---- pending links die with the password and the address ----

def test_a_reset_ends_a_pending_address_change(app):
    register(app, "ola@example.com")
    fresh = bearer(login(app, "ola@example.com").json()["access_token"])
    # A stolen session asks to move the account to the thief's address ...
    assert app.post("/users/email", headers=fresh, json={"email": "thief@example.com"}).status_code == 200
    change, _ = token_of(app.mailbox, "thief@example.com")
    # ... and the owner resets the password.
    app.post("/users/password/forgot", json={"email": "ola@example.com"})
    reset, _ = token_of(app.mailbox, "ola@example.com", count=2)
    assert app.post("/users/password/reset",
                    json={"token": reset, "password": "new password!"}).status_code == 200
    r = app.post("/users/email/confirm", json={"token": change})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(app, "ola@example.com", "new password!").status_code == 200


def reset_link_and_session(app, email):
    """A new account's reset link, and a fresh session of it."""
    register(app, email)
    app.post("/users/password/forgot", json={"email": email})
    reset, _ = token_of(app.mailbox, email, count=2)
    return reset, bearer(login(app, email).json()["access_token"])


def test_a_password_change_ends_the_reset_links(app):
    reset, fresh = reset_link_and_session(app, "pam@example.com")
    r = app.post("/users/password", headers=fresh,
                 json={"password": "correct horse", "new_password": "battery staple"})
    assert r.status_code == 200
    r = app.post("/users/password/reset", json={"token": reset, "password": "new password!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(app, "pam@example.com", "battery staple").status_code == 200


def test_an_address_change_ends_the_links_of_the_old_address(app):
    reset, fresh = reset_link_and_session(app, "quin@example.com")
    assert app.post("/users/email", headers=fresh, json={"email": "quin2@example.com"}).status_code == 200
    change, _ = token_of(app.mailbox, "quin2@example.com")
    assert app.post("/users/email/confirm", json={"token": change}).status_code == 200
    r = app.post("/users/password/reset", json={"token": reset, "password": "new password!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(app, "quin2@example.com").status_code == 200


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


def test_verify_and_address_links_expire(sesamed, mailbox):
    s = start(sesamed, mailbox, verify_ttl=1, email_ttl=1)
    access = register(s, "ina@example.com").json()["access_token"]
    verify, mail = token_of(mailbox, "ina@example.com")
    assert "1 second" in receivers.text_of(mail)
    fresh = bearer(login(s, "ina@example.com").json()["access_token"])
    assert s.post("/users/email", headers=fresh, json={"email": "ina2@example.com"}).status_code == 200
    change, _ = token_of(mailbox, "ina2@example.com")
    time.sleep(2.5)
    for path, token in (("/users/verify", verify), ("/users/email/confirm", change)):
        r = s.post(path, json={"token": token})
        assert r.status_code == 400 and r.json()["error"] == "invalid or expired token", path
    user = me(s, access).json()["user"]
    assert user["email"] == "ina@example.com" and user["email_verified"] is False


def test_forgot_is_limited_per_client_across_addresses(sesamed, mailbox):
    s = start(sesamed, mailbox, rules=dict(forgot="3/hour"))
    for i in range(3):
        r = s.post("/users/password/forgot", json={"email": f"many{i}@example.com"})
        assert r.status_code == 200
    r = s.post("/users/password/forgot", json={"email": "many9@example.com"})
    assert r.status_code == 429 and r.json()["error"] == "too many requests"
    assert int(r.headers["Retry-After"]) > 0


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

def test_change_the_address(app_on):
    app = app_on
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

def test_delete_the_account(app_on):
    app = app_on
    registered = register(app, "jo@example.com").json()
    tokens = login(app, "jo@example.com").json()
    fresh = bearer(tokens["access_token"])
    # Neither the registration's token nor a refreshed one is fresh: 401, and nothing goes.
    refreshed = app.post("/token/refresh", headers=bearer(tokens["refresh_token"])).json()
    tokens = login(app, "jo@example.com").json()
    fresh = bearer(tokens["access_token"])
    for stale in (registered["access_token"], refreshed["access_token"]):
        r = app.request("DELETE", "/users/me", headers=bearer(stale),
                        json={"password": "correct horse"})
        assert r.status_code == 401 and r.json()["error"] == "fresh token required"
    assert me(app, tokens["access_token"]).status_code == 200
    assert login(app, "jo@example.com").status_code == 200
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
    assert me(app, fresh["Authorization"][7:]).json()["user"]["email"] == "kim@example.com"
    # A forgotten password is answered as ever; the mail that could not go is logged, by
    # the user's id only.
    r = app.post("/users/password/forgot", json={"email": "kim@example.com"})
    assert r.status_code == 200 and r.content == b'{"result":"success"}'
    app.wait_log(": mail not sent: mail server unavailable")
    lines = [x for x in app.log().splitlines() if "mail not sent" in x]
    assert any(re.search(r"warn: .*: user \d+: mail not sent: mail server unavailable$", x)
               for x in lines), lines
    assert not any("kim@example.com" in x for x in lines), lines
    assert "token=" not in app.log()
    app.mailbox.start()
    r = register(app, "lee@example.com")
    assert r.status_code == 200
    token, _ = token_of(app.mailbox, "lee@example.com")
    assert app.post("/users/verify", json={"token": token}).status_code == 200


@pytest.fixture
def hanging(mailbox):
    server = receivers.HangingMailServer(mailbox)
    yield server
    server.close()


def registered_again(s, email):
    """Registers email anew (password "second horse") until the address is free."""
    return wait_for(lambda: register(s, email, "second2", "second horse").status_code == 200,
                    timeout=10)


def test_a_registration_whose_client_leaves_while_the_mail_hangs_is_undone(sesamed, hanging):
    s = start(sesamed, hanging)
    body = b'{"email":"zed@example.com","username":"zedd1","password":"correct horse"}'
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /users/register HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n" +
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert hanging.accepted.wait(10)  # the account is made, its mail under way
    hanging.relay()
    s.wait_log("registration undone: its mail was not sent")
    assert registered_again(s, "zed@example.com")
    assert login(s, "zed@example.com").status_code == 401
    r = login(s, "zed@example.com", "second horse")
    assert r.status_code == 200
    assert me(s, r.json()["access_token"]).json()["user"]["username"] == "second2"
    assert "correct horse" not in s.log()


def test_an_undo_that_fails_is_an_error_naming_the_user_and_the_remedy(sesamed, hanging):
    s = start(sesamed, hanging)
    # Storage refuses the deletion: an operator's trigger, made with the sqlite3 tool.
    db = sqlite3.connect(s.dir / "sesame.db")
    db.execute("CREATE TRIGGER keep BEFORE DELETE ON users "
               "BEGIN SELECT RAISE(ABORT, 'kept'); END")
    db.commit()
    body = b'{"email":"una@example.com","username":"una01","password":"correct horse"}'
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /users/register HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n" +
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert hanging.accepted.wait(10)
    s.wait_log("an unfinished registration was not undone")
    line = next(x for x in s.log().splitlines() if "was not undone" in x)
    uid = db.execute("SELECT id FROM users WHERE email = 'una@example.com'").fetchone()[0]
    assert re.search(rf"error: .*: user {uid}: an unfinished registration was not undone "
                     r"\(.*\); delete it with `sesamectl user delete ADDRESS`", line), line
    assert "una@example.com" not in line and "correct horse" not in s.log()
    # The address stays taken until the operator follows the remedy.
    assert register(s, "una@example.com").status_code == 409
    db.execute("DROP TRIGGER keep")
    db.commit()
    db.close()
    ctl = subprocess.run([CTL, "-c", str(s.config), "user", "delete", "una@example.com",
                          "--yes"], capture_output=True, text=True, timeout=60)
    assert ctl.returncode == 0, ctl.stderr
    hanging.relay()
    assert register(s, "una@example.com", "una02", "second horse").status_code == 200


def test_a_registration_whose_mail_server_hangs_answers_503_and_is_undone(sesamed, hanging):
    s = start(sesamed, hanging, config="handler_timeout = 6,",
              tail=f'mail = {{ url = "{hanging.url}", from = "sesame@example.com", timeout = 1 }}\n')
    r = register(s, "yan@example.com")
    # The mail fails within mail.timeout, before the handler's deadline: the route's answer.
    assert r.status_code == 503 and r.json() == {"result": "fail",
                                                 "error": "mail server unavailable"}
    hanging.relay()
    assert registered_again(s, "yan@example.com")
    assert login(s, "yan@example.com").status_code == 401
    assert login(s, "yan@example.com", "second horse").status_code == 200


# ---- conceal_existing ----

def same_answer(a, b):
    skip = {"x-request-id", "date"}
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert ({k.lower(): v for k, v in a.headers.items() if k.lower() not in skip} ==
            {k.lower(): v for k, v in b.headers.items() if k.lower() not in skip})


def test_conceal_existing_answers_a_taken_address_as_a_new_one(sesamed, mailbox, storage):
    s = start(sesamed, mailbox, storage=storage, conceal_existing="true")
    assert register(s, "max@example.com", "maxine").status_code == 200
    token, _ = token_of(mailbox, "max@example.com")
    assert s.post("/users/verify", json={"token": token}).status_code == 200
    assert login(s, "max@example.com").status_code == 200

    new = register(s, "newbie@example.com", "newbie", "newbie's password")
    taken = register(s, "MAX@example.com", "intruder", "intruder's password")
    same_answer(new, taken)
    assert taken.content == b'{"result":"success","verification":"sent"}'
    mail = mailbox.wait(to="max@example.com", count=2)[1]
    assert mail["message"]["Subject"] == "You already have an account"
    assert "maxine" in receivers.text_of(mail) and "token=" not in receivers.text_of(mail)
    # Neither registration made or changed an account: a log-in with the password given
    # tells nothing (401 for both), and the owner's password still works.
    assert login(s, "newbie@example.com", "newbie's password").status_code == 401
    assert login(s, "max@example.com", "intruder's password").status_code == 401
    assert login(s, "max@example.com").status_code == 200
    # The link makes the new account, confirmed.
    link, mail = token_of(mailbox, "newbie@example.com")
    assert mail["message"]["Subject"] == "Confirm your e-mail address"
    assert "newbie" in receivers.text_of(mail)
    assert s.post("/users/verify", json={"token": link}).status_code == 200
    r = login(s, "newbie@example.com", "newbie's password")
    assert r.status_code == 200
    user = me(s, r.json()["access_token"]).json()["user"]
    assert user["email_verified"] is True and user["username"] == "newbie"
    assert s.post("/users/verify", json={"token": link}).status_code == 400
    assert link not in s.log() and "newbie's password" not in s.log()


def test_conceal_existing_a_link_for_an_address_registered_meanwhile(sesamed, mailbox):
    s = start(sesamed, mailbox, conceal_existing="true")
    register(s, "rae@example.com", "first1", "first password")
    register(s, "rae@example.com", "second2", "second password")
    first, _ = token_of(mailbox, "rae@example.com")
    second, _ = token_of(mailbox, "rae@example.com", count=2)
    assert s.post("/users/verify", json={"token": second}).status_code == 200
    r = s.post("/users/verify", json={"token": first})
    assert r.status_code == 400 and r.json()["error"] == "invalid or expired token"
    assert login(s, "rae@example.com", "second password").status_code == 200
    assert login(s, "rae@example.com", "first password").status_code == 401


def test_conceal_existing_the_mail_server_down_is_logged_not_answered(sesamed, mailbox):
    s = start(sesamed, mailbox, conceal_existing="true")
    register(s, "sue@example.com")
    token, _ = token_of(mailbox, "sue@example.com")
    assert s.post("/users/verify", json={"token": token}).status_code == 200
    mailbox.stop()
    new = register(s, "tom@example.com")
    taken = register(s, "sue@example.com")
    same_answer(new, taken)
    s.wait_log("registration mail not sent: mail server unavailable", count=2)
    assert login(s, "tom@example.com").status_code == 401


def test_conceal_existing_registration_takes_as_long_for_a_taken_address(sesamed, mailbox):
    s = start(sesamed, mailbox, conceal_existing="true", rules=dict(verify="2/hour"))
    register(s, "uma@example.com")
    s.post("/users/verify", json={"token": token_of(mailbox, "uma@example.com")[0]})

    def timed(email):
        t = time.monotonic()
        r = register(s, email)
        return r, time.monotonic() - t

    taken, new = [], []
    for i in range(15):
        taken.append(timed("uma@example.com"))
        new.append(timed(f"new{i}@example.com"))
    for (a, _), (b, _) in zip(taken, new):
        same_answer(a, b)
    taken_median = statistics.median(t for _, t in taken)
    new_median = statistics.median(t for _, t in new)
    assert taken_median < new_median * 1.5 + 0.020, (taken_median, new_median)
    assert new_median < taken_median * 1.5 + 0.020, (taken_median, new_median)
    # The owner's notices are limited per account (limits.verify: the link, then one notice),
    # silently.
    time.sleep(0.5)
    assert len(mailbox.sent_to("uma@example.com")) == 2


def test_conceal_existing_the_longest_account_fits_in_the_link(sesamed, mailbox):
    argon2 = 'password = { scheme = "argon2id", accept = { "argon2id" } }\n'
    s = start(sesamed, mailbox, conceal_existing="true",
              tail=argon2 + 'username = { allowed = "unicode" }\n')
    email = "l" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 57 + ".com"
    username = "\U0001d400" * 64  # 64 letters of 4 bytes each
    assert len(email) == 254
    password = "a long password that is not the username"
    assert register(s, email, username, password).status_code == 200
    token, _ = token_of(mailbox, email)
    assert s.post("/users/verify", json={"token": token}).status_code == 200
    r = login(s, email, password)
    assert r.status_code == 200
    assert me(s, r.json()["access_token"]).json()["user"]["username"] == username


def test_conceal_existing_a_taken_new_address_answers_as_a_free_one(sesamed, mailbox):
    s = start(sesamed, mailbox, conceal_existing="true")
    for email, name in (("vic@example.com", "victor"), ("wyn@example.com", "wynona")):
        register(s, email, name)
        s.post("/users/verify", json={"token": token_of(mailbox, email)[0]})
    fresh = bearer(login(s, "vic@example.com").json()["access_token"])
    taken = s.post("/users/email", headers=fresh, json={"email": "WYN@example.com"})
    free = s.post("/users/email", headers=fresh, json={"email": "vic2@example.com"})
    same_answer(taken, free)
    notice = mailbox.wait(to="wyn@example.com", count=2)[1]
    assert notice["message"]["Subject"] == "Your address was given for another account"
    text = receivers.text_of(notice)
    assert "wynona" in text and "token=" not in text and f"{LINK_BASE}/forgot" in text
    change, _ = token_of(mailbox, "vic2@example.com")
    assert s.post("/users/email/confirm", json={"token": change}).status_code == 200
    assert login(s, "wyn@example.com").status_code == 200
    assert login(s, "vic2@example.com").status_code == 200


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


def test_deleting_the_account_is_limited_per_client_address(sesamed, mailbox):
    """DELETE /users/me asks for the password: guesses count against limits.login, per
    client address, as log-ins do."""
    s = start(sesamed, mailbox, rules=dict(login="3/hour"))
    register(s, "xia@example.com")
    access = login(s, "xia@example.com").json()["access_token"]
    for _ in range(2):
        r = s.request("DELETE", "/users/me", headers=bearer(access), json={"password": "wrong horse"})
        assert r.status_code == 401
    r = s.request("DELETE", "/users/me", headers=bearer(access), json={"password": "correct horse"})
    assert r.status_code == 429 and r.json()["error"] == "too many requests"
    assert int(r.headers["Retry-After"]) > 0
    assert me(s, access).status_code == 200


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


MAIL = 'mail = { url = "smtp://127.0.0.1:25", from = "sesame@example.com" }\n'
ROOT = 'server = { user = "root" }\n'  # the suite runs as root


def test_a_mail_timeout_past_half_the_handler_timeout_is_refused(tmp_path):
    """A silent mail server must fail the mail (the route answers 503 "mail server
    unavailable") before the handler's deadline abandons it, with the handler's own work
    before the mail (a registration's hash and account) left the other half."""
    slow = 'mail = { url = "smtp://127.0.0.1:25", from = "sesame@example.com", timeout = 16 }\n'
    r = check_config(tmp_path, slow)
    assert r.returncode == 1, r.stderr
    assert ("check.lua:4: mail.timeout: must be at most half of server.handler_timeout (30 s): "
            "a route mails after its own work (a registration hashes the password and makes "
            "the account first), and a silent mail server must fail the mail while the "
            "handler still has time to answer its error") in r.stderr, r.stderr
    # The default mail.timeout (10 s) needs 20 s.
    r = check_config(tmp_path, MAIL + 'server = { handler_timeout = 19, user = "root" }\n')
    assert r.returncode == 1 and "mail.timeout: must be at most half" in r.stderr, r.stderr
    shutil.copytree(TOP / "etc/sesame/mail", tmp_path / "mail")
    r = check_config(tmp_path, MAIL + 'server = { handler_timeout = 20, user = "root" }\n')
    assert r.returncode == 0, r.stderr
    r = check_config(tmp_path, slow + 'server = { handler_timeout = 32, user = "root" }\n')
    assert r.returncode == 0, r.stderr


def test_the_mail_templates_are_checked_with_the_configuration(tmp_path):
    r = check_config(tmp_path, MAIL + accounts(mail_dir='"letters"'))
    assert r.returncode == 1 and "check.lua:5: accounts.mail_dir: " in r.stderr, r.stderr
    assert "letters: No such file or directory" in r.stderr
    shutil.copytree(TOP / "etc/sesame/mail", tmp_path / "letters")
    r = check_config(tmp_path, MAIL + accounts(mail_dir='"letters"') + ROOT)
    assert r.returncode == 0, r.stderr
    (tmp_path / "letters/email_taken.txt").unlink()
    (tmp_path / "letters/reset.txt").write_text("Reset your password\n\nno subject line\n")
    r = check_config(tmp_path, MAIL + accounts(mail_dir='"letters"'))
    assert r.returncode == 1
    assert "email_taken.txt: No such file or directory" in r.stderr, r.stderr
    assert "reset.txt: expected a Subject: line, a blank line, then the text" in r.stderr
    # Without the mail table no flow mails: nothing to check.
    r = check_config(tmp_path, accounts(mail_dir='"letters"') + ROOT)
    assert r.returncode == 0, r.stderr


def test_the_mail_templates_are_read_only_below_the_configuration_folder(tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(TOP / "etc/sesame/mail", outside)
    (tmp_path / "conf").mkdir()
    conf = tmp_path / "conf"
    r = check_config(conf, MAIL + accounts(mail_dir=f'"{outside}"'))
    assert r.returncode == 1 and "is outside the configuration folder" in r.stderr, r.stderr
    (conf / "mail").mkdir()
    for template in outside.iterdir():
        (conf / "mail" / template.name).symlink_to(template)
    r = check_config(conf, MAIL + accounts())
    assert r.returncode == 1 and "verify.txt leads outside the configuration folder" in r.stderr


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
