# Dumps carry ciphertext: no plaintext on disk (data directory, WAL), in the
# server log or in a dump; a restore into a fresh cluster with the same
# master key reads back identical plaintext, keeps every stored envelope
# byte for byte (nothing is re-encrypted, pgsodium #109) and keeps equality
# search and its index working; a restore into a cluster with another master
# key succeeds but refuses to read, with a clear message and no garbage.
use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

# Strings in this file are UTF-8 bytes (no "use utf8"): they go to psql and
# come back as bytes, and are searched for as bytes in files.
$ENV{PGCLIENTENCODING} = 'UTF8';
my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });

# ---------------------------------------------------------------------------
# The values.  Each secret carries a needle that must never be found on disk,
# in the log or in a dump.
# ---------------------------------------------------------------------------
my $utf8_email = 'Zoë Ünïcødé ☃ needle-utf8-4R';
my $utf8_copy  = 'Ωmega needle-copy-utf8-9 ✓';
my $large_unit = 'Lorem ipsum 3MB ';
my $large_email = ($large_unit x 187500) . 'needle-large-3M9';    # 3,000,016 bytes
sub photo { return "\x89PNG\r\n\x1a\n" . "photo-needle-$_[0]" . "\x00\xff\xfe"; }

# id => [ email, photo ] as the application put them in (undef = NULL)
my %expected = (
	1  => [ 'needle-alpha-7Q2@example.org',      photo('P1') ],
	2  => [ $utf8_email,                         undef ],
	3  => [ '',                                  '' ],
	4  => [ undef,                               undef ],
	5  => [ $large_email,                        undef ],
	6  => [ 'needle-prep-untyped-6@example.org', photo('P6') ],
	7  => [ 'needle-prep-typed-7@example.org',   photo('P7') ],
	8  => [ 'needle-copy-8@example.org',         photo('P8') ],
	9  => [ $utf8_copy,                          undef ],
	10 => [ '',                                  undef ],
);
my @needles = (
	'needle-alpha-7Q2', 'Zoë Ünïcødé', 'needle-utf8-4R', 'needle-large-3M9',
	"$large_unit$large_unit", 'needle-prep-untyped-6', 'needle-prep-typed-7',
	'needle-copy-8', 'Ωmega', 'needle-copy-utf8-9',
	(map { ("photo-needle-$_", unpack('H*', "photo-needle-$_")) } qw(P1 P6 P7 P8)),
);
# A plain (unencrypted) column holds this marker: finding it proves that the
# searches below would find plaintext if any were there.
my $marker = 'plain-marker-K4';

sub hex_of { return '\\x' . unpack('H*', $_[0]); }

# What a session with a purpose must read back, as psql -At prints it.
my $expected_rows = join("\n",
	map {
		my ($e, $p) = @{ $expected{$_} };
		join('|', $_, $e // '<NULL>', defined $p ? hex_of($p) : '<NULL>', $_ == 1 ? $marker : '<NULL>')
	} grep { $_ != 5 } sort { $a <=> $b } keys %expected);
my $expected_large = join('|', 5, length($large_email), md5_hex($large_email), 'needle-large-3M9');

my $read_plain = q{
\pset null '<NULL>'
SET privacy.purpose = 'support';
SELECT id, email, photo, note FROM customers WHERE id <> 5 ORDER BY id;
};
my $read_large = q{
SET privacy.purpose = 'support';
SELECT id, octet_length(email::text), md5(email::text), right(email::text, 16) FROM customers WHERE id = 5;
};
# The stored form, as a superuser with no purpose (pg_dump) sees it.
my $read_stored = q{
\pset null '<NULL>'
SELECT id, CASE WHEN id = 5 THEN 'md5:' || md5(email::text) ELSE email::text END, photo
  FROM customers ORDER BY id;
};
my $read_info = q{
SELECT id, privacy.envelope_info(email), privacy.envelope_info(photo) FROM customers ORDER BY id;
};
my $read_keys = q{
SELECT id, scope, category, state, wrapped_by, md5(wrapped_key) FROM privacy.data_keys ORDER BY id;
};

# ---------------------------------------------------------------------------
# Node A: the source.
# ---------------------------------------------------------------------------
my ($node_a, $key) = PrivacyNode::new_node('source', %init);
$node_a->start;
$node_a->safe_psql('postgres', 'CREATE DATABASE app');
$node_a->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'support');
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text,
                        photo privacy.encrypted_bytea, note text);
