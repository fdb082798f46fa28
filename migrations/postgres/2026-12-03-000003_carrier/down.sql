ALTER TABLE attempts DROP COLUMN carrier;
