-- name: select_published_bodies
-- Which of these event ids were already published, with the hash of the body published under each.
SELECT event_id, body_hash FROM published_events WHERE event_id = ANY($1::uuid[])

-- name: insert_published_bodies
-- Record event ids as published with their body's hash (the first body of an id stays).
INSERT INTO published_events (event_id, body_hash, stream)
SELECT t.event_id, t.body_hash, $3 FROM unnest($1::uuid[], $2::bytea[]) AS t(event_id, body_hash)
ON CONFLICT (event_id) DO NOTHING

-- name: delete_published_events_before
-- Forget published event ids older than the dedupe window.
DELETE FROM published_events WHERE published_at < $1

-- name: insert_published_interactions
-- Record interactions just published as insert_published_bodies does, and their prompt group, in one statement.
WITH published AS (
    INSERT INTO published_events (event_id, body_hash, stream)
    SELECT t.event_id, t.body_hash, $3 FROM unnest($1::uuid[], $2::bytea[]) AS t(event_id, body_hash)
    ON CONFLICT (event_id) DO NOTHING
)
INSERT INTO edge_interactions (app_id, interaction_id, prompt_key)
SELECT * FROM unnest($4::text[], $5::text[], $6::text[])
ON CONFLICT (app_id, interaction_id) DO NOTHING

-- name: select_edge_prompt_keys
-- The prompt group of the interactions the edge has published, of these (app_id, interaction_id).
SELECT e.app_id, e.interaction_id, e.prompt_key
FROM edge_interactions e
JOIN unnest($1::text[], $2::text[]) AS t(app_id, interaction_id)
  ON e.app_id = t.app_id AND e.interaction_id = t.interaction_id

-- name: delete_edge_interactions_before
-- Forget the prompt group of interactions published before the dedupe window.
DELETE FROM edge_interactions WHERE published_at < $1

-- name: insert_outbox
-- Queue outgoing messages in the caller's transaction (value NULL = tombstone).
INSERT INTO outbox (service, topic, key, value, headers)
SELECT $1, t.topic, t.key, t.value, t.headers
FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::jsonb[]) AS t(topic, key, value, headers)

-- name: lock_outbox_relay
-- One relay per service at a time keeps the per-key order of the outbox on the topics.
SELECT pg_try_advisory_xact_lock(hashtext('outbox:' || $1))

-- name: select_outbox_batch
-- The oldest queued messages of a service.
SELECT id, topic, key, value, headers FROM outbox WHERE service = $1 ORDER BY id LIMIT $2

-- name: delete_outbox_through
-- Forget messages the broker acknowledged.
DELETE FROM outbox WHERE service = $1 AND id = ANY($2::bigint[])

-- name: count_outbox
-- How many messages of a service wait to be relayed.
SELECT count(*) FROM outbox WHERE service = $1

-- name: lock_migrations
-- One migration runner at a time, across every process of every service (session-level lock).
SELECT pg_advisory_lock($1)

-- name: unlock_migrations
-- Let the next migration runner in.
SELECT pg_advisory_unlock($1)

-- name: create_schema_migrations
-- The record of applied migrations, per component and version.
CREATE TABLE IF NOT EXISTS schema_migrations (
    component text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version))

-- name: select_schema_migrations
-- The migrations applied so far.
SELECT component, version FROM schema_migrations

-- name: insert_schema_migration
-- Record one applied migration (in the migration's own transaction).
INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)

-- name: select_redriven_dead_letters
-- Which of these dead letters a redrive took already (sent_at NULL: claimed, the publish never confirmed).
SELECT dead_letter_id, sent_at FROM redriven_dead_letters WHERE dead_letter_id = ANY($1::uuid[])

-- name: claim_redriven_dead_letters
-- Claim dead letters before sending them back: one redrive wins each, so each is sent at most once.
INSERT INTO redriven_dead_letters (dead_letter_id, source_topic, error_code)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
ON CONFLICT (dead_letter_id) DO NOTHING
RETURNING dead_letter_id

-- name: mark_redriven_dead_letters_sent
-- The broker acknowledged these redriven messages.
UPDATE redriven_dead_letters SET sent_at = now() WHERE dead_letter_id = ANY($1::uuid[])

-- name: insert_app_key
-- Store a new app key: its id, the sha256 of the key, the app_ids it may write.
INSERT INTO app_keys (key_id, key_hash, app_ids) VALUES ($1, $2, $3)

-- name: select_app_key_by_hash
-- The live (unrevoked) app key a key hash belongs to.
SELECT key_id, app_ids FROM app_keys WHERE key_hash = $1 AND revoked_at IS NULL

-- name: revoke_app_key
-- Revoke an app key (the first revocation's time stays); returns it when it exists.
UPDATE app_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 RETURNING key_id

-- name: select_app_keys
-- Every app key (never the key itself), optionally only those covering one app_id, oldest first.
SELECT key_id, app_ids, created_at, revoked_at FROM app_keys
WHERE ($1::text IS NULL OR $1 = ANY(app_ids))
ORDER BY created_at, key_id
