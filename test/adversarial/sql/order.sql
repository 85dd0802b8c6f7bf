-- Order and statistics without the gate (issue #12, class 2; review of
-- the 0x02 layout).
--
-- The search tag follows the envelope, so a sort of stored bytes groups
-- nothing (guess.sql).  But a B-tree index on a searchable column is in
-- tag order, with equal tags in heap order: a scan of the whole index in
-- its order compares nothing, and the rows would come out with equal
-- values next to each other (their ids ascending within each run).  So an
-- index scan of an encrypted column asks the gate before it reads a row,
-- as a comparison would (src/derived.c).  And statistics on an expression
-- over an encrypted column (or on the column with others) would be
-- computed by whoever runs ANALYZE -- autovacuum, or a DBA's vacuumdb, a
-- superuser with no purpose, whom the gate lets compare -- and shown to
-- the table's owner: how many distinct values, how often each.  They are
-- refused when they are defined.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_owner LOGIN;
GRANT CREATE ON SCHEMA public TO adv_owner;

CREATE TABLE grouped (id int PRIMARY KEY, email privacy.encrypted_text(contact, searchable));
CREATE INDEX grouped_email ON grouped (email);
SET privacy.purpose = 'billing';
INSERT INTO grouped SELECT i, 'user' || (i % 5) || '@example.org' FROM generate_series(1, 50) i;
RESET privacy.purpose;
GRANT SELECT ON grouped TO adv_app;
CREATE TABLE seen (pos serial, id int);
GRANT SELECT, INSERT ON seen TO adv_app;
GRANT USAGE ON SEQUENCE seen_pos_seq TO adv_app;

-- adv_app holds no purpose: it sorts the table by the encrypted column,
-- the planner walks the index, and the order is kept
SET ROLE adv_app;
SET enable_seqscan = off;
SET enable_sort = off;
SET enable_bitmapscan = off;
DO $$
BEGIN
    INSERT INTO seen (id) SELECT id FROM grouped ORDER BY email;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
    NULL;	-- refused: nothing seen
END $$;
-- the refusal itself: an index scan of the column asks the gate before
-- it reads a row; a scan of another index does not
SELECT id FROM grouped ORDER BY email LIMIT 1;
SELECT count(*) AS through_the_primary_key FROM grouped WHERE id > 40;
RESET enable_seqscan;
RESET enable_sort;
RESET enable_bitmapscan;
RESET ROLE;
-- the five e-mail addresses (id % 5) must not come out as five runs
SELECT count(*) FILTER (WHERE grp IS DISTINCT FROM prev) <> 5 AS equal_values_not_grouped,
       count(*) AS rows_seen
  FROM (SELECT id % 5 AS grp, lag(id % 5) OVER (ORDER BY pos) AS prev FROM seen) s;
-- under a purpose allowed the category, the index serves as before
SELECT privacy.grant_purpose('adv_app', 'billing');
SET ROLE adv_app;
SET privacy.purpose = 'billing';
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS found_through_the_index FROM grouped WHERE email = 'user1@example.org';
EXPLAIN (COSTS OFF) SELECT id FROM grouped WHERE email = 'user1@example.org';
RESET enable_seqscan;
RESET enable_bitmapscan;
RESET privacy.purpose;
RESET ROLE;

-- the table's owner, with no purpose, asks for statistics on expressions
-- over the column, which a superuser's ANALYZE (or autovacuum's) would
-- compute: refused when they are defined
ALTER TABLE grouped OWNER TO adv_owner;
SET ROLE adv_owner;
CREATE TYPE adv_wrap AS (e privacy.encrypted_text);
CREATE STATISTICS grouped_tags ON (privacy_internal.encrypted_hash(email)) FROM grouped;
CREATE STATISTICS grouped_rows ON ((ROW(email)::adv_wrap)) FROM grouped;
-- statistics on the column itself, with another one: distinct counts too
CREATE STATISTICS grouped_pairs (ndistinct, mcv) ON email, id FROM grouped;
RESET ROLE;
ANALYZE grouped;
SET ROLE adv_owner;
SELECT count(*) AS expression_statistics_on_encrypted_values
  FROM pg_stats_ext_exprs
 WHERE tablename = 'grouped' AND (n_distinct IS NOT NULL OR most_common_freqs IS NOT NULL);
SELECT count(*) AS statistics_on_encrypted_columns
  FROM pg_stats_ext
 WHERE tablename = 'grouped' AND (n_distinct IS NOT NULL OR most_common_freqs IS NOT NULL);
RESET ROLE;

-- the owner, with no purpose, has the table written in the index's order:
-- CLUSTER scans the index when it does not sort (enable_sort off), and a
-- plain scan would then return equal values side by side; also a plain
-- CLUSTER, after a superuser marked the index.  Refused: CLUSTER rebuilds
-- the table's indexes, and that compares through the gate.
SET ROLE adv_owner;
SET enable_sort = off;
CLUSTER grouped USING grouped_email;
RESET ROLE;
ALTER TABLE grouped CLUSTER ON grouped_email;
SET ROLE adv_owner;
CLUSTER grouped;
CLUSTER;
RESET enable_sort;
RESET ROLE;
SELECT count(*) FILTER (WHERE grp IS DISTINCT FROM prev) <> 5 AS heap_not_in_index_order
  FROM (SELECT id % 5 AS grp, lag(id % 5) OVER (ORDER BY ctid) AS prev FROM grouped) s;

DROP TABLE grouped, seen;
SELECT privacy.revoke_purpose('adv_app', 'billing');
DROP TYPE adv_wrap;
REVOKE CREATE ON SCHEMA public FROM adv_owner;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_owner;
