"""A retiring worker never cuts a request mid-way: a request still arriving when the worker is
told to stop (a reload, a stop) is finished within server.shutdown_timeout or answered 503 with
Connection: close; idle kept-alive connections are kept for a second (a request sent on one
then is answered) and closed; an answer still being written is written whole, and a request
pipelined behind it is read and answered too. Raw
sockets, real routes; the tests wait on the server's state (its log, the kernel's socket
queues), not on the clock, except where a client must stay silent for a while, or send within
the second a drain leaves it."""
import json
import signal
import socket
import threading
import time

import pytest

from conftest import TOP, wait_for

SECRET = "drain-tests-secret-0123456789abcdef"
BIG = 8 * 1024 * 1024  # a reply that the kernel's socket buffers cannot hold
ROUTES = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text(),
          "big.lua": 'local sesame = require "sesame"\n'
                     'sesame.route("GET", "/big", function(req)\n'
                     f'  return 200, {{ pad = string.rep("x", {BIG}) }}\n'
                     'end)\n'}
STORAGE = ('storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
           f'jwt = {{ secret = "{SECRET}" }}\n')
# server.shutdown_timeout, in seconds: ample where the request is finished within it (the
# worker leaves as soon as it is done, so it costs nothing, and a login's password hash on a
# busy machine can take seconds), short where the test waits for it to run out.
TIMEOUT = 15
DEADLINE = 2
WAIT = TIMEOUT + 15  # how long a client waits for anything at most

BODY = json.dumps({"email": "nobody@example.com", "password": "not the password"}).encode()
LOGIN = b"POST /users/login HTTP/1.1\r\nHost: sesame\r\nContent-Type: application/json\r\n"
HEAD = LOGIN + b"Content-Length: %d\r\n" % len(BODY)
REQUEST = HEAD + b"\r\n" + BODY
CONTINUE = HEAD + b"Expect: 100-continue\r\n\r\n"
CHUNKED = LOGIN + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(BODY) + BODY[:10]
ENDLESS = LOGIN + b"Content-Length: 1000000\r\n\r\n" + BODY[:5]  # a body that never ends
# Where a request is split: in its body, or in its headers.
SPLITS = {"body": REQUEST.index(b"\r\n\r\n") + 4 + len(BODY) // 2,
          "headers": REQUEST.index(b"Content-Length")}
LOGIN_FAILED = {"result": "fail", "error": "invalid email or password"}
SHUTTING_DOWN = {"result": "fail", "error": "server shutting down"}


@pytest.fixture
def app(sesamed, request):
    timeout = getattr(request, "param", TIMEOUT)
    return sesamed(f"shutdown_timeout = {timeout},", routes=ROUTES, workers=1, more=STORAGE)


# The tests that sit through the timeout: their sesamed's is DEADLINE.
at_the_deadline = pytest.mark.parametrize("app", [DEADLINE], ids=["deadline"], indirect=True)


def read_response(c, buf=b""):
    """Reads one response: (status, headers as a dict of lower-case names, body, what follows)."""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(65536)
        assert chunk, f"the connection closed before an answer: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    size = int(headers.get("content-length", 0))
    while len(rest) < size:
        chunk = c.recv(1 << 20)
        assert chunk, "the connection closed mid-body"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:size], rest[size:]


def answer(c, buf=b""):
    """The one answer on c, and then c's orderly close (no reset, nothing more sent)."""
    status, headers, body, more = read_response(c, buf)
    assert more == b"" and c.recv(65536) == b""
    return status, headers, json.loads(body)


def assert_503(c):
    status, headers, body = answer(c)
    assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
    assert headers["content-type"] == "application/json"
    assert body == SHUTTING_DOWN


def server_end(port, c):
    """The server's end of c in /proc/net/tcp: (its receive queue, its inode), or None."""
    me = "%04X" % c.getsockname()[1]
    server = "%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, queues, inode = fields[1], fields[2], fields[4], fields[9]
            if local.endswith(":" + server) and remote.endswith(":" + me):
                return int(queues.split(":")[1], 16), int(inode)
    return None


def server_read(port, c):
    """Waits until the server's end of c has read all that c sent (its receive queue is empty)."""
    assert wait_for(lambda: (server_end(port, c) or (1, 0))[0] == 0), \
        "the server did not read the request"


def server_accepted(port, c):
    """Waits until a worker has accepted c (its end gets an inode then, 0 in the queue)."""
    assert wait_for(lambda: (server_end(port, c) or (0, 0))[1] != 0), \
        "no worker accepted the connection"


def connect(s, data=b"", rcvbuf=None):
    c = socket.socket()
    if rcvbuf is not None:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(WAIT)
    c.connect(("127.0.0.1", s.port))
    c.sendall(data)
    return c


