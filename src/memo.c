/*
 * memo.c — what purge and erasure derive from the catalogs, kept for the
 * session.
 *
 * Every erasure and every purge run used to walk the foreign-key graph
 * again (privacy_internal.fk_reach, fk_order, the deferred constraints:
 * pg_depend, pg_constraint and pg_inherits read and planned at every call),
 * though the graph changes only with DDL.  privacy_internal.memo_put(name,
 * rels, value) keeps a jsonb value under a name; memo_get(name) returns it
 * while it is still true: until the catalog generation moves (the
 * extension's own tables, roles), until a relation it was derived from
 * (rels) gets a relcache invalidation (a constraint, a partition, a child,
 * a trigger added, changed or dropped on it: PostgreSQL sends one for the
 * referencing and the referenced table), or all relations do (an
 * invalidation without a relation, as after the queue overflowed).  A
 * value computed while any relation was invalidated is not kept: it may
 * describe the catalog from before the change; nor is one computed under
 * a transaction snapshot (REPEATABLE READ, SERIALIZABLE), which may be
 * older than the invalidations already seen.
 *
 * Only the extension's SECURITY DEFINER functions call these (no grant to
 * anyone), and each backend has its own memo.
 */
#include "privacy.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#define MEMO_ENTRIES 8

typedef struct MemoEntry
{
	char		name[NAMEDATALEN];	/* "" : free */
	bool		valid;
	uint64		generation;
	int			nrels;
	Oid		   *rels;
	Jsonb	   *value;
	MemoryContext cxt;
} MemoEntry;

static MemoEntry memo[MEMO_ENTRIES];
static uint64 memo_invalidations = 0;	/* relcache invalidations seen */
static uint64 memo_missed_at = 0;	/* ... when memo_get last found nothing */
static int	memo_victim = 0;

static void
memo_relcache(Datum arg, Oid relid)
{
	int			i;
	int			j;

	memo_invalidations++;
	for (i = 0; i < MEMO_ENTRIES; i++)
	{
		if (!memo[i].valid)
			continue;
		if (!OidIsValid(relid))
			memo[i].valid = false;
		else
			for (j = 0; j < memo[i].nrels; j++)
				if (memo[i].rels[j] == relid)
				{
					memo[i].valid = false;
					break;
				}
	}
}

void
memo_init(void)
{
	catalog_on_relcache(memo_relcache);
}

static MemoEntry *
memo_find(const char *name)
{
	int			i;

	for (i = 0; i < MEMO_ENTRIES; i++)
		if (strcmp(memo[i].name, name) == 0)
			return &memo[i];
	return NULL;
}

/* privacy_internal.memo_get(name text) → jsonb: the value, or NULL */
PG_FUNCTION_INFO_V1(privacy_memo_get);
Datum
privacy_memo_get(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoEntry  *e = memo_find(name);

	if (e != NULL && e->valid && e->generation == catalog_generation)
	{
		Jsonb	   *copy = palloc(VARSIZE(e->value));

		memcpy(copy, e->value, VARSIZE(e->value));
		PG_RETURN_JSONB_P(copy);
	}
	memo_missed_at = memo_invalidations;
	PG_RETURN_NULL();
}

/*
 * privacy_internal.memo_put(name text, rels oid[], value jsonb) → jsonb:
 * keep value (returned as it is), derived from the relations rels.
 */
PG_FUNCTION_INFO_V1(privacy_memo_put);
Datum
privacy_memo_put(PG_FUNCTION_ARGS)
{
	char	   *name;
	ArrayType  *rels;
	Jsonb	   *value;
	MemoEntry  *e;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	MemoryContext old;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	value = PG_GETARG_JSONB_P(2);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("memo name \"%s\" is too long", name)));
	/* a relation changed since the caller found nothing: maybe stale */
	if (memo_invalidations != memo_missed_at)
		PG_RETURN_JSONB_P(value);
	/*
	 * Under REPEATABLE READ or SERIALIZABLE the caller read the catalogs
	 * with the transaction's snapshot, which may predate changes whose
	 * invalidations were already seen (a table protected meanwhile): true
	 * for this transaction only, never kept for the session's next ones.
	 */
	if (IsolationUsesXactSnapshot())
		PG_RETURN_JSONB_P(value);
	e = memo_find(name);
	if (e == NULL)
		e = memo_find("");
	if (e == NULL)
	{
		/* full: the next entry in turn goes (it is computed again if asked) */
		e = &memo[memo_victim];
		memo_victim = (memo_victim + 1) % MEMO_ENTRIES;
	}
	if (e->cxt == NULL)
		e->cxt = AllocSetContextCreate(TopMemoryContext, "privacy memo", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(e->cxt);
	e->valid = false;
	old = MemoryContextSwitchTo(e->cxt);
	n = 0;
	elems = NULL;
	nulls = NULL;
	if (!PG_ARGISNULL(1))
	{
		rels = PG_GETARG_ARRAYTYPE_P(1);
		deconstruct_array(rels, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &nulls, &n);
	}
	e->rels = palloc(sizeof(Oid) * (n + 1));
	e->nrels = 0;
	for (i = 0; i < n; i++)
		if (!nulls[i])
			e->rels[e->nrels++] = DatumGetObjectId(elems[i]);
	e->value = palloc(VARSIZE(value));
	memcpy(e->value, value, VARSIZE(value));
	MemoryContextSwitchTo(old);
	strlcpy(e->name, name, NAMEDATALEN);
	e->generation = catalog_generation;
	e->valid = true;
	PG_RETURN_JSONB_P(value);
}
