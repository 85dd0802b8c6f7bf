# The subject report against ground truth.
#
# A generated database with known contents: 200 subjects (150 with bigint
# identifiers, 50 with uuid identifiers), five protected tables (subjects
# keyed as bigint, text, uuid; one table partitioned by range), encrypted
# text and bytea columns sealed under subject keys, retention rules on a
# timestamptz and a date column.  The generator keeps its own record of
# every row; for a sample of subjects (one with no rows at all, one present
# in only some tables, uuid ones, and identifiers nobody has) the report's
# rows must be exactly the subject's rows (precision and recall 100 %), with
# plaintext values and the right due dates, and the report's text must hold
# nothing of any other subject: none of their values and none of their
# identifiers.  Then an application role reads one subject's data under a
# purpose; after privacy.flush_access_log() the report lists that access
# (role, purpose, table, categories, number of values), other subjects'
# reports do not, the report's own reads are logged under subject_access,
# and the access log's chain still verifies.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($node) = PrivacyNode::new_node('report', init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->append_conf('postgresql.conf', "timezone = 'UTC'\n");
$node->start;

srand(20261126);
my $json = JSON::PP->new->utf8->canonical;

sub q_lit { my ($s) = @_; return 'NULL' unless defined $s; $s =~ s/'/''/g; return "'$s'"; }

# A timestamp as the generator writes it and as the report's JSON prints it.
sub ts
{
	my ($y, $m, $d, $h, $mi) = @_;
	return (sprintf('%04d-%02d-%02d %02d:%02d:00+00', $y, $m, $d, $h, $mi),
		sprintf('%04d-%02d-%02dT%02d:%02d:00+00:00', $y, $m, $d, $h, $mi));
}
sub rand_ts { my ($from, $to) = @_; return (int($from + rand($to - $from + 1)), 1 + int(rand(12)), 1 + int(rand(28)), int(rand(24)), int(rand(60))); }

# subjects: 1..150 numeric (identifier 1000 + n), 151..200 uuid
sub ident { my ($n) = @_; return $n <= 150 ? (1000 + $n) . '' : sprintf('%08x-7e57-4a00-8b00-%012x', $n * 7919, $n); }
my @subjects = map { ident($_) } 1 .. 200;

# expected{subject}{table}{pk} = { column => JSON value }, due{subject}{table}{pk} = due_at
my (%expected, %due, %tokens);
my %sql = (customers => [], orders => [], events => [], tickets => [], devices => []);
my ($order_id, $event_id, $ticket_id, $device_id) = (0, 0, 0, 0);

sub token
{
	my ($n, $what) = @_;
	my $t = sprintf('u%04d%s%05d', $n, $what, scalar(keys %{ $tokens{$n} // {} }));
	$tokens{$n}{$t} = 1;
	return $t;
}

for my $n (1 .. 200)
{
	my $s = ident($n);
	my $zero = ($n == 7 || $n == 160);    # subjects with no row at all
	if ($n <= 150)
	{
		# customers: one row, except subjects known only elsewhere (n % 10 == 3)
		if (!$zero && $n % 10 != 3)
		{
			my ($ts, $js) = ts(rand_ts(2019, 2025));
			my ($due_js) = (ts(substr($ts, 0, 4) + 5, substr($ts, 5, 2), substr($ts, 8, 2), substr($ts, 11, 2), substr($ts, 14, 2)))[1];
			my $name = "O'Name \"" . token($n, 'n') . "\" \x{e9}";
			my $email = token($n, 'e') . '@example.org';
			push @{ $sql{customers} }, sprintf('(%s, %s, %s, %s)', $s, q_lit($name), q_lit($email), q_lit($ts));
			$expected{$s}{customers}{$s} = { id => $s, name => $name, email => $email, created_at => $js };
			$due{$s}{customers}{$s} = $due_js;
		}
		for (1 .. ($zero ? 0 : int(rand(6))))
		{
			my $id = ++$order_id;
			my ($y, $m, $d) = rand_ts(2020, 2026);
			my $card = rand() < 0.2 ? undef : token($n, 'c');
			my $item = token($n, 'i');
			push @{ $sql{orders} }, sprintf("(%d, %s, %s, %d.%02d, %s, '%04d-%02d-%02d')",
				$id, $s, q_lit($item), int(rand(500)), int(rand(100)), q_lit($card), $y, $m, $d);
			$expected{$s}{orders}{$id} = { id => $id, customer_id => $s, item => $item, card => $card,
				ordered_on => sprintf('%04d-%02d-%02d', $y, $m, $d) };
			$due{$s}{orders}{$id} = sprintf('%04d-%02d-%02dT00:00:00+00:00', $y + 2, $m, $d);
		}
		for (1 .. ($zero ? 0 : int(rand(5))))
		{
			my $id = ++$event_id;
			my ($ts, $js) = ts(rand_ts(2024, 2026));
			my $kind = token($n, 'k');
			push @{ $sql{events} }, sprintf('(%d, %s, %s, %s)', $id, $s, q_lit($ts), q_lit($kind));
			$expected{$s}{events}{$id} = { id => $id, customer_id => $s, at => $js, kind => $kind };
			$due{$s}{events}{$id} = (ts(substr($ts, 0, 4) + 1, substr($ts, 5, 2), substr($ts, 8, 2), substr($ts, 11, 2), substr($ts, 14, 2)))[1];
		}
	}
	else
	{
		for (1 .. ($zero ? 0 : 1 + int(rand(4))))
		{
			my $id = ++$device_id;
			my $label = token($n, 'l');
			my $secret = token($n, 'b');
			push @{ $sql{devices} }, sprintf("(%d, '%s', %s, '\\x%s'::bytea)", $id, $s, q_lit($label), unpack('H*', $secret));
			$expected{$s}{devices}{$id} = { id => $id, owner => $s, label => $label, secret => '\\x' . unpack('H*', $secret) };
			$due{$s}{devices}{$id} = undef;
		}
	}
	for (1 .. ($zero ? 0 : int(rand(4))))
	{
		my $id = ++$ticket_id;
		my $body = rand() < 0.1 ? '' : 'line 1 <b>' . token($n, 't') . "</b>\nline 2";
		push @{ $sql{tickets} }, sprintf('(%d, %s, %s)', $id, q_lit($s), q_lit($body));
		$expected{$s}{tickets}{$id} = { id => $id, customer => $s, body => $body };
		$due{$s}{tickets}{$id} = undef;
	}
}

$node->safe_psql('postgres', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_category('device');
SELECT privacy.create_purpose('billing', 'contract', 'invoices', ARRAY['contact', 'financial']);
CREATE ROLE tap_app LOGIN;
CREATE ROLE tap_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('tap_app', 'billing');
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                        created_at timestamptz NOT NULL);
CREATE TABLE orders (id integer PRIMARY KEY, customer_id bigint NOT NULL, item text, amount numeric(7,2),
                     card privacy.encrypted_text(financial), ordered_on date NOT NULL);
CREATE INDEX ON orders (customer_id);
CREATE TABLE events (id bigint, customer_id bigint NOT NULL, at timestamptz NOT NULL, kind text,
                     PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON events (customer_id);
CREATE TABLE tickets (id integer PRIMARY KEY, customer text NOT NULL, body privacy.encrypted_text(contact));
CREATE INDEX ON tickets (customer);
CREATE TABLE devices (id integer PRIMARY KEY, owner uuid NOT NULL, label text,
                      secret privacy.encrypted_bytea(device));
CREATE INDEX ON devices (owner);
GRANT SELECT ON customers, orders, events, tickets, devices TO tap_app;
});
for my $t (sort keys %sql)
{
	next unless @{ $sql{$t} };
	my $insert = "INSERT INTO $t VALUES " . join(",\n", @{ $sql{$t} });
	utf8::encode($insert);
	$node->safe_psql('postgres', $insert);
}
$node->safe_psql('postgres', q{
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('orders', 'customer_id');
SELECT privacy.protect_table('events', 'customer_id');
SELECT privacy.protect_table('tickets', 'customer');
SELECT privacy.protect_table('devices', 'owner');
SELECT privacy.set_retention('customers', 'created_at', interval '5 years', 'delete');
SELECT privacy.set_retention('orders', 'ordered_on', interval '2 years', 'anonymize', ARRAY['card']);
SELECT privacy.set_retention('events', 'at', interval '1 year', 'delete');
});
my $total = 0;
$total += scalar @{ $sql{$_} } for keys %sql;
is($node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM orders)
  + (SELECT count(*) FROM events) + (SELECT count(*) FROM tickets) + (SELECT count(*) FROM devices)}),
	$total, "generated: $total rows over 5 protected tables, 200 subjects");
