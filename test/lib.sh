# test/lib.sh — shared by test/run, test/demo and test/bench/run.
#
# Installs what is missing (as root, from Debian's archive), builds and
# installs the extension, and starts a throwaway cluster as the postgres OS
# user (or the calling user when not root) with a freshly generated master
# key, in a private temp directory with its own socket directory.

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
export PG_CONFIG=$PG_BINDIR/pg_config
PRIVACY_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Run a command as the cluster's owner.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Each package is recognised by a file the build, the demo or the suites
# really use, never by a file another package also ships (Debian puts
# pgxs.mk, pg_config and pg_regress in postgresql-client-15, so they say
# nothing about the server headers).  PRIVACY_PKG_ROOT, when set, is a
# directory to look in instead of / (test/unit/test_packages.sh builds fake
# roots with it).
#
#   privacy_packages_missing demo|test   the missing packages, one line
#   privacy_packages_found demo|test     the packages present, one line
PRIVACY_PKG_ROOT=${PRIVACY_PKG_ROOT:-}

# pkg_file PATH...: true when one of the paths exists under the root (globs allowed)
pkg_file() {
	local p f
	for p in "$@"; do
		for f in $PRIVACY_PKG_ROOT$p; do [ -e "$f" ] && return 0; done
	done
	return 1
}

# The directory of the server headers, as the build will ask pg_config for it.
pkg_includedir_server() {
	local d=""
	[ -x "$PRIVACY_PKG_ROOT$PG_CONFIG" ] && d=$("$PRIVACY_PKG_ROOT$PG_CONFIG" --includedir-server 2>/dev/null)
	echo "${d:-/usr/include/postgresql/$PG_MAJOR/server}"
}

# pkg_present PACKAGE: the test for one package
pkg_present() {
	case $1 in
	postgresql-$PG_MAJOR)		pkg_file "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" \
									"/usr/share/postgresql/$PG_MAJOR/extension/plpgsql.control" ;;
	postgresql-client-$PG_MAJOR)	pkg_file "$PG_CONFIG" && \
									pkg_file "/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/makefiles/pgxs.mk" && \
									pkg_file "/usr/lib/postgresql/$PG_MAJOR/bin/psql" ;;
	postgresql-server-dev-$PG_MAJOR) pkg_file "$(pkg_includedir_server)/postgres.h" ;;
	libsodium-dev)				pkg_file /usr/include/sodium.h && pkg_file '/usr/lib/*/libsodium.so' /usr/lib/libsodium.so ;;
	libipc-run-perl)			pkg_file /usr/share/perl5/IPC/Run.pm ;;
	postgresql-$PG_MAJOR-pgaudit) pkg_file "/usr/share/postgresql/$PG_MAJOR/extension/pgaudit.control" ;;
	make)						pkg_file /usr/bin/make ;;
	gcc)						pkg_file /usr/bin/gcc ;;
	perl)						pkg_file /usr/bin/prove ;;
	util-linux)					pkg_file /usr/sbin/runuser /sbin/runuser ;;
	chromium)					pkg_file /usr/bin/chromium ;;
	# the sanitizer runtimes of gcc 12, preloaded into the server of the
	# sanitize suite (gcc itself brings them on Debian 12; checked anyway)
	libasan8)					pkg_file '/usr/lib/*/libasan.so.8' ;;
	libubsan1)					pkg_file '/usr/lib/*/libubsan.so.1' ;;
	*)							return 1 ;;
	esac
}

# What each command needs.  pgcrypto ships in postgresql-15 on Debian 12.
pkg_needed() {
	local base="postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libsodium-dev make gcc util-linux"
	case ${1:-test} in
	demo)	echo "$base" ;;
	# TAP modules, the logging baseline of test 007 and the benchmarks, the
	# browser of test/tap/010_report_browser.pl, the sanitizer runtimes
	test)	echo "$base perl libipc-run-perl postgresql-$PG_MAJOR-pgaudit chromium libasan8 libubsan1" ;;
	*)		die "unknown package profile: $1" ;;
	esac
}

