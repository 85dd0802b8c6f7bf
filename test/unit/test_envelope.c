/*
 * test_envelope.c — the envelope format: layout, round trips (empty, small,
 * 8 MB), tamper evidence (every bit, every truncation, header swaps, the
 * other kind, another key), exact lengths, and the "pv1:" text form.
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "envelope.h"
#include "unit.h"

#define CANARY 0xA5
#define CANARY_BYTES 64

static unsigned char key[ENVELOPE_KEY_BYTES];
static unsigned char other_key[ENVELOPE_KEY_BYTES];

/* Room for n bytes followed by a canary that must survive every call. */
static unsigned char *
guarded(size_t n)
{
	unsigned char *p = malloc(n + CANARY_BYTES);

	if (p == NULL)
		exit(2);
	memset(p, CANARY, n + CANARY_BYTES);
	return p;
}

static int
canary_intact(const unsigned char *p, size_t n)
{
	size_t		i;

	for (i = 0; i < CANARY_BYTES; i++)
		if (p[n + i] != CANARY)
			return 0;
	return 1;
}

/* Seal, returning a malloc'd envelope of exactly envelope_sealed_size bytes. */
static unsigned char *
seal(const void *pt, size_t ptlen, uint32_t key_id, uint16_t cat,
	 EnvelopeKind kind, size_t *envlen)
{
	unsigned char *env;

	*envlen = envelope_sealed_size(ptlen);
	env = guarded(*envlen);
	if (envelope_seal(env, key_id, cat, kind, key, pt, ptlen) != 0)
	{
		free(env);
		return NULL;
	}
	return env;
}

/* Open into a fresh buffer; 1 if it opened and gave back exactly pt. */
static int
opens_to(const unsigned char *env, size_t envlen, EnvelopeKind kind,
		 const unsigned char *k, const void *pt, size_t ptlen)
{
	EnvelopeHeader hdr;
	const char *why = NULL;
	unsigned char *out;
	int			ok;

	if (envelope_parse(env, envlen, &hdr, &why) != 0 || hdr.ciphertext_len != ptlen)
		return 0;
	out = guarded(ptlen);
	ok = envelope_open(out, env, envlen, kind, k, &why) == 0 &&
		(ptlen == 0 || memcmp(out, pt, ptlen) == 0) &&
		canary_intact(out, ptlen);
	free(out);
	return ok;
}

/* 1 if open fails, says why, writes nothing past the plaintext length and leaves no plaintext. */
static int
fails_to_open(const unsigned char *env, size_t envlen, EnvelopeKind kind,
			  const unsigned char *k)
{
	size_t		room = envlen >= ENVELOPE_OVERHEAD ? envlen - ENVELOPE_OVERHEAD : 0;
	unsigned char *out = guarded(room);
	const char *why = NULL;
	EnvelopeHeader hdr;
	int			ok;

	ok = envelope_open(out, env, envlen, kind, k, &why) == -1 && why != NULL &&
		canary_intact(out, room);
	/* After an authentication failure the output is zeroed, not left as it was. */
	if (ok && envelope_parse(env, envlen, &hdr, &why) == 0)
		ok = sodium_is_zero(out, room);
	free(out);
	return ok;
}

static void
test_layout(void)
{
	static const char pt[] = "alice@example.com";
	size_t		ptlen = sizeof(pt) - 1;
	size_t		envlen;
	unsigned char *env = seal(pt, ptlen, 0x01020304, 0x0506, ENVELOPE_TEXT, &envlen);
	unsigned char ad[8];
	unsigned char dec[sizeof(pt)];
	EnvelopeHeader hdr;
	const char *why = NULL;

	CHECK(ENVELOPE_OVERHEAD == 47 && ENVELOPE_HEADER_BYTES + ENVELOPE_TAG_BYTES == ENVELOPE_OVERHEAD,
		  "the published overhead is 47 bytes");
	CHECK(env != NULL && envlen == ptlen + 47, "a sealed value is the plaintext length plus 47");
	CHECK(canary_intact(env, envlen), "sealing writes nothing past envelope_sealed_size");
	CHECK(env[0] == 0x01, "byte 0 is version 1");
	CHECK(env[1] == 0x01 && env[2] == 0x02 && env[3] == 0x03 && env[4] == 0x04,
		  "bytes 1-4 are the key id, big-endian");
	CHECK(env[5] == 0x05 && env[6] == 0x06, "bytes 5-6 are the category id, big-endian");
	CHECK(envelope_parse(env, envlen, &hdr, &why) == 0 && hdr.version == 1 &&
		  hdr.key_id == 0x01020304 && hdr.category_id == 0x0506 &&
		  hdr.nonce == env + 7 && hdr.ciphertext_len == ptlen,
		  "parse reads the header back and points at the nonce in place");

	/* Decrypt with libsodium directly, building the associated data from the published layout. */
	memcpy(ad, env, 7);
	ad[7] = 't';
	CHECK(crypto_aead_xchacha20poly1305_ietf_decrypt_detached(dec, NULL, env + 31, ptlen,
															  env + 31 + ptlen, ad, sizeof(ad),
															  env + 7, key) == 0 &&
		  memcmp(dec, pt, ptlen) == 0,
		  "the layout is as published: libsodium alone opens it with AD = header bytes + 't'");
	free(env);
}

