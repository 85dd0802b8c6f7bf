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

CREATE OR REPLACE FUNCTION privacy_internal.protect_one(tbl regclass, subject_column name, parent regclass,
                                     reseal boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    base boolean;
    kept jsonb;
    late name;
    sets text;
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
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    -- (their CREATE and ALTER POLICY fire guard_policies, which reads the row)
    kept := privacy_internal.add_policies(tbl, subject_column, NOT base);
    UPDATE privacy.protected_tables pt SET own_policies = pt.own_policies || kept WHERE pt.tbl = protect_one.tbl;
    -- row triggers on a partitioned table are cloned to its partitions
    IF parent IS NULL OR NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        PERFORM privacy_internal.create_seal_trigger(tbl, subject_column);
    END IF;
    IF parent IS NULL OR reseal THEN
        -- rows already there move under their subject's key too: the seal
        -- trigger reseals what each row's UPDATE writes, which runs as the
        -- table's owner (the owner's triggers never run as the extension)
        SELECT string_agg(format('%1$I = %1$I', a.attname), ', ')
          INTO sets
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype);
        IF sets IS NOT NULL THEN
            PERFORM privacy_internal.run_as_owner(tbl,
                format('UPDATE %s SET %s WHERE %I IS NOT NULL', tbl, sets, subject_column));
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

------------------------------------------------------------------------------
-- #12: work on users' tables runs as the table's owner in a
-- security-restricted operation; classify seals plain text as plaintext;
-- a coercion that adds a search tag passes the gate; = and <> are not
-- leakproof; encrypted values nested in other types are refused.
------------------------------------------------------------------------------
-- Work on a user's table runs as the table's owner in a security-restricted
-- operation (src/catalog.c): whatever the owner attached to the table runs
-- with the owner's privileges, never with the extension's.  Executable by
-- the extension's owner only: its SECURITY DEFINER functions call it with
-- statements they build themselves.
CREATE FUNCTION privacy_internal.run_as_owner(tbl regclass, sql text, args text[] DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_run_as_owner' LANGUAGE C;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
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
        -- as the table's owner: its triggers are its own code
        IF r.action = 'anonymize' THEN
            -- the rows stay: their encrypted values lose their search tags
            -- (an equality search would still find them), before the key goes
            SELECT concat_ws(', ', privacy_internal.anonymize_sets(r),
                             string_agg(format('%1$I = privacy_internal.shred_tag(%1$I)', a.attname), ', '
                                        ORDER BY a.attnum))
              INTO sets
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = pt.tbl AND a.attnum > 0 AND NOT a.attisdropped
               AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype)
               AND NOT r.anonymize ? a.attname;
            n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, sets, match));
        ELSE
            n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
        END IF;
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
-- The due rows of a rule as the table's owner selects them: the subjects
-- under hold are written into the query (a constant array, which the
-- executor hashes), since the owner may not read privacy.holds.
CREATE FUNCTION privacy_internal.due_rows(r privacy.retention_rules, subject_column name,
                                          cutoff timestamptz, held text[]) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    not_done text := '';
BEGIN
    IF r.action = 'anonymize' THEN
        SELECT ' AND (' || string_agg(CASE WHEN jsonb_typeof(r.anonymize -> c.col) = 'null'
                                           THEN format('t.%I IS NOT NULL', c.col)
                                           ELSE format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col, r.anonymize ->> c.col) END,
                                      ' OR ' ORDER BY c.col) || ')'
          INTO not_done FROM jsonb_object_keys(r.anonymize) AS c(col);
    END IF;
    RETURN format('SELECT t.tableoid, t.ctid FROM %s t WHERE t.%I < %L%s '
                  'AND NOT (t.%I::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]))',
                  r.tbl, r.time_column, cutoff, not_done, subject_column, coalesce(held, '{}'));
