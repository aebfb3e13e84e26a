-- A revoked token leaves its row with token NULL: the user was granted a token once, which the
-- router's statistics_users_<appid> counts, and restore-redis counts it again (SPEC 5.3).
ALTER TABLE `user_token`
  MODIFY `token` VARCHAR(128) NULL DEFAULT NULL COMMENT 'access_token_<token> in Redis; NULL: revoked';