SELECT privacy.classify('customers', 'email', 'contact', searchable => true);
SELECT privacy.classify('customers', 'photo', 'contact');
-- a hash index: a btree entry holds the whole envelope and cannot take 3 MB
CREATE INDEX customers_email_idx ON customers USING hash (email);
GRANT SELECT, INSERT ON customers TO app;
});
my $fp_a = $node_a->safe_psql('app', 'SELECT privacy.master_key_fingerprint()');

# Plaintext goes in as ordinary SQL: literals and an expression as the
# superuser with no purpose, a prepared statement (untyped and typed
# parameters) and COPY FROM STDIN as an application role with a purpose.
# log_statement is switched off for this session: statements with literals
# in the log are the business of the log-hygiene test, not this one.
my $insert = q{
SET log_statement = 'none';
INSERT INTO customers (id, email, photo, note) VALUES
  (1, 'needle-alpha-7Q2@example.org', '@PHOTO_P1@', '@MARKER@'),
  (2, '@UTF8_EMAIL@', NULL, NULL),
  (3, '', '\x', NULL),
  (4, NULL, NULL, NULL);
INSERT INTO customers (id, email) VALUES (5, repeat('@LARGE_UNIT@', 187500) || 'needle-large-3M9');
SET ROLE app;
SET privacy.purpose = 'support';
PREPARE ins_untyped AS INSERT INTO customers (id, email, photo) VALUES ($1, $2, $3);
EXECUTE ins_untyped(6, 'needle-prep-untyped-6@example.org', '@PHOTO_P6@');
PREPARE ins_typed(bigint, text, bytea) AS INSERT INTO customers (id, email, photo) VALUES ($1, $2, $3);
EXECUTE ins_typed(7, 'needle-prep-typed-7@example.org', '@PHOTO_P7@');
COPY customers (id, email, photo) FROM STDIN;
8	needle-copy-8@example.org	\@PHOTO_P8@
9	@UTF8_COPY@	\N
10		\N
\.
RESET privacy.purpose;
RESET ROLE;
};
my %subst = (
	PHOTO_P1 => hex_of(photo('P1')), PHOTO_P6 => hex_of(photo('P6')),
	PHOTO_P7 => hex_of(photo('P7')), PHOTO_P8 => hex_of(photo('P8')),
	MARKER => $marker, UTF8_EMAIL => $utf8_email, UTF8_COPY => $utf8_copy,
	LARGE_UNIT => $large_unit);
$insert =~ s/@([A-Z0-9_]+)@/$subst{$1}/g;
$node_a->safe_psql('app', $insert);

is($node_a->safe_psql('app', 'SELECT count(*) FROM customers'), '10', 'source: ten rows inserted');
is($node_a->safe_psql('app', $read_plain), $expected_rows,
	'source: with a purpose every value reads back as it went in (empty, NULL, UTF-8, bytea)');
is($node_a->safe_psql('app', $read_large), $expected_large, 'source: the 3 MB value reads back whole');

