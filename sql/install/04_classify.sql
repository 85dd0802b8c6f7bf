/*
 * 04_classify.sql — classification of columns, and its SECURITY LABEL form (C: label.c).
 */

------------------------------------------------------------------------------
-- Classification of columns
------------------------------------------------------------------------------
CREATE TABLE privacy.column_categories (
    tbl           regclass NOT NULL,
    col           name NOT NULL,
    category      text NOT NULL REFERENCES privacy.categories,
    searchable    boolean NOT NULL DEFAULT false,
    encrypted     boolean NOT NULL,
    classified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    classified_by name NOT NULL DEFAULT session_user,
    PRIMARY KEY (tbl, col)
);
COMMENT ON TABLE privacy.column_categories IS
    'which category of personal data each classified column holds, and whether it is stored encrypted';
SELECT pg_catalog.pg_extension_config_dump('privacy.column_categories', '');
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE
    ON privacy.column_categories FOR EACH ROW EXECUTE FUNCTION privacy_internal.catalog_changed();
CREATE TRIGGER catalog_truncated AFTER TRUNCATE
    ON privacy.column_categories FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.catalog_changed();
ALTER TABLE privacy.column_categories ENABLE ALWAYS TRIGGER catalog_changed, ENABLE ALWAYS TRIGGER catalog_truncated;

CREATE FUNCTION privacy.classify(tbl regclass, col name, category text,
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
COMMENT ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean) IS
    'declare the category of a column; encrypted columns are resealed under the category key (searchable enables equality search); encrypt converts a text, varchar, bytea, date, timestamptz, numeric, integer, bigint or jsonb column';

CREATE FUNCTION privacy_internal.nests_encrypted(regtype) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_nests_encrypted' LANGUAGE C STRICT STABLE;

CREATE FUNCTION privacy_internal.seal_text(text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'privacy_seal_text' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.seal_bytea(bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'privacy_seal_bytea' LANGUAGE C STRICT VOLATILE;

CREATE VIEW privacy.classified_columns AS
SELECT cc.tbl AS table_name, cc.col AS column_name, cc.category, cc.searchable, cc.encrypted,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type,
       cc.classified_at, cc.classified_by
  FROM privacy.column_categories cc
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = cc.tbl AND a.attname = cc.col AND NOT a.attisdropped;
COMMENT ON VIEW privacy.classified_columns IS 'classified columns with their current type';

-- Every stored encrypted column has a category, so that no value sealed
-- with a session's transient key can be kept: a column declared without one
-- is given "unclassified" (readable by no purpose until classified).
CREATE FUNCTION privacy_internal.typmod_category(integer) RETURNS text
    AS 'MODULE_PATHNAME', 'encrypted_typmod_category' LANGUAGE C STRICT STABLE;

-- Record a column whose type already names its category, so the register
-- is complete however the column got its category.
CREATE FUNCTION privacy_internal.register_column(tbl regclass, col name)
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

CREATE FUNCTION privacy_internal.classify_new_columns() RETURNS event_trigger
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
CREATE EVENT TRIGGER privacy_classify_new_columns ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
                 'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION privacy_internal.classify_new_columns();

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

-- privacy.reencrypt() is in 06_reseal.sql, with the batches it shares with protect_table.

------------------------------------------------------------------------------
-- Declarative classification: SECURITY LABEL FOR privacy (src/label.c).
-- A label on a column runs classify(), a label on a table protect_table(),
-- and IS NULL unclassify() or unprotect_table(), as the role that sets it.
------------------------------------------------------------------------------
-- The undo of classify() for a column whose values are not sealed: the
-- register forgets it.  An encrypted column keeps its category, since its
-- values are sealed under that category's key.
CREATE FUNCTION privacy.unclassify(tbl regclass, col name) RETURNS void
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
COMMENT ON FUNCTION privacy.unclassify(regclass, name) IS
    'undo privacy.classify() for a column that is not encrypted (encrypted columns always keep a category)';
REVOKE ALL ON FUNCTION privacy.unclassify(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.unclassify(regclass, name) TO privacy_admin;
