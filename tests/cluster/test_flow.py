"""The account flow through HAProxy, each step on whichever sesamed node HAProxy picks, and
what one node does seen from the other: revocations, failed log-ins, migrations."""
import time

import jwt
import requests

from conftest import (LOGIN_FAILURES, SECRET, TOP, bearer, check_logs, new_user, start_pair,
                      wait_for)


def claims(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"])


def test_register_login_refresh_logout_on_any_node(healthy):
    c = healthy.client()
    users = [new_user() for _ in range(6)]
    for user in users:
        r = c.post("/users/register", json=user)
        assert r.status_code == 200, r.text
        registered = r.json()
        # Every step of every user, on whichever node HAProxy sends it to.
        r = c.post("/users/login", json={"email": user["email"], "password": user["password"]})
        assert r.status_code == 200, r.text
        pair = r.json()
        r = c.get("/users/me", headers=bearer(pair["access_token"]))
        assert r.status_code == 200 and r.json()["user"]["email"] == user["email"]
        r = c.post("/token/refresh", headers=bearer(pair["refresh_token"]))
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert claims(rotated["refresh_token"])["fam"] == claims(pair["refresh_token"])["fam"]
        r = c.post("/users/logout", headers=bearer(rotated["access_token"]))
        assert r.status_code == 200 and r.json() == {"result": "success"}
        # The family is revoked in storage: its refresh token is refused on any node at once.
        r = c.post("/token/refresh", headers=bearer(rotated["refresh_token"]))
        assert r.status_code == 401, r.text
        # Two more log-ins, then log out everywhere from a third: with the registration's,
        # four sessions live.
        others = [c.post("/users/login", json=user) for _ in range(2)]
        assert [r.status_code for r in others] == [200, 200]
        r = c.post("/users/login", json=user)
        assert r.status_code == 200
        r = c.post("/users/logout/all", headers=bearer(r.json()["access_token"]))
        assert r.status_code == 200 and r.json()["sessions"] == 4, r.text
        for pair in [registered] + [o.json() for o in others]:
            r = c.post("/token/refresh", headers=bearer(pair["refresh_token"]))
            assert r.status_code == 401, r.text
    assert c.served() == {"s1", "s2"}, c.nodes


def test_a_token_revoked_on_one_node_is_refused_by_the_other(healthy):
    c = healthy.client()
    user = new_user()
    assert c.post("/users/register", json=user).status_code == 200
    revokers = set()
    # Log-outs through HAProxy until each node has revoked a token that the other then refuses.
    for _ in range(12):
        token = c.post("/users/login", json=user).json()["access_token"]
        # Three requests a round: with HAProxy's round robin, the log-outs alternate nodes.
        assert c.get("/users/me", headers=bearer(token)).status_code == 200
        r = c.post("/users/logout", headers=bearer(token))
        assert r.status_code == 200
        revoker = r.headers["X-Node"]
        other = next(n for n in healthy.nodes if n.name != revoker)
        began = time.monotonic()
        # jwt.revocation_refresh = 1: every worker of the other node within a second, plus
        # the time a request takes; fresh connections reach both of its workers.
        refused = wait_for(lambda: all(
            other.get("/auth/verify", headers={**bearer(token), "Connection": "close"})
            .status_code == 401 for _ in range(6)), 1.5, 0.02)
        assert refused, f"{other.name} still accepts a token {revoker} revoked " \
            f"{time.monotonic() - began:.2f} s ago"
        revokers.add(revoker)
        if len(revokers) == 2:
            break
    assert revokers == {"s1", "s2"}, c.nodes
    assert c.served() == {"s1", "s2"}


def test_failed_logins_add_up_across_nodes(healthy):
    c = healthy.client()
    user = new_user()
    assert c.post("/users/register", json=user).status_code == 200
    wrong = {"email": user["email"], "password": "not the password"}
    answers = [c.post("/users/login", json=wrong).status_code for _ in range(LOGIN_FAILURES)]
    assert answers == [401] * LOGIN_FAILURES
    assert c.served() == {"s1", "s2"}, c.nodes
    # The account's failures were counted on both nodes together: the next attempt is refused
    # on each node, even with the right password.
    for node in healthy.nodes:
        r = node.post("/users/login", json=user)
        assert r.status_code == 429, (node.name, r.status_code, r.text)
    # Another account is not concerned.
    other = new_user()
    assert healthy.nodes[0].post("/users/register", json=other).status_code == 200
    assert wait_for(lambda: healthy.nodes[0].post("/users/login", json=other).status_code == 200)


def test_registered_on_one_node_logs_in_on_the_other_at_once(healthy):
    """A client's next request may land on the other node: what one node committed, the other
    reads at once (Galera applies a write set on the other nodes after the commit returns; a
    read there must wait for it: wsrep_sync_wait)."""
    s1, s2 = healthy.nodes
    missed = []
    for i in range(60):
        user = new_user()
        first, then = (s1, s2) if i % 2 == 0 else (s2, s1)
        assert first.post("/users/register", json=user).status_code == 200
        r = then.post("/users/login", json=user)
        if r.status_code != 200:
            missed.append((first.name, then.name, r.status_code, r.text))
    assert not missed, missed


def test_two_nodes_starting_at_once_on_an_empty_database(healthy, tmp_path):
    g = healthy.galera
    g.sql("CREATE DATABASE fresh_start")
    nodes = start_pair(g, tmp_path, "fresh_start", names=("f1", "f2"))
    try:
        for n in nodes:
            n.wait_ready()
        user = new_user()
        assert nodes[0].post("/users/register", json=user).status_code == 200
        assert nodes[1].post("/users/login", json=user).status_code == 200
    finally:
        codes = [n.stop() for n in nodes]
    assert codes == [0, 0], [n.log()[-3000:] for n in nodes]
    check_logs(nodes)
    # Each migration applied by one of the two nodes, once, and recorded once.
    names = sorted(p.stem for p in (TOP / "scripts/schema/mariadb").glob("[0-9]*.sql"))
    logs = nodes[0].log() + nodes[1].log()
    assert {name: logs.count(f"applied migration {name}\n") for name in names} == \
        {name: 1 for name in names}, logs[-4000:]
    recorded = g.nodes[2].sql("SELECT version FROM sesame_migrations ORDER BY version",
                              "fresh_start").stdout.split()
    assert recorded == [str(int(name[:3])) for name in names], recorded
    # The schema is whole on every Galera node.
    for n in g.nodes:
        assert n.count("users", "fresh_start") == 1
    g.sql("DROP DATABASE fresh_start")


def test_the_proxy_tells_the_node(healthy):
    r = requests.get(healthy.proxy.url + "/readyz", timeout=5)
    assert r.status_code == 200 and r.headers["X-Node"] in {"s1", "s2"}


def counter(node, name):
    """The value of an unlabelled counter on a node's /metrics."""
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{node.name} has no {name}")


def test_each_node_fetches_revocations_once_per_refresh(healthy):
    # Two workers a node, jwt.revocation_refresh = 1: one fetch a second per node, not one per
    # worker (a bound with room for a fetch that starts at either end of the window).
    before = {n.name: counter(n, "sesame_revocation_fetches_total") for n in healthy.nodes}
    time.sleep(5)
    for n in healthy.nodes:
        fetched = counter(n, "sesame_revocation_fetches_total") - before[n.name]
        assert 3 <= fetched <= 7, (n.name, fetched)
