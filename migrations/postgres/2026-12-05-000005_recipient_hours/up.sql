-- As in migrations/sqlite. A campaign's recipient hours (JSON windows read in each called party's zone; [] = no
-- restriction, which is what campaigns made before this migration keep) and restricted periods
-- (JSON [{name, start, end}], dates in the campaign's zone).
ALTER TABLE campaigns ADD COLUMN recipient_hours TEXT NOT NULL DEFAULT '[]';
ALTER TABLE campaigns ADD COLUMN restricted_periods TEXT NOT NULL DEFAULT '[]';
-- A target's own time zone, overriding its number's; NULL: from the number.
ALTER TABLE calls ADD COLUMN time_zone TEXT;
-- A queued call held back by a calling rule is not claimed before this instant (ms). Claims
-- take queued calls in the order they became dialable, from this index, so they read past
-- none of the held calls.
ALTER TABLE calls ADD COLUMN dial_after BIGINT NOT NULL DEFAULT 0;
CREATE INDEX calls_claimable ON calls (campaign_id, dial_after, id) WHERE status = 'queued';