privacy_packages_missing() {
	local p missing=()
	for p in $(pkg_needed "${1:-test}"); do pkg_present "$p" || missing+=("$p"); done
	echo "${missing[@]}"
}

privacy_packages_found() {
	local p found=()
	for p in $(pkg_needed "${1:-test}"); do pkg_present "$p" && found+=("$p"); done
	echo "${found[@]}"
}

# Installed version of a Debian package, empty when not installed.
pkg_version() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }

# The server's and the headers' PG_VERSION_NUM (e.g. 150018), empty if unknown.
pg_server_version_num() {
	"$PG_BINDIR/postgres" -V 2>/dev/null | sed -n 's/^postgres (PostgreSQL) \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' |
		awk '{ printf "%d%04d\n", $1, $2 }'
}
pg_headers_version_num() {
	sed -n 's/^#define PG_VERSION_NUM \([0-9]*\)$/\1/p' "$(pkg_includedir_server)/pg_config.h" 2>/dev/null
}

# Clusters of the system's postgresql-common that are running now.
pkg_running_clusters() {
	command -v pg_lsclusters >/dev/null || return 0
	pg_lsclusters -h 2>/dev/null | awk -v v="$PG_MAJOR" '$1 == v && $4 == "online" { printf "%s/%s ", $1, $2 }'
}

# pkg_plan PACKAGE...: the arguments of apt-get install for the missing
# packages.  The headers must be those of the installed server: the same
# version when the archive still has it; otherwise the server is upgraded
# with them -- but never under a running cluster, which would go on running
# the old binaries beside new files on disk.
pkg_plan() {
	local p server_ver dev_ver running plan=""
	for p in "$@"; do
		server_ver=""
		[ "$p" = "postgresql-server-dev-$PG_MAJOR" ] && server_ver=$(pkg_version "postgresql-$PG_MAJOR")
		if [ -z "$server_ver" ]; then
			plan="$plan $p"
		elif pkg_archive_versions "$p" | grep -qxF "$server_ver"; then
			plan="$plan $p=$server_ver"
		else
			dev_ver=$(pkg_candidate "$p")
			running=$(pkg_running_clusters)
			if [ -n "$running" ]; then
				printf 'error: %s\n' "$p is only available as ${dev_ver:-an unknown version}, not as $server_ver like the installed server, and the cluster(s) ${running}run on that server: upgrading it now would leave them running old binaries beside new files. Upgrade both the Debian way (apt-get install postgresql-$PG_MAJOR $p restarts the clusters), then run this again." >&2
				return 2
			fi
			echo "note: $p is only available as ${dev_ver:-an unknown version}; postgresql-$PG_MAJOR $server_ver is upgraded with it (no cluster of it is running)" >&2
			plan="$plan postgresql-$PG_MAJOR $p"
		fi
	done
	echo "$plan"
}

# What the archive offers, one version a line; the candidate version.
pkg_archive_versions() { apt-cache madison "$1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }'; }
pkg_candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }

# privacy_install_packages demo|test: install what is missing (root), or say
# exactly what to install and stop; print what was found and installed.
privacy_install_packages() {
	local profile=${1:-test} missing found install
	missing=$(privacy_packages_missing "$profile")
	found=$(privacy_packages_found "$profile")
	say "Debian packages"
	echo "found:     ${found:-none}"
	if [ -z "$missing" ]; then
		echo "installed: none (everything was already here)"
		privacy_check_versions
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		die "missing packages: $missing (install them as root: apt-get install $missing)"
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	install=$(pkg_plan $missing) || exit 2
	echo "installing:${install}"
	# The postgresql package must not start (or create) a system cluster we
	# did not ask for: tell policy-rc.d to refuse service starts.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		PRIVACY_POLICY_RC=1
	fi
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $install >"${TMPDIR:-/tmp}/privacy-apt.log" 2>&1
	local rc=$?
	[ -n "${PRIVACY_POLICY_RC:-}" ] && rm -f /usr/sbin/policy-rc.d
	[ $rc -eq 0 ] || { tail -n 20 "${TMPDIR:-/tmp}/privacy-apt.log"; die "apt-get install failed"; }
	missing=$(privacy_packages_missing "$profile")
	[ -z "$missing" ] || die "packages still missing after apt-get: $missing"
	echo "installed:${install}"
	privacy_check_versions
}

