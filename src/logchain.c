/*
 * logchain.c — chain and verify keyed MACs over access-log entries.
 *
 * The design asks that the access log be tamper-evident: the writer worker
 * chains a keyed MAC over the log, and a verify function names the first
 * broken or missing entry.  This file is that chain (format in logchain.h):
 * Poly1305 per entry under one-time keys from a ChaCha20 keystream per
 * batch, as ChaCha20-Poly1305 does (a keyed BLAKE2b per entry took 40 % of
 * the writer's time; this takes a quarter of that).  It knows nothing of
 * tables or where keys come from, so it can be unit-tested on its own.
 */
#include "logchain.h"

#include <string.h>
#include <sodium.h>

#define BATCH_DOMAIN "privacy access log v2 batch"
#define ANCHOR_DOMAIN "privacy access log v2 anchor"
#define HEAD_KEY_DOMAIN "privacy access log v2 head key"
#define HEAD_DOMAIN "privacy access log v2 head"

/* The format is fixed by these; the build must stop rather than drift. */
typedef char logchain_mac_size_check[
	LOGCHAIN_MAC_BYTES == crypto_onetimeauth_poly1305_BYTES ? 1 : -1];
typedef char logchain_otk_size_check[
	crypto_onetimeauth_poly1305_KEYBYTES == 32 ? 1 : -1];
typedef char logchain_key_size_check[
	LOGCHAIN_KEY_BYTES >= crypto_generichash_KEYBYTES_MIN &&
	LOGCHAIN_KEY_BYTES <= crypto_generichash_KEYBYTES_MAX &&
	LOGCHAIN_KEY_BYTES == crypto_stream_chacha20_ietf_KEYBYTES ? 1 : -1];
typedef char logchain_anchor_size_check[
	LOGCHAIN_ANCHOR_MAC_BYTES >= crypto_generichash_BYTES_MIN &&
	LOGCHAIN_ANCHOR_MAC_BYTES <= crypto_generichash_BYTES_MAX ? 1 : -1];
typedef char logchain_head_size_check[
	LOGCHAIN_HEAD_SEAL_BYTES >= crypto_generichash_BYTES_MIN &&
	LOGCHAIN_HEAD_SEAL_BYTES <= crypto_generichash_BYTES_MAX ? 1 : -1];
typedef char logchain_len_fits_check[SIZE_MAX <= UINT64_MAX ? 1 : -1];

/* One-time keys per entry: two per 64-byte ChaCha20 block, 2^32 blocks. */
#define MAX_INDEX (UINT64_C(1) << 33)

static void
put_u64(unsigned char *p, uint64_t v)
{
	int			i;

	for (i = 7; i >= 0; i--)
	{
		p[i] = (unsigned char) v;
		v >>= 8;
	}
}

void
logchain_batch_end(LogchainBatch *b)
{
	if (b != NULL)
		sodium_memzero(b, sizeof(*b));
}

