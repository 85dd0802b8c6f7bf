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

-- #13: the subject report page speaks to the customer (11_report.sql):
-- a summary in plain sentences, the built-in purpose in the customer's words,
-- erased and empty states that read naturally.
-- A purpose as the page names it: the built-in one in the customer's words.
CREATE FUNCTION privacy_internal.html_purpose(purpose text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN purpose = 'subject_access' THEN 'answering your requests for your data'
                ELSE privacy_internal.html(purpose) END
$$;

-- Why a purpose may use the data, in a few plain words.
CREATE FUNCTION privacy_internal.html_why(basis text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE basis
        WHEN 'consent' THEN 'with your consent'
        WHEN 'contract' THEN 'to fulfil our contract with you'
        WHEN 'legal_obligation' THEN 'because the law requires it'
        WHEN 'vital_interests' THEN 'to protect someone''s life or health'
        WHEN 'public_task' THEN 'for a task in the public interest'
        WHEN 'legitimate_interests' THEN 'in our legitimate interest'
        ELSE privacy_internal.html(basis) END
$$;

-- "1 record", "3 records".
CREATE FUNCTION privacy_internal.html_count(n bigint, one text, many text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n || ' ' || CASE WHEN n = 1 THEN one ELSE many END
$$;

CREATE OR REPLACE FUNCTION privacy.subject_report_html(subject text) RETURNS text
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
    -- the states the page speaks of
    held boolean := jsonb_array_length(r -> 'data') > 0;
    erased_at jsonb := (SELECT e -> 'erased_at' FROM jsonb_array_elements(r -> 'erasures') e
                         ORDER BY (e ->> 'erased_at')::timestamptz DESC LIMIT 1);
    hold_active boolean := EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'holds') hd WHERE (hd ->> 'active')::boolean);
    records bigint;
    places text;
    uses text;
    unused text;
    first_due jsonb;
    last_due jsonb;
    undated bigint;
    reads bigint;
    report_reads bigint;
    last_read jsonb;
    read_for text;
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
      || '#summary p{margin:6px 0}'
      || 'footer{margin-top:40px;color:#7a8794;font-size:13px}'
      || '</style></head><body><main>' || E'\n'
      || '<h1>Your personal data</h1>'
      || '<p class="lead">This page lists the personal data we hold about <strong>'
      || privacy_internal.html(r ->> 'subject') || '</strong>, why we use it, who has accessed it, and when it will be deleted'
      || ' (your right of access, GDPR Art. 15). Generated ' || privacy_internal.html_time(r -> 'generated_at') || '.</p>'
      || '<nav><a href="#summary">In short</a><a href="#data">Data</a><a href="#purposes">Purposes</a><a href="#consents">Consents</a>'
      || '<a href="#access">Access</a><a href="#retention">Retention</a><a href="#holds">Holds</a>'
      || '<a href="#erasures">Erasures</a><a href="#requests">Requests</a></nav>' || E'\n';

    -- in short: what is held, why, for how long, who read it and why
    h := h || '<section id="summary"><h2>In short</h2>';
    SELECT sum(jsonb_array_length(d -> 'rows')),
           string_agg(privacy_internal.html(d ->> 'table') || ' (' || jsonb_array_length(d -> 'rows') || ')', ', ' ORDER BY o)
      INTO records, places
      FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o);
    IF erased_at IS NOT NULL THEN
        -- what an erasure leaves: rows whose personal columns were cleared
        h := h || '<p>We erased your data on ' || privacy_internal.html_time(erased_at) || '.'
              || CASE WHEN held THEN ' What is left: ' || privacy_internal.html_count(records, 'record', 'records')
                                     || ' with your personal data removed, which we keep for our records: ' || places || '.'
                      ELSE '' END
              || ' We no longer use your data for anything.</p>'
              || '<p>We keep only what shows that your rights were respected: the record of the erasure'
              || CASE WHEN jsonb_array_length(r -> 'consents') > 0 THEN ', the history of your consents' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'requests') > 0 THEN ', your requests' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'access') > 0 THEN ' and the record of who read your data before' ELSE '' END
              || '.</p>';
    ELSIF held THEN
        h := h || '<p>We hold ' || privacy_internal.html_count(records, 'record', 'records') || ' about you, in '
              || privacy_internal.html_count(jsonb_array_length(r -> 'data'), 'part', 'parts') || ' of our systems: '
              || places || '.</p>';
        SELECT string_agg(privacy_internal.html(p ->> 'purpose') || ' (' || privacy_internal.html_why(p ->> 'legal_basis') || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE (p ->> 'in_effect')::boolean),
               string_agg(privacy_internal.html(p ->> 'purpose') || ' ('
                          || CASE p ->> 'state' WHEN 'objected' THEN 'you objected'
                                                WHEN 'withdrawn' THEN 'you withdrew your consent'
                                                ELSE 'you have not given your consent' END || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE NOT (p ->> 'in_effect')::boolean)
          INTO uses, unused
          FROM jsonb_array_elements(r -> 'purposes') p
         WHERE p ->> 'purpose' <> 'subject_access';
        h := h || '<p>' || CASE WHEN uses IS NULL THEN 'At the moment we may not use '
                                                      || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for anything.'
                                ELSE 'We may use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || uses || '.' END
              || CASE WHEN unused IS NULL THEN ''
                      ELSE ' We do not use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || unused || '.' END
              || '</p>';
        SELECT to_jsonb(min(w.due)), to_jsonb(max(w.due)), count(*) FILTER (WHERE w.due IS NULL)
          INTO first_due, last_due, undated
          FROM jsonb_array_elements(r -> 'data') d,
               LATERAL (SELECT (x2 ->> 'due_at')::timestamptz AS due FROM jsonb_array_elements(d -> 'rows') x2) w;
        h := h || '<p>'
              || CASE WHEN first_due IS NULL THEN ''
                      WHEN first_due = last_due AND (first_due #>> '{}')::timestamptz > now()
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ends on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; then it is' ELSE '; then they are' END
                           || ' deleted or anonymized. '
                      WHEN first_due = last_due
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ended on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; it is' ELSE '; they are' END
                           || ' deleted or anonymized at our next purge. '
                      ELSE 'The first of them '
                           || CASE WHEN (first_due #>> '{}')::timestamptz > now() THEN 'reaches' ELSE 'reached' END
                           || ' the end of its retention period on ' || privacy_internal.html_time(first_due)
                           || ', the last on ' || privacy_internal.html_time(last_due)
                           || '; each is then deleted or anonymized. ' END
              || CASE WHEN undated = 0 THEN ''
                      WHEN undated = records THEN CASE WHEN records = 1 THEN 'We keep it until you ask us to erase it. '
                                                       ELSE 'We keep them until you ask us to erase them. ' END
                      ELSE privacy_internal.html_count(undated, 'record has', 'records have')
                           || ' no retention period: we keep them until you ask us to erase them. ' END
              || CASE WHEN hold_active THEN 'A legal hold applies to your data: we must keep it while the hold lasts, even past these dates.'
                      ELSE '' END
              || '</p>';
    ELSE
        h := h || '<p>We hold no records about you.</p>';
    END IF;
    SELECT count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access'),
           count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' = 'subject_access'),
           to_jsonb(max((a ->> 'at')::timestamptz) FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access')),
           string_agg(DISTINCT privacy_internal.html(a ->> 'purpose'), ', ') FILTER (WHERE a ->> 'purpose' <> 'subject_access')
      INTO reads, report_reads, last_read, read_for
      FROM jsonb_array_elements(r -> 'access') a;
    h := h || '<p>'
          || CASE WHEN reads = 0 THEN 'Our access log records no one reading your encrypted data.'
                  ELSE 'Our staff and systems read your encrypted data '
                       || CASE WHEN reads = 1 THEN 'once' ELSE reads || ' times' END
                       || ', most recently on ' || privacy_internal.html_time(last_read)
                       || coalesce(', for ' || read_for, '') || '.' END
          || CASE WHEN report_reads = 0 THEN ''
                  ELSE ' We also read it ' || CASE WHEN report_reads = 1 THEN 'once' ELSE report_reads || ' times' END
                       || ' to prepare reports like this one for you.' END
          || '</p>';
    FOR x IN SELECT q FROM jsonb_array_elements(r -> 'requests') q WHERE (q ->> 'open')::boolean ORDER BY (q ->> 'request')::bigint LOOP
        h := h || '<p>Your ' || privacy_internal.html(x ->> 'kind') || ' request of ' || privacy_internal.html_time(x -> 'received_at')
              || ' is open; we answer it by ' || privacy_internal.html_time(x -> 'deadline') || '.</p>';
    END LOOP;
    h := h || '</section>' || E'\n';

    -- the data
    h := h || '<section id="data"><h2>The data we hold about you</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">We hold no records about you'
              || CASE WHEN erased_at IS NOT NULL THEN ': your data was erased on ' || privacy_internal.html_time(erased_at) ELSE '' END
              || '.</p>';
    ELSIF erased_at IS NOT NULL THEN
        h := h || '<p>Your data was erased on ' || privacy_internal.html_time(erased_at)
              || ': the records below are what is left, with your personal data removed.</p>';
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(r -> 'data') LOOP
        n := jsonb_array_length(t -> 'rows');
        SELECT array_agg(c ->> 'name' ORDER BY o) INTO cols
          FROM jsonb_array_elements(t -> 'columns') WITH ORDINALITY AS e(c, o);
        h := h || '<h3>' || privacy_internal.html(t ->> 'table') || '</h3><p>'
              || privacy_internal.html_count(n, 'record', 'records') || '.';
        IF jsonb_typeof(t -> 'retention') = 'object' THEN
            h := h || ' Kept for ' || privacy_internal.html(((t #>> '{retention,keep}')::interval)::text)
                  || ' after <em>' || privacy_internal.html(t #>> '{retention,time_column}') || '</em>, then '
                  || CASE WHEN t #>> '{retention,action}' = 'delete' THEN 'deleted'
                          ELSE 'anonymized (' || privacy_internal.html((SELECT string_agg(a, ', ' ORDER BY a)
                                                                  FROM jsonb_array_elements_text(t #> '{retention,anonymize}') a))
                               || ' cleared)' END || '.';
        ELSE
            h := h || ' No retention period is set for these records: we keep them until you ask us to erase them.';
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
          || CASE WHEN erased_at IS NOT NULL THEN '<p>Your data was erased, so none of these purposes uses it now. The table shows what each purpose is for.</p>'
                  WHEN held THEN ''
                  ELSE '<p>We hold no data about you, so none of these purposes uses any. The table shows what each purpose is for and the choices you have made.</p>' END
          || '<table><thead><tr><th>Purpose</th><th>Legal basis</th><th>Kinds of data</th><th>Your choice</th><th>Uses your data now</th></tr></thead><tbody>';
    FOR x IN SELECT p FROM jsonb_array_elements(r -> 'purposes') WITH ORDINALITY AS e(p, o)
              ORDER BY p ->> 'purpose' = 'subject_access', o LOOP
        IF x ->> 'purpose' = 'subject_access' THEN
            -- the built-in purpose, in the customer's words
            h := h || '<tr><td><strong>' || privacy_internal.html_purpose(x ->> 'purpose') || '</strong>'
                  || '<br>We read your data only to prepare a report like this one when you ask for it (GDPR Art. 15 and 20).'
                  || '</td><td>' || privacy_internal.html_basis(x ->> 'legal_basis') || '</td>'
                  || '<td>all kinds, only for such a report</td>'
                  || '<td>none needed: the law requires us to answer you</td>'
                  || '<td>' || CASE WHEN held AND erased_at IS NULL THEN 'only while we prepare a report for you'
                                    ELSE '<span class="none">&#8212;</span>' END
                  || '</td></tr>';
            CONTINUE;
        END IF;
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
                      ELSE CASE WHEN erased_at IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'consents') c
                                                                       WHERE c ->> 'purpose' = x ->> 'purpose')
                                THEN 'no longer on record: erased with your data'
                                WHEN x ->> 'legal_basis' = 'consent' THEN 'no consent given'
                                ELSE 'no objection' END END
              || '</td><td>' || CASE WHEN NOT held OR erased_at IS NOT NULL THEN '<span class="none">&#8212;</span>'
                                     WHEN (x ->> 'in_effect')::boolean THEN '<span class="yes">yes</span>'
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
        h := h || '<h3>' || privacy_internal.html(x ->> 'purpose') || '</h3><p>'
              || CASE x ->> 'state'
                      WHEN 'granted' THEN 'You have given your consent; it is in effect since ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'withdrawn' THEN 'You withdrew your consent on ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'objected' THEN 'You objected on ' || privacy_internal.html_time(x -> 'since') || ': we do not use your data for this.'
                      ELSE CASE WHEN erased_at IS NOT NULL
                                THEN 'Your choice is no longer on record: it was erased with your data. We keep the history below as proof that your choices were respected.'
                                ELSE 'No choice of yours is on record now.' END END
              || '</p>'
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
                                  privacy_internal.html_value(a -> 'application'),
                                  CASE WHEN a ->> 'purpose' IS NULL THEN privacy_internal.html_value(a -> 'purpose')
                                       ELSE privacy_internal.html_purpose(a ->> 'purpose') END,
                                  privacy_internal.html_value(a -> 'table'),
                                  coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                                              FROM jsonb_array_elements_text(a -> 'categories') c), ''),
                                  privacy_internal.html(a ->> 'values')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'access') WITH ORDINALITY AS l(a, o)));
        h := h || '<p class="empty">Each entry is one statement that read your encrypted data.</p>';
    END IF;
    h := h || '</section>' || E'\n';

    -- retention
    h := h || '<section id="retention"><h2>When your data will be deleted</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">There is nothing '
              || CASE WHEN erased_at IS NOT NULL THEN 'left to delete: your data was erased on ' || privacy_internal.html_time(erased_at)
                      ELSE 'to delete' END || '.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Records', 'Rule', 'First due', 'Last due'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(d ->> 'table'),
                                  CASE WHEN jsonb_typeof(d -> 'retention') = 'object'
                                       THEN CASE WHEN d #>> '{retention,action}' = 'delete' THEN 'deleted ' ELSE 'anonymized ' END
                                            || privacy_internal.html(((d #>> '{retention,keep}')::interval)::text)
                                            || ' after ' || privacy_internal.html(d #>> '{retention,time_column}')
                                       ELSE 'kept until you ask us to erase them' END,
                                  privacy_internal.html_time(due.first), privacy_internal.html_time(due.last)), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o),
                              LATERAL (SELECT to_jsonb(min((w ->> 'due_at')::timestamptz)) AS first,
                                              to_jsonb(max((w ->> 'due_at')::timestamptz)) AS last
                                         FROM jsonb_array_elements(d -> 'rows') w) due));
    END IF;
    IF hold_active THEN
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
                                  coalesce((SELECT string_agg(privacy_internal.html(k) || ': '
                                                              || privacy_internal.html_count((v ->> 'rows')::bigint, 'record', 'records')
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
REVOKE ALL ON FUNCTION privacy_internal.html_purpose(text), privacy_internal.html_why(text),
    privacy_internal.html_count(bigint, text, text) FROM PUBLIC;
-- #13 (and #19): erasure and purge follow the foreign keys between tables
-- (tables before the tables they reference, ON DELETE actions counted per
-- table, cycles and restricts from tables they do not process refused with
-- errors naming the constraint and both tables); a purge goes on past a
-- failing table, records why, and the next run resumes where the last one
-- stopped; concurrent purges skip or wait (privacy.purge(if_running));
-- erasure anonymizes every classified column or deletes, and says so per
-- table and column; erasure finds the key, the consent state and the holds
-- of its subject by index.
------------------------------------------------------------------------------
-- 02_keys.sql
CREATE OR REPLACE FUNCTION privacy.destroy_subject_key(subject text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- hashed once: in the WHERE clause the volatile hash would be computed
    -- for every key, and no index used
    hash bytea := privacy.subject_hash(subject);
    n integer;
BEGIN
    UPDATE privacy.data_keys k
       SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now()
     WHERE k.scope = 'subject' AND k.subject_hash = hash AND k.state <> 'destroyed';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION privacy.destroy_subject_key(text) IS
    'crypto-shredding: destroy the keys of a subject, so every copy of their encrypted values becomes unreadable';

-- 05_consent.sql
-- erasure and the subject report look a subject up without a purpose
CREATE INDEX consent_state_subject ON privacy.consent_state (subject);

-- 06_protect.sql
-- A dropped table leaves nothing behind in the registers.
CREATE OR REPLACE FUNCTION privacy_internal.forget_dropped() RETURNS event_trigger
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
    DELETE FROM privacy.retention_rules rr
     WHERE rr.tbl::oid IN (SELECT o.objid FROM pg_catalog.pg_event_trigger_dropped_objects() o
                            WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0);
END
$$;

-- 08_retention.sql
-- every hold of a subject, released ones too (an erasure renames them all)
DROP INDEX privacy.holds_subject_idx;
CREATE INDEX holds_subject ON privacy.holds (subject);
ALTER TABLE privacy.purge_runs ADD COLUMN resumes bigint;
-- runs of 0.2 have no order and no status per table
ALTER TABLE privacy.purge_run_tables
    ALTER COLUMN cutoff DROP NOT NULL,
    ADD COLUMN position integer,
    ADD COLUMN status text CHECK (status IN ('pending', 'done', 'failed')),
    ADD COLUMN waiting bigint,
    ADD COLUMN cascaded bigint NOT NULL DEFAULT 0,
    ADD COLUMN set_null bigint NOT NULL DEFAULT 0,
    ADD COLUMN error text;
ALTER TABLE privacy.purge_run_tables ALTER COLUMN status SET DEFAULT 'pending';
COMMENT ON TABLE privacy.purge_runs IS 'every purge run: who started it, how, and how it ended (interrupted runs are marked by the next run, which resumes where they stopped)';
COMMENT ON TABLE privacy.purge_run_tables IS 'per table and run: its position in the run (tables before the tables they reference), rows due when the run started, rows purged, held, still due when the table was done (waiting), deleted or set to NULL by ON DELETE actions of other tables'' deletions (cascaded, set_null; action cascade: a table without a rule that they reached), and whether the table was done or failed, with the error (SQLSTATE and message, no values)';
COMMENT ON COLUMN privacy.purge_runs.resumes IS 'the run this one resumes: it left tables pending (stopped, interrupted or failed), and this run started with them';

-- The table a relation is processed through: the protected table it
-- belongs to (partitions and children of inheritance are processed with
-- it), else its partitioned table, else itself.
CREATE FUNCTION privacy_internal.graph_root(rel regclass) RETURNS regclass
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce((SELECT coalesce(pt.parent, pt.tbl) FROM privacy.protected_tables pt WHERE pt.tbl = rel),
                    pg_catalog.pg_partition_root(rel), rel);
END
$$;

-- The tables an operation processes (protected tables: erasure; tables
-- with a retention rule: a purge), in an order where a table comes before
-- the tables it references.  The order must follow references ON DELETE
-- NO ACTION and RESTRICT (a referenced row cannot go first; a constraint
-- checked at commit is checked after each statement here, since the
-- statements run in a security-restricted operation, where PostgreSQL
-- fires no deferred trigger); it follows the others (CASCADE, SET NULL,
-- SET DEFAULT) where they form no cycle with the rest, so that a table's
-- own rows are counted as its own.  Ties go by name.  Tables on a cycle of
-- references the order must follow get the cycle's constraints (in cycle)
-- and come where the cycle was found: erase_subject refuses, a purge fails
-- them.
CREATE FUNCTION privacy_internal.fk_order(tables regclass[])
    RETURNS TABLE (tbl regclass, pos integer, cycle oid[])
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ec regclass[];          -- edges: ec[i] references ep[i] through constraint eo[i],
    ep regclass[];          -- which the order must follow when eh[i]
    eh boolean[];
    eo oid[];
    todo regclass[] := ARRAY(SELECT DISTINCT t FROM unnest(tables) t ORDER BY 1);
    pick regclass;
    soft boolean := true;
    n integer := 0;
    walk regclass[];
    cons oid[];
    cur regclass;
    nxt regclass;
    con oid;
    k integer;
BEGIN
    WITH tree AS (
        SELECT pt.tbl::oid AS rel, coalesce(pt.parent, pt.tbl) AS root FROM privacy.protected_tables pt
         WHERE coalesce(pt.parent, pt.tbl) = ANY (todo)
        UNION SELECT t::oid, t FROM unnest(todo) t)
    SELECT array_agg(rc.root ORDER BY c.oid), array_agg(rp.root ORDER BY c.oid),
           array_agg(c.confdeltype IN ('a', 'r') ORDER BY c.oid),
           array_agg(c.oid ORDER BY c.oid)
      INTO ec, ep, eh, eo
      FROM tree rc
      JOIN pg_catalog.pg_constraint c ON c.conrelid = rc.rel AND c.contype = 'f' AND c.conparentid = 0
      JOIN tree rp ON rp.rel = c.confrelid
     WHERE rc.root <> rp.root;
    IF ec IS NULL THEN
        -- no references between them
        RETURN QUERY SELECT t, (row_number() OVER (ORDER BY t::text))::integer, NULL::oid[]
                       FROM unnest(todo) t ORDER BY t::text;
        RETURN;
    END IF;
    WHILE cardinality(todo) > 0 LOOP
        SELECT t INTO pick FROM unnest(todo) t
         WHERE NOT EXISTS (SELECT 1 FROM unnest(ec, ep, eh) e(c, p, h)
                            WHERE e.p = t AND e.c = ANY (todo) AND (e.h OR soft))
         ORDER BY t::text LIMIT 1;
        IF pick IS NOT NULL THEN
            n := n + 1;
            tbl := pick; pos := n; cycle := NULL;
            RETURN NEXT;
            todo := array_remove(todo, pick);
        ELSIF soft THEN
            soft := false;      -- the optional references close a cycle: follow only the others
        ELSE
            -- every table left is referenced by another one left: walk back
            -- along those references until a table comes again
            cur := todo[1];
            walk := ARRAY[cur];
            cons := '{}';
            LOOP
                SELECT e.c, e.o INTO nxt, con FROM unnest(ec, ep, eh, eo) e(c, p, h, o)
                 WHERE e.p = cur AND e.c = ANY (todo) AND e.h ORDER BY e.c::text, e.o LIMIT 1;
                cons := cons || con;
                k := array_position(walk, nxt);
                EXIT WHEN k IS NOT NULL;
                walk := walk || nxt;
                cur := nxt;
            END LOOP;
            FOR pick IN SELECT w FROM unnest(walk[k:]) w ORDER BY w::text LOOP
                n := n + 1;
                tbl := pick; pos := n; cycle := cons[k:];
                RETURN NEXT;
                todo := array_remove(todo, pick);
            END LOOP;
        END IF;
    END LOOP;
END
$$;

-- The error for a cycle of references found by fk_order: no table of it
-- can lose its rows before the rows that reference them.
CREATE FUNCTION privacy_internal.fk_cycle_error(cycle oid[], operation text,
                                               OUT message text, OUT detail text, OUT hint text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('foreign keys form a cycle between tables %s',
                  (SELECT array_to_string(n[1:cardinality(n) - 1], ', ') || ' and ' || n[cardinality(n)]
                     FROM (SELECT array_agg(DISTINCT privacy_internal.graph_root(c2.confrelid)::text) AS n
                             FROM unnest(cycle) x2(con) JOIN pg_catalog.pg_constraint c2 ON c2.oid = x2.con) q)),
           'C' || substr(string_agg(format('constraint "%s" of table %s references table %s ON DELETE %s',
                                           c.conname, privacy_internal.graph_root(c.conrelid),
                                           privacy_internal.graph_root(c.confrelid),
                                           CASE c.confdeltype WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END),
                                    '; ' ORDER BY x.i), 2)
               || '. No table of the cycle can lose its rows before the rows that reference them.',
           CASE operation
               WHEN 'erasure' THEN 'Nothing was erased. Make one of these constraints ON DELETE CASCADE or ON DELETE SET NULL.'
               ELSE 'Make one of these constraints ON DELETE CASCADE or ON DELETE SET NULL; the other tables are purged.' END
      FROM unnest(cycle) WITH ORDINALITY x(con, i)
      JOIN pg_catalog.pg_constraint c ON c.oid = x.con
$$;

-- The constraint a foreign-key error names (by its table), as declared:
-- a partition's copy leads to the constraint it was copied from.
CREATE FUNCTION privacy_internal.fk_constraint(schema_name name, table_name name, constraint_name name) RETURNS oid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up(con, parent) AS (
        SELECT c.oid, c.conparentid FROM pg_catalog.pg_constraint c
          JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
         WHERE c.contype = 'f' AND c.conname = constraint_name AND r.relname = table_name AND n.nspname = schema_name
        UNION ALL
        SELECT c.oid, c.conparentid FROM up JOIN pg_catalog.pg_constraint c ON c.oid = up.parent)
    SELECT con FROM up WHERE parent = 0 LIMIT 1
$$;

-- The error for rows that a deletion cannot remove because rows of
-- another table still reference them (ON DELETE NO ACTION or RESTRICT).
-- referencing says what the operation does with the referencing table's
-- rows: 'not processed' (not protected, or no retention rule), 'kept'
-- (anonymized), 'deleted' (then the rows that block are another
-- subject's, or were written meanwhile).
CREATE FUNCTION privacy_internal.fk_blocked_error(con oid, operation text, referencing text,
                                                 OUT message text, OUT detail text, OUT hint text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('rows of table %s are still referenced from table %s through constraint "%s"', y, x, c.conname),
           format('The constraint is ON DELETE %s, and %s.',
                  CASE c.confdeltype WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END,
                  CASE WHEN operation = 'erasure' AND referencing = 'not processed'
                       THEN format('the erasure does not delete rows of table %s: it is not protected', x)
                       WHEN operation = 'erasure' AND referencing = 'kept'
                       THEN format('the erasure keeps the subject''s rows of table %s, anonymized by its retention rule', x)
                       WHEN operation = 'erasure'
                       THEN format('rows of table %s that belong to another subject reference the subject''s rows', x)
                       WHEN referencing = 'not processed'
                       THEN format('the purge does not delete rows of table %s: it has no retention rule', x)
                       WHEN referencing = 'kept'
                       THEN format('the retention rule of table %s anonymizes: its rows stay', x)
                       ELSE format('rows of table %s that reference them were written while the purge ran', x) END),
           CASE WHEN operation = 'erasure' AND referencing = 'not processed'
                THEN format('Nothing was erased. Protect table %s with privacy.protect_table(), so that the erasure deletes its rows of the subject too, or change the constraint to ON DELETE CASCADE or ON DELETE SET NULL.', x)
                WHEN operation = 'erasure' AND referencing = 'kept'
                THEN format('Nothing was erased. Let the retention rule of table %s anonymize too, so that its rows stay as well, or change the constraint to ON DELETE CASCADE or ON DELETE SET NULL.', y)
                WHEN operation = 'erasure'
                THEN 'Nothing was erased. Change the constraint to ON DELETE CASCADE or ON DELETE SET NULL, or correct the rows that refer to another subject''s rows.'
                WHEN referencing = 'not processed'
                THEN format('Give table %s a retention rule that deletes (it must be protected), or change the constraint to ON DELETE CASCADE or ON DELETE SET NULL.', x)
                WHEN referencing = 'kept'
                THEN format('Let the retention rule of table %s anonymize too, or change the constraint to ON DELETE CASCADE or ON DELETE SET NULL.', y)
                ELSE 'The next run tries again.' END
      FROM pg_catalog.pg_constraint c,
           LATERAL (SELECT privacy_internal.graph_root(c.conrelid) AS x, privacy_internal.graph_root(c.confrelid) AS y) t
     WHERE c.oid = con
$$;

-- The relations whose rows a deletion from tables can change: the tables,
-- their partitions and children, and, transitively, the tables that
-- reference them ON DELETE CASCADE, SET NULL or SET DEFAULT; each with the
-- table it is processed or reported through.  Found through pg_depend
-- (indexed on the referenced table), not by reading every constraint.
-- These helpers run for every erasure and purge batch: PL/pgSQL, whose
-- plans are kept for the session (an SQL function with a SET clause is
-- planned again at every call).
CREATE FUNCTION privacy_internal.fk_reach(tables regclass[]) RETURNS TABLE (rel oid, root regclass)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rels oid[] := tables::oid[];
    frontier oid[] := tables::oid[];
    found oid[];
BEGIN
    LOOP
        SELECT array_agg(DISTINCT x.r) INTO found
          FROM (SELECT i.inhrelid AS r FROM pg_catalog.pg_inherits i WHERE i.inhparent = ANY (frontier)
                UNION ALL
                SELECT c.conrelid FROM pg_catalog.pg_depend d
                  JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
                 WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = ANY (frontier)
                   AND d.classid = 'pg_catalog.pg_constraint'::regclass
                   AND c.contype = 'f' AND c.confrelid = d.refobjid AND c.confdeltype IN ('c', 'n', 'd')) x
         WHERE x.r <> ALL (rels);
        EXIT WHEN found IS NULL;
        rels := rels || found;
        frontier := found;
    END LOOP;
    RETURN QUERY
    SELECT r, coalesce((SELECT coalesce(pt.parent, pt.tbl) FROM privacy.protected_tables pt WHERE pt.tbl = r::regclass),
                       pg_catalog.pg_partition_root(r), r::regclass)
      FROM unnest(rels) r
     WHERE (SELECT k.relkind FROM pg_catalog.pg_class k WHERE k.oid = r) = 'r';
END
$$;

-- Rows deleted and updated so far in this transaction, per relation (the
-- statistics collector's counters of the transaction, which count what
-- ON DELETE actions do too); change_counts_since gives what changed since,
-- per table.
CREATE FUNCTION privacy_internal.change_counts(rels oid[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(r::text, jsonb_build_array(pg_stat_get_xact_tuples_deleted(r),
                                                                         pg_stat_get_xact_tuples_updated(r))), '{}')
              FROM unnest(rels) r);
END
$$;

CREATE FUNCTION privacy_internal.change_counts_since(before jsonb, rels oid[], roots regclass[])
    RETURNS TABLE (root regclass, deleted bigint, updated bigint)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT x.root, sum(pg_stat_get_xact_tuples_deleted(x.rel) - (before -> x.rel::text ->> 0)::bigint)::bigint,
           sum(pg_stat_get_xact_tuples_updated(x.rel) - (before -> x.rel::text ->> 1)::bigint)::bigint
      FROM unnest(rels, roots) x(rel, root)
     GROUP BY x.root;
END
$$;

-- The condition that keeps a due row of table tbl out of a purge's batch
-- while rows of a table whose own rule deletes them still reference it
-- ON DELETE NO ACTION or RESTRICT: it waits for them, and a later batch or
-- run takes it.  The references from other tables are left to the
-- constraint, whose error fails the table (fk_blocked_error).  The table's
-- owner runs the batch, with the constraint's own equality operators.
CREATE FUNCTION privacy_internal.purge_waits_for(tbl regclass) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT coalesce(string_agg(format(' AND NOT (t.tableoid OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.oid[]) AND EXISTS ('
                                      'SELECT 1 FROM %s%s c WHERE %s))',
                                      -- the rows the constraint covers: a partitioned table's partitions, or
                                      -- the table itself (not its children of inheritance)
                                      CASE WHEN pk.relkind = 'p'
                                           THEN (SELECT array_agg(p.relid::oid) FROM pg_catalog.pg_partition_tree(c.confrelid) p)
                                           ELSE ARRAY[c.confrelid] END,
                                      CASE WHEN k.relkind = 'p' THEN '' ELSE 'ONLY ' END, c.conrelid::regclass,
                                      (SELECT string_agg(format('t.%I OPERATOR(%I.%s) c.%I', pa.attname, o.nspname,
                                                                op.oprname, fa.attname), ' AND ' ORDER BY j.i)
                                         FROM unnest(c.confkey, c.conkey, c.conpfeqop) WITH ORDINALITY j(pk, fk, eq, i)
                                         JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = j.pk
                                         JOIN pg_catalog.pg_attribute fa ON fa.attrelid = c.conrelid AND fa.attnum = j.fk
                                         JOIN pg_catalog.pg_operator op ON op.oid = j.eq
                                         JOIN pg_catalog.pg_namespace o ON o.oid = op.oprnamespace)),
                               '' ORDER BY c.oid), '')
      FROM (SELECT tbl::oid AS rel UNION ALL SELECT x::oid FROM privacy_internal.descendants(tbl) x) tree
      JOIN pg_catalog.pg_constraint c
        ON c.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_constraint'::regclass
                        AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tree.rel)
       AND c.confrelid = tree.rel
      JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
      JOIN pg_catalog.pg_class pk ON pk.oid = c.confrelid
     WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confdeltype IN ('a', 'r')
       AND EXISTS (SELECT 1 FROM privacy.retention_rules rr
                    WHERE rr.tbl = privacy_internal.graph_root(c.conrelid) AND rr.action = 'delete'));
END
$$;

-- What a purge run keeps of an error that failed a table: its SQLSTATE and
-- message, never a value.  Not the DETAIL (PostgreSQL puts the row's
-- values there), not the message of an error raised in a function of the
-- table's owner (a trigger's RAISE may say anything), and not what a data
-- exception quotes.
CREATE FUNCTION privacy_internal.purge_error_text(state text, message text, context text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT state || ': ' || CASE
        WHEN state LIKE 'P0%'
          OR coalesce(context, '') ~ '(^|\n)(PL/\S+ function (?!privacy(_internal)?\.)|SQL function "(?!privacy))'
            THEN 'raised in a function of the table''s owner (its message is not kept)'
        WHEN state LIKE '22%' THEN regexp_replace(message, '"[^"]*"', '"?"', 'g')
        ELSE message END
$$;

-- The advisory lock a run holds while it runs, for the sessions that wait
-- for it (privacy.purge(if_running => 'wait')): (0x70727679 'prvy', run).
CREATE FUNCTION privacy_internal.purge_lock_key(run bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT (run % 2147483647)::integer $$;

-- One batch of one table of a run, in the caller's transaction.  Rows
-- locked by others are waited for 100 ms at most, then skipped (SKIP
-- LOCKED) and picked up by a later batch or run.  Due rows still
-- referenced by rows that a later batch or run deletes wait for them
-- (purge_waits_for).  An error fails this table only: it is recorded
-- (purge_error_text), the batch's work undone, and 0 returned, so that the
-- caller goes on with the next table.  Returns the rows purged; fewer than
-- batch_size: the table is done.
CREATE OR REPLACE FUNCTION privacy_internal.purge_batch(run_id bigint, tbl regclass, batch_size integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    r privacy.retention_rules;
    t privacy.purge_run_tables;
    subject name;
    stmt text;
    held text[];
    n bigint := 0;
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    blocked record;
    left_due bigint;
    waits_for text := '';
    st text;
    msg text;
    ctx text;
    con_name text;
    tab_name text;
    sch_name text;
    failure text;
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    SELECT * INTO t FROM privacy.purge_run_tables prt WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    IF t.status IS DISTINCT FROM 'pending' THEN
        RETURN 0;               -- done, failed, or no table of the run
    END IF;
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = purge_batch.tbl;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
    IF subject IS NULL THEN
        failure := format('55000: table %s has no retention rule or is no longer protected', tbl);
    ELSE
        BEGIN
            -- a foreign key checked at commit is checked here, where its error fails this table only
            SET CONSTRAINTS ALL IMMEDIATE;
            -- the rows are written as the table's owner (its triggers are its
            -- own code); the subjects under hold are passed in, as the owner
            -- may not read the holds
            SELECT pg_catalog.array_agg(DISTINCT h.subject) INTO held FROM privacy.active_holds h;
            IF r.action = 'delete' THEN
                waits_for := privacy_internal.purge_waits_for(r.tbl);
                stmt := format('DELETE FROM %s t WHERE (t.tableoid, t.ctid) IN (%s%s LIMIT %s', r.tbl,
                               privacy_internal.due_rows(r, subject, t.cutoff, held), waits_for, batch_size);
                -- what its deletions can reach, to count what they did there
                SELECT pg_catalog.array_agg(x.rel), pg_catalog.array_agg(x.root) INTO reach_rels, reach_roots
                  FROM privacy_internal.fk_reach(ARRAY[r.tbl]) x;
            ELSE
                stmt := format('UPDATE %s t SET %s WHERE (t.tableoid, t.ctid) IN (%s LIMIT %s', r.tbl,
                               privacy_internal.anonymize_sets(r),
                               privacy_internal.due_rows(r, subject, t.cutoff, held), batch_size);
            END IF;
            -- Usually no application holds a due row: write each row once.  If
            -- one does, wait at most 100 ms, then redo the batch skipping locked
            -- rows (which costs a lock on every row first).
            BEGIN
                -- a shorter lock_timeout of the session wins
                PERFORM pg_catalog.set_config('lock_timeout',
                    CASE WHEN pg_catalog.current_setting('lock_timeout') IN ('0', '')
                           OR '100ms'::interval < pg_catalog.current_setting('lock_timeout')::interval
                         THEN '100ms' ELSE pg_catalog.current_setting('lock_timeout') END, true);
                before := privacy_internal.change_counts(reach_rels);
                n := privacy_internal.run_as_owner(r.tbl, stmt || ')');
            EXCEPTION WHEN lock_not_available THEN
                before := privacy_internal.change_counts(reach_rels);
                n := privacy_internal.run_as_owner(r.tbl, stmt || ' FOR UPDATE OF t SKIP LOCKED)');
            END;
            PERFORM pg_catalog.set_config('lock_timeout', saved_timeout, true);
            -- rows of other tables (or of this one) its deletions removed or
            -- set to NULL through their ON DELETE actions
            FOR ch IN SELECT c.root, c.deleted - CASE WHEN c.root = r.tbl THEN n ELSE 0 END AS deleted, c.updated
                        FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c LOOP
                CONTINUE WHEN ch.deleted = 0 AND ch.updated = 0;
                INSERT INTO privacy.purge_run_tables AS prt (run_id, tbl, action, status, cascaded, set_null)
                VALUES (purge_batch.run_id, ch.root, 'cascade', NULL, ch.deleted, ch.updated)
                ON CONFLICT ON CONSTRAINT purge_run_tables_pkey DO UPDATE
                   SET cascaded = prt.cascaded + EXCLUDED.cascaded, set_null = prt.set_null + EXCLUDED.set_null;
            END LOOP;
            IF n < batch_size AND waits_for <> '' THEN
                -- done: what is still due waits for rows that reference it (or
                -- was locked by another session); a count of the due rows, as
                -- for matched, so only where rows can wait
                EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, false, t.cutoff))
                   INTO left_due;
            END IF;
            UPDATE privacy.purge_run_tables prt
               SET purged = prt.purged + n, batches = prt.batches + 1,
                   status = CASE WHEN n < batch_size THEN 'done' ELSE 'pending' END, waiting = left_due
             WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT,
                                    con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
            IF st = '23503' THEN
                -- rows of a table that this purge does not delete still reference the due rows
                SELECT e.* INTO blocked
                  FROM pg_catalog.pg_constraint c,
                       LATERAL privacy_internal.fk_blocked_error(c.oid, 'purge',
                           coalesce((SELECT CASE rr.action WHEN 'delete' THEN 'deleted' ELSE 'kept' END
                                       FROM privacy.retention_rules rr
                                      WHERE rr.tbl = privacy_internal.graph_root(c.conrelid)), 'not processed')) e
                 WHERE c.oid = privacy_internal.fk_constraint(sch_name, tab_name, con_name);
                IF blocked.message IS NOT NULL THEN
                    failure := format('%s: %s. %s', st, blocked.message, blocked.detail);
                END IF;
            END IF;
            failure := coalesce(failure, privacy_internal.purge_error_text(st, msg, ctx));
            n := 0;
        END;
    END IF;
    IF failure IS NOT NULL THEN
        UPDATE privacy.purge_run_tables prt SET status = 'failed', error = failure
         WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    END IF;
    RETURN n;
END
$$;

-- Start a run, or return NULL while another one is live (its backend is
-- busy with it): the caller skips or waits (purge_wait).  Runs left
-- 'running' by a crashed, cancelled or failed session are marked
-- interrupted.  The run's tables come in the order of their references
-- (fk_order), starting, when the last run left tables pending (stopped by
-- its time budget, interrupted), with the first of those: so a run that
-- never gets through all its tables does not starve the last ones.  Per
-- table it records what is due and held; the tables of a cycle of
-- references fail at once.  The run holds its advisory lock
-- (purge_lock_key) until purge_finish.
CREATE OR REPLACE FUNCTION privacy_internal.purge_start(batch_size integer, time_budget interval, via text, caller name) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run bigint;
    r privacy.retention_rules;
    p record;
    subject name;
    cutoff timestamptz := now();
    due bigint;
    held bigint;
    live integer;
    origin record;
    prev bigint;
    first integer;
    total integer;
    plan jsonb;
    cycle_error text;
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
        RETURN NULL;
    END IF;
    -- the locks of this backend's runs that ended without purge_finish
    PERFORM pg_advisory_unlock(1886549625, l.objid::integer) FROM pg_catalog.pg_locks l
      JOIN privacy.purge_runs pr ON privacy_internal.purge_lock_key(pr.id) = l.objid::integer
     WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.classid = 1886549625
       AND l.objsubid = 2 AND pr.outcome = 'running';
    UPDATE privacy.purge_runs pr SET outcome = 'interrupted', finished_at = coalesce(pr.finished_at, clock_timestamp())
     WHERE pr.outcome = 'running';
    -- the last run, if it left tables pending: this one starts with them
    SELECT pr.id INTO prev FROM privacy.purge_runs pr ORDER BY pr.id DESC LIMIT 1;
    IF NOT EXISTS (SELECT 1 FROM privacy.purge_run_tables prt WHERE prt.run_id = prev AND prt.status = 'pending') THEN
        prev := NULL;
    END IF;
    INSERT INTO privacy.purge_runs (batch_size, time_budget, via, started_by, pid, resumes)
    VALUES (batch_size, time_budget, origin.via, origin.started_by, pg_backend_pid(), prev)
    RETURNING id INTO run;
    SELECT jsonb_agg(jsonb_build_object('tbl', o.tbl::oid, 'pos', o.pos, 'cycle', o.cycle) ORDER BY o.pos)
      INTO plan
      FROM privacy_internal.fk_order(ARRAY(SELECT rr.tbl FROM privacy.retention_rules rr
                                             JOIN privacy.protected_tables pt ON pt.tbl = rr.tbl AND pt.parent IS NULL)) o;
    SELECT min((e ->> 'pos')::integer) INTO first
      FROM jsonb_array_elements(plan) e
      JOIN privacy.purge_run_tables prt ON prt.run_id = prev AND prt.tbl = (e ->> 'tbl')::oid::regclass
                                       AND prt.status = 'pending';
    total := coalesce(jsonb_array_length(plan), 0);
    FOR p IN SELECT (e ->> 'tbl')::oid::regclass AS tbl,
                    ARRAY(SELECT x::oid FROM jsonb_array_elements_text(nullif(e -> 'cycle', 'null')) x) AS cycle,
                    ((e ->> 'pos')::integer - coalesce(first, 1) + total) % total + 1 AS pos
               FROM jsonb_array_elements(plan) e LOOP
        SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = p.tbl;
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
        cycle_error := NULL;
        IF cardinality(p.cycle) > 0 THEN
            SELECT format('55000: %s. %s', e.message, e.detail) INTO cycle_error
              FROM privacy_internal.fk_cycle_error(p.cycle, 'purge') e;
        END IF;
        INSERT INTO privacy.purge_run_tables (run_id, tbl, action, cutoff, matched, held, position, status, error)
        VALUES (run, r.tbl, r.action, cutoff - r.keep, due, held, p.pos,
                CASE WHEN cycle_error IS NULL THEN 'pending' ELSE 'failed' END, cycle_error);
    END LOOP;
    PERFORM pg_advisory_lock(1886549625, privacy_internal.purge_lock_key(run));
    RETURN run;
END
$$;

-- The tables of a run still to do, in its order.
CREATE FUNCTION privacy_internal.purge_tables(run bigint) RETURNS SETOF regclass
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT prt.tbl FROM privacy.purge_run_tables prt
     WHERE prt.run_id = run AND prt.status = 'pending' ORDER BY prt.position
$$;

-- Wait until the live run ends, if there is one: on its advisory lock,
-- in rounds of a second, each checking that its backend is still busy
-- with it (a session whose CALL ended with an error keeps the lock).
CREATE FUNCTION privacy_internal.purge_wait() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live record;
BEGIN
    SELECT pr.id, pr.pid INTO live FROM privacy.purge_runs pr
      JOIN pg_catalog.pg_stat_activity a ON a.pid = pr.pid
     WHERE pr.outcome = 'running' AND a.state = 'active' AND a.pid <> pg_backend_pid()
     ORDER BY pr.id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', '1s', true);
            PERFORM pg_advisory_xact_lock_shared(1886549625, privacy_internal.purge_lock_key(live.id));
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
        PERFORM pg_stat_clear_snapshot();
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = live.pid AND a.state = 'active') THEN
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- End a run: its outcome (a run asked to complete with a failed table
-- failed, and says which), its end, and its advisory lock released.
CREATE OR REPLACE FUNCTION privacy_internal.purge_finish(run bigint, outcome text, error text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failed text;
BEGIN
    -- a run that waits for this one starts after this commits (purge_start)
    PERFORM pg_advisory_xact_lock(hashtext('privacy.purge'));
    SELECT format('%s of %s tables failed: %s', count(*) FILTER (WHERE prt.status = 'failed'),
                  count(*) FILTER (WHERE prt.position IS NOT NULL),
                  string_agg(prt.tbl::text, ', ' ORDER BY prt.position) FILTER (WHERE prt.status = 'failed'))
      INTO failed FROM privacy.purge_run_tables prt WHERE prt.run_id = run
    HAVING count(*) FILTER (WHERE prt.status = 'failed') > 0;
    UPDATE privacy.purge_runs pr
       SET outcome = CASE WHEN purge_finish.outcome = 'completed' AND failed IS NOT NULL THEN 'failed'
                          ELSE purge_finish.outcome END,
           error = nullif(concat_ws('; ', purge_finish.error, failed), ''),
           finished_at = clock_timestamp()
     WHERE pr.id = run;
    PERFORM pg_advisory_unlock(1886549625, l.objid::integer) FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.classid = 1886549625
       AND l.objid::integer = privacy_internal.purge_lock_key(run) AND l.objsubid = 2;
END
$$;

DROP PROCEDURE privacy.purge(integer, interval, text);
-- The purge.  A procedure so that it can commit after every batch (and
-- therefore not SECURITY DEFINER: its steps are).  One purge at a time per
-- database: while another one is live, this one does nothing (if_running
-- 'skip') or waits for it to end and then runs (if_running 'wait').  A
-- table that fails is recorded and the run goes on with the others.
CREATE PROCEDURE privacy.purge(batch_size integer DEFAULT 10000, time_budget interval DEFAULT NULL,
                               via text DEFAULT 'call', if_running text DEFAULT 'skip')
    LANGUAGE plpgsql
AS $$
DECLARE
    run bigint;
    t record;
    n bigint;
    total bigint := 0;
    trimmed bigint;
    batches integer := 0;
    started timestamptz;
    failure text;
    out_of_time boolean := false;
    failed record;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_size must be at least 1';
    END IF;
    IF if_running IS NULL OR if_running NOT IN ('skip', 'wait') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid if_running %s', coalesce(quote_literal(if_running), 'NULL')),
            HINT = 'Use skip (do nothing while another purge runs, the default) or wait (wait for it to end, then run).';
    END IF;
    LOOP
        IF if_running = 'wait' THEN
            PERFORM privacy_internal.purge_wait();
            COMMIT;
        END IF;
        run := privacy_internal.purge_start(batch_size, time_budget, via, current_user);
        COMMIT;
        EXIT WHEN run IS NOT NULL;
        IF if_running = 'skip' THEN
            RAISE NOTICE USING MESSAGE = 'another purge is running in this database: this one does nothing',
                HINT = 'privacy.purge_progress shows it; CALL privacy.purge(if_running => ''wait'') waits for it to end.';
            RETURN;
        END IF;
    END LOOP;
    -- the time budget counts from here, not from a wait
    started := pg_catalog.clock_timestamp();
    FOR t IN SELECT pt.tbl FROM privacy_internal.purge_tables(run) pt(tbl) LOOP
        LOOP
            IF time_budget IS NOT NULL AND pg_catalog.clock_timestamp() - started > time_budget THEN
                out_of_time := true;
                EXIT;
            END IF;
            BEGIN
                n := privacy_internal.purge_batch(run, t.tbl, batch_size);
            EXCEPTION WHEN OTHERS THEN
                failure := SQLSTATE || ': ' || SQLERRM;
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
    SELECT count(*) AS n, string_agg(format('%s: %s', prt.tbl, prt.error), E'\n' ORDER BY prt.position) AS errors
      INTO failed FROM privacy.purge_run_tables prt WHERE prt.run_id = run AND prt.status = 'failed';
    IF failure IS NOT NULL OR failed.n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'external_routine_exception',
            MESSAGE = CASE WHEN failure IS NOT NULL THEN format('purge run %s failed', run)
                           ELSE format('purge run %s failed for %s of its tables', run, failed.n) END,
            DETAIL = concat_ws(E'\n', failure, failed.errors),
            HINT = 'The other tables were purged, and the batches committed before a failure stay done; privacy.purge_run_tables says what failed. The next run tries again.';
    END IF;
    RAISE NOTICE 'purge run % %: % rows purged', run,
        CASE WHEN out_of_time THEN 'stopped at its time budget' ELSE 'completed' END, total;
END
$$;
COMMENT ON PROCEDURE privacy.purge(integer, interval, text, text) IS
    'delete or anonymize rows past their retention, in batches committed one by one, tables before the tables they reference; held subjects are skipped; a failing table does not stop the others; resumable; if_running: skip (default) or wait while another purge runs';

CREATE OR REPLACE VIEW privacy.purge_progress AS
SELECT pr.id AS run_id, pr.started_at, pr.started_by, pr.via, pr.outcome,
       prt.tbl AS table_name, prt.action, prt.matched, prt.purged, prt.held, prt.batches,
       pg_catalog.clock_timestamp() - pr.started_at AS running_for,
       prt.position, prt.status, prt.cascaded, prt.set_null
  FROM privacy.purge_runs pr
  JOIN privacy.purge_run_tables prt ON prt.run_id = pr.id
 WHERE pr.outcome = 'running';
COMMENT ON VIEW privacy.purge_progress IS 'the purge running now, per table in the order of the run';

-- 09_erasure.sql
-- What an erasure does to a protected table's rows of the subject: deleted,
-- unless the table's retention rule anonymizes and every classified column
-- can be cleared.  Then the rule's columns take their masking value (or
-- NULL), the other classified columns NULL, the other encrypted columns
-- keep their values, shredded with the subject's key (their search tags
-- removed).  A classified subject column, or a classified NOT NULL column
-- the rule gives no masking value, cannot be cleared: the rows are deleted,
-- and reason says why.  columns says what happens to each column.
CREATE FUNCTION privacy_internal.erasure_action(tbl regclass, subject_column name,
                                               OUT action text, OUT sets text, OUT columns jsonb, OUT reason text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.retention_rules;
BEGIN
    action := 'deleted';
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = erasure_action.tbl;
    IF r.action IS DISTINCT FROM 'anonymize' THEN
        RETURN;
    END IF;
    WITH cols AS (
        SELECT a.attname AS col, a.attnum, a.attnotnull,
               a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype) AS shreddable,
               cc.col IS NOT NULL AS classified
          FROM pg_catalog.pg_attribute a
          LEFT JOIN privacy.column_categories cc ON cc.tbl = erasure_action.tbl AND cc.col = a.attname
         WHERE a.attrelid = erasure_action.tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND (cc.col IS NOT NULL OR r.anonymize ? a.attname
                OR a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype))),
    fate AS (
        SELECT c.*, CASE WHEN r.anonymize ? c.col
                         THEN CASE WHEN jsonb_typeof(r.anonymize -> c.col) = 'null' THEN 'null' ELSE 'masked' END
                         WHEN c.shreddable THEN 'shredded'
                         ELSE 'null' END AS what
          FROM cols c)
    SELECT string_agg(CASE WHEN f.what = 'masked' THEN format('%I = %L', f.col, r.anonymize ->> f.col)
                           WHEN f.what = 'null' THEN format('%I = NULL', f.col)
                           ELSE format('%1$I = privacy_internal.shred_tag(%1$I)', f.col) END, ', ' ORDER BY f.attnum),
           jsonb_object_agg(f.col, f.what),
           (SELECT CASE WHEN g.col = subject_column
                        THEN format('the subject column %s is classified', g.col)
                        ELSE format('column %s is classified and NOT NULL, and the retention rule gives it no masking value', g.col) END
              FROM fate g
             WHERE g.classified AND (g.col = subject_column OR (g.what = 'null' AND g.attnotnull AND NOT r.anonymize ? g.col))
             ORDER BY g.col <> subject_column, g.attnum LIMIT 1)
      INTO sets, columns, reason
      FROM fate f;
    IF reason IS NULL THEN
        action := 'anonymized';
    ELSE
        sets := NULL;
        columns := NULL;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    subject_type regtype;
    match text;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
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

    -- the subject's rows, in every protected table (partitions and children
    -- through their root), tables before the tables they reference
    SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
    -- what the deletions can reach through ON DELETE actions, counted
    -- before and after (the transaction's own counters)
    SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
    -- references checked at commit are checked after each statement: the
    -- statements run in a security-restricted operation, where PostgreSQL
    -- fires no deferred trigger
    SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', ') INTO checked_at_commit
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
      JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
      JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
     WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
       AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
       AND c.condeferrable AND c.condeferred;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT o.tbl, o.cycle, p.subject_column
                    FROM privacy_internal.fk_order(roots) o
                    JOIN privacy.protected_tables p ON p.tbl = o.tbl
                   ORDER BY o.pos
        LOOP
            IF pt.cycle IS NOT NULL THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            SELECT a.atttypid::regtype INTO subject_type FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = pt.tbl AND a.attname = pt.subject_column;
            match := CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                          THEN format('t.%I = privacy_internal.subject_int8(%L)', pt.subject_column, subject)
                          ELSE format('t.%I::pg_catalog.text = %L', pt.subject_column, subject) END;
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, match));
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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
    'erase a subject in one transaction: their rows deleted or anonymized in every protected table (tables before the tables they reference), their keys destroyed, their consent history reduced; returns a receipt with what happened per table and column';

-- 99_privileges.sql
REVOKE ALL ON FUNCTION privacy_internal.graph_root(regclass), privacy_internal.fk_order(regclass[]),
    privacy_internal.fk_cycle_error(oid[], text), privacy_internal.fk_constraint(name, name, name),
    privacy_internal.fk_blocked_error(oid, text, text), privacy_internal.fk_reach(regclass[]),
    privacy_internal.change_counts(oid[]), privacy_internal.change_counts_since(jsonb, oid[], regclass[]),
    privacy_internal.purge_waits_for(regclass), privacy_internal.purge_error_text(text, text, text),
    privacy_internal.purge_lock_key(bigint), privacy_internal.purge_tables(bigint), privacy_internal.purge_wait(),
    privacy_internal.erasure_action(regclass, name)
  FROM PUBLIC;
REVOKE ALL ON PROCEDURE privacy.purge(integer, interval, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.purge_tables(bigint), privacy_internal.purge_wait() TO privacy_officer;
GRANT EXECUTE ON PROCEDURE privacy.purge(integer, interval, text, text) TO privacy_officer;

------------------------------------------------------------------------------
-- #13: denied reads are logged (07_access_log.sql, 11_report.sql)
------------------------------------------------------------------------------
-- privacy.access_log gains reason and denied_category (a refusal's reason
-- and the category of a refused value): the function that unpacks the
-- batches returns two more columns, so it, the view and the function
-- returning the view's rows are made again; the subject report shows each
-- access entry's outcome, and a denial's reason.
DROP FUNCTION privacy_internal.access_log_event(bigint);
DROP VIEW privacy.access_log;
DROP FUNCTION privacy_internal.access_log_statements(bytea, bigint);
CREATE FUNCTION privacy_internal.access_log_statements(entries bytea, only_seq bigint DEFAULT NULL)
    RETURNS TABLE (seq bigint, at timestamptz, session_role text, acting_role text, application text,
                   client_addr text, backend_pid integer, purpose text, command text, relid oid,
                   relation text, columns text[], categories text[], rows bigint, query_id bigint,
                   level integer, outcome text, reason text, denied_category text, mac bytea)
    AS 'MODULE_PATHNAME', 'privacy_access_log_statements' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_statements(bytea, bigint) IS
    'the statement events packed in one access_log_batches.entries (only the one with seq = only_seq, when given)';

CREATE VIEW privacy.access_log AS
SELECT e.* FROM privacy.access_log_batches b, LATERAL privacy_internal.access_log_statements(b.entries) e;
COMMENT ON VIEW privacy.access_log IS
    'who accessed which protected table, when, as which roles, for which purpose, which personal columns and how many rows, and who was refused (outcome denied, with the reason); never statement text';

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
REVOKE ALL ON privacy.access_log FROM PUBLIC;
REVOKE ALL ON FUNCTION privacy_internal.access_log_statements(bytea, bigint),
    privacy_internal.access_log_event(bigint) FROM PUBLIC;
GRANT SELECT ON privacy.access_log TO privacy_officer, privacy_admin;
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_statements(bytea, bigint),
    privacy_internal.access_log_event(bigint)
  TO privacy_officer;

CREATE OR REPLACE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
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
    -- rows the statement read in all (that is about other subjects too).
    -- A statement refused after opening some of them (or shown some with
    -- others masked) is a denial, with its reason; one refused before it
    -- read a row names no subject and is in the access log only.
    SELECT coalesce(jsonb_agg(x.entry ORDER BY x.seq), '[]')
      INTO access
      FROM (SELECT l.seq, jsonb_build_object(
                       'entry', l.seq, 'at', l.at, 'role', l.acting_role, 'session_role', l.session_role,
                       'application', l.application, 'purpose', l.purpose, 'command', l.command,
                       'table', l.relation,
                       'categories', to_jsonb(array_agg(DISTINCT s.category ORDER BY s.category)),
                       'values', sum(s.opened), 'outcome', l.outcome)
                   || CASE WHEN l.reason IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('reason', l.reason, 'denied_category', l.denied_category) END
                   AS entry
              FROM privacy_internal.access_log_for_subject(hash) s
              JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
             -- never this call's own reads (the writer may store them
             -- before the query below runs); earlier calls are listed
             WHERE NOT (l.backend_pid = pg_catalog.pg_backend_pid()
                        AND l.at >= pg_catalog.statement_timestamp())
             GROUP BY l.seq, l.at, l.acting_role, l.session_role, l.application, l.purpose,
                      l.command, l.relation, l.outcome, l.reason, l.denied_category) x;

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

-- #14: subject keys at scale.  privacy.data_keys no longer invalidates
-- every cache of every backend: a new key changes nothing anyone has
-- cached, and a retired, destroyed or deleted one leaves the caches key by
-- key (privacy_internal.data_keys_changed, keys_cache.c); the key caches,
-- per backend and shared, are shown by privacy.key_cache_status().
DROP TRIGGER catalog_changed ON privacy.data_keys;
DROP TRIGGER catalog_truncated ON privacy.data_keys;
CREATE FUNCTION privacy_internal.data_keys_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_data_keys_changed'
    LANGUAGE C;
CREATE TRIGGER data_keys_changed AFTER UPDATE OR DELETE
    ON privacy.data_keys FOR EACH ROW EXECUTE FUNCTION privacy_internal.data_keys_changed();
CREATE TRIGGER data_keys_truncated AFTER TRUNCATE
    ON privacy.data_keys FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.data_keys_changed();
ALTER TABLE privacy.data_keys ENABLE ALWAYS TRIGGER data_keys_changed, ENABLE ALWAYS TRIGGER data_keys_truncated;
REVOKE ALL ON FUNCTION privacy_internal.data_keys_changed() FROM PUBLIC;

CREATE FUNCTION privacy.key_cache_status()
    RETURNS TABLE (cache text, slots bigint, used bigint, hits bigint, misses bigint,
                   evictions bigint, bytes bigint, locked boolean)
    AS 'MODULE_PATHNAME', 'privacy_key_cache_status'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.key_cache_status() IS
    'the caches of unwrapped data keys: this backend''s and the shared one (slots, keys held, this backend''s hits and misses, evictions, memory, whether the key material is locked)';
REVOKE ALL ON FUNCTION privacy.key_cache_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.key_cache_status() TO privacy_admin;
-- A new subject's key is one entry in data_keys_active_subject; the index
-- of a subject's other keys holds only retired and destroyed ones.
DROP INDEX privacy.data_keys_subject;
CREATE INDEX data_keys_subject ON privacy.data_keys (subject_hash) WHERE scope = 'subject' AND state <> 'active';
CREATE OR REPLACE FUNCTION privacy.destroy_subject_key(subject text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- hashed once: in the WHERE clause the volatile hash would be computed
    -- for every key, and no index used
    hash bytea := privacy.subject_hash(subject);
    n integer;
BEGIN
    -- one arm per partial index: the active key (data_keys_active_subject)
    -- and the retired ones (data_keys_subject)
    UPDATE privacy.data_keys k
       SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now()
     WHERE k.scope = 'subject' AND k.subject_hash = hash
       AND (k.state = 'active' OR k.state = 'retired');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
-- The subject report and compliance_gaps() without JIT: their queries are
-- small, but the planner's guesses for the packed access log (1,000 entries
-- per batch) made every call compile its plan with LLVM (0.4 s).
ALTER FUNCTION privacy.subject_report(text) SET jit = off;
ALTER FUNCTION privacy.compliance_gaps() SET jit = off;
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
    -- the rows of a table the workers have (a distributed or reference
    -- table's shell) travel; a local table's, or a shard's the coordinator
    -- holds (a reference table's), do not
    IF TG_TABLE_NAME IN ('column_categories', 'protected_tables')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                        WHERE d.logicalrelid = (CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END
                                                ->> 'tbl')::regclass) THEN
        RETURN NULL;
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

-- #16: the purpose travels with an UPDATE or DELETE (citus.c); the
-- assignment casts are STABLE (03_types.sql)
CREATE FUNCTION privacy_internal.citus_purpose(purpose text, anchor anyelement) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_purpose' LANGUAGE C IMMUTABLE PARALLEL SAFE;
GRANT EXECUTE ON FUNCTION privacy_internal.citus_purpose(text, anyelement) TO PUBLIC;
ALTER FUNCTION privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean) STABLE;
ALTER FUNCTION privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean) STABLE;
ALTER FUNCTION privacy_internal.encrypted_text(text, integer, boolean) STABLE;
ALTER FUNCTION privacy_internal.encrypted_bytea(bytea, integer, boolean) STABLE;