# a protected table, written and read under a purpose: its access log
# travels with the dump
$node_a->safe_psql('app', q{
CREATE TABLE accounts (id bigint PRIMARY KEY, owner privacy.encrypted_text(contact));
SELECT privacy.protect_table('accounts', 'id');
SET privacy.purpose = 'support';
INSERT INTO accounts VALUES (1, 'owner-one@example.org'), (2, 'owner-two@example.org');
SELECT owner FROM accounts WHERE id = 1;
SELECT count(*) FROM accounts;
});
$node_a->safe_psql('app', 'SELECT privacy.flush_access_log()');
my $events_a = $node_a->safe_psql('app', 'SELECT count(*) FROM privacy.access_log');
cmp_ok($events_a, '>', 0, "source: the reads are in the access log ($events_a entries)");
is($node_a->safe_psql('app', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'source: the access log verifies');

my $stored_a = $node_a->safe_psql('app', $read_stored);
my $info_a   = $node_a->safe_psql('app', $read_info);
my $keys_a   = $node_a->safe_psql('app', $read_keys);
my @stored_lines = split /\n/, $stored_a;
is(scalar(grep { /^\d+\|pv1:[A-Za-z0-9+\/=]+;s=[A-Za-z0-9+\/=]+\|(pv1:[A-Za-z0-9+\/=]+|<NULL>)$/ } @stored_lines), 8,
	'source: with no purpose a superuser sees envelopes (searchable email with its tag)');
like($stored_a, qr/^4\|<NULL>\|<NULL>$/m, 'source: NULL stays NULL in the stored form');
my ($contact_key) = $info_a =~ /^1\|\(1,(\d+),contact,t,\d+,28\)\|\(1,\1,contact,f,\d+,\d+\)$/m;
ok(defined $contact_key, 'source: envelope_info names the contact key, category and sizes');
is($node_a->safe_psql('app',
		"SELECT count(*) FROM customers WHERE (privacy.envelope_info(email)).key_id IS DISTINCT FROM $contact_key AND email IS NOT NULL"),
	'0', 'source: every value (literal, expression, parameter, COPY) is sealed under the column key');

# (a) Nothing on disk and nothing in the log.
$node_a->safe_psql('app', 'CHECKPOINT');
my $tree = PrivacyNode::slurp_tree($node_a->data_dir);
ok(index($tree, $marker) >= 0, 'source data directory: the plain-column marker is found (the search works)');
is_deeply(PrivacyNode::needles_in($tree, @needles), [],
	'source data directory (tables, TOAST, WAL): no plaintext');
undef $tree;
my $log_a = slurp_file($node_a->logfile);
like($log_a, qr/statement: SET log_statement = 'none'/, 'source log: statements before the switch are logged');
is_deeply(PrivacyNode::needles_in($log_a, @needles, $marker), [], 'source log: no plaintext');

# (b) A custom-format dump (uncompressed, so that plaintext would show).
my $dump_custom = $node_a->basedir . '/app.dump';
my $dump_plain  = $node_a->basedir . '/app.sql';
$node_a->command_ok([ 'pg_dump', '-Fc', '-Z0', '-d', 'app', '-f', $dump_custom ],
	'pg_dump -Fc as a superuser with no purpose');
# (its read is logged by the writer in the background: flushed, so that the
# plain dump taken next holds it, whatever the machine's load)
$node_a->safe_psql('app', 'SELECT privacy.flush_access_log()');
$node_a->command_ok([ 'pg_dump', '-Fp', '-d', 'app', '-f', $dump_plain ], 'pg_dump -Fp as well');
my $dump_dir = $node_a->basedir . '/app.dir';
$node_a->command_ok([ 'pg_dump', '-Fd', '-j', '2', '-Z0', '-d', 'app', '-f', $dump_dir ],
	'pg_dump -Fd -j 2 as well (for a parallel restore)');
for my $dump ([ custom => $dump_custom ], [ plain => $dump_plain ])
{
	my ($kind, $file) = @$dump;
	my $bytes = slurp_file($file);
	ok(index($bytes, $marker) >= 0 && index($bytes, 'pv1:') >= 0,
		"$kind dump: holds the plain column and envelopes");
	is_deeply(PrivacyNode::needles_in($bytes, @needles), [], "$kind dump: no plaintext");
}
like(slurp_file($dump_plain), qr/email privacy\.encrypted_text\(contact,searchable\),\n\s*photo privacy\.encrypted_bytea\(contact\)/,
	'plain dump: the columns keep their encrypted types and categories');
is_deeply(PrivacyNode::needles_in(PrivacyNode::slurp_tree($dump_dir), @needles), [], 'directory dump: no plaintext');

# The dedicated backup role of the DBA guide (not a superuser): privacy_admin
# for the extension's tables, pg_read_all_data for the application's,
# BYPASSRLS for the protected ones; its purpose forced empty.
$node_a->safe_psql('app', q{
CREATE ROLE backup_role LOGIN IN ROLE privacy_admin;
GRANT pg_read_all_data TO backup_role;
CREATE ROLE backup_no_bypass LOGIN IN ROLE privacy_admin;
GRANT pg_read_all_data TO backup_no_bypass;
});
my $dump_backup = $node_a->basedir . '/app-backup-role.dump';
{
	local $ENV{PGOPTIONS} = '-c privacy.purpose=';
	$node_a->command_fails_like([ 'pg_dump', '-U', 'backup_no_bypass', '-Fc', '-d', 'app', '-f', "$dump_backup.no" ],
		qr/query would be affected by row-level security policy for table "accounts"/,
		'backup role without BYPASSRLS: pg_dump stops at the protected table, as the guide says');
	$node_a->safe_psql('app', 'ALTER ROLE backup_role BYPASSRLS');
	$node_a->command_ok([ 'pg_dump', '-U', 'backup_role', '-Fc', '-Z0', '-d', 'app', '-f', $dump_backup ],
		'pg_dump -Fc as the backup role of the DBA guide (no superuser, no purpose)');
}
{
	my $bytes = slurp_file($dump_backup);
	ok(index($bytes, $marker) >= 0 && index($bytes, 'pv1:') >= 0, 'backup role dump: holds the plain column and envelopes');
	is_deeply(PrivacyNode::needles_in($bytes, @needles), [], 'backup role dump: no plaintext');
}
$node_a->safe_psql('app', 'SELECT privacy.flush_access_log()');
is($node_a->safe_psql('app', q{SELECT command || '/' || coalesce(purpose, '-') || '/' || rows
  FROM privacy.access_log WHERE acting_role = 'backup_role' AND relation = 'public.accounts'}),
	'COPY/-/2', "source: the backup role's read of the protected table is logged, with no purpose and every row");
is_deeply(PrivacyNode::needles_in(slurp_file($node_a->logfile), @needles), [], 'source log after the dumps: no plaintext');

# ---------------------------------------------------------------------------
# (c, d, f) Node B: a fresh cluster with the same master key.
# ---------------------------------------------------------------------------
my ($node_b) = PrivacyNode::new_node('same_key', key => $key, %init);
$node_b->start;
is($node_b->safe_psql('postgres', 'CREATE EXTENSION privacy; SELECT privacy.master_key_fingerprint()'), $fp_a,
	'same key: the fingerprint matches the source');
$node_b->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE DATABASE from_custom; CREATE DATABASE from_plain; CREATE DATABASE from_parallel; CREATE DATABASE from_backup_role');
$node_b->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'from_custom', $dump_custom ],
	'same key: pg_restore of the custom dump');
