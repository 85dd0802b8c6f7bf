/*
 * fuzz_envelope.c — libFuzzer target for the envelope format.
 *
 * Every input is tried three ways: as a stored envelope (parse, then open
 * with a fixed test key as both kinds), as a "pv1:" literal (from_text), and
 * as envelope bytes to print and read back (to_text).  Beyond memory safety
 * under ASan/UBSan, it checks the properties the rest of the extension leans
 * on: an open that succeeds is exactly the AEAD of its output under the
 * stored header, nonce and kind; a failed open leaves no plaintext; a
 * literal that decodes is the one canonical text of its envelope.  The seed
 * corpus holds values sealed with the same key, so mutations start from
 * envelopes that do open.
 *
 * Built by `make fuzz` with clang's libFuzzer, and by `make unit` with the
 * ordinary compiler plus replay.c, which feeds it the corpus as a unit test
 * (test/unit/test_fuzz_envelope) and checks test/fuzz/envelope.expect:
 *
 *   <seed> <form> <outcome> [<plaintext>]
 *
 * form: env (envelope bytes) or lit (a "pv1:" literal, decoded first);
 * outcome: text or bytea (opens with the corpus key as that kind and not as
 * the other, to the plaintext, written as fuzz_spec_bytes reads it) or
 * refused (does not decode or open).
 */
#include <sodium.h>

#include "envelope.h"
#include "fuzz.h"

/* The key the seed corpus is sealed with: bytes 0x00..0x1f. */
static unsigned char fuzz_key[ENVELOPE_KEY_BYTES];

static void
fuzz_init(void)
{
	static int	done = 0;
	size_t		i;

	if (done)
		return;
	FUZZ_ASSERT(sodium_init() >= 0);
	for (i = 0; i < sizeof(fuzz_key); i++)
		fuzz_key[i] = (unsigned char) i;
	done = 1;
}

/*
 * Re-seal out under the header, nonce and kind found in env, and require the
 * very same bytes: success of open must mean env is an honest envelope.
 */
static void
check_reseals_to(const unsigned char *env, size_t len, EnvelopeKind kind,
				 const unsigned char *pt, size_t ptlen)
{
	unsigned char ad[8];
	unsigned char *again = fuzz_alloc(len);

	memcpy(again, env, ENVELOPE_HEADER_BYTES);
	memcpy(ad, env, 7);
	ad[7] = (unsigned char) kind;
	FUZZ_ASSERT(crypto_aead_xchacha20poly1305_ietf_encrypt_detached(again + ENVELOPE_HEADER_BYTES,
																	again + ENVELOPE_HEADER_BYTES + ptlen,
																	NULL, pt, ptlen, ad, sizeof(ad),
																	NULL, env + 7, fuzz_key) == 0);
	FUZZ_ASSERT(memcmp(again, env, len) == 0);
	free(again);
}

static void
fuzz_open(const uint8_t *data, size_t size)
{
	static const EnvelopeKind kinds[2] = {ENVELOPE_TEXT, ENVELOPE_BYTEA};
	EnvelopeHeader hdr;
	const char *why = NULL;
	int			parsed;
	int			opened = 0;
	int			k;

	parsed = envelope_parse(data, size, &hdr, &why) == 0;
	if (parsed)
	{
		FUZZ_ASSERT(size >= ENVELOPE_OVERHEAD);
		FUZZ_ASSERT(hdr.ciphertext_len == size - ENVELOPE_OVERHEAD);
		FUZZ_ASSERT(hdr.version == ENVELOPE_VERSION && hdr.key_id != 0 && hdr.category_id != 0);
		FUZZ_ASSERT(hdr.nonce == data + 7);
	}
	else
		FUZZ_ASSERT(why != NULL && hdr.ciphertext_len == 0 && hdr.nonce == NULL);

	for (k = 0; k < 2; k++)
	{
		/* Exactly the room the contract promises, so ASan sees any overrun. */
		size_t		room = parsed ? hdr.ciphertext_len : 0;
		unsigned char *out = fuzz_alloc(room);
		EnvelopeHeader again;

		memset(out, 0xA5, room);
		why = NULL;
		if (envelope_open(out, data, size, kinds[k], fuzz_key, &why) == 0)
		{
			FUZZ_ASSERT(parsed);
			FUZZ_ASSERT(envelope_parse(data, size, &again, &why) == 0 &&
						again.ciphertext_len == room);
			check_reseals_to(data, size, kinds[k], out, room);
			opened++;
		}
		else
		{
			FUZZ_ASSERT(why != NULL);
			if (parsed)
				FUZZ_ASSERT(sodium_is_zero(out, room));
		}
		free(out);
	}
	/* The kind is authenticated: one envelope never opens as both. */
	FUZZ_ASSERT(opened <= 1);
}

