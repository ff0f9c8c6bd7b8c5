-- info.lua: GET / tells a client which service answers, and which version.
--
-- The smallest complete route: sesame.route(method, path[, options], handler). The handler
-- receives the request and returns a status, a table that is sent as JSON, and optionally a
-- table of extra response headers.
local sesame = require "sesame"

sesame.route("GET", "/", function(req)
  return 200, { result = "success", service = "sesame", version = sesame.version }
end)
