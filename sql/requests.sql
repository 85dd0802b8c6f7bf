-- Data-subject requests: deadlines, extensions, completion, rejection, the
-- history, erasure and objection requests, privileges.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', '', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
CREATE ROLE req_officer LOGIN IN ROLE privacy_officer;
CREATE ROLE req_admin LOGIN IN ROLE privacy_admin;
CREATE ROLE req_app LOGIN;
CREATE TABLE req_customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact));
INSERT INTO req_customers VALUES (17, 'Ana', 'ana@example.org'), (18, 'Bob', 'bob@example.org'),
                                 (19, 'Cem', 'cem@example.org');
SELECT privacy.protect_table('req_customers', 'id');
-- runs a statement and shows its error with the times (relative to now) masked
CREATE FUNCTION req_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text; d text; h text; c text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN regexp_replace(concat_ws(E'\n', c || ' ' || m, nullif('DETAIL: ' || d, 'DETAIL: '),
                                    nullif('HINT: ' || h, 'HINT: ')),
                          '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', '<time>', 'g');
END
$$;

-- opening: due one month after receipt, recorded by the calling role
SET ROLE req_officer;
SELECT privacy.open_request('17', 'access', note => 'e-mail of 3 March') AS access_id \gset
SELECT id = :access_id AS same_id, subject, kind, status, due_at = received_at + interval '1 month' AS due_in_a_month,
       deadline = due_at AS deadline_is_due, extended_until, note, opened_by,
       subject_hash = privacy.subject_hash('17') AS hash_matches
  FROM privacy.requests;
SELECT privacy.open_request('17', 'access', timestamptz '2024-01-31 10:00+00') AS id31 \gset
SELECT received_at, due_at FROM privacy.requests WHERE id = :id31;

-- bad input changes nothing
SELECT privacy.open_request('', 'access');
SELECT privacy.open_request(NULL, 'access');
SELECT privacy.open_request('17', 'deletion');
SELECT privacy.open_request('17', NULL);
SELECT privacy.open_request('17', 'access', now() + interval '1 hour');
SELECT privacy.open_request('17', 'access', NULL);
SELECT count(*) AS requests FROM privacy.requests;

-- starting work
SELECT privacy.start_request(:access_id, 'collecting the data');
SELECT privacy.start_request(:access_id);
SELECT privacy.start_request(9999);
SELECT privacy.start_request(NULL);
SELECT status FROM privacy.requests WHERE id = :access_id;

-- extensions: a reason, a positive interval, two further months at most in all
SELECT privacy.open_request('17', 'portability', now() - interval '10 days') AS port_id \gset
SELECT privacy.extend_request(:port_id, interval '1 month', '');
SELECT privacy.extend_request(:port_id, interval '1 month', NULL);
SELECT privacy.extend_request(:port_id, interval '0', 'complex');
SELECT privacy.extend_request(:port_id, interval '-1 day', 'complex');
SELECT req_try(format($$SELECT privacy.extend_request(%s, interval '2 months 1 day', 'complex')$$, :port_id));
SELECT privacy.extend_request(9999, interval '1 month', 'complex');
SELECT privacy.extend_request(:port_id, interval '1 month', 'complex: data in three systems')
       = (SELECT received_at + interval '2 months' FROM privacy.requests WHERE id = :port_id) AS first_extension;
SELECT privacy.extend_request(:port_id, interval '1 month', 'many requests this month')
       = (SELECT received_at + interval '3 months' FROM privacy.requests WHERE id = :port_id) AS second_extension;
SELECT req_try(format($$SELECT privacy.extend_request(%s, interval '1 day', 'one more day')$$, :port_id));
SELECT status, extension, extended_until = received_at + interval '3 months' AS three_months,
       deadline = extended_until AS deadline, extension_reason
  FROM privacy.requests WHERE id = :port_id;
