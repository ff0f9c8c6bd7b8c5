-- Routes the integration tests drive: one per behaviour of the Lua API they check.
local sesame = require "sesame"

sesame.route("POST", "/echo", function(req)
  local body = req:json()
  return 200, { result = "success", body = body, again = req:json() == body }
end)

sesame.route("GET", "/request", function(req)
  return 200, {
    method = req.method, path = req.path, query = req.query, cookies = req.cookies,
    agent = req.headers["user-agent"], custom = req.headers["x-custom"],
    remote = req.remote_addr, id = req.id, identity = req.identity or sesame.null,
  }
end)

sesame.route("POST", "/raw", function(req)
  return 200, { size = #req.body, body = req.body }
end)

sesame.route("GET", "/users/:id/items/:item", function(req)
  return 200, { id = req.params.id, item = req.params.item }
end)

sesame.route("GET", "/users/me/items/:item", function(req)
  return 200, { literal = true, item = req.params.item }
end)

sesame.route("DELETE", "/things/:id", function(req)
  return 204
end)

sesame.route("GET", "/headers", function(req)
  return 201, { result = "success" }, { ["X-One"] = "1", ["Set-Cookie"] = { "a=1", "b=2" } }
end)

sesame.route("GET", "/bad-header", function(req)
  return 200, {}, { ["X-Evil"] = "a\r\nInjected: yes" }
end)

sesame.route("GET", "/framing-header", function(req)
  return 200, { a = 1 }, { ["Transfer-Encoding"] = "chunked" }
end)

sesame.route("GET", "/load", function(req)
  local text = load("return 1 + 1")
  -- string.dump is gone: a precompiled chunk's header, written out, stands for one.
  local binary, err = load("\27Lua\84\0\25\147\13\10\26\10")
  return 200, { text = text(), binary = binary == nil, err = tostring(err) }
end)

sesame.route("GET", "/bad-status", function(req)
  return "ok"
end)

sesame.route("GET", "/bad-body", function(req)
  return 200, { f = function() end }
end)

sesame.route("GET", "/error", function(req)
  error("the secret detail")
end)

sesame.route("GET", "/spin", function(req)
  while true do end
end)

sesame.route("GET", "/hog", function(req)
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
  return 200, {}
end)

sesame.route("GET", "/empty", function(req)
  return 200, { list = sesame.array(), nums = sesame.array { 1, 2 }, object = {}, nothing = sesame.null }
end)

sesame.route("GET", "/file", function(req)
  local data, err = sesame.readfile(req.query.path)
  if not data then
    return 404, { result = "fail", error = err }
  end
  return 200, { result = "success", data = data }
end)

sesame.route("GET", "/stale", function(req)
  stash = req
  return 200, {}
end)

sesame.route("GET", "/stale/read", function(req)
  local ok, err = pcall(function() return stash.path end)
  return 200, { ok = ok, err = tostring(err) }
end)

sesame.route("GET", "/late-route", function(req)
  sesame.route("GET", "/x", function() end)
end)

sesame.route("GET", "/yield-in-sort", function(req)
  local t = { 3, 1, 2 }
  local ok, err = pcall(table.sort, t, function(a, b)
    sesame.readfile("/dev/null")
    return a < b
  end)
  return 200, { ok = ok, err = tostring(err) }
end)

sesame.route("GET", "/yield-in-gsub", function(req)
  local s = string.gsub("abc", "b", function() return sesame.readfile("/dev/null") end)
  return 200, { s = s }
end)

sesame.route("GET", "/yield-in-require", function(req)
  local ok, err = pcall(require, "reads_at_load")
  return 200, { ok = ok, err = tostring(err) }
end)
