# New subjects' keys are written in batches (issue #14): a COPY of new
# subjects draws each key at once and writes 4,096 of them with one INSERT,
# mid-statement and at its end.  What that leaves behind when the COPY does
# not commit, and when two sessions create a key for the same subject.
#
#   - a COPY rolled back (whole, to a savepoint, or by an error in its last
#     row) after batches were written leaves no key row, and the same
#     subjects copied again get keys that open their values;
#   - a backend killed in the middle of a COPY (crash recovery): the keys
#     of the rows committed before are there and open every value, the
#     interrupted COPY left neither rows nor keys, and copying it again
#     works;
#   - two sessions creating the same subject's key at once: one active key
#     (the later one stored as retired, since a value was already sealed
#     with it), every value opens, and erasure destroys both;
#   - the rows a batch writes straight into the key table (no INSERT
#     statement, keys_data.c) are what the INSERT wrote: every column, the
#     table's CHECK constraints hold, and its indexes find them; a trigger an
#     administrator put on the key table makes the batch an INSERT again,
#     and fires for every key.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('batchkeys');
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
CREATE TABLE orders (id bigint PRIMARY KEY, customer bigint NOT NULL, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('orders', 'customer');
});

# a COPY file of rows FROM..TO, one new customer a row; $bad appends a
# malformed last row
sub copy_file
{
	my ($name, $from, $to, $bad) = @_;
	my $file = $node->basedir . "/$name.txt";
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh "$_\t$_\tc$_\@example.org\n" for $from .. $to;
	print $fh "not a number\t1\tx\n" if $bad;
	close $fh;
	return $file;
}

