# What is left of a destroyed key in the database's files (issue #12,
# class 6): destroying a subject's key sets its wrapped_key to NULL, an
# UPDATE, so the old row version with the wrapped bytes stays in the
# table's heap until VACUUM prunes it; anyone with page access and the
# master key could unwrap it and read the erased subject again.
# privacy.data_keys carries autovacuum thresholds of 0, so autovacuum
# prunes it at its next round after any key is destroyed: the wrapped bytes
# stay in the heap while a transaction older than the erasure runs, and are
# gone once autovacuum has been there after it.  WAL and older backups keep
# them (doc/dba.md, "Crypto-shredding and old backups").
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('remnants');
$node->append_conf('postgresql.conf', qq{
autovacuum_naptime = 1
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('customers', 'id');
SET privacy.purpose = 'service';
INSERT INTO customers SELECT g, 'c' || g || '@example.org' FROM generate_series(1, 200) g;
});

is($node->safe_psql('postgres', q{
SELECT reloptions::text FROM pg_class WHERE oid = 'privacy.data_keys'::regclass}),
	'{autovacuum_vacuum_threshold=0,autovacuum_vacuum_scale_factor=0}',
	'privacy.data_keys is vacuumed after any dead row');

# The heap file of privacy.data_keys, read after a checkpoint.
sub heap
{
	$node->safe_psql('postgres', 'CHECKPOINT');
	my $path = $node->safe_psql('postgres', q{SELECT pg_relation_filepath('privacy.data_keys')});
	return PostgreSQL::Test::Utils::slurp_file($node->data_dir . '/' . $path);
}

# The wrapped key of a subject, as bytes.
sub wrapped_key
{
	my ($subject) = @_;
	my $hex = $node->safe_psql('postgres', qq{
SELECT encode(k.wrapped_key, 'hex') FROM privacy.data_keys k
 WHERE k.id = (privacy.envelope_info((SELECT email FROM customers WHERE id = $subject))).key_id});
	return pack('H*', $hex);
}

# A transaction older than the erasure still running keeps the old row
# version alive (nothing may prune it while a snapshot can see it): the
# wrapped bytes stay in the heap file after the erasure has committed.
my $key17 = wrapped_key(17);
is(length($key17), 72, 'subject 17 has a wrapped key of 72 bytes');
ok(index(heap(), $key17) >= 0, 'the wrapped key is in the heap file before the erasure');
my $old = $node->background_psql('postgres', on_error_stop => 0);
$old->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM privacy.categories');
$node->safe_psql('postgres', q{SELECT privacy.erase_subject('17', 'request 1')});
is($node->safe_psql('postgres', q{
SELECT count(*) FROM privacy.data_keys WHERE state = 'destroyed' AND wrapped_key IS NULL}),
	'1', 'the erasure destroyed one key');
$node->safe_psql('postgres', q{VACUUM privacy.data_keys});
ok(index(heap(), $key17) >= 0,
	'while a transaction older than the erasure runs, even VACUUM leaves the wrapped key in the heap file');

# Once it ends, autovacuum prunes the old row version at its next round:
# the wrapped bytes are gone, those of other subjects are still there.
my $before = $node->safe_psql('postgres',
	q{SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = 'privacy.data_keys'::regclass});
$old->query_safe('COMMIT');
$old->quit;
my $key42 = wrapped_key(42);
$node->safe_psql('postgres', q{SELECT privacy.erase_subject('42', 'request 2')});
ok($node->poll_query_until('postgres', qq{
SELECT autovacuum_count > $before FROM pg_stat_user_tables WHERE relid = 'privacy.data_keys'::regclass}),
	'autovacuum visits privacy.data_keys after the erasures');
# Its first visit may come between the two erasures (17's old row version
# became dead when the older transaction ended): wait for the visit after
# the second, with nothing but autovacuum to prune (no VACUUM here).
my $after;
foreach my $try (1 .. 120)
{
	$after = heap();
	last if index($after, $key42) < 0 && index($after, $key17) < 0;
	sleep 1;
}
ok(index($after, $key42) < 0, 'the wrapped key of the subject erased since is no longer in the heap file');
ok(index($after, $key17) < 0, 'nor the one kept while the older transaction ran');
ok(index($after, wrapped_key(43)) >= 0, 'the wrapped keys of other subjects are (the search works)');

$node->stop;
done_testing();
