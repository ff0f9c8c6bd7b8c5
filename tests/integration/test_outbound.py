"""Outbound transfers from route scripts: sesame.mail.send to a real SMTP server (aiosmtpd),
sesame.http.request to a real HTTP receiver, and sesame.defer, the background tasks that
serve no request. Every wait runs on the worker's loop: the worker answers other requests
meanwhile."""
import datetime
import ipaddress
import re
import shutil
import ssl
import subprocess
import threading
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import receivers
from conftest import SESAMED, TOP, free_port, route_file

ROUTES = {"outbound.lua": route_file("outbound.lua")}
FROM = "sesame@example.com"
SMTP_PASSWORD = "smtp-secret-Zq81pW"


@pytest.fixture
def sesamed(sesamed):
    """conftest's sesamed, with the shipped mail templates in its folder: with a mail table
    set, loading the configuration checks that accounts.mail_dir holds them (warns, with no
    accounts table)."""
    def make(config="", routes=None, workers=2, start=True, more=""):
        s = sesamed(config, routes, workers, False, more)
        shutil.copytree(TOP / "etc/sesame/mail", s.dir / "mail")
        return s.start() if start else s
    return make


def mail_config(url, extra=""):
    return f'mail = {{ url = "{url}", from = "{FROM}", timeout = 2, {extra} }}\n'


def http_config(receiver, extra=""):
    return f'http = {{ allow = {{ "127.0.0.1:{receiver.port}" }}, {extra} }}\n'


def send(s, **fields):
    return s.post("/mail", json=fields)


def no_secret_in(s):
    assert SMTP_PASSWORD not in s.log()


# ---- mail ----

def test_mail_arrives_with_its_headers_and_text(sesamed, mailbox):
    s = sesamed(routes=ROUTES, more=mail_config(mailbox.url))
    r = send(s, to="alice@example.org", subject="Welcome", text="Hello Alice,\nline two.",
             reply_to="help@example.com")
    assert r.status_code == 200, s.log()
    assert r.json() == {"sent": True, "enabled": True}
    mail = mailbox.last("alice@example.org")
    msg = mail["message"]
    assert mail["from"] == FROM
    assert msg["From"] == FROM and msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Welcome"
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Message-ID"].endswith("@example.com>") and msg["Date"]
    assert msg["MIME-Version"] == "1.0"
    assert receivers.text_of(mail).replace("\r\n", "\n").rstrip("\n") == \
        "Hello Alice,\nline two."


def test_html_alternative_and_non_ascii_subject(sesamed, mailbox):
    s = sesamed(routes=ROUTES, more=mail_config(mailbox.url))
    subject = "Bienvenue, Zoë — votre compte est prêt ✓ " * 3
    text = "Café = 3 €, a line long enough to be folded by quoted-printable " * 3
    r = send(s, to="zoe@example.org", subject=subject, text=text,
             html="<p>Caf\u00e9 <b>ready</b></p>")
    assert r.json()["sent"] is True, s.log()
    mail = mailbox.last("zoe@example.org")
    msg = mail["message"]
    assert msg["Subject"] == subject
    assert msg.get_content_type() == "multipart/alternative"
    assert receivers.text_of(mail).rstrip("\r\n") == text  # its trailing space too
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "Caf\u00e9 <b>ready</b>" in html
    assert all(len(line) <= 998 for line in mail["raw"].split(b"\r\n"))
    assert "=?UTF-8?B?" in mail["raw"].decode()


@pytest.mark.parametrize("field,value", [("subject", "Hi\r\nBcc: eve@example.net"),
                                         ("to", "alice@example.org, eve@example.net"),
                                         ("to", "Alice <alice@example.org>")])
def test_header_injection_raises_and_sends_nothing(sesamed, mailbox, field, value):
    s = sesamed(routes=ROUTES, more=mail_config(mailbox.url))
    fields = {"to": "bob@example.org", "subject": "Hello", "text": "body"}
    fields[field] = value
    r = send(s, **fields)
    assert r.status_code == 500
    assert "sesame.mail.send" in s.log()
    time.sleep(0.3)
    assert mailbox.messages == []


