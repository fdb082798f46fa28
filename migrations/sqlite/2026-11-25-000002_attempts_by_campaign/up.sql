-- Attempts keyed by campaign first, as in PostgreSQL: a campaign's attempts in call order are
-- one range of the key (GET /campaigns/{id}/attempts pages it), and every other lookup knows
-- the campaign. SQLite cannot change a primary key in place, so the table is rebuilt.
CREATE TABLE attempts_by_campaign (
    campaign_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (campaign_id, call_id, attempt)
) WITHOUT ROWID;
INSERT INTO attempts_by_campaign (campaign_id, call_id, attempt, status, error, started_at,
    ended_at, duration_ms)
SELECT campaign_id, call_id, attempt, status, error, started_at, ended_at, duration_ms
FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_by_campaign RENAME TO attempts;
