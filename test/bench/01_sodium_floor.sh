#!/bin/bash
# 01_sodium_floor — what libsodium alone costs per e-mail-sized value.
#
# Compiles sodium_floor.c into PRIVACY_TMP, runs it on 1,000,000 values of 24
# bytes, prints the figures and writes them to bench-floor.env (the floor
# later benchmarks divide by; see common.sh).  Needs no cluster.
# SODIUM_FLOOR_VALUES=N overrides the number of values.
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

values=${SODIUM_FLOOR_VALUES:-1000000}
bin=$PRIVACY_TMP/sodium_floor
out=$PRIVACY_TMP/sodium_floor.out

cc -std=c99 -O2 -Wall -Wextra -Werror -o "$bin" "$PRIVACY_SRC/test/bench/sodium_floor.c" -lsodium
"$bin" "$values" >"$out"

# "<op> <best_ns> <median_ns>" -> best; other lines -> their value
get() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$out"; }
seal=$(get xchacha20poly1305_seal)
open=$(get xchacha20poly1305_open)
base=$(get baseline)
bseal=$(get baseline_seal)
bopen=$(get baseline_open)
copy=$(get memcpy)
nonce=$(get randombytes_nonce)
rng=$(get randombytes)
bytes=$(awk '$1 == "values" { print $3 }' "$out")

echo "libsodium $(get libsodium), randombytes implementation $rng; $values values of $bytes bytes"
echo "ns per value, best / median of 5:"
awk 'NF == 3 && $1 != "values" { printf "  %-24s %8s / %s\n", $1, $2, $3 }' "$out"

figure sodium_seal_per_value "$seal" ns "${base}_seal" "$bseal"
figure sodium_open_per_value "$open" ns "${base}_open" "$bopen"
figure sodium_open_vs_memcpy "$open" ns memcpy_24B "$copy"
figure sodium_nonce_share_of_seal "$nonce" ns xchacha20poly1305_seal "$seal"

cat >"$BENCH_FLOOR_FILE" <<ENV
# written by test/bench/01_sodium_floor.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); ns per value, best of 5
SODIUM_FLOOR_VALUES=$values
SODIUM_FLOOR_VALUE_BYTES=$bytes
SODIUM_SEAL_NS=$seal
SODIUM_OPEN_NS=$open
SODIUM_BASELINE=$base
SODIUM_BASELINE_SEAL_NS=$bseal
SODIUM_BASELINE_OPEN_NS=$bopen
SODIUM_NONCE_NS=$nonce
SODIUM_RANDOMBYTES=$rng
MEMCPY_NS=$copy
ENV
