-- Typed encrypted types (issue #13): date, timestamptz, numeric, integer,
-- bigint and jsonb columns are encrypted like text, read back as their own
-- type through the decryption gate, answer equality search where opted in,
-- and never ordering or ranges.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_category('identity', 'date of birth');
SELECT privacy.create_category('financial', 'balances');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact', 'identity']);
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'identity', 'financial']);
CREATE ROLE typ_app LOGIN;
SELECT privacy.grant_purpose('typ_app', 'support');

-- A customer table as people have it: nothing here is text.
CREATE TABLE customers (
    id integer PRIMARY KEY,
    birth_date date NOT NULL,
    last_seen timestamptz,
    balance numeric(12,2),
    points integer,
    msisdn bigint,
    profile jsonb);
INSERT INTO customers VALUES
    (1, '1990-05-01', '2024-01-02 03:04:05+00', 12.50, 7, 33612345678, '{"lang": "fr", "tags": ["vip"]}'),
    (2, '1985-12-31', '2023-06-30 23:59:59.5+00', 1.5, -3, 4915112345678, '{}'),
    (3, '1990-05-01', NULL, 0, 0, 0, '[]');

-- classify converts each column to its encrypted type
SELECT privacy.classify('customers', 'birth_date', 'identity', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'last_seen', 'contact', encrypt => true);
SELECT privacy.classify('customers', 'balance', 'financial', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'points', 'contact', encrypt => true);
SELECT privacy.classify('customers', 'msisdn', 'contact', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'profile', 'contact', encrypt => true, searchable => true);
SELECT privacy.classify('customers', 'profile', 'contact', encrypt => true);
SELECT column_name, category, searchable, encrypted, column_type
  FROM privacy.classified_columns ORDER BY column_name;
SELECT attname, attnotnull FROM pg_attribute
 WHERE attrelid = 'customers'::regclass AND attname = 'birth_date';

-- what cannot be converted says why, and changes nothing
CREATE TABLE odd (id integer PRIMARY KEY, active boolean, born date UNIQUE,
                  score numeric CHECK (score > 0), seen timestamptz, joined date);
CREATE INDEX odd_seen ON odd (seen);
CREATE INDEX odd_joined_year ON odd (extract(year FROM joined));
SELECT privacy.classify('odd', 'active', 'contact', encrypt => true);
SELECT privacy.classify('odd', 'born', 'identity', encrypt => true);
SELECT privacy.classify('odd', 'seen', 'contact', encrypt => true);
SELECT privacy.classify('odd', 'score', 'financial', encrypt => true);
SELECT privacy.classify('odd', 'joined', 'identity', encrypt => true, searchable => true);
SELECT privacy.classify('odd', 'born', 'identity', encrypt => true, searchable => true);
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'odd'::regclass AND attnum > 0 ORDER BY attnum;
-- a type modifier that is not a category, and equality search on jsonb
CREATE TABLE bad (a privacy.encrypted_date("Contact"));
CREATE TABLE bad (a privacy.encrypted_jsonb(contact, searchable));
CREATE TABLE bad (a privacy.encrypted_numeric(contact, 10));

GRANT SELECT, INSERT, UPDATE ON customers TO typ_app;
SET ROLE typ_app;
-- no purpose: refused
SELECT birth_date FROM customers WHERE id = 1;
SELECT birth_date::date FROM customers WHERE id = 1;
-- with a purpose: each value is its own type again
SET privacy.purpose = 'support';
SELECT id, birth_date, last_seen, points, msisdn, profile FROM customers ORDER BY id;
SELECT birth_date::date + 1 AS next_day, pg_typeof(birth_date::date),
       extract(year FROM last_seen::timestamptz) AS year,
       points::integer * 2 AS double, msisdn::bigint % 1000 AS tail,
       profile::jsonb ->> 'lang' AS lang, pg_typeof(profile::jsonb)
  FROM customers WHERE id = 1;
