/*
 * 06_reseal.sql — resealing a table's values online: after protect_table
 * (category keys to subject keys) and for reencrypt (retired keys to the
 * active one), in committed batches by key, resumable, with progress
 * (C: catalog.c run_as_owner_row, types.c under_category_key).
 */

------------------------------------------------------------------------------
-- Reseal jobs: what is left to reseal, and where the last batch stopped
------------------------------------------------------------------------------
-- One row per table (with storage: partitions each have theirs) and command.
-- A batch covers the next batch_rows rows in the order of the table's key
-- (its primary key, or its subject column), rewrites those still to reseal,
-- and records the last key it covered in last_key, in the same transaction:
-- a crash or a cancel loses at most the batch it interrupted, and the next
-- CALL goes on from last_key.  last_key holds the key values' text forms
-- (not personal values: encrypted columns are never keys) until the job ends.
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
-- A session's state is NULL in pg_stat_activity to whoever may not see
-- it (an officer, for an administrator's CALL): that is not idle.
CREATE VIEW privacy.progress_reseal AS
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
-- covered, 0 when the job is done (and gone), minus the rows passed over
-- when it starts again from the beginning, NULL when there is no job.
--
-- The key values cross between batches as text, written and read back
-- under the same settings whatever the session's (DateStyle, IntervalStyle,
-- extra_float_digits): a job a session with DateStyle 'SQL, DMY' began and
-- one with 'MDY' resumes would otherwise read 11/01 back as November 1st,
-- and pass over every row in between.  At the end, a row still to do (its
-- key rewritten without a trigger, by ALTER COLUMN ... TYPE; a batch's
-- UPDATE that a rule or a trigger of the table swallowed) sends the job
-- back to the beginning: the batch returns minus their number, and
-- reseal_run goes through the table once more before it gives up.
CREATE FUNCTION privacy_internal.reseal_batch(job_tbl regclass, job_command text, job_col name,
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

-- A job that went through its table twice and still left rows to do: a
-- rule or a trigger of the table keeps the rows as they were.
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

-- A small table is resealed at once, in the caller's transaction (what
-- protect_table did for every table before 0.3); a larger one is left to
-- CALL privacy.reseal(), which the NOTICE names.  (A partition whose seal
-- trigger is not cloned yet waits for protect_table to call this again.)
CREATE FUNCTION privacy_internal.reseal_small(tbl regclass, command text, col name, at_most integer DEFAULT 1000)
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

-- The batches of the jobs on a table (and below it), each committed, with a
-- NOTICE per batch, and a pause of privacy.reseal_delay after each.  Called
-- by privacy.reseal() and privacy.reencrypt().
CREATE PROCEDURE privacy_internal.reseal_run(tbl regclass, command text, col name, batch_rows integer)
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
