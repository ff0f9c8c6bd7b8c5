-- 004_revoked_tokens: revoked token ids (a jti, or a refresh family's id). Every worker fetches
-- the ids revoked since its last look (revoked_at, Unix milliseconds); a row is purged once
-- expires_at (Unix seconds; 0: never) has passed.
CREATE TABLE IF NOT EXISTS `sesame_revoked_tokens` (
  `id` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  `revoked_at` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  KEY `sesame_revoked_tokens_revoked_at` (`revoked_at`),
  KEY `sesame_revoked_tokens_expires_at` (`expires_at`)
) ENGINE=InnoDB;
