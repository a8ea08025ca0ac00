-- The analyst UI's dead letters (services/aggregator/dead_letter_counter.py): the aggregator's own consumer
-- of `dead-letter` counts every service's dead letters per (service, error_code, hour of failed_at).

-- Counts per service, error code and hour (failed_at truncated to the hour, UTC).
CREATE TABLE agg_dead_letter_counts (
    service text NOT NULL,
    error_code text NOT NULL,
    hour timestamptz NOT NULL,
    letters integer NOT NULL,
    PRIMARY KEY (service, error_code, hour)
);
CREATE INDEX agg_dead_letter_counts_hour ON agg_dead_letter_counts (hour);

-- The dead letters already counted (by event_id), kept while the topic may still deliver them again.
CREATE TABLE agg_dead_letters_seen (
    event_id uuid PRIMARY KEY,
    failed_at timestamptz NOT NULL
);
CREATE INDEX agg_dead_letters_seen_failed_at ON agg_dead_letters_seen (failed_at);

-- The analyst UI's flow chart reads pairs and tasks by when they were first published.
CREATE INDEX agg_pairs_first_emitted_at ON agg_pairs (first_emitted_at);
CREATE INDEX agg_annotation_requests_first_emitted_at ON agg_annotation_requests (first_emitted_at);
