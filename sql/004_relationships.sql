-- Friends and blacklists, as a stock GoBelieve router reads them when its enable_friendship /
-- enable_blacklist are on: SELECT uid, friend_uid FROM `friend` (or `blacklist`)
-- WHERE appid=? AND uid=? AND friend_uid=?. One row per direction: uid befriends (blocks)
-- friend_uid. IF NOT EXISTS, so a GoBelieve database keeps the rows it has (005 brings such
-- tables to this definition).
CREATE TABLE IF NOT EXISTS `friend` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `friend_uid` BIGINT NOT NULL,
  `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds',
  PRIMARY KEY (`appid`, `uid`, `friend_uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='uid has friend_uid as a friend';

CREATE TABLE IF NOT EXISTS `blacklist` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `friend_uid` BIGINT NOT NULL,
  `timestamp` INT NOT NULL DEFAULT 0 COMMENT 'since when, seconds',
  PRIMARY KEY (`appid`, `uid`, `friend_uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='uid blocks friend_uid';
