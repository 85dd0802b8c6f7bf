/* test_hexkey.c — the master key parser: accepted forms, refusals, no echo. */
#include <string.h>
#include <sodium.h>

#include "hexkey.h"
#include "unit.h"

static const char *good =
"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

static int
parse(const char *s, unsigned char *out, const char **why)
{
	return hexkey_parse(s, strlen(s), out, why);
}

int
main(void)
{
	unsigned char key[HEXKEY_BYTES];
	const char *why = NULL;
	char		buf[200];

	if (sodium_init() < 0)
		return 2;

	CHECK(parse(good, key, &why) == 0, "64 hex characters are a key");
	CHECK(key[0] == 0x00 && key[1] == 0x11 && key[31] == 0xff, "bytes decoded in order, both cases");

	snprintf(buf, sizeof(buf), "%s\n", good);
	CHECK(parse(buf, key, &why) == 0, "a trailing newline is accepted");
	snprintf(buf, sizeof(buf), "%s \r\n", good);
	CHECK(parse(buf, key, &why) == 0, "trailing CR, LF and spaces are accepted");

	CHECK(parse("", key, &why) == -1 && strstr(why, "nothing") != NULL, "empty output is refused");
	CHECK(parse("\n", key, &why) == -1, "a lone newline is refused");
	CHECK(parse("00112233", key, &why) == -1 && strstr(why, "exactly 64") != NULL, "short output is refused");
	snprintf(buf, sizeof(buf), "%s00", good);
	CHECK(parse(buf, key, &why) == -1, "66 characters are refused");
	snprintf(buf, sizeof(buf), " %s", good);
	CHECK(parse(buf, key, &why) == -1, "leading whitespace is refused (65 characters)");

	strcpy(buf, good);
	buf[10] = 'g';
	CHECK(parse(buf, key, &why) == -1 && strstr(why, "not hexadecimal") != NULL, "a non-hex character is refused");
	CHECK(sodium_is_zero(key, sizeof(key)), "a refused key leaves the output zeroed");
	CHECK(strstr(why, "0011223344") == NULL && strstr(why, "g") == NULL, "the reason does not echo the input");

	CHECK(parse("0000000000000000000000000000000000000000000000000000000000000000", key, &why) == -1
		  && strstr(why, "zeros") != NULL, "an all-zero key is refused");

	memset(buf, 0, sizeof(buf));
	memcpy(buf, good, 64);
	buf[20] = '\0';
	CHECK(hexkey_parse(buf, 64, key, &why) == -1, "an embedded NUL is refused");

	UNIT_DONE();
}
