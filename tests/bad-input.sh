#!/bin/sh
# Damaged checkpoints give clear errors, never crashes, hangs or wrong data.
. "$(dirname "$0")/env.sh"
skip_without_fixtures
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/bad/test_bad_input.py"
