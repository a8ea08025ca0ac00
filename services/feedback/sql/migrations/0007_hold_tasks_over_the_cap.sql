-- The cap on offered tasks (issue 11, services/feedback/task_cap.py): a request that arrives while its
-- domain already offers `FEEDBACK_MAX_OPEN_TASKS_PER_DOMAIN` open tasks is kept as `held` (not leased,
-- not counted as queued) until a withdrawal or a closed task makes room. The aggregator keeps the same
-- cap, but a new request and the tombstone of the task it displaced travel on different partitions, so
-- the request may come first.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('open', 'held', 'completed', 'contested', 'withdrawn'));

-- The held tasks of a domain in the order they are offered (the aggregator's rank: priority, then the
-- greater task_id), and the domains that hold any.
CREATE INDEX tasks_held_by_domain_priority ON tasks (domain, priority DESC, task_id DESC) WHERE status = 'held';
