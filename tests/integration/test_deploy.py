"""The deployments of docs/operations.md, run as shipped: nginx with etc/nginx/sesame.conf and
HAProxy with etc/haproxy/sesame.cfg in front of real sesamed nodes, both terminating TLS, and a
Flask tutorial service's users and tokens taken over with the configuration the guide gives.
The shipped files are changed only in their ports, addresses and paths."""
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from passlib.hash import pbkdf2_sha256

from conftest import TOP, free_port, nginx_conf, stop_process, wait_for
from receivers import Relay

SECRET = "deploy-tests-secret-0123456789abcdef"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua", "jwks.lua", "info.lua")}


def shipped(path, replacements):
    """The shipped file with each (old, new) replaced; each old must be there."""
    text = (TOP / path).read_text()
    for old, new in replacements:
        assert old in text, f"{path} no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: its file, its key's, and both in one."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True, timeout=60)
    (d / "both.pem").write_text((d / "cert.pem").read_text() + (d / "key.pem").read_text())
    return d


class FromAddress(requests.adapters.HTTPAdapter):
    """Connections from a loopback address of the test's choice: a client of its own."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kw)


def client(cert, address="127.0.0.1"):
    s = requests.Session()
    s.trust_env = False  # the test's certificate, whatever REQUESTS_CA_BUNDLE says
    s.verify = str(cert / "cert.pem")
    s.mount("https://", FromAddress(address))
    s.mount("http://", FromAddress(address))
    return s


def started(args, log, url, cert):
    """Starts a proxy in the foreground; returns it once url answers."""
    logf = open(log, "ab")
    proc = subprocess.Popen(args, stdout=logf, stderr=logf)

    def up():
        assert proc.poll() is None, log.read_text()
        try:
            requests.get(url, verify=str(cert / "cert.pem"), timeout=2)
            return True
        except requests.ConnectionError:
            return False
    assert wait_for(up, 30), log.read_text()
    return proc


class App(BaseHTTPRequestHandler):
    """The protected application: says who nginx said the user is, and who the client was."""

    def do_GET(self):
        body = json.dumps({"user": self.headers.get("X-Auth-User"),
                           "forwarded_for": self.headers.get("X-Forwarded-For")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def app_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def nginx(tmp_path, cert):
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.os.path.exists(exe):
        pytest.skip("nginx is not installed")
    procs = []

    def start(sesame_port, app_port):
        d = tmp_path / "nginx"
        d.mkdir()
        https, http = free_port(), free_port()
        (d / "sesame.conf").write_text(shipped("etc/nginx/sesame.conf", [
            ("listen 80;", f"listen 127.0.0.1:{http};"),
            ("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;"),
            ("server 127.0.0.1:8080;", f"server 127.0.0.1:{sesame_port};"),
            ("server 127.0.0.1:5000;", f"server 127.0.0.1:{app_port};"),
            ("/etc/ssl/certs/auth.example.com.pem", str(cert / "cert.pem")),
            ("/etc/ssl/private/auth.example.com.key", str(cert / "key.pem"))]))
        (d / "nginx.conf").write_text(nginx_conf(d, f"  include {d}/sesame.conf;"))
        url = f"https://127.0.0.1:{https}"
        procs.append(started([exe, "-p", str(d), "-e", str(d / "error.log"), "-c",
                              str(d / "nginx.conf")], d / "nginx.out", url + "/users/me", cert))
        return url, f"http://127.0.0.1:{http}"

    yield start
    for p in procs:
        stop_process(p)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def user(n):
    return {"email": f"user{n}@example.com", "username": f"user{n}", "password": "correct horse"}


def test_behind_nginx(sesamed, tmp_path, cert, nginx, app_server):
    # sesamed as the guide sets it up behind nginx: loopback, nginx as the trusted proxy.
    s = sesamed(config='trusted_proxies = { "127.0.0.1" }', routes=ROUTES, more=(
        f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "sesame.db"}" }} }}\n'
        f'jwt = {{ secret = "{SECRET}" }}\n'
        'limits = { register = "2/minute" }\n'))
    url, plain = nginx(s.port, app_server)
    alice = client(cert, "127.0.0.2")

    r = alice.post(url + "/users/register", json=user(1), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Strict-Transport-Security"] == "max-age=63072000"
    token = alice.post(url + "/users/login", json=user(1), timeout=10).json()["access_token"]
    sub = jwt.decode(token, SECRET, algorithms=["HS256"])["sub"]

    # The application: 401 without a token or with a bad one; with one, the user nginx was told.
    assert alice.get(url + "/app/page", timeout=10).status_code == 401
    assert alice.get(url + "/app/page", headers=bearer(token + "x"), timeout=10).status_code == 401
    r = alice.get(url + "/app/page", headers=dict(bearer(token), **{"X-Auth-User": "999"}),
                  timeout=10)
    assert r.status_code == 200
    assert r.json() == {"user": sub, "forwarded_for": "127.0.0.2"}
    assert alice.get(url + "/users/me", headers=bearer(token), timeout=10).json()["user"]["id"] \
        == int(sub)
    assert alice.get(url + "/auth/verify", headers=bearer(token), timeout=10).status_code == 404

    # The client's own address reaches sesamed: its limit counts 127.0.0.2, not nginx.
    assert alice.post(url + "/users/register", json=user(2), timeout=10).status_code == 200
    r = alice.post(url + "/users/register", json=user(3), timeout=10)
    assert r.status_code == 429 and "Retry-After" in r.headers
    bob = client(cert, "127.0.0.3")
    assert bob.post(url + "/users/register", json=user(3), timeout=10).status_code == 200
    remotes = re.findall(r'"path":"/users/register".*?"remote":"([^"]+)"', s.log())
    assert sorted(set(remotes)) == ["127.0.0.2", "127.0.0.3"], remotes

    # Plain HTTP is only a redirect.
    r = requests.get(plain + "/users/me", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"].startswith("https://")


def logins(node):
    return node.log().count('"path":"/users/login"')


def test_behind_haproxy(sesamed, mariadb, tmp_path, cert):
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not shutil.os.path.exists(exe):
        pytest.skip("haproxy is not installed")
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    relay = Relay(tmp_path / "relay.sock", mariadb.socket)

    def node(sock):
        return sesamed(config='trusted_proxies = { "127.0.0.1" }', routes=ROUTES, more=(
            f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{sock}", user = "root", '
            f'database = "{mariadb.database}", connect_timeout = 2 }} }}\n'
            f'jwt = {{ secret = "{SECRET}" }}\n'))
    a, b = node(mariadb.socket), node(relay.path)

    d = tmp_path / "haproxy"
    (d / "chroot").mkdir(parents=True)
    https, http = free_port(), free_port()
    (d / "haproxy.cfg").write_text(shipped("etc/haproxy/sesame.cfg", [
        ("/var/lib/haproxy", str(d / "chroot")),
        ("bind :443 ssl crt /etc/haproxy/certs/auth.example.com.pem",
         f"bind 127.0.0.1:{https} ssl crt {cert / 'both.pem'}"),
        ("bind :80\n", f"bind 127.0.0.1:{http}\n"),
        ("10.0.0.11:8080", f"127.0.0.1:{a.port}"),
        ("10.0.0.12:8080", f"127.0.0.1:{b.port}")]))
    url = f"https://127.0.0.1:{https}"
    check = subprocess.run([exe, "-c", "-f", str(d / "haproxy.cfg")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    proxy = started([exe, "-db", "-f", str(d / "haproxy.cfg")], d / "haproxy.log",
                    url + "/healthz", cert)
    try:
        c = client(cert, "127.0.0.2")
        assert c.post(url + "/users/register", json=user(1), timeout=10).status_code == 200

        def login_ok():
            r = c.post(url + "/users/login", json=user(1), timeout=10)
            return r.status_code == 200 and r.headers["Strict-Transport-Security"]

        # Both nodes serve, once HAProxy's checks have seen each answer /readyz.
        assert wait_for(lambda: login_ok() and logins(a) > 0 and logins(b) > 0, 30)
        assert '"remote":"127.0.0.2"' in a.log() + b.log()

        # Node b loses its database: its /readyz says 503, and HAProxy routes around it.
        relay.close()
        assert wait_for(lambda: b.get("/readyz").status_code == 503, 15)
        assert b.get("/healthz").status_code == 200
        assert wait_for(lambda: all(login_ok() for _ in range(4)), 20)
        time.sleep(0.5)
        before = logins(b)
        assert all(login_ok() for _ in range(10))
        assert logins(b) == before, "HAProxy still sends log-ins to the node without storage"

        # Its database back, node b is back in rotation.
        relay.open()
        assert wait_for(lambda: login_ok() and logins(b) > before, 30), b.log()
    finally:
        stop_process(proxy)
        if relay.srv.fileno() != -1:
            relay.close()


# ---- Moving a Flask tutorial service's users ----

def guide_config(socket_path, database):
    """The guide's configuration for the Flask service's database, with the test's server."""
    text = (TOP / "docs/operations.md").read_text()
    section = text.split("### Moving a Flask service's users", 1)[1]
    block = re.search(r"```lua\n(.*?)```", section, re.S).group(1)
    for old, new in (('socket = "/run/mysqld/mysqld.sock"', f'socket = "{socket_path}"'),
                     ('user = "flask"', 'user = "root"'),
                     ('database = "flask"', f'database = "{database}"'),
                     ('"the Flask app\'s JWT_SECRET_KEY"', f'"{SECRET}"')):
        assert old in block, f"the guide's configuration no longer has {old!r}"
        block = block.replace(old, new)
    return block


