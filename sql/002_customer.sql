-- Customer-service visitors: an app's customer_id (any string) mapped to a client id.
-- The client id is CUSTOMER_ID_BASE + id, a range the API refuses as an app uid.
CREATE TABLE IF NOT EXISTS `customer` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `appid` BIGINT NOT NULL DEFAULT 0,
  `customer_id` VARBINARY(512) NOT NULL DEFAULT '' COMMENT '128 characters of UTF-8, compared byte for byte',
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `avatar` VARCHAR(255) NOT NULL DEFAULT '',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uniq_appid_customer_id` (`appid`, `customer_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
