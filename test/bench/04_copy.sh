#!/bin/bash
# 04_copy — what COPY FROM costs when two of four columns are encrypted.
#
# One file of 1,000,000 rows (id, email, name, created_at) is written once
# by the server with COPY ... TO (text format, in PRIVACY_TMP), then loaded
# with a server-side COPY ... FROM into two tables of the same shape, with no
# index (the most the sealing can weigh):
#   enc    email and name privacy.encrypted_text, both classified "contact":
#          the input function receives the column's type modifier and seals
#          each value once with the category key
#   plain  email and name text
# The COPY runs as the cluster's superuser with no purpose declared (a
# server-side file needs it): that session reads and writes "pv1:" envelopes,
# but a value not starting with "pv1:" is plaintext and is sealed, which is
# every e-mail address and name here.
#
# Each COPY is its own transaction into a table just emptied by TRUNCATE,
# after a CHECKPOINT (so that no checkpoint falls inside the timing); one
# warm-up round, then 3 rounds alternating enc and plain, timed by psql
# (\timing: the whole statement, commit included).  After the last round the
# encrypted table is checked: every value sealed under the category key, and
# decrypting gives the file's text back.
#
# Figure, ms per 1,000,000 rows, best of 3:
#   copy_from_encrypted   COPY into enc vs COPY into plain: goal <= 2.0
# For context it prints the lowest ratio libsodium alone allows: the plain
# COPY plus two seals per row at SODIUM_SEAL_NS - SODIUM_NONCE_NS
# (bench-floor.env; the envelope does not draw each nonce from the system).
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${COPY_ROWS:-1000000}
REPS=3
FILE=$PRIVACY_TMP/bench_copy.txt
floor_load

bench_db bench_copy
bench_drop_at_exit
trap 'bench_drop; rm -f "$FILE"' EXIT

bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
-- autovacuum off: no background pass over the tables while they are loaded
CREATE TABLE plain (id bigint, email text, name text, created_at timestamptz)
    WITH (autovacuum_enabled = off);
CREATE TABLE enc (id bigint, email privacy.encrypted_text, name privacy.encrypted_text,
                  created_at timestamptz)
    WITH (autovacuum_enabled = off);
SELECT privacy.classify('enc', 'email', 'contact');
SELECT privacy.classify('enc', 'name', 'contact');
COPY (SELECT g, 'user' || lpad(g::text, 8, '0') || '@example.org',
             'Firstname' || (g % 997) || ' Lastname' || (g % 1009),
             timestamptz '2020-01-01 00:00:00+00' + g * interval '17 seconds'
        FROM generate_series(1, $N) g)
  TO '$FILE';
SQL
echo "$N rows written to the COPY file: $(du -h "$FILE" | cut -f1), e.g. \"$(head -n 1 "$FILE" | tr '\t' ' ')\""

# One session: a warm-up round, then REPS timed rounds, enc then plain.
for r in $(seq 0 $REPS); do
	for t in enc plain; do
		printf '%s\n' "TRUNCATE $t;" "CHECKPOINT;" "\\echo copy $r $t" \
			'\timing on' "COPY $t FROM '$FILE';" '\timing off'
	done
done >"$PRIVACY_TMP/bench_copy.sql"
bench_psql -f "$PRIVACY_TMP/bench_copy.sql" >"$PRIVACY_TMP/bench_copy.out"

# "copy R T" lines followed by "Time: X ms" -> "T X" for the timed rounds
times=$(awk '$1 == "copy" { r = $2; t = $3 } $1 == "Time:" && r > 0 { print t, $2 }' "$PRIVACY_TMP/bench_copy.out")
best() { awk -v t="$1" '$1 == t { if (min == "" || $2 < min) min = $2 } END { printf "%.1f", min }' <<<"$times"; }
median() { awk -v t="$1" '$1 == t { print $2 }' <<<"$times" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
[ "$(wc -l <<<"$times")" -eq $((2 * REPS)) ] || die "expected $((2 * REPS)) timings, got: $times"
enc_ms=$(best enc)
plain_ms=$(best plain)

# The last round's enc table: sealed under the category key, and the right text.
check=$(bench_psql <<'SQL'
SET privacy.purpose = 'support';
SELECT count(*) FILTER (WHERE (privacy.envelope_info(e.email)).category = 'contact'
                          AND (privacy.envelope_info(e.name)).category = 'contact'
                          AND (privacy.envelope_info(e.email)).key_id IS NOT NULL
                          AND (privacy.envelope_info(e.name)).key_id IS NOT NULL)
       || ' ' || bool_and(e.email::text = p.email AND e.name::text = p.name)
  FROM enc e JOIN plain p USING (id);
SQL
)
[ "$check" = "$N true" ] || die "COPY into enc did not seal every value under the category key, or reads back wrong (got '$check')"

echo "ms per COPY of $N rows, best / median of $REPS:"
echo "  enc (email, name encrypted)  $enc_ms / $(median enc)"
echo "  plain                        $plain_ms / $(median plain)"
echo "per row: enc $(awk -v ms="$enc_ms" -v n="$N" 'BEGIN { printf "%.0f", ms * 1e6 / n }') ns," \
	"plain $(awk -v ms="$plain_ms" -v n="$N" 'BEGIN { printf "%.0f", ms * 1e6 / n }') ns;" \
	"per sealed value (2 a row) $(awk -v e="$enc_ms" -v p="$plain_ms" -v n="$N" 'BEGIN { printf "%.0f", (e - p) * 1e6 / (2 * n) }') ns" \
	"(libsodium seal alone: $SODIUM_SEAL_NS ns, of which drawing the nonce $SODIUM_NONCE_NS ns)"

# The envelope draws its nonces from a per-backend prefix and counter, not
# from the system per seal: its floor is the seal minus the nonce draw.
seal_ns=$(awk -v s="$SODIUM_SEAL_NS" -v r="$SODIUM_NONCE_NS" 'BEGIN { printf "%.1f", s - r }')
echo "lowest ratio libsodium allows: plain COPY + 2 seals per row at $seal_ns ns" \
	"(SODIUM_SEAL_NS - SODIUM_NONCE_NS): $(awk -v p="$plain_ms" -v s="$seal_ns" -v n="$N" 'BEGIN { printf "%.2f", (p + 2 * s * n / 1e6) / p }')"

figure copy_from_encrypted "$enc_ms" ms plain_copy "$plain_ms" "<= 2.0"
