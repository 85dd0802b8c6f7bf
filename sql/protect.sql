-- Protected tables (issue #4): the consent ledger, consent-aware row-level
-- security for every legal basis, writes, per-subject keys, owners,
-- BYPASSRLS roles and superusers, identifiers that need quoting, subject
-- columns of type bigint, uuid and text, partitions present and future,
-- tables that had policies of their own, unprotect_table, and the plan of
-- the visibility policy.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']);
SELECT privacy.create_purpose('profiling', 'consent', 'personalised offers', ARRAY['contact']);
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact']);
SELECT privacy.create_purpose('support', 'legitimate_interests', 'customer support', ARRAY['contact']);

-- roles used below (cluster-wide, dropped at the end)
CREATE ROLE prot_app LOGIN;
CREATE ROLE prot_owner LOGIN;
CREATE ROLE prot_bypass LOGIN BYPASSRLS;
CREATE ROLE prot_admin LOGIN IN ROLE privacy_admin;
CREATE ROLE prot_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('prot_app', 'marketing');
SELECT privacy.grant_purpose('prot_app', 'billing');
SELECT privacy.grant_purpose('prot_app', 'support');
SELECT privacy.grant_purpose('prot_owner', 'marketing');
SELECT privacy.grant_purpose('prot_bypass', 'support');
GRANT CREATE ON SCHEMA public TO prot_owner;

------------------------------------------------------------------------------
-- The consent ledger
------------------------------------------------------------------------------
-- The subjects of the visibility tests below:
--   1 granted marketing                 2 granted, then withdrew marketing
--   3 never asked                       4 objected to marketing (never granted)
--   5 granted marketing, objected to billing (a contract purpose)
--   6 objected to marketing, later granted it again
--   7 objected to support (a legitimate-interests purpose)
SET ROLE prot_officer;
SELECT privacy.grant_consent('1', 'marketing', 'web-form', '{"ip": "192.0.2.1", "form": "signup-v3"}');
SELECT privacy.grant_consent('2', 'marketing', 'web-form');
SELECT privacy.withdraw_consent('2', 'marketing', 'app-settings');
SELECT privacy.object('4', 'marketing', 'letter');
SELECT privacy.grant_consent('5', 'marketing', 'call-centre', '{"agent": "a-17"}');
SELECT privacy.object('5', 'billing', 'letter');
SELECT privacy.object('6', 'marketing', 'letter');
SELECT privacy.grant_consent('6', 'marketing', 'web-form', '{"form": "resubscribe"}');
SELECT privacy.object('7', 'support', 'e-mail');
SELECT s AS subject, privacy.has_consent(s, 'marketing') AS marketing,
       privacy.has_consent(s, 'billing') AS billing, privacy.has_consent(s, 'support') AS support
  FROM unnest(ARRAY['1', '2', '3', '4', '5', '6', '7']) s ORDER BY s;
SELECT subject, purpose, legal_basis, state, source, evidence, recorded_by = session_user AS by_me
  FROM privacy.consents ORDER BY subject, purpose;
SELECT id, subject, purpose, action, source, evidence FROM privacy.consent_events ORDER BY id;
-- the state's date is when it last changed: a repeated grant is recorded in
-- the ledger and keeps the date consent was first given
SELECT since AS first_since FROM privacy.consents WHERE subject = '1' AND purpose = 'marketing' \gset
SELECT privacy.grant_consent('1', 'marketing', 'web-form');
SELECT state, since = :'first_since' AS since_kept, last_event
  FROM privacy.consents WHERE subject = '1' AND purpose = 'marketing';
SELECT count(*) AS grants_of_1 FROM privacy.consent_events WHERE subject = '1' AND action = 'grant';

-- consent only for purposes based on consent; objections for any purpose
SELECT privacy.grant_consent('1', 'billing', 'web-form');
SELECT privacy.withdraw_consent('1', 'support', 'web-form');
-- unknown purpose, empty or missing subject and source
SELECT privacy.grant_consent('1', 'nosuch', 'web-form');
SELECT privacy.withdraw_consent('1', 'nosuch', 'web-form');
SELECT privacy.object('1', 'nosuch', 'letter');
SELECT privacy.grant_consent('', 'marketing', 'web-form');
SELECT privacy.grant_consent(NULL, 'marketing', 'web-form');
SELECT privacy.grant_consent('1', 'marketing', '');
SELECT privacy.withdraw_consent('1', 'marketing', NULL);
SELECT privacy.object('1', 'support', '');
-- none of them left a trace
SELECT count(*) AS events FROM privacy.consent_events;
SELECT count(*) AS states FROM privacy.consent_state;
-- the compliance role reads the ledger but cannot change it
UPDATE privacy.consent_events SET source = 'forged';
RESET ROLE;

-- the ledger is append-only, even for its owner
UPDATE privacy.consent_events SET source = 'forged' WHERE subject = '1';
DELETE FROM privacy.consent_events WHERE subject = '2';
TRUNCATE privacy.consent_events;
SELECT count(*) AS events, count(*) FILTER (WHERE source = 'forged') AS forged FROM privacy.consent_events;

-- application roles neither record nor read consent
SET ROLE prot_app;
SELECT privacy.grant_consent('3', 'marketing', 'web-form');
SELECT privacy.has_consent('1', 'marketing');
SELECT count(*) FROM privacy.consent_events;
SELECT count(*) FROM privacy.consents;
RESET ROLE;

------------------------------------------------------------------------------
-- protect_table: a plain table, owned by an ordinary role
------------------------------------------------------------------------------
CREATE TABLE customers (id integer PRIMARY KEY, customer_id bigint, name text,
                        email privacy.encrypted_text(contact));
ALTER TABLE customers OWNER TO prot_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO prot_app, prot_bypass;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'customers'::regclass;
SELECT count(*) AS policies FROM pg_policies WHERE tablename = 'customers';

-- only privacy_admin protects tables (and need not own them)
SET ROLE prot_app;
SELECT privacy.protect_table('customers', 'customer_id');
RESET ROLE;
SET ROLE prot_owner;
SELECT privacy.protect_table('customers', 'customer_id');
RESET ROLE;
SET ROLE prot_admin;
SELECT privacy.protect_table('customers', 'customer_id');
SELECT table_name, subject_column, parent FROM privacy.protected ORDER BY table_name::text;
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'customers'::regclass;
SELECT policyname, permissive, roles, cmd, with_check FROM pg_policies
 WHERE tablename = 'customers' ORDER BY policyname;
SELECT tgname, tgenabled, tgtype, encode(tgargs, 'escape') AS args FROM pg_trigger
 WHERE tgrelid = 'customers'::regclass AND NOT tgisinternal;

-- what cannot be protected, twice or at all
SELECT privacy.protect_table('customers', 'customer_id');
SELECT privacy.protect_table('customers', 'id');
CREATE VIEW customer_names AS SELECT id, name FROM customers;
SELECT privacy.protect_table('customer_names', 'id');
CREATE MATERIALIZED VIEW customer_count AS SELECT 1 AS id;
SELECT privacy.protect_table('customer_count', 'id');
CREATE TABLE leads (id bigint, "Lead" text);
SELECT privacy.protect_table('leads', 'customer_id');
SELECT privacy.protect_table('leads', 'lead');
SELECT privacy.protect_table('leads', NULL);
SELECT privacy.protect_table('no_such_table', 'id');
SELECT privacy.unprotect_table('leads');
SELECT privacy.unprotect_table('customer_names');
-- ... and nothing was left half done
SELECT table_name FROM privacy.protected ORDER BY table_name::text;
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
  FROM pg_class c WHERE c.relname IN ('leads', 'customer_names', 'customer_count') ORDER BY 1;
DROP VIEW customer_names;
DROP MATERIALIZED VIEW customer_count;
DROP TABLE leads;

------------------------------------------------------------------------------
-- Visibility
------------------------------------------------------------------------------
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES
    (1, 1, 'Ana', 'ana@example.org'), (2, 2, 'Ben', 'ben@example.org'),
    (3, 3, 'Cem', 'cem@example.org'), (4, 4, 'Dua', 'dua@example.org'),
    (5, 5, 'Eva', 'eva@example.org'), (6, 6, 'Fay', 'fay@example.org'),
    (7, 7, 'Gus', 'gus@example.org');
-- consent purpose: granted (1), re-granted after an objection (6), and the
-- objection to billing does not touch marketing (5); withdrawn (2), never
-- asked (3) and objected (4) are hidden
SET privacy.purpose = 'marketing';
SELECT id, customer_id, name, email FROM customers ORDER BY id;
SELECT count(*) FROM customers;
-- contract purpose: everyone but the subject who objected to billing (5)
SET privacy.purpose = 'billing';
SELECT id, customer_id, name, email FROM customers ORDER BY id;
-- legitimate interests: everyone but the subject who objected to support (7)
SET privacy.purpose = 'support';
SELECT id, customer_id, name, email FROM customers ORDER BY id;
-- point lookups follow the same rules
SET privacy.purpose = 'marketing';
SELECT name FROM customers WHERE id = 1;
SELECT name FROM customers WHERE id = 3;
-- SET LOCAL declares a purpose for one transaction
RESET privacy.purpose;
BEGIN;
SET LOCAL privacy.purpose = 'marketing';
SELECT count(*) FROM customers;
COMMIT;
SELECT count(*) FROM customers;
SET privacy.purpose = 'marketing';
RESET ROLE;

-- a change of consent applies from the next statement
SET ROLE prot_officer;
SELECT privacy.withdraw_consent('1', 'marketing', 'unsubscribe-link');
SELECT privacy.grant_consent('3', 'marketing', 'web-form');
SET ROLE prot_app;
SELECT id, name FROM customers ORDER BY id;
SET ROLE prot_officer;
SELECT privacy.grant_consent('1', 'marketing', 'web-form');
SELECT privacy.withdraw_consent('3', 'marketing', 'web-form');
-- an objection ends a consent: the state is one per subject and purpose
SELECT privacy.object('6', 'marketing', 'letter');
SELECT subject, state FROM privacy.consents WHERE purpose = 'marketing' ORDER BY subject;
SET ROLE prot_app;
SELECT id, name FROM customers ORDER BY id;
SET ROLE prot_officer;
SELECT privacy.grant_consent('6', 'marketing', 'web-form');
SET ROLE prot_app;
SELECT id, name FROM customers ORDER BY id;

-- only the canonical text form of a subject names it: id::text
SET ROLE prot_officer;
SELECT privacy.grant_consent('04', 'marketing', 'web-form');
SELECT privacy.grant_consent(' 4', 'marketing', 'web-form');
SELECT privacy.grant_consent('+4', 'marketing', 'web-form');
SELECT privacy.grant_consent('4.0', 'marketing', 'web-form');
SELECT privacy.grant_consent('99999999999999999999', 'marketing', 'web-form');
SELECT privacy.grant_consent('-9223372036854775808', 'marketing', 'web-form');
SET ROLE prot_app;
SELECT id, name FROM customers ORDER BY id;

-- errors, with a hint: no purpose, a purpose the role does not hold, an
-- unknown purpose; never a silent empty result
RESET privacy.purpose;
SELECT id, name FROM customers ORDER BY id;
SELECT count(*) FROM customers;
SELECT name FROM customers WHERE id = 1;
SET privacy.purpose = 'profiling';
SELECT id, name FROM customers ORDER BY id;
SET privacy.purpose = 'nosuch';
SELECT id, name FROM customers ORDER BY id;
-- writes need a purpose the role holds too (INSERT through WITH CHECK)
RESET privacy.purpose;
INSERT INTO customers VALUES (8, 8, 'Hal', 'hal@example.org');
UPDATE customers SET name = name;
DELETE FROM customers;
SET privacy.purpose = 'profiling';
INSERT INTO customers VALUES (8, 8, 'Hal', 'hal@example.org');
SET privacy.purpose = 'nosuch';
INSERT INTO customers VALUES (8, 8, 'Hal', 'hal@example.org');

-- UPDATE and DELETE touch only the rows the purpose may see
SET privacy.purpose = 'marketing';
UPDATE customers SET name = upper(name) RETURNING id, name;
-- INSERT needs a held purpose, not the subject's consent ...
INSERT INTO customers VALUES (8, 8, 'Hal', 'hal@example.org'), (9, 1, 'Ana (work)', 'ana@work.example');
-- ... but a row the purpose may not see cannot be read back with RETURNING,
-- nor moved out of sight by an UPDATE that reads the table
INSERT INTO customers VALUES (10, 3, 'Cem (work)', NULL) RETURNING id;
UPDATE customers SET customer_id = 3 WHERE id = 9;
DELETE FROM customers WHERE id >= 8 RETURNING id;
SET privacy.purpose = 'billing';
SELECT id, customer_id, name FROM customers ORDER BY id;
DELETE FROM customers WHERE id >= 8 RETURNING id;
SELECT count(*) FROM customers;
RESET privacy.purpose;
RESET ROLE;

------------------------------------------------------------------------------
-- Per-subject keys
------------------------------------------------------------------------------
-- every value written to a protected table is sealed under its subject's key
SELECT c.id, c.customer_id, k.scope, k.state, (privacy.envelope_info(c.email)).category
  FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id
 ORDER BY c.id;
SELECT count(DISTINCT (privacy.envelope_info(email)).key_id) AS keys,
       count(DISTINCT customer_id) AS subjects FROM customers;
-- a second row of a subject shares the subject's key
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES (11, 3, 'Cem (work)', 'cem@work.example');
RESET privacy.purpose;
RESET ROLE;
SELECT count(DISTINCT (privacy.envelope_info(email)).key_id) AS keys_of_3
  FROM customers WHERE customer_id = 3;
-- an UPDATE of the subject column reseals under the new subject's key
SELECT (privacy.envelope_info(email)).key_id AS key_of_2 FROM customers WHERE id = 2 \gset
SET ROLE prot_app;
SET privacy.purpose = 'billing';
UPDATE customers SET customer_id = 3 WHERE id = 2;
SELECT id, customer_id, email FROM customers WHERE customer_id = 3 ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
SELECT id, (privacy.envelope_info(email)).key_id = :key_of_2 AS old_key,
       (privacy.envelope_info(email)).key_id = (SELECT (privacy.envelope_info(email)).key_id
                                                 FROM customers WHERE id = 3) AS key_of_3
  FROM customers WHERE id = 2;
-- a superuser with no purpose writes envelopes as they are only in a
-- restore (row_security off, as pg_restore sets it); in an ordinary session
-- envelopes it copies in are resealed under their new subject's key, or
-- erasing that subject could not shred them
CREATE TABLE prot_staging AS SELECT email FROM customers WHERE id = 1;
INSERT INTO customers (id, customer_id, name, email) SELECT 20, 3, 'Copied', email FROM prot_staging;
SET row_security = off;
INSERT INTO customers (id, customer_id, name, email) SELECT 21, 3, 'Restored', email FROM prot_staging;
RESET row_security;
SELECT c.id, k.scope,
       k.id = (SELECT (privacy.envelope_info(email)).key_id FROM customers WHERE id = 1) AS key_of_subject_1
  FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id
 WHERE c.id IN (20, 21) ORDER BY c.id;
SET ROLE prot_app;
SET privacy.purpose = 'billing';
SELECT id, email FROM customers WHERE id = 20;
RESET privacy.purpose;
RESET ROLE;
DELETE FROM customers WHERE id IN (20, 21);
DROP TABLE prot_staging;
-- an UPDATE of another column keeps the key
SET ROLE prot_app;
SET privacy.purpose = 'billing';
UPDATE customers SET name = 'Ben B.' WHERE id = 2;
RESET privacy.purpose;
RESET ROLE;
SELECT (privacy.envelope_info(email)).key_id = (SELECT (privacy.envelope_info(email)).key_id
                                                 FROM customers WHERE id = 3) AS still_key_of_3
  FROM customers WHERE id = 2;
-- crypto-shredding: destroying subject 3's key erases every value of 3
SET ROLE prot_officer;
SELECT privacy.destroy_subject_key('3');
RESET ROLE;
SET ROLE prot_app;
SET privacy.purpose = 'billing';
SELECT id, customer_id, name, email, privacy.is_erased(email) AS erased FROM customers ORDER BY id;
-- erased values stay erased through later updates; new values of the
-- subject are sealed under a new key
UPDATE customers SET name = 'Cem C.' WHERE id = 3;
INSERT INTO customers VALUES (12, 3, 'Cem (new)', 'cem@new.example');
SELECT id, name, email, privacy.is_erased(email) AS erased FROM customers WHERE customer_id = 3 ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
SELECT k.state, count(*) FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id
 WHERE c.customer_id = 3 GROUP BY k.state ORDER BY 1;
-- a row without subject keeps its category key
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES (13, NULL, 'anonymous', 'anon@example.org');
RESET privacy.purpose;
RESET ROLE;
SELECT k.scope FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id
 WHERE c.id = 13;
-- rows without subject: hidden under a consent purpose, shown under others
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT count(*) FROM customers WHERE id = 13;
SET privacy.purpose = 'billing';
SELECT count(*) FROM customers WHERE id = 13;
DELETE FROM customers WHERE id IN (12, 13);
RESET privacy.purpose;
RESET ROLE;

------------------------------------------------------------------------------
-- The table owner, a BYPASSRLS role and superusers
------------------------------------------------------------------------------
-- the owner is subject to the policy (FORCE ROW LEVEL SECURITY)
SET ROLE prot_owner;
SELECT id FROM customers ORDER BY id;
SET privacy.purpose = 'billing';
SELECT id FROM customers ORDER BY id;
SET privacy.purpose = 'marketing';
SELECT id, name, email FROM customers ORDER BY id;
INSERT INTO customers VALUES (14, 14, 'Ida', 'ida@example.org');
SELECT id FROM customers WHERE id = 14;
RESET privacy.purpose;
RESET ROLE;

-- a BYPASSRLS role sees every row without a purpose ...
SET ROLE prot_bypass;
SELECT id, customer_id, name FROM customers ORDER BY id;
-- ... but the decryption gate still applies to encrypted columns
SELECT email FROM customers WHERE id = 1;
SET privacy.purpose = 'marketing';
SELECT email FROM customers WHERE id = 1;
SET privacy.purpose = 'support';
SELECT id, email FROM customers ORDER BY id;
-- and what it writes is sealed under subject keys as well
INSERT INTO customers VALUES (15, 15, 'Jan', 'jan@example.org');
RESET privacy.purpose;
INSERT INTO customers VALUES (16, 16, 'Kim', 'kim@example.org');
RESET ROLE;
SELECT c.id, k.scope FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id
 WHERE c.id IN (14, 15, 16) ORDER BY c.id;

-- superusers bypass row-level security (a PostgreSQL rule), but without a
-- purpose they see envelopes, never plaintext
SELECT id, customer_id, email::text LIKE 'pv1:%' AS envelope FROM customers ORDER BY id;
SET privacy.purpose = 'marketing';
SELECT id, email FROM customers WHERE id IN (1, 3) ORDER BY id;
RESET privacy.purpose;
DELETE FROM customers WHERE id >= 14;

------------------------------------------------------------------------------
-- The plan: the purpose check once per statement (InitPlan), the consent
-- state as a hashed subplan or an index probe, never a function per row
-- that reads the ledger
------------------------------------------------------------------------------
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO customers SELECT g, g, 'customer ' || g, NULL FROM generate_series(100, 2099) g;
RESET ROLE;
SET ROLE prot_officer;
SELECT count(privacy.grant_consent(g::text, 'marketing', 'import')) FROM generate_series(100, 1099) g;
RESET ROLE;
ANALYZE customers (id, customer_id, name);   -- see Q13 for the email column
ANALYZE privacy.consent_state;
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
EXPLAIN (COSTS OFF) SELECT count(*) FROM customers;
SELECT count(*) FROM customers;
EXPLAIN (COSTS OFF) SELECT name FROM customers WHERE id = 150;
SELECT name FROM customers WHERE id = 150;
SELECT name FROM customers WHERE id = 1500;
SET privacy.purpose = 'billing';
EXPLAIN (COSTS OFF) SELECT count(*) FROM customers;
SELECT count(*) FROM customers;
RESET privacy.purpose;
RESET ROLE;
-- the policy is one call of a C function per row (privacy_internal.visible,
-- which answers from its cache or an index probe, never through SQL); no
-- SQL function of the extension runs per row
SET track_functions = 'all';
SELECT pg_stat_reset();
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT count(*) FROM customers;
RESET privacy.purpose;
RESET ROLE;
SELECT pg_stat_force_next_flush();
SELECT funcname, calls FROM pg_stat_user_functions
 WHERE schemaname IN ('privacy', 'privacy_internal') AND funcname IN ('visible', 'purpose_held', 'has_consent', 'subject_int8') ORDER BY 1;
RESET track_functions;
DELETE FROM customers WHERE id >= 100;

------------------------------------------------------------------------------
-- Identifiers that need quoting; subject columns of type uuid and text
------------------------------------------------------------------------------
CREATE SCHEMA "Sales Dept";
GRANT USAGE ON SCHEMA "Sales Dept" TO prot_app;
CREATE TABLE "Sales Dept"."Customer List" ("Customer ID" bigint, "Name" text,
                                          email privacy.encrypted_text(contact));
-- a uuid subject in a column whose name holds quote characters, in a table whose name does too
CREATE TABLE "Sales Dept"."O'Brien ""Devices""" ("owner's ""id""" uuid, label text,
                                               serial privacy.encrypted_text(contact));
-- a text subject
CREATE TABLE "Sales Dept".accounts (handle text PRIMARY KEY, bio privacy.encrypted_text(contact));
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "Sales Dept" TO prot_app;
SELECT privacy.protect_table('"Sales Dept"."Customer List"', 'Customer ID');
SELECT privacy.protect_table('"Sales Dept"."O''Brien ""Devices"""', 'owner''s "id"');
SELECT privacy.protect_table('"Sales Dept".accounts', 'handle');
-- case and spaces matter
SELECT privacy.protect_table('"Sales Dept"."customer list"', 'Customer ID');
SELECT table_name, subject_column FROM privacy.protected ORDER BY table_name::text;
SELECT tablename, policyname, qual LIKE '%"Customer ID"%' AS quotes_column
  FROM pg_policies WHERE schemaname = 'Sales Dept' AND tablename = 'Customer List' ORDER BY policyname;
SELECT tgrelid::regclass, encode(tgargs, 'escape') AS subject_column FROM pg_trigger
 WHERE tgname = 'privacy_seal_row' AND tgrelid::regclass::text LIKE '"Sales Dept".%'
 ORDER BY tgrelid::regclass::text;

SET ROLE prot_officer;
SELECT privacy.grant_consent('42', 'marketing', 'web-form');
SELECT privacy.grant_consent('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'marketing', 'web-form');
SELECT privacy.grant_consent('Zoë O''Hara', 'marketing', 'web-form');
SELECT privacy.object('b1ffcd00-0d1c-4ff9-8c7e-7cc0ce491b22', 'billing', 'letter');
RESET ROLE;
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO "Sales Dept"."Customer List" VALUES (42, 'Lea', 'lea@example.org'), (43, 'Max', 'max@example.org');
INSERT INTO "Sales Dept"."O'Brien ""Devices""" VALUES
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'phone', 'SN-1'),
    ('b1ffcd00-0d1c-4ff9-8c7e-7cc0ce491b22', 'tablet', 'SN-2'),
    ('c2aade11-1e2d-4aaa-9d8f-8dd1df5a2c33', 'watch', 'SN-3');
INSERT INTO "Sales Dept".accounts VALUES ('Zoë O''Hara', 'likes tea'), ('zoë o''hara', 'likes coffee'), ('bob', 'hi');
SET privacy.purpose = 'marketing';
SELECT * FROM "Sales Dept"."Customer List" ORDER BY 1;
SELECT * FROM "Sales Dept"."O'Brien ""Devices""" ORDER BY 1;
SELECT * FROM "Sales Dept".accounts ORDER BY 1;
SET privacy.purpose = 'billing';
SELECT * FROM "Sales Dept"."O'Brien ""Devices""" ORDER BY 1;
SELECT count(*) FROM "Sales Dept".accounts;
UPDATE "Sales Dept"."O'Brien ""Devices""" SET label = label || '!';
RESET privacy.purpose;
SELECT * FROM "Sales Dept"."O'Brien ""Devices""";
RESET ROLE;
-- values are sealed under the subject's key, named by the same text
SELECT "Customer ID", k.scope FROM "Sales Dept"."Customer List" t
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(t.email)).key_id ORDER BY 1;
SELECT label, k.scope FROM "Sales Dept"."O'Brien ""Devices""" t
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(t.serial)).key_id ORDER BY 1;
SET ROLE prot_officer;
SELECT privacy.destroy_subject_key('42');
SELECT privacy.destroy_subject_key('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT privacy.destroy_subject_key('Zoë O''Hara');
RESET ROLE;
SET ROLE prot_app;
SET privacy.purpose = 'billing';
SELECT * FROM "Sales Dept"."Customer List" ORDER BY 1;
SELECT label, serial FROM "Sales Dept"."O'Brien ""Devices""" ORDER BY 1;
SELECT * FROM "Sales Dept".accounts ORDER BY 1;
RESET privacy.purpose;
RESET ROLE;
-- unprotect_table quotes them as well
SELECT privacy.unprotect_table('"Sales Dept"."Customer List"');
SELECT privacy.unprotect_table('"Sales Dept"."O''Brien ""Devices"""');
SELECT privacy.unprotect_table('"Sales Dept".accounts');
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers
  FROM pg_class c WHERE c.relnamespace = '"Sales Dept"'::regnamespace AND c.relkind = 'r' ORDER BY 1;
SET ROLE prot_app;
SELECT "Customer ID", "Name" FROM "Sales Dept"."Customer List" ORDER BY 1;
RESET ROLE;

------------------------------------------------------------------------------
-- Partitioned tables: present partitions, and partitions created or
-- attached later
------------------------------------------------------------------------------
CREATE TABLE orders (id integer, customer_id integer, placed date, item text,
                     address privacy.encrypted_text(contact)) PARTITION BY RANGE (placed);
ALTER TABLE orders OWNER TO prot_owner;
CREATE TABLE orders_2023 PARTITION OF orders FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE orders_2024 PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
ALTER TABLE orders_2023 OWNER TO prot_owner;
ALTER TABLE orders_2024 OWNER TO prot_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders, orders_2023, orders_2024 TO prot_app;
SELECT privacy.protect_table('orders', 'customer_id');
-- a partition created afterwards, by the owner, itself partitioned
SET ROLE prot_owner;
CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY HASH (customer_id);
CREATE TABLE orders_2025_a PARTITION OF orders_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE orders_2025_b PARTITION OF orders_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON orders_2025, orders_2025_a, orders_2025_b TO prot_app;
RESET ROLE;
SELECT table_name, subject_column, parent FROM privacy.protected
 WHERE table_name::text LIKE 'orders%' ORDER BY table_name::text;
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relname LIKE 'orders%' AND relkind IN ('r', 'p') ORDER BY relname;
SELECT tablename, string_agg(policyname || ' ' || permissive, ', ' ORDER BY policyname) AS policies
  FROM pg_policies WHERE tablename LIKE 'orders%' GROUP BY tablename ORDER BY tablename;
SELECT tgrelid::regclass AS partition, count(*) AS seal_triggers FROM pg_trigger
 WHERE tgname = 'privacy_seal_row' AND tgrelid::regclass::text LIKE 'orders%'
 GROUP BY 1 ORDER BY tgrelid::regclass::text;
-- a partition cannot be protected (or unprotected) on its own
SELECT privacy.protect_table('orders_2024', 'customer_id');
SELECT privacy.unprotect_table('orders_2024');
CREATE TABLE events (id integer, subject text) PARTITION BY LIST (id);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
SELECT privacy.protect_table('events_1', 'subject');
DROP TABLE events;

SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO orders VALUES (1, 1, '2023-05-01', 'book', '1 Main St'), (2, 3, '2023-06-01', 'pen', '3 Side St'),
                          (3, 1, '2024-05-01', 'lamp', '1 Main St'), (4, 3, '2024-06-01', 'desk', '3 Side St'),
                          (5, 1, '2025-05-01', 'sofa', '1 Main St'), (6, 3, '2025-06-01', 'rug', '3 Side St'),
                          (7, 6, '2025-07-01', 'mug', '6 High St');
SET privacy.purpose = 'marketing';
SELECT tableoid::regclass AS partition, id, customer_id, item, address FROM orders ORDER BY id;
-- querying a partition directly is filtered too
SELECT id FROM orders_2023 ORDER BY id;
SELECT id FROM orders_2024 ORDER BY id;
SELECT id FROM orders_2025 ORDER BY id;
SELECT id FROM orders_2025_a UNION ALL SELECT id FROM orders_2025_b ORDER BY id;
RESET privacy.purpose;
SELECT id FROM orders_2023;
SELECT id FROM orders_2025_b;
RESET ROLE;
-- every partition seals under subject keys (the trigger is cloned)
SELECT o.tableoid::regclass AS partition, o.id, k.scope FROM orders o
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(o.address)).key_id ORDER BY o.id;

