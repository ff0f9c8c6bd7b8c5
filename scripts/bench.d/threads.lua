-- threads.lua: numbers wrk's threads 1, 2, ... in thread_id, a global of each thread's own
-- state, set before its init runs: for a wrk script whose threads each take their share of
-- something (users, tokens). A script loads it from its own folder:
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "threads.lua")
local made = 0

function setup(thread)
  made = made + 1
  thread:set("thread_id", made)
end
