-- `calls_by_number` (phone_number, campaign_id, id) finds a number's calls in any status:
-- listing a number finds its waiting calls through it, at the cost of skipping the number's
-- finished calls (one per time it was queued). The partial index moved with every claim
-- (queued -> dialing) and every retry and took a row of every registered call.
--
-- Dropped CONCURRENTLY, outside a transaction (metadata.toml), so an upgrade does not wait
-- behind dialing's transactions for the table's exclusive lock.
DROP INDEX CONCURRENTLY IF EXISTS calls_waiting_by_number;
