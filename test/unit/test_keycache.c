/*
 * test_keycache.c — the table behind the data key caches: lookups after
 * inserts, removals and evictions (checked against a plain model), the
 * clock's choice of victim, and key material wiped whenever a slot is freed.
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "keycache.h"
#include "unit.h"

#define SPACE 7

static KeyCacheTable *
new_table(uint32_t nslots)
{
	KeyCacheTable *t = malloc(keycache_size(nslots));

	keycache_init(t, nslots);
	return t;
}

/* What a caller does: the key's bytes are its id, repeated, and a subject hash. */
static void
fill(KeyCacheTable *t, int32_t slot, uint32_t key_id)
{
	memset(keycache_entry(t, slot)->key, (int) (key_id & 0xff) | 1, KEYCACHE_KEY_BYTES);
	memset(keycache_entry(t, slot)->subject_hash, 0x5a, KEYCACHE_HASH_BYTES);
}

static int
holds(KeyCacheTable *t, uint32_t key_id)
{
	int32_t		slot = keycache_lookup(t, SPACE, key_id);
	unsigned char want[KEYCACHE_KEY_BYTES];

	if (slot < 0)
		return 0;
	memset(want, (int) (key_id & 0xff) | 1, sizeof(want));
	return keycache_entry(t, slot)->key_id == key_id &&
		memcmp(keycache_entry(t, slot)->key, want, sizeof(want)) == 0;
}

/* Every free slot is all zeros: no key, no subject hash. */
static int
free_slots_wiped(KeyCacheTable *t)
{
	uint32_t	i;

	for (i = 0; i < t->nslots; i++)
		if (keycache_entry(t, (int32_t) i)->key_id == 0 &&
			!sodium_is_zero((unsigned char *) keycache_entry(t, (int32_t) i), sizeof(KeyCacheEntry)))
			return 0;
	return 1;
}

