-- 003_login_failures: failed log-ins per account (limits.login_failures). tat is the
-- account's theoretical arrival time (GCRA), Unix milliseconds on SQLite's clock; a row whose
-- tat has passed counts nothing and is purged. account is the normalised e-mail, compared
-- with NOCASE as the users table compares e-mails, whether or not it belongs to a user.
CREATE TABLE IF NOT EXISTS "sesame_login_failures" (
  "account" TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
  "tat" INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "sesame_login_failures_tat" ON "sesame_login_failures" ("tat");
