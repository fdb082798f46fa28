DROP INDEX calls_claimable;
ALTER TABLE calls DROP COLUMN dial_after;
ALTER TABLE calls DROP COLUMN time_zone;
ALTER TABLE campaigns DROP COLUMN restricted_periods;
ALTER TABLE campaigns DROP COLUMN recipient_hours;
