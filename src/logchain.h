/*
 * logchain.h — the keyed MAC chain that makes the access log tamper-evident.
 *
 * Plain C with no server headers, so unit tests link it alone (with
 * -lsodium).  The access-log writer gives every entry a sequence number
 * (starting at 1, consecutive) and serializes the entry's fields into
 * canonical bytes; this part only chains and checks MACs over those opaque
 * bytes.
 *
 * The writer stores entries in batches; each batch has a random nonce of
 * LOGCHAIN_NONCE_BYTES, stored with it, and its first seq.  From the chain
 * key K (derived by the caller from the master key) and the nonce comes the
 * batch key, keyed BLAKE2b-256:
 *
 *   Kb = BLAKE2b-256(key K, "privacy access log v2 batch" || nonce)
 *
 * Entry seq of the batch gets a one-time Poly1305 key: the 32 bytes at
 * offset 32 * (seq - first_seq) of the ChaCha20 (IETF) keystream under Kb
 * with an all-zero 12-byte nonce, which is how ChaCha20-Poly1305 keys its
 * MAC.  The entry's MAC (16 bytes) is Poly1305 under that key over, all
 * integers big-endian:
 *
 *   size  field
 *   8     seq_n
 *   16    mac_{n-1}, or for the first entry of the log the anchor
 *   8     length of the canonical bytes
 *   len   the canonical bytes
 *
 * A one-time key must never MAC two messages: the random nonce makes every
 * batch's keys fresh, also when a writer that crashed before committing
 * writes the same seqs again.  The anchor is 16 zero bytes for a new log,
 * or the MAC of the last entry removed by retention, so that what remains
 * still verifies; an anchor is authenticated by its own keyed BLAKE2b-256
 * (logchain_anchor_mac).  The length is included so that the encoding
 * stays unambiguous should anything ever be appended after the bytes.
 *
 * A chain alone cannot show that entries were cut off its end: whoever keeps
 * the log must also keep the head (last seq and MAC) apart from the entries,
 * and compare.  The head is sealed (logchain_head_seal) under a key derived
 * from the chain key,
 *
 *   Kh   = BLAKE2b-256(key K, "privacy access log v2 head key")
 *   seal = BLAKE2b-256(key Kh, "privacy access log v2 head" || last_seq ||
 *                      mac_{last_seq} || broken_at)
 *
 * (integers as 8 bytes big-endian; broken_at 0 when none), so that only the
 * key's holder can move it.  A sealed head can still be replaced by an older
 * sealed copy: what that allows is the caller's to bound.
 */
#ifndef PRIVACY_LOGCHAIN_H
#define PRIVACY_LOGCHAIN_H

#include <stddef.h>
#include <stdint.h>

#define LOGCHAIN_MAC_BYTES 16
#define LOGCHAIN_KEY_BYTES 32
#define LOGCHAIN_NONCE_BYTES 16
#define LOGCHAIN_ANCHOR_MAC_BYTES 32
#define LOGCHAIN_HEAD_SEAL_BYTES 32
/* one-time keys made at a time (ChaCha20 is cheaper by the block run) */
#define LOGCHAIN_KEYS_PER_CHUNK 64

/*
 * A batch's keys.  Holds key material: logchain_batch_end wipes it.  Entries
 * of one batch may be MACed in any order, but consecutive seqs are cheapest.
 */
typedef struct LogchainBatch
{
	unsigned char key[LOGCHAIN_KEY_BYTES];	/* Kb */
	uint64_t	first_seq;
	int			ready;			/* begun with good arguments */
	uint64_t	chunk;			/* which run of one-time keys stream holds */
	int			chunk_valid;
	unsigned char stream[LOGCHAIN_KEYS_PER_CHUNK * 32];
} LogchainBatch;

/*
 * Derive a batch's keys from the chain key, its nonce and its first seq.
 * Returns 0, or -1 (b wiped and unusable) for key or nonce NULL or
 * first_seq 0.
 */
