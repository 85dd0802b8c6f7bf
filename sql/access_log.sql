-- Access log: one event per statement per protected table, the subjects
-- whose values a statement opened, tamper evidence, privileges.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
CREATE ROLE al_app LOGIN;
CREATE ROLE al_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('al_app', 'billing');

CREATE TABLE al_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                           iban privacy.encrypted_text(financial), score integer);
SELECT privacy.classify('al_customers', 'name', 'contact');
SELECT privacy.protect_table('al_customers', 'id');
CREATE TABLE al_plain (id integer, note text);
GRANT SELECT, INSERT, UPDATE, DELETE ON al_customers, al_plain TO al_app;
CREATE FUNCTION al_email(bigint) RETURNS text LANGUAGE sql STABLE
    AS 'SELECT email::text FROM al_customers WHERE id = $1';

-- what the application does
SET ROLE al_app;
SET privacy.purpose = 'billing';
INSERT INTO al_customers VALUES (1, 'Ana', 'ana@example.org', 'DE001', 1),
                                (2, 'Ben', 'ben@example.org', 'DE002', 2),
                                (3, 'Cem', 'cem@example.org', 'DE003', 0);
SELECT id, email FROM al_customers WHERE id = 1;
SELECT count(*) FROM al_customers;
UPDATE al_customers SET name = 'Benjamin' WHERE id = 2;
DELETE FROM al_customers WHERE id = 3;
MERGE INTO al_customers c USING (VALUES (2::bigint, 5)) v(id, score) ON c.id = v.id
    WHEN MATCHED THEN UPDATE SET score = v.score;
COPY al_customers (id, iban) TO stdout;
COPY (SELECT email FROM al_customers WHERE id = 2) TO stdout;
SELECT al_email(1);
SELECT * FROM al_plain;
-- a rolled-back read, a read-only transaction, a failing statement
BEGIN;
SELECT email FROM al_customers WHERE id = 2;
ROLLBACK;
BEGIN READ ONLY;
SELECT name FROM al_customers WHERE id = 1;
COMMIT;
SELECT 1 / (score - 5) FROM al_customers WHERE id = 2;
-- a cursor: its rows are opened when fetched
BEGIN;
DECLARE c CURSOR FOR SELECT iban FROM al_customers ORDER BY id;
FETCH 1 FROM c;
CLOSE c;
COMMIT;
-- EXPLAIN without ANALYZE reads nothing
EXPLAIN (COSTS OFF) SELECT email FROM al_customers WHERE id = 1;
RESET privacy.purpose;
RESET ROLE;

SELECT privacy.flush_access_log();
SELECT seq, command, relation, columns, categories, rows, level, outcome, purpose,
       acting_role, session_role = session_user AS session_role_is_me,
       application LIKE 'pg_regress%' AS application_named, client_addr, backend_pid = pg_backend_pid() AS my_pid,
       query_id <> 0 AS has_query_id, at <= now() AS at_ok
  FROM privacy.access_log ORDER BY seq;
-- whose values each statement opened: the subject's keyed hash, never the identifier
SELECT s.seq, s.event, l.command, s.category, s.opened,
       (SELECT x.id FROM (VALUES (1), (2), (3)) x(id) WHERE privacy.subject_hash(x.id::text) = s.subject_hash) AS subject
  FROM privacy.access_log_subjects s JOIN privacy.access_log l ON l.seq = s.event ORDER BY s.seq;
SELECT status, seq, checked FROM privacy.verify_access_log();

-- The extension's own work is not user access: a purge and an erasure log nothing
SELECT max(seq) AS before FROM (SELECT seq FROM privacy.access_log UNION ALL SELECT seq FROM privacy.access_log_subjects) s \gset
SELECT privacy.erase_subject('2', 'request 7') IS NOT NULL AS erased;
SELECT privacy.flush_access_log();
SELECT count(*) AS new_entries FROM privacy.access_log WHERE seq > :before;

-- Nobody but the compliance role reads the log, and nobody writes it
SET ROLE al_app;
SELECT count(*) FROM privacy.access_log;
INSERT INTO privacy.access_log_anchors VALUES (1, '\x00', 0, now(), '\x00');
SELECT privacy.verify_access_log();
SET privacy.access_log = off;
SET privacy.access_log_strict = off;
RESET ROLE;
SET ROLE al_officer;
SELECT count(*) > 0 AS officer_reads FROM privacy.access_log;
SELECT status FROM privacy.verify_access_log();
SELECT verified_by = 'al_officer' AS recorded, status FROM privacy.access_log_verifications ORDER BY verified_at DESC LIMIT 1;
DELETE FROM privacy.access_log;
RESET ROLE;

-- Tampering, even by a superuser, is found
UPDATE privacy.access_log SET rows = rows + 1 WHERE seq = 2;
SELECT status, seq, detail FROM privacy.verify_access_log();
UPDATE privacy.access_log SET rows = rows - 1 WHERE seq = 2;
SELECT status FROM privacy.verify_access_log();
UPDATE privacy.access_log_subjects SET opened = 9 WHERE seq = (SELECT min(seq) FROM privacy.access_log_subjects);
SELECT status, seq = (SELECT min(seq) FROM privacy.access_log_subjects) AS at_that_entry FROM privacy.verify_access_log();
UPDATE privacy.access_log_subjects SET opened = 1 WHERE seq = (SELECT min(seq) FROM privacy.access_log_subjects);
CREATE TEMP TABLE al_saved AS SELECT * FROM privacy.access_log WHERE seq = 5;
DELETE FROM privacy.access_log WHERE seq = 5;
SELECT status, seq, detail FROM privacy.verify_access_log();
INSERT INTO privacy.access_log SELECT * FROM al_saved;
SELECT status FROM privacy.verify_access_log();
-- the newest entries cut off: the writer's head still knows them
CREATE TEMP TABLE al_tail AS SELECT * FROM privacy.access_log WHERE seq = (SELECT max(seq) FROM privacy.access_log);
DELETE FROM privacy.access_log WHERE seq = (SELECT max(seq) FROM privacy.access_log);
SELECT status, seq = (SELECT seq FROM al_tail) AS at_the_cut FROM privacy.verify_access_log();
INSERT INTO privacy.access_log SELECT * FROM al_tail;
SELECT status FROM privacy.verify_access_log();
-- an entry moved: its seq no longer matches its MAC
UPDATE privacy.access_log SET seq = 1000 WHERE seq = 1;
SELECT status, seq FROM privacy.verify_access_log();
UPDATE privacy.access_log SET seq = 1 WHERE seq = 1000;

-- Retention: entries past it are removed, and the log still verifies
SELECT count(*) AS entries FROM (SELECT seq FROM privacy.access_log UNION ALL SELECT seq FROM privacy.access_log_subjects) s;
UPDATE privacy.access_log SET at = at - interval '2 years' WHERE seq <= 4;
-- (changing "at" breaks the chain; what retention removes no longer matters)
SELECT privacy.trim_access_log() AS removed;
SELECT min(seq) AS first_left FROM privacy.access_log;
SELECT first_seq, removed FROM privacy.access_log_anchors;
SELECT status FROM privacy.verify_access_log();
-- a forged anchor does not verify
UPDATE privacy.access_log_anchors SET first_seq = first_seq + 1;
SELECT status, detail FROM privacy.verify_access_log();
UPDATE privacy.access_log_anchors SET first_seq = first_seq - 1;
SELECT status FROM privacy.verify_access_log();

DROP TABLE al_customers, al_plain;
DROP FUNCTION al_email(bigint);
DROP EXTENSION privacy;
DROP ROLE al_app, al_officer;