int
main(void)
{
	KeyCacheTable *t;
	uint32_t	id;
	int			ok;
	int32_t		slot;

	if (sodium_init() < 0)
		return 2;

	/* inserts and lookups */
	t = new_table(64);
	ok = 1;
	for (id = 1; id <= 64; id++)
	{
		slot = keycache_insert(t, SPACE, id);
		ok = ok && slot >= 0;
		fill(t, slot, id);
	}
	CHECK(ok && t->nused == 64 && t->evictions == 0, "64 keys fill a table of 64 without an eviction");
	ok = 1;
	for (id = 1; id <= 64; id++)
		ok = ok && holds(t, id);
	CHECK(ok, "each key is found with its own material");
	CHECK(keycache_lookup(t, SPACE, 65) == -1 && keycache_lookup(t, SPACE, 0) == -1, "an absent key and key id 0 are not found");
	CHECK(keycache_insert(t, SPACE, 0) == -1, "key id 0 (a free slot's) cannot be inserted");
	slot = keycache_lookup(t, SPACE, 7);
	CHECK(keycache_insert(t, SPACE, 7) == slot && t->nused == 64, "inserting a key already held returns its slot");

	/* eviction */
	slot = keycache_insert(t, SPACE, 1000);
	CHECK(slot >= 0 && t->nused == 64 && t->evictions == 1, "a full table evicts one key for a new one");
	CHECK(sodium_is_zero(keycache_entry(t, slot)->key, KEYCACHE_KEY_BYTES) &&
		  sodium_is_zero(keycache_entry(t, slot)->subject_hash, KEYCACHE_HASH_BYTES),
		  "the victim's key and subject hash are wiped before the slot is handed out");
	fill(t, slot, 1000);
	ok = 0;
	for (id = 1; id <= 64; id++)
		ok += keycache_lookup(t, SPACE, id) < 0;
	CHECK(ok == 1, "exactly one of the old keys is gone");

	/* the clock: a key used since the hand passed survives the next eviction */
	keycache_clear(t);
	CHECK(t->nused == 0 && free_slots_wiped(t), "clear empties the table and wipes every key");
	for (id = 1; id <= 64; id++)
		fill(t, keycache_insert(t, SPACE, id), id);
	/* the first eviction clears every bit on its way round and takes the hand's slot */
	fill(t, keycache_insert(t, SPACE, 100), 100);
	CHECK(keycache_lookup(t, SPACE, 1) == -1, "with every key referenced, the hand's key goes first");
	/* now 2..64 are unreferenced; use key 2, then evict again */
	(void) keycache_lookup(t, SPACE, 2);
	fill(t, keycache_insert(t, SPACE, 101), 101);
	CHECK(holds(t, 2) && keycache_lookup(t, SPACE, 3) == -1, "a key looked up since is passed over; the next one is evicted");

	/* removal */
	CHECK(keycache_remove(t, SPACE, 50) == 1 && keycache_lookup(t, SPACE, 50) == -1, "a removed key is gone");
	CHECK(keycache_remove(t, SPACE, 50) == 0, "removing it again does nothing");
	CHECK(free_slots_wiped(t), "removed and evicted keys' material is wiped");
	free(t);

	/* a random workload against a model: every key the model holds is found */
	{
		enum { NSLOTS = 257, RANGE = 2000, STEPS = 200000 };
		static int32_t model[RANGE + 1];	/* slot of each key, or -1 */
		int			i;
		int			bad = 0;
		uint32_t	seed = 12345;

		t = new_table(NSLOTS);
		for (i = 0; i <= RANGE; i++)
			model[i] = -1;
		for (i = 0; i < STEPS; i++)
		{
			uint32_t	op;

			seed = seed * 1103515245u + 12345u;
			op = (seed >> 16) % 10;
			seed = seed * 1103515245u + 12345u;
			id = 1 + (seed >> 8) % RANGE;
			if (op < 6)
			{
				int32_t		before = keycache_lookup(t, SPACE, id);

				if ((before >= 0) != (model[id] >= 0))
					bad++;
				if (before < 0)
				{
					uint32_t	k;

					slot = keycache_insert(t, SPACE, id);
					/* whichever key held the slot is gone now */
					for (k = 1; k <= RANGE; k++)
						if (model[k] == slot)
							model[k] = -1;
					model[id] = slot;
					fill(t, slot, id);
				}
			}
			else if (op < 9)
			{
				if (keycache_remove(t, SPACE, id) != (model[id] >= 0))
					bad++;
				model[id] = -1;
			}
			else if (!holds(t, id) != (model[id] < 0))
				bad++;
		}
		for (id = 1; id <= RANGE; id++)
			if ((model[id] >= 0) != holds(t, id))
				bad++;
		CHECK(bad == 0, "200,000 random inserts, removals and lookups agree with a model");
		CHECK(t->nused <= NSLOTS && free_slots_wiped(t), "the table never exceeds its slots, and free slots hold no key");
		free(t);
		}

	/* spaces: the same key id in two spaces is two keys */
	t = new_table(8);
	fill(t, keycache_insert(t, 1, 42), 42);
	slot = keycache_insert(t, 2, 42);
	memset(keycache_entry(t, slot)->key, 0x55, KEYCACHE_KEY_BYTES);
	CHECK(keycache_lookup(t, 1, 42) != keycache_lookup(t, 2, 42) &&
		  keycache_lookup(t, 1, 42) >= 0 && t->nused == 2, "one key id in two spaces names two keys");
	CHECK(keycache_remove(t, 2, 42) == 1 && keycache_lookup(t, 1, 42) >= 0 &&
		  keycache_lookup(t, 2, 42) == -1, "removing it from one space leaves the other");
	free(t);

	/* a table of one slot */
	t = new_table(1);
	fill(t, keycache_insert(t, SPACE, 5), 5);
	fill(t, keycache_insert(t, SPACE, 6), 6);
	CHECK(holds(t, 6) && keycache_lookup(t, SPACE, 5) == -1 && t->nused == 1, "a table of one slot keeps the last key");
	free(t);

	UNIT_DONE();
}
