/*
 * redact.c — keep personal data out of the server log.
 *
 * PostgreSQL writes statement text into the server log in several places:
 * log_statement ("statement: ..." and "execute <name>: ..."),
 * log_min_duration_statement ("duration: ... statement/parse/bind/execute
 * ..."), bind parameters ("parameters: $1 = '...'" DETAIL), and the
 * STATEMENT line log_min_error_statement adds to errors; errors add values
 * of their own ("Failing row contains (...)", "Key (email)=(...) already
 * exists", CONTEXT lines quoting SQL or COPY data).  A statement that
 * writes plaintext into an encrypted column, or names a subject, would put
 * that plaintext in the log (pgsodium #42, pgaudit #160 and #201).
 *
 * Two halves:
 *
 * - Judging.  A text is personal when (a) parse analysis or executor start
 *   found that a statement of it touches personal data (a protected table,
 *   a table with a classified column, a view over one, a value of an
 *   encrypted type, a call of a user's function whose body names one, and,
 *   in the statement the client sent, a relation or a function of schema
 *   privacy: the extension's own statements under it, its catalog reads
 *   and event triggers, do not count): its hash is
 *   remembered, with that of the top-level query string; or (b) its words name such a relation or type (or privacy.X
 *   for an object X of the schema): this is how log_statement lines are
 *   judged, since PostgreSQL logs them before parse analysis; or (c) the
 *   relations are not known for the current catalog generation (the first
 *   statement of a session): then it is judged personal, unless it is a
 *   lone SET, RESET or SHOW.
 *   Syntax errors are always treated as personal: their text was never
 *   analysed, and a mistyped table name would escape (b).  So is every
 *   error raised in a transaction after a statement of it was found
 *   personal: a deferred constraint is checked at COMMIT or SET
 *   CONSTRAINTS, which name no table, and quotes the row's values.
 *
 * - Redacting, in emit_log_hook.  For a personal text, constants in the
 *   statement text and parameters are replaced by "?" (redact_text.c);
 *   errors raised under it lose their DETAIL, and values quoted in
 *   data-exception and syntax error messages go; every message's CONTEXT
 *   lines are cut at the first quote.  Other messages may quote a
 *   statement in their own way, not as a copy of the one the client sent:
 *   pgaudit's AUDIT line is redacted by its CSV fields (the statement
 *   field, whatever statement it holds, and the parameters), any other
 *   line loses every string constant, also those of a statement it quotes
 *   in double quotes.  The client is not touched: the hook swaps the
 *   redacted parts into the error data, emits that copy to the server log
 *   only (EmitErrorReport again, with output_to_client off and
 *   debug_query_string pointing at the redacted text, which is also how
 *   the STATEMENT line and csvlog/jsonlog's query field get it), restores
 *   the error data and turns output_to_server off, so the original goes to
 *   the client only.
 *
 * The hook itself never reads the catalog: it can run in any state (an
 * aborted transaction, a failing one).  What it consults is loaded by the
 * analysis and executor hooks, in a live transaction, as the extension's
 * owner, once per catalog generation.
 */
#include "privacy.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "storage/proc.h"

#include "redact_text.h"

static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static emit_log_hook_type prev_emit_log = NULL;

/* ------------------------------------------------------------------------
 * What is personal, per catalog generation
 * ------------------------------------------------------------------------
 */
typedef struct NameKey
{
	char		name[NAMEDATALEN];
} NameKey;

static MemoryContext redact_cxt = NULL;
static HTAB *personal_relids = NULL;	/* protected, classified, views over them */
static HTAB *privacy_relids = NULL; /* relations of schema privacy */
static HTAB *personal_types = NULL; /* encrypted types, their arrays and domains */
static HTAB *personal_funcs = NULL; /* functions of schema privacy */
static HTAB *personal_names = NULL; /* names of the above outside the schema */
static HTAB *privacy_names = NULL;	/* names of objects of schema privacy */
static HTAB *judged_funcs = NULL;	/* users' functions judged by their body */
static HTAB *judged_views = NULL;	/* views judged not personal (JudgedView) */
static Oid	extension_nsps[2];	/* privacy, privacy_internal */
static uint64 personal_generation = 0;	/* 0: never loaded */
static bool judged_stale = false;	/* a function changed since they were judged */
static bool extension_here = false;
static bool loading = false;

/* A table keyed by Oid, for this generation (entries: the Oid and more) */
static HTAB *
oid_map(const char *name, Size entrysize)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = entrysize;
	ctl.hcxt = redact_cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static HTAB *
