-- Finding a campaign's calls to one number (the console's search, and anyone answering "did
-- you call me?") without reading the campaign's calls.
--
-- Built CONCURRENTLY, outside a transaction (metadata.toml), so an upgrade does not block
-- dialing while a large calls table is indexed. If the build is interrupted, PostgreSQL keeps
-- an INVALID index of this name and the next start fails on it; `DROP INDEX calls_by_number`
-- lets the migration run again.
CREATE INDEX CONCURRENTLY calls_by_number ON calls (phone_number, campaign_id, id);
