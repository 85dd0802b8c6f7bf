/*
 * keys_cache.c — where unwrapped data keys are kept.
 *
 * Two levels:
 *   - each backend's own cache (privacy.backend_key_cache_size keys, rounded
 *     up to a power of two), direct-mapped: a key has one place, and a key
 *     stored there replaces (and so wipes) the one before; it is one
 *     sodium_malloc'ed region (locked, guard pages, not in core dumps), read
 *     without any lock;
 *   - a cache shared by all backends (privacy.shared_key_cache_size keys),
 *     tables of keycache.c (clock eviction), split into partitions, each
 *     with its own LWLock, so that a working set
 *     of millions of subjects is unwrapped once for the whole server and
 *     not once per backend.  Its tables (keys, with their ids, states and
 *     subject hashes) are in a mapping of their own that the postmaster
 *     creates, locks and excludes from core dumps (MADV_DONTDUMP) before
 *     any backend exists, and that backends inherit; only the ring and the
 *     partitions' sizes are in the main shared memory segment.  A backend
 *     copies a key it finds there into its own cache.
 *
 * Invalidation is per key.  A data key changes only by an UPDATE or DELETE
 * of its row in privacy.data_keys (retired, destroyed; creating a key
 * changes nothing anyone has cached).  The row trigger
 * privacy_internal.data_keys_changed notes the key's id; when the
 * transaction commits (XACT_EVENT_COMMIT: after the commit is visible,
 * before its locks are released and its invalidation messages are sent),
 * the ids go into a ring in shared memory and out of the shared cache.
 * Every backend reads the ring once per statement and drops those keys from
 * its own cache.  Until then, the changing transaction reads the keys it
 * changed from the table, never from the shared cache.
 *
 * A key read from the table goes into the shared cache only if no key
 * changed between the moment before its row was read and the moment it is
 * stored (the ring's counter, compared under the partition's lock): a
 * committer first advances the counter, then removes its keys, so a reader
 * holding a row version older than a commit either sees the counter moved
 * or has its entry removed after it.
 *
 * Where no commit callback runs, the caches are emptied instead: on a hot
 * standby (changes arrive by WAL replay; the trigger's relcache
 * invalidation of privacy.data_keys's TOAST table, signal_relid(), is
 * replayed with the commit, and every
 * backend that receives it empties its own cache; the shared cache is not
 * used there), and after COMMIT PREPARED once any prepared transaction
 * changed keys.  A ring
 * that wrapped past a backend's position, or a transaction that changed
 * more keys than it can list, empties the caches too.
 */
#include "keys.h"

#include <sys/mman.h>

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

int			privacy_backend_key_cache_size = 4096;
int			privacy_shared_key_cache_size = 65536;
uint64		keys_generation = 1;

/* Changes of keys remembered for other backends; one that falls behind starts over. */
#define KEY_CHANGE_RING 4096
/* Keys a transaction lists; beyond that its commit empties the caches. */
#define KEY_CHANGES_PER_XACT 1024
#define MAX_PARTITIONS 128
#define MIN_SLOTS_PER_PARTITION 1024
#define TRANCHE_NAME "privacy key cache"

typedef struct KeysShared
{
	slock_t		ring_lock;		/* serialises writers of the ring */
	pg_atomic_uint64 ring_reserved; /* entries claimed by writers */
	pg_atomic_uint64 ring_head; /* entries written */
	pg_atomic_uint32 prepared_changes;	/* a prepared transaction changed keys */
	int			nparts;
	uint32		slots_per_part;
	Size		part_bytes;
	bool		tables_locked;
	LWLockPadded *locks;
	uint32		ring[KEY_CHANGE_RING];	/* key ids; 0 = every key */
	int			nprocs;
	/* per PGPROC: that backend's transaction changed keys (its parallel workers ask) */
	pg_atomic_uint32 changed_by[FLEXIBLE_ARRAY_MEMBER];
	/* the partitions' tables follow, MAXALIGNed */
} KeysShared;