-- One check of the cluster's access logs (one chain per node: each node
-- logs what it serves, under its own log key): verify_access_log() here
-- and on every worker, one row per node.
CREATE FUNCTION privacy.citus_verify_access_log()
    RETURNS TABLE (node text, status text, seq bigint, checked bigint, detail text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
    v jsonb;
BEGIN
    IF privacy_internal.citus_local_group() IS DISTINCT FROM 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'privacy.citus_verify_access_log() runs on a Citus coordinator',
            HINT    = 'Elsewhere, privacy.verify_access_log() checks this server''s log.';
    END IF;
    node := 'coordinator';
    SELECT x.status, x.seq, x.checked, x.detail INTO status, seq, checked, detail FROM privacy.verify_access_log() x;
    RETURN NEXT;
    FOR w IN EXECUTE 'SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers('
                     '''SELECT pg_catalog.to_jsonb(v) FROM privacy.verify_access_log() v'') ORDER BY nodename, nodeport' LOOP
        node := format('%s:%s', w.nodename, w.nodeport);
        IF w.success THEN
            v := w.result::jsonb;
            status := v ->> 'status'; seq := (v ->> 'seq')::bigint;
            checked := (v ->> 'checked')::bigint; detail := v ->> 'detail';
        ELSE
            status := 'unreachable'; seq := NULL; checked := NULL; detail := w.result;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION privacy.citus_verify_access_log() IS
    'on a Citus coordinator: privacy.verify_access_log() on every node of the cluster, one row per node';
REVOKE ALL ON FUNCTION privacy.citus_verify_access_log() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.citus_verify_access_log() TO privacy_officer;

-- #16: purges across shards on Citus, by the distribution column (08_retention.sql)

CREATE FUNCTION privacy_internal.citus_distributed(tbl regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
       INTO found USING tbl;
    RETURN found;
END
$$;

CREATE FUNCTION privacy_internal.row_identity(tbl regclass) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col text;
BEGIN
    IF privacy_internal.citus_distributed(tbl) THEN
        EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) '
                'FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1 AND p.partmethod = ''h'''
           INTO col USING tbl;
        IF col IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = format('retention on %s is not supported', tbl),
                DETAIL = 'On Citus, purges run on tables distributed by hash; a reference table''s copies name their rows differently on each node.',
                HINT = 'Keep personal data with a retention rule in a distributed table.';
        END IF;
        RETURN format('t.%I', col);
    END IF;
    RETURN 't.tableoid, t.ctid';
END
$$;

CREATE FUNCTION privacy_internal.due_where(tbl regclass, due text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head text := format('SELECT %s FROM %s t WHERE ', privacy_internal.row_identity(tbl), tbl);
BEGIN
    IF pg_catalog.left(due, pg_catalog.length(head)) <> head THEN
        RAISE EXCEPTION 'not a due query of %', tbl;
    END IF;
    RETURN '(' || pg_catalog.substr(due, pg_catalog.length(head) + 1) || ')';
END
$$;

CREATE FUNCTION privacy_internal.batch_rows(tbl regclass, due text, batch_size integer) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ident text := privacy_internal.row_identity(tbl);
    col text;
BEGIN
    IF ident = 't.tableoid, t.ctid' THEN
        RETURN format('(t.tableoid, t.ctid) IN (%s LIMIT %s', due, batch_size);
    END IF;
    RETURN format('%s AND %s IN (SELECT DISTINCT d.%s FROM (%s) d LIMIT %s',
                  privacy_internal.due_where(tbl, due), ident, pg_catalog.substr(ident, 3), due, batch_size);
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.due_query(r privacy.retention_rules, subject_column name, held boolean,
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
    IF privacy_internal.citus_distributed(r.tbl) THEN
        -- on Citus, the holds (a local table on each node) are written into
        -- the query, which goes to every shard
        RETURN format('SELECT %s FROM %s t WHERE t.%I < %L%s AND %s (t.%I::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]))',
                      privacy_internal.row_identity(r.tbl), r.tbl, r.time_column, cutoff, not_done,
                      CASE WHEN held THEN '' ELSE 'NOT' END, subject_column,
                      coalesce((SELECT pg_catalog.array_agg(DISTINCT h.subject) FROM privacy.active_holds h), '{}'));
    END IF;
    RETURN format('SELECT t.tableoid, t.ctid FROM %s t WHERE t.%I < %L%s AND %s EXISTS ('
                  'SELECT 1 FROM privacy.holds h WHERE h.subject = t.%I::pg_catalog.text '
                  'AND h.released_at IS NULL AND (h.until IS NULL OR h.until > pg_catalog.now()))',
                  r.tbl, r.time_column, cutoff, not_done, CASE WHEN held THEN '' ELSE 'NOT' END,
                  subject_column);
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.due_rows(r privacy.retention_rules, subject_column name,
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
    RETURN format('SELECT %s FROM %s t WHERE t.%I < %L%s '
                  'AND NOT (t.%I::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]))',
                  privacy_internal.row_identity(r.tbl), r.tbl, r.time_column, cutoff, not_done,
                  subject_column, coalesce(held, '{}'));
END
$$;

CREATE OR REPLACE FUNCTION privacy.purge_preview()
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
        EXECUTE format('SELECT min(t.%I)::timestamptz FROM %s t WHERE %s', r.time_column, r.tbl,
                       privacy_internal.due_where(r.tbl, privacy_internal.due_query(r, subject, false, cutoff)))
           INTO oldest_due;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.purge_batch(run_id bigint, tbl regclass, batch_size integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    r privacy.retention_rules;
    t privacy.purge_run_tables;
    subject name;
    stmt text;
    held text[];
    n bigint := 0;
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    blocked record;
    left_due bigint;
    waits_for text := '';
    st text;
    msg text;
    ctx text;
    con_name text;
    tab_name text;
    sch_name text;
    failure text;
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    SELECT * INTO t FROM privacy.purge_run_tables prt WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    IF t.status IS DISTINCT FROM 'pending' THEN
        RETURN 0;               -- done, failed, or no table of the run
    END IF;
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = purge_batch.tbl;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = r.tbl;
    IF subject IS NULL THEN
        failure := format('55000: table %s has no retention rule or is no longer protected', tbl);
    ELSE
        BEGIN
            -- a foreign key checked at commit is checked here, where its error fails this table only
            SET CONSTRAINTS ALL IMMEDIATE;
            -- the rows are written as the table's owner (its triggers are its
            -- own code); the subjects under hold are passed in, as the owner
            -- may not read the holds
            SELECT pg_catalog.array_agg(DISTINCT h.subject) INTO held FROM privacy.active_holds h;
            IF r.action = 'delete' THEN
                waits_for := privacy_internal.purge_waits_for(r.tbl);
                stmt := format('DELETE FROM %s t WHERE %s', r.tbl,
                               privacy_internal.batch_rows(r.tbl, privacy_internal.due_rows(r, subject, t.cutoff, held)
                                                                  || waits_for, batch_size));
                -- what its deletions can reach, to count what they did there
                SELECT pg_catalog.array_agg(x.rel), pg_catalog.array_agg(x.root) INTO reach_rels, reach_roots
                  FROM privacy_internal.fk_reach(ARRAY[r.tbl]) x;
            ELSE
                stmt := format('UPDATE %s t SET %s WHERE %s', r.tbl, privacy_internal.anonymize_sets(r),
                               privacy_internal.batch_rows(r.tbl, privacy_internal.due_rows(r, subject, t.cutoff, held),
                                                           batch_size));
            END IF;
            -- Usually no application holds a due row: write each row once.  If
            -- one does, wait at most 100 ms, then redo the batch skipping locked
            -- rows (which costs a lock on every row first).
            BEGIN
                -- a shorter lock_timeout of the session wins
                PERFORM pg_catalog.set_config('lock_timeout',
                    CASE WHEN pg_catalog.current_setting('lock_timeout') IN ('0', '')
                           OR '100ms'::interval < pg_catalog.current_setting('lock_timeout')::interval
                         THEN '100ms' ELSE pg_catalog.current_setting('lock_timeout') END, true);
                before := privacy_internal.change_counts(reach_rels);
                n := privacy_internal.run_as_owner(r.tbl, stmt || ')');
            EXCEPTION WHEN lock_not_available THEN
                before := privacy_internal.change_counts(reach_rels);
                n := privacy_internal.run_as_owner(r.tbl, stmt || ' FOR UPDATE OF t SKIP LOCKED)');
            END;
            PERFORM pg_catalog.set_config('lock_timeout', saved_timeout, true);
            -- rows of other tables (or of this one) its deletions removed or
            -- set to NULL through their ON DELETE actions
            FOR ch IN SELECT c.root, c.deleted - CASE WHEN c.root = r.tbl THEN n ELSE 0 END AS deleted, c.updated
                        FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c LOOP
                CONTINUE WHEN ch.deleted = 0 AND ch.updated = 0;
                INSERT INTO privacy.purge_run_tables AS prt (run_id, tbl, action, status, cascaded, set_null)
                VALUES (purge_batch.run_id, ch.root, 'cascade', NULL, ch.deleted, ch.updated)
                ON CONFLICT ON CONSTRAINT purge_run_tables_pkey DO UPDATE
                   SET cascaded = prt.cascaded + EXCLUDED.cascaded, set_null = prt.set_null + EXCLUDED.set_null;
            END LOOP;
            IF n < batch_size AND waits_for <> '' THEN
                -- done: what is still due waits for rows that reference it (or
                -- was locked by another session); a count of the due rows, as
                -- for matched, so only where rows can wait
                EXECUTE format('SELECT count(*) FROM (%s) d', privacy_internal.due_query(r, subject, false, t.cutoff))
                   INTO left_due;
            END IF;
            UPDATE privacy.purge_run_tables prt
               SET purged = prt.purged + n, batches = prt.batches + 1,
                   status = CASE WHEN n < batch_size THEN 'done' ELSE 'pending' END, waiting = left_due
             WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT,
                                    con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
            IF st = '23503' THEN
                -- rows of a table that this purge does not delete still reference the due rows
                SELECT e.* INTO blocked
                  FROM pg_catalog.pg_constraint c,
                       LATERAL privacy_internal.fk_blocked_error(c.oid, 'purge',
                           coalesce((SELECT CASE rr.action WHEN 'delete' THEN 'deleted' ELSE 'kept' END
                                       FROM privacy.retention_rules rr
                                      WHERE rr.tbl = privacy_internal.graph_root(c.conrelid)), 'not processed')) e
                 WHERE c.oid = privacy_internal.fk_constraint(sch_name, tab_name, con_name);
                IF blocked.message IS NOT NULL THEN
                    failure := format('%s: %s. %s', st, blocked.message, blocked.detail);
                END IF;
            END IF;
            failure := coalesce(failure, privacy_internal.purge_error_text(st, msg, ctx));
            n := 0;
        END;
    END IF;
    IF failure IS NOT NULL THEN
        UPDATE privacy.purge_run_tables prt SET status = 'failed', error = failure
         WHERE prt.run_id = purge_batch.run_id AND prt.tbl = purge_batch.tbl;
    END IF;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION privacy_internal.citus_distributed(regclass), privacy_internal.row_identity(regclass),
    privacy_internal.due_where(regclass, text), privacy_internal.batch_rows(regclass, text, integer)
  FROM PUBLIC;

--------------------------------------------------------------------------------
-- #13: personal data that is not text is encrypted too: the typed encrypted
-- types (03_types.sql), classify() converting date, timestamptz, numeric,
-- integer, bigint and jsonb columns (04_classify.sql), and every part that
-- looked for encrypted_text and encrypted_bytea asking is_encrypted_type()
-- instead (04_classify, 06_protect, 08_retention, 09_erasure, 10_requests,
-- 99_privileges).
--------------------------------------------------------------------------------
------------------------------------------------------------------------------
-- The typed encrypted types (#13): date, timestamptz, numeric, integer,
-- bigint and jsonb, one type per base type (privacy.encrypted_<base>), so
-- that a column reads back as its own type and an envelope of one cannot
-- be replayed as another (the envelope's kind).  One C function per role
-- serves them all (types.c); the statements are generated from this list.
-- Equality search (searchable) compares search tags like encrypted_text;
-- <, <=, > and >= raise an error (ordering and ranges are never answered
-- without decrypting), and the btree operator class that unique indexes
-- and equality search need uses operators in privacy_internal, which say
-- nothing about the plaintext's order.  jsonb has no equality search.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.typed_bases(
    OUT name text, OUT base regtype, OUT searchable boolean, OUT also_from regtype[])
    RETURNS SETOF record LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('encrypted_date', 'date'::regtype, true, '{}'::regtype[]),
           ('encrypted_timestamptz', 'timestamptz', true, '{}'),
           ('encrypted_numeric', 'numeric', true, '{integer,bigint}'),
           ('encrypted_integer', 'integer', true, '{}'),
           ('encrypted_bigint', 'bigint', true, '{integer}'),
           ('encrypted_jsonb', 'jsonb', false, '{}')
$$;
COMMENT ON FUNCTION privacy_internal.typed_bases() IS
    'the typed encrypted types: base type, whether equality search is available, other types cast to it';

CREATE FUNCTION privacy_internal.is_encrypted_type(oid) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_is_encrypted_type' LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_typmod_in_unsearchable' LANGUAGE C STRICT IMMUTABLE;

DO $types$
DECLARE
    b record;
    src regtype;
    t text;
    op text;
    ops text[] := ARRAY['<', '<=', '>', '>='];
    commutes text[] := ARRAY['>', '>=', '<', '<='];
    negates text[] := ARRAY['>=', '>', '<=', '<'];
    fns text[] := ARRAY['lt', 'le', 'gt', 'ge'];
    i integer;
BEGIN
    FOR b IN SELECT * FROM privacy_internal.typed_bases() LOOP
        t := 'privacy.' || b.name;
        EXECUTE format('CREATE TYPE %s', t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_in(cstring, oid, integer) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_in' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_out(%2$s) RETURNS cstring
            AS 'MODULE_PATHNAME', 'encrypted_typed_out' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_recv(internal, oid, integer) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_recv' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_send(%2$s) RETURNS bytea
            AS 'MODULE_PATHNAME', 'encrypted_typed_send' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE TYPE %2$s (
            INPUT = privacy_internal.%1$s_in, OUTPUT = privacy_internal.%1$s_out,
            RECEIVE = privacy_internal.%1$s_recv, SEND = privacy_internal.%1$s_send,
            TYPMOD_IN = privacy_internal.%3$s, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
            ANALYZE = privacy_internal.encrypted_typanalyze,
            INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U')$f$,
            b.name, t, CASE WHEN b.searchable THEN 'encrypted_typmod_in' ELSE 'encrypted_jsonb_typmod_in' END);
        EXECUTE format($f$COMMENT ON TYPE %s IS %L$f$, t,
            format('%s stored encrypted (XChaCha20-Poly1305); type modifier: (category%s)',
                   b.base, CASE WHEN b.searchable THEN '[, searchable]' ELSE '' END));

        -- assignment reseals under the column's category key; plain values
        -- go in by assignment, plaintext comes out by an explicit cast
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s(%2$s, integer, boolean) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_typmod' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format('CREATE CAST (%1$s AS %1$s) WITH FUNCTION privacy_internal.%2$s(%1$s, integer, boolean) AS IMPLICIT',
                       t, b.name);
        -- stable, not volatile: a parameter cast to the type ($1::privacy.encrypted_date)
        -- is then an index condition (only its search tag is compared)
        FOREACH src IN ARRAY ARRAY[b.base] || b.also_from LOOP
            EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s(%3$s, integer, boolean) RETURNS %2$s
                AS 'MODULE_PATHNAME', 'encrypted_typed_from_base' LANGUAGE C STRICT STABLE$f$, b.name, t, src);
            EXECUTE format('CREATE CAST (%3$s AS %2$s) WITH FUNCTION privacy_internal.%1$s(%3$s, integer, boolean) AS ASSIGNMENT',
                           b.name, t, src);
        END LOOP;
        EXECUTE format($f$CREATE FUNCTION privacy.plaintext(%1$s) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_to_base' LANGUAGE C STRICT STABLE$f$, t, b.base);
        EXECUTE format('CREATE CAST (%1$s AS %2$s) WITH FUNCTION privacy.plaintext(%1$s)', t, b.base);

        -- no ordering, no ranges, against the type itself or a plain value
        FOREACH src IN ARRAY ARRAY[t::regtype, b.base] || b.also_from LOOP
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_no_order(%1$s, %2$s) RETURNS boolean
                AS 'MODULE_PATHNAME', 'encrypted_no_order' LANGUAGE C STRICT IMMUTABLE$f$, t, src);
            FOREACH op IN ARRAY ops LOOP
                EXECUTE format('CREATE OPERATOR pg_catalog.%3$s (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_no_order)', t, src, op);
            END LOOP;
        END LOOP;

        IF b.searchable THEN
            FOREACH op IN ARRAY ARRAY['eq', 'ne', 'lt', 'le', 'gt', 'ge'] LOOP
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_%2$s(%1$s, %1$s) RETURNS boolean
                    AS 'MODULE_PATHNAME', 'encrypted_%2$s' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t, op);
            END LOOP;
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_cmp(%1$s, %1$s) RETURNS integer
                AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_hash(%1$s) RETURNS integer
                AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_hash_extended(%1$s, bigint) RETURNS bigint
                AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %1$s, RIGHTARG = %1$s, '
                           'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                           'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES)', t);
            EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %1$s, RIGHTARG = %1$s, '
                           'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                           'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t);
            FOR i IN 1 .. 4 LOOP
                EXECUTE format('CREATE OPERATOR privacy_internal.%2$s (LEFTARG = %1$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_%3$s, '
                               'COMMUTATOR = OPERATOR(privacy_internal.%4$s), NEGATOR = OPERATOR(privacy_internal.%5$s))',
                               t, ops[i], fns[i], commutes[i], negates[i]);
            END LOOP;
            -- col = 42, col = $1 (a typed parameter): the plain value is
            -- cast to the encrypted type (its search tag), in an SQL function
            -- that the planner inlines, so that an index serves it
            FOREACH src IN ARRAY ARRAY[b.base] || b.also_from LOOP
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_eq(%1$s, %2$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $1 OPERATOR(pg_catalog.=) $2::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_eq(%2$s, %1$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $2 OPERATOR(pg_catalog.=) $1::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_ne(%1$s, %2$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $1 OPERATOR(pg_catalog.<>) $2::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_ne(%2$s, %1$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $2 OPERATOR(pg_catalog.<>) $1::%1$s'$f$, t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                               'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %2$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                               'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                               'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %2$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                               'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t, src);
            END LOOP;
            EXECUTE format('CREATE OPERATOR CLASS privacy.%1$s_ops DEFAULT FOR TYPE %2$s USING btree AS '
                           'OPERATOR 1 privacy_internal.<, OPERATOR 2 privacy_internal.<=, OPERATOR 3 pg_catalog.=, '
                           'OPERATOR 4 privacy_internal.>=, OPERATOR 5 privacy_internal.>, '
                           'FUNCTION 1 privacy_internal.encrypted_cmp(%2$s, %2$s)', b.name, t);
            EXECUTE format('CREATE OPERATOR CLASS privacy.%1$s_hash_ops DEFAULT FOR TYPE %2$s USING hash AS '
                           'OPERATOR 1 pg_catalog.=, FUNCTION 1 privacy_internal.encrypted_hash(%2$s), '
                           'FUNCTION 2 privacy_internal.encrypted_hash_extended(%2$s, bigint)', b.name, t);
        END IF;

        -- inspection and maintenance, as for encrypted_text
        EXECUTE format($f$CREATE FUNCTION privacy.envelope_info(%1$s) RETURNS privacy.envelope_info
            AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy.is_erased(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.reseal(%1$s) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_reseal' LANGUAGE C STRICT VOLATILE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy.seal_for_subject(%1$s, subject text) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_seal_for_subject' LANGUAGE C STRICT VOLATILE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.needs_reseal(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.shred_tag(%1$s) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE$f$, t);
    END LOOP;
END
$types$;

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
    typed record;
    reason text;
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
    is_encrypted := privacy_internal.is_encrypted_type(att.atttypid);
    IF NOT is_encrypted AND encrypt THEN
        IF att.atttypid IN ('text'::regtype, 'character varying'::regtype) THEN
            target := 'privacy.encrypted_text';
        ELSIF att.atttypid = 'bytea'::regtype THEN
            target := 'privacy.encrypted_bytea';
        ELSE
            -- date, timestamptz, numeric, integer, bigint, jsonb (03_types.sql)
            SELECT 'privacy.' || b.name AS target, b.searchable INTO typed
              FROM privacy_internal.typed_bases() b WHERE b.base = att.atttypid;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'datatype_mismatch',
                    MESSAGE = format('column "%s" of type %s cannot be encrypted', col, att.atttypid::regtype),
                    HINT    = 'Columns of text, varchar, bytea, date, timestamptz, numeric, integer, bigint and jsonb convert to privacy.encrypted_<type>; convert the column to one of those first.';
            END IF;
            target := typed.target;
            IF searchable AND NOT typed.searchable THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'feature_not_supported',
                    MESSAGE = format('column "%s" of type %s cannot be made searchable', col, att.atttypid::regtype),
                    DETAIL  = format('%s has no equality search: documents equal as jsonb may differ in their bytes.', target),
                    HINT    = 'Classify it with searchable => false, and put a field to search into a column of its own.';
            END IF;
            -- precision and scale are not kept (the type modifier is the
            -- category): the values there keep their rounding, new ones
            -- are stored as given
            IF att.atttypmod <> -1 THEN
                RAISE NOTICE USING
                    MESSAGE = format('column "%s" becomes %s: its type modifier %s is no longer applied to new values',
                                     col, target, format_type(att.atttypid, att.atttypmod)),
                    HINT    = 'Round or truncate values before they are stored (the application, or a cast in the INSERT).';
            END IF;
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
        -- an index on an encrypted column orders search tags, which only
        -- searchable columns keep
        IF NOT searchable THEN
            SELECT i.indexrelid::regclass AS idx INTO typed
              FROM pg_catalog.pg_index i
             WHERE i.indrelid = tbl AND att.attnum = ANY (i.indkey::pg_catalog.int2[])
             ORDER BY i.indexrelid LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = format('column "%s" of %s is in index %s, so it cannot be encrypted without equality search',
                                     col, tbl, typed.idx),
                    DETAIL  = 'An index on an encrypted column compares search tags, which only searchable columns keep.',
                    HINT    = 'Classify it with searchable => true (equal values become linkable), or drop the index first.';
            END IF;
        END IF;
        -- a check constraint on a date or a number compares its plain
        -- value (birth_date > '1900-01-01'), which it no longer has; on an
        -- empty table the conversion would succeed and every insert fail
        IF NOT privacy_internal.is_encrypted_type(att.atttypid)
           AND target NOT IN ('privacy.encrypted_text', 'privacy.encrypted_bytea') THEN
            SELECT c.conname INTO typed
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = tbl AND c.contype = 'c' AND att.attnum = ANY (c.conkey)
             ORDER BY c.conname LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'dependent_objects_still_exist',
                    MESSAGE = format('column "%s" of %s cannot be encrypted: check constraint "%s" uses its plain values',
                                     col, tbl, typed.conname),
                    DETAIL  = format('%s answers equality search only; a check constraint on it could not be evaluated.', target),
                    HINT    = 'Drop the check constraint (validate the value in the application, or before it is stored), then classify the column.';
            END IF;
        END IF;
        PERFORM privacy_internal.ensure_internal_keys();
        PERFORM privacy_internal.category_key(category);
        -- rewrites the column: every value is (re)sealed under the category
        -- key; as the table's owner (the rewrite evaluates its constraints
        -- and index expressions, which are the owner's code); plain values
        -- are sealed as the plaintext they are, whatever they look like
        BEGIN
            PERFORM privacy_internal.run_as_owner(tbl,
                format('ALTER TABLE %s ALTER COLUMN %I TYPE %s(%s%s)%s', tbl, col, target,
                       category, CASE WHEN searchable THEN ', searchable' ELSE '' END,
                       CASE WHEN privacy_internal.is_encrypted_type(att.atttypid) THEN ''
                            WHEN target = 'privacy.encrypted_bytea' THEN format(' USING privacy_internal.seal_bytea(%I)', col)
                            WHEN target = 'privacy.encrypted_text'
                                THEN format(' USING privacy_internal.seal_text(%I::pg_catalog.text)', col)
                            -- the typed ones: the assignment cast from the base type
                            ELSE '' END));
        EXCEPTION WHEN undefined_function OR feature_not_supported THEN
            -- a check constraint, index expression or predicate computes
            -- with the plain values (score > 0, lower(email))
            GET STACKED DIAGNOSTICS reason = MESSAGE_TEXT;
            RAISE EXCEPTION USING
                ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('column "%s" of %s cannot be encrypted: an expression on it needs its plain values', col, tbl),
                DETAIL  = format('Converting it to %s failed: %s.', target, reason),
                HINT    = 'Drop or rewrite the check constraints and index expressions that compute with the column (encrypted values answer equality search only), then classify it.';
        END;
    END IF;
    INSERT INTO privacy.column_categories AS cc (tbl, col, category, searchable, encrypted)
    VALUES (tbl, col, category, searchable, is_encrypted)
    ON CONFLICT ON CONSTRAINT column_categories_pkey DO UPDATE
       SET category = EXCLUDED.category, searchable = EXCLUDED.searchable,
           encrypted = EXCLUDED.encrypted, classified_at = now(), classified_by = session_user;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.register_column(tbl regclass, col name)
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
       AND privacy_internal.is_encrypted_type(a.atttypid);
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
            DETAIL  = 'Encrypted values are sealed for a column of an encrypted type (privacy.encrypted_text, privacy.encrypted_date...) itself; inside an array, domain, composite or range they would keep a key only the writing session holds.',
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
           AND privacy_internal.is_encrypted_type(a.atttypid)
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

CREATE OR REPLACE PROCEDURE privacy.reencrypt(tbl regclass, col name, batch_pages integer DEFAULT 64)
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
                      AND privacy_internal.is_encrypted_type(a.atttypid)) THEN
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

CREATE OR REPLACE FUNCTION privacy.unclassify(tbl regclass, col name) RETURNS void
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
    IF privacy_internal.is_encrypted_type(att.atttypid)
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
           AND privacy_internal.is_encrypted_type(a.atttypid);
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

CREATE OR REPLACE FUNCTION privacy.set_retention(tbl regclass, time_column name, keep interval, action text,
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
                IF privacy_internal.is_encrypted_type(att.atttypid)
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

CREATE OR REPLACE FUNCTION privacy_internal.erasure_action(tbl regclass, subject_column name,
                                               OUT action text, OUT sets text, OUT columns jsonb, OUT reason text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.retention_rules;
BEGIN
    action := 'deleted';
    SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = erasure_action.tbl;
    IF r.action IS DISTINCT FROM 'anonymize' THEN
        RETURN;
    END IF;
    WITH cols AS (
        SELECT a.attname AS col, a.attnum, a.attnotnull,
               privacy_internal.is_encrypted_type(a.atttypid) AS shreddable,
               cc.col IS NOT NULL AS classified
          FROM pg_catalog.pg_attribute a
          LEFT JOIN privacy.column_categories cc ON cc.tbl = erasure_action.tbl AND cc.col = a.attname
         WHERE a.attrelid = erasure_action.tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND (cc.col IS NOT NULL OR r.anonymize ? a.attname
                OR privacy_internal.is_encrypted_type(a.atttypid))),
    fate AS (
        SELECT c.*, CASE WHEN r.anonymize ? c.col
                         THEN CASE WHEN jsonb_typeof(r.anonymize -> c.col) = 'null' THEN 'null' ELSE 'masked' END
                         WHEN c.shreddable THEN 'shredded'
                         ELSE 'null' END AS what
          FROM cols c)
    SELECT string_agg(CASE WHEN f.what = 'masked' THEN format('%I = %L', f.col, r.anonymize ->> f.col)
                           WHEN f.what = 'null' THEN format('%I = NULL', f.col)
                           ELSE format('%1$I = privacy_internal.shred_tag(%1$I)', f.col) END, ', ' ORDER BY f.attnum),
           jsonb_object_agg(f.col, f.what),
           (SELECT CASE WHEN g.col = subject_column
                        THEN format('the subject column %s is classified', g.col)
                        ELSE format('column %s is classified and NOT NULL, and the retention rule gives it no masking value', g.col) END
              FROM fate g
             WHERE g.classified AND (g.col = subject_column OR (g.what = 'null' AND g.attnotnull AND NOT r.anonymize ? g.col))
             ORDER BY g.col <> subject_column, g.attnum LIMIT 1)
      INTO sets, columns, reason
      FROM fate f;
    IF reason IS NULL THEN
        action := 'anonymized';
    ELSE
        sets := NULL;
        columns := NULL;
    END IF;
END
$$;

CREATE OR REPLACE VIEW privacy_internal.personal_columns AS
SELECT cc.tbl, cc.col, cc.category, cc.encrypted, cc.searchable, true AS registered
  FROM privacy.column_categories cc
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cc.tbl)
UNION ALL
SELECT a.attrelid::pg_catalog.regclass, a.attname,
       coalesce(privacy_internal.typmod_category(a.atttypmod), 'unclassified'),
       true, a.atttypmod >= 0 AND (a.atttypmod >> 16) & 1 = 1, false
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
 WHERE privacy_internal.is_encrypted_type(a.atttypid)
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
   AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND NOT EXISTS (SELECT 1 FROM privacy.column_categories cc
                    WHERE cc.tbl = a.attrelid AND cc.col = a.attname);

COMMENT ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean) IS
    'declare the category of a column; encrypted columns are resealed under the category key (searchable enables equality search); encrypt converts a text, varchar, bytea, date, timestamptz, numeric, integer, bigint or jsonb column';

-- The typed encrypted types (03_types.sql) are for everyone too, but for
-- seal_for_subject, which is the administrator's like the others.  (Revoked
-- first, so that an upgraded database has the same privileges as a new one.)
DO $grants$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS fn, p.proname = 'seal_for_subject' AS admin_only
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_type t
            ON t.oid = ANY (p.prorettype || p.proargtypes::pg_catalog.oid[])
           AND t.typnamespace = 'privacy'::regnamespace
         WHERE t.typname IN (SELECT b.name FROM privacy_internal.typed_bases() b)
         GROUP BY p.oid ORDER BY 1
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f.fn,
                       CASE WHEN f.admin_only THEN 'privacy_admin' ELSE 'PUBLIC' END);
    END LOOP;
END
$grants$;
REVOKE ALL ON FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]),
    privacy_internal.is_encrypted_type(oid), privacy_internal.typed_bases()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]),
    privacy_internal.is_encrypted_type(oid), privacy_internal.typed_bases()
  TO PUBLIC;

