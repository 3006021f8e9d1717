#!/bin/sh
# Mount tests (skip without /dev/fuse).
. "$(dirname "$0")/env.sh"
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/mount/test_mount.py"
