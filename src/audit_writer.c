/*
 * audit_writer.c — the access log writer: one background worker per
 * database with events.
 *
 * Started on demand by whoever queues (audit_queue.c), it commits the queue
 * to the log every privacy.access_log_flush_interval, so a crash loses at
 * most that much.  Events are written outside the reader's transaction, so
 * they survive its rollback and work in read-only transactions.  It stores
 * the entries of a flush packed in a few rows of privacy.access_log_batches
 * (a heap row per entry made it the bottleneck), gives each entry the next
 * sequence number and chains a keyed MAC over its canonical bytes
 * (logchain.c), and in the same transaction notes which roles used which
 * purposes and where the log now ends (its sealed head, audit_head.c).  It
 * exits when its queue has been empty for a while.
 */
#include "audit.h"

#include <sodium.h>

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#define WRITER_IDLE_EXIT_MS 2000	/* well inside DROP DATABASE's 5 s wait */
#define WRITER_KEY_LOCK_TIMEOUT "200ms"	/* below deadlock_timeout's 1 s */
#define BATCH_MAX_BYTES (1024 * 1024)
#define BATCH_MAX_ENTRIES 8192

void		privacy_access_log_writer_main(Datum arg);

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

/*
 * The writer's view of its chain: where it goes on from (audit_head.c), for
 * this installation of the extension (a new one starts a new log).
 */
static Oid	chain_extension = InvalidOid;
static AuditChainEnd chain;

/* Inserting rows without the executor: heap and indexes, in one go. */
typedef struct LogTarget
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} LogTarget;

/*
 * Open one of the log's tables for inserts; natts columns, or min_natts
 * in a schema from before 0.3 (the extension not yet updated).
 */
static void
target_open(LogTarget *t, EState *estate, const char *relname, int min_natts, int natts)
{
	Oid			relid = get_relname_relid(relname, catalog_namespace());
	int			have;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", PRIVACY_SCHEMA, relname),
				 errhint("Is the extension privacy installed in this database?")));
	t->rel = table_open(relid, RowExclusiveLock);
	have = RelationGetDescr(t->rel)->natts;
	if (have != natts && have != min_natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("relation \"%s.%s\" has %d columns, the access log writer expects %d",
						PRIVACY_SCHEMA, relname, have, natts)));
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

#define ACCESS_LOG_BATCHES_NATTS 8	/* 7 before 0.3: no offsets */
#define ACCESS_LOG_TRAIL_NATTS 2

/*
 * One row of privacy.access_log_batches in the making: the packed entries
 * (after room for the bytea header), the subjects they mention, the newest
 * statement time.
 */
typedef struct BatchBuilder
{
	StringInfoData packed;
	StringInfoData offsets;		/* where each entry starts in packed */
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
	resetStringInfo(&bb->offsets);
	appendStringInfoSpaces(&bb->offsets, VARHDRSZ);
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
	initStringInfo(&bb->offsets);
	bb->written_at = written_at;
	bb->maxkeys = 256;
	bb->keys = palloc(sizeof(int64) * bb->maxkeys);
	batch_reset(bb);
}

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
	audit_sort_int64(bb->keys, bb->nkeys);
	kd = palloc(sizeof(Datum) * (bb->nkeys + 1));
	for (i = 0; i < bb->nkeys; i++)
		if (n == 0 || bb->keys[i] != DatumGetInt64(kd[n - 1]))
			kd[n++] = Int64GetDatum(bb->keys[i]);
	SET_VARSIZE(bb->packed.data, bb->packed.len);
	SET_VARSIZE(bb->offsets.data, bb->offsets.len);

	ExecClearTuple(s);
	memset(s->tts_isnull, 0, sizeof(bool) * RelationGetDescr(t->rel)->natts);
	s->tts_values[0] = Int64GetDatum(bb->first_seq);
	s->tts_values[1] = Int64GetDatum(bb->last_seq);
	s->tts_values[2] = TimestampTzGetDatum(bb->written_at);
	s->tts_values[3] = TimestampTzGetDatum(bb->last_at == DT_NOBEGIN ? bb->written_at : bb->last_at);
	keys = construct_array(kd, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	s->tts_values[4] = PointerGetDatum(keys);
	s->tts_values[5] = PointerGetDatum(bb->packed.data);
	s->tts_values[6] = audit_bytea_datum(bb->nonce, LOGCHAIN_NONCE_BYTES);
	if (RelationGetDescr(t->rel)->natts > 7)
		s->tts_values[7] = PointerGetDatum(bb->offsets.data);
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
	audit_put_offset(&bb->offsets, (uint32) (bb->packed.len - VARHDRSZ));
	audit_put_i64(&bb->packed, seq);
	lenpos = bb->packed.len;
	audit_put_u32(&bb->packed, 0);
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
	bb->keys[bb->nkeys++] = audit_subject_key(hash);
}

static TimestampTz tables_missing_since = 0;

