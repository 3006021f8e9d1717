#!/usr/bin/env python3
"""On-disk cache and read-ahead tests, through real mounts.

A safetensors model of random fp32 tensors (several MiB, so many 1 MiB blocks)
is served as bf16.  The reference is `ckptfs export -o dtype=bf16` without a
cache (the direct path, checked against torch in the e2e tier), and the bf16
bytes are also recomputed here independently (round to nearest even, NaN ->
0xFFFF) for one tensor.  Checked: a first mount makes and stores every costly
block and reads ahead of a sequential reader; a remount serves every block
from the cache without converting anything; corrupted, torn and foreign
blocks are detected and remade; the size cap evicts; a free-space floor that
cannot be met stores nothing; a second process on the same cache directory
goes on without it; a changed source gets a new key; a directory others can
write to is refused; `export` warms the cache.  TAP; exit 77 without FUSE."""
import errno
import json
import os
import signal
import random
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_mount import BIN, mount, unmount  # noqa: E402

MIB = 1 << 20
n = 0
failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {msg}", flush=True)
    if not cond:
        failed += 1
    return cond


def write_model(path, seed):
    """fp32 tensors of random bit patterns (NaNs, infinities, subnormals
    included) plus an int64 tensor that is served unchanged."""
    rnd = random.Random(seed)
    shapes = {"a.weight": (1536, 1024, "F32"), "b.weight": (700, 937, "F32"),
              "c.bias": (1000, 1, "F32"), "d.index": (300, 1, "I64")}
    hdr, blobs, off = {}, [], 0
    for name, (r, c, dt) in shapes.items():
        data = rnd.randbytes(r * c * (8 if dt == "I64" else 4))
        hdr[name] = {"dtype": dt, "shape": [r, c], "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return blobs


def bf16(word):
    """torch's fp32 -> bf16 (vectorised path): round to nearest even, NaN -> 0xFFFF."""
    if (word & 0x7F800000) == 0x7F800000 and (word & 0x7FFFFF):
        return 0xFFFF
    return ((word + 0x7FFF + ((word >> 16) & 1)) >> 16) & 0xFFFF


def stats(mnt):
    with open(os.path.join(mnt, ".ckptfs-stats")) as f:
        return {k: int(v) for k, v in (line.split() for line in f if line.strip())}


def read_all(mnt):
    out = {}
    for name in sorted(os.listdir(mnt)):
        with open(os.path.join(mnt, name), "rb") as f:
            out[name] = b"".join(iter(lambda: f.read(128 * 1024), b""))
    return out


def tree_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
               if f[0].isdigit())


def block_files(cache):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs if f[0].isdigit())


def session(src, mnt, opts, what):
    """Mounts, reads everything, returns (files, stats) and unmounts."""
    p, _ = mount(src, mnt, *opts)
    try:
        files = read_all(mnt)
        st = stats(mnt)
    finally:
        ok(unmount(mnt, p), f"{what}: unmounts cleanly")
    return files, st


