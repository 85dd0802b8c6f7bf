-- The table owner attacks (issue #12, classes 1, 10 and 15).
--
-- adv_owner owns tables it was given; privacy_admin protects them.  Every
-- path where the extension writes into a user's table (protect_table's
-- reseal, the event trigger that protects a new child, erase_subject, the
-- purge) must run the owner's code as the owner, never as the extension's
-- superuser: each trigger below tries to make adv_owner a superuser when it
-- finds itself running as one, and records who ran it.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE ROLE adv_owner LOGIN;
CREATE ROLE adv_admin LOGIN IN ROLE privacy_admin;
CREATE ROLE adv_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE adv_app LOGIN;
SELECT privacy.grant_purpose('adv_app', 'marketing');
GRANT CREATE ON SCHEMA public TO adv_owner;

-- who ran the owner's code
CREATE TABLE adv_ran (what text, as_role name, superuser boolean);
GRANT INSERT ON adv_ran TO PUBLIC;

SET ROLE adv_owner;
CREATE FUNCTION escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.adv_ran VALUES (TG_NAME || ' ' || TG_OP || ' ' || TG_WHEN || ' ' || TG_LEVEL,
                                current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE adv_owner SUPERUSER';
    END IF;
    RETURN CASE WHEN TG_LEVEL = 'ROW' THEN coalesce(NEW, OLD) END;
END
$$;
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                        created date NOT NULL DEFAULT '2020-01-01');
CREATE TRIGGER a_row_update BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION escalate();
CREATE TRIGGER b_stmt_update AFTER UPDATE ON customers FOR EACH STATEMENT EXECUTE FUNCTION escalate();
CREATE TRIGGER c_row_delete BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION escalate();
CREATE TRIGGER d_stmt_delete AFTER DELETE ON customers FOR EACH STATEMENT EXECUTE FUNCTION escalate();
INSERT INTO customers VALUES (1, 'Ana', 'ana@example.org'), (2, 'Ben', 'ben@example.org');
-- a child that will inherit from the protected table later
CREATE TABLE customers_child (extra text) INHERITS (customers);
CREATE TRIGGER e_child_update BEFORE UPDATE ON customers_child FOR EACH ROW EXECUTE FUNCTION escalate();
CREATE TRIGGER f_child_stmt AFTER UPDATE ON customers_child FOR EACH STATEMENT EXECUTE FUNCTION escalate();
ALTER TABLE customers_child NO INHERIT customers;
INSERT INTO customers_child VALUES (3, 'Cem', 'cem@example.org', '2020-01-01', 'x');
RESET ROLE;

-- 1. protect_table reseals the rows already there
SET ROLE adv_admin;
SELECT privacy.protect_table('customers', 'id');
RESET ROLE;
SELECT rolsuper AS owner_is_superuser FROM pg_roles WHERE rolname = 'adv_owner';
SELECT as_role, superuser, count(*) > 0 AS ran FROM adv_ran GROUP BY 1, 2 ORDER BY 1;
TRUNCATE adv_ran;

-- the rows protect_table resealed are under their subjects' keys
SELECT c.id, k.scope FROM customers c
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(c.email)).key_id ORDER BY c.id;

-- 2. the event trigger protects a child that starts inheriting, resealing its rows
SET ROLE adv_owner;
ALTER TABLE customers_child INHERIT customers;
RESET ROLE;
SELECT rolsuper AS owner_is_superuser FROM pg_roles WHERE rolname = 'adv_owner';
SELECT as_role, superuser, count(*) > 0 AS ran FROM adv_ran GROUP BY 1, 2 ORDER BY 1;
TRUNCATE adv_ran;

-- 3. erasure deletes the subject's rows
SET ROLE adv_officer;
SELECT privacy.erase_subject('2', 'request 1') IS NOT NULL AS erased;
RESET ROLE;
SELECT rolsuper AS owner_is_superuser FROM pg_roles WHERE rolname = 'adv_owner';
SELECT as_role, superuser, count(*) > 0 AS ran FROM adv_ran GROUP BY 1, 2 ORDER BY 1;
TRUNCATE adv_ran;

-- 4. the purge deletes rows past their retention
SET ROLE adv_officer;
SELECT privacy.set_retention('customers', 'created', interval '1 year', 'delete');
RESET ROLE;
CALL privacy.purge();
SELECT rolsuper AS owner_is_superuser FROM pg_roles WHERE rolname = 'adv_owner';
SELECT as_role, superuser, count(*) > 0 AS ran FROM adv_ran GROUP BY 1, 2 ORDER BY 1;
TRUNCATE adv_ran;

