#!/bin/sh
# tests/fuzz/replay.sh - replays the committed fuzz corpora and crashers
# through the fuzz harnesses, built with the ordinary C compiler (no clang,
# no libFuzzer: tests/fuzz/replay.c supplies main).  TAP output:
#
#   ok N - <harness>: replayed K inputs        one per harness (its corpus)
#   ok N - crasher <harness>/<file>            one per saved crasher, each in
#                                              its own process, with a time
#                                              and memory limit
#   1..N
#
# Crashers listed in tests/fuzz/crashers/KNOWN are open bugs: when they still
# fail, their lines carry "# TODO" (the suite does not fail); when they pass,
# "# SKIP" says so (the bug is fixed, or this compiler's sanitizers do not
# see it) and the KNOWN line may go.  Every other crasher must pass: it is
# the regression test of a fixed bug.
#
# With ASan + UBSan when ${CC:-cc} supports them (a trial compile and run
# decides; CKPTFS_REPLAY_SAN=0 turns them off).  Sources are found under
# $CKPTFS_SRCDIR (default: the repository root above this script), config.h
# in $CKPTFS_BUILDDIR (default: the source tree; an empty one is used when
# configure has not run).  Skips (1..0 # SKIP) without a C compiler or the
# jansson / libzstd development files.
srcdir=${CKPTFS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${CKPTFS_BUILDDIR:-$srcdir}
cc=${CC:-cc}
fz=$srcdir/tests/fuzz
harnesses="pickle item metadata safetensors mapping dir"

skip() {
	echo "1..0 # SKIP $*"
	exit 0
}

set -- $cc
command -v "$1" >/dev/null 2>&1 || skip "no C compiler ($cc)"
[ -f "$fz/replay.c" ] || skip "no fuzz sources under $fz"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckptfs-replay.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists jansson libzstd libxxhash 2>/dev/null; then
	depcflags=$(pkg-config --cflags jansson libzstd libxxhash)
	deplibs=$(pkg-config --libs jansson libzstd libxxhash)
else
	depcflags= deplibs="-ljansson -lzstd -lxxhash"
fi
printf '#include <jansson.h>\n#include <zstd.h>\nint main(void){return json_integer(1)==0||ZSTD_versionNumber()==0;}\n' >"$tmp/t.c"
$cc $depcflags "$tmp/t.c" $deplibs -o "$tmp/t" >/dev/null 2>&1 || skip "jansson or libzstd development files missing"

# sanitizers when the compiler has them and their runtime works here
san=
if [ "${CKPTFS_REPLAY_SAN:-1}" != 0 ]; then
	printf '#include <stdlib.h>\nint main(void){char *p=malloc(4);p[0]=1;int r=p[0]-1;free(p);return r;}\n' >"$tmp/s.c"
	if $cc -fsanitize=address,undefined "$tmp/s.c" -o "$tmp/s" >/dev/null 2>&1 && "$tmp/s" >/dev/null 2>&1; then
		san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
	fi
fi
inc="-I$tmp/inc -I$srcdir/src"
mkdir -p "$tmp/inc" "$tmp/obj"
if [ -f "$builddir/config.h" ]; then
	inc="-I$builddir $inc"
else
	: >"$tmp/inc/config.h"
fi
cflags="-std=gnu11 -g -O1 $san $inc $depcflags -DCKPTFS_PKGDATADIR=\"$srcdir\" -DCKPTFS_FUZZ_DATA=\"$fz/data\""

# the engine library, as Makefile.am lists it; compiled two at a time
srcs=$(awk '/^libckptfs_la_SOURCES[ \t]*=/ { f = 1 }
	f { for (i = 1; i <= NF; i++) if ($i ~ /\.c$/) print $i; if ($0 !~ /\\$/) f = 0 }' \
	"$srcdir/Makefile.am")
objs= i=0
for f in $srcs; do
	o="$tmp/obj/$(basename "$f" .c).o"
	objs="$objs $o"
	( $cc $cflags -c "$srcdir/$f" -o "$o" 2>"$o.err" || echo "$f" >>"$tmp/failed" ) &
	i=$((i + 1))
	if [ $((i % 2)) -eq 0 ]; then wait; fi
done
wait

n=0
fail=0
ok() {  # ok STATUS DESCRIPTION [DIRECTIVE]
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2${3:+ # $3}"
	else
		echo "not ok $n - $2${3:+ # $3}"
		case $3 in TODO*) ;; *) fail=1 ;; esac
	fi
}
comment() { sed 's/^/# /' "$@" | head -n 40; }

if [ -s "$tmp/failed" ]; then
	for f in $(cat "$tmp/failed"); do
		comment "$tmp/obj/$(basename "$f" .c).o.err"
	done
	for h in $harnesses; do
		ok 1 "$h: engine library does not compile with $cc ($(tr '\n' ' ' <"$tmp/failed"))"
	done
	echo "1..$n"
	exit 1
fi

if [ -n "$san" ]; then echo "# sanitizers: $san"; elif [ "${CKPTFS_REPLAY_SAN:-1}" = 0 ]; then echo "# sanitizers: off (CKPTFS_REPLAY_SAN=0)"; else echo "# sanitizers: none ($cc has no working ASan/UBSan here)"; fi
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:hard_rss_limit_mb=2048}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout -k 5"

