-- name: select_published_event_ids
-- Which of these event ids were already published.
SELECT event_id FROM published_events WHERE event_id = ANY($1::uuid[])

-- name: insert_published_events
-- Record event ids as published (idempotent).
INSERT INTO published_events (event_id, stream)
SELECT unnest($1::uuid[]), $2
ON CONFLICT (event_id) DO NOTHING

-- name: delete_published_events_before
-- Forget published event ids older than the dedupe window.
DELETE FROM published_events WHERE published_at < $1
