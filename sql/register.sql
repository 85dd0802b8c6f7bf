-- The register of processing (GDPR Art. 30) and the compliance gaps: each gap
-- appears, and disappears once fixed.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
CREATE ROLE reg_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE reg_admin LOGIN IN ROLE privacy_admin;
CREATE ROLE reg_app LOGIN;
CREATE ROLE reg_team NOLOGIN;
CREATE ROLE reg_gone NOLOGIN;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_category('health', 'allergies', special => true);
SELECT privacy.create_category('financial', 'IBAN');
SELECT privacy.create_category('location', 'last known city');
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact']);
SELECT privacy.create_purpose('dietary', 'consent', 'meal planning; Art. 9(2)(a)', ARRAY['health']);
SELECT privacy.create_purpose('accounting', 'legal_obligation', 'bookkeeping');
SELECT privacy.create_purpose('newsletter', 'consent', 'offers by e-mail', ARRAY['contact']);
SELECT privacy.grant_purpose('reg_app', 'billing');
SELECT privacy.grant_purpose('reg_team', 'billing');
SELECT privacy.grant_purpose('reg_team', 'dietary');
SELECT privacy.grant_purpose('reg_gone', 'accounting');
DROP ROLE reg_gone;
SELECT privacy.grant_consent('1', 'newsletter', 'web-form');
SELECT privacy.grant_consent('2', 'newsletter', 'web-form');

CREATE TABLE reg_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact, searchable),
                            allergies privacy.encrypted_text(health), closed_at timestamptz);
SELECT privacy.classify('reg_customers', 'name', 'contact');
SELECT privacy.protect_table('reg_customers', 'id');
SELECT privacy.set_retention('reg_customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['name', 'email']);
CREATE TABLE reg_orders (id bigint PRIMARY KEY, customer_id bigint, city privacy.encrypted_text(location),
                         created_at timestamptz);
SELECT privacy.protect_table('reg_orders', 'customer_id');
CREATE TABLE reg_leads (id bigint PRIMARY KEY, phone text, created_at timestamptz);
SELECT privacy.classify('reg_leads', 'phone', 'contact');
CREATE TABLE reg_tickets (id bigint PRIMARY KEY, customer_id bigint, body privacy.encrypted_text,
                          created_at timestamptz);
SELECT privacy.protect_table('reg_tickets', 'customer_id');
-- the access log holds an entry from here on, whether or not events of
-- earlier tests are still arriving: a superuser's read (which says nothing
-- of which roles use billing)
SET privacy.purpose = 'billing';
SELECT count(*) FROM reg_customers;
RESET privacy.purpose;
SELECT privacy.flush_access_log();
SET ROLE reg_officer;
SELECT privacy.open_request('1', 'access', timestamptz '2020-01-10 12:00+00') AS old_request \gset
RESET ROLE;

-- the register: one row per purpose, allowed category and column of that
-- category; purposes without categories and columns without a purpose too
SET ROLE reg_officer;
SELECT purpose, legal_basis, category, special, table_name, column_name, encrypted, searchable,
       table_protected, subject_column, retention, retention_action, roles
  FROM privacy.processing_register
 ORDER BY purpose NULLS LAST, category, table_name::text, column_name;
SELECT DISTINCT purpose, description FROM privacy.processing_register ORDER BY 1 NULLS LAST;

-- the gaps, each with a hint that says how to fix it
SELECT gap, object, regexp_replace(detail, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC|\d+ days', '<time>', 'g') AS detail, hint
  FROM privacy.compliance_gaps();
RESET ROLE;

-- fixed one by one, each gap goes
SELECT privacy.classify('reg_customers', 'name', 'contact', encrypt => true);
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.classify('reg_tickets', 'body', 'contact');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.allow_category('billing', 'location');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.protect_table('reg_leads', 'id');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.classify('reg_leads', 'phone', 'contact', encrypt => true);
SELECT privacy.set_retention('reg_orders', 'created_at', interval '3 years', 'delete');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.set_retention('reg_leads', 'created_at', interval '1 year', 'delete');
SELECT privacy.set_retention('reg_tickets', 'created_at', interval '1 year', 'delete');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.allow_category('accounting', 'financial');
SELECT gap, object FROM privacy.compliance_gaps();
SELECT privacy.grant_purpose('reg_app', 'accounting');
SELECT privacy.grant_purpose('reg_app', 'newsletter');
SELECT gap, object FROM privacy.compliance_gaps();
SET ROLE reg_officer;
SELECT privacy.complete_request(:old_request, 'answered late, by post');
SELECT count(*) AS gaps FROM privacy.compliance_gaps();
RESET ROLE;

-- the access log: a grant nobody uses, and a log nobody verifies
GRANT SELECT ON reg_customers TO reg_app;
UPDATE privacy.role_purposes SET granted_at = now() - interval '40 days'
 WHERE role = 'reg_app'::regrole AND purpose = 'billing';
SELECT gap, object, detail LIKE 'Role reg_app has held purpose billing since %' AS detail_ok
  FROM privacy.compliance_gaps() WHERE gap = 'purpose never used';
SET ROLE reg_app;
SET privacy.purpose = 'billing';
SELECT count(*) FROM reg_customers;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.flush_access_log();
-- (the writer keeps who used which purpose beside the log, for this check)
SELECT acting_role, purpose, first_used <= last_used AS ordered
  FROM privacy.access_log_purpose_use WHERE acting_role IN ('reg_app', 'reg_team') ORDER BY 1, 2;
SELECT gap, object FROM privacy.compliance_gaps() WHERE gap LIKE 'purpose never used' OR gap LIKE 'access log%';
SET ROLE reg_officer;
SELECT status FROM privacy.verify_access_log();
RESET ROLE;
SELECT count(*) AS gaps FROM privacy.compliance_gaps();
-- a verification that found the log broken stays a gap until one passes
INSERT INTO privacy.access_log_verifications (verified_at, status, seq, checked, detail)
VALUES (now() + interval '1 second', 'altered', 3, 2, 'entry 3 does not match its MAC');
SELECT gap, object, detail LIKE 'The last verification (%) found the log altered at entry 3: entry 3 does not match its MAC.' AS detail_ok
  FROM privacy.compliance_gaps();
DELETE FROM privacy.access_log_verifications WHERE status = 'altered';

-- the register after the fixes: every column encrypted, protected and kept for a set time
SELECT purpose, category, table_name, column_name, encrypted, table_protected, retention, retention_action, roles
  FROM privacy.processing_register
 ORDER BY purpose NULLS LAST, category, table_name::text, column_name;

-- a dropped table leaves the register
DROP TABLE reg_leads;
SELECT count(*) AS leads_rows FROM privacy.processing_register WHERE table_name::text = 'reg_leads';

-- privileges: the officer reads both, the admin the register, others nothing
SET ROLE reg_admin;
SELECT count(*) > 0 AS admin_reads_register FROM privacy.processing_register;
SELECT count(*) FROM privacy.compliance_gaps();
RESET ROLE;
SET ROLE reg_app;
SELECT count(*) FROM privacy.processing_register;
SELECT count(*) FROM privacy.compliance_gaps();
RESET ROLE;
SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p
 WHERE p.pronamespace = 'privacy'::regnamespace AND p.proname = 'compliance_gaps';

DROP TABLE reg_customers, reg_orders, reg_tickets;
DROP EXTENSION privacy;
DROP ROLE reg_officer, reg_admin, reg_app, reg_team;
