-- name: upsert_tasks
-- Insert requested tasks, held (offer_held_tasks opens them while their domain has room); a re-request
-- refreshes priority and payload of an open or held task, never its verdicts; a withdrawn task is held again.
INSERT INTO tasks (task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed, status)
SELECT r.task_id, r.app_id, r.kind, r.domain, r.priority, r.request, r.request_updated_at, r.reviewers_needed, 'held'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::jsonb[], $7::timestamptz[], $8::int[])
    AS r(task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed)
ON CONFLICT (task_id) DO UPDATE
SET priority = excluded.priority,
    request = excluded.request,
    request_updated_at = excluded.request_updated_at,
    status = CASE WHEN tasks.status = 'open' THEN 'open' ELSE 'held' END,
    updated_at = now()
WHERE tasks.status IN ('open', 'held', 'withdrawn') AND excluded.request_updated_at >= tasks.request_updated_at

-- name: withdraw_tasks
-- Withdraw open or held tasks the aggregator no longer needs (a tombstone on annotation-requests); leases end.
UPDATE tasks SET status = 'withdrawn', leases = '{}'::jsonb, updated_at = now()
WHERE task_id = ANY($1::text[]) AND status IN ('open', 'held')

-- name: select_task_domains
-- The domains of these tasks, whatever their status (where a tombstone may make room).
SELECT DISTINCT domain FROM tasks WHERE task_id = ANY($1::text[])

