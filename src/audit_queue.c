/*
 * audit_queue.c — delivery: the shared-memory queues, and the server log.
 *
 * At the end of a statement (or when its transaction or subtransaction
 * aborts) the backend serializes its events into a queue in shared memory,
 * one queue per database, and goes on: a SELECT never waits for the log's
 * disk I/O.  A full queue makes the backend wait (wait event Extension)
 * rather than drop anything; in strict mode (privacy.access_log_strict) a
 * statement waits until its events are committed.  Whoever queues starts
 * the database's writer (audit_writer.c) when none runs.  On a hot standby,
 * where nothing can be written, and as the last resort (no queue free, an
 * aborting statement that waited too long), events go to the server log as
 * one JSON object per line.
 */
#include "audit.h"

#include <sodium.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/json.h"

/* ------------------------------------------------------------------------
 * Shared memory: one queue per database that logs, each a byte ring.
 * ------------------------------------------------------------------------
 */
AuditShared *audit_shared = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup = NULL;

static Size
audit_shmem_size(void)
{
	Size		size = offsetof(AuditShared, queues);

	size = add_size(size, mul_size(privacy_access_log_databases, sizeof(AuditQueue)));
	size = MAXALIGN(size);
	size = add_size(size, mul_size(privacy_access_log_databases,
								   (Size) privacy_access_log_queue_size * 1024));
	return size;
}

static void
audit_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request)
		prev_shmem_request();
#endif
	RequestAddinShmemSpace(audit_shmem_size());
	RequestNamedLWLockTranche("privacy access log", 1);
}

