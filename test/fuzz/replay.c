/*
 * replay.c — run the fuzz corpus through the fuzz target, as a unit test.
 *
 * libFuzzer is clang-only and takes minutes; this main links the same
 * LLVMFuzzerTestOneInput with the ordinary compiler and feeds it each file
 * of test/fuzz/corpus once, in name order, so the properties the target
 * asserts are checked on every `make unit` run.  A violated property aborts,
 * which the test runner counts as a failure.
 *
 *   test_fuzz_corpus [corpus-dir]     default: CORPUS_DIR, set by the Makefile
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CORPUS_DIR
#define CORPUS_DIR "test/fuzz/corpus"
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

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : CORPUS_DIR;
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
				   i + 1, names[i], REPLAY_MAX_BYTES);
			failed++;
		}
		else
		{
			fflush(stdout);
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %zu - corpus file %s\n", i + 1, names[i]);
		}
		free(data);
		free(path);
		free(names[i]);
	}
	free(names);
	printf("1..%zu\n", count);
	return failed ? 1 : 0;
}
