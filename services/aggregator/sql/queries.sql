-- The aggregator's queries: one named block each, used by services/aggregator/store.py.

-- name: lock_interaction_keys
-- Serialize a vote's lookup with its interaction's arrival (keys sorted by the caller: no deadlock).
SELECT pg_advisory_xact_lock(k.key) FROM unnest($1::bigint[]) WITH ORDINALITY AS k(key, ord) ORDER BY k.ord

-- name: insert_groups
-- Create the groups of new interactions (sorted by prompt_key by the caller).
INSERT INTO agg_groups (prompt_key, app_id, prompt)
SELECT t.prompt_key, t.app_id, t.prompt
FROM unnest($1::text[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS t(prompt_key, app_id, prompt, ord)
ORDER BY t.ord
ON CONFLICT (prompt_key) DO NOTHING

-- name: lock_groups
-- Row-lock the touched groups in prompt_key order: one writer per group at a time, across instances (the prompt
-- as JSON text).
SELECT prompt_key, app_id, prompt::text AS prompt FROM agg_groups WHERE prompt_key = ANY($1::text[])
ORDER BY prompt_key FOR UPDATE

-- name: insert_interactions
-- Take in interactions once (the first event of an interaction_id wins); return those new.
INSERT INTO agg_interactions
    (app_id, interaction_id, prompt_key, event_id, content, model, model_version, domain, occurred_at)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]
)
ON CONFLICT (app_id, interaction_id) DO NOTHING
RETURNING app_id, interaction_id

-- name: select_interaction_groups
-- The group and model version of known interactions.
SELECT i.app_id, i.interaction_id, i.prompt_key, i.model_version
FROM agg_interactions i
JOIN unnest($1::text[], $2::text[]) AS t(app_id, interaction_id)
  ON i.app_id = t.app_id AND i.interaction_id = t.interaction_id