def start_partial(s, data):
    """Opens a connection and sends data, part of a request; returns once the worker read it."""
    c = connect(s, data)
    server_read(s.port, c)
    return c


def retire(s, sig, arriving=1):
    """Tells the worker to retire, by a reload or a stop; returns (its pid, when it was told)
    once it is draining."""
    worker = s.workers()[0]
    told = time.monotonic()
    s.signal(sig)
    s.wait_log(f"still arriving ({arriving})")
    assert worker in s.workers()  # draining, not gone
    return worker, told


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_request_finished_within_the_timeout_gets_its_answer(app, split):
    with start_partial(app, REQUEST[:split]) as c:
        old, _ = retire(app, signal.SIGHUP)
        time.sleep(0.5)
        assert old in app.workers()  # the worker waits for the request
        c.sendall(REQUEST[split:])
        status, headers, body = answer(c)
        assert (status, headers["connection"], body) == (401, "close", LOGIN_FAILED)
        assert headers["content-type"] == "application/json"
    # The reload completed: the old worker is gone and the new generation answers.
    assert wait_for(lambda: old not in app.workers())
    assert app.post("/users/login", data=BODY,
                    headers={"Content-Type": "application/json"}).status_code == 401
    assert "shutdown timeout" not in app.log()


@at_the_deadline
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_request_never_finished_is_answered_503_at_the_timeout(app, split):
    with start_partial(app, REQUEST[:split]) as c:
        old, told = retire(app, signal.SIGHUP)
        assert_503(c)
        assert time.monotonic() - told >= DEADLINE - 0.5  # at the deadline, not before
    app.wait_log("answering 503 to the requests still arriving (1)")
    assert wait_for(lambda: old not in app.workers())
    assert app.get("/healthz").status_code == 200


@at_the_deadline
def test_a_stop_answers_a_request_never_finished(app):
    with start_partial(app, REQUEST[:SPLITS["body"]]) as c:
        retire(app, signal.SIGTERM)
        assert_503(c)
    assert app.proc.wait(WAIT) == 0


def kept_alive(s):
    """A connection that has had one answer and is kept open for the next request."""
    c = connect(s, b"GET /healthz HTTP/1.1\r\nHost: sesame\r\n\r\n")
    status, headers, _, more = read_response(c)
    assert (status, headers.get("connection"), more) == (200, None, b"")
    return c


def test_an_idle_connection_is_closed_while_the_worker_drains(app):
    idle = kept_alive(app)
    with idle, start_partial(app, REQUEST[:SPLITS["body"]]) as c:
        old, _ = retire(app, signal.SIGHUP)
        # Closed while the worker still waits for the other request, not when it exits.
        assert idle.recv(65536) == b""
        assert old in app.workers()
        c.sendall(REQUEST[SPLITS["body"]:])
        assert answer(c)[0] == 401
    assert wait_for(lambda: old not in app.workers())


def silent(s):
    """A new connection a worker has accepted, on which nothing has been sent yet."""
    c = connect(s)
    server_accepted(s.port, c)
    return c


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["reload", "stop"])
@pytest.mark.parametrize("open_conn", [kept_alive, silent], ids=["kept-alive", "new"])
def test_a_request_sent_on_an_open_connection_as_the_drain_begins_is_answered(app, open_conn,
                                                                              sig):
    """A client answered a moment before the drain sends its next request on the same
    connection, or one that has just connected sends its first: it gets its answer (and
    Connection: close), not a close without one."""
    with open_conn(app) as c:
        # Sent within the grace (a second from the drain's start, which the log shows at once).
        old, _ = retire(app, sig, arriving=0)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: sesame\r\n\r\n")
        status, headers, body = answer(c)
        assert (status, headers["connection"], body) == (200, "close", {"result": "success", "status": "ok"})
    if sig == signal.SIGTERM:
        assert app.proc.wait(WAIT) == 0
    else:
        assert wait_for(lambda: old not in app.workers())
        assert app.get("/healthz").status_code == 200


def test_a_stop_closes_a_connection_left_idle(app):
    with kept_alive(app) as idle:
        app.signal(signal.SIGTERM)
        assert idle.recv(65536) == b""
        assert app.proc.wait(WAIT) == 0
    assert "shutdown timeout" not in app.log()


def test_a_request_pipelined_behind_an_answer_is_read_and_answered(app):
    with start_partial(app, REQUEST[:SPLITS["body"]]) as c:
        old, _ = retire(app, signal.SIGHUP)
        # The rest of the first request, and the second one's head and a bit of its body.
        second = SPLITS["body"] + 5
        c.sendall(REQUEST[SPLITS["body"]:] + REQUEST[:second])
        status, headers, body, more = read_response(c)
        assert (status, json.loads(body), more) == (401, LOGIN_FAILED, b"")
        assert "connection" not in headers  # kept open: the next request is on its way
        time.sleep(0.5)
        assert old in app.workers()
        c.sendall(REQUEST[second:])
        status, headers, body = answer(c)
        assert (status, headers["connection"], body) == (401, "close", LOGIN_FAILED)
    assert wait_for(lambda: old not in app.workers())
    assert "shutdown timeout" not in app.log()


