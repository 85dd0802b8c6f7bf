-- Crafted input (issue #12, classes 4 and 5).
--
-- An application role plants text in a plain column that a DBA later
-- converts with classify(..., encrypt => true).  Text that looks like an
-- envelope (a value from a stolen dump, say) must be sealed as the text it
-- is, never adopted as the stored value it describes (which would make the
-- stolen value readable again under this database's keys).
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE ROLE adv_app LOGIN;
CREATE ROLE adv_admin LOGIN IN ROLE privacy_admin;
SELECT privacy.grant_purpose('adv_app', 'support');

-- a value sealed in this database, and its envelope as a dump prints it
CREATE TABLE source (id int, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO source VALUES (1, 'secret@example.org');
RESET privacy.purpose;
CREATE TABLE stolen AS SELECT email::text AS envelope FROM source;
SELECT envelope LIKE 'pv1:%' AS looks_like_an_envelope FROM stolen;

-- the application stores that text in a plain column
CREATE TABLE notes (id int, body text);
GRANT INSERT, SELECT ON notes TO adv_app;
INSERT INTO notes SELECT 1, envelope FROM stolen;

-- the DBA encrypts the column: the text is sealed, as text
SET ROLE adv_admin;
SELECT privacy.classify('notes', 'body', 'contact', encrypt => true);
RESET ROLE;
SET ROLE adv_app;
SET privacy.purpose = 'support';
SELECT body::text LIKE 'pv1:%' AS still_the_planted_text, body::text = 'secret@example.org' AS opened_the_stolen_value
  FROM notes;
RESET privacy.purpose;
RESET ROLE;

DROP TABLE source, stolen, notes;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_admin;
