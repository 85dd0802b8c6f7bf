/*
 * 12_portal.sql — self-service for customers: the role privacy_portal, for
 * an application that serves customers (a portal, an app), acting on one
 * subject at a time that the application vouches for.
 */

------------------------------------------------------------------------------
-- The application authenticates its customer and declares them for the
-- transaction (SET LOCAL privacy.portal_subject = '42'); the functions
-- below act on that subject only, and take no subject argument, so that a
-- portal role cannot even name another one.  They record, as every other
-- path does, the application's login role (session_user) and the source
-- and evidence it gives.  privacy_portal is granted these and nothing else:
-- no table, no view, no other function of the extension.
------------------------------------------------------------------------------
CREATE FUNCTION privacy_internal.portal_subject() RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    subject text := current_setting('privacy.portal_subject', true);
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'no subject is declared for the portal',
            DETAIL  = 'The portal functions act on the subject the application has authenticated, and on no other.',
            HINT    = 'Declare the customer for the transaction with SET LOCAL privacy.portal_subject = ''<subject>''.';
    END IF;
    RETURN subject;
END
$$;

-- PL/pgSQL, not SQL: a SQL function with a setting is planned at every
-- call, a PL/pgSQL expression once a session (issue #19).
CREATE FUNCTION privacy.portal_report() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy.subject_report(privacy_internal.portal_subject()); END $$;
COMMENT ON FUNCTION privacy.portal_report() IS
    'the subject report of the subject declared in privacy.portal_subject (its own reads logged like every report''s)';

CREATE FUNCTION privacy.portal_report_html() RETURNS text
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT privacy.subject_report_html(privacy_internal.portal_subject()) $$;
COMMENT ON FUNCTION privacy.portal_report_html() IS
    'the subject report of the subject declared in privacy.portal_subject, as a page for people';

CREATE FUNCTION privacy.portal_grant_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'grant', source, evidence); END $$;
COMMENT ON FUNCTION privacy.portal_grant_consent(text, text, jsonb) IS
    'privacy.grant_consent for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_withdraw_consent(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'withdraw', source, evidence); END $$;
COMMENT ON FUNCTION privacy.portal_withdraw_consent(text, text, jsonb) IS
    'privacy.withdraw_consent for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_object(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'object', source, evidence); END $$;
COMMENT ON FUNCTION privacy.portal_object(text, text, jsonb) IS
    'privacy.object for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_lift_objection(purpose text, source text, evidence jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy_internal.record_consent(privacy_internal.portal_subject(), purpose, 'lift_objection', source, evidence); END $$;
COMMENT ON FUNCTION privacy.portal_lift_objection(text, text, jsonb) IS
    'privacy.lift_objection for the subject declared in privacy.portal_subject';

CREATE FUNCTION privacy.portal_open_request(kind text, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN privacy.open_request(privacy_internal.portal_subject(), kind, pg_catalog.now(), note); END $$;
COMMENT ON FUNCTION privacy.portal_open_request(text, text) IS
    'privacy.open_request for the subject declared in privacy.portal_subject, received now';
