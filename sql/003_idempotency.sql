-- Results of requests sent with an Idempotency-Key that write MySQL (group creation), so a
-- retried request gets the first result instead of a second group. Kept until purged.
CREATE TABLE IF NOT EXISTS `idempotency` (
  `appid` BIGINT NOT NULL,
  `idem_key` VARCHAR(200) NOT NULL,
  `result` VARCHAR(1024) NOT NULL DEFAULT '',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `idem_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
