#!/usr/bin/env python3
"""Derives the seed inputs of the fuzz corpora (tests/fuzz/corpus/<harness>/)
from the shared fixtures, the fuzz data checkpoint (make-data.py) and, when
present, a golden directory of checkpoints the e2e suite wrote (/tmp/ck).
Standard library only (the zstd command, when installed, unpacks zstd items).

    python3 tests/fuzz/make-seeds.py [FIXTURES] [GOLDEN]

  item/         single items cut out of .distcp files (each a torch.save zip)
  pickle/       .metadata files, the data.pkl of items, and stdlib pickles of
                plain values in protocols 2-5
  metadata/     the fixtures' .metadata files as they are, plus a few from
                GOLDEN (make-data.py adds the seed-* files that match the data)
  safetensors/  the small fixture model, and real headers (fixture, GOLDEN
                hf-sharded shards with DCP_SHARDING_INFO) with every tensor
                shrunk to at most 2 per dimension, plus hand-made edge cases
  dir/          whole checkpoint directories packed in fuzz-dir.c's format
                (the smaller fixtures, the fuzz data checkpoint, the small
                safetensors model, and symlinks in and out)
Seeds are named seed-*, so a later `-merge=1` keeps them apart from what the
fuzzer found.  Existing seed-* files are replaced; other files are kept."""
import glob
import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
import io
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MAX_ITEM = 6000


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear(harness):
    for p in glob.glob(os.path.join(CORPUS, harness, "seed-*")):
        if harness == "metadata" and os.path.basename(p).split("-")[1] in (
                "plain", "zstd", "merged", "t113", "st113", "fsdp1", "mc10"):
            continue  # written by make-data.py
        os.remove(p)


def split_items(blob):
    """Items of a .distcp file: concatenated zip archives, each ending with
    an end-of-central-directory record."""
    items, start, pos = [], 0, 0
    while True:
        i = blob.find(b"PK\x05\x06", pos)
        if i < 0 or i + 22 > len(blob):
            break
        end = i + 22 + struct.unpack_from("<H", blob, i + 20)[0]
        if blob[start:start + 4] == b"PK\x03\x04":
            items.append(blob[start:end])
        start = pos = end
    return items


def unzstd(blob):
    try:
        return subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True, check=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def shrink_safetensors(blob):
    """The same header (names, dtypes, metadata) with every dimension cut to
    at most 2 and offsets recomputed; data filled with a byte pattern."""
    (hl,) = struct.unpack_from("<Q", blob, 0)
    hdr = json.loads(blob[8:8 + hl], object_pairs_hook=OrderedDict)
    size = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
    pos, out = 0, OrderedDict()
    for k, v in hdr.items():
        if k == "__metadata__":
            out[k] = v
            continue
        shape = [min(d, 2) for d in v["shape"]]
        n = size.get(v["dtype"], 1)
        for d in shape:
            n *= d
        out[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    if "__metadata__" in out and "DCP_SHARDING_INFO" in out["__metadata__"]:
        info = json.loads(out["__metadata__"]["DCP_SHARDING_INFO"])
        for k, v in info.items():  # keep shards adjacent after shrinking
            v["saved_offsets"] = [min(o, 2) for o in v["saved_offsets"]]
        out["__metadata__"]["DCP_SHARDING_INFO"] = json.dumps(info)
    js = json.dumps(out, separators=(",", ":")).encode()
    return struct.pack("<Q", len(js)) + js + bytes(i % 251 for i in range(pos))


def st_file(entries, meta=None, pad=0, extra=b""):
    """A safetensors file from [(name, dtype, shape, raw bytes)]."""
    hdr, data = OrderedDict(), b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in entries:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    js = json.dumps(hdr, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(js)) + js + data + extra


def pack_entry(name, content, link=False):
    """One entry of fuzz-dir.c's input format."""
    name = name.encode()
    return (b"l" if link else b"f") + bytes([len(name)]) + name + struct.pack("<I", len(content)) + content


def pack_dir(path, skip=(), rename=None):
    """A directory (files and one level of subdirectories) as fuzz-dir input."""
    out = b""
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(root, f), path)
            if rel in skip or rel.count("/") > 1:
                continue
            with open(os.path.join(root, f), "rb") as fh:
                out += pack_entry((rename or {}).get(rel, rel), fh.read())
    return out


