/*
 * audit_sql.c — the access log's SQL functions: flush, status, verify, trim,
 * and the reader of one subject's trail.
 *
 * privacy.verify_access_log() recomputes the MAC chain (logchain.c) over
 * the batch rows from the latest retention anchor, checks each row's own
 * columns against its entries, and compares the end with the log's head
 * and with what this server's writers committed (audit_head.c).
 * Retention (audit_trim_log) deletes whole batch rows and leaves an
 * authenticated anchor, so that the log still verifies.  flush_access_log
 * and access_log_status look at this database's queue.
 */
#include "audit.h"

#include <sodium.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

/*
 * privacy.flush_access_log(timeout_ms) → boolean: wait until every event
 * queued so far is committed (true), or the timeout passed (false).
 */
PG_FUNCTION_INFO_V1(privacy_flush_access_log);
Datum
privacy_flush_access_log(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT32(0);
	int			idx = audit_my_queue();
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
				audit_start_writer(idx);
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
	int			idx = audit_my_queue();

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
 * The access trail (privacy.access_log_trail) must list exactly the
 * subject entries of the chained batches: the subject report finds a
 * subject's entries through it alone, so a row deleted (or moved to
 * another subject's key) hides an access from the report.  It is read in
 * (seq, subject_key) order beside the batches and merged with their
 * subject entries; the first difference is kept.
 */
typedef struct TrailCheck
{
	Portal		portal;			/* NULL: no trail to check */
	SPITupleTable *tuples;
	uint64		n;
	uint64		i;
	bool		end;			/* no trail rows left */
	int64		seq;			/* the current trail row */
	int64		key;
	int64		bad_seq;		/* the first difference, if detail is set */
	char	   *detail;			/* (in cxt) */
	MemoryContext cxt;
} TrailCheck;

static void
trail_advance(TrailCheck *tc)
{
	bool		isnull;

	if (tc->end)
		return;
	if (tc->i >= tc->n)
	{
		if (tc->tuples != NULL)
			SPI_freetuptable(tc->tuples);
		tc->tuples = NULL;
		SPI_cursor_fetch(tc->portal, true, 1000);
		tc->tuples = SPI_tuptable;
		tc->n = SPI_processed;
		tc->i = 0;
		if (tc->n == 0)
		{
			tc->end = true;
			return;
		}
	}
	tc->seq = DatumGetInt64(SPI_getbinval(tc->tuples->vals[tc->i], tc->tuples->tupdesc, 1, &isnull));
	tc->key = DatumGetInt64(SPI_getbinval(tc->tuples->vals[tc->i], tc->tuples->tupdesc, 2, &isnull));
	tc->i++;
}

static void
trail_differs(TrailCheck *tc, int64 seq, bool missing)
{
	MemoryContext old = MemoryContextSwitchTo(tc->cxt);

	tc->bad_seq = seq;
	if (missing)
		tc->detail = psprintf("entry " INT64_FORMAT " (a subject's) is missing from privacy.access_log_trail:"
							  " the subject's report would not show it", seq);
	else
		tc->detail = psprintf("privacy.access_log_trail lists entry " INT64_FORMAT
							  " for a subject the entry is not about", seq);
	MemoryContextSwitchTo(old);
}

/* The subject entry seq, about the subject of key: is it in the trail? */
static void
trail_check_entry(TrailCheck *tc, int64 seq, int64 key)
{
	if (tc == NULL || tc->portal == NULL || tc->detail != NULL)
		return;
	if (!tc->end && (tc->seq < seq || (tc->seq == seq && tc->key < key)))
		trail_differs(tc, tc->seq, false);
	else if (tc->end || tc->seq != seq || tc->key != key)
		trail_differs(tc, seq, true);
	else
		trail_advance(tc);
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
			 bytea *entries, int64 *bad_seq, char **detail, int64 *meta_seq, char **meta_detail,
			 TrailCheck *trail)
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
	while ((rc = audit_unpack_next(&r, &es[n])) > 0)
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
			TimestampTz at = (TimestampTz) audit_get_i64(&er);

			if (at > newest)
				newest = at;
		}
		else if (es[i].len >= 1 + 8 + PRIVACY_SUBJECT_HASH_BYTES && es[i].bytes[0] == ENTRY_SUBJECT)
		{
			keys[nkeys] = audit_subject_key(es[i].bytes + 1 + 8);
			trail_check_entry(trail, (int64) es[i].seq, keys[nkeys]);
			nkeys++;
		}
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

		audit_sort_int64(keys, nkeys);
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
	unsigned char *key = audit_chain_key_scratch;
	unsigned char prev[LOGCHAIN_MAC_BYTES];
	int64		expected = 1;
	int64		checked = 0;
	const char *status = "ok";
	int64		bad_seq = 0;
	char	   *detail = NULL;
	Portal		portal;
	int			idx = audit_my_queue();
	int64		meta_seq = 0;
	char	   *meta_detail = NULL;
	int64		log_start;
	AuditChainEnd shm;
	TrailCheck	trail;
	MemoryContext caller = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	keys_require_master_key();
	keys_access_log_key(key);
	memset(prev, 0, sizeof(prev));
	memset(&trail, 0, sizeof(trail));
	trail.cxt = caller;

	/*
	 * What this server's writers committed, then a snapshot taken after it:
	 * the batches and the head read with it hold at least that much.
	 */
	audit_shm_head(idx >= 0 ? &audit_shared->queues[idx] : NULL, get_extension_oid("privacy", true),
				   &shm);
	PushActiveSnapshot(GetLatestSnapshot());
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
	log_start = expected;

	if (strcmp(status, "ok") == 0)
	{
		Datum		arg = Int64GetDatum(expected);
		MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "verify batch", ALLOCSET_DEFAULT_SIZES);
		bool		done = false;
		bool		meta_copied = false;

		if (OidIsValid(get_relname_relid("access_log_trail", catalog_namespace())))
		{
			trail.portal = SPI_cursor_open_with_args(NULL,
													 "SELECT seq, subject_key FROM " PRIVACY_SCHEMA ".access_log_trail"
													 " WHERE seq >= $1 ORDER BY seq, subject_key",
													 1, (Oid[]) {INT8OID}, &arg, NULL, true, 0);
			trail_advance(&trail);
		}
		portal = SPI_cursor_open_with_args(NULL,
										   "SELECT first_seq, last_seq, last_at, subjects, entries, nonce"
										   "  FROM " PRIVACY_SCHEMA ".access_log_batches WHERE last_seq >= $1 ORDER BY first_seq",
										   1, (Oid[]) {INT8OID}, &arg, NULL, true, 0);
		while (!done)
		{
			uint64		i;
			SPITupleTable *batches;
			uint64		nbatches;

			SPI_cursor_fetch(portal, true, 4);
			/* (the trail's fetches replace SPI_tuptable) */
			batches = SPI_tuptable;
			nbatches = SPI_processed;
			if (nbatches == 0)
				break;
			for (i = 0; i < nbatches && !done; i++)
			{
				HeapTuple	tup = batches->vals[i];
				TupleDesc	td = batches->tupdesc;
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
					entries = PointerGetDatum(audit_bytea_datum(NULL, 0));
				nonce = SPI_getbinval(tup, td, 6, &isnull);
				if (isnull)
					nonce = PointerGetDatum(audit_bytea_datum(NULL, 0));
				v = verify_batch(key, DatumGetByteaPP(nonce), prev, &expected, &checked,
								 DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull)),
								 DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull)),
								 DatumGetTimestampTz(SPI_getbinval(tup, td, 3, &isnull)),
								 DatumGetArrayTypeP(subjects),
								 DatumGetByteaPP(entries),
								 &bad_seq, &detail, &meta_seq, &meta_detail, &trail);
				MemoryContextSwitchTo(old);
				/* (copied out of SPI's memory, which catalog_restore_user frees) */
				if (v != NULL)
				{
					status = v;
					detail = MemoryContextStrdup(caller, detail);
					done = true;
				}
				if (meta_detail != NULL && !meta_copied)
				{
					meta_detail = MemoryContextStrdup(caller, meta_detail);
					meta_copied = true;
				}
				MemoryContextReset(tmp);
			}
			SPI_freetuptable(batches);
		}
		SPI_cursor_close(portal);
		MemoryContextDelete(tmp);
		/* trail rows past the last subject entry name none */
		if (trail.portal != NULL)
		{
			if (!done && trail.detail == NULL && !trail.end)
				trail_differs(&trail, trail.seq, false);
			if (trail.tuples != NULL)
				SPI_freetuptable(trail.tuples);
			SPI_cursor_close(trail.portal);
		}
	}

	/* entries cut off the end: the log must end where its head says */
	if (strcmp(status, "ok") == 0)
	{
		const char *v = audit_check_end(key, log_start, expected - 1, prev, &shm, &bad_seq, &detail);

		if (v != NULL)
		{
			status = v;
			detail = MemoryContextStrdup(caller, detail);
		}
	}
	catalog_restore_user(&st);
	PopActiveSnapshot();
	sodium_memzero(key, LOGCHAIN_KEY_BYTES);

	/* the chain is whole, but a row misdescribes its entries */
	if (strcmp(status, "ok") == 0 && meta_detail != NULL)
	{
		status = "altered";
		bad_seq = meta_seq;
		detail = meta_detail;
	}
	/* or the trail does not list them as they are */
	if (strcmp(status, "ok") == 0 && trail.detail != NULL)
	{
		status = "altered";
		bad_seq = trail.bad_seq;
		detail = trail.detail;
	}

	/* every run is recorded, under the role that asked */
	{
		char	   *who = audit_role_name(GetOuterUserId());
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
	unsigned char *key = audit_chain_key_scratch;
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
			/* the subjects' trails into the removed entries (none before 0.3) */
			if (OidIsValid(get_relname_relid("access_log_trail", catalog_namespace())) &&
				SPI_execute_with_args("DELETE FROM " PRIVACY_SCHEMA ".access_log_trail WHERE seq <= $1",
									  1, (Oid[]) {INT8OID}, &arg, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not trim the access log's subject trails");
			if (removed > 0)
			{
				args[0] = Int64GetDatum(boundary + 1);
				args[1] = audit_bytea_datum(anchor, LOGCHAIN_MAC_BYTES);
				args[2] = Int64GetDatum(removed);
				args[3] = audit_bytea_datum(amac, LOGCHAIN_ANCHOR_MAC_BYTES);
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

/*
 * privacy_internal.access_log_subject_trail(subject_hash): the entries of
 * the access log about one subject, each with the statement event that
 * opened its values: what access_log_for_subject() joined to
 * access_log_event() gives, in one call (issue #19: the two lookups of
 * each entry were most of a subject report).  The subject's seqs come from
 * privacy.access_log_trail (derived); the entries themselves from the
 * chained batch rows, each read as slices of its row (audit_batch_offsets),
 * and the statement event, most often a few entries before it in the same
 * row, in the same slice.  The last batch rows and the last statement met
 * are kept for the call.  An entry whose bytes are not at its seq or not
 * about the subject (its 8-byte trail key is shared) is left out, as is a
 * subject entry whose statement is not found.  Both tables are read
 * through their indexes directly, not by queries (issue #19: starting the
 * executor for a lookup cost as much as the lookup), with the caller's
 * rights checked as a query would check them, and the statement's snapshot.
 */
#define TRAIL_BATCHES 4			/* batch rows kept for a call */
#define TRAIL_BACK_BYTES 4096	/* read before a subject entry, for its statement */
#define TRAIL_BACK_ENTRIES 64

typedef struct TrailBatch
{
	bool		valid;
	int64		first_seq;
	int64		last_seq;
	Datum		entries;		/* the row's TOAST pointers (or values), copied */
	Datum		offsets;
} TrailBatch;

/* The two tables, open for one call, and their columns. */
typedef struct TrailRels
{
	Relation	trail;
	Relation	trail_idx;		/* on subject_key */
	TupleTableSlot *trail_slot;
	AttrNumber	trail_seq;
	Relation	batches;
	Relation	batches_idx;	/* on first_seq */
	TupleTableSlot *batch_slot;
	IndexScanDesc batch_scan;
	AttrNumber	b_first;
	AttrNumber	b_last;
	AttrNumber	b_entries;
	AttrNumber	b_offsets;
} TrailRels;

static Relation
trail_open(const char *name)
{
	Oid			relid = get_relname_relid(name, catalog_namespace());
	AclResult	acl;

	if (!OidIsValid(relid))
		elog(ERROR, "relation " PRIVACY_SCHEMA ".%s of the access log does not exist", name);
	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_TABLE, name);
	return table_open(relid, AccessShareLock);
}

/* A column of the access log's tables, of the type the reader reads it as. */
static AttrNumber
trail_attnum(Relation rel, const char *name, Oid type)
{
	AttrNumber	n = get_attnum(RelationGetRelid(rel), name);

	if (n == InvalidAttrNumber)
		elog(ERROR, "column %s of " PRIVACY_SCHEMA ".%s does not exist", name, RelationGetRelationName(rel));
	if (TupleDescAttr(RelationGetDescr(rel), n - 1)->atttypid != type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column %s of " PRIVACY_SCHEMA ".%s is not of type %s", name,
						RelationGetRelationName(rel), format_type_be(type))));
	return n;
}

/*
 * The index the reader scans on column attnum of heap: a whole, valid
 * btree on that column first, over integers, the one the install script
 * made.  Another index of that name (a partial one, on another column or
 * table, left invalid by a failed CREATE INDEX CONCURRENTLY) would return
 * fewer entries, or none, without a word: it is refused.
 */
static Relation
trail_index_open(Relation heap, const char *name, AttrNumber attnum)
{
	Oid			relid = get_relname_relid(name, catalog_namespace());
	const char *column = NameStr(TupleDescAttr(RelationGetDescr(heap), attnum - 1)->attname);
	Relation	idx;
	Form_pg_index ix;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index " PRIVACY_SCHEMA ".%s of the access log does not exist", name),
				 errhint("Create it again: CREATE INDEX %s ON " PRIVACY_SCHEMA ".%s (%s).",
						 name, RelationGetRelationName(heap), column)));
	idx = index_open(relid, AccessShareLock);
	ix = idx->rd_index;
	if (ix->indrelid != RelationGetRelid(heap) || !ix->indisvalid || !ix->indisready ||
		idx->rd_rel->relam != BTREE_AM_OID || ix->indnkeyatts < 1 || ix->indkey.values[0] != attnum ||
		idx->rd_opfamily[0] != INTEGER_BTREE_FAM_OID ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index " PRIVACY_SCHEMA ".%s is not the access log's index on %s.%s", name,
						RelationGetRelationName(heap), column),
				 errdetail("The access trail is read through a valid btree index on that column, whole."),
				 errhint("Drop it and create it again: CREATE INDEX %s ON " PRIVACY_SCHEMA ".%s (%s).",
						 name, RelationGetRelationName(heap), column)));
	return idx;
}