/* An envelope built by hand from the specification must open: guards against both ends drifting together. */
static void
test_hand_built(void)
{
	static const char pt[] = "hand built";
	size_t		ptlen = sizeof(pt) - 1;
	unsigned char env[47 + sizeof(pt)];
	unsigned char ad[8];
	size_t		i;

	env[0] = 1;
	env[1] = 0; env[2] = 0; env[3] = 1; env[4] = 0x2c;	/* key id 300 */
	env[5] = 0; env[6] = 7;								/* category 7 */
	for (i = 0; i < 24; i++)
		env[7 + i] = (unsigned char) i;
	memcpy(ad, env, 7);
	ad[7] = 'b';
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(env + 31, env + 31 + ptlen, NULL,
														(const unsigned char *) pt, ptlen,
														ad, sizeof(ad), NULL, env + 7, key);
	CHECK(opens_to(env, ptlen + 47, ENVELOPE_BYTEA, key, pt, ptlen),
		  "an envelope built by hand from the specification opens");
	CHECK(fails_to_open(env, ptlen + 47, ENVELOPE_TEXT, key),
		  "the hand-built bytea envelope does not open as text");
}

static void
test_round_trips(void)
{
	static const unsigned char bin[] = {0x00, 0xff, 0x00, 0x10, 0x80};
	size_t		envlen, envlen2;
	unsigned char *env, *env2;
	const char *why = NULL;
	unsigned char one;

	env = seal("", 0, 1, 1, ENVELOPE_TEXT, &envlen);
	CHECK(env != NULL && envlen == 47, "an empty string seals to 47 bytes");
	CHECK(opens_to(env, envlen, ENVELOPE_TEXT, key, "", 0), "an empty string round-trips");
	CHECK(envelope_open(NULL, env, envlen, ENVELOPE_TEXT, key, &why) == 0,
		  "an empty value opens with a NULL output buffer");
	one = CANARY;
	CHECK(envelope_open(&one, env, envlen, ENVELOPE_TEXT, key, &why) == 0 && one == CANARY,
		  "opening an empty value writes no byte");
	CHECK(fails_to_open(env, envlen, ENVELOPE_BYTEA, key), "an empty text value does not open as bytea");
	free(env);

	env = malloc(47);
	CHECK(env != NULL && envelope_seal(env, 1, 1, ENVELOPE_BYTEA, key, NULL, 0) == 0 &&
		  opens_to(env, 47, ENVELOPE_BYTEA, key, "", 0),
		  "an empty bytea given as NULL round-trips");
	free(env);

	env = seal(bin, sizeof(bin), 0xffffffff, 0xffff, ENVELOPE_BYTEA, &envlen);
	CHECK(env != NULL && opens_to(env, envlen, ENVELOPE_BYTEA, key, bin, sizeof(bin)),
		  "bytes with NULs round-trip under the largest key and category ids");
	free(env);

	env = seal("same", 4, 1, 1, ENVELOPE_TEXT, &envlen);
	env2 = seal("same", 4, 1, 1, ENVELOPE_TEXT, &envlen2);
	CHECK(env != NULL && env2 != NULL && envlen == envlen2 &&
		  memcmp(env + 7, env2 + 7, 24) != 0 && memcmp(env + 31, env2 + 31, envlen - 31) != 0,
		  "two seals of the same plaintext differ (random nonce)");
	free(env);
	free(env2);
}

