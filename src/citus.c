/*
 * citus.c — scale-out on Citus (issue #16).
 *
 * Citus is not linked or required: everything here is reached through SQL
 * (Citus's catalog tables and functions), and does nothing in a database
 * where the extension has not been attached to a Citus cluster with
 * privacy.citus_attach() (sql/install/12_citus.sql).
 *
 * One vocabulary and one key set for the cluster:
 * - the extension's catalog is kept alike on every node by the outbox of
 *   12_citus.sql; this file holds the flag that marks a change being applied
 *   there (the capture triggers stay silent, the consent ledger's guard lets
 *   the copy through);
 * - data keys come from the coordinator: keys.c calls keys_create_hook
 *   before it creates a key, and on an attached cluster this file asks the
 *   coordinator to create it, over a connection of its own
 *   (pg_catalog.master_run_on_worker), as the extension's owner.  The key is
 *   committed there and reaches every node through the outbox before the
 *   caller goes on, so the node that asked reads it with a fresh snapshot,
 *   like every catalog read (catalog.c).  Keys are never made inside the
 *   caller's own transaction: a worker serving the same distributed
 *   transaction on another connection could not see such a key, and would
 *   wait for it.  A key made for a transaction that then aborts stays, unused
 *   (as a sequence number would).  The exception is a transaction that has
 *   changed the catalog itself: the key service could not see its changes
 *   (a category created and classified in one transaction), so it creates
 *   its keys, which reach the workers with the rest of its changes.
 *
 * May call: catalog, keys, consent.
 */
#include "privacy.h"

#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/inval.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "parser/parsetree.h"
#include "storage/proc.h"

/* a change that came through the outbox is being applied (12_citus.sql) */
static bool citus_applying = false;
/* a worker serves the subject report's query (the transaction long) */
static bool citus_report = false;
/* this backend is the coordinator's key service, creating a key itself */
static bool citus_serving_key = false;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Is this worker serving the subject report's query? */
bool
citus_serving_report(void)
{
	return citus_report;
}

/*
 * An INSERT that a Citus coordinator forwards to a shard: Citus evaluates
 * an INSERT's values on the coordinator and leaves no place in the shard
 * query for the purpose, so the worker does not ask for one again.  The
 * coordinator asked (the distributed table is protected there too).  Told
 * by the connection's application_name, which Citus sets; a role that sets
 * it itself on a worker may insert rows without declaring a purpose there,
 * never read one (the consent check and the decryption gate still ask).
 */
bool
citus_forwarded_insert(void)
{
	const char *app;

	if (!citus_loaded())
		return false;
	app = GetConfigOption("application_name", true, false);
	return app != NULL && strncmp(app, "citus_internal gpid=", 20) == 0 &&
		(privacy_purpose == NULL || privacy_purpose[0] == '\0');
}

/* Is Citus loaded in this server (cheap: one of its settings exists)? */
bool
citus_loaded(void)
{
	return GetConfigOption("citus.shard_count", true, false) != NULL;
}

bool
citus_applying_change(void)
{
	return citus_applying;
}

static void
citus_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		citus_applying = false;
		citus_report = false;
		consent_unlock_ledger(false);
	}
}

PG_FUNCTION_INFO_V1(privacy_citus_applying);
Datum
privacy_citus_applying(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(citus_applying);
}

/* Only the outbox's apply function may call it (EXECUTE: the owner only). */
PG_FUNCTION_INFO_V1(privacy_citus_set_applying);
Datum
privacy_citus_set_applying(PG_FUNCTION_ARGS)
{
	citus_applying = PG_GETARG_BOOL(0);
	consent_unlock_ledger(citus_applying);
	PG_RETURN_VOID();
}

/*
 * Whether this database's extension is attached to a Citus cluster (Citus
 * is installed here and the outbox is one of its tables), and whether this
 * node is its coordinator.  Asked when a key is about to be created: a
 * COPY of new subjects asks once per key, so the answer that Citus is not
 * installed is kept for the rest of the command (the catalog cannot change
 * under one command but by the command itself, and creating an extension
 * creates no data key).
 */
