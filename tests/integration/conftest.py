"""Fixtures that run a real sesamed, built in this tree, on a private port."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

import openapi_check

TOP = Path(__file__).resolve().parents[2]
SESAMED = os.environ.get("SESAMED", str(TOP / "build" / "sesamed"))
ROUTES = Path(__file__).resolve().parent / "routes"
LUA = Path(__file__).resolve().parent / "lua"
SHIPPED_LUA = TOP / "etc" / "sesame" / "lua"
PLUGINS = Path(SESAMED).parent / "plugins"
# Tests register and log in many times from 127.0.0.1: the shipped limits would refuse them.
# A test's own `limits = {...}` (in more) replaces this table, and the rules it leaves out
# take the shipped defaults. It shares the routes line, so that line numbers stay put.
GENEROUS_LIMITS = ('limits = { register = "100000/second", login = "100000/second", '
                   'login_failures = "100000/second" }\n')
# A sanitizer build: its leak and error reports go to sesamed's log, which every test checks.
SANITIZED = Path(SESAMED).exists() and b"__asan_init" in Path(SESAMED).read_bytes()
# Every answer from the shipped route scripts is checked against docs/openapi.yaml.
OPENAPI = openapi_check.Checker(SESAMED)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=15):
    """Polls predicate until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# nginx in the foreground in a folder of its own (-p), on what a test puts in its http block.
NGINX_MAIN = """daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{http}
}}
"""


def nginx_conf(folder, http):
    return NGINX_MAIN.format(d=folder, http=http)


def stop_process(proc, timeout=15):
    """Stops a process a test started (a proxy, a server) by its pid: TERM, then KILL."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_pids(pid):
    """The live children of pid (the workers of a master)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(p) for p in text)
    return sorted(p for p in out if not is_zombie(p))


def refused(port):
    """Does a connection to port on loopback get refused (nothing listens there)?"""
    with socket.socket() as c:
        c.settimeout(5)
        return c.connect_ex(("127.0.0.1", port)) != 0


def metric(s, series):
    """A series' value, as `name` or `name{label="value"}`, from a scrape on a connection of its
    own; 0 when sesamed does not show it yet."""
    text = s.get("/metrics", headers={"Connection": "close"}).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:  # gone meanwhile: ENOENT, or ESRCH while its stat is read
        return True


class Sesamed:
    """One sesamed process: its config folder, its URL, its log."""

    def __init__(self, tmp_path, config="", routes=None, workers=2, more=""):
        self.dir = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "sesame.lua"
        self.routes_dir = tmp_path / "routes"
        self.routes_dir.mkdir(exist_ok=True)
        self.log_path = tmp_path / "sesamed.log"
        for name, text in (routes or {}).items():
            self.write_route(name, text)
        shutil.copytree(LUA, tmp_path / "lua")
        # The modules the shipped route scripts require, where sesame.lua's lua/ folder has them.
        for module in SHIPPED_LUA.glob("*.lua"):
            shutil.copy(module, tmp_path / "lua")
        self.write_config(config, workers, more)
        self.proc = None

    def write_route(self, name, text):
        (self.routes_dir / name).write_text(text)
        if getattr(self, "proc", None) is not None:
            OPENAPI.serve(self.url, self.routes_dir)

    def write_config(self, extra="", workers=2, more=None):
        self.more = more if more is not None else getattr(self, "more", "")
        more = self.more
        self.config.write_text(
            f'server = {{ listen = "127.0.0.1:{self.port}", workers = {workers}, '
            # user = "root": the suite runs as root; a test's own user comes later and wins.
            f'shutdown_timeout = 10, user = "root", control = "control.sock", {extra} }}\n'
            f'plugins = {{ path = "{PLUGINS}" }}\n'
            'routes = { "routes/*.lua" } ' + GENEROUS_LIMITS + more)

    def start(self, wait=True, env=None):
        OPENAPI.serve(self.url, self.routes_dir)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SESAMED, "-f", "-c", str(self.config)],
                                     stdout=self.logf, stderr=self.logf, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sesamed exited with {self.proc.returncode}:\n{self.log()}")
            if "serving on" in self.log():
                try:
                    if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("sesamed did not become ready:\n" + self.log())

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text, timeout=15, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged {count} times:\n{self.log()}")

    def workers(self):
        return child_pids(self.proc.pid)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        OPENAPI.forget(self.url)
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url + path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.request(method, self.url + path, **kw)


@pytest.fixture
def sesamed(tmp_path):
    """Makes sesamed instances; each is stopped, and must exit 0, at the end of the test."""
    made = []

    def make(config="", routes=None, workers=2, start=True, more=""):
        d = tmp_path / f"s{len(made)}"
        d.mkdir()
        s = Sesamed(d, config, routes, workers, more)
        made.append(s)
        return s.start() if start else s

    yield make
    for s in made:
        code = s.stop()
        if code is not None and code != 0:
            pytest.fail(f"sesamed exited with {code}:\n{s.log()}")
        assert "ERROR: AddressSanitizer" not in s.log(), s.log()
        assert "ERROR: LeakSanitizer" not in s.log(), s.log()
        assert "runtime error:" not in s.log(), s.log()


