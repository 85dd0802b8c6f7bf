/*
 * audit.c — the access log: who touched whose personal data, when and why.
 *
 * Backends record one event per statement per protected table it touches
 * (executor hooks; the utility hook for COPY, which reads and writes tables
 * outside the executor), plus the subjects whose encrypted values the
 * statement opened (types.c calls types_value_opened_hook, which
 * audit_init points at audit_value_opened).  Events never contain
 * statement text or parameter values.
 *
 * Delivery: at the end of a statement (or when its transaction or
 * subtransaction aborts) the backend serializes its events into a queue in
 * shared memory, one queue per database, and goes on: a SELECT never waits
 * for the log's disk I/O.  A writer background worker, started on demand
 * for each database, commits the queue to the log every
 * privacy.access_log_flush_interval, so a crash loses at most that much.
 * It stores the entries of a flush packed in a few rows of
 * privacy.access_log_batches (a heap row per entry made it the bottleneck);
 * the views privacy.access_log and privacy.access_log_subjects unpack them.
 * Events are written outside the reader's transaction, so they survive its
 * rollback and work in read-only transactions.  A full queue makes the
 * backend wait (wait event Extension) rather than drop anything.  In strict
 * mode (privacy.access_log_strict) a statement waits until its events are
 * committed before it completes.  On a hot standby, where nothing can be
 * written, events go to the server log as one JSON object per line.
 *
 * Tamper evidence: the writer gives each entry (a statement event, or one
 * subject opened in it) the next sequence number and chains a keyed MAC
 * over its canonical bytes (logchain.c); privacy.verify_access_log()
 * recomputes the chain.  The canonical bytes are this file's serialization
 * of an entry's fields, the same the queue carries, so the writer MACs
 * exactly what the backend recorded.
 *
 * Statements run by the extension's own SECURITY DEFINER functions (purge,
 * erasure, key maintenance) are not user access and are not logged: an
 * fmgr hook counts how deep the backend is inside them.
 */
#include "privacy.h"

#include <sodium.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif
#include "utils/timestamp.h"

#include "logchain.h"

#define WRITER_TYPE "privacy access log writer"
#define WRITER_IDLE_EXIT_MS 2000	/* well inside DROP DATABASE's 5 s wait */
#define SUBJECTS_PER_RECORD 200
#define ENTRY_STATEMENT 'S'
#define ENTRY_SUBJECTS 'U'		/* queue record: subjects of the last 'S' */
#define ENTRY_SUBJECT 'u'		/* canonical bytes of one subject entry */

/* ------------------------------------------------------------------------
 * Shared memory: one queue per database that logs, each a byte ring.
 * ------------------------------------------------------------------------
 */
typedef enum WriterState
{
	WRITER_NONE,
	WRITER_STARTING,
	WRITER_RUNNING
} WriterState;

typedef struct AuditQueue
{
	Oid			dboid;			/* InvalidOid: free */
	WriterState writer_state;
	TimestampTz writer_requested;
	int			writer_pid;
	Latch	   *writer_latch;
	uint64		head;			/* bytes ever enqueued */
	uint64		tail;			/* bytes ever committed to the log */
	uint64		chain_seq;		/* last seq a writer committed since start */
	unsigned char chain_mac[LOGCHAIN_MAC_BYTES];
	Oid			chain_relid;	/* ... into this privacy.access_log */
	ConditionVariable space_cv; /* tail moved */
	char	   *data;			/* privacy_access_log_queue_size kB */
} AuditQueue;

typedef struct AuditShared
{
	LWLock	   *lock;
	int			nqueues;
	Size		qsize;
	AuditQueue	queues[FLEXIBLE_ARRAY_MEMBER];
} AuditShared;

static AuditShared *audit_shared = NULL;

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

/* ------------------------------------------------------------------------
 * Canonical bytes.  Integers big-endian; a string is its length (4 bytes,
 * 0xFFFFFFFF for NULL) and its bytes.  The queue carries statement events
 * in exactly this form; verify rebuilds it from the stored row.
 * ------------------------------------------------------------------------
 */
static void
put_u32(StringInfo buf, uint32 v)
{
	unsigned char b[4];

	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
	appendBinaryStringInfo(buf, (char *) b, 4);
}

static void
put_i64(StringInfo buf, int64 v)
{
	put_u32(buf, (uint32) ((uint64) v >> 32));
	put_u32(buf, (uint32) v);
}

static void
put_str(StringInfo buf, const char *s)
{
	if (s == NULL)
		put_u32(buf, 0xFFFFFFFFu);
	else
	{
		size_t		len = strlen(s);

		put_u32(buf, (uint32) len);
		appendBinaryStringInfo(buf, s, len);
	}
}

typedef struct Reader
{
	const unsigned char *p;
	const unsigned char *end;
} Reader;

static void batch_corrupt(void);

static uint32
get_u32(Reader *r)
{
	uint32		v;

	if (r->end - r->p < 4)
		batch_corrupt();
	v = ((uint32) r->p[0] << 24) | ((uint32) r->p[1] << 16) | ((uint32) r->p[2] << 8) | r->p[3];
	r->p += 4;
	return v;
}

static int64
get_i64(Reader *r)
{
	uint64		hi = get_u32(r);

	return (int64) ((hi << 32) | get_u32(r));
}

/* A palloc'd copy, or NULL. */
static char *
get_str(Reader *r)
{
	uint32		len = get_u32(r);
	char	   *s;

	if (len == 0xFFFFFFFFu)
		return NULL;
	if ((size_t) (r->end - r->p) < len)
		batch_corrupt();
	s = palloc(len + 1);
	memcpy(s, r->p, len);
	s[len] = '\0';
	r->p += len;
	return s;
}

/* One statement event, as stored in a row of privacy.access_log. */
typedef struct StatementEntry
{
	TimestampTz at;
	char	   *session_role;
	char	   *acting_role;
	char	   *application;
	char	   *client_addr;
	int32		backend_pid;
	char	   *purpose;
	char	   *command;
	Oid			relid;
	char	   *relation;
	int			ncolumns;
	char	  **columns;
	char	  **categories;
	int64		rows;
	int64		query_id;
	int32		level;
	char	   *outcome;
} StatementEntry;

static void
canon_statement(StringInfo buf, const StatementEntry *e)
{
	int			i;

	appendStringInfoChar(buf, ENTRY_STATEMENT);
	put_i64(buf, e->at);
	put_str(buf, e->session_role);
	put_str(buf, e->acting_role);
	put_str(buf, e->application);
	put_str(buf, e->client_addr);
	put_u32(buf, (uint32) e->backend_pid);
	put_str(buf, e->purpose);
	put_str(buf, e->command);
	put_u32(buf, e->relid);
	put_str(buf, e->relation);
	put_u32(buf, (uint32) e->ncolumns);
	for (i = 0; i < e->ncolumns; i++)
	{
		put_str(buf, e->columns[i]);
		put_str(buf, e->categories[i]);
	}
	put_i64(buf, e->rows);
	put_i64(buf, e->query_id);
	put_u32(buf, (uint32) e->level);
	put_str(buf, e->outcome);
}

static void
parse_statement(Reader *r, StatementEntry *e)
{
	int			i;

	if (r->p >= r->end || *r->p != ENTRY_STATEMENT)
		elog(ERROR, "access log record is not a statement event");
	r->p++;
	e->at = get_i64(r);
	e->session_role = get_str(r);
	e->acting_role = get_str(r);
	e->application = get_str(r);
	e->client_addr = get_str(r);
	e->backend_pid = (int32) get_u32(r);
	e->purpose = get_str(r);
	e->command = get_str(r);
	e->relid = get_u32(r);
	e->relation = get_str(r);
	e->ncolumns = (int) get_u32(r);
	if (e->ncolumns < 0 || e->ncolumns > MaxHeapAttributeNumber)
		batch_corrupt();
	e->columns = palloc(sizeof(char *) * (e->ncolumns + 1));
	e->categories = palloc(sizeof(char *) * (e->ncolumns + 1));
	for (i = 0; i < e->ncolumns; i++)
	{
		e->columns[i] = get_str(r);
		e->categories[i] = get_str(r);
	}
	e->rows = get_i64(r);
	e->query_id = get_i64(r);
	e->level = (int32) get_u32(r);
	e->outcome = get_str(r);
}

static void
canon_subject(StringInfo buf, int64 event, const unsigned char *hash,
			  const char *category, int64 opened)
{
	appendStringInfoChar(buf, ENTRY_SUBJECT);
	put_i64(buf, event);
	appendBinaryStringInfo(buf, (const char *) hash, PRIVACY_SUBJECT_HASH_BYTES);
	put_str(buf, category);
	put_i64(buf, opened);
}

/* ------------------------------------------------------------------------
 * Batches.  The writer stores the entries of one flush packed into rows of
 * privacy.access_log_batches, each entry as its seq (8 bytes), the length
 * of its canonical bytes (4), the canonical bytes, and its MAC (16); the
 * row also holds the batch's nonce, from which its MAC keys come.  The
 * views privacy.access_log and privacy.access_log_subjects unpack them.
 * ------------------------------------------------------------------------
 */
#define PACKED_OVERHEAD (8 + 4 + LOGCHAIN_MAC_BYTES)
/* SQL for the MAC of a batch row's last entry: its entries' final bytes */
#define MAC_OF_LAST_ENTRY "pg_catalog.substr(entries, pg_catalog.length(entries) - " \
	CppAsString2(LOGCHAIN_MAC_BYTES) " + 1)"
#define BATCH_MAX_BYTES (1024 * 1024)
#define BATCH_MAX_ENTRIES 8192

/* The next packed entry: 1, 0 at the end, -1 when the bytes are malformed. */
static int
unpack_next(Reader *r, LogchainEntry *e)
{
	const unsigned char *p = r->p;
	uint32		len;

	if (p == r->end)
		return 0;
	if (r->end - p < PACKED_OVERHEAD)
		return -1;
	e->seq = ((uint64) p[0] << 56) | ((uint64) p[1] << 48) | ((uint64) p[2] << 40) |
		((uint64) p[3] << 32) | ((uint64) p[4] << 24) | ((uint64) p[5] << 16) |
		((uint64) p[6] << 8) | p[7];
	len = ((uint32) p[8] << 24) | ((uint32) p[9] << 16) | ((uint32) p[10] << 8) | p[11];
	p += 12;
	if ((size_t) (r->end - p) < (size_t) len + LOGCHAIN_MAC_BYTES)
		return -1;
	e->bytes = p;
	e->len = len;
	e->mac = p + len;
	r->p = p + len + LOGCHAIN_MAC_BYTES;
	return 1;
}

