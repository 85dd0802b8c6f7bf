/*
 * 07_access_log.sql — the access log: batches, views, verification (C: audit*.c, logchain.c).
 */

------------------------------------------------------------------------------
-- Access log: one entry per statement per protected table, and one per
-- subject whose values a statement opened.  Written only by the access log
-- writer (a background worker), chained by a keyed MAC (audit.c); nobody
-- but the extension's retention deletes from it.  The writer stores the
-- entries of each flush packed in a few rows of access_log_batches (cheap
-- to write); the views access_log and access_log_subjects unpack them.
------------------------------------------------------------------------------
CREATE TABLE privacy.access_log_batches (
    first_seq  bigint PRIMARY KEY,
    last_seq   bigint NOT NULL,
    written_at timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    subjects   bigint[] NOT NULL,
    entries    bytea NOT NULL,
    nonce      bytea NOT NULL,    -- the batch's MAC keys come from it (logchain.h)
    offsets    bytea NOT NULL     -- where each entry starts in entries: 4 bytes each
);
-- Uncompressed (pglz took two thirds of the writer's time; lz4 could only
-- be read whole): one entry is read as a slice of entries and offsets,
-- a TOAST chunk or two, whatever the size of the row.  The subject keys
-- (random) are not worth compressing either.
ALTER TABLE privacy.access_log_batches ALTER COLUMN subjects SET STORAGE EXTERNAL,
    ALTER COLUMN entries SET STORAGE EXTERNAL, ALTER COLUMN offsets SET STORAGE EXTERNAL;
COMMENT ON TABLE privacy.access_log_batches IS
    'the access log as the writer stores it: entries first_seq to last_seq packed in entries (seq, canonical bytes, MAC each) and where each starts (offsets), the subjects they mention as 8-byte keys, the newest statement time (for retention)';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_batches', '');

