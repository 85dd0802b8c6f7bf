-- Testing guesses without a purpose (issue #12, classes 2, 3, 8 and 9).
--
-- adv_app may SELECT the table but has declared no purpose; adv_bypass
-- has BYPASSRLS.  No operator, cast, comparison, sort or counter may tell
-- either of them anything about a value they may not open.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_bypass LOGIN BYPASSRLS;
SELECT privacy.grant_purpose('adv_app', 'marketing');
SELECT privacy.grant_purpose('adv_bypass', 'marketing');

CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text(contact, searchable),
                        iban privacy.encrypted_text(financial));
SET privacy.purpose = 'billing';
INSERT INTO customers VALUES (1, 'ana@example.org', 'DE01'), (2, 'ben@example.org', 'DE02');
RESET privacy.purpose;
GRANT SELECT ON customers TO adv_app, adv_bypass;
CREATE TABLE plain_copy AS SELECT * FROM customers;
GRANT SELECT ON plain_copy TO adv_app;


-- 2. comparisons through the type's own operators need the gate
SET ROLE adv_app;
SELECT count(*) FROM plain_copy c WHERE ROW(c.email, 0) = ROW('ana@example.org'::privacy.encrypted_text, 0);
SELECT count(*) FROM plain_copy c WHERE c.email = 'ana@example.org';
SELECT count(*) FROM (SELECT DISTINCT email FROM plain_copy) d;
SELECT email FROM plain_copy ORDER BY email LIMIT 1;
-- ... and so do records, arrays, hashing and JSON, which call the type's
-- own functions (hashed and sorted grouping, set operations, IS DISTINCT
-- FROM, ANY, the hash functions of records and arrays, JSON output)
CREATE TEMP TABLE attempts (n serial, q text);
INSERT INTO attempts (q) VALUES
  ('SELECT count(*) FROM (SELECT ROW(email) FROM plain_copy GROUP BY 1) s'),
  ('SET enable_hashagg = off'),
  ('SELECT count(*) FROM (SELECT ROW(email) FROM plain_copy GROUP BY 1) s'),
  ('RESET enable_hashagg'),
  ('SELECT count(*) FROM (SELECT ROW(email) FROM plain_copy UNION SELECT ROW(email) FROM plain_copy) s'),
  ('SELECT count(*) FROM (SELECT email FROM plain_copy EXCEPT SELECT email FROM plain_copy WHERE id = 1) s'),
  ('SELECT count(*) FROM (SELECT ARRAY[email] AS a FROM plain_copy) x JOIN (SELECT ARRAY[email] AS a FROM plain_copy) y ON x.a = y.a'),
  ('SELECT count(DISTINCT ARRAY[email]) FROM plain_copy'),
  ('SELECT count(*) FROM plain_copy a, plain_copy b WHERE a.email IS DISTINCT FROM b.email'),
  ('SELECT count(*) FROM plain_copy a, plain_copy b WHERE ROW(a.email, 0) IS NOT DISTINCT FROM ROW(b.email, 0)'),
  ('SELECT count(*) FROM plain_copy WHERE email = ANY (SELECT email FROM plain_copy WHERE id = 1)'),
  ('SELECT count(*) FROM (SELECT DISTINCT ON (email) id FROM plain_copy) s'),
  ('SELECT array_position(ARRAY(SELECT email FROM plain_copy), (SELECT email FROM plain_copy WHERE id = 2))'),
  ('SELECT count(DISTINCT hash_record(ROW(email, 0))) FROM plain_copy'),
  ('SELECT count(DISTINCT hash_array(ARRAY[email])) FROM plain_copy'),
  ('SELECT count(DISTINCT row_to_json(c)::text) FROM plain_copy c'),
  ('SELECT count(DISTINCT to_jsonb(c)) FROM plain_copy c'),
  ('SELECT count(DISTINCT ROW(email)::text) FROM plain_copy');
DO $$
DECLARE
    a record;
    refused int := 0;
    total int := 0;
BEGIN
    FOR a IN SELECT * FROM attempts ORDER BY n LOOP
        IF a.q LIKE 'SELECT%' THEN
            total := total + 1;
        END IF;
        BEGIN
            EXECUTE a.q;
            IF a.q LIKE 'SELECT%' THEN
                RAISE NOTICE 'answered without the gate: %', a.q;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            refused := refused + 1;
        END;
    END LOOP;
    RAISE NOTICE '% of % refused by the gate', refused, total;
END $$;
DROP TABLE attempts;
RESET ROLE;

