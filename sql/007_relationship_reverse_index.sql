-- Deleting a user removes the friend and blacklist rows that name it (friend_uid = the user)
-- as well as its own: an index on (appid, friend_uid), so that is a range read, not a scan
-- of the app's rows. A GoBelieve database taken over may have one of that name already.

-- only if index `friend`.`idx_friend_friend_uid` is missing
ALTER TABLE `friend` ADD INDEX `idx_friend_friend_uid` (`appid`, `friend_uid`);

-- only if index `blacklist`.`idx_blacklist_friend_uid` is missing
ALTER TABLE `blacklist` ADD INDEX `idx_blacklist_friend_uid` (`appid`, `friend_uid`);
