-- refresh.lua: a wrk script that rotates refresh tokens, with no password hashed:
--   wrk -t THREADS -c CONNECTIONS -s refresh.lua URL -- TOKENS-FILE THREADS
-- POST /token/refresh, each with a refresh token of its own: the file holds one per line (a
-- log-in's each), shared out among the threads; each answer's successor goes back in its
-- thread's queue, so no token is ever presented twice (which would revoke its family). Give
-- it twice as many tokens as CONNECTIONS: wrk may ask for a request more often than it has
-- connections when it starts.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "threads.lua")
local queue, head, tail = {}, 1, 0

local function push(token)
  tail = tail + 1
  queue[tail] = token
end

function init(args)
  local threads, n = tonumber(args[2]) or 1, 0
  for line in io.lines(args[1]) do
    if n % threads == (thread_id or 1) - 1 then
      push(line)
    end
    n = n + 1
  end
end

function request()
  -- Never a token twice: with none left (every one of the thread's failed), a request without
  -- one, refused and counted as non-2xx.
  local headers = {}
  if head <= tail then
    headers.Authorization = "Bearer " .. queue[head]
    queue[head] = nil
    head = head + 1
  end
  return wrk.format("POST", "/token/refresh", headers, nil)
end

function response(status, headers, body)
  local token = status == 200 and body:match('"refresh_token":"([^"]+)"')
  if token then
    push(token)
  end
end
