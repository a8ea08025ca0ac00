-- App keys: the app_ids a chat app may write to the end-user routes (with APP_KEYS_REQUIRED). Only the
-- sha256 of a key is stored, and a request is authenticated by looking that hash up, in ingest and
-- feedback alike (the table is shared, as published_events is), with no cache: a revoked key is
-- refused on the very next request. A revoked key keeps its row (who could write what, until when).
CREATE TABLE app_keys (
    key_id text PRIMARY KEY,
    key_hash bytea NOT NULL UNIQUE,
    app_ids text[] NOT NULL CHECK (cardinality(app_ids) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
