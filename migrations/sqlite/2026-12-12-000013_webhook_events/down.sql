DROP TRIGGER IF EXISTS webhook_call_finished;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed;
DROP TABLE webhook_events;
