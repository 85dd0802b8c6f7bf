#!/bin/bash
# 05_lookup — equality lookup by e-mail through an index on an encrypted column.
#
# 100,000 rows of distinct 24-byte e-mail addresses (user10000001@example.org
# ... user10100000@example.org), in two tables with a unique btree index on
# email:
#   enc    email privacy.encrypted_text(contact, searchable): the index holds
#          the blind-index tags; the literal in the WHERE clause is sealed with
#          the session's transient key (with its tag) when the statement is
#          parsed, and compared by tag
#   plain  email text
# pgbench, as an application role holding the purpose "support", declared
# with PGOPTIONS='-c privacy.purpose=support', runs one statement per
# transaction (simple protocol: pgbench puts the random id into the literal):
#
#   \set id random(10000001, 10100000)
#   SELECT id, email FROM enc WHERE email = 'user:id@example.org' \gset
#
# so every transaction seals the literal, walks the index, and decrypts the
# e-mail of the row it finds for the client.  \gset fails (and pgbench
# aborts) if a lookup finds no row, so every counted transaction found one.
# Before timing, EXPLAIN must show an index scan for both tables.
#
# pgbench -n -c 2 -j 2 -T 15, after a 3 s warm-up of each; 2 runs of each,
# alternating; best of 2.
# Figure, transactions per second:
#   lookup_by_encrypted_email   TPS ours vs TPS plain: goal >= 0.6
#
# Not indexable: a computed text cast to the column type, as in
# "WHERE email = ('user' || $1)::privacy.encrypted_text", is a call of the
# VOLATILE cast function, which the planner never uses as an index
# condition: that is a sequential scan (printed as context).  Parameters
# ($1, typed or not) and literals are constants and use the index.
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${LOOKUP_ROWS:-100000}
SECS=${LOOKUP_SECONDS:-15}
APP=bench_lookup_app
FIRST=10000001
LAST=$((10000000 + N))

bench_db bench_lookup
bench_drop_at_exit "$APP"

bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
DROP ROLE IF EXISTS $APP;
CREATE ROLE $APP LOGIN;
SELECT privacy.grant_purpose('$APP', 'support');

CREATE TABLE enc (id bigint PRIMARY KEY, email privacy.encrypted_text);
SELECT privacy.classify('enc', 'email', 'contact', searchable => true);
CREATE TABLE plain (id bigint PRIMARY KEY, email text);
INSERT INTO enc SELECT g, 'user' || g || '@example.org' FROM generate_series($FIRST, $LAST) g;
INSERT INTO plain SELECT g, 'user' || g || '@example.org' FROM generate_series($FIRST, $LAST) g;
CREATE UNIQUE INDEX enc_email ON enc (email);
CREATE UNIQUE INDEX plain_email ON plain (email);
VACUUM ANALYZE enc, plain;
GRANT SELECT ON enc, plain TO $APP;
SQL

app_psql() { PGOPTIONS="-c privacy.purpose=support" PGUSER=$APP bench_psql "$@"; }
probe=$((FIRST + 41))

# The plans: both lookups must walk their index.
for t in enc plain; do
	plan=$(app_psql -c "EXPLAIN (COSTS OFF) SELECT id, email FROM $t WHERE email = 'user$probe@example.org'")
	grep -q "Index Scan using ${t}_email" <<<"$plan" || die "the lookup on $t does not use its index: $plan"
	echo "plan on $t: $(tr '\n' ' ' <<<"$plan" | sed 's/  */ /g' | cut -c1-110)..."
done
plan=$(app_psql -c "EXPLAIN (COSTS OFF) SELECT id, email FROM enc WHERE email = ('user' || '$probe' || '@example.org')::privacy.encrypted_text")
echo "not indexable, a computed text cast to the column type: $(head -n 1 <<<"$plan")"

# A lookup finds its row and returns the plaintext.
row=$(app_psql -c "SELECT id || ' ' || email::text FROM enc WHERE email = 'user$probe@example.org'")
[ "$row" = "$probe user$probe@example.org" ] || die "lookup on enc returned '$row'"

for t in enc plain; do
	cat >"$PRIVACY_TMP/lookup_$t.pgbench" <<PGB
\\set id random($FIRST, $LAST)
SELECT id, email FROM $t WHERE email = 'user:id@example.org' \\gset
PGB
done

# pgbench_run TABLE SECONDS -> tps
pgbench_run() {
	bench_pgbench_tps support simple "$APP" "$2" "$PRIVACY_TMP/lookup_$1.pgbench"
}

echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg) (pgbench and 2 backends share $(nproc) cores)"
pgbench_run enc 3 >/dev/null
pgbench_run plain 3 >/dev/null
enc_tps=()
plain_tps=()
for _ in 1 2; do
	enc_tps+=("$(pgbench_run enc "$SECS")")
	plain_tps+=("$(pgbench_run plain "$SECS")")
done
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }
enc_best=$(max "${enc_tps[@]}")
plain_best=$(max "${plain_tps[@]}")
echo "TPS, pgbench -c 2 -j 2 -T $SECS, runs: enc ${enc_tps[*]}, plain ${plain_tps[*]}"
echo "latency per lookup at the best TPS (2 clients): enc $(awk -v t="$enc_best" 'BEGIN { printf "%.1f", 2e6 / t }') us," \
	"plain $(awk -v t="$plain_best" 'BEGIN { printf "%.1f", 2e6 / t }') us"

figure lookup_by_encrypted_email "$enc_best" tps plain_lookup "$plain_best" ">= 0.6"