END
$$;
CREATE OR REPLACE FUNCTION privacy_internal.purge_batch(run_id bigint, tbl regclass, batch_size integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.retention_rules;
    subject name;
    cutoff timestamptz;
    sets text;
    stmt text;
    held text[];
    n bigint;
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = purge_batch.tbl;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
    SELECT prt.cutoff INTO cutoff FROM privacy.purge_run_tables prt
     WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    -- the rows are written as the table's owner (its triggers are its own
    -- code); the subjects under hold are passed in, as the owner may not
    -- read the holds
    SELECT pg_catalog.array_agg(DISTINCT h.subject) INTO held FROM privacy.active_holds h;
    IF r.action = 'delete' THEN
        stmt := format('DELETE FROM %s t WHERE (t.tableoid, t.ctid) IN (%s LIMIT %s',
                       r.tbl, privacy_internal.due_rows(r, subject, cutoff, held), batch_size);
    ELSE
        sets := privacy_internal.anonymize_sets(r);
        stmt := format('UPDATE %s t SET %s WHERE (t.tableoid, t.ctid) IN (%s LIMIT %s',
                       r.tbl, sets, privacy_internal.due_rows(r, subject, cutoff, held), batch_size);
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
        n := privacy_internal.run_as_owner(r.tbl, stmt || ')');
    EXCEPTION WHEN lock_not_available THEN
        n := privacy_internal.run_as_owner(r.tbl, stmt || ' FOR UPDATE OF t SKIP LOCKED)');
    END;
    PERFORM pg_catalog.set_config('lock_timeout', saved_timeout, true);
    UPDATE privacy.purge_run_tables prt SET purged = prt.purged + n, batches = prt.batches + 1
     WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    RETURN n;
END
$$;
CREATE OR REPLACE FUNCTION privacy.classify(tbl regclass, col name, category text,
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
        -- rewrites the column: every value is (re)sealed under the category
        -- key; as the table's owner (the rewrite evaluates its constraints
        -- and index expressions, which are the owner's code); plain values
        -- are sealed as the plaintext they are, whatever they look like
        PERFORM privacy_internal.run_as_owner(tbl,
            format('ALTER TABLE %s ALTER COLUMN %I TYPE %s(%s%s)%s', tbl, col, target,
                   category, CASE WHEN searchable THEN ', searchable' ELSE '' END,
                   CASE WHEN att.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype) THEN ''
                        WHEN target = 'privacy.encrypted_bytea' THEN format(' USING privacy_internal.seal_bytea(%I)', col)
                        ELSE format(' USING privacy_internal.seal_text(%I::pg_catalog.text)', col) END));
    END IF;
    INSERT INTO privacy.column_categories AS cc (tbl, col, category, searchable, encrypted)
    VALUES (tbl, col, category, searchable, is_encrypted)
    ON CONFLICT ON CONSTRAINT column_categories_pkey DO UPDATE
       SET category = EXCLUDED.category, searchable = EXCLUDED.searchable,
           encrypted = EXCLUDED.encrypted, classified_at = now(), classified_by = session_user;
