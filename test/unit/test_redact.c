/*
 * test_redact.c — the lexer that takes constants out of logged SQL: every
 * kind of constant, doubled quotes and backslash escapes under both
 * settings of standard_conforming_strings (and the union of both), dollar
 * quotes with and without tags, comments that contain quotes, unterminated
 * constants, multibyte UTF-8, digits inside identifiers, parameters, the
 * offset map, the names a text mentions, the helpers for CONTEXT lines
 * and quoted message values, messages that quote SQL (as CSV fields too)
 * and pgaudit's AUDIT line.
 */
#include <stdlib.h>
#include <string.h>

#include "redact_text.h"
#include "unit.h"

static char out[4096];

static const char *
red(const char *in, RedactStrings mode)
{
	redact_sql(in, strlen(in), mode, out, NULL, 0);
	return out;
}

static int
is(const char *in, RedactStrings mode, const char *want)
{
	const char *got = red(in, mode);

	if (strcmp(got, want) != 0)
	{
		printf("# in:   %s\n# got:  %s\n# want: %s\n", in, got, want);
		return 0;
	}
	return 1;
}

/* Same result in all three modes. */
static int
all(const char *in, const char *want)
{
	return is(in, REDACT_STRINGS_STANDARD, want) &&
		is(in, REDACT_STRINGS_ESCAPE, want) &&
		is(in, REDACT_STRINGS_EITHER, want);
}

/* The secret never survives the EITHER mode. */
static int
gone_either(const char *in, const char *secret)
{
	return strstr(red(in, REDACT_STRINGS_EITHER), secret) == NULL;
}

/* names */
struct names
{
	char		seen[1024];
};

static int
collect(const char *name, size_t len, int quoted, void *arg)
{
	struct names *n = arg;
	char		buf[128];

	if (quoted)
	{
		if (len > sizeof(buf) - 1)
			len = sizeof(buf) - 1;
		memcpy(buf, name, len);
		buf[len] = '\0';
	}
	else
		redact_fold_name(name, len, buf, sizeof(buf));
	strcat(n->seen, quoted ? "\"" : "");
	strcat(n->seen, buf);
	strcat(n->seen, " ");
	return 0;
}

static const char *
names(const char *in, RedactStrings mode)
{
	static struct names n;

	n.seen[0] = '\0';
	redact_sql_names(in, strlen(in), mode, collect, &n);
	return n.seen;
}

static int
find_customers(const char *name, size_t len, int quoted, void *arg)
{
	char		buf[64];

	(void) arg;
	if (quoted)
		return len == 9 && memcmp(name, "customers", 9) == 0;
	redact_fold_name(name, len, buf, sizeof(buf));
	return strcmp(buf, "customers") == 0;
}

static int
mentions_customers(const char *in)
{
	return redact_sql_names(in, strlen(in), REDACT_STRINGS_EITHER, find_customers, NULL) != 0;
}

static int
same(const char *what, const char *in, const char *want)
{
	if (strcmp(out, want) != 0)
	{
		printf("# %s in:   %s\n# got:  %s\n# want: %s\n", what, in, out, want);
		return 0;
	}
	return 1;
}

/* one case of a redaction: input, expected output, what it shows */
typedef struct RedactCase
{
	const char *in;
	const char *want;
	const char *what;
} RedactCase;

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

static int
msg_is(const char *in, const char *want)
{
	redact_message_literals(in, strlen(in), REDACT_STRINGS_EITHER, out);
	return same("message", in, want);
}

static int
audit_is(const char *in, const char *want)
{
	redact_audit_line(in, strlen(in), REDACT_STRINGS_EITHER, out);
	return same("AUDIT", in, want);
}

