/*
 * redact_text.h — take the values out of SQL text before it is logged.
 *
 * Plain C with no server headers, so unit tests link it alone.  The server
 * side (redact.c) decides which log lines need it; this part only knows
 * PostgreSQL's lexical rules: string constants ('...', E'...', U&'...',
 * B'...', X'...', N'...'), dollar quoting ($$...$$, $tag$...$tag$), numeric
 * constants, quoted identifiers, comments (nested block comments too), and
 * parameters ($1), which are kept.
 */
#ifndef PRIVACY_REDACT_TEXT_H
#define PRIVACY_REDACT_TEXT_H

#include <stddef.h>

/* What replaces each constant. */
#define REDACT_PLACEHOLDER '?'

/*
 * How plain '...' strings treat a backslash.  With
 * standard_conforming_strings on it is an ordinary character; off, it
 * escapes the next one (as in E'...').  A log hook cannot be sure which
 * setting was in force when the text was parsed (SET in the same query
 * string), so REDACT_STRINGS_EITHER replaces whatever either reading takes
 * for a constant: it may replace a little more, never less.
 */
typedef enum RedactStrings
{
	REDACT_STRINGS_STANDARD,
	REDACT_STRINGS_ESCAPE,
	REDACT_STRINGS_EITHER
} RedactStrings;

/*
 * Copy in[0..len) to out with every string and numeric constant replaced by
 * REDACT_PLACEHOLDER (adjacent constants, such as 'a' 'b' continued over a
 * newline, may share one).  out must have room for len + 1 bytes; the
 * result is NUL-terminated and its length returned.  An unterminated
 * constant runs to the end of the text.  A NUL byte in the input ends it.
 *
 * offsets, if not NULL, holds noffsets byte offsets into in (at most len);
 * each is replaced by the offset of the same place in out (an offset inside
 * a constant maps to its placeholder).
 */
extern size_t redact_sql(const char *in, size_t len, RedactStrings mode,
						 char *out, size_t *offsets, int noffsets);

/*
 * A log message that may quote SQL (auto_explain's "Query Text:" and plan,
 * another extension's line), copied to out with every string constant it
 * holds replaced by REDACT_PLACEHOLDER, and inside every double-quoted span
 * (a quoted identifier, or a statement quoted as a CSV field: its doubled
 * quotes undone, then read as SQL) every constant, numbers too.  Numbers
 * outside double quotes are kept: in a message they are its own counts,
 * costs and ids.  A doubled quote stays doubled, so a CSV field stays one.
 * out must have room for len + 1 bytes; returns the length.
 */
extern size_t redact_message_literals(const char *in, size_t len, RedactStrings mode,
									  char *out);

/*
 * pgaudit's AUDIT line: "AUDIT: " then CSV fields (audit type, statement
 * id, substatement id, class, command, object type, object name,
 * statement, parameter, and with pgaudit.log_rows the rows).  The
 * statement field, whichever statement it holds (the client's, one of a
 * function or a DO block, dynamic SQL), has its constants replaced: read
 * as SQL once its CSV quoting is undone, and quoted again.  The parameter
 * field, unless <none> or <not logged>, becomes REDACT_PLACEHOLDER, as
 * does a later field that is not a number.  The other fields are kept.
 * From the field where the line stops being CSV on, nothing is kept; a text
 * without the "AUDIT: " prefix is treated as redact_message_literals
 * does.  out must have room for len + 1 bytes; returns the length.
 */
extern size_t redact_audit_line(const char *in, size_t len, RedactStrings mode, char *out);

/*
 * The statement field of pgaudit's AUDIT line, its CSV quoting undone, into
 * out (room for len + 1 bytes, NUL-terminated); returns its length, or -1
 * for a text that is not such a line.
 */
extern long redact_audit_statement(const char *in, size_t len, char *out);

/*
 * Call fn for every name the text mentions: identifiers as written
 * (quoted = 0: fold them with redact_fold_name), the contents of quoted
 * identifiers (quoted = 1; a doubled "" inside is passed as is), and every
 * word inside string and dollar-quoted constants, as written, once with
 * quoted = 0 and once with quoted = 1, since a function body or dynamic SQL
 * names its tables there.  A word is a run of identifier characters that
 * does not start with a digit.  Stops at the first nonzero return of fn
 * and returns it; returns 0 otherwise.
 */
typedef int (*RedactNameFn) (const char *name, size_t len, int quoted, void *arg);
extern int	redact_sql_names(const char *in, size_t len, RedactStrings mode,
							 RedactNameFn fn, void *arg);

/*
 * How many statements the text holds (non-empty runs of tokens between
 * semicolons; comments and white space do not count), the larger count of
 * the two readings under REDACT_STRINGS_EITHER; and the first word of the
 * first statement, folded, in first_word (outsize bytes, "" if none).
 */
extern int	redact_sql_statements(const char *in, size_t len, RedactStrings mode,
								  char *first_word, size_t outsize);

/*
 * Fold an unquoted identifier as PostgreSQL does for UTF-8 and other
 * multibyte server encodings (ASCII letters only), truncated to outsize - 1
 * bytes; returns the length.
 */
extern size_t redact_fold_name(const char *name, size_t len, char *out, size_t outsize);

/*
 * Each line of in cut at its first quote character (' or "), with
 * REDACT_PLACEHOLDER in place of the rest of that line: what is left of a
 * CONTEXT such as 'SQL statement "INSERT ..."' or 'COPY t, line 1, column
 * c: "..."'.  out must have room for len + 1 bytes; returns the length.
 */
extern size_t redact_lines_at_quote(const char *in, size_t len, char *out);

/*
 * What a message quotes, taken out: everything between its first and its
 * last double quote (to the end if there is only one) is replaced by
 * REDACT_PLACEHOLDER, or, with as_sql, by itself passed through redact_sql
 * (so that 'syntax error at or near "FROM"' keeps its keyword while a
 * constant there goes).  For messages that quote an input value, such as
 * 'invalid input syntax for type integer: "..."'; a value that itself
 * contains a double quote cannot end the span early.  out must have room
 * for len + 2 bytes; returns the length.
 */
extern size_t redact_message_quoted(const char *in, size_t len, int as_sql, char *out);

#endif
