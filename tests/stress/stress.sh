#!/bin/sh
# Stress test of a live mount (tests/stress/stress.py): 16+2 reader threads
# against the export for CKPTFS_STRESS_SECONDS, daemon RSS bound, SIGKILL
# mid-read, remount.  Slow (a ~200 MB to 1.5 GB checkpoint), so it only runs
# when CKPTFS_STRESS=1 (e.g. `make check CKPTFS_STRESS=1`); skipped otherwise.
: "${CKPTFS_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export CKPTFS_SRCDIR
. "$CKPTFS_SRCDIR/tests/env.sh"
if [ "${CKPTFS_STRESS:-0}" != 1 ]; then
	echo "1..0 # SKIP stress test is off (set CKPTFS_STRESS=1 to run it)"
	exit 0
fi
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/stress/stress.py"
