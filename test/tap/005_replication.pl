# Replication carries ciphertext.
#
# (1) Physical streaming: a hot standby with the same master key (read from
# its own key file) reads plaintext with a purpose, finds rows by equality
# search, holds the primary's envelopes byte for byte, and reads '[erased]'
# once a subject's key is destroyed on the primary, in new sessions and in
# a session that had the key cached before.  Nothing on the standby's disk
# (data directory, WAL) holds plaintext.
#
# (2) Logical replication, text and binary mode: a subscriber created from
# a dump of the publisher (vocabulary, categories, data keys), subscribed to
# the user tables and to privacy.data_keys with a superuser connection,
# reads identical plaintext, stores byte-identical envelopes, and follows a
# key destruction on the publisher.  Nothing on the publisher's or the
# subscriber's disk holds plaintext.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

$ENV{PGCLIENTENCODING} = 'UTF8';
my @initdb = ('--encoding=UTF8', '--locale=C');

sub hex_of { return '\\x' . unpack('H*', $_[0]); }
sub photo  { return "\x89PNG\r\n\x1a\n" . "photo-needle-$_[0]" . "\x00\xff\xfe"; }

# A plain column holds this marker: finding it on disk proves that the
# searches for plaintext would find it if it were there.
my $marker = 'plain-marker-Z8';

my $vocabulary = q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
};
sub table_ddl
{
	my ($t) = @_;
	return qq{
CREATE TABLE $t (id bigint PRIMARY KEY,
                 email privacy.encrypted_text(contact, searchable),
                 photo privacy.encrypted_bytea(contact),
                 note text);
CREATE INDEX ${t}_email_idx ON $t USING hash (email);
};
}

