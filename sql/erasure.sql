-- Erasure of a subject: rows, keys, consent history, holds, the receipt.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE ROLE era_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE era_app LOGIN;

CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                        closed_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, item text,
                     note privacy.encrypted_text(contact));
CREATE TABLE tickets (id bigint PRIMARY KEY, customer text NOT NULL, body privacy.encrypted_text(contact));
INSERT INTO customers VALUES (17, 'Ana', 'ana@example.org', NULL), (18, 'Bob', 'bob@example.org', NULL);
INSERT INTO orders SELECT g, CASE WHEN g <= 3 THEN 17 ELSE 18 END, 'item ' || g, 'note ' || g
  FROM generate_series(1, 5) g;
INSERT INTO tickets VALUES (1, '17', 'my parcel'), (2, '18', 'thanks');
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('tickets', 'customer');
-- the table's retention rule decides: customers are anonymized, tables
-- without an anonymizing rule have the subject's rows deleted
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['name', 'email']);
SELECT privacy.grant_consent('17', 'marketing', 'web-form', '{"ip": "192.0.2.7"}');
SELECT privacy.withdraw_consent('17', 'marketing', 'unsubscribe-link');
SELECT privacy.grant_consent('18', 'marketing', 'web-form', '{"ip": "192.0.2.8"}');

-- a copy of Ana's encrypted e-mail kept elsewhere (a later dump would hold the same bytes)
CREATE TABLE copies AS SELECT id, email FROM customers WHERE id = 17;
SET privacy.purpose = 'billing';
SELECT id, email FROM copies;
RESET privacy.purpose;

-- a legal hold refuses the erasure, and nothing changes
SELECT privacy.place_hold('17', 'litigation 2026-117');
SET ROLE era_officer;
SELECT privacy.erase_subject('17', 'request #2291');
RESET ROLE;
SELECT count(*) AS ana_rows FROM orders WHERE customer_id = 17;
SELECT privacy.release_hold('17');

-- bad input
SET ROLE era_officer;
SELECT privacy.erase_subject('', 'x');
SELECT privacy.erase_subject('17', '');
RESET ROLE;
SET ROLE era_app;
SELECT privacy.erase_subject('17', 'x');
RESET ROLE;

-- the erasure, as the compliance officer; the receipt
SET ROLE era_officer;
SELECT receipt - 'erased_at' - 'subject_hash' - 'erasure' AS receipt,
       receipt ->> 'subject_hash' = encode(privacy.subject_hash('17'), 'hex') AS hash_matches
  FROM privacy.erase_subject('17', 'request #2291') AS receipt;
RESET ROLE;

-- Ana's rows: customers anonymized (by its rule), orders and tickets deleted
SET privacy.purpose = 'billing';
SELECT id, name, email FROM customers ORDER BY id;
SELECT customer_id, count(*) FROM orders GROUP BY 1 ORDER BY 1;
SELECT customer, body FROM tickets ORDER BY id;
-- and every copy of her encrypted values is unreadable now
SELECT id, email, privacy.is_erased(email) FROM copies;
RESET privacy.purpose;
SELECT state FROM privacy.keys WHERE scope = 'subject' ORDER BY id;

-- consent: the state is gone, the history proves consent was honoured, without her
SELECT subject, purpose, state FROM privacy.consents ORDER BY subject;
SELECT subject LIKE 'erased:%' AS pseudonymous, purpose, action, source, evidence
  FROM privacy.consent_events ORDER BY id;
SELECT count(*) AS ledger_rows_naming_17 FROM privacy.consent_events WHERE subject = '17';
-- the released hold keeps its history, without the identifier
SELECT subject LIKE 'erased:%' AS pseudonymous, reason FROM privacy.holds;

-- the erasure record holds no identifier in clear
SELECT reason, erased_by, keys_destroyed, consent_events_reduced, tables,
       subject_hash = privacy.subject_hash('17') AS proves_whom
  FROM privacy.erasures;
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = 'privacy' AND table_name = 'erasures' ORDER BY ordinal_position;