oid_set(const char *name)
{
	return oid_map(name, sizeof(Oid));
}

static HTAB *
name_set(const char *name)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(NameKey);
	ctl.hcxt = redact_cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

static void
add_name(HTAB *set, const char *name)
{
	NameKey		key;

	memset(&key, 0, sizeof(key));
	strlcpy(key.name, name, NAMEDATALEN);
	hash_search(set, &key, HASH_ENTER, NULL);
}

/*
 * Personal relations: protected tables, tables with a classified column,
 * relations of schema privacy (consents, erasures... name subjects), and
 * the views over any of them, through any depth of views.
 */
#define PERSONAL_QUERY \
	"WITH RECURSIVE personal(relid) AS (" \
	"  SELECT tbl::pg_catalog.oid FROM " PRIVACY_SCHEMA ".protected_tables" \
	"  UNION SELECT tbl::pg_catalog.oid FROM " PRIVACY_SCHEMA ".column_categories" \
	"  UNION SELECT c.oid FROM pg_catalog.pg_class c" \
	"         WHERE c.relnamespace = $1 AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog.\"char\"[])" \
	"  UNION SELECT r.ev_class FROM personal p" \
	"         JOIN pg_catalog.pg_depend d" \
	"           ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass" \
	"          AND d.refobjid = p.relid" \
	"          AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass" \
	"         JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid" \
	"), enc(oid) AS (" \
	"  SELECT t.oid FROM pg_catalog.pg_type t" \
	"   WHERE t.typnamespace = $1 AND t.typname IN ('encrypted_text', 'encrypted_bytea', 'encrypted_date', 'encrypted_timestamptz'," \
	"                  'encrypted_numeric', 'encrypted_integer', 'encrypted_bigint', 'encrypted_jsonb')" \
	") " \
	"SELECT 'r'::pg_catalog.text, c.oid, c.relname::pg_catalog.text, c.relnamespace = $1" \
	"  FROM personal p JOIN pg_catalog.pg_class c ON c.oid = p.relid " \
	"UNION ALL " \
	"SELECT 't', t.oid, t.typname::pg_catalog.text, t.typnamespace = $1 FROM pg_catalog.pg_type t" \
	" WHERE t.oid IN (SELECT oid FROM enc) OR t.typelem IN (SELECT oid FROM enc)" \
	"    OR t.typbasetype IN (SELECT oid FROM enc) " \
	"UNION ALL " \
	"SELECT 'f', p.oid, p.proname::pg_catalog.text, true FROM pg_catalog.pg_proc p" \
	" WHERE p.pronamespace = $1"

/*
 * Load the sets for the current catalog generation.  Only in a live
 * transaction (the callers check): it runs a query as the extension's
 * owner.
 */
static void
redact_load(void)
{
	Oid			nsp;
	uint64		generation;

	if (redact_cxt == NULL)
		redact_cxt = AllocSetContextCreate(TopMemoryContext, "privacy redaction",
										   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(redact_cxt);
	personal_relids = privacy_relids = personal_types = personal_funcs = NULL;
	personal_names = privacy_names = judged_funcs = judged_views = NULL;
	extension_here = false;

	nsp = get_namespace_oid(PRIVACY_SCHEMA, true);
	extension_nsps[0] = nsp;
	extension_nsps[1] = get_namespace_oid(PRIVACY_INTERNAL_SCHEMA, true);
	if (OidIsValid(nsp) &&
		OidIsValid(get_relname_relid("protected_tables", nsp)) &&
		OidIsValid(get_relname_relid("column_categories", nsp)) &&
		OidIsValid(get_extension_oid("privacy", true)))
	{
		catalog_accept_invalidations();
		extension_here = true;
	}
	generation = catalog_generation;

	personal_relids = oid_set("privacy personal relations");
	privacy_relids = oid_set("privacy schema relations");
	personal_types = oid_set("privacy personal types");
	personal_funcs = oid_set("privacy personal functions");
	personal_names = name_set("privacy personal names");
	privacy_names = name_set("privacy object names");

	if (extension_here)
	{
		CatalogUserState st;
		Oid			argtypes[1] = {OIDOID};
		Datum		values[1];
		uint64		i;
		bool		pushed;

		values[0] = ObjectIdGetDatum(nsp);
		loading = true;
		/* utility statements are analysed without a snapshot */
		pushed = !ActiveSnapshotSet();
		if (pushed)
			PushActiveSnapshot(GetTransactionSnapshot());
		PG_TRY();
		{
			catalog_become_owner(&st);
			if (SPI_execute_with_args(PERSONAL_QUERY, 1, argtypes, values, NULL,
									  true, 0) != SPI_OK_SELECT)
				elog(ERROR, "personal relation lookup failed");
			for (i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				char	   *kind = SPI_getvalue(tup, desc, 1);
				bool		isnull;
				Oid			oid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
				char	   *name = SPI_getvalue(tup, desc, 3);
				bool		in_schema = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));

				if (kind[0] == 'r')
					hash_search(in_schema ? privacy_relids : personal_relids, &oid,
								HASH_ENTER, NULL);
				else if (kind[0] == 't')
					hash_search(personal_types, &oid, HASH_ENTER, NULL);
				else
					hash_search(personal_funcs, &oid, HASH_ENTER, NULL);
				add_name(in_schema ? privacy_names : personal_names, name);
			}
			catalog_restore_user(&st);
		}
		PG_FINALLY();
		{
			loading = false;
		}
		PG_END_TRY();
		if (pushed)
			PopActiveSnapshot();
		for (i = 0; types_encrypted_type_name((int) i) != NULL; i++)
			add_name(personal_names, types_encrypted_type_name((int) i));
	}
	personal_generation = generation;
}

