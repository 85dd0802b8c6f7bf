# test/bench/common.sh — sourced by every benchmark script (test/bench/NN_name.sh).
# shellcheck shell=bash
#
# The contract between test/bench/run and a benchmark
# ----------------------------------------------------
# A benchmark is an executable file test/bench/NN_name.sh; run executes them
# in NN order against one throwaway cluster, each in its own process.
#
# Environment it receives (set by test/lib.sh, exported by run):
#   PGHOST PGPORT PGUSER PGDATABASE   the throwaway cluster: socket directory
#                       PRIVACY_TMP, owner postgres when run as root, database
#                       postgres (use bench_db to get a database of your own)
#   PG_BINDIR           /usr/lib/postgresql/15/bin (psql, createdb, ...)
#   PRIVACY_SRC         the source tree: read it, never write into it
#   PRIVACY_TMP         scratch directory, removed when the run ends (KEEP_TMP=1
#                       keeps it): compile helpers and write files here
# The functions of test/lib.sh (as_pg, say, die) are available after sourcing
# this file.
#
# What it prints: any lines it likes on stdout (context, progress); the lines
# that start with "bench " are figures, collected by run into its summary, and
# are printed only through `figure` below, so that they all have this form:
#
#   bench <name>: ours <value> <unit>, baseline <baseline-name> <value> <unit>, ratio <x.xx> (goal <text or "report">)
#
# ratio is ours / baseline, so below 1.00 means we are cheaper.  "goal report"
# means no target has been set: the figure is published, not judged.
# A benchmark is not a test: it asserts nothing, and exits non-zero only when
# something broke (a compile error, a failing statement).
#
# The floor file: $PRIVACY_TMP/bench-floor.env
# ---------------------------------------------
# 01_sodium_floor.sh writes what libsodium alone costs per e-mail-sized value
# (24 bytes), measured outside PostgreSQL.  Later benchmarks divide by it to
# say how far above the floor the extension is.  It is a file of shell
# assignments, numbers in nanoseconds per value (best of 5 runs of 1,000,000
# values; the values below are an example):
#   SODIUM_FLOOR_VALUES=1000000          values per run
#   SODIUM_FLOOR_VALUE_BYTES=24          plaintext bytes per value
#   SODIUM_SEAL_NS=580.1                 XChaCha20-Poly1305-IETF seal, random 24-byte nonce included
#   SODIUM_OPEN_NS=364.9                 XChaCha20-Poly1305-IETF open
#   SODIUM_BASELINE=aes256gcm            or chacha20poly1305_ietf without AES-NI
#   SODIUM_BASELINE_SEAL_NS=338.7        that AEAD's seal, random 12-byte nonce included
#   SODIUM_BASELINE_OPEN_NS=111.2        that AEAD's open
#   SODIUM_NONCE_NS=221.1                randombytes_buf of 24 bytes alone
#   SODIUM_RANDOMBYTES=sysrandom         libsodium's randombytes implementation
#   MEMCPY_NS=3.2                        memcpy of the same 24 bytes
# Call floor_load to read it; it runs 01_sodium_floor.sh first when the file
# is missing (e.g. "./test/bench/run purpose_check" alone).

# shellcheck source=../lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

: "${PRIVACY_TMP:?run benchmarks through test/bench/run}"
BENCH_FLOOR_FILE=$PRIVACY_TMP/bench-floor.env

# figure NAME OURS UNIT BASELINE_NAME BASELINE_VALUE [GOAL]
# Prints one figure line; ratio = OURS / BASELINE_VALUE, two decimals.
# NAME and BASELINE_NAME are single words; values are printed as given.
figure() {
	local name=$1 ours=$2 unit=$3 bname=$4 bvalue=$5 goal=${6:-report}
	case "$name$bname" in
	*[[:space:]]* | '') die "figure: name and baseline name must be single words" ;;
	esac
	awk -v name="$name" -v ours="$ours" -v unit="$unit" -v bname="$bname" \
		-v bvalue="$bvalue" -v goal="$goal" 'BEGIN {
		num = "^[0-9]+([.][0-9]+)?$"
		if (ours !~ num || bvalue !~ num) {
			printf "figure %s: values must be non-negative numbers, got \"%s\" and \"%s\"\n",
				name, ours, bvalue > "/dev/stderr"
			exit 1
		}
		ratio = (bvalue + 0 == 0) ? "n/a" : sprintf("%.2f", ours / bvalue)
		printf "bench %s: ours %s %s, baseline %s %s %s, ratio %s (goal %s)\n",
			name, ours, unit, bname, bvalue, unit, ratio, goal
	}' || die "figure $name: bad value"
}

