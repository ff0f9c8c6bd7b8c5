-- 002_unique_email: a unique e-mail on a users table that existed before sesame (a tutorial
-- service's, say), so that concurrent registrations of one address give one row there too.
-- When the table already holds two rows with one address, this fails, and sesamed does not
-- start until they are merged.
CREATE UNIQUE INDEX IF NOT EXISTS `{users}_{email}` ON `{users}` (`{email}`);
