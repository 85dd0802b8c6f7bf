-- Lifting an objection (issue #19): privacy.lift_objection records a
-- 'lift_objection' event in the consent ledger, with its source and
-- evidence like the others, and the subject's rows are shown again for a
-- purpose not based on consent; for a purpose based on consent no consent
-- comes back (a grant is needed).  Only an objection in force can be
-- lifted; bad input changes nothing; the ledger stays append-only.
\set SHOW_CONTEXT never
\set VERBOSITY default
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']);
CREATE ROLE obj_app LOGIN;
CREATE ROLE obj_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('obj_app', 'billing');
SELECT privacy.grant_purpose('obj_app', 'marketing');
CREATE TABLE obj_customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('obj_customers', 'id');
GRANT SELECT, INSERT ON obj_customers TO obj_app;
INSERT INTO obj_customers VALUES (1, 'one@example.org'), (2, 'two@example.org');

SET ROLE obj_officer;
SELECT privacy.object('1', 'billing', 'letter', '{"letter": "2026-11-30"}') > 0 AS objected;
SELECT privacy.grant_consent('2', 'marketing', 'web-form') > 0 AS granted;
SELECT privacy.object('2', 'marketing', 'e-mail') > 0 AS objected;
RESET ROLE;
SET ROLE obj_app;
SET privacy.purpose = 'billing';
SELECT id FROM obj_customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;

-- lifted: the rows are shown again for billing
SET ROLE obj_officer;
SELECT privacy.lift_objection('1', 'billing', 'call-centre', '{"agent": "a-17", "call": 4711}') > 0 AS lifted;
RESET ROLE;
SET ROLE obj_app;
SET privacy.purpose = 'billing';
SELECT id FROM obj_customers ORDER BY id;
RESET privacy.purpose;
RESET ROLE;
-- the ledger keeps the whole history, the lift with its source and evidence
SELECT subject, purpose, action, source, evidence, recorded_by FROM privacy.consent_events ORDER BY id;
SELECT subject, purpose, state, source FROM privacy.consents ORDER BY subject, purpose;

-- a purpose based on consent: the objection is lifted, no consent returns
SET ROLE obj_officer;
SELECT privacy.lift_objection('2', 'marketing', 'web-form') > 0 AS lifted;
SELECT privacy.has_consent('2', 'marketing');
SELECT subject, purpose, state, source FROM privacy.consents WHERE subject = '2';
-- ... until it is granted again
SELECT privacy.grant_consent('2', 'marketing', 'web-form') > 0 AS granted;
SELECT privacy.has_consent('2', 'marketing');

-- the subject report shows the lift in the history
RESET ROLE;
SELECT h ->> 'action' AS action, h ->> 'source' AS source
  FROM jsonb_array_elements(privacy.subject_report('1') -> 'consents') c,
       jsonb_array_elements(c -> 'history') h
 WHERE c ->> 'purpose' = 'billing';

-- errors change nothing
SELECT count(*) AS events_before FROM privacy.consent_events \gset
SET ROLE obj_officer;
SELECT privacy.lift_objection('1', 'billing', 'letter');          -- no objection in force any more
SELECT privacy.lift_objection('3', 'billing', 'letter');          -- never objected
SELECT privacy.lift_objection('1', 'nosuch', 'letter');
SELECT privacy.lift_objection('1', 'billing', '');
SELECT privacy.lift_objection('', 'billing', 'letter');
RESET ROLE;
SELECT count(*) = :events_before AS nothing_recorded FROM privacy.consent_events;
-- only who may record consent events may lift an objection
SET ROLE obj_app;
SELECT privacy.lift_objection('1', 'billing', 'app');
RESET ROLE;
-- the ledger is append-only: the lift cannot be taken back by editing it
DELETE FROM privacy.consent_events WHERE action = 'lift_objection';
UPDATE privacy.consent_events SET action = 'object' WHERE action = 'lift_objection';

-- the log's last events written before the extension goes (they would
-- reach the next test's log)
SELECT privacy.flush_access_log();
DROP TABLE obj_customers;
DROP EXTENSION privacy;
DROP ROLE obj_app, obj_officer;
