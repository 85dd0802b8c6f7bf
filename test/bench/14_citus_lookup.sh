#!/bin/bash
# 14_citus_lookup — point lookup by customer id on a 3-node Citus cluster,
# the extension's features on ÷ off (issue #16).
#
# A coordinator and two workers (Citus 12.1.12, shared_preload_libraries =
# 'citus,privacy', one master key), started here beside the harness's
# cluster, whose key they share.  Two tables distributed by id (4 shards
# each), CITUS_ROWS rows (default 2,000) of distinct 24-byte e-mails:
#   enc    protected (consent check on every shard, seal trigger), email
#          privacy.encrypted_text(contact): sealed under each customer's key
#   plain  not protected, email text
# pgbench on the coordinator, as an application role holding the purpose
# "service" (legal basis contract: every customer without an objection is
# visible), declared for the session with PGOPTIONS (the purpose reaches
# the worker in the query, citus.c):
#
#   \set id random(1, N)
#   SELECT email FROM enc WHERE id = :id \gset
#
# so every transaction is routed to one shard, where the consent check runs
# and the worker opens the e-mail.  \gset fails (and pgbench aborts) if a
# lookup finds no row.
#
# pgbench -n -c 2 -j 2 -T CITUS_SECONDS (default 10), after a 3 s warm-up;
# 2 runs of each, alternating; best of 2.
# Figures: transactions per second (and new customers per second, at the end):
#   citus_point_lookup   TPS ours (enc) vs TPS plain: goal report
#   citus_new_subjects   new customers/s through multi-row INSERTs, keys in
#                        bulk vs one key request each (see the end): report
#
# Skipped (no figure, exit 0) when Citus is not installed: test/run citus
# builds it from ../shared/citus.
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${CITUS_ROWS:-2000}
SECS=${CITUS_SECONDS:-10}
APP=bench_citus_app

# the server binaries the harness's cluster runs (a private copy with
# PRIVACY_PRIVATE_INSTALL), which find the extension beside them
SERVER_BIN=$(dirname "$(awk '{ print $1; exit }' "$PGDATA/postmaster.opts")")
[ -x "$SERVER_BIN/postgres" ] || die "cannot tell which server binaries the harness runs"
if [ ! -e "$SERVER_BIN/../lib/citus.so" ]; then
	echo "skipped: Citus is not installed (./test/run citus builds it from ../shared/citus as root)"
	exit 0
fi

KEY=$PRIVACY_TMP/master.key
[ -f "$KEY" ] || die "no master key at $KEY"
NODES=()
# citus_node NAME: a node in $PRIVACY_TMP/NAME, started; prints its port.
citus_node() {
	local d=$PRIVACY_TMP/$1 port=$(( 20000 + RANDOM % 20000 ))
	mkdir -p "$d"; chmod 755 "$d"
	[ "$(id -u)" = 0 ] && chown postgres: "$d"
	as_pg "$SERVER_BIN/initdb" -D "$d/data" -A trust -N -U "$PGUSER" --locale=C.UTF-8 -E UTF8 >"$d/initdb.log" 2>&1 \
		|| { cat "$d/initdb.log" >&2; die "initdb $1 failed"; }
	as_pg sh -c "cat >> '$d/data/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d'
port = $port
shared_preload_libraries = 'citus,privacy'
privacy.master_key_command = 'cat $KEY'
fsync = off
max_prepared_transactions = 20
max_connections = 60
citus.shard_count = 4
citus.shard_replication_factor = 1
CONF
	as_pg "$SERVER_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 120 start >/dev/null \
		|| { cat "$d/server.log" >&2; die "node $1 did not start"; }
	NODES+=("$d")
	echo "$port"
}
stop_nodes() {
	local d
	for d in "${NODES[@]}"; do
		as_pg "$SERVER_BIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
	done
}
trap stop_nodes EXIT
node_psql() { PGHOST=127.0.0.1 PGPORT=$1 PGDATABASE=postgres bench_psql "${@:2}"; }

ports=()
for n in citus_coord citus_w1 citus_w2; do
	citus_node "$n" >"$PRIVACY_TMP/$n.port"
	ports+=("$(cat "$PRIVACY_TMP/$n.port")")
done
COORD=${ports[0]}
for p in "${ports[@]}"; do node_psql "$p" -c 'CREATE EXTENSION citus' >/dev/null; done
node_psql "$COORD" -c "SELECT citus_set_coordinator_host('127.0.0.1', $COORD)" >/dev/null
for p in "${ports[@]:1}"; do node_psql "$COORD" -c "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null; done

