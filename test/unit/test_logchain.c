/*
 * test_logchain.c — the access-log MAC chain: the published layout (known
 * answers computed outside libsodium, and a hand-built MAC), batches and
 * their one-time keys, a 100-entry
 * chain, every byte of every entry and MAC flipped, lengths changed,
 * deletions, swaps, duplicates, retention of a prefix, another key or
 * anchor, empty entries, sequence-number overflow and bad arguments; the
 * seal of the chain's head.
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "logchain.h"
#include "unit.h"

#define N 100
#define MAXLEN 40

static unsigned char key[LOGCHAIN_KEY_BYTES];
static unsigned char other_key[LOGCHAIN_KEY_BYTES];
static unsigned char nonce[LOGCHAIN_NONCE_BYTES];
static const unsigned char zero_anchor[LOGCHAIN_MAC_BYTES];

/* the chain's batch (from seq 1), and the same under another key or nonce */
static LogchainBatch kb;
static LogchainBatch other_kb;
static LogchainBatch other_nonce_kb;

/* The written chain: one spare byte per entry so that a length can grow. */
static unsigned char bytes[N][MAXLEN + 1];
static unsigned char macs[N][LOGCHAIN_MAC_BYTES];
static LogchainEntry chain[N];

/*
 * Entry i has seq i + 1 and i % 37 random bytes, so entries 0, 37 and 74
 * are empty.
 */
static void
build_chain(void)
{
	size_t		i;

	for (i = 0; i < N; i++)
	{
		chain[i].seq = i + 1;
		chain[i].len = i % 37;
		chain[i].bytes = bytes[i];
		chain[i].mac = macs[i];
		randombytes_buf(bytes[i], sizeof(bytes[i]));
		if (logchain_mac(macs[i], &kb, chain[i].seq, i == 0 ? zero_anchor : macs[i - 1],
						 bytes[i], chain[i].len) != 0)
			exit(2);
	}
}

/* 1 if verifying gives exactly this verdict at exactly this index. */
static int
verdict_is(LogchainBatch *k, const unsigned char *anchor, uint64_t first_seq,
		   const LogchainEntry *e, size_t n, LogchainVerdict want, size_t want_bad)
{
	size_t		bad = (size_t) -1;

	return logchain_verify(k, anchor, first_seq, e, n, &bad) == want && bad == want_bad;
}

static int
full_chain_is(LogchainVerdict want, size_t want_bad)
{
	return verdict_is(&kb, zero_anchor, 1, chain, N, want, want_bad);
}

