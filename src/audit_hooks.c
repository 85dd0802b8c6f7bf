/*
 * audit_hooks.c — the access log's backend side: where the server calls in.
 *
 * Backends record one event per statement per protected table it touches
 * (executor hooks; the utility hook for COPY, which reads and writes tables
 * outside the executor), plus the subjects whose encrypted values the
 * statement opened (types.c calls types_value_opened_hook, which audit_init
 * points at audit_value_opened).  Each executor run or utility statement
 * has a frame, flushed (audit_capture.c) when it ends, or with outcome
 * error or cancelled when its transaction or subtransaction aborts.  A
 * statement the purpose check or the decryption gate refuses (consent.c
 * calls consent_denied_hook, which audit_init points at
 * audit_access_denied) ends as a denial, sent before the refusal's error.
 *
 * Statements run by the extension's own SECURITY DEFINER functions (purge,
 * erasure, key maintenance) are not user access and are not logged: an
 * fmgr hook counts how deep the backend is inside them.  The subject
 * report, which runs inside one, records its access itself
 * (audit_record_report), and the writer's own work is never recorded.
 */
#include "audit.h"

#include <sodium.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif

/* ------------------------------------------------------------------------
 * Frames: the executor runs and utility statements in progress.  A list,
 * not a stack: cursors end in any order.
 * ------------------------------------------------------------------------
 */
static AuditFrame *frames = NULL;	/* newest first */
static AuditFrame *active_frame = NULL; /* the one running now */
static AuditFrame *last_run_frame = NULL;	/* the one that ran last */
static AuditFrame *loose_frame = NULL;	/* opens after their frame ended */
static MemoryContext loose_context = NULL;
static MemoryContext audit_context = NULL;
static bool am_writer = false;
static const char *last_command = NULL; /* of the newest frame pushed */
static int	exec_depth = 0;
static int	internal_depth = 0;
static int	last_error_code = 0;

/* Is access logging on here, and are we outside the extension's own work? */
static bool
audit_active(void)
{
	if (!privacy_access_log || internal_depth > 0 ||
		audit_shared == NULL || !IsTransactionState() || IsBinaryUpgrade)
		return false;
	/* false too while the map of protected tables loads */
	return catalog_protected_ready();
}

static const char *
command_name(CmdType op, bool copy)
{
	if (copy)
		return "COPY";
	switch (op)
	{
		case CMD_SELECT:
			return "SELECT";
		case CMD_INSERT:
			return "INSERT";
		case CMD_UPDATE:
			return "UPDATE";
		case CMD_DELETE:
			return "DELETE";
#if PG_VERSION_NUM >= 150000
		case CMD_MERGE:
			return "MERGE";
#endif
		default:
			return "OTHER";
	}
}

static AuditFrame *
push_frame(QueryDesc *qd, bool copy, CmdType op)
{
	AuditFrame *f = MemoryContextAllocZero(audit_context, sizeof(AuditFrame));

	f->outer = frames;
	f->qd = qd;
	f->copy = copy;
	f->level = exec_depth;
	f->subid = GetCurrentSubTransactionId();
	f->operation = op;
	frames = f;
	last_command = op == CMD_UTILITY ? NULL : command_name(op, copy);
	return f;
}

static AuditFrame *
find_frame(QueryDesc *qd)
{
	AuditFrame *f;

	for (f = frames; f != NULL; f = f->outer)
		if (f->qd == qd)
			return f;
	return NULL;
}

/* Subjects opened after their statement's frame ended. */
static void
flush_loose(bool in_abort)
{
	if (loose_frame == NULL)
		return;
	if (in_abort)
	{
		HOLD_INTERRUPTS();
		PG_TRY();
		{
			audit_flush_frame(loose_frame, NULL, 0, true);
		}
		PG_CATCH();
		{
			FlushErrorState();
		}
		PG_END_TRY();
		RESUME_INTERRUPTS();
	}
	else
		audit_flush_frame(loose_frame, NULL, 0, false);
	loose_frame = NULL;
	MemoryContextReset(loose_context);
}

static bool
frame_linked(AuditFrame *f)
{
	AuditFrame *g;

	for (g = frames; g != NULL; g = g->outer)
		if (g == f)
			return true;
	return false;
}

