-- Finding a campaign's calls to one number (the console's search, and anyone answering "did
-- you call me?") without reading the campaign's calls.
CREATE INDEX calls_by_number ON calls (phone_number, campaign_id, id);
