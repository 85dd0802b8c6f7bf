-- Attacks on the two C paths that bypass SQL (issue #19's trail reader,
-- issue #14's direct key write): what a query would have enforced must
-- still be enforced, or the path must stop with a clear error.
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE ROLE dp_app LOGIN;
CREATE ROLE dp_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE dp_partial LOGIN;
SELECT privacy.grant_purpose('dp_app', 'billing');
CREATE TABLE dp_customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('dp_customers', 'id');
GRANT SELECT, INSERT ON dp_customers TO dp_app;
SET ROLE dp_app;
SET privacy.purpose = 'billing';
INSERT INTO dp_customers VALUES (1, 'a@example.org'), (2, 'b@example.org');
SELECT email FROM dp_customers WHERE id = 1;
SELECT email FROM dp_customers WHERE id = 2;
RESET ROLE;
RESET privacy.purpose;
SELECT privacy.flush_access_log();

------------------------------------------------------------------------------
-- 1. The trail reader (privacy_internal.access_log_subject_trail)
------------------------------------------------------------------------------
SELECT count(*) AS officer_sees FROM privacy.access_trail('1');

-- an application role is refused the function; with EXECUTE on the internal
-- reader and SELECT on only the columns it reads, it is refused the tables
-- (the reader checks the table grant, as strict as or stricter than a query)
SELECT privacy.subject_hash('1') AS h1 \gset
SET ROLE dp_app;
SELECT count(*) FROM privacy.access_trail('1');
SELECT count(*) FROM privacy_internal.access_log_subject_trail(:'h1'::bytea);
SELECT privacy_internal.subject_access_entries(:'h1'::bytea, NULL, NULL);
RESET ROLE;
GRANT USAGE ON SCHEMA privacy, privacy_internal TO dp_partial;
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_subject_trail(bytea),
    privacy_internal.subject_access_entries(bytea, integer, timestamptz) TO dp_partial;
GRANT SELECT (seq, subject_key) ON privacy.access_log_trail TO dp_partial;
GRANT SELECT (first_seq, last_seq, entries, offsets) ON privacy.access_log_batches TO dp_partial;
SET ROLE dp_partial;
SELECT count(*) FROM privacy_internal.access_log_subject_trail(:'h1'::bytea);
SELECT privacy_internal.subject_access_entries(:'h1'::bytea, NULL, NULL);
RESET ROLE;

-- a grant revoked mid-session takes effect on the next call
SET SESSION AUTHORIZATION dp_officer;
SELECT count(*) > 0 AS before_revoke FROM privacy.access_trail('1');
RESET SESSION AUTHORIZATION;
REVOKE privacy_officer FROM dp_officer;
SET SESSION AUTHORIZATION dp_officer;
SELECT count(*) FROM privacy.access_trail('1');
RESET SESSION AUTHORIZATION;

-- NULL and wrong-length hashes: nothing, no error
SELECT count(*) AS null_hash FROM privacy_internal.access_log_subject_trail(NULL);
SELECT count(*) AS short_hash FROM privacy_internal.access_log_subject_trail('\x0102'::bytea);
SELECT privacy_internal.subject_access_entries(NULL, NULL, NULL) AS null_entries;
SELECT count(*) AS null_subject FROM privacy.access_trail(NULL);

-- a trail row forged to point subject 1 at subject 2's entry: the reader
-- checks the full hash in the entry, so subject 1 is not shown it
BEGIN;
INSERT INTO privacy.access_log_trail
SELECT privacy_internal.access_log_subject_key(privacy.subject_hash('1')), s.seq
  FROM privacy.access_log_subjects s WHERE s.subject_hash = privacy.subject_hash('2');
SELECT count(*) AS forged_trail_rows FROM privacy.access_log_trail
 WHERE subject_key = privacy_internal.access_log_subject_key(privacy.subject_hash('1'));
SELECT count(*) AS subject_1_entries FROM privacy.access_trail('1');
ROLLBACK;

-- the reader's indexes replaced by a DBA with ones that would silently
-- return nothing (partial, on another column, on another table) or an
-- invalid one (a failed CREATE INDEX CONCURRENTLY): a clear error
BEGIN;
DROP INDEX privacy.access_log_trail_subject;
CREATE INDEX access_log_trail_subject ON privacy.access_log_trail (subject_key) WHERE seq < 0;
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
BEGIN;
DROP INDEX privacy.access_log_trail_subject;
CREATE INDEX access_log_trail_subject ON privacy.access_log_trail (seq);
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
BEGIN;
DROP INDEX privacy.access_log_trail_subject;
CREATE INDEX access_log_trail_subject ON privacy.access_log_batches (last_seq);
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
BEGIN;
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'privacy.access_log_trail_subject'::regclass;
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
BEGIN;
DROP INDEX privacy.access_log_trail_subject;
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
-- a column of another type than the reader reads: a clear error
BEGIN;
ALTER TABLE privacy.access_log_trail ALTER COLUMN seq TYPE numeric;
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;
SELECT count(*) AS intact_again FROM privacy.access_trail('1');

-- objects named like the log's tables and index elsewhere, first in the
-- search path (a schema, pg_temp): the reader reads the extension's own
CREATE SCHEMA dp_evil;
CREATE TABLE dp_evil.access_log_trail (subject_key bigint, seq bigint);
CREATE INDEX access_log_trail_subject ON dp_evil.access_log_trail (subject_key);
CREATE TEMP TABLE access_log_batches (first_seq bigint PRIMARY KEY, last_seq bigint, entries bytea, offsets bytea);
SET search_path = pg_temp, dp_evil, public;
SELECT count(*) AS own_tables_read FROM privacy.access_trail('1');
RESET search_path;
DROP SCHEMA dp_evil CASCADE;
DROP TABLE pg_temp.access_log_batches;

-- a tampered batch row fails loudly (as verify_access_log reports it), it
-- is not read as other entries
BEGIN;
UPDATE privacy.access_log_batches SET offsets = '\x00000000'::bytea;
SELECT count(*) FROM privacy.access_trail('1');
ROLLBACK;

------------------------------------------------------------------------------
-- 2. The direct write of subject keys into privacy.data_keys
------------------------------------------------------------------------------
-- a CHECK constraint an administrator adds (NOT VALID: the existing keys
-- pass or not) applies to new keys, as it would to the INSERT
ALTER TABLE privacy.data_keys ADD CONSTRAINT dp_frozen CHECK (scope <> 'subject') NOT VALID;
SET ROLE dp_app;
SET privacy.purpose = 'billing';
INSERT INTO dp_customers VALUES (3, 'c@example.org');
SELECT count(*) AS no_row FROM dp_customers WHERE id = 3;
RESET ROLE;
RESET privacy.purpose;
ALTER TABLE privacy.data_keys DROP CONSTRAINT dp_frozen;

-- an expression index the table's owner adds: the direct write fills it
-- (the value is found through it), its function running as on the INSERT
-- path, as the extension's owner in a security-restricted operation
CREATE FUNCTION public.dp_index_fn(b bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF current_setting('dp.probe', true) = 'on' THEN
        RAISE NOTICE 'index function as the extension owner: %',
            current_user = (SELECT extowner::regrole::name FROM pg_extension WHERE extname = 'privacy');
        BEGIN
            PERFORM set_config('role', 'none', true);
            RAISE NOTICE 'index function not restricted';
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'index function restricted: %', SQLERRM;
        END;
    END IF;
    RETURN b;
END $$;
CREATE INDEX dp_expr ON privacy.data_keys (public.dp_index_fn(subject_hash));
SET dp.probe = 'on';
SET ROLE dp_app;
SET privacy.purpose = 'billing';
INSERT INTO dp_customers VALUES (6, 'f@example.org');
RESET ROLE;
RESET privacy.purpose;
RESET dp.probe;
SET enable_seqscan = off;
SELECT count(*) AS found_through_it FROM privacy.data_keys
 WHERE public.dp_index_fn(subject_hash) = privacy.subject_hash('6');
RESET enable_seqscan;

-- a column the DBA adds (another shape): the INSERT writes the keys, its
-- default applied; the index function runs there as it does above
ALTER TABLE privacy.data_keys ADD COLUMN dp_note text DEFAULT 'added';
SET dp.probe = 'on';
SET ROLE dp_app;
SET privacy.purpose = 'billing';
INSERT INTO dp_customers VALUES (5, 'e@example.org');
RESET ROLE;
RESET privacy.purpose;
RESET dp.probe;
DROP INDEX privacy.dp_expr;
DROP FUNCTION public.dp_index_fn(bytea);
SELECT state, dp_note FROM privacy.data_keys WHERE subject_hash = privacy.subject_hash('5');
ALTER TABLE privacy.data_keys DROP COLUMN dp_note;

-- only wrapped keys are stored, by the direct write (subjects 1, 2, 6) and
-- the INSERT (5) alike: nonce, key and tag, 24 + 32 + 16 bytes
SELECT count(*) AS subject_keys, count(*) FILTER (WHERE length(wrapped_key) = 72) AS wrapped,
       count(DISTINCT wrapped_key) AS distinct_keys
  FROM privacy.data_keys WHERE scope = 'subject';

-- (the writer's queue emptied before the extension goes)
SELECT privacy.flush_access_log() AS flushed;
DROP TABLE dp_customers;
DROP EXTENSION privacy CASCADE;
DROP OWNED BY dp_partial;
DROP ROLE dp_app, dp_officer, dp_partial;
