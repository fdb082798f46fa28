ALTER TABLE attempts DROP COLUMN carrier;
ALTER TABLE campaigns DROP COLUMN voice;
