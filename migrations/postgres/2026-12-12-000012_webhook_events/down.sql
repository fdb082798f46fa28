-- Back to deliveries written by per-row triggers. Events not fanned out yet are dropped with
-- their table: fan them out (run the status role until `webhook_events` is empty) first.
DROP TRIGGER IF EXISTS webhook_call_finished ON calls;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed ON campaigns;
DROP TABLE webhook_events;

CREATE FUNCTION webhook_attempt_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT;
BEGIN
    PERFORM 1 FROM webhook_endpoints LIMIT 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    now_ms := webhook_now_ms();
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, call_id, attempt, created_at, status, next_attempt_at)
    SELECT 'msg_' || lpad(to_hex(now_ms), 12, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20), e.id, 'attempt.finished',
        NEW.campaign_id, NEW.call_id, NEW.attempt, now_ms, 'pending', now_ms
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.campaign_id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,attempt.finished,%');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_call_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT;
BEGIN
    PERFORM 1 FROM webhook_endpoints LIMIT 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    now_ms := webhook_now_ms();
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, call_id, created_at, status, next_attempt_at)
    SELECT 'msg_' || lpad(to_hex(now_ms), 12, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20), e.id, 'call.finished',
        NEW.campaign_id, NEW.id, now_ms, 'pending', now_ms
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.campaign_id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,call.finished,%');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_campaign_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT;
BEGIN
    PERFORM 1 FROM webhook_endpoints LIMIT 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    now_ms := webhook_now_ms();
    INSERT INTO webhook_deliveries
        (id, endpoint_id, type, campaign_id, detail, created_at, status, next_attempt_at)
    SELECT 'msg_' || lpad(to_hex(now_ms), 12, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20), e.id, 'campaign.status_changed',
        NEW.id, json_build_object('name', NEW.name, 'from', OLD.status, 'to', NEW.status,
            'pause_reason', NEW.pause_reason::json)::text,
        now_ms, 'pending', now_ms
    FROM webhook_endpoints e
    WHERE (e.campaign_id IS NULL OR e.campaign_id = NEW.id)
        AND (e.events LIKE '%,*,%' OR e.events LIKE '%,campaign.status_changed,%');
    RETURN NULL;
END $$;

-- The previous release's triggers, armed; its status role drops them when no endpoint exists.
CREATE OR REPLACE TRIGGER webhook_attempt_finished AFTER UPDATE OF ended_at ON attempts FOR EACH ROW
    WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION webhook_attempt_finished();

CREATE OR REPLACE TRIGGER webhook_call_finished AFTER UPDATE OF status ON calls FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'canceled')
        AND OLD.status NOT IN ('completed', 'failed', 'canceled'))
    EXECUTE FUNCTION webhook_call_finished();

CREATE OR REPLACE TRIGGER webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION webhook_campaign_status_changed();
