/*
 * replay.c — run a fuzz target's corpus through it, as a unit test.
 *
 * libFuzzer is clang-only and takes minutes; this main links a target's
 * LLVMFuzzerTestOneInput with the ordinary compiler and feeds it each file
 * of its corpus once, in name order, so the properties the target asserts
 * are checked on every `make unit` run (test/unit/test_fuzz_<name>).  A
 * violated property aborts, which the test runner counts as a failure.
 * Then each seed must do what its line in the expect file says, as the
 * target's fuzz_expect judges it: "did not abort" alone proves nothing
 * about the format.
 *
 *   test_fuzz_<name> [corpus-dir [expect-file]]
 *                     defaults: CORPUS_DIR and EXPECT_FILE, set by the Makefile;
 *                     another directory without an expect file is only replayed
 *
 * An expect file has one line per seed, "<seed> <spec>", and comment lines
 * starting with '#'.  A seed without a line, or a line without its seed,
 * fails the replay.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef CORPUS_DIR
#define CORPUS_DIR "test/fuzz/corpus"
#endif
#ifndef EXPECT_FILE
#define EXPECT_FILE "test/fuzz/corpus.expect"
#endif

/* A seed larger than this is a mistake in the corpus, not a test. */
#define REPLAY_MAX_BYTES (1024 * 1024)

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

/* One line of the expect file. */
typedef struct Expectation
{
	char		seed[128];
	char	   *spec;
	int			seen;
} Expectation;

static Expectation *expects;
static size_t nexpects;

/* Read the expect file; -1 when it is unreadable or a line is malformed. */
static int
load_expectations(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[8192];
	size_t		cap = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		Expectation e;
		int			skip = 0;
		size_t		n;
		char	   *spec;

		if (line[0] == '#' || line[strspn(line, " \t\n")] == '\0')
			continue;
		memset(&e, 0, sizeof(e));
		if (sscanf(line, "%127s%n", e.seed, &skip) != 1)
		{
			printf("# malformed line in %s: %s", path, line);
			fclose(f);
			return -1;
		}
		spec = line + skip;
		spec += strspn(spec, " \t");
		n = strlen(spec);
		while (n > 0 && (spec[n - 1] == '\n' || spec[n - 1] == ' ' || spec[n - 1] == '\t'))
			spec[--n] = '\0';
		if (n == 0)
		{
			printf("# line without a spec in %s: %s\n", path, e.seed);
			fclose(f);
			return -1;
		}
		e.spec = strdup(spec);
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
		names[count] = strdup(e->d_name);
		if (names[count] == NULL)
			return 2;
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
			Expectation *x = expect_path ? find_expectation(names[i]) : NULL;

			fflush(stdout);
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %zu - corpus file %s keeps the target's properties\n", ++n, names[i]);
			if (expect_path != NULL && x == NULL)
			{
				printf("not ok %zu - corpus file %s has a line in %s\n", ++n, names[i], expect_path);
				failed++;
			}
			else if (x != NULL)
			{
				int			ok = fuzz_expect(data, len, x->spec);

				x->seen = 1;
				printf("%s %zu - corpus file %s: %s\n", ok ? "ok" : "not ok", ++n, names[i], x->spec);
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
