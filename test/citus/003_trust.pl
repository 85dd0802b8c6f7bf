# Scale-out trust (issue #16): a worker takes an INSERT without a purpose
# as one its coordinator forwards (the coordinator checked the purpose) only
# when the node the connection names vouches for it.  Citus marks its own
# connections with application_name 'citus_internal gpid=<node><pid>', which
# any client can set too: a role that connects to a worker directly and
# names itself so must still declare a purpose, whether the gpid is made up,
# belongs to a session that ended, or to a live coordinator session of the
# same role that declared no purpose.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use PrivacyNode;
use CitusCluster;

plan skip_all => 'Citus is not installed (test/run builds it from ../shared/citus)'
  unless CitusCluster::citus_available();

my $c = CitusCluster->new_cluster('trust', workers => 2);
my $coord = $c->coordinator;

$c->protected_customers('email privacy.encrypted_text(contact), note text');

# --- What Citus forwards still works: rows with and without an encrypted value.
my ($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
INSERT INTO customers VALUES (1, 'person1@example.org', 'n1');
INSERT INTO customers VALUES (2, 'person2@example.org', 'n2'), (3, 'person3@example.org', 'n3');
INSERT INTO customers (id, note) VALUES (4, 'n4');
BEGIN; INSERT INTO customers VALUES (5, 'person5@example.org', 'n5'); COMMIT;
SELECT count(*) FROM customers;
});
is($out, '5', 'INSERTs through the coordinator reach the shards') or diag($err);

# The worker and the shard that hold customer 9.
my $w = $c->worker_for('customers', 9);
my $shard = $coord->safe_psql('postgres',
	q{SELECT shard_name('customers', get_shard_id_for_distribution_column('customers', 9))});
my $nodeid = $coord->safe_psql('postgres', q{SELECT nodeid FROM pg_dist_node WHERE groupid = 0});

# A direct INSERT into the shard, as app, under Citus's application name,
# with no encrypted value: sealing a plaintext value needs a purpose
# whatever the vouch says, and would hide whether the claim was taken.
sub forged_insert
{
	my ($gpid, $id) = @_;
	my ($ret, $o, $e) = $w->psql('postgres', qq{
SET application_name = 'citus_internal gpid=$gpid';
SET ROLE app;
INSERT INTO $shard (id, note) VALUES ($id, 'forged');
SELECT 'inserted';
});
	return ($o, $e);
}

# --- A made-up gpid on the coordinator's node.
my $fake = $nodeid * 10_000_000_000 + 4_000_000;
($out, $err) = forged_insert($fake, 9);
isnt($out, 'inserted', 'a made-up Citus gpid does not excuse an INSERT from its purpose');
like($err, qr/no purpose declared|purpose/, '... it is refused for want of a purpose') or diag($err);

# --- The gpid of a live coordinator session of app that declared no purpose.
my ($in, $bo, $be) = ('', '', '');
my $h = IPC::Run::start(['psql', '-XAtq', '-d', $coord->connstr('postgres'), '-v', 'ON_ERROR_STOP=1'],
	'<', \$in, '>', \$bo, '2>', \$be);
$in .= "SET ROLE app;\nSELECT citus_backend_gpid();\n";
IPC::Run::pump($h) until $bo =~ /^\d+$/m || !$h->pumpable;
my ($live) = $bo =~ /^(\d+)$/m;
ok(defined $live, 'a coordinator session of app without a purpose');
($out, $err) = forged_insert($live // 0, 10);
isnt($out, 'inserted', 'the gpid of a live session that declared no purpose does not excuse the INSERT');

# --- ... nor that session inside a transaction that declared one but forwards nothing.
$in .= "BEGIN;\nSET LOCAL privacy.purpose = 'service';\nSELECT 'begun';\n";
IPC::Run::pump($h) until $bo =~ /^begun$/m || !$h->pumpable;
($out, $err) = forged_insert($live // 0, 11);
isnt($out, 'inserted', 'nor the gpid of a session that declared a purpose but is not inserting');
$in .= "COMMIT;\n\\q\n";
$h->finish;

# --- Nothing forged reached the shard; a direct read under the name is refused too.
my ($ret, $o2, $e2) = $w->psql('postgres', qq{
SET application_name = 'citus_internal gpid=$fake';
SET ROLE app;
SELECT count(*) FROM $shard;
});
like($e2, qr/purpose/, 'a direct read of a shard under Citus\'s application name needs a purpose');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM customers WHERE note = 'forged'}), '0',
	'no forged row is in the table');

