#!/bin/bash
# test_packages.sh — the package check of test/lib.sh, against fake roots.
#
# Each case builds a directory holding only the files some set of Debian
# packages would install, points PRIVACY_PKG_ROOT at it and asserts what the
# check reports missing.  The first case is the machine the quick start
# failed on: postgresql-15 installed (so the client package's pgxs.mk and
# pg_config too) but not its server headers.  The install plan (which
# version of the headers, whether the server may be upgraded with them) is
# checked with the apt and dpkg look-ups replaced by fixed answers.  Prints TAP.
set -u
. "$(dirname "$0")/../lib.sh"

n=0
failed=0
check() {		# check DESCRIPTION EXPECTED ACTUAL
	n=$((n + 1))
	if [ "$2" = "$3" ]; then
		echo "ok $n - $1"
	else
		failed=$((failed + 1))
		echo "not ok $n - $1"
		echo "#   expected: '$2'"
		echo "#   got:      '$3'"
	fi
}

FAKE=$(mktemp -d "${TMPDIR:-/tmp}/privacy-pkg.XXXXXX")
trap 'rm -rf "$FAKE"' EXIT

put() {			# put ROOT FILE...: create empty files (pg_config is a script)
	local root=$1 f
	shift
	for f in "$@"; do
		mkdir -p "$root$(dirname "$f")"
		: > "$root$f"
	done
}

# The files of each package that the check may look at, and decoys: files a
# package ships that an older check mistook for another package.
client() {
	local root=$1
	put "$root" /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk \
		/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
		/usr/lib/postgresql/15/bin/psql
	mkdir -p "$root/usr/lib/postgresql/15/bin"
	printf '#!/bin/sh\n[ "$1" = --includedir-server ] && echo %s\n' "${2:-/usr/include/postgresql/15/server}" \
		> "$root/usr/lib/postgresql/15/bin/pg_config"
	chmod +x "$root/usr/lib/postgresql/15/bin/pg_config"
}
server() { put "$1" /usr/lib/postgresql/15/bin/postgres /usr/share/postgresql/15/extension/plpgsql.control \
	/usr/share/postgresql/15/extension/pgcrypto.control; }
server_dev() { put "$1" "${2:-/usr/include/postgresql/15/server}/postgres.h" "${2:-/usr/include/postgresql/15/server}/pg_config.h"; }
sodium_runtime() { put "$1" /usr/lib/x86_64-linux-gnu/libsodium.so.23; }
sodium_dev() { sodium_runtime "$1"; put "$1" /usr/include/sodium.h /usr/lib/x86_64-linux-gnu/libsodium.so; }
# gcc 12 brings the sanitizer runtimes (libgcc-12-dev depends on them)
tools() { put "$1" /usr/bin/make /usr/bin/gcc /usr/bin/prove /usr/sbin/runuser; sanitizers "$1"; }
sanitizers() { put "$1" /usr/lib/x86_64-linux-gnu/libasan.so.8 /usr/lib/x86_64-linux-gnu/libubsan.so.1; }
test_only() { put "$1" /usr/share/perl5/IPC/Run.pm /usr/share/postgresql/15/extension/pgaudit.control /usr/bin/chromium; }

missing() { PRIVACY_PKG_ROOT=$1 privacy_packages_missing "$2"; }

# 1. Debian 12 with postgresql-15 installed: server and client, no headers.
r=$FAKE/server-only
server "$r"; client "$r"; sodium_runtime "$r"; tools "$r"
check "server and client installed, no headers: the headers are missing, not found through pgxs.mk" \
	"postgresql-server-dev-15 libsodium-dev" "$(missing "$r" demo)"
check "the same machine for the test suites also lacks the test packages" \
	"postgresql-server-dev-15 libsodium-dev libipc-run-perl postgresql-15-pgaudit chromium" "$(missing "$r" test)"

# 2. Everything but the server headers.
r=$FAKE/no-headers
server "$r"; client "$r"; sodium_dev "$r"; tools "$r"; test_only "$r"
check "only the server headers missing" "postgresql-server-dev-15" "$(missing "$r" test)"
check "found lists what is there" \
	"postgresql-15 postgresql-client-15 libsodium-dev make gcc util-linux" \
	"$(PRIVACY_PKG_ROOT=$r privacy_packages_found demo)"

