-- The outbox becomes one row per change (`webhook_events`), fanned out to a delivery per
-- listening endpoint by the status role in its own transactions, off the dialing path. The
-- store's record and release paths write their attempts' and calls' events themselves, one
-- statement per batch; triggers remain only for the rarer changes (a queued call canceled by
-- a cancellation, a listing or a screen; a campaign's status), and only while an endpoint
-- exists (src/adapters/sql/webhooks.rs). A per-row trigger on the record path cost dialing
-- 40% of its rate with an endpoint listening. Their conditions compare with `=` and `OR`: a
-- list (`IN ('a', 'b', 'c')`) in a trigger's WHEN is built as a temporary table for every row
-- the statement touches, which alone cost SQLite's write path two thirds of its rate.
CREATE TABLE webhook_events (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    campaign_id TEXT,
    call_id TEXT,
    attempt INTEGER,
    detail TEXT,
    -- rendered when written (an opt-out keeps nothing the body could be rendered from later)
    body TEXT,
    created_at BIGINT NOT NULL
);
-- an attempt whose event is not fanned out yet stays for the timeline exporter
CREATE INDEX webhook_events_attempts ON webhook_events (call_id, attempt)
    WHERE type = 'attempt.finished';

DROP TRIGGER IF EXISTS webhook_attempt_finished;
DROP TRIGGER IF EXISTS webhook_call_finished;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed;
-- Armed as src/adapters/sql/triggers/sqlite.sql arms them; the status role drops them within
-- a minute when no endpoint exists.
CREATE TRIGGER webhook_call_finished AFTER UPDATE OF status ON calls
WHEN (OLD.status = 'queued' OR OLD.status = 'retrying')
    AND (NEW.status = 'completed' OR NEW.status = 'failed' OR NEW.status = 'canceled')
    AND EXISTS (SELECT 1 FROM webhook_endpoints)
BEGIN
    INSERT INTO webhook_events (type, campaign_id, call_id, created_at)
    VALUES ('call.finished', NEW.campaign_id, NEW.id,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns
WHEN NEW.status <> OLD.status AND EXISTS (SELECT 1 FROM webhook_endpoints)
BEGIN
    INSERT INTO webhook_events (type, campaign_id, detail, created_at)
    VALUES ('campaign.status_changed', NEW.id,
        json_object('name', NEW.name, 'from', OLD.status, 'to', NEW.status,
            'pause_reason', json(NEW.pause_reason)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
