-- What a call heard back (spec/voice.md): each attempt keeps its own; a call keeps, field by
-- field, its latest attempt's that has one, so the results export reads calls alone.
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
) WITHOUT ROWID;
