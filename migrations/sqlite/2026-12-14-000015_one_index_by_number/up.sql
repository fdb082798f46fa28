-- `calls_by_number` (phone_number, campaign_id, id) finds a number's calls in any status, and a
-- number has at most one call per campaign: listing a number finds its waiting calls through
-- it at the cost of skipping its finished ones. The partial index changed with every claim
-- (queued -> dialing) and every retry, and took a row of every registered call.
DROP INDEX IF EXISTS calls_waiting_by_number;
