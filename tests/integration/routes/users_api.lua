-- Routes the storage tests drive: sesame.users.create and sesame.users.find.
local sesame = require "sesame"

sesame.route("POST", "/create", function(req)
  local b = req:json()
  local id, err = sesame.users.create{ email = b.email, username = b.username, password = b.password }
  if not id then
    return 409, { result = "fail", error = err }
  end
  return 200, { id = id }
end)

sesame.route("GET", "/find", function(req)
  local user = sesame.users.find(req.query.email and { email = req.query.email } or { id = req.query.id })
  if not user then
    return 404, { result = "fail", error = "no such user" }
  end
  return 200, user
end)
