-- 006_user_state: what sesame keeps about a user beyond the users table, which may be another
-- application's and is never altered: disabled_at (Unix seconds) is set while the user is
-- disabled (sesamectl user disable); a user with no row is enabled.
CREATE TABLE IF NOT EXISTS `sesame_user_state` (
  `user_id` BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  `disabled_at` BIGINT NULL
) ENGINE=InnoDB;
