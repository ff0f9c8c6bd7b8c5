"""Socket activation: sesamed started the way systemd starts it for sesamed.socket.

The test binds the listening sockets itself and starts sesamed through bash, which puts them
at fd 3 onwards and sets LISTEN_FDS and LISTEN_PID (the shell's own pid, which exec keeps),
exactly as systemd's service manager does. server.listen names another port, which must stay
closed: the passed sockets are served instead, by every worker, across a reload.
"""
import concurrent.futures
import fcntl
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, Sesamed, free_port, wait_for

INFO = (Path(__file__).resolve().parents[2] / "etc" / "sesame" / "routes" / "info.lua").read_text()


def listening(family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


def start_activated(s, files, listen_pid="$$"):
    """Starts s's sesamed with files (sockets or files) at fd 3, 4, ... as systemd passes them."""
    first = 3 + len(files)  # the copies bash moves from, above the fds they move to
    high = [fcntl.fcntl(f.fileno(), fcntl.F_DUPFD, first) for f in files]
    moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(high))
    script = f'exec {moves}; LISTEN_PID={listen_pid} LISTEN_FDS={len(files)} exec "$@"'
    s.logf = open(s.log_path, "ab")
    try:
        s.proc = subprocess.Popen(["bash", "-c", script, "bash", SESAMED, "-f", "-c", str(s.config)],
                                  pass_fds=high, stdout=s.logf, stderr=s.logf)
    finally:
        for fd in high:
            os.close(fd)
    return s


def socket_inode(sock):
    return os.fstat(sock.fileno()).st_ino


def holds(pid, inode):
    """Does process pid have the socket of this inode open?"""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd) == f"socket:[{inode}]" for fd in fds.iterdir()
               if fd.is_symlink())


def refused(port):
    with socket.socket() as c:
        return c.connect_ex(("127.0.0.1", port)) != 0


def served_by(s, url, count=48):
    """The worker pids that served count fresh connections to url, from the access log."""
    def one(i):
        r = requests.get(f"{url}/?n={i}", headers={"Connection": "close"}, timeout=10)
        assert r.status_code == 200 and r.json()["service"] == "sesame"
        return r.headers["X-Request-Id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(one, range(count)))
    assert wait_for(lambda: len(access_lines(s, ids)) == len(ids), timeout=10)
    return {line["pid"] for line in access_lines(s, ids)}


def access_lines(s, ids):
    lines = (json.loads(l) for l in s.log().splitlines() if l.startswith("{"))
    return [l for l in lines if l.get("request_id") in ids]


@pytest.fixture
def activated(sesamed):
    """A sesamed of 3 workers serving a socket the test passed; its server.listen stays shut."""
    sock = listening()
    s = sesamed(routes={"info.lua": INFO}, workers=3, start=False)
    configured = s.port
    s.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    start_activated(s, [sock]).wait_ready()
    yield s, sock, configured
    sock.close()


def test_every_worker_serves_the_passed_socket(activated):
    s, sock, configured = activated
    passed = f"127.0.0.1:{sock.getsockname()[1]}"
    assert f"socket activation: serving on the 1 socket systemd passed: {passed}" in s.log()
    assert f"server.listen (127.0.0.1:{configured}) is not what systemd passed" in s.log()
    # Logged once every worker is ready, which may come a little after the first one serves.
    s.wait_log(f"serving on {passed} with 3 workers")
    assert refused(configured)

    workers = s.workers()
    assert len(workers) == 3
    assert all(holds(pid, socket_inode(sock)) for pid in workers)
    # Each connection goes to whichever worker accepts it first: over a few rounds of
    # concurrent ones, more than one worker takes its turn.
    pids = set()
    for _ in range(6):
        pids |= served_by(s, s.url)
        if len(pids) >= 2:
            break
    assert len(pids) >= 2, f"one worker served every connection: {pids}"
    assert pids <= set(workers)


def test_a_reload_keeps_serving_the_passed_socket(activated):
    s, sock, configured = activated
    before = s.workers()
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert wait_for(lambda: not set(before) & set(s.workers()) and len(s.workers()) == 3)
    after = s.workers()
    assert all(holds(pid, socket_inode(sock)) for pid in after)
    assert served_by(s, s.url, count=16) <= set(after)
    assert refused(configured)
    assert holds(s.proc.pid, socket_inode(sock)), "the master keeps it for the next reload"


def test_two_passed_sockets_both_served(sesamed):
    v4, v6 = listening(), listening(socket.AF_INET6, "::1")
    a, b = v4.getsockname()[1], v6.getsockname()[1]
    s = sesamed(routes={"info.lua": INFO}, start=False,
                config=f'listen = {{ "127.0.0.1:{a}", "[::1]:{b}" }},')
    s.url = f"http://127.0.0.1:{a}"
    start_activated(s, [v4, v6]).wait_ready()
    assert f"systemd passed: 127.0.0.1:{a}, [::1]:{b}" in s.log()
    assert "is not what systemd passed" not in s.log(), "server.listen names just these"
    assert served_by(s, s.url, count=8)
    assert served_by(s, f"http://[::1]:{b}", count=8)
    v4.close()
    v6.close()


def test_sockets_for_another_process_are_left_alone(sesamed):
    sock = listening()
    s = sesamed(routes={"info.lua": INFO}, start=False)
    start_activated(s, [sock], listen_pid="1").wait_ready()
    assert "socket activation" not in s.log()
    assert s.get("/").status_code == 200, "it listens on server.listen as usual"
    sock.close()


def refuses(tmp_path, passed, message):
    s = Sesamed(tmp_path, routes={"info.lua": INFO})
    start_activated(s, passed)
    assert s.proc.wait(20) == 1
    assert message in s.log(), s.log()
    assert refused(s.port), "nothing was served"


def test_a_regular_file_is_refused(tmp_path):
    with open(tmp_path / "not-a-socket", "w") as f:
        refuses(tmp_path, [f], "fd 3 is not a listening stream socket")


def test_a_udp_socket_is_refused(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        refuses(tmp_path, [udp], "fd 3 is not a listening stream socket")


def test_a_socket_that_does_not_listen_is_refused(tmp_path):
    with listening() as good, socket.socket() as quiet:
        quiet.bind(("127.0.0.1", 0))
        refuses(tmp_path, [good, quiet], "fd 4 is not a listening stream socket")


def test_a_unix_socket_is_refused(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        unix.bind(str(tmp_path / "http.sock"))
        unix.listen(1)
        refuses(tmp_path, [unix], "fd 3 is not an IPv4 or IPv6 socket")


# sd_listen_fds refuses LISTEN_FDS=0 (systemd never sets it so), and so does a build without
# libsystemd: both builds answer the same environment the same way.
@pytest.mark.parametrize("count", ["many", "0", "-1"])
def test_a_bad_listen_fds_is_refused(tmp_path, count):
    s = Sesamed(tmp_path, routes={"info.lua": INFO})
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen(["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS={count} exec "$@"', "sh",
                               SESAMED, "-f", "-c", str(s.config)],
                              stdout=s.logf, stderr=s.logf)
    assert s.proc.wait(20) == 1
    assert "socket activation: cannot read LISTEN_FDS" in s.log()
    assert refused(s.port)