/* Unlink a frame (not always the newest: cursors end in any order). */
static void
pop_frame(AuditFrame *f)
{
	AuditFrame **link;

	for (link = &frames; *link != NULL; link = &(*link)->outer)
		if (*link == f)
		{
			*link = f->outer;
			break;
		}
	if (active_frame == f)
		active_frame = NULL;
	if (last_run_frame == f)
		last_run_frame = NULL;
	audit_forget_subjects(f);
	/* the frame's strings live in audit_context until it is reset */
	pfree(f);
	if (frames == NULL)
	{
		active_frame = NULL;
		last_run_frame = NULL;
		MemoryContextReset(audit_context);
	}
}

/* Abort: frames of the aborted (sub)transaction end with their outcome. */
/* Flush in an abort: the log must never turn it into a second error. */
static void
flush_quietly(AuditFrame *f, const char *outcome)
{
	HOLD_INTERRUPTS();
	PG_TRY();
	{
		MemoryContext old = MemoryContextSwitchTo(audit_context);

		/* never f->qd: an aborted portal's executor state is freed by now */
		audit_flush_frame(f, outcome, f->qd != NULL ? f->rows_run : f->utility_rows, true);
		MemoryContextSwitchTo(old);
	}
	PG_CATCH();
	{
		FlushErrorState();
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();
}

static void
abort_frames(SubTransactionId subid)
{
	const char *outcome = last_error_code == ERRCODE_QUERY_CANCELED ? "cancelled" : "error";
	AuditFrame *f;
	AuditFrame *next;

	for (f = frames; f != NULL; f = next)
	{
		next = f->outer;
		if (subid != InvalidSubTransactionId && f->subid < subid)
			continue;
		if (!f->flushed)
			flush_quietly(f, outcome);
		pop_frame(f);
	}
	if (subid == InvalidSubTransactionId && frames == NULL && !am_writer)
		internal_depth = 0;
}

/*
 * The chain key while verify or trim (audit_sql.c) holds it: here, beside
 * the abort callbacks, rather than on their stack, so that an error on the
 * way is followed by its wiping.
 */
unsigned char audit_chain_key_scratch[LOGCHAIN_KEY_BYTES];

static void
audit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			flush_loose(false);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			sodium_memzero(audit_chain_key_scratch, sizeof(audit_chain_key_scratch));
			flush_loose(true);
			abort_frames(InvalidSubTransactionId);
			break;
		default:
			break;
	}
}

static void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		sodium_memzero(audit_chain_key_scratch, sizeof(audit_chain_key_scratch));
		abort_frames(mySubid);
	}
}

static emit_log_hook_type prev_emit_log = NULL;

static void
audit_emit_log(ErrorData *edata)
{
	if (edata->elevel >= ERROR)
		last_error_code = edata->sqlerrcode;
	if (prev_emit_log)
		prev_emit_log(edata);
}

/* The event of a frame whose statement names no protected table. */
static void
frame_event_without_table(AuditFrame *f)
{
	f->events = list_make1(audit_new_event(f->qd == NULL && !f->copy ? f->utility_tag :
										   command_name(f->operation, f->copy),
										   InvalidOid, NULL, NULL, false));
}

/* ------------------------------------------------------------------------
 * Opened values: types.c calls this (types_value_opened_hook) for every
 * value it opens.
 * ------------------------------------------------------------------------
 */
static void
audit_value_opened(uint32 key_id, uint16 category_id)
{
	const unsigned char *hash;
	SubjectCount *sc;
	bool		found;
	MemoryContext cxt;
	AuditFrame *f = active_frame != NULL ? active_frame : last_run_frame;

	if (internal_depth > 0 || !privacy_access_log || audit_shared == NULL)
		return;
	/* the same subject and category as the value before (a row's other columns) */
	if (f != NULL && f->last_subject != NULL && f->last_subject->key_id == key_id &&
		f->last_subject->category == category_id)
	{
		f->last_subject->count++;
		return;
	}
	f = active_frame;
	hash = keys_key_subject(key_id);
	if (hash == NULL)
		return;

	/*
	 * Rows a portal stored before sending them (FETCH, EXECUTE, a held
	 * cursor) are opened after their executor run: they belong to the run
	 * that produced them when it is still open, else to the statement
	 * event written last (the writer links subjects to it).
	 */
	if (f == NULL)
		f = last_run_frame;
	if (f == NULL)
	{
		if (loose_frame == NULL)
		{
			loose_frame = MemoryContextAllocZero(loose_context, sizeof(AuditFrame));
			loose_frame->level = exec_depth;
		}
		f = loose_frame;
	}
	/*
	 * Values opened with no protected table in the statement; after a
	 * refusal sent the frame's events, its subjects follow the denial.
	 */
	if (f->events == NIL && f != loose_frame && !audit_frame_has_subjects(f) && !f->refusal_sent)
	{
		MemoryContext old = MemoryContextSwitchTo(audit_context);

		frame_event_without_table(f);
		MemoryContextSwitchTo(old);
	}
	cxt = f == loose_frame ? loose_context : audit_context;
	sc = audit_frame_subject(f, key_id, category_id, cxt, &found);
	if (!found)
	{
		memcpy(sc->hash, hash, PRIVACY_SUBJECT_HASH_BYTES);
		sc->count = 0;
		audit_frame_category(f, category_id, catalog_category_name(category_id), cxt);
	}
	sc->count++;
}