END
$$;
CREATE FUNCTION privacy_internal.nests_encrypted(regtype) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_nests_encrypted' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.seal_text(text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'privacy_seal_text' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.seal_bytea(bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'privacy_seal_bytea' LANGUAGE C STRICT VOLATILE;
CREATE OR REPLACE FUNCTION privacy_internal.classify_new_columns() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- values inside an array, domain, composite or range escape the seal
    FOR r IN
        SELECT DISTINCT a.attrelid::regclass AS tbl, a.attname, a.atttypid::regtype AS typ
          FROM pg_catalog.pg_event_trigger_ddl_commands() d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass
           AND c.relkind IN ('r', 'p', 'm', 'f')
           AND a.attnum > 0 AND NOT a.attisdropped
           AND privacy_internal.nests_encrypted(a.atttypid)
    LOOP
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format('column "%s" of %s cannot hold encrypted values inside %s', r.attname, r.tbl, r.typ),
            DETAIL  = 'Encrypted values are sealed for a column of privacy.encrypted_text or privacy.encrypted_bytea itself; inside an array, domain, composite or range they would keep a key only the writing session holds.',
            HINT    = 'Store each value in a column of its own, or in a table of its own with a row per value.';
    END LOOP;
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
ALTER FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_text, privacy.encrypted_text) NOT LEAKPROOF;
ALTER FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_text, privacy.encrypted_text) NOT LEAKPROOF;
ALTER FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_bytea, privacy.encrypted_bytea) NOT LEAKPROOF;
ALTER FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_bytea, privacy.encrypted_bytea) NOT LEAKPROOF;
REVOKE ALL ON FUNCTION privacy_internal.run_as_owner(regclass, text, text[]),
    privacy_internal.due_rows(privacy.retention_rules, name, timestamptz, text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.seal_text(text), privacy_internal.seal_bytea(bytea),
    privacy_internal.nests_encrypted(regtype)
  TO PUBLIC;

-- #12: a protected table whose protection is not intact is a compliance gap
CREATE OR REPLACE FUNCTION privacy.compliance_gaps()
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
    -- protection that is no longer intact (only a superuser can get there:
    -- for everyone else the commands are refused)
    SELECT 'protection not intact', pt.tbl::text,
           format('Protected table %s %s.', pt.tbl,
                  concat_ws(', ',
                      CASE WHEN NOT c.relrowsecurity THEN 'has row-level security disabled' END,
                      CASE WHEN NOT c.relforcerowsecurity THEN 'no longer forces row-level security on its owner' END,
                      CASE WHEN pt.base_policy AND (SELECT count(*) FROM pg_catalog.pg_policy pol
                                                    WHERE pol.polrelid = pt.tbl
                                                      AND pol.polname IN ('privacy_select', 'privacy_insert', 'privacy_update', 'privacy_delete')) < 4
                           THEN 'lacks some of its consent-check policies' END,
                      CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
                                         WHERE pol.polrelid = pt.tbl AND pol.polpermissive AND pol.polcmd <> 'a'
                                           AND coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') NOT LIKE '%privacy_internal.visible(%')
                           THEN 'has a permissive policy without the consent check' END,
                      CASE WHEN NOT c.relispartition AND NOT EXISTS (
                                    SELECT 1 FROM pg_catalog.pg_trigger tg
                                     WHERE tg.tgrelid = pt.tbl AND tg.tgname = 'privacy_seal_row' AND tg.tgenabled IN ('O', 'A'))
                           THEN 'lacks an enabled seal trigger' END)),
           format('A member of privacy_admin protects it again: SELECT privacy.unprotect_table(%L); SELECT privacy.protect_table(%L, %L);',
                  coalesce(pt.parent, pt.tbl)::text, coalesce(pt.parent, pt.tbl)::text, pt.subject_column)
      FROM privacy.protected_tables pt JOIN pg_catalog.pg_class c ON c.oid = pt.tbl
     WHERE NOT c.relrowsecurity OR NOT c.relforcerowsecurity
        OR (pt.base_policy AND (SELECT count(*) FROM pg_catalog.pg_policy pol
                                 WHERE pol.polrelid = pt.tbl
                                   AND pol.polname IN ('privacy_select', 'privacy_insert', 'privacy_update', 'privacy_delete')) < 4)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
                    WHERE pol.polrelid = pt.tbl AND pol.polpermissive AND pol.polcmd <> 'a'
                      AND coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') NOT LIKE '%privacy_internal.visible(%')
        OR (NOT c.relispartition AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_trigger tg
                 WHERE tg.tgrelid = pt.tbl AND tg.tgname = 'privacy_seal_row' AND tg.tgenabled IN ('O', 'A')))
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

-- #12: erasure takes the search tags of the values it shreds
CREATE FUNCTION privacy_internal.shred_tag(privacy.encrypted_text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE;
CREATE FUNCTION privacy_internal.shred_tag(privacy.encrypted_bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE;
REVOKE ALL ON FUNCTION privacy_internal.shred_tag(privacy.encrypted_text),
    privacy_internal.shred_tag(privacy.encrypted_bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.shred_tag(privacy.encrypted_text),
    privacy_internal.shred_tag(privacy.encrypted_bytea) TO PUBLIC;

-- 08_retention.sql
-- Who started a run, decided by the process that runs it (worker.c): via
-- 'worker' only in the purge worker, the role as the session has it.
CREATE FUNCTION privacy_internal.purge_origin(asked_via text, asked_by name, OUT via text, OUT started_by name)
    AS 'MODULE_PATHNAME', 'privacy_purge_origin' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.purge_origin(text, name) IS
    'how a purge run is recorded: via ''worker'' in the purge worker only, ''call'' elsewhere, started by the role that runs it; refuses anything else';
REVOKE ALL ON FUNCTION privacy_internal.purge_origin(text, name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION privacy_internal.purge_start(batch_size integer, time_budget interval, via text, caller name) RETURNS bigint
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
    origin record;
BEGIN
    SELECT o.via, o.started_by INTO origin
      FROM privacy_internal.purge_origin(purge_start.via, purge_start.caller) o;
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
    VALUES (batch_size, time_budget, origin.via, origin.started_by, pg_backend_pid())
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

-- 07_access_log.sql
-- Where the log ends, kept apart from the batches so that entries cut off
-- the end (rows deleted, the batch table replaced, across restarts) are
-- found: one row, written by the writer in the transaction of each batch,
-- sealed under a key derived from the access log key (logchain.h).
CREATE TABLE privacy.access_log_head (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq   bigint NOT NULL,
    mac        bytea NOT NULL,
    broken_at  bigint,
    seal       bytea NOT NULL
);
COMMENT ON TABLE privacy.access_log_head IS
    'the end of the access log: the last entry''s seq and MAC (broken_at: the first entry written after the head was found lost or older than the log), sealed by the writer';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_head', '');

-- Seals the head of a log written before there was one (privacy--0.2--0.3.sql).
CREATE FUNCTION privacy_internal.access_log_seal_head() RETURNS void
    AS 'MODULE_PATHNAME', 'privacy_access_log_seal_head' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.access_log_seal_head() IS
    'for the extension''s update script only: seal the head of an access log that has none, where its batches end now';
GRANT SELECT ON privacy.access_log_head TO privacy_officer;
REVOKE ALL ON FUNCTION privacy_internal.access_log_seal_head() FROM PUBLIC;
-- (99_privileges.sql: SELECT on every table of the schema for privacy_admin)
GRANT SELECT ON privacy.access_log_head TO privacy_admin;
-- the log of 0.2 has no head yet: seal it where the log ends now (needs
-- the master key when the log has entries)
SELECT privacy_internal.access_log_seal_head();

------------------------------------------------------------------------------
-- #12, class 6: autovacuum prunes a destroyed key's old row version at its
-- next round (02_keys.sql)
------------------------------------------------------------------------------
ALTER TABLE privacy.data_keys SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0);

------------------------------------------------------------------------------
-- #16, scale-out on Citus: one catalog and one key set for the cluster
-- (12_citus.sql)
------------------------------------------------------------------------------
CREATE TABLE privacy_internal.citus_outbox (
    id          uuid PRIMARY KEY,
    node_group  integer,           -- NULL: every worker
    tbl         text NOT NULL,
    op          text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'CAPTURE')),
    old_row     jsonb,
    new_row     jsonb
);
COMMENT ON TABLE privacy_internal.citus_outbox IS
    'on Citus, a reference table that carries each change of the extension''s catalog from the coordinator to every worker in the same distributed transaction; always empty outside one';

-- The tables every node must hold alike, in the order their foreign keys
-- need (a parent before its children).
CREATE FUNCTION privacy_internal.citus_replicated_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['categories', 'column_categories', 'protected_tables', 'purposes',
                       'purpose_categories', 'role_purposes', 'data_keys',
                       'consent_events', 'consent_state', 'holds'] $$;

-- Whether this backend is applying a change that came through the outbox
-- (the capture triggers then stay silent, the ledger's guard lets it pass).
CREATE FUNCTION privacy_internal.citus_applying() RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_applying' LANGUAGE C STABLE;
CREATE FUNCTION privacy_internal.citus_set_applying(on_ boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'privacy_citus_set_applying' LANGUAGE C VOLATILE STRICT;

-- This node's Citus group: 0 is the coordinator; NULL without Citus.
CREATE FUNCTION privacy_internal.citus_local_group() RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT groupid FROM pg_catalog.pg_dist_local_group);
END
$$;

-- Row trigger on each replicated table: on the coordinator, the row's
-- image goes to the outbox; on a worker, a change that did not come through
-- the outbox is refused (the catalog is changed through the coordinator).
CREATE FUNCTION privacy_internal.citus_capture() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF privacy_internal.citus_applying() THEN
        RETURN NULL;
    END IF;
    -- the DDL Citus sends a worker for a shell table (its creation, the
    -- policies protect_table makes) updates that table's classification and
    -- protection there, as on the coordinator; the coordinator's own rows
    -- follow through the outbox
    IF privacy_internal.citus_local_group() IS DISTINCT FROM 0
       AND TG_TABLE_NAME IN ('column_categories', 'protected_tables') THEN
        RETURN NULL;
    END IF;
    IF privacy_internal.citus_local_group() IS DISTINCT FROM 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('privacy.%s cannot be changed on a Citus worker', TG_TABLE_NAME),
            DETAIL  = 'The extension''s catalog is the same on every node of the cluster and is changed through the coordinator, which carries each change to every worker in the same transaction.',
            HINT    = 'Run the statement on the coordinator.';
    END IF;
    INSERT INTO privacy_internal.citus_outbox (id, tbl, op, old_row, new_row)
    VALUES (gen_random_uuid(), TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

-- Create the capture triggers on this node's replicated tables.
CREATE FUNCTION privacy_internal.citus_install_capture() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY privacy_internal.citus_replicated_tables() LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgrelid = format('privacy.%I', t)::regclass AND tgname = 'citus_capture') THEN
            EXECUTE format('CREATE TRIGGER citus_capture AFTER INSERT OR UPDATE OR DELETE ON privacy.%I '
                           'FOR EACH ROW EXECUTE FUNCTION privacy_internal.citus_capture()', t);
            EXECUTE format('ALTER TABLE privacy.%I ENABLE ALWAYS TRIGGER citus_capture', t);
        END IF;
    END LOOP;
END
$$;

-- The primary key columns of a replicated table, and all its columns.
CREATE FUNCTION privacy_internal.citus_columns(tbl regclass, pk_only boolean) RETURNS name[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
SELECT array_agg(a.attname ORDER BY a.attnum)
  FROM pg_attribute a
 WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
   AND (NOT pk_only OR a.attnum = ANY ((SELECT i.indkey FROM pg_index i
                                         WHERE i.indrelid = tbl AND i.indisprimary)::int2[]))
$$;

-- Apply one change on this node, as the extension's owner.
CREATE FUNCTION privacy_internal.citus_apply_change(tbl text, op text, old_row jsonb, new_row jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    pk name[];
    cols name[];
    match text;
BEGIN
    IF op = 'CAPTURE' THEN
        PERFORM privacy_internal.citus_install_capture();
        RETURN;
    END IF;
    IF NOT tbl = ANY (privacy_internal.citus_replicated_tables()) THEN
        RAISE EXCEPTION 'privacy.% is not replicated to the workers', tbl;
    END IF;
    -- a table not distributed yet has no shell table on the workers: its
    -- record reaches them with the next privacy.citus_attach()
    IF tbl IN ('column_categories', 'protected_tables')
       AND pg_catalog.to_regclass(coalesce(new_row, old_row) ->> 'tbl') IS NULL THEN
        RETURN;
    END IF;
    rel := format('privacy.%I', tbl)::regclass;
    pk := privacy_internal.citus_columns(rel, true);
    cols := privacy_internal.citus_columns(rel, false);
    SELECT string_agg(format('t.%1$I IS NOT DISTINCT FROM r.%1$I', c), ' AND ') INTO match FROM unnest(pk) c;
    PERFORM privacy_internal.citus_set_applying(true);
    IF op = 'INSERT' THEN
        EXECUTE format('INSERT INTO %1$s SELECT * FROM jsonb_populate_record(NULL::%1$s, $1) '
                       'ON CONFLICT (%2$s) DO UPDATE SET (%3$s) = ROW(%4$s)', rel,
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(pk) c),
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg('excluded.' || quote_ident(c), ', ') FROM unnest(cols) c))
          USING new_row;
    ELSIF op = 'UPDATE' THEN
        EXECUTE format('UPDATE %1$s t SET (%2$s) = ROW(%3$s) FROM jsonb_populate_record(NULL::%1$s, $1) r, '
                       'jsonb_populate_record(NULL::%1$s, $2) n WHERE %4$s', rel,
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg('n.' || quote_ident(c), ', ') FROM unnest(cols) c),
                       match)
          USING old_row, new_row;
    ELSIF op = 'DELETE' THEN
        EXECUTE format('DELETE FROM %1$s t USING jsonb_populate_record(NULL::%1$s, $1) r WHERE %2$s', rel, match)
          USING old_row;
    END IF;
    PERFORM privacy_internal.citus_set_applying(false);
END
$$;

-- On each shard of the outbox: apply the change on a worker (the
-- coordinator made it already), then remove the row.
CREATE FUNCTION privacy_internal.citus_apply() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    grp integer := privacy_internal.citus_local_group();
BEGIN
    IF grp IS DISTINCT FROM 0 AND (NEW.node_group IS NULL OR NEW.node_group = grp) THEN
        PERFORM privacy_internal.citus_apply_change(NEW.tbl, NEW.op, NEW.old_row, NEW.new_row);
    END IF;
    EXECUTE format('DELETE FROM %s WHERE id = $1', TG_RELID::regclass) USING NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER citus_apply AFTER INSERT ON privacy_internal.citus_outbox
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.citus_apply();
ALTER TABLE privacy_internal.citus_outbox ENABLE ALWAYS TRIGGER citus_apply;

-- Join the extension to the Citus cluster, or bring nodes added since up to
-- date: on the coordinator, create the internal keys, make the outbox a
-- reference table (on every node, present and future), capture every later
-- change, and send every worker a full copy of the replicated tables (the
-- builtin rows every installation makes alike excepted).
CREATE FUNCTION privacy.citus_attach() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    n bigint := 0;
    c bigint;
    workers integer;
BEGIN
    IF privacy_internal.citus_local_group() IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'Citus is not installed in this database',
            HINT    = 'privacy.citus_attach() joins the extension to a Citus cluster: run CREATE EXTENSION citus and add the nodes first.';
    END IF;
    IF privacy_internal.citus_local_group() <> 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'privacy.citus_attach() runs on the coordinator',
            HINT    = 'Connect to the coordinator of the cluster.';
    END IF;
    -- made here, before the outbox joins Citus: they travel with the copy below
    PERFORM privacy_internal.ensure_internal_keys();
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'privacy_internal.citus_outbox'::regclass) THEN
        -- the outbox's trigger must reach its shards
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
        PERFORM create_reference_table('privacy_internal.citus_outbox');
    END IF;
    PERFORM privacy_internal.citus_install_capture();
    -- nodes added since have no placement of the outbox yet
    PERFORM replicate_reference_tables('block_writes');
    SELECT count(*) INTO workers FROM pg_catalog.pg_dist_node WHERE groupid <> 0 AND isactive;
    -- the full copy, parents before children; a row a worker has already
    -- is overwritten with the same (what only a worker has cannot exist:
    -- the capture trigger refuses changes there)
    FOREACH t IN ARRAY privacy_internal.citus_replicated_tables() LOOP
        EXECUTE format('INSERT INTO privacy_internal.citus_outbox (id, tbl, op, new_row) '
                       'SELECT gen_random_uuid(), %L, ''INSERT'', to_jsonb(r) FROM privacy.%I r WHERE NOT (%s)',
                       t, t, CASE t
                           WHEN 'categories' THEN 'r.builtin'
                           WHEN 'purposes' THEN 'r.name = ''subject_access'''
                           WHEN 'purpose_categories' THEN 'r.purpose = ''subject_access'''
                           WHEN 'role_purposes' THEN 'r.purpose = ''subject_access'''
                           ELSE 'false' END);
        GET DIAGNOSTICS c = ROW_COUNT;
        n := n + c;
    END LOOP;
    INSERT INTO privacy_internal.citus_outbox (id, tbl, op) VALUES (gen_random_uuid(), '', 'CAPTURE');
    RETURN workers;
END
$$;
COMMENT ON FUNCTION privacy.citus_attach() IS
    'on a Citus coordinator: keep the extension''s catalog the same on every node (run after adding nodes); returns the number of workers brought up to date';

-- Data keys on Citus come from the coordinator (citus.c): a worker, or the
-- coordinator itself, asks it over a connection of its own, and the key is
-- created and committed there, reaching every node at once.
CREATE FUNCTION privacy_internal.citus_create_key(scope text, name text, subject_hash bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_citus_create_key' LANGUAGE C VOLATILE;

REVOKE ALL ON TABLE privacy_internal.citus_outbox FROM PUBLIC;
REVOKE ALL ON FUNCTION privacy_internal.citus_replicated_tables(), privacy_internal.citus_applying(),
    privacy_internal.citus_set_applying(boolean), privacy_internal.citus_local_group(),
    privacy_internal.citus_capture(), privacy_internal.citus_install_capture(),
    privacy_internal.citus_columns(regclass, boolean), privacy_internal.citus_apply_change(text, text, jsonb, jsonb),
    privacy_internal.citus_apply(), privacy.citus_attach(), privacy_internal.citus_create_key(text, text, bytea)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.citus_attach() TO privacy_admin;

-- #16: the purpose travels with the query (citus.c)
CREATE FUNCTION privacy_internal.citus_purpose(purpose text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_purpose' LANGUAGE C STABLE PARALLEL SAFE;
GRANT EXECUTE ON FUNCTION privacy_internal.citus_purpose(text) TO PUBLIC;

-- #16: the seal trigger reaches every shard of a distributed table (06_protect.sql)
CREATE OR REPLACE FUNCTION privacy_internal.create_seal_trigger(tbl regclass, subject_column name) RETURNS void
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

-- A distributed table's own catalog rows (its classified columns, its
-- protection), sent again to every worker: what was recorded before the
-- table was distributed did not reach them (no shell table there yet).
CREATE FUNCTION privacy_internal.citus_resend(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF privacy_internal.citus_local_group() IS DISTINCT FROM 0
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                       WHERE logicalrelid = 'privacy_internal.citus_outbox'::regclass)
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = tbl) THEN
        RETURN;
    END IF;
    INSERT INTO privacy_internal.citus_outbox (id, tbl, op, new_row)
    SELECT gen_random_uuid(), 'column_categories', 'INSERT', to_jsonb(c)
      FROM privacy.column_categories c WHERE c.tbl = citus_resend.tbl;
    INSERT INTO privacy_internal.citus_outbox (id, tbl, op, new_row)
    SELECT gen_random_uuid(), 'protected_tables', 'INSERT', to_jsonb(p)
      FROM privacy.protected_tables p WHERE p.tbl = citus_resend.tbl;
END
$$;
REVOKE ALL ON FUNCTION privacy_internal.citus_resend(regclass) FROM PUBLIC;

-- #16: protect_table tells the workers (06_protect.sql)
CREATE OR REPLACE FUNCTION privacy_internal.protect_one(tbl regclass, subject_column name, parent regclass,
                                     reseal boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    base boolean;
    kept jsonb;
    late name;
    sets text;
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
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    -- (their CREATE and ALTER POLICY fire guard_policies, which reads the row)
    kept := privacy_internal.add_policies(tbl, subject_column, NOT base);
    UPDATE privacy.protected_tables pt SET own_policies = pt.own_policies || kept WHERE pt.tbl = protect_one.tbl;
    -- row triggers on a partitioned table are cloned to its partitions
    IF parent IS NULL OR NOT (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        PERFORM privacy_internal.create_seal_trigger(tbl, subject_column);
    END IF;
    IF parent IS NULL OR reseal THEN
        -- rows already there move under their subject's key too: the seal
        -- trigger reseals what each row's UPDATE writes, which runs as the
        -- table's owner (the owner's triggers never run as the extension)
        SELECT string_agg(format('%1$I = %1$I', a.attname), ', ')
          INTO sets
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype);
        IF sets IS NOT NULL THEN
            PERFORM privacy_internal.run_as_owner(tbl,
                format('UPDATE %s SET %s WHERE %I IS NOT NULL', tbl, sets, subject_column));
        END IF;
    END IF;
    -- on Citus, the workers learn that the table's shards are protected
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM privacy_internal.citus_resend(tbl);
    END IF;
END
$$;
