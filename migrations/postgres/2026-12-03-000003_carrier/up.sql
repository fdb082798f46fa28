-- What the carrier said about each attempt (its call id, status, SIP code, answering party,
-- billed duration), as JSON.
ALTER TABLE attempts ADD COLUMN carrier TEXT;
