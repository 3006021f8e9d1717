#!/usr/bin/env bash
# Configures and builds ckptfs in the source tree (extra arguments go to
# configure, e.g. --enable-sanitizers).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >&2
fi
if [ ! -f Makefile ] || [ $# -gt 0 ] || [ configure -nt config.status ]; then
	./configure -q "$@" >&2
fi
make -s -j"$(nproc)" >&2
