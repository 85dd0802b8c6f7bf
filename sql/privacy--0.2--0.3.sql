-- privacy--0.2--0.3.sql: upgrade from release 0.2 to 0.3.
--
-- Every change to sql/install/ since 0.2 has its statement here, in the
-- same order; test/tap/011_upgrade.pl checks that a 0.2 database updated
-- with this script has exactly the objects of a fresh 0.3 install
-- (test/tap/extension_signature.sql) and that its data still opens,
-- verifies and reports.  Schema-qualified throughout; search_path is
-- pg_catalog, pg_temp while it runs.

\echo Use "ALTER EXTENSION privacy UPDATE TO '0.3'" to load this file. \quit

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
