-- Retention: rules, legal holds, previews and batched purges.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE ROLE ret_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE ret_app LOGIN;
SELECT privacy.grant_purpose('ret_app', 'billing');

CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, created_at timestamptz NOT NULL,
                     amount numeric);
CREATE TABLE customers (id bigint PRIMARY KEY, closed_at timestamptz, email privacy.encrypted_text(contact),
                        phone text, city text NOT NULL DEFAULT 'Lyon');
-- 300 orders: ids 1..100 are 5 years old, 101..300 recent; customer 42 owns some old ones
INSERT INTO orders SELECT g, CASE WHEN g % 10 = 0 THEN 42 ELSE g END,
       CASE WHEN g <= 100 THEN now() - interval '5 years' ELSE now() - interval '1 day' END, g
  FROM generate_series(1, 300) g;
INSERT INTO customers SELECT g, CASE WHEN g <= 5 THEN now() - interval '2 years' END,
       'c' || g || '@example.org', '+33 1 00 00 00 ' || g FROM generate_series(1, 8) g;
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('customers', 'id');

-- rules and their validation
SELECT privacy.set_retention('orders', 'created_at', interval '3 years', 'delete');
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['email', 'phone']);
SELECT tbl, time_column, keep, action, anonymize FROM privacy.retention_rules ORDER BY tbl::text;
CREATE TABLE loose (id int, at timestamptz);
SELECT privacy.set_retention('loose', 'at', interval '1 year', 'delete');
SELECT privacy.set_retention('orders', 'nosuch', interval '1 year', 'delete');
SELECT privacy.set_retention('orders', 'amount', interval '1 year', 'delete');
SELECT privacy.set_retention('orders', 'created_at', interval '-1 year', 'delete');
SELECT privacy.set_retention('orders', 'created_at', interval '1 year', 'shred');
SELECT privacy.set_retention('orders', 'created_at', interval '1 year', 'anonymize');
SELECT privacy.set_retention('orders', 'created_at', interval '1 year', 'delete', ARRAY['amount']);
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['id']);
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['city']);
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['email'],
                             '{"email": "gone@example.org"}');
SELECT privacy.drop_retention('loose');
-- nothing of that changed the rules
SELECT tbl, keep, action FROM privacy.retention_rules ORDER BY tbl::text;

-- legal holds
SELECT privacy.place_hold('42', 'litigation 2026-117') > 0 AS held;
SELECT privacy.place_hold('', 'x');
SELECT privacy.place_hold('43', '');
SELECT privacy.place_hold('43', 'old matter', now() - interval '1 day');
SELECT subject, reason, until FROM privacy.active_holds;

-- the preview changes nothing
SELECT table_name, action, keep, rows_due, rows_held, oldest_due < now() - interval '4 years' AS old
  FROM privacy.purge_preview();
SELECT count(*) AS orders_left FROM orders;

-- a purge in small batches, as the compliance officer
SET ROLE ret_officer;
CALL privacy.purge(batch_size => 7);
RESET ROLE;
SELECT outcome, started_by, batch_size, error FROM privacy.purge_runs ORDER BY id;
SELECT tbl, action, matched, purged, held, batches FROM privacy.purge_run_tables ORDER BY tbl::text;
SET privacy.purpose = 'billing';
SELECT count(*) AS orders_left, count(*) FILTER (WHERE created_at < now() - interval '3 years') AS old_left,
       count(*) FILTER (WHERE customer_id = 42 AND created_at < now() - interval '3 years') AS held_left
  FROM orders;
SELECT id, email, phone, city FROM customers ORDER BY id;
RESET privacy.purpose;
-- the encrypted column is really NULL, not an encrypted empty value
SELECT count(*) FILTER (WHERE email IS NULL) AS emails_cleared FROM customers;

