#!/usr/bin/env python3
"""Self-check for make_ckpt.py / torch_ref.py (no ckptfs involved).

For every case (or the ones named on the command line): write the checkpoint
and its reference, read it back with torch_ref.load_dcp (and, for plain DCP
layouts, also with torch's dcp_to_torch_save) and check that every reference
tensor comes back bit-identical under its checkpoint key, and that the model
part of the checkpoint has no extra keys.  Prints a table:

    case  result  seconds  details

Exit status 0 if no case FAILED (unsupported cases do not fail).

    python selfcheck_writers.py [--keep DIR] [CASE ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_ckpt  # noqa: E402  (first: sets ONEDNN_MAX_CPU_ISA before torch loads)
import torch  # noqa: E402
import torch_ref  # noqa: E402

NON_MODEL_TOP = ("optimizer", "optim", "lr_scheduler", "dataloader", "train_state")


def _model_keys(case: make_ckpt.Case, loaded: dict) -> set[str]:
    keys = set()
    for k in loaded:
        if k.split(".", 1)[0] in NON_MODEL_TOP or "_extra_state" in k:
            continue
        keys.add(k)
    return keys


def _check_logits(ref_dir: str, ref: dict) -> list[str]:
    """reference.pt + config.json, saved as a plain HF directory and loaded
    with from_pretrained, must reproduce logits.pt bit for bit."""
    import transformers
    from safetensors.torch import save_file

    transformers.logging.set_verbosity_error()
    want = torch.load(os.path.join(ref_dir, "logits.pt"), weights_only=True)
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(ref_dir, "config.json"), d)
        save_file(ref, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        m = transformers.AutoModelForCausalLM.from_pretrained(d)
        m.eval()
        with torch.no_grad():
            got = m(input_ids=make_ckpt.fixed_input(m.config.vocab_size)).logits
    if got.dtype != want.dtype or not torch.equal(got, want):
        return [f"from_pretrained logits differ from logits.pt "
                f"(max {(got.float() - want.float()).abs().max().item():.3g})"]
    return []


def check_case(name: str, workdir: str) -> tuple[str, str]:
    case = make_ckpt.CASES[name]
    ck = os.path.join(workdir, name)
    ref_dir = os.path.join(workdir, name + ".ref")
    make_ckpt.make(name, ck, hf_out=ref_dir)
    for f in ("config.json", "reference.pt", "logits.pt", "case.json"):
        if not os.path.isfile(os.path.join(ref_dir, f)):
            raise AssertionError(f"reference file {f} missing")
    ref = torch.load(os.path.join(ref_dir, "reference.pt"), weights_only=True)
    everything = torch_ref.load_dcp(ck, include_bytes=True)
    loaded = {k: v for k, v in everything.items() if isinstance(v, torch.Tensor)}
    layout = torch_ref.detect_layout(ck)

    problems = []
    for k, v in ref.items():
        dk = case.prefix + k
        if dk not in loaded:
            problems.append(f"missing {dk}")
            continue
        got = loaded[dk]
        if got.dtype != v.dtype or got.shape != v.shape or not torch.equal(got, v):
            problems.append(f"mismatch {dk}")
    extra = _model_keys(case, loaded) - {case.prefix + k for k in ref}
    if extra:
        problems.append(f"extra model keys {sorted(extra)[:3]}")

    if layout == "dcp":
        other = torch_ref.load_dcp_via_torch_save(ck)
        if set(other) != set(everything):
            problems.append("dcp_to_torch_save returns different keys")
        for k, v in everything.items():
            o = other.get(k)
            same = (torch.equal(o, v) if isinstance(v, torch.Tensor) and isinstance(o, torch.Tensor)
                    else (not isinstance(o, torch.Tensor) and o == v))
            if not same:
                problems.append(f"dcp_to_torch_save disagrees on {k}")
                break

    if not problems:
        problems += _check_logits(ref_dir, ref)

    if problems:
        raise AssertionError("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))

    files = sorted(n for n in os.listdir(ck) if not n.startswith(".") or n == ".metadata")
    md = torch_ref.read_metadata(ck)
    nchunks = sum(len(getattr(m, "chunks", [])) for m in md.state_dict_metadata.values())
    nonmodel = len(loaded) - len(_model_keys(case, loaded))
    nbytes = len(everything) - len(loaded)
    if len(everything) != len(md.state_dict_metadata):
        raise AssertionError("load_dcp did not return every metadata entry")
    details = (
        f"{layout}; {len(ref)} model tensors, {nonmodel} other tensors, {nbytes} bytes entries, "
        f"{nchunks} chunks; files: {' '.join(files)}"
    )
    return "ok", details


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--keep", help="write checkpoints here and keep them")
    a = ap.parse_args()
    names = a.cases or list(make_ckpt.CASES)
    workdir = a.keep or tempfile.mkdtemp(prefix="ckptfs-selfcheck-")
    os.makedirs(workdir, exist_ok=True)

    import transformers

    print(f"torch {torch.__version__}  transformers {transformers.__version__}  "
          f"python {sys.version.split()[0]}  workdir {workdir}", flush=True)
    rows = []
    t_all = time.monotonic()
    failed = 0
    for name in names:
        t0 = time.monotonic()
        try:
            result, details = check_case(name, workdir)
        except make_ckpt.Unsupported as e:
            result, details = "unsupported", e.reason
        except torch_ref.Unsupported as e:
            result, details = "unsupported", f"(reader) {e.reason}"
        except Exception as e:
            failed += 1
            result = "FAILED"
            details = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            traceback.print_exc()
        dt = time.monotonic() - t0
        rows.append((name, result, dt, details))
        print(f"{name:34s} {result:11s} {dt:6.1f}s  {details}", flush=True)
    total = time.monotonic() - t_all

    print()
    print(f"{'case':34s} {'result':11s} {'time':>7s}")
    print("-" * 56)
    for name, result, dt, _ in rows:
        print(f"{name:34s} {result:11s} {dt:6.1f}s")
    print("-" * 56)
    print(f"total {total:.1f}s, {failed} failed, "
          f"{sum(r[1] == 'unsupported' for r in rows)} unsupported")
    if not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
