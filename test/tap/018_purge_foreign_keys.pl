# Purges on a schema with foreign keys (issue #13), under real conditions.
#
# customers <- orders <- invoices, each with a retention rule, and
# order_lines (not protected) going with their orders ON DELETE CASCADE.
# A run takes the tables in the order of their references: invoices,
# orders, customers.
#
# (1) kill -9 in the middle of a purge, while it deletes orders: the
# committed batches stay done and counted (with the order lines their
# deletion took along), the batch in flight is gone entirely, and the next
# run marks the crashed one interrupted, resumes it (purge_runs.resumes)
# starting with orders, then customers, then invoices, and purges the
# rest: in all every due row once.
# (2) The purge worker with a table that fails in the middle (orders,
# referenced by a table without a rule): invoices and customers are still
# purged, the run is failed and its log says which table and why, without
# a value; once the reference is gone the worker's next run purges orders.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });

my $schema = q{
CREATE EXTENSION privacy;
CREATE TABLE customers (id bigint PRIMARY KEY, closed_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                     created_at timestamptz NOT NULL);
CREATE TABLE invoices (id bigint PRIMARY KEY, customer_id bigint NOT NULL, order_id bigint NOT NULL REFERENCES orders,
                       issued_at timestamptz NOT NULL);
CREATE TABLE order_lines (order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE, line int);
-- 2000 customers closed 2 years ago, 5 orders each, 5 years old, 2 lines
-- each; half the orders have an invoice of 11 years ago (all due)
INSERT INTO customers SELECT g, now() - interval '2 years' FROM generate_series(1, 2000) g;
INSERT INTO orders SELECT g, (g - 1) / 5 + 1, now() - interval '5 years' FROM generate_series(1, 10000) g;
INSERT INTO order_lines SELECT o, l FROM generate_series(1, 10000) o, generate_series(1, 2) l;
INSERT INTO invoices SELECT g, (g - 1) / 5 + 1, g, now() - interval '11 years' FROM generate_series(1, 10000) g WHERE g % 2 = 0;
-- and what is not due: 10 open customers with a recent order each
INSERT INTO customers SELECT g, NULL FROM generate_series(3001, 3010) g;
INSERT INTO orders SELECT 20000 + g, 3000 + g, now() - interval '1 day' FROM generate_series(1, 10) g;
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('invoices', 'customer_id');
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'delete');
SELECT privacy.set_retention('orders', 'created_at', interval '3 years', 'delete');
SELECT privacy.set_retention('invoices', 'issued_at', interval '10 years', 'delete');
};

# ---------------------------------------------------------------------------
# (1) kill -9 in the middle of a purge.
# ---------------------------------------------------------------------------
my ($node) = PrivacyNode::new_node('crash', %init);
$node->start;
$node->safe_psql('postgres', $schema . q{
-- a millisecond per order: a batch of 500 takes half a second or more
CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN OLD; END $$;
CREATE TRIGGER slow_delete BEFORE DELETE ON orders FOR EACH ROW EXECUTE FUNCTION slow_delete();
});

my $bg = $node->background_psql('postgres', on_error_stop => 0);
(my $purge_pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_until(qr/purging/, "\\echo purging\nCALL privacy.purge(batch_size => 500);\n");
ok($node->poll_query_until('postgres', qq{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
                WHERE r.outcome = 'running' AND t.tbl = 'orders'::regclass AND t.purged >= 1000)
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $purge_pid AND wait_event = 'PgSleep')}),
	'crash: invoices done, orders under way, the backend inside a batch');
ok(PrivacyNode::crash_and_restart($node, $purge_pid), 'crash: kill -9 of the purging backend, the node is back');
eval { $bg->quit };

my ($run1) = $node->safe_psql('postgres', 'SELECT max(id) FROM privacy.purge_runs');
is($node->safe_psql('postgres', qq{
SELECT string_agg(format('%s %s %s', tbl, coalesce(status, '-'), purged), ', ' ORDER BY position NULLS LAST, tbl::text)
  FROM privacy.purge_run_tables WHERE run_id = $run1 AND position IS NOT NULL AND tbl <> 'orders'::regclass}),
	'invoices done 5000, customers pending 0',
	'after the crash: invoices were done, customers not reached');
my ($purged1, $batches1, $status1) = split /\|/, $node->safe_psql('postgres', qq{
SELECT purged, batches, status FROM privacy.purge_run_tables WHERE run_id = $run1 AND tbl = 'orders'::regclass});
is($status1, 'pending', 'after the crash: orders are still pending');
my $gone = 10000 - $node->safe_psql('postgres', 'SELECT count(*) FROM orders WHERE id <= 10000');
is($gone, $purged1, "after the crash: the orders gone are exactly those counted as purged ($purged1)");
is($purged1 % 500, 0, 'after the crash: only whole batches of 500 orders went');
is($node->safe_psql('postgres', qq{
SELECT cascaded FROM privacy.purge_run_tables WHERE run_id = $run1 AND tbl = 'order_lines'::regclass}),
	2 * $purged1, 'after the crash: the order lines the committed batches took along are counted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM order_lines'), 20000 - 2 * $purged1,
	'after the crash: the order lines gone are those counted');

