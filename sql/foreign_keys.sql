-- Erasure and purge on a schema with foreign keys (issue #13): tables in
-- the order of their references (children before parents), rows deleted by
-- ON DELETE CASCADE and set to NULL by ON DELETE SET NULL counted per
-- table, a restrict from a table the operation does not process and a
-- cycle refused with an error that names the constraint and both tables,
-- partitioned tables and children of inheritance, every classified column
-- of an anonymized row cleared; a purge goes on past a failing table and
-- the next run resumes.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
CREATE ROLE fk_officer LOGIN IN ROLE privacy_officer;

-- customers <- orders (partitioned) <- invoices, tickets -> customers, and
-- back: customers.last_order_id -> orders (SET NULL).  order_lines and
-- visits are not protected: order_lines go with their order (CASCADE),
-- visits lose their customer (SET NULL).  tickets_archive inherits from
-- tickets and has a foreign key of its own.
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                        phone text, segment text, closed_at timestamptz, last_order_id bigint);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                     created_at timestamptz NOT NULL, note privacy.encrypted_text(contact))
    PARTITION BY HASH (id);
CREATE TABLE orders_0 PARTITION OF orders FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE orders_1 PARTITION OF orders FOR VALUES WITH (MODULUS 2, REMAINDER 1);
ALTER TABLE customers ADD CONSTRAINT customers_last_order_fkey
    FOREIGN KEY (last_order_id) REFERENCES orders ON DELETE SET NULL;
CREATE TABLE order_lines (order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE, line int, item text);
CREATE TABLE invoices (id bigint PRIMARY KEY, customer_id bigint NOT NULL, order_id bigint NOT NULL REFERENCES orders,
                       issued_at timestamptz NOT NULL, iban privacy.encrypted_text(financial));
CREATE TABLE tickets (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, opened_at timestamptz NOT NULL,
                      body privacy.encrypted_text(contact));
CREATE TABLE tickets_archive () INHERITS (tickets);
ALTER TABLE tickets_archive ADD FOREIGN KEY (customer_id) REFERENCES customers;
CREATE TABLE visits (customer_id bigint REFERENCES customers ON DELETE SET NULL, at timestamptz);

INSERT INTO customers (id, name, email, phone, segment) VALUES
    (17, 'Zed', 'zed@example.org', '+33 1 17', 'gold'), (18, 'Bob', 'bob@example.org', '+33 1 18', 'silver');
INSERT INTO orders SELECT g, CASE WHEN g <= 3 THEN 17 ELSE 18 END, now() - interval '1 day', 'note ' || g
  FROM generate_series(1, 5) g;
UPDATE customers SET last_order_id = CASE id WHEN 17 THEN 3 ELSE 5 END;
INSERT INTO order_lines SELECT o, l, 'item' FROM generate_series(1, 5) o, generate_series(1, 2) l;
INSERT INTO invoices VALUES (1, 17, 1, now(), 'FR76 17'), (2, 17, 2, now(), 'FR76 17'), (3, 18, 4, now(), 'FR76 18');
INSERT INTO tickets VALUES (1, 17, now(), 'parcel'), (2, 18, now(), 'thanks');
INSERT INTO tickets_archive VALUES (3, 17, now() - interval '3 years', 'old parcel');
INSERT INTO visits VALUES (17, now()), (17, now()), (18, now());
SELECT privacy.classify('customers', 'name', 'contact');
SELECT privacy.classify('customers', 'phone', 'contact');
SELECT privacy.protect_table(t, 'customer_id') FROM unnest(ARRAY['orders', 'invoices', 'tickets']::regclass[]) t;
SELECT privacy.protect_table('customers', 'id');
-- customers are kept for the books, anonymized: the rule lists email and
-- phone; name is classified too, so an erasure clears it as well
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['email', 'phone']);

------------------------------------------------------------------------------
-- Erasure
------------------------------------------------------------------------------
-- invoices before orders before customers, tickets before customers; the
-- receipt says what happened in every table the erasure reached
SET ROLE fk_officer;
SELECT privacy.erase_subject('17', 'request #17') AS receipt \gset
RESET ROLE;
SELECT t.key AS table_name, t.value AS what_happened
  FROM jsonb_each(:'receipt'::jsonb -> 'tables') t ORDER BY 1;
