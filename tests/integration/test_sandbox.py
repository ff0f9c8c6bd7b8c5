"""The route scripts' sandbox: no bytecode, no modules from elsewhere, no ways out."""
import os

import pytest

PROBE = r'''local sesame = require "sesame"

local function try(f, ...)
  local ok, err = pcall(f, ...)
  return { ok = ok, err = not ok and tostring(err) or sesame.null }
end

sesame.route("GET", "/probe", function(req)
  local keys = {}
  for k in pairs(os) do keys[#keys + 1] = k end
  table.sort(keys)
  local bytecode_fn, bytecode_err = load("\27Lua\84\0\25\147\13\10\26\10", "x", "b")
  return 200, {
    dump = type(string.dump), dump_method = type(("x").dump),
    getenv = type(os.getenv), os = table.concat(keys, " "),
    loadlib = type(package.loadlib), searchpath = type(package.searchpath),
    cpath = package.cpath, searchers = #package.searchers,
    bytecode = bytecode_fn == nil and bytecode_err or "loaded",
    count = type(collectgarbage("count")),
    collect = try(collectgarbage), stop = try(collectgarbage, "stop"),
    step = try(collectgarbage, "step"),
  }
end)

sesame.route("GET", "/require", function(req)
  local ok, mod = pcall(require, req.query.name)
  if not ok then return 200, { ok = false, err = tostring(mod) } end
  return 200, { ok = true, value = mod.value }
end)

sesame.route("GET", "/require/moved", function(req)
  package.path = req.query.path
  package.searchers[2] = package.searchers[2]
  local ok, mod = pcall(require, req.query.name)
  return 200, { ok = ok, err = not ok and tostring(mod) or sesame.null }
end)

sesame.route("GET", "/read", function(req)
  local data, err = sesame.readfile(req.query.path)
  return 200, { data = data or sesame.null, err = err or sesame.null }
end)
'''


@pytest.fixture
def box(sesamed, tmp_path):
    s = sesamed(routes={"probe.lua": PROBE}, workers=1, start=False)
    lib = s.routes_dir / "lib"
    lib.mkdir()
    (lib / "helper.lua").write_text('return { value = "from the route folder" }\n')
    (lib / "compiled.lua").write_bytes(b"\x1bLua\x54\x00\x19\x93\r\n\x1a\n" + b"\0" * 32)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.lua").write_text('return { value = "from outside" }\n')
    (outside / "secret.txt").write_text("not for scripts")
    os.symlink(outside / "secret.txt", s.dir / "link.txt")
    (s.dir / "inside.txt").write_text("for scripts")
    s.outside = outside
    return s.start()


def test_no_bytecode_getenv_loadlib_or_collector_control(box):
    p = box.get("/probe").json()
    assert p["dump"] == "nil" and p["dump_method"] == "nil"
    assert p["getenv"] == "nil"
    assert p["os"] == "clock date difftime time"
    assert p["loadlib"] == "nil" and p["searchpath"] == "nil" and p["cpath"] == ""
    assert p["searchers"] == 2
    assert "attempt to load a binary chunk" in p["bytecode"]
    assert p["count"] == "number"
    for option in ("collect", "stop", "step"):
        assert p[option]["ok"] is False
        assert 'only "count" is' in p[option]["err"]


def test_require_finds_source_in_the_route_folder(box):
    assert box.get("/require", params={"name": "lib.helper"}).json() == {
        "ok": True, "value": "from the route folder"}


def test_require_refuses_a_precompiled_module(box):
    r = box.get("/require", params={"name": "lib.compiled"}).json()
    assert r["ok"] is False and "attempt to load a binary chunk" in r["err"]


def test_require_ignores_a_changed_package_path(box):
    r = box.get("/require/moved", params={"path": f"{box.outside}/?.lua", "name": "evil"}).json()
    assert r["ok"] is False and "module 'evil' not found" in r["err"]
    assert str(box.outside) not in r["err"]
    r = box.get("/require", params={"name": "lib.helper"}).json()
    assert r["ok"] is True


@pytest.mark.parametrize("path,data", [("inside.txt", "for scripts"), ("./routes/../inside.txt",
                                                                       "for scripts")])
def test_readfile_reads_below_the_configuration_folder(box, path, data):
    assert box.get("/read", params={"path": path}).json() == {"data": data, "err": None}
    assert box.get("/read", params={"path": str(box.dir / path)}).json()["data"] == data


def test_readfile_refuses_every_way_out(box):
    for path in ("../outside/secret.txt", "/etc/passwd", str(box.outside / "secret.txt"),
                 "link.txt", "routes/../../outside/secret.txt", "/"):
        r = box.get("/read", params={"path": path}).json()
        assert r == {"data": None, "err": "outside the configuration folder"}, path
    r = box.get("/read", params={"path": "missing.txt"}).json()
    assert r == {"data": None, "err": "No such file or directory"}
