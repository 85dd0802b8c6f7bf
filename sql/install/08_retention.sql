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
-- every hold of a subject, released ones too (an erasure renames them all)
CREATE INDEX holds_subject ON privacy.holds (subject);
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
    pid          integer,
    resumes      bigint
);
ALTER SEQUENCE privacy.purge_run_id_seq OWNED BY privacy.purge_runs.id;
-- the runs still marked running (at most a few): every purge looks for them
CREATE INDEX purge_runs_running ON privacy.purge_runs (id) WHERE outcome = 'running';
CREATE TABLE privacy.purge_run_tables (
    run_id       bigint NOT NULL REFERENCES privacy.purge_runs ON DELETE CASCADE,
    tbl          regclass NOT NULL,
    action       text NOT NULL,
    cutoff       timestamptz,
    matched      bigint NOT NULL DEFAULT 0,
    purged       bigint NOT NULL DEFAULT 0,
    held         bigint NOT NULL DEFAULT 0,
    batches      integer NOT NULL DEFAULT 0,
    position     integer,
    status       text DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    waiting      bigint,
    cascaded     bigint NOT NULL DEFAULT 0,
    set_null     bigint NOT NULL DEFAULT 0,
    error        text,
    PRIMARY KEY (run_id, tbl)
);
COMMENT ON TABLE privacy.purge_runs IS 'every purge run: who started it, how, and how it ended (interrupted runs are marked by the next run, which resumes where they stopped)';
COMMENT ON TABLE privacy.purge_run_tables IS 'per table and run: its position in the run (tables before the tables they reference), rows due when the run started, rows purged, held, still due when the table was done (waiting), deleted or set to NULL by ON DELETE actions of other tables'' deletions (cascaded, set_null; action cascade: a table without a rule that they reached), and whether the table was done or failed, with the error (SQLSTATE and message, no values)';
COMMENT ON COLUMN privacy.purge_runs.resumes IS 'the run this one resumes: it left tables pending (stopped, interrupted or failed), and this run started with them';
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

-- How a purge names a row: (tableoid, ctid); on Citus, where a ctid names
-- a row in its shard only and Citus refuses it in a distributed
-- modification, a distributed table's rows by their distribution column
-- (a batch takes every due row of the values it takes).
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

-- The condition of a purge batch on the rows of a due query, left open
-- for a closing parenthesis (or FOR UPDATE ... SKIP LOCKED and one): the
-- first batch_size due rows.  On Citus, the due rows of the first
-- batch_size values of the distribution column (a subquery with a LIMIT
-- cannot go to the shards; one joined on the distribution column can).
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

-- The condition of a due query (SELECT <row_identity> FROM tbl t WHERE ...).
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

-- Is the table distributed by Citus (a distributed or reference table)?
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

-- The rows of a rule that are due, as a query over their identity
-- (row_identity: (tableoid, ctid), on Citus the distribution column and ctid).
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
    RETURN format('SELECT %s FROM %s t WHERE t.%I < %L%s '
                  'AND NOT (t.%I::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]))',
                  privacy_internal.row_identity(r.tbl), r.tbl, r.time_column, cutoff, not_done,
                  subject_column, coalesce(held, '{}'));
END
$$;

CREATE FUNCTION privacy.purge_preview()
    RETURNS TABLE (table_name regclass, action text, keep interval, rows_due bigint, rows_held bigint,
                   oldest_due timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 10
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
COMMENT ON FUNCTION privacy.purge_preview() IS
    'per table with a retention rule: rows due now, rows held back by legal holds, the oldest due; changes nothing';

------------------------------------------------------------------------------
-- Foreign keys, for purges and erasure: in which order tables lose their
-- rows (a table before the tables it references), which tables a deletion
-- reaches through ON DELETE CASCADE, SET NULL and SET DEFAULT, and the
-- errors for what cannot be done (doc/internals.md, "Foreign keys").
------------------------------------------------------------------------------

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
    LANGUAGE plpgsql STABLE ROWS 10
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
    LANGUAGE plpgsql STABLE ROWS 20
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
    LANGUAGE plpgsql VOLATILE ROWS 10
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
CREATE FUNCTION privacy_internal.purge_batch(run_id bigint, tbl regclass, batch_size integer) RETURNS bigint
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

-- Who started a run, decided by the process that runs it (worker.c): via
-- 'worker' only in the purge worker, the role as the session has it.
CREATE FUNCTION privacy_internal.purge_origin(asked_via text, asked_by name, OUT via text, OUT started_by name)
    AS 'MODULE_PATHNAME', 'privacy_purge_origin' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.purge_origin(text, name) IS
    'how a purge run is recorded: via ''worker'' in the purge worker only, ''call'' elsewhere, started by the role that runs it; refuses anything else';

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
CREATE FUNCTION privacy_internal.purge_start(batch_size integer, time_budget interval, via text, caller name) RETURNS bigint
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

-- The tables of a run still to do, in its order.
-- (PL/pgSQL, whose plan is kept for the session: an SQL function with a
-- SET clause is planned again at every call.)
CREATE FUNCTION privacy_internal.purge_tables(run bigint) RETURNS SETOF regclass
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT prt.tbl FROM privacy.purge_run_tables prt
                  WHERE prt.run_id = purge_tables.run AND prt.status = 'pending' ORDER BY prt.position;
END
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
CREATE FUNCTION privacy_internal.purge_finish(run bigint, outcome text, error text) RETURNS void
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

-- The outcome and end of a run (purge_finish; purge_start for a run that
-- found nothing to do, which took no advisory lock).
CREATE FUNCTION privacy_internal.purge_end(run bigint, outcome text, error text) RETURNS void
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
COMMENT ON PROCEDURE privacy.purge(integer, interval, text, text) IS
    'delete or anonymize rows past their retention, in batches committed one by one, tables before the tables they reference; held subjects are skipped; a failing table does not stop the others; resumable; if_running: skip (default) or wait while another purge runs';

COMMENT ON COLUMN privacy.purge_runs.started_by IS 'the role that called privacy.purge(), or the worker';

CREATE VIEW privacy.purge_progress AS
SELECT pr.id AS run_id, pr.started_at, pr.started_by, pr.via, pr.outcome,
       prt.tbl AS table_name, prt.action, prt.matched, prt.purged, prt.held, prt.batches,
       pg_catalog.clock_timestamp() - pr.started_at AS running_for,
       prt.position, prt.status, prt.cascaded, prt.set_null
  FROM privacy.purge_runs pr
  JOIN privacy.purge_run_tables prt ON prt.run_id = pr.id
 WHERE pr.outcome = 'running';
COMMENT ON VIEW privacy.purge_progress IS 'the purge running now, per table in the order of the run';
