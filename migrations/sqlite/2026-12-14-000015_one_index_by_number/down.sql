CREATE INDEX IF NOT EXISTS calls_waiting_by_number ON calls (phone_number)
    WHERE status IN ('queued', 'retrying');
