-- Encrypted types: every input route, the decryption gate, tampering,
-- equality search, rotation and crypto-shredding.
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_category('financial', 'IBAN');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
CREATE ROLE enc_app LOGIN;
CREATE ROLE enc_admin LOGIN IN ROLE privacy_admin;
SELECT privacy.grant_purpose('enc_app', 'support');

-- A column declared without a category is "unclassified" at once.
CREATE TABLE customers (id bigint PRIMARY KEY, email privacy.encrypted_text,
                        iban privacy.encrypted_text, photo privacy.encrypted_bytea, note text);
SELECT column_name, format_type(atttypid, atttypmod)
  FROM information_schema.columns c JOIN pg_attribute a
    ON a.attrelid = 'customers'::regclass AND a.attname = c.column_name
 WHERE c.table_name = 'customers' ORDER BY ordinal_position;

-- classification
SELECT privacy.classify('customers', 'email', 'contact', searchable => true);
SELECT privacy.classify('customers', 'iban', 'financial');
SELECT privacy.classify('customers', 'photo', 'contact');
SELECT privacy.classify('customers', 'note', 'contact');
SELECT table_name, column_name, category, searchable, encrypted, column_type
  FROM privacy.classified_columns ORDER BY column_name;
SELECT privacy.classify('customers', 'nosuch', 'contact');
SELECT privacy.classify('customers', 'email', 'nosuch');
SELECT privacy.classify('customers', 'email', 'unclassified');
SELECT privacy.classify('customers', 'id', 'contact', encrypt => true);
SELECT privacy.classify('customers', 'note', 'contact', searchable => true);
CREATE TABLE bad_typmod (a privacy.encrypted_text("Contact"));
CREATE TABLE bad_typmod (a privacy.encrypted_text(contact, fast));
CREATE TABLE bad_typmod (a privacy.encrypted_text(contact, searchable, more));
SELECT scope, category, state FROM privacy.keys ORDER BY id;

-- input route 1: literals (empty, multi-byte, NULL)
INSERT INTO customers VALUES
    (1, 'ana@example.org', 'FR7630006000011234567890189', '\x89504e470d0a1a0a', 'vip'),
    (2, '', '', '\x', NULL),
    (3, 'zoë@exämple.org ☃', NULL, NULL, NULL);
-- input route 2: untyped parameters (the column type is inferred)
PREPARE ins_untyped AS INSERT INTO customers (id, email, iban) VALUES ($1, $2, $3);
EXECUTE ins_untyped(4, 'bob@example.org', 'DE89370400440532013000');
-- input route 3: typed parameters
PREPARE ins_typed(bigint, privacy.encrypted_text, privacy.encrypted_bytea) AS
    INSERT INTO customers (id, email, photo) VALUES ($1, $2, $3);
EXECUTE ins_typed(5, 'carol@example.org', '\xdeadbeef');
-- input route 4: COPY (text)
COPY customers (id, email, iban, photo) FROM stdin;
6	dave@example.org	GB29NWBK60161331926819	\\xcafe
7	\N	\N	\N
\.
-- input route 5: binary COPY.  Without a purpose a superuser moves stored
-- envelopes (what binary dumps and logical replication carry) ...
CREATE TABLE bin_copy (LIKE customers);
\set bin_file '/tmp/privacy_regress_binary_copy.bin'
COPY (SELECT id, email, iban, photo, note FROM customers WHERE id <= 3) TO :'bin_file' (FORMAT binary);
COPY bin_copy FROM :'bin_file' (FORMAT binary);
SELECT c.id, c.email::text = b.email::text AS same_envelope
  FROM customers c JOIN bin_copy b USING (id) ORDER BY id;
-- ... with a purpose declared, binary input is plaintext to seal.
CREATE TABLE plain_src (id bigint, email text, iban text, photo bytea, note text);
INSERT INTO plain_src VALUES (20, 'henry@example.org', 'NL91ABNA0417164300', '\x0a0b', NULL);
COPY plain_src TO :'bin_file' (FORMAT binary);
SET privacy.purpose = 'billing';
COPY bin_copy FROM :'bin_file' (FORMAT binary);
SELECT id, email, iban, photo FROM bin_copy WHERE id = 20;
RESET privacy.purpose;
SELECT (privacy.envelope_info(email)).category, (privacy.envelope_info(iban)).category
  FROM bin_copy WHERE id = 20;
DROP TABLE bin_copy, plain_src;