static void
test_layout(void)
{
	unsigned char k[LOGCHAIN_KEY_BYTES];
	unsigned char nonce[LOGCHAIN_NONCE_BYTES];
	unsigned char m1[LOGCHAIN_MAC_BYTES], m2[LOGCHAIN_MAC_BYTES], m70[LOGCHAIN_MAC_BYTES];
	unsigned char want1[LOGCHAIN_MAC_BYTES], want2[LOGCHAIN_MAC_BYTES], want70[LOGCHAIN_MAC_BYTES];
	unsigned char am[LOGCHAIN_ANCHOR_MAC_BYTES], want_am[LOGCHAIN_ANCHOR_MAC_BYTES];
	unsigned char kb[LOGCHAIN_KEY_BYTES], want_kb[LOGCHAIN_KEY_BYTES];
	unsigned char msg[64], otk[64], zero12[12] = {0};
	unsigned char hand[LOGCHAIN_MAC_BYTES];
	LogchainBatch b;
	crypto_generichash_state st;
	size_t		i, off;

	for (i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char) i;
	for (i = 0; i < sizeof(nonce); i++)
		nonce[i] = (unsigned char) (0x40 + i);

	/*
	 * Computed with Python's hashlib.blake2b and the ChaCha20 and Poly1305
	 * of the cryptography package (OpenSSL), not libsodium.
	 */
	sodium_hex2bin(want_kb, sizeof(want_kb),
				   "1421e16100bba8b718921cb34e42e398ed6ada399fa97d209d1f66a6d096c8cd",
				   64, NULL, NULL, NULL);
	sodium_hex2bin(want1, sizeof(want1), "e9006e1f9ccc0e6c891f303d2733cbc8", 32, NULL, NULL, NULL);
	sodium_hex2bin(want2, sizeof(want2), "c10c09b5f63ce28e30e592def6c171a7", 32, NULL, NULL, NULL);
	sodium_hex2bin(want70, sizeof(want70), "1e22ebe3417002ac7dbfbcacc398161c", 32, NULL, NULL, NULL);
	sodium_hex2bin(want_am, sizeof(want_am),
				   "723ee648e5b69bc5abcb8ab3b3a083c3d701e5236d2d911c839be142a1fa3b93",
				   64, NULL, NULL, NULL);
	CHECK(logchain_batch_begin(&b, k, nonce, 1) == 0 && memcmp(b.key, want_kb, sizeof(want_kb)) == 0,
		  "known answer: the batch key");
	CHECK(logchain_mac(m1, &b, 1, zero_anchor, (const unsigned char *) "abc", 3) == 0 &&
		  memcmp(m1, want1, sizeof(m1)) == 0,
		  "known answer: seq 1, zero anchor, \"abc\"");
	CHECK(logchain_mac(m2, &b, 2, m1, NULL, 0) == 0 && memcmp(m2, want2, sizeof(m2)) == 0,
		  "known answer: seq 2 chained after it, empty entry");
	CHECK(logchain_mac(m70, &b, 70, m2, (const unsigned char *) "xyz", 3) == 0 &&
		  memcmp(m70, want70, sizeof(m70)) == 0,
		  "known answer: seq 70, in the second run of one-time keys");
	CHECK(logchain_anchor_mac(am, k, 41, m1) == 0 && memcmp(am, want_am, sizeof(am)) == 0,
		  "known answer: the MAC of an anchor");
	CHECK(logchain_mac(m1, &b, 1, zero_anchor, (const unsigned char *) "abc", 3) == 0 &&
		  memcmp(m1, want1, sizeof(m1)) == 0,
		  "going back to an earlier run of keys gives the same MAC");

	/* Built by hand from the layout in logchain.h with libsodium's primitives. */
	crypto_generichash_init(&st, k, sizeof(k), sizeof(kb));
	crypto_generichash_update(&st, (const unsigned char *) "privacy access log v2 batch", 27);
	crypto_generichash_update(&st, nonce, sizeof(nonce));
	crypto_generichash_final(&st, kb, sizeof(kb));
	/* seq 5 is index 4: the first half of block 2 */
	crypto_stream_chacha20_ietf_xor_ic(otk, (const unsigned char[64]) {0}, 64, zero12, 2, kb);
	off = 0;
	memcpy(msg + off, "\x00\x00\x00\x00\x00\x00\x00\x05", 8);
	off += 8;
	memcpy(msg + off, want2, 16);
	off += 16;
	memcpy(msg + off, "\x00\x00\x00\x00\x00\x00\x00\x05", 8);
	off += 8;
	memcpy(msg + off, "hello", 5);
	off += 5;
	crypto_onetimeauth(hand, msg, off, otk);
	CHECK(logchain_mac(m1, &b, 5, want2, (const unsigned char *) "hello", 5) == 0 &&
		  memcmp(m1, hand, sizeof(m1)) == 0,
		  "the MAC is Poly1305 over seq, prev, length, bytes (big-endian) under the keystream's 32 bytes at its index");
	logchain_batch_end(&b);
	CHECK(sodium_is_zero((const unsigned char *) &b, sizeof(b)), "ending a batch wipes its keys");
}

static void
test_intact(void)
{
	size_t		bad = 12345;

	CHECK(full_chain_is(LOGCHAIN_OK, N), "a chain of 100 entries verifies, *bad = n");
	CHECK(logchain_verify(&kb, zero_anchor, 1, chain, N, NULL) == LOGCHAIN_OK,
		  "bad may be NULL");
	CHECK(logchain_verify(&kb, zero_anchor, 1, chain, 0, &bad) == LOGCHAIN_OK && bad == 0,
		  "n = 0 is OK with *bad = 0");
	bad = 12345;
	CHECK(logchain_verify(&kb, zero_anchor, 1, NULL, 0, &bad) == LOGCHAIN_OK && bad == 0,
		  "n = 0 with entries NULL is OK with *bad = 0");
	CHECK(verdict_is(&kb, zero_anchor, 1, chain, 37, LOGCHAIN_OK, 37),
		  "any prefix of the chain verifies (the chain alone cannot see a cut-off tail)");
}

