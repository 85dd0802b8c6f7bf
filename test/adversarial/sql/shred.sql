-- What erasure must leave nothing of (issue #12, class 6).
--
-- After erase_subject, an equality search finds no trace of the subject's
-- values, even where their rows stay (an anonymize rule); no role can make
-- the extension's seal trigger its own (to reseal another subject's value
-- under a decoy subject's key, which erasure would then miss, or to create
-- subject keys without limit).
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('adv_app', 'support');
GRANT CREATE ON SCHEMA public TO adv_app;

CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact, searchable),
                        phone privacy.encrypted_text(contact), joined date NOT NULL DEFAULT '2020-01-01');
CREATE INDEX ON customers (email);
SET privacy.purpose = 'support';
INSERT INTO customers VALUES (1, 'Ana', 'ana@example.org', '555-01'), (2, 'Carol', 'carol@example.org', '555-02');
RESET privacy.purpose;
SELECT privacy.protect_table('customers', 'id');
GRANT SELECT ON customers TO adv_app;
SET ROLE adv_officer;
SELECT privacy.set_retention('customers', 'joined', interval '10 years', 'anonymize', ARRAY['name']);
RESET ROLE;

-- a copy of her value, made before the erasure in an unprotected table
CREATE TABLE copies AS SELECT id, email FROM customers WHERE id = 2;

-- before: Carol is found by her e-mail
SET ROLE adv_app;
SET privacy.purpose = 'support';
SELECT id FROM customers WHERE email = 'carol@example.org';
RESET privacy.purpose;
RESET ROLE;

SET ROLE adv_officer;
SELECT (privacy.erase_subject('2', 'request 9') -> 'tables' -> 'public.customers' ->> 'action') AS done;
RESET ROLE;

-- after: her row stays, anonymized, and nothing finds it by her e-mail
SET ROLE adv_app;
SET privacy.purpose = 'support';
SELECT id, name, email, privacy.is_erased(email) AS erased FROM customers ORDER BY id;
SELECT id FROM customers WHERE email = 'carol@example.org';
SET enable_seqscan = off;
SELECT id FROM customers WHERE email = 'carol@example.org';
RESET enable_seqscan;
SELECT id FROM customers WHERE email = 'ana@example.org';
RESET ROLE;

-- the copy made before the erasure: its value is shredded (its key is
-- gone), and reencrypt takes its search tag too
SET privacy.purpose = 'support';
SELECT email, privacy.is_erased(email) AS erased FROM copies;
SELECT count(*) AS copy_found_by_tag FROM copies WHERE email = 'carol@example.org';
RESET privacy.purpose;
SET client_min_messages = warning;
CALL privacy.reencrypt('copies', 'email');
RESET client_min_messages;
SET privacy.purpose = 'support';
SELECT count(*) AS copy_found_after_reencrypt FROM copies WHERE email = 'carol@example.org';
RESET privacy.purpose;

-- the seal trigger is the extension's: on a table of one's own it refuses
-- to run (it would reseal values under a decoy subject's key, which
-- erasure misses, and create subject keys at will)
SET ROLE adv_app;
CREATE TABLE mine (id bigint, subject text, v privacy.encrypted_text(contact));
CREATE TRIGGER privacy_seal_row BEFORE INSERT ON mine FOR EACH ROW EXECUTE FUNCTION privacy_internal.seal_row('subject');
SET privacy.purpose = 'support';
INSERT INTO mine VALUES (1, 'decoy', 'carol@example.org');
RESET privacy.purpose;
RESET ROLE;
-- Ana's key is the only active subject key: none was made for the decoy
SELECT count(*) AS active_subject_keys FROM privacy.keys WHERE scope = 'subject' AND state = 'active';

DROP TABLE customers, copies, mine;
DROP EXTENSION privacy;
REVOKE CREATE ON SCHEMA public FROM adv_app;
DROP ROLE adv_app, adv_officer;
