-- roles.lua: an example route script, not loaded by default: every log-in's tokens carry the
-- user's roles, read from the operator's own `roles` table, as a `roles` claim that a Flask
-- service reads as any other (get_jwt()["roles"]), and that req.claims.roles shows here.
--
-- It changes replies.tokens, the helper through which the default routes hand out a log-in's
-- tokens (POST /users/login, a registration, a confirmed address), so it must be loaded
-- before them: copy it beside sesame.lua and list it first,
--   routes = { "roles.lua", "routes/*.lua" }
-- The roles go into both tokens. The refresh token's claims are what POST /token/refresh's
-- rotation passes on, to each successor and to its new access token; so a change of roles
-- shows at the user's next log-in. To take roles away at once, end the user's sessions as
-- well (sesame.jwt.revoke_all(id), or sesamectl user disable).
--
-- The table is the operator's, made before sesamed serves (a log-in fails without it), in
-- the store's own dialect; for instance, on SQLite or MariaDB:
--   CREATE TABLE roles (user_id BIGINT NOT NULL, role VARCHAR(64) NOT NULL,
--                       PRIMARY KEY (user_id, role))
local sesame = require "sesame"
local replies = require "replies"

-- The user's roles in name order: an array, empty (encoded as []) when there are none.
local function roles_of(id)
  local roles = sesame.array()
  for i, row in ipairs(sesame.db.query("SELECT role FROM roles WHERE user_id = ? ORDER BY role", id)) do
    roles[i] = row.role
  end
  return roles
end

-- replies.tokens with the roles in both tokens.
function replies.tokens(id, fresh)
  local claims = { roles = roles_of(id) }
  local refresh, family = sesame.jwt.refresh(id, { claims = claims })
  return replies.answer(sesame.jwt.access(id, { fresh = fresh, family = family, claims = claims }), refresh)
end
