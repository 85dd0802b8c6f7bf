/*
 * 10_requests.sql — data-subject requests, the register of processing and compliance gaps.
 */

------------------------------------------------------------------------------
-- Data-subject requests, the register of processing and compliance gaps
-- (GDPR Art. 12, 15-22 and 30)
------------------------------------------------------------------------------
-- A request keeps its subject in clear, as the subject's own rows and the
-- consent ledger do: an officer must be able to find the subject's data,
-- answer them and tell requests apart, which a hash does not allow.  It also
-- keeps the subject's keyed hash, so that an erasure (whose record holds only
-- the hash) replaces the identifier in every request of that subject by the
-- same pseudonymous stand-in as the consent ledger and the holds get: after
-- an erasure the requests still prove what was asked and answered, not who.
CREATE SEQUENCE privacy.request_id_seq;
CREATE TABLE privacy.requests (
    id               bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.request_id_seq'),
    subject          text NOT NULL CHECK (subject <> ''),
    subject_hash     bytea NOT NULL,
    kind             text NOT NULL
                     CHECK (kind IN ('access', 'erasure', 'rectification', 'portability',
                                     'objection', 'restriction')),
    received_at      timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    extension        interval,
    extended_until   timestamptz,
    extension_reason text,
    deadline         timestamptz GENERATED ALWAYS AS (coalesce(extended_until, due_at)) STORED,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'in_progress', 'extended', 'completed', 'rejected')),
    closed_at        timestamptz,
    resolution       text,
    outcome          jsonb,
    note             text,
    opened_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    opened_by        name NOT NULL,
    CONSTRAINT request_closed CHECK ((status IN ('completed', 'rejected')) = (closed_at IS NOT NULL)),
    CONSTRAINT request_extension CHECK ((extension IS NULL) = (extended_until IS NULL)
                                        AND (extension IS NULL) = (extension_reason IS NULL)
                                        AND (extended_until IS NULL OR extended_until > due_at))
);
ALTER SEQUENCE privacy.request_id_seq OWNED BY privacy.requests.id;
CREATE INDEX ON privacy.requests (subject_hash);
CREATE INDEX ON privacy.requests (deadline) WHERE status IN ('open', 'in_progress', 'extended');
COMMENT ON TABLE privacy.requests IS
    'data-subject requests (GDPR Art. 15-22) with their legal deadline (Art. 12(3)); the subject in clear until erased, then a stand-in';

CREATE SEQUENCE privacy.request_event_id_seq;
CREATE TABLE privacy.request_events (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('privacy.request_event_id_seq'),
    request_id   bigint NOT NULL REFERENCES privacy.requests,
    at           timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    by           name NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    note         text
);
ALTER SEQUENCE privacy.request_event_id_seq OWNED BY privacy.request_events.id;
CREATE INDEX ON privacy.request_events (request_id, id);
COMMENT ON TABLE privacy.request_events IS
    'every status change of every data-subject request: who, when, from, to, why; append-only';

