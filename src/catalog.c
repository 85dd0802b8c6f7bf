/*
 * catalog.c — what every part needs from the extension's own tables.
 *
 * The per-backend caches (purpose verdicts in consent.c, data keys in
 * keys.c, category names here) all depend on the tables in schema privacy.
 * A row trigger on each of those tables (privacy_internal.catalog_changed, enabled
 * ALWAYS so that logical replication's apply worker fires it too) sends a
 * relcache invalidation at commit (duplicates are merged); the callback here bumps
 * catalog_generation, and each cache compares the generation it was built
 * under.  Invalidations are read once per top-level statement, so a change
 * committed elsewhere applies from the next statement, even inside a
 * transaction that takes no new locks.
 *
 * Catalog reads run as the owner of schema privacy: application roles
 * cannot read the tables, yet their verdicts and keys depend on them.
 */
#include "privacy.h"

#include "utils/snapmgr.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "typmod.h"

uint64		catalog_generation = 1;

#define MAX_CATALOG_RELS 16
static Oid	catalog_relids[MAX_CATALOG_RELS];
static int	n_catalog_relids = 0;
static uint64 relids_generation = 0;
static TimestampTz last_statement_start = 0;

/* Tables whose changes invalidate the caches. */
static const char *const catalog_relnames[] = {
	"categories", "purposes", "purpose_categories", "role_purposes",
	"column_categories", "protected_tables"
};

static void
catalog_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid)
	{
		catalog_generation++;
		return;
	}
	for (i = 0; i < n_catalog_relids; i++)
		if (catalog_relids[i] == relid)
		{
			catalog_generation++;
			return;
		}
}

static void
catalog_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog_generation++;
}

/*
 * Rows this backend wrote to the catalog (a data key created for a first
 * value) vanish if the transaction aborts; so must anything cached from
 * them.  Only a transaction that wrote the catalog (the invalidation
 * trigger notes it) needs that: an ordinary failed statement keeps the
 * caches.
 */
static bool catalog_written_in_xact = false;

/* Whether this transaction has changed the extension's catalog so far. */
bool
catalog_written_in_transaction(void)
{
	return catalog_written_in_xact;
}

static void
catalog_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (catalog_written_in_xact)
			catalog_generation++;
		catalog_written_in_xact = false;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
		catalog_written_in_xact = false;
}

static void
catalog_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && catalog_written_in_xact)
		catalog_generation++;
}

/*
 * The extension's parts share one relcache callback: PostgreSQL 15 has 10
 * slots for the whole server process (MAX_RELCACHE_CALLBACKS), and Citus,
 * loaded beside us, takes several of them ("out of relcache_callback_list
 * slots" at CREATE EXTENSION citus when we took four).
 */
#define CATALOG_MAX_RELCACHE_LISTENERS 8
static RelcacheCallbackFunction relcache_listeners[CATALOG_MAX_RELCACHE_LISTENERS];
static int	n_relcache_listeners = 0;

void
catalog_on_relcache(RelcacheCallbackFunction fn)
{
	if (n_relcache_listeners >= CATALOG_MAX_RELCACHE_LISTENERS)
		elog(FATAL, "out of privacy relcache listener slots");
	relcache_listeners[n_relcache_listeners++] = fn;
}

static void
catalog_relcache_dispatch(Datum arg, Oid relid)
{
	int			i;

	catalog_relcache_callback(arg, relid);
	for (i = 0; i < n_relcache_listeners; i++)
		relcache_listeners[i] ((Datum) 0, relid);
}

void
catalog_init(void)
{
	RegisterXactCallback(catalog_xact_callback, NULL);
	RegisterSubXactCallback(catalog_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(catalog_relcache_dispatch, (Datum) 0);
	/* verdicts depend on role membership; the schema may be dropped */
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, catalog_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, catalog_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, catalog_syscache_callback, (Datum) 0);
}

Oid
catalog_namespace(void)
{
	Oid			nsp = get_namespace_oid(PRIVACY_SCHEMA, true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"privacy\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION privacy as a superuser.")));
	return nsp;
}

