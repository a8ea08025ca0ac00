-- The queue's numbers kept in step with its tables (issue 17), so `GET /v1/tasks/stats` and the /metrics
-- gauges read a few dozen rows instead of scanning every task and verdict.
--
-- Each *_counts table holds signed deltas. Statement-level triggers on `tasks` and `task_verdicts`
-- append them in the same transaction as the change (a trigger, not the store's statements, so a
-- future write path cannot forget them; one statement of many rows, e.g. a batch of requests,
-- appends one row per key). A reader sums the rows of a key; `compact_queue_counts` in queries.sql
-- folds them now and then. Rows are only ever appended, never updated in place: concurrent leases
-- and verdicts do not queue behind one hot counter row per domain.
--
-- Order: the triggers are created before the backfill, in this one transaction. CREATE TRIGGER
-- locks the tables against writes until the migration commits, so the backfill sees every write
-- committed before it and every later write goes through the triggers.

-- Room on each page for a task's next version: a lease changes no indexed column, so with room it is a
-- HOT update (no new index entries, no dead ones at the head of the lease index), ~13% less per lease
-- in an A/B. Pages written from now on; a task row is ~1.5 KB with its request inline.
ALTER TABLE tasks SET (fillfactor = 80);

-- Tasks per domain and status.
CREATE TABLE task_counts (
    domain text NOT NULL,
    status text NOT NULL,
    tasks bigint NOT NULL
);

-- Lease entries (`tasks.leases`: annotator -> expiry) per domain and expiry: +1 when an entry
-- appears, -1 when it goes (verdict, release, skip, withdrawal, revocation, or the old value of an
-- extended lease). The live leases at time T are the sum over rows expiring after T; rows that
-- expired long ago can never count again and are dropped by the compaction.
CREATE TABLE task_lease_counts (
    domain text NOT NULL,
    expires_at timestamptz NOT NULL,
    leases bigint NOT NULL
);

-- Verdicts per annotator per quarter hour (UTC): "done today" for any day start (every time zone
-- offset in use is a multiple of 15 minutes); a day start between two quarters adds the verdicts of
-- its first partial quarter, counted through the index below.
CREATE TABLE verdict_counts (
    annotator_id text NOT NULL,
    period_start timestamptz NOT NULL,
    verdicts bigint NOT NULL
);
CREATE INDEX verdict_counts_annotator_period ON verdict_counts (annotator_id, period_start);
CREATE INDEX task_verdicts_annotator_created ON task_verdicts (annotator_id, created_at);
DROP INDEX task_verdicts_annotator;

-- Compare-task verdicts that recorded the side shown left (position_bias.py), per domain.
CREATE TABLE position_counts (
    domain text NOT NULL,
    shown_left text NOT NULL,
    verdict text NOT NULL,
    verdicts bigint NOT NULL
);

-- Krippendorff's coincidence matrix (nominal alpha), per domain (annotator_id '') and per annotator
-- over the tasks it reviewed: a task with m >= 2 verdicts adds 1/(m-1) for each ordered pair of its
-- reviewers at (first, second) verdict. Kept as exact integers in units of 1/720720 (720720 is
-- divisible by every m-1 up to 16 reviewers; past that the weight is rounded down).
CREATE TABLE coincidence_counts (
    domain text NOT NULL,
    annotator_id text NOT NULL,
    first_verdict text NOT NULL,
    second_verdict text NOT NULL,
    weight bigint NOT NULL
);

