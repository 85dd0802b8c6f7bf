#!/bin/bash
# 12_subject_scale — an operator's size: a key per subject, a million subjects.
#
# Two tables of the same shape, SCALE_SUBJECTS subjects (1,000,000) with
# SCALE_ROWS_PER_SUBJECT rows each (10), a subject's rows spread through the
# table (row g belongs to subject (g * 7919) mod SUBJECTS + 1, so that a
# scan meets the subjects in no useful order), three encrypted columns:
#   subj   protected by its subject column: every value under its subject's
#          key, row-level security with the consent check, the access log
#   cat    unprotected, the same columns classified "contact": every value
#          under the category key
# The cluster runs with privacy.shared_key_cache_size = 1.25 x SUBJECTS
# (ALTER SYSTEM and a restart; put back at exit), so that the subjects'
# unwrapped keys fit the shared cache.  An application role holding the
# purpose "service" (legal basis contract: every row visible, no consent
# rows) reads with that purpose declared.
#
# Figures (goals from issue #14):
#   subject_scan_per_value      ns per value of
#                                 SELECT sum(length(email::text) + length(phone::text) + length(note::text)) FROM subj
#                               against the same on cat: goal <= 1.5 (best of
#                               3 interleaved rounds after a warm-up; jit and
#                               parallel workers off)
#   subject_scan_per_value_no_access_log
#                               the same with privacy.access_log = off
#                               (reload): the key caches without the access
#                               log's per-subject accounting (report)
#   (printed beside them)       the log's writer per subject entry over
#                               one more scan of subj: µs of its CPU time
#                               (/proc; load inflates it far less than the
#                               scans' wall time) and bytes of WAL
#   subject_point_lookup        pgbench TPS (-M prepared, 2 clients, SCALE_SECONDS)
#                                 SELECT id, email FROM subj WHERE id = :id
#                               against the same on cat: goal >= 0.9 (2 runs
#                               each, alternating, after a warm-up; best)
#   subject_point_lookup_no_access_log
#                               the same with privacy.access_log = off (one
#                               run each): the lookup without the log's
#                               statement and subject entries, which the
#                               unprotected table never writes (report)
#   subject_copy                ms to COPY SCALE_COPY_ROWS rows (1,000,000) of
#                               as many new subjects into an empty protected
#                               table, against the same COPY into an empty
#                               unprotected one: goal <= 3.0 (3 rounds, each
#                               with subjects no earlier round used; best)
#   subject_copy_existing_subjects
#                               ms of the first round's COPY once more into
#                               the emptied protected table, its subjects'
#                               keys made by that round: finding a key
#                               against creating it (report)
#   subject_copy_floor          the lowest ratio the key table allows: the
#                               unprotected COPY plus an INSERT of as many
#                               rows into a table shaped like
#                               privacy.data_keys (its unique index on
#                               random 32-byte hashes, its key on id), plus
#                               what libsodium needs per row (3 opens, 3
#                               seals, a key wrapped: bench-floor.env),
#                               against the unprotected COPY (report)
#   subject_copy_floor_probed   the same, each key row inserted only after
#                               an index probe for its subject (a nested-loop
#                               anti-join): what "a key for a subject that has
#                               none" costs in the key table (report)
#   key_cache_backend_bytes     bytes of a backend's key cache, against its
#                               slots x 32 (the keys alone) (report)
#   key_cache_shared_bytes      bytes of the shared key cache (mapping and
#                               shared memory) per subject, against 32
#                               (report); whether mlock succeeded is printed
#   protect_table               ms of privacy.protect_table() on an unprotected
#                               copy of cat whose subjects have no key yet
#                               and of CALL privacy.reseal() that reseals its
#                               rows online, against a plain UPDATE rewriting
#                               the same three columns of another copy:
#                               goal <= 1.5
#   protect_table_exclusive_hold
#                               the longest wait of a probe session that
#                               takes ACCESS SHARE on the table every few ms
#                               throughout (the longest ACCESS EXCLUSIVE
#                               hold): goal <= 100 ms
#   protect_table_oltp_tps      pgbench TPS (2 clients, SCALE_SECONDS) of a
#                               decrypting point lookup and a one-row UPDATE
#                               on a second protected copy while CALL
#                               privacy.reseal() reseals it, against the same
#                               on the first copy, resealed: goal >= 0.7
#   protect_table_oltp_tps_unresealed
#                               the same mix on a fifth copy, protected but
#                               not resealed, with nothing else running (its
#                               updates create the subjects' keys): what the
#                               mix can keep during a reseal (report)
#   protect_table_oltp_tps_throttled, protect_table_reseal_throttled
#                               the same on a fourth copy while the reseal
#                               runs with privacy.reseal_delay =
#                               SCALE_RESEAL_DELAY: the TPS against alone
#                               (goal >= 0.7), and the reseal's time
#                               against the unthrottled one (report)
#   subject_report_first_call, _next_call
#                               ms of an officer's first
#                               privacy.subject_report() in a new session and
#                               of the next one, against the same two calls of
#                               a hand-written report (the subject's rows of
#                               the three protected tables as JSON, through
#                               their subject index); best of 3 sessions
#   subject_report_p95          100 reports of different subjects, alternating
#                               with the hand-written one: goal p95 <= 50 ms
#   erase_subject_p95           50 erasures of different subjects, each
#                               against a hand-written DELETE of another
#                               subject's rows from the three tables by their
#                               subject index: goal p95 <= 20 ms
#   compliance_gaps_first_call, _next_call
#                               ms of compliance_gaps() first and second in a
#                               new session, against a catalog query listing
#                               the encrypted columns, first in a new session
# and, as context: the load times, the data keys' table and index sizes,
# the first scan after a restart (every key unwrapped from
# privacy.data_keys once).
#
# SCALE_SUBJECTS, SCALE_ROWS_PER_SUBJECT, SCALE_COPY_ROWS, SCALE_SECONDS
# scale it down (e.g. 100000, 2, 200000, 10 for a quick run);
# SCALE_ONLY=protect_table loads cat alone and measures protect_table only;
# SCALE_ONLY=scan measures the scans and the point lookups only;
# SCALE_RESEAL_BATCH sets CALL privacy.reseal()'s batch_rows (1000);
# SCALE_RESEAL_DELAY the privacy.reseal_delay of the throttled reseal (50 ms).
set -eu -o pipefail
shopt -s inherit_errexit
. "$(dirname "$0")/common.sh"

