/*
 * label.c — SECURITY LABEL FOR privacy: declarative classification.
 *
 *   SECURITY LABEL FOR privacy ON COLUMN t.c IS 'category=contact, searchable';
 *   SECURITY LABEL FOR privacy ON TABLE t IS 'subject=customer_id';
 *
 * A label on a column does what privacy.classify() does, a label on a table
 * what privacy.protect_table() does, and IS NULL undoes them
 * (privacy.unclassify(), privacy.unprotect_table()).  The provider holds no
 * state of its own: PostgreSQL stores the label in pg_seclabel, and privacy
 * only brings the object into the state the label declares, by calling the
 * SQL functions through SPI as the current user, so that their EXECUTE
 * privileges (privacy_admin) apply to a label exactly as to a call.
 * PostgreSQL has already checked that the current user owns the object.
 *
 * Two steps: the provider hook checks the label before it is stored (so a
 * bad label is an error and nothing is stored), and a ProcessUtility hook
 * applies it once the statement is done, in the same transaction, because
 * the statement keeps the table open while the provider runs and ALTER
 * TABLE refuses a table in use.
 *
 * Applying a label is idempotent: an object already in the declared state is
 * left alone (no rewrite, no new key, no register update).  A restore does
 * not apply labels at all: pg_dump puts SECURITY LABEL right after CREATE
 * TABLE, before the extension's registers and the table's rows are loaded
 * and before its policies and triggers are created, and everything a label
 * did in the source database (the column's encrypted type, the registers,
 * the policies, the seal trigger) comes back with the rest of the dump.
 * Applying it again there would protect the table twice and make the
 * restore fail.  See label_restore_session() for how a restore is told.
 *
 * The grammar of a label is in label_text.h.
 */
#include "privacy.h"
#include "label_text.h"
#include "typmod.h"

#include "access/xact.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/seclabel.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#define LABEL_PROVIDER "privacy"

typedef struct PrivacyLabel
{
	char	   *category;		/* column: category=<name> */
	bool		searchable;		/* column: searchable */
	bool		encrypt;		/* column: encrypt */
	char	   *subject;		/* table: subject=<column> */
} PrivacyLabel;

/* ---------------------------------------------------------------------
 * Parsing
 * --------------------------------------------------------------------- */

static const char *
column_label_hint(void)
{
	return "A column label is category=<name>, optionally followed by searchable and encrypt, separated by commas, for example 'category=contact, searchable'.";
}

static const char *
table_label_hint(void)
{
	return "A table label is subject=<column>, naming the column that identifies the subject of each row, for example 'subject=customer_id'.";
}

static void
label_syntax_error(const char *label, bool is_column, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid security label for privacy: \"%s\"", label),
			 errdetail_internal("%s", detail),
			 errhint("%s", is_column ? column_label_hint() : table_label_hint())));
}

/*
 * Parse a label for a column (is_column) or a table into *out, or raise the
 * error that says what is wrong and how a label for that object reads.  The
 * grammar is label_text.c's.
 */
static void
label_parse(const char *label, bool is_column, PrivacyLabel *out)
{
	size_t		buflen = strlen(label) + 1;
	char	   *buf = palloc(buflen);
	LabelText	lab;
	LabelTextError err;

	if (label_text_parse(label, is_column, buf, buflen, &lab, &err) != 0)
		label_syntax_error(label, is_column, psprintf(err.reason, err.item_len, err.item));
	memset(out, 0, sizeof(*out));
	out->category = lab.category ? pstrdup(lab.category) : NULL;
	out->subject = lab.subject ? pstrdup(lab.subject) : NULL;
	out->searchable = lab.searchable;
	out->encrypt = lab.encrypt;
	pfree(buf);
}

/* ---------------------------------------------------------------------
 * Privileges and the session
 * --------------------------------------------------------------------- */

/*
 * The current user must be allowed to execute the function the label runs,
 * whatever the object's state: a label is a privileged declaration even when
 * it changes nothing, and it must not let a table owner do what the
 * function would refuse.  Checked here for a clear message; the SPI call
 * checks it again.
 */
