/*
 * fuzz_storedform.c — libFuzzer target for the stored form of encrypted
 * values and its "pv1:" literal (src/storedform.c).
 *
 * Every input is tried as stored bytes (what binary receive takes from a
 * dump/restore role, and what every function reads from a table) and as a
 * literal (what text input and the casts take from those roles).  Besides
 * memory safety under ASan/UBSan, it aborts when a property fails:
 *
 *   - parsed stored bytes are format byte, tag exactly when the format says
 *     so (after the envelope for 0x02, before it for 0.2's 0x01), and an
 *     envelope that envelope_parse accepts, covering the input; printed,
 *     they read back to the same parts in the current layout, which
 *     storedform_write gives too;
 *   - an accepted literal matches the grammar, checked here apart
 *     (pv1:, base64 of the envelope, optionally ";s=" and 22 base64
 *     characters and "=="), is the one text of its value (printing gives
 *     the input back), and its bytes parse;
 *   - a refusal says why and leaves nothing behind (a zeroed view, length 0).
 *
 * test/fuzz/storedform.expect, per seed: "<form> <outcome>", form lit or
 * bin, outcome plain, searchable or refused.
 */
#include <sodium.h>

#include "fuzz.h"
#include "storedform.h"

static int
is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '+' || c == '/';
}

/* The literal's grammar, written apart from the parser. */
static int
literal_shape_ok(const char *s, size_t len)
{
	size_t		i = 4,
				end = len,
				pad = 0;
	const char *semi = memchr(s, ';', len);

	if (len < 4 || memcmp(s, "pv1:", 4) != 0)
		return 0;
	if (semi != NULL)
	{
		size_t		t = (size_t) (semi - s);

		if (len - t != 3 + 24 || memcmp(semi, ";s=", 3) != 0 ||
			s[len - 1] != '=' || s[len - 2] != '=')
			return 0;
		for (i = t + 3; i < len - 2; i++)
			if (!is_b64(s[i]))
				return 0;
		end = t;
	}
	for (i = 4; i < end && is_b64(s[i]); i++)
		;
	for (; i < end && s[i] == '='; i++)
		pad++;
	return i == end && (end - 4) % 4 == 0 && pad <= 2;
}

static void
check_view_zero(const StoredForm *sf)
{
	StoredForm	zero;

	memset(&zero, 0, sizeof(zero));
	FUZZ_ASSERT(memcmp(sf, &zero, sizeof(zero)) == 0);
}

/*
 * Print a parsed value and read it back: the same parts, in the current
 * layout (0.2's tag-first bytes come back with the tag last), the bytes
 * storedform_write makes of them.
 */
static void
check_prints_back(const StoredForm *sf)
{
	size_t		n = storedform_text_size(sf);
	char	   *text;
	size_t		room,
				back_len = 0,
				len = storedform_size(sf->envlen, sf->tag != NULL);
	unsigned char *back;
	unsigned char *bytes = fuzz_alloc(len);
	const char *why = NULL;

	FUZZ_ASSERT(len > 0);
	FUZZ_ASSERT(storedform_write(bytes, sf->env, sf->envlen, sf->tag) == len);

	FUZZ_ASSERT(n > 0);
	text = fuzz_alloc(n);
	FUZZ_ASSERT(storedform_to_text(text, n, sf) == 0);
	FUZZ_ASSERT(strlen(text) + 1 == n);
	FUZZ_ASSERT(literal_shape_ok(text, n - 1));
	room = storedform_from_text_room(n - 1);
	back = fuzz_alloc(room);
	FUZZ_ASSERT(storedform_from_text(back, room, &back_len, text, n - 1, &why) == 0);
	FUZZ_ASSERT(back_len == len && memcmp(back, bytes, len) == 0);
	free(back);
	free(text);
	free(bytes);
}

