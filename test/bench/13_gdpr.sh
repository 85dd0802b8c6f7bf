#!/bin/bash
# 13_gdpr — the four roles of GDPRbench (Shastri et al., VLDB 2020) on our
# own scripts (#19): the same operations, with the same random seed and the
# same fixed number of transactions, on the extension and on plain
# PostgreSQL with compliance done by hand, in one database.
#
# Data: BENCH_SUBJECTS customers (20,000 by default), each with
# BENCH_RECORDS_PER records (10: 200,000 records), their dates spread over
# two years and a week (a purge finds a few due); half the customers
# consented to marketing.
#
#   ours:   customers (e-mail encrypted, name classified) and records
#           (payload encrypted), protected, a retention rule on records;
#           purposes billing (contract), marketing (consent), analytics
#           (legitimate interests); consent through the ledger, reads
#           under a purpose (row-level security and the access log do the
#           rest), the portal functions for the customer, the subject
#           report, the access trail, erase_subject, verify_erasure, purge.
#   plain:  the same tables in plaintext; consent state and an event table
#           joined by hand into every read; an audit row inserted with every
#           statement that reads or writes personal data; erasure, purge,
#           the subject report and the erasure check as PL/pgSQL.
#
# Roles (each a pgbench run of 2 clients, BENCH_TX transactions each,
# scripts chosen by weight with --random-seed, so both sides run the same
# operations on the same subjects):
#   controller  create a record 50, change the retention 5, grant or
#               withdraw consent 30, erase a subject 10, purge 5
#   customer    read own report 40, rectify e-mail 20, consent, withdraw or
#               object 30, ask for erasure 10
#   processor   read a customer by key (billing) 70, read a customer's
#               records for marketing (consent) 30
#   regulator   subject report 40, access trail of a subject 40, verify an
#               erasure 20
#   mixed       all of the above, each role's weights as given
#   (floor)     not a role: the regulator's required part alone (below)
#
# Figures: tps of ours against plain per role (ratio = ours / plain, goals
# >= 0.5 per role, >= 0.8 mixed), and for each operation its average
# latency on both sides (where the time goes).
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${BENCH_SUBJECTS:-20000}
PER=${BENCH_RECORDS_PER:-10}
TX=${BENCH_TX:-2000}
SEED=${BENCH_SEED:-4711}
bench_db bench_gdpr
bench_drop_at_exit

say "loading $N subjects with $PER records each, on both sides"
t0=$(date +%s)
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', 'invoicing', ARRAY['contact']);
SELECT privacy.create_purpose('marketing', 'consent', 'newsletter', ARRAY['contact']);
SELECT privacy.create_purpose('analytics', 'legitimate_interests', 'usage statistics', ARRAY['contact']);
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email privacy.encrypted_text(contact));
CREATE TABLE records (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                      kind text NOT NULL, payload privacy.encrypted_text(contact), created_at timestamptz NOT NULL);
CREATE INDEX ON records (customer_id);
CREATE INDEX ON records (created_at);
SELECT privacy.classify('customers', 'name', 'contact');
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.protect_table('records', 'customer_id');
SELECT privacy.set_retention('records', 'created_at', '2 years', 'delete');
SET privacy.purpose = 'billing';
INSERT INTO customers SELECT g, 'Customer ' || g, 'c' || g || '@example.org' FROM generate_series(1, $N) g;
INSERT INTO records (customer_id, kind, payload, created_at)
SELECT s, 'call', 'record ' || r || ' of ' || s, now() - (((s * $PER + r) % 737) || ' days')::interval
  FROM generate_series(1, $N) s, generate_series(1, $PER) r;
RESET privacy.purpose;
SELECT count(privacy.grant_consent(g::text, 'marketing', 'signup')) FROM generate_series(1, $N, 2) g;
CREATE SEQUENCE erase_seq;

-- the hand-written side
CREATE TABLE p_customers (id bigint PRIMARY KEY, name text, email text);
CREATE TABLE p_records (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES p_customers,
                        kind text NOT NULL, payload text, created_at timestamptz NOT NULL);
CREATE INDEX ON p_records (customer_id);
CREATE INDEX ON p_records (created_at);
INSERT INTO p_customers SELECT g, 'Customer ' || g, 'c' || g || '@example.org' FROM generate_series(1, $N) g;
INSERT INTO p_records (customer_id, kind, payload, created_at)
SELECT s, 'call', 'record ' || r || ' of ' || s, now() - (((s * $PER + r) % 737) || ' days')::interval
  FROM generate_series(1, $N) s, generate_series(1, $PER) r;
