#!/usr/bin/env python3
"""Stress test for a ckptfs mount (standard library only, TAP output).

Mounts a large checkpoint (about 200 MB to 1.5 GB) and, for
CKPTFS_STRESS_SECONDS (default 20), runs 16 threads doing random-offset
os.pread()s across every file plus 2 threads reading random slices through
MAP_PRIVATE mmaps, verifying every byte against `ckptfs export` of the same
checkpoint; the daemon's VmRSS is sampled throughout and must stay under
256 MiB (CKPTFS_STRESS_RSS_MIB).  Then the daemon is killed with SIGKILL in
the middle of reads: the reads must fail with ENOTCONN (or ECONNABORTED for
requests already in flight) within a timeout instead of hanging, new opens
must fail with ENOTCONN, `fusermount3 -u` must clean the mount up, and a
remount must serve correct bytes again.

The checkpoint: CKPTFS_STRESS_CKPT when set, else /tmp/ckptfs-bench-ckpt
(written by bench/run.sh) when present, else /tmp/ckptfs-stress-ckpt, written
once (about 180 MB) with `bench/make_big_ckpt.py OUT --layers 2 --hidden 1024`
by a python that can import torch (CKPTFS_TORCH_PYTHON, CKPTFS_PYTHON, or the
test venv under ~/.cache/ckptfs/).  Skips (1..0 # SKIP, exit 0) without
/dev/fuse, fusermount3, the ckptfs binary, or a way to get a checkpoint.

Export and mount use -o max_shard_size=CKPTFS_STRESS_SHARD (default 64MB;
empty for the default) so that there are several files and an index.

Environment: CKPTFS_BIN (default src/ckptfs), CKPTFS_STRESS_SECONDS,
CKPTFS_STRESS_CKPT, CKPTFS_STRESS_SHARD, CKPTFS_STRESS_OPTS (more mount options), CKPTFS_STRESS_RSS_MIB,
CKPTFS_TORCH_PYTHON, TMPDIR."""
import errno
import glob
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("CKPTFS_BIN", os.path.join(REPO, "src", "ckptfs"))
SECONDS = float(os.environ.get("CKPTFS_STRESS_SECONDS", "20"))
RSS_LIMIT = int(os.environ.get("CKPTFS_STRESS_RSS_MIB", "256")) << 20
# several output files (and the index) out of one checkpoint
SHARD = os.environ.get("CKPTFS_STRESS_SHARD", "64MB")
OPTS = ["-o", f"max_shard_size={SHARD}"] if SHARD else []
# CKPTFS_STRESS_OPTS: more -o options for the mount, e.g. "dtype=bf16,cache_dir=/tmp/c"
# (the reference export gets them too, less cache_dir, so that it is made directly)
EXTRA = [o for o in os.environ.get("CKPTFS_STRESS_OPTS", "").split(",") if o]
MOUNT_OPTS = OPTS + (["-o", ",".join(EXTRA)] if EXTRA else [])
EXPORT_EXTRA = [o for o in EXTRA if not o.startswith(("cache_dir=", "prefetch="))]
EXPORT_OPTS = OPTS + (["-o", ",".join(EXPORT_EXTRA)] if EXPORT_EXTRA else [])
PREAD_THREADS = 16
MMAP_THREADS = 2
MAX_READ = 1 << 20
HANG_TIMEOUT = 15.0

n = 0
failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {msg}", flush=True)
    if not cond:
        failed += 1
    return cond


def diag(msg):
    for line in str(msg).splitlines():
        print(f"# {line}", flush=True)


def skip_all(reason):
    print(f"1..0 # SKIP {reason}", flush=True)
    sys.exit(0)


def done():
    print(f"1..{n}", flush=True)
    # os._exit: a reader thread stuck in the kernel must not keep us alive
    os._exit(1 if failed else 0)


# ---- the checkpoint ----

def torch_python():
    cands = [os.environ.get("CKPTFS_TORCH_PYTHON"), os.environ.get("CKPTFS_PYTHON")]
    cands += sorted(glob.glob(os.path.expanduser("~/.cache/ckptfs/venv-*/bin/python")))
    for c in cands:
        if not c:
            continue
        r = subprocess.run([c, "-c", "import torch.distributed.checkpoint"], capture_output=True)
        if r.returncode == 0:
            return c
    return None


