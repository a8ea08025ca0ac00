-- A task the aggregator no longer needs (users settled the pair before any expert did) is
-- withdrawn: it is no longer leased, and a later re-request opens it again.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('open', 'completed', 'contested', 'withdrawn'));