def test_mail_server_down_answers_at_once(sesamed, mailbox):
    s = sesamed(routes=ROUTES, more=mail_config(mailbox.url, "timeout = 5"))
    mailbox.stop()
    started = time.monotonic()
    r = send(s, to="carol@example.org", subject="Hi", text="body")
    assert time.monotonic() - started < 2
    assert r.json() == {"sent": False, "error": "mail server unavailable", "enabled": True}
    s.wait_log("mail not sent: connection refused")
    assert "body" not in s.log().split("mail not sent")[1].splitlines()[0]


def test_silent_mail_server_times_out_and_the_loop_keeps_turning(sesamed):
    srv = receivers.HangingMailServer()
    s = sesamed(routes=ROUTES, workers=1, more=mail_config(srv.url, "timeout = 2"))
    result = {}

    def waiting():
        started = time.monotonic()
        result["r"] = send(s, to="dave@example.org", subject="Hi", text="body")
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=waiting)
    t.start()
    time.sleep(0.3)
    while t.is_alive():
        assert s.get("/healthz", timeout=1).status_code == 200
        assert s.get("/ping", timeout=1).json() == {"pong": True}
        time.sleep(0.1)
    t.join()
    srv.close()
    assert result["r"].json()["error"] == "mail server unavailable"
    assert 1.5 < result["took"] < 4
    s.wait_log("mail not sent: timed out")


class _Auth:
    def __init__(self):
        self.logins = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"mailer" and auth_data.password == SMTP_PASSWORD.encode()
        self.logins.append((auth_data.login, ok))
        return AuthResult(success=ok)


@pytest.fixture
def auth_mailbox():
    """The mailbox, behind SMTP AUTH (over plain text: loopback only)."""
    box = receivers.Mailbox()
    auth = _Auth()
    box.controller = Controller(receivers._Handler(box), hostname="127.0.0.1", port=box.port,
                                authenticator=auth, auth_required=True,
                                auth_require_tls=False)
    box.controller.start()
    box.auth = auth
    yield box
    box.stop()


def test_smtp_auth_with_a_password_file(sesamed, auth_mailbox, tmp_path):
    secret = tmp_path / "smtp.pw"
    secret.write_text(SMTP_PASSWORD + "\n")
    s = sesamed(routes=ROUTES, more=mail_config(
        auth_mailbox.url, f'username = "mailer", password_file = "{secret}"'))
    r = send(s, to="erin@example.org", subject="Authenticated", text="body")
    assert r.json()["sent"] is True, s.log()
    assert auth_mailbox.last("erin@example.org")["message"]["Subject"] == "Authenticated"
    assert auth_mailbox.auth.logins == [(b"mailer", True)]
    no_secret_in(s)


def test_smtp_auth_refused_is_unavailable(sesamed, auth_mailbox, tmp_path):
    secret = tmp_path / "smtp.pw"
    secret.write_text("not-the-password")
    s = sesamed(routes=ROUTES, more=mail_config(
        auth_mailbox.url, f'username = "mailer", password_file = "{secret}"'))
    r = send(s, to="erin@example.org", subject="Hi", text="body")
    assert r.json()["error"] == "mail server unavailable"
    s.wait_log("mail not sent")
    assert auth_mailbox.messages == []
    assert "not-the-password" not in s.log()


# ---- mail over TLS ----

def self_signed(folder, name):
    """A self-signed certificate for 127.0.0.1 and localhost, as a local MTA has one (Debian's
    snakeoil): folder/name.pem and its key folder/name.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(key, hashes.SHA256()))
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / f"{name}.pem"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The mail server's self-signed certificate, and another nobody signed it with."""
    folder = tmp_path_factory.mktemp("certs")
    return {"server": self_signed(folder, "server"), "other": self_signed(folder, "other")}


class _SeesTLS(receivers._Handler):
    """Records, for each mail, whether it came over TLS."""

    async def handle_DATA(self, server, session, envelope):
        implicit = server.transport.get_extra_info("ssl_object") is not None
        self.box.tls.append(implicit or session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def tls_mailbox(certs):
    """Makes a mailbox with the self-signed certificate: STARTTLS offered and required before
    MAIL FROM (smtp://), or TLS from the first byte (implicit=True, smtps://); auth as
    auth_mailbox's, over TLS only."""
    made = []

    def make(implicit=False, auth=None):
        box = receivers.Mailbox()
        box.tls = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs["server"], certs["server"].with_suffix(".key"))
        tls = {"ssl_context": ctx} if implicit else {"tls_context": ctx,
                                                     "require_starttls": True}
        if auth is not None:
            tls.update(authenticator=auth, auth_required=True, auth_require_tls=True)
        box.controller = Controller(_SeesTLS(box), hostname="127.0.0.1", port=box.port, **tls)
        box.controller.start()
        box.url = f"smtps://127.0.0.1:{box.port}" if implicit else box.url
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop()


