-- The subject report: its JSON shape, rows decrypted under the built-in
-- purpose, consent history, retention due dates, holds, requests, the access
-- log (and the report's own entry in it), privileges and the HTML page.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_category('financial');
SELECT privacy.create_purpose('billing', 'contract', 'invoices', ARRAY['contact', 'financial']);
SELECT privacy.create_purpose('marketing', 'consent', 'offers by e-mail', ARRAY['contact']);
SELECT privacy.create_purpose('support', 'legitimate_interests', 'answering tickets', ARRAY['contact']);
CREATE ROLE rep_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE rep_app LOGIN;
SELECT privacy.grant_purpose('rep_app', 'billing');

CREATE TABLE rep_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact),
                            iban privacy.encrypted_bytea(financial), joined_at timestamptz NOT NULL);
CREATE TABLE rep_orders (id integer PRIMARY KEY, customer_id bigint NOT NULL, item text,
                         note privacy.encrypted_text(contact), ordered_on date NOT NULL);
CREATE TABLE rep_visits (customer text NOT NULL, at timestamptz NOT NULL, page text,
                         PRIMARY KEY (customer, at)) PARTITION BY RANGE (at);
CREATE TABLE rep_visits_2025 PARTITION OF rep_visits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE rep_visits_2026 PARTITION OF rep_visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE rep_tickets (id integer PRIMARY KEY, customer text NOT NULL, body privacy.encrypted_text(contact));
GRANT SELECT ON rep_customers, rep_orders TO rep_app;
INSERT INTO rep_customers VALUES
    (17, 'Ana', 'ana@example.org', '\x414e41'::bytea, '2024-01-15 10:00+00'),
    (18, '<script>alert(1)</script> & "Bob"', 'bob@example.org', NULL, '2024-02-01 09:30+00');
INSERT INTO rep_orders VALUES (1, 17, 'tea', 'leave at the door', '2025-03-01'),
                              (2, 18, 'coffee', 'bob''s note', '2025-03-02'),
                              (3, 17, 'cups', NULL, '2025-04-10');
INSERT INTO rep_visits VALUES ('17', '2025-06-01 12:00+00', '/home'), ('17', '2026-02-01 08:00+00', '/cart'),
                              ('18', '2025-06-02 12:00+00', '/home');
INSERT INTO rep_tickets VALUES (1, '18', 'where is my coffee');
SELECT privacy.protect_table('rep_customers', 'id');
SELECT privacy.protect_table('rep_orders', 'customer_id');
SELECT privacy.protect_table('rep_visits', 'customer');
SELECT privacy.protect_table('rep_tickets', 'customer');
SELECT privacy.set_retention('rep_customers', 'joined_at', interval '3 years', 'anonymize', ARRAY['name', 'email', 'iban']);
SELECT privacy.set_retention('rep_orders', 'ordered_on', interval '10 years', 'delete');
SELECT privacy.grant_consent('17', 'marketing', 'web-form', '{"form": "signup-v2"}') > 0 AS granted;
SELECT privacy.withdraw_consent('17', 'marketing', 'unsubscribe-link') > 0 AS withdrawn;
SELECT privacy.grant_consent('17', 'marketing', 'app-settings') > 0 AS granted_again;
SELECT privacy.object('17', 'support', 'call-centre') > 0 AS objected;
SELECT privacy.grant_consent('18', 'marketing', 'web-form') > 0 AS granted_18;
SELECT privacy.place_hold('17', 'litigation 2026-117 (confidential)', '2099-01-01 00:00+00') > 0 AS held;
SELECT privacy.open_request('17', 'access', '2026-11-20 09:00+00', 'asked at the counter') > 0 AS requested;

-- the shape: every key, the version, one entry per protected table holding
-- rows of the subject (the partitioned table once, through its root)
SET ROLE rep_officer;
CREATE TEMP TABLE r17 AS SELECT privacy.subject_report('17') AS r;
RESET ROLE;
SELECT key, jsonb_typeof(r -> key) AS type FROM r17, jsonb_object_keys(r) AS key ORDER BY key;
SELECT r -> 'version' AS version, r -> 'subject' AS subject,
       (r ->> 'generated_at')::timestamptz BETWEEN now() - interval '1 minute' AND clock_timestamp() AS generated_now
  FROM r17;
