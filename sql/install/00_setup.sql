/*
 * 00_setup.sql — the guard, the library, the schemas and the roles.
 *
 * The install script privacy--<version>.sql is assembled by the Makefile from
 * the files of sql/install/ in name order, one per part of the design, in
 * the order of the parts of src/ (see doc/internals.md).  Privileges are
 * granted in 99_privileges.sql, once every object exists.
 */


\echo Use "CREATE EXTENSION privacy" to load this file. \quit

-- The API lives in schema privacy (created by CREATE EXTENSION, from
-- privacy.control): only what doc/reference.md documents.  The helpers it is
-- built of live here; users have no reason to call them, and most cannot.
CREATE SCHEMA privacy_internal;
COMMENT ON SCHEMA privacy_internal IS
    'helpers of the privacy extension: not an API, may change in any release';

-- The first C function loads privacy.so; outside shared_preload_libraries its
-- _PG_init refuses with the postgresql.conf line to add.
CREATE FUNCTION privacy.master_key_status() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_master_key_status'
    LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION privacy.master_key_status() IS
    'loaded, or why the master key could not be loaded (never any key material)';

CREATE FUNCTION privacy.master_key_fingerprint() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_master_key_fingerprint'
    LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION privacy.master_key_fingerprint() IS
    'short public fingerprint of the loaded master key, to tell keys apart without revealing them';

------------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide: a second database that installs the
-- extension reuses them, and DROP EXTENSION leaves them in place.
------------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'privacy_admin') THEN
        CREATE ROLE privacy_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'privacy_officer') THEN
        CREATE ROLE privacy_officer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'privacy_portal') THEN
        CREATE ROLE privacy_portal NOLOGIN;
    END IF;
END
$roles$;