-- a category the purpose is not allowed
SELECT balance FROM customers WHERE id = 1;
SELECT balance::numeric FROM customers WHERE id = 1;
SET privacy.purpose = 'billing';
RESET ROLE;
SET ROLE typ_app;
RESET privacy.purpose;

-- every way in: literals, typed values, other integer types, now(),
-- prepared statements with untyped and typed parameters, COPY
SET privacy.purpose = 'support';
INSERT INTO customers (id, birth_date, last_seen, points, msisdn, profile)
VALUES (4, '2001-02-03', now(), 42, 42, '{"a": [1, 2.50]}');
INSERT INTO customers (id, birth_date, points, msisdn) VALUES (5, date '1970-01-01', 2147483647, 9223372036854775807);
PREPARE ins(integer, unknown, unknown) AS INSERT INTO customers (id, birth_date, msisdn) VALUES ($1, $2, $3);
EXECUTE ins(6, '1999-12-31', '123');
PREPARE ins_typed(integer, date, bigint, jsonb) AS
    INSERT INTO customers (id, birth_date, msisdn, profile) VALUES ($1, $2, $3, $4);
EXECUTE ins_typed(7, '1960-07-14', 7, '{"x": null}');
COPY customers (id, birth_date, last_seen, points, msisdn, profile) FROM stdin;
8	1975-03-04	2020-02-29 12:00:00+00	8	88	{"copied": true}
\.
SELECT id, birth_date, points, msisdn, profile FROM customers WHERE id >= 4 ORDER BY id;
SELECT id, last_seen::timestamptz > now() - interval '1 hour' AS recent FROM customers WHERE id = 4;
-- bad input names the type, never the value (it may be personal data)
INSERT INTO customers (id, birth_date) VALUES (9, '1990-13-45');
INSERT INTO customers (id, birth_date, points) VALUES (9, '1990-01-01', '12x');
INSERT INTO customers (id, birth_date, points) VALUES (9, '1990-01-01', 2147483648);
INSERT INTO customers (id, birth_date, profile) VALUES (9, '1990-01-01', '{"unclosed": ');
EXECUTE ins(9, 'not a date', '1');
SELECT count(*) FROM customers WHERE id = 9;
RESET ROLE;

-- equality search: a literal, an untyped parameter, a typed one cast to the
-- encrypted type, joins; numerics equal in value match whatever their scale
SET privacy.purpose = 'billing';
SELECT id FROM customers WHERE birth_date = '1990-05-01' ORDER BY id;
SELECT id FROM customers WHERE birth_date <> '1990-05-01' ORDER BY id;
PREPARE by_birth(unknown) AS SELECT id FROM customers WHERE birth_date = $1 ORDER BY id;
EXECUTE by_birth('1985-12-31');
PREPARE by_birth_typed(date) AS SELECT id FROM customers WHERE birth_date = $1::privacy.encrypted_date ORDER BY id;
EXECUTE by_birth_typed('1985-12-31');
SELECT id FROM customers WHERE birth_date = '1985-12-31'::date;
SELECT id FROM customers WHERE date '1985-12-31' = birth_date;
SELECT id FROM customers WHERE balance = '1.50';
SELECT id FROM customers WHERE balance = 12.5;
SELECT id FROM customers WHERE balance = 0;
SELECT id FROM customers WHERE msisdn = 33612345678;
SELECT id FROM customers WHERE msisdn = 42 OR 123 = msisdn ORDER BY id;
SELECT id FROM customers WHERE msisdn <> 0 AND msisdn <> 42 ORDER BY id;
SELECT a.id, b.id FROM customers a JOIN customers b ON a.birth_date = b.birth_date AND a.id < b.id;
SELECT birth_date, count(*) FROM customers GROUP BY birth_date HAVING count(*) > 1;
-- through an index, not a decrypting scan
CREATE INDEX customers_birth ON customers (birth_date);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE birth_date = '1990-05-01';
SELECT id FROM customers WHERE birth_date = '1990-05-01' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE birth_date = date '1990-05-01';
EXPLAIN (COSTS OFF) EXECUTE by_birth_typed('1985-12-31');
RESET enable_seqscan;
-- a unique constraint holds on the plaintext
CREATE UNIQUE INDEX customers_msisdn ON customers (msisdn);
INSERT INTO customers (id, birth_date, msisdn) VALUES (10, '2000-01-01', 33612345678);
DROP INDEX customers_msisdn;

