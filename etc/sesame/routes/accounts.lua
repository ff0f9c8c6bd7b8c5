-- accounts.lua: the account flows: confirming an address, a forgotten password, a new address,
-- deleting the account. Each needs the mail table of sesame.lua (sesame.mail.send) but the
-- deletion, and the settings of the accounts table (sesame.accounts).
--
-- Each flow mails a link to the operator's front end (accounts.link_base .. "/verify",
-- "/reset", "/email/confirm", each with ?token=...): that page POSTs the token here. A token
-- is 32 random bytes; storage keeps only its hash, its purpose, its user and its expiry, and
-- spends it once: a token replayed, expired, or made for another flow is refused alike.
-- The mails' words are templates in the mail folder (lua/account_mail.lua renders them).
--
-- Each route is limited per client address and, where it names an account, per account too
-- (limits.verify, forgot, reset, email: most of them send mail to somebody's address), and
-- each outcome is an event (sesame.emit: the audit log, and the scripts' sesame.on handlers).
local sesame = require "sesame"
local replies = require "replies"
local account_mail = require "account_mail"

local fields, fail, ok, too_many = replies.fields, replies.fail, replies.ok, replies.too_many

local BAD_TOKEN = "invalid or expired token"

-- The user a token's flow acts on: nil when deleted or disabled since the mail was sent.
local function active_user(id)
  local user = id and sesame.users.find { id = id }
  if user and not user.disabled then
    return user
  end
end

-- Two spellings of one address (letter case) are one account.
local function same_address(a, b)
  return a ~= nil and b ~= nil and a:lower() == b:lower()
end

-- The first steps of a route that takes the token of a mailed link: limits[rule] per client
-- address, the {token} body, the token spent for purpose. Returns the token's user id and its
-- data; or nil and the answer, as a list.
local function spend_link(req, rule, purpose)
  local allowed, retry_after = replies.limit(rule, req)
  if not allowed then
    return nil, { too_many(retry_after) }
  end
  local f, err = fields(req:json(), { "token" })
  if not f then
    return nil, { fail(400, err) }
  end
  local id, data = sesame.onetime.spend(purpose, f.token)
  if not id or not data then
    return nil, { fail(400, BAD_TOKEN) }
  end
  return id, data
end

-- The link of a registration made with accounts.conceal_existing: its token is no user's (0),
-- its data the account to make (lua/account_mail.lua's registration), confirmed now: the link
-- reached the address. The address may have been registered meanwhile: the link is refused.
local function make_account(data)
  local account = sesame.json.decode(data)
  local id = type(account) == "table" and sesame.users.create {
    email = account.email, username = account.username, password = account.password,
  }
  if not id then
    return fail(400, BAD_TOKEN)
  end
  sesame.users.update { id = id, verified = true }
  sesame.emit("registered", { user = id })
  sesame.emit("verified", { user = id })
  return ok()
end

-- POST /users/verify {token}: the link of the verification mail. The token's data is the
-- address it was mailed to: it confirms that address only, not one the user has set since.
sesame.route("POST", "/users/verify", function(req)
  local id, address = spend_link(req, "verify", "verify")
  if not id then
    return table.unpack(address)
  end
  if id == 0 then
    return make_account(address)
  end
  local user = active_user(id)
  if not user or not same_address(user.email, address) then
    return fail(400, BAD_TOKEN)
  end
  sesame.users.update { id = user.id, verified = true }
  sesame.onetime.revoke(user.id, "verify")
  sesame.emit("verified", { user = user.id })
  return ok()
end)

-- A mail to a registered address, sent in the background (sesame.defer runs it once the
-- answer has gone), so that neither the answer nor its time tells whether the address has
-- an account: send(user) for the address's user when wanted(user).
local function mail_in_background(wanted, send)
  return function(email)
    local user = sesame.users.find { email = email }
    if user and not user.disabled and wanted(user) then
      local sent, err = send(user)
      if not sent then
        sesame.log.warn("user " .. user.id .. ": mail not sent: " .. err)
      end
    end
  end
end

-- A route that takes {email} and answers 200 {"result":"success"} for every well-formed
-- address, registered or not, and leaves the mail to mail_in_background. limits[rule] counts
-- per client address and per address asked for, for unknown addresses as for known ones:
-- a 429 tells nothing either.
local function for_any_address(rule, work)
  return function(req)
    local email, err = replies.email(req)
    if not email then
      return fail(400, err)
    end
    local allowed, retry_after = replies.limit(rule, req, email)
    if not allowed then
      return too_many(retry_after)
    end
    sesame.defer(work, email)
    return ok()
  end
end

-- POST /users/verify/resend {email}: another verification mail, for a person who lost the
-- first or let it expire (accounts.require_verified refuses their log-in meanwhile); only a
-- registered address not yet confirmed gets one. A logged-in client sees email_verified in
-- GET /users/me.
sesame.route("POST", "/users/verify/resend", for_any_address("verify", mail_in_background(function(user)
  return not user.verified
end, account_mail.verification)))

-- POST /users/password/forgot {email}: a registered address gets a link to the front end's
-- reset page, which works once, for accounts.reset_ttl seconds.
sesame.route("POST", "/users/password/forgot", for_any_address("forgot", mail_in_background(function()
  return true
end, account_mail.reset)))

-- POST /users/password/reset {token, password}: the link of the reset mail. The token is
-- checked, not spent, until the work that can fail is done: a password the policy refuses
-- (with the user's own address and username), a hash shed with 503 "server busy" or storage
-- that fails leave the link working for the next try. Then it is spent (of two resets with
-- one link at once, one wins; the other gets 400), the password is set, every session of the
-- user is logged out (on every worker within jwt.revocation_refresh), and every link mailed
-- before stops working (another reset's, a new address's confirmation that a stolen session
-- asked for). The password goes first: a log-in with the old one cannot slip a session in
-- between. Storage that fails once the link is spent (503) may leave the work half done: the
-- person asks for a new link. The address counts as confirmed: the mail reached it. A
-- locked-out account (too many wrong passwords) is unlocked.
sesame.route("POST", "/users/password/reset", function(req)
  local allowed, retry_after = replies.limit("reset", req)
  if not allowed then
    return too_many(retry_after)
  end
  local f, err = fields(req:json(), { "token", "password" })
  if not f then
    return fail(400, err)
  end
  local id, address = sesame.onetime.check("reset", f.token)
  local user = active_user(id)
  if not user then
    return fail(400, BAD_TOKEN)
  end
  local valid
  valid, err = sesame.validate("password", f.password, { user.email, user.username })
  if not valid then
    return fail(400, err)
  end
  local hash = sesame.hash(f.password)
  if sesame.onetime.spend("reset", f.token) ~= user.id then
    return fail(400, BAD_TOKEN)
  end
  sesame.users.update { id = user.id, password = hash }
  sesame.jwt.revoke_all(user.id)
  sesame.onetime.revoke(user.id)
  if not user.verified and same_address(user.email, address) then
    sesame.users.update { id = user.id, verified = true }
    sesame.emit("verified", { user = user.id })
  end
  sesame.users.succeeded(user.email)
  sesame.emit("password_reset", { user = user.id })
  return ok()
end)

-- With accounts.conceal_existing, POST /users/email answers a taken address as a free one,
-- and this mails in the background, after the answer: the confirmation link to a free
-- address, and to a taken one a notice for its owner (mail/email_taken.txt). A mail that
-- fails is logged, not answered: an answer that differs would tell the address is taken.
local function mail_new_address(user, email)
  local owner = sesame.users.find { email = email }
  local sent, err
  if owner then
    sent, err = account_mail.email_taken(owner)
  else
    sent, err = account_mail.email_change(user, email)
  end
  if not sent then
    sesame.log.warn("user " .. user.id .. ": address change mail not sent: " .. err)
  end
end

-- POST /users/email {email}: a new address, with a fresh token (a log-in's, not a refresh's).
-- The change waits for the link mailed to the new address: until then the account keeps the
-- old one. 409 when the new address has an account already; with accounts.conceal_existing,
-- 200 as for a free address (see mail_new_address), so that no account can probe addresses.
sesame.route("POST", "/users/email", { auth = "fresh" }, function(req)
  local user = active_user(req.identity)
  if not user then
    return replies.refused("token revoked")
  end
  local allowed, retry_after = replies.limit("email", req, user.email)
  if not allowed then
    return too_many(retry_after)
  end
  local email, err = replies.email(req)
  if not email then
    return fail(400, err)
  end
  if same_address(email, user.email) then
    return fail(400, "that is the account's address already")
  end
  if sesame.accounts.conceal_existing then
    sesame.defer(mail_new_address, user, email)
    return ok()
  end
  if sesame.users.find { email = email } then
    return fail(409, "email already registered")
  end
  local sent
  sent, err = account_mail.email_change(user, email)
  if not sent then
    return fail(503, err)
  end
  return ok()
end)

-- POST /users/email/confirm {token}: the link mailed to the new address. The account takes
-- that address (409 when another account took it meanwhile), confirmed; the links mailed to
-- the old address (a reset) stop working, and the old address is told, in the background:
-- the change does not wait for, nor depend on, that mail.
sesame.route("POST", "/users/email/confirm", function(req)
  local id, new_email = spend_link(req, "email", "email")
  if not id then
    return table.unpack(new_email)
  end
  local user = active_user(id)
  if not user then
    return fail(400, BAD_TOKEN)
  end
  local old_email = user.email
  local changed, why = sesame.users.update { id = user.id, email = new_email }
  if why == "exists" then
    return fail(409, "email already registered")
  elseif not changed then
    return fail(400, BAD_TOKEN) -- deleted meanwhile
  end
  sesame.users.update { id = user.id, verified = true }
  sesame.emit("verified", { user = user.id }) -- the new address, never confirmed before
  sesame.onetime.revoke(user.id)
  user.email = new_email
  sesame.defer(function()
    local sent, err = account_mail.email_changed(user, old_email)
    if not sent then
      sesame.log.warn("user " .. user.id .. ": address change notice not sent: " .. err)
    end
  end)
  sesame.emit("email_changed", { user = user.id })
  return ok()
end)

-- DELETE /users/me {password}: deletes the account, with a fresh token and the password,
-- which is counted against limits.login_failures as a log-in's is. The user and all their
-- token state go: their sessions are refused on every worker within jwt.revocation_refresh,
-- and the address may be registered again.
sesame.route("DELETE", "/users/me", { auth = "fresh" }, function(req)
  local allowed, retry_after = sesame.limit("login", req.remote_addr)
  if not allowed then
    return too_many(retry_after)
  end
  local f, err = fields(req:json(), { "password" })
  if not f then
    return fail(400, err)
  end
  local user = active_user(req.identity)
  if not user then
    return replies.refused("token revoked")
  end
  local status, body, headers = replies.wrong_password(user, f.password)
  if status then
    return status, body, headers
  end
  sesame.users.delete(user.id)
  sesame.jwt.revoke(req.claims)
  sesame.emit("deleted", { user = user.id })
  headers = sesame.jwt.unset_cookies()
  headers["Cache-Control"] = "no-store"
  return 200, { result = "success" }, headers
end)
