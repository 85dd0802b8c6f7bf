/*
 * consent.c — purposes: may this session use this category now?
 *
 * Every part that shows personal data (the decryption gate of the encrypted
 * types, the row-level security policies of protected tables, the subject
 * report) asks one question: has the session declared a purpose
 * (privacy.purpose), does the current role hold it, and is that purpose
 * allowed the category of the data?  consent_purpose_verdict() answers it and
 * consent_require_purpose() turns a "no" into the error an application
 * developer can act on, after telling the access log of the refusal
 * (consent_denied_hook): a refused read is logged as a denial.
 *
 * The answer is needed once per value, so it is cached per backend, keyed by
 * (role, purpose, category), and dropped whenever the catalog generation
 * moves (see catalog.c): a revoked purpose stops working at the next
 * statement, in every session.
 */
#include "privacy.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

typedef struct PurposeCacheKey
{
	Oid			roleid;
	char		purpose[NAMEDATALEN];
	char		category[NAMEDATALEN];
} PurposeCacheKey;

typedef struct PurposeCacheEntry
{
	PurposeCacheKey key;
	PurposeVerdict verdict;
} PurposeCacheEntry;

static HTAB *purpose_cache = NULL;
static uint64 purpose_cache_generation = 0;
static bool cache_has_snapshot_entries = false;

/* the last answer, checked before the hash table (0 = none) */
static PurposeCacheKey last_key;
static PurposeVerdict last_verdict;
static uint64 last_generation = 0;

/*
 * A verdict read under a REPEATABLE READ or SERIALIZABLE snapshot may be
 * older than the invalidations this backend has already consumed; it must
 * not outlive its transaction.
 */
static void
consent_xact_callback(XactEvent event, void *arg)
{
	if (cache_has_snapshot_entries &&
		(event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		 event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		 event == XACT_EVENT_PREPARE))
	{
		purpose_cache_generation = 0;
		last_generation = 0;
		cache_has_snapshot_entries = false;
	}
}

void
consent_init(void)
{
	RegisterXactCallback(consent_xact_callback, NULL);
}

