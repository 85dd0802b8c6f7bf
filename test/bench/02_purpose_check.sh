#!/bin/bash
# 02_purpose_check — what privacy.may_use(category) costs per call.
#
# The decryption gate and the subject report ask the purpose question once
# per value, so its per-call cost (after the first call, which fills the
# per-backend cache) is multiplied by every row read.  One statement calls it
# 1,000,000 times, as an application role holding the declared purpose:
#
#   SELECT count(*) FROM generate_series(1,1000000) g WHERE privacy.may_use('contact')
#
# The baseline is the same statement with a built-in function of the same
# shape, doing the least a purpose check must do, made to run once per row:
# current_setting(text) (the C function show_config_by_name), declared
# VOLATILE like privacy.may_use in a pg_temp wrapper, reading the very setting
# privacy.purpose:
#
#   ... WHERE pg_temp.current_setting_volatile('privacy.purpose') IS NOT NULL
#
# So both sides are one fmgr call of a C function taking one text argument
# and doing a per-backend hash lookup; the difference is what the purpose
# check does beyond reading the setting.  For context, a third statement
# calls a function that does next to nothing, the built-in octet_length(text)
# (textoctetlen) in the same kind of VOLATILE wrapper: the floor of any
# per-row function call.
#
# The baselines one might reach for first measure nothing: length('contact')
# > 0 is immutable and folded to true by the planner, a volatile SQL function
# "SELECT true" is inlined and folded too, and a STABLE function with
# constant arguments (current_setting itself) becomes a one-time filter,
# evaluated once per statement.
#
# Figures, best of 3 rounds (the rounds interleave the statements), ns:
#   purpose_check_per_row        whole statement / 1,000,000 (scan and count
#                                included), vs current_setting_volatile
#   purpose_check_per_call       the same minus the bare statement without
#                                WHERE: the call alone, vs current_setting_volatile
#   purpose_check_vs_call_floor  the call alone, vs octet_length_volatile
set -eu -o pipefail
. "$(dirname "$0")/common.sh"

N=1000000
bench_db bench_purpose_check

bench_psql >/dev/null <<'SQL'
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('support', 'legitimate_interests', '', ARRAY['contact']);
DROP ROLE IF EXISTS bench_app;
CREATE ROLE bench_app;
SELECT privacy.grant_purpose('bench_app', 'support');
SQL

# Each timing session: a per-row plan for every statement (no JIT, no
# parallel workers), the baseline function, then the application role.
setup="
SET jit = off;
SET max_parallel_workers_per_gather = 0;
CREATE FUNCTION pg_temp.current_setting_volatile(text) RETURNS text
    LANGUAGE internal VOLATILE STRICT AS 'show_config_by_name';
CREATE FUNCTION pg_temp.octet_length_volatile(text) RETURNS integer
    LANGUAGE internal VOLATILE STRICT AS 'textoctetlen';
SET ROLE bench_app;
SET privacy.purpose = 'support';
"
bare="SELECT count(*) FROM generate_series(1, $N) g"
ours="$bare WHERE privacy.may_use('contact')"
base="$bare WHERE pg_temp.current_setting_volatile('privacy.purpose') IS NOT NULL"
call="$bare WHERE pg_temp.octet_length_volatile('contact') IS NOT NULL"

# The check must say yes, or the statement would measure an error path.
allowed=$(bench_psql -c "$setup" -c "$ours" | tail -n 1)
[ "$allowed" = "$N" ] || die "privacy.may_use('contact') did not allow all $N rows (got '$allowed')"

mapfile -t ms < <(sql_time 3 "$setup" "$bare" "$ours" "$base" "$call")
[ ${#ms[@]} -eq 4 ] || die "expected 4 timings, got ${#ms[@]}"
bare_ms=${ms[0]%% *}
ours_ms=${ms[1]%% *}
base_ms=${ms[2]%% *}
call_ms=${ms[3]%% *}
echo "ms per statement of $N rows, best / median of 3:"
echo "  bare (no WHERE)           ${ms[0]/ / / }"
echo "  privacy.may_use           ${ms[1]/ / / }"
echo "  current_setting_volatile  ${ms[2]/ / / }"
echo "  octet_length_volatile     ${ms[3]/ / / }"

per_row() { awk -v ms="$1" -v n="$N" 'BEGIN { printf "%.1f", ms * 1e6 / n }'; }
per_call() { awk -v ms="$1" -v bare="$bare_ms" -v n="$N" 'BEGIN { d = (ms - bare) * 1e6 / n; printf "%.1f", d < 0 ? 0 : d }'; }

figure purpose_check_per_row "$(per_row "$ours_ms")" ns current_setting_volatile "$(per_row "$base_ms")"
figure purpose_check_per_call "$(per_call "$ours_ms")" ns current_setting_volatile "$(per_call "$base_ms")"
figure purpose_check_vs_call_floor "$(per_call "$ours_ms")" ns octet_length_volatile "$(per_call "$call_ms")"
