-- A copy out of a protected table, read where the subject's consent does
-- not reach (issue #12, class 7; review of the binding decision).
--
-- A copy between columns of the same category needs no purpose (the value
-- is not opened), and an unprotected table has no consent check.  A role
-- holding two purposes -- marketing, consented to by Ana but not allowed
-- contact data, and support, allowed contact data but objected to by Ana
-- -- can open Ana's e-mail address under neither.  Under marketing it sees
-- her row and copies the sealed value into an unprotected table; under
-- support it reads the copy there: Ana's objection is bypassed.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('location');
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['location']);
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
CREATE ROLE adv_both LOGIN;
SELECT privacy.grant_purpose('adv_both', 'marketing');
SELECT privacy.grant_purpose('adv_both', 'support');

CREATE TABLE people (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
SELECT privacy.protect_table('people', 'id');
SET privacy.purpose = 'support';
INSERT INTO people VALUES (1, 'ana@example.org');
RESET privacy.purpose;
SELECT privacy.grant_consent('1', 'marketing', 'web form', '{}') IS NOT NULL AS consented;
SELECT privacy.object('1', 'support', 'letter') IS NOT NULL AS objected;
CREATE TABLE people_copy (id bigint, email privacy.encrypted_text(contact));
GRANT SELECT ON people TO adv_both;
GRANT SELECT, INSERT ON people_copy TO adv_both;

SET ROLE adv_both;
-- under support Ana's row is hidden, under marketing her address is closed
SET privacy.purpose = 'support';
SELECT count(*) AS rows_under_support FROM people;
SET privacy.purpose = 'marketing';
SELECT id FROM people;
SELECT email FROM people;
-- the copy, under marketing
DO $$
BEGIN
    INSERT INTO people_copy SELECT id, email FROM people;
EXCEPTION WHEN insufficient_privilege THEN
    NULL;	-- refused: as good
END $$;
-- the read, under support
SET privacy.purpose = 'support';
DO $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM people_copy WHERE email::text = 'ana@example.org';
    RAISE NOTICE 'read under support, against her objection: %', n > 0;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'read under support, against her objection: %', false;
END $$;
RESET privacy.purpose;
RESET ROLE;

DROP TABLE people, people_copy;
DROP EXTENSION privacy;
DROP ROLE adv_both;
