-- privacy demo: what a DBA sees after CREATE EXTENSION privacy.
-- Run by ./test/demo against a throwaway cluster; statements that are meant
-- to fail are marked "-- expected error" and the test suite counts them.
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
SELECT privacy.create_category('contact', 'e-mail, phone, postal address');
SELECT privacy.create_category('financial', 'IBAN, card tokens');
SELECT privacy.create_category('health', 'medical notes', special => true);
SELECT privacy.create_purpose('billing', 'contract', 'invoicing and payment', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('support', 'legitimate_interests', 'customer support', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']);
SELECT p.name AS purpose, p.legal_basis,
       array_agg(pc.category ORDER BY pc.category) AS categories
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
SELECT privacy.grant_purpose('demo_billing_app', 'billing');
SELECT privacy.grant_purpose('demo_support_team', 'support');
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
SELECT privacy.revoke_purpose('demo_support_team', 'support');
SET ROLE demo_agent;
SET privacy.purpose = 'support';
SELECT privacy.check_purpose('contact');    -- expected error
RESET privacy.purpose;
RESET ROLE;
