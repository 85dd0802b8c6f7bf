#!/bin/bash
# 09_access_log — what the access log costs a point lookup, next to pgaudit.
#
# One protected table of 1,000,000 rows,
#   contacts (id bigint PRIMARY KEY, subject bigint, email
#             privacy.encrypted_text(contact), signup date)
# protected by its subject column, 2,000 subjects of 500 rows each (their
# data keys fit the backend's key cache of 4,096, so no lookup unwraps a
# key: the statement the log is added to is as cheap as it gets), values
# sealed under the subjects' keys.  pgbench (-M prepared, 2 clients, 2
# threads) as an application role holding the purpose "service" (legal
# basis contract: every row is visible, no consent needed), declared with
# PGOPTIONS='-c privacy.purpose=service', runs
#
#   \set id random(1, 1000000)
#   SELECT id, subject, email FROM contacts WHERE id = :id \gset
#
# (\gset fails, and pgbench aborts, if a lookup returns no row).  Each lookup
# is one statement event in privacy.access_log and one subject entry in
# privacy.access_log_subjects (views of the batch rows the writer stores in
# privacy.access_log_batches).  Configurations, run in rounds (each round
# runs each once, BENCH_SECONDS s each; of BENCH_ROUNDS rounds, a figure
# takes the round whose ratio is the median, and every round's ratios are
# printed):
#
#   off           privacy loaded, privacy.access_log = off (ALTER SYSTEM +
#                 pg_reload_conf)
#   on            privacy.access_log = on (the default)
#   strict        on, and privacy.access_log_strict = on for the application
#                 role (ALTER ROLE ... SET): each lookup waits for the writer
#                 to commit its events.  The harness runs with fsync = off,
#                 so this is the wait for the writer, not for the disk:
#   strict_fsync  strict with fsync = on (reload), half as long: the price
#                 of durable events on this machine's disk
#   pgaudit       shared_preload_libraries = 'privacy,pgaudit' (a restart
#                 each way), privacy.access_log = off, pgaudit object
#                 auditing of the same table: pgaudit.role = an auditor role
#                 granted SELECT on contacts, everything else pgaudit's
#                 defaults; the server log is the harness's (stderr into
#                 server.log, log_destination = stderr, no collector)
#
# Figures:
#   access_log_lookup          TPS on / TPS off: goal >= 0.85
#   access_log_vs_pgaudit      TPS on / TPS pgaudit: goal >= 1.0
#   access_log_strict_lookup   TPS strict / TPS off: reported
#   access_log_strict_fsync_lookup  TPS strict with fsync on / TPS off: reported
#   access_log_bytes_per_event pg_total_relation_size of access_log_batches
#                              (heap, TOAST, indexes) / statement events,
#                              against the server-log bytes of one pgaudit
#                              line: reported
# and a sanity line per logged run: statement events and subject entries
# written (after privacy.flush_access_log()) against pgbench's transactions;
# and per logged run the writer's CPU time (utime + stime from
# /proc/<pid>/stat, over the run but its first and last 2 s) per lookup.
# BENCH_SECONDS (20), BENCH_ROUNDS (3), BENCH_SUBJECTS (2000) scale it.
set -eu -o pipefail
shopt -s inherit_errexit
. "$(dirname "$0")/common.sh"

SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-3}
SUBJECTS=${BENCH_SUBJECTS:-2000}
ROWS=1000000
APP=bench_alog_app
AUDITOR=bench_alog_auditor
SERVER_LOG=$PRIVACY_TMP/server.log
bench_db bench_alog

# --- the cluster's settings, and putting them back -------------------------
sql_pg() { bench_psql -d postgres "$@"; }

# set_system NAME VALUE: ALTER SYSTEM + reload, then wait until a new
# session sees it (backends fork from the postmaster, which reloads on its
# own time)
set_system() {
	sql_pg -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 50); do
		[ "$(sql_pg -c "SHOW $1")" = "$2" ] && return 0
		sleep 0.1
	done
	die "$1 did not become $2 after a reload"
}

restart_cluster() {
	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$SERVER_LOG" -w -t 60 -m fast restart >/dev/null ||
		{ tail -20 "$SERVER_LOG"; die "the cluster did not restart"; }
}

pgaudit_loaded() {
	case "$(sql_pg -c 'SHOW shared_preload_libraries')" in *pgaudit*) return 0 ;; esac
	return 1
}