-- #12 (review): index scans of an encrypted column ask the gate; index
-- expressions and predicates, generated columns and extended statistics
-- over encrypted columns are refused (04_classify.sql, src/derived.c)
-- What PostgreSQL derives from an encrypted column on its own -- an index
-- expression or predicate, a stored generated column, extended statistics
-- -- is computed in the session of whoever writes or analyzes the table,
-- with that session's purpose, and kept outside the column: refused when
-- it is defined (src/derived.c).
CREATE FUNCTION privacy_internal.refuse_derived(regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'privacy_refuse_derived' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION privacy_internal.refuse_derived_values() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT CASE WHEN d.classid = 'pg_catalog.pg_statistic_ext'::regclass THEN s.stxrelid
                             WHEN c.relkind IN ('i', 'I') THEN i.indrelid
                             ELSE c.oid END::regclass AS tbl
          FROM pg_catalog.pg_event_trigger_ddl_commands() d
          LEFT JOIN pg_catalog.pg_class c
                 ON d.classid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objid
          LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
          LEFT JOIN pg_catalog.pg_statistic_ext s
                 ON d.classid = 'pg_catalog.pg_statistic_ext'::regclass AND s.oid = d.objid
         WHERE (c.relkind IN ('r', 'p', 'm', 'f', 'i', 'I') OR s.oid IS NOT NULL)
    LOOP
        CONTINUE WHEN r.tbl IS NULL;
        PERFORM privacy_internal.refuse_derived(r.tbl);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER privacy_refuse_derived_values ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE INDEX', 'CREATE STATISTICS')
    EXECUTE FUNCTION privacy_internal.refuse_derived_values();
GRANT EXECUTE ON FUNCTION privacy_internal.refuse_derived(regclass),
    privacy_internal.refuse_derived_values() TO PUBLIC;

------------------------------------------------------------------------------
-- Issue #19 (gdpr): row estimates of every set-returning function, so that
-- no call of ours looks worth compiling with JIT.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.access_log_rows(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'privacy_access_log_rows' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION privacy_internal.access_log_rows(internal) IS
    'planner support of the functions that unpack access log batches: one row when their filter argument is given';
REVOKE ALL ON FUNCTION privacy_internal.access_log_rows(internal) FROM PUBLIC;
ALTER FUNCTION privacy_internal.access_log_statements(bytea, bigint) ROWS 100 SUPPORT privacy_internal.access_log_rows;
ALTER FUNCTION privacy_internal.access_log_subject_entries(bytea, bytea) ROWS 100 SUPPORT privacy_internal.access_log_rows;
ALTER FUNCTION privacy_internal.access_log_for_subject(bytea) ROWS 10;
ALTER FUNCTION privacy_internal.access_log_event(bigint) ROWS 1;
ALTER FUNCTION privacy_internal.descendants(regclass) ROWS 10;
ALTER FUNCTION privacy.purge_preview() ROWS 10;
ALTER FUNCTION privacy_internal.fk_order(regclass[]) ROWS 10;
ALTER FUNCTION privacy_internal.fk_reach(regclass[]) ROWS 20;
ALTER FUNCTION privacy_internal.change_counts_since(jsonb, oid[], regclass[]) ROWS 10;
ALTER FUNCTION privacy_internal.purge_tables(bigint) ROWS 10;
ALTER FUNCTION privacy.compliance_gaps() ROWS 10;

------------------------------------------------------------------------------
-- Issue #19 (gdpr): a subject's access trail read in time proportional to
-- its own entries: each batch row knows where its entries start (offsets),
-- both columns stored uncompressed so that one entry is a slice, and
-- privacy.access_log_trail lists each subject's entries (instead of the
-- GIN index on subjects).  Rows written before keep their compression and
-- are read whole, as before, when sliced.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.access_log_entry(entries bytea, offsets bytea, i bigint) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_access_log_entry' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_entry(bytea, bytea, bigint) IS
    'entry i (seq - first_seq) of one access_log_batches row, packed alone, read as slices of entries and offsets';

CREATE FUNCTION privacy_internal.access_log_offsets(entries bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_access_log_offsets' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_offsets(bytea) IS
    'where each entry of one access_log_batches.entries starts: for rows written before the writer stored it';

REVOKE ALL ON FUNCTION privacy_internal.access_log_entry(bytea, bytea, bigint),
    privacy_internal.access_log_offsets(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_entry(bytea, bytea, bigint) TO privacy_officer;

ALTER TABLE privacy.access_log_batches ADD COLUMN offsets bytea;
UPDATE privacy.access_log_batches SET offsets = privacy_internal.access_log_offsets(entries);
ALTER TABLE privacy.access_log_batches ALTER COLUMN offsets SET NOT NULL,
    ALTER COLUMN entries SET COMPRESSION default,
    ALTER COLUMN entries SET STORAGE EXTERNAL, ALTER COLUMN offsets SET STORAGE EXTERNAL;
DROP INDEX privacy.access_log_batches_subjects;
COMMENT ON TABLE privacy.access_log_batches IS
    'the access log as the writer stores it: entries first_seq to last_seq packed in entries (seq, canonical bytes, MAC each) and where each starts (offsets), the subjects they mention as 8-byte keys, the newest statement time (for retention)';

-- Each subject's entries, written by the writer with them: a subject's
-- access trail is an index range, then one slice of a batch row per entry
-- (privacy_internal.access_log_for_subject).  Derived from the log, not
-- chained: the report reads the entries themselves from the batches.
CREATE TABLE privacy.access_log_trail (
    subject_key bigint NOT NULL,  -- privacy_internal.access_log_subject_key(subject_hash)
    seq         bigint NOT NULL   -- the subject entry's seq
);
CREATE INDEX access_log_trail_subject ON privacy.access_log_trail (subject_key, seq);
COMMENT ON TABLE privacy.access_log_trail IS
    'which access log entries are about which subject (by the first 8 bytes of its hash): kept by the log writer, trimmed with the log';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_trail', '');

INSERT INTO privacy.access_log_trail (subject_key, seq)
SELECT privacy_internal.access_log_subject_key(s.subject_hash), s.seq FROM privacy.access_log_subjects s;
REVOKE ALL ON privacy.access_log_trail FROM PUBLIC;
GRANT SELECT ON privacy.access_log_trail TO privacy_officer, privacy_admin;

CREATE OR REPLACE FUNCTION privacy_internal.access_log_for_subject(subject_hash bytea)
    RETURNS SETOF privacy.access_log_subjects
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 10
    AS $$
SELECT e.* FROM privacy.access_log_trail t
       CROSS JOIN LATERAL (SELECT b.first_seq, b.entries, b.offsets FROM privacy.access_log_batches b
                            WHERE b.first_seq <= t.seq ORDER BY b.first_seq DESC LIMIT 1) b
       CROSS JOIN LATERAL privacy_internal.access_log_subject_entries(
                  privacy_internal.access_log_entry(b.entries, b.offsets, t.seq - b.first_seq), $1) e
 WHERE t.subject_key = privacy_internal.access_log_subject_key($1)
$$;
COMMENT ON FUNCTION privacy_internal.access_log_for_subject(bytea) IS
    'the rows of privacy.access_log_subjects of one subject hash, found through privacy.access_log_trail';

CREATE OR REPLACE FUNCTION privacy_internal.access_log_event(seq bigint)
    RETURNS SETOF privacy.access_log
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
    AS $$
SELECT e.* FROM (SELECT b.first_seq, b.entries, b.offsets FROM privacy.access_log_batches b
                  WHERE b.first_seq <= $1 ORDER BY b.first_seq DESC LIMIT 1) b,
       LATERAL privacy_internal.access_log_statements(
                  privacy_internal.access_log_entry(b.entries, b.offsets, $1 - b.first_seq), $1) e
$$;
COMMENT ON FUNCTION privacy_internal.access_log_event(bigint) IS
    'the row of privacy.access_log with this seq, found through the batches'' primary key';


------------------------------------------------------------------------------
-- Issue #19 (gdpr): lifting an objection, a ledger action like the others.
------------------------------------------------------------------------------
ALTER TABLE privacy.consent_events DROP CONSTRAINT consent_events_action_check,
    ADD CONSTRAINT consent_events_action_check CHECK (action IN ('grant', 'withdraw', 'object', 'lift_objection'));
COMMENT ON TABLE privacy.consent_events IS
    'consent ledger: every grant, withdrawal, objection and lifted objection with its source and evidence; append-only';
CREATE OR REPLACE FUNCTION privacy_internal.record_consent(subject text, purpose text, action text,
                                        source text, evidence jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    basis text;
    new_state text := CASE action WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END;
    event_id bigint;
    current_state text;
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
    -- Lifting an objection: only one in force, and what is left is no
    -- objection and no consent (a purpose based on consent needs a new
    -- grant): withdrawn for those, no state at all for the others.
    IF action = 'lift_objection' THEN
        SELECT cs.state INTO current_state FROM privacy.consent_state cs
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject
           FOR UPDATE;
        IF current_state IS DISTINCT FROM 'objected' THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('subject has no objection to purpose "%s" to lift', purpose),
                DETAIL  = CASE WHEN current_state IS NULL
                               THEN 'Nothing was recorded for the subject and the purpose.'
                               ELSE format('The subject''s state for the purpose is %s.', current_state) END,
                HINT    = 'See the subject''s consent history in privacy.consent_events.';
        END IF;
        INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
        VALUES (subject, purpose, action, source, evidence)
        RETURNING id INTO event_id;
        IF basis = 'consent' THEN
            UPDATE privacy.consent_state cs SET state = 'withdrawn', since = clock_timestamp(), last_event = event_id
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        ELSE
            DELETE FROM privacy.consent_state cs
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        END IF;
        RETURN event_id;
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

CREATE FUNCTION privacy.lift_objection(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(subject, purpose, 'lift_objection', source, evidence) $$;
COMMENT ON FUNCTION privacy.lift_objection(text, text, text, jsonb) IS
    'record that a subject lifts their objection to a purpose: their rows are shown for it again (for a purpose based on consent, once consent is granted)';
REVOKE ALL ON FUNCTION privacy.lift_objection(text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.lift_objection(text, text, text, jsonb) TO privacy_officer;

CREATE OR REPLACE FUNCTION privacy.subject_report_html(subject text) RETURNS text
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
    -- the states the page speaks of
    held boolean := jsonb_array_length(r -> 'data') > 0;
    erased_at jsonb := (SELECT e -> 'erased_at' FROM jsonb_array_elements(r -> 'erasures') e
                         ORDER BY (e ->> 'erased_at')::timestamptz DESC LIMIT 1);
    hold_active boolean := EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'holds') hd WHERE (hd ->> 'active')::boolean);
    records bigint;
    places text;
    uses text;
    unused text;
    first_due jsonb;
    last_due jsonb;
    undated bigint;
    reads bigint;
    report_reads bigint;
    last_read jsonb;
    read_for text;
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
      || '#summary p{margin:6px 0}'
      || 'footer{margin-top:40px;color:#7a8794;font-size:13px}'
      || '</style></head><body><main>' || E'\n'
      || '<h1>Your personal data</h1>'
      || '<p class="lead">This page lists the personal data we hold about <strong>'
      || privacy_internal.html(r ->> 'subject') || '</strong>, why we use it, who has accessed it, and when it will be deleted'
      || ' (your right of access, GDPR Art. 15). Generated ' || privacy_internal.html_time(r -> 'generated_at') || '.</p>'
      || '<nav><a href="#summary">In short</a><a href="#data">Data</a><a href="#purposes">Purposes</a><a href="#consents">Consents</a>'
      || '<a href="#access">Access</a><a href="#retention">Retention</a><a href="#holds">Holds</a>'
      || '<a href="#erasures">Erasures</a><a href="#requests">Requests</a></nav>' || E'\n';

    -- in short: what is held, why, for how long, who read it and why
    h := h || '<section id="summary"><h2>In short</h2>';
    SELECT sum(jsonb_array_length(d -> 'rows')),
           string_agg(privacy_internal.html(d ->> 'table') || ' (' || jsonb_array_length(d -> 'rows') || ')', ', ' ORDER BY o)
      INTO records, places
      FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o);
    IF erased_at IS NOT NULL THEN
        -- what an erasure leaves: rows whose personal columns were cleared
        h := h || '<p>We erased your data on ' || privacy_internal.html_time(erased_at) || '.'
              || CASE WHEN held THEN ' What is left: ' || privacy_internal.html_count(records, 'record', 'records')
                                     || ' with your personal data removed, which we keep for our records: ' || places || '.'
                      ELSE '' END
              || ' We no longer use your data for anything.</p>'
              || '<p>We keep only what shows that your rights were respected: the record of the erasure'
              || CASE WHEN jsonb_array_length(r -> 'consents') > 0 THEN ', the history of your consents' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'requests') > 0 THEN ', your requests' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'access') > 0 THEN ' and the record of who read your data before' ELSE '' END
              || '.</p>';
    ELSIF held THEN
        h := h || '<p>We hold ' || privacy_internal.html_count(records, 'record', 'records') || ' about you, in '
              || privacy_internal.html_count(jsonb_array_length(r -> 'data'), 'part', 'parts') || ' of our systems: '
              || places || '.</p>';
        SELECT string_agg(privacy_internal.html(p ->> 'purpose') || ' (' || privacy_internal.html_why(p ->> 'legal_basis') || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE (p ->> 'in_effect')::boolean),
               string_agg(privacy_internal.html(p ->> 'purpose') || ' ('
                          || CASE p ->> 'state' WHEN 'objected' THEN 'you objected'
                                                WHEN 'withdrawn' THEN 'you withdrew your consent'
                                                ELSE 'you have not given your consent' END || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE NOT (p ->> 'in_effect')::boolean)
          INTO uses, unused
          FROM jsonb_array_elements(r -> 'purposes') p
         WHERE p ->> 'purpose' <> 'subject_access';
        h := h || '<p>' || CASE WHEN uses IS NULL THEN 'At the moment we may not use '
                                                      || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for anything.'
                                ELSE 'We may use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || uses || '.' END
              || CASE WHEN unused IS NULL THEN ''
                      ELSE ' We do not use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || unused || '.' END
              || '</p>';
        SELECT to_jsonb(min(w.due)), to_jsonb(max(w.due)), count(*) FILTER (WHERE w.due IS NULL)
          INTO first_due, last_due, undated
          FROM jsonb_array_elements(r -> 'data') d,
               LATERAL (SELECT (x2 ->> 'due_at')::timestamptz AS due FROM jsonb_array_elements(d -> 'rows') x2) w;
        h := h || '<p>'
              || CASE WHEN first_due IS NULL THEN ''
                      WHEN first_due = last_due AND (first_due #>> '{}')::timestamptz > now()
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ends on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; then it is' ELSE '; then they are' END
                           || ' deleted or anonymized. '
                      WHEN first_due = last_due
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ended on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; it is' ELSE '; they are' END
                           || ' deleted or anonymized at our next purge. '
                      ELSE 'The first of them '
                           || CASE WHEN (first_due #>> '{}')::timestamptz > now() THEN 'reaches' ELSE 'reached' END
                           || ' the end of its retention period on ' || privacy_internal.html_time(first_due)
                           || ', the last on ' || privacy_internal.html_time(last_due)
                           || '; each is then deleted or anonymized. ' END
              || CASE WHEN undated = 0 THEN ''
                      WHEN undated = records THEN CASE WHEN records = 1 THEN 'We keep it until you ask us to erase it. '
                                                       ELSE 'We keep them until you ask us to erase them. ' END
                      ELSE privacy_internal.html_count(undated, 'record has', 'records have')
                           || ' no retention period: we keep them until you ask us to erase them. ' END
              || CASE WHEN hold_active THEN 'A legal hold applies to your data: we must keep it while the hold lasts, even past these dates.'
                      ELSE '' END
              || '</p>';
    ELSE
        h := h || '<p>We hold no records about you.</p>';
    END IF;
    SELECT count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access'),
           count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' = 'subject_access'),
           to_jsonb(max((a ->> 'at')::timestamptz) FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access')),
           string_agg(DISTINCT privacy_internal.html(a ->> 'purpose'), ', ') FILTER (WHERE a ->> 'purpose' <> 'subject_access')
      INTO reads, report_reads, last_read, read_for
      FROM jsonb_array_elements(r -> 'access') a;
    h := h || '<p>'
          || CASE WHEN reads = 0 THEN 'Our access log records no one reading your encrypted data.'
                  ELSE 'Our staff and systems read your encrypted data '
                       || CASE WHEN reads = 1 THEN 'once' ELSE reads || ' times' END
                       || ', most recently on ' || privacy_internal.html_time(last_read)
                       || coalesce(', for ' || read_for, '') || '.' END
          || CASE WHEN report_reads = 0 THEN ''
                  ELSE ' We also read it ' || CASE WHEN report_reads = 1 THEN 'once' ELSE report_reads || ' times' END
                       || ' to prepare reports like this one for you.' END
          || '</p>';
    FOR x IN SELECT q FROM jsonb_array_elements(r -> 'requests') q WHERE (q ->> 'open')::boolean ORDER BY (q ->> 'request')::bigint LOOP
        h := h || '<p>Your ' || privacy_internal.html(x ->> 'kind') || ' request of ' || privacy_internal.html_time(x -> 'received_at')
              || ' is open; we answer it by ' || privacy_internal.html_time(x -> 'deadline') || '.</p>';
    END LOOP;
    h := h || '</section>' || E'\n';

    -- the data
    h := h || '<section id="data"><h2>The data we hold about you</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">We hold no records about you'
              || CASE WHEN erased_at IS NOT NULL THEN ': your data was erased on ' || privacy_internal.html_time(erased_at) ELSE '' END
              || '.</p>';
    ELSIF erased_at IS NOT NULL THEN
        h := h || '<p>Your data was erased on ' || privacy_internal.html_time(erased_at)
              || ': the records below are what is left, with your personal data removed.</p>';
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(r -> 'data') LOOP
        n := jsonb_array_length(t -> 'rows');
        SELECT array_agg(c ->> 'name' ORDER BY o) INTO cols
          FROM jsonb_array_elements(t -> 'columns') WITH ORDINALITY AS e(c, o);
        h := h || '<h3>' || privacy_internal.html(t ->> 'table') || '</h3><p>'
              || privacy_internal.html_count(n, 'record', 'records') || '.';
        IF jsonb_typeof(t -> 'retention') = 'object' THEN
            h := h || ' Kept for ' || privacy_internal.html(((t #>> '{retention,keep}')::interval)::text)
                  || ' after <em>' || privacy_internal.html(t #>> '{retention,time_column}') || '</em>, then '
                  || CASE WHEN t #>> '{retention,action}' = 'delete' THEN 'deleted'
                          ELSE 'anonymized (' || privacy_internal.html((SELECT string_agg(a, ', ' ORDER BY a)
                                                                  FROM jsonb_array_elements_text(t #> '{retention,anonymize}') a))
                               || ' cleared)' END || '.';
        ELSE
            h := h || ' No retention period is set for these records: we keep them until you ask us to erase them.';
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
          || CASE WHEN erased_at IS NOT NULL THEN '<p>Your data was erased, so none of these purposes uses it now. The table shows what each purpose is for.</p>'
                  WHEN held THEN ''
                  ELSE '<p>We hold no data about you, so none of these purposes uses any. The table shows what each purpose is for and the choices you have made.</p>' END
          || '<table><thead><tr><th>Purpose</th><th>Legal basis</th><th>Kinds of data</th><th>Your choice</th><th>Uses your data now</th></tr></thead><tbody>';
    FOR x IN SELECT p FROM jsonb_array_elements(r -> 'purposes') WITH ORDINALITY AS e(p, o)
              ORDER BY p ->> 'purpose' = 'subject_access', o LOOP
        IF x ->> 'purpose' = 'subject_access' THEN
            -- the built-in purpose, in the customer's words
            h := h || '<tr><td><strong>' || privacy_internal.html_purpose(x ->> 'purpose') || '</strong>'
                  || '<br>We read your data only to prepare a report like this one when you ask for it (GDPR Art. 15 and 20).'
                  || '</td><td>' || privacy_internal.html_basis(x ->> 'legal_basis') || '</td>'
                  || '<td>all kinds, only for such a report</td>'
                  || '<td>none needed: the law requires us to answer you</td>'
                  || '<td>' || CASE WHEN held AND erased_at IS NULL THEN 'only while we prepare a report for you'
                                    ELSE '<span class="none">&#8212;</span>' END
                  || '</td></tr>';
            CONTINUE;
        END IF;
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
                      ELSE CASE WHEN erased_at IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'consents') c
                                                                       WHERE c ->> 'purpose' = x ->> 'purpose')
                                THEN 'no longer on record: erased with your data'
                                WHEN x ->> 'legal_basis' = 'consent' THEN 'no consent given'
                                ELSE 'no objection' END END
              || '</td><td>' || CASE WHEN NOT held OR erased_at IS NOT NULL THEN '<span class="none">&#8212;</span>'
                                     WHEN (x ->> 'in_effect')::boolean THEN '<span class="yes">yes</span>'
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
        h := h || '<h3>' || privacy_internal.html(x ->> 'purpose') || '</h3><p>'
              || CASE x ->> 'state'
                      WHEN 'granted' THEN 'You have given your consent; it is in effect since ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'withdrawn' THEN 'You withdrew your consent on ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'objected' THEN 'You objected on ' || privacy_internal.html_time(x -> 'since') || ': we do not use your data for this.'
                      ELSE CASE WHEN erased_at IS NOT NULL
                                THEN 'Your choice is no longer on record: it was erased with your data. We keep the history below as proof that your choices were respected.'
                                ELSE 'No choice of yours is on record now.' END END
              || '</p>'
              || privacy_internal.html_table(ARRAY['When', 'What', 'Where it came from', 'Evidence'],
                     (SELECT string_agg(privacy_internal.html_row(
                                 privacy_internal.html_time(e -> 'at'),
                                 privacy_internal.html(CASE e ->> 'action' WHEN 'grant' THEN 'consent given'
                                                   WHEN 'withdraw' THEN 'consent withdrawn'
                                                   WHEN 'object' THEN 'objection'
                                                   WHEN 'lift_objection' THEN 'objection lifted' ELSE e ->> 'action' END),
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
                                  privacy_internal.html_value(a -> 'application'),
                                  CASE WHEN a ->> 'purpose' IS NULL THEN privacy_internal.html_value(a -> 'purpose')
                                       ELSE privacy_internal.html_purpose(a ->> 'purpose') END,
                                  privacy_internal.html_value(a -> 'table'),
                                  coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                                              FROM jsonb_array_elements_text(a -> 'categories') c), ''),
                                  privacy_internal.html(a ->> 'values')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'access') WITH ORDINALITY AS l(a, o)));
        h := h || '<p class="empty">Each entry is one statement that read your encrypted data.</p>';
    END IF;
    h := h || '</section>' || E'\n';

    -- retention
    h := h || '<section id="retention"><h2>When your data will be deleted</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">There is nothing '
              || CASE WHEN erased_at IS NOT NULL THEN 'left to delete: your data was erased on ' || privacy_internal.html_time(erased_at)
                      ELSE 'to delete' END || '.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Records', 'Rule', 'First due', 'Last due'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(d ->> 'table'),
                                  CASE WHEN jsonb_typeof(d -> 'retention') = 'object'
                                       THEN CASE WHEN d #>> '{retention,action}' = 'delete' THEN 'deleted ' ELSE 'anonymized ' END
                                            || privacy_internal.html(((d #>> '{retention,keep}')::interval)::text)
                                            || ' after ' || privacy_internal.html(d #>> '{retention,time_column}')
                                       ELSE 'kept until you ask us to erase them' END,
                                  privacy_internal.html_time(due.first), privacy_internal.html_time(due.last)), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o),
                              LATERAL (SELECT to_jsonb(min((w ->> 'due_at')::timestamptz)) AS first,
                                              to_jsonb(max((w ->> 'due_at')::timestamptz)) AS last
                                         FROM jsonb_array_elements(d -> 'rows') w) due));
    END IF;
    IF hold_active THEN
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
                                  coalesce((SELECT string_agg(privacy_internal.html(k) || ': '
                                                              || privacy_internal.html_count((v ->> 'rows')::bigint, 'record', 'records')
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


------------------------------------------------------------------------------
-- Issue #19 (gdpr): verifying an erasure without a purpose.
------------------------------------------------------------------------------
-- Whether a value still carries a search tag that an equality search can
-- match: one that shred_tag has not replaced (privacy.verify_erasure).
CREATE FUNCTION privacy_internal.live_search_tag(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_live_search_tag' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.live_search_tag(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_live_search_tag' LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION privacy_internal.live_search_tag(privacy.encrypted_text),
    privacy_internal.live_search_tag(privacy.encrypted_bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.live_search_tag(privacy.encrypted_text),
    privacy_internal.live_search_tag(privacy.encrypted_bytea) TO PUBLIC;

-- The condition that picks a subject's rows of a protected table (alias t):
-- the subject column compared as bigint for integer columns, as text
-- otherwise.
CREATE FUNCTION privacy_internal.subject_match(tbl regclass, subject_column name, subject text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN a.atttypid IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                THEN format('t.%I = privacy_internal.subject_int8(%L)', subject_column, subject)
                ELSE format('t.%I::pg_catalog.text = %L', subject_column, subject) END
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = subject_column
$$;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    match text;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
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

    -- the subject's rows, in every protected table (partitions and children
    -- through their root), tables before the tables they reference
    SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
    -- what the deletions can reach through ON DELETE actions, counted
    -- before and after (the transaction's own counters)
    SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
    -- references checked at commit are checked after each statement: the
    -- statements run in a security-restricted operation, where PostgreSQL
    -- fires no deferred trigger
    SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', ') INTO checked_at_commit
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
      JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
      JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
     WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
       AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
       AND c.condeferrable AND c.condeferred;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT o.tbl, o.cycle, p.subject_column
                    FROM privacy_internal.fk_order(roots) o
                    JOIN privacy.protected_tables p ON p.tbl = o.tbl
                   ORDER BY o.pos
        LOOP
            IF pt.cycle IS NOT NULL THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, match));
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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

-- What is left of a subject: for an officer checking an erasure, later (a
-- restore of an old backup, a late import), without a purpose: rows of
-- tables whose erasure deletes, values of kept (anonymized) rows that are
-- still readable or searchable, live keys, consent state, ledger entries
-- under the identifier.  Reads no value: counts rows as each table's owner
-- (run_as_owner), looks only at stored forms (is_erased, live_search_tag).
CREATE FUNCTION privacy.verify_erasure(subject text) RETURNS jsonb
    LANGUAGE plpgsql STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pt record;
    fate record;
    match text;
    hash bytea;
    n bigint;
    leftover jsonb := '{}';
    rows_left jsonb := '{}';
    values_left jsonb := '{}';
    tags_left jsonb := '{}';
    kept jsonb := '{}';
    remnant text;
    tagged text;
    erasure_id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    hash := privacy.subject_hash(subject);
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
        n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s', pt.tbl, match));
        CONTINUE WHEN n = 0;
        SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
        IF fate.action <> 'anonymized' THEN
            rows_left := rows_left || jsonb_build_object(pt.tbl::text, n);
            CONTINUE;
        END IF;
        kept := kept || jsonb_build_object(pt.tbl::text, n);
        -- kept rows: what the erasure clears must be cleared
        SELECT string_agg(CASE c.what WHEN 'null' THEN format('t.%I IS NOT NULL', c.col)
                                      WHEN 'masked' THEN format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col,
                                                                r.anonymize ->> c.col)
                                      ELSE format('NOT privacy.is_erased(t.%I)', c.col) END, ' OR '),
               string_agg(format('privacy_internal.live_search_tag(t.%I)', c.col), ' OR ')
                   FILTER (WHERE c.what = 'shredded')
          INTO remnant, tagged
          FROM jsonb_each_text(fate.columns) AS c(col, what), privacy.retention_rules r
         WHERE r.tbl = pt.tbl;
        IF remnant IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, remnant));
            IF n > 0 THEN
                values_left := values_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
        IF tagged IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, tagged));
            IF n > 0 THEN
                tags_left := tags_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
    END LOOP;
    IF rows_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('rows', rows_left);
    END IF;
    IF values_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('values', values_left);
    END IF;
    IF tags_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('search_tags', tags_left);
    END IF;
    SELECT count(*) INTO n FROM privacy.data_keys k
     WHERE k.scope = 'subject' AND k.subject_hash = hash AND k.state <> 'destroyed';
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('keys', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_state cs WHERE cs.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_state', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_events e WHERE e.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_events', n);
    END IF;
    SELECT max(e.id) INTO erasure_id FROM privacy.erasures e WHERE e.subject_hash = hash;
    RETURN jsonb_build_object('subject_hash', encode(hash, 'hex'), 'erasure', erasure_id,
                              'verified', leftover = '{}', 'left', leftover, 'kept', kept,
                              'checked_at', clock_timestamp());
END
$$;
COMMENT ON FUNCTION privacy.verify_erasure(text) IS
    'what is left of a subject, without a purpose and without reading a value: rows, readable or searchable values of kept rows, live keys, consent state and ledger entries; verified when nothing is';
REVOKE ALL ON FUNCTION privacy.verify_erasure(text), privacy_internal.subject_match(regclass, name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.verify_erasure(text) TO privacy_officer;

------------------------------------------------------------------------------
-- Issue #19 (gdpr): self-service for a customer portal (role privacy_portal).
------------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'privacy_portal') THEN
        CREATE ROLE privacy_portal NOLOGIN;
    END IF;
END
$roles$;
CREATE FUNCTION privacy_internal.portal_subject() RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    subject text := current_setting('privacy.portal_subject', true);
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'no subject is declared for the portal',
            DETAIL  = 'The portal functions act on the subject the application has authenticated, and on no other.',
            HINT    = 'Declare the customer for the transaction with SET LOCAL privacy.portal_subject = ''<subject>''.';
    END IF;
    RETURN subject;
END
$$;

CREATE FUNCTION privacy.portal_report() RETURNS jsonb
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy.subject_report(privacy_internal.portal_subject()) $$;
COMMENT ON FUNCTION privacy.portal_report() IS
    'the subject report of the subject declared in privacy.portal_subject (its own reads logged like every report''s)';

CREATE FUNCTION privacy.portal_report_html() RETURNS text
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy.subject_report_html(privacy_internal.portal_subject()) $$;
COMMENT ON FUNCTION privacy.portal_report_html() IS
    'the subject report of the subject declared in privacy.portal_subject, as a page for people';

CREATE FUNCTION privacy.portal_grant_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'grant', source, evidence) $$;
COMMENT ON FUNCTION privacy.portal_grant_consent(text, text, jsonb) IS
    'privacy.grant_consent for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_withdraw_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'withdraw', source, evidence) $$;
COMMENT ON FUNCTION privacy.portal_withdraw_consent(text, text, jsonb) IS
    'privacy.withdraw_consent for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_object(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'object', source, evidence) $$;
COMMENT ON FUNCTION privacy.portal_object(text, text, jsonb) IS
    'privacy.object for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_lift_objection(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'lift_objection', source, evidence) $$;
COMMENT ON FUNCTION privacy.portal_lift_objection(text, text, jsonb) IS
    'privacy.lift_objection for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_open_request(kind text, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy.open_request(privacy_internal.portal_subject(), kind, pg_catalog.now(), note) $$;
COMMENT ON FUNCTION privacy.portal_open_request(text, text) IS
    'privacy.open_request for the subject declared in privacy.portal_subject, received now';
REVOKE ALL ON FUNCTION privacy_internal.portal_subject(), privacy.portal_report(), privacy.portal_report_html(),
    privacy.portal_grant_consent(text, text, jsonb), privacy.portal_withdraw_consent(text, text, jsonb),
    privacy.portal_object(text, text, jsonb), privacy.portal_lift_objection(text, text, jsonb),
    privacy.portal_open_request(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    privacy.portal_report(), privacy.portal_report_html(),
    privacy.portal_grant_consent(text, text, jsonb), privacy.portal_withdraw_consent(text, text, jsonb),
    privacy.portal_object(text, text, jsonb), privacy.portal_lift_objection(text, text, jsonb),
    privacy.portal_open_request(text, text)
  TO privacy_portal;

-- Row estimates for the set-returning functions that came with the key
-- caches (#14), the typed types (#13) and Citus (#16), as every other one
-- of the extension has (#19)
ALTER FUNCTION privacy.key_cache_status() ROWS 2;
ALTER FUNCTION privacy_internal.typed_bases() ROWS 6;
ALTER FUNCTION privacy.citus_verify_access_log() ROWS 10;



------------------------------------------------------------------------------
-- Issue #19 (gdpr-speed): the GDPR benchmark's bottlenecks.  The
-- foreign-key graph of an erasure and the report's column descriptions are
-- kept for the session (memo.c); verify_erasure looks for a subject's live
-- keys through the partial indexes of privacy.data_keys (state <>
-- 'destroyed' matched neither).
------------------------------------------------------------------------------
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
REVOKE ALL ON FUNCTION privacy_internal.memo_get(text), privacy_internal.memo_put(text, oid[], jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    match text;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    erasure_id bigint;
    graph jsonb;
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

    -- what follows depends on the foreign-key graph only: kept for the
    -- session until a relation of it changes (memo.c; issue #19)
    graph := privacy_internal.memo_get('erasure');
    IF graph IS NULL THEN
        -- the subject's rows, in every protected table (partitions and children
        -- through their root), tables before the tables they reference
        SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
        -- what the deletions can reach through ON DELETE actions, counted
        -- before and after (the transaction's own counters)
        SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
        -- references checked at commit are checked after each statement: the
        -- statements run in a security-restricted operation, where PostgreSQL
        -- fires no deferred trigger
        SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', ') INTO checked_at_commit
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
          JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
         WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
           AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
           AND c.condeferrable AND c.condeferred;
        graph := privacy_internal.memo_put('erasure', reach_rels, jsonb_build_object(
            'roots', roots::oid[], 'reach_rels', reach_rels, 'reach_roots', reach_roots::oid[],
            'checked_at_commit', checked_at_commit,
            'order', (SELECT coalesce(jsonb_agg(jsonb_build_array(o.tbl::oid, o.cycle, p.subject_column) ORDER BY o.pos), '[]')
                        FROM privacy_internal.fk_order(roots) o
                        JOIN privacy.protected_tables p ON p.tbl = o.tbl)));
    ELSE
        roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'roots') x);
        reach_rels := ARRAY(SELECT x::oid FROM jsonb_array_elements_text(graph -> 'reach_rels') x);
        reach_roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'reach_roots') x);
        checked_at_commit := graph ->> 'checked_at_commit';
    END IF;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT (o ->> 0)::oid::regclass AS tbl,
                         ARRAY(SELECT c::oid FROM jsonb_array_elements_text(nullif(o -> 1, 'null')) c) AS cycle,
                         (o ->> 2)::name AS subject_column
                    FROM jsonb_array_elements(graph -> 'order') WITH ORDINALITY AS x(o, pos)
                   ORDER BY x.pos
        LOOP
            IF cardinality(pt.cycle) > 0 THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, match));
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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

CREATE OR REPLACE FUNCTION privacy.verify_erasure(subject text) RETURNS jsonb
    LANGUAGE plpgsql STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pt record;
    fate record;
    match text;
    hash bytea;
    n bigint;
    leftover jsonb := '{}';
    rows_left jsonb := '{}';
    values_left jsonb := '{}';
    tags_left jsonb := '{}';
    kept jsonb := '{}';
    remnant text;
    tagged text;
    erasure_id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    hash := privacy.subject_hash(subject);
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
        n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s', pt.tbl, match));
        CONTINUE WHEN n = 0;
        SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
        IF fate.action <> 'anonymized' THEN
            rows_left := rows_left || jsonb_build_object(pt.tbl::text, n);
            CONTINUE;
        END IF;
        kept := kept || jsonb_build_object(pt.tbl::text, n);
        -- kept rows: what the erasure clears must be cleared
        SELECT string_agg(CASE c.what WHEN 'null' THEN format('t.%I IS NOT NULL', c.col)
                                      WHEN 'masked' THEN format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col,
                                                                r.anonymize ->> c.col)
                                      ELSE format('NOT privacy.is_erased(t.%I)', c.col) END, ' OR '),
               string_agg(format('privacy_internal.live_search_tag(t.%I)', c.col), ' OR ')
                   FILTER (WHERE c.what = 'shredded')
          INTO remnant, tagged
          FROM jsonb_each_text(fate.columns) AS c(col, what), privacy.retention_rules r
         WHERE r.tbl = pt.tbl;
        IF remnant IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, remnant));
            IF n > 0 THEN
                values_left := values_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
        IF tagged IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, tagged));
            IF n > 0 THEN
                tags_left := tags_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
    END LOOP;
    IF rows_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('rows', rows_left);
    END IF;
    IF values_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('values', values_left);
    END IF;
    IF tags_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('search_tags', tags_left);
    END IF;
    -- one arm per partial index (as destroy_subject_key): state <> 'destroyed'
    -- matches neither, and scanned every key (issue #19)
    SELECT count(*) INTO n FROM privacy.data_keys k
     WHERE k.scope = 'subject' AND k.subject_hash = hash
       AND (k.state = 'active' OR k.state = 'retired');
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('keys', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_state cs WHERE cs.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_state', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_events e WHERE e.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_events', n);
    END IF;
    SELECT max(e.id) INTO erasure_id FROM privacy.erasures e WHERE e.subject_hash = hash;
    RETURN jsonb_build_object('subject_hash', encode(hash, 'hex'), 'erasure', erasure_id,
                              'verified', leftover = '{}', 'left', leftover, 'kept', kept,
                              'checked_at', clock_timestamp());
END
$$;

CREATE OR REPLACE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET privacy.purpose = 'subject_access'
    SET bytea_output = 'hex'
    SET IntervalStyle = 'iso_8601'
    -- one subject's rows never need JIT, which the planner's guesses for the
    -- packed access log (1,000 entries per batch) would buy: 0.4 s a call
    SET jit = off
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
    columns jsonb;
    column_rels oid[];
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');

    -- each protected table's columns as the report describes them: kept for
    -- the session until a table or the classification changes (memo.c)
    columns := privacy_internal.memo_get('report_columns');
    IF columns IS NULL THEN
        SELECT coalesce(jsonb_object_agg(p.tbl::oid::text,
                   (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'category', pc.category,
                                                        'encrypted', coalesce(pc.encrypted, false))
                                     ORDER BY a.attnum)
                      FROM pg_attribute a
                      LEFT JOIN privacy_internal.personal_columns pc ON pc.tbl = a.attrelid AND pc.col = a.attname
                     WHERE a.attrelid = p.tbl AND a.attnum > 0 AND NOT a.attisdropped)), '{}'),
               array_agg(p.tbl::oid)
          INTO columns, column_rels
          FROM privacy.protected_tables p WHERE p.parent IS NULL;
        columns := privacy_internal.memo_put('report_columns', column_rels, columns);
    END IF;

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
            'columns', columns -> (pt.tbl::oid::text),
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
    -- rows the statement read in all (that is about other subjects too).
    -- A statement refused after opening some of them (or shown some with
    -- others masked) is a denial, with its reason; one refused before it
    -- read a row names no subject and is in the access log only.
    SELECT coalesce(jsonb_agg(x.entry ORDER BY x.seq), '[]')
      INTO access
      FROM (SELECT l.seq, jsonb_build_object(
                       'entry', l.seq, 'at', l.at, 'role', l.acting_role, 'session_role', l.session_role,
                       'application', l.application, 'purpose', l.purpose, 'command', l.command,
                       'table', l.relation,
                       'categories', to_jsonb(array_agg(DISTINCT s.category ORDER BY s.category)),
                       'values', sum(s.opened), 'outcome', l.outcome)
                   || CASE WHEN l.reason IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('reason', l.reason, 'denied_category', l.denied_category) END
                   AS entry
              FROM privacy_internal.access_log_for_subject(hash) s
              JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
             -- never this call's own reads (the writer may store them
             -- before the query below runs); earlier calls are listed
             WHERE NOT (l.backend_pid = pg_catalog.pg_backend_pid()
                        AND l.at >= pg_catalog.statement_timestamp())
             GROUP BY l.seq, l.at, l.acting_role, l.session_role, l.application, l.purpose,
                      l.command, l.relation, l.outcome, l.reason, l.denied_category) x;

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

