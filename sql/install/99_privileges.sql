/*
 * 99_privileges.sql — least privilege, for every part: what PUBLIC, privacy_admin and
 * privacy_officer may use.  Kept last so that the schema-wide REVOKEs
 * cover every object the parts created.
 */

------------------------------------------------------------------------------
-- Privileges: least privilege by default.
------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA privacy TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA privacy, privacy_internal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA privacy, privacy_internal FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA privacy, privacy_internal FROM PUBLIC;
-- The helpers are named inside the API's SQL, which runs as its caller (an
-- officer's purge, a DDL statement's event trigger), so the schema is usable
-- by everyone; what may be executed there is granted function by function
-- below, to PUBLIC only where the encrypted types, the policies or the
-- triggers on users' tables need it.
GRANT USAGE ON SCHEMA privacy_internal TO PUBLIC;

GRANT SELECT ON privacy.categories, privacy.purposes, privacy.purpose_categories,
                privacy.role_purposes, privacy.purpose_holders, privacy.keys
   TO privacy_admin, privacy_officer;
GRANT SELECT ON privacy.my_purposes TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    privacy.create_category(text, text, boolean),
    privacy.drop_category(text),
    privacy.create_purpose(text, text, text, text[]),
    privacy.drop_purpose(text),
    privacy.allow_category(text, text),
    privacy.disallow_category(text, text),
    privacy.grant_purpose(text, text),
    privacy.revoke_purpose(text, text),
    privacy.master_key_fingerprint(),
    privacy.previous_master_key_fingerprint(),
    privacy.rotate_key(text),
    privacy.rotate_master_key()
  TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy.destroy_subject_key(text), privacy.subject_hash(text)
  TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.master_key_status() TO privacy_admin, privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.key_cache_status() TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy.citus_attach() TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy.citus_verify_access_log() TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy_internal.citus_purpose(text), privacy_internal.citus_purpose(text, anyelement) TO PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.check_purpose(text), privacy.may_use(text) TO PUBLIC;