CREATE TABLE p_consent (subject text, purpose text, state text NOT NULL, since timestamptz NOT NULL,
                        PRIMARY KEY (purpose, subject));
CREATE INDEX ON p_consent (subject);
CREATE TABLE p_events (id bigserial PRIMARY KEY, subject text NOT NULL, purpose text NOT NULL, action text NOT NULL,
                       at timestamptz NOT NULL DEFAULT clock_timestamp(), source text NOT NULL, evidence jsonb);
CREATE INDEX ON p_events (subject);
CREATE TABLE p_audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(),
                      role name NOT NULL DEFAULT current_user, purpose text, command text, tbl text, subject text);
CREATE INDEX ON p_audit (subject);
CREATE TABLE p_requests (id bigserial PRIMARY KEY, subject text, kind text, received_at timestamptz DEFAULT now(),
                         status text DEFAULT 'open');
CREATE INDEX ON p_requests (subject);
CREATE TABLE p_erasures (id bigserial PRIMARY KEY, subject_hash bytea, reason text, at timestamptz, tables jsonb);
CREATE TABLE p_retention (tbl text PRIMARY KEY, keep interval);
INSERT INTO p_retention VALUES ('p_records', '2 years');
CREATE TABLE p_purge_runs (id bigserial PRIMARY KEY, at timestamptz, deleted bigint);
CREATE SEQUENCE p_erase_seq;

CREATE FUNCTION p_record_consent(s text, p text, a text, src text, ev jsonb DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS \$\$
DECLARE id bigint;
BEGIN
    INSERT INTO p_consent AS c VALUES (s, p, CASE a WHEN 'grant' THEN 'granted' WHEN 'withdraw' THEN 'withdrawn' ELSE 'objected' END, now())
    ON CONFLICT (purpose, subject) DO UPDATE SET state = excluded.state, since = excluded.since;
    INSERT INTO p_events (subject, purpose, action, source, evidence) VALUES (s, p, a, src, ev) RETURNING p_events.id INTO id;
    RETURN id;
END \$\$;
INSERT INTO p_consent SELECT g::text, 'marketing', 'granted', now() FROM generate_series(1, $N, 2) g;
INSERT INTO p_events (subject, purpose, action, source) SELECT g::text, 'marketing', 'grant', 'signup' FROM generate_series(1, $N, 2) g;

CREATE FUNCTION p_erase(s text, why text) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE n1 bigint; n2 bigint;
BEGIN
    DELETE FROM p_records WHERE customer_id = s::bigint; GET DIAGNOSTICS n1 = ROW_COUNT;
    DELETE FROM p_customers WHERE id = s::bigint; GET DIAGNOSTICS n2 = ROW_COUNT;
    DELETE FROM p_consent WHERE subject = s;
    UPDATE p_events SET subject = 'erased:' || encode(sha256(s::bytea), 'hex'), evidence = NULL WHERE subject = s;
    INSERT INTO p_erasures (subject_hash, reason, at, tables)
    VALUES (sha256(s::bytea), why, now(), jsonb_build_object('p_records', n1, 'p_customers', n2));
    INSERT INTO p_audit (purpose, command, tbl, subject) VALUES ('erasure', 'DELETE', 'p_records,p_customers', s);
    RETURN jsonb_build_object('p_records', n1, 'p_customers', n2);
END \$\$;

CREATE PROCEDURE p_purge() LANGUAGE plpgsql AS \$\$
DECLARE n bigint;
BEGIN
    DELETE FROM p_records r WHERE r.created_at < now() - (SELECT keep FROM p_retention WHERE tbl = 'p_records');
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO p_purge_runs (at, deleted) VALUES (now(), n);
    COMMIT;
END \$\$;

CREATE FUNCTION p_subject_report(s text) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE r jsonb;
BEGIN
    SELECT jsonb_build_object(
        'subject', s,
        'data', jsonb_build_array(
            (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM p_customers c WHERE c.id = s::bigint),
            (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.id), '[]') FROM p_records x WHERE x.customer_id = s::bigint)),
        'consents', (SELECT coalesce(jsonb_agg(to_jsonb(k)), '[]') FROM p_consent k WHERE k.subject = s),
        'history', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM p_events e WHERE e.subject = s),
        'access', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.id), '[]') FROM p_audit a WHERE a.subject = s),
        'requests', (SELECT coalesce(jsonb_agg(to_jsonb(q)), '[]') FROM p_requests q WHERE q.subject = s))
      INTO r;
    INSERT INTO p_audit (purpose, command, tbl, subject) VALUES ('subject_access', 'SELECT', 'p_customers,p_records', s);
    RETURN r;
