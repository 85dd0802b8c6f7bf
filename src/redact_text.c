/*
 * redact_text.c — a small lexer for SQL text, to take constants out of log
 * lines (see redact_text.h; redact.c decides which lines).
 *
 * It follows the token rules of PostgreSQL's scan.l closely enough to find
 * where each constant starts and ends, and no further: it does not decode
 * escapes or check anything, because all it must get right is the extent.
 * Where a wrong extent could leave part of a value in the clear (the
 * meaning of a backslash in '...', which depends on
 * standard_conforming_strings), REDACT_STRINGS_EITHER takes the union of
 * both readings.  Bytes at or above 0x80 are identifier characters, as in
 * scan.l: in every server encoding they are whole multibyte characters, so
 * a quote or a backslash byte is never part of one.
 */
#include "redact_text.h"

#include <stdlib.h>
#include <string.h>

typedef enum TokKind
{
	TOK_SPACE,
	TOK_COMMENT,
	TOK_IDENT,
	TOK_QIDENT,
	TOK_STRING,					/* any quoted constant, dollar quoting too */
	TOK_NUMBER,
	TOK_PARAM,
	TOK_OTHER
} TokKind;

static int
is_ident_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
}

static int
is_ident_cont(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* End of a '...' body starting after the opening quote at i. */
static size_t
scan_quoted(const char *s, size_t len, size_t i, int backslash_escapes)
{
	while (i < len)
	{
		if (backslash_escapes && s[i] == '\\')
			i += 2;
		else if (s[i] == '\'')
		{
			if (i + 1 < len && s[i + 1] == '\'')
				i += 2;
			else
				return i + 1;
		}
		else
			i++;
	}
	return len;
}

/* End of a "..." body starting after the opening quote at i. */
static size_t
scan_double_quoted(const char *s, size_t len, size_t i)
{
	while (i < len)
	{
		if (s[i] == '"')
		{
			if (i + 1 < len && s[i + 1] == '"')
				i += 2;
			else
				return i + 1;
		}
		else
			i++;
	}
	return len;
}

/*
 * If a dollar-quote delimiter ($$ or $tag$, the tag an identifier without
 * $) starts at i, its length; else 0.
 */
static size_t
dollar_delimiter(const char *s, size_t len, size_t i)
{
	size_t		j = i + 1;

	if (j < len && is_ident_start((unsigned char) s[j]))
	{
		j++;
		while (j < len && is_ident_cont((unsigned char) s[j]) && s[j] != '$')
			j++;
	}
	if (j < len && s[j] == '$')
		return j + 1 - i;
	return 0;
}

/*
 * The token starting at i (< len): its kind, and the return value is where
 * it ends.  For a TOK_STRING, *body and *body_end give its contents.
 */
static size_t
next_token(const char *s, size_t len, size_t i, int escape_strings,
		   TokKind *kind, size_t *body, size_t *body_end)
{
	unsigned char c = (unsigned char) s[i];
	size_t		j;

	*body = *body_end = i;
	if (is_space(c))
	{
		for (j = i + 1; j < len && is_space((unsigned char) s[j]); j++)
			;
		*kind = TOK_SPACE;
		return j;
	}
	if (c == '-' && i + 1 < len && s[i + 1] == '-')
	{
		for (j = i + 2; j < len && s[j] != '\n' && s[j] != '\r'; j++)
			;
		*kind = TOK_COMMENT;
		return j;
	}
	if (c == '/' && i + 1 < len && s[i + 1] == '*')
	{
		int			depth = 1;

		j = i + 2;
		while (j < len && depth > 0)
		{
			if (s[j] == '/' && j + 1 < len && s[j + 1] == '*')
			{
				depth++;
				j += 2;
			}
			else if (s[j] == '*' && j + 1 < len && s[j + 1] == '/')
			{
				depth--;
				j += 2;
			}
			else
				j++;
		}
		*kind = TOK_COMMENT;
		return j;
	}
	if (c == '"')
	{
		*kind = TOK_QIDENT;
		*body = i + 1;
		j = scan_double_quoted(s, len, i + 1);
		*body_end = (j > i + 1 && s[j - 1] == '"') ? j - 1 : j;
		return j;
	}
	if (c == '\'')
	{
		*kind = TOK_STRING;
		*body = i + 1;
		j = scan_quoted(s, len, i + 1, escape_strings);
		*body_end = (j > i + 1 && s[j - 1] == '\'' && j <= len) ? j - 1 : j;
		return j;
	}
	if (is_ident_start(c))
	{
		for (j = i + 1; j < len && is_ident_cont((unsigned char) s[j]); j++)
			;
		if (j == i + 1 && j < len)
		{
			/* a one-letter prefix glued to a quote is part of a constant */
			if (s[j] == '\'' && (c == 'e' || c == 'E' || c == 'b' || c == 'B' ||
								 c == 'x' || c == 'X' || c == 'n' || c == 'N'))
			{
				int			escapes = (c == 'e' || c == 'E') ? 1 :
					(c == 'n' || c == 'N') ? escape_strings : 0;
				size_t		k = scan_quoted(s, len, j + 1, escapes);

				*kind = TOK_STRING;
				*body = j + 1;
				*body_end = (k > j + 1 && s[k - 1] == '\'') ? k - 1 : k;
				return k;
			}
			if ((c == 'u' || c == 'U') && s[j] == '&' && j + 1 < len)
			{
				if (s[j + 1] == '\'')
				{
					size_t		k = scan_quoted(s, len, j + 2, 0);

					*kind = TOK_STRING;
					*body = j + 2;
					*body_end = (k > j + 2 && s[k - 1] == '\'') ? k - 1 : k;
					return k;
				}
				if (s[j + 1] == '"')
				{
					size_t		k = scan_double_quoted(s, len, j + 2);

					*kind = TOK_QIDENT;
					*body = j + 2;
					*body_end = (k > j + 2 && s[k - 1] == '"') ? k - 1 : k;
					return k;
				}
			}
		}
		*kind = TOK_IDENT;
		return j;
	}
	if (is_digit(c) || (c == '.' && i + 1 < len && is_digit((unsigned char) s[i + 1])))
	{
		/*
		 * Digits, letters (exponent, 0x..., and the junk PostgreSQL 15
		 * rejects after a number), underscores, points, and a sign right
		 * after an exponent marker.
		 */
		j = i + 1;
		while (j < len)
		{
			unsigned char d = (unsigned char) s[j];

			if (is_digit(d) || (d >= 'A' && d <= 'Z') || (d >= 'a' && d <= 'z') ||
				d == '_' || d == '.')
				j++;
			else if ((d == '+' || d == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E') &&
					 j + 1 < len && is_digit((unsigned char) s[j + 1]))
				j++;
			else
				break;
		}
		*kind = TOK_NUMBER;
		return j;
	}
	if (c == '$')
	{
		size_t		d;

		if (i + 1 < len && is_digit((unsigned char) s[i + 1]))
		{
			for (j = i + 2; j < len && is_digit((unsigned char) s[j]); j++)
				;
			*kind = TOK_PARAM;
			return j;
		}
		d = dollar_delimiter(s, len, i);
		if (d > 0)
		{
			/*
			 * The body ends at the first later occurrence of the same
			 * delimiter: scan.l tries a delimiter at every $, so it finds
			 * exactly that one.
			 */
			size_t		k;

			*kind = TOK_STRING;
			*body = i + d;
			for (k = i + d; k + d <= len; k++)
				if (s[k] == '$' && memcmp(s + k, s + i, d) == 0)
				{
					*body_end = k;
					return k + d;
				}
			*body_end = len;
			return len;
		}
	}
	*kind = TOK_OTHER;
	return i + 1;
}

static void mark_quoted_sql(const char *in, size_t from, size_t to, char *mask);

/*
 * Mark (mask[k] = 1) every byte of every constant, as one reading sees it.
 * In SQL, string and numeric constants.  In a message that may quote SQL
 * (as_message), its string constants, and inside each double-quoted span
 * the constants of its body (mark_quoted_sql); numbers outside those spans
 * are the message's own (counts, costs, ids).
 */
static void
mark_constants(const char *in, size_t len, int escape_strings, char *mask, int as_message)
{
	size_t		i = 0;

	while (i < len)
	{
		TokKind		kind;
		size_t		body,
					body_end;
		size_t		end = next_token(in, len, i, escape_strings, &kind, &body, &body_end);

		if (kind == TOK_STRING || (kind == TOK_NUMBER && !as_message))
			memset(mask + i, 1, end - i);
		else if (kind == TOK_QIDENT && as_message)
			mark_quoted_sql(in, body, body_end, mask);
		i = end;
	}
}

/* The readings mode asks for, each marking into mask. */
static void
mark_readings(const char *in, size_t len, RedactStrings mode, char *mask, int as_message)
{
	if (mode != REDACT_STRINGS_ESCAPE)
		mark_constants(in, len, 0, mask, as_message);
	if (mode != REDACT_STRINGS_STANDARD)
		mark_constants(in, len, 1, mask, as_message);
}

/*
 * Mark the constants inside a double-quoted span in[from..to) (its body,
 * quotes excluded): the body read as SQL once its doubled quotes are undone,
 * as a CSV field or a quoted statement holds it, both readings.  A doubled
 * quote inside a constant is marked whole.  Without memory, all of it.
 */
static void
mark_quoted_sql(const char *in, size_t from, size_t to, char *mask)
{
	size_t		n = to - from;
	char	   *text = malloc(n + 1);
	char	   *sub = malloc(n + 1);
	size_t	   *pos = malloc((n + 1) * sizeof(size_t));
	size_t		k = 0;
	size_t		j;

	if (text == NULL || sub == NULL || pos == NULL)
	{
		memset(mask + from, 1, n);
		free(text);
		free(sub);
		free(pos);
		return;
	}
	memset(text, 0, n + 1);
	for (j = from; j < to; j++)
	{
		pos[k] = j;
		text[k++] = in[j];
		if (in[j] == '"' && j + 1 < to && in[j + 1] == '"')
			j++;
	}
	memset(sub, 0, k);
	mark_readings(text, k, REDACT_STRINGS_EITHER, sub, 0);
	for (j = 0; j < k; j++)
		if (sub[j])
		{
			mask[pos[j]] = 1;
			if (in[pos[j]] == '"')
				mask[pos[j] + 1] = 1;
		}
	free(text);
	free(sub);
	free(pos);
}

/*
 * out[0..len) holds a mask of in: copy in to out with each run of marked
 * bytes replaced by one placeholder, offsets moved along.
 */
static size_t
compact_marked(const char *in, size_t len, char *out, size_t *offsets, int noffsets)
{
	size_t		i,
				w = 0;
	int			prev_masked = 0;
	int			k;

	for (i = 0; i < len; i++)
	{
		int			masked = out[i] != 0;

		for (k = 0; k < noffsets; k++)
			if (offsets[k] == i)
				offsets[k] = (masked && prev_masked) ? w - 1 : w;
		if (masked && prev_masked)
			continue;
		out[w++] = masked ? REDACT_PLACEHOLDER : in[i];
		prev_masked = masked;
	}
	for (k = 0; k < noffsets; k++)
		if (offsets[k] >= len)
			offsets[k] = w;
	out[w] = '\0';
	return w;
}

size_t
redact_sql(const char *in, size_t len, RedactStrings mode, char *out,
		   size_t *offsets, int noffsets)
{
	const char *nul = memchr(in, '\0', len);

	if (nul != NULL)
		len = (size_t) (nul - in);

	/* out holds the mask first, then is compacted in place (w <= i) */
	memset(out, 0, len);
	mark_readings(in, len, mode, out, 0);
	return compact_marked(in, len, out, offsets, noffsets);
}

size_t
redact_message_literals(const char *in, size_t len, RedactStrings mode, char *out)
{
	const char *nul = memchr(in, '\0', len);

	if (nul != NULL)
		len = (size_t) (nul - in);
	memset(out, 0, len);
	mark_readings(in, len, mode, out, 1);
	return compact_marked(in, len, out, NULL, 0);
}

/* pgaudit's fields after "AUDIT: " (pgaudit.c, log_audit_event) */
#define AUDIT_PREFIX "AUDIT: "
#define AUDIT_FIELD_STATEMENT 7
#define AUDIT_FIELD_PARAMETER 8

static int
field_is(const char *in, size_t from, size_t to, const char *word)
{
	return to - from == strlen(word) && memcmp(in + from, word, to - from) == 0;
}

static int
field_is_digits(const char *in, size_t from, size_t to)
{
	size_t		j;

	for (j = from; j < to; j++)
		if (!is_digit((unsigned char) in[j]))
			return 0;
	return 1;
}

/*
 * The CSV field of an AUDIT line starting at i: where it ends (at the comma
 * after it, or len), its body (quotes excluded) and whether it was quoted.
 * Returns 0, or -1 when a quoted field is followed by something other than
 * a comma: the line is not CSV from i on.
 */
static int
audit_field(const char *in, size_t len, size_t i, size_t *end, size_t *body,
			size_t *body_end, int *quoted)
{
	*quoted = i < len && in[i] == '"';
	*body = *quoted ? i + 1 : i;
	*end = *quoted ? scan_double_quoted(in, len, i + 1) : i;
	if (!*quoted)
		while (*end < len && in[*end] != ',')
			(*end)++;
	*body_end = *quoted && *end > *body && in[*end - 1] == '"' ? *end - 1 : *end;
	return *end < len && in[*end] != ',' ? -1 : 0;
}

static int
is_audit_prefix(const char *in, size_t len)
{
	size_t		prefix = sizeof(AUDIT_PREFIX) - 1;

	return len >= prefix && memcmp(in, AUDIT_PREFIX, prefix) == 0;
}

long
redact_audit_statement(const char *in, size_t len, char *out)
{
	const char *nul = memchr(in, '\0', len);
	size_t		i = sizeof(AUDIT_PREFIX) - 1;
	int			field;

	if (nul != NULL)
		len = (size_t) (nul - in);
	if (!is_audit_prefix(in, len))
		return -1;
	for (field = 0; i <= len; field++)
	{
		size_t		end,
					body,
					body_end,
					j,
					w = 0;
		int			quoted;

		if (audit_field(in, len, i, &end, &body, &body_end, &quoted) != 0)
			return -1;
		if (field < AUDIT_FIELD_STATEMENT)
		{
			i = end + 1;
			continue;
		}
		for (j = body; j < body_end; j++)
		{
			out[w++] = in[j];
			if (quoted && in[j] == '"' && j + 1 < body_end && in[j + 1] == '"')
				j++;
		}
		out[w] = '\0';
		return (long) w;
	}
	return -1;
}

size_t
redact_audit_line(const char *in, size_t len, RedactStrings mode, char *out)
{
	const char *nul = memchr(in, '\0', len);
	size_t		i;
	int			field = 0;

	if (nul != NULL)
		len = (size_t) (nul - in);
	memset(out, 0, len);
	if (!is_audit_prefix(in, len))
	{
		/* not pgaudit's line after all: as any other message */
		mark_readings(in, len, mode, out, 1);
		return compact_marked(in, len, out, NULL, 0);
	}
	for (i = sizeof(AUDIT_PREFIX) - 1; i <= len; field++)
	{
		int			quoted;
		size_t		end,
					body,
					body_end;

		if (audit_field(in, len, i, &end, &body, &body_end, &quoted) != 0)
		{
			/* not CSV from here on: nothing after it is kept */
			memset(out + i, 1, len - i);
			break;
		}
		if (field == AUDIT_FIELD_STATEMENT)
		{
			if (quoted)
				mark_quoted_sql(in, body, body_end, out);
			else
				mark_readings(in + i, end - i, mode, out + i, 0);
		}
		else if (field == AUDIT_FIELD_PARAMETER)
		{
			if (end > i && !field_is(in, i, end, "<none>") && !field_is(in, i, end, "<not logged>"))
				memset(out + i, 1, end - i);
		}
		else if (field > AUDIT_FIELD_PARAMETER && !field_is_digits(in, i, end))
			memset(out + i, 1, end - i);
		i = end + 1;
	}
	return compact_marked(in, len, out, NULL, 0);
}

/* The words of a constant's body: each once as written, once folded. */
static int
body_words(const char *s, size_t len, RedactNameFn fn, void *arg)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		j;
		int			r;

		if (!is_ident_start((unsigned char) s[i]))
		{
			i++;
			continue;
		}
		for (j = i + 1; j < len && is_ident_cont((unsigned char) s[j]); j++)
			;
		if ((r = fn(s + i, j - i, 0, arg)) != 0 || (r = fn(s + i, j - i, 1, arg)) != 0)
			return r;
		i = j;
	}
	return 0;
}