static void
test_flips(void)
{
	size_t		i, b;
	int			bit;
	int			all;

	all = 1;
	for (i = 0; i < N; i++)
		for (b = 0; b < chain[i].len; b++)
		{
			bytes[i][b] ^= 0xff;
			if (!full_chain_is(LOGCHAIN_ALTERED, i))
				all = 0;
			bytes[i][b] ^= 0xff;
		}
	CHECK(all, "flipping any byte of any entry's bytes is ALTERED at exactly that entry");

	all = 1;
	for (i = 0; i < N; i++)
		for (b = 0; b < LOGCHAIN_MAC_BYTES; b++)
		{
			macs[i][b] ^= 0xff;
			if (!full_chain_is(LOGCHAIN_ALTERED, i))
				all = 0;
			macs[i][b] ^= 0xff;
		}
	CHECK(all, "flipping any byte of any entry's MAC is ALTERED at exactly that entry, not the next");

	all = 1;
	for (i = 45; i < 55; i++)
	{
		for (b = 0; b < chain[i].len; b++)
			for (bit = 0; bit < 8; bit++)
			{
				bytes[i][b] ^= (unsigned char) (1 << bit);
				if (!full_chain_is(LOGCHAIN_ALTERED, i))
					all = 0;
				bytes[i][b] ^= (unsigned char) (1 << bit);
			}
		for (b = 0; b < LOGCHAIN_MAC_BYTES; b++)
			for (bit = 0; bit < 8; bit++)
			{
				macs[i][b] ^= (unsigned char) (1 << bit);
				if (!full_chain_is(LOGCHAIN_ALTERED, i))
					all = 0;
				macs[i][b] ^= (unsigned char) (1 << bit);
			}
	}
	CHECK(all, "every single-bit flip in entries 45-54, bytes or MAC, is ALTERED at that entry");

	all = 1;
	for (i = 0; i < N; i++)
	{
		if (chain[i].len == 0)
			continue;
		chain[i].len--;
		if (!full_chain_is(LOGCHAIN_ALTERED, i))
			all = 0;
		chain[i].len++;
	}
	CHECK(all, "shortening any entry's length by one is ALTERED at that entry");

	all = 1;
	for (i = 0; i < N; i++)
	{
		chain[i].len++;
		if (!full_chain_is(LOGCHAIN_ALTERED, i))
			all = 0;
		chain[i].len--;
	}
	CHECK(all, "lengthening any entry by one byte (empty ones included) is ALTERED at that entry");

	CHECK(full_chain_is(LOGCHAIN_OK, N), "after every flip is undone the chain verifies again");
}

/*
 * A changed MAC is caught at its own entry.  Only when the entry itself is
 * not verified (retention removed it and its MAC became the anchor) does it
 * show at the next one, the first whose MAC depends on it.
 */
static void
test_predecessor(void)
{
	unsigned char forged[LOGCHAIN_MAC_BYTES];
	unsigned char saved[LOGCHAIN_MAC_BYTES];
	unsigned char anchor[LOGCHAIN_MAC_BYTES];

	memcpy(anchor, macs[49], sizeof(anchor));
	anchor[0] ^= 0x01;
	CHECK(verdict_is(&kb, anchor, 51, chain + 50, N - 50, LOGCHAIN_ALTERED, 0),
		  "an altered anchor (the removed predecessor's MAC) is ALTERED at the first remaining entry");

	/* Rewrite entry 60 with a MAC under another key: the forger lacks the chain key. */
	memcpy(saved, macs[60], sizeof(saved));
	bytes[60][0] ^= 0x55;
	logchain_mac(forged, &other_kb, 61, macs[59], bytes[60], chain[60].len);
	memcpy(macs[60], forged, sizeof(forged));
	CHECK(full_chain_is(LOGCHAIN_ALTERED, 60),
		  "an entry rewritten with a MAC under another key is ALTERED at that entry");

	/* With the chain key, a rewritten entry's own MAC holds but the next one breaks. */
	logchain_mac(forged, &kb, 61, macs[59], bytes[60], chain[60].len);
	memcpy(macs[60], forged, sizeof(forged));
	CHECK(full_chain_is(LOGCHAIN_ALTERED, 61),
		  "an entry re-MACed with the chain key but not its successors is ALTERED at the next entry");
	bytes[60][0] ^= 0x55;
	memcpy(macs[60], saved, sizeof(saved));
	CHECK(full_chain_is(LOGCHAIN_OK, N), "restored, the chain verifies");
}