-- an extension is decided within the first month, when the subject must be told
SELECT privacy.open_request('18', 'rectification', now() - interval '40 days') AS late_id \gset
SELECT req_try(format($$SELECT privacy.extend_request(%s, interval '1 month', 'complex')$$, :late_id));
SELECT status, extended_until FROM privacy.requests WHERE id = :late_id;

-- overdue: open past the deadline (the first month, or the extension)
SELECT privacy.open_request('19', 'restriction', timestamptz '2020-01-10 12:00+00', 'letter') AS old_id \gset
SELECT id = :old_id AS old, id = :late_id AS late, id = :id31 AS jan31, kind, status,
       CASE WHEN id <> :late_id THEN deadline END AS deadline, deadline = due_at AS first_month,
       days_overdue = ceil(extract(epoch FROM now() - deadline) / 86400)::integer AS days_right,
       days_overdue > 0 AS late_by_days, overdue_by > interval '0' AS positive
  FROM privacy.overdue_requests ORDER BY deadline;
-- the extended request and the fresh ones are not overdue
SELECT count(*) AS not_overdue FROM privacy.requests r
 WHERE r.status NOT IN ('completed', 'rejected')
   AND NOT EXISTS (SELECT 1 FROM privacy.overdue_requests o WHERE o.id = r.id);

-- completing and rejecting
SELECT privacy.complete_request(:access_id, 'report sent by post') AS outcome;
SELECT req_try(format($$SELECT privacy.complete_request(%s, 'again')$$, :access_id));
SELECT req_try(format($$SELECT privacy.extend_request(%s, interval '1 month', 'late')$$, :access_id));
SELECT req_try(format($$SELECT privacy.start_request(%s)$$, :access_id));
SELECT req_try(format($$SELECT privacy.reject_request(%s, 'changed my mind')$$, :access_id));
SELECT privacy.complete_request(9999);
SELECT privacy.reject_request(:old_id, '');
SELECT privacy.reject_request(:old_id, NULL);
SELECT privacy.reject_request(9999, 'x');
SELECT privacy.reject_request(:old_id, 'manifestly unfounded: the sixth identical request this month (Art. 12(5))');
SELECT req_try(format($$SELECT privacy.reject_request(%s, 'again')$$, :old_id));
SELECT id = :access_id AS access, status, closed_at IS NOT NULL AS closed, resolution, outcome
  FROM privacy.requests WHERE id IN (:access_id, :old_id) ORDER BY id;
SELECT count(*) AS still_overdue FROM privacy.overdue_requests WHERE id = :old_id;

