-- sesame.lua: the configuration of sesamed.
--
-- A Lua chunk: the global tables it sets are the settings. Every key below shows its default;
-- a key sesamed does not know is an error, which `sesamed -t` reports with its line. Paths
-- that are not absolute resolve against this file's folder. After a change, check it with
-- `sesamed -t`, then reload with `systemctl reload sesamed` (SIGHUP): a configuration that
-- does not check is not applied, and the running one keeps serving.

server = {
  -- Addresses to listen on: "IPv4:PORT", "[IPv6]:PORT", "localhost:PORT" or "*:PORT".
  -- Under socket activation (sesamed.socket) the sockets systemd passes are served instead.
  listen = { "127.0.0.1:8080" },
  -- The account the workers run as. Started as root, sesamed binds, reads the keys and opens
  -- the logs as root, then its workers (and its schema migrations) change to this user and its
  -- groups (group = "NAME" sets the group). Started as root without it, sesamed refuses to
  -- start: user = "root" keeps the workers root, on purpose. Started as any other user, it
  -- is ignored, with a warning when it names another user: sesamed.service starts it as
  -- sesame itself.
  user = "sesame",
  -- Worker processes: "auto" is one per core. sesamed -w N overrides it.
  workers = "auto",
  -- Job threads per worker, where storage calls and file reads run off the event loop.
  threads = 2,
  -- Password hashing threads per worker: "auto" shares the node's cores among the workers
  -- (rounded up), so that the node hashes on every core and no more.
  hash_threads = "auto",
  -- How much lower than the event loop's the hashing threads' priority is (added to their
  -- nice value, at most 19): token checks are answered at once while every core hashes.
  -- 0 runs them at the loop's priority. The nice value counts against every other nice-0
  -- task of the node too (unless sesamed.service has a CPU cgroup of its own): beside a
  -- busy MariaDB or another CPU-heavy service, hashes get a small share of a contested
  -- core, and hash_nice = 0 suits such a host better.
  hash_nice = 10,
  -- Largest request body and header block, in bytes; larger requests get 413.
  max_body = 65536,
  max_header = 16384,
  -- Seconds to read a request or write a response, and to keep an idle connection open.
  timeout = 30,
  keepalive = 15,
  -- Seconds that in-flight requests, and those still arriving, get to finish when sesamed
  -- stops or reloads; a request still arriving then is answered 503.
  shutdown_timeout = 30,
  -- Error details in 500 answers: for development only.
  debug = false,
  -- One JSON line per request: "stderr" (the journal under systemd), a file path, or false.
  access_log = "stderr",
  -- "error", "warn", "info" or "debug".
  log_level = "info",
  -- What one request's handler may use: Lua VM instructions, and the worker's Lua memory in
  -- bytes. A handler that goes past either is stopped and answers 500.
  handler_instructions = 50000000,
  lua_memory = 268435456,
  -- Seconds a handler may take in all, waits on job threads included; past it the client
  -- gets 503 "request timed out".
  handler_timeout = 30,
  -- How deeply a JSON request body may nest.
  json_depth = 32,
  -- Storage calls and file reads a worker holds at once, waiting or running; a request that
  -- would go past it gets 503 "server busy" with Retry-After: 1 at once. Unset, it is 64 per
  -- job thread: 128 with threads = 2.
  -- queue = 128,
  -- The same for password hashes, bounded apart so that a backlog of registrations and
  -- log-ins never sheds a storage call (GET /users/me, refresh, log-out). Unset, it is 64
  -- per hashing thread.
  -- hash_queue = 64,
  -- Seconds a worker's event loop may stop turning (a script stuck in a finalizer or a
  -- pattern match, out of reach of the instruction budget) before the master kills it,
  -- logging the route it was serving, and starts another. 1 or more.
  hang_timeout = 10,
  -- Seconds a new generation of workers has to serve in full. A reload whose workers do not
  -- (a route script server.user cannot read, a worker that crashes at start) is given up
  -- and the running workers serve on; a detached start (sesamed without -f) fails instead.
  start_timeout = 60,
  -- The reverse proxies in front of sesamed (addresses, or networks like "10.0.0.0/8" and
  -- "fd00::/8"): behind one of them the client's address is the right-most X-Forwarded-For
  -- entry that is not a trusted proxy. None by default: the client is the connection's peer.
  -- trusted_proxies = { "127.0.0.1", "::1" },
  -- Who may read GET /metrics (Prometheus text): addresses and networks matched against the
  -- connection's peer, never X-Forwarded-For; others get 404. false turns it off.
  metrics = { allow = { "127.0.0.0/8", "::1" } },
  -- The master's control socket, where `sesamectl status` asks for its workers, generation
  -- and uptime: mode 0660, group server.group when set; false for none. Read at start.
  control = "/run/sesame/control",
}

