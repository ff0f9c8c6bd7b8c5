-- A module that reads a file while it loads: require cannot wait for a job thread.
local sesame = require "sesame"
return { text = sesame.readfile("/dev/null") }
