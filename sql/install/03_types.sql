/*
 * 03_types.sql — the encrypted types, their casts, operators and inspection (C: types.c,
 * envelope.c).
 */

------------------------------------------------------------------------------
-- Encrypted types.  The type modifier is the column's category (and
-- optionally "searchable"): privacy.encrypted_text(contact, searchable).
------------------------------------------------------------------------------
CREATE TYPE privacy.encrypted_text;
CREATE TYPE privacy.encrypted_bytea;

CREATE FUNCTION privacy_internal.encrypted_text_in(cstring, oid, integer) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_in' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_out(privacy.encrypted_text) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_text_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_recv(internal, oid, integer) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_recv' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_text_send(privacy.encrypted_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_send' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_in(cstring, oid, integer) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_in' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_out(privacy.encrypted_bytea) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_bytea_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_recv(internal, oid, integer) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_recv' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea_send(privacy.encrypted_bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_send' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_typmod_in' LANGUAGE C STRICT IMMUTABLE;
CREATE FUNCTION privacy_internal.encrypted_typmod_out(integer) RETURNS cstring
    AS 'MODULE_PATHNAME', 'encrypted_typmod_out' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_typanalyze(internal) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_typanalyze' LANGUAGE C STRICT;

-- Ciphertext does not compress: external storage skips pglz attempts.
CREATE TYPE privacy.encrypted_text (
    INPUT = privacy_internal.encrypted_text_in, OUTPUT = privacy_internal.encrypted_text_out,
    RECEIVE = privacy_internal.encrypted_text_recv, SEND = privacy_internal.encrypted_text_send,
    TYPMOD_IN = privacy_internal.encrypted_typmod_in, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
    ANALYZE = privacy_internal.encrypted_typanalyze,
    INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U'
);
CREATE TYPE privacy.encrypted_bytea (
    INPUT = privacy_internal.encrypted_bytea_in, OUTPUT = privacy_internal.encrypted_bytea_out,
    RECEIVE = privacy_internal.encrypted_bytea_recv, SEND = privacy_internal.encrypted_bytea_send,
    TYPMOD_IN = privacy_internal.encrypted_typmod_in, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
    ANALYZE = privacy_internal.encrypted_typanalyze,
    INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U'
);
COMMENT ON TYPE privacy.encrypted_text IS 'text stored encrypted (XChaCha20-Poly1305); type modifier: (category[, searchable])';
COMMENT ON TYPE privacy.encrypted_bytea IS 'bytea stored encrypted (XChaCha20-Poly1305); type modifier: (category[, searchable])';

-- Assignment to a classified column reseals under the column's category key.
-- STABLE, not VOLATILE: a fresh nonce each call, but the same value (Citus
-- refuses VOLATILE functions in a distributed UPDATE, and evaluates STABLE
-- ones on the coordinator, so a value travels to the worker sealed).
CREATE FUNCTION privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_typmod' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_typmod' LANGUAGE C STRICT STABLE;
CREATE CAST (privacy.encrypted_text AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean) AS IMPLICIT;
CREATE CAST (privacy.encrypted_bytea AS privacy.encrypted_bytea)
    WITH FUNCTION privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean) AS IMPLICIT;

