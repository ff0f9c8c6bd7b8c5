-- echo.lua: a route of the request fuzz target. It reads every part of a request that a
-- handler can read and answers with all of it, so that the request object's parsers (headers,
-- query, cookies, path parameters, the JSON body) and the JSON encoding of the answer all see
-- what the fuzzer sent.
local sesame = require "sesame"

local function echo(req)
  local ok, body = pcall(req.json, req)
  return 200, {
    method = req.method, path = req.path, id = req.id, remote = req.remote_addr,
    headers = req.headers, query = req.query, cookies = req.cookies, params = req.params,
    identity = req.identity, claims = req.claims,
    json = ok and body or nil, length = #req.body,
  }
end

sesame.route("POST", "/echo/:a/:b", { auth = "optional" }, echo)
sesame.route("GET", "/echo/:a", echo)
sesame.route("PUT", "/echo", { auth = "refresh" }, echo)
sesame.route("PATCH", "/echo", { auth = "fresh" }, echo)
