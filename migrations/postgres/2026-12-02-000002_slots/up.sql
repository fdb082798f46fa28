-- A slot belongs to an attempt: a call in `dialing` holds one slot of its campaign and of the
-- deployment until its outcome is recorded, and its number is live.
--
-- placed_at: when the dialer began placing the current attempt (NULL while only claimed). An
-- attempt never placed may be handed back without spending it; a placed one is settled.
ALTER TABLE calls ADD COLUMN placed_at BIGINT;

-- One live call per phone number in the deployment: a claim writes the number here in its
-- transaction, and whatever moves the call out of `dialing` deletes it. Keyed by number, not by
-- campaign, so under Citus it is distributed by phone_number (or made a reference table):
--   SELECT create_distributed_table('live_numbers', 'phone_number');
CREATE TABLE live_numbers (
    phone_number TEXT COLLATE "C" PRIMARY KEY,
    campaign_id TEXT COLLATE "C" NOT NULL,
    call_id TEXT COLLATE "C" NOT NULL
);
INSERT INTO live_numbers (phone_number, campaign_id, call_id)
SELECT phone_number, campaign_id, id FROM calls WHERE status = 'dialing'
ON CONFLICT (phone_number) DO NOTHING;
-- Calls dialing before this migration were placed by the engine that claimed them.
UPDATE calls SET placed_at = last_attempt_at WHERE status = 'dialing';
