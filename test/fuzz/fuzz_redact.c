/*
 * fuzz_redact.c — libFuzzer target for the SQL lexer that takes constants
 * out of server-log lines (src/redact_text.c).  Every statement any role
 * sends, and every message it provokes, passes through it.
 *
 * The first byte of an input picks how backslashes in '...' are read
 * (modulo 3: standard, escape, either); the rest is the text.  Besides
 * memory safety under ASan/UBSan (every output buffer has exactly the room
 * the header promises), it aborts when a property fails:
 *
 *   - redact_sql: the output is a NUL-terminated text no longer than the
 *     input (up to its first NUL), and the offset map is monotone and stays
 *     inside the output; under one reading of backslashes, redacting it
 *     again changes nothing (no constant is left) and it holds as many
 *     statements; under both, it replaces exactly the bytes that either
 *     reading replaces;
 *   - redact_sql_names: every name lies inside the text, is not empty, and
 *     quoted is 0 or 1;
 *   - redact_lines_at_quote: no quote character survives, and each line of
 *     the input is one line of the output;
 *   - redact_message_quoted: the text before the first double quote is
 *     kept, and no longer output than promised;
 *   - redact_fold_name: no upper-case ASCII letter, within its room.
 *
 * test/fuzz/redact.expect, per seed: the redact_sql output under the seed's
 * mode, as fuzz_spec_bytes reads it ("<text>" or hex:<bytes>).
 */
#include "fuzz.h"
#include "redact_text.h"

#define NOFFSETS 4
#define UNION_CHECK_MAX 128		/* the offset map is quadratic */

typedef struct NameCheck
{
	const char *in;
	size_t		len;
	int			count;
} NameCheck;

static int
check_name(const char *name, size_t len, int quoted, void *arg)
{
	NameCheck  *c = arg;

	FUZZ_ASSERT(quoted == 0 || quoted == 1);
	FUZZ_ASSERT(name >= c->in && name + len <= c->in + c->len);
	/* a quoted identifier may be empty (""), a word never */
	FUZZ_ASSERT(len > 0 || quoted);
	c->count++;
	return 0;
}

static size_t
count_lines(const char *s, size_t len)
{
	size_t		n = 1,
				i;

	for (i = 0; i < len; i++)
		n += s[i] == '\n';
	return n;
}

static char *
redact(const char *in, size_t len, RedactStrings mode, size_t *outlen,
	   size_t *offsets, int noffsets)
{
	char	   *out = malloc(len + 1);	/* exactly the room promised */

	FUZZ_ASSERT(out != NULL);
	*outlen = redact_sql(in, len, mode, out, offsets, noffsets);
	return out;
}

/*
 * Which bytes of in (len bytes, no NUL) a reading replaces: a byte is
 * replaced when the offset map sends it to a placeholder (bytes that are
 * '?' themselves cannot tell, and count as unknown: -1).
 */
static void
replaced_bytes(const char *in, size_t len, RedactStrings mode, signed char *replaced)
{
	size_t	   *map = fuzz_alloc(len * sizeof(size_t));
	size_t		i,
				n;
	char	   *out;

	for (i = 0; i < len; i++)
		map[i] = i;
	out = redact(in, len, mode, &n, map, (int) len);
	for (i = 0; i < len; i++)
		replaced[i] = in[i] == REDACT_PLACEHOLDER ? -1 : out[map[i]] == REDACT_PLACEHOLDER;
	free(out);
	free(map);
}

/*
 * REDACT_STRINGS_EITHER replaces exactly what either reading replaces.
 * (Its output is not always stable under a second pass: text that each
 * reading keeps, inside an identifier for one and a comment for the other,
 * can be lexed as a constant once the constants around it are gone; the
 * second finding of this target, seed either_union_not_stable.sql.)
 */