-- #16 (citus2): a worker takes an INSERT without a purpose as forwarded by
-- its coordinator only when the node the connection's Citus application
-- name points to vouches for it (citus.c)
CREATE FUNCTION privacy_internal.citus_vouch(gpid bigint, role text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_vouch' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION privacy_internal.citus_vouch(bigint, text) FROM PUBLIC;

-- #16 (citus2): the bulk path for new subjects' keys on Citus (citus.c)
CREATE FUNCTION privacy_internal.citus_create_keys(subject_hashes bytea[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_citus_create_keys' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION privacy_internal.citus_create_keys(bytea[]) FROM PUBLIC;

-- #16 (citus2): the subject report on a Citus coordinator lists the
-- workers' access entries for the subject too (11_report.sql)
-- The access entries of one subject on this node, oldest first, as the
-- report lists them.  Its own reads are left out: on the node the report
-- runs on, those of its backend since its statement began (own_pid); on a
-- Citus worker, which serves them over Citus's connections, those under
-- subject_access since then.
CREATE FUNCTION privacy_internal.subject_access_entries(hash bytea, own_pid integer, since timestamptz)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(x.entry ORDER BY x.seq), '[]')
      FROM (SELECT l.seq, jsonb_build_object(
                       'entry', l.seq, 'at', l.at, 'role', l.acting_role, 'session_role', l.session_role,
                       'application', l.application, 'purpose', l.purpose, 'command', l.command,
                       'table', l.relation,
                       'categories', to_jsonb(array_agg(DISTINCT s.category ORDER BY s.category)),
                       'values', sum(s.opened), 'outcome', l.outcome)
                   || CASE WHEN l.reason IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('reason', l.reason, 'denied_category', l.denied_category) END
                   AS entry
              FROM privacy_internal.access_log_for_subject(hash) s
              JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
             WHERE NOT (l.at >= since AND (coalesce(l.backend_pid = own_pid, false)
                                           OR (own_pid IS NULL AND l.purpose IS NOT DISTINCT FROM 'subject_access')))
             GROUP BY l.seq, l.at, l.acting_role, l.session_role, l.application, l.purpose,
                      l.command, l.relation, l.outcome, l.reason, l.denied_category) x
$$;
REVOKE ALL ON FUNCTION privacy_internal.subject_access_entries(bytea, integer, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET privacy.purpose = 'subject_access'
    SET bytea_output = 'hex'
    SET IntervalStyle = 'iso_8601'
    -- one subject's rows never need JIT, which the planner's guesses for the
    -- packed access log (1,000 entries per batch) would buy: 0.4 s a call
    SET jit = off
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
    columns jsonb;
    column_rels oid[];
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');

    -- each protected table's columns as the report describes them: kept for
    -- the session until a table or the classification changes (memo.c)
    columns := privacy_internal.memo_get('report_columns');
    IF columns IS NULL THEN
        SELECT coalesce(jsonb_object_agg(p.tbl::oid::text,
                   (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'category', pc.category,
                                                        'encrypted', coalesce(pc.encrypted, false))
                                     ORDER BY a.attnum)
                      FROM pg_attribute a
                      LEFT JOIN privacy_internal.personal_columns pc ON pc.tbl = a.attrelid AND pc.col = a.attname
                     WHERE a.attrelid = p.tbl AND a.attnum > 0 AND NOT a.attisdropped)), '{}'),
               array_agg(p.tbl::oid)
          INTO columns, column_rels
          FROM privacy.protected_tables p WHERE p.parent IS NULL;
        columns := privacy_internal.memo_put('report_columns', column_rels, columns);
    END IF;

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
            'columns', columns -> (pt.tbl::oid::text),
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
    -- rows the statement read in all (that is about other subjects too).
    -- A statement refused after opening some of them (or shown some with
    -- others masked) is a denial, with its reason; one refused before it
    -- read a row names no subject and is in the access log only.  Never
    -- this call's own reads (the writer may store them before the query
    -- runs); earlier calls are listed.  On a Citus coordinator, the values
    -- of distributed tables are opened on the workers, which log them in
    -- their own chains: their entries come too, each naming its node.
    access := privacy_internal.subject_access_entries(hash, pg_catalog.pg_backend_pid(),
                                                      pg_catalog.statement_timestamp());
    IF privacy_internal.citus_local_group() = 0 THEN
        -- one list, oldest first (the coordinator's entries name no node)
        SELECT coalesce(jsonb_agg(a.e ORDER BY (a.e ->> 'at')::timestamptz, a.e ->> 'node' NULLS FIRST,
                                  (a.e ->> 'entry')::bigint), '[]')
          INTO access
          FROM (SELECT e FROM jsonb_array_elements(access) e
                UNION ALL
                SELECT e0 || jsonb_build_object('node', w.nodename || ':' || w.nodeport)
                  FROM pg_catalog.run_command_on_workers(format(
                           'SELECT privacy_internal.subject_access_entries(%L::bytea, NULL, %L::timestamptz)',
                           hash, pg_catalog.statement_timestamp())) w
                 CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN w.success THEN w.result::jsonb
                                                              ELSE '[]' END) e0) a(e);
    END IF;

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

