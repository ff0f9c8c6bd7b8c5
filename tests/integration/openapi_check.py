"""openapi_check: every answer the integration tests get from sesamed's default routes, checked
against docs/openapi.yaml, so that the document cannot drift from the daemon.

conftest.py wraps requests.Session.send (which requests.get, .post and .request go through as
well) for the whole session, and tells the Checker which route scripts each server it starts
runs. An answer counts when its server runs some of the shipped scripts (etc/sesame/routes)
unchanged; where a test's own script serves the same path, or could serve an unknown one, the
answer is left alone. A counted answer must have a status documented for its path and method
(or one of the document's x-unrouted and x-transport-errors answers), the documented
Content-Type, a body valid against the response's schema (JSON Schema 2020-12, the document's
$refs resolved once, validators compiled once), every required header, and valid values in
the documented ones. The operation and status of each counted answer is noted for the
coverage check that a whole-suite run ends with.
"""
import copy
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import requests
import yaml
from requests.structures import CaseInsensitiveDict

TOP = Path(__file__).resolve().parents[2]
DOC = TOP / "docs" / "openapi.yaml"
SHIPPED = TOP / "etc" / "sesame" / "routes"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# sesame.route("METHOD", "/path", ...) in a route script, either quote.
ROUTE_CALL = re.compile(r"""sesame\.route\(\s*(["'])([A-Z]+)\1\s*,\s*(["'])([^"']+)\3""")
BUILTINS = {("GET", "/healthz"), ("GET", "/readyz")}
# Answers libevent gives before a route is chosen carry no X-Request-Id; every other does.
TRANSPORT = "(transport)"
UNROUTED = "(unrouted)"


class Violation(AssertionError):
    """An answer that the document does not describe."""


def routes_in(text):
    """The (METHOD, path) pairs a route script registers."""
    return {(m.group(2), m.group(4)) for m in ROUTE_CALL.finditer(text)}


def shipped_routes():
    return set().union(*(routes_in(p.read_text()) for p in SHIPPED.glob("*.lua")))


def builtin_routes(sesamed):
    """The daemon's built-in routes: /metrics when this build of sesamed has it."""
    found = set(BUILTINS)
    try:
        if b"\x00/metrics\x00" in Path(sesamed).read_bytes():
            found.add(("GET", "/metrics"))
    except OSError:
        pass
    return found


