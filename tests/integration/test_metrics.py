"""GET /metrics: counters that move with what happens, summed over every worker through the
shared segment; who may read them (server.metrics); /readyz and the worker set; a real
Prometheus that scrapes sesamed and answers PromQL; the Grafana dashboard's queries."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import requests

from conftest import TOP, free_port, wait_for
from test_process import WAIT, feed_fd, start_waiting, wait_reader

SECRET = "metrics-tests-secret-0123456789abcdef!!"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
SQLITE = 'storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
JWT = f'jwt = {{ secret = "{SECRET}" }}\n'
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DASHBOARD = TOP / "etc/grafana/sesame.json"
PASSWORD = "correct horse"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse(text):
    """A strict reading of the text exposition format: every family declared once with HELP
    and TYPE before its samples, every series once, histograms cumulative with a +Inf bucket
    equal to their _count. Returns ({(name, labels): value}, {family: type})."""
    assert text.endswith("\n")
    samples, types, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, line
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in TYPES and name in helps and name not in types, line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(5)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE"
        assert name.startswith("sesame_"), name
        key = (name, tuple(sorted(re.findall(LABEL, labels))))
        assert key not in samples, f"series twice: {line}"
        samples[key] = float(value)
    for key, value in samples.items():
        if key[0].endswith("_count") and types.get(key[0][:-6]) == "histogram":
            check_histogram(samples, key[0][:-6], key[1], value)
    return samples, types


def check_histogram(samples, family, labels, count):
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == family + "_bucket"
                     and tuple(p for p in k[1] if p[0] != "le") == labels)
    assert buckets and math.isinf(buckets[-1][0]), (family, labels)
    values = [v for _, v in buckets]
    assert values == sorted(values), (family, labels, values)
    assert values[-1] == count, (family, labels)
    assert (family + "_sum", labels) in samples


def scrape(s, **kw):
    r = s.get("/metrics", headers={"Connection": "close"}, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    return parse(r.text)[0]


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """The sum of every series of name whose labels include labels."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def fresh(s, method, path, **kw):
    """A request on a connection of its own: the kernel spreads them over the workers."""
    headers = {"Connection": "close", **kw.pop("headers", {})}
    return requests.request(method, s.url + path, headers=headers, timeout=30, **kw)


def app(sesamed, config="", limits="", workers=2, routes=None):
    more = SQLITE + JWT + (f"limits = {{ {limits} }}\n" if limits else "")
    return sesamed(config, routes=routes or ROUTES, more=more, workers=workers)


def register(s, n):
    body = {"email": f"user{n}@example.com", "username": f"user{n}", "password": PASSWORD}
    return fresh(s, "POST", "/users/register", json=body)


def login(s, n, password=PASSWORD):
    body = {"email": f"user{n}@example.com", "password": password}
    return fresh(s, "POST", "/users/login", json=body)


# ---- counters ----

def test_counters_sum_over_every_worker(sesamed):
    s = app(sesamed, limits='register = "8/minute", login = "100000/second", '
                            'login_failures = "100000/second"')
    before = scrape(s)
    statuses = [register(s, n) for n in range(10)]
    assert [r.status_code for r in statuses].count(200) == 8
    # Request ids start with a prefix of the worker's own: both workers answered some.
    assert len({r.headers["X-Request-Id"][:8] for r in statuses}) == 2
    answers = [login(s, n).status_code for n in range(3)]
    answers += [login(s, n, "wrong horse").status_code for n in range(2)]
    answers.append(fresh(s, "POST", "/users/login", json={"email": "user1@example.com"})
                   .status_code)
    assert answers == [200, 200, 200, 401, 401, 400]
    access = login(s, 4).json()["access_token"]
    assert fresh(s, "POST", "/users/logout",
                 headers={"Authorization": f"Bearer {access}"}).status_code == 200
    access = login(s, 5).json()["access_token"]
    assert fresh(s, "POST", "/users/logout/all",
                 headers={"Authorization": f"Bearer {access}"}).json()["sessions"] >= 1
    for _ in range(7):
        assert fresh(s, "GET", "/nowhere").status_code == 404
    after = scrape(s)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    route = "/users/register"
    assert moved("sesame_http_requests_total", route=route, method="POST", status="200") == 8
    assert moved("sesame_http_requests_total", route=route, method="POST", status="429") == 2
    assert moved("sesame_http_request_duration_seconds_count", route=route) == 10
    assert moved("sesame_rate_limited_total", rule="register") == 2
    assert moved("sesame_http_requests_total", route="/users/login", status="200") == 5
    assert moved("sesame_http_requests_total", route="/users/login", status="401") == 2
    assert moved("sesame_http_requests_total", route="(unmatched)", status="404") == 7
    assert moved("sesame_logins_total", outcome="success") == 5
    assert moved("sesame_logins_total", outcome="invalid") == 2
    assert moved("sesame_logins_total", outcome="malformed") == 1
    # /users/logout/all revokes every family, then the calling token as /users/logout does.
    assert moved("sesame_revocations_total", op="revoke") == 2
    assert moved("sesame_revocations_total", op="revoke_all") == 1
    assert moved("sesame_storage_calls_total", op="user_create", result="ok") == 8
    assert moved("sesame_password_hash_duration_seconds_count", op="hash") == 8
    assert moved("sesame_password_hash_duration_seconds_count", op="verify") == 7
    # Hashing takes time: the histogram's sum says how much, in seconds.
    assert 0 < moved("sesame_password_hash_duration_seconds_sum", op="hash") < 8 * 30
    # Every answer is counted, and observed once in its route's histogram.
    for name in {dict(k[1])["route"] for k in after if k[0] == "sesame_http_requests_total"}:
        if name != "/metrics":
            assert (total(after, "sesame_http_requests_total", route=name) ==
                    total(after, "sesame_http_request_duration_seconds_count", route=name)), name
    assert value(after, "sesame_workers", state="serving") == 2
    assert value(after, "sesame_workers_configured") == 2
    assert value(after, "sesame_generation") == 1
    assert value(after, "sesame_jobs_queued") == 0
    assert abs(value(after, "sesame_start_time_seconds") - time.time()) < 600
    assert value(after, "sesame_build_info", version="0.1.0") == 1