# psql for scripts: no psqlrc, quiet, unaligned, no NOTICEs, stop at the
# first error.
bench_psql() {
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# bench_db NAME: a fresh database of the benchmark's own, made the default
# (PGDATABASE) for the rest of the script.
bench_db() {
	bench_psql -d postgres -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\"" >/dev/null
	export PGDATABASE=$1
}

# lat_percentiles: the SQL that prints "<ours p50> <ours p95> <base p50>
# <base p95>" (ms, two decimals) from a table lat (ours float8, base float8)
# of paired latencies; append it to the script that filled lat (a
# temporary table lives in its session).
lat_percentiles() {
	cat <<'SQL'
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ours)::numeric, 2) || ' ' ||
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ours)::numeric, 2) || ' ' ||
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY base)::numeric, 2) || ' ' ||
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY base)::numeric, 2) FROM lat;
SQL
}

# sql_time REPS SETUP QUERY...
# Runs SETUP, then in the same session runs the queries in rounds: one
# warm-up round, then REPS timed rounds, each query once per round (so that
# drift on a busy machine hits every query alike).  Each query is timed
# inside the server with clock_timestamp() around an EXECUTE, so neither
# client round trips nor result transfer are counted (make queries return one
# row).  Prints one line per query, in order: "<best_ms> <median_ms>".
sql_time() {
	local reps=$1 setup=$2 i=0 list='' args=()
	shift 2
	for q in "$@"; do
		i=$((i + 1))
		args+=(-v "q$i=$q")
		list+="${list:+, }:'q$i'"
	done
	bench_psql "${args[@]}" <<SQL
\o /dev/null
$setup
;
CREATE TABLE pg_temp.bench_runs (q int, ms float8);
CREATE FUNCTION pg_temp.bench_time(qs text[], reps int) RETURNS void
LANGUAGE plpgsql AS \$bench\$
DECLARE
    t0 timestamptz;
    ms float8;
BEGIN
    FOR r IN 0 .. reps LOOP
        FOR i IN 1 .. pg_catalog.cardinality(qs) LOOP
            t0 := pg_catalog.clock_timestamp();
            EXECUTE qs[i];
            ms := extract(epoch FROM pg_catalog.clock_timestamp() - t0) * 1000;
            IF r > 0 THEN
                INSERT INTO pg_temp.bench_runs VALUES (i, ms);
            END IF;
        END LOOP;
    END LOOP;
END
\$bench\$;
SELECT pg_temp.bench_time(ARRAY[$list]::text[], $reps);
\o
SELECT round(min(ms)::numeric, 3) || ' ' ||
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3)
  FROM pg_temp.bench_runs GROUP BY q ORDER BY q;
SQL
}

# floor_load: read bench-floor.env into the environment (see above).
floor_load() {
	if [ ! -f "$BENCH_FLOOR_FILE" ]; then
		"$PRIVACY_SRC/test/bench/01_sodium_floor.sh" >/dev/null || die "could not measure the sodium floor"
	fi
	# shellcheck source=/dev/null
	. "$BENCH_FLOOR_FILE"
}

# bench_drop_at_exit [ROLE...]: when the script exits (also when it breaks),
# drop its database (PGDATABASE, as set by bench_db) and then the roles
# named, so that large tables do not outlive the benchmark that made them.
bench_drop_at_exit() {
	BENCH_DROP_DB=$PGDATABASE
	BENCH_DROP_ROLES=("$@")
	trap bench_drop EXIT
}
bench_drop() {
	local r
	bench_psql -d postgres -c "DROP DATABASE IF EXISTS \"$BENCH_DROP_DB\" WITH (FORCE)" >/dev/null || true
	for r in "${BENCH_DROP_ROLES[@]}"; do
		bench_psql -d postgres -c "DROP ROLE IF EXISTS \"$r\"" >/dev/null || true
	done
}

# bench_pgbench_tps PURPOSE PROTOCOL ROLE SECONDS SCRIPT -> TPS (2 clients,
# 2 threads, privacy.purpose declared through PGOPTIONS, JIT off); dies if
# pgbench fails or any transaction failed.
bench_pgbench_tps() {
	local purpose=$1 protocol=$2 role=$3 secs=$4 script=$5 out
	out=$(PGOPTIONS="-c privacy.purpose=$purpose -c jit=off" "$PG_BINDIR/pgbench" -n -M "$protocol" \
		-U "$role" -c 2 -j 2 -T "$secs" -f "$script" 2>&1) || die "pgbench $script failed: $out"
	grep -q "^number of failed transactions: 0 " <<<"$out" || die "pgbench $script had failures: $out"
	awk '/^tps = / { printf "%.1f", $3 }' <<<"$out"
}
