# Server-log hygiene (#6): with every statement-logging setting on
# (log_statement = all, log_min_duration_statement = 0,
# log_min_error_statement = error, parameters logged whole), statements that
# touch personal data leave no value in the server log: literals and bind
# parameters (extended protocol, unnamed and named), SQL PREPARE/EXECUTE,
# unique, check and not-null violations (DETAIL "Key (...)=(...)" and
# "Failing row contains"), data exceptions that quote the input, syntax
# errors (which are never judged by their tables), a DO block whose
# CONTEXT quotes its SQL, a failing COPY, a view over the protected table,
# the extension's API, EXPLAIN, an error position, an unterminated literal
# (pgsodium #42, pgaudit #160 and #201), a deferred unique violation raised
# at COMMIT or SET CONSTRAINTS.  Statements that touch no personal
# data are logged as before, and the client still gets the full DETAIL.
#
# Then the same statements again on a server that also loads pgaudit
# (session and object auditing, parameters logged) and writes the log to
# stderr, csvlog and jsonlog through the logging collector: pgaudit's AUDIT
# line quotes the statement as a CSV field (quoted identifiers doubled), and
# for a function or a DO block the inner statement, which is no copy of the
# one the client sent; no marker may be in any file of any destination.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

$ENV{PGCLIENTENCODING} = 'UTF8';
my $statement_logging = q{
log_statement = 'all'
log_min_duration_statement = 0
log_min_error_statement = error
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_error_verbosity = default
lc_messages = 'C'
};
my ($node) = PrivacyNode::new_node('hygiene',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->append_conf('postgresql.conf', $statement_logging);
$node->start;

sub setup
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	$node->safe_psql('app', q{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact),
                        name text NOT NULL, age int CHECK (age >= 0), ssn text UNIQUE);
SELECT privacy.protect_table('customers', 'id');
CREATE VIEW customer_names AS SELECT id, name FROM customers;
CREATE TABLE plain_notes (id int PRIMARY KEY, body text);
CREATE TABLE deferred_emails (id int, email privacy.encrypted_text(contact, searchable),
                              CONSTRAINT deferred_emails_email UNIQUE (email) DEFERRABLE INITIALLY DEFERRED);
CREATE FUNCTION add_customer(bigint, text) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN INSERT INTO customers (id, name) VALUES ($1, $2); END $$;
CREATE FUNCTION count_named(text) RETURNS bigint LANGUAGE plpgsql
    AS $$ DECLARE n bigint;
          BEGIN EXECUTE format('SELECT count(*) FROM customers WHERE name = %L', $1) INTO n; RETURN n; END $$;
});
}
setup($node);

# Every marker below goes into a statement that touches personal data.
my @markers;
sub marker { push @markers, $_[0]; return $_[0]; }

my $offset = -s $node->logfile;

# psql, one statement after another in one session (each its own simple
# query); errors do not stop it.  Returns stderr.
sub run
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('app', $sql, on_error_stop => 0);
	return $err;
}

# The markers, the same on every server the statements run on.
my $m_email = marker('alice-secret-7Q@example.com');
my $m_name  = marker('Alice Literal-L1');
my $m_bind  = marker('bind-secret-B3@example.com');
my $m_bindn = marker('Bind Name-B3');
my $m_prep  = marker('prep-secret-P4@example.com');
my $m_exec = marker('exec-secret-E5@example.com');
my $m_ssn   = marker('ssn-dup-U6');
my $m_check = marker('Carol-Check-C7');
my $m_nn    = marker('nn-secret-N8@example.com');
my $m_syntax = marker('syntax-secret-S9');
my $m_token  = marker('syntax-token-T10');
my $m_age  = marker('age-secret-A11');
my $m_do   = marker('do-secret-D12');
my $m_copy = marker('copy-secret-C13');
my $m_view = marker('view-secret-V14');
my $m_subj = marker('subject-secret-G15');
my $m_expl = marker('explain-secret-X16');
my $m_pos  = marker('pos-secret-P17');
my $m_unterm = marker('unterminated-secret-Q18');
my $m_multi = marker('multi-secret-M19');
my $m_explain = marker('explain-secret-AE23');
my $m_dur = marker('duration-secret-D20');
my $m_f1  = marker('func-secret-F21');
my $m_f2  = marker('func-secret-F22');
my $m_nested = marker('nested-secret-AN24');
my $m_defc = marker('deferred-commit-secret-K25@example.org');
my $m_defs = marker('deferred-set-secret-K26@example.org');

