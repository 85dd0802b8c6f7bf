# The purge launcher and its workers, across the databases of a cluster.
#
# (1) Three databases, two with the extension (crm, billing) and one
# without (plain), plus a template and a database closed to connections
# that hold due rows: once purges are on, crm and billing are purged by
# workers (via = 'worker', one log line each with the rows and the next
# time), plain gets no log line at all, the template and the closed
# database are never entered (their rows stay, CREATE DATABASE from
# template1 never finds anyone connected to it).
# (2) Databases created and dropped while the launcher runs: one created
# later is purged too; one dropped between visits leaves no trace in the
# log; DROP DATABASE and ALTER DATABASE ... RENAME of a database whose
# purge is under way succeed at once, the worker stopped (the command
# would otherwise fail after 5 s: "being accessed by other users").
# (3) A worker killed with SIGKILL in the middle of a purge: after crash
# recovery the next worker marks the run interrupted and purges the rest;
# every row due is gone once, none counted twice.
# (4) A purge that fails (a user's trigger raises an error quoting a
# customer's e-mail): a WARNING naming the run, nothing of the error text
# in the log; the error is in privacy.purge_runs; retried later.
# (5) privacy.purge_workers = 1: never two purges at once.  The deprecated
# privacy.worker_database is warned about.  Purges off on reload.
# (6) Without the master key, the launcher says once that it does not
# purge, and does not.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PrivacyNode;

my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });

# A database with the extension, a protected table of customers with
# $due rows past a one-year retention and 10 recent ones; $slow makes each
# deleted row take a millisecond.  All in one transaction.
sub customers_db
{
	my ($node, $db, $due, %opt) = @_;
	my $slow = $opt{slow} ? q{
CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN OLD; END $$;
CREATE TRIGGER slow_delete BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION slow_delete();
} : '';
	$node->safe_psql('postgres', 'CREATE DATABASE ' . $db . ' ' . ($opt{create_options} // '')) unless $opt{exists};
	$node->safe_psql($db, qq{
BEGIN;
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact), joined_at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'customer' || g || '\@$db.example', now() - interval '3 years' FROM generate_series(1, $due) g;
INSERT INTO customers SELECT 100000 + g, 'recent' || g || '\@$db.example', now() - interval '1 day' FROM generate_series(1, 10) g;
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.set_retention('customers', 'joined_at', interval '1 year', 'delete');
$slow
COMMIT;
});
}

sub worker_runs
{
	my ($node, $db, $where) = @_;
	$where //= "outcome = 'completed'";
	return $node->safe_psql($db, "SELECT count(*) FROM privacy.purge_runs WHERE via = 'worker' AND $where");
}

# ---------------------------------------------------------------------------
# (1) Three databases, a template, a closed one.
# ---------------------------------------------------------------------------
my ($node) = PrivacyNode::new_node('launcher', %init);
# room for the launcher, two workers and an access log writer in each of
# the databases the purges write to (the default of 8 is for one database)
$node->append_conf('postgresql.conf', qq{
privacy.purge_interval = 0
privacy.purge_batch_size = 100
max_worker_processes = 16
});
$node->start;
ok(PrivacyNode::wait_for_log_within($node,
		qr/privacy purge launcher: purges are off \(privacy\.purge_interval = 0\)/, 0, 30),
	'off: the launcher says so');
is($node->safe_psql('postgres',
		q{SELECT string_agg(coalesce(datname, '-') || '/' || application_name, ',') FROM pg_stat_activity WHERE backend_type = 'privacy purge launcher'}),
	'-/privacy purge launcher', 'one launcher in pg_stat_activity, connected to no database');

customers_db($node, 'crm', 300);
customers_db($node, 'billing', 200);
$node->safe_psql('postgres', 'CREATE DATABASE plain');
$node->safe_psql('plain', 'CREATE TABLE customers (id bigint, joined_at timestamptz)');
customers_db($node, 'tmpl', 50, create_options => 'IS_TEMPLATE true');
customers_db($node, 'closed', 50);
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS false');

my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "privacy.purge_interval = 1\n");
$node->reload;
ok(PrivacyNode::wait_for_log_within($node,
		qr/privacy purge launcher: a purge every 1 s in each database where privacy is installed, at most 2 at a time/, $offset, 30),
	'on: the launcher says how often and how many at a time');
