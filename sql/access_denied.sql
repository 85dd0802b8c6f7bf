-- Denied reads are logged (issue #13): a statement the purpose check
-- refuses, and an encrypted value the decryption gate refuses, is an
-- access-log entry with outcome 'denied' and the reason.  Rows hidden
-- because their subject gave no consent are not denials.
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
SELECT privacy.create_purpose('support', 'contract', '', ARRAY['contact']);
CREATE ROLE ad_app LOGIN;
SELECT privacy.grant_purpose('ad_app', 'billing');
SELECT privacy.grant_purpose('ad_app', 'marketing');
CREATE TABLE ad_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                           iban privacy.encrypted_text(financial));
SELECT privacy.classify('ad_customers', 'name', 'contact');
SELECT privacy.protect_table('ad_customers', 'id');
-- a table that is not protected, with an encrypted column
CREATE TABLE ad_notes (id integer, iban privacy.encrypted_text(financial));
GRANT SELECT, INSERT ON ad_customers, ad_notes TO ad_app;
SET ROLE ad_app;
SET privacy.purpose = 'billing';
INSERT INTO ad_customers VALUES (1, 'Ana', 'ana@example.org', 'DE001'), (2, 'Ben', 'ben@example.org', 'DE002');
INSERT INTO ad_notes VALUES (1, 'DE003');
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.flush_access_log();
SELECT max(seq) AS before FROM privacy.access_log \gset

SET ROLE ad_app;
-- no purpose declared
SELECT name FROM ad_customers WHERE id = 1;
-- a purpose the role does not hold
SET privacy.purpose = 'support';
SELECT name FROM ad_customers WHERE id = 1;
-- a purpose that does not exist (misspelled)
SET privacy.purpose = 'biling';
SELECT name FROM ad_customers WHERE id = 1;
-- a category the purpose is not allowed: the decryption gate refuses the
-- value, after the statement read a row; a comparison is refused as well
SET privacy.purpose = 'billing';
SELECT id, iban FROM ad_customers WHERE id = 1;
SELECT count(*) FROM ad_customers WHERE iban = 'DE001';
-- a value in a table that is not protected
SELECT iban FROM ad_notes;
-- a refused write
RESET privacy.purpose;
INSERT INTO ad_customers VALUES (3, 'Cem', NULL, NULL);
-- refused in a transaction that rolls back, and in a block that catches the error
BEGIN;
SELECT email FROM ad_customers WHERE id = 2;
ROLLBACK;
DO $$
BEGIN
    PERFORM email::text FROM ad_customers WHERE id = 2;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused, and caught';
END
$$;
-- a value compared with in the refused statement is in no entry
SELECT name FROM ad_customers WHERE email = 'ana.secret@example.org';
-- consent filtering is not a denial: for marketing nobody consented
SET privacy.purpose = 'marketing';
SELECT count(*) FROM ad_customers;
-- asking is not reading: privacy.check_purpose() refuses, and logs nothing
SET privacy.purpose = 'billing';
SELECT privacy.check_purpose('financial');
RESET privacy.purpose;
RESET ROLE;
-- privacy.on_denied = mask: the rows come back with the value masked, and
-- the statement is a denial
SET privacy.on_denied = 'mask';
SET ROLE ad_app;
SET privacy.purpose = 'billing';
SELECT id, email, iban FROM ad_customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
RESET privacy.on_denied;

SELECT privacy.flush_access_log();
SELECT seq - :before AS n, command, relation, columns, purpose, rows, level, outcome, reason, denied_category
  FROM privacy.access_log WHERE seq > :before ORDER BY seq;
-- whose values were opened: the masked statement's emails, never an iban
SELECT l.seq - :before AS event, l.outcome, s.category, s.opened,
       (SELECT x.id FROM (VALUES (1), (2)) x(id) WHERE privacy.subject_hash(x.id::text) = s.subject_hash) AS subject
  FROM privacy.access_log_subjects s JOIN privacy.access_log l ON l.seq = s.event
 WHERE l.seq > :before ORDER BY s.seq;
-- the reasons: a short fixed vocabulary
SELECT reason, count(*) FROM privacy.access_log WHERE outcome = 'denied' GROUP BY reason ORDER BY reason;
-- no statement text, no value
SELECT count(*) AS batches_holding_the_value FROM privacy.access_log_batches
 WHERE position(convert_to('ana.secret', 'UTF8') IN entries) > 0
    OR position(convert_to('DE001', 'UTF8') IN entries) > 0;
-- a denial is no use of its purpose (compliance gap "purpose never used")
SELECT acting_role, purpose FROM privacy.access_log_purpose_use ORDER BY 1, 2;
-- the subject report: the masked read of subject 1 is a denial, with its reason
SELECT a - 'at' - 'entry' AS access
  FROM jsonb_array_elements(privacy.subject_report('1') -> 'access') a
 WHERE a ->> 'outcome' = 'denied';
SELECT status FROM privacy.verify_access_log();

-- the log's last events written before the extension goes (they would
-- reach the next test's log)
SELECT privacy.flush_access_log();
DROP TABLE ad_customers, ad_notes;
DROP EXTENSION privacy;
DROP ROLE ad_app;
