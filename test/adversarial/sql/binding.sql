-- Moving encrypted values where they do not belong (issue #12, class 7).
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

-- Ben is erased: his values are gone; the copy that belongs to Ana stays
SET ROLE adv_officer;
SELECT privacy.erase_subject('2', 'request 3') IS NOT NULL AS erased;
RESET ROLE;
SET privacy.purpose = 'billing';
SELECT id, iban, email FROM accounts ORDER BY id;
RESET privacy.purpose;

DROP TABLE accounts;
DROP EXTENSION privacy;
DROP ROLE adv_writer, adv_officer;
