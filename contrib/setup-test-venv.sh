#!/usr/bin/env bash
# Create (idempotently) the Python venv used by the ckptfs test tiers.
#
#   contrib/setup-test-venv.sh            -> prints the venv path as the last stdout line
#   CKPTFS_VENV=/some/dir contrib/setup-test-venv.sh
#
# The venv lives outside the repository (default
# $HOME/.cache/ckptfs/venv-<sha256(requirements.txt)[:12]>) so it survives
# fresh clones and `git clean`.  It is reused when a marker file says a
# previous install completed with the same requirements.
# All diagnostics go to stderr; only the venv path goes to stdout.
set -euo pipefail

log() { printf 'setup-test-venv: %s\n' "$*" >&2; }
die() { printf 'setup-test-venv: ERROR: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
req="${CKPTFS_TEST_REQUIREMENTS:-$repo/tests/e2e/requirements.txt}"
[ -r "$req" ] || die "requirements file not found: $req"

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "$python not found in PATH"

if command -v sha256sum >/dev/null 2>&1; then
    reqhash=$(sha256sum "$req" | cut -c1-12)
else
    reqhash=$("$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest()[:12])' "$req")
fi

venv="${CKPTFS_VENV:-${HOME:-/tmp}/.cache/ckptfs/venv-$reqhash}"
marker="$venv/.ckptfs-install-complete"

if [ -f "$marker" ] && [ -x "$venv/bin/python" ] \
   && [ "$(cat "$marker" 2>/dev/null)" = "$reqhash" ]; then
    log "reusing $venv"
    printf '%s\n' "$venv"
    exit 0
fi

# python3 -m venv needs ensurepip (Debian: python3-venv / python3.X-venv).
venv_works() {
    local t
    t=$(mktemp -d "${TMPDIR:-/tmp}/ckptfs-venvprobe.XXXXXX") || return 1
    if "$python" -m venv "$t/v" >/dev/null 2>&1; then rm -rf "$t"; return 0; fi
    rm -rf "$t"; return 1
}

if ! venv_works; then
    log "'$python -m venv' is not usable"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        log "installing python3-venv / python$pyver-venv with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2 || log "apt-get update failed (continuing)"
        apt-get install -y -q python3-venv >&2 \
            || apt-get install -y -q "python$pyver-venv" >&2 \
            || die "apt-get install python3-venv failed"
        venv_works || die "'$python -m venv' still fails after installing python3-venv"
    else
        die "'$python -m venv' unavailable; install python3-venv (e.g. apt-get install python3-venv) or set PYTHON=/path/to/python3"
    fi
fi

# A half-made venv (no marker) is thrown away and rebuilt.
if [ -e "$venv" ]; then
    if [ -f "$venv/pyvenv.cfg" ]; then
        log "removing incomplete venv $venv"
        rm -rf "$venv"
    elif [ -d "$venv" ] && [ -z "$(ls -A "$venv")" ]; then
        rmdir "$venv"
    else
        die "$venv exists and is not a venv; refusing to overwrite it"
    fi
fi
mkdir -p "$(dirname "$venv")"
log "creating $venv"
"$python" -m venv "$venv" >&2 || die "could not create venv at $venv"

export PIP_DISABLE_PIP_VERSION_CHECK=1
log "installing $(grep -cvE '^\s*(#|$)' "$req") requirements from $req (torch is large; this can take several minutes)"
if ! "$venv/bin/python" -m pip install -r "$req" >&2; then
    die "pip install -r $req into $venv failed (venv left without completion marker; re-run to retry)"
fi
"$venv/bin/python" -c 'import torch, safetensors, transformers, numpy, pytest, zstandard' >&2 \
    || die "packages installed but import check failed in $venv"

printf '%s\n' "$reqhash" > "$marker"
log "done: $venv"
printf '%s\n' "$venv"
