-- replies.lua: what the default routes share: reading a request's fields, and the answers
-- (errors, 429, 401, a pair of tokens). routes/users.lua and routes/accounts.lua require it;
-- a script of your own may too: require "replies" finds it in the lua/ folder beside
-- sesame.lua.
local sesame = require "sesame"

local M = {}

-- Leading and trailing white space, removed in one pass (no pattern that could backtrack).
function M.trim(s)
  local first = s:find("%S")
  if not first then
    return ""
  end
  local last = #s
  while s:find("^%s", last) do
    last = last - 1
  end
  return s:sub(first, last)
end

-- The named fields of body, each a string that is not blank; or nil and the client's error.
function M.fields(body, names)
  local values = {}
  for _, name in ipairs(names) do
    local value = body[name]
    if value == nil or value == sesame.null then
      return nil, name .. " is missing"
    end
    if type(value) ~= "string" then
      return nil, name .. " must be a string"
    end
    if M.trim(value) == "" then
      return nil, name .. " is blank"
    end
    values[name] = value
  end
  return values
end

-- The body's one field, email, trimmed and checked by the email validator: the address's
-- normal form, or nil and the client's error.
function M.email(req)
  local f, err = M.fields(req:json(), { "email" })
  if not f then
    return nil, err
  end
  return sesame.validate("email", M.trim(f.email))
end

function M.fail(status, message)
  return status, { result = "fail", error = message }
end

-- Success with nothing more to say. A flow's answer may stand for a secret step (a token
-- spent, a password set): no cache may keep it.
function M.ok(extra)
  local body = { result = "success" }
  for k, v in pairs(extra or {}) do
    body[k] = v
  end
  return 200, body, { ["Cache-Control"] = "no-store" }
end

-- The answer that hands out a pair of tokens: in the body, and in cookies too when
-- jwt.cookies is on. Tokens are secrets: no cache may keep the answer.
function M.answer(access, refresh)
  local headers = sesame.jwt.cookies(access, refresh)
  headers["Cache-Control"] = "no-store"
  return 200, { result = "success", access_token = access, refresh_token = refresh }, headers
end

-- A log-in's tokens: a new refresh family, and an access token that belongs to it, so that
-- logging out (revoking the family) ends both.
function M.tokens(id, fresh)
  local refresh, family = sesame.jwt.refresh(id)
  return M.answer(sesame.jwt.access(id, { fresh = fresh, family = family }), refresh)
end

-- Too many requests: the client may try again in retry_after seconds. Nothing was done.
function M.too_many(retry_after)
  return 429, { result = "fail", error = "too many requests" }, { ["Retry-After"] = tostring(retry_after) }
end

function M.refused(message)
  return 401, { result = "fail", error = message }, { ["WWW-Authenticate"] = 'Bearer error="invalid_token"' }
end

-- The key an account is counted by in a rate rule, for a known address and an unknown one
-- alike: two addresses that differ in letter case are one account.
function M.account_key(email)
  return "account:" .. email:lower()
end

-- limits.rule for the client's address and, when email is given, for that account too:
-- allowed, and the seconds to wait when not.
function M.limit(rule, req, email)
  local allowed, retry_after = sesame.limit(rule, req.remote_addr)
  if allowed and email then
    allowed, retry_after = sesame.limit(rule, M.account_key(email))
  end
  return allowed, retry_after
end

-- The password of a logged-in user, for a step that wants it again (a new password, the
-- account's deletion), counted against limits.login_failures as a log-in's is: nil when it
-- is right, else the answer (429 while the account is locked out, 401).
function M.wrong_password(user, password)
  local allowed, retry_after = sesame.users.failures(user.email)
  if not allowed then
    return M.too_many(retry_after)
  end
  if not sesame.verify(password, user.password) then
    sesame.users.failed(user.email)
    sesame.emit("login_failed", { user = user.id, reason = "wrong password" })
    return M.fail(401, "invalid password")
  end
  sesame.users.succeeded(user.email)
end

return M
