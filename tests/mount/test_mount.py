#!/usr/bin/env python3
"""Mount tests: every shared DCP fixture is mounted with ckptfs and checked
against `ckptfs export` of the same checkpoint, byte for byte, through cat-like
reads, `cp -r`, a MAP_PRIVATE mmap (what safetensors does), stat, and random
reads from several threads; writes must fail with EROFS and fusermount3 -u
must end the daemon cleanly.  TAP output; skips (exit 77) without /dev/fuse."""
import errno
import filecmp
import mmap
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("CKPTFS_BIN", os.path.join(REPO, "src", "ckptfs"))
FIX = os.environ.get("CKPTFS_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures"))

n = 0
failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {msg}", flush=True)
    if not cond:
        failed += 1
    return cond


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(77)


def is_mounted(mnt):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def mount(src, mnt, *opts):
    args = [BIN, src, mnt, "-f"]
    for o in opts:
        args += ["-o", o]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15:
        if is_mounted(mnt):
            return p, time.monotonic() - t0
        if p.poll() is not None:
            raise RuntimeError(f"ckptfs exited {p.returncode}: {p.stderr.read().strip()}")
        time.sleep(0.02)
    p.kill()
    raise RuntimeError("mount did not appear within 15 s")


def unmount(mnt, p):
    r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    return r.returncode == 0 and rc == 0 and not is_mounted(mnt)


