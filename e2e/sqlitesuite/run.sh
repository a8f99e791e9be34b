#!/usr/bin/env bash
# SQLite's own TCL test suite, run twice: once in a plain directory and once
# in a litefs mount where test.db is a replicated database. It fails when a
# test case fails through the mount but not in the plain directory. See
# README.md next to it. Entry point: `make sqlite-suite`.
#
# Environment (all optional):
#   LITEFS_BIN                  litefs binary (default <repo>/bin/litefs)
#   LITEFS_SQLITE_SUITE_CACHE   where the built testfixture lives
#                               (default ~/.cache/litefs-sqlite-suite)
#   LITEFS_SQLITE_SUITE_TESTS   test files to run (names or globs under test/,
#                               space-separated; default: the set below)
#   LITEFS_SQLITE_SUITE_TIMEOUT seconds one test file may take (default 300)
#   LITEFS_SQLITE_SUITE_PASSTHROUGH  fuse.passthrough for the mount (default true)
#   LITEFS_SQLITE_SUITE_SYNC_INTERVAL  the replica's sync-interval (default 1s)
#   LITEFS_SQLITE_SUITE_KEEP=1  keep the work directory (logs, both test dirs)
set -uo pipefail

self=$(readlink -f "$0")
repo=$(cd "$(dirname "$self")/../.." && pwd)

# The default set: the files whose subject is the file system underneath
# (WAL and its shm, locking, mmap, pager and journals, shared cache, vacuum,
# backup, savepoints). Fault-injection files (*fault*, *malloc*, *ioerr*,
# shared_err) rerun the same I/O hundreds of times under simulated errors of
# SQLite's own making and would triple the time; name them in
# LITEFS_SQLITE_SUITE_TESTS to run them.
default_tests="wal*.test lock*.test mmap*.test pager*.test journal*.test
  shared*.test vacuum*.test backup*.test savepoint*.test
  exclusive*.test nolock.test unixexcl.test incrvacuum*.test atomic*.test
  crash.test crash2.test nockpt.test rdonly.test sync.test sync2.test
  tempdb.test hook.test trans.test
  wal:savepoint.test wal:savepoint2.test wal:savepoint6.test wal:trans.test wal:avtrans.test"
# PERM:FILE runs FILE under permutations.test's PERM (wal: journal_mode=WAL
# from the start, so test.db is replicated all along).
# walcrash3 (21,000 simulated crashes, 3 min plain, 4-5 through the mount)
# and walthread (threads run for fixed times: 2.5 min either way) are left
# out for time; walcrash, walcrash2, walcrash4 and walshared stay.
excluded='fault|malloc|ioerr|shared_err|^walcrash3|^walthread'

die() { echo "sqlite-suite: $*" >&2; exit 2; }
say() { echo "sqlite-suite: $*" >&2; }

# ---------------------------------------------------------------- one file
# "__one DIR TESTFIXTURE TESTSRC TIMEOUT FILE": run one test file with DIR as
# the working directory (tester.tcl then works in DIR/testdir), log it to
# DIR.logs/FILE.log and append to DIR.results "file FILE STATUS TESTS ERRORS
# SECONDS" and one "fail FILE CASE" per failing case. The plain side runs it
# directly; the mount side through `litefs mount -exec`, so it starts once
# the daemon is ready.
if [ "${1:-}" = __one ]; then
	dir=$2 tf=$3 testsrc=$4 timeout=$5 t=$6
	results=$dir.results
	mkdir -p "$dir.logs" "$dir/testdir"
	log=$dir.logs/$t.log
	start=$(date +%s)
	# timeout makes its own process group and kills all of it (tests start
	# child testfixtures); a TERM or INT here is passed on.
	args=("$testsrc/$t")
	case $t in *:*) args=("$testsrc/permutations.test" "${t%%:*}" "${t#*:}") ;; esac
	(cd "$dir" && exec timeout -k 10 "$timeout" "$tf" "${args[@]}") >"$log" 2>&1 </dev/null &
	child=$!
	trap 'kill -TERM $child 2>/dev/null; wait $child; exit 143' TERM INT
	wait $child
	rc=$?
	secs=$(($(date +%s) - start))
	summary=$(grep -aE '^[0-9]+ errors out of [0-9]+ tests' "$log" | tail -1)
	if [ -n "$summary" ]; then
		read -r nerr _ _ _ ntest _ <<<"$summary"
		status=ok
		[ "$nerr" -gt 0 ] && status=failed
		grep -a '^!Failures on these tests:' "$log" | tail -1 |
			sed 's/^!Failures on these tests://' | tr ' ' '\n' | sed '/^$/d' |
			sort -u | sed "s|^|fail $t |" >>"$results"
	else
		# A Tcl error, a crash or the timeout: the file as a whole fails.
		ntest=0 nerr=1 status="aborted(rc=$rc)"
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="timeout(${timeout}s)"; fi
		echo "fail $t <$status>" >>"$results"
	fi
	echo "file $t $status $ntest $nerr $secs" >>"$results"
	printf '  %-22s %-15s %6s tests %4s failed %4ss' "$t" "$status" "$ntest" "$nerr" "$secs"
	exit 0
