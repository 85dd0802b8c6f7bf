# An operator's ordinary customer schema, end to end (issue #13, "Done
# when"): customers, orders, invoices and tickets with foreign keys in
# both directions (CASCADE and SET NULL), personal columns encrypted or
# classified, written by an application before the extension is
# installed.  The schema goes through classify, protect_table, consent,
# purposes, a purge, an erasure, the subject report and a dump and
# restore, and every count in a receipt is compared with the rows that
# were there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('shop', init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');

# The application's schema and data, before the extension: 300 customers
# (every 10th closed three years ago), (i % 4) orders each with one
# invoice, (i % 3) tickets, every other ticket three years old.
$node->safe_psql('shop', q{
CREATE ROLE shop_app LOGIN;
CREATE ROLE shop_officer LOGIN;
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, birth_date date,
                        profile jsonb, closed_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                     total numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL);
CREATE INDEX ON orders (customer_id);
CREATE TABLE invoices (id bigint PRIMARY KEY,
                       order_id bigint REFERENCES orders ON DELETE SET NULL,
                       customer_id bigint REFERENCES customers ON DELETE SET NULL,
                       iban text, amount numeric(10,2) NOT NULL, issued_at timestamptz NOT NULL);
CREATE INDEX ON invoices (order_id);
CREATE INDEX ON invoices (customer_id);
CREATE TABLE tickets (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                      body text, opened_at timestamptz NOT NULL);
CREATE INDEX ON tickets (customer_id);
INSERT INTO customers
SELECT i, 'Customer ' || i, 'c' || i || '@example.org', date '1970-01-01' + i * 37,
       jsonb_build_object('tier', CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END, 'lang', 'de'),
       CASE WHEN i % 10 = 0 THEN now() - interval '3 years' END
  FROM generate_series(1, 300) i;
INSERT INTO orders SELECT i * 10 + k, i, 10 * k + 0.5, now() - interval '1 year'
  FROM generate_series(1, 300) i, generate_series(1, 3) k WHERE k <= i % 4;
INSERT INTO invoices SELECT id, id, customer_id, 'DE' || lpad(customer_id::text, 20, '0'), total, placed_at FROM orders;
INSERT INTO tickets SELECT i * 10 + k, i, 'ticket ' || k || ' of customer ' || i,
                           CASE WHEN k % 2 = 1 THEN now() - interval '3 years' ELSE now() - interval '1 month' END
  FROM generate_series(1, 300) i, generate_series(1, 2) k WHERE k <= i % 3;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, invoices, tickets TO shop_app;
});

sub sq { return $node->safe_psql('shop', $_[0]); }

my %before = map { $_ => sq("SELECT count(*) FROM $_") } qw(customers orders invoices tickets);
is_deeply(\%before, { customers => 300, orders => 450, invoices => 450, tickets => 300 }, 'the schema holds its data');