SELECT d ->> 'table' AS tbl, d ->> 'subject_column' AS subject_column, jsonb_array_length(d -> 'rows') AS rows
  FROM r17, jsonb_array_elements(r -> 'data') d;

-- decrypted values (bytea in hex), plain values, due dates under each rule
SELECT jsonb_pretty(d) FROM r17, jsonb_array_elements(r -> 'data') d WHERE d ->> 'table' = 'public.rep_customers';
SELECT x -> 'values' AS vals, x -> 'due_at' AS due_at
  FROM r17, jsonb_array_elements(r -> 'data') d, jsonb_array_elements(d -> 'rows') x
 WHERE d ->> 'table' IN ('public.rep_orders', 'public.rep_visits')
 ORDER BY d ->> 'table';
-- A type's owner can give it a cast to json; the report runs as the
-- extension's owner, so it never uses one: such values are shown by their
-- output function.
CREATE TYPE rep_mood AS ENUM ('calm', 'busy');
CREATE TABLE rep_cast_calls (who name);
CREATE FUNCTION rep_mood_json(rep_mood) RETURNS json LANGUAGE sql
    AS $$ INSERT INTO public.rep_cast_calls VALUES (current_user) RETURNING '"cast"'::json $$;
CREATE CAST (rep_mood AS json) WITH FUNCTION rep_mood_json(rep_mood);
ALTER TABLE rep_tickets ADD COLUMN mood rep_mood DEFAULT 'busy', ADD COLUMN moods rep_mood[] DEFAULT '{calm,busy}';
SET ROLE rep_officer;
SELECT x -> 'values' -> 'mood' AS mood, x -> 'values' -> 'moods' AS moods
  FROM jsonb_array_elements(privacy.subject_report('18') -> 'data') d, jsonb_array_elements(d -> 'rows') x
 WHERE d ->> 'table' = 'public.rep_tickets';
RESET ROLE;
SELECT count(*) AS cast_calls FROM rep_cast_calls;
ALTER TABLE rep_tickets DROP COLUMN mood, DROP COLUMN moods;
DROP CAST (rep_mood AS json);
DROP FUNCTION rep_mood_json(rep_mood);
DROP TABLE rep_cast_calls;
DROP TYPE rep_mood;

-- nothing of subject 18 anywhere in the text
SELECT count(*) AS mentions_of_18
  FROM r17, unnest(ARRAY['bob@example.org', 'Bob', 'coffee', 'alert(1)', 'bob''s note', '2025-06-02', '"18"']) n
 WHERE position(n IN r::text) > 0;

-- purposes and whether each uses Ana's data now; consents with full history
SELECT x ->> 'purpose' AS purpose, x ->> 'legal_basis' AS basis, x -> 'categories' AS categories,
       x ->> 'state' AS state, x -> 'in_effect' AS in_effect
  FROM r17, jsonb_array_elements(r -> 'purposes') x;
SELECT c ->> 'purpose' AS purpose, c ->> 'state' AS state,
       h ->> 'action' AS action, h ->> 'source' AS source, h -> 'evidence' AS evidence, h ->> 'recorded_by' AS recorded_by
  FROM r17, jsonb_array_elements(r -> 'consents') c, jsonb_array_elements(c -> 'history') h
 ORDER BY (h ->> 'event')::bigint;

-- holds: dates and whether active, never the reason or who placed it
SELECT x - 'placed_at' AS hold, (x ->> 'placed_at')::timestamptz <= now() AS placed_before
  FROM r17, jsonb_array_elements(r -> 'holds') x;
SELECT r::text LIKE '%litigation%' AS reason_disclosed FROM r17;
-- requests
SELECT x - 'request' AS request FROM r17, jsonb_array_elements(r -> 'requests') x;
SELECT r -> 'erasures' AS erasures FROM r17;

-- an unknown subject: an empty but complete report
SET ROLE rep_officer;
SELECT jsonb_pretty(privacy.subject_report('no-such-subject') - 'generated_at' - 'purposes');
SELECT jsonb_array_length(privacy.subject_report('no-such-subject') -> 'purposes') AS purposes;
-- bad input changes nothing
SELECT privacy.subject_report('');
SELECT privacy.subject_report(NULL);
RESET ROLE;

