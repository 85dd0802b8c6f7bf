/*
 * 12_citus.sql — scale-out on Citus (issue #16; C: citus.c).
 *
 * One vocabulary, one consent state and one key set for a Citus cluster.
 * Every node keeps the extension's catalog in its own ordinary tables (so
 * that nothing the extension reads, from C or SQL, changes on Citus); the
 * coordinator is the only node that changes them, and every change reaches
 * every worker in the same distributed transaction: a row trigger on each
 * replicated table (privacy_internal.citus_capture, created by
 * privacy.citus_attach()) writes the row's image into citus_outbox, a Citus
 * reference table, so Citus carries it to every node under its two-phase
 * commit; there a trigger on the table's shard (citus_apply) applies it to
 * the node's own table and removes the row again.  The outbox is therefore
 * empty outside a transaction.  A node added later is filled by the next
 * privacy.citus_attach() (a full copy, sent to every worker).
 * Data keys are never created on a worker: see citus.c.
 */

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

-- The bulk path (citus.c): the keys of many subjects in one request, from
-- the coordinator's planner before a multi-row INSERT; returns how many.
CREATE FUNCTION privacy_internal.citus_create_keys(subject_hashes bytea[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_citus_create_keys' LANGUAGE C VOLATILE STRICT;

-- Who may insert without a purpose on a worker (citus.c): the node a
-- connection's Citus application name points to vouches that its backend is
-- inserting, as that role, in a transaction whose purpose check passed.
-- Asked by the worker as the extension's owner; nobody else may call it.
CREATE FUNCTION privacy_internal.citus_vouch(gpid bigint, role text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_vouch' LANGUAGE C VOLATILE STRICT;

-- The purpose travels with the query (citus.c): the coordinator ANDs this
-- call, with the session's purpose, to a query on a distributed table; a
-- worker's planner reads it and sets privacy.purpose for its transaction.
-- It declares a purpose, as SET LOCAL would, so anyone may call it.
CREATE FUNCTION privacy_internal.citus_purpose(purpose text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_purpose' LANGUAGE C STABLE PARALLEL SAFE;
-- (in an UPDATE or DELETE, with a column of the table changed as anchor;
-- IMMUTABLE: Citus refuses a STABLE call with a column there, and true it is)
CREATE FUNCTION privacy_internal.citus_purpose(purpose text, anchor anyelement) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_citus_purpose' LANGUAGE C IMMUTABLE PARALLEL SAFE;

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
ALTER FUNCTION privacy.citus_verify_access_log() ROWS 10;