static void
test_deletions(void)
{
	LogchainEntry e[N];
	size_t		k, d;
	int			all;

	all = 1;
	for (k = 0; k < N - 1; k++)
	{
		memcpy(e, chain, k * sizeof(e[0]));
		memcpy(e + k, chain + k + 1, (N - k - 1) * sizeof(e[0]));
		if (!verdict_is(&kb, zero_anchor, 1, e, N - 1, LOGCHAIN_MISSING, k))
			all = 0;
	}
	CHECK(all, "deleting any one entry but the last is MISSING at its position");

	all = 1;
	for (d = 2; d <= 5; d++)
	{
		memcpy(e, chain, 30 * sizeof(e[0]));
		memcpy(e + 30, chain + 30 + d, (N - 30 - d) * sizeof(e[0]));
		if (!verdict_is(&kb, zero_anchor, 1, e, N - d, LOGCHAIN_MISSING, 30))
			all = 0;
	}
	CHECK(all, "deleting 2 to 5 consecutive entries is MISSING at the first gap");

	CHECK(verdict_is(&kb, zero_anchor, 1, chain + 1, N - 1, LOGCHAIN_MISSING, 0),
		  "deleting the first entry without moving the anchor is MISSING at 0");
	CHECK(verdict_is(&kb, zero_anchor, 1, chain, N - 1, LOGCHAIN_OK, N - 1),
		  "deleting the last entry goes unseen by the chain (the caller must check the head)");
}

static void
test_retention(void)
{
	size_t		k;
	int			all;

	all = 1;
	for (k = 1; k < N; k++)
		if (!verdict_is(&kb, macs[k - 1], k + 1, chain + k, N - k, LOGCHAIN_OK, N - k))
			all = 0;
	CHECK(all, "after deleting any prefix, verifying from the last removed MAC as anchor is OK");
	CHECK(verdict_is(&kb, macs[N - 1], N + 1, chain + N, 0, LOGCHAIN_OK, 0),
		  "after deleting every entry, an empty remainder is OK");
	CHECK(verdict_is(&kb, zero_anchor, 41, chain + 40, N - 40, LOGCHAIN_ALTERED, 0),
		  "after deleting a prefix, the zero anchor is ALTERED at 0");
	CHECK(verdict_is(&kb, macs[38], 41, chain + 40, N - 40, LOGCHAIN_ALTERED, 0),
		  "an anchor from the wrong removed entry is ALTERED at 0");
	CHECK(verdict_is(&kb, macs[39], 40, chain + 40, N - 40, LOGCHAIN_MISSING, 0),
		  "a first_seq one too low is MISSING at 0");
	CHECK(verdict_is(&kb, macs[39], 42, chain + 40, N - 40, LOGCHAIN_OUT_OF_ORDER, 0),
		  "a first_seq one too high is OUT_OF_ORDER at 0");
}

static void
test_reordering(void)
{
	LogchainEntry e[N + 1];
	LogchainEntry t;
	size_t		i, j;
	int			all;

	/*
	 * Entries swapped in the input: position i holds a later seq whose own
	 * entry is still further on, so it is a reordering, not a gap.
	 */
	all = 1;
	for (i = 0; i < N; i++)
		for (j = i + 1; j < N; j++)
		{
			memcpy(e, chain, sizeof(chain));
			t = e[i];
			e[i] = e[j];
			e[j] = t;
			if (!verdict_is(&kb, zero_anchor, 1, e, N, LOGCHAIN_OUT_OF_ORDER, i))
				all = 0;
		}
	CHECK(all, "swapping any two entries is OUT_OF_ORDER at the first swapped index");

	/*
	 * Contents swapped under fixed seqs, as a reader ordering by seq would
	 * see two rows whose other columns were exchanged.
	 */
	all = 1;
	for (i = 0; i < N; i++)
		for (j = i + 1; j < N; j++)
		{
			memcpy(e, chain, sizeof(chain));
			e[i].bytes = chain[j].bytes;
			e[i].len = chain[j].len;
			e[i].mac = chain[j].mac;
			e[j].bytes = chain[i].bytes;
			e[j].len = chain[i].len;
			e[j].mac = chain[i].mac;
			if (!verdict_is(&kb, zero_anchor, 1, e, N, LOGCHAIN_ALTERED, i))
				all = 0;
		}
	CHECK(all, "swapping two entries' contents and MACs but not their seqs is ALTERED at the first");

	memcpy(e, chain, 21 * sizeof(e[0]));
	e[21] = chain[20];
	memcpy(e + 22, chain + 21, (N - 21) * sizeof(e[0]));
	CHECK(verdict_is(&kb, zero_anchor, 1, e, N + 1, LOGCHAIN_OUT_OF_ORDER, 21),
		  "a duplicated entry is OUT_OF_ORDER at the copy");
	memcpy(e, chain, sizeof(chain));
	e[N] = chain[10];
	CHECK(verdict_is(&kb, zero_anchor, 1, e, N + 1, LOGCHAIN_OUT_OF_ORDER, N),
		  "an old entry replayed at the end is OUT_OF_ORDER there");

	memcpy(e, chain, sizeof(chain));
	e[70].seq = 72;
	CHECK(verdict_is(&kb, zero_anchor, 1, e, N, LOGCHAIN_MISSING, 70),
		  "an entry whose seq is rewritten upward is reported at its index (MISSING: its seq is nowhere)");
	e[70].seq = 70;
	CHECK(verdict_is(&kb, zero_anchor, 1, e, N, LOGCHAIN_OUT_OF_ORDER, 70),
		  "an entry whose seq is rewritten downward is OUT_OF_ORDER at its index");
}