/* The key access_log_batches.subjects holds: the hash's first 8 bytes. */
static int64
subject_key(const unsigned char *hash)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | hash[i];
	return (int64) v;
}

static void
batch_corrupt(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("an access log batch is malformed"),
			 errdetail("A row of privacy.access_log_batches does not hold well-formed entries."),
			 errhint("Run SELECT * FROM privacy.verify_access_log() to see where the log was changed.")));
}

/* A string field without copying it. */
static void
skip_str(Reader *r)
{
	uint32		len = get_u32(r);

	if (len == 0xFFFFFFFFu)
		return;
	if ((size_t) (r->end - r->p) < len)
		batch_corrupt();
	r->p += len;
}

static Datum text_array(char **items, int n);
static Datum bytea_datum(const unsigned char *b, size_t len);

/*
 * The set-up of a function returning the entries of a batch row: its
 * result in materialize mode, and a reader over argument 0 (false when
 * that is NULL: no rows).
 */
static bool
batch_srf_begin(FunctionCallInfo fcinfo, Reader *r)
{
	bytea	   *b;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return false;
	b = PG_GETARG_BYTEA_PP(0);
	r->p = (unsigned char *) VARDATA_ANY(b);
	r->end = r->p + VARSIZE_ANY_EXHDR(b);
	return true;
}

/*
 * privacy._access_log_statements(entries, only_seq): the statement events
 * of one batch, as rows of privacy.access_log.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_statements);
Datum
privacy_access_log_statements(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		only = !PG_ARGISNULL(1);
	int64		want = only ? PG_GETARG_INT64(1) : 0;
	Reader		r;
	LogchainEntry e;
	int			rc;
	MemoryContext tmp;
	MemoryContext old;

	if (!batch_srf_begin(fcinfo, &r))
		return (Datum) 0;
	tmp = AllocSetContextCreate(CurrentMemoryContext, "access log row", ALLOCSET_SMALL_SIZES);
	while ((rc = unpack_next(&r, &e)) > 0)
	{
		Datum		values[18];
		bool		nulls[18];
		StatementEntry s;
		Reader		er;

		if (e.len == 0 || e.bytes[0] != ENTRY_STATEMENT)
			continue;
		if (only && (int64) e.seq != want)
			continue;
		old = MemoryContextSwitchTo(tmp);
		er.p = e.bytes;
		er.end = e.bytes + e.len;
		parse_statement(&er, &s);
		if (er.p != er.end)
			batch_corrupt();
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum((int64) e.seq);
		values[1] = TimestampTzGetDatum(s.at);
#define NTEXT(i, str) (nulls[i] = ((str) == NULL), values[i] = (str) ? CStringGetTextDatum(str) : (Datum) 0)
		NTEXT(2, s.session_role);
		NTEXT(3, s.acting_role);
		NTEXT(4, s.application);
		NTEXT(5, s.client_addr);
		values[6] = Int32GetDatum(s.backend_pid);
		NTEXT(7, s.purpose);
		NTEXT(8, s.command);
		values[9] = ObjectIdGetDatum(s.relid);
		nulls[9] = !OidIsValid(s.relid);
		NTEXT(10, s.relation);
		values[11] = text_array(s.columns, s.ncolumns);
		values[12] = text_array(s.categories, s.ncolumns);
		values[13] = Int64GetDatum(s.rows);
		values[14] = Int64GetDatum(s.query_id);
		values[15] = Int32GetDatum(s.level);
		NTEXT(16, s.outcome);
#undef NTEXT
		values[17] = bytea_datum(e.mac, LOGCHAIN_MAC_BYTES);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(tmp);
		if (only)
			break;
	}
	MemoryContextDelete(tmp);
	if (rc < 0)
		batch_corrupt();
	return (Datum) 0;
}

/*
 * privacy._access_log_subject_entries(entries, subject_hash): the subject
 * entries of one batch (of one subject, when given), as rows of
 * privacy.access_log_subjects.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_subject_entries);
Datum
privacy_access_log_subject_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *want = PG_ARGISNULL(1) ? NULL : PG_GETARG_BYTEA_PP(1);
	Reader		r;
	LogchainEntry e;
	int			rc;

	if (!batch_srf_begin(fcinfo, &r))
		return (Datum) 0;
	if (want != NULL && VARSIZE_ANY_EXHDR(want) != PRIVACY_SUBJECT_HASH_BYTES)
		return (Datum) 0;
	while ((rc = unpack_next(&r, &e)) > 0)
	{
		Datum		values[6];
		bool		nulls[6];
		Reader		er;
		int64		event;
		const unsigned char *hash;
		char	   *category;

		if (e.len == 0 || e.bytes[0] != ENTRY_SUBJECT)
			continue;
		er.p = e.bytes + 1;
		er.end = e.bytes + e.len;
		event = get_i64(&er);
		if (er.end - er.p < PRIVACY_SUBJECT_HASH_BYTES)
			batch_corrupt();
		hash = er.p;
		er.p += PRIVACY_SUBJECT_HASH_BYTES;
		if (want != NULL && memcmp(hash, VARDATA_ANY(want), PRIVACY_SUBJECT_HASH_BYTES) != 0)
			continue;
		category = get_str(&er);
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum((int64) e.seq);
		values[1] = Int64GetDatum(event);
		values[2] = bytea_datum(hash, PRIVACY_SUBJECT_HASH_BYTES);
		values[3] = category ? CStringGetTextDatum(category) : (Datum) 0;
		nulls[3] = category == NULL;
		values[4] = Int64GetDatum(get_i64(&er));
		values[5] = bytea_datum(e.mac, LOGCHAIN_MAC_BYTES);
		if (er.p != er.end)
			batch_corrupt();
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (rc < 0)
		batch_corrupt();
	return (Datum) 0;
}

/* privacy._access_log_subject_key(subject_hash) → bigint */
PG_FUNCTION_INFO_V1(privacy_access_log_subject_key);
Datum
privacy_access_log_subject_key(PG_FUNCTION_ARGS)
{
	bytea	   *h = PG_GETARG_BYTEA_PP(0);

	if (VARSIZE_ANY_EXHDR(h) != PRIVACY_SUBJECT_HASH_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a subject hash has %d bytes, not %d",
						PRIVACY_SUBJECT_HASH_BYTES, (int) VARSIZE_ANY_EXHDR(h)),
				 errhint("Use privacy.subject_hash(subject).")));
	PG_RETURN_INT64(subject_key((unsigned char *) VARDATA_ANY(h)));
}

/* ------------------------------------------------------------------------
 * Backend side: frames, events, subjects.
 *
 * A frame is one executor run (or one COPY) in progress.  It holds an
 * event per protected table the statement names, and the subjects whose
 * values were opened while it was the innermost frame.
 * ------------------------------------------------------------------------
 */
typedef struct SubjectCount
{
	uint32		key_id;			/* hash key, with category */
	uint16		category;
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];
	char		category_name[NAMEDATALEN];
	int64		count;
} SubjectCount;

typedef struct SubjectKey
{
	uint32		key_id;
	uint16		category;
} SubjectKey;

typedef struct AuditFrame
{
	struct AuditFrame *outer;	/* the frame started before this one */
	QueryDesc  *qd;				/* the executor run, or NULL */
	bool		copy;			/* a COPY statement (utility) */
	bool		copy_claimed;	/* its executor run, if any, has started */
	int			level;
	SubTransactionId subid;
	List	   *events;			/* StatementEntry *, rows/outcome unset */
	HTAB	   *subjects;		/* SubjectCount, created on first open */
	int64		utility_rows;
	int64		rows_run;		/* es_processed when its run last returned */
	bool		flushed;		/* its events went out: never again */
	CmdType		operation;
	const char *utility_tag;	/* frames of utility statements */
	int64		query_id;
	int			ninline;		/* the first subjects, without a hash table */
	SubjectCount *inline_subjects;
} AuditFrame;

#define INLINE_SUBJECTS 8

static bool
frame_has_subjects(AuditFrame *f)
{
	return f->ninline > 0 || (f->subjects != NULL && hash_get_num_entries(f->subjects) > 0);
}

/*
 * The count of one subject key and category in a frame: most statements
 * open a few subjects, kept in a small array; a hash table takes over
 * beyond that.
 */
