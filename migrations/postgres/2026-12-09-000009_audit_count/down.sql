DROP INDEX audit_log_at;
ALTER TABLE audit_log DROP COLUMN request_count;
