#!/bin/bash
# 08_purge — what retention costs.
#
#   purge_vs_batched_delete  CALL privacy.purge() on 5,000,000 rows of which
#                            1,000,000 are due, against a hand-written loop of
#                            batched DELETEs (same batch size, same index on
#                            the time column, a COMMIT per batch) on an
#                            identical unprotected table.  Goal <= 1.3.
#   oltp_during_purge        pgbench TPS (tpcb-like, 2 clients) while the
#                            purge runs, against the same pgbench alone.
#                            Goal >= 0.7.
#   erase_subject_p50/p95    latency of privacy.erase_subject() for subjects
#                            with 100 rows over 5 protected tables; baseline:
#                            the same DELETEs issued by hand.  Reported.
# BENCH_ROWS / BENCH_DUE scale the first two (defaults 5,000,000 / 1,000,000).
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

ROWS=${BENCH_ROWS:-5000000}
DUE=${BENCH_DUE:-1000000}
BATCH=10000
bench_db bench_purge
bench_drop_at_exit

say "loading $ROWS rows ($DUE due) twice"
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
CREATE TABLE events (id bigint PRIMARY KEY, customer_id bigint NOT NULL, at timestamptz NOT NULL, payload text);
INSERT INTO events SELECT g, g % 100000, CASE WHEN g <= $DUE THEN now() - interval '4 years' ELSE now() - (g % 1000) * interval '1 hour' END,
       'payload ' || g FROM generate_series(1, $ROWS) g;
CREATE INDEX ON events (at);
CREATE TABLE events_plain AS SELECT * FROM events;
ALTER TABLE events_plain ADD PRIMARY KEY (id);
CREATE INDEX ON events_plain (at);
SELECT privacy.protect_table('events', 'customer_id');
SELECT privacy.set_retention('events', 'at', interval '3 years', 'delete');
VACUUM ANALYZE events, events_plain;
CREATE PROCEDURE batched_delete(cutoff timestamptz, batch int) LANGUAGE plpgsql AS \$\$
DECLARE n bigint;
BEGIN
    LOOP
        DELETE FROM events_plain WHERE ctid IN (SELECT ctid FROM events_plain WHERE at < cutoff LIMIT batch);
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        EXIT WHEN n < batch;
    END LOOP;
END \$\$;
SQL

ms_of() { # run a statement, print its wall time in ms
	local t0 t1
	t0=$(date +%s%N)
	bench_psql -c "$1" >/dev/null
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'
}
ours=$(ms_of "CALL privacy.purge(batch_size => $BATCH)")
base=$(ms_of "CALL batched_delete(now() - interval '3 years', $BATCH)")
left=$(bench_psql -c "SELECT (SELECT count(*) FROM events WHERE at < now() - interval '3 years') + (SELECT count(*) FROM events_plain WHERE at < now() - interval '3 years')")
[ "$left" = 0 ] || die "rows left after the purges: $left"
echo "purged $DUE rows: ours $ours ms, hand-written loop $base ms"
figure purge_vs_batched_delete "$ours" ms batched_delete "$base" "<= 1.3"

say "OLTP during a purge"
"$PG_BINDIR/pgbench" -i -q -s 10 "$PGDATABASE" >/dev/null 2>&1
bench_psql >/dev/null <<SQL
TRUNCATE events;
INSERT INTO events SELECT g, g % 100000, now() - interval '4 years', 'payload ' || g FROM generate_series(1, $DUE) g;
VACUUM ANALYZE events;
SQL
alone=$("$PG_BINDIR/pgbench" -n -c 2 -j 2 -T 10 "$PGDATABASE" 2>&1 | awk '/^tps = / { printf "%.1f", $3 }')
bench_psql -c "CALL privacy.purge(batch_size => $BATCH)" >/dev/null &
purge_pid=$!
sleep 0.5
during=$("$PG_BINDIR/pgbench" -n -c 2 -j 2 -T 10 "$PGDATABASE" 2>&1 | awk '/^tps = / { printf "%.1f", $3 }')
wait $purge_pid
echo "pgbench tpcb-like TPS: alone $alone, during the purge $during"
figure oltp_during_purge "$during" tps oltp_alone "$alone" ">= 0.7"

say "erase_subject latency"
bench_psql >/dev/null <<'SQL'
-- erasure visits every protected table: give the big one an index on its
-- subject, as a real schema would, and clear the purge's dead rows
CREATE INDEX ON events (customer_id);
VACUUM ANALYZE events;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
DO $$
BEGIN
    FOR i IN 1..5 LOOP
        EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, note privacy.encrypted_text(contact))', i);
        EXECUTE format('CREATE TABLE p%s (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, note text)', i);
        EXECUTE format('CREATE INDEX ON t%s (customer_id)', i);
        EXECUTE format('CREATE INDEX ON p%s (customer_id)', i);
    END LOOP;
END $$;
SET privacy.purpose = 'service';
DO $$
BEGIN
    FOR i IN 1..5 LOOP
        EXECUTE format('INSERT INTO t%s (customer_id, note) SELECT s, ''note '' || s FROM generate_series(1, 200) s, generate_series(1, 20) r', i);
        EXECUTE format('INSERT INTO p%s (customer_id, note) SELECT s, ''note '' || s FROM generate_series(1, 200) s, generate_series(1, 20) r', i);
    END LOOP;
END $$;
SELECT privacy.protect_table('t' || i, 'customer_id') FROM generate_series(1, 5) i;
SQL
times=$({ cat <<'SQL'
DO $$
DECLARE t0 timestamptz; b0 timestamptz;
BEGIN
    CREATE TEMP TABLE lat (ours float8, base float8);
    FOR s IN 1..50 LOOP
        t0 := clock_timestamp();
        PERFORM privacy.erase_subject(s::text, 'bench');
        b0 := clock_timestamp();
        DELETE FROM p1 WHERE customer_id = s; DELETE FROM p2 WHERE customer_id = s; DELETE FROM p3 WHERE customer_id = s;
        DELETE FROM p4 WHERE customer_id = s; DELETE FROM p5 WHERE customer_id = s;
        INSERT INTO lat VALUES (extract(epoch FROM b0 - t0) * 1000, extract(epoch FROM clock_timestamp() - b0) * 1000);
    END LOOP;
END $$;
SQL
      lat_percentiles; } | bench_psql)
read -r p50 p95 b50 b95 <<<"$times"
figure erase_subject_p50 "$p50" ms plain_deletes_p50 "$b50" report
figure erase_subject_p95 "$p95" ms plain_deletes_p95 "$b95" report
