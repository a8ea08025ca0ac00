-- The model leaderboard's queries: one named block each, used by services/aggregator/leaderboard_store.py.
-- (Beside queries.sql, in the same format: the leaderboard's tables are its own, see 0002_create_leaderboard.sql.)

-- name: add_battle_counts
-- Add signed changes to battle counts (rows in key order: the lock order).
INSERT INTO agg_battle_counts AS c (app_id, domain, winner_model, winner_version, loser_model, loser_version, battles)
SELECT t.app_id, t.domain, t.winner_model, t.winner_version, t.loser_model, t.loser_version, t.delta
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[])
    WITH ORDINALITY AS t(app_id, domain, winner_model, winner_version, loser_model, loser_version, delta, ord)
ORDER BY t.ord
ON CONFLICT (app_id, domain, winner_model, winner_version, loser_model, loser_version) DO UPDATE
SET battles = c.battles + excluded.battles

-- name: upsert_pair_battles
-- The battle a pair counts for from now on.
INSERT INTO agg_pair_battles (pair_id, app_id, domain, winner_model, winner_version, loser_model, loser_version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
ON CONFLICT (pair_id) DO UPDATE
SET app_id = excluded.app_id, domain = excluded.domain, winner_model = excluded.winner_model,
    winner_version = excluded.winner_version, loser_model = excluded.loser_model, loser_version = excluded.loser_version

-- name: delete_pair_battles
-- Pairs that count for no battle any more (retracted, or no longer between two versions).
DELETE FROM agg_pair_battles WHERE pair_id = ANY($1::text[])

-- name: upsert_counted_groups
-- Groups counted for the first time, or moved to another domain.
INSERT INTO agg_counted_groups (prompt_key, app_id, domain)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (prompt_key) DO UPDATE SET domain = excluded.domain

-- name: add_approval_counts
-- Add signed changes to approval counts (rows in key order: the lock order).
INSERT INTO agg_approval_counts AS c (app_id, domain, model, model_version, up, down)
SELECT t.app_id, t.domain, t.model, t.model_version, t.up, t.down
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[])
    WITH ORDINALITY AS t(app_id, domain, model, model_version, up, down, ord)
ORDER BY t.ord
ON CONFLICT (app_id, domain, model, model_version) DO UPDATE
SET up = c.up + excluded.up, down = c.down + excluded.down

-- name: mark_boards_changed
-- Boards whose counts changed (rows in key order): one more change to refit, debounced from now.
INSERT INTO agg_boards AS b (app_id, domain, change_seq, changed_at, pending_since)
SELECT t.app_id, t.domain, 1, clock_timestamp(), clock_timestamp()
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(app_id, domain, ord)
ORDER BY t.ord
ON CONFLICT (app_id, domain) DO UPDATE
SET change_seq = b.change_seq + 1, changed_at = excluded.changed_at,
    pending_since = coalesce(b.pending_since, excluded.pending_since)

-- name: note_model_versions
-- Versions seen, with the earliest occurred_at of their answers (rows in key order: the lock order).
INSERT INTO agg_model_versions AS v (app_id, model, model_version, first_seen_at)
SELECT t.app_id, t.model, t.model_version, t.first_seen_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    WITH ORDINALITY AS t(app_id, model, model_version, first_seen_at, ord)
ORDER BY t.ord
ON CONFLICT (app_id, model, model_version) DO UPDATE SET first_seen_at = excluded.first_seen_at
WHERE excluded.first_seen_at < v.first_seen_at

-- name: select_uncounted_groups
-- Groups whose approval was never counted (state from before the leaderboard): the backfill's work.
SELECT g.prompt_key FROM agg_groups g
WHERE g.prompt_key > $1 AND NOT EXISTS (SELECT 1 FROM agg_counted_groups c WHERE c.prompt_key = g.prompt_key)
ORDER BY g.prompt_key
LIMIT $2

-- name: select_due_boards
-- Boards with changes not refitted, quiet for the debounce or waiting longer than the maximum delay.
SELECT app_id, domain FROM agg_boards
WHERE change_seq > refitted_seq
  AND (changed_at <= clock_timestamp() - make_interval(secs => $1)
       OR pending_since <= clock_timestamp() - make_interval(secs => $2))
ORDER BY pending_since NULLS LAST, app_id, domain
LIMIT $3

-- name: try_lock_board
-- One refit per board at a time across instances (session lock; released by unlock_board).
SELECT pg_try_advisory_lock($1::integer, $2::integer)

-- name: unlock_board
-- Release a board's refit lock.
SELECT pg_advisory_unlock($1::integer, $2::integer)

-- name: select_board_state
-- A board's change counters and last body hash, and the snapshot's time.
SELECT change_seq, refitted_seq, body_hash, now() AS snapshot_at FROM agg_boards WHERE app_id = $1 AND domain = $2

-- name: select_board_battles
-- Battle counts of a board (domain '': summed over the app's domains).
SELECT winner_model, winner_version, loser_model, loser_version, sum(battles)::bigint AS battles
FROM agg_battle_counts
WHERE app_id = $1 AND ($2::text = '' OR domain = $2)
GROUP BY winner_model, winner_version, loser_model, loser_version
HAVING sum(battles) > 0

-- name: select_board_approvals
-- Approval counts of a board (domain '': summed over the app's domains).
SELECT model, model_version, sum(up)::bigint AS up, sum(down)::bigint AS down
FROM agg_approval_counts
WHERE app_id = $1 AND ($2::text = '' OR domain = $2)
GROUP BY model, model_version
HAVING sum(up) + sum(down) > 0

-- name: select_release_order
-- An app's versions per model in release order (first seen first).
SELECT model, model_version FROM agg_model_versions WHERE app_id = $1 ORDER BY model, first_seen_at, model_version

-- name: mark_board_refitted
-- A refit covered changes up to $3: done, or still pending since the refit's snapshot if more came.
UPDATE agg_boards
SET refitted_seq = greatest(refitted_seq, $3),
    pending_since = CASE WHEN change_seq > greatest(refitted_seq, $3) THEN $4::timestamptz END
WHERE app_id = $1 AND domain = $2

-- name: update_board_body
-- The board's new body (published in the same transaction).
UPDATE agg_boards SET body = $3, body_hash = $4, computed_at = $5 WHERE app_id = $1 AND domain = $2

-- name: select_board_alerts
-- The regression alarm's state of one board.
SELECT model, previous_version, new_version, metric, is_raised, transitions
FROM agg_model_alerts WHERE app_id = $1 AND domain = $2

-- name: upsert_board_alerts
-- Alarm transitions of one board (raised or cleared).
INSERT INTO agg_model_alerts (app_id, domain, model, previous_version, new_version, metric, is_raised, transitions)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
    $8::integer[])
ON CONFLICT (app_id, domain, model, previous_version, new_version, metric) DO UPDATE
SET is_raised = excluded.is_raised, transitions = excluded.transitions, updated_at = now()

-- name: select_alert_states
-- Every alarm's state (the Prometheus gauge of each instance follows it).
SELECT app_id, domain, model, previous_version, new_version, metric, is_raised FROM agg_model_alerts

-- name: select_board_body
-- The latest body of a board (NULL until its first refit).
SELECT body FROM agg_boards WHERE app_id = $1 AND domain = $2

-- name: select_is_known_app
-- Whether any interaction of this app was taken in.
SELECT EXISTS (SELECT 1 FROM agg_model_versions WHERE app_id = $1)