static void
label_require_execute(const char *funcname, int nargs, const Oid *argtypes,
					  const char *object_desc, const char *what)
{
	Oid			fn;
	List	   *name = list_make2(makeString(PRIVACY_SCHEMA), makeString(pstrdup(funcname)));

	fn = LookupFuncName(name, nargs, argtypes, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function %s.%s is missing", PRIVACY_SCHEMA, funcname),
				 errhint("Install the extension again: DROP EXTENSION privacy; CREATE EXTENSION privacy.")));
	if (!DatumGetBool(DirectFunctionCall2(has_function_privilege_id,
										  ObjectIdGetDatum(fn),
										  CStringGetTextDatum("EXECUTE"))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set a privacy security label on %s", object_desc),
				 errdetail("This label %s, like %s.%s(), which role \"%s\" may not execute.",
						   what, PRIVACY_SCHEMA, funcname, GetUserNameFromId(GetUserId(), false)),
				 errhint("Privacy labels are set by superusers and members of privacy_admin who own the table.")));
}

/*
 * Is this a restore?  pg_dump scripts and pg_restore start every session
 * with both row_security and check_function_bodies off, and they run as a
 * dump/restore role (a superuser or a privacy_admin member) with no purpose
 * declared, the session in which the encrypted types take envelopes
 * verbatim.  An interactive session that deliberately looks the same gets a
 * NOTICE saying the label was not applied.
 */
static bool
label_restore_session(void)
{
	Oid			outer;
	Oid			admin;

	if (row_security || check_function_bodies)
		return false;
	if (privacy_purpose != NULL && privacy_purpose[0] != '\0')
		return false;
	outer = GetOuterUserId();
	if (superuser_arg(outer))
		return true;
	admin = get_role_oid("privacy_admin", true);
	return OidIsValid(admin) && has_privs_of_role(outer, admin);
}

/* ---------------------------------------------------------------------
 * Checking a label (in the provider hook) and applying it (after the
 * statement)
 * --------------------------------------------------------------------- */

/*
 * What a SECURITY LABEL statement asked for, checked by the provider hook
 * and applied by label_process_utility once the statement is done.  It
 * cannot be applied in the hook itself: PostgreSQL keeps the labelled table
 * open while it calls the provider, and ALTER TABLE (which classify and
 * protect_table run) refuses a table in use by the session.
 */
typedef struct PendingLabel
{
	Oid			relid;
	AttrNumber	attnum;			/* 0 for the table itself */
	bool		remove;			/* IS NULL */
	PrivacyLabel lab;
} PendingLabel;

static ProcessUtility_hook_type prev_process_utility = NULL;
static bool in_seclabel_stmt = false;
static PendingLabel *pending_label = NULL;

static const Oid classify_args[] = {REGCLASSOID, NAMEOID, TEXTOID, BOOLOID, BOOLOID};
static const Oid unclassify_args[] = {REGCLASSOID, NAMEOID};
static const Oid protect_args[] = {REGCLASSOID, NAMEOID};
static const Oid unprotect_args[] = {REGCLASSOID};

static char *
relation_desc(Oid relid)
{
	/* qualified, as the SQL functions print it under their search_path */
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

static char *
object_desc(Oid relid, AttrNumber attnum)
{
	if (attnum > 0)
		return psprintf("column \"%s\" of %s", get_attname(relid, attnum, false),
						relation_desc(relid));
	return psprintf("table %s", relation_desc(relid));
}

static Oid
encrypted_type_oid(const char *typname)
{
	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
						   CStringGetDatum(typname),
						   ObjectIdGetDatum(catalog_namespace()));
}

/* Run one of the extension's functions as the current user. */
static void
spi_call(const char *sql, int nargs, const Oid *argtypes, Datum *values)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, (Oid *) argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", sql);
	SPI_finish();
}