def whole_suite(session):
    """Did this run collect every test of the integration suite? (OPENAPI_COVERAGE=1 in the
    environment asks for the coverage check on a part of it too.)"""
    if os.environ.get("OPENAPI_COVERAGE") == "1":
        return True
    here = Path(__file__).resolve().parent
    ran = {Path(str(item.fspath)).resolve() for item in session.items}
    narrowed = any("::" in arg for arg in session.config.args)
    return (not narrowed and not getattr(session, "deselected_any", False) and
            set(here.glob("test_*.py")) <= ran)


def pytest_deselected(items):
    if items:
        items[0].session.deselected_any = True


@pytest.fixture(scope="session", autouse=True)
def openapi_contract(request):
    """Checks every answer against docs/openapi.yaml; a run of the whole suite must have
    received every documented answer that is not marked x-untested."""
    OPENAPI.install()
    yield OPENAPI
    OPENAPI.uninstall()
    if whole_suite(request.session):
        missed = OPENAPI.misses()
        report = request.config.pluginmanager.get_plugin("terminalreporter")
        if report is not None:
            report.write_line(f"docs/openapi.yaml: {len(OPENAPI.seen)} documented answers "
                              f"received, {len(missed)} missed")
        if missed:
            pytest.fail("documented answers that no test received (test them, or mark them "
                        "x-untested in docs/openapi.yaml):\n  " +
                        "\n  ".join(" ".join(m) for m in missed), pytrace=False)


@pytest.fixture(autouse=True)
def openapi_answers():
    """Answers that other threads of a test received are judged at its end."""
    OPENAPI.take_pending()
    yield
    found = OPENAPI.take_pending()
    if found:
        pytest.fail("\n".join(found), pytrace=False)


def route_file(name):
    return (ROUTES / name).read_text()


def raw_exchange(s, data, enough=None):
    """Sends raw bytes to sesamed on one connection; returns all it wrote until it closed, or
    until enough(what it wrote so far) is true."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(data)
        buf = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return buf
            buf += chunk
            if enough is not None and enough(buf):
                return buf


def raw_answers(buf, methods=()):
    """The (status, fields, body) of each answer in buf, in order. methods are the requests'
    methods, in order: an answer to a HEAD has a length and no body. Every answer must give its
    length, or the next one would not be framed."""
    out = []
    while buf:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        assert sep, buf
        lines = head.decode().split("\r\n")
        fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        assert "content-length" in fields, head
        head_only = len(out) < len(methods) and methods[len(out)] == "HEAD"
        n = 0 if head_only else int(fields["content-length"])
        assert len(rest) >= n, buf
        out.append((int(lines[0].split(" ")[1]), fields, rest[:n]))
        buf = rest[n:]
    return out


class MariaDB:
    """A private MariaDB server for the test session: its own folder, socket, no network.
    Its data folder is a copy of one that mariadb-install-db made once for the session (the
    install takes seconds, the copy a fraction of one), in the session's own temporary folder
    (home, set by the mariadb_home fixture), not in the first test's."""

    home = None
    template = None

    def __init__(self, folder):
        self.dir = folder
        self.socket = str(folder / "mysqld.sock")
        self.proc = None
        if MariaDB.template is None:
            made = MariaDB.home / "mariadb-template"
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={made}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            "--user=root"], check=True, capture_output=True, timeout=120)
            MariaDB.template = made
        shutil.copytree(MariaDB.template, folder / "data", symlinks=True)

    def start(self):
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.dir / 'data'}",
             f"--socket={self.socket}", "--skip-networking", "--user=root",
             f"--pid-file={self.dir / 'mariadbd.pid'}", f"--log-error={self.dir / 'error.log'}",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.sql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("MariaDB did not start:\n" + (self.dir / "error.log").read_text())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def sql(self, statement, database=None, check=True):
        args = ["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", "-N", "-B",
                "-e", statement]
        if database:
            args.append(database)
        return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)

    def storage(self, database, extra=""):
        """A storage table for sesame.lua on a fresh database."""
        self.sql(f"CREATE DATABASE `{database}`")
        return (f'storage = {{ backend = "mariadb", mariadb = {{ socket = "{self.socket}", '
                f'user = "root", database = "{database}", connect_timeout = 2 }}, {extra} }}\n')


@pytest.fixture(scope="session", autouse=True)
def mariadb_home(tmp_path_factory):
    """Where the session's MariaDB template goes: the session's temporary folder."""
    MariaDB.home = tmp_path_factory.getbasetemp()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mariadb(mariadb_server, request):
    """The session's server, with a database name of this test's own."""
    mariadb_server.count = getattr(mariadb_server, "count", 0) + 1
    mariadb_server.database = f"t{mariadb_server.count}_" + "".join(
        c if c.isalnum() else "_" for c in request.node.name)[:50]
    return mariadb_server


@pytest.fixture
def own_mariadb(tmp_path):
    """A MariaDB server of the test's own, which it may stop and start again."""
    server = MariaDB(tmp_path / "mariadb")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mailbox():
    """A real SMTP server on loopback (receivers.Mailbox), stopped at the end of the test."""
    import receivers
    box = receivers.Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def receiver():
    """A real HTTP server on loopback (receivers.Receiver) that records what it is sent."""
    import receivers
    rx = receivers.Receiver().start()
    yield rx
    rx.stop()