/*
 * Read pending invalidations once per top-level statement, and learn the
 * OIDs of our tables so the relcache callback recognises them.
 */
void
catalog_accept_invalidations(void)
{
	if (GetCurrentStatementStartTimestamp() != last_statement_start)
	{
		AcceptInvalidationMessages();
		last_statement_start = GetCurrentStatementStartTimestamp();
	}
	if (relids_generation != catalog_generation || n_catalog_relids == 0)
	{
		Oid			nsp = catalog_namespace();
		int			i;

		n_catalog_relids = 0;
		for (i = 0; i < lengthof(catalog_relnames); i++)
		{
			Oid			relid = get_relname_relid(catalog_relnames[i], nsp);

			if (OidIsValid(relid))
				catalog_relids[n_catalog_relids++] = relid;
		}
		relids_generation = catalog_generation;
	}
}

Oid
catalog_relid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, catalog_namespace());

	if (!OidIsValid(relid))
		elog(ERROR, "relation %s.%s is missing", PRIVACY_SCHEMA, relname);
	return relid;
}

/*
 * The owner of the extension (the superuser who created it), rather than
 * of the schema, which could have existed before CREATE EXTENSION.
 */
static Oid
extension_owner(void)
{
	static Oid	owner = InvalidOid;
	static uint64 owner_generation = 0;
	Oid			extoid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (OidIsValid(owner) && owner_generation == catalog_generation)
		return owner;
	extoid = get_extension_oid("privacy", true);
	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"privacy\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION privacy as a superuser.")));
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "extension \"privacy\" disappeared");
	owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	owner_generation = catalog_generation;
	return owner;
}

/*
 * Switch to the owner of the extension for a catalog read or write.  The
 * switch is undone by catalog_restore_user, or by transaction abort.
 *
 * The owner is a superuser and the queries run here are the extension's
 * own, but the caller chose the search_path: an operator or function of a
 * schema earlier in it than pg_catalog would run as that superuser.  So the
 * search_path is pinned to pg_catalog (and pg_temp last, which is never
 * searched for functions or operators) for as long as the switch lasts, the
 * way a SECURITY DEFINER function's SET clause does.
 */
