-- ANALYZE gathers no statistics for the outbox's payloads (value, headers): the relay reads rows by service and
-- id, never by what they carry (see the aggregator's 0007 for why it matters).
ALTER TABLE outbox ALTER COLUMN value SET STATISTICS 0;
ALTER TABLE outbox ALTER COLUMN headers SET STATISTICS 0;
