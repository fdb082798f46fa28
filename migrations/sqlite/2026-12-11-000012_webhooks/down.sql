DROP TRIGGER webhook_campaign_status_changed;
DROP TRIGGER webhook_call_finished;
DROP TRIGGER webhook_attempt_finished;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
