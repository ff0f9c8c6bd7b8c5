-- 001_users: the users table. Names in braces are storage.users' table and columns; a table
-- that exists already (a tutorial service's `user`, say) keeps its columns as they are.
--
-- The e-mail's unique index compares with NOCASE, so two addresses that differ only in letter
-- case are one account, and concurrent registrations of one address leave one row. It is a
-- named index rather than a column constraint so that an existing table gets it too (if its
-- rows already hold such twins, this migration fails and changes nothing). NOCASE folds ASCII
-- letters only: "É" and "é" stay distinct; the email validator lower-cases domains already.
CREATE TABLE IF NOT EXISTS "{users}" (
  "{id}" INTEGER PRIMARY KEY AUTOINCREMENT,
  "{email}" TEXT NOT NULL COLLATE NOCASE,
  "{username}" TEXT NOT NULL,
  "{password}" TEXT NOT NULL,
  "created_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX IF NOT EXISTS "{users}_{email}" ON "{users}" ("{email}" COLLATE NOCASE);