static SubjectCount *
frame_subject(AuditFrame *f, uint32 key_id, uint16 category, MemoryContext cxt, bool *found)
{
	SubjectKey	k;
	int			i;

	for (i = 0; i < f->ninline; i++)
		if (f->inline_subjects[i].key_id == key_id && f->inline_subjects[i].category == category)
		{
			*found = true;
			return &f->inline_subjects[i];
		}
	if (f->subjects == NULL && f->ninline < INLINE_SUBJECTS)
	{
		SubjectCount *sc;

		if (f->inline_subjects == NULL)
			f->inline_subjects = MemoryContextAlloc(cxt, sizeof(SubjectCount) * INLINE_SUBJECTS);
		sc = &f->inline_subjects[f->ninline++];
		memset(sc, 0, sizeof(*sc));
		sc->key_id = key_id;
		sc->category = category;
		*found = false;
		return sc;
	}
	if (f->subjects == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(SubjectKey);
		ctl.entrysize = sizeof(SubjectCount);
		ctl.hcxt = cxt;
		f->subjects = hash_create("privacy opened subjects", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&k, 0, sizeof(k));
	k.key_id = key_id;
	k.category = category;
	return hash_search(f->subjects, &k, HASH_ENTER, found);
}

static AuditFrame *frames = NULL;	/* newest first */
static AuditFrame *active_frame = NULL; /* the one running now */
static AuditFrame *last_run_frame = NULL;	/* the one that ran last */
static AuditFrame *loose_frame = NULL;	/* opens after their frame ended */
static MemoryContext loose_context = NULL;
static MemoryContext audit_context = NULL;
static bool am_writer = false;
static int	exec_depth = 0;
static int	internal_depth = 0;
static int	last_error_code = 0;

/*
 * Relations' names as events show them (schema.table, quoted), until a
 * relation cache invalidation says names may have changed.
 */
typedef struct DisplayName
{
	Oid			relid;
	uint64		generation;		/* of display_names_generation */
	char		name[4 * NAMEDATALEN + 8];
} DisplayName;

static HTAB *display_names = NULL;

/*
 * A map of this backend's, made on first use and started afresh once it
 * holds more than max entries (what it remembers can be found again).
 */
static HTAB *
small_map(HTAB **map, const char *name, Size keysize, Size entrysize, long max)
{
	if (*map != NULL && hash_get_num_entries(*map) > max)
	{
		hash_destroy(*map);
		*map = NULL;
	}
	if (*map == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = keysize;
		ctl.entrysize = entrysize;
		ctl.hcxt = TopMemoryContext;
		*map = hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return *map;
}

static uint64 display_names_generation = 1;

static void
audit_relcache_callback(Datum arg, Oid relid)
{
	display_names_generation++;
}

static char *
display_name(Oid relid)
{
	static DisplayName *last = NULL;	/* most statements name one table */
	DisplayName *dn;
	bool		found;
	char	   *nsp;
	char	   *rel;

	if (last != NULL && last->relid == relid && last->generation == display_names_generation)
		return pstrdup(last->name);
	last = NULL;				/* the map may be started afresh below */
	dn = hash_search(small_map(&display_names, "privacy relation names", sizeof(Oid),
							   sizeof(DisplayName), 10000),
					 &relid, HASH_ENTER, &found);
	if (found && dn->generation == display_names_generation)
	{
		last = dn;
		return pstrdup(dn->name);
	}
	nsp = get_namespace_name(get_rel_namespace(relid));
	rel = get_rel_name(relid);
	if (nsp == NULL || rel == NULL)
	{
		hash_search(display_names, &relid, HASH_REMOVE, NULL);
		return psprintf("relation %u", relid);
	}
	strlcpy(dn->name, quote_qualified_identifier(nsp, rel), sizeof(dn->name));
	dn->generation = display_names_generation;
	last = dn;
	return pstrdup(dn->name);
}

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

/* Role names, application and client address: what every event repeats. */
static char *
role_name(Oid roleid)
{
	static Oid	cached_oid = InvalidOid;
	static uint64 cached_generation = 0;	/* a rename bumps it */
	static char cached[NAMEDATALEN];
	HeapTuple	tup;

	if (roleid == cached_oid && OidIsValid(roleid) && cached_generation == catalog_generation)
		return pstrdup(cached);
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		return psprintf("role %u", roleid);
	strlcpy(cached, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname), NAMEDATALEN);
	ReleaseSysCache(tup);
	cached_oid = roleid;
	cached_generation = catalog_generation;
	return pstrdup(cached);
}

/* The client's address as inet prints it; NULL over a Unix socket. */
static char *
client_address(void)
{
	static bool done = false;
	static char addr[64];

	if (!done)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		d;

		addr[0] = '\0';
		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		d = inet_client_addr(fcinfo);
		if (!fcinfo->isnull)
			strlcpy(addr, DatumGetCString(DirectFunctionCall1(inet_out, d)), sizeof(addr));
		done = true;
	}
	return addr[0] ? pstrdup(addr) : NULL;
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

/* An event for one relation (or for none: subjects opened elsewhere). */
static StatementEntry *
new_event(const char *command, Oid relid, const CatalogRelation *ri, Bitmapset *cols, bool all_columns)
{
	StatementEntry *e = palloc0(sizeof(StatementEntry));
	int			i;

	e->at = GetCurrentStatementStartTimestamp();
	e->session_role = role_name(GetSessionUserId());
	e->acting_role = role_name(GetUserId());
	e->application = (application_name && application_name[0]) ? pstrdup(application_name) : NULL;
	e->client_addr = client_address();
	e->backend_pid = MyProcPid;
	e->purpose = (privacy_purpose && privacy_purpose[0]) ? pstrdup(privacy_purpose) : NULL;
	e->command = pstrdup(command);
	e->relid = relid;
	if (OidIsValid(relid))
		e->relation = display_name(relid);
	e->columns = palloc(sizeof(char *) * ((ri ? ri->ncolumns : 0) + 1));
	e->categories = palloc(sizeof(char *) * ((ri ? ri->ncolumns : 0) + 1));
	for (i = 0; ri != NULL && i < ri->ncolumns; i++)
	{
		bool		whole_row = all_columns ||
			bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, cols);

		if (whole_row || bms_is_member(ri->attnums[i] - FirstLowInvalidHeapAttributeNumber, cols))
		{
			e->columns[e->ncolumns] = pstrdup(ri->columns[i]);
			e->categories[e->ncolumns] = pstrdup(ri->categories[i]);
			e->ncolumns++;
		}
	}
	return e;
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

/* ------------------------------------------------------------------------
 * Enqueueing.
 * ------------------------------------------------------------------------
 */
static void emit_json(StringInfo rec);
static void start_writer(int index);

static bool warned_no_queue = false;

/*
 * The wait events of the access log.  PostgreSQL 17 lets an extension name
 * its own; before that they all show as "Extension".
 */
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#endif

static uint32
wait_event(const char *name)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(name);
#else
	(void) name;
	return PG_WAIT_EXTENSION;
#endif
}

#define WAIT_QUEUE_FULL	wait_event("PrivacyAccessLogQueueFull")
#define WAIT_DURABLE	wait_event("PrivacyAccessLogDurable")
#define WAIT_WRITER		wait_event("PrivacyAccessLogWriterMain")

static void emit_json_framed(const char *data, Size len);

/* How long an aborting statement waits for room before using the server log. */
#define ABORT_QUEUE_WAIT_MS 2000

/*
 * Append records, each already framed as a 4-byte length (its own 4
 * included) and its bytes, to this database's queue under one lock.  Waits
 * while the queue is full.  Returns the queue position after them, or 0 if
 * they went to the server log instead.
 */
static uint64
enqueue(const char *data, Size len, bool in_abort, int *qindex)
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
					c->chain_relid = InvalidOid;
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
			emit_json_framed(data, len);
			return 0;
		}
		q = &audit_shared->queues[idx];
		if (len > qsize / 2)
		{
			/* the caller sends a record this large alone */
			LWLockRelease(audit_shared->lock);
			emit_json_framed(data, len);
			ereport(in_abort ? WARNING : ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("access event of %zu bytes is larger than half the access log queue", len),
					 errdetail("The event was written to the server log instead."),
					 errhint("Raise privacy.access_log_queue_size (needs a restart).")));
			return 0;
		}
		if (qsize - (Size) (q->head - q->tail) >= len)
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
				start_writer(idx);
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
			start_writer(idx);
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
				emit_json_framed(data, len);
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
static void
wait_durable(int idx, uint64 end)
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

static void
emit_json(StringInfo rec)
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

		parse_statement(&r, &e);
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
	}
	else if (rec->len > 0 && rec->data[0] == ENTRY_SUBJECTS)
	{
		uint32		n;

		r.p++;
		json_field(&out, "kind", "subjects", &first);
		json_number(&out, "backend_pid", (int32) get_u32(&r), &first);
		(void) get_i64(&r);		/* the backend's start: for the writer */
		n = get_u32(&r);
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
			category = get_str(&r);
			count = get_i64(&r);
			appendStringInfo(&out, "%s{\"subject_hash\":\"%s\",\"category\":", i > 0 ? "," : "", hex);
			escape_json(&out, category ? category : "");
			appendStringInfo(&out, ",\"opened\":" INT64_FORMAT "}", count);
		}
		appendStringInfoChar(&out, ']');
	}
	appendStringInfoChar(&out, '}');
	ereport(LOG,
			(errmsg_internal("privacy access: %s", out.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(out.data);
}

/* Framed records (see enqueue), each to the server log. */
static void
emit_json_framed(const char *data, Size len)
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
		emit_json(&rec);
		pos += rlen;
	}
	pfree(rec.data);
}

/* ------------------------------------------------------------------------
 * Flushing a frame: its events, then its subjects, into the queue.
 * ------------------------------------------------------------------------
 */
static void
set_count(StringInfo rec, int at, uint32 n)
{
	rec->data[at] = n >> 24;
	rec->data[at + 1] = n >> 16;
	rec->data[at + 2] = n >> 8;
	rec->data[at + 3] = n;
}

/*
 * A statement's records on their way: framed in one buffer, so that they
 * take the queue's lock once (up to SENDER_CHUNK bytes at a time).
 */
#define SENDER_CHUNK (16 * 1024)

typedef struct Sender
{
	StringInfoData out;			/* framed records not yet in the queue */
	bool		standby;		/* they go to the server log instead */
	bool		in_abort;
	uint64		end;			/* the queue position after the last sent */
	int			qidx;
} Sender;

static void
sender_flush(Sender *s)
{
	if (s->out.len > 0)
		s->end = enqueue(s->out.data, s->out.len, s->in_abort, &s->qidx);
	resetStringInfo(&s->out);
}

/* Send one record: to the queue, or on a standby to the server log. */
static void
send_record(Sender *s, StringInfo rec)
{
	uint32		len = rec->len + 4;

	if (s->standby)
	{
		emit_json(rec);
		return;
	}
	if (s->out.len > 0 && s->out.len + len > SENDER_CHUNK)
		sender_flush(s);
	put_u32(&s->out, len);
	appendBinaryStringInfo(&s->out, rec->data, rec->len);
	if (s->out.len > SENDER_CHUNK)
		sender_flush(s);		/* a large record, alone */
}

/* The subjects a frame opened, in records of SUBJECTS_PER_RECORD. */
static void
send_subjects(AuditFrame *f, StringInfo rec, Sender *sender)
{
	HASH_SEQ_STATUS seq;
	SubjectCount *sc;
	int			n = 0;
	int			count_at = 0;
	int			next_inline = 0;

	if (!frame_has_subjects(f))
		return;
	if (f->subjects != NULL)
		hash_seq_init(&seq, f->subjects);
	for (;;)
	{
		if (next_inline < f->ninline)
			sc = &f->inline_subjects[next_inline++];
		else if (f->subjects == NULL || (sc = hash_seq_search(&seq)) == NULL)
			break;
		if (n == 0)
		{
			resetStringInfo(rec);
			appendStringInfoChar(rec, ENTRY_SUBJECTS);
			put_u32(rec, (uint32) MyProcPid);
			put_i64(rec, MyStartTimestamp);	/* pids are reused */
			count_at = rec->len;
			put_u32(rec, 0);
		}
		appendBinaryStringInfo(rec, (char *) sc->hash, PRIVACY_SUBJECT_HASH_BYTES);
		put_str(rec, sc->category_name);
		put_i64(rec, sc->count);
		if (++n == SUBJECTS_PER_RECORD)
		{
			set_count(rec, count_at, n);
			send_record(sender, rec);
			n = 0;
		}
	}
	if (n > 0)
	{
		set_count(rec, count_at, n);
		send_record(sender, rec);
	}
}