def find_checkpoint():
    env = os.environ.get("CKPTFS_STRESS_CKPT")
    if env:
        if not os.path.exists(os.path.join(env, ".metadata")):
            skip_all(f"CKPTFS_STRESS_CKPT={env} has no .metadata")
        return env
    for d in ("/tmp/ckptfs-bench-ckpt", "/tmp/ckptfs-stress-ckpt"):
        if os.path.exists(os.path.join(d, ".metadata")):
            return d
    py = torch_python()
    if not py:
        skip_all("no checkpoint (/tmp/ckptfs-bench-ckpt, CKPTFS_STRESS_CKPT) and no python with "
                 "torch to write one (CKPTFS_TORCH_PYTHON)")
    out = "/tmp/ckptfs-stress-ckpt"
    tmp = out + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    diag(f"writing a ~180 MB checkpoint to {out} with {py}")
    r = subprocess.run([py, os.path.join(REPO, "bench", "make_big_ckpt.py"), tmp,
                        "--layers", "2", "--hidden", "1024"], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0 or not os.path.exists(os.path.join(tmp, ".metadata")):
        diag(r.stderr[-2000:])
        skip_all("bench/make_big_ckpt.py failed")
    os.rename(tmp, out)
    return out


# ---- mounting ----

def is_mounted(mnt):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def mount(src, mnt):
    log = open(os.path.join(os.path.dirname(mnt), "daemon.log"), "ab")
    p = subprocess.Popen([BIN, src, mnt, "-f"] + MOUNT_OPTS, stdout=log, stderr=log)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if is_mounted(mnt):
            return p
        if p.poll() is not None:
            raise RuntimeError(f"ckptfs exited with {p.returncode} (see daemon.log)")
        time.sleep(0.02)
    p.kill()
    raise RuntimeError("the mount did not appear within 60 s")


def vmrss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---- phase 1: random reads against the export ----

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.bytes = 0
        self.reads = 0
        self.mmap_reads = 0
        self.errors = []

    def add(self, nbytes, mm=False):
        with self.lock:
            self.bytes += nbytes
            if mm:
                self.mmap_reads += 1
            else:
                self.reads += 1

    def error(self, what):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(what)


def rand_range(rnd, size):
    """Offsets anywhere (element-misaligned too), lengths 1 B .. 1 MiB with
    small ones frequent; sometimes a range that ends exactly at EOF."""
    if size == 0:
        return 0, 0
    ln = min(size, int(rnd.choice([rnd.randrange(1, 64), rnd.randrange(1, 8192),
                                   rnd.randrange(1, MAX_READ + 1)])))
    off = size - ln if rnd.random() < 0.05 else rnd.randrange(0, size - ln + 1)
    return off, ln


def pread_worker(seed, files, stop, st):
    rnd = random.Random(seed)
    fds = {}
    try:
        for name, (mnt_path, ref_path, size) in files.items():
            fds[name] = (os.open(mnt_path, os.O_RDONLY), os.open(ref_path, os.O_RDONLY), size)
        names = sorted(fds)
        while not stop.is_set():
            name = rnd.choice(names)
            mfd, rfd, size = fds[name]
            off, ln = rand_range(rnd, size)
            try:
                got = os.pread(mfd, ln, off)
            except OSError as e:
                st.error(f"pread {name} {off}+{ln}: {e}")
                continue
            want = os.pread(rfd, ln, off)
            if got != want:
                st.error(f"pread {name} {off}+{ln}: {len(got)} bytes differ from the export")
                continue
            st.add(len(got))
    except OSError as e:
        st.error(f"pread worker: {e}")
    finally:
        for mfd, rfd, _ in fds.values():
            os.close(mfd)
            os.close(rfd)


def mmap_worker(seed, files, stop, st):
    rnd = random.Random(seed)
    maps = {}
    try:
        for name, (mnt_path, ref_path, size) in files.items():
            if size == 0:
                continue
            with open(mnt_path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            maps[name] = (m, os.open(ref_path, os.O_RDONLY), size)
        names = sorted(maps)
        while not stop.is_set() and names:
            name = rnd.choice(names)
            m, rfd, size = maps[name]
            off, ln = rand_range(rnd, size)
            got = m[off:off + ln]
            if got != os.pread(rfd, ln, off):
                st.error(f"mmap {name} {off}+{ln}: bytes differ from the export")
                continue
            st.add(len(got), mm=True)
    except (OSError, ValueError) as e:
        st.error(f"mmap worker: {e}")
    finally:
        for m, rfd, _ in maps.values():
            m.close()
            os.close(rfd)


def sample_rss(pid, stop, peak):
    while not stop.is_set():
        r = vmrss(pid)
        if r is not None:
            peak[0] = max(peak[0], r)
            peak[1] += 1
        stop.wait(0.1)


def phase_random(p, files):
    st = Stats()
    stop = threading.Event()
    peak = [0, 0]
    rss = threading.Thread(target=sample_rss, args=(p.pid, stop, peak), daemon=True)
    rss.start()
    ts = [threading.Thread(target=pread_worker, args=(i, files, stop, st), daemon=True)
          for i in range(PREAD_THREADS)]
    ts += [threading.Thread(target=mmap_worker, args=(100 + i, files, stop, st), daemon=True)
           for i in range(MMAP_THREADS)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    hung = 0
    for t in ts:
        t.join(HANG_TIMEOUT)
        hung += t.is_alive()
    el = time.monotonic() - t0
    rss.join(2)
    diag(f"{st.reads} preads + {st.mmap_reads} mmap slice reads, {st.bytes} bytes "
         f"({st.bytes / el / 1e6:.0f} MB/s) verified in {el:.1f} s by {PREAD_THREADS} + "
         f"{MMAP_THREADS} threads")
    diag(f"daemon VmRSS: peak {peak[0] / 2**20:.1f} MiB over {peak[1]} samples")
    for e in st.errors:
        diag(e)
    ok(not st.errors and hung == 0 and st.reads > 0 and st.mmap_reads > 0,
       f"random preads and MAP_PRIVATE mmap reads for {SECONDS:g} s equal the export "
       f"({st.reads + st.mmap_reads} reads, {st.bytes} bytes verified)")
    ok(p.poll() is None, "the daemon is still running after the random reads")
    ok(0 < peak[0] < RSS_LIMIT, f"daemon VmRSS stayed under {RSS_LIMIT >> 20} MiB "
       f"(peak {peak[0] / 2**20:.1f} MiB)")


# ---- phase 2: SIGKILL in the middle of reads ----

def phase_kill(p, files, mnt):
    names = sorted(f for f in files if files[f][2] > 0)
    results = {}  # thread index -> (errno or None, detail)
    short = [0]   # reads cut short by the kill (a correct prefix)
    started = threading.Barrier(9)

    def reader(i):
        rnd = random.Random(1000 + i)
        name = names[i % len(names)]
        mnt_path, ref_path, size = files[name]
        fd = os.open(mnt_path, os.O_RDONLY)
        rfd = os.open(ref_path, os.O_RDONLY)
        # drop the file's cached pages so that reads must reach the daemon
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            started.wait(30)
        except threading.BrokenBarrierError:
            results[i] = (None, f"{name}: start barrier broken")
            return
        try:
            while True:
                off, ln = rand_range(rnd, size)
                try:
                    got = os.pread(fd, ln, off)
                except OSError as e:
                    results[i] = (e.errno, f"{name}: {os.strerror(e.errno)}")
                    return
                want = os.pread(rfd, ln, off)
                if got != want[:len(got)]:
                    bad = next(k for k in range(len(got)) if got[k] != want[k])
                    results[i] = (None, f"{name}: wrong bytes at {off}+{ln} (got {len(got)} "
                                  f"bytes, first difference at +{bad})")
                    return
                if len(got) < ln:
                    # the pages before the failure: a short read (POSIX allows
                    # it), the next read must fail
                    short[0] += 1
                # pages served from the page cache never fail: drop them again
                os.posix_fadvise(fd, off, ln, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
            os.close(rfd)

    ts = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(8)]
    for t in ts:
        t.start()
    try:
        started.wait(30)
    except threading.BrokenBarrierError:
        pass
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGKILL)
    t0 = time.monotonic()
    for t in ts:
        t.join(max(0.1, HANG_TIMEOUT - (time.monotonic() - t0)))
    hung = sum(t.is_alive() for t in ts)
    el = time.monotonic() - t0
    p.wait(10)
    codes = sorted({results[i][0] for i in results}, key=lambda c: c or 0)
    if short[0]:
        diag(f"{short[0]} read(s) returned a correct short prefix when the daemon died")
    diag("reader results after SIGKILL: " + "; ".join(
        results[i][1] for i in sorted(results)) + (f"; {hung} still blocked" if hung else ""))
    ok(hung == 0, f"no read hangs after the daemon is killed (all {len(ts)} readers returned "
       f"within {el:.1f} s)" if hung == 0 else f"{hung} of {len(ts)} readers still blocked "
       f"{HANG_TIMEOUT:g} s after SIGKILL")
    bad = [results[i][1] for i in results
           if results[i][0] not in (errno.ENOTCONN, errno.ECONNABORTED)]
    ok(not bad and len(results) == len(ts),
       "reads in progress fail with ENOTCONN/ECONNABORTED (or end short with correct "
       "bytes), never wrong bytes "
       f"({', '.join(errno.errorcode.get(c, str(c)) for c in codes if c)})")
    # new requests: a fresh open and a fresh read of a new range
    try:
        os.open(files[names[0]][0], os.O_RDONLY)
        e_open = 0
    except OSError as e:
        e_open = e.errno
    try:
        os.listdir(mnt)
        e_list = 0
    except OSError as e:
        e_list = e.errno
    ok(e_open == errno.ENOTCONN and e_list == errno.ENOTCONN,
       f"a new open and a listing fail with ENOTCONN "
       f"(open: {errno.errorcode.get(e_open, e_open)}, listdir: {errno.errorcode.get(e_list, e_list)})")
    r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True, timeout=30)
    ok(r.returncode == 0 and not is_mounted(mnt),
       f"fusermount3 -u cleans up the dead mount ({r.stderr.strip() or 'rc 0'})")
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)


