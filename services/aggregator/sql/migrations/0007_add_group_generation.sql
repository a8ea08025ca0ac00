-- A group's generation: one more each time a transaction locks the group (store.lock_groups), so a process that
-- kept a group's state from its own last batch knows whether anyone locked the group since (group_cache.py).
-- A table of its own: an UPDATE of the agg_groups row itself would make every `insert_groups` (INSERT ... ON
-- CONFLICT DO NOTHING) of the same group wait for the locking transaction, where a row lock alone does not.
CREATE TABLE agg_group_generations (
    prompt_key text PRIMARY KEY REFERENCES agg_groups (prompt_key),
    generation bigint NOT NULL
);
