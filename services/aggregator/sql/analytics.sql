-- The analyst UI's queries (services/aggregator/analytics_store.py): read-only aggregates, and the dead-letter
-- counts its own consumer keeps. Buckets are aligned on the Unix epoch: floor(epoch / bucket_s) * bucket_s.

-- name: select_known_apps
-- Every app whose interactions were taken in.
SELECT DISTINCT app_id FROM agg_model_versions ORDER BY app_id

-- name: select_board_domains
-- The domains that have a board of their own, per app.
SELECT app_id, domain FROM agg_boards WHERE domain <> '' ORDER BY app_id, domain

-- name: select_version_models
-- The models that answered under each version of an app (a version name is the model's, not unique).
SELECT model, model_version FROM agg_model_versions WHERE app_id = $1 ORDER BY model_version, model

-- name: select_approval_buckets
-- Thumbs and interactions of an app's stats windows since $2, per model version and bucket of $3 seconds.
SELECT model_version,
       to_timestamp(floor(extract(epoch FROM window_start)::float8 / $3::float8) * $3::float8) AS bucket_start,
       sum(thumbs_up)::bigint AS up, sum(thumbs_down)::bigint AS down, sum(interactions)::bigint AS interactions
FROM agg_stats
WHERE app_id = $1 AND window_start >= $2
GROUP BY model_version, bucket_start
ORDER BY model_version, bucket_start

-- name: select_flow_buckets
-- Per bucket of $3 seconds since $2: pairs and annotation requests first published, requests closed (answered:
-- the group holds an expert verdict on the task; else withdrawn). An app's ($1; NULL: every app).
SELECT 'pairs' AS kind, to_timestamp(floor(extract(epoch FROM p.first_emitted_at)::float8 / $3::float8) * $3::float8) AS bucket_start,
       count(*) AS count
FROM agg_pairs p JOIN agg_groups g ON g.prompt_key = p.prompt_key
WHERE p.first_emitted_at >= $2 AND ($1::text IS NULL OR g.app_id = $1)
GROUP BY bucket_start
UNION ALL
SELECT 'tasks_requested', to_timestamp(floor(extract(epoch FROM r.first_emitted_at)::float8 / $3::float8) * $3::float8) AS bucket_start,
       count(*)
FROM agg_annotation_requests r JOIN agg_groups g ON g.prompt_key = r.prompt_key
WHERE r.first_emitted_at >= $2 AND ($1::text IS NULL OR g.app_id = $1)
GROUP BY bucket_start
UNION ALL
SELECT CASE WHEN c.is_answered THEN 'tasks_answered' ELSE 'tasks_withdrawn' END,
       to_timestamp(floor(extract(epoch FROM c.updated_at)::float8 / $3::float8) * $3::float8) AS bucket_start, count(*)
FROM (
    SELECT r.updated_at, EXISTS (
        SELECT 1 FROM agg_votes v
        WHERE v.prompt_key = r.prompt_key AND v.vote->>'kind' = 'verdict' AND v.vote->>'task_id' = r.task_id
    ) AS is_answered
    FROM agg_annotation_requests r JOIN agg_groups g ON g.prompt_key = r.prompt_key
    WHERE r.state_hash = 'retracted' AND r.updated_at >= $2 AND ($1::text IS NULL OR g.app_id = $1)
) c
GROUP BY c.is_answered, bucket_start

-- name: select_open_request_groups
-- Open annotation requests (not withdrawn: a withdrawn or answered request's row says 'retracted') per group,
-- by kind, with the group's first own domain and, when it has none, its prompt (routing reads it). $1: an app.
SELECT r.prompt_key, d.domain AS own_domain, CASE WHEN d.domain IS NULL THEN g.prompt END AS prompt,
       count(*) FILTER (WHERE r.kind = 'compare') AS compare, count(*) FILTER (WHERE r.kind = 'rewrite') AS rewrite,
       min(r.first_emitted_at) AS oldest_requested_at
FROM agg_annotation_requests r
JOIN agg_groups g ON g.prompt_key = r.prompt_key
LEFT JOIN LATERAL (
    SELECT i.domain FROM agg_interactions i
    WHERE i.prompt_key = r.prompt_key AND i.domain IS NOT NULL
    ORDER BY i.occurred_at, i.interaction_id
    LIMIT 1
) d ON true
WHERE r.state_hash <> 'retracted' AND ($1::text IS NULL OR g.app_id = $1)
GROUP BY r.prompt_key, g.prompt_key, d.domain

-- name: select_alerts
-- The regression alarm's state (an app's, $1; NULL: every app's).
SELECT app_id, domain, model, previous_version, new_version, metric, is_raised, transitions, updated_at
FROM agg_model_alerts WHERE ($1::text IS NULL OR app_id = $1)

-- name: select_board_bodies
-- The latest bodies of these boards.
SELECT b.app_id, b.domain, b.body
FROM agg_boards b JOIN unnest($1::text[], $2::text[]) AS t(app_id, domain) ON b.app_id = t.app_id AND b.domain = t.domain
WHERE b.body IS NOT NULL

-- name: insert_dead_letters_seen
-- Remember dead letters by event_id; return those not counted before.
INSERT INTO agg_dead_letters_seen (event_id, failed_at)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id

-- name: add_dead_letter_counts
-- Add to the counts (rows in key order: the lock order).
INSERT INTO agg_dead_letter_counts AS c (service, error_code, hour, letters)
SELECT t.service, t.error_code, t.hour, t.letters
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::integer[]) WITH ORDINALITY AS t(service, error_code, hour, letters, ord)
ORDER BY t.ord
ON CONFLICT (service, error_code, hour) DO UPDATE SET letters = c.letters + excluded.letters

-- name: delete_dead_letters_seen_before
-- Forget the event ids of dead letters the topic no longer holds.
DELETE FROM agg_dead_letters_seen WHERE failed_at < $1

-- name: select_dead_letter_counts
-- Dead letters per service, error code and hour since $1.
SELECT service, error_code, hour, letters FROM agg_dead_letter_counts WHERE hour >= $1 ORDER BY hour, service, error_code
