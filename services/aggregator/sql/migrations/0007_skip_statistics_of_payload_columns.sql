-- ANALYZE gathers no statistics for payload columns that no plan uses: the answers' texts, the votes', the
-- prompts' and the pairs' JSON. Every query on them goes by its keys; what reads them inside (exports'
-- vote->>'kind', pair->'chosen') is an expression, estimated without column statistics. Sorting
-- 30,000 sampled jsonb values was most of an ANALYZE of agg_votes (281 ms -> 108 ms at 40,000 rows), and
-- autovacuum analyzes a growing table every few seconds: on a 2-core box that took a core from the
-- batches for half a second at a time (bench/results/aggregator.md).
ALTER TABLE agg_votes ALTER COLUMN vote SET STATISTICS 0;
ALTER TABLE agg_parked_votes ALTER COLUMN vote SET STATISTICS 0;
ALTER TABLE agg_interactions ALTER COLUMN content SET STATISTICS 0;
ALTER TABLE agg_groups ALTER COLUMN prompt SET STATISTICS 0;
ALTER TABLE agg_pairs ALTER COLUMN pair SET STATISTICS 0;
