# Denials in the access log, outside the happy path (issue #13).
#
# (1) A role that floods refusals cannot take the queue from the readers:
#     with the writer blocked, its refusals fill half of the queue and then
#     wait (wait event Extension); a reader's statements meanwhile complete
#     without waiting; once the writer goes on, every refusal and every read
#     is in the log (the queue drops nothing).
# (2) A refusal is queued before its error: in strict mode the refused
#     statement's entry is committed before the error reaches the client,
#     so a kill -9 right after loses nothing.
# (3) On a hot standby a refusal is a JSON line of the server log, with its
#     outcome and reason, and no value.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use PrivacyNode;

my ($node, $key) = PrivacyNode::access_log_node('denied');
$node->safe_psql('postgres', q{
CREATE ROLE intruder LOGIN;
GRANT SELECT ON customers TO intruder;
});

sub count_of
{
	my ($where) = @_;
	$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');
	return $node->safe_psql('postgres', "SELECT count(*) FROM privacy.access_log WHERE $where");
}

# ---------------------------------------------------------------------------
# (1) a flood of refusals
# ---------------------------------------------------------------------------
my $blocker = $node->background_psql('postgres', on_error_stop => 0);
$blocker->query_safe('BEGIN; LOCK privacy.access_log_batches IN ACCESS EXCLUSIVE MODE');
my $flooder = $node->background_psql('postgres', on_error_stop => 0, extra_params => ['-U', 'intruder']);
(my $fpid = $flooder->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$flooder->query_safe("SET application_name = 'flood'");
# 4000 refusals of about 200 bytes each: more than the whole 512 kB queue
$flooder->query_until(qr/flooding/, q{\echo flooding
DO $$ BEGIN
  FOR i IN 1..4000 LOOP
    BEGIN
      PERFORM email::text FROM customers WHERE id = 1 + i % 100;
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
  END LOOP;
END $$;
\echo flooded
});
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $fpid"),
	'the flooder waits for the writer (wait event type Extension)');
my ($queued, $size) = split /\|/,
  $node->safe_psql('postgres', 'SELECT queued_bytes, queue_bytes FROM privacy.access_log_status()');
cmp_ok($queued, '<=', $size / 2, "its refusals take at most half of the queue ($queued of $size bytes)");

# a reader meanwhile: 500 reads (about 115 kB of events) complete although the writer is blocked
my $reader = $node->background_psql('postgres', on_error_stop => 0, extra_params => ['-U', 'app']);
$reader->query_safe("SET application_name = 'reader'; SET statement_timeout = '30s'");
my $t0 = time();
my ($rout, $rret) = $reader->query(q{DO $$ BEGIN FOR i IN 1..500 LOOP PERFORM email::text FROM customers WHERE id = 1 + i % 100; END LOOP; END $$});
my $took = time() - $t0;
ok($rret == 0 && $took < 30, "the reader's 500 statements completed while the writer was blocked (${took}s)");
is($node->safe_psql('postgres', "SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $fpid"), 't',
	'while the flooder still waits');
$blocker->query_safe('COMMIT');
$flooder->query_until(qr/flooded/, '');
is(count_of(q{application = 'flood' AND outcome = 'denied' AND reason = 'no_purpose'}), 4000,
	'once the writer goes on, all 4000 refusals are in the log: none dropped');
is(count_of(q{application = 'reader' AND outcome = 'completed'}), 500, 'and all 500 reads');
$flooder->quit;
$reader->quit;
$blocker->quit;

# ---------------------------------------------------------------------------
# (2) strict mode: the refusal is committed before its error returns
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "privacy.access_log_flush_interval = '1s'\n");
$node->safe_psql('postgres', 'ALTER ROLE intruder SET privacy.access_log_strict = on');
$node->reload;
my $bg = $node->background_psql('postgres', on_error_stop => 0, extra_params => ['-U', 'intruder']);
(my $pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_safe("SET application_name = 'strict-refusal'");
$bg->query('SELECT email FROM customers WHERE id = 7');
ok(PrivacyNode::crash_and_restart($node, $pid), 'kill -9 right after the refusal, the node is back');
eval { $bg->quit };
is(count_of(q{application = 'strict-refusal' AND outcome = 'denied'}), 1,
	'strict mode: the refusal is in the log after kill -9');
$node->safe_psql('postgres', 'ALTER ROLE intruder RESET privacy.access_log_strict');
$node->append_conf('postgresql.conf', "privacy.access_log_flush_interval = '200ms'\n");
$node->reload;
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'the log verifies');

# ---------------------------------------------------------------------------
# (3) a hot standby
# ---------------------------------------------------------------------------
my $standby = PrivacyNode::standby_of($node, $key, 'standby');
my $offset = -s $standby->logfile;
my ($ret) = $standby->psql('postgres', q{SET application_name = 'standby-refusal'; SET privacy.purpose = 'bilin';
SELECT email FROM customers WHERE email = 'customer42@example.org'}, extra_params => ['-U', 'app']);
isnt($ret, 0, 'the standby refuses a misspelled purpose');
my @objs = map { /privacy access: (\{.*\})$/ ? decode_json($1) : () }
  grep { /privacy access: / } split /\n/, slurp_file($standby->logfile, $offset);
my ($stmt) = grep { $_->{kind} eq 'statement' && ($_->{application} // '') eq 'standby-refusal' } @objs;
is_deeply($stmt ? [ map { $stmt->{$_} } qw(command relation purpose outcome reason rows) ] : [],
	[ 'SELECT', 'public.customers', 'bilin', 'denied', 'unknown_purpose', 0 ],
	'the standby wrote the refusal to its server log as JSON, with outcome and reason');
unlike(slurp_file($standby->logfile, $offset), qr/customer42\@example/, 'never the value compared with');
$standby->stop;

$node->stop;
done_testing();
