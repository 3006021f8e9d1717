#!/bin/sh
# build.sh OUTDIR - builds the libFuzzer harnesses (every tests/fuzz/fuzz-*.c:
# fuzz-pickle, fuzz-item, fuzz-metadata, fuzz-safetensors, fuzz-mapping) with clang,
# libFuzzer, ASan and UBSan into OUTDIR.
#
#   CC              the clang to use (default: clang)
#   CKPTFS_SRCDIR   source tree (default: the repository root above this script)
#   CKPTFS_BUILDDIR where config.h is (default: the source tree; an empty
#                   config.h is used when there is none)
#   FUZZ_SAN        sanitizer flags (default -fsanitize=fuzzer,address,undefined)
#   FUZZ_CFLAGS     extra compiler flags
#
# The engine library's sources are the .c files of libckptfs_la_SOURCES in
# Makefile.am, compiled once (instrumented, without libFuzzer's main) and
# linked into each harness.  Paths must not contain spaces.
set -eu
out=${1:?usage: build.sh OUTDIR}
srcdir=${CKPTFS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${CKPTFS_BUILDDIR:-$srcdir}
cc=${CC:-clang}
san=${FUZZ_SAN:--fsanitize=fuzzer,address,undefined}
libsan=$(echo "$san" | sed 's/fuzzer,/fuzzer-no-link,/; s/fuzzer$/fuzzer-no-link/')

mkdir -p "$out/obj" "$out/inc"
out=$(cd "$out" && pwd)
[ -f "$builddir/config.h" ] || : > "$out/inc/config.h"
# pkgdatadir = the source tree, so mapping rules are found in $srcdir/mapping
cflags="-std=gnu11 -Wall -Wextra -Wno-unused-parameter -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined
 -I$builddir -I$out/inc -I$srcdir/src
 -DCKPTFS_PKGDATADIR=\"$srcdir\" -DCKPTFS_FUZZ_DATA=\"$srcdir/tests/fuzz/data\"
 $(pkg-config --cflags jansson libzstd libxxhash) ${FUZZ_CFLAGS:-}"
libs="$(pkg-config --libs jansson libzstd libxxhash) -lpthread"

srcs=$(awk '/^libckptfs_la_SOURCES[ \t]*=/ { f = 1 }
	f { for (i = 1; i <= NF; i++) if ($i ~ /\.c$/) print $i; if ($0 !~ /\\$/) f = 0 }' \
	"$srcdir/Makefile.am")
[ -n "$srcs" ] || { echo "build.sh: no libckptfs_la_SOURCES in $srcdir/Makefile.am" >&2; exit 1; }
objs=
for f in $srcs; do
	o="$out/obj/$(basename "$f" .c).o"
	$cc $cflags $libsan -c "$srcdir/$f" -o "$o"
	objs="$objs $o"
done
for h in "$srcdir"/tests/fuzz/fuzz-*.c; do
	name=$(basename "$h" .c)
	$cc $cflags $san "$h" $objs $libs -o "$out/$name"
	echo "built $out/$name"
done
