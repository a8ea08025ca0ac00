-- Which of the task's own sides (A or B) the annotator's screen showed on the left, as the UI sent it
-- with the verdict: position bias (choosing the left answer more often than chance) can then be measured.
-- NULL for verdicts from clients that do not say (curl, scripts, verdicts recorded before this column).
ALTER TABLE task_verdicts ADD COLUMN shown_left text CHECK (shown_left IN ('A', 'B'));