static KeysShared *shared = NULL;
static char *shared_tables = NULL;	/* the postmaster's mapping */
static size_t shared_tables_bytes = 0;
static bool shared_tables_locked = false;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* This backend's cache: direct-mapped, local_mask + 1 entries. */
static KeyCacheEntry *local_entries = NULL;
static uint32 local_mask = 0;
static int	local_setting = 0;	/* privacy.backend_key_cache_size it was made for */
static uint64 local_used = 0;
static uint64 local_evictions = 0;
static uint64 local_hits = 0;
static uint64 local_misses = 0;
static uint64 shared_hits = 0;
static uint64 shared_misses = 0;

/* Where this backend is in the ring; UINT64_MAX before its first statement. */
static uint64 ring_position = PG_UINT64_MAX;
static TimestampTz synced_statement = 0;
static bool standby_reset_pending = false;

/* The keys this transaction changed. */
static uint32 changed_ids[KEY_CHANGES_PER_XACT];
static int	nchanged = 0;
static bool changed_all = false;
static SubTransactionId last_change_subid = InvalidSubTransactionId;

static Oid	data_keys_relid = InvalidOid;
static Oid	data_keys_toast_relid = InvalidOid;	/* the signal of key changes */
static uint64 data_keys_relid_generation = 0;
static uint64 changed_space = 0;

/*
 * Key ids are numbers from one database's privacy.data_keys: the caches
 * name a key by its id within a space, the database and that table (a new
 * one after DROP and CREATE EXTENSION, whose ids start over).
 */
static uint64 key_space = 0;

static uint64
space_of(Oid relid)
{
	return ((uint64) MyDatabaseId << 32) | relid;
}

/* ------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------
 */
static int
partitions_for(int nkeys)
{
	int			n = 1;

	while (n < MAX_PARTITIONS && (nkeys / (n * 2)) >= MIN_SLOTS_PER_PARTITION)
		n *= 2;
	return n;
}

static uint32
slots_per_partition(int nkeys, int nparts)
{
	return (uint32) ((nkeys + nparts - 1) / nparts);
}

static Size
shared_size(void)
{
	return MAXALIGN(add_size(offsetof(KeysShared, changed_by),
							 mul_size(MaxBackends + NUM_AUXILIARY_PROCS, sizeof(pg_atomic_uint32))));
}

/* A partition's table, cache-line aligned, in the mapping. */
static size_t
partition_bytes(int nkeys)
{
	int			nparts = partitions_for(nkeys);

	return TYPEALIGN(64, keycache_size(slots_per_partition(nkeys, nparts)));
}

static KeyCacheTable *
partition_table(int part)
{
	return (KeyCacheTable *) (shared_tables + (size_t) part * shared->part_bytes);
}

static int
partition_of(uint32 key_id)
{
	return (int) ((key_id * 2654435761u) >> 16) & (shared->nparts - 1);
}

/*
 * Not on a hot standby: there the changes of keys arrive by WAL replay, and
 * a backend started after the replay of a destruction never receives its
 * invalidation, so nothing could take a destroyed key out of shared memory
 * in time.  Standby backends keep their own caches only.
 */
static bool
shared_cache_usable(void)
{
	return shared != NULL && shared->nparts > 0 && shared_tables != NULL &&
		!RecoveryInProgress();
}

/* ------------------------------------------------------------------------
 * Shared memory
 * ------------------------------------------------------------------------
 */
static void
keys_cache_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(shared_size());
	if (privacy_shared_key_cache_size > 0)
		RequestNamedLWLockTranche(TRANCHE_NAME, partitions_for(privacy_shared_key_cache_size));
}

