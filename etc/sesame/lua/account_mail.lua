-- account_mail.lua: the account flows' mails. Each flow has a template in the mail folder
-- (accounts.mail_dir, beside sesame.lua): "Subject: ...", a blank line, then the text, with
-- placeholders such as {link}, {email}, {username} and {expires}. Operators change the
-- wording and the language there, without touching a route.
--
-- A template is read on every mail (sesame.readfile, on a job thread: an edit applies at
-- once) and rendered by plain replacement: a {name} that is known takes its value, as it is
-- (a value is never read as a pattern or as a placeholder); any other {text} stays.
local sesame = require "sesame"

local M = {}

-- "90 minutes", "1 hour", "2 days": how long a link works, for a person.
function M.duration(seconds)
  local units = { { 86400, "day" }, { 3600, "hour" }, { 60, "minute" }, { 1, "second" } }
  for _, u in ipairs(units) do
    if seconds >= u[1] and seconds % u[1] == 0 then
      local n = seconds // u[1]
      return n .. " " .. u[2] .. (n == 1 and "" or "s")
    end
  end
end

-- The page of the operator's front end that takes the token: link_base/page?token=...
function M.link(page, token)
  local link = sesame.accounts.link_base .. "/" .. page
  if token then
    link = link .. "?token=" .. token
  end
  return link
end

-- template's subject and text, values put in; raises when the template is missing or has no
-- subject (the operator's mistake, not the client's).
function M.render(template, values)
  local path = sesame.accounts.mail_dir .. "/" .. template .. ".txt"
  local source, err = sesame.readfile(path)
  if not source then
    error("mail template " .. path .. ": " .. err)
  end
  source = source:gsub("\r\n", "\n")
  local subject, text = source:match("^Subject:[ \t]*([^\n]*)\n\n(.*)$")
  if not subject then
    error("mail template " .. path .. ": expected a Subject: line, a blank line, then the text")
  end
  local function put(name)
    local value = values[name]
    return value ~= nil and tostring(value) or nil
  end
  return (subject:gsub("{([%w_]+)}", put)), (text:gsub("{([%w_]+)}", put))
end

-- Sends template to the address to: true, or nil and the client's message ("mail server
-- unavailable"; the reason is in the log).
function M.send(template, to, values)
  if not sesame.mail.enabled then
    sesame.log.warn("the " .. template .. " mail needs the mail table in sesame.lua")
    return nil, "mail server unavailable"
  end
  local subject, text = M.render(template, values)
  return sesame.mail.send { to = to, subject = subject, text = text }
end

-- A link's one-time token, mailed: m.purpose's token of the user m.id (0: an account not made
-- yet), alive m.ttl seconds, with m.data; its link goes to the page m.page, in the template
-- m.template mailed to m.to (whose user is m.username).
local function mail_token(m)
  local token = sesame.onetime.issue(m.purpose, m.id, { ttl = m.ttl, data = m.data })
  return M.send(m.template, m.to, { link = M.link(m.page, token), email = m.to, username = m.username,
                                    expires = M.duration(m.ttl) })
end

-- The mail of a flow whose token goes to the user's own address, its data that address (so
-- that it acts on that address only), and the event it is: the confirmation of the address
-- (a "verify" token) and a password reset link (a "reset" token).
local function own_address(purpose, ttl, event)
  return function(user)
    local ok, err = mail_token { id = user.id, purpose = purpose, ttl = sesame.accounts[ttl], data = user.email,
                                 to = user.email, username = user.username, template = purpose, page = purpose }
    if ok then
      sesame.emit(event, { user = user.id })
    end
    return ok, err
  end
end

M.verification = own_address("verify", "verify_ttl", "verification_sent")
M.reset = own_address("reset", "reset_ttl", "reset_requested")

-- The confirmation of a registration that made no account yet (accounts.conceal_existing):
-- a "verify" token of no user (0) whose data is the account to make (a JSON object: email,
-- username and the password's hash), mailed as the verification is.
function M.registration(email, username, hash)
  local account = sesame.json.encode { email = email, username = username, password = hash }
  local ok, err = mail_token { id = 0, purpose = "verify", ttl = sesame.accounts.verify_ttl, data = account,
                               to = email, username = username, template = "verify", page = "verify" }
  if ok then
    sesame.emit("verification_sent", { email = email })
  end
  return ok, err
end

-- The confirmation of a new address: an "email" token whose data is that address.
function M.email_change(user, new_email)
  return mail_token { id = user.id, purpose = "email", ttl = sesame.accounts.email_ttl, data = new_email,
                      to = new_email, username = user.username, template = "email_change", page = "email/confirm" }
end

-- Tells the owner of an address that someone tried to register it (conceal_existing).
function M.exists(user)
  return M.send("exists", user.email, { link = M.link("forgot"), email = user.email, username = user.username })
end

-- Tells the owner of an address that someone asked to move another account to it
-- (accounts.conceal_existing: POST /users/email answers as for a free address).
function M.email_taken(owner)
  return M.send("email_taken", owner.email, { link = M.link("forgot"), email = owner.email,
                                              username = owner.username })
end

-- Tells the old address that the account now has another.
function M.email_changed(user, old_email)
  return M.send("email_changed", old_email, { email = old_email, new_email = user.email, username = user.username })
end

return M
