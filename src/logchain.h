/*
 * logchain.h — the keyed MAC chain that makes the access log tamper-evident.
 *
 * Plain C with no server headers, so unit tests link it alone (with
 * -lsodium).  The access-log writer gives every entry a sequence number
 * (starting at 1, consecutive) and serializes the entry's fields into
 * canonical bytes; this part only chains and checks MACs over those opaque
 * bytes.  The MAC of entry n is BLAKE2b-256 keyed with the chain key (derived
 * by the caller from the master key) over, all integers big-endian:
 *
 *   size  field
 *   21    the domain "privacy access log v1" (no terminating NUL)
 *   8     seq_n
 *   32    mac_{n-1}, or for the first entry the anchor
 *   8     length of the canonical bytes
 *   len   the canonical bytes
 *
 * The anchor is 32 zero bytes for a new log, or the MAC of the last entry
 * removed by retention, so that what remains still verifies.  The length is
 * included so that the encoding stays unambiguous should anything ever be
 * appended after the bytes.
 *
 * A chain alone cannot show that entries were cut off its end: whoever keeps
 * the log must also keep the head (last seq and MAC) where the log's writer
 * cannot rewrite it, and compare.
 */
#ifndef PRIVACY_LOGCHAIN_H
#define PRIVACY_LOGCHAIN_H

#include <stddef.h>
#include <stdint.h>

#define LOGCHAIN_MAC_BYTES 32
#define LOGCHAIN_KEY_BYTES 32

/*
 * Compute the MAC of one entry.  entry may be NULL when len is 0.  Returns 0,
 * or -1 for bad arguments: out, key or prev NULL, entry NULL with len > 0, or
 * seq 0 (sequence numbers start at 1).  On -1, out (when not NULL) is zeroed
 * rather than left holding anything that looks like a MAC.
 */
extern int	logchain_mac(unsigned char out[LOGCHAIN_MAC_BYTES],
						 const unsigned char key[LOGCHAIN_KEY_BYTES],
						 uint64_t seq,
						 const unsigned char prev[LOGCHAIN_MAC_BYTES],
						 const unsigned char *entry, size_t len);

/* One stored entry as read back; all pointers into the caller's memory. */
typedef struct LogchainEntry
{
	uint64_t	seq;
	const unsigned char *bytes;	/* canonical bytes; may be NULL when len is 0 */
	size_t		len;
	const unsigned char *mac;	/* LOGCHAIN_MAC_BYTES as stored */
} LogchainEntry;

typedef enum LogchainVerdict
{
	LOGCHAIN_OK = 0,
	LOGCHAIN_ALTERED,
	LOGCHAIN_MISSING,
	LOGCHAIN_OUT_OF_ORDER
} LogchainVerdict;

/*
 * Verify entries[0..n) in the order given, starting from anchor (the MAC
 * before entries[0]) and first_seq (the seq entries[0] must have).  Stops at
 * the first offending entry, returns the verdict and sets *bad to its index
 * (n when the verdict is OK).  With expected = first_seq + i:
 *
 *   OUT_OF_ORDER  entries[i].seq < expected (a duplicate or a reordering), or
 *                 entries[i].seq > expected while an entry with the expected
 *                 seq does come later in the input (a reordering, such as
 *                 two entries swapped: reported at the first swapped index);
 *   MISSING       entries[i].seq > expected and no later entry has the
 *                 expected seq (a gap: the entry was deleted);
 *   ALTERED       the seq is right but the MAC does not match: the entry's
 *                 bytes, its length, its MAC or its predecessor's MAC was
 *                 changed, or the key or anchor is not the one the chain
 *                 was written with.
 *
 * Since each entry's own stored MAC is checked, a change to entry i is
 * always reported at i, never later.  MACs are compared in constant time.
 *
 * Bad arguments never give OK: key or anchor NULL, entries NULL with n > 0,
 * or first_seq 0 give ALTERED with *bad = 0 (nothing could be authenticated);
 * an entry whose mac is NULL, or whose bytes are NULL with len > 0, is
 * ALTERED at its index.  bad may be NULL when the index is not wanted.
 * n = 0 with good arguments is OK with *bad = 0.
 */
extern LogchainVerdict logchain_verify(const unsigned char key[LOGCHAIN_KEY_BYTES],
									   const unsigned char anchor[LOGCHAIN_MAC_BYTES],
									   uint64_t first_seq,
									   const LogchainEntry *entries, size_t n,
									   size_t *bad);

/* "ok", "altered", "missing", "out of order"; "unknown" for any other value. */
extern const char *logchain_verdict_name(LogchainVerdict v);

#endif
