/*
 * audit_format.c — the access log's bytes: canonical entries, batch rows.
 *
 * An entry (a statement event, or one subject opened in it) has canonical
 * bytes: its fields in a fixed order, integers big-endian, strings as length
 * and bytes.  The queue carries a statement event in exactly this form, and
 * the writer MACs exactly these bytes (logchain.c) and stores them as they
 * are, so what verification checks is what the backend recorded.  The
 * writer packs the entries of a flush into rows of
 * privacy.access_log_batches; the set-returning functions here unpack them
 * for the views privacy.access_log and privacy.access_log_subjects.
 *
 * Everything here is a pure function of its bytes: the other audit_*.c
 * files use it, it uses none of them.
 */
#include "audit.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/primnodes.h"
#include "nodes/supportnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* ------------------------------------------------------------------------
 * Canonical bytes.  Integers big-endian; a string is its length (4 bytes,
 * 0xFFFFFFFF for NULL) and its bytes.  The queue carries statement events
 * in exactly this form; verify rebuilds it from the stored row.
 * ------------------------------------------------------------------------
 */
void
audit_put_u32(StringInfo buf, uint32 v)
{
	unsigned char b[4];

	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
	appendBinaryStringInfo(buf, (char *) b, 4);
}

void
audit_put_i64(StringInfo buf, int64 v)
{
	audit_put_u32(buf, (uint32) ((uint64) v >> 32));
	audit_put_u32(buf, (uint32) v);
}

void
audit_put_str(StringInfo buf, const char *s)
{
	if (s == NULL)
		audit_put_u32(buf, 0xFFFFFFFFu);
	else
	{
		size_t		len = strlen(s);

		audit_put_u32(buf, (uint32) len);
		appendBinaryStringInfo(buf, s, len);
	}
}

uint32
audit_get_u32(Reader *r)
{
	uint32		v;

	if (r->end - r->p < 4)
		audit_batch_corrupt();
	v = ((uint32) r->p[0] << 24) | ((uint32) r->p[1] << 16) | ((uint32) r->p[2] << 8) | r->p[3];
	r->p += 4;
	return v;
}

int64
audit_get_i64(Reader *r)
{
	uint64		hi = audit_get_u32(r);

	return (int64) ((hi << 32) | audit_get_u32(r));
}

/* A palloc'd copy, or NULL. */
char *
audit_get_str(Reader *r)
{
	uint32		len = audit_get_u32(r);
	char	   *s;

	if (len == 0xFFFFFFFFu)
		return NULL;
	if ((size_t) (r->end - r->p) < len)
		audit_batch_corrupt();
	s = palloc(len + 1);
	memcpy(s, r->p, len);
	s[len] = '\0';
	r->p += len;
	return s;
}

void
audit_canon_statement(StringInfo buf, const StatementEntry *e)
{
	int			i;

	appendStringInfoChar(buf, ENTRY_STATEMENT);
	audit_put_i64(buf, e->at);
	audit_put_str(buf, e->session_role);
	audit_put_str(buf, e->acting_role);
	audit_put_str(buf, e->application);
	audit_put_str(buf, e->client_addr);
	audit_put_u32(buf, (uint32) e->backend_pid);
	audit_put_str(buf, e->purpose);
	audit_put_str(buf, e->command);
	audit_put_u32(buf, e->relid);
	audit_put_str(buf, e->relation);
	audit_put_u32(buf, (uint32) e->ncolumns);
	for (i = 0; i < e->ncolumns; i++)
	{
		audit_put_str(buf, e->columns[i]);
		audit_put_str(buf, e->categories[i]);
	}
	audit_put_i64(buf, e->rows);
	audit_put_i64(buf, e->query_id);
	audit_put_u32(buf, (uint32) e->level);
	audit_put_str(buf, e->outcome);
	/* a denial only: entries written before denials were logged end here */
	if (e->reason != NULL)
	{
		audit_put_str(buf, e->reason);
		audit_put_str(buf, e->denied_category);
	}
}

