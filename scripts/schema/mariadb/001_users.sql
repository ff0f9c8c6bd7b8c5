-- 001_users: the users table. Names in braces are storage.users' table and columns; a table
-- that exists already (a tutorial service's `user`, say) is kept as it is. The e-mail's
-- collation ignores letter case but not accents (MariaDB 10.10 and later: uca1400_as_ci),
-- so that Alice@ and alice@ are one account and josé@ and jose@ are two.
CREATE TABLE IF NOT EXISTS `{users}` (
  `{id}` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `{email}` VARCHAR(254) NOT NULL,
  `{username}` VARCHAR(64) NOT NULL,
  `{password}` VARCHAR(255) NOT NULL,
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  UNIQUE KEY `{users}_{email}` (`{email}`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 /*M!101000 COLLATE=utf8mb4_uca1400_as_ci */;
