"""The cluster harness: a 3-node MariaDB Galera cluster on loopback, two sesamed nodes on it,
and HAProxy in front of them, started once for the session and stopped by pid at its end.

Run it alone from the top of the tree (as root: the Galera nodes drop to the `mysql` user):
    cd tests/cluster && SESAMED=$PWD/../../build/sesamed /usr/bin/python3 -m pytest -q \\
        -p no:cacheprovider
How it works:
- Galera: node 1 gets a fresh data folder (mariadb-install-db) and bootstraps the cluster
  (--wsrep-new-cluster); nodes 2 and 3 join with empty folders and receive the data by rsync
  SST. Each node has its own my.cnf and its own MySQL, gcomm, IST and SST ports from a fixed
  block below 32768 (checked free first). A node is ready when it says `Synced` and sees a
  cluster of 3: its socket accepts connections long before that. The data folders live in a
  folder of their own under /tmp (pytest's is private to root, and rsync SST cannot run as
  root), removed at the end; the nodes' error logs are copied into pytest's folder first.
- sesamed: two nodes with the default routes, 2 workers each, storage.migrate on (both
  started at once), jwt.revocation_refresh = 1 and one HS256 secret; each lists its own
  Galera node first in storage.mariadb.hosts, then the others.
- HAProxy: round robin over the two sesamed nodes, /readyz health checks every 500 ms, and the
  name of the node that answered in the X-Node header of every answer.
A test that breaks something (kills a node, stops the cluster) puts it back in its finalizer,
so the order of the tests does not matter. Nothing is ever skipped: a cluster that cannot
start (a port taken, a package missing) fails every test with the reason.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

TOP = Path(__file__).resolve().parents[2]
SESAMED = os.environ.get("SESAMED", str(TOP / "build" / "sesamed"))
PLUGINS = Path(SESAMED).parent / "plugins"
ROUTES = TOP / "etc" / "sesame" / "routes"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SECRET = "cluster-tests-secret-0123456789abcdef!"
DB_USER, DB_PASSWORD = "sesame", "cluster-test-password"
# The port block: node i (1..3) has MySQL 23300+i, gcomm 24560+i, IST 24570+i, SST 24580+i.
MYSQL_BASE, GCOMM_BASE, IST_BASE, SST_BASE = 23300, 24560, 24570, 24580
NODES = 3
LOGIN_FAILURES = 6  # limits.login_failures per account per hour


def wait_for(predicate, timeout=15, step=0.1):
    """Polls predicate until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def stop_pid(proc, sig=signal.SIGTERM, timeout=60):
    """Stops a process the harness started, by its pid: sig, then KILL after timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path, lines=60):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


MYCNF = """# Galera node {i} of the sesame cluster tests.
[mysqld]
datadir = {dir}/data
socket = {dir}/mysqld.sock
pid-file = {dir}/mysqld.pid
log-error = {dir}/error.log
user = mysql
bind-address = 127.0.0.1
port = {mysql}
skip-name-resolve
# Galera needs row-based replication, InnoDB and interleaved auto-increment locks.
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_flush_log_at_trx_commit = 2
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
max_connections = 200
wsrep_on = ON
wsrep_provider = {provider}
wsrep_cluster_name = sesame_test
wsrep_cluster_address = gcomm://{members}
wsrep_node_name = node{i}
wsrep_node_address = 127.0.0.1:{gcomm}
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:{gcomm}; ist.recv_addr=127.0.0.1:{ist}; gcache.size=64M"
# A read waits until the node has applied every write set committed before it anywhere: a
# log-in right after a registration on another node finds the user.
wsrep_sync_wait = 1
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:{sst}
"""


class GaleraNode:
    """One Galera node: its folder, my.cnf and ports; the mariadbd process, by pid."""

    def __init__(self, root, i):
        self.i = i
        self.name = f"node{i}"
        self.dir = root / self.name
        self.port = MYSQL_BASE + i
        self.ports = (self.port, GCOMM_BASE + i, IST_BASE + i, SST_BASE + i)
        self.socket = str(self.dir / "mysqld.sock")
        self.cnf = self.dir / "my.cnf"
        self.error_log = self.dir / "error.log"
        self.proc = None
        (self.dir / "data").mkdir(parents=True)
        members = ",".join(f"127.0.0.1:{GCOMM_BASE + n}" for n in range(1, NODES + 1))
        self.cnf.write_text(MYCNF.format(i=i, dir=self.dir, mysql=self.port, provider=PROVIDER,
                                         members=members, gcomm=GCOMM_BASE + i,
                                         ist=IST_BASE + i, sst=SST_BASE + i))
        shutil.chown(self.dir, "mysql", "mysql")
        shutil.chown(self.dir / "data", "mysql", "mysql")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def install(self):
        r = subprocess.run(["mariadb-install-db", f"--defaults-file={self.cnf}",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"mariadb-install-db failed:\n{r.stdout}{r.stderr}"

    def start(self, *extra):
        assert not self.alive(), f"{self.name} runs already"
        self.proc = subprocess.Popen(["mariadbd", f"--defaults-file={self.cnf}", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def recover(self):
        """--wsrep-recover: the position InnoDB holds, after a kill left grastate's at -1."""
        log = self.dir / "recover.log"
        log.unlink(missing_ok=True)
        r = subprocess.run(["mariadbd", f"--defaults-file={self.cnf}", "--wsrep-recover",
                            f"--log-error={log}"], capture_output=True, text=True, timeout=120)
        found = re.findall(r"Recovered position: (\S+:-?\d+)", tail(log, 200))
        assert r.returncode == 0 and found, f"{self.name}: --wsrep-recover failed:\n{tail(log)}"
        return found[-1]

    def restart_recovered(self):
        """Starts a node that was killed: recover its position first, so that it rejoins by
        IST (a plain start would ask for a full SST)."""
        self.start(f"--wsrep-start-position={self.recover()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout=120):
        stop_pid(self.proc, timeout=timeout)

    def sql(self, statement, database=None, check=True, timeout=30):
        args = ["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", "-N", "-B",
                "--connect-timeout=5", "-e", statement]
        if database:
            args.append(database)
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{self.name}: {statement}: {r.stderr}"
        return r

    def status(self, name):
        r = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'", check=False, timeout=10)
        return r.stdout.split("\t")[1].strip() if r.returncode == 0 and "\t" in r.stdout else None

    def synced(self, size=NODES):
        return (self.status("wsrep_local_state_comment") == "Synced" and
                self.status("wsrep_cluster_size") == str(size) and
                self.status("wsrep_ready") == "ON")

    def wait_synced(self, size=NODES, timeout=120):
        def ready():
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{tail(self.error_log)}")
            return self.synced(size)
        if not wait_for(ready, timeout, 0.25):
            raise AssertionError(f"{self.name} is not Synced in a cluster of {size} after "
                                 f"{timeout} s:\n{tail(self.error_log)}")

    def grastate(self):
        text = (self.dir / "data" / "grastate.dat").read_text()
        seqno = int(re.search(r"^seqno:\s*(-?\d+)", text, re.M).group(1))
        safe = re.search(r"^safe_to_bootstrap:\s*(\d)", text, re.M)
        return seqno, bool(safe and safe.group(1) == "1")

    def count(self, table, database, where="1"):
        out = self.sql(f"SELECT COUNT(*) FROM `{table}` WHERE {where}", database).stdout
        return int(out.strip())


class Galera:
    """The three nodes, and what a test does to them as a whole."""

    def __init__(self, root):
        self.root = root
        taken = [p for i in range(1, NODES + 1)
                 for p in (MYSQL_BASE + i, GCOMM_BASE + i, IST_BASE + i, SST_BASE + i)
                 if port_taken(p)]
        if taken:
            raise RuntimeError(f"the cluster's ports {taken} are taken on 127.0.0.1: "
                               "something else runs there (a cluster left by another run?)")
        needs = {"galera-4": PROVIDER, "rsync": shutil.which("rsync"),
                 "mariadb-server": shutil.which("mariadbd") or "/usr/sbin/mariadbd"}
        missing = [pkg for pkg, path in needs.items() if not path or not os.path.exists(path)]
        if missing:
            raise RuntimeError(f"the cluster needs {', '.join(missing)} (scripts/dev installs "
                               "what is missing)")
        if os.geteuid() != 0:
            raise RuntimeError("the cluster tests run as root: each Galera node starts as root "
                               "and drops to the mysql user, which owns its folder")
        self.nodes = [GaleraNode(root, i) for i in range(1, NODES + 1)]

    def bootstrap(self):
        first = self.nodes[0]
        first.install()
        first.start("--wsrep-new-cluster")
        first.wait_synced(size=1)
        first.sql(f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
                  f"GRANT ALL ON *.* TO '{DB_USER}'@'127.0.0.1'")
        # One joiner at a time: each gets its SST from a donor that is Synced.
        for n in self.nodes[1:]:
            n.start()
            n.wait_synced(size=n.i)
        self.wait_healthy()

    def wait_healthy(self, timeout=120):
        for n in self.nodes:
            n.wait_synced(timeout=timeout)

    def heal(self):
        """Restarts every node that is not running (by IST) and waits for all to be Synced;
        with none running, starts the cluster again."""
        if not any(n.alive() for n in self.nodes):
            self.start_all()
            return
        for n in self.nodes:
            if not n.alive():
                n.restart_recovered()
        self.wait_healthy()

    def stop_all(self):
        """Stops every node with SIGTERM, one after the other, as an operator's shutdown does."""
        for n in self.nodes:
            n.stop()

    def most_advanced(self):
        """The node to bootstrap from: safe_to_bootstrap (the last one to leave), else the
        highest seqno."""
        states = [(n.grastate(), n) for n in self.nodes]
        safe = [n for (seqno, ok), n in states if ok]
        return safe[0] if safe else max(states, key=lambda s: s[0][0])[1]

    def start_all(self):
        """Starts the whole cluster again from the node that stopped last."""
        first = self.most_advanced()
        first.start("--wsrep-new-cluster")
        first.wait_synced(size=1)
        for n in self.nodes:
            if n is not first:
                n.start()
        self.wait_healthy()

    def stop(self):
        for n in self.nodes:
            n.stop(timeout=60)

    def sql(self, statement, database=None):
        return self.nodes[0].sql(statement, database)

    def hosts(self, own):
        """Every node's address, the own node's first."""
        order = [self.nodes[own]] + [n for n in self.nodes if n is not self.nodes[own]]
        return [f"127.0.0.1:{n.port}" for n in order]


def storage_table(galera, own, database):
    """sesame.lua's storage for sesamed node `own` (0, 1): every Galera node, its own first."""
    hosts = ", ".join(f'"{h}"' for h in galera.hosts(own % NODES))
    return (f'storage = {{ backend = "mariadb", migrate = true, '
            f'mariadb = {{ hosts = {{ {hosts} }}, user = "{DB_USER}", '
            f'password = "{DB_PASSWORD}", database = "{database}", '
            'connect_timeout = 2, read_timeout = 10, write_timeout = 10 } }\n')


class Sesamed:
    """One sesamed node on the cluster: its folder, configuration, port and log."""

    def __init__(self, folder, name, galera, own, database, extra=""):
        self.dir = folder
        self.name = name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "sesame.lua"
        self.log_path = folder / "sesamed.log"
        self.proc = None
        self.config.write_text(
            f'server = {{ listen = "127.0.0.1:{self.port}", workers = 2, user = "root", '
            'control = "control.sock", shutdown_timeout = 10, trusted_proxies = { "127.0.0.1" } }\n'
            f'plugins = {{ path = "{PLUGINS}" }}\n'
            f'jwt = {{ secret = "{SECRET}", revocation_refresh = 1 }}\n'
            + storage_table(galera, own, database) +
            'limits = { register = false, login = false, '
            f'login_failures = "{LOGIN_FAILURES}/hour" }}\n'
            f'routes = {{ "{ROUTES}/*.lua" }}\n' + extra)

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SESAMED, "-f", "-c", str(self.config)],
                                     stdout=self.logf, stderr=self.logf)
        return self

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{self.log()[-4000:]}")
            try:
                return requests.get(self.url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        if not wait_for(ready, timeout, 0.1):
            raise AssertionError(f"{self.name} is not ready after {timeout} s:\n"
                                 f"{self.log()[-4000:]}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=30):
        stop_pid(self.proc, timeout=timeout)
        if getattr(self, "logf", None):
            self.logf.close()
        return self.proc.returncode if self.proc else None

    def workers(self):
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            pids.extend(int(p) for p in (task / "children").read_text().split())
        return pids

    def kill(self):
        """kill -9 of the master; its workers get SIGTERM from the kernel (their parent-death
        signal) and leave once their requests are answered."""
        workers = self.workers()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

        def gone():
            return all(not Path(f"/proc/{p}").exists() or
                       Path(f"/proc/{p}/stat").read_text().split(")")[1].split()[0] == "Z"
                       for p in workers)
        assert wait_for(gone, 30), f"{self.name}'s workers {workers} outlive their master"

    def get(self, path, **kw):
        kw.setdefault("timeout", 15)
        return requests.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 15)
        return requests.post(self.url + path, **kw)


HAPROXY_CFG = """# HAProxy in front of the cluster tests' sesamed nodes.
global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A node busy hashing answers its check late: late is not down.
    timeout check 3s
    # A connection that failed is tried again, on another node: a request that reached a
    # node is never sent twice (retry-on conn-failure is the default).
    retries 2
    option redispatch 1
frontend sesame
    bind 127.0.0.1:{port}
    default_backend sesamed
backend sesamed
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
    # Which node answered, for the tests.
    http-response set-header X-Node %s
    # No node ready (the storage is gone): HAProxy's own 503, in JSON as sesamed's are.
    http-error status 503 content-type application/json hdr Retry-After 1 string "{{\\"result\\":\\"fail\\",\\"error\\":\\"storage unavailable\\"}}"
{servers}
"""


class HAProxy:
    def __init__(self, folder, nodes):
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cfg = folder / "haproxy.cfg"
        self.log_path = folder / "haproxy.log"
        servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.port}" for n in nodes)
        self.cfg.write_text(HAPROXY_CFG.format(port=self.port, servers=servers))
        self.exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.proc = None

    def start(self):
        if not os.path.exists(self.exe):
            raise RuntimeError("haproxy is not installed (scripts/dev installs it)")
        check = subprocess.run([self.exe, "-c", "-f", str(self.cfg)], capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.exe, "-db", "-f", str(self.cfg)],
                                     stdout=self.logf, stderr=self.logf)
        return self

    def stop(self):
        stop_pid(self.proc, timeout=15)
        self.logf.close()


