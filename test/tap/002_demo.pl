# doc/demo.sql is documentation that must keep running: every statement
# succeeds except those marked "-- expected error", and each of those fails.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my $demo = "$ENV{PRIVACY_SRC}/doc/demo.sql";
ok(-f $demo, 'doc/demo.sql exists');

my ($node) = PrivacyNode::new_node('demo');
$node->start;

my $script = slurp_file($demo);
my $expected_errors = () = $script =~ /;\s*--\s*expected error/g;
my ($ret, $out, $err) = $node->psql('postgres', $script, extra_params => ['-e']);
is($ret, 0, 'psql ran the whole demo');
my @errors = $err =~ /^(?:psql:[^\n]*: )?ERROR:  (.*)$/mg;
is(scalar(@errors), $expected_errors,
	"exactly the $expected_errors statements marked as expected errors fail")
  or diag(join("\n", @errors));
like($out, qr/\bloaded\b/, 'the demo shows the master key loaded');
like($out, qr/AS purpose_inherited_from_team;\nsupport$/m, 'membership in a team grants its purposes');

$node->stop;
done_testing();
