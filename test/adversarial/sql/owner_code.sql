-- The table owner's expressions, evaluated in the session of whoever
-- writes the table (issue #12; review).
--
-- An index expression and a generated column are the table owner's code,
-- but PostgreSQL evaluates them in the writing session, as the writing
-- role, with its declared purpose: an expression that casts an encrypted
-- column to text opens every value an application writes, and stores the
-- plaintext in the index file or in a plain column.  The owner, with no
-- purpose, then looks rows up by their plaintext (a B-tree index does not
-- evaluate its expression again) or reads the column.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_owner LOGIN;
SELECT privacy.grant_purpose('adv_app', 'billing');
GRANT CREATE ON SCHEMA public TO adv_owner;

SET ROLE adv_owner;
CREATE TABLE shop (id int PRIMARY KEY, email privacy.encrypted_text(contact, searchable));
CREATE FUNCTION shop_key(privacy.encrypted_text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT $1::text';
DO $$
BEGIN
    CREATE INDEX shop_by_plaintext ON shop (shop_key(email));
EXCEPTION WHEN OTHERS THEN
    NULL;	-- refused: as good
END $$;
DO $$
BEGIN
    ALTER TABLE shop ADD COLUMN email_copy text GENERATED ALWAYS AS (shop_key(email)) STORED;
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
GRANT SELECT, INSERT ON shop TO adv_app;
RESET ROLE;

-- the application writes, as it always does
SET ROLE adv_app;
SET privacy.purpose = 'billing';
INSERT INTO shop (id, email) VALUES (1, 'ana@example.org'), (2, 'ben@example.org');
RESET privacy.purpose;
RESET ROLE;

-- no plaintext in a file of the table or of its indexes
CHECKPOINT;
SELECT count(*) AS files_with_plaintext
  FROM pg_class c
 WHERE (c.oid = 'shop'::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'shop'::regclass))
   AND position('ana@example.org'::bytea IN pg_read_binary_file(pg_relation_filepath(c.oid))) > 0;

-- the owner, with no purpose, finds no row by its plaintext
SET ROLE adv_owner;
SET enable_seqscan = off;
DO $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM shop WHERE shop_key(email) = 'ana@example.org';
    RAISE NOTICE 'the owner found Ana by her plaintext: %', n > 0;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'the owner found Ana by her plaintext: %', false;
END $$;
RESET enable_seqscan;
RESET ROLE;

DROP TABLE shop;
DROP FUNCTION shop_key(privacy.encrypted_text);
REVOKE CREATE ON SCHEMA public FROM adv_owner;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_owner;
