# privacy.verify_access_log() never reports an entry missing or altered
# that is not (issue #13).  0.1 said "entries ... were written since the
# server started and are gone" in 2 of 6 tries in a restored database,
# reading then verifying at once, and the failed run made compliance_gaps()
# report a broken log.
#
# (1) Restores: a database dumped and restored into a fresh database (custom
#     format, plain format through psql, and the parallel restore in
#     sections the DBA guide gives), then read and verified at once, in one
#     session and from another connection, and again and again while a
#     reader keeps the writer committing, many times.  The log is large
#     enough (about 30,000 entries) that a verification takes longer than
#     the writer's flush interval: with 0.1's order (the batches read under
#     the statement's snapshot, the writer's shared memory after them) this
#     reports entries "gone" in most rounds.
# (2) Restarts: reads, then an immediate or a fast shutdown, then read and
#     verify at once after the start, several times each.
# (3) A real cut is still reported in a restored database and after a
#     restart: a batch row deleted from the middle and from the end.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my $rounds = $ENV{PRIVACY_VERIFY_ROUNDS} // 12;

my ($node) = PrivacyNode::new_node('verify', init => { extra => ['--encoding=UTF8', '--locale=C'] });
$node->append_conf('postgresql.conf', qq{
privacy.access_log_flush_interval = '50ms'
privacy.access_log_databases = 8
});
$node->start;
$node->safe_psql('postgres', q{CREATE ROLE app LOGIN; CREATE DATABASE shop});
$node->safe_psql('shop', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.grant_purpose('app', 'billing');
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, note privacy.encrypted_text(contact));
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
GRANT SELECT, INSERT ON customers, orders TO app;
});
$node->safe_psql('shop', q{
SET privacy.purpose = 'billing';
INSERT INTO customers SELECT g, 'customer' || g || '@example.org' FROM generate_series(1, 50) g;
INSERT INTO orders SELECT g, 1 + g % 50, 'order ' || g FROM generate_series(1, 200) g;
}, extra_params => ['-U', 'app']);

# a log of several batch rows: reads flushed in between
for my $i (1 .. 3)
{
	$node->safe_psql('shop', qq{SET privacy.purpose = 'billing';
DO \$\$ BEGIN FOR i IN 1..5000 LOOP PERFORM email::text FROM customers WHERE id = 1 + (i * $i) % 50; END LOOP; END \$\$;},
		extra_params => ['-U', 'app']);
	$node->safe_psql('shop', 'SELECT privacy.flush_access_log()');
}
is($node->safe_psql('shop', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'the source log verifies');
my $source_entries = $node->safe_psql('shop', 'SELECT last_seq FROM privacy.access_log_head');
cmp_ok($node->safe_psql('shop', 'SELECT count(*) FROM privacy.access_log_batches'), '>', 3,
	"the source log has several batch rows ($source_entries entries)");

my $dump_custom = $node->basedir . '/shop.dump';
my $dump_plain = $node->basedir . '/shop.sql';
my $dump_dir = $node->basedir . '/shop.dir';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'shop', '-f', $dump_custom ], 'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-d', 'shop', '-f', $dump_plain ], 'pg_dump -Fp');
$node->command_ok([ 'pg_dump', '-Fd', '-j', '2', '-d', 'shop', '-f', $dump_dir ], 'pg_dump -Fd -j 2');

sub restore
{
	my ($kind, $db) = @_;
	my @steps =
	    $kind eq 'custom' ? ([ 'pg_restore', '--exit-on-error', '-d', $db, $dump_custom ])
	  : $kind eq 'plain' ? ([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $db, '-f', $dump_plain ])
	  : map { [ 'pg_restore', '--exit-on-error', '-d', $db, @$_, $dump_dir ] }
	  ([ '--section=pre-data' ], [ '--section=data', '-n', 'privacy' ],
		[ '--section=data', '-N', 'privacy', '-j', '2' ], [ '--section=post-data', '-j', '2' ]);
	for my $step (@steps)
	{
		return "@$step failed (see the test's log)" unless $node->run_log($step);
	}
	return '';
}