for h in $harnesses; do
	bin=$tmp/replay-$h
	if ! $cc $cflags "$fz/fuzz-$h.c" "$fz/replay.c" $objs $deplibs -lpthread -o "$bin" 2>"$tmp/link.err"; then
		comment "$tmp/link.err"
		ok 1 "$h: harness does not build"
		continue
	fi
	if [ -d "$fz/corpus/$h" ]; then
		$limit ${limit:+120} "$bin" "$fz/corpus/$h" >"$tmp/out" 2>"$tmp/err"
		rc=$?
		k=$(sed -n 's/^replayed \([0-9]*\) inputs$/\1/p' "$tmp/out")
		[ $rc -eq 0 ] || comment "$tmp/err"
		ok $rc "$h: replayed ${k:-0} inputs"
	else
		ok 0 "$h: no corpus" "SKIP tests/fuzz/corpus/$h is missing"
	fi
	# crashers: one process each, bounded in time and (without ASan) memory
	[ -d "$fz/crashers/$h" ] || continue
	for c in "$fz/crashers/$h"/*; do
		[ -f "$c" ] || continue
		case $c in *.md|*.txt|*README*) continue ;; esac
		rel=$h/$(basename "$c")
		todo=$(awk -v k="$rel" '$1 == k { $1 = ""; sub(/^ +/, ""); print; exit }' \
			"$fz/crashers/KNOWN" 2>/dev/null)
		if [ -n "$san" ]; then
			$limit ${limit:+30} "$bin" "$c" >/dev/null 2>"$tmp/err"
		else
			( ulimit -v 2097152 2>/dev/null; $limit ${limit:+30} "$bin" "$c" ) >/dev/null 2>"$tmp/err"
		fi
		rc=$?
		if [ $rc -ne 0 ]; then
			# the sanitizer's verdict (or the last lines) rather than the whole report
			grep -E 'runtime error|^SUMMARY|ERROR: ' "$tmp/err" | head -n 3 >"$tmp/why"
			[ -s "$tmp/why" ] || tail -n 3 "$tmp/err" >"$tmp/why"
			if [ -n "$todo" ]; then comment "$tmp/why"; else comment "$tmp/err"; fi
		fi
		if [ -n "$todo" ] && [ $rc -eq 0 ]; then
			# an XPASS would fail the suite; the bug may be fixed, or this
			# compiler's sanitizers may not see it (gcc does not flag NULL + 0)
			ok 0 "crasher $rel (open bug)" "SKIP passes with $cc: if the bug is fixed, remove it from crashers/KNOWN"
		else
			ok $rc "crasher $rel${todo:+ (open bug)}" "${todo:+TODO $todo}"
		fi
	done
done
echo "1..$n"
exit $fail
