# Purge and erasure under real conditions.
#
# (1) A purge worker on its schedule (privacy.purge_interval = 1,
# privacy.purge_batch_size = 50): its run is logged with via = 'worker',
# due rows go in batches, recent and held rows stay.  The launcher, its
# workers across databases, dropped databases, settings changed on reload
# and a worker killed mid-purge are test/tap/013_purge_launcher.pl's.
# (2) kill -9 in the middle of CALL privacy.purge(): every committed batch
# stays done and counted, nothing of the batch in flight is gone, the run
# stays 'running' until the next run marks it 'interrupted' and purges the
# rest.  The same after a cancel, in a session that stays connected.
# (3) kill -9 during privacy.erase_subject(), once while it deletes rows and
# once after it has destroyed the key and written its record: nothing of
# the subject is erased (all or nothing); erasing again succeeds.
# (4) A dump taken after the erasure, restored into a fresh cluster with
# the same master key, cannot open the erased subject's values, not even
# copies made in an unprotected table before the erasure.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PrivacyNode;

my %init = (init => { extra => [ '--encoding=UTF8', '--locale=C' ] });

# ---------------------------------------------------------------------------
# (1) A worker on its schedule.
# ---------------------------------------------------------------------------
my ($wnode) = PrivacyNode::new_node('worker', %init);
$wnode->append_conf('postgresql.conf', qq{
privacy.purge_interval = 1
privacy.purge_batch_size = 50
});
$wnode->start;
ok(PrivacyNode::wait_for_log_within($wnode,
		qr/privacy purge launcher: a purge every 1 s in each database where privacy is installed/, 0, 30),
	'launcher: started, purging every second');

# One transaction, so that no worker run sees half of it: 500 due rows of
# subjects 1..500, 20 due rows of subject 9999 under a legal hold, 100
# recent rows.
$wnode->safe_psql('postgres', q{
BEGIN;
CREATE EXTENSION privacy;
CREATE TABLE visits (id bigint PRIMARY KEY, customer_id bigint NOT NULL, visited_at timestamptz NOT NULL);
INSERT INTO visits SELECT g, g, now() - interval '2 years' FROM generate_series(1, 500) g;
INSERT INTO visits SELECT 1000 + g, 9999, now() - interval '2 years' FROM generate_series(1, 20) g;
INSERT INTO visits SELECT 2000 + g, g, now() - interval '1 day' FROM generate_series(1, 100) g;
SELECT privacy.protect_table('visits', 'customer_id');
SELECT privacy.set_retention('visits', 'visited_at', interval '1 year', 'delete');
SELECT privacy.place_hold('9999', 'litigation W-1');
COMMIT;
});
ok($wnode->poll_query_until('postgres',
		q{SELECT EXISTS (SELECT 1 FROM privacy.purge_runs WHERE via = 'worker' AND outcome = 'completed')}),
	'worker: a completed run with via = worker appears');
is($wnode->safe_psql('postgres', q{
SELECT r.outcome, r.batch_size, t.matched, t.purged, t.held, t.batches >= 10
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
 WHERE r.via = 'worker' ORDER BY r.id LIMIT 1}),
	'completed|50|500|500|20|t',
	'worker: its first run matched the 500 due rows and purged them in batches of 50, counting the 20 held');
is($wnode->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE id <= 500), count(*) FILTER (WHERE customer_id = 9999),
       count(*) FILTER (WHERE id > 2000) FROM visits}),
	'0|20|100', 'worker: due rows gone, held and recent rows kept');
$wnode->stop;

# ---------------------------------------------------------------------------
# (2) kill -9 in the middle of a purge.
# ---------------------------------------------------------------------------
my ($node, $key) = PrivacyNode::new_node('crash', %init);
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE purge');
$node->safe_psql('purge', q{
CREATE EXTENSION privacy;
CREATE TABLE events (id bigint PRIMARY KEY, customer_id bigint NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO events SELECT g, g % 1000 + 1, now() - interval '3 years' FROM generate_series(1, 20000) g;
INSERT INTO events SELECT 100000 + g, g, now() - interval '1 hour' FROM generate_series(1, 100) g;
SELECT privacy.protect_table('events', 'customer_id');
SELECT privacy.set_retention('events', 'created_at', interval '1 year', 'delete');
-- half a millisecond per row: a batch of 500 takes a quarter of a second or more
CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.0005); RETURN OLD; END $$;
CREATE TRIGGER slow_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION slow_delete();
});