static void
test_keys(void)
{
	unsigned char anchor[LOGCHAIN_MAC_BYTES];

	CHECK(verdict_is(&other_kb, zero_anchor, 1, chain, N, LOGCHAIN_ALTERED, 0),
		  "verifying with another key is ALTERED at 0");
	CHECK(verdict_is(&other_nonce_kb, zero_anchor, 1, chain, N, LOGCHAIN_ALTERED, 0),
		  "verifying with the right key but another batch nonce is ALTERED at 0");
	memset(anchor, 0, sizeof(anchor));
	anchor[LOGCHAIN_MAC_BYTES - 1] = 1;
	CHECK(verdict_is(&kb, anchor, 1, chain, N, LOGCHAIN_ALTERED, 0),
		  "verifying a new log from a nonzero anchor is ALTERED at 0");
}

/* The one-time keys: fresh per batch, per position, never out of range. */
static void
test_batches(void)
{
	LogchainBatch b, late;
	unsigned char m[LOGCHAIN_MAC_BYTES], again[LOGCHAIN_MAC_BYTES];
	unsigned char am[LOGCHAIN_ANCHOR_MAC_BYTES], am2[LOGCHAIN_ANCHOR_MAC_BYTES];
	unsigned char out[LOGCHAIN_MAC_BYTES];
	size_t		i;
	int			all;

	/* the chain verifies from a batch that starts later: keys are by position */
	CHECK(logchain_batch_begin(&late, key, nonce, 2) == 0 &&
		  verdict_is(&late, macs[0], 2, chain + 1, N - 1, LOGCHAIN_ALTERED, 0),
		  "the same key and nonce with another first seq give other MACs (ALTERED at 0)");
	logchain_batch_end(&late);

	/* MACs taken in any order are those taken in order (the key runs are cached) */
	all = 1;
	for (i = N; i-- > 0;)
	{
		if (logchain_mac(m, &kb, chain[i].seq, i == 0 ? zero_anchor : macs[i - 1],
						 bytes[i], chain[i].len) != 0 ||
			memcmp(m, macs[i], sizeof(m)) != 0)
			all = 0;
	}
	CHECK(all, "MACs computed backwards, across runs of keys, equal those computed forwards");

	/* same key, first seq and entry, another nonce: another MAC */
	CHECK(logchain_mac(m, &other_nonce_kb, 1, zero_anchor, bytes[0], chain[0].len) == 0 &&
		  memcmp(m, macs[0], sizeof(m)) != 0,
		  "another batch nonce gives entry 1 another MAC (no one-time key is used twice)");
	/* entries 1 and 2 have different one-time keys: same bytes, same prev */
	CHECK(logchain_mac(m, &kb, 1, zero_anchor, (const unsigned char *) "same", 4) == 0 &&
		  logchain_mac(again, &kb, 2, zero_anchor, (const unsigned char *) "same", 4) == 0 &&
		  memcmp(m, again, sizeof(m)) != 0,
		  "neighbouring entries (one ChaCha20 block) use different one-time keys");

	CHECK(logchain_batch_begin(&b, key, nonce, 1000) == 0, "a batch may start at any seq");
	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, &b, 999, zero_anchor, NULL, 0) == -1 && sodium_is_zero(out, sizeof(out)),
		  "mac: a seq before the batch's first is refused and out zeroed");
	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, &b, 1000 + (UINT64_C(1) << 33), zero_anchor, NULL, 0) == -1 &&
		  sodium_is_zero(out, sizeof(out)),
		  "mac: a seq 2^33 past the batch's first (beyond the keystream) is refused");
	CHECK(logchain_mac(out, &b, 1000 + (UINT64_C(1) << 33) - 1, zero_anchor, NULL, 0) == 0,
		  "mac: the last position of the keystream is usable");
	logchain_batch_end(&b);
	CHECK(logchain_mac(out, &b, 1000, zero_anchor, NULL, 0) == -1,
		  "mac: an ended batch is refused");

	CHECK(logchain_batch_begin(&b, NULL, nonce, 1) == -1 && logchain_batch_begin(&b, key, NULL, 1) == -1 &&
		  logchain_batch_begin(&b, key, nonce, 0) == -1 && logchain_batch_begin(NULL, key, nonce, 1) == -1,
		  "batch: a NULL key, nonce or batch, or first seq 0, is refused");
	CHECK(logchain_mac(out, &b, 1, zero_anchor, NULL, 0) == -1 &&
		  logchain_verify(&b, zero_anchor, 1, chain, N, NULL) == LOGCHAIN_ALTERED,
		  "a batch whose begin failed computes and verifies nothing");

	CHECK(logchain_anchor_mac(am, key, 41, macs[39]) == 0 &&
		  logchain_anchor_mac(am2, key, 42, macs[39]) == 0 && memcmp(am, am2, sizeof(am)) != 0 &&
		  logchain_anchor_mac(am2, other_key, 41, macs[39]) == 0 && memcmp(am, am2, sizeof(am)) != 0 &&
		  logchain_anchor_mac(am2, key, 41, macs[38]) == 0 && memcmp(am, am2, sizeof(am)) != 0,
		  "an anchor's MAC depends on the key, its seq and the anchor");
	memset(am, 0xAA, sizeof(am));
	CHECK(logchain_anchor_mac(am, NULL, 41, macs[39]) == -1 && sodium_is_zero(am, sizeof(am)) &&
		  logchain_anchor_mac(am, key, 0, macs[39]) == -1 &&
		  logchain_anchor_mac(am, key, 41, NULL) == -1 &&
		  logchain_anchor_mac(NULL, key, 41, macs[39]) == -1,
		  "anchor: NULL arguments or seq 0 are refused and out zeroed");
}

