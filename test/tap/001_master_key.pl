# The master key: loaded once at start, never written anywhere, and a
# missing, failing or malformed key command leaves the server running with
# clear errors.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node, $key, $keyfile) = PrivacyNode::new_node('keys');
$node->start;

like(slurp_file($node->logfile), qr/privacy master key loaded/, 'the key is loaded at start');
$node->safe_psql('postgres', 'CREATE EXTENSION privacy');
is($node->safe_psql('postgres', 'SELECT privacy.master_key_status()'), 'loaded', 'status says loaded');
my $fp1 = $node->safe_psql('postgres', 'SELECT privacy.master_key_fingerprint()');
like($fp1, qr/^[0-9a-f]{16}$/, 'fingerprint is 16 hex characters');
unlike($key, qr/\Q$fp1\E/, 'the fingerprint is not a piece of the key');

# A non-superuser cannot read the command, from pg_settings or otherwise.
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_settings WHERE name = 'privacy.master_key_command'", extra_params => ['-U', 'app']),
	'0', 'pg_settings hides the key command from ordinary roles');
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT current_setting('privacy.master_key_command')", extra_params => ['-U', 'app']);
like($err, qr/must be superuser or have privileges of pg_read_all_settings/, 'current_setting refuses ordinary roles');
($ret, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET privacy.master_key_command = 'echo x'", extra_params => ['-U', 'app']);
like($err, qr/permission denied to set parameter/, 'ordinary roles cannot ALTER SYSTEM the key command');

# Errors, failing statements and a checkpoint: the key appears nowhere.
$node->psql('postgres', "SELECT privacy.check_purpose('contact')");
$node->psql('postgres', "SELECT 1/0");
$node->safe_psql('postgres', 'CHECKPOINT');
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$key\E/i, 'the key hex is not in the server log');
my $tree = PrivacyNode::slurp_tree($node->data_dir);
unlike($tree, qr/\Q$key\E/i, 'the key hex is nowhere in the data directory (WAL included)');
my $bin = pack('H*', $key);
ok(index($tree, $bin) < 0, 'the raw key bytes are nowhere in the data directory');

# A different key is told apart by its fingerprint.
PrivacyNode::write_key($node, PrivacyNode::new_key_hex());
$node->restart;
my $fp2 = $node->safe_psql('postgres', 'SELECT privacy.master_key_fingerprint()');
isnt($fp2, $fp1, 'a different key has a different fingerprint');

# Broken key commands: the server starts, the reason is clear, no key bytes.
my @cases = (
	[ '',                    qr/privacy\.master_key_command is not set/,                       'empty command' ],
	[ 'false',               qr/privacy\.master_key_command failed with exit code 1/,          'failing command' ],
	[ '/nonexistent/getkey', qr/privacy\.master_key_command failed with exit code 127/,        'missing program' ],
	[ 'echo 0011',           qr/must print exactly 64 hexadecimal characters/,                 'short output' ],
	[ 'echo ' . ('zz' x 32), qr/printed characters that are not hexadecimal/,                  'non-hex output' ],
	[ 'echo ' . ('00' x 32), qr/all zeros/,                                                    'all-zero key' ],
	[ "cat $keyfile $keyfile", qr/must print exactly 64 hexadecimal characters/,               'two keys' ],
	[ 'head -c 100000 /dev/zero', qr/printed more than 256 bytes/,                             'endless output' ],
);
for my $case (@cases)
{
	my ($command, $reason, $label) = @$case;
	PrivacyNode::set_key_command($node, $command);
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$label: the server starts");
	like($node->safe_psql('postgres', 'SELECT privacy.master_key_status()'), $reason, "$label: status gives the reason");
	($ret, $out, $err) = $node->psql('postgres', 'SELECT privacy.master_key_fingerprint()');
	like($err, qr/ERROR:  privacy master key is not available\nDETAIL:  .*$reason.*\nHINT:  Set privacy\.master_key_command in postgresql\.conf/s,
		"$label: functions that need the key say why and what to do");
}
like(slurp_file($node->logfile), qr/WARNING:  privacy master key could not be loaded/, 'the start-up warning is logged');
unlike(slurp_file($node->logfile), qr/\Q$key\E/i, 'still no key hex in the log');

# A working command again: back to normal after a restart.
PrivacyNode::set_key_command($node, "cat $keyfile");
is($node->safe_psql('postgres', 'SELECT privacy.master_key_status()'), 'loaded', 'fixed command: loaded again');
$node->stop;

# Without shared_preload_libraries: CREATE EXTENSION says which line to add.
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->start;
($ret, $out, $err) = $plain->psql('postgres', 'CREATE EXTENSION privacy');
isnt($ret, 0, 'CREATE EXTENSION fails when the library is not preloaded');
like($err, qr/ERROR:  privacy must be loaded via shared_preload_libraries/, 'the error says why');
like($err, qr/HINT:  Add this line to postgresql\.conf and restart the server: shared_preload_libraries = 'privacy'/,
	'the hint gives the exact line');
is($plain->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'privacy'"), '0',
	'nothing was installed');
$plain->stop;

done_testing();
