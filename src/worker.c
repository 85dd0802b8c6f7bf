/*
 * worker.c — the purge worker.
 *
 * One background worker per cluster, connected to the database named by
 * privacy.worker_database.  Every privacy.purge_interval seconds (0 = off)
 * it runs CALL privacy.purge(...) there, exactly what a compliance officer
 * or pg_cron would run, so that its batches commit one by one and its run
 * is logged in privacy.purge_runs with via = 'worker'.  An error is logged
 * and retried after a growing pause; a change of database on reload makes
 * the worker exit, and the postmaster starts it again in the new database.
 * It shows in pg_stat_activity as backend_type "privacy purge worker".
 *
 * A run says who started it (privacy.purge_runs: via, started_by), and
 * that is decided here, from the process that starts it, never from what
 * the caller passes: privacy_internal.purge_origin() answers via = 'worker'
 * only in this worker, and the role only as the session has it.
 */
#include "privacy.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/timestamp.h"

#define WORKER_TYPE "privacy purge worker"
#define MAX_BACKOFF_SECONDS 3600

void		privacy_worker_main(Datum arg);

void
worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "privacy");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "privacy_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, WORKER_TYPE);
	snprintf(worker.bgw_type, BGW_MAXLEN, WORKER_TYPE);
	RegisterBackgroundWorker(&worker);
}

/*
 * Is this process the purge worker?  Known by what the postmaster started
 * it as: a background worker running privacy_worker_main of this library
 * (pg_cron's workers, the access log writer and every client backend are
 * not).
 */
static bool
is_purge_worker(void)
{
	return MyBackendType == B_BG_WORKER && MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "privacy") == 0 &&
		strcmp(MyBgworkerEntry->bgw_function_name, "privacy_worker_main") == 0;
}

/*
 * privacy_internal.purge_origin(via, caller) → (via, started_by): how a
 * purge run is recorded.  via is 'worker' in the purge worker and 'call'
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

/* Run one SQL statement returning one value, in a transaction of its own. */
static Datum
run_in_transaction(const char *sql, bool *isnull)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	*isnull = true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "could not run: %s", sql);
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
		if (!*isnull)
		{
			MemoryContext spi = MemoryContextSwitchTo(caller);

			result = datumCopy(result, TupleDescAttr(SPI_tuptable->tupdesc, 0)->attbyval,
							   TupleDescAttr(SPI_tuptable->tupdesc, 0)->attlen);
			MemoryContextSwitchTo(spi);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);	/* the pass's context, reset after it */
	return result;
}

/*
 * One purge: what CALL privacy.purge() does, driven from here because a
 * procedure that commits needs a portal, which a background worker has not.
 * The same functions do the work (privacy_internal.purge_start, purge_batch,
 * purge_finish), each batch in a transaction of its own, so a run looks
 * the same in privacy.purge_runs (via 'worker'), a purge while another is live
 * is skipped the same way, and an interrupted one is recognised the same way.
 */
