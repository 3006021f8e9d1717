#!/bin/sh
# On-disk cache and read-ahead through real mounts (skip without /dev/fuse).
. "$(dirname "$0")/env.sh"
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/mount/test_cache.py"
