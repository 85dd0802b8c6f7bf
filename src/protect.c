/*
 * protect.c — protection that cannot be switched off quietly.
 *
 * privacy.protect_table() enables and forces row-level security on a table,
 * gives it the consent-check policies and the seal trigger (see
 * sql/install/06_protect.sql).  The table's owner may alter its table; this
 * utility hook refuses the commands that would take that protection away
 * (NO FORCE and DISABLE ROW LEVEL SECURITY, dropping, altering or renaming
 * the extension's policies, dropping or disabling the seal trigger) to
 * anyone but a superuser or a member of privacy_admin, whose way to do it is
 * privacy.unprotect_table().  privacy.compliance_gaps() reports any
 * protected table that is not intact all the same (a superuser's doing).
 *
 * It also keeps the seal trigger the last BEFORE row trigger of a protected
 * table, for everyone: row triggers fire in the order of their names, and a
 * trigger that fills in the subject column after the seal trigger ran would
 * leave the row's values under the category key, which erasure does not
 * destroy.  A trigger whose name sorts after privacy_seal_row cannot be
 * created on, or renamed on, a protected table (protect_table refuses a
 * table that has one).
 */
#include "privacy.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_trigger.h"
#include "utils/fmgroids.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

static const char *const own_policies[] = {
	"privacy_select", "privacy_insert", "privacy_update", "privacy_delete"
};

#define SEAL_TRIGGER "privacy_seal_row"

/*
 * Is this the seal trigger of the relation?  On Citus, a shard's copy of
 * a table's trigger is named after its shard: privacy_seal_row_<shardid>
 * on <table>_<shardid>.
 */
bool
protect_is_seal_trigger(Oid relid, const char *name)
{
	const char *rel;
	const char *suffix;
	size_t		len = strlen(SEAL_TRIGGER);

	if (strcmp(name, SEAL_TRIGGER) == 0)
		return true;
	/* (a table of its own, protected under a name like a shard's, is not one) */
	if (!citus_loaded() || catalog_is_protected_now(relid))
		return false;
	if (strncmp(name, SEAL_TRIGGER "_", len + 1) != 0 || name[len + 1] == '\0' ||
		strspn(name + len + 1, "0123456789") != strlen(name + len + 1) ||
		(rel = get_rel_name(relid)) == NULL)
		return false;
	suffix = strrchr(rel, '_');
	return suffix != NULL && strcmp(suffix, name + len) == 0;
}

static bool
is_own_policy(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(own_policies); i++)
		if (strcmp(name, own_policies[i]) == 0)
			return true;
	return false;
}

static bool
may_switch_off(void)
{
	Oid			admin;

	if (superuser())
		return true;
	admin = get_role_oid("privacy_admin", true);
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

static bool
protected_relation(RangeVar *rv, Oid *relid)
{
	if (rv == NULL || !IsTransactionState())
		return false;
	*relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(*relid) && catalog_protected_ready() &&
		catalog_protected_relation(*relid) != NULL;
}

static void
refuse(Oid relid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s on protected table %s", what, get_rel_name(relid)),
			 errdetail("The table is protected by privacy.protect_table(): its rows are shown only where their subjects' consent allows, and its values are sealed under their subjects' keys."),
			 errhint("A member of privacy_admin can remove the protection with privacy.unprotect_table().")));
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	Oid			relid;
	ListCell   *lc;

	if (!protected_relation(stmt->relation, &relid))
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_DisableRowSecurity:
				refuse(relid, "disable row-level security");
				break;
			case AT_NoForceRowSecurity:
				refuse(relid, "stop forcing row-level security");
				break;
			case AT_DisableTrigAll:
			case AT_DisableTrigUser:
				refuse(relid, "disable its triggers");
				break;
			case AT_DisableTrig:
			case AT_EnableReplicaTrig:
				if (cmd->name && protect_is_seal_trigger(relid, cmd->name))
					refuse(relid, "disable the trigger " SEAL_TRIGGER);
				break;
			default:
				break;
		}
	}
}

