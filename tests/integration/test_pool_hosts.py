"""storage.mariadb.hosts: the pool of each worker on several nodes, against real servers.

A node that refuses is passed over (and logged down once), a node stopped in the middle of a
run of registrations is left for the next one, a node that never answers (packets lost) is
given only its share of connect_timeout: the requests go on, none answers 500. The
nodes are the session's MariaDB and, where a test needs one to stop, a second private server
of its own (its own data folder and socket), stopped by its pid. A bad list is refused by
`sesamed -t` with its file and line."""
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import PLUGINS, SESAMED, TOP, MariaDB, free_port, wait_for

SECRET = "pool-hosts-tests-secret-0123456789abcdef"
PASSWORD = "pool hosts secret horse"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}


def storage(database, hosts, extra=""):
    listed = ", ".join(f'"{h}"' for h in hosts)
    return (f'storage = {{ backend = "mariadb", mariadb = {{ hosts = {{ {listed} }}, '
            f'user = "root", database = "{database}", connect_timeout = 2{extra} }} }}\n'
            f'jwt = {{ secret = "{SECRET}" }}\n')


def register(s, timeout=10):
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    r = s.post("/users/register", timeout=timeout,
               json={"email": email, "username": "pool", "password": PASSWORD})
    return r, email


def metric(s, name):
    text = s.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    assert found, text
    return int(found.group(1))