/* ------------------------------------------------------------------------
 * Refusals: consent.c calls this (consent_denied_hook) when the purpose
 * check refuses a statement or the decryption gate refuses a value.
 *
 * The statement running now becomes a denial, with the reason and, for a
 * refused value, its category (the first refusal of a statement is the
 * one recorded).  When the refusal raises its error, the frame's events go
 * to the queue now, before the error aborts the transaction: the queue is
 * in shared memory, so the entry survives the rollback, whatever the
 * abort does.  A masked value (privacy.on_denied = mask) only marks the
 * frame; its statement goes on and ends as a denial.
 *
 * A statement is one denial however often it is refused (a refusal caught
 * in a subtransaction lets it go on).  No subject is named: a statement
 * refused by the purpose check read no row, and a refused value is not
 * opened.  Nothing about the statement but the event's fields is recorded
 * (no text, no value).
 * ------------------------------------------------------------------------
 */
static void
audit_access_denied(PurposeVerdict verdict, const char *category, bool raising)
{
	AuditFrame *f = active_frame != NULL ? active_frame : last_run_frame;
	AuditFrame	alone;
	MemoryContext cxt = audit_context;
	MemoryContext old;

	if (am_writer || !audit_active())
		return;
	if (f == NULL || f->flushed)
	{
		/*
		 * A value refused after its statement's run (rows a portal stored):
		 * raising, a frame of its own, sent now; masked, the loose frame,
		 * sent with the values opened after their run.
		 */
		if (raising)
		{
			cxt = AllocSetContextCreate(CurrentMemoryContext, "privacy refusal", ALLOCSET_SMALL_SIZES);
			memset(&alone, 0, sizeof(alone));
			f = &alone;
		}
		else
		{
			if (loose_frame == NULL)
				loose_frame = MemoryContextAllocZero(loose_context, sizeof(AuditFrame));
			f = loose_frame;
			cxt = loose_context;
		}
		f->level = exec_depth;
		if (f->utility_tag == NULL)
			f->utility_tag = last_command != NULL ? last_command : "OTHER";
	}
	old = MemoryContextSwitchTo(cxt);
	if (f->deny_reason == NULL)
	{
		f->deny_reason = consent_verdict_code(verdict);
		f->denied_category = category != NULL ? pstrdup(category) : NULL;
	}
	if (f->events == NIL && !f->refusal_sent)
		frame_event_without_table(f);
	if (raising)
	{
		int64		rows = f->qd != NULL && f->qd->estate != NULL ?
			(int64) f->qd->estate->es_processed : f->utility_rows;

		audit_flush_frame(f, "denied", rows, false);
		/* sent: what the frame counts from now on follows the denial */
		f->events = NIL;
		audit_forget_subjects(f);
		f->refusal_sent = true;
	}
	MemoryContextSwitchTo(old);
	if (f == &alone)
		MemoryContextDelete(cxt);
}

/* ------------------------------------------------------------------------
 * Hooks.
 * ------------------------------------------------------------------------
 */
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static needs_fmgr_hook_type prev_needs_fmgr = NULL;
static fmgr_hook_type prev_fmgr = NULL;

/*
 * A restore: pg_restore and the scripts of pg_dump turn row_security off,
 * declare no purpose and run as a role that writes envelopes.  What they
 * write was read and logged before; logging it again as new access would
 * also race the restore of the log itself (its seq numbers), so it is not.
 */
static bool
restoring(CmdType op)
{
	return (op == CMD_INSERT) && !row_security && types_ciphertext_io();
}