static void
test_large(void)
{
	size_t		ptlen = 8u * 1024 * 1024;
	unsigned char *pt = malloc(ptlen);
	unsigned char *env;
	size_t		envlen;

	if (pt == NULL)
		exit(2);
	randombytes_buf(pt, ptlen);
	env = seal(pt, ptlen, 42, 3, ENVELOPE_BYTEA, &envlen);
	CHECK(env != NULL && envlen == ptlen + 47 && canary_intact(env, envlen),
		  "an 8 MB value seals to exactly 8 MB + 47 bytes");
	CHECK(opens_to(env, envlen, ENVELOPE_BYTEA, key, pt, ptlen), "an 8 MB value round-trips");
	env[envlen / 2] ^= 0x01;
	CHECK(fails_to_open(env, envlen, ENVELOPE_BYTEA, key), "one flipped bit in the middle of 8 MB is detected");
	free(env);
	free(pt);
}

static void
test_tampering(void)
{
	static const char pt[] = "0123456789abcdefghij";
	size_t		ptlen = sizeof(pt) - 1;
	size_t		envlen, len, i;
	int			bit;
	unsigned char *env = seal(pt, ptlen, 7, 9, ENVELOPE_TEXT, &envlen);
	unsigned char *copy = malloc(envlen + 1);
	unsigned char *empty;
	size_t		emptylen;
	int			all;
	EnvelopeHeader hdr;
	const char *why = NULL;

	if (env == NULL || copy == NULL)
		exit(2);

	all = 1;
	for (i = 0; i < envlen; i++)
		for (bit = 0; bit < 8; bit++)
		{
			memcpy(copy, env, envlen);
			copy[i] ^= (unsigned char) (1 << bit);
			if (!fails_to_open(copy, envlen, ENVELOPE_TEXT, key))
				all = 0;
		}
	CHECK(all, "every single-bit flip anywhere in the envelope fails to open");

	all = 1;
	for (i = 0; i < envlen; i++)
	{
		memcpy(copy, env, envlen);
		copy[i] ^= 0xff;
		if (!fails_to_open(copy, envlen, ENVELOPE_TEXT, key))
			all = 0;
	}
	CHECK(all, "every whole-byte flip fails to open");

	empty = seal("", 0, 7, 9, ENVELOPE_BYTEA, &emptylen);
	all = 1;
	for (i = 0; i < emptylen; i++)
		for (bit = 0; bit < 8; bit++)
		{
			memcpy(copy, empty, emptylen);
			copy[i] ^= (unsigned char) (1 << bit);
			if (!fails_to_open(copy, emptylen, ENVELOPE_BYTEA, key))
				all = 0;
		}
	CHECK(all, "every single-bit flip of an empty value's envelope fails to open");
	free(empty);

	all = 1;
	for (len = 0; len < envlen; len++)
		if (!fails_to_open(env, len, ENVELOPE_TEXT, key))
			all = 0;
	CHECK(all, "truncation by any amount fails to open");

	all = 1;
	for (len = 0; len < ENVELOPE_OVERHEAD; len++)
		if (envelope_parse(env, len, &hdr, &why) != -1 || strstr(why, "too short") == NULL)
			all = 0;
	CHECK(all, "anything shorter than 47 bytes fails to parse as too short");

	memcpy(copy, env, envlen);
	copy[envlen] = 0;
	CHECK(fails_to_open(copy, envlen + 1, ENVELOPE_TEXT, key), "an appended byte fails to open");

	memcpy(copy, env, envlen);
	copy[4] = 8;					/* key id 7 -> 8 */
	CHECK(fails_to_open(copy, envlen, ENVELOPE_TEXT, key),
		  "changing the key id fails to open even with the right key");
	memcpy(copy, env, envlen);
	copy[6] = 10;					/* category 9 -> 10 */
	CHECK(fails_to_open(copy, envlen, ENVELOPE_TEXT, key), "changing the category id fails to open");
	memcpy(copy, env, envlen);
	copy[1] = 0; copy[2] = 0; copy[3] = 0; copy[4] = 9;
	copy[5] = 0; copy[6] = 7;		/* key id and category values exchanged */
	CHECK(fails_to_open(copy, envlen, ENVELOPE_TEXT, key), "exchanging the key id and category values fails to open");

	CHECK(fails_to_open(env, envlen, ENVELOPE_BYTEA, key), "a text value does not open as bytea");
	CHECK(fails_to_open(env, envlen, ENVELOPE_TEXT, other_key), "another key does not open it");
	CHECK(envelope_open(copy, env, envlen, ENVELOPE_BYTEA, key, &why) == -1 &&
		  strcmp(why, "authentication failed: the value was altered, or sealed with another key, category or type") == 0,
		  "an authentication failure gives the documented reason");
	CHECK(opens_to(env, envlen, ENVELOPE_TEXT, key, pt, ptlen), "the untouched original still opens");

	free(copy);
	free(env);
}