SELECT :'receipt'::jsonb -> 'keys_destroyed' AS keys_destroyed;
-- the rows themselves
SET privacy.purpose = 'billing';
SELECT id, name, email, phone, segment, last_order_id, privacy.is_erased(email) AS erased FROM customers ORDER BY id;
SELECT tableoid::regclass AS partition, id, customer_id FROM orders ORDER BY id;
SELECT order_id, count(*) FROM order_lines GROUP BY 1 ORDER BY 1;
SELECT id, customer_id FROM invoices ORDER BY id;
SELECT tableoid::regclass AS tbl, id, customer_id FROM tickets ORDER BY id;
SELECT customer_id, count(*) FROM visits GROUP BY 1 ORDER BY 1;
RESET privacy.purpose;
-- the receipt is what privacy.erasures keeps
SELECT tables = (:'receipt'::jsonb -> 'tables') AS recorded FROM privacy.erasures ORDER BY id DESC LIMIT 1;

-- A restrict from a table the erasure does not process: complaints is not
-- protected, and its rows would be left pointing at nothing.  The erasure
-- of a subject with a complaint is refused and changes nothing; one without
-- goes through.
SELECT privacy.drop_retention('customers');
CREATE TABLE complaints (id int PRIMARY KEY, customer_id bigint REFERENCES customers, said text);
INSERT INTO complaints VALUES (1, 18, 'late parcel');
SET ROLE fk_officer;
SELECT privacy.erase_subject('18', 'request #18');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT (SELECT count(*) FROM orders WHERE customer_id = 18) AS orders_18,
       (SELECT state FROM privacy.data_keys WHERE subject_hash = privacy.subject_hash('18')) AS key_18;
-- rows that stay and point at the subject's rows: the same error when the
-- referencing table is protected but keeps them (here: anonymized)
DELETE FROM complaints;
SELECT privacy.set_retention('invoices', 'issued_at', interval '10 years', 'anonymize', ARRAY['iban']);
SET ROLE fk_officer;
SELECT privacy.erase_subject('18', 'request #18');
RESET ROLE;
SELECT privacy.drop_retention('invoices');
-- now it goes through: every row of 18 deleted, customers last
SET ROLE fk_officer;
SELECT t.key AS table_name, t.value AS what_happened
  FROM jsonb_each(privacy.erase_subject('18', 'request #18') -> 'tables') t ORDER BY 1;
RESET ROLE;
SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders,
       (SELECT count(*) FROM order_lines) AS order_lines, (SELECT count(*) FROM visits WHERE customer_id IS NULL) AS visits_without_customer;

-- A cycle: accounts and contacts reference each other, both ON DELETE NO
-- ACTION; neither can lose its rows first.
CREATE TABLE accounts (id bigint PRIMARY KEY, customer_id bigint NOT NULL, main_contact int);
CREATE TABLE contacts (id int PRIMARY KEY, customer_id bigint NOT NULL, account_id bigint REFERENCES accounts);
ALTER TABLE accounts ADD CONSTRAINT accounts_main_contact_fkey FOREIGN KEY (main_contact) REFERENCES contacts;
INSERT INTO accounts VALUES (1, 40, NULL);
INSERT INTO contacts VALUES (1, 40, 1);
UPDATE accounts SET main_contact = 1;
SELECT privacy.protect_table('accounts', 'customer_id');
SELECT privacy.protect_table('contacts', 'customer_id');
SET ROLE fk_officer;
SELECT privacy.erase_subject('40', 'request #40');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS accounts_40 FROM accounts WHERE customer_id = 40;
-- a constraint checked at commit does not break it (the erasure checks it
-- after each statement); one that sets NULL does
ALTER TABLE accounts ALTER CONSTRAINT accounts_main_contact_fkey DEFERRABLE INITIALLY DEFERRED;
SET ROLE fk_officer;
SELECT privacy.erase_subject('40', 'request #40');
RESET ROLE;
ALTER TABLE accounts DROP CONSTRAINT accounts_main_contact_fkey,
    ADD CONSTRAINT accounts_main_contact_fkey FOREIGN KEY (main_contact) REFERENCES contacts ON DELETE SET NULL;
SET ROLE fk_officer;
SELECT t.key AS table_name, t.value AS what_happened
  FROM jsonb_each(privacy.erase_subject('40', 'request #40') -> 'tables') t
 WHERE t.key IN ('public.accounts', 'public.contacts') ORDER BY 1;
RESET ROLE;