-- Per domain (annotator_id '') and per annotator: tasks with two or more verdicts, reviewer pairs
-- (the annotator's own pairs, for an annotator) and how many of them agree; for an annotator also
-- its completed multi-reviewer tasks (`decided`) and how many of them went its way (`agreed`).
CREATE TABLE agreement_counts (
    domain text NOT NULL,
    annotator_id text NOT NULL,
    tasks bigint NOT NULL DEFAULT 0,
    pairs bigint NOT NULL DEFAULT 0,
    agreeing_pairs bigint NOT NULL DEFAULT 0,
    decided bigint NOT NULL DEFAULT 0,
    agreed bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION coincidence_scale() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 720720::bigint';

-- The agreement contributions of the tasks `task_ids` from their verdicts,
-- leaving out the verdicts (left_tasks[i], left_annotators[i]): rows of coincidence cells (verdicts
-- set) and of agreement counts (verdicts NULL).
CREATE FUNCTION agreement_contributions(task_ids text[], left_tasks text[], left_annotators text[])
RETURNS TABLE (domain text, annotator_id text, first_verdict text, second_verdict text,
               weight bigint, tasks bigint, pairs bigint, agreeing_pairs bigint)
LANGUAGE sql STABLE AS $$
    WITH members AS (
        SELECT v.task_id, t.domain, v.annotator_id, v.verdict, count(*) OVER (PARTITION BY v.task_id) AS reviewers
        FROM task_verdicts AS v
        JOIN tasks AS t ON t.task_id = v.task_id
        WHERE v.task_id = ANY (task_ids)
          AND NOT EXISTS (
              SELECT 1 FROM unnest(left_tasks, left_annotators) AS l (task_id, annotator_id)
              WHERE l.task_id = v.task_id AND l.annotator_id = v.annotator_id
          )
    ),
    pairs AS (
        SELECT x.task_id, x.domain, x.reviewers, x.annotator_id AS annotator, x.verdict AS first_verdict,
               y.verdict AS second_verdict
        FROM members AS x
        JOIN members AS y ON y.task_id = x.task_id AND y.annotator_id <> x.annotator_id
    )
    SELECT p.domain, s.annotator_id, p.first_verdict, p.second_verdict,
           sum(coincidence_scale() / (p.reviewers - 1))::bigint, 0::bigint, 0::bigint, 0::bigint
    FROM pairs AS p
    CROSS JOIN LATERAL (
        SELECT '' AS annotator_id
        UNION ALL
        SELECT m.annotator_id FROM members AS m WHERE m.task_id = p.task_id
    ) AS s
    GROUP BY p.domain, s.annotator_id, p.first_verdict, p.second_verdict
    UNION ALL
    SELECT p.domain, '', NULL, NULL, 0, count(DISTINCT p.task_id), count(*) / 2,
           count(*) FILTER (WHERE p.first_verdict = p.second_verdict) / 2
    FROM pairs AS p
    GROUP BY p.domain
    UNION ALL
    SELECT p.domain, p.annotator, NULL, NULL, 0, count(DISTINCT p.task_id), count(*),
           count(*) FILTER (WHERE p.first_verdict = p.second_verdict)
    FROM pairs AS p
    GROUP BY p.domain, p.annotator
$$;

-- For each reviewer of a completed task with two or more verdicts: one decided task, agreed when its
-- verdict is the combined one; each task counted with its sign (+1 completed now, -1 no longer).
CREATE FUNCTION result_agreement(task_ids text[], domains text[], combined text[], signs int[])
RETURNS TABLE (domain text, annotator_id text, decided bigint, agreed bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.domain, v.annotator_id, sum(c.sign)::bigint,
           coalesce(sum(c.sign) FILTER (WHERE v.verdict = c.combined), 0)::bigint
    FROM unnest(task_ids, domains, combined, signs) AS c (task_id, domain, combined, sign)
    JOIN task_verdicts AS v ON v.task_id = c.task_id
    WHERE (SELECT count(*) FROM task_verdicts AS w WHERE w.task_id = c.task_id) >= 2
    GROUP BY c.domain, v.annotator_id
$$;

CREATE FUNCTION count_inserted_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A batch of re-requests only updates: its INSERT statement trigger sees no row.
    IF NOT EXISTS (SELECT 1 FROM new_tasks) THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_counts (domain, status, tasks)
    SELECT n.domain, n.status, count(*) FROM new_tasks AS n GROUP BY n.domain, n.status;
    INSERT INTO task_lease_counts (domain, expires_at, leases)
    SELECT n.domain, l.value::timestamptz, count(*)
    FROM new_tasks AS n CROSS JOIN LATERAL jsonb_each_text(n.leases) AS l
    GROUP BY n.domain, l.value::timestamptz;
    RETURN NULL;
END
$$;

-- Row by row: the hot path (a lease, a verdict) updates one task, and a row trigger with a WHEN
-- clause costs less there than capturing transition tables; updates that change neither status nor
-- leases (none today) skip it altogether.
CREATE FUNCTION count_updated_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One statement for both counts (each statement a trigger runs has its own start-up cost).
    WITH states AS (
        INSERT INTO task_counts (domain, status, tasks)
        SELECT v.domain, v.status, v.tasks
        FROM (VALUES (OLD.domain, OLD.status, -1), (NEW.domain, NEW.status, 1)) AS v (domain, status, tasks)
        WHERE OLD.status <> NEW.status OR OLD.domain <> NEW.domain
    )
    -- An entry unchanged by the update cancels out: same domain, same expiry.
    INSERT INTO task_lease_counts (domain, expires_at, leases)
    SELECT d.domain, d.expires_at, sum(d.sign)
    FROM (
        SELECT OLD.domain AS domain, l.value::timestamptz AS expires_at, -1 AS sign FROM jsonb_each_text(OLD.leases) AS l
        UNION ALL
        SELECT NEW.domain, l.value::timestamptz, 1 FROM jsonb_each_text(NEW.leases) AS l
    ) AS d
    GROUP BY d.domain, d.expires_at
    HAVING sum(d.sign) <> 0;
    IF (OLD.status = 'completed') <> (NEW.status = 'completed')
       AND greatest(cardinality(OLD.reviewed_by), cardinality(NEW.reviewed_by)) >= 2 THEN
        INSERT INTO agreement_counts (domain, annotator_id, decided, agreed)
        SELECT r.domain, r.annotator_id, r.decided, r.agreed
        FROM result_agreement(
            ARRAY[OLD.task_id, NEW.task_id], ARRAY[OLD.domain, NEW.domain],
            ARRAY[OLD.result ->> 'verdict', NEW.result ->> 'verdict'],
            ARRAY[CASE WHEN OLD.status = 'completed' THEN -1 ELSE 0 END, CASE WHEN NEW.status = 'completed' THEN 1 ELSE 0 END]
        ) AS r
        WHERE r.decided <> 0 OR r.agreed <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_deleted_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (domain, status, tasks)
    SELECT o.domain, o.status, -count(*) FROM old_tasks AS o GROUP BY o.domain, o.status;
    INSERT INTO task_lease_counts (domain, expires_at, leases)
    SELECT o.domain, l.value::timestamptz, -count(*)
    FROM old_tasks AS o CROSS JOIN LATERAL jsonb_each_text(o.leases) AS l
    GROUP BY o.domain, l.value::timestamptz;
    RETURN NULL;
END
$$;

-- A verdict's task row is updated in the same transaction before its verdict is inserted (the lock
-- that orders the verdicts of one task), so the verdicts read here are all the task has.
CREATE FUNCTION count_inserted_verdicts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched text[];
    left_tasks text[];
    left_annotators text[];
BEGIN
    -- One statement in the common case (a verdict on a task nobody else judged): both counts, and the
    -- tasks that have another verdict, whose agreement changes. A statement whose task update lost its
    -- race inserts no verdict and stops here.
    WITH counted AS (
        INSERT INTO verdict_counts (annotator_id, period_start, verdicts)
        SELECT n.annotator_id, date_bin('15 minutes', n.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*)
        FROM new_verdicts AS n
        GROUP BY 1, 2
    ),
    positioned AS (
        INSERT INTO position_counts (domain, shown_left, verdict, verdicts)
        SELECT t.domain, n.shown_left, n.verdict, count(*)
        FROM new_verdicts AS n JOIN tasks AS t ON t.task_id = n.task_id
        WHERE n.shown_left IS NOT NULL AND t.kind = 'compare'
        GROUP BY t.domain, n.shown_left, n.verdict
    )
    SELECT array_agg(DISTINCT n.task_id), array_agg(n.task_id), array_agg(n.annotator_id)
    INTO touched, left_tasks, left_annotators
    FROM new_verdicts AS n
    WHERE EXISTS (
        SELECT 1 FROM task_verdicts AS v WHERE v.task_id = n.task_id AND v.annotator_id <> n.annotator_id
    );
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    -- The tasks' contributions now, minus what they contributed before these verdicts.
    WITH delta AS (
        SELECT c.domain, c.annotator_id, c.first_verdict, c.second_verdict, sum(c.sign * c.weight) AS weight,
               sum(c.sign * c.tasks) AS tasks, sum(c.sign * c.pairs) AS pairs,
               sum(c.sign * c.agreeing_pairs) AS agreeing_pairs
        FROM (
            SELECT 1 AS sign, a.* FROM agreement_contributions(touched, '{}', '{}') AS a
            UNION ALL
            SELECT -1, b.* FROM agreement_contributions(touched, left_tasks, left_annotators) AS b
        ) AS c
        GROUP BY c.domain, c.annotator_id, c.first_verdict, c.second_verdict
    ),
    cells AS (
        INSERT INTO coincidence_counts (domain, annotator_id, first_verdict, second_verdict, weight)
        SELECT d.domain, d.annotator_id, d.first_verdict, d.second_verdict, d.weight
        FROM delta AS d
        WHERE d.first_verdict IS NOT NULL AND d.weight <> 0
    )
    INSERT INTO agreement_counts (domain, annotator_id, tasks, pairs, agreeing_pairs)
    SELECT d.domain, d.annotator_id, d.tasks, d.pairs, d.agreeing_pairs
    FROM delta AS d
    WHERE d.first_verdict IS NULL AND (d.tasks <> 0 OR d.pairs <> 0 OR d.agreeing_pairs <> 0);
    RETURN NULL;
END
$$;
-- The agreement statement above is costly to plan and cheap to run on a handful of verdicts: one
-- generic plan serves every call (custom plans would plan it again on each verdict).
ALTER FUNCTION count_inserted_verdicts() SET plan_cache_mode = force_generic_plan;

-- Every count from the tables themselves: the backfill below, after a TRUNCATE, and after a verdict
-- is deleted (no code path deletes verdicts; a hand-made DELETE must not leave the counts wrong).
CREATE FUNCTION rebuild_queue_counts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    INSERT INTO task_counts (domain, status, tasks) SELECT domain, status, count(*) FROM tasks GROUP BY domain, status;
    DELETE FROM task_lease_counts;
    INSERT INTO task_lease_counts (domain, expires_at, leases)
    SELECT t.domain, l.value::timestamptz, count(*)
    FROM tasks AS t CROSS JOIN LATERAL jsonb_each_text(t.leases) AS l
    GROUP BY t.domain, l.value::timestamptz;
    DELETE FROM verdict_counts;
    INSERT INTO verdict_counts (annotator_id, period_start, verdicts)
    SELECT annotator_id, date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*)
    FROM task_verdicts
    GROUP BY 1, 2;
    DELETE FROM position_counts;
    INSERT INTO position_counts (domain, shown_left, verdict, verdicts)
    SELECT t.domain, v.shown_left, v.verdict, count(*)
    FROM task_verdicts AS v JOIN tasks AS t ON t.task_id = v.task_id
    WHERE v.shown_left IS NOT NULL AND t.kind = 'compare'
    GROUP BY t.domain, v.shown_left, v.verdict;
    DELETE FROM coincidence_counts;
    DELETE FROM agreement_counts;
    WITH whole AS (
        SELECT a.*
        FROM agreement_contributions(
            ARRAY(SELECT v.task_id FROM task_verdicts AS v GROUP BY v.task_id HAVING count(*) >= 2), '{}', '{}'
        ) AS a
    ),
    cells AS (
        INSERT INTO coincidence_counts (domain, annotator_id, first_verdict, second_verdict, weight)
        SELECT w.domain, w.annotator_id, w.first_verdict, w.second_verdict, w.weight
        FROM whole AS w WHERE w.first_verdict IS NOT NULL
    )
    INSERT INTO agreement_counts (domain, annotator_id, tasks, pairs, agreeing_pairs)
    SELECT w.domain, w.annotator_id, w.tasks, w.pairs, w.agreeing_pairs FROM whole AS w WHERE w.first_verdict IS NULL;
    INSERT INTO agreement_counts (domain, annotator_id, decided, agreed)
    SELECT r.domain, r.annotator_id, r.decided, r.agreed
    FROM (
        SELECT array_agg(t.task_id) AS task_ids, array_agg(t.domain) AS domains,
               array_agg(t.result ->> 'verdict') AS combined, array_agg(1) AS signs
        FROM tasks AS t WHERE t.status = 'completed' AND cardinality(t.reviewed_by) >= 2
    ) AS c
    CROSS JOIN LATERAL result_agreement(c.task_ids, c.domains, c.combined, c.signs) AS r;
END
$$;

CREATE FUNCTION rebuild_queue_counts_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rebuild_queue_counts();
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_tasks();
CREATE TRIGGER tasks_counted_on_update AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.leases IS DISTINCT FROM NEW.leases OR OLD.domain IS DISTINCT FROM NEW.domain)
    EXECUTE FUNCTION count_updated_task();
CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks FOR EACH STATEMENT EXECUTE FUNCTION count_deleted_tasks();
CREATE TRIGGER tasks_counted_on_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION rebuild_queue_counts_trigger();
CREATE TRIGGER task_verdicts_counted_on_insert AFTER INSERT ON task_verdicts
    REFERENCING NEW TABLE AS new_verdicts FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_verdicts();
CREATE TRIGGER task_verdicts_counted_on_delete AFTER DELETE ON task_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION rebuild_queue_counts_trigger();
CREATE TRIGGER task_verdicts_counted_on_truncate AFTER TRUNCATE ON task_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION rebuild_queue_counts_trigger();

SELECT rebuild_queue_counts();