def main():
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        print("1..0 # SKIP /dev/fuse or fusermount3 is missing")
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix="ckptfs-cache-") as work:
        src = os.path.join(work, "src")
        os.mkdir(src)
        blobs = write_model(os.path.join(src, "model.safetensors"), 7)
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        try:
            p, _ = mount(src, mnt)
            unmount(mnt, p)
        except (RuntimeError, OSError) as ex:
            print(f"1..0 # SKIP cannot mount FUSE here: {ex}")
            sys.exit(77)
        ref_dir = os.path.join(work, "ref")
        subprocess.run([BIN, "export", "-q", src, ref_dir, "-o", "dtype=bf16"], check=True)
        ref = {f: open(os.path.join(ref_dir, f), "rb").read() for f in os.listdir(ref_dir)}
        st_ref = ref["model.safetensors"]
        hlen = struct.unpack("<Q", st_ref[:8])[0]
        hdr = json.loads(st_ref[8:8 + hlen])
        a0, a1 = hdr["a.weight"]["data_offsets"]
        base = 8 + hlen
        words = struct.unpack(f"<{len(blobs[0]) // 4}I", blobs[0])
        mine = struct.pack(f"<{len(words)}H", *(bf16(w) for w in words))
        d0, d1 = hdr["d.index"]["data_offsets"]
        ok(st_ref[base + a0:base + a1] == mine and st_ref[base + d0:base + d1] == blobs[3],
           "reference export: bf16 bytes agree with an independent conversion, int64 unchanged")
        nblocks = -(-len(st_ref) // MIB)  # every 1 MiB block holds converted bytes

        cache = os.path.join(work, "cache")
        opts = ["dtype=bf16", f"cache_dir={cache}", "prefetch=16"]  # read-ahead on, any CPU count
        files, st = session(src, mnt, opts, "first mount")
        ok(files == ref, "first mount: every byte equals the reference")
        ok(st["blocks_made"] == nblocks and st["cache_writes"] == nblocks and
           st["cache_hits"] == 0, f"first mount: {st['blocks_made']} blocks made and stored")
        ok(st["prefetch_issued"] > 0 and st["prefetch_hits"] > 0,
           f"first mount: read-ahead served the sequential reader ({st['prefetch_hits']} hits "
           f"of {st['prefetch_issued']} issued)")
        made = st["blocks_made"]
        blocks = block_files(cache)
        ok(len(blocks) == made and os.stat(cache).st_mode & 0o777 == 0o700,
           f"first mount: {len(blocks)} block files in a 0700 directory")

        files, st = session(src, mnt, opts, "remount")
        ok(files == ref, "remount: every byte equals the reference")
        ok(st["blocks_made"] == 0 and st["bytes_converted"] == 0 and st["cache_hits"] == made,
           f"remount: all {st['cache_hits']} blocks come from the cache, nothing converted")

        # corruption: a flipped bit, a torn block, a block copied over another
        with open(blocks[0], "r+b") as f:
            f.seek(32 + 1000)
            b = f.read(1)
            f.seek(32 + 1000)
            f.write(bytes([b[0] ^ 1]))
        with open(blocks[1], "r+b") as f:
            f.truncate(os.path.getsize(blocks[1]) // 2)
        shutil.copyfile(blocks[3], blocks[2])
        files, st = session(src, mnt, opts, "corrupted cache")
        ok(files == ref, "corrupted cache: every byte still equals the reference")
        ok(st["cache_corrupt"] == 3 and st["blocks_made"] == 3 and st["cache_hits"] == made - 3,
           f"corrupted cache: 3 bad blocks detected and remade ({st['cache_corrupt']} corrupt, "
           f"{st['blocks_made']} made)")

        # a small cap: evictions keep the directory under it
        small = os.path.join(work, "small")
        files, st = session(src, mnt, ["dtype=bf16", f"cache_dir={small}", "cache_size=3MiB"],
                            "cap 3MiB")
        ok(files == ref and st["cache_evictions"] > 0 and tree_bytes(small) <= 3 * MIB,
           f"cache_size=3MiB: correct bytes, {st['cache_evictions']} evictions, "
           f"{tree_bytes(small)} bytes on disk")

        # a free-space floor that cannot be met: nothing stored, still correct
        floor = os.path.join(work, "floor")
        files, st = session(src, mnt, ["dtype=bf16", f"cache_dir={floor}", "cache_min_free=1000TB"],
                            "floor")
        ok(files == ref and st["cache_writes"] == 0 and st["cache_write_skips"] == made and
           not block_files(floor), "cache_min_free=1000TB: nothing stored, bytes correct")

        # one process per cache directory: a second one goes on without it
        p, _ = mount(src, mnt, *opts)
        try:
            out = os.path.join(work, "busy-export")
            r = subprocess.run([BIN, "export", "-q", src, out, "-o", "dtype=bf16,cache_dir=" + cache],
                               capture_output=True, text=True)
            same = r.returncode == 0 and open(os.path.join(out, "model.safetensors"), "rb").read() == st_ref
            ok(same and "in use by another ckptfs (pid" in r.stderr and "without the on-disk cache" in r.stderr,
               f"a second process on a busy cache directory warns and works: {r.stderr.strip()[:120]}")
        finally:
            ok(unmount(mnt, p), "busy: unmounts cleanly")

        # a changed source is another key: nothing stale is served
        os.utime(os.path.join(src, "model.safetensors"), (1, 1))
        files, st = session(src, mnt, opts, "changed source")
        ok(files == ref and st["cache_hits"] == 0 and st["blocks_made"] == made and
           len([d for d in os.listdir(cache) if len(d) == 32]) == 2,
           "changed source mtime: a new key, every block made again")

        # a directory others can write to is refused
        os.chmod(cache, 0o777)
        r = subprocess.run([BIN, "export", "-q", src, os.path.join(work, "perm"), "-o",
                            "dtype=bf16,cache_dir=" + cache], capture_output=True, text=True)
        ok(r.returncode == 1 and "not writable by group or others" in r.stderr,
           f"a group/world-writable cache directory is refused: {r.stderr.strip()[:100]}")
        os.chmod(cache, 0o700)

        # export warms the cache, a mount then converts nothing
        warm = os.path.join(work, "warm")
        r = subprocess.run([BIN, "export", "-q", src, os.path.join(work, "warm-out"), "-o",
                            "dtype=bf16,cache_dir=" + warm], capture_output=True, text=True)
        files, st = session(src, mnt, ["dtype=bf16", f"cache_dir={warm}"], "after export")
        ok(r.returncode == 0 and files == ref and st["blocks_made"] == 0 and st["cache_hits"] == made,
           f"export stored the blocks: the mount after it made none ({st['cache_hits']} hits)")

        # kill -9 in the middle of reads: ENOTCONN, fusermount3 -u cleans up,
        # a remount serves right bytes from what the cache holds
        killed = os.path.join(work, "killed")
        p, _ = mount(src, mnt, "dtype=bf16", f"cache_dir={killed}")
        errs = []
        fd = os.open(os.path.join(mnt, "model.safetensors"), os.O_RDONLY)
        os.read(fd, 2 * MIB + 4096)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # so the read must reach the daemon
        try:
            os.pread(fd, MIB, 3 * MIB)
        except OSError as ex:
            errs.append(ex.errno)
        try:
            os.open(os.path.join(mnt, "model.safetensors"), os.O_RDONLY)
        except OSError as ex:
            errs.append(ex.errno)
        try:
            os.close(fd)  # the flush of a dead mount fails too
        except OSError:
            pass
        r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
        ok(errs == [errno.ENOTCONN] * 2 and r.returncode == 0,
           f"kill -9 mid-read: a read and an open get ENOTCONN ({errs}), fusermount3 -u cleans up")
        keydirs = [d for d in os.listdir(killed) if len(d) == 32]
        if keydirs:  # what a write cut short by the kill leaves
            with open(os.path.join(killed, keydirs[0], "tmp.77"), "wb") as f:
                f.write(b"CKPTBLK1 torn")
        files, st = session(src, mnt, ["dtype=bf16", f"cache_dir={killed}"], "after kill -9")
        ok(files == ref and st["cache_hits"] + st["blocks_made"] == made and st["cache_hits"] > 0 and
           not any(f.startswith("tmp.") for d in keydirs for f in os.listdir(os.path.join(killed, d))),
           f"after kill -9: a remount serves right bytes ({st['cache_hits']} blocks from the cache, "
           f"{st['blocks_made']} made), the torn temporary file is gone")

        # no cache, no read-ahead: same bytes
        files, st = session(src, mnt, ["dtype=bf16", "prefetch=0"], "prefetch=0")
        ok(files == ref and st["prefetch_issued"] == 0, "prefetch=0: no read-ahead, same bytes")
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