static int
names_one_reading(const char *in, size_t len, int escape_strings,
				  RedactNameFn fn, void *arg)
{
	size_t		i = 0;

	while (i < len)
	{
		TokKind		kind;
		size_t		body,
					body_end;
		size_t		end = next_token(in, len, i, escape_strings, &kind, &body, &body_end);
		int			r = 0;

		if (kind == TOK_IDENT)
			r = fn(in + i, end - i, 0, arg);
		else if (kind == TOK_QIDENT)
			r = fn(in + body, body_end - body, 1, arg);
		else if (kind == TOK_STRING)
			r = body_words(in + body, body_end - body, fn, arg);
		if (r != 0)
			return r;
		i = end;
	}
	return 0;
}

int
redact_sql_names(const char *in, size_t len, RedactStrings mode,
				 RedactNameFn fn, void *arg)
{
	int			r = 0;
	const char *nul = memchr(in, '\0', len);

	if (nul != NULL)
		len = (size_t) (nul - in);
	if (mode != REDACT_STRINGS_ESCAPE)
		r = names_one_reading(in, len, 0, fn, arg);
	if (r == 0 && mode != REDACT_STRINGS_STANDARD)
		r = names_one_reading(in, len, 1, fn, arg);
	return r;
}

static int
statements_one_reading(const char *in, size_t len, int escape_strings,
					   char *first_word, size_t outsize)
{
	size_t		i = 0;
	int			count = 0;
	int			in_statement = 0;

	while (i < len)
	{
		TokKind		kind;
		size_t		body,
					body_end;
		size_t		end = next_token(in, len, i, escape_strings, &kind, &body, &body_end);

		if (kind == TOK_OTHER && in[i] == ';')
			in_statement = 0;
		else if (kind != TOK_SPACE && kind != TOK_COMMENT && !in_statement)
		{
			in_statement = 1;
			if (count++ == 0 && first_word != NULL && kind == TOK_IDENT)
				redact_fold_name(in + i, end - i, first_word, outsize);
		}
		i = end;
	}
	return count;
}

