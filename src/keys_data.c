/*
 * keys_data.c — data keys: which key seals a value, creating keys, and
 * finding a key by its id.
 *
 * Random 32-byte keys, stored in privacy.data_keys only wrapped by the
 * master key (keys.c).  Scopes: one active key per category, one per
 * subject of protected tables, and internal keys the extension uses itself
 * (the subject hash, the blind index, the access log's chain).
 *
 * A protected table gives each new subject a key, so creating one must
 * cost what its cryptography costs: no query is planned for it, and no
 * round trip is made per key.  A new subject's key is drawn, wrapped and
 * used at once, and kept in a list of pending keys; the list is written
 * straight into privacy.data_keys' heap and indexes (write_key_rows, as
 * COPY writes a table: no plan, no executor) when it holds KEY_BATCH keys,
 * when the statement that created them ends, before any other statement of
 * the transaction starts, and before the transaction commits or prepares.
 * So the key is in the table, in the same transaction, before any value
 * sealed with it can be seen by anyone, and the transaction's own later
 * statements find it there.  Until then this backend finds a pending key
 * in the list.
 *
 * One active key per subject is what the table's unique index allows.  When
 * another session created a key for the same subject first (both looked,
 * neither found one), the batch's write fails on that index and is undone,
 * the batch is written again by an INSERT ... ON CONFLICT DO NOTHING that
 * skips ours, and ours is stored as retired instead: values were already
 * sealed with it, so it must be kept, and erasure destroys every key of a
 * subject.  Later values of that subject get the winner's key.
 *
 * Lookups (the active key of a subject, a key by its id) read the table's
 * indexes directly with a snapshot taken now (the latest committed state,
 * as catalog_become_owner reads the rest of the catalog), without SPI;
 * category and internal keys, looked up once per backend, go through SPI.
 */
#include "keys.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* New subjects' keys written to the table in one statement. */
#define KEY_BATCH 4096

/* ------------------------------------------------------------------------
 * The key table, seen from C
 * ------------------------------------------------------------------------
 */
typedef struct KeyTable
{
	uint64		generation;
	Oid			relid;
	Oid			pkey;			/* on id */
	Oid			active_subject; /* on subject_hash, active subject keys only */
	Oid			seq;
	AttrNumber	att_id;
	AttrNumber	att_scope;
	AttrNumber	att_category;
	AttrNumber	att_name;
	AttrNumber	att_subject_hash;
	AttrNumber	att_state;
	AttrNumber	att_wrapped_key;
	AttrNumber	att_wrapped_by;
	AttrNumber	att_created_at;
	AttrNumber	att_retired_at;
	AttrNumber	att_destroyed_at;
} KeyTable;

static KeyTable kt;

static Oid
relation_or_error(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "relation %s.%s is missing", PRIVACY_SCHEMA, name);
	return relid;
}

static AttrNumber
column_or_error(const char *name)
{
	AttrNumber	att = get_attnum(kt.relid, name);

	if (att == InvalidAttrNumber)
		elog(ERROR, "column %s of %s.data_keys is missing", name, PRIVACY_SCHEMA);
	return att;
}

static void
key_table(void)
{
	Oid			nsp;

	catalog_accept_invalidations();
	if (kt.generation == catalog_generation && OidIsValid(kt.relid))
		return;
	nsp = catalog_namespace();
	kt.relid = relation_or_error("data_keys", nsp);
	kt.pkey = relation_or_error("data_keys_pkey", nsp);
	kt.active_subject = relation_or_error("data_keys_active_subject", nsp);
	kt.seq = relation_or_error("data_key_id_seq", nsp);
	kt.att_id = column_or_error("id");
	kt.att_scope = column_or_error("scope");
	kt.att_category = column_or_error("category");
	kt.att_name = column_or_error("name");
	kt.att_subject_hash = column_or_error("subject_hash");
	kt.att_state = column_or_error("state");
	kt.att_wrapped_key = column_or_error("wrapped_key");
	kt.att_wrapped_by = column_or_error("wrapped_by");
	/* written only by write_key_rows, which checks for them */
	kt.att_created_at = get_attnum(kt.relid, "created_at");
	kt.att_retired_at = get_attnum(kt.relid, "retired_at");
	kt.att_destroyed_at = get_attnum(kt.relid, "destroyed_at");
	kt.generation = catalog_generation;
}

/*
 * The snapshot lookups read with: taken now, so that a key another session
 * committed after this transaction's snapshot is found (see
 * catalog_become_owner).  In parallel mode (a worker, and the leader while
 * it runs a parallel plan) GetLatestSnapshot is refused, and the
 * statement's snapshot is no substitute: in a REPEATABLE READ transaction
 * a key destroyed since it began would still open, and stay cached after
 * it.  A fresh catalog snapshot is allowed there (isolation spec
 * catalog_parallel).
 */
static Snapshot
lookup_snapshot(void)
{
	if (!IsInParallelMode())
		return RegisterSnapshot(GetLatestSnapshot());
	return RegisterSnapshot(GetCatalogSnapshot(InvalidOid));
}

static bool
text_is(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		n = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == n && memcmp(VARDATA_ANY(t), s, n) == 0;
}