/* Events for the protected tables a plan names. */
static List *
plan_events(PlannedStmt *ps, CmdType op, bool copy)
{
	List	   *events = NIL;
	ListCell   *lc;
	Index		rti = 0;

	foreach(lc, ps->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		const CatalogRelation *ri;
		Bitmapset  *cols;
		bool		is_target;
		MemoryContext old;

		rti++;
		if (rte->rtekind != RTE_RELATION)
			continue;
#if PG_VERSION_NUM >= 160000
		if (rte->perminfoindex == 0)
			continue;
#else
		if (rte->requiredPerms == 0)
			continue;			/* partitions and children the planner added */
#endif
		ri = catalog_protected_relation(rte->relid);
		if (ri == NULL)
			continue;
#if PG_VERSION_NUM >= 160000
		{
			RTEPermissionInfo *pi = list_nth(ps->permInfos, rte->perminfoindex - 1);

			cols = bms_union(pi->selectedCols, bms_union(pi->insertedCols, pi->updatedCols));
		}
#else
		cols = bms_union(rte->selectedCols, bms_union(rte->insertedCols, rte->updatedCols));
#endif
		is_target = list_member_int(ps->resultRelations, (int) rti);
		if (is_target && restoring(op))
			continue;
		old = MemoryContextSwitchTo(audit_context);
		events = lappend(events, audit_new_event(command_name(is_target ? op : CMD_SELECT, copy),
												 rte->relid, ri, cols, false));
		MemoryContextSwitchTo(old);
	}
	return events;
}