for my $db ([ 'crm', 300 ], [ 'billing', 200 ])
{
	my ($name, $due) = @$db;
	ok($node->poll_query_until($name, q{SELECT EXISTS (SELECT 1 FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'completed')}),
		"$name: a worker run completed");
	is($node->safe_psql($name, q{
SELECT r.started_by, t.matched, t.purged, t.batches >= 3
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
 WHERE r.via = 'worker' ORDER BY r.id LIMIT 1}),
		"postgres|$due|$due|t", "$name: its first run purged the $due due rows in batches of 100");
	is($node->safe_psql($name, 'SELECT count(*) FROM customers'), '10', "$name: only the recent rows are left");
	ok(PrivacyNode::wait_for_log_within($node,
			qr/LOG:  privacy purge in database "$name": $due rows purged in 1 table \(run \d+, [\d.]+ s\); next at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/,
			$offset, 10),
		"$name: the log line says the database, the rows, the run and the next time");
}
# let the launcher come back a few times
ok($node->poll_query_until('crm', q{SELECT count(*) >= 3 FROM privacy.purge_runs WHERE via = 'worker'}),
	'crm: purged again each interval');
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/"plain"|database plain|ERROR|FATAL/, 'plain (no extension): not a word in the log, no error anywhere');
is($node->safe_psql('tmpl', 'SELECT count(*) FROM customers'), '60', 'the template database is never purged');
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS true');
is($node->safe_psql('closed', 'SELECT count(*) FROM customers'), '60', 'the database closed to connections was never purged');
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS false');
unlike($log, qr/customer\d+\@/, 'no e-mail address of a customer in the log');

# CREATE DATABASE copies template1 and refuses while anyone is connected to
# it: the launcher never is.  New databases come and go under its eyes.
my $create_errors = '';
for my $i (1 .. 15)
{
	my ($ret, $out, $err) = $node->psql('postgres', "CREATE DATABASE churn$i");
	$create_errors .= $err if $ret;
	usleep(100_000);
	($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE churn$i");
	$create_errors .= $err if $ret;
}
is($create_errors, '', 'CREATE DATABASE from template1 and DROP DATABASE, 15 times while the launcher runs: no error');

# ---------------------------------------------------------------------------
# (2) Created and dropped while the launcher runs.
# ---------------------------------------------------------------------------
customers_db($node, 'late', 120);
ok($node->poll_query_until('late', q{SELECT count(*) = 10 FROM customers}),
	'late: a database created while the launcher runs is purged too');

# Dropped while the launcher runs (and, with a purge every second, maybe
# while a worker is in it): the launcher goes on with the others.  A worker
# stopped for the DROP, or one that was starting in it, may leave a FATAL
# line saying so; nothing else.
$offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE billing');
my $crm_runs = worker_runs($node, 'crm');
ok($node->poll_query_until('crm', qq{SELECT count(*) > $crm_runs + 1 FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'completed'}),
	'billing dropped: the launcher goes on with crm');
$log = slurp_file($node->logfile, $offset);
unlike($log, qr/ERROR|WARNING/, 'billing dropped: no error or warning in the log');
is_deeply([ grep { !/terminating background worker "privacy purge worker" due to administrator command|database \d+ does not exist/ }
			($log =~ /FATAL:  (.*)/g) ], [], 'billing dropped: no other FATAL line');

# A purge under way (a millisecond per row, 3000 rows): DROP DATABASE
# stops its worker and succeeds at once.
customers_db($node, 'doomed', 3000, slow => 1);
ok($node->poll_query_until('postgres', q{
SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'privacy purge worker' AND datname = 'doomed' AND wait_event = 'PgSleep')}),
	'doomed: its purge is under way');
