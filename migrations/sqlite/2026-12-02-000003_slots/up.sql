-- A slot belongs to an attempt: a call in `dialing` holds one slot of its campaign and of the
-- deployment until its outcome is recorded, and its number is live.
--
-- placed_at: when the dialer began placing the current attempt (NULL while only claimed). An
-- attempt never placed may be handed back without spending it; a placed one is settled.
ALTER TABLE calls ADD COLUMN placed_at BIGINT;

-- One live call per phone number in the deployment: a claim writes the number here in its
-- transaction, and whatever moves the call out of `dialing` deletes it.
CREATE TABLE live_numbers (
    phone_number TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL,
    call_id TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO live_numbers (phone_number, campaign_id, call_id)
SELECT phone_number, campaign_id, id FROM calls WHERE status = 'dialing';
-- Calls dialing before this migration were placed by the engine that claimed them.
UPDATE calls SET placed_at = last_attempt_at WHERE status = 'dialing';
