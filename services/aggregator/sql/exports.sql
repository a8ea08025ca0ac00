-- The exports' queries (issue 12): one named block each, used by services/aggregator/export_store.py.
-- Read inside one REPEATABLE READ READ ONLY transaction, through server-side cursors.
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
