-- Routes test_onetime_db.py drives: sesame.onetime, sesame.db, and the users functions of
-- storage ABI 1.1 (users.update's email and verified, users.delete, users.find's verified).
local sesame = require "sesame"

local function found(id)
  if id == nil then
    return 404, { result = "fail", error = "not found" }
  end
  return 200, { id = id }
end

sesame.route("POST", "/user", function(req)
  local b = req:json()
  return found(sesame.users.create{ email = b.email, username = "someone", password = "$argon2id$x" })
end)

sesame.route("GET", "/user", function(req)
  local user = sesame.users.find{ id = req.query.id }
  if not user then
    return 404, { result = "fail", error = "no such user" }
  end
  return 200, { id = user.id, email = user.email, verified = user.verified == true }
end)

sesame.route("POST", "/user/update", function(req)
  local b = req:json()
  local id, err = sesame.users.update{ id = b.id, email = b.email, verified = b.verified }
  if err == "exists" then
    return 409, { result = "fail", error = "exists" }
  end
  return found(id)
end)

sesame.route("POST", "/user/delete", function(req)
  if not sesame.users.delete(req:json().id) then
    return 404, { result = "fail", error = "no such user" }
  end
  return 200, { result = "success" }
end)

sesame.route("POST", "/login", function(req)
  return 200, { access_token = sesame.jwt.access(tostring(req:json().id)) }
end)

sesame.route("GET", "/me", { auth = "required" }, function(req)
  return 200, { id = req.identity }
end)

sesame.route("POST", "/otp/issue", function(req)
  local b = req:json()
  local options = (b.ttl or b.data) and { ttl = b.ttl, data = b.data } or nil
  return 200, { token = sesame.onetime.issue(b.purpose, b.user, options) }
end)

-- A token looked up by find (sesame.onetime.spend or .check): 200 {user, data}, or 404.
local function look_up(find)
  return function(req)
    local b = req:json()
    local user, data = find(b.purpose, b.token)
    if not user then
      return 404, { result = "fail", error = "invalid token" }
    end
    return 200, { user = user, data = data }
  end
end

sesame.route("POST", "/otp/spend", look_up(sesame.onetime.spend))
sesame.route("POST", "/otp/check", look_up(sesame.onetime.check))

sesame.route("POST", "/otp/revoke", function(req)
  local b = req:json()
  return 200, { revoked = sesame.onetime.revoke(b.user, b.purpose) }
end)

-- The statement and its values ({sql = ..., args = [...]}; a JSON null is sesame.null).
local function statement(req)
  local b = req:json()
  local args = b.args or {}
  return b.sql, args, #args
end

sesame.route("POST", "/db/query", function(req)
  local sql, args, n = statement(req)
  return 200, { rows = sesame.array(sesame.db.query(sql, table.unpack(args, 1, n))) }
end)

-- A statement whose error the route catches: 200 {rows = ...}, or 200 {error = "..."}.
sesame.route("POST", "/db/try", function(req)
  local sql, args, n = statement(req)
  local ok, rows = pcall(sesame.db.query, sql, table.unpack(args, 1, n))
  if not ok then
    return 200, { error = rows }
  end
  return 200, { rows = sesame.array(rows) }
end)

sesame.route("POST", "/db/exec", function(req)
  local sql, args, n = statement(req)
  local affected, insert_id = sesame.db.exec(sql, table.unpack(args, 1, n))
  if affected == nil then
    return 409, { result = "fail", error = insert_id }
  end
  return 200, { affected = affected, insert_id = insert_id }
end)

-- A value of each kind sesame.db takes as a parameter, a nil among them.
sesame.route("POST", "/db/kinds", function(req)
  local b = req:json()
  sesame.db.exec(b.insert, 7, 2.5, "it's", true, nil, sesame.null)
  return 200, { rows = sesame.array(sesame.db.query(b.select)) }
end)

sesame.route("POST", "/db/bad-value", function(req)
  return 200, { rows = sesame.db.query("SELECT ?", {}) }
end)

-- sesame.json: value encoded, text decoded ({value = ..., text = "..."}), and what a value
-- without a JSON form raises.
sesame.route("POST", "/json", function(req)
  local b = req:json()
  local decoded, err = sesame.json.decode(b.text)
  local ok, raised = pcall(sesame.json.encode, { f = print })
  return 200, { encoded = sesame.json.encode(b.value), decoded = decoded, err = err,
                raised = not ok and raised or nil }
end)