def dir_seeds(fixtures):
    clear("dir")
    dcp = os.path.join(fixtures, "dcp")
    for name in ("torch2.6-dtensor-2ranks", "torch1.13-shardedtensor-2ranks",
                 "lightning-fsdp1-torch2.0", "torch1.13-per-item-files"):
        if os.path.isdir(os.path.join(dcp, name)):
            put("dir", "fixture-" + name, pack_dir(os.path.join(dcp, name)))
    data = os.path.join(HERE, "data", "metadata")
    mdc = os.path.join(CORPUS, "metadata")
    for md, sub in (("seed-plain", None), ("seed-zstd", "z")):
        if not os.path.exists(os.path.join(mdc, md)):
            continue
        with open(os.path.join(mdc, md), "rb") as fh:
            blob = pack_entry(".metadata", fh.read())
        for f in ("__0_0.distcp", "__1_0.distcp") if sub is None else ():
            blob += pack_entry(f, open(os.path.join(data, f), "rb").read())
        if sub:
            for f in sorted(os.listdir(os.path.join(data, sub))):
                blob += pack_entry(f"{sub}/{f}", open(os.path.join(data, sub, f), "rb").read())
        for f in ("config.json", "tokenizer_config.json"):
            blob += pack_entry(f, open(os.path.join(data, f), "rb").read())
        put("dir", "data-" + md[5:], blob)
    tiny = os.path.join(fixtures, "hf", "tiny-llama-f32-synthetic")
    if os.path.isdir(tiny):
        put("dir", "hf-tiny-llama-f32", pack_dir(tiny))
    dt = os.path.join(dcp, "torch2.6-dtensor-2ranks")
    if os.path.isdir(dt):
        # a data file reached through a symlink inside (accepted), and one
        # through a symlink to a copy next to the checkpoint (refused)
        one = open(os.path.join(dt, "__1_0.distcp"), "rb").read()
        base = pack_dir(dt, skip=("__1_0.distcp",))
        put("dir", "symlink-inside", base + pack_entry("r1.distcp", one) +
            pack_entry("__1_0.distcp", b"r1.distcp", link=True))
        put("dir", "symlink-outside", base + pack_entry("bait1.distcp", one) +
            pack_entry("__1_0.distcp", b"../bait1.distcp", link=True))
        put("dir", "symlink-subdir-outside", base + pack_entry("bait1.distcp", one) +
            pack_entry("sub", b"..", link=True) +
            pack_entry("__1_0.distcp", b"sub/bait1.distcp", link=True))
    d = os.path.join(CORPUS, "dir")
    files = os.listdir(d)
    print(f"dir: {len(files)} files, {sum(os.path.getsize(os.path.join(d, f)) for f in files)} bytes")


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "fixtures")
    golden = sys.argv[2] if len(sys.argv) > 2 else "/tmp/ck"
    if os.environ.get("SEEDS_ONLY") == "dir":
        dir_seeds(fixtures)
        return
    for h in ("item", "pickle", "metadata", "safetensors"):
        clear(h)

    # ---- items and their data.pkl ----
    distcps = sorted(glob.glob(os.path.join(fixtures, "dcp", "*", "*.distcp")))
    distcps += sorted(glob.glob(os.path.join(HERE, "data", "metadata", "**", "*.distcp"), recursive=True))
    seen = set()
    for path in distcps:
        blob = open(path, "rb").read()
        items = split_items(blob)
        if "/z/" in path:  # zstd items: no zip structure outside, try the whole file
            items = []
            raw = unzstd(blob)
            if raw:
                items = split_items(raw)
        tag = os.path.relpath(path, os.path.dirname(os.path.dirname(path))).replace("/", "_")
        for i, it in enumerate(items):
            if len(it) > MAX_ITEM:
                continue
            zf = zipfile.ZipFile(io.BytesIO(it))
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("data.pkl")]
            # one of each kind of data.pkl (and of each archive layout) is enough
            key = hashlib.sha1(b"".join(zf.read(n) for n in pkl) + str(len(names)).encode()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            put("item", f"{tag}-{i}", it)
            for n in pkl:
                put("pickle", f"datapkl-{tag}-{i}", zf.read(n))

    # ---- .metadata pickles ----
    for md in sorted(glob.glob(os.path.join(fixtures, "dcp", "*", ".metadata"))):
        name = os.path.basename(os.path.dirname(md))
        blob = open(md, "rb").read()
        put("pickle", "md-" + name, blob)
        put("metadata", "fixture-" + name, blob)
    for case in ("llama-zstd", "titan-2", "llama-fsdp2-optim-2", "qwen3moe-fp32", "llama-2d-4"):
        md = os.path.join(golden, case, ".metadata")
        if os.path.exists(md) and os.path.getsize(md) < 64 << 10:
            put("metadata", "golden-" + case, open(md, "rb").read())
    for md in sorted(glob.glob(os.path.join(golden, "llama-nocollective-2", "__*.metadata")))[:1]:
        put("metadata", "golden-nocollective-rank0", open(md, "rb").read())

    # ---- plain-value pickles, every protocol the reader accepts ----
    values = {
        "nested": {"a": [1, 2, (3, 4.5)], "b": None, "c": True, "d": b"bytes", "e": "str" * 3},
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**63 - 1, -2**63],
        "memo": (lambda x: [x, x, {"k": x}])(["shared"]),
        "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
        "sets": [frozenset({1, 2}), {3}],
        "bigdict": {f"k{i}": i for i in range(1100)},
        "strings": ["", "é", "x" * 300, b"y" * 300],
    }
    for p in (2, 3, 4, 5):
        for k, v in values.items():
            put("pickle", f"py{p}-{k}", pickle.dumps(v, protocol=p))
    l = []
    l.append(l)
    put("pickle", "py4-cyclic-list", pickle.dumps(l, protocol=4))

    # ---- safetensors ----
    tiny = os.path.join(fixtures, "hf", "tiny-llama-f32-synthetic", "model.safetensors")
    if os.path.exists(tiny):
        put("safetensors", "fixture-tiny-llama-f32", open(tiny, "rb").read())
    verl = os.path.join(fixtures, "hf", "verl-tiny-llama-bf16", "model.safetensors")
    if os.path.exists(verl):
        put("safetensors", "fixture-verl-shrunk", shrink_safetensors(open(verl, "rb").read()))
    for p in sorted(glob.glob(os.path.join(golden, "llama-hf-sharded-2", "**", "*.safetensors"),
                           recursive=True))[:2]:
        put("safetensors", "golden-hf-" + os.path.basename(p), shrink_safetensors(open(p, "rb").read()))
    f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
    put("safetensors", "dcp-shard", st_file(
        [("model.w", "F32", [2, 3], f32(*range(6))), ("model.b", "BF16", [2], b"\x80\x3f\x00\x40")],
        {"DCP_SHARDING_INFO": json.dumps({"model.w": {"saved_offsets": [1, 0]},
                                          "model.b": {"saved_offsets": [0]}}),
         "DCP_VERSION": "1.0", "format": "pt"}))
    put("safetensors", "dtypes", st_file(
        [("a", "F64", [1], b"\0" * 8), ("b", "I64", [1], b"\1" * 8), ("c", "I32", [1], b"\2" * 4),
         ("d", "I16", [1], b"\3" * 2), ("e", "I8", [1], b"\4"), ("f", "U8", [1], b"\5"),
         ("g", "BOOL", [1], b"\1"), ("h", "F8_E4M3", [1], b"\6"), ("i", "F8_E5M2", [1], b"\7"),
         ("j", "U16", [1], b"\0\1"), ("k", "U32", [1], b"\0" * 4), ("l", "U64", [1], b"\0" * 8),
         ("m", "C64", [1], b"\0" * 8), ("n", "F16", [1], b"\0\x3c"), ("o", "F8_E8M0", [1], b"\x7f")]))
    # (a zero-size tensor belongs here too, but it crashes ckptfs under UBSan
    # until crashers/safetensors/zero-size-tensor-qsort-null is fixed, and a
    # crashing seed would fail replay.sh: add ("z", "F32", [0, 4], b"") then)
    put("safetensors", "scalar-padded", st_file(
        [("s", "F32", [], f32(1.5)), ("v", "F32", [3], f32(1, 2, 3))],
        {"format": "pt"}, pad=37))
    put("safetensors", "holes", st_file(
        [("t", "F32", [1, 2], f32(1, 2))],
        {"DCP_SHARDING_INFO": json.dumps({"t": {"saved_offsets": [3, 2]}})}))
    dir_seeds(fixtures)
    for h in ("item", "pickle", "metadata", "safetensors"):
        d = os.path.join(CORPUS, h)
        files = os.listdir(d)
        print(f"{h}: {len(files)} files, {sum(os.path.getsize(os.path.join(d, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
