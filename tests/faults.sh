#!/bin/sh
# I/O errors from the source files (LD_PRELOAD shim tests/faults/eioshim.c,
# built with $CC): clear refusals, EIO for the failing read only, no state
# kept from a failure; files deleted or replaced while mounted.
. "$(dirname "$0")/env.sh"
skip_without_fixtures
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/faults/test_faults.py"