-- input route 6: from plain columns by assignment
CREATE TABLE legacy (id bigint, email text, photo bytea);
INSERT INTO legacy VALUES (8, 'erin@example.org', '\x0102');
INSERT INTO customers (id, email, photo) SELECT id, email, photo FROM legacy;

-- a superuser without a purpose sees envelopes, never plaintext
SELECT id, email::text LIKE 'pv1:%' AS email_is_envelope, iban::text LIKE 'pv1:%' AS iban_is_envelope,
       photo::text LIKE 'pv1:%' AS photo_is_envelope
  FROM customers ORDER BY id;
-- every value sits under its column's category key; no plaintext in storage
SELECT id, (privacy.envelope_info(email)).*
  FROM customers WHERE email IS NOT NULL ORDER BY id;
-- equal plaintexts never give equal envelopes (a fresh nonce each time)
SELECT count(DISTINCT split_part(email::text, ';', 1)) AS distinct_envelopes,
       count(DISTINCT split_part(email::text, ';', 2)) AS distinct_tags
  FROM (SELECT 'same@example.org'::privacy.encrypted_text(contact, searchable) AS email
          FROM generate_series(1, 3)) s;
SELECT count(*) AS values_containing_plaintext
  FROM customers WHERE position('example' IN encode(textsend(email::text), 'escape')) > 0;

-- with a purpose allowed both categories, plaintext
SET privacy.purpose = 'billing';
SELECT id, email, iban, photo, length(email::text) AS len FROM customers ORDER BY id;
-- equality search with the index, and joins on the encrypted column
CREATE INDEX customers_email ON customers (email);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE email = 'bob@example.org';
SELECT id FROM customers WHERE email = 'bob@example.org';
SELECT id FROM customers WHERE email = 'nobody@example.org';
PREPARE by_email AS SELECT id FROM customers WHERE email = $1;
EXECUTE by_email('zoë@exämple.org ☃');
RESET enable_seqscan;
CREATE TABLE orders (id int, customer_email privacy.encrypted_text(contact, searchable));
INSERT INTO orders VALUES (100, 'ana@example.org'), (101, 'bob@example.org'), (102, 'ana@example.org');
SELECT o.id, c.id AS customer FROM orders o JOIN customers c ON c.email = o.customer_email ORDER BY o.id;
-- equality on a column that did not opt in is refused
SELECT id FROM customers WHERE iban = 'DE89370400440532013000';
RESET privacy.purpose;

-- the decryption gate, as an application role
GRANT SELECT, INSERT ON customers TO enc_app;
SET ROLE enc_app;
SELECT email FROM customers WHERE id = 1;
SET privacy.purpose = 'support';
SELECT email FROM customers WHERE id = 1;
SELECT iban FROM customers WHERE id = 1;
SELECT id FROM customers WHERE email = 'ana@example.org';
-- an envelope literal from an application role is plaintext to seal
INSERT INTO customers (id, email) VALUES (9, 'pv1:AQAAAAE=');
SELECT email FROM customers WHERE id = 9;
-- moving a value to a category the role may read, from one it may not: refused
CREATE TEMP TABLE stash (v privacy.encrypted_text(contact));
INSERT INTO stash SELECT iban FROM customers WHERE id = 1;
DROP TABLE stash;
RESET privacy.purpose;
-- on_denied = mask is superuser-only
SET privacy.on_denied = 'mask';
RESET ROLE;
SET privacy.on_denied = 'mask';
SET ROLE enc_app;
SET privacy.purpose = 'support';
SELECT email, iban FROM customers WHERE id = 1;
RESET privacy.purpose;
SELECT email FROM customers WHERE id = 1;
RESET ROLE;
RESET privacy.on_denied;

-- table owners and superusers meet the gate too
SET privacy.purpose = 'support';
SELECT iban FROM customers WHERE id = 1;
RESET privacy.purpose;

