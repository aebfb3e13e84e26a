-- The live member count kept on the group row (SPEC 8: adding a member costs the same at
-- 100,000 members as at 1,000): every API change updates it under the group's row lock.
-- Rows written by hand into group_member are not counted until recounted with this UPDATE.
ALTER TABLE `group`
  ADD COLUMN `member_count` INT NOT NULL DEFAULT 0 COMMENT 'live members, kept by the API';

UPDATE `group` g SET member_count = (
  SELECT COUNT(*) FROM group_member m WHERE m.group_id = g.id AND m.deleted = 0
);
