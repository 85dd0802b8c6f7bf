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

1;