-- The encrypted types are for everyone: their functions carry their own checks
-- (the decryption gate, the category move check).
GRANT EXECUTE ON FUNCTION
    privacy_internal.encrypted_text_in(cstring, oid, integer), privacy_internal.encrypted_text_out(privacy.encrypted_text),
    privacy_internal.encrypted_text_recv(internal, oid, integer), privacy_internal.encrypted_text_send(privacy.encrypted_text),
    privacy_internal.encrypted_bytea_in(cstring, oid, integer), privacy_internal.encrypted_bytea_out(privacy.encrypted_bytea),
    privacy_internal.encrypted_bytea_recv(internal, oid, integer), privacy_internal.encrypted_bytea_send(privacy.encrypted_bytea),
    privacy_internal.encrypted_typmod_in(cstring[]), privacy_internal.encrypted_typmod_out(integer),
    privacy_internal.encrypted_text(privacy.encrypted_text, integer, boolean),
    privacy_internal.encrypted_bytea(privacy.encrypted_bytea, integer, boolean),
    privacy_internal.encrypted_text(text, integer, boolean), privacy_internal.encrypted_bytea(bytea, integer, boolean),
    privacy.plaintext(privacy.encrypted_text), privacy.plaintext(privacy.encrypted_bytea),
    privacy_internal.encrypted_eq(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_ne(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_lt(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_le(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_gt(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_ge(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_cmp(privacy.encrypted_text, privacy.encrypted_text),
    privacy_internal.encrypted_hash(privacy.encrypted_text),
    privacy_internal.encrypted_hash_extended(privacy.encrypted_text, bigint),
    privacy_internal.encrypted_eq(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_ne(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_lt(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_le(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_gt(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_ge(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_cmp(privacy.encrypted_bytea, privacy.encrypted_bytea),
    privacy_internal.encrypted_hash(privacy.encrypted_bytea),
    privacy_internal.encrypted_hash_extended(privacy.encrypted_bytea, bigint),
    privacy.envelope_info(privacy.encrypted_text), privacy.envelope_info(privacy.encrypted_bytea),
    privacy.is_erased(privacy.encrypted_text), privacy.is_erased(privacy.encrypted_bytea),
    privacy_internal.reseal(privacy.encrypted_text), privacy_internal.reseal(privacy.encrypted_bytea),
    privacy_internal.needs_reseal(privacy.encrypted_text), privacy_internal.needs_reseal(privacy.encrypted_bytea),
    privacy_internal.under_category_key(privacy.encrypted_text), privacy_internal.under_category_key(privacy.encrypted_bytea),
    privacy_internal.classify_new_columns(), privacy_internal.typmod_category(integer),
    privacy_internal.register_column(regclass, name),
    privacy_internal.seal_text(text), privacy_internal.seal_bytea(bytea),
    privacy_internal.nests_encrypted(regtype),
    privacy_internal.refuse_derived(regclass), privacy_internal.refuse_derived_values(),
    privacy_internal.shred_tag(privacy.encrypted_text), privacy_internal.shred_tag(privacy.encrypted_bytea),
    privacy_internal.live_search_tag(privacy.encrypted_text), privacy_internal.live_search_tag(privacy.encrypted_bytea)
  TO PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.classify(regclass, name, text, boolean, boolean),
    privacy.seal_for_subject(privacy.encrypted_text, text),
    privacy.seal_for_subject(privacy.encrypted_bytea, text)
  TO privacy_admin;
GRANT EXECUTE ON PROCEDURE privacy.reencrypt(regclass, name, integer), privacy.reseal(regclass, integer),
    privacy_internal.reseal_run(regclass, text, name, integer)
  TO privacy_admin;
GRANT EXECUTE ON FUNCTION privacy_internal.reseal_batch(regclass, text, name, integer),
    privacy_internal.reseal_lock(regclass), privacy_internal.reseal_unlock(regclass),
    privacy_internal.reseal_pending(regclass, text, name), privacy_internal.reseal_enqueue(regclass, text, name),
    privacy_internal.reseal_passed_over(regclass, text, bigint)
  TO privacy_admin;
-- (the view privacy.progress_reseal names it)
GRANT EXECUTE ON FUNCTION privacy_internal.reseal_lock_class() TO PUBLIC;
GRANT SELECT ON privacy.progress_reseal, privacy.reseal_jobs TO privacy_admin, privacy_officer;

-- Consent: recorded by the compliance role (and by applications a DBA grants
-- these functions to); the policy helpers run for every reader.
GRANT EXECUTE ON FUNCTION
    privacy.grant_consent(text, text, text, jsonb), privacy.withdraw_consent(text, text, text, jsonb),
    privacy.object(text, text, text, jsonb), privacy.lift_objection(text, text, text, jsonb),
    privacy.has_consent(text, text)
  TO privacy_officer;
GRANT SELECT ON privacy.consent_events, privacy.consent_state, privacy.consents
  TO privacy_officer, privacy_admin;
-- the policies of protected tables run these for every reader
GRANT EXECUTE ON FUNCTION privacy_internal.visible(bigint), privacy_internal.visible(text),
    privacy_internal.visible(uuid), privacy_internal.purpose_held(),
    privacy_internal.subject_int8(text), privacy_internal.seal_row()
  TO PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.protect_table(regclass, name), privacy.unprotect_table(regclass)
  TO privacy_admin;
GRANT SELECT ON privacy.protected_tables, privacy.protected TO privacy_admin, privacy_officer;

-- Retention is the compliance role's.
GRANT EXECUTE ON FUNCTION
    privacy.set_retention(regclass, name, interval, text, name[], jsonb), privacy.drop_retention(regclass),
    privacy.place_hold(text, text, timestamptz), privacy.release_hold(text), privacy.purge_preview(),
    privacy_internal.purge_start(integer, interval, text, name), privacy_internal.purge_batch(bigint, regclass, integer),
    privacy_internal.purge_finish(bigint, text, text), privacy_internal.purge_tables(bigint),
    privacy_internal.purge_wait()
  TO privacy_officer;
GRANT EXECUTE ON PROCEDURE privacy.purge(integer, interval, text, text) TO privacy_officer;
GRANT EXECUTE ON FUNCTION privacy.erase_subject(text, text), privacy.verify_erasure(text) TO privacy_officer;
GRANT SELECT ON privacy.erasures TO privacy_officer, privacy_admin;
GRANT SELECT ON privacy.retention_rules, privacy.holds, privacy.active_holds, privacy.purge_runs,
    privacy.purge_run_tables, privacy.purge_progress
  TO privacy_officer, privacy_admin;
GRANT SELECT ON privacy.column_categories, privacy.classified_columns TO privacy_admin, privacy_officer;
-- Self-service: the portal functions, acting on the subject the application
-- declared, and nothing else.
GRANT EXECUTE ON FUNCTION
    privacy.portal_report(), privacy.portal_report_html(),
    privacy.portal_grant_consent(text, text, jsonb), privacy.portal_withdraw_consent(text, text, jsonb),
    privacy.portal_object(text, text, jsonb), privacy.portal_lift_objection(text, text, jsonb),
    privacy.portal_open_request(text, text)
  TO privacy_portal;
-- pg_dump run by a privacy_admin member reads every table of the extension
-- (data keys only ever wrapped) and its sequences
GRANT SELECT ON ALL TABLES IN SCHEMA privacy TO privacy_admin;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA privacy TO privacy_admin;

-- The typed encrypted types (03_types.sql) are for everyone too, but for
-- seal_for_subject, which is the administrator's like the others.  (Revoked
-- first, so that an upgraded database has the same privileges as a new one.)
DO $grants$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS fn, p.proname = 'seal_for_subject' AS admin_only
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_type t
            ON t.oid = ANY (p.prorettype || p.proargtypes::pg_catalog.oid[])
           AND t.typnamespace = 'privacy'::regnamespace
         WHERE t.typname IN (SELECT b.name FROM privacy_internal.typed_bases() b)
         GROUP BY p.oid ORDER BY 1
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f.fn,
                       CASE WHEN f.admin_only THEN 'privacy_admin' ELSE 'PUBLIC' END);
    END LOOP;
END
$grants$;
REVOKE ALL ON FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]),
    privacy_internal.is_encrypted_type(oid), privacy_internal.typed_bases()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy_internal.encrypted_jsonb_typmod_in(cstring[]),
    privacy_internal.is_encrypted_type(oid), privacy_internal.typed_bases()
  TO PUBLIC;