static void
keys_cache_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("privacy key cache", shared_size(), &found);
	if (!found)
	{
		int			i;

		memset(shared, 0, shared_size());
		SpinLockInit(&shared->ring_lock);
		pg_atomic_init_u64(&shared->ring_reserved, 0);
		pg_atomic_init_u64(&shared->ring_head, 0);
		pg_atomic_init_u32(&shared->prepared_changes, 0);
		shared->nprocs = MaxBackends + NUM_AUXILIARY_PROCS;
		for (i = 0; i < shared->nprocs; i++)
			pg_atomic_init_u32(&shared->changed_by[i], 0);
		if (privacy_shared_key_cache_size > 0 && shared_tables != NULL)
		{
			shared->nparts = partitions_for(privacy_shared_key_cache_size);
			shared->slots_per_part = slots_per_partition(privacy_shared_key_cache_size, shared->nparts);
			shared->part_bytes = partition_bytes(privacy_shared_key_cache_size);
			shared->tables_locked = shared_tables_locked;
			shared->locks = GetNamedLWLockTranche(TRANCHE_NAME);
			/* after a crash and reinitialisation, nothing of the old keys stays */
			sodium_memzero(shared_tables, shared_tables_bytes);
			for (i = 0; i < shared->nparts; i++)
				keycache_init(partition_table(i), shared->slots_per_part);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The shared cache's tables: mapped once, in the postmaster, so that every
 * backend inherits the same pages; locked (best effort, as the master
 * key's page: the memlock limit may be too low) and never in a core dump.
 */
static void
map_shared_tables(void)
{
	size_t		bytes;
	void	   *p;

	if (privacy_shared_key_cache_size <= 0)
		return;
	bytes = (size_t) partitions_for(privacy_shared_key_cache_size) *
		partition_bytes(privacy_shared_key_cache_size);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
	{
		ereport(WARNING,
				(errmsg("privacy shared key cache could not be mapped: %m"),
				 errdetail("Backends keep unwrapped data keys in their own caches only."),
				 errhint("Lower privacy.shared_key_cache_size, or set it to 0.")));
		return;
	}
#ifdef MADV_DONTDUMP
	(void) madvise(p, bytes, MADV_DONTDUMP);
#endif
	if (mlock(p, bytes) == 0)
		shared_tables_locked = true;
	else
		ereport(WARNING,
				(errmsg("privacy shared key cache could not be locked in memory"),
				 errdetail("mlock of %zu bytes failed: %m.", bytes),
				 errhint("Raise the memlock limit of the server (LimitMEMLOCK in its systemd unit, or ulimit -l) to at least %zu kB, or lower privacy.shared_key_cache_size, so that unwrapped keys cannot be swapped to disk.",
						 (bytes + 1023) / 1024)));
	shared_tables = p;
	shared_tables_bytes = bytes;
}

/* ------------------------------------------------------------------------
 * This backend's cache
 * ------------------------------------------------------------------------
 */
static void
local_create(void)
{
	uint32		n = 16;

	while (n < (uint32) privacy_backend_key_cache_size)
		n *= 2;
	if (local_entries != NULL)
	{
		sodium_free(local_entries); /* zeroes it */
		local_entries = NULL;
	}
	local_entries = sodium_malloc((size_t) n * sizeof(KeyCacheEntry));
	if (local_entries == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not allocate locked memory for the data key cache"),
				 errhint("Raise the memlock limit of the server (ulimit -l / LimitMEMLOCK), or lower privacy.backend_key_cache_size.")));
	sodium_memzero(local_entries, (size_t) n * sizeof(KeyCacheEntry));
	local_mask = n - 1;
	local_setting = privacy_backend_key_cache_size;
	local_used = 0;
	keys_generation++;
}

static uint32
local_slot(uint64 space, uint32 key_id)
{
	return keycache_hash(space, key_id) & local_mask;
}

static void
local_remove(uint64 space, uint32 key_id)
{
	KeyCacheEntry *e = &local_entries[local_slot(space, key_id)];

	if (e->key_id == key_id && e->space == space && key_id != 0)
	{
		sodium_memzero(e, sizeof(KeyCacheEntry));
		local_used--;
	}
}

static void
local_clear(void)
{
	if (local_entries == NULL)
		return;
	sodium_memzero(local_entries, (size_t) (local_mask + 1) * sizeof(KeyCacheEntry));
	local_used = 0;
}

void
keys_cache_forget_local(void)
{
	local_clear();
	keys_generation++;
}

static void
shared_clear(void)
{
	int			i;

	if (!shared_cache_usable())
		return;
	for (i = 0; i < shared->nparts; i++)
	{
		LWLockAcquire(&shared->locks[i].lock, LW_EXCLUSIVE);
		keycache_clear(partition_table(i));
		LWLockRelease(&shared->locks[i].lock);
	}
}

/* ------------------------------------------------------------------------
 * The ring of changed keys
 * ------------------------------------------------------------------------
 */
static uint64
ring_reserved(void)
{
	uint64		r;

	pg_memory_barrier();
	r = pg_atomic_read_u64(&shared->ring_reserved);
	pg_memory_barrier();
	return r;
}

/*
 * Publish committed changes: into the ring first (the counter a reader
 * compares moves before anything is removed), then out of the shared cache.
 * Runs after the commit record, so it must not fail: no allocation, no
 * ERROR.
 */
static void
publish(uint64 space, const uint32 *ids, int n, bool all)
{
	uint64		h;
	int			i;

	if (shared == NULL)
		return;
	if (all || n > KEY_CHANGE_RING / 2)
	{
		all = true;
		n = 1;
	}
	SpinLockAcquire(&shared->ring_lock);
	h = pg_atomic_read_u64(&shared->ring_head);
	pg_atomic_write_u64(&shared->ring_reserved, h + n);
	pg_write_barrier();
	for (i = 0; i < n; i++)
		shared->ring[(h + i) % KEY_CHANGE_RING] = all ? 0 : ids[i];
	pg_write_barrier();
	pg_atomic_write_u64(&shared->ring_head, h + n);
	SpinLockRelease(&shared->ring_lock);

	if (!shared_cache_usable())
		return;
	if (all)
		shared_clear();
	else
		for (i = 0; i < n; i++)
		{
			int			part = partition_of(ids[i]);

			LWLockAcquire(&shared->locks[part].lock, LW_EXCLUSIVE);
			keycache_remove(partition_table(part), space, ids[i]);
			LWLockRelease(&shared->locks[part].lock);
		}
}

/*
 * The relation whose relcache invalidation tells a hot standby that keys
 * changed: the key table's TOAST table, which no plan names, so that the
 * primary's backends keep their plans over privacy.data_keys when a key is
 * destroyed (issue #19: every erasure had every session plan its
 * statements on the key table again); the key table itself if it has none.
 */
static Oid
signal_relid(Oid relid)
{
	HeapTuple	tup;
	Oid			toast = InvalidOid;

	if (!OidIsValid(relid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (HeapTupleIsValid(tup))
	{
		toast = ((Form_pg_class) GETSTRUCT(tup))->reltoastrelid;
		ReleaseSysCache(tup);
	}
	return OidIsValid(toast) ? toast : relid;
}

static void
note_data_keys_relid(void)
{
	if (data_keys_relid_generation != catalog_generation)
	{
		Oid			nsp = get_namespace_oid(PRIVACY_SCHEMA, true);

		data_keys_relid = OidIsValid(nsp) ? get_relname_relid("data_keys", nsp) : InvalidOid;
		data_keys_toast_relid = signal_relid(data_keys_relid);
		data_keys_relid_generation = catalog_generation;
		if (space_of(data_keys_relid) != key_space)
		{
			/* another key table: nothing cached names its keys */
			key_space = space_of(data_keys_relid);
			local_clear();
			keys_generation++;
		}
	}
}


/*
 * The backend's cache exists, at the size the setting asks (it may have
 * changed), for the key table of this database as it is now.
 */
static void
local_ready(void)
{
	if (local_entries == NULL || local_setting != privacy_backend_key_cache_size)
		local_create();
	note_data_keys_relid();
}

void
keys_cache_sync(void)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	uint64		head;
	uint64		pos;
	bool		all = false;

	local_ready();
	if (standby_reset_pending)
	{
		standby_reset_pending = false;
		if (RecoveryInProgress())
		{
			/* through the ring, so that no load older than this is shared */
			keys_cache_forget_local();
			publish(key_space, NULL, 0, true);
		}
	}
	if (shared == NULL)
		return;
	if (ring_position == PG_UINT64_MAX)
	{
		/* a new backend holds nothing that earlier changes concern */
		ring_position = pg_atomic_read_u64(&shared->ring_head);
		synced_statement = stmt;
		return;
	}
	if (stmt == synced_statement)
		return;
	synced_statement = stmt;

	pg_memory_barrier();
	head = pg_atomic_read_u64(&shared->ring_head);
	pg_read_barrier();
	if (head == ring_position)
		return;
	if (head - ring_position > KEY_CHANGE_RING)
		all = true;
	else
		for (pos = ring_position; pos < head && !all; pos++)
		{
			uint32		id = shared->ring[pos % KEY_CHANGE_RING];

			if (id == 0)
				all = true;
			else
				local_remove(key_space, id);
		}
	/* a writer that lapped us while we read: what we read may be newer entries */
	if (ring_reserved() - ring_position > KEY_CHANGE_RING)
		all = true;
	ring_position = head;
	if (all)
		local_clear();
	keys_generation++;
}

uint64
keys_cache_change_mark(void)
{
	return shared != NULL ? ring_reserved() : 0;
}

/* ------------------------------------------------------------------------
 * Finding and keeping keys
 * ------------------------------------------------------------------------
 */
static bool
leader_changed_keys(void)
{
	PGPROC	   *leader;

	if (!IsParallelWorker() || shared == NULL)
		return false;
	leader = MyProc->lockGroupLeader;
	if (leader == NULL || leader->pgprocno >= shared->nprocs)
		return true;			/* cannot tell: assume it did */
	return pg_atomic_read_u32(&shared->changed_by[leader->pgprocno]) != 0;
}

bool
keys_cache_changed_here(uint32 key_id)
{
	int			i;

	if (changed_all || leader_changed_keys())
		return true;
	for (i = 0; i < nchanged; i++)
		if (changed_ids[i] == key_id)
			return true;
	return false;
}

/* Copy a key (metadata and material) into this backend's cache. */
static const unsigned char *
local_keep(const KeyCacheEntry *from, KeyCacheEntry **meta)
{
	KeyCacheEntry *e = &local_entries[local_slot(key_space, from->key_id)];

	if (e->key_id == 0)
		local_used++;
	else if (e->key_id != from->key_id || e->space != key_space)
		local_evictions++;
	memcpy(e, from, sizeof(KeyCacheEntry));
	e->space = key_space;
	e->referenced = 0;
	*meta = e;
	return e->key;
}

const unsigned char *
keys_cache_get(uint32 key_id, KeyCacheEntry **meta)
{
	int32		slot;
	const unsigned char *key = NULL;

	*meta = NULL;
	local_ready();
	{
		uint32		here = local_slot(key_space, key_id);

		if (local_entries[here].key_id == key_id && local_entries[here].space == key_space && key_id != 0)
		{
			local_hits++;
			*meta = &local_entries[here];
			return local_entries[here].key;
		}
	}
	local_misses++;
	if (!shared_cache_usable() || keys_cache_changed_here(key_id))
		return NULL;
	{
		int			part = partition_of(key_id);
		KeyCacheTable *t = partition_table(part);

		LWLockAcquire(&shared->locks[part].lock, LW_SHARED);
		slot = keycache_lookup(t, key_space, key_id);
		if (slot >= 0)
			key = local_keep(keycache_entry(t, slot), meta);
		LWLockRelease(&shared->locks[part].lock);
	}
	if (key != NULL)
		shared_hits++;
	else
		shared_misses++;
	return key;
}

const unsigned char *
keys_cache_put(uint32 key_id, DataKeyState state, char scope,
			   const unsigned char *subject_hash, const unsigned char *material,
			   bool shareable, uint64 mark, KeyCacheEntry **meta)
{
	KeyCacheEntry *e;
	const unsigned char *key;

	local_ready();
	e = &local_entries[local_slot(key_space, key_id)];
	if (e->key_id == 0)
		local_used++;
	else if (e->key_id != key_id || e->space != key_space)
		local_evictions++;
	sodium_memzero(e, sizeof(KeyCacheEntry));
	e->space = key_space;
	e->key_id = key_id;
	e->state = (uint8) state;
	e->scope = (uint8) scope;
	if (subject_hash != NULL)
		memcpy(e->subject_hash, subject_hash, KEYCACHE_HASH_BYTES);
	if (material != NULL && state != DATA_KEY_DESTROYED)
		memcpy(e->key, material, KEYCACHE_KEY_BYTES);
	*meta = e;
	key = e->key;

	if (shareable && shared_cache_usable() && !keys_cache_changed_here(key_id))
	{
		int			part = partition_of(key_id);
		KeyCacheTable *t = partition_table(part);

		LWLockAcquire(&shared->locks[part].lock, LW_EXCLUSIVE);
		if (pg_atomic_read_u64(&shared->ring_reserved) == mark)
		{
			KeyCacheEntry *se = keycache_entry(t, keycache_insert(t, key_space, key_id));

			memcpy(se, e, sizeof(KeyCacheEntry));
			se->referenced = 1;
		}
		LWLockRelease(&shared->locks[part].lock);
	}
	return key;
}

/* ------------------------------------------------------------------------
 * Changes: the trigger on privacy.data_keys, and the end of transactions
 * ------------------------------------------------------------------------
 */
static void
note_change(Oid relid, uint32 key_id, bool all)
{
	changed_space = space_of(relid);
	if (all || nchanged >= KEY_CHANGES_PER_XACT)
		changed_all = true;
	else
		changed_ids[nchanged++] = key_id;
	last_change_subid = GetCurrentSubTransactionId();
	if (shared != NULL && MyProc != NULL && MyProc->pgprocno < shared->nprocs)
		pg_atomic_write_u32(&shared->changed_by[MyProc->pgprocno], 1);
	/* this backend reads the key from the table from now on */
	if (local_entries != NULL)
	{
		if (all)
			local_clear();
		else
			local_remove(changed_space, key_id);
	}
	keys_generation++;
}

static void
forget_changes(void)
{
	nchanged = 0;
	changed_all = false;
	last_change_subid = InvalidSubTransactionId;
	if (shared != NULL && MyProc != NULL && MyProc->pgprocno < shared->nprocs)
		pg_atomic_write_u32(&shared->changed_by[MyProc->pgprocno], 0);
}

static bool
column_differs(HeapTuple a, HeapTuple b, TupleDesc desc, const char *name)
{
	int			att = SPI_fnumber(desc, name);
	bool		anull;
	bool		bnull;
	Datum		ad;
	Datum		bd;
	Form_pg_attribute attr;

	if (att <= 0)
		return true;
	attr = TupleDescAttr(desc, att - 1);
	ad = heap_getattr(a, att, desc, &anull);
	bd = heap_getattr(b, att, desc, &bnull);
	if (anull || bnull)
		return anull != bnull;
	return !datumIsEqual(ad, bd, attr->attbyval, attr->attlen);
}

/*
 * AFTER UPDATE OR DELETE row trigger (and TRUNCATE statement trigger) on
 * privacy.data_keys.  A rewrap by a master-key rotation changes no key and
 * invalidates nothing; anything else about a key (its state, its owner) is
 * a change every backend must see.  The relcache invalidation is for hot
 * standbys, which replay it with the commit (see the file's comment); it
 * names the key table's TOAST table, so that no plan is made again.
 */
PG_FUNCTION_INFO_V1(privacy_data_keys_changed);
Datum
privacy_data_keys_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo) || TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("privacy_internal.data_keys_changed() must be called as an AFTER trigger")));
	CacheInvalidateRelcacheByRelid(OidIsValid(trigdata->tg_relation->rd_rel->reltoastrelid)
								   ? trigdata->tg_relation->rd_rel->reltoastrelid
								   : RelationGetRelid(trigdata->tg_relation));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		note_change(RelationGetRelid(trigdata->tg_relation), 0, true);
		return PointerGetDatum(NULL);
	}
	desc = RelationGetDescr(trigdata->tg_relation);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "id") &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "state") &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "scope") &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "category") &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "name") &&
		!column_differs(trigdata->tg_trigtuple, trigdata->tg_newtuple, desc, "subject_hash"))
	{
		bool		oldnull;
		bool		newnull;

		(void) heap_getattr(trigdata->tg_trigtuple, SPI_fnumber(desc, "wrapped_key"), desc, &oldnull);
		(void) heap_getattr(trigdata->tg_newtuple, SPI_fnumber(desc, "wrapped_key"), desc, &newnull);
		if (!oldnull && !newnull)
			return PointerGetDatum(NULL);	/* rewrapped: the same key */
	}
	{
		bool		isnull;
		Datum		id = heap_getattr(trigdata->tg_trigtuple, SPI_fnumber(desc, "id"), desc, &isnull);

		note_change(RelationGetRelid(trigdata->tg_relation), isnull ? 0 : (uint32) DatumGetInt32(id), isnull);
	}
	return PointerGetDatum(NULL);
}