restore_cluster() {
	local p
	for p in privacy.access_log fsync shared_preload_libraries pgaudit.role; do
		sql_pg -c "ALTER SYSTEM RESET $p" >/dev/null 2>&1 || true
	done
	sql_pg -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	if pgaudit_loaded 2>/dev/null; then
		restart_cluster || true
	fi
}
bench_drop_at_exit "$APP" "$AUDITOR"
trap 'restore_cluster; bench_drop' EXIT	# settings back first, then drop

# --- the table --------------------------------------------------------------
say "loading $ROWS rows for $SUBJECTS subjects into a protected table"
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', 'customer service', ARRAY['contact']);
DROP ROLE IF EXISTS $APP;
DROP ROLE IF EXISTS $AUDITOR;
CREATE ROLE $APP LOGIN;
CREATE ROLE $AUDITOR NOLOGIN;
SELECT privacy.grant_purpose('$APP', 'service');

CREATE TABLE contacts (id bigint PRIMARY KEY, subject bigint NOT NULL,
    email privacy.encrypted_text(contact), signup date NOT NULL);
SELECT privacy.protect_table('contacts', 'subject');
-- with a purpose declared, the trigger seals every value under its
-- subject's key (creating the $SUBJECTS keys on the way)
SET privacy.purpose = 'service';
INSERT INTO contacts
SELECT g, g % $SUBJECTS, 'user' || lpad(g::text, 8, '0') || '@example.org', date '2020-01-01' + (g % 1000)
  FROM generate_series(1, $ROWS) g;
RESET privacy.purpose;
GRANT SELECT ON contacts TO $APP;
GRANT SELECT ON contacts TO $AUDITOR;
VACUUM ANALYZE contacts;
SQL
bench_psql -c "SELECT 'contacts: ' || pg_size_pretty(pg_table_size('contacts')) || ' heap, '
    || pg_size_pretty(pg_indexes_size('contacts')) || ' index; ' || (SELECT count(*) FROM privacy.data_keys)
    || ' data keys; shared_buffers ' || current_setting('shared_buffers')"

cat >"$PRIVACY_TMP/alog_lookup.pgbench" <<'PGB'
\set id random(1, 1000000)
SELECT id, subject, email FROM contacts WHERE id = :id \gset
PGB

# the lookup works, decrypts, and is the plan we mean
row=$(PGOPTIONS="-c privacy.purpose=service" bench_psql -U "$APP" -c "SELECT subject, email FROM contacts WHERE id = 4242")
[ "$row" = "242|user00004242@example.org" ] || die "lookup returned \"$row\""
PGOPTIONS="-c privacy.purpose=service" bench_psql -U "$APP" -c "EXPLAIN (COSTS OFF) SELECT id, subject, email FROM contacts WHERE id = 4242"

# pgbench_run SECONDS -> "TPS TRANSACTIONS" (bench_pgbench_tps, with the count)
pgbench_run() {
	local out
	out=$(PGOPTIONS="-c privacy.purpose=service -c jit=off" "$PG_BINDIR/pgbench" -n -M prepared \
		-U "$APP" -c 2 -j 2 -T "$1" -f "$PRIVACY_TMP/alog_lookup.pgbench" 2>&1) || die "pgbench failed: $out"
	grep -q "^number of failed transactions: 0 " <<<"$out" || die "pgbench had failures: $out"
	awk '/^number of transactions actually processed: / { n = $6 }
	     /^tps = / { t = $3 }
	     END { printf "%.1f %d", t, n }' <<<"$out"
}

last_seq() {
	bench_psql -c "SELECT coalesce(max(last_seq), 0) FROM privacy.access_log_batches"
}
flush_log() {
	[ "$(bench_psql -c "SELECT privacy.flush_access_log(60000)")" = t ] || die "privacy.flush_access_log() timed out"
}

