/*
 * fuzz.h — what the libFuzzer targets of test/fuzz share.
 *
 * Each target (fuzz_<name>.c) defines LLVMFuzzerTestOneInput, which aborts
 * through FUZZ_ASSERT when a property fails, and fuzz_expect, which says
 * whether a seed does what its line in test/fuzz/<name>.expect says;
 * replay.c calls both for every seed of test/fuzz/corpus/<name>/ on every
 * `make unit`.
 */
#ifndef PRIVACY_FUZZ_H
#define PRIVACY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * 1 when the seed data meets spec, the rest of its line in the expect file
 * after the seed's name (leading and trailing blanks removed); 0 otherwise,
 * after printing a "# ..." line that says how.
 */
int			fuzz_expect(const uint8_t *data, size_t size, const char *spec);

/* Active in every build: the replay binary is built with -O2 and maybe NDEBUG. */
#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* malloc that never returns NULL, and a real pointer for zero bytes. */
static inline void *
fuzz_alloc(size_t n)
{
	void	   *p = malloc(n + 1);

	FUZZ_ASSERT(p != NULL);
	return p;
}

/* The input as a NUL-terminated string (it ends at its first NUL byte). */
static inline char *
fuzz_cstring(const uint8_t *data, size_t size)
{
	char	   *s = fuzz_alloc(size);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/*
 * Bytes written in an expect file, into a malloc'd buffer: hex:<bytes>,
 * rep:<byte>:<count>, "" (empty), or "<text>" (everything up to the last
 * double quote of the spec, taken as is).  Returns 0, or -1 if malformed.
 */
static inline int
fuzz_spec_bytes(const char *spec, unsigned char **out, size_t *len)
{
	unsigned int byte;
	size_t		count,
				i,
				n = strlen(spec);

	*out = fuzz_alloc(n);
	*len = 0;
	if (strncmp(spec, "hex:", 4) == 0)
	{
		spec += 4;
		if (strlen(spec) % 2 != 0)
			return -1;
		for (i = 0; spec[2 * i]; i++)
		{
			if (sscanf(spec + 2 * i, "%2x", &byte) != 1)
				return -1;
			(*out)[(*len)++] = (unsigned char) byte;
		}
		return 0;
	}
	if (sscanf(spec, "rep:%2x:%zu", &byte, &count) == 2 && count <= 1024 * 1024)
	{
		free(*out);
		*out = fuzz_alloc(count);
		memset(*out, (int) byte, count);
		*len = count;
		return 0;
	}
	if (n >= 2 && spec[0] == '"' && spec[n - 1] == '"')
	{
		memcpy(*out, spec + 1, n - 2);
		*len = n - 2;
		return 0;
	}
	return -1;
}

/* Compare got with want, printing both when they differ. */
static inline int
fuzz_same(const char *what, const void *got, size_t gotlen, const void *want, size_t wantlen)
{
	if (gotlen == wantlen && memcmp(got, want, gotlen) == 0)
		return 1;
	printf("# %s: got %zu bytes \"%.*s\", want %zu bytes \"%.*s\"\n", what,
		   gotlen, (int) gotlen, (const char *) got, wantlen, (int) wantlen, (const char *) want);
	return 0;
}

#endif
