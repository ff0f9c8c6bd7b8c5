-- Routes the token tests drive: sesame.jwt.access and sesame.jwt.refresh.
local sesame = require "sesame"

sesame.route("POST", "/tokens", function(req)
  local body = req:json()
  local opts = body.opts
  if opts == sesame.null then opts = nil end
  return 200, {
    access_token = sesame.jwt.access(body.identity, opts),
    refresh_token = sesame.jwt.refresh(body.identity),
  }
end)