static void
fuzz_bytes(const uint8_t *data, size_t size)
{
	StoredForm	sf;
	EnvelopeHeader hdr;
	const char *why = NULL;

	memset(&sf, 0xA5, sizeof(sf));
	if (storedform_parse(data, size, &sf, &why) != 0)
	{
		FUZZ_ASSERT(why != NULL);
		check_view_zero(&sf);
		return;
	}
	FUZZ_ASSERT(size >= 1 && sf.format == data[0]);
	FUZZ_ASSERT(sf.format == STOREDFORM_PLAIN || sf.format == STOREDFORM_SEARCHABLE ||
				sf.format == STOREDFORM_SEARCHABLE_TAG_FIRST);
	FUZZ_ASSERT((sf.tag != NULL) == (sf.format != STOREDFORM_PLAIN));
	if (sf.format == STOREDFORM_SEARCHABLE_TAG_FIRST)
	{
		FUZZ_ASSERT(sf.tag == data + 1);
		FUZZ_ASSERT(sf.env == data + 1 + STOREDFORM_TAG_BYTES);
		FUZZ_ASSERT(sf.env + sf.envlen == data + size);
	}
	else
	{
		FUZZ_ASSERT(sf.env == data + 1);
		FUZZ_ASSERT(sf.env + sf.envlen + (sf.tag ? STOREDFORM_TAG_BYTES : 0) == data + size);
		if (sf.tag != NULL)
			FUZZ_ASSERT(sf.tag == sf.env + sf.envlen);
	}
	FUZZ_ASSERT(envelope_parse(sf.env, sf.envlen, &hdr, &why) == 0);
	FUZZ_ASSERT(memcmp(&hdr, &sf.hdr, sizeof(hdr)) == 0);
	check_prints_back(&sf);
}

static void
fuzz_literal(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	size_t		room = storedform_from_text_room(size);
	unsigned char *out;
	size_t		len = 12345;
	const char *why = NULL;
	StoredForm	sf;

	FUZZ_ASSERT(room > size);
	/* exactly the room promised, so that ASan sees any overrun */
	out = malloc(room);
	FUZZ_ASSERT(out != NULL);
	if (storedform_from_text(out, room, &len, s, size, &why) != 0)
	{
		FUZZ_ASSERT(len == 0 && why != NULL);
		free(out);
		return;
	}
	FUZZ_ASSERT(literal_shape_ok(s, size));
	FUZZ_ASSERT(len >= 1 && len <= room);
	FUZZ_ASSERT(storedform_parse(out, len, &sf, &why) == 0);
	FUZZ_ASSERT((sf.tag != NULL) == (memchr(s, ';', size) != NULL));
	FUZZ_ASSERT(sf.format == (sf.tag != NULL ? STOREDFORM_SEARCHABLE : STOREDFORM_PLAIN));
	{
		/* one value, one literal */
		size_t		n = storedform_text_size(&sf);
		char	   *text = fuzz_alloc(n);

		FUZZ_ASSERT(n == size + 1);
		FUZZ_ASSERT(storedform_to_text(text, n, &sf) == 0);
		FUZZ_ASSERT(memcmp(text, s, size) == 0 && text[size] == '\0');
		free(text);
	}
	/* too little room is refused, not overrun */
	len = 12345;
	FUZZ_ASSERT(storedform_from_text(out, room - 1, &len, s, size, &why) != 0 && len == 0);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_bytes(data, size);
	fuzz_literal(data, size);
	return 0;
}

int
fuzz_expect(const uint8_t *data, size_t size, const char *spec)
{
	char		form[8] = "",
				outcome[16] = "";
	StoredForm	sf;
	const char *why = NULL;
	unsigned char *buf = NULL;
	int			parsed;
	int			ok;

	if (sscanf(spec, "%7s %15s", form, outcome) != 2 ||
		(strcmp(form, "lit") != 0 && strcmp(form, "bin") != 0) ||
		(strcmp(outcome, "plain") != 0 && strcmp(outcome, "searchable") != 0 &&
		 strcmp(outcome, "refused") != 0))
	{
		printf("# malformed spec: %s\n", spec);
		return 0;
	}
	if (strcmp(form, "bin") == 0)
		parsed = storedform_parse(data, size, &sf, &why) == 0;
	else
	{
		size_t		room = storedform_from_text_room(size);
		size_t		len = 0;

		buf = fuzz_alloc(room);
		parsed = storedform_from_text(buf, room, &len, (const char *) data, size, &why) == 0 &&
			storedform_parse(buf, len, &sf, &why) == 0;
	}
	if (strcmp(outcome, "refused") == 0)
		ok = !parsed;
	else
		ok = parsed && (sf.tag != NULL) == (strcmp(outcome, "searchable") == 0);
	if (!ok)
		printf("# %s\n", parsed ? "parsed" : why);
	free(buf);
	return ok;
}
