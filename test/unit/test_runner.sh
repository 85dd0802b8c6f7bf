#!/bin/bash
# test_runner.sh — the counters of test/run, on made-up driver output.
#
# CI trusts the runner's last line, so each way a driver can fail without
# printing a failed test (pg_regress dying before its first test, a TAP
# script exiting early, a script skipping everything) must count.  Prints TAP.
set -u
. "$(dirname "$0")/../lib.sh"

n=0
failed=0
check() {		# check DESCRIPTION EXPECTED ACTUAL
	n=$((n + 1))
	if [ "$2" = "$3" ]; then echo "ok $n - $1"; else
		failed=$((failed + 1)); echo "not ok $n - $1"; echo "#   expected '$2', got '$3'"; fi
}
T=$(mktemp -d "${TMPDIR:-/tmp}/privacy-runner.XXXXXX")
trap 'rm -rf "$T"' EXIT
reset() { PASSED=0; FAILED=0; SKIPPED=0; FAILURES=(); SKIPS=(); TODOS=(); }
totals() { echo "$PASSED/$FAILED/$SKIPPED"; }

# pg_regress
cat > "$T/regress-ok" <<'LOG'
test keys                         ... ok          120 ms
test consent                      ... ok           80 ms
LOG
reset; count_pg_regress "$T/regress-ok" regress 0 2
check "pg_regress: two tests passed" 2/0/0 "$(totals)"
cat > "$T/regress-fail" <<'LOG'
test keys                         ... ok          120 ms
test consent                      ... FAILED       80 ms
LOG
reset; count_pg_regress "$T/regress-fail" regress 1 2
check "pg_regress: a failed test is one failure" 1/1/0 "$(totals)"
check "... named" "regress/consent" "${FAILURES[*]}"
printf 'pg_regress: could not create directory "x": Permission denied\n' > "$T/regress-dead"
reset; count_pg_regress "$T/regress-dead" regress 2 2
check "pg_regress that dies before its first test fails the run" 0/1/0 "$(totals)"
head -n 1 "$T/regress-ok" > "$T/regress-short"
reset; count_pg_regress "$T/regress-short" regress 2 2
check "pg_regress that stops after one of two tests fails the run" 1/1/0 "$(totals)"
reset; count_pg_regress "$T/regress-ok" regress 2 2
check "pg_regress exiting non-zero with every test ok fails the run" 2/1/0 "$(totals)"
cat > "$T/isolation" <<'LOG'
test consent_race                 ... ok         1200 ms
     purge_boundary               ... ok          800 ms
LOG
reset; count_pg_regress "$T/isolation" isolation 0 2
check "pg_isolation_regress lines, with and without the test prefix" 2/0/0 "$(totals)"

# TAP
printf 'ok 1 - a\nok 2 - b\n1..2\n' > "$T/tap-ok"
reset; count_tap "$T/tap-ok" 0 tap/ok
check "TAP: two passes" 2/0/0 "$(totals)"
printf 'ok 1 - a\nok 2 # skip no chromium\nok 3 # SKIP: no pgaudit\n1..3\n' > "$T/tap-skip"
reset; count_tap "$T/tap-skip" 0 tap/skip
check "TAP: skip lines are skips, not passes" 1/0/2 "$(totals)"
check "... and the reasons are kept" "tap/skip: no chromium;no pgaudit" "${SKIPS[*]}"
printf '1..0 # SKIP chromium is not installed\n' > "$T/tap-skipall"
reset; count_tap "$T/tap-skipall" 0 tap/skipall
check "TAP: a script that skips all is one skip, not nothing" 0/0/1 "$(totals)"
printf 'ok 1 - a\n' > "$T/tap-died"
reset; count_tap "$T/tap-died" 255 tap/died
check "TAP: a script that dies after a pass fails the run" 1/1/0 "$(totals)"
: > "$T/tap-silent"
reset; count_tap "$T/tap-silent" 0 tap/silent
check "TAP: a script that prints nothing and exits 0 fails the run" 0/1/0 "$(totals)"
printf 'ok 1 - a\nnot ok 2 - b\n1..2\n' > "$T/tap-fail"
reset; count_tap "$T/tap-fail" 1 tap/fail
check "TAP: a failed assertion is one failure, not two" 1/1/0 "$(totals)"

printf 'ok 1 - a\nnot ok 2 - guide.md:12: runs # TODO known bug: not logged\n1..2\n' > "$T/tap-todo"
reset; count_tap "$T/tap-todo" 0 tap/todo
check "TAP: a failing TODO test is neither a pass nor a failure" 1/0/0 "$(totals)"
check "... and is listed with its reason" "tap/todo: guide.md:12: runs (known bug: not logged)" "${TODOS[*]}"
printf 'not ok 1 - a # TODO later\n' > "$T/tap-todo-only"
reset; count_tap "$T/tap-todo-only" 0 tap/todo-only
check "TAP: a script whose only test is a TODO printed a test line" 0/0/0 "$(totals)"

# sanitizer reports
mkdir -p "$T/san-clean" "$T/san-asan" "$T/san-log"
printf 'LOG:  database system is ready\n' > "$T/san-clean/server.log"
: > "$T/san-clean/asan.123"
reset; count_sanitizer_reports "$T/san-clean" "$T/san-clean/server.log" sanitize >/dev/null
check "sanitize: no report (an empty report file included) is one pass" 1/0/0 "$(totals)"
printf '==9==ERROR: AddressSanitizer: heap-buffer-overflow\n' > "$T/san-asan/asan.9"
printf '==9==ERROR: AddressSanitizer: SEGV\n' > "$T/san-asan/asan.10"
printf 'LOG:  ready\n' > "$T/san-asan/server.log"
reset; count_sanitizer_reports "$T/san-asan" "$T/san-asan/server.log" sanitize >/dev/null
check "sanitize: each report file is a failure" 0/2/0 "$(totals)"
printf 'src/types.c:1: runtime error: load of misaligned address\n' > "$T/san-log/server.log"
reset; count_sanitizer_reports "$T/san-log" "$T/san-log/server.log" sanitize >/dev/null
check "sanitize: a report in the server log is a failure" 0/1/0 "$(totals)"

echo "1..$n"
[ "$failed" -eq 0 ]