static void
keys_cache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (nchanged > 0 || changed_all)
				publish(changed_space, changed_ids, nchanged, changed_all);
			forget_changes();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* what this backend read of its own uncommitted changes is void */
			if (nchanged > 0 || changed_all)
				keys_cache_forget_local();
			forget_changes();
			break;
		case XACT_EVENT_PREPARE:
			if ((nchanged > 0 || changed_all) && shared != NULL)
			{
				pg_atomic_write_u32(&shared->prepared_changes, 1);
				keys_cache_forget_local();
			}
			forget_changes();
			break;
		default:
			break;
	}
}

static void
keys_cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	/* changes rolled back: forget what was read of them (they are still published at commit) */
	if (event == SUBXACT_EVENT_ABORT_SUB && last_change_subid != InvalidSubTransactionId &&
		last_change_subid >= mySubid)
		keys_cache_forget_local();
}

static void
keys_cache_relcache_callback(Datum arg, Oid relid)
{
	/*
	 * Only acted upon on a hot standby (keys_cache_sync).  A change of the
	 * key table itself (VACUUM FULL gives it a new TOAST table) has the
	 * signal looked up again.
	 */
	if (relid == InvalidOid || (OidIsValid(data_keys_relid) && relid == data_keys_relid))
	{
		standby_reset_pending = true;
		data_keys_relid_generation = 0;
	}
	else if (OidIsValid(data_keys_toast_relid) && relid == data_keys_toast_relid)
		standby_reset_pending = true;
}