-- Rate limits: "N/second", "N/minute" or "N/hour", or false for none. A limited request gets
-- 429 with Retry-After. register and login count per client address (an IPv6 client per
-- /64), on this node; login_failures counts wrong passwords per account in storage, on every
-- node alike, and a successful log-in forgets them. Rules of other names are for route
-- scripts: sesame.limit("NAME", key).
limits = {
  register = "20/minute",
  login = "60/minute",
  login_failures = "100/hour",
  -- The account flows, each counted per client address; the routes that mail an address
  -- count per account too (the address asked for, or the caller's own). Per address and
  -- per account: verify's POST /users/verify/resend, forgot (POST /users/password/forgot),
  -- email's POST /users/email; and with accounts.conceal_existing, verify counts each
  -- registration's mail per account only, silently. Per client address only, the routes
  -- that take a link's token: verify's POST /users/verify, reset (POST
  -- /users/password/reset) and email's POST /users/email/confirm. POST /users/password and
  -- DELETE /users/me count under login, per client address.
  verify = "10/hour",
  forgot = "10/hour",
  reset = "20/hour",
  email = "10/hour",
}

-- The account flows of the default routes: confirming an address, a forgotten password, a
-- new address (each mails a link: they need the mail table), and deleting the account.
-- docs/operations.md says what the front end's pages do with the links.
accounts = {
  -- The front end's URL that the mails' links start with: LINK_BASE/verify?token=...,
  -- /reset?token=..., /email/confirm?token=...; its pages POST the token to sesame.
  -- With mail on, sesamed -t warns while this is loopback: set your public URL.
  link_base = "http://127.0.0.1:8080",
  -- true: log-in answers 403 "email not verified" until the address is confirmed, and
  -- registration hands out no tokens. Needs the mail table.
  require_verified = false,
  -- true: the API tells nobody which addresses have accounts. Registration makes no account:
  -- a new address and a taken one get the same answer (no tokens) in the same time, and
  -- the mail goes after it: to a new address the link that makes the account, confirmed;
  -- to a taken one's owner a notice (exists.txt). A mail server that is down is then
  -- logged, not answered. POST /users/email answers a taken address as a free one (200, and
  -- email_taken.txt to its owner) instead of 409. Needs the mail table.
  conceal_existing = false,
  -- Seconds each flow's link works: confirming the address, resetting the password,
  -- confirming a new address.
  verify_ttl = 86400,
  reset_ttl = 3600,
  email_ttl = 86400,
  -- The mail templates (verify.txt, reset.txt, email_change.txt, email_changed.txt,
  -- exists.txt, email_taken.txt): the subject and words of each mail, yours to change.
  -- With the mail table set (this table or not: the flows mail whenever mail is on),
  -- sesamed -t checks that this folder, below this file's, holds them all.
  mail_dir = "mail",
}

-- Auth events (sesame.emit, sesame.on): each is one JSON line in audit_log ("stderr", a file
-- appended to, or false) and, with store = true, a row in storage that `sesamectl events`
-- lists, kept retention seconds (purged with store = false too).
events = {
  audit_log = "stderr",
  store = false,
  retention = 7776000, -- 90 days
}

-- Plugins: every NAME.so in path, or only those `load` names (load = { "argon2id", ... }).
-- The default path is where `make install` put sesame's own plugins. path is a folder or a
-- list of folders, searched in order; a list replaces the default, so a plugin of your own
-- in a folder of its own goes beside sesame's with both spelt out. A plugin name found in
-- two folders is an error that names both files; `sesamed -t` prints each plugin's file.
-- plugins = { path = { "/usr/lib/sesame/plugins", "/opt/acme/sesame-plugins" } }

password = {
  -- The scheme new password hashes are made with, and the schemes that may verify a stored
  -- one. A password verified with another scheme, or with weaker settings than these, is
  -- hashed again after the next successful log-in.
  scheme = "argon2id",
  accept = { "argon2id", "pbkdf2_sha256" },
  -- argon2id's cost: memory in KiB and iterations; OWASP's recommendation is the floor.
  -- A stored hash asking for more than four times the cost is refused unrun (and logged).
  argon2id = { memory = 19456, iterations = 2 },
  -- passlib's pbkdf2_sha256, for hashes a Flask/passlib service stored; no fewer rounds than
  -- passlib's 29000 (and, in a stored hash, no more than four times these, or a million).
  pbkdf2_sha256 = { rounds = 600000 },
  -- Passwords are counted in characters (code points) and never truncated.
  min_length = 8,
  max_length = 128,
}

-- Tokens. The key is the one setting without a default: a shared secret (HS*), or a key pair
-- (RS* or ES*) whose public key other services fetch from GET /.well-known/jwks.json.
-- Make a secret with:    sesamectl keygen --group sesame /etc/sesame/jwt.key
-- or a key pair with:    sesamectl keygen --group sesame -a ES256 /etc/sesame/jwt.pem /etc/sesame/jwt.pub
-- (--group sesame: root:sesame 0640, for sesamed.service, which runs as sesame)
-- jwt = {
--   algorithm = "HS256",            -- or HS384, HS512; RS256, RS384, RS512; ES256, ES384, ES512
--   secret_file = "jwt.key",        -- HS: or secret = "...", 32+ bytes (48 HS384, 64 HS512)
--   -- RS and ES: the PEM key pair, read once at start and reload, and the public keys of a
--   -- rotation, whose tokens are still accepted:
--   -- private_key_file = "jwt.pem", public_key_file = "jwt.pub",
--   -- previous_keys = { "jwt-old.pub" },
--   access_expires = 900,           -- seconds; false: access tokens never expire
--   refresh_expires = 2592000,
--   issuer = nil, audience = nil,   -- the iss and aud claims, when set
--   leeway = 0,                     -- seconds of clock skew allowed on exp and nbf
--   cookies = false,                -- tokens in cookies too, with CSRF double submit
--   cookie_secure = true, cookie_samesite = "Lax",
--   refresh_cookie_path = "/token/refresh", -- the refresh cookie goes to this route only
--   cookie_host_prefix = false,     -- __Host- cookie names (__Secure- for the refresh one)
--   family_lifetime = 7776000,      -- seconds a log-in's refresh tokens last, rotated or not
--   refresh_grace = 2,              -- seconds a spent refresh token still rotates (racing tabs)
--   revocation_refresh = 1,         -- seconds until every worker refuses a revoked token
--   revocation_capacity = 262144,   -- revoked ids the node's shared set holds (restart to change)
-- }

-- Where users, refresh families, revoked tokens and failed log-ins are kept. The connection is the other setting without a default.
-- storage = {
--   backend = "mariadb",
--   mariadb = { socket = "/run/mysqld/mysqld.sock", user = "sesame", database = "sesame",
--               pool = 8, connect_timeout = 5, read_timeout = 30 },
--   -- a Galera cluster, instead of socket or host/port (no default): its nodes in order of
--   -- preference, the local one first; each a socket path or host[:port] ("[::1]:3306")
--   -- mariadb = { hosts = { "/run/mysqld/mysqld.sock", "db2:3306", "db3:3306" }, ... },
--   -- or, on one machine: backend = "sqlite", sqlite = { path = "/var/lib/sesame/sesame.db" },
--   --   with busy_timeout = 5000 (ms a write waits for a lock) and query_timeout = 5000 (ms a
--   --   route script's statement, sesame.db, may run before it is stopped)
--   users = { table = "users" },    -- and id, email, username, password: column names
--   migrate = true,                 -- apply the schema's migrations at start and reload
--   query_rows = 1000,              -- the most rows sesame.db.query returns (more: it raises)
-- }

-- What a registration accepts (the email, username and password validator plugins).
-- email = { allow_special_domains = false }
-- username = { min_length = 3, max_length = 64, allowed = "ascii" }
-- password.min_length and password.max_length: see the password table above.
-- Common passwords refused wherever the password policy is asked for (registration, a new
-- password): a list, one password per line; none ships with sesame (docs/operations.md says
-- where to find one). Without a file, nothing is refused.
-- blocklist = { file = "common-passwords.txt", ignore_case = false }

-- Mail from route scripts (sesame.mail.send): the SMTP server and the sender. Without a
-- mail table, mail is off. password_file is read at start and reload, never logged.
-- mail = {
--   url = "smtp://127.0.0.1:25",    -- or "smtps://HOST:465": TLS from the start
--   from = "sesame@example.com",    -- one plain address
--   username = nil, password_file = nil, -- SMTP AUTH: both or neither; off loopback
--                                   -- only with tls = "require" or smtps://
--   timeout = 10,                   -- seconds for the whole transfer; at most half of
--                                   -- server.handler_timeout (sesamed -t checks)
--   tls = "try",                    -- STARTTLS when offered; "require", or false for never
--   ca_file = nil,                  -- a PEM file of the CAs to trust for the server (alone);
--                                   -- nil: the system's. The certificate is checked but
--                                   -- for "try" to loopback without ca_file (a local MTA's
--                                   -- self-signed one: nobody is in the middle there)
-- }

-- The only hosts sesame.http.request may reach (an SSRF guard: docs/operations.md).
-- http = {
--   allow = {},                     -- "HOST" (port 80/443) or "HOST:PORT"; empty: none
--   timeout = 10,                   -- seconds, unless the call gives its own
--   max_response = 1048576,         -- bytes of a response body
-- }

-- The route scripts, loaded in this order (each pattern's matches sorted by name).
routes = { "routes/*.lua" }