static void
test_parse_and_refusals(void)
{
	unsigned char env[64];
	unsigned char big[1];
	EnvelopeHeader hdr;
	const char *why = NULL;
	const char *why2 = NULL;
	size_t		max = crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX;

	if (max > SIZE_MAX - ENVELOPE_OVERHEAD)
		max = SIZE_MAX - ENVELOPE_OVERHEAD;

	memset(env, 0x41, sizeof(env));
	env[0] = 1;
	CHECK(envelope_parse(env, 47, &hdr, &why) == 0 && hdr.ciphertext_len == 0,
		  "parse is structural only: 47 well-formed bytes parse");

	env[0] = 0;
	CHECK(envelope_parse(env, 47, &hdr, &why) == -1 && strstr(why, "version") != NULL,
		  "version 0 is refused");
	env[0] = 2;
	CHECK(envelope_parse(env, 47, &hdr, &why) == -1 && strstr(why, "version") != NULL &&
		  hdr.key_id == 0 && hdr.nonce == NULL, "version 2 is refused and the header left zeroed");
	env[0] = 1;
	env[1] = env[2] = env[3] = env[4] = 0;
	CHECK(envelope_parse(env, 47, &hdr, &why) == -1 && strstr(why, "key id 0") != NULL,
		  "key id 0 is refused");
	env[1] = 1;
	env[5] = env[6] = 0;
	CHECK(envelope_parse(env, 47, &hdr, &why) == -1 && strstr(why, "category id 0") != NULL,
		  "category id 0 is refused");
	CHECK(envelope_parse(NULL, 0, &hdr, &why) == -1, "a NULL value is refused");

	memset(env, 'Z', sizeof(env));
	envelope_parse(env, 10, &hdr, &why);
	memset(env, 'Q', sizeof(env));
	envelope_parse(env, 20, &hdr, &why2);
	CHECK(why == why2 && strchr(why, 'Z') == NULL && strchr(why, 'Q') == NULL,
		  "reasons are static strings that do not echo the input");

	CHECK(envelope_seal(env, 0, 1, ENVELOPE_TEXT, key, (const unsigned char *) "x", 1) == -1,
		  "sealing under key id 0 is refused");
	CHECK(envelope_seal(env, 1, 0, ENVELOPE_TEXT, key, (const unsigned char *) "x", 1) == -1,
		  "sealing under category id 0 is refused");
	CHECK(envelope_seal(env, 1, 1, (EnvelopeKind) 'x', key, (const unsigned char *) "x", 1) == -1,
		  "sealing as an unknown kind is refused");
	CHECK(envelope_seal(env, 1, 1, ENVELOPE_TEXT, key, NULL, 1) == -1,
		  "a NULL plaintext with a nonzero length is refused");
	CHECK(envelope_seal(env, 1, 1, ENVELOPE_TEXT, key, big, max + 1) == -1,
		  "a plaintext too large for the cipher is refused before it is read");

	CHECK(envelope_sealed_size(0) == 47 && envelope_sealed_size(100) == 147, "sealed size adds 47");
	CHECK(envelope_sealed_size(max) == max + 47, "the largest sealable plaintext has a size");
	CHECK(envelope_sealed_size(max + 1) == 0 && envelope_sealed_size(SIZE_MAX) == 0 &&
		  envelope_sealed_size(SIZE_MAX - 46) == 0, "sizes that would overflow give 0");

	envelope_seal(env, 1, 1, ENVELOPE_TEXT, key, (const unsigned char *) "x", 1);
	CHECK(envelope_open(big, env, 48, (EnvelopeKind) 0, key, &why) == -1 && strstr(why, "unknown type") != NULL,
		  "opening as an unknown kind is refused");
	CHECK(envelope_open(NULL, env, 48, ENVELOPE_TEXT, key, &why) == -1,
		  "opening a non-empty value into NULL is refused");
}

