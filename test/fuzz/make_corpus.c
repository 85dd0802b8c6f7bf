/*
 * make_corpus.c — write the seed corpus for fuzz_envelope.
 *
 * Valid envelopes sealed with the fuzz target's test key (so mutations start
 * from values that open), a few structurally broken ones, and "pv1:"
 * literals good and bad.  Nonces are random, so a rerun rewrites the files
 * with different bytes; rerun only when the seeds need to change.
 *
 *   cc -std=c99 -Isrc -o /tmp/make_corpus test/fuzz/make_corpus.c src/envelope.c -lsodium
 *   /tmp/make_corpus test/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "envelope.h"

static const char *dir;
static unsigned char key[ENVELOPE_KEY_BYTES];

static void
put(const char *name, const void *data, size_t len)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
	{
		fprintf(stderr, "make_corpus: cannot write %s\n", path);
		exit(1);
	}
}

/* Seal into a static buffer big enough for every seed below. */
static size_t
seal(unsigned char *out, uint32_t key_id, uint16_t cat, EnvelopeKind kind,
	 const unsigned char *k, const void *pt, size_t ptlen)
{
	if (envelope_sealed_size(ptlen) > 2048 ||
		envelope_seal(out, key_id, cat, kind, k, pt, ptlen) != 0)
	{
		fprintf(stderr, "make_corpus: cannot seal\n");
		exit(1);
	}
	return envelope_sealed_size(ptlen);
}

static void
put_literal(const char *name, const unsigned char *env, size_t len,
			const char *suffix)
{
	char		text[4096];

	if (envelope_to_text(text, sizeof(text) - 8, env, len) != 0)
		exit(1);
	strcat(text, suffix);
	put(name, text, strlen(text));
}

int
main(int argc, char **argv)
{
	static const unsigned char bin[] = {0x00, 0xff, 0x00, 0x80, 0x7f, 0x01};
	static const char email[] = "alice@example.com";
	unsigned char env[2048];
	unsigned char other[ENVELOPE_KEY_BYTES];
	unsigned char big[1000];
	size_t		len;
	size_t		i;

	if (argc != 2 || sodium_init() < 0)
	{
		fprintf(stderr, "usage: make_corpus DIR\n");
		return 2;
	}
	dir = argv[1];
	/* Must match fuzz_key in fuzz_envelope.c. */
	for (i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char) i;
	memset(other, 0x42, sizeof(other));
	memset(big, 'x', sizeof(big));

	put("empty", "", 0);

	len = seal(env, 1, 1, ENVELOPE_TEXT, key, "", 0);
	put("env_text_empty.bin", env, len);
	len = seal(env, 1, 1, ENVELOPE_BYTEA, key, NULL, 0);
	put("env_bytea_empty.bin", env, len);
	put_literal("lit_bytea_empty.txt", env, len, "");
	len = seal(env, 0x01020304, 0xffff, ENVELOPE_BYTEA, key, bin, sizeof(bin));
	put("env_bytea_bin.bin", env, len);
	len = seal(env, 2, 3, ENVELOPE_TEXT, key, big, sizeof(big));
	put("env_text_1000.bin", env, len);
	len = seal(env, 1, 1, ENVELOPE_TEXT, other, email, strlen(email));
	put("env_other_key.bin", env, len);

	len = seal(env, 1, 2, ENVELOPE_TEXT, key, email, strlen(email));
	put("env_text_email.bin", env, len);
	put_literal("lit_text_email.txt", env, len, "");
	put_literal("lit_trailing_newline.txt", env, len, "\n");
	put("env_truncated_46.bin", env, 46);
	env[0] = 2;
	put("env_bad_version.bin", env, len);
	env[0] = 1;
	memset(env + 1, 0, 4);
	put("env_zero_key_id.bin", env, len);
	env[4] = 1;
	memset(env + 5, 0, 2);
	put("env_zero_category.bin", env, len);

	put("lit_bad_base64.txt", "pv1:!!!!", 8);
	put("lit_too_short.txt", "pv1:AAAA", 8);
	put("lit_wrong_prefix.txt", "pv2:AAAA", 8);
	return 0;
}
