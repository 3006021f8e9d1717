#!/bin/sh
# The unit tests again, built with AddressSanitizer + UBSan (leaks included),
# and the normal build's unit tests under valgrind memcheck.  TAP.
. "$(dirname "$0")/env.sh"
: "${CKPTFS_BUILDDIR:=$(cd "$(dirname "$CKPTFS_BIN")/.." && pwd)}"
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fail=0
tap() {  # tap STATUS MESSAGE
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
lib=""
for f in "$CKPTFS_SRCDIR"/src/*.c; do
	case "$(basename "$f")" in main.c|fs.c|export.c|inspect.c) ;; *) lib="$lib $f" ;; esac
done
# -Wall -Wextra -Werror as in the normal build: at -O1 with the sanitizers gcc sees other
# things (maybe-uninitialized), and ./configure --enable-sanitizers must build too
flags="-std=gnu11 -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wall -Wextra -Werror -Wno-unused-parameter"
if echo 'int main(void){return 0;}' > "$tmp/t.c" && $CC $flags "$tmp/t.c" -o "$tmp/t" 2>/dev/null; then
	for t in test-pickle test-zip test-gather test-convert test-cache test-dirlist; do
		# shellcheck disable=SC2086
		if $CC $flags -I"$CKPTFS_BUILDDIR" -I"$CKPTFS_SRCDIR/src" -DCKPTFS_PKGDATADIR='"/nonexistent"' \
			$(pkg-config --cflags jansson libzstd libxxhash) $lib "$CKPTFS_SRCDIR/tests/unit/$t.c" \
			-o "$tmp/$t" $(pkg-config --libs jansson libzstd libxxhash) -lpthread 2>"$tmp/$t.cc"; then
			ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$tmp/$t" > "$tmp/$t.out" 2>&1
			rc=$?
			[ "$rc" = 0 ] || tail -n 30 "$tmp/$t.out" | sed 's/^/# /'
			tap "$rc" "$t under AddressSanitizer + UBSan"
		else
			sed 's/^/# /' "$tmp/$t.cc" | tail -n 20
			tap 1 "$t builds with sanitizers"
		fi
	done
else
	echo "# $CC cannot build with -fsanitize=address,undefined: sanitizer runs skipped"
fi
# ThreadSanitizer on the unit tests that run threads (item loads, block pool,
# cache), when this compiler and kernel can run it
tflags="-std=gnu11 -g -O1 -fsanitize=thread"
printf '#include <pthread.h>\nstatic void *f(void *a){return a;}\nint main(void){pthread_t t;pthread_create(&t,0,f,0);pthread_join(t,0);return 0;}\n' >"$tmp/tt.c"
if $CC $tflags "$tmp/tt.c" -o "$tmp/tt" -lpthread 2>/dev/null && "$tmp/tt" >/dev/null 2>&1; then
	for t in test-gather test-cache; do
		# shellcheck disable=SC2086
		if $CC $tflags -I"$CKPTFS_BUILDDIR" -I"$CKPTFS_SRCDIR/src" -DCKPTFS_PKGDATADIR='"/nonexistent"' \
			$(pkg-config --cflags jansson libzstd libxxhash) $lib "$CKPTFS_SRCDIR/tests/unit/$t.c" \
			-o "$tmp/$t-tsan" $(pkg-config --libs jansson libzstd libxxhash) -lpthread 2>"$tmp/$t.tcc"; then
			TSAN_OPTIONS=halt_on_error=1 "$tmp/$t-tsan" > "$tmp/$t.tsan" 2>&1
			rc=$?
			[ "$rc" = 0 ] || grep -v '^ok' "$tmp/$t.tsan" | tail -n 30 | sed 's/^/# /'
			tap "$rc" "$t under ThreadSanitizer: no data race"
		else
			sed 's/^/# /' "$tmp/$t.tcc" | tail -n 20
			tap 1 "$t builds with ThreadSanitizer"
		fi
	done
else
	echo "# $CC cannot build or run -fsanitize=thread here: TSan runs skipped"
fi
if command -v valgrind >/dev/null 2>&1; then
	for t in test-pickle test-zip test-gather test-cache; do
		bin="$CKPTFS_BUILDDIR/tests/unit/$t"
		[ -x "$bin" ] || continue
		valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
			--error-exitcode=9 "$bin" > "$tmp/$t.vg" 2>&1
		rc=$?
		[ "$rc" = 0 ] || grep -v '^ok' "$tmp/$t.vg" | tail -n 30 | sed 's/^/# /'
		tap "$rc" "$t under valgrind memcheck: no errors, no leaks"
	done
else
	echo "# valgrind is missing: memcheck runs skipped"
fi
if [ "$n" = 0 ]; then
	echo "1..0 # SKIP neither sanitizers nor valgrind available"
	exit 0
fi
echo "1..$n"
exit $fail
