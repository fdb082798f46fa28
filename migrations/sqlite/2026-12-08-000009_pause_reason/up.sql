-- Why the engine paused a campaign by itself (JSON: code, carrier_code, message); NULL for an
-- operator's pause and once the campaign starts again.
ALTER TABLE campaigns ADD COLUMN pause_reason TEXT;