/*
 * Flushing a frame: its events into the queue, the subjects right after
 * the first (the writer links them to the statement event before them).
 */
static void
flush_frame(AuditFrame *f, const char *outcome, int64 rows, bool in_abort)
{
	ListCell   *lc;
	StringInfoData rec;
	Sender		sender;
	bool		first = true;

	initStringInfo(&rec);
	initStringInfo(&sender.out);
	sender.standby = RecoveryInProgress();
	sender.in_abort = in_abort;
	sender.end = 0;
	sender.qidx = -1;
	foreach(lc, f->events)
	{
		StatementEntry *e = lfirst(lc);

		e->rows = rows;
		e->query_id = f->query_id;
		e->level = f->level;
		e->outcome = (char *) outcome;
		resetStringInfo(&rec);
		canon_statement(&rec, e);
		send_record(&sender, &rec);
		if (first)
			send_subjects(f, &rec, &sender);
		first = false;
	}
	if (f->events == NIL)
		send_subjects(f, &rec, &sender);
	sender_flush(&sender);
	pfree(rec.data);
	pfree(sender.out.data);

	if (privacy_access_log_strict && !in_abort && sender.end > 0 && sender.qidx >= 0)
		wait_durable(sender.qidx, sender.end);
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
			flush_frame(loose_frame, NULL, 0, true);
		}
		PG_CATCH();
		{
			FlushErrorState();
		}
		PG_END_TRY();
		RESUME_INTERRUPTS();
	}
	else
		flush_frame(loose_frame, NULL, 0, false);
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
	if (f->subjects != NULL)
		hash_destroy(f->subjects);
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
		flush_frame(f, outcome, f->qd != NULL ? f->rows_run : f->utility_rows, true);
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
 * The chain key while verify or trim holds it: here rather than on their
 * stack, so that an error on the way is followed by its wiping (abort).
 */
static unsigned char chain_key_scratch[LOGCHAIN_KEY_BYTES];

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
			sodium_memzero(chain_key_scratch, sizeof(chain_key_scratch));
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
		sodium_memzero(chain_key_scratch, sizeof(chain_key_scratch));
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
	AuditFrame *f = active_frame;

	if (internal_depth > 0 || !privacy_access_log || audit_shared == NULL)
		return;
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
	/* values opened with no protected table in the statement */
	if (f->events == NIL && f != loose_frame && !frame_has_subjects(f))
	{
		MemoryContext old = MemoryContextSwitchTo(audit_context);

		f->events = list_make1(new_event(f->qd == NULL && !f->copy ? f->utility_tag :
										 command_name(f->operation, f->copy),
										 InvalidOid, NULL, NULL, false));
		MemoryContextSwitchTo(old);
	}
	sc = frame_subject(f, key_id, category_id, f == loose_frame ? loose_context : audit_context, &found);
	if (!found)
	{
		const char *cat = catalog_category_name(category_id);

		memcpy(sc->hash, hash, PRIVACY_SUBJECT_HASH_BYTES);
		if (cat != NULL)
			strlcpy(sc->category_name, cat, NAMEDATALEN);
		else
			snprintf(sc->category_name, NAMEDATALEN, "category %u", category_id);
		sc->count = 0;
	}
	sc->count++;
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
		events = lappend(events, new_event(command_name(is_target ? op : CMD_SELECT, copy),
										   rte->relid, ri, cols, false));
		MemoryContextSwitchTo(old);
	}
	return events;
}

static void
audit_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (loose_frame != NULL && exec_depth == 0)
		flush_loose(false);
	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY) && queryDesc->plannedstmt != NULL && audit_active())
	{
		AuditFrame *f;

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

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
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
		flush_frame(f, "completed", rows, false);
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
	active = audit_active();

	if (active && !IsA(stmt, CopyStmt))
	{
		/* values opened outside the executor, e.g. FETCH from a held cursor */
		f = push_frame(NULL, false, CMD_UTILITY);
		f->utility_tag = GetCommandTagName(CreateCommandTag(stmt));
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
				f->events = list_make1(new_event("COPY", relid, ri, cols, cs->attlist == NIL));
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
		flush_frame(f, "completed", qc ? (int64) qc->nprocessed : f->utility_rows, false);
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

			e->internal = p->prosecdef && nsp != NULL && strcmp(nsp, PRIVACY_SCHEMA) == 0;
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
	CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
	loose_context = AllocSetContextCreate(TopMemoryContext, "privacy access log subjects",
										  ALLOCSET_DEFAULT_SIZES);
	EnableQueryId();
	types_value_opened_hook = audit_value_opened;
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
 * The writer: one dynamic background worker per database with events.
 * ------------------------------------------------------------------------
 */
void		privacy_access_log_writer_main(Datum arg);

static void
start_writer(int index)
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

static int	writer_index = -1;

static void
writer_detach(int code, Datum arg)
{
	AuditQueue *q = &audit_shared->queues[writer_index];

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (q->writer_pid == MyProcPid)
	{
		q->writer_pid = 0;
		q->writer_latch = NULL;
		q->writer_state = WRITER_NONE;
	}
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&q->space_cv);
}

/* The writer's view of its chain: what the table ends with. */
static Oid	chain_relid = InvalidOid;	/* the log the chain state is for */
static int64 chain_seq = 0;
static unsigned char chain_mac[LOGCHAIN_MAC_BYTES];

static void
load_chain_head(AuditQueue *q, Oid log_relid)
{
	int64		seq = 0;
	unsigned char mac[LOGCHAIN_MAC_BYTES];
	uint64		shm_seq;
	unsigned char shm_mac[LOGCHAIN_MAC_BYTES];

	memset(mac, 0, sizeof(mac));
	if (SPI_execute("SELECT seq, mac FROM ("
					"  (SELECT last_seq AS seq, " MAC_OF_LAST_ENTRY " AS mac"
					"     FROM " PRIVACY_SCHEMA ".access_log_batches ORDER BY first_seq DESC LIMIT 1)"
					"  UNION ALL (SELECT first_seq - 1, anchor FROM " PRIVACY_SCHEMA ".access_log_anchors ORDER BY first_seq DESC LIMIT 1)"
					") h ORDER BY seq DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the head of the access log");
	if (SPI_processed == 1)
	{
		bool		isnull;
		bytea	   *m;

		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		m = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (!isnull && VARSIZE_ANY_EXHDR(m) == LOGCHAIN_MAC_BYTES)
			memcpy(mac, VARDATA_ANY(m), LOGCHAIN_MAC_BYTES);
	}

	LWLockAcquire(audit_shared->lock, LW_SHARED);
	shm_seq = q->chain_relid == log_relid ? q->chain_seq : 0;
	memcpy(shm_mac, q->chain_mac, LOGCHAIN_MAC_BYTES);
	LWLockRelease(audit_shared->lock);

	if (shm_seq > (uint64) seq)
	{
		/* entries written since the server started are gone: keep the gap */
		ereport(WARNING,
				(errmsg("access log entries after seq " INT64_FORMAT " up to " UINT64_FORMAT " are missing from privacy.access_log",
						seq, shm_seq),
				 errdetail("They were written since the server started and have been deleted since."),
				 errhint("Run SELECT * FROM privacy.verify_access_log() to see where the chain breaks.")));
		seq = (int64) shm_seq;
		memcpy(mac, shm_mac, LOGCHAIN_MAC_BYTES);
	}
	chain_seq = seq;
	memcpy(chain_mac, mac, LOGCHAIN_MAC_BYTES);
	chain_relid = log_relid;
}

/* Inserting rows without the executor: heap and indexes, in one go. */
typedef struct LogTarget
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} LogTarget;

static void
target_open(LogTarget *t, EState *estate, const char *relname, int natts)
{
	Oid			relid = get_relname_relid(relname, catalog_namespace());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", PRIVACY_SCHEMA, relname),
				 errhint("Is the extension privacy installed in this database?")));
	t->rel = table_open(relid, RowExclusiveLock);
	if (RelationGetDescr(t->rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("relation \"%s.%s\" has %d columns, the access log writer expects %d",
						PRIVACY_SCHEMA, relname, RelationGetDescr(t->rel)->natts, natts)));
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	t->slot = table_slot_create(t->rel, NULL);
	(void) estate;
}

static void
target_insert(LogTarget *t, EState *estate)
{
	List	   *recheck;

	ExecStoreVirtualTuple(t->slot);
	table_tuple_insert(t->rel, t->slot, GetCurrentCommandId(true), 0, NULL);
#if PG_VERSION_NUM >= 160000
	recheck = ExecInsertIndexTuples(t->rri, t->slot, estate, false, false, NULL, NIL, false);
#else
	recheck = ExecInsertIndexTuples(t->rri, t->slot, estate, false, false, NULL, NIL);
#endif
	list_free(recheck);
	ExecClearTuple(t->slot);
}

static void
target_close(LogTarget *t)
{
	ExecDropSingleTupleTableSlot(t->slot);
	ExecCloseIndices(t->rri);
	table_close(t->rel, NoLock);
}

static Datum
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n + 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
bytea_datum(const unsigned char *b, size_t len)
{
	bytea	   *v = palloc(VARHDRSZ + len);

	SET_VARSIZE(v, VARHDRSZ + len);
	memcpy(VARDATA(v), b, len);
	return PointerGetDatum(v);
}

#define ACCESS_LOG_BATCHES_NATTS 7

/*
 * One row of privacy.access_log_batches in the making: the packed entries
 * (after room for the bytea header), the subjects they mention, the newest
 * statement time.
 */
typedef struct BatchBuilder
{
	StringInfoData packed;
	int64		first_seq;
	int64		last_seq;
	int			nentries;
	TimestampTz written_at;
	TimestampTz last_at;
	int64	   *keys;
	int			nkeys;
	int			maxkeys;
	const unsigned char *chain_key; /* LOGCHAIN_KEY_BYTES */
	unsigned char nonce[LOGCHAIN_NONCE_BYTES];
	LogchainBatch chain;		/* this row's MAC keys */
} BatchBuilder;

