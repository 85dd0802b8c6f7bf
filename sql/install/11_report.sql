/*
 * 11_report.sql — the subject report, as JSON and as a page (C: report.c).
 */

------------------------------------------------------------------------------
-- The subject report (GDPR Art. 15 and 20): everything the extension holds
-- about one subject, as JSON for a dashboard or a portability export, and
-- as a self-contained HTML page for people
------------------------------------------------------------------------------
-- The built-in purpose under which the report opens a subject's values.  It
-- is allowed every category, including categories created later, but only
-- while privacy_internal.report_table() reads a subject's rows (src/report.c): a
-- role that declares it anywhere else is allowed no category, so it lends no
-- one a general right to read.  No role is granted it: the report runs as
-- the extension owner, a superuser, who holds every purpose, and whoever may
-- execute privacy.subject_report() may use it.  The row comes with CREATE
-- EXTENSION and is therefore left out of dumps.
INSERT INTO privacy.purposes (name, legal_basis, description)
VALUES ('subject_access', 'legal_obligation',
        'answering a data subject''s access and portability requests (GDPR Art. 15 and 20) with privacy.subject_report(); built in, allowed every category inside the report only');
SELECT pg_catalog.pg_extension_config_dump('privacy.purposes', 'WHERE name <> ''subject_access''');

-- It cannot be changed, dropped, granted or allowed categories: granted to
-- a role with a category, it would open values outside the report.
CREATE FUNCTION privacy_internal.builtin_purpose_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'purposes' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'purpose "subject_access" is built in and cannot be changed or dropped',
            DETAIL  = 'privacy.subject_report() opens a subject''s values under it and records its use in the access log under its name.',
            HINT    = 'Grant privacy.subject_report() to the roles that answer access requests instead.';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('purpose "subject_access" is built in and cannot be %s',
                         CASE TG_TABLE_NAME WHEN 'role_purposes' THEN 'granted' ELSE 'allowed categories' END),
        DETAIL  = 'It is allowed every category inside privacy.subject_report() only, for whoever may execute that function.',
        HINT    = 'Grant privacy.subject_report() to the roles that answer access requests instead.';
