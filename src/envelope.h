/*
 * envelope.h — the stored form of every encrypted value.
 *
 * Plain C with no server headers, so unit tests and fuzzers link it alone
 * (with -lsodium).  The layout, version 1, all integers big-endian:
 *
 *   offset  size  field
 *   0       1     version = 0x01 (XChaCha20-Poly1305-IETF)
 *   1       4     key_id       id of the data key in the key table; 0 invalid
 *   5       2     category_id  id of the category; 0 invalid
 *   7       24    nonce        random
 *   31      n     ciphertext   n = plaintext length, may be 0
 *   31+n    16    tag
 *
 * The associated data is the first 7 bytes followed by one "kind" byte that
 * is not stored ('t' or 'b'), so the header cannot be edited to move a value
 * to another key or category, and an encrypted_text value cannot be replayed
 * as an encrypted_bytea one (or back).
 */
#ifndef PRIVACY_ENVELOPE_H
#define PRIVACY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_VERSION 1
#define ENVELOPE_HEADER_BYTES 31
#define ENVELOPE_TAG_BYTES 16
#define ENVELOPE_OVERHEAD 47
#define ENVELOPE_KEY_BYTES 32

/* The byte appended to the associated data; it names the SQL type. */
typedef enum EnvelopeKind
{
	ENVELOPE_TEXT = 't',
	ENVELOPE_BYTEA = 'b'
} EnvelopeKind;

/* A view into an envelope's bytes; nonce points into the caller's buffer. */
typedef struct EnvelopeHeader
{
	uint8_t		version;
	uint32_t	key_id;
	uint16_t	category_id;
	const unsigned char *nonce;
	size_t		ciphertext_len;	/* excluding the tag: the plaintext length */
} EnvelopeHeader;

/*
 * Structural checks only, so that a caller can find the key and category
 * (and size its output) before deciding whether to decrypt at all: length at
 * least ENVELOPE_OVERHEAD, a known version, nonzero ids.  Nothing is
 * authenticated here.  Returns 0, or -1 with hdr zeroed and *why set to a
 * static reason that never contains any byte of the input.
 */
extern int	envelope_parse(const unsigned char *env, size_t len,
						   EnvelopeHeader *hdr, const char **why);

/*
 * plaintext_len + ENVELOPE_OVERHEAD, or 0 when that would overflow size_t or
 * exceed what the cipher can seal; callers size buffers from this one value
 * and must treat 0 as "too large".
 */
extern size_t envelope_sealed_size(size_t plaintext_len);

/*
 * Seal pt with a fresh random nonce.  out must hold
 * envelope_sealed_size(ptlen) bytes and must not overlap pt; pt may be NULL
 * when ptlen is 0.  Returns 0, or -1 (nothing useful in out) for a zero id,
 * an unknown kind or a plaintext too large to seal.
 */
extern int	envelope_seal(unsigned char *out, uint32_t key_id,
						  uint16_t category_id, EnvelopeKind kind,
						  const unsigned char key[ENVELOPE_KEY_BYTES],
						  const unsigned char *pt, size_t ptlen);

/*
 * Authenticate and decrypt.  out must hold hdr.ciphertext_len bytes as found
 * by envelope_parse (it may be NULL when that is 0).  Returns 0, or -1 with
 * *why set.  Unauthenticated plaintext is never left in out: when
 * authentication fails its ciphertext_len bytes are zeroed; when the header
 * is not even well-formed out is not written at all, since its size is then
 * unknown.
 */
extern int	envelope_open(unsigned char *out, const unsigned char *env,
						  size_t len, EnvelopeKind kind,
						  const unsigned char key[ENVELOPE_KEY_BYTES],
						  const char **why);

/*
 * The text form, written by the output functions so that pg_dump carries
 * ciphertext: the prefix followed by standard base64 (with padding) of the
 * envelope bytes.  The prefix carries the version so that a later format can
 * get a new one.
 */
#define ENVELOPE_TEXT_PREFIX "pv1:"
#define ENVELOPE_TEXT_PREFIX_LEN 4

/* Bytes envelope_to_text needs, including the NUL; 0 when it would overflow. */
extern size_t envelope_text_size(size_t envlen);

/*
 * Encode env into out as a NUL-terminated literal.  Returns 0, or -1 when
 * outlen is smaller than envelope_text_size(envlen).  It only encodes: the
 * caller is expected to pass an envelope it sealed or parsed.
 */
extern int	envelope_to_text(char *out, size_t outlen,
							 const unsigned char *env, size_t envlen);

/*
 * 1 if s (slen bytes, not necessarily NUL-terminated) starts with the exact,
 * case-sensitive prefix, else 0.  This is how an input function tells an
 * envelope literal from plaintext, so it looks at nothing else: a literal
 * with the prefix but bad contents must be refused by envelope_from_text,
 * not silently sealed as plaintext.
 */
extern int	envelope_text_has_prefix(const char *s, size_t slen);

/*
 * Decode a literal into out, which must hold at least slen bytes; *envlen is
 * set to the envelope's length.  Strict, so that every envelope has exactly
 * one text form: the prefix, then canonical padded base64 with no whitespace,
 * then the result must pass envelope_parse.  Returns 0, or -1 with *envlen 0
 * and *why set to a static reason that never contains any byte of the input.
 */
extern int	envelope_from_text(unsigned char *out, size_t *envlen,
							   const char *s, size_t slen, const char **why);

/*
 * The strict base64 decoding of the literal, for other fields of the text
 * form (the search tag): standard alphabet with canonical padding, nothing
 * skipped, all of b64 consumed, at most outlen bytes.  Returns 0 with
 * *binlen set, or -1.
 */
extern int	envelope_base64_decode(unsigned char *out, size_t outlen, size_t *binlen,
								   const char *b64, size_t b64len);

/*
 * Where nonces come from.  By default every nonce is 24 fresh random bytes
 * (randombytes_buf, one system call each); a caller may install a faster
 * source that still never repeats a nonce, such as a random per-process
 * prefix followed by a counter.  Passing NULL restores the default.
 */
typedef void (*EnvelopeNonceSource) (unsigned char *nonce, size_t len);
extern void envelope_set_nonce_source(EnvelopeNonceSource source);

#endif
