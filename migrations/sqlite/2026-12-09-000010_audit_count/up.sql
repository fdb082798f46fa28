-- How many refused requests an entry stands for: refusals for a missing or unknown key are
-- recorded at most once per client address per second. 1 for every other entry.
ALTER TABLE audit_log ADD COLUMN request_count INTEGER NOT NULL DEFAULT 1;
-- Entries past `audit.retention` are removed by time.
CREATE INDEX audit_log_at ON audit_log (at);
