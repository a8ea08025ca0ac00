-- The lease statement scans one domain at a time in priority order (a LATERAL per domain of the
-- token): one index ordered by (domain, priority, age) serves it whatever the table statistics say,
-- where the two earlier indexes let the planner sort every open task of the domain on each lease.
DROP INDEX tasks_open_by_priority;
DROP INDEX tasks_open_domain;
CREATE INDEX tasks_open_by_domain_priority ON tasks (domain, priority DESC, created_at, task_id) WHERE status = 'open';
