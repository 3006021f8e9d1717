#!/usr/bin/env python3
"""Writes tests/unit/convert_vectors.h: what real torch's CPU tensor.to(dtype)
produces, for tests/unit/test-convert.c.

Run with a Python that has torch and numpy (the test venv):
    python tests/unit/gen_convert_vectors.py [OUT.h]

Per conversion pair it records
  (a) an edge-case table: input bits -> torch's output bits (zeros, subnormals,
      every rounding tie kind, max finite, overflow, inf, NaN payloads);
  (b) a hash of torch's output for CV_RANDOM_N pseudo-random inputs that the C
      test regenerates (cv_rand / cv_shape below, mirrored in test-convert.c).

Torch runs on one thread and on tensors whose length is a multiple of 64, so
every element goes through ATen's vectorised loop; ckptfs's NaN policy is
that path's output (see src/convert.h).  The script checks that torch's NaN
outputs match the policy and stops if a torch release changes them.  It
also records, as a comment, what torch's scalar paths do with NaNs.
"""
import sys

import numpy as np
import torch

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
RANDOM_N = 1 << 22
SEED_BASE = 0x636B707466730000  # "ckptfs\0\0"; plus the pair index

F64, F32, F16, BF16 = "F64", "F32", "F16", "BF16"
TORCH = {F64: torch.float64, F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16}
UINT = {F64: np.uint64, F32: np.uint32, F16: np.uint16, BF16: np.uint16}
SINT = {F64: torch.int64, F32: torch.int32, F16: torch.int16, BF16: torch.int16}
WIDTH = {F64: 64, F32: 32, F16: 16, BF16: 16}
PAIRS = [(F32, BF16), (F32, F16), (BF16, F32), (F16, F32), (F64, F32),
         (F64, BF16), (F64, F16), (BF16, F16), (F16, BF16)]


def u64(x):
    return np.uint64(x)


def mix(z):
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
    return z ^ (z >> u64(31))


def cv_rand(seed, n):
    """r_i = mix(seed + (i + 1) * GOLDEN), i = 0..n-1."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix(u64(seed) + i * u64(GOLDEN))


def cv_shape(src, r):
    """Raw source bit patterns from r, biased towards the interesting ranges."""
    sel = r & u64(7)
    if src in (F16, BF16):
        u = r >> u64(48)
        u[:65536] = np.arange(65536, dtype=np.uint64)  # every pattern once
        return u.astype(np.uint16)
    if src == F32:
        u = r >> u64(32)
        exp16 = (u & u64(0x807FFFFF)) | ((u64(96) + ((r >> u64(8)) & u64(63))) << u64(23))
        u = np.where(sel == 3, (u & u64(0xFFFF0000)) | u64(0x8000), u)   # bf16 tie
        u = np.where(sel == 4, (u & u64(0xFFFFE000)) | u64(0x1000), u)   # f16 tie
        u = np.where(sel == 5, exp16, u)                                 # f16 range
        u = np.where(sel == 6, (exp16 & u64(0xFFFFE000)) | u64(0x1000), u)
        u = np.where(sel == 7, u & u64(0xFFFF0000), u)                   # exact bf16
        return u.astype(np.uint32)
    e = u64(860) + ((r >> u64(52)) & u64(0x1FF))                        # 2^-163..2^348
    v = (r & u64(0x800FFFFFFFFFFFFF)) | (e << u64(52))
    u = np.where(sel >= 2, v, r)
    u = np.where((sel == 4) | (sel == 5), u & u64(~0x1FFFFFFF & M64), u)  # exact f32
    u = np.where(sel == 6, (u & u64(~0x1FFFFFFF & M64)) | u64(0x10000000), u)  # f32 tie
    return u.astype(np.uint64)


def cv_hash(out_bytes):
    """sum_i mix(w_i + (i + 1) * GOLDEN) mod 2^64 over little-endian 64-bit words."""
    w = np.frombuffer(out_bytes, dtype="<u8")
    with np.errstate(over="ignore"):
        h = mix(w + np.arange(1, len(w) + 1, dtype=np.uint64) * u64(GOLDEN))
    return int(np.add.reduce(h, dtype=np.uint64))


def to_torch(src, bits):
    a = np.ascontiguousarray(np.asarray(bits, dtype=UINT[src]))
    return torch.from_numpy(a.view(a.dtype.str.replace("u", "i"))).view(TORCH[src])


def from_torch(dst, t):
    return t.contiguous().view(SINT[dst]).numpy().view(UINT[dst])


def torch_convert(src, dst, bits):
    """torch's output for the input bits, through the vectorised loop."""
    n = len(bits)
    pad = np.zeros((-n) % 64 + 64, dtype=UINT[src])
    x = to_torch(src, np.concatenate([np.asarray(bits, dtype=UINT[src]), pad]))
    return from_torch(dst, x.to(TORCH[dst]))[:n]


def is_nan(src, u):
    u = np.asarray(u, dtype=np.uint64)
    if src == F64:
        return (u & u64(0x7FFFFFFFFFFFFFFF)) > u64(0x7FF0000000000000)
    if src == F32:
        return (u & u64(0x7FFFFFFF)) > u64(0x7F800000)
    if src == F16:
        return (u & u64(0x7FFF)) > u64(0x7C00)
    return (u & u64(0x7FFF)) > u64(0x7F80)


