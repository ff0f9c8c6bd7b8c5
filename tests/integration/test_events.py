"""Auth events: sesame.emit's audit lines (a file, or stderr), stored rows that sesamectl events
lists and events.retention purges, sesame.on handlers run after the answer, and the events
sesame emits itself (refresh_reused, rate_limited, and sesamectl's disabled)."""
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import SESAMED, TOP, wait_for
from test_process import feed_fd, wait_reader

SECRET = "events-tests-secret-0123456789abcdef!!"
SESAMECTL = str(Path(SESAMED).parent / "sesamectl")
USERS = (TOP / "etc/sesame/routes/users.lua").read_text()
EMIT_ROUTES = """
local sesame = require "sesame"
-- Emits the event the body names, with its fields; a script error answers 500.
sesame.route("POST", "/t/emit", function(req)
  local body = req:json()
  sesame.emit(body.name, body.fields)
  return 200, { result = "success" }
end)
sesame.route("POST", "/t/emit/nested", function(req)
  sesame.emit("custom", { inner = { a = 1 } })
  return 200, {}
end)
sesame.route("POST", "/t/emit/function", function(req)
  sesame.emit("custom", { f = print })
  return 200, {}
end)
sesame.route("GET", "/t/limit", function(req)
  local allowed = sesame.limit("tight", req.remote_addr)
  return 200, { allowed = allowed }
end)
"""
HANDLERS = """
local sesame = require "sesame"
sesame.on("greeted", function(e)
  sesame.log.info("on greeted: user " .. tostring(e.user) .. " from " .. e.remote_addr ..
                  " n=" .. tostring(e.n) .. " event=" .. e.event)
end)
sesame.on("*", function(e)
  sesame.log.info("star saw " .. e.event)
  sesame.emit("echoed", { of = e.event })   -- logged and stored, runs no handler
end)
sesame.on("boom", function(e) error("handler blew up on purpose") end)
"""


def audit_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_audit(path, name, count=1, timeout=10):
    assert wait_for(lambda: sum(e["event"] == name for e in audit_lines(path)) >= count,
                    timeout), audit_lines(path)
    return [e for e in audit_lines(path) if e["event"] == name]


def sqlite(tmp_path):
    return f'storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / "s.db"}" }} }}\n'


def app(sesamed, tmp_path, events="", routes=None, limits="", storage=None, workers=2,
        server=""):
    more = ((storage if storage is not None else sqlite(tmp_path)) +
            f'jwt = {{ secret = "{SECRET}", refresh_grace = 0 }}\n' +
            f'events = {{ audit_log = "audit.log", {events} }}\n' + limits)
    s = sesamed(server, routes=routes or {"emit.lua": EMIT_ROUTES, "handlers.lua": HANDLERS},
                more=more, workers=workers)
    s.audit = s.dir / "audit.log"
    return s


def emit(s, name, **fields):
    return s.post("/t/emit", json={"name": name, "fields": fields})


def ctl(s, *args, check=True, **kw):
    return subprocess.run([SESAMECTL, "-c", str(s.config), *args], capture_output=True,
                          text=True, timeout=60, check=check, **kw)


