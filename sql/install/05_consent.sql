/*
 * 05_consent.sql — the consent ledger and the state derived from it (C: consent.c).
 */

------------------------------------------------------------------------------
-- Consent: an append-only ledger, and the current state derived from it
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.consent_event_id_seq;
CREATE TABLE privacy.consent_events (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.consent_event_id_seq'),
    subject     text NOT NULL,
    purpose     text NOT NULL REFERENCES privacy.purposes,
    action      text NOT NULL CHECK (action IN ('grant', 'withdraw', 'object', 'lift_objection')),
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    source      text NOT NULL CHECK (source <> ''),
    evidence    jsonb,
    recorded_by name NOT NULL DEFAULT session_user
);
CREATE INDEX ON privacy.consent_events (subject, purpose, id);
COMMENT ON TABLE privacy.consent_events IS
    'consent ledger: every grant, withdrawal, objection and lifted objection with its source and evidence; append-only';

-- One row per subject and purpose: what the ledger's latest event says.
CREATE TABLE privacy.consent_state (
    subject     text NOT NULL,
    purpose     text NOT NULL REFERENCES privacy.purposes ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('granted', 'withdrawn', 'objected')),
    since       timestamptz NOT NULL,
    last_event  bigint NOT NULL,
    PRIMARY KEY (purpose, subject)
);
-- erasure and the subject report look a subject up without a purpose
CREATE INDEX consent_state_subject ON privacy.consent_state (subject);
COMMENT ON TABLE privacy.consent_state IS
    'current consent state per subject and purpose, kept by the consent functions in the same transaction as the ledger';

ALTER SEQUENCE privacy.consent_event_id_seq OWNED BY privacy.consent_events.id;
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_events', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.consent_state', '');

