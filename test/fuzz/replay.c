/*
 * replay.c — run the fuzz corpus through the fuzz target, as a unit test.
 *
 * libFuzzer is clang-only and takes minutes; this main links the same
 * LLVMFuzzerTestOneInput with the ordinary compiler and feeds it each file
 * of test/fuzz/corpus once, in name order, so the properties the target
 * asserts are checked on every `make unit` run.  A violated property aborts,
 * which the test runner counts as a failure.  Then each seed must do what
 * test/fuzz/corpus.expect says: a valid seed opens to its known plaintext,
 * as its kind only; an invalid one is refused.  "Did not abort" alone proves
 * nothing about the format.
 *
 *   test_fuzz_corpus [corpus-dir [expect-file]]
 *                     defaults: CORPUS_DIR and EXPECT_FILE, set by the Makefile;
 *                     another directory without an expect file is only replayed
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "envelope.h"

#ifndef CORPUS_DIR
#define CORPUS_DIR "test/fuzz/corpus"
#endif
#ifndef EXPECT_FILE
#define EXPECT_FILE "test/fuzz/corpus.expect"
#endif

/* A seed larger than this is a mistake in the corpus, not a test. */
#define REPLAY_MAX_BYTES (1024 * 1024)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Read a whole file; NULL if it cannot be read or is not a regular file. */
static unsigned char *
read_file(const char *path, size_t *len)
{
	struct stat st;
	FILE	   *f;
	unsigned char *buf;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
		st.st_size < 0 || st.st_size > REPLAY_MAX_BYTES)
		return NULL;
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	/* One spare byte so that an empty file still gets a real buffer. */
	buf = malloc((size_t) st.st_size + 1);
	if (buf == NULL ||
		fread(buf, 1, (size_t) st.st_size, f) != (size_t) st.st_size)
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = (size_t) st.st_size;
	return buf;
}

/* One line of corpus.expect. */
typedef struct Expectation
{
	char		seed[128];
	char		form[8];		/* env | lit */
	char		outcome[8];		/* text | bytea | refused */
	unsigned char *plain;
	size_t		plain_len;
	int			seen;
} Expectation;

static Expectation *expects;
static size_t nexpects;

/* hex:<bytes>, rep:<byte>:<count> or "" into a malloc'd buffer; 0 on success. */
static int
parse_plain(const char *spec, unsigned char **out, size_t *len)
{
	unsigned int byte;
	size_t		count,
				i;

	*out = malloc(strlen(spec) + 1);
	if (*out == NULL)
		return -1;
	*len = 0;
	if (strcmp(spec, "\"\"") == 0)
		return 0;
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
	if (sscanf(spec, "rep:%2x:%zu", &byte, &count) == 2 && count <= REPLAY_MAX_BYTES)
	{
		free(*out);
		*out = malloc(count + 1);
		if (*out == NULL)
			return -1;
		memset(*out, (int) byte, count);
		*len = count;
		return 0;
	}
	return -1;
}

/* Read the expect file; -1 when it is unreadable or a line is malformed. */
static int
load_expectations(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	size_t		cap = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		Expectation e;
		char		plain[4000] = "";
		int			n;

		if (line[0] == '#' || line[strspn(line, " \t\n")] == '\0')
			continue;
		memset(&e, 0, sizeof(e));
		n = sscanf(line, "%127s %7s %7s %3999s", e.seed, e.form, e.outcome, plain);
		if (n < 3 || (strcmp(e.form, "env") != 0 && strcmp(e.form, "lit") != 0) ||
			(strcmp(e.outcome, "refused") == 0) != (n == 3) ||
			(strcmp(e.outcome, "refused") != 0 && strcmp(e.outcome, "text") != 0 &&
			 strcmp(e.outcome, "bytea") != 0) ||
			(n == 4 && parse_plain(plain, &e.plain, &e.plain_len) != 0))
		{
			printf("# malformed line in %s: %s", path, line);
			fclose(f);
			return -1;
		}
		if (nexpects == cap)
		{
			cap = cap ? cap * 2 : 32;
			expects = realloc(expects, cap * sizeof(*expects));
			if (expects == NULL)
				exit(2);
		}
		expects[nexpects++] = e;
	}
	fclose(f);
	return 0;
}

static Expectation *
find_expectation(const char *seed)
{
	size_t		i;

	for (i = 0; i < nexpects; i++)
		if (strcmp(expects[i].seed, seed) == 0)
			return &expects[i];
	return NULL;
}

/*
 * Does the seed do what its line says?  Opens with the corpus key as both
 * kinds; a valid seed opens as exactly one, to exactly its plaintext.
 */