static bytea *
hash_bytea(const unsigned char *hash)
{
	bytea	   *h = palloc(VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);

	SET_VARSIZE(h, VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
	memcpy(VARDATA(h), hash, PRIVACY_SUBJECT_HASH_BYTES);
	return h;
}

/* Locked memory where one key is unwrapped on its way into the caches */
static unsigned char *
key_scratch(void)
{
	static unsigned char *key = NULL;

	if (key == NULL && (key = sodium_malloc(PRIVACY_DATA_KEY_BYTES)) == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");
	return key;
}

static const unsigned char *cache_key_row(uint32 key_id, HeapTuple tup, TupleDesc desc, uint64 mark,
										  bool quiet, KeyCacheEntry **meta);

/*
 * The active key of a subject, found by probe_subject with its row in hand,
 * goes into the caches at once: the value it is looked up for is sealed
 * with it next, and would otherwise fetch the same row again through the
 * primary key (load_key).  Quietly: a key that cannot be unwrapped here (its
 * master key is not loaded) is left to load_key, which says why.
 */
static void
preload_subject_key(uint32 key_id, HeapTuple tup, TupleDesc desc, uint64 mark)
{
	KeyCacheEntry *meta;

	(void) keys_cache_get(key_id, &meta);
	if (meta == NULL)
		(void) cache_key_row(key_id, tup, desc, mark, true, &meta);
}

/* The id of the subject's active key in the table, or 0. */
static uint32
probe_subject(const unsigned char *hash)
{
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	uint32		key_id = 0;
	bytea	   *h = hash_bytea(hash);
	/* before the snapshot: see keys_cache_put */
	uint64		mark = keys_cache_change_mark();

	key_table();
	rel = table_open(kt.relid, AccessShareLock);
	ScanKeyInit(&skey, kt.att_subject_hash, BTEqualStrategyNumber, F_BYTEAEQ, PointerGetDatum(h));
	snap = lookup_snapshot();
	scan = systable_beginscan(rel, kt.active_subject, true, snap, 1, &skey);
	while (key_id == 0 && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		state = heap_getattr(tup, kt.att_state, desc, &isnull);
		Datum		scope = heap_getattr(tup, kt.att_scope, desc, &isnull);

		if (text_is(state, "active") && text_is(scope, "subject"))
		{
			key_id = (uint32) DatumGetInt32(heap_getattr(tup, kt.att_id, desc, &isnull));
			preload_subject_key(key_id, tup, desc, mark);
		}
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	pfree(h);
	return key_id;
}

/* ------------------------------------------------------------------------
 * Which key is active for a category or a subject: remembered per backend
 * (bounded), forgotten whenever any key changes (keys_generation).
 * ------------------------------------------------------------------------
 */
typedef struct ActiveKeyEntry
{
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];	/* 'c'+category id, or 's'+subject hash */
	uint32		key_id;
} ActiveKeyEntry;

/* subjects' keys (bounded), and categories' (a few, kept however many subjects pass) */
static HTAB *active_keys[2] = {NULL, NULL};
static uint64 active_keys_generation[2] = {0, 0};

static HTAB *
active_map(const unsigned char *owner)
{
	int			which = owner[0] == 's' ? 0 : 1;
	HTAB	   *map = active_keys[which];

	if (map == NULL || active_keys_generation[which] != keys_generation ||
		hash_get_num_entries(map) >= 4L * privacy_backend_key_cache_size)
	{
		HASHCTL		ctl;

		if (map != NULL)
			hash_destroy(map);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = PRIVACY_SUBJECT_HASH_BYTES + 1;
		ctl.entrysize = sizeof(ActiveKeyEntry);
		ctl.hcxt = TopMemoryContext;
		map = hash_create(which == 0 ? "privacy active subject keys" : "privacy active category keys",
						  which == 0 ? 256 : 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		active_keys[which] = map;
		active_keys_generation[which] = keys_generation;
	}
	return map;
}

static uint32
active_get(const unsigned char *owner)
{
	ActiveKeyEntry *e = hash_search(active_map(owner), owner, HASH_FIND, NULL);

	return e != NULL ? e->key_id : 0;
}

static void
active_set(const unsigned char *owner, uint32 key_id)
{
	ActiveKeyEntry *e = hash_search(active_map(owner), owner, HASH_ENTER, NULL);

	e->key_id = key_id;
}

/* ------------------------------------------------------------------------
 * Pending keys: new subjects' keys not yet in the table
 * ------------------------------------------------------------------------
 */
typedef struct PendingKey
{
	unsigned char subject_hash[PRIVACY_SUBJECT_HASH_BYTES];	/* hash key */
	uint32		key_id;
	SubTransactionId subid;		/* the subtransaction that created it */
	bool		stored;			/* written by the batch's first INSERT */
	unsigned char wrapped[KEYS_WRAPPED_BYTES];
} PendingKey;

typedef struct PendingId
{
	uint32		key_id;			/* hash key */
	PendingKey *key;
} PendingId;

static HTAB *pending = NULL;
static HTAB *pending_ids = NULL;
static bool flushing = false;
/* set when this transaction (or subtransaction) created a key: its abort voids them */
static SubTransactionId last_creation_subid = InvalidSubTransactionId;

static HTAB *
pending_map(void)
{
	if (pending == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = PRIVACY_SUBJECT_HASH_BYTES;
		ctl.entrysize = sizeof(PendingKey);
		ctl.hcxt = TopMemoryContext;
		/* small: most transactions create a key or none; the table grows */
		pending = hash_create("privacy pending data keys", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(PendingId);
		ctl.hcxt = TopMemoryContext;
		pending_ids = hash_create("privacy pending data key ids", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return pending;
}

static void
pending_remove(PendingKey *p)
{
	hash_search(pending_ids, &p->key_id, HASH_REMOVE, NULL);
	hash_search(pending, p->subject_hash, HASH_REMOVE, NULL);
}

static long
pending_count(void)
{
	return pending == NULL ? 0 : hash_get_num_entries(pending);
}

static PendingKey *
pending_by_id(uint32 key_id)
{
	PendingId  *e;

	if (pending_count() == 0)
		return NULL;
	e = hash_search(pending_ids, &key_id, HASH_FIND, NULL);
	return e != NULL ? e->key : NULL;
}

static void
pending_clear(void)
{
	if (pending != NULL)
	{
		hash_destroy(pending);
		hash_destroy(pending_ids);
		pending = NULL;
		pending_ids = NULL;
	}
}

/*
 * Run a write into privacy.data_keys in a subtransaction: false, with
 * nothing written, when it fails with a serialization failure (or, with
 * unique_too, a unique violation); any other error is thrown again.
 */
static bool
run_in_subxact(int (*write) (void *arg), void *arg, bool unique_too, int *rc)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool done = true;
	volatile int result = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = write(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE &&
			!(unique_too && edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION))
			ReThrowError(edata);
		FreeErrorData(edata);
		done = false;
	}
	PG_END_TRY();
	*rc = result;
	return done;
}

typedef struct PlanRun
{
	SPIPlanPtr	plan;
	Datum	   *values;
	const char *nulls;
} PlanRun;

/* a prepared INSERT under a snapshot taken now (catalog_execute_plan_latest) */
static int
run_plan(void *arg)
{
	PlanRun    *r = arg;

	return catalog_execute_plan_latest(r->plan, r->values, r->nulls, false, 0);
}

static bool
insert_in_subxact(SPIPlanPtr plan, Datum *values, const char *nulls, bool unique_too, int *rc)
{
	PlanRun		r = {plan, values, nulls};

	return run_in_subxact(run_plan, &r, unique_too, rc);
}

/*
 * With a transaction snapshot (REPEATABLE READ, SERIALIZABLE), a
 * conflicting key that another session committed while the INSERT waited
 * for it is invisible to the INSERT's snapshot, and PostgreSQL refuses that
 * with a serialization failure.  The conflict is on the extension's key
 * table, not on anything the transaction read, so the INSERT is retried
 * once with a snapshot taken after the winner committed, rather than
 * failing the caller's transaction.
 */
static int
insert_keys(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			rc;

	if (!IsolationUsesXactSnapshot())
		return catalog_execute_plan_latest(plan, values, nulls, false, 0);
	if (!insert_in_subxact(plan, values, nulls, false, &rc))
		rc = catalog_execute_plan_latest(plan, values, nulls, false, 0);
	return rc;
}

static SPIPlanPtr
kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

static int
compare_pending(const void *a, const void *b)
{
	return memcmp((*(PendingKey *const *) a)->subject_hash,
				  (*(PendingKey *const *) b)->subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
}

/*
 * The pending keys (all, or those the batch's first write did not store),
 * in subject-hash order: the index entries of one batch then land on
 * neighbouring pages.
 */
static PendingKey **
sorted_pending(bool unstored_only, int *count)
{
	PendingKey **keys = palloc(Max(pending_count(), 1) * sizeof(PendingKey *));
	HASH_SEQ_STATUS seq;
	PendingKey *p;
	int			n = 0;

	hash_seq_init(&seq, pending);
	while ((p = hash_seq_search(&seq)) != NULL)
		if (!unstored_only || !p->stored)
			keys[n++] = p;
	qsort(keys, n, sizeof(PendingKey *), compare_pending);
	*count = n;
	return keys;
}

static bytea *
wrapped_bytea(const PendingKey *p)
{
	bytea	   *w = palloc(VARHDRSZ + KEYS_WRAPPED_BYTES);

	SET_VARSIZE(w, VARHDRSZ + KEYS_WRAPPED_BYTES);
	memcpy(VARDATA(w), p->wrapped, KEYS_WRAPPED_BYTES);
	return w;
}

/*
 * The same keys as the three array arguments of an INSERT.  Returns how
 * many.
 */
static int
pending_arrays(Datum *values, bool unstored_only)
{
	int			count;
	PendingKey **keys = sorted_pending(unstored_only, &count);
	Datum	   *ids = palloc(Max(count, 1) * sizeof(Datum));
	Datum	   *hashes = palloc(Max(count, 1) * sizeof(Datum));
	Datum	   *wrapped = palloc(Max(count, 1) * sizeof(Datum));
	int			i;

	for (i = 0; i < count; i++)
	{
		ids[i] = Int32GetDatum((int32) keys[i]->key_id);
		hashes[i] = PointerGetDatum(hash_bytea(keys[i]->subject_hash));
		wrapped[i] = PointerGetDatum(wrapped_bytea(keys[i]));
	}
	values[0] = PointerGetDatum(construct_array(ids, count, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(hashes, count, BYTEAOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(wrapped, count, BYTEAOID, -1, false, TYPALIGN_INT));
	return count;
}

/* ------------------------------------------------------------------------
 * The batch written as COPY writes a table
 * ------------------------------------------------------------------------
 */

/* rows written to the heap at a time, as COPY buffers them */
#define KEY_ROWS_PER_WRITE 1000

typedef struct DirectBatch
{
	PendingKey **keys;
	int			count;
	const char *fingerprint;
} DirectBatch;

/*
 * Whether an INSERT trigger of the key table may be left out of a direct
 * write: only the check of a foreign key on columns the direct write leaves
 * NULL (data_keys.category), which MATCH SIMPLE passes without a look.
 */
static bool
trigger_vacuous(const Trigger *t)
{
	HeapTuple	tup;
	bool		vacuous = false;

	if (!t->tgisinternal || RI_FKey_trigger_type(t->tgfoid) != RI_TRIGGER_FK)
		return false;
	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(t->tgconstraint));
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull);

		if (!isnull)
		{
			ArrayType  *a = DatumGetArrayTypeP(d);
			int16	   *cols = (int16 *) ARR_DATA_PTR(a);
			int			n = ARR_DIMS(a)[0];
			int			i;

			vacuous = ARR_NDIM(a) == 1 && n > 0;
			for (i = 0; i < n && vacuous; i++)
				vacuous = cols[i] == kt.att_category || cols[i] == kt.att_name ||
					cols[i] == kt.att_retired_at || cols[i] == kt.att_destroyed_at;
		}
		ReleaseSysCache(tup);
	}
	return vacuous;
}

/* The CHECK constraints of the install script, which the direct write's rows pass by construction. */
static const char *const key_table_checks[] = {
	"data_keys_scope_check", "data_keys_state_check", "data_key_owner", "data_key_material"
};

/*
 * Whether the key table's constraints are only those the direct write's
 * rows are valid for by construction (it evaluates none): the install's
 * CHECKs, by name, and no NOT NULL on a column it leaves NULL.  An
 * administrator's CHECK or NOT NULL sends the rows through the INSERT,
 * which enforces it.  (A CHECK of the install's name redefined is not
 * seen.)
 */
static bool
key_table_constraints_known(TupleDesc desc)
{
	AttrNumber	left_null[] = {kt.att_category, kt.att_name, kt.att_retired_at, kt.att_destroyed_at};
	int			i;
	int			j;

	for (i = 0; i < lengthof(left_null); i++)
		if (left_null[i] == InvalidAttrNumber || TupleDescAttr(desc, left_null[i] - 1)->attnotnull)
			return false;
	for (i = 0; desc->constr != NULL && i < desc->constr->num_check; i++)
	{
		for (j = 0; j < lengthof(key_table_checks); j++)
			if (strcmp(desc->constr->check[i].ccname, key_table_checks[j]) == 0)
				break;
		if (j == lengthof(key_table_checks))
			return false;
	}
	return true;
}

/*
 * Whether privacy.data_keys is still the table this file writes rows into
 * directly: its eleven columns, nothing that runs on an INSERT (a trigger
 * other than trigger_vacuous's, a rule, row security), no generated column,
 * no constraint but the install's (key_table_constraints_known).  Another
 * shape (a later release's, an administrator's trigger or CHECK) goes
 * through the INSERT.
 */
static bool
key_table_direct(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *trig = rel->trigdesc;
	int			i;

	if (!key_table_constraints_known(desc))
		return false;

	if (desc->natts != 11 || rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		(desc->constr != NULL && desc->constr->has_generated_stored) ||
		kt.att_created_at == InvalidAttrNumber || kt.att_retired_at == InvalidAttrNumber ||
		kt.att_destroyed_at == InvalidAttrNumber)
		return false;
	for (i = 0; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attisdropped)
			return false;
	if (trig != NULL && (trig->trig_insert_instead_row || trig->trig_insert_before_statement ||
						 trig->trig_insert_after_statement || trig->trig_insert_new_table))
		return false;
	for (i = 0; trig != NULL && i < trig->numtriggers; i++)
		if (TRIGGER_FOR_INSERT(trig->triggers[i].tgtype) && trig->triggers[i].tgenabled != TRIGGER_DISABLED &&
			!trigger_vacuous(&trig->triggers[i]))
			return false;
	return true;
}

/*
 * Write the batch's rows (active subject keys) into privacy.data_keys and
 * its indexes: the heap a thousand rows at a time (table_multi_insert, WAL
 * logged as any INSERT's), then each row's index entries, the unique one's
 * check included (ExecInsertIndexTuples).  Nothing is planned, no CHECK
 * expression is read back from the catalog, no array is built: the rows
 * are made here, valid by construction.  A key another session created
 * for one of the subjects meanwhile is a unique violation, which the
 * caller's subtransaction undoes.  Returns the number of rows written, or
 * -1 when the table is not the shape written so (key_table_direct).
 */
static int
write_key_rows(void *arg)
{
	DirectBatch *b = arg;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slots[KEY_ROWS_PER_WRITE];
	BulkInsertState bistate = NULL;
	CommandId	cid = GetCurrentCommandId(true);
	Datum		scope = CStringGetTextDatum("subject");
	Datum		state = CStringGetTextDatum("active");
	Datum		wrapped_by = CStringGetTextDatum(b->fingerprint);
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	int			nslots = Min(b->count, KEY_ROWS_PER_WRITE);
	int			done = 0;
	int			i;

	key_table();
	rel = table_open(kt.relid, RowExclusiveLock);
	if (!key_table_direct(rel))
	{
		table_close(rel, RowExclusiveLock);
		return -1;
	}
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	for (i = 0; i < nslots; i++)
		slots[i] = table_slot_create(rel, NULL);
	if (b->count > 1)
		bistate = GetBulkInsertState();

	while (done < b->count)
	{
		int			n = Min(b->count - done, KEY_ROWS_PER_WRITE);

		for (i = 0; i < n; i++)
		{
			PendingKey *p = b->keys[done + i];
			TupleTableSlot *slot = slots[i];

			ExecClearTuple(slot);
			memset(slot->tts_isnull, true, slot->tts_tupleDescriptor->natts * sizeof(bool));
#define SET_COLUMN(att, d) (slot->tts_values[(att) - 1] = (d), slot->tts_isnull[(att) - 1] = false)
			SET_COLUMN(kt.att_id, Int32GetDatum((int32) p->key_id));
			SET_COLUMN(kt.att_scope, scope);
			SET_COLUMN(kt.att_subject_hash, PointerGetDatum(hash_bytea(p->subject_hash)));
			SET_COLUMN(kt.att_state, state);
			SET_COLUMN(kt.att_wrapped_key, PointerGetDatum(wrapped_bytea(p)));
			SET_COLUMN(kt.att_wrapped_by, wrapped_by);
			SET_COLUMN(kt.att_created_at, now);
#undef SET_COLUMN
			ExecStoreVirtualTuple(slot);
		}
		table_multi_insert(rel, slots, n, cid, 0, bistate);
		for (i = 0; i < n; i++)
		{
			List	   *recheck;

			ResetPerTupleExprContext(estate);
#if PG_VERSION_NUM >= 160000
			recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL, false);
#else
			recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
#endif
			list_free(recheck);
		}
		done += n;
	}

	if (bistate != NULL)
		FreeBulkInsertState(bistate);
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return done;
}

/*
 * The batch's rows, written in a subtransaction: false when a key of one
 * of its subjects is already there (another session created it since this
 * one looked), which the unique index reports.  Without an ON CONFLICT
 * clause, no row pays for a check before its insertion.  Written directly
 * (write_key_rows), or, where the key table is not the shape that knows,
 * by the INSERT.
 */
static bool
insert_batch(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	DirectBatch b;
	int			rc;

	b.keys = sorted_pending(false, &b.count);
	b.fingerprint = keys_master_fingerprint();
	if (!run_in_subxact(write_key_rows, &b, true, &rc))
		return false;
	if (rc == b.count)
		return true;
	Assert(rc == -1);
	(void) pending_arrays(values, false);
	if (!insert_in_subxact(plan, values, nulls, true, &rc))
		return false;
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store data keys");
	return true;
}

/*
 * Write the pending keys: one write of the batch.  When another session
 * created a key for one of its subjects meanwhile, the batch is written
 * again with ON CONFLICT DO NOTHING, and the keys it skipped are stored as
 * retired (values were sealed with them already).  Runs as the extension's
 * owner (catalog_become_owner), wherever the keys were created.
 */
static void
flush_pending(void)
{
	static SPIPlanPtr insert_plain = NULL;
	static SPIPlanPtr insert_skipping = NULL;
	static const char *insert_sql =
		"INSERT INTO " PRIVACY_SCHEMA ".data_keys (id, scope, subject_hash, state, wrapped_key, wrapped_by, retired_at) "
		"SELECT k.id, 'subject', k.h, $5, k.w, $4, "
		"       CASE WHEN $5 OPERATOR(pg_catalog.=) 'retired' THEN pg_catalog.now() END "
		"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS k(id, h, w)";
	Oid			argtypes[5] = {INT4ARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID, TEXTOID, TEXTOID};

	if (pending_count() == 0 || flushing)
		return;
	flushing = true;
	PG_TRY();
	{
		CatalogUserState st;
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
		HASH_SEQ_STATUS seq;
		PendingKey *p;
		uint64		k;
		bool		lost = false;

		values[3] = CStringGetTextDatum(keys_master_fingerprint());
		values[4] = CStringGetTextDatum("active");
		catalog_become_owner(&st);
		if (!insert_batch(kept_plan(&insert_plain, insert_sql, 5, argtypes), values, nulls))
		{
			(void) pending_arrays(values, false);
			hash_seq_init(&seq, pending);
			while ((p = hash_seq_search(&seq)) != NULL)
				p->stored = false;
			if (insert_keys(kept_plan(&insert_skipping,
									  psprintf("%s ON CONFLICT DO NOTHING RETURNING subject_hash", insert_sql),
									  5, argtypes),
							values, nulls) != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "could not store data keys");
			for (k = 0; k < SPI_processed; k++)
			{
				bool		isnull;
				bytea	   *h = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1, &isnull));

				p = hash_search(pending, VARDATA_ANY(h), HASH_FIND, NULL);
				if (p != NULL)
					p->stored = true;
			}
			if (pending_arrays(values, true) > 0)
			{
				lost = true;
				values[4] = CStringGetTextDatum("retired");
				if (catalog_execute_plan_latest(kept_plan(&insert_plain, insert_sql, 5, argtypes),
												values, nulls, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not store data keys");
			}
		}
		catalog_restore_user(&st);

		/* later values of those subjects take the winner's key */
		if (lost)
		{
			hash_seq_init(&seq, pending);
			while ((p = hash_seq_search(&seq)) != NULL)
				if (!p->stored)
				{
					unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];

					owner[0] = 's';
					memcpy(owner + 1, p->subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
					hash_search(active_map(owner), owner, HASH_REMOVE, NULL);
				}
		}
		pending_clear();
		/* the transaction's later lookups (a snapshot taken now) see them */
		CommandCounterIncrement();
	}
	PG_FINALLY();
	{
		flushing = false;
	}
	PG_END_TRY();
}

static void
refuse_read_only(char scope, const char *name)
{
	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot create a data key in a read-only transaction"),
				 scope == 'i' ?
				 errdetail("The extension's internal key \"%s\" does not exist yet, and creating it writes privacy.data_keys.", name) :
				 errdetail("The %s has no key yet, and creating one writes privacy.data_keys.",
						   scope == 'c' ? "category" : "subject"),
				 errhint("Seal a first value in a read-write transaction on the primary (privacy.classify() creates the category key).")));
}

static uint32
next_key_id(void)
{
	key_table();
	return (uint32) nextval_internal(kt.seq, false);
}

/*
 * Called before a data key is created here: a part that knows better where
 * keys come from (citus.c) returns the id of the key it had made, or 0.
 */
uint32		(*keys_create_hook) (char scope, const char *name, const unsigned char *subject_hash) = NULL;

/* A new subject's key: drawn, wrapped, cached and pending. */
static uint32
create_subject_key(const unsigned char *hash)
{
	static unsigned char *key = NULL;
	unsigned char ad[KEYS_AD_MAX];
	size_t		adlen;
	PendingKey *p;
	uint32		key_id;
	KeyCacheEntry *meta;
	bool		found;

	keys_require_master_key();
	refuse_read_only('s', NULL);
	/* on Citus, the coordinator creates every key (citus.c) */
	if (keys_create_hook && (key_id = keys_create_hook('s', NULL, hash)) != 0)
		return key_id;
	if (key == NULL && (key = sodium_malloc(PRIVACY_DATA_KEY_BYTES)) == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");

	key_id = next_key_id();
	p = hash_search(pending_map(), hash, HASH_ENTER, &found);
	Assert(!found);
	p->key_id = key_id;
	((PendingId *) hash_search(pending_ids, &key_id, HASH_ENTER, NULL))->key = p;
	p->subid = GetCurrentSubTransactionId();
	p->stored = false;
	keys_random_key(key);
	adlen = keys_wrap_ad(ad, key_id, 's', NULL, hash, PRIVACY_SUBJECT_HASH_BYTES);
	keys_wrap(0, key, ad, adlen, p->wrapped);
	(void) keys_cache_put(key_id, DATA_KEY_ACTIVE, 's', hash, key, false, 0, &meta);
	sodium_memzero(key, PRIVACY_DATA_KEY_BYTES);
	last_creation_subid = GetCurrentSubTransactionId();
	if (pending_count() >= KEY_BATCH)
		flush_pending();
	return key_id;
}

/*
 * Create a category or internal key and store it at once (rare: a
 * category's first value, a rotation, the extension's first use).  When
 * another session created the active key first, that key's id is returned.
 */
static uint32
create_data_key(char scope, const char *name)
{
	static SPIPlanPtr insert = NULL;
	static SPIPlanPtr lookup = NULL;
	unsigned char *key;
	unsigned char wrapped[KEYS_WRAPPED_BYTES];
	unsigned char ad[KEYS_AD_MAX];
	size_t		adlen;
	uint32		key_id;
	CatalogUserState st;
	Datum		values[5];
	Oid			argtypes[5] = {INT4OID, TEXTOID, TEXTOID, BYTEAOID, TEXTOID};
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bytea	   *wrapped_b;
	bool		isnull;
	KeyCacheEntry *meta;

	keys_require_master_key();
	refuse_read_only(scope, name);
	/* on Citus, the coordinator creates every key (citus.c) */
	if (keys_create_hook && (key_id = keys_create_hook(scope, name, NULL)) != 0)
		return key_id;

	key_id = next_key_id();
	key = sodium_malloc(PRIVACY_DATA_KEY_BYTES);
	if (key == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");
	keys_random_key(key);
	adlen = keys_wrap_ad(ad, key_id, scope, name, NULL, 0);
	keys_wrap(0, key, ad, adlen, wrapped);

	wrapped_b = palloc(VARHDRSZ + KEYS_WRAPPED_BYTES);
	SET_VARSIZE(wrapped_b, VARHDRSZ + KEYS_WRAPPED_BYTES);
	memcpy(VARDATA(wrapped_b), wrapped, KEYS_WRAPPED_BYTES);
	values[0] = Int32GetDatum((int32) key_id);
	values[1] = CStringGetTextDatum(scope == 'c' ? "category" : "internal");
	values[2] = CStringGetTextDatum(name);
	values[3] = PointerGetDatum(wrapped_b);
	values[4] = CStringGetTextDatum(keys_master_fingerprint());

	catalog_become_owner(&st);
	if (insert_keys(kept_plan(&insert,
							  "INSERT INTO " PRIVACY_SCHEMA ".data_keys (id, scope, category, name, wrapped_key, wrapped_by) "
							  "VALUES ($1, $2, CASE WHEN $2 OPERATOR(pg_catalog.=) 'category' THEN $3 END, "
							  "        CASE WHEN $2 OPERATOR(pg_catalog.=) 'internal' THEN $3 END, $4, $5) "
							  "ON CONFLICT DO NOTHING RETURNING id", 5, argtypes),
					values, nulls) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store a data key");
	if (SPI_processed > 0)
		(void) keys_cache_put(key_id, DATA_KEY_ACTIVE, scope, NULL, key, false, 0, &meta);
	else
	{
		/* another session won the race: use its key */
		if (catalog_execute_plan_latest(kept_plan(&lookup,
												  "SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) $2 "
												  "AND coalesce(category, name) OPERATOR(pg_catalog.=) $3 "
												  "AND state OPERATOR(pg_catalog.=) 'active'", 3, argtypes),
										values, nulls, true, 1) != SPI_OK_SELECT || SPI_processed == 0)
			elog(ERROR, "could not find the concurrently created data key");
		key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	catalog_restore_user(&st);
	sodium_free(key);
	CommandCounterIncrement();
	last_creation_subid = GetCurrentSubTransactionId();
	return key_id;
}

/*
 * The id of the active key found by a one-parameter query on
 * privacy.data_keys (0 if there is none), read as the extension owner.
 * The query's plan is kept in *plan, for the session (issue #19: the
 * internal keys' lookup behind subject_hash() was planned at every call
 * after a key changed anywhere).
 */
static uint32
lookup_active_key(SPIPlanPtr *plan, const char *query, Oid argtype, Datum value)
{
	CatalogUserState st;
	bool		isnull;
	uint32		key_id = 0;

	catalog_become_owner(&st);
	if (SPI_execute_plan(kept_plan(plan, query, 1, &argtype), &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "data key lookup failed");
	if (SPI_processed > 0)
		key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	catalog_restore_user(&st);
	return key_id;
}

/* ------------------------------------------------------------------------
 * Keys by id
 * ------------------------------------------------------------------------
 */

/*
 * Read a key's row and unwrap it into the caches (the shared one too, for
 * a committed row version).  A pending key is unwrapped from the list.
 */
static const unsigned char *
load_key(uint32 key_id, KeyCacheEntry **meta)
{
	PendingKey *p;
	unsigned char ad[KEYS_AD_MAX];
	size_t		adlen;
	uint64		mark;
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	TupleDesc	desc;
	const unsigned char *result;

	p = pending_by_id(key_id);
	if (p != NULL)
	{
		unsigned char *key = key_scratch();

		adlen = keys_wrap_ad(ad, key_id, 's', NULL, p->subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
		if (!keys_unwrap(0, p->wrapped, KEYS_WRAPPED_BYTES, ad, adlen, key))
			elog(ERROR, "pending data key %u does not unwrap", key_id);
		result = keys_cache_put(key_id, DATA_KEY_ACTIVE, 's', p->subject_hash, key, false, 0, meta);
		sodium_memzero(key, PRIVACY_DATA_KEY_BYTES);
		return result;
	}

	/* before the snapshot: see keys_cache_put */
	mark = keys_cache_change_mark();
	key_table();
	rel = table_open(kt.relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	ScanKeyInit(&skey, kt.att_id, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum((int32) key_id));
	snap = lookup_snapshot();
	scan = systable_beginscan(rel, kt.pkey, true, snap, 1, &skey);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("encrypted value refers to data key %u, which does not exist", key_id),
				 errdetail("The value was sealed in another database, or its key table was not restored with it."),
				 errhint("Restore privacy.data_keys from the same dump as the data; values cannot be read without their key.")));
	result = cache_key_row(key_id, tup, desc, mark, false, meta);
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * A key's row (read under a snapshot taken after mark) unwrapped into the
 * caches, the shared one too for a committed row version.  quiet: a key
 * that cannot be unwrapped here (its master key not loaded, its row
 * altered) is left out, *meta NULL, instead of the error that says why.
 */
static const unsigned char *
cache_key_row(uint32 key_id, HeapTuple tup, TupleDesc desc, uint64 mark, bool quiet, KeyCacheEntry **meta)
{
	unsigned char *key = key_scratch();
	unsigned char ad[KEYS_AD_MAX];
	size_t		adlen;
	bool		isnull;
	char	   *kstate;
	char	   *wrapped_by;
	char	   *scope;
	char	   *name = NULL;
	bytea	   *wrapped = NULL;
	bytea	   *subject_hash = NULL;
	bool		shareable;
	Datum		d;
	DataKeyState state;
	const unsigned char *result;
	int			mslot;

	*meta = NULL;
	/* a row version this transaction wrote is nobody else's to share */
	shareable = !TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	kstate = TextDatumGetCString(heap_getattr(tup, kt.att_state, desc, &isnull));
	scope = TextDatumGetCString(heap_getattr(tup, kt.att_scope, desc, &isnull));
	d = heap_getattr(tup, kt.att_category, desc, &isnull);
	if (!isnull)
		name = TextDatumGetCString(d);
	else
	{
		d = heap_getattr(tup, kt.att_name, desc, &isnull);
		if (!isnull)
			name = TextDatumGetCString(d);
	}
	d = heap_getattr(tup, kt.att_wrapped_key, desc, &isnull);
	if (!isnull)
		wrapped = DatumGetByteaPP(d);
	d = heap_getattr(tup, kt.att_subject_hash, desc, &isnull);
	if (!isnull)
		subject_hash = DatumGetByteaPP(d);
	wrapped_by = TextDatumGetCString(heap_getattr(tup, kt.att_wrapped_by, desc, &isnull));

	if (subject_hash != NULL && VARSIZE_ANY_EXHDR(subject_hash) != PRIVACY_SUBJECT_HASH_BYTES)
		subject_hash = NULL;
	if (strcmp(kstate, "destroyed") == 0 || wrapped == NULL)
		return keys_cache_put(key_id, DATA_KEY_DESTROYED, scope[0],
							  subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
							  NULL, shareable, mark, meta);

	state = strcmp(kstate, "active") == 0 ? DATA_KEY_ACTIVE : DATA_KEY_RETIRED;
	mslot = keys_master_slot(wrapped_by);
	if (mslot < 0)
	{
		if (quiet)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key %u was wrapped by master key %s, but this server runs master key %s",
						key_id, wrapped_by, keys_master_fingerprint()),
				 errdetail("Encrypted values can only be read with the master key that wrapped their data keys."),
				 errhint("Start the server with that master key in privacy.master_key_command, or, during a rotation, in privacy.previous_master_key_command.")));
	}
	adlen = keys_wrap_ad(ad, key_id, scope[0], name,
						 subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
						 subject_hash ? PRIVACY_SUBJECT_HASH_BYTES : 0);
	if (!keys_unwrap(mslot, (unsigned char *) VARDATA_ANY(wrapped), VARSIZE_ANY_EXHDR(wrapped),
					 ad, adlen, key))
	{
		sodium_memzero(key, PRIVACY_DATA_KEY_BYTES);
		if (quiet)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key %u failed authentication", key_id),
				 errdetail("Its row in privacy.data_keys was altered or moved."),
				 errhint("Restore privacy.data_keys from a backup taken with the same master key.")));
	}
	result = keys_cache_put(key_id, state, scope[0],
							subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
							key, shareable, mark, meta);
	sodium_memzero(key, PRIVACY_DATA_KEY_BYTES);
	return result;
}

/* The key's cache entry (loading it if need be) and material. */
static const unsigned char *
find_key(uint32 key_id, KeyCacheEntry **meta)
{
	const unsigned char *key;

	keys_require_master_key();
	catalog_accept_invalidations();
	keys_cache_sync();
	key = keys_cache_get(key_id, meta);
	if (*meta == NULL)
		key = load_key(key_id, meta);
	return key;
}

/*
 * The unwrapped key with this id.  Returns NULL, with *state =
 * DATA_KEY_DESTROYED, for a shredded key.  The pointer is valid until the
 * next call into the keys part.
 */
const unsigned char *
keys_data_key(uint32 key_id, DataKeyState *state)
{
	KeyCacheEntry *meta;
	const unsigned char *key = find_key(key_id, &meta);

	*state = (DataKeyState) meta->state;
	return meta->state == DATA_KEY_DESTROYED ? NULL : key;
}

/*
 * The subject hash owning a subject key the cache holds (keys_data_key has
 * just returned it), or NULL for any other key.  The access log records
 * whose values a statement opened by this hash.
 */
const unsigned char *
keys_key_subject(uint32 key_id)
{
	KeyCacheEntry *meta;

	if (key_id == PRIVACY_TRANSIENT_KEY_ID)
		return NULL;
	(void) find_key(key_id, &meta);
	return meta->scope == 's' ? meta->subject_hash : NULL;
}

bool
keys_is_category_key(uint32 key_id)
{
	KeyCacheEntry *meta;

	(void) find_key(key_id, &meta);
	return meta->scope == 'c';
}

/* ------------------------------------------------------------------------
 * Active keys of categories and subjects
 * ------------------------------------------------------------------------
 */
uint32
keys_category_key(const char *category)
{
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];
	uint16		cid = catalog_category_id(category);
	uint32		key_id;

	catalog_accept_invalidations();
	keys_cache_sync();
	memset(owner, 0, sizeof(owner));
	owner[0] = 'c';
	owner[1] = cid >> 8;
	owner[2] = cid & 0xff;
	key_id = active_get(owner);
	if (key_id == 0)
	{
		static const char *query =
			"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'category' "
			"AND category OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'";
		static SPIPlanPtr plan = NULL;

		key_id = lookup_active_key(&plan, query, TEXTOID, CStringGetTextDatum(category));
		if (key_id == 0)
			key_id = create_data_key('c', category);
		active_set(owner, key_id);
	}
	return key_id;
}

/*
 * The active key of a subject (by its hash); 0 if it has none and create
 * is false.  A subject just found without a key is remembered until the
 * next call, which is how the seal trigger asks: first without creating,
 * then, for a value that needs it, creating.
 */
uint32
keys_subject_key_hashed(const unsigned char *hash, bool create)
{
	static unsigned char absent[PRIVACY_SUBJECT_HASH_BYTES];
	static bool absent_valid = false;
	static uint64 absent_generation = 0;
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];
	uint32		key_id;
	PendingKey *p;
	bool		known_absent;

	catalog_accept_invalidations();
	keys_cache_sync();
	known_absent = absent_valid && absent_generation == keys_generation &&
		memcmp(absent, hash, PRIVACY_SUBJECT_HASH_BYTES) == 0;
	absent_valid = false;

	owner[0] = 's';
	memcpy(owner + 1, hash, PRIVACY_SUBJECT_HASH_BYTES);
	key_id = active_get(owner);
	if (key_id != 0)
		return key_id;
	if (pending_count() > 0 && (p = hash_search(pending, hash, HASH_FIND, NULL)) != NULL)
		key_id = p->key_id;
	else if (!known_absent)
		key_id = probe_subject(hash);
	if (key_id == 0 && create)
		key_id = create_subject_key(hash);
	if (key_id != 0)
		active_set(owner, key_id);
	else
	{
		memcpy(absent, hash, PRIVACY_SUBJECT_HASH_BYTES);
		absent_valid = true;
		absent_generation = keys_generation;
	}
	return key_id;
}

