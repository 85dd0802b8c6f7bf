# The server-log redaction keeps verdicts for the session (redact.c): which
# user functions' bodies and which views reach personal data, per catalog
# generation.  A function or a view replaced since its verdict must be
# judged again, or a statement that now reaches personal data is logged
# with its literals (review of the caches, issue #19):
#   - a function judged "not personal", then replaced by a body that
#     inserts into the protected table and checks its argument first: the
#     error its check raises leaves the statement in the log (STATEMENT
#     line) with the argument, before any statement of the body was
#     analysed (failed before the fix: the verdict was kept per catalog
#     generation, and CREATE OR REPLACE FUNCTION does not move it);
#   - a view judged "not personal" over a function replaced the same way;
#   - a view replaced by one over the protected table (held: the view's
#     relcache invalidation forgets the verdicts).
# Each case also runs in a fresh session, where nothing was cached: the
# same line is redacted there (the control).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('redact_caches',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->append_conf('postgresql.conf', q{
log_statement = 'none'
log_min_error_statement = error
lc_messages = 'C'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact), name text);
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.classify('customers', 'name', 'contact');
CREATE TABLE plain_notes (id serial, body text);
});

# One psql session: the warm-up judges, the replacement, the leak attempt.
sub in_one_session
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 0);
	return $err;
}

my %cases = (
	function => {
		setup => q{CREATE OR REPLACE FUNCTION note(text) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN INSERT INTO plain_notes (body) VALUES ($1); END $$;},
		warm => q{SELECT note('warm-up');},
		replace => q{CREATE OR REPLACE FUNCTION note(text) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN IF length($1) > 10 THEN RAISE EXCEPTION 'too long'; END IF;
          INSERT INTO customers (id, name) VALUES (1, $1); END $$;},
		attack => sub { "SELECT note('$_[0]');" },
		statement => qr/STATEMENT:  SELECT note\(/,
	},
	view_over_function => {
		setup => q{CREATE OR REPLACE FUNCTION lookup(text) RETURNS bigint LANGUAGE plpgsql
    AS $$ BEGIN RETURN (SELECT count(*) FROM plain_notes WHERE body = $1); END $$;
CREATE OR REPLACE VIEW lookups AS SELECT 'x'::text AS term, lookup('x') AS n;},
		warm => q{SELECT count(*) FROM lookups WHERE term = 'warm-up';},
		replace => q{CREATE OR REPLACE FUNCTION lookup(text) RETURNS bigint LANGUAGE plpgsql
    AS $$ BEGIN IF length($1) > 0 THEN RAISE EXCEPTION 'no lookups'; END IF;
          RETURN (SELECT count(*) FROM customers WHERE name = $1); END $$;},
		attack => sub { "SELECT n FROM lookups WHERE term <> '$_[0]';" },
		statement => qr/STATEMENT:  SELECT n FROM lookups WHERE term <> /,
	},
	view_replaced => {
		setup => q{CREATE OR REPLACE VIEW names AS SELECT id::bigint AS id, body AS name FROM plain_notes;},
		warm => q{SELECT count(*) FROM names WHERE name = 'warm-up';},
		replace => q{CREATE OR REPLACE VIEW names AS SELECT id, name FROM customers;},
		attack => sub { "SELECT id FROM names WHERE name = '$_[0]' UNION ALL SELECT 1 / 0;" },
		statement => qr/STATEMENT:  SELECT id FROM names WHERE name = /,
	},
);

for my $case (sort keys %cases)
{
	my $c = $cases{$case};
	my $cached = "cached-secret-$case-R29";
	my $fresh = "fresh-secret-$case-R29";

	$node->safe_psql('postgres', $c->{setup});
	my $offset = -s $node->logfile;
	my $err = in_one_session(join("\n", q{SET privacy.purpose = 'support';},
		$c->{warm}, $c->{replace}, $c->{attack}->($cached)));
	like($err, qr/ERROR/, "$case: the statement after the replacement failed (the client is told)");
	$err = in_one_session(join("\n", q{SET privacy.purpose = 'support';},
		$c->{attack}->($fresh)));
	like($err, qr/ERROR/, "$case: the same statement in a fresh session failed too");
	my $log = slurp_file($node->logfile, $offset);
	is(PrivacyNode::log_count($node, $c->{statement}, $offset), 2,
		"$case: both failing statements are in the log");
	ok(index($log, $fresh) < 0, "$case: a fresh session's statement is redacted (the control)");
	ok(index($log, $cached) < 0, "$case: the statement after a replacement in the same session is redacted");
	$node->safe_psql('postgres', $c->{setup});
}

$node->stop;
done_testing();