-- An erasure keeps the foreign-key graph for the session (memo.c) until a
-- relation of it changes: a table that starts referencing customers
-- between two erasures of one session is in the second receipt.
INSERT INTO customers (id, name) VALUES (19, 'Ann'), (20, 'Eve');
SET ROLE fk_officer;
SELECT privacy.erase_subject('19', 'request #19') -> 'tables' ? 'public.notes' AS notes_in_19;
RESET ROLE;
CREATE TABLE notes (customer_id bigint REFERENCES customers ON DELETE CASCADE, said text);
INSERT INTO notes VALUES (20, 'called'), (20, 'called again');
SET ROLE fk_officer;
SELECT privacy.erase_subject('20', 'request #20') -> 'tables' -> 'public.notes' AS notes_in_20;
RESET ROLE;
SELECT count(*) AS notes_left FROM notes;
DROP TABLE notes;
-- The same for a table that starts referencing a partition of orders
-- without an ON DELETE action: the erasure after it is refused, naming the
-- constraint (not PostgreSQL's message with the key values); once the
-- table is dropped, the next erasure of the session goes through.
INSERT INTO customers (id, name) VALUES (21, 'Kim'), (22, 'Lou');
INSERT INTO orders SELECT g, CASE WHEN g < 220 THEN 21 ELSE 22 END, now(), NULL FROM generate_series(210, 221) g;
SET ROLE fk_officer;
SELECT privacy.erase_subject('22', 'request #22') -> 'tables' ? 'public.disputes' AS disputes_in_22;
RESET ROLE;
CREATE TABLE disputes (order_id bigint REFERENCES orders_0, said text);
INSERT INTO disputes SELECT id, 'chargeback' FROM orders_0 WHERE customer_id = 21 LIMIT 1;
SET ROLE fk_officer;
SELECT privacy.erase_subject('21', 'request #21');
RESET ROLE;
SELECT count(*) AS orders_21 FROM orders WHERE customer_id = 21;
DROP TABLE disputes;
SET ROLE fk_officer;
SELECT privacy.erase_subject('21', 'request #21') -> 'tables' -> 'public.orders' AS orders_in_21;
RESET ROLE;
SELECT count(*) AS orders_21 FROM orders WHERE customer_id = 21;
-- A reference checked at commit is named in the kept graph by schema and
-- name (SET CONSTRAINTS): its table moved to another schema or the
-- constraint renamed between two erasures of a session, the next erasure
-- still goes through (both failed: constraint "pledges_customer_id_fkey"
-- does not exist, for the rest of the session).
CREATE SCHEMA elsewhere;
CREATE TABLE pledges (customer_id bigint REFERENCES customers DEFERRABLE INITIALLY DEFERRED, note text);
INSERT INTO customers (id, name) VALUES (23, 'Max'), (24, 'Ned'), (25, 'Oda');
SET ROLE fk_officer;
SELECT privacy.erase_subject('23', 'request #23') -> 'tables' -> 'public.customers' ->> 'action' AS customers_23;
RESET ROLE;
ALTER TABLE pledges SET SCHEMA elsewhere;
SET ROLE fk_officer;
SELECT privacy.erase_subject('24', 'request #24') -> 'tables' -> 'public.customers' ->> 'action' AS customers_24;
RESET ROLE;
ALTER TABLE elsewhere.pledges RENAME CONSTRAINT pledges_customer_id_fkey TO pledges_customer;
SET ROLE fk_officer;
SELECT privacy.erase_subject('25', 'request #25') -> 'tables' -> 'public.customers' ->> 'action' AS customers_25;
RESET ROLE;
DROP SCHEMA elsewhere CASCADE;
-- A table protected inside the transaction of two erasures: the second
-- one erases its rows (the transaction's own catalog change moves the
-- generation at once).
INSERT INTO customers (id, name) VALUES (26, 'Pia'), (27, 'Quy');
CREATE TABLE memos (customer_id bigint NOT NULL, said text);
INSERT INTO memos VALUES (27, 'called'), (26, 'called');
BEGIN;
SELECT privacy.erase_subject('26', 'request #26') -> 'tables' ? 'public.memos' AS memos_in_26;
SELECT privacy.protect_table('memos', 'customer_id');
SELECT privacy.erase_subject('27', 'request #27') -> 'tables' -> 'public.memos' AS memos_in_27;
COMMIT;
SELECT customer_id FROM memos ORDER BY 1;
-- ... and a protection rolled back to a savepoint is forgotten with it: the
-- next erasure leaves the unprotected table alone
SELECT privacy.unprotect_table('memos');
INSERT INTO customers (id, name) VALUES (28, 'Rey');
INSERT INTO memos VALUES (28, 'called');
BEGIN;
SAVEPOINT before_protect;
SELECT privacy.protect_table('memos', 'customer_id');
SELECT privacy.erase_subject('26', 'request #26') -> 'tables' -> 'public.memos' AS memos_in_26;
ROLLBACK TO SAVEPOINT before_protect;
SELECT privacy.erase_subject('28', 'request #28') -> 'tables' ? 'public.memos' AS memos_in_28;
COMMIT;
SELECT customer_id FROM memos ORDER BY 1;
DROP TABLE memos;

------------------------------------------------------------------------------
-- Anonymizing or deleting: the rule's action, unless a classified column
-- cannot be cleared
------------------------------------------------------------------------------
CREATE TABLE members (id bigint PRIMARY KEY, name text NOT NULL, email text, nickname text,
                      card privacy.encrypted_text(financial), joined_at timestamptz);
INSERT INTO members VALUES (50, 'Ada', 'ada@example.org', 'ada', 'card 50', now()),
                           (51, 'Eve', 'eve@example.org', 'eve', 'card 51', now());
SELECT privacy.classify('members', 'name', 'contact');
SELECT privacy.classify('members', 'email', 'contact');
SELECT privacy.protect_table('members', 'id');
SELECT privacy.set_retention('members', 'joined_at', interval '5 years', 'anonymize', ARRAY['name', 'card'],
                             masks => '{"name": "former member"}');
-- name masked, card cleared (both in the rule), email cleared (classified,
-- not in the rule), nickname kept (not classified)
SET ROLE fk_officer;
SELECT privacy.erase_subject('50', 'request #50') -> 'tables' -> 'public.members' AS members;
RESET ROLE;
SET privacy.purpose = 'billing';
SELECT id, name, email, nickname, card FROM members ORDER BY id;
RESET privacy.purpose;
-- a classified NOT NULL column without a masking value cannot be cleared:
-- the rows are deleted, and the receipt says why
SELECT privacy.set_retention('members', 'joined_at', interval '5 years', 'anonymize', ARRAY['card']);
SET ROLE fk_officer;
SELECT privacy.erase_subject('51', 'request #51') -> 'tables' -> 'public.members' AS members;
RESET ROLE;
SELECT count(*) AS members_51 FROM members WHERE id = 51;

------------------------------------------------------------------------------
-- Purge
------------------------------------------------------------------------------
-- a dropped table takes its retention rule with it (a purge would fail on it)
DROP TABLE accounts, contacts, members, complaints CASCADE;
SELECT tbl FROM privacy.retention_rules ORDER BY tbl::text;
TRUNCATE customers, orders, order_lines, invoices, tickets, visits;
-- customers closed 2 years ago (due after 1 year); orders 5 years old (due
-- after 3); invoices kept 10 years; tickets 3 years old (due after 2)
INSERT INTO customers (id, name, closed_at) VALUES (30, 'has an invoice', now() - interval '2 years'),
    (31, 'all due', now() - interval '2 years'), (32, 'open', NULL);
INSERT INTO orders VALUES (301, 30, now() - interval '5 years'), (302, 30, now() - interval '5 years'),
    (311, 31, now() - interval '5 years'), (312, 31, now() - interval '5 years'), (321, 32, now() - interval '5 years');
UPDATE customers SET last_order_id = id * 10 + 1;
INSERT INTO order_lines SELECT o, l, 'item' FROM unnest(ARRAY[301, 302, 311, 312, 321]) o, generate_series(1, 3) l;
INSERT INTO invoices VALUES (1, 30, 301, now() - interval '5 years');
INSERT INTO tickets VALUES (1, 31, now() - interval '3 years'), (2, 32, now());
INSERT INTO visits VALUES (31, now()), (32, now());
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'delete');
SELECT privacy.set_retention('orders', 'created_at', interval '3 years', 'delete');
SELECT privacy.set_retention('invoices', 'issued_at', interval '10 years', 'delete');
SELECT privacy.set_retention('tickets', 'opened_at', interval '2 years', 'delete');
-- shipments are not protected and restrict orders: order 321 cannot go
CREATE TABLE shipments (order_id bigint REFERENCES orders, sent_at timestamptz);
INSERT INTO shipments VALUES (321, now());