# The statements, on $node: their clients' stderr by name.
sub battery
{
	my %err;

	# (1) Literals, as the first statement after a SET, then more.
	run(qq{
SET privacy.purpose = 'support';
INSERT INTO customers (id, email, name) VALUES (1, '$m_email', '$m_name');
	});

	# (2) Bind parameters: pgbench sends the script through the extended
	# protocol, unnamed (-M extended) and as a named prepared statement
	# (-M prepared), its variables as parameters.
	my $script = $node->basedir . '/bind.sql';
	open(my $fh, '>', $script) or die "$script: $!";
	print $fh "SET privacy.purpose = 'support';\n";
	print $fh "INSERT INTO customers (id, email, name) VALUES (:id, :email, :name);\n";
	close $fh;
	$node->command_ok([ 'pgbench', '-n', '-t', '1', '-M', 'extended', '-D', 'id=3',
			'-D', "email=$m_bind", '-D', "name=$m_bindn", '-f', $script, 'app' ],
		'pgbench -M extended inserts through bind parameters');
	$node->command_ok([ 'pgbench', '-n', '-t', '1', '-M', 'prepared', '-D', 'id=4',
			'-D', "email=$m_prep", '-D', 'name=P4', '-f', $script, 'app' ],
		'pgbench -M prepared inserts through a named prepared statement');

	# (3) SQL PREPARE and EXECUTE: the EXECUTE line's DETAIL quotes the PREPARE.
	run(qq{
SET privacy.purpose = 'support';
PREPARE ins(bigint, text, text) AS INSERT INTO customers (id, email, name) VALUES (\$1, \$2, \$3);
EXECUTE ins(5, '$m_exec', 'E5');
	});

	# (4) A unique violation (Key (ssn)=(...)), a check violation and a
	# not-null violation (Failing row contains (...), with the decrypted email
	# since a purpose is declared).
	$err{unique} = run(qq{
SET privacy.purpose = 'support';
INSERT INTO customers (id, name, ssn) VALUES (6, 'U6a', '$m_ssn');
INSERT INTO customers (id, name, ssn) VALUES (60, 'U6b', '$m_ssn');
	});
	$err{check} = run(qq{
SET privacy.purpose = 'support';
INSERT INTO customers (id, name, age) VALUES (7, '$m_check', -1);
	});
	$err{nn} = run(qq{
SET privacy.purpose = 'support';
INSERT INTO customers (id, email, name) VALUES (8, '$m_nn', NULL);
	});

	# (5) Syntax errors: one naming the table, one whose offending token is the
	# literal itself and that names no table at all.
	$err{syntax} = run(qq{
SELECT 1;
INSERT INTO customers (id, name) VALUES (9, '$m_syntax' oops);
SELECT 1 '$m_token';
	});

	# (6) A data exception that quotes the input, a DO block whose CONTEXT
	# quotes its SQL, a COPY row that fails its check, a view over the
	# protected table, the extension's API, EXPLAIN, an error with a position.
	$err{misc} = run(qq{
SET privacy.purpose = 'support';
INSERT INTO customers (id, name, age) VALUES (11, 'A11', '$m_age');
DO \$\$ BEGIN INSERT INTO customers (id, name, age) VALUES (12, '$m_do', -5); END \$\$;
COPY customers (id, name, age) FROM STDIN;
13	$m_copy	-1
\\.
SELECT * FROM customer_names WHERE name = '$m_view';
SELECT privacy.has_consent('$m_subj', 'support');
EXPLAIN SELECT * FROM customers WHERE name = '$m_expl';
SELECT nosuchcolumn FROM customers WHERE name = '$m_pos';
	});

	# (7) An unterminated literal: psql sends what it has at the end of input.
	run(qq{SELECT 1;
INSERT INTO customers (id, name) VALUES (18, '$m_unterm});

	# (8) Several statements in one query string, as the first of a session.
	$node->psql('app', "SET privacy.purpose = 'support'; INSERT INTO customers (id, name) VALUES (19, '$m_multi')");

	# (8b) auto_explain logs each plan with the statement's text ("Query
	# Text:"), at LOG level, outside the statement-logging paths.
	run(qq{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET privacy.purpose = 'support';
SELECT count(*) FROM customers WHERE name = '$m_explain';
	});

	# (8c) auto_explain with nested statements: the plan of a statement a
	# function runs quotes that statement's own text, here dynamic SQL, which
	# is no copy of what the client sent.
	run(qq{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET log_statement = 'none';
SET privacy.purpose = 'support';
SELECT count_named('$m_nested');
	});

	# (9) log_min_duration_statement alone (log_statement off for the
	# session): the duration line carries the text.  A function that inserts:
	# its first call is judged by the analysis of its INSERT, the second (a
	# cached plan) by the executor's start.
	run(qq{
SET log_statement = 'none';
SET privacy.purpose = 'support';
INSERT INTO customers (id, name) VALUES (20, '$m_dur');
INSERT INTO plain_notes VALUES (3, 'plain-duration-OK4');
SELECT add_customer(21, '$m_f1');
SELECT add_customer(22, '$m_f2');
	});

	# (10) A deferred unique constraint on an encrypted column, checked at
	# COMMIT and at SET CONSTRAINTS ALL IMMEDIATE: statements PostgreSQL
	# runs without a snapshot, where the error's DETAIL quotes the opened
	# value ("Key (email)=(...)").
	$err{deferred} = run(qq{
SET privacy.purpose = 'support';
BEGIN;
INSERT INTO deferred_emails VALUES (1, '$m_defc');
INSERT INTO deferred_emails VALUES (2, '$m_defc');
COMMIT;
BEGIN;
INSERT INTO deferred_emails VALUES (3, '$m_defs');
INSERT INTO deferred_emails VALUES (4, '$m_defs');
SET CONSTRAINTS ALL IMMEDIATE;
ROLLBACK;
	});

	# Statements that touch no personal data.
	run(q{
SELECT 1;
INSERT INTO plain_notes VALUES (1, 'plain-marker-OK1');
	});
	$node->psql('app', "INSERT INTO plain_notes VALUES (2, 'plain-first-OK2')");
	run(q{
SET log_statement = 'none';
INSERT INTO plain_notes VALUES (4, 'plain-firstdur-OK5');
CREATE TABLE plain_more (id int, code varchar(12));
	});
	$err{plain} = run(q{
SELECT 1;
INSERT INTO plain_notes VALUES (1, 'plain-dup-OK3');
	});

	return \%err;
}
my $errs = battery();
my ($err_unique, $err_check, $err_nn, $err_syntax, $err_misc, $err_plain, $err_deferred) =
  @{$errs}{qw(unique check nn syntax misc plain deferred)};

my $log = slurp_file($node->logfile, $offset);

# ---------------------------------------------------------------------------
# The statements ran as intended (so that the log had something to leak).
# ---------------------------------------------------------------------------
$node->safe_psql('app', 'SELECT 1');
is($node->safe_psql('app', q{SET privacy.purpose = 'support';
	SELECT string_agg(id::text || ':' || coalesce(email::text, '-'), ',' ORDER BY id) FROM customers}),
	"1:$m_email,3:$m_bind,4:$m_prep,5:$m_exec,6:-,19:-,20:-,21:-,22:-", 'the inserts that should succeed did, sealed and readable');
like($err_unique, qr/DETAIL:  Key \(ssn\)=\($m_ssn\) already exists/,
	'client: the unique violation keeps its full DETAIL');
like($err_check, qr/DETAIL:  Failing row contains \(7, null, $m_check, -1, null\)/,
	'client: the check violation keeps its full DETAIL');
like($err_nn, qr/DETAIL:  Failing row contains \(8, $m_nn, null, null, null\)/,
	'client: the not-null violation keeps its DETAIL, with the value decrypted for the purpose');
like($err_syntax, qr/syntax error at or near "'$m_token'"/, 'client: the syntax error quotes the token');
like($err_misc, qr/invalid input syntax for type integer: "$m_age"/, 'client: the data exception quotes the input');
like($err_misc, qr/SQL statement "INSERT INTO customers \(id, name, age\) VALUES \(12, '$m_do', -5\)"/,
	'client: the DO block error keeps its CONTEXT');
like($err_misc, qr/column "nosuchcolumn" does not exist/, 'client: the error with a position');
like($log, qr/unterminated quoted string at or near "\?/, 'the unterminated literal reached the server');

# ---------------------------------------------------------------------------
# The server log: no marker, one assertion each.
# ---------------------------------------------------------------------------
for my $m (@markers)
{
	ok(index($log, $m) < 0, "server log: no trace of $m");
}

# ...while the same lines are there, redacted.
like($log, qr/LOG:  statement: INSERT INTO customers \(id, email, name\) VALUES \(\?, \?, \?\)/,
	'log_statement line: the statement is logged with its literals replaced');
like($log, qr/LOG:  duration: [0-9.]+ ms  statement: INSERT INTO customers \(id, name\) VALUES \(\?, \?\)/,
	'duration line: redacted as well');
is(PrivacyNode::log_count($node, qr/LOG:  duration: [0-9.]+ ms  statement: SELECT add_customer\(\?, \?\)/, $offset), 2,
	'a function that inserts: both calls redacted (analysed, then a cached plan)');
like($log, qr/LOG:  execute <unnamed>: INSERT INTO customers \(id, email, name\) VALUES \(\$1, \$2, \$3\);?\n.*DETAIL:  parameters: \$1 = \?, \$2 = \?, \$3 = \?/,
	'extended protocol: the statement keeps its $n, the parameters DETAIL loses the values');
like($log, qr/LOG:  duration: [0-9.]+ ms  bind P_1: INSERT INTO customers.*\n.*DETAIL:  parameters: \$1 = \?, \$2 = \?, \$3 = \?/,
	'named prepared statement: the bind duration line too');
like($log, qr/LOG:  statement: EXECUTE ins\(\?, \?, \?\);?\n.*DETAIL:  prepare: PREPARE ins/,
	'EXECUTE: judged by its PREPARE, both redacted');
like($log, qr/ERROR:  duplicate key value violates unique constraint "customers_ssn_key"\n.*DETAIL:  Left out of the server log because the statement touches personal data \(the client received it\)\.\n.*STATEMENT:  INSERT INTO customers \(id, name, ssn\) VALUES \(\?, \?, \?\)/,
	'unique violation: ERROR kept, DETAIL left out, STATEMENT redacted');
like($log, qr/ERROR:  syntax error at or near "\?"/, 'syntax error: the quoted token goes');
like($log, qr/ERROR:  syntax error at or near "oops"/, 'syntax error: a keyword-like token stays');
like($log, qr/ERROR:  invalid input syntax for type integer: "\?"/, 'data exception: the quoted input goes');
like($log, qr/CONTEXT:  SQL statement \?\n\s+PL\/pgSQL function inline_code_block line 1 at SQL statement\n.*STATEMENT:  DO \?/,
	'DO block: CONTEXT cut at the quote (the function line stays), body redacted');
like($log, qr/CONTEXT:  COPY customers, line 1: \?/, 'COPY: the quoted row goes');
like($log, qr/ERROR:  column "nosuchcolumn" does not exist at character 8\n.*STATEMENT:  SELECT nosuchcolumn FROM customers WHERE name = \?/,
	'error position: kept (before any literal), STATEMENT redacted');
like($log, qr/statement: SET privacy\.purpose = 'support'/, 'SET privacy.purpose is logged as is');
like($log, qr/Query Text: SELECT count\(\*\) FROM customers WHERE name = \?/,
	'auto_explain: the plan is logged, its query text redacted');
like($log, qr/Query Text: SELECT count\(\*\) FROM customers WHERE name = \?\n/,
	'auto_explain, nested: the dynamic statement of a function, its literal gone');

# Statements that touch no personal data: logged as before.
like($log, qr/LOG:  statement: INSERT INTO plain_notes VALUES \(1, 'plain-marker-OK1'\)/,
	'plain table: the log_statement line is unchanged');
like($log, qr/LOG:  duration: [0-9.]+ ms  statement: INSERT INTO plain_notes VALUES \(3, 'plain-duration-OK4'\)/,
	'plain table: the duration line is unchanged');
like($log, qr/LOG:  duration: [0-9.]+ ms  statement: INSERT INTO plain_notes VALUES \(4, 'plain-firstdur-OK5'\)/,
	'plain table, first statement after a SET: the duration line is unchanged (the extension\'s own catalog reads do not count)');
like($log, qr/LOG:  duration: [0-9.]+ ms  statement: CREATE TABLE plain_more \(id int, code varchar\(12\)\)/,
	'DDL on a plain table (the extension\'s event triggers read its catalog): unchanged');
like($log, qr/LOG:  statement: INSERT INTO plain_notes VALUES \(\?, \?\)/,
	'plain table, first statement of a session: the log_statement line is redacted (nothing known yet)');
like($log, qr/DETAIL:  Key \(id\)=\(1\) already exists\.\n.*STATEMENT:  INSERT INTO plain_notes VALUES \(1, 'plain-dup-OK3'\)/,
	'plain table: an error keeps its DETAIL and STATEMENT');
like($err_plain, qr/Key \(id\)=\(1\) already exists/, 'plain table: the client too');
like($err_deferred, qr/Key \(email\)=\(\Q$m_defc\E\) already exists.*Key \(email\)=\(\Q$m_defs\E\) already exists/s,
	'client: deferred unique violations at COMMIT and SET CONSTRAINTS keep their DETAIL');
like($log, qr/ERROR:  duplicate key value violates unique constraint "deferred_emails_email"\n.*DETAIL:  Left out of the server log because the statement touches personal data \(the client received it\)\.\n.*STATEMENT:  COMMIT/,
	'a deferred unique violation at COMMIT: the DETAIL left out');
$node->stop;

# ---------------------------------------------------------------------------
# pgaudit, and the csvlog and jsonlog destinations
# ---------------------------------------------------------------------------
my ($audited) = PrivacyNode::new_node('audited',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$audited->append_conf('postgresql.conf', $statement_logging . q{
shared_preload_libraries = 'privacy,pgaudit'
pgaudit.log = 'read, write, function'
pgaudit.log_parameter = on
pgaudit.role = 'auditor'
log_destination = 'stderr,csvlog,jsonlog'
logging_collector = on
log_directory = 'log'
});
$node = $audited;
$node->start;
setup($node);
$node->safe_psql('app', q{CREATE EXTENSION pgaudit; CREATE ROLE auditor;
GRANT SELECT, INSERT ON customers TO auditor});
battery();

# pgaudit's own ways of quoting a statement: a CSV field, doubling the
# quotes of a quoted identifier; the inner statement of a DO block (here
# dynamic SQL); an EXECUTE's parameters; a statement without a comma, not
# quoted at all (object auditing logs it too); the EXECUTE of a prepared
# call of a function that writes the table (its plan names no table: the
# line is judged by the statement it quotes).
my $m_qident  = marker('quoted-ident-secret-Q31@example.org');
my $m_dynamic = marker('dynamic-secret-Y32');
my $m_param   = marker('audit-param-secret-P33');
my $m_bare    = marker('bare-field-secret-N34');
my $m_call    = marker('prepared-call-secret-C35');
run(qq{
SET privacy.purpose = 'support';
INSERT INTO "customers" (id, email, name) VALUES (31, '$m_qident', 'Q31');
DO \$\$ BEGIN EXECUTE format('INSERT INTO customers (id, name) VALUES (32, %L)', '$m_dynamic'); END \$\$;
PREPARE audited(bigint, text) AS INSERT INTO customers (id, name) VALUES (\$1, \$2);
EXECUTE audited(33, '$m_param');
SELECT id FROM customers WHERE name = '$m_bare';
PREPARE call_add(bigint, text) AS SELECT add_customer(\$1, \$2);
EXECUTE call_add(35, '$m_call');
});
is($node->safe_psql('app', q{SET privacy.purpose = 'support';
	SELECT string_agg(id::text, ',' ORDER BY id) FROM customers WHERE id BETWEEN 31 AND 35}),
	'31,32,33,35', 'audited: the inserts went in');
$node->stop;	# the collector has written everything

# every file of every destination
my %files;
my $logdir = $node->data_dir . '/log';
opendir(my $dh, $logdir) or die "$logdir: $!";
for my $f (sort grep { -f "$logdir/$_" } readdir $dh)
{
	my ($kind) = $f =~ /\.(log|csv|json)$/ or next;
	$files{$kind} .= slurp_file("$logdir/$f");
}
closedir $dh;
$files{pg_ctl} = slurp_file($node->logfile);
ok(length($files{log} // '') > 0 && length($files{csv} // '') > 0 && length($files{json} // '') > 0,
	'audited: the collector wrote stderr, csvlog and jsonlog files');
for my $m (@markers)
{
	is_deeply([ grep { index($files{$_}, $m) >= 0 } sort keys %files ], [],
		"audited, every destination: no trace of $m");
}

my ($stderr, $csv, $json) = @files{qw(log csv json)};
like($stderr, qr/AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,"INSERT INTO ""customers"" \(id, email, name\) VALUES \(\?, \?, \?\);",<none>/,
	'pgaudit: the statement as a CSV field, its quoted identifier doubled: constants gone, the fields kept');
like($stderr, qr/AUDIT: SESSION,\d+,2,WRITE,INSERT,,,"INSERT INTO customers \(id, name\) VALUES \(\?, \?\)",<none>/,
	'pgaudit: the inner statement of a DO block, dynamic SQL: constants gone');
like($stderr, qr/AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,"PREPARE audited\(bigint, text\) AS INSERT INTO customers \(id, name\) VALUES \(\$1, \$2\);",\?/,
	'pgaudit: the parameters of an EXECUTE go');
like($stderr, qr/AUDIT: OBJECT,\d+,\d+,READ,SELECT,TABLE,public\.customers,SELECT id FROM customers WHERE name = \?;,<none>/,
	'pgaudit, object auditing: a statement field without quotes, its constant gone');
like($stderr, qr/AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,"INSERT INTO plain_notes VALUES \(1, 'plain-marker-OK1'\);",<none>/,
	'pgaudit: a statement that touches no personal data is logged as before');
like($csv, qr/"AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,""INSERT INTO """"customers"""" \(id, email, name\) VALUES \(\?, \?, \?\);"",<none>"/,
	'csvlog: the redacted AUDIT line, in its own quoting');
like($csv, qr/statement: INSERT INTO customers \(id, email, name\) VALUES \(\?, \?, \?\)/,
	'csvlog: the log_statement line redacted');
like($csv, qr/,"INSERT INTO customers \(id, name, ssn\) VALUES \(\?, \?, \?\);",/,
	'csvlog: the query field of an error redacted');
like($json, qr/"message":"AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,\\"INSERT INTO \\"\\"customers\\"\\" \(id, email, name\) VALUES \(\?, \?, \?\);\\",<none>"/,
	'jsonlog: the redacted AUDIT line, in its own quoting');
like($json, qr/"message":"statement: INSERT INTO customers \(id, email, name\) VALUES \(\?, \?, \?\)/,
	'jsonlog: the log_statement line redacted');
like($json, qr/"statement":"INSERT INTO customers \(id, name, ssn\) VALUES \(\?, \?, \?\);"/,
	'jsonlog: the statement field of an error redacted');

done_testing();
