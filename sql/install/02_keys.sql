/*
 * 02_keys.sql — data keys, wrapped by the master key, and their management (C: keys.c).
 */

------------------------------------------------------------------------------
-- Data keys: stored only wrapped by the master key.  scope 'category' keys
-- seal a category's values in ordinary tables; scope 'subject' keys seal a
-- subject's values in protected tables, and destroying one shreds them;
-- scope 'internal' keys serve the extension itself (the subject hash, the
-- blind index), so that those survive a master-key rotation.
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.data_key_id_seq AS integer MINVALUE 1;

CREATE TABLE privacy.data_keys (
    id           integer PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.data_key_id_seq'),
    scope        text NOT NULL CHECK (scope IN ('category', 'subject', 'internal')),
    category     text REFERENCES privacy.categories,
    name         text,
    subject_hash bytea,
    state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    wrapped_key  bytea,
    wrapped_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    CONSTRAINT data_key_owner CHECK ((scope = 'category') = (category IS NOT NULL)
                                     AND (scope = 'subject') = (subject_hash IS NOT NULL)
                                     AND (scope = 'internal') = (name IS NOT NULL)),
    CONSTRAINT data_key_material CHECK ((state = 'destroyed') = (wrapped_key IS NULL))
);
ALTER SEQUENCE privacy.data_key_id_seq OWNED BY privacy.data_keys.id;
CREATE UNIQUE INDEX data_keys_active_category ON privacy.data_keys (category)
    WHERE scope = 'category' AND state = 'active';
CREATE UNIQUE INDEX data_keys_active_subject ON privacy.data_keys (subject_hash)
    WHERE scope = 'subject' AND state = 'active';
-- a subject's other keys (retired, destroyed): kept out of the index above
-- so that a new subject's key costs one index entry besides its id
CREATE INDEX data_keys_subject ON privacy.data_keys (subject_hash) WHERE scope = 'subject' AND state <> 'active';
CREATE UNIQUE INDEX data_keys_active_internal ON privacy.data_keys (name)
    WHERE scope = 'internal' AND state = 'active';
COMMENT ON TABLE privacy.data_keys IS
    'data keys, each wrapped by the master key whose fingerprint is in wrapped_by; wrapped_key is NULL once destroyed';

SELECT pg_catalog.pg_extension_config_dump('privacy.data_keys', '');
-- A destroyed key's wrapped bytes stay in the table's old row version until
-- VACUUM prunes it: autovacuum comes at its next round after any key is
-- destroyed, rather than after 50 dead rows (doc/dba.md, "Crypto-shredding
-- and old backups"; test/tap/015_key_remnants.pl).
ALTER TABLE privacy.data_keys SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0);
SELECT pg_catalog.pg_extension_config_dump('privacy.data_key_id_seq', '');


-- A retired, destroyed or deleted key leaves every backend's cache and the
-- shared one when its transaction commits, key by key (keys_cache.c); a new
-- key changes nothing anyone has cached, and a rewrapped one is the same
-- key.  Enabled ALWAYS, so that logical replication's apply worker fires
-- them too.
CREATE FUNCTION privacy_internal.data_keys_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_data_keys_changed'
    LANGUAGE C;
CREATE TRIGGER data_keys_changed AFTER UPDATE OR DELETE
    ON privacy.data_keys FOR EACH ROW EXECUTE FUNCTION privacy_internal.data_keys_changed();
CREATE TRIGGER data_keys_truncated AFTER TRUNCATE
    ON privacy.data_keys FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.data_keys_changed();
ALTER TABLE privacy.data_keys ENABLE ALWAYS TRIGGER data_keys_changed, ENABLE ALWAYS TRIGGER data_keys_truncated;

------------------------------------------------------------------------------
-- Keys: management without key material
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.category_key(category text) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_category_key'
    LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.subject_key(subject text, create_missing boolean) RETURNS integer
    AS 'MODULE_PATHNAME', 'privacy_subject_key'
    LANGUAGE C STRICT VOLATILE;
