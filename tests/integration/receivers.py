"""A real SMTP server (aiosmtpd) and a real HTTP receiver on loopback, for the tests of
sesame.mail.send, sesame.http.request and the account flows. Each runs in a thread of the
test process, on a port of its own, and keeps what it received."""
import email
import email.policy
import http.server
import json
import re
import socket
import threading
import time

from aiosmtpd.controller import Controller


class Relay:
    """A Unix socket that forwards to another, for a node's link to the database: closing it
    takes the storage away from that node alone."""

    def __init__(self, path, target):
        self.path, self.target, self.conns = path, target, []
        self.open()

    def open(self):
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(self.path))
        self.srv.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            u.connect(self.target)
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for sock in (a, b):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.srv.shutdown(socket.SHUT_RDWR)
        self.srv.close()
        self.path.unlink()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns = []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, box):
        self.box = box

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.box.cond:
            self.box.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                      "message": msg,
                                      "raw": envelope.content})
            self.box.cond.notify_all()
        return "250 OK"


class Mailbox:
    """An SMTP server on 127.0.0.1: url is what mail.url takes. messages holds every mail
    received, each a dict: from, to (list), message (an email.message.EmailMessage), raw."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.messages = []
        self.cond = threading.Condition()
        self.controller = None

    def start(self):
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        """Stops the server: a mail sent now finds nobody listening (connection refused)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait(self, to=None, count=1, timeout=15):
        """The mails to `to` (any when None) once there are count of them, newest last;
        fails the test when they do not arrive within timeout seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in self.messages if to is None or to in m["to"]]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {to} within {timeout} s "
                                         f"({len(self.messages)} mails received)")
                self.cond.wait(left)

    def last(self, to=None, timeout=15):
        return self.wait(to=to, timeout=timeout)[-1]

    def sent_to(self, to):
        with self.cond:
            return [m for m in self.messages if to in m["to"]]


def text_of(mail):
    """The text/plain part of a received mail, as a str."""
    msg = mail["message"]
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


def token_in(mail):
    """The one-time token that the mail's link carries: the value of its token= parameter."""
    found = re.search(r"[?&#]token=([A-Za-z0-9_-]+)", text_of(mail))
    assert found, "the mail carries no link with a token:\n" + text_of(mail)
    return found.group(1)


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request (method, path, headers, body,
    json) and answers with status and body (a dict sent as JSON), settable per test; delay
    seconds before it answers."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.body = {"ok": True}
        self.delay = 0
        self.cond = threading.Condition()
        box = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                with box.cond:
                    box.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers), "body": body,
                                         "json": parsed})
                    box.cond.notify_all()
                if box.delay:
                    time.sleep(box.delay)
                out = json.dumps(box.body).encode()
                self.send_response(box.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Receiver", "yes")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count=1, timeout=15):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} requests received, "
                                         f"{count} awaited")
                self.cond.wait(left)
            return list(self.requests)


class HangingMailServer:
    """An SMTP address whose server says nothing at all to whoever connects (a mail server
    that hangs) and holds each connection open; once relay() is called it forwards each new
    connection to the mailbox given (if any). url is what mail.url takes; accepted is set once
    a client is held."""

    def __init__(self, mailbox=None):
        self.target = mailbox.port if mailbox else None
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.relaying = False
        self.held = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def relay(self):
        assert self.target is not None, "no mailbox to relay to"
        self.relaying = True

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.relaying:
                self.held.append(client)
                self.accepted.set()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=Relay.pipe, args=(a, b), daemon=True).start()
