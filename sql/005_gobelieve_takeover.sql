-- Taking over a database made from GoBelieve's own db.sql, in place and keeping every row.
-- There, 001 and 004 found `group`, `group_member`, `friend` and `blacklist` already made
-- (CREATE TABLE IF NOT EXISTS kept them as they were: utf8, nullable ids and texts, `deleted`
-- without a default, an int `timestamp`, missing columns); this file brings them to the
-- definitions of 001 and 004.
--
-- Each step runs only if the `-- only if` lines above it hold (models/schema.py reads them
-- from information_schema), so on a database this service made, nothing here runs and
-- nothing is rebuilt. Every table this service makes is utf8mb4_bin, so a table in another
-- collation is a foreign one: its rows are given this schema's defaults where they hold NULL,
-- then one ALTER rewrites all its columns and converts it (one table copy, not one per
-- column). The conversion comes last among a table's rewriting steps, so if init-db stops
-- half way, the next run does the rest: every step is safe to repeat.

-- only if database is not utf8mb4_bin
ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- `group` --------------------------------------------------------------------------------
-- Columns older GoBelieve versions lack, or GoBelieve never had, in 001's order.

-- only if column `group`.`appid` is missing
ALTER TABLE `group` ADD COLUMN `appid` BIGINT NOT NULL DEFAULT 0 AFTER `id`;

-- only if column `group`.`master` is missing
ALTER TABLE `group` ADD COLUMN `master` BIGINT NOT NULL DEFAULT 0 AFTER `appid`;

-- only if column `group`.`super` is missing
ALTER TABLE `group` ADD COLUMN `super` TINYINT NOT NULL DEFAULT 0 AFTER `master`;

-- only if column `group`.`name` is missing
ALTER TABLE `group` ADD COLUMN `name` VARCHAR(255) NOT NULL DEFAULT '' AFTER `super`;

-- only if column `group`.`notice` is missing
ALTER TABLE `group` ADD COLUMN `notice` VARCHAR(255) NOT NULL DEFAULT '' AFTER `name`;

-- only if column `group`.`cover` is missing
ALTER TABLE `group` ADD COLUMN `cover` VARCHAR(255) NOT NULL DEFAULT '' AFTER `notice`;

-- only if column `group`.`code` is missing
ALTER TABLE `group` ADD COLUMN `code` VARCHAR(64) NULL DEFAULT NULL COMMENT 'face-to-face join code' AFTER `cover`;

-- only if column `group`.`deleted` is missing
ALTER TABLE `group` ADD COLUMN `deleted` TINYINT NOT NULL DEFAULT 0 AFTER `code`;

-- only if column `group`.`created_at` is missing
ALTER TABLE `group` ADD COLUMN `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP AFTER `deleted`;

-- only if column `group`.`updated_at` is missing
ALTER TABLE `group` ADD COLUMN `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP AFTER `created_at`;

-- GoBelieve allowed NULL here; the router and this service read NULL as 0 or ''.
-- only if table `group` is not utf8mb4_bin
UPDATE `group` SET `appid` = COALESCE(`appid`, 0), `master` = COALESCE(`master`, 0),
  `super` = COALESCE(`super`, 0), `name` = COALESCE(`name`, ''), `notice` = COALESCE(`notice`, ''),
  `deleted` = COALESCE(`deleted`, 0)
WHERE `appid` IS NULL OR `master` IS NULL OR `super` IS NULL OR `name` IS NULL OR `notice` IS NULL
  OR `deleted` IS NULL;

-- only if table `group` is not utf8mb4_bin
ALTER TABLE `group`
  MODIFY `id` BIGINT NOT NULL AUTO_INCREMENT,
  MODIFY `appid` BIGINT NOT NULL DEFAULT 0,
  MODIFY `master` BIGINT NOT NULL DEFAULT 0,
  MODIFY `super` TINYINT NOT NULL DEFAULT 0,
  MODIFY `name` VARCHAR(255) NOT NULL DEFAULT '',
  MODIFY `notice` VARCHAR(255) NOT NULL DEFAULT '',
  MODIFY `cover` VARCHAR(255) NOT NULL DEFAULT '',
  MODIFY `code` VARCHAR(64) NULL DEFAULT NULL COMMENT 'face-to-face join code',
  MODIFY `deleted` TINYINT NOT NULL DEFAULT 0,
  MODIFY `created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  MODIFY `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Added to the converted table, so it is utf8mb4 from the start.
