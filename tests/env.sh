# tests/env.sh - sourced by the test wrappers: where things are.
: "${CKPTFS_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${CKPTFS_FIXTURES:=$CKPTFS_SRCDIR/../shared/fixtures}"
: "${CKPTFS_BIN:=$CKPTFS_SRCDIR/src/ckptfs}"
: "${CKPTFS_PYTHON:=python3}"
export CKPTFS_SRCDIR CKPTFS_FIXTURES CKPTFS_BIN CKPTFS_PYTHON
skip_without_fixtures() {
	if [ ! -d "$CKPTFS_FIXTURES/dcp" ]; then
		echo "1..0 # SKIP shared fixtures are absent ($CKPTFS_FIXTURES)"
		exit 0
	fi
}
# Runs a TAP-producing command; exit 77 (skipped, the plan says so) becomes 0
# because the TAP driver reads skips from the plan line, not the exit code.
run_tap() {
	"$@"
	rc=$?
	[ "$rc" -eq 77 ] && return 0
	return "$rc"
}
