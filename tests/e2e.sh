#!/bin/sh
# End-to-end tier: real torch writes checkpoints, ckptfs mounts them, real
# safetensors and transformers read the mount.  Needs the test venv
# (contrib/setup-test-venv.sh; CKPTFS_PYTHON points at its python).
. "$(dirname "$0")/env.sh"
if ! "$CKPTFS_PYTHON" -c "import torch, safetensors, transformers, pytest" 2>/dev/null; then
	echo "1..0 # SKIP torch/safetensors/transformers/pytest not importable by $CKPTFS_PYTHON (run contrib/setup-test-venv.sh)"
	exit 0
fi
tap=$(mktemp)
cd "$CKPTFS_SRCDIR/tests/e2e" || exit 99
CKPTFS_TAP=$tap PYTHONPATH="$CKPTFS_SRCDIR/tests/e2e${PYTHONPATH:+:$PYTHONPATH}" \
	"$CKPTFS_PYTHON" -m pytest -q -p tap_plugin -p no:cacheprovider --tb=short \
	-o console_output_style=classic ${CKPTFS_E2E_ARGS:-} . >&2
rc=$?
cat "$tap"
rm -f "$tap"
[ "$rc" -eq 5 ] && exit 0   # no tests collected: the plan says so
exit "$rc"