# The next run, without the slow trigger: it resumes the crashed run.
$node->safe_psql('postgres', 'DROP TRIGGER slow_delete ON orders');
$node->safe_psql('postgres', 'CALL privacy.purge(batch_size => 500)');
my ($run2) = $node->safe_psql('postgres', 'SELECT max(id) FROM privacy.purge_runs');
is($node->safe_psql('postgres', qq{
SELECT string_agg(format('%s:%s%s', id, outcome, coalesce(' resumes ' || resumes, '')), ', ' ORDER BY id)
  FROM privacy.purge_runs}),
	"$run1:interrupted, $run2:completed resumes $run1",
	'next run: the crashed run is interrupted, the new one resumes it and completes');
is($node->safe_psql('postgres', qq{
SELECT string_agg(format('%s %s %s %s', position, tbl, status, purged), ', ' ORDER BY position)
  FROM privacy.purge_run_tables WHERE run_id = $run2 AND position IS NOT NULL}),
	'1 orders done ' . (10000 - $purged1) . ', 2 customers done 2000, 3 invoices done 0',
	'next run: it starts with orders, where the crashed run stopped, and does invoices last');
is($node->safe_psql('postgres', q{
SELECT (SELECT sum(purged) FROM privacy.purge_run_tables WHERE tbl = 'orders'::regclass) || '|'
    || (SELECT sum(cascaded) FROM privacy.purge_run_tables WHERE tbl = 'order_lines'::regclass) || '|'
    || (SELECT sum(purged) FROM privacy.purge_run_tables WHERE tbl = 'customers'::regclass) || '|'
    || (SELECT count(*) FROM orders) || '|' || (SELECT count(*) FROM customers) || '|'
    || (SELECT count(*) FROM order_lines) || '|' || (SELECT count(*) FROM invoices)}),
	'10000|20000|2000|10|10|0|0',
	'in all: every due order, order line and customer purged once, the open customers and their orders kept');
$node->stop;

# ---------------------------------------------------------------------------
# (2) The worker, with a table failing in the middle.
# ---------------------------------------------------------------------------
my ($wnode) = PrivacyNode::new_node('worker', %init);
$wnode->append_conf('postgresql.conf', qq{
privacy.purge_interval = 1
privacy.purge_batch_size = 1000
});
$wnode->start;
# one transaction, so that no worker run sees half of it; shipments (no
# rule) restrict the orders of customer 7
$wnode->safe_psql('postgres', "BEGIN;\n" . $schema . q{
CREATE TABLE shipments (order_id bigint REFERENCES orders, note text);
INSERT INTO shipments VALUES (31, 'sent to 7 Rue X');
COMMIT;
});
ok($wnode->poll_query_until('postgres', q{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'failed')}),
	'worker: a failed run appears');
my $wrun = $wnode->safe_psql('postgres', q{SELECT min(id) FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'failed'});
is($wnode->safe_psql('postgres', qq{
SELECT string_agg(format('%s %s %s', tbl, status, purged), ', ' ORDER BY position)
  FROM privacy.purge_run_tables WHERE run_id = $wrun AND position IS NOT NULL}),
	'invoices done 5000, orders failed 0, customers done 0',
	'worker: invoices purged, orders failed, customers reached (their orders still there: they wait)');
is($wnode->safe_psql('postgres', qq{SELECT error FROM privacy.purge_runs WHERE id = $wrun}),
	'1 of 3 tables failed: public.orders', 'worker: the run says which table failed');
like($wnode->safe_psql('postgres', qq{SELECT error FROM privacy.purge_run_tables WHERE run_id = $wrun AND tbl = 'orders'::regclass}),
	qr/^23503: rows of table public\.orders are still referenced from table public\.shipments through constraint "shipments_order_id_fkey"\. .*it has no retention rule\.$/,
	'worker: the table says why (SQLSTATE, the constraint and both tables)');
unlike($wnode->safe_psql('postgres', q{SELECT string_agg(coalesce(error, ''), ' ') FROM privacy.purge_run_tables}),
	qr/Rue|\(31\)|=\(/, 'worker: no value in the recorded errors');

# Once the shipment is gone, the next worker run purges orders and then customers.
$wnode->safe_psql('postgres', 'DELETE FROM shipments');
ok($wnode->poll_query_until('postgres', q{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'completed'
                  AND id > (SELECT max(id) FROM privacy.purge_runs WHERE outcome = 'failed'))
   AND NOT EXISTS (SELECT 1 FROM customers WHERE id <= 2000)}),
	'worker: after the reference is gone, a completed run purges the rest');
is($wnode->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE id <= 10000) || '|' || count(*) FROM orders}),
	'0|10', 'worker: every due order gone, the recent ones kept');
$wnode->stop;

done_testing();