-- Subject keys at scale, costs (#14, branch scale-costs): the access
-- log's indexed lookups pass the unpacking function the entry's slice
-- alone, so that no Memoize node hashes a whole detoasted batch per entry
CREATE OR REPLACE FUNCTION privacy_internal.access_log_for_subject(subject_hash bytea)
    RETURNS SETOF privacy.access_log_subjects
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 10
    AS $$
SELECT e.* FROM privacy.access_log_trail t
       CROSS JOIN LATERAL (SELECT privacy_internal.access_log_entry(b.entries, b.offsets, t.seq - b.first_seq) AS entry
                             FROM privacy.access_log_batches b
                            WHERE b.first_seq <= t.seq ORDER BY b.first_seq DESC LIMIT 1) b
       CROSS JOIN LATERAL privacy_internal.access_log_subject_entries(b.entry, $1) e
 WHERE t.subject_key = privacy_internal.access_log_subject_key($1)
$$;

CREATE OR REPLACE FUNCTION privacy_internal.access_log_event(seq bigint)
    RETURNS SETOF privacy.access_log
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
    AS $$
SELECT e.* FROM (SELECT privacy_internal.access_log_entry(b.entries, b.offsets, $1 - b.first_seq) AS entry
                   FROM privacy.access_log_batches b
                  WHERE b.first_seq <= $1 ORDER BY b.first_seq DESC LIMIT 1) b,
       LATERAL privacy_internal.access_log_statements(b.entry, $1) e
$$;

------------------------------------------------------------------------------
-- Issue #19, the regulator role: subject_hash() is STABLE, so that
-- access_log_for_subject(subject_hash(x)) is inlined into its caller's query
------------------------------------------------------------------------------
ALTER FUNCTION privacy.subject_hash(text) STABLE;

-- The same condition with the subject as the text parameter $1: one
-- statement text for every subject, whose plan run_as_owner keeps for the
-- session (issue #19).
CREATE FUNCTION privacy_internal.subject_param_match(tbl regclass, subject_column name) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN a.atttypid IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                THEN format('t.%I = privacy_internal.subject_int8($1)', subject_column)
                ELSE format('t.%I::pg_catalog.text = $1', subject_column) END
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = subject_column
$$;
REVOKE ALL ON FUNCTION privacy_internal.subject_param_match(regclass, name) FROM PUBLIC;

-- verify_erasure: the subject a parameter of run_as_owner, whose plans are
-- kept for the session (src/catalog.c)
CREATE OR REPLACE FUNCTION privacy.verify_erasure(subject text) RETURNS jsonb
    LANGUAGE plpgsql STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pt record;
    fate record;
    match text;
    hash bytea;
    n bigint;
    leftover jsonb := '{}';
    rows_left jsonb := '{}';
    values_left jsonb := '{}';
    tags_left jsonb := '{}';
    kept jsonb := '{}';
    remnant text;
    tagged text;
    erasure_id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    hash := privacy.subject_hash(subject);
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        -- the subject a parameter: each statement planned once a session
        match := privacy_internal.subject_param_match(pt.tbl, pt.subject_column);
        n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s', pt.tbl, match),
                                           ARRAY[subject]);
        CONTINUE WHEN n = 0;
        SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
        IF fate.action <> 'anonymized' THEN
            rows_left := rows_left || jsonb_build_object(pt.tbl::text, n);
            CONTINUE;
        END IF;
        kept := kept || jsonb_build_object(pt.tbl::text, n);
        -- kept rows: what the erasure clears must be cleared
        SELECT string_agg(CASE c.what WHEN 'null' THEN format('t.%I IS NOT NULL', c.col)
                                      WHEN 'masked' THEN format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col,
                                                                r.anonymize ->> c.col)
                                      ELSE format('NOT privacy.is_erased(t.%I)', c.col) END, ' OR '),
               string_agg(format('privacy_internal.live_search_tag(t.%I)', c.col), ' OR ')
                   FILTER (WHERE c.what = 'shredded')
          INTO remnant, tagged
          FROM jsonb_each_text(fate.columns) AS c(col, what), privacy.retention_rules r
         WHERE r.tbl = pt.tbl;
        IF remnant IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, remnant),
                                               ARRAY[subject]);
            IF n > 0 THEN
                values_left := values_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
        IF tagged IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, tagged),
                                               ARRAY[subject]);
            IF n > 0 THEN
                tags_left := tags_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
    END LOOP;
    IF rows_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('rows', rows_left);
    END IF;
    IF values_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('values', values_left);
    END IF;
    IF tags_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('search_tags', tags_left);
    END IF;
    -- one arm per partial index (as destroy_subject_key): state <> 'destroyed'
    -- matches neither, and scanned every key (issue #19)
    SELECT count(*) INTO n FROM privacy.data_keys k
     WHERE k.scope = 'subject' AND k.subject_hash = hash
       AND (k.state = 'active' OR k.state = 'retired');
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('keys', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_state cs WHERE cs.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_state', n);
    END IF;
    SELECT count(*) INTO n FROM privacy.consent_events e WHERE e.subject = verify_erasure.subject;
    IF n > 0 THEN
        leftover := leftover || jsonb_build_object('consent_events', n);
    END IF;
    SELECT max(e.id) INTO erasure_id FROM privacy.erasures e WHERE e.subject_hash = hash;
    RETURN jsonb_build_object('subject_hash', encode(hash, 'hex'), 'erasure', erasure_id,
                              'verified', leftover = '{}', 'left', leftover, 'kept', kept,
                              'checked_at', clock_timestamp());
END
$$;

-- #15 (churn): a consent event writes an existing state row once (the
-- ledger id is drawn in DO UPDATE, once the row is locked), not twice
-- (05_consent.sql)
CREATE OR REPLACE FUNCTION privacy_internal.record_consent(subject text, purpose text, action text,
                                        source text, evidence jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    basis text;
    new_state text := CASE action WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END;
    event_id bigint;
    current_state text;
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
    -- Lifting an objection: only one in force, and what is left is no
    -- objection and no consent (a purpose based on consent needs a new
    -- grant): withdrawn for those, no state at all for the others.
    IF action = 'lift_objection' THEN
        SELECT cs.state INTO current_state FROM privacy.consent_state cs
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject
           FOR UPDATE;
        IF current_state IS DISTINCT FROM 'objected' THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('subject has no objection to purpose "%s" to lift', purpose),
                DETAIL  = CASE WHEN current_state IS NULL
                               THEN 'Nothing was recorded for the subject and the purpose.'
                               ELSE format('The subject''s state for the purpose is %s.', current_state) END,
                HINT    = 'See the subject''s consent history in privacy.consent_events.';
        END IF;
        INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
        VALUES (subject, purpose, action, source, evidence)
        RETURNING id INTO event_id;
        IF basis = 'consent' THEN
            UPDATE privacy.consent_state cs SET state = 'withdrawn', since = clock_timestamp(), last_event = event_id
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        ELSE
            DELETE FROM privacy.consent_state cs
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        END IF;
        RETURN event_id;
    END IF;
    -- The state row is locked first, so concurrent events for one subject and
    -- purpose reach the ledger in the order they take effect: the ledger id
    -- is drawn once the row is locked (in DO UPDATE, for a subject with a
    -- state; after the insert, for a new one), and a state row that exists
    -- is written once per event.
    INSERT INTO privacy.consent_state AS cs (subject, purpose, state, since, last_event)
    VALUES (subject, purpose, new_state, clock_timestamp(), 0)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE
       SET state = EXCLUDED.state,
           since = CASE WHEN cs.state = EXCLUDED.state THEN cs.since ELSE EXCLUDED.since END,
           last_event = pg_catalog.nextval('privacy.consent_event_id_seq')
    RETURNING cs.last_event INTO event_id;
    IF event_id = 0 THEN
        event_id := pg_catalog.nextval('privacy.consent_event_id_seq');
        UPDATE privacy.consent_state cs SET last_event = event_id
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
    END IF;
    INSERT INTO privacy.consent_events (id, subject, purpose, action, source, evidence)
    VALUES (event_id, subject, purpose, action, source, evidence);
    RETURN event_id;
END
$$;

-- Online protect_table and reencrypt (#14): rows resealed in committed
-- batches by key (privacy.reseal_jobs, CALL privacy.reseal()), with
-- privacy.progress_reseal; reencrypt runs as the table's owner
CREATE FUNCTION privacy_internal.run_as_owner_row(tbl regclass, sql text, args text[] DEFAULT NULL) RETURNS text[]
    AS 'MODULE_PATHNAME', 'privacy_run_as_owner_row' LANGUAGE C;
REVOKE ALL ON FUNCTION privacy_internal.run_as_owner_row(regclass, text, text[]) FROM PUBLIC;
CREATE FUNCTION privacy_internal.under_category_key(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.under_category_key(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE;
DO $types$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT format('privacy.%I', b.name) FROM privacy_internal.typed_bases() b LOOP
        EXECUTE format($f$CREATE FUNCTION privacy_internal.under_category_key(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format('REVOKE ALL ON FUNCTION privacy_internal.under_category_key(%s) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION privacy_internal.under_category_key(%s) TO PUBLIC', t);
    END LOOP;
END
$types$;
GRANT EXECUTE ON FUNCTION privacy_internal.under_category_key(privacy.encrypted_text),
    privacy_internal.under_category_key(privacy.encrypted_bytea) TO PUBLIC;
DROP PROCEDURE privacy.reencrypt(regclass, name, integer);

CREATE TABLE privacy.reseal_jobs (
    tbl           regclass NOT NULL,
    command       text NOT NULL CHECK (command IN ('protect_table', 'reencrypt')),
    col           name,
    key_columns   name[],
    last_key      text[],
    rows_total    bigint,
    rows_done     bigint NOT NULL DEFAULT 0,
    rows_resealed bigint NOT NULL DEFAULT 0,
    batches       bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by    name NOT NULL DEFAULT session_user,
    started_at    timestamptz,
    updated_at    timestamptz,
    UNIQUE NULLS NOT DISTINCT (tbl, command, col)
);
COMMENT ON TABLE privacy.reseal_jobs IS
    'tables whose values are being resealed in batches (after protect_table: under subject keys; reencrypt: under the active key), and the key where the last committed batch stopped';
SELECT pg_catalog.pg_extension_config_dump('privacy.reseal_jobs', '');

-- The advisory lock a session holds while it reseals a table: ('rsel', table).
CREATE FUNCTION privacy_internal.reseal_lock_class() RETURNS integer
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT 1920165228 $$;

-- In the style of pg_stat_progress_*: one row per job, with the process
-- running it (NULL: waiting for CALL privacy.reseal(), or interrupted).
CREATE VIEW privacy.progress_reseal AS
SELECT l.pid, j.tbl AS relid, j.command, j.col AS column_name,
       CASE WHEN (l.pid IS NULL OR a.state IS DISTINCT FROM 'active') AND j.batches = 0 THEN 'waiting'
            WHEN l.pid IS NULL OR a.state IS DISTINCT FROM 'active' THEN 'interrupted'
            WHEN j.rows_total IS NULL THEN 'counting rows'
            ELSE 'resealing' END AS phase,
       j.rows_total, j.rows_done, j.rows_resealed, j.batches,
       j.started_at, j.updated_at, j.created_at, j.created_by
  FROM privacy.reseal_jobs j
  LEFT JOIN pg_catalog.pg_locks l
         ON l.locktype = 'advisory' AND l.granted AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                                                    WHERE d.datname = pg_catalog.current_database())
        AND l.classid::integer = privacy_internal.reseal_lock_class()
        AND l.objid = j.tbl::oid AND l.objsubid = 2
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid;
COMMENT ON VIEW privacy.progress_reseal IS
    'reseals under way or interrupted (pid NULL): rows covered of the rows counted when the job began, and rows rewritten';

-- The key a table's batches follow: its primary key when no column of it
-- is encrypted, else the given column (the subject column).
CREATE FUNCTION privacy_internal.reseal_key(tbl regclass, fallback name) RETURNS name[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT array_agg(a.attname ORDER BY k.ord)
           FROM pg_catalog.pg_index i
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = tbl AND i.indisprimary
         HAVING bool_and(NOT privacy_internal.is_encrypted_type(a.atttypid)) AND bool_and(k.attnum > 0)),
        ARRAY[fallback])
$$;

-- A new job for the table and each table below it with storage (or the
-- ones already there, left as they are).
CREATE FUNCTION privacy_internal.reseal_enqueue(tbl regclass, command text, col name) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO privacy.reseal_jobs (tbl, command, col)
    SELECT d.t, command, col
      FROM (SELECT tbl AS t UNION ALL SELECT privacy_internal.descendants(tbl)) d
      JOIN pg_catalog.pg_class c ON c.oid = d.t
     WHERE c.relkind = 'r'
    ON CONFLICT (tbl, command, col) DO NOTHING
$$;

-- Whether the seal trigger is on the table (a partition's is cloned from
-- its partitioned table's, which protect_table creates after the
-- partitions are registered).
CREATE FUNCTION privacy_internal.has_seal_trigger(tbl regclass) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = tbl AND t.tgname = 'privacy_seal_row' AND t.tgenabled <> 'D')
$$;

-- One batch of a job, in the caller's transaction, as the table's owner in
-- a security-restricted operation (run_as_owner): the next batch_rows rows
-- after last_key in key order are covered, and those still to reseal
-- rewritten.  protect_table's batches assign each encrypted column to
-- itself, and the seal trigger reseals the row under its subject's key;
-- reencrypt's reseal one column with privacy_internal.reseal().  A row
-- the application updates meanwhile keeps the application's values: the
-- batch's UPDATE locks each row and, if another transaction changed it
-- first, re-reads it (READ COMMITTED), and a row written since protection
-- began is under its subject's key already and left out.  Returns the rows
-- covered, 0 when the job is done (and gone), NULL when there is no job.
CREATE FUNCTION privacy_internal.reseal_batch(job_tbl regclass, job_command text, job_col name,
                                              batch_rows integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j privacy.reseal_jobs;
    subject name;
    keys name[];
    nk integer;
    key_list text;
    lower_bound text := 'true';
    upper_bound text;
    sets text;
    todo text;
    stmt text;
    boundary text[];
    covered bigint;
    n bigint;
    rel text;
    distributed boolean := false;
BEGIN
    SELECT * INTO j FROM privacy.reseal_jobs r
     WHERE r.tbl = job_tbl AND r.command = job_command AND r.col IS NOT DISTINCT FROM job_col
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = job_tbl;
    IF job_command = 'protect_table' THEN
        -- unprotected meanwhile: nothing is left to do
        IF subject IS NULL THEN
            DELETE FROM privacy.reseal_jobs r WHERE r.tbl = job_tbl AND r.command = job_command;
            RETURN 0;
        END IF;
        SELECT string_agg(format('%1$I = %1$I', a.attname), ', ' ORDER BY a.attnum),
               format('%I IS NOT NULL AND (%s)', subject,
                      string_agg(format('privacy_internal.under_category_key(%I)', a.attname), ' OR ' ORDER BY a.attnum))
          INTO sets, todo
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = job_tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND privacy_internal.is_encrypted_type(a.atttypid);
        -- Citus refuses a STABLE function of a column in an UPDATE: there
        -- every row of the batch with a subject is written (the seal
        -- trigger leaves a value under its subject's key as it is)
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
            EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
               INTO distributed USING job_tbl;
        END IF;
        IF distributed THEN
            todo := format('%I IS NOT NULL', subject);
        END IF;
    ELSE
        sets := format('%1$I = privacy_internal.reseal(%1$I)', job_col);
        todo := format('privacy_internal.needs_reseal(%I)', job_col);
    END IF;
    IF job_command = 'protect_table' AND NOT privacy_internal.has_seal_trigger(job_tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('table %s has no seal trigger', job_tbl),
            HINT = 'Protect the table again with privacy.unprotect_table() and privacy.protect_table().';
    END IF;
    IF sets IS NULL THEN
        DELETE FROM privacy.reseal_jobs r
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
        RETURN 0;
    END IF;
    keys := privacy_internal.reseal_key(job_tbl, coalesce(subject,
                (SELECT a.attname FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = job_tbl AND a.attnum > 0 AND NOT a.attisdropped
                    AND NOT privacy_internal.is_encrypted_type(a.atttypid)
                  ORDER BY a.attnum LIMIT 1)));
    IF j.key_columns IS DISTINCT FROM keys THEN
        -- a new key (or the first batch): start from the beginning; rows
        -- resealed already are left out by the filter
        j.key_columns := keys;
        j.last_key := NULL;
    END IF;
    nk := cardinality(keys);
    SELECT string_agg(format('%I', k), ', ' ORDER BY o) INTO key_list
      FROM unnest(keys) WITH ORDINALITY u(k, o);
    IF j.last_key IS NOT NULL THEN
        SELECT format('(%s) > (%s)', key_list,
                      string_agg(format('$%s::%s', o, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY o))
          INTO lower_bound
          FROM unnest(keys) WITH ORDINALITY u(k, o)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = job_tbl AND a.attname = u.k;
    END IF;
    -- a parent of traditional inheritance without its children (each has a
    -- job of its own); ONLY is left out elsewhere, for Citus's sake
    rel := CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = job_tbl)
                THEN 'ONLY ' ELSE '' END || job_tbl::text;
    IF j.rows_total IS NULL THEN
        j.rows_total := (privacy_internal.run_as_owner_row(job_tbl, format('SELECT count(*) FROM %s', rel)))[1]::bigint;
    END IF;
    -- the last key of the next batch_rows rows, and how many there are
    stmt := format('SELECT %s, count(*) OVER () FROM (SELECT %s FROM %s WHERE %s AND %s ORDER BY %s LIMIT %s) s ORDER BY %s LIMIT 1',
                   key_list, key_list, rel, lower_bound,
                   (SELECT string_agg(format('%I IS NOT NULL', k), ' AND ') FROM unnest(keys) k),
                   key_list, batch_rows,
                   (SELECT string_agg(format('%I DESC', k), ', ' ORDER BY o) FROM unnest(keys) WITH ORDINALITY u(k, o)));
    boundary := privacy_internal.run_as_owner_row(job_tbl, stmt, j.last_key);
    IF boundary IS NULL THEN
        DELETE FROM privacy.reseal_jobs r
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
        RETURN 0;
    END IF;
    covered := boundary[nk + 1]::bigint;
    SELECT format('(%s) <= (%s)', key_list,
                  string_agg(format('$%s::%s', o + coalesce(cardinality(j.last_key), 0),
                                    pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY o))
      INTO upper_bound
      FROM unnest(keys) WITH ORDINALITY u(k, o)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = job_tbl AND a.attname = u.k;
    n := privacy_internal.run_as_owner(job_tbl,
        format('UPDATE %s SET %s WHERE %s AND %s AND (%s)', rel, sets, lower_bound, upper_bound, todo),
        coalesce(j.last_key, '{}') || boundary[1:nk]);
    IF keys = ARRAY[subject] OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                             WHERE i.indrelid = job_tbl AND i.indisprimary) THEN
        -- a key that is not unique: the batch took every row of its last value
        covered := (privacy_internal.run_as_owner_row(job_tbl,
            format('SELECT count(*) FROM %s WHERE %s AND %s', rel, lower_bound, upper_bound),
            coalesce(j.last_key, '{}') || boundary[1:nk]))[1]::bigint;
    END IF;
    UPDATE privacy.reseal_jobs r
       SET key_columns = keys, last_key = boundary[1:nk], rows_total = j.rows_total,
           rows_done = r.rows_done + covered, rows_resealed = r.rows_resealed + n,
           batches = r.batches + 1, started_at = coalesce(r.started_at, pg_catalog.clock_timestamp()),
           updated_at = pg_catalog.clock_timestamp()
     WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
    RETURN covered;
END
$$;

-- The process that holds a table for resealing, if any.
CREATE FUNCTION privacy_internal.reseal_holder(tbl regclass) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.pid FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
       AND l.classid::integer = privacy_internal.reseal_lock_class()
       AND l.objid = tbl::oid AND l.objsubid = 2
     LIMIT 1
$$;

-- One session at a time per table: the session's advisory lock on it, kept
-- across the batches' commits (and dropped by a crash or the session's end).
-- A session that holds it already (a CALL it cancelled) goes on.
CREATE FUNCTION privacy_internal.reseal_lock(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder integer;
BEGIN
    holder := privacy_internal.reseal_holder(tbl);
    IF holder = pg_catalog.pg_backend_pid() THEN
        RETURN;
    END IF;
    IF NOT pg_catalog.pg_try_advisory_lock(privacy_internal.reseal_lock_class(), tbl::oid::integer) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_in_use',
            MESSAGE = format('table %s is being resealed by another session', tbl),
            DETAIL = format('Process %s holds it; one session at a time reseals a table.',
                            coalesce(privacy_internal.reseal_holder(tbl)::text, '?')),
            HINT = 'privacy.progress_reseal shows its progress; CALL privacy.reseal() again once it has ended, if it was interrupted.';
    END IF;
END
$$;

CREATE FUNCTION privacy_internal.reseal_unlock(tbl regclass) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.pg_advisory_unlock(privacy_internal.reseal_lock_class(), tbl::oid::integer)
     WHERE privacy_internal.reseal_holder(tbl) = pg_catalog.pg_backend_pid()
$$;

-- The jobs on a table and the tables below it (partitions, children).
CREATE FUNCTION privacy_internal.reseal_pending(tbl regclass, command text, col name)
    RETURNS TABLE (tbl regclass, command text, col name)
    LANGUAGE sql STABLE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.tbl, j.command, j.col FROM privacy.reseal_jobs j
     WHERE (reseal_pending.tbl IS NULL OR j.tbl = reseal_pending.tbl
            OR j.tbl IN (SELECT privacy_internal.descendants(reseal_pending.tbl)))
       AND (reseal_pending.command IS NULL OR j.command = reseal_pending.command)
       AND (reseal_pending.col IS NULL OR j.col = reseal_pending.col)
     ORDER BY j.created_at, j.tbl::oid
$$;

-- A small table is resealed at once, in the caller's transaction (what
-- protect_table did for every table before 0.3); a larger one is left to
-- CALL privacy.reseal(), which the NOTICE names.  (A partition whose seal
-- trigger is not cloned yet waits for protect_table to call this again.)
CREATE FUNCTION privacy_internal.reseal_small(tbl regclass, command text, col name, at_most integer DEFAULT 1000)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF command = 'protect_table' AND NOT privacy_internal.has_seal_trigger(tbl) THEN
        RETURN false;
    END IF;
    IF privacy_internal.run_as_owner(tbl, format('SELECT FROM %s%s LIMIT %s',
            CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN 'ONLY ' ELSE '' END,
            tbl, at_most + 1)) > at_most THEN
        RAISE NOTICE USING
            MESSAGE = format('%s holds more than %s rows: they are resealed online in batches', tbl, at_most),
            HINT = format('Run CALL privacy.reseal(%L); privacy.progress_reseal shows its progress.', tbl::text);
        RETURN false;
    END IF;
    WHILE privacy_internal.reseal_batch(tbl, command, col, at_most + 1) > 0 LOOP
    END LOOP;
    RETURN true;
END
$$;

-- The batches of the jobs on a table (and below it), each committed, with a
-- NOTICE per batch.  Called by privacy.reseal() and privacy.reencrypt().
CREATE PROCEDURE privacy_internal.reseal_run(tbl regclass, command text, col name, batch_rows integer)
    LANGUAGE plpgsql
AS $$
DECLARE
    j record;
    n bigint;
    p record;
BEGIN
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_rows must be at least 1';
    END IF;
    FOR j IN SELECT * FROM privacy_internal.reseal_pending(tbl, command, col) LOOP
        PERFORM privacy_internal.reseal_lock(j.tbl);
        COMMIT;
        LOOP
            BEGIN
                n := privacy_internal.reseal_batch(j.tbl, j.command, j.col, batch_rows);
                SELECT * INTO p FROM privacy.reseal_jobs r
                 WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                -- the batch is undone; the job waits for the next CALL
                PERFORM privacy_internal.reseal_unlock(j.tbl);
                RAISE;
            END;
            COMMIT;
            EXIT WHEN n IS NULL OR n = 0;
            RAISE NOTICE '% %: % of % rows covered, % resealed', j.command, j.tbl, p.rows_done, p.rows_total, p.rows_resealed;
        END LOOP;
        PERFORM privacy_internal.reseal_unlock(j.tbl);
        COMMIT;
        IF n IS NOT NULL THEN
            RAISE NOTICE '% %: done', j.command, j.tbl;
        END IF;
    END LOOP;
END
$$;

CREATE PROCEDURE privacy.reseal(tbl regclass DEFAULT NULL, batch_rows integer DEFAULT 1000)
    LANGUAGE plpgsql
AS $$
BEGIN
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_rows must be at least 1';
    END IF;
    IF tbl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM privacy_internal.reseal_pending(tbl, NULL, NULL)) THEN
        IF NOT EXISTS (SELECT 1 FROM privacy.protected_tables pt WHERE pt.tbl = reseal.tbl) THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('table %s is not protected', tbl),
                HINT = 'privacy.protect_table() protects it; its rows are then resealed under their subjects'' keys.';
        END IF;
        RAISE NOTICE 'table % has nothing left to reseal', tbl;
        RETURN;
    END IF;
    CALL privacy_internal.reseal_run(tbl, NULL, NULL, batch_rows);
END
$$;
COMMENT ON PROCEDURE privacy.reseal(regclass, integer) IS
    'reseal the rows of a table (and its partitions) that protect_table or reencrypt left to do, in committed batches by key; resumes where an interrupted run stopped (NULL: every table)';

-- Rewrites values sealed with retired keys, in committed batches by key, as
-- the table's owner: it holds no long lock and can be stopped and run again
-- at any time (CALL privacy.reseal() resumes it too).
CREATE PROCEDURE privacy.reencrypt(tbl regclass, col name, batch_rows integer DEFAULT 1000)
    LANGUAGE plpgsql
AS $$
BEGIN
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_rows must be at least 1';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped AND a.attnum > 0
                      AND privacy_internal.is_encrypted_type(a.atttypid)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('column "%s" of %s is not an encrypted column', col, tbl);
    END IF;
    PERFORM privacy_internal.reseal_enqueue(tbl, 'reencrypt', col);
    COMMIT;
    CALL privacy_internal.reseal_run(tbl, 'reencrypt', col, batch_rows);
END
$$;
COMMENT ON PROCEDURE privacy.reencrypt(regclass, name, integer) IS
    'reseal values of a column that use retired keys, as the table''s owner, committing after each batch of rows by key (resumable; privacy.progress_reseal shows it)';

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


CREATE OR REPLACE FUNCTION privacy.protect_table(tbl regclass, subject_column name) RETURNS void
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


CREATE OR REPLACE FUNCTION privacy_internal.protect_new_partitions() RETURNS event_trigger
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


CREATE OR REPLACE FUNCTION privacy_internal.forget_dropped() RETURNS event_trigger
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


REVOKE ALL ON TABLE privacy.reseal_jobs, privacy.progress_reseal FROM PUBLIC;
REVOKE ALL ON FUNCTION privacy_internal.reseal_lock_class(), privacy_internal.reseal_key(regclass, name),
    privacy_internal.reseal_holder(regclass),
    privacy_internal.reseal_enqueue(regclass, text, name), privacy_internal.has_seal_trigger(regclass),
    privacy_internal.reseal_batch(regclass, text, name, integer), privacy_internal.reseal_lock(regclass),
    privacy_internal.reseal_unlock(regclass), privacy_internal.reseal_pending(regclass, text, name),
    privacy_internal.reseal_small(regclass, text, name, integer)
  FROM PUBLIC;
REVOKE ALL ON PROCEDURE privacy_internal.reseal_run(regclass, text, name, integer), privacy.reseal(regclass, integer),
    privacy.reencrypt(regclass, name, integer)
  FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE privacy.reencrypt(regclass, name, integer), privacy.reseal(regclass, integer),
    privacy_internal.reseal_run(regclass, text, name, integer)
  TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy_internal.reseal_batch(regclass, text, name, integer),
    privacy_internal.reseal_lock(regclass), privacy_internal.reseal_unlock(regclass),
    privacy_internal.reseal_pending(regclass, text, name), privacy_internal.reseal_enqueue(regclass, text, name)
  TO privacy_admin;
-- (the view privacy.progress_reseal names it)
GRANT EXECUTE ON FUNCTION privacy_internal.reseal_lock_class() TO PUBLIC;
GRANT SELECT ON privacy.progress_reseal, privacy.reseal_jobs TO privacy_admin, privacy_officer;

-- compliance_gaps() names tables whose reseal is not finished (#14)
CREATE OR REPLACE FUNCTION privacy.compliance_gaps()
    RETURNS TABLE (gap text, object text, detail text, hint text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
    SET jit = off    -- catalog-sized queries: compiling them costs more than running them
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
    -- rows of a protected table still under the category key: protect_table
    -- left them to CALL privacy.reseal(), which has not finished
    SELECT 'reseal pending', j.tbl::text,
           format('Protected table %s has rows still under the category key (%s of %s covered by privacy.reseal()): destroying a subject''s key does not shred them yet.',
                  j.tbl, j.rows_done, coalesce(j.rows_total::text, 'its rows')),
           format('A member of privacy_admin finishes it: CALL privacy.reseal(%L);', j.tbl::text)
      FROM privacy.reseal_jobs j
     WHERE j.command = 'protect_table'
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

-- #14 review (reseal attacks, sql/reseal_attacks.sql): a batch's key
-- position is written and read under pinned DateStyle, IntervalStyle and
-- extra_float_digits; a job whose pass left rows to do (a key retyped
-- mid-reseal, a trigger or rule that swallowed the batches) goes through
-- the table again, then fails clearly instead of ending as done; an
-- erasure moves a job's position off the erased subject's identifier;
-- progress_reseal does not call a reseal 'interrupted' to a viewer who
-- may not see the session's state in pg_stat_activity.
CREATE OR REPLACE VIEW privacy.progress_reseal AS
SELECT l.pid, j.tbl AS relid, j.command, j.col AS column_name,
       CASE WHEN (l.pid IS NULL OR a.state <> 'active') AND j.batches = 0 THEN 'waiting'
            WHEN l.pid IS NULL OR a.state <> 'active' THEN 'interrupted'
            WHEN j.rows_total IS NULL THEN 'counting rows'
            ELSE 'resealing' END AS phase,
       j.rows_total, j.rows_done, j.rows_resealed, j.batches,
       j.started_at, j.updated_at, j.created_at, j.created_by
  FROM privacy.reseal_jobs j
  LEFT JOIN pg_catalog.pg_locks l
         ON l.locktype = 'advisory' AND l.granted AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                                                    WHERE d.datname = pg_catalog.current_database())
        AND l.classid::integer = privacy_internal.reseal_lock_class()
        AND l.objid = j.tbl::oid AND l.objsubid = 2
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid;

CREATE OR REPLACE FUNCTION privacy_internal.reseal_batch(job_tbl regclass, job_command text, job_col name,
                                              batch_rows integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET extra_float_digits = 3
AS $$
DECLARE
    j privacy.reseal_jobs;
    subject name;
    keys name[];
    nk integer;
    key_list text;
    lower_bound text := 'true';
    upper_bound text;
    sets text;
    todo text;
    stmt text;
    boundary text[];
    covered bigint;
    n bigint;
    rel text;
    distributed boolean := false;
    passed_over bigint;
    -- what is left to do, exactly (todo is wider on Citus, below)
    left_to_do text;
BEGIN
    SELECT * INTO j FROM privacy.reseal_jobs r
     WHERE r.tbl = job_tbl AND r.command = job_command AND r.col IS NOT DISTINCT FROM job_col
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT pt.subject_column INTO subject FROM privacy.protected_tables pt WHERE pt.tbl = job_tbl;
    IF job_command = 'protect_table' THEN
        -- unprotected meanwhile: nothing is left to do
        IF subject IS NULL THEN
            DELETE FROM privacy.reseal_jobs r WHERE r.tbl = job_tbl AND r.command = job_command;
            RETURN 0;
        END IF;
        SELECT string_agg(format('%1$I = %1$I', a.attname), ', ' ORDER BY a.attnum),
               format('%I IS NOT NULL AND (%s)', subject,
                      string_agg(format('privacy_internal.under_category_key(%I)', a.attname), ' OR ' ORDER BY a.attnum))
          INTO sets, todo
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = job_tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND privacy_internal.is_encrypted_type(a.atttypid);
        -- Citus refuses a STABLE function of a column in an UPDATE: there
        -- every row of the batch with a subject is written (the seal
        -- trigger leaves a value under its subject's key as it is)
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
            EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
               INTO distributed USING job_tbl;
        END IF;
        left_to_do := todo;
        IF distributed THEN
            todo := format('%I IS NOT NULL', subject);
        END IF;
    ELSE
        sets := format('%1$I = privacy_internal.reseal(%1$I)', job_col);
        todo := format('privacy_internal.needs_reseal(%I)', job_col);
        left_to_do := todo;
    END IF;
    IF job_command = 'protect_table' AND NOT privacy_internal.has_seal_trigger(job_tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('table %s has no seal trigger', job_tbl),
            HINT = 'Protect the table again with privacy.unprotect_table() and privacy.protect_table().';
    END IF;
    IF sets IS NULL THEN
        DELETE FROM privacy.reseal_jobs r
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
        RETURN 0;
    END IF;
    keys := privacy_internal.reseal_key(job_tbl, coalesce(subject,
                (SELECT a.attname FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = job_tbl AND a.attnum > 0 AND NOT a.attisdropped
                    AND NOT privacy_internal.is_encrypted_type(a.atttypid)
                  ORDER BY a.attnum LIMIT 1)));
    IF j.key_columns IS DISTINCT FROM keys THEN
        -- a new key (or the first batch): start from the beginning; rows
        -- resealed already are left out by the filter
        j.key_columns := keys;
        j.last_key := NULL;
    END IF;
    nk := cardinality(keys);
    SELECT string_agg(format('%I', k), ', ' ORDER BY o) INTO key_list
      FROM unnest(keys) WITH ORDINALITY u(k, o);
    IF j.last_key IS NOT NULL THEN
        SELECT format('(%s) > (%s)', key_list,
                      string_agg(format('$%s::%s', o, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY o))
          INTO lower_bound
          FROM unnest(keys) WITH ORDINALITY u(k, o)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = job_tbl AND a.attname = u.k;
    END IF;
    -- a parent of traditional inheritance without its children (each has a
    -- job of its own); ONLY is left out elsewhere, for Citus's sake
    rel := CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = job_tbl)
                THEN 'ONLY ' ELSE '' END || job_tbl::text;
    IF j.rows_total IS NULL THEN
        j.rows_total := (privacy_internal.run_as_owner_row(job_tbl, format('SELECT count(*) FROM %s', rel)))[1]::bigint;
    END IF;
    -- the last key of the next batch_rows rows, and how many there are
    stmt := format('SELECT %s, count(*) OVER () FROM (SELECT %s FROM %s WHERE %s AND %s ORDER BY %s LIMIT %s) s ORDER BY %s LIMIT 1',
                   key_list, key_list, rel, lower_bound,
                   (SELECT string_agg(format('%I IS NOT NULL', k), ' AND ') FROM unnest(keys) k),
                   key_list, batch_rows,
                   (SELECT string_agg(format('%I DESC', k), ', ' ORDER BY o) FROM unnest(keys) WITH ORDINALITY u(k, o)));
    boundary := privacy_internal.run_as_owner_row(job_tbl, stmt, j.last_key);
    IF boundary IS NULL THEN
        passed_over := (privacy_internal.run_as_owner_row(job_tbl,
            format('SELECT count(*) FROM %s WHERE %s', rel, left_to_do)))[1]::bigint;
        IF passed_over > 0 THEN
            UPDATE privacy.reseal_jobs r
               SET key_columns = NULL, last_key = NULL, rows_total = NULL, rows_done = 0,
                   updated_at = pg_catalog.clock_timestamp()
             WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
            RETURN -passed_over;
        END IF;
        DELETE FROM privacy.reseal_jobs r
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
        RETURN 0;
    END IF;
    covered := boundary[nk + 1]::bigint;
    SELECT format('(%s) <= (%s)', key_list,
                  string_agg(format('$%s::%s', o + coalesce(cardinality(j.last_key), 0),
                                    pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY o))
      INTO upper_bound
      FROM unnest(keys) WITH ORDINALITY u(k, o)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = job_tbl AND a.attname = u.k;
    n := privacy_internal.run_as_owner(job_tbl,
        format('UPDATE %s SET %s WHERE %s AND %s AND (%s)', rel, sets, lower_bound, upper_bound, todo),
        coalesce(j.last_key, '{}') || boundary[1:nk]);
    IF keys = ARRAY[subject] OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                             WHERE i.indrelid = job_tbl AND i.indisprimary) THEN
        -- a key that is not unique: the batch took every row of its last value
        covered := (privacy_internal.run_as_owner_row(job_tbl,
            format('SELECT count(*) FROM %s WHERE %s AND %s', rel, lower_bound, upper_bound),
            coalesce(j.last_key, '{}') || boundary[1:nk]))[1]::bigint;
    END IF;
    UPDATE privacy.reseal_jobs r
       SET key_columns = keys, last_key = boundary[1:nk], rows_total = j.rows_total,
           rows_done = r.rows_done + covered, rows_resealed = r.rows_resealed + n,
           batches = r.batches + 1, started_at = coalesce(r.started_at, pg_catalog.clock_timestamp()),
           updated_at = pg_catalog.clock_timestamp()
     WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
    RETURN covered;
END
$$;

CREATE FUNCTION privacy_internal.reseal_forget_subject(subject text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET extra_float_digits = 3
AS $$
DECLARE
    j record;
    match text;
    typed text;
    in_t text;
    in_k text;
    desc_t text;
    not_null text;
    rel text;
BEGIN
    FOR j IN SELECT r.tbl, r.command, r.col, r.key_columns, r.last_key, pt.subject_column
               FROM privacy.reseal_jobs r
               JOIN privacy.protected_tables pt ON pt.tbl = r.tbl
              WHERE r.last_key IS NOT NULL AND pt.subject_column = ANY (r.key_columns)
              ORDER BY r.tbl::oid, r.command, r.col
                FOR UPDATE OF r
    LOOP
        match := privacy_internal.subject_match(j.tbl, j.subject_column, subject);
        SELECT string_agg(format('$%s::%s AS %I', o, pg_catalog.format_type(a.atttypid, a.atttypmod), k), ', ' ORDER BY o),
               string_agg(format('t.%I', k), ', ' ORDER BY o),
               string_agg(format('k.%I', k), ', ' ORDER BY o),
               string_agg(format('t.%I DESC', k), ', ' ORDER BY o),
               string_agg(format('t.%I IS NOT NULL', k), ' AND ' ORDER BY o)
          INTO typed, in_t, in_k, desc_t, not_null
          FROM unnest(j.key_columns) WITH ORDINALITY u(k, o)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = j.tbl AND a.attname = u.k AND NOT a.attisdropped;
        CONTINUE WHEN typed IS NULL OR privacy_internal.run_as_owner(j.tbl,
            format('SELECT FROM (SELECT %s) t WHERE %s', typed, match), j.last_key) = 0;
        rel := CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = j.tbl)
                    THEN 'ONLY ' ELSE '' END || j.tbl::text;
        UPDATE privacy.reseal_jobs r
           SET last_key = privacy_internal.run_as_owner_row(j.tbl,
                   format('SELECT %s FROM %s t, (SELECT %s) k WHERE (%s) < (%s) AND %s AND NOT (%s) ORDER BY %s LIMIT 1',
                          in_t, rel, typed, in_t, in_k, not_null, match, desc_t),
                   j.last_key),
               updated_at = pg_catalog.clock_timestamp()
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION privacy_internal.reseal_forget_subject(text) FROM PUBLIC;

CREATE FUNCTION privacy_internal.reseal_passed_over(tbl regclass, command text, left_over bigint) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
        MESSAGE = format('%s of %s left %s rows as they were, twice', command, tbl, left_over),
        DETAIL = 'A rule or a trigger of the table keeps the rows the reseal updates as they were: a BEFORE UPDATE trigger that skips unchanged rows and fires before privacy_seal_row (triggers fire in the order of their names), such as one running suppress_redundant_updates_trigger(), does.',
        HINT = 'Let that trigger fire after privacy_seal_row (rename it) or drop the rule, then CALL privacy.reseal() again; privacy.compliance_gaps() lists the table until then.';
END
$$;
REVOKE ALL ON FUNCTION privacy_internal.reseal_passed_over(regclass, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.reseal_passed_over(regclass, text, bigint) TO privacy_admin;

CREATE OR REPLACE FUNCTION privacy_internal.reseal_small(tbl regclass, command text, col name, at_most integer DEFAULT 1000)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    again boolean := false;
BEGIN
    IF command = 'protect_table' AND NOT privacy_internal.has_seal_trigger(tbl) THEN
        RETURN false;
    END IF;
    IF privacy_internal.run_as_owner(tbl, format('SELECT FROM %s%s LIMIT %s',
            CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN 'ONLY ' ELSE '' END,
            tbl, at_most + 1)) > at_most THEN
        RAISE NOTICE USING
            MESSAGE = format('%s holds more than %s rows: they are resealed online in batches', tbl, at_most),
            HINT = format('Run CALL privacy.reseal(%L); privacy.progress_reseal shows its progress.', tbl::text);
        RETURN false;
    END IF;
    LOOP
        n := privacy_internal.reseal_batch(tbl, command, col, at_most + 1);
        EXIT WHEN n IS NULL OR n = 0;
        IF n < 0 THEN
            IF again THEN
                PERFORM privacy_internal.reseal_passed_over(tbl, command, -n);
            END IF;
            again := true;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

CREATE OR REPLACE PROCEDURE privacy_internal.reseal_run(tbl regclass, command text, col name, batch_rows integer)
    LANGUAGE plpgsql
AS $$
DECLARE
    j record;
    n bigint;
    p record;
    again boolean;
BEGIN
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_rows must be at least 1';
    END IF;
    FOR j IN SELECT * FROM privacy_internal.reseal_pending(tbl, command, col) LOOP
        PERFORM privacy_internal.reseal_lock(j.tbl);
        COMMIT;
        again := false;
        LOOP
            BEGIN
                n := privacy_internal.reseal_batch(j.tbl, j.command, j.col, batch_rows);
                SELECT * INTO p FROM privacy.reseal_jobs r
                 WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                -- the batch is undone; the job waits for the next CALL
                PERFORM privacy_internal.reseal_unlock(j.tbl);
                RAISE;
            END;
            COMMIT;
            EXIT WHEN n IS NULL OR n = 0;
            IF n < 0 THEN
                -- rows passed over: once more from the beginning, then give up
                IF again THEN
                    PERFORM privacy_internal.reseal_unlock(j.tbl);
                    COMMIT;
                    PERFORM privacy_internal.reseal_passed_over(j.tbl, j.command, -n);
                END IF;
                again := true;
                RAISE NOTICE '% %: % rows were passed over (the table changed under the reseal, or a rule or trigger kept them as they were): going through it again',
                    j.command, j.tbl, -n;
                CONTINUE;
            END IF;
            RAISE NOTICE '% %: % of % rows covered, % resealed', j.command, j.tbl, p.rows_done, p.rows_total, p.rows_resealed;
        END LOOP;
        PERFORM privacy_internal.reseal_unlock(j.tbl);
        COMMIT;
        IF n IS NOT NULL THEN
            RAISE NOTICE '% %: done', j.command, j.tbl;
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    match text;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    erasure_id bigint;
    graph jsonb;
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

    -- a reseal under way keeps no trace of the subject's identifier; its
    -- job row is taken before the subject's rows, in the order a batch
    -- takes them (or the two would deadlock)
    PERFORM privacy_internal.reseal_forget_subject(subject);

    -- what follows depends on the foreign-key graph only: kept for the
    -- session until a relation of it changes (memo.c; issue #19)
    graph := privacy_internal.memo_get('erasure');
    IF graph IS NULL THEN
        -- the subject's rows, in every protected table (partitions and children
        -- through their root), tables before the tables they reference
        SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
        -- what the deletions can reach through ON DELETE actions, counted
        -- before and after (the transaction's own counters)
        SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
        -- references checked at commit are checked after each statement: the
        -- statements run in a security-restricted operation, where PostgreSQL
        -- fires no deferred trigger
        SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', ') INTO checked_at_commit
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
          JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
         WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
           AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
           AND c.condeferrable AND c.condeferred;
        graph := privacy_internal.memo_put('erasure', reach_rels, jsonb_build_object(
            'roots', roots::oid[], 'reach_rels', reach_rels, 'reach_roots', reach_roots::oid[],
            'checked_at_commit', checked_at_commit,
            'order', (SELECT coalesce(jsonb_agg(jsonb_build_array(o.tbl::oid, o.cycle, p.subject_column) ORDER BY o.pos), '[]')
                        FROM privacy_internal.fk_order(roots) o
                        JOIN privacy.protected_tables p ON p.tbl = o.tbl)));
    ELSE
        roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'roots') x);
        reach_rels := ARRAY(SELECT x::oid FROM jsonb_array_elements_text(graph -> 'reach_rels') x);
        reach_roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'reach_roots') x);
        checked_at_commit := graph ->> 'checked_at_commit';
    END IF;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT (o ->> 0)::oid::regclass AS tbl,
                         ARRAY(SELECT c::oid FROM jsonb_array_elements_text(nullif(o -> 1, 'null')) c) AS cycle,
                         (o ->> 2)::name AS subject_column
                    FROM jsonb_array_elements(graph -> 'order') WITH ORDINALITY AS x(o, pos)
                   ORDER BY x.pos
        LOOP
            IF cardinality(pt.cycle) > 0 THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, match));
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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
------------------------------------------------------------------------------
-- Issue #14 (scan-log): the access trail's index on the subject key alone,
-- deduplicated, a third of the size of one on (subject_key, seq), so that
-- the access log's writer inserts into pages in shared buffers at a million
-- subjects.  The trail's rows are kept as they are.
------------------------------------------------------------------------------
DROP INDEX privacy.access_log_trail_subject;
CREATE INDEX access_log_trail_subject ON privacy.access_log_trail (subject_key);

-- Issue #19, the regulator role (regulator2): the subject report is one
-- statement planned once a session, its access list PL/pgSQL (planned once,
-- not at every report), the portal's report a PL/pgSQL call,
-- privacy.access_trail() the subject's trail with a kept plan,
-- verify_erasure's lookups folded into a few statements
-- (sql/install/09_erasure.sql, 11_report.sql, 12_portal.sql).

CREATE OR REPLACE FUNCTION privacy_internal.subject_access_entries(hash bytea, own_pid integer, since timestamptz)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(x.entry ORDER BY x.seq), '[]')
      FROM (SELECT l.seq, jsonb_build_object(
                       'entry', l.seq, 'at', l.at, 'role', l.acting_role, 'session_role', l.session_role,
                       'application', l.application, 'purpose', l.purpose, 'command', l.command,
                       'table', l.relation,
                       'categories', to_jsonb(array_agg(DISTINCT s.category ORDER BY s.category)),
                       'values', sum(s.opened), 'outcome', l.outcome)
                   || CASE WHEN l.reason IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('reason', l.reason, 'denied_category', l.denied_category) END
                   AS entry
              FROM privacy_internal.access_log_for_subject(hash) s
              JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
             WHERE NOT (l.at >= since AND (coalesce(l.backend_pid = own_pid, false)
                                           OR (own_pid IS NULL AND l.purpose IS NOT DISTINCT FROM 'subject_access')))
             GROUP BY l.seq, l.at, l.acting_role, l.session_role, l.application, l.purpose,
                      l.command, l.relation, l.outcome, l.reason, l.denied_category) x);
END
$$;
CREATE OR REPLACE FUNCTION privacy.access_trail(subject text)
    RETURNS TABLE (entry bigint, at timestamptz, session_role text, acting_role text, application text,
                   purpose text, command text, relation text, category text, opened bigint,
                   outcome text, reason text, denied_category text)
    LANGUAGE plpgsql STABLE STRICT ROWS 10
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT l.seq, l.at, l.session_role, l.acting_role, l.application, l.purpose, l.command, l.relation,
           s.category, s.opened, l.outcome, l.reason, l.denied_category
      FROM privacy_internal.access_log_for_subject(privacy.subject_hash(access_trail.subject)) s
      JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true
     ORDER BY l.seq, s.category;
END
$$;
COMMENT ON FUNCTION privacy.access_trail(text) IS
    'the access log entries that opened a subject''s encrypted values, one row per statement and category, oldest first, read through the subject''s index range; runs as its caller';

REVOKE ALL ON FUNCTION privacy.access_trail(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.access_trail(text) TO privacy_officer;

CREATE OR REPLACE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET privacy.purpose = 'subject_access'
    SET bytea_output = 'hex'
    SET IntervalStyle = 'iso_8601'
    -- one subject's rows never need JIT, which the planner's guesses for the
    -- packed access log (1,000 entries per batch) would buy: 0.4 s a call
    SET jit = off
AS $$
DECLARE
    hash bytea;
    stand_in text;
    report jsonb;
    access jsonb;
    columns jsonb;
    column_rels oid[];
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');

    -- each protected table's columns as the report describes them: kept for
    -- the session until a table or the classification changes (memo.c)
    columns := privacy_internal.memo_get('report_columns');
    IF columns IS NULL THEN
        SELECT coalesce(jsonb_object_agg(p.tbl::oid::text,
                   (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'category', pc.category,
                                                        'encrypted', coalesce(pc.encrypted, false))
                                     ORDER BY a.attnum)
                      FROM pg_attribute a
                      LEFT JOIN privacy_internal.personal_columns pc ON pc.tbl = a.attrelid AND pc.col = a.attname
                     WHERE a.attrelid = p.tbl AND a.attnum > 0 AND NOT a.attisdropped)), '{}'),
               array_agg(p.tbl::oid)
          INTO columns, column_rels
          FROM privacy.protected_tables p WHERE p.parent IS NULL;
        columns := privacy_internal.memo_put('report_columns', column_rels, columns);
    END IF;

    -- One statement for the whole report, planned once a session (issue #19:
    -- a statement per list cost more than the lists).  The subject's rows,
    -- once per protected table (partitions through their root), in the
    -- tables' order: report_table() reads and logs them.
    --
    -- Every purpose, and whether it may use the subject's data now (the
    -- visibility rule: consent given, or no objection for other bases).
    --
    -- Consents and objections with their full history from the ledger.
    --
    -- Who opened the subject's encrypted values, when, why; never how many
    -- rows the statement read in all (that is about other subjects too).
    -- A statement refused after opening some of them (or shown some with
    -- others masked) is a denial, with its reason; one refused before it
    -- read a row names no subject and is in the access log only.  Never
    -- this call's own reads (the writer may store them before the query
    -- runs); earlier calls are listed.
    SELECT jsonb_build_object(
        'version', 1,
        'subject', subject,
        'generated_at', clock_timestamp(),
        'data', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'table', d.tbl::text,
                            'subject_column', d.subject_column,
                            'columns', columns -> (d.tbl::oid::text),
                            'retention', CASE WHEN d.action IS NULL THEN NULL ELSE jsonb_build_object(
                                'time_column', d.time_column, 'keep', d.keep, 'action', d.action,
                                'anonymize', (SELECT coalesce(jsonb_agg(c.col ORDER BY c.col), '[]')
                                                FROM jsonb_object_keys(d.anonymize) AS c(col))) END,
                            'rows', d.found_rows) ORDER BY d.o), '[]')
                   FROM (SELECT t.*, privacy_internal.report_table(t.tbl, t.subject_column, subject_report.subject,
                                                                   t.time_column, t.keep) AS found_rows
                           FROM (SELECT p.tbl, p.subject_column, r.time_column, r.keep, r.action, r.anonymize,
                                        row_number() OVER (ORDER BY p.tbl::text) AS o
                                   FROM privacy.protected_tables p
                                   LEFT JOIN privacy.retention_rules r ON r.tbl = p.tbl
                                  WHERE p.parent IS NULL
                                  ORDER BY p.tbl::text OFFSET 0) t) d
                  WHERE jsonb_array_length(d.found_rows) > 0),
        'purposes', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'purpose', p.name, 'legal_basis', p.legal_basis, 'description', p.description,
                                'categories', CASE WHEN p.name = 'subject_access'
                                                   THEN (SELECT coalesce(jsonb_agg(c.name ORDER BY c.name), '[]') FROM privacy.categories c)
                                                   ELSE (SELECT coalesce(jsonb_agg(pc.category ORDER BY pc.category), '[]')
                                                           FROM privacy.purpose_categories pc WHERE pc.purpose = p.name) END,
                                'state', cs.state, 'since', cs.since,
                                'in_effect', CASE WHEN p.legal_basis = 'consent' THEN coalesce(cs.state = 'granted', false)
                                                  ELSE cs.state IS DISTINCT FROM 'objected' END)
                              ORDER BY p.name), '[]')
                       FROM privacy.purposes p
                       LEFT JOIN privacy.consent_state cs ON cs.purpose = p.name AND cs.subject = subject_report.subject),
        'consents', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'purpose', g.purpose, 'legal_basis', p.legal_basis, 'state', cs.state, 'since', cs.since,
                                'history', g.history)
                              ORDER BY g.purpose), '[]')
                       FROM (SELECT e.purpose,
                                    jsonb_agg(jsonb_build_object('event', e.id, 'action', e.action, 'at', e.at,
                                                                 'source', e.source, 'evidence', e.evidence,
                                                                 'recorded_by', e.recorded_by) ORDER BY e.id) AS history
                               FROM privacy.consent_events e
                              WHERE e.subject IN (subject_report.subject, stand_in)
                              GROUP BY e.purpose) g
                       JOIN privacy.purposes p ON p.name = g.purpose
                       LEFT JOIN privacy.consent_state cs ON cs.purpose = g.purpose AND cs.subject = subject_report.subject),
        'access', privacy_internal.subject_access_entries(hash, pg_catalog.pg_backend_pid(),
                                                          pg_catalog.statement_timestamp()),
        'holds', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'placed_at', h.placed_at, 'until', h.until, 'released_at', h.released_at,
                             'active', h.released_at IS NULL AND (h.until IS NULL OR h.until > now()))
                           ORDER BY h.placed_at, h.id), '[]')
                    FROM privacy.holds h
                   WHERE h.subject IN (subject_report.subject, stand_in)),
        'erasures', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'erasure', e.id, 'erased_at', e.erased_at, 'reason', e.reason,
                                'tables', e.tables, 'keys_destroyed', e.keys_destroyed)
                              ORDER BY e.id), '[]')
                       FROM privacy.erasures e
                      WHERE e.subject_hash = hash),
        'requests', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'request', r.id, 'kind', r.kind, 'status', r.status,
                                'open', r.status IN ('open', 'in_progress', 'extended'),
                                'received_at', r.received_at, 'due_at', r.due_at, 'deadline', r.deadline,
                                'extended_until', r.extended_until, 'extension_reason', r.extension_reason,
                                'closed_at', r.closed_at, 'resolution', r.resolution)
                              ORDER BY r.id), '[]')
                       FROM privacy.requests r
                      WHERE r.subject_hash = hash))
      INTO report;

    -- On a Citus coordinator, the values of distributed tables are opened
    -- on the workers, which log them in their own chains: their entries
    -- come too, each naming its node, in one list, oldest first (the
    -- coordinator's entries name no node).
    IF privacy_internal.citus_local_group() = 0 THEN
        SELECT coalesce(jsonb_agg(a.e ORDER BY (a.e ->> 'at')::timestamptz, a.e ->> 'node' NULLS FIRST,
                                  (a.e ->> 'entry')::bigint), '[]')
          INTO access
          FROM (SELECT e FROM jsonb_array_elements(report -> 'access') e
                UNION ALL
                SELECT e0 || jsonb_build_object('node', w.nodename || ':' || w.nodeport)
                  FROM pg_catalog.run_command_on_workers(format(
                           'SELECT privacy_internal.subject_access_entries(%L::bytea, NULL, %L::timestamptz)',
                           hash, pg_catalog.statement_timestamp())) w
                 CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN w.success THEN w.result::jsonb
                                                              ELSE '[]' END) e0) a(e);
        report := jsonb_set(report, '{access}', access);
    END IF;
    RETURN report;
