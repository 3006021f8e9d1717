#!/bin/sh
# The stdlib reference reader checked against the facts in SOURCES.md.
. "$(dirname "$0")/env.sh"
skip_without_fixtures
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/golden/test_ref_selfcheck.py"
