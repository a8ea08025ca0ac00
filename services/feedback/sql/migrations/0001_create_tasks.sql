-- The annotation queue. A task's lease state lives on its own row (`leases`, `reviewed_by`,
-- `skipped_by`): the lease statement locks the row FOR UPDATE SKIP LOCKED, and under READ COMMITTED
-- PostgreSQL re-checks a concurrently updated row against its newest version only for that row's
-- columns, never for other tables, so a capacity check against a separate leases table could
-- hand one slot out twice.
CREATE TABLE tasks (
    task_id text PRIMARY KEY,
    app_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('compare', 'rewrite')),
    domain text NOT NULL,
    priority double precision NOT NULL,
    -- The AnnotationRequest as received (already redacted by the aggregator).
    request jsonb NOT NULL,
    request_updated_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'contested')),
    reviewers_needed integer NOT NULL CHECK (reviewers_needed >= 1),
    -- annotator_id -> lease expiry (ISO timestamp). An expired entry stays (it no longer counts) until
    -- its annotator judges, skips or releases, so a late verdict is told "lease expired".
    leases jsonb NOT NULL DEFAULT '{}'::jsonb,
    reviewed_by text[] NOT NULL DEFAULT '{}',
    skipped_by text[] NOT NULL DEFAULT '{}',
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
-- The lease scan: open tasks of some domains, highest priority first, then oldest.
CREATE INDEX tasks_open_by_priority ON tasks (priority DESC, created_at, task_id) WHERE status = 'open';
CREATE INDEX tasks_open_domain ON tasks (domain) WHERE status = 'open';

-- One verdict per (task, annotator).
CREATE TABLE task_verdicts (
    task_id text NOT NULL REFERENCES tasks (task_id),
    annotator_id text NOT NULL,
    verdict text NOT NULL CHECK (verdict IN ('A', 'B', 'tie', 'both_bad')),
    rewrite text,
    comment text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, annotator_id)
);
CREATE INDEX task_verdicts_annotator ON task_verdicts (annotator_id);

CREATE TABLE annotators (
    annotator_id text PRIMARY KEY,
    domains text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Only the sha256 of a token is stored; a request is authenticated by looking its hash up.
CREATE TABLE annotator_tokens (
    token_hash bytea PRIMARY KEY,
    annotator_id text NOT NULL REFERENCES annotators (annotator_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX annotator_tokens_annotator ON annotator_tokens (annotator_id);

-- The unexpired entries of a task's `leases` at a given time.
CREATE FUNCTION task_live_leases(leases jsonb, at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}'::jsonb)
    FROM jsonb_each_text(leases) AS l
    WHERE l.value::timestamptz > at
$$;
