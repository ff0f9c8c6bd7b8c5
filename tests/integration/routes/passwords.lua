-- Routes the password tests drive: sesame.hash and sesame.verify, each on a job thread.
local sesame = require "sesame"

sesame.route("POST", "/hash", function(req)
  local body = req:json()
  return 200, { hash = sesame.hash(body.password) }
end)

sesame.route("POST", "/verify", function(req)
  local body = req:json()
  local ok, rehash = sesame.verify(body.password, body.stored)
  return 200, { ok = ok, rehash = rehash }
end)
