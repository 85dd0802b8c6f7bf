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

-- Who started a run, decided by the process that runs it (worker.c): via
-- 'worker' only in the purge worker, the role as the session has it.
CREATE FUNCTION privacy_internal.purge_origin(asked_via text, asked_by name, OUT via text, OUT started_by name)
    AS 'MODULE_PATHNAME', 'privacy_purge_origin' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.purge_origin(text, name) IS
    'how a purge run is recorded: via ''worker'' in the purge worker only, ''call'' elsewhere, started by the role that runs it; refuses anything else';

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
