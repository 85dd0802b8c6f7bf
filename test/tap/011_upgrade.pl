# Upgrades: from every release whose install script ships in sql/, along the
# step scripts, to the version of privacy.control.
#
# For each such release: a database gets the release's install script, is
# filled with data of every capability (vocabulary, classification,
# protected tables with subject keys, consents and objections, retention
# and a hold, a purge, an erasure, reads under purposes that fill the access
# log, a request), then ALTER EXTENSION privacy UPDATE.  The upgraded
# database must then hold exactly the objects of a fresh install
# (extension_signature.sql, compared as text), and its data must still open,
# be found by equality search, verify, purge and report.  The library is the
# one built now: a release's script must keep working with it until the
# update has run (the order Debian's packages impose).
#
# Also: every object in schema privacy is documented in doc/reference.md
# (the API schema holds the documented API only), and nothing in
# privacy_internal is executable by PUBLIC beyond the list the reference
# gives.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my $src = $ENV{PRIVACY_SRC};
my ($current) = slurp_file("$src/privacy.control") =~ /^default_version\s*=\s*'([^']+)'/m;
ok($current, "privacy.control names the current version ($current)");

# The step scripts, and the released versions that reach the current one.
my %step;
for my $f (glob("$src/sql/privacy--*--*.sql"))
{
	my ($from, $to) = $f =~ m{privacy--([^-]+)--([^-]+)\.sql$} or next;
	$step{$from} = $to;
}
my @releases;
for my $f (glob("$src/sql/privacy--*.sql"))
{
	my ($v) = $f =~ m{/privacy--([^-]+)\.sql$} or next;
	next if $v eq $current;
	my ($at, %seen) = ($v);
	$at = $step{$at} while defined $step{$at} && !$seen{$at}++;
	push @releases, $v if $at eq $current;
}
ok(scalar(@releases) >= 1, 'at least one release upgrades to ' . $current . ': ' . join(', ', @releases));

my $signature_sql = slurp_file("$src/test/tap/extension_signature.sql");

