/*
 * 09_erasure.sql — erasure of a subject, and its record.
 */

------------------------------------------------------------------------------
-- Erasure of a subject (right to erasure, GDPR Art. 17)
------------------------------------------------------------------------------
CREATE SEQUENCE privacy.erasure_id_seq;
CREATE TABLE privacy.erasures (
    id                     bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.erasure_id_seq'),
    subject_hash           bytea NOT NULL,
    reason                 text NOT NULL,
    erased_at              timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    erased_by              name NOT NULL,
    tables                 jsonb NOT NULL,
    keys_destroyed         integer NOT NULL,
    consent_events_reduced bigint NOT NULL
);
ALTER SEQUENCE privacy.erasure_id_seq OWNED BY privacy.erasures.id;
CREATE INDEX ON privacy.erasures (subject_hash);
COMMENT ON TABLE privacy.erasures IS
    'proof of each erasure: when, why, by whom and what, with the subject only as its keyed hash';
SELECT pg_catalog.pg_extension_config_dump('privacy.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.erasure_id_seq', '');

CREATE FUNCTION privacy_internal.caller() RETURNS name
    AS 'MODULE_PATHNAME', 'privacy_caller' LANGUAGE C STABLE;
CREATE FUNCTION privacy_internal.reduce_ledger(subject text, stand_in text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'privacy_reduce_ledger' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION privacy.erase_subject(subject text, reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hold record;
    pt record;
    r privacy.retention_rules;
    subject_type regtype;
    match text;
    sets text;
    n bigint;
    done jsonb := '{}';
    hash bytea;
    stand_in text;
    keys integer;
    reduced bigint;
    receipt jsonb;
    erasure_id bigint;
BEGIN
    PERFORM privacy_internal.require_subject(subject);
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'an erasure needs a reason',
            HINT = 'Name the request, for example its number.';
    END IF;
    SELECT h.reason, h.until INTO hold FROM privacy.active_holds h WHERE h.subject = erase_subject.subject LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('subject "%s" is under a legal hold', subject),
            DETAIL = format('Hold: %s%s.', hold.reason,
                            CASE WHEN hold.until IS NOT NULL THEN ', until ' || hold.until::text ELSE '' END),
            HINT = 'Nothing was erased. Release the hold with privacy.release_hold() when the matter allows it.';
    END IF;

    -- the subject's rows, in every protected table (partitions through their root)
    FOR pt IN SELECT p.tbl, p.subject_column FROM privacy.protected_tables p
               WHERE p.parent IS NULL ORDER BY p.tbl::text
    LOOP
        SELECT a.atttypid::regtype INTO subject_type FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = pt.tbl AND a.attname = pt.subject_column;
        match := CASE WHEN subject_type IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
                      THEN format('t.%I = privacy_internal.subject_int8(%L)', pt.subject_column, subject)
                      ELSE format('t.%I::pg_catalog.text = %L', pt.subject_column, subject) END;
        SELECT * INTO r FROM privacy.retention_rules rr WHERE rr.tbl = pt.tbl;
        -- as the table's owner: its triggers are its own code
        IF r.action = 'anonymize' THEN
            -- the rows stay: their encrypted values lose their search tags
            -- (an equality search would still find them), before the key goes
            SELECT concat_ws(', ', privacy_internal.anonymize_sets(r),
                             string_agg(format('%1$I = privacy_internal.shred_tag(%1$I)', a.attname), ', '
                                        ORDER BY a.attnum))
              INTO sets
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = pt.tbl AND a.attnum > 0 AND NOT a.attisdropped
               AND a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype)
               AND NOT r.anonymize ? a.attname;
            n := privacy_internal.run_as_owner(pt.tbl, format('UPDATE %s t SET %s WHERE %s', pt.tbl, sets, match));
        ELSE
            n := privacy_internal.run_as_owner(pt.tbl, format('DELETE FROM %s t WHERE %s', pt.tbl, match));
        END IF;
        done := done || jsonb_build_object(pt.tbl::text,
                    jsonb_build_object('action', CASE WHEN r.action = 'anonymize' THEN 'anonymized' ELSE 'deleted' END,
                                       'rows', n));
    END LOOP;

    -- every copy of the subject's encrypted values, anywhere, becomes unreadable
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');
    keys := privacy.destroy_subject_key(subject);

    -- consent: the current state goes; the history keeps what proves that
    -- consent was honoured (purpose, action, time, source), not who
    DELETE FROM privacy.consent_state cs WHERE cs.subject = erase_subject.subject;
    reduced := privacy_internal.reduce_ledger(subject, stand_in);
    UPDATE privacy.holds h SET subject = stand_in WHERE h.subject = erase_subject.subject;

    INSERT INTO privacy.erasures (subject_hash, reason, erased_by, tables, keys_destroyed, consent_events_reduced)
    VALUES (hash, reason, privacy_internal.caller(), done, keys, reduced)
    RETURNING id INTO erasure_id;
    SELECT jsonb_build_object('erasure', e.id, 'subject_hash', encode(e.subject_hash, 'hex'),
                              'reason', e.reason, 'erased_at', e.erased_at, 'erased_by', e.erased_by,
                              'tables', e.tables, 'keys_destroyed', e.keys_destroyed,
                              'consent_events_reduced', e.consent_events_reduced)
      INTO receipt FROM privacy.erasures e WHERE e.id = erasure_id;
    RETURN receipt;
END
$$;
COMMENT ON FUNCTION privacy.erase_subject(text, text) IS
    'erase a subject in one transaction: their rows deleted or anonymized in every protected table, their keys destroyed, their consent history reduced; returns a receipt';
