-- register.lua: a wrk script that registers a new user with every request:
--   wrk -s register.lua URL -- PREFIX
-- POST /users/register, each body with a username and e-mail no other request has: PREFIX
-- (one per run, so that runs against one table do not collide), the wrk thread and a count.
local count = 0
local prefix = "bench"
local made = 0

function setup(thread)
  made = made + 1
  thread:set("thread_id", made)
end

function init(args)
  prefix = args[1] or prefix
end

function request()
  count = count + 1
  local name = string.format("%s-%d-%d", prefix, thread_id or 0, count)
  local body = string.format(
    '{"email":"%s@example.com","username":"%s","password":"correct horse battery staple"}',
    name, name)
  return wrk.format("POST", "/users/register", { ["Content-Type"] = "application/json" }, body)
end