$offset = -s $node->logfile;
my $t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE doomed');
my $took = time() - $t0;
is($ret, 0, 'DROP DATABASE of a database being purged succeeds') or diag($err);
cmp_ok($took, '<', 4, 'and does not wait for the purge (CountOtherDBBackends would give up after 5 s)');
like(slurp_file($node->logfile, $offset),
	qr/privacy: stopping the purge worker in database "doomed" \(PID \d+\) for DROP DATABASE/,
	'the log says the purge worker was stopped for DROP DATABASE');

customers_db($node, 'renamed', 3000, slow => 1);
ok($node->poll_query_until('postgres', q{
SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'privacy purge worker' AND datname = 'renamed' AND wait_event = 'PgSleep')}),
	'renamed: its purge is under way');
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE renamed RENAME TO renamed_now');
is($ret, 0, 'ALTER DATABASE ... RENAME of a database being purged succeeds') or diag($err);
ok($node->poll_query_until('renamed_now', q{SELECT count(*) = 10 FROM customers}),
	'renamed: the next purge, under the new name, purges the rest');
# (the next run's last batch commits before purge_finish: wait for it)
ok($node->poll_query_until('renamed_now', q{SELECT string_agg(outcome, ',' ORDER BY id) FROM (SELECT id, outcome FROM privacy.purge_runs ORDER BY id LIMIT 2) r},
	'interrupted,completed'), 'renamed: the stopped run is marked interrupted by the next');
$node->safe_psql('postgres', 'DROP DATABASE renamed_now');

# ---------------------------------------------------------------------------
# (3) SIGKILL in the middle of a purge.
# ---------------------------------------------------------------------------
customers_db($node, 'killme', 2000, slow => 1);
ok($node->poll_query_until('killme', q{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
                WHERE r.outcome = 'running' AND t.purged >= 300)
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'privacy purge worker'
                  AND datname = current_database() AND wait_event = 'PgSleep')}),
	'killme: batches committed, the worker inside the next one');
my $victim = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'privacy purge worker' AND datname = 'killme'});
$offset = -s $node->logfile;
ok(PrivacyNode::crash_and_restart($node, $victim), 'killme: kill -9 of the purge worker, the node is back after crash recovery');
like(slurp_file($node->logfile, $offset), qr/background worker "privacy purge worker" \(PID $victim\) was terminated by signal 9/,
	'the server log shows the worker killed by signal 9');
ok($node->poll_query_until('killme', q{SELECT (SELECT count(*) FROM customers) = 10
   AND EXISTS (SELECT 1 FROM privacy.purge_runs WHERE outcome = 'completed')}),
	'killme: after the restart a worker purges the rest, and its run completes');
is($node->safe_psql('killme', q{
SELECT string_agg(r.outcome, ',' ORDER BY r.id), sum(t.purged)
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
 WHERE r.id IN (SELECT id FROM privacy.purge_runs ORDER BY id LIMIT 2)}),
	'interrupted,completed|2000',
	'killme: the killed run is interrupted, the next completed; 2000 rows purged in all, none twice');
is($node->safe_psql('killme', q{SELECT t.matched FROM privacy.purge_run_tables t ORDER BY t.run_id LIMIT 1}), '2000',
	'killme: the killed run had matched the 2000 due rows');

# ---------------------------------------------------------------------------
# (4) A purge that fails, with personal data in the error.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE failing');
$node->safe_psql('failing', q{
BEGIN;
CREATE EXTENSION privacy;
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, joined_at timestamptz NOT NULL);
INSERT INTO customers VALUES (1, 'zelda.secret@example.org', now() - interval '3 years');
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'customer % may not go', OLD.email; END $$;
CREATE TRIGGER refuse BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION refuse();
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.set_retention('customers', 'joined_at', interval '1 year', 'delete');
COMMIT;
});
$offset = -s $node->logfile;
ok(PrivacyNode::wait_for_log_within($node,
		qr/WARNING:  privacy purge in database "failing" failed \(run 1\): 0 rows purged before the failure; next attempt at /, $offset, 30),
	'failing: a WARNING names the database and the run');
