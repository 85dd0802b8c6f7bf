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
-- (entries 1 to 4 so far: the flush ends the writer's batch here)
RESET ROLE;
SELECT privacy.flush_access_log();
SET ROLE al_app;
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
DELETE FROM privacy.access_log_batches;
SELECT count(*) AS head_rows FROM privacy.access_log_head;
DELETE FROM privacy.access_log_head;
RESET ROLE;
-- The extension reads its tables as its owner, a superuser, with the
-- search_path pinned: an operator the caller planted earlier in the path
-- never runs there.
CREATE SCHEMA al_planted AUTHORIZATION al_officer;
SET ROLE al_officer;
CREATE TABLE al_planted.calls (who name);
CREATE FUNCTION al_planted.ge(bigint, bigint) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO al_planted.calls VALUES (current_user) RETURNING $1 OPERATOR(pg_catalog.>=) $2 $$;
CREATE OPERATOR al_planted.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = al_planted.ge);
SET search_path = al_planted, pg_catalog;
SELECT status FROM privacy.verify_access_log();
RESET search_path;
SELECT count(*) AS planted_operator_calls FROM al_planted.calls;
RESET ROLE;
DROP SCHEMA al_planted CASCADE;

-- The entries are stored packed in privacy.access_log_batches, each as its
-- seq, its canonical bytes and its MAC; the views unpack them.
SELECT count(*) > 0 AS batches, sum(last_seq - first_seq + 1) AS entries,
       bool_and(cardinality(subjects) <= last_seq - first_seq + 1) AS subject_keys
  FROM privacy.access_log_batches;
