# Key rotation.
#
# Category keys: privacy.rotate_key() starts sealing new values with a new
# key while old values stay readable, and CALL privacy.reencrypt() moves a
# column's old values to it in batches, once.
#
# The master key: with the new key in privacy.master_key_command and the old
# one in privacy.previous_master_key_command, everything stays readable;
# privacy.rotate_master_key() rewraps every data key without rewriting any
# value; afterwards the new key alone suffices and the old key alone fails
# with a clear message.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

$ENV{PGCLIENTENCODING} = 'UTF8';
my ($node, $k1, $k1file) = PrivacyNode::new_node('rotation',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->start;

my $db = 'postgres';
$node->safe_psql($db, q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact', 'financial']);
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text,
                        photo privacy.encrypted_bytea, iban privacy.encrypted_text);
SELECT privacy.classify('customers', 'email', 'contact', searchable => true);
SELECT privacy.classify('customers', 'photo', 'contact');
SELECT privacy.classify('customers', 'iban', 'financial');
-- enough rows for several pages, so that reencrypt works in several batches
INSERT INTO customers
SELECT g, 'user' || g || '@example.org', ('\x' || md5(g::text))::bytea, 'DE' || lpad(g::text, 20, '0')
  FROM generate_series(1, 400) g;
INSERT INTO customers VALUES (401, '', '\x', ''), (402, NULL, NULL, NULL),
                             (403, 'Zoë Ünïcødé ☃', '\x00ff', 'IBAN ☃');
});

# What every read must give back: checksums of the plaintext, per column.
my $plain_sql = q{
SET privacy.purpose = 'support';
SELECT md5(string_agg(coalesce(email::text, '<NULL>'), '|' ORDER BY id)),
       md5(string_agg(coalesce(encode(photo::bytea, 'hex'), '<NULL>'), '|' ORDER BY id)),
       md5(string_agg(coalesce(iban::text, '<NULL>'), '|' ORDER BY id))
  FROM customers;
};
my $expected_plain = $node->safe_psql($db, q{
SELECT md5(string_agg(coalesce(e, '<NULL>'), '|' ORDER BY id)),
       md5(string_agg(coalesce(encode(p, 'hex'), '<NULL>'), '|' ORDER BY id)),
       md5(string_agg(coalesce(i, '<NULL>'), '|' ORDER BY id))
  FROM (SELECT g AS id, 'user' || g || '@example.org' AS e, ('\x' || md5(g::text))::bytea AS p,
               'DE' || lpad(g::text, 20, '0') AS i FROM generate_series(1, 400) g
        UNION ALL VALUES (401, '', '\x'::bytea, ''), (402, NULL, NULL, NULL),
                         (403, 'Zoë Ünïcødé ☃', '\x00ff'::bytea, 'IBAN ☃')) AS t(id, e, p, i);
});
my ($expected_email, $expected_photo, $expected_iban) = split /\|/, $expected_plain;

# Read the three columns; returns (email, photo, iban) checksums or the error.
sub read_columns
{
	my ($label) = @_;
	my @result;
	for my $col (qw(email photo iban))
	{
		my $expr = $col eq 'photo' ? "encode(photo::bytea, 'hex')" : "$col\::text";
		my ($ret, $out, $err) = PrivacyNode::psql_verbose($node, $db,
			"SET privacy.purpose = 'support';\n"
			  . "SELECT md5(string_agg(coalesce($expr, '<NULL>'), '|' ORDER BY id)) FROM customers;");
		push @result, $ret == 0 ? $out : "failed: $err";
	}
	return @result;
}

sub check_readable
{
	my ($label) = @_;
	my ($email, $photo, $iban) = read_columns();
	is($photo, $expected_photo, "$label: photo (bytea) reads back");
	is($iban,  $expected_iban,  "$label: iban (another category) reads back");
	is($email, $expected_email, "$label: email (searchable) reads back");
	is($node->safe_psql($db, q{SET privacy.purpose = 'support';
		SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM customers WHERE email = 'user77@example.org';
		SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM customers WHERE email = 'Zoë Ünïcødé ☃';}),
		"77\n403", "$label: equality search finds the rows");
}

my $stored_sql = 'SELECT md5(string_agg(concat_ws(\'|\', id, email, photo, iban), E\'\n\' ORDER BY id)) FROM customers';
my $key_of = sub {
	my ($col, $where) = @_;
	return $node->safe_psql($db,
		"SELECT string_agg(DISTINCT (privacy.envelope_info($col)).key_id::text, ',') FROM customers WHERE $col IS NOT NULL"
		  . ($where ? " AND $where" : ''));
};

is($node->safe_psql($db, $plain_sql), $expected_plain, 'K1: every value reads back');

# ---------------------------------------------------------------------------
# Category key rotation (under K1).
# ---------------------------------------------------------------------------
my $old_contact = $key_of->('email');
like($old_contact, qr/^\d+$/, 'before rotation every email is sealed under one key');
is($key_of->('photo'), $old_contact, 'photo, same category, uses the same key');
my $financial = $key_of->('iban');
isnt($financial, $old_contact, 'another category has its own key');

