DROP TRIGGER IF EXISTS webhook_campaign_status_changed ON campaigns;
DROP TRIGGER IF EXISTS webhook_call_finished ON calls;
DROP TRIGGER IF EXISTS webhook_attempt_finished ON attempts;
DROP FUNCTION webhook_campaign_status_changed();
DROP FUNCTION webhook_call_finished();
DROP FUNCTION webhook_attempt_finished();
DROP FUNCTION webhook_now_ms();
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