/*
 * COMMIT PREPARED runs no commit callback for the prepared transaction:
 * once any prepared transaction changed keys, each COMMIT PREPARED empties
 * the caches.
 */
static void
keys_cache_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						   ProcessUtilityContext context, ParamListInfo params,
						   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		commit_prepared = IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED;

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (commit_prepared && shared != NULL && pg_atomic_read_u32(&shared->prepared_changes) != 0)
		publish(0, NULL, 0, true);
}

void
keys_cache_init(void)
{
	map_shared_tables();
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = keys_cache_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = keys_cache_shmem_startup;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = keys_cache_process_utility;
	RegisterXactCallback(keys_cache_xact_callback, NULL);
	RegisterSubXactCallback(keys_cache_subxact_callback, NULL);
	catalog_on_relcache(keys_cache_relcache_callback);
}

/* ------------------------------------------------------------------------
 * privacy.key_cache_status(): what the caches hold and cost
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(privacy_key_cache_status);
Datum
privacy_key_cache_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[8];
	bool		nulls[8];

	InitMaterializedSRF(fcinfo, 0);
	keys_cache_sync();

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum("backend");
	values[1] = Int64GetDatum((int64) local_mask + 1);
	values[2] = Int64GetDatum(local_used);
	values[3] = Int64GetDatum(local_hits);
	values[4] = Int64GetDatum(local_misses);
	values[5] = Int64GetDatum(local_evictions);
	values[6] = Int64GetDatum(((int64) local_mask + 1) * sizeof(KeyCacheEntry));
	values[7] = BoolGetDatum(true);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	values[0] = CStringGetTextDatum("shared");
	if (shared_cache_usable())
	{
		int64		used = 0;
		int64		evictions = 0;
		int			i;

		for (i = 0; i < shared->nparts; i++)
		{
			LWLockAcquire(&shared->locks[i].lock, LW_SHARED);
			used += partition_table(i)->nused;
			evictions += partition_table(i)->evictions;
			LWLockRelease(&shared->locks[i].lock);
		}
		values[1] = Int64GetDatum((int64) shared->nparts * shared->slots_per_part);
		values[2] = Int64GetDatum(used);
		values[5] = Int64GetDatum(evictions);
		values[6] = Int64GetDatum((int64) shared_size() + (int64) shared_tables_bytes);
		values[7] = BoolGetDatum(shared->tables_locked);
	}
	else
	{
		values[1] = Int64GetDatum(0);
		values[2] = Int64GetDatum(0);
		values[5] = Int64GetDatum(0);
		values[6] = Int64GetDatum(0);
		values[7] = BoolGetDatum(false);
	}
	values[3] = Int64GetDatum(shared_hits);
	values[4] = Int64GetDatum(shared_misses);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
