CREATE TRIGGER IF NOT EXISTS webhook_call_finished AFTER UPDATE OF status ON calls
WHEN (OLD.status = 'queued' OR OLD.status = 'retrying')
    AND (NEW.status = 'completed' OR NEW.status = 'failed' OR NEW.status = 'canceled')
    AND EXISTS (SELECT 1 FROM webhook_endpoints)
BEGIN
    INSERT INTO webhook_events (type, campaign_id, call_id, created_at)
    VALUES ('call.finished', NEW.campaign_id, NEW.id,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER IF NOT EXISTS webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns
WHEN NEW.status <> OLD.status AND EXISTS (SELECT 1 FROM webhook_endpoints)
BEGIN
    INSERT INTO webhook_events (type, campaign_id, detail, created_at)
    VALUES ('campaign.status_changed', NEW.id,
        json_object('name', NEW.name, 'from', OLD.status, 'to', NEW.status,
            'pause_reason', json(NEW.pause_reason)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
