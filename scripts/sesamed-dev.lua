-- The development configuration that `scripts/dev run` starts sesamed with: the default
-- application from etc/sesame/routes on 127.0.0.1:8080, with error details in 500 answers.
server = {
  listen = "127.0.0.1:8080",
  workers = 2,
  debug = true,
}
plugins = { path = "../build/plugins" }
routes = { "../etc/sesame/routes/*.lua" }