/* The same, for a subject known by its hash (created if need be). */
uint32
keys_subject_key_by_hash(const unsigned char *subject_hash)
{
	return keys_subject_key_hashed(subject_hash, true);
}

uint32
keys_subject_key(const char *subject, size_t len, bool create)
{
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	keys_subject_hash(subject, len, hash);
	return keys_subject_key_hashed(hash, create);
}

/* ------------------------------------------------------------------------
 * Internal keys
 * ------------------------------------------------------------------------
 */

/*
 * Internal keys: random keys stored wrapped like every data key, for uses
 * that must not change when the master key rotates (the subject hash, the
 * blind index).  Created on first use; privacy.classify() and
 * privacy.create_category() create them early, in a writable transaction.
 */
uint32
keys_internal_key_id(const char *name)
{
	static const char *query =
		"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'internal' "
		"AND name OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'";
	static SPIPlanPtr plan = NULL;
	uint32		key_id;

	key_id = lookup_active_key(&plan, query, TEXTOID, CStringGetTextDatum(name));
	if (key_id == 0)
		key_id = create_data_key('i', name);
	return key_id;
}

static void
internal_key(const char *name, unsigned char *out)
{
	uint32		key_id = keys_internal_key_id(name);
	const unsigned char *key;
	DataKeyState state;

	key = keys_data_key(key_id, &state);
	if (key == NULL)
		elog(ERROR, "internal key \"%s\" is destroyed", name);
	memcpy(out, key, PRIVACY_DATA_KEY_BYTES);
}