-- STABLE (issue #19): the same subject hashes the same while the internal
-- key lives, which is for ever once created (create_category and classify
-- create it in a writable transaction; a first use before them still does).
-- VOLATILE kept a lookup such as access_log_for_subject(subject_hash(x))
-- from being inlined, and a WHERE clause from using an index.
CREATE FUNCTION privacy.subject_hash(subject text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_subject_hash'
    LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION privacy.subject_hash(text) IS
    'keyed hash standing for a subject where the identifier itself must not be kept';
CREATE FUNCTION privacy_internal.rewrap_key(id integer, scope text, category text, subject_hash bytea,
                                    wrapped bytea, wrapped_by text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'privacy_rewrap_key'
    LANGUAGE C VOLATILE;
CREATE FUNCTION privacy_internal.ensure_internal_keys() RETURNS void
    AS 'MODULE_PATHNAME', 'privacy_ensure_internal_keys'
    LANGUAGE C VOLATILE;
CREATE FUNCTION privacy.previous_master_key_fingerprint() RETURNS text
    AS 'MODULE_PATHNAME', 'privacy_previous_master_key_fingerprint'
    LANGUAGE C VOLATILE;

CREATE FUNCTION privacy.key_cache_status()
    RETURNS TABLE (cache text, slots bigint, used bigint, hits bigint, misses bigint,
                   evictions bigint, bytes bigint, locked boolean)
    AS 'MODULE_PATHNAME', 'privacy_key_cache_status'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy.key_cache_status() IS
    'the caches of unwrapped data keys: this backend''s and the shared one (slots, keys held, this backend''s hits and misses, evictions, memory, whether the key material is locked)';
ALTER FUNCTION privacy.key_cache_status() ROWS 2;

CREATE VIEW privacy.keys AS
SELECT k.id, k.scope, coalesce(k.category, k.name) AS category,
       pg_catalog.encode(pg_catalog.substr(k.subject_hash, 1, 8), 'hex') AS subject_hash_prefix,
       k.state, k.wrapped_by AS master_key_fingerprint,
       k.created_at, k.retired_at, k.destroyed_at
  FROM privacy.data_keys k;
COMMENT ON VIEW privacy.keys IS
    'data keys without key material: scope, state and the fingerprint of the master key that wraps each';

CREATE FUNCTION privacy.rotate_key(category text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id integer;
BEGIN
    PERFORM privacy_internal.require_category(category);
    UPDATE privacy.data_keys k SET state = 'retired', retired_at = now()
     WHERE k.scope = 'category' AND k.category = rotate_key.category AND k.state = 'active';
    new_id := privacy_internal.category_key(category);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION privacy.rotate_key(text) IS
    'retire the active key of a category and start sealing with a new one; CALL privacy.reencrypt() rewrites old values';

CREATE FUNCTION privacy.rotate_master_key() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_fp text := privacy.master_key_fingerprint();
    k record;
    n integer := 0;
BEGIN
    FOR k IN SELECT * FROM privacy.data_keys
              WHERE wrapped_key IS NOT NULL AND wrapped_by <> current_fp
              ORDER BY id FOR UPDATE
    LOOP
        UPDATE privacy.data_keys d
           SET wrapped_key = privacy_internal.rewrap_key(k.id, k.scope, coalesce(k.category, k.name), k.subject_hash,
                                                 k.wrapped_key, k.wrapped_by),
               wrapped_by = current_fp
         WHERE d.id = k.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION privacy.rotate_master_key() IS
    'rewrap every data key under the current master key (the previous one must be loaded); no data is rewritten';

CREATE FUNCTION privacy.destroy_subject_key(subject text) RETURNS integer
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
COMMENT ON FUNCTION privacy.destroy_subject_key(text) IS
    'crypto-shredding: destroy the keys of a subject, so every copy of their encrypted values becomes unreadable';
