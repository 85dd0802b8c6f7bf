/*
 * worker.c — the purge launcher and its workers, one database at a time.
 *
 * Like autovacuum: one launcher per cluster, a background worker registered
 * from _PG_init and connected to no database, lists pg_database (shared
 * catalog) and starts a short-lived worker per database (a dynamic
 * background worker, at most privacy.purge_workers at a time).  A worker
 * connects, looks whether the extension is installed and whether a purge is
 * due, runs CALL privacy.purge(...) -- exactly what a compliance officer or
 * pg_cron runs, in a portal, so that its batches commit one by one and the
 * run is logged in privacy.purge_runs with via = 'worker' -- writes one log
 * line and exits, telling the launcher when to come back.
 *
 * When a purge is due is kept in the database, not here: one interval after
 * the start of the last completed run (whoever ran it), or, before the
 * first, one interval after there was first something to purge (the oldest
 * retention rule, the oldest access-log batch).  A restart therefore does
 * not purge everything again, and a crashed or failed run does not count.
 *
 * Databases the launcher never enters: templates (CREATE DATABASE copies
 * template1 and refuses while anyone is connected to it), databases that
 * do not allow connections, and invalid ones (a DROP DATABASE interrupted
 * half-way).  DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE
 * and CREATE DATABASE ... TEMPLATE wait only 5 seconds for other sessions
 * and signal none of them but autovacuum's (CountOtherDBBackends): the
 * backend that runs one of them stops our worker in that database itself
 * (worker_stop_in_database, from an object-access and a utility hook), as
 * PostgreSQL 19 does for BGWORKER_INTERRUPTIBLE workers.  A worker stopped
 * or killed mid-purge leaves its run 'running'; the next run marks it
 * 'interrupted' and purges what is still due.
 *
 * A run says who started it (privacy.purge_runs: via, started_by), and
 * that is decided here, from the process that starts it, never from what
 * the caller passes: privacy_internal.purge_origin() answers via = 'worker'
 * only in a purge worker, and the role only as the session has it.
 */
#include "privacy.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define LAUNCHER_TYPE "privacy purge launcher"
#define WORKER_TYPE "privacy purge worker"
#define WORKER_FUNCTION "privacy_purge_worker_main"
#define MAX_BACKOFF_SECONDS 3600
/* the launcher looks for new databases at least this often */
#define LAUNCHER_NAP_MS 60000

void		privacy_purge_launcher_main(Datum arg);
void		privacy_purge_worker_main(Datum arg);

/* ------------------------------------------------------------------------
 * Shared memory: one slot per running worker.
 * ------------------------------------------------------------------------
 */
typedef enum PurgeVisit
{
	VISIT_NONE = 0,				/* the worker ended without a word (FATAL) */
	VISIT_NOT_INSTALLED,		/* no extension there */
	VISIT_NOT_DUE,
	VISIT_PURGED,
	VISIT_FAILED,
	VISIT_BUSY					/* another purge is running there */
} PurgeVisit;

typedef struct PurgeSlot
{
	bool		in_use;
	uint32		generation;		/* a worker writes only into its own use */
	Oid			dboid;
	pid_t		pid;			/* set by the worker while it runs */
	int			failures;		/* launcher -> worker: failed visits before */
	PurgeVisit	result;			/* worker -> launcher */
	TimestampTz next_visit;		/* worker -> launcher */
} PurgeSlot;

typedef struct PurgeShared
{
	LWLock	   *lock;
	uint32		generation;
	PurgeSlot	slots[PRIVACY_MAX_PURGE_WORKERS];
} PurgeShared;

/* What a worker finds in bgw_extra. */
typedef struct PurgeWorkerArgs
{
	Oid			dboid;
	uint32		generation;
} PurgeWorkerArgs;

static PurgeShared *purge_shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static object_access_hook_type prev_object_access = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
worker_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PurgeShared)));
	RequestNamedLWLockTranche("privacy purge", 1);
}