SELECT pg_catalog.pg_extension_config_dump('privacy.requests', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_events', '');
SELECT pg_catalog.pg_extension_config_dump('privacy.request_event_id_seq', '');

CREATE FUNCTION privacy_internal.request_history_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = 'request_events is append-only',
        DETAIL  = 'The history of a request is evidence that it was answered in time: entries are never changed or removed.',
        HINT    = 'Status changes are recorded by privacy.start_request(), extend_request(), complete_request() and reject_request().';
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON privacy.request_events
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.request_history_guard();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON privacy.request_events
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_internal.request_history_guard();

-- However a subject is erased (through complete_request or erase_subject
-- directly), their requests stop naming them.
CREATE FUNCTION privacy_internal.requests_forget_subject() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE privacy.requests r SET subject = 'erased:' || encode(NEW.subject_hash, 'hex')
     WHERE r.subject_hash = NEW.subject_hash AND r.subject NOT LIKE 'erased:%';
    RETURN NULL;
END
$$;
CREATE TRIGGER requests_forget_subject AFTER INSERT ON privacy.erasures
    FOR EACH ROW EXECUTE FUNCTION privacy_internal.requests_forget_subject();

CREATE FUNCTION privacy.open_request(subject text, kind text,
                                     received_at timestamptz DEFAULT pg_catalog.now(),
                                     note text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    request_id bigint;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    IF kind IS NULL OR kind NOT IN ('access', 'erasure', 'rectification', 'portability',
                                    'objection', 'restriction') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid request kind %s', coalesce(quote_literal(kind), 'NULL')),
            HINT = 'Use one of: access, erasure, rectification, portability, objection, restriction.';
    END IF;
    IF received_at IS NULL OR received_at > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('a request cannot be received %s',
                             CASE WHEN received_at IS NULL THEN 'at no time' ELSE 'in the future' END),
            HINT = 'Give the time the request reached the organisation; the deadline runs from it.';
    END IF;
    INSERT INTO privacy.requests (subject, subject_hash, kind, received_at, due_at, note, opened_by)
    VALUES (subject, privacy.subject_hash(subject), kind, received_at,
            received_at + interval '1 month', note, privacy_internal.caller())
    RETURNING requests.id INTO request_id;
    INSERT INTO privacy.request_events (request_id, by, from_status, to_status, note)
    VALUES (request_id, privacy_internal.caller(), NULL, 'open', note);
    RETURN request_id;
END
$$;
COMMENT ON FUNCTION privacy.open_request(text, text, timestamptz, text) IS
    'record a data-subject request received at received_at; it is due one month later (GDPR Art. 12(3)); returns its id';

-- Times in messages and in the history, to the second, in the session's zone.
CREATE FUNCTION privacy_internal.request_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_char(t, 'YYYY-MM-DD HH24:MI:SS TZ') $$;

-- Locks a request that is still open, or says why it cannot change.
CREATE FUNCTION privacy_internal.open_request_row(request_id bigint) RETURNS privacy.requests
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests;
BEGIN
    SELECT * INTO r FROM privacy.requests q WHERE q.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('request %s does not exist', coalesce(request_id::text, 'NULL')),
            HINT = 'privacy.requests lists the requests and their ids.';
    END IF;
    IF r.status IN ('completed', 'rejected') THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s is already %s', r.id, r.status),
            DETAIL = format('It was closed at %s.', privacy_internal.request_time(r.closed_at)),
            HINT = 'A closed request does not change; open a new request if the subject asks again.';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION privacy_internal.request_event(r privacy.requests, to_status text, note text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO privacy.request_events (request_id, by, from_status, to_status, note)
    VALUES (r.id, privacy_internal.caller(), r.status, to_status, note);
$$;

CREATE FUNCTION privacy.start_request(id bigint, note text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
BEGIN
    IF r.status = 'in_progress' THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s is already in progress', r.id);
    END IF;
    PERFORM privacy_internal.request_event(r, 'in_progress', note);
    UPDATE privacy.requests q SET status = 'in_progress' WHERE q.id = r.id;
END
$$;
COMMENT ON FUNCTION privacy.start_request(bigint, text) IS
    'mark a data-subject request as being worked on';

CREATE FUNCTION privacy.extend_request(id bigint, by interval, reason text) RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
    new_deadline timestamptz;
    latest timestamptz;
BEGIN
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'an extension needs a reason',
            DETAIL = 'GDPR Art. 12(3) requires telling the subject why the answer is delayed.',
            HINT = 'Name it, for example: complexity of the request, or the number of requests.';
    END IF;
    IF by IS NULL OR by <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('an extension must be positive, not %s', coalesce(by::text, 'NULL'));
    END IF;
    IF now() > r.due_at THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('request %s can no longer be extended', r.id),
            DETAIL = format('Its first month ended at %s; GDPR Art. 12(3) requires telling the subject of an extension within one month of receipt.',
                            privacy_internal.request_time(r.due_at)),
            HINT = 'Answer the request as soon as possible, or reject it with privacy.reject_request() giving the reason.';
    END IF;
    -- from the receipt, so that month ends do not shorten the total
    -- (31 January + 1 month + 1 month is 28 March, + 2 months is 31 March)
    new_deadline := r.received_at + (interval '1 month' + coalesce(r.extension, interval '0') + by);
    latest := r.received_at + interval '3 months';
    IF new_deadline > latest THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('request %s cannot be extended by %s', r.id, by),
            DETAIL = format('GDPR Art. 12(3) allows two further months after the first: its deadline, now %s, can move to %s at the latest.',
                            privacy_internal.request_time(r.deadline), privacy_internal.request_time(latest)),
            HINT = CASE WHEN r.deadline >= latest
                        THEN 'It has been extended as far as the law allows: answer it by its deadline.'
                        ELSE 'Extend it to that time at most, and answer as soon as possible.' END;
    END IF;
    PERFORM privacy_internal.request_event(r, 'extended',
                                   format('until %s: %s', privacy_internal.request_time(new_deadline), reason));
    UPDATE privacy.requests q SET status = 'extended', extension = coalesce(q.extension, interval '0') + by,
                                  extended_until = new_deadline, extension_reason = reason
     WHERE q.id = r.id;
    RETURN new_deadline;
END
$$;
COMMENT ON FUNCTION privacy.extend_request(bigint, interval, text) IS
    'extend the deadline of a request, within its first month and by two further months at most in all (GDPR Art. 12(3)); returns the new deadline';

-- Completing a request records what was done.  An erasure request is carried
-- out here (privacy.erase_subject, in the same transaction), unless the
-- subject was erased since the request was received; an objection request
-- needs the objections recorded first, since only the officer can say which
-- purposes it concerns and whether compelling grounds override it.
CREATE FUNCTION privacy.complete_request(id bigint, note text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests := privacy_internal.open_request_row(id);
    result jsonb;
BEGIN
    IF r.kind = 'erasure' THEN
        SELECT jsonb_build_object('erasure', e.id, 'subject_hash', encode(e.subject_hash, 'hex'),
                                  'reason', e.reason, 'erased_at', e.erased_at, 'erased_by', e.erased_by,
                                  'tables', e.tables, 'keys_destroyed', e.keys_destroyed,
                                  'consent_events_reduced', e.consent_events_reduced)
          INTO result
          FROM privacy.erasures e
         WHERE e.subject_hash = r.subject_hash AND e.erased_at >= r.received_at
         ORDER BY e.id DESC LIMIT 1;
        IF result IS NULL THEN
            result := privacy.erase_subject(r.subject, format('request #%s', r.id));
        END IF;
        result := jsonb_build_object('erasure', result);
        -- a request opened after the erasure that answers it (the erasure
        -- made the others forget the subject); later requests keep theirs
        UPDATE privacy.requests q SET subject = 'erased:' || encode(q.subject_hash, 'hex')
         WHERE q.id = r.id;
    ELSIF r.kind = 'objection' THEN
        SELECT jsonb_build_object('objections',
                   jsonb_agg(jsonb_build_object('purpose', e.purpose, 'event', e.id, 'at', e.at) ORDER BY e.id))
          INTO result
          FROM privacy.consent_events e
         WHERE e.subject = r.subject AND e.action = 'object' AND e.at >= r.received_at
        HAVING count(*) > 0;
        IF result IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = format('request %s has no objection recorded', r.id),
                DETAIL = format('No objection of its subject was recorded since the request was received (%s).',
                                privacy_internal.request_time(r.received_at)),
                HINT = format('Record it for each purpose concerned with privacy.object(subject, purpose, ''request #%s''), or reject the request with privacy.reject_request() if compelling grounds override it.', r.id);
        END IF;
    END IF;
    PERFORM privacy_internal.request_event(r, 'completed', note);
    UPDATE privacy.requests q SET status = 'completed', closed_at = clock_timestamp(),
                                  resolution = complete_request.note, outcome = result
     WHERE q.id = r.id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION privacy.complete_request(bigint, text) IS
    'close a request as answered; an erasure request erases the subject (privacy.erase_subject) unless already done, an objection request needs its objections recorded; returns the erasure receipt or the objections';

CREATE FUNCTION privacy.reject_request(id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r privacy.requests;
BEGIN
    IF reason IS NULL OR reason = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a rejection needs a reason',
            DETAIL = 'GDPR Art. 12(4) requires telling the subject why no action is taken, and Art. 12(5) puts on the controller the burden of showing a request manifestly unfounded or excessive.',
            HINT = 'State the grounds, for example: manifestly unfounded, excessive (repetitive), or the exemption of Art. 17(3) that applies.';
    END IF;
    r := privacy_internal.open_request_row(id);
    PERFORM privacy_internal.request_event(r, 'rejected', reason);
    UPDATE privacy.requests q SET status = 'rejected', closed_at = clock_timestamp(), resolution = reason
     WHERE q.id = r.id;
END
$$;
COMMENT ON FUNCTION privacy.reject_request(bigint, text) IS
    'close a request without acting on it, with the reason (GDPR Art. 12(4), 12(5), or an exemption such as Art. 17(3))';

CREATE VIEW privacy.overdue_requests AS
SELECT r.id, r.kind, r.subject, r.status, r.received_at, r.due_at, r.extended_until, r.deadline,
       pg_catalog.now() - r.deadline AS overdue_by,
       pg_catalog.ceil(extract(epoch FROM pg_catalog.now() - r.deadline) / 86400)::integer AS days_overdue
  FROM privacy.requests r
 WHERE r.status IN ('open', 'in_progress', 'extended') AND r.deadline < pg_catalog.now();
COMMENT ON VIEW privacy.overdue_requests IS
    'requests still open after their deadline (the first month, or the extension), with how late they are (a started day counts)';

-- The personal columns the register and the gaps speak of: those recorded in
-- column_categories, and encrypted columns that are not (a column left
-- "unclassified" is not recorded, nor is one whose table was created where the
-- event trigger could not record it).  Rows of tables that no longer exist
-- (temporary tables dropped at session end) are left out.
CREATE VIEW privacy_internal.personal_columns AS
SELECT cc.tbl, cc.col, cc.category, cc.encrypted, cc.searchable, true AS registered
  FROM privacy.column_categories cc
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cc.tbl)
UNION ALL
SELECT a.attrelid::pg_catalog.regclass, a.attname,
       coalesce(privacy_internal.typmod_category(a.atttypmod), 'unclassified'),
       true, a.atttypmod >= 0 AND (a.atttypmod >> 16) & 1 = 1, false
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
 WHERE privacy_internal.is_encrypted_type(a.atttypid)
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
   AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND NOT EXISTS (SELECT 1 FROM privacy.column_categories cc
                    WHERE cc.tbl = a.attrelid AND cc.col = a.attname);

-- The record of processing activities (GDPR Art. 30(1)), one row per purpose,
-- allowed category and personal column of that category, so that each row
-- reads "purpose P, on basis B, processes category C in column T.K, stored so,
-- kept so long, by these roles".  A purpose without categories, and a category
-- without columns, still give a row (with NULLs), and so do personal columns
-- that no purpose may process (purpose NULL): the register shows what is held
-- as well as why.  Roles are those granted the purpose (their members hold it
-- too); dropped roles are left out.
CREATE VIEW privacy.processing_register AS
WITH holders AS (
    SELECT rp.purpose, array_agg(r.rolname::text ORDER BY r.rolname) AS roles
      FROM privacy.role_purposes rp JOIN pg_catalog.pg_roles r ON r.oid = rp.role
     GROUP BY rp.purpose
), cols AS (
    SELECT pcol.tbl, pcol.col, pcol.category, pcol.encrypted, pcol.searchable,
           pt.tbl IS NOT NULL AS table_protected, pt.subject_column,
           rr.keep, rr.action
      FROM privacy_internal.personal_columns pcol
      LEFT JOIN privacy.protected_tables pt ON pt.tbl = pcol.tbl
      LEFT JOIN privacy.retention_rules rr ON rr.tbl = coalesce(pt.parent, pcol.tbl)
)
SELECT p.name AS purpose, p.legal_basis, p.description,
       pc.category, c.special,
       cols.tbl AS table_name, cols.col AS column_name, cols.encrypted, cols.searchable,
       cols.table_protected, cols.subject_column,
       cols.keep AS retention, cols.action AS retention_action,
       coalesce(h.roles, '{}') AS roles
  FROM privacy.purposes p
  LEFT JOIN privacy.purpose_categories pc ON pc.purpose = p.name
  LEFT JOIN privacy.categories c ON c.name = pc.category
  LEFT JOIN cols ON cols.category = pc.category
  LEFT JOIN holders h ON h.purpose = p.name
UNION ALL
SELECT NULL, NULL, NULL, cols.category, c.special,
       cols.tbl, cols.col, cols.encrypted, cols.searchable,
       cols.table_protected, cols.subject_column, cols.keep, cols.action, '{}'
  FROM cols
  LEFT JOIN privacy.categories c ON c.name = cols.category
 WHERE NOT EXISTS (SELECT 1 FROM privacy.purpose_categories pc WHERE pc.category = cols.category);
COMMENT ON VIEW privacy.processing_register IS
    'record of processing activities (GDPR Art. 30): per purpose, category and column, the legal basis, storage, protection, retention and roles holding the purpose';

-- What the register shows that needs fixing, each with how to fix it.
CREATE FUNCTION privacy.compliance_gaps()
    RETURNS TABLE (gap text, object text, detail text, hint text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
    SET jit = off    -- catalog-sized queries: compiling them costs more than running them
AS $$
BEGIN
    RETURN QUERY
    -- personal data stored in plain text
    SELECT 'column not encrypted', format('%s.%I', pc.tbl, pc.col),
           format('Column %I of %s holds %s data in plain text%s.', pc.col, pc.tbl, pc.category,
                  CASE WHEN c.special THEN ' (a special category, GDPR Art. 9)' ELSE '' END),
           format('A member of privacy_admin converts it with privacy.classify(%L, %L, %L, encrypt => true).',
                  pc.tbl::text, pc.col, pc.category)
      FROM privacy_internal.personal_columns pc JOIN privacy.categories c ON c.name = pc.category
     WHERE NOT pc.encrypted
    UNION ALL
    -- encrypted columns the register cannot describe
    SELECT 'column not classified', format('%s.%I', pc.tbl, pc.col),
           CASE WHEN pc.category = 'unclassified'
                THEN format('Column %I of %s is encrypted as "unclassified": no purpose can read it, and the register cannot say what it holds.',
                            pc.col, pc.tbl)
                ELSE format('Encrypted column %I of %s names category %s in its type, but was never recorded.',
                            pc.col, pc.tbl, pc.category) END,
           format('A member of privacy_admin classifies it with privacy.classify(%L, %L, %s).',
                  pc.tbl::text, pc.col,
                  CASE WHEN pc.category = 'unclassified' THEN 'category' ELSE quote_literal(pc.category) END)
      FROM privacy_internal.personal_columns pc
     WHERE pc.category = 'unclassified' OR NOT pc.registered
    UNION ALL
    -- personal data held for no purpose
    SELECT 'column without purpose', format('%s.%I', pc.tbl, pc.col),
           format('Column %I of %s holds %s data, which no purpose is allowed.', pc.col, pc.tbl, pc.category),
           format('Allow the category to the purposes that need it with privacy.allow_category(purpose, %L), or stop keeping the column.',
                  pc.category)
      FROM privacy_internal.personal_columns pc
     WHERE pc.category <> 'unclassified'
       AND NOT EXISTS (SELECT 1 FROM privacy.purpose_categories x WHERE x.category = pc.category)
    UNION ALL
    -- protection that is no longer intact (only a superuser can get there:
    -- for everyone else the commands are refused)
    SELECT 'protection not intact', pt.tbl::text,
           format('Protected table %s %s.', pt.tbl,
                  concat_ws(', ',
                      CASE WHEN NOT c.relrowsecurity THEN 'has row-level security disabled' END,
                      CASE WHEN NOT c.relforcerowsecurity THEN 'no longer forces row-level security on its owner' END,
                      CASE WHEN pt.base_policy AND (SELECT count(*) FROM pg_catalog.pg_policy pol
                                                    WHERE pol.polrelid = pt.tbl
                                                      AND pol.polname IN ('privacy_select', 'privacy_insert', 'privacy_update', 'privacy_delete')) < 4
                           THEN 'lacks some of its consent-check policies' END,
                      CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
                                         WHERE pol.polrelid = pt.tbl AND pol.polpermissive AND pol.polcmd <> 'a'
                                           AND coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') NOT LIKE '%privacy_internal.visible(%')
                           THEN 'has a permissive policy without the consent check' END,
                      CASE WHEN NOT c.relispartition AND NOT EXISTS (
                                    SELECT 1 FROM pg_catalog.pg_trigger tg
                                     WHERE tg.tgrelid = pt.tbl AND tg.tgname = 'privacy_seal_row' AND tg.tgenabled IN ('O', 'A'))
                           THEN 'lacks an enabled seal trigger' END)),
           format('A member of privacy_admin protects it again: SELECT privacy.unprotect_table(%L); SELECT privacy.protect_table(%L, %L);',
                  coalesce(pt.parent, pt.tbl)::text, coalesce(pt.parent, pt.tbl)::text, pt.subject_column)
      FROM privacy.protected_tables pt JOIN pg_catalog.pg_class c ON c.oid = pt.tbl
     WHERE NOT c.relrowsecurity OR NOT c.relforcerowsecurity
        OR (pt.base_policy AND (SELECT count(*) FROM pg_catalog.pg_policy pol
                                 WHERE pol.polrelid = pt.tbl
                                   AND pol.polname IN ('privacy_select', 'privacy_insert', 'privacy_update', 'privacy_delete')) < 4)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
                    WHERE pol.polrelid = pt.tbl AND pol.polpermissive AND pol.polcmd <> 'a'
                      AND coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') NOT LIKE '%privacy_internal.visible(%')
        OR (NOT c.relispartition AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_trigger tg
                 WHERE tg.tgrelid = pt.tbl AND tg.tgname = 'privacy_seal_row' AND tg.tgenabled IN ('O', 'A')))
    UNION ALL
    -- rows of a protected table still under the category key: protect_table
    -- left them to CALL privacy.reseal(), which has not finished
    SELECT 'reseal pending', j.tbl::text,
           format('Protected table %s has rows still under the category key (%s of %s covered by privacy.reseal()): destroying a subject''s key does not shred them yet.',
                  j.tbl, j.rows_done, coalesce(j.rows_total::text, 'its rows')),
           format('A member of privacy_admin finishes it: CALL privacy.reseal(%L);', j.tbl::text)
      FROM privacy.reseal_jobs j
     WHERE j.command = 'protect_table'
    UNION ALL
    -- personal data outside consent-aware row-level security
    SELECT 'table not protected', t.tbl::text,
           format('Table %s has personal columns (%s) but is not protected: its rows ignore consent and objections, are not shredded on erasure, and no retention rule can apply.',
                  t.tbl, t.cols),
           format('A member of privacy_admin protects it with privacy.protect_table(%L, subject_column).', t.tbl::text)
      FROM (SELECT pc.tbl, string_agg(quote_ident(pc.col), ', ' ORDER BY pc.col) AS cols
              FROM privacy_internal.personal_columns pc
             WHERE NOT EXISTS (SELECT 1 FROM privacy.protected_tables pt WHERE pt.tbl = pc.tbl)
             GROUP BY pc.tbl) t
    UNION ALL
    -- storage limitation (GDPR Art. 5(1)(e))
    SELECT 'no retention rule', pt.tbl::text,
           format('Protected table %s has no retention rule: its rows are kept for ever.', pt.tbl),
           format('Set one with privacy.set_retention(%L, time_column, keep, ''delete'') (or ''anonymize'' with the columns to clear).',
                  pt.tbl::text)
      FROM privacy.protected_tables pt
     WHERE pt.parent IS NULL
       AND NOT EXISTS (SELECT 1 FROM privacy.retention_rules rr WHERE rr.tbl = pt.tbl)
    UNION ALL
    -- GDPR Art. 30(1)(c): the categories of personal data of each processing
    SELECT 'purpose without categories', p.name,
           format('Purpose %s (%s) is allowed no category of personal data: the register cannot say what it processes, and it can read no encrypted value.',
                  p.name, p.legal_basis),
           format('Allow it the categories it processes with privacy.allow_category(%L, category), or drop it with privacy.drop_purpose(%L).',
                  p.name, p.name)
      FROM privacy.purposes p
     WHERE NOT EXISTS (SELECT 1 FROM privacy.purpose_categories x WHERE x.purpose = p.name)
       AND p.name <> 'subject_access'    -- built in: every category, in the subject report only
    UNION ALL
    -- a purpose no role holds processes nothing, whatever the register says;
    -- for consent, subjects are asked to agree to processing nobody does
    SELECT 'purpose held by no role', p.name,
           format('No role holds purpose %s (%s)%s.', p.name, p.legal_basis,
                  CASE n.consents WHEN 0 THEN ''
                                  WHEN 1 THEN ', yet 1 subject consents to it'
                                  ELSE format(', yet %s subjects consent to it', n.consents) END),
           format('Grant it to the role that processes it with privacy.grant_purpose(role, %L), or %s.', p.name,
                  CASE WHEN p.legal_basis = 'consent' THEN 'stop collecting consent for it'
                       ELSE format('drop it with privacy.drop_purpose(%L)', p.name) END)
      FROM privacy.purposes p,
           LATERAL (SELECT count(*) AS consents FROM privacy.consent_state cs
                     WHERE cs.purpose = p.name AND cs.state = 'granted') n
     WHERE NOT EXISTS (SELECT 1 FROM privacy.role_purposes rp JOIN pg_catalog.pg_roles r ON r.oid = rp.role
                        WHERE rp.purpose = p.name)
       AND p.name <> 'subject_access'    -- used through privacy.subject_report(), not held
    UNION ALL
    -- GDPR Art. 12(3)
    SELECT 'request overdue', format('request %s', o.id),
           format('%s request received %s, due %s%s: %s overdue.', initcap(o.kind),
                  privacy_internal.request_time(o.received_at), privacy_internal.request_time(o.deadline),
                  CASE WHEN o.extended_until IS NOT NULL THEN ' (extended)' ELSE '' END,
                  CASE WHEN o.days_overdue = 1 THEN '1 day' ELSE o.days_overdue || ' days' END),
           format('Answer it now and close it with privacy.complete_request(%s, note), or with privacy.reject_request(%s, reason) if it is not acted on.',
                  o.id, o.id)
      FROM privacy.overdue_requests o
    UNION ALL
    -- data minimisation: a grant nobody uses is access nobody needs.  A
    -- purpose counts as used by a role when the role, or a member of it
    -- other than a superuser, declared it in a logged statement; grants
    -- younger than 30 days are left alone.
    SELECT 'purpose never used', format('%s / %s', r.rolname, rp.purpose),
           format('Role %I has held purpose %s since %s, and the access log shows no statement of it or its members under that purpose.',
                  r.rolname, rp.purpose, privacy_internal.request_time(rp.granted_at)),
           format('If it does not need it, revoke it with privacy.revoke_purpose(%L, %L).', r.rolname, rp.purpose)
      FROM privacy.role_purposes rp
      JOIN pg_catalog.pg_roles r ON r.oid = rp.role
     WHERE rp.granted_at < pg_catalog.now() - interval '30 days'
       AND rp.purpose <> 'subject_access'
       AND NOT EXISTS (
           SELECT 1
             FROM privacy.access_log_purpose_use u
             JOIN pg_catalog.pg_roles m ON m.rolname = u.acting_role
            WHERE u.purpose = rp.purpose
              -- a superuser is a member of every role: its use says nothing
              AND (m.oid = rp.role OR
                   (NOT m.rolsuper AND pg_catalog.pg_has_role(m.oid, rp.role, 'MEMBER'))))
    UNION ALL
    -- the log's tamper evidence is worth what its verification is
    SELECT CASE WHEN v.status IS NULL THEN 'access log not verified'
                WHEN v.status <> 'ok' THEN 'access log broken'
                ELSE 'access log not verified' END,
           'privacy.access_log',
           CASE WHEN v.status IS NULL THEN 'privacy.verify_access_log() has never been run.'
                WHEN v.status <> 'ok' THEN format('The last verification (%s) found the log %s at entry %s: %s.',
                                                  privacy_internal.request_time(v.verified_at), v.status, v.seq, v.detail)
                ELSE format('The access log was last verified %s, more than 7 days ago.',
                            privacy_internal.request_time(v.verified_at)) END,
           CASE WHEN v.status IS NOT NULL AND v.status <> 'ok'
                THEN 'Keep the result as evidence, find out who changed the log, and restore the entries from a backup.'
                ELSE 'Run SELECT * FROM privacy.verify_access_log() (as privacy_officer), and schedule it daily.' END
      FROM (SELECT NULL) one
      LEFT JOIN LATERAL (SELECT * FROM privacy.access_log_verifications
                          ORDER BY verified_at DESC LIMIT 1) v ON true
     WHERE EXISTS (SELECT 1 FROM privacy.access_log)
       AND (v.status IS NULL OR v.status <> 'ok' OR v.verified_at < pg_catalog.now() - interval '7 days')
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION privacy.compliance_gaps() IS
    'what the register shows that needs fixing (plain or unclassified personal columns, unprotected tables, missing retention, purposes without categories or holders, overdue requests, purposes granted but never used, an access log not verified lately or broken), each with a hint';

REVOKE ALL ON privacy.requests, privacy.request_events, privacy.overdue_requests,
              privacy_internal.personal_columns, privacy.processing_register FROM PUBLIC;
REVOKE ALL ON FUNCTION
    privacy_internal.request_history_guard(), privacy_internal.requests_forget_subject(),
    privacy.open_request(text, text, timestamptz, text), privacy_internal.request_time(timestamptz),
    privacy_internal.open_request_row(bigint),
    privacy_internal.request_event(privacy.requests, text, text), privacy.start_request(bigint, text),
    privacy.extend_request(bigint, interval, text), privacy.complete_request(bigint, text),
    privacy.reject_request(bigint, text), privacy.compliance_gaps()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    privacy.open_request(text, text, timestamptz, text), privacy.start_request(bigint, text),
    privacy.extend_request(bigint, interval, text), privacy.complete_request(bigint, text),
    privacy.reject_request(bigint, text), privacy.compliance_gaps()
  TO privacy_officer;
GRANT SELECT ON privacy.requests, privacy.request_events, privacy.overdue_requests
  TO privacy_officer;
GRANT SELECT ON privacy.processing_register TO privacy_officer, privacy_admin;