def test_exact_totals_whichever_worker_answers(sesamed):
    s = app(sesamed, workers=3)
    before = scrape(s)
    prefixes = {fresh(s, "GET", "/healthz").headers["X-Request-Id"][:8] for _ in range(60)}
    assert len(prefixes) >= 2
    for _ in range(6):
        after = scrape(s)
        assert total(after, "sesame_http_requests_total", route="/healthz") - total(
            before, "sesame_http_requests_total", route="/healthz") == 60


def test_queue_depth_and_sheds(sesamed):
    s = sesamed("threads = 1, queue = 1,", routes=WAIT, workers=1)
    running, extra = s.dir / "running", s.dir / "extra"  # below the config folder
    os.mkfifo(running)
    os.mkfifo(extra)
    t1, r1 = start_waiting(s, running)
    writer = wait_reader(running)
    held = scrape(s)
    assert value(held, "sesame_jobs_queued") == 1
    r = s.get("/wait", params={"fifo": str(extra)})
    assert r.status_code == 503 and r.json()["error"] == "server busy"
    feed_fd(writer, "done")
    t1.join()
    assert r1["r"].status_code == 200
    after = scrape(s)
    assert value(after, "sesame_jobs_shed_total") == 1
    assert value(after, "sesame_jobs_queued") == 0
    assert value(after, "sesame_http_requests_total", route="/wait", method="GET",
                 status="503") == 1


def test_only_declared_counters_count_from_lua(sesamed):
    route = """
local sesame = require "sesame"
sesame.route("GET", "/count/:name/:value", function(req)
  sesame.metrics.count(req.params.name, req.params.value)
  return 200, { result = "success" }
end)
"""
    s = sesamed("debug = true,", routes={"count.lua": route})
    assert s.get("/count/logins/locked").status_code == 200
    r = s.get("/count/logins/guessed")
    assert r.status_code == 500 and "has no value 'guessed'" in r.json()["detail"]
    r = s.get("/count/signups/success")
    assert r.status_code == 500 and "no counter 'signups'" in r.json()["detail"]
    samples = scrape(s)
    assert value(samples, "sesame_logins_total", outcome="locked") == 1
    assert not [k for k in samples if "signups" in k[0] or "guessed" in str(k[1])]
    # A parameterised route counts under its pattern, not its paths.
    assert total(samples, "sesame_http_requests_total", route="/count/:name/:value") == 3


# ---- who may read them ----

def test_metrics_answer_only_allowed_peers(sesamed):
    s = sesamed()
    r = s.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE
    assert s.post("/metrics").status_code == 405
    elsewhere = sesamed('metrics = { allow = { "10.0.0.0/8", "2001:db8::/32" } },')
    # The peer is 127.0.0.1; an X-Forwarded-For naming an allowed address changes nothing.
    for headers in ({}, {"X-Forwarded-For": "10.1.2.3"}):
        r = elsewhere.get("/metrics", headers=headers)
        assert r.status_code == 404, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.json() == {"result": "fail", "error": "not found"}
    off = sesamed("metrics = false,")
    assert off.get("/metrics").status_code == 404
    assert scrape(sesamed('metrics = { allow = "127.0.0.1" },'))


