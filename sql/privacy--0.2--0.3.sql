-- privacy--0.2--0.3.sql: upgrade from release 0.2 to 0.3.
--
-- Every change to sql/install/ since 0.2 has its statement here, in the
-- same order; test/tap/011_upgrade.pl checks that a 0.2 database updated
-- with this script has exactly the objects of a fresh 0.3 install
-- (test/tap/extension_signature.sql) and that its data still opens,
-- verifies and reports.  Schema-qualified throughout; search_path is
-- pg_catalog, pg_temp while it runs.

\echo Use "ALTER EXTENSION privacy UPDATE TO '0.3'" to load this file. \quit

------------------------------------------------------------------------------
-- #15: the consent check without a subquery.  Policies call
-- privacy_internal.visible(subject) (src/consent_cache.c); the consent-state
-- view, its helpers and the int8 index the old policy probed are gone.
------------------------------------------------------------------------------
-- The consent check of protected tables (src/consent_cache.c): whether the
-- subject's state allows the declared purpose, read with the statement's
-- snapshot and cached per backend.  Every change of the state is noticed by
-- these triggers (ALWAYS, so also when logical replication applies it), so
-- that no backend's cache outlives a change its next snapshot can see.
CREATE FUNCTION privacy_internal.visible(subject bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_int8' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.visible(subject text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_text' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.visible(subject uuid) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_uuid' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.visible(bigint) IS
    'the consent check of protected tables: does the subject''s consent state allow the declared purpose (an error without a purpose the role holds)';
CREATE FUNCTION privacy_internal.consent_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_consent_changed' LANGUAGE C;
CREATE TRIGGER consent_changed AFTER INSERT OR UPDATE OR DELETE ON privacy.consent_state
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.consent_changed();
CREATE TRIGGER consent_truncated AFTER TRUNCATE ON privacy.consent_state
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.consent_changed();
ALTER TABLE privacy.consent_state ENABLE ALWAYS TRIGGER consent_changed, ENABLE ALWAYS TRIGGER consent_truncated;

ALTER TABLE privacy.protected_tables ADD COLUMN own_policies jsonb NOT NULL DEFAULT '{}';
COMMENT ON TABLE privacy.protected_tables IS
    'tables under consent-aware row-level security, and what protect_table changed (so unprotect_table can undo exactly that): own_policies holds the expressions of the table''s own permissive policies before the consent check was added to them';

-- The consent check of a row: one call of privacy_internal.visible() on its
-- subject column (05_consent.sql), no subquery, so that the policies are
-- the same on one server and on the shards of a distributed table, and a
-- scan costs a cached lookup per row rather than a join.
CREATE OR REPLACE FUNCTION privacy_internal.policy_expr(subject_column name, subject_type regtype) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('privacy_internal.visible(%s)',
        CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
             THEN format('%I::pg_catalog.int8', subject_column)
             WHEN subject_type = 'uuid'::regtype
             THEN format('%I', subject_column)
             ELSE format('%I::pg_catalog.text', subject_column) END)
$$;

-- The policies of a protected table.  A table without row-level security
-- of its own gets one permissive policy per command, so that each command
-- is decided by exactly one of them and no combination of policies matters
-- (a distributed table's shards turn restrictive policies into permissive
-- ones): rows are read, updated and deleted where the consent check allows,
-- an update may not hand a row to a subject the purpose may not see, and
-- an insert needs a declared purpose the role holds.  A table with
-- policies of its own gets the consent check added to each of its
-- permissive policies instead (their expressions are kept in
-- protected_tables.own_policies for unprotect_table), so that a row is
-- shown only where both its own policies and the consent check allow.
CREATE FUNCTION privacy_internal.add_policies(tbl regclass, subject_column name, own boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    check_expr text;
    p record;
    kept jsonb := '{}';
BEGIN
    check_expr := privacy_internal.policy_expr(subject_column,
        (SELECT a.atttypid::regtype FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = tbl AND a.attname = subject_column AND a.attnum > 0 AND NOT a.attisdropped));
    IF NOT own THEN
        EXECUTE format('CREATE POLICY privacy_select ON %s AS PERMISSIVE FOR SELECT USING (%s)', tbl, check_expr);
        EXECUTE format('CREATE POLICY privacy_insert ON %s AS PERMISSIVE FOR INSERT WITH CHECK (privacy_internal.purpose_held())', tbl);
        EXECUTE format('CREATE POLICY privacy_update ON %s AS PERMISSIVE FOR UPDATE USING (%s) WITH CHECK (%s)',
                       tbl, check_expr, check_expr);
        EXECUTE format('CREATE POLICY privacy_delete ON %s AS PERMISSIVE FOR DELETE USING (%s)', tbl, check_expr);
        RETURN kept;
    END IF;
    FOR p IN SELECT pol.polname, pol.polcmd,
                    pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) AS using_expr,
                    pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) AS check_of
               FROM pg_catalog.pg_policy pol
              WHERE pol.polrelid = tbl AND pol.polpermissive
              ORDER BY pol.polname
    LOOP
        CONTINUE WHEN coalesce(p.using_expr, '') LIKE '%privacy_internal.visible(%'
                   OR coalesce(p.check_of, '') LIKE '%privacy_internal.visible(%'
                   OR coalesce(p.check_of, '') LIKE '%privacy_internal.purpose_held()%';
        kept := kept || jsonb_build_object(p.polname, jsonb_build_object('using', p.using_expr, 'check', p.check_of));
        IF p.polcmd = 'a' THEN
            EXECUTE format('ALTER POLICY %I ON %s WITH CHECK ((%s) AND privacy_internal.purpose_held())',
                           p.polname, tbl, p.check_of);
        ELSIF p.check_of IS NOT NULL THEN
            EXECUTE format('ALTER POLICY %I ON %s USING ((%s) AND %s) WITH CHECK ((%s) AND %s)',
                           p.polname, tbl, p.using_expr, check_expr, p.check_of, check_expr);
        ELSE
            EXECUTE format('ALTER POLICY %I ON %s USING ((%s) AND %s)', p.polname, tbl, p.using_expr, check_expr);
        END IF;
    END LOOP;
    RETURN kept;
