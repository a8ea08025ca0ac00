-- Vote quality's queries (services/aggregator/voter_store.py): the outlier test's voters and their flags.

-- name: lock_voters
-- Create the voters not seen before and row-lock them all, in key order (the caller sorts); their state.
INSERT INTO agg_voters AS v (app_id, user_ref)
SELECT t.app_id, t.user_ref FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(app_id, user_ref, ord)
ORDER BY t.ord
ON CONFLICT (app_id, user_ref) DO UPDATE SET app_id = v.app_id
RETURNING app_id, user_ref, votes_seen, votes, disagreements, log_e_any, log_e_up, log_e_down, peak_log_e,
          flagged, flagged_at, flagged_after_votes, cleared_at, redecide_pending

-- name: update_voters
-- Write voters' new state (their rows are locked by lock_voters).
UPDATE agg_voters AS v
SET votes_seen = t.votes_seen, votes = t.votes, disagreements = t.disagreements, log_e_any = t.log_e_any,
    log_e_up = t.log_e_up, log_e_down = t.log_e_down, peak_log_e = t.peak_log_e, flagged = t.flagged,
    flagged_at = t.flagged_at, flagged_after_votes = t.flagged_after_votes, cleared_at = t.cleared_at,
    redecide_pending = t.redecide_pending, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[], $5::integer[], $6::float8[], $7::float8[],
            $8::float8[], $9::float8[], $10::boolean[], $11::timestamptz[], $12::integer[], $13::timestamptz[],
            $14::boolean[])
    AS t(app_id, user_ref, votes_seen, votes, disagreements, log_e_any, log_e_up, log_e_down, peak_log_e, flagged,
         flagged_at, flagged_after_votes, cleared_at, redecide_pending)
WHERE v.app_id = t.app_id AND v.user_ref = t.user_ref

-- name: select_voters
-- Voters for the admin route ($1: flagged or not, NULL: both; $2: one app, NULL: all), the most suspect first.
SELECT app_id, user_ref, votes_seen, votes, disagreements, log_e_any, log_e_up, log_e_down, peak_log_e,
       flagged, flagged_at, flagged_after_votes, cleared_at, redecide_pending
FROM agg_voters
WHERE ($1::boolean IS NULL OR flagged = $1) AND ($2::text IS NULL OR app_id = $2)
ORDER BY flagged DESC, peak_log_e DESC, app_id, user_ref
LIMIT $3

-- name: select_voter
-- One voter, row-locked (an admin clearing its flag).
SELECT app_id, user_ref, votes_seen, votes, disagreements, log_e_any, log_e_up, log_e_down, peak_log_e,
       flagged, flagged_at, flagged_after_votes, cleared_at, redecide_pending
FROM agg_voters WHERE app_id = $1 AND user_ref = $2
FOR UPDATE

-- name: select_redecide_pending
-- Voters whose groups are to be decided again (after a flag or a clear), the longest waiting first.
SELECT app_id, user_ref FROM agg_voters WHERE redecide_pending ORDER BY updated_at, app_id, user_ref LIMIT $1

-- name: try_lock_voter
-- One re-decide of a voter at a time across instances (released at commit; never waits).
SELECT pg_try_advisory_xact_lock($1::integer, $2::integer)

-- name: select_voter_flag
-- Whether a voter is flagged now (NULL: no such voter).
SELECT flagged FROM agg_voters WHERE app_id = $1 AND user_ref = $2

-- name: select_stale_voter_groups
-- Groups holding a vote of this voter whose is_counted is $3 (still counted though flagged, or the reverse).
SELECT DISTINCT prompt_key FROM agg_votes
WHERE app_id = $1 AND user_ref = $2 AND is_counted = $3
ORDER BY prompt_key
LIMIT $4

-- name: finish_redecide
-- The voter's groups are all decided as its flag says (its row is locked by lock_voters), unless the flag
-- changed meanwhile ($3: the flag acted on).
UPDATE agg_voters SET redecide_pending = false, updated_at = now()
WHERE app_id = $1 AND user_ref = $2 AND flagged = $3

-- name: count_flagged_voters
-- Flagged voters per app (the Prometheus gauge).
SELECT app_id, count(*) AS voters FROM agg_voters WHERE flagged GROUP BY app_id
