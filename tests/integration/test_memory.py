"""Memory: thousands of requests over every default route, good and bad, leave no leak (the
sanitizer build's leak check, in master and workers, at stop) and no growth of the workers'
resident memory (any other build)."""
import subprocess
import threading
import uuid
from pathlib import Path

import requests

from conftest import SANITIZED, SESAMED, TOP

SECRET = "memory-tests-secret-0123456789abcdef!!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua", "jwks.lua", "info.lua")}
PASSWORD = "correct horse"
THREADS = 4
# Rounds per thread before the first RSS sample and between the two. The sanitizer build, whose
# RSS is not checked, runs fewer: still about 4,000 requests for the leak check at stop.
WARMUP = 10 if SANITIZED else 40
MEASURED = 30 if SANITIZED else 60
# Allowed growth per worker between the samples. The measured phase sends each worker about
# 3,500 requests; what they leave behind besides a leak is allocator noise (Lua collecting in
# steps, SQLite's page cache filling to its bound, the job threads' malloc arenas): a few
# hundred kilobytes. A leak of half a kilobyte a request goes past the bound; smaller leaks
# are the sanitizer build's to find, by the leak check at stop.
MAX_GROWTH_KB = 1536


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def private_rss_kb(pid):
    """The worker's own resident memory: VmRSS less the pages of the node's shared segment
    (RssShmem) it touched, which belong to the node (its set of revoked ids fills them as ids
    are revoked, up to jwt.revocation_capacity) and are no worker's leak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssShmem"):
            fields[name] = int(rest.split()[0])
    assert "VmRSS" in fields, f"no VmRSS for {pid}"
    return fields["VmRSS"] - fields.get("RssShmem", 0)


def one_round(url, http, failures):
    """Every default route once with good input and several times with bad."""
    def call(method, path, expect, **kw):
        kw.setdefault("timeout", 30)
        r = http.request(method, url + path, **kw)
        if r.status_code not in expect:
            failures.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r

    user = {"email": f"m{uuid.uuid4().hex[:16]}@example.com", "username": "mem",
            "password": PASSWORD}
    r = call("POST", "/users/register", {200}, json=user)
    if r.status_code != 200:
        return
    call("POST", "/users/register", {409}, json=user)
    call("POST", "/users/register", {400}, json={"email": user["email"]})
    call("POST", "/users/register", {400}, data=b'{"email": "x@example.com", ',
         headers={"Content-Type": "application/json"})
    call("POST", "/users/register", {400}, json={**user, "email": "not an address"})
    call("POST", "/users/register", {415}, data=b"email=x", headers={"Content-Type": "text/plain"})
    call("POST", "/users/register", {413}, data=b'{"a":"' + b"x" * 70000 + b'"}',
         headers={"Content-Type": "application/json"})
    tokens = call("POST", "/users/login", {200}, json=user).json()
    call("POST", "/users/login", {401}, json={**user, "password": "wrong password"})
    call("POST", "/users/login", {400}, json={"email": user["email"]})
    access, refresh = tokens.get("access_token", ""), tokens.get("refresh_token", "")
    call("GET", "/users/me", {200}, headers=bearer(access))
    call("GET", "/users/me", {401}, headers=bearer(access[:-4] + "AAAA"))
    call("GET", "/users/me", {401}, headers=bearer("not.a.token"))
    call("GET", "/users/me", {401})
    call("GET", "/auth/verify", {200}, headers=bearer(access))
    call("GET", "/auth/verify", {401}, headers=bearer(refresh))
    call("GET", "/users/me", {400, 413, 431}, headers={"X-Big": "y" * 20000})
    fresh = call("POST", "/token/refresh", {200}, headers=bearer(refresh)).json()
    call("POST", "/token/refresh", {401}, headers=bearer(access))
    call("GET", "/.well-known/jwks.json", {200})
    call("GET", "/healthz", {200})
    call("GET", "/", {200})
    call("GET", "/nowhere", {404})
    call("DELETE", "/healthz", {405})
    call("POST", "/users/logout", {200}, headers=bearer(fresh.get("access_token", "")))
    other = call("POST", "/users/login", {200}, json=user).json().get("access_token", "")
    call("POST", "/users/logout/all", {200}, headers=bearer(other))


def drive(url, rounds):
    """rounds rounds on each of THREADS threads, half on kept-alive connections, half not."""
    failures = []

    def run(keep_alive):
        with requests.Session() as http:
            for _ in range(rounds):
                one_round(url, http if keep_alive else requests, failures)

    threads = [threading.Thread(target=run, args=(i % 2 == 0,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, "\n".join(failures[:20])


def unlimited(s):
    """Turns the rate limits off where this sesamed has them: the mix registers and logs in
    far more often than a client address may."""
    off = "limits = { register = false, login = false, login_failures = false }\n"
    s.write_config(more=s.more + off)
    if subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True).returncode:
        s.write_config(more=s.more[:-len(off)])


def test_many_requests_leak_nothing(sesamed, tmp_path):
    more = (f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "m.db"}" }} }}\n'
            f'jwt = {{ secret = "{SECRET}" }}\n'
            'password = { scheme = "pbkdf2_sha256", pbkdf2_sha256 = { rounds = 29000 } }\n')
    s = sesamed(routes=ROUTES, more=more, workers=2, start=False)
    unlimited(s)
    s.start()
    workers = s.workers()
    assert len(workers) == 2

    drive(s.url, WARMUP)
    before = {pid: private_rss_kb(pid) for pid in workers}
    drive(s.url, MEASURED)
    after = {pid: private_rss_kb(pid) for pid in workers}
    assert s.workers() == workers, "a worker was replaced:\n" + s.log()

    growth = {pid: after[pid] - before[pid] for pid in workers}
    print(f"\nPrivate RSS kB before {before}, after {after}, growth {growth}")
    if not SANITIZED:
        # The sanitizer build keeps freed memory in quarantine: its RSS says nothing.
        assert max(growth.values()) < MAX_GROWTH_KB, (before, after)

    # Stopped here rather than by the fixture, to say what a clean stop means: exit 0, every
    # worker too, and (on the sanitizer build) no leak or error report from any process.
    assert s.stop() == 0, s.log()
    log = s.log()
    assert "exited with status" not in log and "killed by" not in log, log
    for report in ("ERROR: LeakSanitizer", "ERROR: AddressSanitizer", "runtime error:"):
        assert report not in log, log
    assert log.count("stopped") >= 1, log
