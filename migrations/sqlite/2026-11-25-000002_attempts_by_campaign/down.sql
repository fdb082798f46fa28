CREATE TABLE attempts_by_call (
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    campaign_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (call_id, attempt)
) WITHOUT ROWID;
INSERT INTO attempts_by_call (call_id, attempt, campaign_id, status, error, started_at,
    ended_at, duration_ms)
SELECT call_id, attempt, campaign_id, status, error, started_at, ended_at, duration_ms
FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_by_call RENAME TO attempts;
