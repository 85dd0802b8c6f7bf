# The typed encrypted types (issue #13) survive what text and bytea survive:
# binary COPY out and in (an application with a purpose moves plaintext,
# the superuser with no purpose moves the stored bytes), pg_dump in custom
# and plain format restored into a fresh cluster with the same master key
# (the envelopes byte for byte, plaintext identical, equality search and
# its index working, erasure still shredding), and the 0.2 to 0.3 upgrade
# (a 0.2 database's date and jsonb columns are encrypted after the update).
# No plaintext of a jsonb document in a dump or in the server log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
my @needles = ('jsonb-needle-X7', 'needle-copy-J9');

my ($node_a, $key) = PrivacyNode::new_node('source', %init);
$node_a->start;
$node_a->safe_psql('postgres', 'CREATE DATABASE app');
$node_a->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('identity');
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['identity', 'contact']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'support');
CREATE TABLE customers (id bigint PRIMARY KEY, birth_date date, last_seen timestamptz,
                        balance numeric(12,2), points integer, msisdn bigint, profile jsonb);
SELECT privacy.classify('customers', 'birth_date', 'identity', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'last_seen', 'contact', encrypt => true);
SELECT privacy.classify('customers', 'balance', 'contact', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'points', 'contact', encrypt => true);
SELECT privacy.classify('customers', 'msisdn', 'contact', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'profile', 'contact', encrypt => true);
CREATE INDEX customers_birth ON customers (birth_date);
SELECT privacy.protect_table('customers', 'id');
CREATE TABLE copies (LIKE customers);
GRANT SELECT, INSERT ON customers, copies TO app;
});
is($node_a->safe_psql('app', q{SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = 'copies'::regclass AND attnum > 1}),
	'privacy.encrypted_date(identity,searchable), privacy.encrypted_timestamptz(contact), '
	  . 'privacy.encrypted_numeric(contact,searchable), privacy.encrypted_integer(contact), '
	  . 'privacy.encrypted_bigint(contact,searchable), privacy.encrypted_jsonb(contact)',
	'a table LIKE the encrypted one has the same encrypted columns');

$node_a->safe_psql('app', q{
SET log_statement = 'none';
SET ROLE app;
SET privacy.purpose = 'support';
INSERT INTO customers VALUES
  (1, '1990-05-01', '2024-01-02 03:04:05.25+00', 12.50, 7, 33612345678, '{"note": "jsonb-needle-X7", "n": [1, 2.50]}'),
  (2, '1985-12-31', NULL, 0.1, -2147483648, 9223372036854775807, '[]'),
  (3, '1990-05-01', 'infinity', 'NaN', 0, -1, 'null');
RESET ROLE;
COPY customers FROM STDIN;
4	2000-02-29	1999-12-31 23:59:59.999999+00	-99999.99	42	0	{"copied": "needle-copy-J9"}
\.
});

my $read = q{
\pset null '<NULL>'
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET privacy.purpose = 'support';
SELECT id, birth_date, last_seen, balance, points, msisdn, profile FROM customers ORDER BY id;
};
my $expected = join("\n",
	'1|1990-05-01|2024-01-02 03:04:05.25+00|12.50|7|33612345678|{"n": [1, 2.50], "note": "jsonb-needle-X7"}',
	'2|1985-12-31|<NULL>|0.1|-2147483648|9223372036854775807|[]',
	'3|1990-05-01|infinity|NaN|0|-1|null',
	'4|2000-02-29|1999-12-31 23:59:59.999999+00|-99999.99|42|0|{"copied": "needle-copy-J9"}');
is($node_a->safe_psql('app', $read, extra_params => [ '-U', 'app' ]), $expected,
	'source: every typed value reads back as written, whatever the DateStyle');

# ---------------------------------------------------------------------------
# Binary COPY.  The application, with a purpose, gets the base types' binary
# form and puts it back (sealed again); the superuser with no purpose moves
# the stored bytes, which then open unchanged.
# ---------------------------------------------------------------------------
my $bin = $node_a->basedir . '/customers.bin';
$node_a->safe_psql('app', qq{
SET privacy.purpose = 'support';
\\copy customers TO '$bin' WITH (FORMAT binary)
\\copy copies FROM '$bin' WITH (FORMAT binary)
}, extra_params => [ '-U', 'app' ]);
(my $read_copies = $read) =~ s/FROM customers/FROM copies/;
is($node_a->safe_psql('app', $read_copies, extra_params => [ '-U', 'app' ]), $expected,
	'binary COPY out and in by the application: the same plaintext');
is_deeply(PrivacyNode::needles_in(slurp_file($bin), 'jsonb-needle-X7'), [ 'jsonb-needle-X7' ],
	'the application\'s binary COPY holds plaintext (the check below can find it)');
$node_a->safe_psql('app', qq{
TRUNCATE copies;
\\copy customers TO '$bin' WITH (FORMAT binary)
\\copy copies FROM '$bin' WITH (FORMAT binary)
});
is_deeply(PrivacyNode::needles_in(slurp_file($bin), @needles), [], 'the superuser\'s binary COPY: no plaintext');
is($node_a->safe_psql('app', q{
SELECT count(*) FROM customers c JOIN copies k USING (id)
 WHERE c.birth_date::text = k.birth_date::text AND c.profile::text = k.profile::text
   AND c.msisdn::text = k.msisdn::text}), '4',
	'the superuser\'s binary COPY moves the stored envelopes byte for byte');
