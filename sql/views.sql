-- Views over protected tables (issue #13): the set-up the DBA and
-- developer guides recommend.  A view WITH (security_invoker = true) reads
-- the table with the rights of the role that queries it: consent, the
-- purpose check, the decryption gate and the access log apply to that role
-- as if it read the table itself.  A view owned by a superuser without it
-- shows every row (PostgreSQL's rule), which is why the guides warn.
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
CREATE ROLE vw_app LOGIN;
CREATE ROLE vw_owner LOGIN;
CREATE ROLE vw_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('vw_app', 'marketing');
SELECT privacy.grant_purpose('vw_app', 'billing');
GRANT CREATE ON SCHEMA public TO vw_owner;

CREATE TABLE vw_customers (id bigint PRIMARY KEY, name text,
                           email privacy.encrypted_text(contact),
                           iban privacy.encrypted_text(financial));
SELECT privacy.classify('vw_customers', 'name', 'contact');
SELECT privacy.protect_table('vw_customers', 'id');
GRANT SELECT ON vw_customers TO vw_app;
SET privacy.purpose = 'billing';
INSERT INTO vw_customers VALUES (1, 'Ana', 'ana@example.org', 'DE001'),
                                (2, 'Ben', 'ben@example.org', 'DE002'),
                                (3, 'Cem', 'cem@example.org', 'DE003');
RESET privacy.purpose;
-- 1 consented to marketing, 2 withdrew, 3 was never asked
SET ROLE vw_officer;
SELECT privacy.grant_consent('1', 'marketing', 'web-form');
SELECT privacy.grant_consent('2', 'marketing', 'web-form');
SELECT privacy.withdraw_consent('2', 'marketing', 'web-form');
RESET ROLE;

-- The recommended view: security_invoker, owned by the superuser that
-- created it.
CREATE VIEW vw_contacts WITH (security_invoker = true) AS
    SELECT id, name, email FROM vw_customers;
GRANT SELECT ON vw_contacts TO vw_app;
-- and the one the guides warn against: the same view, without it
CREATE VIEW vw_contacts_definer AS SELECT id, name, email FROM vw_customers;
GRANT SELECT ON vw_contacts_definer TO vw_app;

SET ROLE vw_app;
-- no purpose: refused, as the table itself would be
SELECT id, name FROM vw_contacts ORDER BY id;
-- marketing: only the subject who consented, values opened
SET privacy.purpose = 'marketing';
SELECT id, name, email::text FROM vw_contacts ORDER BY id;
SELECT count(*) FROM vw_contacts;
-- point lookups of hidden subjects find nothing
SELECT id FROM vw_contacts WHERE id = 2;
SELECT id FROM vw_contacts WHERE name = 'Cem';
-- billing (a contract purpose): every subject
SET privacy.purpose = 'billing';
SELECT id, name, email::text FROM vw_contacts ORDER BY id;
-- the view owned by a superuser, without security_invoker: every row under
-- marketing (the superuser's rights), values still only through the gate of
-- the querying session's purpose
SET privacy.purpose = 'marketing';
SELECT id, name FROM vw_contacts_definer ORDER BY id;
RESET privacy.purpose;
SELECT id, name FROM vw_contacts_definer ORDER BY id;
SELECT id, email::text FROM vw_contacts_definer ORDER BY id;
RESET ROLE;

-- A leaky function in the querying role's WHERE clause sees only the rows
-- the policy lets through: the view's quals run after the table's policy
-- (security barrier of row-level security), so the hidden subjects' names
-- never reach it.
CREATE FUNCTION vw_leak(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
$$ BEGIN RAISE NOTICE 'saw %', t; RETURN true; END $$;
SET ROLE vw_app;
SET privacy.purpose = 'marketing';
SELECT id FROM vw_contacts WHERE vw_leak(name) ORDER BY id;
SELECT id FROM vw_contacts WHERE vw_leak(email::text) ORDER BY id;
-- EXPLAIN shows the plan, not the hidden rows
EXPLAIN (COSTS OFF) SELECT id FROM vw_contacts WHERE vw_leak(name);
RESET privacy.purpose;
RESET ROLE;

-- A view owned by a role that is subject to row-level security (the
-- table's owner: forced) filters without security_invoker as well.  The
-- purpose is the querying session's, checked against the querying role:
-- the view's owner needs none.
CREATE TABLE vw_orders (id bigint PRIMARY KEY, customer_id bigint, total numeric);
ALTER TABLE vw_orders OWNER TO vw_owner;
SELECT privacy.protect_table('vw_orders', 'customer_id');
SET privacy.purpose = 'billing';
INSERT INTO vw_orders VALUES (10, 1, 5), (20, 2, 7), (30, 3, 9);
RESET privacy.purpose;
SET ROLE vw_owner;
CREATE VIEW vw_order_totals AS SELECT customer_id, total FROM vw_orders;
GRANT SELECT ON vw_order_totals TO vw_app;
RESET ROLE;
SET ROLE vw_app;
SELECT customer_id FROM vw_order_totals ORDER BY 1;
SET privacy.purpose = 'marketing';
SELECT customer_id, total FROM vw_order_totals ORDER BY 1;
SET privacy.purpose = 'billing';
SELECT customer_id, total FROM vw_order_totals ORDER BY 1;
RESET privacy.purpose;
RESET ROLE;
-- the owner itself, with no purpose held, is refused
SET ROLE vw_owner;
SET privacy.purpose = 'marketing';
SELECT customer_id FROM vw_order_totals ORDER BY 1;
RESET privacy.purpose;
RESET ROLE;

-- The access log: reads through the security_invoker view are vw_app's
-- reads of the table, under the declared purpose, with the subjects read.
SELECT privacy.flush_access_log();
SELECT acting_role, purpose, command, relation, outcome, rows, reason
  FROM privacy.access_log
 WHERE acting_role = 'vw_app' AND relation = 'public.vw_customers'
 ORDER BY seq;
-- whose values vw_app opened under marketing: subject 1's only
SELECT s.subject_hash = privacy.subject_hash('1') AS subject_1, sum(s.opened) AS values_opened
  FROM privacy.access_log l JOIN privacy.access_log_subjects s ON s.event = l.seq
 WHERE l.acting_role = 'vw_app' AND l.purpose = 'marketing' AND l.relation = 'public.vw_customers'
 GROUP BY 1 ORDER BY 1;

DROP VIEW vw_order_totals, vw_contacts, vw_contacts_definer;
DROP FUNCTION vw_leak(text);
DROP TABLE vw_orders, vw_customers;
DROP EXTENSION privacy;
DROP OWNED BY vw_app, vw_owner, vw_officer;
DROP ROLE vw_app, vw_owner, vw_officer;
