-- A customer-service visitor's last seller, which the router reads from users_<appid>_<uid>
-- (store_id, seller_id) and GET /supporters gives the visitor again (SPEC 5.3).
ALTER TABLE `user_setting`
  ADD COLUMN `store_id` BIGINT NULL DEFAULT NULL COMMENT 'a visitor''s store; NULL: never chosen' AFTER `notification_on`,
  ADD COLUMN `seller_id` BIGINT NULL DEFAULT NULL COMMENT 'the seller last chosen in store_id' AFTER `store_id`;