static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	purge_shared = ShmemInitStruct("privacy purge", sizeof(PurgeShared), &found);
	if (!found)
	{
		memset(purge_shared, 0, sizeof(PurgeShared));
		purge_shared->lock = &(GetNamedLWLockTranche("privacy purge"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ------------------------------------------------------------------------
 * Who started a run.
 * ------------------------------------------------------------------------
 */

/*
 * Is this process a purge worker?  Known by what the postmaster started it
 * as: a background worker running privacy_purge_worker_main of this
 * library, which only the launcher registers (pg_cron's workers, the access
 * log writer, the launcher and every client backend are not).
 */
static bool
is_purge_worker(void)
{
	return MyBackendType == B_BG_WORKER && MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "privacy") == 0 &&
		strcmp(MyBgworkerEntry->bgw_function_name, WORKER_FUNCTION) == 0;
}

/*
 * privacy_internal.purge_origin(via, caller) → (via, started_by): how a
 * purge run is recorded.  via is 'worker' in a purge worker and 'call'
 * everywhere else; asking for 'worker' elsewhere is refused, as is naming
 * a role other than the one that runs the purge (the session's current
 * role outside SECURITY DEFINER functions: purge_start, which calls this,
 * is one).
 */
PG_FUNCTION_INFO_V1(privacy_purge_origin);
Datum
privacy_purge_origin(PG_FUNCTION_ARGS)
{
	char	   *via = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *runner = GetUserNameFromId(GetOuterUserId(), false);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		worker = is_purge_worker();

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (via == NULL || (strcmp(via, "call") != 0 && strcmp(via, "worker") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid purge origin %s", via ? quote_literal_cstr(via) : "NULL"),
				 errhint("Leave via out: a purge you start is recorded as a call.")));
	if (strcmp(via, "worker") == 0 && !worker)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the purge worker records a purge run as the worker's"),
				 errdetail("A purge started by a role, from pg_cron or cron too, is recorded with via = 'call' and that role."),
				 errhint("Call privacy.purge() without via.")));
	if (!PG_ARGISNULL(1) && strcmp(NameStr(*PG_GETARG_NAME(1)), runner) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a purge run is recorded as started by the role that starts it"),
				 errdetail("Role \"%s\" starts this run, not \"%s\".", runner, NameStr(*PG_GETARG_NAME(1))),
				 errhint("Run CALL privacy.purge(): it records the role that runs it.")));
	values[0] = CStringGetTextDatum(worker ? "worker" : "call");
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(runner));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ------------------------------------------------------------------------
 * Commands that need a database to themselves.
 * ------------------------------------------------------------------------
 */

/*
 * Stop the purge workers in a database that a command of this backend needs
 * without other sessions.  The command waits 5 seconds for them to go
 * (CountOtherDBBackends); a worker stopped by SIGTERM aborts the batch it
 * is in, and its run is marked interrupted by the next one.  Only for
 * whoever may run the command: the owner of the database or a superuser.
 */
static void
worker_stop_in_database(Oid dboid, const char *command)
{
	pid_t		pids[PRIVACY_MAX_PURGE_WORKERS];
	int			npids = 0;
	int			i;

	if (purge_shared == NULL || !OidIsValid(dboid))
		return;
	if (!superuser() && !pg_database_ownercheck(dboid, GetUserId()))
		return;
	LWLockAcquire(purge_shared->lock, LW_SHARED);
	for (i = 0; i < PRIVACY_MAX_PURGE_WORKERS; i++)
	{
		PurgeSlot  *slot = &purge_shared->slots[i];

		if (slot->in_use && slot->dboid == dboid && slot->pid != 0)
			pids[npids++] = slot->pid;
	}
	LWLockRelease(purge_shared->lock);
	for (i = 0; i < npids; i++)
	{
		char	   *dbname = get_database_name(dboid);

		ereport(LOG,
				(errmsg("privacy: stopping the purge worker in database \"%s\" (PID %d) for %s",
						dbname ? dbname : "?", (int) pids[i], command),
				 errhidestmt(true)));
		kill(pids[i], SIGTERM);
	}
}

/* DROP DATABASE calls it after taking its lock and checking permission. */
static void
worker_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == DatabaseRelationId)
		worker_stop_in_database(objectId, "DROP DATABASE");
}