extern int	logchain_batch_begin(LogchainBatch *b,
								 const unsigned char key[LOGCHAIN_KEY_BYTES],
								 const unsigned char nonce[LOGCHAIN_NONCE_BYTES],
								 uint64_t first_seq);
extern void logchain_batch_end(LogchainBatch *b);

/*
 * Compute the MAC of one entry of batch b.  entry may be NULL when len is 0.
 * Returns 0, or -1 for bad arguments: out, b or prev NULL, b not begun,
 * entry NULL with len > 0, seq 0, or seq before the batch's first or
 * 2^33 or more after it.  On -1, out (when not NULL) is zeroed rather than
 * left holding anything that looks like a MAC.
 */
extern int	logchain_mac(unsigned char out[LOGCHAIN_MAC_BYTES], LogchainBatch *b,
						 uint64_t seq,
						 const unsigned char prev[LOGCHAIN_MAC_BYTES],
						 const unsigned char *entry, size_t len);

/*
 * The MAC that authenticates a retention anchor: keyed BLAKE2b-256 under the
 * chain key over "privacy access log v2 anchor", first_seq (the seq the log
 * now starts at) and the anchor.  Returns 0 or -1 (out zeroed) for NULL
 * arguments or first_seq 0.
 */
extern int	logchain_anchor_mac(unsigned char out[LOGCHAIN_ANCHOR_MAC_BYTES],
								const unsigned char key[LOGCHAIN_KEY_BYTES],
								uint64_t first_seq,
								const unsigned char anchor[LOGCHAIN_MAC_BYTES]);

/*
 * The seal of the chain's head: its last seq, that entry's MAC, and
 * broken_at (0, or the first seq written after the head was found lost:
 * entries before it may have been cut off).  Returns 0, or -1 (out zeroed)
 * for NULL arguments.
 */
extern int	logchain_head_seal(unsigned char out[LOGCHAIN_HEAD_SEAL_BYTES],
							   const unsigned char key[LOGCHAIN_KEY_BYTES],
							   uint64_t last_seq,
							   const unsigned char mac[LOGCHAIN_MAC_BYTES],
							   uint64_t broken_at);

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
 * Verify entries[0..n) of batch b in the order given, starting from anchor
 * (the MAC before entries[0]) and first_seq (the seq entries[0] must have).
 * Stops at the first offending entry, returns the verdict and sets *bad to
 * its index (n when the verdict is OK).  With expected = first_seq + i:
 *
 *   OUT_OF_ORDER  entries[i].seq < expected (a duplicate or a reordering), or
 *                 entries[i].seq > expected while an entry with the expected
 *                 seq does come later in the input (a reordering, such as
 *                 two entries swapped: reported at the first swapped index);
 *   MISSING       entries[i].seq > expected and no later entry has the
 *                 expected seq (a gap: the entry was deleted);
 *   ALTERED       the seq is right but the MAC does not match: the entry's
 *                 bytes, its length, its MAC or its predecessor's MAC was
 *                 changed, or the key, nonce, batch start or anchor is not
 *                 the one the chain was written with.
 *
 * Since each entry's own stored MAC is checked, a change to entry i is
 * always reported at i, never later.  MACs are compared in constant time.
 *
 * Bad arguments never give OK: b or anchor NULL, b not begun, entries NULL
 * with n > 0, or first_seq 0 give ALTERED with *bad = 0 (nothing could be
 * authenticated); an entry whose mac is NULL, or whose bytes are NULL with
 * len > 0, is ALTERED at its index.  bad may be NULL when the index is not
 * wanted.  n = 0 with good arguments is OK with *bad = 0.
 */
extern LogchainVerdict logchain_verify(LogchainBatch *b,
									   const unsigned char anchor[LOGCHAIN_MAC_BYTES],
									   uint64_t first_seq,
									   const LogchainEntry *entries, size_t n,
									   size_t *bad);

/* "ok", "altered", "missing", "out of order"; "unknown" for any other value. */
extern const char *logchain_verdict_name(LogchainVerdict v);

#endif
