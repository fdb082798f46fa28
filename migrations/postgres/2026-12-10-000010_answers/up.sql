-- As in migrations/sqlite. Under Citus, campaign_responses is distributed by campaign_id,
-- colocated with campaigns.
ALTER TABLE attempts ADD COLUMN answered_by TEXT;
ALTER TABLE attempts ADD COLUMN response TEXT;
ALTER TABLE attempts ADD COLUMN digits TEXT;
ALTER TABLE attempts ADD COLUMN voicemail_left INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN answered_by TEXT;
ALTER TABLE calls ADD COLUMN response TEXT;
ALTER TABLE calls ADD COLUMN digits TEXT;
ALTER TABLE calls ADD COLUMN voicemail_left INTEGER NOT NULL DEFAULT 0;
-- Counted calls, moved in the transaction that changes what a call shows.
ALTER TABLE campaign_stats ADD COLUMN voicemails_left BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaign_stats ADD COLUMN machine_answered BIGINT NOT NULL DEFAULT 0;
CREATE TABLE campaign_responses (
    campaign_id TEXT NOT NULL,
    response TEXT NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, response)
);
