-- 003_refresh_families: the chains of refresh tokens, one per log-in. current_jti is the token
-- that may be spent next, previous_jti the one it replaced at rotated_at (kept for the grace
-- interval of racing refreshes). rotated_at, revoked_at: Unix milliseconds; expires_at: Unix
-- seconds, the family's absolute end, after which the row is purged.
CREATE TABLE IF NOT EXISTS `sesame_refresh_families` (
  `id` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  `subject` VARCHAR(255) NOT NULL,
  `current_jti` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `previous_jti` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  `rotated_at` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  `revoked_at` BIGINT NULL,
  KEY `sesame_refresh_families_subject` (`subject`),
  KEY `sesame_refresh_families_expires_at` (`expires_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