static void
run_purge(void)
{
	bool		isnull;
	int64		run;
	List	   *volatile tables = NIL;
	ListCell   *lc;
	volatile int64 run_id = 0;

	if (!DatumGetBool(run_in_transaction(
			"SELECT pg_catalog.count(*) > 0 FROM pg_catalog.pg_namespace WHERE nspname = '" PRIVACY_SCHEMA "'",
			&isnull)))
	{
		ereport(LOG,
				(errmsg("privacy purge worker: extension \"privacy\" is not installed in database \"%s\"",
						privacy_worker_database),
				 errhint("Run CREATE EXTENSION privacy there, or set privacy.worker_database to the database that has it.")));
		return;
	}

	pgstat_report_activity(STATE_RUNNING, "privacy purge");
	PG_TRY();
	{
		{
			char	   *sql;

			sql = psprintf("SELECT " PRIVACY_INTERNAL_SCHEMA ".purge_start(%d, NULL, 'worker', current_user)",
						   privacy_purge_batch_size);
			run = DatumGetInt64(run_in_transaction(sql, &isnull));
			run_id = run;

			/* the tables of the run, kept in the pass's memory context */
			{
				MemoryContext pass = CurrentMemoryContext;
				uint64		i;

				StartTransactionCommand();
				PushActiveSnapshot(GetTransactionSnapshot());
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				sql = psprintf("SELECT t::pg_catalog.oid FROM " PRIVACY_INTERNAL_SCHEMA ".purge_tables(" INT64_FORMAT ") t",
							   run);
				if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
					elog(ERROR, "could not read the tables of purge run " INT64_FORMAT, run);
				for (i = 0; i < SPI_processed; i++)
				{
					Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
					MemoryContext spi = MemoryContextSwitchTo(pass);

					tables = lappend_oid(tables, relid);
					MemoryContextSwitchTo(spi);
				}
				SPI_finish();
				PopActiveSnapshot();
				CommitTransactionCommand();
				MemoryContextSwitchTo(pass);
			}

			foreach(lc, tables)
			{
				Oid			relid = lfirst_oid(lc);
				int64		n;

				do
				{
					CHECK_FOR_INTERRUPTS();
					sql = psprintf("SELECT " PRIVACY_INTERNAL_SCHEMA ".purge_batch(" INT64_FORMAT ", %u::pg_catalog.oid::pg_catalog.regclass, %d)",
								   run, relid, privacy_purge_batch_size);
					n = DatumGetInt64(run_in_transaction(sql, &isnull));
				} while (n >= privacy_purge_batch_size);
			}
			list_free(tables);
			run_in_transaction(psprintf("SELECT " PRIVACY_INTERNAL_SCHEMA ".purge_finish(" INT64_FORMAT ", 'completed', NULL)", run),
							   &isnull);
			/* the access log's own retention */
			run_in_transaction("SELECT " PRIVACY_SCHEMA ".trim_access_log()", &isnull);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		MemoryContext ecxt = MemoryContextSwitchTo(TopMemoryContext);

		edata = CopyErrorData();
		FlushErrorState();
		MemoryContextSwitchTo(ecxt);
		AbortCurrentTransaction();
		/* the committed batches stay done; the run says how it ended */
		if (run_id != 0)
		{
			bool		n2;
			char	   *msg = quote_literal_cstr(edata->message ? edata->message : "unknown error");

			run_in_transaction(psprintf("SELECT " PRIVACY_INTERNAL_SCHEMA ".purge_finish(" INT64_FORMAT ", 'failed', %s)",
										(int64) run_id, msg), &n2);
		}
		pgstat_report_activity(STATE_IDLE, NULL);
		ReThrowError(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
privacy_worker_main(Datum arg)
{
	char	   *database;
	MemoryContext pass_context;
	volatile int backoff = 0;
	TimestampTz next_run;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	database = pstrdup(privacy_worker_database);
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	pgstat_report_appname(WORKER_TYPE);
	/* a superuser: no search_path a database owner set may reach its queries */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	ereport(LOG,
			(errmsg("privacy purge worker started in database \"%s\" (purge every %d s%s)",
					database, privacy_purge_interval,
					privacy_purge_interval == 0 ? ": off" : "")));

	pass_context = AllocSetContextCreate(TopMemoryContext, "privacy purge worker pass",
										 ALLOCSET_DEFAULT_SIZES);
	next_run = GetCurrentTimestamp() + (TimestampTz) privacy_purge_interval * USECS_PER_SEC;

	for (;;)
	{
		long		wait_ms;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, privacy_worker_database) != 0)
			{
				ereport(LOG,
						(errmsg("privacy purge worker: privacy.worker_database changed to \"%s\"; restarting there",
								privacy_worker_database)));
				proc_exit(1);	/* the postmaster starts it again */
			}
			next_run = GetCurrentTimestamp() + (TimestampTz) privacy_purge_interval * USECS_PER_SEC;
		}

		now = GetCurrentTimestamp();
		if (privacy_purge_interval > 0 && now >= next_run)
		{
			MemoryContext old = MemoryContextSwitchTo(pass_context);

			PG_TRY();
			{
				run_purge();
				backoff = 0;
			}
			PG_CATCH();
			{
				/* log it, clean up, and try again later, a little later each time */
				MemoryContextSwitchTo(pass_context);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				SPI_finish();
				pgstat_report_activity(STATE_IDLE, NULL);
				backoff = backoff == 0 ? 10 : Min(backoff * 2, MAX_BACKOFF_SECONDS);
				ereport(LOG,
						(errmsg("privacy purge worker: purge failed; next attempt in %d s", backoff)));
			}
			PG_END_TRY();
			MemoryContextSwitchTo(old);
			MemoryContextReset(pass_context);
			next_run = GetCurrentTimestamp() +
				(TimestampTz) (backoff > 0 ? backoff : privacy_purge_interval) * USECS_PER_SEC;
		}

		if (privacy_purge_interval > 0)
		{
			now = GetCurrentTimestamp();
			wait_ms = next_run > now ? (long) ((next_run - now) / 1000) : 0;
			wait_ms = Max(wait_ms, 10);
		}
		else
			wait_ms = 60000;	/* off: wake up only to notice a reload */

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