END
$$;
CREATE TRIGGER builtin_purpose BEFORE UPDATE OR DELETE ON privacy.purposes
    FOR EACH ROW WHEN (OLD.name = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();
CREATE TRIGGER builtin_purpose BEFORE INSERT OR UPDATE ON privacy.purpose_categories
    FOR EACH ROW WHEN (NEW.purpose = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();
CREATE TRIGGER builtin_purpose BEFORE INSERT OR UPDATE ON privacy.role_purposes
    FOR EACH ROW WHEN (NEW.purpose = 'subject_access')
    EXECUTE FUNCTION privacy_internal.builtin_purpose_guard();

CREATE FUNCTION privacy_internal.report_table(tbl regclass, subject_column name, subject text,
                                      time_column name, keep interval) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_report_table' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION privacy_internal.report_table(regclass, name, text, name, interval) IS
    'a subject''s rows of one protected table with their retention due dates, decrypted under subject_access, and that access logged; called by privacy.subject_report() only';

-- The access entries of one subject on this node, oldest first, as the
-- report lists them, one object per statement.  Its own reads are left
-- out: on the node the report runs on, those of its backend since its
-- statement began (own_pid); on a Citus worker, which serves them over
-- Citus's connections, those under subject_access since then.  C (issue
-- #19): the reader of access_log_subject_trail(), then the objects built
-- as the query over it would build them (sql/access_trail.sql compares the
-- two), without starting that query's aggregates at every report.
CREATE FUNCTION privacy_internal.subject_access_entries(hash bytea, own_pid integer, since timestamptz)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'privacy_subject_access_entries' LANGUAGE C STABLE;

-- A subject's access trail for an officer (issue #19): what
-- access_log_for_subject() joined to access_log_event() gives (read by the
-- reader of access_log_subject_trail()), one row per statement and
-- category, oldest first.  C: a PL/pgSQL wrapper cost as much as the
-- reading.  It runs as its caller, so only who may read the access log
-- gets anything.
CREATE FUNCTION privacy.access_trail(subject text)
    RETURNS TABLE (entry bigint, at timestamptz, session_role text, acting_role text, application text,
                   purpose text, command text, relation text, category text, opened bigint,
                   outcome text, reason text, denied_category text)
    AS 'MODULE_PATHNAME', 'privacy_access_trail' LANGUAGE C STABLE STRICT ROWS 10;
COMMENT ON FUNCTION privacy.access_trail(text) IS
    'the access log entries that opened a subject''s encrypted values, one row per statement and category, oldest first, read through the subject''s index range; runs as its caller';

-- The report.  Version 1 of its shape is documented in doc/developer.md
-- ("The subject report (JSON)"); a change that removes or renames a key, or
-- changes what a value means, gets a new version number.  Subjects match as
-- in erase_subject(); after an erasure the ledger and the holds know the
-- subject only as 'erased:' || hex(subject_hash), and the erasures, requests
-- and access log by the keyed hash, so the report finds those too.  Holds are
-- disclosed by their dates, not their reason or who placed them (see the
-- compliance guide).  bytea_output and IntervalStyle are pinned so that the
-- export reads the same whatever the caller's settings.
CREATE FUNCTION privacy.subject_report(subject text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET privacy.purpose = 'subject_access'
    SET bytea_output = 'hex'
    SET IntervalStyle = 'iso_8601'
    -- one subject's rows never need JIT, which the planner's guesses for the
    -- packed access log (1,000 entries per batch) would buy: 0.4 s a call
    SET jit = off
AS $$
DECLARE
    hash bytea;
    stand_in text;
    report jsonb;
    access jsonb;
    columns jsonb;
    column_rels oid[];
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'subject must not be empty',
            HINT = 'Pass the value of the subject column as text, for example customer_id::text.';
    END IF;
    hash := privacy.subject_hash(subject);
    stand_in := 'erased:' || encode(hash, 'hex');

    -- each protected table's columns as the report describes them: kept for
    -- the session until a table or the classification changes (memo.c)
    columns := privacy_internal.memo_get('report_columns');
    IF columns IS NULL THEN
        SELECT coalesce(jsonb_object_agg(p.tbl::oid::text,
                   (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'category', pc.category,
                                                        'encrypted', coalesce(pc.encrypted, false))
                                     ORDER BY a.attnum)
                      FROM pg_attribute a
                      LEFT JOIN privacy_internal.personal_columns pc ON pc.tbl = a.attrelid AND pc.col = a.attname
                     WHERE a.attrelid = p.tbl AND a.attnum > 0 AND NOT a.attisdropped)), '{}'),
               array_agg(p.tbl::oid)
          INTO columns, column_rels
          FROM privacy.protected_tables p WHERE p.parent IS NULL;
        columns := privacy_internal.memo_put('report_columns', column_rels, columns);
    END IF;

    -- One statement for the whole report, planned once a session (issue #19:
    -- a statement per list cost more than the lists).  The subject's rows,
    -- once per protected table (partitions through their root), in the
    -- tables' order: report_table() reads and logs them.
    --
    -- Every purpose, and whether it may use the subject's data now (the
    -- visibility rule: consent given, or no objection for other bases).
    --
    -- Consents and objections with their full history from the ledger.
    --
    -- Who opened the subject's encrypted values, when, why; never how many
    -- rows the statement read in all (that is about other subjects too).
    -- A statement refused after opening some of them (or shown some with
    -- others masked) is a denial, with its reason; one refused before it
    -- read a row names no subject and is in the access log only.  Never
    -- this call's own reads (the writer may store them before the query
    -- runs); earlier calls are listed.
    SELECT jsonb_build_object(
        'version', 1,
        'subject', subject,
        'generated_at', clock_timestamp(),
        'data', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'table', d.tbl::text,
                            'subject_column', d.subject_column,
                            'columns', columns -> (d.tbl::oid::text),
                            'retention', CASE WHEN d.action IS NULL THEN NULL ELSE jsonb_build_object(
                                'time_column', d.time_column, 'keep', d.keep, 'action', d.action,
                                'anonymize', (SELECT coalesce(jsonb_agg(c.col ORDER BY c.col), '[]')
                                                FROM jsonb_object_keys(d.anonymize) AS c(col))) END,
                            'rows', d.found_rows) ORDER BY d.o), '[]')
                   FROM (SELECT t.*, privacy_internal.report_table(t.tbl, t.subject_column, subject_report.subject,
                                                                   t.time_column, t.keep) AS found_rows
                           FROM (SELECT p.tbl, p.subject_column, r.time_column, r.keep, r.action, r.anonymize,
                                        row_number() OVER (ORDER BY p.tbl::text) AS o
                                   FROM privacy.protected_tables p
                                   LEFT JOIN privacy.retention_rules r ON r.tbl = p.tbl
                                  WHERE p.parent IS NULL
                                  ORDER BY p.tbl::text OFFSET 0) t) d
                  WHERE jsonb_array_length(d.found_rows) > 0),
        'purposes', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'purpose', p.name, 'legal_basis', p.legal_basis, 'description', p.description,
                                'categories', CASE WHEN p.name = 'subject_access'
                                                   THEN (SELECT coalesce(jsonb_agg(c.name ORDER BY c.name), '[]') FROM privacy.categories c)
                                                   ELSE (SELECT coalesce(jsonb_agg(pc.category ORDER BY pc.category), '[]')
                                                           FROM privacy.purpose_categories pc WHERE pc.purpose = p.name) END,
                                'state', cs.state, 'since', cs.since,
                                'in_effect', CASE WHEN p.legal_basis = 'consent' THEN coalesce(cs.state = 'granted', false)
                                                  ELSE cs.state IS DISTINCT FROM 'objected' END)
                              ORDER BY p.name), '[]')
                       FROM privacy.purposes p
                       LEFT JOIN privacy.consent_state cs ON cs.purpose = p.name AND cs.subject = subject_report.subject),
        'consents', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'purpose', g.purpose, 'legal_basis', p.legal_basis, 'state', cs.state, 'since', cs.since,
                                'history', g.history)
                              ORDER BY g.purpose), '[]')
                       FROM (SELECT e.purpose,
                                    jsonb_agg(jsonb_build_object('event', e.id, 'action', e.action, 'at', e.at,
                                                                 'source', e.source, 'evidence', e.evidence,
                                                                 'recorded_by', e.recorded_by) ORDER BY e.id) AS history
                               FROM privacy.consent_events e
                              WHERE e.subject IN (subject_report.subject, stand_in)
                              GROUP BY e.purpose) g
                       JOIN privacy.purposes p ON p.name = g.purpose
                       LEFT JOIN privacy.consent_state cs ON cs.purpose = g.purpose AND cs.subject = subject_report.subject),
        'access', privacy_internal.subject_access_entries(hash, pg_catalog.pg_backend_pid(),
                                                          pg_catalog.statement_timestamp()),
        'holds', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'placed_at', h.placed_at, 'until', h.until, 'released_at', h.released_at,
                             'active', h.released_at IS NULL AND (h.until IS NULL OR h.until > now()))
                           ORDER BY h.placed_at, h.id), '[]')
                    FROM privacy.holds h
                   WHERE h.subject IN (subject_report.subject, stand_in)),
        'erasures', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'erasure', e.id, 'erased_at', e.erased_at, 'reason', e.reason,
                                'tables', e.tables, 'keys_destroyed', e.keys_destroyed)
                              ORDER BY e.id), '[]')
                       FROM privacy.erasures e
                      WHERE e.subject_hash = hash),
        'requests', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'request', r.id, 'kind', r.kind, 'status', r.status,
                                'open', r.status IN ('open', 'in_progress', 'extended'),
                                'received_at', r.received_at, 'due_at', r.due_at, 'deadline', r.deadline,
                                'extended_until', r.extended_until, 'extension_reason', r.extension_reason,
                                'closed_at', r.closed_at, 'resolution', r.resolution)
                              ORDER BY r.id), '[]')
                       FROM privacy.requests r
                      WHERE r.subject_hash = hash))
      INTO report;

    -- On a Citus coordinator, the values of distributed tables are opened
    -- on the workers, which log them in their own chains: their entries
    -- come too, each naming its node, in one list, oldest first (the
    -- coordinator's entries name no node).
    IF privacy_internal.citus_local_group() = 0 THEN
        SELECT coalesce(jsonb_agg(a.e ORDER BY (a.e ->> 'at')::timestamptz, a.e ->> 'node' NULLS FIRST,
                                  (a.e ->> 'entry')::bigint), '[]')
          INTO access
          FROM (SELECT e FROM jsonb_array_elements(report -> 'access') e
                UNION ALL
                SELECT e0 || jsonb_build_object('node', w.nodename || ':' || w.nodeport)
                  FROM pg_catalog.run_command_on_workers(format(
                           'SELECT privacy_internal.subject_access_entries(%L::bytea, NULL, %L::timestamptz)',
                           hash, pg_catalog.statement_timestamp())) w
                 CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN w.success THEN w.result::jsonb
                                                              ELSE '[]' END) e0) a(e);
        report := jsonb_set(report, '{access}', access);
    END IF;
    RETURN report;