-- the ledger stays append-only for everyone else
UPDATE privacy.consent_events SET evidence = NULL;

-- erasing a subject who is not there is recorded too, and harmless
SELECT (privacy.erase_subject('999', 'request #3000') -> 'tables') AS tables;

-- Erasure costs index lookups, not scans (#19): among thousands of
-- subjects it finds the key, the consent state and the holds of its
-- subject through their indexes.  (The keys are written directly: they are
-- never opened, and creating each through the key cache takes longer.)
INSERT INTO privacy.data_keys (scope, subject_hash, wrapped_key, wrapped_by)
SELECT 'subject', privacy.subject_hash(g::text), '\x00', 'test' FROM generate_series(1000, 3999) g;
SELECT count(privacy.grant_consent(g::text, 'marketing', 'import')) AS consents FROM generate_series(1000, 3999) g;
SELECT count(privacy.place_hold(g::text, 'old matter')) AS holds FROM generate_series(1000, 3999) g;
UPDATE privacy.holds SET released_at = now(), released_by = current_user WHERE released_at IS NULL;
ANALYZE privacy.data_keys, privacy.consent_state, privacy.holds;
BEGIN;
CREATE TEMPORARY TABLE scans ON COMMIT DROP AS
SELECT relid, seq_scan FROM pg_stat_xact_all_tables
 WHERE relid IN ('privacy.data_keys'::regclass, 'privacy.consent_state'::regclass, 'privacy.holds'::regclass);
SELECT privacy.erase_subject('2500', 'request #2500') ->> 'keys_destroyed' AS keys_destroyed;
SELECT s.relid::regclass AS tbl, x.seq_scan - s.seq_scan AS seq_scans
  FROM scans s JOIN pg_stat_xact_all_tables x USING (relid) ORDER BY 1::text;
ROLLBACK;
-- and the consent state by an index that starts with the subject (its
-- primary key starts with the purpose: a scan of the whole index)
EXPLAIN (COSTS OFF) DELETE FROM privacy.consent_state cs WHERE cs.subject = '2500';

-- Erasure's statements take the subject as a parameter, their plans kept
-- for the session (#19): a table protected, or a table's new retention
-- rule, between two erasures of one session is followed by the second.
INSERT INTO customers VALUES (30, 'Cy', 'cy@example.org', NULL), (31, 'Di', 'di@example.org', NULL);
INSERT INTO orders VALUES (30, 30, 'item 30', 'note 30'), (31, 31, 'item 31', 'note 31');
INSERT INTO tickets VALUES (30, '30', 'hello'), (31, '31', 'hi');
SELECT e -> 'public.tickets' AS tickets, e -> 'public.orders' AS orders
  FROM (SELECT privacy.erase_subject('30', 'request #30') -> 'tables') x(e);
CREATE TABLE notes (id bigint PRIMARY KEY, customer bigint NOT NULL, body text);
INSERT INTO notes VALUES (30, 30, 'called'), (31, 31, 'wrote');
SELECT privacy.protect_table('notes', 'customer');
ALTER TABLE orders ADD COLUMN placed_at timestamptz;
SELECT privacy.set_retention('orders', 'placed_at', interval '1 year', 'anonymize', ARRAY['item'], '{"item": "gone"}');
SELECT e -> 'public.notes' AS notes, e -> 'public.orders' AS orders
  FROM (SELECT privacy.erase_subject('31', 'request #31') -> 'tables') x(e);
SELECT id, customer_id, item FROM orders WHERE id IN (30, 31) ORDER BY id;
SELECT (SELECT count(*) FROM tickets WHERE id IN (30, 31)) AS tickets_left,
       (SELECT count(*) FROM notes) AS notes_left;

DROP TABLE customers, orders, tickets, copies, notes;
DROP EXTENSION privacy;
DROP ROLE era_officer, era_app;