END
$$;
CREATE OR REPLACE FUNCTION privacy.portal_report() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy.subject_report(privacy_internal.portal_subject()); END $$;
CREATE OR REPLACE FUNCTION privacy_internal.subject_param_match(tbl regclass, subject_column name) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT CASE WHEN a.atttypid IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                        THEN format('t.%I = privacy_internal.subject_int8($1)', subject_param_match.subject_column)
                        ELSE format('t.%I::pg_catalog.text = $1', subject_param_match.subject_column) END
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = subject_param_match.tbl AND a.attname = subject_param_match.subject_column);
END
$$;
CREATE OR REPLACE FUNCTION privacy.verify_erasure(subject text) RETURNS jsonb
    LANGUAGE plpgsql STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pt record;
    fate record;
    match text;
    hash bytea;
    n bigint;
    leftover jsonb := '{}';
    rows_left jsonb := '{}';
    values_left jsonb := '{}';
    tags_left jsonb := '{}';
    kept jsonb := '{}';
    remnant text;
    tagged text;
    erasure_id bigint;
    keys_left bigint;
    state_left bigint;
    events_left bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    hash := privacy.subject_hash(subject);
    -- the subject a parameter: each statement planned once a session; the
    -- erasure's action asked only of tables whose rule may anonymize (any
    -- other's rows are deleted: erasure_action)
    FOR pt IN SELECT p.tbl, p.subject_column,
                     privacy_internal.subject_param_match(p.tbl, p.subject_column) AS match,
                     r.action IS NOT DISTINCT FROM 'anonymize' AS may_keep
                FROM privacy.protected_tables p
                LEFT JOIN privacy.retention_rules r ON r.tbl = p.tbl
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        match := pt.match;
        n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s', pt.tbl, match),
                                           ARRAY[subject]);
        CONTINUE WHEN n = 0;
        IF NOT pt.may_keep THEN
            rows_left := rows_left || jsonb_build_object(pt.tbl::text, n);
            CONTINUE;
        END IF;
        SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
        IF fate.action <> 'anonymized' THEN
            rows_left := rows_left || jsonb_build_object(pt.tbl::text, n);
            CONTINUE;
        END IF;
        kept := kept || jsonb_build_object(pt.tbl::text, n);
        -- kept rows: what the erasure clears must be cleared
        SELECT string_agg(CASE c.what WHEN 'null' THEN format('t.%I IS NOT NULL', c.col)
                                      WHEN 'masked' THEN format('t.%I::pg_catalog.text IS DISTINCT FROM %L', c.col,
                                                                r.anonymize ->> c.col)
                                      ELSE format('NOT privacy.is_erased(t.%I)', c.col) END, ' OR '),
               string_agg(format('privacy_internal.live_search_tag(t.%I)', c.col), ' OR ')
                   FILTER (WHERE c.what = 'shredded')
          INTO remnant, tagged
          FROM jsonb_each_text(fate.columns) AS c(col, what), privacy.retention_rules r
         WHERE r.tbl = pt.tbl;
        IF remnant IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, remnant),
                                               ARRAY[subject]);
            IF n > 0 THEN
                values_left := values_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
        IF tagged IS NOT NULL THEN
            n := privacy_internal.run_as_owner(pt.tbl, format('SELECT 1 FROM %s t WHERE %s AND (%s)', pt.tbl, match, tagged),
                                               ARRAY[subject]);
            IF n > 0 THEN
                tags_left := tags_left || jsonb_build_object(pt.tbl::text, n);
            END IF;
        END IF;
    END LOOP;
    IF rows_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('rows', rows_left);
    END IF;
    IF values_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('values', values_left);
    END IF;
    IF tags_left <> '{}' THEN
        leftover := leftover || jsonb_build_object('search_tags', tags_left);
    END IF;
    -- the rest in one statement.  Keys: one arm per partial index (as
    -- destroy_subject_key): state <> 'destroyed' matches neither, and
    -- scanned every key (issue #19)
    SELECT (SELECT count(*) FROM privacy.data_keys k
             WHERE k.scope = 'subject' AND k.subject_hash = hash
               AND (k.state = 'active' OR k.state = 'retired')),
           (SELECT count(*) FROM privacy.consent_state cs WHERE cs.subject = verify_erasure.subject),
           (SELECT count(*) FROM privacy.consent_events e WHERE e.subject = verify_erasure.subject),
           (SELECT max(e.id) FROM privacy.erasures e WHERE e.subject_hash = hash)
      INTO keys_left, state_left, events_left, erasure_id;
    IF keys_left > 0 THEN
        leftover := leftover || jsonb_build_object('keys', keys_left);
    END IF;
    IF state_left > 0 THEN
        leftover := leftover || jsonb_build_object('consent_state', state_left);
    END IF;
    IF events_left > 0 THEN
        leftover := leftover || jsonb_build_object('consent_events', events_left);
    END IF;
    RETURN jsonb_build_object('subject_hash', encode(hash, 'hex'), 'erasure', erasure_id,
                              'verified', leftover = '{}', 'left', leftover, 'kept', kept,
                              'checked_at', clock_timestamp());
END
$$;

-- ---------------------------------------------------------------------------
-- review3 (review of the caches and shortcuts of #19 and #14)
-- ---------------------------------------------------------------------------
-- An erasure also moves a reseal job's position off a row of the subject's
-- when the batches follow a primary key of the table's own (06_reseal.sql).
-- An erasure leaves no trace of the subject's identifier in a job: when a
-- table's batches follow its subject column (a table without a primary
-- key, or one whose key holds the subject column), the key where the last
-- batch stopped may be the erased subject's; when they follow a primary
-- key of the table's own (a line's number), it may be the key of one of
-- the subject's rows, as personal as the identifier.  The position moves back to
-- the greatest key below it that is not the subject's (the rows in between
-- are the subject's, covered already), or to the beginning.  Called by
-- erase_subject before it deletes the subject's rows: a batch locks its job
-- row, then its rows, and so does the erasure (jobs in one order, for two
-- erasures at once).  The key values cross as in reseal_batch.
CREATE OR REPLACE FUNCTION privacy_internal.reseal_forget_subject(subject text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET extra_float_digits = 3
AS $$
DECLARE
    j record;
    match text;
    typed text;
    in_t text;
    in_k text;
    desc_t text;
    not_null text;
    rel text;
BEGIN
    FOR j IN SELECT r.tbl, r.command, r.col, r.key_columns, r.last_key, pt.subject_column
               FROM privacy.reseal_jobs r
               JOIN privacy.protected_tables pt ON pt.tbl = r.tbl
              WHERE r.last_key IS NOT NULL
              ORDER BY r.tbl::oid, r.command, r.col
                FOR UPDATE OF r
    LOOP
        match := privacy_internal.subject_match(j.tbl, j.subject_column, subject);
        rel := CASE WHEN (SELECT c.relhassubclass FROM pg_catalog.pg_class c WHERE c.oid = j.tbl)
                    THEN 'ONLY ' ELSE '' END || j.tbl::text;
        SELECT string_agg(format('$%s::%s AS %I', o, pg_catalog.format_type(a.atttypid, a.atttypmod), k), ', ' ORDER BY o),
               string_agg(format('t.%I', k), ', ' ORDER BY o),
               string_agg(format('k.%I', k), ', ' ORDER BY o),
               string_agg(format('t.%I DESC', k), ', ' ORDER BY o),
               string_agg(format('t.%I IS NOT NULL', k), ' AND ' ORDER BY o)
          INTO typed, in_t, in_k, desc_t, not_null
          FROM unnest(j.key_columns) WITH ORDINALITY u(k, o)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = j.tbl AND a.attname = u.k AND NOT a.attisdropped;
        -- the key names the subject, or (a primary key of its own, such as
        -- a line's number) is the key of a row of the subject's, which the
        -- erasure is about to delete or anonymize
        CONTINUE WHEN typed IS NULL OR privacy_internal.run_as_owner(j.tbl,
            CASE WHEN j.subject_column = ANY (j.key_columns)
                 THEN format('SELECT FROM (SELECT %s) t WHERE %s', typed, match)
                 ELSE format('SELECT FROM %s t, (SELECT %s) k WHERE (%s) = (%s) AND %s', rel, typed, in_t, in_k, match)
            END, j.last_key) = 0;
        UPDATE privacy.reseal_jobs r
           SET last_key = privacy_internal.run_as_owner_row(j.tbl,
                   format('SELECT %s FROM %s t, (SELECT %s) k WHERE (%s) < (%s) AND %s AND NOT (%s) ORDER BY %s LIMIT 1',
                          in_t, rel, typed, in_t, in_k, not_null, match, desc_t),
                   j.last_key),
               updated_at = pg_catalog.clock_timestamp()
         WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
    END LOOP;
END
$$;

-- erase_subject keeps its graph until the tables of the constraints it
-- names for SET CONSTRAINTS change too (09_erasure.sql).
CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    match text;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    erasure_id bigint;
    graph jsonb;
    named_rels oid[];
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

    -- a reseal under way keeps no trace of the subject's identifier; its
    -- job row is taken before the subject's rows, in the order a batch
    -- takes them (or the two would deadlock)
    PERFORM privacy_internal.reseal_forget_subject(subject);

    -- what follows depends on the foreign-key graph only: kept for the
    -- session until a relation of it changes (memo.c; issue #19)
    graph := privacy_internal.memo_get('erasure');
    IF graph IS NULL THEN
        -- the subject's rows, in every protected table (partitions and children
        -- through their root), tables before the tables they reference
        SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
        -- what the deletions can reach through ON DELETE actions, counted
        -- before and after (the transaction's own counters)
        SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
        -- references checked at commit are checked after each statement: the
        -- statements run in a security-restricted operation, where PostgreSQL
        -- fires no deferred trigger
        SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', '), array_agg(DISTINCT c.conrelid)
          INTO checked_at_commit, named_rels
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
          JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
         WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
           AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
           AND c.condeferrable AND c.condeferred;
        -- (kept until those constraints' tables change too: a constraint
        -- renamed or moved is named anew)
        graph := privacy_internal.memo_put('erasure', reach_rels || named_rels, jsonb_build_object(
            'roots', roots::oid[], 'reach_rels', reach_rels, 'reach_roots', reach_roots::oid[],
            'checked_at_commit', checked_at_commit,
            'order', (SELECT coalesce(jsonb_agg(jsonb_build_array(o.tbl::oid, o.cycle, p.subject_column) ORDER BY o.pos), '[]')
                        FROM privacy_internal.fk_order(roots) o
                        JOIN privacy.protected_tables p ON p.tbl = o.tbl)));
    ELSE
        roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'roots') x);
        reach_rels := ARRAY(SELECT x::oid FROM jsonb_array_elements_text(graph -> 'reach_rels') x);
        reach_roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'reach_roots') x);
        checked_at_commit := graph ->> 'checked_at_commit';
    END IF;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT (o ->> 0)::oid::regclass AS tbl,
                         ARRAY(SELECT c::oid FROM jsonb_array_elements_text(nullif(o -> 1, 'null')) c) AS cycle,
                         (o ->> 2)::name AS subject_column
                    FROM jsonb_array_elements(graph -> 'order') WITH ORDINALITY AS x(o, pos)
                   ORDER BY x.pos
        LOOP
            IF cardinality(pt.cycle) > 0 THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            match := privacy_internal.subject_match(pt.tbl, pt.subject_column, subject);
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, match));
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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