static bool
category_exists(const char *category)
{
	CatalogUserState st;
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(category);
	bool		found;

	catalog_become_owner(&st);
	if (SPI_execute_with_args("SELECT 1 FROM " PRIVACY_SCHEMA ".categories c"
							  " WHERE c.name OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "categories lookup failed");
	found = (SPI_processed == 1);
	catalog_restore_user(&st);
	return found;
}

/*
 * The provider hook: everything that can be said about the label before it
 * is stored.  Bad labels fail here, so nothing is stored and nothing changes.
 */
static void
label_object_relabel(const ObjectAddress *object, const char *seclabel)
{
	char		relkind;
	Oid			relid = object->objectId;
	AttrNumber	attnum;
	bool		is_column;
	char	   *desc;
	PendingLabel *todo;

	/* pg_upgrade carries the tables, their registers and their policies */
	if (IsBinaryUpgrade)
		return;

	if (object->classId != RelationRelationId || object->objectSubId < 0 ||
		((relkind = get_rel_relkind(relid)) != RELKIND_RELATION &&
		 relkind != RELKIND_PARTITIONED_TABLE))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("privacy security labels apply only to tables and their columns"),
				 errdetail("The label was set on %s.", getObjectDescription(object, false)),
				 errhint("Label a column with category=<name>, or a table with subject=<column>.")));

	/* in a database without the extension, say so */
	(void) catalog_namespace();
	catalog_accept_invalidations();

	attnum = (AttrNumber) object->objectSubId;
	is_column = attnum > 0;
	desc = object_desc(relid, attnum);
	todo = palloc0(sizeof(PendingLabel));
	todo->relid = relid;
	todo->attnum = attnum;
	todo->remove = (seclabel == NULL);
	if (seclabel != NULL)
		label_parse(seclabel, is_column, &todo->lab);

	if (is_column && !todo->remove)
		label_require_execute("classify", lengthof(classify_args), classify_args,
							  desc, "classifies the column");
	else if (is_column)
		label_require_execute("unclassify", lengthof(unclassify_args), unclassify_args,
							  desc, "removes the column's classification");
	else if (!todo->remove)
		label_require_execute("protect_table", lengthof(protect_args), protect_args,
							  desc, "protects the table");
	else
		label_require_execute("unprotect_table", lengthof(unprotect_args), unprotect_args,
							  desc, "unprotects the table");

	if (!is_column && !todo->remove && get_attnum(relid, todo->lab.subject) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation %s does not exist",
						todo->lab.subject, relation_desc(relid)),
				 errdetail("The security label names it as the subject column."),
				 errhint("Name the column that identifies the subject of each row; the name is taken exactly as written, case included.")));

	if (label_restore_session())
	{
		ereport(NOTICE,
				(errmsg("privacy security label on %s stored without applying it", desc),
				 errdetail("This session looks like a restore (row_security and check_function_bodies off, no purpose declared): what the label did comes back with the rest of the dump."),
				 errhint("In an ordinary session, set row_security or check_function_bodies back on before setting the label.")));
		return;
	}

	if (is_column && !todo->remove && !category_exists(todo->lab.category))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("category \"%s\" does not exist", todo->lab.category),
				 errdetail("The security label on %s names it.", desc),
				 errhint("Create it first with privacy.create_category(name, description, special), then set the label.")));

	/* never store a label that would not be applied */
	if (!in_seclabel_stmt || pending_label != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("privacy security label on %s cannot be applied", desc),
				 errdetail("The statement did not pass through the ProcessUtility hook of privacy, which applies labels once the statement is done."),
				 errhint("Check shared_preload_libraries: a library listed after privacy may run SECURITY LABEL without passing it on.")));
	pending_label = todo;
}

/* Bring a column into the state its label declares. */
static void
label_apply_column(PendingLabel *todo)
{
	char	   *attname = get_attname(todo->relid, todo->attnum, false);
	PrivacyLabel *lab = &todo->lab;
	Oid			typid;
	int32		typmod;
	Oid			collid;
	bool		enc_type;
	bool		registered = false;
	bool		reg_searchable = false;
	bool		reg_encrypted = false;
	char	   *reg_category = NULL;
	CatalogUserState st;
	Datum		args[5];
	Oid			argtypes[2] = {REGCLASSOID, TEXTOID};

	get_atttypetypmodcoll(todo->relid, todo->attnum, &typid, &typmod, &collid);
	enc_type = (typid == encrypted_type_oid("encrypted_text") ||
				typid == encrypted_type_oid("encrypted_bytea"));

	/* the register, as the extension's owner (the caller may not read it) */
	catalog_become_owner(&st);
	args[0] = ObjectIdGetDatum(todo->relid);
	args[1] = CStringGetTextDatum(attname);
	if (SPI_execute_with_args("SELECT cc.category, cc.searchable, cc.encrypted"
							  "  FROM " PRIVACY_SCHEMA ".column_categories cc"
							  " WHERE cc.tbl OPERATOR(pg_catalog.=) $1"
							  "   AND cc.col OPERATOR(pg_catalog.=) $2::pg_catalog.name",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "column_categories lookup failed");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;

		registered = true;
		reg_category = SPI_getvalue(tup, td, 1);
		reg_searchable = DatumGetBool(SPI_getbinval(tup, td, 2, &isnull));
		reg_encrypted = DatumGetBool(SPI_getbinval(tup, td, 3, &isnull));
	}
	catalog_restore_user(&st);

	args[0] = ObjectIdGetDatum(todo->relid);
	args[1] = DirectFunctionCall1(namein, CStringGetDatum(attname));
	if (todo->remove)
	{
		bool		sealed = enc_type && typmod != -1 &&
			TYPMOD_CATEGORY(typmod) != catalog_category_id("unclassified");

		/* nothing recorded and nothing sealed: nothing to undo */
		if (registered || sealed)
			spi_call("SELECT " PRIVACY_SCHEMA ".unclassify($1, $2)",
					 lengthof(unclassify_args), unclassify_args, args);
		return;
	}

	/* already in the declared state: leave it (and its lock) alone */
	if (registered && strcmp(reg_category, lab->category) == 0 &&
		reg_searchable == lab->searchable)
	{
		bool		applied;

		if (enc_type)
			applied = reg_encrypted && typmod != -1 &&
				TYPMOD_CATEGORY(typmod) == catalog_category_id(lab->category) &&
				(TYPMOD_SEARCHABLE(typmod) == 1) == lab->searchable;
		else
			applied = !reg_encrypted && !lab->encrypt;
		if (applied)
			return;
	}
	args[2] = CStringGetTextDatum(lab->category);
	args[3] = BoolGetDatum(lab->searchable);
	args[4] = BoolGetDatum(lab->encrypt);
	spi_call("SELECT " PRIVACY_SCHEMA ".classify($1, $2, $3, $4, $5)",
			 lengthof(classify_args), classify_args, args);
}

