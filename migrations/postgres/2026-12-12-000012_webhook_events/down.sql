DROP TRIGGER IF EXISTS webhook_call_finished ON calls;
DROP TRIGGER IF EXISTS webhook_campaign_status_changed ON campaigns;
DROP TABLE webhook_events;
