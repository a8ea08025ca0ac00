-- The feedback-stats windows' queries: one named block each, used by services/aggregator/stats_store.py.
-- (Beside queries.sql, in the same format: the table is agg_stats, 0001_create_aggregator_state.sql.)

-- name: add_stats
-- Add increments to windows (rows in key order: the lock order); a final window takes no more.
INSERT INTO agg_stats AS s (app_id, model_version, window_start, window_end, interactions, thumbs_up,
    thumbs_down, ratings, rating_sum, effective_thumbs_up, effective_thumbs_down, effective_ratings,
    effective_rating_sum, quarantined_votes, pairs_emitted, tasks_queued, newest_event_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::integer[], $6::integer[],
    $7::integer[], $8::integer[], $9::bigint[], $10::integer[], $11::integer[], $12::integer[], $13::bigint[],
    $14::integer[], $15::integer[], $16::integer[], $17::timestamptz[])
ON CONFLICT (app_id, model_version, window_start) DO UPDATE
SET interactions = s.interactions + excluded.interactions,
    thumbs_up = s.thumbs_up + excluded.thumbs_up,
    thumbs_down = s.thumbs_down + excluded.thumbs_down,
    ratings = s.ratings + excluded.ratings,
    rating_sum = s.rating_sum + excluded.rating_sum,
    effective_thumbs_up = s.effective_thumbs_up + excluded.effective_thumbs_up,
    effective_thumbs_down = s.effective_thumbs_down + excluded.effective_thumbs_down,
    effective_ratings = s.effective_ratings + excluded.effective_ratings,
    effective_rating_sum = s.effective_rating_sum + excluded.effective_rating_sum,
    quarantined_votes = s.quarantined_votes + excluded.quarantined_votes,
    pairs_emitted = s.pairs_emitted + excluded.pairs_emitted,
    tasks_queued = s.tasks_queued + excluded.tasks_queued,
    newest_event_at = greatest(s.newest_event_at, excluded.newest_event_at),
    is_dirty = true
WHERE NOT s.is_final

-- name: select_newest_event_at
-- Event-time progress over every window (the watermark before the wall-clock cap).
SELECT max(newest_event_at) FROM agg_stats WHERE NOT is_final

-- name: select_stats_to_publish
-- Windows changed since last published, or due to close (skipping rows a handler is writing).
SELECT app_id, model_version, window_start, window_end, interactions, thumbs_up, thumbs_down, ratings,
       rating_sum, effective_thumbs_up, effective_thumbs_down, effective_ratings, effective_rating_sum,
       quarantined_votes, pairs_emitted, tasks_queued
FROM agg_stats
WHERE NOT is_final AND (is_dirty OR window_end <= $1)
ORDER BY window_start, app_id, model_version
LIMIT $2
FOR UPDATE SKIP LOCKED

-- name: mark_stats_published
-- Windows published: clean, and final where closed.
UPDATE agg_stats AS s SET is_dirty = false, is_final = t.is_final
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[]) AS t(app_id, model_version, window_start, is_final)
WHERE s.app_id = t.app_id AND s.model_version = t.model_version AND s.window_start = t.window_start

-- name: select_stats
-- Recent windows of an app (debugging endpoint).
SELECT app_id, model_version, window_start, window_end, interactions, thumbs_up, thumbs_down, ratings,
       rating_sum, effective_thumbs_up, effective_thumbs_down, effective_ratings, effective_rating_sum,
       quarantined_votes, pairs_emitted, tasks_queued, is_final
FROM agg_stats
WHERE ($1::text IS NULL OR app_id = $1)
ORDER BY window_start DESC, app_id, model_version
LIMIT $2