static void
check_union(const char *in, size_t len)
{
	signed char *std = fuzz_alloc(len);
	signed char *esc = fuzz_alloc(len);
	signed char *either = fuzz_alloc(len);
	size_t		i;

	replaced_bytes(in, len, REDACT_STRINGS_STANDARD, std);
	replaced_bytes(in, len, REDACT_STRINGS_ESCAPE, esc);
	replaced_bytes(in, len, REDACT_STRINGS_EITHER, either);
	for (i = 0; i < len; i++)
		if (either[i] >= 0)
			FUZZ_ASSERT(either[i] == (std[i] == 1 || esc[i] == 1));
	free(std);
	free(esc);
	free(either);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	RedactStrings mode = size > 0 ? (RedactStrings) (data[0] % 3) : REDACT_STRINGS_EITHER;
	const char *in = size > 0 ? (const char *) data + 1 : "";
	size_t		len = size > 0 ? size - 1 : 0;
	size_t		textlen = memchr(in, '\0', len) ? (size_t) ((const char *) memchr(in, '\0', len) - in) : len;
	size_t		offsets[NOFFSETS] = {0, textlen / 3, textlen / 2, len};
	size_t		n,
				n2;
	char	   *out,
			   *again,
			   *buf;
	char		word[64];
	NameCheck	names = {in, len, 0};
	int			k;

	out = redact(in, len, mode, &n, offsets, NOFFSETS);
	FUZZ_ASSERT(n <= textlen && out[n] == '\0' && strlen(out) == n);
	for (k = 0; k < NOFFSETS; k++)
	{
		FUZZ_ASSERT(offsets[k] <= n);
		if (k > 0)
			FUZZ_ASSERT(offsets[k] >= offsets[k - 1]);
	}
	FUZZ_ASSERT(offsets[0] == 0 && offsets[NOFFSETS - 1] == n);
	if (mode != REDACT_STRINGS_EITHER)
	{
		again = redact(out, n, mode, &n2, NULL, 0);
		FUZZ_ASSERT(n2 == n && memcmp(again, out, n) == 0);
		free(again);
	}
	else if (textlen <= UNION_CHECK_MAX)
		check_union(in, textlen);
	k = redact_sql_statements(in, len, mode, word, sizeof(word));
	FUZZ_ASSERT(k >= 0 && strlen(word) < sizeof(word));
	/*
	 * One reading keeps its statements.  The union of both can take a ';'
	 * that only one reading sees as outside a constant (the first finding
	 * of this target, seed either_semicolon_in_one_reading.sql).
	 */
	if (mode != REDACT_STRINGS_EITHER)
		FUZZ_ASSERT(k == redact_sql_statements(out, n, mode, NULL, 0));

	FUZZ_ASSERT(redact_sql_names(in, len, mode, check_name, &names) == 0);

	buf = malloc(len + 1);
	FUZZ_ASSERT(buf != NULL);
	n2 = redact_lines_at_quote(in, len, buf);
	FUZZ_ASSERT(n2 <= textlen && strlen(buf) == n2);
	FUZZ_ASSERT(strchr(buf, '\'') == NULL && strchr(buf, '"') == NULL);
	FUZZ_ASSERT(count_lines(buf, n2) == count_lines(in, textlen));
	free(buf);

	for (k = 0; k < 2; k++)
	{
		const char *q = memchr(in, '"', textlen);
		size_t		keep = q ? (size_t) (q - in) + 1 : textlen;

		buf = malloc(len + 2);
		FUZZ_ASSERT(buf != NULL);
		n2 = redact_message_quoted(in, len, k, buf);
		FUZZ_ASSERT(n2 <= textlen + 1 && strlen(buf) == n2);
		FUZZ_ASSERT(n2 >= keep && memcmp(buf, in, keep) == 0);
		free(buf);
	}

	n2 = redact_fold_name(in, textlen, word, sizeof(word));
	FUZZ_ASSERT(n2 < sizeof(word) && strlen(word) == n2);
	for (k = 0; k < (int) n2; k++)
		FUZZ_ASSERT(!(word[k] >= 'A' && word[k] <= 'Z'));
	free(out);
	return 0;
}

int
fuzz_expect(const uint8_t *data, size_t size, const char *spec)
{
	RedactStrings mode = size > 0 ? (RedactStrings) (data[0] % 3) : REDACT_STRINGS_EITHER;
	const char *in = size > 0 ? (const char *) data + 1 : "";
	size_t		len = size > 0 ? size - 1 : 0;
	unsigned char *want = NULL;
	size_t		wantlen = 0,
				n;
	char	   *out;
	int			ok;

	if (fuzz_spec_bytes(spec, &want, &wantlen) != 0)
	{
		printf("# malformed spec: %s\n", spec);
		free(want);
		return 0;
	}
	out = redact(in, len, mode, &n, NULL, 0);
	ok = fuzz_same("redacted", out, n, want, wantlen);
	free(out);
	free(want);
	return ok;
}
