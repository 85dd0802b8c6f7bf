-- Attacks on online resealing (issue #14), as an application role, a
-- table's owner and a DBA: while a table is half resealed, consent and
-- privileges hold; a batch's position survives a session's DateStyle and a
-- change of the key's type; a trigger that swallows the batch's UPDATE
-- cannot make the job end with values under the category key; an erasure
-- leaves no subject's identifier in privacy.reseal_jobs.
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_purpose('support', 'contract', 'customer support', ARRAY['contact']);
CREATE ROLE ra_owner LOGIN;
CREATE ROLE ra_app LOGIN;
GRANT CREATE ON SCHEMA public TO ra_owner;
SELECT privacy.grant_purpose('ra_owner', 'support');
SELECT privacy.grant_purpose('ra_app', 'support');

SET ROLE ra_owner;
CREATE TABLE cust (id bigint PRIMARY KEY, subject text, email privacy.encrypted_text(contact));
GRANT SELECT, INSERT, UPDATE ON cust TO ra_app;
SET privacy.purpose = 'support';
INSERT INTO cust SELECT g, 's' || (g % 50), 'c' || g || '@example.org' FROM generate_series(1, 1200) g;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.protect_table('cust', 'subject');
SELECT privacy_internal.reseal_batch('cust', 'protect_table', NULL, 600);

-- 1. half resealed: an objection hides the subject's rows under both keys
SELECT privacy.object('s7', 'support', 'test') > 0 AS objected;
SET ROLE ra_app;
SET privacy.purpose = 'support';
SELECT count(*) FILTER (WHERE subject = 's7') AS s7_rows, count(*) AS visible FROM cust;
-- a row written below the resume point goes under its subject's key at once
INSERT INTO cust VALUES (0, 's1', 'zero@example.org');
RESET privacy.purpose;
RESET ROLE;
SELECT privacy_internal.under_category_key(email) AS zero_under_category_key FROM cust WHERE id = 0;

-- 2. neither the application nor the owner runs, reads or steers a reseal
SET ROLE ra_app;
CALL privacy.reseal('cust');
SELECT * FROM privacy.reseal_jobs;
SELECT count(*) FROM privacy.progress_reseal;
SELECT privacy_internal.reseal_batch('cust', 'protect_table', NULL, 10);
SELECT privacy_internal.reseal_enqueue('cust', 'reencrypt', 'email');
RESET ROLE;
SET ROLE ra_owner;
CALL privacy.reseal('cust');
UPDATE privacy.reseal_jobs SET last_key = '{99999}';
DELETE FROM privacy.reseal_jobs;
RESET ROLE;
CALL privacy.reseal('cust');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key FROM cust;

-- 3. the resume position is read back as it was written, whatever the
-- DateStyle of the session that resumes (a crash between two CALLs)
CREATE TABLE byday (day date PRIMARY KEY, subject int, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO byday SELECT date '2026-01-01' + g, g % 9, 'd' || g FROM generate_series(0, 1199) g;
RESET privacy.purpose;
SELECT privacy.protect_table('byday', 'subject');
SET DateStyle = 'SQL, DMY';
SELECT privacy_internal.reseal_batch('byday', 'protect_table', NULL, 11);
SET DateStyle = 'SQL, MDY';
CALL privacy.reseal('byday');
RESET DateStyle;
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key FROM byday;
SELECT count(*) AS jobs_left FROM privacy.reseal_jobs WHERE tbl = 'byday'::regclass;

-- 4. the key's type changes between two batches (a table rewrite that
-- fires no trigger): no row is passed over
CREATE TABLE retyped (k bigint PRIMARY KEY, subject int, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO retyped SELECT g, g % 9, 'r' || g FROM generate_series(1, 1201) g;
RESET privacy.purpose;
SELECT privacy.protect_table('retyped', 'subject');
SELECT privacy_internal.reseal_batch('retyped', 'protect_table', NULL, 500);
ALTER TABLE retyped ALTER COLUMN k TYPE text;
CALL privacy.reseal('retyped');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key FROM retyped;
SELECT count(*) AS jobs_left FROM privacy.reseal_jobs WHERE tbl = 'retyped'::regclass;
SELECT count(*) AS reseal_gaps FROM privacy.compliance_gaps() WHERE gap = 'reseal pending' AND object = 'public.retyped';

-- 5. a trigger that skips unchanged rows and fires before the seal trigger
-- (PostgreSQL's own suppress_redundant_updates_trigger, named to fire
-- first) swallows every batch: the reseal must not end as done
CREATE TABLE swallowed (id int PRIMARY KEY, subject int, email privacy.encrypted_text(contact));
CREATE TRIGGER min_update BEFORE UPDATE ON swallowed
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
SET privacy.purpose = 'support';
INSERT INTO swallowed SELECT g, g % 9, 'w' || g FROM generate_series(1, 1201) g;
RESET privacy.purpose;
SELECT privacy.protect_table('swallowed', 'subject');
CALL privacy.reseal('swallowed');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key FROM swallowed;
SELECT count(*) AS jobs_left FROM privacy.reseal_jobs WHERE tbl = 'swallowed'::regclass;
SELECT count(*) AS reseal_gaps FROM privacy.compliance_gaps() WHERE gap = 'reseal pending' AND object = 'public.swallowed';
DROP TRIGGER min_update ON swallowed;
CALL privacy.reseal('swallowed');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key FROM swallowed;

-- the owner tries to make the seal trigger fire only on replicas (so that
-- nothing would be resealed): refused, and the reseal goes through
SET ROLE ra_owner;
CREATE TABLE replica_only (id int PRIMARY KEY, subject int, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO replica_only SELECT g, g % 9, 'o' || g FROM generate_series(1, 1201) g;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.protect_table('replica_only', 'subject');
SET ROLE ra_owner;
ALTER TABLE replica_only ENABLE REPLICA TRIGGER privacy_seal_row;
RESET ROLE;
CALL privacy.reseal('replica_only');
SELECT count(*) AS jobs_left FROM privacy.reseal_jobs WHERE tbl = 'replica_only'::regclass;
SELECT gap FROM privacy.compliance_gaps() WHERE object = 'public.replica_only' ORDER BY 1;

-- 6. an erasure during a reseal keyed by the subject column (no primary
-- key) leaves no trace of the subject's identifier in the job
CREATE TABLE bysubject (subject text, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO bysubject SELECT 'cust-' || lpad((g % 300)::text, 4, '0'), 'b' || g FROM generate_series(1, 1200) g;
RESET privacy.purpose;
SELECT privacy.protect_table('bysubject', 'subject');
SELECT privacy_internal.reseal_batch('bysubject', 'protect_table', NULL, 400);
SELECT last_key FROM privacy.reseal_jobs WHERE tbl = 'bysubject'::regclass;
SELECT privacy.erase_subject('cust-0099', 'test') ->> 'keys_destroyed' AS keys_destroyed;
SELECT count(*) AS identifier_left FROM privacy.reseal_jobs WHERE 'cust-0099' = ANY (last_key);
-- the position moved back to the subject before it (whose rows are done)
SELECT last_key FROM privacy.reseal_jobs WHERE tbl = 'bysubject'::regclass;
CALL privacy.reseal('bysubject');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key,
       count(*) FILTER (WHERE subject = 'cust-0099') AS erased_rows FROM bysubject;

-- the same with a numeric subject column, keyed with the subject first
CREATE TABLE bynumber (subject bigint, n int, email privacy.encrypted_text(contact), PRIMARY KEY (subject, n));
SET privacy.purpose = 'support';
INSERT INTO bynumber SELECT g % 300, g, 'n' || g FROM generate_series(1, 1200) g;
RESET privacy.purpose;
SELECT privacy.protect_table('bynumber', 'subject');
SELECT privacy_internal.reseal_batch('bynumber', 'protect_table', NULL, 400);
SELECT key_columns, last_key FROM privacy.reseal_jobs WHERE tbl = 'bynumber'::regclass;
SELECT privacy.erase_subject('99', 'test') ->> 'keys_destroyed' AS keys_destroyed;
SELECT key_columns, last_key FROM privacy.reseal_jobs WHERE tbl = 'bynumber'::regclass;
CALL privacy.reseal('bynumber');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key,
       count(*) AS total FROM bynumber;

-- the same with a primary key of its own that identifies the subject (a
-- telecom line's number) and a subject column outside the key: the row at
-- last_key is the erased subject's, and its number must not stay in the
-- job once the row is erased
CREATE TABLE bymsisdn (msisdn text PRIMARY KEY, customer_id text NOT NULL, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO bymsisdn SELECT '+33 6 ' || lpad(g::text, 8, '0'), 'line-' || (g % 300), 'm' || g FROM generate_series(1, 1200) g;
RESET privacy.purpose;
SELECT privacy.protect_table('bymsisdn', 'customer_id');
SELECT privacy_internal.reseal_batch('bymsisdn', 'protect_table', NULL, 400);
SELECT key_columns, last_key FROM privacy.reseal_jobs WHERE tbl = 'bymsisdn'::regclass;
SELECT b.customer_id AS last_subject FROM bymsisdn b, privacy.reseal_jobs r
 WHERE r.tbl = 'bymsisdn'::regclass AND b.msisdn = r.last_key[1] \gset
SELECT privacy.erase_subject(:'last_subject', 'test') ->> 'keys_destroyed' AS keys_destroyed;
SELECT count(*) AS erased_numbers_left FROM privacy.reseal_jobs r
 WHERE r.tbl = 'bymsisdn'::regclass AND NOT EXISTS (SELECT FROM bymsisdn b WHERE b.msisdn = r.last_key[1]);
SELECT key_columns, last_key FROM privacy.reseal_jobs WHERE tbl = 'bymsisdn'::regclass;
-- the job's position is a row's key in clear: an application role sees
-- neither the jobs nor their progress
SET ROLE ra_app;
SELECT last_key FROM privacy.reseal_jobs;
SELECT relid, rows_done FROM privacy.progress_reseal;
RESET ROLE;
CALL privacy.reseal('bymsisdn');
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_under_category_key,
       count(*) AS total FROM bymsisdn;

-- clean up
DROP TABLE cust, byday, retyped, swallowed, replica_only, bysubject, bynumber, bymsisdn;
REVOKE CREATE ON SCHEMA public FROM ra_owner;
DROP EXTENSION privacy;
DROP ROLE ra_owner;
DROP ROLE ra_app;