static void
reset_cache(void)
{
	HASHCTL		ctl;

	if (purpose_cache != NULL)
		hash_destroy(purpose_cache);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(PurposeCacheKey);
	ctl.entrysize = sizeof(PurposeCacheEntry);
	ctl.hcxt = TopMemoryContext;
	purpose_cache = hash_create("privacy purpose cache", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	purpose_cache_generation = catalog_generation;
}

/*
 * Every operator and function is schema-qualified, so the caller's
 * search_path cannot substitute its own (the query runs as the schema owner).
 */
static PurposeVerdict
compute_verdict(Oid roleid, const char *purpose, const char *category)
{
	static const char *query =
		"SELECT pg_catalog.bool_or(pg_catalog.pg_has_role($2, rp.role::pg_catalog.oid, 'USAGE')), "
		"       $3 OPERATOR(pg_catalog.=) '' OR EXISTS ("
		"         SELECT 1 FROM " PRIVACY_SCHEMA ".purpose_categories pc "
		"          WHERE pc.purpose OPERATOR(pg_catalog.=) p.name "
		"            AND pc.category OPERATOR(pg_catalog.=) $3) "
		"       , $3 OPERATOR(pg_catalog.=) '' OR EXISTS (SELECT 1 FROM " PRIVACY_SCHEMA ".categories c "
		"          WHERE c.name OPERATOR(pg_catalog.=) $3) "
		"  FROM " PRIVACY_SCHEMA ".purposes p "
		"  LEFT JOIN " PRIVACY_SCHEMA ".role_purposes rp "
		"         ON rp.purpose OPERATOR(pg_catalog.=) p.name "
		" WHERE p.name OPERATOR(pg_catalog.=) $1 "
		" GROUP BY p.name";
	Oid			argtypes[3] = {TEXTOID, OIDOID, TEXTOID};
	Datum		values[3];
	CatalogUserState st;
	PurposeVerdict verdict;

	values[0] = CStringGetTextDatum(purpose);
	values[1] = ObjectIdGetDatum(roleid);
	values[2] = CStringGetTextDatum(category);

	catalog_become_owner(&st);
	if (SPI_execute_with_args(query, 3, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "purpose lookup failed");

	if (SPI_processed == 0)
		verdict = PURPOSE_UNKNOWN;
	else
	{
		bool		isnull;
		Datum		held = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		bool		is_held = (!isnull && DatumGetBool(held)) || superuser_arg(roleid);
		Datum		allowed = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		bool		allowed_null = isnull;

		Datum		known = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);

		if (!is_held)
			verdict = PURPOSE_NOT_HELD;
		else if (!DatumGetBool(known))
			verdict = PURPOSE_UNKNOWN_CATEGORY;
		else if (allowed_null || !DatumGetBool(allowed))
			verdict = PURPOSE_CATEGORY_NOT_ALLOWED;
		else
			verdict = PURPOSE_ALLOWED;
	}
	catalog_restore_user(&st);
	return verdict;
}

/*
 * category may be NULL: then the question is only whether the declared
 * purpose exists and the current role holds it.
 */
PurposeVerdict
consent_purpose_verdict(const char *category)
{
	PurposeCacheKey key;
	PurposeCacheEntry *entry;
	bool		found;

	if (privacy_purpose == NULL || privacy_purpose[0] == '\0')
		return PURPOSE_NOT_DECLARED;

	/*
	 * While report.c reads one subject's rows for privacy.subject_report(),
	 * the built-in purpose is allowed every category, whoever called the
	 * report; anywhere else it is an ordinary purpose (allowed nothing).
	 */
	if ((report_in_progress || citus_serving_report()) &&
		strcmp(privacy_purpose, PRIVACY_SUBJECT_ACCESS_PURPOSE) == 0)
		return PURPOSE_ALLOWED;

	catalog_accept_invalidations();
	if (purpose_cache == NULL || purpose_cache_generation != catalog_generation)
		reset_cache();

	/*
	 * The gate asks once per value, almost always the same question as the
	 * value before: answer that without building and hashing a key.
	 */
	if (last_generation != 0 && last_generation == purpose_cache_generation &&
		last_generation == catalog_generation &&
		last_key.roleid == GetOuterUserId() &&
		strcmp(last_key.purpose, privacy_purpose) == 0 &&
		strcmp(last_key.category, category ? category : "") == 0)
		return last_verdict;

	memset(&key, 0, sizeof(key));
	/*
	 * The role that asks is the session's current role outside any SECURITY
	 * DEFINER function: a definer's privileges do not lend it purposes.
	 */
	key.roleid = GetOuterUserId();
	strlcpy(key.purpose, privacy_purpose, NAMEDATALEN);
	if (category != NULL)
		strlcpy(key.category, category, NAMEDATALEN);

	entry = hash_search(purpose_cache, &key, HASH_FIND, NULL);
	if (entry != NULL)
	{
		last_key = key;
		last_verdict = entry->verdict;
		last_generation = catalog_generation;
		return entry->verdict;
	}

	{
		PurposeVerdict verdict = compute_verdict(key.roleid, key.purpose, key.category);

		/* an invalidation may have arrived while the catalog was read */
		if (purpose_cache_generation != catalog_generation)
			return verdict;
		entry = hash_search(purpose_cache, &key, HASH_ENTER, &found);
		entry->verdict = verdict;
		if (IsolationUsesXactSnapshot())
			cache_has_snapshot_entries = true;
		return verdict;
	}
}

/*
 * The reason a refusal is logged with (privacy.access_log.reason): a short,
 * fixed vocabulary.  A category that does not exist is allowed to no
 * purpose.
 */
const char *
consent_verdict_code(PurposeVerdict verdict)
{
	switch (verdict)
	{
		case PURPOSE_ALLOWED:
			break;
		case PURPOSE_NOT_DECLARED:
			return "no_purpose";
		case PURPOSE_UNKNOWN:
			return "unknown_purpose";
		case PURPOSE_NOT_HELD:
			return "purpose_not_held";
		case PURPOSE_UNKNOWN_CATEGORY:
		case PURPOSE_CATEGORY_NOT_ALLOWED:
			return "category_not_allowed";
	}
	return NULL;
}

void		(*consent_denied_hook) (PurposeVerdict verdict, const char *category, bool raising) = NULL;

/* The error of a "no", for whoever asked (privacy.check_purpose too). */
static void
raise_verdict(PurposeVerdict verdict, const char *category)
{
	switch (verdict)
	{
		case PURPOSE_ALLOWED:
			return;
		case PURPOSE_NOT_DECLARED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("no purpose declared for processing personal data"),
					 category ?
					 errdetail("Data of category \"%s\" is shown only for a declared purpose that allows it.", category) :
					 errdetail("Personal data is processed only for a declared purpose."),
					 errhint("Declare one with SET privacy.purpose = '...' (or SET LOCAL for one transaction); privacy.my_purposes lists the purposes your role holds.")));
			break;
		case PURPOSE_UNKNOWN:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("purpose \"%s\" does not exist", privacy_purpose),
					 errdetail("The setting privacy.purpose names a purpose that has not been created."),
					 errhint("privacy.my_purposes lists the purposes your role holds.")));
			break;
		case PURPOSE_NOT_HELD:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" does not hold purpose \"%s\"",
							GetUserNameFromId(GetOuterUserId(), false), privacy_purpose),
					 errhint("A member of privacy_admin can grant it with privacy.grant_purpose(role, purpose).")));
			break;
		case PURPOSE_UNKNOWN_CATEGORY:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("category \"%s\" does not exist", category),
					 errhint("privacy.my_purposes lists the categories each of your purposes may process.")));
			break;
		case PURPOSE_CATEGORY_NOT_ALLOWED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("purpose \"%s\" is not allowed category \"%s\"",
							privacy_purpose, category),
					 errhint("Declare a purpose that is allowed this category, or ask a member of privacy_admin to allow it with privacy.allow_category(purpose, category).")));
			break;
	}
}

