#!/bin/bash
# 11_erase_scale — erasing one subject among many (#19): the subject's key,
# consent state, holds and rows are found by index, whatever the number of
# subjects.
#
#   erase_subject_among_N_p50/p95
#                  privacy.erase_subject() of one subject among N (20,000 by
#                  default, BENCH_SUBJECTS), each with a data key, a consent
#                  state, two consent events and a released legal hold, and
#                  10 rows in each of 5 protected tables (t5 the customers,
#                  t1..t4 referencing it, each with an index on the subject);
#                  baseline: the same erasure written by hand on plain tables
#                  of the same shape and indexes: the rows deleted (the
#                  referencing ones first), the subject's key row marked
#                  destroyed by its hash, its consent state deleted, its
#                  consent events and holds renamed, an erasure row
#                  inserted.  Reported.
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${BENCH_SUBJECTS:-20000}
bench_db bench_erase_scale
bench_drop_at_exit

say "loading $N subjects: keys, consents, holds, 10 rows in each of 5 tables, twice"
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('marketing', 'consent', '', ARRAY['contact']);
-- the keys are written directly (never opened here): creating 20,000
-- through the key cache is another benchmark's question
INSERT INTO privacy.data_keys (scope, subject_hash, wrapped_key, wrapped_by)
SELECT 'subject', privacy.subject_hash(g::text), '\\x00', 'bench' FROM generate_series(1, $N) g;
INSERT INTO privacy.consent_state (subject, purpose, state, since, last_event)
SELECT g::text, 'marketing', 'granted', now(), 0 FROM generate_series(1, $N) g;
INSERT INTO privacy.consent_events (subject, purpose, action, source, evidence)
SELECT g::text, 'marketing', a, 'web-form', '{"ip": "192.0.2.1"}' FROM generate_series(1, $N) g, unnest(ARRAY['grant', 'withdraw']) a;
INSERT INTO privacy.holds (subject, reason, released_at, released_by)
SELECT g::text, 'old matter', now(), current_user FROM generate_series(1, $N) g;
CREATE TABLE t5 (id bigint PRIMARY KEY, name text);
CREATE TABLE p5 (id bigint PRIMARY KEY, name text);
INSERT INTO t5 SELECT g, 'customer ' || g FROM generate_series(1, $N) g;
INSERT INTO p5 SELECT g, 'customer ' || g FROM generate_series(1, $N) g;
DO \$\$
BEGIN
    FOR i IN 1..4 LOOP
        EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES t5, note text)', i);
        EXECUTE format('CREATE TABLE p%s (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES p5, note text)', i);
        EXECUTE format('INSERT INTO t%s (customer_id, note) SELECT s, ''note '' || s FROM generate_series(1, $N) s, generate_series(1, 10) r', i);
        EXECUTE format('INSERT INTO p%s (customer_id, note) SELECT s, ''note '' || s FROM generate_series(1, $N) s, generate_series(1, 10) r', i);
        EXECUTE format('CREATE INDEX ON t%s (customer_id)', i);
        EXECUTE format('CREATE INDEX ON p%s (customer_id)', i);
    END LOOP;
