-- Moving encrypted values where they do not belong (issue #12, class 7),
-- and what a value is not bound to.
--
-- In a protected table every value is sealed under its row's subject's
-- key, and its key is authenticated with it.  A role that may update the
-- table but holds no purpose for the values' category copies another
-- subject's value into a row: resealed under the row's subject, it would
-- escape the other subject's erasure and be shown under this subject's
-- consent.  It is refused; with a purpose allowed the category (which
-- could read the value anyway) the copy is resealed and belongs to its
-- new row.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE ROLE adv_writer LOGIN;
CREATE ROLE adv_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('adv_writer', 'support');
SELECT privacy.grant_purpose('adv_writer', 'billing');

CREATE TABLE accounts (id bigint PRIMARY KEY, iban privacy.encrypted_text(financial), email privacy.encrypted_text(contact));
SELECT privacy.protect_table('accounts', 'id');
SET privacy.purpose = 'billing';
INSERT INTO accounts VALUES (1, 'DE01 ANA', 'ana@example.org'), (2, 'DE02 BEN', 'ben@example.org');
RESET privacy.purpose;
GRANT SELECT, UPDATE ON accounts TO adv_writer;

-- support may see contact data, not financial: it cannot move Ben's IBAN
-- into Ana's row (it would then read as Ana's, and outlive Ben's erasure)
SET ROLE adv_writer;
SET privacy.purpose = 'support';
UPDATE accounts SET iban = (SELECT iban FROM accounts WHERE id = 2) WHERE id = 1;
-- contact data it may process: the copy is resealed under Ana's key
UPDATE accounts SET email = (SELECT email FROM accounts WHERE id = 2) WHERE id = 1;
RESET privacy.purpose;
RESET ROLE;
SET privacy.purpose = 'billing';
SELECT id, iban, email FROM accounts ORDER BY id;
RESET privacy.purpose;
SELECT a.id, k.subject_hash_prefix = (SELECT subject_hash_prefix FROM privacy.keys
                                       WHERE id = (privacy.envelope_info(b.email)).key_id) AS same_key
  FROM accounts a JOIN accounts b ON b.id = 1
  JOIN privacy.keys k ON k.id = (privacy.envelope_info(a.email)).key_id ORDER BY a.id;

-- another column of another category: a move of category, refused without
-- a purpose allowed the source category (support may not read financial)
SET ROLE adv_writer;
SET privacy.purpose = 'support';
UPDATE accounts SET email = iban WHERE id = 2;
RESET privacy.purpose;
RESET ROLE;

-- What a value is not bound to (a decision, doc/dba.md "What a value is
-- bound to"): a table, a column of the same category and type, a moment.
-- A copy of Ben's e-mail address in another table opens there for a
-- purpose allowed contact, under Ben's key: it dies with Ben's erasure.
CREATE TABLE side_copy (id bigint, email privacy.encrypted_text(contact));
GRANT SELECT, INSERT, UPDATE ON side_copy TO adv_writer;
SET ROLE adv_writer;
SET privacy.purpose = 'support';
INSERT INTO side_copy SELECT id, email FROM accounts WHERE id = 2;
SELECT id, email FROM side_copy;
RESET privacy.purpose;
-- with no purpose at all, a copy between columns of the same category of
-- unprotected tables needs none either; reading it does
INSERT INTO side_copy SELECT 3, email FROM side_copy WHERE id = 2;
SELECT id, email FROM side_copy ORDER BY id;
RESET ROLE;
SELECT s.id, (privacy.envelope_info(s.email)).key_id = (privacy.envelope_info(a.email)).key_id AS bens_key
  FROM side_copy s, accounts a WHERE a.id = 2 ORDER BY s.id;
-- an older value written back over a newer one opens: values are not bound
-- to a moment (a role with UPDATE could write the old plaintext anyway)
SET ROLE adv_writer;
SET privacy.purpose = 'support';
CREATE TEMP TABLE before_change AS SELECT email FROM side_copy WHERE id = 3;
UPDATE side_copy SET email = 'ben.new@example.org' WHERE id = 3;
UPDATE side_copy SET email = (SELECT email FROM before_change) WHERE id = 3;
SELECT id, email FROM side_copy ORDER BY id;
DROP TABLE before_change;
RESET privacy.purpose;
RESET ROLE;

-- A copy into a column of the same category that adds equality search (a
-- searchable archive, say), or into a column of another category, is
-- opened to get its search tag or its new category: it must stay under
-- Ben's key all the same, or it would outlive his erasure.
CREATE TABLE searchable_copy (id bigint, email privacy.encrypted_text(contact, searchable));
CREATE TABLE moved_copy (id bigint, note privacy.encrypted_text(contact));
GRANT SELECT, INSERT ON searchable_copy, moved_copy TO adv_writer;
SET ROLE adv_writer;
SET privacy.purpose = 'support';
INSERT INTO searchable_copy SELECT id, email FROM accounts WHERE id = 2;
SET privacy.purpose = 'billing';
INSERT INTO moved_copy SELECT id, iban FROM accounts WHERE id = 2;
RESET privacy.purpose;
RESET ROLE;
SELECT 'searchable_copy' AS copy,
       (privacy.envelope_info(s.email)).key_id = (privacy.envelope_info(a.email)).key_id AS bens_key
  FROM searchable_copy s, accounts a WHERE a.id = 2
UNION ALL
SELECT 'moved_copy', (privacy.envelope_info(m.note)).key_id = (privacy.envelope_info(a.iban)).key_id
  FROM moved_copy m, accounts a WHERE a.id = 2;

-- Ben is erased: his values are gone, the copies in the other tables too;
-- the copy that belongs to Ana stays
SET ROLE adv_officer;
SELECT privacy.erase_subject('2', 'request 3') IS NOT NULL AS erased;
RESET ROLE;
SET privacy.purpose = 'billing';
SELECT id, iban, email FROM accounts ORDER BY id;
SELECT id, email FROM side_copy ORDER BY id;
SELECT id, email FROM searchable_copy;
SELECT id, note FROM moved_copy;
RESET privacy.purpose;

DROP TABLE accounts, side_copy, searchable_copy, moved_copy;
DROP EXTENSION privacy;
DROP ROLE adv_writer, adv_officer;
