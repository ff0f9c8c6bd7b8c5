"""Forward auth judges the client's method; cookie paths, prefixes and ages; header values."""
import shutil
import subprocess

import pytest
import requests

from conftest import SESAMED, TOP, free_port, nginx_conf, stop_process, wait_for

SECRET = "fwdauth-tests-secret-0123456789abcdef"
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua")}
USER = {"email": "eve@example.com", "username": "eve", "password": "correct horse"}


def cookie_app(sesamed, mariadb, jwt_extra=""):
    more = mariadb.storage(mariadb.database) + \
        f'jwt = {{ secret = "{SECRET}", cookies = true, {jwt_extra} }}\n'
    return sesamed(routes=ROUTES, more=more)


def cookies_of(r):
    """Set-Cookie headers by cookie name: {name: header}."""
    return {c.split("=", 1)[0]: c for c in r.raw.headers.getlist("Set-Cookie")}


def attrs(header):
    return dict((p.split("=", 1) + [""])[:2] for p in header.split("; ")[1:])


def logged_in(s):
    r = s.post("/users/register", json=USER)
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
def app(sesamed, mariadb):
    s = cookie_app(sesamed, mariadb, "cookie_secure = false")
    r = logged_in(s)
    s.access = r.cookies["access_token_cookie"]
    s.csrf = r.cookies["csrf_access_token"]
    s.bearer = r.json()["access_token"]
    return s


def verify(s, headers=None, cookie=True):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"access_token_cookie={s.access}"
    return s.get("/auth/verify", headers=h)


@pytest.mark.parametrize("header", ["X-Forwarded-Method", "X-Original-Method"])
def test_forwarded_state_changing_method_needs_the_csrf_header(app, header):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = verify(app, {header: method})
        assert r.status_code == 401 and r.json()["error"] == "missing or wrong CSRF token"
        assert verify(app, {header: method, "X-CSRF-TOKEN": "x" * len(app.csrf)}).status_code == 401
        r = verify(app, {header: method, "X-CSRF-TOKEN": app.csrf})
        assert r.status_code == 200 and r.headers["X-Auth-User"] == "1"
    for method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        assert verify(app, {header: method}).status_code == 200


def test_an_unknown_client_method_is_judged_as_a_write(app):
    # No method header: the proxy did not say, so the cookie needs the CSRF header.
    assert verify(app).status_code == 401
    assert verify(app, {"X-CSRF-TOKEN": app.csrf}).status_code == 200
    # Two headers that disagree: the write wins.
    both = {"X-Forwarded-Method": "GET", "X-Original-Method": "POST"}
    assert verify(app, both).status_code == 401
    assert verify(app, {"X-Forwarded-Method": "get"}).status_code == 401


def test_bearer_tokens_need_no_csrf_header(app):
    auth = {"Authorization": f"Bearer {app.bearer}"}
    for headers in ({}, {"X-Forwarded-Method": "POST"}, {"X-Original-Method": "DELETE"}):
        assert verify(app, dict(auth, **headers), cookie=False).status_code == 200


def test_the_method_header_counts_only_on_the_forward_auth_route(app):
    # /users/me is no forward-auth route: a GET is a GET whatever a header claims.
    h = {"Cookie": f"access_token_cookie={app.access}", "X-Forwarded-Method": "POST"}
    assert app.get("/users/me", headers=h).status_code == 200


def test_refresh_cookie_path_and_unset_cookies(sesamed, mariadb):
    s = cookie_app(sesamed, mariadb, "cookie_secure = false")
    set_ = cookies_of(logged_in(s))
    assert attrs(set_["refresh_token_cookie"])["Path"] == "/token/refresh"
    for name in ("access_token_cookie", "csrf_access_token", "csrf_refresh_token"):
        assert attrs(set_[name])["Path"] == "/"
    # The browser sends the refresh cookie to the refresh route only; it works there.
    jar = requests.Session()
    r = jar.post(s.url + "/users/login", json={"email": USER["email"], "password": USER["password"]})
    assert r.status_code == 200
    r = jar.post(s.url + "/token/refresh", headers={"X-CSRF-TOKEN": jar.cookies["csrf_refresh_token"]})
    assert r.status_code == 200, r.text
    r = jar.post(s.url + "/users/logout", headers={"X-CSRF-TOKEN": jar.cookies["csrf_access_token"]})
    assert r.status_code == 200
    cleared = cookies_of(r)
    assert sorted(cleared) == sorted(set_)
    for name, header in cleared.items():
        assert attrs(header)["Max-Age"] == "0"
        assert attrs(header)["Path"] == attrs(set_[name])["Path"]
    assert len(jar.cookies) == 0