def test_a_dead_node_is_passed_over_and_logged_once(sesamed, mariadb):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    dead = f"127.0.0.1:{free_port()}"  # bound by nothing: refused
    s = sesamed(routes=ROUTES, workers=1,
                more=storage(mariadb.database, [dead, mariadb.socket]))
    r, email = register(s)
    assert r.status_code == 200, s.log()
    down = f"MariaDB node {dead} is down"
    s.wait_log(down)
    logged = s.log().count(down)
    assert metric(s, "sesame_storage_failovers_total") >= 1
    # Requests for a few seconds, past several rests of the dead node: all served, and the
    # node is not logged down again at each one.
    until = time.monotonic() + 3
    while time.monotonic() < until:
        r = s.post("/users/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, s.log()
        token = r.json()["access_token"]
        me = s.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["user"]["email"] == email
    assert s.log().count(down) == logged
    # The user is on the node that served.
    rows = mariadb.sql(f"SELECT email FROM users WHERE email = '{email}'", mariadb.database)
    assert rows.stdout.strip() == email
    assert PASSWORD not in s.log() and SECRET not in s.log()


@pytest.fixture
def second(tmp_path):
    """A second private MariaDB server, stopped (by its pid) at the end if it still runs."""
    folder = tmp_path / "second"
    folder.mkdir()
    server = MariaDB(folder)
    server.start()
    yield server
    server.stop()


def test_a_node_stopped_mid_run_is_left_for_the_next(sesamed, mariadb, second):
    for server in (second, mariadb):
        server.sql(f"CREATE DATABASE `{mariadb.database}`")
    # The schema on the second node in the list first (sesamed migrates the one it reaches).
    first = sesamed(routes=ROUTES, workers=1, more=storage(mariadb.database, [mariadb.socket]))
    assert first.stop() == 0
    s = sesamed(routes=ROUTES, workers=2,
                more=storage(mariadb.database, [second.socket, mariadb.socket]))
    answers, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                r, email = register(s, timeout=20)
                answers.append((time.monotonic(), r.status_code, email, r.text))
            except requests.RequestException as e:
                answers.append((time.monotonic(), None, None, repr(e)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: sum(a[1] == 200 for a in answers) >= 15, 60), answers[-5:]
        killed_at = time.monotonic()
        second.stop()  # SIGTERM by pid: the preferred node goes away under load
        assert wait_for(lambda: sum(a[1] == 200 and a[0] > killed_at + 0.5
                                    for a in answers) >= 30, 60), s.log()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    statuses = {a[1] for a in answers}
    assert statuses <= {200, 503}, [a for a in answers if a[1] not in (200, 503)]
    # Only the requests in flight at the stop may fail.
    assert sum(a[1] == 503 for a in answers) <= 6, [a for a in answers if a[1] == 503]
    assert all(a[1] == 200 for a in answers[-10:])
    # What was answered 200 after the stop is on the surviving node.
    later = [a[2] for a in answers if a[1] == 200 and a[0] > killed_at + 0.5]
    rows = mariadb.sql("SELECT email FROM users", mariadb.database).stdout.split()
    assert set(later) <= set(rows)
    assert "MariaDB node " + second.socket + " is down" in s.log()
    assert metric(s, "sesame_storage_failovers_total") >= 1
    assert PASSWORD not in s.log()


@pytest.fixture
def silent():
    """A node that accepts TCP connections (the kernel's backlog) and never answers: a host
    whose packets are lost. Its "host:port"; the socket is closed at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)  # never accepted, never read; once the backlog is full, SYNs go unanswered
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_node_that_never_answers_leaves_time_for_the_next(sesamed, mariadb, silent):
    mariadb.sql(f"CREATE DATABASE `{mariadb.database}`")
    s = sesamed(routes=ROUTES, workers=2,
                more=storage(mariadb.database, [silent, mariadb.socket]))
    answers = []

    def load():
        # Long enough to pass several rests of the silent node (1, 2, 4 s): each of its
        # probes must leave time for the healthy node.
        until = time.monotonic() + 8
        while time.monotonic() < until:
            r, email = register(s, timeout=20)
            answers.append((r.status_code, email, r.text))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers and all(a[0] == 200 for a in answers), \
        ([a for a in answers if a[0] != 200][:5], s.log())
    s.wait_log(f"MariaDB node {silent} is down")
    rows = mariadb.sql("SELECT email FROM users", mariadb.database).stdout.split()
    assert {a[1] for a in answers} <= set(rows)
    assert PASSWORD not in s.log()


def check(tmp_path, mariadb_block):
    conf = tmp_path / "sesame.lua"
    conf.write_text(f'server = {{ listen = "127.0.0.1:{free_port()}", user = "root" }}\n'
                    'storage = { backend = "mariadb",\n'
                    f'  mariadb = {mariadb_block} }}\n'
                    f'jwt = {{ secret = "{SECRET}" }}\n'
                    f'plugins = {{ path = "{PLUGINS}" }}\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr, str(conf)


@pytest.mark.parametrize("block,message", [
    ('{ hosts = {} }', "storage.mariadb.hosts: the list is empty: name one node at least"),
    ('{ hosts = { "db:0" } }',
     "storage.mariadb.hosts: item 1: port '0' is not a number from 1 to 65535"),
    ('{ hosts = { "127.0.0.1:3306", "db:70000" } }', "item 2: port '70000'"),
    ('{ hosts = { "::1" } }', "an IPv6 address goes in brackets ([::1]:3306)"),
    ('{ hosts = { "run/mysqld.sock" } }',
     "item 1: 'run/mysqld.sock' is neither a socket (an absolute path) nor host[:port]"),
    ('{ hosts = { "db1", 7 } }', "storage.mariadb.hosts: item 2: expected a string"),
    ('{ hosts = "db1:3306" }', "storage.mariadb.hosts: expected a list of nodes, found string"),
    ('{ hosts = { "db1" }, socket = "/run/mysqld/mysqld.sock" }',
     "storage.mariadb.hosts: hosts and socket are both set"),
    ('{ hosts = { "db1" }, host = "db2" }', "hosts and host are both set"),
    ('{ hosts = { "db1" }, port = 3307 }', "hosts and port are both set"),
])
def test_a_bad_hosts_list_is_refused_with_its_line(tmp_path, block, message):
    code, out, conf = check(tmp_path, block)
    assert code == 1, out
    assert f"{conf}:3: " in out and message in out, out


def test_a_good_hosts_list_passes_the_check(tmp_path):
    code, out, _ = check(tmp_path, '{ hosts = { "127.0.0.1:23306", "[::1]:23307", '
                                   '"/run/mysqld/mysqld.sock", "db3" } }')
    assert code == 0, out