-- The consent check of protected tables (src/consent_cache.c): whether the
-- subject's state allows the declared purpose, read with the statement's
-- snapshot and cached per backend.  Every change of the state is noticed by
-- these triggers (ALWAYS, so also when logical replication applies it), so
-- that no backend's cache outlives a change its next snapshot can see.
CREATE FUNCTION privacy_internal.visible(subject bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_int8' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.visible(subject text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_text' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION privacy_internal.visible(subject uuid) RETURNS boolean
    AS 'MODULE_PATHNAME', 'privacy_visible_uuid' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION privacy_internal.visible(bigint) IS
    'the consent check of protected tables: does the subject''s consent state allow the declared purpose (an error without a purpose the role holds)';
CREATE FUNCTION privacy_internal.consent_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_consent_changed' LANGUAGE C;
CREATE TRIGGER consent_changed AFTER INSERT OR UPDATE OR DELETE ON privacy.consent_state
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.consent_changed();
CREATE TRIGGER consent_truncated AFTER TRUNCATE ON privacy.consent_state
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.consent_changed();
ALTER TABLE privacy.consent_state ENABLE ALWAYS TRIGGER consent_changed, ENABLE ALWAYS TRIGGER consent_truncated;

CREATE FUNCTION privacy_internal.ledger_guard() RETURNS trigger
    AS 'MODULE_PATHNAME', 'privacy_ledger_guard' LANGUAGE C;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON privacy.consent_events
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.ledger_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON privacy.consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.ledger_guard();

-- Called by the SECURITY DEFINER functions of the API (grant_consent and
-- the others, the portal's) and runs in their context, with their pinned
-- search_path: one such layer per call, not two (issue #19).  Executable by
-- the extension's owner only.
CREATE FUNCTION privacy_internal.record_consent(subject text, purpose text, action text,
                                        source text, evidence jsonb) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    basis text;
    new_state text := CASE action WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END;
    event_id bigint;
    current_state text;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    IF source IS NULL OR source = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the source of a consent event must be given',
            HINT = 'Name where the event came from, for example web-form, call-centre or app-settings.';
    END IF;
    SELECT p.legal_basis INTO basis FROM privacy.purposes p WHERE p.name = record_consent.purpose;
    IF basis IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('purpose "%s" does not exist', purpose);
    END IF;
    IF action IN ('grant', 'withdraw') AND basis <> 'consent' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('purpose "%s" is not based on consent', purpose),
            DETAIL  = format('Its legal basis is %s; consent can be granted or withdrawn only for purposes based on consent.', basis),
            HINT    = 'To stop processing under another legal basis, record an objection with privacy.object().';
    END IF;
    -- Lifting an objection: only one in force, and what is left is no
    -- objection and no consent (a purpose based on consent needs a new
    -- grant): withdrawn for those, no state at all for the others.
    IF action = 'lift_objection' THEN
        SELECT cs.state INTO current_state FROM privacy.consent_state cs
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject
           FOR UPDATE;
        IF current_state IS DISTINCT FROM 'objected' THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('subject has no objection to purpose "%s" to lift', purpose),
                DETAIL  = CASE WHEN current_state IS NULL
                               THEN 'Nothing was recorded for the subject and the purpose.'
                               ELSE format('The subject''s state for the purpose is %s.', current_state) END,
                HINT    = 'See the subject''s consent history in privacy.consent_events.';
        END IF;
        INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
        VALUES (subject, purpose, action, source, evidence)
        RETURNING id INTO event_id;
        IF basis = 'consent' THEN
            UPDATE privacy.consent_state cs SET state = 'withdrawn', since = clock_timestamp(), last_event = event_id
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        ELSE
            DELETE FROM privacy.consent_state cs
             WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
        END IF;
        RETURN event_id;
    END IF;
    -- The state row is locked first, so concurrent events for one subject and
    -- purpose reach the ledger in the order they take effect: the ledger id
    -- is drawn once the row is locked (in DO UPDATE, for a subject with a
    -- state; after the insert, for a new one), and a state row that exists
    -- is written once per event.
    INSERT INTO privacy.consent_state AS cs (subject, purpose, state, since, last_event)
    VALUES (subject, purpose, new_state, clock_timestamp(), 0)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE
       SET state = EXCLUDED.state,
           since = CASE WHEN cs.state = EXCLUDED.state THEN cs.since ELSE EXCLUDED.since END,
           last_event = pg_catalog.nextval('privacy.consent_event_id_seq')
    RETURNING cs.last_event INTO event_id;
    IF event_id = 0 THEN
        event_id := pg_catalog.nextval('privacy.consent_event_id_seq');
        UPDATE privacy.consent_state cs SET last_event = event_id
         WHERE cs.purpose = record_consent.purpose AND cs.subject = record_consent.subject;
    END IF;
    INSERT INTO privacy.consent_events (id, subject, purpose, action, source, evidence)
    VALUES (event_id, subject, purpose, action, source, evidence);
    RETURN event_id;
END
$$;

CREATE FUNCTION privacy.grant_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'grant', source, evidence); END $$;
COMMENT ON FUNCTION privacy.grant_consent(text, text, text, jsonb) IS
    'record that a subject consents to a purpose based on consent; returns the ledger entry id';
CREATE FUNCTION privacy.withdraw_consent(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'withdraw', source, evidence); END $$;
COMMENT ON FUNCTION privacy.withdraw_consent(text, text, text, jsonb) IS
    'record that a subject withdraws consent; effective for every statement that starts after the commit';
CREATE FUNCTION privacy.object(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'object', source, evidence); END $$;
COMMENT ON FUNCTION privacy.object(text, text, text, jsonb) IS
    'record a subject''s objection (GDPR Art. 21): their rows are no longer shown for that purpose, whatever its legal basis';

CREATE FUNCTION privacy.lift_objection(subject text, purpose text, source text, evidence jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(subject, purpose, 'lift_objection', source, evidence); END $$;
COMMENT ON FUNCTION privacy.lift_objection(text, text, text, jsonb) IS
    'record that a subject lifts their objection to a purpose: their rows are shown for it again (for a purpose based on consent, once consent is granted)';

CREATE FUNCTION privacy.has_consent(subject text, purpose text) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM privacy_internal.require_purpose(purpose);
    RETURN EXISTS (SELECT 1 FROM privacy.consent_state cs
                    WHERE cs.subject = has_consent.subject AND cs.purpose = has_consent.purpose
                      AND cs.state = 'granted');
END
$$;

CREATE VIEW privacy.consents AS
SELECT cs.subject, cs.purpose, p.legal_basis, cs.state, cs.since,
       e.source, e.evidence, e.recorded_by, cs.last_event
  FROM privacy.consent_state cs
  JOIN privacy.purposes p ON p.name = cs.purpose
  LEFT JOIN privacy.consent_events e ON e.id = cs.last_event;
COMMENT ON VIEW privacy.consents IS 'current consent state per subject and purpose, with the event that set it';
