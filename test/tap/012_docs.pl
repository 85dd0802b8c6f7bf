# The guides' examples run: every ```sql block of doc/*.md, in document
# order, in a fresh database per guide, as doc/README.md ("Examples that
# run") describes; what a guide shows after a block is what psql prints.
# Also checked: the conventions are followed (no output block without its
# statement, reasons for skips and known bugs), and every link between the
# guides names a heading that exists.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;
use DocTest;

my $docdir = "$ENV{PRIVACY_SRC}/doc";
my @guides = map { DocTest::parse($_) } sort glob("$docdir/*.md");
ok(scalar(@guides) >= 5, 'the guides are found in ' . $docdir);

# Headings and their anchors, as GitHub makes them.
sub anchors
{
	my ($file) = @_;
	my %seen;
	my %anchors;
	my $fence = 0;
	for my $line (split /\n/, slurp_file($file))
	{
		$fence = !$fence if $line =~ /^\s*```/;
		next if $fence || $line !~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
		(my $a = lc $1) =~ s/[^\w\- ]//g;
		$a =~ s/ /-/g;
		my $n = $seen{$a}++;
		$anchors{ $n ? "$a-$n" : $a } = 1;
	}
	return \%anchors;
}

my %anchors = map { (my $n = $_) =~ s{.*/}{}; ($n => anchors($_)) } glob("$docdir/*.md");
for my $file (sort glob("$docdir/*.md"), "$ENV{PRIVACY_SRC}/README.md")
{
	next unless -f $file;
	(my $name = $file) =~ s{.*/}{};
	my @broken;
	my $text = slurp_file($file);
	while ($text =~ /\]\(([\w.\/-]*?)#([^)\s]+)\)/g)
	{
		my ($target, $anchor) = ($1, $2);
		(my $t = $target eq '' ? $name : $target) =~ s{.*/}{};
		next if $target ne '' && $target !~ /\.md$/;
		next if $target =~ /^\.\.\//;    # a file outside doc/
		push @broken, "$target#$anchor" unless $anchors{$t} && $anchors{$t}{$anchor};
	}
	is_deeply(\@broken, [], "$name: every link to a heading of the guides resolves");
}

for my $guide (@guides)
{
	is_deeply($guide->{problems}, [], "$guide->{name}: the doc-test conventions are followed");
}

my ($node) = PrivacyNode::new_node('docs');
$node->append_conf('postgresql.conf', "timezone = 'UTC'\nlog_timezone = 'UTC'\n");
$node->start;

# The guides are written for the superuser postgres (recorded_by, the
# report's session_role); the cluster's bootstrap superuser is whoever runs
# the tests.
$node->safe_psql('postgres', q{DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'postgres') THEN CREATE ROLE postgres SUPERUSER LOGIN; END IF;
END $$;});
my $conn = { host => $node->host, port => $node->port, user => 'postgres', psql => 'psql' };

for my $guide (@guides)
{
	my $c = DocTest::counts($guide);
	next unless $c->{run} + $c->{setup};
	(my $db = $guide->{name}) =~ s/\.md$//;
	$db =~ s/\W/_/g;
	my ($output, $cleanup) = DocTest::run_guide($conn, $guide, "doc_$db");
	my $todo_count = 0;
	for my $r (DocTest::check($guide, $output))
	{
		my $item = $r->{item};
		my $name = "$guide->{name}:$item->{line}: "
		  . ($item->{kind} eq 'setup' ? 'setup'
			: ($item->{expect} // '') eq 'error' ? 'fails as shown'
			: $item->{output} ? 'prints what the guide shows' : 'runs');
		if ($r->{todo})
		{
			$todo_count++;
			TODO:
			{
				local $TODO = "known bug: $r->{todo}";
				ok(0, $name) or diag(join("\n", @{ $r->{problems} }));
			}
			next;
		}
		ok($r->{ok}, $name) or diag(join("\n", @{ $r->{problems} }));
	}
	is_deeply($cleanup, [], "$guide->{name}: its database and roles are removed afterwards");
	note(sprintf('%s: %d SQL blocks run (%d with output compared, %d that must fail, %d known bugs), %d hidden setups, %d skipped',
		$guide->{name}, $c->{run}, $c->{compared}, $c->{error}, $c->{'known-bug'}, $c->{setup}, $c->{skipped}));
	note("  skipped: $_") for @{ $c->{reasons} };
}

$node->stop;
done_testing();
