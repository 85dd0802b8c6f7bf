#!/bin/bash
# 03_scan_decrypt — what a full scan that decrypts every value costs per value.
#
# 1,000,000 distinct e-mail addresses of 24 bytes (user00000123@example.org)
# are loaded four times:
#   plain  email text                                 no encryption
#   enc    email privacy.encrypted_text(contact)      ours (INSERT ... SELECT:
#                                                     the assignment cast seals
#                                                     each value once)
#   cbc    email bytea = encrypt_iv(convert_to(email, 'UTF8'), key, iv, 'aes-cbc')
#                                                     pgcrypto, AES-256-CBC,
#                                                     unauthenticated, one key
#                                                     and IV for every row
#   pgp    email bytea = pgp_sym_encrypt(email, 'pw') pgcrypto, OpenPGP: only a
#                                                     sample of 20,000 rows,
#                                                     since every value runs
#                                                     the S2K key derivation
#                                                     (hundreds of us) both ways
# and scanned, each statement returning one row, as an application role
# holding the purpose "support", with that purpose declared:
#   SELECT sum(length(email)) FROM plain
#   SELECT sum(length(email::text)) FROM enc                      -- decrypts
#   SELECT sum(length(convert_from(decrypt_iv(email, key, iv, 'aes-cbc'), 'UTF8'))) FROM cbc
#   SELECT sum(length(pgp_sym_decrypt(email, 'pw'))) FROM pgp     -- 20,000 rows
#   SELECT sum(pg_column_size(email)) FROM enc   -- context: the same pages, nothing opened
# jit and parallel workers off, best of 3 interleaved rounds after a warm-up.
#
# Per value, what decrypting adds to a plain scan:
#   ours    = (enc - plain) / 1,000,000
#   cbc     = (cbc - plain) / 1,000,000
#   pgp     = pgp / 20,000 - plain / 1,000,000   (scaled from the sample)
# Figures, ns per value:
#   scan_decrypt_vs_floor            ours vs SODIUM_OPEN_NS (bench-floor.env): goal <= 2.0
#   scan_decrypt_vs_pgp_sym_decrypt  ours vs pgp: goal <= 0.01 (100x faster)
#   scan_decrypt_vs_decrypt_iv       ours vs cbc: goal <= 1.5
#   scan_decrypt_per_row             the whole decrypting scan per row vs the
#                                    plain scan per row (report)
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${SCAN_DECRYPT_VALUES:-1000000}
SAMPLE=${SCAN_DECRYPT_PGP_SAMPLE:-20000}
APP=bench_scan_app
floor_load

bench_db bench_scan_decrypt
bench_drop_at_exit "$APP"

KEY="'\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea"
IV="'\\x0f0e0d0c0b0a09080706050403020100'::bytea"
EMAIL="'user' || lpad(g::text, 8, '0') || '@example.org'"

echo "loading $N e-mail addresses into plain, enc and cbc, $SAMPLE into pgp"
start=$(date +%s)
bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
CREATE EXTENSION pgcrypto;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
DROP ROLE IF EXISTS $APP;
CREATE ROLE $APP;
SELECT privacy.grant_purpose('$APP', 'support');

-- autovacuum off: no background pass over the tables while they are timed
CREATE TABLE plain (id bigint, email text) WITH (autovacuum_enabled = off);
CREATE TABLE enc (id bigint, email privacy.encrypted_text) WITH (autovacuum_enabled = off);
SELECT privacy.classify('enc', 'email', 'contact');
CREATE TABLE cbc (id bigint, email bytea) WITH (autovacuum_enabled = off);
CREATE TABLE pgp (id bigint, email bytea) WITH (autovacuum_enabled = off);
GRANT SELECT ON plain, enc, cbc, pgp TO $APP;

INSERT INTO plain SELECT g, $EMAIL FROM generate_series(1, $N) g;
INSERT INTO enc SELECT g, $EMAIL FROM generate_series(1, $N) g;
INSERT INTO cbc SELECT g, encrypt_iv(convert_to($EMAIL, 'UTF8'), $KEY, $IV, 'aes-cbc')
  FROM generate_series(1, $N) g;
