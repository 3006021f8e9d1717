#!/bin/sh
# Command-line behaviour without FUSE.
. "$(dirname "$0")/env.sh"
skip_without_fixtures
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/cli/test_cli.py"