fi

# ---------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "needs root (litefs mounts FUSE directly)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"
litefs=${LITEFS_BIN:-$repo/bin/litefs}
[ -x "$litefs" ] || die "$litefs not built (make build)"
cache=${LITEFS_SQLITE_SUITE_CACHE:-$HOME/.cache/litefs-sqlite-suite}
timeout=${LITEFS_SQLITE_SUITE_TIMEOUT:-300}
passthrough=${LITEFS_SQLITE_SUITE_PASSTHROUGH:-true}
sync_interval=${LITEFS_SQLITE_SUITE_SYNC_INTERVAL:-1s}

# ---------------------------------------------------------------- testfixture
# Built once per version of the installed libsqlite3, from the Debian source
# package of that exact version (Debian's patches applied, Debian's -D
# feature flags), and kept under $cache/<source>-<version>/.
src_pkg=$(dpkg-query -W -f='${source:Package}' libsqlite3-0 2>/dev/null) || die "libsqlite3-0 is not installed"
src_ver=$(dpkg-query -W -f='${source:Version}' libsqlite3-0)
up_ver=${src_ver#*:}
up_ver=${up_ver%-*}
build_root=$cache/$src_pkg-$src_ver
tf=$build_root/build/testfixture
testsrc=$build_root/$src_pkg-$up_ver/test

# have_deb_src: apt knows a source package for this version.
have_deb_src() { apt-get source --print-uris -qq "$src_pkg=$src_ver" >/dev/null 2>&1; }

# add_deb_src mirrors every enabled Debian "deb" source as "deb-src", in
# one file of its own (deb822 entries and one-line entries alike).
add_deb_src() {
	local out=/etc/apt/sources.list.d/litefs-sqlite-suite-src f
	say "no deb-src for $src_pkg $src_ver: adding $out.sources/.list"
	: >"$out.sources.tmp"
	: >"$out.list.tmp"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && [ "$f" != "$out.sources" ] && grep -q debian "$f" || continue
		sed -e 's/^Types:.*/Types: deb-src/' "$f" >>"$out.sources.tmp"
		echo >>"$out.sources.tmp"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] && [ "$f" != "$out.list" ] || continue
		sed -n '/debian/s/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$out.list.tmp"
	done
	for f in "$out.sources" "$out.list"; do
		if [ -s "$f.tmp" ]; then mv "$f.tmp" "$f"; else rm -f "$f.tmp"; fi
	done
	apt-get update -qq || die "apt-get update failed"
}