static int
meets(const Expectation *e, const unsigned char *data, size_t len)
{
	static const EnvelopeKind kinds[2] = {ENVELOPE_TEXT, ENVELOPE_BYTEA};
	unsigned char key[ENVELOPE_KEY_BYTES];
	unsigned char *env = malloc(len + 1);
	size_t		envlen = len;
	const char *why = NULL;
	int			k,
				ok = 1,
				decoded = 1;

	if (env == NULL)
		exit(2);
	for (k = 0; k < ENVELOPE_KEY_BYTES; k++)
		key[k] = (unsigned char) k;
	if (strcmp(e->form, "lit") == 0)
		decoded = envelope_from_text(env, &envlen, (const char *) data, len, &why) == 0;
	else
		memcpy(env, data, len);
	for (k = 0; k < 2; k++)
	{
		EnvelopeHeader hdr;
		unsigned char *out;
		int			opened;
		int			want = strcmp(e->outcome, k == 0 ? "text" : "bytea") == 0;

		if (!decoded || envelope_parse(env, envlen, &hdr, &why) != 0)
		{
			ok &= !want;
			continue;
		}
		out = malloc(hdr.ciphertext_len + 1);
		if (out == NULL)
			exit(2);
		opened = envelope_open(out, env, envlen, kinds[k], key, &why) == 0;
		if (want)
			ok &= opened && hdr.ciphertext_len == e->plain_len &&
				memcmp(out, e->plain, e->plain_len) == 0;
		else
			ok &= !opened;
		free(out);
	}
	free(env);
	return ok;
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : CORPUS_DIR;
	const char *expect_path = argc > 2 ? argv[2] : (argc > 1 ? NULL : EXPECT_FILE);
	size_t		n = 0;
	DIR		   *d;
	struct dirent *e;
	char	  **names = NULL;
	size_t		count = 0;
	size_t		cap = 0;
	size_t		i;
	int			failed = 0;

	d = opendir(dir);
	if (d == NULL)
	{
		printf("not ok 1 - corpus directory %s can be read\n1..1\n", dir);
		return 1;
	}
	while ((e = readdir(d)) != NULL)
	{
		if (e->d_name[0] == '.')
			continue;
		if (count == cap)
		{
			cap = cap ? cap * 2 : 32;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				return 2;
		}
		names[count] = malloc(strlen(e->d_name) + 1);
		if (names[count] == NULL)
			return 2;
		strcpy(names[count], e->d_name);
		count++;
	}
	closedir(d);

	/* An empty corpus would pass vacuously; it means the path is wrong. */
	if (count == 0)
	{
		printf("not ok 1 - corpus directory %s holds seed files\n1..1\n", dir);
		return 1;
	}
	qsort(names, count, sizeof(*names), by_name);
	if (sodium_init() < 0)
		return 2;
	if (expect_path != NULL && load_expectations(expect_path) != 0)
	{
		printf("not ok 1 - expectations %s can be read and parsed\n1..1\n", expect_path);
		return 1;
	}

	for (i = 0; i < count; i++)
	{
		size_t		pathlen = strlen(dir) + 1 + strlen(names[i]) + 1;
		char	   *path = malloc(pathlen);
		unsigned char *data;
		size_t		len = 0;

		if (path == NULL)
			return 2;
		snprintf(path, pathlen, "%s/%s", dir, names[i]);
		data = read_file(path, &len);
		if (data == NULL)
		{
			printf("not ok %zu - corpus file %s (unreadable, not a file, or over %d bytes)\n",
				   ++n, names[i], REPLAY_MAX_BYTES);
			failed++;
		}
		else
		{
			Expectation *e = expect_path ? find_expectation(names[i]) : NULL;

			fflush(stdout);
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %zu - corpus file %s keeps the target's properties\n", ++n, names[i]);
			if (expect_path != NULL && e == NULL)
			{
				printf("not ok %zu - corpus file %s has a line in %s\n", ++n, names[i], expect_path);
				failed++;
			}
			else if (e != NULL)
			{
				int			ok = meets(e, data, len);

				e->seen = 1;
				printf("%s %zu - corpus file %s (%s) %s%s\n", ok ? "ok" : "not ok", ++n,
					   names[i], e->form,
					   strcmp(e->outcome, "refused") == 0 ? "is refused" : "opens to its known plaintext as ",
					   strcmp(e->outcome, "refused") == 0 ? "" : e->outcome);
				failed += !ok;
			}
		}
		free(data);
		free(path);
		free(names[i]);
	}
	free(names);
	for (i = 0; i < nexpects; i++)
		if (!expects[i].seen)
		{
			printf("not ok %zu - expected seed %s is in the corpus\n", ++n, expects[i].seed);
			failed++;
		}
	printf("1..%zu\n", n);
	return failed ? 1 : 0;
}