END \$\$;

CREATE FUNCTION p_verify_erasure(s text) RETURNS jsonb LANGUAGE sql AS \$\$
    SELECT jsonb_build_object(
        'rows', (SELECT count(*) FROM p_customers WHERE id = s::bigint) + (SELECT count(*) FROM p_records WHERE customer_id = s::bigint),
        'consent_state', (SELECT count(*) FROM p_consent WHERE subject = s),
        'consent_events', (SELECT count(*) FROM p_events WHERE subject = s))
\$\$;
VACUUM ANALYZE;
SQL
echo "loaded in $(( $(date +%s) - t0 )) s: $(bench_psql -c "SET privacy.purpose = 'billing'" -c "SELECT count(*) FROM records") records of ours, $(bench_psql -c "SELECT count(*) FROM p_records") of plain"

# The operations: name, weight, our statement, the hand-written one.  Both
# scripts of an operation draw the same random numbers in the same order.
W=$PRIVACY_TMP/gdpr
rm -rf "$W"
mkdir -p "$W/ours" "$W/plain"
chmod 777 "$W" "$W/ours" "$W/plain"
op() {	# op ROLE NAME WEIGHT OURS PLAIN (the \set lines come first in both)
	local role=$1 name=$2 weight=$3 sets=$4 ours=$5 plain=$6
	printf '%s\n%s\n' "$sets" "$ours" >"$W/ours/${role}_$name.sql"
	printf '%s\n%s\n' "$sets" "$plain" >"$W/plain/${role}_$name.sql"
	echo "$role $name $weight" >>"$W/ops"
}
# subjects 1..E are erased, in order (erase_seq), by the controller; the
# other operations pick among the rest, so that no write meets an erased
# customer (a foreign-key error on both sides)
E=$((N / 10))
S="\\set s random($((E + 1)), $N)"
AUDIT="INSERT INTO p_audit (purpose, command, tbl, subject)"

op controller create 50 "$S" \
	"INSERT INTO records (customer_id, kind, payload, created_at) VALUES (:s, 'call', 'new record of :s', now());" \
	"INSERT INTO p_records (customer_id, kind, payload, created_at) VALUES (:s, 'call', 'new record of :s', now());
$AUDIT VALUES ('billing', 'INSERT', 'p_records', ':s');"
op controller retention 5 "" \
	"SELECT privacy.set_retention('records', 'created_at', '2 years', 'delete');" \
	"UPDATE p_retention SET keep = '2 years' WHERE tbl = 'p_records';"
op controller consent 30 "$S
\\set g random(0, 1)" \
	"SELECT CASE WHEN :g = 1 THEN privacy.grant_consent(':s', 'marketing', 'crm') ELSE privacy.withdraw_consent(':s', 'marketing', 'crm') END;" \
	"SELECT p_record_consent(':s', 'marketing', CASE WHEN :g = 1 THEN 'grant' ELSE 'withdraw' END, 'crm');"
op controller erase 10 "" \
	"SELECT nextval('erase_seq') AS e \\gset
SELECT privacy.erase_subject(':e', 'bench') IS NOT NULL;" \
	"SELECT nextval('p_erase_seq') AS e \\gset
SELECT p_erase(':e', 'bench') IS NOT NULL;"
op controller purge 5 "" \
	"CALL privacy.purge();" \
	"CALL p_purge();"

# (one round trip, as the plain side's: the subject declared and the
# portal's call in one query string, a transaction of its own; so for the
# customer's consent and erasure request below, which took four before)
op customer read 40 "$S" \
	"BEGIN \\; SET LOCAL privacy.portal_subject = ':s' \\;
SELECT length(privacy.portal_report()::text) \\; COMMIT;" \
	"SELECT length(p_subject_report(':s')::text);"
op customer rectify 20 "$S" \
	"UPDATE customers SET email = 'new:s@example.org' WHERE id = :s;" \
	"UPDATE p_customers c SET email = 'new:s@example.org' WHERE c.id = :s
   AND NOT EXISTS (SELECT 1 FROM p_consent k WHERE k.subject = ':s' AND k.purpose = 'billing' AND k.state = 'objected');
