-- A route that waits on a job thread for as long as the test wants: sesame.readfile on a
-- named pipe blocks until the test writes into it.
local sesame = require "sesame"

sesame.route("GET", "/wait", function(req)
  local data, err = sesame.readfile(req.query.fifo)
  return 200, { result = "success", data = data or err }
end)