-- name: insert_seen_votes
-- Record vote event ids; return the ones not seen before.
INSERT INTO agg_seen_votes (event_id) SELECT unnest($1::uuid[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id

-- name: delete_seen_votes_before
-- Forget vote event ids older than the dedupe window.
DELETE FROM agg_seen_votes WHERE seen_at < $1

-- name: delete_seen_votes
-- Forget dead-lettered votes: never taken in, so a redriven copy is not a duplicate.
DELETE FROM agg_seen_votes WHERE event_id = ANY($1::uuid[])

-- name: insert_parked_votes
-- Park votes until the interaction they wait for arrives (an answer they name, not seen yet).
INSERT INTO agg_parked_votes
    (event_id, app_id, interaction_id, vote, source_topic, source_partition, source_offset, expires_at)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::integer[], $7::bigint[], $8::timestamptz[]
)
ON CONFLICT (event_id) DO NOTHING

-- name: claim_parked_votes
-- Take the parked votes waiting for interactions that just arrived (with their origin and TTL).
DELETE FROM agg_parked_votes p
USING unnest($1::text[], $2::text[]) AS t(app_id, interaction_id)
WHERE p.app_id = t.app_id AND p.interaction_id = t.interaction_id
RETURNING p.vote, p.source_topic, p.source_partition, p.source_offset, p.expires_at

-- name: select_issued_tasks
-- The annotation tasks the aggregator issued under these ids (withdrawn ones too), with their group.
SELECT task_id, prompt_key, kind FROM agg_annotation_requests WHERE task_id = ANY($1::text[])

-- name: expire_parked_votes
-- Take parked votes past their TTL (another instance's sweep skips the rows this one holds).
DELETE FROM agg_parked_votes
WHERE event_id IN (
    SELECT event_id FROM agg_parked_votes WHERE expires_at <= $1
    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING event_id, interaction_id, vote, source_topic, source_partition, source_offset, parked_at

-- name: select_group_state
-- Everything stored of the locked groups, in one statement (one snapshot, one round trip): one row per item,
-- `kind` says which: 'answer' (interaction_id, content, model, model_version, domain, occurred_at), 'vote' (the
-- latest vote of each slot as JSON text, whether it counts and was tested: vote_quality.py), 'pair' and
-- 'request' (what was last published, by pair_id / task_id: its state hash), 'budget' (the group's tasks in the
-- annotation budget: their domain and the state hash last offered). Answers in (occurred_at, interaction_id)
-- order within their group.
SELECT 'answer' AS kind, prompt_key, interaction_id AS item, content AS body, model, model_version, domain,
       occurred_at, NULL::text AS state_hash, NULL::boolean AS is_counted, NULL::boolean AS is_tested
FROM agg_interactions WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'vote', prompt_key, slot, vote::text, NULL, NULL, NULL, NULL, NULL, is_counted, is_tested
FROM agg_votes WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'pair', prompt_key, pair_id, NULL, NULL, NULL, NULL, NULL, state_hash, NULL, NULL
FROM agg_pairs WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'request', prompt_key, task_id, NULL, NULL, NULL, NULL, NULL, state_hash, NULL, NULL
FROM agg_annotation_requests WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'budget', prompt_key, task_id, NULL, NULL, NULL, domain, NULL, state_hash, NULL, NULL
FROM agg_task_budget WHERE prompt_key = ANY($1::text[])
ORDER BY prompt_key, occurred_at, item

-- name: upsert_votes
-- Store the new latest vote of changed slots (as JSON text), with its voter (end users) and marks.
INSERT INTO agg_votes (prompt_key, slot, event_id, occurred_at, vote, app_id, user_ref, is_counted, is_tested)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::text[]::jsonb[], $6::text[],
    $7::text[], $8::boolean[], $9::boolean[])
ON CONFLICT (prompt_key, slot) DO UPDATE
SET event_id = excluded.event_id, occurred_at = excluded.occurred_at, vote = excluded.vote, app_id = excluded.app_id,
    user_ref = excluded.user_ref, is_counted = excluded.is_counted, is_tested = excluded.is_tested

-- name: update_vote_marks
-- New marks of stored votes that stay the latest of their slot (counted again or no more; tested).
UPDATE agg_votes AS v SET is_counted = t.is_counted, is_tested = t.is_tested
FROM unnest($1::text[], $2::text[], $3::boolean[], $4::boolean[]) AS t(prompt_key, slot, is_counted, is_tested)
WHERE v.prompt_key = t.prompt_key AND v.slot = t.slot

-- name: upsert_pairs
-- Remember what was published per pair_id (pair NULL and 'retracted' after a tombstone).
INSERT INTO agg_pairs (pair_id, prompt_key, state_hash, pair)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
ON CONFLICT (pair_id) DO UPDATE
SET state_hash = excluded.state_hash, pair = excluded.pair, updated_at = now()

-- name: upsert_requests
-- Remember what was published per annotation request.
INSERT INTO agg_annotation_requests (task_id, prompt_key, kind, state_hash)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (task_id) DO UPDATE SET state_hash = excluded.state_hash, updated_at = now()

-- name: upsert_sft_examples
-- Keep each voter's latest edit of an answer as an SFT example.
INSERT INTO agg_sft_examples (prompt_key, interaction_id, voter, event_id, content)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[])
ON CONFLICT (prompt_key, interaction_id, voter) DO UPDATE
SET event_id = excluded.event_id, content = excluded.content, updated_at = now()
WHERE agg_sft_examples.event_id <> excluded.event_id

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

-- name: select_pair
-- One pair as last published (debugging endpoint).
SELECT pair_id, prompt_key, state_hash, pair, first_emitted_at, updated_at FROM agg_pairs WHERE pair_id = $1

-- name: select_stats
-- Recent windows of an app (debugging endpoint).
SELECT app_id, model_version, window_start, window_end, interactions, thumbs_up, thumbs_down, ratings,
       rating_sum, effective_thumbs_up, effective_thumbs_down, effective_ratings, effective_rating_sum,
       quarantined_votes, pairs_emitted, tasks_queued, is_final
FROM agg_stats
WHERE ($1::text IS NULL OR app_id = $1)
ORDER BY window_start DESC, app_id, model_version
LIMIT $2

-- Exports (issue 12): read inside one REPEATABLE READ READ ONLY transaction, through server-side cursors.
-- Filters are applied here where SQL can ($n NULL = any); the shaping re-checks every row.

-- name: select_export_snapshot
-- The moment an export's snapshot is taken (its first statement fixes it): the transaction's now() and snapshot.
SELECT now() AS taken_at, pg_current_snapshot()::text AS snapshot

-- name: select_export_pairs
-- Live pairs, one column per field an export reads (the view agg_export_pairs, migration 0006).
SELECT * FROM agg_export_pairs
WHERE ($1::text IS NULL OR app_id = $1)
  AND ($2::text IS NULL OR domain = $2)
  AND ($3::text IS NULL OR method = $3)
  AND ($4::text IS NULL OR chosen_model_version = $4 OR rejected_model_version = $4)
  AND ($5::float8 IS NULL OR confidence >= $5)
  AND ($6::timestamptz IS NULL OR updated_at::timestamptz >= $6)
  AND ($7::timestamptz IS NULL OR updated_at::timestamptz < $7)

-- name: select_export_rewrites
-- Live pairs whose chosen side is an expert's rewrite ($8: the expert model name), once per rewrite (the
-- columns of select_export_pairs).
SELECT DISTINCT ON (prompt_key, chosen_interaction_id) * FROM agg_export_pairs
WHERE method = 'expert' AND chosen_model = $8
  AND ($1::text IS NULL OR app_id = $1)
  AND ($2::text IS NULL OR domain = $2)
  AND ($3::text IS NULL OR $3 = 'expert')
  AND ($4::text IS NULL OR rejected_model_version = $4)
  AND ($5::float8 IS NULL OR confidence >= $5)
  AND ($6::timestamptz IS NULL OR updated_at::timestamptz >= $6)
  AND ($7::timestamptz IS NULL OR updated_at::timestamptz < $7)