-- ----------------------------------------------------------------------------
-- FIXED (found in review of issue #4): a partition ATTACHed after protect_table was
-- not protected.  The event trigger privacy_protect_new_partitions looks at
-- the objects of pg_event_trigger_ddl_commands(); for ALTER TABLE ... ATTACH
-- PARTITION that object is the partitioned table itself (which it skips), never
-- the attached partition.  Correct output below would be: orders_2026 listed in
-- privacy.protected with parent orders, relrowsecurity/relforcerowsecurity
-- t/t, the policies privacy_select, _insert, _update, _delete, and prot_app under
-- marketing seeing only ids 8 (subject 1) in orders_2026 directly and an
-- error without a purpose.  The expected output records the buggy result:
-- orders_2026 missing from privacy.protected, RLS off, every row visible.
-- (Through the parent, orders' own policies do filter its rows.)
CREATE TABLE orders_2026 (LIKE orders INCLUDING ALL);
ALTER TABLE orders_2026 OWNER TO prot_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders_2026 TO prot_app;
INSERT INTO orders_2026 VALUES (8, 1, '2026-05-01', 'vase', '1 Main St'), (9, 3, '2026-06-01', 'clock', '3 Side St');
ALTER TABLE orders ATTACH PARTITION orders_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT table_name, subject_column, parent FROM privacy.protected WHERE table_name = 'orders_2026'::regclass;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'orders_2026';
SELECT policyname FROM pg_policies WHERE tablename = 'orders_2026' ORDER BY 1;
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT id FROM orders WHERE placed >= '2026-01-01' ORDER BY id;
SELECT id FROM orders_2026 ORDER BY id;
RESET privacy.purpose;
SELECT id FROM orders_2026 ORDER BY id;
RESET ROLE;
-- (the attached partition does get the cloned seal trigger)
SELECT count(*) AS seal_triggers FROM pg_trigger WHERE tgname = 'privacy_seal_row' AND tgrelid = 'orders_2026'::regclass;
-- END FIXED
-- ----------------------------------------------------------------------------

-- unprotect_table undoes all of it, partitions included
SELECT privacy.unprotect_table('orders');
SELECT count(*) AS protected_orders FROM privacy.protected WHERE table_name::text LIKE 'orders%';
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relname LIKE 'orders%' AND relkind IN ('r', 'p') ORDER BY relname;
SELECT count(*) AS policies FROM pg_policies WHERE tablename LIKE 'orders%';
SELECT count(*) AS seal_triggers FROM pg_trigger
 WHERE tgname = 'privacy_seal_row' AND tgrelid::regclass::text LIKE 'orders%';
-- a partition created now is not protected
CREATE TABLE orders_2027 PARTITION OF orders FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT count(*) AS protected_orders FROM privacy.protected WHERE table_name::text LIKE 'orders%';
SELECT relrowsecurity FROM pg_class WHERE relname = 'orders_2027';
SET ROLE prot_app;
SELECT count(*) FROM orders;
RESET ROLE;
DROP TABLE orders;

------------------------------------------------------------------------------
-- Tables with row-level security of their own
------------------------------------------------------------------------------
-- RLS enabled (not forced) with a permissive policy of the table's own
CREATE TABLE tickets (id integer, customer_id bigint, region text);
ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
CREATE POLICY region_eu ON tickets FOR ALL USING (region = 'eu');
GRANT SELECT, INSERT, UPDATE, DELETE ON tickets TO prot_app;
INSERT INTO tickets VALUES (1, 1, 'eu'), (2, 1, 'us'), (3, 2, 'eu'), (4, 3, 'eu'), (5, 5, 'us');
-- RLS enabled and forced, with a policy
CREATE TABLE vault (id integer, customer_id bigint);
ALTER TABLE vault ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault FORCE ROW LEVEL SECURITY;
CREATE POLICY low_ids ON vault FOR SELECT USING (id < 3);
GRANT SELECT ON vault TO prot_app;
INSERT INTO vault VALUES (1, 1), (2, 2), (3, 1);
-- RLS off, but a (dormant) policy exists
CREATE TABLE notes (id integer, customer_id bigint);
CREATE POLICY nothing ON notes USING (false);
GRANT SELECT ON notes TO prot_app;
INSERT INTO notes VALUES (1, 1), (2, 2);
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relname IN ('tickets', 'vault', 'notes') ORDER BY relname;
SELECT tablename, policyname, permissive, qual FROM pg_policies
 WHERE tablename IN ('tickets', 'vault', 'notes') ORDER BY tablename, policyname;
SET ROLE prot_app;
SELECT id FROM tickets ORDER BY id;
SELECT id FROM vault ORDER BY id;
SELECT id FROM notes ORDER BY id;
RESET ROLE;

SELECT privacy.protect_table('tickets', 'customer_id');
SELECT privacy.protect_table('vault', 'customer_id');
SELECT privacy.protect_table('notes', 'customer_id');
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relname IN ('tickets', 'vault', 'notes') ORDER BY relname;
SELECT tablename, policyname, permissive FROM pg_policies
 WHERE tablename IN ('tickets', 'vault', 'notes') ORDER BY tablename, policyname;
-- ours restricts further, theirs still applies
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT id, customer_id, region FROM tickets ORDER BY id;
SELECT id FROM vault ORDER BY id;
SELECT id FROM notes ORDER BY id;
SET privacy.purpose = 'billing';
SELECT id, customer_id, region FROM tickets ORDER BY id;
-- a write must satisfy both
INSERT INTO tickets VALUES (6, 1, 'us');
INSERT INTO tickets VALUES (6, 1, 'eu');
RESET privacy.purpose;
SELECT id FROM tickets ORDER BY id;
RESET ROLE;

-- unprotect_table restores the flags and policies exactly as they were
SELECT privacy.unprotect_table('tickets');
SELECT privacy.unprotect_table('vault');
SELECT privacy.unprotect_table('notes');
SELECT privacy.unprotect_table('tickets');
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relname IN ('tickets', 'vault', 'notes') ORDER BY relname;
SELECT tablename, policyname, permissive, qual FROM pg_policies
 WHERE tablename IN ('tickets', 'vault', 'notes') ORDER BY tablename, policyname;
SET ROLE prot_app;
SELECT id FROM tickets ORDER BY id;
SELECT id FROM vault ORDER BY id;
SELECT id FROM notes ORDER BY id;
RESET ROLE;
DROP TABLE tickets, vault, notes;

-- and for the plain table: RLS off again, no policy, no trigger; the values
-- stay sealed under their subject keys and readable under any allowed purpose
SELECT privacy.unprotect_table('customers');
SELECT privacy.unprotect_table('customers');
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'customers'::regclass;
SELECT count(*) AS policies FROM pg_policies WHERE tablename = 'customers';
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'customers'::regclass AND NOT tgisinternal;
SELECT count(*) AS protected FROM privacy.protected;
SET ROLE prot_app;
SELECT id, name FROM customers ORDER BY id;
SET privacy.purpose = 'support';
SELECT id, email FROM customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
SELECT DISTINCT k.scope FROM customers c JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id;
-- it can be protected again
SELECT privacy.protect_table('customers', 'customer_id');
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT id, name FROM customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;

-- ============================================================================
-- QUESTIONABLE BEHAVIOUR AND KNOWN BUGS (review of issue #4).  Each block
-- states what the correct result would be; the expected output records what
-- the code does today, so that a fix shows up as a diff to decide on.
-- ============================================================================

-- Q1 (FIXED: an executor hook asks for the purpose before any row is read; was questionable): with no row reaching the policy, a read without a purpose
-- is a silent empty result instead of the error the design asks for ("never
-- a silent empty result"): the purpose check is an InitPlan of the row filter,
-- so it only runs when some row is filtered.  Correct per DESIGN.md: the
-- no-purpose error for all three statements.
CREATE TABLE empty_one (id bigint);
GRANT SELECT ON empty_one TO prot_app;
SELECT privacy.protect_table('empty_one', 'id');
SET ROLE prot_app;
SELECT id FROM customers WHERE id = 12345;
SELECT id FROM customers WHERE false;
SELECT count(*) FROM empty_one;
RESET ROLE;
SELECT privacy.unprotect_table('empty_one');
DROP TABLE empty_one;

-- Q2 (FIXED: the UPDATE policy checks the new row against the consent check; was questionable): an UPDATE that neither filters on nor returns columns
-- does not check the new row against the visibility policy (PostgreSQL
-- requires SELECT policies on the new row only when the statement reads the
-- table), so under 'marketing' a visible row can be handed to a subject
-- without consent.  (In 0.2 the WITH CHECK of the policy for all commands
-- only required a held purpose.)  Correct: an error as for UPDATE ... WHERE above.
CREATE TABLE contacts (id integer, customer_id bigint, note text);
GRANT SELECT, UPDATE ON contacts TO prot_app;
SELECT privacy.protect_table('contacts', 'customer_id');
INSERT INTO contacts VALUES (1, 1, 'Ana'), (2, 3, 'Cem');
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT id, customer_id, note FROM contacts ORDER BY id;
UPDATE contacts SET customer_id = 3, note = 'moved out of sight';
SELECT id, customer_id, note FROM contacts ORDER BY id;
SET privacy.purpose = 'billing';
SELECT id, customer_id, note FROM contacts ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.unprotect_table('contacts');
DROP TABLE contacts;

-- Q3 (FIXED: protect_table now reseals existing rows; was a shredding gap): rows already in a table when protect_table runs
-- keep their category keys: nothing reseals them, so destroy_subject_key()
-- does not shred them.  Correct: every row sealed under its subject key once
-- the table is protected (scope 'subject' for both rows).
CREATE TABLE legacy (id bigint, email privacy.encrypted_text(contact));
SET privacy.purpose = 'billing';
INSERT INTO legacy VALUES (1, 'old@example.org');
SELECT privacy.protect_table('legacy', 'id');
INSERT INTO legacy VALUES (2, 'new@example.org');
RESET privacy.purpose;
SELECT l.id, k.scope FROM legacy l JOIN privacy.keys k ON k.id = (privacy.envelope_info(l.email)).key_id ORDER BY l.id;

-- Q4 (was a shredding gap): a superuser (or privacy_admin member) writing
-- without a purpose in an ordinary session gets the value sealed under the
-- subject key like anyone; only a restore (row_security off) is taken
-- verbatim.
INSERT INTO legacy VALUES (3, 'typed-by-dba@example.org');
SELECT l.id, k.scope FROM legacy l JOIN privacy.keys k ON k.id = (privacy.envelope_info(l.email)).key_id
 WHERE l.id = 3;
SELECT privacy.unprotect_table('legacy');
DROP TABLE legacy;

-- Q5 (questionable, design conflict): COPY FROM into a protected table is
-- refused by PostgreSQL for everyone subject to RLS (FORCE includes the
-- owner), though DESIGN.md lists COPY among the ordinary SQL applications
-- keep writing.  COPY TO works (it runs as a query).
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
\copy customers (id, customer_id, name) from program 'true' with (format csv)
COPY customers (id, customer_id, name) TO stdout;
RESET privacy.purpose;
RESET ROLE;

-- Q6 (FIXED: the register and seal triggers follow the policy through a rename; was a bug): renaming the subject column breaks writes.  The policy follows the
-- rename (it holds a column reference), but the seal trigger's argument and
-- privacy.protected keep the old name; the error's hint (protect again)
-- cannot be followed without unprotect_table first.  Correct: the INSERT
-- succeeds (or the rename is refused).
ALTER TABLE customers RENAME customer_id TO client_id;
SELECT subject_column FROM privacy.protected WHERE table_name = 'customers'::regclass;
SET ROLE prot_app;
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES (31, 1, 'renamed', 'r@example.org');
SELECT count(*) FROM customers;
RESET privacy.purpose;
RESET ROLE;
ALTER TABLE customers RENAME client_id TO customer_id;

-- Q7 (FIXED by an sql_drop event trigger; was a bug): a dropped protected table leaves its row in privacy.protected
-- (shown by OID).  Correct: no row left (an sql_drop event trigger).
CREATE TABLE dropped_one (id bigint);
SELECT privacy.protect_table('dropped_one', 'id');
DROP TABLE dropped_one;
SELECT count(*) AS stale_rows, min(subject_column) AS subject_column FROM privacy.protected_tables pt
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = pt.tbl);
-- unprotect_table() cannot clear it either (it names the table by OID)
DO $$
BEGIN
    PERFORM privacy.unprotect_table(pt.tbl) FROM privacy.protected_tables pt
      WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = pt.tbl);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'unprotect_table failed with SQLSTATE %', SQLSTATE;
END
$$;
DELETE FROM privacy.protected_tables pt WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = pt.tbl);

-- Q8 (FIXED: a detached partition stays protected on its own; was a bug): a DETACHed partition stays in privacy.protected (with the old
-- parent) and keeps forced RLS and the policies, but loses the cloned seal
-- trigger; it can be neither unprotected nor protected on its own.  Correct:
-- detaching unprotects it (or leaves it a protected table of its own).
CREATE TABLE visits (id integer, customer_id bigint) PARTITION BY LIST (id);
CREATE TABLE visits_1 PARTITION OF visits FOR VALUES IN (1);
SELECT privacy.protect_table('visits', 'customer_id');
ALTER TABLE visits DETACH PARTITION visits_1;
SELECT table_name, parent FROM privacy.protected WHERE table_name::text LIKE 'visits%' ORDER BY table_name::text;
SELECT relrowsecurity, relforcerowsecurity,
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'privacy_seal_row') AS seal_triggers
  FROM pg_class c WHERE relname = 'visits_1';
