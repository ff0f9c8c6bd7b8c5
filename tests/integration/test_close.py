"""To-be-closed variables of a handler that sesame abandons (its deadline passed, its client
left, its instruction budget ran out): they are closed, with a budget of their own, where
nothing can wait but sesame.defer can start what must; an error raised there is logged with
the route's name and the worker goes on serving. A route's undo (`local undo <close> = ...`,
the default registration's) relies on it."""
import os
import socket

from test_process import wait_reader

SCRIPT = r'''local sesame = require "sesame"

-- What the to-be-closed value does when it is closed.
local closers = {
  defer = function(name)
    sesame.defer(function() sesame.log.info("closed: the task of " .. name .. " ran") end)
  end,
  error = function() error("the close failed on purpose") end,
  wait = function() sesame.readfile("sesame.lua") end,
  spin = function() while true do end end,
  emit = function(name) sesame.emit("closed", { name = name }) end,
}

sesame.on("closed", function(e) sesame.log.info("closed: the handler of " .. e.name .. " ran") end)

local function guard(how, name)
  return setmetatable({}, { __close = function() closers[how](name) end })
end

sesame.route("GET", "/wait", function(req)
  local g <close> = guard(req.query["then"], req.query.name)
  sesame.readfile(req.query.fifo)
  return 200, { result = "success" }
end)

sesame.route("GET", "/spin", function(req)
  local g <close> = guard(req.query["then"], req.query.name)
  while true do end
end)

-- Spends its budget in table.sort's comparator, which C code calls: no yield can stop it.
sesame.route("GET", "/sort", function(req)
  local g <close> = guard(req.query["then"], req.query.name)
  table.sort({ 3, 2, 1 }, function(a, b) while true do end end)
end)

-- Neither pcall catches the budget's error: the lines after it never run.
sesame.route("GET", "/pcall", function(req)
  if req.query.sort then
    pcall(table.sort, { 3, 2, 1 }, function(a, b) while true do end end)
  else
    pcall(function() while true do end end)
  end
  sesame.log.info("after the pcall of " .. req.query.name)
  return 200, { result = "success" }
end)

-- A task that is a pcall itself: no instruction of Lua runs after it catches the error.
sesame.route("GET", "/deferpcall", function(req)
  sesame.defer(pcall, table.sort, { 3, 2, 1 }, function(a, b) while true do end end)
  return 200, { result = "success" }
end)

-- About a tenth of the budget: answered on any coroutine that counts at the usual pace.
sesame.route("GET", "/work", function(req)
  local n = 0
  for i = 1, 20000 do n = n + i end
  return 200, { n = n }
end)
'''
ROUTES = {"closing.lua": SCRIPT}


def release(fd):
    os.write(fd, b"done")
    os.close(fd)


def fifo_in(s, name):
    fifo = s.dir / name  # sesame.readfile reads below the configuration folder only
    os.mkfifo(fifo)
    return fifo


def test_a_handler_past_its_deadline_closes_its_variables(sesamed):
    s = sesamed("handler_timeout = 1,", routes=ROUTES, workers=1)
    for how in ("defer", "error", "wait"):
        fifo = fifo_in(s, how)
        r = s.get("/wait", params={"fifo": str(fifo), "then": how, "name": "timed-out"})
        assert r.status_code == 503 and r.json()["error"] == "request timed out"
        release(wait_reader(fifo))
    s.wait_log("closed: the task of timed-out ran")
    failed = "GET /wait: closing the handler's to-be-closed variables failed: "
    s.wait_log(failed, count=2)
    lines = [x for x in s.log().splitlines() if failed in x]
    assert any("the close failed on purpose" in x for x in lines), lines
    assert any("sesame.readfile waits for a job thread" in x for x in lines), lines
    assert s.get("/healthz").status_code == 200