static bool
citus_attached(bool *coordinator)
{
	static LocalTransactionId absent_lxid = InvalidLocalTransactionId;
	static CommandId absent_cid = InvalidCommandId;
	bool		attached = false;
	bool		isnull;
	CatalogUserState st;

	*coordinator = false;
	if (absent_lxid == MyProc->lxid && absent_cid == GetCurrentCommandId(false))
		return false;
	if (!OidIsValid(get_extension_oid("citus", true)))
	{
		absent_lxid = MyProc->lxid;
		absent_cid = GetCurrentCommandId(false);
		return false;
	}
	catalog_become_owner(&st);
	if (SPI_execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition "
					"WHERE logicalrelid OPERATOR(pg_catalog.=) "
					"pg_catalog.to_regclass('" PRIVACY_INTERNAL_SCHEMA ".citus_outbox')), "
					"(SELECT groupid FROM pg_catalog.pg_dist_local_group) OPERATOR(pg_catalog.=) 0",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		attached = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		*coordinator = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) && !isnull;
	}
	catalog_restore_user(&st);
	return attached;
}

/*
 * keys_create_hook: on an attached cluster, the coordinator creates the
 * key; returns its id, or 0 to let keys.c create it here (no Citus, or
 * this backend is the coordinator's key service).
 */
static uint32
citus_create_key_remote(char scope, const char *name, const unsigned char *subject_hash)
{
	CatalogUserState st;
	StringInfoData cmd;
	char	   *host;
	int32		port;
	bool		isnull;
	bool		ok;
	char	   *result;
	uint32		key_id;
	bool		coordinator;

	/*
	 * A transaction on the coordinator that changed the catalog itself (a
	 * category created, then classified) creates its keys too: the coordinator's key service
	 * could not see what it has not committed, and the keys travel to the
	 * workers with the rest of its changes.
	 */
	if (citus_serving_key || !citus_attached(&coordinator) ||
		(coordinator && catalog_written_in_transaction()))
		return 0;

	initStringInfo(&cmd);
	appendStringInfo(&cmd, "SELECT %s.citus_create_key(%s, %s, ", PRIVACY_INTERNAL_SCHEMA,
					 quote_literal_cstr(scope == 'c' ? "category" : scope == 's' ? "subject" : "internal"),
					 name ? quote_literal_cstr(name) : "NULL");
	if (subject_hash)
	{
		int			i;

		appendStringInfoString(&cmd, "'\\x");
		for (i = 0; i < PRIVACY_SUBJECT_HASH_BYTES; i++)
			appendStringInfo(&cmd, "%02x", subject_hash[i]);
		appendStringInfoString(&cmd, "'::bytea)");
	}
	else
		appendStringInfoString(&cmd, "NULL)");

	/* as the extension's owner: the key service is not for other roles */
	catalog_become_owner(&st);
	if (SPI_execute("SELECT nodename, nodeport FROM pg_catalog.pg_dist_node "
					"WHERE groupid OPERATOR(pg_catalog.=) 0 AND isactive "
					"AND noderole OPERATOR(pg_catalog.=) 'primary' LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_node");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot create a data key: the Citus coordinator is not in the cluster's metadata"),
				 errdetail("On Citus, data keys are created by the coordinator, so that every node has the same keys."),
				 errhint("On the coordinator, run SELECT citus_set_coordinator_host('<host>', <port>).")));
	host = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	port = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	{
		Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
		Datum		values[3];
		Datum		h = CStringGetTextDatum(host);
		Datum		p = Int32GetDatum(port);
		Datum		c = CStringGetTextDatum(cmd.data);

		values[0] = PointerGetDatum(construct_array(&h, 1, TEXTOID, -1, false, TYPALIGN_INT));
		values[1] = PointerGetDatum(construct_array(&p, 1, INT4OID, 4, true, TYPALIGN_INT));
		values[2] = PointerGetDatum(construct_array(&c, 1, TEXTOID, -1, false, TYPALIGN_INT));
		if (SPI_execute_with_args("SELECT success, result FROM pg_catalog.master_run_on_worker($1, $2, $3, false)",
								  3, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not reach the Citus coordinator to create a data key");
	}
	ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	result = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!ok || result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Citus coordinator could not create a data key"),
				 errdetail("The coordinator %s:%d answered: %s", host, port, result ? result : "nothing"),
				 errhint("On Citus, data keys are created by the coordinator: it must be reachable from every node as the extension's owner.")));
	key_id = (uint32) pg_strtoint32(result);
	catalog_restore_user(&st);
	return key_id;
}