int
logchain_batch_begin(LogchainBatch *b, const unsigned char key[LOGCHAIN_KEY_BYTES],
					 const unsigned char nonce[LOGCHAIN_NONCE_BYTES], uint64_t first_seq)
{
	crypto_generichash_state st;
	int			rc;

	if (b == NULL)
		return -1;
	logchain_batch_end(b);
	if (key == NULL || nonce == NULL || first_seq == 0)
		return -1;
	rc = crypto_generichash_init(&st, key, LOGCHAIN_KEY_BYTES, LOGCHAIN_KEY_BYTES);
	rc |= crypto_generichash_update(&st, (const unsigned char *) BATCH_DOMAIN,
									sizeof(BATCH_DOMAIN) - 1);
	rc |= crypto_generichash_update(&st, nonce, LOGCHAIN_NONCE_BYTES);
	rc |= crypto_generichash_final(&st, b->key, LOGCHAIN_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
	if (rc != 0)
	{
		logchain_batch_end(b);
		return -1;
	}
	b->first_seq = first_seq;
	b->ready = 1;
	return 0;
}

/* The one-time key of entry index (seq - first_seq), or NULL. */
static const unsigned char *
one_time_key(LogchainBatch *b, uint64_t index)
{
	static const unsigned char zeros[LOGCHAIN_KEYS_PER_CHUNK * 32];
	static const unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
	uint64_t	chunk = index / LOGCHAIN_KEYS_PER_CHUNK;

	if (!b->chunk_valid || b->chunk != chunk)
	{
		/* 32 bytes a key: the chunk starts at block chunk * KEYS / 2 */
		if (crypto_stream_chacha20_ietf_xor_ic(b->stream, zeros, sizeof(b->stream), nonce,
											   (uint32_t) (chunk * (LOGCHAIN_KEYS_PER_CHUNK / 2)),
											   b->key) != 0)
			return NULL;
		b->chunk = chunk;
		b->chunk_valid = 1;
	}
	return b->stream + 32 * (index % LOGCHAIN_KEYS_PER_CHUNK);
}

int
logchain_mac(unsigned char out[LOGCHAIN_MAC_BYTES], LogchainBatch *b, uint64_t seq,
			 const unsigned char prev[LOGCHAIN_MAC_BYTES],
			 const unsigned char *entry, size_t len)
{
	crypto_onetimeauth_state st;
	unsigned char head[8 + LOGCHAIN_MAC_BYTES + 8];
	const unsigned char *otk;
	int			rc;

	if (out == NULL)
		return -1;
	if (b == NULL || !b->ready || prev == NULL || (entry == NULL && len > 0) || seq == 0 ||
		seq < b->first_seq || seq - b->first_seq >= MAX_INDEX ||
		(otk = one_time_key(b, seq - b->first_seq)) == NULL)
	{
		sodium_memzero(out, LOGCHAIN_MAC_BYTES);
		return -1;
	}

	put_u64(head, seq);
	memcpy(head + 8, prev, LOGCHAIN_MAC_BYTES);
	put_u64(head + 8 + LOGCHAIN_MAC_BYTES, (uint64_t) len);
	rc = crypto_onetimeauth_init(&st, otk);
	rc |= crypto_onetimeauth_update(&st, head, sizeof(head));
	if (len > 0)
		rc |= crypto_onetimeauth_update(&st, entry, len);
	rc |= crypto_onetimeauth_final(&st, out);

	/* The state holds the one-time key. */
	sodium_memzero(&st, sizeof(st));
	if (rc != 0)
	{
		sodium_memzero(out, LOGCHAIN_MAC_BYTES);
		return -1;
	}
	return 0;
}

int
logchain_anchor_mac(unsigned char out[LOGCHAIN_ANCHOR_MAC_BYTES],
					const unsigned char key[LOGCHAIN_KEY_BYTES], uint64_t first_seq,
					const unsigned char anchor[LOGCHAIN_MAC_BYTES])
{
	crypto_generichash_state st;
	unsigned char num[8];
	int			rc;

	if (out == NULL)
		return -1;
	if (key == NULL || anchor == NULL || first_seq == 0)
	{
		sodium_memzero(out, LOGCHAIN_ANCHOR_MAC_BYTES);
		return -1;
	}
	rc = crypto_generichash_init(&st, key, LOGCHAIN_KEY_BYTES, LOGCHAIN_ANCHOR_MAC_BYTES);
	rc |= crypto_generichash_update(&st, (const unsigned char *) ANCHOR_DOMAIN,
									sizeof(ANCHOR_DOMAIN) - 1);
	put_u64(num, first_seq);
	rc |= crypto_generichash_update(&st, num, sizeof(num));
	rc |= crypto_generichash_update(&st, anchor, LOGCHAIN_MAC_BYTES);
	rc |= crypto_generichash_final(&st, out, LOGCHAIN_ANCHOR_MAC_BYTES);
	sodium_memzero(&st, sizeof(st));
	if (rc != 0)
	{
		sodium_memzero(out, LOGCHAIN_ANCHOR_MAC_BYTES);
		return -1;
	}
	return 0;
}

int
logchain_head_seal(unsigned char out[LOGCHAIN_HEAD_SEAL_BYTES],
				   const unsigned char key[LOGCHAIN_KEY_BYTES], uint64_t last_seq,
				   const unsigned char mac[LOGCHAIN_MAC_BYTES], uint64_t broken_at)
{
	crypto_generichash_state st;
	unsigned char kh[LOGCHAIN_KEY_BYTES];
	unsigned char num[8];
	int			rc;

	if (out == NULL)
		return -1;
	if (key == NULL || mac == NULL)
	{
		sodium_memzero(out, LOGCHAIN_HEAD_SEAL_BYTES);
		return -1;
	}
	/* the head's own key, so that no other use of K can produce a seal */
	rc = crypto_generichash(kh, sizeof(kh), (const unsigned char *) HEAD_KEY_DOMAIN,
							sizeof(HEAD_KEY_DOMAIN) - 1, key, LOGCHAIN_KEY_BYTES);
	rc |= crypto_generichash_init(&st, kh, sizeof(kh), LOGCHAIN_HEAD_SEAL_BYTES);
	rc |= crypto_generichash_update(&st, (const unsigned char *) HEAD_DOMAIN,
									sizeof(HEAD_DOMAIN) - 1);
	put_u64(num, last_seq);
	rc |= crypto_generichash_update(&st, num, sizeof(num));
	rc |= crypto_generichash_update(&st, mac, LOGCHAIN_MAC_BYTES);
	put_u64(num, broken_at);
	rc |= crypto_generichash_update(&st, num, sizeof(num));
	rc |= crypto_generichash_final(&st, out, LOGCHAIN_HEAD_SEAL_BYTES);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(kh, sizeof(kh));
	if (rc != 0)
	{
		sodium_memzero(out, LOGCHAIN_HEAD_SEAL_BYTES);
		return -1;
	}
	return 0;
}

/*
 * Whether the entry that should come next is present further on: then the
 * entries were reordered rather than one deleted, and saying "missing" would
 * send whoever investigates after an entry that is still there.
 */
static int
seq_comes_later(const LogchainEntry *entries, size_t from, size_t n,
				uint64_t seq)
{
	size_t		j;

	for (j = from; j < n; j++)
		if (entries[j].seq == seq)
			return 1;
	return 0;
}

LogchainVerdict
logchain_verify(LogchainBatch *b,
				const unsigned char anchor[LOGCHAIN_MAC_BYTES],
				uint64_t first_seq, const LogchainEntry *entries, size_t n,
				size_t *bad)
{
	unsigned char mac[LOGCHAIN_MAC_BYTES];
	const unsigned char *prev = anchor;
	uint64_t	expected = first_seq;
	int			exhausted = 0;	/* expected has gone past UINT64_MAX */
	LogchainVerdict verdict = LOGCHAIN_OK;
	size_t		i = 0;

	if (b == NULL || !b->ready || anchor == NULL || (entries == NULL && n > 0) ||
		first_seq == 0)
	{
		if (bad != NULL)
			*bad = 0;
		return LOGCHAIN_ALTERED;
	}

	for (i = 0; i < n; i++)
	{
		const LogchainEntry *e = &entries[i];

		/* Once past UINT64_MAX no seq can be the expected one: any is behind. */
		if (exhausted || e->seq < expected)
		{
			verdict = LOGCHAIN_OUT_OF_ORDER;
			break;
		}
		if (e->seq > expected)
		{
			verdict = seq_comes_later(entries, i + 1, n, expected) ?
				LOGCHAIN_OUT_OF_ORDER : LOGCHAIN_MISSING;
			break;
		}
		if (e->mac == NULL ||
			logchain_mac(mac, b, e->seq, prev, e->bytes, e->len) != 0 ||
			sodium_memcmp(mac, e->mac, LOGCHAIN_MAC_BYTES) != 0)
		{
			verdict = LOGCHAIN_ALTERED;
			break;
		}
		prev = e->mac;
		if (expected == UINT64_MAX)
			exhausted = 1;
		else
			expected++;
	}

	if (bad != NULL)
		*bad = verdict == LOGCHAIN_OK ? n : i;
	return verdict;
}

const char *
logchain_verdict_name(LogchainVerdict v)
{
	switch (v)
	{
		case LOGCHAIN_OK:
			return "ok";
		case LOGCHAIN_ALTERED:
			return "altered";
		case LOGCHAIN_MISSING:
			return "missing";
		case LOGCHAIN_OUT_OF_ORDER:
			return "out of order";
	}
	return "unknown";
}