$AUDIT VALUES ('billing', 'UPDATE', 'p_customers', ':s');"
op customer consent 30 "$S
\\set g random(0, 2)" \
	"BEGIN \\; SET LOCAL privacy.portal_subject = ':s' \\;
SELECT CASE :g WHEN 0 THEN privacy.portal_grant_consent('marketing', 'portal')
               WHEN 1 THEN privacy.portal_withdraw_consent('marketing', 'portal')
               ELSE privacy.portal_object('analytics', 'portal') END \\; COMMIT;" \
	"SELECT CASE :g WHEN 0 THEN p_record_consent(':s', 'marketing', 'grant', 'portal')
               WHEN 1 THEN p_record_consent(':s', 'marketing', 'withdraw', 'portal')
               ELSE p_record_consent(':s', 'analytics', 'object', 'portal') END;"
op customer erase 10 "$S" \
	"BEGIN \\; SET LOCAL privacy.portal_subject = ':s' \\;
SELECT privacy.portal_open_request('erasure') \\; COMMIT;" \
	"INSERT INTO p_requests (subject, kind) VALUES (':s', 'erasure');"

op processor by_key 70 "$S" \
	"SELECT email FROM customers WHERE id = :s;" \
	"$AUDIT VALUES ('billing', 'SELECT', 'p_customers', ':s');
SELECT c.email FROM p_customers c WHERE c.id = :s
   AND NOT EXISTS (SELECT 1 FROM p_consent k WHERE k.subject = ':s' AND k.purpose = 'billing' AND k.state = 'objected');"
op processor by_purpose 30 "$S" \
	"BEGIN;
SET LOCAL privacy.purpose = 'marketing';
SELECT count(payload::text) FROM records WHERE customer_id = :s;
COMMIT;" \
	"$AUDIT VALUES ('marketing', 'SELECT', 'p_records', ':s');
SELECT count(r.payload) FROM p_records r
  JOIN p_consent k ON k.subject = ':s' AND k.purpose = 'marketing' AND k.state = 'granted'
 WHERE r.customer_id = :s;"

op regulator report 40 "$S" \
	"SELECT length(privacy.subject_report(':s')::text);" \
	"SELECT length(p_subject_report(':s')::text);"
op regulator trail 40 "$S" \
	"SELECT count(*) FROM privacy.access_trail(':s');" \
	"SELECT count(*) FROM p_audit WHERE subject = ':s';"
op regulator verify 20 "$S" \
	"SELECT privacy.verify_erasure(':s') ->> 'verified';" \
	"SELECT p_verify_erasure(':s');"

# Floors of the regulator's operations (not a role; run after the roles):
# the part of each that the design requires and the hand-written side does
# not do, alone.  report_rows: the subject's rows read and opened under a
# purpose, each table's read logged (ours: decryption and access-log
# events; plain: the same rows in plaintext and its one audit row).
# trail_index: the trail's index range alone, without reading each entry
# from its MAC-chained batch (plain: its audit rows, the whole trail).
op floor report_rows 50 "$S" \
	"SELECT length((SELECT jsonb_agg(c) FROM customers c WHERE c.id = :s)::text
              || (SELECT jsonb_agg(r ORDER BY r.id) FROM records r WHERE r.customer_id = :s)::text);" \
	"$AUDIT VALUES ('subject_access', 'SELECT', 'p_customers,p_records', ':s');
SELECT length((SELECT jsonb_agg(c) FROM p_customers c WHERE c.id = :s)::text
              || (SELECT jsonb_agg(r ORDER BY r.id) FROM p_records r WHERE r.customer_id = :s)::text);"
op floor trail_index 50 "$S" \
	"SELECT count(*) FROM privacy.access_log_trail t
 WHERE t.subject_key = privacy_internal.access_log_subject_key(privacy.subject_hash(':s'));" \
	"SELECT count(*) FROM p_audit WHERE subject = ':s';"

# run SIDE ROLE... -> "tps" on stdout; the pgbench output in $W/SIDE-LABEL.out
run() {
	local side=$1 label=$2 args=() role name weight
	shift 2
	for role in "$@"; do
		while read -r r name weight; do
			[ "$r" = "$role" ] && args+=(-f "$W/$side/${r}_$name.sql@$weight")
		done <"$W/ops"
	done
	# default settings (JIT included), the purpose the scripts do not set
	PGOPTIONS="-c privacy.purpose=billing -c client_min_messages=warning" \
		"$PG_BINDIR/pgbench" -n -M simple -c 2 -j 2 -t "$TX" --random-seed="$RUN_SEED" -r "${args[@]}" \
		>"$W/$side-$label.out" 2>&1 || die "pgbench $side $label failed: $(tail -20 "$W/$side-$label.out")"
	grep -q "^number of failed transactions: 0 " "$W/$side-$label.out" ||
		die "pgbench $side $label had failures: $(tail -20 "$W/$side-$label.out")"
	awk '/^tps = / { printf "%.1f", $3 }' "$W/$side-$label.out"
}