-- access: rep_app reads Ana's e-mail for billing; the report shows when,
-- who, why, which categories and how many values, and its own earlier use
SET ROLE rep_app;
SET privacy.purpose = 'billing';
SELECT name, email FROM rep_customers WHERE id = 17;
SELECT count(note) FROM rep_orders WHERE customer_id = 17;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.flush_access_log();
SET ROLE rep_officer;
SELECT x ->> 'role' AS role, x ->> 'purpose' AS purpose, x ->> 'command' AS command, x ->> 'table' AS tbl,
       x -> 'categories' AS categories, x -> 'values' AS vals,
       (x ->> 'at')::timestamptz <= now() AS at_known
  FROM jsonb_array_elements(privacy.subject_report('17') -> 'access') x
 ORDER BY (x ->> 'entry')::bigint;
RESET ROLE;
-- the report's own reads are in the log under subject_access, one event per
-- table, with the role that called it
SELECT privacy.flush_access_log();
SELECT relation, purpose, acting_role, command, rows, columns
  FROM privacy.access_log WHERE purpose = 'subject_access' AND relation LIKE '%rep_customers'
 ORDER BY seq;
SELECT s.category, s.opened
  FROM privacy.access_log_subjects s JOIN privacy.access_log l ON l.seq = s.event
 WHERE l.purpose = 'subject_access' AND s.subject_hash = privacy.subject_hash('17')
 ORDER BY l.seq, s.category;

-- the built-in purpose opens nothing outside the report, and stays
SET ROLE rep_app;
SET privacy.purpose = 'subject_access';
SELECT email FROM rep_customers WHERE id = 17;
RESET privacy.purpose;
RESET ROLE;
SET privacy.purpose = 'subject_access';
SELECT email FROM rep_customers WHERE id = 17;
RESET privacy.purpose;
SELECT privacy.drop_purpose('subject_access');
UPDATE privacy.purposes SET legal_basis = 'consent' WHERE name = 'subject_access';
SELECT privacy.allow_category('subject_access', 'contact');
SELECT privacy.grant_purpose('rep_app', 'subject_access');
SELECT gap, object FROM privacy.compliance_gaps() WHERE object = 'subject_access';

-- privileges: the compliance role may, an application may not until granted
SET ROLE rep_app;
DO $$
BEGIN
    PERFORM privacy.subject_report('17');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'subject_report: % %', SQLSTATE, SQLERRM;
END
$$;
DO $$
BEGIN
    PERFORM privacy.subject_report_html('17');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'subject_report_html: % %', SQLSTATE, SQLERRM;
END
$$;
SELECT privacy_internal.report_table('rep_customers', 'id', '17', NULL, NULL);
RESET ROLE;
GRANT EXECUTE ON FUNCTION privacy.subject_report_html(text) TO rep_app;
SET ROLE rep_app;
SELECT length(privacy.subject_report_html('17')) > 1000 AS html_served;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION privacy.subject_report_html(text) FROM rep_app;

-- the page: every value escaped, no script, no external resource
SET ROLE rep_officer;
CREATE TEMP TABLE h18 AS SELECT privacy.subject_report_html('18') AS h;
RESET ROLE;
SELECT position('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Bob&quot;' IN h) > 0 AS name_escaped,
       h ~* '<script' AS has_script, h ~* '(src|href)="(https?:)?//' AS loads_external,
       h LIKE '<!DOCTYPE html>%</html>' || E'\n' AS complete,
       h LIKE '%bob@example.org%' AS decrypted,
       h LIKE '%ana@example.org%' AS mentions_ana
  FROM h18;
SELECT regexp_matches(h, '<h2>[^<]*</h2>', 'g') AS headings FROM h18;
SELECT privacy_internal.html('<a href="x">O''Neil & co</a>');

-- the report never lists its own reads, also when the writer has stored
-- them before the report reads the log: in one statement, a report, a
-- flush that waits until its events are committed (seen from a fresh
-- snapshot), a second report; the second lists what the first listed, not
-- the first's reads
CREATE FUNCTION rep_own_reads_stored() RETURNS boolean LANGUAGE sql VOLATILE AS $$
    SELECT count(*) > 0 FROM privacy.access_log l
     WHERE l.purpose = 'subject_access' AND l.backend_pid = pg_backend_pid()
       AND l.at >= statement_timestamp()
