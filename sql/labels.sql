-- Declarative classification (issue #7): SECURITY LABEL FOR privacy.
-- Every label form on columns and tables, equivalence with classify() and
-- protect_table(), idempotence (no rewrite, no new key, no register update),
-- changes, IS NULL, every error (and that nothing changes after one),
-- labels by roles without the privilege, labels in a session that looks
-- like a restore, and pg_seclabels.  The SQLSTATE of each error is echoed
-- after it.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_category('financial', 'bank accounts');
SELECT privacy.create_purpose('lbl_support', 'legitimate_interests', 'support', ARRAY['contact', 'financial']);

CREATE ROLE lbl_owner LOGIN;              -- owns a table, not privacy_admin
CREATE ROLE lbl_admin LOGIN IN ROLE privacy_admin;
GRANT CREATE ON SCHEMA public TO lbl_owner, lbl_admin;

-- What the registers and the catalog say about a table, to compare.
CREATE FUNCTION lbl_state(tbl regclass) RETURNS TABLE (what text, val text)
LANGUAGE sql AS $$
    SELECT 'column ' || a.attname, format_type(a.atttypid, a.atttypmod)
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'classified ' || cc.col, format('%s searchable=%s encrypted=%s', cc.category, cc.searchable, cc.encrypted)
      FROM privacy.column_categories cc WHERE cc.tbl = lbl_state.tbl
    UNION ALL
    SELECT 'protected', format('subject=%s', pt.subject_column)
      FROM privacy.protected_tables pt WHERE pt.tbl = lbl_state.tbl
    UNION ALL
    SELECT 'rls', format('enabled=%s forced=%s', c.relrowsecurity, c.relforcerowsecurity)
      FROM pg_class c WHERE c.oid = tbl
    UNION ALL
    SELECT 'policy ' || p.polname, '' FROM pg_policy p WHERE p.polrelid = tbl
    UNION ALL
    SELECT 'trigger ' || t.tgname, '' FROM pg_trigger t WHERE t.tgrelid = tbl AND NOT t.tgisinternal
    UNION ALL
    SELECT 'label ' || coalesce(a.attname, '(table)'), s.label
      FROM pg_seclabel s LEFT JOIN pg_attribute a ON a.attrelid = s.objoid AND a.attnum = s.objsubid AND s.objsubid > 0
     WHERE s.classoid = 'pg_class'::regclass AND s.objoid = tbl AND s.provider = 'privacy'
    ORDER BY 1, 2
$$;

------------------------------------------------------------------------------
-- Column labels do what classify() does
------------------------------------------------------------------------------
CREATE TABLE lbl_customers (
    customer_id bigint PRIMARY KEY,
    email text,
    name text,
    iban varchar(34),
    photo bytea,
    declared privacy.encrypted_text(contact),
    age smallint
);
INSERT INTO lbl_customers VALUES
    (1, 'ada@example.org', 'Ada', 'DE89370400440532013000', '\x0102', 'declared-1', 36),
    (2, 'bob@example.org', 'Bob', NULL, NULL, NULL, 41);
-- classified with the functions below, for comparison
CREATE TABLE lbl_twin (LIKE lbl_customers);

-- a plain column: only recorded (classify's default), the column stays text
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS 'category=contact';
-- converted and encrypted, with equality search
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.email IS 'category=contact, searchable, encrypt';
-- keys and flags in any case, whitespace (newlines too) anywhere between items
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.iban IS '  Category =
    financial ,ENCRYPT  ';
-- a double-quoted value; bytea becomes encrypted_bytea
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.photo IS 'category="contact",encrypt';
-- a column whose type already names the category: recorded at CREATE TABLE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.declared IS 'category=contact';
SELECT * FROM lbl_state('lbl_customers');

-- the same as classify(): a second table classified with the functions
-- ends up in the same state
SELECT privacy.classify('lbl_twin', 'name', 'contact');
SELECT privacy.classify('lbl_twin', 'email', 'contact', searchable => true, encrypt => true);
SELECT privacy.classify('lbl_twin', 'iban', 'financial', encrypt => true);
SELECT privacy.classify('lbl_twin', 'photo', 'contact', encrypt => true);
SELECT what, val FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'label %'
EXCEPT
SELECT what, val FROM lbl_state('lbl_twin');

-- the values are sealed under the category keys and read back with a purpose
SELECT customer_id, (privacy.envelope_info(email)).category AS email_category,
       (privacy.envelope_info(email)).searchable AS email_searchable,
       (privacy.envelope_info(iban)).category AS iban_category
  FROM lbl_customers ORDER BY customer_id;
SET privacy.purpose = 'lbl_support';
SELECT customer_id, email, iban, photo FROM lbl_customers ORDER BY customer_id;
SELECT customer_id FROM lbl_customers WHERE email = 'bob@example.org';
RESET privacy.purpose;

-- SECURITY LABEL without FOR: privacy is the only provider loaded
SECURITY LABEL ON COLUMN lbl_customers.age IS 'category=contact';
SELECT what, val FROM lbl_state('lbl_customers') WHERE what LIKE '% age';
SELECT privacy.classify('lbl_twin', 'age', 'contact');
-- from a function (SPI), as a migration tool might
DO $$ BEGIN EXECUTE 'SECURITY LABEL FOR privacy ON COLUMN lbl_twin.name IS ''category=financial'''; END $$;
SELECT what, val FROM lbl_state('lbl_twin') WHERE what LIKE '% name';
-- classify() afterwards wins; the label keeps saying what was declared by it
SELECT privacy.classify('lbl_twin', 'name', 'contact');

------------------------------------------------------------------------------
-- Table labels do what protect_table() does
------------------------------------------------------------------------------
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id';
CREATE TABLE "Lbl Orders" ("Customer Id" text, "account, ref" text, note privacy.encrypted_text(contact));
SECURITY LABEL FOR privacy ON TABLE "Lbl Orders" IS 'SUBJECT = "Customer Id"';
SELECT * FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'c%';
SELECT * FROM lbl_state('"Lbl Orders"') WHERE what NOT LIKE 'c%';
SELECT privacy.protect_table('lbl_twin', 'customer_id');
SELECT what, val FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'label %'
EXCEPT
SELECT what, val FROM lbl_state('lbl_twin');
-- the rows moved under their subjects' keys
SELECT customer_id, (privacy.envelope_info(email)).category,
       (privacy.envelope_info(email)).key_id IN (SELECT id FROM privacy.data_keys WHERE scope = 'subject')
           AS under_subject_key
  FROM lbl_customers ORDER BY customer_id;

SELECT objtype, objname, provider, label FROM pg_seclabels WHERE provider = 'privacy' ORDER BY objname;

------------------------------------------------------------------------------
-- Idempotence: the same label again changes nothing (no rewrite, no key,
-- no register update), however it is written
------------------------------------------------------------------------------
SELECT pg_relation_filenode('lbl_customers') AS filenode_before \gset
CREATE TEMP VIEW lbl_fingerprint AS
SELECT 'register' AS what, tbl::text || '.' || col || ' ' || classified_at AS val FROM privacy.column_categories
UNION ALL SELECT 'protected', tbl::text || ' ' || protected_at FROM privacy.protected_tables
UNION ALL SELECT 'key', id || ' ' || scope || ' ' || state FROM privacy.data_keys
UNION ALL SELECT 'envelope', customer_id || ' ' || email::text || ' ' || iban::text FROM lbl_customers
UNION ALL SELECT 'policy', polrelid::regclass || ' ' || polname FROM pg_policy
UNION ALL SELECT 'trigger', tgrelid::regclass || ' ' || tgname || ' ' || oid FROM pg_trigger WHERE NOT tgisinternal;
CREATE TEMP TABLE lbl_before AS SELECT * FROM lbl_fingerprint;
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.email IS 'category=contact, searchable, encrypt';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.email IS 'encrypt,searchable,category=contact';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.iban IS 'category=financial, encrypt';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.iban IS 'category=financial';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS 'category=contact';
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id';
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS ' subject = "customer_id" ';
SELECT pg_relation_filenode('lbl_customers') = :filenode_before AS not_rewritten;
SELECT count(*) > 40 AS fingerprint_taken FROM lbl_before;
(SELECT * FROM lbl_fingerprint EXCEPT SELECT * FROM lbl_before)
UNION ALL
(SELECT * FROM lbl_before EXCEPT SELECT * FROM lbl_fingerprint);
DROP VIEW lbl_fingerprint;
SELECT label FROM pg_seclabels WHERE objname IN ('lbl_customers.email', 'lbl_customers') ORDER BY objname;

------------------------------------------------------------------------------
-- Changing a label: another category reseals, another subject re-protects
------------------------------------------------------------------------------
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.declared IS 'category=financial';
SELECT customer_id, (privacy.envelope_info(declared)).category FROM lbl_customers ORDER BY 1;
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.iban IS 'category=financial, searchable';
SECURITY LABEL FOR privacy ON TABLE "Lbl Orders" IS 'subject="account, ref"';
SELECT * FROM lbl_state('"Lbl Orders"') WHERE what IN ('protected', 'label (table)');
SELECT what, val FROM lbl_state('lbl_customers') WHERE what IN ('column declared', 'column iban', 'classified declared', 'classified iban');

------------------------------------------------------------------------------
-- Errors: each is an ERROR with detail and hint, and nothing changes
------------------------------------------------------------------------------
CREATE TEMP TABLE lbl_snapshot AS
SELECT * FROM lbl_state('lbl_customers') UNION ALL SELECT * FROM lbl_state('"Lbl Orders"');
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS '';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS '   ';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS '=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'kategory=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact, purpose=billing';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=nosuch';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=Contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact searchable';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact; encrypt';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact, category=financial';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact, searchable=true';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact, encrypt, encrypt';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact,';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'searchable, encrypt';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category="contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category="contact" x';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'subject=customer_id';
\echo :LAST_ERROR_SQLSTATE
-- what classify() refuses, the label refuses (after parsing: the label is
-- not stored either)
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=unclassified';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.age IS 'category=contact, encrypt';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS 'category=contact, searchable';
\echo :LAST_ERROR_SQLSTATE
-- table labels
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=nosuch';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=Customer_ID';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'category=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id, searchable';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id, subject=name';
\echo :LAST_ERROR_SQLSTATE
-- objects that take no privacy label
CREATE VIEW lbl_view AS SELECT customer_id FROM lbl_customers;
CREATE SEQUENCE lbl_seq;
CREATE FUNCTION lbl_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
SECURITY LABEL FOR privacy ON SCHEMA public IS 'category=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON FUNCTION lbl_fn() IS 'category=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON ROLE lbl_owner IS 'subject=customer_id';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON VIEW lbl_view IS 'subject=customer_id';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_view.customer_id IS 'category=contact';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON SEQUENCE lbl_seq IS 'subject=x';
\echo :LAST_ERROR_SQLSTATE
-- a partition is protected through its partitioned table
CREATE TABLE lbl_events (subject bigint, at date) PARTITION BY RANGE (at);
CREATE TABLE lbl_events_2024 PARTITION OF lbl_events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SECURITY LABEL FOR privacy ON TABLE lbl_events_2024 IS 'subject=subject';
\echo :LAST_ERROR_SQLSTATE
SELECT objname AS labels_elsewhere FROM pg_seclabels
 WHERE provider = 'privacy' AND objname NOT LIKE 'lbl_customers%' AND objname NOT LIKE '"Lbl Orders"%';
-- nothing changed: the labels, the registers, the types, the protection
(SELECT * FROM lbl_state('lbl_customers') UNION ALL SELECT * FROM lbl_state('"Lbl Orders"'))
EXCEPT ALL SELECT * FROM lbl_snapshot;
SELECT * FROM lbl_snapshot
EXCEPT ALL (SELECT * FROM lbl_state('lbl_customers') UNION ALL SELECT * FROM lbl_state('"Lbl Orders"'));
SELECT count(*) AS protected_partitions FROM privacy.protected_tables WHERE tbl::text LIKE 'lbl_events%';

------------------------------------------------------------------------------
-- Privileges: PostgreSQL requires ownership of the table; privacy requires
-- what its functions require (EXECUTE, granted to privacy_admin)
------------------------------------------------------------------------------
SET ROLE lbl_owner;
CREATE TABLE lbl_owned (id bigint, email text);
INSERT INTO lbl_owned VALUES (1, 'carol@example.org');
SECURITY LABEL FOR privacy ON COLUMN lbl_owned.email IS 'category=contact, encrypt';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_owned IS 'subject=id';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON COLUMN lbl_owned.email IS NULL;
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_owned IS NULL;
\echo :LAST_ERROR_SQLSTATE
-- the functions themselves refuse as well
SELECT privacy.classify('lbl_owned', 'email', 'contact', encrypt => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM lbl_state('lbl_owned');
SELECT email FROM lbl_owned;
-- a privacy_admin member who does not own the table: PostgreSQL refuses
SET ROLE lbl_admin;
SECURITY LABEL FOR privacy ON COLUMN lbl_owned.email IS 'category=contact, encrypt';
\echo :LAST_ERROR_SQLSTATE
-- and on its own table it may
CREATE TABLE lbl_admins (id bigint, email text);
INSERT INTO lbl_admins VALUES (7, 'dave@example.org');
SECURITY LABEL FOR privacy ON COLUMN lbl_admins.email IS 'category=contact, encrypt';
SECURITY LABEL FOR privacy ON TABLE lbl_admins IS 'subject=id';
RESET ROLE;
SELECT * FROM lbl_state('lbl_admins');
-- the privilege is the function's: granting EXECUTE on classify() lets the
-- owner classify by label, and protect_table() stays refused
GRANT EXECUTE ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean) TO lbl_owner;
SET ROLE lbl_owner;
SECURITY LABEL FOR privacy ON COLUMN lbl_owned.email IS 'category=contact, encrypt';
SECURITY LABEL FOR privacy ON TABLE lbl_owned IS 'subject=id';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE EXECUTE ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean) FROM lbl_owner;
SELECT * FROM lbl_state('lbl_owned');

------------------------------------------------------------------------------
-- IS NULL undoes
------------------------------------------------------------------------------
-- a plaintext column: its classification is removed
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS NULL;
SELECT * FROM lbl_state('lbl_customers') WHERE what LIKE '% name';
-- again, and on a column that was never labelled or classified: nothing to do
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS NULL;
SECURITY LABEL FOR privacy ON COLUMN lbl_twin.customer_id IS NULL;
-- an encrypted column keeps its category: refused, the label stays
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.email IS NULL;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM lbl_state('lbl_customers') WHERE what LIKE '% email';
-- ... until it is converted back to plaintext (which needs a purpose)
SET privacy.purpose = 'lbl_support';
ALTER TABLE lbl_twin ALTER COLUMN email TYPE text USING email::text;
RESET privacy.purpose;
SECURITY LABEL FOR privacy ON COLUMN lbl_twin.email IS 'category=contact';
SECURITY LABEL FOR privacy ON COLUMN lbl_twin.email IS NULL;
SELECT * FROM lbl_state('lbl_twin') WHERE what LIKE '% email';
-- a table: unprotected, its row-level security flags back as they were
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS NULL;
SELECT * FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'c%';
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS NULL;
-- privacy.unclassify() called directly
SELECT privacy.unclassify('lbl_customers', 'age');
SELECT privacy.unclassify('lbl_customers', 'age');
\echo :LAST_ERROR_SQLSTATE
SELECT privacy.unclassify('lbl_customers', 'nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT privacy.unclassify('lbl_customers', 'iban');
\echo :LAST_ERROR_SQLSTATE
-- (the label on age stays: unclassify() does not know about labels)
SELECT objname, label FROM pg_seclabels WHERE objname = 'lbl_customers.age';

------------------------------------------------------------------------------
-- A label inside a transaction that rolls back leaves nothing
------------------------------------------------------------------------------
BEGIN;
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id';
SELECT count(*) AS protected_inside FROM privacy.protected_tables WHERE tbl = 'lbl_customers'::regclass;
ROLLBACK;
SELECT * FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'c%';

------------------------------------------------------------------------------
-- A session that looks like a restore (pg_dump scripts and pg_restore turn
-- row_security and check_function_bodies off, and run with no purpose as a
-- superuser): the label is checked and stored, not applied, since the dump
-- brings what it did.  A bad label is still an error.
------------------------------------------------------------------------------
SET row_security = off;
SET check_function_bodies = off;
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS 'category=contact';
SELECT * FROM lbl_state('lbl_customers') WHERE what NOT LIKE 'column %';
SECURITY LABEL FOR privacy ON COLUMN lbl_customers.name IS 'category';
\echo :LAST_ERROR_SQLSTATE
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=nosuch';
\echo :LAST_ERROR_SQLSTATE
-- a role that may not classify gets no restore treatment
SET ROLE lbl_owner;
SECURITY LABEL FOR privacy ON COLUMN lbl_owned.email IS 'category=contact';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- with a purpose declared it is an ordinary session
SET privacy.purpose = 'lbl_support';
SECURITY LABEL FOR privacy ON TABLE lbl_customers IS 'subject=customer_id';
SELECT * FROM lbl_state('lbl_customers') WHERE what = 'protected';
RESET privacy.purpose;
RESET row_security;
RESET check_function_bodies;

-- clean up
DROP TABLE lbl_customers, lbl_twin, "Lbl Orders", lbl_events, lbl_owned, lbl_admins CASCADE;
DROP SEQUENCE lbl_seq;
DROP FUNCTION lbl_fn(), lbl_state(regclass);
REVOKE CREATE ON SCHEMA public FROM lbl_owner, lbl_admin;
DROP EXTENSION privacy;
DROP ROLE lbl_owner, lbl_admin;
