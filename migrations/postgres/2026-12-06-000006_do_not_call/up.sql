-- As in migrations/sqlite. Under Citus, do_not_call and number_attempts are distributed by
-- phone_number (every lookup names the number): `SELECT create_distributed_table('do_not_call',
-- 'phone_number');` and the same for number_attempts.
ALTER TABLE campaigns ADD COLUMN recipient_limits TEXT NOT NULL DEFAULT '[]';
CREATE TABLE do_not_call (
    phone_number TEXT COLLATE "C" NOT NULL,
    scope TEXT COLLATE "C" NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (phone_number, scope)
);
CREATE TABLE number_attempts (
    phone_number TEXT COLLATE "C" NOT NULL,
    started_at BIGINT NOT NULL,
    campaign_id TEXT COLLATE "C" NOT NULL,
    call_id TEXT COLLATE "C" NOT NULL,
    attempt INTEGER NOT NULL,
    PRIMARY KEY (phone_number, started_at, call_id, attempt)
);
CREATE INDEX number_attempts_by_age ON number_attempts (started_at);
-- Waiting calls by number: what listing a number cancels.
CREATE INDEX calls_waiting_by_number ON calls (phone_number) WHERE status IN ('queued', 'retrying');
