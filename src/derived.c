/*
 * derived.c — what PostgreSQL derives from an encrypted column on its own:
 * index order, index expressions, generated columns, extended statistics.
 *
 * The gate (types.c) judges every value a statement opens or compares.
 * Some things are derived from a column without a statement asking for
 * them, in whatever session happens to write or analyze the table:
 *   - a B-tree index on a searchable column is in search-tag order, equal
 *     values side by side; a scan that walks it returns rows in that order
 *     without comparing anything, so the gate is never asked.  An index
 *     scan of an index with an encrypted key column therefore asks the gate
 *     for the column's category before the first row is read (the executor
 *     hook below), as a comparison of its values would;
 *   - an index expression or predicate, a stored generated column and an
 *     extended statistics object are the table owner's code, evaluated in
 *     the session of whoever writes or analyzes the table, as that role,
 *     with its purpose: an expression over an encrypted column would keep
 *     plaintext (or what it computes from it: a hash, an order, a count of
 *     distinct values) outside the column, for the owner to read with no
 *     purpose.  They are refused when they are defined
 *     (privacy_internal.refuse_derived, called by an event trigger).
 * What stays open: code that the owner runs in a writer's session and that
 * reads values itself (triggers, CHECK constraints, operator classes,
 * functions that read tables); the DBA guide's threat model says so.
 *
 * Arrows: derived.c asks types.c (which types are encrypted) and consent.c
 * (the gate's verdict); nothing calls it but _PG_init and the event trigger.
 */
#include "privacy.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_statistic_ext.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "typmod.h"

/* ------------------------------------------------------------------------
 * Index scans walk an encrypted column's order: they ask the gate.
 * ------------------------------------------------------------------------
 */
static ExecutorStart_hook_type prev_executor_start = NULL;

/*
 * Reading an index of an encrypted column in its order is comparing its
 * values: the dump/restore roles and the extension's own maintenance may,
 * everyone else needs a purpose allowed the column's category.
 */
static void
require_gate_for_index(Relation index)
{
	TupleDesc	desc = RelationGetDescr(index);
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *category;

		/* built-in types first: no catalog lookup for most indexes */
		if (att->atttypid < FirstNormalObjectId ||
			!OidIsValid(get_namespace_oid(PRIVACY_SCHEMA, true)) ||
			!types_is_encrypted(att->atttypid))
			continue;
		if (types_ciphertext_io() || catalog_maintenance_depth > 0)
			return;
		category = att->atttypmod < 0 ? NULL : catalog_category_name(TYPMOD_CATEGORY(att->atttypmod));
		consent_require_purpose(category != NULL ? category : "unclassified");
	}
}

static bool
index_scans_walker(PlanState *ps, void *context)
{
	if (ps == NULL)
		return false;
	if (IsA(ps, IndexScanState) && ((IndexScanState *) ps)->iss_RelationDesc != NULL)
		require_gate_for_index(((IndexScanState *) ps)->iss_RelationDesc);
	else if (IsA(ps, IndexOnlyScanState) && ((IndexOnlyScanState *) ps)->ioss_RelationDesc != NULL)
		require_gate_for_index(((IndexOnlyScanState *) ps)->ioss_RelationDesc);
	return planstate_tree_walker(ps, index_scans_walker, context);
}

static void
derived_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	/* before any row is read; the scans opened their indexes by now */
	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY) && queryDesc->planstate != NULL &&
		IsTransactionState())
		index_scans_walker(queryDesc->planstate, NULL);
}

void
derived_install_hooks(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = derived_executor_start;
}

/* ------------------------------------------------------------------------
 * Expressions the owner defines over an encrypted column are refused.
 * ------------------------------------------------------------------------
 */
