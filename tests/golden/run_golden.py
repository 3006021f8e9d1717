#!/usr/bin/env python3
"""Golden test: `ckptfs export` output versus the independent Python reference.

usage: run_golden.py CKPTFS_BINARY FIXTURE_DIR [FIXTURE_DIR...]

For each DCP fixture directory, runs `CKPTFS_BINARY export FIXTURE_DIR OUT`
(OUT is a fresh, empty, existing directory), then checks every output
safetensors file against dcp_ref: tensor names (default naming rule), dtype
codes, shapes and raw bytes, plus model.safetensors.index.json when present.
Each fixture is exported four ways: with the defaults, with -o keep_all
(every tensor under its raw DCP name), with -o mapping=none (no name mapping)
and with -o max_shard_size=4KB (several shards and an index).
When both torch and safetensors are importable, each file is also loaded with
safetensors.torch.load_file and compared byte for byte.

Prints TAP. Exit 0: all passed; 1: a failure; 77: no fixture directory exists.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dcp_ref  # noqa: E402

EXPORT_TIMEOUT_S = 600
SHARD_RE = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")
INDEX = "model.safetensors.index.json"


def _torch_bytes(path):
    """name -> raw bytes via safetensors.torch, or None when unavailable."""
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        return None
    out = {}
    for name, t in load_file(path).items():
        flat = t.contiguous().reshape(-1)
        out[name] = bytes(flat.view(torch.uint8).tolist()) if flat.numel() else b""
    return out


def check_output(outdir, ref, expected):
    """Return a list of failure messages (empty when the output matches);
    expected maps output names to RefTensor-like (dtype, shape, data)."""
    errs = []
    files = sorted(f for f in os.listdir(outdir) if f.endswith(".safetensors"))
    if not files:
        return ["export wrote no .safetensors file"]
    has_index = os.path.exists(os.path.join(outdir, INDEX))
    if files != ["model.safetensors"]:
        n = len(files)
        want = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
        if files != want:
            errs.append(f"unexpected file names {files}, want {want}")
        if not has_index:
            errs.append(f"sharded output without {INDEX}")

    got, where = {}, {}
    for f in files:
        try:
            _, tensors = dcp_ref.read_safetensors(os.path.join(outdir, f))
        except (dcp_ref.RefError, ValueError, KeyError, TypeError) as e:
            errs.append(f"{f}: invalid safetensors: {e}")
            continue
        for name, val in tensors.items():
            if name in got:
                errs.append(f"{name}: present in both {where[name]} and {f}")
            got[name], where[name] = val, f

    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        errs.append(f"missing tensors: {missing}")
    if extra:
        errs.append(f"unexpected tensors: {extra}")

    for name in sorted(set(expected) & set(got)):
        r = expected[name]
        dt, shape, data = got[name]
        want_dt = dcp_ref.safetensors_dtype(r.dtype)
        if dt != want_dt:
            errs.append(f"{name}: dtype {dt}, want {want_dt}")
        if shape != tuple(r.shape):
            errs.append(f"{name}: shape {list(shape)}, want {list(r.shape)}")
        if data != r.data:
            first = next((i for i, (a, b) in enumerate(zip(data, r.data)) if a != b),
                         min(len(data), len(r.data)))
            errs.append(f"{name}: bytes differ (len {len(data)} vs {len(r.data)}, "
                        f"first difference at byte {first})")

    if has_index:
        errs += _check_index(os.path.join(outdir, INDEX), got, where, files)

    for f in files:
        try:
            tb = _torch_bytes(os.path.join(outdir, f))
        except Exception as e:  # a load failure is a finding, not a crash
            errs.append(f"{f}: safetensors.torch.load_file failed: {e}")
            continue
        for name, data in (tb or {}).items():
            if name in expected and data != expected[name].data:
                errs.append(f"{name}: bytes from safetensors.torch differ from reference")
    return errs


def _check_index(path, got, where, files):
    errs = []
    try:
        with open(path, encoding="utf-8") as fh:
            index = json.load(fh)
        weight_map = index["weight_map"]
        total = index["metadata"]["total_size"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{INDEX}: unreadable: {e}"]
    if set(weight_map) != set(got):
        errs.append(f"{INDEX}: weight_map names differ from the files' tensors "
                    f"(only in map: {sorted(set(weight_map) - set(got))}, "
                    f"only in files: {sorted(set(got) - set(weight_map))})")
    for name, f in weight_map.items():
        if name in where and where[name] != f:
            errs.append(f"{INDEX}: {name} mapped to {f}, but it is in {where[name]}")
    if not set(weight_map.values()) <= set(files):
        errs.append(f"{INDEX}: names files that do not exist")
    size = sum(len(v[2]) for v in got.values())
    if total != size:
        errs.append(f"{INDEX}: total_size {total}, want {size}")
    return errs


def keep_all_names(ref, fixture):
    """-o keep_all: every tensor with a safetensors dtype, raw name."""
    return {n: t for n, t in ref.tensors.items() if dcp_ref.safetensors_dtype(t.dtype)}


def raw_names(ref, fixture):
    """-o mapping=none: the default naming rule only."""
    return {out: ref.tensors[fqn] for out, fqn in dcp_ref.default_names(ref.tensors).items()}


def unstack_layers(t, i):
    """Index i of the leading axis of a reference tensor."""
    per = len(t.data) // t.shape[0]
    return dcp_ref.RefTensor(t.dtype, tuple(t.shape[1:]), t.data[i * per:(i + 1) * per])


def default_view(ref, fixture):
    """What ckptfs shows by default: raw names, except that a Megatron-Core
    checkpoint (metadata.json beside .metadata) without a model config gets
    its stacked layer axis unstacked, decoder.layers.<p> -> decoder.layers.{i}.<p>,
    and its TransformerEngine _extra_state dropped (mapping/megatron-layers.json)."""
    names = raw_names(ref, fixture)
    if not os.path.exists(os.path.join(fixture, "metadata.json")):
        return names
    out = {}
    for name, t in names.items():
        if "_extra_state" in name:
            continue
        if name.startswith("decoder.layers.") and not name[len("decoder.layers."):][:1].isdigit():
            rest = name[len("decoder.layers."):]
            for i in range(t.shape[0]):
                out[f"decoder.layers.{i}.{rest}"] = unstack_layers(t, i)
        else:
            out[name] = t
    return out


VARIANTS = [
    ("defaults", [], default_view),
    ("keep_all", ["-o", "keep_all"], keep_all_names),
    ("mapping=none", ["-o", "mapping=none"], raw_names),
    ("max_shard_size=4KB", ["-o", "max_shard_size=4KB"], default_view),
]


def run_one(binary, fixture, opts, names):
    """Return (status, messages): status is 'ok', 'not ok' or 'skip'."""
    try:
        ref = dcp_ref.load(fixture)
    except dcp_ref.RefSkip as e:
        return "skip", [str(e)]
    with tempfile.TemporaryDirectory(prefix="ckptfs-golden-") as tmp:
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        try:
            proc = subprocess.run([binary, "export", fixture, out] + opts, capture_output=True,
                                  text=True, timeout=EXPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "not ok", [f"export timed out after {EXPORT_TIMEOUT_S}s"]
        except OSError as e:
            return "not ok", [f"cannot run {binary}: {e}"]
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
            return "not ok", [f"export exited with status {proc.returncode}"] + tail
        errs = check_output(out, ref, names(ref, fixture))
    return ("not ok", errs) if errs else ("ok", [])


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary = argv[1]
    fixtures = [d for d in argv[2:] if os.path.isdir(d)]
    if not fixtures:
        print("1..0 # SKIP no fixture directories")
        return 77
    print(f"1..{len(fixtures) * len(VARIANTS)}")
    failed = 0
    cases = [(f, v) for f in fixtures for v in VARIANTS]
    for n, (fixture, (vname, opts, names)) in enumerate(cases, 1):
        name = os.path.basename(os.path.normpath(fixture)) + f" ({vname})"
        try:
            status, msgs = run_one(binary, fixture, opts, names)
        except Exception as e:  # a reference failure must not hide other fixtures
            status, msgs = "not ok", [f"reference reader failed: {type(e).__name__}: {e}"]
        if status == "skip":
            print(f"ok {n} - {name} # SKIP {msgs[0]}")
        elif status == "ok":
            print(f"ok {n} - {name}")
        else:
            failed += 1
            print(f"not ok {n} - {name}: {msgs[0]}")
            for m in msgs[1:]:
                print(f"# {m}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