int
redact_sql_statements(const char *in, size_t len, RedactStrings mode,
					  char *first_word, size_t outsize)
{
	int			n = 0;
	int			m;
	const char *nul = memchr(in, '\0', len);

	if (nul != NULL)
		len = (size_t) (nul - in);
	if (first_word != NULL && outsize > 0)
		first_word[0] = '\0';
	if (mode != REDACT_STRINGS_ESCAPE)
		n = statements_one_reading(in, len, 0, first_word, outsize);
	if (mode != REDACT_STRINGS_STANDARD)
	{
		m = statements_one_reading(in, len, 1, n == 0 ? first_word : NULL, outsize);
		if (m > n)
			n = m;
	}
	return n;
}

size_t
redact_fold_name(const char *name, size_t len, char *out, size_t outsize)
{
	size_t		i;

	if (outsize == 0)
		return 0;
	if (len > outsize - 1)
		len = outsize - 1;
	for (i = 0; i < len; i++)
	{
		char		c = name[i];

		out[i] = (c >= 'A' && c <= 'Z') ? (char) (c + ('a' - 'A')) : c;
	}
	out[len] = '\0';
	return len;
}

size_t
redact_lines_at_quote(const char *in, size_t len, char *out)
{
	size_t		i = 0,
				w = 0;

	while (i < len && in[i] != '\0')
	{
		if (in[i] == '\'' || in[i] == '"')
		{
			out[w++] = REDACT_PLACEHOLDER;
			while (i < len && in[i] != '\0' && in[i] != '\n')
				i++;
			continue;
		}
		out[w++] = in[i++];
	}
	out[w] = '\0';
	return w;
}

size_t
redact_message_quoted(const char *in, size_t len, int as_sql, char *out)
{
	const char *nul = memchr(in, '\0', len);
	const char *first;
	const char *last;
	size_t		w;

	if (nul != NULL)
		len = (size_t) (nul - in);
	first = memchr(in, '"', len);
	if (first == NULL)
	{
		memcpy(out, in, len);
		out[len] = '\0';
		return len;
	}
	for (last = in + len - 1; last > first && *last != '"'; last--)
		;
	w = (size_t) (first - in) + 1;
	memcpy(out, in, w);
	if (as_sql)
		w += redact_sql(first + 1, (size_t) ((last > first ? last : in + len) - first - 1),
						REDACT_STRINGS_EITHER, out + w, NULL, 0);
	else
		out[w++] = REDACT_PLACEHOLDER;
	if (last > first)
	{
		memcpy(out + w, last, (size_t) (in + len - last));
		w += (size_t) (in + len - last);
	}
	out[w] = '\0';
	return w;
}
