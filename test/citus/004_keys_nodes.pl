# Scale-out (issue #16): the bulk path for new subjects' keys, and a node
# added after data exists.
# - A multi-row INSERT through the coordinator of customers who have no key
#   yet makes their keys in one request to the coordinator's key service
#   (privacy_internal.citus_create_keys), not one request per customer from
#   the workers; with privacy.citus_batch_keys off, the workers ask one by one.
# - The subject report on the coordinator lists the access entries the
#   workers logged for the subject, each naming its node.
# - A node added with citus_add_node after data exists knows nothing of the
#   extension's catalog until privacy.citus_attach() runs on the
#   coordinator: a query that reaches it is refused with a message that
#   says so, and after citus_attach() it answers.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;
use CitusCluster;

plan skip_all => 'Citus is not installed (test/run builds it from ../shared/citus)'
  unless CitusCluster::citus_available();

my $c = CitusCluster->new_cluster('bulk', workers => 2, conf => "log_statement = 'all'\n");
my $coord = $c->coordinator;

$c->protected_customers('email privacy.encrypted_text(contact)');

# The key service's requests for subjects' keys the coordinator received
# while $sql ran: one at a time, and in bulk.
sub key_requests
{
	my ($sql) = @_;
	my $log = $coord->logfile;
	my $before = -s $log;
	my ($ret, $out, $err) = $coord->psql('postgres', $sql);
	my $text = slurp_file($log);
	$text = substr($text, $before);
	# a subject's key: the second argument (a name) is NULL
	my $one = () = $text =~ /statement: SELECT privacy_internal\.citus_create_key\([^,]*, NULL, /g;
	my $many = () = $text =~ /statement: SELECT privacy_internal\.citus_create_keys\(/g;
	diag(join("\n", $text =~ /^.*citus_create_keys?\(.*$/mg)) if $ENV{PRIVACY_DIAG};
	return ($one, $many, $out, $err);
}

my $values = join(', ', map { "($_, 'person$_\@example.org')" } 1 .. 40);
my ($one, $many, $out, $err) = key_requests(qq{
SET ROLE app;
SET privacy.purpose = 'service';
INSERT INTO customers VALUES $values;
SELECT count(*) FROM customers;
});
is($out, '40', 'a multi-row INSERT of 40 new customers') or diag($err);
is("$one/$many", '0/1', 'their keys came in one request to the key service, none one by one');
my $keys = q{SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'};
is_deeply(CitusCluster::on_all($c, $keys), { map { $_->name => '40' } $c->nodes },
	'every node has the 40 subject keys');
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT string_agg(email::text, ',' ORDER BY id) FROM customers WHERE id IN (1, 40);
});
is($out, 'person1@example.org,person40@example.org', 'the rows read back through the coordinator') or diag($err);

# The same statement with a parameter for each subject (extended protocol).
($one, $many, $out, $err) = key_requests(q{
SET ROLE app;
SET privacy.purpose = 'service';
PREPARE ins(bigint, bigint, bigint) AS INSERT INTO customers VALUES ($1, 'p@example.org'), ($2, 'q@example.org'), ($3, 'r@example.org');
EXECUTE ins(41, 42, 43);
SELECT count(*) FROM customers;
});
is($out, '43', 'a prepared multi-row INSERT') or diag($err);
is("$one/$many", '0/1', 'its subjects\' keys came in one request too');

# No keys for an INSERT that will be refused (the planner runs before the checks).
($one, $many, $out, $err) = key_requests(q{
SET ROLE app;
INSERT INTO customers VALUES (201, 'x@example.org'), (202, 'y@example.org');
});
like($err, qr/purpose/, 'a multi-row INSERT without a purpose is refused');
is("$one/$many", '0/0', '... and no key was made for its subjects');

# Off: the workers ask for each new customer's key (the path before).
$values = join(', ', map { "($_, 'person$_\@example.org')" } 101 .. 110);
($one, $many, $out, $err) = key_requests(qq{
SET ROLE app;
SET privacy.purpose = 'service';
SET privacy.citus_batch_keys = off;
INSERT INTO customers VALUES $values;
SELECT count(*) FROM customers;
});
is($out, '53', 'with privacy.citus_batch_keys off the INSERT works') or diag($err);
is("$one/$many", '10/0', '... and the workers ask for each of the 10 keys');

# --- The subject report on the coordinator lists the workers' access entries.
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT email FROM customers WHERE id = 2;
});
is($out, 'person2@example.org', 'a read of customer 2 through the coordinator') or diag($err);
$_->safe_psql('postgres', 'SELECT privacy.flush_access_log()') for $c->nodes;
my $holder = $c->worker_for('customers', 2);
my $report = q{SELECT string_agg(format('%s|%s|%s|%s', e ->> 'node', e ->> 'purpose', e ->> 'table', e ->> 'values'), ',')
  FROM jsonb_array_elements(privacy.subject_report('2') -> 'access') e};
($out, $err) = CitusCluster::sql_on($coord, $report);
like($out, qr/(^|,)127\.0\.0\.1:@{[ $holder->port ]}\|service\|public\.customers_\d+\|1(,|$)/,
	'the subject report names the worker\'s entry for the read: node, purpose, shard, one value') or diag("$out $err");
unlike($out, qr/subject_access/, 'the report\'s own reads on the workers are not listed') or diag("$out $err");

# --- A node added after data exists.
my $w3 = $c->add_worker('bulk_w3');
($out, $err) = $c->move_shard('customers', 1, $w3);
is($err, '', 'a shard moves to a node added after data exists');
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT email FROM customers WHERE id = 1;
});
like($err, qr/this Citus node has not received the privacy extension's catalog.*HINT:  On the coordinator, run SELECT privacy\.citus_attach\(\); after citus_add_node/s,
	'a node added without privacy.citus_attach() refuses, naming what to run') or diag($err);
($out, $err) = CitusCluster::sql_on($coord, q{SELECT privacy.citus_attach()});
is($out, '3', 'privacy.citus_attach() brings it up to date') or diag($err);
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT email FROM customers WHERE id = 1;
});
is($out, 'person1@example.org', 'then the moved shard answers') or diag($err);

$c->stop;
done_testing();