/*
 * A refusal, told to the access log: before its error is raised (raising),
 * so that the log's entry is queued before the error aborts the
 * transaction, or as a value is masked.
 */
void
consent_note_refusal(PurposeVerdict verdict, const char *category, bool raising)
{
	if (verdict != PURPOSE_ALLOWED && consent_denied_hook != NULL)
		consent_denied_hook(verdict, category, raising);
}

/* Refuse to process personal data: logged, then the precise error. */
void
consent_refuse(PurposeVerdict verdict, const char *category)
{
	if (verdict == PURPOSE_ALLOWED)
		return;
	consent_note_refusal(verdict, category, true);
	raise_verdict(verdict, category);
}

/*
 * Every read or write of personal data asks here: a "no" is a refusal,
 * logged as a denial.
 */
void
consent_require_purpose(const char *category)
{
	consent_refuse(consent_purpose_verdict(category), category);
}

static const char *
text_arg_or_null(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * Asking is not processing: an application that checks its purpose is not
 * refused access to anything, so this "no" is not logged.
 */
PG_FUNCTION_INFO_V1(privacy_check_purpose);
Datum
privacy_check_purpose(PG_FUNCTION_ARGS)
{
	const char *category = text_arg_or_null(fcinfo, 0);

	raise_verdict(consent_purpose_verdict(category), category);
	PG_RETURN_TEXT_P(cstring_to_text(privacy_purpose));
}

PG_FUNCTION_INFO_V1(privacy_may_use);
Datum
privacy_may_use(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(consent_purpose_verdict(text_arg_or_null(fcinfo, 0)) == PURPOSE_ALLOWED);
}

/* ------------------------------------------------------------------------
 * Consent-aware row-level security
 * ------------------------------------------------------------------------
 */

/*
 * Called once per statement from the policy of every protected table (in an
 * InitPlan): raises the precise error when no purpose is declared or the
 * role does not hold it, and answers whether the purpose needs an active
 * consent (legal basis "consent") or only the absence of an objection.
 */
PG_FUNCTION_INFO_V1(privacy_consent_required);
Datum
privacy_consent_required(PG_FUNCTION_ARGS)
{
	static const char *query =
		"SELECT legal_basis OPERATOR(pg_catalog.=) 'consent' FROM " PRIVACY_SCHEMA ".purposes "
		" WHERE name OPERATOR(pg_catalog.=) $1";
	static char cached_purpose[NAMEDATALEN];
	static bool cached_required;
	static uint64 cached_generation = 0;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	CatalogUserState st;
	bool		isnull;
	bool		required = true;

	consent_require_purpose(NULL);
	/* once per statement and table, so remember it per catalog generation */
	if (cached_generation == catalog_generation && strcmp(cached_purpose, privacy_purpose) == 0)
		PG_RETURN_BOOL(cached_required);
	values[0] = CStringGetTextDatum(privacy_purpose);
	catalog_become_owner(&st);
	if (SPI_execute_with_args(query, 1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "purpose lookup failed");
	if (SPI_processed > 0)
		required = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	catalog_restore_user(&st);
	strlcpy(cached_purpose, privacy_purpose, NAMEDATALEN);
	cached_required = required;
	cached_generation = catalog_generation;
	PG_RETURN_BOOL(required);
}

/* WITH CHECK of protected tables: writing needs a purpose the role holds. */
PG_FUNCTION_INFO_V1(privacy_purpose_held);
Datum
privacy_purpose_held(PG_FUNCTION_ARGS)
{
	/* a row a Citus coordinator forwards: checked there (citus.c) */
	if (citus_forwarded_insert())
		PG_RETURN_BOOL(true);
	consent_require_purpose(NULL);
	PG_RETURN_BOOL(true);
}

/*
 * The consent ledger is append-only.  Only the erasure path (which reduces a
 * subject's entries to what proves consent was honoured) may change it, and
 * it does so by setting this flag for the duration of its own statement.
 */
static bool consent_ledger_unlocked = false;

/* On Citus, a worker's copy of the ledger follows the coordinator's (citus.c). */
void
consent_unlock_ledger(bool unlocked)
{
	consent_ledger_unlocked = unlocked;
}

PG_FUNCTION_INFO_V1(privacy_ledger_guard);
Datum
privacy_ledger_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "privacy_internal.ledger_guard() must be called as a trigger");
	if (!consent_ledger_unlocked)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s is append-only", RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("Consent history is evidence: entries are never changed or removed."),
				 errhint("Record a new event with privacy.grant_consent(), privacy.withdraw_consent(), privacy.object() or privacy.lift_objection().")));
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ? trigdata->tg_trigtuple : trigdata->tg_newtuple);
	return PointerGetDatum(NULL);
}

