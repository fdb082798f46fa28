DROP TRIGGER IF EXISTS webhook_campaign_status_changed;
DROP TRIGGER IF EXISTS webhook_call_finished;
DROP TRIGGER IF EXISTS webhook_attempt_finished;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
