-- As in migrations/sqlite: endpoints, and an outbox of deliveries written by triggers in the
-- transaction of the change each reports. The functions are here; the triggers that call them
-- exist only while an endpoint does (src/adapters/sql/webhooks.rs).
-- Under Citus, webhook_endpoints would be a reference table; webhook_deliveries, whose global
-- opt-outs have no campaign, would need (endpoint_id, id) as its key to be distributed by
-- endpoint_id, and the triggers citus.enable_unsafe_triggers. Not done yet.
CREATE TABLE webhook_endpoints (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    campaign_id TEXT COLLATE "C",
    description TEXT,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    type TEXT NOT NULL,
    campaign_id TEXT COLLATE "C",
    call_id TEXT COLLATE "C",
    attempt INTEGER,
    detail TEXT,
    body TEXT,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    claim TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    delivered_at BIGINT,
    PRIMARY KEY (endpoint_id, id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
-- the backlog and failures per endpoint, and retention's sweep
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id) WHERE status = 'failed';
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';
CREATE INDEX webhook_deliveries_unrendered_attempts ON webhook_deliveries (call_id, attempt)
    WHERE body IS NULL AND type = 'attempt.finished';

CREATE FUNCTION webhook_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
    $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

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

CREATE FUNCTION webhook_call_finished() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE FUNCTION webhook_campaign_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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
