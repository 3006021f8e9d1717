#!/usr/bin/env python3
"""I/O faults from the source files: an LD_PRELOAD shim (eioshim.c, built here
with $CC) makes pread/read of one data file fail with EIO over a chosen byte
range, like a disk with bad sectors.

- `ckptfs export` and a mount of a checkpoint whose data file fails refuse
  with one line naming the file and the error (not "truncated");
- on a live mount, a read that needs the bad range fails with EIO, while
  every other range of the same file and the same tensor's other chunk read
  the exact bytes of an export made without faults; the plain read path
  (pread into the reply) and the item cache path (a strided item loaded
  whole) are both covered;
- once the fault is lifted (the shim re-reads its control file) the same
  reads return the right bytes: nothing was cached from the failed reads;
- a data file deleted, or replaced by rename, while mounted: the mount keeps
  serving the files it opened, byte for byte.

Reads on the mount use O_DIRECT, so each read reaches the daemon with its own
offset and length (no page cache, no readahead).  TAP; exit 77 (skip) without
the shared fixtures, a C compiler, or (for the mount part) /dev/fuse.
"""
import errno
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "golden"))
import dcp_ref  # noqa: E402

BIN = os.environ.get("CKPTFS_BIN", os.path.join(REPO, "src", "ckptfs"))
FIX = os.environ.get("CKPTFS_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures"))
FIXTURE = "torch2.6-dtensor-2ranks"
BAD = "__1_0.distcp"       # the file that fails
TIMEOUT = 30

n = 0
failed = 0


def ok(cond, msg, note=None):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {msg}", flush=True)
    if note:
        for line in str(note).splitlines():
            print(f"# {line}")
    if not cond:
        failed += 1
    return cond


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(77)


def build_shim(work):
    cc = os.environ.get("CC", "cc").split()
    out = os.path.join(work, "eioshim.so")
    r = subprocess.run(cc + ["-shared", "-fPIC", "-O1", "-Wall", "-o", out,
                             os.path.join(HERE, "eioshim.c"), "-ldl"],
                       capture_output=True, text=True)
    return out if r.returncode == 0 else None


def record_range(ck, fqn, offsets):
    """(file, start, end): where the storage record of fqn's chunk at offsets
    lies in its data file (found with zipfile, independently of ckptfs)."""
    rel, off, length, _ = dcp_ref.load(ck).storage[(fqn, tuple(offsets))]
    with open(os.path.join(ck, rel), "rb") as f:
        f.seek(off)
        blob = f.read(length)
    zf = zipfile.ZipFile(io.BytesIO(blob))
    recs = [i for i in zf.infolist() if "/data/" in i.filename]
    assert len(recs) == 1, recs
    h = recs[0].header_offset
    nlen, xlen = struct.unpack_from("<HH", blob, h + 26)
    start = off + h + 30 + nlen + xlen
    return rel, start, start + recs[0].file_size


def served_ranges(path):
    """name -> (start, end) absolute byte range in a safetensors file."""
    with open(path, "rb") as f:
        (hl,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(hl))
    hdr.pop("__metadata__", None)
    return 8 + hl, {k: (8 + hl + v["data_offsets"][0], 8 + hl + v["data_offsets"][1])
                    for k, v in hdr.items()}


def run(args, env):
    try:
        p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=TIMEOUT,
                           env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", "timed out"
    return p.returncode, p.stdout, p.stderr


def one_line(err):
    lines = err.splitlines()
    return lines[0] if len(lines) == 1 else None


