CREATE OR REPLACE TRIGGER webhook_call_finished AFTER UPDATE OF status ON calls FOR EACH ROW
    WHEN (OLD.status IN ('queued', 'retrying')
        AND NEW.status IN ('completed', 'failed', 'canceled'))
    EXECUTE FUNCTION webhook_call_finished();

CREATE OR REPLACE TRIGGER webhook_campaign_status_changed AFTER UPDATE OF status ON campaigns FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION webhook_campaign_status_changed();