-- the history of each request: who, when, from, to, why
SELECT request_id = :access_id AS access, request_id = :port_id AS port, request_id = :old_id AS old,
       by, from_status, to_status,
       regexp_replace(note, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', '<time>') AS note
  FROM privacy.request_events WHERE request_id IN (:access_id, :port_id, :old_id) ORDER BY id;
RESET ROLE;
-- append-only, even for the owner
UPDATE privacy.request_events SET note = 'rewritten';
DELETE FROM privacy.request_events;
TRUNCATE privacy.request_events;
SELECT count(*) > 0 AS history_kept FROM privacy.request_events;

-- an erasure request erases the subject, in the same transaction
SELECT privacy.place_hold('17', 'litigation 2026-117');
SET ROLE req_officer;
SELECT privacy.open_request('17', 'erasure') AS erase_id \gset
SELECT privacy.complete_request(:erase_id, 'erased');
SELECT status FROM privacy.requests WHERE id = :erase_id;
SELECT count(*) AS events FROM privacy.request_events WHERE request_id = :erase_id;
RESET ROLE;
SELECT privacy.release_hold('17');
SET ROLE req_officer;
SELECT outcome - 'erased_at' - 'subject_hash' - 'erasure' AS receipt,
       outcome ->> 'subject_hash' = encode(privacy.subject_hash('17'), 'hex') AS hash_matches
  FROM (SELECT privacy.complete_request(:erase_id, 'erased, letter sent') -> 'erasure' AS outcome) o;
SELECT status, resolution, outcome -> 'erasure' ->> 'reason' AS reason FROM privacy.requests WHERE id = :erase_id;
-- every request of the erased subject now names only the stand-in
SELECT kind, subject = 'erased:' || encode(privacy.subject_hash('17'), 'hex') AS stand_in,
       subject_hash = privacy.subject_hash('17') AS hash_kept
  FROM privacy.requests WHERE subject_hash = privacy.subject_hash('17') ORDER BY id;
SELECT count(*) AS naming_17 FROM privacy.requests WHERE subject = '17';
RESET ROLE;
SET privacy.purpose = 'billing';
SELECT id, name FROM req_customers ORDER BY id;
RESET privacy.purpose;

-- erased directly with erase_subject: the requests forget the subject, and
-- completing the erasure request points at that erasure instead of erasing again
SET ROLE req_officer;
SELECT privacy.open_request('18', 'erasure', now() - interval '1 day') AS erase18_id \gset
SELECT privacy.erase_subject('18', 'phone call, ticket 77') ->> 'reason' AS erased;
SELECT kind, subject LIKE 'erased:%' AS stand_in FROM privacy.requests
 WHERE subject_hash = privacy.subject_hash('18') ORDER BY id;
SELECT privacy.complete_request(:erase18_id) -> 'erasure' ->> 'reason' AS linked_erasure;
SELECT count(*) AS erasures FROM privacy.erasures;
-- a letter received before that erasure but recorded after it: completing it
-- points at the erasure and forgets the subject; a request received since
-- (a new contact) keeps the identifier
SELECT privacy.open_request('18', 'erasure', now() - interval '2 days', 'letter') AS letter_id \gset
SELECT privacy.open_request('18', 'access', note => 'asks what is left') AS after_id \gset
SELECT privacy.complete_request(:letter_id) -> 'erasure' ->> 'reason' AS linked_erasure;
SELECT id = :letter_id AS letter, kind, subject LIKE 'erased:%' AS stand_in, subject = '18' AS in_clear
  FROM privacy.requests WHERE id IN (:letter_id, :after_id) ORDER BY id;
SELECT count(*) AS erasures FROM privacy.erasures;

-- an objection request is completed once the objections are recorded
SELECT privacy.open_request('19', 'objection', now() - interval '2 days') AS object_id \gset
SELECT req_try(format($$SELECT privacy.complete_request(%s)$$, :object_id));
SELECT privacy.object('19', 'marketing', 'request #' || :object_id) > 0 AS objected;
SELECT jsonb_path_query_array(privacy.complete_request(:object_id, 'no more newsletters'),
                              '$.objections[*].purpose') AS purposes;
SELECT status, jsonb_array_length(outcome -> 'objections') AS objections FROM privacy.requests WHERE id = :object_id;
RESET ROLE;

-- privileges: the officer works requests through the functions only
SET ROLE req_officer;
UPDATE privacy.requests SET status = 'completed';
INSERT INTO privacy.request_events (request_id, by, to_status) VALUES (1, 'x', 'open');
RESET ROLE;
SET ROLE req_admin;
SELECT privacy.open_request('17', 'access');
SELECT privacy.complete_request(:port_id);
SELECT count(*) > 0 AS admin_reads_for_dumps FROM privacy.requests;
RESET ROLE;
SET ROLE req_app;
SELECT privacy.open_request('17', 'access');
SELECT privacy.extend_request(:port_id, interval '1 day', 'x');
SELECT privacy.reject_request(:port_id, 'x');
SELECT privacy.start_request(:port_id);
SELECT * FROM privacy.requests;
SELECT * FROM privacy.request_events;
SELECT * FROM privacy.overdue_requests;
RESET ROLE;
SELECT p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'privacy'::regnamespace
   AND p.proname IN ('open_request', 'start_request', 'extend_request', 'complete_request', 'reject_request')
 ORDER BY 1;

DROP TABLE req_customers;
DROP FUNCTION req_try(text);
DROP EXTENSION privacy;
DROP ROLE req_officer, req_admin, req_app;