def test_refresh_cookie_path_is_a_setting(sesamed, mariadb):
    s = cookie_app(sesamed, mariadb, 'cookie_secure = false, refresh_cookie_path = "/auth/t"')
    assert attrs(cookies_of(logged_in(s))["refresh_token_cookie"])["Path"] == "/auth/t"


@pytest.mark.parametrize("path", ["token", "/a; Domain=evil.example", "/a b", "/a\\tb"])
def test_a_bad_refresh_cookie_path_is_refused(sesamed, path):
    s = sesamed(start=False, more=f'jwt = {{ secret = "{SECRET}", refresh_cookie_path = "{path}" }}\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "jwt.refresh_cookie_path" in r.stderr + r.stdout


@pytest.mark.parametrize("expiry", ["false", "3153600000", "2147483648", "1"])
def test_max_age_never_overflows(sesamed, mariadb, expiry):
    s = cookie_app(sesamed, mariadb,
                   f"cookie_secure = false, refresh_expires = {expiry}, access_expires = {expiry}")
    want = 1 if expiry == "1" else 400 * 86400
    for header in cookies_of(logged_in(s)).values():
        assert int(attrs(header)["Max-Age"]) == want, header


def test_host_prefix(sesamed, mariadb):
    s = cookie_app(sesamed, mariadb, "cookie_host_prefix = true")
    set_ = cookies_of(logged_in(s))
    assert sorted(set_) == ["__Host-access_token_cookie", "__Host-csrf_access_token",
                            "__Host-csrf_refresh_token", "__Secure-refresh_token_cookie"]
    for name, header in set_.items():
        a = attrs(header)
        assert "Secure" in a and "Domain" not in a
        assert a["Path"] == ("/token/refresh" if name.startswith("__Secure-") else "/")
    access = set_["__Host-access_token_cookie"].split(";")[0]
    csrf = set_["__Host-csrf_access_token"].split(";")[0].split("=", 1)[1]
    # Read under the prefixed name only: an unprefixed cookie could be planted by a sibling host.
    ok = s.get("/auth/verify", headers={"Cookie": access, "X-Forwarded-Method": "GET"})
    assert ok.status_code == 200
    plain = "access_token_cookie=" + access.split("=", 1)[1]
    assert s.get("/auth/verify", headers={"Cookie": plain, "X-Forwarded-Method": "GET"}).status_code == 401
    r = s.get("/auth/verify", headers={"Cookie": access, "X-Forwarded-Method": "POST"})
    assert r.status_code == 401
    r = s.get("/auth/verify", headers={"Cookie": access, "X-Forwarded-Method": "POST",
                                        "X-CSRF-TOKEN": csrf})
    assert r.status_code == 200
    refresh = set_["__Secure-refresh_token_cookie"].split(";")[0]
    rcsrf = set_["__Host-csrf_refresh_token"].split(";")[0].split("=", 1)[1]
    r = s.post("/token/refresh", headers={"Cookie": refresh, "X-CSRF-TOKEN": rcsrf})
    assert r.status_code == 200, r.text
    s.post("/users/logout", headers={"Cookie": access, "X-CSRF-TOKEN": csrf})


def test_host_prefix_needs_secure(sesamed):
    s = sesamed(start=False, more=f'jwt = {{ secret = "{SECRET}", cookies = true, '
                                  'cookie_secure = false, cookie_host_prefix = true }\n')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "jwt.cookie_host_prefix" in r.stderr + r.stdout


SPLIT = r'''local sesame = require "sesame"
local bad = {
  cr = { ["X-A"] = "a\rInjected: yes" }, lf = { ["X-A"] = "a\nInjected: yes" },
  nul = { ["X-A"] = "secret-value\0Injected: yes" }, ctl = { ["X-A"] = "a\1b" },
  del = { ["X-A"] = "a\127b" }, name = { ["X-A\r\nInjected"] = "yes" },
  space = { ["X A"] = "v" }, list = { ["X-A"] = { "ok", "b\r\nInjected: yes" } },
  cookie = { ["Set-Cookie"] = { "a=1", "b=2\r\n\r\n<html>" } },
}
sesame.route("GET", "/split/:how", function(req)
  return 200, { result = "success" }, bad[req.params.how]
end)
sesame.route("GET", "/tab", function(req)
  return 200, { result = "success" }, { ["X-A"] = "a\tb \x80" }
end)
'''


@pytest.mark.parametrize("how", ["cr", "lf", "nul", "ctl", "del", "name", "space", "list", "cookie"])
def test_response_splitting_is_refused(sesamed, how):
    s = sesamed(routes={"split.lua": SPLIT})
    r = s.get(f"/split/{how}")
    assert r.status_code == 500 and r.json()["error"] == "internal server error"
    assert "Injected" not in r.headers and "X-A" not in r.headers
    assert r.raw.headers.getlist("Set-Cookie") == []
    s.wait_log("GET /split/:how: header ")
    assert "secret-value" not in s.log() and "Injected: yes" not in s.log()
    assert s.get("/healthz").status_code == 200


def test_a_tab_and_obs_text_are_fine_in_a_value(sesamed):
    s = sesamed(routes={"split.lua": SPLIT})
    r = s.get("/tab")
    assert r.status_code == 200 and r.raw.headers["X-A"].startswith("a\tb")


NGINX_SERVER = """
  server {{
    listen 127.0.0.1:{port};
    location = /_auth {{
      internal;
      proxy_pass {sesame}/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
    }}
    location /api/ {{
      auth_request /_auth;
      auth_request_set $user $upstream_http_x_auth_user;
      add_header X-Seen-User $user always;
      rewrite ^ /healthz break;
      proxy_method GET;
      proxy_pass {sesame};
    }}
  }}
"""


@pytest.fixture
def nginx(tmp_path):
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.os.path.exists(exe):
        pytest.skip("nginx is not installed")
    procs = []

    def start(sesame_url):
        d = tmp_path / "nginx"
        d.mkdir()
        port = free_port()
        (d / "nginx.conf").write_text(
            nginx_conf(d, NGINX_SERVER.format(port=port, sesame=sesame_url)))
        p = subprocess.Popen([exe, "-p", str(d), "-c", str(d / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                requests.get(url + "/", timeout=1)
                return True
            except requests.ConnectionError:
                return False
        assert wait_for(up), (d / "error.log").read_text()
        return url

    yield start
    for p in procs:
        stop_process(p, 10)


def test_nginx_auth_request_passes_the_method(app, nginx):
    url = nginx(app.url)
    cookie = {"Cookie": f"access_token_cookie={app.access}"}
    r = requests.get(url + "/api/x", headers=cookie, timeout=10)
    assert r.status_code == 200 and r.headers["X-Seen-User"] == "1"
    assert requests.post(url + "/api/x", headers=cookie, timeout=10).status_code == 401
    r = requests.post(url + "/api/x", headers=dict(cookie, **{"X-CSRF-TOKEN": app.csrf}),
                      timeout=10)
    assert r.status_code == 200
    # A client cannot claim a safer method: nginx sets the header itself.
    r = requests.post(url + "/api/x", headers=dict(cookie, **{"X-Original-Method": "GET"}),
                      timeout=10)
    assert r.status_code == 401
    r = requests.delete(url + "/api/x", headers={"Authorization": f"Bearer {app.bearer}"},
                        timeout=10)
    assert r.status_code == 200
