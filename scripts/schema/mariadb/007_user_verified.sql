-- 007_user_verified: when the user's e-mail address was confirmed (the account flows), Unix
-- seconds on the database server's clock, in sesame's own per-user table; NULL while it is not.
ALTER TABLE `sesame_user_state` ADD COLUMN IF NOT EXISTS `verified_at` BIGINT NULL;
