-- The annotation budget (services/aggregator/budget.py): every task the pair math asks for now, open
-- (published to annotation-requests, not withdrawn) or waiting for a place among the domain's open
-- tasks. A task that is no longer needed leaves the table. What was actually published per task stays
-- in agg_annotation_requests (which the verdict check reads).
-- Numbered 0005: 0004 is taken by another branch's voter quality (the runner applies any gap).
CREATE TABLE agg_task_budget (
    task_id text PRIMARY KEY,
    prompt_key text NOT NULL,
    kind text NOT NULL,
    domain text NOT NULL,
    priority double precision NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'waiting')),
    state_hash text NOT NULL,
    -- The latest AnnotationRequest JSON, as published when it is (or becomes) open.
    request text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The lowest open and the best waiting tasks of a domain, and its open count: index scans. Ranks are
-- (priority, task_id) as Python compares them: task_id in code point order (COLLATE "C").
CREATE INDEX agg_task_budget_rank ON agg_task_budget (domain, status, priority, task_id COLLATE "C");
CREATE INDEX agg_task_budget_prompt_key ON agg_task_budget (prompt_key);
