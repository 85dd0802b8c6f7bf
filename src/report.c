/*
 * report.c — the subject report: one subject's rows, decrypted, and the
 * record of that access.
 *
 * privacy.subject_report() (PL/pgSQL, SECURITY DEFINER, in the install
 * script) assembles what the extension knows about a subject: consents,
 * access log, retention, holds, erasures, requests.  The subject's rows in
 * each protected table come from privacy_internal.report_table(), here, because two
 * things must happen around reading them that SQL cannot do safely:
 *
 * - Decryption under the built-in purpose "subject_access".  The purpose
 *   check judges the role outside any SECURITY DEFINER function (a definer
 *   never lends its purposes), so the caller of the report, who holds no
 *   such purpose, could not open the values.  report_in_progress, set only
 *   here and only while this function runs its own query, tells
 *   consent_purpose_verdict() that "subject_access" is allowed every
 *   category, including categories created later.  It is a C flag rather
 *   than a setting, so no SQL can turn it on.
 *
 * - Logging.  The access log's hooks skip statements run inside the
 *   extension's own SECURITY DEFINER functions, so this function records the
 *   access itself (audit_record_report): one event per table, and the
 *   number of encrypted values it opened per category, under the subject's
 *   keyed hash.
 */
#include "privacy.h"

#include "envelope.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

bool		report_in_progress = false;

/* The encrypted columns of one category, as num_nonnulls() arguments. */
typedef struct ReportCategory
{
	const char *name;
	StringInfoData columns;
} ReportCategory;

/* What uuid's output function prints: only that text names a uuid subject. */
static bool
canonical_uuid(const char *s, size_t len)
{
	size_t		i;

	if (len != 36)
		return false;
	for (i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/*
 * The rows' order: the primary key if there is one (a partitioned table's
 * is its partitioned index), else the physical order.
 */
static void
append_order(StringInfo q, Relation rel)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tup = OidIsValid(pk) ? SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk)) : NULL;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_index idx = (Form_pg_index) GETSTRUCT(tup);
		int			i;

		for (i = 0; i < idx->indnkeyatts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), idx->indkey.values[i] - 1);

			appendStringInfo(q, "%st.%s", i == 0 ? "" : ", ", quote_identifier(NameStr(att->attname)));
		}
		ReleaseSysCache(tup);
	}
	else
		appendStringInfoString(q, "t.tableoid, t.ctid");
}

/*
 * Whether to_jsonb may convert a value of this type itself.  For a type
 * outside PostgreSQL's core it looks for a cast to json, which whoever owns
 * the type can define, and the report runs as the extension's owner: such
 * values are rendered by their output function instead (a JSON string),
 * which only a superuser can write.  The extension's own types are core
 * enough: they have no cast to json.
 */
static bool
type_converts_itself(Oid typid, Oid privacy_nsp)
{
	Oid			elem;

	typid = getBaseType(typid);
	elem = get_element_type(typid);
	if (OidIsValid(elem))
		typid = getBaseType(elem);
	if (typid < FirstNormalObjectId)
		return true;
	{
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
		bool		ours = false;

		if (HeapTupleIsValid(tup))
		{
			ours = ((Form_pg_type) GETSTRUCT(tup))->typnamespace == privacy_nsp;
			ReleaseSysCache(tup);
		}
		return ours;
	}
}

/*
 * The only place report_in_progress is true: while the query that reads
 * the subject's rows runs, and never after it, however it ends.
 */
