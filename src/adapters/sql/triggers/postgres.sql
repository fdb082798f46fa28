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
