-- `calls_by_number` (phone_number, campaign_id, id) finds a number's calls in any status:
-- listing a number finds its waiting calls through it, at the cost of skipping the number's
-- finished calls (one per time it was queued). The partial index moved with every claim
-- (queued -> dialing) and every retry and took a row of every registered call; SQLite never
-- used it for the listing, whose status is bound as a parameter (a partial index serves only
-- a condition SQLite can prove when it prepares the statement).
DROP INDEX IF EXISTS calls_waiting_by_number;
