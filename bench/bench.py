#!/usr/bin/env python3
"""Side-by-side benchmark of ckptfs on one checkpoint, measured in one run.

Rows (median of --runs runs each; commands alternate, so drift hits all):
  mount time; `cat` of the source files (the raw-read line); the FUSE
  transport ceiling (bench/fuse_ceiling: a file of the same size served from
  memory, read the same way, by one reader and by 16); `cat` of the mount by
  one reader and by 16 with the stored dtype and with -o dtype=bf16 (and
  bf16 with read-ahead off and on, whatever the default for this machine); `cp -r` of the mount stored, bf16, and bf16 from
  a warm on-disk cache; `ckptfs export -o dtype=bf16`; the daemon's peak RSS.  With --python (a python with torch + transformers), also torch's
  own route to a bf16 HF directory (dcp_to_torch_save + cast + safetensors
  save) against mounting + from_pretrained, and from_pretrained from the
  mount against from a materialised copy.

Every timed mount is fresh, so the kernel's page cache of the mount never
serves the data; the source stays in the page cache (warm) as it would for
repeated evaluation.  Copies go to /dev/shm so the destination disk does not
set the pace.

usage: bench.py BUILD_DIR CKPT_DIR [--assets DIR] [--runs N] [--python PY]"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BUF = bytearray(1 << 20)


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cat(paths):
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(BUF):
                pass


def cat_parallel(paths, nthreads=16):
    """nthreads readers, each reading one contiguous sixteenth of all the
    bytes (across files) with 1 MiB preads; the GIL is released in pread."""
    import threading
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes)
    step = -(-total // nthreads)

    def reader(lo, hi):
        buf = bytearray(1 << 20)
        pos, base = lo, 0
        for p, sz in zip(paths, sizes):
            if pos >= hi:
                break
            if pos < base + sz:
                fd = os.open(p, os.O_RDONLY)
                try:
                    while pos < min(hi, base + sz):
                        n = min(len(buf), min(hi, base + sz) - pos)
                        got = os.preadv(fd, [memoryview(buf)[:n]], pos - base)
                        if got <= 0:
                            raise OSError(f"short read of {p}")
                        pos += got
                finally:
                    os.close(fd)
            base += sz
    ts = [threading.Thread(target=reader, args=(i * step, min(total, (i + 1) * step)))
          for i in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def raise_readahead(mnt):
    """What ckptfs does for itself, for the ceiling filesystem (root only)."""
    os.stat(mnt)  # INIT is done once this answers
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == mnt:
                dev = parts[2]
    try:
        with open(f"/sys/class/bdi/{dev}/read_ahead_kb", "w") as f:
            f.write("1024\n")
    except OSError:
        pass


class Mount:
    def __init__(self, argv, mnt):
        self.argv, self.mnt = argv, mnt

    def __enter__(self):
        sh(self.argv)
        raise_readahead(self.mnt)
        return self.mnt

    def __exit__(self, *a):
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("ckpt")
    ap.add_argument("--assets")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python")
    a = ap.parse_args()
    ckptfs = os.path.join(a.build, "src", "ckptfs")
    ceiling = os.path.join(a.build, "bench", "fuse_ceiling")
    src = os.path.abspath(a.ckpt)
    data = [os.path.join(src, f) for f in sorted(os.listdir(src))]
    raw = sum(os.path.getsize(f) for f in data)
    work = tempfile.mkdtemp(prefix="ckptfs-bench-", dir="/dev/shm")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    opts = ["-o", f"assets={a.assets}"] if a.assets else []

    def mount(*extra):
        return Mount([ckptfs, src, mnt] + opts + list(extra), mnt)

    with mount() as m:
        served_orig = sum(os.path.getsize(os.path.join(m, f)) for f in os.listdir(m))
    with mount("-o", "dtype=bf16") as m:
        served_bf16 = sum(os.path.getsize(os.path.join(m, f)) for f in os.listdir(m))

    def read_mount(*extra, readers=1):
        def run():
            with mount(*extra) as m:
                files = [os.path.join(m, f) for f in sorted(os.listdir(m))]
                cat(files) if readers == 1 else cat_parallel(files, readers)
        return run

    def cp_mount(*extra):
        def run():
            out = os.path.join(work, "copy")
            shutil.rmtree(out, ignore_errors=True)
            with mount(*extra) as m:
                sh(["cp", "-r", m, out])
            shutil.rmtree(out, ignore_errors=True)
        return run

    def read_ceiling(readers=1):
        def run():
            with Mount([ceiling, mnt, str((served_orig + (1 << 20) - 1) >> 20)], mnt) as m:
                files = [os.path.join(m, "data")]
                cat(files) if readers == 1 else cat_parallel(files, readers)
        return run

    cache = tempfile.mkdtemp(prefix="ckptfs-bench-cache-")  # on disk, as users would have it
    warm = ["-o", f"dtype=bf16,cache_dir={cache}"]

    def export_bf16():
        out = os.path.join(work, "export")
        shutil.rmtree(out, ignore_errors=True)
        sh([ckptfs, "export", "-q", src, out, "-o", "dtype=bf16"] + opts)
        shutil.rmtree(out, ignore_errors=True)

    rows = [  # name, function, bytes it moves
        ("cat source files (raw)", lambda: cat(data), raw),
        ("FUSE ceiling (memory)", read_ceiling(), served_orig),
        ("FUSE ceiling, 16 readers", read_ceiling(16), served_orig),
        ("cat mount, stored dtype", read_mount(), served_orig),
        ("16 readers, stored dtype", read_mount(readers=16), served_orig),
        ("cat mount, dtype=bf16", read_mount("-o", "dtype=bf16"), served_bf16),
        ("  ... prefetch=0", read_mount("-o", "dtype=bf16,prefetch=0"), served_bf16),
        ("  ... prefetch=64", read_mount("-o", "dtype=bf16,prefetch=64"), served_bf16),
        ("16 readers, dtype=bf16", read_mount("-o", "dtype=bf16", readers=16), served_bf16),
        ("cp -r mount, stored", cp_mount(), served_orig),
        ("cp -r mount, bf16", cp_mount("-o", "dtype=bf16"), served_bf16),
        ("cp -r mount, bf16 cached", cp_mount(*warm), served_bf16),
        ("export -o dtype=bf16", export_bf16, served_bf16),
    ]
    for _, fn, _ in rows:
        fn()  # warm-up
    times = {name: [] for name, _, _ in rows}
    for _ in range(a.runs):
        for name, fn, _ in rows:
            times[name].append(timed(fn))
    mt = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        with mount():
            mt.append(time.perf_counter() - t0)
    # daemon peak RSS while reading everything once (16 readers, bf16 with read-ahead)
    hwm = {}
    for label, extra in (("stored", []), ("bf16", ["-o", "dtype=bf16"])):
        p = subprocess.Popen([ckptfs, src, mnt, "-f"] + opts + extra, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while not os.path.ismount(mnt):
            time.sleep(0.02)
        cat_parallel([os.path.join(mnt, f) for f in sorted(os.listdir(mnt))], 16)
        with open(f"/proc/{p.pid}/status") as f:
            hwm[label] = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        sh(["fusermount3", "-u", mnt])
        p.wait()
    shutil.rmtree(cache, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ceil_gbps = served_orig / med["FUSE ceiling (memory)"] / 1e9
    ceil16_gbps = served_orig / med["FUSE ceiling, 16 readers"] / 1e9
    raw_s = med["cat source files (raw)"]
    print(f"checkpoint: {src}: {len(data)} files, {raw / 1e9:.2f} GB; served {served_orig / 1e9:.2f} GB "
          f"as stored, {served_bf16 / 1e9:.2f} GB as bf16; {a.runs} runs, medians")
    print(f"mount time: {statistics.median(mt) * 1000:.0f} ms; daemon peak RSS (16 readers): "
          f"{hwm['stored'] / 1024:.0f} MiB stored dtype, {hwm['bf16'] / 1024:.0f} MiB bf16\n")
    print(f"{'':<28}{'seconds':>9}{'GB/s':>8}{'x ceiling':>11}{'x raw cat':>11}")
    for name, _, nbytes in rows:
        s = med[name]
        gbps = nbytes / s / 1e9
        c = ceil16_gbps if "16 readers" in name else ceil_gbps
        print(f"{name:<28}{s:>9.2f}{gbps:>8.2f}{gbps / c:>11.2f}{raw_s / s:>11.2f}")
    print("\nGB/s counts the bytes served (for bf16, half the stored fp32 bytes); 'x ceiling' "
          "compares with the FUSE ceiling read the same way (one reader or 16); 'x raw cat' is "
          "the time of cat of the source divided by the row's time; 'cached' rows read a warm "
          "on-disk cache (-o cache_dir) filled by the warm-up run.")
    conv = os.path.join(a.build, "bench", "convert_bench")
    if os.path.exists(conv):
        print("\nconversion kernels (bench/convert_bench):")
        sys.stdout.flush()
        subprocess.run([conv], check=False)
    if a.python:
        print("\nend to end with torch (one run each):")
        sys.stdout.flush()
        subprocess.run([a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "torch_route.py"), ckptfs, src, a.assets or "", work],
                       check=False)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