INSERT INTO pgp SELECT g, pgp_sym_encrypt($EMAIL, 'pw') FROM generate_series(1, $SAMPLE) g;
VACUUM (FREEZE, ANALYZE) plain, enc, cbc, pgp;
SQL
echo "  loaded in $(( $(date +%s) - start )) s; table sizes:"
bench_psql -c "SELECT format('  %-6s %8s rows  %s', relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid)))
                 FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname"

# Each timing session: per-row plans, then the application role with its purpose.
setup="
SET jit = off;
SET max_parallel_workers_per_gather = 0;
SET ROLE $APP;
SET privacy.purpose = 'support';
"
q_plain="SELECT sum(length(email)) FROM plain"
q_ours="SELECT sum(length(email::text)) FROM enc"
q_cbc="SELECT sum(length(convert_from(decrypt_iv(email, $KEY, $IV, 'aes-cbc'), 'UTF8'))) FROM cbc"
q_pgp="SELECT sum(length(pgp_sym_decrypt(email, 'pw'))) FROM pgp"
q_pages="SELECT sum(pg_column_size(email)) FROM enc"

# Every scan must really decrypt: 24 bytes per value (a mask would be 8).
mapfile -t sums < <(bench_psql -c "$setup" -c "$q_plain" -c "$q_ours" -c "$q_cbc" \
	-c "SELECT sum(length(pgp_sym_decrypt(email, 'pw'))) FROM (SELECT email FROM pgp LIMIT 1000) s")
want=("$((24 * N))" "$((24 * N))" "$((24 * N))" 24000)
[ "${sums[*]}" = "${want[*]}" ] || die "decrypted lengths are wrong: got ${sums[*]}, want ${want[*]}"

mapfile -t ms < <(sql_time 3 "$setup" "$q_plain" "$q_ours" "$q_cbc" "$q_pgp" "$q_pages")
[ ${#ms[@]} -eq 5 ] || die "expected 5 timings, got ${#ms[@]}"
plain_ms=${ms[0]%% *}
ours_ms=${ms[1]%% *}
cbc_ms=${ms[2]%% *}
pgp_ms=${ms[3]%% *}
pages_ms=${ms[4]%% *}
echo "ms per statement, best / median of 3:"
echo "  plain scan, $N rows                   ${ms[0]/ / / }"
echo "  enc, email::text, $N rows             ${ms[1]/ / / }"
echo "  cbc, decrypt_iv, $N rows              ${ms[2]/ / / }"
echo "  pgp, pgp_sym_decrypt, $SAMPLE rows      ${ms[3]/ / / }  (sample, scaled per value below)"
echo "  enc, pg_column_size (nothing opened)  ${ms[4]/ / / }"

calc() { awk "BEGIN { v = $1; printf \"%.1f\", v < 0 ? 0 : v }"; }
ours_ns=$(calc "($ours_ms - $plain_ms) * 1e6 / $N")
cbc_ns=$(calc "($cbc_ms - $plain_ms) * 1e6 / $N")
pgp_ns=$(calc "$pgp_ms * 1e6 / $SAMPLE - $plain_ms * 1e6 / $N")
echo "ns per value added to the plain scan: ours $ours_ns, decrypt_iv $cbc_ns," \
	"pgp_sym_decrypt $pgp_ns (scaled from $SAMPLE rows); libsodium open alone $SODIUM_OPEN_NS"
echo "ns per row, whole scan: plain $(calc "$plain_ms * 1e6 / $N")," \
	"enc read without opening (pg_column_size) $(calc "$pages_ms * 1e6 / $N")," \
	"enc decrypted $(calc "$ours_ms * 1e6 / $N")"
echo "pgp_sym_decrypt costs $(calc "$pgp_ns / ($ours_ns > 0 ? $ours_ns : 1)") times ours per value"

figure scan_decrypt_vs_floor "$ours_ns" ns xchacha20poly1305_open "$SODIUM_OPEN_NS" "<= 2.0"
figure scan_decrypt_vs_pgp_sym_decrypt "$ours_ns" ns pgp_sym_decrypt "$pgp_ns" "<= 0.01"
figure scan_decrypt_vs_decrypt_iv "$ours_ns" ns decrypt_iv_aes_cbc "$cbc_ns" "<= 1.5"
figure scan_decrypt_per_row "$(calc "$ours_ms * 1e6 / $N")" ns plain_scan "$(calc "$plain_ms * 1e6 / $N")"