def nan_policy(src, dst, u):
    """ckptfs's output for NaN inputs u (see src/convert.h)."""
    u = np.asarray(u, dtype=np.uint64)
    if src == F64:
        f = ((u >> u64(32)) & u64(0x80000000)) | u64(0x7FC00000) | ((u >> u64(29)) & u64(0x7FFFFF))
    elif src == F32:
        f = u
    elif src == F16:
        f = ((u & u64(0x8000)) << u64(16)) | u64(0x7FC00000) | ((u & u64(0x3FF)) << u64(13))
    else:
        f = u << u64(16)
    if dst == F32:
        return f
    if dst == F16:
        return ((f >> u64(16)) & u64(0x8000)) | u64(0x7E00) | ((f >> u64(13)) & u64(0x3FF))
    return np.full(len(u), 0x7FC0 if src == F16 else 0xFFFF, dtype=np.uint64)


def with_neighbours(vals, width, signs=True):
    out = []
    for v in vals:
        for w in (v - 1, v, v + 1):
            if 0 <= w < (1 << (width - 1)):
                out.append(w)
                if signs:
                    out.append(w | (1 << (width - 1)))
    return out


def edges_f32():
    specials = [0, 1, 2, 0x7FFFFF, 0x800000, 0x3F800000, 0x40490FDB, 0x7F7FFFFF, 0x7F7F7FFF,
                0x7F7F8000, 0x7F800000 - 1, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x47800000,
                0x38800000, 0x387FC000, 0x387FE000, 0x33800000, 0x33000000, 0x33C00000,
                0x34200000, 0x32FFFFFF, 0x00008000, 0x00018000, 0x007F8000]
    v = with_neighbours(specials, 32)
    v += [0x7F800000, 0xFF800000]
    for e in range(255):  # a bf16 tie to even (down) and to odd (up, into the next binade)
        s = (e & 1) << 31
        v += [s | e << 23 | 0x8000, s | e << 23 | 0x8001, s | e << 23 | 0x7F8000, s | e << 23 | 0x7F7FFF]
    for e in range(101, 143):  # f16 ties: normal (shift 13) and subnormal (shift 126 - e)
        sh = 13 if e >= 113 else 126 - e
        tie = (1 << (sh - 1)) & 0x7FFFFF
        for mant in (tie, tie | ((1 << sh) & 0x7FFFFF), 0x7FFFFF & ~((1 << sh) - 1) | tie):
            v += with_neighbours([e << 23 | mant], 32)
    v += [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA5A5A5,
          0xFF812345, 0x7FC00001, 0x7F802000, 0x7F801FFF, 0xFFBFFFFF, 0x7FC12345]
    return v


def edges_f64():
    def d(x):
        return int(np.array([x], dtype=np.float64).view(np.uint64)[0])
    specials = [0, 1, 0xFFFFFFFFFFFFF, 0x10000000000000, d(1.0), d(np.pi), 0x7FEFFFFFFFFFFFFF,
                d(2.0 ** -149), d(2.0 ** -150), d(1.5 * 2.0 ** -149), d(2.5 * 2.0 ** -149),
                d(2.0 ** -126), d(2.0 ** -126 - 2.0 ** -150), d(2.0 ** -127),
                0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x47F0000000000000,  # FLT_MAX, tie, 2^128
                d(1 + 2.0 ** -24), d(1 + 3 * 2.0 ** -24), d(1 + 2.0 ** -8 + 2.0 ** -30),
                d(1 + 2.0 ** -8), d(1 + 3 * 2.0 ** -8), d(1 + 2.0 ** -11 + 2.0 ** -40),
                d(1 + 2.0 ** -11), d(1 + 3 * 2.0 ** -11), d(65504.0), d(65519.99), d(65520.0),
                d(2.0 ** -24), d(2.0 ** -25), d(2.0 ** -25 + 2.0 ** -60), d(2.0 ** -14),
                d(1023.5 * 2.0 ** -24), d(3.3895313892515355e38), d(1e300), d(1e-300)]
    v = with_neighbours(specials, 64)
    v += [0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0xFFF8000000000000,
          0x7FF0000000000001, 0xFFF0000000000001, 0x7FF123456789ABCD, 0xFFF123456789ABCD,
          0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FF0000020000000, 0x7FF4000000000000]
    for e in range(872, 1152, 7):  # ties at the f32 rounding, across the range
        v += with_neighbours([e << 52 | 0x10000000, e << 52 | 0x30000000], 64, signs=False)
    return v


