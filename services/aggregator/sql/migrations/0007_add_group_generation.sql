-- A group's generation: one more each time a transaction locks the group (store.lock_groups), so a process that
-- kept a group's state from its own last batch knows whether anyone locked the group since (group_cache.py).
ALTER TABLE agg_groups ADD COLUMN generation bigint NOT NULL DEFAULT 0;