my $new_contact = $node->safe_psql($db, "SELECT privacy.rotate_key('contact')");
like($new_contact, qr/^\d+$/, 'rotate_key returns a key id');
ok($new_contact > $old_contact && $new_contact != $financial, 'rotate_key made a new key');
is($node->safe_psql($db, "SELECT id || ':' || state FROM privacy.keys WHERE category = 'contact' ORDER BY id"),
	"$old_contact:retired\n$new_contact:active", 'privacy.keys: the old key is retired, the new one active');

$node->safe_psql($db, q{INSERT INTO customers VALUES (404, 'new@example.org', '\x0102', 'DE99')});
is($key_of->('email', 'id = 404'), $new_contact, 'a new email is sealed under the new key');
is($key_of->('photo', 'id = 404'), $new_contact, 'a new photo is sealed under the new key');
is($key_of->('iban', 'id = 404'), $financial, 'the financial key did not change');
is($key_of->('email', 'id <> 404'), $old_contact, 'old emails are still under the old key');
$node->safe_psql($db, 'DELETE FROM customers WHERE id = 404');
is($node->safe_psql($db, $plain_sql), $expected_plain, 'old values are readable under the retired key');

my $old_rows = $node->safe_psql($db, 'SELECT count(email) FROM customers');
ok($node->safe_psql($db, "SELECT pg_relation_size('customers') / current_setting('block_size')::int") > 3,
	'the table spans several pages');
my $photos_before = $node->safe_psql($db, 'SELECT md5(string_agg(photo::text, \'|\' ORDER BY id)) FROM customers');

# reencrypt commits per batch, so it runs outside a transaction block (psql -c).
my ($ret, $out, $err) = $node->psql($db, "CALL privacy.reencrypt('customers', 'email', 7)");
is($ret, 0, 'reencrypt runs') or diag($err);
like($err, qr/reencrypt customers: (\d+) of \1 rows covered, $old_rows resealed\n[^\n]*NOTICE:  reencrypt customers: done/,
	"reencrypt reports the $old_rows values it resealed");
is($key_of->('email'), $new_contact, 'after reencrypt every email is under the new key');
is($node->safe_psql($db, 'SELECT count(*) FROM customers WHERE privacy_internal.needs_reseal(email)'), '0',
	'nothing is left to reseal');
is($node->safe_psql($db, 'SELECT md5(string_agg(photo::text, \'|\' ORDER BY id)) FROM customers'), $photos_before,
	'reencrypt of email leaves the photo column alone');
is($node->safe_psql($db, $plain_sql), $expected_plain, 'after reencrypt every value reads back');
is($node->safe_psql($db, q{SELECT coalesce(string_agg(id::text, ','), '') FROM customers WHERE email = 'user77@example.org'}),
	'77', 'equality search still works after reencrypt');

my $stored_before_second = $node->safe_psql($db, $stored_sql);
($ret, $out, $err) = $node->psql($db, "CALL privacy.reencrypt('customers', 'email', 7)");
is($ret, 0, 'a second reencrypt runs') or diag($err);
like($err, qr/rows covered, 0 resealed\n[^\n]*NOTICE:  reencrypt customers: done/, 'a second reencrypt reseals nothing');
unlike($err, qr/rows covered, [1-9]/, 'a second reencrypt reseals nothing in any batch');
is($node->safe_psql($db, $stored_sql), $stored_before_second, 'a second reencrypt changes no stored byte');

# ---------------------------------------------------------------------------
# A subject key (and a destroyed one): master rotation must cover every scope.
# ---------------------------------------------------------------------------
$node->safe_psql($db, q{
UPDATE customers SET email = privacy.seal_for_subject(email, 'alice') WHERE id = 1;
SELECT privacy_internal.subject_key('bob', true);
SELECT privacy.destroy_subject_key('bob');
});
my $alice = $key_of->('email', 'id = 1');
is($node->safe_psql($db, "SELECT scope FROM privacy.keys WHERE id = $alice"), 'subject', 'a value sealed under a subject key');
is($node->safe_psql($db, "SELECT count(*) FROM privacy.keys WHERE state = 'destroyed'"), '1', 'and a destroyed key');
is($node->safe_psql($db, $plain_sql), $expected_plain, 'the subject-sealed value reads back');

# ---------------------------------------------------------------------------
# Master key rotation: K1 -> K2.
# ---------------------------------------------------------------------------
my $f1 = $node->safe_psql($db, 'SELECT privacy.master_key_fingerprint()');
is($node->safe_psql($db, 'SELECT string_agg(DISTINCT master_key_fingerprint, \',\') FROM privacy.keys'), $f1,
	'K1: every data key is wrapped by K1');