-- 5. classify converts a plain column: the rewrite checks the owner's constraint
SET ROLE adv_owner;
CREATE FUNCTION escalate_check(v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.adv_ran VALUES ('check', current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE adv_owner SUPERUSER';
    END IF;
    RETURN true;
END
$$;
CREATE TABLE legacy (id bigint PRIMARY KEY, note text, phone text CHECK (escalate_check(phone || note)));
INSERT INTO legacy VALUES (1, 'n', '555-0101');
RESET ROLE;
TRUNCATE adv_ran;
SET ROLE adv_admin;
SELECT privacy.classify('legacy', 'phone', 'contact', encrypt => true);
RESET ROLE;
SELECT rolsuper AS owner_is_superuser FROM pg_roles WHERE rolname = 'adv_owner';
SELECT as_role, superuser, count(*) > 0 AS ran FROM adv_ran GROUP BY 1, 2 ORDER BY 1;
SELECT phone::text LIKE 'pv1:%' AS phone_sealed FROM legacy;

-- 10. the owner cannot switch the protection off
SET ROLE adv_owner;
CREATE TABLE accounts (id bigint PRIMARY KEY, owner_note text);
INSERT INTO accounts VALUES (1, 'a'), (2, 'b');
GRANT SELECT ON accounts TO adv_app;
RESET ROLE;
SELECT privacy.protect_table('accounts', 'id');
SELECT privacy.grant_consent('1', 'marketing', 'web-form');
SET ROLE adv_owner;
ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE accounts DISABLE ROW LEVEL SECURITY;
DROP POLICY privacy_select ON accounts;
ALTER POLICY privacy_select ON accounts USING (true);
ALTER POLICY privacy_select ON accounts RENAME TO mine;
ALTER TABLE accounts DISABLE TRIGGER privacy_seal_row;
ALTER TABLE accounts DISABLE TRIGGER ALL;
ALTER TABLE accounts DISABLE TRIGGER USER;
ALTER TABLE accounts ENABLE REPLICA TRIGGER privacy_seal_row;
DROP TRIGGER privacy_seal_row ON accounts;
-- a permissive policy of the owner's own gets the consent check added
CREATE POLICY everything ON accounts FOR SELECT USING (true);
RESET ROLE;
SELECT polname, pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'accounts'::regclass ORDER BY 1;
SET ROLE adv_app;
SET privacy.purpose = 'marketing';
SELECT id FROM accounts ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
-- what only a superuser can do is reported
SELECT gap, object FROM privacy.compliance_gaps() WHERE gap = 'protection not intact';
ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE accounts DISABLE TRIGGER privacy_seal_row;
SELECT gap, object, detail FROM privacy.compliance_gaps() WHERE gap = 'protection not intact';
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE accounts ENABLE TRIGGER privacy_seal_row;
-- privacy_admin's way: unprotect_table (and the owner's policy is restored)
SET ROLE adv_admin;
SELECT privacy.unprotect_table('accounts');
RESET ROLE;
SELECT polname, pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'accounts'::regclass ORDER BY 1;

-- 15. which key seals a value must not depend on trigger names: a BEFORE
-- trigger filling in the subject after privacy_seal_row would leave the
-- value under the category key, out of reach of erasure
SET ROLE adv_owner;
CREATE TABLE signups (id bigint PRIMARY KEY, customer_id bigint, email privacy.encrypted_text(contact));
CREATE FUNCTION set_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.customer_id := coalesce(NEW.customer_id, NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER set_subject BEFORE INSERT ON signups FOR EACH ROW EXECUTE FUNCTION set_subject();
RESET ROLE;
-- a table that has one cannot be protected until it is renamed
SELECT privacy.protect_table('signups', 'customer_id');
SET ROLE adv_owner;
ALTER TRIGGER set_subject ON signups RENAME TO a_set_subject;
RESET ROLE;
SELECT privacy.protect_table('signups', 'customer_id');
SET ROLE adv_owner;
-- on a protected table, none can be created or renamed so
CREATE TRIGGER set_subject BEFORE INSERT ON signups FOR EACH ROW EXECUTE FUNCTION set_subject();
ALTER TRIGGER a_set_subject ON signups RENAME TO set_subject;
-- an AFTER trigger, or one that sorts before, is fine
CREATE TRIGGER z_after AFTER INSERT ON signups FOR EACH ROW EXECUTE FUNCTION escalate();
CREATE TRIGGER b_before BEFORE INSERT ON signups FOR EACH ROW EXECUTE FUNCTION set_subject();
RESET ROLE;
SET privacy.purpose = 'marketing';
INSERT INTO signups (id, email) VALUES (7, 'gus@example.org');
RESET privacy.purpose;
SELECT s.customer_id, k.scope FROM signups s
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(s.email)).key_id;

ALTER ROLE adv_owner NOSUPERUSER;
DROP TABLE customers_child, customers, legacy, adv_ran, accounts, signups;
DROP FUNCTION escalate(), escalate_check(text), set_subject();
DROP EXTENSION privacy;
REVOKE CREATE ON SCHEMA public FROM adv_owner;
DROP ROLE adv_owner, adv_admin, adv_officer, adv_app;