static void
trail_rels_open(TrailRels *tr)
{
	AclResult	acl = pg_namespace_aclcheck(catalog_namespace(), GetUserId(), ACL_USAGE);

	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_SCHEMA, PRIVACY_SCHEMA);
	tr->trail = trail_open("access_log_trail");
	tr->trail_seq = trail_attnum(tr->trail, "seq", INT8OID);
	tr->trail_idx = trail_index_open(tr->trail, "access_log_trail_subject",
									 trail_attnum(tr->trail, "subject_key", INT8OID));
	tr->trail_slot = table_slot_create(tr->trail, NULL);
	tr->batches = trail_open("access_log_batches");
	tr->b_first = trail_attnum(tr->batches, "first_seq", INT8OID);
	tr->b_last = trail_attnum(tr->batches, "last_seq", INT8OID);
	tr->b_entries = trail_attnum(tr->batches, "entries", BYTEAOID);
	tr->b_offsets = trail_attnum(tr->batches, "offsets", BYTEAOID);
	tr->batches_idx = trail_index_open(tr->batches, "access_log_batches_pkey", tr->b_first);
	tr->batch_slot = table_slot_create(tr->batches, NULL);
	tr->batch_scan = NULL;
}

static void
trail_rels_close(TrailRels *tr)
{
	if (tr->batch_scan != NULL)
		index_endscan(tr->batch_scan);
	ExecDropSingleTupleTableSlot(tr->trail_slot);
	ExecDropSingleTupleTableSlot(tr->batch_slot);
	index_close(tr->trail_idx, NoLock);
	index_close(tr->batches_idx, NoLock);
	table_close(tr->trail, NoLock);
	table_close(tr->batches, NoLock);
}

