-- Live pairs (a retracted pair's row holds NULL) with one column per field an export reads: the columns of
-- export_columns.PAIR_COLUMNS, in its order, so PostgreSQL takes the JSON apart and the aggregator parses none
-- (select_export_pairs, select_export_rewrites). jsonb_to_record reads each stored pair once (an operator per
-- field would detoast it once per field). A view is expanded into the query that reads it: the same plan.
CREATE VIEW agg_export_pairs AS
SELECT
  j.pair_id, j.prompt_key, j.app_id, j.method, j.domain, j.occurred_at, j.updated_at, j.confidence,
  ARRAY(SELECT m.value->>'role' FROM jsonb_array_elements(j.prompt) WITH ORDINALITY m ORDER BY m.ordinality)
    AS prompt_roles,
  ARRAY(SELECT m.value->>'content' FROM jsonb_array_elements(j.prompt) WITH ORDINALITY m ORDER BY m.ordinality)
    AS prompt_contents,
  j.chosen->>'interaction_id' AS chosen_interaction_id, j.chosen->>'content' AS chosen_content,
  j.chosen->>'model' AS chosen_model, j.chosen->>'model_version' AS chosen_model_version,
  j.rejected->>'interaction_id' AS rejected_interaction_id, j.rejected->>'content' AS rejected_content,
  j.rejected->>'model' AS rejected_model, j.rejected->>'model_version' AS rejected_model_version,
  (j.evidence->>'chosen_up')::int8 AS chosen_up, (j.evidence->>'chosen_down')::int8 AS chosen_down,
  (j.evidence->>'rejected_up')::int8 AS rejected_up, (j.evidence->>'rejected_down')::int8 AS rejected_down,
  (j.evidence->>'comparisons_for')::int8 AS comparisons_for,
  (j.evidence->>'comparisons_against')::int8 AS comparisons_against,
  (j.evidence->>'edits')::int8 AS edits, (j.evidence->>'experts')::int8 AS experts
FROM agg_pairs p
CROSS JOIN LATERAL jsonb_to_record(p.pair) AS j(
  pair_id text, prompt_key text, app_id text, method text, domain text, occurred_at text, updated_at text,
  confidence float8, prompt jsonb, chosen jsonb, rejected jsonb, evidence jsonb
)
WHERE p.pair IS NOT NULL;