my ($node) = PrivacyNode::new_node('upgrade', init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->start;

sub signature
{
	my ($db) = @_;
	return $node->safe_psql($db, $signature_sql);
}

# What a database of the release holds: one statement list per capability,
# run as the superuser unless SET ROLE says otherwise.
my $fill = q{
CREATE ROLE upg_app LOGIN;
CREATE ROLE upg_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.create_category('contact', 'e-mail');
SELECT privacy.create_category('financial', 'IBAN');
SELECT privacy.create_purpose('billing', 'contract', 'invoices', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletters', ARRAY['contact']);
SELECT privacy.grant_purpose('upg_app', 'billing');
SELECT privacy.grant_purpose('upg_app', 'marketing');
CREATE TABLE customers (id bigint PRIMARY KEY, name text,
                        email privacy.encrypted_text, iban privacy.encrypted_text);
SELECT privacy.classify('customers', 'email', 'contact', searchable => true);
SELECT privacy.classify('customers', 'iban', 'financial');
INSERT INTO customers SELECT g, 'name ' || g, 'user' || g || '@example.org', 'DE00 ' || g FROM generate_series(1, 20) g;
CREATE INDEX customers_email ON customers (email);
SELECT privacy.protect_table('customers', 'id');
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, placed_at timestamptz NOT NULL,
                     note privacy.encrypted_text(contact));
INSERT INTO orders SELECT g, 1 + g % 20, now() - (g || ' months')::interval, 'note ' || g FROM generate_series(1, 40) g;
SELECT privacy.protect_table('orders', 'customer_id');
GRANT SELECT, INSERT, UPDATE ON customers, orders TO upg_app;
SET ROLE upg_officer;
SELECT privacy.grant_consent('1', 'marketing', 'web-form', '{"form": "v1"}');
SELECT privacy.grant_consent('2', 'marketing', 'web-form', '{}');
SELECT privacy.withdraw_consent('2', 'marketing', 'unsubscribe-link');
SELECT privacy.object('3', 'billing', 'letter');
SELECT privacy.set_retention('orders', 'placed_at', interval '2 years', 'delete');
SELECT privacy.place_hold('4', 'litigation');
RESET ROLE;
CALL privacy.purge();
SET ROLE upg_officer;
SELECT privacy.erase_subject('5', 'request 1');
SELECT privacy.open_request('6', 'access');
RESET ROLE;
SET ROLE upg_app;
SET privacy.purpose = 'billing';
SELECT count(email), count(iban) FROM customers;
SELECT email FROM customers WHERE id IN (1, 7);
SELECT id FROM customers WHERE email = 'user7@example.org';
SET privacy.purpose = 'marketing';
SELECT count(*) FROM customers;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.flush_access_log();
};

# What must hold in a database after the update, with the rows above.
sub check_data
{
	my ($db, $what) = @_;
	my $as_app = sub {
		my ($purpose, $sql) = @_;
		return $node->safe_psql($db, "SET ROLE upg_app; SET privacy.purpose = '$purpose'; $sql");
	};
	is($as_app->('billing', q{SELECT email || ' ' || iban FROM customers WHERE id = 7}),
		'user7@example.org DE00 7', "$what: values written before the update open");
	is($as_app->('billing', q{SELECT id FROM customers WHERE email = 'user9@example.org'}),
		'9', "$what: equality search finds a value sealed before the update");
	is($as_app->('marketing', q{SELECT string_agg(id::text, ',' ORDER BY id) FROM customers}),
		'1', "$what: only the subject who consented is visible for marketing");
	is($as_app->('billing', q{SELECT count(*) FROM customers WHERE id = 3}),
		'0', "$what: the objection to billing still hides its subject");
	is($node->safe_psql($db, q{SET privacy.purpose = 'billing';
		SELECT count(*) FROM customers WHERE id = 5}),
		'0', "$what: the erased subject stays erased");
	is($node->safe_psql($db, q{SELECT status FROM privacy.verify_access_log()}),
		'ok', "$what: the access log verifies");
	# the update sealed a head where the log ended: cutting the end is found
	my $last = $node->safe_psql($db, q{SELECT max(first_seq) FROM privacy.access_log_batches});
	is($node->safe_psql($db, qq{BEGIN; DELETE FROM privacy.access_log_batches WHERE first_seq = $last;
		SELECT status || seq FROM privacy.verify_access_log(); ROLLBACK}),
		"missing$last", "$what: the log has a head: its last batch row deleted is found");
	$node->safe_psql($db, q{SET ROLE upg_app; SET privacy.purpose = 'billing';
		INSERT INTO customers VALUES (100, 'new', 'new@example.org', 'DE00 100')});
	is($as_app->('billing', q{SELECT email FROM customers WHERE id = 100}),
		'new@example.org', "$what: a value written after the update opens");
	is($node->safe_psql($db, q{SET ROLE upg_officer;
		SELECT format('data %s consents %s access %s', jsonb_array_length(r -> 'data'),
		              jsonb_array_length(r -> 'consents'), (jsonb_array_length(r -> 'access') > 0)::text)
		  FROM privacy.subject_report('1') r}),
		'data 2 consents 1 access true', "$what: the subject report shows data, consent and access");
	$node->safe_psql($db, q{CALL privacy.purge()});
	is($node->safe_psql($db, q{SELECT outcome FROM privacy.purge_runs ORDER BY id DESC LIMIT 1}),
		'completed', "$what: a purge completes");
}

my $n = 0;
for my $release (@releases)
{
	$n++;
	my ($old, $fresh) = ("upgrade_from_$n", "fresh_$n");
	$node->safe_psql('postgres', "CREATE DATABASE $old");
	$node->safe_psql('postgres', "CREATE DATABASE $fresh");
	$node->safe_psql($old, "CREATE EXTENSION privacy VERSION '$release'");
	is($node->safe_psql($old, q{SELECT extversion FROM pg_extension WHERE extname = 'privacy'}),
		$release, "release $release installs from its script with the library built now");
	$node->safe_psql($old, $fill);
	$node->safe_psql($old, q{ALTER EXTENSION privacy UPDATE});
	is($node->safe_psql($old, q{SELECT extversion FROM pg_extension WHERE extname = 'privacy'}),
		$current, "$release updates to $current");

	$node->safe_psql($fresh, q{CREATE EXTENSION privacy});
	my ($got, $want) = (signature($old), signature($fresh));
	ok($got eq $want, "$release updated to $current: the extension's objects equal a fresh install");
	if ($got ne $want)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir();
		PostgreSQL::Test::Utils::append_to_file("$dir/updated", "$got\n");
		PostgreSQL::Test::Utils::append_to_file("$dir/fresh", "$want\n");
		my ($out) = run_diff("$dir/fresh", "$dir/updated");
		diag("diff fresh updated:\n$out");
	}
	check_data($old, "$release updated to $current");
	# roles are cluster-wide: drop them before the next release's fill
	$node->safe_psql('postgres', qq{DROP DATABASE $old});
	$node->safe_psql('postgres', q{DROP ROLE upg_app, upg_officer});
}

sub run_diff
{
	my ($a, $b) = @_;
	my $out = `diff -u '$a' '$b' 2>&1`;
	return (length($out) > 20000 ? substr($out, 0, 20000) . "\n[...]" : $out);
}

# The API schema holds the documented API only.
$node->safe_psql('postgres', q{CREATE EXTENSION privacy});
my $reference = slurp_file("$src/doc/reference.md");
my @api = split /\n/, $node->safe_psql('postgres', q{
	SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'privacy'::regnamespace
	UNION SELECT c.relname FROM pg_class c
	 WHERE c.relnamespace = 'privacy'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'm')
	UNION SELECT t.typname FROM pg_type t
	 WHERE t.typnamespace = 'privacy'::regnamespace AND t.typtype IN ('b', 'c', 'd', 'e') AND t.typcategory <> 'A'
	   AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
	ORDER BY 1});
my @undocumented = grep { $reference !~ /privacy\.\Q$_\E\b/ } @api;
ok(@api > 40, 'schema privacy holds the API (' . scalar(@api) . ' functions, relations and types)');
is(join(', ', @undocumented), '', 'every object in schema privacy is documented in doc/reference.md');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'privacy'::regnamespace AND p.proname LIKE '\_%'}),
	'0', 'no helper named _... is left in schema privacy');

done_testing();
