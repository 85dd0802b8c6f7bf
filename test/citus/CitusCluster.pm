# CitusCluster.pm — a throwaway Citus cluster for the scale-out suite
# (issue #16): a coordinator and workers, each a PostgreSQL::Test::Cluster
# with shared_preload_libraries = 'citus,privacy' (Citus first, as it
# requires), listening on 127.0.0.1 with trust authentication (initdb -A
# trust, which PostgreSQL::Test::Cluster uses), and the same master key on
# every node.
#
# The master key is per-cluster configuration: every node runs the same
# privacy.master_key_command and gets the same 32 bytes (here a file each
# node reads; in production the command that fetches the key from the key
# service, on every node).  A node with another key can open nothing that
# was sealed elsewhere, so new_cluster refuses to build one.
#
#   my $c = CitusCluster->new_cluster('scale', workers => 2);
#   $c->coordinator->safe_psql('postgres', 'CREATE EXTENSION privacy');
#   $c->add_worker('w3');        # a node added later
#   $c->stop;
package CitusCluster;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PrivacyNode;

# Whether citus.so is installed in the PostgreSQL these tests run (the
# runner builds it from ../shared/citus; see test/lib.sh).
sub citus_available
{
	my $libdir = `pg_config --pkglibdir`;
	chomp $libdir;
	return -f "$libdir/citus.so";
}

# new_cluster(name, workers => N, conf => extra postgresql.conf text):
# started, Citus created on every node, the workers added.  The extension
# privacy is not created: the tests decide when.
sub new_cluster
{
	my ($class, $name, %opts) = @_;
	my $self = bless {
		name    => $name,
		key     => PrivacyNode::new_key_hex(),
		conf    => $opts{conf} // '',
		workers => [],
	}, $class;
	$self->{coordinator} = $self->_new_node("${name}_coord");
	$self->coordinator->safe_psql('postgres', qq{
SELECT citus_set_coordinator_host('127.0.0.1', @{[ $self->coordinator->port ]});
});
	$self->add_worker("${name}_w$_") for 1 .. ($opts{workers} // 2);
	return $self;
}

sub coordinator { return $_[0]->{coordinator} }
sub workers     { return @{ $_[0]->{workers} } }
sub nodes       { my $s = shift; return ($s->coordinator, $s->workers) }
sub key_hex     { return $_[0]->{key} }

# A node: initialised with the cluster's master key, configured for Citus,
# started, Citus created.  Not yet part of the cluster.
sub _new_node
{
	my ($self, $name) = @_;
	my ($node) = PrivacyNode::new_node($name, key => $self->{key});
	# PrivacyNode set shared_preload_libraries = 'privacy'; Citus must be
	# loaded first.  listen_addresses: Citus connects to the nodes over TCP.
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus,privacy'
listen_addresses = '127.0.0.1'
max_prepared_transactions = 20
max_connections = 60
citus.shard_count = 4
citus.shard_replication_factor = 1
citus.max_cached_conns_per_worker = 1
citus.log_remote_commands = off
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
fsync = off
log_line_prefix = '%m [%p] %q%a '
$self->{conf}
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# add_worker(name): a new node, added to the cluster from the coordinator
# (Citus copies its metadata, the extensions and reference tables there).
sub add_worker
{
	my ($self, $name) = @_;
	my $node = $self->_new_node($name);
	push @{ $self->{workers} }, $node;
	$self->coordinator->safe_psql('postgres',
		"SELECT citus_add_node('127.0.0.1', @{[ $node->port ]})");
	return $node;
}

# The worker that holds the shard of a distributed table's row whose
# distribution column is value (a SQL literal).
sub worker_for
{
	my ($self, $table, $value) = @_;
	my $port = $self->coordinator->safe_psql('postgres', qq{
SELECT p.nodeport FROM pg_dist_shard_placement p
 WHERE p.shardid = get_shard_id_for_distribution_column('$table', $value)});
	my ($w) = grep { $_->port == $port } $self->workers;
	die "no worker holds $table = $value (port $port)" unless $w;
	return $w;
}

# protected_customers(columns): on the coordinator, the extension, category
# contact, purpose service (contract) held by role app, and the table
# customers (id bigint PRIMARY KEY, <columns>) distributed by id, protected,
# with SELECT, INSERT, UPDATE and DELETE granted to app.
sub protected_customers
{
	my ($self, $columns) = @_;
	$self->coordinator->safe_psql('postgres', qq{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'how to reach a customer', false);
SELECT privacy.create_purpose('service', 'contract', 'customer service', ARRAY['contact']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'service');
CREATE TABLE customers (id bigint PRIMARY KEY, $columns);
SELECT create_distributed_table('customers', 'id');
SELECT privacy.protect_table('customers', 'id');
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO app;
});
}

# move_shard(table, value, node): move the shard holding the row whose
# distribution column is value to node (block_writes); returns
# (stdout, stderr) of the coordinator's psql.
sub move_shard
{
	my ($self, $table, $value, $node) = @_;
	return sql_on($self->coordinator, qq{
SELECT citus_move_shard_placement(get_shard_id_for_distribution_column('$table', $value),
  '127.0.0.1', (SELECT nodeport FROM pg_dist_shard_placement
                 WHERE shardid = get_shard_id_for_distribution_column('$table', $value)),
  '127.0.0.1', @{[ $node->port ]}, shard_transfer_mode => 'block_writes')});
}

# The same query on every node, as a hash from node name to output.
sub on_all
{
	my ($self, $sql, $db) = @_;
	return { map { $_->name => scalar $_->safe_psql($db // 'postgres', $sql) } $self->nodes };
}

# psql on a node, database postgres; returns (stdout, stderr) and never dies.
sub sql_on
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return ($out, $err);
}

sub stop
{
	my ($self) = @_;
	$_->stop('fast') for reverse $self->nodes;
}

1;