void
audit_parse_statement(Reader *r, StatementEntry *e)
{
	int			i;

	if (r->p >= r->end || *r->p != ENTRY_STATEMENT)
		elog(ERROR, "access log record is not a statement event");
	r->p++;
	e->at = audit_get_i64(r);
	e->session_role = audit_get_str(r);
	e->acting_role = audit_get_str(r);
	e->application = audit_get_str(r);
	e->client_addr = audit_get_str(r);
	e->backend_pid = (int32) audit_get_u32(r);
	e->purpose = audit_get_str(r);
	e->command = audit_get_str(r);
	e->relid = audit_get_u32(r);
	e->relation = audit_get_str(r);
	e->ncolumns = (int) audit_get_u32(r);
	if (e->ncolumns < 0 || e->ncolumns > MaxHeapAttributeNumber)
		audit_batch_corrupt();
	e->columns = palloc(sizeof(char *) * (e->ncolumns + 1));
	e->categories = palloc(sizeof(char *) * (e->ncolumns + 1));
	for (i = 0; i < e->ncolumns; i++)
	{
		e->columns[i] = audit_get_str(r);
		e->categories[i] = audit_get_str(r);
	}
	e->rows = audit_get_i64(r);
	e->query_id = audit_get_i64(r);
	e->level = (int32) audit_get_u32(r);
	e->outcome = audit_get_str(r);
	e->reason = NULL;
	e->denied_category = NULL;
	if (r->p < r->end)
	{
		e->reason = audit_get_str(r);
		e->denied_category = audit_get_str(r);
	}
}

void
audit_canon_subject(StringInfo buf, int64 event, const unsigned char *hash,
					const char *category, int64 opened)
{
	appendStringInfoChar(buf, ENTRY_SUBJECT);
	audit_put_i64(buf, event);
	appendBinaryStringInfo(buf, (const char *) hash, PRIVACY_SUBJECT_HASH_BYTES);
	audit_put_str(buf, category);
	audit_put_i64(buf, opened);
}

/* A string field without copying it. */
static void
skip_str(Reader *r)
{
	uint32		len = audit_get_u32(r);

	if (len == 0xFFFFFFFFu)
		return;
	if ((size_t) (r->end - r->p) < len)
		audit_batch_corrupt();
	r->p += len;
}

/* A string of canonical bytes, as a pointer and length (NULL: len -1). */
static const char *
peek_str(Reader *r, int *len)
{
	uint32		l = audit_get_u32(r);
	const char *p;

	if (l == 0xFFFFFFFFu)
	{
		*len = -1;
		return NULL;
	}
	if ((size_t) (r->end - r->p) < l)
		audit_batch_corrupt();
	p = (const char *) r->p;
	r->p += l;
	*len = (int) l;
	return p;
}

void
audit_statement_head(const unsigned char *bytes, size_t len, StatementHead *h)
{
	Reader		r;

	r.p = bytes + 1;
	r.end = bytes + len;
	h->at = (TimestampTz) audit_get_i64(&r);
	skip_str(&r);				/* session role */
	h->acting_role = peek_str(&r, &h->acting_role_len);
	skip_str(&r);				/* application */
	skip_str(&r);				/* client address */
	h->pid = (int32) audit_get_u32(&r);
	h->purpose = peek_str(&r, &h->purpose_len);
}

/* Is this statement event a denial?  Only a denial's bytes go on after its outcome. */
bool
audit_statement_is_denial(const unsigned char *bytes, size_t len)
{
	Reader		r;
	uint32		n;
	int			i;

	r.p = bytes + 1;
	r.end = bytes + len;
	(void) audit_get_i64(&r);	/* at */
	for (i = 0; i < 4; i++)
		skip_str(&r);			/* roles, application, client address */
	(void) audit_get_u32(&r);	/* pid */
	skip_str(&r);				/* purpose */
	skip_str(&r);				/* command */
	(void) audit_get_u32(&r);	/* relid */
	skip_str(&r);				/* relation */
	n = audit_get_u32(&r);
	if (n > MaxHeapAttributeNumber)
		audit_batch_corrupt();
	while (n-- > 0)
	{
		skip_str(&r);			/* column */
		skip_str(&r);			/* category */
	}
	(void) audit_get_i64(&r);	/* rows */
	(void) audit_get_i64(&r);	/* query id */
	(void) audit_get_u32(&r);	/* level */
	skip_str(&r);				/* outcome */
	return r.p < r.end;
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

/* The next packed entry: 1, 0 at the end, -1 when the bytes are malformed. */
int
audit_unpack_next(Reader *r, LogchainEntry *e)
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
int64
audit_subject_key(const unsigned char *hash)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | hash[i];
	return (int64) v;
}