# ---------------------------------------------------------------------------
# Install, classify, protect.
# ---------------------------------------------------------------------------
sq(q{
CREATE EXTENSION privacy;
GRANT privacy_officer TO shop_officer;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_category('profile');
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('support', 'legitimate_interests', 'customer support', ARRAY['contact', 'profile']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact', 'profile']);
SELECT privacy.grant_purpose('shop_app', 'billing');
SELECT privacy.grant_purpose('shop_app', 'support');
SELECT privacy.grant_purpose('shop_app', 'marketing');
SELECT privacy.classify('customers', 'email', 'contact', searchable => true, encrypt => true);
SELECT privacy.classify('customers', 'name', 'contact');
SELECT privacy.classify('customers', 'birth_date', 'profile');
SELECT privacy.classify('customers', 'profile', 'profile');
SELECT privacy.classify('invoices', 'iban', 'financial', encrypt => true);
SELECT privacy.classify('tickets', 'body', 'contact', encrypt => true);
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('invoices', 'customer_id');
SELECT privacy.protect_table('tickets', 'customer_id');
});
is(sq(q{SELECT string_agg(table_name || '.' || column_name || '=' || category || '/' || encrypted, ',' ORDER BY table_name, column_name)
  FROM privacy.classified_columns WHERE category IS NOT NULL AND category <> 'unclassified'}),
	'customers.birth_date=profile/false,customers.email=contact/true,customers.name=contact/false,customers.profile=profile/false,'
	  . 'invoices.iban=financial/true,tickets.body=contact/true',
	'classified: every personal column, encrypted where asked');
is(sq(q{SELECT count(*) FROM customers WHERE email::text LIKE 'pv1:%'}), '300',
	'a superuser with no purpose sees envelopes, not e-mail addresses');

# ---------------------------------------------------------------------------
# Consent, objections, purposes.
# ---------------------------------------------------------------------------
sq(q{
SET ROLE shop_officer;
SELECT privacy.grant_consent(i::text, 'marketing', 'web-form') FROM generate_series(1, 300, 4) i;
SELECT privacy.withdraw_consent('5', 'marketing', 'app-settings');
SELECT privacy.object('6', 'support', 'letter');
});
my $marketing = sq(q{SELECT count(*) FROM generate_series(1, 300, 4) i WHERE i <> 5});
my $app = sub {
	my ($purpose, $sql) = @_;
	return $node->safe_psql('shop', "SET ROLE shop_app; SET privacy.purpose = '$purpose'; $sql");
};
is($app->('marketing', 'SELECT count(*) FROM customers'), $marketing, 'marketing: the customers who consented');
is($app->('marketing', 'SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id'),
	sq(q{SELECT count(*) FROM orders WHERE customer_id % 4 = 1 AND customer_id <> 5}),
	'marketing: their orders, joined');
is($app->('support', 'SELECT count(*) FROM customers'), '299', 'support: everyone but the objector');
is($app->('billing', 'SELECT count(*) FROM customers'), '300', 'billing (contract): everyone');
is($app->('billing', q{SELECT id FROM customers WHERE email = 'c42@example.org'}), '42', 'billing: equality search on the encrypted e-mail');
is($app->('billing', 'SELECT iban FROM invoices WHERE id = 421'), 'DE00000000000000000042', 'billing: the IBAN opens');
my ($ret, $out, $err) = $node->psql('shop', q{SET ROLE shop_app; SET privacy.purpose = 'marketing'; SELECT iban FROM invoices LIMIT 1});
like($err, qr/not allowed/, 'marketing: the IBAN does not open');
($ret, $out, $err) = $node->psql('shop', q{SET ROLE shop_app; SELECT count(*) FROM tickets});
like($err, qr/no purpose declared/, 'no purpose: refused');
$app->('billing', q{INSERT INTO customers VALUES (301, 'Customer 301', 'c301@example.org', '1999-09-09', '{"tier": "basic"}', NULL);
INSERT INTO orders VALUES (3011, 301, 99.5, now());
INSERT INTO invoices VALUES (3011, 3011, 301, 'DE00000000000000000301', 99.5, now());
INSERT INTO tickets VALUES (3011, 301, 'hello from 301', now())});
is($app->('support', 'SELECT body FROM tickets WHERE id = 3011'), 'hello from 301', 'a new customer, written by the application, reads back');

# ---------------------------------------------------------------------------
# Retention and a purge: tickets after two years, closed customers after
# two years (their orders go with them, their invoices lose the
# reference), invoices anonymized after ten.
# ---------------------------------------------------------------------------
my $old_tickets = sq(q{SELECT count(*) FROM tickets WHERE opened_at < now() - interval '2 years'});
my $closed      = sq(q{SELECT count(*) FROM customers WHERE closed_at < now() - interval '2 years'});
my $closed_orders = sq(q{SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.closed_at IS NOT NULL});
my $closed_new_tickets = sq(q{SELECT count(*) FROM tickets t JOIN customers c ON c.id = t.customer_id
                              WHERE c.closed_at IS NOT NULL AND t.opened_at >= now() - interval '2 years'});
my $closed_invoices = sq(q{SELECT count(*) FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE c.closed_at IS NOT NULL});
cmp_ok($closed_orders, '>', 0, "closed customers have orders ($closed_orders)");
sq(q{
SELECT privacy.set_retention('tickets', 'opened_at', interval '2 years', 'delete');
SELECT privacy.set_retention('customers', 'closed_at', interval '2 years', 'delete');
SELECT privacy.set_retention('invoices', 'issued_at', interval '10 years', 'anonymize', ARRAY['iban']);
});
$node->safe_psql('shop', 'CALL privacy.purge()');
my $run = sq(q{SELECT max(id) FROM privacy.purge_runs});
is(sq("SELECT outcome FROM privacy.purge_runs WHERE id = $run"), 'completed', 'the purge completed');
is(sq("SELECT string_agg(tbl::text || ':' || coalesce(purged, 0) || '/' || coalesce(cascaded, 0) || '/' || coalesce(set_null, 0), ',' ORDER BY tbl::text)
        FROM privacy.purge_run_tables WHERE run_id = $run"),
	"customers:$closed/0/0,invoices:0/0/" . (2 * $closed_invoices) . ",orders:0/$closed_orders/0,tickets:$old_tickets/$closed_new_tickets/0",
	'the purge log counts exactly: old tickets and closed customers purged, their orders and newer tickets cascaded, their invoices lose two references each (set_null counts each reference set NULL)');
is(sq(q{SELECT count(*) FROM customers}), 301 - $closed, 'closed customers are gone');
is(sq(q{SELECT count(*) FROM invoices WHERE customer_id IS NULL}), $closed_invoices, 'their invoices stay, without the reference');

# ---------------------------------------------------------------------------
# Erasure of customer 42 (orders, invoices, tickets): the invoices are kept
# anonymized (the rule anonymizes), everything else deleted.
# ---------------------------------------------------------------------------
my %of42 = map { $_ => sq("SELECT count(*) FROM $_ WHERE customer_id = 42") } qw(orders invoices tickets);
is_deeply(\%of42, { orders => 2, invoices => 2, tickets => 0 }, 'customer 42 has two orders and invoices');
my %of47 = map { $_ => sq("SELECT count(*) FROM $_ WHERE customer_id = 47") } qw(orders invoices tickets);
is_deeply(\%of47, { orders => 3, invoices => 3, tickets => 1 }, 'customer 47 has three orders and invoices, a ticket');
my $receipt = $node->safe_psql('shop', q{SET ROLE shop_officer;
SELECT jsonb_pretty(privacy.erase_subject('47', 'customer request, ticket 7') - 'erased_at' - 'erasure' - 'subject_hash')});
note $receipt;
my $tables = $node->safe_psql('shop', q{SELECT string_agg(k || '=' || v::text, E'\n' ORDER BY k)
  FROM privacy.erasures e, jsonb_each(e.tables) t(k, v) WHERE e.id = (SELECT max(id) FROM privacy.erasures)});
like($tables, qr/^public\.customers=\{"rows": 1, "action": "deleted", "cascaded": 0, "set_null": 0\}$/m, 'receipt: the customer deleted');
like($tables, qr/^public\.orders=\{"rows": 3, "action": "deleted", "cascaded": 0, "set_null": 0\}$/m, 'receipt: three orders deleted');
like($tables, qr/^public\.tickets=\{"rows": 1, "action": "deleted", "cascaded": 0, "set_null": 0\}$/m, 'receipt: the ticket deleted');
like($tables, qr/^public\.invoices=\{"rows": 3, "action": "anonymized", "columns": \{"iban": "(null|masked|shredded)"\}, "cascaded": 0, "set_null": 6\}$/m,
	'receipt: three invoices anonymized, their two references each set NULL (6)');
is(sq(q{SELECT count(*) FROM customers WHERE id = 47}) . sq(q{SELECT count(*) FROM orders WHERE customer_id = 47})
	 . sq(q{SELECT count(*) FROM tickets WHERE customer_id = 47}), '000', 'no row of customer 47 is left but the invoices');
is(sq(q{SELECT count(*) || '/' || count(iban) || '/' || count(customer_id) FROM invoices WHERE id IN (471, 472, 473)}), '3/0/0',
	'the invoices stay, without IBAN or customer');
is(sq(q{SELECT keys_destroyed FROM privacy.erasures ORDER BY id DESC LIMIT 1}), '1', "receipt: the customer's key destroyed");
is(sq(q{SELECT count(*) FROM privacy.consent_state WHERE subject = '47'}), '0', 'no consent state left');

# ---------------------------------------------------------------------------
# The subject report of customer 42: what is held, in every table.
# ---------------------------------------------------------------------------
my $report = $node->safe_psql('shop', q{SET ROLE shop_officer; SELECT privacy.subject_report('42')});
for my $needle ('c42@example.org', 'Customer 42', 'DE00000000000000000042', '"public.orders"', '"public.invoices"')
{
	ok(index($report, $needle) >= 0, "report of 42 holds $needle");
}
my $report47 = $node->safe_psql('shop', q{SET ROLE shop_officer; SELECT privacy.subject_report('47')});
ok(index($report47, 'c47@example.org') < 0 && index($report47, 'Customer 47') < 0, 'report of 47: nothing of the erased customer');

# ---------------------------------------------------------------------------
# Dump and restore into a new database of the same server.
# ---------------------------------------------------------------------------
$node->safe_psql('shop', 'SELECT privacy.flush_access_log()');
my $dump = $node->basedir . '/shop.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'shop', '-f', $dump ], 'pg_dump of the shop');
$node->safe_psql('postgres', 'CREATE DATABASE shop_restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'shop_restored', $dump ], 'pg_restore of the shop');
my $fingerprint = q{SET ROLE shop_app; SET privacy.purpose = 'billing';
SELECT md5(string_agg(c.id || c.name || c.email::text || coalesce(i.iban::text, '-') || coalesce(t.body::text, '-'), ',' ORDER BY c.id, i.id, t.id))
  FROM customers c LEFT JOIN invoices i ON i.customer_id = c.id LEFT JOIN tickets t ON t.customer_id = c.id};
is($node->safe_psql('shop_restored', $fingerprint), $node->safe_psql('shop', $fingerprint),
	'restored: every value reads back the same');
is($node->safe_psql('shop_restored', q{SET ROLE shop_app; SET privacy.purpose = 'marketing'; SELECT count(*) FROM customers}),
	$node->safe_psql('shop', q{SET ROLE shop_app; SET privacy.purpose = 'marketing'; SELECT count(*) FROM customers}),
	'restored: the same customers under marketing (consent restored)');
is($node->safe_psql('shop_restored', 'SELECT tables FROM privacy.erasures ORDER BY id'),
	sq('SELECT tables FROM privacy.erasures ORDER BY id'), 'restored: the erasure receipts');
is($node->safe_psql('shop_restored', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'restored: the access log verifies');
is($node->safe_psql('shop_restored', q{SET ROLE shop_app; SET privacy.purpose = 'billing'; SELECT count(*) FROM customers WHERE id = 47}),
	'0', 'restored: the erased customer is still gone');

$node->stop;
done_testing();