static void
refuse(Relation rel, const char *what, const char *name, const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s \"%s\" of %s is computed from encrypted column \"%s\"",
					what, name, RelationGetRelationName(rel), column),
			 errdetail("Index expressions and predicates, generated columns and extended statistics are computed in the session of whoever writes or analyzes the table, with that session's purpose, and keep what they compute outside the encrypted column."),
			 errhint("Index the encrypted column itself (equality search needs it classified as searchable), and compute anything else from it in the application, under its purpose.")));
}

static const char *
first_encrypted_column(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && types_holds_encrypted(att->atttypid))
			return NameStr(att->attname);
	}
	return NULL;
}

/* The first encrypted column an expression reads (a whole row counts). */
static const char *
encrypted_column_in(Relation rel, Node *expr)
{
	Bitmapset  *attrs = NULL;
	int			k = -1;

	if (expr == NULL)
		return NULL;
	pull_varattnos(expr, 1, &attrs);
	while ((k = bms_next_member(attrs, k)) >= 0)
	{
		AttrNumber	attno = k + FirstLowInvalidHeapAttributeNumber;

		if (attno == InvalidAttrNumber)
		{
			const char *column = first_encrypted_column(rel);	/* the whole row */

			if (column != NULL)
				return column;
		}
		else if (attno > 0)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attno - 1);

			if (!att->attisdropped && types_holds_encrypted(att->atttypid))
				return NameStr(att->attname);
		}
	}
	return NULL;
}

static void
check_indexes(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		const char *column;

		column = encrypted_column_in(rel, (Node *) RelationGetIndexExpressions(index));
		if (column == NULL)
			column = encrypted_column_in(rel, (Node *) RelationGetIndexPredicate(index));
		if (column != NULL)
			refuse(rel, "index", RelationGetRelationName(index), column);
		index_close(index, AccessShareLock);
	}
}

static void
check_generated(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			i;

	if (constr == NULL || !constr->has_generated_stored)
		return;
	for (i = 0; i < constr->num_defval; i++)
	{
		AttrDefault *def = &constr->defval[i];
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), def->adnum - 1);
		const char *column;

		if (att->attgenerated != ATTRIBUTE_GENERATED_STORED)
			continue;
		column = encrypted_column_in(rel, stringToNode(def->adbin));
		if (column != NULL)
			refuse(rel, "generated column", NameStr(att->attname), column);
	}
}

static void
check_statistics(Relation rel)
{
	List	   *stats = RelationGetStatExtList(rel);
	ListCell   *lc;

	foreach(lc, stats)
	{
		HeapTuple	tup = SearchSysCache1(STATEXTOID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_statistic_ext form;
		const char *column = NULL;
		Datum		exprs;
		bool		isnull;
		int			i;

		if (!HeapTupleIsValid(tup))
			continue;
		form = (Form_pg_statistic_ext) GETSTRUCT(tup);
		for (i = 0; i < form->stxkeys.dim1 && column == NULL; i++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), form->stxkeys.values[i] - 1);

			if (types_holds_encrypted(att->atttypid))
				column = NameStr(att->attname);
		}
		exprs = SysCacheGetAttr(STATEXTOID, tup, Anum_pg_statistic_ext_stxexprs, &isnull);
		if (column == NULL && !isnull)
			column = encrypted_column_in(rel, stringToNode(TextDatumGetCString(exprs)));
		if (column != NULL)
			refuse(rel, "statistics object", NameStr(form->stxname), column);
		ReleaseSysCache(tup);
	}
}

/*
 * Called by the event trigger at the end of each CREATE INDEX, CREATE
 * STATISTICS, CREATE TABLE and ALTER TABLE with the tables they touched:
 * the whole table is checked, whichever command added what.
 */
PG_FUNCTION_INFO_V1(privacy_refuse_derived);
Datum
privacy_refuse_derived(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel = try_relation_open(relid, AccessShareLock);

	if (rel == NULL)
		PG_RETURN_VOID();
	check_indexes(rel);
	check_generated(rel);
	check_statistics(rel);
	relation_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}