-- finding a subject's entries through privacy.access_log_trail
SELECT seq, event, category, opened FROM privacy_internal.access_log_for_subject(privacy.subject_hash('1')) ORDER BY seq;
SELECT seq, command, relation FROM privacy_internal.access_log_event(2);
-- (it is inlined: with a hash known, the plan uses the trail's index, then
-- the batches' primary key)
CREATE FUNCTION pg_temp.al_plan(h bytea) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('EXPLAIN (COSTS OFF) SELECT * FROM privacy_internal.access_log_for_subject(%L::bytea)', h);
END $$;
SET enable_seqscan = off;
SELECT trim(p) AS plan FROM pg_temp.al_plan(privacy.subject_hash('1')) p WHERE p ~ 'Index Scan';
RESET enable_seqscan;

-- Tampering, even by a superuser, is found.  An entry's bytes end with its
-- MAC, which the views show: al_span(n) is where entry n lies in its batch.
CREATE TEMP TABLE al_batches AS SELECT * FROM privacy.access_log_batches;
CREATE FUNCTION pg_temp.al_mac(n bigint) RETURNS bytea LANGUAGE sql
    AS 'SELECT mac FROM privacy.access_log WHERE seq = n UNION ALL SELECT mac FROM privacy.access_log_subjects WHERE seq = n';
CREATE FUNCTION pg_temp.al_span(n bigint, OUT first_seq bigint, OUT from_pos integer, OUT to_pos integer)
    LANGUAGE sql AS $$
SELECT b.first_seq,
       CASE WHEN b.first_seq = n THEN 1 ELSE position(pg_temp.al_mac(n - 1) IN b.entries) + 16 END,
       position(pg_temp.al_mac(n) IN b.entries) + 15
  FROM privacy.access_log_batches b WHERE n BETWEEN b.first_seq AND b.last_seq
$$;
CREATE FUNCTION pg_temp.al_restore() RETURNS void LANGUAGE sql AS $$
DELETE FROM privacy.access_log_batches;
INSERT INTO privacy.access_log_batches SELECT * FROM al_batches;
$$;
-- one bit of entry 2 (the last byte of its canonical bytes)
UPDATE privacy.access_log_batches b SET entries = set_byte(b.entries, s.to_pos - 17, get_byte(b.entries, s.to_pos - 17) # 1)
  FROM pg_temp.al_span(2) s WHERE b.first_seq = s.first_seq;
SELECT status, seq, detail FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
SELECT status FROM privacy.verify_access_log();
-- one bit of a subject entry's MAC
SELECT min(seq) AS subject_seq FROM privacy.access_log_subjects \gset
UPDATE privacy.access_log_batches b SET entries = set_byte(b.entries, s.to_pos - 1, get_byte(b.entries, s.to_pos - 1) # 128)
  FROM pg_temp.al_span(:subject_seq) s WHERE b.first_seq = s.first_seq;
SELECT status, seq = :subject_seq AS at_that_entry FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
-- an entry's bytes cut out
UPDATE privacy.access_log_batches b SET entries = overlay(b.entries PLACING '' FROM s.from_pos FOR s.to_pos - s.from_pos + 1)
  FROM pg_temp.al_span(5) s WHERE b.first_seq = s.first_seq;
SELECT status, seq, detail FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
SELECT status FROM privacy.verify_access_log();
-- a whole batch row deleted
DELETE FROM privacy.access_log_batches WHERE 5 BETWEEN first_seq AND last_seq;
SELECT status, seq = (SELECT first_seq FROM al_batches WHERE 5 BETWEEN first_seq AND last_seq) AS at_that_batch
  FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
-- the newest entry cut off: the log's head still knows it
SELECT max(last_seq) AS last_seq FROM privacy.access_log_batches \gset
UPDATE privacy.access_log_batches b SET entries = overlay(b.entries PLACING '' FROM s.from_pos FOR s.to_pos - s.from_pos + 1)
  FROM pg_temp.al_span(:last_seq) s WHERE b.first_seq = s.first_seq;
SELECT status, seq = :last_seq AS at_the_cut FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
SELECT status FROM privacy.verify_access_log();
-- The head is kept apart from the batches, in one row the writer seals
-- with each batch: the last entry's seq and MAC.
SELECT h.last_seq = :last_seq AS head_at_the_end, h.mac = pg_temp.al_mac(h.last_seq) AS head_holds_its_mac,
       h.broken_at, length(h.seal) AS seal_bytes
  FROM privacy.access_log_head h;
-- So the batch table replaced by one without its last batch is found, at
-- the first entry of that batch
SELECT max(first_seq) AS last_batch FROM privacy.access_log_batches \gset
ALTER TABLE privacy.access_log_batches RENAME TO al_saved_batches;
CREATE TABLE privacy.access_log_batches (LIKE privacy.al_saved_batches INCLUDING ALL);
INSERT INTO privacy.access_log_batches SELECT * FROM privacy.al_saved_batches WHERE first_seq < :last_batch;
-- (where the last batch starts depends on when the writer drained)
SELECT status, seq = :last_batch AS at_the_first_missing,
       detail = format('entries %s to %s are missing: the head of the log says it ends at entry %s',
                       :last_batch, :last_seq, :last_seq) AS detail_names_them
  FROM privacy.verify_access_log();
DROP TABLE privacy.access_log_batches;
ALTER TABLE privacy.al_saved_batches RENAME TO access_log_batches;
SELECT status FROM privacy.verify_access_log();
-- and so are a head deleted, a forged one, and one older than the log
CREATE TEMP TABLE al_head AS SELECT * FROM privacy.access_log_head;
DELETE FROM privacy.access_log_head;
SELECT status, seq = :last_seq + 1 AS after_the_last_entry, detail FROM privacy.verify_access_log();
INSERT INTO privacy.access_log_head SELECT * FROM al_head;
UPDATE privacy.access_log_head SET last_seq = last_seq + 1;
SELECT status, seq = :last_seq + 1 AS at_its_end, detail FROM privacy.verify_access_log();
UPDATE privacy.access_log_head SET last_seq = last_seq - 1;
SELECT status FROM privacy.verify_access_log();
SET ROLE al_app;
SET privacy.purpose = 'billing';
SELECT count(email) FROM al_customers;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.flush_access_log();
CREATE TEMP TABLE al_new_head AS SELECT * FROM privacy.access_log_head;
UPDATE privacy.access_log_head h SET last_seq = o.last_seq, mac = o.mac, broken_at = o.broken_at, seal = o.seal
  FROM al_head o;
SELECT status, seq = (SELECT max(last_seq) + 1 FROM privacy.access_log_batches) AS after_the_log,
       detail FROM privacy.verify_access_log();
UPDATE privacy.access_log_head h SET last_seq = n.last_seq, mac = n.mac, broken_at = n.broken_at, seal = n.seal
  FROM al_new_head n;
SELECT status FROM privacy.verify_access_log();
-- (the writer's shared memory also knows where the log ends while the
-- server runs: a tail cut back to an older saved head is found until a
-- restart, test/tap/008_access_log.pl)
CREATE TEMP TABLE al_batches_now AS SELECT * FROM privacy.access_log_batches;
DELETE FROM privacy.access_log_batches WHERE last_seq > (SELECT last_seq FROM al_head);
UPDATE privacy.access_log_head h SET last_seq = o.last_seq, mac = o.mac, broken_at = o.broken_at, seal = o.seal
  FROM al_head o;
SELECT status, seq = :last_seq + 1 AS after_the_older_head, detail FROM privacy.verify_access_log();
DELETE FROM privacy.access_log_batches;
INSERT INTO privacy.access_log_batches SELECT * FROM al_batches_now;
UPDATE privacy.access_log_head h SET last_seq = n.last_seq, mac = n.mac, broken_at = n.broken_at, seal = n.seal
  FROM al_new_head n;
SELECT status FROM privacy.verify_access_log();
DROP TABLE al_batches;
CREATE TEMP TABLE al_batches AS SELECT * FROM privacy.access_log_batches;
-- two entries swapped
SELECT first_seq AS swap_at FROM privacy.access_log_batches ORDER BY last_seq - first_seq DESC, first_seq LIMIT 1 \gset
UPDATE privacy.access_log_batches b
   SET entries = substr(b.entries, y.from_pos, y.to_pos - y.from_pos + 1) || substr(b.entries, x.from_pos, x.to_pos - x.from_pos + 1)
                 || substr(b.entries, y.to_pos + 1)
  FROM pg_temp.al_span(:swap_at) x, pg_temp.al_span(:swap_at + 1) y WHERE b.first_seq = :swap_at;
SELECT status, seq = :swap_at + 1 AS at_the_swap FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
-- an entry moved: its seq no longer matches its MAC
UPDATE privacy.access_log_batches b SET entries = overlay(b.entries PLACING int8send(1000) FROM s.from_pos FOR 8)
  FROM pg_temp.al_span(1) s WHERE b.first_seq = s.first_seq;
SELECT status, seq FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
-- a batch's nonce changed: none of its entries' MAC keys are right any more
UPDATE privacy.access_log_batches SET nonce = set_byte(nonce, 0, get_byte(nonce, 0) # 1) WHERE first_seq = :swap_at;
SELECT status, seq = :swap_at AS at_its_first_entry FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
-- a batch row that misdescribes its entries (a subject hidden from lookups)
UPDATE privacy.access_log_batches SET subjects = '{}' WHERE :subject_seq BETWEEN first_seq AND last_seq;
SELECT status, seq <= :subject_seq AS in_that_batch, detail LIKE 'the batch row from seq % does not describe the entries it holds' AS detail
  FROM privacy.verify_access_log();
SELECT pg_temp.al_restore();
SELECT status FROM privacy.verify_access_log();

-- Retention removes whole batches whose statements are all older than it,
-- and the log still verifies.  Entries 1 to 4 were flushed on their own.
SELECT count(*) AS entries FROM (SELECT seq FROM privacy.access_log UNION ALL SELECT seq FROM privacy.access_log_subjects) s;
UPDATE privacy.access_log_batches SET last_at = last_at - interval '2 years' WHERE last_seq <= 4;
-- (the batch row no longer matches its entries; what retention removes no longer matters)
SELECT privacy.trim_access_log() AS removed;
SELECT min(seq) AS first_left FROM (SELECT seq FROM privacy.access_log UNION ALL SELECT seq FROM privacy.access_log_subjects) s;
SELECT first_seq, removed FROM privacy.access_log_anchors;
SELECT status FROM privacy.verify_access_log();
-- a forged anchor does not verify
UPDATE privacy.access_log_anchors SET first_seq = first_seq + 1;
SELECT status, detail FROM privacy.verify_access_log();
UPDATE privacy.access_log_anchors SET first_seq = first_seq - 1;
SELECT status FROM privacy.verify_access_log();
-- trimmed to nothing, the log still ends where its head says
UPDATE privacy.access_log_batches SET last_at = last_at - interval '2 years';
SELECT privacy.trim_access_log() > 0 AS removed_the_rest;
SELECT (SELECT count(*) FROM privacy.access_log_batches) AS batches_left,
       (SELECT max(first_seq) FROM privacy.access_log_anchors) = (SELECT last_seq + 1 FROM privacy.access_log_head) AS anchor_after_head;
SELECT status FROM privacy.verify_access_log();
-- and the latest anchor deleted then is found: the log should end at the head
DELETE FROM privacy.access_log_anchors WHERE first_seq = (SELECT max(first_seq) FROM privacy.access_log_anchors);
SELECT status, detail FROM privacy.verify_access_log();

-- Counting a statement's subjects (issue #14): past eight subjects the
-- counts go to a table; a row's values of one subject are counted in the
-- entry the value before used.  Twelve customers with two categories each,
-- read in an order that mixes subjects and categories: every subject and
-- category counted exactly, each value once.
INSERT INTO al_customers SELECT g, 'n' || g, 'e' || g || '@example.org', 'DE' || g, 0 FROM generate_series(11, 22) g;
INSERT INTO al_customers SELECT g, 'n' || g, 'e' || g || '@example.org', NULL, 0 FROM generate_series(23, 24) g;
SELECT privacy.flush_access_log();
SELECT max(seq) AS before FROM (SELECT seq FROM privacy.access_log UNION ALL SELECT seq FROM privacy.access_log_subjects) s \gset
SET privacy.purpose = 'billing';
SELECT sum(length(a) + coalesce(length(b), 0) + length(c)) > 0 AS read
  FROM (SELECT email::text AS a, iban::text AS b, email::text AS c FROM al_customers WHERE id BETWEEN 11 AND 24
        UNION ALL SELECT email::text, NULL, '' FROM al_customers WHERE id IN (11, 24)) x;
RESET privacy.purpose;
SELECT privacy.flush_access_log();
SELECT (SELECT x.id FROM generate_series(11, 24) x(id) WHERE privacy.subject_hash(x.id::text) = s.subject_hash) AS subject,
       s.category, s.opened
  FROM privacy.access_log_subjects s WHERE s.seq > :before ORDER BY subject, category;

DROP TABLE al_customers, al_plain;
DROP FUNCTION al_email(bigint);
DROP EXTENSION privacy;
DROP ROLE al_app, al_officer;