/* In a live transaction, make the sets current; false if they cannot be. */
static bool
redact_ensure_loaded(void)
{
	if (loading || !IsTransactionState() || IsAbortedTransactionBlockState() ||
		IsInParallelMode())
		return false;
	if (personal_generation != catalog_generation)
		redact_load();
	return true;
}

/* The sets as they are, for the log hook: valid for this generation? */
static bool
redact_sets_current(void)
{
	return personal_generation != 0 && personal_generation == catalog_generation &&
		personal_relids != NULL;
}

/* ------------------------------------------------------------------------
 * Texts found personal by analysis or execution
 *
 * A ring of hashes of query texts: the statement's own source text (which
 * is what "execute <name>: ..." and "duration: ... parse/bind ..." lines
 * print, long after the Parse message analysed it) and the top-level query
 * string (what "duration: ... statement: ..." lines and STATEMENT print).
 * A collision only redacts more.
 * ------------------------------------------------------------------------
 */
#define REMEMBERED_TEXTS 1024
static uint64 remembered[REMEMBERED_TEXTS];
static int	remembered_next = 0;

static uint64
text_hash(const char *text, size_t len)
{
	/* never 0, the value of an empty slot */
	return hash_bytes_extended((const unsigned char *) text, (int) Min(len, (size_t) PG_INT32_MAX),
							   UINT64CONST(0x7072697661637921)) | 1;
}

static bool
text_remembered(const char *text, size_t len)
{
	uint64		h = text_hash(text, len);
	int			i;

	for (i = 0; i < REMEMBERED_TEXTS; i++)
		if (remembered[i] == h)
			return true;
	return false;
}

/*
 * The transaction in which a statement touching personal data ran: errors
 * raised later in it lose their DETAIL too.  A deferred constraint is
 * checked at COMMIT or SET CONSTRAINTS, statements that name no table, and
 * its DETAIL quotes the opened value ("Key (email)=(...) already exists").
 */
static LocalTransactionId personal_lxid = InvalidLocalTransactionId;

static void
remember_text(const char *text)
{
	size_t		len;

	if (MyProc != NULL)
		personal_lxid = MyProc->lxid;
	if (text == NULL)
		return;
	len = strlen(text);
	if (text_remembered(text, len))
		return;
	remembered[remembered_next] = text_hash(text, len);
	remembered_next = (remembered_next + 1) % REMEMBERED_TEXTS;
}

/* ------------------------------------------------------------------------
 * Does a query touch personal data?
 * ------------------------------------------------------------------------
 */
#define PERSONAL_VIEW_DEPTH 16

typedef struct PersonalWalk
{
	int			view_depth;
	Oid			views[PERSONAL_VIEW_DEPTH];	/* the views being expanded */
	bool		top_level;		/* the statement the client sent */
	bool		cut;			/* a view was not expanded (too deep) */
} PersonalWalk;

/*
 * A view found not personal, per kind of walk (under the statement the
 * client sent, relations of schema privacy count): remembered so that a
 * view is expanded once per generation, not at every mention.  Forgotten
 * with the generation, after any function changed (a view may call it),
 * and wholly when any judged view changes
 * (redact_relcache: CREATE OR REPLACE VIEW sends the view's relcache
 * invalidation, and a view over it may have become personal).
 */
typedef struct JudgedView
{
	Oid			relid;
	bool		not_personal[2];	/* [top_level] */
} JudgedView;