SUBJECTS=${SCALE_SUBJECTS:-1000000}
PER=${SCALE_ROWS_PER_SUBJECT:-10}
ROWS=$((SUBJECTS * PER))
COPY_ROWS=${SCALE_COPY_ROWS:-1000000}
SECS=${SCALE_SECONDS:-15}
BATCH=${SCALE_RESEAL_BATCH:-1000}
DELAY=${SCALE_RESEAL_DELAY:-50}
CACHE=$((SUBJECTS + SUBJECTS / 4))
APP=bench_scale_app
SERVER_LOG=$PRIVACY_TMP/server.log
floor_load

sql_pg() { bench_psql -d postgres "$@"; }
restart_cluster() {
	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$SERVER_LOG" -w -t 120 -m fast restart >/dev/null ||
		{ tail -20 "$SERVER_LOG"; die "the cluster did not restart"; }
}
set_access_log() {
	sql_pg -c "ALTER SYSTEM SET privacy.access_log = $1" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 50); do
		[ "$(sql_pg -c 'SHOW privacy.access_log')" = "$1" ] && return 0
		sleep 0.1
	done
	die "privacy.access_log did not become $1"
}
restore_cluster() {
	sql_pg -c "ALTER SYSTEM RESET privacy.access_log" -c "ALTER SYSTEM RESET privacy.shared_key_cache_size" >/dev/null 2>&1 || true
	restart_cluster || true
}

bench_db bench_scale
bench_drop_at_exit "$APP"
trap 'bench_drop; restore_cluster; rm -f "$PRIVACY_TMP"/scale_copy_*.txt' EXIT

sql_pg -c "ALTER SYSTEM SET privacy.shared_key_cache_size = $CACHE" >/dev/null
log_before=$(wc -c <"$SERVER_LOG")
restart_cluster
echo "privacy.shared_key_cache_size = $(sql_pg -c 'SHOW privacy.shared_key_cache_size') (restarted);" \
	"$(tail -c +$((log_before + 1)) "$SERVER_LOG" | grep -c 'privacy shared key cache could not be locked' || true) warnings about locking it"

# --- the tables ---------------------------------------------------------------
SUBJECT_OF="((g - 1) * 7919) % $SUBJECTS + 1"
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', 'customer service', ARRAY['contact']);
DROP ROLE IF EXISTS $APP;
CREATE ROLE $APP LOGIN;
SELECT privacy.grant_purpose('$APP', 'service');
CREATE TABLE subj (id bigint PRIMARY KEY, subject bigint NOT NULL, email privacy.encrypted_text(contact),
                   phone privacy.encrypted_text(contact), note privacy.encrypted_text(contact))
    WITH (autovacuum_enabled = off);