# logged_run NAME SECONDS: a run with the log on; checks that every lookup
# was logged.  Prints "TPS".
SANITY=$PRIVACY_TMP/alog_sanity
: >"$SANITY"
WRITER_CPU=$PRIVACY_TMP/alog_writer_cpu
: >"$WRITER_CPU"
# writer_sample: "PID CPU_TICKS LAST_SEQ" of this database's access log writer
writer_sample() {
	local pid seq
	read -r pid seq <<<"$(bench_psql -F ' ' -c "SELECT writer_pid, last_seq FROM privacy.access_log_status()")"
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && echo "$pid $(awk '{ print $14 + $15 }' "/proc/$pid/stat") $seq"
}
logged_run() {
	local name=$1 secs=$2 before tps n events subjects opened sampler p1 c1 s1 p2 c2 s2
	flush_log
	before=$(last_seq)
	# the writer's CPU time (utime + stime) over the run but its first and last 2 s
	(sleep 2; writer_sample >"$WRITER_CPU.1"; sleep $((secs > 5 ? secs - 4 : 1)); writer_sample >"$WRITER_CPU.2") &
	sampler=$!
	read -r tps n <<<"$(pgbench_run "$secs")"
	wait "$sampler"
	read -r p1 c1 s1 <"$WRITER_CPU.1" || true
	read -r p2 c2 s2 <"$WRITER_CPU.2" || true
	if [ -n "${p1:-}" ] && [ "${p1:-}" = "${p2:-}" ] && [ "$((s2 - s1))" -gt 0 ]; then
		echo "$name $(awk -v c=$((c2 - c1)) -v e=$((s2 - s1)) -v hz="$(getconf CLK_TCK)" \
			'BEGIN { printf "%.2f", c / hz * 1e6 / (e / 2) }') $((s2 - s1))" >>"$WRITER_CPU"
	fi
	flush_log
	read -r events subjects opened <<<"$(bench_psql -F ' ' -c "
	    SELECT (SELECT count(*) FROM privacy.access_log_batches b, privacy_internal.access_log_statements(b.entries) e
	             WHERE b.last_seq > $before AND e.seq > $before AND e.relid = 'contacts'::regclass
	               AND e.command = 'SELECT' AND e.outcome = 'completed' AND e.rows = 1 AND e.columns = '{email}'),
	           count(*), coalesce(sum(e.opened), 0)
	      FROM privacy.access_log_batches b, privacy_internal.access_log_subject_entries(b.entries) e
	     WHERE b.last_seq > $before AND e.seq > $before")"
	echo "$name $n $events $subjects $opened" >>"$SANITY"
	echo "$tps"
}

# pgaudit_run SECONDS: prints "TPS TRANSACTIONS AUDIT_LINES AUDIT_BYTES"
pgaudit_run() {
	local off tps n lines bytes
	off=$(stat -c %s "$SERVER_LOG")
	read -r tps n <<<"$(pgbench_run "$1")"
	sleep 0.2
	read -r lines bytes <<<"$(tail -c +"$((off + 1))" "$SERVER_LOG" | grep -F 'AUDIT: OBJECT,' | grep -F 'public.contacts' |
		awk '{ b += length($0) + 1 } END { printf "%d %d", NR, b }')"
	echo "$tps $n $lines $bytes"
}

strict_for_app() {
	if [ "$1" = on ]; then
		sql_pg -c "ALTER ROLE $APP SET privacy.access_log_strict = on" >/dev/null
	else
		sql_pg -c "ALTER ROLE $APP RESET privacy.access_log_strict" >/dev/null
	fi
	[ "$(PGOPTIONS="-c privacy.purpose=service" bench_psql -U "$APP" -c 'SHOW privacy.access_log_strict')" = "$1" ] ||
		die "privacy.access_log_strict is not $1 for $APP"
}

say "warm-up"
pgbench_run 5 >/dev/null
echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u '+%H:%M UTC') (pgbench, 2 backends and the log writer share $(nproc) cores)"
echo "settings: privacy.access_log_flush_interval $(bench_psql -c 'SHOW privacy.access_log_flush_interval'), queue $(bench_psql -c 'SHOW privacy.access_log_queue_size'), fsync $(bench_psql -c 'SHOW fsync'), synchronous_commit $(bench_psql -c 'SHOW synchronous_commit')"

RUNS=$PRIVACY_TMP/alog_runs
: >"$RUNS"
AUDIT=$PRIVACY_TMP/alog_pgaudit
: >"$AUDIT"
for r in $(seq 1 "$ROUNDS"); do
	say "round $r of $ROUNDS"
	set_system privacy.access_log off
	off=$(pgbench_run "$SECS" | cut -d' ' -f1)
	set_system privacy.access_log on
	on=$(logged_run on "$SECS")
	strict_for_app on
	strict=$(logged_run strict "$SECS")
	set_system fsync on
	strict_fsync=$(logged_run strict_fsync "$((SECS / 2))")
	set_system fsync off
	strict_for_app off

	# pgaudit instead: restart with it loaded, log off, warm up, measure
	set_system privacy.access_log off
	sql_pg -c "ALTER SYSTEM SET shared_preload_libraries = privacy, pgaudit" >/dev/null
	restart_cluster
	set_system pgaudit.role "$AUDITOR"
	pgbench_run 3 >/dev/null
	read -r audit audit_n audit_lines audit_bytes <<<"$(pgaudit_run "$SECS")"
	echo "$audit_n $audit_lines $audit_bytes" >>"$AUDIT"
	sql_pg -c "ALTER SYSTEM RESET pgaudit.role" -c "ALTER SYSTEM RESET shared_preload_libraries" >/dev/null
	restart_cluster
	pgaudit_loaded && die "pgaudit still loaded after the restart"
	pgbench_run 3 >/dev/null

	echo "round $r TPS: off $off, on $on, strict $strict, strict+fsync $strict_fsync, pgaudit $audit (load $(cut -d' ' -f1 /proc/loadavg))"
	echo "$off $on $strict $strict_fsync $audit" >>"$RUNS"