def test_metrics_setting_is_checked(sesamed, tmp_path):
    s = sesamed('metrics = { allow = { "not an address" }, alow = 1 },', start=False)
    check = subprocess.run([os.environ.get("SESAMED", str(TOP / "build/sesamed")), "-t", "-c",
                            str(s.config)], capture_output=True, text=True)
    assert check.returncode == 1
    assert "server.metrics.allow: not an address: expected an IPv4 or IPv6" in check.stderr
    assert "server.metrics.alow: unknown key (did you mean 'allow'?)" in check.stderr


# ---- /readyz and the worker set ----

def test_readyz_503_until_the_worker_set_is_complete(sesamed):
    s = sesamed('access_log = "logs/access.log",', workers=2, start=False)
    (s.dir / "logs").mkdir()
    s.start()
    assert s.get("/readyz").status_code == 200
    # A worker's replacement cannot open the access log while its folder is away: it exits at
    # start, again and again, and its respawns back off. The other worker serves meanwhile.
    (s.dir / "logs").rename(s.dir / "logs.away")
    victim = s.workers()[0]
    os.kill(victim, signal.SIGKILL)
    s.wait_log("respawning in")
    answers = []
    deadline = time.monotonic() + 30
    while len(answers) < 3 and time.monotonic() < deadline:
        try:
            r = fresh_short(s, "/readyz")
        except requests.RequestException:
            continue  # the missing worker's socket: its connections wait for a worker
        answers.append((r.status_code, r.json()))
    assert len(answers) == 3, s.log()
    assert answers == [(503, {"result": "fail", "error": "worker set incomplete"})] * 3
    samples = scrape_short(s)
    assert value(samples, "sesame_workers", state="serving") == 1
    assert value(samples, "sesame_worker_restarts_total", reason="crash") == 1
    assert value(samples, "sesame_worker_restarts_total", reason="exit") >= 1
    # The folder is back: the next respawn serves, and the node is ready again.
    (s.dir / "logs.away").rename(s.dir / "logs")
    assert wait_for(lambda: len(s.workers()) == 2 and ready_everywhere(s), 40), s.log()


# A route script whose top level keeps a worker busy for a second before it serves; the
# instruction budget is raised so that loading it is allowed to take that long.
SLOW_START = """local sesame = require "sesame"
local until_ = os.clock() + 1.0
while os.clock() < until_ do end
sesame.route("GET", "/version", function(req) return 200, { version = 2 } end)
"""


class ReadyPoller:
    """Asks /readyz on a fresh connection (so that every slot's socket is asked) again and
    again in a thread, and keeps every answer as (time, status)."""

    def __init__(self, s):
        self.s, self.answers, self.stopped = s, [], threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stopped.is_set():
            try:
                r = fresh_short(self.s, "/readyz")
                self.answers.append((time.monotonic(), r.status_code))
            except requests.RequestException as e:
                self.answers.append((time.monotonic(), repr(e)))
            time.sleep(0.02)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        return self.answers


def test_readyz_stays_200_throughout_a_reload(sesamed):
    s = sesamed("handler_instructions = 10000000000,", routes=WAIT, workers=2)
    old = set(s.workers())
    poller = ReadyPoller(s)
    time.sleep(0.5)
    s.write_route("version.lua", SLOW_START)
    signaled = time.monotonic()
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded", timeout=60)
    assert wait_for(lambda: not old & set(s.workers()), 30), s.log()
    time.sleep(0.5)
    answers = poller.stop()
    assert s.get("/version").json() == {"version": 2}
    # The new workers took a second or more each to start: the node was asked all along.
    during = [a for t, a in answers if t > signaled]
    assert len(during) >= 20, answers
    assert set(a for _, a in answers) == {200}, answers


