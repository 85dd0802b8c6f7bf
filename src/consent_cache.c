/*
 * consent_cache.c — the consent check of protected tables.
 *
 * The policies of a protected table call privacy_internal.visible(subject)
 * once per row: true when the subject's consent state allows the declared
 * purpose (a consent-based purpose needs a granted consent; any other legal
 * basis is allowed unless the subject objected).  The function answers from
 * privacy.consent_state read with the statement's snapshot, never by planning
 * a query: a state it has not seen yet is looked up with one index probe of
 * the table's primary key, and when a statement needs many, the purpose's
 * whole state is loaded in one index scan.  What it reads is cached per
 * backend across statements, and each statement first learns which consent
 * changes its snapshot can see.
 *
 * The protocol (doc/internals.md proves it):
 *   - every change of consent_state (a row trigger, enabled ALWAYS, and a
 *     TRUNCATE trigger) is noted by the changing backend, which also drops
 *     its own cached answer at once and stops caching until its transaction
 *     ends;
 *   - before its commit record (PRE_COMMIT, PRE_PREPARE) the transaction
 *     appends (its top-level xid, purpose, subject) to a ring in shared
 *     memory: so every change that any snapshot can see is in the ring
 *     before that snapshot is taken;
 *   - a statement whose snapshot is not older than the last one the cache
 *     was synchronised with reads the ring entries it has not seen; an
 *     entry whose xid the snapshot still sees as running stays pending, one
 *     that committed drops the cached answers it names, one that aborted is
 *     forgotten; pending entries are checked again by later statements;
 *   - a snapshot older than the cache's (a cursor opened earlier), one that
 *     carries no completion count (parallel workers, imported snapshots),
 *     a hot standby (whose changes arrive by WAL replay, without triggers)
 *     and a transaction that changed consent itself do not use the cache:
 *     they read with their own snapshot into a cache for that statement
 *     only;
 *   - a ring that wrapped past what a backend had read, or a pending list
 *     grown too long, empties the cache before the next newer snapshot.
 */
#include "privacy.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

int			privacy_consent_cache_size = 200000;
int			privacy_consent_changes = 65536;

/* A statement loads the purpose's whole state after this many probes. */
#define VISIBLE_BULK_AFTER 512
/* Pending ring entries a backend keeps before it gives up and resets. */
#define VISIBLE_MAX_PENDING 65536
#define VISIBLE_MAX_PURPOSES 16

/* consent_state's columns, in the order the install script creates them */
#define CS_ATT_SUBJECT 1
#define CS_ATT_PURPOSE 2
#define CS_ATT_STATE 3

typedef enum ConsentStateKind
{
	CONSENT_NONE = 0,			/* no row: no event for this subject and purpose */
	CONSENT_GRANTED,
	CONSENT_WITHDRAWN,
	CONSENT_OBJECTED,
	CONSENT_UNKNOWN				/* changed since the purpose was loaded whole */
} ConsentStateKind;

/* ------------------------------------------------------------------------
 * The ring of changes in shared memory.
 * ------------------------------------------------------------------------
 */
typedef struct ConsentChange
{
	pg_atomic_uint64 stamp;		/* seq + 1, written last; 0 = never written */
	Oid			dbid;
	TransactionId xid;
	uint32		purpose;		/* hash of the purpose's name; 0 = every purpose */
	bool		is_int;
	uint64		subject;		/* key of the subject, unless all */
	bool		all;			/* every subject (TRUNCATE, many changes) */
} ConsentChange;

typedef struct ConsentRing
{
	slock_t		mutex;			/* serialises writers */
	pg_atomic_uint64 next;		/* seq of the next entry */
	int			size;
	ConsentChange changes[FLEXIBLE_ARRAY_MEMBER];
} ConsentRing;

static ConsentRing *ring = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

static Size
ring_size(void)
{
	return add_size(offsetof(ConsentRing, changes),
					mul_size(privacy_consent_changes, sizeof(ConsentChange)));
}

static void
consent_cache_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(ring_size());
}

