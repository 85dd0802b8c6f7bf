-- Data keys at scale (issue #14): new subjects' keys written in batches,
-- found by the transaction that created them, voided with it; the caches of
-- unwrapped keys (each backend's, the shared one): eviction, invalidation,
-- what key_cache_status() shows and who may call it.
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
CREATE ROLE kc_app LOGIN;
CREATE ROLE kc_admin LOGIN IN ROLE privacy_admin;
SELECT privacy.grant_purpose('kc_app', 'service');
CREATE TABLE people (id bigint PRIMARY KEY, email privacy.encrypted_text(contact),
                     name privacy.encrypted_text(contact));
SELECT privacy.protect_table('people', 'id');
GRANT SELECT, INSERT, UPDATE, DELETE ON people TO kc_app;
SET privacy.purpose = 'service';

-- 5,000 new subjects in one statement: more than one batch of keys, every
-- key stored once, active, and every value under its subject's key
INSERT INTO people SELECT g, 'user' || g || '@example.org', 'Name ' || g FROM generate_series(1, 5000) g;
SELECT count(*) AS subject_keys, count(DISTINCT subject_hash) AS subjects,
       count(*) FILTER (WHERE state = 'active') AS active
  FROM privacy.data_keys WHERE scope = 'subject';
SELECT count(*) AS rows, count(DISTINCT (privacy.envelope_info(email)).key_id) AS email_keys,
       bool_and((privacy.envelope_info(email)).key_id = (privacy.envelope_info(name)).key_id) AS one_key_a_row,
       bool_and(email::text = 'user' || id || '@example.org' AND name::text = 'Name ' || id) AS read_back
  FROM people;

-- the statement after the one that created a key finds it in the table,
-- in the same transaction: a key destroyed there is destroyed for good
BEGIN;
INSERT INTO people VALUES (6001, 'new@example.org', 'New');
SELECT count(*) AS stored FROM privacy.keys WHERE scope = 'subject' AND subject_hash_prefix =
       encode(substr(privacy.subject_hash('6001'), 1, 8), 'hex');
SELECT privacy.destroy_subject_key('6001') AS destroyed;
SELECT email, privacy.is_erased(email) FROM people WHERE id = 6001;
COMMIT;
SELECT email FROM people WHERE id = 6001;

-- a key created in a transaction that aborts is gone with it: the subject
-- gets a new key later, never the lost one
BEGIN;
INSERT INTO people VALUES (6002, 'lost@example.org', 'Lost');
SELECT email FROM people WHERE id = 6002;
ROLLBACK;
INSERT INTO people VALUES (6002, 'kept@example.org', 'Kept');
SELECT email, name FROM people WHERE id = 6002;
SELECT count(*) AS keys_of_6002 FROM privacy.keys
 WHERE subject_hash_prefix = encode(substr(privacy.subject_hash('6002'), 1, 8), 'hex');

-- ... and in a subtransaction rolled back: its keys are not stored, the
-- transaction's other keys are
BEGIN;
INSERT INTO people VALUES (6003, 'before@example.org', 'Before');
SAVEPOINT s;
INSERT INTO people VALUES (6004, 'undone@example.org', 'Undone');
ROLLBACK TO SAVEPOINT s;
INSERT INTO people VALUES (6005, 'after@example.org', 'After');
COMMIT;
SELECT id, email FROM people WHERE id BETWEEN 6003 AND 6005 ORDER BY id;
SELECT count(*) FILTER (WHERE subject_hash_prefix = encode(substr(privacy.subject_hash('6004'), 1, 8), 'hex')) AS keys_of_6004,
       count(*) FILTER (WHERE subject_hash_prefix IN (encode(substr(privacy.subject_hash('6003'), 1, 8), 'hex'),
                                                      encode(substr(privacy.subject_hash('6005'), 1, 8), 'hex'))) AS keys_of_6003_6005
  FROM privacy.keys;

-- a savepoint's keys released into its transaction are stored with it
BEGIN;
SAVEPOINT s;
INSERT INTO people VALUES (6006, 'released@example.org', 'Released');
RELEASE SAVEPOINT s;
COMMIT;
SELECT email FROM people WHERE id = 6006;

-- a key created under PL/pgSQL's exception block that fails: the block's
-- keys go, the function's others stay
CREATE FUNCTION add_two() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO people VALUES (6007, 'outer@example.org', 'Outer');
    BEGIN
        INSERT INTO people VALUES (6008, 'inner@example.org', 'Inner');
        RAISE EXCEPTION 'undo the inner insert';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
END
$$;
SELECT add_two();
SELECT id, email FROM people WHERE id IN (6007, 6008) ORDER BY id;
SELECT count(*) AS keys_of_6008 FROM privacy.keys
 WHERE subject_hash_prefix = encode(substr(privacy.subject_hash('6008'), 1, 8), 'hex');

-- COPY into a protected table creates the keys too
COPY people (id, email, name) FROM stdin;
7001	copy1@example.org	Copy One
7002	copy2@example.org	Copy Two
\.
SELECT id, email, (privacy.envelope_info(email)).key_id = (SELECT k.id FROM privacy.keys k
         WHERE k.subject_hash_prefix = encode(substr(privacy.subject_hash(p.id::text), 1, 8), 'hex')) AS own_key
  FROM people p WHERE id > 7000 ORDER BY id;

-- each backend's cache is bounded by privacy.backend_key_cache_size (a
-- superuser's setting): reading 5,000 subjects through a cache of 16 keys
-- evicts, and every value still reads back
SET privacy.backend_key_cache_size = 16;
SELECT count(*) AS read_back FROM people WHERE id <= 5000 AND email::text = 'user' || id || '@example.org';
SELECT cache, slots, used <= slots AS bounded, evictions > 0 AS evicted, locked
  FROM privacy.key_cache_status() WHERE cache = 'backend';
RESET privacy.backend_key_cache_size;
SET ROLE kc_app;
SET privacy.backend_key_cache_size = 100000;
RESET ROLE;
-- the shared cache: its size is set at server start
SELECT cache, slots > 0 AS sized, used > 0 AS holds_keys, bytes > 0 AS takes_memory
  FROM privacy.key_cache_status() WHERE cache = 'shared';

-- only privacy_admin (and superusers) see the caches
SET ROLE kc_app;
SELECT count(*) FROM privacy.key_cache_status();
RESET ROLE;
SET ROLE kc_admin;
SELECT count(*) AS caches FROM privacy.key_cache_status();
RESET ROLE;

-- an application role creates keys the same way
SET ROLE kc_app;
SET privacy.purpose = 'service';
INSERT INTO people SELECT g, 'app' || g || '@example.org', 'App ' || g FROM generate_series(8001, 8100) g;
SELECT count(*) AS rows, count(DISTINCT (privacy.envelope_info(email)).key_id) AS keys
  FROM people WHERE id > 8000;
RESET ROLE;

-- a rewrap (what a master-key rotation does) is the same key: values keep
-- opening in this backend and in the shared cache, nothing is invalidated
WITH r AS (
    UPDATE privacy.data_keys k
       SET wrapped_key = privacy_internal.rewrap_key(k.id, k.scope, coalesce(k.category, k.name),
                                                     k.subject_hash, k.wrapped_key, k.wrapped_by)
     WHERE k.scope = 'subject' AND k.wrapped_key IS NOT NULL
       AND k.subject_hash IN (SELECT privacy.subject_hash(g::text) FROM generate_series(8001, 8100) g)
    RETURNING 1)
SELECT count(*) AS rewrapped FROM r;
SELECT count(*) AS read_back FROM people WHERE id > 8000 AND email::text = 'app' || id || '@example.org';

DROP FUNCTION add_two();
DROP TABLE people;
DROP EXTENSION privacy;
DROP ROLE kc_app, kc_admin;