# ms of each script (operation) of a run: "name latency" lines
latencies() {
	awk '/^SQL script [0-9]+: / { split($4, p, "/"); name = p[length(p)]; sub(/\.sql$/, "", name) }
	     /^ - latency average = / && name != "" { print name, $5; name = "" }' "$W/$1-$2.out"
}

# Each role's run draws its own subjects: a seed of its own (SEED, SEED+1,
# ... in this order), the same on both sides.  With one seed for all, every
# run drew the same subjects in the same order, and each run read the
# subjects the runs before it had just worked on: the mix, last, read
# subjects whose access trail four runs had lengthened (a report or a
# customer's read lists it, an entry at a time).  BENCH_SAME_SEED=1 brings
# that back.
declare -A TPS_OURS TPS_PLAIN
RUN_SEED=$SEED
for role in controller customer processor regulator mixed; do
	if [ "$role" = mixed ]; then set -- controller customer processor regulator; else set -- "$role"; fi
	say "$role: $((2 * TX)) transactions on each side"
	TPS_PLAIN[$role]=$(run plain "$role" "$@")
	TPS_OURS[$role]=$(run ours "$role" "$@")
	echo "tps: ours ${TPS_OURS[$role]}, plain ${TPS_PLAIN[$role]}"
	echo "where the time goes (average ms per operation, ours / plain):"
	join <(latencies ours "$role" | sort) <(latencies plain "$role" | sort) |
		awk '{ printf "  %-22s %9.2f %9.2f  x%.1f\n", $1, $2, $3, ($3 > 0 ? $2 / $3 : 0) }'
	[ -n "${BENCH_SAME_SEED:-}" ] || RUN_SEED=$((RUN_SEED + 1))
done

say "floors of the regulator's operations: $((2 * TX / 4)) transactions on each side"
TX=$((TX / 4)) run plain floor floor >/dev/null
TX=$((TX / 4)) run ours floor floor >/dev/null
echo "what the design requires alone (average ms per operation, ours / plain):"
join <(latencies ours floor | sort) <(latencies plain floor | sort) |
	awk '{ printf "  %-22s %9.2f %9.2f  x%.1f\n", $1, $2, $3, ($3 > 0 ? $2 / $3 : 0) }'

# both sides did the same: the erasures, the consent events
bench_psql -c "SET privacy.purpose = 'billing'" -c "SELECT 'erased: ours ' || (SELECT count(*) FROM privacy.erasures) || ', plain ' || (SELECT count(*) FROM p_erasures)
                   || '; consent events: ours ' || (SELECT count(*) FROM privacy.consent_events)
                   || ', plain ' || (SELECT count(*) FROM p_events)
                   || '; records: ours ' || (SELECT count(*) FROM records) || ', plain ' || (SELECT count(*) FROM p_records)"
# what a report or a customer's read lists and ours reads an entry at a
# time (see the seeds above): each side's trail per subject
bench_psql -c "SELECT 'access trail: ours ' || (SELECT count(*) || ' entries of ' || count(DISTINCT subject_key) || ' subjects, at most '
                                                       || coalesce(max(n), 0) || ' a subject'
                                                  FROM (SELECT subject_key, count(*) OVER (PARTITION BY subject_key) n
                                                          FROM privacy.access_log_trail) t)
                   || '; plain ' || (SELECT count(*) || ' audit rows of ' || count(DISTINCT subject) || ' subjects, at most '
                                            || coalesce(max(n), 0) || ' a subject'
                                       FROM (SELECT subject, count(*) OVER (PARTITION BY subject) n
                                               FROM p_audit WHERE subject IS NOT NULL) a)"

for role in controller customer processor regulator; do
	figure "gdpr_${role}_tps" "${TPS_OURS[$role]}" tps "plain_by_hand" "${TPS_PLAIN[$role]}" ">= 0.5"
done
figure gdpr_mixed_tps "${TPS_OURS[mixed]}" tps plain_by_hand "${TPS_PLAIN[mixed]}" ">= 0.8"
