"""The revoked token ids fetched once per node: one worker fetches them into the set every
worker shares, the fetching passes to another worker when that one is killed, the set outlives
a reload, and a set too small for the node's revocations loses none of them."""
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import jwt
import requests

from conftest import SESAMED, TOP, wait_for

SESAMECTL = str(Path(SESAMED).parent / "sesamectl")
SECRET = "revocation-node-tests-secret-0123456789!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
USER = {"email": "ann@example.com", "username": "ann", "password": "correct horse"}


def make_app(sesamed, mariadb, jwt_extra="", workers=4):
    more = (mariadb.storage(mariadb.database)
            + f'jwt = {{ secret = "{SECRET}", {jwt_extra} }}\n')
    s = sesamed(routes=ROUTES, more=more, workers=workers)
    assert s.post("/users/register", json=USER).status_code == 200
    return s


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def login(s):
    r = s.post("/users/login", json={"email": USER["email"], "password": USER["password"]})
    assert r.status_code == 200, r.text
    return r.json()


def metric(s, name):
    """A metric without labels, from a scrape on a connection of its own."""
    text = s.get("/metrics", headers={"Connection": "close"}).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def status(s):
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "status", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def fetcher(s):
    """The worker holding the fetching lease (0: none), and the pids of the live workers."""
    doc = status(s)
    return doc["revocation_fetcher"], {w["pid"] for w in doc["workers"]}


def everywhere(s, token, tries=60):
    """Asks GET /auth/verify with token on fresh connections, so that every worker answers
    some; returns the statuses and the pids that answered, from the access log."""
    since = len(s.log().splitlines())
    statuses = [s.get("/auth/verify", headers={**bearer(token), "Connection": "close"})
                .status_code for _ in range(tries)]
    time.sleep(0.2)
    pids = set()
    for line in s.log().splitlines()[since:]:
        if line.startswith("{") and '"path":"/auth/verify"' in line:
            pids.add(json.loads(line)["pid"])
    return statuses, pids


def revoke_with_sesamectl(s, token):
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "token", "revoke"], input=token + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_one_fetch_a_refresh_for_the_whole_node(sesamed, mariadb):
    s = make_app(sesamed, mariadb, "revocation_refresh = 1")
    assert len(s.workers()) == 4
    before = metric(s, "sesame_revocation_fetches_total")
    t0 = time.monotonic()
    time.sleep(5)
    fetches = metric(s, "sesame_revocation_fetches_total") - before
    seconds = time.monotonic() - t0
    # One fetch a second for the node; four workers fetching each would make four.
    assert 3 <= fetches <= 1.5 * seconds, (fetches, seconds)
    # ... and a revocation still reaches every worker within the refresh.
    pair = login(s)
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    time.sleep(1.3)
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401}
    assert pids == set(s.workers()), pids
    other = login(s)
    revoke_with_sesamectl(s, other["access_token"])
    time.sleep(1.3)
    statuses, pids = everywhere(s, other["access_token"])
    assert set(statuses) == {401} and len(pids) == 4


def test_killing_the_fetcher_hands_the_fetching_over(sesamed, mariadb):
    s = make_app(sesamed, mariadb, "revocation_refresh = 0.5")
    holder, workers = fetcher(s)
    assert holder in workers, (holder, workers)
    s.wait_log("revoked ids loaded in")
    subprocess.run(["kill", "-9", str(holder)], check=True)
    # Another worker (one of the survivors or the replacement) fetches within the refresh.
    assert wait_for(lambda: fetcher(s)[0] not in (0, holder), timeout=5)
    new, workers = fetcher(s)
    assert new in workers and new != holder
    before = metric(s, "sesame_revocation_fetches_total")
    time.sleep(2)
    assert metric(s, "sesame_revocation_fetches_total") - before >= 2
    pair = login(s)
    revoke_with_sesamectl(s, pair["access_token"])
    time.sleep(0.8)
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401}
    assert len(pids) == 4, pids
    assert f"worker {holder} (slot" in s.log() and "killed by signal 9" in s.log()