$node_b->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'from_plain', '-f', $dump_plain ],
	'same key: psql restores the plain dump');
# The backup role's dump, restored by a superuser (CREATE EXTENSION needs one)
$node_b->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'from_backup_role', $dump_backup ],
	"same key: pg_restore of the backup role's dump");
# A parallel restore, as the DBA guide gives it: the extension's own tables
# reference each other, so their data goes in one job, before the rest.
for my $step ([ '--section=pre-data' ], [ '--section=data', '-n', 'privacy' ],
	[ '--section=data', '-N', 'privacy', '-j', '4' ], [ '--section=post-data', '-j', '4' ])
{
	$node_b->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'from_parallel', @$step, $dump_dir ],
		"same key: parallel restore, pg_restore @$step");
}

# The custom dump was taken first; its read of the protected table is
# logged in the source, and so is in the plain dump taken after it.
is($node_b->safe_psql('from_custom', 'SELECT count(*) FROM privacy.access_log'), $events_a,
	"same key, from_custom: the access log is restored, and the restore's own writes are not logged");
is($node_b->safe_psql('from_plain', q{SELECT count(*) || ' ' || string_agg(command || '/' || coalesce(purpose, '-'), ',' ORDER BY seq)
  FROM privacy.access_log WHERE seq > (SELECT max(seq) FROM privacy.access_log) - 1}),
	'1 COPY/-', "same key, from_plain: the plain dump's log ends with pg_dump -Fc's read (COPY, no purpose)");