static void
consent_cache_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ring = ShmemInitStruct("privacy consent changes", ring_size(), &found);
	if (!found)
	{
		int			i;

		SpinLockInit(&ring->mutex);
		pg_atomic_init_u64(&ring->next, 0);
		ring->size = privacy_consent_changes;
		for (i = 0; i < ring->size; i++)
			pg_atomic_init_u64(&ring->changes[i].stamp, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ------------------------------------------------------------------------
 * Keys.  A subject is the text the consent functions were given; the
 * canonical form of an integer is kept as that integer, so that a bigint
 * subject column finds its state without printing every value.
 * ------------------------------------------------------------------------
 */
typedef struct SubjectKey
{
	uint64		value;			/* the integer, or a hash of the text */
	bool		is_int;
} SubjectKey;

/* Parse the canonical text of an int8 (what int8out prints), or fail. */
bool
consent_parse_int8(const char *s, int len, int64 *out)
{
	int			i = 0;
	bool		neg = false;
	uint64		v = 0;

	if (len <= 0 || len > 20)
		return false;
	if (s[0] == '-')
	{
		neg = true;
		i = 1;
		if (len == 1)
			return false;
	}
	if (s[i] == '0' && (len - i > 1 || neg))
		return false;
	for (; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (PG_UINT64_MAX - (s[i] - '0')) / 10)
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (!neg && v > (uint64) PG_INT64_MAX)
		return false;
	if (neg && v > (uint64) PG_INT64_MAX + 1)
		return false;
	*out = neg ? (int64) (0 - v) : (int64) v;
	return true;
}

static SubjectKey
key_of_text(const char *s, int len)
{
	SubjectKey	k;
	int64		v;

	if (consent_parse_int8(s, len, &v))
	{
		k.value = (uint64) v;
		k.is_int = true;
	}
	else
	{
		k.value = hash_bytes_extended((const unsigned char *) s, len, 0x70726976);
		k.is_int = false;
	}
	return k;
}

static uint32
purpose_hash(const char *name)
{
	uint32		h = hash_bytes((const unsigned char *) name, strlen(name));

	return h == 0 ? 1 : h;		/* 0 means every purpose in the ring */
}

/* ------------------------------------------------------------------------
 * The backend's cache.
 * ------------------------------------------------------------------------
 */
/* no padding: the whole struct is hashed and compared as bytes */
typedef struct CacheKey
{
	uint64		subject;
	uint32		purpose;
	uint32		is_int;
} CacheKey;

typedef struct CacheEntry
{
	CacheKey	key;
	uint8		state;			/* ConsentStateKind */
	char	   *text;			/* the subject, for keys that are hashes */
} CacheEntry;

typedef struct PurposeSlot
{
	char		name[NAMEDATALEN];
	uint32		hash;
	bool		consent_based;
	uint64		generation;		/* of the catalog when consent_based was read */
	bool		complete;		/* every row of this purpose is cached */
} PurposeSlot;

typedef struct PendingChange
{
	TransactionId xid;
	uint32		purpose;
	SubjectKey	subject;
	bool		all;
} PendingChange;

/* One cache across statements, one for the statement that may not use it. */
typedef struct VisCache
{
	HTAB	   *entries;
	MemoryContext cxt;			/* entries and the texts of their subjects */
	PurposeSlot slots[VISIBLE_MAX_PURPOSES];
	int			nslots;
} VisCache;

static VisCache shared_cache;	/* "shared" across statements, not backends */
static VisCache statement_cache;

/* the statement the last call belonged to */
static Snapshot last_snapshot = NULL;
static uint64 last_serial = 0;
static TransactionId last_xmax = InvalidTransactionId;
static uint32 last_xcnt = 0;
static CommandId last_curcid = 0;
static Oid	last_role = InvalidOid;
static const char *last_purpose = NULL;
static uint64 last_generation = 0;
static uint64 last_xact_changes = 0;

/* what the current statement uses */
static VisCache *current = NULL;
static PurposeSlot *current_slot = NULL;
static int	statement_probes = 0;

/* synchronisation with the ring */
static uint64 ring_seen = 0;	/* next ring seq to read */
static bool ring_started = false;
/* the snapshot the cache was last synchronised with: its xmax and running xids */
static bool synced = false;
static TransactionId synced_xmax = InvalidTransactionId;
static TransactionId *synced_xip = NULL;
static uint32 synced_xcnt = 0;
static uint32 synced_xip_room = 0;
static bool reset_when_newer = false;
static PendingChange *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;

/* this transaction's own changes */
static PendingChange *mine = NULL;
static int	nmine = 0;
static int	maxmine = 0;
static bool mine_all = false;
static uint64 xact_changes = 0;	/* changes made by this backend, ever */
static bool changed_in_xact = false;

/* consent_state and its primary key, per catalog generation */
static Oid	state_relid = InvalidOid;
static Oid	shared_relid = InvalidOid;	/* the consent_state the shared cache read */
static Oid	state_pkey = InvalidOid;
static uint64 state_generation = 0;

static void
cache_reset(VisCache *c)
{
	HASHCTL		ctl;

	if (c->entries != NULL)
		hash_destroy(c->entries);
	if (c->cxt == NULL)
		c->cxt = c == &shared_cache ?
			AllocSetContextCreate(TopMemoryContext, "privacy consent cache", ALLOCSET_DEFAULT_SIZES) :
			AllocSetContextCreate(TopMemoryContext, "privacy consent statement cache", ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(c->cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(CacheKey);
	ctl.entrysize = sizeof(CacheEntry);
	ctl.hcxt = c->cxt;
	c->entries = hash_create(c == &shared_cache ? "privacy consent cache" : "privacy consent statement cache",
							 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	c->nslots = 0;
	if (current == c)
		current_slot = NULL;	/* the next call starts the statement again */
}

static CacheKey
cache_key(uint32 purpose, SubjectKey s)
{
	CacheKey	k;

	memset(&k, 0, sizeof(k));
	k.subject = s.value;
	k.purpose = purpose;
	k.is_int = s.is_int ? 1 : 0;
	return k;
}

/*
 * A change some transaction made: the answer cached for it is gone.  A
 * purpose loaded whole keeps a marker, so that the subject is probed again
 * rather than taken as having no row.
 */
static void
cache_forget(VisCache *c, uint32 purpose, SubjectKey s, bool all)
{
	int			i;

	if (c->entries == NULL)
		return;
	if (all)
	{
		cache_reset(c);
		return;
	}
	for (i = 0; i < c->nslots; i++)
	{
		if (purpose != 0 && c->slots[i].hash != purpose)
			continue;
		{
			CacheKey	k = cache_key(c->slots[i].hash, s);

			if (c->slots[i].complete)
			{
				bool		found;
				CacheEntry *e = hash_search(c->entries, &k, HASH_ENTER, &found);

				if (!found)
					e->text = NULL;
				e->state = CONSENT_UNKNOWN;
			}
			else
				hash_search(c->entries, &k, HASH_REMOVE, NULL);
		}
	}
}

/* ------------------------------------------------------------------------
 * Reading consent_state with the statement's snapshot.
 * ------------------------------------------------------------------------
 */
static void
state_relation(void)
{
	if (state_generation == catalog_generation && OidIsValid(state_relid))
		return;
	state_relid = catalog_relid("consent_state");
	state_pkey = get_relname_relid("consent_state_pkey", catalog_namespace());
	if (!OidIsValid(state_pkey))
		elog(ERROR, "index privacy.consent_state_pkey is missing");
	state_generation = catalog_generation;
}

static ConsentStateKind
state_of_text(const char *s, int len)
{
	if (len == 7 && memcmp(s, "granted", 7) == 0)
		return CONSENT_GRANTED;
	if (len == 8 && memcmp(s, "objected", 8) == 0)
		return CONSENT_OBJECTED;
	if (len == 9 && memcmp(s, "withdrawn", 9) == 0)
		return CONSENT_WITHDRAWN;
	return CONSENT_NONE;
}

/*
 * Keep an answer.  Returns false when it was not kept: the cache is full,
 * or another subject has the same hash (then neither is kept).
 */
static bool
cache_store(VisCache *c, uint32 purpose, SubjectKey k, const char *text, int len, ConsentStateKind state)
{
	CacheKey	ck = cache_key(purpose, k);
	CacheEntry *e;
	bool		found;

	if (c == &shared_cache && hash_get_num_entries(c->entries) >= privacy_consent_cache_size)
		return false;			/* full: the answer is used once, not kept */
	e = hash_search(c->entries, &ck, HASH_ENTER, &found);
	if (found && e->text != NULL && !k.is_int &&
		(strlen(e->text) != (size_t) len || memcmp(e->text, text, len) != 0))
	{
		hash_search(c->entries, &ck, HASH_REMOVE, NULL);
		return false;
	}
	e->state = (uint8) state;
	if (!found)
	{
		e->text = NULL;
		if (!k.is_int)
		{
			e->text = MemoryContextAlloc(c->cxt, len + 1);
			memcpy(e->text, text, len);
			e->text[len] = '\0';
		}
	}
	return true;
}

/*
 * Scan consent_state's primary key (purpose, subject) with the statement's
 * snapshot: the one row of a subject, or (subject NULL) every row of the
 * purpose, stored in the cache.  Returns the subject's state, or the number
 * of rows read in *nrows.
 */
static ConsentStateKind
state_scan(VisCache *c, PurposeSlot *slot, const char *subject, int sublen, int64 *nrows, bool *complete)
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *tslot;
	ScanKeyData keys[2];
	int			nkeys = subject ? 2 : 1;
	ConsentStateKind found_state = CONSENT_NONE;
	int64		n = 0;
	long		room = c == &shared_cache ? privacy_consent_cache_size - hash_get_num_entries(c->entries) : LONG_MAX;

	state_relation();
	rel = table_open(state_relid, AccessShareLock);
	idx = index_open(state_pkey, AccessShareLock);
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(slot->name));
	if (subject)
		ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
							   idx->rd_indcollation[1], F_TEXTEQ,
							   PointerGetDatum(cstring_to_text_with_len(subject, sublen)));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	tslot = table_slot_create(rel, NULL);
	*complete = true;
	while (index_getnext_slot(scan, ForwardScanDirection, tslot))
	{
		bool		isnull;
		text	   *st = DatumGetTextPP(slot_getattr(tslot, CS_ATT_STATE, &isnull));
		ConsentStateKind kind = state_of_text(VARDATA_ANY(st), VARSIZE_ANY_EXHDR(st));

		if (subject)
		{
			found_state = kind;
			break;
		}
		if (n >= room)
		{
			*complete = false;
			break;
		}
		{
			text	   *sub = DatumGetTextPP(slot_getattr(tslot, CS_ATT_SUBJECT, &isnull));

			if (!cache_store(c, slot->hash, key_of_text(VARDATA_ANY(sub), VARSIZE_ANY_EXHDR(sub)),
							 VARDATA_ANY(sub), VARSIZE_ANY_EXHDR(sub), kind))
				*complete = false;
		}
		n++;
	}
	ExecDropSingleTupleTableSlot(tslot);
	index_endscan(scan);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	if (nrows)
		*nrows = n;
	return found_state;
}

/* ------------------------------------------------------------------------
 * Once per statement: the purpose check, the purpose's slot, and which
 * cache this statement may use.
 * ------------------------------------------------------------------------
 */
static bool
purpose_is_consent_based(const char *purpose)
{
	static const char *query =
		"SELECT legal_basis OPERATOR(pg_catalog.=) 'consent' FROM " PRIVACY_SCHEMA ".purposes "
		" WHERE name OPERATOR(pg_catalog.=) $1";
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	CatalogUserState st;
	bool		isnull;
	bool		required = true;

	values[0] = CStringGetTextDatum(purpose);
	catalog_become_owner(&st);
	if (SPI_execute_with_args(query, 1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "purpose lookup failed");
	if (SPI_processed > 0)
		required = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	catalog_restore_user(&st);
	return required;
}

static PurposeSlot *
slot_for(VisCache *c, const char *purpose)
{
	int			i;
	PurposeSlot *s;

	for (i = 0; i < c->nslots; i++)
		if (strcmp(c->slots[i].name, purpose) == 0)
			return &c->slots[i];
	if (c->nslots == VISIBLE_MAX_PURPOSES)
		cache_reset(c);
	s = &c->slots[c->nslots];
	memset(s, 0, sizeof(*s));
	strlcpy(s->name, purpose, NAMEDATALEN);
	s->hash = purpose_hash(purpose);
	c->nslots++;
	return s;
}

static void
add_pending(const ConsentChange *ch)
{
	if (npending == maxpending)
	{
		maxpending = maxpending ? maxpending * 2 : 256;
		pending = pending ? repalloc(pending, maxpending * sizeof(PendingChange))
			: MemoryContextAlloc(TopMemoryContext, maxpending * sizeof(PendingChange));
	}
	pending[npending].xid = ch->xid;
	pending[npending].purpose = ch->purpose;
	pending[npending].subject.value = ch->subject;
	pending[npending].subject.is_int = ch->is_int;
	pending[npending].all = ch->all;
	npending++;
}

/* Everything is forgotten, and nothing pending needs to be remembered. */
static void
lose_track(void)
{
	npending = 0;
	reset_when_newer = true;
}

/*
 * Read the ring entries this backend has not seen, then settle every
 * pending entry that the snapshot decides: committed and visible to it, or
 * aborted.
 */
static void
sync_with_ring(Snapshot snap)
{
	uint64		next;
	int			i,
				kept;

	if (!ring_started)
	{
		/*
		 * A new backend reads what the ring still holds: its cache is empty,
		 * but a transaction that appended its changes and is still
		 * committing must stay pending.
		 */
		uint64		now = pg_atomic_read_u64(&ring->next);

		ring_seen = now > (uint64) ring->size ? now - ring->size : 0;
		ring_started = true;
	}
	next = pg_atomic_read_u64(&ring->next);
	pg_read_barrier();
	if (next - ring_seen > (uint64) ring->size)
	{
		lose_track();
		ring_seen = next;
	}
	for (; ring_seen < next; ring_seen++)
	{
		ConsentChange *slot = &ring->changes[ring_seen % ring->size];
		ConsentChange copy;
		uint64		before = pg_atomic_read_u64(&slot->stamp);

		pg_read_barrier();
		copy.dbid = slot->dbid;
		copy.xid = slot->xid;
		copy.purpose = slot->purpose;
		copy.subject = slot->subject;
		copy.is_int = slot->is_int;
		copy.all = slot->all;
		pg_read_barrier();
		if (before != ring_seen + 1 || pg_atomic_read_u64(&slot->stamp) != before)
		{
			/* overwritten while we read (or not yet written): start over */
			lose_track();
			ring_seen = next;
			break;
		}
		if (copy.dbid != MyDatabaseId)
			continue;
		if (npending >= VISIBLE_MAX_PENDING)
		{
			lose_track();
			continue;
		}
		add_pending(&copy);
	}
	if (reset_when_newer)
	{
		cache_reset(&shared_cache);
		reset_when_newer = false;
		npending = 0;
		return;
	}
	kept = 0;
	for (i = 0; i < npending; i++)
	{
		PendingChange *p = &pending[i];

		if (XidInMVCCSnapshot(p->xid, snap))
		{
			pending[kept++] = *p;	/* not yet visible: decide later */
			continue;
		}
		if (TransactionIdDidCommit(p->xid))
			cache_forget(&shared_cache, p->purpose, p->subject, p->all);
	}
	npending = kept;
}

/*
 * Does snap see complete every transaction the snapshot the cache was last
 * synchronised with saw complete?  Snapshots a backend takes one after the
 * other do (xmax only grows, and below an unchanged xmax the running set
 * only shrinks); an older one (a cursor's, an imported one) does not, and
 * must not read answers that may include changes it cannot see.
 */
static bool
snapshot_not_older(Snapshot snap)
{
	uint32		i,
				j;

	if (!synced)
		return true;
	if (TransactionIdFollows(snap->xmax, synced_xmax))
		return true;
	if (TransactionIdPrecedes(snap->xmax, synced_xmax))
		return false;
	for (i = 0; i < snap->xcnt; i++)
	{
		for (j = 0; j < synced_xcnt; j++)
			if (TransactionIdEquals(snap->xip[i], synced_xip[j]))
				break;
		if (j == synced_xcnt)
			return false;		/* running for snap, complete for the cache */
	}
	return true;
}

static void
remember_sync(Snapshot snap)
{
	if (snap->xcnt > synced_xip_room)
	{
		synced_xip_room = Max(snap->xcnt, 64);
		synced_xip = synced_xip ? repalloc(synced_xip, synced_xip_room * sizeof(TransactionId))
			: MemoryContextAlloc(TopMemoryContext, synced_xip_room * sizeof(TransactionId));
	}
	if (snap->xcnt > 0)
		memcpy(synced_xip, snap->xip, snap->xcnt * sizeof(TransactionId));
	synced_xcnt = snap->xcnt;
	synced_xmax = snap->xmax;
	synced = true;
}

/*
 * The first call of a statement (a new snapshot, command, role, purpose or
 * catalog generation) does the per-statement work; later calls reuse it.
 */
static void
statement_begin(void)
{
	Snapshot	snap = GetActiveSnapshot();
	bool		use_shared;

	consent_require_purpose(NULL);

	use_shared = privacy_consent_cache_size > 0 && ring != NULL &&
		!changed_in_xact && !RecoveryInProgress() &&
		snap->snapshot_type == SNAPSHOT_MVCC && !snap->takenDuringRecovery &&
		snapshot_not_older(snap);
	if (use_shared)
	{
		/* a consent_state created anew (the extension dropped and created
		 * again, a restore) has rows no trigger told us about */
		state_relation();
		if (shared_cache.entries == NULL || shared_relid != state_relid)
		{
			cache_reset(&shared_cache);
			shared_relid = state_relid;
		}
		sync_with_ring(snap);
		remember_sync(snap);
		current = &shared_cache;
	}
	else
	{
		cache_reset(&statement_cache);
		current = &statement_cache;
	}
	current_slot = slot_for(current, privacy_purpose);
	/* a purpose dropped and created again may have another legal basis */
	if (current_slot->generation != catalog_generation)
	{
		current_slot->consent_based = purpose_is_consent_based(privacy_purpose);
		current_slot->generation = catalog_generation;
	}
	statement_probes = 0;

	last_snapshot = snap;
	last_serial = consent_statement_serial;
	last_xmax = snap->xmax;
	last_xcnt = snap->xcnt;
	last_curcid = snap->curcid;
	last_role = GetOuterUserId();
	last_purpose = privacy_purpose;
	last_generation = catalog_generation;
	last_xact_changes = xact_changes;
}

static inline bool
same_statement(void)
{
	Snapshot	snap;

	if (current == NULL || current_slot == NULL || !ActiveSnapshotSet())
		return false;
	snap = GetActiveSnapshot();
	return consent_statement_serial == last_serial && snap == last_snapshot &&
		snap->xmax == last_xmax && snap->xcnt == last_xcnt &&
		snap->curcid == last_curcid && privacy_purpose == last_purpose &&
		GetOuterUserId() == last_role && catalog_generation == last_generation &&
		xact_changes == last_xact_changes;
}

static bool
allows(PurposeSlot *slot, ConsentStateKind state)
{
	if (slot->consent_based)
		return state == CONSENT_GRANTED;
	return state != CONSENT_OBJECTED;
}

/*
 * The answer for one subject.  text is the subject as the consent functions
 * were given it; for an integer subject it may be NULL until a probe needs it.
 */
static bool
visible(SubjectKey k, const char *text, int len, int64 intval)
{
	CacheKey	ck;
	CacheEntry *e;
	ConsentStateKind state;
	char		buf[MAXINT8LEN + 1];

	catalog_accept_invalidations();
	if (!same_statement())
	{
		if (!ActiveSnapshotSet())
		{
			/* called outside a query: take one (an error pops it on abort) */
			bool		result;

			PushActiveSnapshot(GetTransactionSnapshot());
			result = visible(k, text, len, intval);
			PopActiveSnapshot();
			return result;
		}
		statement_begin();
	}

	ck = cache_key(current_slot->hash, k);
	e = hash_search(current->entries, &ck, HASH_FIND, NULL);
	if (e != NULL && e->state != CONSENT_UNKNOWN &&
		(k.is_int || e->text == NULL || (strlen(e->text) == (size_t) len && memcmp(e->text, text, len) == 0)))
		return allows(current_slot, (ConsentStateKind) e->state);
	if (e == NULL && current_slot->complete)
		return allows(current_slot, CONSENT_NONE);

	if (text == NULL)
	{
		len = pg_lltoa(intval, buf);
		text = buf;
	}
	/* many probes in one statement: one scan of the purpose is cheaper */
	if (++statement_probes == VISIBLE_BULK_AFTER && !current_slot->complete)
	{
		int64		n;
		bool		complete;

		(void) state_scan(current, current_slot, NULL, 0, &n, &complete);
		current_slot->complete = complete;
		e = hash_search(current->entries, &ck, HASH_FIND, NULL);
		if (complete && (e == NULL || e->state != CONSENT_UNKNOWN))
			return allows(current_slot, e ? (ConsentStateKind) e->state : CONSENT_NONE);
	}
	{
		int64		n;
		bool		complete;

		state = state_scan(current, current_slot, text, len, &n, &complete);
	}
	cache_store(current, current_slot->hash, k, text, len, state);
	return allows(current_slot, state);
}

/*
 * A row without a subject has no consent state: it is shown for purposes
 * that need no consent, as a row of a subject who never objected is.
 */
static bool
visible_without_subject(void)
{
	bool		consent_based;

	consent_require_purpose(NULL);
	if (same_statement())
		return allows(current_slot, CONSENT_NONE);
	consent_based = purpose_is_consent_based(privacy_purpose);
	return !consent_based;
}

PG_FUNCTION_INFO_V1(privacy_visible_int8);
Datum
privacy_visible_int8(PG_FUNCTION_ARGS)
{
	int64		v;
	SubjectKey	k;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(visible_without_subject());
	v = PG_GETARG_INT64(0);
	k.value = (uint64) v;
	k.is_int = true;
	PG_RETURN_BOOL(visible(k, NULL, 0, v));
}

PG_FUNCTION_INFO_V1(privacy_visible_text);
Datum
privacy_visible_text(PG_FUNCTION_ARGS)
{
	text	   *t;
	const char *s;
	int			len;
	SubjectKey	k;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(visible_without_subject());
	t = PG_GETARG_TEXT_PP(0);
	s = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	k = key_of_text(s, len);

	PG_RETURN_BOOL(visible(k, k.is_int ? NULL : s, len, (int64) k.value));
}

PG_FUNCTION_INFO_V1(privacy_visible_uuid);
Datum
privacy_visible_uuid(PG_FUNCTION_ARGS)
{
	char	   *s;
	int			len;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(visible_without_subject());
	s = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	len = strlen(s);

	PG_RETURN_BOOL(visible(key_of_text(s, len), s, len, 0));
}

/* ------------------------------------------------------------------------
 * Writers: the changes of this transaction.
 * ------------------------------------------------------------------------
 */
static void
note_change(const char *purpose, const char *subject, int len, bool all)
{
	PendingChange *c;
	SubjectKey	k = {0, false};
	uint32		ph = purpose ? purpose_hash(purpose) : 0;

	if (!all)
		k = key_of_text(subject, len);
	/* this backend's own answers change now, for its next statement */
	cache_forget(&shared_cache, ph, k, all);
	changed_in_xact = true;
	xact_changes++;
	if (all || nmine >= privacy_consent_changes / 4)
	{
		mine_all = true;
		return;
	}
	/*
	 * The same subject and purpose again (an event writes its state row,
	 * a trigger sees the old and the new version): one ring entry drops
	 * every answer for it, so more would only make each reader settle the
	 * same change again.
	 */
	if (mine_all || (nmine > 0 && mine[nmine - 1].purpose == ph &&
					 mine[nmine - 1].subject.value == k.value &&
					 mine[nmine - 1].subject.is_int == k.is_int))
		return;
	if (nmine == maxmine)
	{
		maxmine = maxmine ? maxmine * 2 : 64;
		mine = mine ? repalloc(mine, maxmine * sizeof(PendingChange))
			: MemoryContextAlloc(TopMemoryContext, maxmine * sizeof(PendingChange));
	}
	c = &mine[nmine++];
	c->purpose = ph;
	c->subject = k;
	c->all = false;
}

static void
note_row(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		sub = heap_getattr(tup, CS_ATT_SUBJECT, desc, &isnull);
	Datum		pur;
	text	   *st;
	char	   *p;

	if (isnull)
		return;
	pur = heap_getattr(tup, CS_ATT_PURPOSE, desc, &isnull);
	if (isnull)
		return;
	st = DatumGetTextPP(sub);
	p = TextDatumGetCString(pur);
	note_change(p, VARDATA_ANY(st), VARSIZE_ANY_EXHDR(st), false);
}

/* AFTER INSERT OR UPDATE OR DELETE (rows) and AFTER TRUNCATE on consent_state. */
PG_FUNCTION_INFO_V1(privacy_consent_changed);
Datum
privacy_consent_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		elog(ERROR, "privacy_internal.consent_changed() must be called as an AFTER trigger");
	desc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		note_change(NULL, NULL, 0, true);
	else
	{
		if (td->tg_trigtuple)
			note_row(td->tg_trigtuple, desc);
		if (TRIGGER_FIRED_BY_UPDATE(td->tg_event) && td->tg_newtuple)
			note_row(td->tg_newtuple, desc);
	}
	return PointerGetDatum(NULL);
}

/* Before the commit record: the changes enter the ring under our xid. */
static void
publish_changes(void)
{
	TransactionId xid = GetTopTransactionIdIfAny();
	int			i;
	int			n = mine_all ? 1 : nmine;

	if (!TransactionIdIsValid(xid) || ring == NULL || n == 0)
		return;
	SpinLockAcquire(&ring->mutex);
	for (i = 0; i < n; i++)
	{
		uint64		seq = pg_atomic_read_u64(&ring->next);
		ConsentChange *slot = &ring->changes[seq % ring->size];

		/* readers see a stamp that is not theirs and start over */
		pg_atomic_write_u64(&slot->stamp, 0);
		pg_write_barrier();
		slot->dbid = MyDatabaseId;
		slot->xid = xid;
		if (mine_all)
		{
			slot->purpose = 0;
			slot->subject = 0;
			slot->is_int = false;
			slot->all = true;
		}
		else
		{
			slot->purpose = mine[i].purpose;
			slot->subject = mine[i].subject.value;
			slot->is_int = mine[i].subject.is_int;
			slot->all = false;
		}
		pg_write_barrier();
		pg_atomic_write_u64(&slot->stamp, seq + 1);
		pg_write_barrier();
		pg_atomic_write_u64(&ring->next, seq + 1);
	}
	SpinLockRelease(&ring->mutex);
}

static void
forget_mine(void)
{
	nmine = 0;
	mine_all = false;
	changed_in_xact = false;
}

static void
consent_cache_xact_callback(XactEvent event, void *arg)
{
	if (!changed_in_xact)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			publish_changes();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* answers read after our own uncommitted changes are wrong now */
			if (shared_cache.entries != NULL)
				cache_reset(&shared_cache);
			forget_mine();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			forget_mine();
			break;
		default:
			break;
	}
}

void
consent_cache_init(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = consent_cache_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = consent_cache_shmem_startup;
	RegisterXactCallback(consent_cache_xact_callback, NULL);
}