static void
test_empty_entries(void)
{
	unsigned char m[10][LOGCHAIN_MAC_BYTES];
	unsigned char a[LOGCHAIN_MAC_BYTES], b[LOGCHAIN_MAC_BYTES];
	LogchainEntry e[10];
	static const unsigned char nul = 0;
	size_t		i;

	for (i = 0; i < 10; i++)
	{
		e[i].seq = i + 1;
		e[i].bytes = NULL;
		e[i].len = 0;
		e[i].mac = m[i];
		logchain_mac(m[i], &kb, i + 1, i == 0 ? zero_anchor : m[i - 1], NULL, 0);
	}
	CHECK(verdict_is(&kb, zero_anchor, 1, e, 10, LOGCHAIN_OK, 10),
		  "a chain of ten empty entries with NULL bytes verifies");
	e[3].bytes = &nul;
	CHECK(verdict_is(&kb, zero_anchor, 1, e, 10, LOGCHAIN_OK, 10),
		  "an empty entry's MAC does not depend on whether bytes is NULL");
	e[3].len = 1;
	CHECK(verdict_is(&kb, zero_anchor, 1, e, 10, LOGCHAIN_ALTERED, 3),
		  "an empty entry turned into one NUL byte is ALTERED");

	CHECK(logchain_mac(a, &kb, 1, zero_anchor, NULL, 0) == 0 &&
		  logchain_mac(b, &kb, 1, zero_anchor, &nul, 1) == 0 &&
		  memcmp(a, b, sizeof(a)) != 0, "the empty entry and a single NUL byte have different MACs");
	CHECK(logchain_mac(a, &kb, 1, zero_anchor, (const unsigned char *) "x", 1) == 0 &&
		  logchain_mac(b, &kb, 2, zero_anchor, (const unsigned char *) "x", 1) == 0 &&
		  memcmp(a, b, sizeof(a)) != 0, "the same bytes at another seq have a different MAC");
}

