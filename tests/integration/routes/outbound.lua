-- Routes that hand the test's JSON to sesame.mail.send, sesame.http.request and sesame.defer,
-- and answer with what those returned.
local sesame = require "sesame"

local function opt(v)
  if v == sesame.null then return nil end
  return v
end

sesame.route("POST", "/mail", function(req)
  local b = req:json()
  local ok, err = sesame.mail.send{ to = b.to, subject = b.subject, text = b.text,
                                    html = opt(b.html), reply_to = opt(b.reply_to) }
  return 200, { sent = ok == true, error = err, enabled = sesame.mail.enabled }
end)

sesame.route("POST", "/http", function(req)
  local b = req:json()
  local status, body, headers = sesame.http.request{
    method = opt(b.method), url = b.url, headers = opt(b.headers), json = opt(b.json),
    body = opt(b.body), timeout = opt(b.timeout) }
  if not status then return 200, { error = body } end
  return 200, { status = status, body = body, headers = headers }
end)

-- Defers an HTTP request to url and answers at once.
sesame.route("POST", "/defer", function(req)
  local b = req:json()
  local queued = sesame.defer(function(url, payload)
    local status, err = sesame.http.request{ method = "POST", url = url, json = payload }
    sesame.log.info("deferred request answered " .. tostring(status or err))
  end, b.url, b.payload)
  return 200, { queued = queued }
end)

sesame.route("POST", "/defer/fail", function(req)
  sesame.defer(function(what) error("deferred " .. what) end, "failure")
  return 200, { queued = true }
end)

sesame.route("GET", "/ping", function(req)
  return 200, { pong = true }
end)
