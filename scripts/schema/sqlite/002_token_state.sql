-- 002_token_state: refresh-token families and revoked token ids.
--
-- A family is the chain of refresh tokens one log-in leads to: current_jti is the one that may
-- be spent next, previous_jti the one it replaced at rotated_at (kept for the grace interval
-- of racing refreshes). A revoked id is a jti or a family's id; every worker fetches the ids
-- revoked since its last look. rotated_at, revoked_at: Unix milliseconds; expires_at: Unix
-- seconds (0: never), after which a row is purged.
CREATE TABLE IF NOT EXISTS "sesame_refresh_families" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "subject" TEXT NOT NULL,
  "current_jti" TEXT NOT NULL,
  "previous_jti" TEXT,
  "rotated_at" INTEGER NOT NULL,
  "expires_at" INTEGER NOT NULL,
  "revoked_at" INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "sesame_refresh_families_subject"
  ON "sesame_refresh_families" ("subject");
CREATE INDEX IF NOT EXISTS "sesame_refresh_families_expires_at"
  ON "sesame_refresh_families" ("expires_at");
CREATE TABLE IF NOT EXISTS "sesame_revoked_tokens" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "revoked_at" INTEGER NOT NULL,
  "expires_at" INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "sesame_revoked_tokens_revoked_at"
  ON "sesame_revoked_tokens" ("revoked_at");
CREATE INDEX IF NOT EXISTS "sesame_revoked_tokens_expires_at"
  ON "sesame_revoked_tokens" ("expires_at");