def flask_token(sub, secret=SECRET):
    """An access token as flask-jwt-extended 4 makes it (create_access_token(identity=...))."""
    now = int(time.time())
    return jwt.encode({"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access",
                       "sub": str(sub), "nbf": now, "exp": now + 900}, secret, algorithm="HS256")


def test_moving_a_flask_services_users(sesamed, mariadb):
    db = mariadb.database
    mariadb.sql(f"CREATE DATABASE `{db}`")
    # The tutorial's table, as Flask-SQLAlchemy made it, and its users' passlib hashes.
    mariadb.sql("CREATE TABLE user (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(80) "
                "NOT NULL, email VARCHAR(120) NOT NULL UNIQUE, password VARCHAR(200) NOT NULL)",
                db)
    for n in (1, 2):
        mariadb.sql("INSERT INTO user (username, email, password) VALUES "
                    f"('flask{n}', 'flask{n}@example.com', "
                    f"'{pbkdf2_sha256.hash(f'tutorial password {n}')}')", db)
    old_token = flask_token(1)

    s = sesamed(routes=ROUTES, more=guide_config(mariadb.socket, db))
    # A token the Flask service issued before the switch is still good.
    r = s.get("/users/me", headers=bearer(old_token))
    assert r.status_code == 200, r.text
    assert r.json()["user"] == {"id": 1, "email": "flask1@example.com", "username": "flask1",
                                "email_verified": False}

    # Its users log in with their passwords; the hash is made again with argon2id.
    stored = lambda n: mariadb.sql(  # noqa: E731
        f"SELECT password FROM user WHERE id = {n}", db).stdout.strip()
    assert stored(1).startswith("$pbkdf2-sha256$29000$")
    r = s.post("/users/login", json={"email": "flask1@example.com",
                                     "password": "tutorial password 1"})
    assert r.status_code == 200, r.text
    assert stored(1).startswith("$argon2id$")
    assert stored(2).startswith("$pbkdf2-sha256$")
    assert s.post("/users/login", json={"email": "flask1@example.com",
                                        "password": "tutorial password 1"}).status_code == 200
    assert s.post("/users/login", json={"email": "flask2@example.com",
                                        "password": "wrong"}).status_code == 401

    # sesame's tokens are the Flask service's too, while both run.
    claims = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "1" and claims["type"] == "access"
    # And a new user lands in the same table.
    r = s.post("/users/register", json={"email": "new@example.com", "username": "new",
                                        "password": "correct horse"})
    assert r.status_code == 200
    assert mariadb.sql("SELECT COUNT(*) FROM user", db).stdout.strip() == "3"