static void
fuzz_from_text(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	unsigned char *env = fuzz_alloc(size);
	size_t		envlen = 12345;
	const char *why = NULL;
	EnvelopeHeader hdr;

	if (envelope_from_text(env, &envlen, s, size, &why) == 0)
	{
		size_t		n = envelope_text_size(envlen);
		char	   *text;

		FUZZ_ASSERT(envelope_text_has_prefix(s, size));
		FUZZ_ASSERT(envlen <= size && envelope_parse(env, envlen, &hdr, &why) == 0);
		/* One envelope, one literal: printing it back gives the input. */
		FUZZ_ASSERT(n == size + 1);
		text = fuzz_alloc(n);
		FUZZ_ASSERT(envelope_to_text(text, n, env, envlen) == 0);
		FUZZ_ASSERT(memcmp(text, s, size) == 0 && text[size] == '\0');
		free(text);
	}
	else
		FUZZ_ASSERT(envlen == 0 && why != NULL);
	free(env);
}

static void
fuzz_to_text(const uint8_t *data, size_t size)
{
	size_t		n = envelope_text_size(size);
	char	   *text;
	unsigned char *back;
	size_t		backlen = 0;
	const char *why = NULL;
	EnvelopeHeader hdr;
	int			parsed = envelope_parse(data, size, &hdr, &why) == 0;

	FUZZ_ASSERT(n > 0);
	text = fuzz_alloc(n);
	FUZZ_ASSERT(envelope_to_text(text, n, data, size) == 0);
	FUZZ_ASSERT(strlen(text) + 1 == n);
	back = fuzz_alloc(n);
	/* Reading back succeeds exactly when the bytes were a well-formed envelope. */
	FUZZ_ASSERT((envelope_from_text(back, &backlen, text, n - 1, &why) == 0) == parsed);
	if (parsed)
		FUZZ_ASSERT(backlen == size && memcmp(back, data, size) == 0);
	free(back);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	fuzz_open(data, size);
	fuzz_from_text(data, size);
	fuzz_to_text(data, size);
	return 0;
}

int
fuzz_expect(const uint8_t *data, size_t len, const char *spec)
{
	static const EnvelopeKind kinds[2] = {ENVELOPE_TEXT, ENVELOPE_BYTEA};
	char		form[8] = "",
				outcome[8] = "",
				plain_spec[4000] = "";
	unsigned char *plain = NULL;
	size_t		plain_len = 0;
	unsigned char *env = fuzz_alloc(len);
	size_t		envlen = len;
	const char *why = NULL;
	int			n,
				k,
				ok = 1,
				decoded = 1;

	fuzz_init();
	n = sscanf(spec, "%7s %7s %3999s", form, outcome, plain_spec);
	if (n < 2 || (strcmp(form, "env") != 0 && strcmp(form, "lit") != 0) ||
		(strcmp(outcome, "refused") == 0) != (n == 2) ||
		(strcmp(outcome, "refused") != 0 && strcmp(outcome, "text") != 0 &&
		 strcmp(outcome, "bytea") != 0) ||
		(n == 3 && fuzz_spec_bytes(plain_spec, &plain, &plain_len) != 0))
	{
		printf("# malformed spec: %s\n", spec);
		free(env);
		free(plain);
		return 0;
	}
	if (strcmp(form, "lit") == 0)
		decoded = envelope_from_text(env, &envlen, (const char *) data, len, &why) == 0;
	else
		memcpy(env, data, len);
	for (k = 0; k < 2; k++)
	{
		EnvelopeHeader hdr;
		unsigned char *out;
		int			opened;
		int			want = strcmp(outcome, k == 0 ? "text" : "bytea") == 0;

		if (!decoded || envelope_parse(env, envlen, &hdr, &why) != 0)
		{
			ok &= !want;
			continue;
		}
		out = fuzz_alloc(hdr.ciphertext_len);
		opened = envelope_open(out, env, envlen, kinds[k], fuzz_key, &why) == 0;
		if (want)
			ok &= opened && fuzz_same("plaintext", out, hdr.ciphertext_len, plain, plain_len);
		else
			ok &= !opened;
		free(out);
	}
	free(env);
	free(plain);
	return ok;
}