CREATE TABLE cat (LIKE subj INCLUDING ALL) WITH (autovacuum_enabled = off);
SELECT privacy.protect_table('subj', 'subject');
CREATE TABLE copy_subj (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE copy_cat (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
SELECT privacy.protect_table('copy_subj', 'subject');
GRANT SELECT ON subj, cat TO $APP;
SQL

q() { echo "SELECT sum(length(email::text) + length(phone::text) + length(note::text)) FROM $1"; }
# --- protect_table of a populated table, online ------------------------------------
# prot, prot2 and upd: the rows of cat under new subjects (none has a key
# yet), unprotected.  (A) protect_table(prot), then CALL privacy.reseal(prot)
# with nothing else running: total time against a plain UPDATE of upd
# rewriting the same three columns; meanwhile a probe session takes ACCESS
# SHARE on prot every few ms and keeps its longest wait, which is the
# longest time the table was locked ACCESS EXCLUSIVE.  (B) protect_table
# (prot2), then an OLTP mix (a decrypting point lookup and an UPDATE of
# one row, pgbench -c 2) for SCALE_SECONDS on prot (resealed) alone, then
# on prot2 while CALL privacy.reseal(prot2) runs.  Beside them, prot3 is
# resealed in one statement (0.2's way, under no lock here) to show what
# the batches add.
protect_section() {
	say "protect_table of $ROWS rows of $SUBJECTS new subjects, online, against UPDATE of the same columns"
	local new=$((SUBJECTS * 100)) new2=$((SUBJECTS * 200)) new3=$((SUBJECTS * 300)) new4=$((SUBJECTS * 400)) new5=$((SUBJECTS * 500)) keys_before
	bench_psql >/dev/null <<SQL
CREATE TABLE prot (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE prot2 (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE prot3 (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE prot4 (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE prot5 (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE upd (LIKE cat INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO prot SELECT id, subject + $new, email, phone, note FROM cat;
INSERT INTO prot2 SELECT id, subject + $new2, email, phone, note FROM cat;
INSERT INTO prot3 SELECT id, subject + $new3, email, phone, note FROM cat;
INSERT INTO prot4 SELECT id, subject + $new4, email, phone, note FROM cat;
INSERT INTO prot5 SELECT id, subject + $new5, email, phone, note FROM cat;
INSERT INTO upd SELECT * FROM prot;
CREATE INDEX ON prot (subject);
CREATE INDEX ON prot2 (subject);
CREATE INDEX ON prot3 (subject);
CREATE INDEX ON prot4 (subject);
CREATE INDEX ON prot5 (subject);
CREATE INDEX ON upd (subject);
VACUUM (FREEZE, ANALYZE) prot, prot2, prot3, prot4, prot5, upd;
GRANT SELECT, UPDATE ON prot TO $APP;
GRANT SELECT, UPDATE ON prot2 TO $APP;
GRANT SELECT, UPDATE ON prot4, prot5 TO $APP;
CREATE TABLE probe_stop (stop boolean);
SQL
	keys_before=$(bench_psql -c "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'")
	bench_psql -c "CHECKPOINT" -c '\timing on' -c "UPDATE upd SET email = email, phone = phone, note = note" >"$PRIVACY_TMP/scale_upd.out"
	upd_ms=$(awk '/^Time:/ { print $2 }' "$PRIVACY_TMP/scale_upd.out")
	bench_psql -c "CHECKPOINT" >/dev/null

	# (A) the probe, then protect_table and the reseal, alone
	bench_psql -c "DO \$\$
DECLARE t0 timestamptz; w interval; worst interval := '0'; n bigint := 0;
BEGIN
    LOOP
        t0 := clock_timestamp();
        LOCK TABLE prot IN ACCESS SHARE MODE;
        w := clock_timestamp() - t0;
        worst := greatest(worst, w);
        n := n + 1;
        COMMIT;
        EXIT WHEN EXISTS (SELECT 1 FROM probe_stop);
        PERFORM pg_sleep(0.002);
    END LOOP;
    RAISE WARNING 'probe % % ms', n, round(extract(epoch FROM worst) * 1000, 1);
END \$\$" 2>"$PRIVACY_TMP/scale_probe.out" &
	local probe=$!
	sleep 1
	bench_psql -c '\timing on' -c "SELECT privacy.protect_table('prot', 'subject')" >"$PRIVACY_TMP/scale_protect.out" 2>&1
	bench_psql -c '\timing on' -c "CALL privacy.reseal('prot', $BATCH)" >"$PRIVACY_TMP/scale_reseal.out" 2>&1
	sleep 1
	bench_psql -c "INSERT INTO probe_stop VALUES (true)" >/dev/null
	wait $probe
	catalog_ms=$(awk '/^Time:/ { print $2 }' "$PRIVACY_TMP/scale_protect.out")
	reseal_ms=$(awk '/^Time:/ { print $2 }' "$PRIVACY_TMP/scale_reseal.out")
	read -r probes hold_ms < <(awk '/WARNING:  probe/ { print $3, $4 }' "$PRIVACY_TMP/scale_probe.out") || true
	[ -n "$upd_ms" ] && [ -n "$catalog_ms" ] && [ -n "$reseal_ms" ] && [ -n "$hold_ms" ] || die "protect_table: timings missing"
	protect_ms=$(awk -v a="$catalog_ms" -v b="$reseal_ms" 'BEGIN { printf "%.1f", a + b }')
	check=$(bench_psql -c "SET ROLE $APP" -c "SET privacy.purpose = 'service'" -c "$(q prot)" -c "$(q cat)" | paste -sd ' ')
	[ "${check% *}" = "${check#* }" ] || die "prot reads back differently from cat: $check"
	check=$(bench_psql -c "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'")
	[ "$check" -ge $((keys_before + SUBJECTS)) ] || die "protect_table made too few subject keys: $check"
	check=$(bench_psql -c "SELECT count(*) FROM prot WHERE privacy_internal.under_category_key(email)")
	[ "$check" = 0 ] || die "the reseal left $check rows under the category key"
	echo "protect_table of $ROWS rows: catalog change $catalog_ms ms + CALL privacy.reseal $reseal_ms ms = $protect_ms ms" \
		"(plain UPDATE $upd_ms ms); a reader waited at most $hold_ms ms for the table ($probes LOCK probes)"

	# the same reseal as one statement in one transaction (what 0.2's
	# protect_table did under its lock): what the batches add
	bench_psql -c "SET client_min_messages = warning" -c "SELECT privacy.protect_table('prot3', 'subject')" >/dev/null
	bench_psql -c "CHECKPOINT" -c '\timing on' \
		-c "SELECT privacy_internal.reseal_batch('prot3', 'protect_table', NULL, $((ROWS + 1)))" >"$PRIVACY_TMP/scale_one.out"
	one_ms=$(awk '/^Time:/ { print $2 }' "$PRIVACY_TMP/scale_one.out")
	echo "the same reseal as one UPDATE in one transaction (prot3): $one_ms ms; the batches of $BATCH rows take" \
		"$(awk -v a="$reseal_ms" -v b="$one_ms" 'BEGIN { printf "%.2f", a / b }') times that"

	# (B) OLTP on prot (resealed) alone, on prot5 (protected, not yet
	# resealed: its updates create the keys) with nothing else running, then
	# on prot2 while it is resealed, and on prot4 while it is resealed with
	# privacy.reseal_delay (C)
	for t in prot prot2 prot4 prot5; do
		cat >"$PRIVACY_TMP/scale_oltp_$t.pgbench" <<PGB
\\set id random(1, $ROWS)
SELECT email FROM $t WHERE id = :id \\gset
UPDATE $t SET note = note WHERE id = :id;
PGB
	done
	bench_psql -c "SET client_min_messages = warning" -c "SELECT privacy.protect_table('prot2', 'subject')" \
		-c "SELECT privacy.protect_table('prot4', 'subject')" -c "SELECT privacy.protect_table('prot5', 'subject')" >/dev/null
	bench_pgbench_tps service prepared "$APP" 3 "$PRIVACY_TMP/scale_oltp_prot.pgbench" >/dev/null
	oltp_alone=$(bench_pgbench_tps service prepared "$APP" "$SECS" "$PRIVACY_TMP/scale_oltp_prot.pgbench")
	oltp_unresealed=$(bench_pgbench_tps service prepared "$APP" "$SECS" "$PRIVACY_TMP/scale_oltp_prot5.pgbench")
	oltp_during_reseal prot2 0
	oltp_during=$during_tps reseal2_ms=$during_ms
	echo "OLTP (point lookup + one-row UPDATE, pgbench -c 2, $SECS s): $oltp_alone TPS on prot alone (resealed)," \
		"$oltp_unresealed TPS on prot5 alone (protected, not resealed: its updates create the keys)," \
		"$oltp_during TPS on prot2 during CALL privacy.reseal (which took $reseal2_ms ms; still running when pgbench ended: $during_still)"
	oltp_during_reseal prot4 "$DELAY"
	oltp_throttled=$during_tps reseal4_ms=$during_ms
	echo "the same with privacy.reseal_delay = $DELAY ms (prot4): $oltp_throttled TPS during CALL privacy.reseal" \
		"(which took $reseal4_ms ms against $reseal2_ms ms unthrottled; still running when pgbench ended: $during_still)"
}
# oltp_during_reseal TABLE DELAY: the OLTP mix on TABLE while CALL
# privacy.reseal() reseals it with privacy.reseal_delay = DELAY; sets
# during_tps, during_ms (the reseal's time) and during_still
oltp_during_reseal() {
	local t=$1 delay=$2 pid
	bench_psql -c "SET privacy.reseal_delay = $delay" -c '\timing on' -c "CALL privacy.reseal('$t', $BATCH)" \
		>"$PRIVACY_TMP/scale_reseal_$t.out" 2>&1 &
	pid=$!
	sleep 1
	during_tps=$(bench_pgbench_tps service prepared "$APP" "$SECS" "$PRIVACY_TMP/scale_oltp_$t.pgbench")
	during_still=yes
	kill -0 $pid 2>/dev/null || during_still=no
	wait $pid
	during_ms=$(awk '/^Time:/ { print $2 }' "$PRIVACY_TMP/scale_reseal_$t.out")
	[ "$during_still" = yes ] || echo "  note: the reseal of $t ended before pgbench: the TPS during it is overstated"
}
protect_figures() {
	figure protect_table "$protect_ms" ms plain_update "$upd_ms" "<= 1.5"
	figure protect_table_exclusive_hold "$hold_ms" ms protect_table "$protect_ms" "hold <= 100 ms"
	figure protect_table_oltp_tps "$oltp_during" tps oltp_alone "$oltp_alone" ">= 0.7"
	figure protect_table_oltp_tps_unresealed "$oltp_unresealed" tps oltp_alone "$oltp_alone"
	figure protect_table_batches "$reseal_ms" ms one_statement_reseal "$one_ms"
	figure protect_table_oltp_tps_throttled "$oltp_throttled" tps oltp_alone "$oltp_alone" ">= 0.7"
	figure protect_table_reseal_throttled "$reseal4_ms" ms reseal_unthrottled "$reseal2_ms"
}
say "loading $ROWS rows of $SUBJECTS subjects into each table"
load() {	# load TABLE: in statements of 1,000,000 rows
	local t=$1 from to start
	start=$(date +%s)
	for ((from = 1; from <= ROWS; from += 1000000)); do
		to=$((from + 999999 < ROWS ? from + 999999 : ROWS))
		bench_psql -c "SET privacy.purpose = 'service'" -c "INSERT INTO $t
SELECT g, $SUBJECT_OF, 'user' || lpad(($SUBJECT_OF)::text, 8, '0') || '@example.org',
       '+49 30 ' || lpad(g::text, 9, '0'), 'note ' || g || ' of subject ' || ($SUBJECT_OF)
  FROM generate_series($from::bigint, $to) g" >/dev/null
	done
	bench_psql -c "VACUUM (FREEZE, ANALYZE) $t" >/dev/null
	echo "  $t: $(( $(date +%s) - start )) s"
}
load cat
if [ "${SCALE_ONLY:-}" = protect_table ]; then
	protect_section
	protect_figures
	exit 0
fi
load subj
bench_psql -c "SELECT format('  %-24s %s', relname, pg_size_pretty(pg_total_relation_size(oid)))
                 FROM pg_class WHERE relname IN ('subj', 'cat', 'data_keys', 'data_keys_active_subject', 'data_keys_pkey')
                 ORDER BY relname"
check=$(bench_psql -c "SELECT count(*) || ' ' || count(DISTINCT subject_hash) FROM privacy.data_keys WHERE scope = 'subject'")
[ "$check" = "$SUBJECTS $SUBJECTS" ] || die "expected $SUBJECTS subject keys of as many subjects, got $check"

# --- the decrypting scan --------------------------------------------------------
setup="
SET jit = off;
SET max_parallel_workers_per_gather = 0;
SET ROLE $APP;
SET privacy.purpose = 'service';
"
sums=$(bench_psql -c "$setup" -c "$(q subj)" -c "$(q cat)" | paste -sd ' ')
[ "${sums% *}" = "${sums#* }" ] || die "the two tables read back differently: $sums"

restart_cluster
cold=$(bench_psql -c "$setup" -c "\\timing on" -c "$(q subj)" | awk '/^Time:/ { print $2 }')
echo "first scan of subj after a restart (every key unwrapped from privacy.data_keys once): $cold ms"
scan() {	# scan LABEL: prints "subj_best subj_median cat_best cat_median"
	mapfile -t ms < <(sql_time 3 "$setup" "$(q subj)" "$(q cat)")
	[ ${#ms[@]} -eq 2 ] || die "expected 2 timings, got ${#ms[@]}"
	echo "ms per scan of $ROWS rows ($((3 * ROWS)) values), $1, best / median of 3:" \
		"subj ${ms[0]/ / / }, cat ${ms[1]/ / / }" >&2
	echo "${ms[0]} ${ms[1]}"
}
read -r s_best s_med c_best c_med < <(scan "access log on")
set_access_log off
read -r sn_best sn_med cn_best cn_med < <(scan "access log off")
set_access_log on
per_value() { awk -v ms="$1" -v n="$((3 * ROWS))" 'BEGIN { printf "%.1f", ms * 1e6 / n }'; }
echo "the access log's share: $(awk -v on="$s_best" -v off="$sn_best" -v n="$SUBJECTS" 'BEGIN { printf "%.1f", (on - off) * 1000 / n }') µs" \
	"per subject a scan opened (one subject entry each, written by the log's writer with its trail row;" \
	"a statement waits for the writer once privacy.access_log_queue_size is full)"
echo "spread (median / best): subj $(awk -v a="$s_med" -v b="$s_best" 'BEGIN { printf "%.2f", a / b }')," \
	"cat $(awk -v a="$c_med" -v b="$c_best" 'BEGIN { printf "%.2f", a / b }')"
# The writer's own cost per subject entry over one more scan of subj: its
# CPU time (from /proc: the machine's load inflates it far less than the
# scan's wall time, which waits for it past the queue's size) and the WAL
# written.  Report only; "n/a" when the writer changed during the scan.
writer_cost() {	# prints "cpu_us_per_entry wal_bytes_per_entry", or "n/a n/a"
	local w w2 t0 t1 l0 hz
	bench_psql -c "$setup" -c "SELECT count(email::text) FROM subj WHERE id = 1" >/dev/null
	bench_psql -c "SELECT privacy.flush_access_log()" >/dev/null
	w=$(bench_psql -c "SELECT writer_pid FROM privacy.access_log_status()")
	if [ -z "$w" ] || [ ! -r "/proc/$w/stat" ]; then echo "n/a n/a"; return; fi
	hz=$(getconf CLK_TCK)
	t0=$(awk '{ print $14 + $15 }' "/proc/$w/stat")
	l0=$(bench_psql -c "SELECT pg_current_wal_insert_lsn()")
	# the scan sends its entries when it ends: a lookup every half second
	# keeps the writer from leaving, idle, in the meantime
	touch "$PRIVACY_TMP/writer_cost.on"
	while [ -f "$PRIVACY_TMP/writer_cost.on" ]; do
		bench_psql -c "$setup" -c "SELECT count(email::text) FROM subj WHERE id = 1" >/dev/null
		sleep 0.5
	done &
	bench_psql -c "$setup" -c "$(q subj)" -c "RESET ROLE" -c "SELECT privacy.flush_access_log()" >/dev/null
	rm -f "$PRIVACY_TMP/writer_cost.on"
	wait $!
	t1=$(awk '{ print $14 + $15 }' "/proc/$w/stat" 2>/dev/null || echo "")
	w2=$(bench_psql -c "SELECT writer_pid FROM privacy.access_log_status()")
	if [ "$w" != "$w2" ] || [ -z "$t1" ]; then echo "n/a n/a"; return; fi
	bench_psql -c "SELECT round(($t1 - $t0) * 1e6 / $hz / $SUBJECTS, 2),
	                      round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$l0') / $SUBJECTS)" | tr '|' ' '
}
read -r wcpu wwal < <(writer_cost)
echo "the log's writer per subject entry, over one more scan of subj: $wcpu µs of its CPU, $wwal bytes of WAL" \
	"(entry, MAC, its trail row and index entry; the CPU is the writer's alone: the figure the scan waits for, less inflated by load)"
bench_psql -c "SELECT format('  key cache %-8s %9s slots %9s keys %8s MB%s', cache, slots, used, round(bytes / 1048576.0, 1),
                              CASE WHEN locked THEN '' ELSE ' (NOT locked in memory: memlock limit)' END)
                 FROM privacy.key_cache_status()"

# --- point lookups -------------------------------------------------------------------
for t in subj cat; do
	cat >"$PRIVACY_TMP/scale_$t.pgbench" <<PGB
\\set id random(1, $ROWS)
SELECT id, email FROM $t WHERE id = :id \\gset
PGB
done
tps() { bench_pgbench_tps service prepared "$APP" "$2" "$PRIVACY_TMP/scale_$1.pgbench"; }
tps subj 3 >/dev/null
tps cat 3 >/dev/null
subj_tps=()
cat_tps=()
for _ in 1 2; do
	subj_tps+=("$(tps subj "$SECS")")
	cat_tps+=("$(tps cat "$SECS")")
done
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }
echo "point lookup TPS, pgbench -M prepared -c 2 -j 2 -T $SECS, runs: subj ${subj_tps[*]}, cat ${cat_tps[*]}"
# the same without the access log (cat, not protected, is never logged)
set_access_log off
subj_nolog_tps=("$(tps subj "$SECS")")
cat_nolog_tps=("$(tps cat "$SECS")")
set_access_log on
echo "the same with privacy.access_log = off, one run each: subj ${subj_nolog_tps[*]}, cat ${cat_nolog_tps[*]}"
bench_psql -c "SELECT format('  access log: %s trail rows, trail %s, its index %s, batches %s', count(*),
                              pg_size_pretty(pg_relation_size('privacy.access_log_trail')),
                              pg_size_pretty(pg_relation_size('privacy.access_log_trail_subject')),
                              pg_size_pretty(pg_total_relation_size('privacy.access_log_batches')))
                 FROM privacy.access_log_trail"
if [ "${SCALE_ONLY:-}" = scan ]; then
	figure subject_scan_per_value "$(per_value "$s_best")" ns category_scan_per_value "$(per_value "$c_best")" "<= 1.5"
	figure subject_scan_per_value_no_access_log "$(per_value "$sn_best")" ns category_scan_per_value "$(per_value "$cn_best")"
	figure subject_point_lookup "$(max "${subj_tps[@]}")" tps category_point_lookup "$(max "${cat_tps[@]}")" ">= 0.9"
	figure subject_point_lookup_no_access_log "${subj_nolog_tps[0]}" tps category_point_lookup "${cat_nolog_tps[0]}"
	exit 0
fi

# --- COPY of new subjects ----------------------------------------------------------
say "COPY of $COPY_ROWS rows of as many new subjects, 3 rounds"
for r in 1 2 3; do
	base=$((SUBJECTS + r * COPY_ROWS))
	bench_psql -c "COPY (SELECT g, g, 'user' || lpad(g::text, 9, '0') || '@example.org', '+49 30 ' || lpad(g::text, 9, '0'),
	                        'note ' || g FROM generate_series($((base + 1)), $((base + COPY_ROWS))) g)
	                 TO '$PRIVACY_TMP/scale_copy_$r.txt'"
done
for r in 0 1 2 3; do
	f=$PRIVACY_TMP/scale_copy_$((r == 0 ? 1 : r)).txt
	# round 0 warms up with the unprotected table only (round 1's subjects stay new)
	for t in copy_cat copy_subj; do
		[ $r -eq 0 ] && [ $t = copy_subj ] && continue
		printf '%s\n' "TRUNCATE $t;" "CHECKPOINT;" "\\echo copy $r $t" '\timing on' "COPY $t FROM '$f';" '\timing off'
	done
done >"$PRIVACY_TMP/scale_copy.sql"
bench_psql -f "$PRIVACY_TMP/scale_copy.sql" >"$PRIVACY_TMP/scale_copy.out"
times=$(awk '$1 == "copy" { r = $2; t = $3 } $1 == "Time:" && r > 0 { print t, $2 }' "$PRIVACY_TMP/scale_copy.out")
[ "$(wc -l <<<"$times")" -eq 6 ] || die "expected 6 COPY timings, got: $times"
best() { awk -v t="$1" '$1 == t { if (min == "" || $2 < min) min = $2 } END { printf "%.1f", min }' <<<"$times"; }
echo "ms per COPY of $COPY_ROWS rows, rounds: copy_subj $(awk '$1 == "copy_subj" { printf "%s ", $2 }' <<<"$times")," \
	"copy_cat $(awk '$1 == "copy_cat" { printf "%s ", $2 }' <<<"$times")"
check=$(bench_psql -c "SET privacy.purpose = 'service'" -c "SELECT count(*) || ' ' || count(DISTINCT (privacy.envelope_info(email)).key_id)
                                                            || ' ' || bool_and(email::text LIKE 'user%@example.org') FROM copy_subj")
[ "$check" = "$COPY_ROWS $COPY_ROWS true" ] || die "copy_subj: expected $COPY_ROWS rows under as many keys, got $check"

# the same COPY of round 1's rows once more, now that their subjects have
# keys: what finding a subject's key costs against creating it
existing_ms=$(bench_psql -c "TRUNCATE copy_subj" -c "CHECKPOINT" -c '\timing on' -c "COPY copy_subj FROM '$PRIVACY_TMP/scale_copy_1.txt'" |
	awk '/^Time:/ { print $2 }')
[ -n "$existing_ms" ] || die "the COPY of existing subjects was not timed"
echo "the COPY of round 1's rows again, into an empty copy_subj, their subjects' keys made by round 1: $existing_ms ms"

# the key table's floor: as many rows into a table shaped like privacy.data_keys;
# and the same with each subject first looked up by its hash, one index probe
# a row (a nested-loop anti-join), as creating a key only for a subject that
# has none must
read -r floor_ms probed_ms < <(bench_psql <<SQL | awk '/^Time:/ { printf "%s ", $2 } END { print "" }'
CREATE TABLE keys_floor_input AS
SELECT g AS id, sha256(('floor' || g)::bytea) AS h, sha256(('w' || g)::bytea) || sha256(('x' || g)::bytea) || sha256(('y' || g)::bytea) AS w
  FROM generate_series(1, $SUBJECTS + $COPY_ROWS) g;
CREATE TABLE keys_floor (LIKE privacy.data_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (autovacuum_enabled = off);
ALTER TABLE keys_floor ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX ON keys_floor (subject_hash) WHERE scope = 'subject' AND state = 'active';
INSERT INTO keys_floor (id, scope, subject_hash, wrapped_key, wrapped_by)
SELECT id, 'subject', h, substr(w, 1, 72), 'fingerprint' FROM keys_floor_input WHERE id <= $SUBJECTS;
CREATE TABLE keys_floor_probed (LIKE keys_floor INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO keys_floor_probed SELECT * FROM keys_floor;
ANALYZE keys_floor_input, keys_floor, keys_floor_probed;
CHECKPOINT;
\timing on
INSERT INTO keys_floor (id, scope, subject_hash, wrapped_key, wrapped_by)
SELECT id, 'subject', h, substr(w, 1, 72), 'fingerprint' FROM keys_floor_input WHERE id > $SUBJECTS;
\timing off
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
CHECKPOINT;
\timing on
INSERT INTO keys_floor_probed (id, scope, subject_hash, wrapped_key, wrapped_by)
SELECT id, 'subject', h, substr(w, 1, 72), 'fingerprint' FROM keys_floor_input i
 WHERE id > $SUBJECTS
   AND NOT EXISTS (SELECT FROM keys_floor_probed k WHERE k.subject_hash = i.h AND k.scope = 'subject' AND k.state = 'active');
\timing off
SELECT 1;
DROP TABLE keys_floor, keys_floor_probed, keys_floor_input;
SQL
)
[ -n "$floor_ms" ] && [ -n "$probed_ms" ] || die "the key table's floor was not measured"
seal_ns=$(awk -v s="$SODIUM_SEAL_NS" -v r="$SODIUM_NONCE_NS" 'BEGIN { printf "%.1f", s - r }')
sodium_ms=$(awk -v n="$COPY_ROWS" -v s="$seal_ns" -v o="$SODIUM_OPEN_NS" 'BEGIN { printf "%.1f", n * (3 * o + 4 * s) / 1e6 }')
plain_ms=$(best copy_cat)
echo "floor: the unprotected COPY $plain_ms ms + $COPY_ROWS rows into a copy of the key table $floor_ms ms" \
	"(after $SUBJECTS rows; one statement) + libsodium $sodium_ms ms (per row 3 opens at $SODIUM_OPEN_NS ns and" \
	"3 seals and a wrap at $seal_ns ns)"
echo "the same floor with each subject first looked up in the key table's index (one probe a row, the" \
	"anti-join): $probed_ms ms instead of $floor_ms ms"
echo "lowest ratio libsodium alone allows (no key table): $(awk -v p="$plain_ms" -v s="$sodium_ms" 'BEGIN { printf "%.2f", (p + s) / p }')"

# --- protect_table of a populated table, online (protect_section, above) --------
if [ -z "${SCALE_ONLY:-}" ]; then
	protect_section
fi

# --- the subject report and compliance_gaps: a session's first call, and the next --------
# An officer (privacy_officer, holding purpose service) in a new session:
# the first privacy.subject_report() and the next one (another subject),
# against the same two calls of a hand-written report (the subject's rows of
# the three protected tables as JSON, by their subject index) in a new
# session; then 100 reports against 100 hand-written ones, alternating; then
# compliance_gaps() first and second call against a hand-written catalog
# query (every encrypted column of the database).  Three rounds; best.
OFFICER=bench_scale_officer
BENCH_DROP_ROLES+=("$OFFICER")
bench_psql >/dev/null <<SQL
CREATE INDEX ON subj (subject);
CREATE INDEX ON copy_subj (subject);
ANALYZE subj, copy_subj;
DROP ROLE IF EXISTS $OFFICER;
CREATE ROLE $OFFICER IN ROLE privacy_officer;
SELECT privacy.grant_purpose('$OFFICER', 'service');
GRANT SELECT ON subj, copy_subj, prot TO $OFFICER;
SQL
hand_report() {	# SQL of the hand-written report of subject $1
	echo "SELECT length(jsonb_build_array(
	  (SELECT jsonb_agg(to_jsonb(t)) FROM subj t WHERE subject = $1),
	  (SELECT jsonb_agg(to_jsonb(t)) FROM copy_subj t WHERE subject = $1),
	  (SELECT jsonb_agg(to_jsonb(t)) FROM prot t WHERE subject = $1))::text)"
}
hand_gaps="SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	WHERE a.atttypid IN ('privacy.encrypted_text'::regtype, 'privacy.encrypted_bytea'::regtype) AND a.attnum > 0 AND NOT a.attisdropped"
first_two() {	# first_two SQL1 SQL2: a new session, "<ms of SQL1> <ms of SQL2>"
	bench_psql -c "SET ROLE $OFFICER" -c "SET privacy.purpose = 'service'" -c '\timing on' -c "$1" -c "$2" |
		awk '/^Time:/ { printf "%s ", $2 } END { print "" }'
}
rep_first=() rep_next=() hand_first=() hand_next=() gaps_first=() gaps_next=() hgaps_first=()
for r in 1 2 3; do
	s1=$((1 + (r * 7919) % SUBJECTS)) s2=$((1 + (r * 104729) % SUBJECTS))
	read -r a b < <(first_two "SELECT length(privacy.subject_report('$s1')::text)" "SELECT length(privacy.subject_report('$s2')::text)")
	rep_first+=("$a") rep_next+=("$b")
	read -r a b < <(first_two "$(hand_report $s1)" "$(hand_report $s2)")
	hand_first+=("$a") hand_next+=("$b")
	read -r a b < <(first_two "SELECT count(*) FROM privacy.compliance_gaps()" "SELECT count(*) FROM privacy.compliance_gaps()")
	gaps_first+=("$a") gaps_next+=("$b")
	read -r a b < <(first_two "$hand_gaps" "$hand_gaps")
	hgaps_first+=("$a")
done
min() { printf '%s\n' "$@" | sort -g | head -n 1; }
echo "subject_report in a new session, first call ms: ${rep_first[*]}; next call: ${rep_next[*]}" \
	"(hand-written: first ${hand_first[*]}; next ${hand_next[*]})"
echo "compliance_gaps() in a new session, first call ms: ${gaps_first[*]}; next call: ${gaps_next[*]}" \
	"(hand-written catalog query, first: ${hgaps_first[*]})"
lat=$(bench_psql <<SQL
SET ROLE $OFFICER;
SET privacy.purpose = 'service';
CREATE TEMP TABLE lat (ours float8, base float8);
DO \$\$
DECLARE
    t0 timestamptz;
    b0 timestamptz;
    r jsonb;
    b jsonb;
    s bigint;
    n bigint;
BEGIN
    PERFORM privacy.subject_report('1');
    FOR k IN 1..100 LOOP
        s := 1 + (k * 15485863::bigint) % $SUBJECTS;
        t0 := clock_timestamp();
        r := privacy.subject_report(s::text);
        b0 := clock_timestamp();
        b := jsonb_build_array(
            (SELECT jsonb_agg(to_jsonb(t)) FROM subj t WHERE subject = s),
            (SELECT jsonb_agg(to_jsonb(t)) FROM copy_subj t WHERE subject = s),
            (SELECT jsonb_agg(to_jsonb(t)) FROM prot t WHERE subject = s));
        INSERT INTO lat VALUES (extract(epoch FROM b0 - t0) * 1000, extract(epoch FROM clock_timestamp() - b0) * 1000);
        n := (SELECT sum(jsonb_array_length(d -> 'rows')) FROM jsonb_array_elements(r -> 'data') d);
        IF n IS DISTINCT FROM $PER::bigint OR jsonb_array_length(b -> 0) <> $PER THEN
            RAISE EXCEPTION 'subject %: report % rows, hand-written %', s, n, jsonb_array_length(b -> 0);
        END IF;
    END LOOP;
END \$\$;
$(lat_percentiles)
SQL
)
read -r rp50 rp95 bp50 bp95 <<<"$lat"
echo "subject_report of 100 subjects ($PER rows each): p50 $rp50 ms, p95 $rp95 ms (hand-written p50 $bp50 ms, p95 $bp95 ms)"

# --- erasure --------------------------------------------------------------------------
# 60 subjects erased in turn (the first 10 warm up), each against the
# hand-written deletion of the same subject's rows from the three tables by
# their subject index (another 60 subjects): privacy.erase_subject() also
# destroys the key, reduces the consent history and writes the receipt.
ERASE_FROM=$((SUBJECTS / 2))
lat=$(bench_psql <<SQL
CREATE TEMP TABLE lat (ours float8, base float8);
DO \$\$
DECLARE
    t0 timestamptz;
    b0 timestamptz;
    s bigint;
BEGIN
    FOR k IN 1..60 LOOP
        s := $ERASE_FROM + k;
        t0 := clock_timestamp();
        PERFORM privacy.erase_subject(s::text, 'bench');
        b0 := clock_timestamp();
        DELETE FROM subj WHERE subject = s + 1000;
        DELETE FROM copy_subj WHERE subject = s + 1000;
        DELETE FROM prot WHERE subject = s + 1000;
        IF k > 10 THEN
            INSERT INTO lat VALUES (extract(epoch FROM b0 - t0) * 1000, extract(epoch FROM clock_timestamp() - b0) * 1000);
        END IF;
    END LOOP;
END \$\$;
$(lat_percentiles)
SQL
)
read -r ep50 ep95 eb50 eb95 <<<"$lat"
left=$(bench_psql -c "SELECT (SELECT count(*) FROM subj WHERE subject BETWEEN $ERASE_FROM + 1 AND $ERASE_FROM + 60)
                             + (SELECT count(*) FROM privacy.data_keys WHERE state <> 'destroyed' AND subject_hash IN
                                  (SELECT privacy.subject_hash(g::text) FROM generate_series($ERASE_FROM + 1, $ERASE_FROM + 60) g))")
[ "$left" = 0 ] || die "subjects not erased: $left rows or keys left"
echo "erase_subject of 50 subjects ($PER rows each, after 10 to warm up): p50 $ep50 ms, p95 $ep95 ms" \
	"(hand-written deletion of the rows: p50 $eb50 ms, p95 $eb95 ms)"

# --- memory -------------------------------------------------------------------------
read -r b_slots b_bytes < <(bench_psql -c "SELECT slots || ' ' || bytes FROM privacy.key_cache_status() WHERE cache = 'backend'")
read -r s_slots s_used s_bytes s_locked < <(bench_psql -c "SELECT slots || ' ' || used || ' ' || bytes || ' ' || locked
                                                              FROM privacy.key_cache_status() WHERE cache = 'shared'")
echo "shared key cache: $s_slots slots, $s_used keys held, $s_bytes bytes, locked in memory: $s_locked"

figure subject_scan_per_value "$(per_value "$s_best")" ns category_scan_per_value "$(per_value "$c_best")" "<= 1.5"
figure subject_scan_per_value_no_access_log "$(per_value "$sn_best")" ns category_scan_per_value "$(per_value "$cn_best")"
figure subject_point_lookup "$(max "${subj_tps[@]}")" tps category_point_lookup "$(max "${cat_tps[@]}")" ">= 0.9"
figure subject_point_lookup_no_access_log "${subj_nolog_tps[0]}" tps category_point_lookup "${cat_nolog_tps[0]}"
figure subject_copy "$(best copy_subj)" ms category_copy "$plain_ms" "<= 3.0"
figure subject_copy_existing_subjects "$existing_ms" ms category_copy "$plain_ms"
figure subject_copy_floor "$(awk -v p="$plain_ms" -v f="$floor_ms" -v s="$sodium_ms" 'BEGIN { printf "%.1f", p + f + s }')" ms category_copy "$plain_ms"
figure subject_copy_floor_probed "$(awk -v p="$plain_ms" -v f="$probed_ms" -v s="$sodium_ms" 'BEGIN { printf "%.1f", p + f + s }')" ms category_copy "$plain_ms"
figure key_cache_backend_bytes "$b_bytes" bytes keys_alone "$((b_slots * 32))"
figure key_cache_shared_bytes_per_subject "$(awk -v b="$s_bytes" -v n="$SUBJECTS" 'BEGIN { printf "%.1f", b / n }')" bytes key_alone 32
protect_figures
figure subject_report_first_call "$(min "${rep_first[@]}")" ms hand_written_first_call "$(min "${hand_first[@]}")"
figure subject_report_next_call "$(min "${rep_next[@]}")" ms hand_written_next_call "$(min "${hand_next[@]}")"
figure subject_report_p95 "$rp95" ms hand_written_p95 "$bp95" "p95 <= 50 ms"
figure erase_subject_p95 "$ep95" ms hand_written_delete_p95 "$eb95" "p95 <= 20 ms"
figure compliance_gaps_first_call "$(min "${gaps_first[@]}")" ms catalog_query_first_call "$(min "${hgaps_first[@]}")"
figure compliance_gaps_next_call "$(min "${gaps_next[@]}")" ms catalog_query_first_call "$(min "${hgaps_first[@]}")"
