#!/usr/bin/env bash
# Benchmarks ckptfs on a generated fp32 checkpoint of about 4 GB (4 ranks,
# kept in ${CKPTFS_BENCH_DIR:-/tmp/ckptfs-bench-fp32} between runs; extra
# arguments go to make_big_ckpt.py, e.g. --layers 8 for about 2 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash contrib/setup-test-venv.sh | tail -n 1)
bash contrib/build.sh
make -s bench/fuse_ceiling bench/convert_bench >&2
dir=${CKPTFS_BENCH_DIR:-/tmp/ckptfs-bench-fp32}
if [ ! -f "$dir/ckpt/.metadata" ]; then
	rm -rf "$dir"
	mkdir -p "$dir"
	"$venv/bin/python" bench/make_big_ckpt.py "$dir/ckpt" --dtype float32 --ranks 4 --layers 16 "$@"
fi
python3 bench/bench.py "$PWD" "$dir/ckpt" --assets "$dir/assets" --python "$venv/bin/python"