------------------------------------------------------------------------------
-- Issue #14 (newkeys): the reseal's throttle, privacy.reseal_delay (a pause
-- after each committed batch of CALL privacy.reseal() and reencrypt()), and
-- protect_one's single ALTER TABLE (the event triggers fire once under the
-- ACCESS EXCLUSIVE lock, not twice)
------------------------------------------------------------------------------
CREATE OR REPLACE PROCEDURE privacy_internal.reseal_run(tbl regclass, command text, col name, batch_rows integer)
    LANGUAGE plpgsql
AS $$
DECLARE
    j record;
    n bigint;
    p record;
    again boolean;
    pause interval;
BEGIN
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_rows must be at least 1';
    END IF;
    FOR j IN SELECT * FROM privacy_internal.reseal_pending(tbl, command, col) LOOP
        PERFORM privacy_internal.reseal_lock(j.tbl);
        COMMIT;
        again := false;
        LOOP
            BEGIN
                n := privacy_internal.reseal_batch(j.tbl, j.command, j.col, batch_rows);
                SELECT * INTO p FROM privacy.reseal_jobs r
                 WHERE r.tbl = j.tbl AND r.command = j.command AND r.col IS NOT DISTINCT FROM j.col;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                -- the batch is undone; the job waits for the next CALL
                PERFORM privacy_internal.reseal_unlock(j.tbl);
                RAISE;
            END;
            COMMIT;
            EXIT WHEN n IS NULL OR n = 0;
            IF n < 0 THEN
                -- rows passed over: once more from the beginning, then give up
                IF again THEN
                    PERFORM privacy_internal.reseal_unlock(j.tbl);
                    COMMIT;
                    PERFORM privacy_internal.reseal_passed_over(j.tbl, j.command, -n);
                END IF;
                again := true;
                RAISE NOTICE '% %: % rows were passed over (the table changed under the reseal, or a rule or trigger kept them as they were): going through it again',
                    j.command, j.tbl, -n;
                CONTINUE;
            END IF;
            RAISE NOTICE '% %: % of % rows covered, % resealed', j.command, j.tbl, p.rows_done, p.rows_total, p.rows_resealed;
            -- the throttle: a pause between committed batches, in which
            -- the application has the processor and the disk to itself
            pause := pg_catalog.current_setting('privacy.reseal_delay')::interval;
            IF pause > interval '0' THEN
                PERFORM pg_catalog.pg_sleep_for(pause);
            END IF;
        END LOOP;
        PERFORM privacy_internal.reseal_unlock(j.tbl);
        COMMIT;
        IF n IS NOT NULL THEN
            RAISE NOTICE '% %: done', j.command, j.tbl;
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