static const char *
option_string(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/* ALTER DATABASE ... RENAME / SET TABLESPACE, CREATE DATABASE ... TEMPLATE */
static void
worker_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;
	const char *dbname = NULL;
	const char *command = NULL;

	if (IsA(node, RenameStmt) && ((RenameStmt *) node)->renameType == OBJECT_DATABASE)
	{
		dbname = ((RenameStmt *) node)->subname;
		command = "ALTER DATABASE ... RENAME";
	}
	else if (IsA(node, AlterDatabaseStmt) &&
			 option_string(((AlterDatabaseStmt *) node)->options, "tablespace") != NULL)
	{
		dbname = ((AlterDatabaseStmt *) node)->dbname;
		command = "ALTER DATABASE ... SET TABLESPACE";
	}
	else if (IsA(node, CreatedbStmt))
	{
		dbname = option_string(((CreatedbStmt *) node)->options, "template");
		command = "CREATE DATABASE ... TEMPLATE";
	}
	if (dbname != NULL)
		worker_stop_in_database(get_database_oid(dbname, true), command);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* ------------------------------------------------------------------------
 * The launcher.
 * ------------------------------------------------------------------------
 */
void
worker_init(void)
{
	BackgroundWorker worker;

	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;
	prev_object_access = object_access_hook;
	object_access_hook = worker_object_access;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = worker_process_utility;

	if (IsBinaryUpgrade)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "privacy");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "privacy_purge_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, LAUNCHER_TYPE);
	snprintf(worker.bgw_type, BGW_MAXLEN, LAUNCHER_TYPE);
	RegisterBackgroundWorker(&worker);
}

/* A database as the launcher knows it. */
typedef struct LauncherDatabase
{
	Oid			dboid;			/* hash key */
	TimestampTz next_visit;
	int			failures;		/* failed visits in a row */
	int			slot;			/* running in this slot, or -1 */
	BackgroundWorkerHandle *handle;
	uint64		listed;			/* the listing that last saw it */
} LauncherDatabase;

static HTAB *launcher_databases = NULL;
static uint64 launcher_listing = 0;

/* A pause after a failure: 10 s, doubling, never longer than the interval. */
static int
backoff_seconds(int failures)
{
	int			s = 10;

	while (failures-- > 1 && s < MAX_BACKOFF_SECONDS)
		s *= 2;
	return Max(1, Min(Min(s, MAX_BACKOFF_SECONDS), privacy_purge_interval));
}

/*
 * Every database a worker may enter, as autovacuum's get_database_list()
 * reads them: pg_database is a shared catalog, readable without a database.
 */
static void
launcher_list_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;
	TimestampTz now = GetCurrentTimestamp();

	launcher_listing++;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		if (form->datistemplate || !form->datallowconn || database_is_invalid_form(form))
			continue;
		db = hash_search(launcher_databases, &form->oid, HASH_ENTER, &found);
		if (!found)
		{
			/* a new one: look at it soon, the worker says when to return */
			db->next_visit = now;
			db->failures = 0;
			db->slot = -1;
			db->handle = NULL;
		}
		db->listed = launcher_listing;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	/* dropped, made a template or closed to connections: forget it */
	hash_seq_init(&seq, launcher_databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (db->listed != launcher_listing && db->slot < 0)
			hash_search(launcher_databases, &db->dboid, HASH_REMOVE, NULL);
	}
}

/* Collect what finished workers said, and free their slots. */
static int
launcher_reap(void)
{
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;
	int			running = 0;
	TimestampTz now = GetCurrentTimestamp();

	hash_seq_init(&seq, launcher_databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		pid_t		pid;
		PurgeSlot  *slot;
		PurgeVisit	result;
		TimestampTz next;

		if (db->slot < 0)
			continue;
		if (GetBackgroundWorkerPid(db->handle, &pid) != BGWH_STOPPED)
		{
			running++;
			continue;
		}
		slot = &purge_shared->slots[db->slot];
		LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
		result = slot->result;
		next = slot->next_visit;
		slot->in_use = false;
		slot->pid = 0;
		LWLockRelease(purge_shared->lock);
		pfree(db->handle);
		db->handle = NULL;
		db->slot = -1;
		switch (result)
		{
			case VISIT_NOT_INSTALLED:
			case VISIT_NOT_DUE:
			case VISIT_PURGED:
				db->failures = 0;
				db->next_visit = next;
				break;
			case VISIT_BUSY:
				db->next_visit = next;
				break;
			case VISIT_FAILED:
				db->failures++;
				db->next_visit = next;
				break;
			case VISIT_NONE:
				/* it could not connect, or was stopped: try again later */
				db->failures++;
				db->next_visit = now + (TimestampTz) backoff_seconds(db->failures) * USECS_PER_SEC;
				break;
		}
		if (db->listed != launcher_listing)
			hash_search(launcher_databases, &db->dboid, HASH_REMOVE, NULL);
	}
	return running;
}

