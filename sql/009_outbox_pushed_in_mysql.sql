-- The relay's mark of the highest outbox seq done in Redis moves from the Redis key
-- {outbox}:pushed to this row, so the relay reads it in the same round trip as its lock and its
-- rows, and raises it in the same one as the lock's release. Rows at or below it wait only to be
-- deleted. Starting from 0 is safe: a row pushed before the upgrade and not yet deleted is read
-- again, and each queue's relayed mark skips its push (a sync field it clears is cleared again).
INSERT IGNORE INTO `sequence` (`name`, `value`) VALUES ('outbox_pushed', 0);
-- Upgrade with every worker stopped (a restart, not a USR2 reload): a relay of the previous
-- release takes a lock of another name and increments the counters this one writes, so the two
-- must not run side by side.
