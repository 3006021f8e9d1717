# tests/env.sh - sourced by the test wrappers: where things are.
: "${CKPTFS_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${CKPTFS_FIXTURES:=$CKPTFS_SRCDIR/../shared/fixtures}"
: "${CKPTFS_BIN:=$CKPTFS_SRCDIR/src/ckptfs}"
: "${CKPTFS_PYTHON:=python3}"
export CKPTFS_SRCDIR CKPTFS_FIXTURES CKPTFS_BIN CKPTFS_PYTHON
skip_without_fixtures() {
	if [ ! -d "$CKPTFS_FIXTURES/dcp" ]; then
		echo "1..0 # SKIP shared fixtures are absent ($CKPTFS_FIXTURES)"
		exit 77
	fi
}
