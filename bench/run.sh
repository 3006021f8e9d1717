#!/usr/bin/env bash
# Benchmarks ckptfs on a generated checkpoint of about 1.2 GB (kept in
# ${CKPTFS_BENCH_DIR:-/tmp/ckptfs-bench-ckpt} between runs): mount time, and
# `cp -r` of the mount and `ckptfs export` against `cat` of the source files.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash contrib/setup-test-venv.sh | tail -n 1)
bash contrib/build.sh
ckpt=${CKPTFS_BENCH_DIR:-/tmp/ckptfs-bench-ckpt}
if [ ! -f "$ckpt/.metadata" ]; then
	rm -rf "$ckpt"
	"$venv/bin/python" bench/make_big_ckpt.py "$ckpt" "$@"
fi
python3 bench/bench.py "$PWD/src/ckptfs" "$ckpt"