def test_readyz_stays_200_while_a_reloads_workers_keep_failing(sesamed):
    s = sesamed("handler_instructions = 10000000000,", routes=WAIT, workers=2)
    old = set(s.workers())
    assert fresh_short(s, "/readyz").status_code == 200
    poller = ReadyPoller(s)
    # The new generation takes a second to start, and each of its workers is killed before it
    # serves, again and again: the reload never completes while the old generation serves.
    s.write_route("version.lua", SLOW_START)
    s.signal(signal.SIGHUP)
    killed = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for pid in set(s.workers()) - old:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    answers = poller.stop()
    assert len(killed) >= 2, s.log()
    assert set(a for _, a in answers) == {200}, answers
    assert old <= set(s.workers())
    assert s.get("/version").json() == {"version": 1}
    # The old generation serves until the new one is complete: the metrics say so.
    samples = scrape_short(s)
    assert value(samples, "sesame_generation") == 1
    assert value(samples, "sesame_workers", state="serving") == 2
    assert value(samples, "sesame_worker_restarts_total", reason="crash") >= 2
    # Left alone, the new generation starts, replaces the old one, and the node stays ready.
    assert wait_for(lambda: not old & set(s.workers()) and ready_everywhere(s), 60), s.log()
    assert s.get("/version").json() == {"version": 2}


def fresh_short(s, path):
    return requests.get(s.url + path, headers={"Connection": "close"}, timeout=1)


def scrape_short(s):
    for _ in range(40):
        try:
            r = fresh_short(s, "/metrics")
        except requests.RequestException:
            continue
        return parse(r.text)[0]
    raise AssertionError("no worker answered /metrics")


def ready_everywhere(s):
    try:
        return all(fresh_short(s, "/readyz").status_code == 200 for _ in range(8))
    except requests.RequestException:
        return False


# ---- a real Prometheus, and the dashboard ----

class Prometheus:
    """Debian's prometheus on a free loopback port, scraping one sesamed every second."""

    def __init__(self, folder, target):
        self.dir = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The scrape configuration docs/operations.md shows, with a test's interval.
        (folder / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sesame\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (scripts/dev installs it)"
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log)

    def api(self, path, **params):
        r = requests.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        return r.json()

    def target_up(self):
        try:
            targets = self.api("targets")["data"]["activeTargets"]
        except (requests.RequestException, ValueError):
            return False
        return any(t["health"] == "up" for t in targets)

    def query(self, promql):
        return self.api("query", query=promql)

    def scalar(self, promql):
        result = self.query(promql)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def with_prometheus(sesamed, tmp_path, test):
    s = app(sesamed)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    prom = Prometheus(folder, f"127.0.0.1:{s.port}")
    try:
        assert wait_for(prom.target_up, 60), (folder / "prometheus.log").read_text()
        test(s, prom)
    finally:
        prom.stop()


def test_prometheus_scrapes_sesamed(sesamed, tmp_path):
    def test(s, prom):
        for n in range(5):
            assert register(s, n).status_code == 200
        assert register(s, 0).status_code == 409
        query = 'sum(sesame_http_requests_total{route="/users/register"})'
        assert wait_for(lambda: prom.scalar(query) == 6, 30), prom.query(query)
        assert prom.scalar('sum(sesame_http_requests_total{route="/users/register",'
                           'status="409"})') == 1
        assert prom.scalar('sesame_workers{state="serving"}') == 2
        assert prom.scalar('up{job="sesame"}') == 1
    with_prometheus(sesamed, tmp_path, test)


FUNCTION_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                  "or", "unless", "offset", "inf", "nan"}


def metric_names(expr):
    """The metric names a PromQL expression reads: identifiers that are neither functions,
    keywords, label names (in braces, by/without/on/ignoring lists) nor durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(NAME, text):
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in FUNCTION_WORDS:
            continue
        if re.match(r"\d", text[m.start() - 1:m.start()] or " "):
            continue  # the unit of a number, as in 1e3
        names.add(m.group(0))
    return names


def dashboard_exprs():
    board = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(board)
    return board, exprs


def test_dashboard_queries_name_exported_metrics_and_are_valid_promql(sesamed, tmp_path):
    board, exprs = dashboard_exprs()
    assert board["title"] and board["panels"] and len(exprs) >= 10
    assert metric_names('sum by (route) (rate(x_total{a="b"}[5m])) / on(le) y') == {"x_total", "y"}

    def test(s, prom):
        text = s.get("/metrics").text
        _, types = parse(text)
        exported = set(types)
        exported |= {f + suffix for f, t in types.items() if t == "histogram"
                     for suffix in ("_bucket", "_sum", "_count")}
        for expr in exprs:
            names = metric_names(expr)
            assert names, expr
            assert names <= exported, (expr, names - exported)
            # Grafana's interval variables, as Grafana would fill them in.
            promql = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            answer = prom.query(promql)
            assert answer["status"] == "success", (expr, answer)
    with_prometheus(sesamed, tmp_path, test)


def test_promtool_accepts_the_exposition(sesamed):
    s = app(sesamed)
    assert register(s, 1).status_code == 200
    text = s.get("/metrics").text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/dev installs prometheus)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