/*
 * Subjects arrive as text; integer subject columns compare with them as
 * int8 (policy and expression index), so that no row pays for a cast to text.
 * Only the canonical form int8out would print is accepted; anything else is
 * no integer subject (NULL).
 */
PG_FUNCTION_INFO_V1(privacy_subject_int8);
Datum
privacy_subject_int8(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int64		v;

	if (!consent_parse_int8(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &v))
		PG_RETURN_NULL();
	PG_RETURN_INT64(v);
}

/* ------------------------------------------------------------------------
 * Statements on protected tables declare a purpose before they run.
 *
 * The policy checks the purpose when it filters a row; a statement that
 * reaches no row (an empty table, a key that does not exist) would return
 * an empty result instead of the error.  The executor hook asks before any
 * row is read, for every protected table the statement touches where
 * row-level security applies to the current role.
 * ------------------------------------------------------------------------
 */
#include "executor/executor.h"
#include "utils/rls.h"

static ExecutorStart_hook_type prev_executor_start = NULL;

/* Every executor start: a statement boundary for the consent check's cache. */
uint64		consent_statement_serial = 0;

static void
consent_executor_start(QueryDesc *queryDesc, int eflags)
{
	consent_statement_serial++;
	if (IsTransactionState() && !(eflags & EXEC_FLAG_EXPLAIN_ONLY) &&
		queryDesc->plannedstmt != NULL)
	{
		ListCell   *lc;

		/* false while the map loads: its own query reads no protected table */
		if (catalog_protected_ready() && catalog_any_protected())
		{
			foreach(lc, queryDesc->plannedstmt->rtable)
			{
				RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

				if (rte->rtekind == RTE_RELATION &&
					catalog_protected_relation(rte->relid) != NULL &&
					check_enable_rls(rte->relid, InvalidOid, true) == RLS_ENABLED)
				{
					if (!(queryDesc->operation == CMD_INSERT && citus_forwarded_insert()))
					{
						consent_require_purpose(NULL);
						/* on Citus, for the worker the INSERT is forwarded to */
						if (queryDesc->operation == CMD_INSERT)
							citus_publish_forwarding();
					}
					break;
				}
			}
		}
	}
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

void
consent_install_hooks(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = consent_executor_start;
}

/*
 * The subject column of a protected table, as its policies name it: the
 * argument of their privacy_internal.visible() call.  PostgreSQL keeps the
 * policies right through a RENAME COLUMN and through dump and restore, so
 * this is how a rename is noticed.
 */
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_policy.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/fmgroids.h"

typedef struct VisibleCallSearch
{
	Oid			nsp;			/* privacy_internal */
	AttrNumber	attno;			/* the column, 0 = none yet */
	bool		unique;
} VisibleCallSearch;

static bool
find_visible_call(Node *node, VisibleCallSearch *search)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		FuncExpr   *f = (FuncExpr *) node;
		char	   *name = get_func_name(f->funcid);

		if (name != NULL && strcmp(name, "visible") == 0 &&
			get_func_namespace(f->funcid) == search->nsp)
		{
			List	   *vars = pull_vars_of_level((Node *) f->args, 0);
			ListCell   *lc;

			foreach(lc, vars)
			{
				Var		   *var = (Var *) lfirst(lc);

				if (!IsA(var, Var) || var->varno != 1)
					continue;
				if (search->attno != InvalidAttrNumber && search->attno != var->varattno)
					search->unique = false;
				search->attno = var->varattno;
			}
			return false;
		}
	}
	return expression_tree_walker(node, find_visible_call, (void *) search);
}

