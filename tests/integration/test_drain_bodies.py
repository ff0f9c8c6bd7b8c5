"""A retiring worker never cuts a request mid-way: a request still arriving when the worker is
told to stop (a reload, a stop) is finished within server.shutdown_timeout or answered 503 with
Connection: close; idle kept-alive connections are closed at once. Raw sockets, real routes."""
import json
import signal
import socket
import time

import pytest

from conftest import TOP, wait_for

SECRET = "drain-tests-secret-0123456789abcdef"
USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
STORAGE = ('storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
           f'jwt = {{ secret = "{SECRET}" }}\n')
TIMEOUT = 3  # server.shutdown_timeout of these tests, in seconds

BODY = json.dumps({"email": "nobody@example.com", "password": "not the password"}).encode()
REQUEST = (b"POST /users/login HTTP/1.1\r\nHost: sesame\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
# Where a request is split: in its body, or in its headers.
SPLITS = {"body": REQUEST.index(b"\r\n\r\n") + 4 + len(BODY) // 2,
          "headers": REQUEST.index(b"Content-Length")}


@pytest.fixture
def app(sesamed):
    return sesamed(f"shutdown_timeout = {TIMEOUT},", routes=USERS, workers=1, more=STORAGE)


def read_response(c):
    """Reads one response: (status, headers as a dict of lower-case names, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(65536)
        assert chunk, f"the connection closed before an answer: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = c.recv(65536)
        assert chunk, "the connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def assert_closed(c):
    """The server ended the connection with an orderly close: no reset, nothing more sent."""
    assert c.recv(65536) == b""


def start_partial(s, split):
    """Opens a connection and sends the first split bytes of a log-in; the worker reads them."""
    c = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT + 10)
    c.sendall(REQUEST[:split])
    time.sleep(0.3)  # read by the worker before the drain begins
    return c


def retire(s, sig):
    """Tells the worker to retire, by a reload or a stop; returns once it is draining."""
    worker = s.workers()[0]
    s.signal(sig)
    s.wait_log("still arriving (1)")
    assert worker in s.workers()  # draining, not gone
    return worker


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_request_finished_within_the_timeout_gets_its_answer(app, split):
    with start_partial(app, split) as c:
        old = retire(app, signal.SIGHUP)
        time.sleep(1)
        assert old in app.workers()  # the worker waits for the request
        c.sendall(REQUEST[split:])
        status, headers, body = read_response(c)
        assert status == 401
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert json.loads(body) == {"result": "fail", "error": "invalid email or password"}
        assert_closed(c)
    # The reload completed: the old worker is gone and the new generation answers.
    assert wait_for(lambda: old not in app.workers())
    assert app.post("/users/login", data=BODY,
                    headers={"Content-Type": "application/json"}).status_code == 401
    assert "shutdown timeout" not in app.log()


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_request_never_finished_is_answered_503_at_the_timeout(app, split):
    with start_partial(app, split) as c:
        old = retire(app, signal.SIGHUP)
        started = time.monotonic()
        status, headers, body = read_response(c)
        assert time.monotonic() - started > TIMEOUT - 1  # answered at the deadline, not before
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert json.loads(body) == {"result": "fail", "error": "server shutting down"}
        assert_closed(c)
    app.wait_log("answering 503 to the requests still arriving (1)")
    assert wait_for(lambda: old not in app.workers())
    assert app.get("/healthz").status_code == 200


def test_a_stop_answers_a_request_never_finished(app):
    with start_partial(app, SPLITS["body"]) as c:
        retire(app, signal.SIGTERM)
        status, headers, body = read_response(c)
        assert (status, headers["connection"]) == (503, "close")
        assert json.loads(body)["error"] == "server shutting down"
        assert_closed(c)
    assert app.proc.wait(15) == 0


def test_an_idle_connection_is_closed_at_once(app):
    idle = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT + 10)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: sesame\r\n\r\n")
    assert read_response(idle)[0] == 200
    with idle, start_partial(app, SPLITS["body"]) as c:
        old = retire(app, signal.SIGHUP)
        # Closed while the worker still waits for the other request, not when it exits.
        assert_closed(idle)
        assert old in app.workers()
        c.sendall(REQUEST[SPLITS["body"]:])
        assert read_response(c)[0] == 401
        assert_closed(c)
    assert wait_for(lambda: old not in app.workers())
