/*
 * storedform.c — parse and print the stored form of encrypted values.
 *
 * types.c keeps the policy (who may enter stored bytes, which keys may be
 * stored); this file only reads and writes the bytes and the "pv1:" text
 * (layout in storedform.h), so that every byte a client can send the
 * encrypted types is parsed by code a fuzzer links alone
 * (test/fuzz/fuzz_storedform.c).  Lengths are checked before every step:
 * an early version of the ";s=" suffix parsing ran past the end of a
 * literal ending in ";", which a superuser's typo could turn into a crash.
 */
#include "storedform.h"

#include <string.h>
#include <sodium.h>

/* The tag's base64 without the NUL that sodium_base64_ENCODED_LEN counts. */
#define TAG_BASE64_CHARS \
	(sodium_base64_ENCODED_LEN(STOREDFORM_TAG_BYTES, sodium_base64_VARIANT_ORIGINAL) - 1)

int
storedform_parse(const unsigned char *p, size_t len, StoredForm *sf,
				 const char **why)
{
	StoredForm	v;

	memset(sf, 0, sizeof(*sf));
	memset(&v, 0, sizeof(v));
	if (p == NULL || len < 1)
	{
		*why = "the value is empty";
		return -1;
	}
	if (p[0] != STOREDFORM_PLAIN && p[0] != STOREDFORM_SEARCHABLE &&
		p[0] != STOREDFORM_SEARCHABLE_TAG_FIRST)
	{
		*why = "the value has an unknown format byte";
		return -1;
	}
	v.format = p[0];
	p++;
	len--;
	if (v.format != STOREDFORM_PLAIN)
	{
		if (len < STOREDFORM_TAG_BYTES)
		{
			*why = "the value is too short to hold its search tag";
			return -1;
		}
		len -= STOREDFORM_TAG_BYTES;
		if (v.format == STOREDFORM_SEARCHABLE)
			v.tag = p + len;
		else
		{
			v.tag = p;
			p += STOREDFORM_TAG_BYTES;
		}
	}
	if (envelope_parse(p, len, &v.hdr, why) != 0)
		return -1;
	v.env = p;
	v.envlen = len;
	*sf = v;
	return 0;
}

size_t
storedform_size(size_t envlen, int searchable)
{
	size_t		extra = 1 + (searchable ? STOREDFORM_TAG_BYTES : 0);

	if (envlen > SIZE_MAX - extra)
		return 0;
	return envlen + extra;
}

size_t
storedform_write(unsigned char *out, const unsigned char *env, size_t envlen,
				 const unsigned char *tag)
{
	out[0] = tag != NULL ? STOREDFORM_SEARCHABLE : STOREDFORM_PLAIN;
	if (env != NULL)
		memcpy(out + 1, env, envlen);
	if (tag == NULL)
		return 1 + envlen;
	memcpy(out + 1 + envlen, tag, STOREDFORM_TAG_BYTES);
	return 1 + envlen + STOREDFORM_TAG_BYTES;
}

size_t
storedform_from_text_room(size_t slen)
{
	if (slen > SIZE_MAX - 1 - STOREDFORM_TAG_BYTES)
		return 0;
	return slen + 1 + STOREDFORM_TAG_BYTES;
}

int
storedform_from_text(unsigned char *out, size_t outlen, size_t *storedlen,
					 const char *s, size_t slen, const char **why)
{
	size_t		room = storedform_from_text_room(slen);
	const char *semi;
	size_t		envtextlen;
	size_t		envlen = 0;
	unsigned char *env = out + 1;
	StoredForm	check;

	*storedlen = 0;
	if (s == NULL || room == 0 || outlen < room)
	{
		*why = "the value is too large, or no room was given for it";
		return -1;
	}

	/*
	 * The envelope is decoded behind the format byte, the tag (whose base64
	 * has no ';') behind the envelope; what follows the first ';' must be
	 * exactly the suffix.  The room holds both: the envelope's base64 is
	 * longer than its bytes.
	 */
	semi = memchr(s, ';', slen);
	envtextlen = semi != NULL ? (size_t) (semi - s) : slen;
	if (envelope_from_text(env, &envlen, s, envtextlen, why) != 0)
		return -1;
	if (semi != NULL)
	{
		size_t		rest = slen - envtextlen;	/* at least the ';' */
		size_t		taglen = 0;

		if (rest < STOREDFORM_TAG_TEXT_LEN ||
			memcmp(semi, STOREDFORM_TAG_TEXT, STOREDFORM_TAG_TEXT_LEN) != 0)
		{
			*why = "after the envelope, an encrypted value literal may only continue with \";s=\" and a search tag";
			return -1;
		}
		if (envelope_base64_decode(env + envlen, STOREDFORM_TAG_BYTES, &taglen,
								   semi + STOREDFORM_TAG_TEXT_LEN,
								   rest - STOREDFORM_TAG_TEXT_LEN) != 0 ||
			taglen != STOREDFORM_TAG_BYTES)
		{
			*why = "the search tag after \";s=\" is not 16 bytes of base64";
			return -1;
		}
		out[0] = STOREDFORM_SEARCHABLE;
		*storedlen = 1 + envlen + STOREDFORM_TAG_BYTES;
	}
	else
	{
		out[0] = STOREDFORM_PLAIN;
		*storedlen = 1 + envlen;
	}
	if (storedform_parse(out, *storedlen, &check, why) != 0)
	{
		*storedlen = 0;
		return -1;
	}
	return 0;
}

size_t
storedform_text_size(const StoredForm *sf)
{
	size_t		n = envelope_text_size(sf->envlen);

	if (n == 0 || sf->tag == NULL)
		return n;
	if (n > SIZE_MAX - STOREDFORM_TAG_TEXT_LEN - TAG_BASE64_CHARS)
		return 0;
	return n + STOREDFORM_TAG_TEXT_LEN + TAG_BASE64_CHARS;
}

int
storedform_to_text(char *out, size_t outlen, const StoredForm *sf)
{
	size_t		need = storedform_text_size(sf);
	size_t		pos;

	if (need == 0 || outlen < need ||
		envelope_to_text(out, outlen, sf->env, sf->envlen) != 0)
		return -1;
	if (sf->tag != NULL)
	{
		pos = strlen(out);
		memcpy(out + pos, STOREDFORM_TAG_TEXT, STOREDFORM_TAG_TEXT_LEN);
		pos += STOREDFORM_TAG_TEXT_LEN;
		sodium_bin2base64(out + pos, outlen - pos, sf->tag, STOREDFORM_TAG_BYTES,
						  sodium_base64_VARIANT_ORIGINAL);
	}
	return 0;
}
