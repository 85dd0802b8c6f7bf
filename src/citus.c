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
#include "utils/acl.h"
#include "optimizer/optimizer.h"
#include "utils/array.h"
#include "commands/trigger.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"

/* a change that came through the outbox is being applied (12_citus.sql) */
static bool citus_applying = false;
/* a worker serves the subject report's query (the transaction long) */
static bool citus_report = false;
/* this backend is the coordinator's key service, creating a key itself */
static bool citus_serving_key = false;

static ProcessUtility_hook_type prev_process_utility = NULL;

static char *citus_run_on_node(const char *host, int32 port, const char *command, bool *ok);
static bool citus_distributed_relation(Oid relid);
/* the bulk path for subjects' keys is at work (its own queries are not batched) */
static bool citus_batching = false;

/* Is this worker serving the subject report's query? */
bool
citus_serving_report(void)
{
	return citus_report;
}

/* ------------------------------------------------------------------------
 * Who may insert without a purpose on a worker.
 *
 * Citus evaluates an INSERT's values on the coordinator and sends the shard
 * an INSERT with no place for the purpose marker (below), so a worker takes
 * an INSERT without a purpose as forwarded: the coordinator checked it (the
 * distributed table is protected there too).  Citus names its connections
 * application_name 'citus_internal gpid=<nodeid * 10^10 + pid>', which any
 * client can set as well, so the name is only a claim.  The worker checks
 * it once per connection and catalog generation: it asks the node the gpid
 * names (over its own connection, as the extension's owner, like the key
 * service) whether its
 * backend <pid> is, right now, in a transaction whose INSERT passed the
 * purpose check as the role the worker's session runs as.  That node
 * publishes exactly this in shared memory (citus_publish_forwarding) when
 * its purpose check passes for an INSERT, for the rest of that
 * transaction.  A made-up gpid, a session that ended, one that declared no
 * purpose or inserts nothing, or another role's session is not vouched for,
 * and the INSERT must declare its purpose like any other.  What a forged
 * claim can still win is what the role's own vouched session has: it holds
 * a purpose for inserting and is inserting through the coordinator then;
 * and, the vouch being kept for the connection, it keeps that until the
 * extension's catalog next changes (a purpose revoked, for one), even
 * after the vouched session ended.
 * ------------------------------------------------------------------------
 */
typedef struct CitusForwardSlot
{
	slock_t		mutex;
	int			pid;			/* the backend that published, 0: none */
	LocalTransactionId lxid;	/* in this transaction */
	char		role[NAMEDATALEN];	/* as this role */
} CitusForwardSlot;

static CitusForwardSlot *forward_slots = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/*
 * this backend's vouched claim: the gpid and the role it was vouched for,
 * under the catalog generation of then (a purpose revoked since, or any
 * change of the extension's catalog, has it vouched for again)
 */
static uint64 vouched_gpid = 0;
static Oid	vouched_role = InvalidOid;
static uint64 vouched_generation = 0;

#define CITUS_GPID_FACTOR UINT64CONST(10000000000)
#define CITUS_APP_PREFIX "citus_internal gpid="

static Size
citus_shmem_size(void)
{
	return mul_size(MaxBackends, sizeof(CitusForwardSlot));
}

static void
citus_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(citus_shmem_size());
}

