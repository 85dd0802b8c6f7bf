/*
 * hexkey.h — parse the master key command's output.
 *
 * Plain C with no server headers, so unit tests and fuzzers link it alone.
 */
#ifndef PRIVACY_HEXKEY_H
#define PRIVACY_HEXKEY_H

#include <stddef.h>

#define HEXKEY_BYTES 32

/*
 * Decode exactly 64 hexadecimal characters, optionally followed by trailing
 * whitespace (a newline from echo or cat), into out.  Returns 0 on success.
 * On failure returns -1, leaves out zeroed, and sets *why to a static,
 * human-readable reason that never contains any byte of the input.
 */
extern int	hexkey_parse(const char *buf, size_t len,
						 unsigned char out[HEXKEY_BYTES], const char **why);

#endif