my $bg = $node->background_psql('purge', on_error_stop => 0);
(my $purge_pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_until(qr/purging/, "\\echo purging\nCALL privacy.purge(batch_size => 500);\n");
# a few batches committed, and the backend inside the next one (in the trigger)
ok($node->poll_query_until('purge', qq{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
                WHERE r.outcome = 'running' AND t.purged >= 1000)
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $purge_pid AND wait_event = 'PgSleep')}),
	'purge: under way, batches committed and the backend inside the next batch');
my $offset = -s $node->logfile;
ok(PrivacyNode::crash_and_restart($node, $purge_pid), 'purge: kill -9 of its backend, the node is back after crash recovery');
eval { $bg->quit };
like(slurp_file($node->logfile, $offset), qr/server process \(PID $purge_pid\) was terminated by signal 9/,
	'purge: the server log shows the backend killed by signal 9');

my ($run1, $outcome1, $purged1, $batches1, $matched1) = split /\|/, $node->safe_psql('purge', q{
SELECT r.id, r.outcome || CASE WHEN r.finished_at IS NULL THEN '' ELSE ' (finished)' END, t.purged, t.batches, t.matched
  FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id ORDER BY r.id});
my $gone1 = 20000 - $node->safe_psql('purge', 'SELECT count(*) FROM events WHERE id <= 20000');
is($outcome1, 'running', 'after the crash: the run is still running (nothing has looked at it yet)');
is($matched1, 20000, 'after the crash: the run had matched 20000 rows');
ok($purged1 >= 1000 && $purged1 < 20000, "after the crash: the run had committed part of the work ($purged1 rows)");
is($gone1, $purged1, 'after the crash: the rows gone are exactly the rows counted as purged (no half batch)');
is($purged1 % 500, 0, 'after the crash: only whole batches of 500 were purged');
is($batches1 * 500, $purged1, 'after the crash: the batch count matches the rows purged');

# The next run: faster without the trigger.
$node->safe_psql('purge', 'DROP TRIGGER slow_delete ON events');
$node->safe_psql('purge', 'CALL privacy.purge(batch_size => 500)');
is($node->safe_psql('purge', qq{
SELECT string_agg(format('%s:%s', CASE WHEN r.id = $run1 THEN 'crashed run' ELSE 'later run' END,
                         r.outcome || CASE WHEN r.finished_at IS NULL THEN '' ELSE ' (finished)' END), ','
                  ORDER BY r.id)
  FROM privacy.purge_runs r}),
	'crashed run:interrupted (finished),later run:completed (finished)',
	'next run: the crashed run is marked interrupted, the new one completed');
is($node->safe_psql('purge', q{
SELECT t.matched || '|' || t.purged FROM privacy.purge_run_tables t
 WHERE t.run_id = (SELECT max(id) FROM privacy.purge_runs)}),
	(20000 - $purged1) . '|' . (20000 - $purged1), 'next run: it matched and purged what was left');
is($node->safe_psql('purge', q{
SELECT (SELECT sum(purged) FROM privacy.purge_run_tables) || '|' || count(*) FILTER (WHERE id <= 20000)
       || '|' || count(*) FILTER (WHERE id > 100000) FROM events}),
	'20000|0|100', 'in all 20000 rows purged, none due left, the recent rows kept');

# A cancelled purge (pg_cancel_backend, or a statement_timeout) in a session
# that stays connected, as pooled sessions do: the next run, from another
# session, marks it interrupted and goes on.
$node->safe_psql('purge', q{
INSERT INTO events SELECT g, g % 1000 + 1, now() - interval '3 years' FROM generate_series(20001, 25000) g;
CREATE TRIGGER slow_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION slow_delete();
});
$bg = $node->background_psql('purge', on_error_stop => 0);
($purge_pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_until(qr/purging/, "\\echo purging\nCALL privacy.purge(batch_size => 500);\n");
ok($node->poll_query_until('purge', qq{
SELECT EXISTS (SELECT 1 FROM privacy.purge_runs r JOIN privacy.purge_run_tables t ON t.run_id = r.id
                WHERE r.outcome = 'running' AND t.purged >= 500)
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $purge_pid AND wait_event = 'PgSleep')}),
	'cancel: a purge under way');
