-- Event ids the edge services (ingest, feedback) have already published: re-posting an event_id
-- is accepted and publishes nothing. Rows older than the dedupe window are pruned.
CREATE TABLE published_events (
    event_id uuid PRIMARY KEY,
    stream text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX published_events_published_at ON published_events (published_at);