/*
 * The internal keys are needed per value (search tags) and per row (subject
 * hashes): keep them in locked memory, for as long as keys_generation says
 * no key changed and no transaction that might have created one aborted.
 */
static void
cached_internal_key(int which, const char *name, unsigned char *out)
{
	static unsigned char *slots = NULL;
	static uint64 generation[3] = {0, 0, 0};

	if (slots == NULL)
	{
		slots = sodium_malloc(3 * PRIVACY_DATA_KEY_BYTES);
		if (slots == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate locked memory for internal keys")));
	}
	catalog_accept_invalidations();
	keys_cache_sync();
	if (generation[which] != keys_generation)
	{
		internal_key(name, slots + which * PRIVACY_DATA_KEY_BYTES);
		generation[which] = keys_generation;
	}
	memcpy(out, slots + which * PRIVACY_DATA_KEY_BYTES, PRIVACY_DATA_KEY_BYTES);
}

/*
 * The keyed hash that stands for a subject wherever the identifier itself
 * must not be kept (key table, erasure records).
 */
void
keys_subject_hash(const char *subject, size_t len, unsigned char *out)
{
	unsigned char hkey[crypto_generichash_KEYBYTES];

	cached_internal_key(1, "subject_hash", hkey);
	crypto_generichash(out, PRIVACY_SUBJECT_HASH_BYTES, (const unsigned char *) subject, len,
					   hkey, sizeof(hkey));
	sodium_memzero(hkey, sizeof(hkey));
}

/*
 * The key of the blind index used for equality search: one per database
 * (an internal data key, so it survives master-key rotation and travels with
 * a dump), so equal plaintexts in any searchable columns compare equal
 * (joins work), and nobody without the master key can test a guess.
 */
void
keys_search_key(unsigned char *out, size_t outlen)
{
	Assert(outlen == crypto_generichash_KEYBYTES);
	cached_internal_key(0, "search", out);
}

/*
 * The key of the access log's MAC chain: an internal data key, so that the
 * chain still verifies after a master-key rotation and after a restore.
 */
void
keys_access_log_key(unsigned char *out)
{
	cached_internal_key(2, "access_log", out);
}

/* ------------------------------------------------------------------------
 * When pending keys are written, and what an abort voids
 * ------------------------------------------------------------------------
 */
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* A statement that starts sees the keys of the ones before it. */
static void
keys_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (pending_count() > 0 && !flushing)
		flush_pending();
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
keys_executor_finish(QueryDesc *queryDesc)
{
	if (prev_executor_finish)
		prev_executor_finish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	if (pending_count() > 0 && !flushing)
		flush_pending();
}

/* COPY FROM, CALL, DO: utility statements that create keys */
static void
keys_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (pending_count() > 0 && !flushing && IsTransactionState())
		flush_pending();
}