-- a second run finds nothing more to do; releasing the hold lets the held rows go
CALL privacy.purge();
SELECT tbl, matched, purged, held FROM privacy.purge_run_tables WHERE run_id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY tbl::text;
SELECT privacy.release_hold('42');
SELECT privacy.release_hold('42');
CALL privacy.purge();
SELECT tbl, matched, purged, held FROM privacy.purge_run_tables WHERE run_id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY tbl::text;

-- a run left 'running' (a crash, a cancel) is marked interrupted by the next run
INSERT INTO privacy.purge_runs (batch_size) VALUES (1);
CALL privacy.purge();
SELECT id, outcome FROM privacy.purge_runs ORDER BY id;

-- a time budget stops a run between batches, and the next run goes on
INSERT INTO orders SELECT g, g, now() - interval '10 years', 0 FROM generate_series(1001, 1050) g;
CALL privacy.purge(batch_size => 5, time_budget => interval '0');
SELECT outcome FROM privacy.purge_runs ORDER BY id DESC LIMIT 1;
CALL privacy.purge(batch_size => 5);
SELECT outcome, (SELECT sum(purged) FROM privacy.purge_run_tables t WHERE t.run_id = r.id) AS purged
  FROM privacy.purge_runs r ORDER BY id DESC LIMIT 1;

-- Only the purge worker records a run as its own: it is known by its
-- process, never by an argument.  An officer (or pg_cron, which runs CALL
-- privacy.purge() as the job's role) is recorded as a call, by that role.
SET ROLE ret_officer;
CALL privacy.purge(via => 'worker');
SELECT privacy_internal.purge_start(10, NULL, 'worker', 'ret_officer');
SELECT privacy_internal.purge_start(10, NULL, 'call', 'ret_app');
CALL privacy.purge(via => 'call');
RESET ROLE;
SELECT via, started_by, outcome FROM privacy.purge_runs ORDER BY id DESC LIMIT 1;
SELECT count(*) AS worker_runs, count(*) FILTER (WHERE started_by = 'ret_app') AS runs_of_ret_app
  FROM privacy.purge_runs WHERE via = 'worker' OR started_by = 'ret_app';

-- bad arguments, and who may purge
CALL privacy.purge(batch_size => 0);
SET ROLE ret_app;
CALL privacy.purge();
SELECT * FROM privacy.purge_preview();
SELECT privacy.place_hold('1', 'x');
RESET ROLE;

-- A table with nothing due is done when the run starts: no batch is built
-- for it, and a run where nothing is due ends in the transaction that
-- started it (issue #19).  A row that becomes due later is purged by the
-- next run.
CALL privacy.purge();
SELECT r.outcome, t.tbl, t.matched, t.purged, t.batches, t.status
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
 WHERE r.id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY t.position;
SELECT count(*) AS advisory_locks_left FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
INSERT INTO orders VALUES (2001, 7, now() - interval '10 years', 1);
CALL privacy.purge();
SELECT t.tbl, t.matched, t.purged, t.batches, t.status
  FROM privacy.purge_run_tables t WHERE t.run_id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY t.position;
SELECT count(*) AS order_2001 FROM orders WHERE id = 2001;

-- The run's order of tables is kept for the session: a foreign key added
-- since, or a rule dropped, is seen by the next run.  customers came first
-- (by name: no reference between the tables); once orders references it,
-- orders comes first.
ALTER TABLE orders ADD COLUMN buyer bigint REFERENCES customers ON DELETE SET NULL;
CALL privacy.purge();
SELECT t.tbl, t.position FROM privacy.purge_run_tables t
 WHERE t.run_id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY t.position;
ALTER TABLE orders DROP COLUMN buyer;
SELECT privacy.drop_retention('customers');
CALL privacy.purge();
SELECT t.tbl, t.position FROM privacy.purge_run_tables t
 WHERE t.run_id = (SELECT max(id) FROM privacy.purge_runs) ORDER BY t.position;

DROP TABLE orders, customers, loose;
DROP EXTENSION privacy;
DROP ROLE ret_officer, ret_app;