# 3. Everything.
server_dev "$r"
check "everything installed: nothing missing for the tests" "" "$(missing "$r" test)"
check "everything installed: nothing missing for the demo" "" "$(missing "$r" demo)"

# 4. The demo never asks for the browser, the TAP modules or pgaudit.
r=$FAKE/demo
server "$r"; client "$r"; server_dev "$r"; sodium_dev "$r"; tools "$r"
check "the demo needs no browser, TAP modules or pgaudit" "" "$(missing "$r" demo)"
check "the tests do" "libipc-run-perl postgresql-15-pgaudit chromium" "$(missing "$r" test)"

# 5. The headers are looked for where pg_config says they are.
r=$FAKE/elsewhere
server "$r"; client "$r" /opt/pg/include/server; sodium_dev "$r"; tools "$r"
server_dev "$r"		# in the Debian place, which pg_config does not name
check "headers in a place pg_config does not name do not count" "postgresql-server-dev-15" "$(missing "$r" demo)"
server_dev "$r" /opt/pg/include/server
check "headers where pg_config --includedir-server points count" "" "$(missing "$r" demo)"

# 6. A header without the library to link (libsodium23 alone ships no .so link).
r=$FAKE/sodium-half
server "$r"; client "$r"; server_dev "$r"; tools "$r"
put "$r" /usr/include/sodium.h
check "sodium.h without libsodium.so: libsodium-dev missing" "libsodium-dev" "$(missing "$r" demo)"

# 7. The sanitize suite's runtimes: gcc's link-time files do not count.
r=$FAKE/no-sanitizers
server "$r"; client "$r"; server_dev "$r"; sodium_dev "$r"; test_only "$r"
put "$r" /usr/bin/make /usr/bin/gcc /usr/bin/prove /usr/sbin/runuser \
	/usr/lib/gcc/x86_64-linux-gnu/12/libasan.so /usr/lib/gcc/x86_64-linux-gnu/12/libubsan.so
check "without the sanitizer runtimes the tests lack them" "libasan8 libubsan1" "$(missing "$r" test)"
check "the demo does not need them" "" "$(missing "$r" demo)"

# 8. A bare machine needs everything.
check "an empty root needs every package of the demo" \
	"postgresql-15 postgresql-client-15 postgresql-server-dev-15 libsodium-dev make gcc util-linux" \
	"$(missing "$FAKE/nothing" demo)"

# The install plan, with fixed answers from dpkg and apt.
SERVER_VER=""; ARCHIVE=""; CANDIDATE=""; RUNNING=""
pkg_version() { [ "$1" = postgresql-15 ] && echo "$SERVER_VER"; }
pkg_archive_versions() { printf '%s\n' $ARCHIVE; }
pkg_candidate() { echo "$CANDIDATE"; }
pkg_running_clusters() { echo "$RUNNING"; }
plan() { pkg_plan "$@" 2>/dev/null; }

SERVER_VER=15.18-0+deb12u1; ARCHIVE="15.20-0+deb12u1 15.18-0+deb12u1"; CANDIDATE=15.20-0+deb12u1
check "headers of the installed server's version when the archive has it" \
	" postgresql-server-dev-15=15.18-0+deb12u1 libsodium-dev" "$(plan postgresql-server-dev-15 libsodium-dev)"
ARCHIVE="15.20-0+deb12u1"
check "only newer headers and no cluster running: the server is upgraded with them" \
	" postgresql-15 postgresql-server-dev-15" "$(plan postgresql-server-dev-15)"
note=$(pkg_plan postgresql-server-dev-15 2>&1 >/dev/null)
case $note in *"upgraded with it"*) ok=yes ;; *) ok=no ;; esac
check "... and says so" yes "$ok"
RUNNING="15/main "
out=$(pkg_plan postgresql-server-dev-15 2>&1); status=$?
check "only newer headers and a cluster running: nothing is installed" 2 "$status"
case $out in *"15/main"*"apt-get install postgresql-15 postgresql-server-dev-15"*) ok=yes ;; *) ok=no ;; esac
check "... and the message names the cluster and the command" yes "$ok"
SERVER_VER=""
check "no server installed yet: plain install of both" " postgresql-15 postgresql-server-dev-15" \
	"$(plan postgresql-15 postgresql-server-dev-15)"

echo "1..$n"
[ "$failed" -eq 0 ]
