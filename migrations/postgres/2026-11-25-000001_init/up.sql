-- The distributed store's schema: the same model as migrations/sqlite (times are milliseconds
-- since the Unix epoch, UTC; ids are UUID v7 text, so they sort by creation), laid out so Citus
-- can distribute it by campaign. Ids, names and phone numbers use the "C" collation: byte order,
-- so paging "after id" and the scheduler's "oldest call first" agree with SQLite whatever the
-- database's locale, and comparisons skip the locale's rules.
--
-- Citus (optional; plain PostgreSQL needs none of this). Every table carries campaign_id in its
-- primary key, so after this migration, on the coordinator:
--
--   SELECT create_reference_table('campaign_names');
--   SELECT create_reference_table('instances');
--   SELECT create_distributed_table('campaigns', 'id');
--   SELECT create_distributed_table('campaign_stats', 'campaign_id', colocate_with => 'campaigns');
--   SELECT create_distributed_table('targets', 'campaign_id', colocate_with => 'campaigns');
--   SELECT create_distributed_table('calls', 'campaign_id', colocate_with => 'campaigns');
--   SELECT create_distributed_table('attempts', 'campaign_id', colocate_with => 'campaigns');
--
-- A unique index on a distributed table must include the distribution column, so campaign names
-- (unique case-insensitively across campaigns) live in the small campaign_names reference table,
-- written in the transaction that creates or renames the campaign.

CREATE TABLE campaigns (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    status TEXT NOT NULL,
    max_concurrent_calls INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    base_delay_ms BIGINT NOT NULL,
    max_delay_ms BIGINT NOT NULL,
    jitter DOUBLE PRECISION NOT NULL,
    -- JSON array of business windows, as in SQLite
    business_hours TEXT NOT NULL,
    target_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
-- list by status; runnable campaigns (status = 'in_progress')
CREATE INDEX campaigns_by_status ON campaigns (status, id);

-- Lowercased names: the case-insensitive unique index campaigns cannot carry once distributed.
CREATE TABLE campaign_names (
    name_key TEXT COLLATE "C" PRIMARY KEY,
    campaign_id TEXT COLLATE "C" NOT NULL
);

CREATE TABLE targets (
    campaign_id TEXT COLLATE "C" NOT NULL,
    phone_number TEXT COLLATE "C" NOT NULL,
    metadata TEXT,
    PRIMARY KEY (campaign_id, phone_number)
);

CREATE TABLE calls (
    campaign_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    phone_number TEXT COLLATE "C" NOT NULL,
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
    owner TEXT COLLATE "C",
    -- also serves paging all calls of a campaign in id order
    PRIMARY KEY (campaign_id, id)
);
-- claims (queued, oldest first) and paging by status
CREATE INDEX calls_by_campaign_status ON calls (campaign_id, status, id);
-- due retries per campaign, and the earliest one
CREATE INDEX calls_retry_due ON calls (campaign_id, next_attempt_at) WHERE status = 'retrying';
-- attempts whose owner stopped heartbeating
CREATE INDEX calls_dialing_owner ON calls (owner) WHERE status = 'dialing';
-- GET /calls/{id} knows only the call id (not unique on its own: Citus allows no unique index
-- without the distribution column; ids are UUID v7, unique by construction)
CREATE INDEX calls_by_id ON calls (id);

CREATE TABLE attempts (
    campaign_id TEXT COLLATE "C" NOT NULL,
    call_id TEXT COLLATE "C" NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (campaign_id, call_id, attempt)
);

CREATE TABLE campaign_stats (
    campaign_id TEXT COLLATE "C" PRIMARY KEY,
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
    id TEXT COLLATE "C" PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL
);
