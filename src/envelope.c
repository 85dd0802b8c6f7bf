/*
 * envelope.c — seal, open, parse and print the stored form of encrypted values.
 *
 * Every encrypted type stores one envelope (layout in envelope.h): a short
 * authenticated header naming the data key and the category, a random
 * 192-bit nonce, and XChaCha20-Poly1305-IETF ciphertext and tag from
 * libsodium.  The server side (keys, types, the decryption gate) decides
 * which key to use and whether to open at all; this file only moves bytes,
 * and keeps no state, so it can be unit-tested and fuzzed on its own.
 */
#include "envelope.h"

#include <string.h>
#include <sodium.h>

#define ENVELOPE_NONCE_OFFSET 7
#define ENVELOPE_AD_BYTES (ENVELOPE_NONCE_OFFSET + 1)

/*
 * The format is fixed by these libsodium constants; if a libsodium ever
 * changed them, the build must stop rather than write another format.
 */
typedef char envelope_nonce_size_check[
	ENVELOPE_HEADER_BYTES - ENVELOPE_NONCE_OFFSET ==
	crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ? 1 : -1];
typedef char envelope_tag_size_check[
	ENVELOPE_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES ? 1 : -1];
typedef char envelope_key_size_check[
	ENVELOPE_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES ? 1 : -1];
typedef char envelope_overhead_check[
	ENVELOPE_OVERHEAD == ENVELOPE_HEADER_BYTES + ENVELOPE_TAG_BYTES ? 1 : -1];

static void
default_nonce_source(unsigned char *nonce, size_t len)
{
	randombytes_buf(nonce, len);
}

static EnvelopeNonceSource nonce_source = default_nonce_source;

void
envelope_set_nonce_source(EnvelopeNonceSource source)
{
	nonce_source = source != NULL ? source : default_nonce_source;
}

static const char *const why_auth =
"authentication failed: the value was altered, or sealed with another key, category or type";

static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char) (v >> 24);
	p[1] = (unsigned char) (v >> 16);
	p[2] = (unsigned char) (v >> 8);
	p[3] = (unsigned char) v;
}

static void
put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char) (v >> 8);
	p[1] = (unsigned char) v;
}