def test_a_revocation_stamped_behind_the_cursor_is_fetched_by_a_full_fetch(sesamed, mariadb):
    # A database node whose clock lags the one the node fetches from stamps its revocations
    # behind the fetch cursor (Galera nodes each have a clock): the incremental fetch misses
    # them, the holder's full fetch (every minute, and when a worker takes the lease over)
    # does not.
    s = make_app(sesamed, mariadb, "revocation_refresh = 0.5")
    s.wait_log("revoked ids loaded in")
    pair = login(s)
    time.sleep(1.5)  # past the full fetch of the worker that took the lease at start
    jti = jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"])["jti"]
    mariadb.sql("INSERT INTO sesame_revoked_tokens (id, revoked_at, expires_at) VALUES "
                f"('{jti}', (UNIX_TIMESTAMP(NOW(3)) - 30) * 1000, UNIX_TIMESTAMP() + 3600)",
                mariadb.database)
    time.sleep(1.5)  # three fetches since the cursor: none of them asks that far back
    statuses, _ = everywhere(s, pair["access_token"], tries=8)
    assert set(statuses) == {200}, statuses
    holder, _ = fetcher(s)
    subprocess.run(["kill", "-9", str(holder)], check=True)
    assert wait_for(lambda: set(everywhere(s, pair["access_token"], tries=8)[0]) == {401},
                    timeout=10)


def test_a_reload_keeps_the_set(sesamed, mariadb):
    # An hour between fetches: only the set the workers share can tell the new ones.
    s = make_app(sesamed, mariadb, "revocation_refresh = 3600")
    pair = login(s)
    assert s.post("/users/logout", headers=bearer(pair["access_token"])).status_code == 200
    # The worker that revoked it files it into the node's set: every worker refuses it now.
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401} and len(pids) == 4
    fetches = metric(s, "sesame_revocation_fetches_total")
    old = fetcher(s)[1]
    seen, stop = [], threading.Event()

    def ask():
        while not stop.is_set():
            try:
                seen.append(s.get("/auth/verify", headers=bearer(pair["access_token"]),
                                  timeout=10).status_code)
            except requests.ConnectionError:
                seen.append("refused")
    asker = threading.Thread(target=ask)
    asker.start()
    try:
        s.signal(signal.SIGHUP)
        s.wait_log("reloaded ")
        assert wait_for(lambda: not (fetcher(s)[1] & old), timeout=20)
        time.sleep(0.5)
    finally:
        stop.set()
        asker.join()
    assert seen and set(seen) == {401}, set(seen)
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401}
    assert len(pids) == 4 and not (pids & old)
    # The new workers found the set: none fetched it again.
    assert metric(s, "sesame_revocation_fetches_total") == fetches
    assert s.log().count("found in the node's set in") >= 4


def test_a_full_set_loses_no_revocation(sesamed, mariadb):
    s = make_app(sesamed, mariadb, "revocation_refresh = 0.2, revocation_capacity = 64",
                 workers=2)
    pair = login(s)
    # More revoked ids than the node's set holds, expiring in a few seconds.
    expires = int(time.time()) + 4
    rows = ", ".join(f"('filler-{i}', ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000), {expires})"
                     for i in range(100))
    mariadb.sql(f"INSERT INTO sesame_revoked_tokens VALUES {rows}", mariadb.database)
    s.wait_log("the node's set of revoked ids is full")
    assert metric(s, "sesame_revocation_overflow_total") >= 1
    # A revocation made meanwhile reaches every worker all the same.
    revoke_with_sesamectl(s, pair["access_token"])
    time.sleep(0.6)
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401} and len(pids) == 2
    # Once the fillers expired, the node's set holds every id again, the worker's own sets go.
    s.wait_log("the node's set holds every revoked id again", timeout=20)
    assert wait_for(lambda: metric(s, "sesame_revoked_ids") < 64, timeout=5)
    statuses, pids = everywhere(s, pair["access_token"])
    assert set(statuses) == {401} and len(pids) == 2
