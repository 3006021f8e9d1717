#!/bin/sh
# Every shared DCP fixture exported by ckptfs equals the reference reader's
# tensors; with the test venv's python, also loaded by the real safetensors.
. "$(dirname "$0")/env.sh"
skip_without_fixtures
run_tap "$CKPTFS_PYTHON" "$CKPTFS_SRCDIR/tests/golden/run_golden.py" "$CKPTFS_BIN" "$CKPTFS_FIXTURES"/dcp/*