static uint32_t
get_u32(const unsigned char *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static uint16_t
get_u16(const unsigned char *p)
{
	return (uint16_t) (((unsigned) p[0] << 8) | (unsigned) p[1]);
}

static int
kind_is_known(EnvelopeKind kind)
{
	return kind == ENVELOPE_TEXT || kind == ENVELOPE_BYTEA;
}

/*
 * The associated data is built from the stored header bytes themselves, not
 * from parsed fields, so what is authenticated is exactly what is stored.
 */
static void
build_ad(unsigned char ad[ENVELOPE_AD_BYTES], const unsigned char *env,
		 EnvelopeKind kind)
{
	memcpy(ad, env, ENVELOPE_NONCE_OFFSET);
	ad[ENVELOPE_NONCE_OFFSET] = (unsigned char) kind;
}

int
envelope_parse(const unsigned char *env, size_t len, EnvelopeHeader *hdr,
			   const char **why)
{
	memset(hdr, 0, sizeof(*hdr));

	if (env == NULL || len < ENVELOPE_OVERHEAD)
	{
		*why = "the value is too short to be an encrypted value";
		return -1;
	}
	if (env[0] != ENVELOPE_VERSION)
	{
		*why = "the value has an unknown envelope version";
		return -1;
	}
	if (get_u32(env + 1) == 0)
	{
		*why = "the value names key id 0, which is never assigned";
		return -1;
	}
	if (get_u16(env + 5) == 0)
	{
		*why = "the value names category id 0, which is never assigned";
		return -1;
	}

	hdr->version = env[0];
	hdr->key_id = get_u32(env + 1);
	hdr->category_id = get_u16(env + 5);
	hdr->nonce = env + ENVELOPE_NONCE_OFFSET;
	hdr->ciphertext_len = len - ENVELOPE_OVERHEAD;
	return 0;
}

size_t
envelope_sealed_size(size_t plaintext_len)
{
	/* Both bounds: which one is smaller depends on the libsodium release. */
	if (plaintext_len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
		plaintext_len > SIZE_MAX - ENVELOPE_OVERHEAD)
		return 0;
	return plaintext_len + ENVELOPE_OVERHEAD;
}

int
envelope_seal(unsigned char *out, uint32_t key_id, uint16_t category_id,
			  EnvelopeKind kind, const unsigned char key[ENVELOPE_KEY_BYTES],
			  const unsigned char *pt, size_t ptlen)
{
	static const unsigned char empty[1] = {0};
	unsigned char ad[ENVELOPE_AD_BYTES];
	unsigned char *nonce = out + ENVELOPE_NONCE_OFFSET;
	unsigned char *ct = out + ENVELOPE_HEADER_BYTES;
	unsigned char *tag;

	if (key_id == 0 || category_id == 0 || !kind_is_known(kind) ||
		envelope_sealed_size(ptlen) == 0 || (pt == NULL && ptlen > 0))
		return -1;

	/*
	 * The tag position is derived from ptlen exactly once, here, and the
	 * ciphertext is exactly ptlen bytes: a second, different computation of
	 * a length is how stored values once picked up bytes of process memory.
	 */
	tag = ct + ptlen;

	out[0] = ENVELOPE_VERSION;
	put_u32(out + 1, key_id);
	put_u16(out + 5, category_id);
	nonce_source(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	build_ad(ad, out, kind);

	/* An empty plaintext is a real value and must round-trip like any other. */
	if (pt == NULL)
		pt = empty;

	if (crypto_aead_xchacha20poly1305_ietf_encrypt_detached(ct, tag, NULL,
															pt, ptlen,
															ad, sizeof(ad),
															NULL, nonce, key) != 0)
	{
		sodium_memzero(out, ENVELOPE_OVERHEAD + ptlen);
		return -1;
	}
	return 0;
}

int
envelope_open(unsigned char *out, const unsigned char *env, size_t len,
			  EnvelopeKind kind, const unsigned char key[ENVELOPE_KEY_BYTES],
			  const char **why)
{
	EnvelopeHeader hdr;
	unsigned char ad[ENVELOPE_AD_BYTES];
	unsigned char scratch[1];
	unsigned char *dst;

	if (envelope_parse(env, len, &hdr, why) != 0)
		return -1;
	if (!kind_is_known(kind))
	{
		*why = "the value was opened as an unknown type";
		return -1;
	}
	if (out == NULL && hdr.ciphertext_len > 0)
	{
		*why = "no room was given for the decrypted value";
		return -1;
	}

	/* Never hand libsodium a NULL output: for it, NULL means "verify only". */
	dst = out != NULL ? out : scratch;
	build_ad(ad, env, kind);

	/*
	 * libsodium verifies the tag before it decrypts anything and clears the
	 * output itself on failure; the zeroing below states the contract here
	 * rather than relying on that.
	 */
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(dst, NULL,
															env + ENVELOPE_HEADER_BYTES,
															hdr.ciphertext_len,
															env + ENVELOPE_HEADER_BYTES + hdr.ciphertext_len,
															ad, sizeof(ad),
															hdr.nonce, key) != 0)
	{
		if (out != NULL)
			sodium_memzero(out, hdr.ciphertext_len);
		*why = why_auth;
		return -1;
	}
	return 0;
}

size_t
envelope_text_size(size_t envlen)
{
	/* 4 * ceil(envlen / 3) base64 characters, the prefix and the NUL. */
	size_t		groups = envlen / 3 + (envlen % 3 != 0);

	if (groups > (SIZE_MAX - ENVELOPE_TEXT_PREFIX_LEN - 1) / 4)
		return 0;
	return ENVELOPE_TEXT_PREFIX_LEN +
		sodium_base64_ENCODED_LEN(envlen, sodium_base64_VARIANT_ORIGINAL);
}

int
envelope_to_text(char *out, size_t outlen, const unsigned char *env,
				 size_t envlen)
{
	size_t		need = envelope_text_size(envlen);

	if (need == 0 || outlen < need || (env == NULL && envlen > 0))
		return -1;

	memcpy(out, ENVELOPE_TEXT_PREFIX, ENVELOPE_TEXT_PREFIX_LEN);
	sodium_bin2base64(out + ENVELOPE_TEXT_PREFIX_LEN,
					  outlen - ENVELOPE_TEXT_PREFIX_LEN,
					  env, envlen, sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

int
envelope_text_has_prefix(const char *s, size_t slen)
{
	return s != NULL && slen >= ENVELOPE_TEXT_PREFIX_LEN &&
		memcmp(s, ENVELOPE_TEXT_PREFIX, ENVELOPE_TEXT_PREFIX_LEN) == 0;
}

/*
 * libsodium 1.0.18 (Debian 12's) decodes every byte from 0x80 to 0xff as if
 * it were '/', because it classifies a plain, signed char; later releases
 * refuse them.  Checking the alphabet here keeps "one envelope, one literal"
 * on every release.  Placement of '=' is still left to libsodium.
 */
static int
is_base64_alphabet(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
			return 0;
	}
	return 1;
}

int
envelope_base64_decode(unsigned char *out, size_t outlen, size_t *binlen,
					   const char *b64, size_t b64len)
{
	const char *end = NULL;

	*binlen = 0;
	if (!is_base64_alphabet(b64, b64len) ||
		sodium_base642bin(out, outlen, b64, b64len, NULL, binlen, &end,
						  sodium_base64_VARIANT_ORIGINAL) != 0 ||
		end != b64 + b64len)
	{
		*binlen = 0;
		return -1;
	}
	return 0;
}

int
envelope_from_text(unsigned char *out, size_t *envlen, const char *s,
				   size_t slen, const char **why)
{
	const char *b64;
	size_t		b64len;
	size_t		binlen = 0;
	EnvelopeHeader hdr;

	*envlen = 0;

	if (!envelope_text_has_prefix(s, slen))
	{
		*why = "an encrypted value literal must start with \"" ENVELOPE_TEXT_PREFIX "\"";
		return -1;
	}
	b64 = s + ENVELOPE_TEXT_PREFIX_LEN;
	b64len = slen - ENVELOPE_TEXT_PREFIX_LEN;

	/*
	 * No characters are ignored and the whole input must be consumed, so
	 * whitespace, a NUL or trailing junk is refused rather than skipped:
	 * one envelope, one literal.  libsodium also refuses nonzero padding
	 * bits and missing padding for this variant.
	 */
	if (envelope_base64_decode(out, slen, &binlen, b64, b64len) != 0)
	{
		*why = "an encrypted value literal must continue with standard padded base64 and nothing else";
		return -1;
	}
	if (envelope_parse(out, binlen, &hdr, why) != 0)
		return -1;

	*envlen = binlen;
	return 0;
}