/* (exported: the trail's reader in audit_sql.c reads batch rows too) */
void
audit_batch_corrupt(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("an access log batch is malformed"),
			 errdetail("A row of privacy.access_log_batches does not hold well-formed entries."),
			 errhint("Run SELECT * FROM privacy.verify_access_log() to see where the log was changed.")));
}

/* The subject keys of a batch, sorted with the comparison inlined. */
#define ST_SORT audit_sort_int64
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE extern
#define ST_DEFINE
#include "lib/sort_template.h"

static Datum
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n + 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum
audit_bytea_datum(const unsigned char *b, size_t len)
{
	bytea	   *v = palloc(VARHDRSZ + len);

	SET_VARSIZE(v, VARHDRSZ + len);
	memcpy(VARDATA(v), b, len);
	return PointerGetDatum(v);
}

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
 * privacy_internal.access_log_statements(entries, only_seq): the statement events
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
	while ((rc = audit_unpack_next(&r, &e)) > 0)
	{
		Datum		values[20];
		bool		nulls[20];
		StatementEntry s;
		Reader		er;

		if (e.len == 0 || e.bytes[0] != ENTRY_STATEMENT)
			continue;
		if (only && (int64) e.seq != want)
			continue;
		old = MemoryContextSwitchTo(tmp);
		er.p = e.bytes;
		er.end = e.bytes + e.len;
		audit_parse_statement(&er, &s);
		if (er.p != er.end)
			audit_batch_corrupt();
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
		NTEXT(17, s.reason);
		NTEXT(18, s.denied_category);
#undef NTEXT
		values[19] = audit_bytea_datum(e.mac, LOGCHAIN_MAC_BYTES);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(tmp);
		if (only)
			break;
	}
	MemoryContextDelete(tmp);
	if (rc < 0)
		audit_batch_corrupt();
	return (Datum) 0;
}

/*
 * privacy_internal.access_log_subject_entries(entries, subject_hash): the subject
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
	while ((rc = audit_unpack_next(&r, &e)) > 0)
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
		event = audit_get_i64(&er);
		if (er.end - er.p < PRIVACY_SUBJECT_HASH_BYTES)
			audit_batch_corrupt();
		hash = er.p;
		er.p += PRIVACY_SUBJECT_HASH_BYTES;
		if (want != NULL && memcmp(hash, VARDATA_ANY(want), PRIVACY_SUBJECT_HASH_BYTES) != 0)
			continue;
		category = audit_get_str(&er);
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum((int64) e.seq);
		values[1] = Int64GetDatum(event);
		values[2] = audit_bytea_datum(hash, PRIVACY_SUBJECT_HASH_BYTES);
		values[3] = category ? CStringGetTextDatum(category) : (Datum) 0;
		nulls[3] = category == NULL;
		values[4] = Int64GetDatum(audit_get_i64(&er));
		values[5] = audit_bytea_datum(e.mac, LOGCHAIN_MAC_BYTES);
		if (er.p != er.end)
			audit_batch_corrupt();
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (rc < 0)
		audit_batch_corrupt();
	return (Datum) 0;
}

/* privacy_internal.access_log_subject_key(subject_hash) → bigint */
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
	PG_RETURN_INT64(audit_subject_key((unsigned char *) VARDATA_ANY(h)));
}

/*
 * privacy_internal.access_log_rows(internal): the planner support of
 * access_log_statements and access_log_subject_entries.  Their declared
 * ROWS is a whole batch row's worth; given a seq or a subject hash (any
 * argument but a NULL constant, a join's outer column included) they return
 * about one row, and saying so keeps a subject's trail, which looks up one
 * statement per entry, from being costed as a product of whole batches.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_rows);
Datum
privacy_access_log_rows(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestRows *req;
	List	   *args;
	Node	   *filter;

	if (!IsA(rawreq, SupportRequestRows))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestRows *) rawreq;
	if (req->node == NULL || !IsA(req->node, FuncExpr))
		PG_RETURN_POINTER(NULL);
	args = ((FuncExpr *) req->node)->args;
	if (list_length(args) < 2)
		PG_RETURN_POINTER(NULL);
	filter = (Node *) lsecond(args);
	if (IsA(filter, Const) && ((Const *) filter)->constisnull)
		PG_RETURN_POINTER(NULL);
	req->rows = 1;
	PG_RETURN_POINTER(req);
}

/*
 * Where each entry of a batch row starts (access_log_batches.offsets): its
 * byte offset in entries, 4 bytes big-endian per entry, in seq order.  The
 * writer stores them with the row; both columns are stored uncompressed,
 * so that one entry is read as a slice (a TOAST chunk or two) instead of
 * the whole row decompressed and unpacked.
 */
