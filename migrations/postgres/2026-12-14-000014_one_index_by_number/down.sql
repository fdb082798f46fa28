-- Built CONCURRENTLY, as the up dropped it, so a revert does not block dialing.
CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_waiting_by_number ON calls (phone_number)
    WHERE status IN ('queued', 'retrying');