/*
 * The key service, on the coordinator: create (or find) the active key of
 * a category, a subject or an internal use, committed with the connection's
 * own transaction.  Its capture trigger writes to the outbox, a Citus
 * reference table, from what Citus sees as one of its own backends:
 * nested distributed execution is allowed for that.
 */
PG_FUNCTION_INFO_V1(privacy_citus_create_key);
Datum
privacy_citus_create_key(PG_FUNCTION_ARGS)
{
	char	   *scope;
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bytea	   *hash = PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2);
	int			nest;
	uint32		key_id;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	scope = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (hash && VARSIZE_ANY_EXHDR(hash) != PRIVACY_SUBJECT_HASH_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a subject hash has %d bytes", PRIVACY_SUBJECT_HASH_BYTES)));
	nest = NewGUCNestLevel();
	(void) set_config_option("citus.allow_nested_distributed_execution", "on",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	citus_serving_key = true;
	PG_TRY();
	{
		if (strcmp(scope, "category") == 0 && name)
			key_id = keys_category_key(name);
		else if (strcmp(scope, "internal") == 0 && name)
			key_id = keys_internal_key_id(name);
		else if (strcmp(scope, "subject") == 0 && hash)
			key_id = keys_subject_key_by_hash((const unsigned char *) VARDATA_ANY(hash));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid data key request")));
	}
	PG_FINALLY();
	{
		citus_serving_key = false;
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nest);
	PG_RETURN_INT32((int32) key_id);
}

/*
 * After CREATE EXTENSION privacy on a Citus coordinator with workers (Citus
 * has created it on the workers by then), attach it to the cluster.
 */
static void
citus_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	if (IsA(parsetree, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) parsetree)->extname, "privacy") == 0 &&
		OidIsValid(get_extension_oid("citus", true)) &&
		OidIsValid(get_extension_oid("privacy", true)))
	{
		bool		coordinator_with_workers = false;
		bool		isnull;

		SPI_connect();
		if (SPI_execute("SELECT (SELECT groupid FROM pg_catalog.pg_dist_local_group) OPERATOR(pg_catalog.=) 0 "
						"AND EXISTS (SELECT FROM pg_catalog.pg_dist_node WHERE groupid OPERATOR(pg_catalog.<>) 0)",
						true, 1) == SPI_OK_SELECT && SPI_processed == 1)
			coordinator_with_workers = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
		if (coordinator_with_workers &&
			SPI_execute("SELECT " PRIVACY_SCHEMA ".citus_attach()", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "privacy.citus_attach() failed");
		SPI_finish();
	}
}