class Client:
    """Requests through HAProxy; remembers which node answered each (X-Node)."""

    def __init__(self, url):
        self.url = url
        self.nodes = []
        self.lock = threading.Lock()

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 15)
        r = requests.request(method, self.url + path, **kw)
        with self.lock:
            self.nodes.append(r.headers.get("X-Node"))
        return r

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def served(self):
        return {n for n in self.nodes if n}


def new_user():
    tag = uuid.uuid4().hex[:12]
    return {"email": f"u{tag}@example.com", "username": f"u{tag}", "password": "correct horse"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Cluster:
    """The whole harness, as the tests see it."""

    def __init__(self, galera, nodes, proxy, database):
        self.galera = galera
        self.nodes = nodes
        self.proxy = proxy
        self.database = database

    def client(self):
        return Client(self.proxy.url)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def wait_proxy(self, timeout=30):
        """Until HAProxy sends requests to every sesamed node (its checks saw them ready)."""
        c = self.client()

        def both():
            try:
                c.get("/healthz", timeout=2)
            except requests.RequestException:
                return False
            return c.served() == {n.name for n in self.nodes}
        assert wait_for(both, timeout, 0.1), f"HAProxy does not use both nodes:\n" \
            f"{tail(self.proxy.log_path)}"

    def heal(self):
        """Every Galera node Synced, every sesamed node running and ready, HAProxy on both."""
        self.galera.heal()
        for n in self.nodes:
            if not n.alive():
                n.start()
        for n in self.nodes:
            n.wait_ready()
        self.wait_proxy()

    def rows(self, node, table, where="1"):
        return self.galera.nodes[node].count(table, self.database, where)


def check_logs(nodes):
    for n in nodes:
        log = n.log()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert bad not in log, f"{n.name}:\n{log[-4000:]}"


@pytest.fixture(scope="session")
def galera(tmp_path_factory):
    logs = tmp_path_factory.mktemp("galera")
    root = Path(tempfile.mkdtemp(prefix="sesame-galera-"))
    root.chmod(0o755)
    g = None
    try:
        g = Galera(root)
        g.bootstrap()
        yield g
    finally:
        if g is not None:
            g.stop()
            for n in g.nodes:
                if n.error_log.exists():
                    shutil.copy(n.error_log, logs / f"{n.name}.err")
            left = [n.proc.pid for n in g.nodes if n.alive()]
            assert not left, f"Galera nodes still running: {left}"
        shutil.rmtree(root, ignore_errors=True)


def start_pair(galera, folder, database, names=("s1", "s2"), extra=""):
    """Two sesamed nodes on database, started at once (their migrations race)."""
    nodes = [Sesamed(folder / name, name, galera, i, database, extra)
             for i, name in enumerate(names)]
    for n in nodes:
        n.start()
    return nodes


@pytest.fixture(scope="session")
def cluster(galera, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nodes")
    galera.sql("CREATE DATABASE sesame")
    nodes = start_pair(galera, folder, "sesame")
    proxy = None
    try:
        for n in nodes:
            n.wait_ready()
        proxy = HAProxy(folder / "haproxy", nodes).start()
        c = Cluster(galera, nodes, proxy, "sesame")
        c.wait_proxy()
        yield c
    finally:
        if proxy is not None:
            proxy.stop()
        codes = {n.name: n.stop() for n in nodes}
        left = [n.proc.pid for n in nodes if n.alive()] + \
            ([proxy.proc.pid] if proxy is not None and proxy.proc.poll() is None else [])
        assert not left, f"still running: {left}"
        check_logs(nodes)
        assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
def healthy(cluster):
    """The cluster, whole and serving; put back so after the test, whatever it broke."""
    cluster.heal()
    yield cluster
    cluster.heal()