-- Each subject's entries, written by the writer with them: a subject's
-- access trail is an index range, then one slice of a batch row per entry
-- (privacy_internal.access_log_for_subject).  Derived from the log, not
-- chained: the report reads the entries themselves from the batches, and
-- verify_access_log() checks that it lists exactly their subject entries.
CREATE TABLE privacy.access_log_trail (
    subject_key bigint NOT NULL,  -- privacy_internal.access_log_subject_key(subject_hash)
    seq         bigint NOT NULL   -- the subject entry's seq
);
-- On the key alone (issue #14): a subject's entries are one deduplicated
-- posting list (8 bytes of key, 6 of row address each), a third of the
-- size of an index on (subject_key, seq), so that at a million subjects
-- it stays in shared buffers where the writer's inserts, one a subject a
-- statement opened at a random key, land.  The seq is read from the row.
CREATE INDEX access_log_trail_subject ON privacy.access_log_trail (subject_key);
COMMENT ON TABLE privacy.access_log_trail IS
    'which access log entries are about which subject (by the first 8 bytes of its hash): kept by the log writer, trimmed with the log';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_trail', '');

-- Row estimates (issue #19): a batch row holds about a hundred entries,
-- one when a seq or a subject is asked for (the support function tells the
-- planner which), so that a lookup in the log never looks like millions of
-- rows to the planner, nor worth compiling with JIT.
CREATE FUNCTION privacy_internal.access_log_rows(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'privacy_access_log_rows' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION privacy_internal.access_log_rows(internal) IS
    'planner support of the functions that unpack access log batches: one row when their filter argument is given';

CREATE FUNCTION privacy_internal.access_log_statements(entries bytea, only_seq bigint DEFAULT NULL)
    RETURNS TABLE (seq bigint, at timestamptz, session_role text, acting_role text, application text,
                   client_addr text, backend_pid integer, purpose text, command text, relid oid,
                   relation text, columns text[], categories text[], rows bigint, query_id bigint,
                   level integer, outcome text, reason text, denied_category text, mac bytea)
    AS 'MODULE_PATHNAME', 'privacy_access_log_statements' LANGUAGE C IMMUTABLE PARALLEL SAFE
    ROWS 100 SUPPORT privacy_internal.access_log_rows;
COMMENT ON FUNCTION privacy_internal.access_log_statements(bytea, bigint) IS
    'the statement events packed in one access_log_batches.entries (only the one with seq = only_seq, when given)';

CREATE FUNCTION privacy_internal.access_log_subject_entries(entries bytea, subject_hash bytea DEFAULT NULL)
    RETURNS TABLE (seq bigint, event bigint, subject_hash bytea, category text, opened bigint, mac bytea)
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_entries' LANGUAGE C IMMUTABLE PARALLEL SAFE
    ROWS 100 SUPPORT privacy_internal.access_log_rows;
COMMENT ON FUNCTION privacy_internal.access_log_subject_entries(bytea, bytea) IS
    'the subject entries packed in one access_log_batches.entries (only those of subject_hash, when given)';

CREATE FUNCTION privacy_internal.access_log_entry(entries bytea, offsets bytea, i bigint) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_access_log_entry' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_entry(bytea, bytea, bigint) IS
    'entry i (seq - first_seq) of one access_log_batches row, packed alone, read as slices of entries and offsets';

CREATE FUNCTION privacy_internal.access_log_offsets(entries bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_access_log_offsets' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_offsets(bytea) IS
    'where each entry of one access_log_batches.entries starts: for rows written before the writer stored it';

CREATE FUNCTION privacy_internal.access_log_subject_key(subject_hash bytea) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.access_log_subject_key(bytea) IS
    'the key access_log_batches.subjects holds for a subject hash: its first 8 bytes as a bigint';

CREATE VIEW privacy.access_log AS
SELECT e.* FROM privacy.access_log_batches b, LATERAL privacy_internal.access_log_statements(b.entries) e;
COMMENT ON VIEW privacy.access_log IS
    'who accessed which protected table, when, as which roles, for which purpose, which personal columns and how many rows, and who was refused (outcome denied, with the reason); never statement text';

CREATE VIEW privacy.access_log_subjects AS
SELECT e.* FROM privacy.access_log_batches b, LATERAL privacy_internal.access_log_subject_entries(b.entries) e;
COMMENT ON VIEW privacy.access_log_subjects IS
    'whose encrypted values a logged statement (event = access_log.seq) opened: the subject''s keyed hash, the category and how many values';

-- Indexed lookups (the views above unpack every batch), each entry read
-- alone from its batch row: the slice is taken inside the LATERAL
-- subquery, so that the function unpacking it is passed the entry alone
-- (a Memoize node the planner puts above it would otherwise hash the whole
-- detoasted batch on every call: 2 ms an entry, issue #14).  Both are
-- inlined SQL running as their caller: only who may read the log gets
-- anything.
CREATE FUNCTION privacy_internal.access_log_for_subject(subject_hash bytea)
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
COMMENT ON FUNCTION privacy_internal.access_log_for_subject(bytea) IS
    'the rows of privacy.access_log_subjects of one subject hash, found through privacy.access_log_trail';

CREATE FUNCTION privacy_internal.access_log_event(seq bigint)
    RETURNS SETOF privacy.access_log
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
    AS $$
SELECT e.* FROM (SELECT privacy_internal.access_log_entry(b.entries, b.offsets, $1 - b.first_seq) AS entry
                   FROM privacy.access_log_batches b
                  WHERE b.first_seq <= $1 ORDER BY b.first_seq DESC LIMIT 1) b,
       LATERAL privacy_internal.access_log_statements(b.entry, $1) e
$$;
COMMENT ON FUNCTION privacy_internal.access_log_event(bigint) IS
    'the row of privacy.access_log with this seq, found through the batches'' primary key';

-- Both in one call, for the subject report and the access trail (issue
-- #19: the two lookups of each entry were most of a report): a subject's
-- seqs from the trail, each entry and the statement that opened its values
-- read from the chained batches as slices of their rows, the statement
-- most often in the same slice as the entry.  C, running as its caller.
CREATE FUNCTION privacy_internal.access_log_subject_trail(subject_hash bytea)
    RETURNS TABLE (seq bigint, event bigint, at timestamptz, session_role text, acting_role text,
                   application text, backend_pid integer, purpose text, command text, relation text,
                   category text, opened bigint, outcome text, reason text, denied_category text)
    AS 'MODULE_PATHNAME', 'privacy_access_log_subject_trail' LANGUAGE C STABLE STRICT ROWS 10;
COMMENT ON FUNCTION privacy_internal.access_log_subject_trail(bytea) IS
    'the subject entries of one subject hash (seq, category, opened) with their statement event (event and its fields): access_log_for_subject() joined to access_log_event(), in one pass over the batches';

CREATE TABLE privacy.access_log_anchors (
    first_seq  bigint PRIMARY KEY,
    anchor     bytea NOT NULL,
    removed    bigint NOT NULL,
    trimmed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    mac        bytea NOT NULL
);
COMMENT ON TABLE privacy.access_log_anchors IS
    'where the access log starts after its retention removed older entries: the MAC of the last removed entry, itself authenticated';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_anchors', '');

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

CREATE TABLE privacy.access_log_verifications (
    verified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    verified_by name NOT NULL DEFAULT session_user,
    status      text NOT NULL,
    seq         bigint,
    checked     bigint NOT NULL,
    detail      text
);
COMMENT ON TABLE privacy.access_log_verifications IS
    'every run of privacy.verify_access_log() and what it found';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_verifications', '');

-- Which role used which purpose, and when first and last: the writer keeps
-- it with every batch, so that the compliance gaps need not unpack the
-- whole log.  Derived from the log (not chained); trimming the log keeps it.
CREATE TABLE privacy.access_log_purpose_use (
    acting_role name NOT NULL,
    purpose     text NOT NULL,
    first_used  timestamptz NOT NULL,
    last_used   timestamptz NOT NULL,
    PRIMARY KEY (acting_role, purpose)
);
COMMENT ON TABLE privacy.access_log_purpose_use IS
    'each (acting role, declared purpose) in the access log, with the first and last statement time: kept by the log writer';
SELECT pg_catalog.pg_extension_config_dump('privacy.access_log_purpose_use', '');

-- Runs as its caller (the C code reads the log as the extension's owner),
-- so that each run is recorded under the role that asked for it.
CREATE FUNCTION privacy.verify_access_log(OUT status text, OUT seq bigint, OUT checked bigint, OUT detail text)
    AS 'MODULE_PATHNAME', 'privacy_verify_access_log' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.verify_access_log() IS
    'recompute the access log''s MAC chain: ok, or the first entry that is missing, altered or out of order';

CREATE FUNCTION privacy.flush_access_log(timeout_ms integer DEFAULT 10000) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_flush_access_log' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.flush_access_log(integer) IS
    'wait until every access event queued so far is committed to privacy.access_log (false: the timeout passed first)';

CREATE FUNCTION privacy.access_log_status(OUT enabled boolean, OUT strict boolean, OUT queue_bytes bigint,
                                          OUT queued_bytes bigint, OUT writer_pid integer, OUT last_seq bigint)
    AS 'MODULE_PATHNAME', 'privacy_access_log_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.access_log_status() IS
    'the access log of this database: settings, bytes waiting in shared memory, the writer and the last entry it wrote since the server started';

CREATE FUNCTION privacy_internal.trim_access_log() RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_trim_access_log' LANGUAGE C VOLATILE;

CREATE FUNCTION privacy.trim_access_log() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'SELECT privacy_internal.trim_access_log()';
COMMENT ON FUNCTION privacy.trim_access_log() IS
    'delete access log entries older than privacy.access_log_retention, keeping the chain verifiable; run by CALL privacy.purge()';

-- The log is written by the writer worker only; the compliance role reads it.
REVOKE ALL ON privacy.access_log_batches, privacy.access_log, privacy.access_log_subjects,
    privacy.access_log_anchors, privacy.access_log_verifications, privacy.access_log_purpose_use,
    privacy.access_log_trail FROM PUBLIC;
GRANT SELECT ON privacy.access_log_batches, privacy.access_log, privacy.access_log_subjects,
    privacy.access_log_anchors, privacy.access_log_verifications, privacy.access_log_purpose_use,
    privacy.access_log_trail TO privacy_officer;
GRANT SELECT ON privacy.access_log_head TO privacy_officer;
REVOKE ALL ON FUNCTION privacy_internal.trim_access_log() FROM PUBLIC;
REVOKE ALL ON FUNCTION privacy_internal.access_log_seal_head() FROM PUBLIC;
-- (the views call these as the reading role)
GRANT EXECUTE ON FUNCTION privacy_internal.access_log_statements(bytea, bigint),
    privacy_internal.access_log_subject_entries(bytea, bytea), privacy_internal.access_log_subject_key(bytea),
    privacy_internal.access_log_entry(bytea, bytea, bigint),
    privacy_internal.access_log_for_subject(bytea), privacy_internal.access_log_event(bigint),
    privacy_internal.access_log_subject_trail(bytea)
  TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.verify_access_log(), privacy.flush_access_log(integer),
    privacy.access_log_status(), privacy.trim_access_log()
  TO privacy_officer;
