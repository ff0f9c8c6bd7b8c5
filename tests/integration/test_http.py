"""The HTTP surface of a running sesamed: routes, the request object, and every built-in answer."""
import json
import select
import socket
import os
import time
from pathlib import Path

import pytest
import requests

from conftest import OPENAPI, raw_answers, raw_exchange, route_file, wait_for

APP = {"app.lua": route_file("app.lua")}


@pytest.fixture
def app(sesamed):
    return sesamed(routes=APP)


def fail_body(r, status, error):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"result": "fail", "error": error}


def raw_request(s, data, read_all=True):
    """Sends raw bytes to sesamed; returns the status and the parsed JSON body."""
    def answered(buf):
        head, sep, body = buf.partition(b"\r\n\r\n")
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:")]
        return bool(sep) and bool(length) and len(body) >= length[0]

    buf = raw_exchange(s, data, None if read_all else answered)
    OPENAPI.check_exchange(s.url, data, buf)
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, head.decode(), json.loads(body) if body else None


def test_healthz(app):
    r = app.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"result": "success", "status": "ok"}
    assert r.headers["Content-Type"] == "application/json"
    assert len(r.headers["X-Request-Id"]) == 16


def test_healthz_other_method_is_405(app):
    r = app.post("/healthz")
    fail_body(r, 405, "method not allowed")
    assert r.headers["Allow"] == "GET, HEAD"


def test_json_round_trip(app):
    doc = {"a": [1, 2.5, {"b": None}], "s": "é \u2603", "t": True, "e": [], "o": {}}
    r = app.post("/echo", json=doc)
    assert r.status_code == 200
    assert r.json() == {"result": "success", "body": doc, "again": True}


def test_unknown_path_is_404(app):
    fail_body(app.get("/nowhere"), 404, "not found")


def test_known_path_other_method_is_405_with_allow(app):
    r = app.get("/echo")
    fail_body(r, 405, "method not allowed")
    assert r.headers["Allow"] == "POST"
    r = app.post("/request")
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("body", [b"{", b"{\"a\":}", b"[1,", b"\"unterminated", b"{\"a\":1}x",
                                  b"{\"a\":1,\"a\":2}", b"", b"\xff\xfe"])