/* Bring a table into the state its label declares. */
static void
label_apply_table(PendingLabel *todo)
{
	bool		is_protected = false;
	bool		is_root = false;
	char	   *protected_subject = NULL;
	CatalogUserState st;
	Datum		args[2];
	Oid			argtype = REGCLASSOID;

	catalog_become_owner(&st);
	args[0] = ObjectIdGetDatum(todo->relid);
	if (SPI_execute_with_args("SELECT pt.subject_column, pt.parent IS NULL"
							  "  FROM " PRIVACY_SCHEMA ".protected_tables pt"
							  " WHERE pt.tbl OPERATOR(pg_catalog.=) $1",
							  1, &argtype, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "protected_tables lookup failed");
	if (SPI_processed == 1)
	{
		bool		isnull;

		is_protected = true;
		protected_subject = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		is_root = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	catalog_restore_user(&st);

	if (todo->remove)
	{
		/* a partition is protected through its root's label */
		if (is_protected && is_root)
			spi_call("SELECT " PRIVACY_SCHEMA ".unprotect_table($1)",
					 lengthof(unprotect_args), unprotect_args, args);
		return;
	}
	if (is_protected && is_root)
	{
		if (strcmp(protected_subject, todo->lab.subject) == 0)
			return;
		/* another subject column: protect afresh, in this transaction */
		label_require_execute("unprotect_table", lengthof(unprotect_args), unprotect_args,
							  object_desc(todo->relid, 0), "changes the table's subject column");
		spi_call("SELECT " PRIVACY_SCHEMA ".unprotect_table($1)",
				 lengthof(unprotect_args), unprotect_args, args);
	}
	args[1] = DirectFunctionCall1(namein, CStringGetDatum(todo->lab.subject));
	spi_call("SELECT " PRIVACY_SCHEMA ".protect_table($1, $2)",
			 lengthof(protect_args), protect_args, args);
}

/*
 * SECURITY LABEL statements pass through here: the provider hook, called
 * inside, leaves what it checked in pending_label, applied once the table is
 * closed again, in the same transaction (an error undoes the stored label
 * too).  Nested statements (an event trigger running SECURITY LABEL) keep
 * their own.
 */
static void
label_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		saved_in = in_seclabel_stmt;
	PendingLabel *saved_pending = pending_label;

	if (!IsA(pstmt->utilityStmt, SecLabelStmt))
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
								 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
		return;
	}

	in_seclabel_stmt = true;
	pending_label = NULL;
	PG_TRY();
	{
		PendingLabel *todo;

		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
								 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
		todo = pending_label;
		pending_label = NULL;
		in_seclabel_stmt = false;
		if (todo != NULL)
		{
			CommandCounterIncrement();
			if (todo->attnum > 0)
				label_apply_column(todo);
			else
				label_apply_table(todo);
		}
	}
	PG_FINALLY();
	{
		in_seclabel_stmt = saved_in;
		pending_label = saved_pending;
	}
	PG_END_TRY();
}

void
label_init(void)
{
	register_label_provider(LABEL_PROVIDER, label_object_relabel);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = label_process_utility;
}