END \$\$;
SELECT privacy.protect_table('t' || i, 'customer_id') FROM generate_series(1, 4) i;
SELECT privacy.protect_table('t5', 'id');
-- the hand-written side: a key table, a consent state and ledger, holds,
-- an erasure log, indexed for what an erasure looks up
CREATE TABLE pkeys (id serial PRIMARY KEY, subject_hash bytea NOT NULL, state text NOT NULL, wrapped bytea);
INSERT INTO pkeys (subject_hash, state, wrapped) SELECT sha256(g::text::bytea), 'active', '\\x00' FROM generate_series(1, $N) g;
CREATE INDEX ON pkeys (subject_hash);
CREATE TABLE pconsent (subject text, purpose text, state text, PRIMARY KEY (purpose, subject));
INSERT INTO pconsent SELECT g::text, 'marketing', 'granted' FROM generate_series(1, $N) g;
CREATE INDEX ON pconsent (subject);
CREATE TABLE pevents (id bigserial PRIMARY KEY, subject text, purpose text, action text, evidence jsonb);
INSERT INTO pevents (subject, purpose, action, evidence)
SELECT g::text, 'marketing', a, '{"ip": "192.0.2.1"}' FROM generate_series(1, $N) g, unnest(ARRAY['grant', 'withdraw']) a;
CREATE INDEX ON pevents (subject);
CREATE TABLE pholds (id bigserial PRIMARY KEY, subject text, reason text);
INSERT INTO pholds (subject, reason) SELECT g::text, 'old matter' FROM generate_series(1, $N) g;
CREATE INDEX ON pholds (subject);
CREATE TABLE perasures (id bigserial PRIMARY KEY, subject_hash bytea, reason text, at timestamptz, tables jsonb);
VACUUM ANALYZE;
SQL

times=$({ cat <<'SQL'
DO $$
DECLARE t0 timestamptz; b0 timestamptz; n1 bigint; n2 bigint; n3 bigint; n4 bigint; n5 bigint;
BEGIN
    CREATE TEMP TABLE lat (ours float8, base float8);
    FOR s IN 1..60 LOOP
        t0 := clock_timestamp();
        PERFORM privacy.erase_subject(s::text, 'bench');
        b0 := clock_timestamp();
        DELETE FROM p1 WHERE customer_id = s; GET DIAGNOSTICS n1 = ROW_COUNT;
        DELETE FROM p2 WHERE customer_id = s; GET DIAGNOSTICS n2 = ROW_COUNT;
        DELETE FROM p3 WHERE customer_id = s; GET DIAGNOSTICS n3 = ROW_COUNT;
        DELETE FROM p4 WHERE customer_id = s; GET DIAGNOSTICS n4 = ROW_COUNT;
        DELETE FROM p5 WHERE id = s; GET DIAGNOSTICS n5 = ROW_COUNT;
        UPDATE pkeys SET state = 'destroyed', wrapped = NULL WHERE subject_hash = sha256(s::text::bytea) AND state <> 'destroyed';
        DELETE FROM pconsent WHERE subject = s::text;
        UPDATE pevents SET subject = 'erased', evidence = NULL WHERE subject = s::text;
        UPDATE pholds SET subject = 'erased' WHERE subject = s::text;
        INSERT INTO perasures (subject_hash, reason, at, tables)
        VALUES (sha256(s::text::bytea), 'bench', now(), jsonb_build_object('p1', n1, 'p2', n2, 'p3', n3, 'p4', n4, 'p5', n5));
        -- the first ten warm the caches of both sides
        IF s > 10 THEN
            INSERT INTO lat VALUES (extract(epoch FROM b0 - t0) * 1000, extract(epoch FROM clock_timestamp() - b0) * 1000);
        END IF;
    END LOOP;
END $$;
SQL
      lat_percentiles; } | bench_psql)
read -r p50 p95 b50 b95 <<<"$times"
left=$(bench_psql -c "SELECT (SELECT count(*) FROM t1 WHERE customer_id <= 60) + (SELECT count(*) FROM t5 WHERE id <= 60)
                             + (SELECT count(*) FROM privacy.data_keys WHERE state = 'active' AND subject_hash IN (SELECT privacy.subject_hash(g::text) FROM generate_series(1, 60) g))")
[ "$left" = 0 ] || die "subjects not erased: $left rows or keys left"
echo "erased 50 subjects among $N (after 10 to warm up): ours p50 $p50 ms, p95 $p95 ms; by hand p50 $b50 ms, p95 $b95 ms"
figure "erase_subject_among_${N}_p50" "$p50" ms by_hand_p50 "$b50" report
figure "erase_subject_among_${N}_p95" "$p95" ms by_hand_p95 "$b95" report