static void
batch_reset(BatchBuilder *bb)
{
	resetStringInfo(&bb->packed);
	appendStringInfoSpaces(&bb->packed, VARHDRSZ);
	bb->first_seq = bb->last_seq = 0;
	bb->nentries = 0;
	bb->last_at = DT_NOBEGIN;
	bb->nkeys = 0;
	logchain_batch_end(&bb->chain);
}

static void
batch_init(BatchBuilder *bb, TimestampTz written_at, const unsigned char *chain_key)
{
	memset(&bb->chain, 0, sizeof(bb->chain));
	bb->chain_key = chain_key;
	initStringInfo(&bb->packed);
	bb->written_at = written_at;
	bb->maxkeys = 256;
	bb->keys = palloc(sizeof(int64) * bb->maxkeys);
	batch_reset(bb);
}

/* The subject keys of a batch, sorted with the comparison inlined. */
#define ST_SORT sort_int64
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* Insert the batch built so far (if any) and start a new one. */
static void
batch_store(BatchBuilder *bb, LogTarget *t, EState *estate)
{
	TupleTableSlot *s = t->slot;
	Datum	   *kd;
	ArrayType  *keys;
	int			n = 0;
	int			i;

	if (bb->nentries == 0)
		return;
	sort_int64(bb->keys, bb->nkeys);
	kd = palloc(sizeof(Datum) * (bb->nkeys + 1));
	for (i = 0; i < bb->nkeys; i++)
		if (n == 0 || bb->keys[i] != DatumGetInt64(kd[n - 1]))
			kd[n++] = Int64GetDatum(bb->keys[i]);
	SET_VARSIZE(bb->packed.data, bb->packed.len);

	ExecClearTuple(s);
	memset(s->tts_isnull, 0, sizeof(bool) * ACCESS_LOG_BATCHES_NATTS);
	s->tts_values[0] = Int64GetDatum(bb->first_seq);
	s->tts_values[1] = Int64GetDatum(bb->last_seq);
	s->tts_values[2] = TimestampTzGetDatum(bb->written_at);
	s->tts_values[3] = TimestampTzGetDatum(bb->last_at == DT_NOBEGIN ? bb->written_at : bb->last_at);
	keys = construct_array(kd, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	s->tts_values[4] = PointerGetDatum(keys);
	s->tts_values[5] = PointerGetDatum(bb->packed.data);
	s->tts_values[6] = bytea_datum(bb->nonce, LOGCHAIN_NONCE_BYTES);
	target_insert(t, estate);
	pfree(keys);
	pfree(kd);
	batch_reset(bb);
}

/*
 * Start the entry with this seq (storing the batch first when it is full):
 * its seq and a length to fill in.  Returns where the length goes.
 */
static int
batch_begin_entry(BatchBuilder *bb, LogTarget *t, EState *estate, int64 seq)
{
	int			lenpos;

	if (bb->nentries >= BATCH_MAX_ENTRIES || bb->packed.len >= BATCH_MAX_BYTES)
		batch_store(bb, t, estate);
	if (bb->nentries == 0)
	{
		/* a new row: fresh MAC keys, never those of a batch that failed */
		bb->first_seq = seq;
		randombytes_buf(bb->nonce, LOGCHAIN_NONCE_BYTES);
		if (logchain_batch_begin(&bb->chain, bb->chain_key, bb->nonce, (uint64) seq) != 0)
			elog(ERROR, "could not derive the access log batch keys");
	}
	bb->last_seq = seq;
	bb->nentries++;
	put_i64(&bb->packed, seq);
	lenpos = bb->packed.len;
	put_u32(&bb->packed, 0);
	return lenpos;
}

/* The canonical bytes are in: fill in their length, chain the MAC. */
static void
batch_end_entry(BatchBuilder *bb, int lenpos, int64 seq, unsigned char *mac)
{
	uint32		len = (uint32) (bb->packed.len - lenpos - 4);
	unsigned char *p = (unsigned char *) bb->packed.data + lenpos;
	unsigned char next[LOGCHAIN_MAC_BYTES];

	p[0] = len >> 24;
	p[1] = len >> 16;
	p[2] = len >> 8;
	p[3] = len;
	if (logchain_mac(next, &bb->chain, (uint64) seq, mac, p + 4, len) != 0)
		elog(ERROR, "could not compute the MAC of access log entry " INT64_FORMAT, seq);
	memcpy(mac, next, LOGCHAIN_MAC_BYTES);
	appendBinaryStringInfo(&bb->packed, (const char *) mac, LOGCHAIN_MAC_BYTES);
}

static void
batch_saw_time(BatchBuilder *bb, TimestampTz at)
{
	if (at > bb->last_at)
		bb->last_at = at;
}

static void
batch_saw_subject(BatchBuilder *bb, const unsigned char *hash)
{
	if (bb->nkeys == bb->maxkeys)
	{
		bb->maxkeys *= 2;
		bb->keys = repalloc(bb->keys, sizeof(int64) * bb->maxkeys);
	}
	bb->keys[bb->nkeys++] = subject_key(hash);
}

static TimestampTz tables_missing_since = 0;

/* The queue's bytes from start to end, unwrapped into buf. */
static void
queue_copy(AuditQueue *q, uint64 start, uint64 end, unsigned char *buf)
{
	Size		qsize = audit_shared->qsize;
	Size		len = (Size) (end - start);
	Size		off = (Size) (start % qsize);
	Size		first = Min(len, qsize - off);

	/* the bytes between tail and head stay put until the tail moves */
	memcpy(buf, q->data + off, first);
	memcpy(buf + first, q->data, len - first);
}

/* Events of a database without the log's tables: to the server log. */
static void
writer_spill(AuditQueue *q, uint64 start, uint64 end, unsigned char *buf)
{
	ereport(WARNING,
			(errmsg("the access log tables of this database are missing: writing " UINT64_FORMAT " bytes of queued access events to the server log",
					end - start),
			 errhint("Is the extension privacy installed in this database?")));
	queue_copy(q, start, end, buf);
	emit_json_framed((const char *) buf, (Size) (end - start));
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	q->tail = end;
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&q->space_cv);
}

/*
 * Subjects follow the statement event of the same backend that came last;
 * the writer remembers it per backend, across batches.
 */
typedef struct LastEvent
{
	int32		pid;
	int64		seq;
	TimestampTz at;				/* when that statement started */
} LastEvent;

static HTAB *last_events = NULL;

/* A string of canonical bytes, as a pointer and length (NULL: len -1). */
static const char *
peek_str(Reader *r, int *len)
{
	uint32		l = get_u32(r);
	const char *p;

	if (l == 0xFFFFFFFFu)
	{
		*len = -1;
		return NULL;
	}
	if ((size_t) (r->end - r->p) < l)
		batch_corrupt();
	p = (const char *) r->p;
	r->p += l;
	*len = (int) l;
	return p;
}

/*
 * The leading fields of a statement event (canon_statement's order) that
 * the writer needs, read once, strings pointing into the bytes.
 */
typedef struct StatementHead
{
	TimestampTz at;
	const char *acting_role;	/* NULL, or acting_role_len bytes */
	int			acting_role_len;
	int32		pid;
	const char *purpose;		/* NULL, or purpose_len bytes */
	int			purpose_len;
} StatementHead;

static void
statement_head(const unsigned char *bytes, size_t len, StatementHead *h)
{
	Reader		r;

	r.p = bytes + 1;
	r.end = bytes + len;
	h->at = (TimestampTz) get_i64(&r);
	skip_str(&r);				/* session role */
	h->acting_role = peek_str(&r, &h->acting_role_len);
	skip_str(&r);				/* application */
	skip_str(&r);				/* client address */
	h->pid = (int32) get_u32(&r);
	h->purpose = peek_str(&r, &h->purpose_len);
}

static void
remember_event(int32 pid, int64 seq, TimestampTz at)
{
	LastEvent  *le;

	le = hash_search(small_map(&last_events, "privacy last events", sizeof(int32),
							   sizeof(LastEvent), 100000),
					 &pid, HASH_ENTER, NULL);
	le->seq = seq;
	le->at = at;
}

/*
 * The statement event subjects of backend pid (started at backend_start)
 * follow.  Pids are reused: an event from before the backend started is
 * another backend's, and no event (seq 0) is better than a wrong one.
 */
