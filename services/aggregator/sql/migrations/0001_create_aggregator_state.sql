-- The aggregator's state. Every table starts with agg_ (the feedback service owns task* / annotator*).

-- One row per prompt group: its row lock serializes every update of the group across instances.
CREATE TABLE agg_groups (
    prompt_key text PRIMARY KEY,
    app_id text NOT NULL,
    prompt jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The answers of each group (what the pair rules need of an interaction).
CREATE TABLE agg_interactions (
    app_id text NOT NULL,
    interaction_id text NOT NULL,
    prompt_key text NOT NULL REFERENCES agg_groups (prompt_key),
    event_id uuid NOT NULL,
    content text NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    domain text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, interaction_id)
);
CREATE INDEX agg_interactions_prompt_key ON agg_interactions (prompt_key);

-- Vote event ids already taken in: a redelivered vote changes nothing and is not counted twice.
CREATE TABLE agg_seen_votes (
    event_id uuid PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agg_seen_votes_seen_at ON agg_seen_votes (seen_at);

-- The latest vote of each slot of a group (see services/aggregator/evidence.py for slots).
CREATE TABLE agg_votes (
    prompt_key text NOT NULL REFERENCES agg_groups (prompt_key),
    slot text NOT NULL,
    event_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    vote jsonb NOT NULL,
    PRIMARY KEY (prompt_key, slot)
);

-- Votes that arrived before their interaction: applied when it arrives, dead-lettered after the TTL.
CREATE TABLE agg_parked_votes (
    event_id uuid PRIMARY KEY,
    app_id text NOT NULL,
    interaction_id text NOT NULL,
    vote jsonb NOT NULL,
    source_topic text NOT NULL,
    source_partition integer,
    source_offset bigint,
    parked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX agg_parked_votes_interaction ON agg_parked_votes (app_id, interaction_id);
CREATE INDEX agg_parked_votes_expires_at ON agg_parked_votes (expires_at);

-- What was last published per pair_id (state_hash 'retracted' after a tombstone).
CREATE TABLE agg_pairs (
    pair_id text PRIMARY KEY,
    prompt_key text NOT NULL,
    state_hash text NOT NULL,
    pair jsonb,
    first_emitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agg_pairs_prompt_key ON agg_pairs (prompt_key);

-- What was last published per annotation request (task_id), so an unchanged one is not re-sent.
CREATE TABLE agg_annotation_requests (
    task_id text PRIMARY KEY,
    prompt_key text NOT NULL,
    kind text NOT NULL,
    state_hash text NOT NULL,
    first_emitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agg_annotation_requests_prompt_key ON agg_annotation_requests (prompt_key);

-- End users' edits: SFT examples (the prompt is in agg_groups).
CREATE TABLE agg_sft_examples (
    prompt_key text NOT NULL,
    interaction_id text NOT NULL,
    voter text NOT NULL,
    event_id uuid NOT NULL,
    content text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prompt_key, interaction_id, voter)
);

-- feedback-stats windows: counts per (app, model version, window); dirty until published.
CREATE TABLE agg_stats (
    app_id text NOT NULL,
    model_version text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    interactions integer NOT NULL DEFAULT 0,
    thumbs_up integer NOT NULL DEFAULT 0,
    thumbs_down integer NOT NULL DEFAULT 0,
    ratings integer NOT NULL DEFAULT 0,
    rating_sum bigint NOT NULL DEFAULT 0,
    pairs_emitted integer NOT NULL DEFAULT 0,
    tasks_queued integer NOT NULL DEFAULT 0,
    newest_event_at timestamptz NOT NULL,
    is_dirty boolean NOT NULL DEFAULT true,
    is_final boolean NOT NULL DEFAULT false,
    PRIMARY KEY (app_id, model_version, window_start)
);
CREATE INDEX agg_stats_open ON agg_stats (window_end) WHERE NOT is_final;