$$;
GRANT EXECUTE ON FUNCTION rep_own_reads_stored() TO rep_officer;
SELECT privacy.flush_access_log();
-- (what another session committed is seen by the second report only in
-- READ COMMITTED; in SERIALIZABLE it cannot list the first's reads anyway)
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL ROLE rep_officer;
WITH first AS MATERIALIZED (SELECT privacy.subject_report('17') AS r),
     flushed AS MATERIALIZED (SELECT privacy.flush_access_log() AND rep_own_reads_stored() AS stored FROM first),
     second AS MATERIALIZED (SELECT privacy.subject_report('17') AS r FROM flushed)
SELECT (SELECT count(*) FROM jsonb_array_elements(first.r -> 'access')) AS first_lists,
       flushed.stored AS first_reads_stored,
       (SELECT count(*) FROM jsonb_array_elements(second.r -> 'access')) AS second_lists
  FROM first, flushed, second;
COMMIT;
DROP FUNCTION rep_own_reads_stored();

-- The page as the customer reads it (its text, section by section; times
-- of this run shown as "(now)"): a subject with data, an erased subject,
-- a subject of whom nothing is held.
CREATE FUNCTION rep_page_text(h text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    m text[];
    t text := regexp_replace(h, '<head>.*</head>', '', 's');
BEGIN
    FOR m IN SELECT regexp_matches(t, '<time datetime="([^"]*)">([^<]*)</time>', 'g') LOOP
        t := replace(t, '<time datetime="' || m[1] || '">' || m[2] || '</time>',
                     CASE WHEN abs(extract(epoch FROM m[1]::timestamptz - now())) < 3600 THEN '(now)' ELSE m[2] END);
    END LOOP;
    t := regexp_replace(t, '</(p|h1|h2|h3|tr|footer|nav)>|<br>', E'\n', 'g');
    t := regexp_replace(t, '</t[dh]>', ' | ', 'g');
    t := regexp_replace(t, '</a>', ' ', 'g');
    t := regexp_replace(t, '<[^>]*>', '', 'g');
    t := replace(replace(replace(replace(replace(replace(t, '&lt;', '<'), '&gt;', '>'), '&quot;', '"'),
                 '&#39;', ''''), '&#8212;', '-'), '&amp;', '&');
    RETURN QUERY SELECT regexp_replace(btrim(l), '\s*\|$', '')
                   FROM regexp_split_to_table(t, E'\n') AS l WHERE btrim(l) <> '';
END
$$;
SELECT privacy.flush_access_log();
SET ROLE rep_officer;
SELECT rep_page_text(privacy.subject_report_html('17'));
RESET ROLE;
-- 19: a customer who consented, was read for billing, asked for erasure
SET privacy.purpose = 'billing';
INSERT INTO rep_customers VALUES (19, 'Cleo', 'cleo@example.org', NULL, '2023-05-05 08:00+00');
INSERT INTO rep_orders VALUES (4, 19, 'kettle', 'fragile', '2025-05-05');
RESET privacy.purpose;
SELECT privacy.grant_consent('19', 'marketing', 'web-form') > 0 AS granted_19;
SET ROLE rep_app;
SET privacy.purpose = 'billing';
SELECT length(email::text) AS email_length FROM rep_customers WHERE id = 19;
RESET privacy.purpose;
RESET ROLE;
SELECT privacy.open_request('19', 'erasure', '2026-11-30 10:00+00') > 0 AS requested_19;
SELECT privacy.erase_subject('19', 'erasure request of 30 November') ->> 'keys_destroyed' AS keys_destroyed;
SELECT privacy.flush_access_log();
SET ROLE rep_officer;
SELECT rep_page_text(privacy.subject_report_html('19'));
SELECT rep_page_text(privacy.subject_report_html('no-such-subject'));
RESET ROLE;
DROP FUNCTION rep_page_text(text);

-- the report and compliance_gaps() never compile their plans with JIT (the
-- access log's packed batches are costed at 1,000 entries each, which made
-- every report cross jit_above_cost: 0.4 s a call)
SELECT p.oid::regprocedure AS function, 'jit=off' = ANY (p.proconfig) AS jit_off
  FROM pg_proc p WHERE p.oid IN ('privacy.subject_report(text)'::regprocedure, 'privacy.compliance_gaps()'::regprocedure)
 ORDER BY 1::text;

DROP TABLE r17, h18, rep_customers, rep_orders, rep_visits, rep_tickets;
DROP EXTENSION privacy;
DROP ROLE rep_officer, rep_app;
