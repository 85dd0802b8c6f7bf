-- privacy demo: what a DBA sees after CREATE EXTENSION privacy.
-- Run by ./test/demo against a throwaway cluster; statements that are meant
-- to fail are marked "-- expected error" and the test suite counts them.
-- Calls of functions that return nothing end in "\g /dev/null" instead of
-- ";", so that no empty result follows them.
\set ON_ERROR_STOP 0
\set SHOW_CONTEXT never
\pset footer off

\echo
\echo '### 1. Install: the library is preloaded and the master key came from privacy.master_key_command'
SHOW shared_preload_libraries;
CREATE EXTENSION privacy;
SELECT privacy.master_key_status() AS master_key,
       privacy.master_key_fingerprint() AS fingerprint;
\echo 'The key itself is never shown, logged or stored; the fingerprint only tells keys apart.'

\echo
\echo '### 2. Vocabulary: categories of personal data, purposes with their GDPR Art. 6 legal basis'
SELECT privacy.create_category('contact', 'e-mail, phone, postal address') \g /dev/null
SELECT privacy.create_category('financial', 'IBAN, card tokens') \g /dev/null
SELECT privacy.create_category('health', 'medical notes', special => true) \g /dev/null
SELECT privacy.create_purpose('billing', 'contract', 'invoicing and payment', ARRAY['contact', 'financial']) \g /dev/null
SELECT privacy.create_purpose('support', 'legitimate_interests', 'customer support', ARRAY['contact']) \g /dev/null
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']) \g /dev/null
SELECT p.name AS purpose, p.legal_basis,
       coalesce(array_agg(pc.category ORDER BY pc.category) FILTER (WHERE pc.category IS NOT NULL), '{}') AS categories
  FROM privacy.purposes p LEFT JOIN privacy.purpose_categories pc ON pc.purpose = p.name
 GROUP BY 1, 2 ORDER BY 1;

\echo 'Bad input is refused with a reason, and changes nothing:'
SELECT privacy.create_purpose('profiling', 'because');    -- expected error
SELECT privacy.create_purpose('analytics', 'consent', '', ARRAY['location']);    -- expected error

\echo
\echo '### 3. Roles hold purposes; applications declare one per session or transaction'
CREATE ROLE demo_billing_app LOGIN;
CREATE ROLE demo_support_team NOLOGIN;
CREATE ROLE demo_agent LOGIN IN ROLE demo_support_team;
SELECT privacy.grant_purpose('demo_billing_app', 'billing') \g /dev/null
SELECT privacy.grant_purpose('demo_support_team', 'support') \g /dev/null
SELECT purpose, role, legal_basis FROM privacy.purpose_holders ORDER BY 1, 2;

SET ROLE demo_billing_app;
\echo 'No purpose declared: an error with a hint, never a silent empty result.'
SELECT privacy.check_purpose('contact');    -- expected error
SET privacy.purpose = 'billing';
SELECT privacy.check_purpose('financial') AS declared_purpose;
\echo 'A purpose the role does not hold:'
SET privacy.purpose = 'support';
SELECT privacy.check_purpose('contact');    -- expected error
\echo 'What this role may declare:'
SELECT * FROM privacy.my_purposes;
\echo 'Application roles cannot read or change the catalog:'
SELECT * FROM privacy.role_purposes;    -- expected error
RESET privacy.purpose;
RESET ROLE;

SET ROLE demo_agent;
BEGIN;
SET LOCAL privacy.purpose = 'support';
SELECT privacy.check_purpose('contact') AS purpose_inherited_from_team;
\echo 'support may not process financial data:'
SELECT privacy.may_use('financial') AS may_use_financial;
COMMIT;
RESET ROLE;

\echo
\echo '### 4. Revoking a purpose takes effect from the next statement, in every session'
SELECT privacy.revoke_purpose('demo_support_team', 'support') \g /dev/null
SET ROLE demo_agent;
SET privacy.purpose = 'support';
SELECT privacy.check_purpose('contact');    -- expected error
RESET privacy.purpose;
RESET ROLE;

\echo
\echo '### 5. Encrypted columns: sealed where they enter, opened only for a purpose allowed their category'
CREATE TABLE customers (
    id    bigint PRIMARY KEY,
    name  text,
    email privacy.encrypted_text,
    iban  privacy.encrypted_text
);
\echo 'Columns declared without a category are "unclassified" (readable under no purpose) until classified.'
\echo 'email is made searchable: equal addresses can be looked up and joined, at the cost of linkability.'
SELECT privacy.classify('customers', 'email', 'contact', searchable => true) \g /dev/null
SELECT privacy.classify('customers', 'iban', 'financial') \g /dev/null
SELECT column_name, category, searchable, column_type FROM privacy.classified_columns ORDER BY 1;

\echo 'Plaintext goes in through ordinary SQL: literals, parameters, COPY.'
INSERT INTO customers VALUES
    (1, 'Ana', 'ana@example.org', 'FR7630006000011234567890189'),
    (2, 'Bob', 'bob@example.org', 'DE89370400440532013000');