build_testfixture() {
	local tcl_dir multiarch opts
	multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
	tcl_dir=/usr/lib/$multiarch/tcl8.6
	local need=()
	[ -f "$tcl_dir/tclConfig.sh" ] || need+=(tcl-dev)
	command -v tclsh >/dev/null || need+=(tcl)
	command -v gcc >/dev/null || need+=(gcc libc6-dev)
	command -v make >/dev/null || need+=(make)
	command -v dpkg-source >/dev/null || need+=(dpkg-dev)
	command -v xz >/dev/null || need+=(xz-utils)
	[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
	if [ ${#need[@]} -gt 0 ]; then
		say "installing ${need[*]}"
		apt-get install -y -qq "${need[@]}" >/dev/null ||
			{ apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; } ||
			die "apt-get install ${need[*]} failed"
	fi
	have_deb_src || add_deb_src
	have_deb_src || die "apt has no source package $src_pkg=$src_ver even with deb-src"

	rm -rf "$build_root"
	mkdir -p "$build_root/build"
	say "fetching the source package $src_pkg $src_ver into $build_root"
	(cd "$build_root" && apt-get source -qq "$src_pkg=$src_ver" >source.log 2>&1) ||
		die "apt-get source failed: see $build_root/source.log"
	[ -f "$testsrc/tester.tcl" ] || die "no test/tester.tcl in the source package"
	# Debian's feature flags, as debian/rules gives them to the library.
	opts=$(grep -oE -- '-DSQLITE_[A-Z0-9_]+(=[0-9]+)?' "$build_root/$src_pkg-$up_ver/debian/rules" | sort -u | tr '\n' ' ')
	say "building testfixture (OPTS: $opts)"
	(cd "$build_root/build" &&
		"../$src_pkg-$up_ver/configure" --with-tcl="$tcl_dir" --enable-threadsafe \
			--enable-load-extension --enable-fts4 --enable-fts5 >configure.log 2>&1 &&
		make -j"$(nproc)" testfixture OPTS="$opts" >make.log 2>&1) ||
		die "testfixture build failed: see $build_root/build/configure.log and make.log"
	touch "$build_root/build/.complete"
}

if [ -x "$tf" ] && [ -f "$build_root/build/.complete" ]; then
	say "reusing $tf"
else
	start=$(date +%s)
	build_testfixture
	say "built $tf in $(($(date +%s) - start))s"
fi

# ---------------------------------------------------------------- test list
tests=()
for pat in ${LITEFS_SQLITE_SUITE_TESTS:-$default_tests}; do
	perm=
	case $pat in *:*) perm=${pat%%:*}: pat=${pat#*:} ;; esac
	for f in "$testsrc"/$pat; do
		[ -f "$f" ] || continue
		t=${f##*/}
		[ -n "${LITEFS_SQLITE_SUITE_TESTS:-}" ] || ! [[ $t =~ $excluded ]] || continue
		tests+=("$perm$t")
	done
done
mapfile -t tests < <(printf '%s\n' "${tests[@]}" | sort -u)
[ ${#tests[@]} -gt 0 ] || die "no test files match"

# ---------------------------------------------------------------- work dir
work=$(mktemp -d /tmp/litefs-sqlite-suite.XXXXXX)
fusedir=$work/mount/testdir
daemon_pid= side_pid=
cleanup() {
	local rc=$? pid
	for pid in $side_pid $daemon_pid; do
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if grep -qs " $fusedir " /proc/self/mountinfo; then
		umount "$fusedir" 2>/dev/null || umount -l "$fusedir" 2>/dev/null
	fi
	# The reports of the last run stay in $cache/last-run either way.
	rm -rf "$cache/last-run"
	mkdir -p "$cache/last-run"
	(cd "$work" && cp -r litefs.toml ./*.results ./*.fails ./*.logs mount-only* plain-only litefs-errors \
		"$cache/last-run/" 2>/dev/null)
	if [ "${LITEFS_SQLITE_SUITE_KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
		say "work directory kept: $work"
	elif ! grep -qs " $fusedir " /proc/self/mountinfo; then
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/plain/testdir" "$work/mount" "$work/mount.logs" "$work/data" "$work/replica"
cat >"$work/litefs.toml" <<EOF
shutdown-timeout = "10s"
[fuse]
dir = "$fusedir"
passthrough = $passthrough
[data]
dir = "$work/data"
[http]
addr = "off"
[[dbs]]
path = "$fusedir/test.db"
[dbs.replica]
url = "file://$work/replica"
sync-interval = "$sync_interval"
EOF

# empty DIR: remove everything in DIR, dot files included.
empty() { find "$1" -mindepth 1 -delete 2>/dev/null; }

say "testfixture $tf ($src_pkg $src_ver), ${#tests[@]} test files, ${timeout}s each at most"
say "work directory $work"
t0=$(date +%s)
say "plain: $work/plain/testdir"
for t in "${tests[@]}"; do
	empty "$work/plain/testdir"
	"$self" __one "$work/plain" "$tf" "$testsrc" "$timeout" "$t" &
	side_pid=$!
	wait "$side_pid"
	side_pid=
	echo
done
t1=$(date +%s)
say "plain side: $((t1 - t0))s"

# Through the mount each file gets a fresh daemon, data dir and replica:
# most files take test.db out of WAL mode at some point, and replication
# then stops until a restart. Each line says whether it did.
say "mount: $fusedir (litefs, passthrough=$passthrough, test.db replicated to $work/replica)"
: >"$work/litefs-errors"
daemon_fail=0
for t in "${tests[@]}"; do
	empty "$work/data"
	empty "$work/replica"
	dlog=$work/mount.logs/$t.litefs.log
	timeout -k 20 $((timeout + 60)) "$litefs" mount -config "$work/litefs.toml" -log-level warn \
		-exec "$(printf '%q ' "$self" __one "$work/mount" "$tf" "$testsrc" "$timeout" "$t")" \
		2>"$dlog" &
	daemon_pid=$!
	wait "$daemon_pid"
	drc=$?
	daemon_pid=
	# What litefs made of it: how many LTX files reached the replica, and
	# whether the test took test.db out of WAL mode (replication stops).
	printf '  replica: %s ltx' "$(find "$work/replica" -name '*.ltx' | wc -l)"
	if grep 'msg="replication stopped"' "$dlog" | grep -q 'left WAL mode'; then
		printf ', then left WAL mode'
	elif grep -q 'msg="replication stopped"' "$dlog"; then
		printf ', then replication STOPPED (see below)'
	fi

	if ! grep -q "^file $t " "$work/mount.results" 2>/dev/null; then
		printf '  (litefs did not run the file)'
		echo "fail $t <litefs mount exited $drc before running it>" >>"$work/mount.results"
		echo "file $t aborted 0 1 0" >>"$work/mount.results"
	fi
	if [ "$drc" != 0 ]; then
		printf '  litefs exited %s' "$drc"
		daemon_fail=1
	fi
	echo
	# Errors litefs logged, but not the expected one: the test left WAL mode.
	grep 'level=ERROR' "$dlog" | grep -v 'left WAL mode' | sed "s|^|$t: |" >>"$work/litefs-errors"
done
t2=$(date +%s)
say "mount side: $((t2 - t1))s"

# ---------------------------------------------------------------- compare
fails() { grep '^fail ' "$1" | cut -d' ' -f2- | sort -u; }
count() { awk -v k="$2" '$1=="file"{s+=$k} END{print s+0}' "$1"; }
fails "$work/plain.results" >"$work/plain.fails"
fails "$work/mount.results" >"$work/mount.fails"
comm -13 "$work/plain.fails" "$work/mount.fails" >"$work/mount-only.all"
# Known divergences (by design, see the file) are reported, not failed on.
known=$(dirname "$self")/known-divergences
grep -v '^#' "$known" 2>/dev/null | awk 'NF>=2{print $1, $2}' | sort -u >"$work/known"
comm -12 "$work/mount-only.all" "$work/known" >"$work/mount-only.known"
comm -23 "$work/mount-only.all" "$work/known" >"$work/mount-only"
comm -23 "$work/plain.fails" "$work/mount.fails" >"$work/plain-only"

echo
printf '%-8s %6s %8s %8s\n' side files tests failed
printf '%-8s %6s %8s %8s\n' plain "${#tests[@]}" "$(count "$work/plain.results" 4)" "$(wc -l <"$work/plain.fails")"
printf '%-8s %6s %8s %8s\n' mount "${#tests[@]}" "$(count "$work/mount.results" 4)" "$(wc -l <"$work/mount.fails")"
if [ -s "$work/plain.fails" ]; then
	echo "failing in both or in the plain directory only (not litefs's):"
	sed 's/^/  /' "$work/plain.fails"
fi
if [ -s "$work/litefs-errors" ]; then
	echo "litefs logged errors other than leaving WAL mode (see $cache/last-run/mount.logs/*.litefs.log):"
	cut -c1-300 "$work/litefs-errors" | sed 's/^/  /'
fi
if [ -s "$work/mount-only.known" ]; then
	echo "failing only through the mount, known and by design (see $known):"
	while read -r t c; do
		echo "  $t $c: $(awk -v t="$t" -v c="$c" '$1==t && $2==c {$1=$2=""; sub(/^ +/, ""); print}' "$known")"
		grep -aF "! $c " "$work/mount.logs/$t.log" 2>/dev/null | head -4 | sed 's/^/      /'
	done <"$work/mount-only.known"
fi
if [ -s "$work/mount-only" ]; then
	echo "FAIL: failing only through the litefs mount:"
	while read -r t c; do
		echo "  $t $c"
		# The test's own report: "! case expected: [...]" and "! case got: [...]".
		grep -aF "! $c " "$work/mount.logs/$t.log" 2>/dev/null | head -4 | sed 's/^/      /'
	done <"$work/mount-only"
	echo "logs: $cache/last-run/plain.logs and mount.logs"
	LITEFS_SQLITE_SUITE_KEEP=1
	exit 1
fi
[ "$daemon_fail" = 0 ] || { echo "FAIL: litefs mount exited with an error (see the lines above)"; exit 1; }
echo "ok: no test fails only through the mount ($((t2 - t0))s)"
