/*
 * keycache.c — a fixed-size table of unwrapped data keys (see keycache.h).
 */
#include "keycache.h"

#include <string.h>
#include <sodium.h>

#define EMPTY (-1)

/*
 * An index entry keeps the key's hash beside its slot, so that a probe and
 * a deletion's shifting read the index alone: the entries they pass over
 * are not touched (each would be a cache miss in a large table).
 */
typedef struct IndexEntry
{
	int32_t		slot;			/* EMPTY when free */
	uint32_t	hash;
} IndexEntry;

static KeyCacheEntry *
slots_of(KeyCacheTable *t)
{
	return (KeyCacheEntry *) (t + 1);
}

static IndexEntry *
index_of(KeyCacheTable *t)
{
	return (IndexEntry *) (slots_of(t) + t->nslots);
}

static uint32_t
index_entries(uint32_t nslots)
{
	uint32_t	n = 4;

	while (n < 2 * (uint64_t) nslots)
		n *= 2;
	return n;
}

size_t
keycache_size(uint32_t nslots)
{
	return sizeof(KeyCacheTable) + (size_t) nslots * sizeof(KeyCacheEntry) +
		(size_t) index_entries(nslots) * sizeof(IndexEntry);
}

/* murmur3's finalizer: key ids are consecutive, their home buckets must not be */
uint32_t
keycache_hash(uint64_t space, uint32_t key_id)
{
	uint64_t	h = space ^ ((uint64_t) key_id * 0x9e3779b97f4a7c15u);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	return (uint32_t) h;
}

static int
same_key(const KeyCacheEntry *e, uint64_t space, uint32_t key_id)
{
	return e->key_id == key_id && e->space == space;
}

void
keycache_init(KeyCacheTable *t, uint32_t nslots)
{
	uint32_t	i;
	IndexEntry *index;

	memset(t, 0, sizeof(*t));
	t->nslots = nslots;
	t->index_mask = index_entries(nslots) - 1;
	memset(slots_of(t), 0, (size_t) nslots * sizeof(KeyCacheEntry));
	index = index_of(t);
	for (i = 0; i <= t->index_mask; i++)
		index[i].slot = EMPTY;
}

KeyCacheEntry *
keycache_entry(KeyCacheTable *t, int32_t slot)
{
	return &slots_of(t)[slot];
}

/* The index position holding key_id, or -1. */
static int64_t
find_position(KeyCacheTable *t, uint64_t space, uint32_t key_id)
{
	KeyCacheEntry *slots = slots_of(t);
	IndexEntry *index = index_of(t);
	uint32_t	hash = keycache_hash(space, key_id);
	uint32_t	i = hash & t->index_mask;

	for (;;)
	{
		if (index[i].slot == EMPTY)
			return -1;
		if (index[i].hash == hash && same_key(&slots[index[i].slot], space, key_id))
			return i;
		i = (i + 1) & t->index_mask;
	}
}

int32_t
keycache_lookup(KeyCacheTable *t, uint64_t space, uint32_t key_id)
{
	int64_t		pos;
	int32_t		slot;

	if (key_id == 0)
		return -1;
	pos = find_position(t, space, key_id);
	if (pos < 0)
		return -1;
	slot = index_of(t)[pos].slot;
	slots_of(t)[slot].referenced = 1;
	return slot;
}

/*
 * Empty index position pos, shifting later members of its probe run back
 * so that every key stays reachable from its home position.
 */
static void
delete_position(KeyCacheTable *t, uint32_t pos)
{
	IndexEntry *index = index_of(t);
	uint32_t	i = pos;
	uint32_t	j = pos;

	for (;;)
	{
		uint32_t	k;

		j = (j + 1) & t->index_mask;
		if (index[j].slot == EMPTY)
			break;
		k = index[j].hash & t->index_mask;
		/* an entry whose home lies cyclically in (i, j] stays */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		index[i] = index[j];
		i = j;
	}
	index[i].slot = EMPTY;
}

static void
free_slot(KeyCacheTable *t, int32_t slot)
{
	sodium_memzero(&slots_of(t)[slot], sizeof(KeyCacheEntry));
	t->nused--;
}

int
keycache_remove(KeyCacheTable *t, uint64_t space, uint32_t key_id)
{
	int64_t		pos;
	int32_t		slot;

	if (key_id == 0)
		return 0;
	pos = find_position(t, space, key_id);
	if (pos < 0)
		return 0;
	slot = index_of(t)[pos].slot;
	delete_position(t, (uint32_t) pos);
	free_slot(t, slot);
	return 1;
}

int32_t
keycache_insert(KeyCacheTable *t, uint64_t space, uint32_t key_id)
{
	KeyCacheEntry *slots = slots_of(t);
	IndexEntry *index = index_of(t);
	int32_t		slot = -1;
	uint32_t	hash;
	uint32_t	i;
	uint64_t	steps;

	if (key_id == 0)
		return -1;
	slot = keycache_lookup(t, space, key_id);
	if (slot >= 0)
		return slot;

	/* the clock: a free slot, or the first one not referenced since the hand passed */
	for (steps = 0; steps < 2 * (uint64_t) t->nslots + 1; steps++)
	{
		KeyCacheEntry *e = &slots[t->hand];
		uint32_t	here = t->hand;

		t->hand = (t->hand + 1) % t->nslots;
		if (e->key_id == 0)
		{
			slot = (int32_t) here;
			break;
		}
		if (e->referenced)
		{
			e->referenced = 0;
			continue;
		}
		keycache_remove(t, e->space, e->key_id);
		t->evictions++;
		slot = (int32_t) here;
		break;
	}
	/* two turns clear every bit, so the loop always ends with a slot */
	if (slot < 0)
		return -1;

	memset(&slots[slot], 0, sizeof(KeyCacheEntry));
	slots[slot].space = space;
	slots[slot].key_id = key_id;
	slots[slot].referenced = 1;
	t->nused++;
	hash = keycache_hash(space, key_id);
	i = hash & t->index_mask;
	while (index[i].slot != EMPTY)
		i = (i + 1) & t->index_mask;
	index[i].slot = slot;
	index[i].hash = hash;
	return slot;
}

void
keycache_clear(KeyCacheTable *t)
{
	uint32_t	i;
	IndexEntry *index = index_of(t);

	sodium_memzero(slots_of(t), (size_t) t->nslots * sizeof(KeyCacheEntry));
	for (i = 0; i <= t->index_mask; i++)
		index[i].slot = EMPTY;
	t->nused = 0;
	t->hand = 0;
}