def test_an_answer_still_being_written_is_written_whole(app):
    with connect(app, b"GET /big HTTP/1.1\r\nHost: sesame\r\n\r\n", rcvbuf=65536) as c:
        first = c.recv(1)  # the answer is being written
        old, _ = retire(app, signal.SIGHUP)
        time.sleep(0.5)
        assert old in app.workers()  # the worker waits for its reader
        status, headers, body = answer(c, first)
        # Answered before the drain: kept alive, then closed as idle once written.
        assert (status, headers.get("connection"), len(body["pad"])) == (200, None, BIG)
    assert wait_for(lambda: old not in app.workers())
    assert "shutdown timeout" not in app.log()


def test_an_answer_written_after_the_drains_first_second_leaves_a_second_for_the_next(app):
    """The connection of an answer still being written is idle only once its last byte is out:
    its client, which sends the next request as soon as it has read the answer, gets that
    request answered however long the answer took."""
    with connect(app, b"GET /big HTTP/1.1\r\nHost: sesame\r\n\r\n", rcvbuf=65536) as c:
        first = c.recv(1)
        old, _ = retire(app, signal.SIGHUP)
        time.sleep(1.5)  # past the grace the drain began with
        status, headers, body, more = read_response(c, first)
        assert (status, headers.get("connection"), more) == (200, None, b"")
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: sesame\r\n\r\n")
        status, headers, body = answer(c)
        assert (status, headers["connection"]) == (200, "close")
    assert wait_for(lambda: old not in app.workers())
    assert "shutdown timeout" not in app.log()


@at_the_deadline
def test_many_partial_requests_of_every_kind_get_503(app):
    """40 connections cut at once, after 30 have come and gone (their descriptors are reused):
    bodies and headers split, a chunked body, a body behind Expect: 100-continue."""
    for _ in range(30):
        with connect(app, b"GET /healthz HTTP/1.1\r\nHost: sesame\r\n\r\n") as c:
            assert read_response(c)[0] == 200
    kinds = [REQUEST[:SPLITS["body"]], REQUEST[:SPLITS["headers"]], CHUNKED, CONTINUE]
    conns = []
    for i in range(40):
        c = connect(app, kinds[i % 4])
        if kinds[i % 4] == CONTINUE:
            assert c.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
            c.sendall(BODY[:7])
        conns.append(c)
    for c in conns:
        server_read(app.port, c)
    old, _ = retire(app, signal.SIGHUP, arriving=40)
    for c in conns:
        with c:
            assert_503(c)
    app.wait_log("answering 503 to the requests still arriving (40)")
    assert wait_for(lambda: old not in app.workers())
    assert app.get("/healthz").status_code == 200


def keep_sending(c, failed):
    """Sends a byte of a body that never ends every 0.1 s, until the server closes on it."""
    try:
        while True:
            c.send(b"x")
            time.sleep(0.1)
    except OSError:
        failed.set()


@at_the_deadline
def test_at_the_deadline_answers_are_written_and_arriving_ones_answered_503(app):
    """A stop's deadline: an answer still being written is written whole; a request pipelined
    behind an answer, and one whose client keeps sending after the 503, get their 503; the
    client that keeps sending is then closed on, and the daemon exits."""
    big = connect(app, b"GET /big HTTP/1.1\r\nHost: sesame\r\n\r\n", rcvbuf=65536)
    first = big.recv(1)  # the answer is being written
    piped = connect(app, REQUEST + REQUEST[:SPLITS["body"]])
    status, _, body, more = read_response(piped)
    assert (status, json.loads(body), more) == (401, LOGIN_FAILED, b"")
    server_read(app.port, piped)
    streaming = start_partial(app, ENDLESS)
    failed = threading.Event()
    sender = threading.Thread(target=keep_sending, args=(streaming, failed), daemon=True)
    with big, piped, streaming:
        retire(app, signal.SIGTERM, arriving=3)
        sender.start()
        app.wait_log("shutdown timeout", timeout=WAIT)
        status, headers, body = answer(big, first)
        # Answered before the drain: kept alive, then closed as idle once written.
        assert (status, headers.get("connection"), len(body["pad"])) == (200, None, BIG)
        assert_503(piped)
        status, headers, body, _ = read_response(streaming)
        assert (status, headers["connection"], json.loads(body)) == (503, "close", SHUTTING_DOWN)
        assert failed.wait(WAIT), "the connection of the client still sending was never closed"
    sender.join()
    assert app.proc.wait(WAIT) == 0