static int64
event_of(int32 pid, TimestampTz backend_start)
{
	LastEvent  *le = last_events ? hash_search(last_events, &pid, HASH_FIND, NULL) : NULL;
	Portal		portal;
	bool		isnull;
	int64		seq = 0;
	TimestampTz seq_at = 0;
	bool		older = false;

	if (le != NULL && le->at >= backend_start)
		return le->seq;

	/*
	 * Written by an earlier writer: the newest batches know.  Subjects come
	 * soon after their event, so the scan rarely goes back far, and never
	 * past the batches older than the backend.
	 */
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT entries, last_at FROM " PRIVACY_SCHEMA ".access_log_batches ORDER BY first_seq DESC",
									   0, NULL, NULL, NULL, true, 0);
	while (seq == 0 && !older)
	{
		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			bytea	   *b = isnull ? NULL : DatumGetByteaPP(d);
			Reader		r;
			LogchainEntry e;

			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			older = !isnull && DatumGetTimestampTz(d) < backend_start;
			if (b != NULL)
			{
				r.p = (unsigned char *) VARDATA_ANY(b);
				r.end = r.p + VARSIZE_ANY_EXHDR(b);
				while (unpack_next(&r, &e) > 0)
				{
					StatementHead h;

					if (e.len == 0 || e.bytes[0] != ENTRY_STATEMENT)
						continue;
					statement_head(e.bytes, e.len, &h);
					if (h.pid == pid && h.at >= backend_start)
					{
						seq = (int64) e.seq;
						seq_at = h.at;
					}
				}
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	if (seq != 0)
		remember_event(pid, seq, seq_at);
	return seq;
}

/*
 * Which roles used which purposes in a drain, kept in
 * privacy.access_log_purpose_use (the compliance gaps read it instead of
 * unpacking the whole log).  A drain sees few distinct pairs: an array.
 */
typedef struct PurposeUse
{
	char	   *role;
	char	   *purpose;
	TimestampTz first;
	TimestampTz last;
} PurposeUse;

typedef struct PurposeUses
{
	PurposeUse *items;
	int			n;
	int			max;
} PurposeUses;

#define PURPOSE_USES_MAX 256

static void purpose_use_store(PurposeUses *uses);
static void
purpose_use_saw(PurposeUses *uses, const StatementHead *h)
{
	const char *role = h->acting_role;
	const char *purpose = h->purpose;
	int			rlen = h->acting_role_len;
	int			plen = h->purpose_len;
	TimestampTz at = h->at;
	int			i;

	if (role == NULL || purpose == NULL || plen == 0)
		return;
	for (i = 0; i < uses->n; i++)
	{
		PurposeUse *u = &uses->items[i];

		if (strlen(u->role) == (size_t) rlen && memcmp(u->role, role, rlen) == 0 &&
			strlen(u->purpose) == (size_t) plen && memcmp(u->purpose, purpose, plen) == 0)
		{
			u->first = Min(u->first, at);
			u->last = Max(u->last, at);
			return;
		}
	}
	if (uses->n == PURPOSE_USES_MAX)
		purpose_use_store(uses);
	if (uses->items == NULL)
	{
		uses->max = PURPOSE_USES_MAX;
		uses->items = palloc(sizeof(PurposeUse) * uses->max);
	}
	uses->items[uses->n].role = pnstrdup(role, rlen);
	uses->items[uses->n].purpose = pnstrdup(purpose, plen);
	uses->items[uses->n].first = at;
	uses->items[uses->n].last = at;
	uses->n++;
}

/*
 * What this writer stored last, per pair: a pair seen again within a
 * minute of its stored last use is not written again (strict mode drains
 * a statement or two at a time), so last_used may lag by up to a minute.
 * Noted before the commit: a writer whose transaction fails exits (an
 * ERROR in it is FATAL), and its successor starts with none of this.
 */
typedef struct StoredUse
{
	char		key[2 * NAMEDATALEN + 2];	/* role NUL purpose */
	TimestampTz first;
	TimestampTz last;
} StoredUse;

static HTAB *stored_uses = NULL;

#define PURPOSE_USE_LAG_MS 60000

/* Into privacy.access_log_purpose_use, in the writer's transaction. */
static void
purpose_use_store(PurposeUses *uses)
{
	Oid			argtypes[4] = {NAMEOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	int			i;

	for (i = 0; i < uses->n; i++)
	{
		Datum		values[4];
		char		key[2 * NAMEDATALEN + 2];
		size_t		rl = strlen(uses->items[i].role);
		size_t		pl = strlen(uses->items[i].purpose);
		StoredUse  *su = NULL;
		bool		found = false;

		/* long purposes are simply written every time */
		if (rl < NAMEDATALEN && pl <= NAMEDATALEN)
		{
			memset(key, 0, sizeof(key));
			memcpy(key, uses->items[i].role, rl);
			memcpy(key + rl + 1, uses->items[i].purpose, pl);
			su = hash_search(small_map(&stored_uses, "privacy stored purpose uses", sizeof(key),
									   sizeof(StoredUse), 10000),
							 key, HASH_ENTER, &found);
			if (found && uses->items[i].first >= su->first &&
				!TimestampDifferenceExceeds(su->last, uses->items[i].last, PURPOSE_USE_LAG_MS))
				continue;
		}

		values[0] = DirectFunctionCall1(namein, CStringGetDatum(uses->items[i].role));
		values[1] = CStringGetTextDatum(uses->items[i].purpose);
		values[2] = TimestampTzGetDatum(uses->items[i].first);
		values[3] = TimestampTzGetDatum(uses->items[i].last);
		if (SPI_execute_with_args("INSERT INTO " PRIVACY_SCHEMA ".access_log_purpose_use AS u"
								  " (acting_role, purpose, first_used, last_used) VALUES ($1, $2, $3, $4)"
								  " ON CONFLICT (acting_role, purpose) DO UPDATE"
								  " SET first_used = LEAST(u.first_used, excluded.first_used),"
								  "     last_used = GREATEST(u.last_used, excluded.last_used)",
								  4, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the purposes used in the access log");
		if (su != NULL)
		{
			su->first = found ? Min(su->first, uses->items[i].first) : uses->items[i].first;
			su->last = found ? Max(su->last, uses->items[i].last) : uses->items[i].last;
		}
	}
	uses->n = 0;
}

/*
 * Commit what the queue holds between its tail and the head seen now.
 * Returns false when there was nothing to write.
 */
static bool
writer_drain(AuditQueue *q, unsigned char *buf)
{
	uint64		start;
	uint64		end;
	Size		len;
	Size		pos;
	unsigned char key[LOGCHAIN_KEY_BYTES];
	int64		seq;
	unsigned char mac[LOGCHAIN_MAC_BYTES];
	int64		last_event = 0;
	bool		tables_here;
	Oid			log_relid;
	MemoryContext batch;
	MemoryContext old;

	LWLockAcquire(audit_shared->lock, LW_SHARED);
	start = q->tail;
	end = q->head;
	LWLockRelease(audit_shared->lock);
	if (start == end)
		return false;

	/*
	 * The log's tables may not be visible yet (CREATE EXTENSION in a
	 * transaction still open, a single-transaction restore) or any more
	 * (DROP EXTENSION): wait, and after a while write the events to the
	 * server log rather than keep them forever.
	 */
	StartTransactionCommand();
	log_relid = OidIsValid(get_namespace_oid(PRIVACY_SCHEMA, true)) ?
		get_relname_relid("access_log_batches", get_namespace_oid(PRIVACY_SCHEMA, true)) : InvalidOid;
	tables_here = OidIsValid(log_relid) &&
		OidIsValid(get_relname_relid("access_log_anchors", get_namespace_oid(PRIVACY_SCHEMA, true)));
	CommitTransactionCommand();
	if (!tables_here)
	{
		if (tables_missing_since == 0)
			tables_missing_since = GetCurrentTimestamp();
		if (!TimestampDifferenceExceeds(tables_missing_since, GetCurrentTimestamp(), 10000))
			return false;
		writer_spill(q, start, end, buf);
		return true;
	}
	tables_missing_since = 0;

	len = (Size) (end - start);
	queue_copy(q, start, end, buf);

	batch = AllocSetContextCreate(TopMemoryContext, "privacy access log batch", ALLOCSET_DEFAULT_SIZES);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/*
	 * Never wait for a lock while holding another: a DROP EXTENSION (or a
	 * DBA's LOCK) takes them in its own order, and waiting could deadlock.
	 * If any is taken, try again at the next round.
	 */
	{
		Oid			nsp = catalog_namespace();
		const char *names[] = {"access_log_batches", "access_log_purpose_use", "access_log_anchors", "data_keys"};
		const LOCKMODE modes[] = {RowExclusiveLock, RowExclusiveLock, AccessShareLock, AccessShareLock};
		int			i;

		for (i = 0; i < lengthof(names); i++)
		{
			Oid			relid = get_relname_relid(names[i], nsp);

			if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, modes[i]))
			{
				AbortCurrentTransaction();
				MemoryContextDelete(batch);
				return false;
			}
		}
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (chain_relid != log_relid)
		load_chain_head(q, log_relid);
	keys_access_log_key(key);
	seq = chain_seq;
	memcpy(mac, chain_mac, LOGCHAIN_MAC_BYTES);

	old = MemoryContextSwitchTo(batch);
	{
		EState	   *estate = CreateExecutorState();
		LogTarget	log;
		BatchBuilder bb;
		PurposeUses uses = {0};

		target_open(&log, estate, "access_log_batches", ACCESS_LOG_BATCHES_NATTS);
		batch_init(&bb, GetCurrentTimestamp(), key);

		pos = 0;
		while (pos + 4 <= len)
		{
			uint32		rlen = ((uint32) buf[pos] << 24) | ((uint32) buf[pos + 1] << 16) |
				((uint32) buf[pos + 2] << 8) | buf[pos + 3];
			Reader		r;

			if (rlen < 5 || pos + rlen > len)
				elog(ERROR, "access log queue is corrupt at byte " UINT64_FORMAT, start + pos);
			r.p = buf + pos + 4;
			r.end = buf + pos + rlen;
			if (*r.p == ENTRY_STATEMENT)
			{
				/* the queue carries a statement's canonical bytes as they are */
				const unsigned char *bytes = r.p;
				size_t		blen = r.end - r.p;
				StatementHead h;
				int			lenpos;

				statement_head(bytes, blen, &h);
				seq++;
				lenpos = batch_begin_entry(&bb, &log, estate, seq);
				appendBinaryStringInfo(&bb.packed, (const char *) bytes, blen);
				batch_end_entry(&bb, lenpos, seq, mac);
				batch_saw_time(&bb, h.at);
				remember_event(h.pid, seq, h.at);
				purpose_use_saw(&uses, &h);
			}
			else if (*r.p == ENTRY_SUBJECTS)
			{
				uint32		n;
				uint32		i;
				int32		pid;

				r.p++;
				pid = (int32) get_u32(&r);
				last_event = event_of(pid, (TimestampTz) get_i64(&r));
				n = get_u32(&r);
				for (i = 0; i < n; i++)
				{
					const unsigned char *hash = r.p;
					char	   *category;
					int64		opened;
					int			lenpos;

					if (r.end - r.p < PRIVACY_SUBJECT_HASH_BYTES)
						elog(ERROR, "access log queue is corrupt at byte " UINT64_FORMAT, start + pos);
					r.p += PRIVACY_SUBJECT_HASH_BYTES;
					category = get_str(&r);
					opened = get_i64(&r);
					seq++;
					lenpos = batch_begin_entry(&bb, &log, estate, seq);
					canon_subject(&bb.packed, last_event, hash, category, opened);
					batch_end_entry(&bb, lenpos, seq, mac);
					batch_saw_subject(&bb, hash);
					pfree(category);
				}
			}
			else
				elog(ERROR, "access log queue holds an unknown record type %d", *r.p);
			pos += rlen;
		}
		batch_store(&bb, &log, estate);
		logchain_batch_end(&bb.chain);
		target_close(&log);
		purpose_use_store(&uses);
		FreeExecutorState(estate);
	}
	MemoryContextSwitchTo(old);
	sodium_memzero(key, sizeof(key));

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextDelete(batch);

	chain_seq = seq;
	memcpy(chain_mac, mac, LOGCHAIN_MAC_BYTES);
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	q->tail = end;
	q->chain_seq = (uint64) seq;
	memcpy(q->chain_mac, mac, LOGCHAIN_MAC_BYTES);
	q->chain_relid = log_relid;
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&q->space_cv);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

void
privacy_access_log_writer_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	Oid			dboid;
	AuditQueue *q;
	unsigned char *buf;
	TimestampTz idle_since;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (audit_shared == NULL || index < 0 || index >= audit_shared->nqueues)
		proc_exit(0);
	q = &audit_shared->queues[index];
	writer_index = index;

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (q->dboid != dboid || q->writer_state == WRITER_RUNNING)
	{
		LWLockRelease(audit_shared->lock);
		proc_exit(0);
	}
	q->writer_state = WRITER_RUNNING;
	q->writer_pid = MyProcPid;
	q->writer_latch = MyLatch;
	LWLockRelease(audit_shared->lock);
	before_shmem_exit(writer_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(WRITER_TYPE);
	/* strict mode promises durability: never commit asynchronously */
	SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
	/* a superuser: no search_path a database owner set may reach its queries */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* the writer's own statements are not access to personal data */
	internal_depth = 1;
	am_writer = true;

	buf = palloc(audit_shared->qsize);
	idle_since = GetCurrentTimestamp();
	for (;;)
	{
		bool		wrote;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ResetLatch(MyLatch);
		wrote = writer_drain(q, buf);
		if (wrote)
			idle_since = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), WRITER_IDLE_EXIT_MS))
		{
			bool		empty;

			/* leave only when nothing is queued, under the lock enqueuers take */
			LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
			empty = q->head == q->tail;
			if (empty)
			{
				q->writer_state = WRITER_NONE;
				q->writer_pid = 0;
				q->writer_latch = NULL;
			}
			LWLockRelease(audit_shared->lock);
			if (empty)
				proc_exit(0);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 privacy_access_log_flush_interval, WAIT_WRITER);
	}
}

