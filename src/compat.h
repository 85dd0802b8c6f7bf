/*
 * compat.h — every PG_VERSION_NUM shim lives here, so that version noise
 * never spreads through the code.  Only PostgreSQL 15 is tested; 16 and 17
 * are guarded where their signatures are known to differ.
 */
#ifndef PRIVACY_COMPAT_H
#define PRIVACY_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "privacy requires PostgreSQL 15 or later"
#endif

/* PostgreSQL 16 moved role-membership checks and renamed the GUC flag set. */
#if PG_VERSION_NUM >= 160000
#include "utils/acl.h"
#endif

/*
 * A database left invalid by an interrupted DROP DATABASE (15.4 and later
 * mark it so): no one can connect to it.
 */
#if PG_VERSION_NUM < 150004
#define database_is_invalid_form(form) false
#endif

/* PostgreSQL 16 replaced the per-class ownership checks. */
#if PG_VERSION_NUM >= 160000
#define pg_database_ownercheck(dboid, roleid) object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#endif

#endif