my $with_material = $node->safe_psql($db, 'SELECT count(*) FROM privacy.data_keys WHERE wrapped_key IS NOT NULL');
is($node->safe_psql($db, q{SELECT count(*) FILTER (WHERE scope = 'category') || '|' ||
                                  count(*) FILTER (WHERE scope = 'subject' AND state <> 'destroyed')
                             FROM privacy.keys}),
	'3|1', 'live keys include contact (retired and active), financial and alice');
my $stored_before = $node->safe_psql($db, $stored_sql);
my $wrapped_before = $node->safe_psql($db,
	"SELECT string_agg(id || ':' || md5(wrapped_key), ',' ORDER BY id) FROM privacy.data_keys WHERE wrapped_key IS NOT NULL");

my $k2 = PrivacyNode::new_key_hex();
my $k2file = PrivacyNode::write_key($node, $k2, $node->basedir . '/master2.key');
PrivacyNode::set_key_commands($node, current => "cat $k2file", previous => "cat $k1file");
like(slurp_file($node->logfile), qr/privacy previous master key loaded \(fingerprint $f1\)/,
	'the previous key is loaded at start, by fingerprint');
is($node->safe_psql($db, 'SELECT privacy.previous_master_key_fingerprint()'), $f1,
	'previous_master_key_fingerprint() is K1');
my $f2 = $node->safe_psql($db, 'SELECT privacy.master_key_fingerprint()');
like($f2, qr/^[0-9a-f]{16}$/, 'K2 is loaded');
isnt($f2, $f1, 'K2 has another fingerprint');
check_readable('during the rotation window (data keys still wrapped by K1)');

is($node->safe_psql($db, 'SELECT privacy.rotate_master_key()'), $with_material,
	'rotate_master_key() rewraps every data key that has material');
is($node->safe_psql($db, "SELECT count(*) FROM privacy.keys WHERE state <> 'destroyed' AND master_key_fingerprint <> '$f2'"),
	'0', 'privacy.keys: every live key is now wrapped by K2');
is($node->safe_psql($db,
		"SELECT count(*) FROM privacy.data_keys WHERE wrapped_key IS NOT NULL AND '$wrapped_before' LIKE '%' || id || ':' || md5(wrapped_key) || '%'"),
	'0', 'every wrapped key changed');
is($node->safe_psql($db, "SELECT count(*) FROM privacy.keys WHERE state = 'destroyed'"), '1',
	'the destroyed key stays destroyed');
is($node->safe_psql($db, $stored_sql), $stored_before, 'no stored value was rewritten');
is($node->safe_psql($db, 'SELECT privacy.rotate_master_key()'), '0', 'a second rotate_master_key() has nothing to do');
check_readable('after rotate_master_key()');

# K2 alone.
PrivacyNode::set_key_commands($node, previous => '');
is($node->safe_psql($db, 'SELECT privacy.previous_master_key_fingerprint() IS NULL'), 't', 'K2 alone: no previous key');
is($node->safe_psql($db, 'SELECT privacy.master_key_fingerprint()'), $f2, 'K2 alone: K2 is loaded');
check_readable('K2 alone');
is($node->safe_psql($db, $stored_sql), $stored_before, 'K2 alone: the stored values are still the same bytes');

# K1 alone: the data keys are wrapped by K2 now.
PrivacyNode::set_key_commands($node, current => "cat $k1file");
is($node->safe_psql($db, 'SELECT privacy.master_key_fingerprint()'), $f1, 'K1 alone: K1 is loaded');
for my $col (qw(photo iban email))
{
	($ret, $out, $err) = PrivacyNode::psql_verbose($node, $db,
		"SET privacy.purpose = 'support'; SELECT $col FROM customers WHERE id = 2;");
	isnt($ret, 0, "K1 alone: reading $col fails");
	like($err, qr/ERROR:  55000: data key \d+ was wrapped by master key $f2, but this server runs master key $f1\n/,
		"K1 alone: reading $col says which master key is needed (SQLSTATE 55000)");
	is($out, '', "K1 alone: reading $col returns nothing");
}
like($err, qr/HINT:  .*privacy\.previous_master_key_command/, 'K1 alone: the hint says how to load the right key');
($ret, $out, $err) = PrivacyNode::psql_verbose($node, $db, 'SELECT privacy.rotate_master_key();');
isnt($ret, 0, 'K1 alone: rotate_master_key() cannot rewrap keys it cannot unwrap');
like($err, qr/ERROR:  55000: data key \d+ was wrapped by master key $f2, which is not loaded/,
	'K1 alone: and says which key is missing');
is($node->safe_psql($db, "SELECT count(*) FROM privacy.keys WHERE state <> 'destroyed' AND master_key_fingerprint <> '$f2'"),
	'0', 'K1 alone: the failed rotation changed no key');

# Back to K2: everything is there.
PrivacyNode::set_key_commands($node, current => "cat $k2file");
check_readable('K2 again');

my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$k1\E/i, 'K1 hex is not in the log');
unlike($log, qr/\Q$k2\E/i, 'K2 hex is not in the log');

$node->stop;
done_testing();