# Say so when the server is older than the headers the extension is built
# with (Debian ships both from one source; a mismatch means one of them was
# upgraded alone).  The throwaway clusters always start from the installed
# binaries, so nothing of ours runs on a half-upgraded server.
privacy_check_versions() {
	local s h
	s=$(pg_server_version_num)
	h=$(pg_headers_version_num)
	[ -n "$s" ] && [ -n "$h" ] || return 0
	echo "server:    $(( s / 10000 )).$(( s % 10000 )), headers: $(( h / 10000 )).$(( h % 10000 ))"
	if [ "$s" -lt "$h" ]; then
		echo "note: the installed server ($(( s / 10000 )).$(( s % 10000 ))) is older than the headers ($(( h / 10000 )).$(( h % 10000 ))): upgrade postgresql-$PG_MAJOR (apt-get install postgresql-$PG_MAJOR) so that both match; the extension built against newer headers may use what the older server lacks"
	fi
}

privacy_build_install() {
	say "building and installing the extension"
	make -C "$PRIVACY_SRC" -s PG_CONFIG="$PG_CONFIG" all unit >/dev/null || die "build failed"
	local libdir
	libdir=$($PG_CONFIG --pkglibdir)
	# PRIVACY_PRIVATE_INSTALL=1 keeps a second checkout (a git worktree) from
	# replacing the installed copy another checkout's tests are using.
	if [ -z "${PRIVACY_PRIVATE_INSTALL:-}" ] && [ -w "$libdir" ] && [ -w "$($PG_CONFIG --sharedir)/extension" ]; then
		make -C "$PRIVACY_SRC" -s PG_CONFIG="$PG_CONFIG" install >/dev/null || die "install failed"
	else
		privacy_private_install
	fi
}