# Rows of one table: id => [ email, photo tag ]; prefix makes every table's
# plaintext distinct (and its own needles).
sub rows_of
{
	my ($prefix, @ids) = @_;
	return map { ($_ => [ "needle-$prefix-$_\@example.org", "$prefix$_" ]) } @ids;
}
sub insert_sql
{
	my ($t, $rows, @ids) = @_;
	return "INSERT INTO $t (id, email, photo, note) VALUES "
	  . join(', ',
		map { "($_, '$rows->{$_}[0]', '" . hex_of(photo($rows->{$_}[1])) . "', " . ($_ == 1 ? "'$marker'" : 'NULL') . ')' }
		  @ids)
	  . ";\n";
}
# Values of subjects 42 and 43 move under their subjects' keys.
sub subject_seal_sql
{
	my ($t) = @_;
	return "UPDATE $t SET email = privacy.seal_for_subject(email, id::text), "
	  . "photo = privacy.seal_for_subject(photo, id::text) WHERE id IN (42, 43);\n";
}
sub needles_of
{
	my ($rows) = @_;
	return map {
		my ($e, $p) = @{ $rows->{$_} };
		($e =~ s/\@.*//r, "photo-needle-$p", unpack('H*', "photo-needle-$p"))
	} keys %$rows;
}

# With a purpose: id|email|is_erased(email)|photo|is_erased(photo)|note.
sub read_plain_sql
{
	my ($t) = @_;
	return qq{
\\pset null '<NULL>'
SET privacy.purpose = 'support';
SELECT id, email, privacy.is_erased(email), photo, privacy.is_erased(photo), note FROM $t ORDER BY id;
};
}
sub expected_plain
{
	my ($rows, %erased) = @_;
	return join("\n",
		map {
			$erased{$_}
			  ? "$_|[erased]|t|\\x|t|<NULL>"
			  : join('|', $_, $rows->{$_}[0], 'f', hex_of(photo($rows->{$_}[1])), 'f', $_ == 1 ? $marker : '<NULL>')
		} sort { $a <=> $b } keys %$rows);
}
# The stored form: a superuser with no purpose reads envelopes.
sub read_stored_sql
{
	my ($t) = @_;
	return "SELECT id, email, photo, (privacy.envelope_info(email)).key_id FROM $t ORDER BY id";
}
my $read_keys = 'SELECT id, scope, coalesce(category, name), state, wrapped_by, md5(wrapped_key) FROM privacy.data_keys ORDER BY id';
# Equality search: the ids found for each value, one line per value.
sub search_sql
{
	my ($t, @values) = @_;
	return "SET privacy.purpose = 'support';\n"
	  . join("\n", map { "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM $t WHERE email = '$_';" } @values);
}
# Long-lived sessions: PrivacyNode::open_session and session_query.
sub session_query { return PrivacyNode::session_query(@_); }
sub open_session { return PrivacyNode::open_session(@_); }
my $envelope_line = qr/^\d+\|pv1:[A-Za-z0-9+\/=]+;s=[A-Za-z0-9+\/=]+\|pv1:[A-Za-z0-9+\/=]+\|\d+$/;

# ===========================================================================
# (1) Physical streaming replication.
# ===========================================================================
my %phys = rows_of('phys', 1, 2, 42, 43);
my @phys_needles = needles_of(\%phys);

my ($primary, $pkey) = PrivacyNode::new_node('primary', init => { allows_streaming => 1, extra => [@initdb] });
$primary->start;
$primary->safe_psql('postgres', 'CREATE DATABASE app');
$primary->safe_psql('app', $vocabulary . table_ddl('customers') . insert_sql('customers', \%phys, 1));
my $fp = $primary->safe_psql('app', 'SELECT privacy.master_key_fingerprint()');

# The standby's configuration comes with the backup and names the primary's
# key file: point it at its own copy of the key.
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
my $standby_keyfile = PrivacyNode::write_key($standby, $pkey);
$standby->append_conf('postgresql.conf', "privacy.master_key_command = 'cat $standby_keyfile'\n");
$standby->start;

# Rows and subject keys created after the backup reach the standby by
# streaming only.
$primary->safe_psql('app', insert_sql('customers', \%phys, 2, 42, 43) . subject_seal_sql('customers'));
is($primary->safe_psql('app',
		q{SELECT count(DISTINCT (privacy.envelope_info(email)).key_id) FROM customers WHERE id IN (1, 42, 43);} . "\n"
		  . q{SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject' AND state = 'active'}),
	"3\n2", 'primary: subjects 42 and 43 have their own keys, apart from the category key');
$primary->wait_for_catchup($standby);

is($standby->safe_psql('app', 'SELECT pg_is_in_recovery()'), 't', 'standby: in recovery (hot standby)');
like($standby->safe_psql('app', 'SHOW privacy.master_key_command'), qr/^cat \Q$standby_keyfile\E$/,
	'standby: reads the master key from its own key file');
is($standby->safe_psql('app', 'SELECT privacy.master_key_fingerprint()'), $fp,
	'standby: the same master key as the primary');
my ($ret, $out, $err) = $standby->psql('app', "INSERT INTO customers (id, note) VALUES (99, 'x')");
like($err, qr/cannot execute INSERT in a read-only transaction/, 'standby: read-only');

is($standby->safe_psql('app', read_plain_sql('customers')), expected_plain(\%phys),
	'standby: with a purpose every value reads back as plaintext (category and subject keys)');
my $stored_primary = $primary->safe_psql('app', read_stored_sql('customers'));
is(scalar(grep { /$envelope_line/ } split /\n/, $stored_primary), 4, 'primary: with no purpose, envelopes');
is($standby->safe_psql('app', read_stored_sql('customers')), $stored_primary,
	'standby: the stored envelopes are byte-identical to the primary');
is($standby->safe_psql('app', $read_keys), $primary->safe_psql('app', $read_keys),
	'standby: the data keys are those of the primary');

my @search = ($phys{1}[0], $phys{42}[0], $phys{43}[0], 'nobody@example.org');
like($standby->safe_psql('app',
		"SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE email = '$phys{42}[0]'"),
	qr/Index Scan (using|on) customers_email_idx|Bitmap Index Scan on customers_email_idx/,
	'standby: equality search plans a scan of the hash index');
is($standby->safe_psql('app', "SET enable_seqscan = off;\n" . search_sql('customers', @search)), "1\n42\n43\n",
	'standby: equality search finds exactly the matching rows (index)');
is($standby->safe_psql('app', "SET enable_indexscan = off; SET enable_bitmapscan = off;\n" . search_sql('customers', @search)),
	"1\n42\n43\n", 'standby: equality search finds exactly the matching rows (sequential scan)');

# A session that has opened subject 42's values, so its key is cached.
my $session = open_session($standby, 'app');
session_query($session, q{\pset null '<NULL>'});
session_query($session, q{SET privacy.purpose = 'support'});
is(session_query($session, 'SELECT email, privacy.is_erased(email) FROM customers WHERE id = 42'),
	"$phys{42}[0]|f", 'standby, long-lived session: subject 42 reads as plaintext before the key is destroyed');

# (the primary signals key changes through the key table's TOAST table:
# VACUUM FULL rewrites both, and the standby's sessions still follow)
$primary->safe_psql('app', 'VACUUM FULL privacy.data_keys');
$primary->wait_for_catchup($standby);
is(session_query($session, 'SELECT email, privacy.is_erased(email) FROM customers WHERE id = 42'),
	"$phys{42}[0]|f", 'standby, long-lived session: subject 42 reads as plaintext after VACUUM FULL of the key table');
is($primary->safe_psql('app', q{SELECT privacy.destroy_subject_key('42')}), '1', 'primary: subject 42\'s key destroyed');
$primary->wait_for_catchup($standby);

is($primary->safe_psql('app', read_plain_sql('customers')), expected_plain(\%phys, 42 => 1),
	'primary: subject 42 reads [erased], the others as before');
is($standby->safe_psql('app', q{SELECT state, wrapped_key IS NULL FROM privacy.data_keys WHERE scope = 'subject' ORDER BY id}),
	"destroyed|t\nactive|f", 'standby: the destruction replicated (the key table row)');
is($standby->safe_psql('app', read_plain_sql('customers')), expected_plain(\%phys, 42 => 1),
	'standby, new session: subject 42 reads [erased] and is_erased, subject 43 and the category key unaffected');
is(session_query($session, q{SELECT id, email, privacy.is_erased(email), photo, privacy.is_erased(photo), note FROM customers ORDER BY id}),
	expected_plain(\%phys, 42 => 1),
	'standby, long-lived session: no stale cached key, subject 42 reads [erased]');
$session->quit;
is($standby->safe_psql('app', read_stored_sql('customers')), $primary->safe_psql('app', read_stored_sql('customers')),
	'standby: the envelopes are still those of the primary');

$primary->safe_psql('app', 'CHECKPOINT');
$primary->wait_for_catchup($standby);
$standby->safe_psql('app', 'CHECKPOINT');
my $tree = PrivacyNode::slurp_tree($standby->data_dir);
ok(index($tree, $marker) >= 0, 'standby data directory: the plain-column marker is found (the search works)');
is_deeply(PrivacyNode::needles_in($tree, @phys_needles), [], 'standby data directory (tables, WAL): no plaintext');
undef $tree;
$standby->stop;
$primary->stop;

# ===========================================================================
# (2) Logical replication, text and binary mode.
# ===========================================================================
my %lt = rows_of('ltext', 1, 2, 3, 42, 43);
my %lb = rows_of('lbin',  1, 2, 3, 42, 43);
my @logical_needles = (needles_of(\%lt), needles_of(\%lb));

my ($publisher, $lkey) = PrivacyNode::new_node('publisher',
	init => { allows_streaming => 'logical', extra => [@initdb] });
my ($subscriber) = PrivacyNode::new_node('subscriber', key => $lkey, init => { extra => [@initdb] });
$subscriber->append_conf('postgresql.conf', "max_logical_replication_workers = 8\nmax_worker_processes = 24\n");
$publisher->start;
$subscriber->start;

$publisher->safe_psql('postgres', 'CREATE DATABASE app');
$publisher->safe_psql('app', $vocabulary . table_ddl('customers_text') . table_ddl('customers_bin')
	  . insert_sql('customers_text', \%lt, 1, 2) . insert_sql('customers_bin', \%lb, 1, 2));

# The subscriber gets the schema, the vocabulary and the data keys from a
# dump; the rows come by replication (initial copy, then streaming).
my $dump = $publisher->basedir . '/app.sql';
$publisher->command_ok([ 'pg_dump', '-Fp', '-d', 'app', '--exclude-table-data=public.customers_*', '-f', $dump ],
	'publisher: pg_dump of the schema, vocabulary and data keys');
$subscriber->safe_psql('postgres', 'CREATE DATABASE app');
$subscriber->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'app', '-f', $dump ],
	'subscriber: restored from the dump');
is($subscriber->safe_psql('app', 'SELECT count(*) FROM customers_text UNION ALL SELECT count(*) FROM customers_bin'),
	"0\n0", 'subscriber: the tables start empty');

$publisher->safe_psql('app', q{
CREATE PUBLICATION pub_keys FOR TABLE privacy.data_keys;
CREATE PUBLICATION pub_text FOR TABLE customers_text;
CREATE PUBLICATION pub_bin FOR TABLE customers_bin;
});
# The default user of the test clusters is the bootstrap superuser.
my $pub_conn = $publisher->connstr . ' dbname=app';
$subscriber->safe_psql('app', qq{
CREATE SUBSCRIPTION sub_keys CONNECTION '$pub_conn' PUBLICATION pub_keys WITH (copy_data = false);
CREATE SUBSCRIPTION sub_text CONNECTION '$pub_conn' PUBLICATION pub_text WITH (binary = false);
CREATE SUBSCRIPTION sub_bin CONNECTION '$pub_conn' PUBLICATION pub_bin WITH (binary = true);
});
$subscriber->wait_for_subscription_sync($publisher, 'sub_text', 'app');
$subscriber->wait_for_subscription_sync($publisher, 'sub_bin', 'app');
is($subscriber->safe_psql('app', 'SELECT subname, subbinary, rolsuper FROM pg_subscription s JOIN pg_roles r ON r.oid = s.subowner ORDER BY subname'),
	"sub_bin|t|t\nsub_keys|f|t\nsub_text|f|t", 'subscriber: one binary and one text subscription, owned by a superuser');

# Streaming: new rows, then an UPDATE that moves subjects 42 and 43 under
# keys created now (which reach the subscriber through pub_keys).  The initial
# copy is in text form in both subscriptions (PostgreSQL 15); streamed
# changes are in binary form for sub_bin.
$publisher->safe_psql('app', insert_sql('customers_text', \%lt, 3, 42, 43) . insert_sql('customers_bin', \%lb, 3, 42, 43)
	  . subject_seal_sql('customers_text') . subject_seal_sql('customers_bin'));
$publisher->wait_for_catchup($_) for qw(sub_keys sub_text sub_bin);

is($subscriber->safe_psql('app', $read_keys), $publisher->safe_psql('app', $read_keys),
	'subscriber: the data keys are those of the publisher, subject keys included');

my $session_sub = open_session($subscriber, 'app');
session_query($session_sub, q{\pset null '<NULL>'});
session_query($session_sub, q{SET privacy.purpose = 'support'});

for my $case ([ text => 'customers_text', \%lt ], [ binary => 'customers_bin', \%lb ])
{
	my ($mode, $t, $rows) = @$case;
	is($publisher->safe_psql('app', read_plain_sql($t)), expected_plain($rows),
		"$mode mode: the publisher reads its rows");
	is($subscriber->safe_psql('app', read_plain_sql($t)), expected_plain($rows),
		"$mode mode: the subscriber reads identical plaintext with a purpose (initial copy and streaming)");
	my $stored = $publisher->safe_psql('app', read_stored_sql($t));
	is(scalar(grep { /$envelope_line/ } split /\n/, $stored), 5, "$mode mode: the publisher stores envelopes");
	is($subscriber->safe_psql('app', read_stored_sql($t)), $stored,
		"$mode mode: the subscriber's envelopes are byte-identical to the publisher's");
	is($subscriber->safe_psql('app', search_sql($t, $rows->{1}[0], $rows->{42}[0], 'nobody@example.org')), "1\n42\n",
		"$mode mode: equality search works on the subscriber");
	is(session_query($session_sub, "SELECT email FROM $t WHERE id = 42"), $rows->{42}[0],
		"$mode mode, long-lived subscriber session: subject 42 reads as plaintext before the key is destroyed");
}

# The apply worker writes privacy.data_keys on the subscriber; a session
# there that holds subject 42's key in its cache must drop it, as on a
# standby.  (The apply worker fires row triggers only, and only those
# enabled ALWAYS or REPLICA.)
is($publisher->safe_psql('app', q{SELECT privacy.destroy_subject_key('42')}), '1', 'publisher: subject 42\'s key destroyed');
$publisher->wait_for_catchup($_) for qw(sub_keys sub_text sub_bin);
is($subscriber->safe_psql('app', $read_keys), $publisher->safe_psql('app', $read_keys),
	'subscriber: the destruction replicated (the key table row)');
for my $case ([ text => 'customers_text', \%lt ], [ binary => 'customers_bin', \%lb ])
{
	my ($mode, $t, $rows) = @$case;
	is($subscriber->safe_psql('app', read_plain_sql($t)), expected_plain($rows, 42 => 1),
		"$mode mode, new subscriber session: subject 42 reads [erased] and is_erased, the others unaffected");
	is(session_query($session_sub, "SELECT id, email, privacy.is_erased(email), photo, privacy.is_erased(photo), note FROM $t ORDER BY id"),
		expected_plain($rows, 42 => 1),
		"$mode mode, long-lived subscriber session: no stale cached key, subject 42 reads [erased]");
}
$session_sub->quit;

$publisher->safe_psql('app', 'CHECKPOINT');
$subscriber->safe_psql('app', 'CHECKPOINT');
for my $node ($publisher, $subscriber)
{
	my $name = $node->name;
	my $all = PrivacyNode::slurp_tree($node->data_dir);
	ok(index($all, $marker) >= 0, "$name data directory: the plain-column marker is found (the search works)");
	is_deeply(PrivacyNode::needles_in($all, @logical_needles), [], "$name data directory (tables, WAL): no plaintext");
}
$subscriber->stop;
$publisher->stop;

done_testing();