/* Events of a database without the log's tables: to the server log. */
static void
writer_spill(AuditQueue *q, uint64 start, uint64 end, unsigned char *buf)
{
	ereport(WARNING,
			(errmsg("the access log tables of this database are missing: writing " UINT64_FORMAT " bytes of queued access events to the server log",
					end - start),
			 errhint("Is the extension privacy installed in this database?")));
	audit_queue_copy(q, start, end, buf);
	audit_emit_json_framed((const char *) buf, (Size) (end - start));
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

static void
remember_event(int32 pid, int64 seq, TimestampTz at)
{
	LastEvent  *le;

	le = hash_search(audit_small_map(&last_events, "privacy last events", sizeof(int32),
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
				while (audit_unpack_next(&r, &e) > 0)
				{
					StatementHead h;

					if (e.len == 0 || e.bytes[0] != ENTRY_STATEMENT)
						continue;
					audit_statement_head(e.bytes, e.len, &h);
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
			su = hash_search(audit_small_map(&stored_uses, "privacy stored purpose uses", sizeof(key),
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
 * Lock a table and each of its indexes in the given mode without waiting
 * (false if any is taken).  The indexes too: the executor and the SPI
 * queries open them with a waiting lock, and a DROP EXTENSION that has
 * locked an index before its table would wait for the table this writer
 * holds while the writer waits for the index (a deadlock that the detector
 * may resolve by cancelling the DROP).
 */
static bool
lock_with_indexes_now(Oid relid, LOCKMODE mode)
{
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	bool		ok = true;

	if (!ConditionalLockRelationOid(relid, mode))
		return false;
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return false;
	indexes = RelationGetIndexList(rel);
	relation_close(rel, NoLock);
	foreach(lc, indexes)
	{
		if (!ConditionalLockRelationOid(lfirst_oid(lc), mode))
		{
			ok = false;
			break;
		}
	}
	list_free(indexes);
	return ok;
}

/*
 * The log's key, in a transaction of its own before the batch's.  The first
 * batch after CREATE EXTENSION creates it: an insert into data_keys, its id
 * drawn from data_key_id_seq, its foreign keys checked, each a lock taken
 * waiting.  A DROP EXTENSION locks the sequence before the table; a writer
 * holding the table and waiting for the sequence deadlocked with it, and the
 * deadlock detector cancelled the DROP.  Here the waits are bounded by a
 * lock timeout shorter than any deadlock_timeout a DBA would set: the writer
 * gives way, and tries again at its next round.  False when it gave way.
 */
static bool
writer_fetch_key(unsigned char *key)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) set_config_option("lock_timeout", WRITER_KEY_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		keys_access_log_key(key);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		AbortCurrentTransaction();
		sodium_memzero(key, LOGCHAIN_KEY_BYTES);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* A row of privacy.access_log_trail, collected during a drain */
typedef struct TrailRow
{
	int64		key;
	int64		seq;
} TrailRow;

static int
compare_trail_rows(const void *a, const void *b)
{
	const TrailRow *x = a;
	const TrailRow *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * The trail rows of a drain, sorted, into privacy.access_log_trail: the
 * heap rows TRAIL_CHUNK at a time (a WAL record and a page lock a page, as
 * COPY does, instead of one a row: a third of the writer's time went to
 * the trail's heap rows one by one, issue #14), then each chunk's index
 * entries, in key order.
 */
#define TRAIL_CHUNK 1000

static void
trail_store(LogTarget *t, EState *estate, const TrailRow *rows, int n)
{
	TupleTableSlot *slots[TRAIL_CHUNK];
	int			nslots = 0;
	CommandId	cid = GetCurrentCommandId(true);
	int			done;

	for (done = 0; done < n;)
	{
		int			k = Min(n - done, TRAIL_CHUNK);
		int			i;

		for (i = 0; i < k; i++)
		{
			TupleTableSlot *s;

			if (i == nslots)
				slots[nslots++] = table_slot_create(t->rel, NULL);
			s = slots[i];
			ExecClearTuple(s);
			s->tts_isnull[0] = s->tts_isnull[1] = false;
			s->tts_values[0] = Int64GetDatum(rows[done + i].key);
			s->tts_values[1] = Int64GetDatum(rows[done + i].seq);
			ExecStoreVirtualTuple(s);
		}
		table_multi_insert(t->rel, slots, k, cid, 0, NULL);
		for (i = 0; i < k; i++)
		{
			List	   *recheck;

#if PG_VERSION_NUM >= 160000
			recheck = ExecInsertIndexTuples(t->rri, slots[i], estate, false, false, NULL, NIL, false);
#else
			recheck = ExecInsertIndexTuples(t->rri, slots[i], estate, false, false, NULL, NIL);
#endif
			list_free(recheck);
		}
		done += k;
	}
	while (nslots > 0)
		ExecDropSingleTupleTableSlot(slots[--nslots]);
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
	Oid			head_relid;
	Oid			trail_relid;
	Oid			extension;
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
	extension = get_extension_oid("privacy", true);
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

	if (!writer_fetch_key(key))
		return false;

	len = (Size) (end - start);
	audit_queue_copy(q, start, end, buf);

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

			if (!OidIsValid(relid) || !lock_with_indexes_now(relid, modes[i]))
			{
				AbortCurrentTransaction();
				MemoryContextDelete(batch);
				return false;
			}
		}
		/* the head and the trail, which a schema from before 0.3 does not have */
		head_relid = get_relname_relid("access_log_head", nsp);
		trail_relid = get_relname_relid("access_log_trail", nsp);
		if ((OidIsValid(head_relid) && !lock_with_indexes_now(head_relid, RowExclusiveLock)) ||
			(OidIsValid(trail_relid) && !lock_with_indexes_now(trail_relid, RowExclusiveLock)))
		{
			AbortCurrentTransaction();
			MemoryContextDelete(batch);
			return false;
		}
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	/* (a copy from the cache writer_fetch_key filled, unless a key changed since) */
	keys_access_log_key(key);
	if (chain_extension != extension)
	{
		audit_resume_chain(q, extension, key, &chain);
		chain_extension = extension;
	}
	seq = chain.seq;
	memcpy(mac, chain.mac, LOGCHAIN_MAC_BYTES);

	old = MemoryContextSwitchTo(batch);
	{
		EState	   *estate = CreateExecutorState();
		LogTarget	log;
		LogTarget	trail;
		BatchBuilder bb;
		PurposeUses uses = {0};
		TrailRow   *trail_rows = NULL;
		int			ntrail = 0;
		int			maxtrail = 0;

		target_open(&log, estate, "access_log_batches", ACCESS_LOG_BATCHES_NATTS - 1, ACCESS_LOG_BATCHES_NATTS);
		if (OidIsValid(trail_relid))
			target_open(&trail, estate, "access_log_trail", ACCESS_LOG_TRAIL_NATTS, ACCESS_LOG_TRAIL_NATTS);
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

				audit_statement_head(bytes, blen, &h);
				seq++;
				lenpos = batch_begin_entry(&bb, &log, estate, seq);
				appendBinaryStringInfo(&bb.packed, (const char *) bytes, blen);
				batch_end_entry(&bb, lenpos, seq, mac);
				batch_saw_time(&bb, h.at);
				remember_event(h.pid, seq, h.at);
				/* a refused statement did not use its purpose */
				if (h.purpose_len > 0 && !audit_statement_is_denial(bytes, blen))
					purpose_use_saw(&uses, &h);
			}
			else if (*r.p == ENTRY_SUBJECTS)
			{
				uint32		n;
				uint32		i;
				int32		pid;

				r.p++;
				pid = (int32) audit_get_u32(&r);
				last_event = event_of(pid, (TimestampTz) audit_get_i64(&r));
				n = audit_get_u32(&r);
				for (i = 0; i < n; i++)
				{
					const unsigned char *hash = r.p;
					char	   *category;
					int64		opened;
					int			lenpos;

					if (r.end - r.p < PRIVACY_SUBJECT_HASH_BYTES)
						elog(ERROR, "access log queue is corrupt at byte " UINT64_FORMAT, start + pos);
					r.p += PRIVACY_SUBJECT_HASH_BYTES;
					category = audit_get_str(&r);
					opened = audit_get_i64(&r);
					seq++;
					lenpos = batch_begin_entry(&bb, &log, estate, seq);
					audit_canon_subject(&bb.packed, last_event, hash, category, opened);
					batch_end_entry(&bb, lenpos, seq, mac);
					batch_saw_subject(&bb, hash);
					if (OidIsValid(trail_relid))
					{
						/* the subject's trail: its key, this entry */
						if (ntrail == maxtrail)
						{
							maxtrail = Max(1024, maxtrail * 2);
							trail_rows = trail_rows == NULL ? palloc(maxtrail * sizeof(TrailRow)) :
								repalloc(trail_rows, maxtrail * sizeof(TrailRow));
						}
						trail_rows[ntrail].key = audit_subject_key(hash);
						trail_rows[ntrail].seq = seq;
						ntrail++;
					}
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
		if (OidIsValid(trail_relid))
		{
			/*
			 * In index order: a drain of thousands of subjects' entries then
			 * walks the trail's index from left to right, on pages still in
			 * cache, instead of descending to a random leaf for each.
			 */
			if (ntrail > 1)
				qsort(trail_rows, ntrail, sizeof(TrailRow), compare_trail_rows);
			trail_store(&trail, estate, trail_rows, ntrail);
			target_close(&trail);
		}
		purpose_use_store(&uses);
		FreeExecutorState(estate);
	}
	MemoryContextSwitchTo(old);

	/* where the log now ends, in the same transaction as its entries */
	chain.known = true;
	chain.seq = seq;
	memcpy(chain.mac, mac, LOGCHAIN_MAC_BYTES);
	audit_store_head(key, &chain);
	sodium_memzero(key, sizeof(key));

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextDelete(batch);

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	q->tail = end;
	q->chain_seq = (uint64) seq;
	memcpy(q->chain_mac, mac, LOGCHAIN_MAC_BYTES);
	q->chain_broken = (uint64) chain.broken_at;
	q->chain_extension = extension;
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
	audit_become_writer();

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
