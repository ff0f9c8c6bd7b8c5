-- 009_events: auth events (events.store), kept for events.retention. at_ms is the database
-- server's clock, Unix milliseconds; a reader pages through them by id. user_id is NULL for an
-- event of no user; data is one JSON object's text.
CREATE TABLE IF NOT EXISTS `sesame_events` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `at_ms` BIGINT NOT NULL,
  `name` VARCHAR(64) NOT NULL,
  `user_id` BIGINT UNSIGNED NULL,
  `data` TEXT NOT NULL,
  KEY `sesame_events_at_ms` (`at_ms`),
  KEY `sesame_events_user_id` (`user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
