-- One event_id, one body: the hash of the body first published under an event_id, so a re-post with
-- the same body is a duplicate and one with another body a conflict. NULL for rows written before.
ALTER TABLE published_events ADD COLUMN body_hash bytea;