/* The subject's seqs in the trail (sorted), in the current memory context. */
static int64 *
trail_seqs(TrailRels *tr, int64 key, uint64 *n)
{
	ScanKeyData sk;
	IndexScanDesc scan;
	uint64		max = 16;
	int64	   *seqs = palloc(sizeof(int64) * max);

	*n = 0;
	ScanKeyInit(&sk, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(key));
	scan = index_beginscan(tr->trail, tr->trail_idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, tr->trail_slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(tr->trail_slot, tr->trail_seq, &isnull);

		CHECK_FOR_INTERRUPTS();
		if (isnull)
			continue;
		if (*n == max)
		{
			if (max * 2 > MaxAllocSize / sizeof(int64))
				elog(ERROR, "the access trail of a subject is too long to read at once");
			max *= 2;
			seqs = repalloc(seqs, sizeof(int64) * max);
		}
		seqs[(*n)++] = DatumGetInt64(d);
	}
	index_endscan(scan);
	if (*n > 1)
		audit_sort_int64(seqs, *n);
	return seqs;
}

/* The batch row holding seq (the greatest first_seq at or below it), or NULL. */
static TrailBatch *
trail_batch(TrailRels *tr, TrailBatch *cache, int *next, int64 seq, MemoryContext cxt)
{
	TrailBatch *b;
	ScanKeyData sk;
	bool		isnull;
	MemoryContext old;
	int			i;

	for (i = 0; i < TRAIL_BATCHES; i++)
		if (cache[i].valid && cache[i].first_seq <= seq && seq <= cache[i].last_seq)
			return &cache[i];
	ScanKeyInit(&sk, 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(seq));
	if (tr->batch_scan == NULL)
		tr->batch_scan = index_beginscan(tr->batches, tr->batches_idx, GetActiveSnapshot(), 1, 0);
	index_rescan(tr->batch_scan, &sk, 1, NULL, 0);
	if (!index_getnext_slot(tr->batch_scan, BackwardScanDirection, tr->batch_slot))
		return NULL;
	b = &cache[*next];
	*next = (*next + 1) % TRAIL_BATCHES;
	if (b->valid)
	{
		pfree(DatumGetPointer(b->entries));
		pfree(DatumGetPointer(b->offsets));
	}
	old = MemoryContextSwitchTo(cxt);
	b->first_seq = DatumGetInt64(slot_getattr(tr->batch_slot, tr->b_first, &isnull));
	b->last_seq = DatumGetInt64(slot_getattr(tr->batch_slot, tr->b_last, &isnull));
	b->entries = datumCopy(slot_getattr(tr->batch_slot, tr->b_entries, &isnull), false, -1);
	b->offsets = datumCopy(slot_getattr(tr->batch_slot, tr->b_offsets, &isnull), false, -1);
	b->valid = true;
	MemoryContextSwitchTo(old);
	ExecClearTuple(tr->batch_slot);
	return b;
}

