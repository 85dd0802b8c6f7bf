/*
 * hexkey.c — parse the master key command's output.
 *
 * The master key arrives as 64 hexadecimal characters on the stdout of
 * privacy.master_key_command.  This is the only code that sees those
 * characters; it decodes them with libsodium's hex decoder and
 * explains failures without echoing any of the input.
 */
#include "hexkey.h"

#include <string.h>
#include <sodium.h>

int
hexkey_parse(const char *buf, size_t len, unsigned char out[HEXKEY_BYTES],
			 const char **why)
{
	size_t		bin_len = 0;
	const char *end = NULL;

	memset(out, 0, HEXKEY_BYTES);

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;

	if (len == 0)
	{
		*why = "the command printed nothing";
		return -1;
	}
	if (len != 2 * HEXKEY_BYTES)
	{
		*why = "the command must print exactly 64 hexadecimal characters";
		return -1;
	}
	if (sodium_hex2bin(out, HEXKEY_BYTES, buf, len, NULL, &bin_len, &end) != 0 ||
		bin_len != HEXKEY_BYTES || end != buf + len)
	{
		sodium_memzero(out, HEXKEY_BYTES);
		*why = "the command printed characters that are not hexadecimal";
		return -1;
	}
	if (sodium_is_zero(out, HEXKEY_BYTES))
	{
		*why = "the key is all zeros, which is a placeholder, not a key";
		return -1;
	}
	return 0;
}
