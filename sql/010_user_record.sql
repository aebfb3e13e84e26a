-- The record of what the router reads from a user's Redis hashes (SPEC 5.3): tokens, settings,
-- do-not-disturb and device tokens. Every request writes here first and to Redis after;
-- `flask --app app restore-redis` rewrites Redis from these rows when Redis lost its data.
-- A user's name and avatar are recorded in `user` (001).

CREATE TABLE IF NOT EXISTS `user_token` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `token` VARCHAR(128) NOT NULL DEFAULT '' COMMENT 'access_token_<token> in Redis',
  `user_name` VARCHAR(255) NOT NULL DEFAULT '' COMMENT 'the token hash''s user_name',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `uid`),
  UNIQUE KEY `uniq_token` (`token`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='a user''s live access token; revoked: no row';

CREATE TABLE IF NOT EXISTS `user_setting` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `forbidden` TINYINT NULL DEFAULT NULL COMMENT '1: banned; NULL: never set',
  `mute` TINYINT NULL DEFAULT NULL COMMENT 'NULL: never set',
  `notification_on` TINYINT NULL DEFAULT NULL COMMENT 'NULL: never set (push on)',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='the flags of users_<appid>_<uid>';

CREATE TABLE IF NOT EXISTS `user_do_not_disturb` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `kind` VARCHAR(8) NOT NULL DEFAULT 'peer' COMMENT 'peer or group',
  `target` BIGINT NOT NULL DEFAULT 0 COMMENT 'the peer''s uid or the group''s id',
  `do_not_disturb` TINYINT NOT NULL DEFAULT 0,
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `uid`, `kind`, `target`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='peer_<uid> and group_<gid> of users_<appid>_<uid>';

CREATE TABLE IF NOT EXISTS `user_device` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `kind` VARCHAR(16) NOT NULL DEFAULT '' COMMENT 'apns, pushkit, xg, xm, hw, gcm or jp',
  `device_token` VARCHAR(512) NOT NULL DEFAULT '',
  `timestamp` BIGINT NOT NULL DEFAULT 0 COMMENT '<kind>_timestamp: bound at, seconds',
  `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`appid`, `uid`, `kind`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='<kind>_device_token of users_<appid>_<uid>';