def test_an_event_is_one_json_line_in_the_audit_file(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    r = emit(s, "greeted", user=42, n=3, ok=True, ratio=0.5, note='quote " and\nnewline')
    assert r.status_code == 200
    e = wait_audit(s.audit, "greeted")[0]
    assert e["user"] == 42 and e["n"] == 3 and e["ok"] is True and e["ratio"] == 0.5
    assert e["note"] == 'quote " and\nnewline'
    assert e["remote_addr"] == "127.0.0.1" and len(e["request_id"]) >= 8
    assert abs(e["at"] - time.time()) < 30
    # One line per event, and the access log (stderr here) is not mixed into the file.
    assert all("method" not in line for line in audit_lines(s.audit))


@pytest.mark.parametrize("field", ["password", "token", "access_token", "refresh_token",
                                   "secret", "Password", "new_password", "reset_token",
                                   "client_secret", "API_KEY", "stripe_api_key",
                                   "Old_Api_Key", "_token", "access__token", "newPassword",
                                   "resetToken", "apiKey", "clientSecret", "password-hash",
                                   "token1", "secret_key", "private_key", "password_plain",
                                   "session_cookie", "signingKey"])
def test_an_event_with_a_secret_field_raises(sesamed, tmp_path, field):
    s = app(sesamed, tmp_path)
    r = emit(s, "greeted", **{field: "hunter2-value"})
    assert r.status_code == 500
    s.wait_log(f"field {field}: an event never carries a secret")
    assert "hunter2-value" not in s.log()
    assert emit(s, "greeted", n=1).status_code == 200
    wait_audit(s.audit, "greeted")
    assert "hunter2-value" not in s.audit.read_text()


def test_a_field_whose_name_only_contains_a_secret_word_passes(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    fields = {"token_count": 3, "password_policy": "strict", "api_key_id": 2, "key_api": 1,
              "secretary": "x", "passwords_tried": 1, "key": True, "Token_Expired": False,
              "tokenCount": 2, "secret_age": 9, "monkey": "k", "api": 1}
    assert emit(s, "greeted", **fields).status_code == 200
    e = wait_audit(s.audit, "greeted")[0]
    assert {k: e[k] for k in fields} == fields


def test_bad_names_and_fields_raise(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    for name in ("Greeted", "", "a" * 33, "with-dash", "sp ace"):
        assert emit(s, name).status_code == 500, name
    assert s.post("/t/emit/nested").status_code == 500
    assert s.post("/t/emit/function").status_code == 500
    assert emit(s, "greeted", event="forged").status_code == 500
    assert emit(s, "greeted", user=True).status_code == 500
    s.wait_log("fields are strings, numbers or booleans")
    s.wait_log("field event is set by sesame")
    assert emit(s, "a" * 32).status_code == 200
    wait_audit(s.audit, "a" * 32)
    assert not any(e["event"] in ("custom", "Greeted") for e in audit_lines(s.audit))


def test_the_audit_log_on_stderr_is_bare_json_lines(sesamed, tmp_path):
    more = (sqlite(tmp_path) + f'jwt = {{ secret = "{SECRET}" }}\n'
            'events = { audit_log = "stderr" }\n')
    s = sesamed(routes={"emit.lua": EMIT_ROUTES}, more=more, config='access_log = false')
    assert emit(s, "greeted", n=7).status_code == 200
    s.wait_log('"event":"greeted"')
    line = next(l for l in s.log().splitlines() if '"event":"greeted"' in l)
    assert json.loads(line)["n"] == 7  # the whole line is the event: no prefix


ORDERED = """
local sesame = require "sesame"
local answered = {}
-- Emits, waits on the receiver, notes that it answers, answers: its handler tells the receiver
-- whether it started before or after that.
sesame.route("POST", "/t/ordered", function(req)
  local n = req:json().n
  sesame.emit("ordered", { n = n })
  sesame.http.request { method = "POST", url = "%(url)s/route", json = { n = n } }
  answered[n] = true
  return 200, { n = n }
end)
sesame.on("ordered", function(e)
  sesame.http.request { method = "POST", url = "%(url)s/hook",
                        json = { n = e.n, answered = answered[e.n] == true } }
end)
"""


def test_a_reload_reopens_the_audit_log_and_a_truncation_is_followed(sesamed, tmp_path):
    s = app(sesamed, tmp_path, routes={"emit.lua": EMIT_ROUTES})
    assert emit(s, "before").status_code == 200
    wait_audit(s.audit, "before")
    # logrotate's create: the file renamed, then a reload; its new workers open a new file.
    rotated = s.dir / "audit.log.1"
    s.audit.rename(rotated)
    workers = s.workers()
    s.signal(1)  # SIGHUP
    assert wait_for(lambda: not set(s.workers()) & set(workers), 20), s.log()
    assert emit(s, "after").status_code == 200
    wait_audit(s.audit, "after")
    assert [e["event"] for e in audit_lines(s.audit)] == ["after"]
    assert [e["event"] for e in audit_lines(rotated)] == ["before"]
    # copytruncate: the next line goes to the start of the emptied file (O_APPEND), no hole.
    os.truncate(s.audit, 0)
    assert emit(s, "truncated").status_code == 200
    wait_audit(s.audit, "truncated")
    assert s.audit.read_bytes().startswith(b'{"event":"truncated"')


def test_handlers_run_after_the_answer(sesamed, tmp_path, receiver):
    host = receiver.url.split("//")[1]
    s = app(sesamed, tmp_path, limits=f'http = {{ allow = {{ "{host}" }} }}\n',
            routes={"emit.lua": EMIT_ROUTES, "handlers.lua": HANDLERS,
                    "ordered.lua": ORDERED % {"url": receiver.url}})
    # The route waits a while on the receiver after its emit: a handler started at once
    # would reach the receiver during that wait, before the route answered.
    receiver.delay = 0.5
    for n in (1, 2):
        assert s.post("/t/ordered", json={"n": n}).json() == {"n": n}
    got = receiver.wait(4)
    seen = [(r["path"], r["json"]["n"]) for r in got]
    assert sorted(seen) == [("/hook", 1), ("/hook", 2), ("/route", 1), ("/route", 2)]
    assert all(seen.index(("/route", n)) < seen.index(("/hook", n)) for n in (1, 2)), seen
    assert all(r["json"]["answered"] for r in got if r["path"] == "/hook"), got
    wait_audit(s.audit, "ordered", 2)
    # The "*" handler's own event is logged and stored, but runs no handler again.
    assert emit(s, "greeted", user=5, n=2).status_code == 200
    s.wait_log("on greeted: user 5 from 127.0.0.1 n=2 event=greeted")
    wait_audit(s.audit, "echoed")
    time.sleep(0.5)
    assert "star saw echoed" not in s.log()
    assert s.log().count("star saw greeted") == 1


WAITING_ROUTE = """
local sesame = require "sesame"
-- Emits, then waits on a FIFO that the test holds open past server.handler_timeout.
sesame.route("GET", "/t/emit/wait", function(req)
  sesame.emit("greeted", { n = tonumber(req.query.n) })
  sesame.readfile(req.query.fifo)
  return 200, {}
end)
"""


def test_the_handlers_of_a_timed_out_request_start_before_its_job_ends(sesamed, tmp_path):
    s = app(sesamed, tmp_path, server="handler_timeout = 1,", workers=1,
            routes={"wait.lua": WAITING_ROUTE, "handlers.lua": HANDLERS})
    fifo = s.dir / "slow"  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    r = s.get("/t/emit/wait", params={"fifo": str(fifo), "n": 7})
    assert r.status_code == 503 and r.json()["error"] == "request timed out"
    writer = wait_reader(fifo)
    try:
        # The job still reads the FIFO, which stays open: the handler starts all the same.
        s.wait_log("on greeted: user nil from 127.0.0.1 n=7 event=greeted")
        assert s.get("/healthz").status_code == 200
    finally:
        feed_fd(writer, "done")
    s.wait_log("GET /t/emit/wait: handler did not finish within server.handler_timeout")


def test_a_failing_handler_is_logged_and_the_worker_lives(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    workers = s.workers()
    assert emit(s, "boom").status_code == 200
    # The task's error, named after the event, with the handler's traceback.
    s.wait_log("on boom: task failed: ")
    line = next(l for l in s.log().splitlines() if "on boom: task failed: " in l)
    assert "handler blew up on purpose" in line
    assert "stack traceback" in s.log()
    assert s.workers() == workers
    assert emit(s, "greeted", n=9).status_code == 200
    s.wait_log("n=9")


def test_sesame_on_only_while_the_scripts_load(sesamed, tmp_path):
    late = """
local sesame = require "sesame"
sesame.route("GET", "/t/late", function(req)
  sesame.on("greeted", function() end)
  return 200, {}
end)
"""
    s = app(sesamed, tmp_path, routes={"late.lua": late})
    assert s.get("/t/late").status_code == 500
    s.wait_log("sesame.on is called while the scripts load")


def test_a_handler_posts_to_a_webhook(sesamed, tmp_path, receiver):
    hook = f"""
local sesame = require "sesame"
sesame.on("greeted", function(e)
  local status = sesame.http.request {{ method = "POST", url = "{receiver.url}/hook",
                                       json = {{ event = e.event, user = e.user }} }}
  sesame.log.info("webhook answered " .. tostring(status))
end)
"""
    host = receiver.url.split("//")[1]
    s = app(sesamed, tmp_path, routes={"emit.lua": EMIT_ROUTES, "hook.lua": hook},
            limits=f'http = {{ allow = {{ "{host}" }} }}\n')
    # The webhook answers late: the client has its answer while the handler still waits.
    receiver.delay = 3
    assert emit(s, "greeted", user=11).status_code == 200
    assert "webhook answered" not in s.log()
    got = receiver.wait(1)
    assert got[0]["method"] == "POST" and got[0]["path"] == "/hook"
    assert got[0]["json"] == {"event": "greeted", "user": 11}
    s.wait_log("webhook answered 200")


def test_events_are_counted_in_the_metrics(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    for _ in range(3):
        assert emit(s, "counted").status_code == 200
    text = s.get("/metrics").text
    assert 'sesame_events_total{event="counted"} 3' in text


def test_a_reused_refresh_token_emits_refresh_reused(sesamed, tmp_path):
    s = app(sesamed, tmp_path, routes={"users.lua": USERS})
    r = s.post("/users/register", json={"email": "dee@example.com", "username": "deedee",
                                        "password": "correct horse"})
    assert r.status_code == 200
    stolen = r.json()["refresh_token"]
    auth = {"Authorization": f"Bearer {stolen}"}
    assert s.post("/token/refresh", headers=auth).status_code == 200
    assert s.post("/token/refresh", headers=auth).status_code == 401
    e = wait_audit(s.audit, "refresh_reused")[0]
    assert isinstance(e["user"], int) and e["user"] > 0
    assert len(e["family"]) == 36
    assert stolen not in s.audit.read_text()


def test_a_rate_limit_refusal_emits_rate_limited(sesamed, tmp_path):
    s = app(sesamed, tmp_path, limits='limits = { tight = "2/minute" }\n')
    answers = [s.get("/t/limit").json()["allowed"] for _ in range(3)]
    assert answers == [True, True, False]
    e = wait_audit(s.audit, "rate_limited")[0]
    assert e["rule"] == "tight" and e["address"] == "127.0.0.1"


def test_rate_limited_events_are_folded_per_rule_and_second(sesamed, tmp_path):
    s = app(sesamed, tmp_path, limits='limits = { tight = "2/minute" }\n', workers=1)
    answers = [s.get("/t/limit").json()["allowed"] for _ in range(20)]
    assert answers == [True, True] + [False] * 18
    time.sleep(1.2)
    # The last refusal comes after a quiet second: emitted, with what was folded before it.
    assert s.get("/t/limit").json()["allowed"] is False
    assert wait_for(lambda: any(e.get("suppressed") for e in audit_lines(s.audit)))
    events = [e for e in audit_lines(s.audit) if e["event"] == "rate_limited"]
    assert 2 <= len(events) <= 4, events
    assert sum(1 + e.get("suppressed", 0) for e in events) == 19
    assert events[-1]["suppressed"] >= 1
    assert all(e["rule"] == "tight" and e["address"] == "127.0.0.1" for e in events)
    # Every refusal is counted; the "*" handler ran once per emitted event only.
    text = s.get("/metrics").text
    assert 'sesame_events_total{event="rate_limited"} 19' in text
    assert 'sesame_rate_limited_total{rule="tight"} 19' in text
    assert wait_for(lambda: s.log().count("star saw rate_limited") == len(events))
    time.sleep(0.3)
    assert s.log().count("star saw rate_limited") == len(events)


DEFERRING = """
local sesame = require "sesame"
-- A handler that emits through sesame.defer, twice removed: still the handler's own event.
sesame.on("greeted", function(e)
  sesame.defer(function()
    sesame.emit("echoed", { of = e.event })
    sesame.defer(function() sesame.emit("echoed_again", { of = e.event }) end)
  end)
end)
sesame.on("echoed", function(e) sesame.log.info("echoed handler ran") end)
sesame.on("echoed_again", function(e) sesame.log.info("echoed_again handler ran") end)
sesame.on("waved", function(e) sesame.log.info("waved handler ran") end)
sesame.route("POST", "/t/defer-emit", function(req)
  sesame.defer(function() sesame.emit("waved", {}) end)
  return 200, {}
end)
"""


def test_a_handler_cannot_feed_itself_through_sesame_defer(sesamed, tmp_path):
    s = app(sesamed, tmp_path, routes={"emit.lua": EMIT_ROUTES, "deferring.lua": DEFERRING})
    assert emit(s, "greeted").status_code == 200
    wait_audit(s.audit, "echoed")
    wait_audit(s.audit, "echoed_again")
    # A route's own deferred task is no handler: its event runs handlers.
    assert s.post("/t/defer-emit").status_code == 200
    s.wait_log("waved handler ran")
    time.sleep(0.3)
    assert "echoed handler ran" not in s.log()
    assert "echoed_again handler ran" not in s.log()


def test_sesamectl_user_disable_emits_disabled(sesamed, tmp_path):
    s = app(sesamed, tmp_path, routes={"users.lua": USERS})
    r = s.post("/users/register", json={"email": "eve@example.com", "username": "evelyn",
                                        "password": "correct horse"})
    assert r.status_code == 200
    ctl(s, "user", "disable", "eve@example.com")
    ctl(s, "user", "enable", "eve@example.com")
    disabled = wait_audit(s.audit, "disabled")[0]
    assert disabled["email"] == "eve@example.com" and disabled["user"] > 0
    assert wait_audit(s.audit, "enabled")[0]["user"] == disabled["user"]


# ---- stored events (events.store) ----

def stored_app(sesamed, tmp_path, request, backend, events="store = true"):
    storage = None
    if backend == "mariadb":
        db = request.getfixturevalue("mariadb")
        storage = db.storage(db.database)
    return app(sesamed, tmp_path, events=events, storage=storage,
               routes={"emit.lua": EMIT_ROUTES, "users.lua": USERS})


@pytest.fixture(params=["sqlite", "mariadb"])
def stored(sesamed, tmp_path, request):
    return stored_app(sesamed, tmp_path, request, request.param)


def listed(s, *args):
    out = ctl(s, "events", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_sesamectl_lists_stored_events(stored):
    s = stored
    # Rows are written on job threads, of either worker: each is awaited, to know the order.
    for count, (name, user) in enumerate((("greeted", 1), ("greeted", 2), ("waved", 1)), 1):
        emit(s, name, user=user, n=count)
        assert wait_for(lambda: len(listed(s)) >= count)
    events = listed(s)
    assert [(e["event"], e["user"], e["n"]) for e in events] == [
        ("greeted", 1, 1), ("greeted", 2, 2), ("waved", 1, 3)]
    assert all(e["remote_addr"] == "127.0.0.1" for e in events)
    assert [e["n"] for e in listed(s, "--user", "1")] == [1, 3]
    assert [e["n"] for e in listed(s, "--limit", "2")] == [1, 2]
    table = ctl(s, "events").stdout.splitlines()
    assert len(table) == 3 and "greeted" in table[0] and '"n":1' in table[0]


def test_since_filters(stored):
    s = stored
    emit(s, "early")
    assert wait_for(lambda: len(listed(s)) == 1)
    time.sleep(2.2)
    cut = int(time.time()) - 1
    emit(s, "late")
    assert wait_for(lambda: len(listed(s)) == 2)
    assert [e["event"] for e in listed(s, "--since", str(cut))] == ["late"]
    assert [e["event"] for e in listed(s, "--since", "1h")] == ["early", "late"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cut))
    assert [e["event"] for e in listed(s, "--since", iso)] == ["late"]
    assert ctl(s, "events", "--since", "yesterday-ish", check=False).returncode == 2
    # The same instant written with offsets east and west of UTC.
    for offset, secs in (("+01:30", 5400), ("-02:00", -7200), ("+00:00", 0)):
        local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut + secs)) + offset
        assert [e["event"] for e in listed(s, "--since", local)] == ["late"], local
    day = time.strftime("%Y-%m-%d", time.gmtime(cut))
    for bad in ("+1:30", "+01", "+01:3", "+0130", "+24:00", "+01:60", "+01:30x", "Zulu",
                "+", "-"):
        r = ctl(s, "events", "--since", f"{day}T00:00:00{bad}", check=False)
        assert r.returncode == 2, bad


def test_a_user_that_is_no_id_is_stored(stored):
    s = stored
    # A Flask sub is a string: the row keeps it, as the audit line does.
    emit(s, "greeted", user="alice@flask", n=1)
    emit(s, "greeted", user="7", n=2)
    assert wait_for(lambda: len(listed(s)) == 2)
    got = sorted(listed(s), key=lambda e: e["n"])
    assert [(e["user"], e["n"]) for e in got] == [("alice@flask", 1), (7, 2)]
    assert [e["n"] for e in listed(s, "--user", "7")] == [2]


def test_sesamectl_disable_is_stored(stored):
    s = stored
    r = s.post("/users/register", json={"email": "fay@example.com", "username": "fayfay",
                                        "password": "correct horse"})
    assert r.status_code == 200
    ctl(s, "user", "disable", "fay@example.com")
    # The default route's own event first, then sesamectl's.
    assert wait_for(lambda: len(listed(s)) >= 2)
    events = listed(s)
    assert [e["event"] for e in events] == ["registered", "disabled"]
    assert events[0]["user"] == events[1]["user"] and events[1]["user"] > 0
    assert events[1]["email"] == "fay@example.com"


def test_sesamectl_user_add_passwd_and_verify_emit(stored):
    s = stored
    ctl(s, "user", "add", "gus@example.com", input="correct horse\n")
    ctl(s, "user", "passwd", "gus@example.com", input="battery staple!\n")
    ctl(s, "user", "verify", "gus@example.com")
    # sesamectl writes its rows itself, one after the other.
    events = listed(s)
    assert [e["event"] for e in events] == ["registered", "password_changed", "verified"]
    user = events[0]["user"]
    assert user > 0 and all(e["user"] == user for e in events)
    assert all(e["email"] == "gus@example.com" and e["by"] == "sesamectl" for e in events)
    assert [e["event"] for e in audit_lines(s.audit)] == [e["event"] for e in events]
    text = s.audit.read_text()
    assert "correct horse" not in text and "battery staple" not in text


BURST = """
local sesame = require "sesame"
sesame.route("POST", "/t/burst", function(req)
  local n = req:json().n
  for i = 1, n do sesame.emit("burst", { i = i }) end
  return 200, { emitted = n }
end)
"""


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_a_stopping_worker_writes_every_queued_row(sesamed, tmp_path, request, backend):
    storage = sqlite(tmp_path)
    if backend == "mariadb":
        db = request.getfixturevalue("mariadb")
        storage = db.storage(db.database)
    # One job thread, and room for the whole burst in its queue: rows wait there.
    s = sesamed(routes={"burst.lua": BURST}, workers=1, config="threads = 1, queue = 1000",
                more=storage + f'jwt = {{ secret = "{SECRET}" }}\n'
                'events = { audit_log = "audit.log", store = true }\n')
    s.audit = s.dir / "audit.log"
    assert s.post("/t/burst", json={"n": 400}).json() == {"emitted": 400}
    assert s.stop() == 0
    assert "jobs unfinished" not in s.log()
    assert "still in flight are dropped" not in s.log()
    rows = listed(s, "--limit", "1000")
    assert sorted(e["i"] for e in rows if e["event"] == "burst") == list(range(1, 401))


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_retention_purges_old_events(sesamed, tmp_path, request, backend):
    s = stored_app(sesamed, tmp_path, request, backend, events="store = true, retention = 1")
    emit(s, "old")
    assert wait_for(lambda: len(listed(s)) == 1)
    time.sleep(2.5)
    # Workers purge when they start and then every minute: a reload starts new ones.
    s.signal(1)  # SIGHUP
    assert wait_for(lambda: listed(s) == [], 20), listed(s)


def test_retention_purges_events_stored_before_store_was_turned_off(sesamed, tmp_path):
    s = app(sesamed, tmp_path, events="store = true, retention = 1",
            routes={"emit.lua": EMIT_ROUTES})
    emit(s, "old")
    assert wait_for(lambda: len(listed(s)) == 1)
    db = sqlite3.connect(tmp_path / "s.db")
    rows = lambda: db.execute('SELECT count(*) FROM "sesame_events"').fetchone()[0]
    time.sleep(2.5)
    workers = s.workers()
    s.write_config(more=s.more.replace("store = true", "store = false"))
    s.signal(1)  # SIGHUP: new workers, without events.store, purge as they start
    assert wait_for(lambda: rows() == 0, 20), rows()
    assert not set(s.workers()) & set(workers)
    assert emit(s, "new").status_code == 200
    wait_audit(s.audit, "new")
    assert rows() == 0  # not stored: store is off
    db.close()


def test_without_store_sesamectl_says_so(sesamed, tmp_path):
    s = app(sesamed, tmp_path)
    r = ctl(s, "events", check=False)
    assert r.returncode == 1
    assert "events.store is false" in r.stderr


def test_the_settings_are_checked(tmp_path):
    cfg = tmp_path / "sesame.lua"
    for text, message in (
            ('events = { store = true }\n', "events.store: storing events needs a storage"),
            ('events = { retention = 0 }\n', "events.retention"),
            ('events = { audit = "x" }\n', "events.audit"),
            ('events = { audit_log = 3 }\n', 'expected "stderr", a file path or false')):
        cfg.write_text('server = { user = "root" }\nroutes = {}\n' + text)
        r = subprocess.run([SESAMED, "-t", "-c", str(cfg)], capture_output=True, text=True)
        assert r.returncode == 1, text
        assert f"{cfg}:" in r.stderr and message in r.stderr, r.stderr
