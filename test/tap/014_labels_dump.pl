# Security labels survive dump and restore.  pg_dump writes SECURITY LABEL
# FOR privacy right after each CREATE TABLE, before the extension's registers
# (categories, column_categories, protected_tables, data keys) and the
# table's rows are loaded and before its policies and seal trigger are
# created.  The restore must not apply the labels a second time: no error,
# nothing re-encrypted (pgsodium #109), no key created, the registers exactly
# as dumped; and afterwards the labels are there, the columns classified and
# encrypted, the table protected, and the values read back identical with a
# purpose declared.  Setting the same labels again in the restored database
# changes nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });

# ---------------------------------------------------------------------------
# The source: classification and protection declared with labels only.
# ---------------------------------------------------------------------------
my ($node_a, $key) = PrivacyNode::new_node('labels_source', %init);
$node_a->start;
$node_a->safe_psql('postgres', 'CREATE DATABASE app');
$node_a->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact', 'financial']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'support');

CREATE TABLE customers (customer_id bigint PRIMARY KEY, email text, name text, iban text, note text);
INSERT INTO customers VALUES
  (1, 'ada@example.org', 'Ada', 'DE89370400440532013000', 'plain-1'),
  (2, 'bob@example.org', 'Bob', NULL, NULL),
  (3, '', 'Eve', '', NULL);
SECURITY LABEL FOR privacy ON COLUMN customers.email IS 'category=contact, searchable, encrypt';
SECURITY LABEL FOR privacy ON COLUMN customers.name IS 'category=contact';
SECURITY LABEL FOR privacy ON COLUMN customers.iban IS 'category=financial, encrypt';
SECURITY LABEL FOR privacy ON TABLE customers IS 'subject=customer_id';
CREATE INDEX customers_email_idx ON customers USING hash (email);

-- a table whose identifiers need quoting, encrypted by its declared type
CREATE TABLE "Order Lines" ("Customer Ref" text, "line, note" privacy.encrypted_text(contact));
SECURITY LABEL FOR privacy ON COLUMN "Order Lines"."line, note" IS 'category=contact';
SECURITY LABEL FOR privacy ON TABLE "Order Lines" IS 'subject="Customer Ref"';

GRANT SELECT, INSERT ON customers, "Order Lines" TO app;
});
# rows written by the application after protection, under subject keys
$node_a->safe_psql('app', q{
SET ROLE app;
SET privacy.purpose = 'support';
INSERT INTO customers VALUES (4, 'dan@example.org', 'Dan', 'FR7630006000011234567890189', NULL);
INSERT INTO "Order Lines" VALUES ('1', 'two apples'), ('4', 'a pear');
});

my $read_plain = q{
\pset null '<NULL>'
SET privacy.purpose = 'support';
SELECT customer_id, email, name, iban, note FROM customers ORDER BY customer_id;
SELECT "Customer Ref", "line, note" FROM "Order Lines" ORDER BY 1;
SELECT customer_id FROM customers WHERE email = 'dan@example.org';
};
my $read_stored = q{
\pset null '<NULL>'
SELECT customer_id, email, name, iban FROM customers ORDER BY customer_id;
SELECT "Customer Ref", "line, note" FROM "Order Lines" ORDER BY 1;
};
my $read_labels = q{
SELECT objtype, objname, label FROM pg_seclabels WHERE provider = 'privacy' ORDER BY objname;
};
my $read_registers = q{
SELECT table_name, column_name, category, searchable, encrypted, column_type, classified_at
  FROM privacy.classified_columns ORDER BY table_name::text, column_name;
SELECT table_name, subject_column, parent, protected_at FROM privacy.protected ORDER BY table_name::text;
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy WHERE polrelid = c.oid),
       (SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal)
  FROM pg_class c WHERE c.relname IN ('customers', 'Order Lines') ORDER BY 1;
};
my $read_keys = q{
SELECT id, scope, category, state, wrapped_by, md5(wrapped_key) FROM privacy.data_keys ORDER BY id;
};