void
audit_put_offset(StringInfo offsets, uint32 off)
{
	unsigned char b[4];

	b[0] = off >> 24;
	b[1] = off >> 16;
	b[2] = off >> 8;
	b[3] = off;
	appendBinaryStringInfo(offsets, (const char *) b, 4);
}

static uint32
get_offset(const unsigned char *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

/*
 * privacy_internal.access_log_offsets(entries) → bytea: the offsets of a
 * batch row's entries, for rows written before the writer stored them
 * (privacy--0.2--0.3.sql).
 */
PG_FUNCTION_INFO_V1(privacy_access_log_offsets);
Datum
privacy_access_log_offsets(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	Reader		r;
	LogchainEntry e;
	StringInfoData out;
	const unsigned char *base;
	int			rc;

	r.p = base = (unsigned char *) VARDATA_ANY(b);
	r.end = r.p + VARSIZE_ANY_EXHDR(b);
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ);
	for (;;)
	{
		uint32		off = (uint32) (r.p - base);

		if ((rc = audit_unpack_next(&r, &e)) <= 0)
			break;
		audit_put_offset(&out, off);
	}
	if (rc < 0)
		audit_batch_corrupt();
	SET_VARSIZE(out.data, out.len);
	PG_RETURN_BYTEA_P((bytea *) out.data);
}

/*
 * Where entries i to j of a batch row start (offsets[k - i] for entry k),
 * and where entry j ends (offsets[j - i + 1]), read as one slice of the
 * row's offsets column: false when the row has no entry i.  j is cut to the
 * row's last entry; *last says which entry that is.
 */
bool
audit_batch_offsets(Datum entries, Datum offsets, int64 i, int64 j, uint32 *out, int64 *last)
{
	Size		total = toast_raw_datum_size(entries) - VARHDRSZ;
	Size		noffsets = (toast_raw_datum_size(offsets) - VARHDRSZ) / 4;
	bytea	   *o;
	int64		k;

	if (i < 0 || (uint64) i >= noffsets || j < i)
		return false;
	if ((uint64) j >= noffsets)
		j = (int64) noffsets - 1;
	o = (bytea *) pg_detoast_datum_slice((struct varlena *) DatumGetPointer(offsets),
										 (int32) (i * 4), (int32) ((j - i + 2) * 4));
	if (VARSIZE(o) - VARHDRSZ < (Size) (j - i + 1) * 4)
		audit_batch_corrupt();
	for (k = 0; k <= j - i; k++)
		out[k] = get_offset((unsigned char *) VARDATA(o) + k * 4);
	out[j - i + 1] = VARSIZE(o) - VARHDRSZ >= (Size) (j - i + 2) * 4 ?
		get_offset((unsigned char *) VARDATA(o) + (j - i + 1) * 4) : (uint32) total;
	for (k = 0; k <= j - i; k++)
		if (out[k] > out[k + 1])
			audit_batch_corrupt();
	if (out[j - i + 1] > total)
		audit_batch_corrupt();
	pfree(o);
	*last = j;
	return true;
}

/* Bytes start to end of a batch row's entries, read as one slice. */
bytea *
audit_batch_bytes(Datum entries, uint32 start, uint32 end)
{
	return (bytea *) pg_detoast_datum_slice((struct varlena *) DatumGetPointer(entries),
											(int32) start, (int32) (end - start));
}

/*
 * privacy_internal.access_log_entry(entries, offsets, i) → bytea: entry i
 * (its seq minus the row's first_seq) of a batch row, packed alone, for
 * the unpacking functions above; read as two slices of the row's columns,
 * so that it costs the same in a row of eight entries or of eight
 * thousand.  Empty when the row has no entry i.
 */
PG_FUNCTION_INFO_V1(privacy_access_log_entry);
Datum
privacy_access_log_entry(PG_FUNCTION_ARGS)
{
	uint32		off[2];
	int64		last;

	if (!audit_batch_offsets(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_INT64(2), PG_GETARG_INT64(2),
							 off, &last))
	{
		bytea	   *empty = palloc(VARHDRSZ);

		SET_VARSIZE(empty, VARHDRSZ);
		PG_RETURN_BYTEA_P(empty);
	}
	PG_RETURN_BYTEA_P(audit_batch_bytes(PG_GETARG_DATUM(0), off[0], off[1]));
}
