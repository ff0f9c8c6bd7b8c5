"""Races between the two sesamed nodes and failures under load: a Galera node killed, a
sesamed node killed, the whole cluster stopped and started again. Each test leaves the cluster
whole (the `healthy` fixture heals it afterwards)."""
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import requests

from conftest import SECRET, bearer, new_user, tail, wait_for


def claims(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"])


RETRIED = "a transaction lost a lock conflict"


def conflict_retries(node):
    """sesame_storage_retries_total{reason="conflict"} of a node."""
    for line in node.get("/metrics").text.splitlines():
        if line.startswith('sesame_storage_retries_total{reason="conflict"} '):
            return float(line.split()[1])
    raise AssertionError(f"{node.name} has no sesame_storage_retries_total")


def together(*calls):
    """Runs the calls at the same moment, in threads; their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_refresh_token_on_both_nodes_at_once(healthy):
    s1, s2 = healthy.nodes
    user = new_user()
    assert s1.post("/users/register", json=user).status_code == 200
    before = {n.name: (conflict_retries(n), n.log().count(RETRIED)) for n in (s1, s2)}
    outcomes, forked = {}, []
    for round_ in range(25):
        token = s2.post("/users/login", json=user).json()["refresh_token"]
        a, b = together(lambda: s1.post("/token/refresh", headers=bearer(token)),
                        lambda: s2.post("/token/refresh", headers=bearer(token)))
        key = (a.status_code, b.status_code)
        outcomes[key] = outcomes.get(key, 0) + 1
        assert set(key) <= {200, 401, 503}, (a.text, b.text)
        won = [r for r in (a, b) if r.status_code == 200]
        assert won, f"neither node rotated: {a.text} {b.text}"
        # Never two successors: two answers within refresh_grace carry the same one, the
        # family's current token.
        successors = {claims(r.json()["refresh_token"])["jti"] for r in won}
        if len(successors) > 1:
            # Which of them storage takes as the family's current token.
            live = [(s1, s2)[k % 2].post("/token/refresh", headers=bearer(
                r.json()["refresh_token"])).status_code for k, r in enumerate(won)]
            forked.append((round_, live))
            continue
        for r in (a, b):
            if r.status_code != 200:
                assert r.json()["result"] == "fail", r.text
        # The successor is the family's current token on both nodes.
        nxt = won[0].json()["refresh_token"]
        if 401 not in key:
            r = (s1, s2)[round_ % 2].post("/token/refresh", headers=bearer(nxt))
            assert r.status_code == 200, r.text
    assert sum(outcomes.values()) == 25, outcomes
    # Each lost certification a rotation ran again is counted as it is logged.
    for n in (s1, s2):
        metric, logged = before[n.name]
        assert conflict_retries(n) - metric == n.log().count(RETRIED) - logged, n.name
    assert not forked, f"two successors (round, status of a refresh with each) in {forked} " \
        f"of 25 rounds (outcomes {outcomes})"


def test_a_reused_refresh_token_revokes_the_family_on_both_nodes(healthy):
    s1, s2 = healthy.nodes
    user = new_user()
    pair = s1.post("/users/register", json=user).json()
    r = s1.post("/token/refresh", headers=bearer(pair["refresh_token"]))
    assert r.status_code == 200
    current = r.json()
    time.sleep(2.3)  # past jwt.refresh_grace (2 s): the spent token is a reuse now
    r = s2.post("/token/refresh", headers=bearer(pair["refresh_token"]))
    assert r.status_code == 401 and r.json()["error"] == "token revoked", r.text
    for node in (s1, s2):
        r = node.post("/token/refresh", headers=bearer(current["refresh_token"]))
        assert r.status_code == 401, (node.name, r.text)
    # The family's access tokens too, on every worker of both nodes within the refresh.
    time.sleep(1.3)
    for node in (s1, s2):
        statuses = {node.get("/users/me", headers={**bearer(current["access_token"]),
                                                   "Connection": "close"}).status_code
                    for _ in range(8)}
        assert statuses == {401}, (node.name, statuses)


def metric(node, name):
    """The value of an unlabelled counter on a node's /metrics."""
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{node.name} has no {name}")


class Load:
    """Registrations through HAProxy from several threads; every answer recorded."""

    def __init__(self, cluster, total, threads=6, timeout=20):
        self.cluster = cluster
        self.tag = uuid.uuid4().hex[:8]
        self.total = total
        self.threads = threads
        self.timeout = timeout
        self.answers = []  # (email, status or exception name, X-Node, body)
        self.lock = threading.Lock()
        self.pool = None

    def one(self, i):
        email = f"load-{self.tag}-{i}@example.com"
        user = {"email": email, "username": f"load{i}", "password": "correct horse"}
        try:
            r = requests.post(self.cluster.proxy.url + "/users/register", json=user,
                              timeout=self.timeout)
            answer = (email, r.status_code, r.headers.get("X-Node"), r.text)
        except requests.RequestException as e:
            answer = (email, type(e).__name__, None, str(e))
        with self.lock:
            self.answers.append(answer)

    def start(self):
        self.pool = ThreadPoolExecutor(self.threads)
        self.futures = [self.pool.submit(self.one, i) for i in range(self.total)]
        return self

    def wait_done(self, count):
        assert wait_for(lambda: len(self.answers) >= count, 120), len(self.answers)

    def finish(self):
        for f in self.futures:
            f.result(timeout=300)
        self.pool.shutdown()

    def ok(self):
        return {a[0] for a in self.answers if a[1] == 200}

    def check_answers(self, allowed=(200, 503)):
        """Every request answered 200 or a JSON 503: never a 500, never a hang."""
        bad = [a for a in self.answers if a[1] not in allowed]
        assert not bad, bad[:10]
        for a in self.answers:
            if a[1] == 503:
                assert '"storage unavailable"' in a[3] or '"result":"fail"' in a[3], a
        assert len(self.answers) == self.total

    def stored(self, cluster, node):
        out = cluster.galera.nodes[node].sql(
            f"SELECT email FROM users WHERE email LIKE 'load-{self.tag}-%'",
            cluster.database).stdout
        return set(out.split())


def test_a_galera_node_killed_during_registrations(healthy):
    g = healthy.galera
    load = Load(healthy, 300).start()
    load.wait_done(60)
    victim = g.nodes[0]  # the node s1 prefers
    committed = int(victim.status("wsrep_last_committed"))
    victim.kill()
    load.finish()
    load.check_answers()
    ok = load.ok()
    assert len(ok) > 150, f"only {len(ok)} of 300 registrations succeeded"
    assert {a[2] for a in load.answers if a[1] == 200} == {"s1", "s2"}
    # s1's pools moved to the next node of its hosts.
    assert metric(healthy.node("s1"), "sesame_storage_failovers_total") >= 1
    # Every registration answered 200 is on the surviving nodes.
    for i in (1, 2):
        assert ok <= load.stored(healthy, i), sorted(ok - load.stored(healthy, i))[:10]
    # The killed node comes back by IST (not a full SST) and has them too.
    log_before = len(victim.error_log.read_text(errors="replace"))
    victim.restart_recovered()
    victim.wait_synced()
    rejoin = victim.error_log.read_text(errors="replace")[log_before:]
    assert re.search(r"IST received|Receiving IST", rejoin), rejoin[-3000:]
    assert "Running: 'wsrep_sst_rsync --role 'joiner'" not in rejoin or \
        "IST received" in rejoin, rejoin[-3000:]
    assert int(victim.status("wsrep_last_committed")) > committed
    assert ok <= load.stored(healthy, 0)


def test_a_sesamed_node_killed_during_registrations(healthy):
    load = Load(healthy, 240).start()
    load.wait_done(40)
    victim = healthy.node("s2")
    victim.kill()
    load.finish()
    # A request the dying node had accepted but not read may be lost: HAProxy's 502.
    load.check_answers(allowed=(200, 502, 503))
    ok = load.ok()
    # HAProxy routes around the dead node: connections it refuses are sent to the other.
    failed = [a for a in load.answers if a[1] != 200]
    assert len(failed) <= 6, failed
    for i in range(3):
        assert ok <= load.stored(healthy, i)
    # Started again, it serves.
    victim.start().wait_ready()
    healthy.wait_proxy()
    c = healthy.client()
    user = new_user()
    assert c.post("/users/register", json=user).status_code == 200
    for _ in range(4):
        assert c.post("/users/login", json=user).status_code == 200
    assert c.served() == {"s1", "s2"}


def test_the_whole_cluster_stopped_and_started_again(healthy):
    g = healthy.galera
    before = new_user()
    c = healthy.client()
    assert c.post("/users/register", json=before).status_code == 200
    pids = [n.proc.pid for n in healthy.nodes]
    g.stop_all()
    # While the cluster is gone, each node answers 503 with a JSON body, and /readyz says so.
    no_retry_after = []
    for n in healthy.nodes:
        assert wait_for(lambda: n.get("/readyz").status_code == 503, 15), n.log()[-3000:]
        r = n.post("/users/login", json=before)
        assert r.status_code == 503 and r.json()["result"] == "fail", r.text
        if "Retry-After" not in r.headers:
            no_retry_after.append((n.name, dict(r.headers)))
        r = n.post("/users/register", json=new_user())
        assert r.status_code == 503, r.text
    # HAProxy, with no node ready, says the same.
    assert wait_for(lambda: c.post("/users/login", json=before).status_code == 503 and
                    c.nodes[-1] is None, 10)
    r = c.post("/users/login", json=before)
    assert r.json() == {"result": "fail", "error": "storage unavailable"}, r.text
    assert r.headers["Retry-After"] == "1"
    # Started again from the node that stopped last; the same sesamed processes recover.
    first = g.most_advanced()
    assert first.grastate()[1], tail(first.dir / "data" / "grastate.dat")
    g.start_all()
    for n in healthy.nodes:
        n.wait_ready(60)
    assert [n.proc.pid for n in healthy.nodes] == pids
    healthy.wait_proxy()
    c = healthy.client()
    assert c.post("/users/login", json=before).status_code == 200
    after = new_user()
    assert c.post("/users/register", json=after).status_code == 200
    # Both nodes serve again (HAProxy may give the node back in rotation last a few requests
    # in a row).
    for _ in range(20):
        assert c.post("/users/login", json=after).status_code == 200
        if c.served() == {"s1", "s2"}:
            break
    assert c.served() == {"s1", "s2"}, c.nodes
    assert not no_retry_after, f"503 storage unavailable without Retry-After: {no_retry_after}"
