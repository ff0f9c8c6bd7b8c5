"""Each auth event of the default routes (etc/sesame/routes), emitted as a person's flow makes it:
registered, verified, logged_in, login_failed, logged_out(_all), password_changed,
password_reset, email_changed, deleted, disabled, rate_limited, refresh_reused,
verification_sent and reset_requested. Each is seen as its audit line (events.audit_log) and its
stored row (events.store, read back with sesamectl events), with its fields, and neither holds
a password or a token of the flow. A real SMTP server on loopback (the mailbox fixture)
receives the mails whose links the flows follow. SQLite; the whole account's story on MariaDB
too."""
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import receivers
from conftest import SESAMED, TOP, wait_for

SESAMECTL = str(Path(SESAMED).parent / "sesamectl")
SECRET = "events-flows-secret-0123456789abcdef!!"
ROUTES = {p.name: p.read_text() for p in (TOP / "etc/sesame/routes").glob("*.lua")}
PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple!"
# Every rule wide open but those a test tightens.
RULES = ("register", "login", "login_failures", "verify", "forgot", "reset", "email")


class Flow:
    """A sesamed with the default routes, mail to the mailbox, events in audit.log and in
    storage; keeps the secrets its flows used, which no event may hold."""

    def __init__(self, sesamed, mailbox, storage, **tight):
        rules = {rule: "100000/second" for rule in RULES}
        rules.update(tight)
        more = (storage +
                f'jwt = {{ secret = "{SECRET}", refresh_grace = 0, revocation_refresh = 0.2 }}\n'
                'password = { scheme = "pbkdf2_sha256", accept = { "pbkdf2_sha256" }, '
                'pbkdf2_sha256 = { rounds = 29000 } }\n'
                "limits = { " + ", ".join(f'{k} = "{v}"' for k, v in rules.items()) + " }\n"
                'accounts = { link_base = "https://app.example.com/account" }\n'
                f'mail = {{ url = "{mailbox.url}", from = "sesame@example.com", timeout = 5 }}\n'
                'events = { audit_log = "audit.log", store = true }\n')
        self.s = sesamed(routes=ROUTES, more=more, start=False)
        shutil.copytree(TOP / "etc/sesame/mail", self.s.dir / "mail")
        self.s.start()
        self.mailbox = mailbox
        self.audit = self.s.dir / "audit.log"
        self.secrets = [SECRET, PASSWORD, NEW_PASSWORD]

    # ---- a person's steps ----

    def keep(self, *secrets):
        self.secrets.extend(secrets)
        return secrets[0] if len(secrets) == 1 else secrets

    def register(self, email, username="person1"):
        r = self.s.post("/users/register",
                        json={"email": email, "username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.keep(r.json()["access_token"], r.json()["refresh_token"])
        return self.id_of(r.json()["access_token"])

    def id_of(self, access):
        return self.s.get("/users/me", headers=bearer(access)).json()["user"]["id"]

    def link(self, to, count=1):
        """The token of the count-th mail to `to`."""
        mail = self.mailbox.wait(to=to, count=count)[count - 1]
        return self.keep(receivers.token_in(mail))

    def verify(self, email):
        r = self.s.post("/users/verify", json={"token": self.link(email)})
        assert r.status_code == 200, r.text

    def login(self, email, password=PASSWORD, status=200):
        r = self.s.post("/users/login", json={"email": email, "password": password})
        assert r.status_code == status, r.text
        if status == 200:
            self.keep(r.json()["access_token"], r.json()["refresh_token"])
        return r.json()

    # ---- what the events say ----

    def lines(self):
        text = self.audit.read_text() if self.audit.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stored(self):
        out = ctl(self.s, "events", "--json", "--limit", "1000").stdout
        return [json.loads(line) for line in out.splitlines()]

    def seen(self, name, count=1, request=True, **fields):
        """The count-th audit line of event name, once it is there and stored: it has fields
        (user compared as text: a route's req.identity is a string) and, when a request
        emitted it, the request's address and id; neither the line nor the row holds a secret
        of the flow."""
        assert wait_for(lambda: len(self.named(self.lines(), name)) >= count), self.lines()
        e = self.named(self.lines(), name)[count - 1]
        for key, value in fields.items():
            got = str(e.get(key)) if key == "user" and value is not None else e.get(key)
            assert got == (str(value) if key == "user" and value is not None else value), e
        assert abs(e["at"] - time.time()) < 60
        if request:
            assert e["remote_addr"] == "127.0.0.1" and len(e["request_id"]) >= 8, e
        assert wait_for(lambda: len(self.named(self.stored(), name)) >= count), self.stored()
        # The row's time is storage's clock, its user an id: the rest is the line's.
        row = self.named(self.stored(), name)[count - 1]
        assert {k: v for k, v in row.items() if k not in ("at", "user")} == \
            {k: v for k, v in e.items() if k not in ("at", "user")}
        assert str(row.get("user")) == str(e.get("user"))
        self.no_secret()
        return e

    @staticmethod
    def named(events, name):
        return [e for e in events if e["event"] == name]

    def no_secret(self):
        text = (self.audit.read_text() +
                ctl(self.s, "events", "--json", "--limit", "1000").stdout)
        for secret in self.secrets:
            assert secret not in text, "a secret of the flow is in an event"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def ctl(s, *args, **kw):
    return subprocess.run([SESAMECTL, "-c", str(s.config), *args], capture_output=True,
                          text=True, timeout=60, check=True, **kw)


def sqlite(tmp_path):
    return f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "s.db"}" }} }}\n'


@pytest.fixture
def flow(sesamed, mailbox, tmp_path):
    return Flow(sesamed, mailbox, sqlite(tmp_path))


def fresh_session(flow, email):
    """A verified account and a log-in's (fresh) access token: its id and the header."""
    user = flow.register(email)
    flow.verify(email)
    return user, bearer(flow.login(email)["access_token"])


# ---- registration and the address ----

def test_registered(flow):
    user = flow.register("ann@example.com")
    e = flow.seen("registered", user=user)
    assert isinstance(e["user"], int)


def test_verification_sent(flow):
    user = flow.register("ben@example.com")
    flow.link("ben@example.com")
    flow.seen("verification_sent", user=user)


def test_verified(flow):
    user = flow.register("cat@example.com")
    flow.verify("cat@example.com")
    flow.seen("verified", user=user)


# ---- log-in and out ----

def test_logged_in(flow):
    user = flow.register("dan@example.com")
    flow.login("dan@example.com")
    flow.seen("logged_in", user=user)


def test_login_failed_for_an_unknown_address(flow):
    flow.login("nobody@example.com", "guessed horse", status=401)
    e = flow.seen("login_failed", email="nobody@example.com")
    assert "user" not in e
    assert "guessed horse" not in flow.audit.read_text()


def test_login_failed_for_a_wrong_password(flow):
    user = flow.register("eve@example.com")
    flow.login("eve@example.com", "wrong horse", status=401)
    flow.seen("login_failed", user=user, email="eve@example.com")
    assert "wrong horse" not in flow.audit.read_text()


def test_logged_out(flow):
    user = flow.register("fay@example.com")
    tokens = flow.login("fay@example.com")
    assert flow.s.post("/users/logout", headers=bearer(tokens["access_token"])).status_code == 200
    flow.seen("logged_out", user=user)


def test_logged_out_all(flow):
    user = flow.register("gil@example.com")
    flow.login("gil@example.com")
    tokens = flow.login("gil@example.com")
    r = flow.s.post("/users/logout/all", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200
    flow.seen("logged_out_all", user=user, sessions=r.json()["sessions"])
    assert r.json()["sessions"] == 3  # the registration's and the two log-ins'


def test_refresh_reused(flow):
    user = flow.register("hal@example.com")
    stolen = flow.login("hal@example.com")["refresh_token"]
    r = flow.s.post("/token/refresh", headers=bearer(stolen))
    assert r.status_code == 200
    flow.keep(r.json()["access_token"], r.json()["refresh_token"])
    assert flow.s.post("/token/refresh", headers=bearer(stolen)).status_code == 401
    e = flow.seen("refresh_reused", user=user)
    assert len(e["family"]) == 36


# ---- passwords ----

def test_password_changed(flow):
    user, fresh = fresh_session(flow, "ivy@example.com")
    r = flow.s.post("/users/password", headers=fresh,
                    json={"password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    flow.seen("password_changed", user=user)


def test_reset_requested_and_password_reset(flow):
    user = flow.register("jo@example.com")
    flow.verify("jo@example.com")
    assert flow.s.post("/users/password/forgot",
                       json={"email": "jo@example.com"}).status_code == 200
    # Mailed in the background (sesame.defer), so that the answer tells nothing: the event is
    # the task's, which serves no request.
    e = flow.seen("reset_requested", request=False, user=user)
    assert "remote_addr" not in e
    token = flow.link("jo@example.com", count=2)
    r = flow.s.post("/users/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    flow.seen("password_reset", user=user)
    # An unknown address asks for a reset too: it answers alike, and is no event. A known
    # address asks after it, as a marker; a graceful stop lets every background task finish,
    # so no late event of the unknown one can come after the count.
    assert flow.s.post("/users/password/forgot",
                       json={"email": "ghost@example.com"}).status_code == 200
    assert flow.s.post("/users/password/forgot",
                       json={"email": "jo@example.com"}).status_code == 200
    flow.seen("reset_requested", count=2, request=False, user=user)
    assert flow.s.stop() == 0
    events = flow.named(flow.lines(), "reset_requested")
    assert [str(e.get("user")) for e in events] == [str(user)] * 2, events
    assert "ghost@example.com" not in flow.audit.read_text()


def test_a_reset_that_confirms_the_address_is_verified(flow):
    # The reset link reached the address: an unconfirmed one is confirmed by it.
    user = flow.register("kay@example.com")
    flow.s.post("/users/password/forgot", json={"email": "kay@example.com"})
    token = flow.link("kay@example.com", count=2)
    r = flow.s.post("/users/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    flow.seen("password_reset", user=user)
    flow.seen("verified", user=user)


def test_a_wrong_current_password_is_login_failed(flow):
    user, fresh = fresh_session(flow, "lou@example.com")
    r = flow.s.post("/users/password", headers=fresh,
                    json={"password": "wrong horse", "new_password": NEW_PASSWORD})
    assert r.status_code == 401
    flow.seen("login_failed", user=user, reason="wrong password")
    assert "wrong horse" not in flow.audit.read_text()


def test_a_wrong_password_for_the_deletion_is_login_failed(flow):
    user, fresh = fresh_session(flow, "max@example.com")
    r = flow.s.request("DELETE", "/users/me", headers=fresh, json={"password": "wrong horse"})
    assert r.status_code == 401
    flow.seen("login_failed", user=user, reason="wrong password")


# ---- the address changed, the account deleted or disabled ----

def test_email_changed(flow):
    user, fresh = fresh_session(flow, "ned@example.com")
    r = flow.s.post("/users/email", headers=fresh, json={"email": "ned2@example.com"})
    assert r.status_code == 200, r.text
    r = flow.s.post("/users/email/confirm", json={"token": flow.link("ned2@example.com")})
    assert r.status_code == 200, r.text
    flow.seen("email_changed", user=user)


def test_a_confirmed_new_address_is_verified(flow):
    user, fresh = fresh_session(flow, "oz@example.com")
    flow.s.post("/users/email", headers=fresh, json={"email": "oz2@example.com"})
    flow.s.post("/users/email/confirm", json={"token": flow.link("oz2@example.com")})
    flow.seen("email_changed", user=user)
    flow.seen("verified", count=2, user=user)  # the registration's link, then this one


def test_deleted_by_the_route(flow):
    user, fresh = fresh_session(flow, "pat@example.com")
    r = flow.s.request("DELETE", "/users/me", headers=fresh, json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    e = flow.seen("deleted", user=user)
    assert "by" not in e


def test_deleted_by_sesamectl(flow):
    user = flow.register("quin@example.com")
    ctl(flow.s, "user", "delete", "quin@example.com", "--yes")
    flow.seen("deleted", request=False, user=user, email="quin@example.com", by="sesamectl")


def test_disabled(flow):
    user = flow.register("rae@example.com")
    ctl(flow.s, "user", "disable", "rae@example.com")
    flow.seen("disabled", request=False, user=user, email="rae@example.com", by="sesamectl")


# ---- rate limits ----

def test_rate_limited_by_a_rule(sesamed, mailbox, tmp_path):
    flow = Flow(sesamed, mailbox, sqlite(tmp_path), login="2/minute")
    for status in (401, 401, 429):
        flow.login("sam@example.com", "wrong horse", status=status)
    flow.seen("rate_limited", rule="login", address="127.0.0.1")


def test_rate_limited_by_the_account_lock_out(sesamed, mailbox, tmp_path):
    flow = Flow(sesamed, mailbox, sqlite(tmp_path), login_failures="2/minute")
    user = flow.register("tia@example.com")
    for status in (401, 401, 429):
        flow.login("tia@example.com", "wrong horse", status=status)
    e = flow.seen("rate_limited", rule="login_failures", account="tia@example.com")
    assert "address" not in e
    flow.seen("login_failed", count=2, user=user)


# ---- storage: MariaDB ----

def test_an_accounts_story_on_mariadb(sesamed, mailbox, mariadb):
    flow = Flow(sesamed, mailbox, mariadb.storage(mariadb.database))
    user, fresh = fresh_session(flow, "uma@example.com")
    assert flow.s.post("/users/password", headers=fresh,
                       json={"password": PASSWORD, "new_password": NEW_PASSWORD}).status_code == 200
    flow.login("uma@example.com", "wrong horse", status=401)
    r = flow.s.request("DELETE", "/users/me", headers=fresh, json={"password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    for name in ("registered", "verification_sent", "verified", "logged_in", "password_changed",
                 "login_failed", "deleted"):
        flow.seen(name, user=user)
    # Rows are written on job threads of either worker: one of each, in any order.
    assert sorted(e["event"] for e in flow.stored()) == sorted(
        ("registered", "verification_sent", "verified", "logged_in", "password_changed",
         "login_failed", "deleted"))