/* ------------------------------------------------------------------------
 * SQL functions.
 * ------------------------------------------------------------------------
 */
static int
my_queue_index(void)
{
	int			i;

	if (audit_shared == NULL)
		return -1;
	for (i = 0; i < audit_shared->nqueues; i++)
		if (audit_shared->queues[i].dboid == MyDatabaseId)
			return i;
	return -1;
}

/*
 * privacy.flush_access_log(timeout_ms) → boolean: wait until every event
 * queued so far is committed (true), or the timeout passed (false).
 */
PG_FUNCTION_INFO_V1(privacy_flush_access_log);
Datum
privacy_flush_access_log(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT32(0);
	int			idx = my_queue_index();
	AuditQueue *q;
	uint64		target;
	TimestampTz start = GetCurrentTimestamp();
	bool		ok = true;

	if (idx < 0)
		PG_RETURN_BOOL(true);
	q = &audit_shared->queues[idx];
	LWLockAcquire(audit_shared->lock, LW_SHARED);
	target = q->head;
	LWLockRelease(audit_shared->lock);
	for (;;)
	{
		uint64		tail;
		Latch	   *latch;
		bool		no_writer;

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		tail = q->tail;
		latch = q->writer_latch;
		no_writer = q->writer_state == WRITER_NONE;
		LWLockRelease(audit_shared->lock);
		if (tail >= target || q->dboid != MyDatabaseId)
			break;
		if (no_writer)
		{
			LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
			if (q->writer_state == WRITER_NONE)
			{
				q->writer_state = WRITER_STARTING;
				q->writer_requested = GetCurrentTimestamp();
			}
			else
				no_writer = false;
			LWLockRelease(audit_shared->lock);
			if (no_writer)
				start_writer(idx);
		}
		if (latch != NULL)
			SetLatch(latch);
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms))
		{
			ok = false;
			break;
		}
		ConditionVariableTimedSleep(&q->space_cv, 50, WAIT_DURABLE);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(ok);
}