# ---- phase 3: remount ----

def phase_remount(src, mnt, files):
    try:
        p = mount(src, mnt)
    except RuntimeError as e:
        ok(False, f"remount after SIGKILL: {e}")
        return
    try:
        names = sorted(os.listdir(mnt))
        ok(names == sorted(files), f"remount lists the same files ({len(names)})")
        st = Stats()
        stop = threading.Event()
        ts = [threading.Thread(target=pread_worker, args=(500 + i, files, stop, st), daemon=True)
              for i in range(4)]
        for t in ts:
            t.start()
        time.sleep(min(5.0, max(1.0, SECONDS / 4)))
        stop.set()
        for t in ts:
            t.join(HANG_TIMEOUT)
        # and the smallest file whole
        small = min(files, key=lambda k: files[k][2])
        with open(files[small][0], "rb") as a, open(files[small][1], "rb") as b:
            whole = a.read() == b.read()
        for e in st.errors:
            diag(e)
        ok(not st.errors and st.reads > 0 and whole,
           f"the remount serves correct bytes ({st.reads} random preads, {st.bytes} bytes, "
           f"and {small} whole)")
    finally:
        r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True, timeout=30)
        try:
            rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        ok(r.returncode == 0 and rc == 0 and not is_mounted(mnt),
           f"fusermount3 -u ends the remounted daemon (daemon exit status {rc})")


