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

privacy_packages_missing() {
	local missing=()
	[ -x "$PG_BINDIR/postgres" ] || missing+=(postgresql-$PG_MAJOR)
	[ -x "$PG_CONFIG" ] && [ -f "$($PG_CONFIG --pgxs 2>/dev/null)" ] || missing+=(postgresql-server-dev-$PG_MAJOR)
	[ -f /usr/include/sodium.h ] || missing+=(libsodium-dev)
	perl -MIPC::Run -e1 2>/dev/null || missing+=(libipc-run-perl)
	[ -d /usr/share/postgresql/$PG_MAJOR/extension ] && \
		[ -f /usr/share/postgresql/$PG_MAJOR/extension/pgcrypto.control ] || missing+=(postgresql-contrib)
	[ -f /usr/share/postgresql/$PG_MAJOR/extension/pgaudit.control ] || missing+=(postgresql-$PG_MAJOR-pgaudit)
	command -v make >/dev/null || missing+=(make)
	command -v gcc >/dev/null || missing+=(gcc)
	command -v prove >/dev/null || missing+=(perl)
	command -v runuser >/dev/null || missing+=(util-linux)
	# the browser test of the subject report's HTML page (test/tap/010_report_browser.pl)
	command -v chromium >/dev/null || missing+=(chromium)
	echo "${missing[@]}"
}

privacy_install_packages() {
	local missing
	missing=$(privacy_packages_missing)
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		die "missing packages: $missing (install them as root: apt-get install $missing)"
	fi
	say "installing Debian packages: $missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# The postgresql package must not start (or create) a system cluster we
	# did not ask for: tell policy-rc.d to refuse service starts.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		PRIVACY_POLICY_RC=1
	fi
	apt-get install -y -q --no-install-recommends $missing >/dev/null
	[ -n "${PRIVACY_POLICY_RC:-}" ] && rm -f /usr/sbin/policy-rc.d
	missing=$(privacy_packages_missing)
	[ -z "$missing" ] || die "packages still missing after apt-get: $missing"
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
privacy_private_install() {
	local root=${PRIVACY_PRIVATE_ROOT:-$PRIVACY_SRC/.private-install}
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
	make -C "$PRIVACY_SRC" -s PG_CONFIG="$PG_CONFIG" DESTDIR="$root" install >/dev/null || die "install failed"
	chmod -R a+rX "$root"
	PG_BINDIR=$root$pgbin
}

# privacy_cluster_start: sets PRIVACY_TMP, PGHOST, PGPORT, PGDATA, PGUSER.
privacy_cluster_start() {
	PRIVACY_TMP=$(mktemp -d /tmp/privacy-test.XXXXXX)
	chmod 755 "$PRIVACY_TMP"
	[ "$(id -u)" = 0 ] && chown postgres: "$PRIVACY_TMP"
	export PGHOST=$PRIVACY_TMP
	export PGPORT=$(( 20000 + RANDOM % 20000 ))
	export PGDATA=$PRIVACY_TMP/data
	if [ "$(id -u)" = 0 ]; then export PGUSER=postgres; else export PGUSER=$(id -un); fi
	export PGDATABASE=postgres

	# A fresh random master key, readable only by the cluster owner.
	as_pg sh -c "umask 077; head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > '$PRIVACY_TMP/master.key'"

	as_pg "$PG_BINDIR/initdb" -D "$PGDATA" -A trust -N -U "$PGUSER" --locale=C.UTF-8 -E UTF8 >"$PRIVACY_TMP/initdb.log" 2>&1 \
		|| { cat "$PRIVACY_TMP/initdb.log"; die "initdb failed"; }
	as_pg sh -c "cat >> '$PGDATA/postgresql.conf'" <<CONF

# added by privacy's test harness
listen_addresses = ''
unix_socket_directories = '$PRIVACY_TMP'
port = $PGPORT
shared_preload_libraries = 'privacy'
privacy.master_key_command = 'cat $PRIVACY_TMP/master.key'
fsync = off
max_prepared_transactions = 10
log_line_prefix = '%m [%p] %q%a '
CONF
	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PRIVACY_TMP/server.log" -w -t 60 start >/dev/null \
		|| { cat "$PRIVACY_TMP/server.log"; die "the test cluster did not start"; }
}

privacy_cluster_stop() {
	if [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
}