static bool personal_walker(Node *node, void *context);

typedef struct NameJudge
{
	bool		after_privacy;	/* the previous name was "privacy" */
} NameJudge;

static int	judge_name(const char *name, size_t len, int quoted, void *arg);

typedef struct JudgedFunc
{
	Oid			funcid;
	bool		personal;
} JudgedFunc;

/*
 * A function of the user's whose body reaches personal data (a SQL or
 * PL/pgSQL function that reads or writes a protected table): a statement
 * that calls it is personal from its analysis on, before the body runs,
 * which is when pgaudit and auto_explain already log the call.  Judged by
 * the names its source mentions, as log_statement lines are (a SQL-standard
 * body, already analysed, by walking it), once per catalog generation and
 * again after any function changed (redact_proc_changed).
 * The extension's own functions do not count: its catalog reads and event
 * triggers call them under every statement.
 */
static bool
function_is_personal(Oid funcid, PersonalWalk *walk)
{
	JudgedFunc *jf;
	bool		found;
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		isnull;
	Datum		d;

	if (judged_funcs == NULL)
		judged_funcs = oid_map("privacy judged functions", sizeof(JudgedFunc));
	jf = hash_search(judged_funcs, &funcid, HASH_ENTER, &found);
	if (found)
		return jf->personal;
	jf->personal = false;		/* also while judging: a recursive function */
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang == INTERNALlanguageId || proc->prolang == ClanguageId ||
		proc->pronamespace == PG_CATALOG_NAMESPACE ||
		proc->pronamespace == extension_nsps[0] || proc->pronamespace == extension_nsps[1])
	{
		ReleaseSysCache(tup);
		return false;
	}
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
		found = personal_walker(stringToNode(TextDatumGetCString(d)), walk);
	else
	{
		char	   *src;
		NameJudge	judge = {false};

		d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
		src = isnull ? NULL : TextDatumGetCString(d);
		found = src != NULL &&
			redact_sql_names(src, strlen(src), REDACT_STRINGS_EITHER, judge_name, &judge) != 0;
	}
	ReleaseSysCache(tup);
	jf->personal = found;		/* (dynahash never moves an entry) */
	return found;
}

static bool
oid_in(HTAB *set, Oid oid)
{
	return set != NULL && hash_search(set, &oid, HASH_FIND, NULL) != NULL;
}

/*
 * A view the load did not know (created since): expand it once and learn
 * it, with its name, for the rest of the generation.
 */
static bool
view_is_personal(Oid relid, PersonalWalk *walk)
{
	Relation	rel;
	bool		found = false;

	JudgedView *jv;
	bool		cut;
	int			i;

	/*
	 * A view's stored query names the view itself (PostgreSQL 15 keeps its
	 * OLD and NEW entries in the range table): that mention is the view
	 * being judged, not a way to personal data.  Expanding it again, twice
	 * at every level down to the depth limit, cost 65,535 expansions a
	 * view, and the first CALL privacy.purge() of a session half a second
	 * to a second (issue #19).
	 */
	for (i = 0; i < walk->view_depth; i++)
		if (walk->views[i] == relid)
			return false;
	if (walk->view_depth >= PERSONAL_VIEW_DEPTH)
	{
		walk->cut = true;
		return false;
	}
	jv = judged_views == NULL ? NULL : hash_search(judged_views, &relid, HASH_FIND, NULL);
	if (jv != NULL && jv->not_personal[walk->top_level])
		return false;
	cut = walk->cut;
	walk->cut = false;
	rel = relation_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind == RELKIND_VIEW && rel->rd_rules != NULL)
	{
		walk->views[walk->view_depth++] = relid;
		found = personal_walker((Node *) get_view_query(rel), walk);
		walk->view_depth--;
	}
	/* (a verdict cut short by the depth limit is not kept) */
	if (!found && !walk->cut)
	{
		bool		known;

		if (judged_views == NULL)
			judged_views = oid_map("privacy judged views", sizeof(JudgedView));
		jv = hash_search(judged_views, &relid, HASH_ENTER, &known);
		if (!known)
			jv->not_personal[0] = jv->not_personal[1] = false;
		jv->not_personal[walk->top_level] = true;
	}
	walk->cut = walk->cut || cut;
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(redact_cxt);

		hash_search(personal_relids, &relid, HASH_ENTER, NULL);
		add_name(personal_names, RelationGetRelationName(rel));
		MemoryContextSwitchTo(old);
	}
	relation_close(rel, NoLock);
	return found;
}