$node->safe_psql('purge', "SELECT pg_cancel_backend($purge_pid)");
ok($node->poll_query_until('purge', "SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $purge_pid"),
	'cancel: the purge was cancelled, its session stays connected and idle');
my $cancelled_run = $node->safe_psql('purge', q{SELECT max(id) FROM privacy.purge_runs});
$node->safe_psql('purge', 'DROP TRIGGER slow_delete ON events');
my ($ret, $out, $err) = $node->psql('purge', 'CALL privacy.purge(batch_size => 500)');
is($ret, 0, 'after a cancel: a purge from another session runs')
  or diag $err;
is($node->safe_psql('purge', qq{
SELECT string_agg(CASE WHEN id = $cancelled_run THEN 'cancelled run' ELSE 'later run' END || ':' || outcome, ',' ORDER BY id)
  FROM privacy.purge_runs WHERE id >= $cancelled_run}),
	'cancelled run:interrupted,later run:completed', 'after a cancel: the next run marks it interrupted and completes');
is($node->safe_psql('purge', 'SELECT count(*) FROM events WHERE id <= 25000'), '0',
	'after a cancel: the next run purged what was left');
eval { $bg->quit };

# ---------------------------------------------------------------------------
# (3) kill -9 during an erasure.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact), closed_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, note privacy.encrypted_text(contact));
CREATE TABLE tickets (id bigint PRIMARY KEY, customer text NOT NULL, body privacy.encrypted_text(contact));
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('tickets', 'customer');
SELECT privacy.set_retention('customers', 'closed_at', interval '1 year', 'anonymize', ARRAY['name', 'email']);
-- a purpose declared: the trigger seals every value under its subject's key
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES (77, 'Xena', 'xena@example.org', NULL), (78, 'Yann', 'yann@example.org', NULL);
INSERT INTO orders SELECT g, CASE WHEN g <= 100 THEN 77 ELSE 78 END, 'order note ' || g FROM generate_series(1, 120) g;
INSERT INTO tickets SELECT g, CASE WHEN g <= 100 THEN '77' ELSE '78' END, 'ticket body ' || g FROM generate_series(1, 110) g;
RESET privacy.purpose;
SELECT privacy.grant_consent('77', 'marketing', 'web-form', '{"ip": "192.0.2.77"}');
SELECT privacy.withdraw_consent('77', 'marketing', 'unsubscribe-link');
SELECT privacy.grant_consent('77', 'marketing', 'phone', '{"agent": "A-12"}');
SELECT privacy.grant_consent('78', 'marketing', 'web-form', '{"ip": "192.0.2.78"}');
-- copies of both subjects' values in an unprotected table, made by a
-- superuser with no purpose: the envelopes as they are
CREATE TABLE copies AS SELECT id, customer_id, note FROM orders;
-- erase_subject goes through the tables in name order: customers, orders,
-- then tickets, where every row takes 10 ms and says so in the log
CREATE FUNCTION slow_ticket_delete() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.01); RAISE LOG 'slow delete of ticket %', OLD.id; RETURN OLD; END $$;
CREATE TRIGGER slow_ticket_delete BEFORE DELETE ON tickets FOR EACH ROW EXECUTE FUNCTION slow_ticket_delete();
});

