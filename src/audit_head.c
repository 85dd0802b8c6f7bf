/*
 * audit_head.c — where the access log ends, kept apart from its batches.
 *
 * The MAC chain shows an entry changed, removed from the middle or moved,
 * but not entries cut off its end: what is left still chains.  So the end
 * is known in three places:
 *
 * - privacy.access_log_head: one row, written by the writer in the
 *   transaction of every batch, with the last entry's seq and MAC and
 *   broken_at (below), sealed under a key derived from the access log key
 *   (logchain_head_seal).  It is not in the batch table, so deleting batch
 *   rows or replacing the table leaves it behind; it survives restarts and
 *   travels with dumps (pg_extension_config_dump).
 * - the writer's shared memory (AuditQueue.chain_*), while the server runs:
 *   it also catches a head put back from an older sealed copy.
 * - the batches themselves, or the latest retention anchor once retention
 *   has removed them all.
 *
 * A writer that starts goes on from the furthest end it can trust (a
 * sealed head, the shared memory), so that entries cut off the end stay a
 * gap in the chain.  When the log has entries and it can trust neither
 * (the head deleted or forged, or behind the batches: put back from an
 * older copy), it goes on from the batches and records broken_at, the
 * first seq it writes: entries before it may have been cut off, and
 * verification says so for as long as retention keeps that entry.
 *
 * What no head inside the database can show: a superuser who keeps a
 * sealed copy of the head, later cuts the log back to it and puts the copy
 * back, with a restart in between.  A copy of the head kept outside the
 * database shows it (doc/dba.md, threat model).
 */
#include "audit.h"

#include <sodium.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

typedef enum HeadState
{
	HEAD_NO_TABLE,				/* a schema from before the head (0.2) */
	HEAD_ABSENT,				/* no row */
	HEAD_FORGED,				/* its seal does not match, or several rows */
	HEAD_SEALED
} HeadState;

