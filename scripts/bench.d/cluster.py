"""cluster.py: the cluster that scripts/bench's `cluster` group measures, started with the
cluster tests' own harness (tests/cluster/conftest.py): three Galera nodes on loopback, two
sesamed nodes on them (SESAMED, the bench's build) and HAProxy in front.

    SESAMED=build-bench/sesamed python3 cluster.py FOLDER LUA
starts it all (the Galera data folders under /tmp, where the `mysql` user reaches them; the
rest in FOLDER), appends LUA to each sesamed node's configuration (the bench's limits and
log settings), writes the first Galera node's socket to FOLDER/socket and HAProxy's URL to
FOLDER/url once both nodes serve through it, and stops everything it started, by pid, on
SIGTERM or SIGINT. The chain of refreshes that
measures a refresh's latency is here too:

    python3 cluster.py refresh URL N     prints the mean ms of N refreshes in a row
"""
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "cluster"))
import conftest  # noqa: E402  (the harness, with its port block and its process handling)


def refresh_ms(url, n):
    tag = uuid.uuid4().hex[:8]
    user = {"email": f"chain-{tag}@example.com", "username": f"chain{tag}",
            "password": "bench password"}
    r = requests.post(url + "/users/register", json=user, timeout=30)
    r.raise_for_status()
    token = r.json()["refresh_token"]
    with requests.Session() as s:
        began = time.monotonic()
        for _ in range(n):
            r = s.post(url + "/token/refresh", headers={"Authorization": f"Bearer {token}"},
                       timeout=30)
            r.raise_for_status()
            token = r.json()["refresh_token"]
        return (time.monotonic() - began) * 1000 / n


def serve(folder, extra):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    galera = nodes = proxy = None
    root = Path(tempfile.mkdtemp(prefix="sesame-galera-"))
    root.chmod(0o755)
    try:
        galera = conftest.Galera(root)
        galera.bootstrap()
        galera.sql("CREATE DATABASE sesame")
        # One after the other: the bench measures serving, not migrations racing.
        nodes = [conftest.Sesamed(folder / name, name, galera, i, "sesame", extra)
                 for i, name in enumerate(("s1", "s2"))]
        for n in nodes:
            n.start().wait_ready()
        proxy = conftest.HAProxy(folder / "haproxy", nodes).start()
        conftest.Cluster(galera, nodes, proxy, "sesame").wait_proxy()
        (folder / "socket").write_text(galera.nodes[0].socket + "\n")
        (folder / "url").write_text(proxy.url + "\n")
        while not stop:
            time.sleep(0.2)
    finally:
        if proxy is not None:
            proxy.stop()
        for n in nodes or []:
            n.stop()
        if galera is not None:
            galera.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "refresh":
        print(f"{refresh_ms(sys.argv[2], int(sys.argv[3])):.2f}")
    else:
        serve(Path(sys.argv[1]), sys.argv[2])