is($node_a->safe_psql('app', $read_copies, extra_params => [ '-U', 'app' ]), $expected,
	'... and they open');

# ---------------------------------------------------------------------------
# pg_dump and restore into a fresh cluster with the same master key.
# ---------------------------------------------------------------------------
my $stored = q{SELECT md5(string_agg(concat_ws('|', id, birth_date, last_seen, balance, points, msisdn, profile), E'\n' ORDER BY id)) FROM customers};
my $stored_a = $node_a->safe_psql('app', $stored);
my $dump_custom = $node_a->basedir . '/app.dump';
my $dump_plain = $node_a->basedir . '/app.sql';
$node_a->command_ok([ 'pg_dump', '-Fc', '-Z0', '-d', 'app', '-f', $dump_custom ], 'pg_dump -Fc');
$node_a->command_ok([ 'pg_dump', '-Fp', '-d', 'app', '-f', $dump_plain ], 'pg_dump -Fp');
for my $f ($dump_custom, $dump_plain)
{
	my $bytes = slurp_file($f);
	ok(index($bytes, 'pv1:') >= 0, "$f holds envelopes");
	is_deeply(PrivacyNode::needles_in($bytes, @needles), [], "$f: no plaintext");
}
like(slurp_file($dump_plain), qr/birth_date privacy\.encrypted_date\(identity,searchable\),\n\s*last_seen privacy\.encrypted_timestamptz\(contact\)/,
	'plain dump: the columns keep their encrypted types and categories');

my ($node_b) = PrivacyNode::new_node('same_key', key => $key, %init);
$node_b->start;
$node_b->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE DATABASE from_custom; CREATE DATABASE from_plain');
$node_b->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'from_custom', $dump_custom ], 'pg_restore of the custom dump');
$node_b->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'from_plain', '-f', $dump_plain ],
	'psql restores the plain dump');
for my $db ('from_custom', 'from_plain')
{
	is($node_b->safe_psql($db, $stored), $stored_a, "$db: every envelope byte for byte");
	is($node_b->safe_psql($db, $read, extra_params => [ '-U', 'app' ]), $expected, "$db: the same plaintext");
	is($node_b->safe_psql($db, q{
SET privacy.purpose = 'support';
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE birth_date = date '1990-05-01'}) =~ /Index Scan using customers_birth/ ? 1 : 0,
		1, "$db: equality search uses the restored index");
	is($node_b->safe_psql($db, q{
SET privacy.purpose = 'support';
SELECT string_agg(id::text, ',' ORDER BY id) FROM customers
 WHERE birth_date = date '1990-05-01' OR msisdn = 9223372036854775807 OR balance = 12.5}),
		'1,2,3', "$db: equality search finds dates, bigints and numerics");
}
# erasure in the restored database still shreds the subject's typed values
is($node_b->safe_psql('from_custom', q{
SELECT privacy.destroy_subject_key('1');
SET privacy.purpose = 'support';
SELECT concat_ws('|', birth_date, profile, birth_date::date IS NULL, msisdn::bigint IS NULL) FROM customers WHERE id = 1}),
	"1\n[erased]|[erased]|t|t", 'restored: destroying the subject key shreds the typed values');
is_deeply(PrivacyNode::needles_in(slurp_file($node_a->logfile) . slurp_file($node_b->logfile), @needles), [],
	'server logs: no plaintext');

# ---------------------------------------------------------------------------
# The 0.2 to 0.3 upgrade: a 0.2 database's date and jsonb columns, which 0.2
# could not encrypt, are encrypted after ALTER EXTENSION UPDATE.
# ---------------------------------------------------------------------------
$node_a->safe_psql('postgres', 'CREATE DATABASE upg');
$node_a->safe_psql('upg', q{
CREATE EXTENSION privacy VERSION '0.2';
SELECT privacy.create_category('identity');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['identity']);
CREATE TABLE people (id bigint PRIMARY KEY, born date, profile jsonb);
INSERT INTO people VALUES (1, '1971-07-04', '{"a": 1}'), (2, '1980-01-01', '{}');
});
my ($ret, $out, $err) = $node_a->psql('upg', q{SELECT privacy.classify('people', 'born', 'identity', encrypt => true)});
like($err, qr/cannot be encrypted/, '0.2: a date column cannot be encrypted');
$node_a->safe_psql('upg', 'ALTER EXTENSION privacy UPDATE');
$node_a->safe_psql('upg', q{
SELECT privacy.classify('people', 'born', 'identity', encrypt => true, searchable => true);
SELECT privacy.classify('people', 'profile', 'identity', encrypt => true);
});
is($node_a->safe_psql('upg', q{
SET privacy.purpose = 'support';
SET DateStyle = 'ISO';
SELECT string_agg(concat_ws('|', id, born, profile ->> 'a'), ',' ORDER BY id)
  FROM (SELECT id, born, profile::jsonb AS profile FROM people) p;
SELECT id FROM people WHERE born = '1980-01-01'}),
	"1|1971-07-04|1,2|1980-01-01\n2", 'upgraded: date and jsonb columns are encrypted and read back');

$node_b->stop;
$node_a->stop;
done_testing();
