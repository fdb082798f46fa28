DROP INDEX IF EXISTS calls_waiting_by_number;
DROP TABLE number_attempts;
DROP TABLE do_not_call;
ALTER TABLE campaigns DROP COLUMN recipient_limits;