/*
 * The packed entry at bytes start to end of a slice that begins at byte
 * base of its row: false when it is not at seq or not of the kind wanted.
 */
static bool
trail_entry(const bytea *slice, uint32 base, uint32 start, uint32 end, int64 seq, char kind, LogchainEntry *e)
{
	Reader		r;

	if (start < base || end - base > VARSIZE(slice) - VARHDRSZ)
		audit_batch_corrupt();
	r.p = (const unsigned char *) VARDATA(slice) + (start - base);
	r.end = (const unsigned char *) VARDATA(slice) + (end - base);
	/* (the entries of a row are its seqs in order: another seq there is tampering) */
	if (audit_unpack_next(&r, e) != 1 || r.p != r.end || (int64) e->seq != seq)
		audit_batch_corrupt();
	return e->len > 0 && e->bytes[0] == kind;
}

/* The statement event seq of a batch row, parsed into *st: false when there is none. */
static bool
trail_statement(TrailBatch *b, int64 seq, const bytea *slice, uint32 base, const uint32 *off, int64 lo,
				int64 window, StatementEntry *st)
{
	LogchainEntry e;
	Reader		r;
	uint32		own[2];
	int64		last;
	int64		i = seq - b->first_seq;

	if (i >= window && slice != NULL)
	{
		/* in the slice read with the subject entry */
		if (!trail_entry(slice, base, off[i - lo], off[i - lo + 1], seq, ENTRY_STATEMENT, &e))
			return false;
	}
	else
	{
		if (!audit_batch_offsets(b->entries, b->offsets, i, i, own, &last))
		{
			/* a row that says it holds seq but has no entry there is tampered with */
			if (seq <= b->last_seq)
				audit_batch_corrupt();
			return false;
		}
		slice = audit_batch_bytes(b->entries, own[0], own[1]);
		if (!trail_entry(slice, own[0], own[0], own[1], seq, ENTRY_STATEMENT, &e))
			return false;
	}
	r.p = e.bytes;
	r.end = e.bytes + e.len;
	audit_parse_statement(&r, st);
	if (r.p != r.end)
		audit_batch_corrupt();
	return true;
}