static void
citus_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	forward_slots = ShmemInitStruct("privacy citus forwarding", citus_shmem_size(), &found);
	if (!found)
	{
		int			i;

		for (i = 0; i < MaxBackends; i++)
		{
			SpinLockInit(&forward_slots[i].mutex);
			forward_slots[i].pid = 0;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

static CitusForwardSlot *
citus_slot_of(BackendId id)
{
	if (forward_slots == NULL || id == InvalidBackendId || id < 1 || id > MaxBackends)
		return NULL;
	return &forward_slots[id - 1];
}

/*
 * The purpose check passed for an INSERT on a protected table: say so, for
 * the rest of this transaction, to a worker that asks (citus_vouch).
 */
void
citus_publish_forwarding(void)
{
	CitusForwardSlot *slot;
	const char *role;

	if (MyProc == NULL || !citus_loaded() || (slot = citus_slot_of(MyBackendId)) == NULL)
		return;
	role = GetUserNameFromId(GetUserId(), true);
	if (role == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->pid = MyProcPid;
	slot->lxid = MyProc->lxid;
	strlcpy(slot->role, role, NAMEDATALEN);
	SpinLockRelease(&slot->mutex);
}

/*
 * privacy_internal.citus_vouch(gpid, role), on the node the gpid names: is
 * its backend in a transaction whose INSERT passed the purpose check as
 * that role?  EXECUTE: the extension's owner only.
 */
PG_FUNCTION_INFO_V1(privacy_citus_vouch);
Datum
privacy_citus_vouch(PG_FUNCTION_ARGS)
{
	int64		gpid = PG_GETARG_INT64(0);
	char	   *role = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			pid = (int) (gpid % (int64) CITUS_GPID_FACTOR);
	PGPROC	   *proc;
	CitusForwardSlot *slot;
	bool		vouched = false;

	if (gpid <= 0 || pid <= 0)
		PG_RETURN_BOOL(false);
	proc = BackendPidGetProc(pid);
	if (proc == NULL || (slot = citus_slot_of(proc->backendId)) == NULL)
		PG_RETURN_BOOL(false);
	SpinLockAcquire(&slot->mutex);
	vouched = slot->pid == pid && slot->lxid == proc->lxid &&
		proc->lxid != InvalidLocalTransactionId &&
		strncmp(slot->role, role, NAMEDATALEN) == 0;
	SpinLockRelease(&slot->mutex);
	PG_RETURN_BOOL(vouched);
}

/* Ask the node the gpid names to vouch for it (as the extension's owner). */
static bool
citus_ask_vouch(uint64 gpid)
{
	CatalogUserState st;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	const char *role = GetUserNameFromId(GetUserId(), true);
	char	   *host;
	int32		port;
	bool		isnull;
	bool		ok = false;
	char	   *answer = NULL;
	StringInfoData cmd;

	if (role == NULL || gpid / CITUS_GPID_FACTOR > PG_INT32_MAX)
		return false;
	values[0] = Int32GetDatum((int32) (gpid / CITUS_GPID_FACTOR));
	initStringInfo(&cmd);
	appendStringInfo(&cmd, "SELECT %s.citus_vouch(" UINT64_FORMAT ", %s)",
					 PRIVACY_INTERNAL_SCHEMA, gpid, quote_literal_cstr(role));
	catalog_become_owner(&st);
	if (SPI_execute_with_args("SELECT nodename, nodeport FROM pg_catalog.pg_dist_node "
							  "WHERE nodeid OPERATOR(pg_catalog.=) $1 AND isactive",
							  1, argtypes, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		host = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		port = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		answer = citus_run_on_node(host, port, cmd.data, &ok);
	}
	ok = ok && answer != NULL && strcmp(answer, "t") == 0;
	catalog_restore_user(&st);
	return ok;
}

/*
 * A query the coordinator sent reaches a worker added after the extension
 * was attached, which has none of its catalog (Citus gives no hook when a
 * node is added: citus_add_node is a function call): refuse, saying what to
 * run, rather than "purpose does not exist".  A worker is attached once the
 * outbox's CAPTURE change (privacy.citus_attach) has put the capture
 * trigger on its copy of the catalog; known once per backend.
 */
static void
citus_require_attached_node(void)
{
	static bool attached = false;
	bool		missing = false;
	bool		isnull;
	CatalogUserState st;

	if (attached)
		return;
	catalog_become_owner(&st);
	if (SPI_execute("SELECT (SELECT groupid FROM pg_catalog.pg_dist_local_group) OPERATOR(pg_catalog.<>) 0 "
					"AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) "
					"'" PRIVACY_SCHEMA ".categories'::pg_catalog.regclass AND tgname OPERATOR(pg_catalog.=) 'citus_capture')",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		missing = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
	catalog_restore_user(&st);
	if (missing)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this Citus node has not received the privacy extension's catalog"),
				 errdetail("The node was added to the cluster after the extension was attached: it has none of the categories, purposes, consents and keys the coordinator's query needs."),
				 errhint("On the coordinator, run SELECT privacy.citus_attach(); after citus_add_node.")));
	attached = true;
}

/*
 * An INSERT that a Citus coordinator forwards to a shard, with no purpose
 * declared here: the claim of the connection's application_name, vouched
 * for by the node it names (once per connection, role and catalog
 * generation).
 */
bool
citus_forwarded_insert(void)
{
	const char *app;
	uint64		gpid;
	char	   *end;

	if (!citus_loaded() || (privacy_purpose != NULL && privacy_purpose[0] != '\0'))
		return false;
	app = GetConfigOption("application_name", true, false);
	if (app == NULL || strncmp(app, CITUS_APP_PREFIX, strlen(CITUS_APP_PREFIX)) != 0)
		return false;
	errno = 0;
	gpid = strtou64(app + strlen(CITUS_APP_PREFIX), &end, 10);
	if (errno != 0 || *end != '\0' || gpid == 0)
		return false;
	catalog_accept_invalidations();
	if (gpid == vouched_gpid && GetUserId() == vouched_role &&
		vouched_generation == catalog_generation)
		return true;
	citus_require_attached_node();
	if (!citus_ask_vouch(gpid))
		return false;
	vouched_gpid = gpid;
	vouched_role = GetUserId();
	vouched_generation = catalog_generation;
	return true;
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
 * One command on another node, over a connection of its own
 * (pg_catalog.master_run_on_worker), as the current user (the callers are
 * under catalog_become_owner): its answer, in the current memory context,
 * and in *ok whether it succeeded.
 */
static char *
citus_run_on_node(const char *host, int32 port, const char *command, bool *ok)
{
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	Datum		h = CStringGetTextDatum(host);
	Datum		p = Int32GetDatum(port);
	Datum		c = CStringGetTextDatum(command);
	bool		isnull;

	values[0] = PointerGetDatum(construct_array(&h, 1, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(&p, 1, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(&c, 1, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT success, result FROM pg_catalog.master_run_on_worker($1, $2, $3, false)",
							  3, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not reach the Citus node %s:%d", host, port);
	*ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
}

/*
 * One request to the coordinator's key service, as the extension's owner:
 * its answer (errors if it fails).
 */
static char *
citus_key_service(const char *command)
{
	CatalogUserState st;
	char	   *host;
	int32		port;
	bool		isnull;
	bool		ok;
	char	   *result;
	MemoryContext outer = CurrentMemoryContext;

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
	result = citus_run_on_node(host, port, command, &ok);
	if (!ok || result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Citus coordinator could not create a data key"),
				 errdetail("The coordinator %s:%d answered: %s", host, port, result ? result : "nothing"),
				 errhint("On Citus, data keys are created by the coordinator: it must be reachable from every node as the extension's owner.")));
	result = MemoryContextStrdup(outer, result);
	catalog_restore_user(&st);
	return result;
}

static void
append_subject_hash(StringInfo buf, const unsigned char *hash)
{
	int			i;

	appendStringInfoString(buf, "\\x");
	for (i = 0; i < PRIVACY_SUBJECT_HASH_BYTES; i++)
		appendStringInfo(buf, "%02x", hash[i]);
}

/*
 * keys_create_hook: on an attached cluster, the coordinator creates the
 * key; returns its id, or 0 to let keys.c create it here (no Citus, or
 * this backend is the coordinator's key service).
 */
static uint32
citus_create_key_remote(char scope, const char *name, const unsigned char *subject_hash)
{
	StringInfoData cmd;
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
		appendStringInfoString(&cmd, "'");
		append_subject_hash(&cmd, subject_hash);
		appendStringInfoString(&cmd, "'::bytea)");
	}
	else
		appendStringInfoString(&cmd, "NULL)");
	return (uint32) pg_strtoint32(citus_key_service(cmd.data));
}

/*
 * The bulk path for new subjects' keys.  A worker seals a row's values
 * under its subject's key and asks the coordinator for each key it lacks,
 * one round trip and one distributed transaction per new subject.  So,
 * on the coordinator, before Citus plans a multi-row INSERT ... VALUES on a
 * protected distributed table with an encrypted column, the subjects of
 * its rows whose key is missing are sent to the key service in one request
 * (privacy_internal.citus_create_keys): the keys are committed there and
 * reach every node in one transaction, and the workers find them.  What
 * this misses (a subject computed by the shard, a single row) the worker
 * still asks for one by one.
 */
bool		privacy_citus_batch_keys = true;

/* The text of the subject a VALUES entry holds (NULL: unknown here). */
static char *
citus_subject_text(Node *expr, ParamListInfo params)
{
	Oid			typoutput;
	bool		typisvarlena;
	Datum		value;
	Oid			type;
	char	   *str;
	int			n;

	if (IsA(expr, Param) && ((Param *) expr)->paramkind == PARAM_EXTERN && params != NULL &&
		params->paramFetch == NULL && ((Param *) expr)->paramid > 0 &&
		((Param *) expr)->paramid <= params->numParams)
	{
		ParamExternData *prm = &params->params[((Param *) expr)->paramid - 1];

		if (prm->isnull || prm->ptype != ((Param *) expr)->paramtype)
			return NULL;
		value = prm->value;
		type = prm->ptype;
	}
	else
	{
		expr = eval_const_expressions(NULL, expr);
		if (!IsA(expr, Const) || ((Const *) expr)->constisnull)
			return NULL;
		value = ((Const *) expr)->constvalue;
		type = ((Const *) expr)->consttype;
	}
	getTypeOutputInfo(type, &typoutput, &typisvarlena);
	str = OidOutputFunctionCall(typoutput, value);
	/* as the seal trigger: subject::text drops char(n) padding */
	if (type == BPCHAROID)
	{
		n = strlen(str);
		while (n > 0 && str[n - 1] == ' ')
			str[--n] = '\0';
	}
	return str;
}

static void
citus_batch_subject_keys(Query *parse, ParamListInfo params)
{
	RangeTblEntry *target;
	RangeTblEntry *values = NULL;
	Index		values_rti = 0;
	AttrNumber	subject_att = InvalidAttrNumber;
	AttrNumber	subject_col = InvalidAttrNumber;
	bool		encrypted = false;
	bool		coordinator;
	ListCell   *lc;
	Index		rti = 0;
	StringInfoData cmd;
	int			missing = 0;

	if (!privacy_citus_batch_keys || parse->resultRelation <= 0 ||
		!catalog_protected_ready() || !catalog_any_protected())
		return;
	target = rt_fetch(parse->resultRelation, parse->rtable);
	if (catalog_protected_relation(target->relid) == NULL)
		return;
	/*
	 * Only for an INSERT that will pass its checks: the planner runs before
	 * them, and keys are not made for whoever merely names subjects.
	 */
	if (pg_class_aclcheck(target->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		consent_purpose_verdict(NULL) != PURPOSE_ALLOWED)
		return;
	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		rti++;
		if (rte->rtekind == RTE_VALUES)
		{
			if (values != NULL)
				return;
			values = rte;
			values_rti = rti;
		}
	}
	if (values == NULL || list_length(values->values_lists) < 2 ||
		!citus_distributed_relation(target->relid))
		return;
	/* the subject column, as the seal trigger names it */
	{
		Relation	rel = RelationIdGetRelation(target->relid);
		int			i;

		if (rel == NULL)
			return;
		for (i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *tg = &rel->trigdesc->triggers[i];

			if (strcmp(tg->tgname, "privacy_seal_row") == 0 && tg->tgnargs == 1)
			{
				subject_att = get_attnum(target->relid, tg->tgargs[0]);
				break;
			}
		}
		RelationClose(rel);
	}
	if (subject_att <= 0)
		return;
	foreach(lc, parse->targetList)
	{
		TargetEntry *te = lfirst_node(TargetEntry, lc);

		if (te->resjunk)
			continue;
		if (types_is_encrypted(exprType((Node *) te->expr)))
			encrypted = true;
		if (te->resno == subject_att)
		{
			if (!IsA(te->expr, Var) || ((Var *) te->expr)->varno != values_rti)
				return;
			subject_col = ((Var *) te->expr)->varattno;
		}
	}
	if (!encrypted || subject_col <= 0 || !citus_attached(&coordinator) ||
		(coordinator && catalog_written_in_transaction()))
		return;

	initStringInfo(&cmd);
	appendStringInfo(&cmd, "SELECT %s.citus_create_keys(ARRAY[", PRIVACY_INTERNAL_SCHEMA);
	foreach(lc, values->values_lists)
	{
		List	   *row = (List *) lfirst(lc);
		char	   *subject;
		unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

		if (list_length(row) < subject_col ||
			(subject = citus_subject_text(list_nth(row, subject_col - 1), params)) == NULL)
			continue;
		keys_subject_hash(subject, strlen(subject), hash);
		if (keys_subject_key_hashed(hash, false) != 0)
			continue;
		appendStringInfoString(&cmd, missing++ ? ", '" : "'");
		append_subject_hash(&cmd, hash);
		appendStringInfoString(&cmd, "'::bytea");
	}
	appendStringInfoString(&cmd, "])");
	/* one key: what the worker would ask for costs the same */
	if (missing >= 2)
		(void) citus_key_service(cmd.data);
}

/*
 * The key service, on the coordinator: create (or find) the active key of
 * a category, a subject or an internal use, committed with the connection's
 * own transaction.  Its capture trigger writes to the outbox, a Citus
 * reference table, from what Citus sees as one of its own backends:
 * nested distributed execution is allowed for that.
 */
PG_FUNCTION_INFO_V1(privacy_citus_create_key);
PG_FUNCTION_INFO_V1(privacy_citus_create_keys);

static uint32
citus_serve_key(const char *scope, const char *name, bytea *hash)
{
	if (hash && VARSIZE_ANY_EXHDR(hash) != PRIVACY_SUBJECT_HASH_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a subject hash has %d bytes", PRIVACY_SUBJECT_HASH_BYTES)));
	if (strcmp(scope, "category") == 0 && name)
		return keys_category_key(name);
	else if (strcmp(scope, "internal") == 0 && name)
		return keys_internal_key_id(name);
	else if (strcmp(scope, "subject") == 0 && hash)
		return keys_subject_key_by_hash((const unsigned char *) VARDATA_ANY(hash));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid data key request")));
	return 0;					/* keep the compiler quiet */
}

/*
 * Both entry points: create (or find) keys, committed with the connection's
 * own transaction.  With a subject-hash array (citus_create_keys), the keys
 * of all those subjects, in keys.c's batches; returns how many subjects.
 */
static Datum
citus_serve_keys(FunctionCallInfo fcinfo, bool many)
{
	int			nest;
	volatile int32 result = 0;

	nest = NewGUCNestLevel();
	(void) set_config_option("citus.allow_nested_distributed_execution", "on",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	citus_serving_key = true;
	PG_TRY();
	{
		if (!many)
			result = (int32) citus_serve_key(text_to_cstring(PG_GETARG_TEXT_PP(0)),
											 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
											 PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2));
		else
		{
			ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
			Datum	   *elems;
			bool	   *nulls;
			int			n;
			int			i;

			deconstruct_array(arr, BYTEAOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
			for (i = 0; i < n; i++)
				if (!nulls[i])
				{
					(void) citus_serve_key("subject", NULL, DatumGetByteaPP(elems[i]));
					result++;
				}
		}
	}
	PG_FINALLY();
	{
		citus_serving_key = false;
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nest);
	PG_RETURN_INT32(result);
}

Datum
privacy_citus_create_key(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	return citus_serve_keys(fcinfo, false);
}

Datum
privacy_citus_create_keys(PG_FUNCTION_ARGS)
{
	return citus_serve_keys(fcinfo, true);
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
	if (!citus_looking_up && !citus_batching && IsTransactionState() &&
		parse->commandType == CMD_INSERT && parse->rtable != NIL && citus_loaded() &&
		OidIsValid(get_extension_oid("citus", true)))
	{
		citus_batching = true;
		PG_TRY();
		{
			citus_batch_subject_keys(parse, boundParams);
		}
		PG_FINALLY();
		{
			citus_batching = false;
		}
		PG_END_TRY();
	}
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

				citus_require_attached_node();
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
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = citus_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = citus_shmem_startup;
}
