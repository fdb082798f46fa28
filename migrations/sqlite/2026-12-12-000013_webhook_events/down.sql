-- Back to deliveries written by per-row triggers. Events not fanned out yet are dropped with
-- their table: fan them out (run the status role until `webhook_events` is empty) first.
DROP TRIGGER IF EXISTS webhook_call_finished;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed;
DROP TABLE webhook_events;
-- The previous release's triggers, armed; its status role drops them when no endpoint exists.
CREATE TRIGGER IF NOT EXISTS webhook_attempt_finished AFTER UPDATE OF ended_at ON attempts
WHEN OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
BEGIN
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, call_id, attempt, created_at, status, next_attempt_at)
    SELECT 'msg_' || printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
        || lower(hex(randomblob(10))), e.id, 'attempt.finished', NEW.campaign_id,
        NEW.call_id, NEW.attempt, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        'pending', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.campaign_id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,attempt.finished,%');
END;

CREATE TRIGGER IF NOT EXISTS webhook_call_finished AFTER UPDATE OF status ON calls
WHEN NEW.status IN ('completed', 'failed', 'canceled')
    AND OLD.status NOT IN ('completed', 'failed', 'canceled')
BEGIN
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, call_id, created_at, status, next_attempt_at)
    SELECT 'msg_' || printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
        || lower(hex(randomblob(10))), e.id, 'call.finished', NEW.campaign_id, NEW.id,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.campaign_id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,call.finished,%');
END;

CREATE TRIGGER IF NOT EXISTS webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns
WHEN NEW.status <> OLD.status
BEGIN
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, detail, created_at, status, next_attempt_at)
    SELECT 'msg_' || printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
        || lower(hex(randomblob(10))), e.id, 'campaign.status_changed', NEW.id,
        json_object('name', NEW.name, 'from', OLD.status, 'to', NEW.status,
            'pause_reason', json(NEW.pause_reason)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,campaign.status_changed,%');
END;