/* Start a worker for one database; false when none can start now. */
static bool
launcher_start_worker(LauncherDatabase *db)
{
	BackgroundWorker worker;
	PurgeWorkerArgs args;
	int			i;
	int			free_slot = -1;

	LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < PRIVACY_MAX_PURGE_WORKERS && free_slot < 0; i++)
		if (!purge_shared->slots[i].in_use)
			free_slot = i;
	if (free_slot >= 0)
	{
		PurgeSlot  *slot = &purge_shared->slots[free_slot];

		slot->in_use = true;
		slot->generation = ++purge_shared->generation;
		slot->dboid = db->dboid;
		slot->pid = 0;
		slot->failures = db->failures;
		slot->result = VISIT_NONE;
		slot->next_visit = 0;
		args.dboid = db->dboid;
		args.generation = slot->generation;
	}
	LWLockRelease(purge_shared->lock);
	if (free_slot < 0)
		return false;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "privacy");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, WORKER_FUNCTION);
	snprintf(worker.bgw_name, BGW_MAXLEN, WORKER_TYPE);
	snprintf(worker.bgw_type, BGW_MAXLEN, WORKER_TYPE);
	worker.bgw_main_arg = Int32GetDatum(free_slot);
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &db->handle))
	{
		static TimestampTz last_warned = 0;
		TimestampTz now = GetCurrentTimestamp();

		LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
		purge_shared->slots[free_slot].in_use = false;
		LWLockRelease(purge_shared->lock);
		db->handle = NULL;
		if (last_warned == 0 || TimestampDifferenceExceeds(last_warned, now, 600 * 1000))
		{
			last_warned = now;
			ereport(WARNING,
					(errmsg("privacy purge launcher: could not start a purge worker"),
					 errdetail("Purges wait until a background worker slot is free."),
					 errhint("Raise max_worker_processes (each purge worker takes one while it runs; see privacy.purge_workers).")));
		}
		return false;
	}
	db->slot = free_slot;
	return true;
}

/* Start workers for the databases whose visit is due, earliest first. */
static TimestampTz
launcher_start_due(int running)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz earliest = 0;

	for (;;)
	{
		HASH_SEQ_STATUS seq;
		LauncherDatabase *db;
		LauncherDatabase *first = NULL;

		hash_seq_init(&seq, launcher_databases);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->slot < 0 && (first == NULL || db->next_visit < first->next_visit))
				first = db;
		if (first == NULL)
			return 0;
		if (first->next_visit > now || running >= privacy_purge_workers)
			return first->next_visit > now ? first->next_visit : earliest;
		if (!launcher_start_worker(first))
			return now + 10 * USECS_PER_SEC;
		running++;
	}
}

static void
launcher_say_schedule(void)
{
	if (privacy_purge_interval == 0)
		ereport(LOG,
				(errmsg("privacy purge launcher: purges are off (privacy.purge_interval = 0)")));
	else
		ereport(LOG,
				(errmsg("privacy purge launcher: a purge every %d s in each database where privacy is installed, at most %d at a time",
						privacy_purge_interval, privacy_purge_workers)));
	if (privacy_worker_database != NULL && privacy_worker_database[0] != '\0')
		ereport(WARNING,
				(errmsg("privacy.worker_database is no longer used"),
				 errdetail("The purge launcher serves every database where the extension is installed."),
				 errhint("Remove privacy.worker_database from postgresql.conf.")));
}