def edges_16(src):
    if src == F16:
        specials = [0, 1, 2, 0x3FF, 0x400, 0x3C00, 0x3C04, 0x3C0C, 0x3C05, 0x7BFF, 0x7BFC,
                    0x0004, 0x000C, 0x0104, 0x03FC, 0x03FE]
        v = with_neighbours(specials, 16)
        v += [0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFC01, 0x7DFF, 0x7FFF, 0xFFFF, 0x7D23]
        for e in range(31):
            v += [e << 10 | 0x004, e << 10 | 0x00C, e << 10 | 0x3FC, (e & 1) << 15 | e << 10 | 0x204]
    else:
        specials = [0, 1, 0x7F, 0x80, 0x3F80, 0x7F7F, 0x4780, 0x477F, 0x4770, 0x3380, 0x3300,
                    0x3340, 0x33C0, 0x3880, 0x387F, 0x3381, 0x3301, 0x3420, 0x3440, 0x3460]
        v = with_neighbours(specials, 16)
        v += [0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFF81, 0x7FFF, 0xFFFF, 0x7FA5, 0xFFA5]
        for e in range(101, 113):  # f16 subnormal range: ties at shift 110 - e
            for m in range(0, 128, 9):
                v.append(e << 7 | m)
    return v


def edge_inputs(src):
    v = {F32: edges_f32, F64: edges_f64}.get(src, lambda: edges_16(src))()
    seen, out = set(), []
    for x in v:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def scalar_nan_note(src, dst):
    """What torch's scalar paths (0-dim, strided, short tails) give for NaNs."""
    nans = [u for u in edge_inputs(src) if is_nan(src, [u])[0]][:6]
    x = to_torch(src, nans)
    zero_dim = [int(from_torch(dst, x[i].to(TORCH[dst]).reshape(1))[0]) for i in range(len(nans))]
    strided = from_torch(dst, torch.stack([x, x], 1)[:, 0].to(TORCH[dst]))
    short = from_torch(dst, x.to(TORCH[dst]))
    fmt = "%%0%dx" % (WIDTH[dst] // 4)
    return ("%s->%s NaN: in %s; vector %s; 0-dim %s; strided %s; len-%d %s" % (
        src, dst, " ".join("%x" % u for u in nans),
        " ".join(fmt % int(o) for o in nan_policy(src, dst, nans)),
        " ".join(fmt % o for o in zero_dim), " ".join(fmt % int(o) for o in strided),
        len(nans), " ".join(fmt % int(o) for o in short)))


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/unit/convert_vectors.h"
    torch.set_num_threads(1)
    lines = ["/* convert_vectors.h - generated by tests/unit/gen_convert_vectors.py with torch %s"
             % torch.__version__, " * (CPU capability %s); do not edit.  What torch's CPU tensor.to(dtype)"
             % torch.backends.cpu.get_cpu_capability(),
             " * gives: per pair, an edge-case table and the hash of its output for the",
             " * pseudo-random inputs of cv_rand/cv_shape (see test-convert.c).",
             " *", " * Torch's scalar paths, for the record (ckptfs follows the vector path):"]
    notes = [scalar_nan_note(s, d) for s, d in PAIRS]
    lines += [" *   " + n for n in notes]
    lines += [" */", "#ifndef CKPT_CONVERT_VECTORS_H", "#define CKPT_CONVERT_VECTORS_H", "",
              "#include <stddef.h>", "#include <stdint.h>", "", '#include "../../src/dtype.h"', "",
              "struct cv_edge { uint64_t in, out; };", "",
              "#define CV_RANDOM_N %dul" % RANDOM_N, "#define CV_SEED_BASE 0x%016xull" % SEED_BASE, ""]
    table = []
    for p, (src, dst) in enumerate(PAIRS):
        ins = edge_inputs(src)
        outs = torch_convert(src, dst, ins)
        nan = is_nan(src, ins)
        if not np.array_equal(outs[nan].astype(np.uint64), nan_policy(src, dst, np.array(ins, dtype=np.uint64)[nan])):
            sys.exit("%s->%s: torch's NaN outputs differ from the policy in src/convert.h" % (src, dst))
        name = "cv_edges_%s_%s" % (src.lower(), dst.lower())
        lines.append("static const struct cv_edge %s[] = {" % name)
        cells = ["{0x%x,0x%x}" % (i, int(o)) for i, o in zip(ins, outs)]
        for k in range(0, len(cells), 5):
            lines.append("\t" + ", ".join(cells[k:k + 5]) + ",")
        lines += ["};", ""]

        bits = cv_shape(src, cv_rand(SEED_BASE + p, RANDOM_N))
        y = torch_convert(src, dst, bits)
        nan = is_nan(src, bits)
        if not np.array_equal(y[nan].astype(np.uint64), nan_policy(src, dst, bits[nan])):
            sys.exit("%s->%s: torch's NaN outputs (random set) differ from the policy" % (src, dst))
        table.append("\t{ CKPT_DT_%s, CKPT_DT_%s, %s, %d, 0x%016xull }," % (
            src, dst, name, len(ins), cv_hash(y.tobytes())))
        print("%s->%s: %d edge cases, %d NaN inputs in the random set" % (src, dst, len(ins), int(nan.sum())))
    lines += ["/* Per pair: edge table and the hash of torch's output for the random set. */",
              "static const struct cv_pair {", "\tenum ckpt_dtype from, to;", "\tconst struct cv_edge *edges;",
              "\tsize_t nedges;", "\tuint64_t hash;", "} cv_pairs[] = {"] + table + ["};", "", "#endif"]
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
