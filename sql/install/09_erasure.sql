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

-- The same condition with the subject as the text parameter $1: one
-- statement text for every subject, whose plan run_as_owner keeps for the
-- session (issue #19).
-- PL/pgSQL so that its lookup is planned once a session, not at each call.
CREATE FUNCTION privacy_internal.subject_param_match(tbl regclass, subject_column name) RETURNS text
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

CREATE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
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
COMMENT ON FUNCTION privacy.erase_subject(text, text) IS
    'erase a subject in one transaction: their rows deleted or anonymized in every protected table (tables before the tables they reference), their keys destroyed, their consent history reduced; returns a receipt with what happened per table and column';

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
COMMENT ON FUNCTION privacy.verify_erasure(text) IS
    'what is left of a subject, without a purpose and without reading a value: rows, readable or searchable values of kept rows, live keys, consent state and ledger entries; verified when nothing is';
