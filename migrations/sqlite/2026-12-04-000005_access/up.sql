-- API keys: only the SHA-256 of each key is kept (hex); times are milliseconds since the epoch.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Every request that changed something or tried to. Ids are UUID v7, so the newest sort last.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    key_id TEXT,
    key_name TEXT,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    resource_id TEXT,
    status INTEGER NOT NULL
);