ok($node->safe_psql('postgres', q{SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'}) > 150,
	'subjects have their own keys (values sealed under subject keys)');

sub report
{
	my ($subject) = @_;
	my $text = $node->safe_psql('postgres',
		'SET ROLE tap_officer; SELECT privacy.subject_report(' . q_lit($subject) . ')');
	return ($text, $json->decode($text));
}

sub canon
{
	my ($h) = @_;
	return join("\x01", map { $_ . '=' . (defined $h->{$_} ? $h->{$_} : '\N') } sort keys %$h);
}

my $pk = { customers => 'id', orders => 'id', events => 'id', tickets => 'id', devices => 'id' };
my $subject_col = { customers => 'id', orders => 'customer_id', events => 'customer_id', tickets => 'customer', devices => 'owner' };

# the sample: random subjects of both kinds, the two without rows, one
# missing from customers (n = 13), and identifiers nobody has
my @sample = (ident(7), ident(160), ident(13), ident(151), ident(200));
push @sample, ident(1 + int(rand(200))) for 1 .. 10;
push @sample, '999999', sprintf('%08x-7e57-4a00-8b00-%012x', 1, 1), 'no such subject';
my %seen;
@sample = grep { !$seen{$_}++ } @sample;

for my $s (@sample)
{
	my ($text, $r) = report($s);
	my $exp = $expected{$s} // {};
	my %got;
	my ($tp, $fp, $fn) = (0, 0, 0);
	my @bad;
	for my $d (@{ $r->{data} })
	{
		(my $t = $d->{table}) =~ s/^public\.//;
		push @bad, "table $d->{table} listed once" if $got{$t}++;
		push @bad, "$t: subject column $d->{subject_column}" if $d->{subject_column} ne $subject_col->{$t};
		for my $row (@{ $d->{rows} })
		{
			my $v = $row->{values};
			push @bad, "$t: a row of subject $v->{$subject_col->{$t}}" if "$v->{$subject_col->{$t}}" ne $s;
			my $want = $exp->{$t}{ $v->{ $pk->{$t} } };
			my %v = %$v;
			delete $v{amount};    # generated at random, not recorded
			if ($want && canon(\%v) eq canon($want))
			{
				$tp++;
				my $wd = $due{$s}{$t}{ $v->{ $pk->{$t} } };
				push @bad, "$t row $v->{$pk->{$t}}: due_at " . ($row->{due_at} // 'null') . ', expected ' . ($wd // 'null')
				  if ($row->{due_at} // '') ne ($wd // '');
			}
			else
			{
				$fp++;
				push @bad, "$t: unexpected row " . canon(\%v) . ($want ? ' (expected ' . canon($want) . ')' : '');
			}
		}
	}
	my $want_rows = 0;
	$want_rows += scalar keys %{ $exp->{$_} } for keys %$exp;
	$fn = $want_rows - $tp;
	my $precision = ($tp + $fp) ? $tp / ($tp + $fp) : 1;
	my $recall = $want_rows ? $tp / $want_rows : 1;
	is_deeply(\@bad, [], "subject $s: every reported row is the subject's, with its values and due date");
	ok($precision == 1 && $recall == 1,
		sprintf('subject %s: precision %.0f %%, recall %.0f %% (%d rows expected, %d reported)',
			$s, 100 * $precision, 100 * $recall, $want_rows, $tp + $fp));
	is(scalar(@{ $r->{data} }), scalar(grep { %{ $exp->{$_} } } keys %$exp),
		"subject $s: one data entry per table holding its rows");

	# nothing of anyone else: no value token and no identifier
	my @leaks;
	for my $n (1 .. 200)
	{
		my $other = ident($n);
		next if $other eq $s;
		push @leaks, grep { index($text, $_) >= 0 } keys %{ $tokens{$n} // {} };
		push @leaks, $other if length($other) == 36 && index($text, $other) >= 0;
		push @leaks, "\"$other\"" if index($text, "\"$other\"") >= 0;
		push @leaks, ": $other" if index($text, ": $other,") >= 0 || index($text, ": $other}") >= 0;
	}
	is_deeply(\@leaks, [], "subject $s: nothing of any other subject in the report");
	is($r->{version}, 1, "subject $s: version 1") if $s eq $sample[0];
}

# the shape of an unknown subject's report
{
	my (undef, $r) = report('no such subject');
	is(join(',', sort keys %$r), 'access,consents,data,erasures,generated_at,holds,purposes,requests,subject,version',
		'unknown subject: every key present');
	is(join(',', map { scalar @{ $r->{$_} } } qw(data consents access holds erasures requests)), '0,0,0,0,0,0',
		'unknown subject: empty sections, no error');
}

# access: tap_app reads subject 1042's e-mail and cards under billing
my $s = ident(42);
my $cards = grep { defined $_->{card} } values %{ $expected{$s}{orders} };
report($s);    # an earlier report, to find in the later one
$node->safe_psql('postgres', qq{
SET ROLE tap_app;
SET application_name = 'billing-batch';
SET privacy.purpose = 'billing';
SELECT email FROM customers WHERE id = $s;
SELECT card FROM orders WHERE customer_id = $s;
});
$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');
my (undef, $r) = report($s);
my @app = grep { $_->{role} eq 'tap_app' } @{ $r->{access} };
is(join(';', map { join(',', $_->{purpose}, $_->{application}, $_->{table}, join('+', @{ $_->{categories} }), $_->{values}, $_->{command}) } @app),
	"billing,billing-batch,public.customers,contact,1,SELECT" . ($cards ? ";billing,billing-batch,public.orders,financial,$cards,SELECT" : ''),
	"access: the report lists tap_app's two reads of subject $s (purpose, application, table, categories, values)");
ok(!grep({ $_->{at} !~ /^\d{4}-\d\d-\d\dT/ } @app), 'access: each entry has its time');
my @self = grep { $_->{purpose} eq 'subject_access' } @{ $r->{access} };
ok(scalar(@self) >= 1 && !grep({ $_->{role} ne 'tap_officer' } @self),
	'access: the earlier subject reports of this subject are listed under subject_access, by tap_officer');
my (undef, $r43) = report(ident(43));
ok(!grep({ $_->{role} eq 'tap_app' } @{ $r43->{access} }), 'access: another subject\'s report does not list those reads');
$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');
is($node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE l.acting_role <> 'tap_officer' OR l.command <> 'SELECT'), count(DISTINCT l.relation)
  FROM privacy.access_log l WHERE l.purpose = 'subject_access'}),
	'0|5', 'the reports\' own reads are logged: SELECT by tap_officer, one event per protected table');
is($node->safe_psql('postgres', 'SELECT status FROM privacy.verify_access_log()'), 'ok',
	'the access log, reports included, verifies');

# reading the report needs no purpose and leaves the session's purpose alone
is($node->safe_psql('postgres', q{SET ROLE tap_officer; SET privacy.purpose = 'billing';
SELECT privacy.subject_report('1001') IS NOT NULL, current_setting('privacy.purpose')}),
	't|billing', 'the report restores the caller\'s privacy.purpose');

$node->stop;
done_testing();