node_psql "$COORD" >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('service', 'contract', '', ARRAY['contact']);
CREATE ROLE $APP LOGIN;
SELECT privacy.grant_purpose('$APP', 'service');
CREATE TABLE enc (id bigint PRIMARY KEY, email privacy.encrypted_text(contact));
CREATE TABLE plain (id bigint PRIMARY KEY, email text);
SELECT create_distributed_table('enc', 'id');
SELECT create_distributed_table('plain', 'id');
SELECT privacy.protect_table('enc', 'id');
GRANT SELECT ON enc, plain TO $APP;
GRANT INSERT ON enc TO $APP;
SQL
# the customers' keys made first, in one transaction on the coordinator
# (a worker asks the coordinator for each new customer's key over a
# connection of its own: one at a time, a load is that slow); then the rows
# of enc as the application writes them, sealed under each customer's key
# on its worker: multi-row INSERTs (an INSERT ... SELECT computed on the
# coordinator reaches the shards by COPY, which row-level security refuses
# the application)
node_psql "$COORD" -v N="$N" >/dev/null <<'SQL'
SELECT count(privacy_internal.citus_create_key('subject', NULL, privacy.subject_hash(g::text)))
  FROM generate_series(1, :N) g;
SQL
PGOPTIONS="-c privacy.purpose=service" PGUSER=$APP node_psql "$COORD" -v N="$N" >/dev/null <<'SQL'
SELECT format('INSERT INTO enc VALUES %s',
              string_agg(format('(%s, %L)', g, 'user' || (10000000 + g) || '@example.org'), ', '))
  FROM generate_series(1, :N) g GROUP BY g / 1000 \gexec
SQL
node_psql "$COORD" >/dev/null <<SQL
INSERT INTO plain SELECT g, 'user' || (10000000 + g) || '@example.org' FROM generate_series(1, $N) g;
VACUUM ANALYZE enc, plain;
SQL

probe=$((N / 2 + 7))
row=$(PGOPTIONS="-c privacy.purpose=service" PGUSER=$APP node_psql "$COORD" -c "SELECT email FROM enc WHERE id = $probe")
[ "$row" = "user$((10000000 + probe))@example.org" ] || die "lookup on enc returned '$row'"
keys=$(node_psql "$COORD" -c "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'")
echo "rows: $N per table; subject keys (made by the coordinator for the workers): $keys"

for t in enc plain; do
	cat >"$PRIVACY_TMP/citus_$t.pgbench" <<PGB
\\set id random(1, $N)
SELECT email FROM $t WHERE id = :id \\gset
PGB
done
pgbench_run() {
	PGHOST=127.0.0.1 PGPORT=$COORD PGDATABASE=postgres \
		bench_pgbench_tps service simple "$APP" "$2" "$PRIVACY_TMP/citus_$1.pgbench"
}

echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg) (pgbench and 3 servers share $(nproc) cores)"
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
echo "TPS, pgbench -c 2 -j 2 -T $SECS on the coordinator, runs: enc ${enc_tps[*]}, plain ${plain_tps[*]}"

figure citus_point_lookup "$enc_best" tps plain_citus_lookup "$plain_best"

# New customers through the coordinator (issue #16, the bulk path for keys):
# CITUS_NEW (default 400) customers with no key yet, as the application
# writes them, in multi-row INSERTs of 200 rows, timed with psql's wall
# clock; first with privacy.citus_batch_keys off (each worker asks the
# coordinator for each new customer's key as it seals the row: the path
# before), then on (the coordinator sends the statement's new subjects to
# the key service in one request).  New customers per second, on vs off.
M=${CITUS_NEW:-400}
new_customers() {
	local from=$1 batch=$2 t0 t1
	t0=$(date +%s%N)
	PGOPTIONS="-c privacy.purpose=service -c privacy.citus_batch_keys=$batch" PGUSER=$APP \
		node_psql "$COORD" -v from="$from" -v n="$M" >/dev/null <<'SQL'
SELECT format('INSERT INTO enc VALUES %s',
              string_agg(format('(%s, %L)', g, 'new' || g || '@example.org'), ', '))
  FROM generate_series(:from + 1, :from + :n) g GROUP BY (g - :from - 1) / 200 \gexec
SQL
	t1=$(date +%s%N)
	awk -v n="$M" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f\n", n / (ns / 1e9) }'
}
echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
off_rate=$(new_customers $((N + 1000)) off)
on_rate=$(new_customers $((N + 1000 + M)) on)
keys_after=$(node_psql "$COORD" -c "SELECT count(*) FROM privacy.data_keys WHERE scope = 'subject'")
[ "$keys_after" -eq $((keys + 2 * M)) ] || die "expected $((keys + 2 * M)) subject keys, found $keys_after"
echo "new customers per second, $M each way, multi-row INSERTs of 200: batch on $on_rate, off (one key request per customer) $off_rate"
figure citus_new_subjects "$on_rate" subjects/s one_key_request_each "$off_rate"
