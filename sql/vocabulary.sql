-- Vocabulary: categories, purposes, who holds them, and the purpose check.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;

-- roles used below (cluster-wide, dropped at the end)
CREATE ROLE voc_app LOGIN;
CREATE ROLE voc_support_team NOLOGIN;
CREATE ROLE voc_agent LOGIN IN ROLE voc_support_team;
CREATE ROLE voc_admin LOGIN IN ROLE privacy_admin;
CREATE ROLE voc_officer LOGIN IN ROLE privacy_officer;

-- categories
SELECT privacy.create_category('contact', 'e-mail, phone, postal address');
SELECT privacy.create_category('financial', 'IBAN, card tokens');
SELECT privacy.create_category('health', 'medical notes', true);
SELECT name, description, special FROM privacy.categories ORDER BY name;
SELECT privacy.create_category('contact', 'again');
SELECT privacy.create_category('Contact');
SELECT privacy.create_category('e-mail');
SELECT privacy.create_category(NULL);
SELECT privacy.create_category(repeat('x', 64));

-- purposes and legal bases
SELECT privacy.create_purpose('billing', 'contract', 'invoicing and payment', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('support', 'legitimate_interests', 'customer support', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']);
SELECT privacy.create_purpose('fraud', 'legal_obligation');
SELECT privacy.create_purpose('rescue', 'vital_interests');
SELECT privacy.create_purpose('census', 'public_task');
SELECT name, legal_basis FROM privacy.purposes ORDER BY name;
SELECT purpose, category FROM privacy.purpose_categories ORDER BY 1, 2;

-- bad input changes nothing
SELECT privacy.create_purpose('profiling', 'because', 'no legal basis');
SELECT privacy.create_purpose('profiling', NULL);
SELECT privacy.create_purpose('billing', 'contract');
SELECT privacy.create_purpose('analytics', 'consent', '', ARRAY['contact', 'location']);
SELECT count(*) AS analytics_rows FROM privacy.purposes WHERE name IN ('profiling', 'analytics');

-- which categories a purpose may process
SELECT privacy.allow_category('support', 'financial');
SELECT privacy.allow_category('support', 'financial');  -- idempotent
SELECT privacy.disallow_category('support', 'financial');
SELECT privacy.allow_category('support', 'location');
SELECT privacy.allow_category('nosuch', 'contact');
SELECT privacy.drop_category('contact');
SELECT privacy.drop_category('nosuch');

-- who holds which purposes
SELECT privacy.grant_purpose('voc_app', 'billing');
SELECT privacy.grant_purpose('voc_support_team', 'support');
SELECT privacy.grant_purpose('voc_app', 'billing');     -- idempotent
SELECT privacy.grant_purpose('nobody_here', 'billing');
SELECT privacy.grant_purpose('voc_app', 'nosuch');
SELECT privacy.revoke_purpose('voc_app', 'support');
SELECT purpose, role, legal_basis FROM privacy.purpose_holders ORDER BY 1, 2;

-- privacy.purpose must look like a purpose name
SET privacy.purpose = 'Billing';
SET privacy.purpose = 'billing; drop table x';
SHOW privacy.purpose;

-- the purpose check, as the superuser: holds every purpose but must declare one
SELECT privacy.may_use('contact');
SELECT privacy.check_purpose('contact');
SET privacy.purpose = 'billing';
SELECT privacy.check_purpose('financial'), privacy.may_use('health');
SELECT privacy.check_purpose('health');
SET privacy.purpose = 'nosuch';
SELECT privacy.check_purpose('contact');
RESET privacy.purpose;

-- the purpose check, as an application role
SET ROLE voc_app;
SELECT privacy.check_purpose('contact');
SET privacy.purpose = 'billing';
SELECT privacy.check_purpose('contact'), privacy.check_purpose('financial'), privacy.check_purpose();
SELECT privacy.check_purpose('health');
SET privacy.purpose = 'support';
SELECT privacy.check_purpose('contact');
SELECT privacy.may_use('contact');
SELECT purpose, legal_basis, categories FROM privacy.my_purposes;
RESET privacy.purpose;

-- SET LOCAL lasts one transaction
BEGIN;
SET LOCAL privacy.purpose = 'billing';
SELECT privacy.check_purpose('contact');
COMMIT;
SELECT privacy.may_use('contact');
RESET ROLE;

-- membership: a role holds the purposes of the roles it belongs to
SET ROLE voc_agent;
SET privacy.purpose = 'support';
SELECT privacy.check_purpose('contact');
SELECT purpose FROM privacy.my_purposes;
RESET ROLE;

-- a revoked purpose stops working at the next statement (cache invalidated)
SELECT privacy.revoke_purpose('voc_support_team', 'support');
SET ROLE voc_agent;
SELECT privacy.check_purpose('contact');
RESET ROLE;
-- and so does a disallowed category
SELECT privacy.grant_purpose('voc_support_team', 'support');
SET ROLE voc_agent;
SELECT privacy.check_purpose('contact');
RESET ROLE;
SELECT privacy.disallow_category('support', 'contact');
SET ROLE voc_agent;
SELECT privacy.check_purpose('contact');
RESET ROLE;
RESET privacy.purpose;

-- least privilege: application roles see nothing of the catalog and change nothing
SET ROLE voc_app;
SELECT * FROM privacy.purposes;
SELECT * FROM privacy.role_purposes;
SELECT privacy.create_category('sneaky');
SELECT privacy.grant_purpose('voc_app', 'marketing');
SELECT privacy.master_key_fingerprint();
INSERT INTO privacy.role_purposes (role, purpose) VALUES ('voc_app', 'marketing');
RESET ROLE;

-- privacy_officer reads, does not change
SET ROLE voc_officer;
SELECT count(*) > 0 AS officer_reads FROM privacy.purposes;
SELECT privacy.create_purpose('officer_made', 'contract');
DELETE FROM privacy.purposes;
SELECT privacy.master_key_status();
RESET ROLE;

-- privacy_admin manages the vocabulary
SET ROLE voc_admin;
SELECT privacy.create_category('location', 'GPS traces');
SELECT privacy.create_purpose('delivery', 'contract', 'parcel delivery', ARRAY['contact', 'location']);
SELECT privacy.grant_purpose('voc_app', 'delivery');
SELECT length(privacy.master_key_fingerprint()) AS fingerprint_length;
SELECT privacy.drop_purpose('delivery');
SELECT privacy.drop_category('location');
RESET ROLE;

-- the master key
SELECT privacy.master_key_status();
SELECT privacy.master_key_fingerprint() = privacy.master_key_fingerprint() AS fingerprint_stable;
SELECT privacy.master_key_fingerprint() ~ '^[0-9a-f]{16}$' AS fingerprint_is_hex;

-- settings: the key command is hidden from non-superusers and cannot be SET
SET ROLE voc_app;
SELECT name FROM pg_settings WHERE name LIKE 'privacy.%' ORDER BY name;
SHOW privacy.master_key_command;
RESET ROLE;
SET privacy.master_key_command = 'echo 00';
SET privacy.nosuch = 'x';

-- clean up
DROP EXTENSION privacy;
DROP ROLE voc_app, voc_agent, voc_support_team, voc_admin, voc_officer;