COPY customers (id, name, email, iban) FROM STDIN;
3	Carol	carol@example.org	GB29NWBK60161331926819
\.

\echo 'A superuser with no purpose declared sees only envelopes (what pg_dump writes), never plaintext:'
SELECT id, name, email::text LIKE 'pv1:%' AS email_is_envelope, iban::text LIKE 'pv1:%' AS iban_is_envelope
  FROM customers ORDER BY id;
\echo 'What a value says about itself, without being opened (stored = plaintext + 48 bytes, + 16 if searchable):'
SELECT id, (privacy.envelope_info(email)).category, (privacy.envelope_info(email)).searchable,
       (privacy.envelope_info(email)).plaintext_bytes, (privacy.envelope_info(email)).stored_bytes
  FROM customers ORDER BY id;

\echo 'With a purpose allowed both categories (superusers hold every purpose, but must declare one):'
SET privacy.purpose = 'billing';
SELECT id, name, email, iban FROM customers ORDER BY id;

\echo 'Equality search uses an ordinary index on the search tags; nothing is decrypted to find the row:'
CREATE INDEX customers_email ON customers (email);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE email = 'bob@example.org';
SELECT id, name FROM customers WHERE email = 'bob@example.org';
RESET enable_seqscan;

\echo 'support is allowed contact data, not financial data:'
SET privacy.purpose = 'support';
SELECT id, email FROM customers ORDER BY id;
SELECT id, iban FROM customers ORDER BY id;    -- expected error
RESET privacy.purpose;

\echo 'An application role meets the same gate (it holds billing, but has declared nothing):'
GRANT SELECT ON customers TO demo_billing_app;
SET ROLE demo_billing_app;
SELECT id, email FROM customers ORDER BY id;    -- expected error
RESET ROLE;

\echo
\echo '### 6. Crypto-shredding: a subject''s values sealed under their own key, then the key destroyed'
UPDATE customers SET email = privacy.seal_for_subject(email, id::text),
                     iban = privacy.seal_for_subject(iban, id::text)
 WHERE id = 2;
SELECT privacy.destroy_subject_key('2') AS keys_destroyed;
SET privacy.purpose = 'billing';
SELECT id, name, email, iban, privacy.is_erased(email) AS erased FROM customers ORDER BY id;
RESET privacy.purpose;
\echo 'The key list keeps a trace of the destruction, never key material:'
SELECT scope, category, subject_hash_prefix IS NOT NULL AS for_a_subject, state FROM privacy.keys ORDER BY id;

\echo
\echo '### 7. Consent-aware row-level security: a row is shown only for the purposes its subject allows'
CREATE ROLE demo_mailer LOGIN;
CREATE ROLE demo_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('demo_mailer', 'marketing') \g /dev/null
SELECT privacy.grant_purpose('demo_support_team', 'support') \g /dev/null
GRANT SELECT ON customers TO demo_mailer, demo_support_team;
\echo 'Protecting the table: RLS forced, a restrictive policy on the consent state, rows resealed under subject keys.'
SELECT privacy.protect_table('customers', 'id') \g /dev/null
SELECT table_name, subject_column FROM privacy.protected;

\echo 'The compliance team records consent, with its source and evidence:'
SET ROLE demo_officer;
SELECT privacy.grant_consent('1', 'marketing', 'web-form', '{"form": "signup-v3", "ip": "192.0.2.1"}');
SELECT privacy.grant_consent('3', 'marketing', 'call-centre', '{"agent": "a-17"}');
RESET ROLE;

\echo 'marketing has legal basis consent: the newsletter service sees the two subjects who consented.'
SET ROLE demo_mailer;
SET privacy.purpose = 'marketing';
SELECT count(*) AS rows_for_marketing FROM customers;
SELECT id, name, email FROM customers ORDER BY id;
RESET ROLE;

\echo 'Carol withdraws; the next statement no longer sees her row:'
SET ROLE demo_officer;
SELECT privacy.withdraw_consent('3', 'marketing', 'unsubscribe-link');
RESET ROLE;
SET ROLE demo_mailer;
SELECT count(*) AS rows_for_marketing_after_withdrawal FROM customers;
\echo 'Without a purpose, a protected table is an error, never a silent empty result:'
RESET privacy.purpose;
SELECT count(*) FROM customers;    -- expected error
RESET ROLE;

\echo 'support has legal basis legitimate_interests: everyone is shown but a subject who objected (Art. 21).'
SET ROLE demo_officer;
SELECT privacy.object('1', 'support', 'letter', '{"letter_ref": "2026/117"}');
SELECT subject, purpose, legal_basis, state, source FROM privacy.consents ORDER BY subject, purpose;
RESET ROLE;
SET ROLE demo_agent;
SET privacy.purpose = 'support';
SELECT id, name, email FROM customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;

