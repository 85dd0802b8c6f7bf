# No call of ours crosses jit_above_cost on PostgreSQL's default settings
# (issue #19).  0.1's access-log functions had no row estimate: the planner
# took each batch to hold 1,000 entries of the subject, and each entry's
# statement lookup 1,000 more, so subject_report's access query was costed
# near half a million and JIT-compiled on every call (340 ms of a 654 ms
# report).
#
# A log of some 40 batches (a reader's statements, flushed every 200 ms), then
# privacy.subject_report and privacy.compliance_gaps under auto_explain with
# nested statements: every plan they run, down to the statements of their
# PL/pgSQL, must cost less than jit_above_cost at its default.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

# customers of 100 subjects read by app under billing, flushed every 200 ms
my ($node) = PrivacyNode::access_log_node('nojit');
$node->safe_psql('postgres', q{
ALTER TABLE customers ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
SELECT privacy.set_retention('customers', 'created_at', '1 year', 'delete');
});
$node->safe_psql('postgres',
	join('', map { sprintf("SELECT count(email::text) FROM customers WHERE id %% 7 = %d; SELECT pg_sleep(0.25);\n", $_ % 7) } 1 .. 40),
	extra_params => ['-U', 'app']);
$node->safe_psql('postgres', q{SELECT privacy.flush_access_log(); ANALYZE});
my $batches = $node->safe_psql('postgres', 'SELECT count(*) FROM privacy.access_log_batches');
cmp_ok($batches, '>=', 15, "the log has many batches ($batches)");

is($node->safe_psql('postgres', 'SHOW jit_above_cost'), '100000', 'jit_above_cost at its default');

# Every plan a statement runs, with its query text and total cost.
sub plans_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', qq{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_format = json;
SET client_min_messages = log;
$sql;
});
	is($ret, 0, "ran: $sql") or diag($err);
	my @plans;
	while ($err =~ /"Query Text": "((?:[^"\\]|\\.)*)",\s*"Plan": \{.*?"Total Cost": ([0-9.]+)/sg)
	{
		push @plans, [ $1, $2 ];
	}
	return @plans;
}

for my $call ("SELECT privacy.subject_report('7')", "SELECT privacy.subject_report_html('7')",
	'SELECT * FROM privacy.compliance_gaps()', 'SELECT * FROM privacy.purge_preview()',
	"SELECT * FROM privacy.access_trail('7')")
{
	my @plans = plans_of($call);
	cmp_ok(scalar(@plans), '>=', 2, "$call: its nested plans were seen");
	my @over = grep { $_->[1] >= 100000 } @plans;
	is(scalar(@over), 0, "$call: no plan reaches jit_above_cost")
	  or diag(join("\n", map { "cost $_->[1]: " . substr($_->[0] =~ s/\\n/ /gr =~ s/\s+/ /gr, 0, 300) } @over));
}

done_testing();
