# Scale-out (issue #16): what was found trying the extension on a 3-node
# Citus cluster (coordinator + 2 workers, customers distributed by customer
# id), each finding written as the behaviour the issue requires.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;
use CitusCluster;

plan skip_all => 'Citus is not installed (test/run builds it from ../shared/citus)'
  unless CitusCluster::citus_available();

my $c = CitusCluster->new_cluster('find', workers => 2);
my $coord = $c->coordinator;
my @workers = $c->workers;


# The vocabulary, classification and a distributed table, all through the
# coordinator, as an operator would set them up.
$coord->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'how to reach a customer', false);
SELECT privacy.create_purpose('service', 'contract', 'customer service', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'offers', ARRAY['contact']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'service');
SELECT privacy.grant_purpose('app', 'marketing');
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact, searchable));
SELECT create_distributed_table('customers', 'id');
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO app;
});

# --- One vocabulary: every node knows what the coordinator defined.
my $vocab = q{SELECT string_agg(name, ',' ORDER BY name) FROM privacy.categories};
is($_->safe_psql('postgres', $vocab), 'contact,unclassified',
	'the categories defined on the coordinator are known on ' . $_->name)
  for @workers;
my $grants = q{SELECT string_agg(role::text || ':' || purpose, ',' ORDER BY purpose) FROM privacy.role_purposes};
is($_->safe_psql('postgres', $grants), 'app:marketing,app:service',
	'the purposes granted on the coordinator are granted on ' . $_->name)
  for @workers;

# --- Writes through the coordinator, with a session-level purpose.
my ($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
INSERT INTO customers VALUES (1, 'ada@example.org'), (2, 'bob@example.org'),
  (3, 'cy@example.org'), (4, 'di@example.org'), (5, 'ed@example.org'), (6, 'flo@example.org');
SELECT count(*) FROM customers;
});
is($out, '6', 'an INSERT with a session SET privacy.purpose reaches the workers')
  or diag($err);

# --- The purpose travels with the query: a session SET, not only SET LOCAL.
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT email FROM customers WHERE id = 3;
});
is($out, 'cy@example.org', 'a session SET privacy.purpose reads a distributed table')
  or diag($err);
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT string_agg(email::text, ',' ORDER BY id) FROM customers;
});
is($out, 'ada@example.org,bob@example.org,cy@example.org,di@example.org,ed@example.org,flo@example.org',
	'a multi-shard read with a session purpose returns every value') or diag($err);

# --- Values cross nodes as ciphertext: the workers' shards hold the rows,
# and no data file on any node holds a plaintext.
my $shard_rows = 0;
$shard_rows += $_->safe_psql('postgres', q{
SET citus.show_shards_for_app_name_prefixes = '*';
SELECT coalesce(sum((xpath('/row/c/text()',
         query_to_xml(format('SELECT count(*) AS c FROM %s', c.oid::regclass), false, true, '')))[1]::text::int), 0)
  FROM pg_class c WHERE c.relname ~ '^customers_[0-9]+$' AND c.relkind = 'r'}) for @workers;
is($shard_rows, 6, 'the six rows are in the shards on the workers');
$_->safe_psql('postgres', 'CHECKPOINT') for $coord, @workers;
unlike(PrivacyNode::slurp_tree($_->data_dir . '/base'), qr/(ada|bob|cy|di|ed|flo)\@example\.org/,
	'no plaintext in the data files of ' . $_->name)
  for $coord, @workers;

# --- One key set: the category key and the internal keys are the same on
# every node.
my $keys = q{SELECT string_agg(format('%s/%s/%s', k.id, k.scope, coalesce(k.category, k.name, '')),
  ',' ORDER BY k.id) FROM privacy.data_keys k WHERE k.scope <> 'subject'};
my $coord_keys = $coord->safe_psql('postgres', $keys);
isnt($coord_keys, '', 'the coordinator has data keys');
is($_->safe_psql('postgres', $keys), $coord_keys, 'the same data keys on ' . $_->name)
  for @workers;
my $wrapped = q{SELECT string_agg(encode(k.wrapped_key, 'hex'), ',' ORDER BY k.id)
  FROM privacy.data_keys k WHERE k.scope = 'internal'};
my $coord_wrapped = $coord->safe_psql('postgres', $wrapped);
is($_->safe_psql('postgres', $wrapped), $coord_wrapped,
	'the internal keys (search, subject hash, access log) are the same on ' . $_->name)
  for @workers;

# --- Equality search routed to a worker finds the row.
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT id FROM customers WHERE email = 'di@example.org';
});
is($out, '4', 'equality search on a searchable column finds the row on its worker')
  or diag($err);

# --- Consent recorded on the coordinator holds on every shard.
($out, $err) = CitusCluster::sql_on($coord, q{SELECT privacy.protect_table('customers', 'id')});
is($err, '', 'protect_table on a distributed table');
$coord->psql('postgres', q{
SELECT privacy.grant_consent('1', 'marketing', 'web', '{}');
SELECT privacy.grant_consent('4', 'marketing', 'web', '{}');
SELECT privacy.object('2', 'service', 'letter');
});
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'marketing';
SELECT string_agg(id::text, ',' ORDER BY id) FROM customers;
});
is($out, '1,4', 'a consent purpose shows exactly the consented subjects across shards')
  or diag($err);
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
SELECT string_agg(id::text, ',' ORDER BY id) FROM customers;
});
is($out, '1,3,4,5,6', 'an objection recorded on the coordinator hides its subject on the shards')
  or diag($err);
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SELECT count(*) FROM customers;
});
like($err, qr/no purpose declared|purpose/, 'reading a protected distributed table without a purpose is refused');

# --- Erasure destroys the subject's key on every node.
$coord->psql('postgres', q{SELECT privacy.erase_subject('5', 'request 5')});
my $destroyed = q{SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject' AND state = 'destroyed'};
is($_->safe_psql('postgres', $destroyed), '1', 'the erased subject\'s key is destroyed on ' . $_->name)
  for $coord, @workers;

# --- The access log: a read through the coordinator is logged there,
# naming the logical table.
$coord->safe_psql('postgres', q{SELECT privacy.flush_access_log()});
my $logged = $coord->safe_psql('postgres', q{
SELECT string_agg(format('%s/%s/%s', command, purpose, acting_role), ',' ORDER BY seq)
  FROM privacy.access_log WHERE relation = 'public.customers' AND application = '001_findings.pl'});
is($logged, 'SELECT/marketing/app,SELECT/service/app,SELECT//app',
	'each read through the coordinator is one entry there, naming the logical table, the session\'s purpose and role');

# --- The subject report answers from the coordinator with plaintext.
my $report = $coord->safe_psql('postgres', q{SELECT privacy.subject_report('4')::text});
like($report, qr/di\@example\.org/, 'the subject report shows the subject\'s distributed values');

$c->stop;
done_testing();
