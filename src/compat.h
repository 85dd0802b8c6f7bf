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

#endif