static void
test_seq_limits(void)
{
	unsigned char m0[LOGCHAIN_MAC_BYTES], m1[LOGCHAIN_MAC_BYTES];
	LogchainEntry e[2];
	LogchainBatch last;

	/* a batch that starts at the last seq there is */
	logchain_batch_begin(&last, key, nonce, UINT64_MAX);
	logchain_mac(m0, &last, UINT64_MAX, zero_anchor, (const unsigned char *) "last", 4);
	e[0].seq = UINT64_MAX;
	e[0].bytes = (const unsigned char *) "last";
	e[0].len = 4;
	e[0].mac = m0;
	CHECK(verdict_is(&last, zero_anchor, UINT64_MAX, e, 1, LOGCHAIN_OK, 1),
		  "an entry at seq 2^64-1 verifies");
	e[1] = e[0];
	CHECK(verdict_is(&last, zero_anchor, UINT64_MAX, e, 2, LOGCHAIN_OUT_OF_ORDER, 1),
		  "nothing can follow seq 2^64-1: a repeat is OUT_OF_ORDER");
	e[1].seq = 0;
	e[1].mac = m1;
	memset(m1, 0, sizeof(m1));
	CHECK(verdict_is(&last, zero_anchor, UINT64_MAX, e, 2, LOGCHAIN_OUT_OF_ORDER, 1),
		  "nothing can follow seq 2^64-1: a wrap to 0 is OUT_OF_ORDER");
	logchain_batch_end(&last);
}

static void
test_bad_args(void)
{
	unsigned char out[LOGCHAIN_MAC_BYTES];
	LogchainEntry e[3];
	size_t		bad;

	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, NULL, 1, zero_anchor, NULL, 0) == -1 && sodium_is_zero(out, sizeof(out)),
		  "mac: a NULL key is refused and out zeroed");
	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, &kb, 1, NULL, NULL, 0) == -1 && sodium_is_zero(out, sizeof(out)),
		  "mac: a NULL prev is refused and out zeroed");
	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, &kb, 1, zero_anchor, NULL, 1) == -1 && sodium_is_zero(out, sizeof(out)),
		  "mac: NULL bytes with a nonzero length are refused and out zeroed");
	memset(out, 0xAA, sizeof(out));
	CHECK(logchain_mac(out, &kb, 0, zero_anchor, NULL, 0) == -1 && sodium_is_zero(out, sizeof(out)),
		  "mac: seq 0 is refused (sequence numbers start at 1)");
	CHECK(logchain_mac(NULL, &kb, 1, zero_anchor, NULL, 0) == -1, "mac: a NULL out is refused");

	bad = 99;
	CHECK(logchain_verify(NULL, zero_anchor, 1, chain, N, &bad) == LOGCHAIN_ALTERED && bad == 0,
		  "verify: a NULL key is ALTERED at 0");
	bad = 99;
	CHECK(logchain_verify(&kb, NULL, 1, chain, N, &bad) == LOGCHAIN_ALTERED && bad == 0,
		  "verify: a NULL anchor is ALTERED at 0");
	bad = 99;
	CHECK(logchain_verify(&kb, zero_anchor, 1, NULL, 5, &bad) == LOGCHAIN_ALTERED && bad == 0,
		  "verify: NULL entries with n > 0 is ALTERED at 0");
	bad = 99;
	CHECK(logchain_verify(&kb, zero_anchor, 0, chain, N, &bad) == LOGCHAIN_ALTERED && bad == 0,
		  "verify: first_seq 0 is ALTERED at 0");
	bad = 99;
	CHECK(logchain_verify(NULL, zero_anchor, 1, chain, 0, &bad) == LOGCHAIN_ALTERED && bad == 0,
		  "verify: bad arguments are refused even when n = 0");

	memcpy(e, chain, sizeof(e));
	e[2].mac = NULL;
	CHECK(verdict_is(&kb, zero_anchor, 1, e, 3, LOGCHAIN_ALTERED, 2),
		  "verify: an entry with a NULL MAC is ALTERED at its index");
	memcpy(e, chain, sizeof(e));
	e[1].bytes = NULL;
	CHECK(e[1].len > 0 && verdict_is(&kb, zero_anchor, 1, e, 3, LOGCHAIN_ALTERED, 1),
		  "verify: an entry with NULL bytes and a nonzero length is ALTERED at its index");
}

/*
 * The head's seal: known answers computed with Python's hashlib.blake2b (not
 * libsodium), and every input moves it.
 */
