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
    protected_by    name NOT NULL DEFAULT session_user,
    own_policies    jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE privacy.protected_tables IS
    'tables under consent-aware row-level security, and what protect_table changed (so unprotect_table can undo exactly that): own_policies holds the expressions of the table''s own permissive policies before the consent check was added to them';
SELECT pg_catalog.pg_extension_config_dump('privacy.protected_tables', '');
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.protected_tables FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.protected_tables FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.protected_tables ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

CREATE FUNCTION privacy_internal.purpose_held() RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_purpose_held' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.subject_int8(text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_subject_int8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION privacy_internal.seal_row() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_seal_row' LANGUAGE C;

-- The consent check of a row: one call of privacy_internal.visible() on its
-- subject column (05_consent.sql), no subquery, so that the policies are
-- the same on one server and on the shards of a distributed table, and a
-- scan costs a cached lookup per row rather than a join.
CREATE FUNCTION privacy_internal.policy_expr(subject_column name, subject_type regtype) RETURNS text
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
-- permissive policies instead; any permissive policy of the table's own
-- gets the check added (their expressions are kept in
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
    END IF;
    -- every permissive policy of the table's own (even a dormant one, which
    -- would widen what ours show once row-level security is on)
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

-- Every table below a table: partitions and children of inheritance alike.
CREATE FUNCTION privacy_internal.descendants(tbl regclass) RETURNS SETOF regclass
    LANGUAGE sql STABLE ROWS 10
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
    -- on Citus, the trigger goes to every shard of a distributed table (it
    -- makes no distributed query: its keys come from the coordinator)
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
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
    base boolean;
    kept jsonb;
    late name;
BEGIN
    SELECT c.relrowsecurity, c.relforcerowsecurity, c.relkind INTO rel
      FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    -- the seal trigger must see each row as it will be stored: no BEFORE
    -- row trigger on INSERT or UPDATE may fire after it (names decide)
    SELECT t.tgname INTO late FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = tbl AND NOT t.tgisinternal AND t.tgname <> 'privacy_seal_row'
       AND t.tgname::text COLLATE "C" > 'privacy_seal_row'
       AND (t.tgtype & 1) <> 0 AND (t.tgtype & 2) <> 0 AND (t.tgtype & (4 | 16)) <> 0
     ORDER BY t.tgname LIMIT 1;
    IF late IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition',
            MESSAGE = format('trigger "%s" on %s would fire after privacy_seal_row', late, tbl),
            DETAIL = 'BEFORE row triggers fire in the order of their names; values are sealed under their subject''s key by privacy_seal_row, which must see the row as it will be stored.',
            HINT = format('Rename it so that its name sorts before "privacy_seal_row", for example ALTER TRIGGER %I ON %s RENAME TO %I.',
                          late, tbl, 'a_' || late);
    END IF;
    -- a table without row-level security gets the extension's policies;
    -- one that had its own keeps them, with the consent check added
    base := NOT rel.relrowsecurity;
    INSERT INTO privacy.protected_tables (tbl, subject_column, parent, rls_was_enabled, rls_was_forced, base_policy)
    VALUES (tbl, subject_column, parent, rel.relrowsecurity, rel.relforcerowsecurity, base);
    -- one ALTER TABLE, which takes ACCESS EXCLUSIVE until the commit: the
    -- event triggers on ALTER TABLE fire once, not twice, under the lock
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    -- (their CREATE and ALTER POLICY fire guard_policies, which reads the row)
    kept := privacy_internal.add_policies(tbl, subject_column, NOT base);
    UPDATE privacy.protected_tables pt SET own_policies = pt.own_policies || kept WHERE pt.tbl = protect_one.tbl;
    -- row triggers on a partitioned table are cloned to its partitions
    IF parent IS NULL OR NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        PERFORM privacy_internal.create_seal_trigger(tbl, subject_column);
    END IF;
    -- rows already there move under their subject's key too, by batches
    -- that the caller runs at once for a small table (reseal_small), and
    -- CALL privacy.reseal() for a larger one (06_reseal.sql); meanwhile
    -- both keys' values are read alike, and every row written is sealed
    -- under its subject's key by the trigger
    IF rel.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                      WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                                        AND privacy_internal.is_encrypted_type(a.atttypid)) THEN
        PERFORM privacy_internal.reseal_enqueue(tbl, 'protect_table', NULL);
    END IF;
    -- on Citus, the workers learn that the table's shards are protected
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM privacy_internal.citus_resend(tbl);
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
    PERFORM privacy_internal.reseal_small(j.tbl, j.command, j.col)
       FROM privacy_internal.reseal_pending(tbl, 'protect_table', NULL) j;
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
    DELETE FROM privacy.reseal_jobs j
     WHERE j.command = 'protect_table'
       AND (j.tbl = unprotect_table.tbl OR j.tbl IN (SELECT privacy_internal.descendants(unprotect_table.tbl)));
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
        PERFORM privacy_internal.reseal_small(j.tbl, j.command, j.col)
           FROM privacy_internal.reseal_pending(r.part, 'protect_table', NULL) j;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_protect_new_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION privacy_internal.protect_new_partitions();

-- A policy created or changed on a protected table gets the consent check
-- too, so that no permissive policy can show a row the check hides.
CREATE FUNCTION privacy_internal.guard_policies() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    added jsonb;
BEGIN
    FOR r IN SELECT DISTINCT pt.tbl, pt.subject_column
               FROM pg_catalog.pg_event_trigger_ddl_commands() d
               JOIN pg_catalog.pg_policy pol ON d.classid = 'pg_catalog.pg_policy'::regclass AND pol.oid = d.objid
               JOIN privacy.protected_tables pt ON pt.tbl = pol.polrelid
    LOOP
        -- (its ALTER POLICY fires this trigger again, which finds nothing to add)
        added := privacy_internal.add_policies(r.tbl, r.subject_column, true);
        UPDATE privacy.protected_tables pt SET own_policies = pt.own_policies || added
         WHERE pt.tbl = r.tbl;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_guard_policies ON ddl_command_end
    WHEN TAG IN ('CREATE POLICY', 'ALTER POLICY')
    EXECUTE FUNCTION privacy_internal.guard_policies();

-- A dropped table leaves nothing behind in the registers.
CREATE FUNCTION privacy_internal.forget_dropped() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM privacy.protected_tables pt
     WHERE pt.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                            WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
    DELETE FROM privacy.reseal_jobs j
     WHERE j.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                           WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
    DELETE FROM privacy.column_categories cc
     WHERE cc.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                            WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
    DELETE FROM privacy.retention_rules rr
     WHERE rr.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
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
