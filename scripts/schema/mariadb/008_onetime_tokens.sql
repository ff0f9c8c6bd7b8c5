-- 008_onetime_tokens: one-time tokens (e-mail confirmation, password reset, a route script's
-- own), stored as the SHA-256 of the token (64 hex digits), never the token itself, with what
-- it is for, whose it is, an optional string (the new address of an e-mail change) and its
-- expiry (Unix seconds on the database server's clock), after which it is purged. Spending one
-- deletes it: of two nodes spending it at once, the row lock lets one find it.
CREATE TABLE IF NOT EXISTS `sesame_onetime_tokens` (
  `hash` CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  `purpose` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `user_id` BIGINT UNSIGNED NOT NULL,
  `data` VARCHAR(1024) NULL,
  `expires_at` BIGINT NOT NULL,
  KEY `sesame_onetime_tokens_user_id` (`user_id`),
  KEY `sesame_onetime_tokens_expires_at` (`expires_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