my $plain_a     = $node_a->safe_psql('app', $read_plain);
my $stored_a    = $node_a->safe_psql('app', $read_stored);
my $labels_a    = $node_a->safe_psql('app', $read_labels);
my $registers_a = $node_a->safe_psql('app', $read_registers);
my $keys_a      = $node_a->safe_psql('app', $read_keys);

is($plain_a, join("\n",
		'1|ada@example.org|Ada|DE89370400440532013000|plain-1',
		'2|bob@example.org|Bob|<NULL>|<NULL>',
		'3||Eve||<NULL>',
		'4|dan@example.org|Dan|FR7630006000011234567890189|<NULL>',
		'1|two apples',
		'4|a pear',
		'4'),
	'source: the labelled columns read back with a purpose (empty strings included)');
is(scalar(() = $stored_a =~ /pv1:/g), 9, 'source: with no purpose, the encrypted values are envelopes');
like($stored_a, qr/^1\|pv1:\S+;s=\S+\|Ada\|pv1:\S+$/m, 'source: email searchable and encrypted, name plain, iban encrypted');
is($labels_a, join("\n",
		'table|"Order Lines"|subject="Customer Ref"',
		'column|"Order Lines".line, note|category=contact',
		'table|customers|subject=customer_id',
		'column|customers.email|category=contact, searchable, encrypt',
		'column|customers.iban|category=financial, encrypt',
		'column|customers.name|category=contact'),
	'source: pg_seclabels shows the labels');
like($registers_a, qr/^customers\|email\|contact\|t\|t\|privacy\.encrypted_text\(contact,searchable\)\|/m,
	'source: email classified, searchable and encrypted by its label');
like($registers_a, qr/^customers\|name\|contact\|f\|f\|text\|/m, 'source: name classified, plain');
like($registers_a, qr/^customers\|customer_id\|\|/m, 'source: customers protected by its label');
like($registers_a, qr/^"Order Lines"\|Customer Ref\|\|/m, 'source: "Order Lines" protected by its label');
like($registers_a, qr/^customers\|t\|t\|privacy_delete,privacy_insert,privacy_select,privacy_update\|privacy_seal_row$/m,
	'source: policies and seal trigger in place');

# ---------------------------------------------------------------------------
# Dumps: custom and plain.
# ---------------------------------------------------------------------------
my $dump_custom = $node_a->basedir . '/labels.dump';
my $dump_plain  = $node_a->basedir . '/labels.sql';
$node_a->command_ok([ 'pg_dump', '-Fc', '-d', 'app', '-f', $dump_custom ], 'pg_dump -Fc');
$node_a->command_ok([ 'pg_dump', '-Fp', '-d', 'app', '-f', $dump_plain ], 'pg_dump -Fp');
my $plain_text = slurp_file($dump_plain);
like($plain_text, qr/^SECURITY LABEL FOR privacy ON COLUMN public\.customers\.email IS 'category=contact, searchable, encrypt';$/m,
	'plain dump: the column label is there');
like($plain_text, qr/^SECURITY LABEL FOR privacy ON TABLE public\.customers IS 'subject=customer_id';$/m,
	'plain dump: the table label is there');
ok(index($plain_text, 'SECURITY LABEL FOR privacy ON TABLE public.customers') < index($plain_text, 'COPY privacy.protected_tables'),
	'plain dump: labels come before the registers are loaded (the order the restore must cope with)');
for my $needle ('ada@example.org', 'DE89370400440532013000', 'two apples')
{
	ok(index($plain_text, $needle) < 0, "plain dump: no plaintext ($needle)");
}

# ---------------------------------------------------------------------------
# Restores into a fresh cluster with the same master key.
# ---------------------------------------------------------------------------
my ($node_b) = PrivacyNode::new_node('labels_restore', key => $key, %init);
$node_b->start;
$node_b->safe_psql('postgres', 'CREATE EXTENSION privacy');
$node_b->safe_psql('postgres',
	'CREATE ROLE app LOGIN; CREATE DATABASE from_custom; CREATE DATABASE from_single; CREATE DATABASE from_plain');
