-- The model leaderboard's state (services/aggregator/leaderboard_counts.py says what is counted).
-- Domain '' stands for the whole app wherever a board is meant; counts always carry a real domain.

-- Battles per (app, domain, winner, loser): kept by each batch in the transaction that upserts the pairs.
-- (No CHECK (battles >= 0): an upsert checks it on the proposed row of signed changes, before the conflict.)
CREATE TABLE agg_battle_counts (
    app_id text NOT NULL,
    domain text NOT NULL,
    winner_model text NOT NULL,
    winner_version text NOT NULL,
    loser_model text NOT NULL,
    loser_version text NOT NULL,
    battles integer NOT NULL,
    PRIMARY KEY (app_id, domain, winner_model, winner_version, loser_model, loser_version)
);

-- The battle each live pair counts for now (none: no row), so a flip moves it and a retraction removes it.
CREATE TABLE agg_pair_battles (
    pair_id text PRIMARY KEY,
    app_id text NOT NULL,
    domain text NOT NULL,
    winner_model text NOT NULL,
    winner_version text NOT NULL,
    loser_model text NOT NULL,
    loser_version text NOT NULL
);

-- Effective approval votes per (app, domain, version).
CREATE TABLE agg_approval_counts (
    app_id text NOT NULL,
    domain text NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    up integer NOT NULL,
    down integer NOT NULL,
    PRIMARY KEY (app_id, domain, model, model_version)
);

-- The domain a group's approval votes are counted under (no row: none of them is counted yet).
CREATE TABLE agg_counted_groups (
    prompt_key text PRIMARY KEY,
    app_id text NOT NULL,
    domain text NOT NULL
);

-- Release order: when each version of a model was first seen (the earliest occurred_at of its answers).
CREATE TABLE agg_model_versions (
    app_id text NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, model, model_version)
);

-- One row per board: changes counted by batches (change_seq), the last refit's, and the latest body.
CREATE TABLE agg_boards (
    app_id text NOT NULL,
    domain text NOT NULL,
    change_seq bigint NOT NULL DEFAULT 0,
    refitted_seq bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    pending_since timestamptz,
    body jsonb,
    body_hash text,
    computed_at timestamptz,
    PRIMARY KEY (app_id, domain)
);
CREATE INDEX agg_boards_pending ON agg_boards (pending_since) WHERE pending_since IS NOT NULL;

-- The regression alarm's state per board, model, version pair and metric: only transitions are published.
CREATE TABLE agg_model_alerts (
    app_id text NOT NULL,
    domain text NOT NULL,
    model text NOT NULL,
    previous_version text NOT NULL,
    new_version text NOT NULL,
    metric text NOT NULL,
    is_raised boolean NOT NULL,
    transitions integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, domain, model, previous_version, new_version, metric)
);

-- State from before this migration: the battles of the live pairs and the versions seen. (Approval of
-- groups taken in before it is counted when each group is next decided, or by the aggregator's backfill.)
INSERT INTO agg_pair_battles (pair_id, app_id, domain, winner_model, winner_version, loser_model, loser_version)
SELECT pair_id, pair->>'app_id', pair->>'domain', pair->'chosen'->>'model', pair->'chosen'->>'model_version',
       pair->'rejected'->>'model', pair->'rejected'->>'model_version'
FROM agg_pairs
WHERE pair IS NOT NULL
  AND pair->'chosen'->>'model' NOT IN ('human-edit', 'expert')
  AND pair->'rejected'->>'model' NOT IN ('human-edit', 'expert')
  AND (pair->'chosen'->>'model', pair->'chosen'->>'model_version')
      <> (pair->'rejected'->>'model', pair->'rejected'->>'model_version');

INSERT INTO agg_battle_counts (app_id, domain, winner_model, winner_version, loser_model, loser_version, battles)
SELECT app_id, domain, winner_model, winner_version, loser_model, loser_version, count(*)
FROM agg_pair_battles
GROUP BY app_id, domain, winner_model, winner_version, loser_model, loser_version;

INSERT INTO agg_model_versions (app_id, model, model_version, first_seen_at)
SELECT app_id, model, model_version, min(occurred_at) FROM agg_interactions GROUP BY app_id, model, model_version;

INSERT INTO agg_boards (app_id, domain, change_seq, pending_since)
SELECT DISTINCT app_id, b.domain, 1, clock_timestamp()
FROM agg_battle_counts, LATERAL (VALUES (''), (agg_battle_counts.domain)) AS b(domain);