void
privacy_purge_launcher_main(Datum arg)
{
	HASHCTL		ctl;
	int			interval_seen;
	int			workers_seen;
	bool		keyless;
	TimestampTz last_listing = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: pg_database is shared, and no DROP DATABASE waits for us */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(LAUNCHER_TYPE);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDatabase);
	ctl.hcxt = TopMemoryContext;
	launcher_databases = hash_create("privacy purge databases", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/*
	 * A purge writes the access log (its own deletions, and the log's
	 * retention), which needs the master key: without it the writer cannot
	 * store a single event.  The key is read once at server start, so this
	 * is said once.
	 */
	keyless = !keys_master_key_available();
	if (keyless)
		ereport(WARNING,
				(errmsg("privacy purge launcher: no purges, because the privacy master key is not available"),
				 errdetail("A purge records its deletions in the access log, which needs the key."),
				 errhint("Fix privacy.master_key_command and restart the server.")));
	launcher_say_schedule();
	interval_seen = privacy_purge_interval;
	workers_seen = privacy_purge_workers;

	for (;;)
	{
		int			running;
		long		wait_ms = LAUNCHER_NAP_MS;
		TimestampTz now;
		TimestampTz next;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			char	   *old_database = pstrdup(privacy_worker_database ? privacy_worker_database : "");

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (interval_seen != privacy_purge_interval || workers_seen != privacy_purge_workers ||
				strcmp(old_database, privacy_worker_database ? privacy_worker_database : "") != 0)
			{
				HASH_SEQ_STATUS seq;
				LauncherDatabase *db;

				launcher_say_schedule();
				/* a new interval: every worker works out the new due time */
				hash_seq_init(&seq, launcher_databases);
				while ((db = hash_seq_search(&seq)) != NULL)
					db->next_visit = 0;
				interval_seen = privacy_purge_interval;
				workers_seen = privacy_purge_workers;
			}
			pfree(old_database);
		}

		running = launcher_reap();
		if (privacy_purge_interval > 0 && !keyless)
		{
			now = GetCurrentTimestamp();
			if (TimestampDifferenceExceeds(last_listing, now, 1000))
			{
				launcher_list_databases();
				last_listing = now;
			}
			next = launcher_start_due(running);
			if (next != 0)
			{
				now = GetCurrentTimestamp();
				wait_ms = next > now ? (long) ((next - now + 999) / 1000) : 0;
				wait_ms = Max(Min(wait_ms, LAUNCHER_NAP_MS), 10);
			}
		}

		/* a worker that starts or stops sets the latch (bgw_notify_pid) */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ------------------------------------------------------------------------
 * A worker: one visit of one database.
 * ------------------------------------------------------------------------
 */
static int	worker_slot = -1;
static uint32 worker_generation = 0;

/* Tell the launcher how the visit went, unless the slot is someone else's now. */
static void
worker_report(PurgeVisit result, TimestampTz next_visit)
{
	PurgeSlot  *slot = &purge_shared->slots[worker_slot];

	LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
	if (slot->in_use && slot->generation == worker_generation)
	{
		slot->result = result;
		slot->next_visit = next_visit;
	}
	LWLockRelease(purge_shared->lock);
}

static void
worker_detach(int code, Datum arg)
{
	PurgeSlot  *slot = &purge_shared->slots[worker_slot];

	LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
	if (slot->in_use && slot->generation == worker_generation)
		slot->pid = 0;
	LWLockRelease(purge_shared->lock);
}

/*
 * Run one statement as a client's top-level statement: in a portal, so that
 * a procedure may commit (SPI cannot give it one), as exec_simple_query and
 * pg_cron's background workers do.  The caller has started the transaction.
 */
static void
worker_run_statement(const char *sql)
{
	MemoryContext parse_context;
	MemoryContext old;
	RawStmt    *parsetree;
	List	   *querytrees;
	List	   *plantrees;
	bool		snapshot_set = false;
	Portal		portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	/* the trees outlive the transactions the procedure commits */
	parse_context = AllocSetContextCreate(TopMemoryContext, "privacy purge statement",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(parse_context);
	parsetree = linitial_node(RawStmt, pg_parse_query(sql));
	if (analyze_requires_snapshot(parsetree))
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot_set = true;
	}
	querytrees = pg_analyze_and_rewrite_fixedparams(parsetree, sql, NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, sql, CURSOR_OPT_PARALLEL_OK, NULL);
	if (snapshot_set)
		PopActiveSnapshot();
	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(parsetree->stmt), plantrees, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	receiver = CreateDestReceiver(DestNone);
	MemoryContextSwitchTo(old);
	(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);
	MemoryContextDelete(parse_context);
}

/* One row of a query, in a transaction of its own; false when it has none. */
static bool
worker_query_row(const char *sql, Datum *values, bool *nulls, int n)
{
	bool		found;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not run: %s", sql);
	found = SPI_processed == 1;
	for (i = 0; i < n; i++)
	{
		/* by-value columns only (timestamps, integers): they outlive SPI */
		values[i] = found ? SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &nulls[i]) : (Datum) 0;
		if (!found)
			nulls[i] = true;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return found;
}

static char *
worker_time(TimestampTz t)
{
	/* to the second: the log line is for people */
	return pstrdup(timestamptz_to_str(t - t % USECS_PER_SEC));
}

/*
 * The visit: is the extension here, is a purge due, then the purge.  Says
 * what happened in one log line and returns when to come back.
 */
static PurgeVisit
worker_visit(const char *dbname, int failures, TimestampTz *next_visit)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz interval = (TimestampTz) privacy_purge_interval * USECS_PER_SEC;
	Datum		v[5];
	bool		n[5];
	bool		installed;
	char	   *sql;
	volatile bool failed = false;
	ErrorData  *volatile edata = NULL;

	*next_visit = start + interval;

	/* the extension: looked up in the catalog, no error when it is absent */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("privacy", true));
	CommitTransactionCommand();
	if (!installed)
	{
		ereport(DEBUG1,
				(errmsg("privacy purge worker: extension \"privacy\" is not installed in database \"%s\"", dbname)));
		return VISIT_NOT_INSTALLED;
	}
	if (privacy_purge_interval == 0)
		return VISIT_NOT_DUE;

	/*
	 * Due one interval after the start of the last completed run, whoever
	 * ran it; before the first, one interval after there was something to
	 * purge.  Nothing to purge yet: look again in an interval.
	 */
	worker_query_row("SELECT coalesce((SELECT pg_catalog.max(r.started_at) FROM " PRIVACY_SCHEMA ".purge_runs r"
					 "                  WHERE r.outcome = 'completed'),"
					 "                 LEAST((SELECT pg_catalog.min(rr.created_at) FROM " PRIVACY_SCHEMA ".retention_rules rr),"
					 "                       (SELECT b.written_at FROM " PRIVACY_SCHEMA ".access_log_batches b"
					 "                         ORDER BY b.first_seq LIMIT 1)))",
					 v, n, 1);
	if (n[0])
		return VISIT_NOT_DUE;
	if (DatumGetTimestampTz(v[0]) + interval > start)
	{
		*next_visit = DatumGetTimestampTz(v[0]) + interval;
		ereport(DEBUG1,
				(errmsg("privacy purge in database \"%s\" not due until %s", dbname, worker_time(*next_visit))));
		return VISIT_NOT_DUE;
	}

	/* the purge, as an officer runs it */
	sql = psprintf("CALL " PRIVACY_SCHEMA ".purge(batch_size => %d, via => 'worker')", privacy_purge_batch_size);
	pgstat_report_activity(STATE_RUNNING, sql);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		debug_query_string = sql;
		worker_run_statement(sql);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContext ecxt = MemoryContextSwitchTo(TopMemoryContext);

		edata = CopyErrorData();
		FlushErrorState();
		MemoryContextSwitchTo(ecxt);
		AbortCurrentTransaction();
		PortalErrorCleanup();
		failed = true;
	}
	PG_END_TRY();
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);

	/*
	 * No run of ours: purge() found another purge live and did nothing
	 * (if_running 'skip', a NOTICE), or refused with 55P03.
	 */
	if ((!failed || edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE) &&
		!worker_query_row(psprintf("SELECT 1 FROM " PRIVACY_SCHEMA ".purge_runs r"
								   " WHERE r.pid = pg_catalog.pg_backend_pid() AND r.via = 'worker'"
								   "   AND r.started_at >= '%s'::pg_catalog.timestamptz",
								   timestamptz_to_str(start)), v, n, 1))
	{
		/* someone else's purge is under way */
		*next_visit = GetCurrentTimestamp() + Min(interval, 60 * USECS_PER_SEC);
		ereport(LOG,
				(errmsg("privacy purge in database \"%s\" skipped: another purge is running there; next attempt at %s",
						dbname, worker_time(*next_visit))));
		return VISIT_BUSY;
	}

	/*
	 * What the run did, from its record.  Its error, if any, stays there:
	 * the message of an error raised by a user's trigger or a constraint
	 * may quote personal data, and the server log is no place for it.
	 */
	if (!worker_query_row(psprintf("SELECT r.id, (r.outcome = 'completed')::pg_catalog.int4,"
								   "       coalesce(pg_catalog.sum(t.purged), 0)::pg_catalog.int8,"
								   "       pg_catalog.count(t.tbl)::pg_catalog.int8, r.started_at"
								   "  FROM " PRIVACY_SCHEMA ".purge_runs r"
								   "  LEFT JOIN " PRIVACY_SCHEMA ".purge_run_tables t ON t.run_id = r.id"
								   " WHERE r.pid = pg_catalog.pg_backend_pid() AND r.via = 'worker'"
								   "   AND r.started_at >= '%s'::pg_catalog.timestamptz"
								   " GROUP BY r.id ORDER BY r.id DESC LIMIT 1",
								   timestamptz_to_str(start)), v, n, 5))
	{
		/* failed before a run was recorded: our own statement's error */
		*next_visit = GetCurrentTimestamp() + (TimestampTz) backoff_seconds(failures + 1) * USECS_PER_SEC;
		ereport(WARNING,
				(errmsg("privacy purge in database \"%s\" failed before it started: %s; next attempt at %s",
						dbname, failed ? edata->message : "no run was recorded", worker_time(*next_visit))));
		return VISIT_FAILED;
	}
	if (!failed && DatumGetInt32(v[1]) == 1)
	{
		*next_visit = DatumGetTimestampTz(v[4]) + interval;
		ereport(LOG,
				(errmsg("privacy purge in database \"%s\": " INT64_FORMAT " rows purged in " INT64_FORMAT " %s (run " INT64_FORMAT ", %.1f s); next at %s",
						dbname, DatumGetInt64(v[2]), DatumGetInt64(v[3]),
						DatumGetInt64(v[3]) == 1 ? "table" : "tables", DatumGetInt64(v[0]),
						(double) (GetCurrentTimestamp() - start) / USECS_PER_SEC,
						worker_time(*next_visit))));
		return VISIT_PURGED;
	}
	*next_visit = GetCurrentTimestamp() + (TimestampTz) backoff_seconds(failures + 1) * USECS_PER_SEC;
	ereport(WARNING,
			(errmsg("privacy purge in database \"%s\" failed (run " INT64_FORMAT "): " INT64_FORMAT " rows purged before the failure; next attempt at %s",
					dbname, DatumGetInt64(v[0]), DatumGetInt64(v[2]), worker_time(*next_visit)),
			 errdetail("The error is recorded in privacy.purge_runs (run " INT64_FORMAT ").", DatumGetInt64(v[0])),
			 errhint("The batches committed before the failure stay done; the next run goes on from there.")));
	return VISIT_FAILED;
}

void
privacy_purge_worker_main(Datum arg)
{
	PurgeWorkerArgs args;
	PurgeSlot  *slot;
	int			failures;
	char	   *dbname;
	PurgeVisit	result;
	TimestampTz next_visit;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_slot = DatumGetInt32(arg);
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	if (purge_shared == NULL || worker_slot < 0 || worker_slot >= PRIVACY_MAX_PURGE_WORKERS)
		proc_exit(0);
	slot = &purge_shared->slots[worker_slot];
	LWLockAcquire(purge_shared->lock, LW_EXCLUSIVE);
	if (!slot->in_use || slot->generation != args.generation || slot->dboid != args.dboid)
	{
		LWLockRelease(purge_shared->lock);
		proc_exit(0);
	}
	worker_generation = args.generation;
	slot->pid = MyProcPid;
	failures = slot->failures;
	LWLockRelease(purge_shared->lock);
	before_shmem_exit(worker_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	pgstat_report_appname(WORKER_TYPE);
	/* a superuser: no search_path a database owner set may reach its queries */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	result = worker_visit(dbname, failures, &next_visit);
	worker_report(result, next_visit);
	proc_exit(0);
}