static char *
to_text(const unsigned char *env, size_t envlen)
{
	size_t		n = envelope_text_size(envlen);
	char	   *s = malloc(n + CANARY_BYTES);

	if (s == NULL)
		exit(2);
	memset(s, CANARY, n + CANARY_BYTES);
	if (envelope_to_text(s, n, env, envlen) != 0 || !canary_intact((unsigned char *) s, n) ||
		strlen(s) + 1 != n)
	{
		free(s);
		return NULL;
	}
	return s;
}

static int
from_text_fails(const char *s, size_t slen, const char *reason_part)
{
	unsigned char *out = guarded(slen);
	size_t		envlen = 99;
	const char *why = NULL;
	int			ok;

	ok = envelope_from_text(out, &envlen, s, slen, &why) == -1 && envlen == 0 &&
		why != NULL && strstr(why, reason_part) != NULL && canary_intact(out, slen);
	free(out);
	return ok;
}

static void
test_text_form(void)
{
	static const char pt[] = "text form";
	size_t		ptlen = sizeof(pt) - 1;
	size_t		envlen, declen, n, i;
	unsigned char *env = seal(pt, ptlen, 5, 6, ENVELOPE_TEXT, &envlen);
	char	   *s = to_text(env, envlen);
	char	   *bad;
	unsigned char *dec;
	const char *why = NULL;
	char		small[8];
	unsigned char buf[64];
	int			all;

	if (env == NULL || s == NULL)
		exit(2);
	n = strlen(s);
	dec = guarded(n);

	CHECK(strncmp(s, "pv1:", 4) == 0 && n == 4 + 4 * ((envlen + 2) / 3),
		  "the text form is pv1: and padded base64, sized exactly by envelope_text_size");
	CHECK(envelope_text_has_prefix(s, n), "the text form is recognised by its prefix");
	CHECK(envelope_from_text(dec, &declen, s, n, &why) == 0 && declen == envlen &&
		  memcmp(dec, env, envlen) == 0 && canary_intact(dec, n),
		  "the text form decodes back to the same envelope");
	CHECK(opens_to(dec, declen, ENVELOPE_TEXT, key, pt, ptlen), "the decoded envelope opens");

	all = 1;
	for (i = 0; i < 3; i++)
	{
		size_t		l;
		unsigned char *e = seal("abc", i, 1, 1, ENVELOPE_BYTEA, &l);
		char	   *t = to_text(e, l);

		if (t == NULL || envelope_from_text(dec, &declen, t, strlen(t), &why) != 0 ||
			declen != l || memcmp(dec, e, l) != 0 ||
			strspn(t + strcspn(t, "="), "=") != (3 - l % 3) % 3)
			all = 0;
		free(t);
		free(e);
	}
	/* 47, 48 and 49 bytes: one, no and two padding characters. */
	CHECK(all, "all three padding cases round-trip");

	CHECK(envelope_to_text(small, sizeof(small), env, envlen) == -1, "to_text refuses a buffer that is too small");
	CHECK(envelope_to_text(s, envelope_text_size(envlen) - 1, env, envlen) == -1,
		  "to_text refuses a buffer one byte short");
	CHECK(envelope_text_size(0) == 5 && envelope_text_size(47) == 4 + 64 + 1,
		  "text sizes count the prefix and the NUL");
	CHECK(envelope_text_size(SIZE_MAX) == 0 && envelope_text_size(SIZE_MAX / 4 * 3) == 0,
		  "text sizes that would overflow give 0");

	CHECK(!envelope_text_has_prefix("pv1", 3) && !envelope_text_has_prefix("", 0) &&
		  !envelope_text_has_prefix(NULL, 0), "a string shorter than the prefix has no prefix");
	CHECK(!envelope_text_has_prefix("PV1:AAAA", 8) && !envelope_text_has_prefix("pv2:AAAA", 8) &&
		  !envelope_text_has_prefix(" pv1:AAAA", 9), "the prefix is exact and case-sensitive");
	CHECK(envelope_text_has_prefix("pv1:", 4) && envelope_text_has_prefix("pv1:not base64", 14),
		  "the prefix alone decides, so bad contents reach from_text and are refused there");
	CHECK(!envelope_text_has_prefix("pv1:", 3), "has_prefix respects the given length");

	CHECK(from_text_fails(s + 1, n - 1, "must start with"), "a literal without the prefix is refused");
	bad = malloc(n + 2);
	memcpy(bad, s, n + 1);
	bad[1] = 'V';
	CHECK(from_text_fails(bad, n, "must start with"), "a wrong-case prefix is refused");
	strcpy(bad, s);
	bad[2] = '2';
	CHECK(from_text_fails(bad, n, "must start with"), "another version's prefix is refused");

	CHECK(from_text_fails("pv1:", 4, "too short"), "the prefix alone decodes to nothing and is too short");
	CHECK(from_text_fails("pv1:AAAA", 8, "too short"), "a value too short after decoding is refused");
	CHECK(from_text_fails("pv1:!!!!", 8, "base64"), "characters outside base64 are refused");
	CHECK(from_text_fails("pv1:AQ-_", 8, "base64"), "URL-safe base64 is refused");
	CHECK(from_text_fails("pv1:AQ", 6, "base64"), "missing padding is refused");
	CHECK(from_text_fails("pv1:AR==", 8, "base64"), "nonzero padding bits are refused (one text per envelope)");
	CHECK(from_text_fails("pv1:AQ==AQ==", 12, "base64"), "data after padding is refused");

	snprintf(bad, n + 2, " %s", s);
	CHECK(from_text_fails(bad, n + 1, "must start with"), "leading whitespace hides the prefix and is refused");
	snprintf(bad, n + 2, "%s\n", s);
	CHECK(from_text_fails(bad, n + 1, "base64"), "a trailing newline is refused");
	snprintf(bad, n + 2, "%s ", s);
	CHECK(from_text_fails(bad, n + 1, "base64"), "a trailing space is refused");
	memcpy(bad, s, 10);
	bad[10] = '\n';
	memcpy(bad + 11, s + 10, n - 10);
	CHECK(from_text_fails(bad, n + 1, "base64"), "a line break inside the base64 is refused");
	memcpy(bad, s, 4);
	bad[4] = '\t';
	memcpy(bad + 5, s + 4, n - 4);
	CHECK(from_text_fails(bad, n + 1, "base64"), "a tab after the prefix is refused");
	memcpy(bad, s, n);
	bad[20] = '\0';
	CHECK(from_text_fails(bad, n, "base64"), "an embedded NUL is refused");
	free(bad);

	/*
	 * Nonce bytes of 0xff print as "////"; a byte above 0x7f in place of a
	 * '/' decodes to the very same envelope on libsodium 1.0.18, so only an
	 * explicit alphabet check refuses it.
	 */
	memcpy(buf, env, envlen);
	memset(buf + 7, 0xff, 24);
	bad = to_text(buf, envlen);
	CHECK(bad != NULL && strchr(bad, '/') != NULL &&
		  envelope_from_text(dec, &declen, bad, strlen(bad), &why) == 0,
		  "a literal with '/' in it decodes");
	all = 1;
	for (i = 0x80; i <= 0xff; i++)
	{
		*strchr(bad, '/') = (char) i;
		if (!from_text_fails(bad, strlen(bad), "base64"))
			all = 0;
		*strchr(bad, (char) i) = '/';
	}
	CHECK(all, "every byte from 0x80 to 0xff is refused in place of a base64 character");
	free(bad);

	/* Well-formed base64 of a header with a bad version: structural checks apply after decoding. */
	memcpy(buf, env, envlen);
	buf[0] = 9;
	bad = to_text(buf, envlen);
	CHECK(bad != NULL && from_text_fails(bad, strlen(bad), "version"), "a decoded envelope must also pass parse");
	free(bad);

	free(dec);
	free(s);
	free(env);
}

