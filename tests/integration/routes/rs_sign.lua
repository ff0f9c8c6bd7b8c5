-- Routes the RS signing tests drive: access tokens signed where a function can yield and
-- where it cannot, and many in a row.
local sesame = require "sesame"

-- One access token, signed from a function that string.gsub calls back: no yield there.
sesame.route("POST", "/sign/callback", function(req)
  local token = string.gsub("x", "x", function() return sesame.jwt.access(req:json().identity) end)
  return 200, { access_token = token }
end)

-- n access tokens one after the other; the last one is answered.
sesame.route("POST", "/sign/many", function(req)
  local body, token = req:json(), nil
  for _ = 1, body.n do
    token = sesame.jwt.access(body.identity)
  end
  return 200, { access_token = token }
end)

-- A refresh token without storage (this route's server has none) and an access token.
sesame.route("POST", "/sign/pair", function(req)
  local identity = req:json().identity
  return 200, { access_token = sesame.jwt.access(identity, { claims = { role = "admin" } }),
                refresh_token = sesame.jwt.refresh(identity) }
end)
