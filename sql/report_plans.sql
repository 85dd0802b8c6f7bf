-- The regulator's calls keep their plans for the session (issue #19): the
-- subject report is one statement, its access list, the access trail and
-- verify_erasure's lookups are planned once.  A plan kept must never show
-- a table as it was: here tables change between two reports of the same
-- session (a column added, dropped, renamed, classified, a table protected,
-- unprotected, dropped, a retention rule set) and each report must show
-- the tables as they are, its reads logged each time.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', 'invoices', ARRAY['contact']);
CREATE ROLE rp_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE rp_app LOGIN;
SELECT privacy.grant_purpose('rp_app', 'billing');
CREATE TABLE rp_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                           joined_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00+00');
CREATE TABLE rp_orders (id integer PRIMARY KEY, customer_id bigint NOT NULL, item text,
                        ordered_on date NOT NULL);
INSERT INTO rp_customers VALUES (1, 'Ana', 'ana@example.org'), (2, 'Bob', 'bob@example.org');
INSERT INTO rp_orders VALUES (1, 1, 'tea', '2025-03-01'), (2, 2, 'cups', '2025-03-02');
SELECT privacy.protect_table('rp_customers', 'id');
GRANT SELECT ON rp_customers TO rp_app;

-- what a report shows of its tables, and how many reads of the subject it
-- logged (its own reads of earlier calls)
CREATE FUNCTION rp_tables(r jsonb) RETURNS TABLE (tbl text, columns text, retention text, rows_ text)
    LANGUAGE sql AS $$
    SELECT d ->> 'table',
           (SELECT string_agg((c ->> 'name') || coalesce(':' || (c ->> 'category'), '')
                              || CASE WHEN (c ->> 'encrypted')::boolean THEN '*' ELSE '' END, ', ')
              FROM jsonb_array_elements(d -> 'columns') c),
           d #>> '{retention,action}',
           (SELECT string_agg((w -> 'values')::text || coalesce(' due ' || (w ->> 'due_at'), ''), '; ')
              FROM jsonb_array_elements(d -> 'rows') w)
      FROM jsonb_array_elements(r -> 'data') d
$$;
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;

-- a column added, one renamed, one dropped: the next report of the same
-- session reads the table as it is now
ALTER TABLE rp_customers ADD COLUMN phone privacy.encrypted_text(contact);
UPDATE rp_customers SET phone = '+1 555 0100' WHERE id = 1;
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;
ALTER TABLE rp_customers RENAME COLUMN name TO full_name;
ALTER TABLE rp_customers DROP COLUMN phone;
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;

-- a column classified, a table protected, a retention rule set
SELECT privacy.classify('rp_customers', 'full_name', 'contact');
SELECT privacy.protect_table('rp_orders', 'customer_id');
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;
SELECT privacy.set_retention('rp_orders', 'ordered_on', interval '10 years', 'delete');
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;

-- a column's type changed under the kept plan of its table's statement
ALTER TABLE rp_orders ALTER COLUMN item TYPE varchar(20);
ALTER TABLE rp_orders ALTER COLUMN id TYPE bigint;
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;

-- a table unprotected, protected again, then dropped
SELECT privacy.unprotect_table('rp_orders');
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;
SELECT privacy.protect_table('rp_orders', 'customer_id');
SET ROLE rp_officer;
SELECT count(*) AS tables FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;
DROP TABLE rp_orders;
SET ROLE rp_officer;
SELECT * FROM rp_tables(privacy.subject_report('1'));
RESET ROLE;

-- each report logged its read of each table, the subject's values opened:
-- none is missing from the access log
SELECT privacy.flush_access_log();
SET ROLE rp_officer;
SELECT jsonb_array_length(privacy.subject_report('1') -> 'access') AS reads_listed;
-- (that report's own reads written too: the trail below lists them)
SELECT privacy.flush_access_log();
SELECT relation, category, opened, count(*) AS statements
  FROM privacy.access_trail('1')
 WHERE purpose = 'subject_access'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- privacy.access_trail() lists what the indexed lookups give, oldest first
SELECT array_agg(t.entry ORDER BY t.entry, t.category) = array_agg(t.entry) AS oldest_first,
       count(*) AS rows
  FROM privacy.access_trail('1') t;
SELECT (SELECT array_agg(ROW(l.seq, s.category, s.opened)::text ORDER BY l.seq, s.category)
          FROM privacy_internal.access_log_for_subject(privacy.subject_hash('1')) s
          JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true)
     = (SELECT array_agg(ROW(t.entry, t.category, t.opened)::text) FROM privacy.access_trail('1') t)
       AS same_as_lookups;
SELECT count(*) AS other_subject FROM privacy.access_trail('2');
SELECT count(*) AS no_subject FROM privacy.access_trail(NULL);
RESET ROLE;
-- it runs as its caller: who may not read the access log gets nothing
SET ROLE rp_app;
SELECT count(*) FROM privacy.access_trail('1');
RESET ROLE;

-- verify_erasure, asked twice in a session around the table's changes
SET ROLE rp_officer;
SELECT privacy.verify_erasure('1') -> 'left' AS left_before;
RESET ROLE;
SELECT privacy.set_retention('rp_customers', 'joined_at', interval '1 year', 'anonymize', ARRAY['email']);
SELECT privacy.erase_subject('1', 'asked') ->> 'keys_destroyed' AS keys_destroyed;
SET ROLE rp_officer;
SELECT privacy.verify_erasure('1') ->> 'verified' AS verified, privacy.verify_erasure('1') -> 'kept' AS kept;
RESET ROLE;
-- an anonymized row whose value comes back is found
UPDATE rp_customers SET email = 'ana@example.org' WHERE id = 1;
SET ROLE rp_officer;
SELECT privacy.verify_erasure('1') -> 'left' AS left_after_restore;
RESET ROLE;

-- the customer's portal reads the same report, through one call
CREATE ROLE rp_portal LOGIN IN ROLE privacy_portal;
SET ROLE rp_portal;
BEGIN;
SET LOCAL privacy.portal_subject = '2';
SELECT * FROM rp_tables(privacy.portal_report());
COMMIT;
SELECT privacy.portal_report();
RESET ROLE;

-- the log's last events written before the extension goes (they would
-- reach the next test's log)
SELECT privacy.flush_access_log();
DROP FUNCTION rp_tables(jsonb);
DROP TABLE rp_customers;
DROP EXTENSION privacy;
DROP ROLE rp_officer, rp_app, rp_portal;