static bool
personal_walker(Node *node, void *context)
{
	PersonalWalk *walk = (PersonalWalk *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		Node	   *inner = NULL;

		/* utility statements that carry an analysed query */
		if (query->utilityStmt != NULL)
		{
			if (IsA(query->utilityStmt, ExplainStmt))
				inner = ((ExplainStmt *) query->utilityStmt)->query;
			else if (IsA(query->utilityStmt, CreateTableAsStmt))
				inner = ((CreateTableAsStmt *) query->utilityStmt)->query;
			else if (IsA(query->utilityStmt, DeclareCursorStmt))
				inner = ((DeclareCursorStmt *) query->utilityStmt)->query;
			else if (IsA(query->utilityStmt, CallStmt))
				inner = (Node *) ((CallStmt *) query->utilityStmt)->funcexpr;
			if (inner != NULL && (IsA(inner, Query) || IsA(inner, FuncExpr)) &&
				personal_walker(inner, context))
				return true;
		}
		return query_tree_walker(query, personal_walker, context, QTW_EXAMINE_RTES_BEFORE);
	}
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind != RTE_RELATION)
			return false;
		if (oid_in(personal_relids, rte->relid))
			return true;
		if (walk->top_level && oid_in(privacy_relids, rte->relid))
			return true;
		return rte->relkind == RELKIND_VIEW && view_is_personal(rte->relid, walk);
	}
	switch (nodeTag(node))
	{
		case T_Var:
		case T_Const:
		case T_Param:
		case T_Aggref:
		case T_WindowFunc:
		case T_SubscriptingRef:
		case T_FuncExpr:
		case T_OpExpr:
		case T_RelabelType:
		case T_CoerceViaIO:
		case T_ArrayCoerceExpr:
		case T_ArrayExpr:
		case T_CoerceToDomain:
		case T_CaseExpr:
		case T_CoalesceExpr:
			if (oid_in(personal_types, exprType(node)))
				return true;
			break;
		default:
			break;
	}
	/* the extension's own statements call its functions all the time */
	if (walk->top_level && IsA(node, FuncExpr) &&
		oid_in(personal_funcs, ((FuncExpr *) node)->funcid))
		return true;
	if (IsA(node, FuncExpr) && function_is_personal(((FuncExpr *) node)->funcid, walk))
		return true;
	return expression_tree_walker(node, personal_walker, context);
}

static void
redact_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze)
		prev_post_parse_analyze(pstate, query, jstate);

	if (query->commandType == CMD_UTILITY && catalog_statement_without_snapshot(query->utilityStmt))
		return;
	if (redact_ensure_loaded() && extension_here)
	{
		PersonalWalk walk = {0};

		/* here, between walks: a walk holds entries of both maps */
		if (judged_stale)
		{
			if (judged_funcs != NULL)
				hash_destroy(judged_funcs);
			if (judged_views != NULL)
				hash_destroy(judged_views);
			judged_funcs = judged_views = NULL;
			judged_stale = false;
		}
		walk.top_level = pstate->p_sourcetext == debug_query_string;
		if (personal_walker((Node *) query, &walk))
		{
			remember_text(pstate->p_sourcetext);
			remember_text(debug_query_string);
		}
	}
}

/*
 * Plans cached by PL/pgSQL or PREPARE run again without parse analysis:
 * the executor start of a plan on a personal relation marks the query
 * string that runs it (EXECUTE p(...), SELECT f(...)) before it can fail
 * or be timed.
 */
static void
redact_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (queryDesc->plannedstmt != NULL && redact_ensure_loaded() && extension_here)
	{
		bool		top_level = queryDesc->sourceText == debug_query_string;
		ListCell   *lc;

		foreach(lc, queryDesc->plannedstmt->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION &&
				(oid_in(personal_relids, rte->relid) ||
				 (top_level && oid_in(privacy_relids, rte->relid))))
			{
				remember_text(queryDesc->sourceText);
				remember_text(debug_query_string);
				break;
			}
		}
	}
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* ------------------------------------------------------------------------
 * Judging a text in the log hook (no catalog access)
 * ------------------------------------------------------------------------
 */
static bool
name_in(HTAB *set, const char *name)
{
	NameKey		key;

	memset(&key, 0, sizeof(key));
	strlcpy(key.name, name, NAMEDATALEN);
	return set != NULL && hash_search(set, &key, HASH_FIND, NULL) != NULL;
}