/* DROP POLICY / DROP TRIGGER name ON table: the object names the table */
static void
check_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_POLICY && stmt->removeType != OBJECT_TRIGGER)
		return;
	foreach(lc, stmt->objects)
	{
		List	   *names = (List *) lfirst(lc);
		char	   *name = strVal(llast(names));
		RangeVar   *rv;
		Oid			relid;

		if (list_length(names) < 2)
			continue;
		if (stmt->removeType == OBJECT_POLICY ? !is_own_policy(name) : strcmp(name, SEAL_TRIGGER) != 0)
			continue;
		rv = makeRangeVarFromNameList(list_truncate(list_copy(names), list_length(names) - 1));
		if (protected_relation(rv, &relid))
			refuse(relid, stmt->removeType == OBJECT_POLICY ? "drop the consent-check policies" :
				   "drop the trigger " SEAL_TRIGGER);
	}
}

/* Is the table's trigger of this name a BEFORE row trigger on INSERT or UPDATE? */
static bool
is_before_row_write(Oid relid, const char *name)
{
	Relation	rel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		result = false;

	if (protect_is_seal_trigger(relid, name))
		return false;
	rel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(name));
	scan = systable_beginscan(rel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		int16		type = ((Form_pg_trigger) GETSTRUCT(tup))->tgtype;

		result = TRIGGER_FOR_ROW(type) && TRIGGER_FOR_BEFORE(type) &&
			(TRIGGER_FOR_INSERT(type) || TRIGGER_FOR_UPDATE(type));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/* Would this trigger fire after the seal trigger and change what it sealed? */
static void
check_trigger_order(Oid relid, const char *name, bool before_row_write)
{
	if (!before_row_write || strcmp(name, SEAL_TRIGGER) <= 0 || protect_is_seal_trigger(relid, name))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("trigger \"%s\" on protected table %s would fire after " SEAL_TRIGGER, name, get_rel_name(relid)),
			 errdetail("BEFORE row triggers fire in the order of their names; values are sealed under their subject's key by " SEAL_TRIGGER ", which must see the row as it will be stored."),
			 errhint("Give the trigger a name that sorts before \"" SEAL_TRIGGER "\", for example \"a_%s\".", name)));
}

static void
protect_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params,
						QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			relid;

	if (parsetree != NULL && IsA(parsetree, CreateTrigStmt))
	{
		CreateTrigStmt *t = (CreateTrigStmt *) parsetree;

		if (protected_relation(t->relation, &relid))
			check_trigger_order(relid, t->trigname,
								t->row && (t->timing & TRIGGER_TYPE_BEFORE) &&
								(t->events & (TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE)));
	}
	if (parsetree != NULL && IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_TRIGGER &&
		((RenameStmt *) parsetree)->newname != NULL &&
		protected_relation(((RenameStmt *) parsetree)->relation, &relid))
		check_trigger_order(relid, ((RenameStmt *) parsetree)->newname,
							is_before_row_write(relid, ((RenameStmt *) parsetree)->subname));
	if (parsetree != NULL && !may_switch_off())
	{
		switch (nodeTag(parsetree))
		{
			case T_AlterTableStmt:
				check_alter_table((AlterTableStmt *) parsetree);
				break;
			case T_DropStmt:
				check_drop((DropStmt *) parsetree);
				break;
			case T_AlterPolicyStmt:
				if (is_own_policy(((AlterPolicyStmt *) parsetree)->policy_name) &&
					protected_relation(((AlterPolicyStmt *) parsetree)->table, &relid))
					refuse(relid, "alter the consent-check policies");
				break;
			case T_RenameStmt:
				{
					RenameStmt *r = (RenameStmt *) parsetree;

					if (((r->renameType == OBJECT_POLICY && r->subname && is_own_policy(r->subname)) ||
						 (r->renameType == OBJECT_TRIGGER && r->subname && strcmp(r->subname, SEAL_TRIGGER) == 0)) &&
						protected_relation(r->relation, &relid))
						refuse(relid, "rename what protects it");
				}
				break;
			default:
				break;
		}
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
protect_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = protect_process_utility;
}
