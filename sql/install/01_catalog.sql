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

-- Work on a user's table runs as the table's owner in a security-restricted
-- operation (src/catalog.c): whatever the owner attached to the table runs
-- with the owner's privileges, never with the extension's.  Executable by
-- the extension's owner only: its SECURITY DEFINER functions call it with
-- statements they build themselves.
CREATE FUNCTION privacy_internal.run_as_owner(tbl regclass, sql text, args text[] DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_run_as_owner' LANGUAGE C;
-- The same, returning the statement's first row as text[] (NULL: no row).
CREATE FUNCTION privacy_internal.run_as_owner_row(tbl regclass, sql text, args text[] DEFAULT NULL) RETURNS text[]
    AS 'MODULE_PATHNAME', 'privacy_run_as_owner_row' LANGUAGE C;

-- What purge and erasure derive from the catalogs (the foreign-key graph),
-- kept for the session until a relation it was derived from changes
-- (src/memo.c).  Executable by the extension's owner only.
CREATE FUNCTION privacy_internal.memo_get(name text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_memo_get' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION privacy_internal.memo_put(name text, rels oid[], value jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_memo_put' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.memo_get(text) IS
    'the value kept under name for this session, while the relations it was derived from are unchanged; else NULL';
COMMENT ON FUNCTION privacy_internal.memo_put(text, oid[], jsonb) IS
    'keep value under name for this session, derived from the relations rels (returns value)';

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
