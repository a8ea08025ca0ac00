-- Dead letters a redrive sent back to their origin topic: each at most once. A row is written (the
-- claim) before the message is published and marked sent once the broker acknowledged it; a row
-- without sent_at was claimed by a redrive that could not confirm the publish (a crash, the broker
-- away), and no later redrive sends it again.
CREATE TABLE redriven_dead_letters (
    dead_letter_id uuid PRIMARY KEY,
    source_topic text NOT NULL,
    error_code text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