def test_malformed_json_is_400(app, body):
    r = app.post("/echo", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["result"] == "fail"
    assert r.json()["error"].startswith("request body is not valid JSON")


@pytest.mark.parametrize("body", [b"[1,2]", b"\"text\"", b"42", b"null"])
def test_json_that_is_not_an_object_is_400(app, body):
    r = app.post("/echo", data=body, headers={"Content-Type": "application/json"})
    fail_body(r, 400, "request body must be a JSON object")


def test_json_nested_too_deeply_is_400(app):
    body = "{\"a\":" * 40 + "1" + "}" * 40
    r = app.post("/echo", data=body, headers={"Content-Type": "application/json"})
    fail_body(r, 400, "request body is nested too deeply")


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx"])
def test_body_that_is_not_json_is_415(app, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = app.post("/echo", data=b"{\"a\":1}", headers=headers)
    fail_body(r, 415, "request body must be JSON (Content-Type: application/json)")


def test_json_content_type_with_charset_is_accepted(app):
    r = app.post("/echo", data=b"{\"a\":1}",
                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_body_too_large_is_413_json(app):
    big = b"{\"a\":\"" + b"x" * 70000 + b"\"}"
    r = app.post("/echo", data=big, headers={"Content-Type": "application/json"})
    fail_body(r, 413, "request too large")


def test_chunked_body_too_large_is_413_json(app):
    # A client that watches for an early answer, as curl does: once the server has answered,
    # it stops sending (one that goes on writing may see the connection reset instead).
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as c:
        c.sendall(b"POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        answered = False
        for _ in range(40):
            c.sendall(b"2000\r\n" + b"x" * 8192 + b"\r\n")
            if select.select([c], [], [], 0.05)[0]:
                answered = True
                break
        assert answered
        buf = b""
        while b"}" not in buf:
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"result": "fail", "error": "request too large"}


def test_body_at_the_limit_is_accepted(sesamed):
    s = sesamed("max_body = 1000,", routes=APP)
    r = s.post("/raw", data=b"y" * 1000)
    assert r.json()["size"] == 1000
    fail_body(s.post("/raw", data=b"y" * 1001), 413, "request too large")


def test_headers_too_large_get_a_json_error(app):
    r = app.get("/request", headers={"X-Big": "z" * 20000})
    assert r.status_code in (400, 413, 431)
    assert r.json()["result"] == "fail"


def test_malformed_request_line_is_400_json(app):
    status, head, body = raw_request(app, b"GARBAGE\r\n\r\n")
    assert status == 400
    assert body == {"result": "fail", "error": "malformed request"}
    assert "Content-Type: application/json" in head


def test_unsupported_method_gets_json(app):
    status, _, body = raw_request(app, b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (400, 405, 501)
    assert body["result"] == "fail"


def test_handler_error_is_500_without_detail(app):
    r = app.get("/error")
    fail_body(r, 500, "internal server error")
    assert "secret detail" not in r.text
    app.wait_log("the secret detail")
    assert "stack traceback" in app.log()


def test_handler_error_detail_with_debug(sesamed):
    s = sesamed("debug = true,", routes=APP)
    r = s.get("/error")
    assert r.status_code == 500
    assert r.json()["error"] == "internal server error"
    assert "the secret detail" in r.json()["detail"]


def test_instruction_budget_stops_a_runaway_handler(sesamed):
    s = sesamed("handler_instructions = 1000000,", routes=APP, workers=1)
    for path in ("/spin", "/error", "/spin", "/request", "/spin"):
        assert s.get(path).status_code == (200 if path == "/request" else 500)
    s.wait_log("instruction budget", count=3)
    assert s.get("/healthz").status_code == 200
    assert s.post("/echo", json={"x": 1}).json()["body"] == {"x": 1}


def test_memory_limit_stops_a_greedy_handler(sesamed):
    s = sesamed("lua_memory = 16777216, handler_instructions = 1000000000,", routes=APP,
                workers=1)
    fail_body(s.get("/hog"), 500, "internal server error")
    s.wait_log("not enough memory")
    assert s.post("/echo", json={"x": 2}).json()["body"] == {"x": 2}


def test_invalid_status_and_body_are_500(app):
    fail_body(app.get("/bad-status"), 500, "internal server error")
    fail_body(app.get("/bad-body"), 500, "internal server error")
    app.wait_log("returned string instead of a status")
    app.wait_log("cannot encode the response body")


def test_header_injection_is_refused(app):
    r = app.get("/bad-header")
    fail_body(r, 500, "internal server error")
    assert "Injected" not in r.headers


def test_handler_headers_and_status(app):
    r = app.get("/headers")
    assert r.status_code == 201
    assert r.headers["X-One"] == "1"
    assert r.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_no_content(app):
    r = app.request("DELETE", "/things/7")
    assert r.status_code == 204
    assert r.content == b""


def test_request_fields(app):
    r = app.get("/request?a=1&b=x%20y&b=second&c+d=e+f&flag",
                headers={"User-Agent": "tests/1", "X-Custom": "v", "Cookie": "s=1; t=\"2\""})
    body = r.json()
    assert body["method"] == "GET"
    assert body["path"] == "/request"
    assert body["query"] == {"a": "1", "b": "x y", "c d": "e f", "flag": ""}
    assert body["cookies"] == {"s": "1", "t": "2"}
    assert body["agent"] == "tests/1"
    assert body["custom"] == "v"
    assert body["remote"] == "127.0.0.1"
    assert body["id"] == r.headers["X-Request-Id"]
    assert body["identity"] is None


def test_request_id_is_kept_when_sane(app):
    r = app.get("/request", headers={"X-Request-Id": "abc-123.x"})
    assert r.headers["X-Request-Id"] == "abc-123.x"
    r = app.get("/request", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces"


def test_route_parameters(app):
    assert app.get("/users/42/items/a%20b").json() == {"id": "42", "item": "a b"}
    assert app.get("/users/me/items/3").json() == {"literal": True, "item": "3"}
    fail_body(app.get("/users/42/items"), 404, "not found")
    fail_body(app.get("/users//items/1"), 404, "not found")


def test_head_uses_the_get_route(app):
    r = app.request("HEAD", "/request")
    assert r.status_code == 200
    assert r.content == b""


# Answers whose body does not depend on the method: a route, built-ins, a route's 405.
HEAD_PATHS = ["/headers", "/users/7/items/9", "/healthz", "/nowhere", "/things/1"]


def test_head_gets_the_headers_of_a_get_and_no_body_pipelined(app):
    """Each HEAD then GET on one kept-alive connection: two answers, framed by their
    Content-Length, the HEAD's with the GET's headers and length and no body (a proxy that
    keeps connections reads no body after a HEAD)."""
    data, methods = b"", []
    for path in HEAD_PATHS:
        for method in ("HEAD", "GET"):
            data += f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            methods.append(method)
    data += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = raw_answers(raw_exchange(app, data), methods + ["GET"])
    assert len(got) == len(methods) + 1, got
    for i, path in enumerate(HEAD_PATHS):
        (hstatus, hfields, hbody), (gstatus, gfields, gbody) = got[2 * i], got[2 * i + 1]
        assert hbody == b"" and json.loads(gbody), path
        assert (hstatus, hfields["content-length"]) == (gstatus, str(len(gbody))), path
        same = ("date", "x-request-id")
        assert {k: v for k, v in hfields.items() if k not in same} == \
            {k: v for k, v in gfields.items() if k not in same}, path
    assert [g[0] for g in got[::2]] == [201, 200, 200, 404, 405, 200]


def test_empty_arrays_and_null(app):
    assert app.get("/empty").json() == {"list": [], "nums": [1, 2], "object": {},
                                        "nothing": None}


def test_readfile_runs_on_a_job_thread(app):
    f = app.dir / "data.txt"
    f.write_text("hello file")
    assert app.get("/file", params={"path": str(f)}).json()["data"] == "hello file"
    r = app.get("/file", params={"path": str(app.dir / "missing")})
    assert r.status_code == 404
    assert r.json()["error"] == "No such file or directory"


def test_request_kept_past_its_handler_is_not_reused(sesamed):
    s = sesamed(routes=APP, workers=1)
    assert s.get("/stale").status_code == 200
    body = s.get("/stale/read").json()
    assert body["ok"] is False
    assert "this request has already been answered" in body["err"]


def test_routes_cannot_be_added_by_a_handler(app):
    fail_body(app.get("/late-route"), 500, "internal server error")
    app.wait_log("routes are declared when the scripts load")


def test_access_log_lines(app):
    app.get("/request?token=supersecret")
    app.post("/echo", json={"password": "hunter2hunter2"})
    app.wait_log('"path":"/echo"')
    lines = [json.loads(l) for l in app.log().splitlines() if l.startswith("{")]
    line = next(l for l in lines if l["path"] == "/request")
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["remote"] == "127.0.0.1"
    assert isinstance(line["pid"], int) and line["duration_ms"] >= 0
    assert set(line) == {"time", "method", "path", "status", "duration_ms", "remote", "pid",
                         "request_id"}
    assert "supersecret" not in app.log()
    assert "hunter2" not in app.log()


def test_access_log_to_a_file(sesamed):
    s = sesamed('access_log = "access.log",', routes=APP)
    s.get("/healthz")
    path = s.dir / "access.log"
    for _ in range(100):
        if path.exists() and path.read_text():
            break
        time.sleep(0.05)
    assert json.loads(path.read_text().splitlines()[0])["path"] == "/healthz"


def test_access_log_off(sesamed):
    s = sesamed("access_log = false,", routes=APP)
    s.get("/healthz")
    assert '"path":"/healthz"' not in s.log()


def test_keepalive_connection_serves_many(app):
    s = requests.Session()
    for i in range(50):
        assert s.post(app.url + "/echo", json={"i": i}).json()["body"] == {"i": i}


def sockets(pid):
    """The sockets process pid holds open (a descriptor it closes while they are read is not)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:
            pass
    return count


def test_connections_their_clients_closed_leave_no_socket_open(sesamed):
    s = sesamed(routes=APP, workers=1)
    [worker] = s.workers()
    assert s.get("/healthz").status_code == 200
    before = sockets(worker)
    for _ in range(40):  # each read to the end of its answer, then closed by the client
        status, _, _ = raw_request(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                   read_all=False)
        assert status == 200
    assert wait_for(lambda: sockets(worker) <= before), (sockets(worker), before)


def test_idle_connection_closes_after_keepalive(sesamed):
    s = sesamed("keepalive = 1, timeout = 30,", routes=APP)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in c.recv(65536)
        started = time.monotonic()
        assert c.recv(65536) == b""  # the server closed the idle connection
        assert 0.5 < time.monotonic() - started < 10


def test_slow_request_times_out(sesamed):
    s = sesamed("timeout = 1,", routes=APP)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        data = c.recv(65536)
        while data and b"\r\n\r\n" not in data:
            data += c.recv(65536)
        assert time.monotonic() - started < 10
        assert not data.startswith(b"HTTP/1.1 200")  # cut off, not answered
    assert s.get("/healthz").status_code == 200


def test_waiting_where_a_handler_cannot_yield_is_an_error(sesamed):
    s = sesamed(routes=APP, workers=1)
    pid = s.workers()
    body = s.get("/yield-in-sort").json()
    assert body["ok"] is False
    assert "call it from a route handler itself" in body["err"]
    fail_body(s.get("/yield-in-gsub"), 500, "internal server error")
    body = s.get("/yield-in-require").json()
    assert body["ok"] is False and "sesame.readfile waits for a job thread" in body["err"]
    assert s.get("/healthz").status_code == 200
    assert s.workers() == pid


def test_malformed_request_is_answered_as_http_1_1(app):
    status, head, body = raw_request(app, b"GARBAGE\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 ")
    assert "Content-Length:" in head


def test_access_log_shows_route_patterns_not_parameters(app):
    r = app.get("/users/secret-token-value/items/1")
    assert r.status_code == 200
    app.wait_log('"path":"/users/:id/items/:item"')
    assert "secret-token-value" not in app.log()


def test_handler_messages_are_escaped_in_the_log(sesamed):
    s = sesamed(routes={"log.lua": 'local sesame = require "sesame"\n'
                        'sesame.route("GET", "/say", function(req)\n'
                        '  sesame.log.warn("said: " .. req.query.text)\n'
                        '  return 200, {}\nend)\n'})
    s.get("/say", params={"text": "a\x1b[31mred\nFAKE sesamed[1] error: forged"})
    s.wait_log("said: a")
    lines = s.log().splitlines()
    said = next(i for i, l in enumerate(lines) if "said: a" in l)
    assert "\\x1b[31mred" in lines[said]
    assert lines[said + 1].split(": ", 1)[1].startswith("  FAKE")


def test_handlers_cannot_set_framing_headers(app):
    r = app.get("/framing-header")
    fail_body(r, 500, "internal server error")
    assert "Transfer-Encoding" not in r.headers


def test_load_takes_text_only(app):
    body = app.get("/load").json()
    assert body["text"] == 2
    assert body["binary"] is True
    assert "binary" in body["err"]