static Oid
relid_of(const char *relname)
{
	Oid			nsp = get_namespace_oid(PRIVACY_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/* "entry 7 is" or "entries 7 to 9 are" */
static char *
entries_are(int64 first, int64 last)
{
	if (first == last)
		return psprintf("entry " INT64_FORMAT " is", first);
	return psprintf("entries " INT64_FORMAT " to " INT64_FORMAT " are", first, last);
}

/* The earlier of two breaks, 0 meaning none. */
static int64
first_break(int64 a, int64 b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/*
 * Where the batches end: the last entry of the row with the greatest
 * first_seq, or the latest retention anchor when that is further (every
 * batch removed).  SPI is connected.
 */
static void
log_end(AuditChainEnd *end)
{
	memset(end, 0, sizeof(*end));
	end->known = true;
	if (SPI_execute("SELECT seq, mac FROM ("
					"  (SELECT last_seq AS seq, " MAC_OF_LAST_ENTRY " AS mac"
					"     FROM " PRIVACY_SCHEMA ".access_log_batches ORDER BY first_seq DESC LIMIT 1)"
					"  UNION ALL (SELECT first_seq - 1, anchor FROM " PRIVACY_SCHEMA ".access_log_anchors ORDER BY first_seq DESC LIMIT 1)"
					") h ORDER BY seq DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the end of the access log");
	if (SPI_processed == 1)
	{
		bool		isnull;
		bytea	   *m;

		end->seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		m = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (!isnull && VARSIZE_ANY_EXHDR(m) == LOGCHAIN_MAC_BYTES)
			memcpy(end->mac, VARDATA_ANY(m), LOGCHAIN_MAC_BYTES);
	}
}

/* A bytea column of exactly len bytes, or NULL. */
static const unsigned char *
bytes_of(HeapTuple tup, TupleDesc desc, int col, size_t len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	bytea	   *b;

	if (isnull)
		return NULL;
	b = DatumGetByteaPP(d);
	return VARSIZE_ANY_EXHDR(b) == len ? (const unsigned char *) VARDATA_ANY(b) : NULL;
}

/* The head row, known only when its seal holds.  SPI is connected. */
static HeadState
read_head(const unsigned char *key, AuditChainEnd *head)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		seq_null;
	bool		broken_null;
	const unsigned char *mac;
	const unsigned char *seal;
	unsigned char want[LOGCHAIN_HEAD_SEAL_BYTES];

	memset(head, 0, sizeof(*head));
	if (!OidIsValid(relid_of("access_log_head")))
		return HEAD_NO_TABLE;
	if (SPI_execute("SELECT last_seq, mac, broken_at, seal FROM " PRIVACY_SCHEMA ".access_log_head",
					true, 2) != SPI_OK_SELECT)
		elog(ERROR, "could not read the head of the access log");
	if (SPI_processed == 0)
		return HEAD_ABSENT;
	if (SPI_processed > 1)
		return HEAD_FORGED;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	head->seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &seq_null));
	mac = bytes_of(tup, desc, 2, LOGCHAIN_MAC_BYTES);
	head->broken_at = DatumGetInt64(SPI_getbinval(tup, desc, 3, &broken_null));
	if (broken_null)
		head->broken_at = 0;
	seal = bytes_of(tup, desc, 4, LOGCHAIN_HEAD_SEAL_BYTES);
	if (seq_null || head->seq < 0 || head->broken_at < 0 || mac == NULL || seal == NULL ||
		logchain_head_seal(want, key, (uint64) head->seq, mac, (uint64) head->broken_at) != 0 ||
		sodium_memcmp(want, seal, LOGCHAIN_HEAD_SEAL_BYTES) != 0)
	{
		memset(head, 0, sizeof(*head));
		return HEAD_FORGED;
	}
	memcpy(head->mac, mac, LOGCHAIN_MAC_BYTES);
	head->known = true;
	return HEAD_SEALED;
}

/* What this server's writers committed into this installation's log. */
void
audit_shm_head(AuditQueue *q, Oid extension, AuditChainEnd *end)
{
	memset(end, 0, sizeof(*end));
	if (q == NULL || !OidIsValid(extension))
		return;
	LWLockAcquire(audit_shared->lock, LW_SHARED);
	if (q->chain_extension == extension && q->chain_seq > 0)
	{
		end->known = true;
		end->seq = (int64) q->chain_seq;
		memcpy(end->mac, q->chain_mac, LOGCHAIN_MAC_BYTES);
		end->broken_at = (int64) q->chain_broken;
	}
	LWLockRelease(audit_shared->lock);
}

/* The further of two trusted ends, with the earlier break of the two. */
static AuditChainEnd
furthest(const AuditChainEnd *a, const AuditChainEnd *b)
{
	AuditChainEnd r;

	if (!b->known)
		return *a;
	if (!a->known)
		return *b;
	r = b->seq > a->seq ? *b : *a;
	r.broken_at = first_break(a->broken_at, b->broken_at);
	return r;
}

/*
 * Where a writer starting on this installation's log goes on from (its
 * transaction open, SPI connected, key the access log key).
 */
void
audit_resume_chain(AuditQueue *q, Oid extension, const unsigned char *key, AuditChainEnd *chain)
{
	AuditChainEnd log;
	AuditChainEnd head;
	AuditChainEnd shm;
	AuditChainEnd trusted;
	HeadState	state;

	log_end(&log);
	state = read_head(key, &head);
	audit_shm_head(q, extension, &shm);
	trusted = furthest(&head, &shm);

	if (trusted.known && trusted.seq >= log.seq)
	{
		*chain = trusted;
		if (trusted.seq > log.seq)
			ereport(WARNING,
					(errmsg("access log %s missing from privacy.access_log_batches",
							entries_are(log.seq + 1, trusted.seq)),
					 errdetail("The head of the log says it ends at entry " INT64_FORMAT "; the writer goes on from there, so the gap stays visible.",
							   trusted.seq),
					 errhint("Run SELECT * FROM privacy.verify_access_log() to see where the chain breaks.")));
		return;
	}
	*chain = log;
	chain->broken_at = trusted.known ? trusted.broken_at : 0;
	if (state != HEAD_NO_TABLE && log.seq > 0)
	{
		chain->broken_at = first_break(chain->broken_at, log.seq + 1);
		ereport(WARNING,
				(errmsg("the head of the access log is missing, fails authentication or is older than the log"),
				 errdetail("Entries after " INT64_FORMAT " may have been cut off. The writer goes on from entry " INT64_FORMAT " and records the break in the head, where privacy.verify_access_log() reports it.",
						   log.seq, log.seq + 1),
				 errhint("Run SELECT * FROM privacy.verify_access_log() to see where the chain breaks.")));
	}
}

/*
 * Write the head (the writer, in the transaction of its batches; SPI
 * connected).  Nothing to do in a schema from before the head.
 */
void
audit_store_head(const unsigned char *key, const AuditChainEnd *end)
{
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	Oid			argtypes[4] = {INT8OID, BYTEAOID, INT8OID, BYTEAOID};
	unsigned char seal[LOGCHAIN_HEAD_SEAL_BYTES];
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (!OidIsValid(relid_of("access_log_head")))
		return;
	if (logchain_head_seal(seal, key, (uint64) end->seq, end->mac, (uint64) end->broken_at) != 0)
		elog(ERROR, "could not seal the head of the access log");
	values[0] = Int64GetDatum(end->seq);
	values[1] = audit_bytea_datum(end->mac, LOGCHAIN_MAC_BYTES);
	values[2] = Int64GetDatum(end->broken_at);
	nulls[2] = end->broken_at == 0 ? 'n' : ' ';
	values[3] = audit_bytea_datum(seal, LOGCHAIN_HEAD_SEAL_BYTES);
	if (update_plan == NULL)
	{
		update_plan = SPI_prepare("UPDATE " PRIVACY_SCHEMA ".access_log_head"
								  "   SET last_seq = $1, mac = $2, broken_at = $3, seal = $4", 4, argtypes);
		insert_plan = SPI_prepare("INSERT INTO " PRIVACY_SCHEMA ".access_log_head (last_seq, mac, broken_at, seal)"
								  " VALUES ($1, $2, $3, $4)", 4, argtypes);
		if (update_plan == NULL || insert_plan == NULL)
			elog(ERROR, "could not prepare the writes of the access log's head");
		SPI_keepplan(update_plan);
		SPI_keepplan(insert_plan);
	}
	if (SPI_execute_plan(update_plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write the head of the access log");
	if (SPI_processed == 0 &&
		SPI_execute_plan(insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write the head of the access log");
}

/*
 * Verification, once the chain has checked out from log_start to last
 * (whose MAC is last_mac; last = log_start - 1 when no entry is left): does
 * the log end there?  Returns NULL, or the verdict with *bad_seq and
 * *detail.  SPI is connected, under the snapshot the chain was read with;
 * shm was read before that snapshot was taken.
 */
const char *
audit_check_end(const unsigned char *key, int64 log_start, int64 last,
				const unsigned char *last_mac, const AuditChainEnd *shm,
				int64 *bad_seq, char **detail)
{
	AuditChainEnd head;
	HeadState	state = read_head(key, &head);
	int64		broken = first_break(head.broken_at, shm->known ? shm->broken_at : 0);

	*bad_seq = last + 1;
	if (broken >= log_start && broken > 0)
	{
		*bad_seq = broken;
		*detail = psprintf("the head of the access log was lost before entry " INT64_FORMAT " was written (deleted, forged, or put back from an older copy): entries written before it may have been cut off",
						   broken);
		return "missing";
	}
	if (state == HEAD_ABSENT && last > 0)
	{
		*detail = psprintf("the head of the access log is gone (privacy.access_log_head is empty): entries after " INT64_FORMAT " may have been cut off",
						   last);
		return "missing";
	}
	if (state == HEAD_FORGED)
	{
		*detail = psprintf("the head of the access log fails authentication: entries after " INT64_FORMAT " may have been cut off",
						   last);
		return "altered";
	}
	if (state == HEAD_SEALED && head.seq > last)
	{
		*detail = psprintf("%s missing: the head of the log says it ends at entry " INT64_FORMAT,
						   entries_are(last + 1, head.seq), head.seq);
		return "missing";
	}
	if (state == HEAD_SEALED && head.seq < last)
	{
		*detail = psprintf("the head of the access log names entry " INT64_FORMAT " but the log goes on to entry " INT64_FORMAT ": the head was put back from an older copy, and entries after " INT64_FORMAT " may have been cut off",
						   head.seq, last, last);
		return "missing";
	}
	if (state == HEAD_SEALED && last > 0 && sodium_memcmp(head.mac, last_mac, LOGCHAIN_MAC_BYTES) != 0)
	{
		*bad_seq = last;
		*detail = psprintf("entry " INT64_FORMAT " is not the one the head of the log names: the end of the log was replaced",
						   last);
		return "altered";
	}
	if (shm->known && shm->seq > last)
	{
		*detail = psprintf("%s gone, written since the server started",
						   entries_are(last + 1, shm->seq));
		return "missing";
	}
	return NULL;
}

/*
 * privacy_internal.access_log_seal_head(): the update script from 0.2, whose
 * log had no head, seals one where the log ends now (the batches, or this
 * server's writer when it is further).  Anywhere else it would let whoever
 * cut the end of the log seal the cut, so it runs only in the extension's
 * own script.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_seal_head);
Datum
privacy_access_log_seal_head(PG_FUNCTION_ARGS)
{
	Oid			extension = get_extension_oid("privacy", true);
	CatalogUserState st;
	AuditChainEnd head;
	AuditChainEnd end;
	AuditChainEnd shm;
	Oid			batches = relid_of("access_log_batches");
	int			i;

	if (!creating_extension || !OidIsValid(extension) || CurrentExtensionObject != extension)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the head of the access log is sealed by its writer only"),
				 errdetail("privacy_internal.access_log_seal_head() runs in the extension's update script, for a log written before it had a head."),
				 errhint("Run SELECT * FROM privacy.verify_access_log() to check the log.")));
	if (!OidIsValid(batches))
		PG_RETURN_VOID();

	/* the writer's batches wait; read what it committed before */
	LockRelationOid(batches, ExclusiveLock);
	PushActiveSnapshot(GetLatestSnapshot());
	catalog_become_owner(&st);
	if (read_head(audit_chain_key_scratch, &head) == HEAD_ABSENT)
	{
		i = audit_my_queue();
		log_end(&end);
		audit_shm_head(i >= 0 ? &audit_shared->queues[i] : NULL, extension, &shm);
		end = furthest(&end, &shm);
		if (end.seq > 0)
		{
			keys_require_master_key();
			keys_access_log_key(audit_chain_key_scratch);
			audit_store_head(audit_chain_key_scratch, &end);
		}
	}
	sodium_memzero(audit_chain_key_scratch, LOGCHAIN_KEY_BYTES);
	catalog_restore_user(&st);
	PopActiveSnapshot();
	PG_RETURN_VOID();
}
