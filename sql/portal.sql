-- Self-service (issue #19): the role privacy_portal, for an application
-- that serves customers.  It acts on one subject at a time, the one the
-- application declares in privacy.portal_subject after authenticating the
-- customer: it reads that subject's report, records their consent events
-- and objections, opens their requests, and nothing else; events carry the
-- application's role, source and evidence like any other.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletter', ARRAY['contact']);
CREATE ROLE po_web LOGIN IN ROLE privacy_portal;
CREATE TABLE po_customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('po_customers', 'id');
INSERT INTO po_customers VALUES (42, 'ana@example.org'), (43, 'ben@example.org');
SELECT privacy.grant_consent('43', 'marketing', 'web-form') > 0 AS granted;

-- a customer's session: declared, then served
SET ROLE po_web;
BEGIN;
SET LOCAL privacy.portal_subject = '42';
SELECT privacy.portal_grant_consent('marketing', 'portal', '{"session": "s-1", "ip": "192.0.2.7"}') > 0 AS granted;
SELECT privacy.portal_object('billing', 'portal') > 0 AS objected;
SELECT privacy.portal_lift_objection('billing', 'portal') > 0 AS lifted;
SELECT privacy.portal_withdraw_consent('marketing', 'portal') > 0 AS withdrawn;
SELECT privacy.portal_open_request('access', 'asked in the portal') > 0 AS opened;
SELECT r ->> 'subject' AS subject, jsonb_array_length(r -> 'data') AS tables,
       r #>> '{data,0,rows,0,values,email}' AS email,
       (SELECT string_agg(p ->> 'purpose' || '=' || coalesce(p ->> 'state', '-') || '/' || (p ->> 'in_effect'), ', ')
          FROM jsonb_array_elements(r -> 'purposes') p) AS purposes,
       (SELECT string_agg(h ->> 'action' || ' ' || (h ->> 'source'), ', ')
          FROM jsonb_array_elements(r -> 'consents') c, jsonb_array_elements(c -> 'history') h) AS history,
       r #>> '{requests,0,kind}' AS request
  FROM privacy.portal_report() r;
SELECT privacy.portal_report_html() LIKE '%ana@example.org%' AS page_shows_the_data;
COMMIT;
RESET ROLE;
-- what was recorded: with the application's source and evidence, by its
-- login role (session_user; here the test's, which SET ROLE po_web)
SELECT subject, purpose, action, source, evidence, recorded_by FROM privacy.consent_events ORDER BY id;
SELECT subject, kind, status, note FROM privacy.requests ORDER BY id;

-- SET LOCAL ends with the transaction: nothing is declared any more
SET ROLE po_web;
SELECT privacy.portal_report();
SELECT privacy.portal_grant_consent('marketing', 'portal');
RESET ROLE;

-- the other customer is reachable only by declaring them
SET ROLE po_web;
BEGIN;
SET LOCAL privacy.portal_subject = '43';
SELECT r ->> 'subject' AS subject, r #>> '{data,0,rows,0,values,email}' AS email FROM privacy.portal_report() r;
COMMIT;

-- nothing else: no other subject by name, no ledger, no table, no officer function
BEGIN;
SET LOCAL privacy.portal_subject = '42';
SAVEPOINT s;
SELECT privacy.subject_report('43');
ROLLBACK TO s;
SELECT privacy.grant_consent('43', 'marketing', 'portal');
ROLLBACK TO s;
SELECT privacy.open_request('43', 'erasure');
ROLLBACK TO s;
SELECT count(*) FROM privacy.consent_events;
ROLLBACK TO s;
SELECT count(*) FROM privacy.requests;
ROLLBACK TO s;
SELECT privacy.erase_subject('42', 'portal');
ROLLBACK TO s;
SELECT privacy.verify_erasure('42');
ROLLBACK TO s;
SET LOCAL privacy.purpose = 'billing';
SELECT email FROM po_customers;
ROLLBACK TO s;
-- bad input is refused like anywhere else, recording nothing
SELECT privacy.portal_grant_consent('billing', 'portal');
ROLLBACK TO s;
SELECT privacy.portal_grant_consent('marketing', '');
ROLLBACK TO s;
SELECT privacy.portal_lift_objection('billing', 'portal');
ROLLBACK TO s;
SELECT privacy.portal_open_request('complaint');
ROLLBACK;
RESET ROLE;
SELECT count(*) AS events, (SELECT count(*) FROM privacy.requests) AS requests FROM privacy.consent_events;

-- the report's reads are in the access log, under the application's role
SELECT privacy.flush_access_log();
SELECT acting_role, purpose, relation, outcome FROM privacy.access_log ORDER BY seq;

-- the log's last events written before the extension goes (they would
-- reach the next test's log)
SELECT privacy.flush_access_log();
DROP TABLE po_customers;
DROP EXTENSION privacy;
DROP ROLE po_web;
