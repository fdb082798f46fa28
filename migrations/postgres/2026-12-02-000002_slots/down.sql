DROP TABLE live_numbers;
ALTER TABLE calls DROP COLUMN placed_at;
