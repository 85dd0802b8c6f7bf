-- Online resealing (issue #14): protect_table on a table of more than a
-- batch leaves its rows to CALL privacy.reseal(), which reseals them in
-- committed batches by key, resumable, shown in privacy.progress_reseal;
-- reads meanwhile open both keys' values; reencrypt uses the same batches;
-- the work runs as the table's owner; bad calls fail clearly.
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact', 'e-mail, phone');
SELECT privacy.create_purpose('support', 'contract', 'customer support', ARRAY['contact']);
CREATE ROLE reseal_owner LOGIN;
GRANT CREATE ON SCHEMA public TO reseal_owner;
SELECT privacy.grant_purpose('reseal_owner', 'support');

-- a table owned by an ordinary role, with identifiers that need quoting
-- and a trigger of the owner's own that records who fired it (it runs with
-- search_path pinned, as in VACUUM, so it names its table's schema)
SET ROLE reseal_owner;
CREATE TABLE "Big Table" ("Key Col" bigint PRIMARY KEY, "Sub-ject" bigint,
                          email privacy.encrypted_text(contact), note text);
CREATE TABLE fired (by_role name, n bigint);
CREATE FUNCTION note_fired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.fired SET n = n + 1 WHERE by_role = current_user;
    IF NOT FOUND THEN INSERT INTO public.fired VALUES (current_user, 1); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER a_note BEFORE UPDATE ON "Big Table" FOR EACH ROW EXECUTE FUNCTION note_fired();
SET privacy.purpose = 'support';
INSERT INTO "Big Table" SELECT g, g % 3, 'user' || g || '@example.org', 'n' || g FROM generate_series(1, 1201) g;
RESET privacy.purpose;
RESET ROLE;

-- more rows than a batch: the catalog change only, and a job left
SELECT privacy.protect_table('"Big Table"', 'Sub-ject');
SELECT relid, command, phase, rows_total, rows_done, rows_resealed, batches
  FROM privacy.progress_reseal;
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS under_category_keys
  FROM "Big Table";
-- compliance_gaps() names it until the reseal is done
SELECT gap, object, detail, hint FROM privacy.compliance_gaps() WHERE gap = 'reseal pending';

-- reads and writes meanwhile: both keys' values open, new writes go under
-- the subject's key
SET ROLE reseal_owner;
SET privacy.purpose = 'support';
SELECT count(*), count(DISTINCT email::text) AS distinct_emails,
       count(*) FILTER (WHERE email::text = 'user' || "Key Col" || '@example.org') AS correct
  FROM "Big Table";
UPDATE "Big Table" SET email = 'changed@example.org' WHERE "Key Col" = 1100;
INSERT INTO "Big Table" VALUES (5000, 1, 'new@example.org', 'new');
RESET privacy.purpose;
RESET ROLE;
SELECT "Key Col", privacy_internal.under_category_key(email) AS under_category_key
  FROM "Big Table" WHERE "Key Col" IN (1, 1100, 5000) ORDER BY 1;

-- one batch, as a crash or a cancel after it would leave it: the job
-- records where it stopped
SELECT privacy_internal.reseal_batch('"Big Table"', 'protect_table', NULL, 500);
SELECT phase, rows_total, rows_done, rows_resealed, batches FROM privacy.progress_reseal;
SELECT last_key, key_columns FROM privacy.reseal_jobs;
-- while a session holds the table (a second session is refused: see the
-- isolation spec protect_online), the view shows its process
SELECT privacy_internal.reseal_lock('"Big Table"');
SELECT pid = pg_backend_pid() AS mine, phase FROM privacy.progress_reseal;
SELECT privacy_internal.reseal_unlock('"Big Table"');

-- the CALL resumes there; rows the application wrote meanwhile are left
-- alone (1201 - 500 - 1 rows resealed, the new row 5000 covered)
CALL privacy.reseal('"Big Table"', 300);
SELECT count(*) FROM privacy.progress_reseal;
SELECT count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS under_category_keys,
       count(*) AS total FROM "Big Table";
SET privacy.purpose = 'support';
SELECT count(*) FILTER (WHERE email::text = 'user' || "Key Col" || '@example.org') AS unchanged,
       count(*) FILTER (WHERE email::text IN ('changed@example.org', 'new@example.org')) AS written
  FROM "Big Table";
RESET privacy.purpose;
-- the owner's trigger fired as the owner, once per row resealed (and once
-- for the application's update)
SELECT by_role, n FROM fired;
-- nothing left, no gap
CALL privacy.reseal('"Big Table"');
SELECT count(*) AS reseal_gaps FROM privacy.compliance_gaps() WHERE gap = 'reseal pending';

-- errors
CALL privacy.reseal('no_such_table');
CREATE TABLE loose (id int PRIMARY KEY, email privacy.encrypted_text(contact));
CALL privacy.reseal('loose');
CALL privacy.reseal('"Big Table"', 0);
CALL privacy.reencrypt('loose', 'id');
CALL privacy.reencrypt('loose', 'email', NULL);


-- a table without a primary key goes by its subject column (a row without
-- a subject stays under the category key, and is not counted as covered);
-- a composite primary key is followed column by column
CREATE TABLE nokey (subject text, email privacy.encrypted_text(contact));
CREATE TABLE twokeys (a int, b text, subject int, email privacy.encrypted_text(contact), PRIMARY KEY (a, b));
SET privacy.purpose = 'support';
INSERT INTO nokey SELECT (g % 4)::text, 'k' || g FROM generate_series(1, 1010) g;
INSERT INTO nokey VALUES (NULL, 'nobody');
INSERT INTO twokeys SELECT g % 7, 'b' || g, g % 2, 't' || g FROM generate_series(1, 1010) g;
RESET privacy.purpose;
SET ROLE privacy_admin;
SELECT privacy.protect_table('nokey', 'subject');
SELECT privacy.protect_table('twokeys', 'subject');
CALL privacy.reseal(NULL, 400);
RESET ROLE;
SELECT (SELECT count(*) FROM nokey WHERE privacy_internal.under_category_key(email)) AS nokey_left,
       (SELECT count(*) FROM twokeys WHERE privacy_internal.under_category_key(email)) AS twokeys_left;

-- partitions each have their job; unprotect_table drops them
CREATE TABLE parted (id int, subject int, email privacy.encrypted_text(contact)) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (2000);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (2000) TO (4000);
SET privacy.purpose = 'support';
INSERT INTO parted SELECT g, g % 5, 'p' || g FROM generate_series(1, 3999) g;
RESET privacy.purpose;
SELECT privacy.protect_table('parted', 'subject');
SELECT relid, phase, rows_done FROM privacy.progress_reseal ORDER BY relid::text;
SELECT privacy.unprotect_table('parted');
SELECT count(*) FROM privacy.reseal_jobs;
SELECT privacy.protect_table('parted', 'subject');
CALL privacy.reseal('parted', 1000);
SELECT count(*) FROM parted WHERE privacy_internal.under_category_key(email);

-- reencrypt: values under a retired key move to the active one, in batches
SET privacy.purpose = 'support';
INSERT INTO loose SELECT g, 'l' || g FROM generate_series(1, 25) g;
RESET privacy.purpose;
SELECT privacy.rotate_key('contact') > 0 AS rotated;
SELECT count(*) FILTER (WHERE privacy_internal.needs_reseal(email)) AS needs_reseal FROM loose;
-- (as a member of privacy_admin, with no privilege on the table)
CREATE ROLE reseal_admin IN ROLE privacy_admin;
SET ROLE reseal_admin;
CALL privacy.reencrypt('loose', 'email', 10);
SELECT relid, command FROM privacy.progress_reseal;
RESET ROLE;
SELECT count(*) FILTER (WHERE privacy_internal.needs_reseal(email)) AS needs_reseal FROM loose;
SET privacy.purpose = 'support';
SELECT count(*) FILTER (WHERE email::text = 'l' || id) AS correct FROM loose;
RESET privacy.purpose;

-- the throttle: privacy.reseal_delay, a pause after each committed batch
-- (any role may set it: it only slows its own reseal); bad values are
-- refused and change nothing
SHOW privacy.reseal_delay;
SET privacy.reseal_delay = -1;
SET privacy.reseal_delay = 10001;
SET privacy.reseal_delay = 'soon';
SHOW privacy.reseal_delay;
SET ROLE reseal_owner;
SET privacy.reseal_delay = '1s';
SHOW privacy.reseal_delay;
RESET ROLE;
RESET privacy.reseal_delay;
CREATE TABLE throttled (id int PRIMARY KEY, subject int, email privacy.encrypted_text(contact));
SET privacy.purpose = 'support';
INSERT INTO throttled SELECT g, g % 50, 't' || g FROM generate_series(1, 1001) g;
RESET privacy.purpose;
SET client_min_messages = warning;
SELECT privacy.protect_table('throttled', 'subject');
RESET client_min_messages;
-- three batches of 400 rows, a pause of 200 ms after each: at least 0.6 s
SET privacy.reseal_delay = 200;
SELECT clock_timestamp() AS reseal_start \gset
CALL privacy.reseal('throttled', 400);
SELECT clock_timestamp() - :'reseal_start'::timestamptz >= interval '0.6 s' AS paused,
       count(*) FILTER (WHERE privacy_internal.under_category_key(email)) AS left_over
  FROM throttled;
RESET privacy.reseal_delay;

-- clean up
DROP TABLE "Big Table", fired, loose, nokey, twokeys, parted, throttled;
DROP FUNCTION note_fired();
REVOKE CREATE ON SCHEMA public FROM reseal_owner;
DROP EXTENSION privacy;
DROP ROLE reseal_owner, reseal_admin;
