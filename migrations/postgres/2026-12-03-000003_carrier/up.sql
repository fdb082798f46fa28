-- What the carrier said about each attempt (its call id, status, SIP code, answering party,
-- billed duration), as JSON.
ALTER TABLE attempts ADD COLUMN carrier TEXT;
-- A campaign's caller id and audio for a real carrier, as JSON; NULL: the configured defaults.
ALTER TABLE campaigns ADD COLUMN voice TEXT;