static int
judge_name(const char *name, size_t len, int quoted, void *arg)
{
	NameJudge  *judge = (NameJudge *) arg;
	char		buf[NAMEDATALEN];
	bool		after_privacy = judge->after_privacy;

	if (quoted)
	{
		len = Min(len, NAMEDATALEN - 1);
		memcpy(buf, name, len);
		buf[len] = '\0';
	}
	else
		redact_fold_name(name, len, buf, sizeof(buf));
	judge->after_privacy = strcmp(buf, PRIVACY_SCHEMA) == 0;
	if (name_in(personal_names, buf))
		return 1;
	/* privacy.grant_consent(...), privacy.consent_events, but not SET privacy.purpose */
	if (after_privacy && name_in(privacy_names, buf))
		return 1;
	return 0;
}

/*
 * Is this text personal?  Remembered by analysis, or naming a personal
 * relation, type or object of schema privacy; and, when the sets are not
 * current (first statement of a session, a catalog change not yet
 * reloaded), yes.
 */
static bool
text_is_personal(const char *text)
{
	size_t		len;
	NameJudge	judge = {false};

	if (text == NULL)
		return false;
	len = strlen(text);
	if (text_remembered(text, len))
		return true;
	if (!redact_sets_current())
	{
		/* a lone SET, RESET or SHOW reaches no table */
		char		first[NAMEDATALEN];

		return !(redact_sql_statements(text, len, REDACT_STRINGS_EITHER, first, sizeof(first)) <= 1 &&
				 (strcmp(first, "set") == 0 || strcmp(first, "reset") == 0 ||
				  strcmp(first, "show") == 0));
	}
	if (!extension_here)
		return false;
	return redact_sql_names(text, len, REDACT_STRINGS_EITHER, judge_name, &judge) != 0;
}

/* ------------------------------------------------------------------------
 * The log hook
 * ------------------------------------------------------------------------
 */

/* The messages that print statement text (postgres.c), by message id. */
static const char *const statement_messages[] = {
	"statement: %s",
	"duration: %s ms  statement: %s",
	"%s %s%s%s: %s",			/* execute [fetch from] <name>: ... */
	"duration: %s ms  %s %s%s%s: %s",
	"duration: %s ms  parse %s: %s",
	"duration: %s ms  bind %s%s%s: %s",
};

static bool
is_statement_message(const char *message_id)
{
	int			i;

	if (message_id == NULL)
		return false;
	for (i = 0; i < lengthof(statement_messages); i++)
		if (strcmp(message_id, statement_messages[i]) == 0)
			return true;
	return false;
}

static bool in_redacted_emit = false;

/* text with its constants replaced; *pos (1-based characters, 0 = none) moved along */
static char *
redacted_sql(const char *text, int *pos)
{
	size_t		len = strlen(text);
	char	   *out = palloc(len + 1);
	size_t		offset = 0;

	if (pos != NULL && *pos > 0)
		offset = (size_t) pg_mbcharcliplen(text, (int) Min(len, (size_t) PG_INT32_MAX), *pos - 1);
	redact_sql(text, len, REDACT_STRINGS_EITHER, out, &offset, 1);
	if (pos != NULL && *pos > 0)
		*pos = pg_mbstrlen_with_len(out, (int) offset) + 1;
	return out;
}

/* A statement message: prefix kept, the statement text (its end) redacted. */
static char *
redacted_statement_message(const char *message, const char *query)
{
	size_t		mlen = strlen(message);
	size_t		qlen = query ? strlen(query) : 0;

	if (query != NULL && qlen <= mlen && memcmp(message + mlen - qlen, query, qlen) == 0)
	{
		char	   *rq = redacted_sql(query, NULL);
		char	   *out = palloc(mlen - qlen + strlen(rq) + 1);

		memcpy(out, message, mlen - qlen);
		strcpy(out + (mlen - qlen), rq);
		return out;
	}
	return redacted_sql(message, NULL);
}

/*
 * pgaudit's line, by its untranslated format string (pgaudit.c,
 * log_audit_event: "AUDIT: %s,<statement id>,<substatement id>,%s,%s").
 */
static bool
is_audit_line(const ErrorData *edata)
{
	return edata->message_id != NULL && strncmp(edata->message_id, "AUDIT: %s,", 10) == 0 &&
		edata->message != NULL && strncmp(edata->message, "AUDIT: ", 7) == 0;
}

/*
 * The DETAIL of an EXECUTE's statement line, "prepare: PREPARE p AS ...":
 * by its names, and by what analysing the PREPARE found, which was
 * remembered for the prepared text without the label (a prepared call of a
 * function that writes a protected table names no table).
 */
static bool
prepare_detail_is_personal(const char *detail)
{
	const char *text = strstr(detail, ": ");

	return text_is_personal(detail) || (text != NULL && text_is_personal(text + 2));
}

