-- 006_onetime_tokens: one-time tokens (e-mail confirmation, password reset, a route script's
-- own), stored as the SHA-256 of the token (64 hex digits), never the token itself, with what
-- it is for, whose it is, an optional string (the new address of an e-mail change) and its
-- expiry (Unix seconds on SQLite's clock), after which it is purged. Spending one deletes it.
CREATE TABLE IF NOT EXISTS "sesame_onetime_tokens" (
  "hash" TEXT NOT NULL PRIMARY KEY,
  "purpose" TEXT NOT NULL,
  "user_id" INTEGER NOT NULL,
  "data" TEXT,
  "expires_at" INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "sesame_onetime_tokens_user_id"
  ON "sesame_onetime_tokens" ("user_id");
CREATE INDEX IF NOT EXISTS "sesame_onetime_tokens_expires_at"
  ON "sesame_onetime_tokens" ("expires_at");