def send_over_tls(s, box, to):
    r = send(s, to=to, subject="Over TLS", text="body")
    assert r.status_code == 200, s.log()
    return r.json()


def test_starttls_try_on_loopback_takes_a_self_signed_certificate(sesamed, tls_mailbox):
    box = tls_mailbox()
    s = sesamed(routes=ROUTES, more=mail_config(box.url))
    assert send_over_tls(s, box, "tls@example.org")["sent"] is True, s.log()
    assert box.last("tls@example.org")["message"]["Subject"] == "Over TLS"
    assert box.tls == [True]


@pytest.mark.parametrize("implicit,tls", [(False, ', tls = "require"'), (False, ""),
                                          (True, "")])
def test_tls_with_the_ca_file_delivers(sesamed, tls_mailbox, certs, implicit, tls):
    box = tls_mailbox(implicit)
    s = sesamed(routes=ROUTES, more=mail_config(box.url, f'ca_file = "{certs["server"]}"{tls}'))
    assert send_over_tls(s, box, "ca@example.org")["sent"] is True, s.log()
    assert box.last("ca@example.org")["from"] == FROM
    assert box.tls == [True]


@pytest.mark.parametrize("implicit,settings", [
    (False, 'tls = "require"'),      # the system's CAs never signed it
    (True, ""),                      # smtps:// checks too, loopback or not
    (False, 'ca_file = "OTHER"'),    # a ca_file is checked on loopback as well
    (False, 'tls = "require", ca_file = "OTHER"'),
])
def test_a_certificate_nobody_vouches_for_is_refused(sesamed, tls_mailbox, certs, implicit,
                                                     settings):
    box = tls_mailbox(implicit)
    settings = settings.replace("OTHER", str(certs["other"]))
    s = sesamed(routes=ROUTES, more=mail_config(box.url, settings))
    assert send_over_tls(s, box, "mitm@example.org") == {
        "sent": False, "error": "mail server unavailable", "enabled": True}
    s.wait_log("mail not sent")
    why = [line for line in s.log().splitlines() if "mail not sent" in line]
    assert "certificate" in why[0], s.log()
    assert box.messages == [] and box.tls == []


def test_smtp_auth_over_required_starttls(sesamed, tls_mailbox, certs, tmp_path):
    auth = _Auth()
    box = tls_mailbox(auth=auth)
    secret = tmp_path / "smtp.pw"
    secret.write_text(SMTP_PASSWORD + "\n")
    s = sesamed(routes=ROUTES, more=mail_config(
        box.url, f'tls = "require", ca_file = "{certs["server"]}", username = "mailer", '
                 f'password_file = "{secret}"'))
    assert send_over_tls(s, box, "auth@example.org")["sent"] is True, s.log()
    assert box.last("auth@example.org")["message"]["Subject"] == "Over TLS"
    assert auth.logins == [(b"mailer", True)] and box.tls == [True]
    no_secret_in(s)


def test_mail_not_configured(sesamed):
    s = sesamed(routes=ROUTES)
    r = send(s, to="a@example.org", subject="Hi", text="body")
    assert r.status_code == 500
    s.wait_log("mail is not configured")


# ---- http ----

