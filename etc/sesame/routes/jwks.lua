-- jwks.lua: GET /.well-known/jwks.json, the public keys that verify sesame's tokens.
--
-- With jwt.algorithm RS* or ES*, the document (RFC 7517) lists the current key, then the
-- jwt.previous_keys; each carries the kid that sesame puts in its tokens' header. A gateway
-- or another service verifies tokens with it and never needs a secret. With an HMAC
-- algorithm there is no public key: the list is empty. Keys change only with a reload, so
-- the answer may be cached for a while; keep the rotation steps further apart than that.
local sesame = require "sesame"

sesame.route("GET", "/.well-known/jwks.json", function(req)
  return 200, sesame.jwt.jwks(), { ["Cache-Control"] = "public, max-age=300" }
end)
