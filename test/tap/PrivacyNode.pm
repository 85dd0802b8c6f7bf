# PrivacyNode.pm — a PostgreSQL::Test::Cluster with privacy preloaded and a
# freshly generated master key in a file only the cluster owner can read.
package PrivacyNode;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# 32 random bytes as 64 hex characters.
sub new_key_hex
{
	open(my $fh, '<:raw', '/dev/urandom') or die "urandom: $!";
	read($fh, my $bytes, 32) == 32 or die "short read from urandom";
	close $fh;
	return unpack('H*', $bytes);
}

# new_node(name, key => hex) — initialised, configured, not started.
sub new_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $key = $opts{key} // new_key_hex();
	my $keyfile = write_key($node, $key);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'privacy'
privacy.master_key_command = 'cat $keyfile'
});
	return ($node, $key, $keyfile);
}

sub write_key
{
	my ($node, $key, $file) = @_;
	$file //= $node->basedir . '/master.key';
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh "$key\n";
	close $fh;
	chmod 0600, $file;
	return $file;
}

# access_log_node(name): a started node that streams, with the access log's
# flush interval at 200 ms and a 512 kB queue, and in database postgres a
# protected table customers (id bigint, email encrypted under contact) of
# 100 subjects, loaded by role app, which holds purpose billing and
# declares it at login.  Returns ($node, $key).
sub access_log_node
{
	my ($name) = @_;
	my ($node, $key) = new_node($name,
		init => { extra => ['--encoding=UTF8', '--locale=C'], allows_streaming => 1 });
	$node->append_conf('postgresql.conf', qq{
privacy.access_log_flush_interval = '200ms'
privacy.access_log_queue_size = '512kB'
});
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE ROLE app LOGIN;
SELECT privacy.grant_purpose('app', 'billing');
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('customers', 'id');
GRANT SELECT, INSERT ON customers TO app;
ALTER ROLE app SET privacy.purpose = 'billing';
});
	# loaded by the application, under its purpose: sealed with subject keys
	$node->safe_psql('postgres', q{
INSERT INTO customers SELECT g, 'customer' || g || '@example.org' FROM generate_series(1, 100) g;
}, extra_params => ['-U', 'app']);
	return ($node, $key);
}

# standby_of(primary, key, name): a streaming standby from a new base
# backup of the primary, with its own copy of the master key (the
# configuration that comes with the backup names the primary's key file),
# started and caught up.
sub standby_of
{
	my ($primary, $key, $name) = @_;
	$primary->backup("base_$name");
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, "base_$name", has_streaming => 1);
	my $keyfile = write_key($standby, $key);
	$standby->append_conf('postgresql.conf', "privacy.master_key_command = 'cat $keyfile'\n");
	$standby->start;
	$primary->wait_for_catchup($standby, 'replay');
	return $standby;
}

# Set privacy.master_key_command and restart.
sub set_key_command
{
	my ($node, $command) = @_;
	$command =~ s/'/''/g;
	$node->append_conf('postgresql.conf', "privacy.master_key_command = '$command'\n");
	$node->restart;
}

# Every file under a directory, concatenated (for "is this string anywhere?").
sub slurp_tree
{
	my ($dir) = @_;
	my $all = '';
	my @todo = ($dir);
	while (my $d = shift @todo)
	{
		opendir(my $dh, $d) or next;
		for my $e (readdir $dh)
		{
			next if $e eq '.' || $e eq '..';
			my $p = "$d/$e";
			if (-d $p && !-l $p) { push @todo, $p; next; }
			next unless -f $p;
			open(my $fh, '<:raw', $p) or next;
			local $/;
			$all .= <$fh> // '';
			close $fh;
		}
		closedir $dh;
	}
	return $all;
}

# Set privacy.master_key_command (current => ...) and
# privacy.previous_master_key_command (previous => ...) together, then
# restart once: the shape of a master-key rotation.  An argument left out
# keeps its setting; an empty string clears it.
sub set_key_commands
{
	my ($node, %cmd) = @_;
	my $conf = '';
	for my $pair ([ current => 'privacy.master_key_command' ],
		[ previous => 'privacy.previous_master_key_command' ])
	{
		my ($arg, $setting) = @$pair;
		next unless defined $cmd{$arg};
		(my $value = $cmd{$arg}) =~ s/'/''/g;
		$conf .= "$setting = '$value'\n";
	}
	$node->append_conf('postgresql.conf', $conf);
	$node->restart;
}

# psql with VERBOSITY verbose, so that errors carry their SQLSTATE
# ("ERROR:  55000: ..."); returns ($ret, $stdout, $stderr) and never dies.
sub psql_verbose
{
	my ($node, $db, $sql, %params) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql", %params);
	return ($ret, $out, $err);
}

# The needles that occur in a haystack (bytes), for "no plaintext here"
# assertions: is_deeply(PrivacyNode::needles_in($tree, @needles), [], ...).
sub needles_in
{
	my ($haystack, @needles) = @_;
	return [ grep { index($haystack, $_) >= 0 } @needles ];
}

# Wait until the server log, from byte offset on, matches a regexp; returns
# the log's length after the match, or undef after timeout seconds (so
# that a test fails with an assertion rather than dying).
sub wait_for_log_within
{
	my ($node, $regexp, $offset, $timeout) = @_;
	$offset //= 0;
	$timeout //= 30;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset);
		return $offset + length($log) if $log =~ m/$regexp/;
		return undef if time() > $deadline;
		select(undef, undef, undef, 0.1);
	}
}

# How often a regexp matches the server log from byte offset on.
sub log_count
{
	my ($node, $regexp, $offset) = @_;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset // 0);
	my $n = () = $log =~ m/$regexp/g;
	return $n;
}

# A long-lived session (BackgroundPsql), and a query in it.  BackgroundPsql
# notes every query and its output in the TAP stream; keep them out of the
# suite's output.
sub open_session
{
	my ($node, $db) = @_;
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	return $node->background_psql($db);
}

sub session_query
{
	my ($session, $sql) = @_;
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	return $session->query_safe($sql);
}

# kill -9 one server process, then bring the node back.  With
# restart_after_crash = off (PostgreSQL::Test::Cluster's setting) the
# postmaster terminates every process and exits, removing postmaster.pid:
# wait for that, forget the old postmaster and start the node again (crash
# recovery).  With restart_after_crash = on it reinitializes by itself:
# wait until it accepts connections.  Returns true when the node is up.
sub crash_and_restart
{
	my ($node, $pid) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	open(my $fh, '<', $pidfile) or die "$pidfile: $!";
	chomp(my $postmaster = <$fh>);
	close $fh;
	my $offset = -s $node->logfile;
	kill 'KILL', $pid or die "could not kill $pid: $!";
	my $deadline = time() + 60;
	while (kill(0, $postmaster) && time() < $deadline)
	{
		# restart_after_crash = on: the postmaster stays and recovers
		last if PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset)
		  =~ /all server processes terminated; reinitializing/;
		select(undef, undef, undef, 0.1);
	}
	if (kill(0, $postmaster))
	{
		return $node->poll_query_until('postgres', 'SELECT true');
	}
	$node->_update_pid(-1);		# no postmaster.pid: nothing is running
	return $node->start(fail_ok => 1);
}

1;
