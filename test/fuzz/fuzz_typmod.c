/*
 * fuzz_typmod.c — libFuzzer target for the type modifier of the encrypted
 * types (src/typmod.c), which any role that can create a table feeds.
 *
 * The input is the modifier's items separated by NUL bytes (as typmod_in
 * receives them: C strings, any bytes but NUL).  Besides memory safety
 * under ASan/UBSan, it aborts when a property fails:
 *
 *   - the parser accepts exactly what the grammar, written apart here,
 *     accepts (one or two items; the second "searchable"; 1 to 65535 in
 *     digits, or 1 to 63 bytes of [a-z0-9_]);
 *   - an accepted modifier has only the bits it may have, the id of its
 *     number or the hash of its name, and prints (the numeric form of
 *     typmod_out) and parses back to the same value;
 *   - a refusal leaves the output untouched, and too many items say so;
 *   - every name hashes into 1..65535.
 *
 * test/fuzz/typmod.expect, per seed: "ok <typmod>" or "refused <rule>",
 * rule count, range, character, length or option.
 */
#include "fuzz.h"
#include "typmod.h"

#define MAX_ITEMS 4

/* The grammar, apart from the parser: 1 if the items are a modifier. */
static int
grammar_accepts(const char *const *items, int n)
{
	const char *c = items[0];
	size_t		len,
				i,
				digits = 1,
				lead = 0;

	if (n < 1 || n > 2 || (n == 2 && strcmp(items[1], "searchable") != 0))
		return 0;
	len = strlen(c);
	for (i = 0; i < len; i++)
		digits &= (c[i] >= '0' && c[i] <= '9');
	if (len > 0 && digits)
	{
		while (lead < len - 1 && c[lead] == '0')
			lead++;
		/* without leading zeros: 1 to 5 digits, at most 65535, not 0 */
		return len - lead < 5 || (len - lead == 5 && strcmp(c + lead, "65535") <= 0) ?
			strcmp(c + lead, "0") != 0 : 0;
	}
	if (len < 1 || len > 63)
		return 0;
	for (i = 0; i < len; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '_'))
			return 0;
	return 1;
}

/*
 * The input's items (at most MAX_ITEMS + 1, so that too many show), in a
 * malloc'd copy returned for freeing.
 */
static char *
split_items(const uint8_t *data, size_t size, const char **items, int *n)
{
	char	   *s = fuzz_alloc(size);
	size_t		i,
				start = 0;

	memcpy(s, data, size);
	s[size] = '\0';
	*n = 0;
	for (i = 0; i <= size && *n <= MAX_ITEMS; i++)
		if (i == size || s[i] == '\0')
		{
			items[(*n)++] = s + start;
			start = i + 1;
		}
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *items[MAX_ITEMS + 1];
	int			n;
	char	   *s = split_items(data, size, items, &n);
	size_t		i;
	int32_t		typmod = -7;
	TypmodError err;

	for (i = 0; i < (size_t) n; i++)
	{
		uint16_t	id = typmod_category_id(items[i]);

		FUZZ_ASSERT(id >= 1);
	}

	err = typmod_parse(items, n, &typmod);
	FUZZ_ASSERT((err == TYPMOD_OK) == grammar_accepts(items, n));
	if (err != TYPMOD_OK)
	{
		FUZZ_ASSERT(typmod == -7);
		if (n > 2)
			FUZZ_ASSERT(err == TYPMOD_BAD_COUNT);
	}
	else
	{
		char		num[16];
		const char *again[2] = {num, "searchable"};
		int32_t		back = -7;
		const char *c = items[0];

		FUZZ_ASSERT(typmod >= 0 && (typmod & ~0x1FFFF) == 0);
		FUZZ_ASSERT(TYPMOD_CATEGORY(typmod) != 0);
		FUZZ_ASSERT(TYPMOD_SEARCHABLE(typmod) == (uint32_t) (n == 2));
		if (strspn(c, "0123456789") == strlen(c))
			FUZZ_ASSERT(TYPMOD_CATEGORY(typmod) == (uint16_t) strtol(c, NULL, 10));
		else
			FUZZ_ASSERT(TYPMOD_CATEGORY(typmod) == typmod_category_id(c));
		/* what typmod_out prints when no category has the id */
		snprintf(num, sizeof(num), "%u", (unsigned) TYPMOD_CATEGORY(typmod));
		FUZZ_ASSERT(typmod_parse(again, n, &back) == TYPMOD_OK && back == typmod);
	}
	free(s);
	return 0;
}

int
fuzz_expect(const uint8_t *data, size_t size, const char *spec)
{
	static const char *const rules[] = {"ok", "count", "range", "character", "length", "option"};
	const char *items[MAX_ITEMS + 1];
	int			n;
	char	   *s = split_items(data, size, items, &n);
	int32_t		typmod = -1;
	long		want = -1;
	char		outcome[16] = "",
				arg[32] = "";
	TypmodError err;
	int			ok;

	err = typmod_parse(items, n, &typmod);
	if (sscanf(spec, "%15s %31s", outcome, arg) != 2)
	{
		printf("# malformed spec: %s\n", spec);
		free(s);
		return 0;
	}
	if (strcmp(outcome, "ok") == 0)
	{
		want = strtol(arg, NULL, 10);
		ok = err == TYPMOD_OK && typmod == want;
	}
	else
		ok = strcmp(outcome, "refused") == 0 && err != TYPMOD_OK && strcmp(arg, rules[err]) == 0;
	if (!ok)
		printf("# got %s, typmod %d\n", rules[err], (int) typmod);
	free(s);
	return ok;
}