# Everything of subject 77 (and 78, who must never change), one line each.
my $state_sql = q{
SET privacy.purpose = 'billing';
SELECT 'customer 77: ' || coalesce(string_agg(format('%s|%s|%s', id, name, email), ','), 'none') FROM customers WHERE id = 77;
SELECT 'orders 77: ' || count(*) || ' rows, ' || count(*) FILTER (WHERE note::text = 'order note ' || id) || ' readable' FROM orders WHERE customer_id = 77;
SELECT 'tickets 77: ' || count(*) || ' rows, ' || count(*) FILTER (WHERE body::text = 'ticket body ' || id) || ' readable' FROM tickets WHERE customer = '77';
SELECT 'copies 77: ' || count(*) FILTER (WHERE note::text = 'order note ' || id AND NOT privacy.is_erased(note)) || ' readable, '
       || count(*) FILTER (WHERE note::text = '[erased]' AND privacy.is_erased(note)) || ' erased' FROM copies WHERE customer_id = 77;
SELECT 'key 77: ' || coalesce(string_agg(state || CASE WHEN wrapped_key IS NULL THEN ' (no material)' ELSE '' END, ','), 'none')
  FROM privacy.data_keys WHERE scope = 'subject' AND subject_hash = privacy.subject_hash('77');
SELECT 'erasures: ' || count(*) FROM privacy.erasures;
SELECT 'ledger 77: ' || coalesce(string_agg(format('%s/%s/%s', action, source, evidence), ',' ORDER BY id), 'none')
  FROM privacy.consent_events WHERE subject = '77';
SELECT 'ledger erased: ' || count(*) || ' events, ' || count(evidence) || ' with evidence' FROM privacy.consent_events WHERE subject LIKE 'erased:%';
SELECT 'consent 77: ' || coalesce(string_agg(purpose || '=' || state, ','), 'none') FROM privacy.consents WHERE subject = '77';
SELECT 'subject 78: ' || (SELECT count(*) FILTER (WHERE note::text = 'order note ' || id) FROM orders WHERE customer_id = 78)
       || ' orders, ' || (SELECT count(*) FILTER (WHERE body::text = 'ticket body ' || id) FROM tickets WHERE customer = '78')
       || ' tickets, ' || (SELECT count(*) FILTER (WHERE note::text = 'order note ' || id) FROM copies WHERE customer_id = 78)
       || ' copies readable, ' || (SELECT state FROM privacy.consents WHERE subject = '78') || ', key '
       || (SELECT state FROM privacy.data_keys WHERE scope = 'subject' AND subject_hash = privacy.subject_hash('78'));
};
my $subject_78 = 'subject 78: 20 orders, 10 tickets, 20 copies readable, granted, key active';
my $before = join("\n",
	'customer 77: 77|Xena|xena@example.org',
	'orders 77: 100 rows, 100 readable',
	'tickets 77: 100 rows, 100 readable',
	'copies 77: 100 readable, 0 erased',
	'key 77: active',
	'erasures: 0',
	'ledger 77: grant/web-form/{"ip": "192.0.2.77"},withdraw/unsubscribe-link/,grant/phone/{"agent": "A-12"}',
	'ledger erased: 0 events, 0 with evidence',
	'consent 77: marketing=granted',
	$subject_78);
is($node->safe_psql('app', $state_sql), $before, 'erasure: subject 77 before (rows, values, key, ledger, consent)');
is($node->safe_psql('app', q{
SELECT count(*) FILTER (WHERE k IS DISTINCT FROM (SELECT id FROM privacy.data_keys
                                                  WHERE scope = 'subject' AND subject_hash = privacy.subject_hash('77')))
  FROM (SELECT (privacy.envelope_info(email)).key_id AS k FROM customers WHERE id = 77
        UNION ALL SELECT (privacy.envelope_info(note)).key_id FROM orders WHERE customer_id = 77
        UNION ALL SELECT (privacy.envelope_info(body)).key_id FROM tickets WHERE customer = '77'
        UNION ALL SELECT (privacy.envelope_info(note)).key_id FROM copies WHERE customer_id = 77) v}),
	'0', 'erasure: every value of subject 77, the copies too, is sealed under its subject key');

