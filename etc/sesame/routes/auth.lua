-- auth.lua: GET /auth/verify, forward authentication for a reverse proxy (nginx's
-- auth_request, Traefik's ForwardAuth, ...). The proxy sends the client's Authorization
-- header; sesame checks the access token and answers 200 with the user's id in X-Auth-User,
-- or 401. The check happens before the handler runs, in C, without touching storage: this is
-- the hottest path sesame has, so the handler does nothing more.
--
-- forward_auth: the sub-request is a GET, but a token from a cookie must come with the CSRF
-- header when the client's own request changes state. The proxy reports the client's method
-- in X-Forwarded-Method (Traefik, Caddy) or X-Original-Method (set it in nginx); with neither,
-- a cookie-borne token needs the CSRF header. Bearer tokens are not affected.
--
-- nginx:
--   location = /_auth { internal; proxy_pass http://127.0.0.1:8080/auth/verify;
--                       proxy_pass_request_body off; proxy_set_header Content-Length "";
--                       proxy_set_header X-Original-Method $request_method; }
--   location /api/ { auth_request /_auth; auth_request_set $user $upstream_http_x_auth_user;
--                    proxy_set_header X-Auth-User $user; proxy_pass http://app; }
local sesame = require "sesame"

sesame.route("GET", "/auth/verify", { auth = "required", forward_auth = true }, function(req)
  return 200, { result = "success" }, { ["X-Auth-User"] = req.identity }
end)