------------------------------------------------------------------------------
-- Issue #19, the write paths of the controller and the customer (branch
-- gdpr-writes): a purge with nothing due is one transaction and builds no
-- batch; consent calls pass one SECURITY DEFINER layer, in PL/pgSQL (plans
-- kept); erasure's statements on users' tables take the subject as a
-- parameter (plans kept)
------------------------------------------------------------------------------
-- the runs still marked running (at most a few): every purge looks for them
CREATE INDEX purge_runs_running ON privacy.purge_runs (id) WHERE outcome = 'running';

CREATE OR REPLACE FUNCTION privacy_internal.purge_start(batch_size integer, time_budget interval, via text, caller name) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run bigint;
    r privacy.retention_rules;
    p record;
    subject name;
    cutoff timestamptz := now();
    due bigint;
    held bigint;
    live integer;
    origin record;
    prev bigint;
    first integer;
    total integer;
    plan jsonb;
    cycle_error text;
    tables regclass[];
    memo jsonb;
    pending boolean := false;
BEGIN
    SELECT o.via, o.started_by INTO origin
      FROM privacy_internal.purge_origin(purge_start.via, purge_start.caller) o;
    -- one purge at a time: a run is live while its backend is busy with it;
    -- one left behind by a crash, a cancel or a terminate is interrupted
    PERFORM pg_advisory_xact_lock(hashtext('privacy.purge'));
    -- (the activity of every backend is read only when a run is marked running)
    IF EXISTS (SELECT 1 FROM privacy.purge_runs pr WHERE pr.outcome = 'running') THEN
        SELECT pr.pid INTO live FROM privacy.purge_runs pr
          JOIN pg_catalog.pg_stat_activity a ON a.pid = pr.pid
         WHERE pr.outcome = 'running' AND a.state = 'active' AND a.pid <> pg_backend_pid()
         LIMIT 1;
        IF live IS NOT NULL THEN
            RETURN NULL;
        END IF;
        -- the locks of this backend's runs that ended without purge_finish
        PERFORM pg_advisory_unlock(1886549625, l.objid::integer) FROM pg_catalog.pg_locks l
          JOIN privacy.purge_runs pr ON privacy_internal.purge_lock_key(pr.id) = l.objid::integer
         WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.classid = 1886549625
           AND l.objsubid = 2 AND pr.outcome = 'running';
        UPDATE privacy.purge_runs pr SET outcome = 'interrupted', finished_at = coalesce(pr.finished_at, clock_timestamp())
         WHERE pr.outcome = 'running';
    END IF;
    -- the last run, if it left tables pending: this one starts with them
    SELECT pr.id INTO prev FROM privacy.purge_runs pr ORDER BY pr.id DESC LIMIT 1;
    IF NOT EXISTS (SELECT 1 FROM privacy.purge_run_tables prt WHERE prt.run_id = prev AND prt.status = 'pending') THEN
        prev := NULL;
    END IF;
    INSERT INTO privacy.purge_runs (batch_size, time_budget, via, started_by, pid, resumes)
    VALUES (batch_size, time_budget, origin.via, origin.started_by, pg_backend_pid(), prev)
    RETURNING id INTO run;
    -- the order depends on the foreign-key graph of the tables with a rule:
    -- kept for the session (memo.c) while those tables are the same and no
    -- relation it was derived from changes
    tables := ARRAY(SELECT rr.tbl FROM privacy.retention_rules rr
                      JOIN privacy.protected_tables pt ON pt.tbl = rr.tbl AND pt.parent IS NULL
                     ORDER BY rr.tbl::oid);
    memo := privacy_internal.memo_get('purge');
    IF memo IS NOT NULL AND memo -> 'tables' = to_jsonb(tables::oid[]) THEN
        plan := nullif(memo -> 'plan', 'null');
    ELSE
        SELECT jsonb_agg(jsonb_build_object('tbl', o.tbl::oid, 'pos', o.pos, 'cycle', o.cycle) ORDER BY o.pos)
          INTO plan
          FROM privacy_internal.fk_order(tables) o;
        PERFORM privacy_internal.memo_put('purge', ARRAY(SELECT x.rel FROM privacy_internal.fk_reach(tables) x),
                                          jsonb_build_object('tables', to_jsonb(tables::oid[]), 'plan', plan));
    END IF;
    SELECT min((e ->> 'pos')::integer) INTO first
      FROM jsonb_array_elements(plan) e
      JOIN privacy.purge_run_tables prt ON prt.run_id = prev AND prt.tbl = (e ->> 'tbl')::oid::regclass
                                       AND prt.status = 'pending';
    total := coalesce(jsonb_array_length(plan), 0);
    FOR p IN SELECT (e ->> 'tbl')::oid::regclass AS tbl,
                    ARRAY(SELECT x::oid FROM jsonb_array_elements_text(nullif(e -> 'cycle', 'null')) x) AS cycle,
                    ((e ->> 'pos')::integer - coalesce(first, 1) + total) % total + 1 AS pos
               FROM jsonb_array_elements(plan) e LOOP
        SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = p.tbl;
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
        cycle_error := NULL;
        IF cardinality(p.cycle) > 0 THEN
            SELECT format('55000: %s. %s', e.message, e.detail) INTO cycle_error
              FROM privacy_internal.fk_cycle_error(p.cycle, 'purge') e;
        END IF;
        -- a table with nothing due is done at once: no batch, no statement
        -- built for it (what becomes due later is counted by the next run)
        INSERT INTO privacy.purge_run_tables (run_id, tbl, action, cutoff, matched, held, position, status, error)
        VALUES (run, r.tbl, r.action, cutoff - r.keep, due, held, p.pos,
                CASE WHEN cycle_error IS NOT NULL THEN 'failed' WHEN due = 0 THEN 'done' ELSE 'pending' END,
                cycle_error);
        pending := pending OR (cycle_error IS NULL AND due > 0);
    END LOOP;
    IF pending THEN
        PERFORM pg_advisory_lock(1886549625, privacy_internal.purge_lock_key(run));
    ELSE
        -- nothing to do: the run ends in this transaction
        PERFORM privacy_internal.purge_end(run, 'completed', NULL);
    END IF;
    RETURN run;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.purge_tables(run bigint) RETURNS SETOF regclass
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT prt.tbl FROM privacy.purge_run_tables prt
                  WHERE prt.run_id = purge_tables.run AND prt.status = 'pending' ORDER BY prt.position;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.purge_end(run bigint, outcome text, error text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failed text;
BEGIN
    -- a run that waits for this one starts after this commits (purge_start)
    PERFORM pg_advisory_xact_lock(hashtext('privacy.purge'));
    SELECT format('%s of %s tables failed: %s', count(*) FILTER (WHERE prt.status = 'failed'),
                  count(*) FILTER (WHERE prt.position IS NOT NULL),
                  string_agg(prt.tbl::text, ', ' ORDER BY prt.position) FILTER (WHERE prt.status = 'failed'))
      INTO failed FROM privacy.purge_run_tables prt WHERE prt.run_id = run
    HAVING count(*) FILTER (WHERE prt.status = 'failed') > 0;
    UPDATE privacy.purge_runs pr
       SET outcome = CASE WHEN purge_end.outcome = 'completed' AND failed IS NOT NULL THEN 'failed'
                          ELSE purge_end.outcome END,
           error = nullif(concat_ws('; ', purge_end.error, failed), ''),
           finished_at = clock_timestamp()
     WHERE pr.id = run;
END
$$;

CREATE OR REPLACE FUNCTION privacy_internal.purge_finish(run bigint, outcome text, error text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.purge_end(run, outcome, error);
    PERFORM pg_advisory_unlock(1886549625, l.objid::integer) FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.classid = 1886549625
       AND l.objid::integer = privacy_internal.purge_lock_key(run) AND l.objsubid = 2;
END
$$;

CREATE OR REPLACE PROCEDURE privacy.purge(batch_size integer DEFAULT 10000, time_budget interval DEFAULT NULL,
                               via text DEFAULT 'call', if_running text DEFAULT 'skip')
    LANGUAGE plpgsql
AS $$
DECLARE
    run bigint;
    tables regclass[];
    tab regclass;
    n bigint;
    total bigint := 0;
    trimmed bigint;
    batches integer := 0;
    started timestamptz;
    failure text;
    out_of_time boolean := false;
    failed record;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_size must be at least 1';
    END IF;
    IF if_running IS NULL OR if_running NOT IN ('skip', 'wait') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid if_running %s', coalesce(quote_literal(if_running), 'NULL')),
            HINT = 'Use skip (do nothing while another purge runs, the default) or wait (wait for it to end, then run).';
    END IF;
    LOOP
        IF if_running = 'wait' THEN
            PERFORM privacy_internal.purge_wait();
            COMMIT;
        END IF;
        run := privacy_internal.purge_start(batch_size, time_budget, via, current_user);
        EXIT WHEN run IS NOT NULL;
        COMMIT;
        IF if_running = 'skip' THEN
            RAISE NOTICE USING MESSAGE = 'another purge is running in this database: this one does nothing',
                HINT = 'privacy.purge_progress shows it; CALL privacy.purge(if_running => ''wait'') waits for it to end.';
            RETURN;
        END IF;
    END LOOP;
    -- a run with no table to do ended in purge_start: one transaction
    tables := ARRAY(SELECT pt.tbl FROM privacy_internal.purge_tables(run) pt(tbl));
    COMMIT;
    -- the time budget counts from here, not from a wait
    started := pg_catalog.clock_timestamp();
    FOREACH tab IN ARRAY tables LOOP
        LOOP
            IF time_budget IS NOT NULL AND pg_catalog.clock_timestamp() - started > time_budget THEN
                out_of_time := true;
                EXIT;
            END IF;
            BEGIN
                n := privacy_internal.purge_batch(run, tab, batch_size);
            EXCEPTION WHEN OTHERS THEN
                failure := SQLSTATE || ': ' || SQLERRM;
            END;
            IF failure IS NOT NULL THEN
                EXIT;
            END IF;
            COMMIT;
            total := total + n;
            batches := batches + 1;
            IF batches % 10 = 0 THEN
                RAISE NOTICE 'purge run %: % rows purged so far (table %)', run, total, tab;
            END IF;
            EXIT WHEN n < batch_size;
        END LOOP;
        EXIT WHEN failure IS NOT NULL OR out_of_time;
    END LOOP;
    IF cardinality(tables) > 0 THEN
        PERFORM privacy_internal.purge_finish(run, CASE WHEN failure IS NOT NULL THEN 'failed'
                                                        WHEN out_of_time THEN 'stopped' ELSE 'completed' END, failure);
        COMMIT;
    END IF;
    -- the access log's own retention
    trimmed := privacy.trim_access_log();
    IF trimmed > 0 THEN
        RAISE NOTICE 'access log: % entries past privacy.access_log_retention removed', trimmed;
    END IF;
    COMMIT;
    SELECT count(*) AS n, string_agg(format('%s: %s', prt.tbl, prt.error), E'\n' ORDER BY prt.position) AS errors
      INTO failed FROM privacy.purge_run_tables prt WHERE prt.run_id = run AND prt.status = 'failed';
    IF failure IS NOT NULL OR failed.n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'external_routine_exception',
            MESSAGE = CASE WHEN failure IS NOT NULL THEN format('purge run %s failed', run)
                           ELSE format('purge run %s failed for %s of its tables', run, failed.n) END,
            DETAIL = concat_ws(E'\n', failure, failed.errors),
            HINT = 'The other tables were purged, and the batches committed before a failure stay done; privacy.purge_run_tables says what failed. The next run tries again.';
    END IF;
    RAISE NOTICE 'purge run % %: % rows purged', run,
        CASE WHEN out_of_time THEN 'stopped at its time budget' ELSE 'completed' END, total;
END
$$;

REVOKE ALL ON FUNCTION privacy_internal.purge_end(bigint, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION privacy_internal.record_consent(subject text, purpose text, action text,
                                        source text, evidence jsonb) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    basis text;
    new_state text := CASE action WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END;
    event_id bigint;
    current_state text;
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
    -- Lifting an objection: only one in force, and what is left is no
    -- objection and no consent (a purpose based on consent needs a new
    -- grant): withdrawn for those, no state at all for the others.
    IF action = 'lift_objection' THEN
        SELECT cs.state INTO current_state FROM privacy.consent_state cs
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject
           FOR UPDATE;
        IF current_state IS DISTINCT FROM 'objected' THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('subject has no objection to purpose "%s" to lift', purpose),
                DETAIL  = CASE WHEN current_state IS NULL
                               THEN 'Nothing was recorded for the subject and the purpose.'
                               ELSE format('The subject''s state for the purpose is %s.', current_state) END,
                HINT    = 'See the subject''s consent history in privacy.consent_events.';
        END IF;
        INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
        VALUES (subject, purpose, action, source, evidence)
        RETURNING id INTO event_id;
        IF basis = 'consent' THEN
            UPDATE privacy.consent_state cs SET state = 'withdrawn', since = clock_timestamp(), last_event = event_id
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        ELSE
            DELETE FROM privacy.consent_state cs
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        END IF;
        RETURN event_id;
    END IF;
    -- The state row is locked first, so concurrent events for one subject and
    -- purpose reach the ledger in the order they take effect: the ledger id
    -- is drawn once the row is locked (in DO UPDATE, for a subject with a
    -- state; after the insert, for a new one), and a state row that exists
    -- is written once per event.
    INSERT INTO privacy.consent_state AS cs (subject, purpose, state, since, last_event)
    VALUES (subject, purpose, new_state, clock_timestamp(), 0)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE
       SET state = EXCLUDED.state,
           since = CASE WHEN cs.state = EXCLUDED.state THEN cs.since ELSE EXCLUDED.since END,
           last_event = pg_catalog.nextval('privacy.consent_event_id_seq')
    RETURNING cs.last_event INTO event_id;
    IF event_id = 0 THEN
        event_id := pg_catalog.nextval('privacy.consent_event_id_seq');
        UPDATE privacy.consent_state cs SET last_event = event_id
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
    END IF;
    INSERT INTO privacy.consent_events (id, subject, purpose, action, source, evidence)
    VALUES (event_id, subject, purpose, action, source, evidence);
    RETURN event_id;
END
$$;

CREATE OR REPLACE FUNCTION privacy.grant_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'grant', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.withdraw_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'withdraw', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.object(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'object', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.lift_objection(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'lift_objection', source, evidence); END $$;

CREATE OR REPLACE FUNCTION privacy.portal_grant_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'grant', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.portal_withdraw_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'withdraw', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.portal_object(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'object', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.portal_lift_objection(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'lift_objection', source, evidence); END $$;
CREATE OR REPLACE FUNCTION privacy.portal_open_request(kind text, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy.open_request(privacy_internal.portal_subject(), kind, pg_catalog.now(), note); END $$;

CREATE OR REPLACE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET track_counts = on
AS $$
DECLARE
    hold record;
    pt record;
    fate record;
    n bigint;
    done jsonb := '{}';
    roots regclass[];
    reach_rels oid[];
    reach_roots regclass[];
    before jsonb;
    ch record;
    checked_at_commit text;
    current regclass;
    cycle_error record;
    blocked record;
    con oid;
    con_name text;
    tab_name text;
    sch_name text;
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    graph jsonb;
    named_rels oid[];
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

    -- a reseal under way keeps no trace of the subject's identifier; its
    -- job row is taken before the subject's rows, in the order a batch
    -- takes them (or the two would deadlock)
    PERFORM privacy_internal.reseal_forget_subject(subject);

    -- what follows depends on the foreign-key graph only: kept for the
    -- session until a relation of it changes (memo.c; issue #19)
    graph := privacy_internal.memo_get('erasure');
    IF graph IS NULL THEN
        -- the subject's rows, in every protected table (partitions and children
        -- through their root), tables before the tables they reference
        SELECT array_agg(p.tbl) INTO roots FROM privacy.protected_tables p WHERE p.parent IS NULL;
        -- what the deletions can reach through ON DELETE actions, counted
        -- before and after (the transaction's own counters)
        SELECT array_agg(x.rel), array_agg(x.root) INTO reach_rels, reach_roots FROM privacy_internal.fk_reach(roots) x;
        -- references checked at commit are checked after each statement: the
        -- statements run in a security-restricted operation, where PostgreSQL
        -- fires no deferred trigger
        SELECT string_agg(DISTINCT format('%I.%I', ns.nspname, c.conname), ', '), array_agg(DISTINCT c.conrelid)
          INTO checked_at_commit, named_rels
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
          JOIN pg_catalog.pg_class k ON k.oid = c.conrelid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = k.relnamespace
         WHERE d.classid = 'pg_catalog.pg_constraint'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
           AND d.refobjid = ANY (reach_rels) AND c.contype = 'f' AND c.confrelid = d.refobjid
           AND c.condeferrable AND c.condeferred;
        -- (kept until those constraints' tables change too: a constraint
        -- renamed or moved is named anew)
        graph := privacy_internal.memo_put('erasure', reach_rels || named_rels, jsonb_build_object(
            'roots', roots::oid[], 'reach_rels', reach_rels, 'reach_roots', reach_roots::oid[],
            'checked_at_commit', checked_at_commit,
            'order', (SELECT coalesce(jsonb_agg(jsonb_build_array(o.tbl::oid, o.cycle, p.subject_column,
                                                                  privacy_internal.subject_param_match(o.tbl, p.subject_column))
                                                ORDER BY o.pos), '[]')
                        FROM privacy_internal.fk_order(roots) o
                        JOIN privacy.protected_tables p ON p.tbl = o.tbl)));
    ELSE
        roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'roots') x);
        reach_rels := ARRAY(SELECT x::oid FROM jsonb_array_elements_text(graph -> 'reach_rels') x);
        reach_roots := ARRAY(SELECT x::oid::regclass FROM jsonb_array_elements_text(graph -> 'reach_roots') x);
        checked_at_commit := graph ->> 'checked_at_commit';
    END IF;
    before := privacy_internal.change_counts(reach_rels);
    BEGIN
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' IMMEDIATE';
        END IF;
        FOR pt IN SELECT (o ->> 0)::oid::regclass AS tbl,
                         ARRAY(SELECT c::oid FROM jsonb_array_elements_text(nullif(o -> 1, 'null')) c) AS cycle,
                         (o ->> 2)::name AS subject_column, o ->> 3 AS param_match
                    FROM jsonb_array_elements(graph -> 'order') WITH ORDINALITY AS x(o, pos)
                   ORDER BY x.pos
        LOOP
            IF cardinality(pt.cycle) > 0 THEN
                SELECT * INTO cycle_error FROM privacy_internal.fk_cycle_error(pt.cycle, 'erasure');
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = cycle_error.message, DETAIL = cycle_error.detail, HINT = cycle_error.hint;
            END IF;
            current := pt.tbl;
            SELECT * INTO fate FROM privacy_internal.erasure_action(pt.tbl, pt.subject_column);
            -- as the table's owner: its triggers are its own code; the subject
            -- a parameter, so that each statement is planned once a session
            IF fate.action = 'anonymized' THEN
                n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, fate.sets, pt.param_match),
                                                   ARRAY[subject]);
            ELSE
                n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, pt.param_match),
                                                   ARRAY[subject]);
            END IF;
            done := done || jsonb_build_object(pt.tbl::text,
                        jsonb_strip_nulls(jsonb_build_object('action', fate.action, 'rows', n,
                                                             'columns', fate.columns, 'reason', fate.reason)));
        END LOOP;
        current := NULL;
        IF checked_at_commit IS NOT NULL THEN
            EXECUTE 'SET CONSTRAINTS ' || checked_at_commit || ' DEFERRED';
        END IF;
    EXCEPTION WHEN foreign_key_violation THEN
        -- rows the erasure keeps reference rows it deletes: say which and
        -- why, without the key values PostgreSQL's message gives
        GET STACKED DIAGNOSTICS con_name = CONSTRAINT_NAME, tab_name = TABLE_NAME, sch_name = SCHEMA_NAME;
        con := privacy_internal.fk_constraint(sch_name, tab_name, con_name);
        SELECT e.* INTO blocked
          FROM pg_catalog.pg_constraint c,
               LATERAL privacy_internal.fk_blocked_error(c.oid, 'erasure',
                   CASE WHEN NOT privacy_internal.graph_root(c.conrelid) = ANY (roots) THEN 'not processed'
                        WHEN done -> privacy_internal.graph_root(c.conrelid)::text ->> 'action' = 'anonymized' THEN 'kept'
                        ELSE 'deleted' END) e
         WHERE c.oid = con AND c.confdeltype IN ('a', 'r')
           -- not an anonymized row's own reference (a masking value that references nothing)
           AND privacy_internal.graph_root(c.conrelid) IS DISTINCT FROM current;
        IF blocked.message IS NULL THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = blocked.message, DETAIL = blocked.detail, HINT = blocked.hint;
    END;
    -- per table: rows deleted or set to NULL by other tables' deletions
    -- (ON DELETE CASCADE, SET NULL, SET DEFAULT), the table's own rows apart
    FOR ch IN SELECT * FROM privacy_internal.change_counts_since(before, reach_rels, reach_roots) c ORDER BY c.root::text LOOP
        IF done ? ch.root::text THEN
            done := jsonb_set(done, ARRAY[ch.root::text], (done -> ch.root::text) || jsonb_build_object(
                'cascaded', ch.deleted - CASE WHEN done -> ch.root::text ->> 'action' = 'deleted'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END,
                'set_null', ch.updated - CASE WHEN done -> ch.root::text ->> 'action' = 'anonymized'
                                              THEN (done -> ch.root::text ->> 'rows')::bigint ELSE 0 END));
        ELSIF ch.deleted > 0 OR ch.updated > 0 THEN
            done := done || jsonb_build_object(ch.root::text,
                                               jsonb_build_object('cascaded', ch.deleted, 'set_null', ch.updated));
        END IF;
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

    INSERT INTO privacy.erasures AS e (subject_hash, reason, erased_by, tables, keys_destroyed, consent_events_reduced)
    VALUES (hash, reason, privacy_internal.caller(), done, keys, reduced)
    RETURNING jsonb_build_object('erasure', e.id, 'subject_hash', encode(e.subject_hash, 'hex'),
                                 'reason', e.reason, 'erased_at', e.erased_at, 'erased_by', e.erased_by,
                                 'tables', e.tables, 'keys_destroyed', e.keys_destroyed,
                                 'consent_events_reduced', e.consent_events_reduced)
      INTO receipt;
    RETURN receipt;
END
$$;


------------------------------------------------------------------------------
-- Issue #19, the read side of the GDPR benchmark: a subject's access
-- entries and their statements read by C in one pass
-- (privacy_internal.access_log_subject_trail), for the subject report's
-- list (subject_access_entries) and privacy.access_trail(), both C now.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.access_log_subject_trail(subject_hash bytea)
    RETURNS TABLE (seq bigint, event bigint, at timestamptz, session_role text, acting_role text,
                   application text, backend_pid integer, purpose text, command text, relation text,
                   category text, opened bigint, outcome text, reason text, denied_category text)
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_trail' LANGUAGE C STABLE STRICT ROWS 10;
COMMENT ON FUNCTION privacy_internal.access_log_subject_trail(bytea) IS
    'the subject entries of one subject hash (seq, category, opened) with their statement event (event and its fields): access_log_for_subject() joined to access_log_event(), in one pass over the batches';
REVOKE ALL ON FUNCTION privacy_internal.access_log_subject_trail(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_subject_trail(bytea) TO privacy_officer;

CREATE OR REPLACE FUNCTION privacy_internal.subject_access_entries(hash bytea, own_pid integer, since timestamptz)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_subject_access_entries' LANGUAGE C STABLE;

CREATE OR REPLACE FUNCTION privacy.access_trail(subject text)
    RETURNS TABLE (entry bigint, at timestamptz, session_role text, acting_role text, application text,
                   purpose text, command text, relation text, category text, opened bigint,
                   outcome text, reason text, denied_category text)
    AS 'MODULE_PATHNAME', 'privacy_access_trail' LANGUAGE C STABLE STRICT ROWS 10;
