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

-- name: claim_parked_votes_by_id
-- Take these parked votes (with their origin and TTL): a parked vote applied apart from its interaction (intake.py).
DELETE FROM agg_parked_votes WHERE event_id = ANY($1::uuid[])
RETURNING vote, source_topic, source_partition, source_offset, expires_at

-- name: select_parked_vote_ids
-- The parked votes waiting for one interaction, in the order they were parked.
SELECT event_id FROM agg_parked_votes WHERE app_id = $1 AND interaction_id = $2 ORDER BY parked_at, event_id

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
-- `kind` says which: 'answer' (interaction_id, model, model_version, domain, occurred_at; its content only when
-- this transaction inserted it), 'vote' (the latest vote of each slot: its event_id, whether it counts and was
-- tested: vote_quality.py; not its body), 'pair' and 'request' (what was last published, by pair_id / task_id:
-- its state hash; a pair's `battle`: the leaderboard battle it counts for, [app_id, domain, winner_model,
-- winner_version, loser_model, loser_version], or NULL), 'budget' (the group's tasks in the annotation budget:
-- their domain and the state hash last offered), 'counted' (the domain the group's approval votes are counted
-- under by the leaderboard), and 'flagged' (no group: the flagged voters, app_id in `body` and user_ref in
-- `item`, among the voters of the groups' stored votes and the voters $2/$3 (app_id, user_ref) of the batch's
-- new votes; read without a lock: see batches.py). Answers in (occurred_at, interaction_id) order within their
-- group. An answer's content and a vote's body never change once stored: the caller keeps those it read
-- (store.py) and asks for the others by key (select_answer_contents, select_vote_bodies), so a busy group's
-- thousands of answers and votes are not sent again by every batch that touches it.
SELECT 'answer' AS kind, prompt_key, interaction_id AS item,
       CASE WHEN xmin = pg_current_xact_id_if_assigned()::xid THEN content END AS body, model, model_version,
       domain, occurred_at, NULL::text AS state_hash, NULL::boolean AS is_counted, NULL::boolean AS is_tested,
       NULL::text[] AS battle, event_id
FROM agg_interactions WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'vote', prompt_key, slot, NULL, NULL, NULL, NULL, NULL, NULL, is_counted, is_tested, NULL, event_id
FROM agg_votes WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'pair', p.prompt_key, p.pair_id, NULL, NULL, NULL, NULL, NULL, p.state_hash, NULL, NULL,
       CASE WHEN b.pair_id IS NOT NULL THEN
           ARRAY[b.app_id, b.domain, b.winner_model, b.winner_version, b.loser_model, b.loser_version] END,
       NULL
FROM agg_pairs p LEFT JOIN agg_pair_battles b ON b.pair_id = p.pair_id
WHERE p.prompt_key = ANY($1::text[])
UNION ALL
SELECT 'request', prompt_key, task_id, NULL, NULL, NULL, NULL, NULL, state_hash, NULL, NULL, NULL, NULL
FROM agg_annotation_requests WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'budget', prompt_key, task_id, NULL, NULL, NULL, domain, NULL, state_hash, NULL, NULL, NULL, NULL
FROM agg_task_budget WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'counted', prompt_key, NULL, NULL, NULL, NULL, domain, NULL, NULL, NULL, NULL, NULL, NULL
FROM agg_counted_groups WHERE prompt_key = ANY($1::text[])
UNION ALL
SELECT 'flagged', NULL, f.user_ref, f.app_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM agg_voters f
JOIN (
    SELECT app_id, user_ref FROM agg_votes WHERE prompt_key = ANY($1::text[]) AND user_ref IS NOT NULL
    UNION
    SELECT * FROM unnest($2::text[], $3::text[])
) AS t(app_id, user_ref) ON f.app_id = t.app_id AND f.user_ref = t.user_ref
WHERE f.flagged
ORDER BY prompt_key, occurred_at, item

-- name: select_answer_contents
-- The content of these stored answers, by (app_id $1, interaction_id $2): those select_group_state's caller
-- did not hold, with the event_id each came with.
SELECT i.app_id, i.interaction_id, i.event_id, i.content
FROM agg_interactions i
JOIN unnest($1::text[], $2::text[]) AS t(app_id, interaction_id)
  ON i.app_id = t.app_id AND i.interaction_id = t.interaction_id

-- name: select_vote_bodies
-- The stored latest votes (as JSON text) of these slots, by (prompt_key $1, slot $2), with their event_id.
SELECT v.prompt_key, v.slot, v.event_id, v.vote::text AS body
FROM agg_votes v
JOIN unnest($1::text[], $2::text[]) AS t(prompt_key, slot) ON v.prompt_key = t.prompt_key AND v.slot = t.slot

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

-- name: select_pair
-- One pair as last published (debugging endpoint).
SELECT pair_id, prompt_key, state_hash, pair, first_emitted_at, updated_at FROM agg_pairs WHERE pair_id = $1