done
set_system privacy.access_log on
echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u '+%H:%M UTC')"

# median_round OURS_COLUMN BASELINE_COLUMN -> "OURS BASELINE" of the round
# whose ratio is the median (the lower middle one for an even count): a
# ratio of two runs a minute apart moves less on a shared machine than a
# ratio of medians taken over minutes
median_round() {
	awk -v o="$1" -v b="$2" '{ printf "%.6f %s %s\n", $o / $b, $o, $b }' "$RUNS" | sort -g |
		awk '{ l[NR] = $2 " " $3 } END { print l[int((NR + 1) / 2)] }'
}
awk '{ printf "round %d ratios: on/off %.2f, on/pgaudit %.2f, strict/off %.2f, strict+fsync/off %.2f\n",
	NR, $2 / $1, $2 / $5, $3 / $1, $4 / $1 }' "$RUNS"

# every lookup logged?  pgbench does not count the transactions a client
# still had in flight when -T ran out, but the server ran them: up to one
# statement per client more than the count.
say "events written against transactions run (after privacy.flush_access_log())"
incomplete=0
while read -r name n events subjects opened; do
	state=complete
	if [ "$events" -lt "$n" ] || [ "$events" -gt $((n + 2)) ] || [ "$subjects" != "$events" ] || [ "$opened" != "$events" ]; then
		state=INCOMPLETE
		incomplete=$((incomplete + 1))
	fi
	echo "log $name: $n transactions, $events statement events, $subjects subject entries ($opened values opened): $state"
done <"$SANITY"
while read -r n lines bytes; do
	echo "pgaudit: $n transactions, $lines AUDIT lines in the server log"
done <"$AUDIT"
echo "sanity: $incomplete of $(wc -l <"$SANITY") logged runs incomplete"
while read -r name us entries; do
	echo "writer $name: $us µs of CPU per lookup (a statement event and its subject entry), over $entries entries"
done <"$WRITER_CPU"

# log volume: the whole log of this database (every run above) per event
read -r entries subj_entries batches log_bytes <<<"$(bench_psql -F ' ' -c "
    SELECT (SELECT count(*) FROM privacy.access_log), (SELECT count(*) FROM privacy.access_log_subjects),
           (SELECT count(*) FROM privacy.access_log_batches), pg_total_relation_size('privacy.access_log_batches')")"
per_event=$(awk -v a="$log_bytes" -v n="$entries" 'BEGIN { printf "%.1f", a / n }')
echo "access log: $entries statement events, $subj_entries subject entries in $batches batch rows," \
	"$log_bytes B with TOAST and both indexes: $per_event B per statement event with its subject entry"
read -r audit_lines audit_bytes <<<"$(awk '{ l += $2; b += $3 } END { printf "%d %d", l, b }' "$AUDIT")"
per_line=$(awk -v b="$audit_bytes" -v n="$audit_lines" 'BEGIN { printf "%.1f", n ? b / n : 0 }')
echo "pgaudit: $audit_lines lines, $per_line B each, e.g.:"
grep -F 'AUDIT: OBJECT,' "$SERVER_LOG" | tail -1

read -r o b <<<"$(median_round 2 1)"
figure access_log_lookup "$o" tps logging_off "$b" ">= 0.85"
read -r o b <<<"$(median_round 2 5)"
figure access_log_vs_pgaudit "$o" tps pgaudit_object_audit "$b" ">= 1.0"
read -r o b <<<"$(median_round 3 1)"
figure access_log_strict_lookup "$o" tps logging_off "$b" report
read -r o b <<<"$(median_round 4 1)"
figure access_log_strict_fsync_lookup "$o" tps logging_off "$b" report
figure access_log_bytes_per_event "$per_event" B pgaudit_log_line "$per_line" report
