-- Vote quality (ARCHITECTURE.md "Vote quality"; services/aggregator/vote_quality.py and voters.py say the rules).

-- Each stored latest vote: its voter (end users: the user_ref as the app sent it; NULL for experts), whether it
-- counts now (false while its voter is flagged), and whether the outlier test has tested its slot (once per slot).
ALTER TABLE agg_votes ADD COLUMN app_id text;
ALTER TABLE agg_votes ADD COLUMN user_ref text;
ALTER TABLE agg_votes ADD COLUMN is_counted boolean NOT NULL DEFAULT true;
ALTER TABLE agg_votes ADD COLUMN is_tested boolean NOT NULL DEFAULT false;
UPDATE agg_votes SET app_id = vote->>'app_id',
    user_ref = CASE WHEN vote->>'source' = 'end_user' THEN vote->>'user_ref' END;
-- The groups a voter touched (to decide them again when the voter is flagged or cleared).
CREATE INDEX agg_votes_voter ON agg_votes (app_id, user_ref, is_counted) WHERE user_ref IS NOT NULL;

-- One row per end-user voter of an app: the outlier test's running tally (voters.VoterTally), the flag, and
-- whether the groups the voter touched still have to be decided again (after a flag or a clear).
CREATE TABLE agg_voters (
    app_id text NOT NULL,
    user_ref text NOT NULL,
    votes_seen integer NOT NULL DEFAULT 0,
    votes integer NOT NULL DEFAULT 0,
    disagreements integer NOT NULL DEFAULT 0,
    log_e_any double precision NOT NULL DEFAULT 0,
    log_e_up double precision NOT NULL DEFAULT 0,
    log_e_down double precision NOT NULL DEFAULT 0,
    peak_log_e double precision NOT NULL DEFAULT 0,
    flagged boolean NOT NULL DEFAULT false,
    flagged_at timestamptz,
    flagged_after_votes integer,
    cleared_at timestamptz,
    redecide_pending boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_ref)
);
CREATE INDEX agg_voters_flagged ON agg_voters (app_id, user_ref) WHERE flagged;
CREATE INDEX agg_voters_redecide_pending ON agg_voters (updated_at) WHERE redecide_pending;

-- feedback-stats: effective votes (what the pair math counts) beside the raw events, and the quarantined ones.
-- Windows open when this runs count effective votes from then on (a message never shows a count below 0).
ALTER TABLE agg_stats ADD COLUMN effective_thumbs_up integer NOT NULL DEFAULT 0;
ALTER TABLE agg_stats ADD COLUMN effective_thumbs_down integer NOT NULL DEFAULT 0;
ALTER TABLE agg_stats ADD COLUMN effective_ratings integer NOT NULL DEFAULT 0;
ALTER TABLE agg_stats ADD COLUMN effective_rating_sum bigint NOT NULL DEFAULT 0;
ALTER TABLE agg_stats ADD COLUMN quarantined_votes integer NOT NULL DEFAULT 0;