void
catalog_become_owner(CatalogUserState *state)
{
	Oid			owner = extension_owner();

	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(owner, state->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	state->guc_nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * The extension's catalog is read at its latest committed state, the way
	 * PostgreSQL reads its system catalogs, whatever the isolation level of
	 * the transaction: read with a REPEATABLE READ or SERIALIZABLE
	 * transaction's snapshot, a cache rebuilt after an invalidation would
	 * hold a state older than that invalidation, and keep it after the
	 * transaction ends; a purpose revoked would still hold until it ends,
	 * and a key another session created would look absent (its INSERT would
	 * then fail to serialize).  Reads (read_only = true) use this snapshot;
	 * writes take the transaction's, as SPI does.  It also serves values
	 * opened outside any query (a FETCH sends rows its executor run stored
	 * earlier).
	 *
	 * In parallel mode (a parallel worker, and the leader for as long as it
	 * runs a parallel plan, output functions included) GetLatestSnapshot is
	 * refused; the statement's snapshot is no substitute, since in a
	 * REPEATABLE READ transaction it is the transaction's: a purpose revoked
	 * and a key destroyed since it began would still hold, and the leader
	 * would keep the destroyed key in its cache after the transaction.  A
	 * catalog snapshot is taken fresh and allowed there (it is what the
	 * workers' own system catalog scans use).
	 */
	state->pushed_snapshot = true;
	if (!IsInParallelMode())
		PushActiveSnapshot(GetLatestSnapshot());
	else
		PushActiveSnapshot(GetCatalogSnapshot(InvalidOid));
}

/*
 * Run one statement of ours under a snapshot taken now (see
 * catalog_become_owner), also a write: an INSERT ... ON CONFLICT whose
 * conflicting row another session committed after the transaction's
 * snapshot was taken finds it, rather than failing to serialize.
 */
int
catalog_execute_plan_latest(struct _SPI_plan *plan, Datum *values, const char *nulls,
							bool read_only, long tcount)
{
	/* under catalog_become_owner's fresh catalog snapshot (no writes there) */
	if (IsInParallelMode())
		return SPI_execute_plan(plan, values, nulls, read_only, tcount);
	return SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(), InvalidSnapshot,
								read_only, true, tcount);
}

void
catalog_restore_user(CatalogUserState *state)
{
	if (state->pushed_snapshot)
		PopActiveSnapshot();
	SPI_finish();
	AtEOXact_GUC(true, state->guc_nest_level);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * Run one statement on a user's table as that table's owner, inside a
 * security-restricted operation, the way PostgreSQL runs VACUUM, CLUSTER
 * and REINDEX since CVE-2022-1552: whatever the owner attached to the table
 * (row and statement triggers, rules, defaults, constraints, index
 * expressions, operators) runs with the owner's privileges, never with the
 * extension's, and cannot change the session's role or leave state behind.
 * The owner is exempt from FORCE ROW LEVEL SECURITY for this work, as
 * PostgreSQL's referential-integrity checks are (SECURITY_NOFORCE_RLS), so
 * that a reseal, a purge or an erasure reaches every row.  search_path is
 * pinned.  While it runs, catalog_maintenance_depth is positive: the indexes
 * of searchable columns compare search tags as rows are written, which
 * needs no purpose then (nothing is opened; see tag_of in types.c).
 * Returns the number of rows the statement processed.
 */
int			catalog_maintenance_depth = 0;

/*
 * A statement with parameters is the same text at every call (the subject
 * is $1): its plan is kept for the session, not parsed and planned again at
 * each (issue #19: verify_erasure planned a statement per table a call, the
 * subject report a query per table).  Kept by table, statement and number
 * of parameters; a new catalog generation prepares it again, and the plan
 * cache replans it when a table it reads changes, or when it runs as
 * another role.  The statements are the extension's own templates, so the
 * number kept is bounded by templates times tables.
 */
typedef struct KeptPlanKey
{
	Oid			relid;
	int			nargs;
	uint32		sql_hash;
} KeptPlanKey;

typedef struct KeptPlan
{
	KeptPlanKey key;
	uint64		generation;
	char	   *sql;
	SPIPlanPtr	plan;
} KeptPlan;

static HTAB *kept_plans = NULL;

SPIPlanPtr
catalog_kept_plan(Oid relid, const char *sql, int nargs, Oid *argtypes)
{
	KeptPlanKey key;
	KeptPlan   *kp;
	SPIPlanPtr	plan;

	if (kept_plans == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(KeptPlanKey);
		ctl.entrysize = sizeof(KeptPlan);
		kept_plans = hash_create("privacy kept plans", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.nargs = nargs;
	key.sql_hash = hash_bytes((const unsigned char *) sql, strlen(sql));
	kp = hash_search(kept_plans, &key, HASH_FIND, NULL);
	if (kp != NULL)
	{
		if (kp->generation == catalog_generation && strcmp(kp->sql, sql) == 0)
			return kp->plan;
		/* stale or another statement of the same hash: emptied first, so an
		 * error below leaves no entry without a plan */
		pfree(kp->sql);
		SPI_freeplan(kp->plan);
		hash_search(kept_plans, &key, HASH_REMOVE, NULL);
	}
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "statement on a user's table failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of a statement on a user's table");
	kp = hash_search(kept_plans, &key, HASH_ENTER, NULL);
	kp->generation = catalog_generation;
	kp->sql = MemoryContextStrdup(TopMemoryContext, sql);
	kp->plan = plan;
	return plan;
}

/*
 * A statement on a user's table as its owner (as described above), keeping
 * the first row the statement returned as text[] (its
 * columns' output forms) in *first_row, or NULL when it returned none: the
 * batched reseal finds the key that ends each batch this way.
 */
static int64
run_as_owner_rows(Oid relid, const char *sql, int nargs, Oid *argtypes,
				  Datum *values, const char *nulls, ArrayType **first_row)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	HeapTuple	tup;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			nest;
	int			rc;
	int64		n;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION |
						   SECURITY_NOFORCE_RLS);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	/* the seal trigger keeps a restore's values verbatim, never ours */
	(void) set_config_option("row_security", "on",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	catalog_maintenance_depth++;
	PG_TRY();
	{
		if (nargs > 0)
			rc = SPI_execute_plan(catalog_kept_plan(relid, sql, nargs, argtypes), values, nulls, false, 0);
		else
			rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		catalog_maintenance_depth--;
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "statement on a user's table failed: %s", SPI_result_code_string(rc));
	n = (int64) SPI_processed;
	if (first_row != NULL)
	{
		*first_row = NULL;
		if (n > 0 && SPI_tuptable != NULL)
		{
			TupleDesc	desc = SPI_tuptable->tupdesc;
			int			natts = desc->natts;
			Datum	   *elems = palloc(natts * sizeof(Datum));
			bool	   *elnulls = palloc(natts * sizeof(bool));
			int			dims[1] = {natts};
			int			lbs[1] = {1};
			int			i;
			MemoryContext spi_cxt;

			for (i = 0; i < natts; i++)
			{
				char	   *str = SPI_getvalue(SPI_tuptable->vals[0], desc, i + 1);

				elnulls[i] = str == NULL;
				elems[i] = str == NULL ? (Datum) 0 : CStringGetTextDatum(str);
			}
			spi_cxt = MemoryContextSwitchTo(caller_cxt);
			*first_row = construct_md_array(elems, elnulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT);
			MemoryContextSwitchTo(spi_cxt);
		}
	}
	SPI_finish();
	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return n;
}

/* The text[] arguments of the SQL-callable forms, as SPI parameters. */
typedef struct OwnerArgs
{
	int			n;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
} OwnerArgs;

static OwnerArgs
owner_args(FunctionCallInfo fcinfo)
{
	OwnerArgs	a;
	bool	   *elnulls = NULL;
	int			i;

	a.n = 0;
	a.values = NULL;
	if (!PG_ARGISNULL(2))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT,
						  &a.values, &elnulls, &a.n);
	a.types = palloc(Max(a.n, 1) * sizeof(Oid));
	a.nulls = palloc(Max(a.n, 1) + 1);
	for (i = 0; i < a.n; i++)
	{
		a.types[i] = TEXTOID;
		a.nulls[i] = elnulls[i] ? 'n' : ' ';
	}
	a.nulls[a.n] = '\0';
	return a;
}

/* privacy_internal.run_as_owner(tbl, sql, args text[]): the above from SQL */
PG_FUNCTION_INFO_V1(privacy_run_as_owner);
Datum
privacy_run_as_owner(PG_FUNCTION_ARGS)
{
	OwnerArgs	a = owner_args(fcinfo);

	PG_RETURN_INT64(catalog_run_as_owner(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
										 a.n, a.types, a.values, a.nulls));
}

int64
catalog_run_as_owner(Oid relid, const char *sql, int nargs, Oid *argtypes,
					 Datum *values, const char *nulls)
{
	return run_as_owner_rows(relid, sql, nargs, argtypes, values, nulls, NULL);
}

/*
 * privacy_internal.run_as_owner_row(tbl, sql, args text[]): the same, and
 * the statement's first row as text[] (NULL when it returned none).
 */
PG_FUNCTION_INFO_V1(privacy_run_as_owner_row);
Datum
privacy_run_as_owner_row(PG_FUNCTION_ARGS)
{
	OwnerArgs	a = owner_args(fcinfo);
	ArrayType  *row;

	(void) run_as_owner_rows(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
							 a.n, a.types, a.values, a.nulls, &row);
	if (row == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(row);
}

/*
 * A category's id is a pure function of its name, so that a column type
 * such as privacy.encrypted_text(contact) means the same thing before and
 * after pg_restore has loaded the categories table (the data section comes
 * after the CREATE TABLE statements).  FNV-1a folded into 1..65535; a name
 * whose id collides with an existing category is refused when created.
 */
uint16
catalog_category_id(const char *name)
{
	return typmod_category_id(name);
}

typedef struct CategoryCacheEntry
{
	uint16		id;
	char		name[NAMEDATALEN];
} CategoryCacheEntry;

static HTAB *category_cache = NULL;
static uint64 category_cache_generation = 0;

static bool loading_categories = false;

/* The name of category id, or NULL if no such category exists (now). */
const char *
catalog_category_name(uint16 id)
{
	CategoryCacheEntry *entry;
	bool		found;

	catalog_accept_invalidations();
	if (loading_categories)
		return NULL;			/* asked by the load's own query: nothing yet */
	if (category_cache == NULL || category_cache_generation != catalog_generation)
	{
		HASHCTL		ctl;
		CatalogUserState st;
		uint64		i;
		uint64		generation = catalog_generation;

		if (category_cache != NULL)
			hash_destroy(category_cache);
		category_cache = NULL;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint16);
		ctl.entrysize = sizeof(CategoryCacheEntry);
		ctl.hcxt = TopMemoryContext;
		category_cache = hash_create("privacy category cache", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		/* stamped only once loaded: a load that fails is retried */
		category_cache_generation = 0;

		loading_categories = true;
		PG_TRY();
		{
			catalog_become_owner(&st);
			if (SPI_execute("SELECT id, name FROM " PRIVACY_SCHEMA ".categories", true, 0) != SPI_OK_SELECT)
				elog(ERROR, "category lookup failed");
			for (i = 0; i < SPI_processed; i++)
			{
				bool		isnull;
				int32		cid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
				char	   *cname = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
				uint16		key = (uint16) cid;

				entry = hash_search(category_cache, &key, HASH_ENTER, &found);
				strlcpy(entry->name, cname, NAMEDATALEN);
			}
			catalog_restore_user(&st);
		}
		PG_FINALLY();
		{
			loading_categories = false;
		}
		PG_END_TRY();
		category_cache_generation = generation;
	}
	entry = hash_search(category_cache, &id, HASH_FIND, NULL);
	return entry ? entry->name : NULL;
}

PG_FUNCTION_INFO_V1(privacy_category_id);
Datum
privacy_category_id(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT32((int32) catalog_category_id(name));
}

/*
 * Row (and TRUNCATE) trigger on the catalog tables: tell every backend, at
 * commit, that its caches are stale.
 */
PG_FUNCTION_INFO_V1(privacy_catalog_changed);
Datum
privacy_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("privacy_internal.catalog_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	catalog_written_in_xact = true;
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
							   trigdata->tg_newtuple : trigdata->tg_trigtuple);
	return PointerGetDatum(NULL);
}

/* ------------------------------------------------------------------------
 * Protected tables and their personal columns: one map per backend, for
 * the purpose check (consent.c) and the access log (audit_hooks.c),
 * rebuilt when the catalog generation moves.
 * ------------------------------------------------------------------------
 */
static HTAB *protected_map = NULL;
static MemoryContext protected_context = NULL;
static uint64 protected_generation = 0;
static bool protected_here = false;	/* the extension's tables are here */
static bool protected_loading = false;

static void
load_protected(void)
{
	HASHCTL		ctl;
	CatalogUserState st;
	Oid			nsp;
	uint64		i;
	MemoryContext old;
	uint64		generation = catalog_generation;

	/*
	 * Stamped only once loaded: a load that fails (a cancel, a timeout) is
	 * retried, never trusted as "nothing is protected".
	 */
	protected_generation = 0;
	protected_map = NULL;
	if (protected_context == NULL)
		protected_context = AllocSetContextCreate(TopMemoryContext, "privacy protected tables",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(protected_context);
	nsp = get_namespace_oid(PRIVACY_SCHEMA, true);
	protected_here = OidIsValid(nsp) &&
		OidIsValid(get_relname_relid("protected_tables", nsp)) &&
		OidIsValid(get_relname_relid("column_categories", nsp));
	if (!protected_here)
	{
		protected_generation = generation;
		return;
	}

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CatalogRelation);
	ctl.hcxt = protected_context;
	protected_map = hash_create("privacy protected tables", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* the load's own query passes the executor hooks: they see "loading" */
	protected_loading = true;
	PG_TRY();
	{
		catalog_become_owner(&st);
		if (SPI_execute("SELECT p.tbl::pg_catalog.oid, a.attnum, c.col::pg_catalog.text, c.category"
						"  FROM " PRIVACY_SCHEMA ".protected_tables p"
						"  LEFT JOIN " PRIVACY_SCHEMA ".column_categories c ON c.tbl OPERATOR(pg_catalog.=) p.tbl"
						"  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.tbl"
						"        AND a.attname OPERATOR(pg_catalog.=) c.col AND NOT a.attisdropped"
						" ORDER BY 1, 2", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "protected table lookup failed");
		old = MemoryContextSwitchTo(protected_context);
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
			Datum		attnum = SPI_getbinval(tup, desc, 2, &isnull);
			bool		found;
			CatalogRelation *cr = hash_search(protected_map, &relid, HASH_ENTER, &found);

			if (!found)
			{
				cr->ncolumns = 0;
				cr->maxcolumns = 4;
				cr->attnums = palloc(sizeof(AttrNumber) * cr->maxcolumns);
				cr->columns = palloc(sizeof(char *) * cr->maxcolumns);
				cr->categories = palloc(sizeof(char *) * cr->maxcolumns);
			}
			if (!isnull && cr->ncolumns == cr->maxcolumns)
			{
				cr->maxcolumns *= 2;
				cr->attnums = repalloc(cr->attnums, sizeof(AttrNumber) * cr->maxcolumns);
				cr->columns = repalloc(cr->columns, sizeof(char *) * cr->maxcolumns);
				cr->categories = repalloc(cr->categories, sizeof(char *) * cr->maxcolumns);
			}
			if (!isnull)
			{
				cr->attnums[cr->ncolumns] = DatumGetInt16(attnum);
				cr->columns[cr->ncolumns] = SPI_getvalue(tup, desc, 3);
				cr->categories[cr->ncolumns] = SPI_getvalue(tup, desc, 4);
				cr->ncolumns++;
			}
		}
		MemoryContextSwitchTo(old);
		catalog_restore_user(&st);
		protected_generation = generation;
	}
	PG_FINALLY();
	{
		protected_loading = false;
	}
	PG_END_TRY();
}

bool
catalog_protected_ready(void)
{
	if (protected_loading)
		return false;
	if (protected_generation != catalog_generation || !protected_here)
		load_protected();
	if (!protected_here)
		return false;
	catalog_accept_invalidations();
	if (protected_generation != catalog_generation)
		load_protected();
	return protected_here && protected_map != NULL;
}

/*
 * Is the table in privacy.protected_tables as of now (this transaction's
 * own writes included)?  Read with a fresh catalog snapshot, not the map:
 * the map is rebuilt per catalog generation, and a statement that protects
 * a table writes into it while the map is being used.
 */
bool
catalog_is_protected_now(Oid relid)
{
	Oid			nsp = get_namespace_oid(PRIVACY_SCHEMA, true);
	Oid			tbl;
	Oid			pkey;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	if (!OidIsValid(nsp) || !OidIsValid(tbl = get_relname_relid("protected_tables", nsp)) ||
		!OidIsValid(pkey = get_relname_relid("protected_tables_pkey", nsp)))
		return false;
	rel = table_open(tbl, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, pkey, true, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Statements that PostgreSQL runs without a snapshot (PlannedStmtRequiresSnapshot):
 * BEGIN ISOLATION LEVEL, SET TRANSACTION, SET, SHOW, LOCK and the like.
 * The hooks run no catalog query of ours for them: a query would take the
 * transaction's first snapshot, after which SET TRANSACTION ISOLATION LEVEL
 * is refused ("must be called before any query"), and they touch no
 * personal data.
 */
bool
catalog_statement_without_snapshot(Node *utility)
{
	if (utility == NULL)
		return false;
	switch (nodeTag(utility))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_LockStmt:
		case T_ConstraintsSetStmt:
		case T_ListenStmt:
		case T_NotifyStmt:
		case T_UnlistenStmt:
		case T_CheckPointStmt:
		case T_DiscardStmt:
			return true;
		default:
			return false;
	}
}

bool
catalog_any_protected(void)
{
	return protected_map != NULL && hash_get_num_entries(protected_map) > 0;
}

/*
 * On a Citus worker, a shard of a protected distributed table
 * (<table>_<shardid>, beside the table's shell) is protected as its table
 * is: found on first use, checked against pg_dist_shard, and kept in the
 * map with the shard's own column numbers (a shard made after a column was
 * dropped numbers them differently).  A relation that is not such a shard
 * is remembered too (ncolumns -1), so that each is looked up once per
 * catalog generation.
 */
static CatalogRelation *
shard_entry(Oid relid)
{
	char	   *name = get_rel_name(relid);
	Oid			nsp;
	size_t		len;
	size_t		digits = 0;
	char	   *base;
	Oid			base_relid;
	CatalogRelation *parent;
	CatalogRelation *cr;
	bool		found;
	bool		is_shard = false;
	MemoryContext old;

	if (name == NULL)
		return NULL;
	len = strlen(name);
	while (digits < len && name[len - 1 - digits] >= '0' && name[len - 1 - digits] <= '9')
		digits++;
	if (digits == 0 || digits + 1 >= len || name[len - 1 - digits] != '_')
		return NULL;
	nsp = get_rel_namespace(relid);
	base = pnstrdup(name, len - 1 - digits);
	base_relid = get_relname_relid(base, nsp);
	if (!OidIsValid(base_relid) ||
		(parent = hash_search(protected_map, &base_relid, HASH_FIND, NULL)) == NULL ||
		parent->ncolumns < 0 ||
		!OidIsValid(get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE)))
		return NULL;
	{
		CatalogUserState st;
		Oid			argtypes[2] = {INT8OID, OIDOID};
		Datum		values[2];

		values[0] = DirectFunctionCall1(int8in, CStringGetDatum(name + len - digits));
		values[1] = ObjectIdGetDatum(base_relid);
		protected_loading = true;
		PG_TRY();
		{
			catalog_become_owner(&st);
			if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_dist_shard "
									  "WHERE shardid OPERATOR(pg_catalog.=) $1 "
									  "AND logicalrelid OPERATOR(pg_catalog.=) $2",
									  2, argtypes, values, NULL, true, 1) == SPI_OK_SELECT)
				is_shard = SPI_processed > 0;
			catalog_restore_user(&st);
		}
		PG_FINALLY();
		{
			protected_loading = false;
		}
		PG_END_TRY();
	}
	old = MemoryContextSwitchTo(protected_context);
	cr = hash_search(protected_map, &relid, HASH_ENTER, &found);
	cr->relid = relid;
	cr->ncolumns = is_shard ? 0 : -1;
	cr->maxcolumns = Max(parent->ncolumns, 1);
	cr->attnums = palloc(sizeof(AttrNumber) * cr->maxcolumns);
	cr->columns = palloc(sizeof(char *) * cr->maxcolumns);
	cr->categories = palloc(sizeof(char *) * cr->maxcolumns);
	if (is_shard)
	{
		int			i;

		for (i = 0; i < parent->ncolumns; i++)
		{
			AttrNumber	att = get_attnum(relid, parent->columns[i]);

			if (att == InvalidAttrNumber)
				continue;
			cr->attnums[cr->ncolumns] = att;
			cr->columns[cr->ncolumns] = pstrdup(parent->columns[i]);
			cr->categories[cr->ncolumns] = pstrdup(parent->categories[i]);
			cr->ncolumns++;
		}
	}
	MemoryContextSwitchTo(old);
	return is_shard ? cr : NULL;
}

const CatalogRelation *
catalog_protected_relation(Oid relid)
{
	CatalogRelation *cr;

	if (protected_map == NULL || protected_loading)
		return NULL;
	cr = hash_search(protected_map, &relid, HASH_FIND, NULL);
	if (cr != NULL)
		return cr->ncolumns < 0 ? NULL : cr;
	if (hash_get_num_entries(protected_map) == 0 || !citus_loaded())
		return NULL;
	return shard_entry(relid);
}