/* ------------------------------------------------------------------------
 * The purpose travels with the query.
 *
 * Citus sends a worker the query it deparsed from the coordinator's plan,
 * over connections of its own: a session's SET privacy.purpose does not
 * reach them (only SET LOCAL in a transaction block does, with
 * citus.propagate_set_commands = 'local').  So the coordinator writes the
 * purpose into the query itself: before Citus plans a query that reads a
 * distributed or reference table (this planner hook runs before Citus's,
 * privacy being loaded after citus), it ANDs the call
 * privacy_internal.citus_purpose('<purpose>') to the query's WHERE; Citus
 * deparses it into every shard query, and a worker's planner finds it and
 * sets privacy.purpose for that transaction (SET LOCAL), before the shard's
 * consent policy and the decryption gate ask.  The call itself is true.
 * What it sets is what a SET LOCAL would: anyone may write the call (it
 * declares a purpose, checked against the role's grants like any other),
 * and the worker runs the query as the coordinator session's role, which
 * Citus connects as.  An empty purpose travels too, so that a RESET on the
 * coordinator reaches a worker inside a transaction.
 * ------------------------------------------------------------------------
 */
static planner_hook_type prev_planner = NULL;

/* relid -> whether Citus distributes it (distributed or reference) */
typedef struct CitusRelEntry
{
	Oid			relid;
	bool		distributed;
} CitusRelEntry;
static HTAB *citus_rels = NULL;
static bool citus_looking_up = false;

static void
citus_relcache_callback(Datum arg, Oid relid)
{
	if (citus_rels == NULL)
		return;
	if (OidIsValid(relid))
		(void) hash_search(citus_rels, &relid, HASH_REMOVE, NULL);
	else
	{
		hash_destroy(citus_rels);
		citus_rels = NULL;
	}
}

static bool
citus_distributed_relation(Oid relid)
{
	CitusRelEntry *e;
	bool		found;

	if (citus_rels == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CitusRelEntry);
		ctl.hcxt = TopMemoryContext;
		citus_rels = hash_create("privacy citus relations", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(citus_rels, &relid, HASH_FIND, &found);
	if (found)
		return e->distributed;
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		values[1] = {ObjectIdGetDatum(relid)};
		bool		distributed = false;

		citus_looking_up = true;
		PG_TRY();
		{
			SPI_connect();
			if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_dist_partition "
									  "WHERE logicalrelid OPERATOR(pg_catalog.=) $1",
									  1, argtypes, values, NULL, true, 1) == SPI_OK_SELECT)
				distributed = SPI_processed > 0;
			SPI_finish();
		}
		PG_FINALLY();
		{
			citus_looking_up = false;
		}
		PG_END_TRY();
		e = hash_search(citus_rels, &relid, HASH_ENTER, &found);
		e->distributed = distributed;
		return distributed;
	}
}

/*
 * The marker function, or InvalidOid where the extension is not installed:
 * citus_purpose(text) for a SELECT, citus_purpose(text, anyelement) for an
 * UPDATE or DELETE, whose second argument is a column of the table changed
 * (Citus evaluates on the coordinator what in a modification names no
 * column, and the call would not reach the worker).
 */
static Oid
citus_purpose_function(int nargs)
{
	Oid			nsp = get_namespace_oid(PRIVACY_INTERNAL_SCHEMA, true);
	Oid			argtypes[2] = {TEXTOID, ANYELEMENTOID};

	if (!OidIsValid(nsp))
		return InvalidOid;
	return LookupFuncName(list_make2(makeString(PRIVACY_INTERNAL_SCHEMA), makeString("citus_purpose")),
						  nargs, argtypes, true);
}

typedef struct MarkerSearch
{
	Oid			fn;
	Oid			fn2;
	Const	   *found;
	bool		distributed;	/* (for the coordinator's side) */
} MarkerSearch;

static bool
find_marker(Node *node, MarkerSearch *ms)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && (((FuncExpr *) node)->funcid == ms->fn ||
								 ((FuncExpr *) node)->funcid == ms->fn2))
	{
		Node	   *arg = linitial(((FuncExpr *) node)->args);

		if (IsA(arg, Const) && !((Const *) arg)->constisnull)
		{
			ms->found = (Const *) arg;
			return true;
		}
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, find_marker, ms, 0);
	return expression_tree_walker(node, find_marker, ms);
}

