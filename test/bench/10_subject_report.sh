#!/bin/bash
# 10_subject_report — what a subject report costs.
#
#   subject_report_p50/p95   latency of privacy.subject_report(subject) for a
#                            subject with 100 rows over 5 protected tables
#                            (20 each, one encrypted column per row) in a
#                            database of 1,000,000 such rows (10,000
#                            subjects), 200 calls for 200 different subjects.
#                            Baseline: the same rows fetched as JSON by 5
#                            plain SELECTs under a purpose (row-level
#                            security and decryption included), for the same
#                            subjects, alternating with the reports.  Goal:
#                            p95 <= 50 ms.
# BENCH_ROWS scales the database (default 1,000,000; 100 rows per subject).
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

ROWS=${BENCH_ROWS:-1000000}
SUBJECTS=$((ROWS / 100))
CALLS=200
bench_db bench_report
bench_drop_at_exit bench_report_officer

say "loading $ROWS rows over 5 protected tables ($SUBJECTS subjects, 100 rows each)"
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
DROP ROLE IF EXISTS bench_report_officer;
CREATE ROLE bench_report_officer IN ROLE privacy_officer;
SELECT privacy.grant_purpose('bench_report_officer', 'service');
DO \$\$
BEGIN
    FOR i IN 1..5 LOOP
        EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, customer_id bigint NOT NULL,'
                       ' at timestamptz NOT NULL, amount numeric(9,2), note privacy.encrypted_text(contact))', i);
        EXECUTE format('CREATE INDEX ON t%s (customer_id)', i);
        EXECUTE format('GRANT SELECT ON t%s TO bench_report_officer', i);
        PERFORM privacy.protect_table(format('t%s', i)::regclass, 'customer_id');
        PERFORM privacy.set_retention(format('t%s', i)::regclass, 'at', interval '3 years', 'delete');
    END LOOP;
END \$\$;
SET privacy.purpose = 'service';
DO \$\$
BEGIN
    FOR i IN 1..5 LOOP
        EXECUTE format('INSERT INTO t%s (customer_id, at, amount, note)'
                       ' SELECT s, now() - r * interval ''1 day'', r * 1.5, ''note '' || r || '' of '' || s'
                       '   FROM generate_series(1, $SUBJECTS) s, generate_series(1, 20) r', i);
    END LOOP;
END \$\$;
RESET privacy.purpose;
VACUUM ANALYZE t1, t2, t3, t4, t5;
SQL
echo "rows: $(bench_psql -c 'SELECT (SELECT count(*) FROM t1) * 5'), subject keys: $(bench_psql -c "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'")"

say "$CALLS reports and $CALLS baselines, alternating"
times=$(PGOPTIONS="-c privacy.purpose=service" bench_psql <<SQL
SET ROLE bench_report_officer;
CREATE TEMP TABLE lat (ours float8, base float8, rows_ours int, rows_base int);
DO \$\$
DECLARE
    t0 timestamptz;
    b0 timestamptz;
    r jsonb;
    b jsonb;
    s text;
BEGIN
    PERFORM privacy.subject_report('1');    -- warm-up: caches, keys
    FOR k IN 1..$CALLS LOOP
        s := (1 + (k * 7919) % $SUBJECTS)::text;
        t0 := clock_timestamp();
        r := privacy.subject_report(s);
        b0 := clock_timestamp();
        b := jsonb_build_array(
            (SELECT jsonb_agg(to_jsonb(t)) FROM t1 t WHERE customer_id = s::bigint),
            (SELECT jsonb_agg(to_jsonb(t)) FROM t2 t WHERE customer_id = s::bigint),
            (SELECT jsonb_agg(to_jsonb(t)) FROM t3 t WHERE customer_id = s::bigint),
            (SELECT jsonb_agg(to_jsonb(t)) FROM t4 t WHERE customer_id = s::bigint),
            (SELECT jsonb_agg(to_jsonb(t)) FROM t5 t WHERE customer_id = s::bigint));
        INSERT INTO lat VALUES (extract(epoch FROM b0 - t0) * 1000, extract(epoch FROM clock_timestamp() - b0) * 1000,
                                (SELECT sum(jsonb_array_length(d -> 'rows')) FROM jsonb_array_elements(r -> 'data') d),
                                (SELECT sum(jsonb_array_length(x)) FROM jsonb_array_elements(b) x));
    END LOOP;
END \$\$;
SELECT min(rows_ours) || ' ' || max(rows_ours) || ' ' || min(rows_base) || ' ' || max(rows_base) || ' ' ||
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ours)::numeric, 2) || ' ' ||
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ours)::numeric, 2) || ' ' ||
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY base)::numeric, 2) || ' ' ||
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY base)::numeric, 2) FROM lat;
SQL
)
read -r rmin rmax bmin bmax p50 p95 b50 b95 <<<"$times"
[ "$rmin" = 100 ] && [ "$rmax" = 100 ] && [ "$bmin" = 100 ] && [ "$bmax" = 100 ] \
	|| die "expected 100 rows per subject, got report $rmin..$rmax, baseline $bmin..$bmax"
echo "every report and every baseline returned the subject's 100 rows"
figure subject_report_p50 "$p50" ms five_selects_p50 "$b50" report
figure subject_report_p95 "$p95" ms five_selects_p95 "$b95" "p95 <= 50 ms"
