"""The route scripts' sandbox: no bytecode, no modules from elsewhere, no ways out."""
import os
import re

import pytest

from test_process import run_check

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


# What Lua runs with its hooks off, where no instruction budget reaches: a finalizer, and a
# message handler called for the budget's own error. Neither may hang a worker.
HOOKS_OFF = r'''local sesame = require "sesame"

local function spin() while true do end end
local function try(f, ...)
  local ok, err = pcall(f, ...)
  return { ok = ok, err = not ok and tostring(err) or sesame.null }
end

sesame.route("GET", "/metatables", function(req)
  local plain = setmetatable({}, { __index = function(_, k) return k .. "!" end })
  return 200, {
    plain = plain.x,
    finalizer = try(setmetatable, {}, { __gc = function() end }),
    false_finalizer = try(setmetatable, {}, { __gc = false }),
    request = tostring(getmetatable(req)),
    array = tostring(getmetatable(sesame.array())),
    decoded = tostring(getmetatable(sesame.json.decode("[1]"))),
    array_changed = try(function() setmetatable(sesame.array(), {}) end),
    empty = sesame.array(),
  }
end)

-- The budget runs out in a comparator, where no yield can stop the handler: the message
-- handler, which loops too, is not run for that error.
sesame.route("GET", "/xpcall/budget", function(req)
  xpcall(table.sort, spin, { 3, 2, 1 }, function(a, b) spin() end)
  sesame.log.info("after the xpcall")
  return 200, { result = "success" }
end)

-- For any other error the message handler runs, counted as the handler's own lines.
sesame.route("GET", "/xpcall/ordinary", function(req)
  return 200, { xpcall(error, function(e) return "handled: " .. e end, "boom", 0) }
end)

sesame.route("GET", "/xpcall/handler", function(req)
  if req.query.spin then
    xpcall(error, spin, "boom")
  end
  local a = { xpcall(error, function(e) return "handled: " .. e end, "boom", 0) }
  local b = { xpcall(function(x)
    local text = sesame.readfile("sesame.lua") -- yields inside the xpcall
    return x, #text > 0
  end, spin, 7) }
  local c = { xpcall(function() error({ code = 3 }) end, function(e) return e.code end) }
  return 200, { a = a, b = b, c = c }
end)
'''


@pytest.fixture
def hooks_off(sesamed):
    return sesamed("handler_instructions = 1000000, hang_timeout = 3,",
                   routes={"hooks.lua": HOOKS_OFF}, workers=1)


def test_no_finalizers_and_sesames_own_metatables_are_protected(hooks_off):
    m = hooks_off.get("/metatables").json()
    assert m["plain"] == "x!"
    for key in ("finalizer", "false_finalizer"):
        assert m[key]["ok"] is False
        assert "no __gc finalizers here" in m[key]["err"]
        assert "to-be-closed variable" in m[key]["err"]
    assert m["request"] == m["array"] == m["decoded"] == "false"
    assert m["array_changed"]["ok"] is False
    # Said where the script called it, as Lua's own setmetatable says it.
    assert re.fullmatch(r".*hooks\.lua:\d+: cannot change a protected metatable",
                        m["array_changed"]["err"]), m["array_changed"]["err"]
    assert m["empty"] == []  # still an array, encoded as one


def test_a_message_handler_is_not_run_for_the_budgets_error(hooks_off):
    workers = hooks_off.workers()
    r = hooks_off.get("/xpcall/budget", timeout=15)
    assert r.status_code == 500 and r.json()["error"] == "internal server error"
    hooks_off.wait_log("GET /xpcall/budget: handler failed: handler exceeded its instruction "
                       "budget")
    assert "after the xpcall" not in hooks_off.log()
    assert "hung" not in hooks_off.log()
    assert hooks_off.workers() == workers
    assert hooks_off.get("/healthz").status_code == 200


def test_a_budget_run_out_leaves_the_next_requests_xpcall_as_it_was(hooks_off):
    assert hooks_off.get("/xpcall/ordinary").json() == [False, "handled: boom"]
    assert hooks_off.get("/xpcall/budget", timeout=15).status_code == 500
    for _ in range(2):
        assert hooks_off.get("/xpcall/ordinary").json() == [False, "handled: boom"]


def test_xpcall_runs_the_message_handler_for_other_errors_within_the_budget(hooks_off):
    r = hooks_off.get("/xpcall/handler")
    assert r.status_code == 200, r.text
    assert r.json() == {"a": [False, "handled: boom"], "b": [True, 7, True], "c": [False, 3]}
    # A handler that loops on an ordinary error is counted, and stopped by the budget.
    workers = hooks_off.workers()
    r = hooks_off.get("/xpcall/handler", params={"spin": "1"}, timeout=15)
    assert r.status_code == 500
    hooks_off.wait_log("GET /xpcall/handler: handler failed: handler exceeded its "
                       "instruction budget")
    assert hooks_off.workers() == workers
    assert "hung" not in hooks_off.log()


CATCHING = {
    "pcall": "while true do pcall(function() while true do end end) end\n",
    "xpcall": "xpcall(function() while true do end end, function() while true do end end)\n",
    "tail": "return pcall(function() while true do end end)\n",
}


@pytest.mark.parametrize("script", CATCHING.values(), ids=CATCHING.keys())
def test_a_script_that_catches_the_budget_while_it_loads_is_still_stopped(sesamed, script):
    s = sesamed("handler_instructions = 1000000,", routes={"loop.lua": script}, start=False)
    r = run_check(s.config)
    assert r.returncode == 1
    assert "exceed the instruction budget" in r.stderr, r.stderr


@pytest.mark.parametrize("script", CATCHING.values(), ids=CATCHING.keys())
def test_a_configuration_that_catches_its_budget_is_still_stopped(sesamed, script):
    s = sesamed(start=False)
    s.config.write_text(script)
    r = run_check(s.config)
    assert r.returncode == 1
    assert "the configuration runs too long" in r.stderr, r.stderr


def test_a_configuration_has_no_finalizers_either(sesamed):
    s = sesamed(start=False)
    s.config.write_text("local x = setmetatable({}, { __gc = function() while true do end end })\n")
    r = run_check(s.config)
    assert r.returncode == 1
    assert "no __gc finalizers here" in r.stderr, r.stderr