is($node_b->safe_psql('from_plain', 'SELECT count(*) FROM privacy.access_log'), $events_a + 1,
	"same key, from_plain: nothing else was added by the restore");
for my $db (qw(from_custom from_plain from_parallel from_backup_role))
{
	is($node_b->safe_psql($db, 'SELECT status FROM privacy.verify_access_log()'), 'ok',
		"same key, $db: the restored access log verifies");
}
# The head of the log travels with it: the restored log still knows where
# it ends (a restore without its last batch row is found).
my $last_batch = $node_b->safe_psql('from_custom', 'SELECT max(first_seq) FROM privacy.access_log_batches');
is($node_b->safe_psql('from_custom', 'SELECT last_seq FROM privacy.access_log_head'),
	$node_b->safe_psql('from_custom', 'SELECT max(last_seq) FROM privacy.access_log_batches'),
	'same key, from_custom: the head of the access log is restored with it');
$node_b->safe_psql('from_custom', "CREATE TABLE saved_batch AS SELECT * FROM privacy.access_log_batches WHERE first_seq = $last_batch;
DELETE FROM privacy.access_log_batches WHERE first_seq = $last_batch");
is($node_b->safe_psql('from_custom', 'SELECT status || seq FROM privacy.verify_access_log()'), "missing$last_batch",
	'same key, from_custom: its last batch row deleted, the restored log says so');
$node_b->safe_psql('from_custom', 'INSERT INTO privacy.access_log_batches SELECT * FROM saved_batch; DROP TABLE saved_batch');

my %searches = (
	q{'needle-alpha-7Q2@example.org'}                     => '1',
	qq{'$utf8_email'}                                     => '2',
	q{''}                                                 => '3,10',
	qq{(repeat('$large_unit', 187500) || 'needle-large-3M9')::privacy.encrypted_text} => '5',
	q{'needle-prep-typed-7@example.org'}                  => '7',
	q{'needle-copy-8@example.org'}                        => '8',
	qq{'$utf8_copy'}                                      => '9',
	q{'nobody@example.org'}                               => '',
);

for my $db (qw(from_custom from_plain from_parallel from_backup_role))
{
	is($node_b->safe_psql($db, $read_plain), $expected_rows,
		"$db: with a purpose every value reads back identical (empty, NULL, UTF-8, bytea)");
	is($node_b->safe_psql($db, $read_large), $expected_large, "$db: the 3 MB value reads back identical");
	is($node_b->safe_psql($db, $read_plain, extra_params => [ '-U', 'app' ]), $expected_rows,
		"$db: the application role reads it too (purpose grants were restored)");
	is($node_b->safe_psql($db, $read_stored), $stored_a,
		"$db: every stored envelope is byte-identical to the source (nothing re-encrypted)");
	is($node_b->safe_psql($db, $read_info), $info_a, "$db: envelope_info (key ids, categories, sizes) identical");
	is($node_b->safe_psql($db, $read_keys), $keys_a, "$db: data keys restored as they were, none added");
	is($node_b->safe_psql($db,
			"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname IN ('email', 'photo') ORDER BY attnum"),
		"privacy.encrypted_text(contact,searchable)\nprivacy.encrypted_bytea(contact)",
		"$db: the columns are still encrypted, with their categories");

	# Equality search: through the restored index, and by a sequential scan.
	like($node_b->safe_psql($db,
			"SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE email = 'needle-copy-8\@example.org'"),
		qr/(Index Scan|Index Only Scan|Bitmap Index Scan) (using|on) customers_email_idx/,
		"$db: equality search plans an index scan on the restored index");
	for my $plan ([ index => 'SET enable_seqscan = off' ],
		[ seqscan => 'SET enable_indexscan = off; SET enable_bitmapscan = off' ])
	{
		my ($label, $settings) = @$plan;
		my $sql = "$settings; SET privacy.purpose = 'support';\n"
		  . join("\n", map { "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM customers WHERE email = $_;" }
			  sort keys %searches);
		is($node_b->safe_psql($db, $sql), join("\n", map { $searches{$_} } sort keys %searches),
			"$db: WHERE email = ... finds exactly the matching rows ($label)");
	}
}

$node_b->safe_psql('from_custom', 'CHECKPOINT');
$tree = PrivacyNode::slurp_tree($node_b->data_dir);
ok(index($tree, $marker) >= 0, 'same key: the plain-column marker is in the restored data directory');
is_deeply(PrivacyNode::needles_in($tree, @needles), [], 'same key: the restores wrote no plaintext to disk');
undef $tree;
$node_b->stop;

# ---------------------------------------------------------------------------
# (e) Node C: another master key.  The restore moves ciphertext only, so it
# succeeds; reading says which key is missing, and shows nothing.
# ---------------------------------------------------------------------------
my ($node_c) = PrivacyNode::new_node('other_key', %init);
$node_c->start;
my $fp_c = $node_c->safe_psql('postgres', 'CREATE EXTENSION privacy; SELECT privacy.master_key_fingerprint()');
isnt($fp_c, $fp_a, 'other key: a different fingerprint');
$node_c->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE DATABASE from_custom');
$node_c->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'from_custom', $dump_custom ],
	'other key: pg_restore succeeds');
