-- The message a live attempt began with, kept when its campaign's message changes while the
-- call is up (spec/voice.md: attempts that begin after the change use the new one), so the call
-- goes on with the words and keys it started with. Written only by that change, read by the
-- carrier's voice and gather requests, forgotten a day after (no call lasts that long).
CREATE TABLE attempt_messages (
    campaign_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL,
    kept_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, call_id, attempt)
);
CREATE INDEX attempt_messages_kept_at ON attempt_messages (kept_at);
