-- login.lua: a wrk script that logs existing users in:
--   wrk -s login.lua URL -- USERS PASSWORD
-- POST /users/login as u1@example.com ... uUSERS@example.com, picked at random, each with
-- PASSWORD (the users scripts/bench loaded share one stored hash).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "threads.lua")
local users = 1
local password = "bench password"

function init(args)
  users = tonumber(args[1]) or users
  password = args[2] or password
  math.randomseed(os.time() + (thread_id or 0))
end

function request()
  local body = string.format('{"email":"u%d@example.com","password":"%s"}',
    math.random(users), password)
  return wrk.format("POST", "/users/login", { ["Content-Type"] = "application/json" }, body)
end