def random_reads(path, ref, nthreads=6, per=150):
    errors = []
    size = len(ref)

    def worker(seed):
        rnd = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(per):
                off = rnd.randrange(0, size + 1)
                ln = rnd.randrange(0, min(size - off, 1 << 20) + 1)
                got = os.pread(fd, ln, off)
                if got != ref[off:off + ln]:
                    errors.append((off, ln))
        finally:
            os.close(fd)

    ts = [threading.Thread(target=worker, args=(s,)) for s in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def check_fixture(name, src, work, assets=None):
    exp = os.path.join(work, name + "-export")
    mnt = os.path.join(work, name + "-mnt")
    os.mkdir(mnt)
    opts = [f"assets={assets}"] if assets else []
    cmd = [BIN, "export", "-q", src, exp] + sum((["-o", o] for o in opts), [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not ok(r.returncode == 0, f"{name}: export ({r.stderr.strip()})"):
        return
    try:
        p, secs = mount(src, mnt, *opts)
    except RuntimeError as ex:
        ok(False, f"{name}: mount ({ex})")
        return
    try:
        ok(True, f"{name}: mounted in {secs * 1000:.0f} ms")
        names = sorted(os.listdir(mnt))
        ok(names == sorted(os.listdir(exp)), f"{name}: listing equals export ({names})")
        sizes = all(os.stat(os.path.join(mnt, f)).st_size == os.stat(os.path.join(exp, f)).st_size
                    for f in names)
        ok(sizes, f"{name}: stat sizes equal export")
        same = True
        for f in names:
            with open(os.path.join(mnt, f), "rb") as a:
                data = b"".join(iter(lambda: a.read(128 * 1024), b""))
            with open(os.path.join(exp, f), "rb") as b:
                ref = b.read()
            same &= data == ref
        ok(same, f"{name}: sequential reads (cat) equal export byte for byte")
        mm_same = True
        for f in names:
            with open(os.path.join(exp, f), "rb") as b:
                ref = b.read()
            if not ref:
                continue
            with open(os.path.join(mnt, f), "rb") as a:
                m = mmap.mmap(a.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
                mm_same &= m[:] == ref
                m.close()
        ok(mm_same, f"{name}: MAP_PRIVATE mmap equals export")
        st = [f for f in names if f.endswith(".safetensors")][0]
        with open(os.path.join(exp, st), "rb") as b:
            ref = b.read()
        errs = random_reads(os.path.join(mnt, st), ref)
        ok(not errs, f"{name}: 900 random preads from 6 threads equal export ({errs[:3]})")
        copy = os.path.join(work, name + "-copy")
        r = subprocess.run(["cp", "-r", mnt, copy], capture_output=True, text=True)
        cmp = filecmp.dircmp(copy, exp)
        eq = (r.returncode == 0 and not cmp.left_only and not cmp.right_only and
              all(filecmp.cmp(os.path.join(copy, f), os.path.join(exp, f), shallow=False)
                  for f in names))
        ok(eq, f"{name}: cp -r of the mount equals export ({r.stderr.strip()})")
        try:
            os.open(os.path.join(mnt, st), os.O_WRONLY)
            ro = False
        except OSError as ex:
            ro = ex.errno == errno.EROFS
        try:
            open(os.path.join(mnt, "new-file"), "w").close()
            ro = False
        except OSError as ex:
            ro &= ex.errno in (errno.EROFS, errno.EACCES)
        ok(ro, f"{name}: writes and creates fail (read-only)")
        with open(os.path.join(mnt, ".ckptfs-stats")) as fp:
            stats = dict(line.split() for line in fp if line.strip())
        ok(int(stats.get("bytes_served", 0)) > 0 and int(stats.get("read_errors", 1)) == 0 and
           ".ckptfs-stats" not in os.listdir(mnt),
           f"{name}: .ckptfs-stats counts the reads and is not listed ({stats.get('bytes_served')})")
    finally:
        ok(unmount(mnt, p), f"{name}: fusermount3 -u unmounts and the daemon exits 0")


def check_run_root(dcp, work):
    """A run root: complete steps appear as directories (at any known inner
    path), an incomplete save stays hidden until it completes, and "latest"
    follows the newest step."""
    run = os.path.join(work, "run")
    steps = {"step-100": ("torch2.6-dtensor-2ranks", ""),
             "step-20": ("megatron-core0.9-tp2", ""),
             "global_step_300": ("lightning-fsdp1-torch2.0", "model/ckpt")}
    for step, (fx, inner) in steps.items():
        dst = os.path.join(run, step, inner) if inner else os.path.join(run, step)
        shutil.copytree(os.path.join(dcp, fx), dst)
    late = os.path.join(run, "step-400")
    shutil.copytree(os.path.join(dcp, "torch1.13-per-item-files"), late)
    for root, dirs, files in os.walk(run):
        for f in files + dirs:
            os.chmod(os.path.join(root, f), 0o755)
    os.rename(os.path.join(late, ".metadata"), os.path.join(late, ".metadata.tmp"))
    os.makedirs(os.path.join(run, "logs"))
    mnt = os.path.join(work, "run-mnt")
    os.mkdir(mnt)
    p, _ = mount(run, mnt)
    try:
        names = sorted(os.listdir(mnt))
        ok(names == ["global_step_300", "latest", "step-100", "step-20"],
           f"run root lists the complete steps and latest ({names})")
        ok(os.readlink(os.path.join(mnt, "latest")) == "global_step_300",
           "latest points at the highest step number")
        same = True
        for step, (fx, inner) in steps.items():
            exp = os.path.join(work, f"run-exp-{step}")
            src = os.path.join(run, step, inner) if inner else os.path.join(run, step)
            subprocess.run([BIN, "export", "-q", src, exp], check=True, capture_output=True)
            for f in os.listdir(exp):
                with open(os.path.join(mnt, step, f), "rb") as a, open(os.path.join(exp, f), "rb") as b:
                    same &= a.read() == b.read()
        ok(same, "every step's files equal its export")
        os.rename(os.path.join(late, ".metadata.tmp"), os.path.join(late, ".metadata"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "step-400" not in os.listdir(mnt):
            time.sleep(0.2)
        ok("step-400" in os.listdir(mnt) and os.readlink(os.path.join(mnt, "latest")) == "step-400",
           "a step completed while mounted appears, and latest follows it")
    finally:
        ok(unmount(mnt, p), "run root: unmounts cleanly")


def main():
    if not os.path.exists("/dev/fuse"):
        skip_all("/dev/fuse is missing")
    if not shutil.which("fusermount3"):
        skip_all("fusermount3 is missing")
    dcp = os.path.join(FIX, "dcp")
    if not os.path.isdir(dcp):
        skip_all("shared fixtures are absent")
    with tempfile.TemporaryDirectory(prefix="ckptfs-mount-") as work:
        probe = os.path.join(work, "probe")
        os.mkdir(probe)
        first = sorted(os.listdir(dcp))[0]
        try:
            p, _ = mount(os.path.join(dcp, first), probe)
            unmount(probe, p)
        except (RuntimeError, OSError) as ex:
            skip_all(f"cannot mount FUSE here: {ex}")
        assets = os.path.join(FIX, "hf", "verl-tiny-llama-bf16")
        for name in sorted(os.listdir(dcp)):
            check_fixture(name, os.path.join(dcp, name), work,
                          assets if name.startswith("torch2.6") else None)
        # a data file that shrinks under a live mount: reads fail with EIO,
        # never return wrong bytes
        src = os.path.join(work, "shrinking")
        shutil.copytree(os.path.join(dcp, "torch2.6-dtensor-2ranks"), src)
        for f in os.listdir(src):
            os.chmod(os.path.join(src, f), 0o644)
        mnt = os.path.join(work, "shrinking-mnt")
        os.mkdir(mnt)
        p, _ = mount(src, mnt)
        try:
            os.truncate(os.path.join(src, "__1_0.distcp"), 100)
            try:
                with open(os.path.join(mnt, "model.safetensors"), "rb") as fp:
                    fp.read()
                eio = False
            except OSError as ex:
                eio = ex.errno == errno.EIO
            ok(eio, "a read that hits a truncated data file fails with EIO")
        finally:
            ok(unmount(mnt, p), "shrinking: unmounts cleanly")
        check_run_root(dcp, work)
        # several shards: a small max_shard_size splits the Megatron fixture
        src = os.path.join(dcp, "megatron-core0.9-tp2")
        exp = os.path.join(work, "sharded-export")
        r = subprocess.run([BIN, "export", "-q", src, exp, "-o", "max_shard_size=8KB"],
                           capture_output=True, text=True)
        files = sorted(os.listdir(exp)) if r.returncode == 0 else []
        ok(len(files) > 2 and "model.safetensors.index.json" in files and
           files[0].startswith("model-00001-of-"),
           f"max_shard_size=8KB gives several shards and an index ({files[:3]}...)")
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