static void
run_report_query(Oid relid, const char *query, Oid *argtypes, Datum *values, const char *nulls)
{
	SPIPlanPtr	plan = catalog_kept_plan(relid, query, 2, argtypes);

	PG_TRY();
	{
		report_in_progress = true;
		if (SPI_execute_plan(plan, values, nulls, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "subject report query failed");
	}
	PG_FINALLY();
	{
		report_in_progress = false;
	}
	PG_END_TRY();
}

/*
 * privacy_internal.report_table(tbl regclass, subject_column name, subject text,
 *                       time_column name, keep interval) RETURNS jsonb
 *
 * The subject's rows of a protected table (and of its partitions or
 * children), as a JSON array of {"values": <the row>, "due_at": <when the
 * retention rule reaches it, or null>}, ordered by primary key.  Subjects
 * match as privacy.erase_subject() matches them.  Called only by
 * privacy.subject_report(), which declares the built-in purpose.
 */
PG_FUNCTION_INFO_V1(privacy_report_table);
Datum
privacy_report_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	const char *subject_column;
	text	   *subject_t;
	char	   *subject;
	size_t		subject_len;
	const char *time_column = PG_ARGISNULL(3) ? NULL : NameStr(*PG_GETARG_NAME(3));
	bool		with_due = time_column != NULL && !PG_ARGISNULL(4);
	Relation	rel;
	TupleDesc	desc;
	Oid			subject_type = InvalidOid;
	ReportCategory *cats;
	int			ncats = 0;
	StringInfoData q;
	StringInfoData values_list;	/* the row as the report shows it */
	Oid			nsp;			/* the extension's schema */
	int			i;
	bool		may_match = true;
	Datum		result = (Datum) 0;
	bool		result_null = true;
	int64		rows = 0;
	int64	   *opened;
	const char **names;
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table, subject column and subject must not be null")));
	relid = PG_GETARG_OID(0);
	subject_column = NameStr(*PG_GETARG_NAME(1));
	subject_t = PG_GETARG_TEXT_PP(2);
	subject = text_to_cstring(subject_t);
	subject_len = strlen(subject);

	nsp = catalog_namespace();

	rel = relation_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	cats = palloc0(sizeof(ReportCategory) * (desc->natts + 1));
	initStringInfo(&values_list);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *category;
		const char *col;
		int			c;
		int			kind;

		if (att->attisdropped)
			continue;
		col = quote_identifier(NameStr(att->attname));
		kind = types_encrypted_kind(att->atttypid);
		if (kind != 0 && kind != ENVELOPE_TEXT && kind != ENVELOPE_BYTEA)
			/*
			 * a date, a number, a JSON document as such, not as the string
			 * of its text form
			 */
			appendStringInfo(&values_list,
							 "%sCASE WHEN t.%s IS NULL THEN NULL"
							 " WHEN " PRIVACY_SCHEMA ".is_erased(t.%s) THEN '\"[erased]\"'::pg_catalog.jsonb"
							 " ELSE pg_catalog.to_jsonb(" PRIVACY_SCHEMA ".plaintext(t.%s)) END AS %s",
							 values_list.len > 0 ? ", " : "", col, col, col, col);
		else if (type_converts_itself(att->atttypid, nsp))
			appendStringInfo(&values_list, "%st.%s", values_list.len > 0 ? ", " : "", col);
		else
			appendStringInfo(&values_list,
							 "%sCASE WHEN t.%s IS NULL THEN NULL ELSE pg_catalog.format('%%s', t.%s) END AS %s",
							 values_list.len > 0 ? ", " : "", col, col, col);
		if (strcmp(NameStr(att->attname), subject_column) == 0)
			subject_type = att->atttypid;
		if (kind == 0)
			continue;
		category = att->atttypmod < 0 ? "unclassified" :
			catalog_category_name((uint16) (att->atttypmod & 0xFFFF));
		if (category == NULL)
			category = "unclassified";
		for (c = 0; c < ncats; c++)
			if (strcmp(cats[c].name, category) == 0)
				break;
		if (c == ncats)
		{
			cats[c].name = pstrdup(category);
			initStringInfo(&cats[c].columns);
			ncats++;
		}
		appendStringInfo(&cats[c].columns, "%st.%s", cats[c].columns.len > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
	}
	if (!OidIsValid(subject_type))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						subject_column, RelationGetRelationName(rel)),
				 errhint("privacy.protected_tables names the subject column of each protected table.")));

	initStringInfo(&q);
	appendStringInfoString(&q, "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
						   "'values', pg_catalog.to_jsonb(r), 'due_at', ");
	if (with_due)
		appendStringInfo(&q, "(t.%s OPERATOR(pg_catalog.+) $2)::pg_catalog.timestamptz",
						 quote_identifier(time_column));
	else
		appendStringInfoString(&q, "NULL::pg_catalog.timestamptz");
	appendStringInfoString(&q, ") ORDER BY ");
	append_order(&q, rel);
	appendStringInfoString(&q, "), pg_catalog.count(*)");
	for (i = 0; i < ncats; i++)
		appendStringInfo(&q, ", pg_catalog.sum(pg_catalog.num_nonnulls(%s))::pg_catalog.int8",
						 cats[i].columns.data);
	appendStringInfo(&q, " FROM %s t CROSS JOIN LATERAL (SELECT %s) r WHERE ",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 values_list.data);
	switch (subject_type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			appendStringInfo(&q, "t.%s OPERATOR(pg_catalog.=) " PRIVACY_INTERNAL_SCHEMA ".subject_int8($1)",
							 quote_identifier(subject_column));
			break;
		case UUIDOID:
			/* the same rows as t.col::text = $1, through an index */
			may_match = canonical_uuid(subject, subject_len);
			appendStringInfo(&q, "t.%s OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
							 quote_identifier(subject_column));
			break;
		default:
			appendStringInfo(&q, "t.%s::pg_catalog.text OPERATOR(pg_catalog.=) $1",
							 quote_identifier(subject_column));
			break;
	}
	relation_close(rel, NoLock);

	opened = palloc0(sizeof(int64) * (ncats + 1));
	if (may_match)
	{
		Oid			argtypes[2] = {TEXTOID, INTERVALOID};
		Datum		values[2];
		char		nulls[2] = {' ', with_due ? ' ' : 'n'};

		values[0] = PointerGetDatum(cstring_to_text(subject));
		values[1] = with_due ? PG_GETARG_DATUM(4) : (Datum) 0;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		run_report_query(relid, q.data, argtypes, values, nulls);
		if (SPI_processed == 1)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;

			d = SPI_getbinval(tup, td, 2, &isnull);
			rows = isnull ? 0 : DatumGetInt64(d);
			for (i = 0; i < ncats; i++)
			{
				d = SPI_getbinval(tup, td, 3 + i, &isnull);
				opened[i] = isnull ? 0 : DatumGetInt64(d);
			}
			d = SPI_getbinval(tup, td, 1, &isnull);
			if (!isnull)
			{
				result = SPI_datumTransfer(d, false, -1);
				result_null = false;
			}
		}
		SPI_finish();
	}

	names = palloc(sizeof(char *) * (ncats + 1));
	for (i = 0; i < ncats; i++)
		names[i] = cats[i].name;
	keys_subject_hash(subject, subject_len, hash);
	audit_record_report(relid, rows, hash, ncats, names, opened);

	if (result_null)
		result = DirectFunctionCall1(jsonb_in, CStringGetDatum("[]"));
	PG_RETURN_DATUM(result);
}
