# DocTest.pm — the examples of doc/*.md, run as tests.
#
# A guide is Markdown.  Its ```sql blocks are run in document order, in one
# psql session, in a database of its own; the block that follows one
# directly (```text, a bare ``` or ```json) is what psql prints for it.
# HTML comments that start with "doc-test:" mark what is not run as
# written.  doc/README.md ("Examples that run") is the user's description of
# these conventions; this file is the implementation, used by
# test/tap/012_docs.pl and by test/doctest (run a guide by hand).
package DocTest;

use strict;
use warnings;

use IPC::Run;
use JSON::PP;

# Markers the runner writes between blocks (never printed by a guide).
my $MARK = '@@doc-test';

# Keywords of a directive: <!-- doc-test: KEYWORD (text) -->
my %DIRECTIVES = (
	'skip' => 'reason',             # the next block is not run
	'error' => 'optional',          # the next block must fail
	'known-bug' => 'reason',        # the next block is a TAP TODO
	'setup' => 'none',              # hidden SQL up to "-->", run in place
	'creates-extension' => 'none',  # the guide runs CREATE EXTENSION itself
);

# Languages of an output block, and of blocks that are never run.
my %OUTPUT_LANG = ('' => 1, 'text' => 1, 'json' => 1);

# parse(path) -> { file, name, creates_extension, items => [...], problems => [...] }
#
# Each item is a hash: kind => 'sql' (run), 'setup' (hidden SQL, run),
# 'skipped' (a marked block, not run), 'other' (a block in a language that
# is never run: sh, conf, ...).  A run item has line, sql, expect ('error',
# 'known-bug' or undef), reason, and output => { lang, text, line } when an
# output block follows.  Problems are mistakes in the conventions (a
# directive without its reason, an output block that belongs to no SQL
# block, an SQL block that does not end its statement), reported as
# failures by the test.
sub parse
{
	my ($path) = @_;
	open(my $fh, '<:encoding(UTF-8)', $path) or die "$path: $!";
	my @lines = <$fh>;
	close $fh;
	chomp @lines;
	(my $name = $path) =~ s{.*/}{};
	my $guide = { file => $path, name => $name, items => [], problems => [], creates_extension => 0 };
	my $pending;       # a directive waiting for its block
	my $last_run;      # the last run item, while an output block may follow
	my $i = 0;
	while ($i < @lines)
	{
		my $line = $lines[$i];
		my $lineno = $i + 1;

		if ($line =~ /^\s*<!--\s*doc-test:\s*([a-z-]+)\s*(.*)$/)
		{
			my ($kw, $rest) = ($1, $2);
			if (!exists $DIRECTIVES{$kw})
			{
				push @{ $guide->{problems} }, "$name:$lineno: unknown directive doc-test: $kw";
				$i++;
				next;
			}
			if ($kw eq 'setup')
			{
				# the SQL runs up to the line that closes the comment
				my @sql;
				push @sql, $rest if $rest ne '' && $rest !~ /-->\s*$/;
				$i++;
				while ($i < @lines && $lines[$i] !~ /^\s*-->\s*$/)
				{
					push @sql, $lines[$i++];
				}
				push @{ $guide->{problems} }, "$name:$lineno: setup comment is not closed by a line \"-->\""
				  if $i >= @lines;
				$i++;
				push @{ $guide->{items} }, { kind => 'setup', line => $lineno, sql => join("\n", @sql) . "\n" };
				$last_run = undef;
				next;
			}
			my $text;
			if ($rest =~ /^(?:\((.*)\))?\s*-->\s*$/) { $text = $1; }
			else
			{
				push @{ $guide->{problems} }, "$name:$lineno: directive doc-test: $kw must fit on one line and end with -->";
			}
			if ($DIRECTIVES{$kw} eq 'reason' && !(defined $text && $text =~ /\S/))
			{
				push @{ $guide->{problems} }, "$name:$lineno: doc-test: $kw needs a reason in parentheses";
			}
			if ($kw eq 'creates-extension') { $guide->{creates_extension} = 1; }
			else { $pending = { kw => $kw, text => $text, line => $lineno }; }
			$i++;
			next;
		}

		if ($line =~ /^(\s*)(`{3,})\s*([^\s`]*)/)
		{
			my ($indent, $fence, $lang) = (length($1), $2, lc($3));
			my @body;
			$i++;
			while ($i < @lines && $lines[$i] !~ /^\s*\Q$fence\E`*\s*$/)
			{
				(my $l = $lines[$i++]) =~ s/^ {0,$indent}//;
				push @body, $l;
			}
			push @{ $guide->{problems} }, "$name:$lineno: code block is not closed" if $i >= @lines;
			$i++;
			my $body = join("\n", @body) . "\n";

			if ($pending && $pending->{kw} eq 'skip')
			{
				my $item = { kind => 'skipped', line => $lineno, lang => $lang, reason => $pending->{text} };
				push @{ $guide->{items} }, $item;
				$pending = undef;
				# a skipped SQL block's output is skipped with it
				$last_run = $lang eq 'sql' ? $item : undef;
				next;
			}
			if ($lang eq 'sql')
			{
				my $item = { kind => 'sql', line => $lineno, sql => $body };
				if ($pending)
				{
					$item->{expect} = $pending->{kw};
					$item->{reason} = $pending->{text};
					$pending = undef;
				}
				if ($body !~ /(;|^\s*\\[^\n]*|^\\\.)\s*(--[^\n]*)?\s*\z/m)
				{
					push @{ $guide->{problems} }, "$name:$lineno: the last statement of this SQL block does not end with ;";
				}
				push @{ $guide->{items} }, $item;
				$last_run = $item;
				next;
			}
			if ($pending)
			{
				push @{ $guide->{problems} }, "$name:$pending->{line}: doc-test: $pending->{kw} is followed by a $lang block, not by an SQL block";
				$pending = undef;
			}
			if ($OUTPUT_LANG{$lang} && $last_run && !$last_run->{output})
			{
				$last_run->{output} = { lang => $lang, text => $body, line => $lineno };
				$last_run = undef;
				next;
			}
			if ($lang eq '' || $lang eq 'text')
			{
				push @{ $guide->{problems} },
				  "$name:$lineno: output block that follows no SQL block: show the statement that prints it, "
				  . "give the block a language (sh, conf, json, ...), or mark it <!-- doc-test: skip (reason) -->";
			}
			push @{ $guide->{items} }, { kind => 'other', line => $lineno, lang => $lang };
			$last_run = undef;
			next;
		}

		# prose between an SQL block and a code block: that block is no output
		$last_run = undef if $line =~ /\S/;
		$i++;
	}
	push @{ $guide->{problems} }, "$guide->{name}:$pending->{line}: doc-test: $pending->{kw} is followed by no code block"
	  if $pending;
	return $guide;
}

# The psql script of a guide: each run item preceded by the reset of the
# session's identity (role, session user, purpose) and by markers that
# split the output.  Blocks followed by JSON are printed unaligned and
# without headers, as psql -At does.
sub script
{
	my ($guide) = @_;
	my $script = "\\set ON_ERROR_STOP 0\n";
	my $n = 0;
	for my $item (@{ $guide->{items} })
	{
		next unless $item->{kind} eq 'sql' || $item->{kind} eq 'setup';
		$n++;
		$item->{n} = $n;
		my $json = $item->{output} && $item->{output}{lang} eq 'json';
		$script .= "\\echo '$MARK:reset:$n\@\@'\n"
		  . "RESET SESSION AUTHORIZATION;\nRESET ROLE;\nRESET privacy.purpose;\n"
		  . ($json ? "\\pset format unaligned\n\\pset tuples_only on\n" : "\\pset format aligned\n\\pset tuples_only off\n")
		  . "\\echo '$MARK:block:$n\@\@'\n"
		  . $item->{sql};
	}
	$script .= "\\echo '$MARK:end\@\@'\n";
	return $script;
}

# Split psql's output by the markers: { n => { reset => text, block => text } }.
sub split_output
{
	my ($output) = @_;
	my %parts;
	my ($n, $part);
	for my $line (split /\n/, $output, -1)
	{
		if ($line =~ /^\Q$MARK\E:(reset|block):(\d+)\@\@$/) { ($part, $n) = ($1, $2); $parts{$n}{$part} = ''; next; }
		if ($line =~ /^\Q$MARK\E:end\@\@$/) { $n = undef; $parts{end} = 1; next; }
		if (defined $n) { $parts{$n}{$part} .= "$line\n"; }
		else { $parts{preamble} .= "$line\n"; }
	}
	return \%parts;
}

# Volatile values, replaced by a placeholder on both sides of a comparison,
# so that a guide may show either a value of its own run or the placeholder.
# Order matters: a timestamp before the date it contains.
my @VOLATILE = (
	[ qr/\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?(?:[+-]\d{2}(?::?\d{2})?|UTC|Z)(?![\w:]))?/, '<timestamp>' ],
	[ qr/\b\d{4}-\d{2}-\d{2}\b/, '<date>' ],
	[ qr/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/, '<uuid>' ],
	[ qr/pv1:[A-Za-z0-9+\/=]+(?:;s=[A-Za-z0-9+\/=]+)?/, '<envelope>' ],
	[ qr/\\x[0-9a-f]{32,}/, '<bytes>' ],
	[ qr/(?<![0-9A-Za-z])[0-9a-f]{16}(?![0-9A-Za-z])/, '<fingerprint>' ],
	[ qr/(?<![0-9A-Za-z])[0-9a-f]{17,}(?![0-9A-Za-z])/, '<hash>' ],
	[ qr/\b\d{2}:\d{2}:\d{2}\.\d+\b/, '<duration>' ],
	# where in a PL/pgSQL function an error was raised changes with its code
	[ qr/(PL\/pgSQL function \S+ line )\d+( at )/, '$1<n>$2' ],
);

# Placeholders a guide may write where a value changes from run to run but
# matches none of the patterns above.
my %WILDCARD = (
	'<n>' => '-?\d+',              # a number (a pid, an OID, a count that depends on the day)
	'<interval>' => '[-+ :.\w]+?', # an interval that depends on the day
	'<...>' => '.*?',              # anything, within one line
);

sub normalise_value
{
	my ($s) = @_;
	for my $v (@VOLATILE)
	{
		my ($re, $to) = @$v;
		$s =~ s/$re/my @m = ($1, $2); (my $t = $to) =~ s{\$(\d)}{$m[$1 - 1] \/\/ ''}ge; $t/ge;
	}
	return $s;
}

# Text output, for comparison: volatile values replaced, whitespace runs
# collapsed (psql pads columns to the widest value), runs of dashes in
# table rules shortened, psql's "LINE n:" and caret lines (which echo the
# statement) left out, blank lines at either end dropped.
sub normalise_text
{
	my ($text) = @_;
	my @out;
	my $skip_caret = 0;
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^LINE \d+: /) { $skip_caret = 1; next; }
		if ($skip_caret && $line =~ /^\s*\^\s*$/) { $skip_caret = 0; next; }
		$skip_caret = 0;
		$line = normalise_value($line);
		$line =~ s/-{2,}/--/g;
		$line =~ s/\s+/ /g;
		$line =~ s/^ | $//g;
		push @out, $line;
	}
	shift @out while @out && $out[0] eq '';
	pop @out while @out && $out[-1] eq '';
	return @out;
}

sub line_matches
{
	my ($expected, $actual) = @_;
	return 1 if $expected eq $actual;
	my @wild = grep { index($expected, $_) >= 0 } keys %WILDCARD;
	return 0 unless @wild;
	my $re = join('', map { $WILDCARD{$_} // quotemeta($_) }
		  split(/(<n>|<interval>|<\.\.\.>)/, $expected));
	return $actual =~ /^$re$/;
}

# JSON output: every JSON document printed, volatile strings replaced,
# compared as data (key order and layout do not matter).
sub json_documents
{
	my ($text) = @_;
	my $json = JSON::PP->new->relaxed;
	my @docs;
	$json->incr_parse($text);
	while (1)
	{
		my $doc = eval { $json->incr_parse };
		return (undef, "not JSON: $@") if $@;
		last unless defined $doc;
		push @docs, $doc;
	}
	return (undef, "not JSON: trailing text") if $json->incr_text =~ /\S/;
	return (\@docs, undef);
}

sub normalise_json
{
	my ($v) = @_;
	if (ref $v eq 'HASH') { return { map { $_ => normalise_json($v->{$_}) } keys %$v }; }
	if (ref $v eq 'ARRAY') { return [ map { normalise_json($_) } @$v ]; }
	return $v if !defined $v || ref $v;
	return JSON::PP::is_bool($v) ? $v : ($v =~ /^-?\d+(?:\.\d+)?$/ ? $v : normalise_value($v));
}

# compare(item, block output) -> list of problems (empty when it matches)
sub compare
{
	my ($item, $actual) = @_;
	my $out = $item->{output} or return ();
	if ($out->{lang} eq 'json')
	{
		my ($want, $e1) = json_documents($out->{text});
		return ("the guide's JSON block (line $out->{line}) does not parse: $e1") unless $want;
		my ($got, $e2) = json_documents($actual);
		return ("psql did not print JSON ($e2):\n$actual") unless $got;
		my $enc = JSON::PP->new->canonical->pretty;
		my $w = $enc->encode(normalise_json($want));
		my $g = $enc->encode(normalise_json($got));
		return () if $w eq $g;
		return ("printed JSON differs from the guide (line $out->{line}):\n" . diff([ split /\n/, $w ], [ split /\n/, $g ]));
	}
	my @want = normalise_text($out->{text});
	my @got = normalise_text($actual);
	my $same = @want == @got;
	if ($same)
	{
		for my $k (0 .. $#want) { $same = 0, last unless line_matches($want[$k], $got[$k]); }
	}
	return () if $same;
	return ("printed output differs from the guide (line $out->{line}):\n" . diff(\@want, \@got));
}

# A small line diff (longest common subsequence), "-" the guide, "+" psql.
sub diff
{
	my ($a, $b) = @_;
	my (@l);
	for my $i (reverse 0 .. @$a) { for my $j (reverse 0 .. @$b) {
		$l[$i][$j] = ($i == @$a || $j == @$b) ? 0
		  : line_matches($a->[$i], $b->[$j]) ? $l[$i + 1][$j + 1] + 1
		  : ($l[$i + 1][$j] >= $l[$i][$j + 1] ? $l[$i + 1][$j] : $l[$i][$j + 1]);
	} }
	my ($i, $j, $d) = (0, 0, '');
	while ($i < @$a || $j < @$b)
	{
		if ($i < @$a && $j < @$b && line_matches($a->[$i], $b->[$j])) { $d .= "  $a->[$i]\n"; $i++; $j++; }
		elsif ($j < @$b && ($i == @$a || $l[$i][$j + 1] >= $l[$i + 1][$j])) { $d .= "+ $b->[$j]\n"; $j++; }
		else { $d .= "- $a->[$i]\n"; $i++; }
	}
	return $d;
}

# check(guide, psql output) -> list of results, one per run item:
# { item, ok, todo, problems => [...] }.  A known-bug block is a TODO
# while it still fails, and a failure (the marker must go) once it runs.
sub check
{
	my ($guide, $output) = @_;
	my $parts = split_output($output);
	my @results;
	for my $item (@{ $guide->{items} })
	{
		next unless defined $item->{n};
		my $p = $parts->{ $item->{n} };
		my @problems;
		if (!$p || !defined $p->{block})
		{
			push @problems, "psql stopped before this block";
		}
		else
		{
			my $reset = $p->{reset} // '';
			push @problems, "the session was left unusable by the block before (in a failed transaction?):\n$reset"
			  if $reset =~ /\S/;
			my $text = $p->{block};
			my $failed = $text =~ /^(?:ERROR|FATAL|PANIC):  /m;
			my $expect = $item->{expect} // '';
			# a known bug may be that a statement does not fail as shown
			$expect = 'error' if $expect eq 'known-bug' && $item->{output} && $item->{output}{text} =~ /^\s*ERROR:  /m;
			if ($expect eq 'error')
			{
				push @problems, "the block is marked doc-test: error but did not fail" unless $failed;
			}
			elsif ($failed)
			{
				push @problems, "the block failed:\n$text";
			}
			push @problems, compare($item, $text);
		}
		my $r = { item => $item, problems => \@problems, ok => !@problems, actual => $p ? $p->{block} : undef };
		if (($item->{expect} // '') eq 'known-bug')
		{
			$r->{todo} = $item->{reason};
			if ($r->{ok})
			{
				$r->{ok} = 0;
				$r->{todo} = undef;
				$r->{problems} = [ "this block is marked doc-test: known-bug ($item->{reason}) but now runs as the guide shows: "
					  . "remove the marker (and say in the guide what changed)" ];
			}
		}
		push @results, $r;
	}
	return @results;
}

# psql as the guides' superuser, with the session settings the guides
# assume (UTC, no purpose from the environment, application_name psql).
# Returns what it printed, stdout and stderr in order, as pg_regress
# records it.
sub psql
{
	my ($conn, $db, $input) = @_;
	local $ENV{PGTZ} = 'UTC';
	local $ENV{PGOPTIONS};
	local $ENV{PGAPPNAME};
	delete $ENV{PGOPTIONS};
	delete $ENV{PGAPPNAME};
	my $out = '';
	my @cmd = ($conn->{psql} // 'psql', '-X', '-q', '-h', $conn->{host}, '-p', $conn->{port},
		'-U', $conn->{user}, '-d', $db);
	IPC::Run::run(\@cmd, '<', \$input, '>&', \$out, IPC::Run::timeout($conn->{timeout} // 300));
	return $out;
}

# An administrative statement in database postgres; dies when it fails.
sub admin
{
	my ($conn, $sql) = @_;
	my $out = psql($conn, 'postgres', "\\set ON_ERROR_STOP 1\n\\pset tuples_only on\n\\pset format unaligned\n$sql\n");
	die "doc-test: $sql failed:\n$out" if $out =~ /^(?:psql:.*)?(?:ERROR|FATAL):/m || $?;
	return $out;
}

sub quote { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# What ALTER SYSTEM has set: name => value.
sub auto_conf
{
	my ($conn) = @_;
	return map { split /\|/, $_, 2 } grep { /\|/ } split /\n/, admin($conn,
		"SELECT name, setting FROM pg_catalog.pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf' AND error IS NULL;");
}

# run_guide(conn, guide, db) -> (psql output, [cleanup problems])
#
# A fresh database for the guide, the extension created in it (unless the
# guide creates it), the guide's script, then everything the guide left in
# the cluster removed: the database, the roles it created (the extension's
# three roles included, so that the next guide finds the cluster as new) and
# what it changed with ALTER SYSTEM (put back as it was before).
sub run_guide
{
	my ($conn, $guide, $db) = @_;
	my %before = map { $_ => 1 } split /\n/, admin($conn, 'SELECT rolname FROM pg_catalog.pg_roles;');
	my %before_conf = auto_conf($conn);
	admin($conn, "DROP DATABASE IF EXISTS $db WITH (FORCE);");
	admin($conn, "CREATE DATABASE $db;");
	psql($conn, $db, "CREATE EXTENSION privacy;\n") =~ /ERROR/ and die "CREATE EXTENSION privacy failed in $db"
	  unless $guide->{creates_extension};
	my $output = psql($conn, $db, script($guide));
	my @problems;
	eval { admin($conn, "DROP DATABASE $db WITH (FORCE);"); 1 } or push @problems, $@;
	for my $role (grep { !$before{$_} } split /\n/, admin($conn, 'SELECT rolname FROM pg_catalog.pg_roles ORDER BY 1;'))
	{
		(my $q = $role) =~ s/"/""/g;
		eval { admin($conn, qq{DROP ROLE "$q";}); 1 } or push @problems, $@;
	}
	my %after = auto_conf($conn);
	my $sql = '';
	for my $name (sort keys %after)
	{
		next if defined $before_conf{$name} && $before_conf{$name} eq $after{$name};
		$sql .= defined $before_conf{$name}
		  ? "ALTER SYSTEM SET $name = " . quote($before_conf{$name}) . ";\n"
		  : "ALTER SYSTEM RESET $name;\n";
	}
	eval { admin($conn, "${sql}SELECT pg_catalog.pg_reload_conf();"); 1 } or push @problems, $@ if $sql;
	return ($output, \@problems);
}

# Counts for a summary: run, setup, error, known-bug, skipped (with reasons), other.
sub counts
{
	my ($guide) = @_;
	my %c = (run => 0, setup => 0, error => 0, 'known-bug' => 0, skipped => 0, compared => 0, reasons => []);
	for my $item (@{ $guide->{items} })
	{
		if ($item->{kind} eq 'sql')
		{
			$c{run}++;
			$c{compared}++ if $item->{output};
			$c{ $item->{expect} }++ if $item->{expect};
		}
		elsif ($item->{kind} eq 'setup') { $c{setup}++; }
		elsif ($item->{kind} eq 'skipped') { $c{skipped}++; push @{ $c{reasons} }, "line $item->{line}: $item->{reason}"; }
	}
	return \%c;
}

1;
