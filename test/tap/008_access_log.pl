# The access log outside the happy path.
#
# (1) Events survive the reader's rollback and a read-only transaction.
# (2) kill -9 of a reading backend (the whole server restarts): the events
#     of statements completed more than one flush interval earlier are in
#     the log afterwards; in strict mode, those of every completed statement.
# (3) Back-pressure: with the writer blocked, a backend that fills the queue
#     waits (wait event Extension) instead of dropping events, and every one
#     of them is in the log once the writer goes on.
# (4) A streaming hot standby, where nothing can be written, logs the same
#     fields as one JSON object per server-log line.
# (5) Tampering with the table is found by verify_access_log().
# (6) The end of the log survives a restart: after kill -9, batch rows cut
#     off the end, or the batch table replaced without them, are reported
#     missing from their first entry; what a superuser who also puts back
#     an older copy of the head can do is the bound doc/dba.md states; a
#     head deleted leaves a break that stays reported.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use PrivacyNode;

my ($node, $key) = PrivacyNode::access_log_node('log');

# count the log's statement events for one application name
sub events
{
	my ($app, $extra) = @_;
	$extra //= '';
	$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM privacy.access_log WHERE application = '$app' $extra");
}

# ---------------------------------------------------------------------------
# (1) rollback, read-only
# ---------------------------------------------------------------------------
$node->psql('postgres', q{
SET application_name = 'rollback';
BEGIN; SELECT email FROM customers WHERE id = 1; ROLLBACK;
BEGIN; SELECT email FROM customers WHERE id = 2; SELECT 1/0; COMMIT;
BEGIN READ ONLY; SELECT email FROM customers WHERE id = 3; COMMIT;
}, extra_params => ['-U', 'app'], on_error_stop => 0);
is(events('rollback'), 3, 'reads in a rolled-back, an aborted and a read-only transaction are all logged');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM privacy.access_log_subjects s JOIN privacy.access_log l ON l.seq = s.event
 WHERE l.application = 'rollback'}), 3, 'with the subject each of them opened');

# ---------------------------------------------------------------------------
# (2) kill -9 of a reader
# ---------------------------------------------------------------------------
sub crash_after_read
{
	my ($app, $wait) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0, extra_params => ['-U', 'app']);
	(my $pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
	$bg->query_safe("SET application_name = '$app'");
	$bg->query_safe('SELECT email FROM customers WHERE id = 7');
	$bg->query_safe('SELECT email FROM customers WHERE id = 8');
	select(undef, undef, undef, $wait);
	ok(PrivacyNode::crash_and_restart($node, $pid), "$app: kill -9 of the reader, the node is back");
	eval { $bg->quit };
}

# Not strict: two statements completed, then more than one flush interval.
crash_after_read('crash-bound', 0.6);
is(events('crash-bound'), 2,
	'after kill -9, statements completed more than one flush interval earlier are in the log');

# Strict, with a flush interval far longer than the wait before the kill.
$node->append_conf('postgresql.conf', "privacy.access_log_flush_interval = '1s'\n");
$node->safe_psql('postgres', 'ALTER ROLE app SET privacy.access_log_strict = on');
$node->reload;
crash_after_read('crash-strict', 0.0);
is(events('crash-strict'), 2, 'strict mode: every completed statement is in the log after kill -9');
$node->safe_psql('postgres', 'ALTER ROLE app RESET privacy.access_log_strict');
$node->append_conf('postgresql.conf', "privacy.access_log_flush_interval = '200ms'\n");
$node->reload;
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok',
	'the log verifies after the crashes');

# ---------------------------------------------------------------------------
# (3) back-pressure
# ---------------------------------------------------------------------------
my $blocker = $node->background_psql('postgres', on_error_stop => 0);
$blocker->query_safe('BEGIN; LOCK privacy.access_log_batches IN ACCESS EXCLUSIVE MODE');
my $reader = $node->background_psql('postgres', on_error_stop => 0, extra_params => ['-U', 'app']);
(my $rpid = $reader->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$reader->query_safe("SET application_name = 'pressure'");
# 5000 statements of about 230 bytes of events each (a statement, a subject):
# more than twice the 512 kB queue
$reader->query_until(qr/started/, q{\echo started
DO $$ BEGIN FOR i IN 1..5000 LOOP PERFORM email::text FROM customers WHERE id = 1 + i % 100; END LOOP; END $$;
\echo finished
});
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $rpid"),
	'a full queue makes the reader wait, with wait event type Extension');
