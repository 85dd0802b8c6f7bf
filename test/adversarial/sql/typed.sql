-- The typed encrypted types under attack (issue #13): an application role
-- without a purpose and a BYPASSRLS role try casts, equality with plain
-- values, record comparisons, ordering and range operators, sorting,
-- aggregates, jsonb operators, the opclass support functions, EXPLAIN and
-- crafted literals on date, bigint, numeric and jsonb columns.  Each must
-- be refused or tell nothing; and a searchable column's order (the order
-- of its search tags) says nothing about the order of its dates.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('identity');
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['identity', 'contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_bypass LOGIN BYPASSRLS;
SELECT privacy.grant_purpose('adv_app', 'marketing');
SELECT privacy.grant_purpose('adv_bypass', 'marketing');

CREATE TABLE people (id int PRIMARY KEY,
                     born privacy.encrypted_date(identity, searchable),
                     msisdn privacy.encrypted_bigint(identity, searchable),
                     balance privacy.encrypted_numeric(identity, searchable),
                     profile privacy.encrypted_jsonb(identity));
SET privacy.purpose = 'support';
-- 30 people born on 30 consecutive days; ids 1 and 2 share a birthday
INSERT INTO people
SELECT i, date '1990-01-01' + CASE WHEN i = 2 THEN 0 ELSE i - 1 END, 33600000000 + i, i * 1.5,
       jsonb_build_object('lang', CASE WHEN i % 2 = 0 THEN 'fr' ELSE 'en' END, 'vip', i = 1)
  FROM generate_series(1, 30) i;
RESET privacy.purpose;
GRANT SELECT ON people TO adv_app, adv_bypass;

-- casts to the base type, to text, and the cast function by name
SET ROLE adv_app;
SELECT born::date FROM people WHERE id = 1;
SELECT born::text FROM people WHERE id = 1;
SELECT privacy.plaintext(born) FROM people WHERE id = 1;
SELECT msisdn::bigint FROM people WHERE id = 1;
SELECT balance::numeric FROM people WHERE id = 1;
SELECT to_jsonb(p) FROM people p WHERE id = 1;
SELECT row_to_json(p)::text FROM people p WHERE id = 1;
-- a purpose held but not allowed the category
SET privacy.purpose = 'marketing';
SELECT born::date FROM people WHERE id = 1;
RESET privacy.purpose;

-- equality with a guess, in every spelling: an oracle only for a purpose
SELECT count(*) FROM people WHERE born = '1990-01-01';
SELECT count(*) FROM people WHERE born = date '1990-01-01';
SELECT count(*) FROM people WHERE date '1990-01-01' = born;
SELECT count(*) FROM people WHERE born <> date '1990-01-01';
SELECT count(*) FROM people WHERE msisdn = 33600000001;
SELECT count(*) FROM people WHERE balance = 1.5;
SELECT count(*) FROM people WHERE born IN ('1990-01-01', '1990-01-02');
SELECT count(*) FROM people WHERE ROW(born, 0) = ROW('1990-01-01'::privacy.encrypted_date, 0);
SELECT count(*) FROM people WHERE ROW(born) IS NOT DISTINCT FROM ROW(date '1990-01-01'::privacy.encrypted_date);
SELECT count(*) FROM people WHERE born = ANY (ARRAY[date '1990-01-01']);
-- the operator classes' support functions, called by name
SELECT privacy_internal.encrypted_hash(born) FROM people WHERE id = 1;
SELECT privacy_internal.encrypted_cmp(a.born, b.born) FROM people a, people b WHERE a.id = 1 AND b.id = 2;
-- grouping, distinct, sorting, record comparisons: all compare search tags
SELECT count(DISTINCT born) FROM people;
SELECT born, count(*) FROM people GROUP BY born HAVING count(*) > 1;
SELECT id FROM people ORDER BY born LIMIT 1;
SELECT count(*) FROM people a, people b WHERE ROW(a.born, a.id) < ROW(b.born, b.id);
-- record images compare stored bytes, which start with a random nonce: the
-- two equal birthdays are not equal images
SELECT count(*) FROM (SELECT id, ROW(born) AS r FROM people) a, (SELECT id, ROW(born) AS r FROM people) b
 WHERE a.id = 1 AND b.id = 2 AND a.r OPERATOR(pg_catalog.*=) b.r;
-- ordering, ranges and aggregates are never answered, with or without a purpose
SELECT count(*) FROM people WHERE born < '1990-01-15';
SELECT count(*) FROM people WHERE born >= date '1990-01-15';
SELECT count(*) FROM people WHERE born BETWEEN '1990-01-01' AND '1990-01-15';
SELECT count(*) FROM people WHERE msisdn > 33600000010;
SELECT max(born) FROM people;
SELECT min(balance) FROM people;
SELECT sum(msisdn) FROM people;
SELECT count(*) FROM people WHERE born + 1 = '1990-01-02';
-- jsonb: no operator reaches inside the document
SELECT count(*) FROM people WHERE profile @> '{"vip": true}';
SELECT profile -> 'lang' FROM people WHERE id = 1;
SELECT count(*) FROM people WHERE profile ? 'vip';
SELECT jsonb_typeof(profile) FROM people WHERE id = 1;
SELECT count(*) FROM people WHERE profile = '{"vip": true}';
SELECT count(*) FROM people WHERE profile::jsonb @> '{"vip": true}';
-- sizes: a date, a bigint are the same size whatever they hold
SELECT count(DISTINCT pg_column_size(born)) AS date_sizes, count(DISTINCT pg_column_size(msisdn)) AS bigint_sizes
  FROM people;
RESET ROLE;

-- the same as a BYPASSRLS role
SET ROLE adv_bypass;
SELECT count(*) FROM people WHERE born = date '1990-01-01';
SELECT id FROM people ORDER BY born LIMIT 1;
SELECT born::date FROM people WHERE id = 1;
RESET ROLE;

-- EXPLAIN shows the query's own literal, never a stored value; EXPLAIN
-- ANALYZE runs the comparison, and so is refused
SET ROLE adv_app;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE born = date '1990-01-01';
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE born = (SELECT born FROM people WHERE id = 1);
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT id FROM people WHERE born = date '1990-01-01';
RESET ROLE;

-- crafted literals: an envelope copied from a row is not adopted from a
-- role that may not enter envelopes: it is input to parse as a date, and
-- the error does not repeat it
CREATE TABLE mine (id int, born privacy.encrypted_date(identity));
GRANT INSERT, SELECT ON mine TO adv_app;
SELECT born AS stolen FROM people WHERE id = 1 \gset
SET ROLE adv_app;
INSERT INTO mine VALUES (1, :'stolen');
RESET ROLE;
SELECT count(*) FROM mine;
SET ROLE adv_app;
INSERT INTO mine VALUES (2, 'pv1:AAAA');
INSERT INTO mine VALUES (3, '1990-02-30');
-- the base types' own errors would quote the value: ours name the type
INSERT INTO mine VALUES (4, 'my secret birthday');
RESET ROLE;

-- with a purpose: the order of a searchable column is the order of its
-- search tags, which says nothing about the dates (30 distinct dates in
-- chronological order by chance: 1 in 29!)
SET privacy.purpose = 'support';
SELECT array_agg(born::date ORDER BY born) = array_agg(born::date ORDER BY born::date) AS sorted_by_date
  FROM people WHERE id <> 2;
SELECT count(*) FROM people WHERE born = date '1990-01-01';
RESET privacy.purpose;

DROP TABLE people, mine;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_bypass;
