-- 005_login_failures: failed log-ins per account (limits.login_failures), shared by every
-- node. tat is the account's theoretical arrival time (GCRA), Unix milliseconds on the
-- database server's clock; a row whose tat has passed counts nothing and is purged. account
-- is the normalised e-mail, compared as the users table compares e-mails (letter case
-- ignored), whether or not it belongs to a user.
CREATE TABLE IF NOT EXISTS `sesame_login_failures` (
  `account` VARCHAR(254) NOT NULL PRIMARY KEY,
  `tat` BIGINT NOT NULL,
  KEY `sesame_login_failures_tat` (`tat`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 /*M!101000 COLLATE=utf8mb4_uca1400_as_ci */;
