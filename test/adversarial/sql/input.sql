-- Crafted input (issue #12, classes 4 and 5).
--
-- An application role plants text in a plain column that a DBA later
-- converts with classify(..., encrypt => true).  Text that looks like an
-- envelope (a value from a stolen dump, say) must be sealed as the text it
-- is, never adopted as the stored value it describes (which would make the
-- stolen value readable again under this database's keys).  And stored
-- bytes from a role that may enter them (binary COPY) are parsed without
-- trusting a length (0.2's tag-first layout and the current one).
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

-- Stored bytes from a role that may enter them (binary COPY, logical
-- replication): malformed 0x00, 0x01 (0.2's tag first) and 0x02 (tag
-- last) values are refused with a clear error, never stored, and never
-- read past their end; a value whose structure holds but whose bytes were
-- moved fails authentication when it is opened.
CREATE TABLE searchable_source (id int, email privacy.encrypted_text(contact, searchable));
SET privacy.purpose = 'support';
INSERT INTO searchable_source VALUES (1, 'tag@example.org');
RESET privacy.purpose;
SELECT privacy_internal.encrypted_text_send(email) AS good FROM searchable_source \gset
SELECT privacy_internal.encrypted_text_send(email) AS plain FROM source \gset
CREATE TABLE received (email privacy.encrypted_text(contact, searchable));
-- one binary COPY of one value: its outcome, and what was stored
CREATE FUNCTION copy_value(v bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo oid;
    outcome text;
BEGIN
    lo := lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea || '\x0000000000000000'::bytea
                           || '\x0001'::bytea || int4send(length(v)) || v || '\xffff'::bytea);
    PERFORM lo_export(lo, 'privacy_adversarial_input.copy');
    PERFORM lo_unlink(lo);
    BEGIN
        COPY received FROM 'privacy_adversarial_input.copy' (FORMAT binary);
        outcome := 'stored';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS outcome = PG_EXCEPTION_DETAIL;
        outcome := SQLSTATE || ' ' || SQLERRM || ': ' || outcome;
    END;
    COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; rm -f privacy_adversarial_input.copy';
    RETURN outcome;
END $$;
SELECT v.name, copy_value(v.bytes) AS outcome
  FROM (VALUES
    ('empty', ''::bytea),
    ('unknown format 0x03', '\x03'::bytea || substr(:'good'::bytea, 2)),
    ('0x02, shorter than a tag', substr(:'good'::bytea, 1, 11)),
    ('0x02, a tag and no envelope', substr(:'good'::bytea, 1, 1) || substr(:'good'::bytea, length(:'good'::bytea) - 15)),
    ('0x01, a tag and no envelope', '\x01'::bytea || substr(:'good'::bytea, length(:'good'::bytea) - 15)),
    ('0x01, a tag and half a header', '\x01'::bytea || substr(:'good'::bytea, length(:'good'::bytea) - 15) || substr(:'good'::bytea, 2, 4)),
    ('0x00, an envelope of version 2', '\x0002'::bytea || substr(:'plain'::bytea, 3)),
    ('0x02, key id 0', '\x0201'::bytea || '\x00000000'::bytea || substr(:'good'::bytea, 7)),
    ('0x02, the transient key', '\x0201'::bytea || '\xffffffff'::bytea || substr(:'good'::bytea, 7)),
    ('0x02, category id 0', substr(:'good'::bytea, 1, 6) || '\x0000'::bytea || substr(:'good'::bytea, 9)),
    ('0x02, one byte short', substr(:'good'::bytea, 1, length(:'good'::bytea) - 1)),
    ('0x02, one byte more', :'good'::bytea || '\x00'::bytea),
    ('0x02, intact', :'good'::bytea),
    ('0x01, intact (as 0.2 stored it)', '\x01'::bytea || substr(:'good'::bytea, length(:'good'::bytea) - 15)
                                        || substr(:'good'::bytea, 2, length(:'good'::bytea) - 17))) AS v(name, bytes);
-- the values whose structure held open only if they are intact
SET privacy.purpose = 'support';
CREATE FUNCTION open_value(e privacy.encrypted_text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN e::text;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
SELECT open_value(email) AS opened, count(*) FROM received GROUP BY 1 ORDER BY 1;
RESET privacy.purpose;
DROP FUNCTION copy_value(bytea), open_value(privacy.encrypted_text);

DROP TABLE source, stolen, notes, searchable_source, received;
DROP EXTENSION privacy;
DROP ROLE adv_app, adv_admin;
