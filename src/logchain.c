/*
 * logchain.c — chain and verify keyed MACs over access-log entries.
 *
 * The design asks that the access log be tamper-evident: the writer worker
 * chains a keyed MAC over the log, and a verify function names the first
 * broken or missing entry.  This file is that chain (format in logchain.h),
 * BLAKE2b from libsodium; it keeps no state and knows nothing of tables or
 * keys, so it can be unit-tested on its own.
 */
#include "logchain.h"

#include <string.h>
#include <sodium.h>

#define LOGCHAIN_DOMAIN "privacy access log v1"
#define LOGCHAIN_DOMAIN_BYTES (sizeof(LOGCHAIN_DOMAIN) - 1)

/* The format is fixed by these; the build must stop rather than drift. */
typedef char logchain_mac_size_check[
	LOGCHAIN_MAC_BYTES >= crypto_generichash_BYTES_MIN &&
	LOGCHAIN_MAC_BYTES <= crypto_generichash_BYTES_MAX ? 1 : -1];
typedef char logchain_key_size_check[
	LOGCHAIN_KEY_BYTES >= crypto_generichash_KEYBYTES_MIN &&
	LOGCHAIN_KEY_BYTES <= crypto_generichash_KEYBYTES_MAX ? 1 : -1];
typedef char logchain_len_fits_check[SIZE_MAX <= UINT64_MAX ? 1 : -1];

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

int
logchain_mac(unsigned char out[LOGCHAIN_MAC_BYTES],
			 const unsigned char key[LOGCHAIN_KEY_BYTES], uint64_t seq,
			 const unsigned char prev[LOGCHAIN_MAC_BYTES],
			 const unsigned char *entry, size_t len)
{
	crypto_generichash_state st;
	unsigned char num[8];
	int			rc;

	if (out == NULL)
		return -1;
	if (key == NULL || prev == NULL || (entry == NULL && len > 0) || seq == 0)
	{
		sodium_memzero(out, LOGCHAIN_MAC_BYTES);
		return -1;
	}

	rc = crypto_generichash_init(&st, key, LOGCHAIN_KEY_BYTES, LOGCHAIN_MAC_BYTES);
	rc |= crypto_generichash_update(&st, (const unsigned char *) LOGCHAIN_DOMAIN,
									LOGCHAIN_DOMAIN_BYTES);
	put_u64(num, seq);
	rc |= crypto_generichash_update(&st, num, sizeof(num));
	rc |= crypto_generichash_update(&st, prev, LOGCHAIN_MAC_BYTES);
	put_u64(num, (uint64_t) len);
	rc |= crypto_generichash_update(&st, num, sizeof(num));
	if (len > 0)
		rc |= crypto_generichash_update(&st, entry, len);
	rc |= crypto_generichash_final(&st, out, LOGCHAIN_MAC_BYTES);

	/* The state holds material derived from the key. */
	sodium_memzero(&st, sizeof(st));
	if (rc != 0)
	{
		sodium_memzero(out, LOGCHAIN_MAC_BYTES);
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
logchain_verify(const unsigned char key[LOGCHAIN_KEY_BYTES],
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

	if (key == NULL || anchor == NULL || (entries == NULL && n > 0) ||
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
			logchain_mac(mac, key, e->seq, prev, e->bytes, e->len) != 0 ||
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
