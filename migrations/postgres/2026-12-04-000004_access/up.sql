-- API keys and the audit log, as in migrations/sqlite. Under Citus both are small,
-- cross-campaign tables: `SELECT create_reference_table('api_keys');` and
-- `SELECT create_reference_table('audit_log');` (a change and its audit entry commit together).
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    -- SHA-256 of the key, hex; the key itself is never stored
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id TEXT COLLATE "C" PRIMARY KEY,
    at BIGINT NOT NULL,
    key_id TEXT,
    key_name TEXT,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    resource_id TEXT,
    status INTEGER NOT NULL
);
