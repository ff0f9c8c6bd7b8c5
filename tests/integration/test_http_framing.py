"""Strict request framing (RFC 9112 6.3, 5.1): every head two readers could delimit differently
is refused with a 400 in JSON and its connection closed, so that no byte after it is read as a
request (request smuggling). Raw sockets: these requests are malformed on purpose."""
import json

import pytest

from conftest import raw_answers as answers, raw_exchange as exchange, route_file

APP = {"app.lua": route_file("app.lua")}
POST = b"POST /raw HTTP/1.1\r\nHost: x\r\n"
# The request a smuggler hides after the first: it must never be answered.
NEXT = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def app(sesamed):
    return sesamed("timeout = 3,", routes=APP)


REFUSED = [
    (POST + b"Content-Length: 10\r\nContent-Length: 5\r\n\r\nhello" + NEXT,
     "more than one Content-Length header"),
    (POST + b"Content-Length: 5\r\nContent-Length: 10\r\n\r\nhello" + NEXT,
     "more than one Content-Length header"),
    (POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + NEXT,
     "more than one Content-Length header"),
    (POST + b"Content-Length: 5, 5\r\n\r\nhello" + NEXT, "invalid Content-Length"),
    (POST + b"Content-Length: +5\r\n\r\nhello" + NEXT, "invalid Content-Length"),
    (POST + b"Content-Length: -1\r\n\r\nhello" + NEXT, "invalid Content-Length"),
    (POST + b"Content-Length: five\r\n\r\nhello" + NEXT, "invalid Content-Length"),
    (POST + b"Content-Length: 99999999999999999999999\r\n\r\nhello" + NEXT,
     "invalid Content-Length"),
    (POST + b"Content-Length : 5\r\n\r\nhello" + NEXT, "malformed header name"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n" + NEXT, "malformed header name"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + NEXT,
     "more than one Host header"),
    (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + NEXT,
     "unsupported Transfer-Encoding"),
    (b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + NEXT,
     "a HEAD request has no body"),
    (b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + NEXT, "malformed request target"),
    (b"GET /healthz  HTTP/1.1\r\nHost: x\r\n\r\n" + NEXT, "malformed request target"),
    # libevent refuses these before sesame's check can name the reason.
    (POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + NEXT, None),
    (POST + b"Transfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc" + NEXT, None),
    (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n" + NEXT, None),
]


@pytest.mark.parametrize("data,error", REFUSED, ids=range(len(REFUSED)))
def test_ambiguous_framing_is_refused_and_the_connection_closed(app, data, error):
    method = data.split(b" ")[0].decode()
    got = answers(exchange(app, data), [method])
    assert len(got) == 1, got  # the request after it was never read
    status, fields, body = got[0]
    assert status == 400
    assert fields["content-type"] == "application/json"
    assert fields["connection"] == "close"
    if method == "HEAD":  # the length of the body a GET would get, and no body
        assert body == b""
        expected = json.dumps({"result": "fail", "error": error}, separators=(",", ":"))
        assert int(fields["content-length"]) == len(expected)
        return
    assert json.loads(body)["result"] == "fail"
    if error is not None:
        assert json.loads(body)["error"] == error


def test_huge_chunk_size_is_413_not_a_crash(app):
    data = POST + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n" + NEXT
    got = answers(exchange(app, data))
    assert [g[0] for g in got] == [413]
    assert json.loads(got[0][2]) == {"result": "fail", "error": "request too large"}
    assert app.get("/healthz").status_code == 200


def test_well_framed_requests_pipeline(app):
    data = (POST + b"Content-Length: 5\r\n\r\nhello" +
            POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = answers(exchange(app, data))
    assert [g[0] for g in got] == [200, 200, 200]
    assert json.loads(got[0][2])["body"] == "hello"
    assert json.loads(got[1][2])["body"] == "abc"


def test_bare_lf_line_endings_are_read_as_libevent_does(app):
    """Pinned: libevent reads a bare LF as a line end (RFC 9112 2.2 allows it)."""
    got = answers(exchange(app, b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n"))
    assert [g[0] for g in got] == [200]


def test_obs_fold_is_joined_with_a_space(app):
    """Pinned: libevent replaces an obs-fold with a space (RFC 9112 5.2 allows it); a fold
    cannot reach the framing headers unnoticed, as their values are checked whole."""
    got = answers(exchange(app, b"GET /request HTTP/1.1\r\nHost: x\r\nX-Custom: a\r\n b\r\n"
                                b"Connection: close\r\n\r\n"))
    assert got[0][0] == 200
    assert json.loads(got[0][2])["custom"] == "a b"
    folded = POST + b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc" + NEXT
    assert [g[0] for g in answers(exchange(app, folded))] == [400]
