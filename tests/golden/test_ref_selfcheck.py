#!/usr/bin/env python3
"""Self-check of dcp_ref against the facts stated in fixtures/SOURCES.md.

The golden suite trusts dcp_ref, so dcp_ref itself is checked here against
values written down when the fixtures were generated (arange contents, shapes,
dtypes, chunk and item counts, file offsets).  Fixtures are found through
$CKPTFS_FIXTURES, else <repo>/../shared/fixtures.  TAP output; exit 0 when
everything passes, 1 on a failure, 77 when the fixtures are absent.
"""
import io
import os
import pickle
import struct
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dcp_ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
FIX = os.environ.get("CKPTFS_FIXTURES") or os.path.join(REPO, "..", "shared", "fixtures")


class Skip(Exception):
    pass


def ck(name):
    path = os.path.join(FIX, "dcp", name)
    if not os.path.isdir(path):
        raise Skip(f"fixture {name} absent")
    return dcp_ref.load(path)


def values(t, fmt):
    n = len(t.data) // struct.calcsize(fmt)
    return list(struct.unpack(f"<{n}{fmt}", t.data))


def eq(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def shapes(c):
    return {k: (t.dtype, t.shape) for k, t in c.tensors.items()}


def chunks_of(c, fqn):
    return sorted(k[1] for k in c.storage if k[0] == fqn)


# ---------------------------------------------------------------- tests

def t_unpickler_is_inert():
    for evil in (b"cos\nsystem\n(S'true'\ntR.", b"cbuiltins\neval\n(S'1'\ntR.",
                 pickle.dumps(print)):
        try:
            dcp_ref.inert_loads(evil)
        except pickle.UnpicklingError:
            continue
        raise AssertionError(f"accepted {evil[:30]!r}")


def t_torch113_per_item():
    c = ck("torch1.13-per-item-files")
    w, t, v, b = (c.tensors[k] for k in "wtvb")
    eq((w.dtype, w.shape), ("float32", (3, 4)), "w")
    eq(values(w, "f"), [float(i) for i in range(12)], "w values")
    eq((t.dtype, t.shape), ("int64", (5, 4)), "t")   # stored with stride (1,5)
    eq(values(t, "q"), [j * 5 + i for i in range(5) for j in range(4)], "t values")
    eq((v.dtype, v.shape), ("float16", (4,)), "v")
    eq(values(v, "e"), [2.0, 3.0, 4.0, 5.0], "v values")
    eq((b.dtype, b.shape), ("bfloat16", (4,)), "b")
    eq(sorted(c.bytes_keys), ["extra", "step"], "bytes keys")
    eq(sorted(i[0] for i in c.storage.values()), [f"__0_{n}.distcp" for n in range(6)],
       "one item per file")
    eq(dcp_ref.default_names(c.tensors), {k: k for k in "wbtv"}, "default names")


def t_torch113_sharded():
    c = ck("torch1.13-shardedtensor-2ranks")
    st, rep = c.tensors["st"], c.tensors["rep"]
    eq((st.dtype, st.shape), ("float32", (5, 4)), "st")
    eq(values(st, "f"), [float(i) for i in range(20)], "st values")
    eq((rep.dtype, rep.shape, values(rep, "f")), ("float32", (2,), [0.0, 0.0]), "rep")
    eq(c.bytes_keys, ["obj"], "bytes keys")
    eq(chunks_of(c, "st"), [(0, 0), (3, 0)], "st chunks")
    rel, off, length, _ = c.storage[("st", (0, 0))]
    eq((rel, off), ("__0_0.distcp", 431), "st item position")
    eq(c.storage[("st", (3, 0))][0], "__1_0.distcp", "rank 1 chunk file")
    with open(os.path.join(FIX, "dcp", "torch1.13-shardedtensor-2ranks", rel), "rb") as fh:
        blob = fh.read()[off:off + length]
    starts = []
    for info in zipfile.ZipFile(io.BytesIO(blob)).infolist():
        nlen, xlen = struct.unpack_from("<HH", blob, info.header_offset + 26)
        starts.append(off + info.header_offset + 30 + nlen + xlen)
    eq(starts[:2], [495, 751], "absolute data offsets of data.pkl, data/0")


DTENSOR = {
    "model.w_row": ("float32", (5, 4)), "model.w_one": ("bfloat16", (1, 4)),
    "model.w_col": ("float16", (3, 4)), "model.w_rep": ("float32", (3,)),
    "model.plain": ("float32", (2, 2)), "model.tr": ("int64", (5, 4)),
    "model.f8": ("float8_e4m3fn", (4,)), "model.u16": ("uint16", (3,)),
    "model.lst.0": ("float32", (1,)), "model.lst.1": ("float32", (1,)),
    "optim.state.w.step": ("float32", ()), "optim.state.w.exp_avg": ("float32", (2,)),
}


def t_torch26_dtensor():
    c = ck("torch2.6-dtensor-2ranks")
    eq(shapes(c), DTENSOR, "dtypes and shapes")
    eq(sorted(c.bytes_keys), sorted(["optim.param_groups.0.lr", "optim.param_groups.0.params",
                                     "extra.epoch", "extra.name", "rank_only"]), "bytes keys")
    eq(chunks_of(c, "model.w_row"), [(0, 0), (3, 0)], "w_row chunks (uneven 3/2)")
    eq(chunks_of(c, "model.w_one"), [(0, 0), (1, 0)], "w_one chunks incl. zero-size")
    eq(chunks_of(c, "model.w_col"), [(0, 0), (0, 2)], "w_col column chunks")
    eq(chunks_of(c, "optim.state.w.step"), [()], "0-d step offsets")
    for k in ("model.w_rep", "model.plain", "model.tr"):
        eq(c.storage[(k, (0,) * len(DTENSOR[k][1]))][0], "__1_0.distcp", f"{k} file")
    eq(sum(1 for i in c.storage.values() if i[0] == "__0_0.distcp"), 14, "items in __0_0")
    eq(sum(1 for i in c.storage.values() if i[0] == "__1_0.distcp"), 6, "items in __1_0")
    want = {k[len("model."):]: k for k in DTENSOR if k.startswith("model.")}
    eq(dcp_ref.default_names(c.tensors), want, "default names")


def t_lightning():
    c = ck("lightning-fsdp1-torch2.0")
    eq(shapes(c), {"model.0.weight": ("float32", (32, 32)), "model.0.bias": ("float32", (32,)),
                   "model.2.weight": ("float32", (2, 32)), "model.2.bias": ("float32", (2,))},
       "dtypes and shapes")
    eq(c.bytes_keys, ["optimizer"], "bytes keys")
    eq(len(c.storage), 9, "storage items")
    eq(chunks_of(c, "model.0.weight"), [(0, 0), (16, 0)], "row chunks")
    eq(sorted(dcp_ref.default_names(c.tensors)), ["0.bias", "0.weight", "2.bias", "2.weight"],
       "default names strip model.")


MEGATRON = [("megatron-core0.10-tp1", 8, 37, 2), ("megatron-core0.9-tp2", 8, 51, 4),
            ("megatron-core0.16-tp2-mcoremetadata", 9, 52, 4)]


def t_megatron():
    seen = []
    for name, nbytes, nitems, nqkv in MEGATRON:
        c = ck(name)
        s = shapes(c)
        eq(len(s), 17, f"{name} tensor count")
        eq({d for d, _ in s.values()}, {"float32"}, f"{name} dtypes")
        eq(s["decoder.layers.self_attention.linear_qkv.weight"][1], (2, 36, 12), f"{name} qkv")
        eq(s["decoder.layers.mlp.linear_fc1.weight"][1], (2, 48, 12), f"{name} fc1")
        eq(len(c.bytes_keys), nbytes, f"{name} bytes items")
        assert all("_extra_state/shard_" in k for k in c.bytes_keys), f"{name} bytes keys"
        eq(len(c.storage), nitems, f"{name} storage items")
        eq(len(chunks_of(c, "decoder.layers.self_attention.linear_qkv.weight")), nqkv,
           f"{name} qkv chunks")
        eq(dcp_ref.default_names(c.tensors), {k: k for k in s}, f"{name} default names")
        seen.append(s)
    eq(seen[1], seen[0], "tp2 shapes equal tp1 shapes")
    eq(seen[2], seen[0], "0.16 shapes equal tp1 shapes")
    assert "decoder.final_layernorm._extra_state/shard_0_1" in ck(MEGATRON[2][0]).bytes_keys


def t_default_names():
    dn = dcp_ref.default_names
    eq(dn(["model.a.w", "model.b", "optim.state.x", "optimizer", "lr_scheduler.x",
           "dataloader.dp_rank_0", "train_state.step", "model.l._extra_state",
           "model.fsdp._flat_param"]), {"a.w": "model.a.w", "b": "model.b"}, "drop + strip")
    eq(dn(["model.a", "model"]), {"model.a": "model.a", "model": "model"}, "no strip w/o dot")
    eq(dn(["m.x.y", "n.y"]), {"m.x.y": "m.x.y", "n.y": "n.y"}, "no strip, two roots")
    eq(dn(["model.model.w"]), {"model.w": "model.model.w"}, "one level only")
    eq(dn(["optim.x"]), {}, "all dropped")
    eq(dn(["optimizers.w"]), {"w": "optimizers.w"}, "only exact root names dropped")


def t_safetensors_dtype():
    want = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
            "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
            "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
            "uint16": "U16", "uint32": "U32", "uint64": "U64", "complex64": "C64"}
    eq({k: dcp_ref.safetensors_dtype(k) for k in want}, want, "dtype codes")
    try:
        dcp_ref.safetensors_dtype("qint8")
        raise AssertionError("qint8 accepted")
    except dcp_ref.RefError:
        pass