static void
fixed_nonce(unsigned char *nonce, size_t len)
{
	memset(nonce, 0xAB, len);
}

/* The nonce of the known answers: bytes 0x40..0x57. */
static void
kat_nonce(unsigned char *nonce, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		nonce[i] = (unsigned char) (0x40 + i);
}

static void
hex_to_bytes(const char *hex, unsigned char *out, size_t *len)
{
	unsigned int b;

	for (*len = 0; hex[2 * *len]; (*len)++)
	{
		sscanf(hex + 2 * *len, "%2x", &b);
		out[*len] = (unsigned char) b;
	}
}

/*
 * Known answers, computed apart from libsodium and this code by
 * test/unit/envelope_kat.py (HChaCha20 by hand, OpenSSL's ChaCha20-Poly1305):
 * a change of the stored format, on purpose or not, fails here first, and the
 * values of every installed database would no longer open.
 */
static void
test_known_answers(void)
{
	static const struct
	{
		const char *name;
		uint32_t	key_id;
		uint16_t	category;
		EnvelopeKind kind;
		const char *pt;
		const char *hex;
		const char *literal;
	}			vectors[] = {
		{"text alice@example.com", 0x01020304, 0x0506, ENVELOPE_TEXT, "alice@example.com",
			"01010203040506404142434445464748494a4b4c4d4e4f5051525354555657"
			"b5556c13b5a01c6eee99f7d2cab206fdff3fc8824f34d28cf65d87fa2a436f601e",
		"pv1:AQECAwQFBkBBQkNERUZHSElKS0xNTk9QUVJTVFVWV7VVbBO1oBxu7pn30sqyBv3/P8iCTzTSjPZdh/oqQ29gHg=="},
		{"empty bytea", 7, 3, ENVELOPE_BYTEA, "",
			"01000000070003404142434445464748494a4b4c4d4e4f50515253545556574cec891b030400402b61c1a3d8d33370",
		"pv1:AQAAAAcAA0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV0zsiRsDBABAK2HBo9jTM3A="},
	};
	unsigned char k[ENVELOPE_KEY_BYTES];
	size_t		i;

	for (i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char) i;
	envelope_set_nonce_source(kat_nonce);
	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
	{
		unsigned char want[256];
		unsigned char got[256];
		unsigned char back[256];
		char		text[512];
		char		desc[160];
		size_t		wantlen;
		size_t		ptlen = strlen(vectors[i].pt);
		size_t		envlen = 0;
		const char *why = NULL;

		hex_to_bytes(vectors[i].hex, want, &wantlen);
		snprintf(desc, sizeof(desc), "known answer, %s: sealed bytes", vectors[i].name);
		CHECK(envelope_sealed_size(ptlen) == wantlen &&
			  envelope_seal(got, vectors[i].key_id, vectors[i].category, vectors[i].kind, k,
							(const unsigned char *) vectors[i].pt, ptlen) == 0 &&
			  memcmp(got, want, wantlen) == 0, desc);
		snprintf(desc, sizeof(desc), "known answer, %s: its literal", vectors[i].name);
		CHECK(envelope_to_text(text, sizeof(text), want, wantlen) == 0 &&
			  strcmp(text, vectors[i].literal) == 0, desc);
		snprintf(desc, sizeof(desc), "known answer, %s: the literal opens to the plaintext", vectors[i].name);
		CHECK(envelope_from_text(got, &envlen, vectors[i].literal, strlen(vectors[i].literal), &why) == 0 &&
			  envlen == wantlen &&
			  envelope_open(back, got, envlen, vectors[i].kind, k, &why) == 0 &&
			  memcmp(back, vectors[i].pt, ptlen) == 0, desc);
	}
	envelope_set_nonce_source(NULL);
}