-- an envelope literal from a privileged role with no purpose is stored as is
CREATE TABLE copy_target (id bigint, email privacy.encrypted_text(contact, searchable));
INSERT INTO copy_target SELECT id, email::text::privacy.encrypted_text FROM customers WHERE id = 1;
SELECT (SELECT email::text FROM customers WHERE id = 1) = (SELECT email::text FROM copy_target) AS identical_envelope;
GRANT SELECT ON customers TO enc_admin;
SET ROLE enc_admin;
SELECT email::text LIKE 'pv1:%' AS admin_sees_envelope FROM customers WHERE id = 1;
RESET ROLE;
-- malformed envelope literals are refused, not sealed as plaintext
INSERT INTO customers (id, email) VALUES (10, 'pv1:not-base64!');
INSERT INTO customers (id, email) VALUES (10, 'pv1:AQAAAAE=');
-- a value sealed with a session's transient key is never accepted as stored
SELECT ('x'::privacy.encrypted_text)::text LIKE 'pv1:Af////%' AS transient_envelope;
INSERT INTO customers (id, email) VALUES (10, ('x'::privacy.encrypted_text)::text);
-- the ";s=<tag>" suffix of a literal: every malformed one is refused and the
-- server stays up (a literal ending in ";" once read past its end: signal 11)
SELECT 'pv1:AQAAAAEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;'::privacy.encrypted_text;
SELECT 'pv1:AQAAAAEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;s'::privacy.encrypted_text;
SELECT 'pv1:AQAAAAEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;s='::privacy.encrypted_bytea;
SELECT 'pv1:AQAAAAEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;s=AAAA'::privacy.encrypted_text;
CREATE FUNCTION literal_outcome(lit text, typ text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT %L::privacy.%I', lit, typ);
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
SELECT format('%L', suffix) AS suffix, typ, literal_outcome('pv1:AQAAAAEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' || suffix, typ)
  FROM (VALUES (''), (';'), (';;'), (';s'), (';s='), (';x=AAAAAAAAAAAAAAAAAAAAAA=='),
               (';s=AAAA'), (';s=AAAAAAAAAAAAAAAAAAAAAAAA'), (';s=AAAAAAAAAAAAAAAAAAAAAA='),
               (';s=!AAAAAAAAAAAAAAAAAAAAA=='), (';s=AAAAAAAAAAAAAAAAAAAAAA== '),
               (';s=AAAAAAAAAAAAAAAAAAAAAA==x'), (';s=AAAAAAAAAAAAAAAAAAAAAA==;'),
               (';s=AAAAAAAAAAAAAAAAAAAAAA==;s=AAAAAAAAAAAAAAAAAAAAAA=='),
               (';s=AAAAAAAAAAAAAAAAAAAAAA==')) AS s (suffix),
       (VALUES ('encrypted_text'), ('encrypted_bytea')) AS t (typ)
 ORDER BY typ, s.suffix;
SELECT 'still up' AS server;

-- tampering: any changed byte of envelope or search tag fails loudly
CREATE FUNCTION flip(v privacy.encrypted_text, pos int) RETURNS privacy.encrypted_text
LANGUAGE plpgsql AS $$
DECLARE
    t text := v::text;                    -- envelope text form (no purpose declared)
    env bytea := decode(substr(split_part(t, ';', 1), 5), 'base64');
    tag bytea := decode(coalesce(nullif(substr(split_part(t, ';', 2), 3), ''), ''), 'base64');
    both_ bytea := env || tag;
BEGIN
    both_ := set_byte(both_, pos, get_byte(both_, pos) # 1);
    env := substr(both_, 1, length(env));
    tag := substr(both_, length(env) + 1);
    RETURN ('pv1:' || replace(encode(env, 'base64'), E'\n', '')
            || CASE WHEN length(tag) > 0 THEN ';s=' || encode(tag, 'base64') ELSE '' END)::privacy.encrypted_text;
END $$;
CREATE FUNCTION tamper_report(id_ bigint) RETURNS TABLE (bytes int, failed int, wrong_plaintext int)
LANGUAGE plpgsql AS $$
DECLARE
    v privacy.encrypted_text;
    t privacy.encrypted_text;
    n int;
    p text;
BEGIN
    PERFORM set_config('privacy.purpose', '', true);
    SELECT email INTO v FROM customers WHERE id = id_;
    n := length(decode(substr(split_part(v::text, ';', 1), 5), 'base64'))
         + coalesce(length(decode(nullif(substr(split_part(v::text, ';', 2), 3), ''), 'base64')), 0);
    bytes := n; failed := 0; wrong_plaintext := 0;
    FOR i IN 0 .. n - 1 LOOP
        BEGIN
            PERFORM set_config('privacy.purpose', '', true);
            t := flip(v, i);
            PERFORM set_config('privacy.purpose', 'billing', true);
            p := t::text;
            wrong_plaintext := wrong_plaintext + 1;
        EXCEPTION WHEN data_corrupted OR invalid_text_representation THEN
            failed := failed + 1;
        END;
    END LOOP;
    PERFORM set_config('privacy.purpose', '', true);
    RETURN NEXT;
END $$;
SELECT * FROM tamper_report(1);
SELECT * FROM tamper_report(2);
-- replaying under another category, and swapping key ids, fail too
CREATE FUNCTION patch_header(v privacy.encrypted_text, pos int, val int) RETURNS privacy.encrypted_text
LANGUAGE plpgsql AS $$
DECLARE
    env bytea := decode(substr(split_part(v::text, ';', 1), 5), 'base64');
BEGIN
    env := set_byte(env, pos, val);
    RETURN ('pv1:' || replace(encode(env, 'base64'), E'\n', ''))::privacy.encrypted_text;
END $$;
CREATE TABLE replay (v privacy.encrypted_text);
SELECT privacy.classify('replay', 'v', 'contact');
-- the iban (financial) envelope relabelled as contact: category id bytes 5-6
INSERT INTO replay SELECT patch_header(patch_header(iban, 5, privacy_internal.category_id('contact') >> 8),
                                       6, privacy_internal.category_id('contact') & 255)
  FROM customers WHERE id = 1;
SET privacy.purpose = 'support';
SELECT v FROM replay;
RESET privacy.purpose;
TRUNCATE replay;
-- the contact envelope with the financial key id (byte 4 is the low byte)
INSERT INTO replay SELECT patch_header(email, 4, (privacy.envelope_info(iban)).key_id & 255)
  FROM customers WHERE id = 1;
SET privacy.purpose = 'billing';
SELECT v FROM replay;
-- truncated envelopes: refused at input, or fail authentication
RESET privacy.purpose;
SELECT ('pv1:' || substr(split_part(email::text, ';', 1), 5, 40))::privacy.encrypted_text IS NOT NULL
  FROM customers WHERE id = 1;
SELECT ('pv1:' || replace(encode(substr(decode(substr(split_part(email::text, ';', 1), 5), 'base64'), 1, 60), 'base64'), E'\n', ''))::privacy.encrypted_text AS t
  FROM customers WHERE id = 1 \gset trunc_
TRUNCATE replay;
INSERT INTO replay VALUES (:'trunc_t');
SET privacy.purpose = 'support';
SELECT v FROM replay;
RESET privacy.purpose;
-- a text envelope cannot be read as bytea
CREATE TABLE kinds (b privacy.encrypted_bytea(contact));
INSERT INTO kinds SELECT split_part(email::text, ';', 1)::privacy.encrypted_bytea FROM customers WHERE id = 1;
SET privacy.purpose = 'support';
SELECT b FROM kinds;
RESET privacy.purpose;

-- large values (TOASTed, uncompressed) and many of them
CREATE TABLE big (id int, doc privacy.encrypted_text(contact), blob privacy.encrypted_bytea(contact));
INSERT INTO big SELECT 1, repeat('0123456789abcdef', 262144), decode(repeat('00ff', 2097152), 'hex');
SELECT (privacy.envelope_info(doc)).plaintext_bytes, (privacy.envelope_info(doc)).stored_bytes,
       pg_column_size(doc) AS on_disk
  FROM big;
SET privacy.purpose = 'support';
SELECT md5(doc::text) = md5(repeat('0123456789abcdef', 262144)) AS doc_intact,
       md5(blob::bytea) = md5(decode(repeat('00ff', 2097152), 'hex')) AS blob_intact
  FROM big;
RESET privacy.purpose;

-- key rotation: new values use the new key, old ones stay readable until resealed
SELECT privacy.rotate_key('contact') > 0 AS rotated;
SELECT scope, category, state FROM privacy.keys WHERE scope = 'category' ORDER BY id;
INSERT INTO customers (id, email) VALUES (11, 'frank@example.org');
SELECT count(DISTINCT (privacy.envelope_info(email)).key_id) AS keys_in_use FROM customers;
SET privacy.purpose = 'support';
SELECT email FROM customers WHERE id IN (1, 11) ORDER BY id;
RESET privacy.purpose;
SELECT count(*) FILTER (WHERE privacy_internal.needs_reseal(email)) AS to_reseal FROM customers;

-- 0.2 stored a searchable value's tag before its envelope (format 0x01);
-- 0.3 puts it after (0x02), so that record-image comparisons meet the
-- random nonce first.  A 0.2 value, restored verbatim by binary COPY,
-- still opens and compares; reencrypt moves its tag, opening nothing.
CREATE TABLE layout (id int, email privacy.encrypted_text(contact, searchable));
SET privacy.purpose = 'support';
INSERT INTO layout VALUES (1, 'ivy@example.org');
RESET privacy.purpose;
SELECT get_byte(b, 0) AS format, length(b) AS bytes,
       '\x01'::bytea || substr(b, length(b) - 15) || substr(b, 2, length(b) - 17) AS old
  FROM (SELECT privacy_internal.encrypted_text_send(email) AS b FROM layout) s \gset
SELECT :format AS format_now, :bytes AS bytes;
SELECT lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea || '\x0000000000000000'::bytea
       || '\x0002'::bytea || int4send(4) || int4send(2)
       || int4send(length(:'old'::bytea)) || :'old'::bytea || '\xffff'::bytea) AS lo \gset
SELECT lo_export(:lo, 'privacy_layout_0_2.copy') = 1 AS exported;
COPY layout FROM 'privacy_layout_0_2.copy' (FORMAT binary);
SELECT lo_unlink(:lo);
COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; rm -f privacy_layout_0_2.copy';
SELECT id, get_byte(privacy_internal.encrypted_text_send(email), 0) AS format,
       privacy_internal.needs_reseal(email) AS needs_reseal
  FROM layout ORDER BY id;
SET privacy.purpose = 'support';
SELECT id, email FROM layout WHERE email = 'ivy@example.org' ORDER BY id;
RESET privacy.purpose;
SET client_min_messages = warning;
CALL privacy.reencrypt('layout', 'email');
RESET client_min_messages;
SELECT id, get_byte(privacy_internal.encrypted_text_send(email), 0) AS format,
       privacy_internal.encrypted_text_send(email) = :'old'::bytea AS unchanged
  FROM layout ORDER BY id;
-- the envelope is the same (same nonce): only the tag moved
SELECT count(DISTINCT substr(privacy_internal.encrypted_text_send(email), 2, :bytes - 17)) AS envelopes
  FROM layout;
SET privacy.purpose = 'support';
SELECT id, email FROM layout WHERE email = 'ivy@example.org' ORDER BY id;
RESET privacy.purpose;

-- crypto-shredding: values sealed under a subject key become "[erased]"
CREATE TABLE subject_data (subject text, email privacy.encrypted_text(contact), photo privacy.encrypted_bytea(contact));
INSERT INTO subject_data VALUES ('42', 'ana@example.org', '\x01'), ('43', 'bob@example.org', '\x02');
UPDATE subject_data SET email = privacy.seal_for_subject(email, subject),
                        photo = privacy.seal_for_subject(photo, subject);
SELECT subject, (privacy.envelope_info(email)).category FROM subject_data ORDER BY subject;
SELECT count(*) AS subject_keys FROM privacy.keys WHERE scope = 'subject' AND state = 'active';
SET privacy.purpose = 'support';
SELECT subject, email, photo, privacy.is_erased(email) FROM subject_data ORDER BY subject;
RESET privacy.purpose;
SELECT privacy.destroy_subject_key('42');
SELECT privacy.destroy_subject_key('42');
SET privacy.purpose = 'support';
SELECT subject, email, photo, privacy.is_erased(email) FROM subject_data ORDER BY subject;
RESET privacy.purpose;
SELECT state, master_key_fingerprint IS NOT NULL AS wrapped_by_known FROM privacy.keys
 WHERE scope = 'subject' ORDER BY id;
SELECT count(*) AS destroyed_with_material FROM privacy.data_keys
 WHERE state = 'destroyed' AND wrapped_key IS NOT NULL;

-- the key table holds no key in clear, and application roles cannot read it
SELECT bool_and(length(wrapped_key) = 72) AS all_wrapped FROM privacy.data_keys WHERE wrapped_key IS NOT NULL;
SET ROLE enc_app;
SELECT * FROM privacy.data_keys;
SELECT * FROM privacy.keys;
SELECT privacy.rotate_key('contact');
SELECT privacy.destroy_subject_key('43');
RESET ROLE;

-- CREATE TABLE AS keeps no transient value: the column is classified at once
CREATE TABLE cta AS SELECT 'grace@example.org'::privacy.encrypted_text AS email;
SELECT (privacy.envelope_info(email)).category, (privacy.envelope_info(email)).key_id IS NOT NULL AS stored_key FROM cta;
CREATE MATERIALIZED VIEW mv AS SELECT 'x'::privacy.encrypted_text AS v;

DROP TABLE customers, orders, legacy, copy_target, replay, kinds, big, layout, subject_data, cta;
DROP FUNCTION flip, tamper_report, patch_header;
DROP EXTENSION privacy;
DROP ROLE enc_app, enc_admin;