# Without write access to PostgreSQL's directories, install into a private
# copy: PostgreSQL finds its share and lib directories relative to its own
# binary (as "make check" does with tmp_install), so a copied bin directory
# next to linked share and lib trees runs the freshly built extension.
#   privacy_private_install [ROOT [SOURCE [MAKE ARGUMENTS...]]]
# installs what SOURCE built (default: this checkout) into ROOT.
privacy_private_install() {
	local root=${1:-${PRIVACY_PRIVATE_ROOT:-$PRIVACY_SRC/.private-install}}
	local src=${2:-$PRIVACY_SRC}
	shift $(($# < 2 ? $# : 2))
	local pgbin=/usr/lib/postgresql/$PG_MAJOR/bin pglib=/usr/lib/postgresql/$PG_MAJOR/lib
	local share=/usr/share/postgresql/$PG_MAJOR
	say "installing into the private copy $root"
	rm -rf "$root"
	mkdir -p "$root$pgbin" "$root$pglib" "$root$share"
	cp -p "$pgbin"/* "$root$pgbin/"
	local f
	for f in "$pglib"/*; do [ "$(basename "$f")" = bitcode ] || ln -s "$f" "$root$pglib/"; done
	for f in "$share"/*; do [ "$(basename "$f")" = extension ] || ln -s "$f" "$root$share/"; done
	mkdir -p "$root$share/extension"
	for f in "$share"/extension/*; do ln -s "$f" "$root$share/extension/"; done
	# our own files replace any installed copy
	rm -f "$root$share"/extension/privacy[.-]* "$root$pglib"/privacy.so
	make -C "$src" -s PG_CONFIG="$PG_CONFIG" "$@" DESTDIR="$root" install >/dev/null || die "install failed"
	chmod -R a+rX "$root"
	PG_BINDIR=$root$pgbin
}

# privacy_cluster_start [DIR]: a cluster in DIR, by default a new private
# directory that becomes PRIVACY_TMP; sets PGHOST, PGPORT, PGDATA, PGUSER.
# PRIVACY_SERVER_ENV, when set, holds VAR=value words for the server's
# environment (the sanitize suite's preloaded runtimes).
privacy_cluster_start() {
	local d=${1:-}
	if [ -z "$d" ]; then
		PRIVACY_TMP=$(mktemp -d /tmp/privacy-test.XXXXXX)
		d=$PRIVACY_TMP
	fi
	mkdir -p "$d"
	chmod 755 "$d"
	[ "$(id -u)" = 0 ] && chown postgres: "$d"
	export PGHOST=$d
	export PGPORT=$(( 20000 + RANDOM % 20000 ))
	export PGDATA=$d/data
	if [ "$(id -u)" = 0 ]; then export PGUSER=postgres; else export PGUSER=$(id -un); fi
	export PGDATABASE=postgres

	# A fresh random master key, readable only by the cluster owner.
	as_pg sh -c "umask 077; head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > '$d/master.key'"

	as_pg "$PG_BINDIR/initdb" -D "$PGDATA" -A trust -N -U "$PGUSER" --locale=C.UTF-8 -E UTF8 >"$d/initdb.log" 2>&1 \
		|| { cat "$d/initdb.log"; die "initdb failed"; }
	as_pg sh -c "cat >> '$PGDATA/postgresql.conf'" <<CONF

# added by privacy's test harness
listen_addresses = ''
unix_socket_directories = '$d'
port = $PGPORT
shared_preload_libraries = 'privacy'
privacy.master_key_command = 'cat $d/master.key'
fsync = off
max_prepared_transactions = 10
log_line_prefix = '%m [%p] %q%a '
CONF
	# shellcheck disable=SC2086
	as_pg env ${PRIVACY_SERVER_ENV:-} "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$d/server.log" -w -t 120 start >/dev/null \
		|| { cat "$d/server.log"; die "the test cluster did not start"; }
}

privacy_cluster_stop() {
	if [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
}

# Citus for the scale-out suite (issue #16).  Citus is a test dependency
# only: the runner builds it, as root, from the unmodified source beside the
# repository (../shared/citus, with its build.sh; CI has a copy of shared/
# beside its clone as well), or from PRIVACY_CITUS_DIR.  Never shipped or
# copied into the project.
#   privacy_citus_dir           where the source and build.sh are looked for
#   privacy_citus_ensure        0 when citus.so is installed (built if need
#                               be); otherwise 1 and PRIVACY_CITUS_MISSING
#                               says why, in words for the skip message
privacy_citus_dir() {
	echo "${PRIVACY_CITUS_DIR:-$(cd "$PRIVACY_SRC/.." && pwd)/shared/citus}"
}

privacy_citus_ensure() {
	local dir log
	dir=$(privacy_citus_dir)
	PRIVACY_CITUS_MISSING=
	[ -f "$($PG_CONFIG --pkglibdir)/citus.so" ] && return 0
	if [ ! -x "$dir/build.sh" ] && [ ! -f "$dir/build.sh" ]; then
		PRIVACY_CITUS_MISSING="Citus is not installed and $dir/build.sh is missing: put Citus 12.1.12's source and build.sh in ../shared/citus (or name the directory in PRIVACY_CITUS_DIR), or install citus.so for PostgreSQL $PG_MAJOR, to run the scale-out suite"
		return 1
	fi
	if [ "$(id -u)" != 0 ]; then
		PRIVACY_CITUS_MISSING="Citus is not installed and building it from $dir needs root: run the suite as root, or run $dir/build.sh as root once"
		return 1
	fi
	say "building Citus from $dir (a test dependency; 2-8 minutes)"
	log=${TMPDIR:-/tmp}/privacy-citus-build.$$.log
	if ! PG_CONFIG=$PG_CONFIG bash "$dir/build.sh" >"$log" 2>&1; then
		tail -n 30 "$log"
		PRIVACY_CITUS_MISSING="building Citus from $dir failed (see the lines above)"
		rm -f "$log"
		return 1
	fi
	tail -n 1 "$log"
	rm -f "$log"
	[ -f "$($PG_CONFIG --pkglibdir)/citus.so" ] && return 0
	PRIVACY_CITUS_MISSING="$dir/build.sh ran, but citus.so is still not in $($PG_CONFIG --pkglibdir)"
	return 1
}

# The counters of test/run (test/unit/test_runner.sh checks them on made-up
# driver output).  They add to PASSED, FAILED, SKIPPED, FAILURES, SKIPS and
# TODOS.
# count_pg_regress LOG NAME STATUS EXPECTED: the tests pg_regress or
# pg_isolation_regress reported, and a failure for a driver that exited
# non-zero or reported fewer tests than it was given (it failed before or
# between its test lines).
count_pg_regress() {
	local ok bad nbad t
	ok=$(grep -cE '^(test| ) *[^ ]+ +\.\.\. ok' "$1")
	bad=$(grep -E '^(test| ) *[^ ]+ +\.\.\. FAILED' "$1" | sed -E 's/^(test| ) *([^ ]+).*/\2/')
	nbad=$(echo "$bad" | grep -c .)
	PASSED=$((PASSED + ok))
	for t in $bad; do FAILED=$((FAILED + 1)); FAILURES+=("$2/$t"); done
	if [ $((ok + nbad)) -ne "$4" ]; then
		FAILED=$((FAILED + 1)); FAILURES+=("$2 (the driver reported $((ok + nbad)) of $4 tests)")
	elif [ "$3" -ne 0 ] && [ "$nbad" -eq 0 ]; then
		FAILED=$((FAILED + 1)); FAILURES+=("$2 (the driver exited with status $3)")
	fi
}

# count_tap OUTPUT STATUS NAME: TAP lines; "ok N # skip" is a skip, not a
# pass, and a script that skips all ("1..0 # SKIP") is one skipped test.
# "not ok N # TODO" is a known bug (test/tap/012_docs.pl marks the guides'
# examples that show what the extension does not do yet): neither a pass
# nor a failure, listed in TODOS with its reason.
count_tap() {
	local ok notok skip plan todo
	ok=$(grep -E '^ *ok [0-9]+' "$1" | grep -cviE '^ *ok [0-9]+[^#]*# *skip')
	skip=$(grep -ciE '^ *ok [0-9]+[^#]*# *skip' "$1")
	todo=$(grep -cE '^ *not ok [0-9]+[^#]*# *TODO' "$1")
	notok=$(grep -E '^ *not ok [0-9]+' "$1" | grep -cvE '^ *not ok [0-9]+[^#]*# *TODO')
	local line
	while IFS= read -r line; do
		TODOS+=("$3: $line")
	done < <(grep -hE '^ *not ok [0-9]+[^#]*# *TODO' "$1" | sed -E 's/^ *not ok [0-9]+ *-? *([^#]*[^# ]) *# *TODO *(.*)$/\1 (\2)/')
	plan=$(grep -ciE '^1\.\.0 *# *skip' "$1")
	PASSED=$((PASSED + ok))
	FAILED=$((FAILED + notok))
	SKIPPED=$((SKIPPED + skip + plan))
	[ "$notok" -gt 0 ] && FAILURES+=("$3 ($notok assertions)")
	[ $((skip + plan)) -gt 0 ] && SKIPS+=("$3: $(grep -ihE '^ *ok [0-9]+[^#]*# *skip|^1\.\.0 *# *skip' "$1" | sed -E 's/.*# *[sS][kK][iI][pP]:? *//' | sort -u | paste -sd ';' -)")
	if [ "$2" -ne 0 ] && [ "$notok" -eq 0 ]; then
		FAILED=$((FAILED + 1)); FAILURES+=("$3 (exited with status $2)")
	elif [ "$2" -eq 0 ] && [ $((ok + notok + skip + plan + todo)) -eq 0 ]; then
		FAILED=$((FAILED + 1)); FAILURES+=("$3 (printed no test line)")
	fi
}

# The sanitize suite: the extension built with AddressSanitizer and UBSan
# (gcc, the compiler pg_config names) in a copy of the tree, so that the
# ordinary build is left alone, installed into its own private root, and a
# cluster whose server has the sanitizer runtimes preloaded: PostgreSQL
# itself is not instrumented, so the runtime must be in the process before
# privacy.so is loaded.  Leak detection is off, because memory contexts
# free by the block and look like leaks.  Reports go to files in the
# cluster's directory (asan.<pid>, ubsan.<pid>) and to the server log.
# test/sanitize/asan_first.c is preloaded too: without it the runtime's
# lazy start deadlocks the server at startup (see that file).
PRIVACY_SANITIZE_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"

# privacy_sanitize_build DIR: build and install; sets PG_BINDIR.
privacy_sanitize_build() {
	local d=$1
	say "building the extension with $PRIVACY_SANITIZE_FLAGS"
	rm -rf "$d/src"
	mkdir -p "$d/src"
	cp -r "$PRIVACY_SRC/Makefile" "$PRIVACY_SRC/privacy.control" "$PRIVACY_SRC/src" "$PRIVACY_SRC/sql" "$d/src/"
	find "$d/src" \( -name '*.o' -o -name '*.bc' -o -name '*.so' \) -delete
	# with_llvm=no: no bitcode, the JIT would inline uninstrumented code
	make -C "$d/src" -s PG_CONFIG="$PG_CONFIG" with_llvm=no COPT="$PRIVACY_SANITIZE_FLAGS" all >/dev/null \
		|| die "sanitizer build failed"
	privacy_private_install "$d/install" "$d/src" with_llvm=no COPT="$PRIVACY_SANITIZE_FLAGS"
	$($PG_CONFIG --cc | awk '{ print $1 }') -shared -fPIC -O2 -Wall -Wextra -Werror \
		-o "$d/asan_first.so" "$PRIVACY_SRC/test/sanitize/asan_first.c" -ldl || die "asan_first.so failed to build"
	chmod a+rx "$d" "$d/asan_first.so"
}

# privacy_sanitize_env BUILD_DIR LOG_DIR: the server's environment, as
# VAR=value words.
privacy_sanitize_env() {
	local cc asan ubsan
	cc=$($PG_CONFIG --cc | awk '{ print $1 }')
	asan=$(readlink -f "$($cc -print-file-name=libasan.so)")
	ubsan=$(readlink -f "$($cc -print-file-name=libubsan.so)")
	[ -f "$asan" ] && [ -f "$ubsan" ] || die "the sanitizer runtimes of $cc were not found (libasan8, libubsan1)"
	echo "LD_PRELOAD=$asan:$ubsan:$1/asan_first.so" \
		"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:disable_coredump=1:log_path=$2/asan" \
		"UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$2/ubsan"
}

# count_sanitizer_reports DIR SERVER_LOG NAME: one failure per report file
# and one for a server log that mentions a sanitizer, else one pass.
count_sanitizer_reports() {
	local f found=0
	for f in "$1"/asan.* "$1"/ubsan.*; do
		[ -s "$f" ] || continue
		found=$((found + 1))
		echo "--- $f"
		head -n 60 "$f"
		FAILED=$((FAILED + 1)); FAILURES+=("$3: $(basename "$f")")
	done
	if grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$2" 2>/dev/null; then
		found=$((found + 1))
		echo "--- $2"
		grep -E -A 20 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$2" | head -n 60
		FAILED=$((FAILED + 1)); FAILURES+=("$3: a sanitizer report in the server log")
	fi
	[ "$found" -eq 0 ] && PASSED=$((PASSED + 1))
}