static void
keys_data_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			flush_pending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_clear();
			flushing = false;
			if (last_creation_subid != InvalidSubTransactionId)
				keys_cache_forget_local();
			last_creation_subid = InvalidSubTransactionId;
			break;
		case XACT_EVENT_PREPARE:
			/* a prepared transaction may still be rolled back */
			if (last_creation_subid != InvalidSubTransactionId)
				keys_cache_forget_local();
			last_creation_subid = InvalidSubTransactionId;
			break;
		case XACT_EVENT_COMMIT:
			last_creation_subid = InvalidSubTransactionId;
			break;
		default:
			break;
	}
}

static void
keys_data_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS seq;
	PendingKey *p;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	if (pending_count() > 0)
	{
		hash_seq_init(&seq, pending);
		while ((p = hash_seq_search(&seq)) != NULL)
			if (p->subid == mySubid)
			{
				if (event == SUBXACT_EVENT_COMMIT_SUB)
					p->subid = parentSubid;
				else
					pending_remove(p);
			}
	}
	if (event == SUBXACT_EVENT_ABORT_SUB && last_creation_subid != InvalidSubTransactionId &&
		last_creation_subid >= mySubid)
	{
		flushing = false;
		keys_cache_forget_local();
	}
}

void
keys_data_init(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = keys_executor_start;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = keys_executor_finish;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = keys_process_utility;
	RegisterXactCallback(keys_data_xact_callback, NULL);
	RegisterSubXactCallback(keys_data_subxact_callback, NULL);
}

/* ------------------------------------------------------------------------
 * SQL-callable (privileges are granted in the install script)
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(privacy_category_key);
Datum
privacy_category_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) keys_category_key(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

PG_FUNCTION_INFO_V1(privacy_subject_key);
Datum
privacy_subject_key(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	bool		create = PG_GETARG_BOOL(1);
	uint32		id = keys_subject_key(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), create);

	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) id);
}

PG_FUNCTION_INFO_V1(privacy_subject_hash);
Datum
privacy_subject_hash(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	bytea	   *out = palloc(VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);

	SET_VARSIZE(out, VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
	keys_subject_hash(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), (unsigned char *) VARDATA(out));
	PG_RETURN_BYTEA_P(out);
}

PG_FUNCTION_INFO_V1(privacy_ensure_internal_keys);
Datum
privacy_ensure_internal_keys(PG_FUNCTION_ARGS)
{
	unsigned char k[PRIVACY_DATA_KEY_BYTES];

	keys_require_master_key();
	internal_key("subject_hash", k);
	internal_key("search", k);
	internal_key("access_log", k);
	sodium_memzero(k, sizeof(k));
	PG_RETURN_VOID();
}
