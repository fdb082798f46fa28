ALTER TABLE campaigns DROP COLUMN pause_reason;