PG_FUNCTION_INFO_V1(privacy_policy_subject_column);
Datum
privacy_policy_subject_column(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *result = NULL;
	VisibleCallSearch search;

	search.nsp = get_namespace_oid(PRIVACY_INTERNAL_SCHEMA, false);
	search.attno = InvalidAttrNumber;
	search.unique = true;
	rel = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_policy_polrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, PolicyPolrelidPolnameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		int			att;

		for (att = Anum_pg_policy_polqual; att <= Anum_pg_policy_polwithcheck; att++)
		{
			bool		isnull;
			Datum		expr = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

			if (!isnull)
				(void) find_visible_call((Node *) stringToNode(TextDatumGetCString(expr)), &search);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (search.unique && search.attno > 0)
		result = get_attname(relid, search.attno, true);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_NAME(DatumGetName(DirectFunctionCall1(namein, CStringGetDatum(result))));
}

/*
 * privacy_consent_required, privacy_held_purpose and privacy_wanted_state
 * served the policies of release 0.2 (a subquery on a consent-state view);
 * its install script still names them, so they stay until no supported
 * release does.
 *
 * For the consent-state view the policies read: the declared purpose if
 * the role holds it, NULL otherwise (so the view shows nothing to a role
 * that merely sets the purpose).  Cheap enough for an index condition.
 */
extern Datum privacy_consent_required(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(privacy_held_purpose);
Datum
privacy_held_purpose(PG_FUNCTION_ARGS)
{
	if (consent_purpose_verdict(NULL) != PURPOSE_ALLOWED)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(privacy_purpose));
}

/* The consent state that makes a row visible for the declared purpose's
 * legal basis is 'granted'; for any other basis the state that hides it is
 * 'objected' (see the policy in the install script). */
PG_FUNCTION_INFO_V1(privacy_wanted_state);
Datum
privacy_wanted_state(PG_FUNCTION_ARGS)
{
	bool		required = DatumGetBool(DirectFunctionCall1(privacy_consent_required, (Datum) 0));

	PG_RETURN_TEXT_P(cstring_to_text(required ? "granted" : "objected"));
}

/*
 * Erasure reduces a subject's consent history to what proves consent was
 * honoured: each event keeps its purpose, action, time and source, the
 * subject becomes its keyed hash, and the evidence (which may identify the
 * person: a form, an IP address) is dropped.  The ledger guard lets this one
 * statement through, and nothing else.
 */
PG_FUNCTION_INFO_V1(privacy_reduce_ledger);
Datum
privacy_reduce_ledger(PG_FUNCTION_ARGS)
{
	/* prepared once a session: every erasure runs it (issue #19) */
	static SPIPlanPtr plan = NULL;
	text	   *subject = PG_GETARG_TEXT_PP(0);
	text	   *stand_in = PG_GETARG_TEXT_PP(1);
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	CatalogUserState st;
	uint64		n = 0;

	values[0] = PointerGetDatum(subject);
	values[1] = PointerGetDatum(stand_in);
	catalog_become_owner(&st);
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("UPDATE " PRIVACY_SCHEMA ".consent_events "
									"   SET subject = $2, evidence = NULL "
									" WHERE subject OPERATOR(pg_catalog.=) $1",
									2, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the reduction of the consent ledger");
		plan = p;
	}
	consent_ledger_unlocked = true;
	PG_TRY();
	{
		if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not reduce the consent ledger");
		n = SPI_processed;
	}
	PG_FINALLY();
	{
		consent_ledger_unlocked = false;
	}
	PG_END_TRY();
	catalog_restore_user(&st);
	PG_RETURN_INT64((int64) n);
}

/* The role that called, outside any SECURITY DEFINER function: the actor
 * recorded in receipts and logs. */
PG_FUNCTION_INFO_V1(privacy_caller);
Datum
privacy_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}
