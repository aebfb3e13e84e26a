-- The relay's mark of the highest outbox seq done in Redis moves from the Redis key
-- {outbox}:pushed to this row, so the relay reads it in the same round trip as its lock and its
-- rows, and raises it in the same one as the lock's release. Rows at or below it wait only to be
-- deleted. Starting from 0 is safe: a row pushed before the upgrade and not yet deleted is read
-- again, and each queue's relayed mark skips its push (a sync field it clears is cleared again).
INSERT IGNORE INTO `sequence` (`name`, `value`) VALUES ('outbox_pushed', 0);