END
$$;

-- The undo of add_policies: ours dropped, the table's own restored.
CREATE FUNCTION privacy_internal.drop_policies(tbl regclass, own_policies jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text;
    expr jsonb;
BEGIN
    EXECUTE format('DROP POLICY IF EXISTS privacy_select ON %s', tbl);
    EXECUTE format('DROP POLICY IF EXISTS privacy_insert ON %s', tbl);
    EXECUTE format('DROP POLICY IF EXISTS privacy_update ON %s', tbl);
    EXECUTE format('DROP POLICY IF EXISTS privacy_delete ON %s', tbl);
    FOR name, expr IN SELECT * FROM jsonb_each(own_policies) LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
                                   WHERE pol.polrelid = tbl AND pol.polname = name);
        IF expr ->> 'using' IS NOT NULL AND expr ->> 'check' IS NOT NULL THEN
            EXECUTE format('ALTER POLICY %I ON %s USING (%s) WITH CHECK (%s)', name, tbl, expr ->> 'using', expr ->> 'check');
        ELSIF expr ->> 'using' IS NOT NULL THEN
            EXECUTE format('ALTER POLICY %I ON %s USING (%s)', name, tbl, expr ->> 'using');
        ELSE
            EXECUTE format('ALTER POLICY %I ON %s WITH CHECK (%s)', name, tbl, expr ->> 'check');
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.protect_one(tbl regclass, subject_column name, parent regclass,
                                     reseal boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    base boolean;
    kept jsonb;
    sets text;
BEGIN
    SELECT c.relrowsecurity, c.relforcerowsecurity, c.relkind INTO rel
      FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    -- a table without row-level security gets the extension's policies;
    -- one that had its own keeps them, with the consent check added
    base := NOT rel.relrowsecurity;
    INSERT INTO privacy.protected_tables (tbl, subject_column, parent, rls_was_enabled, rls_was_forced, base_policy)
    VALUES (tbl, subject_column, parent, rel.relrowsecurity, rel.relforcerowsecurity, base);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    -- (their CREATE and ALTER POLICY fire guard_policies, which reads the row)
    kept := privacy_internal.add_policies(tbl, subject_column, NOT base);
    UPDATE privacy.protected_tables pt SET own_policies = kept WHERE pt.tbl = protect_one.tbl;
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

CREATE OR REPLACE FUNCTION privacy.unprotect_table(tbl regclass) RETURNS void
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
        PERFORM privacy_internal.drop_policies(p.tbl, p.own_policies);
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

-- Every protected table moves to the new policies: its old ones dropped,
-- the extension's own created (or the consent check added to its own).
DO $upgrade$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT * FROM privacy.protected_tables ORDER BY parent NULLS FIRST, tbl::text LOOP
        EXECUTE format('DROP POLICY IF EXISTS privacy_visibility ON %s', p.tbl);
        EXECUTE format('DROP POLICY IF EXISTS privacy_update ON %s', p.tbl);
        IF p.base_policy THEN
            EXECUTE format('DROP POLICY IF EXISTS privacy_base ON %s', p.tbl);
        END IF;
        UPDATE privacy.protected_tables pt
           SET own_policies = privacy_internal.add_policies(p.tbl, p.subject_column, NOT p.base_policy)
         WHERE pt.tbl = p.tbl;
    END LOOP;
END
$upgrade$;

-- A policy created or changed on a protected table gets the consent check
-- too, so that no permissive policy can show a row the check hides.
CREATE FUNCTION privacy_internal.guard_policies() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT pt.tbl, pt.subject_column
               FROM pg_catalog.pg_event_trigger_ddl_commands() d
               JOIN pg_catalog.pg_policy pol ON d.classid = 'pg_catalog.pg_policy'::regclass AND pol.oid = d.objid
               JOIN privacy.protected_tables pt ON pt.tbl = pol.polrelid
    LOOP
        UPDATE privacy.protected_tables pt
           SET own_policies = pt.own_policies || privacy_internal.add_policies(r.tbl, r.subject_column, true)
         WHERE pt.tbl = r.tbl;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_guard_policies ON ddl_command_end
    WHEN TAG IN ('CREATE POLICY', 'ALTER POLICY')
    EXECUTE FUNCTION privacy_internal.guard_policies();


DROP VIEW privacy.purpose_consent_state;
DROP FUNCTION privacy_internal.consent_required();
DROP FUNCTION privacy_internal.held_purpose();
DROP FUNCTION privacy_internal.wanted_state();
DROP INDEX privacy.consent_state_int8;

REVOKE ALL ON FUNCTION privacy_internal.consent_changed(), privacy_internal.add_policies(regclass, name, boolean),
    privacy_internal.drop_policies(regclass, jsonb), privacy_internal.guard_policies(),
    privacy_internal.visible(bigint), privacy_internal.visible(text), privacy_internal.visible(uuid)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.visible(bigint), privacy_internal.visible(text),
    privacy_internal.visible(uuid)
  TO PUBLIC;