END
$$;
COMMENT ON FUNCTION privacy.subject_report(text) IS
    'everything held about a subject (rows decrypted under the built-in purpose subject_access, purposes, consents with history, access log, retention due dates, holds, erasures, requests) as versioned JSON; its own use is logged';

-- HTML for people.  Every value goes through _html(); the page has no
-- script and loads nothing.
CREATE FUNCTION privacy_internal.html(s text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''),
           '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;

-- A JSON value in a table cell: text as is, structures as compact JSON.
CREATE FUNCTION privacy_internal.html_value(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN '<span class="none">&#8212;</span>'
                WHEN jsonb_typeof(v) IN ('object', 'array') THEN '<code>' || privacy_internal.html(v::text) || '</code>'
                ELSE privacy_internal.html(v #>> '{}') END
$$;

-- A time from the report, to the minute, in the session's time zone.
CREATE FUNCTION privacy_internal.html_time(v jsonb) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN '<span class="none">&#8212;</span>'
                ELSE '<time datetime="' || privacy_internal.html(v #>> '{}') || '">'
                     || privacy_internal.html(to_char((v #>> '{}')::timestamptz, 'YYYY-MM-DD HH24:MI TZ')) || '</time>' END
$$;

CREATE FUNCTION privacy_internal.html_basis(basis text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE basis
        WHEN 'consent' THEN 'your consent (GDPR Art. 6(1)(a))'
        WHEN 'contract' THEN 'a contract with you (Art. 6(1)(b))'
        WHEN 'legal_obligation' THEN 'a legal obligation (Art. 6(1)(c))'
        WHEN 'vital_interests' THEN 'vital interests (Art. 6(1)(d))'
        WHEN 'public_task' THEN 'a task in the public interest (Art. 6(1)(e))'
        WHEN 'legitimate_interests' THEN 'legitimate interests (Art. 6(1)(f))'
        ELSE privacy_internal.html(basis) END
$$;

-- A purpose as the page names it: the built-in one in the customer's words.
CREATE FUNCTION privacy_internal.html_purpose(purpose text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN purpose = 'subject_access' THEN 'answering your requests for your data'
                ELSE privacy_internal.html(purpose) END
$$;

-- Why a purpose may use the data, in a few plain words.
CREATE FUNCTION privacy_internal.html_why(basis text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE basis
        WHEN 'consent' THEN 'with your consent'
        WHEN 'contract' THEN 'to fulfil our contract with you'
        WHEN 'legal_obligation' THEN 'because the law requires it'
        WHEN 'vital_interests' THEN 'to protect someone''s life or health'
        WHEN 'public_task' THEN 'for a task in the public interest'
        WHEN 'legitimate_interests' THEN 'in our legitimate interest'
        ELSE privacy_internal.html(basis) END
$$;

-- "1 record", "3 records".
CREATE FUNCTION privacy_internal.html_count(n bigint, one text, many text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n || ' ' || CASE WHEN n = 1 THEN one ELSE many END
$$;

-- A table row of cells that are HTML already; a table around rows.
CREATE FUNCTION privacy_internal.html_row(VARIADIC cells text[]) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<tr>' || string_agg('<td>' || coalesce(c, '') || '</td>', '' ORDER BY o) || '</tr>'
      FROM unnest(cells) WITH ORDINALITY AS u(c, o)
$$;

CREATE FUNCTION privacy_internal.html_table(headers text[], rows text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<table><thead><tr>' || string_agg('<th>' || hd || '</th>', '' ORDER BY o) || '</tr></thead><tbody>'
           || coalesce(rows, '') || '</tbody></table>'
      FROM unnest(headers) WITH ORDINALITY AS u(hd, o)
$$;

CREATE FUNCTION privacy.subject_report_html(subject text) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    r jsonb := privacy.subject_report(subject);
    h text;
    t jsonb;
    row_ jsonb;
    x jsonb;
    col jsonb;
    cols text[];
    n integer;
    -- the states the page speaks of
    held boolean := jsonb_array_length(r -> 'data') > 0;
    erased_at jsonb := (SELECT e -> 'erased_at' FROM jsonb_array_elements(r -> 'erasures') e
                         ORDER BY (e ->> 'erased_at')::timestamptz DESC LIMIT 1);
    hold_active boolean := EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'holds') hd WHERE (hd ->> 'active')::boolean);
    records bigint;
    places text;
    uses text;
    unused text;
    first_due jsonb;
    last_due jsonb;
    undated bigint;
    reads bigint;
    report_reads bigint;
    last_read jsonb;
    read_for text;
BEGIN
    h := '<!DOCTYPE html>' || E'\n'
      || '<html lang="en"><head><meta charset="utf-8">'
      || '<meta name="viewport" content="width=device-width, initial-scale=1">'
      || '<title>Your personal data</title><style>'
      || 'body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;background:#f4f6f8;margin:0}'
      || 'main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff}'
      || 'h1{font-size:28px;margin:8px 0 4px;color:#0b3d62}'
      || 'h2{font-size:20px;margin:36px 0 8px;padding-bottom:4px;border-bottom:2px solid #0b3d62;color:#0b3d62}'
      || 'h3{font-size:16px;margin:20px 0 6px}'
      || 'p.lead{color:#44515e;margin-top:0}'
      || 'nav a{margin-right:14px;color:#0b5fa5}'
      || 'table{border-collapse:collapse;width:100%;margin:6px 0 14px;font-size:14px}'
      || 'th,td{border:1px solid #cfd6dd;padding:5px 8px;text-align:left;vertical-align:top}'
      || 'th{background:#e8eef4}'
      || 'tr:nth-child(even) td{background:#f8fafb}'
      || 'code{font-size:13px;white-space:pre-wrap;word-break:break-all}'
      || '.none,.empty{color:#7a8794}'
      || '.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#dde8f3;font-size:12px;margin:1px 2px}'
      || '.yes{color:#17693b;font-weight:600}.no{color:#a3261d;font-weight:600}'
      || '#summary p{margin:6px 0}'
      || 'footer{margin-top:40px;color:#7a8794;font-size:13px}'
      || '</style></head><body><main>' || E'\n'
      || '<h1>Your personal data</h1>'
      || '<p class="lead">This page lists the personal data we hold about <strong>'
      || privacy_internal.html(r ->> 'subject') || '</strong>, why we use it, who has accessed it, and when it will be deleted'
      || ' (your right of access, GDPR Art. 15). Generated ' || privacy_internal.html_time(r -> 'generated_at') || '.</p>'
      || '<nav><a href="#summary">In short</a><a href="#data">Data</a><a href="#purposes">Purposes</a><a href="#consents">Consents</a>'
      || '<a href="#access">Access</a><a href="#retention">Retention</a><a href="#holds">Holds</a>'
      || '<a href="#erasures">Erasures</a><a href="#requests">Requests</a></nav>' || E'\n';

    -- in short: what is held, why, for how long, who read it and why
    h := h || '<section id="summary"><h2>In short</h2>';
    SELECT sum(jsonb_array_length(d -> 'rows')),
           string_agg(privacy_internal.html(d ->> 'table') || ' (' || jsonb_array_length(d -> 'rows') || ')', ', ' ORDER BY o)
      INTO records, places
      FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o);
    IF erased_at IS NOT NULL THEN
        -- what an erasure leaves: rows whose personal columns were cleared
        h := h || '<p>We erased your data on ' || privacy_internal.html_time(erased_at) || '.'
              || CASE WHEN held THEN ' What is left: ' || privacy_internal.html_count(records, 'record', 'records')
                                     || ' with your personal data removed, which we keep for our records: ' || places || '.'
                      ELSE '' END
              || ' We no longer use your data for anything.</p>'
              || '<p>We keep only what shows that your rights were respected: the record of the erasure'
              || CASE WHEN jsonb_array_length(r -> 'consents') > 0 THEN ', the history of your consents' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'requests') > 0 THEN ', your requests' ELSE '' END
              || CASE WHEN jsonb_array_length(r -> 'access') > 0 THEN ' and the record of who read your data before' ELSE '' END
              || '.</p>';
    ELSIF held THEN
        h := h || '<p>We hold ' || privacy_internal.html_count(records, 'record', 'records') || ' about you, in '
              || privacy_internal.html_count(jsonb_array_length(r -> 'data'), 'part', 'parts') || ' of our systems: '
              || places || '.</p>';
        SELECT string_agg(privacy_internal.html(p ->> 'purpose') || ' (' || privacy_internal.html_why(p ->> 'legal_basis') || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE (p ->> 'in_effect')::boolean),
               string_agg(privacy_internal.html(p ->> 'purpose') || ' ('
                          || CASE p ->> 'state' WHEN 'objected' THEN 'you objected'
                                                WHEN 'withdrawn' THEN 'you withdrew your consent'
                                                ELSE 'you have not given your consent' END || ')',
                          ', ' ORDER BY p ->> 'purpose') FILTER (WHERE NOT (p ->> 'in_effect')::boolean)
          INTO uses, unused
          FROM jsonb_array_elements(r -> 'purposes') p
         WHERE p ->> 'purpose' <> 'subject_access';
        h := h || '<p>' || CASE WHEN uses IS NULL THEN 'At the moment we may not use '
                                                      || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for anything.'
                                ELSE 'We may use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || uses || '.' END
              || CASE WHEN unused IS NULL THEN ''
                      ELSE ' We do not use ' || CASE WHEN records = 1 THEN 'it' ELSE 'them' END || ' for ' || unused || '.' END
              || '</p>';
        SELECT to_jsonb(min(w.due)), to_jsonb(max(w.due)), count(*) FILTER (WHERE w.due IS NULL)
          INTO first_due, last_due, undated
          FROM jsonb_array_elements(r -> 'data') d,
               LATERAL (SELECT (x2 ->> 'due_at')::timestamptz AS due FROM jsonb_array_elements(d -> 'rows') x2) w;
        h := h || '<p>'
              || CASE WHEN first_due IS NULL THEN ''
                      WHEN first_due = last_due AND (first_due #>> '{}')::timestamptz > now()
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ends on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; then it is' ELSE '; then they are' END
                           || ' deleted or anonymized. '
                      WHEN first_due = last_due
                      THEN CASE WHEN records = 1 THEN 'Its' ELSE 'Their' END
                           || ' retention period ended on ' || privacy_internal.html_time(first_due)
                           || CASE WHEN records = 1 THEN '; it is' ELSE '; they are' END
                           || ' deleted or anonymized at our next purge. '
                      ELSE 'The first of them '
                           || CASE WHEN (first_due #>> '{}')::timestamptz > now() THEN 'reaches' ELSE 'reached' END
                           || ' the end of its retention period on ' || privacy_internal.html_time(first_due)
                           || ', the last on ' || privacy_internal.html_time(last_due)
                           || '; each is then deleted or anonymized. ' END
              || CASE WHEN undated = 0 THEN ''
                      WHEN undated = records THEN CASE WHEN records = 1 THEN 'We keep it until you ask us to erase it. '
                                                       ELSE 'We keep them until you ask us to erase them. ' END
                      ELSE privacy_internal.html_count(undated, 'record has', 'records have')
                           || ' no retention period: we keep them until you ask us to erase them. ' END
              || CASE WHEN hold_active THEN 'A legal hold applies to your data: we must keep it while the hold lasts, even past these dates.'
                      ELSE '' END
              || '</p>';
    ELSE
        h := h || '<p>We hold no records about you.</p>';
    END IF;
    SELECT count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access'),
           count(DISTINCT a ->> 'at') FILTER (WHERE a ->> 'purpose' = 'subject_access'),
           to_jsonb(max((a ->> 'at')::timestamptz) FILTER (WHERE a ->> 'purpose' IS DISTINCT FROM 'subject_access')),
           string_agg(DISTINCT privacy_internal.html(a ->> 'purpose'), ', ') FILTER (WHERE a ->> 'purpose' <> 'subject_access')
      INTO reads, report_reads, last_read, read_for
      FROM jsonb_array_elements(r -> 'access') a;
    h := h || '<p>'
          || CASE WHEN reads = 0 THEN 'Our access log records no one reading your encrypted data.'
                  ELSE 'Our staff and systems read your encrypted data '
                       || CASE WHEN reads = 1 THEN 'once' ELSE reads || ' times' END
                       || ', most recently on ' || privacy_internal.html_time(last_read)
                       || coalesce(', for ' || read_for, '') || '.' END
          || CASE WHEN report_reads = 0 THEN ''
                  ELSE ' We also read it ' || CASE WHEN report_reads = 1 THEN 'once' ELSE report_reads || ' times' END
                       || ' to prepare reports like this one for you.' END
          || '</p>';
    FOR x IN SELECT q FROM jsonb_array_elements(r -> 'requests') q WHERE (q ->> 'open')::boolean ORDER BY (q ->> 'request')::bigint LOOP
        h := h || '<p>Your ' || privacy_internal.html(x ->> 'kind') || ' request of ' || privacy_internal.html_time(x -> 'received_at')
              || ' is open; we answer it by ' || privacy_internal.html_time(x -> 'deadline') || '.</p>';
    END LOOP;
    h := h || '</section>' || E'\n';

    -- the data
    h := h || '<section id="data"><h2>The data we hold about you</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">We hold no records about you'
              || CASE WHEN erased_at IS NOT NULL THEN ': your data was erased on ' || privacy_internal.html_time(erased_at) ELSE '' END
              || '.</p>';
    ELSIF erased_at IS NOT NULL THEN
        h := h || '<p>Your data was erased on ' || privacy_internal.html_time(erased_at)
              || ': the records below are what is left, with your personal data removed.</p>';
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(r -> 'data') LOOP
        n := jsonb_array_length(t -> 'rows');
        SELECT array_agg(c ->> 'name' ORDER BY o) INTO cols
          FROM jsonb_array_elements(t -> 'columns') WITH ORDINALITY AS e(c, o);
        h := h || '<h3>' || privacy_internal.html(t ->> 'table') || '</h3><p>'
              || privacy_internal.html_count(n, 'record', 'records') || '.';
        IF jsonb_typeof(t -> 'retention') = 'object' THEN
            h := h || ' Kept for ' || privacy_internal.html(((t #>> '{retention,keep}')::interval)::text)
                  || ' after <em>' || privacy_internal.html(t #>> '{retention,time_column}') || '</em>, then '
                  || CASE WHEN t #>> '{retention,action}' = 'delete' THEN 'deleted'
                          ELSE 'anonymized (' || privacy_internal.html((SELECT string_agg(a, ', ' ORDER BY a)
                                                                  FROM jsonb_array_elements_text(t #> '{retention,anonymize}') a))
                               || ' cleared)' END || '.';
        ELSE
            h := h || ' No retention period is set for these records: we keep them until you ask us to erase them.';
        END IF;
        h := h || '</p><table><thead><tr>';
        FOR col IN SELECT * FROM jsonb_array_elements(t -> 'columns') LOOP
            h := h || '<th>' || privacy_internal.html(col ->> 'name')
                  || CASE WHEN col ->> 'category' IS NOT NULL
                          THEN ' <span class="tag">' || privacy_internal.html(col ->> 'category') || '</span>' ELSE '' END
                  || '</th>';
        END LOOP;
        h := h || '<th>Due for ' || CASE WHEN t #>> '{retention,action}' = 'anonymize' THEN 'anonymization' ELSE 'deletion' END
              || '</th></tr></thead><tbody>';
        FOR row_ IN SELECT * FROM jsonb_array_elements(t -> 'rows') LOOP
            h := h || '<tr>';
            h := h || coalesce((SELECT string_agg('<td>' || privacy_internal.html_value(row_ -> 'values' -> c) || '</td>', '' ORDER BY o)
                                  FROM unnest(cols) WITH ORDINALITY AS u(c, o)), '');
            h := h || '<td>' || privacy_internal.html_time(row_ -> 'due_at') || '</td></tr>';
        END LOOP;
        h := h || '</tbody></table>' || E'\n';
    END LOOP;
    h := h || '</section>';

    -- purposes
    h := h || '<section id="purposes"><h2>Why we use your data</h2>'
          || CASE WHEN erased_at IS NOT NULL THEN '<p>Your data was erased, so none of these purposes uses it now. The table shows what each purpose is for.</p>'
                  WHEN held THEN ''
                  ELSE '<p>We hold no data about you, so none of these purposes uses any. The table shows what each purpose is for and the choices you have made.</p>' END
          || '<table><thead><tr><th>Purpose</th><th>Legal basis</th><th>Kinds of data</th><th>Your choice</th><th>Uses your data now</th></tr></thead><tbody>';
    FOR x IN SELECT p FROM jsonb_array_elements(r -> 'purposes') WITH ORDINALITY AS e(p, o)
              ORDER BY p ->> 'purpose' = 'subject_access', o LOOP
        IF x ->> 'purpose' = 'subject_access' THEN
            -- the built-in purpose, in the customer's words
            h := h || '<tr><td><strong>' || privacy_internal.html_purpose(x ->> 'purpose') || '</strong>'
                  || '<br>We read your data only to prepare a report like this one when you ask for it (GDPR Art. 15 and 20).'
                  || '</td><td>' || privacy_internal.html_basis(x ->> 'legal_basis') || '</td>'
                  || '<td>all kinds, only for such a report</td>'
                  || '<td>none needed: the law requires us to answer you</td>'
                  || '<td>' || CASE WHEN held AND erased_at IS NULL THEN 'only while we prepare a report for you'
                                    ELSE '<span class="none">&#8212;</span>' END
                  || '</td></tr>';
            CONTINUE;
        END IF;
        h := h || '<tr><td><strong>' || privacy_internal.html(x ->> 'purpose') || '</strong>'
              || CASE WHEN coalesce(x ->> 'description', '') <> '' THEN '<br>' || privacy_internal.html(x ->> 'description') ELSE '' END
              || '</td><td>' || privacy_internal.html_basis(x ->> 'legal_basis') || '</td><td>'
              || coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                             FROM jsonb_array_elements_text(x -> 'categories') c), '<span class="none">none</span>')
              || '</td><td>'
              || CASE x ->> 'state'
                      WHEN 'granted' THEN 'consent given ' || privacy_internal.html_time(x -> 'since')
                      WHEN 'withdrawn' THEN 'consent withdrawn ' || privacy_internal.html_time(x -> 'since')
                      WHEN 'objected' THEN 'you objected ' || privacy_internal.html_time(x -> 'since')
                      ELSE CASE WHEN erased_at IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(r -> 'consents') c
                                                                       WHERE c ->> 'purpose' = x ->> 'purpose')
                                THEN 'no longer on record: erased with your data'
                                WHEN x ->> 'legal_basis' = 'consent' THEN 'no consent given'
                                ELSE 'no objection' END END
              || '</td><td>' || CASE WHEN NOT held OR erased_at IS NOT NULL THEN '<span class="none">&#8212;</span>'
                                     WHEN (x ->> 'in_effect')::boolean THEN '<span class="yes">yes</span>'
                                     ELSE '<span class="no">no</span>' END
              || '</td></tr>';
    END LOOP;
    h := h || '</tbody></table></section>' || E'\n';

    -- consents
    h := h || '<section id="consents"><h2>Your consents and objections</h2>';
    IF jsonb_array_length(r -> 'consents') = 0 THEN
        h := h || '<p class="empty">You have not given, withdrawn or objected to anything.</p>';
    END IF;
    FOR x IN SELECT * FROM jsonb_array_elements(r -> 'consents') LOOP
        h := h || '<h3>' || privacy_internal.html(x ->> 'purpose') || '</h3><p>'
              || CASE x ->> 'state'
                      WHEN 'granted' THEN 'You have given your consent; it is in effect since ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'withdrawn' THEN 'You withdrew your consent on ' || privacy_internal.html_time(x -> 'since') || '.'
                      WHEN 'objected' THEN 'You objected on ' || privacy_internal.html_time(x -> 'since') || ': we do not use your data for this.'
                      ELSE CASE WHEN erased_at IS NOT NULL
                                THEN 'Your choice is no longer on record: it was erased with your data. We keep the history below as proof that your choices were respected.'
                                ELSE 'No choice of yours is on record now.' END END
              || '</p>'
              || privacy_internal.html_table(ARRAY['When', 'What', 'Where it came from', 'Evidence'],
                     (SELECT string_agg(privacy_internal.html_row(
                                 privacy_internal.html_time(e -> 'at'),
                                 privacy_internal.html(CASE e ->> 'action' WHEN 'grant' THEN 'consent given'
                                                   WHEN 'withdraw' THEN 'consent withdrawn'
                                                   WHEN 'object' THEN 'objection'
                                                   WHEN 'lift_objection' THEN 'objection lifted' ELSE e ->> 'action' END),
                                 privacy_internal.html(e ->> 'source'),
                                 privacy_internal.html_value(e -> 'evidence')), '' ORDER BY o)
                        FROM jsonb_array_elements(x -> 'history') WITH ORDINALITY AS hist(e, o)));
    END LOOP;
    h := h || '</section>' || E'\n';

    -- access
    h := h || '<section id="access"><h2>Who accessed your data</h2>';
    IF jsonb_array_length(r -> 'access') = 0 THEN
        h := h || '<p class="empty">Our access log records no access to your encrypted data.</p>';
    ELSE
        h := h || privacy_internal.html_table(
                      ARRAY['When', 'Who', 'Application', 'Purpose', 'Where', 'Kinds of data', 'Values read'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html_time(a -> 'at'), privacy_internal.html(a ->> 'role'),
                                  privacy_internal.html_value(a -> 'application'),
                                  CASE WHEN a ->> 'purpose' IS NULL THEN privacy_internal.html_value(a -> 'purpose')
                                       ELSE privacy_internal.html_purpose(a ->> 'purpose') END,
                                  privacy_internal.html_value(a -> 'table'),
                                  coalesce((SELECT string_agg('<span class="tag">' || privacy_internal.html(c) || '</span>', ' ')
                                              FROM jsonb_array_elements_text(a -> 'categories') c), ''),
                                  privacy_internal.html(a ->> 'values')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'access') WITH ORDINALITY AS l(a, o)));
        h := h || '<p class="empty">Each entry is one statement that read your encrypted data.</p>';
    END IF;
    h := h || '</section>' || E'\n';

    -- retention
    h := h || '<section id="retention"><h2>When your data will be deleted</h2>';
    IF NOT held THEN
        h := h || '<p class="empty">There is nothing '
              || CASE WHEN erased_at IS NOT NULL THEN 'left to delete: your data was erased on ' || privacy_internal.html_time(erased_at)
                      ELSE 'to delete' END || '.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Records', 'Rule', 'First due', 'Last due'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(d ->> 'table'),
                                  CASE WHEN jsonb_typeof(d -> 'retention') = 'object'
                                       THEN CASE WHEN d #>> '{retention,action}' = 'delete' THEN 'deleted ' ELSE 'anonymized ' END
                                            || privacy_internal.html(((d #>> '{retention,keep}')::interval)::text)
                                            || ' after ' || privacy_internal.html(d #>> '{retention,time_column}')
                                       ELSE 'kept until you ask us to erase them' END,
                                  privacy_internal.html_time(due.first), privacy_internal.html_time(due.last)), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'data') WITH ORDINALITY AS e(d, o),
                              LATERAL (SELECT to_jsonb(min((w ->> 'due_at')::timestamptz)) AS first,
                                              to_jsonb(max((w ->> 'due_at')::timestamptz)) AS last
                                         FROM jsonb_array_elements(d -> 'rows') w) due));
    END IF;
    IF hold_active THEN
        h := h || '<p>A legal hold applies to your data (below): nothing is deleted while it lasts.</p>';
    END IF;
    h := h || '</section>' || E'\n';

    -- holds, erasures, requests
    h := h || '<section id="holds"><h2>Legal holds</h2>';
    IF jsonb_array_length(r -> 'holds') = 0 THEN
        h := h || '<p class="empty">No legal hold has been placed on your data.</p>';
    ELSE
        h := h || '<p>While a legal hold is active we must keep your data, even past its retention period or if you ask for erasure.</p>'
              || privacy_internal.html_table(ARRAY['Placed', 'Until', 'Released', 'Active'],
                     (SELECT string_agg(privacy_internal.html_row(
                                 privacy_internal.html_time(hd -> 'placed_at'), privacy_internal.html_time(hd -> 'until'),
                                 privacy_internal.html_time(hd -> 'released_at'),
                                 CASE WHEN (hd ->> 'active')::boolean THEN 'yes' ELSE 'no' END), '' ORDER BY o)
                        FROM jsonb_array_elements(r -> 'holds') WITH ORDINALITY AS e(hd, o)));
    END IF;
    h := h || '</section><section id="erasures"><h2>Erasures</h2>';
    IF jsonb_array_length(r -> 'erasures') = 0 THEN
        h := h || '<p class="empty">None of your data has been erased at your request.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Erasure', 'When', 'Why', 'What'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(er ->> 'erasure'), privacy_internal.html_time(er -> 'erased_at'),
                                  privacy_internal.html(er ->> 'reason'),
                                  coalesce((SELECT string_agg(privacy_internal.html(k) || ': '
                                                              || privacy_internal.html_count((v ->> 'rows')::bigint, 'record', 'records')
                                                              || ' ' || privacy_internal.html(v ->> 'action'), '; ' ORDER BY k)
                                              FROM jsonb_each(er -> 'tables') AS tb(k, v)), '')), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'erasures') WITH ORDINALITY AS e(er, o)));
    END IF;
    h := h || '</section><section id="requests"><h2>Your requests</h2>';
    IF jsonb_array_length(r -> 'requests') = 0 THEN
        h := h || '<p class="empty">We have no request from you on record.</p>';
    ELSE
        h := h || privacy_internal.html_table(ARRAY['Request', 'Kind', 'Received', 'Answer due', 'Status', 'Note'],
                      (SELECT string_agg(privacy_internal.html_row(
                                  privacy_internal.html(q ->> 'request'), privacy_internal.html(q ->> 'kind'),
                                  privacy_internal.html_time(q -> 'received_at'), privacy_internal.html_time(q -> 'deadline'),
                                  privacy_internal.html(replace(q ->> 'status', '_', ' '))
                                  || CASE WHEN q ->> 'closed_at' IS NOT NULL THEN ' ' || privacy_internal.html_time(q -> 'closed_at') ELSE '' END,
                                  privacy_internal.html(coalesce(q ->> 'resolution', q ->> 'extension_reason', ''))), '' ORDER BY o)
                         FROM jsonb_array_elements(r -> 'requests') WITH ORDINALITY AS e(q, o)));
    END IF;
    h := h || '</section><footer>Subject report, format version ' || privacy_internal.html(r ->> 'version')
          || '. The same report is available as JSON for transfer to another service (GDPR Art. 20).</footer>'
          || '</main></body></html>' || E'\n';
    RETURN h;
END
$$;
COMMENT ON FUNCTION privacy.subject_report_html(text) IS
    'privacy.subject_report() as a self-contained HTML page for the subject (inline style, no script, every value escaped)';

REVOKE ALL ON FUNCTION privacy_internal.builtin_purpose_guard(),
    privacy_internal.report_table(regclass, name, text, name, interval),
    privacy.subject_report(text), privacy.access_trail(text), privacy_internal.html(text), privacy_internal.html_value(jsonb),
    privacy_internal.html_time(jsonb), privacy_internal.html_basis(text), privacy_internal.html_purpose(text),
    privacy_internal.html_why(text), privacy_internal.html_count(bigint, text, text), privacy_internal.html_row(text[]),
    privacy_internal.html_table(text[], text), privacy.subject_report_html(text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION privacy.subject_report(text), privacy.subject_report_html(text),
    privacy.access_trail(text)
  TO privacy_officer;