is($node->safe_psql('failing', q{SELECT r.error || ' / ' || t.error FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id WHERE r.id = 1}),
	'1 of 1 tables failed: public.customers / P0001: raised in a function of the table\'s owner (its message is not kept)',
	'failing: the failed table and its error are recorded in the run, without the message that quotes the customer');
ok($node->poll_query_until('failing', q{SELECT count(*) >= 2 FROM privacy.purge_runs WHERE outcome = 'failed'}),
	'failing: retried');
unlike(slurp_file($node->logfile, $offset), qr/zelda/, 'failing: the customer in the error is not in the server log');
$node->safe_psql('postgres', 'DROP DATABASE failing');

# ---------------------------------------------------------------------------
# (5) One at a time; the deprecated setting; off on reload.
# ---------------------------------------------------------------------------
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "privacy.purge_workers = 1\nprivacy.worker_database = 'crm'\n");
$node->reload;
ok(PrivacyNode::wait_for_log_within($node,
		qr/privacy purge launcher: a purge every 1 s in each database where privacy is installed, at most 1 at a time/, $offset, 30),
	'purge_workers = 1: the launcher says so');
like(slurp_file($node->logfile, $offset),
	qr/WARNING:  privacy.worker_database is no longer used\n.*DETAIL:  The purge launcher serves every database where the extension is installed\./,
	'privacy.worker_database: warned about, not used');
customers_db($node, 'one', 1500, slow => 1);
customers_db($node, 'two', 1500, slow => 1);
my $most = 0;
my $deadline = time() + 60;
while (time() < $deadline)
{
	my $n = $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'privacy purge worker'});
	$most = $n if $n > $most;
	last if $node->safe_psql('postgres', q{SELECT count(*) FROM pg_database WHERE datname IN ('one', 'two')}) eq '2'
	  && $node->safe_psql('one', 'SELECT count(*) FROM customers') eq '10'
	  && $node->safe_psql('two', 'SELECT count(*) FROM customers') eq '10';
	usleep(50_000);
}
is($node->safe_psql('one', 'SELECT count(*) FROM customers') . '/' . $node->safe_psql('two', 'SELECT count(*) FROM customers'),
	'10/10', 'purge_workers = 1: both databases purged');
is($most, 1, 'purge_workers = 1: never two purge workers at once');

$node->append_conf('postgresql.conf', "privacy.purge_interval = 0\n");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT current_setting('privacy.purge_interval') = '0'}), 'reload: purge_interval is 0');
$node->poll_query_until('postgres', q{SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'privacy purge worker')});
$crm_runs = worker_runs($node, 'crm', 'true');
usleep(3_000_000);
is(worker_runs($node, 'crm', 'true'), $crm_runs, 'purge_interval = 0: no worker run within 3 s');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'privacy purge launcher'}),
	'1', 'purge_interval = 0: the launcher stays, idle');
$node->stop;

# ---------------------------------------------------------------------------
# (6) No master key.
# ---------------------------------------------------------------------------
my ($keyless) = PrivacyNode::new_node('keyless', %init);
$keyless->append_conf('postgresql.conf', "privacy.purge_interval = 0\n");
$keyless->start;
customers_db($keyless, 'crm', 20);
$keyless->append_conf('postgresql.conf', "privacy.purge_interval = 1\n");
PrivacyNode::set_key_command($keyless, 'false');
ok(PrivacyNode::wait_for_log_within($keyless,
		qr/WARNING:  privacy purge launcher: no purges, because the privacy master key is not available/, 0, 30),
	'no key: the launcher says once that it does not purge');
usleep(3_000_000);
is($keyless->safe_psql('crm', q{SELECT count(*) FROM customers}) . '/'
	. PrivacyNode::log_count($keyless, qr/no purges, because the privacy master key/),
	'30/1', 'no key: the due rows stay, and the warning is said once');
$keyless->stop;

done_testing();