is($node_c->safe_psql('from_custom', $read_stored), $stored_a, 'other key: the envelopes are restored byte for byte');
is($node_c->safe_psql('from_custom', $read_info), $info_a, 'other key: envelope_info works without opening anything');
is($node_c->safe_psql('from_custom', 'SELECT DISTINCT master_key_fingerprint FROM privacy.keys'), $fp_a,
	'other key: privacy.keys says which master key wraps the data keys');

my $wrapped_by = qr/ERROR:  55000: data key $contact_key was wrapped by master key $fp_a, but this server runs master key $fp_c\n/;
for my $read (
	[ 'the whole table',           q{SELECT id, email, photo FROM customers ORDER BY id}, 'postgres' ],
	[ 'a text value',              q{SELECT email FROM customers WHERE id = 1},          'postgres' ],
	[ 'the empty string',          q{SELECT email FROM customers WHERE id = 3},          'postgres' ],
	[ 'a bytea value',             q{SELECT photo FROM customers WHERE id = 1},          'postgres' ],
	[ 'an explicit cast',          q{SELECT email::text FROM customers WHERE id = 9},    'postgres' ],
	[ 'the application role',      q{SELECT email FROM customers WHERE id = 8},          'app' ])
{
	my ($label, $sql, $user) = @$read;
	my ($ret, $out, $err) = PrivacyNode::psql_verbose($node_c, 'from_custom',
		"SET privacy.purpose = 'support';\n$sql;", extra_params => [ '-U', $user ]);
	isnt($ret, 0, "other key, $label: reading fails");
	like($err, $wrapped_by, "other key, $label: the error names both master keys, SQLSTATE 55000");
	is($out, '', "other key, $label: nothing is returned");
}
my ($ret, $out, $err) = PrivacyNode::psql_verbose($node_c, 'from_custom',
	"SET privacy.purpose = 'support'; SELECT email FROM customers WHERE id = 1;");
like($err, qr/HINT:  .*privacy\.master_key_command.*privacy\.previous_master_key_command/,
	'other key: the hint names the settings that load a master key');
($ret, $out, $err) = PrivacyNode::psql_verbose($node_c, 'from_custom',
	"SELECT id FROM customers WHERE email = 'needle-copy-8\@example.org';");
isnt($ret, 0, 'other key: equality search fails rather than silently finding nothing');
like($err, qr/ERROR:  55000: data key \d+ was wrapped by master key $fp_a, but this server runs master key $fp_c\n/,
	'other key: equality search says which master key is missing');
is($out, '', 'other key: equality search returns nothing');
is($node_c->safe_psql('from_custom', $read_keys), $keys_a, 'other key: failed reads created or changed no key');
$node_c->stop;
$node_a->stop;

done_testing();