# Kill while it deletes: customers and orders done, tickets under way.
$bg = $node->background_psql('app', on_error_stop => 0);
(my $erase_pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$offset = -s $node->logfile;
$bg->query_until(qr/erasing/, "\\echo erasing\nSELECT privacy.erase_subject('77', 'request #77');\n");
my $deadline = time() + 60;
usleep(50_000) while PrivacyNode::log_count($node, qr/slow delete of ticket/, $offset) < 30 && time() < $deadline;
ok(PrivacyNode::log_count($node, qr/slow delete of ticket/, $offset) >= 30,
	'erasure: under way, 30 tickets deleted (uncommitted) after customers and orders');
ok(PrivacyNode::crash_and_restart($node, $erase_pid), 'erasure: kill -9 of its backend while it deletes, the node is back');
eval { $bg->quit };
like(slurp_file($node->logfile, $offset), qr/server process \(PID $erase_pid\) was terminated by signal 9/,
	'erasure: the server log shows the backend killed by signal 9');
is($node->safe_psql('app', $state_sql), $before,
	'killed while deleting: nothing of subject 77 was erased (rows, values, key, ledger, consent)');

# Kill after the last step: key destroyed, ledger reduced, record written,
# not yet committed (a trigger on the record waits).
$node->safe_psql('app', q{
DROP TRIGGER slow_ticket_delete ON tickets;
CREATE FUNCTION erasure_recorded() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE LOG 'erasure % recorded, waiting', NEW.id; PERFORM pg_sleep(120); RETURN NULL; END $$;
CREATE TRIGGER erasure_recorded AFTER INSERT ON privacy.erasures FOR EACH ROW EXECUTE FUNCTION erasure_recorded();
});
$bg = $node->background_psql('app', on_error_stop => 0);
($erase_pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$offset = -s $node->logfile;
$bg->query_until(qr/erasing/, "\\echo erasing\nSELECT privacy.erase_subject('77', 'request #77');\n");
ok(PrivacyNode::wait_for_log_within($node, qr/erasure \d+ recorded, waiting/, $offset, 30),
	'erasure: every step done, the record written, not committed');
ok(PrivacyNode::crash_and_restart($node, $erase_pid), 'erasure: kill -9 of its backend before the commit, the node is back');
eval { $bg->quit };
is($node->safe_psql('app', $state_sql), $before,
	'killed before the commit: nothing of subject 77 was erased (rows, values, key, ledger, consent)');

# Erasing again succeeds.
$node->safe_psql('app', 'DROP TRIGGER erasure_recorded ON privacy.erasures; DROP FUNCTION erasure_recorded()');
is($node->safe_psql('app', q{
SELECT concat_ws('|', r #>> '{tables,public.customers,action}', r #>> '{tables,public.customers,rows}',
                 r #>> '{tables,public.orders,action}', r #>> '{tables,public.orders,rows}',
                 r #>> '{tables,public.tickets,action}', r #>> '{tables,public.tickets,rows}',
                 r ->> 'keys_destroyed', r ->> 'consent_events_reduced', r ->> 'reason',
                 r ->> 'subject_hash' = encode(privacy.subject_hash('77'), 'hex'))
  FROM (SELECT privacy.erase_subject('77', 'request #77') AS r) s}),
	'anonymized|1|deleted|100|deleted|100|1|3|request #77|t',
	'erasure: the receipt counts the rows per table, the key and the consent events');
is($node->safe_psql('app', $state_sql), join("\n",
		'customer 77: 77||',    # the row stays, anonymized by its table's rule
		'orders 77: 0 rows, 0 readable',
		'tickets 77: 0 rows, 0 readable',
		'copies 77: 0 readable, 100 erased',
		'key 77: destroyed (no material)',
		'erasures: 1',
		'ledger 77: none',
		'ledger erased: 3 events, 0 with evidence',
		'consent 77: none',
		$subject_78),
	'erasure: subject 77 erased everywhere, copies read [erased], subject 78 untouched');

# ---------------------------------------------------------------------------
# (4) A dump taken after the erasure, restored with the same master key.
# ---------------------------------------------------------------------------
my $dump = $node->basedir . '/app.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'app', '-f', $dump ], 'pg_dump after the erasure (superuser, no purpose)');
my ($rnode) = PrivacyNode::new_node('restored', key => $key, %init);
$rnode->start;
$rnode->safe_psql('postgres', 'CREATE DATABASE app');
$rnode->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'app', $dump ], 'restore into a fresh cluster with the same master key');
is($rnode->safe_psql('app', q{
SET privacy.purpose = 'billing';
SELECT count(*) FILTER (WHERE customer_id = 77 AND note::text = '[erased]' AND privacy.is_erased(note)) || '|'
       || count(*) FILTER (WHERE customer_id = 78 AND note::text = 'order note ' || id AND NOT privacy.is_erased(note)) || '|'
       || count(*) FROM copies}),
	'100|20|120', 'restored: the copies of subject 77 read [erased], those of subject 78 read plaintext');
is($rnode->safe_psql('app', q{
SELECT state || '|' || (wrapped_key IS NULL) FROM privacy.data_keys
 WHERE scope = 'subject' AND subject_hash = privacy.subject_hash('77')}),
	'destroyed|true', 'restored: subject 77 key is there, destroyed, without material');
is($rnode->safe_psql('app', q{
SET privacy.purpose = 'billing';
SELECT count(*) FILTER (WHERE customer_id = 78 AND note::text = 'order note ' || id) || '|' || count(*) FROM orders}),
	'20|20', 'restored: only subject 78 orders are left, readable');

$rnode->stop;
$node->stop;
done_testing();