SELECT privacy.unprotect_table('visits_1');
SELECT privacy.protect_table('visits_1', 'customer_id');
SELECT privacy.unprotect_table('visits');
DROP TABLE visits, visits_1;

-- Q9 (FIXED: children of inheritance are protected with their parent; was a bug): a child of traditional inheritance cannot be protected, with a
-- message that calls it a partition; protecting the parent leaves the child
-- readable directly.  Correct: the child can be protected (or the parent's
-- protection covers it, as for partitions).
CREATE TABLE people (id bigint);
CREATE TABLE staff () INHERITS (people);
SELECT privacy.protect_table('people', 'id');
SELECT privacy.protect_table('staff', 'id');
SELECT relname, relrowsecurity FROM pg_class WHERE relname IN ('people', 'staff') ORDER BY 1;
SELECT privacy.unprotect_table('people');
DROP TABLE people CASCADE;

-- Q10 (FIXED: the seal trigger drops char(n) padding as subject::text does; was a bug): for a character(n) subject column the policy compares col::text
-- (padding stripped) while the seal trigger names the key by the type's
-- output (padded): consent for 'ab' shows the row, but destroy_subject_key('ab')
-- destroys nothing, and the values are shredded only by 'ab   '.  Correct:
-- one text form for both (or protect_table refuses such a column).
CREATE TABLE padded (code character(5), email privacy.encrypted_text(contact));
SELECT privacy.protect_table('padded', 'code');
SELECT privacy.grant_consent('ab', 'marketing', 'web-form');
SET privacy.purpose = 'marketing';
INSERT INTO padded VALUES ('ab', 'ab@example.org');
SELECT privacy.destroy_subject_key('ab') AS keys_destroyed;
SELECT email FROM padded;
SELECT privacy.destroy_subject_key('ab   ') AS keys_destroyed;
SELECT email FROM padded;
RESET privacy.purpose;
SELECT privacy.unprotect_table('padded');
DROP TABLE padded;