static void
audit_executor_start(QueryDesc *queryDesc, int eflags)
{
	AuditFrame *saved = active_frame;
	AuditFrame *f = NULL;

	if (loose_frame != NULL && exec_depth == 0)
		flush_loose(false);
	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY) && queryDesc->plannedstmt != NULL && audit_active())
	{
		if (frames != NULL && frames->copy && !frames->copy_claimed &&
			exec_depth == frames->level)
		{
			/* the query a COPY runs: the COPY's own frame */
			f = frames;
			f->copy_claimed = true;
			f->qd = queryDesc;
			if (f->query_id == 0)
				f->query_id = (int64) queryDesc->plannedstmt->queryId;
			if (f->events == NIL)
				f->events = plan_events(queryDesc->plannedstmt, queryDesc->operation, true);
		}
		else
		{
			f = push_frame(queryDesc, false, queryDesc->operation);
			f->events = plan_events(queryDesc->plannedstmt, queryDesc->operation, false);
			f->query_id = (int64) queryDesc->plannedstmt->queryId;
			/* a cursor's or prepared statement's query: its statement's id */
			if (f->query_id == 0 && f->outer != NULL && f->outer->qd == NULL &&
				!f->outer->copy && f->outer->level == f->level)
				f->query_id = f->outer->query_id;
		}
	}

	if (f == NULL)
	{
		if (prev_executor_start)
			prev_executor_start(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
		return;
	}

	/*
	 * A refusal of the purpose check, next in the chain, is this
	 * statement's; an error caught in a subtransaction leaves the outer
	 * statement's frame the active one again.
	 */
	active_frame = f;
	PG_TRY();
	{
		if (prev_executor_start)
			prev_executor_start(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
	}
	PG_FINALLY();
	{
		active_frame = saved;
	}
	PG_END_TRY();
}

/*
 * After an executor run or finish, normal or not: restore the active frame
 * and note the rows so far while the executor state still exists (an
 * aborted portal's is freed before the abort callbacks log the frame).
 */
static void
end_run(AuditFrame *saved, AuditFrame *f, QueryDesc *queryDesc, bool ran)
{
	exec_depth--;
	active_frame = saved;
	if (f != NULL && queryDesc->estate != NULL)
		f->rows_run = (int64) queryDesc->estate->es_processed;
	if (ran && f != NULL && f->events != NIL)
		last_run_frame = f;
}

static void
audit_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	AuditFrame *saved = active_frame;
	AuditFrame *volatile f = find_frame(queryDesc);

	if (f != NULL)
		active_frame = f;
	exec_depth++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_CATCH();
	{
		end_run(saved, f, queryDesc, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	end_run(saved, f, queryDesc, true);
}

static void
audit_executor_finish(QueryDesc *queryDesc)
{
	AuditFrame *saved = active_frame;
	AuditFrame *volatile f = find_frame(queryDesc);

	if (f != NULL)
		active_frame = f;
	exec_depth++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_CATCH();
	{
		end_run(saved, f, queryDesc, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	end_run(saved, f, queryDesc, false);
}

static void
audit_executor_end(QueryDesc *queryDesc)
{
	AuditFrame *f = frames ? find_frame(queryDesc) : NULL;
	int64		rows = queryDesc->estate ? (int64) queryDesc->estate->es_processed : 0;

	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);

	if (f != NULL)
	{
		if (f->copy)
		{
			/* the COPY's utility hook reports it */
			f->qd = NULL;
			f->utility_rows = rows;
			return;
		}
		/* a cancel while it waits must not log it a second time */
		f->flushed = true;
		audit_flush_frame(f, "completed", rows, false);
		pop_frame(f);
	}
}

static void
audit_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	AuditFrame *volatile f = NULL;
	AuditFrame *saved = active_frame;
	Node	   *stmt = pstmt->utilityStmt;
	bool		nests;
	bool		active;

	if (loose_frame != NULL && exec_depth == 0)
		flush_loose(false);
	active = !catalog_statement_without_snapshot(stmt) && audit_active();

	if (active && !IsA(stmt, CopyStmt))
	{
		/* values opened outside the executor, e.g. FETCH from a held cursor */
		f = push_frame(NULL, false, CMD_UTILITY);
		f->utility_tag = GetCommandTagName(CreateCommandTag(stmt));
		last_command = f->utility_tag;
		f->query_id = (int64) pstmt->queryId;
	}
	else if (active)
	{
		CopyStmt   *cs = (CopyStmt *) stmt;

		f = push_frame(NULL, true, cs->is_from ? CMD_INSERT : CMD_SELECT);
		f->query_id = (int64) pstmt->queryId;
		if (cs->relation != NULL)
		{
			Oid			relid = RangeVarGetRelid(cs->relation, NoLock, true);
			const CatalogRelation *ri = OidIsValid(relid) ? catalog_protected_relation(relid) : NULL;

			if (ri != NULL && !(cs->is_from && restoring(CMD_INSERT)))
			{
				Bitmapset  *cols = NULL;
				ListCell   *lc;
				MemoryContext old;

				foreach(lc, cs->attlist)
				{
					AttrNumber	att = get_attnum(relid, strVal(lfirst(lc)));

					if (att != InvalidAttrNumber)
						cols = bms_add_member(cols, att - FirstLowInvalidHeapAttributeNumber);
				}
				old = MemoryContextSwitchTo(audit_context);
				f->events = list_make1(audit_new_event("COPY", relid, ri, cols, cs->attlist == NIL));
				MemoryContextSwitchTo(old);
			}
		}
	}

	/*
	 * Statements a CALL or DO runs are nested; the query of a DECLARE,
	 * EXECUTE, EXPLAIN ANALYZE or CREATE TABLE AS is the client's own.
	 */
	nests = IsA(stmt, CallStmt) || IsA(stmt, DoStmt);
	if (f != NULL)
		active_frame = f;
	if (nests)
		exec_depth++;
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (nests)
			exec_depth--;
		active_frame = saved;
	}
	PG_END_TRY();

	if (f != NULL && frame_linked(f))
	{
		f->flushed = true;
		audit_flush_frame(f, "completed", qc ? (int64) qc->nprocessed : f->utility_rows, false);
		pop_frame(f);
	}
}

/*
 * The extension's own SECURITY DEFINER functions: the statements they run
 * are the extension's work, not a user's access.
 */
static HTAB *internal_functions = NULL;
static uint64 internal_functions_generation = 0;

typedef struct InternalFunction
{
	Oid			fn;
	bool		internal;
} InternalFunction;

static bool
is_internal_function(Oid fn)
{
	InternalFunction *e;
	bool		found;
	HeapTuple	tup;

	if (internal_functions == NULL || internal_functions_generation != catalog_generation)
	{
		HASHCTL		ctl;

		if (internal_functions != NULL)
			hash_destroy(internal_functions);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(InternalFunction);
		ctl.hcxt = TopMemoryContext;
		internal_functions = hash_create("privacy internal functions", 64, &ctl,
										 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		internal_functions_generation = catalog_generation;
	}
	e = hash_search(internal_functions, &fn, HASH_ENTER, &found);
	if (!found)
	{
		e->internal = false;
		tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
		if (HeapTupleIsValid(tup))
		{
			Form_pg_proc p = (Form_pg_proc) GETSTRUCT(tup);
			char	   *nsp = get_namespace_name(p->pronamespace);

			/* nobody but the extension's owner may create functions there */
			e->internal = p->prosecdef && nsp != NULL &&
				(strcmp(nsp, PRIVACY_SCHEMA) == 0 || strcmp(nsp, PRIVACY_INTERNAL_SCHEMA) == 0);
			ReleaseSysCache(tup);
		}
	}
	return e->internal;
}

static bool
audit_needs_fmgr(Oid fn)
{
	if (prev_needs_fmgr && prev_needs_fmgr(fn))
		return true;
	return is_internal_function(fn);
}

/*
 * What each call that started decided, so that its end need not ask the
 * catalog again (an abort is no place for catalog lookups, and the call
 * may have changed the catalog).  Calls nest, so a stack; the private
 * Datum of the hook is shared with other extensions' hooks.
 */
#define FMGR_DECISIONS 256
static bool fmgr_internal[FMGR_DECISIONS];
static int	fmgr_depth = 0;

static void
audit_fmgr(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	bool		internal;

	if (prev_fmgr)
		prev_fmgr(event, flinfo, private);
	switch (event)
	{
		case FHET_START:
			internal = is_internal_function(flinfo->fn_oid);
			if (fmgr_depth < FMGR_DECISIONS)
				fmgr_internal[fmgr_depth] = internal;
			fmgr_depth++;
			if (internal)
				internal_depth++;
			break;
		case FHET_END:
		case FHET_ABORT:
			if (fmgr_depth == 0)
				break;
			fmgr_depth--;
			internal = fmgr_depth < FMGR_DECISIONS ? fmgr_internal[fmgr_depth] :
				is_internal_function(flinfo->fn_oid);
			if (internal && internal_depth > 0)
				internal_depth--;
			break;
	}
}

void
audit_install_hooks(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = audit_executor_start;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = audit_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = audit_executor_finish;
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = audit_executor_end;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = audit_process_utility;
	prev_needs_fmgr = needs_fmgr_hook;
	needs_fmgr_hook = audit_needs_fmgr;
	prev_fmgr = fmgr_hook;
	fmgr_hook = audit_fmgr;
	prev_emit_log = emit_log_hook;
	emit_log_hook = audit_emit_log;
	RegisterXactCallback(audit_xact_callback, NULL);
	RegisterSubXactCallback(audit_subxact_callback, NULL);
}

void
audit_init(void)
{
	audit_context = AllocSetContextCreate(TopMemoryContext, "privacy access log",
										  ALLOCSET_DEFAULT_SIZES);
	catalog_on_relcache(audit_relcache_callback);
	loose_context = AllocSetContextCreate(TopMemoryContext, "privacy access log subjects",
										  ALLOCSET_DEFAULT_SIZES);
	EnableQueryId();
	types_value_opened_hook = audit_value_opened;
	consent_denied_hook = audit_access_denied;
	audit_queue_init();
}

/* This process is the writer: nothing it does is access to personal data. */
void
audit_become_writer(void)
{
	internal_depth = 1;
	am_writer = true;
}

/* ------------------------------------------------------------------------
 * The subject report's own access.
 *
 * privacy.subject_report() reads a subject's rows inside the extension's
 * own SECURITY DEFINER function, where the hooks above record nothing, so
 * report.c records that access itself: one statement event for the table
 * (command SELECT, every personal column, the declared purpose, the role
 * that called the report as acting role), followed by the subject's
 * opened values per category.  Like any event it goes to the queue at
 * once, so it survives the caller's rollback.
 * ------------------------------------------------------------------------
 */
void
audit_record_report(Oid relid, int64 rows, const unsigned char *subject_hash,
					int ncategories, const char *const *categories,
					const int64 *opened)
{
	MemoryContext tmp;
	MemoryContext old;
	AuditFrame	f;
	StatementEntry *e;
	int			i;

	if (!privacy_access_log || audit_shared == NULL || am_writer ||
		IsBinaryUpgrade || !IsTransactionState() || !catalog_protected_ready())
		return;

	tmp = AllocSetContextCreate(CurrentMemoryContext, "privacy report event",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	memset(&f, 0, sizeof(f));
	f.level = exec_depth;
	f.subid = GetCurrentSubTransactionId();
	f.operation = CMD_SELECT;
	e = audit_new_event("SELECT", relid, catalog_protected_relation(relid), NULL, true);
	e->acting_role = audit_role_name(GetOuterUserId());
	f.events = list_make1(e);
	for (i = 0; i < ncategories; i++)
	{
		SubjectCount *sc;
		bool		found;

		if (opened[i] <= 0)
			continue;
		sc = audit_frame_subject(&f, 0, (uint16) (i + 1), tmp, &found);
		memcpy(sc->hash, subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
		sc->count = opened[i];
		audit_frame_category(&f, (uint16) (i + 1), categories[i], tmp);
	}
	audit_flush_frame(&f, "completed", rows, false);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
}
