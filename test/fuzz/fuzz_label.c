/*
 * fuzz_label.c — libFuzzer target for the grammar of privacy security
 * labels (src/label_text.c), which any role that owns a table reaches with
 * SECURITY LABEL FOR privacy ... IS '<anything>'.
 *
 * The first byte of an input says what is labelled: 't' a table, anything
 * else a column; the rest, up to a NUL, is the label.  Besides memory safety
 * under ASan/UBSan (the value buffer is exactly strlen(label) + 1 bytes), it
 * aborts when a property fails:
 *
 *   - an accepted column label has a category name that follows its rule
 *     and no subject; an accepted table label a subject of 1 to 63 bytes,
 *     no category and no flags;
 *   - printed canonically (keys and flags lower-case, the subject quoted)
 *     and printed again untidily (upper-case keys, spaces around everything)
 *     it parses back to the same declaration;
 *   - a refusal leaves the output untouched, its item lies inside the label
 *     or the buffer, and its reason is a format with at most one "%.*s" and
 *     no other directive (label.c passes it to psprintf).
 *
 * test/fuzz/label.expect, per seed: "refused" or the declaration,
 * "category=<name>[,searchable][,encrypt]" or "subject=hex:<bytes>".
 */
#include "fuzz.h"
#include "label_text.h"

typedef struct Parsed
{
	int			ok;
	LabelText	lab;
	LabelTextError err;
	char	   *buf;
	size_t		buflen;
} Parsed;

static Parsed
parse(const char *label, int is_column)
{
	Parsed		p;

	memset(&p, 0, sizeof(p));
	p.buflen = strlen(label) + 1;
	p.buf = malloc(p.buflen);
	FUZZ_ASSERT(p.buf != NULL);
	memset(&p.lab, 0x5A, sizeof(p.lab));
	p.ok = label_text_parse(label, is_column, p.buf, p.buflen, &p.lab, &p.err) == 0;
	return p;
}

static int
category_rule(const char *s)
{
	size_t		n = strlen(s),
				i;

	if (n < 1 || n > 63 || !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* The reason is a format with at most one "%.*s" and nothing else. */
static int
reason_is_safe(const char *r)
{
	const char *p = strchr(r, '%');

	if (p == NULL)
		return 1;
	return strncmp(p, "%.*s", 4) == 0 && strchr(p + 4, '%') == NULL;
}

/* A label that declares lab, tidy or not; malloc'd. */
static char *
print_label(const LabelText *lab, int is_column, int untidy)
{
	size_t		n = 64 + 3 * (lab->category ? strlen(lab->category) : 0) +
		2 * (lab->subject ? strlen(lab->subject) : 0);
	char	   *out = fuzz_alloc(n);
	const char *p;
	char	   *o = out;

	if (is_column)
	{
		o += sprintf(o, untidy ? " \tCaTeGoRy =  %s\n " : "category=%s", lab->category);
		if (lab->searchable)
			o += sprintf(o, untidy ? ",SEARCHABLE " : ", searchable");
		if (lab->encrypt)
			o += sprintf(o, untidy ? " ,  Encrypt" : ", encrypt");
		*o = '\0';
		return out;
	}
	o += sprintf(o, untidy ? "  SUBJECT\t=\t\"" : "subject=\"");
	for (p = lab->subject; *p; p++)
	{
		if (*p == '"')
			*o++ = '"';
		*o++ = *p;
	}
	strcpy(o, untidy ? "\"  " : "\"");
	return out;
}

static void
check_same(const LabelText *a, const LabelText *b)
{
	FUZZ_ASSERT(a->searchable == b->searchable && a->encrypt == b->encrypt);
	FUZZ_ASSERT((a->category == NULL) == (b->category == NULL));
	FUZZ_ASSERT((a->subject == NULL) == (b->subject == NULL));
	if (a->category)
		FUZZ_ASSERT(strcmp(a->category, b->category) == 0);
	if (a->subject)
		FUZZ_ASSERT(strcmp(a->subject, b->subject) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			is_column = size == 0 || data[0] != 't';
	char	   *label = fuzz_cstring(size > 0 ? data + 1 : data, size > 0 ? size - 1 : 0);
	Parsed		p = parse(label, is_column);

	if (!p.ok)
	{
		LabelText	untouched;
		size_t		len = strlen(label);

		memset(&untouched, 0x5A, sizeof(untouched));
		FUZZ_ASSERT(memcmp(&p.lab, &untouched, sizeof(untouched)) == 0);
		FUZZ_ASSERT(p.err.reason != NULL && reason_is_safe(p.err.reason));
		FUZZ_ASSERT(p.err.item != NULL && p.err.item_len >= 0);
		FUZZ_ASSERT(p.err.item_len == 0 ||
					(p.err.item >= label && p.err.item + p.err.item_len <= label + len) ||
					(p.err.item >= p.buf && p.err.item + p.err.item_len < p.buf + p.buflen));
	}
	else
	{
		int			untidy;

		if (is_column)
		{
			FUZZ_ASSERT(p.lab.category != NULL && category_rule(p.lab.category));
			FUZZ_ASSERT(p.lab.subject == NULL);
		}
		else
		{
			FUZZ_ASSERT(p.lab.subject != NULL && p.lab.category == NULL);
			FUZZ_ASSERT(strlen(p.lab.subject) >= 1 && strlen(p.lab.subject) <= 63);
			FUZZ_ASSERT(!p.lab.searchable && !p.lab.encrypt);
		}
		FUZZ_ASSERT(p.lab.searchable == 0 || p.lab.searchable == 1);
		FUZZ_ASSERT(p.lab.encrypt == 0 || p.lab.encrypt == 1);
		for (untidy = 0; untidy < 2; untidy++)
		{
			char	   *again = print_label(&p.lab, is_column, untidy);
			Parsed		q = parse(again, is_column);

			FUZZ_ASSERT(q.ok);
			check_same(&p.lab, &q.lab);
			free(q.buf);
			free(again);
		}
	}
	free(p.buf);
	free(label);
	return 0;
}

int
fuzz_expect(const uint8_t *data, size_t size, const char *spec)
{
	int			is_column = size == 0 || data[0] != 't';
	char	   *label = fuzz_cstring(size > 0 ? data + 1 : data, size > 0 ? size - 1 : 0);
	Parsed		p = parse(label, is_column);
	char	   *got = fuzz_alloc(2 * size + 64);
	int			ok;

	if (!p.ok)
		strcpy(got, "refused");
	else if (is_column)
		sprintf(got, "category=%s%s%s", p.lab.category,
				p.lab.searchable ? ",searchable" : "", p.lab.encrypt ? ",encrypt" : "");
	else
	{
		const char *c;
		char	   *o = got + sprintf(got, "subject=hex:");

		for (c = p.lab.subject; *c; c++)
			o += sprintf(o, "%02x", (unsigned char) *c);
	}
	ok = strcmp(got, spec) == 0;
	if (!ok)
		printf("# got %s%s%.*s\n", got, p.ok ? "" : ": ",
			   p.ok ? 0 : (int) strlen(p.err.reason), p.ok ? "" : p.err.reason);
	free(got);
	free(p.buf);
	free(label);
	return ok;
}
