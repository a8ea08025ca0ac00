-- The annotation budget's queries (services/aggregator/budget_store.py). Ranks are (priority, task_id),
-- task_id compared as Python compares strings (COLLATE "C", as the agg_task_budget_rank index).

-- name: lock_budget_domains
-- Serialize admission per domain (keys sorted by the caller; taken after the group locks: see batches.py).
SELECT pg_advisory_xact_lock($1::integer, k.key) FROM unnest($2::integer[]) WITH ORDINALITY AS k(key, ord) ORDER BY k.ord

-- name: select_budget_states
-- Tasks by id: their budget row (if any), what was published of them (if anything), the request if $2.
SELECT t.task_id, coalesce(b.prompt_key, r.prompt_key) AS prompt_key, coalesce(b.kind, r.kind) AS kind,
       b.domain, b.priority, b.status, b.state_hash, r.state_hash AS published_hash,
       CASE WHEN $2::boolean THEN b.request END AS request
FROM unnest($1::text[]) AS t(task_id)
LEFT JOIN agg_task_budget b ON b.task_id = t.task_id
LEFT JOIN agg_annotation_requests r ON r.task_id = t.task_id
WHERE b.task_id IS NOT NULL OR r.task_id IS NOT NULL

-- name: select_budget_view
-- What admission reads once the domains are locked, in one statement (`part` tells the rows apart): the
-- touched tasks' rows ($1: as select_budget_states, without the request); per domain ($2) its window, its
-- $3 lowest-ranked open tasks and $3 best-ranked waiting tasks; and its count of open tasks.
SELECT 'task' AS part, t.task_id, coalesce(b.prompt_key, r.prompt_key) AS prompt_key,
       coalesce(b.kind, r.kind) AS kind, b.domain, b.priority, b.status, b.state_hash,
       r.state_hash AS published_hash, NULL::bigint AS open_tasks
FROM unnest($1::text[]) AS t(task_id)
LEFT JOIN agg_task_budget b ON b.task_id = t.task_id
LEFT JOIN agg_annotation_requests r ON r.task_id = t.task_id
WHERE b.task_id IS NOT NULL OR r.task_id IS NOT NULL
UNION ALL
SELECT 'window', w.task_id, NULL, NULL, d.domain, w.priority, w.status, NULL, NULL, NULL
FROM unnest($2::text[], $3::integer[]) AS d(domain, size)
CROSS JOIN LATERAL (
    (SELECT b.task_id, b.priority, b.status FROM agg_task_budget b
     WHERE b.domain = d.domain AND b.status = 'open'
     ORDER BY b.priority, b.task_id COLLATE "C" LIMIT d.size)
    UNION ALL
    (SELECT b.task_id, b.priority, b.status FROM agg_task_budget b
     WHERE b.domain = d.domain AND b.status = 'waiting'
     ORDER BY b.priority DESC, b.task_id COLLATE "C" DESC LIMIT d.size)
) AS w
UNION ALL
SELECT 'count', NULL, NULL, NULL, domain, NULL, NULL, NULL, NULL, count(*)
FROM agg_task_budget
WHERE domain = ANY($2::text[]) AND status = 'open'
GROUP BY domain

-- name: upsert_budget_tasks
-- Offered tasks: their latest request, priority and status.
INSERT INTO agg_task_budget (task_id, prompt_key, kind, domain, priority, status, state_hash, request)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[], $7::text[], $8::text[])
ON CONFLICT (task_id) DO UPDATE
SET prompt_key = excluded.prompt_key, kind = excluded.kind, domain = excluded.domain, priority = excluded.priority,
    status = excluded.status, state_hash = excluded.state_hash, request = excluded.request, updated_at = now()

-- name: update_budget_status
-- Withdrawn (open -> waiting) and promoted (waiting -> open) tasks.
UPDATE agg_task_budget AS b SET status = t.status, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS t(task_id, status)
WHERE b.task_id = t.task_id

-- name: delete_budget_tasks
-- Tasks no longer needed leave the budget.
DELETE FROM agg_task_budget WHERE task_id = ANY($1::text[])

-- name: select_budget_domains
-- The domains with tasks in the budget (a loose index scan: one probe per domain).
WITH RECURSIVE d(domain) AS (
    (SELECT domain FROM agg_task_budget ORDER BY domain LIMIT 1)
    UNION ALL
    SELECT (SELECT b.domain FROM agg_task_budget b WHERE b.domain > d.domain ORDER BY b.domain LIMIT 1)
    FROM d WHERE d.domain IS NOT NULL
)
SELECT domain FROM d WHERE domain IS NOT NULL

-- name: select_domain_ranks
-- A domain's open tasks (all) and its $2 best-ranked waiting ones (what a rebalance needs).
(SELECT task_id, priority, status FROM agg_task_budget WHERE domain = $1 AND status = 'open')
UNION ALL
(SELECT task_id, priority, status FROM agg_task_budget WHERE domain = $1 AND status = 'waiting'
 ORDER BY priority DESC, task_id COLLATE "C" DESC LIMIT $2)