\echo
\echo '### 8. Retention: data leaves on time, in batches, with a log'
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, placed_at timestamptz NOT NULL, total numeric);
INSERT INTO orders SELECT g, 1 + g % 4, now() - (g || ' months')::interval, g * 10 FROM generate_series(1, 60) g;
SELECT privacy.protect_table('orders', 'customer_id') \g /dev/null
SET ROLE demo_officer;
SELECT privacy.set_retention('orders', 'placed_at', interval '3 years', 'delete') \g /dev/null
SELECT privacy.place_hold('2', 'litigation 2026-117');
\echo 'What a purge would do, changing nothing:'
SELECT table_name, action, keep, rows_due, rows_held FROM privacy.purge_preview();
RESET ROLE;
\echo 'The purge commits batch by batch and skips the held subject:'
CALL privacy.purge(batch_size => 5);
SELECT r.outcome, r.started_by, t.tbl, t.matched, t.purged, t.held
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id ORDER BY r.id;

\echo
\echo '### 9. The access log: who read whose personal data, when and why'
\echo 'Each completed read of a protected table since section 7 left one entry (never its text or values):'
SELECT privacy.flush_access_log() AS flushed;
SELECT relation, command, outcome, count(*) AS statements
  FROM privacy.access_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
\echo 'The latest three in full:'
SELECT seq, session_role, acting_role, purpose, command, relation, columns, rows, outcome
  FROM privacy.access_log ORDER BY seq DESC LIMIT 3;
\echo 'Whose encrypted values were opened is kept per subject, by keyed hash; customer 3 finds it in their report:'
SELECT a ->> 'role' AS role, a ->> 'purpose' AS purpose, a ->> 'command' AS command,
       a ->> 'table' AS table_name, a -> 'categories' AS categories, a ->> 'values' AS values_opened
  FROM jsonb_array_elements(privacy.subject_report('3') -> 'access') a;
\echo 'The writer stores the entries packed, a batch per flush; the two views above unpack them:'
SELECT first_seq, last_seq, cardinality(subjects) AS subjects, length(entries) AS bytes
  FROM privacy.access_log_batches ORDER BY first_seq DESC LIMIT 3;
\echo 'The log is chained with a keyed MAC: a change, even by a superuser, is found.'
SELECT status, checked FROM privacy.verify_access_log();
\echo 'One bit of the oldest entry flipped in its batch row (the byte before its MAC), then flipped back:'
UPDATE privacy.access_log_batches b SET entries = set_byte(b.entries, x.p - 2, get_byte(b.entries, x.p - 2) # 1)
  FROM (SELECT position(l.mac IN c.entries) AS p, c.first_seq
          FROM privacy_internal.access_log_event((SELECT min(seq) FROM privacy.access_log)) l, privacy.access_log_batches c
         WHERE l.seq BETWEEN c.first_seq AND c.last_seq) x
 WHERE b.first_seq = x.first_seq;
SELECT status, seq, detail FROM privacy.verify_access_log();
UPDATE privacy.access_log_batches b SET entries = set_byte(b.entries, x.p - 2, get_byte(b.entries, x.p - 2) # 1)
  FROM (SELECT position(l.mac IN c.entries) AS p, c.first_seq
          FROM privacy_internal.access_log_event((SELECT min(seq) FROM privacy.access_log)) l, privacy.access_log_batches c
         WHERE l.seq BETWEEN c.first_seq AND c.last_seq) x
 WHERE b.first_seq = x.first_seq;
SELECT status FROM privacy.verify_access_log();
\echo 'Switching the log off takes a reload of postgresql.conf (which the server log records), never a SET:'
SET privacy.access_log = off;    -- expected error

\echo
\echo '### 10. Declarative classification: SECURITY LABEL does what classify() and protect_table() do'
CREATE TABLE tickets (id bigint PRIMARY KEY, customer_id bigint NOT NULL, body text);
INSERT INTO tickets VALUES (1, 3, 'Please change my delivery address');
SECURITY LABEL FOR privacy ON COLUMN tickets.body IS 'category=contact, encrypt';
SECURITY LABEL FOR privacy ON TABLE tickets IS 'subject=customer_id';
SELECT objtype, objname, label FROM pg_seclabels WHERE provider = 'privacy' ORDER BY objname;
SELECT tbl, col, category, encrypted FROM privacy.column_categories WHERE tbl = 'tickets'::regclass;
\echo 'A malformed label is an error, never a column silently left in plaintext:'
SECURITY LABEL FOR privacy ON COLUMN tickets.body IS 'category=nosuch';    -- expected error

\echo
\echo '### 11. Subject requests with their legal deadline, the register of processing, compliance gaps'
SET ROLE demo_officer;
SELECT privacy.open_request('3', 'access') AS request_id;
SELECT id, kind, status, deadline::date - received_at::date AS days_to_answer FROM privacy.requests;
SELECT privacy.complete_request(id, 'report sent by post') FROM privacy.requests WHERE status = 'open';
SELECT id, kind, status, closed_at IS NOT NULL AS closed FROM privacy.requests;
SELECT purpose, legal_basis, category, table_name, column_name, encrypted, retention, roles
  FROM privacy.processing_register WHERE table_name IS NOT NULL ORDER BY 1, 3, 4, 5 LIMIT 8;
SELECT gap, object FROM privacy.compliance_gaps() ORDER BY 1, 2;
RESET ROLE;