# --- A worker's own session that declares the purpose inserts as any client would.
($ret, $out, $err) = $w->psql('postgres', qq{
SET ROLE app;
SET privacy.purpose = 'service';
INSERT INTO $shard (id, email, note) VALUES (12, 'direct12\@example.org', 'direct');
SELECT 'inserted';
});
is($out, 'inserted', 'a direct INSERT on a worker with a purpose declared works') or diag($err);

# --- A vouch is no licence for later (review of the caches): a client
# that names itself after a live session of app while that session inserts
# through the coordinator is taken as forwarded then (what a forged claim
# can win, stated above); once the session has ended and app's purpose was
# revoked, the same connection's next INSERT without a purpose is refused.
# (It was taken: the worker remembered the vouch for the connection.)
my ($cin, $cout, $cerr) = ('', '', '');
my $ch = IPC::Run::start(['psql', '-XAtq', '-d', $coord->connstr('postgres'), '-v', 'ON_ERROR_STOP=1'],
	'<', \$cin, '>', \$cout, '2>', \$cerr);
$cin .= "SET ROLE app;\nSELECT 'gpid=' || citus_backend_gpid();\n"
  . "BEGIN;\nSET LOCAL privacy.purpose = 'service';\n"
  . "INSERT INTO customers VALUES (15, 'person15\@example.org', 'n15');\nSELECT 'inserting';\n";
IPC::Run::pump($ch) until $cout =~ /^inserting$/m || !$ch->pumpable;
my ($inserting) = $cout =~ /^gpid=(\d+)$/m;
ok(defined $inserting, 'a coordinator session of app inside a transaction that inserted') or diag($cerr);
my ($fin, $fout, $ferr) = ('', '', '');
my $fh = IPC::Run::start(['psql', '-XAtq', '-d', $w->connstr('postgres')],
	'<', \$fin, '>', \$fout, '2>', \$ferr);
$fin .= "SET application_name = 'citus_internal gpid=" . ($inserting // 0) . "';\nSET ROLE app;\n";
# each INSERT its own transaction; 'inserted <id>' only when it went through
$fin .= "\\set ON_ERROR_STOP 0\n";
sub forged_try
{
	my ($id) = @_;
	$fin .= "INSERT INTO $shard (id, note) VALUES ($id, 'vouched');\n"
	  . "\\if :ERROR\n\\echo refused $id\n\\else\n\\echo inserted $id\n\\endif\n"
	  . "SELECT 'done $id';\n";
	IPC::Run::pump($fh) until $fout =~ /^done $id$/m || !$fh->pumpable;
	return $fout =~ /^inserted $id$/m;
}
ok(forged_try(16), 'a connection naming a session of app while it inserts is taken as forwarded (the stated limit)') or diag($ferr);
$cin .= "COMMIT;\n\\q\n";
$ch->finish;
$coord->safe_psql('postgres', q{SELECT privacy.revoke_purpose('app', 'service')});
ok(!forged_try(17), 'once that session has ended and app lost its purpose, the connection must declare one');
like($ferr, qr/purpose/, '... refused for want of a purpose');
$coord->safe_psql('postgres', q{SELECT privacy.grant_purpose('app', 'service')});
$fin .= "\\q\n";
$fh->finish;

# --- The vouched connection keeps working after the refusals (cached per connection).
($out, $err) = CitusCluster::sql_on($coord, q{
SET ROLE app;
SET privacy.purpose = 'service';
INSERT INTO customers VALUES (13, 'person13@example.org', 'n13'), (14, 'person14@example.org', 'n14');
SELECT count(*) FROM customers WHERE id IN (13, 14);
});
is($out, '2', 'INSERTs through the coordinator still reach the shards') or diag($err);

$c->stop;
done_testing();