# ---------------------------------------------------------------------------
# (1) restores, read and verify at once
# ---------------------------------------------------------------------------
my @kinds = qw(custom plain parallel);
my (@verdicts, @failures, @gaps);
my $grew = 0;
for my $round (1 .. $rounds)
{
	my $kind = $kinds[ $round % @kinds ];
	my $db = "restored_$round";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my $err = restore($kind, $db);
	push @failures, "$kind: $err" if $err;

	# in one session: read, then verify at once
	push @verdicts, "$kind/same session: " . $node->safe_psql($db, q{
SET privacy.purpose = 'billing';
SELECT count(*) FROM customers JOIN orders ON orders.customer_id = customers.id WHERE customers.id = 7;
SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()}) =~ s/^.*\n//sr;
	# a reader, then verify from another connection at once
	$node->safe_psql($db, q{SET privacy.purpose = 'billing'; SELECT email FROM customers WHERE id = 8},
		extra_params => ['-U', 'app']);
	push @verdicts, "$kind/other connection: " . $node->safe_psql($db,
		q{SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()});
	# verify again and again while a reader keeps the writer committing
	my $reader = $node->background_psql($db, on_error_stop => 0, extra_params => ['-U', 'app']);
	$reader->query_until(qr/reading/, q{\echo reading
SET privacy.purpose = 'billing';
DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM email::text FROM customers WHERE id = 1 + i % 50; PERFORM pg_sleep(0.002); END LOOP; END $$;
\echo done
});
	for my $i (1 .. 5)
	{
		push @verdicts, "$kind/reads in flight: " . $node->safe_psql($db,
			q{SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()});
	}
	$reader->query_until(qr/done/, '');
	$reader->quit;
	$node->safe_psql($db, 'SELECT privacy.flush_access_log()');
	push @verdicts, "$kind/flushed: " . $node->safe_psql($db,
		q{SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()});
	$grew++ if $node->safe_psql($db, 'SELECT last_seq FROM privacy.access_log_head') > $source_entries;
	push @gaps, grep { $_ ne '' } split /\n/, $node->safe_psql($db,
		q{SELECT gap || ': ' || detail FROM privacy.compliance_gaps() WHERE gap LIKE 'access log broken'});
	$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)") unless $round == $rounds;
}
is_deeply(\@failures, [], "$rounds restores (custom, plain, parallel in sections) succeed");
is_deeply([ grep { !/: ok$/ } @verdicts ], [],
	'read and verified at once after each restore, the log verifies every time (' . scalar(@verdicts) . ' verifications)');
is($grew, $rounds, 'and each restored log went on after the restored head');
is_deeply(\@gaps, [], 'compliance_gaps() reports no broken log in any of them');

# ---------------------------------------------------------------------------
# (3) a real cut is still found in a restored database
# ---------------------------------------------------------------------------
my $db = "restored_$rounds";
sub verdict
{
	my ($d) = @_;
	return $node->safe_psql($d, q{SELECT status || coalesce(' ' || seq, '') FROM privacy.verify_access_log()});
}
my $middle = $node->safe_psql($db, q{SELECT first_seq FROM privacy.access_log_batches ORDER BY first_seq OFFSET 1 LIMIT 1});
$node->safe_psql($db, qq{CREATE TABLE cut AS SELECT * FROM privacy.access_log_batches WHERE first_seq = $middle;
DELETE FROM privacy.access_log_batches WHERE first_seq = $middle});
is(verdict($db), "missing $middle", 'restored: a batch row deleted from the middle is reported, at its first entry');
$node->safe_psql($db, 'INSERT INTO privacy.access_log_batches SELECT * FROM cut; DROP TABLE cut');
is(verdict($db), 'ok', 'put back, the log verifies');
my $tail = $node->safe_psql($db, 'SELECT max(first_seq) FROM privacy.access_log_batches');
$node->safe_psql($db, qq{CREATE TABLE cut AS SELECT * FROM privacy.access_log_batches WHERE first_seq = $tail;
DELETE FROM privacy.access_log_batches WHERE first_seq = $tail});
is(verdict($db), "missing $tail", 'restored: the last batch row deleted is reported, at its first entry');
$node->safe_psql($db, 'INSERT INTO privacy.access_log_batches SELECT * FROM cut; DROP TABLE cut');
is(verdict($db), 'ok', 'put back, the log verifies');

# ---------------------------------------------------------------------------
# (2) restarts: read, shut down (immediate, fast), start, read and verify at once
# ---------------------------------------------------------------------------
my @after;
for my $mode (qw(immediate fast immediate fast immediate fast))
{
	# the last of these reads may still be queued when the server stops
	$node->safe_psql('shop', q{SET privacy.purpose = 'billing';
SELECT email FROM customers WHERE id = 3; SELECT count(*) FROM orders; SELECT email FROM customers WHERE id = 4},
		extra_params => ['-U', 'app']);
	$node->stop($mode);
	$node->start;
	push @after, "$mode: " . $node->safe_psql('shop', q{
SET privacy.purpose = 'billing';
SELECT count(*) FROM customers WHERE id = 5;
SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()}) =~ s/^.*\n//sr;
	$node->safe_psql('shop', 'SELECT privacy.flush_access_log()');
	push @after, "$mode, flushed: " . $node->safe_psql('shop',
		q{SELECT status || coalesce(' ' || seq || ': ' || detail, '') FROM privacy.verify_access_log()});
}
is_deeply([ grep { !/: ok$/ } @after ], [],
	'after immediate and fast shutdowns, read and verified at once, the log verifies every time');
is($node->safe_psql('shop', q{SELECT count(*) FROM privacy.compliance_gaps() WHERE gap = 'access log broken'}), '0',
	'and compliance_gaps() reports no broken log');

# a cut after a restart is still found
$tail = $node->safe_psql('shop', 'SELECT max(first_seq) FROM privacy.access_log_batches');
$node->stop('immediate');
$node->start;
$node->safe_psql('shop', "DELETE FROM privacy.access_log_batches WHERE first_seq = $tail");
is(verdict('shop'), "missing $tail", 'after a restart, the last batch row deleted is reported, at its first entry');
is($node->safe_psql('shop', q{SELECT count(*) FROM privacy.compliance_gaps() WHERE gap = 'access log broken'}), '1',
	'and compliance_gaps() reports the broken log');

$node->stop;
done_testing();