int
main(void)
{
	if (sodium_init() < 0)
		return 2;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(other_key, sizeof(other_key));

	test_layout();
	test_hand_built();
	test_round_trips();
	test_large();
	test_tampering();
	test_parse_and_refusals();
	test_text_form();
	test_known_answers();

	/* the nonce source can be replaced, and NULL restores fresh random nonces */
	{
		unsigned char k[ENVELOPE_KEY_BYTES];
		unsigned char a[ENVELOPE_OVERHEAD + 3];
		unsigned char b[ENVELOPE_OVERHEAD + 3];
		unsigned char pt[3] = {'a', 'b', 'c'};
		unsigned char back[3];
		const char *why = NULL;

		memset(k, 7, sizeof(k));
		envelope_set_nonce_source(fixed_nonce);
		CHECK(envelope_seal(a, 5, 9, ENVELOPE_TEXT, k, pt, 3) == 0, "seal with a custom nonce source");
		CHECK(a[7] == 0xAB && a[30] == 0xAB, "the custom source supplied the nonce");
		CHECK(envelope_open(back, a, sizeof(a), ENVELOPE_TEXT, k, &why) == 0 && memcmp(back, pt, 3) == 0,
			  "a value sealed with a custom nonce opens");
		envelope_set_nonce_source(NULL);
		CHECK(envelope_seal(b, 5, 9, ENVELOPE_TEXT, k, pt, 3) == 0 && memcmp(a + 7, b + 7, 24) != 0,
			  "NULL restores random nonces");
	}

	UNIT_DONE();
}
