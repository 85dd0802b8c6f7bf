#!/bin/bash
# 06_overhead — how many bytes encryption adds to each stored value.
#
# 100,000 distinct e-mail addresses of 24 bytes (user00000001@example.org),
# stored as
#   enc         privacy.encrypted_text(contact)              ours
#   enc_search  privacy.encrypted_text(contact, searchable)  ours, with the
#                                                            blind-index tag
#   cbc         bytea = encrypt_iv(convert_to(email, 'UTF8'), key, iv, 'aes-cbc')
#   pgp         bytea = pgp_sym_encrypt(email, 'pw')         (10,000 rows: the
#                                                            S2K derivation makes
#                                                            each one slow)
#   plain       text
# Overhead per value = stored bytes - plaintext bytes, averaged over the rows,
# varlena header excluded on both sides: ours from
# privacy.envelope_info(email) (stored_bytes - plaintext_bytes), pgcrypto's
# from octet_length(ciphertext) - octet_length(email).  encrypt_iv stores no
# IV and no tag: its figure is CBC padding alone, and a scheme that stored a
# per-value IV would add 16 bytes to it.
#
# Figures, bytes per value:
#   envelope_overhead                ours (not searchable) vs pgp_sym_encrypt: goal ours <= 48
#   envelope_overhead_searchable     ours (searchable) vs pgp_sym_encrypt (report)
#   envelope_overhead_vs_encrypt_iv  ours (not searchable) vs encrypt_iv aes-cbc (report)
#   table_bytes_per_row              pg_total_relation_size(enc) / rows vs the
#                                    same for plain (report; id bigint + email)
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=${OVERHEAD_ROWS:-100000}
SAMPLE=${OVERHEAD_PGP_SAMPLE:-10000}

bench_db bench_overhead
bench_drop_at_exit

KEY="'\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea"
IV="'\\x0f0e0d0c0b0a09080706050403020100'::bytea"
EMAIL="'user' || lpad(g::text, 8, '0') || '@example.org'"

bench_psql >/dev/null <<SQL
CREATE EXTENSION privacy;
CREATE EXTENSION pgcrypto;
SELECT privacy.create_category('contact');
CREATE TABLE plain (id bigint, email text);
CREATE TABLE enc (id bigint, email privacy.encrypted_text);
SELECT privacy.classify('enc', 'email', 'contact');
CREATE TABLE enc_search (id bigint, email privacy.encrypted_text);
SELECT privacy.classify('enc_search', 'email', 'contact', searchable => true);
CREATE TABLE cbc (id bigint, email bytea);
CREATE TABLE pgp (id bigint, email bytea);
INSERT INTO plain SELECT g, $EMAIL FROM generate_series(1, $N) g;
INSERT INTO enc SELECT g, $EMAIL FROM generate_series(1, $N) g;
INSERT INTO enc_search SELECT g, $EMAIL FROM generate_series(1, $N) g;
INSERT INTO cbc SELECT g, encrypt_iv(convert_to($EMAIL, 'UTF8'), $KEY, $IV, 'aes-cbc')
  FROM generate_series(1, $N) g;
INSERT INTO pgp SELECT g, pgp_sym_encrypt($EMAIL, 'pw') FROM generate_series(1, $SAMPLE) g;
VACUUM ANALYZE plain, enc, enc_search, cbc, pgp;
SQL

# "<avg overhead> <min> <max> <avg plaintext bytes>" per table
ours() {
	bench_psql -c "SELECT round(avg(i.stored_bytes - i.plaintext_bytes), 1) || ' ' ||
	                      min(i.stored_bytes - i.plaintext_bytes) || ' ' || max(i.stored_bytes - i.plaintext_bytes) || ' ' ||
	                      round(avg(i.plaintext_bytes), 1)
	                 FROM $1 t, LATERAL privacy.envelope_info(t.email) i"
}
theirs() {
	bench_psql -c "SELECT round(avg(octet_length(t.email) - octet_length(p.email)), 1) || ' ' ||
	                      min(octet_length(t.email) - octet_length(p.email)) || ' ' ||
	                      max(octet_length(t.email) - octet_length(p.email)) || ' ' ||
	                      round(avg(octet_length(p.email)), 1)
	                 FROM $1 t JOIN plain p USING (id)"
}
read -r enc_avg enc_min enc_max enc_pt <<<"$(ours enc)"
read -r srch_avg srch_min srch_max srch_pt <<<"$(ours enc_search)"
read -r cbc_avg cbc_min cbc_max cbc_pt <<<"$(theirs cbc)"
read -r pgp_avg pgp_min pgp_max pgp_pt <<<"$(theirs pgp)"
if [ "$enc_pt $srch_pt $cbc_pt $pgp_pt" != "24.0 24.0 24.0 24.0" ]; then
	die "plaintexts are not 24 bytes: $enc_pt $srch_pt $cbc_pt $pgp_pt"
fi

echo "bytes added per 24-byte value, avg (min-max):"
echo "  ours                        $enc_avg ($enc_min-$enc_max)"
echo "  ours, searchable            $srch_avg ($srch_min-$srch_max)"
echo "  encrypt_iv aes-cbc          $cbc_avg ($cbc_min-$cbc_max)  (padding only: no IV, no tag stored)"
echo "  pgp_sym_encrypt             $pgp_avg ($pgp_min-$pgp_max)  ($SAMPLE rows)"

size_of() { bench_psql -c "SELECT round(pg_total_relation_size('$1')::numeric / count(*), 1) FROM $1"; }
echo "pg_total_relation_size per row (id bigint, email; no index):"
for t in plain enc enc_search cbc pgp; do printf '  %-11s %s B\n' "$t" "$(size_of "$t")"; done

figure envelope_overhead "$enc_avg" B pgp_sym_encrypt "$pgp_avg" "ours <= 48"
figure envelope_overhead_searchable "$srch_avg" B pgp_sym_encrypt "$pgp_avg"
figure envelope_overhead_vs_encrypt_iv "$enc_avg" B encrypt_iv_aes_cbc "$cbc_avg"
figure table_bytes_per_row "$(size_of enc)" B plain_table "$(size_of plain)"