def main():
    if not os.path.exists("/dev/fuse"):
        skip_all("/dev/fuse is missing")
    if not shutil.which("fusermount3"):
        skip_all("fusermount3 is missing")
    if not os.access(BIN, os.X_OK):
        skip_all(f"ckptfs binary {BIN} is missing (build first)")
    src = find_checkpoint()
    work = tempfile.mkdtemp(prefix="ckptfs-stress-")
    ref, mnt = os.path.join(work, "ref"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    diag(f"checkpoint {src}, scratch {work}")
    t0 = time.monotonic()
    r = subprocess.run([BIN, "export", "-q", src, ref] + EXPORT_OPTS, capture_output=True, text=True,
                       timeout=1800)
    if not ok(r.returncode == 0, f"ckptfs export (the reference) in {time.monotonic() - t0:.1f} s"):
        diag(r.stderr)
        shutil.rmtree(work, ignore_errors=True)
        done()
    p = None
    try:
        try:
            p = mount(src, mnt)
        except RuntimeError as e:
            ok(False, f"mount: {e}")
            done()
        names = sorted(os.listdir(mnt))
        files = {f: (os.path.join(mnt, f), os.path.join(ref, f), os.path.getsize(os.path.join(ref, f)))
                 for f in sorted(os.listdir(ref))}
        total = sum(v[2] for v in files.values())
        ok(names == sorted(files) and all(os.path.getsize(os.path.join(mnt, f)) == files[f][2]
                                          for f in names),
           f"mount lists the export's {len(files)} files with the same sizes ({total} bytes)")
        phase_random(p, files)
        if p.poll() is None:
            phase_kill(p, files, mnt)
        phase_remount(src, mnt, files)
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)
        if p and p.poll() is None:
            p.kill()
        log = os.path.join(work, "daemon.log")
        if failed and os.path.exists(log):
            with open(log, errors="replace") as f:
                diag("daemon.log (tail):\n" + f.read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    done()


if __name__ == "__main__":
    main()