-- Run 1: tables before the tables they reference (invoices, tickets,
-- orders, customers).  orders fails on the restrict from shipments, and the
-- run goes on: tickets and customers are purged; customers 30 and 31 wait
-- for their orders, which are still there.
SET ROLE fk_officer;
CALL privacy.purge(batch_size => 100);
RESET ROLE;
SELECT id, outcome, error FROM privacy.purge_runs ORDER BY id;
SELECT position, tbl, action, status, matched, purged, waiting, cascaded, set_null, error
  FROM privacy.purge_run_tables WHERE run_id = 1 ORDER BY position NULLS LAST, tbl::text;
SELECT id FROM customers ORDER BY id;
SELECT id FROM orders ORDER BY id;

-- Run 2, once the shipment is gone: orders go (but 301, which an invoice
-- references), their lines with them, and then customer 31.
DELETE FROM shipments;
SET ROLE fk_officer;
CALL privacy.purge(batch_size => 100);
RESET ROLE;
SELECT id, outcome, error FROM privacy.purge_runs ORDER BY id;
SELECT position, tbl, action, status, matched, purged, waiting, cascaded, set_null, error
  FROM privacy.purge_run_tables WHERE run_id = 2 ORDER BY position NULLS LAST, tbl::text;
SELECT id, last_order_id FROM customers ORDER BY id;
SELECT id FROM orders ORDER BY id;
SELECT order_id, count(*) FROM order_lines GROUP BY 1 ORDER BY 1;
SELECT customer_id FROM visits ORDER BY 1;