static void
audit_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	audit_shared = ShmemInitStruct("privacy access log", audit_shmem_size(), &found);
	if (!found)
	{
		char	   *data;
		int			i;

		audit_shared->lock = &(GetNamedLWLockTranche("privacy access log"))->lock;
		audit_shared->nqueues = privacy_access_log_databases;
		audit_shared->qsize = (Size) privacy_access_log_queue_size * 1024;
		data = (char *) audit_shared +
			MAXALIGN(offsetof(AuditShared, queues) + privacy_access_log_databases * sizeof(AuditQueue));
		for (i = 0; i < audit_shared->nqueues; i++)
		{
			AuditQueue *q = &audit_shared->queues[i];

			memset(q, 0, sizeof(*q));
			q->dboid = InvalidOid;
			q->writer_state = WRITER_NONE;
			ConditionVariableInit(&q->space_cv);
			q->data = data + (Size) i * audit_shared->qsize;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Shared memory is requested and set up through the server's hooks. */
void
audit_queue_init(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = audit_shmem_request;
#else
	audit_shmem_request();
#endif
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = audit_shmem_startup;
}

/* ------------------------------------------------------------------------
 * Enqueueing.
 * ------------------------------------------------------------------------
 */
/* This database's queue, or -1 while it has none. */
int
audit_my_queue(void)
{
	int			i;

	if (audit_shared == NULL)
		return -1;
	for (i = 0; i < audit_shared->nqueues; i++)
		if (audit_shared->queues[i].dboid == MyDatabaseId)
			return i;
	return -1;
}

static bool warned_no_queue = false;

/*
 * The wait events of the access log.  PostgreSQL 17 lets an extension name
 * its own; before that they all show as "Extension".
 */
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#endif

uint32
audit_wait_event(const char *name)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(name);
#else
	(void) name;
	return PG_WAIT_EXTENSION;
#endif
}

/* How long an aborting statement waits for room before using the server log. */
#define ABORT_QUEUE_WAIT_MS 2000

/*
 * Append records, each already framed as a 4-byte length (its own 4
 * included) and its bytes, to this database's queue under one lock.  Waits
 * while the queue is full.  Returns the queue position after them, or 0 if
 * they went to the server log instead.
 *
 * Denials (refused reads) may fill only half of the queue: a role that
 * floods refusals waits for the writer once half is taken, while the
 * statements that read keep the other half, so that they never wait
 * behind its flood.
 */
uint64
audit_enqueue(const char *data, Size len, bool in_abort, bool denial, int *qindex)
{
	TimestampTz abort_wait_since = 0;

	for (;;)
	{
		AuditQueue *q = NULL;
		int			i;
		int			idx = -1;
		bool		need_writer = false;
		Latch	   *latch = NULL;
		uint64		end = 0;
		Size		qsize = audit_shared->qsize;

		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < audit_shared->nqueues; i++)
			if (audit_shared->queues[i].dboid == MyDatabaseId)
			{
				idx = i;
				break;
			}
		if (idx < 0)
			for (i = 0; i < audit_shared->nqueues; i++)
			{
				AuditQueue *c = &audit_shared->queues[i];

				if (!OidIsValid(c->dboid) ||
					(c->head == c->tail && c->writer_state == WRITER_NONE))
				{
					c->dboid = MyDatabaseId;
					c->head = c->tail = 0;
					c->chain_seq = 0;
					c->chain_broken = 0;
					c->chain_extension = InvalidOid;
					memset(c->chain_mac, 0, sizeof(c->chain_mac));
					idx = i;
					break;
				}
			}
		if (idx < 0)
		{
			LWLockRelease(audit_shared->lock);
			if (!warned_no_queue && !in_abort)
				ereport(WARNING,
						(errmsg("access events of this database go to the server log: all %d access-log queues are in use by other databases",
								audit_shared->nqueues),
						 errhint("Raise privacy.access_log_databases (needs a restart).")));
			warned_no_queue = true;
			audit_emit_json_framed(data, len);
			return 0;
		}
		q = &audit_shared->queues[idx];
		if (len > qsize / 2)
		{
			/* the caller sends a record this large alone */
			LWLockRelease(audit_shared->lock);
			audit_emit_json_framed(data, len);
			ereport(in_abort ? WARNING : ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("access event of %zu bytes is larger than half the access log queue", len),
					 errdetail("The event was written to the server log instead."),
					 errhint("Raise privacy.access_log_queue_size (needs a restart).")));
			return 0;
		}
		if ((denial ? qsize / 2 : qsize) >= (Size) (q->head - q->tail) + len)
		{
			Size		off = (Size) (q->head % qsize);
			Size		first = Min(len, qsize - off);

			/* possibly wrapping */
			memcpy(q->data + off, data, first);
			memcpy(q->data, data + first, len - first);
			q->head += len;
			end = q->head;
			if (q->writer_state == WRITER_NONE ||
				(q->writer_state == WRITER_STARTING &&
				 TimestampDifferenceExceeds(q->writer_requested, GetCurrentTimestamp(), 10000)))
			{
				q->writer_state = WRITER_STARTING;
				q->writer_requested = GetCurrentTimestamp();
				need_writer = true;
			}
			latch = q->writer_latch;
			if (latch != NULL && (privacy_access_log_strict || (q->head - q->tail) > qsize / 2))
				SetLatch(latch);
			LWLockRelease(audit_shared->lock);
			if (need_writer)
				audit_start_writer(idx);
			*qindex = idx;
			return end;
		}

		/* full: wake the writer and wait for room */
		latch = q->writer_latch;
		need_writer = q->writer_state == WRITER_NONE;
		if (need_writer)
		{
			q->writer_state = WRITER_STARTING;
			q->writer_requested = GetCurrentTimestamp();
		}
		LWLockRelease(audit_shared->lock);
		if (need_writer)
			audit_start_writer(idx);
		if (latch != NULL)
			SetLatch(latch);
		if (in_abort)
		{
			/*
			 * An abort runs with interrupts held and its locks still taken:
			 * wait a bounded time, then write the events to the server log
			 * (as on a standby) rather than hang unkillable behind a writer
			 * that cannot drain (no master key, no free worker slot, a
			 * lock on the log's tables).
			 */
			if (abort_wait_since == 0)
				abort_wait_since = GetCurrentTimestamp();
			else if (TimestampDifferenceExceeds(abort_wait_since, GetCurrentTimestamp(),
												ABORT_QUEUE_WAIT_MS))
			{
				ereport(WARNING,
						(errmsg("access events of a failed statement went to the server log"),
						 errdetail("The access log queue of this database stayed full for %d ms.",
								   ABORT_QUEUE_WAIT_MS),
						 errhint("Check that the access log writer is running: SELECT * FROM privacy.access_log_status().")));
				audit_emit_json_framed(data, len);
				return 0;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10, WAIT_QUEUE_FULL);
			ResetLatch(MyLatch);
		}
		else
			ConditionVariableTimedSleep(&q->space_cv, 100, WAIT_QUEUE_FULL);
	}
}