-- Plain values go in by assignment (INSERT ... SELECT, ALTER COLUMN TYPE);
-- plaintext comes out only by an explicit cast, through the decryption gate.
CREATE FUNCTION privacy_internal.encrypted_text(text, integer, boolean) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'text_to_encrypted_text' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.encrypted_bytea(bytea, integer, boolean) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'bytea_to_encrypted_bytea' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.plaintext(privacy.encrypted_text) RETURNS text
    AS 'MODULE_PATHNAME', 'encrypted_text_to_text' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.plaintext(privacy.encrypted_bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_to_bytea' LANGUAGE C STRICT STABLE;
CREATE CAST (text AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(text, integer, boolean) AS ASSIGNMENT;
CREATE CAST (character varying AS privacy.encrypted_text)
    WITH FUNCTION privacy_internal.encrypted_text(text, integer, boolean) AS ASSIGNMENT;
CREATE CAST (bytea AS privacy.encrypted_bytea)
    WITH FUNCTION privacy_internal.encrypted_bytea(bytea, integer, boolean) AS ASSIGNMENT;
CREATE CAST (privacy.encrypted_text AS text)
    WITH FUNCTION privacy.plaintext(privacy.encrypted_text);
CREATE CAST (privacy.encrypted_bytea AS bytea)
    WITH FUNCTION privacy.plaintext(privacy.encrypted_bytea);

-- Equality search compares blind-index tags (only columns classified as
-- searchable keep them).  The order of < and > is the order of the tags,
-- which says nothing about the plaintext: it exists for btree only.
CREATE FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_eq' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ne' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_lt(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_lt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_le(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_le' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_gt(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_gt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ge(privacy.encrypted_text, privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ge' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash(privacy.encrypted_text) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_eq(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_eq' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ne(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ne' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_lt(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_lt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_le(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_le' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_gt(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_gt' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_ge(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_ge' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash(privacy.encrypted_bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE OPERATOR pg_catalog.= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.< (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_lt, COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_le, COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.> (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_gt, COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR pg_catalog.>= (LEFTARG = privacy.encrypted_text, RIGHTARG = privacy.encrypted_text,
    FUNCTION = privacy_internal.encrypted_ge, COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS privacy.encrypted_text_ops DEFAULT FOR TYPE privacy.encrypted_text USING btree AS
    OPERATOR 1 pg_catalog.<, OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=,
    OPERATOR 4 pg_catalog.>=, OPERATOR 5 pg_catalog.>,
    FUNCTION 1 privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text);
CREATE OPERATOR CLASS privacy.encrypted_text_hash_ops DEFAULT FOR TYPE privacy.encrypted_text USING hash AS
    OPERATOR 1 pg_catalog.=,
    FUNCTION 1 privacy_internal.encrypted_hash(privacy.encrypted_text),
    FUNCTION 2 privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint);

CREATE OPERATOR pg_catalog.= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.< (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_lt, COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_le, COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.> (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_gt, COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR pg_catalog.>= (LEFTARG = privacy.encrypted_bytea, RIGHTARG = privacy.encrypted_bytea,
    FUNCTION = privacy_internal.encrypted_ge, COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS privacy.encrypted_bytea_ops DEFAULT FOR TYPE privacy.encrypted_bytea USING btree AS
    OPERATOR 1 pg_catalog.<, OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=,
    OPERATOR 4 pg_catalog.>=, OPERATOR 5 pg_catalog.>,
    FUNCTION 1 privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea);
CREATE OPERATOR CLASS privacy.encrypted_bytea_hash_ops DEFAULT FOR TYPE privacy.encrypted_bytea USING hash AS
    OPERATOR 1 pg_catalog.=,
    FUNCTION 1 privacy_internal.encrypted_hash(privacy.encrypted_bytea),
    FUNCTION 2 privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint);

------------------------------------------------------------------------------
-- Inspection and maintenance of encrypted values
------------------------------------------------------------------------------
CREATE TYPE privacy.envelope_info AS (
    format_version integer, key_id integer, category text, searchable boolean,
    stored_bytes integer, plaintext_bytes integer
);
CREATE FUNCTION privacy.envelope_info(privacy.encrypted_text) RETURNS privacy.envelope_info
    AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.envelope_info(privacy.encrypted_bytea) RETURNS privacy.envelope_info
    AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION privacy.envelope_info(privacy.encrypted_text) IS
    'what an encrypted value says about itself (key, category, sizes), without opening it';
CREATE FUNCTION privacy.is_erased(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy.is_erased(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION privacy.is_erased(privacy.encrypted_text) IS
    'true if the key that sealed the value was destroyed (the value was crypto-shredded)';
CREATE FUNCTION privacy_internal.reseal(privacy.encrypted_text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_reseal' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy_internal.reseal(privacy.encrypted_bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_reseal' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.seal_for_subject(privacy.encrypted_text, subject text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'encrypted_text_seal_for_subject' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION privacy.seal_for_subject(privacy.encrypted_bytea, subject text) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'encrypted_bytea_seal_for_subject' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION privacy.seal_for_subject(privacy.encrypted_text, text) IS
    'reseal a value under its subject''s key (same category), so that privacy.destroy_subject_key() shreds it';
CREATE FUNCTION privacy_internal.needs_reseal(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.needs_reseal(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE;
-- Whether a value is still under a category's key: what the reseal of a
-- newly protected table moves under its subject's key (06_reseal.sql).
CREATE FUNCTION privacy_internal.under_category_key(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.under_category_key(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE;
-- An erased value's search tag is replaced (it would still match the
-- plaintext's), without opening anything.
CREATE FUNCTION privacy_internal.shred_tag(privacy.encrypted_text) RETURNS privacy.encrypted_text
    AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE;
CREATE FUNCTION privacy_internal.shred_tag(privacy.encrypted_bytea) RETURNS privacy.encrypted_bytea
    AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE;

------------------------------------------------------------------------------
-- The typed encrypted types (#13): date, timestamptz, numeric, integer,
-- bigint and jsonb, one type per base type (privacy.encrypted_<base>), so
-- that a column reads back as its own type and an envelope of one cannot
-- be replayed as another (the envelope's kind).  One C function per role
-- serves them all (types.c); the statements are generated from this list.
-- Equality search (searchable) compares search tags like encrypted_text;
-- <, <=, > and >= raise an error (ordering and ranges are never answered
-- without decrypting), and the btree operator class that unique indexes
-- and equality search need uses operators in privacy_internal, which say
-- nothing about the plaintext's order.  jsonb has no equality search.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.typed_bases(
    OUT name text, OUT base regtype, OUT searchable boolean, OUT also_from regtype[])
    RETURNS SETOF record LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('encrypted_date', 'date'::regtype, true, '{}'::regtype[]),
           ('encrypted_timestamptz', 'timestamptz', true, '{}'),
           ('encrypted_numeric', 'numeric', true, '{integer,bigint}'),
           ('encrypted_integer', 'integer', true, '{}'),
           ('encrypted_bigint', 'bigint', true, '{integer}'),
           ('encrypted_jsonb', 'jsonb', false, '{}')
$$;
COMMENT ON FUNCTION privacy_internal.typed_bases() IS
    'the typed encrypted types: base type, whether equality search is available, other types cast to it';
ALTER FUNCTION privacy_internal.typed_bases() ROWS 6;

CREATE FUNCTION privacy_internal.is_encrypted_type(oid) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_is_encrypted_type' LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'encrypted_typmod_in_unsearchable' LANGUAGE C STRICT IMMUTABLE;

DO $types$
DECLARE
    b record;
    src regtype;
    t text;
    op text;
    ops text[] := ARRAY['<', '<=', '>', '>='];
    commutes text[] := ARRAY['>', '>=', '<', '<='];
    negates text[] := ARRAY['>=', '>', '<=', '<'];
    fns text[] := ARRAY['lt', 'le', 'gt', 'ge'];
    i integer;
BEGIN
    FOR b IN SELECT * FROM privacy_internal.typed_bases() LOOP
        t := 'privacy.' || b.name;
        EXECUTE format('CREATE TYPE %s', t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_in(cstring, oid, integer) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_in' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_out(%2$s) RETURNS cstring
            AS 'MODULE_PATHNAME', 'encrypted_typed_out' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_recv(internal, oid, integer) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_recv' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s_send(%2$s) RETURNS bytea
            AS 'MODULE_PATHNAME', 'encrypted_typed_send' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format($f$CREATE TYPE %2$s (
            INPUT = privacy_internal.%1$s_in, OUTPUT = privacy_internal.%1$s_out,
            RECEIVE = privacy_internal.%1$s_recv, SEND = privacy_internal.%1$s_send,
            TYPMOD_IN = privacy_internal.%3$s, TYPMOD_OUT = privacy_internal.encrypted_typmod_out,
            ANALYZE = privacy_internal.encrypted_typanalyze,
            INTERNALLENGTH = VARIABLE, STORAGE = external, CATEGORY = 'U')$f$,
            b.name, t, CASE WHEN b.searchable THEN 'encrypted_typmod_in' ELSE 'encrypted_jsonb_typmod_in' END);
        EXECUTE format($f$COMMENT ON TYPE %s IS %L$f$, t,
            format('%s stored encrypted (XChaCha20-Poly1305); type modifier: (category%s)',
                   b.base, CASE WHEN b.searchable THEN '[, searchable]' ELSE '' END));

        -- assignment reseals under the column's category key; plain values
        -- go in by assignment, plaintext comes out by an explicit cast
        EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s(%2$s, integer, boolean) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_typmod' LANGUAGE C STRICT STABLE$f$, b.name, t);
        EXECUTE format('CREATE CAST (%1$s AS %1$s) WITH FUNCTION privacy_internal.%2$s(%1$s, integer, boolean) AS IMPLICIT',
                       t, b.name);
        -- stable, not volatile: a parameter cast to the type ($1::privacy.encrypted_date)
        -- is then an index condition (only its search tag is compared)
        FOREACH src IN ARRAY ARRAY[b.base] || b.also_from LOOP
            EXECUTE format($f$CREATE FUNCTION privacy_internal.%1$s(%3$s, integer, boolean) RETURNS %2$s
                AS 'MODULE_PATHNAME', 'encrypted_typed_from_base' LANGUAGE C STRICT STABLE$f$, b.name, t, src);
            EXECUTE format('CREATE CAST (%3$s AS %2$s) WITH FUNCTION privacy_internal.%1$s(%3$s, integer, boolean) AS ASSIGNMENT',
                           b.name, t, src);
        END LOOP;
        EXECUTE format($f$CREATE FUNCTION privacy.plaintext(%1$s) RETURNS %2$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_to_base' LANGUAGE C STRICT STABLE$f$, t, b.base);
        EXECUTE format('CREATE CAST (%1$s AS %2$s) WITH FUNCTION privacy.plaintext(%1$s)', t, b.base);

        -- no ordering, no ranges, against the type itself or a plain value
        FOREACH src IN ARRAY ARRAY[t::regtype, b.base] || b.also_from LOOP
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_no_order(%1$s, %2$s) RETURNS boolean
                AS 'MODULE_PATHNAME', 'encrypted_no_order' LANGUAGE C STRICT IMMUTABLE$f$, t, src);
            FOREACH op IN ARRAY ops LOOP
                EXECUTE format('CREATE OPERATOR pg_catalog.%3$s (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_no_order)', t, src, op);
            END LOOP;
        END LOOP;

        IF b.searchable THEN
            FOREACH op IN ARRAY ARRAY['eq', 'ne', 'lt', 'le', 'gt', 'ge'] LOOP
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_%2$s(%1$s, %1$s) RETURNS boolean
                    AS 'MODULE_PATHNAME', 'encrypted_%2$s' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t, op);
            END LOOP;
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_cmp(%1$s, %1$s) RETURNS integer
                AS 'MODULE_PATHNAME', 'encrypted_cmp' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_hash(%1$s) RETURNS integer
                AS 'MODULE_PATHNAME', 'encrypted_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_hash_extended(%1$s, bigint) RETURNS bigint
                AS 'MODULE_PATHNAME', 'encrypted_hash_extended' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE$f$, t);
            EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %1$s, RIGHTARG = %1$s, '
                           'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                           'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES)', t);
            EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %1$s, RIGHTARG = %1$s, '
                           'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                           'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t);
            FOR i IN 1 .. 4 LOOP
                EXECUTE format('CREATE OPERATOR privacy_internal.%2$s (LEFTARG = %1$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_%3$s, '
                               'COMMUTATOR = OPERATOR(privacy_internal.%4$s), NEGATOR = OPERATOR(privacy_internal.%5$s))',
                               t, ops[i], fns[i], commutes[i], negates[i]);
            END LOOP;
            -- col = 42, col = $1 (a typed parameter): the plain value is
            -- cast to the encrypted type (its search tag), in an SQL function
            -- that the planner inlines, so that an index serves it
            FOREACH src IN ARRAY ARRAY[b.base] || b.also_from LOOP
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_eq(%1$s, %2$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $1 OPERATOR(pg_catalog.=) $2::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_eq(%2$s, %1$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $2 OPERATOR(pg_catalog.=) $1::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_ne(%1$s, %2$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $1 OPERATOR(pg_catalog.<>) $2::%1$s'$f$, t, src);
                EXECUTE format($f$CREATE FUNCTION privacy_internal.encrypted_ne(%2$s, %1$s) RETURNS boolean
                    LANGUAGE sql STABLE AS 'SELECT $2 OPERATOR(pg_catalog.<>) $1::%1$s'$f$, t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                               'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.= (LEFTARG = %2$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_eq, COMMUTATOR = OPERATOR(pg_catalog.=), '
                               'NEGATOR = OPERATOR(pg_catalog.<>), RESTRICT = eqsel, JOIN = eqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %1$s, RIGHTARG = %2$s, '
                               'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                               'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t, src);
                EXECUTE format('CREATE OPERATOR pg_catalog.<> (LEFTARG = %2$s, RIGHTARG = %1$s, '
                               'FUNCTION = privacy_internal.encrypted_ne, COMMUTATOR = OPERATOR(pg_catalog.<>), '
                               'NEGATOR = OPERATOR(pg_catalog.=), RESTRICT = neqsel, JOIN = neqjoinsel)', t, src);
            END LOOP;
            EXECUTE format('CREATE OPERATOR CLASS privacy.%1$s_ops DEFAULT FOR TYPE %2$s USING btree AS '
                           'OPERATOR 1 privacy_internal.<, OPERATOR 2 privacy_internal.<=, OPERATOR 3 pg_catalog.=, '
                           'OPERATOR 4 privacy_internal.>=, OPERATOR 5 privacy_internal.>, '
                           'FUNCTION 1 privacy_internal.encrypted_cmp(%2$s, %2$s)', b.name, t);
            EXECUTE format('CREATE OPERATOR CLASS privacy.%1$s_hash_ops DEFAULT FOR TYPE %2$s USING hash AS '
                           'OPERATOR 1 pg_catalog.=, FUNCTION 1 privacy_internal.encrypted_hash(%2$s), '
                           'FUNCTION 2 privacy_internal.encrypted_hash_extended(%2$s, bigint)', b.name, t);
        END IF;

        -- inspection and maintenance, as for encrypted_text
        EXECUTE format($f$CREATE FUNCTION privacy.envelope_info(%1$s) RETURNS privacy.envelope_info
            AS 'MODULE_PATHNAME', 'encrypted_info' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy.is_erased(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_is_erased' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.reseal(%1$s) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_reseal' LANGUAGE C STRICT VOLATILE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy.seal_for_subject(%1$s, subject text) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'encrypted_typed_seal_for_subject' LANGUAGE C STRICT VOLATILE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.needs_reseal(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_needs_reseal' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.under_category_key(%1$s) RETURNS boolean
            AS 'MODULE_PATHNAME', 'encrypted_under_category_key' LANGUAGE C STRICT STABLE$f$, t);
        EXECUTE format($f$CREATE FUNCTION privacy_internal.shred_tag(%1$s) RETURNS %1$s
            AS 'MODULE_PATHNAME', 'privacy_shred_tag' LANGUAGE C STRICT IMMUTABLE$f$, t);
    END LOOP;
END
$types$;
-- Whether a value still carries a search tag that an equality search can
-- match: one that shred_tag has not replaced (privacy.verify_erasure).
CREATE FUNCTION privacy_internal.live_search_tag(privacy.encrypted_text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_live_search_tag' LANGUAGE C STRICT STABLE;
CREATE FUNCTION privacy_internal.live_search_tag(privacy.encrypted_bytea) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_live_search_tag' LANGUAGE C STRICT STABLE;
