-- Events are numbered when they are relayed, not inside the change's transaction, so group
-- changes on different groups no longer wait for one counter row (SPEC 8). The relay gives
-- each row a `seq` (relay order) and, for an event, its action_id from the counter of its
-- `chain`, commits that, then pushes; Redis keeps the highest seq pushed to each queue, so
-- a push that is retried or repeated after a crash is skipped (exactly once, SPEC 5.2).
ALTER TABLE `outbox`
  ADD COLUMN `chain` VARCHAR(32) NOT NULL DEFAULT '' COMMENT 'sequence row that numbers this event; empty: none',
  ADD COLUMN `seq` BIGINT NULL DEFAULT NULL COMMENT 'relay order, given by the relay; NULL: not numbered yet',
  ADD INDEX `idx_seq` (`seq`);

INSERT IGNORE INTO `sequence` (`name`, `value`) VALUES ('relationship_action', 0), ('outbox_seq', 0);