def test_http_get_and_post_json(sesamed, receiver):
    s = sesamed(routes=ROUTES, more=http_config(receiver))
    receiver.body = {"hello": "world"}
    r = s.post("/http", json={"url": receiver.url + "/hook?x=1",
                              "headers": {"X-Token-Id": "abc"}}).json()
    assert r["status"] == 200
    assert r["body"] == '{"hello": "world"}'
    assert r["headers"]["x-receiver"] == "yes"
    assert r["headers"]["content-type"] == "application/json"
    got = receiver.wait(1)[0]
    assert got["method"] == "GET" and got["path"] == "/hook?x=1"
    assert got["headers"]["X-Token-Id"] == "abc"

    receiver.status = 201
    r = s.post("/http", json={"url": receiver.url + "/events",
                              "json": {"event": "registered", "user": 7}}).json()
    assert r["status"] == 201
    got = receiver.wait(2)[1]
    assert got["method"] == "POST"
    assert got["json"] == {"event": "registered", "user": 7}
    assert got["headers"]["Content-Type"] == "application/json"

    r = s.post("/http", json={"method": "PUT", "url": receiver.url + "/raw",
                              "body": "plain text", "headers": {"Content-Type": "text/plain"}})
    assert r.json()["status"] == 201
    got = receiver.wait(3)[2]
    assert (got["method"], got["body"], got["headers"]["Content-Type"]) == \
        ("PUT", b"plain text", "text/plain")


@pytest.mark.parametrize("url,error", [
    ("http://localhost:{port}/", "host not allowed"),
    ("http://127.0.0.1:{other}/", "host not allowed"),
    ("http://127.0.0.1/", "host not allowed"),
    ("ftp://127.0.0.1:{port}/", "not an http or https URL"),
    ("http://user:pw@127.0.0.1:{port}/", "user names in URLs are refused"),
    ("file:///etc/passwd", "not an http or https URL"),
])
def test_http_refuses_what_the_allow_list_does_not_name(sesamed, receiver, url, error):
    s = sesamed(routes=ROUTES, more=http_config(receiver))
    url = url.format(port=receiver.port, other=receiver.port + 1)
    r = s.post("/http", json={"url": url})
    assert r.json() == {"error": error}
    time.sleep(0.2)
    assert receiver.requests == []


def test_http_header_with_crlf_raises(sesamed, receiver):
    s = sesamed(routes=ROUTES, more=http_config(receiver))
    r = s.post("/http", json={"url": receiver.url, "headers": {"X-A": "1\r\nX-B: 2"}})
    assert r.status_code == 500
    assert receiver.requests == []


def test_http_redirect_is_not_followed(sesamed, receiver):
    s = sesamed(routes=ROUTES, more=http_config(receiver))
    receiver.status = 302
    r = s.post("/http", json={"url": receiver.url + "/from"}).json()
    assert r["status"] == 302
    assert len(receiver.wait(1)) == 1


def test_http_timeout_and_response_too_large(sesamed, receiver):
    s = sesamed(routes=ROUTES, more=http_config(receiver, "max_response = 1000"))
    receiver.delay = 3
    started = time.monotonic()
    r = s.post("/http", json={"url": receiver.url, "timeout": 0.5})
    assert r.json() == {"error": "timed out"}
    assert time.monotonic() - started < 2
    receiver.delay = 0
    receiver.body = {"big": "x" * 5000}
    assert s.post("/http", json={"url": receiver.url}).json() == \
        {"error": "response too large"}
    receiver.body = {"small": "x" * 10}
    assert s.post("/http", json={"url": receiver.url}).json()["status"] == 200


def test_http_connection_refused(sesamed):
    port = free_port()  # nobody listens there
    s = sesamed(routes=ROUTES, more=f'http = {{ allow = {{ "127.0.0.1:{port}" }} }}\n')
    started = time.monotonic()
    assert s.post("/http", json={"url": f"http://127.0.0.1:{port}/"}).json() == \
        {"error": "connection refused"}
    assert time.monotonic() - started < 2


def test_client_leaving_cancels_the_transfer(sesamed, receiver):
    s = sesamed(routes=ROUTES, workers=1, more=http_config(receiver))
    pid = s.workers()
    receiver.delay = 2
    with pytest.raises(requests.exceptions.ReadTimeout):
        s.post("/http", json={"url": receiver.url}, timeout=0.5)
    s.wait_log("http.request to 127.0.0.1:%d: cancelled" % receiver.port)
    receiver.delay = 0
    assert s.post("/http", json={"url": receiver.url}).json()["status"] == 200
    assert s.workers() == pid


# ---- background tasks ----

