-- As in migrations/sqlite: the outbox becomes one row per change, fanned out to deliveries by
-- the status role; the record and release paths write their events themselves, the triggers
-- remain for the rarer changes and only while an endpoint exists.
CREATE TABLE webhook_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type TEXT NOT NULL,
    campaign_id TEXT COLLATE "C",
    call_id TEXT COLLATE "C",
    attempt INTEGER,
    detail TEXT,
    body TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_events_attempts ON webhook_events (call_id, attempt)
    WHERE type = 'attempt.finished';

DROP TRIGGER IF EXISTS webhook_attempt_finished ON attempts;
DROP TRIGGER IF EXISTS webhook_call_finished ON calls;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed ON campaigns;
DROP FUNCTION webhook_attempt_finished();

CREATE OR REPLACE FUNCTION webhook_call_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhook_endpoints LIMIT 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    INSERT INTO webhook_events (type, campaign_id, call_id, created_at)
    VALUES ('call.finished', NEW.campaign_id, NEW.id, webhook_now_ms());
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_campaign_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhook_endpoints LIMIT 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    INSERT INTO webhook_events (type, campaign_id, detail, created_at)
    VALUES ('campaign.status_changed', NEW.id,
        json_build_object('name', NEW.name, 'from', OLD.status, 'to', NEW.status,
            'pause_reason', NEW.pause_reason::json)::text,
        webhook_now_ms());
    RETURN NULL;
END $$;

-- Armed as src/adapters/sql/triggers/postgres.sql arms them, and only while an endpoint
-- exists: dropping them later takes an exclusive lock on `calls` and `campaigns`, which a fresh
-- deployment's first upkeep would otherwise do while the API writes its first campaign.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        CREATE TRIGGER webhook_call_finished AFTER UPDATE OF status ON calls FOR EACH ROW
            WHEN (OLD.status IN ('queued', 'retrying')
                AND NEW.status IN ('completed', 'failed', 'canceled'))
            EXECUTE FUNCTION webhook_call_finished();
        CREATE TRIGGER webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns FOR EACH ROW
            WHEN (NEW.status IS DISTINCT FROM OLD.status)
            EXECUTE FUNCTION webhook_campaign_status_changed();
    END IF;
END $$;