/* One entry of a subject's trail with its statement's fields. */
typedef struct TrailRow
{
	int64		seq;
	int64		event;
	int64		opened;
	char	   *category;
	StatementEntry *st;			/* shared by the entries of one statement */
} TrailRow;

/*
 * The entries of the subject of hash, in seq order, in the caller's memory
 * (*nrows of them).
 */
static TrailRow *
trail_read(const unsigned char *hash, int *nrows)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext call_cxt;
	MemoryContext entry_cxt;
	MemoryContext old;
	TrailRels	tr;
	TrailBatch	cache[TRAIL_BATCHES];
	int			next = 0;
	int64	   *seqs;
	uint64		nseqs;
	uint64		n;
	StatementEntry st;
	StatementEntry *st_copy = NULL;	/* st in the caller's memory */
	int64		st_seq = -1;	/* the statement in st, parsed once for its entries */
	TrailRow   *rows;
	int			count = 0;

	call_cxt = AllocSetContextCreate(caller, "access trail", ALLOCSET_DEFAULT_SIZES);
	entry_cxt = AllocSetContextCreate(call_cxt, "access trail entry", ALLOCSET_DEFAULT_SIZES);
	memset(cache, 0, sizeof(cache));
	memset(&st, 0, sizeof(st));

	trail_rels_open(&tr);
	old = MemoryContextSwitchTo(call_cxt);
	seqs = trail_seqs(&tr, audit_subject_key(hash), &nseqs);
	MemoryContextSwitchTo(old);
	if (nseqs > (uint64) (MaxAllocSize / sizeof(TrailRow)) || nseqs > (uint64) PG_INT32_MAX)
		elog(ERROR, "the access trail of a subject is too long to read at once");
	rows = MemoryContextAlloc(caller, sizeof(TrailRow) * (nseqs + 1));

	for (n = 0; n < nseqs; n++)
	{
		int64		seq = seqs[n];
		TrailBatch *b = trail_batch(&tr, cache, &next, seq, call_cxt);
		int64		i;
		int64		lo;
		int64		window;
		int64		last;
		uint32	   *off;
		bytea	   *slice;
		LogchainEntry e;
		Reader		r;
		int64		event;
		char	   *category;
		int64		opened;

		/* (a long trail can be cancelled, statement_timeout included) */
		CHECK_FOR_INTERRUPTS();
		if (b == NULL)
			continue;
		old = MemoryContextSwitchTo(entry_cxt);
		i = seq - b->first_seq;
		lo = Max(i - TRAIL_BACK_ENTRIES, 0);
		off = palloc(sizeof(uint32) * (i - lo + 2));
		if (!audit_batch_offsets(b->entries, b->offsets, lo, i, off, &last) || last != i)
		{
			/*
			 * Past the row's last entry: a trail row of a trimmed entry.
			 * Within it: the row was tampered with, which is not read as
			 * no entry (verify_access_log() says where).
			 */
			if (seq <= b->last_seq)
				audit_batch_corrupt();
			goto next;
		}
		/* the subject entry and the bytes before it, where its statement most often is */
		for (window = i; window > lo && off[i - lo] - off[window - 1 - lo] <= TRAIL_BACK_BYTES; window--)
			;
		slice = audit_batch_bytes(b->entries, off[window - lo], off[i - lo + 1]);
		if (!trail_entry(slice, off[window - lo], off[i - lo], off[i - lo + 1], seq, ENTRY_SUBJECT, &e))
			goto next;
		r.p = e.bytes + 1;
		r.end = e.bytes + e.len;
		event = audit_get_i64(&r);
		if (r.end - r.p < PRIVACY_SUBJECT_HASH_BYTES)
			audit_batch_corrupt();
		if (memcmp(r.p, hash, PRIVACY_SUBJECT_HASH_BYTES) != 0)
			goto next;
		r.p += PRIVACY_SUBJECT_HASH_BYTES;
		MemoryContextSwitchTo(caller);
		category = audit_get_str(&r);
		MemoryContextSwitchTo(entry_cxt);
		opened = audit_get_i64(&r);
		if (r.p != r.end)
			audit_batch_corrupt();

		if (event != st_seq)
		{
			bool		found;

			st_seq = -1;
			/* (its fields in the caller's memory, shared by its entries' rows) */
			MemoryContextSwitchTo(caller);
			if (event >= b->first_seq && event < seq)
				found = trail_statement(b, event, slice, off[window - lo], off, lo, window, &st);
			else
			{
				/* (another row: the cache may drop b) */
				TrailBatch *sb = trail_batch(&tr, cache, &next, event, call_cxt);

				found = sb != NULL && trail_statement(sb, event, NULL, 0, NULL, 0, 0, &st);
			}
			MemoryContextSwitchTo(entry_cxt);
			if (!found)
				goto next;
			st_seq = event;
			st_copy = MemoryContextAlloc(caller, sizeof(StatementEntry));
			*st_copy = st;
		}
		rows[count].seq = seq;
		rows[count].event = event;
		rows[count].category = category;
		rows[count].opened = opened;
		rows[count].st = st_copy;
		count++;
next:
		MemoryContextSwitchTo(old);
		MemoryContextReset(entry_cxt);
	}
	trail_rels_close(&tr);
	MemoryContextDelete(call_cxt);
	*nrows = count;
	return rows;
}