-- ordering and ranges are never answered without decrypting
SELECT id FROM customers WHERE birth_date < '1990-01-01';
SELECT id FROM customers WHERE birth_date BETWEEN '1980-01-01' AND '1990-01-01';
SELECT id FROM customers WHERE balance >= 1;
SELECT id FROM customers WHERE last_seen > now() - interval '1 day';
SELECT id FROM customers WHERE profile < '{}'::jsonb;
SELECT max(birth_date) FROM customers;
SELECT id FROM customers ORDER BY last_seen;
SELECT id FROM customers ORDER BY birth_date USING <;
SELECT id FROM customers WHERE profile @> '{"lang": "fr"}';
SELECT profile -> 'lang' FROM customers;
SELECT id FROM customers WHERE profile = '{}';
-- the plaintext, with a purpose, decrypting every row
SELECT id FROM customers WHERE birth_date::date < '1980-01-01' ORDER BY id;
SELECT id FROM customers WHERE profile::jsonb @> '{"lang": "fr"}';
SELECT id, birth_date FROM customers WHERE id <= 3 ORDER BY birth_date::date, id;

-- a masked value is text "********" and NULL as its base type
SET privacy.on_denied = 'mask';
SET privacy.purpose = 'support';
SELECT id, balance, balance::numeric AS as_numeric, balance::numeric IS NULL AS is_null
  FROM customers WHERE id = 1;
RESET privacy.on_denied;

-- the date sealed is the date, not its text: typed under one DateStyle,
-- it reads back as the same day under another
SET privacy.purpose = 'billing';
SET DateStyle = 'SQL, DMY';
INSERT INTO customers (id, birth_date) VALUES (11, '01/02/2000');
SET DateStyle = 'ISO, MDY';
SELECT birth_date, birth_date = '2000-02-01' AS feb_1 FROM customers WHERE id = 11;
RESET DateStyle;
DELETE FROM customers WHERE id = 11;

-- binding: the envelope's kind is authenticated, so an envelope of one
-- typed column moved into another type's column does not open
RESET privacy.purpose;
CREATE TABLE moved (d privacy.encrypted_date(contact), n privacy.encrypted_integer(contact));
SELECT msisdn AS bigint_envelope, birth_date AS date_envelope FROM customers WHERE id = 1 \gset
INSERT INTO moved (d) VALUES (:'bigint_envelope');
INSERT INTO moved (n) VALUES (:'date_envelope');
SET privacy.purpose = 'support';
SELECT d FROM moved WHERE d IS NOT NULL;
SELECT n FROM moved WHERE n IS NOT NULL;
RESET privacy.purpose;
-- a dump/restore role handles envelopes; casting to the base type needs a purpose
SELECT birth_date::text LIKE 'pv1:%' AS envelope FROM customers WHERE id = 1;
SELECT birth_date::date FROM customers WHERE id = 1;

-- sizes: fixed-size types leak no length
SELECT (privacy.envelope_info(birth_date)).plaintext_bytes AS date_bytes,
       (privacy.envelope_info(msisdn)).plaintext_bytes AS bigint_bytes,
       (privacy.envelope_info(points)).plaintext_bytes AS integer_bytes,
       (privacy.envelope_info(last_seen)).plaintext_bytes AS timestamptz_bytes,
       (privacy.envelope_info(birth_date)).stored_bytes AS date_stored,
       (privacy.envelope_info(points)).stored_bytes AS integer_stored
  FROM customers WHERE id = 1;