-- A run stopped by its time budget after its first table: the next run
-- starts where it stopped and does the first table last.
INSERT INTO orders VALUES (401, 32, now() - interval '5 years');
INSERT INTO tickets VALUES (3, 32, now() - interval '3 years');
CREATE FUNCTION slow_invoice() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN OLD; END $$;
CREATE TRIGGER slow_invoice BEFORE DELETE ON invoices FOR EACH ROW EXECUTE FUNCTION slow_invoice();
INSERT INTO invoices VALUES (2, 32, 401, now() - interval '11 years');
SET ROLE fk_officer;
CALL privacy.purge(batch_size => 100, time_budget => interval '1 s');
RESET ROLE;
SELECT id, outcome, resumes FROM privacy.purge_runs WHERE id = 3;
SELECT position, tbl, status, purged FROM privacy.purge_run_tables WHERE run_id = 3 AND position IS NOT NULL ORDER BY position;
SET ROLE fk_officer;
CALL privacy.purge(batch_size => 100);
RESET ROLE;
SELECT id, outcome, resumes FROM privacy.purge_runs WHERE id = 4;
SELECT position, tbl, status, purged FROM privacy.purge_run_tables WHERE run_id = 4 AND position IS NOT NULL ORDER BY position;

-- A cycle between tables with rules, and a table whose trigger raises:
-- those tables fail, the others are purged.  What the trigger said is not
-- kept (it may quote the row), only its SQLSTATE.
CREATE TABLE a_side (id int PRIMARY KEY, customer_id bigint, b int, at timestamptz);
CREATE TABLE b_side (id int PRIMARY KEY, customer_id bigint, a int REFERENCES a_side, at timestamptz);
ALTER TABLE a_side ADD CONSTRAINT a_side_b_fkey FOREIGN KEY (b) REFERENCES b_side;
SELECT privacy.protect_table('a_side', 'customer_id');
SELECT privacy.protect_table('b_side', 'customer_id');
SELECT privacy.set_retention('a_side', 'at', interval '1 year', 'delete');
SELECT privacy.set_retention('b_side', 'at', interval '1 year', 'delete');
INSERT INTO tickets VALUES (4, 32, now() - interval '3 years');
INSERT INTO orders VALUES (402, 32, now() - interval '5 years');
CREATE FUNCTION tickets_guard() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'ticket % of customer % is still open', OLD.id, OLD.customer_id; END $$;
CREATE TRIGGER tickets_guard BEFORE DELETE ON tickets FOR EACH ROW EXECUTE FUNCTION tickets_guard();
SET ROLE fk_officer;
CALL privacy.purge();
RESET ROLE;
SELECT position, tbl, status, purged, error FROM privacy.purge_run_tables
 WHERE run_id = 5 AND position IS NOT NULL ORDER BY position;
SELECT count(*) AS errors_naming_the_customer FROM privacy.purge_run_tables WHERE error LIKE '%32%';

-- Another purge running: this one does nothing (if_running 'skip', the
-- default) or waits for it (test/isolation/specs/purge_concurrent.spec);
-- nothing else is asked for.
CALL privacy.purge(if_running => 'queue');

DROP TABLE a_side, b_side, shipments, visits, order_lines, invoices, tickets_archive, tickets, customers, orders CASCADE;
DROP FUNCTION slow_invoice(), tickets_guard();
DROP EXTENSION privacy;
DROP ROLE fk_officer;
