-- name: upsert_tasks
-- Insert requested tasks; a re-request refreshes priority and payload of an open task, never its verdicts.
INSERT INTO tasks (task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed)
SELECT r.task_id, r.app_id, r.kind, r.domain, r.priority, r.request, r.request_updated_at, r.reviewers_needed
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::jsonb[], $7::timestamptz[], $8::int[])
    AS r(task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed)
ON CONFLICT (task_id) DO UPDATE
SET priority = excluded.priority,
    request = excluded.request,
    request_updated_at = excluded.request_updated_at,
    status = 'open',
    updated_at = now()
WHERE tasks.status IN ('open', 'withdrawn') AND excluded.request_updated_at >= tasks.request_updated_at

-- name: withdraw_tasks
-- Withdraw open tasks the aggregator no longer needs (a tombstone on annotation-requests); leases end.
UPDATE tasks SET status = 'withdrawn', leases = '{}'::jsonb, updated_at = now()
WHERE task_id = ANY($1::text[]) AND status = 'open'

-- name: lease_next_task
-- Lease the best open task with a free reviewer slot that this annotator has not judged, skipped or leased.
WITH candidates AS (
    -- The best lockable task of each domain (an ordered index scan each); all but the chosen one are
    -- unlocked again when this statement's transaction ends.
    SELECT c.task_id, c.priority, c.created_at
    FROM unnest($2::text[]) AS d (domain)
    CROSS JOIN LATERAL (
        SELECT c.task_id, c.priority, c.created_at
        FROM tasks AS c
        WHERE c.status = 'open'
          AND c.domain = d.domain
          AND NOT ($1 = ANY (c.reviewed_by))
          AND NOT ($1 = ANY (c.skipped_by))
          AND NOT (task_live_leases(c.leases, now()) ? $1)
          AND cardinality(c.reviewed_by)
              + (SELECT count(*) FROM jsonb_object_keys(task_live_leases(c.leases, now()))) < c.reviewers_needed
        ORDER BY c.priority DESC, c.created_at, c.task_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS c
)
UPDATE tasks AS t
SET leases = t.leases || jsonb_build_object($1::text, now() + make_interval(secs => $3)),
    updated_at = now()
WHERE t.task_id = (SELECT task_id FROM candidates ORDER BY priority DESC, created_at, task_id LIMIT 1)
RETURNING t.task_id, t.kind, t.domain, t.priority, t.request, (t.leases ->> $1)::timestamptz AS lease_expires_at

-- name: select_task_for_update
-- Lock one task and read its leases (expired ones too, to say so), with the database clock.
SELECT task_id, app_id, kind, domain, status, reviewers_needed, leases,
       reviewed_by, request, now() AS db_now
FROM tasks
WHERE task_id = $1
FOR UPDATE

-- name: extend_lease
-- Push an annotator's lease on a task to now + the lease duration.
UPDATE tasks
SET leases = jsonb_set(leases, ARRAY[$2::text], to_jsonb(now() + make_interval(secs => $3))),
    updated_at = now()
WHERE task_id = $1
RETURNING (leases ->> $2)::timestamptz AS lease_expires_at

-- name: release_lease
-- Give a leased task back to the queue.
UPDATE tasks SET leases = leases - $2::text, updated_at = now() WHERE task_id = $1

-- name: skip_task
-- Give a leased task back and never offer it to this annotator again.
UPDATE tasks
SET leases = leases - $2::text, skipped_by = array_append(skipped_by, $2::text), updated_at = now()
WHERE task_id = $1

-- name: insert_verdict
-- Record one annotator's verdict (one per task and annotator), with the side its screen showed left.
INSERT INTO task_verdicts (task_id, annotator_id, verdict, rewrite, comment, shown_left)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: select_task_verdicts
-- Every verdict of a task, oldest first.
SELECT annotator_id, verdict, rewrite, comment, created_at
FROM task_verdicts
WHERE task_id = $1
ORDER BY created_at, annotator_id

-- name: update_task_after_verdict
-- Drop the annotator's lease, count its review, and store the outcome.
UPDATE tasks
SET leases = leases - $2::text,
    reviewed_by = array_append(reviewed_by, $2::text),
    status = $3,
    reviewers_needed = $4,
    result = $5::jsonb,
    completed_at = CASE WHEN $3 = 'open' THEN NULL ELSE now() END,
    updated_at = now()
WHERE task_id = $1
RETURNING completed_at, updated_at

-- name: count_tasks_by_domain
-- Tasks per domain and status, with live leases (all domains when $1 is NULL).
SELECT domain, status, count(*) AS tasks,
       coalesce(sum((SELECT count(*) FROM jsonb_object_keys(task_live_leases(leases, now())))), 0)::bigint AS leased
FROM tasks
WHERE ($1::text[] IS NULL OR domain = ANY($1::text[]))
GROUP BY domain, status

-- name: select_agreement_verdicts
-- Verdicts of the latest multi-reviewer tasks, for inter-annotator agreement.
SELECT v.task_id, t.domain, v.annotator_id, v.verdict, t.result ->> 'verdict' AS combined
FROM task_verdicts AS v
JOIN (
    SELECT task_id, domain, result
    FROM tasks
    WHERE cardinality(reviewed_by) >= 2 AND ($1::text[] IS NULL OR domain = ANY($1::text[]))
    ORDER BY updated_at DESC
    LIMIT $2
) AS t ON t.task_id = v.task_id

-- name: count_position_verdicts
-- Compare-task verdicts that recorded the side shown left, per domain, shown side and verdict (all domains
-- when $1 is NULL). A rewrite task shows one answer: it has no position to be biased by.
SELECT t.domain, v.shown_left, v.verdict, count(*) AS verdicts
FROM task_verdicts AS v
JOIN tasks AS t ON t.task_id = v.task_id
WHERE v.shown_left IS NOT NULL AND t.kind = 'compare' AND ($1::text[] IS NULL OR t.domain = ANY($1::text[]))
GROUP BY t.domain, v.shown_left, v.verdict

-- name: count_annotator_verdicts_since
-- How many verdicts one annotator gave since a moment (the start of its day, for "done today").
SELECT count(*) FROM task_verdicts WHERE annotator_id = $1 AND created_at >= $2

-- name: upsert_annotator
-- Create or re-enable an annotator with these domains.
INSERT INTO annotators (annotator_id, domains)
VALUES ($1, $2::text[])
ON CONFLICT (annotator_id) DO UPDATE SET domains = excluded.domains, revoked_at = NULL, updated_at = now()

-- name: insert_annotator_token
-- Store the hash of a new token.
INSERT INTO annotator_tokens (token_hash, annotator_id) VALUES ($1, $2)

-- name: select_annotator_by_token
-- The live annotator a token hash belongs to.
SELECT a.annotator_id, a.domains
FROM annotator_tokens AS k
JOIN annotators AS a ON a.annotator_id = k.annotator_id
WHERE k.token_hash = $1 AND k.revoked_at IS NULL AND a.revoked_at IS NULL

-- name: revoke_annotator
-- Revoke an annotator and every token it holds; returns the annotator when it existed.
WITH tokens AS (
    UPDATE annotator_tokens SET revoked_at = now() WHERE annotator_id = $1 AND revoked_at IS NULL
)
UPDATE annotators SET revoked_at = coalesce(revoked_at, now()), updated_at = now()
WHERE annotator_id = $1
RETURNING annotator_id

-- name: release_annotator_leases
-- Give back every lease a revoked annotator held.
UPDATE tasks SET leases = leases - $1::text, updated_at = now()
WHERE status = 'open' AND leases ? $1

-- The per-voter hourly budget (services/feedback/voter_budget.py, shell: services/feedback/quarantine.py).

-- name: select_budget_decisions
-- Decisions already taken on these votes (a publish that failed and is retried keeps its mark).
SELECT event_id, quarantine_reason FROM voter_budget_votes WHERE event_id = ANY($1::uuid[])

-- name: add_budget_votes
-- Count a batch's fresh votes per (app, voter, hour), rows in key order (the lock order); the new totals.
INSERT INTO voter_budget_hours AS h (app_id, voter_hash, hour, votes)
SELECT t.app_id, t.voter_hash, t.hour, t.votes
FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::integer[]) WITH ORDINALITY AS t(app_id, voter_hash, hour, votes, ord)
ORDER BY t.ord
ON CONFLICT (app_id, voter_hash, hour) DO UPDATE SET votes = h.votes + excluded.votes
RETURNING app_id, voter_hash, hour, votes

-- name: insert_budget_decisions
-- Remember the decision on each fresh vote (the first decision of an event_id stays).
INSERT INTO voter_budget_votes (event_id, hour, ordinal, quarantine_reason)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::integer[], $4::text[])
ON CONFLICT (event_id) DO NOTHING

-- name: delete_budget_hours_before
-- Forget the counts of hours that are over.
DELETE FROM voter_budget_hours WHERE hour < $1

-- name: delete_budget_decisions_before
-- Forget the decisions on votes of hours that are over.
DELETE FROM voter_budget_votes WHERE hour < $1
