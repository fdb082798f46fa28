-- Webhooks (spec/webhooks.md): the operator's endpoints, and an outbox of deliveries written by
-- triggers in the transaction of the change each reports, so no statement that finishes an
-- attempt or a call or moves a campaign can commit without its events. The triggers exist only
-- while an endpoint does (created with the first, dropped once none is left: src/adapters/sql/
-- webhooks.rs), since a trigger costs every row its table's statements touch. A delivery keeps
-- references to the rows it reports; its body is rendered from them at the first try and then
-- sent alike on every try. `detail` keeps what the change knew that the rows do not keep.
-- A delivery's id (its webhook-id) is `msg_`, the milliseconds of its change in 12 hex digits
-- and 20 random ones: new rows go to the end of the table's key, not all over it.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    -- ",*," or ",attempt.finished,call.finished," (domain::webhook::Subscription::stored)
    events TEXT NOT NULL,
    campaign_id TEXT,
    description TEXT,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
) WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
    id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    type TEXT NOT NULL,
    campaign_id TEXT,
    call_id TEXT,
    attempt INTEGER,
    detail TEXT,
    body TEXT,
    created_at BIGINT NOT NULL,
    -- pending | delivered | failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- when a pending delivery is due; a claim moves it past the try's deadline, so the claims
    -- of a process that died come back by themselves
    next_attempt_at BIGINT,
    claim TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    delivered_at BIGINT,
    -- an endpoint's log, newest last, is the table's own order
    PRIMARY KEY (endpoint_id, id)
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
-- the backlog and failures per endpoint, and retention's sweep
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id) WHERE status = 'failed';
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';
CREATE INDEX webhook_deliveries_unrendered_attempts ON webhook_deliveries (call_id, attempt)
    WHERE body IS NULL AND type = 'attempt.finished';
