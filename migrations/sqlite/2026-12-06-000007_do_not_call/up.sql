-- A campaign's caps on attempts to one number (JSON [{max_attempts, per}]).
ALTER TABLE campaigns ADD COLUMN recipient_limits TEXT NOT NULL DEFAULT '[]';
-- The do-not-call list. `scope` is 'global' or the id of the one campaign the entry covers;
-- the primary key serves the lookups by number the dialer makes.
CREATE TABLE do_not_call (
    phone_number TEXT NOT NULL,
    scope TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (phone_number, scope)
) WITHOUT ROWID;
-- When each number was dialed, by which campaign: what frequency caps count. Rows older than
-- the longest cap window (30 days) are pruned.
CREATE TABLE number_attempts (
    phone_number TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    campaign_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    PRIMARY KEY (phone_number, started_at, call_id, attempt)
) WITHOUT ROWID;
CREATE INDEX number_attempts_by_age ON number_attempts (started_at);
-- Waiting calls by number: what listing a number cancels.
CREATE INDEX calls_waiting_by_number ON calls (phone_number) WHERE status IN ('queued', 'retrying');
