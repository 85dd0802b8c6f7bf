# The caches of unwrapped data keys where the shared one could mix keys up
# or keep one too long (issue #14).
#
# Key ids are numbers of one database's privacy.data_keys: two databases,
# and one database before and after DROP and CREATE EXTENSION, use the same
# ids for different keys, and the cache shared by all backends must never
# hand one's key to the other.  A destruction committed by COMMIT PREPARED
# (no commit callback runs for the prepared transaction) still reaches a
# session that cached the key, and the shared cache.  After a crash the
# postmaster reinitialises shared memory: the shared cache starts empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('keycache');
$node->append_conf('postgresql.conf', qq{
max_prepared_transactions = 5
privacy.shared_key_cache_size = 4096
shared_preload_libraries = 'privacy,pg_stat_statements'
pg_stat_statements.track_planning = on
restart_after_crash = on
});
$node->start;

my $setup = q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
CREATE TABLE people (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('people', 'id');
SET privacy.purpose = 'service';
};
# every row reads back as <database>-<id>@example.org (or <prefix>-...)
sub read_sql
{
	my ($prefix) = @_;
	$prefix //= "current_database()";
	return "SET privacy.purpose = 'service';
SELECT count(*) FILTER (WHERE email::text = $prefix || '-' || id || '\@example.org') || '/' || count(*) FROM people;";
}
# database two is a copy of database one made before any subject had a
# key: even the key tables' OIDs are the same
$node->safe_psql('postgres', "CREATE DATABASE one");
$node->safe_psql('one', $setup);
$node->safe_psql('postgres', "CREATE DATABASE two TEMPLATE one");
for my $db ('one', 'two')
{
	$node->safe_psql($db, "SET privacy.purpose = 'service';
INSERT INTO people SELECT g, '$db-' || g || '\@example.org' FROM generate_series(1, 200) g;");
}
my $ids = "SELECT 'privacy.data_keys'::regclass::oid || ':' || min(id) || '-' || max(id) FROM privacy.keys WHERE scope = 'subject'";
is($node->safe_psql('one', $ids), $node->safe_psql('two', $ids), 'both databases number their subject keys alike, in tables of one OID');

# alternate, each read filling the shared cache from its own database
for my $round (1 .. 2)
{
	for my $db ('one', 'two')
	{
		is($node->safe_psql($db, read_sql()), '200/200', "round $round: $db reads its own values, never the other's keys");
	}
}
cmp_ok($node->safe_psql('one', "SELECT used FROM privacy.key_cache_status() WHERE cache = 'shared'"), '>=', 400,
	'the shared cache holds both databases\' subject keys');

# a session that has cached database one's keys, while the extension is
# dropped and created again there: the new keys have the old ids
my $session = PrivacyNode::open_session($node, 'one');
is(PrivacyNode::session_query($session, read_sql()), '200/200', 'long-lived session: reads database one');
# (the session's reads logged first: the access log writer would otherwise
# write them into the new extension's log, whose key would take an id)
$node->safe_psql('one', "SELECT privacy.flush_access_log(); DROP TABLE people; DROP EXTENSION privacy;" . $setup .
	"INSERT INTO people SELECT g, 'again-' || g || '\@example.org' FROM generate_series(1, 200) g;");
my ($range) = $node->safe_psql('two', $ids) =~ /:(.*)$/;
like($node->safe_psql('one', $ids), qr/:\Q$range\E$/, 'the extension created again numbers its keys as before');
is(PrivacyNode::session_query($session, read_sql("'again'")), '200/200',
	'long-lived session: the new keys, not the cached ones of the dropped extension');
is($node->safe_psql('one', read_sql("'again'")), '200/200', 'new session: the new keys, not the shared cache\'s old ones');
is($node->safe_psql('two', read_sql()), '200/200', 'database two unaffected');
$session->quit;

# a destruction committed by COMMIT PREPARED
$session = PrivacyNode::open_session($node, 'two');
is(PrivacyNode::session_query($session, "SET privacy.purpose = 'service'; SELECT email FROM people WHERE id = 5"),
	'two-5@example.org', 'long-lived session: subject 5 cached before the destruction');
$node->safe_psql('two', "BEGIN; SELECT privacy.destroy_subject_key('5'); PREPARE TRANSACTION 'destroy5';");
is(PrivacyNode::session_query($session, "SELECT email FROM people WHERE id = 5"), 'two-5@example.org',
	'long-lived session: a prepared destruction changes nothing yet');
$node->safe_psql('two', "COMMIT PREPARED 'destroy5'");
is(PrivacyNode::session_query($session, "SELECT email FROM people WHERE id = 5"), '[erased]',
	'long-lived session: subject 5 reads [erased] after COMMIT PREPARED');
is($node->safe_psql('two', "SET privacy.purpose = 'service'; SELECT email FROM people WHERE id = 5"), '[erased]',
	'new session: subject 5 reads [erased] (not from the shared cache)');
is(PrivacyNode::session_query($session, "SELECT count(*) FROM people WHERE email::text LIKE 'two-%'"), '199',
	'the other subjects read as before');
$session->quit;

# A key destroyed is a change of one key (issue #19): other sessions drop
# that key from their caches, and keep the plans they hold over
# privacy.data_keys (the invalidation a hot standby replays is not sent
# for the key table itself, whose plans every session would make again)
$node->safe_psql('two', 'CREATE EXTENSION pg_stat_statements');
$session = PrivacyNode::open_session($node, 'two');
PrivacyNode::session_query($session, "SET plan_cache_mode = force_generic_plan;
PREPARE keys_of(text) AS SELECT count(*) FROM privacy.data_keys WHERE scope = \$1;
EXECUTE keys_of('subject')");
my $plans = q{SELECT sum(plans) FROM pg_stat_statements WHERE query LIKE 'PREPARE keys_of%'};
is($node->safe_psql('two', $plans), '1', 'a session planned its statement over privacy.data_keys once');
$node->safe_psql('two', "SELECT privacy.destroy_subject_key('6')");
is(PrivacyNode::session_query($session, "EXECUTE keys_of('subject')"), '200',
	'it reads the key table after a key was destroyed in another session');
is($node->safe_psql('two', $plans), '1', 'without planning its statement again');
$session->quit;

# a crash: shared memory is reinitialised, and the shared cache with it
my $victim = PrivacyNode::open_session($node, 'two');
my $victim_pid = PrivacyNode::session_query($victim, 'SELECT pg_backend_pid()');
ok(PrivacyNode::crash_and_restart($node, $victim_pid), 'kill -9 of a backend, the node reinitialises');
eval { $victim->quit };
is($node->safe_psql('two', "SELECT used FROM privacy.key_cache_status() WHERE cache = 'shared'"), '0',
	'after the crash the shared cache is empty');
is($node->safe_psql('two', read_sql()), '198/200', 'and database two reads back (subjects 5 and 6 erased)');
is($node->safe_psql('one', read_sql("'again'")), '200/200', 'and database one');

$node->stop;
done_testing();
