-- The per-voter hourly budget (services/feedback/voter_budget.py): how many votes each voter sent per hour
-- (by our clock), and the decision taken on each vote, so a retried publish stamps the same mark. The voter
-- is kept as a hash of (app_id, user_ref): the budget never needs the reference itself. Old hours are pruned.
CREATE TABLE voter_budget_hours (
    app_id text NOT NULL,
    voter_hash bytea NOT NULL,
    hour timestamptz NOT NULL,
    votes integer NOT NULL,
    PRIMARY KEY (app_id, voter_hash, hour)
);
CREATE INDEX voter_budget_hours_hour ON voter_budget_hours (hour);

CREATE TABLE voter_budget_votes (
    event_id uuid PRIMARY KEY,
    hour timestamptz NOT NULL,
    ordinal integer NOT NULL,
    quarantine_reason text
);
CREATE INDEX voter_budget_votes_hour ON voter_budget_votes (hour);