def is_mounted(mnt):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def mount(src, mnt, env, opts="item_cache=1,prefetch=0"):
    # item_cache=1: a strided item is loaded again for every read (never kept);
    # prefetch=0: no block pool either, so every read reaches the source
    p = subprocess.Popen([BIN, src, mnt, "-f", "-o", opts], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15:
        if is_mounted(mnt):
            return p
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
    err = p.stderr.read()
    return r.returncode == 0 and rc == 0 and not is_mounted(mnt), err


def dread(path, off, ln):
    """O_DIRECT pread: bytes, or the errno of the failure."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        out = b""
        while len(out) < ln:
            got = os.pread(fd, ln - len(out), off + len(out))
            if not got:
                break
            out += got
        return out
    except OSError as ex:
        return ex.errno
    finally:
        os.close(fd)


def set_fault(ctl, *rules):
    tmp = ctl + ".new"
    with open(tmp, "w") as f:
        f.write("".join(f"{name} {a} {b}\n" for name, a, b in rules))
    os.rename(tmp, ctl)     # atomic: the shim never sees half a file


def check_export(ck, work, env, ctl, ref, w_row_rec):
    exp = os.path.join(work, "exp-shim")
    set_fault(ctl)
    rc, _, err = run(["export", "-q", ck, exp], env)
    with open(os.path.join(exp, "model.safetensors"), "rb") as f:
        same = rc == 0 and f.read() == ref
    ok(same, "the shim without a rule changes nothing: export under LD_PRELOAD equals the reference",
       err.strip())

    cases = [
        ("the whole file failing (a mount-time read)", (BAD, 0, 1 << 62), []),
        ("only w_row's storage record failing (a read of tensor data)", (BAD,) + w_row_rec[1:],
         [f"file offset {w_row_rec[1]}", "model.w_row"]),
        ("a bad range starting 8 bytes into the record (short read first, then EIO)",
         (BAD, w_row_rec[1] + 8, w_row_rec[2]), ["model.w_row"]),
    ]
    for i, (what, rule, needles) in enumerate(cases):
        set_fault(ctl, rule)
        out = os.path.join(work, f"exp-fault{i}")
        rc, _, err = run(["export", "-q", ck, out], env)
        line = one_line(err)
        good = (rc == 1 and line is not None and BAD in line and "Input/output error" in line and
                "truncated" not in line and all(s in line for s in needles))
        ok(good, f"export with {what}: exit 1, one line naming {BAD} and the I/O error",
           f"rc {rc}: {err.strip()}")
    set_fault(ctl)


def check_pool(ck, work, env, ctl, w_row_rec):
    """A mount with the block pool and read-ahead (prefetch=16) and a converted
    dtype, so the file's bytes are made in pooled blocks: a fault fails the
    reads of its block with EIO and leaves nothing behind; once the fault is
    lifted the block is made right, and a made block is served from memory."""
    exp = os.path.join(work, "exp16")
    r = subprocess.run([BIN, "export", "-q", ck, exp, "-o", "dtype=fp16"], capture_output=True, text=True)
    if not ok(r.returncode == 0, "fp16 reference export", r.stderr.strip()):
        return
    with open(os.path.join(exp, "model.safetensors"), "rb") as fp:
        ref16 = fp.read()
    data_start, _ = served_ranges(os.path.join(exp, "model.safetensors"))
    mnt = os.path.join(work, "mnt-pool")
    os.mkdir(mnt)
    set_fault(ctl, (BAD,) + w_row_rec[1:])
    p = mount(ck, mnt, env, "dtype=fp16,prefetch=16")
    f = os.path.join(mnt, "model.safetensors")
    try:
        ok(dread(f, data_start, len(ref16) - data_start) == errno.EIO and
           dread(f, 0, data_start) == ref16[:data_start],
           "pooled blocks: a fault fails the reads of its block with EIO; the header still reads")
        set_fault(ctl)
        ok(dread(f, 0, len(ref16)) == ref16, "... lifted: the block is made again and is right")
        set_fault(ctl, (BAD, 0, 1 << 62))
        ok(dread(f, 0, len(ref16)) == ref16,
           "... a block already made is served from memory (right bytes) under a new fault")
    finally:
        set_fault(ctl)
        unmount(mnt, p)


def check_mount(ck, work, env, ctl, ref, w_row_rec, tr_rec, count):
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    # a fault while the checkpoint is opened: the mount is refused, with the file named
    set_fault(ctl, (BAD, 0, 1 << 62))
    try:
        p = mount(ck, mnt, env)
        unmount(mnt, p)
        ok(False, "a mount whose data file fails at open is refused")
    except RuntimeError as ex:
        ok(BAD in str(ex) and "Input/output error" in str(ex),
           f"a mount whose data file fails at open is refused, naming {BAD}", str(ex))
    set_fault(ctl)
    try:
        p = mount(ck, mnt, env)
    except RuntimeError as ex:
        ok(False, f"mount under the shim ({ex})")
        return
    f = os.path.join(mnt, "model.safetensors")
    try:
        data_start, spans = served_ranges(os.path.join(work, "exp", "model.safetensors"))
        ok(dread(f, 0, len(ref)) == ref, "mounted under the shim, no fault: the file equals the export")
        row = 4 * 4                                  # w_row: F32 [5, 4]
        ws, we = spans["w_row"]
        bad = (ws + 3 * row, we)                     # rows 3..4: the chunk stored in __1_0
        ts, te = spans["tr"]

        # fault on w_row's record (plain items: pread straight into the reply)
        set_fault(ctl, (BAD,) + w_row_rec[1:])
        ok(dread(f, bad[0], bad[1] - bad[0]) == errno.EIO,
           "fault on w_row's record: a read of w_row rows 3..4 fails with EIO")
        ok(dread(f, ws, we - ws) == errno.EIO and dread(f, ws + 3 * row + 4, 4) == errno.EIO,
           "... and so does any read that overlaps them (the whole tensor, one element)")
        ok(dread(f, ws, 3 * row) == ref[ws:ws + 3 * row],
           "... while rows 0..2 of the same tensor (stored in __0_0) read the right bytes")
        others = {k: v for k, v in spans.items() if k != "w_row"}
        good = [k for k, (a, b) in others.items() if dread(f, a, b - a) == ref[a:b]]
        ok(len(good) == len(others) and dread(f, 0, data_start) == ref[:data_start],
           f"... and the header and all {len(others)} other tensors (6 of them partly in {BAD}) "
           "read the right bytes", f"bad: {sorted(set(others) - set(good))}")
        ok(dread(f, 0, len(ref)) == errno.EIO, "... a read of the whole file fails with EIO")

        # fault on tr's record (a strided item, read whole into the item cache)
        set_fault(ctl, (BAD,) + tr_rec[1:])
        ok(dread(f, ts, te - ts) == errno.EIO and dread(f, ts + 8, 8) == errno.EIO,
           "fault on tr's record (strided item, loaded whole, item_cache=1): reads of tr fail with EIO, "
           "twice")
        ok(dread(f, bad[0], bad[1] - bad[0]) == ref[bad[0]:bad[1]],
           "... while w_row rows 3..4 (same file, healthy range now) read the right bytes")

        # lift the fault: the same reads succeed, nothing was cached from the failures
        set_fault(ctl)
        ok(dread(f, ts, te - ts) == ref[ts:te] and dread(f, bad[0], bad[1] - bad[0]) == ref[bad[0]:bad[1]],
           "fault lifted: the reads that failed now return the right bytes (no poisoned state)")
        ok(dread(f, 0, len(ref)) == ref, "fault lifted: the whole file equals the export")
        with open(os.path.join(mnt, ".ckptfs-stats")) as fp:
            stats = dict(line.split() for line in fp if line.strip())
        with open(count) as fp:
            injected = len(fp.read())
        ok(int(stats.get("read_errors", 0)) >= 6 and injected >= 6 and
           int(stats.get("item_cache_loads", 0)) > 2,
           f".ckptfs-stats counts the failed reads ({stats.get('read_errors')}; "
           f"{injected} EIOs injected; {stats.get('item_cache_loads')} item loads)")

        # a data file deleted while mounted: the daemon holds it open
        os.unlink(os.path.join(ck, BAD))
        ok(dread(f, 0, len(ref)) == ref, f"{BAD} deleted while mounted: the file still equals "
           "the export (the daemon reads the file it opened)")
        # ... and a fault still reaches it through the held descriptor
        set_fault(ctl, (BAD,) + w_row_rec[1:])
        ok(dread(f, bad[0], bad[1] - bad[0]) == errno.EIO,
           f"... a fault on the deleted {BAD} still gives EIO for that range only")
        set_fault(ctl)
        # a data file replaced (a new file renamed over it) while mounted
        other = os.path.join(ck, "__0_0.distcp")
        size = os.path.getsize(other)
        with open(other + ".new", "wb") as fp:
            fp.write(bytes([0x5a]) * size)
        os.rename(other + ".new", other)
        ok(dread(f, 0, len(ref)) == ref, "__0_0.distcp replaced by rename while mounted: the "
           "mount keeps serving the original bytes")
    finally:
        good, err = unmount(mnt, p)
        ok(good, "the daemon unmounts cleanly after the faults")
        logged = [ln for ln in err.splitlines() if "read of model.safetensors" in ln]
        ok(logged and all(BAD in ln and "Input/output error" in ln for ln in logged),
           f"every failed read was logged by the daemon naming {BAD} ({len(logged)} lines)",
           "\n".join(logged[:2]))


def main():
    if not os.path.isdir(os.path.join(FIX, "dcp", FIXTURE)):
        skip_all("shared fixtures are absent")
    with tempfile.TemporaryDirectory(prefix="ckptfs-faults-") as work:
        shim = build_shim(work)
        if not shim:
            skip_all("cannot build the LD_PRELOAD shim with $CC")
        ck = os.path.join(work, "ckpt")
        shutil.copytree(os.path.join(FIX, "dcp", FIXTURE), ck)
        for name in os.listdir(ck):
            os.chmod(os.path.join(ck, name), 0o644)
        os.chmod(ck, 0o755)
        r = subprocess.run([BIN, "export", "-q", ck, os.path.join(work, "exp")],
                           capture_output=True, text=True)
        if not ok(r.returncode == 0, "reference export without the shim", r.stderr.strip()):
            print(f"1..{n}")
            sys.exit(1)
        with open(os.path.join(work, "exp", "model.safetensors"), "rb") as f:
            ref = f.read()
        w_row_rec = record_range(ck, "model.w_row", (3, 0))
        tr_rec = record_range(ck, "model.tr", (0, 0))
        ok(w_row_rec[0] == BAD and tr_rec[0] == BAD,
           f"the fixture stores w_row rows 3..4 and tr in {BAD} ({w_row_rec}, {tr_rec})")
        ctl = os.path.join(work, "faults")
        count = os.path.join(work, "injected")
        open(count, "w").close()
        env = dict(os.environ, LD_PRELOAD=shim, EIOSHIM_CTL=ctl, EIOSHIM_COUNT=count)
        # a sanitizer build (./configure --enable-sanitizers) accepts a preloaded shim
        env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                     "verify_asan_link_order=0"]))
        check_export(ck, work, env, ctl, ref, w_row_rec)
        if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
            print("# mount part skipped: no /dev/fuse or fusermount3")
        else:
            check_pool(ck, work, env, ctl, w_row_rec)  # first: check_mount replaces files
            check_mount(ck, work, env, ctl, ref, w_row_rec, tr_rec, count)
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