/*
 * pgaudit's line quotes the statement it logs, which need not be the one
 * being executed: the EXECUTE of a statement prepared earlier quotes the
 * PREPARE, whose analysis may have found it personal (it calls a function
 * that writes a protected table) while the EXECUTE's plan names no table.
 * Judged like any statement text.
 */
static bool
audit_statement_is_personal(const char *message)
{
	size_t		len = strlen(message);
	char	   *statement = palloc(len + 1);
	bool		personal;

	personal = redact_audit_statement(message, len, statement) >= 0 && text_is_personal(statement);
	pfree(statement);
	return personal;
}

/* text through a redact_text.c function that never lengthens it */
static char *
redacted_by(size_t (*redact) (const char *, size_t, RedactStrings, char *), const char *text)
{
	size_t		len = strlen(text);
	char	   *out = palloc(len + 1);

	redact(text, len, REDACT_STRINGS_EITHER, out);
	return out;
}

static char *
redacted_quoted(const char *message, bool as_sql)
{
	size_t		len = strlen(message);
	char	   *out = palloc(len + 2);

	redact_message_quoted(message, len, as_sql, out);
	return out;
}

/*
 * The redacted copy of a message lives here until it has been emitted: the
 * error context would keep it until the next error (LOG lines never reset
 * it), one copy of every logged statement that touches personal data.
 */
static MemoryContext redact_context = NULL;

/* message with every occurrence of query in it replaced by redacted */
static char *
replace_query_text(const char *message, const char *query, const char *redacted)
{
	StringInfoData out;
	size_t		qlen = strlen(query);
	const char *p = message;
	const char *hit;

	initStringInfo(&out);
	while ((hit = strstr(p, query)) != NULL)
	{
		appendBinaryStringInfo(&out, p, hit - p);
		appendStringInfoString(&out, redacted);
		p = hit + qlen;
	}
	appendStringInfoString(&out, p);
	return out.data;
}

/*
 * A message that quotes the statement: the statement redacted, and every
 * line after the one where it ends cut at its first quote (the plan
 * auto_explain prints after "Query Text:" quotes literals in its
 * conditions).  The line of the statement itself is kept whole, so that
 * pgaudit's AUDIT line keeps its fields.
 */
static char *
redacted_quoting_message(const char *message, const char *query, const char *redacted)
{
	char	   *replaced = replace_query_text(message, query, redacted);
	size_t		rlen = strlen(redacted);
	const char *last = NULL;
	const char *p = replaced;
	const char *nl;
	size_t		head;
	size_t		rest;
	char	   *out;

	while (rlen > 0 && (p = strstr(p, redacted)) != NULL)
	{
		last = p;
		p += rlen;
	}
	if (last == NULL || (nl = strchr(last + rlen, '\n')) == NULL)
		return replaced;
	head = (size_t) (nl + 1 - replaced);
	rest = strlen(nl + 1);
	out = palloc(head + rest + 1);
	memcpy(out, replaced, head);
	redact_lines_at_quote(nl + 1, rest, out + head);
	return out;
}