int
main(void)
{
	size_t		offs[3];
	size_t		n;

	/* plain strings and numbers */
	CHECK(all("INSERT INTO t1 VALUES ('alice', 42)", "INSERT INTO t1 VALUES (?, ?)"),
		  "string and integer replaced, t1 kept");
	CHECK(all("SELECT 3.14, .5, 1e10, 1.5E-3, 2e+7, 0x1F, 1_000", "SELECT ?, ?, ?, ?, ?, ?, ?"),
		  "every numeric form");
	CHECK(all("SELECT a1, b_2, x$3, \"c 4\" FROM s9.t10", "SELECT a1, b_2, x$3, \"c 4\" FROM s9.t10"),
		  "digits inside identifiers and quoted identifiers are kept");
	CHECK(all("SELECT $1, $23 FROM t WHERE a = $2", "SELECT $1, $23 FROM t WHERE a = $2"),
		  "parameters are kept");
	CHECK(all("SELECT 1-2, 3::int, a[4:5]", "SELECT ?-?, ?::int, a[?:?]"),
		  "numbers next to operators, casts and slices");
	CHECK(all("SELECT -7", "SELECT -?"), "a minus sign stays, the number goes");
	CHECK(all("", ""), "empty text");
	CHECK(all("SELECT", "SELECT"), "no constant at all");

	/* doubled quotes */
	CHECK(all("SELECT 'it''s a secret'", "SELECT ?"), "doubled quote inside a string");
	CHECK(all("SELECT '''', ''", "SELECT ?, ?"), "strings made of quotes, empty string");
	CHECK(all("SELECT 'a''b''c''d', 'x'", "SELECT ?, ?"), "many doubled quotes");
	CHECK(all("SELECT \"we\"\"ird\" FROM t WHERE c = 'v'", "SELECT \"we\"\"ird\" FROM t WHERE c = ?"),
		  "doubled quote in a quoted identifier");

	/* backslashes */
	CHECK(all("SELECT E'it\\'s secret'", "SELECT ?"), "E'' with a backslash-escaped quote");
	CHECK(all("SELECT e'\\\\', 'x'", "SELECT ?, ?"), "e'' ending in an escaped backslash");
	CHECK(all("SELECT E'\\''", "SELECT ?"), "E'\\'' is one constant");
	CHECK(is("SELECT 'a\\', 'secret'", REDACT_STRINGS_STANDARD, "SELECT ?, ?"),
		  "standard strings: backslash is ordinary");
	CHECK(is("SELECT 'a\\', secret'", REDACT_STRINGS_ESCAPE, "SELECT ?"),
		  "escape strings: backslash escapes the quote");
	CHECK(gone_either("SELECT 'a\\', secret'", "secret"),
		  "either: a value hidden under one reading is hidden");
	CHECK(gone_either("SELECT 'a\\' , 'secret'", "secret"),
		  "either: a value hidden under the other reading is hidden");
	CHECK(is("SELECT 'x\\' || name || '\\y'", REDACT_STRINGS_STANDARD, "SELECT ? || name || ?"),
		  "standard strings: names between backslash-ended constants survive");

	/* other prefixes */
	CHECK(all("SELECT U&'d\\0061t\\+000061', U&\"d!0061\" UESCAPE '!'",
			  "SELECT ?, U&\"d!0061\" UESCAPE ?"), "U&'' constants and U&\"\" identifiers");
	CHECK(all("SELECT B'1010', X'1F', N'nat'", "SELECT ?, ?, ?"), "bit, hex and national strings");
	CHECK(all("SELECT DATE '2024-01-01', interval '1 day'", "SELECT DATE ?, interval ?"),
		  "typed constants keep their type name");
	CHECK(all("SELECT be'x'", "SELECT be?"), "a longer identifier before a quote is not a prefix");

	/* dollar quoting */
	CHECK(all("SELECT $$it's $1 secret$$", "SELECT ?"), "$$ body with quote and $1 inside");
	CHECK(all("SELECT $tag$a $$ b $other$ c$tag$, 2", "SELECT ?, ?"),
		  "a tag: other delimiters inside do not end it");
	CHECK(all("SELECT $a$x$$a$b$a$", "SELECT ?b$a$"), "the first matching delimiter ends the body, after a false start");
	CHECK(all("SELECT $a$x$A$y$a$", "SELECT ?"), "tags are case-sensitive");
	CHECK(all("SELECT x$a$ FROM t", "SELECT x$a$ FROM t"), "$ inside an identifier starts nothing");
	CHECK(all("SELECT $1$", "SELECT $1$"), "$1$ is a parameter, not a delimiter");
	CHECK(all("DO $body$ BEGIN INSERT INTO c VALUES ('s'); END $body$",
			  "DO ?"), "a DO block is one constant");
	CHECK(all("SELECT $é$secret$é$", "SELECT ?"), "a multibyte tag");

	/* comments */
	CHECK(all("SELECT 1 -- it's 'not' a string\n, 'x'", "SELECT ? -- it's 'not' a string\n, ?"),
		  "line comment containing quotes");
	CHECK(all("SELECT /* it's */ 'x' /* \"q */", "SELECT /* it's */ ? /* \"q */"),
		  "block comments containing quotes");
	CHECK(all("SELECT /* a /* nested ' */ still */ 'x'", "SELECT /* a /* nested ' */ still */ ?"),
		  "nested block comment");
	CHECK(all("SELECT 'a--b', 'c/*d'", "SELECT ?, ?"), "comment markers inside strings");
	CHECK(all("SELECT 1--2\n", "SELECT ?--2\n"), "-- right after a number");
	CHECK(all("SELECT '-- x' -- 'y'", "SELECT ? -- 'y'"), "string then comment");
	CHECK(all("SELECT /* unterminated 'x'", "SELECT /* unterminated 'x'"),
		  "unterminated block comment runs to the end");

	/* unterminated constants */
	CHECK(all("INSERT INTO t VALUES ('alice-secret", "INSERT INTO t VALUES (?"),
		  "unterminated string runs to the end");
	CHECK(all("SELECT E'abc\\", "SELECT ?"), "unterminated E'' ending in a backslash");
	CHECK(all("SELECT $q$ secret", "SELECT ?"), "unterminated dollar quote");
	CHECK(all("SELECT \"unterminated 'x'", "SELECT \"unterminated 'x'"),
		  "unterminated quoted identifier: no constant");
	CHECK(all("SELECT '", "SELECT ?"), "a lone quote");
	CHECK(all("SELECT 1e", "SELECT ?"), "a number ending in an exponent marker");

	/* multibyte */
	CHECK(all("INSERT INTO café VALUES ('Zoë ☃', 'Ünï''cødé')", "INSERT INTO café VALUES (?, ?)"),
		  "UTF-8 in identifiers and strings");
	CHECK(all("SELECT naïve1, 'x' FROM \"日本\"", "SELECT naïve1, ? FROM \"日本\""),
		  "UTF-8 identifiers with digits");
	CHECK(all("SELECT é'x'", "SELECT é?"), "a multibyte letter before a quote is no prefix");

	/* NUL ends the text */
	{
		const char  in[] = "SELECT 'a'\0'secret'";

		n = redact_sql(in, sizeof(in) - 1, REDACT_STRINGS_EITHER, out, NULL, 0);
		CHECK(n == 8 && strcmp(out, "SELECT ?") == 0, "a NUL byte ends the text");
	}

	/* adjacent constants share a placeholder only when they touch */
	CHECK(all("SELECT 'a' 'b'", "SELECT ? ?"), "separate constants keep separate placeholders");
	CHECK(all("SELECT 'a''b'", "SELECT ?"), "one constant, one placeholder");

	/* offsets */
	offs[0] = 0;
	offs[1] = 22;				/* inside 'alice' */
	offs[2] = 30;				/* the closing parenthesis */
	n = redact_sql("INSERT INTO t VALUES ('alice', 'bob')", 37, REDACT_STRINGS_EITHER, out, offs, 3);
	CHECK(strcmp(out, "INSERT INTO t VALUES (?, ?)") == 0, "offset text");
	CHECK(offs[0] == 0, "offset at the start stays");
	CHECK(offs[1] == 22, "offset inside a constant points at its placeholder");
	CHECK(offs[2] == 24, "offset after a constant moves back");
	offs[0] = 37;
	redact_sql("INSERT INTO t VALUES ('alice', 'bob')", 37, REDACT_STRINGS_EITHER, out, offs, 1);
	CHECK(offs[0] == n, "offset at the end maps to the end");

	/* names */
	CHECK(strcmp(names("SELECT a FROM Public.\"Customers\" c WHERE x = 'y z'", REDACT_STRINGS_STANDARD),
				 "select a from public \"Customers c where x y \"y z \"z ") == 0,
		  "names: identifiers folded, quoted kept, words of constants both ways");
	CHECK(mentions_customers("insert into CUSTOMERS values (1)"), "names: unquoted, folded");
	CHECK(mentions_customers("insert into \"customers\" values (1)"), "names: quoted");
	CHECK(!mentions_customers("insert into \"Customers\" values (1)"), "names: quoted keeps case");
	CHECK(mentions_customers("DO $$ BEGIN INSERT INTO customers VALUES ('x'); END $$"),
		  "names: inside a dollar-quoted body");
	CHECK(mentions_customers("SELECT format('INSERT INTO %I', 'customers')"),
		  "names: inside a string constant");
	CHECK(!mentions_customers("SELECT 1 -- customers\n"), "names: not in comments");
	CHECK(!mentions_customers("SELECT customers_old, xcustomers FROM t"), "names: whole words only");
	CHECK(mentions_customers("SELECT 'a\\', customers, '"),
		  "names: either reading of a backslash");

	/* statements */
	{
		char		w[64];

		CHECK(redact_sql_statements("SET log_statement = 'none'", 26, REDACT_STRINGS_EITHER, w, sizeof(w)) == 1 &&
			  strcmp(w, "set") == 0, "statements: one SET");
		CHECK(redact_sql_statements("  -- c\n Reset x;  ", 19, REDACT_STRINGS_EITHER, w, sizeof(w)) == 1 &&
			  strcmp(w, "reset") == 0, "statements: comments, trailing semicolon");
		CHECK(redact_sql_statements("SET a = 'x;y'", 13, REDACT_STRINGS_EITHER, w, sizeof(w)) == 1,
			  "statements: a semicolon inside a constant");
		CHECK(redact_sql_statements("SET a = 1; INSERT INTO t VALUES ('s')", 37, REDACT_STRINGS_EITHER, w, sizeof(w)) == 2,
			  "statements: two");
		CHECK(redact_sql_statements("SET a = 'x\\'; INSERT ... '", 26, REDACT_STRINGS_EITHER, w, sizeof(w)) == 2,
			  "statements: either reading counts the larger number");
		CHECK(redact_sql_statements(";;", 2, REDACT_STRINGS_EITHER, w, sizeof(w)) == 0 && w[0] == '\0',
			  "statements: none");
		CHECK(redact_sql_statements("'x'", 3, REDACT_STRINGS_EITHER, w, sizeof(w)) == 1 && w[0] == '\0',
			  "statements: no first word");
	}

	/* CONTEXT lines */
	{
		const char *in = "SQL statement \"INSERT INTO c VALUES ('s')\"\n"
			"PL/pgSQL function f(text) line 3 at SQL statement\n"
			"COPY c, line 1, column email: \"alice\"";

		redact_lines_at_quote(in, strlen(in), out);
		CHECK(strcmp(out, "SQL statement ?\nPL/pgSQL function f(text) line 3 at SQL statement\n"
					 "COPY c, line 1, column email: ?") == 0, "context lines cut at their first quote");
		redact_lines_at_quote("unnamed portal with parameters: $1 = 'x'", 40, out);
		CHECK(strcmp(out, "unnamed portal with parameters: $1 = ?") == 0, "portal parameters");
	}

	/* quoted message values */
	redact_message_quoted("invalid input syntax for type integer: \"alice\"", 46, 0, out);
	CHECK(strcmp(out, "invalid input syntax for type integer: \"?\"") == 0, "quoted value");
	redact_message_quoted("invalid value \"a\"b\" for \"x\"", 27, 0, out);
	CHECK(strcmp(out, "invalid value \"?\"") == 0, "first to last quote, inner quotes included");
	redact_message_quoted("syntax error at or near \"FROM\"", 30, 1, out);
	CHECK(strcmp(out, "syntax error at or near \"FROM\"") == 0, "as SQL: a keyword stays");
	redact_message_quoted("syntax error at or near \"'alice'\"", 33, 1, out);
	CHECK(strcmp(out, "syntax error at or near \"?\"") == 0, "as SQL: a constant goes");
	redact_message_quoted("unterminated quoted string at or near \"'alice", 44, 1, out);
	CHECK(strcmp(out, "unterminated quoted string at or near \"?") == 0, "one quote: to the end");
	redact_message_quoted("no quote here", 13, 0, out);
	CHECK(strcmp(out, "no quote here") == 0, "no quote, no change");
	redact_message_quoted("empty \"\"", 8, 0, out);
	CHECK(strcmp(out, "empty \"?\"") == 0, "empty span");

	{
		size_t		i;

		/* messages that quote SQL: literals go, also inside double quotes */
		static const RedactCase messages[] = {
			{"Query Text: SELECT count(*) FROM c WHERE name = 'alice'\nFilter: (name = 'alice'::text)",
			 "Query Text: SELECT count(*) FROM c WHERE name = ?\nFilter: (name = ?::text)",
			 "message: string constants replaced, in a query text and in a plan"},
			{"cost=0.00..25.88 rows=6 width=32, relation \"customers\"",
			 "cost=0.00..25.88 rows=6 width=32, relation \"customers\"",
			 "message: its own numbers and a quoted identifier stay"},
			{"x,\"INSERT INTO \"\"c\"\" VALUES (42, 'a\"\"b')\",y",
			 "x,\"INSERT INTO \"\"c\"\" VALUES (?, ?)\",y",
			 "message: a statement quoted as a CSV field: its constants go, numbers too, quoting kept"},
			{"json '{\"email\": \"alice@example.org\"}' here",
			 "json ? here",
			 "message: double quotes inside a string constant are part of it"},
			{"E'it\\'s alice' and $t$bob$t$",
			 "? and ?",
			 "message: escape strings and dollar quoting"},
			{"unterminated \"SELECT 'alice",
			 "unterminated \"SELECT ?",
			 "message: an unterminated quoted statement keeps nothing of its constant"},
		};

		/* pgaudit's line */
		static const RedactCase audit_lines[] = {
			{"AUDIT: SESSION,1,1,WRITE,INSERT,,,\"INSERT INTO \"\"customers\"\" (id, email) VALUES (7, 'alice@example.org')\",<not logged>",
			 "AUDIT: SESSION,1,1,WRITE,INSERT,,,\"INSERT INTO \"\"customers\"\" (id, email) VALUES (?, ?)\",<not logged>",
			 "AUDIT: a quoted statement field (doubled quotes) loses its constants, the other fields stay"},
			{"AUDIT: OBJECT,3,1,READ,SELECT,TABLE,public.customers,SELECT id FROM customers WHERE id = 42,<none>",
			 "AUDIT: OBJECT,3,1,READ,SELECT,TABLE,public.customers,SELECT id FROM customers WHERE id = ?,<none>",
			 "AUDIT: an unquoted statement field loses its numbers too; ids and names stay"},
			{"AUDIT: SESSION,4,1,WRITE,INSERT,,,\"PREPARE p AS INSERT INTO c VALUES ($1, $2)\",\"42,alice@example.org\"",
			 "AUDIT: SESSION,4,1,WRITE,INSERT,,,\"PREPARE p AS INSERT INTO c VALUES ($1, $2)\",?",
			 "AUDIT: the parameter field goes"},
			{"AUDIT: SESSION,4,1,READ,SELECT,,,SELECT f($1),42",
			 "AUDIT: SESSION,4,1,READ,SELECT,,,SELECT f($1),?",
			 "AUDIT: a single unquoted parameter goes too"},
			{"AUDIT: SESSION,5,1,WRITE,UPDATE,TABLE,public.c,UPDATE c SET a = 1,<none>,17",
			 "AUDIT: SESSION,5,1,WRITE,UPDATE,TABLE,public.c,UPDATE c SET a = ?,<none>,17",
			 "AUDIT: the rows field stays"},
			{"AUDIT: SESSION,5,1,WRITE,UPDATE,TABLE,public.c,UPDATE c SET a = 1,<none>,alice",
			 "AUDIT: SESSION,5,1,WRITE,UPDATE,TABLE,public.c,UPDATE c SET a = ?,<none>,?",
			 "AUDIT: a later field that is not a number goes"},
			{"AUDIT: SESSION,6,1,WRITE,INSERT,,,\"INSERT INTO c VALUES ('alice')\"junk,after",
			 "AUDIT: SESSION,6,1,WRITE,INSERT,,,?",
			 "AUDIT: from the field where the line stops being CSV, nothing is kept"},
			{"AUDIT: SESSION,7,1,WRITE,INSERT,,,\"INSERT INTO c VALUES ('alice",
			 "AUDIT: SESSION,7,1,WRITE,INSERT,,,\"INSERT INTO c VALUES (?",
			 "AUDIT: an unterminated statement field keeps nothing of its constant"},
			{"not pgaudit: 'alice'",
			 "not pgaudit: ?",
			 "AUDIT: a text without the prefix is redacted as a message"},
		};
		for (i = 0; i < lengthof(messages); i++)
			CHECK(msg_is(messages[i].in, messages[i].want), messages[i].what);
		for (i = 0; i < lengthof(audit_lines); i++)
			CHECK(audit_is(audit_lines[i].in, audit_lines[i].want), audit_lines[i].what);
	}
	{
		const char *line = "AUDIT: SESSION,4,1,WRITE,INSERT,TABLE,\"a,b\",\"INSERT INTO \"\"c\"\" VALUES ($1)\",\"1,x\"";

		CHECK(redact_audit_statement(line, strlen(line), out) == 27 &&
			  strcmp(out, "INSERT INTO \"c\" VALUES ($1)") == 0,
			  "AUDIT: the statement field, its quoting undone, past a quoted object name");
		line = "AUDIT: SESSION,4,1,READ,SELECT,,,SELECT 1,<none>";
		CHECK(redact_audit_statement(line, strlen(line), out) == 8 && strcmp(out, "SELECT 1") == 0,
			  "AUDIT: an unquoted statement field");
		line = "AUDIT: SESSION,4,1,READ";
		CHECK(redact_audit_statement(line, strlen(line), out) == -1, "AUDIT: no statement field, -1");
		line = "AUDIT: SESSION,\"4\"x,1,READ,SELECT,,,SELECT 1,<none>";
		CHECK(redact_audit_statement(line, strlen(line), out) == -1, "AUDIT: not CSV before the statement, -1");
		CHECK(redact_audit_statement("LOG: x", 6, out) == -1, "AUDIT: not pgaudit's line, -1");
	}
	{
		/* never longer than the input, whatever the input */
		const char *pieces[] = {"AUDIT: ", ",", "\"", "\"\"", "'", "a", "7", "$$", "E'\\'", "\n", "<none>"};
		int			ok = 1;
		unsigned int seed = 12345;
		int			t;

		for (t = 0; t < 20000 && ok; t++)
		{
			char		in[256];
			size_t		len = 0;
			int			k;
			int			np = 1 + (int) ((seed = seed * 1103515245u + 12345u) >> 16) % 30;

			for (k = 0; k < np; k++)
			{
				const char *p = pieces[((seed = seed * 1103515245u + 12345u) >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];

				if (len + strlen(p) >= sizeof(in))
					break;
				memcpy(in + len, p, strlen(p));
				len += strlen(p);
			}
			in[len] = '\0';
			if (redact_audit_line(in, len, REDACT_STRINGS_EITHER, out) > len || strlen(out) > len ||
				redact_message_literals(in, len, REDACT_STRINGS_EITHER, out) > len || strlen(out) > len)
			{
				printf("# longer: %s\n", in);
				ok = 0;
			}
		}
		CHECK(ok, "AUDIT and message redaction never lengthen a text (20000 random texts)");
	}

	UNIT_DONE();
}