def t_read_safetensors_hf():
    found = 0
    for name, n, dt, meta in (("verl-tiny-llama-bf16", 39, "BF16", {"format": "pt"}),
                              ("tiny-llama-f32-synthetic", 12, "F32", None)):
        path = os.path.join(FIX, "hf", name, "model.safetensors")
        if not os.path.exists(path):
            continue
        found += 1
        md, tensors = dcp_ref.read_safetensors(path)
        eq((md, len(tensors), {v[0] for v in tensors.values()}), (meta, n, {dt}), name)
        if name.startswith("tiny"):
            eq(tensors["lm_head.weight"][1], (9, 8), "lm_head shape")
    if not found:
        raise Skip("hf fixtures absent")


def _st_file(header, data, pad=True):
    import json
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-(len(h) + 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def t_read_safetensors_validates():
    good = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "U8", "shape": [3], "data_offsets": [8, 11]}}
    cases = {
        "good": (_st_file(good, bytes(11)), True),
        "misaligned": (_st_file(good, bytes(11), pad=False), False),
        "trailing bytes": (_st_file(good, bytes(12)), False),
        "gap": (_st_file({"a": good["a"], "b": dict(good["b"], data_offsets=[9, 12])},
                         bytes(12)), False),
        "overlap": (_st_file({"a": good["a"], "b": dict(good["b"], data_offsets=[7, 10])},
                             bytes(10)), False),
        "length": (_st_file({"a": dict(good["a"], shape=[3])}, bytes(8)), False),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for what, (blob, ok) in cases.items():
            p = os.path.join(tmp, "x.safetensors")
            with open(p, "wb") as fh:
                fh.write(blob)
            try:
                _, t = dcp_ref.read_safetensors(p)
                assert ok, f"{what}: accepted"
                eq(t["b"], ("U8", (3,), bytes(3)), "parsed entry")
            except dcp_ref.RefError:
                assert not ok, f"{what}: rejected"


def t_big_endian_item():
    """Re-pack the real `w` item as a big-endian archive; values must not change."""
    d = os.path.join(FIX, "dcp", "torch1.13-per-item-files")
    if not os.path.isdir(d):
        raise Skip("fixture absent")
    with open(os.path.join(d, "__0_0.distcp"), "rb") as fh:
        blob = fh.read()
    src = zipfile.ZipFile(io.BytesIO(blob))
    raw = src.read("archive/data/0")
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", src.read("archive/data.pkl"))
        z.writestr("archive/byteorder", "big")
        z.writestr("archive/data/0", swapped)
    eq(dcp_ref.decode_tensor_item(out.getvalue()), dcp_ref.decode_tensor_item(blob), "decode")


TESTS = [t_unpickler_is_inert, t_torch113_per_item, t_torch113_sharded, t_torch26_dtensor,
         t_lightning, t_megatron, t_default_names, t_safetensors_dtype,
         t_read_safetensors_hf, t_read_safetensors_validates, t_big_endian_item]


def main():
    if not os.path.isdir(os.path.join(FIX, "dcp")):
        print(f"1..0 # SKIP no fixtures at {FIX}")
        return 77
    print(f"1..{len(TESTS)}")
    failed = 0
    for n, test in enumerate(TESTS, 1):
        name = test.__name__[2:]
        try:
            test()
            print(f"ok {n} - {name}")
        except Skip as e:
            print(f"ok {n} - {name} # SKIP {e}")
        except Exception as e:
            failed += 1
            print(f"not ok {n} - {name}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