static void
redact_emit_log(ErrorData *edata)
{
	const char *query = debug_query_string;
	bool		statement_message;
	bool		syntax_error;
	bool		personal;
	ErrorData	saved;
	char	   *redacted_query = NULL;
	MemoryContext old;

	if (in_redacted_emit || !edata->output_to_server)
	{
		/* the redacted copy on its way (or nothing for the server log) */
		if (prev_emit_log)
			prev_emit_log(edata);
		return;
	}

	statement_message = is_statement_message(edata->message_id);
	syntax_error = edata->sqlerrcode == ERRCODE_SYNTAX_ERROR;
	personal = syntax_error || text_is_personal(query);
	if (!personal && statement_message && edata->detail != NULL)
		personal = prepare_detail_is_personal(edata->detail);
	if (!personal && edata->internalquery != NULL)
		personal = text_is_personal(edata->internalquery);
	if (!personal && is_audit_line(edata))
		personal = audit_statement_is_personal(edata->message);
	if (!personal && edata->elevel >= ERROR && MyProc != NULL &&
		personal_lxid != InvalidLocalTransactionId && personal_lxid == MyProc->lxid)
		personal = true;		/* e.g. a deferred constraint at COMMIT */
	if (!personal)
	{
		if (prev_emit_log)
			prev_emit_log(edata);
		return;
	}

	/* the redacted copy, in a context of its own */
	if (redact_context == NULL)
		redact_context = AllocSetContextCreate(TopMemoryContext, "privacy log redaction",
											   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(redact_context);
	saved = *edata;
	if (query != NULL)
		redacted_query = redacted_sql(query, &edata->cursorpos);
	if (edata->internalquery != NULL)
		edata->internalquery = redacted_sql(edata->internalquery, &edata->internalpos);
	if (statement_message)
	{
		if (edata->message != NULL)
			edata->message = redacted_statement_message(edata->message, query);
		if (edata->detail != NULL)
			edata->detail = redacted_sql(edata->detail, NULL);
	}
	else if (edata->elevel >= ERROR)
	{
		const char *left_out = _("Left out of the server log because the statement touches personal data (the client received it).");

		if (edata->message != NULL && syntax_error)
			edata->message = redacted_quoted(edata->message, true);
		else if (edata->message != NULL &&
				 ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION)
			edata->message = redacted_quoted(edata->message, false);
		if (edata->detail != NULL)
			edata->detail = pstrdup(left_out);
		if (edata->detail_log != NULL)
			edata->detail_log = pstrdup(left_out);
	}

	/*
	 * Any other message may quote a statement, and not necessarily as it
	 * was sent: pgaudit's AUDIT line quotes it as a CSV field (doubling the
	 * quotes of quoted identifiers), and for a function, a DO block or
	 * dynamic SQL quotes the inner statement; auto_explain quotes nested
	 * statements too.  pgaudit's line is redacted by its fields, whatever
	 * statement it holds, parameters included.  Elsewhere a copy of the
	 * client's statement gets its redacted text in its place, and then
	 * every string constant left, also inside double quotes (a quoted
	 * statement, read as SQL), goes.  The access log's own JSON lines hold
	 * keyed hashes, never values, and stay as they are.
	 */
	if (!statement_message && edata->message != NULL &&
		!(edata->message_id != NULL && strcmp(edata->message_id, AUDIT_LOG_LINE_FORMAT) == 0))
	{
		if (is_audit_line(edata))
			edata->message = redacted_by(redact_audit_line, edata->message);
		else
		{
			if (query != NULL && query[0] != '\0' && redacted_query != NULL &&
				strstr(edata->message, query) != NULL)
				edata->message = redacted_quoting_message(edata->message, query, redacted_query);
			if (edata->elevel < ERROR)
				edata->message = redacted_by(redact_message_literals, edata->message);
		}
	}
	if (edata->detail != NULL && query != NULL && query[0] != '\0' && redacted_query != NULL &&
		strstr(edata->detail, query) != NULL)
		edata->detail = replace_query_text(edata->detail, query, redacted_query);
	if (!statement_message && edata->elevel < ERROR && edata->detail != NULL)
		edata->detail = redacted_by(redact_message_literals, edata->detail);
	/* CONTEXT lines quote the SQL of the functions a message came from */
	if (!statement_message && edata->context != NULL)
	{
		size_t		len = strlen(edata->context);
		char	   *out = palloc(len + 1);

		redact_lines_at_quote(edata->context, len, out);
		edata->context = out;
	}
	MemoryContextSwitchTo(old);
	edata->output_to_client = false;

	/* emit the copy to the server log only, then restore for the client */
	in_redacted_emit = true;
	debug_query_string = redacted_query;
	PG_TRY();
	{
		EmitErrorReport();
	}
	PG_FINALLY();
	{
		in_redacted_emit = false;
		debug_query_string = query;
		*edata = saved;
		MemoryContextReset(redact_context);
	}
	PG_END_TRY();
	edata->output_to_server = false;
}

/* A judged view changed: forget every judged view (see JudgedView). */
static void
redact_relcache(Datum arg, Oid relid)
{
	if (judged_views != NULL &&
		(!OidIsValid(relid) || hash_search(judged_views, &relid, HASH_FIND, NULL) != NULL))
	{
		hash_destroy(judged_views);
		judged_views = NULL;
	}
}

/*
 * A function created, replaced or dropped: the verdicts on functions, and
 * on views that call them, are judged again from the next statement on
 * (CREATE OR REPLACE FUNCTION moves no catalog generation, and sends no
 * relcache invalidation for the views that call the function).
 */
static void
redact_proc_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	judged_stale = true;
}

void
redact_install_hooks(void)
{
	catalog_on_relcache(redact_relcache);
	CacheRegisterSyscacheCallback(PROCOID, redact_proc_changed, (Datum) 0);
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = redact_post_parse_analyze;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = redact_executor_start;
	prev_emit_log = emit_log_hook;
	emit_log_hook = redact_emit_log;
}