/* Does the query (or a subquery, a CTE) read a table Citus distributes? */
static bool
find_distributed(Node *node, MarkerSearch *ms)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
		{
			Oid			nsp = get_rel_namespace(rte->relid);

			if (nsp != PG_CATALOG_NAMESPACE && !IsToastNamespace(nsp) &&
				citus_distributed_relation(rte->relid))
			{
				ms->distributed = true;
				return true;
			}
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, find_distributed, ms, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, find_distributed, ms);
}

static PlannedStmt *
citus_planner(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	if (!citus_looking_up && IsTransactionState() &&
		(parse->commandType == CMD_SELECT || parse->commandType == CMD_UPDATE ||
		 parse->commandType == CMD_DELETE) &&
		parse->rtable != NIL && citus_loaded() &&
		OidIsValid(get_extension_oid("citus", true)))
	{
		MarkerSearch ms = {citus_purpose_function(1), citus_purpose_function(2), NULL, false};

		if (OidIsValid(ms.fn) && OidIsValid(ms.fn2))
		{
			/* a worker: the purpose the coordinator wrote into the query */
			if (find_marker((Node *) parse, &ms))
			{
				char	   *purpose = TextDatumGetCString(ms.found->constvalue);

				(void) set_config_option("privacy.purpose", purpose, PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_LOCAL, true, 0, false);

				/*
				 * The subject report's query, sent by its SECURITY DEFINER
				 * function: Citus connects as the extension's owner, a
				 * superuser, who alone gets the built-in purpose's reach
				 * here (for anyone else it stays an ordinary purpose).
				 */
				if (strcmp(purpose, PRIVACY_SUBJECT_ACCESS_PURPOSE) == 0 && superuser())
					citus_report = true;
			}
			/* the coordinator (or any node a query on a distributed table starts on) */
			else if (parse->setOperations == NULL &&
					 find_distributed((Node *) parse, &ms))
			{
				FuncExpr   *call;
				Const	   *arg;

				arg = makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1,
								CStringGetTextDatum(privacy_purpose ? privacy_purpose : ""),
								false, false);
				if (parse->commandType == CMD_SELECT)
					call = makeFuncExpr(ms.fn, BOOLOID, list_make1(arg), InvalidOid,
										DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL);
				else
				{
					/* the subject's column would do; any live column does */
					RangeTblEntry *target = rt_fetch(parse->resultRelation, parse->rtable);
					Relation	rel = RelationIdGetRelation(target->relid);
					TupleDesc	desc = RelationGetDescr(rel);
					Var		   *col = NULL;
					int			i;

					for (i = 0; i < desc->natts && col == NULL; i++)
					{
						Form_pg_attribute att = TupleDescAttr(desc, i);

						if (!att->attisdropped)
							col = makeVar(parse->resultRelation, att->attnum, att->atttypid,
										  att->atttypmod, att->attcollation, 0);
					}
					RelationClose(rel);
					if (col == NULL)
						goto plan;
					call = makeFuncExpr(ms.fn2, BOOLOID, list_make2(arg, col), InvalidOid,
										DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL);
				}
				if (parse->jointree->quals == NULL)
					parse->jointree->quals = (Node *) call;
				else
					parse->jointree->quals = (Node *) makeBoolExpr(AND_EXPR,
																   list_make2(call, parse->jointree->quals), -1);
			}
		}
	}
plan:
	if (prev_planner)
		return prev_planner(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

/* privacy_internal.citus_purpose(purpose): the marker, true. */
PG_FUNCTION_INFO_V1(privacy_citus_purpose);
Datum
privacy_citus_purpose(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(true);
}

void
citus_init(void)
{
	RegisterXactCallback(citus_xact_callback, NULL);
	keys_create_hook = citus_create_key_remote;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = citus_process_utility;
	prev_planner = planner_hook;
	planner_hook = citus_planner;
	catalog_on_relcache(citus_relcache_callback);
}
