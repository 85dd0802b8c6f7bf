/*
 * storedform.h — the stored bytes of an encrypted value and their text form.
 *
 * Plain C with no server headers, so that unit tests and fuzzers link it
 * alone (with envelope.c and -lsodium).  Every byte a client can hand the
 * encrypted types' input, receive and cast functions is parsed here, not in
 * types.c.  The stored form, the varlena's contents:
 *
 *   format (1 byte)
 *   0x00 plain:       0x00 | envelope (envelope.h)
 *   0x02 searchable:  0x02 | envelope | search tag (16 bytes)
 *   0x01 searchable, as 0.2 stored it (read, never written):
 *                     0x01 | search tag | envelope
 *
 * The tag follows the envelope so that anything comparing stored bytes
 * (record-image operators *< and *=, a sort on them) meets the envelope's
 * random nonce before the tag: with the tag first, equal plaintexts sorted
 * next to each other and a crafted literal could test a guess (issue #12,
 * class 2).  Assigning a 0x01 value to a column, and reencrypt, write it
 * as 0x02 (storedform_write).
 *
 * and its text form, what the output functions print for the dump/restore
 * roles and their input takes back:
 *
 *   pv1:<standard padded base64 of the envelope>[;s=<standard padded base64 of the tag>]
 *
 * Both are strict: one value, one literal.  Failures are -1 with a static
 * reason (a clause, no trailing period) that never contains input bytes.
 */
#ifndef PRIVACY_STOREDFORM_H
#define PRIVACY_STOREDFORM_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

#define STOREDFORM_PLAIN 0x00
#define STOREDFORM_SEARCHABLE_TAG_FIRST 0x01
#define STOREDFORM_SEARCHABLE 0x02
#define STOREDFORM_TAG_BYTES 16
#define STOREDFORM_TAG_TEXT ";s="
#define STOREDFORM_TAG_TEXT_LEN 3

/* A view into stored bytes: tag and env point into the caller's buffer. */
typedef struct StoredForm
{
	uint8_t		format;
	const unsigned char *tag;	/* NULL unless searchable */
	const unsigned char *env;
	size_t		envlen;
	EnvelopeHeader hdr;			/* as envelope_parse found it */
} StoredForm;

/*
 * Parse len stored bytes: a known format byte, the tag if the format has
 * one, and an envelope that passes envelope_parse.  Returns 0, or -1 with
 * *sf zeroed and *why set.
 */
extern int	storedform_parse(const unsigned char *p, size_t len, StoredForm *sf,
							 const char **why);

/* Bytes of a value with an envelope of envlen bytes; 0 if too large. */
extern size_t storedform_size(size_t envlen, int searchable);

/*
 * Write a value in the current layout into out (storedform_size bytes):
 * the format byte, the envelope (envlen bytes; NULL leaves its room for the
 * caller to seal into, at out + 1) and, if tag is not NULL, the tag.
 * out may not overlap env or tag.  Returns the bytes written.
 */
extern size_t storedform_write(unsigned char *out, const unsigned char *env, size_t envlen,
							   const unsigned char *tag);

/* Bytes storedform_from_text needs for a literal of slen bytes; 0 if too large. */
extern size_t storedform_from_text_room(size_t slen);

/*
 * Read a literal (slen bytes, not necessarily NUL-terminated) into out,
 * which holds outlen >= storedform_from_text_room(slen) bytes: the stored
 * bytes, *storedlen of them, ready for storedform_parse (which has accepted
 * them already).  Returns 0, or -1 with *storedlen 0 and *why set; out may
 * then hold scratch bytes.
 */
extern int	storedform_from_text(unsigned char *out, size_t outlen, size_t *storedlen,
								 const char *s, size_t slen, const char **why);

/* Bytes storedform_to_text needs for a parsed value, NUL included; 0 if too large. */
extern size_t storedform_text_size(const StoredForm *sf);

/* Print a parsed value; returns 0, or -1 when outlen is too small. */
extern int	storedform_to_text(char *out, size_t outlen, const StoredForm *sf);

#endif