$node_b->command_checks_all([ 'pg_restore', '--exit-on-error', '-d', 'from_custom', $dump_custom ],
	0, [qr/^$/], [qr/^$/], 'pg_restore: succeeds with nothing on stderr');
$node_b->command_checks_all([ 'pg_restore', '--exit-on-error', '--single-transaction', '-d', 'from_single', $dump_custom ],
	0, [qr/^$/], [qr/^$/], 'pg_restore --single-transaction: succeeds with nothing on stderr');
$node_b->command_checks_all([ 'psql', '-X', '-q', '-o', '/dev/null', '-v', 'ON_ERROR_STOP=1', '-d', 'from_plain', '-f', $dump_plain ],
	0, [qr/^$/], [qr/^$/], 'psql -f plain dump: succeeds with nothing on stderr');
unlike(slurp_file($node_b->logfile), qr/ERROR/, 'restore: no ERROR in the server log');

for my $db (qw(from_custom from_single from_plain))
{
	is($node_b->safe_psql($db, $read_labels), $labels_a, "$db: the labels are there");
	is($node_b->safe_psql($db, $read_registers), $registers_a,
		"$db: classified columns, protected tables, policies and triggers exactly as dumped");
	is($node_b->safe_psql($db, $read_stored), $stored_a,
		"$db: every stored envelope identical (nothing re-encrypted)");
	is($node_b->safe_psql($db, $read_keys), $keys_a, "$db: data keys as dumped, none created");
	is($node_b->safe_psql($db, $read_plain), $plain_a, "$db: values read back identical with a purpose");
	is($node_b->safe_psql($db, $read_plain, extra_params => [ '-U', 'app' ]), $plain_a,
		"$db: the application role reads them too");

	# the table is still protected: no purpose, no rows
	my ($ret, $out, $err) = $node_b->psql($db, 'SELECT count(*) FROM customers', extra_params => [ '-U', 'app' ]);
	like($err, qr/ERROR:  .*purpose/, "$db: the protected table refuses a reader without a purpose");

	# setting the same labels again in an ordinary session changes nothing
	my $filenode = $node_b->safe_psql($db, "SELECT pg_relation_filenode('customers')");
	$node_b->safe_psql($db, q{
SECURITY LABEL FOR privacy ON COLUMN customers.email IS 'category=contact, searchable, encrypt';
SECURITY LABEL FOR privacy ON COLUMN customers.name IS 'category=contact';
SECURITY LABEL FOR privacy ON COLUMN customers.iban IS 'category=financial, encrypt';
SECURITY LABEL FOR privacy ON TABLE customers IS 'subject=customer_id';
SECURITY LABEL FOR privacy ON COLUMN "Order Lines"."line, note" IS 'category=contact';
SECURITY LABEL FOR privacy ON TABLE "Order Lines" IS 'subject="Customer Ref"';
});
	is($node_b->safe_psql($db, "SELECT pg_relation_filenode('customers')"), $filenode,
		"$db: labelling again does not rewrite the table");
	is(join("\n", map { $node_b->safe_psql($db, $_) } $read_registers, $read_stored, $read_keys),
		join("\n", $registers_a, $stored_a, $keys_a),
		"$db: labelling again changes no register, envelope or key");

	# new rows still go under subject keys
	$node_b->safe_psql($db, q{
SET privacy.purpose = 'support';
INSERT INTO customers VALUES (5, 'fay@example.org', 'Fay', NULL, NULL);
}, extra_params => [ '-U', 'app' ]);
	is($node_b->safe_psql($db, q{
SELECT (privacy.envelope_info(email)).key_id IN (SELECT id FROM privacy.data_keys WHERE scope = 'subject')
  FROM customers WHERE customer_id = 5}), 't', "$db: a new row is sealed under its subject's key");
}

$node_b->stop;
$node_a->stop;

done_testing();