ORDER BY prompt_key, chosen_interaction_id, rejected_interaction_id

-- name: select_export_approvals
-- Answers with their effective approval votes (latest per voter and answer: agg_votes' approval slots that count:
-- flagged voters' votes left out; quarantined votes are never stored), that are a side of no live pair; $5/$6: the rating at or above which it counts up, at or below which down.
SELECT i.app_id, i.prompt_key, g.prompt::text AS prompt, i.interaction_id, i.content, i.model, i.model_version,
       (SELECT j.domain FROM agg_interactions j
        WHERE j.prompt_key = i.prompt_key AND j.domain IS NOT NULL
        ORDER BY j.occurred_at, j.interaction_id LIMIT 1) AS group_domain,
       a.up, a.down, a.newest_vote_at
FROM (
    SELECT v.prompt_key, v.vote->>'app_id' AS app_id, v.vote->>'interaction_id' AS interaction_id,
           count(*) FILTER (WHERE (v.vote->>'kind' = 'thumb' AND (v.vote->>'value')::int > 0)
                               OR (v.vote->>'kind' = 'rating' AND (v.vote->>'value')::int >= $5)) AS up,
           count(*) FILTER (WHERE (v.vote->>'kind' = 'thumb' AND (v.vote->>'value')::int < 0)
                               OR (v.vote->>'kind' = 'rating' AND (v.vote->>'value')::int <= $6)) AS down,
           max(v.occurred_at) AS newest_vote_at
    FROM agg_votes v
    WHERE v.vote->>'kind' IN ('thumb', 'rating') AND v.is_counted AND ($1::text IS NULL OR v.vote->>'app_id' = $1)
    GROUP BY v.prompt_key, v.vote->>'app_id', v.vote->>'interaction_id'
) a
JOIN agg_interactions i ON i.app_id = a.app_id AND i.interaction_id = a.interaction_id
JOIN agg_groups g ON g.prompt_key = i.prompt_key
WHERE a.up + a.down > 0
  AND ($2::text IS NULL OR i.model_version = $2)
  AND ($3::timestamptz IS NULL OR a.newest_vote_at >= $3)
  AND ($4::timestamptz IS NULL OR a.newest_vote_at < $4)
  AND NOT EXISTS (
      SELECT 1 FROM agg_pairs p
      WHERE p.prompt_key = i.prompt_key AND p.pair IS NOT NULL
        AND i.interaction_id IN (p.pair->'chosen'->>'interaction_id', p.pair->'rejected'->>'interaction_id'))

-- name: select_export_edits
-- End users' latest edits (SFT examples) with the answer they edit and, when live, their edit pair; a flagged
-- voter's edits left out (quarantined edits are never stored).
SELECT g.app_id, s.prompt_key, g.prompt::text AS prompt, s.event_id::text AS event_id, s.content,
       s.interaction_id, i.model, i.model_version, s.updated_at,
       (SELECT j.domain FROM agg_interactions j
        WHERE j.prompt_key = s.prompt_key AND j.domain IS NOT NULL
        ORDER BY j.occurred_at, j.interaction_id LIMIT 1) AS group_domain,
       e.pair_id, e.confidence, e.occurred_at, e.domain AS pair_domain
FROM agg_sft_examples s
JOIN agg_groups g ON g.prompt_key = s.prompt_key
JOIN agg_interactions i ON i.app_id = g.app_id AND i.interaction_id = s.interaction_id
LEFT JOIN LATERAL (
    SELECT p.pair_id, (p.pair->>'confidence')::float8 AS confidence,
           (p.pair->>'occurred_at')::timestamptz AS occurred_at, p.pair->>'domain' AS domain
    FROM agg_pairs p
    WHERE p.prompt_key = s.prompt_key AND p.pair IS NOT NULL AND p.pair->>'method' = 'edit'
      AND p.pair->'rejected'->>'interaction_id' = s.interaction_id AND p.pair->'chosen'->>'content' = s.content
    ORDER BY p.pair_id
    LIMIT 1
) e ON true
WHERE ($1::text IS NULL OR g.app_id = $1)
  AND ($2::text IS NULL OR i.model_version = $2)
  AND ($3::timestamptz IS NULL OR s.updated_at >= $3)
  AND ($4::timestamptz IS NULL OR s.updated_at < $4)
  AND NOT EXISTS (
      SELECT 1 FROM agg_voters f
      WHERE f.flagged AND f.app_id = g.app_id AND left(s.voter, 5) = 'user:' AND f.user_ref = substr(s.voter, 6))
