-- paced.lua: a wrk script that paces each connection: after every answer it waits MS
-- milliseconds before the next request (the requests and headers are wrk's own, from -H):
--   wrk -s paced.lua URL -- MS
-- With C connections that is at most C * 1000 / MS requests a second: a steady stream whose
-- latency is measured, rather than a load that takes every core.
local ms = 1

function init(args)
  ms = tonumber(args[1]) or ms
end

function delay()
  return ms
end