-- only if column `group`.`live_code` is missing
ALTER TABLE `group` ADD COLUMN `live_code` VARCHAR(64) AS (IF(`deleted` = 0, `code`, NULL)) STORED AFTER `updated_at`;

-- only if index `group`.`idx_appid_deleted_id` is missing
ALTER TABLE `group` ADD KEY `idx_appid_deleted_id` (`appid`, `deleted`, `id`);

-- only if index `group`.`uniq_appid_live_code` is missing
ALTER TABLE `group` ADD UNIQUE KEY `uniq_appid_live_code` (`appid`, `live_code`);

-- `group_member` -------------------------------------------------------------------------

-- only if column `group_member`.`timestamp` is missing
ALTER TABLE `group_member` ADD COLUMN `timestamp` BIGINT NOT NULL DEFAULT 0 COMMENT 'join time, seconds' AFTER `uid`;

-- only if column `group_member`.`nickname` is missing
ALTER TABLE `group_member` ADD COLUMN `nickname` VARCHAR(255) NOT NULL DEFAULT '' AFTER `timestamp`;

-- only if column `group_member`.`mute` is missing
ALTER TABLE `group_member` ADD COLUMN `mute` TINYINT NOT NULL DEFAULT 0 AFTER `nickname`;

-- only if column `group_member`.`deleted` is missing
ALTER TABLE `group_member` ADD COLUMN `deleted` TINYINT NOT NULL DEFAULT 0 AFTER `mute`;

-- only if table `group_member` is not utf8mb4_bin
UPDATE `group_member` SET `timestamp` = COALESCE(`timestamp`, 0), `nickname` = COALESCE(`nickname`, ''),
  `mute` = COALESCE(`mute`, 0), `deleted` = COALESCE(`deleted`, 0)
WHERE `timestamp` IS NULL OR `nickname` IS NULL OR `mute` IS NULL OR `deleted` IS NULL;

-- only if table `group_member` is not utf8mb4_bin
ALTER TABLE `group_member`
  MODIFY `group_id` BIGINT NOT NULL,
  MODIFY `uid` BIGINT NOT NULL,
  MODIFY `timestamp` BIGINT NOT NULL DEFAULT 0 COMMENT 'join time, seconds',
  MODIFY `nickname` VARCHAR(255) NOT NULL DEFAULT '',
  MODIFY `mute` TINYINT NOT NULL DEFAULT 0,
  MODIFY `deleted` TINYINT NOT NULL DEFAULT 0,
  CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- GoBelieve's index on uid has another name; renaming it costs no index build.
-- only if index `group_member`.`idx_group_member_uid` exists
-- only if index `group_member`.`idx_uid` is missing
ALTER TABLE `group_member` RENAME INDEX `idx_group_member_uid` TO `idx_uid`;

-- only if index `group_member`.`idx_uid` is missing
ALTER TABLE `group_member` ADD KEY `idx_uid` (`uid`);

-- Both there (someone added idx_uid by hand): the other one is a duplicate.
-- only if index `group_member`.`idx_group_member_uid` exists
ALTER TABLE `group_member` DROP INDEX `idx_group_member_uid`;

-- `friend` and `blacklist` ---------------------------------------------------------------
-- GoBelieve's have every column, NOT NULL, with no default for `timestamp`.

-- only if column `friend`.`timestamp` is missing
ALTER TABLE `friend` ADD COLUMN `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds' AFTER `friend_uid`;

-- only if table `friend` is not utf8mb4_bin
ALTER TABLE `friend`
  MODIFY `appid` BIGINT NOT NULL,
  MODIFY `uid` BIGINT NOT NULL,
  MODIFY `friend_uid` BIGINT NOT NULL,
  MODIFY `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds',
  COMMENT = 'uid has friend_uid as a friend',
  CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- only if column `blacklist`.`timestamp` is missing
ALTER TABLE `blacklist` ADD COLUMN `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds' AFTER `friend_uid`;

-- only if table `blacklist` is not utf8mb4_bin
ALTER TABLE `blacklist`
  MODIFY `appid` BIGINT NOT NULL,
  MODIFY `uid` BIGINT NOT NULL,
  MODIFY `friend_uid` BIGINT NOT NULL,
  MODIFY `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds',
  COMMENT = 'uid blocks friend_uid',
  CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