class Document:
    """docs/openapi.yaml, with its $refs followed and its schemas compiled on first use."""

    def __init__(self, path=DOC):
        self.doc = yaml.safe_load(Path(path).read_text())
        self.validators = {}
        self.templates = []
        for template in self.doc["paths"]:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            self.templates.append((template, re.compile(pattern + r"\Z"), "{" not in template))
        self.templates.sort(key=lambda t: not t[2])  # a literal path wins

    def pointer(self, ref):
        if not ref.startswith("#/"):
            raise KeyError(f"$ref {ref!r} is not local to the document")
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(self, node):
        """node, or what its $ref (and theirs) point to."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            if node["$ref"] in seen:
                raise KeyError(f"$ref cycle at {node['$ref']}")
            seen.add(node["$ref"])
            node = self.pointer(node["$ref"])
        return node

    def inline(self, node, trail=()):
        """A copy of a schema with every $ref replaced by what it points to."""
        if isinstance(node, dict):
            if "$ref" in node:
                ref = node["$ref"]
                if ref in trail:
                    raise KeyError(f"recursive schema at {ref}")
                return self.inline(self.pointer(ref), trail + (ref,))
            return {k: self.inline(v, trail) for k, v in node.items()}
        if isinstance(node, list):
            return [self.inline(v, trail) for v in node]
        return copy.copy(node)

    def validator(self, key, schema):
        v = self.validators.get(key)
        if v is None:
            v = jsonschema.Draft202012Validator(self.inline(schema))
            self.validators[key] = v
        return v

    def match(self, path):
        for template, pattern, _ in self.templates:
            if pattern.match(path):
                return template
        return None

    def operation(self, method, template):
        return self.doc["paths"][template].get(method.lower())

    def extension(self, name, status):
        """The response of x-unrouted or x-transport-errors for status, or None."""
        found = self.doc.get(name, {}).get(str(status))
        return self.resolve(found) if found is not None else None

    def operations(self):
        """(METHOD, path, status, response) of every documented answer."""
        for template, item in self.doc["paths"].items():
            for method in HTTP_METHODS:
                op = item.get(method)
                for status, response in (op or {}).get("responses", {}).items():
                    yield method.upper(), template, status, self.resolve(response)


class Scope:
    """What a server serves: the documented routes of its shipped scripts and built-ins, and
    the paths its other scripts serve."""

    def __init__(self, shipped, custom_paths, has_custom):
        self.served = shipped
        self.paths = {p for _, p in shipped}
        self.custom_paths = custom_paths
        self.has_custom = has_custom


class Checker:
    def __init__(self, sesamed, document=None):
        self.document = document or Document()
        self.builtins = builtin_routes(sesamed)
        self.shipped = {p.name: p.read_text() for p in SHIPPED.glob("*.lua")}
        self.servers = {}
        self.seen = set()
        self.raw_seen = set()
        self.lock = threading.Lock()
        self.pending = []
        self.original_send = None

    # ---- servers ----

    def serve(self, url, routes_dir):
        """The server at url runs the route scripts in routes_dir (*.lua)."""
        shipped, custom, custom_paths = set(), False, set()
        for p in Path(routes_dir).glob("*.lua"):
            text = p.read_text(errors="replace")
            if self.shipped.get(p.name) == text:
                shipped |= routes_in(text)
            else:
                custom = True
                custom_paths |= {path for _, path in routes_in(text)}
        with self.lock:
            if shipped:
                self.servers[url] = Scope(shipped | self.builtins, custom_paths, custom)
            else:
                self.servers.pop(url, None)

    def forget(self, url):
        with self.lock:
            self.servers.pop(url, None)

    # ---- requests ----

    def install(self):
        self.original_send = requests.Session.send
        checker = self

        def send(session, request, **kw):
            response = checker.original_send(session, request, **kw)
            if not kw.get("stream"):
                checker.check_response(response)
            return response

        requests.Session.send = send

    def uninstall(self):
        if self.original_send is not None:
            requests.Session.send = self.original_send
            self.original_send = None

    def check_response(self, response):
        __tracebackhide__ = True
        url = urlsplit(response.request.url)
        base = f"{url.scheme}://{url.netloc}"
        self.check(base, response.request.method, url.path or "/", response.status_code,
                   response.headers, response.content)

    def check_raw(self, base, method, path, status, headers, body):
        """An answer read off a socket by a test's own client; each distinct answer once."""
        key = (base, method, path, status, tuple(sorted(headers)), bytes(body))
        with self.lock:
            if key in self.raw_seen:
                return
            self.raw_seen.add(key)
        self.check(base, method, path, status, CaseInsensitiveDict(headers), body)

    def check_exchange(self, base, request, answer):
        """The first answer in bytes read off a socket, to the request bytes sent."""
        __tracebackhide__ = True
        words = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = CaseInsensitiveDict(
            (k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
        if "Content-Length" in headers:
            body = body[:int(headers["Content-Length"])]
        self.check(base, words[0], words[1] if len(words) > 1 else "", int(lines[0].split()[1]),
                   headers, body)

    def check(self, base, method, path, status, headers, body):
        __tracebackhide__ = True
        with self.lock:
            scope = self.servers.get(base)
        if scope is None:
            return
        problems = self.judge(scope, method.upper(), path, status, headers, body)
        if not problems:
            return
        shown = body[:300].decode("utf-8", "replace") if body else ""
        message = (f"{method} {path} answered {status}, which docs/openapi.yaml does not "
                   f"describe:\n  " + "\n  ".join(problems) + f"\n  body: {shown}")
        if threading.current_thread() is threading.main_thread():
            raise Violation(message)
        with self.lock:
            self.pending.append(message)

    def take_pending(self):
        with self.lock:
            found, self.pending = self.pending, []
        return found

    # ---- judging ----

    def response_for(self, scope, method, path, status):
        """(coverage key, response object) for an answer, or (None, problem)."""
        doc = self.document
        lookup = "GET" if method == "HEAD" else method
        template = doc.match(path)
        if template is not None and template in scope.custom_paths:
            return None, None
        if template is not None and template in scope.paths:
            if (lookup, template) in scope.served:
                op = doc.operation(lookup, template)
                response = op["responses"].get(str(status)) if op else None
                if response is not None:
                    return (lookup, template, str(status)), doc.resolve(response)
                where = f"{lookup} {template}"
            elif str(status) == "405":
                return (UNROUTED, "405"), doc.extension("x-unrouted", 405)
            else:
                where = f"{method} {template} (not served: 405 expected)"
        elif scope.has_custom:
            return None, None
        elif str(status) == "404":
            return (UNROUTED, "404"), doc.extension("x-unrouted", 404)
        else:
            where = f"unknown path {path} (404 expected)"
        transport = doc.extension("x-transport-errors", status)
        if transport is not None:
            return (TRANSPORT, str(status)), transport
        return None, f"status {status} is not documented for {where}"

    def judge(self, scope, method, path, status, headers, body):
        key, response = self.response_for(scope, method, path, status)
        if key is None:
            return [response] if response else []
        with self.lock:
            self.seen.add(key)
        problems = self.judge_headers(key, response, headers)
        content = response.get("content") or {}
        ctype = headers.get("Content-Type")
        essence = ctype.split(";")[0].strip().lower() if ctype else None
        if not content:
            if body:
                problems.append("a body where the document has none")
            return problems
        if essence not in content:
            problems.append(f"Content-Type {ctype!r}, documented: {', '.join(content)}")
            return problems
        if method == "HEAD" or not body and status in (204, 304):
            return problems
        schema = content[essence].get("schema")
        if schema is None:
            return problems
        if essence == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                return problems + [f"the body is not JSON: {e}"]
        else:
            value = body.decode("utf-8", "replace")
        validator = self.document.validator(key + ("body", essence), schema)
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path))[:3]:
            where = "/".join(str(p) for p in error.path) or "(the body)"
            problems.append(f"body {where}: {error.message}")
        return problems

    def judge_headers(self, key, response, headers):
        problems = []
        for name, header in (response.get("headers") or {}).items():
            header = self.document.resolve(header)
            if name.lower() == "content-type":
                continue
            value = headers.get(name)
            if value is None:
                if header.get("required"):
                    problems.append(f"header {name} is missing")
                continue
            schema = header.get("schema")
            if schema is None:
                continue
            validator = self.document.validator(key + ("header", name), schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                problems.append(f"header {name}: {error.message}")
        return problems

    # ---- coverage ----

    def expected(self):
        """The documented answers a run of the whole suite must have seen: those of the
        routes that the shipped scripts and this sesamed's built-ins serve, less the ones
        marked x-untested."""
        served = shipped_routes() | self.builtins
        doc = self.document
        want = {(m, p, s) for m, p, s, r in doc.operations()
                if (m, p) in served and not r.get("x-untested")}
        for name, tag in (("x-unrouted", UNROUTED), ("x-transport-errors", TRANSPORT)):
            for status in doc.doc.get(name, {}):
                if not doc.extension(name, status).get("x-untested"):
                    want.add((tag, str(status)))
        return want

    def misses(self):
        with self.lock:
            return sorted(self.expected() - self.seen)
