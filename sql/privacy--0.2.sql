-- privacy--0.2.sql: the install script of release 0.2, as it shipped. Never edit it: later changes go to sql/install/ and to an upgrade step privacy--0.2--<next>.sql.

-- ==== sql/install/00_setup.sql
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
END
$roles$;

-- ==== sql/install/01_catalog.sql
/*
 * 01_catalog.sql — the vocabulary: categories, purposes, which roles hold them (C: catalog.c,
 * consent.c).
 */

------------------------------------------------------------------------------
-- Vocabulary: categories, purposes, which categories a purpose may see, and
-- which roles hold which purposes.
------------------------------------------------------------------------------
CREATE TABLE privacy.categories (
    name        text PRIMARY KEY
                CONSTRAINT category_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    id          integer NOT NULL UNIQUE CHECK (id BETWEEN 1 AND 65535),
    description text NOT NULL DEFAULT '',
    special     boolean NOT NULL DEFAULT false,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE privacy.categories IS
    'kinds of personal data; special = GDPR Art. 9 special category; id is derived from the name and stored in every encrypted value';

CREATE TABLE privacy.purposes (
    name        text PRIMARY KEY
                CONSTRAINT purpose_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    legal_basis text NOT NULL
                CONSTRAINT purpose_legal_basis CHECK (legal_basis IN
                    ('consent', 'contract', 'legal_obligation', 'vital_interests',
                     'public_task', 'legitimate_interests')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE privacy.purposes IS
    'why personal data is processed, each with its GDPR Art. 6 legal basis';

CREATE TABLE privacy.purpose_categories (
    purpose     text NOT NULL REFERENCES privacy.purposes ON DELETE CASCADE,
    category    text NOT NULL REFERENCES privacy.categories,
    PRIMARY KEY (purpose, category)
);
CREATE INDEX ON privacy.purpose_categories (category);
COMMENT ON TABLE privacy.purpose_categories IS
    'the categories of personal data each purpose is allowed to process';

CREATE TABLE privacy.role_purposes (
    role        regrole NOT NULL,
    purpose     text NOT NULL REFERENCES privacy.purposes ON DELETE CASCADE,
    granted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    granted_by  name NOT NULL DEFAULT session_user,
    PRIMARY KEY (role, purpose)
);
COMMENT ON TABLE privacy.role_purposes IS
    'which roles (and their members) hold which purposes';

-- The id of a category is a pure function of its name (see catalog.c), so
-- that a column declared privacy.encrypted_text(contact) means the same
-- before and after a restore has loaded this table.
CREATE FUNCTION privacy_internal.category_id(name text) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_category_id'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Values whose column has not been classified yet are sealed under this
-- category, which no purpose is allowed until an admin decides otherwise.
INSERT INTO privacy.categories (name, id, description, builtin)
VALUES ('unclassified', privacy_internal.category_id('unclassified'),
        'encrypted values whose column has not been classified yet', true);

-- pg_dump carries the vocabulary with the data it classifies.
SELECT pg_catalog.pg_extension_config_dump('privacy.categories', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('privacy.purposes', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.purpose_categories', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.role_purposes', '');

-- Every backend caches purpose verdicts and keys; a change here invalidates
-- them all at commit, so a revoked purpose stops working from the next
-- statement.  Row triggers, enabled ALWAYS, because the logical replication
-- apply worker fires neither statement triggers nor ordinary ones: on a
-- subscriber a destroyed key must leave every session's cache too.
CREATE FUNCTION privacy_internal.catalog_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_catalog_changed'
    LANGUAGE C;

CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.categories FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.categories FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.categories ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.purposes FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.purposes FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.purposes ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.purpose_categories FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.purpose_categories FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.purpose_categories ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.role_purposes FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.role_purposes FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.role_purposes ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

------------------------------------------------------------------------------
-- Validation helpers (internal).
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.check_name(kind text, val text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF val IS NULL OR val !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid %s name %s', kind, coalesce(quote_literal(val), 'NULL')),
            DETAIL  = format('A %s name starts with a lower-case letter and has at most 63 lower-case letters, digits and underscores.', kind),
            HINT    = 'For example: contact, financial, billing, direct_marketing.';
    END IF;
END
$$;

CREATE FUNCTION privacy_internal.require_category(category text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM privacy.categories c WHERE c.name = category) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('category "%s" does not exist', category),
            HINT    = 'Create it first with privacy.create_category(name, description, special).';
    END IF;
END
$$;

CREATE FUNCTION privacy_internal.require_purpose(purpose text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM privacy.purposes p WHERE p.name = purpose) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('purpose "%s" does not exist', purpose),
            HINT    = 'Create it first with privacy.create_purpose(name, legal_basis, description, categories).';
    END IF;
END
$$;

CREATE FUNCTION privacy_internal.role_oid(role_name text) RETURNS oid
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r oid;
BEGIN
    SELECT oid INTO r FROM pg_catalog.pg_roles WHERE rolname = role_name;
    IF r IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('role "%s" does not exist', role_name),
            HINT    = 'Role names are case-sensitive here: pass the name exactly as in pg_roles.rolname.';
    END IF;
    RETURN r;
END
$$;

------------------------------------------------------------------------------
-- Categories
------------------------------------------------------------------------------
CREATE FUNCTION privacy.create_category(name text, description text DEFAULT '',
                                        special boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clash text;
BEGIN
    PERFORM privacy_internal.check_name('category', name);
    IF EXISTS (SELECT 1 FROM privacy.categories c WHERE c.name = create_category.name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'duplicate_object',
            MESSAGE = format('category "%s" already exists', name);
    END IF;
    SELECT c.name INTO clash FROM privacy.categories c
     WHERE c.id = privacy_internal.category_id(create_category.name);
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'duplicate_object',
            MESSAGE = format('category name "%s" has the same id as category "%s"', name, clash),
            DETAIL  = 'Encrypted values carry a 16-bit category id derived from the name; two names collided.',
            HINT    = 'Choose a slightly different name, for example with a suffix.';
    END IF;
    INSERT INTO privacy.categories (name, id, description, special)
    VALUES (name, privacy_internal.category_id(name), coalesce(description, ''), coalesce(special, false));
    -- create keys now, in a writable transaction, rather than on a first
    -- read that might run on a standby
    IF privacy.master_key_status() = 'loaded' THEN
        PERFORM privacy_internal.ensure_internal_keys();
    END IF;
END
$$;
COMMENT ON FUNCTION privacy.create_category(text, text, boolean) IS
    'declare a category of personal data (special: GDPR Art. 9 data such as health)';

CREATE FUNCTION privacy.drop_category(name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    users text;
BEGIN
    PERFORM privacy_internal.require_category(name);
    IF EXISTS (SELECT 1 FROM privacy.categories c WHERE c.name = drop_category.name AND c.builtin) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('category "%s" is built in and cannot be dropped', name);
    END IF;
    IF EXISTS (SELECT 1 FROM privacy.data_keys k WHERE k.category = drop_category.name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'dependent_objects_still_exist',
            MESSAGE = format('category "%s" has data keys', name),
            DETAIL  = 'Values sealed under this category would become unreadable.',
            HINT    = 'Keep the category; stop using it by reclassifying its columns.';
    END IF;
    SELECT string_agg(pc.purpose, ', ' ORDER BY pc.purpose) INTO users
      FROM privacy.purpose_categories pc WHERE pc.category = drop_category.name;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'dependent_objects_still_exist',
            MESSAGE = format('category "%s" is still allowed to purposes', name),
            DETAIL  = format('Purposes allowed this category: %s.', users),
            HINT    = 'Remove it from those purposes first with privacy.disallow_category(purpose, category).';
    END IF;
    DELETE FROM privacy.categories c WHERE c.name = drop_category.name;
END
$$;

------------------------------------------------------------------------------
-- Purposes
------------------------------------------------------------------------------
CREATE FUNCTION privacy.create_purpose(name text, legal_basis text,
                                       description text DEFAULT '',
                                       categories text[] DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c text;
BEGIN
    PERFORM privacy_internal.check_name('purpose', name);
    IF legal_basis IS NULL OR legal_basis NOT IN ('consent', 'contract', 'legal_obligation',
            'vital_interests', 'public_task', 'legitimate_interests') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid legal basis %s', coalesce(quote_literal(legal_basis), 'NULL')),
            DETAIL  = 'GDPR Art. 6(1) allows processing on six legal bases only.',
            HINT    = 'Use one of: consent, contract, legal_obligation, vital_interests, public_task, legitimate_interests.';
    END IF;
    IF EXISTS (SELECT 1 FROM privacy.purposes p WHERE p.name = create_purpose.name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'duplicate_object',
            MESSAGE = format('purpose "%s" already exists', name),
            HINT    = 'Use privacy.allow_category() or privacy.disallow_category() to change what it may see.';
    END IF;
    INSERT INTO privacy.purposes (name, legal_basis, description)
    VALUES (name, legal_basis, coalesce(description, ''));
    FOREACH c IN ARRAY coalesce(categories, '{}')
    LOOP
        PERFORM privacy.allow_category(name, c);
    END LOOP;
END
$$;
COMMENT ON FUNCTION privacy.create_purpose(text, text, text, text[]) IS
    'declare a purpose of processing, its legal basis and the categories it may process';

CREATE FUNCTION privacy.drop_purpose(name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.require_purpose(name);
    IF EXISTS (SELECT 1 FROM privacy.consent_events e WHERE e.purpose = drop_purpose.name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'dependent_objects_still_exist',
            MESSAGE = format('purpose "%s" has consent history', name),
            DETAIL  = 'The consent ledger is evidence and keeps every purpose it names.',
            HINT    = 'Revoke the purpose from every role instead, so nobody can declare it.';
    END IF;
    DELETE FROM privacy.purposes p WHERE p.name = drop_purpose.name;
END
$$;

CREATE FUNCTION privacy.allow_category(purpose text, category text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    PERFORM privacy_internal.require_category(category);
    INSERT INTO privacy.purpose_categories (purpose, category)
    VALUES (purpose, category)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION privacy.allow_category(text, text) IS
    'allow a purpose to process a category of personal data';

CREATE FUNCTION privacy.disallow_category(purpose text, category text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    PERFORM privacy_internal.require_category(category);
    DELETE FROM privacy.purpose_categories pc
     WHERE pc.purpose = disallow_category.purpose AND pc.category = disallow_category.category;
END
$$;

------------------------------------------------------------------------------
-- Which roles hold which purposes
------------------------------------------------------------------------------
CREATE FUNCTION privacy.grant_purpose(role text, purpose text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r oid := privacy_internal.role_oid(role);
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    INSERT INTO privacy.role_purposes (role, purpose)
    VALUES (r::regrole, purpose)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION privacy.grant_purpose(text, text) IS
    'let a role (and its members) declare and use a purpose';

CREATE FUNCTION privacy.revoke_purpose(role text, purpose text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r oid := privacy_internal.role_oid(role);
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    IF NOT EXISTS (SELECT 1 FROM privacy.role_purposes rp
                    WHERE rp.role = r::regrole AND rp.purpose = revoke_purpose.purpose) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('role "%s" does not hold purpose "%s"', role, purpose);
    END IF;
    DELETE FROM privacy.role_purposes rp
     WHERE rp.role = r::regrole AND rp.purpose = revoke_purpose.purpose;
END
$$;



------------------------------------------------------------------------------
-- The purpose check every other part uses
------------------------------------------------------------------------------
CREATE FUNCTION privacy.check_purpose(category text DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_check_purpose'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.check_purpose(text) IS
    'the declared purpose, if the current role holds it and it is allowed the category; an error saying what is missing otherwise';

CREATE FUNCTION privacy.may_use(category text DEFAULT NULL) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_may_use'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.may_use(text) IS
    'true if the session may process the category now under its declared purpose';

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------
CREATE VIEW privacy.purpose_holders AS
SELECT rp.purpose, pg_catalog.pg_get_userbyid(rp.role) AS role, p.legal_basis,
       rp.granted_at, rp.granted_by
  FROM privacy.role_purposes rp
  JOIN privacy.purposes p ON p.name = rp.purpose
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = rp.role);
COMMENT ON VIEW privacy.purpose_holders IS 'roles holding each purpose (dropped roles omitted)';

-- What an application role may declare, and what each purpose lets it see.
CREATE VIEW privacy.my_purposes AS
SELECT p.name AS purpose, p.legal_basis, p.description,
       ARRAY(SELECT pc.category FROM privacy.purpose_categories pc
              WHERE pc.purpose = p.name ORDER BY pc.category) AS categories
  FROM privacy.purposes p
 WHERE (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
    OR EXISTS (SELECT 1 FROM privacy.role_purposes rp
                WHERE rp.purpose = p.name
                  AND pg_catalog.pg_has_role(current_user, rp.role::oid, 'USAGE'));
COMMENT ON VIEW privacy.my_purposes IS 'purposes the current role holds, with their categories';

-- ==== sql/install/02_keys.sql
/*
 * 02_keys.sql — data keys, wrapped by the master key, and their management (C: keys.c).
 */

------------------------------------------------------------------------------
-- Data keys: stored only wrapped by the master key.  scope 'category' keys
-- seal a category's values in ordinary tables; scope 'subject' keys seal a
-- subject's values in protected tables, and destroying one shreds them;
-- scope 'internal' keys serve the extension itself (the subject hash, the
-- blind index), so that those survive a master-key rotation.
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.data_key_id_seq AS integer MINVALUE 1;

CREATE TABLE privacy.data_keys (
    id           integer PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.data_key_id_seq'),
    scope        text NOT NULL CHECK (scope IN ('category', 'subject', 'internal')),
    category     text REFERENCES privacy.categories,
    name         text,
    subject_hash bytea,
    state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    wrapped_key  bytea,
    wrapped_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    CONSTRAINT data_key_owner CHECK ((scope = 'category') = (category IS NOT NULL)
                                     AND (scope = 'subject') = (subject_hash IS NOT NULL)
                                     AND (scope = 'internal') = (name IS NOT NULL)),
    CONSTRAINT data_key_material CHECK ((state = 'destroyed') = (wrapped_key IS NULL))
);
ALTER SEQUENCE privacy.data_key_id_seq OWNED BY privacy.data_keys.id;
CREATE UNIQUE INDEX data_keys_active_category ON privacy.data_keys (category)
    WHERE scope = 'category' AND state = 'active';
CREATE UNIQUE INDEX data_keys_active_subject ON privacy.data_keys (subject_hash)
    WHERE scope = 'subject' AND state = 'active';
CREATE INDEX data_keys_subject ON privacy.data_keys (subject_hash) WHERE scope = 'subject';
CREATE UNIQUE INDEX data_keys_active_internal ON privacy.data_keys (name)
    WHERE scope = 'internal' AND state = 'active';
COMMENT ON TABLE privacy.data_keys IS
    'data keys, each wrapped by the master key whose fingerprint is in wrapped_by; wrapped_key is NULL once destroyed';

SELECT pg_catalog.pg_extension_config_dump('privacy.data_keys', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.data_key_id_seq', '');


-- A destroyed or rotated key leaves every backend's cache at commit (see
-- the catalog triggers in 01_catalog.sql).
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.data_keys FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.data_keys FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.data_keys ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

------------------------------------------------------------------------------
-- Keys: management without key material
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.category_key(category text) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_category_key'
    LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.subject_key(subject text, create_missing boolean) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_subject_key'
    LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.subject_hash(subject text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_subject_hash'
    LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION privacy.subject_hash(text) IS
    'keyed hash standing for a subject where the identifier itself must not be kept';
CREATE FUNCTION privacy_internal.rewrap_key(id integer, scope text, category text, subject_hash bytea,
                                    wrapped bytea, wrapped_by text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_rewrap_key'
    LANGUAGE C VOLATILE;
CREATE FUNCTION privacy_internal.ensure_internal_keys() RETURNS void
    AS 'MODULE_PATHNAME', 'privacy_ensure_internal_keys'
    LANGUAGE C VOLATILE;
CREATE FUNCTION privacy.previous_master_key_fingerprint() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_previous_master_key_fingerprint'
    LANGUAGE C VOLATILE;

CREATE VIEW privacy.keys AS
SELECT k.id, k.scope, coalesce(k.category, k.name) AS category,
       pg_catalog.encode(pg_catalog.substr(k.subject_hash, 1, 8), 'hex') AS subject_hash_prefix,
       k.state, k.wrapped_by AS master_key_fingerprint,
       k.created_at, k.retired_at, k.destroyed_at
  FROM privacy.data_keys k;
COMMENT ON VIEW privacy.keys IS
    'data keys without key material: scope, state and the fingerprint of the master key that wraps each';

CREATE FUNCTION privacy.rotate_key(category text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id integer;
BEGIN
    PERFORM privacy_internal.require_category(category);
    UPDATE privacy.data_keys k SET state = 'retired', retired_at = now()
     WHERE k.scope = 'category' AND k.category = rotate_key.category AND k.state = 'active';
    new_id := privacy_internal.category_key(category);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION privacy.rotate_key(text) IS
    'retire the active key of a category and start sealing with a new one; CALL privacy.reencrypt() rewrites old values';

CREATE FUNCTION privacy.rotate_master_key() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_fp text := privacy.master_key_fingerprint();
    k record;
    n integer := 0;
BEGIN
    FOR k IN SELECT * FROM privacy.data_keys
              WHERE wrapped_key IS NOT NULL AND wrapped_by <> current_fp
              ORDER BY id FOR UPDATE
    LOOP
        UPDATE privacy.data_keys d
           SET wrapped_key = privacy_internal.rewrap_key(k.id, k.scope, coalesce(k.category, k.name), k.subject_hash,
                                                 k.wrapped_key, k.wrapped_by),
               wrapped_by = current_fp
         WHERE d.id = k.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION privacy.rotate_master_key() IS
    'rewrap every data key under the current master key (the previous one must be loaded); no data is rewritten';

CREATE FUNCTION privacy.destroy_subject_key(subject text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE privacy.data_keys k
       SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now()
     WHERE k.scope = 'subject' AND k.subject_hash = privacy.subject_hash(subject)
       AND k.state <> 'destroyed';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION privacy.destroy_subject_key(text) IS
    'crypto-shredding: destroy the keys of a subject, so every copy of their encrypted values becomes unreadable';

-- ==== sql/install/03_types.sql
/*
 * 03_types.sql — the encrypted types, their casts, operators and inspection (C: types.c,
 * envelope.c).
 */

------------------------------------------------------------------------------
-- Encrypted types.  The type modifier is the column's category (and
-- optionally "searchable"): privacy.encrypted_text(contact, searchable).
------------------------------------------------------------------------------
CREATE TYPE privacy.encrypted_text;
CREATE TYPE privacy.encrypted_bytea;

CREATE FUNCTION privacy_internal.encrypted_text_in(cstring, oid, integer) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_in' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_out(privacy.encrypted_text) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_text_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_recv(internal, oid, integer) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_recv' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_send(privacy.encrypted_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_send' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_in(cstring, oid, integer) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_in' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_out(privacy.encrypted_bytea) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_bytea_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_recv(internal, oid, integer) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_recv' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_send(privacy.encrypted_bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_send' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_typmod_in' LANGUAGE C STRICT IMMUTABLE;
CREATE FUNCTION privacy_internal.encrypted_typmod_out(integer) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_typmod_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_typanalyze(internal) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_typanalyze' LANGUAGE C STRICT;

-- Ciphertext does not compress: external storage skips pglz attempts.
CREATE TYPE privacy.encrypted_text (
    INPUT = privacy_internal.encrypted_text_in, OUTPUT = privacy_internal.encrypted_text_out,
    RECEIVE = privacy_internal.encrypted_text_recv, SEND = privacy_internal.encrypted_text_send,
    TYPMOD_IN = privacy_internal.encrypted_typmod_in, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
    ANALYZE = privacy_internal.encrypted_typanalyze,
    INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U'
);
CREATE TYPE privacy.encrypted_bytea (
    INPUT = privacy_internal.encrypted_bytea_in, OUTPUT = privacy_internal.encrypted_bytea_out,
    RECEIVE = privacy_internal.encrypted_bytea_recv, SEND = privacy_internal.encrypted_bytea_send,
    TYPMOD_IN = privacy_internal.encrypted_typmod_in, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
    ANALYZE = privacy_internal.encrypted_typanalyze,
    INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U'
);
COMMENT ON TYPE privacy.encrypted_text IS 'text stored encrypted (XChaCha20-Poly1305); type modifier: (category[, searchable])';
COMMENT ON TYPE privacy.encrypted_bytea IS 'bytea stored encrypted (XChaCha20-Poly1305); type modifier: (category[, searchable])';

-- Assignment to a classified column reseals under the column's category key.
CREATE FUNCTION privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_typmod' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_typmod' LANGUAGE C STRICT VOLATILE;
CREATE CAST (privacy.encrypted_text AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean) AS IMPLICIT;
CREATE CAST (privacy.encrypted_bytea AS privacy.encrypted_bytea)
    WITH FUNCTION privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean) AS IMPLICIT;

-- Plain values go in by assignment (INSERT ... SELECT, ALTER COLUMN TYPE);
-- plaintext comes out only by an explicit cast, through the decryption gate.
CREATE FUNCTION privacy_internal.encrypted_text(text, integer, boolean) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'text_to_encrypted_text' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.encrypted_bytea(bytea, integer, boolean) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'bytea_to_encrypted_bytea' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.plaintext(privacy.encrypted_text) RETURNS text
    AS 'MODULE_PATHNAME', 'encrypted_text_to_text' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.plaintext(privacy.encrypted_bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_to_bytea' LANGUAGE C STRICT STABLE;
CREATE CAST (text AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(text, integer, boolean) AS ASSIGNMENT;
CREATE CAST (character varying AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(text, integer, boolean) AS ASSIGNMENT;
CREATE CAST (bytea AS privacy.encrypted_bytea)
    WITH FUNCTION privacy_internal.encrypted_bytea(bytea, integer, boolean) AS ASSIGNMENT;
CREATE CAST (privacy.encrypted_text AS text)
    WITH FUNCTION privacy.plaintext(privacy.encrypted_text);
CREATE CAST (privacy.encrypted_bytea AS bytea)
    WITH FUNCTION privacy.plaintext(privacy.encrypted_bytea);

-- Equality search compares blind-index tags (only columns classified as
-- searchable keep them).  The order of < and > is the order of the tags,
-- which says nothing about the plaintext: it exists for btree only.
CREATE FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_eq' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ne' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION privacy_internal.encrypted_lt(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_lt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_le(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_le' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_gt(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_gt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ge(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ge' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash(privacy.encrypted_text) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_eq' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ne' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION privacy_internal.encrypted_lt(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_lt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_le(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_le' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_gt(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_gt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ge(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ge' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash(privacy.encrypted_bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE OPERATOR pg_catalog.= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.< (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_lt, COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_le, COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.> (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_gt, COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR pg_catalog.>= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_ge, COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS privacy.encrypted_text_ops DEFAULT FOR TYPE privacy.encrypted_text USING btree AS
    OPERATOR 1 pg_catalog.<, OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=,
    OPERATOR 4 pg_catalog.>=, OPERATOR 5 pg_catalog.>,
    FUNCTION 1 privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text);
CREATE OPERATOR CLASS privacy.encrypted_text_hash_ops DEFAULT FOR TYPE privacy.encrypted_text USING hash AS
    OPERATOR 1 pg_catalog.=,
    FUNCTION 1 privacy_internal.encrypted_hash(privacy.encrypted_text),
    FUNCTION 2 privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint);

CREATE OPERATOR pg_catalog.= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.< (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_lt, COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_le, COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.> (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_gt, COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR pg_catalog.>= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_ge, COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS privacy.encrypted_bytea_ops DEFAULT FOR TYPE privacy.encrypted_bytea USING btree AS
    OPERATOR 1 pg_catalog.<, OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=,
    OPERATOR 4 pg_catalog.>=, OPERATOR 5 pg_catalog.>,
    FUNCTION 1 privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea);
CREATE OPERATOR CLASS privacy.encrypted_bytea_hash_ops DEFAULT FOR TYPE privacy.encrypted_bytea USING hash AS
    OPERATOR 1 pg_catalog.=,
    FUNCTION 1 privacy_internal.encrypted_hash(privacy.encrypted_bytea),
    FUNCTION 2 privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint);

------------------------------------------------------------------------------
-- Inspection and maintenance of encrypted values
------------------------------------------------------------------------------
CREATE TYPE privacy.envelope_info AS (
    format_version integer, key_id integer, category text, searchable boolean,
    stored_bytes integer, plaintext_bytes integer
);
CREATE FUNCTION privacy.envelope_info(privacy.encrypted_text) RETURNS privacy.envelope_info
    AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.envelope_info(privacy.encrypted_bytea) RETURNS privacy.envelope_info
    AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION privacy.envelope_info(privacy.encrypted_text) IS
    'what an encrypted value says about itself (key, category, sizes), without opening it';
CREATE FUNCTION privacy.is_erased(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.is_erased(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION privacy.is_erased(privacy.encrypted_text) IS
    'true if the key that sealed the value was destroyed (the value was crypto-shredded)';
CREATE FUNCTION privacy_internal.reseal(privacy.encrypted_text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_reseal' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.reseal(privacy.encrypted_bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_reseal' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.seal_for_subject(privacy.encrypted_text, subject text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_seal_for_subject' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.seal_for_subject(privacy.encrypted_bytea, subject text) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_seal_for_subject' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION privacy.seal_for_subject(privacy.encrypted_text, text) IS
    'reseal a value under its subject''s key (same category), so that privacy.destroy_subject_key() shreds it';
CREATE FUNCTION privacy_internal.needs_reseal(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.needs_reseal(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE;

-- ==== sql/install/04_classify.sql
/*
 * 04_classify.sql — classification of columns, and its SECURITY LABEL form (C: label.c).
 */

------------------------------------------------------------------------------
-- Classification of columns
------------------------------------------------------------------------------
CREATE TABLE privacy.column_categories (
    tbl           regclass NOT NULL,
    col           name NOT NULL,
    category      text NOT NULL REFERENCES privacy.categories,
    searchable    boolean NOT NULL DEFAULT false,
    encrypted     boolean NOT NULL,
    classified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    classified_by name NOT NULL DEFAULT session_user,
    PRIMARY KEY (tbl, col)
);
COMMENT ON TABLE privacy.column_categories IS
    'which category of personal data each classified column holds, and whether it is stored encrypted';
SELECT pg_catalog.pg_extension_config_dump('privacy.column_categories', '');
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.column_categories FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.column_categories FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.column_categories ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

CREATE FUNCTION privacy.classify(tbl regclass, col name, category text,
                                 searchable boolean DEFAULT false, encrypt boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    att record;
    is_encrypted boolean;
    target text;
BEGIN
    PERFORM privacy_internal.require_category(category);
    IF category = 'unclassified' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'columns cannot be classified as "unclassified"',
            HINT    = 'Name the category of personal data the column holds.';
    END IF;
    SELECT a.attnum, a.atttypid, a.atttypmod, a.attinhcount INTO att
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of relation %s does not exist', col, tbl);
    END IF;
    is_encrypted := att.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype);
    IF NOT is_encrypted AND encrypt THEN
        IF att.atttypid IN ('text'::regtype, 'character varying'::regtype) THEN
            target := 'privacy.encrypted_text';
        ELSIF att.atttypid = 'bytea'::regtype THEN
            target := 'privacy.encrypted_bytea';
        ELSE
            RAISE EXCEPTION USING
                ERRCODE = 'datatype_mismatch',
                MESSAGE = format('column "%s" of type %s cannot be encrypted', col, att.atttypid::regtype),
                HINT    = 'Only text, varchar and bytea columns convert to privacy.encrypted_text or privacy.encrypted_bytea.';
        END IF;
        is_encrypted := true;
    ELSIF is_encrypted THEN
        target := att.atttypid::regtype::text;
    END IF;
    IF searchable AND NOT is_encrypted THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('column "%s" is not encrypted, so it cannot be made searchable', col),
            HINT    = 'Pass encrypt => true to convert it, or leave searchable false.';
    END IF;
    IF is_encrypted THEN
        IF att.attinhcount > 0 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_table_definition',
                MESSAGE = format('column "%s" of %s is inherited', col, tbl),
                HINT    = 'Classify the column on the parent table; partitions follow it.';
        END IF;
        PERFORM privacy_internal.ensure_internal_keys();
        PERFORM privacy_internal.category_key(category);
        -- rewrites the column: every value is (re)sealed under the category key
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE %s(%s%s)', tbl, col, target,
                       category, CASE WHEN searchable THEN ', searchable' ELSE '' END);
    END IF;
    INSERT INTO privacy.column_categories AS cc (tbl, col, category, searchable, encrypted)
    VALUES (tbl, col, category, searchable, is_encrypted)
    ON CONFLICT ON CONSTRAINT column_categories_pkey DO UPDATE
       SET category = EXCLUDED.category, searchable = EXCLUDED.searchable,
           encrypted = EXCLUDED.encrypted, classified_at = now(), classified_by = session_user;
END
$$;
COMMENT ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean) IS
    'declare the category of a column; encrypted columns are resealed under the category key (searchable enables equality search); encrypt converts a text or bytea column';

CREATE VIEW privacy.classified_columns AS
SELECT cc.tbl AS table_name, cc.col AS column_name, cc.category, cc.searchable, cc.encrypted,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type,
       cc.classified_at, cc.classified_by
  FROM privacy.column_categories cc
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = cc.tbl AND a.attname = cc.col AND NOT a.attisdropped;
COMMENT ON VIEW privacy.classified_columns IS 'classified columns with their current type';

-- Every stored encrypted column has a category, so that no value sealed
-- with a session's transient key can be kept: a column declared without one
-- is given "unclassified" (readable by no purpose until classified).
CREATE FUNCTION privacy_internal.typmod_category(integer) RETURNS text
    AS 'MODULE_PATHNAME', 'encrypted_typmod_category' LANGUAGE C STRICT STABLE;

-- Record a column whose type already names its category, so the register
-- is complete however the column got its category.
CREATE FUNCTION privacy_internal.register_column(tbl regclass, col name)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    att record;
BEGIN
    -- only what the catalog says, for the table's owner, never for
    -- temporary tables (they leave without a trace the register could see)
    SELECT a.atttypmod, c.relowner, c.relpersistence INTO att
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
     WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped
       AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype);
    IF NOT FOUND OR att.relpersistence = 't' OR att.atttypmod = -1
       OR NOT pg_catalog.pg_has_role(session_user, att.relowner, 'USAGE')
       OR privacy_internal.typmod_category(att.atttypmod) IS NULL
       OR privacy_internal.typmod_category(att.atttypmod) = 'unclassified' THEN
        RETURN;
    END IF;
    INSERT INTO privacy.column_categories AS cc (tbl, col, category, searchable, encrypted)
    VALUES (tbl, col, privacy_internal.typmod_category(att.atttypmod), (att.atttypmod >> 16) & 1 = 1, true)
    ON CONFLICT ON CONSTRAINT column_categories_pkey DO UPDATE
       SET category = EXCLUDED.category, searchable = EXCLUDED.searchable, encrypted = true;
END
$$;

CREATE FUNCTION privacy_internal.classify_new_columns() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT a.attrelid::regclass AS tbl, a.attname, a.atttypid::regtype AS typ, c.relkind,
               a.atttypmod, a.atthasdef
          FROM pg_catalog.pg_event_trigger_ddl_commands() d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass
           AND c.relkind IN ('r', 'p', 'm', 'f')
           AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
           AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype)
    LOOP
        -- a default would be sealed once, with the creating session's key
        IF r.atthasdef THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_table_definition',
                MESSAGE = format('encrypted column "%s" of %s cannot have a default', r.attname, r.tbl),
                DETAIL  = 'A default value would be sealed once, when the table is defined, with a key only that session holds.',
                HINT    = 'Set the value in the INSERT, or in a BEFORE INSERT trigger.';
        END IF;
        IF r.atttypmod <> -1 THEN
            PERFORM privacy_internal.register_column(r.tbl, r.attname);
            CONTINUE;
        END IF;
        IF r.relkind IN ('m', 'f') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_table_definition',
                MESSAGE = format('encrypted column "%s" of %s needs a category', r.attname, r.tbl),
                HINT    = format('Cast it to a classified type, for example %s(contact).', r.typ);
        END IF;
        -- our own ALTER fires this trigger again: skip what it already did
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = r.tbl AND a.attname = r.attname AND a.atttypmod = -1);
        RAISE NOTICE 'column "%" of % has no category yet; it is "unclassified" until privacy.classify() is run',
            r.attname, r.tbl;
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE %s(unclassified)', r.tbl, r.attname, r.typ);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_classify_new_columns ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
                 'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION privacy_internal.classify_new_columns();

-- Rewrites values sealed with retired keys, one block range per transaction,
-- so it holds no long lock and can be stopped and run again at any time.
CREATE PROCEDURE privacy.reencrypt(tbl regclass, col name, batch_pages integer DEFAULT 64)
    LANGUAGE plpgsql
AS $$
DECLARE
    pages bigint;
    first_page bigint := 0;
    done bigint := 0;
    n bigint;
    started timestamptz := pg_catalog.clock_timestamp();
BEGIN
    IF batch_pages IS NULL OR batch_pages < 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'batch_pages must be at least 1';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped
                      AND a.atttypid IN ('privacy.encrypted_text'::pg_catalog.regtype,
                                         'privacy.encrypted_bytea'::pg_catalog.regtype)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('column "%s" of %s is not an encrypted column', col, tbl);
    END IF;
    pages := pg_catalog.pg_relation_size(tbl) / pg_catalog.current_setting('block_size')::integer;
    WHILE first_page <= pages LOOP
        EXECUTE pg_catalog.format(
            'UPDATE %s SET %I = privacy_internal.reseal(%I) '
            'WHERE ctid >= pg_catalog.format(''(%s,0)'', %s::bigint)::pg_catalog.tid '
            '  AND ctid < pg_catalog.format(''(%s,0)'', %s::bigint)::pg_catalog.tid '
            '  AND privacy_internal.needs_reseal(%I)',
            tbl, col, col, '%s', first_page, '%s', first_page + batch_pages, col);
        GET DIAGNOSTICS n = ROW_COUNT;
        done := done + n;
        COMMIT;
        first_page := first_page + batch_pages;
        IF n > 0 THEN
            RAISE NOTICE 'reencrypt %.%: % values resealed, % of % pages scanned',
                tbl, col, done, LEAST(first_page, pages), pages;
        END IF;
    END LOOP;
    RAISE NOTICE 'reencrypt %.% done: % values resealed in %', tbl, col, done,
        pg_catalog.clock_timestamp() - started;
END
$$;
COMMENT ON PROCEDURE privacy.reencrypt(regclass, name, integer) IS
    'reseal values of a column that use retired keys, committing after each block range (resumable)';

------------------------------------------------------------------------------
-- Declarative classification: SECURITY LABEL FOR privacy (src/label.c).
-- A label on a column runs classify(), a label on a table protect_table(),
-- and IS NULL unclassify() or unprotect_table(), as the role that sets it.
------------------------------------------------------------------------------
-- The undo of classify() for a column whose values are not sealed: the
-- register forgets it.  An encrypted column keeps its category, since its
-- values are sealed under that category's key.
CREATE FUNCTION privacy.unclassify(tbl regclass, col name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    att record;
    category text;
BEGIN
    SELECT a.atttypid, a.atttypmod INTO att
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of relation %s does not exist', col, tbl);
    END IF;
    IF att.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype)
       AND att.atttypmod <> -1 THEN
        category := privacy_internal.typmod_category(att.atttypmod);
        IF category IS DISTINCT FROM 'unclassified' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('column "%s" of %s is encrypted, so its classification cannot be removed', col, tbl),
                DETAIL  = format('Its values are sealed under the key of category %s; an encrypted column always has a category.',
                                 coalesce(format('"%s"', category), format('id %s', att.atttypmod & 65535))),
                HINT    = 'Classify it into another category instead, or first convert it to plaintext (ALTER TABLE ... ALTER COLUMN ... TYPE text, with a purpose allowed its category).';
        END IF;
    END IF;
    DELETE FROM privacy.column_categories cc WHERE cc.tbl = unclassify.tbl AND cc.col = unclassify.col;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('column "%s" of %s is not classified', col, tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION privacy.unclassify(regclass, name) IS
    'undo privacy.classify() for a column that is not encrypted (encrypted columns always keep a category)';
REVOKE ALL ON FUNCTION privacy.unclassify(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.unclassify(regclass, name) TO privacy_admin;

-- ==== sql/install/05_consent.sql
/*
 * 05_consent.sql — the consent ledger and the state derived from it (C: consent.c).
 */

------------------------------------------------------------------------------
-- Consent: an append-only ledger, and the current state derived from it
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.consent_event_id_seq;
CREATE TABLE privacy.consent_events (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.consent_event_id_seq'),
    subject     text NOT NULL,
    purpose     text NOT NULL REFERENCES privacy.purposes,
    action      text NOT NULL CHECK (action IN ('grant', 'withdraw', 'object')),
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    source      text NOT NULL CHECK (source <> ''),
    evidence    jsonb,
    recorded_by name NOT NULL DEFAULT session_user
);
CREATE INDEX ON privacy.consent_events (subject, purpose, id);
COMMENT ON TABLE privacy.consent_events IS
    'consent ledger: every grant, withdrawal and objection with its source and evidence; append-only';

-- One row per subject and purpose: what the ledger's latest event says.
CREATE TABLE privacy.consent_state (
    subject     text NOT NULL,
    purpose     text NOT NULL REFERENCES privacy.purposes ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('granted', 'withdrawn', 'objected')),
    since       timestamptz NOT NULL,
    last_event  bigint NOT NULL,
    PRIMARY KEY (purpose, subject)
);
COMMENT ON TABLE privacy.consent_state IS
    'current consent state per subject and purpose, kept by the consent functions in the same transaction as the ledger';

ALTER SEQUENCE privacy.consent_event_id_seq OWNED BY privacy.consent_events.id;
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_events', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_state', '');

CREATE FUNCTION privacy_internal.ledger_guard() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_ledger_guard' LANGUAGE C;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON privacy.consent_events
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.ledger_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON privacy.consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.ledger_guard();

CREATE FUNCTION privacy_internal.record_consent(subject text, purpose text, action text,
                                        source text, evidence jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    basis text;
    new_state text := CASE action WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END;
    event_id bigint;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    IF source IS NULL OR source = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the source of a consent event must be given',
            HINT = 'Name where the event came from, for example web-form, call-centre or app-settings.';
    END IF;
    SELECT p.legal_basis INTO basis FROM privacy.purposes p WHERE p.name = record_consent.purpose;
    IF basis IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('purpose "%s" does not exist', purpose);
    END IF;
    IF action IN ('grant', 'withdraw') AND basis <> 'consent' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('purpose "%s" is not based on consent', purpose),
            DETAIL  = format('Its legal basis is %s; consent can be granted or withdrawn only for purposes based on consent.', basis),
            HINT    = 'To stop processing under another legal basis, record an objection with privacy.object().';
    END IF;
    -- The state row is locked first, so concurrent events for one subject and
    -- purpose reach the ledger in the order they take effect.
    INSERT INTO privacy.consent_state AS cs (subject, purpose, state, since, last_event)
    VALUES (subject, purpose, new_state, clock_timestamp(), 0)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE
       SET state = EXCLUDED.state,
           since = CASE WHEN cs.state = EXCLUDED.state THEN cs.since ELSE EXCLUDED.since END;
    INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
    VALUES (subject, purpose, action, source, evidence)
    RETURNING id INTO event_id;
    UPDATE privacy.consent_state cs SET last_event = event_id
     WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
    RETURN event_id;
END
$$;

CREATE FUNCTION privacy.grant_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(subject, purpose, 'grant', source, evidence) $$;
COMMENT ON FUNCTION privacy.grant_consent(text, text, text, jsonb) IS
    'record that a subject consents to a purpose based on consent; returns the ledger entry id';
CREATE FUNCTION privacy.withdraw_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(subject, purpose, 'withdraw', source, evidence) $$;
COMMENT ON FUNCTION privacy.withdraw_consent(text, text, text, jsonb) IS
    'record that a subject withdraws consent; effective for every statement that starts after the commit';
CREATE FUNCTION privacy.object(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(subject, purpose, 'object', source, evidence) $$;
COMMENT ON FUNCTION privacy.object(text, text, text, jsonb) IS
    'record a subject''s objection (GDPR Art. 21): their rows are no longer shown for that purpose, whatever its legal basis';

CREATE FUNCTION privacy.has_consent(subject text, purpose text) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    RETURN EXISTS (SELECT 1 FROM privacy.consent_state cs
                    WHERE cs.subject = has_consent.subject AND cs.purpose = has_consent.purpose
                      AND cs.state = 'granted');
END
$$;

CREATE VIEW privacy.consents AS
SELECT cs.subject, cs.purpose, p.legal_basis, cs.state, cs.since,
       e.source, e.evidence, e.recorded_by, cs.last_event
  FROM privacy.consent_state cs
  JOIN privacy.purposes p ON p.name = cs.purpose
  LEFT JOIN privacy.consent_events e ON e.id = cs.last_event;
COMMENT ON VIEW privacy.consents IS 'current consent state per subject and purpose, with the event that set it';

-- ==== sql/install/06_protect.sql
/*
 * 06_protect.sql — protected tables: the consent policy, the seal trigger, new partitions
 * (C: consent.c, catalog.c).
 */

------------------------------------------------------------------------------
-- Protected tables: consent-aware row-level security and per-subject keys
------------------------------------------------------------------------------
CREATE TABLE privacy.protected_tables (
    tbl             regclass PRIMARY KEY,
    subject_column  name NOT NULL,
    parent          regclass,
    rls_was_enabled boolean NOT NULL,
    rls_was_forced  boolean NOT NULL,
    base_policy     boolean NOT NULL,
    protected_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    protected_by    name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE privacy.protected_tables IS
    'tables under consent-aware row-level security, and what protect_table changed (so unprotect_table can undo exactly that)';
SELECT pg_catalog.pg_extension_config_dump('privacy.protected_tables', '');
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.protected_tables FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.protected_tables FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.protected_tables ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

CREATE FUNCTION privacy_internal.consent_required() RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_consent_required' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.purpose_held() RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_purpose_held' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.subject_int8(text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_subject_int8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE INDEX consent_state_int8 ON privacy.consent_state (purpose, privacy_internal.subject_int8(subject))
    WHERE privacy_internal.subject_int8(subject) IS NOT NULL;
CREATE FUNCTION privacy_internal.seal_row() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_seal_row' LANGUAGE C;

-- What a policy may read of the consent state: the declared purpose only,
-- and only for a role that holds it (readers have no access to the table).
CREATE FUNCTION privacy_internal.held_purpose() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_held_purpose' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.wanted_state() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_wanted_state' LANGUAGE C STABLE PARALLEL SAFE;

CREATE VIEW privacy.purpose_consent_state AS
SELECT cs.subject, privacy_internal.subject_int8(cs.subject) AS subject_int8, cs.state
  FROM privacy.consent_state cs
 WHERE cs.purpose OPERATOR(pg_catalog.=) privacy_internal.held_purpose();
COMMENT ON VIEW privacy.purpose_consent_state IS
    'consent state for the declared purpose, as row-level security policies see it';

-- The visibility policy.  It must not call a function per row that reads
-- the ledger: it is one correlated EXISTS on the consent state of the
-- declared purpose, which the planner runs as a hashed subplan when many
-- rows are read (one hash table per statement) and as an index probe for a
-- point lookup.  The purpose check, and whether the purpose needs consent,
-- are evaluated once per statement (an InitPlan): a consent-based purpose
-- shows the subjects for whom a granted consent EXISTS, any other legal
-- basis shows the subjects for whom no objection EXISTS, so the policy is
--   consent_required = EXISTS (row in state consent_required ? granted : objected)  An objection to a consent-based purpose
-- also ends its consent (the state is one per subject and purpose).
CREATE FUNCTION privacy_internal.policy_expr(subject_column name, subject_type regtype) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format(
        '(SELECT privacy_internal.consent_required()) OPERATOR(pg_catalog.=) EXISTS ('
        'SELECT 1 FROM privacy.purpose_consent_state c '
        ' WHERE %2$s OPERATOR(pg_catalog.=) %1$s '
        '   AND c.state OPERATOR(pg_catalog.=) privacy_internal.wanted_state())',
        CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
             THEN format('%I::pg_catalog.int8', subject_column)
             ELSE format('%I::pg_catalog.text', subject_column) END,
        CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
             THEN 'c.subject_int8'
             ELSE 'c.subject' END)
$$;

-- Every table below a table: partitions and children of inheritance alike.
CREATE FUNCTION privacy_internal.descendants(tbl regclass) RETURNS SETOF regclass
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d(relid) AS (
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = tbl
        UNION
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent = d.relid)
    SELECT relid::regclass FROM d
$$;

CREATE FUNCTION privacy_internal.policy_subject_column(regclass) RETURNS name
    AS 'MODULE_PATHNAME', 'privacy_policy_subject_column' LANGUAGE C STRICT STABLE;

-- The seal trigger of a protected table (partitions get theirs cloned from
-- the partitioned table; children of inheritance need their own).
CREATE FUNCTION privacy_internal.create_seal_trigger(tbl regclass, subject_column name) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = tbl AND t.tgname = 'privacy_seal_row' AND NOT t.tgisinternal) THEN
        EXECUTE format('DROP TRIGGER privacy_seal_row ON %s', tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER privacy_seal_row BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION privacy_internal.seal_row(%L)', tbl, subject_column);
END
$$;

CREATE FUNCTION privacy_internal.protect_one(tbl regclass, subject_column name, parent regclass,
                                     reseal boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    subject_type regtype;
    base boolean;
    sets text;
BEGIN
    SELECT c.relrowsecurity, c.relforcerowsecurity, c.relkind INTO rel
      FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    SELECT a.atttypid::regtype INTO subject_type FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = subject_column AND a.attnum > 0 AND NOT a.attisdropped;
    -- a permissive policy keeps the table readable where RLS was off before;
    -- where the table had RLS already, its own policies keep deciding
    base := NOT rel.relrowsecurity;
    INSERT INTO privacy.protected_tables (tbl, subject_column, parent, rls_was_enabled, rls_was_forced, base_policy)
    VALUES (tbl, subject_column, parent, rel.relrowsecurity, rel.relforcerowsecurity, base);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    IF base THEN
        EXECUTE format('CREATE POLICY privacy_base ON %s AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)', tbl);
    END IF;
    EXECUTE format('CREATE POLICY privacy_visibility ON %s AS RESTRICTIVE FOR ALL USING (%s) WITH CHECK (privacy_internal.purpose_held())',
                   tbl, privacy_internal.policy_expr(subject_column, subject_type));
    -- an UPDATE may not hand a row to a subject the purpose may not see
    EXECUTE format('CREATE POLICY privacy_update ON %s AS RESTRICTIVE FOR UPDATE USING (true) WITH CHECK (%s)',
                   tbl, privacy_internal.policy_expr(subject_column, subject_type));
    -- row triggers on a partitioned table are cloned to its partitions
    IF parent IS NULL OR NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        PERFORM privacy_internal.create_seal_trigger(tbl, subject_column);
    END IF;
    IF parent IS NULL OR reseal THEN
        -- rows already there move under their subject's key too
        SELECT string_agg(format('%1$I = privacy.seal_for_subject(%1$I, %2$I::pg_catalog.text)',
                                 a.attname, subject_column), ', ')
          INTO sets
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype);
        IF sets IS NOT NULL THEN
            EXECUTE format('UPDATE %s SET %s WHERE %I IS NOT NULL', tbl, sets, subject_column);
        END IF;
    END IF;
END
$$;

CREATE FUNCTION privacy.protect_table(tbl regclass, subject_column name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind "char";
    part regclass;
BEGIN
    SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = format('%s is not a table', tbl),
            HINT = 'Only ordinary and partitioned tables can be protected.';
    END IF;
    IF EXISTS (SELECT 1 FROM privacy.protected_tables p WHERE p.tbl = protect_table.tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('table %s is already protected', tbl),
            HINT = 'Use privacy.unprotect_table() first to change its subject column.';
    END IF;
    IF (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = format('%s is a partition', tbl),
            HINT = 'Protect the partitioned table; its partitions, present and future, follow.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = subject_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of relation %s does not exist', subject_column, tbl);
    END IF;
    PERFORM privacy_internal.protect_one(tbl, subject_column, NULL);
    -- (the event trigger may already have protected them, as protect_one's
    -- ALTER TABLE commands fire it)
    FOR part IN SELECT d FROM privacy_internal.descendants(tbl) d
                 WHERE NOT EXISTS (SELECT 1 FROM privacy.protected_tables q WHERE q.tbl = d)
    LOOP
        -- children of inheritance are not covered by the UPDATE through the
        -- parent above if their columns differ; reseal them on their own
        PERFORM privacy_internal.protect_one(part, subject_column, tbl,
                                     NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = part));
    END LOOP;
END
$$;
COMMENT ON FUNCTION privacy.protect_table(regclass, name) IS
    'put a table (and its partitions) under consent-aware row-level security, with per-subject keys for its encrypted columns';

CREATE FUNCTION privacy.unprotect_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM privacy.protected_tables pt WHERE pt.tbl = unprotect_table.tbl AND pt.parent IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('table %s is not protected', tbl);
    END IF;
    -- forget first: the ALTER TABLE commands below fire the event trigger
    -- that protects partitions of protected tables
    FOR p IN WITH gone AS (
                 DELETE FROM privacy.protected_tables pt
                  WHERE pt.tbl = unprotect_table.tbl OR pt.parent = unprotect_table.tbl
                 RETURNING *)
             SELECT * FROM gone ORDER BY parent NULLS LAST
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS privacy_visibility ON %s', p.tbl);
        EXECUTE format('DROP POLICY IF EXISTS privacy_update ON %s', p.tbl);
        IF p.base_policy THEN
            EXECUTE format('DROP POLICY IF EXISTS privacy_base ON %s', p.tbl);
        END IF;
        IF p.parent IS NULL OR NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = p.tbl) THEN
            EXECUTE format('DROP TRIGGER IF EXISTS privacy_seal_row ON %s', p.tbl);
        END IF;
        IF NOT p.rls_was_forced THEN
            EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', p.tbl);
        END IF;
        IF NOT p.rls_was_enabled THEN
            EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', p.tbl);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION privacy.unprotect_table(regclass) IS
    'undo exactly what privacy.protect_table() did (values stay sealed under their subject keys)';

-- New partitions of a protected table are protected as they appear.
CREATE FUNCTION privacy_internal.protect_new_partitions() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    actual name;
    touched oid[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM privacy.protected_tables) THEN
        RETURN;
    END IF;
    -- tables touched by the command, and every table below them
    SELECT array_agg(DISTINCT x.relid) INTO touched FROM (
        SELECT c.oid AS relid FROM pg_catalog.pg_event_trigger_ddl_commands() d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
         WHERE c.relkind IN ('r', 'p')) t
    CROSS JOIN LATERAL (SELECT t.relid UNION ALL SELECT privacy_internal.descendants(t.relid::regclass)::oid) x(relid);
    IF touched IS NULL THEN
        RETURN;
    END IF;

    -- a renamed subject column: the policy follows the rename, the register
    -- and the seal triggers follow the policy
    FOR r IN SELECT pt.tbl, pt.subject_column FROM privacy.protected_tables pt
              WHERE pt.parent IS NULL AND pt.tbl::oid = ANY (touched)
    LOOP
        actual := privacy_internal.policy_subject_column(r.tbl);
        IF actual IS NOT NULL AND actual <> r.subject_column THEN
            UPDATE privacy.protected_tables pt SET subject_column = actual
             WHERE pt.tbl = r.tbl OR pt.parent = r.tbl;
            PERFORM privacy_internal.create_seal_trigger(q.tbl, actual)
               FROM privacy.protected_tables q JOIN pg_catalog.pg_class c ON c.oid = q.tbl
              WHERE q.tbl = r.tbl OR (q.parent = r.tbl AND NOT c.relispartition);
        END IF;
    END LOOP;

    -- a detached partition or a child no longer inheriting: it stays
    -- protected, on its own
    FOR r IN SELECT pt.tbl, pt.subject_column FROM privacy.protected_tables pt
              WHERE pt.parent IS NOT NULL
                AND (pt.tbl::oid = ANY (touched) OR pt.parent::oid = ANY (touched))
                AND pt.tbl NOT IN (SELECT privacy_internal.descendants(pt.parent))
    LOOP
        UPDATE privacy.protected_tables pt SET parent = NULL WHERE pt.tbl = r.tbl;
        PERFORM privacy_internal.create_seal_trigger(r.tbl, r.subject_column);
    END LOOP;

    -- new partitions and children of protected tables (CREATE TABLE ...
    -- PARTITION OF / INHERITS names the new table, ATTACH PARTITION and
    -- INHERIT name the parent: look at everything below what was touched)
    FOR r IN
        SELECT DISTINCT t.relid::regclass AS part, pt.tbl AS root, pt.subject_column
          FROM pg_catalog.unnest(touched) t(relid)
          JOIN privacy.protected_tables pt ON pt.parent IS NULL
                                          AND t.relid IN (SELECT privacy_internal.descendants(pt.tbl)::oid)
         WHERE NOT EXISTS (SELECT 1 FROM privacy.protected_tables q WHERE q.tbl::oid = t.relid)
    LOOP
        -- a table attached with rows brings them under subject keys
        PERFORM privacy_internal.protect_one(r.part, r.subject_column, r.root, true);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_protect_new_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION privacy_internal.protect_new_partitions();

-- A dropped table leaves nothing behind in the registers.
CREATE FUNCTION privacy_internal.forget_dropped() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM privacy.protected_tables pt
     WHERE pt.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                            WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
    DELETE FROM privacy.column_categories cc
     WHERE cc.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                            WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
END
$$;
CREATE EVENT TRIGGER privacy_forget_dropped ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION privacy_internal.forget_dropped();

CREATE VIEW privacy.protected AS
SELECT pt.tbl AS table_name, pt.subject_column, pt.parent,
       pt.protected_at, pt.protected_by
  FROM privacy.protected_tables pt;
COMMENT ON VIEW privacy.protected IS 'protected tables and partitions with their subject column';

-- ==== sql/install/07_access_log.sql
/*
 * 07_access_log.sql — the access log: batches, views, verification (C: audit*.c, logchain.c).
 */

------------------------------------------------------------------------------
-- Access log: one entry per statement per protected table, and one per
-- subject whose values a statement opened.  Written only by the access log
-- writer (a background worker), chained by a keyed MAC (audit.c); nobody
-- but the extension's retention deletes from it.  The writer stores the
-- entries of each flush packed in a few rows of access_log_batches (cheap
-- to write); the views access_log and access_log_subjects unpack them.
------------------------------------------------------------------------------
CREATE TABLE privacy.access_log_batches (
    first_seq  bigint PRIMARY KEY,
    last_seq   bigint NOT NULL,
    written_at timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    subjects   bigint[] NOT NULL,
    entries    bytea NOT NULL,
    nonce      bytea NOT NULL     -- the batch's MAC keys come from it (logchain.h)
);
CREATE INDEX access_log_batches_subjects ON privacy.access_log_batches
    USING gin (subjects) WITH (fastupdate = on);
-- pglz would take two thirds of the writer's time compressing the entries:
-- lz4 where the server was built with it, else no compression; the subject
-- keys (random) are not worth compressing
ALTER TABLE privacy.access_log_batches ALTER COLUMN subjects SET STORAGE EXTERNAL;
DO $$
BEGIN
    IF 'lz4' = ANY ((SELECT s.enumvals FROM pg_catalog.pg_settings s
                      WHERE s.name = 'default_toast_compression')::text[]) THEN
        ALTER TABLE privacy.access_log_batches ALTER COLUMN entries SET COMPRESSION lz4;
    ELSE
        ALTER TABLE privacy.access_log_batches ALTER COLUMN entries SET STORAGE EXTERNAL;
    END IF;
END
$$;
COMMENT ON TABLE privacy.access_log_batches IS
    'the access log as the writer stores it: entries first_seq to last_seq packed in entries (seq, canonical bytes, MAC each), the subjects they mention as 8-byte keys, the newest statement time (for retention)';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_batches', '');

CREATE FUNCTION privacy_internal.access_log_statements(entries bytea, only_seq bigint DEFAULT NULL)
    RETURNS TABLE (seq bigint, at timestamptz, session_role text, acting_role text, application text,
                   client_addr text, backend_pid integer, purpose text, command text, relid oid,
                   relation text, columns text[], categories text[], rows bigint, query_id bigint,
                   level integer, outcome text, mac bytea)
    AS 'MODULE_PATHNAME', 'privacy_access_log_statements' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_statements(bytea, bigint) IS
    'the statement events packed in one access_log_batches.entries (only the one with seq = only_seq, when given)';

CREATE FUNCTION privacy_internal.access_log_subject_entries(entries bytea, subject_hash bytea DEFAULT NULL)
    RETURNS TABLE (seq bigint, event bigint, subject_hash bytea, category text, opened bigint, mac bytea)
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_entries' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_subject_entries(bytea, bytea) IS
    'the subject entries packed in one access_log_batches.entries (only those of subject_hash, when given)';

CREATE FUNCTION privacy_internal.access_log_subject_key(subject_hash bytea) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_subject_key(bytea) IS
    'the key access_log_batches.subjects holds for a subject hash: its first 8 bytes as a bigint';

CREATE VIEW privacy.access_log AS
SELECT e.* FROM privacy.access_log_batches b, LATERAL privacy_internal.access_log_statements(b.entries) e;
COMMENT ON VIEW privacy.access_log IS
    'who accessed which protected table, when, as which roles, for which purpose, which personal columns and how many rows; never statement text';

CREATE VIEW privacy.access_log_subjects AS
SELECT e.* FROM privacy.access_log_batches b, LATERAL privacy_internal.access_log_subject_entries(b.entries) e;
COMMENT ON VIEW privacy.access_log_subjects IS
    'whose encrypted values a logged statement (event = access_log.seq) opened: the subject''s keyed hash, the category and how many values';

-- Indexed lookups (the views above unpack every batch).  Both are inlined
-- SQL running as their caller: only who may read the log gets anything.
CREATE FUNCTION privacy_internal.access_log_for_subject(subject_hash bytea)
    RETURNS SETOF privacy.access_log_subjects
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT e.* FROM privacy.access_log_batches b,
       LATERAL privacy_internal.access_log_subject_entries(b.entries, $1) e
 WHERE b.subjects @> ARRAY[privacy_internal.access_log_subject_key($1)]
$$;
COMMENT ON FUNCTION privacy_internal.access_log_for_subject(bytea) IS
    'the rows of privacy.access_log_subjects of one subject hash, found through the batches'' subject index';

CREATE FUNCTION privacy_internal.access_log_event(seq bigint)
    RETURNS SETOF privacy.access_log
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT e.* FROM (SELECT b.entries FROM privacy.access_log_batches b
                  WHERE b.first_seq <= $1 ORDER BY b.first_seq DESC LIMIT 1) b,
       LATERAL privacy_internal.access_log_statements(b.entries, $1) e
$$;
COMMENT ON FUNCTION privacy_internal.access_log_event(bigint) IS
    'the row of privacy.access_log with this seq, found through the batches'' primary key';

CREATE TABLE privacy.access_log_anchors (
    first_seq  bigint PRIMARY KEY,
    anchor     bytea NOT NULL,
    removed    bigint NOT NULL,
    trimmed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    mac        bytea NOT NULL
);
COMMENT ON TABLE privacy.access_log_anchors IS
    'where the access log starts after its retention removed older entries: the MAC of the last removed entry, itself authenticated';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_anchors', '');

CREATE TABLE privacy.access_log_verifications (
    verified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    verified_by name NOT NULL DEFAULT session_user,
    status      text NOT NULL,
    seq         bigint,
    checked     bigint NOT NULL,
    detail      text
);
COMMENT ON TABLE privacy.access_log_verifications IS
    'every run of privacy.verify_access_log() and what it found';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_verifications', '');

-- Which role used which purpose, and when first and last: the writer keeps
-- it with every batch, so that the compliance gaps need not unpack the
-- whole log.  Derived from the log (not chained); trimming the log keeps it.
CREATE TABLE privacy.access_log_purpose_use (
    acting_role name NOT NULL,
    purpose     text NOT NULL,
    first_used  timestamptz NOT NULL,
    last_used   timestamptz NOT NULL,
    PRIMARY KEY (acting_role, purpose)
);
COMMENT ON TABLE privacy.access_log_purpose_use IS
    'each (acting role, declared purpose) in the access log, with the first and last statement time: kept by the log writer';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_purpose_use', '');

-- Runs as its caller (the C code reads the log as the extension's owner),
-- so that each run is recorded under the role that asked for it.
CREATE FUNCTION privacy.verify_access_log(OUT status text, OUT seq bigint, OUT checked bigint, OUT detail text)
    AS 'MODULE_PATHNAME', 'privacy_verify_access_log' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.verify_access_log() IS
    'recompute the access log''s MAC chain: ok, or the first entry that is missing, altered or out of order';

CREATE FUNCTION privacy.flush_access_log(timeout_ms integer DEFAULT 10000) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_flush_access_log' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.flush_access_log(integer) IS
    'wait until every access event queued so far is committed to privacy.access_log (false: the timeout passed first)';

CREATE FUNCTION privacy.access_log_status(OUT enabled boolean, OUT strict boolean, OUT queue_bytes bigint,
                                          OUT queued_bytes bigint, OUT writer_pid integer, OUT last_seq bigint)
    AS 'MODULE_PATHNAME', 'privacy_access_log_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.access_log_status() IS
    'the access log of this database: settings, bytes waiting in shared memory, the writer and the last entry it wrote since the server started';

CREATE FUNCTION privacy_internal.trim_access_log() RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_trim_access_log' LANGUAGE C VOLATILE;

CREATE FUNCTION privacy.trim_access_log() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'SELECT privacy_internal.trim_access_log()';
COMMENT ON FUNCTION privacy.trim_access_log() IS
    'delete access log entries older than privacy.access_log_retention, keeping the chain verifiable; run by CALL privacy.purge()';

-- The log is written by the writer worker only; the compliance role reads it.
REVOKE ALL ON privacy.access_log_batches, privacy.access_log, privacy.access_log_subjects,
    privacy.access_log_anchors, privacy.access_log_verifications, privacy.access_log_purpose_use FROM PUBLIC;
GRANT SELECT ON privacy.access_log_batches, privacy.access_log, privacy.access_log_subjects,
    privacy.access_log_anchors, privacy.access_log_verifications, privacy.access_log_purpose_use TO privacy_officer;
REVOKE ALL ON FUNCTION privacy_internal.trim_access_log() FROM PUBLIC;
-- (the views call these as the reading role)
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_statements(bytea, bigint),
    privacy_internal.access_log_subject_entries(bytea, bytea), privacy_internal.access_log_subject_key(bytea),
    privacy_internal.access_log_for_subject(bytea), privacy_internal.access_log_event(bigint)
  TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.verify_access_log(), privacy.flush_access_log(integer),
    privacy.access_log_status(), privacy.trim_access_log()
  TO privacy_officer;

-- ==== sql/install/08_retention.sql
/*
 * 08_retention.sql — retention rules, legal holds, previews and batched purges (C: worker.c).
 */

------------------------------------------------------------------------------
-- Retention: rules, legal holds, previews and batched purges
------------------------------------------------------------------------------
CREATE TABLE privacy.retention_rules (
    tbl          regclass PRIMARY KEY,
    time_column  name NOT NULL,
    keep         interval NOT NULL CHECK (keep > interval '0'),
    action       text NOT NULL CHECK (action IN ('delete', 'anonymize')),
    anonymize    jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by   name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE privacy.retention_rules IS
    'how long rows of a protected table may be kept, by a time column, and what happens after: delete, or anonymize the listed columns (column -> masking value, null = NULL)';
SELECT pg_catalog.pg_extension_config_dump('privacy.retention_rules', '');

CREATE SEQUENCE privacy.hold_id_seq;
CREATE TABLE privacy.holds (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.hold_id_seq'),
    subject      text NOT NULL,
    reason       text NOT NULL CHECK (reason <> ''),
    until        timestamptz,
    placed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    placed_by    name NOT NULL DEFAULT session_user,
    released_at  timestamptz,
    released_by  name
);
ALTER SEQUENCE privacy.hold_id_seq OWNED BY privacy.holds.id;
CREATE INDEX ON privacy.holds (subject) WHERE released_at IS NULL;
COMMENT ON TABLE privacy.holds IS 'legal holds: purge and erasure skip a subject while a hold is active';
SELECT pg_catalog.pg_extension_config_dump('privacy.holds', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.hold_id_seq', '');

CREATE VIEW privacy.active_holds AS
SELECT h.id, h.subject, h.reason, h.until, h.placed_at, h.placed_by
  FROM privacy.holds h
 WHERE h.released_at IS NULL AND (h.until IS NULL OR h.until > pg_catalog.now());

CREATE SEQUENCE privacy.purge_run_id_seq;
CREATE TABLE privacy.purge_runs (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.purge_run_id_seq'),
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at  timestamptz,
    started_by   name NOT NULL DEFAULT session_user,
    via          text NOT NULL DEFAULT 'call' CHECK (via IN ('call', 'worker')),
    batch_size   integer NOT NULL,
    time_budget  interval,
    outcome      text NOT NULL DEFAULT 'running'
                 CHECK (outcome IN ('running', 'completed', 'stopped', 'failed', 'interrupted')),
    error        text,
    pid          integer
);
ALTER SEQUENCE privacy.purge_run_id_seq OWNED BY privacy.purge_runs.id;
CREATE TABLE privacy.purge_run_tables (
    run_id       bigint NOT NULL REFERENCES privacy.purge_runs ON DELETE CASCADE,
    tbl          regclass NOT NULL,
    action       text NOT NULL,
    cutoff       timestamptz NOT NULL,
    matched      bigint NOT NULL DEFAULT 0,
    purged       bigint NOT NULL DEFAULT 0,
    held         bigint NOT NULL DEFAULT 0,
    batches      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, tbl)
);
COMMENT ON TABLE privacy.purge_runs IS 'every purge run: who started it, how, and how it ended (interrupted runs are marked by the next run)';
COMMENT ON TABLE privacy.purge_run_tables IS 'per table and run: rows due when the table was reached, rows purged, rows held';
SELECT pg_catalog.pg_extension_config_dump('privacy.purge_runs', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.purge_run_tables', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.purge_run_id_seq', '');

CREATE FUNCTION privacy.set_retention(tbl regclass, time_column name, keep interval, action text,
                                      anonymize name[] DEFAULT NULL, masks jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name;
    att record;
    spec jsonb := '{}';
    subject name;
BEGIN
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt
     WHERE pt.tbl = set_retention.tbl AND pt.parent IS NULL;
    IF subject IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('table %s is not protected', tbl),
            HINT = 'Retention rules apply to protected tables: run privacy.protect_table() first.';
    END IF;
    SELECT a.atttypid INTO att FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = time_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of relation %s does not exist', time_column, tbl);
    END IF;
    IF att.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = format('column "%s" of %s is of type %s, not a timestamp', time_column, tbl, att.atttypid::regtype),
            HINT = 'The time column is a timestamp with or without time zone, or a date.';
    END IF;
    IF keep IS NULL OR keep <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retention period must be positive, not %s', coalesce(keep::text, 'NULL'));
    END IF;
    IF action IS NULL OR action NOT IN ('delete', 'anonymize') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid retention action %s', coalesce(quote_literal(action), 'NULL')),
            HINT = 'Use delete, or anonymize with the columns to clear.';
    END IF;
    IF action = 'delete' AND (coalesce(cardinality(anonymize), 0) > 0 OR masks IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'columns to anonymize are given for a rule that deletes rows';
    END IF;
    IF action = 'anonymize' THEN
        IF coalesce(cardinality(anonymize), 0) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'an anonymizing rule needs the columns to anonymize',
                HINT = 'Pass them as ARRAY[''email'', ''phone''].';
        END IF;
        IF masks IS NOT NULL AND jsonb_typeof(masks) <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'masks must be a JSON object mapping columns to masking values';
        END IF;
        FOREACH col IN ARRAY anonymize LOOP
            SELECT a.atttypid, a.attnotnull INTO att FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'undefined_column',
                    MESSAGE = format('column "%s" of relation %s does not exist', col, tbl);
            END IF;
            IF col IN (subject, time_column) THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = format('column "%s" cannot be anonymized', col),
                    DETAIL = 'The subject column and the time column identify what the rule applies to.';
            END IF;
            IF masks IS NOT NULL AND masks ? col THEN
                IF att.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype)
                   AND jsonb_typeof(masks -> col) <> 'null' THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                        MESSAGE = format('encrypted column "%s" can only be anonymized to NULL', col),
                        HINT = 'Its subject''s values are shredded with the subject''s key; a masking value would be a new personal value.';
                END IF;
                spec := spec || jsonb_build_object(col, masks -> col);
            ELSE
                IF att.attnotnull THEN
                    RAISE EXCEPTION USING ERRCODE = 'not_null_violation',
                        MESSAGE = format('column "%s" of %s is NOT NULL and has no masking value', col, tbl),
                        HINT = format('Give one: masks => ''{"%s": "..."}''.', col);
                END IF;
                spec := spec || jsonb_build_object(col, NULL::text);
            END IF;
        END LOOP;
    END IF;
    INSERT INTO privacy.retention_rules AS r (tbl, time_column, keep, action, anonymize)
    VALUES (tbl, time_column, keep, action, spec)
    ON CONFLICT ON CONSTRAINT retention_rules_pkey DO UPDATE
       SET time_column = EXCLUDED.time_column, keep = EXCLUDED.keep, action = EXCLUDED.action,
           anonymize = EXCLUDED.anonymize, created_at = now(), created_by = session_user;
END
$$;
COMMENT ON FUNCTION privacy.set_retention(regclass, name, interval, text, name[], jsonb) IS
    'set how long rows of a protected table are kept, by a time column, and whether they are then deleted or anonymized';

CREATE FUNCTION privacy.drop_retention(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM privacy.retention_rules r WHERE r.tbl = drop_retention.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('table %s has no retention rule', tbl);
    END IF;
END
$$;

-- The SET list that anonymizes a row under a rule.
CREATE FUNCTION privacy_internal.anonymize_sets(r privacy.retention_rules) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I = %s', c.col, CASE WHEN jsonb_typeof(r.anonymize -> c.col) = 'null' THEN 'NULL'
                                                     ELSE quote_literal(r.anonymize ->> c.col) END), ', ' ORDER BY c.col)
      FROM jsonb_object_keys(r.anonymize) AS c(col)
$$;

CREATE FUNCTION privacy_internal.require_subject(subject text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'subject must not be empty';
    END IF;
END
$$;

CREATE FUNCTION privacy.place_hold(subject text, reason text, until timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a legal hold needs a reason',
            HINT = 'Name the matter, for example a case number.';
    END IF;
    IF until IS NOT NULL AND until <= now() THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a legal hold cannot end in the past';
    END IF;
    INSERT INTO privacy.holds (subject, reason, until) VALUES (subject, reason, until) RETURNING holds.id INTO id;
    RETURN id;
END
$$;

CREATE FUNCTION privacy.release_hold(subject text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE privacy.holds h SET released_at = now(), released_by = session_user
     WHERE h.subject = release_hold.subject AND h.released_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('subject "%s" has no active legal hold', subject);
    END IF;
    RETURN n;
END
$$;

-- The rows of a rule that are due, as a query over (tableoid, ctid).
CREATE FUNCTION privacy_internal.due_query(r privacy.retention_rules, subject_column name, held boolean,
                                   cutoff timestamptz) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    not_done text := '';
BEGIN
    IF r.action = 'anonymize' THEN
        -- rows already anonymized are not due again
        SELECT string_agg(CASE WHEN jsonb_typeof(r.anonymize -> c.col) = 'null'
                               THEN format('t.%I IS NOT NULL', c.col)
                               ELSE format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col, r.anonymize ->> c.col) END,
                          ' OR ' ORDER BY c.col)
          INTO not_done FROM jsonb_object_keys(r.anonymize) AS c(col);
        not_done := ' AND (' || not_done || ')';
    END IF;
    RETURN format('SELECT t.tableoid, t.ctid FROM %s t WHERE t.%I < %L%s AND %s EXISTS ('
                  'SELECT 1 FROM privacy.holds h WHERE h.subject = t.%I::pg_catalog.text '
                  'AND h.released_at IS NULL AND (h.until IS NULL OR h.until > pg_catalog.now()))',
                  r.tbl, r.time_column, cutoff, not_done, CASE WHEN held THEN '' ELSE 'NOT' END,
                  subject_column);
END
$$;

CREATE FUNCTION privacy.purge_preview()
    RETURNS TABLE (table_name regclass, action text, keep interval, rows_due bigint, rows_held bigint,
                   oldest_due timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.retention_rules;
    subject name;
    cutoff timestamptz;
BEGIN
    FOR r IN SELECT * FROM privacy.retention_rules ORDER BY tbl::text LOOP
        SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
        cutoff := now() - r.keep;
        table_name := r.tbl; action := r.action; keep := r.keep;
        EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, false, cutoff)) INTO rows_due;
        EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, true, cutoff)) INTO rows_held;
        EXECUTE format('SELECT min(t.%I)::timestamptz FROM %s t WHERE (t.tableoid, t.ctid) IN (%s)',
                       r.time_column, r.tbl, privacy_internal.due_query(r, subject, false, cutoff)) INTO oldest_due;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION privacy.purge_preview() IS
    'per table with a retention rule: rows due now, rows held back by legal holds, the oldest due; changes nothing';

-- One batch of one rule, in the caller's transaction: rows locked by
-- others are waited for 100 ms at most, then skipped (SKIP LOCKED) and
-- picked up by a later batch or run.
CREATE FUNCTION privacy_internal.purge_batch(run_id bigint, tbl regclass, batch_size integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.retention_rules;
    subject name;
    cutoff timestamptz;
    sets text;
    stmt text;
    n bigint;
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = purge_batch.tbl;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
    SELECT prt.cutoff INTO cutoff FROM privacy.purge_run_tables prt
     WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    IF r.action = 'delete' THEN
        stmt := format('DELETE FROM %s t WHERE (t.tableoid, t.ctid) IN (%s LIMIT %s',
                       r.tbl, privacy_internal.due_query(r, subject, false, cutoff), batch_size);
    ELSE
        sets := privacy_internal.anonymize_sets(r);
        stmt := format('UPDATE %s t SET %s WHERE (t.tableoid, t.ctid) IN (%s LIMIT %s',
                       r.tbl, sets, privacy_internal.due_query(r, subject, false, cutoff), batch_size);
    END IF;
    -- Usually no application holds a due row: write each row once.  If one
    -- does, wait at most 100 ms, then redo the batch skipping locked rows
    -- (which costs a lock on every row first).
    BEGIN
        -- a shorter lock_timeout of the session wins
        PERFORM pg_catalog.set_config('lock_timeout',
            CASE WHEN pg_catalog.current_setting('lock_timeout') IN ('0', '')
                   OR '100ms'::interval < pg_catalog.current_setting('lock_timeout')::interval
                 THEN '100ms' ELSE pg_catalog.current_setting('lock_timeout') END, true);
        EXECUTE stmt || ')';
        GET DIAGNOSTICS n = ROW_COUNT;
    EXCEPTION WHEN lock_not_available THEN
        EXECUTE stmt || ' FOR UPDATE OF t SKIP LOCKED)';
        GET DIAGNOSTICS n = ROW_COUNT;
    END;
    PERFORM pg_catalog.set_config('lock_timeout', saved_timeout, true);
    UPDATE privacy.purge_run_tables prt SET purged = prt.purged + n, batches = prt.batches + 1
     WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    RETURN n;
END
$$;

-- Start a run: refuse if another is live, mark runs left 'running' by a
-- crashed or cancelled session as interrupted, and record what each table
-- has due and held.
CREATE FUNCTION privacy_internal.purge_start(batch_size integer, time_budget interval, via text, caller name) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run bigint;
    r privacy.retention_rules;
    subject name;
    cutoff timestamptz := now();
    due bigint;
    held bigint;
    live integer;
BEGIN
    -- one purge at a time: a run is live while its backend is busy with it;
    -- one left behind by a crash, a cancel or a terminate is interrupted
    PERFORM pg_advisory_xact_lock(hashtext('privacy.purge'));
    SELECT pr.pid INTO live FROM privacy.purge_runs pr
      JOIN pg_catalog.pg_stat_activity a ON a.pid = pr.pid
     WHERE pr.outcome = 'running' AND a.state = 'active' AND a.pid <> pg_backend_pid()
     LIMIT 1;
    IF live IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
            MESSAGE = 'another purge is running in this database',
            DETAIL = format('Backend %s is running it.', live),
            HINT = 'privacy.purge_progress shows it; run again when it has finished.';
    END IF;
    UPDATE privacy.purge_runs pr SET outcome = 'interrupted', finished_at = coalesce(pr.finished_at, clock_timestamp())
     WHERE pr.outcome = 'running';
    INSERT INTO privacy.purge_runs (batch_size, time_budget, via, started_by, pid)
    VALUES (batch_size, time_budget, via, caller, pg_backend_pid())
    RETURNING id INTO run;
    FOR r IN SELECT * FROM privacy.retention_rules ORDER BY tbl::text LOOP
        SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
        IF NOT EXISTS (SELECT 1 FROM privacy.active_holds) THEN
            -- no hold: nothing is held, and what is due needs no anti-join
            EXECUTE format('SELECT count(*) FROM %s t WHERE t.%I < %L', r.tbl, r.time_column, cutoff - r.keep)
               INTO due;
            IF r.action = 'anonymize' THEN
                EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, false, cutoff - r.keep))
                   INTO due;
            END IF;
            held := 0;
        ELSE
            EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, false, cutoff - r.keep)) INTO due;
            EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, true, cutoff - r.keep)) INTO held;
        END IF;
        INSERT INTO privacy.purge_run_tables (run_id, tbl, action, cutoff, matched, held)
        VALUES (run, r.tbl, r.action, cutoff - r.keep, due, held);
    END LOOP;
    RETURN run;
END
$$;

CREATE FUNCTION privacy_internal.purge_finish(run bigint, outcome text, error text) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE privacy.purge_runs pr SET outcome = purge_finish.outcome, error = purge_finish.error,
           finished_at = clock_timestamp()
     WHERE pr.id = run
$$;

-- The purge.  A procedure so that it can commit after every batch (and
-- therefore not SECURITY DEFINER: its batches are).  One purge at a time
-- per database: a run is live while its backend is active; a run left
-- 'running' by a crash, a cancel or a terminate is marked interrupted.
CREATE PROCEDURE privacy.purge(batch_size integer DEFAULT 10000, time_budget interval DEFAULT NULL,
                               via text DEFAULT 'call')
    LANGUAGE plpgsql
AS $$
DECLARE
    run bigint;
    t record;
    n bigint;
    total bigint := 0;
    trimmed bigint;
    batches integer := 0;
    started timestamptz := pg_catalog.clock_timestamp();
    failure text;
    out_of_time boolean := false;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_size must be at least 1';
    END IF;
    run := privacy_internal.purge_start(batch_size, time_budget, via, current_user);
    COMMIT;
    FOR t IN SELECT prt.tbl, prt.matched FROM privacy.purge_run_tables prt WHERE prt.run_id = run ORDER BY prt.tbl::text LOOP
        LOOP
            IF time_budget IS NOT NULL AND pg_catalog.clock_timestamp() - started > time_budget THEN
                out_of_time := true;
                EXIT;
            END IF;
            BEGIN
                n := privacy_internal.purge_batch(run, t.tbl, batch_size);
            EXCEPTION WHEN OTHERS THEN
                failure := SQLERRM;
            END;
            IF failure IS NOT NULL THEN
                EXIT;
            END IF;
            COMMIT;
            total := total + n;
            batches := batches + 1;
            IF batches % 10 = 0 THEN
                RAISE NOTICE 'purge run %: % rows purged so far (table %)', run, total, t.tbl;
            END IF;
            EXIT WHEN n < batch_size;
        END LOOP;
        EXIT WHEN failure IS NOT NULL OR out_of_time;
    END LOOP;
    PERFORM privacy_internal.purge_finish(run, CASE WHEN failure IS NOT NULL THEN 'failed'
                                            WHEN out_of_time THEN 'stopped' ELSE 'completed' END, failure);
    COMMIT;
    -- the access log's own retention
    trimmed := privacy.trim_access_log();
    IF trimmed > 0 THEN
        RAISE NOTICE 'access log: % entries past privacy.access_log_retention removed', trimmed;
    END IF;
    COMMIT;
    IF failure IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'external_routine_exception',
            MESSAGE = format('purge run %s failed', run),
            DETAIL = failure,
            HINT = 'The batches committed before the failure stay done; the next run goes on from there.';
    END IF;
    RAISE NOTICE 'purge run % %: % rows purged', run,
        CASE WHEN out_of_time THEN 'stopped at its time budget' ELSE 'completed' END, total;
END
$$;
COMMENT ON PROCEDURE privacy.purge(integer, interval, text) IS
    'delete or anonymize rows past their retention, in batches committed one by one; held subjects are skipped; resumable';

COMMENT ON COLUMN privacy.purge_runs.started_by IS 'the role that called privacy.purge(), or the worker';

CREATE VIEW privacy.purge_progress AS
SELECT pr.id AS run_id, pr.started_at, pr.started_by, pr.via, pr.outcome,
       prt.tbl AS table_name, prt.action, prt.matched, prt.purged, prt.held, prt.batches,
       pg_catalog.clock_timestamp() - pr.started_at AS running_for
  FROM privacy.purge_runs pr
  JOIN privacy.purge_run_tables prt ON prt.run_id = pr.id
 WHERE pr.outcome = 'running';
COMMENT ON VIEW privacy.purge_progress IS 'the purge running now, per table';

-- ==== sql/install/09_erasure.sql
/*
 * 09_erasure.sql — erasure of a subject, and its record.
 */

------------------------------------------------------------------------------
-- Erasure of a subject (right to erasure, GDPR Art. 17)
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.erasure_id_seq;
CREATE TABLE privacy.erasures (
    id                     bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.erasure_id_seq'),
    subject_hash           bytea NOT NULL,
    reason                 text NOT NULL,
    erased_at              timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    erased_by              name NOT NULL,
    tables                 jsonb NOT NULL,
    keys_destroyed         integer NOT NULL,
    consent_events_reduced bigint NOT NULL
);
ALTER SEQUENCE privacy.erasure_id_seq OWNED BY privacy.erasures.id;
CREATE INDEX ON privacy.erasures (subject_hash);
COMMENT ON TABLE privacy.erasures IS
    'proof of each erasure: when, why, by whom and what, with the subject only as its keyed hash';
SELECT pg_catalog.pg_extension_config_dump('privacy.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.erasure_id_seq', '');

CREATE FUNCTION privacy_internal.caller() RETURNS name
    AS 'MODULE_PATHNAME', 'privacy_caller' LANGUAGE C STABLE;
CREATE FUNCTION privacy_internal.reduce_ledger(subject text, stand_in text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_reduce_ledger' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hold record;
    pt record;
    r privacy.retention_rules;
    subject_type regtype;
    match text;
    sets text;
    n bigint;
    done jsonb := '{}';
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    erasure_id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'an erasure needs a reason',
            HINT = 'Name the request, for example its number.';
    END IF;
    SELECT h.reason, h.until INTO hold FROM privacy.active_holds h WHERE h.subject = erase_subject.subject LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('subject "%s" is under a legal hold', subject),
            DETAIL = format('Hold: %s%s.', hold.reason,
                            CASE WHEN hold.until IS NOT NULL THEN ', until ' || hold.until::text ELSE '' END),
            HINT = 'Nothing was erased. Release the hold with privacy.release_hold() when the matter allows it.';
    END IF;

    -- the subject's rows, in every protected table (partitions through their root)
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        SELECT a.atttypid::regtype INTO subject_type FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = pt.tbl AND a.attname = pt.subject_column;
        match := CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                      THEN format('t.%I = privacy_internal.subject_int8(%L)', pt.subject_column, subject)
                      ELSE format('t.%I::pg_catalog.text = %L', pt.subject_column, subject) END;
        SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = pt.tbl;
        IF r.action = 'anonymize' THEN
            sets := privacy_internal.anonymize_sets(r);
            EXECUTE format('UPDATE %s t SET %s WHERE %s', pt.tbl, sets, match);
        ELSE
            EXECUTE format('DELETE FROM %s t WHERE %s', pt.tbl, match);
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        done := done || jsonb_build_object(pt.tbl::text,
                    jsonb_build_object('action', CASE WHEN r.action = 'anonymize' THEN 'anonymized' ELSE 'deleted' END,
                                       'rows', n));
    END LOOP;

    -- every copy of the subject's encrypted values, anywhere, becomes unreadable
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');
    keys := privacy.destroy_subject_key(subject);

    -- consent: the current state goes; the history keeps what proves that
    -- consent was honoured (purpose, action, time, source), not who
    DELETE FROM privacy.consent_state cs WHERE cs.subject = erase_subject.subject;
    reduced := privacy_internal.reduce_ledger(subject, stand_in);
    UPDATE privacy.holds h SET subject = stand_in WHERE h.subject = erase_subject.subject;

    INSERT INTO privacy.erasures (subject_hash, reason, erased_by, tables, keys_destroyed, consent_events_reduced)
    VALUES (hash, reason, privacy_internal.caller(), done, keys, reduced)
    RETURNING id INTO erasure_id;
    SELECT jsonb_build_object('erasure', e.id, 'subject_hash', encode(e.subject_hash, 'hex'),
                              'reason', e.reason, 'erased_at', e.erased_at, 'erased_by', e.erased_by,
                              'tables', e.tables, 'keys_destroyed', e.keys_destroyed,
                              'consent_events_reduced', e.consent_events_reduced)
      INTO receipt FROM privacy.erasures e WHERE e.id = erasure_id;
    RETURN receipt;
END
$$;
COMMENT ON FUNCTION privacy.erase_subject(text, text) IS
    'erase a subject in one transaction: their rows deleted or anonymized in every protected table, their keys destroyed, their consent history reduced; returns a receipt';

-- ==== sql/install/10_requests.sql
/*
 * 10_requests.sql — data-subject requests, the register of processing and compliance gaps.
 */

------------------------------------------------------------------------------
-- Data-subject requests, the register of processing and compliance gaps
-- (GDPR Art. 12, 15-22 and 30)
------------------------------------------------------------------------------
-- A request keeps its subject in clear, as the subject's own rows and the
-- consent ledger do: an officer must be able to find the subject's data,
-- answer them and tell requests apart, which a hash does not allow.  It also
-- keeps the subject's keyed hash, so that an erasure (whose record holds only
-- the hash) replaces the identifier in every request of that subject by the
-- same pseudonymous stand-in as the consent ledger and the holds get: after
-- an erasure the requests still prove what was asked and answered, not who.
CREATE SEQUENCE privacy.request_id_seq;
CREATE TABLE privacy.requests (
    id               bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.request_id_seq'),
    subject          text NOT NULL CHECK (subject <> ''),
    subject_hash     bytea NOT NULL,
    kind             text NOT NULL
                     CHECK (kind IN ('access', 'erasure', 'rectification', 'portability',
                                     'objection', 'restriction')),
    received_at      timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    extension        interval,
    extended_until   timestamptz,
    extension_reason text,
    deadline         timestamptz GENERATED ALWAYS AS (coalesce(extended_until, due_at)) STORED,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'in_progress', 'extended', 'completed', 'rejected')),
    closed_at        timestamptz,
    resolution       text,
    outcome          jsonb,
    note             text,
    opened_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    opened_by        name NOT NULL,
    CONSTRAINT request_closed CHECK ((status IN ('completed', 'rejected')) = (closed_at IS NOT NULL)),
    CONSTRAINT request_extension CHECK ((extension IS NULL) = (extended_until IS NULL)
                                        AND (extension IS NULL) = (extension_reason IS NULL)
                                        AND (extended_until IS NULL OR extended_until > due_at))
);
ALTER SEQUENCE privacy.request_id_seq OWNED BY privacy.requests.id;
CREATE INDEX ON privacy.requests (subject_hash);
CREATE INDEX ON privacy.requests (deadline) WHERE status IN ('open', 'in_progress', 'extended');
COMMENT ON TABLE privacy.requests IS
    'data-subject requests (GDPR Art. 15-22) with their legal deadline (Art. 12(3)); the subject in clear until erased, then a stand-in';

CREATE SEQUENCE privacy.request_event_id_seq;
CREATE TABLE privacy.request_events (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.request_event_id_seq'),
    request_id   bigint NOT NULL REFERENCES privacy.requests,
    at           timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    by           name NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    note         text
);
ALTER SEQUENCE privacy.request_event_id_seq OWNED BY privacy.request_events.id;
CREATE INDEX ON privacy.request_events (request_id, id);
COMMENT ON TABLE privacy.request_events IS
    'every status change of every data-subject request: who, when, from, to, why; append-only';

SELECT pg_catalog.pg_extension_config_dump('privacy.requests', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_events', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_event_id_seq', '');

CREATE FUNCTION privacy_internal.request_history_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = 'request_events is append-only',
        DETAIL  = 'The history of a request is evidence that it was answered in time: entries are never changed or removed.',
        HINT    = 'Status changes are recorded by privacy.start_request(), extend_request(), complete_request() and reject_request().';
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON privacy.request_events
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.request_history_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON privacy.request_events
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.request_history_guard();

-- However a subject is erased (through complete_request or erase_subject
-- directly), their requests stop naming them.
CREATE FUNCTION privacy_internal.requests_forget_subject() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE privacy.requests r SET subject = 'erased:' || encode(NEW.subject_hash, 'hex')
     WHERE r.subject_hash = NEW.subject_hash AND r.subject NOT LIKE 'erased:%';
    RETURN NULL;
END
$$;
CREATE TRIGGER requests_forget_subject AFTER INSERT ON privacy.erasures
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.requests_forget_subject();

CREATE FUNCTION privacy.open_request(subject text, kind text,
                                     received_at timestamptz DEFAULT pg_catalog.now(),
                                     note text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    request_id bigint;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    IF kind IS NULL OR kind NOT IN ('access', 'erasure', 'rectification', 'portability',
                                    'objection', 'restriction') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid request kind %s', coalesce(quote_literal(kind), 'NULL')),
            HINT = 'Use one of: access, erasure, rectification, portability, objection, restriction.';
    END IF;
    IF received_at IS NULL OR received_at > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('a request cannot be received %s',
                             CASE WHEN received_at IS NULL THEN 'at no time' ELSE 'in the future' END),
            HINT = 'Give the time the request reached the organisation; the deadline runs from it.';
    END IF;
    INSERT INTO privacy.requests (subject, subject_hash, kind, received_at, due_at, note, opened_by)
    VALUES (subject, privacy.subject_hash(subject), kind, received_at,
            received_at + interval '1 month', note, privacy_internal.caller())
    RETURNING requests.id INTO request_id;
    INSERT INTO privacy.request_events (request_id, by, from_status, to_status, note)
    VALUES (request_id, privacy_internal.caller(), NULL, 'open', note);
    RETURN request_id;
END
$$;
COMMENT ON FUNCTION privacy.open_request(text, text, timestamptz, text) IS
    'record a data-subject request received at received_at; it is due one month later (GDPR Art. 12(3)); returns its id';

-- Times in messages and in the history, to the second, in the session's zone.
CREATE FUNCTION privacy_internal.request_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_char(t, 'YYYY-MM-DD HH24:MI:SS TZ') $$;

-- Locks a request that is still open, or says why it cannot change.
CREATE FUNCTION privacy_internal.open_request_row(request_id bigint) RETURNS privacy.requests
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests;
BEGIN
    SELECT * INTO r FROM privacy.requests q WHERE q.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('request %s does not exist', coalesce(request_id::text, 'NULL')),
            HINT = 'privacy.requests lists the requests and their ids.';
    END IF;
    IF r.status IN ('completed', 'rejected') THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s is already %s', r.id, r.status),
            DETAIL = format('It was closed at %s.', privacy_internal.request_time(r.closed_at)),
            HINT = 'A closed request does not change; open a new request if the subject asks again.';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION privacy_internal.request_event(r privacy.requests, to_status text, note text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO privacy.request_events (request_id, by, from_status, to_status, note)
    VALUES (r.id, privacy_internal.caller(), r.status, to_status, note);
$$;

CREATE FUNCTION privacy.start_request(id bigint, note text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
BEGIN
    IF r.status = 'in_progress' THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s is already in progress', r.id);
    END IF;
    PERFORM privacy_internal.request_event(r, 'in_progress', note);
    UPDATE privacy.requests q SET status = 'in_progress' WHERE q.id = r.id;
END
$$;
COMMENT ON FUNCTION privacy.start_request(bigint, text) IS
    'mark a data-subject request as being worked on';

CREATE FUNCTION privacy.extend_request(id bigint, by interval, reason text) RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
    new_deadline timestamptz;
    latest timestamptz;
BEGIN
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'an extension needs a reason',
            DETAIL = 'GDPR Art. 12(3) requires telling the subject why the answer is delayed.',
            HINT = 'Name it, for example: complexity of the request, or the number of requests.';
    END IF;
    IF by IS NULL OR by <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('an extension must be positive, not %s', coalesce(by::text, 'NULL'));
    END IF;
    IF now() > r.due_at THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s can no longer be extended', r.id),
            DETAIL = format('Its first month ended at %s; GDPR Art. 12(3) requires telling the subject of an extension within one month of receipt.',
                            privacy_internal.request_time(r.due_at)),
            HINT = 'Answer the request as soon as possible, or reject it with privacy.reject_request() giving the reason.';
    END IF;
    -- from the receipt, so that month ends do not shorten the total
    -- (31 January + 1 month + 1 month is 28 March, + 2 months is 31 March)
    new_deadline := r.received_at + (interval '1 month' + coalesce(r.extension, interval '0') + by);
    latest := r.received_at + interval '3 months';
    IF new_deadline > latest THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('request %s cannot be extended by %s', r.id, by),
            DETAIL = format('GDPR Art. 12(3) allows two further months after the first: its deadline, now %s, can move to %s at the latest.',
                            privacy_internal.request_time(r.deadline), privacy_internal.request_time(latest)),
            HINT = CASE WHEN r.deadline >= latest
                        THEN 'It has been extended as far as the law allows: answer it by its deadline.'
                        ELSE 'Extend it to that time at most, and answer as soon as possible.' END;
    END IF;
    PERFORM privacy_internal.request_event(r, 'extended',
                                   format('until %s: %s', privacy_internal.request_time(new_deadline), reason));
    UPDATE privacy.requests q SET status = 'extended', extension = coalesce(q.extension, interval '0') + by,
                                  extended_until = new_deadline, extension_reason = reason
     WHERE q.id = r.id;
    RETURN new_deadline;
END
$$;
COMMENT ON FUNCTION privacy.extend_request(bigint, interval, text) IS
    'extend the deadline of a request, within its first month and by two further months at most in all (GDPR Art. 12(3)); returns the new deadline';

-- Completing a request records what was done.  An erasure request is carried
-- out here (privacy.erase_subject, in the same transaction), unless the
-- subject was erased since the request was received; an objection request
-- needs the objections recorded first, since only the officer can say which
-- purposes it concerns and whether compelling grounds override it.
CREATE FUNCTION privacy.complete_request(id bigint, note text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
    result jsonb;
BEGIN
    IF r.kind = 'erasure' THEN
        SELECT jsonb_build_object('erasure', e.id, 'subject_hash', encode(e.subject_hash, 'hex'),
                                  'reason', e.reason, 'erased_at', e.erased_at, 'erased_by', e.erased_by,
                                  'tables', e.tables, 'keys_destroyed', e.keys_destroyed,
                                  'consent_events_reduced', e.consent_events_reduced)
          INTO result
          FROM privacy.erasures e
         WHERE e.subject_hash = r.subject_hash AND e.erased_at >= r.received_at
         ORDER BY e.id DESC LIMIT 1;
        IF result IS NULL THEN
            result := privacy.erase_subject(r.subject, format('request #%s', r.id));
        END IF;
        result := jsonb_build_object('erasure', result);
        -- a request opened after the erasure that answers it (the erasure
        -- made the others forget the subject); later requests keep theirs
        UPDATE privacy.requests q SET subject = 'erased:' || encode(q.subject_hash, 'hex')
         WHERE q.id = r.id;
    ELSIF r.kind = 'objection' THEN
        SELECT jsonb_build_object('objections',
                   jsonb_agg(jsonb_build_object('purpose', e.purpose, 'event', e.id, 'at', e.at) ORDER BY e.id))
          INTO result
          FROM privacy.consent_events e
         WHERE e.subject = r.subject AND e.action = 'object' AND e.at >= r.received_at
        HAVING count(*) > 0;
        IF result IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('request %s has no objection recorded', r.id),
                DETAIL = format('No objection of its subject was recorded since the request was received (%s).',
                                privacy_internal.request_time(r.received_at)),
                HINT = format('Record it for each purpose concerned with privacy.object(subject, purpose, ''request #%s''), or reject the request with privacy.reject_request() if compelling grounds override it.', r.id);
        END IF;
    END IF;
    PERFORM privacy_internal.request_event(r, 'completed', note);
    UPDATE privacy.requests q SET status = 'completed', closed_at = clock_timestamp(),
                                  resolution = complete_request.note, outcome = result
     WHERE q.id = r.id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION privacy.complete_request(bigint, text) IS
    'close a request as answered; an erasure request erases the subject (privacy.erase_subject) unless already done, an objection request needs its objections recorded; returns the erasure receipt or the objections';

CREATE FUNCTION privacy.reject_request(id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests;
BEGIN
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a rejection needs a reason',
            DETAIL = 'GDPR Art. 12(4) requires telling the subject why no action is taken, and Art. 12(5) puts on the controller the burden of showing a request manifestly unfounded or excessive.',
            HINT = 'State the grounds, for example: manifestly unfounded, excessive (repetitive), or the exemption of Art. 17(3) that applies.';
    END IF;
    r := privacy_internal.open_request_row(id);
    PERFORM privacy_internal.request_event(r, 'rejected', reason);
    UPDATE privacy.requests q SET status = 'rejected', closed_at = clock_timestamp(), resolution = reason
     WHERE q.id = r.id;
END
$$;
COMMENT ON FUNCTION privacy.reject_request(bigint, text) IS
    'close a request without acting on it, with the reason (GDPR Art. 12(4), 12(5), or an exemption such as Art. 17(3))';

CREATE VIEW privacy.overdue_requests AS
SELECT r.id, r.kind, r.subject, r.status, r.received_at, r.due_at, r.extended_until, r.deadline,
       pg_catalog.now() - r.deadline AS overdue_by,
       pg_catalog.ceil(extract(epoch FROM pg_catalog.now() - r.deadline) / 86400)::integer AS days_overdue
  FROM privacy.requests r
 WHERE r.status IN ('open', 'in_progress', 'extended') AND r.deadline < pg_catalog.now();
COMMENT ON VIEW privacy.overdue_requests IS
    'requests still open after their deadline (the first month, or the extension), with how late they are (a started day counts)';

-- The personal columns the register and the gaps speak of: those recorded in
-- column_categories, and encrypted columns that are not (a column left
-- "unclassified" is not recorded, nor is one whose table was created where the
-- event trigger could not record it).  Rows of tables that no longer exist
-- (temporary tables dropped at session end) are left out.
CREATE VIEW privacy_internal.personal_columns AS
SELECT cc.tbl, cc.col, cc.category, cc.encrypted, cc.searchable, true AS registered
  FROM privacy.column_categories cc
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cc.tbl)
UNION ALL
SELECT a.attrelid::pg_catalog.regclass, a.attname,
       coalesce(privacy_internal.typmod_category(a.atttypmod), 'unclassified'),
       true, a.atttypmod >= 0 AND (a.atttypmod >> 16) & 1 = 1, false
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
 WHERE a.atttypid IN ('privacy.encrypted_text'::pg_catalog.regtype, 'privacy.encrypted_bytea'::pg_catalog.regtype)
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
   AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND NOT EXISTS (SELECT 1 FROM privacy.column_categories cc
                    WHERE cc.tbl = a.attrelid AND cc.col = a.attname);

-- The record of processing activities (GDPR Art. 30(1)), one row per purpose,
-- allowed category and personal column of that category, so that each row
-- reads "purpose P, on basis B, processes category C in column T.K, stored so,
-- kept so long, by these roles".  A purpose without categories, and a category
-- without columns, still give a row (with NULLs), and so do personal columns
-- that no purpose may process (purpose NULL): the register shows what is held
-- as well as why.  Roles are those granted the purpose (their members hold it
-- too); dropped roles are left out.
CREATE VIEW privacy.processing_register AS
WITH holders AS (
    SELECT rp.purpose, array_agg(r.rolname::text ORDER BY r.rolname) AS roles
      FROM privacy.role_purposes rp JOIN pg_catalog.pg_roles r ON r.oid = rp.role
     GROUP BY rp.purpose
), cols AS (
    SELECT pcol.tbl, pcol.col, pcol.category, pcol.encrypted, pcol.searchable,
           pt.tbl IS NOT NULL AS table_protected, pt.subject_column,
           rr.keep, rr.action
      FROM privacy_internal.personal_columns pcol
      LEFT JOIN privacy.protected_tables pt ON pt.tbl = pcol.tbl
      LEFT JOIN privacy.retention_rules rr ON rr.tbl = coalesce(pt.parent, pcol.tbl)
)
SELECT p.name AS purpose, p.legal_basis, p.description,
       pc.category, c.special,
       cols.tbl AS table_name, cols.col AS column_name, cols.encrypted, cols.searchable,
       cols.table_protected, cols.subject_column,
       cols.keep AS retention, cols.action AS retention_action,
       coalesce(h.roles, '{}') AS roles
  FROM privacy.purposes p
  LEFT JOIN privacy.purpose_categories pc ON pc.purpose = p.name
  LEFT JOIN privacy.categories c ON c.name = pc.category
  LEFT JOIN cols ON cols.category = pc.category
  LEFT JOIN holders h ON h.purpose = p.name
UNION ALL
SELECT NULL, NULL, NULL, cols.category, c.special,
       cols.tbl, cols.col, cols.encrypted, cols.searchable,
       cols.table_protected, cols.subject_column, cols.keep, cols.action, '{}'
  FROM cols
  LEFT JOIN privacy.categories c ON c.name = cols.category
 WHERE NOT EXISTS (SELECT 1 FROM privacy.purpose_categories pc WHERE pc.category = cols.category);
COMMENT ON VIEW privacy.processing_register IS
    'record of processing activities (GDPR Art. 30): per purpose, category and column, the legal basis, storage, protection, retention and roles holding the purpose';

-- What the register shows that needs fixing, each with how to fix it.
CREATE FUNCTION privacy.compliance_gaps()
    RETURNS TABLE (gap text, object text, detail text, hint text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    -- personal data stored in plain text
    SELECT 'column not encrypted', format('%s.%I', pc.tbl, pc.col),
           format('Column %I of %s holds %s data in plain text%s.', pc.col, pc.tbl, pc.category,
                  CASE WHEN c.special THEN ' (a special category, GDPR Art. 9)' ELSE '' END),
           format('A member of privacy_admin converts it with privacy.classify(%L, %L, %L, encrypt => true).',
                  pc.tbl::text, pc.col, pc.category)
      FROM privacy_internal.personal_columns pc JOIN privacy.categories c ON c.name = pc.category
     WHERE NOT pc.encrypted
    UNION ALL
    -- encrypted columns the register cannot describe
    SELECT 'column not classified', format('%s.%I', pc.tbl, pc.col),
           CASE WHEN pc.category = 'unclassified'
                THEN format('Column %I of %s is encrypted as "unclassified": no purpose can read it, and the register cannot say what it holds.',
                            pc.col, pc.tbl)
                ELSE format('Encrypted column %I of %s names category %s in its type, but was never recorded.',
                            pc.col, pc.tbl, pc.category) END,
           format('A member of privacy_admin classifies it with privacy.classify(%L, %L, %s).',
                  pc.tbl::text, pc.col,
                  CASE WHEN pc.category = 'unclassified' THEN 'category' ELSE quote_literal(pc.category) END)
      FROM privacy_internal.personal_columns pc
     WHERE pc.category = 'unclassified' OR NOT pc.registered
    UNION ALL
    -- personal data held for no purpose
    SELECT 'column without purpose', format('%s.%I', pc.tbl, pc.col),
           format('Column %I of %s holds %s data, which no purpose is allowed.', pc.col, pc.tbl, pc.category),
           format('Allow the category to the purposes that need it with privacy.allow_category(purpose, %L), or stop keeping the column.',
                  pc.category)
      FROM privacy_internal.personal_columns pc
     WHERE pc.category <> 'unclassified'
       AND NOT EXISTS (SELECT 1 FROM privacy.purpose_categories x WHERE x.category = pc.category)
    UNION ALL
    -- personal data outside consent-aware row-level security
    SELECT 'table not protected', t.tbl::text,
           format('Table %s has personal columns (%s) but is not protected: its rows ignore consent and objections, are not shredded on erasure, and no retention rule can apply.',
                  t.tbl, t.cols),
           format('A member of privacy_admin protects it with privacy.protect_table(%L, subject_column).', t.tbl::text)
      FROM (SELECT pc.tbl, string_agg(quote_ident(pc.col), ', ' ORDER BY pc.col) AS cols
              FROM privacy_internal.personal_columns pc
             WHERE NOT EXISTS (SELECT 1 FROM privacy.protected_tables pt WHERE pt.tbl = pc.tbl)
             GROUP BY pc.tbl) t
    UNION ALL
    -- storage limitation (GDPR Art. 5(1)(e))
    SELECT 'no retention rule', pt.tbl::text,
           format('Protected table %s has no retention rule: its rows are kept for ever.', pt.tbl),
           format('Set one with privacy.set_retention(%L, time_column, keep, ''delete'') (or ''anonymize'' with the columns to clear).',
                  pt.tbl::text)
      FROM privacy.protected_tables pt
     WHERE pt.parent IS NULL
       AND NOT EXISTS (SELECT 1 FROM privacy.retention_rules rr WHERE rr.tbl = pt.tbl)
    UNION ALL
    -- GDPR Art. 30(1)(c): the categories of personal data of each processing
    SELECT 'purpose without categories', p.name,
           format('Purpose %s (%s) is allowed no category of personal data: the register cannot say what it processes, and it can read no encrypted value.',
                  p.name, p.legal_basis),
           format('Allow it the categories it processes with privacy.allow_category(%L, category), or drop it with privacy.drop_purpose(%L).',
                  p.name, p.name)
      FROM privacy.purposes p
     WHERE NOT EXISTS (SELECT 1 FROM privacy.purpose_categories x WHERE x.purpose = p.name)
       AND p.name <> 'subject_access'    -- built in: every category, in the subject report only
    UNION ALL
    -- a purpose no role holds processes nothing, whatever the register says;
    -- for consent, subjects are asked to agree to processing nobody does
    SELECT 'purpose held by no role', p.name,
           format('No role holds purpose %s (%s)%s.', p.name, p.legal_basis,
                  CASE n.consents WHEN 0 THEN ''
                                  WHEN 1 THEN ', yet 1 subject consents to it'
                                  ELSE format(', yet %s subjects consent to it', n.consents) END),
           format('Grant it to the role that processes it with privacy.grant_purpose(role, %L), or %s.', p.name,
                  CASE WHEN p.legal_basis = 'consent' THEN 'stop collecting consent for it'
                       ELSE format('drop it with privacy.drop_purpose(%L)', p.name) END)
      FROM privacy.purposes p,
           LATERAL (SELECT count(*) AS consents FROM privacy.consent_state cs
                     WHERE cs.purpose = p.name AND cs.state = 'granted') n
     WHERE NOT EXISTS (SELECT 1 FROM privacy.role_purposes rp JOIN pg_catalog.pg_roles r ON r.oid = rp.role
                        WHERE rp.purpose = p.name)
       AND p.name <> 'subject_access'    -- used through privacy.subject_report(), not held
    UNION ALL
    -- GDPR Art. 12(3)
    SELECT 'request overdue', format('request %s', o.id),
           format('%s request received %s, due %s%s: %s overdue.', initcap(o.kind),
                  privacy_internal.request_time(o.received_at), privacy_internal.request_time(o.deadline),
                  CASE WHEN o.extended_until IS NOT NULL THEN ' (extended)' ELSE '' END,
                  CASE WHEN o.days_overdue = 1 THEN '1 day' ELSE o.days_overdue || ' days' END),
           format('Answer it now and close it with privacy.complete_request(%s, note), or with privacy.reject_request(%s, reason) if it is not acted on.',
                  o.id, o.id)
      FROM privacy.overdue_requests o
    UNION ALL
    -- data minimisation: a grant nobody uses is access nobody needs.  A
    -- purpose counts as used by a role when the role, or a member of it
    -- other than a superuser, declared it in a logged statement; grants
    -- younger than 30 days are left alone.
    SELECT 'purpose never used', format('%s / %s', r.rolname, rp.purpose),
           format('Role %I has held purpose %s since %s, and the access log shows no statement of it or its members under that purpose.',
                  r.rolname, rp.purpose, privacy_internal.request_time(rp.granted_at)),
           format('If it does not need it, revoke it with privacy.revoke_purpose(%L, %L).', r.rolname, rp.purpose)
      FROM privacy.role_purposes rp
      JOIN pg_catalog.pg_roles r ON r.oid = rp.role
     WHERE rp.granted_at < pg_catalog.now() - interval '30 days'
       AND rp.purpose <> 'subject_access'
       AND NOT EXISTS (
           SELECT 1
             FROM privacy.access_log_purpose_use u
             JOIN pg_catalog.pg_roles m ON m.rolname = u.acting_role
            WHERE u.purpose = rp.purpose
              -- a superuser is a member of every role: its use says nothing
              AND (m.oid = rp.role OR
                   (NOT m.rolsuper AND pg_catalog.pg_has_role(m.oid, rp.role, 'MEMBER'))))
    UNION ALL
    -- the log's tamper evidence is worth what its verification is
    SELECT CASE WHEN v.status IS NULL THEN 'access log not verified'
                WHEN v.status <> 'ok' THEN 'access log broken'
                ELSE 'access log not verified' END,
           'privacy.access_log',
           CASE WHEN v.status IS NULL THEN 'privacy.verify_access_log() has never been run.'
                WHEN v.status <> 'ok' THEN format('The last verification (%s) found the log %s at entry %s: %s.',
                                                  privacy_internal.request_time(v.verified_at), v.status, v.seq, v.detail)
                ELSE format('The access log was last verified %s, more than 7 days ago.',
                            privacy_internal.request_time(v.verified_at)) END,
           CASE WHEN v.status IS NOT NULL AND v.status <> 'ok'
                THEN 'Keep the result as evidence, find out who changed the log, and restore the entries from a backup.'
                ELSE 'Run SELECT * FROM privacy.verify_access_log() (as privacy_officer), and schedule it daily.' END
      FROM (SELECT NULL) one
      LEFT JOIN LATERAL (SELECT * FROM privacy.access_log_verifications
                          ORDER BY verified_at DESC LIMIT 1) v ON true
     WHERE EXISTS (SELECT 1 FROM privacy.access_log)
       AND (v.status IS NULL OR v.status <> 'ok' OR v.verified_at < pg_catalog.now() - interval '7 days')
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION privacy.compliance_gaps() IS
    'what the register shows that needs fixing (plain or unclassified personal columns, unprotected tables, missing retention, purposes without categories or holders, overdue requests, purposes granted but never used, an access log not verified lately or broken), each with a hint';

REVOKE ALL ON privacy.requests, privacy.request_events, privacy.overdue_requests,
              privacy_internal.personal_columns, privacy.processing_register FROM PUBLIC;
REVOKE ALL ON FUNCTION
    privacy_internal.request_history_guard(), privacy_internal.requests_forget_subject(),
    privacy.open_request(text, text, timestamptz, text), privacy_internal.request_time(timestamptz),
    privacy_internal.open_request_row(bigint),
    privacy_internal.request_event(privacy.requests, text, text), privacy.start_request(bigint, text),
    privacy.extend_request(bigint, interval, text), privacy.complete_request(bigint, text),
    privacy.reject_request(bigint, text), privacy.compliance_gaps()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    privacy.open_request(text, text, timestamptz, text), privacy.start_request(bigint, text),
    privacy.extend_request(bigint, interval, text), privacy.complete_request(bigint, text),
    privacy.reject_request(bigint, text), privacy.compliance_gaps()
  TO privacy_officer;
GRANT SELECT ON privacy.requests, privacy.request_events, privacy.overdue_requests
  TO privacy_officer;
GRANT SELECT ON privacy.processing_register TO privacy_officer, privacy_admin;

-- ==== sql/install/11_report.sql
/*
 * 11_report.sql — the subject report, as JSON and as a page (C: report.c).
 */

------------------------------------------------------------------------------
-- The subject report (GDPR Art. 15 and 20): everything the extension holds
-- about one subject, as JSON for a dashboard or a portability export, and
-- as a self-contained HTML page for people
------------------------------------------------------------------------------
-- The built-in purpose under which the report opens a subject's values.  It
-- is allowed every category, including categories created later, but only
-- while privacy_internal.report_table() reads a subject's rows (src/report.c): a
-- role that declares it anywhere else is allowed no category, so it lends no
-- one a general right to read.  No role is granted it: the report runs as
-- the extension owner, a superuser, who holds every purpose, and whoever may
-- execute privacy.subject_report() may use it.  The row comes with CREATE
-- EXTENSION and is therefore left out of dumps.
INSERT INTO privacy.purposes (name, legal_basis, description)
VALUES ('subject_access', 'legal_obligation',
        'answering a data subject''s access and portability requests (GDPR Art. 15 and 20) with privacy.subject_report(); built in, allowed every category inside the report only');
SELECT pg_catalog.pg_extension_config_dump('privacy.purposes', 'WHERE name <> ''subject_access''');

-- It cannot be changed, dropped, granted or allowed categories: granted to
-- a role with a category, it would open values outside the report.
CREATE FUNCTION privacy_internal.builtin_purpose_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'purposes' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'purpose "subject_access" is built in and cannot be changed or dropped',
            DETAIL  = 'privacy.subject_report() opens a subject''s values under it and records its use in the access log under its name.',
            HINT    = 'Grant privacy.subject_report() to the roles that answer access requests instead.';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('purpose "subject_access" is built in and cannot be %s',
                         CASE TG_TABLE_NAME WHEN 'role_purposes' THEN 'granted' ELSE 'allowed categories' END),
        DETAIL  = 'It is allowed every category inside privacy.subject_report() only, for whoever may execute that function.',
        HINT    = 'Grant privacy.subject_report() to the roles that answer access requests instead.';
END
$$;
CREATE TRIGGER builtin_purpose BEFORE UPDATE OR DELETE ON privacy.purposes
    FOR EACH ROW WHEN (OLD.name = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();
CREATE TRIGGER builtin_purpose BEFORE INSERT OR UPDATE ON privacy.purpose_categories
    FOR EACH ROW WHEN (NEW.purpose = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();
CREATE TRIGGER builtin_purpose BEFORE INSERT OR UPDATE ON privacy.role_purposes
    FOR EACH ROW WHEN (NEW.purpose = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();

CREATE FUNCTION privacy_internal.report_table(tbl regclass, subject_column name, subject text,
                                      time_column name, keep interval) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_report_table' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.report_table(regclass, name, text, name, interval) IS
    'a subject''s rows of one protected table with their retention due dates, decrypted under subject_access, and that access logged; called by privacy.subject_report() only';

-- The report.  Version 1 of its shape is documented in doc/developer.md
-- ("The subject report (JSON)"); a change that removes or renames a key, or
-- changes what a value means, gets a new version number.  Subjects match as
-- in erase_subject(); after an erasure the ledger and the holds know the
-- subject only as 'erased:' || hex(subject_hash), and the erasures, requests
-- and access log by the keyed hash, so the report finds those too.  Holds are
-- disclosed by their dates, not their reason or who placed them (see the
-- compliance guide).  bytea_output and IntervalStyle are pinned so that the
-- export reads the same whatever the caller's settings.
CREATE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET privacy.purpose = 'subject_access'
    SET bytea_output = 'hex'
    SET IntervalStyle = 'iso_8601'
AS $$
DECLARE
    hash bytea;
    stand_in text;
    pt record;
    rule privacy.retention_rules;
    found_rows jsonb;
    data jsonb := '[]';
    purposes jsonb;
    consents jsonb;
    access jsonb;
    holds jsonb;
    erasures jsonb;
    requests jsonb;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');

    -- the subject's rows, once per protected table (partitions through their root)
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        rule := NULL;
        SELECT * INTO rule FROM privacy.retention_rules r WHERE r.tbl = pt.tbl;
        found_rows := privacy_internal.report_table(pt.tbl, pt.subject_column, subject, rule.time_column, rule.keep);
        CONTINUE WHEN jsonb_array_length(found_rows) = 0;
        data := data || jsonb_build_array(jsonb_build_object(
            'table', pt.tbl::text,
            'subject_column', pt.subject_column,
            'columns', (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'category', pc.category,
                                                            'encrypted', coalesce(pc.encrypted, false))
                                        ORDER BY a.attnum)
                          FROM pg_attribute a
                          LEFT JOIN privacy_internal.personal_columns pc ON pc.tbl = a.attrelid AND pc.col = a.attname
                         WHERE a.attrelid = pt.tbl AND a.attnum > 0 AND NOT a.attisdropped),
            'retention', CASE WHEN rule.tbl IS NULL THEN NULL ELSE jsonb_build_object(
                'time_column', rule.time_column, 'keep', rule.keep, 'action', rule.action,
                'anonymize', (SELECT coalesce(jsonb_agg(c.col ORDER BY c.col), '[]')
                                FROM jsonb_object_keys(rule.anonymize) AS c(col))) END,
            'rows', found_rows));
    END LOOP;

    -- every purpose, and whether it may use the subject's data now (the
    -- visibility rule: consent given, or no objection for other bases)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'purpose', p.name, 'legal_basis', p.legal_basis, 'description', p.description,
               'categories', CASE WHEN p.name = 'subject_access'
                                  THEN (SELECT coalesce(jsonb_agg(c.name ORDER BY c.name), '[]') FROM privacy.categories c)
                                  ELSE (SELECT coalesce(jsonb_agg(pc.category ORDER BY pc.category), '[]')
                                          FROM privacy.purpose_categories pc WHERE pc.purpose = p.name) END,
               'state', cs.state, 'since', cs.since,
               'in_effect', CASE WHEN p.legal_basis = 'consent' THEN coalesce(cs.state = 'granted', false)
                                 ELSE cs.state IS DISTINCT FROM 'objected' END)
             ORDER BY p.name), '[]')
      INTO purposes
      FROM privacy.purposes p
      LEFT JOIN privacy.consent_state cs ON cs.purpose = p.name AND cs.subject = subject_report.subject;

    -- consents and objections with their full history from the ledger
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'purpose', g.purpose, 'legal_basis', p.legal_basis, 'state', cs.state, 'since', cs.since,
               'history', g.history)
             ORDER BY g.purpose), '[]')
      INTO consents
      FROM (SELECT e.purpose,
                   jsonb_agg(jsonb_build_object('event', e.id, 'action', e.action, 'at', e.at,
                                                'source', e.source, 'evidence', e.evidence,
                                                'recorded_by', e.recorded_by) ORDER BY e.id) AS history
              FROM privacy.consent_events e
             WHERE e.subject IN (subject_report.subject, stand_in)
             GROUP BY e.purpose) g
      JOIN privacy.purposes p ON p.name = g.purpose
      LEFT JOIN privacy.consent_state cs ON cs.purpose = g.purpose AND cs.subject = subject_report.subject;

    -- who opened the subject's encrypted values, when, why; never how many
    -- rows the statement read in all (that is about other subjects too)
    SELECT coalesce(jsonb_agg(x.entry ORDER BY x.seq), '[]')
      INTO access
      FROM (SELECT l.seq, jsonb_build_object(
                       'entry', l.seq, 'at', l.at, 'role', l.acting_role, 'session_role', l.session_role,
                       'application', l.application, 'purpose', l.purpose, 'command', l.command,
                       'table', l.relation,
                       'categories', to_jsonb(array_agg(DISTINCT s.category ORDER BY s.category)),
                       'values', sum(s.opened)) AS entry
              FROM privacy_internal.access_log_for_subject(hash) s
              JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
             -- never this call's own reads (the writer may store them
             -- before the query below runs); earlier calls are listed
             WHERE NOT (l.backend_pid = pg_catalog.pg_backend_pid()
                        AND l.at >= pg_catalog.statement_timestamp())
             GROUP BY l.seq, l.at, l.acting_role, l.session_role, l.application, l.purpose,
                      l.command, l.relation) x;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'placed_at', h.placed_at, 'until', h.until, 'released_at', h.released_at,
               'active', h.released_at IS NULL AND (h.until IS NULL OR h.until > now()))
             ORDER BY h.placed_at, h.id), '[]')
      INTO holds
      FROM privacy.holds h
     WHERE h.subject IN (subject_report.subject, stand_in);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'erasure', e.id, 'erased_at', e.erased_at, 'reason', e.reason,
               'tables', e.tables, 'keys_destroyed', e.keys_destroyed)
             ORDER BY e.id), '[]')
      INTO erasures
      FROM privacy.erasures e
     WHERE e.subject_hash = hash;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'request', r.id, 'kind', r.kind, 'status', r.status,
               'open', r.status IN ('open', 'in_progress', 'extended'),
               'received_at', r.received_at, 'due_at', r.due_at, 'deadline', r.deadline,
               'extended_until', r.extended_until, 'extension_reason', r.extension_reason,
               'closed_at', r.closed_at, 'resolution', r.resolution)
             ORDER BY r.id), '[]')
      INTO requests
      FROM privacy.requests r
     WHERE r.subject_hash = hash;

    RETURN jsonb_build_object(
        'version', 1,
        'subject', subject,
        'generated_at', clock_timestamp(),
        'data', data,
        'purposes', purposes,
        'consents', consents,
        'access', access,
        'holds', holds,
        'erasures', erasures,
        'requests', requests);
END
$$;
COMMENT ON FUNCTION privacy.subject_report(text) IS
    'everything held about a subject (rows decrypted under the built-in purpose subject_access, purposes, consents with history, access log, retention due dates, holds, erasures, requests) as versioned JSON; its own use is logged';

-- HTML for people.  Every value goes through _html(); the page has no
-- script and loads nothing.
CREATE FUNCTION privacy_internal.html(s text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''),
           '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;

-- A JSON value in a table cell: text as is, structures as compact JSON.
CREATE FUNCTION privacy_internal.html_value(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN '<span class="none">&#8212;</span>'
                WHEN jsonb_typeof(v) IN ('object', 'array') THEN '<code>' || privacy_internal.html(v::text) || '</code>'
                ELSE privacy_internal.html(v #>> '{}') END
$$;

-- A time from the report, to the minute, in the session's time zone.
CREATE FUNCTION privacy_internal.html_time(v jsonb) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN '<span class="none">&#8212;</span>'
                ELSE '<time datetime="' || privacy_internal.html(v #>> '{}') || '">'
                     || privacy_internal.html(to_char((v #>> '{}')::timestamptz, 'YYYY-MM-DD HH24:MI TZ')) || '</time>' END
$$;

CREATE FUNCTION privacy_internal.html_basis(basis text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE basis
        WHEN 'consent' THEN 'your consent (GDPR Art. 6(1)(a))'
        WHEN 'contract' THEN 'a contract with you (Art. 6(1)(b))'
        WHEN 'legal_obligation' THEN 'a legal obligation (Art. 6(1)(c))'
        WHEN 'vital_interests' THEN 'vital interests (Art. 6(1)(d))'
        WHEN 'public_task' THEN 'a task in the public interest (Art. 6(1)(e))'
        WHEN 'legitimate_interests' THEN 'legitimate interests (Art. 6(1)(f))'
        ELSE privacy_internal.html(basis) END
$$;

-- A table row of cells that are HTML already; a table around rows.
CREATE FUNCTION privacy_internal.html_row(VARIADIC cells text[]) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<tr>' || string_agg('<td>' || coalesce(c, '') || '</td>', '' ORDER BY o) || '</tr>'
      FROM unnest(cells) WITH ORDINALITY AS u(c, o)
$$;

CREATE FUNCTION privacy_internal.html_table(headers text[], rows text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<table><thead><tr>' || string_agg('<th>' || hd || '</th>', '' ORDER BY o) || '</tr></thead><tbody>'
           || coalesce(rows, '') || '</tbody></table>'
      FROM unnest(headers) WITH ORDINALITY AS u(hd, o)
$$;

CREATE FUNCTION privacy.subject_report_html(subject text) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    r jsonb := privacy.subject_report(subject);
    h text;
    t jsonb;
    row_ jsonb;
    x jsonb;
    col jsonb;
    cols text[];
    n integer;
BEGIN
    h := '<!DOCTYPE html>' || E'\n'
      || '<html lang="en"><head><meta charset="utf-8">'
      || '<meta name="viewport" content="width=device-width, initial-scale=1">'
      || '<title>Your personal data</title><style>'
      || 'body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;background:#f4f6f8;margin:0}'
      || 'main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff}'
      || 'h1{font-size:28px;margin:8px 0 4px;color:#0b3d62}'
      || 'h2{font-size:20px;margin:36px 0 8px;padding-bottom:4px;border-bottom:2px solid #0b3d62;color:#0b3d62}'
      || 'h3{font-size:16px;margin:20px 0 6px}'
      || 'p.lead{color:#44515e;margin-top:0}'
      || 'nav a{margin-right:14px;color:#0b5fa5}'
      || 'table{border-collapse:collapse;width:100%;margin:6px 0 14px;font-size:14px}'
      || 'th,td{border:1px solid #cfd6dd;padding:5px 8px;text-align:left;vertical-align:top}'
      || 'th{background:#e8eef4}'
      || 'tr:nth-child(even) td{background:#f8fafb}'
      || 'code{font-size:13px;white-space:pre-wrap;word-break:break-all}'
      || '.none,.empty{color:#7a8794}'
      || '.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#dde8f3;font-size:12px;margin:1px 2px}'
      || '.yes{color:#17693b;font-weight:600}.no{color:#a3261d;font-weight:600}'
      || 'footer{margin-top:40px;color:#7a8794;font-size:13px}'
      || '</style></head><body><main>' || E'\n'
      || '<h1>Your personal data</h1>'
      || '<p class="lead">This page lists the personal data we hold about <strong>'
      || privacy_internal.html(r ->> 'subject') || '</strong>, why we use it, who has accessed it, and when it will be deleted'
      || ' (your right of access, GDPR Art. 15). Generated ' || privacy_internal.html_time(r -> 'generated_at') || '.</p>'
      || '<nav><a href="#data">Data</a><a href="#purposes">Purposes</a><a href="#consents">Consents</a>'
      || '<a href="#access">Access</a><a href="#retention">Retention</a><a href="#holds">Holds</a>'
      || '<a href="#erasures">Erasures</a><a href="#requests">Requests</a></nav>' || E'\n';

    -- the data
    h := h || '<section id="data"><h2>The data we hold about you</h2>';
    IF jsonb_array_length(r -> 'data') = 0 THEN
        h := h || '<p class="empty">We hold no records about you.</p>';
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(r -> 'data') LOOP
        n := jsonb_array_length(t -> 'rows');
        SELECT array_agg(c ->> 'name' ORDER BY o) INTO cols
          FROM jsonb_array_elements(t -> 'columns') WITH ORDINALITY AS e(c, o);
        h := h || '<h3>' || privacy_internal.html(t ->> 'table') || '</h3><p>'
              || CASE WHEN n = 1 THEN '1 record' ELSE n || ' records' END || '.';
        IF jsonb_typeof(t -> 'retention') = 'object' THEN
            h := h || ' Kept for ' || privacy_internal.html(((t #>> '{retention,keep}')::interval)::text)
                  || ' after <em>' || privacy_internal.html(t #>> '{retention,time_column}') || '</em>, then '
                  || CASE WHEN t #>> '{retention,action}' = 'delete' THEN 'deleted'
                          ELSE 'anonymized (' || privacy_internal.html((SELECT string_agg(a, ', ' ORDER BY a)
                                                                  FROM jsonb_array_elements_text(t #> '{retention,anonymize}') a))
                               || ' cleared)' END || '.';
        ELSE
            h := h || ' No retention period is set for these records.';
        END IF;
        h := h || '</p><table><thead><tr>';
        FOR col IN SELECT * FROM jsonb_array_elements(t -> 'columns') LOOP
            h := h || '<th>' || privacy_internal.html(col ->> 'name')
                  || CASE WHEN col ->> 'category' IS NOT NULL
                          THEN ' <span class="tag">' || privacy_internal.html(col ->> 'category') || '</span>' ELSE '' END
                  || '</th>';
        END LOOP;
        h := h || '<th>Due for ' || CASE WHEN t #>> '{retention,action}' = 'anonymize' THEN 'anonymization' ELSE 'deletion' END
              || '</th></tr></thead><tbody>';
        FOR row_ IN SELECT * FROM jsonb_array_elements(t -> 'rows') LOOP
            h := h || '<tr>';
            h := h || coalesce((SELECT string_agg('<td>' || privacy_internal.html_value(row_ -> 'values' -> c) || '</td>', '' ORDER BY o)
                                  FROM unnest(cols) WITH ORDINALITY AS u(c, o)), '');
            h := h || '<td>' || privacy_internal.html_time(row_ -> 'due_at') || '</td></tr>';
        END LOOP;
        h := h || '</tbody></table>' || E'\n';
    END LOOP;
    h := h || '</section>';

    -- purposes
    h := h || '<section id="purposes"><h2>Why we use your data</h2>'
          || '<table><thead><tr><th>Purpose</th><th>Legal basis</th><th>Kinds of data</th><th>Your choice</th><th>Uses your data now</th></tr></thead><tbody>';
    FOR x IN SELECT * FROM jsonb_array_elements(r -> 'purposes') LOOP
        h := h || '<tr><td><strong>' || privacy_internal.html(x ->> 'purpose') || '</strong>'
              || CASE WHEN coalesce(x ->> 'description', '') <> '' THEN '<br>' || privacy_internal.html(x ->> 'description') ELSE '' END
              || '</td><td>' || privacy_internal.html_basis(x ->> 'legal_basis') || '</td><td>'
              || coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                             FROM jsonb_array_elements_text(x -> 'categories') c), '<span class="none">none</span>')
              || '</td><td>'
              || CASE x ->> 'state'
                      WHEN 'granted' THEN 'consent given ' || privacy_internal.html_time(x -> 'since')
                      WHEN 'withdrawn' THEN 'consent withdrawn ' || privacy_internal.html_time(x -> 'since')
                      WHEN 'objected' THEN 'you objected ' || privacy_internal.html_time(x -> 'since')
                      ELSE CASE WHEN x ->> 'legal_basis' = 'consent' THEN 'no consent given'
                                ELSE 'no objection' END END
              || '</td><td>' || CASE WHEN (x ->> 'in_effect')::boolean THEN '<span class="yes">yes</span>'
                                     ELSE '<span class="no">no</span>' END
              || '</td></tr>';
    END LOOP;
    h := h || '</tbody></table></section>' || E'\n';

    -- consents
    h := h || '<section id="consents"><h2>Your consents and objections</h2>';
    IF jsonb_array_length(r -> 'consents') = 0 THEN
        h := h || '<p class="empty">You have not given, withdrawn or objected to anything.</p>';
    END IF;
    FOR x IN SELECT * FROM jsonb_array_elements(r -> 'consents') LOOP
        h := h || '<h3>' || privacy_internal.html(x ->> 'purpose') || '</h3><p>Now: '
              || coalesce(privacy_internal.html(x ->> 'state'), 'no longer recorded') || '.</p>'
              || privacy_internal.html_table(ARRAY['When', 'What', 'Where it came from', 'Evidence'],
                     (SELECT string_agg(privacy_internal.html_row(
                                 privacy_internal.html_time(e -> 'at'),
                                 privacy_internal.html(CASE e ->> 'action' WHEN 'grant' THEN 'consent given'
                                                   WHEN 'withdraw' THEN 'consent withdrawn'
                                                   WHEN 'object' THEN 'objection' ELSE e ->> 'action' END),
                                 privacy_internal.html(e ->> 'source'),
                                 privacy_internal.html_value(e -> 'evidence')), '' ORDER BY o)
                        FROM jsonb_array_elements(x -> 'history') WITH ORDINALITY AS hist(e, o)));
    END LOOP;
    h := h || '</section>' || E'\n';

    -- access
    h := h || '<section id="access"><h2>Who accessed your data</h2>';
    IF jsonb_array_length(r -> 'access') = 0 THEN
        h := h || '<p class="empty">Our access log records no access to your encrypted data.</p>';
    ELSE
        h := h || privacy_internal.html_table(
                      ARRAY['When', 'Who', 'Application', 'Purpose', 'Where', 'Kinds of data', 'Values read'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html_time(a -> 'at'), privacy_internal.html(a ->> 'role'),
                                  privacy_internal.html_value(a -> 'application'), privacy_internal.html_value(a -> 'purpose'),
                                  privacy_internal.html_value(a -> 'table'),
                                  coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                                              FROM jsonb_array_elements_text(a -> 'categories') c), ''),
                                  privacy_internal.html(a ->> 'values')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'access') WITH ORDINALITY AS l(a, o)));
    END IF;
    h := h || '<p class="empty">Each entry is one statement that read your encrypted data.</p></section>' || E'\n';

    -- retention
    h := h || '<section id="retention"><h2>When your data will be deleted</h2>';
    IF jsonb_array_length(r -> 'data') = 0 THEN
        h := h || '<p class="empty">There is nothing to delete.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Records', 'Rule', 'First due', 'Last due'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(d ->> 'table'),
                                  CASE WHEN jsonb_typeof(d -> 'retention') = 'object'
                                       THEN privacy_internal.html(d #>> '{retention,action}') || ' '
                                            || privacy_internal.html(((d #>> '{retention,keep}')::interval)::text)
                                            || ' after ' || privacy_internal.html(d #>> '{retention,time_column}')
                                       ELSE 'kept until you ask us to erase them' END,
                                  privacy_internal.html_time(due.first), privacy_internal.html_time(due.last)), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o),
                              LATERAL (SELECT to_jsonb(min((w ->> 'due_at')::timestamptz)) AS first,
                                              to_jsonb(max((w ->> 'due_at')::timestamptz)) AS last
                                         FROM jsonb_array_elements(d -> 'rows') w) due));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'holds') hd WHERE (hd ->> 'active')::boolean) THEN
        h := h || '<p>A legal hold applies to your data (below): nothing is deleted while it lasts.</p>';
    END IF;
    h := h || '</section>' || E'\n';

    -- holds, erasures, requests
    h := h || '<section id="holds"><h2>Legal holds</h2>';
    IF jsonb_array_length(r -> 'holds') = 0 THEN
        h := h || '<p class="empty">No legal hold has been placed on your data.</p>';
    ELSE
        h := h || '<p>While a legal hold is active we must keep your data, even past its retention period or if you ask for erasure.</p>'
              || privacy_internal.html_table(ARRAY['Placed', 'Until', 'Released', 'Active'],
                     (SELECT string_agg(privacy_internal.html_row(
                                 privacy_internal.html_time(hd -> 'placed_at'), privacy_internal.html_time(hd -> 'until'),
                                 privacy_internal.html_time(hd -> 'released_at'),
                                 CASE WHEN (hd ->> 'active')::boolean THEN 'yes' ELSE 'no' END), '' ORDER BY o)
                        FROM jsonb_array_elements(r -> 'holds') WITH ORDINALITY AS e(hd, o)));
    END IF;
    h := h || '</section><section id="erasures"><h2>Erasures</h2>';
    IF jsonb_array_length(r -> 'erasures') = 0 THEN
        h := h || '<p class="empty">None of your data has been erased at your request.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Erasure', 'When', 'Why', 'What'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(er ->> 'erasure'), privacy_internal.html_time(er -> 'erased_at'),
                                  privacy_internal.html(er ->> 'reason'),
                                  coalesce((SELECT string_agg(privacy_internal.html(k) || ': ' || privacy_internal.html(v ->> 'rows')
                                                              || ' ' || privacy_internal.html(v ->> 'action'), '; ' ORDER BY k)
                                              FROM jsonb_each(er -> 'tables') AS tb(k, v)), '')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'erasures') WITH ORDINALITY AS e(er, o)));
    END IF;
    h := h || '</section><section id="requests"><h2>Your requests</h2>';
    IF jsonb_array_length(r -> 'requests') = 0 THEN
        h := h || '<p class="empty">We have no request from you on record.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Request', 'Kind', 'Received', 'Answer due', 'Status', 'Note'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(q ->> 'request'), privacy_internal.html(q ->> 'kind'),
                                  privacy_internal.html_time(q -> 'received_at'), privacy_internal.html_time(q -> 'deadline'),
                                  privacy_internal.html(replace(q ->> 'status', '_', ' '))
                                  || CASE WHEN q ->> 'closed_at' IS NOT NULL THEN ' ' || privacy_internal.html_time(q -> 'closed_at') ELSE '' END,
                                  privacy_internal.html(coalesce(q ->> 'resolution', q ->> 'extension_reason', ''))), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'requests') WITH ORDINALITY AS e(q, o)));
    END IF;
    h := h || '</section><footer>Subject report, format version ' || privacy_internal.html(r ->> 'version')
          || '. The same report is available as JSON for transfer to another service (GDPR Art. 20).</footer>'
          || '</main></body></html>' || E'\n';
    RETURN h;
END
$$;
COMMENT ON FUNCTION privacy.subject_report_html(text) IS
    'privacy.subject_report() as a self-contained HTML page for the subject (inline style, no script, every value escaped)';

REVOKE ALL ON FUNCTION privacy_internal.builtin_purpose_guard(),
    privacy_internal.report_table(regclass, name, text, name, interval),
    privacy.subject_report(text), privacy_internal.html(text), privacy_internal.html_value(jsonb),
    privacy_internal.html_time(jsonb), privacy_internal.html_basis(text), privacy_internal.html_row(text[]),
    privacy_internal.html_table(text[], text), privacy.subject_report_html(text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.subject_report(text), privacy.subject_report_html(text)
  TO privacy_officer;

-- ==== sql/install/99_privileges.sql
/*
 * 99_privileges.sql — least privilege, for every part: what PUBLIC, privacy_admin and
 * privacy_officer may use.  Kept last so that the schema-wide REVOKEs
 * cover every object the parts created.
 */

------------------------------------------------------------------------------
-- Privileges: least privilege by default.
------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA privacy TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA privacy, privacy_internal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA privacy, privacy_internal FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA privacy, privacy_internal FROM PUBLIC;
-- The helpers are named inside the API's SQL, which runs as its caller (an
-- officer's purge, a DDL statement's event trigger), so the schema is usable
-- by everyone; what may be executed there is granted function by function
-- below, to PUBLIC only where the encrypted types, the policies or the
-- triggers on users' tables need it.
GRANT USAGE ON SCHEMA privacy_internal TO PUBLIC;

GRANT SELECT ON privacy.categories, privacy.purposes, privacy.purpose_categories,
                privacy.role_purposes, privacy.purpose_holders, privacy.keys
   TO privacy_admin, privacy_officer;
GRANT SELECT ON privacy.my_purposes TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    privacy.create_category(text, text, boolean),
    privacy.drop_category(text),
    privacy.create_purpose(text, text, text, text[]),
    privacy.drop_purpose(text),
    privacy.allow_category(text, text),
    privacy.disallow_category(text, text),
    privacy.grant_purpose(text, text),
    privacy.revoke_purpose(text, text),
    privacy.master_key_fingerprint(),
    privacy.previous_master_key_fingerprint(),
    privacy.rotate_key(text),
    privacy.rotate_master_key()
  TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy.destroy_subject_key(text), privacy.subject_hash(text)
  TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.master_key_status() TO privacy_admin, privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.check_purpose(text), privacy.may_use(text) TO PUBLIC;

-- The encrypted types are for everyone: their functions carry their own checks
-- (the decryption gate, the category move check).
GRANT EXECUTE ON FUNCTION
    privacy_internal.encrypted_text_in(cstring, oid, integer), privacy_internal.encrypted_text_out(privacy.encrypted_text),
    privacy_internal.encrypted_text_recv(internal, oid, integer), privacy_internal.encrypted_text_send(privacy.encrypted_text),
    privacy_internal.encrypted_bytea_in(cstring, oid, integer), privacy_internal.encrypted_bytea_out(privacy.encrypted_bytea),
    privacy_internal.encrypted_bytea_recv(internal, oid, integer), privacy_internal.encrypted_bytea_send(privacy.encrypted_bytea),
    privacy_internal.encrypted_typmod_in(cstring[]), privacy_internal.encrypted_typmod_out(integer),
    privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean),
    privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean),
    privacy_internal.encrypted_text(text, integer, boolean), privacy_internal.encrypted_bytea(bytea, integer, boolean),
    privacy.plaintext(privacy.encrypted_text), privacy.plaintext(privacy.encrypted_bytea),
    privacy_internal.encrypted_eq(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_ne(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_lt(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_le(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_gt(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_ge(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_hash(privacy.encrypted_text),
    privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint),
    privacy_internal.encrypted_eq(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_ne(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_lt(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_le(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_gt(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_ge(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_hash(privacy.encrypted_bytea),
    privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint),
    privacy.envelope_info(privacy.encrypted_text), privacy.envelope_info(privacy.encrypted_bytea),
    privacy.is_erased(privacy.encrypted_text), privacy.is_erased(privacy.encrypted_bytea),
    privacy_internal.reseal(privacy.encrypted_text), privacy_internal.reseal(privacy.encrypted_bytea),
    privacy_internal.needs_reseal(privacy.encrypted_text), privacy_internal.needs_reseal(privacy.encrypted_bytea),
    privacy_internal.classify_new_columns(), privacy_internal.typmod_category(integer),
    privacy_internal.register_column(regclass, name)
  TO PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean),
    privacy.seal_for_subject(privacy.encrypted_text, text),
    privacy.seal_for_subject(privacy.encrypted_bytea, text)
  TO privacy_admin;
GRANT EXECUTE ON PROCEDURE privacy.reencrypt(regclass, name, integer) TO privacy_admin;

-- Consent: recorded by the compliance role (and by applications a DBA grants
-- these functions to); the policy helpers run for every reader.
GRANT EXECUTE ON FUNCTION
    privacy.grant_consent(text, text, text, jsonb), privacy.withdraw_consent(text, text, text, jsonb),
    privacy.object(text, text, text, jsonb), privacy.has_consent(text, text)
  TO privacy_officer;
GRANT SELECT ON privacy.consent_events, privacy.consent_state, privacy.consents
  TO privacy_officer, privacy_admin;
GRANT EXECUTE ON FUNCTION privacy_internal.consent_required(), privacy_internal.purpose_held(),
    privacy_internal.held_purpose(), privacy_internal.wanted_state(),
    privacy_internal.subject_int8(text), privacy_internal.seal_row()
  TO PUBLIC;
-- the policies read the consent state of the declared purpose through a view
GRANT SELECT ON privacy.purpose_consent_state TO PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.protect_table(regclass, name), privacy.unprotect_table(regclass)
  TO privacy_admin;
GRANT SELECT ON privacy.protected_tables, privacy.protected TO privacy_admin, privacy_officer;

-- Retention is the compliance role's.
GRANT EXECUTE ON FUNCTION
    privacy.set_retention(regclass, name, interval, text, name[], jsonb), privacy.drop_retention(regclass),
    privacy.place_hold(text, text, timestamptz), privacy.release_hold(text), privacy.purge_preview(),
    privacy_internal.purge_start(integer, interval, text, name), privacy_internal.purge_batch(bigint, regclass, integer),
    privacy_internal.purge_finish(bigint, text, text)
  TO privacy_officer;
GRANT EXECUTE ON PROCEDURE privacy.purge(integer, interval, text) TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.erase_subject(text, text) TO privacy_officer;
GRANT SELECT ON privacy.erasures TO privacy_officer, privacy_admin;
GRANT SELECT ON privacy.retention_rules, privacy.holds, privacy.active_holds, privacy.purge_runs,
    privacy.purge_run_tables, privacy.purge_progress
  TO privacy_officer, privacy_admin;
GRANT SELECT ON privacy.column_categories, privacy.classified_columns TO privacy_admin, privacy_officer;
-- pg_dump run by a privacy_admin member reads every table of the extension
-- (data keys only ever wrapped) and its sequences
GRANT SELECT ON ALL TABLES IN SCHEMA privacy TO privacy_admin;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA privacy TO privacy_admin;