/* privacy.access_log_status(): the queue and writer of this database. */
PG_FUNCTION_INFO_V1(privacy_access_log_status);
Datum
privacy_access_log_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	int			idx = my_queue_index();

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(privacy_access_log);
	values[1] = BoolGetDatum(privacy_access_log_strict);
	values[2] = Int64GetDatum(audit_shared ? (int64) audit_shared->qsize : 0);
	if (idx >= 0)
	{
		AuditQueue *q = &audit_shared->queues[idx];

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		values[3] = Int64GetDatum((int64) (q->head - q->tail));
		values[4] = Int32GetDatum(q->writer_pid);
		nulls[4] = q->writer_pid == 0;
		values[5] = Int64GetDatum((int64) q->chain_seq);
		nulls[5] = q->chain_seq == 0;
		LWLockRelease(audit_shared->lock);
	}
	else
	{
		values[3] = Int64GetDatum(0);
		nulls[4] = nulls[5] = true;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * Verify one batch row: its entries chain on from prev / expected.  Returns
 * NULL when they do (prev, expected and checked advanced), else the status,
 * with *bad_seq and *detail set.
 *
 * The row's own columns (seq range, subject keys, newest time) must match
 * its entries too, since lookups and retention rely on them; the first row
 * where they do not is noted in *meta_seq / *meta_detail and reported only
 * when the chain itself is whole (a cut entry also shortens the range).
 */
static const char *
verify_batch(const unsigned char *key, bytea *nonce, unsigned char *prev, int64 *expected, int64 *checked,
			 int64 first_seq, int64 last_seq, TimestampTz last_at, ArrayType *subjects,
			 bytea *entries, int64 *bad_seq, char **detail, int64 *meta_seq, char **meta_detail)
{
	Reader		r;
	LogchainEntry *es;
	int			n = 0;
	int			max = 64;
	int			rc;
	size_t		bad;
	LogchainVerdict v;
	int64	   *keys;
	int			nkeys = 0;
	TimestampTz newest = DT_NOBEGIN;
	bool		meta_ok = true;
	int			i;

	r.p = (unsigned char *) VARDATA_ANY(entries);
	r.end = r.p + VARSIZE_ANY_EXHDR(entries);
	es = palloc(sizeof(LogchainEntry) * max);
	while ((rc = unpack_next(&r, &es[n])) > 0)
		if (++n == max)
		{
			max *= 2;
			es = repalloc(es, sizeof(LogchainEntry) * max);
		}

	/* a nonce of the wrong size (or a first_seq of 0) derives no keys */
	v = LOGCHAIN_OK;
	bad = 0;
	if (n > 0)
	{
		LogchainBatch chain;

		if (VARSIZE_ANY_EXHDR(nonce) != LOGCHAIN_NONCE_BYTES ||
			first_seq < 1 ||
			logchain_batch_begin(&chain, key, (const unsigned char *) VARDATA_ANY(nonce),
								 (uint64) first_seq) != 0)
			memset(&chain, 0, sizeof(chain));
		v = logchain_verify(&chain, prev, (uint64) *expected, es, n, &bad);
		logchain_batch_end(&chain);
	}
	if (v != LOGCHAIN_OK)
	{
		int64		seq = (int64) es[bad].seq;

		*checked += bad;
		if (v == LOGCHAIN_MISSING)
		{
			*bad_seq = *expected + bad;
			*detail = psprintf("entries " INT64_FORMAT " to " INT64_FORMAT " are missing", *bad_seq, seq - 1);
		}
		else if (v == LOGCHAIN_ALTERED)
		{
			*bad_seq = seq;
			*detail = psprintf("entry " INT64_FORMAT " does not match its MAC: it, or the entry before it, was changed", seq);
		}
		else
		{
			*bad_seq = seq;
			*detail = psprintf("entry " INT64_FORMAT " is out of order", seq);
		}
		return logchain_verdict_name(v);
	}
	if (rc < 0)
	{
		/* the bytes after the last good entry cannot be read as entries */
		*checked += n;
		*bad_seq = *expected + n;
		*detail = psprintf("the entries of the batch from seq " INT64_FORMAT " are malformed after entry " INT64_FORMAT,
						   first_seq, *bad_seq - 1);
		return "altered";
	}

	/* the row's columns */
	keys = palloc(sizeof(int64) * (n + 1));
	for (i = 0; i < n; i++)
	{
		Reader		er;

		er.p = es[i].bytes + 1;
		er.end = es[i].bytes + es[i].len;
		if (es[i].len >= 1 + 8 && es[i].bytes[0] == ENTRY_STATEMENT)
		{
			TimestampTz at = (TimestampTz) get_i64(&er);

			if (at > newest)
				newest = at;
		}
		else if (es[i].len >= 1 + 8 + PRIVACY_SUBJECT_HASH_BYTES && es[i].bytes[0] == ENTRY_SUBJECT)
			keys[nkeys++] = subject_key(es[i].bytes + 1 + 8);
	}
	if (n == 0)
		meta_ok = true;			/* all its entries were cut: the chain says so */
	else if (first_seq != (int64) es[0].seq || last_seq != (int64) es[n - 1].seq ||
			 (newest != DT_NOBEGIN && newest != last_at))
		meta_ok = false;
	else
	{
		Datum	   *kd;
		bool	   *kn;
		int			nk;
		int			u = 0;

		sort_int64(keys, nkeys);
		for (i = 0; i < nkeys; i++)
			if (u == 0 || keys[i] != keys[u - 1])
				keys[u++] = keys[i];
		deconstruct_array(subjects, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &kd, &kn, &nk);
		if (nk != u)
			meta_ok = false;
		for (i = 0; meta_ok && i < nk; i++)
			if (kn[i] || DatumGetInt64(kd[i]) != keys[i])
				meta_ok = false;
	}
	if (!meta_ok && *meta_detail == NULL)
	{
		*meta_seq = (int64) es[0].seq;
		*meta_detail = psprintf("the batch row from seq " INT64_FORMAT " to " INT64_FORMAT " does not describe the entries it holds",
								first_seq, last_seq);
	}
	if (n > 0)
		memcpy(prev, es[n - 1].mac, LOGCHAIN_MAC_BYTES);
	*expected += n;
	*checked += n;
	return NULL;
}

/*
 * privacy.verify_access_log() → (status, seq, checked, detail): recompute
 * the chain from the retention anchor (or the start) to the end, and to the
 * head the writers of this server have committed.
 */
PG_FUNCTION_INFO_V1(privacy_verify_access_log);
Datum
privacy_verify_access_log(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	CatalogUserState st;
	unsigned char *key = chain_key_scratch;
	unsigned char prev[LOGCHAIN_MAC_BYTES];
	int64		expected = 1;
	int64		checked = 0;
	const char *status = "ok";
	int64		bad_seq = 0;
	char	   *detail = NULL;
	Portal		portal;
	int			idx;
	int64		meta_seq = 0;
	char	   *meta_detail = NULL;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	keys_require_master_key();
	keys_access_log_key(key);
	memset(prev, 0, sizeof(prev));

	catalog_become_owner(&st);
	/* the latest retention anchor, itself authenticated */
	if (SPI_execute("SELECT first_seq, anchor, mac FROM " PRIVACY_SCHEMA ".access_log_anchors"
					" ORDER BY first_seq DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the access log anchors");
	if (SPI_processed == 1)
	{
		bool		isnull;
		int64		first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		bytea	   *a = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		bytea	   *m = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		unsigned char want[LOGCHAIN_ANCHOR_MAC_BYTES];

		if (VARSIZE_ANY_EXHDR(a) == LOGCHAIN_MAC_BYTES)
			memcpy(prev, VARDATA_ANY(a), LOGCHAIN_MAC_BYTES);
		if (first < 1 || logchain_anchor_mac(want, key, (uint64) first, prev) != 0 ||
			VARSIZE_ANY_EXHDR(a) != LOGCHAIN_MAC_BYTES || VARSIZE_ANY_EXHDR(m) != LOGCHAIN_ANCHOR_MAC_BYTES ||
			sodium_memcmp(want, VARDATA_ANY(m), LOGCHAIN_ANCHOR_MAC_BYTES) != 0)
		{
			status = "altered";
			bad_seq = first;
			detail = "the retention anchor the log starts from fails authentication";
		}
		expected = first;
	}

	if (strcmp(status, "ok") == 0)
	{
		Datum		arg = Int64GetDatum(expected);
		MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "verify batch", ALLOCSET_DEFAULT_SIZES);
		bool		done = false;
		bool		meta_copied = false;

		portal = SPI_cursor_open_with_args(NULL,
										   "SELECT first_seq, last_seq, last_at, subjects, entries, nonce"
										   "  FROM " PRIVACY_SCHEMA ".access_log_batches WHERE last_seq >= $1 ORDER BY first_seq",
										   1, (Oid[]) {INT8OID}, &arg, NULL, true, 0);
		while (!done)
		{
			uint64		i;

			SPI_cursor_fetch(portal, true, 4);
			if (SPI_processed == 0)
				break;
			for (i = 0; i < SPI_processed && !done; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	td = SPI_tuptable->tupdesc;
				bool		isnull;
				MemoryContext old = MemoryContextSwitchTo(tmp);
				const char *v;
				Datum		subjects = SPI_getbinval(tup, td, 4, &isnull);
				Datum		entries;
				Datum		nonce;

				if (isnull)
					subjects = PointerGetDatum(construct_empty_array(INT8OID));
				entries = SPI_getbinval(tup, td, 5, &isnull);
				if (isnull)
					entries = PointerGetDatum(bytea_datum(NULL, 0));
				nonce = SPI_getbinval(tup, td, 6, &isnull);
				if (isnull)
					nonce = PointerGetDatum(bytea_datum(NULL, 0));
				v = verify_batch(key, DatumGetByteaPP(nonce), prev, &expected, &checked,
								 DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull)),
								 DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull)),
								 DatumGetTimestampTz(SPI_getbinval(tup, td, 3, &isnull)),
								 DatumGetArrayTypeP(subjects),
								 DatumGetByteaPP(entries),
								 &bad_seq, &detail, &meta_seq, &meta_detail);
				MemoryContextSwitchTo(old);
				if (v != NULL)
				{
					status = v;
					detail = pstrdup(detail);
					done = true;
				}
				if (meta_detail != NULL && !meta_copied)
				{
					meta_detail = pstrdup(meta_detail);
					meta_copied = true;
				}
				MemoryContextReset(tmp);
			}
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);
		MemoryContextDelete(tmp);
	}
	catalog_restore_user(&st);

	/* entries cut off the end: compare with what this server's writers wrote */
	idx = my_queue_index();
	if (strcmp(status, "ok") == 0 && idx >= 0)
	{
		AuditQueue *q = &audit_shared->queues[idx];
		uint64		head;

		Oid			log_relid = get_relname_relid("access_log_batches", catalog_namespace());

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		head = q->chain_relid == log_relid ? q->chain_seq : 0;
		LWLockRelease(audit_shared->lock);
		if (head >= (uint64) expected)
		{
			status = "missing";
			bad_seq = expected;
			detail = psprintf("entries " INT64_FORMAT " to " UINT64_FORMAT " were written since the server started and are gone",
							  expected, head);
		}
	}
	sodium_memzero(key, LOGCHAIN_KEY_BYTES);

	/* the chain is whole, but a row misdescribes its entries */
	if (strcmp(status, "ok") == 0 && meta_detail != NULL)
	{
		status = "altered";
		bad_seq = meta_seq;
		detail = meta_detail;
	}

	/* every run is recorded, under the role that asked */
	{
		char	   *who = role_name(GetOuterUserId());
		Datum		args[5];
		char		argnulls[5] = {' ', ' ', ' ', ' ', ' '};

		args[0] = CStringGetTextDatum(who);
		args[1] = CStringGetTextDatum(status);
		args[2] = Int64GetDatum(bad_seq);
		argnulls[2] = strcmp(status, "ok") == 0 ? 'n' : ' ';
		args[3] = Int64GetDatum(checked);
		args[4] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
		argnulls[4] = detail ? ' ' : 'n';
		catalog_become_owner(&st);
		if (SPI_execute_with_args("INSERT INTO " PRIVACY_SCHEMA ".access_log_verifications"
								  " (verified_by, status, seq, checked, detail) VALUES ($1::pg_catalog.name, $2, $3, $4, $5)",
								  5, (Oid[]) {TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID},
								  args, argnulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the verification");
		catalog_restore_user(&st);
	}

	values[0] = CStringGetTextDatum(status);
	values[1] = Int64GetDatum(bad_seq);
	nulls[1] = strcmp(status, "ok") == 0;
	values[2] = Int64GetDatum(checked);
	values[3] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	nulls[3] = detail == NULL;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * Retention: delete entries older than privacy.access_log_retention, and
 * record where the log now starts (an authenticated anchor) so that it
 * still verifies.  Returns the number of entries removed.
 */
int64
audit_trim_log(void)
{
	CatalogUserState st;
	int64		boundary;
	int64		removed = 0;
	bool		isnull;
	unsigned char *key = chain_key_scratch;
	unsigned char anchor[LOGCHAIN_MAC_BYTES];
	unsigned char amac[LOGCHAIN_ANCHOR_MAC_BYTES];
	char		sql[1024];

	if (privacy_access_log_retention <= 0)
		return 0;
	keys_require_master_key();
	catalog_become_owner(&st);
	/*
	 * Whole batches go: those before the first whose newest statement is
	 * within the retention (all of them when none is).
	 */
	snprintf(sql, sizeof(sql),
			 "SELECT last_seq, " MAC_OF_LAST_ENTRY " FROM " PRIVACY_SCHEMA ".access_log_batches"
			 " WHERE first_seq < coalesce((SELECT first_seq FROM " PRIVACY_SCHEMA ".access_log_batches"
			 "                              WHERE last_at >= pg_catalog.now() - interval '%d minutes'"
			 "                              ORDER BY first_seq LIMIT 1), pg_catalog.int8 '9223372036854775807')"
			 " ORDER BY first_seq DESC LIMIT 1",
			 privacy_access_log_retention);
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not find the access log retention boundary");
	if (SPI_processed == 1)
	{
		bytea	   *m;

		boundary = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		m = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (!isnull && VARSIZE_ANY_EXHDR(m) == LOGCHAIN_MAC_BYTES)
		{
			Datum		arg = Int64GetDatum(boundary);
			Datum		args[4];

			memcpy(anchor, VARDATA_ANY(m), LOGCHAIN_MAC_BYTES);
			keys_access_log_key(key);
			logchain_anchor_mac(amac, key, (uint64) boundary + 1, anchor);
			sodium_memzero(key, LOGCHAIN_KEY_BYTES);
			if (SPI_execute_with_args("WITH d AS (DELETE FROM " PRIVACY_SCHEMA ".access_log_batches WHERE last_seq <= $1"
									  "            RETURNING last_seq - first_seq + 1 AS n)"
									  " SELECT coalesce(sum(n), 0)::bigint FROM d",
									  1, (Oid[]) {INT8OID}, &arg, NULL, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not trim the access log");
			removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (removed > 0)
			{
				args[0] = Int64GetDatum(boundary + 1);
				args[1] = bytea_datum(anchor, LOGCHAIN_MAC_BYTES);
				args[2] = Int64GetDatum(removed);
				args[3] = bytea_datum(amac, LOGCHAIN_ANCHOR_MAC_BYTES);
				if (SPI_execute_with_args("INSERT INTO " PRIVACY_SCHEMA ".access_log_anchors"
										  " (first_seq, anchor, removed, mac) VALUES ($1, $2, $3, $4)",
										  4, (Oid[]) {INT8OID, BYTEAOID, INT8OID, BYTEAOID},
										  args, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not record the access log anchor");
			}
		}
	}
	catalog_restore_user(&st);
	return removed;
}

PG_FUNCTION_INFO_V1(privacy_trim_access_log);
Datum
privacy_trim_access_log(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(audit_trim_log());
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
	e = new_event("SELECT", relid, catalog_protected_relation(relid), NULL, true);
	e->acting_role = role_name(GetOuterUserId());
	f.events = list_make1(e);
	for (i = 0; i < ncategories; i++)
	{
		SubjectCount *sc;
		bool		found;

		if (opened[i] <= 0)
			continue;
		sc = frame_subject(&f, 0, (uint16) (i + 1), tmp, &found);
		memcpy(sc->hash, subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
		strlcpy(sc->category_name, categories[i], NAMEDATALEN);
		sc->count = opened[i];
	}
	flush_frame(&f, "completed", rows, false);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
}
