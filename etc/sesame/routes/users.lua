-- users.lua: the account API. POST /users/register is the tutorial service's registration,
-- answered the same way: {"result":"success","access_token":...}, errors as
-- {"result":"fail","error":"..."}; POST /users/login, GET /users/me, POST /token/refresh,
-- POST /users/logout and POST /users/logout/all go with it. The account flows (confirming
-- the address, a forgotten password, a new address, deletion) are in accounts.lua; the
-- helpers both use are in lua/replies.lua, the flows' mails in lua/account_mail.lua.
--
-- Each step is one of sesame's building blocks, and each can be changed here: the fields and
-- their checks (validator plugins: email, username, password), the password hash (a job
-- thread, never the event loop), the row (storage), the tokens (jwt), the events (sesame.emit:
-- the audit log, and the scripts' sesame.on handlers).
local sesame = require "sesame"
local replies = require "replies"
local account_mail = require "account_mail"

local trim, fields, fail = replies.trim, replies.fields, replies.fail
local answer, tokens, too_many, refused = replies.answer, replies.tokens, replies.too_many, replies.refused

-- The answer of a registration that hands out no tokens: with accounts.require_verified the
-- tokens come at log-in, once the address is confirmed; with accounts.conceal_existing every
-- registration answers this, so that a taken address cannot be told from a new one.
local function check_your_mail()
  return replies.ok { verification = "sent" }
end

-- The mail of a registration with accounts.conceal_existing, in the background (sesame.defer:
-- after the answer, which neither waits for it nor depends on it). A new address gets the link
-- that makes the account (lua/account_mail.lua's registration); a taken one's owner gets the
-- notice "someone tried to register your address". Both are limited per account
-- (limits.verify), silently; and a mail server that is down is logged, not answered: a 429 or
-- a 503 for one address and not another would tell which addresses have accounts.
local function mail_registration(email, username, hash)
  if not sesame.limit("verify", replies.account_key(email)) then
    return
  end
  local owner = sesame.users.find { email = email }
  local sent, err
  if owner then
    sent, err = account_mail.exists(owner)
  else
    sent, err = account_mail.registration(email, username, hash)
  end
  if not sent then
    sesame.log.warn("registration mail not sent: " .. err)
  end
end

-- accounts.conceal_existing: a registration makes no account. The account (address,
-- username, the password's hash) waits in the data of the link's token, and the link makes
-- it, confirmed (POST /users/verify): until then a log-in is an unknown address's. A new
-- address and a taken one do the same work (the hash) and get the same answer; the mail goes
-- after it, in the background.
local function register_concealed(email, username, password)
  sesame.defer(mail_registration, email, username, sesame.hash(password))
  return check_your_mail()
end

-- The account an unfinished registration made, deleted: found by its address and the
-- password's hash, whose random salt no other registration shares, so that a registration
-- that lost the race for the address to another one deletes nothing; and only while no link
-- confirmed it.
local function unregister(email, hash)
  local user = sesame.users.find { email = email }
  if user and user.password == hash and not user.verified then
    sesame.users.delete(user.id)
    sesame.log.info("user " .. user.id .. ": registration undone: its mail was not sent")
  end
end

-- An unfinished registration that stays: its address answers 409 until the operator or the
-- person ends it, so the log says how (docs/operations.md, Account flows). id is nil when the
-- handler was abandoned before the account was made (if it was).
local function not_undone(id, why)
  local who = id and ("user " .. id) or "a registration abandoned while its account was made"
  sesame.log.error(who .. ": an unfinished registration was not undone (" .. why .. "); "
    .. "delete it with `sesamectl user delete ADDRESS` (`sesamectl user list` shows it), "
    .. "or the person confirms it (POST /users/verify/resend, or a password reset)")
end

-- The background task of an undo: a storage failure leaves the account, and says so.
local function unregister_task(email, hash, id)
  local done, err = pcall(unregister, email, hash)
  if not done then
    not_undone(id, type(err) == "table" and tostring(err.error) or tostring(err))
  end
end

-- Undoes a registration unless the route keeps it (undo.keep = true): a to-be-closed value;
-- undo.id is the account once it is made. A handler that sesame abandons while it waits
-- (server.handler_timeout, or the client left) has its to-be-closed variables closed, where
-- nothing can wait: the deletion goes to a background task (sesame.defer), which can.
local function registration_undo(email, hash)
  return setmetatable({}, {
    __close = function(undo)
      if not undo.keep and not sesame.defer(unregister_task, email, hash, undo.id) then
        not_undone(undo.id, "too many background tasks: server.queue")
      end
    end,
  })
end

-- A registration with the mail table: the account, then the link that confirms the address,
-- mailed before the answer. A mail that cannot be sent (or a template that cannot be read: an
-- error) undoes the registration: the client is told, and may try again later with the same
-- address. So does a handler that never gets as far as the answer: until the mail is sent,
-- undo is armed (registration_undo), from before the account is made, so that one made while
-- the handler was abandoned goes too.
local function register_and_mail(email, username, hash)
  local undo <close> = registration_undo(email, hash)
  local id = sesame.users.create { email = email, username = username, password = hash }
  if not id then
    undo.keep = true -- another account's address: nothing to undo
    return fail(409, "email already registered")
  end
  undo.id = id
  local done, sent, why = pcall(account_mail.verification, { id = id, email = email, username = username })
  if not (done and sent) then
    sesame.users.delete(id)
    undo.keep = true
    if not done then
      error(sent, 0)
    end
    return fail(503, why)
  end
  undo.keep = true
  sesame.emit("registered", { user = id })
  if sesame.accounts.require_verified then
    return check_your_mail()
  end
  return tokens(id, false)
end

sesame.route("POST", "/users/register", function(req)
  -- limits.register, per client address (behind server.trusted_proxies: the client's own).
  local allowed, retry_after = sesame.limit("register", req.remote_addr)
  if not allowed then
    return too_many(retry_after)
  end
  local f, err = fields(req:json(), { "email", "username", "password" })
  if not f then
    return fail(400, err)
  end

  local email, username
  email, err = sesame.validate("email", trim(f.email))
  if not email then
    return fail(400, err)
  end
  username, err = sesame.validate("username", trim(f.username))
  if not username then
    return fail(400, err)
  end
  -- The password is taken as it was sent: no trimming, no truncation.
  local ok
  ok, err = sesame.validate("password", f.password, { email, username })
  if not ok then
    return fail(400, err)
  end

  if sesame.accounts.conceal_existing and sesame.mail.enabled then
    return register_concealed(email, username, f.password)
  end

  local hash = sesame.hash(f.password)
  if sesame.mail.enabled then
    return register_and_mail(email, username, hash)
  end
  local id = sesame.users.create { email = email, username = username, password = hash }
  if not id then
    return fail(409, "email already registered")
  end
  sesame.emit("registered", { user = id })
  return tokens(id, false)
end)

-- One answer for an unknown e-mail and a wrong password, and about the same time: an unknown
-- e-mail is verified against a dummy hash (sesame.verify with no stored hash).
local BAD_LOGIN = "invalid email or password"

-- Guessing is bounded twice, before any hashing: limits.login per client address, and
-- limits.login_failures per account, counted by storage so that every node sharing it counts
-- the same guesses. An unknown e-mail is counted and locked out as a known one is, so that a
-- 429 tells nothing about which addresses are registered; a success forgets the failures.
-- Each outcome is counted for GET /metrics: sesame_logins_total{outcome=...}.
sesame.route("POST", "/users/login", function(req)
  local allowed, retry_after = sesame.limit("login", req.remote_addr)
  if not allowed then
    sesame.metrics.count("logins", "limited")
    return too_many(retry_after)
  end
  local f, err = fields(req:json(), { "email", "password" })
  if not f then
    sesame.metrics.count("logins", "malformed")
    return fail(400, err)
  end
  local email = sesame.validate("email", trim(f.email))
  if email then
    allowed, retry_after = sesame.users.failures(email)
    if not allowed then
      sesame.metrics.count("logins", "locked")
      return too_many(retry_after)
    end
  end
  local user = email and sesame.users.find { email = email }
  local ok, rehash = sesame.verify(f.password, user and user.password)
  -- A disabled user (sesamectl user disable) gets the wrong password's answer, after the same
  -- hashing: the answer tells nothing about which accounts exist or are disabled.
  if not ok or user.disabled then
    if email then
      sesame.users.failed(email)
    end
    sesame.metrics.count("logins", "invalid")
    sesame.emit("login_failed", { user = user and user.id, email = email })
    return fail(401, BAD_LOGIN)
  end
  sesame.users.succeeded(email)
  -- accounts.require_verified: only once the password was right does the answer tell that
  -- the address is not confirmed yet (before, it would tell which addresses have accounts).
  if sesame.accounts.require_verified and not user.verified then
    sesame.metrics.count("logins", "unverified")
    sesame.emit("login_failed", { user = user.id, reason = "email not verified" })
    return fail(403, "email not verified")
  end
  sesame.metrics.count("logins", "success")
  -- A hash from another scheme (a Flask service's pbkdf2_sha256) or weaker settings is
  -- upgraded now, while the password is at hand. The log-in does not depend on it: a failed
  -- upgrade is logged and tried again at the next log-in.
  if rehash then
    local upgraded, why = pcall(function()
      sesame.users.update { id = user.id, password = sesame.hash(f.password) }
    end)
    if not upgraded then
      sesame.log.warn("user " .. user.id .. ": password hash not upgraded: " .. tostring(why))
    end
  end
  sesame.emit("logged_in", { user = user.id })
  return tokens(user.id, true)
end)

-- A user deleted or disabled (sesamectl user delete, disable) since the token was signed is
-- refused as its revoked token would be. email_verified: whether the address was confirmed
-- (a verification link, a password reset, a changed address's link).
sesame.route("GET", "/users/me", { auth = "required" }, function(req)
  local user = sesame.users.find { id = req.identity }
  if not user or user.disabled then
    return refused("token revoked")
  end
  return 200, {
    result = "success",
    user = { id = user.id, email = user.email, username = user.username, email_verified = user.verified == true },
  }
end)

-- Rotation: the refresh token is spent, and its successor comes with a new access token (not
-- fresh: no password was given). A spent token presented again revokes its whole family, the
-- thief's tokens and the owner's alike; the owner logs in again.
-- A disabled or deleted user's families were revoked with it; a refresh token that started
-- none (issued by a Flask service sharing the key) is refused here, before rotate adopts it.
-- The claims a log-in put in the refresh token (sesame.jwt.refresh's claims option) go on in
-- its successor, and into the new access token.
sesame.route("POST", "/token/refresh", { auth = "refresh" }, function(req)
  local user = sesame.users.find { id = req.identity }
  if not user or user.disabled then
    return refused("token revoked")
  end
  local refresh, family, claims = sesame.jwt.rotate(req.claims)
  if not refresh then
    return refused(family) -- nil and the reason: "token revoked"
  end
  return answer(sesame.jwt.access(req.identity, { family = family, claims = claims }), refresh)
end)

-- Revokes the access token and its refresh family, on every worker within
-- jwt.revocation_refresh, and clears the token cookies.
sesame.route("POST", "/users/logout", { auth = "required" }, function(req)
  sesame.jwt.revoke(req.claims)
  sesame.emit("logged_out", { user = req.identity })
  local headers = sesame.jwt.unset_cookies()
  headers["Cache-Control"] = "no-store"
  return 200, { result = "success" }, headers
end)

-- Logs the user out everywhere: every log-in's refresh family is revoked, on every worker
-- within jwt.revocation_refresh; the answer says how many there were.
sesame.route("POST", "/users/logout/all", { auth = "required" }, function(req)
  local sessions = sesame.jwt.revoke_all(req.identity)
  sesame.jwt.revoke(req.claims)
  sesame.emit("logged_out_all", { user = req.identity, sessions = sessions })
  local headers = sesame.jwt.unset_cookies()
  headers["Cache-Control"] = "no-store"
  return 200, { result = "success", sessions = sessions }, headers
end)

-- Changes the password: a fresh token (from a log-in, not a refresh) and the current password,
-- which is counted against limits.login_failures like a log-in's; the new one meets the
-- password policy. Every other session of the user is logged out, on every worker within
-- jwt.revocation_refresh; the caller's own (its token's refresh family) goes on. The password
-- goes first: a log-in with the old one cannot slip a session in between. Storage that fails
-- after it (503) leaves the new password set and the other sessions alive: the client tries
-- again with the new password as the current one. The links mailed before (a reset, a new
-- address's confirmation) stop working. Guessing the current password is bounded by
-- limits.login per client address, as log-ins are.
sesame.route("POST", "/users/password", { auth = "fresh" }, function(req)
  local allowed, retry_after = sesame.limit("login", req.remote_addr)
  if not allowed then
    return too_many(retry_after)
  end
  local f, err = fields(req:json(), { "password", "new_password" })
  if not f then
    return fail(400, err)
  end
  local user = sesame.users.find { id = req.identity }
  if not user or user.disabled then
    return refused("invalid token")
  end
  local ok
  ok, err = sesame.validate("password", f.new_password, { user.email, user.username })
  if not ok then
    return fail(400, err)
  end
  local status, body, headers = replies.wrong_password(user, f.password)
  if status then
    return status, body, headers
  end
  local hash = sesame.hash(f.new_password)
  if not sesame.users.update { id = user.id, password = hash } then
    return refused("invalid token") -- deleted meanwhile
  end
  sesame.jwt.revoke_all(user.id, { except_family = req.claims.fam })
  sesame.onetime.revoke(user.id)
  sesame.emit("password_changed", { user = user.id })
  return 200, { result = "success" }, { ["Cache-Control"] = "no-store" }
end)