my $subject_keys = "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'";
# rows of customers FROM..TO that read back, / rows, / their active keys
sub readable
{
	my ($from, $to) = @_;
	return $node->safe_psql('postgres', "SET privacy.purpose = 'service';
SELECT count(*) FILTER (WHERE email::text = 'c' || customer || '\@example.org') || '/' || count(*) || '/' ||
       (SELECT count(*) FROM privacy.data_keys k WHERE k.scope = 'subject' AND k.state = 'active'
           AND k.subject_hash IN (SELECT privacy.subject_hash(g::text) FROM generate_series($from, $to) g))
  FROM orders WHERE customer BETWEEN $from AND $to");
}

# --- rollback ---------------------------------------------------------------------
my $f1 = copy_file('first', 1, 10000);
is( $node->safe_psql('postgres', "SET privacy.purpose = 'service';
BEGIN;
COPY orders FROM '$f1';
$subject_keys;
ROLLBACK;
$subject_keys;"),
	"10000\n0",
	'a COPY of 10,000 new subjects wrote its keys in batches inside its transaction, and its rollback left none');
is(readable(1, 10000), '0/0/0', 'nothing of the rolled-back COPY is left');

is( $node->safe_psql('postgres', "SET privacy.purpose = 'service';
BEGIN;
SAVEPOINT s;
COPY orders FROM '$f1';
ROLLBACK TO SAVEPOINT s;
COPY orders FROM '" . copy_file('second', 10001, 15000) . "';
COMMIT;
$subject_keys;"),
	'5000',
	'a COPY rolled back to a savepoint leaves no key; the COPY after it keeps its 5,000');
is(readable(10001, 15000), '5000/5000/5000', 'every value of the COPY after the savepoint opens, one key a subject');

my ($rc, $out, $err) = $node->psql('postgres', "SET privacy.purpose = 'service';
COPY orders FROM '" . copy_file('bad', 20001, 29000, 1) . "';");
like($err, qr/invalid input syntax for type bigint/, 'a COPY whose last row is malformed fails');
is($node->safe_psql('postgres', $subject_keys), '5000', 'it left no key of its 9,000 subjects (two batches were written)');

# the same subjects again, in the same session after the failure
($rc, $out, $err) = $node->psql('postgres', "SET privacy.purpose = 'service';
COPY orders FROM '" . copy_file('bad', 20001, 29000, 1) . "';
COPY orders FROM '$f1';
$subject_keys;", on_error_stop => 0);
is($out, '15000', 'after a failed COPY the same session copies new subjects');
is(readable(1, 10000), '10000/10000/10000', 'and every value opens, under one key a subject');

# --- a backend killed in the middle of a COPY -----------------------------------------
my $session = PrivacyNode::open_session($node, 'postgres');
my $pid = PrivacyNode::session_query($session, "SET privacy.purpose = 'service'; SELECT pg_backend_pid();");
my $big = copy_file('big', 100001, 400000);
$session->query_until(qr/started/, "\\echo started\nCOPY orders FROM '$big';\n");
ok( $node->poll_query_until('postgres',
		"SELECT tuples_processed > 20000 FROM pg_stat_progress_copy WHERE pid = $pid"),
	'the COPY of 300,000 new subjects is under way (batches written)');
ok(PrivacyNode::crash_and_restart($node, $pid), 'the backend killed, the server recovered');
eval { $session->quit };

is(readable(1, 15000), '15000/15000/15000', 'after the crash every committed value opens under its key');
is( $node->safe_psql('postgres', "$subject_keys; SELECT count(*) FROM orders WHERE customer > 100000"),
	"15000\n0", 'the interrupted COPY left neither keys nor rows');
$node->safe_psql('postgres', "SET privacy.purpose = 'service'; COPY orders FROM '$big';");
is(readable(100001, 400000), '300000/300000/300000', 'copied again after the crash, every value opens, one key a subject');

# --- two sessions, one new subject ----------------------------------------------------
my $s1 = PrivacyNode::open_session($node, 'postgres');
my $s2 = PrivacyNode::open_session($node, 'postgres');
PrivacyNode::session_query($s1, "SET privacy.purpose = 'service'; BEGIN;
INSERT INTO orders VALUES (900001, 777777, 'c777777\@example.org');");
my $pid2 = PrivacyNode::session_query($s2, "SET privacy.purpose = 'service'; BEGIN; SELECT pg_backend_pid();");
# the second session's key for the same subject waits at its statement's
# end, on the first session's uncommitted key row
$s2->query_until(qr/sent/, "\\echo sent\nINSERT INTO orders VALUES (900002, 777777, 'c777777\@example.org');\n");
ok( $node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid2"),
	'the second session waits for the first one\'s key of the same subject');
PrivacyNode::session_query($s1, 'COMMIT');
PrivacyNode::session_query($s2, 'COMMIT');
$s1->quit;
$s2->quit;
is( $node->safe_psql('postgres', "SELECT string_agg(state, ',' ORDER BY state) FROM privacy.data_keys
 WHERE subject_hash = privacy.subject_hash('777777')"),
	'active,retired',
	'one active key for the subject; the one sealed concurrently is kept as retired');
is(readable(777777, 777777), '2/2/1', 'both values open');
$node->safe_psql('postgres', "SELECT privacy.erase_subject('777777', 'test')");
is( $node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE state <> 'destroyed') FROM privacy.data_keys
 WHERE subject_hash = privacy.subject_hash('777777')"),
	'0', 'erasure destroys both keys');

# the rows written directly: each column as the INSERT wrote it, the CHECK
# constraints hold (the direct write does not evaluate them), and both the
# primary key and the active subjects' index find every row
my $file = copy_file('direct', 500001, 505000);
$node->safe_psql('postgres', "BEGIN; CREATE TEMP TABLE t0 AS SELECT now() AS t; COPY orders FROM '$file';
CREATE TABLE direct_check AS
SELECT count(*) AS n,
       count(*) FILTER (WHERE k.scope = 'subject' AND k.state = 'active' AND k.category IS NULL AND k.name IS NULL
                          AND k.created_at = (SELECT t FROM t0) AND k.retired_at IS NULL AND k.destroyed_at IS NULL
                          AND k.wrapped_by = privacy.master_key_fingerprint()
                          AND length(k.wrapped_key) = (SELECT length(wrapped_key) FROM privacy.data_keys
                                                        WHERE scope = 'internal' LIMIT 1)
                          AND ((k.scope = 'category') = (k.category IS NOT NULL)
                               AND (k.scope = 'subject') = (k.subject_hash IS NOT NULL)
                               AND (k.scope = 'internal') = (k.name IS NOT NULL))
                          AND ((k.state = 'destroyed') = (k.wrapped_key IS NULL))) AS as_inserted
  FROM privacy.data_keys k
 WHERE k.subject_hash IN (SELECT privacy.subject_hash(g::text) FROM generate_series(500001, 505000) g);
COMMIT;");
is($node->safe_psql('postgres', 'SELECT n || \'/\' || as_inserted FROM direct_check'),
	'5000/5000', 'a batch written directly: one row a subject, every column as the INSERT wrote it');
is( $node->safe_psql('postgres', "SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT count(*) FROM generate_series(500001, 505000) g
 WHERE EXISTS (SELECT FROM privacy.data_keys k WHERE k.subject_hash = privacy.subject_hash(g::text)
                  AND k.scope = 'subject' AND k.state = 'active')
   AND EXISTS (SELECT FROM privacy.data_keys k JOIN orders o ON (privacy.envelope_info(o.email)).key_id = k.id
                WHERE o.customer = g)"),
	'5000', 'the indexes find every key written directly, by its subject and by its id');
is(readable(500001, 505000), '5000/5000/5000', 'the values sealed with them open');

# that the batch was written directly shows in the WAL: a key row written
# by a one-row INSERT into orders comes as the heap's multi-insert record
# (an INSERT statement writes an insert record a row)
$node->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect');
my $direct_wal = sub {
	my ($sql) = @_;
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	$node->safe_psql('postgres', $sql);
	return $node->safe_psql('postgres', "SELECT split_part(record_type, '+', 1) FROM pg_get_wal_records_info('$lsn', pg_current_wal_flush_lsn())
 WHERE resource_manager IN ('Heap', 'Heap2') AND record_type LIKE '%INSERT%'
   AND block_ref LIKE '%/' || pg_relation_filenode('privacy.data_keys') || ' %' LIMIT 1");
};
is($direct_wal->("INSERT INTO orders VALUES (510001, 510001, 'c510001\@example.org')"),
	'MULTI_INSERT', 'a new key is written straight into the key table (the foreign key on category is NULL)');

# an administrator's INSERT trigger on the key table: the batch is an INSERT
# again, and the trigger sees every key
$node->safe_psql('postgres', q{
CREATE TABLE key_audit (id integer);
CREATE FUNCTION key_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.key_audit VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER key_audit AFTER INSERT ON privacy.data_keys FOR EACH ROW EXECUTE FUNCTION key_audit();
});
$file = copy_file('audited', 600001, 600300);
$node->safe_psql('postgres', "COPY orders FROM '$file'; INSERT INTO orders VALUES (600301, 600301, 'c600301\@example.org')");
is( $node->safe_psql('postgres', "SELECT count(*) FROM key_audit a JOIN privacy.data_keys k USING (id)
 WHERE k.subject_hash IN (SELECT privacy.subject_hash(g::text) FROM generate_series(600001, 600301) g)"),
	'301', 'a trigger on the key table fires for every new key');
is(readable(600001, 600301), '301/301/301', 'and their values open');
is($direct_wal->("INSERT INTO orders VALUES (600302, 600302, 'c600302\@example.org')"),
	'INSERT', 'with the trigger, by an INSERT');
$node->safe_psql('postgres', 'DROP TRIGGER key_audit ON privacy.data_keys');

$node->stop;
done_testing();