def test_defer_answers_before_the_deferred_request(sesamed, receiver):
    s = sesamed(routes=ROUTES, workers=1, more=http_config(receiver))
    receiver.delay = 2
    started = time.monotonic()
    r = s.post("/defer", json={"url": receiver.url + "/later", "payload": {"n": 1}})
    assert r.json() == {"queued": True}
    assert time.monotonic() - started < 1
    got = receiver.wait(1)[0]
    assert got["json"] == {"n": 1} and got["path"] == "/later"
    s.wait_log("deferred request answered 200")


def test_defer_error_is_logged_and_the_worker_lives_on(sesamed):
    s = sesamed(routes=ROUTES, workers=1)
    pid = s.workers()
    assert s.post("/defer/fail").json() == {"queued": True}
    s.wait_log("sesame.defer: task failed")
    assert "deferred failure" in s.log() and "stack traceback" in s.log()
    assert s.get("/ping").json() == {"pong": True}
    assert s.workers() == pid


def test_deferred_task_past_the_handler_timeout_is_stopped(sesamed, receiver):
    s = sesamed("handler_timeout = 1,", routes=ROUTES, workers=1,
                more=http_config(receiver, "timeout = 30"))
    receiver.delay = 4
    assert s.post("/defer", json={"url": receiver.url, "payload": {}}).json() == \
        {"queued": True}
    s.wait_log("sesame.defer: task did not finish within server.handler_timeout")
    assert "deferred request answered" not in s.log()
    assert s.get("/ping").json() == {"pong": True}


def test_tasks_are_bounded_by_the_queue(sesamed, receiver):
    s = sesamed("queue = 2,", routes=ROUTES, workers=1, more=http_config(receiver))
    receiver.delay = 1
    answers = [s.post("/defer", json={"url": receiver.url, "payload": {"i": i}}).json()
               for i in range(4)]
    assert answers.count({"queued": True}) == 2
    assert answers.count({"queued": False}) == 2
    s.wait_log("background task dropped")
    assert len(receiver.wait(2)) == 2


def test_graceful_stop_waits_for_tasks(sesamed, receiver):
    s = sesamed(routes=ROUTES, workers=1, more=http_config(receiver))
    receiver.delay = 1.5
    assert s.post("/defer", json={"url": receiver.url, "payload": {"last": True}}).json() == \
        {"queued": True}
    time.sleep(0.2)
    assert s.stop() == 0
    assert "deferred request answered 200" in s.log()


# ---- configuration ----

@pytest.mark.parametrize("more,key", [
    ('mail = { url = "http://127.0.0.1:25", from = "a@example.com" }', "mail.url"),
    ('mail = { url = "smtp://127.0.0.1:25", from = "Sesame <a@example.com>" }', "mail.from"),
    ('mail = { url = "smtp://127.0.0.1:25", from = "a@example.com", username = "u",'
     ' password_file = "missing.pw" }', "mail.password_file"),
    ('mail = { url = "smtp://127.0.0.1:25", from = "a@example.com", tls = "yes" }', "mail.tls"),
    ('mail = { url = "smtp://127.0.0.1:25", from = "a@example.com", ca_file = "no.pem" }',
     "mail.ca_file"),
    ('mail = { url = "smtp://127.0.0.1:25", from = "a@example.com", ca_file = "sesame.lua" }',
     "mail.ca_file"),
    ('http = { allow = { "http://example.com" } }', "http.allow"),
    ('http = { allow = { "example.com:99999" } }', "http.allow"),
])
def test_bad_settings_are_reported_with_their_line(sesamed, more, key):
    s = sesamed(routes=ROUTES, start=False, more=more + "\n")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert f"sesame.lua:4: {key}:" in r.stderr, r.stderr


def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=30)


def test_the_templates_are_a_warning_with_mail_set_and_no_accounts_table(sesamed, mailbox):
    """A route that only calls sesame.mail.send needs no templates: with no accounts table
    their problems are warned about, at sesamed -t and at start, not refused."""
    s = sesamed(routes=ROUTES, start=False, more=mail_config(mailbox.url))
    shutil.rmtree(s.dir / "mail")
    r = check(s)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"warn: .*accounts\.mail_dir: {s.dir}/mail: No such file.* no accounts "
                     r"table is set: the default routes' account flows cannot mail", r.stderr), \
        r.stderr
    (s.dir / "mail").mkdir()
    (s.dir / "mail" / "verify.txt").write_text("Subject: Confirm\n\n{link}\n")
    r = check(s)
    assert r.returncode == 0, r.stderr
    assert f"accounts.mail_dir: template {s.dir}/mail/reset.txt: No such file" in r.stderr
    assert "mail/verify.txt" not in r.stderr, r.stderr
    s.start()
    s.wait_log(f"accounts.mail_dir: template {s.dir}/mail/reset.txt: No such file")
    r = send(s, to="erin@example.org", subject="Hi", text="no template needed")
    assert r.json()["sent"] is True, r.text
    assert receivers.text_of(mailbox.last("erin@example.org")).strip() == "no template needed"


