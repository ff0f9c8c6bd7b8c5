-- The development configuration that `scripts/dev run` starts sesamed with: the default
-- application from etc/sesame/routes on 127.0.0.1:8080, with error details in 500 answers,
-- users in an SQLite file and a JWT secret that scripts/dev makes in build/run.
server = {
  listen = "127.0.0.1:8080",
  workers = 2,
  debug = true,
  -- Run by root (a container), the workers stay root: on purpose, for development only.
  user = "root",
  -- sesamectl -c scripts/sesamed-dev.lua status asks the master here, not in /run.
  control = "../build/run/control",
}
plugins = { path = "../build/plugins" }
jwt = { secret_file = "../build/run/jwt.key" }
storage = { backend = "sqlite", sqlite = { path = "../build/run/sesame.db" } }
routes = { "../etc/sesame/routes/*.lua" }
