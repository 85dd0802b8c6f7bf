/*
 * keycache.h — a fixed-size table of unwrapped data keys (plain C, no
 * postgres.h, so that test/unit/test_keycache.c links it alone).
 *
 * Each partition of the cache in shared memory (keys_cache.c) is one table:
 * slots holding the keys with their metadata, and an index from key to
 * slot.  The caller places the table in memory fit for keys (a locked
 * mapping excluded from core dumps); this file wipes a slot whenever it
 * frees one.
 *
 * Eviction is a clock: a lookup sets the slot's referenced bit; a slot
 * needed for a new key is the next one, from the hand, whose bit is clear,
 * clearing bits as the hand passes.  The index is open addressing with
 * linear probing at a load of at most one half, and backward-shift
 * deletion, so that it needs no tombstones and never degrades.
 *
 * No locking here: the caller holds whatever lock the table needs.
 */
#ifndef PRIVACY_KEYCACHE_H
#define PRIVACY_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#define KEYCACHE_KEY_BYTES 32
#define KEYCACHE_HASH_BYTES 32

typedef struct KeyCacheEntry
{
	uint64_t	space;			/* whose key ids these are (the caller's: database, key table) */
	uint32_t	key_id;			/* 0: the slot is free */
	uint8_t		state;			/* the caller's (active, retired, destroyed) */
	uint8_t		scope;			/* 'c'ategory, 's'ubject, 'i'nternal */
	uint8_t		referenced;		/* the clock's bit */
	uint8_t		unused;
	unsigned char subject_hash[KEYCACHE_HASH_BYTES];	/* scope 's' only */
	unsigned char key[KEYCACHE_KEY_BYTES];	/* the unwrapped key; zeros if destroyed */
} KeyCacheEntry;

typedef struct KeyCacheTable
{
	uint32_t	nslots;
	uint32_t	index_mask;		/* the index has index_mask + 1 entries */
	uint32_t	hand;
	uint32_t	nused;
	uint64_t	evictions;
	/* KeyCacheEntry slots[nslots]; int32_t index[index_mask + 1] follow */
} KeyCacheTable;

/* A key's 32-bit hash: where it goes in a table, and in a direct-mapped cache. */
extern uint32_t keycache_hash(uint64_t space, uint32_t key_id);

/* Bytes a table of nslots takes (header, slots, index); nslots >= 1. */
extern size_t keycache_size(uint32_t nslots);
extern void keycache_init(KeyCacheTable *t, uint32_t nslots);
extern KeyCacheEntry *keycache_entry(KeyCacheTable *t, int32_t slot);

/*
 * Keys are named by a key id within a space (the caller's: one table of
 * data keys); key id 0 names nothing.
 */

/* The slot holding the key (its referenced bit set), or -1. */
extern int32_t keycache_lookup(KeyCacheTable *t, uint64_t space, uint32_t key_id);

/*
 * A slot for the key: the one that holds it already, else a free one, else
 * the clock's victim, whose entry is wiped.  The entry's space and key_id
 * are set and the rest zeroed for a new key; the caller fills in the rest.
 */
extern int32_t keycache_insert(KeyCacheTable *t, uint64_t space, uint32_t key_id);

/* Remove the key and wipe its entry; 1 if it was there. */
extern int	keycache_remove(KeyCacheTable *t, uint64_t space, uint32_t key_id);

/* Remove every key and wipe every entry. */
extern void keycache_clear(KeyCacheTable *t);

#endif