def test_the_templates_are_an_error_with_mail_and_an_accounts_table(sesamed):
    s = sesamed(routes=ROUTES, start=False, more=mail_config("smtp://127.0.0.1:25") +
                'accounts = { link_base = "https://app.example.com" }\n')
    shutil.rmtree(s.dir / "mail")
    r = check(s)
    assert r.returncode == 1, r.stderr
    assert f"accounts.mail_dir: {s.dir}/mail: No such file" in r.stderr, r.stderr
    assert "warn:" not in r.stderr, r.stderr


LOOPBACK_LINKS = "accounts.link_base: the links in mails point to"


@pytest.mark.parametrize("more,warned", [
    (mail_config("smtp://127.0.0.1:25"), "http://127.0.0.1:8080"),  # the default link_base
    (mail_config("smtp://127.0.0.1:25") + 'accounts = { link_base = "http://localhost:3000" }',
     "http://localhost:3000"),
    (mail_config("smtp://127.0.0.1:25") + 'accounts = { link_base = "https://[::1]/app" }',
     "https://[::1]/app"),
    (mail_config("smtp://127.0.0.1:25") + 'accounts = { link_base = "https://app.example.com" }',
     None),
    ('accounts = { link_base = "http://127.0.0.1:8080" }', None),  # no mail: no links
])
def test_links_to_loopback_in_mails_are_warned_about(sesamed, more, warned):
    s = sesamed(routes=ROUTES, start=False, more=more + "\n")
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    if warned is None:
        assert LOOPBACK_LINKS not in r.stderr, r.stderr
        return
    assert f"{LOOPBACK_LINKS} {warned}, this machine's loopback" in r.stderr, r.stderr
    s.start()
    s.wait_log(f"{LOOPBACK_LINKS} {warned}")
    assert s.get("/healthz").status_code == 200


def check_config(sesamed, more):
    s = sesamed(routes=ROUTES, start=False, more=more + "\n")
    (s.dir / "smtp.pw").write_text(SMTP_PASSWORD + "\n")
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=30)


def auth_config(url, tls):
    return (f'mail = {{ url = "{url}", from = "{FROM}", username = "mailer", '
            f'password_file = "smtp.pw"{tls} }}')


@pytest.mark.parametrize("url,tls,accepted", [
    ("smtp://mail.example.com:587", "", False),
    ("smtp://mail.example.com:587", ', tls = "try"', False),
    ("smtp://mail.example.com:25", ", tls = false", False),
    ("smtp://192.0.2.7:25", ", tls = false", False),
    ("smtp://[2001:db8::1]:587", ', tls = "try"', False),
    ("smtp://mail.example.com:587", ', tls = "require"', True),
    ("smtps://mail.example.com:465", "", True),
    ("smtps://mail.example.com:465", ", tls = false", True),
    ("smtp://127.0.0.1:25", ", tls = false", True),
    ("smtp://127.10.20.30:25", ', tls = "try"', True),
    ("smtp://localhost:25", "", True),
    ("smtp://LocalHost:25", ", tls = false", True),
    ("smtp://[::1]:25", ", tls = false", True),
])
def test_smtp_auth_only_over_tls_or_on_loopback(sesamed, url, tls, accepted):
    r = check_config(sesamed, auth_config(url, tls))
    assert SMTP_PASSWORD not in r.stderr
    if accepted:
        assert r.returncode == 0, r.stderr
        assert "mail." not in r.stderr
    else:
        assert r.returncode == 1
        assert "sesame.lua:4: mail.username:" in r.stderr, r.stderr
        assert 'needs tls = "require" or an smtps:// URL' in r.stderr
