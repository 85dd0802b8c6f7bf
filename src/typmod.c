/*
 * typmod.c — parse the type modifier of the encrypted types (typmod.h).
 *
 * encrypted_typmod_in (types.c) turns each error into its message; the
 * syntax lives here so that test/fuzz/fuzz_typmod.c can check it alone.
 */
#include "typmod.h"

#include <string.h>

uint16_t
typmod_category_id(const char *name)
{
	uint32_t	h = 2166136261u;
	const unsigned char *p;

	for (p = (const unsigned char *) name; *p; p++)
	{
		h ^= *p;
		h *= 16777619u;
	}
	return (uint16_t) (1 + h % 65535);
}

/* The numeric form: decimal digits only, 1..65535; -1 if not all digits. */
static long
numeric_id(const char *s)
{
	long		v = 0;
	size_t		i;

	if (s[0] == '\0')
		return -1;
	for (i = 0; s[i]; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v <= 65535)
			v = v * 10 + (s[i] - '0');
	}
	return v;					/* above 65535 once it passed it */
}

TypmodError
typmod_parse(const char *const *items, int nitems, int32_t *typmod)
{
	const char *cat;
	long		numeric;
	uint16_t	id;
	size_t		n;

	if (items == NULL || nitems < 1 || nitems > 2)
		return TYPMOD_BAD_COUNT;
	cat = items[0];
	numeric = numeric_id(cat);
	if (numeric >= 0)
	{
		/* printed by typmod_out when a category's name is unknown */
		if (numeric < 1 || numeric > 65535)
			return TYPMOD_ID_OUT_OF_RANGE;
		id = (uint16_t) numeric;
	}
	else
	{
		for (n = 0; cat[n]; n++)
			if (!((cat[n] >= 'a' && cat[n] <= 'z') || (cat[n] >= '0' && cat[n] <= '9') ||
				  cat[n] == '_'))
				return TYPMOD_NAME_CHARACTER;
		if (n == 0 || n > TYPMOD_NAME_MAX)
			return TYPMOD_NAME_LENGTH;
		id = typmod_category_id(cat);
	}
	if (nitems == 2 && strcmp(items[1], "searchable") != 0)
		return TYPMOD_UNKNOWN_OPTION;
	*typmod = MAKE_TYPMOD(id, nitems == 2);
	return TYPMOD_OK;
}
