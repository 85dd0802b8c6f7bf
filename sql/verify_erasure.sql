-- Verifying an erasure (issue #19): privacy.verify_erasure(subject), for an
-- officer who holds no purpose, checks that nothing of the subject is left:
-- no rows (rows of tables whose rule anonymizes are kept, but then with no
-- search tag and no readable value), no live key, no search tag, no consent
-- state and no ledger entry under the subject's identifier.  It reads no
-- value and needs no purpose; it says what is left, table by table.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE ROLE ve_officer LOGIN IN ROLE privacy_officer;
CREATE TABLE ve_customers (id bigint PRIMARY KEY, name text,
                           email privacy.encrypted_text(contact, searchable));
CREATE TABLE ve_orders (id integer PRIMARY KEY, customer_id bigint NOT NULL, item text,
                        note privacy.encrypted_text(contact, searchable), placed_at timestamptz NOT NULL);
CREATE TABLE ve_tickets (id integer PRIMARY KEY, customer text NOT NULL, body text);
SELECT privacy.classify('ve_customers', 'name', 'contact');
SELECT privacy.protect_table('ve_customers', 'id');
SELECT privacy.protect_table('ve_orders', 'customer_id');
SELECT privacy.protect_table('ve_tickets', 'customer');
-- orders are kept for the books, anonymized
SELECT privacy.set_retention('ve_orders', 'placed_at', '10 years', 'anonymize', ARRAY['item']);
INSERT INTO ve_customers VALUES (1, 'Ana', 'ana@example.org'), (2, 'Ben', 'ben@example.org');
INSERT INTO ve_orders VALUES (1, 1, 'tea', 'ring twice', '2026-01-01'), (2, 2, 'coffee', 'no', '2026-01-02');
INSERT INTO ve_tickets VALUES (1, '1', 'help'), (2, '2', 'thanks');
SELECT privacy.grant_consent('1', 'marketing', 'web-form') > 0 AS granted;

-- before the erasure: everything is there, table by table
SET ROLE ve_officer;
SELECT privacy.verify_erasure('1') AS before \gset
SELECT (:'before'::jsonb) ->> 'verified' AS verified, (:'before'::jsonb) ->> 'erasure' AS erasure;
SELECT jsonb_pretty((:'before'::jsonb) -> 'left');
RESET ROLE;

SELECT (privacy.erase_subject('1', 'request 7') ->> 'keys_destroyed')::int > 0 AS erased;

-- after: nothing is left; the anonymized order is kept with its value
-- unreadable and without its search tag
SET ROLE ve_officer;
SELECT privacy.verify_erasure('1') AS after \gset
SELECT (:'after'::jsonb) ->> 'verified' AS verified, (:'after'::jsonb) ->> 'erasure' IS NOT NULL AS has_receipt;
SELECT jsonb_pretty((:'after'::jsonb) -> 'left');
SELECT jsonb_pretty((:'after'::jsonb) -> 'kept');
-- the other subject is untouched
SELECT privacy.verify_erasure('2') ->> 'verified' AS other_verified;
RESET ROLE;

-- a remnant is found: a row the erasure could not have seen (written after
-- it, as a restore of an old backup would), a key made again, a consent
-- state recorded again
INSERT INTO ve_tickets VALUES (3, '1', 'restored from an old backup');
SET ROLE ve_officer;
SELECT privacy.verify_erasure('1') -> 'left' AS left_after_restore;
RESET ROLE;
INSERT INTO ve_customers VALUES (1, 'Ana', 'ana@example.org');
SELECT privacy.grant_consent('1', 'marketing', 'web-form') > 0 AS granted_again;
SET ROLE ve_officer;
SELECT verified, left_ FROM (SELECT r ->> 'verified' AS verified, jsonb_pretty(r -> 'left') AS left_
                              FROM privacy.verify_erasure('1') r) x;
RESET ROLE;

-- no purpose was needed, and nothing was read: no access log entry
SELECT privacy.flush_access_log();
SELECT count(*) AS log_entries_of_verify FROM privacy.access_log WHERE session_role = 've_officer';

-- the statements are planned once a session, the subject a parameter
-- (issue #19): another subject gets its own answer, and a table changed
-- since (a column added, a row added) is planned and read again
SET ROLE ve_officer;
SELECT privacy.verify_erasure('2') -> 'left' -> 'rows' AS left_of_2;
RESET ROLE;
ALTER TABLE ve_tickets ADD COLUMN channel text;
INSERT INTO ve_tickets VALUES (100, '2', 'again', 'phone');
SET ROLE ve_officer;
SELECT privacy.verify_erasure('2') -> 'left' -> 'rows' AS left_of_2_after;
RESET ROLE;

-- bad input, privileges
SET ROLE ve_officer;
SELECT privacy.verify_erasure('');
SELECT privacy.verify_erasure(NULL) IS NULL AS strict;
RESET ROLE;
CREATE ROLE ve_nobody LOGIN;
SET ROLE ve_nobody;
SELECT privacy.verify_erasure('1');
RESET ROLE;

-- the log's last events written before the extension goes (they would
-- reach the next test's log)
SELECT privacy.flush_access_log();
DROP TABLE ve_customers, ve_orders, ve_tickets;
DROP EXTENSION privacy;
DROP ROLE ve_officer, ve_nobody;