static void
test_head_seal(void)
{
	unsigned char k[LOGCHAIN_KEY_BYTES];
	unsigned char mac[LOGCHAIN_MAC_BYTES];
	unsigned char seal[LOGCHAIN_HEAD_SEAL_BYTES], want[LOGCHAIN_HEAD_SEAL_BYTES];
	unsigned char other[LOGCHAIN_HEAD_SEAL_BYTES];
	size_t		i;

	for (i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char) i;
	sodium_hex2bin(mac, sizeof(mac), "e9006e1f9ccc0e6c891f303d2733cbc8", 32, NULL, NULL, NULL);
	sodium_hex2bin(want, sizeof(want),
				   "404a58ac8492af7aa5b00032f91202371f68ef1300973b2621e0399a63a94bd7",
				   64, NULL, NULL, NULL);
	CHECK(logchain_head_seal(seal, k, 41, mac, 0) == 0 && memcmp(seal, want, sizeof(seal)) == 0,
		  "known answer: the seal of a head");
	sodium_hex2bin(want, sizeof(want),
				   "e92c330fad5106a519074c80dce564887e62a3d302b00e6f48cc0e685e0bf5d1",
				   64, NULL, NULL, NULL);
	CHECK(logchain_head_seal(seal, k, 41, mac, 7) == 0 && memcmp(seal, want, sizeof(seal)) == 0,
		  "known answer: the seal of a head with a break");

	logchain_head_seal(seal, k, 41, mac, 0);
	CHECK(logchain_head_seal(other, k, 42, mac, 0) == 0 && memcmp(seal, other, sizeof(seal)) != 0,
		  "another last seq, another seal");
	mac[15] ^= 1;
	CHECK(logchain_head_seal(other, k, 41, mac, 0) == 0 && memcmp(seal, other, sizeof(seal)) != 0,
		  "another last MAC, another seal");
	mac[15] ^= 1;
	k[0] ^= 1;
	CHECK(logchain_head_seal(other, k, 41, mac, 0) == 0 && memcmp(seal, other, sizeof(seal)) != 0,
		  "another key, another seal");
	k[0] ^= 1;
	CHECK(logchain_anchor_mac(other, k, 41, mac) == 0 && memcmp(seal, other, sizeof(seal)) != 0,
		  "an anchor's MAC over the same numbers is no head seal");

	memset(seal, 0xAA, sizeof(seal));
	CHECK(logchain_head_seal(seal, NULL, 41, mac, 0) == -1 && sodium_is_zero(seal, sizeof(seal)),
		  "head seal: a NULL key is refused, out zeroed");
	memset(seal, 0xAA, sizeof(seal));
	CHECK(logchain_head_seal(seal, k, 41, NULL, 0) == -1 && sodium_is_zero(seal, sizeof(seal)),
		  "head seal: a NULL MAC is refused, out zeroed");
	CHECK(logchain_head_seal(NULL, k, 41, mac, 0) == -1, "head seal: a NULL out is refused");
}

static void
test_names(void)
{
	CHECK(strcmp(logchain_verdict_name(LOGCHAIN_OK), "ok") == 0 &&
		  strcmp(logchain_verdict_name(LOGCHAIN_ALTERED), "altered") == 0 &&
		  strcmp(logchain_verdict_name(LOGCHAIN_MISSING), "missing") == 0 &&
		  strcmp(logchain_verdict_name(LOGCHAIN_OUT_OF_ORDER), "out of order") == 0,
		  "verdict names");
	CHECK(strcmp(logchain_verdict_name((LogchainVerdict) 99), "unknown") == 0,
		  "an out-of-range verdict is named \"unknown\", never NULL");
}

int
main(void)
{
	if (sodium_init() < 0)
		return 2;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(other_key, sizeof(other_key));
	randombytes_buf(nonce, sizeof(nonce));
	if (logchain_batch_begin(&kb, key, nonce, 1) != 0 ||
		logchain_batch_begin(&other_kb, other_key, nonce, 1) != 0)
		return 2;
	nonce[0] ^= 1;
	if (logchain_batch_begin(&other_nonce_kb, key, nonce, 1) != 0)
		return 2;
	nonce[0] ^= 1;
	build_chain();

	test_layout();
	test_intact();
	test_flips();
	test_predecessor();
	test_deletions();
	test_retention();
	test_reordering();
	test_keys();
	test_batches();
	test_empty_entries();
	test_seq_limits();
	test_bad_args();
	test_head_seal();
	test_names();

	UNIT_DONE();
}
