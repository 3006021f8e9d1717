#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs the build
# dependencies and the Python test venv (torch, safetensors, transformers from
# PyPI, cached outside the tree), builds, and runs `make check`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh
venv=$(bash contrib/setup-test-venv.sh | tail -n 1) || {
	echo "run-tests: the test venv could not be set up; the torch tiers will skip" >&2
	venv=""
}
bash contrib/build.sh
if [ -n "$venv" ]; then
	export CKPTFS_PYTHON="$venv/bin/python"
fi
make -s check