my $queued = $node->safe_psql('postgres', 'SELECT queued_bytes FROM privacy.access_log_status()');
cmp_ok($queued, '>', 400 * 1024, "the queue is full while it waits ($queued bytes)");
$blocker->query_safe('COMMIT');
$reader->query_until(qr/finished/, '');
is(events('pressure'), 5000, 'once the writer goes on, all 5000 statement events are in the log: none dropped');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM privacy.access_log_subjects s JOIN privacy.access_log l ON l.seq = s.event
 WHERE l.application = 'pressure'}), 5000, 'and their 5000 subject entries');
$reader->quit;
$blocker->quit;

# ---------------------------------------------------------------------------
# (4) a hot standby logs JSON lines
# ---------------------------------------------------------------------------
my $standby = PrivacyNode::standby_of($node, $key, 'standby');
my $offset = -s $standby->logfile;
is($standby->safe_psql('postgres', q{SET application_name = 'on-standby';
SELECT email FROM customers WHERE id = 42}, extra_params => ['-U', 'app']),
	'customer42@example.org', 'the standby reads with a purpose');
my @lines = grep { /privacy access: / } split /\n/, slurp_file($standby->logfile, $offset);
my @objs = map { /privacy access: (\{.*\})$/ ? decode_json($1) : () } @lines;
my ($stmt) = grep { $_->{kind} eq 'statement' } @objs;
ok($stmt, 'the standby wrote the statement event to its server log');
is_deeply([ map { $stmt->{$_} } qw(command relation purpose acting_role application outcome rows) ],
	[ 'SELECT', 'public.customers', 'billing', 'app', 'on-standby', 'completed', 1 ],
	'as JSON with the same fields as the table');
is_deeply($stmt->{columns}, ['email'], 'the personal columns it touched');
my ($subj) = grep { $_->{kind} eq 'subjects' } @objs;
my $hash = $node->safe_psql('postgres', q{SELECT encode(privacy.subject_hash('42'), 'hex')});
ok($subj && $subj->{subjects}[0]{subject_hash} eq $hash && $subj->{subjects}[0]{opened} == 1,
	'and the subject whose value it opened, by keyed hash');
unlike(slurp_file($standby->logfile, $offset), qr/customer42\@example/, 'never the value itself');
$standby->stop;

# ---------------------------------------------------------------------------
# (5) tampering
# ---------------------------------------------------------------------------
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'the log verifies');
# The entries are stored packed in privacy.access_log_batches: flip one bit
# of an entry (the last byte before its MAC), then delete a whole batch row.
my $first = $node->safe_psql('postgres',
	q{SELECT min(seq) FROM privacy.access_log WHERE application = 'pressure'});
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM privacy.access_log_batches'), '>', 1,
	'the writer stored the entries in several batch rows');
$node->safe_psql('postgres', 'CREATE TABLE saved_batches AS SELECT * FROM privacy.access_log_batches');
$node->safe_psql('postgres', qq{
UPDATE privacy.access_log_batches b SET entries = set_byte(b.entries, x.p - 2, get_byte(b.entries, x.p - 2) # 1)
  FROM (SELECT position(l.mac IN c.entries) AS p, c.first_seq
          FROM privacy.access_log l, privacy.access_log_batches c
         WHERE l.seq = $first AND $first BETWEEN c.first_seq AND c.last_seq) x
 WHERE b.first_seq = x.first_seq});
is($node->safe_psql('postgres', 'SELECT status || seq FROM privacy.verify_access_log()'), "altered$first",
	'a changed byte in a batch row is found, at its entry');
$node->safe_psql('postgres', q{DELETE FROM privacy.access_log_batches;
INSERT INTO privacy.access_log_batches SELECT * FROM saved_batches});
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'restored, it verifies');
my $gone = $node->safe_psql('postgres', qq{DELETE FROM privacy.access_log_batches
  WHERE first_seq = (SELECT min(first_seq) FROM privacy.access_log_batches WHERE first_seq > $first)
  RETURNING first_seq});
is($node->safe_psql('postgres', 'SELECT status || seq FROM privacy.verify_access_log()'), "missing$gone",
	'a batch row DELETEd by a superuser is found, at its first entry');

# ---------------------------------------------------------------------------
# (6) the end of the log, after a restart
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{DELETE FROM privacy.access_log_batches;
INSERT INTO privacy.access_log_batches SELECT * FROM saved_batches});
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'restored again, it verifies');

# read, so that the log ends with a batch of its own
sub read_one
{
	my ($app, $id) = @_;
	$node->safe_psql('postgres', "SET application_name = '$app'; SELECT email FROM customers WHERE id = $id",
		extra_params => ['-U', 'app']);
	$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');
}
sub last_batch
{
	return $node->safe_psql('postgres', 'SELECT max(first_seq) FROM privacy.access_log_batches');
}
sub verdict
{
	return $node->safe_psql('postgres', 'SELECT status || seq FROM privacy.verify_access_log()');
}
sub crash
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	(my $pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
	my $up = PrivacyNode::crash_and_restart($node, $pid);
	eval { $bg->quit };
	return $up;
}