-- 2. record-image comparisons (*<, *=, a sort USING them) compare stored
-- bytes, not plaintexts.  Were the search tag at the start of the stored
-- form, values with one plaintext would sort next to each other, and a
-- literal (sealed by anyone under the session's transient key, with the
-- guess's tag) would sort next to the values equal to the guess.
CREATE TABLE same_and_other (id int PRIMARY KEY, email privacy.encrypted_text(contact, searchable));
SET privacy.purpose = 'billing';
INSERT INTO same_and_other
SELECT i, CASE WHEN i <= 10 THEN 'same@example.org' ELSE 'other' || i || '@example.org' END
  FROM generate_series(1, 40) i;
RESET privacy.purpose;
GRANT SELECT ON same_and_other TO adv_app;
SET ROLE adv_app;
CREATE TEMP TABLE image_order AS
SELECT row_number() OVER (ORDER BY ROW(u.email) USING OPERATOR(pg_catalog.*<)) AS pos, u.id
  FROM (SELECT id, email FROM same_and_other
        UNION ALL SELECT 0, 'same@example.org'::privacy.encrypted_text) u;
-- and *= finds no stored value equal to the guess (nor, for that matter,
-- to another value with the same plaintext)
SELECT count(*) FILTER (WHERE a.r OPERATOR(pg_catalog.*=) g.r) AS equal_to_guess,
       count(*) FILTER (WHERE a.r OPERATOR(pg_catalog.*=) b.r) AS equal_to_another
  FROM (SELECT id, ROW(email) AS r FROM same_and_other) a
  JOIN (SELECT id, ROW(email) AS r FROM same_and_other) b ON a.id < b.id AND a.id <= 10 AND b.id <= 10
 CROSS JOIN (SELECT ROW('same@example.org'::privacy.encrypted_text) AS r) g;
RESET ROLE;
-- the ten equal values are not one run, and the guess does not sit beside them
SELECT max(pos) - min(pos) + 1 > 11 AS equal_values_and_guess_not_grouped
  FROM image_order WHERE id <= 10;
-- no stored searchable value starts with its tag any more (format byte 0x02)
SELECT DISTINCT get_byte(privacy_internal.encrypted_text_send(email), 0) AS format FROM same_and_other;
DROP TABLE image_order;

-- 3. a coercion that adds a search tag opens the value: only through the gate
SET ROLE adv_app;
SELECT iban::privacy.encrypted_text(financial, searchable) IS NOT NULL FROM plain_copy;
SELECT count(*) FROM plain_copy c WHERE c.iban::privacy.encrypted_text(financial, searchable) = 'DE01';
RESET ROLE;

-- 8. a protected table hides rows from row counts of EXPLAIN ANALYZE
SELECT privacy.protect_table('customers', 'id');
CREATE INDEX ON customers (email);
SET ROLE adv_app;
SET privacy.purpose = 'marketing';
SET enable_seqscan = off;
-- nobody consented: the table looks empty, and so do its plans' counters
SELECT count(*) FROM customers;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT id FROM customers WHERE email = 'ana@example.org';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT id FROM customers WHERE email = 'nobody@example.org';
RESET enable_seqscan;
RESET privacy.purpose;
RESET ROLE;
SELECT proname, proleakproof FROM pg_proc
 WHERE pronamespace IN ('privacy'::regnamespace, 'privacy_internal'::regnamespace) AND proleakproof
 ORDER BY 1;

-- 9. values of the encrypted types nested in arrays, composites, domains and
-- ranges would keep a session's transient key: such columns are refused
CREATE TYPE adv_pair AS (a privacy.encrypted_text, b int);
CREATE DOMAIN adv_email AS privacy.encrypted_text;
CREATE TABLE nested_array (id int, emails privacy.encrypted_text[]);
CREATE TABLE nested_composite (id int, p adv_pair);
CREATE TABLE nested_domain (id int, e adv_email);
CREATE TABLE later_array (id int);
ALTER TABLE later_array ADD COLUMN emails privacy.encrypted_bytea[];
SELECT relname FROM pg_class WHERE relname IN ('nested_array', 'nested_composite', 'nested_domain')
   OR (relname = 'later_array' AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'later_array'::regclass AND attname = 'emails'));
DROP TABLE IF EXISTS nested_array, nested_composite, nested_domain, later_array;
DROP DOMAIN adv_email;
DROP TYPE adv_pair;

DROP TABLE customers, plain_copy, same_and_other;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_bypass;