/* Wait until the queue has committed everything up to position end. */
void
audit_wait_durable(int idx, uint64 end)
{
	AuditQueue *q = &audit_shared->queues[idx];

	for (;;)
	{
		uint64		tail;
		Latch	   *latch;

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		tail = q->tail;
		latch = q->writer_latch;
		LWLockRelease(audit_shared->lock);
		if (tail >= end || q->dboid != MyDatabaseId)
			break;
		if (latch != NULL)
			SetLatch(latch);
		ConditionVariableTimedSleep(&q->space_cv, 100, WAIT_DURABLE);
	}
	ConditionVariableCancelSleep();
}

/* The queue's bytes from start to end, unwrapped into buf. */
void
audit_queue_copy(AuditQueue *q, uint64 start, uint64 end, unsigned char *buf)
{
	Size		qsize = audit_shared->qsize;
	Size		len = (Size) (end - start);
	Size		off = (Size) (start % qsize);
	Size		first = Min(len, qsize - off);

	/* the bytes between tail and head stay put until the tail moves */
	memcpy(buf, q->data + off, first);
	memcpy(buf + first, q->data, len - first);
}

/*
 * Start the writer of queue index: whoever finds it not running does, so
 * that nothing stays queued without one (audit_writer.c has its main).
 */
void
audit_start_writer(int index)
{
	BackgroundWorker worker;
	Oid			dboid = MyDatabaseId;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "privacy");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "privacy_access_log_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, WRITER_TYPE);
	snprintf(worker.bgw_type, BGW_MAXLEN, WRITER_TYPE);
	worker.bgw_main_arg = Int32GetDatum(index);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	if (!RegisterDynamicBackgroundWorker(&worker, NULL))
	{
		static TimestampTz last_warned = 0;
		TimestampTz now = GetCurrentTimestamp();

		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		audit_shared->queues[index].writer_state = WRITER_NONE;
		LWLockRelease(audit_shared->lock);
		/* a backend waiting for room retries often: say it every 10 s */
		if (last_warned != 0 && !TimestampDifferenceExceeds(last_warned, now, 10000))
			return;
		last_warned = now;
		ereport(WARNING,
				(errmsg("could not start the access log writer"),
				 errdetail("Access events wait in shared memory until a writer can start."),
				 errhint("Raise max_worker_processes.")));
	}
}

/* ------------------------------------------------------------------------
 * The server log, as JSON lines: on a hot standby, and as the last resort.
 * ------------------------------------------------------------------------
 */
static void
json_field(StringInfo out, const char *name, const char *value, bool *first)
{
	if (!*first)
		appendStringInfoChar(out, ',');
	*first = false;
	escape_json(out, name);
	appendStringInfoChar(out, ':');
	if (value == NULL)
		appendStringInfoString(out, "null");
	else
		escape_json(out, value);
}

static void
json_number(StringInfo out, const char *name, int64 value, bool *first)
{
	if (!*first)
		appendStringInfoChar(out, ',');
	*first = false;
	escape_json(out, name);
	appendStringInfo(out, ":" INT64_FORMAT, value);
}

static const char *
database_name(void)
{
	static char name[NAMEDATALEN] = "";

	if (name[0] == '\0' && IsTransactionState())
	{
		char	   *n = get_database_name(MyDatabaseId);

		if (n != NULL)
			strlcpy(name, n, NAMEDATALEN);
	}
	return name;
}

