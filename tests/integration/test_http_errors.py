"""Every answer evhttp or sesame gives outside a route is sesame's JSON error, on the libevent
this build runs on (sesame's own evhttp_send_error, which libevent's calls are bound to)."""
import json
import os
import time

import pytest

from conftest import raw_answers, raw_exchange as exchange, route_file
from test_process import WAIT, feed_fd, start_waiting, wait_reader

APP = {"app.lua": route_file("app.lua")}


@pytest.fixture
def app(sesamed):
    return sesamed("timeout = 2, max_body = 1000, max_header = 4096,", routes=APP)


def json_error(buf, status, error):
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), buf
    assert "Content-Type: application/json" in lines
    assert json.loads(body) == {"result": "fail", "error": error}


CASES = [
    (b"GARBAGE\r\n\r\n", 400, "malformed request"),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed request"),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not found"),
    (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405,
     "method not allowed"),
    (b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"y" * 1001, 413,
     "request too large"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 5000 + b"\r\n\r\n", 431,
     "request headers too large"),
    # A request line past the limit that arrives whole is dropped by libevent before anything
    # can tell its size: it stays a 400.
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request"),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method not implemented"),
    (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method not implemented"),
]


@pytest.mark.parametrize("data,status,error", CASES, ids=[str(c[1]) for c in CASES])
def test_built_in_errors_are_json(app, data, status, error):
    json_error(exchange(app, data), status, error)


# The error pages a HEAD can get, the HEAD in front of each.
HEAD_ERRORS = [b" / HTTP/1.1\r\nno colon here\r\n\r\n",
               b" / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 5000 + b"\r\n\r\n"]


@pytest.mark.parametrize("rest", HEAD_ERRORS, ids=["400", "431"])
def test_error_pages_answer_head_as_get_without_a_body(app, rest):
    (hstatus, hfields, hbody), = raw_answers(exchange(app, b"HEAD" + rest), ["HEAD"])
    (gstatus, gfields, gbody), = raw_answers(exchange(app, b"GET" + rest))
    assert hbody == b"" and json.loads(gbody)["result"] == "fail"
    assert (hstatus, hfields["content-length"]) == (gstatus, str(len(gbody)))
    del hfields["date"], gfields["date"]
    assert hfields == gfields


def test_only_the_head_counts_towards_max_header(sesamed):
    """A malformed head is a 400 however much is pipelined after it: the rest is no part of
    its size (what libevent reads at once is larger than this max_header)."""
    s = sesamed("max_header = 1024,", routes=APP)
    after = b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"p" * 2000
    json_error(exchange(s, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n" + after), 400,
               "malformed request")
    json_error(exchange(s, b"GET / HTTP/1.1\r\nX-Big: " + b"z" * 1100 + b"\r\n\r\n" + after),
               431, "request headers too large")


def test_built_in_errors_are_logged_and_counted(app):
    json_error(exchange(app, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 5000 +
                        b"\r\n\r\n"), 431, "request headers too large")
    app.wait_log('"status":431')
    assert "z" * 100 not in app.log()


def test_a_request_that_never_ends_is_closed_without_an_answer(app):
    """Pinned: libevent sends no 408; once server.timeout passes, it closes the connection."""
    started = time.monotonic()
    assert exchange(app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") == b""
    assert time.monotonic() - started >= 1
    assert app.get("/healthz").status_code == 200


def test_a_full_job_queue_is_503_json(sesamed):
    """A worker whose job queue is full answers 503 in JSON, to a HEAD without the body. (The
    other 503 sesame gives by itself, to a request still arriving at a drain's deadline, is
    test_drain_bodies.py's.)"""
    s = sesamed("threads = 1, queue = 1,", routes=WAIT, workers=1)
    running = s.dir / "running"
    os.mkfifo(running)
    t, first = start_waiting(s, running)
    writer = wait_reader(running)
    try:
        request = b" /wait?fifo=none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        buf = exchange(s, b"GET" + request)
        json_error(buf, 503, "server busy")
        (status, fields, body), = raw_answers(buf)
        assert (status, fields["retry-after"]) == (503, "1")
        (hstatus, hfields, hbody), = raw_answers(exchange(s, b"HEAD" + request), ["HEAD"])
        assert (hstatus, hbody, hfields["content-length"]) == (503, b"", str(len(body)))
    finally:
        feed_fd(writer, "done")
        t.join()
    assert first["r"].status_code == 200