/*
 * The columns of access_log_subject_trail() for one row; privacy.access_trail()
 * returns some of them (TRAIL_AS_ACCESS_TRAIL).
 */
#define TRAIL_COLUMNS 15
static const int TRAIL_AS_ACCESS_TRAIL[] = {1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14};

static void
trail_row_values(const TrailRow *row, Datum *values, bool *nulls)
{
	const StatementEntry *st = row->st;
	const char *texts[TRAIL_COLUMNS] = {
		NULL, NULL, NULL, st->session_role, st->acting_role, st->application, NULL, st->purpose,
		st->command, st->relation, row->category, NULL, st->outcome, st->reason, st->denied_category
	};
	int			k;

	for (k = 0; k < TRAIL_COLUMNS; k++)
	{
		nulls[k] = texts[k] == NULL;
		values[k] = texts[k] != NULL ? CStringGetTextDatum(texts[k]) : (Datum) 0;
	}
	values[0] = Int64GetDatum(row->seq);
	values[1] = Int64GetDatum(row->event);
	values[2] = TimestampTzGetDatum(st->at);
	values[6] = Int32GetDatum(st->backend_pid);
	values[11] = Int64GetDatum(row->opened);
	nulls[0] = nulls[1] = nulls[2] = nulls[6] = nulls[11] = false;
}

