-- The edge's view of interactions: the prompt group of each interaction ingest published, so that
-- feedback can refuse a comparison of answers to two different prompts. Pruned with published_events.
CREATE TABLE edge_interactions (
    app_id text NOT NULL,
    interaction_id text NOT NULL,
    prompt_key text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, interaction_id)
);
CREATE INDEX edge_interactions_published_at ON edge_interactions (published_at);
