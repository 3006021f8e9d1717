"""Shared fixtures for the ckptfs end-to-end tests.

Run with the venv from contrib/setup-test-venv.sh:

    VENV=$(contrib/setup-test-venv.sh) && "$VENV/bin/python" -m pytest tests/e2e

Fixtures:
    e2e_env        (session) skip unless torch/safetensors/transformers/numpy import
    e2e_tmp        (session) a session-scoped scratch directory (Path)
    ckptfs_bin     path of the ckptfs binary ($CKPTFS_BIN, default <repo>/src/ckptfs);
                   skips if it is not built
    fuse_available (session) skip unless /dev/fuse and fusermount3 are usable
    mount          mount(src, mnt, *opts) context manager: runs
                   `ckptfs SRC MNT -f -o opt1,opt2,...`, waits for
                   model.safetensors, model.safetensors.index.json,
                   ema.safetensors (BAGEL) or latest (run roots) to appear
                   (20 s), yields the mountpoint (Path), then fusermount3 -u.
                   NB: safetensors.torch.load_file() mmaps the file, so tensors
                   kept past the `with` keep the mount busy; the fixture then
                   detaches lazily after 2 s (and reaps ckptfs at session end).
                   Prefer cloning tensors or `del`-ing them inside the block.
    ckpt_case      ckpt_case(name) -> (ckpt_dir, ref_dir): writes make_ckpt case
                   `name` once per session (cached), skips if Unsupported
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

# oneDNN's AMX bf16 kernels raise SIGILL on some VMs that advertise amx_*;
# cap the ISA before torch is imported anywhere in this session (see
# make_ckpt._cap_onednn_isa; same setting there so logits match bit for bit).
if "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
    try:
        with open("/proc/cpuinfo") as _f:
            if "amx_tile" in _f.read(65536):
                os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
    except OSError:
        pass

MOUNT_TIMEOUT_S = 20.0
UNMOUNT_TIMEOUT_S = 15.0
BUSY_RETRY_S = 2.0
READY_NAMES = ("model.safetensors", "model.safetensors.index.json", "ema.safetensors", "latest")


@pytest.fixture(scope="session")
def e2e_env():
    missing = []
    for mod in ("torch", "safetensors", "transformers", "numpy"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        pytest.skip(
            f"python modules missing: {', '.join(missing)}; run with the venv from "
            "contrib/setup-test-venv.sh"
        )
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


@pytest.fixture(scope="session")
def e2e_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckptfs-e2e")


@pytest.fixture(scope="session")
def ckptfs_bin() -> Path:
    p = Path(os.environ.get("CKPTFS_BIN", REPO / "src" / "ckptfs"))
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.skip(f"ckptfs binary not built: {p} (set CKPTFS_BIN)")
    return p


def _fusermount() -> str | None:
    return shutil.which("fusermount3")


@pytest.fixture(scope="session")
def fuse_available():
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse missing")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        pytest.skip("/dev/fuse not accessible")
    if _fusermount() is None:
        pytest.skip("fusermount3 not found")
    return True


def _is_mounted(mnt: Path) -> bool:
    target = os.path.realpath(mnt)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1 and parts[1].replace("\\040", " ") == target:
                    return True
    except OSError:
        pass
    return False


@contextlib.contextmanager
def _mount(binary: Path, src, mnt, *opts, extra_args=(), timeout=MOUNT_TIMEOUT_S):
    src, mnt = Path(src), Path(mnt)
    mnt.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), str(src), str(mnt), "-f"]
    if opts:
        cmd += ["-o", ",".join(str(o) for o in opts)]
    cmd += list(extra_args)
    log = open(mnt.parent / f".{mnt.name}.ckptfs.log", "w+b")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"ckptfs exited with {proc.returncode} before the mount was ready\n"
                    f"cmd: {' '.join(cmd)}\n{output()}"
                )
            try:
                if _is_mounted(mnt) and any((mnt / n).exists() for n in READY_NAMES):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mount not ready after {timeout:.0f}s\ncmd: {' '.join(cmd)}\n{output()}"
                )
            time.sleep(0.05)
        yield mnt
    finally:
        _unmount(proc, mnt)
        log.close()


_lingering: list[subprocess.Popen] = []


def _unmount(proc: subprocess.Popen, mnt: Path) -> None:
    """fusermount3 -u, retrying briefly while the mount is busy (typically:
    tensors from safetensors.load_file() still mmap a file on it).  If it
    stays busy, detach it lazily (fusermount3 -u -z): the mountpoint is free
    at once and the ckptfs process exits when the last mapping goes away;
    such processes are reaped (or killed) at the end of the session."""
    import gc

    fm = _fusermount() or "fusermount3"
    deadline = time.monotonic() + BUSY_RETRY_S
    lazy = False
    while _is_mounted(mnt):
        r = subprocess.run([fm, "-u", str(mnt)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode == 0 or not _is_mounted(mnt):
            break
        if time.monotonic() > deadline:
            subprocess.run([fm, "-u", "-z", str(mnt)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            lazy = True
            break
        gc.collect()  # drop unreferenced mmaps of files on the mount
        time.sleep(0.1)
    try:
        proc.wait(timeout=2 if lazy else UNMOUNT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if lazy:
            _lingering.append(proc)
        else:
            proc.kill()
            proc.wait(timeout=5)
            if _is_mounted(mnt):
                subprocess.run([fm, "-u", "-z", str(mnt)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session, exitstatus):
    import gc

    gc.collect()
    for proc in _lingering:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    _lingering.clear()


@pytest.fixture
def mount(ckptfs_bin, fuse_available):
    """Usage: ``with mount(src, mnt, f"assets={d}") as m: ...``"""

    def _m(src, mnt, *opts, **kw):
        return _mount(ckptfs_bin, src, mnt, *opts, **kw)

    return _m


@pytest.fixture(scope="session")
def ckpt_case(e2e_env, e2e_tmp):
    """ckpt_case(name) -> (ckpt_dir, ref_dir); each case is written once per session."""
    import make_ckpt

    cache: dict[str, tuple[Path, Path] | str] = {}

    def _get(name: str) -> tuple[Path, Path]:
        if name not in cache:
            ck, ref = e2e_tmp / "ckpt" / name, e2e_tmp / "ref" / name
            try:
                make_ckpt.make(name, str(ck), hf_out=str(ref))
                cache[name] = (ck, ref)
            except make_ckpt.Unsupported as e:
                cache[name] = f"unsupported by installed torch: {e.reason}"
        got = cache[name]
        if isinstance(got, str):
            pytest.skip(got)
        return got

    return _get
