# Online protect_table (#14) under a crash and a cancel.
#
# (1) kill -9 of the backend in the middle of CALL privacy.reseal(): every
# committed batch stays done and recorded in privacy.reseal_jobs (its last
# key, its rows), nothing of the batch in flight is; every value reads back
# correctly after crash recovery, the job shows as interrupted, and the
# next CALL goes on from the recorded key, reseals each remaining row once,
# and clears the job.
# (2) A cancelled CALL in a session that stays connected lets go of the
# table: another session resumes and finishes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('reseal', init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');

# 6000 rows of 200 subjects, under the category key; a trigger of the
# owner's that makes each row's update take half a millisecond, so that a
# batch of 500 takes a quarter of a second or more
$node->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE TABLE events (id bigint PRIMARY KEY, customer_id bigint, email privacy.encrypted_text(contact));
SET privacy.purpose = 'billing';
INSERT INTO events SELECT g, g % 200, 'u' || g || '@example.org' FROM generate_series(1, 6000) g;
RESET privacy.purpose;
CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.0005); RETURN NEW; END $$;
CREATE TRIGGER a_slow BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION slow_update();
});
my ($ret, $out, $err) = $node->psql('app', q{SELECT privacy.protect_table('events', 'customer_id')});
is($ret, 0, 'protect_table: done at once');
like($err, qr/holds more than 1000 rows: they are resealed online in batches/, 'protect_table: says the rows are resealed online');
is($node->safe_psql('app', q{SELECT phase || '|' || rows_done FROM privacy.progress_reseal WHERE relid = 'events'::regclass}),
	'waiting|0', 'protect_table: a job waits, nothing done yet');

my $correct = q{SET privacy.purpose = 'billing';
SELECT count(*) || '|' || count(*) FILTER (WHERE email::text = 'u' || id || '@example.org') FROM events};
my $keys = q{SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) FROM events};

# ---------------------------------------------------------------------------
# (1) kill -9 in the middle of the reseal
# ---------------------------------------------------------------------------
my $bg = $node->background_psql('app', on_error_stop => 0);
(my $pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_until(qr/resealing/, "\\echo resealing\nCALL privacy.reseal('events', 500);\n");
ok($node->poll_query_until('app', qq{
SELECT EXISTS (SELECT 1 FROM privacy.progress_reseal WHERE relid = 'events'::regclass AND rows_done >= 1000
                 AND pid = $pid AND phase = 'resealing')
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $pid AND wait_event = 'PgSleep')}),
	'reseal: under way, shown with its pid, batches committed and the backend inside the next one');
ok(PrivacyNode::crash_and_restart($node, $pid), 'reseal: kill -9 of its backend, the node is back after crash recovery');
eval { $bg->quit };

my ($done, $resealed, $batches, $last, $phase, $total) = split /\|/, $node->safe_psql('app', q{
SELECT j.rows_done, j.rows_resealed, j.batches, j.last_key[1], p.phase || coalesce(p.pid::text, ''), j.rows_total
  FROM privacy.reseal_jobs j JOIN privacy.progress_reseal p ON p.relid = j.tbl});
ok($done >= 1000 && $done < 6000, "after the crash: part of the work was committed ($done rows)");
is($done % 500, 0, 'after the crash: whole batches of 500 only');
is($batches * 500, $done, 'after the crash: the batch count matches the rows covered');
is($resealed, $done, 'after the crash: every row covered was resealed');
is($last, $done, 'after the crash: the job records the last key of the last committed batch');
is($total, 6000, 'after the crash: the job counted the table\'s rows');
is($phase, 'interrupted', 'after the crash: the job shows as interrupted, with no process');
is($node->safe_psql('app', $keys), 6000 - $done,
	'after the crash: exactly the rows after the last committed batch are still under the category key');
is($node->safe_psql('app', $correct), '6000|6000', 'after the crash: every value reads back correctly');

# resume, faster without the trigger
$node->safe_psql('app', 'DROP TRIGGER a_slow ON events');
($ret, $out, $err) = $node->psql('app', q{CALL privacy.reseal('events', 500)});
is($ret, 0, 'resume: the next CALL runs') or diag $err;
my @notices = $err =~ /NOTICE:  protect_table events: (\d+) of 6000 rows covered, (\d+) resealed/g;
is($notices[0], $done + 500, 'resume: its first batch starts after the recorded key');
is($notices[-1], 6000, 'resume: it ends with every row resealed once in all (resealed counted across the crash)');
is($notices[-2], 6000, 'resume: and every row covered');
like($err, qr/protect_table events: done/, 'resume: says it is done');
is($node->safe_psql('app', $keys), '0', 'resume: no value left under the category key');
is($node->safe_psql('app', $correct), '6000|6000', 'resume: every value reads back correctly');
is($node->safe_psql('app', q{SELECT count(*) FROM privacy.reseal_jobs}), '0', 'resume: the job is gone');
is($node->safe_psql('app', q{SELECT count(*) FROM privacy.progress_reseal}), '0', 'resume: nothing in progress');
is($node->safe_psql('app', q{SELECT count(DISTINCT (privacy.envelope_info(email)).key_id) FROM events}), '200',
	'resume: the values are under their 200 subjects\' keys');

# ---------------------------------------------------------------------------
# (2) a cancelled CALL
# ---------------------------------------------------------------------------
$node->safe_psql('app', q{
CREATE TABLE visits (id bigint PRIMARY KEY, customer_id bigint, email privacy.encrypted_text(contact));
SET privacy.purpose = 'billing';
INSERT INTO visits SELECT g, g % 50, 'v' || g FROM generate_series(1, 3000) g;
RESET privacy.purpose;
CREATE TRIGGER a_slow BEFORE UPDATE ON visits FOR EACH ROW EXECUTE FUNCTION slow_update();
SET client_min_messages = warning;
SELECT privacy.protect_table('visits', 'customer_id');
});
$bg = $node->background_psql('app', on_error_stop => 0);
($pid = $bg->query_safe('SELECT pg_backend_pid()')) =~ s/\s+//g;
$bg->query_until(qr/resealing/, "\\echo resealing\nCALL privacy.reseal('visits', 500);\n");
ok($node->poll_query_until('app', qq{
SELECT EXISTS (SELECT 1 FROM privacy.progress_reseal WHERE relid = 'visits'::regclass AND rows_done >= 500)
   AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $pid AND wait_event = 'PgSleep')}),
	'cancel: a reseal under way');
$node->safe_psql('app', "SELECT pg_cancel_backend($pid)");
ok($node->poll_query_until('app', "SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $pid"),
	'cancel: the reseal was cancelled, its session stays connected and idle');
is($node->safe_psql('app', q{SELECT phase || '|' || (pid IS NULL) FROM privacy.progress_reseal WHERE relid = 'visits'::regclass}),
	'interrupted|true', 'cancel: the job shows as interrupted, the table let go');
$node->safe_psql('app', 'DROP TRIGGER a_slow ON visits');
($ret, $out, $err) = $node->psql('app', q{CALL privacy.reseal('visits', 500)});
is($ret, 0, 'cancel: another session resumes') or diag $err;
is($node->safe_psql('app', q{SET privacy.purpose = 'billing';
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) || '|'
       || count(*) FILTER (WHERE email::text = 'v' || id) FROM visits}),
	'0|3000', 'cancel: the resumed reseal finished, every value correct');
is($node->safe_psql('app', q{SELECT count(*) FROM privacy.reseal_jobs}), '0', 'cancel: no job left');
eval { $bg->quit };

$node->stop;
done_testing();
