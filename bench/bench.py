#!/usr/bin/env python3
"""Side-by-side benchmark of ckptfs on one checkpoint.  Each pair of commands
runs alternately (A B A B ...) so drift hits both; the table gives medians and
the ratio of the medians.  Page caches are warm for the source in every run
(each command runs once before timing); the mount is remounted for every
timed read so its kernel cache never serves the data.  Copies go to --dest
(default /dev/shm) so the destination disk does not set the pace.

Usage: bench.py CKPTFS_BINARY CKPT_DIR [--runs N] [--dest DIR]"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckptfs")
    ap.add_argument("ckpt")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dest", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    a = ap.parse_args()
    src = os.path.abspath(a.ckpt)
    data = [os.path.join(src, f) for f in sorted(os.listdir(src))]
    size = sum(os.path.getsize(f) for f in data)
    work = tempfile.mkdtemp(prefix="ckptfs-bench-", dir=a.dest)
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)

    def mount():
        run([a.ckptfs, src, mnt])

    def umount():
        run(["fusermount3", "-u", mnt])

    def cat_source():
        for f in data:
            with open(f, "rb") as fp:
                while fp.readinto(buf):
                    pass

    def cp_mount():
        out = os.path.join(work, "copy")
        shutil.rmtree(out, ignore_errors=True)
        mount()
        try:
            run(["cp", "-r", mnt, out])
        finally:
            umount()

    def cat_mount():
        mount()
        try:
            for f in sorted(os.listdir(mnt)):
                with open(os.path.join(mnt, f), "rb") as fp:
                    while fp.readinto(buf):
                        pass
        finally:
            umount()

    def cp_source():
        out = os.path.join(work, "copy")
        shutil.rmtree(out, ignore_errors=True)
        run(["cp", "-r", src, out])

    def export():
        out = os.path.join(work, "export")
        shutil.rmtree(out, ignore_errors=True)
        run([a.ckptfs, "export", "-q", src, out])

    def mount_only():
        t = timed(mount)
        umount()
        return t

    buf = bytearray(1 << 20)
    fuse = os.path.exists("/dev/fuse") and shutil.which("fusermount3")
    pairs = [("ckptfs export", export, "cat source", cat_source)]
    if fuse:
        pairs[:0] = [("cp -r of the mount", cp_mount, "cat source", cat_source),
                     ("cp -r of the mount", cp_mount, "cp -r source", cp_source),
                     ("cat of the mount", cat_mount, "cat source", cat_source)]
    rows = []
    for name_a, fa, name_b, fb in pairs:
        fa(), fb()  # warm-up
        ta, tb = [], []
        for _ in range(a.runs):
            ta.append(timed(fa))
            tb.append(timed(fb))
        ma, mb = statistics.median(ta), statistics.median(tb)
        rows.append((name_a, ma, size / ma / 1e9, name_b, mb, size / mb / 1e9, ma / mb))
    if fuse:
        mt = [mount_only() for _ in range(a.runs)]
        print(f"mount time (median of {a.runs}): {statistics.median(mt) * 1000:.0f} ms "
              f"(min {min(mt) * 1000:.0f}, max {max(mt) * 1000:.0f})")
    print(f"checkpoint: {src}, {len(data)} files, {size / 1e9:.2f} GB, {a.runs} runs each\n")
    print(f"{'A':<22}{'median s':>10}{'GB/s':>8}   {'B':<14}{'median s':>10}{'GB/s':>8}{'A/B time':>10}")
    for r in rows:
        print(f"{r[0]:<22}{r[1]:>10.2f}{r[2]:>8.2f}   {r[3]:<14}{r[4]:>10.2f}{r[5]:>8.2f}{r[6]:>10.2f}")
    print("\n(cat of the mount remounts for every run: no kernel page cache of the mount is reused)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
