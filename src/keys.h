/*
 * keys.h — what the files of the keys part share among them.
 *
 *   keys.c        the master key: loading, derivation, wrapping data keys
 *   keys_data.c   data keys: which key seals what, creating keys (new
 *                 subjects' keys in batches), finding and unwrapping them
 *   keys_cache.c  where unwrapped keys are kept: each backend's cache, the
 *                 cache in shared memory, and their invalidation per key
 *   keycache.c    the table both caches are made of (plain C)
 *
 * The arrows go one way: keys_data.c uses keys.c and keys_cache.c;
 * keys_cache.c uses keycache.c.  The rest of the extension sees only what
 * privacy.h declares.
 */
#ifndef PRIVACY_KEYS_H
#define PRIVACY_KEYS_H

#include "privacy.h"
#include "keycache.h"

#include <sodium.h>

/* keys.c — wrapping data keys under a master key */
#define KEYS_WRAP_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define KEYS_WRAPPED_BYTES (KEYS_WRAP_NONCE_BYTES + PRIVACY_DATA_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define KEYS_AD_MAX (19 + 4 + 1 + NAMEDATALEN + 1 + PRIVACY_SUBJECT_HASH_BYTES)

/* The master key slot (0 current, 1 previous) whose fingerprint this is; -1 if none is loaded. */
extern int	keys_master_slot(const char *fingerprint);
extern size_t keys_wrap_ad(unsigned char *ad, uint32 key_id, char scope, const char *name,
						   const unsigned char *subject_hash, size_t subject_hash_len);
extern void keys_wrap(int slot, const unsigned char *key, const unsigned char *ad, size_t adlen,
					  unsigned char *wrapped);
extern bool keys_unwrap(int slot, const unsigned char *wrapped, size_t wrapped_len,
						const unsigned char *ad, size_t adlen, unsigned char *key);
extern void keys_random_key(unsigned char *key);

/* keys_cache.c — unwrapped keys, per backend and shared */
extern int	privacy_backend_key_cache_size;
extern int	privacy_shared_key_cache_size;

/*
 * Moves whenever a backend's caches may hold a key whose state changed:
 * a key changed anywhere (a committed retirement, destruction or deletion),
 * or a transaction of this backend that created or changed keys aborted.
 * What keys_data.c keeps besides the unwrapped keys (which key is active
 * for a category or subject, the internal keys) is stamped with it.
 */
extern uint64 keys_generation;

/* Read the changes of keys committed since the last statement; cheap when none. */
extern void keys_cache_sync(void);
/* The key from this backend's cache or the shared one, or NULL with *meta NULL. */
extern const unsigned char *keys_cache_get(uint32 key_id, KeyCacheEntry **meta);
/* Taken before reading a key's row: keys_cache_put shares the key only if no key changed since. */
extern uint64 keys_cache_change_mark(void);
/*
 * Keep a key just read (material NULL for a destroyed key) and return the
 * backend cache's copy; shared too when shareable (a committed row version,
 * read with a snapshot taken after mark).
 */
extern const unsigned char *keys_cache_put(uint32 key_id, DataKeyState state, char scope,
										   const unsigned char *subject_hash,
										   const unsigned char *material, bool shareable,
										   uint64 mark, KeyCacheEntry **meta);
/* Forget every key this backend holds (it created keys, then aborted). */
extern void keys_cache_forget_local(void);
/* Did this transaction (or the one this parallel worker serves) change key_id? */
extern bool keys_cache_changed_here(uint32 key_id);

#endif
