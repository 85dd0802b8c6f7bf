-- Row estimates of the extension's set-returning functions (issue #19):
-- none may keep PostgreSQL's default of 1,000 rows, which made the planner
-- cost a subject's access trail as a product of whole batches and compile
-- it with JIT (test/tap/021_no_jit.pl runs the calls themselves).
CREATE EXTENSION privacy;

-- every set-returning function of the extension, its ROWS and whether a
-- support function refines it: a new one must be added here, with a
-- realistic estimate
SELECT p.oid::regprocedure AS function, p.prorows, p.prosupport::regproc AS support
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'privacy'
 WHERE p.proretset
 ORDER BY p.oid::regprocedure::text;

-- none at the default
SELECT count(*) AS at_default
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'privacy'
 WHERE p.proretset AND p.prorows >= 1000;

-- the planner's estimate of a call, as EXPLAIN gives it
CREATE FUNCTION pg_temp.plan_rows(q text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric;
END
$$;

-- a whole batch row: its declared ROWS; one seq or one subject: one row
SELECT pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_statements('\x'::bytea)$$) AS whole_batch,
       pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_statements('\x'::bytea, NULL)$$) AS null_seq,
       pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_statements('\x'::bytea, 42)$$) AS one_seq;
SELECT pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_subject_entries('\x'::bytea)$$) AS whole_batch,
       pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_subject_entries('\x'::bytea, privacy.subject_hash('7'))$$) AS one_subject;
-- a join's outer column is a given argument too
SELECT pg_temp.plan_rows($$SELECT * FROM (VALUES (1::bigint), (2)) v(s),
                           LATERAL privacy_internal.access_log_statements('\x'::bytea, v.s) e$$) AS two_lookups;
-- the indexed lookups a report makes
SELECT pg_temp.plan_rows($$SELECT * FROM privacy_internal.access_log_event(42)$$) AS one_event;

-- a subject's trail by its identifier is one query (issue #19):
-- subject_hash() is STABLE, so access_log_for_subject(subject_hash(x)) is
-- inlined into the caller's query, not run (and planned) as a function
CREATE FUNCTION pg_temp.plan_text(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || q;
END
$$;
SELECT p.provolatile AS subject_hash_volatility FROM pg_proc p WHERE p.oid = 'privacy.subject_hash(text)'::regprocedure;
SELECT count(*) FILTER (WHERE l LIKE '%Function Scan on access_log_for_subject%') AS function_scans,
       count(*) FILTER (WHERE l LIKE '%access_log_trail%') AS trail_scans
  FROM pg_temp.plan_text($$SELECT count(*) FROM privacy_internal.access_log_for_subject(privacy.subject_hash('7')) s
                           JOIN LATERAL privacy_internal.access_log_event(s.event) l ON true$$) l;

DROP EXTENSION privacy;
