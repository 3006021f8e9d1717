#!/usr/bin/env bash
# Installs what building and testing ckptfs needs on Debian 12 (bookworm):
# the C toolchain, autotools, libfuse3, jansson, zstd, xxhash, FUSE user tools and
# Python with venv support.  Uses sudo when not run as root.  Idempotent:
# skips apt-get when every package is already installed.
set -euo pipefail

pkgs=(build-essential autoconf automake libtool pkg-config
      libfuse3-dev fuse3 libjansson-dev libzstd-dev libxxhash-dev
      python3 python3-venv valgrind)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all build dependencies present" >&2
	exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