def test_the_events_of_a_closing_start_their_handlers(sesamed):
    s = sesamed("handler_timeout = 1,", routes=ROUTES, workers=1)
    fifo = fifo_in(s, "emit")
    r = s.get("/wait", params={"fifo": str(fifo), "then": "emit", "name": "emitter"})
    assert r.status_code == 503
    release(wait_reader(fifo))
    s.wait_log("closed: the handler of emitter ran")
    assert '"event":"closed"' in s.log()


def test_a_handler_whose_client_left_closes_its_variables(sesamed):
    s = sesamed(routes=ROUTES, workers=1)
    fifo = fifo_in(s, "gone")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(f"GET /wait?fifo={fifo}&then=defer&name=gone HTTP/1.1\r\n"
                  f"Host: x\r\n\r\n".encode())
        writer = wait_reader(fifo)
    # The worker saw the client leave (its access line says 499); the job still holds the
    # call until its file read ends.
    s.wait_log('"status":499')
    assert "closed: the task of gone ran" not in s.log()
    release(writer)
    s.wait_log("closed: the task of gone ran")
    assert s.get("/healthz").status_code == 200


def test_a_handler_past_its_budget_closes_its_variables_within_a_budget(sesamed):
    s = sesamed("handler_instructions = 1000000,", routes=ROUTES, workers=1)
    r = s.get("/spin", params={"then": "defer", "name": "runaway"})
    assert r.status_code == 500
    s.wait_log("closed: the task of runaway ran")
    # A close that runs away too is stopped by its own budget, and logged.
    r = s.get("/spin", params={"then": "spin", "name": "twice"})
    assert r.status_code == 500
    failed = "GET /spin: closing the handler's to-be-closed variables failed: "
    s.wait_log(failed)
    line = next(x for x in s.log().splitlines() if failed in x)
    assert "instruction budget" in line, line
    assert s.get("/healthz").status_code == 200


def test_a_budget_spent_where_no_yield_can_stop_it_leaves_the_variables_unclosed(sesamed):
    # Lua would close them with the thread's hooks off: a __close that loops would hang the
    # worker until the hang reaper kills it.
    s = sesamed("handler_instructions = 1000000,", routes=ROUTES, workers=1)
    workers = s.workers()
    r = s.get("/sort", params={"then": "spin", "name": "sorted"})
    assert r.status_code == 500
    s.wait_log("GET /sort: handler failed: ")
    s.wait_log("GET /sort: the handler's to-be-closed variables are not closed: its "
               "instruction budget ran out where it could not yield")
    assert s.get("/healthz").status_code == 200
    assert s.workers() == workers
    # A handler spending it in a yieldable place still closes them.
    assert s.get("/spin", params={"then": "defer", "name": "after"}).status_code == 500
    s.wait_log("closed: the task of after ran")


def test_no_pcall_catches_the_instruction_budget(sesamed):
    s = sesamed("handler_instructions = 1000000,", routes=ROUTES, workers=1)
    failed = "GET /pcall: handler failed: handler exceeded its instruction budget"
    for n, params in enumerate(({"name": "loop"}, {"name": "sort", "sort": "1"}), 1):
        r = s.get("/pcall", params=params)
        assert r.status_code == 500 and r.json()["error"] == "internal server error"
        s.wait_log(failed, count=n)
    # The failure is logged as the handler ends: a line after the pcall would come before it.
    assert "after the pcall" not in s.log()


def test_a_task_that_is_a_pcall_does_not_catch_the_budget_either(sesamed):
    s = sesamed("handler_instructions = 1000000,", routes=ROUTES, workers=1)
    assert s.get("/deferpcall").status_code == 200
    s.wait_log("sesame.defer: task failed: handler exceeded its instruction budget")
    # Its coroutine is not pooled counting every instruction: the next handlers, on the same
    # worker's coroutines, keep their whole budget.
    for _ in range(20):
        r = s.get("/work")
        assert r.status_code == 200 and r.json()["n"] == 200010000