void
audit_emit_json(StringInfo rec)
{
	StringInfoData out;
	Reader		r;
	bool		first = true;
	int			i;

	initStringInfo(&out);
	r.p = (unsigned char *) rec->data;
	r.end = r.p + rec->len;
	appendStringInfoChar(&out, '{');
	if (rec->len > 0 && rec->data[0] == ENTRY_STATEMENT)
	{
		StatementEntry e;

		audit_parse_statement(&r, &e);
		json_field(&out, "kind", "statement", &first);
		json_field(&out, "at", timestamptz_to_str(e.at), &first);
		json_field(&out, "database", database_name(), &first);
		json_field(&out, "session_role", e.session_role, &first);
		json_field(&out, "acting_role", e.acting_role, &first);
		json_field(&out, "application", e.application, &first);
		json_field(&out, "client_addr", e.client_addr, &first);
		json_number(&out, "backend_pid", e.backend_pid, &first);
		json_field(&out, "purpose", e.purpose, &first);
		json_field(&out, "command", e.command, &first);
		json_field(&out, "relation", e.relation, &first);
		appendStringInfoString(&out, ",\"columns\":[");
		for (i = 0; i < e.ncolumns; i++)
		{
			if (i > 0)
				appendStringInfoChar(&out, ',');
			escape_json(&out, e.columns[i]);
		}
		appendStringInfoString(&out, "],\"categories\":[");
		for (i = 0; i < e.ncolumns; i++)
		{
			if (i > 0)
				appendStringInfoChar(&out, ',');
			escape_json(&out, e.categories[i]);
		}
		appendStringInfoChar(&out, ']');
		json_number(&out, "rows", e.rows, &first);
		json_number(&out, "query_id", e.query_id, &first);
		json_number(&out, "level", e.level, &first);
		json_field(&out, "outcome", e.outcome, &first);
		if (e.reason != NULL)
		{
			json_field(&out, "reason", e.reason, &first);
			json_field(&out, "denied_category", e.denied_category, &first);
		}
	}
	else if (rec->len > 0 && rec->data[0] == ENTRY_SUBJECTS)
	{
		uint32		n;

		r.p++;
		json_field(&out, "kind", "subjects", &first);
		json_number(&out, "backend_pid", (int32) audit_get_u32(&r), &first);
		(void) audit_get_i64(&r);		/* the backend's start: for the writer */
		n = audit_get_u32(&r);
		appendStringInfoString(&out, ",\"subjects\":[");
		for (i = 0; i < (int) n; i++)
		{
			char		hex[PRIVACY_SUBJECT_HASH_BYTES * 2 + 1];
			char	   *category;
			int64		count;

			if (r.end - r.p < PRIVACY_SUBJECT_HASH_BYTES)
				break;
			sodium_bin2hex(hex, sizeof(hex), r.p, PRIVACY_SUBJECT_HASH_BYTES);
			r.p += PRIVACY_SUBJECT_HASH_BYTES;
			category = audit_get_str(&r);
			count = audit_get_i64(&r);
			appendStringInfo(&out, "%s{\"subject_hash\":\"%s\",\"category\":", i > 0 ? "," : "", hex);
			escape_json(&out, category ? category : "");
			appendStringInfo(&out, ",\"opened\":" INT64_FORMAT "}", count);
		}
		appendStringInfoChar(&out, ']');
	}
	appendStringInfoChar(&out, '}');
	ereport(LOG,
			(errmsg_internal(AUDIT_LOG_LINE_FORMAT, out.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(out.data);
}

/* Framed records (see audit_enqueue), each to the server log. */
void
audit_emit_json_framed(const char *data, Size len)
{
	Size		pos = 0;
	StringInfoData rec;

	initStringInfo(&rec);
	while (pos + 4 <= len)
	{
		const unsigned char *p = (const unsigned char *) data + pos;
		uint32		rlen = ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];

		if (rlen < 5 || pos + rlen > len)
			break;
		resetStringInfo(&rec);
		appendBinaryStringInfo(&rec, data + pos + 4, rlen - 4);
		audit_emit_json(&rec);
		pos += rlen;
	}
	pfree(rec.data);
}