-- name: select_held_domains
-- The domains holding tasks back (the cap's periodic pass).
SELECT DISTINCT domain FROM tasks WHERE status = 'held'

-- name: lock_task_domains
-- Advisory-lock domains for the transaction, in the caller's (sorted) key order: whoever opens held
-- tasks of a domain holds its lock, so two never count the same room.
SELECT pg_advisory_xact_lock($1::integer, k.key) FROM unnest($2::integer[]) WITH ORDINALITY AS k(key, ord) ORDER BY k.ord

-- name: offer_held_tasks
-- Open the best held tasks of each (locked) domain $1 while it has fewer than $2 open; the tasks opened.
-- Run after the lock statement, so this statement's snapshot sees every open task of those domains.
WITH room AS (
    SELECT d.domain, $2::integer - (SELECT count(*) FROM tasks AS o WHERE o.domain = d.domain AND o.status = 'open') AS n
    FROM unnest($1::text[]) AS d (domain)
),
best AS (
    SELECT h.task_id
    FROM room
    CROSS JOIN LATERAL (
        SELECT t.task_id FROM tasks AS t
        WHERE t.domain = room.domain AND t.status = 'held'
        ORDER BY t.priority DESC, t.task_id DESC
        LIMIT greatest(room.n, 0)
    ) AS h
)
UPDATE tasks AS t SET status = 'open', updated_at = now()
FROM best
WHERE t.task_id = best.task_id AND t.status = 'held'
RETURNING t.task_id, t.domain

-- name: lease_next_task
-- Authenticate the caller and lease it the best open task with a free reviewer slot that it has not
-- judged, skipped or leased, in one statement. The caller is a token hash ($1), or when $1 is NULL an
-- annotator already known ($2, its domains $3); $4 narrows to one domain. One row (the annotator, and
-- the task or NULLs) for a live caller; none for a token that is unknown or revoked. The task comes
-- with what a verdict decides on (its state and verdicts so far), so the verdict need not read it again.
WITH me AS (
    SELECT a.annotator_id, a.domains
    FROM annotator_tokens AS k
    JOIN annotators AS a ON a.annotator_id = k.annotator_id
    WHERE $1::bytea IS NOT NULL AND k.token_hash = $1 AND k.revoked_at IS NULL AND a.revoked_at IS NULL
    UNION ALL
    SELECT $2::text, $3::text[] WHERE $1::bytea IS NULL
),
candidates AS (
    -- The best lockable task of each domain (an ordered index scan each); all but the chosen one are
    -- unlocked again when this statement's transaction ends.
    SELECT c.task_id, c.priority, c.created_at
    FROM me
    CROSS JOIN LATERAL unnest(me.domains) AS d (domain)
    CROSS JOIN LATERAL (
        SELECT c.task_id, c.priority, c.created_at
        FROM tasks AS c
        WHERE c.status = 'open'
          AND c.domain = d.domain
          AND NOT (me.annotator_id = ANY (c.reviewed_by))
          AND NOT (me.annotator_id = ANY (c.skipped_by))
          AND NOT coalesce((c.leases ->> me.annotator_id)::timestamptz > now(), false)
          -- A free reviewer slot; most open tasks hold no lease at all, which needs no look inside.
          AND (
              (c.leases = '{}'::jsonb AND cardinality(c.reviewed_by) < c.reviewers_needed)
              OR cardinality(c.reviewed_by)
                 + (SELECT count(*) FROM jsonb_each_text(c.leases) AS l WHERE l.value::timestamptz > now())
                 < c.reviewers_needed
          )
        ORDER BY c.priority DESC, c.created_at, c.task_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE $4::text IS NULL OR d.domain = $4
),
leased AS (
    UPDATE tasks AS t
    SET leases = t.leases || jsonb_build_object(me.annotator_id, now() + make_interval(secs => $5)),
        updated_at = now()
    FROM me
    WHERE t.task_id = (SELECT task_id FROM candidates ORDER BY priority DESC, created_at, task_id LIMIT 1)
    RETURNING t.task_id, t.app_id, t.kind, t.domain, t.priority, t.request, t.request_updated_at, t.status,
              t.reviewers_needed, t.reviewed_by, t.leases,
              (t.leases ->> me.annotator_id)::timestamptz AS lease_expires_at,
              CASE WHEN cardinality(t.reviewed_by) = 0 THEN '[]'::jsonb ELSE (
                  SELECT jsonb_agg(
                      jsonb_build_object(
                          'annotator_id', v.annotator_id, 'verdict', v.verdict,
                          'rewrite', v.rewrite, 'comment', v.comment
                      )
                      ORDER BY v.created_at, v.annotator_id
                  )
                  FROM task_verdicts AS v
                  WHERE v.task_id = t.task_id
              ) END AS verdicts
)
SELECT me.annotator_id, me.domains, l.task_id, l.app_id, l.kind, l.domain, l.priority, l.request,
       l.request_updated_at, l.status, l.reviewers_needed, l.reviewed_by, l.leases, l.lease_expires_at, l.verdicts,
       now() AS db_now
FROM me
LEFT JOIN leased AS l ON true

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

-- name: select_task_for_verdict
-- Authenticate the caller (as in lease_next_task) and read one task, its verdicts (oldest first) and
-- the database clock, without a lock, when the verdict cannot decide on the state its lease returned
-- (another instance leased it, or the task changed since): record_verdict writes only if what was
-- decided on is unchanged. No row for an unknown or revoked token; NULL task columns for an unknown task.
WITH me AS (
    SELECT a.annotator_id, a.domains
    FROM annotator_tokens AS k
    JOIN annotators AS a ON a.annotator_id = k.annotator_id
    WHERE $1::bytea IS NOT NULL AND k.token_hash = $1 AND k.revoked_at IS NULL AND a.revoked_at IS NULL
    UNION ALL
    SELECT $2::text, $3::text[] WHERE $1::bytea IS NULL
)
SELECT me.annotator_id, me.domains, t.task_id, t.app_id, t.kind, t.domain, t.status, t.reviewers_needed,
       t.leases, t.reviewed_by, t.request, t.request_updated_at, now() AS db_now,
       (
           SELECT coalesce(
               jsonb_agg(
                   jsonb_build_object(
                       'annotator_id', v.annotator_id, 'verdict', v.verdict, 'rewrite', v.rewrite, 'comment', v.comment
                   )
                   ORDER BY v.created_at, v.annotator_id
               ),
               '[]'::jsonb
           )
           FROM task_verdicts AS v
           WHERE v.task_id = t.task_id
       ) AS verdicts
FROM me
LEFT JOIN tasks AS t ON t.task_id = $4

-- name: record_verdict
-- In one statement: authenticate the caller (as in lease_next_task), then the task's update (the
-- caller's lease ends, its review counts, the outcome), the verdict, and the expert vote's outbox row
-- when the task completes ($17 not NULL). Writes nothing and returns no row when the caller is not the
-- live annotator $5 of the task's domain, or when the task changed since the state the verdict was
-- decided on ($6 reviewers, $7 request): another verdict, a re-request, a withdrawal, or the lease
-- ended. The caller then reads the task again and decides again. Never opens a task (task_cap.py).
WITH me AS (
    SELECT a.annotator_id, a.domains
    FROM annotator_tokens AS k
    JOIN annotators AS a ON a.annotator_id = k.annotator_id
    WHERE $1::bytea IS NOT NULL AND k.token_hash = $1 AND k.revoked_at IS NULL AND a.revoked_at IS NULL
    UNION ALL
    SELECT $2::text, $3::text[] WHERE $1::bytea IS NULL
),
judged AS (
    UPDATE tasks AS t
    SET leases = t.leases - me.annotator_id,
        reviewed_by = array_append(t.reviewed_by, me.annotator_id),
        status = $8,
        reviewers_needed = $9,
        result = $10::jsonb,
        completed_at = CASE WHEN $8 = 'open' THEN NULL ELSE $11::timestamptz END,
        updated_at = now()
    FROM me
    WHERE t.task_id = $4
      AND me.annotator_id = $5
      AND t.domain = ANY (me.domains)
      AND t.status = 'open'
      AND t.reviewed_by = $6::text[]
      AND t.request_updated_at = $7
      AND (t.leases ->> me.annotator_id)::timestamptz > now()
    RETURNING t.task_id, t.domain
),
verdict AS (
    INSERT INTO task_verdicts (task_id, annotator_id, verdict, rewrite, comment, shown_left, created_at)
    SELECT j.task_id, $5, $12, $13, $14, $15, $11 FROM judged AS j
),
vote AS (
    INSERT INTO outbox (service, topic, key, value, headers)
    SELECT $16, $17, $18, $19, $20::jsonb FROM judged WHERE $17::text IS NOT NULL
)
-- held_waiting: the verdict closed the task while its domain holds tasks back (task_cap.py: make room now).
SELECT j.task_id,
       $8 <> 'open' AND EXISTS (SELECT 1 FROM tasks AS h WHERE h.domain = j.domain AND h.status = 'held') AS held_waiting
FROM judged AS j

-- name: count_tasks_by_domain
-- Tasks per domain and status (all domains when $1 is NULL), from the maintained counts.
SELECT domain, status, sum(tasks)::bigint AS tasks
FROM task_counts
WHERE $1::text[] IS NULL OR domain = ANY ($1::text[])
GROUP BY domain, status
HAVING sum(tasks) <> 0

-- name: count_live_leases
-- Live leases per domain (all domains when $1 is NULL): the lease entries that expire after now.
SELECT domain, sum(leases)::bigint AS leases
FROM task_lease_counts
WHERE expires_at > now() AND ($1::text[] IS NULL OR domain = ANY ($1::text[]))
GROUP BY domain
HAVING sum(leases) <> 0

-- name: sum_coincidences
-- Coincidence matrices: each domain's (annotator_id ''), and each annotator's summed over the domains
-- (domain NULL; only annotator $2 when given). All domains when $1 is NULL.
SELECT CASE WHEN annotator_id = '' THEN domain END AS domain, annotator_id, first_verdict, second_verdict,
       sum(weight)::float8 / coincidence_scale() AS weight
FROM coincidence_counts
WHERE ($1::text[] IS NULL OR domain = ANY ($1::text[])) AND (annotator_id = '' OR $2::text IS NULL OR annotator_id = $2)
GROUP BY 1, annotator_id, first_verdict, second_verdict
HAVING sum(weight) <> 0

-- name: sum_agreement_counts
-- Multi-reviewer tasks, pairs and results: each domain's (annotator_id ''), and each annotator's summed
-- over the domains (domain NULL; only annotator $2 when given). All domains when $1 is NULL.
SELECT CASE WHEN annotator_id = '' THEN domain END AS domain, annotator_id,
       sum(tasks)::bigint AS tasks, sum(pairs)::bigint AS pairs, sum(agreeing_pairs)::bigint AS agreeing_pairs,
       sum(decided)::bigint AS decided, sum(agreed)::bigint AS agreed
FROM agreement_counts
WHERE ($1::text[] IS NULL OR domain = ANY ($1::text[])) AND (annotator_id = '' OR $2::text IS NULL OR annotator_id = $2)
GROUP BY 1, annotator_id

-- name: count_position_verdicts
-- Compare-task verdicts that recorded the side shown left, per domain, shown side and verdict (all domains
-- when $1 is NULL). A rewrite task shows one answer: it has no position to be biased by.
SELECT domain, shown_left, verdict, sum(verdicts)::bigint AS verdicts
FROM position_counts
WHERE $1::text[] IS NULL OR domain = ANY ($1::text[])
GROUP BY domain, shown_left, verdict
HAVING sum(verdicts) <> 0

-- name: count_annotator_verdicts_since
-- How many verdicts one annotator gave since a moment (the start of its day, for "done today"): whole
-- quarter hours from the maintained counts, the quarter the moment falls in from the verdicts.
WITH since AS (
    SELECT date_bin('15 minutes', $2::timestamptz - interval '1 microsecond', TIMESTAMPTZ '2000-01-01 00:00:00+00')
           + interval '15 minutes' AS whole_quarters
)
SELECT ((
           SELECT coalesce(sum(c.verdicts), 0)
           FROM verdict_counts AS c
           WHERE c.annotator_id = $1 AND c.period_start >= (SELECT whole_quarters FROM since)
       )
       + (
           SELECT count(*)
           FROM task_verdicts AS v
           WHERE v.annotator_id = $1 AND v.created_at >= $2 AND v.created_at < (SELECT whole_quarters FROM since)
       ))::bigint

-- name: compact_queue_counts
-- Fold each counts table's rows into one per key (dropping keys that sum to zero) and drop lease
-- entries that expired over a minute ago (they never count again). Rows appended by transactions still
-- running are not seen here and stay for the next time; a concurrent compaction skips the rows this one
-- deletes. Returns how many rows were folded.
WITH task_rows AS (
    DELETE FROM task_counts RETURNING domain, status, tasks
),
task_sums AS (
    INSERT INTO task_counts (domain, status, tasks)
    SELECT domain, status, sum(tasks) FROM task_rows GROUP BY domain, status HAVING sum(tasks) <> 0
),
lease_rows AS (
    DELETE FROM task_lease_counts RETURNING domain, expires_at, leases
),
lease_sums AS (
    INSERT INTO task_lease_counts (domain, expires_at, leases)
    SELECT domain, expires_at, sum(leases)
    FROM lease_rows
    WHERE expires_at > now() - interval '1 minute'
    GROUP BY domain, expires_at
    HAVING sum(leases) <> 0
),
verdict_rows AS (
    DELETE FROM verdict_counts RETURNING annotator_id, period_start, verdicts
),
verdict_sums AS (
    INSERT INTO verdict_counts (annotator_id, period_start, verdicts)
    SELECT annotator_id, period_start, sum(verdicts)
    FROM verdict_rows
    GROUP BY annotator_id, period_start
    HAVING sum(verdicts) <> 0
),
position_rows AS (
    DELETE FROM position_counts RETURNING domain, shown_left, verdict, verdicts
),
position_sums AS (
    INSERT INTO position_counts (domain, shown_left, verdict, verdicts)
    SELECT domain, shown_left, verdict, sum(verdicts)
    FROM position_rows
    GROUP BY domain, shown_left, verdict
    HAVING sum(verdicts) <> 0
),
cell_rows AS (
    DELETE FROM coincidence_counts RETURNING domain, annotator_id, first_verdict, second_verdict, weight
),
cell_sums AS (
    INSERT INTO coincidence_counts (domain, annotator_id, first_verdict, second_verdict, weight)
    SELECT domain, annotator_id, first_verdict, second_verdict, sum(weight)
    FROM cell_rows
    GROUP BY domain, annotator_id, first_verdict, second_verdict
    HAVING sum(weight) <> 0
),
agreement_rows AS (
    DELETE FROM agreement_counts RETURNING domain, annotator_id, tasks, pairs, agreeing_pairs, decided, agreed
),
agreement_sums AS (
    INSERT INTO agreement_counts (domain, annotator_id, tasks, pairs, agreeing_pairs, decided, agreed)
    SELECT domain, annotator_id, sum(tasks), sum(pairs), sum(agreeing_pairs), sum(decided), sum(agreed)
    FROM agreement_rows
    GROUP BY domain, annotator_id
    HAVING sum(tasks) <> 0 OR sum(pairs) <> 0 OR sum(agreeing_pairs) <> 0 OR sum(decided) <> 0 OR sum(agreed) <> 0
)
SELECT (SELECT count(*) FROM task_rows) + (SELECT count(*) FROM lease_rows) + (SELECT count(*) FROM verdict_rows)
       + (SELECT count(*) FROM position_rows) + (SELECT count(*) FROM cell_rows) + (SELECT count(*) FROM agreement_rows)

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

-- name: decide_budget_votes
-- The budget's decision on a batch of votes, in one statement (atomic alone: no transaction, one round trip).
-- Votes decided before (a publish that failed and is retried) keep their decision (fresh false). The others
-- (one per event_id, the last given) are counted in their (app, voter, hour) bucket, the hour being
-- received_at floored in UTC: an upsert in key order (the lock order), whose new totals give each bucket's
-- count before the batch (total - added). Each is numbered in its bucket after that count in
-- (received_at, event_id) order, and quarantined with reason $6 past $5 votes (voter_budget.decide_batch,
-- the rule this statement is tested against); each decision is remembered (the first of an event_id stays).
-- Each vote meets its bucket's new total in one sorted pass: the votes' rows and the totals' rows, unioned
-- and partitioned by bucket. (Joined CTE to CTE, they were planned as nested loops on the CTEs' estimate of
-- one row: quadratic in the batch, 87 ms for 500 votes of 500 voters, 20 ms this way; bench/voter_budget.py.)
WITH given AS (
    SELECT DISTINCT ON (g.event_id) g.event_id, g.app_id, g.voter_hash, g.received_at,
           date_trunc('hour', g.received_at, 'UTC') AS hour
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::timestamptz[])
         WITH ORDINALITY AS g(event_id, app_id, voter_hash, received_at, ord)
    ORDER BY g.event_id, g.ord DESC
),
known AS (
    SELECT v.event_id, v.quarantine_reason FROM voter_budget_votes AS v WHERE v.event_id = ANY ($1::uuid[])
),
fresh AS (
    SELECT g.* FROM given AS g WHERE NOT EXISTS (SELECT 1 FROM known AS k WHERE k.event_id = g.event_id)
),
added AS (
    SELECT app_id, voter_hash, hour, count(*)::integer AS votes FROM fresh GROUP BY app_id, voter_hash, hour
),
totals AS (
    INSERT INTO voter_budget_hours AS h (app_id, voter_hash, hour, votes)
    SELECT app_id, voter_hash, hour, votes FROM added ORDER BY app_id COLLATE "C", voter_hash, hour
    ON CONFLICT (app_id, voter_hash, hour) DO UPDATE SET votes = h.votes + excluded.votes
    RETURNING h.app_id, h.voter_hash, h.hour, h.votes
),
decided AS (
    SELECT n.event_id, n.hour, n.ordinal::integer AS ordinal,
           CASE WHEN n.ordinal > $5::integer THEN $6::text END AS quarantine_reason
    FROM (
        -- In a bucket the votes come first (received_at, event_id), its total last (NULL received_at);
        -- the count before the batch is the total less the bucket's votes.
        SELECT u.event_id, u.hour,
               max(u.total) OVER bucket - count(u.event_id) OVER bucket
               + row_number() OVER (bucket ORDER BY u.received_at, u.event_id) AS ordinal
        FROM (
            SELECT f.event_id, f.app_id, f.voter_hash, f.hour, f.received_at, NULL::integer AS total FROM fresh AS f
            UNION ALL
            SELECT NULL, t.app_id, t.voter_hash, t.hour, NULL, t.votes FROM totals AS t
        ) AS u
        WINDOW bucket AS (PARTITION BY u.app_id, u.voter_hash, u.hour)
    ) AS n
    WHERE n.event_id IS NOT NULL
),
remembered AS (
    INSERT INTO voter_budget_votes (event_id, hour, ordinal, quarantine_reason)
    SELECT event_id, hour, ordinal, quarantine_reason FROM decided
    ON CONFLICT (event_id) DO NOTHING
)
SELECT event_id, quarantine_reason, true AS fresh FROM decided
UNION ALL
SELECT event_id, quarantine_reason, false FROM known

-- name: delete_budget_hours_before
-- Forget the counts of hours that are over.
DELETE FROM voter_budget_hours WHERE hour < $1

-- name: delete_budget_decisions_before
-- Forget the decisions on votes of hours that are over.
DELETE FROM voter_budget_votes WHERE hour < $1