read_one('tail', 9);
my $tail = last_batch();
ok(crash(), 'kill -9 of a backend: the server restarts, its shared memory is new');
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'after the restart the log verifies');
$node->safe_psql('postgres', "CREATE TABLE tail_batch AS SELECT * FROM privacy.access_log_batches WHERE first_seq = $tail;
DELETE FROM privacy.access_log_batches WHERE first_seq = $tail");
is(verdict(), "missing$tail", 'after the restart, the last batch row deleted is found, at its first entry');
read_one('tail-after', 10);
is(verdict(), "missing$tail", 'and still, once the writer has gone on after it (from the head, not from the cut)');
$node->safe_psql('postgres', 'INSERT INTO privacy.access_log_batches SELECT * FROM tail_batch');
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok',
	'the batch put back, the log is whole again: nothing was written in its place');

# The batch table replaced by one without its last batch, after a restart.
read_one('replaced', 11);
$tail = last_batch();
$node->restart;
$node->safe_psql('postgres', qq{
ALTER TABLE privacy.access_log_batches RENAME TO access_log_batches_old;
CREATE TABLE privacy.access_log_batches (LIKE privacy.access_log_batches_old INCLUDING ALL);
INSERT INTO privacy.access_log_batches SELECT * FROM privacy.access_log_batches_old WHERE first_seq < $tail});
is(verdict(), "missing$tail", 'after a restart, a batch table recreated without its last batch is found');
$node->safe_psql('postgres', q{DROP TABLE privacy.access_log_batches;
ALTER TABLE privacy.access_log_batches_old RENAME TO access_log_batches});
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok', 'the original table back, it verifies');

# The bound: a superuser who keeps a copy of the head, and later cuts the
# log back to it and puts the copy back.  While the server runs, the
# writer's shared memory still knows the end; after a restart nothing in
# the database does, but a copy of the head kept outside it does.
$node->safe_psql('postgres', 'CREATE TABLE head_copy AS SELECT * FROM privacy.access_log_head');
my $copied = $node->safe_psql('postgres', 'SELECT last_seq FROM head_copy');
read_one('after-copy', 12);
my ($outside_seq, $outside_mac) = split /\|/, $node->safe_psql('postgres',
	q{SELECT last_seq, encode(mac, 'hex') FROM privacy.access_log_head});
cmp_ok($outside_seq, '>', $copied, 'the head moved on after the copy');
# the check a compliance team runs with the head it recorded elsewhere
sub recorded_head_in_log
{
	return $node->safe_psql('postgres', qq{SELECT count(*) FROM (
	SELECT seq, mac FROM privacy_internal.access_log_event($outside_seq)
	UNION ALL SELECT seq, mac FROM privacy.access_log_subjects WHERE seq = $outside_seq) e
 WHERE e.mac = '\\x$outside_mac'});
}
is(recorded_head_in_log(), '1', 'the head recorded outside the database is in the log');
# (with the trail rows of the entries cut: verify_access_log() checks the
# trail against the batches, and would report the rows left behind)
$node->safe_psql('postgres', qq{DELETE FROM privacy.access_log_batches WHERE first_seq > $copied;
DELETE FROM privacy.access_log_trail WHERE seq > $copied;
DELETE FROM privacy.access_log_head; INSERT INTO privacy.access_log_head SELECT * FROM head_copy});
is(verdict(), 'missing' . ($copied + 1), 'cut back to an old copy of the head: found while the server runs');
$node->restart;
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok',
	'after a restart, a log cut back to an old copy of its head verifies (the stated bound)');
is(recorded_head_in_log(), '0', 'but the head recorded outside the database is no longer in the log');

# The head row deleted, across a restart: the writer cannot know where the
# log ended, goes on after the batches and records the break in the head.
my $end = $node->safe_psql('postgres', 'SELECT max(last_seq) FROM privacy.access_log_batches');
$node->safe_psql('postgres', 'DELETE FROM privacy.access_log_head');
$node->restart;
my $log_offset = -s $node->logfile;
read_one('head-gone', 13);
is(verdict(), 'missing' . ($end + 1),
	'the head deleted: reported at the first entry the writer wrote after finding it gone');
is($node->safe_psql('postgres', 'SELECT broken_at FROM privacy.access_log_head'), $end + 1,
	'the new head carries the break, under its seal');
ok(PrivacyNode::log_count($node, qr/WARNING:  the head of the access log is missing, fails authentication or is older than the log/, $log_offset) >= 1,
	'and the writer said so in the server log');
read_one('head-gone-2', 14);
$node->restart;
is(verdict(), 'missing' . ($end + 1), 'the break stays reported, after more entries and a restart');

$node->stop;
done_testing();