-- protection: values move under their subject's key, and erasure shreds them
SELECT privacy.protect_table('customers', 'id');
SELECT (privacy.envelope_info(birth_date)).key_id = (privacy.envelope_info(profile)).key_id AS same_key,
       (privacy.envelope_info(birth_date)).key_id <> (SELECT (privacy.envelope_info(birth_date)).key_id
                                                        FROM customers WHERE id = 2) AS own_key
  FROM customers WHERE id = 1;
-- the subject report gives dates, numbers and documents as JSON values
SET privacy.purpose = 'billing';
SELECT jsonb_pretty(privacy.subject_report('2') -> 'data' -> 0 -> 'rows' -> 0 -> 'values');
RESET privacy.purpose;
SELECT privacy.destroy_subject_key('1');
SET privacy.purpose = 'billing';
SELECT id, birth_date, birth_date::date IS NULL AS gone, privacy.is_erased(birth_date),
       privacy.is_erased(balance), profile
  FROM customers WHERE id IN (1, 2) ORDER BY id;
-- an erased value's search tag is gone after reencrypt
SELECT count(*) FROM customers WHERE birth_date = '1990-05-01';
SET client_min_messages = warning;
CALL privacy.reencrypt('customers', 'birth_date');
RESET client_min_messages;
SELECT count(*) FROM customers WHERE birth_date = '1990-05-01';
-- erasure anonymizes typed columns: the receipt names them, the rows keep
-- nothing of the subject
CREATE ROLE typ_officer LOGIN IN ROLE privacy_officer;
CREATE TABLE visits (id bigint PRIMARY KEY, customer_id integer, at timestamptz NOT NULL,
                     born privacy.encrypted_date(identity), prefs privacy.encrypted_jsonb(identity));
SELECT privacy.protect_table('visits', 'customer_id');
SELECT privacy.set_retention('visits', 'at', '10 years', 'anonymize', ARRAY['born', 'prefs']);
SET privacy.purpose = 'support';
INSERT INTO visits VALUES (1, 5, now(), '1970-01-01', '{"x": 1}'), (2, 6, now(), '1999-12-31', '{"y": 2}');
RESET privacy.purpose;
SET ROLE typ_officer;
SELECT privacy.erase_subject('5', 'request 17') -> 'tables' -> 'public.visits' AS receipt;
RESET ROLE;
SET privacy.purpose = 'support';
SELECT id, customer_id, born, prefs FROM visits ORDER BY id;
RESET privacy.purpose;
DROP TABLE visits;

-- key rotation reseals typed values too
RESET privacy.purpose;
SELECT privacy.rotate_key('financial') > 0 AS rotated;
CREATE TABLE ledger (id integer, amount privacy.encrypted_numeric(financial, searchable));
SET privacy.purpose = 'billing';
INSERT INTO ledger VALUES (1, 10.25), (2, 99);
RESET privacy.purpose;
SELECT privacy.rotate_key('financial') > 0 AS rotated;
SELECT count(*) FILTER (WHERE privacy_internal.needs_reseal(amount)) AS stale FROM ledger;
SET client_min_messages = warning;
CALL privacy.reencrypt('ledger', 'amount');
RESET client_min_messages;
SELECT count(*) FILTER (WHERE privacy_internal.needs_reseal(amount)) AS stale FROM ledger;
SET privacy.purpose = 'billing';
SELECT id, amount FROM ledger WHERE amount = 10.250;
SELECT id, amount FROM ledger WHERE amount = 99.0;
RESET privacy.purpose;

-- values nested in arrays or composites are refused, as for text
CREATE TABLE nested (d privacy.encrypted_date(identity)[]);
CREATE TYPE pair AS (a privacy.encrypted_bigint);
CREATE TABLE nested (p pair);
DROP TYPE pair;

DROP TABLE customers, odd, moved, ledger;
DROP EXTENSION privacy;
DROP ROLE typ_app, typ_officer;