-- Q11 (questionable): subjects are compared as text, so a consent recorded
-- for another spelling of the same uuid (upper case, no hyphens) does not
-- apply.  The API documents id::text as the canonical form; correct
-- (arguably): uuid subjects normalised, or the spelling refused.
CREATE TABLE gadgets (owner uuid, label text);
GRANT SELECT ON gadgets TO prot_app;
SELECT privacy.protect_table('gadgets', 'owner');
INSERT INTO gadgets VALUES ('d3bbef22-2f3e-4bbb-ae90-9ee2ef6b3d44', 'upper'), ('e4cc0033-3a4f-4ccc-bf01-aff3f07c4e55', 'bare');
SELECT privacy.grant_consent('D3BBEF22-2F3E-4BBB-AE90-9EE2EF6B3D44', 'marketing', 'web-form');
SELECT privacy.grant_consent('e4cc00333a4f4cccbf01aff3f07c4e55', 'marketing', 'web-form');
SET ROLE prot_app;
SET privacy.purpose = 'marketing';
SELECT label FROM gadgets;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.unprotect_table('gadgets');
DROP TABLE gadgets;

-- Q12 (partly FIXED: drop_purpose and has_consent now raise clear errors): an objection to a purpose that is not based on consent
-- cannot be lifted (grant and withdraw are refused for it), and a purpose
-- with consent history cannot be dropped: drop_purpose fails on the ledger's
-- foreign key with a raw constraint error rather than an explanation.
SELECT privacy.grant_consent('7', 'support', 'web-form');
SELECT privacy.withdraw_consent('7', 'support', 'web-form');
SELECT privacy.drop_purpose('support');
-- (and has_consent() answers false for a purpose that does not exist)
SELECT privacy.has_consent('1', 'nosuch');

-- Q13 (FIXED: encrypted types keep no statistics; was a bug in the encrypted types): ANALYZE
-- fails on any table with a non-searchable encrypted column holding two or
-- more values: ANALYZE compares values with the type's default btree
-- operators, which refuse columns without a blind index.  Autovacuum's
-- auto-analyze hits the same error, so such tables never get statistics.
-- Correct: ANALYZE succeeds (the type skips comparisons, e.g. no default
-- btree opclass for non-searchable values, or a typanalyze that collects
-- only null fraction and width).
ANALYZE customers;
ANALYZE customers (email);

-- clean up
DROP TABLE customers;
DROP SCHEMA "Sales Dept" CASCADE;
REVOKE CREATE ON SCHEMA public FROM prot_owner;
DROP EXTENSION privacy;
DROP ROLE prot_app, prot_owner, prot_bypass, prot_admin, prot_officer;
