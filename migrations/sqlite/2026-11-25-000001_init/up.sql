-- Times are milliseconds since the Unix epoch (UTC); ids are UUID v7 text, so they sort by creation.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- lowercased name: names are unique case-insensitively
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    status TEXT NOT NULL,
    max_concurrent_calls INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    base_delay_ms BIGINT NOT NULL,
    max_delay_ms BIGINT NOT NULL,
    jitter DOUBLE NOT NULL,
    business_hours TEXT NOT NULL,
    target_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX campaigns_by_status ON campaigns (status, id);

CREATE TABLE targets (
    campaign_id TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    metadata TEXT,
    PRIMARY KEY (campaign_id, phone_number)
) WITHOUT ROWID;

CREATE TABLE calls (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    scheduled_at BIGINT NOT NULL,
    next_attempt_at BIGINT,
    last_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_error TEXT,
    metadata TEXT,
    -- instance that moved the call to dialing; its heartbeat tells whether the attempt is alive
    owner TEXT
);
CREATE INDEX calls_by_campaign ON calls (campaign_id, id);
CREATE INDEX calls_by_campaign_status ON calls (campaign_id, status, id);
CREATE INDEX calls_retry_due ON calls (next_attempt_at) WHERE status = 'retrying';
CREATE INDEX calls_dialing_owner ON calls (owner) WHERE status = 'dialing';

CREATE TABLE attempts (
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

CREATE TABLE campaign_stats (
    campaign_id TEXT PRIMARY KEY NOT NULL,
    total_targets BIGINT NOT NULL DEFAULT 0,
    total_calls BIGINT NOT NULL DEFAULT 0,
    queued BIGINT NOT NULL DEFAULT 0,
    retrying BIGINT NOT NULL DEFAULT 0,
    dialing BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    canceled BIGINT NOT NULL DEFAULT 0,
    attempts_total BIGINT NOT NULL DEFAULT 0,
    retries_attempted BIGINT NOT NULL DEFAULT 0,
    duration_ms_total BIGINT NOT NULL DEFAULT 0,
    finished_attempts BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
