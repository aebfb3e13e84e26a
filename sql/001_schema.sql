-- The first release's schema. Later changes go in 002_*.sql, 003_*.sql, ...
-- No foreign keys (the router and operators write these tables too); every
-- non-key column has a default so a row can be inserted by hand.

CREATE TABLE IF NOT EXISTS `app` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `key` VARCHAR(64) NOT NULL DEFAULT '',
  `secret` VARCHAR(64) NOT NULL DEFAULT '',
  `store_id` BIGINT NOT NULL DEFAULT 0 COMMENT '0: no customer service',
  `disabled` TINYINT NOT NULL DEFAULT 0,
  `allowed_ips` VARCHAR(1024) NOT NULL DEFAULT '' COMMENT 'comma-separated addresses or CIDRs; empty: any',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `group` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `appid` BIGINT NOT NULL DEFAULT 0,
  `master` BIGINT NOT NULL DEFAULT 0,
  `super` TINYINT NOT NULL DEFAULT 0,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `notice` VARCHAR(255) NOT NULL DEFAULT '',
  `cover` VARCHAR(255) NOT NULL DEFAULT '',
  `code` VARCHAR(64) NULL DEFAULT NULL COMMENT 'face-to-face join code',
  `deleted` TINYINT NOT NULL DEFAULT 0,
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  -- NULL for disbanded groups, so a code is unique among an app's live groups only.
  -- STORED (MySQL 8.0 and MariaDB 10.6+); this file once said PERSISTENT, MariaDB's older
  -- spelling of the same thing, so databases made from it need no migration.
  `live_code` VARCHAR(64) AS (IF(`deleted` = 0, `code`, NULL)) STORED,
  PRIMARY KEY (`id`),
  KEY `idx_appid_deleted_id` (`appid`, `deleted`, `id`),
  UNIQUE KEY `uniq_appid_live_code` (`appid`, `live_code`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `group_member` (
  `group_id` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `timestamp` BIGINT NOT NULL DEFAULT 0 COMMENT 'join time, seconds',
  `nickname` VARCHAR(255) NOT NULL DEFAULT '',
  `mute` TINYINT NOT NULL DEFAULT 0,
  `deleted` TINYINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`group_id`, `uid`),
  KEY `idx_uid` (`uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `user` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `avatar` VARCHAR(255) NOT NULL DEFAULT '',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `store` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `appid` BIGINT NOT NULL DEFAULT 0,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `idx_appid` (`appid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `seller` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `store_id` BIGINT NOT NULL DEFAULT 0,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `avatar` VARCHAR(255) NOT NULL DEFAULT '',
  `deleted` TINYINT NOT NULL DEFAULT 0,
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `idx_store_id` (`store_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Counters that must survive a Redis flush: group_action (the action_id chain),
-- message_id (blocks of message ids handed to processes), outbox_relay (a lock row).
CREATE TABLE IF NOT EXISTS `sequence` (
  `name` VARCHAR(32) NOT NULL,
  `value` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO `sequence` (`name`, `value`)
VALUES ('group_action', 0), ('message_id', 0), ('outbox_relay', 0);

-- Redis writes (queue items, cleared fields) stored in the same transaction as the change
-- they belong to and carried out in id order once committed (transactional outbox).
CREATE TABLE IF NOT EXISTS `outbox` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `command` VARCHAR(8) NOT NULL DEFAULT 'LPUSH' COMMENT 'LPUSH an item on a queue, or HDEL a field',
  `redis_key` VARCHAR(255) NOT NULL DEFAULT '',
  -- The one non-key column without a default: MySQL 8.0 takes no literal default on a TEXT
  -- column, and rows here are written only by the service.
  `item` MEDIUMTEXT NOT NULL,
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