/*
 * privacy_internal.access_log_subject_trail(subject_hash): the rows of
 * access_log_for_subject() joined to access_log_event(), in seq order.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_subject_trail);
Datum
privacy_access_log_subject_trail(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *want = PG_GETARG_BYTEA_PP(0);
	TrailRow   *rows;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (VARSIZE_ANY_EXHDR(want) != PRIVACY_SUBJECT_HASH_BYTES)
		return (Datum) 0;
	rows = trail_read((const unsigned char *) VARDATA_ANY(want), &n);
	for (i = 0; i < n; i++)
	{
		Datum		values[TRAIL_COLUMNS];
		bool		nulls[TRAIL_COLUMNS];

		trail_row_values(&rows[i], values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* By statement, then category (as text sorts in the database, nulls last). */
static int
trail_row_cmp(const void *a, const void *b)
{
	const TrailRow *x = (const TrailRow *) a;
	const TrailRow *y = (const TrailRow *) b;

	if (x->event != y->event)
		return x->event < y->event ? -1 : 1;
	if (x->category == NULL || y->category == NULL)
		return (x->category == NULL) - (y->category == NULL);
	{
		int			c = varstr_cmp(x->category, strlen(x->category), y->category, strlen(y->category),
								   DEFAULT_COLLATION_OID);

		if (c != 0)
			return c;
	}
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * privacy.access_trail(subject): a subject's access trail for an officer,
 * one row per statement and category, oldest first.  C rather than
 * PL/pgSQL around the reader (issue #19: the wrapper cost as much as the
 * reading); it runs as its caller, so only who may read the access log
 * gets anything.
 */
PG_FUNCTION_INFO_V1(privacy_access_trail);
Datum
privacy_access_trail(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *subject = PG_GETARG_TEXT_PP(0);
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];
	TrailRow   *rows;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	keys_subject_hash(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), hash);
	rows = trail_read(hash, &n);
	if (n > 1)
		qsort(rows, n, sizeof(TrailRow), trail_row_cmp);
	for (i = 0; i < n; i++)
	{
		Datum		all[TRAIL_COLUMNS];
		bool		allnulls[TRAIL_COLUMNS];
		Datum		values[lengthof(TRAIL_AS_ACCESS_TRAIL)];
		bool		nulls[lengthof(TRAIL_AS_ACCESS_TRAIL)];
		int			k;

		trail_row_values(&rows[i], all, allnulls);
		for (k = 0; k < lengthof(TRAIL_AS_ACCESS_TRAIL); k++)
		{
			values[k] = all[TRAIL_AS_ACCESS_TRAIL[k]];
			nulls[k] = allnulls[TRAIL_AS_ACCESS_TRAIL[k]];
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}


/* A JSON string, or null. */
static void
json_text(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/*
 * privacy_internal.subject_access_entries(hash, own_pid, since) → jsonb:
 * the access entries of one subject on this node as the subject report
 * lists them, one object per statement, oldest first: entry, at, role,
 * session_role, application, purpose, command, table, categories (distinct,
 * sorted), values (opened, summed), outcome, and a denial's reason and
 * denied_category.  Its own reads are left out: those at or after since of
 * backend own_pid, or when own_pid is NULL (a Citus worker serving the
 * coordinator's report) those under subject_access.  C rather than a query
 * over access_log_subject_trail() (issue #19: starting that query's
 * aggregates cost more than reading the entries).  Runs as its caller.
 */
PG_FUNCTION_INFO_V1(privacy_subject_access_entries);
Datum
privacy_subject_access_entries(PG_FUNCTION_ARGS)
{
	bytea	   *want = PG_ARGISNULL(0) ? NULL : PG_GETARG_BYTEA_PP(0);
	bool		any_pid = PG_ARGISNULL(1);
	int32		own_pid = any_pid ? 0 : PG_GETARG_INT32(1);
	bool		no_since = PG_ARGISNULL(2);
	TimestampTz since = no_since ? 0 : PG_GETARG_TIMESTAMPTZ(2);
	StringInfoData buf;
	TrailRow   *rows = NULL;
	int			n = 0;
	int			i;
	bool		first = true;

	if (want != NULL && VARSIZE_ANY_EXHDR(want) == PRIVACY_SUBJECT_HASH_BYTES)
		rows = trail_read((const unsigned char *) VARDATA_ANY(want), &n);
	if (n > 1)
		qsort(rows, n, sizeof(TrailRow), trail_row_cmp);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n;)
	{
		StatementEntry *st = rows[i].st;
		int64		event = rows[i].event;
		bool		own;
		int			j;
		int64		values = 0;
		bool		first_cat = true;
		char		at[MAXDATELEN + 1];

		/* NOT (at >= since AND (own backend OR (any_pid AND subject_access))) */
		own = any_pid ? (st->purpose != NULL && strcmp(st->purpose, "subject_access") == 0)
			: st->backend_pid == own_pid;
		if (own && (no_since || st->at >= since))
		{
			while (i < n && rows[i].event == event)
				i++;
			continue;
		}
		appendStringInfo(&buf, "%s{\"entry\": " INT64_FORMAT ", \"at\": \"%s\", \"role\": ",
						 first ? "" : ", ", event,
						 JsonEncodeDateTime(at, TimestampTzGetDatum(st->at), TIMESTAMPTZOID, NULL));
		first = false;
		json_text(&buf, st->acting_role);
		appendStringInfoString(&buf, ", \"session_role\": ");
		json_text(&buf, st->session_role);
		appendStringInfoString(&buf, ", \"application\": ");
		json_text(&buf, st->application);
		appendStringInfoString(&buf, ", \"purpose\": ");
		json_text(&buf, st->purpose);
		appendStringInfoString(&buf, ", \"command\": ");
		json_text(&buf, st->command);
		appendStringInfoString(&buf, ", \"table\": ");
		json_text(&buf, st->relation);
		appendStringInfoString(&buf, ", \"categories\": [");
		for (j = i; j < n && rows[j].event == event; j++)
		{
			values += rows[j].opened;
			/* distinct: equal categories are next to each other */
			if (j > i && (rows[j].category == NULL ? rows[j - 1].category == NULL :
						  rows[j - 1].category != NULL && strcmp(rows[j].category, rows[j - 1].category) == 0))
				continue;
			if (!first_cat)
				appendStringInfoString(&buf, ", ");
			first_cat = false;
			json_text(&buf, rows[j].category);
		}
		i = j;
		appendStringInfo(&buf, "], \"values\": " INT64_FORMAT ", \"outcome\": ", values);
		json_text(&buf, st->outcome);
		if (st->reason != NULL)
		{
			appendStringInfoString(&buf, ", \"reason\": ");
			json_text(&buf, st->reason);
			appendStringInfoString(&buf, ", \"denied_category\": ");
			json_text(&buf, st->denied_category);
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
